import { appendFileSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { AofConfigError, AofLoadError } from '../src/aof.js';
import { createMiniRedis } from '../src/app.js';
import {
  ask,
  askEach,
  infoField,
  parseReply,
  RawClient,
  type Spawned,
  show,
  spawnMiniRedis,
  spawnRedisServer,
  startMiniRedis,
  tempDirs,
  until,
  withMiniRedis,
} from './support.js';

// The append-only file: what was acknowledged survives a SIGKILL (appendfsync always; everysec
// loses at most the last second), BGREWRITEAOF and CONFIG SET appendonly, and a truncated or
// corrupt file at start (Redis's aof-load-truncated rule, or a clear error naming the offset).

const tempDir = tempDirs('mini-redis-aof-');
/** A flat name/value array reply as an object. */
const parseMap = (reply: Buffer): Record<string, string> => {
  const flat = parseReply(reply) as string[];
  return Object.fromEntries(Array.from({ length: flat.length / 2 }, (_, i) => [flat[2 * i], flat[2 * i + 1]]));
};
const connect = (port: number): Redis => new Redis({ port, host: '127.0.0.1', lazyConnect: true });
/** INFO persistence's `name` on a raw connection. */
const persistence = async (client: RawClient, name: string): Promise<string | undefined> =>
  infoField((await client.send(['INFO persistence']))[0] ?? '', name);
/** Until no AOF rewrite runs (the base the start wrote is on disk). */
const rewritten = (client: RawClient, what = 'the first base'): Promise<void> =>
  until(async () => (await persistence(client, 'aof_rewrite_in_progress')) === '0', what);
/** mini-redis with the AOF on in `dir` (and no save points). */
const aofIn = (dir: string, env: Record<string, string> = {}): Record<string, string> => ({
  DATA_DIR: dir,
  APPENDONLY: 'yes',
  SAVE: '',
  ...env,
});

/** Run `commands` on a mini-redis with APPENDONLY=yes in `dir`, stop it, and give the files. */
async function writeAof(dir: string, commands: string[][]): Promise<{ manifest: string; incr: string }> {
  await withMiniRedis(aofIn(dir), async ({ raw }) => {
    await raw.send(commands);
    await rewritten(raw);
  });
  const aofDir = join(dir, 'appendonlydir');
  const incr = readdirSync(aofDir).find((name) => name.endsWith('.incr.aof')) as string;
  return { manifest: join(aofDir, 'appendonly.aof.manifest'), incr: join(aofDir, incr) };
}

/**
 * `write` on a mini-redis process with the AOF in a new dir (appendfsync `fsync`), SIGKILL, then
 * `check` on a new process started on the same dir.
 */
async function killedAndRestarted(
  fsync: 'always' | 'everysec',
  write: (port: number) => Promise<void>,
  check: (port: number) => Promise<void>,
): Promise<void> {
  const dir = tempDir();
  const first = await spawnMiniRedis(aofIn(dir, { APPENDFSYNC: fsync }));
  try {
    await write(first.port);
  } finally {
    await first.stop('SIGKILL');
  }
  const second = await spawnMiniRedis(aofIn(dir));
  try {
    await check(second.port);
  } finally {
    await second.stop('SIGKILL');
  }
}

/** Run `body` with an ioredis client on `port`, disconnected after. */
async function withClient<T>(port: number, body: (client: Redis) => Promise<T>): Promise<T> {
  const client = connect(port);
  try {
    return await body(client);
  } finally {
    client.disconnect();
  }
}

describe('crash safety', () => {
  it('appendfsync always: a write acknowledged before SIGKILL is there after a restart', async () => {
    await killedAndRestarted(
      'always',
      (port) =>
        withClient(port, async (client) => {
          await client.set('acknowledged', 'yes');
          await client.hset('h', 'f', 'v');
        }),
      (port) =>
        withClient(port, async (again) => {
          expect(await again.get('acknowledged')).toBe('yes');
          expect(await again.hgetall('h')).toEqual({ f: 'v' });
        }),
    );
  });

  it('appendfsync everysec: what was written more than a second before SIGKILL is there after a restart', async () => {
    await killedAndRestarted(
      'everysec',
      (port) =>
        withClient(port, async (client) => {
          await client.rpush('older', 'a', 'b');
          await new Promise((resolve) => setTimeout(resolve, 1500));
          await client.set('newest', 'maybe');
        }),
      (port) =>
        withClient(port, async (again) => {
          expect(await again.lrange('older', 0, -1)).toEqual(['a', 'b']);
        }),
    );
  });
});

describe('crash during a rewrite', () => {
  it('SIGKILL while BGREWRITEAOF writes the new base loses nothing acknowledged', async () => {
    const value = 'x'.repeat(1000);
    await killedAndRestarted(
      'always',
      async (port) => {
        const client = new RawClient(port);
        try {
          for (let batch = 0; batch < 20; batch++) {
            await client.send(Array.from({ length: 500 }, (_, i) => ['SET', `key:${batch * 500 + i}`, value]));
          }
          expect((await client.send(['BGREWRITEAOF', 'SET after-rewrite-began yes'])).map(show)).toEqual([
            '+Background append only file rewriting started⏎',
            '+OK⏎',
          ]);
        } finally {
          client.close();
        }
      },
      async (port) => {
        expect(await ask(port, ['DBSIZE', 'GET after-rewrite-began', 'STRLEN key:9999'])).toEqual([':10001⏎', '$3⏎yes⏎', ':1000⏎']);
      },
    );
  });
});

describe('loading at start', () => {
  const commands = [
    ['SET', 'a', '1'],
    ['SELECT', '2'],
    ['RPUSH', 'l', 'x', 'y'],
    ['SET', 't', 'v', 'EX', '1000'],
    ['MULTI'],
    ['INCR', 'n'],
    ['INCR', 'n'],
    ['EXEC'],
  ];

  it('replays base and incremental file: every database, TTLs, transactions (PUBLISH goes to replicas, not to the AOF)', async () => {
    const dir = tempDir();
    const { incr } = await writeAof(dir, [...commands, ['PUBLISH', 'channel', 'message']]);
    expect(readFileSync(incr, 'latin1')).not.toContain('PUBLISH');
    expect(readFileSync(incr, 'latin1')).toContain('*2\r\n$4\r\nINCR\r\n$1\r\nn\r\n');
    await withMiniRedis(aofIn(dir), async ({ redis: client }) => {
      expect(await client.get('a')).toBe('1');
      await client.select(2);
      expect(await client.lrange('l', 0, -1)).toEqual(['x', 'y']);
      expect(await client.ttl('t')).toBeGreaterThan(900);
      expect(await client.get('n')).toBe('2');
      expect(infoField(await client.info('persistence'), 'aof_enabled')).toBe('1');
    });
  });

  /** An AOF of `written`, then `appended` (cut off) at its end: the next start loads `a`, not `absent`, and truncates the file. */
  const truncatedAtStart = async (written: string[][], appended: string, absent: string): Promise<void> => {
    const dir = tempDir();
    const { incr } = await writeAof(dir, written);
    const complete = statSync(incr).size;
    appendFileSync(incr, appended);
    await withMiniRedis(aofIn(dir), async ({ redis: client }) => {
      expect(await client.get('a')).toBe('1');
      expect(await client.exists(absent)).toBe(0);
      expect(statSync(incr).size).toBe(complete);
    });
  };

  it('a truncated last command: loads what is complete and truncates the file (aof-load-truncated yes)', async () => {
    await truncatedAtStart(commands, '*3\r\n$3\r\nSET\r\n$4\r\nhalf\r\n$5\r\nwri', 'half');
  });

  it('a MULTI without its EXEC at the end is reverted as a truncation', async () => {
    await truncatedAtStart([['SET', 'a', '1']], '*1\r\n$5\r\nMULTI\r\n*3\r\n$3\r\nSET\r\n$1\r\nb\r\n$1\r\n2\r\n', 'b');
  });

  /** createMiniRedis in `dir` with the AOF on and `env`: what it throws. */
  const startIn = (dir: string, env: Record<string, string>) => () =>
    createMiniRedis({ env: { RESP_PORT: '0', PORT: '0', HOST: '127.0.0.1', ...aofIn(dir, env) } });

  it('a truncated last command with aof-load-truncated no: a clear error naming the file and offset', async () => {
    const dir = tempDir();
    const { incr } = await writeAof(dir, commands);
    const at = statSync(incr).size;
    appendFileSync(incr, '*2\r\n$3\r\nDEL');
    const start = startIn(dir, { AOF_LOAD_TRUNCATED: 'no' });
    expect(start).toThrow(AofLoadError);
    expect(start).toThrow(`Unexpected end of file (aof-load-truncated is no) reading the append only file ${incr} at offset ${at}`);
    expect(start).toThrow(expect.objectContaining({ code: 'PB_ERR_AOF_LOAD' }));
  });

  it('garbage in the middle: "Bad file format" naming the file and the offset', async () => {
    const dir = tempDir();
    const { incr } = await writeAof(dir, commands);
    const data = readFileSync(incr);
    const at = data.indexOf('*2\r\n$4\r\nINCR');
    expect(at).toBeGreaterThan(0);
    writeFileSync(incr, Buffer.concat([data.subarray(0, at), Buffer.from('garbage\r\n'), data.subarray(at)]));
    expect(startIn(dir, {})).toThrow(
      `Bad file format (make a backup of your AOF file, then use ./redis-check-aof --fix <filename.manifest>) reading the append only file ${incr} at offset ${at}`,
    );
  });

  it('APPENDFILENAME or APPENDDIRNAME that is a path: PB_ERR_AOF_CONFIG at start; other names are used', async () => {
    const dir = tempDir();
    for (const env of [{ APPENDFILENAME: '../escape.aof' }, { APPENDDIRNAME: 'a/b' }] as Array<Record<string, string>>) {
      expect(startIn(dir, env)).toThrow(AofConfigError);
    }
    await withMiniRedis(aofIn(dir, { APPENDFILENAME: 'mine.aof', APPENDDIRNAME: 'aofdir' }), async ({ raw }) => {
      await raw.send(['SET k v']);
      await until(() => existsSync(join(dir, 'aofdir', 'mine.aof.manifest')), 'the manifest');
      expect((await raw.send(['CONFIG GET append*name'])).map((reply) => parseMap(reply))).toEqual([
        { appenddirname: 'aofdir', appendfilename: 'mine.aof' },
      ]);
    });
  });
});

describe('BGREWRITEAOF and CONFIG SET appendonly', () => {
  it('CONFIG SET appendonly yes writes a base of the dataset; BGREWRITEAOF answers as Redis and switches to a new base', async () => {
    const dir = tempDir();
    await withMiniRedis({ DATA_DIR: dir, SAVE: '' }, async ({ raw: client }) => {
      await client.send(['SET before-aof 1', 'CONFIG SET appendonly yes', 'SET after-aof 2']);
      const aofDir = join(dir, 'appendonlydir');
      // While the base is written the manifest names the increment only; then both.
      await until(
        () =>
          existsSync(join(aofDir, 'appendonly.aof.manifest')) &&
          readFileSync(join(aofDir, 'appendonly.aof.manifest'), 'latin1').includes('type b'),
        'the first base',
      );
      expect(readFileSync(join(aofDir, 'appendonly.aof.manifest'), 'latin1')).toBe(
        'file appendonly.aof.1.base.rdb seq 1 type b\nfile appendonly.aof.1.incr.aof seq 1 type i\n',
      );
      expect((await client.send(['BGREWRITEAOF'])).map(show)).toEqual(['+Background append only file rewriting started⏎']);
      await until(
        () => readFileSync(join(aofDir, 'appendonly.aof.manifest'), 'latin1').includes('appendonly.aof.2.base.rdb'),
        'the rewrite to switch the manifest',
      );
      expect(readdirSync(aofDir).sort()).toEqual(['appendonly.aof.2.base.rdb', 'appendonly.aof.2.incr.aof', 'appendonly.aof.manifest']);
      await client.send(['SET after-rewrite 3']);
      const [info] = await client.send(['INFO persistence']);
      expect(infoField(info ?? '', 'aof_enabled')).toBe('1');
      expect(infoField(info ?? '', 'aof_rewrites')).toBe('2');
      expect(infoField(info ?? '', 'aof_last_bgrewrite_status')).toBe('ok');
      expect((await client.send(['CONFIG GET appendonly'])).map(show)).toEqual(['*2⏎$10⏎appendonly⏎$3⏎yes⏎']);
    });
    await withMiniRedis(aofIn(dir), async ({ port }) => {
      expect(await ask(port, ['MGET before-aof after-aof after-rewrite'])).toEqual(['*3⏎$1⏎1⏎$1⏎2⏎$1⏎3⏎']);
    });
  });

  it('rewrites by itself once the AOF grew by auto-aof-rewrite-percentage past auto-aof-rewrite-min-size', async () => {
    await withMiniRedis(aofIn(tempDir()), async ({ raw: client }) => {
      const info = (name: string) => persistence(client, name);
      await rewritten(client);
      const before = Number(await info('aof_rewrites'));
      expect(
        (await client.send(['CONFIG SET auto-aof-rewrite-min-size 4kb', 'CONFIG SET auto-aof-rewrite-percentage 100'])).map(show),
      ).toEqual(['+OK⏎', '+OK⏎']);
      const value = 'v'.repeat(100);
      for (let i = 0; i < 100; i++) await client.send([['SET', `key${i % 10}`, value]]);
      await until(async () => Number(await info('aof_rewrites')) > before, 'an automatic rewrite');
      // The increment starts over; the base holds the ten keys.
      await until(async () => Number(await info('aof_current_size')) < 8 * 1024, 'the smaller AOF');
    });
  });
});

describe('the same files as Redis 7.0.15', () => {
  /** redis-server with appendonly yes in `dir` (its own AOF directory); stop() is SIGTERM, a clean stop (it fsyncs its AOF). */
  const redisWithAof = (dir: string): Promise<Spawned> => spawnRedisServer(['--appendonly', 'yes', '--dir', dir]);
  const script = [
    ['SET', 'a', '1'],
    ['SELECT', '2'],
    ['RPUSH', 'l', 'a', 'b'],
    ['LPOP', 'l'],
    ['SELECT', '0'],
    ['INCRBYFLOAT', 'f', '1.5'],
    ['PUBLISH', 'ch', 'm'],
    ['DEL', 'nothing'],
    ['GETSET', 'a', '2'],
    ['MULTI'],
    ['SADD', 's', 'x'],
    ['HSET', 'h', 'f', 'v'],
    ['EXEC'],
  ];

  it('the incremental file and manifest are byte for byte redis-server’s, and each loads the other’s directory', async () => {
    const [redisDir, miniDir] = [tempDir(), tempDir()];
    const redis = await redisWithAof(redisDir);
    const mini = await startMiniRedis(aofIn(miniDir));
    for (const port of [redis.port, mini.port]) {
      const client = new RawClient(port);
      try {
        await client.send(script);
        await rewritten(client); // both write their first base in the background when the AOF starts
      } finally {
        client.close();
      }
    }
    await redis.stop();
    await mini.stop();
    const files = (dir: string) => readdirSync(join(dir, 'appendonlydir')).sort();
    expect(files(miniDir)).toEqual(files(redisDir));
    for (const name of ['appendonly.aof.1.incr.aof', 'appendonly.aof.manifest']) {
      expect(show(readFileSync(join(miniDir, 'appendonlydir', name)))).toBe(show(readFileSync(join(redisDir, 'appendonlydir', name))));
    }
    const check = ['MGET a f', 'SMEMBERS s', 'HGETALL h', 'SELECT 2', 'LRANGE l 0 -1'];
    const expected = ['*2⏎$1⏎2⏎$3⏎1.5⏎', '*1⏎$1⏎x⏎', '*2⏎$1⏎f⏎$1⏎v⏎', '+OK⏎', '*1⏎$1⏎b⏎'];
    // redis-server loads mini-redis's directory; mini-redis loads redis-server's.
    const redisOnMini = await redisWithAof(miniDir);
    const miniOnRedis = await startMiniRedis(aofIn(redisDir));
    try {
      expect(await askEach([redisOnMini.port, miniOnRedis.port], check)).toEqual([expected, expected]);
    } finally {
      await redisOnMini.stop();
      await miniOnRedis.stop();
    }
  });
});
