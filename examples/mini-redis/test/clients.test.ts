import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { createClient } from 'redis';
import { beforeEach, describe, expect, it } from 'vitest';
import { createPageCounter } from '../src/page-counter.js';
import { ioredisPerTest, miniRedisForFile } from './support.js';

// Real client libraries use mini-redis as they use Redis.

const server = miniRedisForFile();

describe.each([3, 2] as const)('ioredis, protocol %i', (protocol) => {
  const { connect, fresh } = ioredisPerTest(() => server.port, protocol);
  let redis: Redis;
  beforeEach(async () => {
    redis = await fresh();
  });

  it('strings, counters and expiry', async () => {
    expect(await redis.set('greeting', 'hello')).toBe('OK');
    expect(await redis.get('greeting')).toBe('hello');
    expect(await redis.get('missing')).toBeNull();
    expect(await redis.set('greeting', 'again', 'NX')).toBeNull();
    expect(await redis.incr('visits')).toBe(1);
    expect(await redis.incrby('visits', 41)).toBe(42);
    expect(await redis.incrbyfloat('price', '10.5')).toBe('10.5');
    expect(await redis.incrbyfloat('price', '0.1')).toBe('10.6');
    await expect(redis.incr('greeting')).rejects.toThrow('ERR value is not an integer or out of range');
    expect(await redis.mget('greeting', 'visits', 'missing')).toEqual(['hello', '42', null]);
    expect(await redis.getBuffer('greeting')).toEqual(Buffer.from('hello'));

    expect(await redis.expire('greeting', 100)).toBe(1);
    expect(await redis.ttl('greeting')).toBe(100);
    expect(await redis.persist('greeting')).toBe(1);
    expect(await redis.ttl('greeting')).toBe(-1);
    await redis.set('short', 'lived', 'PX', 50);
    expect(await redis.exists('short')).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 80));
    expect(await redis.get('short')).toBeNull();
    expect(await redis.ttl('short')).toBe(-2);
  });

  it('lists, hashes and sets', async () => {
    expect(await redis.rpush('queue', 'a', 'b', 'c')).toBe(3);
    expect(await redis.lpush('queue', 'z')).toBe(4);
    expect(await redis.lrange('queue', 0, -1)).toEqual(['z', 'a', 'b', 'c']);
    expect(await redis.lpop('queue')).toBe('z');
    expect(await redis.rpop('queue', 2)).toEqual(['c', 'b']);
    expect(await redis.llen('queue')).toBe(1);
    expect(await redis.lindex('queue', -1)).toBe('a');

    expect(await redis.hset('user:1', { name: 'Ada', born: '1815' })).toBe(2);
    expect(await redis.hget('user:1', 'name')).toBe('Ada');
    expect(await redis.hgetall('user:1')).toEqual({ name: 'Ada', born: '1815' });
    expect(await redis.hgetall('nobody')).toEqual({});
    expect(await redis.hincrby('user:1', 'born', 1)).toBe(1816);
    expect(await redis.hmget('user:1', 'name', 'missing')).toEqual(['Ada', null]);
    expect(await redis.hexists('user:1', 'name')).toBe(1);
    expect(await redis.hlen('user:1')).toBe(2);
    expect(await redis.hkeys('user:1')).toEqual(['name', 'born']);
    expect(await redis.hvals('user:1')).toEqual(['Ada', '1816']);
    expect(await redis.hdel('user:1', 'name', 'born')).toBe(2);
    expect(await redis.exists('user:1')).toBe(0);

    expect(await redis.sadd('tags', 'a', 'b', 'c', 'a')).toBe(3);
    expect((await redis.smembers('tags')).sort()).toEqual(['a', 'b', 'c']);
    expect(await redis.sismember('tags', 'b')).toBe(1);
    expect(await redis.scard('tags')).toBe(3);
    expect(['a', 'b', 'c']).toContain(await redis.srandmember('tags'));
    expect(await redis.srandmember('tags', -5)).toHaveLength(5);
    expect(await redis.srem('tags', 'a')).toBe(1);
    await expect(redis.lpush('tags', 'x')).rejects.toThrow('WRONGTYPE Operation against a key holding the wrong kind of value');
    expect(await redis.type('tags')).toBe('set');
  });

  it('BLPOP times out with null, and wakes up when another client pushes', async () => {
    const started = Date.now();
    expect(await redis.blpop('jobs', 0.1)).toBeNull();
    expect(Date.now() - started).toBeGreaterThanOrEqual(90);

    const waiting = redis.blpop('other', 'jobs', 0);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await connect().rpush('jobs', 'job-1', 'job-2')).toBe(2);
    expect(await waiting).toEqual(['jobs', 'job-1']);
    expect(await redis.brpop('jobs', 1)).toEqual(['jobs', 'job-2']);
  });

  it('CLIENT UNBLOCK ends a BLPOP or BZPOPMIN as its timeout would, or with -UNBLOCKED; a served one is not blocked', async () => {
    const other = connect();
    const id = await redis.client('ID');
    const waitBlocked = async (count: number): Promise<void> => {
      while (!String(await other.info('clients')).includes(`blocked_clients:${count}\r`)) {
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    };
    const timedOut = redis.blpop('nothing', 0);
    await waitBlocked(1);
    expect(await other.client('UNBLOCK', id)).toBe(1);
    expect(await timedOut).toBeNull();
    const failed = redis.bzpopmin('nothing', 0).then(
      () => 'answered',
      (error: Error) => error.message,
    );
    await waitBlocked(1);
    expect(await other.client('UNBLOCK', id, 'ERROR')).toBe(1);
    expect(await failed).toBe('UNBLOCKED client unblocked via CLIENT UNBLOCK');
    // Served by a push, then an UNBLOCK pipelined right behind the push finds nothing to unblock.
    const served = redis.blpop('jobs', 0);
    await waitBlocked(1);
    const [pushed, unblocked] = (await other.pipeline().rpush('jobs', 'job').client('UNBLOCK', id).exec()) ?? [];
    expect(pushed).toEqual([null, 1]);
    expect(unblocked).toEqual([null, 0]);
    expect(await served).toEqual(['jobs', 'job']);
    expect(await other.client('UNBLOCK', id)).toBe(0);
  });

  it('pipelines, MULTI/EXEC and WATCH', async () => {
    const results = await redis.pipeline().set('a', '1').incr('a').get('a').exec();
    expect(results).toEqual([
      [null, 'OK'],
      [null, 2],
      [null, '2'],
    ]);
    expect(await redis.multi().incr('a').hset('h', 'f', 'v').exec()).toEqual([
      [null, 3],
      [null, 1],
    ]);
    await redis.watch('a');
    await connect().set('a', 'changed elsewhere');
    expect(await redis.multi().set('a', 'mine').exec()).toBeNull();
    expect(await redis.get('a')).toBe('changed elsewhere');
  });

  it('scanStream visits every key; KEYS; SELECT; FLUSHDB; DBSIZE', async () => {
    await redis.mset(Object.fromEntries(Array.from({ length: 250 }, (_, i) => [`item:${i}`, String(i)])));
    await redis.set('other', 'x');
    const seen = new Set<string>();
    for await (const keys of redis.scanStream({ match: 'item:*', count: 20 })) for (const key of keys as string[]) seen.add(key);
    expect(seen.size).toBe(250);
    expect((await redis.keys('item:1?')).sort()).toEqual(Array.from({ length: 10 }, (_, i) => `item:1${i}`));
    expect(await redis.dbsize()).toBe(251);
    const db1 = connect({ db: 1 });
    expect(await db1.dbsize()).toBe(0);
    await db1.set('k', 'v');
    expect(await redis.flushdb()).toBe('OK');
    expect(await redis.dbsize()).toBe(0);
    expect(await db1.get('k')).toBe('v');
  });

  it('INFO and CONFIG, as monitoring tools read them', async () => {
    await redis.set('k', 'v');
    const info = await redis.info();
    expect(info).toMatch(/^# Server\r\nredis_version:7\./);
    expect(info).toContain('# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n');
    expect(await redis.config('GET', 'databases')).toEqual(['databases', '16']);
    expect(await redis.config('SET', 'timeout', '300')).toBe('OK');
    expect(await redis.config('GET', 'timeout')).toEqual(['timeout', '300']);
    await redis.config('SET', 'timeout', '0');
    const [seconds, micros] = (await redis.time()) as [number | string, number | string];
    expect(Math.abs(Number(seconds) * 1000 + Number(micros) / 1000 - Date.now())).toBeLessThan(2000);
  });
});

