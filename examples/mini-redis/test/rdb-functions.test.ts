import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { decodeRdb } from '../src/rdb.js';
import { ask, type CommandLine, infoField, RawClient, show, spawnRedisServer, startMiniRedis, tempDirs, until } from './support.js';

// Function libraries in the RDB file, as Redis 7.0.15 writes them (rdbSaveFunctions: opcode FUNCTION2
// and the code, after the aux fields) and loads them, both ways against a real redis-server; the AOF
// rewrite's RDB base keeps them; and FUNCTION LOAD/DELETE/FLUSH/RESTORE count as changes for the save
// points (INFO persistence's rdb_changes_since_last_save), as Redis counts them.

const run = promisify(execFile);
/** INFO persistence's `name` on a fresh connection to `port`. */
const persistence = async (port: number, name: string): Promise<string | undefined> => {
  const client = new RawClient(port);
  try {
    return infoField((await client.send(['INFO persistence']))[0] ?? '', name);
  } finally {
    client.close();
  }
};
const tempDir = tempDirs('mini-redis-rdb-functions-');

// Longer than 20 bytes: with rdbcompression (the default) both servers write it LZF-compressed.
const SETTER = "#!lua name=setter\nredis.register_function('setit', function(keys, args) return redis.call('SET', keys[1], args[1]) end)";
const GETTER =
  "#!lua name=getter\nredis.register_function{function_name='getit', callback=function(keys) return redis.call('GET', keys[1]) end, flags={'no-writes'}}";

/** What a server answers to the commands that show its libraries work. */
const useLibraries: CommandLine[] = [
  ['FCALL', 'setit', '1', 'k', 'v'],
  ['FCALL_RO', 'getit', '1', 'k'],
  ['FUNCTION', 'LIST', 'LIBRARYNAME', 'setter'],
];

describe('function libraries in the RDB file, against redis-server 7.0.15', () => {
  it("mini-redis loads redis-server's dump.rdb with libraries, and FCALL works", async () => {
    const dir = tempDir();
    const redis = await spawnRedisServer(['--dir', dir, '--dbfilename', 'dump.rdb']);
    let expected: string[];
    try {
      expect(await ask(redis.port, [['FUNCTION', 'LOAD', SETTER], ['FUNCTION', 'LOAD', GETTER], 'SET before saved', 'SAVE'])).toEqual([
        '$6⏎setter⏎',
        '$6⏎getter⏎',
        '+OK⏎',
        '+OK⏎',
      ]);
      expected = await ask(redis.port, useLibraries);
    } finally {
      await redis.stop();
    }
    // Redis wrote each library's code (FUNCTION2), in its dictionary's order.
    const codes = decodeRdb(readFileSync(join(dir, 'dump.rdb'))).functions.map((code) => code.toString());
    expect(codes.sort()).toEqual([GETTER, SETTER]);
    const mini = await startMiniRedis({ DATA_DIR: dir, SAVE: '' });
    try {
      expect(await ask(mini.port, ['GET before'])).toEqual(['$5⏎saved⏎']);
      expect(await ask(mini.port, useLibraries)).toEqual(expected);
    } finally {
      await mini.stop();
    }
  });

  it('mini-redis SAVE → restart → FCALL works; redis-server loads that dump.rdb with its libraries', async () => {
    const dir = tempDir();
    const first = await startMiniRedis({ DATA_DIR: dir, SAVE: '' });
    try {
      expect(await ask(first.port, [['FUNCTION', 'LOAD', SETTER], ['FUNCTION', 'LOAD', GETTER], 'SAVE'])).toEqual([
        '$6⏎setter⏎',
        '$6⏎getter⏎',
        '+OK⏎',
      ]);
    } finally {
      await first.stop();
    }
    const check = await run('redis-check-rdb', [join(dir, 'dump.rdb')]);
    expect(check.stdout).toContain('RDB looks OK');
    const again = await startMiniRedis({ DATA_DIR: dir, SAVE: '' });
    let fromMini: string[];
    try {
      fromMini = await ask(again.port, useLibraries);
      expect(fromMini.slice(0, 2)).toEqual(['+OK⏎', '$1⏎v⏎']);
      // Loading is not a change: nothing to save.
      expect(await persistence(again.port, 'rdb_changes_since_last_save')).toBe('1');
    } finally {
      await again.stop();
    }
    const redis = await spawnRedisServer(['--dir', dir, '--dbfilename', 'dump.rdb']);
    try {
      expect(await ask(redis.port, useLibraries)).toEqual(fromMini);
    } finally {
      await redis.stop();
    }
  });

  it("the AOF rewrite's RDB base keeps the libraries (FUNCTION LOAD, BGREWRITEAOF, restart)", async () => {
    const dir = tempDir();
    const env = { DATA_DIR: dir, APPENDONLY: 'yes', SAVE: '' };
    const rewritten = async (port: number): Promise<void> =>
      until(async () => (await persistence(port, 'aof_rewrite_in_progress')) === '0', 'the rewrite');
    const first = await startMiniRedis(env);
    try {
      await rewritten(first.port);
      expect(
        await ask(first.port, [
          ['FUNCTION', 'LOAD', SETTER],
          ['FUNCTION', 'LOAD', GETTER],
        ]),
      ).toEqual(['$6⏎setter⏎', '$6⏎getter⏎']);
      expect(await ask(first.port, ['BGREWRITEAOF'])).toEqual(['+Background append only file rewriting started⏎']);
      await rewritten(first.port);
    } finally {
      await first.stop();
    }
    const again = await startMiniRedis(env);
    try {
      expect((await ask(again.port, useLibraries)).slice(0, 2)).toEqual(['+OK⏎', '$1⏎v⏎']);
    } finally {
      await again.stop();
    }
  });
});

