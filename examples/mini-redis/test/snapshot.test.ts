import { existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeRdb } from '../src/rdb.js';
import { DEFAULT_SAVE } from '../src/snapshot.js';
import {
  askEach,
  type CommandLine,
  encode,
  infoField,
  RawClient,
  redisAndMiniForFile,
  type Started,
  show,
  spawnMiniRedis,
  startMiniRedis,
  tempDirs,
  until,
  withMiniRedis,
} from './support.js';

// Snapshots: SAVE, BGSAVE, LASTSAVE, INFO persistence, save points, SHUTDOWN and the graceful stop,
// and data in DATA_DIR surviving a restart.

const tempDir = tempDirs('mini-redis-snapshot-');
const connect = (port: number): Redis => new Redis({ port, host: '127.0.0.1', protocol: 2 } as never);

describe('data in DATA_DIR survives a restart', () => {
  it('the graceful stop saves (save points are on with DATA_DIR) and the next start loads it', async () => {
    const dir = tempDir();
    const first = await startMiniRedis({ DATA_DIR: dir });
    const client = connect(first.port);
    await client.set('greeting', 'hello');
    await client.hset('user:1', 'name', 'Ada', 'visits', '3');
    await client.zadd('board', '10', 'ada', '7', 'bob');
    await client.set('ttl', 'soon', 'PX', 600_000);
    await client.select(2);
    await client.rpush('queue', 'a', 'b');
    client.disconnect();
    await first.stop();
    expect(existsSync(join(dir, 'dump.rdb'))).toBe(true);

    await withMiniRedis({ DATA_DIR: dir }, async ({ redis: again }) => {
      expect(await again.get('greeting')).toBe('hello');
      expect(await again.hgetall('user:1')).toEqual({ name: 'Ada', visits: '3' });
      expect(await again.zrange('board', '0', '-1')).toEqual(['bob', 'ada']);
      expect(await again.pttl('ttl')).toBeGreaterThan(500_000);
      await again.select(2);
      expect(await again.lrange('queue', 0, -1)).toEqual(['a', 'b']);
      const info = await again.info('persistence');
      expect(infoField(info, 'rdb_last_load_keys_loaded')).toBe('5');
      expect(infoField(info, 'rdb_changes_since_last_save')).toBe('0');
    });
  });

  it('without DATA_DIR nothing is read or written at stop (save is "")', async () => {
    // The current directory is shared with other tests (a redis-server there may write its own
    // dump.rdb): what must hold is that this stop did not write one.
    const file = join(process.cwd(), 'dump.rdb');
    const before = existsSync(file) ? statSync(file).mtimeMs : undefined;
    await withMiniRedis({}, async ({ redis: client }) => {
      await client.set('in-memory', 'only');
      expect(await client.config('GET', 'save')).toEqual(['save', '']);
      expect(await client.config('GET', 'dir')).toEqual(['dir', process.cwd()]);
    });
    expect(existsSync(file) ? statSync(file).mtimeMs : undefined).toBe(before);
  });
});

describe('FLUSHALL with save points', () => {
  it('saves the empty dataset at once, and a BGSAVE still writing does not bring the old data back', async () => {
    const dir = tempDir();
    await withMiniRedis({ DATA_DIR: dir }, async ({ raw, redis: client }) => {
      await raw.send([['SET', 'a', '1'], ['SAVE']]);
      expect(decodeRdb(readFileSync(join(dir, 'dump.rdb'))).databases.get(0)).toHaveLength(1);
      expect((await raw.send([['FLUSHALL'], ['PING']])).map(show)).toEqual(['+OK⏎', '+PONG⏎']);
      expect(decodeRdb(readFileSync(join(dir, 'dump.rdb'))).databases.get(0)).toHaveLength(0);
      // A BGSAVE of {b} is writing when FLUSHALL comes: it is cancelled.
      await raw.send([['SET', 'b', '2']]);
      expect((await raw.send([['BGSAVE'], ['FLUSHALL']])).map(show)).toEqual(['+Background saving started⏎', '+OK⏎']);
      await until(async () => infoField(await client.info('persistence'), 'rdb_bgsave_in_progress') === '0', 'the BGSAVE');
      expect(decodeRdb(readFileSync(join(dir, 'dump.rdb'))).databases.get(0)).toHaveLength(0);
    });
  });
});

