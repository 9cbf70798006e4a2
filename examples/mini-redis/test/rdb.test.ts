import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { createMiniRedis } from '../src/app.js';
import { Crc64, crc64 } from '../src/crc64.js';
import { lzfCompress, lzfDecompress } from '../src/lzf.js';
import { decodeRdb, encodeRdb } from '../src/rdb.js';
import { SnapshotLoadError } from '../src/snapshot.js';
import { Keyspace } from '../src/store.js';
import { type Spawned, spawnRedisServer, startMiniRedis, tempDirs } from './support.js';

// The RDB file both ways against a real redis-server 7.0.15: what mini-redis's SAVE writes, Redis
// loads (and redis-check-rdb accepts), and what Redis's SAVE writes, mini-redis loads, with every
// type in its compact and its big encoding, TTLs, several databases and binary keys.

const run = promisify(execFile);

/**
 * Files from Redis's own test suite (redis/redis 7.0.15, tests/assets/*.rdb, BSD-3-Clause), written
 * by Redis versions long gone: zipmap hashes (RDB 3), ziplist hashes, sets, lists and sorted sets,
 * intsets (RDB 4), quicklist 1 (RDB 8), ziplist hashes and sorted sets (RDB 9, 10).
 */
const REDIS_ASSETS: Record<string, string> = {
  encodings:
    'UkVESVMwMDA0/gADBHpzZXQMAmJiAjIwAmNjAjMwA2JiYgMyMDAEYmJiYgo1MDAwMDAwMDAwA2NjYwMzMDAEY2NjYwkxMjM0NTY3ODkBYQExAmFhAjEwAWIBMgNhYWEDMTAwAWMBMwRhYWFhBDEwMDALDHNldF96aXBwZWRfMRACAAAABAAAAAEAAgADAAQACgtsaXN0X3ppcHBlZDAwAAAAJQAAAAgAAMABAATAAgAEwAMABAFhAwFiAwFjA9CghgEABuAAvKBlAQAAAP8ABnN0cmluZwtIZWxsbyBXb3JsZAAMY29tcHJlc3NpYmxlwwlAiQFhYeB8AAFhYQsMc2V0X3ppcHBlZF8yGAQAAAAEAAAAoIYBAEANAwDgkwQAgBoGAAAGbnVtYmVywAoLDHNldF96aXBwZWRfMzgIAAAABgAAAADKmjsAAAAAAJQ1dwAAAAAAXtCyAAAAAAAoa+4AAAAAAPIFKgEAAAAAvKBlAQAAAAIDc2V0CAo2MDAwMDAwMDAwwqCGAQABYcABAWLAAgFjwAMBBGxpc3QYwAHAAsADAWEBYgFjwqCGAQAKNjAwMDAwMDAwMMABwALAAwFhAWIBY8KghgEACjYwMDAwMDAwMDDAAcACwAMBYQFiAWPCoIYBAAo2MDAwMDAwMDAwDQtoYXNoX3ppcHBlZCAgAAAAGwAAAAYAAAFhA8ABAAQBYgPAAgAEAWMDwAMA/wwLenNldF96aXBwZWQgIAAAABsAAAAGAAABYQPAAQAEAWIDwAIABAFjA8ADAP8EBGhhc2gLAWLAAgJhYcAKAWPAAwNhYWHAZAJiYsAUAmNjwB4DYmJiwcgAA2NjY8EsAQNkZGTBkAEDZWVlCjUwMDAwMDAwMDABYcAB/w==',
  'hash-zipmap': 'UkVESVMwMDAz/gAJBGhhc2gQAgJmMQIAdjECZjICAHYy//8=',
  'hash-ziplist':
    'UkVESVMwMDA5+glyZWRpcy12ZXILMjU1LjI1NS4yNTX6CnJlZGlzLWJpdHPAQPoFY3RpbWXCyFyWYPoIdXNlZC1tZW3CkK0MAPoMYW9mLXByZWFtYmxlwAD+APsBAA0EaGFzaBsbAAAAFgAAAAQAAAJmMQQCdjEEAmYyBAJ2Mv//T5zR/RZpmIM=',
  'zset-ziplist':
    'UkVESVMwMDEw+glyZWRpcy12ZXILMjU1LjI1NS4yNTX6CnJlZGlzLWJpdHPAQPoFY3RpbWXCYrcTYfoIdXNlZC1tZW3CUPQMAPoMYW9mLXByZWFtYmxlwAD+APsBAAwEenNldBkZAAAAFgAAAAQAAANvbmUF8gIDdHdvBfP//x+y/fCZf54Z',
  'list-quicklist':
    'UkVESVMwMDA4+glyZWRpcy12ZXIFNC4wLjn6CnJlZGlzLWJpdHPAQPoFY3RpbWXCnwYmYfoIdXNlZC1tZW3CgJIHAPoMYW9mLXByZWFtYmxlwAD+APsCAA4EbGlzdAENDQAAAAoAAAABAAD4/wABeMAH/zVy+FQaxNdA',
};
const tempDir = tempDirs('mini-redis-rdb-');

