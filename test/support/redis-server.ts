import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, rawConnect, readUntil, sleep } from './net.js';

// A real redis-server 7.0.15 on a free port, no persistence, its files in the temp dir: for the tests
// of packages/resp and examples/mini-redis that compare bytes with it.

export const REDIS_SERVER = '/usr/bin/redis-server';

export interface Server {
  port: number;
  stop(): Promise<void>;
}

/** A free TCP port on 127.0.0.1 (redis-server cannot bind port 0 and report it): test/support/net.ts. */
export { freePort };

/**
 * Whether the redis-server answering on `port` is the process `pid`, by INFO's `process_id`. A server
 * that lost its port exits, but something else may answer there meanwhile (another test's redis-server
 * that picked the same port, or any other server): connecting is not enough to know it is ours.
 */
export async function isRedisProcess(port: number, pid: number | undefined): Promise<boolean> {
  const socket = await rawConnect(port);
  try {
    socket.write('INFO server\r\n');
    const text = await readUntil(socket, /process_id:\d+\r\n|^-|HTTP\/|\r\n\r\n/, 5000);
    return /process_id:(\d+)\r\n/.exec(text)?.[1] === String(pid);
  } catch {
    return false;
  } finally {
    socket.destroy();
  }
}

export async function startRedis(): Promise<Server> {
  if (!existsSync(REDIS_SERVER)) throw new Error(`${REDIS_SERVER} not found: apt-get install redis-server (bash .ci/run does)`);
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    // A directory of its own: a dump.rdb another test (or server) left in the temp dir is never loaded.
    const dir = mkdtempSync(join(tmpdir(), 'portbind-redis-'));
    const child: ChildProcess = spawn(
      REDIS_SERVER,
      [
        ...[
          '--port',
          String(port),
          '--bind',
          '127.0.0.1',
          '--save',
          '',
          '--appendonly',
          'no',
          '--daemonize',
          'no',
          '--loglevel',
          'warning',
        ],
        // Its files (a full sync to a SYNC client writes dump.rdb) in that directory, never in the checkout.
        ...['--dir', dir],
      ],
      { stdio: 'ignore' },
    );
    const exited = once(child, 'exit');
    const stop = async (): Promise<void> => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    };
    for (let i = 0; i < 200 && child.exitCode === null; i++) {
      try {
        if (await isRedisProcess(port, child.pid)) return { port, stop };
        // Another process answers there (this one lost the port and exits): another port.
        break;
      } catch {
        await sleep(25);
      }
    }
    await stop();
    if (attempt >= 3) throw new Error('redis-server did not start');
  }
}
