import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeRdb } from '../src/rdb.js';
import { type CommandLine, RawClient, type Started, show, startMiniRedis, startRedisServer } from './support.js';

// Snapshots: SAVE, BGSAVE, LASTSAVE, INFO persistence, save points, SHUTDOWN and the graceful stop,
// and data in DATA_DIR surviving a restart.

const dirs: string[] = [];
const tempDir = (): string => {
  const dir = mkdtempSync(join(tmpdir(), 'mini-redis-snapshot-'));
  dirs.push(dir);
  return dir;
};
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

const connect = (port: number): Redis => new Redis({ port, host: '127.0.0.1', protocol: 2 } as never);
const field = (info: string, name: string): string | undefined => new RegExp(`^${name}:(.*)\\r?$`, 'm').exec(info)?.[1]?.trim();

/** Poll (every 50 ms, up to 20 s) until `check` holds. */
async function until(check: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

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

    const second = await startMiniRedis({ DATA_DIR: dir });
    const again = connect(second.port);
    try {
      expect(await again.get('greeting')).toBe('hello');
      expect(await again.hgetall('user:1')).toEqual({ name: 'Ada', visits: '3' });
      expect(await again.zrange('board', '0', '-1')).toEqual(['bob', 'ada']);
      expect(await again.pttl('ttl')).toBeGreaterThan(500_000);
      await again.select(2);
      expect(await again.lrange('queue', 0, -1)).toEqual(['a', 'b']);
      const info = await again.info('persistence');
      expect(field(info, 'rdb_last_load_keys_loaded')).toBe('5');
      expect(field(info, 'rdb_changes_since_last_save')).toBe('0');
    } finally {
      again.disconnect();
      await second.stop();
    }
  });

  it('without DATA_DIR nothing is read or written at stop (save is "")', async () => {
    // The current directory is shared with other tests (a redis-server there may write its own
    // dump.rdb): what must hold is that this stop did not write one.
    const file = join(process.cwd(), 'dump.rdb');
    const before = existsSync(file) ? statSync(file).mtimeMs : undefined;
    const mini = await startMiniRedis();
    const client = connect(mini.port);
    try {
      await client.set('in-memory', 'only');
      expect(await client.config('GET', 'save')).toEqual(['save', '']);
      expect(await client.config('GET', 'dir')).toEqual(['dir', process.cwd()]);
    } finally {
      client.disconnect();
      await mini.stop();
    }
    expect(existsSync(file) ? statSync(file).mtimeMs : undefined).toBe(before);
  });
});

describe('FLUSHALL with save points', () => {
  it('saves the empty dataset at once, and a BGSAVE still writing does not bring the old data back', async () => {
    const dir = tempDir();
    const mini = await startMiniRedis({ DATA_DIR: dir });
    const raw = new RawClient(mini.port);
    try {
      await raw.send([['SET', 'a', '1'], ['SAVE']]);
      expect(decodeRdb(readFileSync(join(dir, 'dump.rdb'))).databases.get(0)).toHaveLength(1);
      expect((await raw.send([['FLUSHALL'], ['PING']])).map(show)).toEqual(['+OK⏎', '+PONG⏎']);
      expect(decodeRdb(readFileSync(join(dir, 'dump.rdb'))).databases.get(0)).toHaveLength(0);
      // A BGSAVE of {b} is writing when FLUSHALL comes: it is cancelled.
      await raw.send([['SET', 'b', '2']]);
      expect((await raw.send([['BGSAVE'], ['FLUSHALL']])).map(show)).toEqual(['+Background saving started⏎', '+OK⏎']);
      const client = connect(mini.port);
      await until(async () => field(await client.info('persistence'), 'rdb_bgsave_in_progress') === '0');
      client.disconnect();
      expect(decodeRdb(readFileSync(join(dir, 'dump.rdb'))).databases.get(0)).toHaveLength(0);
    } finally {
      raw.close();
      await mini.stop();
    }
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
    expect(Number(field(info, 'rdb_changes_since_last_save'))).toBeGreaterThanOrEqual(3);
    expect(await client.save()).toBe('OK');
    info = await client.info('persistence');
    expect(field(info, 'rdb_changes_since_last_save')).toBe('0');
    expect(field(info, 'rdb_last_bgsave_status')).toBe('ok');
    expect(Number(field(info, 'rdb_saves'))).toBeGreaterThanOrEqual(1);
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
        field(await client.info('persistence'), 'rdb_bgsave_in_progress') === '0' &&
        (await client.info('persistence')).includes('rdb_saves:3'),
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
    const saves = Number(field(await client.info('persistence'), 'rdb_saves'));
    await client.set('d', '4');
    expect(await client.config('SET', 'save', '1 1')).toBe('OK');
    await until(async () => Number(field(await client.info('persistence'), 'rdb_saves')) > saves);
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
      expect(field(await client.info('persistence'), 'rdb_last_bgsave_status')).toBe('ok');
    } finally {
      rmSync(dir, { force: true });
    }
    expect(await client.save()).toBe('OK'); // the directory is made again
    expect(statSync(join(dir, 'dump.rdb')).isFile()).toBe(true);
  });
});