describe('other clients', () => {
  it('node-redis (RESP3)', async () => {
    const client = createClient({ url: `redis://127.0.0.1:${server.port}`, RESP: 3 });
    await client.connect();
    try {
      await client.flushAll();
      await client.set('k', 'v', { EX: 100 });
      expect(await client.get('k')).toBe('v');
      expect(await client.ttl('k')).toBe(100);
      await client.hSet('h', { a: '1', b: '2' });
      expect(await client.hGetAll('h')).toEqual({ a: '1', b: '2' });
      await client.rPush('l', ['x', 'y']);
      expect(await client.lRange('l', 0, -1)).toEqual(['x', 'y']);
      expect(await client.blPop('empty', 0.05)).toBeNull();
      expect(await client.blPop('l', 1)).toEqual({ key: 'l', element: 'x' });
      expect(await client.multi().incr('n').incr('n').exec()).toEqual([1, 2]);
    } finally {
      client.destroy();
    }
  });

  it('redis-cli', async () => {
    expect(existsSync('/usr/bin/redis-cli'), 'redis-cli not found: apt-get install redis-tools (bash .ci/run does)').toBe(true);
    const cli = async (...args: string[]): Promise<string> =>
      (await promisify(execFile)('/usr/bin/redis-cli', ['-h', '127.0.0.1', '-p', String(server.port), ...args])).stdout;
    expect(await cli('PING')).toBe('PONG\n');
    expect(await cli('SET', 'cli', 'works')).toBe('OK\n');
    expect(await cli('GET', 'cli')).toBe('works\n');
    expect(await cli('--no-raw', 'RPUSH', 'cli:list', 'a', 'b')).toBe('(integer) 2\n');
    expect(await cli('--no-raw', 'LRANGE', 'cli:list', '0', '-1')).toBe('1) "a"\n2) "b"\n');
    expect(await cli('-3', '--no-raw', 'HSET', 'cli:h', 'f', 'v')).toBe('(integer) 1\n');
    expect(await cli('-3', '--no-raw', 'HGETALL', 'cli:h')).toBe('1# "f" => "v"\n');
    expect(await cli('--no-raw', 'GET', 'cli:list')).toBe('(error) WRONGTYPE Operation against a key holding the wrong kind of value\n');
  });
});

