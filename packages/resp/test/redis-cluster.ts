import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, isRedisProcess } from '../../../test/support/redis-server.js';

// Test helpers for cluster mode: a real cluster-enabled redis-server 7.0.15 (one node owning every
// slot, as cluster mode's default describes the service) to compare replies with, and a raw client
// that splits a byte stream into whole RESP2/RESP3 replies.

export { freePort } from '../../../test/support/redis-server.js';

/** Where the reply starting at `start` ends, or -1 while incomplete. */
function replyEnd(buffer: Buffer, start: number): number {
  const lineEnd = buffer.indexOf('\r\n', start);
  if (lineEnd === -1) return -1;
  const type = String.fromCharCode(buffer[start] as number);
  const length = Number(buffer.toString('latin1', start + 1, lineEnd));
  let next = lineEnd + 2;
  if ('$=!'.includes(type)) return length < 0 ? next : buffer.length >= next + length + 2 ? next + length + 2 : -1;
  if ('*~>%'.includes(type)) {
    for (let i = 0; i < (length < 0 ? 0 : type === '%' ? length * 2 : length); i++) {
      next = replyEnd(buffer, next);
      if (next === -1) return -1;
    }
  }
  return next;
}

/** Send commands (arrays of words) pipelined; get each reply's exact text (latin1). */
export class Raw {
  readonly socket: Socket;
  #buffer = Buffer.alloc(0);
  #wake: (() => void) | undefined;
  #closed = false;

  /** On a new TCP connection to 127.0.0.1:port, or on the socket given (a TLS one). */
  constructor(port: number, socket?: Socket) {
    this.socket = socket ?? connect(port, '127.0.0.1');
    this.socket.on('data', (chunk: Buffer) => {
      this.#buffer = Buffer.concat([this.#buffer, chunk]);
      this.#wake?.();
    });
    this.socket.on('error', () => {});
    this.socket.on('close', () => {
      this.#closed = true;
      this.#wake?.();
    });
  }

  async send(...commands: ReadonlyArray<string | ReadonlyArray<string | Buffer>>): Promise<string[]> {
    const parts: Buffer[] = [];
    for (const command of commands) {
      const words = typeof command === 'string' ? command.split(' ') : command;
      parts.push(Buffer.from(`*${words.length}\r\n`));
      for (const word of words) {
        const bytes = typeof word === 'string' ? Buffer.from(word) : word;
        parts.push(Buffer.from(`$${bytes.length}\r\n`), bytes, Buffer.from('\r\n'));
      }
    }
    this.socket.write(Buffer.concat(parts));
    const replies: string[] = [];
    let offset = 0;
    for (;;) {
      while (replies.length < commands.length) {
        const end = this.#buffer.length > offset ? replyEnd(this.#buffer, offset) : -1;
        if (end === -1) break;
        replies.push(this.#buffer.toString('latin1', offset, end));
        offset = end;
      }
      if (replies.length === commands.length) {
        this.#buffer = this.#buffer.subarray(offset);
        return replies;
      }
      if (this.#closed) throw new Error(`connection closed after ${JSON.stringify(replies)}`);
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
      this.#wake = undefined;
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

export interface RealRedis {
  port: number;
  stop(): Promise<void>;
}

/**
 * redis-server with `--cluster-enabled yes` in a temp dir (its nodes.conf), announcing 127.0.0.1,
 * owning all 16,384 slots (`CLUSTER ADDSLOTSRANGE 0 16383`); resolves once `cluster_state:ok`.
 * `cluster: false` starts a plain one.
 */
export async function startRedis(cluster = true): Promise<RealRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'pb-redis-cluster-'));
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir];
    if (cluster) {
      args.push('--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${port}.conf`));
      args.push('--cluster-announce-ip', '127.0.0.1');
    }
    const child: ChildProcess = spawn('/usr/bin/redis-server', args, { stdio: 'ignore' });
    const exited = once(child, 'exit');
    const stop = async (): Promise<void> => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    };
    if (await ready(port, cluster, child)) return { port, stop };
    await stop();
    if (attempt >= 3) throw new Error('redis-server did not start');
  }
}

async function ready(port: number, cluster: boolean, child: ChildProcess): Promise<boolean> {
  const deadline = Date.now() + 15_000;
  let slotsAdded = false;
  while (child.exitCode === null && Date.now() < deadline) {
    const raw = new Raw(port);
    try {
      if (cluster && !slotsAdded) {
        const [added] = await raw.send('CLUSTER ADDSLOTSRANGE 0 16383');
        slotsAdded = added === '+OK\r\n';
      }
      const [info] = await raw.send(cluster ? 'CLUSTER INFO' : 'PING');
      // Ours, not another server that took the port first (then this one exits).
      if (info?.includes(cluster ? 'cluster_state:ok' : 'PONG')) return await isRedisProcess(port, child.pid);
    } catch {
      // not listening yet
    } finally {
      raw.close();
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return false;
}
