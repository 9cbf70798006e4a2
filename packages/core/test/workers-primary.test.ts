import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { listening, pidsOver, type Running, startApp as start } from './app-process.js';

// The static PortService.run(build): with WORKERS=N the primary only supervises — it never calls
// `build`, so it opens no storage, connects to no bus and binds no adapter; each worker builds its
// own service. The app (packages/core/test/fixtures/workers-factory-app.mjs, on the built dist/)
// appends "<pid> <role>" to a file on every call of its factory.

const app = join(import.meta.dirname, 'fixtures', 'workers-factory-app.mjs');

interface Built extends Running {
  /** The file the app's factory appends "<pid> <role>" to. */
  built: string;
}

async function startApp(env: Record<string, string>): Promise<Built> {
  const built = join(await mkdtemp(join(tmpdir(), 'portbind-primary-')), 'built');
  return { ...start(app, { APP_BUILT: built, ...env }, 30_000), built };
}

/** Who called the factory: "<pid> <role>" lines. */
async function builders(run: Built): Promise<Array<{ pid: number; role: string }>> {
  const text = await readFile(run.built, 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => {
      const [pid, role] = line.split(' ');
      return { pid: Number(pid), role: role ?? '' };
    });
}

describe('PortService.run(build): the primary of WORKERS=N builds nothing', { timeout: 120_000 }, () => {
  it('WORKERS=2: the factory runs once in each worker and never in the primary; a rolling restart builds in the new workers only', async () => {
    const run = await startApp({ WORKERS: '2' });
    const url = await listening(run);
    const primary = run.child.pid as number;
    const first = await builders(run);
    expect(first).toHaveLength(2);
    expect(first.every((b) => b.role === 'worker' && b.pid !== primary)).toBe(true);
    // The two that built are the two that serve.
    expect(await pidsOver(url, 20)).toEqual(new Set(first.map((b) => b.pid)));
    expect(run.lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('listening on'))).toHaveLength(1);

    run.child.kill('SIGHUP');
    await run.waitFor((l) => l.msg === 'rolling restart done');
    const after = await builders(run);
    expect(after).toHaveLength(4);
    expect(after.some((b) => b.pid === primary || b.role !== 'worker')).toBe(false);
    run.child.kill('SIGTERM');
    expect(await run.exited).toEqual([0, null]);
  });

  it('without WORKERS: the factory runs once, in the process itself, which serves', async () => {
    const run = await startApp({});
    const url = await listening(run);
    expect(await builders(run)).toEqual([{ pid: run.child.pid, role: 'primary' }]);
    expect(await pidsOver(url, 3)).toEqual(new Set([run.child.pid]));
    run.child.kill('SIGTERM');
    expect(await run.exited).toEqual([0, null]);
  });

  it('a binding of scope "local" is refused by the workers (PB_ERR_WORKERS, naming it): the primary stops and exits 1', async () => {
    const run = await startApp({ WORKERS: '2', APP_LOCAL: '1' });
    const [code] = await run.exited;
    expect(code).toBe(1);
    const failure = run.lines.find((l) => l.err?.code === 'PB_ERR_WORKERS');
    expect(failure?.msg).toMatch(/^start failed: Cannot run workers: binding "chat" keeps state between its connections/);
    expect(run.lines.some((l) => l.msg === 'start failed: not every worker became ready')).toBe(true);
    expect(run.lines.some((l) => l.msg === 'worker ready')).toBe(false);
    expect((await builders(run)).every((b) => b.role === 'worker')).toBe(true);
  });

  it('a factory that throws is a start failure: logged with its reason, exit 1 (with workers and without)', async () => {
    const run = await startApp({ WORKERS: '2', APP_THROW: '1' });
    expect((await run.exited)[0]).toBe(1);
    expect(run.lines.some((l) => l.msg === 'start failed: the database cannot be opened (APP_THROW)')).toBe(true);
    expect(run.lines.some((l) => l.msg === 'start failed: not every worker became ready')).toBe(true);
    const alone = await startApp({ APP_THROW: '1' });
    expect((await alone.exited)[0]).toBe(1);
    expect(alone.lines.find((l) => l.msg === 'start failed: the database cannot be opened (APP_THROW)')?.err?.message).toBe(
      'the database cannot be opened (APP_THROW)',
    );
  });

  it('a WORKERS that is not a number: the primary says so and exits 1 before building anything', async () => {
    const run = await startApp({ WORKERS: 'lots' });
    expect((await run.exited)[0]).toBe(1);
    expect(run.lines.find((l) => l.err?.code === 'PB_ERR_CONFIG')?.msg).toContain('Invalid WORKERS="lots"');
    expect(await builders(run)).toEqual([]);
  });
});