describe('the consumer app (a page counter over HTTP, keeping counts in mini-redis through ioredis)', () => {
  it('counts page views in mini-redis', async () => {
    const { service, kv } = createPageCounter({ env: { KV_URL: `redis://127.0.0.1:${server.port}/2`, PORT: '0', HOST: '127.0.0.1' } });
    await service.start();
    try {
      const base = `http://127.0.0.1:${(service.binding('http').address as AddressInfo).port}`;
      expect(await (await fetch(`${base}/`)).json()).toEqual({ path: '/', views: 1, total: 1 });
      expect(await (await fetch(`${base}/about`)).json()).toEqual({ path: '/about', views: 1, total: 2 });
      expect(await (await fetch(`${base}/`)).json()).toEqual({ path: '/', views: 2, total: 3 });
      expect(await (await fetch(`${base}/stats`)).json()).toEqual({ total: 3, pages: { '/': 2, '/about': 1 } });
      expect((await fetch(`${base}/readyz`)).status).toBe(200);

      // The counts are in mini-redis, database 2 (from the URL), for anyone to read.
      const direct = new Redis({ port: server.port, host: '127.0.0.1', db: 2 });
      try {
        expect(await direct.get('views:total')).toBe('3');
        expect(await direct.hgetall('views:pages')).toEqual({ '/': '2', '/about': '1' });
      } finally {
        direct.disconnect();
      }
    } finally {
      await service.stop();
      kv.disconnect();
    }
  });
});