/** redis-server on a free port, loading `dir`/dump.rdb at start, saving nowhere on its own. */
const startRedisIn = (dir: string): Promise<Spawned> => spawnRedisServer(['--dir', dir, '--dbfilename', 'dump.rdb']);

const client = (port: number): Redis => new Redis({ port, host: '127.0.0.1', protocol: 2 } as never);

/** The same data written to either server through its commands. */
async function fill(redis: Redis): Promise<void> {
  const bigText = 'the quick brown fox jumps over the lazy dog '.repeat(300);
  const noise = randomBytes(4000);
  await redis.select(0);
  await redis.set('small', 'hello');
  await redis.set('int8', '-100');
  await redis.set('int16', '30000');
  await redis.set('int32', '-2000000000');
  await redis.set('int64', '9223372036854775807');
  await redis.set('not-an-int', '007');
  await redis.set('empty', '');
  await redis.set('compressible', bigText);
  await redis.set('noise', noise);
  await redis.set(Buffer.from([0, 255, 13, 10, 0x80]), Buffer.from([1, 2, 0, 3]));
  await redis.rpush('list:small', 'a', '1', '-7', '70000', 'x'.repeat(30));
  await redis.rpush('list:big', ...Array.from({ length: 2000 }, (_, i) => `element-${i}-${'y'.repeat(i % 50)}`));
  await redis.rpush('list:ints', ...Array.from({ length: 300 }, (_, i) => String(i * 1_000_003 - 4_000_000_000)));
  await redis.sadd('set:ints', '1', '2', '-3', '40000', '5000000000');
  await redis.sadd('set:strings', 'a', 'b', 'c');
  await redis.sadd('set:big', ...Array.from({ length: 1000 }, (_, i) => String(i)));
  await redis.hset('hash:small', 'f1', 'v1', 'n', '12', 'neg', '-1');
  await redis.hset('hash:long', 'f', 'z'.repeat(100));
  await redis.hset('hash:big', ...Array.from({ length: 1200 }, (_, i) => [`field${i}`, `value${i}`]).flat());
  await redis.zadd('zset:small', '1', 'one', '2.5', 'two-and-half', '-3', 'minus', 'inf', 'top', '-inf', 'bottom', '1e100', 'huge');
  await redis.zadd('zset:big', ...Array.from({ length: 300 }, (_, i) => [String(i / 7), `member${i}`]).flat());
  await redis.zadd('zset:long', '1', 'm'.repeat(100));
  await redis.set('ttl:string', 'v', 'PX', 500_000);
  await redis.rpush('ttl:list', 'a');
  await redis.pexpire('ttl:list', 800_000);
  await redis.select(3);
  await redis.set('in-db-3', 'three');
  await redis.hset('hash:db3', 'a', '1');
  await redis.select(15);
  await redis.set(Buffer.from([0xff, 0xfe]), 'binary key in db 15');
  await redis.select(0);
}

/** Every key of the databases, its type, value and whether it has a TTL, as comparable text. */
async function contents(redis: Redis): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const db of [0, 1, 3, 15]) {
    await redis.select(db);
    const keys = (await redis.keysBuffer('*')).sort(Buffer.compare);
    for (const keyBytes of keys) {
      const key = keyBytes.toString('hex');
      const type = await redis.type(keyBytes);
      const pttl = await redis.pttl(keyBytes);
      let value: unknown;
      if (type === 'string') value = (await redis.getBuffer(keyBytes))?.toString('hex');
      else if (type === 'list') value = (await redis.lrangeBuffer(keyBytes, 0, -1)).map((b) => b.toString('hex'));
      else if (type === 'set') value = (await redis.smembersBuffer(keyBytes)).map((b) => b.toString('hex')).sort();
      else if (type === 'hash')
        value = Object.entries(await redis.hgetallBuffer(keyBytes))
          .map(([field, data]) => `${Buffer.from(field).toString('hex')}=${data.toString('hex')}`)
          .sort();
      else if (type === 'zset') value = await redis.call('ZRANGE', keyBytes, '0', '-1', 'WITHSCORES');
      out[`${db}:${key}`] = { type, value, ttl: pttl > 0 ? 'yes' : String(pttl) };
    }
  }
  await redis.select(0);
  return out;
}

