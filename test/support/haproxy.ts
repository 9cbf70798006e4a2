import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sleep } from './net.js';

/**
 * A real HAProxy (Debian's `haproxy`) as a child of the test, with its own configuration on
 * ephemeral ports and an admin socket (`show stat`, `disable server`, …). Used by the tests that put
 * the routing layer in front of portbind: test/haproxy*.test.ts, packages/xmpp/test/haproxy-xmpp.test.ts.
 */

/** The haproxy binary (Debian installs it in /usr/sbin, which a non-root PATH may lack); throws how to install it. */
export function haproxyBinary(): string {
  const path = ['haproxy', '/usr/sbin/haproxy'].find((candidate) => spawnSync(candidate, ['-v']).status === 0);
  if (path === undefined) {
    throw new Error(
      'haproxy is not installed: these tests run a real HAProxy in front of portbind. Install Debian\'s "haproxy" package (apt-get install -y haproxy); .ci/run does it on CI.',
    );
  }
  return path;
}

/** A TCP port nobody listens on right now, for HAProxy's frontends or a child service (test/support/net.ts). */
export { freePort } from './net.js';

/** One server's line of `show stat`. */
export interface ServerStat {
  /** `UP`, `DOWN`, `MAINT`, `UP 1/2` (going down), `DOWN 1/2` (going up), `no check`, … */
  status: string;
  /** The last check's result: `L7OK`, `L7STS` (an HTTP check got another status), `L4CON` (refused), … */
  check: string;
  /** Sessions HAProxy sent to this server so far (`stot`). */
  sessions: number;
  /** Sessions open on it now (`scur`). */
  current: number;
  /** Times HAProxy retried a connection or request on it (`wretr`), and sessions it redispatched elsewhere (`wredis`). */
  retries: number;
  redispatches: number;
}

export interface HaproxyOptions {
  /** Extra lines for the `global` section (the admin socket and `maxconn` are there already). */
  global?: string[];
  /** Everything after `global`: `defaults`, frontends, backends. */
  config: string[];
  /** A prefix for the temporary directory that holds the configuration and the admin socket. */
  name?: string;
}

export class Haproxy {
  readonly dir: string;
  readonly process: ChildProcess;
  #output = '';

  private constructor(dir: string, child: ChildProcess) {
    this.dir = dir;
    this.process = child;
    child.stdout?.on('data', (chunk: Buffer) => {
      this.#output += chunk.toString();
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      this.#output += chunk.toString();
    });
  }

  /** Write the configuration and start `haproxy -db -f` on it; resolves once the admin socket answers. */
  static async start(options: HaproxyOptions): Promise<Haproxy> {
    const binary = haproxyBinary();
    const dir = await mkdtemp(join(tmpdir(), `${options.name ?? 'portbind-haproxy'}-`));
    const config = [
      'global',
      `  stats socket ${join(dir, 'admin.sock')} mode 600 level admin`,
      '  maxconn 200',
      ...(options.global ?? []),
      ...options.config,
      '',
    ].join('\n');
    await writeFile(join(dir, 'haproxy.cfg'), config);
    const child = spawn(binary, ['-db', '-f', join(dir, 'haproxy.cfg')], { stdio: ['ignore', 'pipe', 'pipe'] });
    const haproxy = new Haproxy(dir, child);
    const deadline = Date.now() + 20_000;
    for (;;) {
      haproxy.#assertRunning();
      if (
        await haproxy.admin('show info').then(
          () => true,
          () => false,
        )
      )
        return haproxy;
      if (Date.now() > deadline) throw new Error(`haproxy did not open its admin socket:\n${haproxy.output}`);
      await sleep(50);
    }
  }

  /** What haproxy printed so far (warnings, alerts). */
  get output(): string {
    return this.#output;
  }

  /** One command on the admin socket; its whole answer. */
  async admin(command: string): Promise<string> {
    const socket = connect(join(this.dir, 'admin.sock'));
    await once(socket, 'connect');
    let text = '';
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString();
    });
    socket.end(`${command}\n`);
    await once(socket, 'close');
    return text;
  }

  /** Every server's state from `show stat`, keyed `backend/server`. */
  async servers(): Promise<Record<string, ServerStat>> {
    const [header = '', ...rows] = (await this.admin('show stat')).trim().split('\n');
    const columns = header.replace(/^# /, '').split(',');
    const at = (name: string): number => columns.indexOf(name);
    const states: Record<string, ServerStat> = {};
    for (const row of rows) {
      const fields = row.split(',');
      const server = fields[at('svname')];
      if (server === undefined || server === 'FRONTEND' || server === 'BACKEND') continue;
      states[`${fields[at('pxname')]}/${server}`] = {
        status: fields[at('status')] ?? '',
        // `* L7OK` while the next check is running (HAProxy's marker of a check in progress): the last result.
        check: (fields[at('check_status')] ?? '').replace(/^\* /, ''),
        sessions: Number(fields[at('stot')] ?? 0),
        current: Number(fields[at('scur')] ?? 0),
        retries: Number(fields[at('wretr')] || 0),
        redispatches: Number(fields[at('wredis')] || 0),
      };
    }
    return states;
  }

  /** Polls `show stat` until `done(states)` holds; throws with the last states and haproxy's output after `timeoutMs`. */
  async waitFor(
    what: string,
    done: (states: Record<string, ServerStat>) => boolean,
    timeoutMs = 30_000,
  ): Promise<Record<string, ServerStat>> {
    const deadline = Date.now() + timeoutMs;
    let states: Record<string, ServerStat> = {};
    for (;;) {
      this.#assertRunning();
      states = await this.servers().catch(() => states);
      if (done(states)) return states;
      if (Date.now() > deadline) throw new Error(`haproxy: timed out waiting for ${what}: ${JSON.stringify(states)}\n${this.output}`);
      await sleep(50);
    }
  }

  /** Resolves once every port accepts TCP connections (HAProxy's frontends are bound). */
  async waitListening(ports: number[], timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (const port of ports) {
      for (;;) {
        this.#assertRunning();
        const socket = connect({ port, host: '127.0.0.1' });
        const ok = await new Promise<boolean>((resolve) => {
          socket.once('connect', () => resolve(true));
          socket.once('error', () => resolve(false));
        });
        socket.destroy();
        if (ok) break;
        if (Date.now() > deadline) throw new Error(`haproxy did not listen on ${port}:\n${this.output}`);
        await sleep(50);
      }
    }
  }

  /** SIGTERM, wait for the exit, remove the directory. */
  async stop(): Promise<void> {
    if (this.process.exitCode === null && this.process.signalCode === null) {
      const exited = once(this.process, 'exit');
      this.process.kill('SIGTERM');
      await exited;
    }
    await rm(this.dir, { recursive: true, force: true });
  }

  #assertRunning(): void {
    if (this.process.exitCode !== null) throw new Error(`haproxy exited ${this.process.exitCode}:\n${this.output}`);
  }
}