describe('SAVE, BGSAVE, LASTSAVE and INFO persistence', () => {
  let mini: Started;
  let dir: string;
  let client: Redis;
  beforeAll(async () => {
    dir = tempDir();
    mini = await startMiniRedis({ DATA_DIR: dir, SAVE: '' });
    client = connect(mini.port);
  });
  afterAll(async () => {
    client.disconnect();
    await mini.stop();
  });

  it('SAVE writes the file atomically and resets the change count; LASTSAVE moves', async () => {
    const before = await client.lastsave();
    await client.set('a', '1');
    await client.set('b', '2');
    await client.del('a');
    let info = await client.info('persistence');
    expect(Number(infoField(info, 'rdb_changes_since_last_save'))).toBeGreaterThanOrEqual(3);
    expect(await client.save()).toBe('OK');
    info = await client.info('persistence');
    expect(infoField(info, 'rdb_changes_since_last_save')).toBe('0');
    expect(infoField(info, 'rdb_last_bgsave_status')).toBe('ok');
    expect(Number(infoField(info, 'rdb_saves'))).toBeGreaterThanOrEqual(1);
    expect(await client.lastsave()).toBeGreaterThanOrEqual(before);
    const decoded = decodeRdb(readFileSync(join(dir, 'dump.rdb')));
    expect(decoded.databases.get(0)?.map((entry) => entry.key)).toEqual(['b']);
    expect(decoded.aux.get('redis-ver')).toBe('7.0.15');
    expect(existsSync(join(dir, `temp-${process.pid}.rdb`))).toBe(false);
  });

  it('BGSAVE answers at once, writes in the background; a second one while it runs is refused or scheduled', async () => {
    await client.set('c', '3');
    const raw = new RawClient(mini.port);
    try {
      // One write: the three commands run before the background write can finish.
      const replies = (await raw.send(['BGSAVE', 'BGSAVE', 'BGSAVE SCHEDULE', 'BGSAVE NOW'])).map(show);
      expect(replies).toEqual([
        '+Background saving started⏎',
        '-ERR Background save already in progress⏎',
        '+Background saving scheduled⏎',
        '-ERR syntax error⏎',
      ]);
    } finally {
      raw.close();
    }
    await until(
      async () =>
        infoField(await client.info('persistence'), 'rdb_bgsave_in_progress') === '0' &&
        (await client.info('persistence')).includes('rdb_saves:3'),
      'the third save',
    );
    expect(
      decodeRdb(readFileSync(join(dir, 'dump.rdb')))
        .databases.get(0)
        ?.map((entry) => entry.key)
        .sort(),
    ).toEqual(['b', 'c']);
  });

  it('INFO persistence has Redis 7.0.15 fields in its order', async () => {
    const info = await client.info('persistence');
    const names = info
      .split('\r\n')
      .filter((line) => line.includes(':'))
      .map((line) => line.split(':')[0]);
    expect(names.slice(0, 18)).toEqual([
      'loading',
      'async_loading',
      'current_cow_peak',
      'current_cow_size',
      'current_cow_size_age',
      'current_fork_perc',
      'current_save_keys_processed',
      'current_save_keys_total',
      'rdb_changes_since_last_save',
      'rdb_bgsave_in_progress',
      'rdb_last_save_time',
      'rdb_last_bgsave_status',
      'rdb_last_bgsave_time_sec',
      'rdb_current_bgsave_time_sec',
      'rdb_saves',
      'rdb_last_cow_size',
      'rdb_last_load_keys_expired',
      'rdb_last_load_keys_loaded',
    ]);
    expect(names).toContain('aof_enabled');
  });

  it('a save point: CONFIG SET save "1 1" and a write make a BGSAVE happen', async () => {
    const saves = Number(infoField(await client.info('persistence'), 'rdb_saves'));
    await client.set('d', '4');
    expect(await client.config('SET', 'save', '1 1')).toBe('OK');
    await until(async () => Number(infoField(await client.info('persistence'), 'rdb_saves')) > saves, 'a save');
    expect(await client.config('SET', 'save', '')).toBe('OK');
    expect(
      decodeRdb(readFileSync(join(dir, 'dump.rdb')))
        .databases.get(0)
        ?.some((entry) => entry.key === 'd'),
    ).toBe(true);
  });

  it('a failed save: SAVE answers -ERR and INFO keeps the last BGSAVE status (rdbSave sets it only on success)', async () => {
    rmSync(dir, { recursive: true, force: true });
    // A file where the directory was: the temp file cannot be created.
    const { writeFileSync } = await import('node:fs');
    writeFileSync(dir, 'not a directory');
    try {
      const raw = new RawClient(mini.port);
      try {
        expect((await raw.send(['SAVE'])).map(show)).toEqual(['-ERR⏎']);
      } finally {
        raw.close();
      }
      expect(infoField(await client.info('persistence'), 'rdb_last_bgsave_status')).toBe('ok');
    } finally {
      rmSync(dir, { force: true });
    }
    expect(await client.save()).toBe('OK'); // the directory is made again
    expect(statSync(join(dir, 'dump.rdb')).isFile()).toBe(true);
  });
});