describe('CRC-64 and LZF', () => {
  it('CRC-64/Jones gives Redis check value for "123456789", and in pieces the same as at once', () => {
    expect(new Crc64().update(Buffer.from('123456789')).value.toString(16)).toBe('e9c6d914c4b8d9ca');
    const data = randomBytes(10_000);
    expect(new Crc64().update(data, 0, 3000).update(data, 3000).digest()).toEqual(crc64(data));
  });

  it('LZF round-trips repetitive and random data, and declines what it cannot shrink', () => {
    for (const input of [
      Buffer.from('a'.repeat(1000)),
      Buffer.from('abcabcabd'.repeat(500)),
      Buffer.from(`${'xy'.repeat(40)}${'z'.repeat(300)}`),
    ]) {
      const packed = lzfCompress(input, input.length - 4);
      expect(packed).toBeDefined();
      expect(lzfDecompress(packed as Buffer, input.length)).toEqual(input);
    }
    expect(lzfCompress(randomBytes(500), 496)).toBeUndefined();
    expect(lzfDecompress(Buffer.from([0xe0, 0x05]), 10)).toBeUndefined(); // a reference before the start
  });
});

describe('RDB files and redis-server 7.0.15', () => {
  it("redis-server loads mini-redis's dump.rdb and serves the same data; redis-check-rdb accepts it", async () => {
    const dir = tempDir();
    const mini = await startMiniRedis({ DATA_DIR: dir, SAVE: '' });
    const miniClient = client(mini.port);
    try {
      await fill(miniClient);
      expect(await miniClient.save()).toBe('OK');
      const expected = await contents(miniClient);
      expect(Object.keys(expected)).toHaveLength(27);
      const check = await run('redis-check-rdb', [join(dir, 'dump.rdb')]);
      expect(check.stdout).toContain('RDB looks OK');
      const redis = await startRedisIn(dir);
      const redisClient = client(redis.port);
      try {
        expect(await contents(redisClient)).toEqual(expected);
        // Redis chose its compact encodings as it loaded the plain types mini-redis writes.
        expect(await redisClient.object('ENCODING', 'hash:small')).toBe('listpack');
        expect(await redisClient.object('ENCODING', 'hash:big')).toBe('hashtable');
        expect(await redisClient.object('ENCODING', 'set:ints')).toBe('intset');
        expect(await redisClient.object('ENCODING', 'zset:small')).toBe('listpack');
        expect(await redisClient.object('ENCODING', 'zset:big')).toBe('skiplist');
        expect(await redisClient.object('ENCODING', 'int16')).toBe('int');
      } finally {
        redisClient.disconnect();
        await redis.stop();
      }
    } finally {
      miniClient.disconnect();
      await mini.stop();
    }
  });

  it("mini-redis loads the dump.rdb redis-server's SAVE writes (listpacks, intsets, quicklists, LZF, TTLs, 3 databases)", async () => {
    const dir = tempDir();
    const redis = await startRedisIn(dir);
    const redisClient = client(redis.port);
    let expected: Record<string, unknown>;
    try {
      await fill(redisClient);
      expect(await redisClient.save()).toBe('OK');
      expected = await contents(redisClient);
      expect(Object.keys(expected)).toHaveLength(27);
    } finally {
      redisClient.disconnect();
      await redis.stop();
    }
    const mini = await startMiniRedis({ DATA_DIR: dir, SAVE: '' });
    const miniClient = client(mini.port);
    try {
      expect(await contents(miniClient)).toEqual(expected);
      const info = await miniClient.info('persistence');
      expect(info).toMatch(/rdb_last_load_keys_loaded:\d{2}/);
    } finally {
      miniClient.disconnect();
      await mini.stop();
    }
  });

  it('streams both ways: entries, deletions, consumer groups, pending entries and consumers', async () => {
    /** A stream's entries, metadata, groups and pending entries, without what depends on the clock or on nodes. */
    const streamState = async (redis: Redis): Promise<unknown> => {
      const info = (await redis.call('XINFO', 'STREAM', 'events')) as unknown[];
      const fields = new Map<string, unknown>();
      for (let i = 0; i < info.length; i += 2) fields.set(String(info[i]), info[i + 1]);
      const groups = ((await redis.call('XINFO', 'GROUPS', 'events')) as unknown[][]).map((group) => JSON.stringify(group));
      return {
        entries: await redis.xrange('events', '-', '+'),
        length: fields.get('length'),
        lastId: fields.get('last-generated-id'),
        maxDeleted: fields.get('max-deleted-entry-id'),
        added: fields.get('entries-added'),
        first: fields.get('recorded-first-entry-id'),
        groups,
        pending: ((await redis.call('XPENDING', 'events', 'readers', '-', '+', '100')) as unknown[][]).map(([id, consumer, , count]) => [
          id,
          consumer,
          count,
        ]),
        consumers: ((await redis.call('XINFO', 'CONSUMERS', 'events', 'readers')) as unknown[][]).map((consumer) => [
          consumer[1],
          consumer[3],
        ]),
        empty: await redis.call('XINFO', 'GROUPS', 'empty'),
      };
    };
    const build = async (redis: Redis): Promise<void> => {
      await redis.flushall();
      for (let i = 1; i <= 250; i++)
        await redis.xadd('events', `${1000 + Math.floor(i / 3)}-${i}`, 'kind', i % 5 === 0 ? 'other' : 'click', 'n', String(i));
      await redis.xadd('events', '5000-0', 'different', 'fields', 'entirely', 'x'.repeat(300));
      await redis.xdel('events', '1001-3', '1010-30');
      await redis.xgroup('CREATE', 'events', 'readers', '0');
      await redis.xgroup('CREATE', 'events', 'idle', '$');
      await redis.xreadgroup('GROUP', 'readers', 'alice', 'COUNT', '5', 'STREAMS', 'events', '>');
      await redis.xreadgroup('GROUP', 'readers', 'bob', 'COUNT', '3', 'STREAMS', 'events', '>');
      await redis.xack('events', 'readers', '1000-2');
      await redis.call('XGROUP', 'CREATECONSUMER', 'events', 'readers', 'carol');
      await redis.xadd('empty', '1-1', 'a', 'b');
      await redis.xdel('empty', '1-1');
      await redis.xgroup('CREATE', 'empty', 'g', '$');
    };
    for (const [writer, reader] of [
      ['redis', 'mini'],
      ['mini', 'redis'],
    ] as const) {
      const dir = tempDir();
      const startIn = (which: 'redis' | 'mini') => (which === 'redis' ? startRedisIn(dir) : startMiniRedis({ DATA_DIR: dir, SAVE: '' }));
      const source = await startIn(writer);
      const sourceClient = client(source.port);
      let expected: unknown;
      try {
        await build(sourceClient);
        expect(await sourceClient.save()).toBe('OK');
        expected = await streamState(sourceClient);
        expect(expected).toMatchObject({ length: 249, added: 251, maxDeleted: '1010-30', first: '1000-1' });
        expect((expected as { pending: unknown[]; consumers: unknown[] }).pending).toHaveLength(7);
      } finally {
        sourceClient.disconnect();
        await source.stop();
      }
      if (writer === 'mini') expect((await run('redis-check-rdb', [join(dir, 'dump.rdb')])).stdout).toContain('RDB looks OK');
      const target = await startIn(reader);
      const targetClient = client(target.port);
      try {
        expect(await streamState(targetClient)).toEqual(expected);
      } finally {
        targetClient.disconnect();
        await target.stop();
      }
    }
  });

  it('older files (versions 3-10: zipmap, ziplists, intsets, quicklist 1): mini-redis reads what redis-server reads', async () => {
    for (const [name, base64] of Object.entries(REDIS_ASSETS)) {
      const dir = tempDir();
      writeFileSync(join(dir, 'dump.rdb'), Buffer.from(base64, 'base64'));
      const redis = await startRedisIn(dir);
      const redisClient = client(redis.port);
      let expected: Record<string, unknown>;
      try {
        expected = await contents(redisClient);
      } finally {
        redisClient.disconnect();
        await redis.stop();
      }
      expect(Object.keys(expected).length, name).toBeGreaterThan(0);
      const mini = await startMiniRedis({ DATA_DIR: dir, SAVE: '' });
      const miniClient = client(mini.port);
      try {
        expect(await contents(miniClient), name).toEqual(expected);
      } finally {
        miniClient.disconnect();
        await mini.stop();
      }
    }
  });

  it('a module value in the file is an error that names the type and the key', () => {
    const file = Buffer.concat([Buffer.from('REDIS0010', 'latin1'), Buffer.from([7, 1, 0x6b, 0x81, 0, 0, 0, 0, 0, 0, 0, 1])]);
    expect(() => decodeRdb(file)).toThrow("The RDB holds a module value (RDB_TYPE_MODULE_2) at key 'k': mini-redis cannot load it");
  });
});

