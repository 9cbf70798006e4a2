import { mkdtemp } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { resolveWorkers, reusePortAvailable } from '../src/index.js';
import { get, listening, pidsOver, type Running, startApp as start } from './app-process.js';

// Workers (WORKERS=N): the app runs as its own process tree (packages/core/test/fixtures/workers-app.mjs,
// on the built dist/), a primary that owns the port and N node:cluster workers that serve it. Real HTTP
// requests over 127.0.0.1, each on a connection of its own, tell the workers apart by the pid they answer.

const appFile = join(import.meta.dirname, 'fixtures', 'workers-app.mjs');
const startApp = (env: Record<string, string>): Running => start(appFile, env);

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('WORKERS: several worker processes behind one port (node:cluster)', { timeout: 120_000 }, () => {
  it('WORKERS=2: the primary logs the URL once; connections go to two worker processes, never the primary', async () => {
    const run = startApp({ WORKERS: '2' });
    const url = await listening(run);
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    const pids = await pidsOver(url, 20);
    expect(pids.size).toBe(2);
    expect(pids.has(run.child.pid as number)).toBe(false);
    expect(run.lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('listening on'))).toHaveLength(1);
    expect(run.lines.filter((l) => l.msg === 'worker ready')).toHaveLength(2);
    run.child.kill('SIGTERM');
    expect(await run.exited).toEqual([0, null]);
    for (const pid of pids) expect(alive(pid)).toBe(false);
  });

  it('SIGTERM drains every worker: a request in flight is answered, then every process exits 0', async () => {
    const run = startApp({ WORKERS: '2' });
    const url = await listening(run);
    const slow = get(url, '/slow');
    await new Promise((resolve) => setTimeout(resolve, 200));
    run.child.kill('SIGTERM');
    expect(await slow).toMatch(/^slow \d+$/);
    expect(await run.exited).toEqual([0, null]);
    expect(run.lines.some((l) => l.msg === 'draining every worker')).toBe(true);
    expect(run.lines.some((l) => l.msg === 'every worker stopped')).toBe(true);
  });

  it('SIGHUP replaces the workers one at a time while clients connect all along: no connection refused', async () => {
    const run = startApp({ WORKERS: '2' });
    const url = await listening(run);
    const before = await pidsOver(url, 10);
    expect(before.size).toBe(2);
    let stop = false;
    let answered = 0;
    const failures: unknown[] = [];
    const seen = new Set<number>();
    const client = async (): Promise<void> => {
      while (!stop) {
        try {
          seen.add(Number(await get(url)));
          answered++;
        } catch (error) {
          failures.push(error);
        }
      }
    };
    const clients = [client(), client()];
    await new Promise((resolve) => setTimeout(resolve, 300));
    run.child.kill('SIGHUP');
    await run.waitFor((l) => l.msg === 'rolling restart done', 30_000);
    await new Promise((resolve) => setTimeout(resolve, 300));
    stop = true;
    await Promise.all(clients);
    expect(failures).toEqual([]);
    expect(answered).toBeGreaterThan(20);
    const after = await pidsOver(url, 10);
    expect(after.size).toBe(2);
    for (const pid of after) expect(before.has(pid)).toBe(false);
    for (const pid of before) expect(alive(pid)).toBe(false);
    // Connections were answered by old and new workers during the restart.
    expect([...seen].some((pid) => after.has(pid))).toBe(true);
    run.child.kill('SIGTERM');
    expect(await run.exited).toEqual([0, null]);
  });

  it('a worker that dies is replaced, and the others serve meanwhile', async () => {
    const run = startApp({ WORKERS: '2' });
    const url = await listening(run);
    const pids = await pidsOver(url, 10);
    const [victim] = [...pids] as [number];
    process.kill(victim, 'SIGKILL');
    const died = await run.waitFor((l) => l.msg === 'worker died: starting another');
    expect(died).toMatchObject({ workerPid: victim, signal: 'SIGKILL' });
    // Served throughout by the other worker, then by two again.
    expect(Number(await get(url))).not.toBe(victim);
    await run.waitFor((l) => l.msg === 'worker ready' && typeof l.workerPid === 'number' && !pids.has(l.workerPid));
    const now = await pidsOver(url, 10);
    expect(now.size).toBe(2);
    expect(now.has(victim)).toBe(false);
    run.child.kill('SIGTERM');
    expect(await run.exited).toEqual([0, null]);
  });

  it('refuses workers for a binding whose connections meet in memory (scope "local"), naming it: exit 1, nothing forked', async () => {
    const run = startApp({ WORKERS: '2', APP_LOCAL: '1' });
    const [code] = await run.exited;
    expect(code).toBe(1);
    const failure = run.lines.find((l) => typeof l.msg === 'string' && l.msg.startsWith('start failed'));
    expect(failure?.err).toMatchObject({ code: 'PB_ERR_WORKERS' });
    expect(failure?.msg).toContain('binding "chat"');
    expect(failure?.msg).toContain('scope');
    expect(run.lines.some((l) => l.msg === 'worker ready')).toBe(false);
  });

  it('refuses workers on a Unix socket, and a WORKERS that is not a number', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'portbind-workers-'));
    const unix = startApp({ WORKERS: '2', APP_UNIX: join(dir, 'app.sock') });
    expect((await unix.exited)[0]).toBe(1);
    expect(unix.lines.find((l) => l.err?.code === 'PB_ERR_WORKERS')?.msg).toContain('Unix socket');
    const bad = startApp({ WORKERS: 'lots' });
    expect((await bad.exited)[0]).toBe(1);
    expect(bad.lines.find((l) => l.err?.code === 'PB_ERR_CONFIG')?.msg).toContain('Invalid WORKERS="lots"');
  });

  it('WORKERS=1 (and unset) serves in the process itself, as before', async () => {
    const run = startApp({ WORKERS: '1' });
    const url = await listening(run);
    expect(await pidsOver(url, 3)).toEqual(new Set([run.child.pid]));
    run.child.kill('SIGTERM');
    expect(await run.exited).toEqual([0, null]);
  });
});

describe('resolveWorkers / reusePortAvailable', () => {
  it('reads WORKERS: unset → 1, auto → one per CPU, a whole number, or a clear error', () => {
    expect(resolveWorkers(undefined)).toBe(1);
    expect(resolveWorkers('')).toBe(1);
    expect(resolveWorkers('auto')).toBe(availableParallelism());
    expect(resolveWorkers('3')).toBe(3);
    expect(resolveWorkers(4)).toBe(4);
    for (const bad of ['0', '-1', '1.5', 'two', '1e3', '2000', 0, 2.5]) {
      expect(() => resolveWorkers(bad)).toThrow(/Invalid WORKERS=.*a whole number of worker processes from 1 to 1024, or auto/);
    }
  });

  it('knows which Node versions offer reusePort', () => {
    expect(reusePortAvailable('20.20.2')).toBe(false);
    expect(reusePortAvailable('22.11.0')).toBe(false);
    expect(reusePortAvailable('22.12.0')).toBe(true);
    expect(reusePortAvailable('23.0.0')).toBe(false);
    expect(reusePortAvailable('23.1.0')).toBe(true);
    expect(reusePortAvailable('24.0.0')).toBe(true);
  });
});
