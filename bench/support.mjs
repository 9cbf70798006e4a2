// What the benchmark scripts share: a free port, a process's CPU time, and a real redis-server of their own.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A free TCP port on 127.0.0.1 (for servers that cannot bind port 0 and report it). */
export const freePort = () =>
  new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });

/** /proc/<pid>/stat counts in clock ticks (USER_HZ = 100). */
const TICK_US = 1_000_000 / 100;

/** A process's CPU time so far, user + system, in µs (0 once it is gone). */
export const cpuOf = (pid) => {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) * TICK_US;
  } catch {
    return 0;
  }
};

/** CPU time so far, in µs, of a process and its children (a node:cluster primary and its workers). */
export const treeCpu = (pid) => {
  let children = [];
  try {
    children = execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .filter(Boolean)
      .map(Number);
  } catch {}
  return cpuOf(pid) + children.reduce((sum, child) => sum + cpuOf(child), 0);
};

/** Debian's redis-server on a free port, no persistence, its files in the temp dir; resolves once it answers PING. */
export async function startRedisServer(extra = []) {
  const port = await freePort();
  const child = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      mkdtempSync(join(tmpdir(), 'portbind-bench-redis-')),
      ...extra,
    ],
    { stdio: 'ignore' },
  );
  for (let i = 0; i < 200; i++) {
    try {
      const pong = execFileSync('redis-cli', ['-p', String(port), 'PING'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
      if (pong.trim() === 'PONG') break;
    } catch {}
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { port, child, stop: () => child.kill('SIGKILL') };
}