/** Also from Redis's tests/assets: empty collections of every encoding (skipped), and a corrupt ziplist. */
const EMPTY_KEYS =
  'UkVESVMwMDEw+glyZWRpcy12ZXILMjU1LjI1NS4yNTX6CnJlZGlzLWJpdHPAQPoFY3RpbWXCehgVYfoIdXNlZC1tZW3CgDEQAPoMYW9mLXByZWFtYmxlwAD+APsJAAIDc2V0AAQEaGFzaAAKDGxpc3RfemlwbGlzdAsLAAAACgAAAAAA/wUEenNldAARDXpzZXRfbGlzdHBhY2sHBwAAAAAA/xAMaGFzaF96aXBsaXN0BwcAAAAAAP8ODmxpc3RfcXVpY2tsaXN0AAwMenNldF96aXBsaXN0CwsAAAAKAAAAAAD/DhxsaXN0X3F1aWNrbGlzdF9lbXB0eV96aXBsaXN0AQsLAAAACgAAAAAA///w9Qbdxm5hgw==';
const CORRUPT_ZIPLIST =
  'UkVESVMwMDA3+glyZWRpcy12ZXILOTk5Ljk5OS45OTn6CnJlZGlzLWJpdHPAQPoFY3RpbWXCiQDNV/oIdXNlZC1tZW3C4LsLAP4A+zYAABBrZXk6MDAwMDAwMDAwMDc0BXh4eHh4ABBrZXk6MDAwMDAwMDAwMTI1BXh4eHh4DgZteWxpc3QBLi4AAAAmAAAABQAABXh4eHh4BwV4eHh4eAcFeHh4eHgHBXh4eHh4BwV4eHh4eP8AFGNvdW50ZXI6MDAwMDAwMDAwMDI2wAEAEGtleTowMDAwMDAwMDAwMzQFeHh4eHgAEGtleTowMDAwMDAwMDAxMDkFeHh4eHgAFGNvdW50ZXI6MDAwMDAwMDAwMDcxwAEAEGtleTowMDAwMDAwMDAwMjIFeHh4eHgAEGtleTowMDAwMDAwMDAwNTYFeHh4eHgAEGtleTowMDAwMDAwMDAwMjUFeHh4eHgAEGtleTowMDAwMDAwMDAwMTUFeHh4eHgAEGtleTowMDAwMDAwMDAwMTgFeHh4eHgAEGtleTowMDAwMDAwMDAwNjgFeHh4eHgAEGtleTowMDAwMDAwMDAwNjcFeHh4eHgAEGtleTowMDAwMDAwMDAwNDIF/////3gNEGtleTowMDAwMDAwMDAwOTEFeHh4eHgAEGtleTowMDAwMDAwMDAxMjYFeHh4eHgAEGtleTowMDAwMDAwMDAwMDUFeHh4eHgAEGtleTowMDAwMDAwMDAxMDAFeHh4eHgAEGtleTowMDAwMDAwMDAxMTgFeHh4eHgAEGtleTowMDAwMDAwMDAxMTIFeHh4eHgAEGtleTowMDAwMDAwMDAxMTMFeHh4eHgAEGtleTowMDAwMDAwMDAwODUFeHh4eHgAEGtleTowMDAwMDAwMDAwODEFeHh4eHgAEGtleTowMDAwMDAwMDAwMDEFeHh4eHgAEGtleTowMDAwMDAwMDAwMTIFeHh4eHgAEGtleTowMDAwMDAwMDAwNTgFeHh4eHgAEGtleTowMDAwMDAwMDAwOTAFeHh4eHgAEGtleTowMDAwMDAwMDAwOTkFeHh4eHgAEGtleTowMDAwMDAwMDAwNDgFeHh4eHgAEGtleTowMDAwMDAwMDAwODcFeHh4eHgAEGtleTowMDAwMDAwMDAwNzEFeHh4eHgAEGtleTowMDAwMDAwMDAxMTEFeHh4eHgAEGtleTowMDAwMDAwMDAwODYFeHh4eHgAEGtleTowMDAwMDAwMDAxMDYFeHh4eHgAEGtleTowMDAwMDAwMDAwMTMFeHh4eHgAEGtleTowMDAwMDAwMDAwMjkFeHh4eHgAEGtleTowMDAwMDAwMDAxMjIFeHh4eHgAFGNvdW50ZXI6MDAwMDAwMDAwMDMywAEAEGtleTowMDAwMDAwMDAwOTIFeHh4eHgAEGtleTowMDAwMDAwMDAwNzIFeHh4eHgAEGtleTowMDAwMDAwMDAwODkFeHh4eHgAEGtleTowMDAwMDAwMDAwMjEFeHh4eHgAEGtleTowMDAwMDAwMDAwNjkFeHh4eHgAEGtleTowMDAwMDAwMDAwMTcFeHh4eHgAEGtleTowMDAwMDAwMDAwNTkFeHh4eHgAEGtleTowMDAwMDAwMDAxMTYFeHh4eHgAEGtleTowMDAwMDAwMDAwNjMFeHh4eHgAEGtleTowMDAwMDAwMDAwMDYFeHh4eHgAEGtleTowMDAwMDAwMDAwNTUFeHh4eHgAEGtleTowMDAwMDAwMDAwNDYFeHh4eHgAFGNvdW50ZXI6MDAwMDAwMDAwMDkxwAEAFGNvdW50ZXI6MDAwMDAwMDAwMDI0wAEAEGtleTowMDAwMDAwMDAwMzIFeHh4eHj/AAAAAAAAAAA=';

