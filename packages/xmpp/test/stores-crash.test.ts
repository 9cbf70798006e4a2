// A committed write survives a SIGKILL: a child process writes to a SQLite file in a loop and
// prints each id once its promises resolved; the parent kills it mid-loop (SIGKILL: no exit
// handler, no close, the WAL not checkpointed), reopens the file and finds every printed id.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { sqliteStorage } from '../src/stores/index.js';

const fixtures = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'stores');
const started: ChildProcess[] = [];
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portbind-stores-crash-'));
});
afterEach(() => {
  for (const child of started.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Runs the writer until it printed `count` ids, SIGKILLs it, and returns every id it printed. */
async function writeAndKill(file: string, prefix: string, count: number): Promise<string[]> {
  // The child runs the TypeScript sources through ts-hooks.mjs, as this test does through vitest.
  const child = spawn(
    process.execPath,
    ['--conditions=@portbind/source', '--import', './register.mjs', './crash-writer.mjs', file, prefix],
    {
      cwd: fixtures,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  started.push(child);
  let output = '';
  let errors = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    errors += chunk.toString();
  });
  const exited = once(child, 'exit');
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      // Count complete lines only (the last one may be cut).
      if (output.split('\n').length - 2 >= count) {
        // Mid-loop: more writes are in flight, some committed and not yet printed.
        child.kill('SIGKILL');
        resolve();
      }
    });
    child.once('exit', (code, signal) =>
      reject(new Error(`the writer exited (${code ?? signal}) before printing ${count} ids: ${errors}`)),
    );
  });
  const [, signal] = (await exited) as [number | null, NodeJS.Signals | null];
  expect(signal).toBe('SIGKILL');
  const lines = output.split('\n');
  lines.pop(); // an unterminated last line was not fully printed
  expect(lines[0]).toBe('ready');
  return lines.slice(1);
}

describe('sqliteStorage survives a SIGKILL of the writing process', () => {
  it('every id printed after its promise resolved is in the file, twice over', async () => {
    const file = join(dir, 'crash.sqlite');
    const printed: string[] = [];
    for (const prefix of ['a', 'b']) {
      const ids = await writeAndKill(file, prefix, 3000);
      expect(ids.length).toBeGreaterThanOrEqual(3000);
      printed.push(...ids);

      const storage = sqliteStorage({ file });
      try {
        const archived = new Set((await storage.archive('mam').query('alice')).items.map((item) => item.id));
        const keys = new Set(await storage.keyValue('crash').keys('alice'));
        const missing = printed.filter((id) => !archived.has(id) || !keys.has(id));
        expect(missing).toEqual([]);
        expect(await storage.keyValue('crash').get('alice', printed.at(-1) as string)).toEqual({
          i: Number((printed.at(-1) as string).slice(1)),
        });
      } finally {
        await storage.close();
      }
    }
  }, 120_000);
});

/** Runs a fixture to its end on the TypeScript sources: its exit code and everything it printed. */
async function runToExit(script: string, file: string): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, ['--conditions=@portbind/source', '--import', './register.mjs', script, file], {
    cwd: fixtures,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  started.push(child);
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, output };
}

describe('a process that never closes its sqliteStorage', () => {
  it('exits when its work is done (the checkpoint worker does not hold it), its writes in the file', async () => {
    const file = join(dir, 'no-close.sqlite');
    expect(await runToExit('./no-close.mjs', file)).toEqual({ code: 0, output: 'written\n' });
    const storage = sqliteStorage({ file });
    try {
      expect((await storage.archive('mam').query('alice', { max: 0 })).count).toBe(100);
      expect(await storage.keyValue('roster').get('alice', 'bob')).toEqual({ subscription: 'both' });
    } finally {
      await storage.close();
    }
  }, 120_000);
});

describe('a process that closes its sqliteStorage right after a call', () => {
  it('lives until close() resolved; the call committed before (exit 0, not an unsettled await)', async () => {
    const file = join(dir, 'close-pending.sqlite');
    expect(await runToExit('./close-pending.mjs', file)).toEqual({ code: 0, output: 'closed\n' });
    const storage = sqliteStorage({ file });
    try {
      expect(await storage.keyValue('roster').get('alice', 'bob')).toEqual({ subscription: 'both' });
    } finally {
      await storage.close();
    }
  }, 120_000);
});
