import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CommandLine, RawClient, type Started, show, startMiniRedis, startRedisServer } from './support.js';

// maxmemory eviction: which keys each policy evicts, counted by key (mini-redis compares maxmemory
// with a running size estimate of its data, INFO memory's used_memory_dataset), the evicted
// keyspace event, WATCH, -OOM, and the CONFIG and OBJECT replies against a real redis-server.
// maxmemory counts the heap at start (used_memory_startup) plus that estimate, so a test sets it to
// the startup figure plus a share of the data.

let mini: Started | undefined;
let real: Started | undefined;
beforeAll(async () => {
  [mini, real] = await Promise.all([startMiniRedis(), startRedisServer()]);
});
afterAll(async () => {
  await Promise.all([mini?.stop(), real?.stop()]);
});

const text = (reply: Buffer | undefined): string => show(reply as Buffer);

/** A fresh connection on an emptied mini-redis, with eviction switched off until the test sets it. */
async function fresh(): Promise<RawClient> {
  const client = new RawClient((mini as Started).port);
  await client.send(['CONFIG SET maxmemory 0', 'CONFIG SET maxmemory-policy noeviction', 'CONFIG SET maxmemory-samples 5', 'FLUSHALL']);
  return client;
}

/** What maxmemory is compared with: the heap at start and the size estimate of the data. */
async function memory(client: RawClient): Promise<{ startup: number; dataset: number }> {
  const [info] = await client.send(['INFO memory']);
  const field = (name: string) => Number(new RegExp(`${name}:(\\d+)`).exec(info?.toString('latin1') ?? '')?.[1]);
  return { startup: field('used_memory_startup'), dataset: field('used_memory_dataset') };
}

/** A maxmemory that leaves `share` of the data's present size. */
async function limit(client: RawClient, share: number): Promise<number> {
  const { startup, dataset } = await memory(client);
  return startup + Math.floor(dataset * share);
}

async function evictedKeys(client: RawClient): Promise<number> {
  const [info] = await client.send(['INFO stats']);
  return Number(/evicted_keys:(\d+)/.exec(info?.toString('latin1') ?? '')?.[1]);
}

/** Which of the keys are still there. */
async function existing(client: RawClient, keys: readonly string[]): Promise<string[]> {
  const replies = await client.send(keys.map((key) => `EXISTS ${key}`));
  return keys.filter((_, i) => text(replies[i]) === ':1⏎');
}

const value = 'x'.repeat(100);
const keys = (prefix: string, count: number): string[] => Array.from({ length: count }, (_, i) => `${prefix}${String(i).padStart(2, '0')}`);

