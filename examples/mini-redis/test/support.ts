import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { type AddressInfo, connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { PortService } from '@portbind/core';
import { Redis, type RedisOptions } from 'ioredis';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { freePort, REDIS_SERVER, startRedis } from '../../../test/support/redis-server.js';
import { createMiniRedis } from '../src/app.js';

// Helpers for the tests: start a real redis-server and mini-redis on free ports, and talk to
// them over raw TCP, byte for byte.

export { freePort, REDIS_SERVER } from '../../../test/support/redis-server.js';

export interface Started {
  port: number;
  stop(): Promise<void>;
}

/** Start redis-server with no persistence on a free port (test/support/redis-server.ts, shared with packages/resp). */
export const startRedisServer: () => Promise<Started> = startRedis;

/** Start mini-redis on ephemeral ports, in this process. */
export async function startMiniRedis(env: Record<string, string> = {}): Promise<Started & { service: PortService }> {
  const service = createMiniRedis({ env: { RESP_PORT: '0', PORT: '0', HOST: '127.0.0.1', ...env } });
  await service.start();
  const { port } = service.binding('resp').address as AddressInfo;
  return {
    port,
    service,
    stop: async () => {
      await service.stop();
    },
  };
}

/** A command: its words, as strings (UTF-8) or raw bytes. `'SET k v'` splits on spaces. */
export type CommandLine = string | ReadonlyArray<string | Buffer>;

const words = (command: CommandLine): Array<string | Buffer> => (typeof command === 'string' ? command.split(' ') : [...command]);

/** Encode commands as one pipelined RESP request. */
export function encode(commands: readonly CommandLine[]): Buffer {
  const parts: Buffer[] = [];
  for (const command of commands) {
    const args = words(command);
    parts.push(Buffer.from(`*${args.length}\r\n`));
    for (const arg of args) {
      const bytes = typeof arg === 'string' ? Buffer.from(arg) : arg;
      parts.push(Buffer.from(`$${bytes.length}\r\n`), bytes, Buffer.from('\r\n'));
    }
  }
  return Buffer.concat(parts);
}

/**
 * Where the reply starting at `start` ends, or -1 if it is not complete yet. Understands every
 * RESP2 and RESP3 type; this is what lets a test split a byte stream into replies.
 */
export function replyEnd(buffer: Buffer, start: number): number {
  const lineEnd = buffer.indexOf('\r\n', start);
  if (lineEnd === -1) return -1;
  const type = String.fromCharCode(buffer[start] as number);
  const header = buffer.toString('latin1', start + 1, lineEnd);
  let next = lineEnd + 2;
  if ('+-:_#,('.includes(type)) return next;
  const length = Number(header);
  if ('$=!'.includes(type)) {
    if (length < 0) return next;
    return buffer.length >= next + length + 2 ? next + length + 2 : -1;
  }
  if ('*~>%|'.includes(type)) {
    const items = length < 0 ? 0 : type === '%' || type === '|' ? length * 2 : length;
    for (let i = 0; i < items; i++) {
      next = replyEnd(buffer, next);
      if (next === -1) return -1;
    }
    // An attribute comes before the reply it describes.
    return type === '|' ? replyEnd(buffer, next) : next;
  }
  throw new Error(`not RESP at ${start}: ${JSON.stringify(buffer.toString('latin1', start, start + 40))}`);
}

/** A raw connection: send pipelined commands, get back each reply's exact bytes. */
export class RawClient {
  readonly socket: Socket;
  #buffer = Buffer.alloc(0);
  #waiting: (() => void) | undefined;
  #error: Error | undefined;

  constructor(port: number) {
    this.socket = connect(port, '127.0.0.1');
    this.socket.on('data', (chunk: Buffer) => {
      this.#buffer = Buffer.concat([this.#buffer, chunk]);
      this.#waiting?.();
    });
    this.socket.on('error', (error) => {
      this.#error = error;
      this.#waiting?.();
    });
    this.socket.on('close', () => {
      this.#error ??= new Error('connection closed');
      this.#waiting?.();
    });
  }

  /** Send the commands in one write; resolve with one Buffer per reply. */
  async send(commands: readonly CommandLine[]): Promise<Buffer[]> {
    this.socket.write(encode(commands));
    return this.read(commands.length);
  }

  /** Read `count` replies. */
  async read(count: number): Promise<Buffer[]> {
    const replies: Buffer[] = [];
    let offset = 0;
    for (;;) {
      while (replies.length < count) {
        const end = this.#buffer.length > offset ? replyEnd(this.#buffer, offset) : -1;
        if (end === -1) break;
        replies.push(this.#buffer.subarray(offset, end));
        offset = end;
      }
      if (replies.length === count) {
        this.#buffer = this.#buffer.subarray(offset);
        return replies.map((reply) => Buffer.from(reply));
      }
      if (this.#error) throw this.#error;
      await new Promise<void>((resolve) => {
        this.#waiting = resolve;
      });
      this.#waiting = undefined;
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

/** A reply's bytes as a string, `\r\n` shown as `⏎`: readable in a test diff, still exact (latin1). */
export const show = (reply: Buffer): string => reply.toString('latin1').replaceAll('\r\n', '⏎');

/** Parse one reply into JavaScript values, for comparisons that ignore order. */
export function parseReply(reply: Buffer): unknown {
  let offset = 0;
  const value = (): unknown => {
    const lineEnd = reply.indexOf('\r\n', offset);
    const type = String.fromCharCode(reply[offset] as number);
    const header = reply.toString('latin1', offset + 1, lineEnd);
    offset = lineEnd + 2;
    if (type === '$' || type === '=') {
      const length = Number(header);
      if (length < 0) return null;
      const data = reply.toString('latin1', offset, offset + length);
      offset += length + 2;
      return data;
    }
    if (type === '*' || type === '~' || type === '%') {
      const length = Number(header);
      if (length < 0) return null;
      return Array.from({ length: type === '%' ? length * 2 : length }, value);
    }
    if (type === ':') return Number(header);
    if (type === '_') return null;
    return `${type}${header}`;
  };
  return value();
}

/** One mini-redis for a whole test file (started in beforeAll, stopped in afterAll); read `.port` in tests. */
export function miniRedisForFile(): { readonly port: number } {
  let started: Started | undefined;
  beforeAll(async () => {
    started = await startMiniRedis();
  });
  afterAll(async () => {
    await started?.stop();
  });
  return {
    get port(): number {
      if (started === undefined) throw new Error('mini-redis is not started yet: read .port inside a test');
      return started.port;
    },
  };
}

/**
 * ioredis clients on `protocol` for the tests of a describe block: `connect()` opens one, `fresh()`
 * opens one on an emptied server (FLUSHALL); every client is disconnected after each test.
 */
export function ioredisPerTest(
  port: () => number,
  protocol: 2 | 3,
): { connect: (options?: RedisOptions) => Redis; fresh: () => Promise<Redis> } {
  const clients: Redis[] = [];
  const connect = (options: RedisOptions = {}): Redis => {
    const client = new Redis({ port: port(), host: '127.0.0.1', protocol, maxRetriesPerRequest: 1, ...options });
    clients.push(client);
    return client;
  };
  afterEach(() => {
    for (const client of clients.splice(0)) client.disconnect();
  });
  return {
    connect,
    fresh: async () => {
      const client = connect();
      await client.flushall();
      return client;
    },
  };
}

// ---- Servers in processes of their own, temp dirs, polling -------------------------------------

/** mini-redis's entry point, as `npm start` runs it (build first: `npx tsc -b examples/mini-redis`). */
export const MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url));

/** Poll (every 50 ms, up to `timeoutMs`) until `check` holds; `what` names it in the timeout error. */
export async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A maker of temp dirs named `<prefix>XXXXXX`, all removed after the test file. */
export function tempDirs(prefix: string): () => string {
  const dirs: string[] = [];
  afterAll(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });
  return () => {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    dirs.push(dir);
    return dir;
  };
}

/** A server in a process of its own, answering PING on `port`. */
export interface Spawned {
  port: number;
  child: ChildProcess;
  /** Resolves with the exit code and signal. */
  exited: Promise<[number | null, NodeJS.Signals | null]>;
  /** What it printed so far (stdout and stderr). */
  output(): string;
  /** `signal` (SIGTERM: a graceful stop), then wait for the exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/**
 * Spawn `command args` (behind `wrap`, e.g. `unshare …`, if given) and wait until it answers PING on
 * `port`; if it exits first, throw with what it printed.
 */
export async function spawnServer(
  command: string,
  args: readonly string[],
  options: { port: number; env?: Record<string, string>; wrap?: readonly string[] },
): Promise<Spawned> {
  const argv = [...(options.wrap ?? []), command, ...args];
  const child = spawn(argv[0] as string, argv.slice(1), {
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  const spawned: Spawned = {
    port: options.port,
    child,
    exited,
    output: () => output,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
  await until(async () => {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${command} exited (${child.exitCode ?? child.signalCode}) before listening:\n${output}`);
    }
    const client = new RawClient(options.port);
    try {
      return (await client.send(['PING']))[0]?.toString() === '+PONG\r\n';
    } catch {
      return false;
    } finally {
      client.close();
    }
  }, `${command} to listen on ${options.port}`).catch(async (error: unknown) => {
    await spawned.stop('SIGKILL');
    throw error;
  });
  return spawned;
}

/** mini-redis (dist/main.js) in a process of its own on free ports, with no save points unless `env` sets SAVE. */
export async function spawnMiniRedis(env: Record<string, string> = {}, wrap?: readonly string[]): Promise<Spawned> {
  const port = await freePort();
  const ports = { RESP_PORT: String(port), PORT: String(await freePort()), HOST: '127.0.0.1', SAVE: '' };
  return spawnServer(process.execPath, [MAIN], { port, env: { ...ports, ...env }, ...(wrap === undefined ? {} : { wrap }) });
}

/**
 * redis-server 7.0.15 on a free port with `args` (its files in `--dir`, persistence as `args` say:
 * by default none), for the tests that need its files; stop() is SIGTERM, a clean stop.
 */
export async function spawnRedisServer(args: readonly string[], wrap?: readonly string[]): Promise<Spawned> {
  const port = await freePort();
  const defaults = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--loglevel', 'warning'];
  return spawnServer(REDIS_SERVER, [...defaults, ...args], { port, ...(wrap === undefined ? {} : { wrap }) });
}

/** Run dist/main.js with `env` (free ports) until it exits by itself; what it printed and its exit code. */
export async function runMiniRedisToExit(env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const ports = { RESP_PORT: String(await freePort()), PORT: String(await freePort()), HOST: '127.0.0.1', SAVE: '' };
  const child = spawn(process.execPath, [MAIN], { env: { ...process.env, ...ports, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let [stdout, stderr] = ['', ''];
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stdout, stderr };
}