describe('loading at start', () => {
  const fileWith = (data: Buffer): string => {
    const dir = tempDir();
    writeFileSync(join(dir, 'dump.rdb'), data);
    return dir;
  };
  const sample = (): Buffer => {
    const keyspace = new Keyspace();
    keyspace.db(0).set('k', { type: 'string', data: Buffer.from('value') });
    return encodeRdb({ keyspace });
  };
  const failure = (dir: string): SnapshotLoadError => {
    try {
      createMiniRedis({ env: { DATA_DIR: dir, RESP_PORT: '0', PORT: '0', HOST: '127.0.0.1' } });
    } catch (error) {
      return error as SnapshotLoadError;
    }
    throw new Error('createMiniRedis did not fail');
  };

  it('a truncated file: PB_ERR_RDB_LOAD with Redis\'s "Short read" message', () => {
    const data = sample();
    const error = failure(fileWith(data.subarray(0, data.length - 12)));
    expect(error).toBeInstanceOf(SnapshotLoadError);
    expect(error.code).toBe('PB_ERR_RDB_LOAD');
    expect(error.message).toContain('Short read or OOM loading DB. Unrecoverable error, aborting now.');
  });

  it('a flipped byte: PB_ERR_RDB_LOAD with "Wrong RDB checksum"', () => {
    const data = Buffer.from(sample());
    const at = data.indexOf('value');
    data[at] = 'V'.charCodeAt(0);
    const error = failure(fileWith(data));
    expect(error.code).toBe('PB_ERR_RDB_LOAD');
    expect(error.message).toMatch(/Wrong RDB checksum expected: \([0-9a-f]+\) but got \([0-9a-f]+\)/);
  });

  it("Redis's corrupt_empty_keys.rdb: every empty collection is skipped, as redis-server does", () => {
    const decoded = decodeRdb(Buffer.from(EMPTY_KEYS, 'base64'));
    expect(decoded.databases.get(0)).toEqual([]);
    expect(decoded.emptySkipped).toBe(9);
  });

  it("Redis's corrupt_ziplist.rdb: PB_ERR_RDB_LOAD, an integrity check failed", () => {
    const error = failure(fileWith(Buffer.from(CORRUPT_ZIPLIST, 'base64')));
    expect(error.code).toBe('PB_ERR_RDB_LOAD');
    expect(error.message).toContain('integrity check failed');
  });

  it('not an RDB file: PB_ERR_RDB_LOAD "Wrong signature"', () => {
    const error = failure(fileWith(Buffer.from('this is not redis data')));
    expect(error.message).toContain('Wrong signature trying to load DB from file');
  });
});