describe('CONFIG and SHUTDOWN as redis-server 7.0.15 answers them', () => {
  let redis: Started;
  let mini: Started;
  beforeAll(async () => {
    [redis, mini] = await Promise.all([startRedisServer(), startMiniRedis()]);
  });
  afterAll(async () => {
    await Promise.all([redis?.stop(), mini?.stop()]);
  });

  async function same(commands: readonly CommandLine[]): Promise<string[]> {
    const answers: string[][] = [];
    for (const port of [redis.port, mini.port]) {
      const client = new RawClient(port);
      try {
        answers.push((await client.send(commands)).map(show));
      } finally {
        client.close();
      }
    }
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
    expect(await names(mini.port)).toEqual(await names(redis.port));
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
  it('SHUTDOWN (save points set) saves, closes the connection without a reply and stops the service', async () => {
    const dir = tempDir();
    const mini = await startMiniRedis({ DATA_DIR: dir });
    const raw = new RawClient(mini.port);
    await raw.send([['SET', 'k', 'v']]);
    raw.socket.write('*1\r\n$8\r\nSHUTDOWN\r\n');
    await expect(raw.read(1)).rejects.toThrow('connection closed');
    await until(() => mini.service.state === 'stopped');
    expect(
      decodeRdb(readFileSync(join(dir, 'dump.rdb')))
        .databases.get(0)
        ?.map((entry) => entry.key),
    ).toEqual(['k']);
  });

  it('SHUTDOWN NOSAVE writes nothing', async () => {
    const dir = tempDir();
    const mini = await startMiniRedis({ DATA_DIR: dir });
    const raw = new RawClient(mini.port);
    await raw.send([['SET', 'k', 'v']]);
    raw.socket.write('*2\r\n$8\r\nSHUTDOWN\r\n$6\r\nNOSAVE\r\n');
    await expect(raw.read(1)).rejects.toThrow('connection closed');
    await until(() => mini.service.state === 'stopped');
    expect(existsSync(join(dir, 'dump.rdb'))).toBe(false);
  });
});

describe('the process (node dist/main.js)', () => {
  const main = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'main.js');
  const spawnMain = (dataDir: string) =>
    spawn(process.execPath, [main], {
      env: { ...process.env, DATA_DIR: dataDir, RESP_PORT: '0', PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });

  it('SIGTERM drains, saves DATA_DIR/dump.rdb and exits 0; the next process serves the data', async () => {
    const dir = tempDir();
    for (const round of [1, 2]) {
      const child = spawnMain(dir);
      const exited = once(child, 'exit');
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => {
        output += chunk.toString();
      });
      await until(() => /"url":"redis:\/\/127\.0\.0\.1:\d+"/.test(output));
      const port = Number(/"url":"redis:\/\/127\.0\.0\.1:(\d+)"/.exec(output)?.[1]);
      const client = connect(port);
      if (round === 1) await client.set('survives', 'a restart');
      else expect(await client.get('survives')).toBe('a restart');
      client.disconnect();
      child.kill('SIGTERM');
      const [code] = await exited;
      expect(code).toBe(0);
      expect(output).toContain('DB saved on disk');
    }
  });

  it("a corrupt dump.rdb: the process exits 1 with PB_ERR_RDB_LOAD and Redis's message", async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'dump.rdb'), Buffer.concat([Buffer.from('REDIS0010', 'latin1'), Buffer.from([0xfa, 0x09])]));
    const child = spawnMain(dir);
    let errors = '';
    child.stderr.on('data', (chunk: Buffer) => {
      errors += chunk.toString();
    });
    const [code] = await once(child, 'exit');
    expect(code).toBe(1);
    expect(errors).toContain('PB_ERR_RDB_LOAD');
    expect(errors).toContain('Short read or OOM loading DB. Unrecoverable error, aborting now.');
  });
});
