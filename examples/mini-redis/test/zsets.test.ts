import type { Redis } from 'ioredis';
import { beforeEach, describe, expect, it } from 'vitest';
import { SortedSet } from '../src/sorted-set.js';
import { ioredisPerTest, miniRedisForFile } from './support.js';

// Sorted sets as the services that use them most: a leaderboard and a sliding-window rate
// limiter, over ioredis on both protocols. Byte-level equality with Redis is in differential.test.ts.

const server = miniRedisForFile();

describe.each([2, 3] as const)('sorted sets over ioredis, protocol %i', (protocol) => {
  const { connect, fresh } = ioredisPerTest(() => server.port, protocol);
  let redis: Redis;
  beforeEach(async () => {
    redis = await fresh();
  });

  it('a leaderboard: scores, increments, top N, a player’s rank, pages, removal', async () => {
    expect(await redis.zadd('board', 10, 'ann', 25, 'bob', 17.5, 'cy', 17.5, 'ada')).toBe(4);
    expect(await redis.zincrby('board', 5, 'ann')).toBe('15');
    expect(await redis.zadd('board', 'GT', 'CH', 12, 'ann', 30, 'bob')).toBe(1); // ann keeps 15, bob goes up
    expect(await redis.zrevrange('board', 0, 2, 'WITHSCORES')).toEqual(['bob', '30', 'cy', '17.5', 'ada', '17.5']);
    expect(await redis.zrevrank('board', 'ann')).toBe(3);
    expect(await redis.zrank('board', 'ada')).toBe(1); // equal scores: by member bytes
    expect(await redis.zscore('board', 'cy')).toBe('17.5');
    expect(await redis.zscore('board', 'nobody')).toBeNull();
    expect(await redis.zcount('board', '(15', '+inf')).toBe(3);
    expect(await redis.zrange('board', '+inf', '16', 'BYSCORE', 'REV', 'LIMIT', 1, 2)).toEqual(['cy', 'ada']);
    expect(await redis.zcard('board')).toBe(4);
    expect(await redis.zrem('board', 'ann', 'nobody')).toBe(1);
    expect(await redis.zpopmax('board')).toEqual(['bob', '30']);
    await expect(redis.zadd('board', 'NX', 'XX', 1, 'x')).rejects.toThrow('ERR XX and NX options at the same time are not compatible');
    await expect(redis.zadd('board', 'nan', 'x')).rejects.toThrow('ERR value is not a valid float');
    await redis.set('plain', 'v');
    await expect(redis.zadd('plain', 1, 'x')).rejects.toThrow('WRONGTYPE');
  });

  it('a sliding-window rate limiter: ZREMRANGEBYSCORE, ZADD, ZCARD in MULTI', async () => {
    const limit = 5;
    const windowMs = 1000;
    let now = 1_000_000; // a fake clock: the limiter is tested by its arithmetic, not by sleeping
    let sequence = 0;
    const allow = async (user: string): Promise<boolean> => {
      const key = `rate:${user}`;
      const result = await redis
        .multi()
        .zremrangebyscore(key, '-inf', now - windowMs)
        .zadd(key, now, `${now}-${sequence++}`)
        .zcard(key)
        .pexpire(key, windowMs)
        .exec();
      const count = result?.[2]?.[1] as number;
      return count <= limit;
    };
    const verdicts: boolean[] = [];
    for (let i = 0; i < 7; i++) {
      verdicts.push(await allow('ann'));
      now += 100;
    }
    expect(verdicts).toEqual([true, true, true, true, true, false, false]);
    expect(await allow('bob')).toBe(true); // one user's window is not another's
    // Requests were at +0 … +600 (denied ones count too). At +900 all 7 are inside the window.
    now += 200;
    expect(await allow('ann')).toBe(false);
    // At +1500 those at +500 and before have left it: +600, +900 and this one remain.
    now += 600;
    expect(await allow('ann')).toBe(true);
    expect(await redis.zcard('rate:ann')).toBeLessThanOrEqual(limit);
    expect(await redis.pttl('rate:ann')).toBeGreaterThan(0);
  });

  it('BZPOPMIN waits for a ZADD from another client', async () => {
    const waiter = connect();
    const popped = waiter.bzpopmin('jobs', 0);
    // Wait until the server has the client blocked, then add.
    for (;;) {
      const info = await redis.info('clients');
      if (/blocked_clients:1\r/.test(info)) break;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expect(await redis.zadd('jobs', 2, 'later', 1, 'soon')).toBe(2);
    expect(await popped).toEqual(['jobs', 'soon', '1']);
    expect(await redis.zrange('jobs', '0', '-1')).toEqual(['later']);
  });

  it('RENAME of a sorted set onto the key a BZPOPMIN waits for wakes it, as Redis', async () => {
    const waiter = connect();
    const popped = waiter.bzpopmin('ready', 0);
    for (;;) {
      const info = await redis.info('clients');
      if (/blocked_clients:1\r/.test(info)) break;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    await redis.zadd('staging', 3, 'c');
    expect(await redis.rename('staging', 'ready')).toBe('OK');
    expect(await popped).toEqual(['ready', 'c', '3']);
    expect(await redis.exists('ready')).toBe(0);
  });

  it('ZSCAN pages through a large sorted set, each member once, while it changes', async () => {
    const members = Array.from({ length: 1000 }, (_, i) => `m${i}`);
    await redis.zadd('big', ...members.flatMap((member, i) => [i % 97, member]));
    const seen = new Map<string, number>();
    let cursor = '0';
    let pages = 0;
    do {
      const [next, flat] = await redis.zscan('big', cursor, 'COUNT', 50);
      for (let i = 0; i < flat.length; i += 2) seen.set(flat[i] as string, (seen.get(flat[i] as string) ?? 0) + 1);
      if (pages === 3) await redis.zadd('big', 50, 'added-during-scan'); // may or may not be seen
      if (pages === 5) await redis.zrem('big', 'm999'); // may or may not be seen
      cursor = next;
      pages++;
    } while (cursor !== '0');
    expect(pages).toBeGreaterThan(10);
    for (const member of members.slice(0, 999)) expect(seen.get(member)).toBe(1);
    expect([...seen.values()].every((times) => times === 1)).toBe(true);
  });

  it('an empty sorted set is deleted, and a TTL expires it like any key', async () => {
    await redis.zadd('z', 1, 'a');
    expect(await redis.zpopmin('z')).toEqual(['a', '1']);
    expect(await redis.exists('z')).toBe(0);
    await redis.zadd('z', 1, 'a');
    await redis.pexpire('z', 30);
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(await redis.zcard('z')).toBe(0);
    expect(await redis.type('z')).toBe('none');
  });
});

describe('SortedSet (the skip list) against a sorted array', () => {
  it('ranks, positions and ranges agree after 5000 random adds, moves and removals', () => {
    const zset = new SortedSet();
    const model = new Map<string, number>();
    let seed = 42;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31; // deterministic: the same run every time
      return seed % n;
    };
    for (let step = 0; step < 5000; step++) {
      const member = `k${random(400)}`;
      if (random(4) === 0) {
        expect(zset.delete(member)).toBe(model.delete(member));
      } else {
        const score = random(50) - 25;
        zset.set(member, score);
        model.set(member, score);
      }
    }
    const sorted = [...model].sort(([a, x], [b, y]) => x - y || (a < b ? -1 : a > b ? 1 : 0));
    expect(zset.size).toBe(sorted.length);
    expect([...zset.entries()]).toEqual(sorted);
    sorted.forEach(([member], rank) => {
      expect(zset.rank(member)).toBe(rank);
      expect(zset.at(rank)?.member).toBe(member);
    });
    const range = { min: -3, max: 7, minex: true, maxex: false };
    const inRange = sorted.filter(([, score]) => score > -3 && score <= 7);
    expect(zset.firstInRange(range)?.member).toBe(inRange[0]?.[0]);
    expect(zset.lastInRange(range)?.member).toBe(inRange[inRange.length - 1]?.[0]);
    expect([...zset.entries()].reverse()).toEqual([...zset.walk(zset.last, true)].map((node) => [node.member, node.score]));
  });
});
