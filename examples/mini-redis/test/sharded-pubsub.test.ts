import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { promisify } from 'node:util';
import { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Started, startMiniRedis } from './support.js';

// Sharded pub/sub (Redis 7.0's SSUBSCRIBE, SUNSUBSCRIBE, SPUBLISH, PUBSUB SHARDCHANNELS and
// SHARDNUMSUB) on mini-redis, as its users' clients use it: ioredis (RESP2 and RESP3, and
// ioredis.Cluster's sharded subscribers against mini-redis in cluster mode) and redis-cli. The
// byte-level comparison with redis-server is in packages/resp/test/sharded-pubsub.test.ts.

const run = promisify(execFile);
const REDIS_CLI = '/usr/bin/redis-cli';

let plain: Started;
let clustered: Started;
const clients: Array<Redis | Cluster> = [];
const children: ChildProcess[] = [];

beforeAll(async () => {
  [plain, clustered] = await Promise.all([startMiniRedis(), startMiniRedis({ CLUSTER_ENABLED: 'yes' })]);
});

afterAll(async () => {
  for (const client of clients) client.disconnect();
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await Promise.all([plain.stop(), clustered.stop()]);
});

function client(port: number, protocol: 2 | 3): Redis {
  const redis = new Redis({ port, host: '127.0.0.1', protocol, maxRetriesPerRequest: 1 });
  clients.push(redis);
  return redis;
}

/** The next `smessage` event of a subscriber: [channel, message]. */
function nextMessage(subscriber: Redis | Cluster): Promise<[string, string]> {
  return new Promise((resolve) => subscriber.once('smessage', (channel: string, message: string) => resolve([channel, message])));
}

describe.each([2, 3] as const)('ioredis, protocol %i', (protocol) => {
  it('SSUBSCRIBE receives what SPUBLISH sends; PUBSUB SHARDCHANNELS / SHARDNUMSUB count the subscribers', async () => {
    const channel = `orders:{eu}:${protocol}`;
    const other = `orders:{us}:${protocol}`;
    const subscriber = client(plain.port, protocol);
    const publisher = client(plain.port, protocol);
    expect(await subscriber.ssubscribe(channel, other)).toBe(2);
    const received = nextMessage(subscriber);
    expect(await publisher.spublish(channel, 'order 1 shipped')).toBe(1);
    expect(await received).toEqual([channel, 'order 1 shipped']);
    // Sharded messages do not reach plain subscribers, and PUBLISH does not reach shard subscribers.
    expect(await publisher.publish(channel, 'not sharded')).toBe(0);
    expect(new Set((await publisher.call('PUBSUB', 'SHARDCHANNELS', `orders:*:${protocol}`)) as string[])).toEqual(
      new Set([channel, other]),
    );
    expect(await publisher.call('PUBSUB', 'SHARDNUMSUB', channel, 'nobody')).toEqual([channel, 1, 'nobody', 0]);
    expect(await subscriber.sunsubscribe(other)).toBe(1);
    expect(await publisher.spublish(other, 'lost')).toBe(0);
    const second = nextMessage(subscriber);
    expect(await publisher.spublish(channel, 'order 2 shipped')).toBe(1);
    expect(await second).toEqual([channel, 'order 2 shipped']);
    expect(await subscriber.sunsubscribe()).toBe(0);
    expect(await publisher.call('PUBSUB', 'SHARDCHANNELS', `orders:*:${protocol}`)).toEqual([]);
  });
});

describe('redis-cli', () => {
  it('redis-cli SSUBSCRIBE prints the messages redis-cli SPUBLISH sends', async () => {
    const subscriber = spawn(REDIS_CLI, ['-p', String(plain.port), 'SSUBSCRIBE', 'alerts{x}'], { stdio: ['pipe', 'pipe', 'pipe'] });
    children.push(subscriber);
    let output = '';
    let wake = (): void => {};
    subscriber.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      wake();
    });
    const exited = once(subscriber, 'exit');
    void exited.then(() => wake());
    /** Wait (event-driven, no sleep) until redis-cli has printed `text`. */
    const seen = async (text: string): Promise<void> => {
      while (!output.includes(text)) {
        if (subscriber.exitCode !== null) throw new Error(`redis-cli exited: ${output}`);
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
      }
    };
    await seen('ssubscribe\nalerts{x}\n1\n');
    const published = await run(REDIS_CLI, ['-p', String(plain.port), 'SPUBLISH', 'alerts{x}', 'disk full']);
    expect(published.stdout).toBe('1\n');
    await seen('smessage\nalerts{x}\ndisk full\n');
    const channels = await run(REDIS_CLI, ['-p', String(plain.port), 'PUBSUB', 'SHARDNUMSUB', 'alerts{x}']);
    expect(channels.stdout).toBe('alerts{x}\n1\n');
    subscriber.kill('SIGTERM');
    await exited;
  });
});

describe('ioredis.Cluster against mini-redis in cluster mode', () => {
  it('sharded subscribers follow the slot map: SSUBSCRIBE and SPUBLISH through the cluster client', async () => {
    const options = { redisOptions: { maxRetriesPerRequest: 1 }, shardedSubscribers: true };
    const subscriber = new Cluster([{ host: '127.0.0.1', port: clustered.port }], options);
    const publisher = new Cluster([{ host: '127.0.0.1', port: clustered.port }], options);
    clients.push(subscriber, publisher);
    await subscriber.ssubscribe('jobs{1}');
    const received = nextMessage(subscriber);
    expect(await publisher.spublish('jobs{1}', 'run')).toBe(1);
    expect(await received).toEqual(['jobs{1}', 'run']);
    expect(await publisher.call('PUBSUB', 'SHARDNUMSUB', 'jobs{1}')).toEqual(['jobs{1}', 1]);
  });
});
