import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sleep } from '../../../test/support/net.js';
import { freePort, isRedisProcess, REDIS_SERVER } from '../../../test/support/redis-server.js';

// A real redis-server that can be killed (SIGKILL) and started again on the same port with the same
// data directory, as a Redis restarted under load. AOF with fsync always: what was acknowledged
// before the kill is there after it (streams, consumer groups, their pending lists).

export interface RestartableRedis {
  readonly port: number;
  readonly url: string;
  /** SIGKILL: no shutdown, no save. */
  kill(): Promise<void>;
  /** Start again on the same port and directory; resolves once it answers. */
  restart(): Promise<void>;
  /** Kill and remove the data directory. */
  stop(): Promise<void>;
}

export async function startRestartableRedis(options: { persistence?: boolean } = {}): Promise<RestartableRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'portbind-bus-redis-'));
  const persistence = options.persistence ?? true;
  let child: ChildProcess | undefined;
  let port = 0;
  const launch = async (): Promise<boolean> => {
    const spawned = spawn(
      REDIS_SERVER,
      [
        ...['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--daemonize', 'no', '--loglevel', 'warning'],
        ...(persistence ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no']),
        ...['--dir', dir],
      ],
      { stdio: 'ignore' },
    );
    child = spawned;
    for (let i = 0; i < 400 && spawned.exitCode === null; i++) {
      try {
        // Ours, not another server that took the port first (then this one exits).
        return await isRedisProcess(port, spawned.pid);
      } catch {
        await sleep(25);
      }
    }
    return false;
  };
  const kill = async (): Promise<void> => {
    const running = child;
    if (running === undefined || running.exitCode !== null || running.signalCode !== null) return;
    const exited = once(running, 'exit');
    running.kill('SIGKILL');
    await exited;
  };
  for (let attempt = 0; ; attempt++) {
    port = await freePort();
    if (await launch()) break;
    await kill();
    if (attempt >= 3) throw new Error('redis-server did not start');
  }
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    kill,
    async restart() {
      await kill();
      // The port was just ours; a TIME_WAIT never blocks a listener (redis-server sets SO_REUSEADDR).
      for (let attempt = 0; attempt < 20; attempt++) {
        if (await launch()) return;
        await kill();
        await sleep(250);
      }
      throw new Error(`redis-server did not start again on port ${port}`);
    },
    async stop() {
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Resolves when `check` returns true, polling every 20 ms; rejects after `timeoutMs` naming `what`. */
export async function eventually(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}