describe('CONFIG and SHUTDOWN as redis-server 7.0.15 answers them', () => {
  const servers = redisAndMiniForFile();

  async function same(commands: readonly CommandLine[]): Promise<string[]> {
    const answers = await askEach([servers.redis.port, servers.mini.port], commands);
    expect(answers[1]).toEqual(answers[0]);
    return answers[0] as string[];
  }

  it('save, dir, dbfilename, rdbcompression, rdbchecksum: values and errors', async () => {
    const replies = await same([
      ['CONFIG', 'SET', 'save', '100'],
      ['CONFIG', 'SET', 'save', '0 1'],
      ['CONFIG', 'SET', 'save', 'x 1'],
      ['CONFIG', 'SET', 'save', '100 -1'],
      ['CONFIG', 'SET', 'save', '3600 1 300 100'],
      ['CONFIG', 'GET', 'save'],
      ['CONFIG', 'SET', 'save', ''],
      ['CONFIG', 'SET', 'dir', '/tmp'],
      ['CONFIG', 'SET', 'dbfilename', 'other.rdb'],
      ['CONFIG', 'GET', 'dbfilename'],
      ['CONFIG', 'SET', 'rdbcompression', 'maybe'],
      ['CONFIG', 'SET', 'rdbcompression', 'no'],
      ['CONFIG', 'GET', 'rdbcompression'],
      ['CONFIG', 'SET', 'rdbcompression', 'yes'],
      ['CONFIG', 'SET', 'rdbchecksum', 'no'],
      ['CONFIG', 'GET', 'rdbchecksum'],
    ]);
    expect(replies[0]).toBe("-ERR CONFIG SET failed (possibly related to argument 'save') - Invalid save parameters⏎");
    expect(replies[7]).toBe("-ERR CONFIG SET failed (possibly related to argument 'dir') - can't set protected config⏎");
    expect(replies[14]).toBe("-ERR CONFIG SET failed (possibly related to argument 'rdbchecksum') - can't set immutable config⏎");
  });

  it('SHUTDOWN: bad combinations and ABORT without a shutdown', async () => {
    const replies = await same([
      ['SHUTDOWN', 'SAVE', 'NOSAVE'],
      ['SHUTDOWN', 'ABORT', 'NOW'],
      ['SHUTDOWN', 'SOON'],
      ['SHUTDOWN', 'ABORT'],
      ['PING'],
    ]);
    expect(replies).toEqual(['-ERR syntax error⏎', '-ERR syntax error⏎', '-ERR syntax error⏎', '-ERR No shutdown in progress.⏎', '+PONG⏎']);
  });

  it('INFO persistence: the same fields as Redis, in its order', async () => {
    const names = async (port: number): Promise<string[]> => {
      const client = connect(port);
      try {
        return (await client.info('persistence'))
          .split('\r\n')
          .filter((line) => line.includes(':'))
          .map((line) => line.split(':')[0] as string);
      } finally {
        client.disconnect();
      }
    };
    expect(await names(servers.mini.port)).toEqual(await names(servers.redis.port));
  });

  it('LASTSAVE and BGSAVE arity', async () => {
    await same([
      ['LASTSAVE', 'x'],
      ['SAVE', 'x'],
      ['BGSAVE', 'a', 'b'],
    ]);
  });
});

describe('SHUTDOWN', () => {
  /** SET k v, then SHUTDOWN with `options` on a mini-redis with save points: the connection closes, the service stops. */
  const shutdown = async (...options: string[]): Promise<string> => {
    const dir = tempDir();
    const mini = await startMiniRedis({ DATA_DIR: dir });
    const raw = new RawClient(mini.port);
    await raw.send([['SET', 'k', 'v']]);
    raw.socket.write(encode([['SHUTDOWN', ...options]]));
    await expect(raw.read(1)).rejects.toThrow('connection closed');
    await until(() => mini.service.state === 'stopped', 'the service to stop');
    return join(dir, 'dump.rdb');
  };

  it('SHUTDOWN (save points set) saves, closes the connection without a reply and stops the service', async () => {
    const file = await shutdown();
    expect(
      decodeRdb(readFileSync(file))
        .databases.get(0)
        ?.map((entry) => entry.key),
    ).toEqual(['k']);
  });

  it('SHUTDOWN NOSAVE writes nothing', async () => {
    expect(existsSync(await shutdown('NOSAVE'))).toBe(false);
  });
});

describe('the process (node dist/main.js)', () => {
  it('SIGTERM drains, saves DATA_DIR/dump.rdb and exits 0; the next process serves the data', async () => {
    const dir = tempDir();
    for (const round of [1, 2]) {
      // Redis 7.0's default save points (what DATA_DIR gives): the graceful stop saves.
      const mini = await spawnMiniRedis({ DATA_DIR: dir, SAVE: DEFAULT_SAVE, LOG_LEVEL: 'info' });
      const client = connect(mini.port);
      if (round === 1) await client.set('survives', 'a restart');
      else expect(await client.get('survives')).toBe('a restart');
      client.disconnect();
      await mini.stop('SIGTERM');
      expect((await mini.exited)[0]).toBe(0);
      expect(mini.output()).toContain('DB saved on disk');
    }
  });
});
