import { describe, expect, it } from 'vitest';
import { infoField, RawClient, show, spawnRedisServer, startMiniRedis, tempDirs, until } from './support.js';

// No eviction while clients are paused (CLIENT PAUSE WRITE or ALL), as Redis 7.0's performEvictions
// (isSafeToPerformEvictions: the dataset stays as it is during a pause): past a tiny maxmemory the keys
// stay, a write is held by the pause rather than refused with -OOM, and eviction resumes after
// CLIENT UNPAUSE. Each scenario runs on a real redis-server 7.0.15 and on mini-redis.

const tempDir = tempDirs('mini-redis-pause-eviction-');

/** Run `scenario` against a fresh redis-server 7.0.15 (a dir of its own), then a fresh mini-redis. */
async function onBoth<T>(scenario: (port: number) => Promise<T>): Promise<{ redis: T; mini: T }> {
  const redisServer = await spawnRedisServer(['--dir', tempDir()]);
  let redis: T;
  try {
    redis = await scenario(redisServer.port);
  } finally {
    await redisServer.stop();
  }
  const miniServer = await startMiniRedis();
  try {
    return { redis, mini: await scenario(miniServer.port) };
  } finally {
    await miniServer.stop();
  }
}

/** Pause writes past a tiny maxmemory with `policy`; what an admin sees while a writer is held, and after. */
async function pausedPastMaxmemory(
  port: number,
  policy: string,
): Promise<{ during: string[]; after: string[]; evicted: number; keys: number }> {
  const admin = new RawClient(port);
  const writer = new RawClient(port);
  const one = async (command: string): Promise<string> => show((await admin.send([command]))[0] as Buffer);
  const stat = async (name: string): Promise<number> => Number(infoField((await admin.send(['INFO stats']))[0] ?? '', name) ?? Number.NaN);
  try {
    await admin.send([`CONFIG SET maxmemory-policy ${policy}`, ...Array.from({ length: 10 }, (_, i) => `SET k${i} v${i}`)]);
    const during = [await one('CLIENT PAUSE 600000 WRITE'), await one('CONFIG SET maxmemory 1')];
    let answered = false;
    const held = writer.send(['SET x y']).then((replies) => {
      answered = true;
      return replies;
    });
    // The writer is held by the pause: CLIENT LIST shows its command.
    await until(async () => (await one('CLIENT LIST')).includes('cmd=set'), 'the SET to be held');
    during.push(await one('DBSIZE'), await one('GET k3'), `evicted_keys ${await stat('evicted_keys')}`, `answered ${answered}`);
    const after = [await one('CLIENT UNPAUSE')];
    await held;
    // A write after the pause evicts (redis-server already evicted for the held SET).
    await one('SET z 1');
    after.push(`answered ${answered}`);
    return { during, after, evicted: await stat('evicted_keys'), keys: Number((await one('DBSIZE')).slice(1, -1)) };
  } finally {
    admin.close();
    writer.close();
  }
}

describe('no eviction while clients are paused, as redis-server 7.0.15', () => {
  it('allkeys-random past maxmemory 1: every key stays and the write waits until CLIENT UNPAUSE, then keys are evicted', async () => {
    const { redis, mini } = await onBoth((port) => pausedPastMaxmemory(port, 'allkeys-random'));
    expect(redis.during).toEqual(['+OK⏎', '+OK⏎', ':10⏎', '$2⏎v3⏎', 'evicted_keys 0', 'answered false']);
    expect(mini.during).toEqual(redis.during);
    expect(mini.after).toEqual(redis.after);
    for (const server of [redis, mini]) {
      expect(server.evicted).toBeGreaterThanOrEqual(10);
      expect(server.keys).toBeLessThanOrEqual(1);
    }
  });

  it('noeviction past maxmemory 1: a write during the pause is held, not refused with -OOM', async () => {
    const { redis, mini } = await onBoth((port) => pausedPastMaxmemory(port, 'noeviction'));
    expect(redis.during).toEqual(['+OK⏎', '+OK⏎', ':10⏎', '$2⏎v3⏎', 'evicted_keys 0', 'answered false']);
    expect(mini.during).toEqual(redis.during);
    expect(mini.evicted).toBe(0);
    expect(mini.keys).toBeGreaterThanOrEqual(10);
  });
});
