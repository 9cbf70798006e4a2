import { type ChildProcess, spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { eventually, type RestartableRedis, startRestartableRedis } from '../../bus-redis/test/redis.js';

// RESP pub/sub across real processes: each a node process (packages/bus-redis/test/fixtures/resp-process.mjs,
// from the packages' dist/) with a respAdapter on BUS_URL, against a real redis-server. A process killed
// with SIGKILL stops counting in PUBSUB after its presence TTL; Redis killed and restarted in the middle.

const fixture = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bus-redis', 'test', 'fixtures', 'resp-process.mjs');

let redis: RestartableRedis;
const children: ChildProcess[] = [];
const clients: Redis[] = [];

beforeAll(async () => {
  redis = await startRestartableRedis();
});
afterAll(async () => {
  await redis.stop();
});
afterEach(() => {
  for (const made of clients.splice(0)) made.disconnect();
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

interface Child {
  child: ChildProcess;
  port: number;
  events: string[];
}

async function startChild(namespace: string): Promise<Child> {
  const child = spawn(process.execPath, [fixture], {
    env: { ...process.env, BUS_URL: redis.url, BUS_NAMESPACE: namespace, PRESENCE_TTL_MS: '1000', NODE_ENV: 'test' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  const events: string[] = [];
  const lines = createInterface({ input: child.stdout as NonNullable<typeof child.stdout> });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`resp-process exited (${code}) before listening`)));
    lines.on('line', (line) => {
      const parsed = JSON.parse(line) as { port?: number; event?: string; kind?: string };
      if (parsed.port !== undefined) resolve(parsed.port);
      if (parsed.event !== undefined) events.push(parsed.kind === undefined ? parsed.event : `${parsed.event}:${parsed.kind}`);
    });
  });
  return { child, port, events };
}

function client(port: number): Redis {
  const made = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 2 });
  made.on('error', () => {}); // reconnection attempts to a killed process
  clients.push(made);
  return made;
}

describe('two processes', () => {
  it('PUBLISH on one reaches SUBSCRIBE/PSUBSCRIBE on the other; a SIGKILLed process stops counting after its TTL', async () => {
    const space = `procs-${process.pid}`;
    const [a, b] = await Promise.all([startChild(space), startChild(space)]);
    const subscriber = client(a.port);
    const received: string[] = [];
    subscriber.on('message', (channel: string, message: string) => received.push(`${channel}:${message}`));
    subscriber.on('pmessage', (pattern: string, _channel: string, message: string) => received.push(`${pattern}:${message}`));
    await subscriber.subscribe('orders');
    await subscriber.psubscribe('ord*');
    const publisher = client(b.port);
    await eventually('A’s subscriptions seen by B', async () => (await publisher.pubsub('NUMSUB', 'orders'))[1] === 1);
    expect(await publisher.pubsub('NUMPAT')).toBe(1);
    expect(await publisher.publish('orders', 'o-1')).toBe(2);
    await eventually('both frames', () => received.length === 2);
    expect(received.sort()).toEqual(['ord*:o-1', 'orders:o-1']);

    a.child.kill('SIGKILL');
    // Its presence entry is no longer refreshed: gone after PRESENCE_TTL_MS (1 s), seen at B's next refresh.
    await eventually('A’s subscriptions expired', async () => (await publisher.pubsub('NUMSUB', 'orders'))[1] === 0, 10_000);
    expect(await publisher.pubsub('NUMPAT')).toBe(0);
    expect(await publisher.publish('orders', 'o-2')).toBe(0);
  });

  it('Redis killed and restarted in the middle: both processes live, resubscribe and deliver again', async () => {
    const space = `restart-${process.pid}`;
    const [a, b] = await Promise.all([startChild(space), startChild(space)]);
    const subscriber = client(a.port);
    const received: string[] = [];
    subscriber.on('message', (_channel: string, message: string) => received.push(message));
    await subscriber.subscribe('feed');
    const publisher = client(b.port);
    await eventually('subscription seen by B', async () => (await publisher.pubsub('NUMSUB', 'feed'))[1] === 1);
    expect(await publisher.publish('feed', 'before')).toBe(1);
    await eventually('before', () => received.includes('before'));

    await redis.kill();
    await eventually('A noticed', () => a.events.includes('disconnected'));
    // B answers (its count is what it last knew of A, 1, or 0 once its view was refreshed); the message is lost (logged).
    expect([0, 1]).toContain(await publisher.publish('feed', 'while down'));
    await redis.restart();
    await eventually('A resubscribed', () => a.events.includes('resubscribed'), 10_000);
    expect(a.events, 'lost before resubscribed').toEqual(expect.arrayContaining(['lost:pubsub', 'resubscribed']));
    expect(a.events.indexOf('lost:pubsub')).toBeLessThan(a.events.indexOf('resubscribed'));
    await eventually(
      'a publish after the restart reaches A',
      async () => {
        await publisher.publish('feed', 'after');
        return received.includes('after');
      },
      10_000,
    );
    expect(received).not.toContain('while down');
    expect(a.child.exitCode).toBeNull();
    expect(b.child.exitCode).toBeNull();
    expect(await subscriber.ping()).toBe('PONG');
  });
});