describe('maxmemory eviction', () => {
  it('allkeys-lru evicts the least recently used keys first (enough samples to see them all)', async () => {
    const client = await fresh();
    try {
      const all = keys('k', 40);
      await client.send(all.map((key) => `SET ${key} ${value}`));
      // The LRU clock has a resolution of one second, as Redis's: let the keys age, then touch half.
      await new Promise((resolve) => setTimeout(resolve, 2200));
      const recent = all.slice(0, 20);
      await client.send(recent.map((key) => `GET ${key}`));
      const [idle] = await client.send(['OBJECT IDLETIME k39']);
      expect(Number(text(idle).slice(1, -1))).toBeGreaterThanOrEqual(2);
      const max = await limit(client, 0.6);
      await client.send(['CONFIG SET maxmemory-samples 64', 'CONFIG SET maxmemory-policy allkeys-lru']);
      expect((await client.send([`CONFIG SET maxmemory ${max}`])).map(text)).toEqual(['+OK⏎']);
      const left = await existing(client, all);
      expect(left.length).toBeLessThan(all.length);
      expect(await evictedKeys(client)).toBeGreaterThanOrEqual(all.length - left.length);
      // Every recently read key is still there: only idle ones went.
      expect(left.filter((key) => recent.includes(key))).toEqual(recent);
      const after = await memory(client);
      expect(after.startup + after.dataset).toBeLessThanOrEqual(max);
    } finally {
      client.close();
    }
  });

  it('volatile-lru and volatile-random evict only keys with a TTL', async () => {
    for (const policy of ['volatile-lru', 'volatile-random', 'volatile-lfu']) {
      const client = await fresh();
      try {
        const persistent = keys('p', 20);
        const volatile = keys('v', 20);
        await client.send([...persistent.map((key) => `SET ${key} ${value}`), ...volatile.map((key) => `SET ${key} ${value} EX 1000`)]);
        const max = await limit(client, 0.75);
        await client.send([`CONFIG SET maxmemory-policy ${policy}`, `CONFIG SET maxmemory ${max}`]);
        expect(await existing(client, persistent)).toEqual(persistent);
        const left = await existing(client, volatile);
        expect(left.length).toBeLessThan(volatile.length);
        expect(left.length).toBeGreaterThan(0);
      } finally {
        client.close();
      }
    }
  });

  it('volatile-ttl evicts the keys that expire soonest', async () => {
    const client = await fresh();
    try {
      const volatile = keys('t', 30);
      await client.send([
        ...keys('p', 10).map((key) => `SET ${key} ${value}`),
        ...volatile.map((key, i) => `SET ${key} ${value} EX ${1000 + 100 * i}`),
      ]);
      const max = await limit(client, 0.7);
      await client.send(['CONFIG SET maxmemory-samples 64', 'CONFIG SET maxmemory-policy volatile-ttl']);
      await client.send([`CONFIG SET maxmemory ${max}`]);
      const left = await existing(client, volatile);
      const gone = volatile.length - left.length;
      expect(gone).toBeGreaterThan(0);
      // Exactly the `gone` soonest are missing: the ones left are the latest to expire.
      expect(left).toEqual(volatile.slice(gone));
      expect(await existing(client, keys('p', 10))).toEqual(keys('p', 10));
    } finally {
      client.close();
    }
  });

  it('allkeys-lfu keeps the frequently read keys; OBJECT FREQ and IDLETIME answer by policy', async () => {
    const client = await fresh();
    try {
      const all = keys('f', 30);
      await client.send([
        'CONFIG SET maxmemory-policy allkeys-lfu',
        'CONFIG SET lfu-log-factor 0',
        ...all.map((key) => `SET ${key} ${value}`),
      ]);
      const hot = all.slice(10, 20);
      for (let round = 0; round < 10; round++) await client.send(hot.map((key) => `GET ${key}`));
      const [freqHot, freqCold, idle] = await client.send(['OBJECT FREQ f10', 'OBJECT FREQ f00', 'OBJECT IDLETIME f00']);
      expect(text(freqHot)).toBe(':15⏎'); // the initial 5, plus one per read with lfu-log-factor 0
      expect(text(freqCold)).toBe(':5⏎');
      expect(text(idle)).toBe(
        '-ERR An LFU maxmemory policy is selected, idle time not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.⏎',
      );
      const max = await limit(client, 0.5);
      await client.send(['CONFIG SET maxmemory-samples 64', `CONFIG SET maxmemory ${max}`]);
      expect(await existing(client, hot)).toEqual(hot);
      expect((await existing(client, all)).length).toBeLessThan(all.length);
      await client.send(['CONFIG SET lfu-log-factor 10']);
    } finally {
      client.close();
    }
  });

  it('-OOM when the policy finds nothing to evict (volatile-* without TTLs, noeviction); reads still work', async () => {
    const client = await fresh();
    try {
      await client.send(keys('p', 10).map((key) => `SET ${key} ${value}`));
      const oom = "-OOM command not allowed when used memory > 'maxmemory'.⏎";
      for (const policy of ['volatile-lru', 'volatile-ttl', 'volatile-random', 'volatile-lfu', 'noeviction']) {
        const replies = await client.send([
          `CONFIG SET maxmemory-policy ${policy}`,
          'CONFIG SET maxmemory 100',
          'SET new 1',
          'GET p00',
          'DEL p01',
        ]);
        expect(replies.map(text)).toEqual(['+OK⏎', '+OK⏎', oom, `$100⏎${value}⏎`, ':1⏎']);
        await client.send(['CONFIG SET maxmemory 0', `SET p01 ${value}`]);
      }
      expect(await existing(client, keys('p', 10))).toEqual(keys('p', 10));
    } finally {
      client.close();
    }
  });

  it("an evicted key publishes `evicted`, counts in evicted_keys and dirties a WATCH (Redis's pubsub test, maxmemory 1)", async () => {
    const client = await fresh();
    const subscriber = new RawClient((mini as Started).port);
    try {
      await client.send(['CONFIG SET notify-keyspace-events Ee', 'CONFIG SET maxmemory-policy allkeys-lru', 'SET foo bar', 'WATCH foo']);
      expect((await subscriber.send(['PSUBSCRIBE *'])).map(text)).toEqual(['*3⏎$10⏎psubscribe⏎$1⏎*⏎:1⏎']);
      const before = await evictedKeys(client);
      await client.send(['CONFIG SET maxmemory 1']);
      expect(text((await subscriber.read(1))[0])).toBe('*4⏎$8⏎pmessage⏎$1⏎*⏎$22⏎__keyevent@0__:evicted⏎$3⏎foo⏎');
      expect(await evictedKeys(client)).toBe(before + 1);
      // Nothing left to evict and still over (the server's own memory is more than 1 byte): -OOM, as Redis.
      expect((await client.send(['SET bar x'])).map(text)).toEqual(["-OOM command not allowed when used memory > 'maxmemory'.⏎"]);
      await client.send(['CONFIG SET maxmemory 0']);
      expect((await client.send(['MULTI', 'SET foo again', 'EXEC'])).map(text)).toEqual(['+OK⏎', '+QUEUED⏎', '*-1⏎']);
      expect((await client.send([['CONFIG', 'SET', 'notify-keyspace-events', '']])).map(text)).toEqual(['+OK⏎']);
    } finally {
      subscriber.close();
      client.close();
    }
  });

  it('allkeys-random evicts until the data fits', async () => {
    const client = await fresh();
    try {
      const all = keys('r', 40);
      await client.send(all.map((key) => `SET ${key} ${value}`));
      const max = await limit(client, 0.5);
      await client.send(['CONFIG SET maxmemory-policy allkeys-random', `CONFIG SET maxmemory ${max}`]);
      const left = await existing(client, all);
      expect(left.length).toBeLessThanOrEqual(20);
      expect(left.length).toBeGreaterThan(0);
      const after = await memory(client);
      expect(after.startup + after.dataset).toBeLessThanOrEqual(max);
    } finally {
      client.close();
    }
  });

  it('CONFIG and OBJECT answer as redis-server 7.0.15 (errors byte for byte)', async () => {
    const script: CommandLine[] = [
      'CONFIG SET maxmemory-policy bogus',
      'CONFIG SET maxmemory-policy ALLKEYS-LRU',
      'CONFIG GET maxmemory-policy',
      'CONFIG SET maxmemory-samples 0',
      'CONFIG SET maxmemory-samples 65',
      'CONFIG SET maxmemory-samples 10',
      'CONFIG GET maxmemory-samples',
      'CONFIG SET lfu-log-factor -1',
      'CONFIG SET lfu-decay-time x',
      'SET k v',
      'OBJECT FREQ k',
      'OBJECT IDLETIME k',
      'CONFIG SET maxmemory-policy volatile-lfu',
      'OBJECT FREQ k',
      'OBJECT IDLETIME k',
      'OBJECT FREQ missing',
      'CONFIG SET maxmemory-policy noeviction',
      'CONFIG SET maxmemory-samples 5',
    ];
    const replies = await Promise.all(
      [real, mini].map(async (server) => {
        const client = new RawClient((server as Started).port);
        try {
          await client.send(['FLUSHALL']);
          return (await client.send(script)).map(text);
        } finally {
          client.close();
        }
      }),
    );
    expect(replies[1]).toEqual(replies[0]);
  });
});
