import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rawConnect, sleep } from './net.js';

// A real redis-server 7.0.15 on a free port, no persistence, its files in the temp dir: for the tests
// of packages/resp and examples/mini-redis that compare bytes with it.

export const REDIS_SERVER = '/usr/bin/redis-server';

export interface Server {
  port: number;
  stop(): Promise<void>;
}

/** A free TCP port on 127.0.0.1 (redis-server cannot bind port 0 and report it). */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
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
        const socket = await rawConnect(port);
        socket.destroy();
        return { port, stop };
      } catch {
        await sleep(25);
      }
    }
    await stop();
    if (attempt >= 3) throw new Error('redis-server did not start');
  }
}