describe('FUNCTION LOAD/DELETE/FLUSH/RESTORE count as changes (rdb_changes_since_last_save), as redis-server 7.0.15', () => {
  it('each change counts once; a refused one does not', async () => {
    const counts = async (port: number): Promise<string[]> => {
      const client = new RawClient(port);
      const changes = async (): Promise<string> =>
        infoField((await client.send(['INFO persistence']))[0] ?? '', 'rdb_changes_since_last_save') ?? '?';
      const seen: string[] = [];
      try {
        const step = async (command: CommandLine): Promise<void> => {
          const reply = show((await client.send([command]))[0] as Buffer);
          seen.push(`${reply} ${await changes()}`);
        };
        await step(['FUNCTION', 'LOAD', SETTER]);
        await step(['FUNCTION', 'LOAD', SETTER]); // already exists
        const payload = (await client.send(['FUNCTION DUMP']))[0] as Buffer;
        const raw = payload.subarray(payload.indexOf('\r\n') + 2, payload.length - 2);
        await step(['FUNCTION', 'DELETE', 'setter']);
        await step(['FUNCTION', 'DELETE', 'setter']); // no such library
        await step(['FUNCTION', 'RESTORE', raw]);
        await step(['FUNCTION', 'RESTORE', raw]); // APPEND: already exists
        await step(['FUNCTION', 'FLUSH']);
        await step(['FUNCTION', 'FLUSH']); // nothing to flush: counts all the same
        await step(['FCALL', 'setit', '1', 'k', 'v']); // not found
      } finally {
        client.close();
      }
      return seen;
    };
    // In a dir of its own: the shared one may hold another test's dump.rdb (with libraries).
    const redis = await spawnRedisServer(['--dir', tempDir()]);
    const mini = await startMiniRedis();
    try {
      const expected = await counts(redis.port);
      expect(expected.map((line) => line.split(' ').at(-1))).toEqual(['1', '1', '2', '2', '3', '3', '4', '5', '5']);
      expect(await counts(mini.port)).toEqual(expected);
    } finally {
      await mini.stop();
      await redis.stop();
    }
  });
});
