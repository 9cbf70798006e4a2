import { spawn } from 'node:child_process';
import { type Bus, type BusEvents, memoryBus, PortService } from '@portbind/core';
import { Redis } from 'ioredis';
import { createClient } from 'redis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { portOf, rawConnect, readUntil } from '../../../test/support/net.js';
import { redisBus } from '../../bus-redis/src/index.js';
import { eventually, type RestartableRedis, startRestartableRedis } from '../../bus-redis/test/redis.js';
import { respAdapter } from '../src/index.js';

// RESP pub/sub across processes: two respAdapter instances, each in its own PortService with its own
// redisBus (as two processes would be), against a real redis-server that is killed and restarted.

let redis: RestartableRedis;
const cleanups: Array<() => Promise<unknown> | unknown> = [];

beforeAll(async () => {
  redis = await startRestartableRedis();
});
afterAll(async () => {
  await redis.stop();
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Process {
  port: number;
  bus: Bus;
}

/** One "process": a PortService with a respAdapter on its own bus. */
async function startProcess(namespace: string, bus?: Bus): Promise<Process> {
  const own = bus ?? (await redisBus({ url: redis.url, maxReconnectDelayMs: 200 }));
  const service = new PortService({ env: {} });
  const binding = service.bind(respAdapter({ bus: { bus: own, namespace } }), { port: 0, host: '127.0.0.1' });
  await service.start();
  cleanups.push(async () => {
    await service.stop();
    if (bus === undefined) await own.close();
  });
  return { port: portOf(binding), bus: own };
}

function client(port: number): Redis {
  const made = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 2 });
  made.on('error', () => {}); // reconnection attempts to a killed process
  cleanups.push(() => made.disconnect());
  return made;
}

/** A namespace of its own per test: the presence entries of earlier tests do not count. */
let tests = 0;
const ns = (): string => `t${++tests}-${process.pid}`;

describe('PUBLISH on one process reaches SUBSCRIBE and PSUBSCRIBE on another', () => {
  it('ioredis subscribers on A, node-redis publishing on B, with the service-wide count', async () => {
    const space = ns();
    const [a, b] = [await startProcess(space), await startProcess(space)];
    const subscriber = client(a.port);
    const received: string[] = [];
    subscriber.on('message', (channel: string, message: string) => received.push(`message ${channel} ${message}`));
    subscriber.on('pmessage', (pattern: string, channel: string, message: string) =>
      received.push(`pmessage ${pattern} ${channel} ${message}`),
    );
    await subscriber.subscribe('news');
    await subscriber.psubscribe('ne*');
    const publisher = createClient({ socket: { port: b.port, host: '127.0.0.1' } });
    await publisher.connect();
    cleanups.push(() => publisher.destroy());
    await eventually('B sees A’s subscriber', async () => (await publisher.pubSubNumSub('news')).news === 1);
    expect(await publisher.publish('news', 'hello')).toBe(2); // one channel and one pattern subscriber, on A
    expect(await publisher.publish('nevermind', 'x')).toBe(1);
    expect(await publisher.publish('other', 'x')).toBe(0);
    await eventually('three messages on A', () => received.length === 3);
    expect(received.sort()).toEqual(['message news hello', 'pmessage ne* nevermind x', 'pmessage ne* news hello']);

    // And back: a subscriber on B, a publisher on A (a subscriber on A itself counts as well).
    const onB = client(b.port);
    const fromA: string[] = [];
    onB.on('message', (_channel: string, message: string) => fromA.push(message));
    await onB.subscribe('news');
    const publisherA = client(a.port);
    await eventually('A sees B’s subscriber', async () => (await publisherA.pubsub('NUMSUB', 'news'))[1] === 2);
    expect(await publisherA.publish('news', 'from A')).toBe(3);
    await eventually('B got it', () => fromA.length === 1);
    expect(fromA).toEqual(['from A']);
    await eventually('A’s own subscribers got it', () => received.length === 5);
  });

  it('PUBSUB CHANNELS, NUMSUB and NUMPAT answer for the whole service, and drop what a client left', async () => {
    const space = ns();
    const [a, b] = [await startProcess(space), await startProcess(space)];
    const onA = client(a.port);
    const onB = client(b.port);
    await onA.subscribe('alpha', 'shared');
    await onA.psubscribe('p.*');
    await onB.subscribe('beta', 'shared');
    await onB.psubscribe('p.*', 'q.*');
    const asker = client(a.port);
    await eventually('all channels visible', async () => (await asker.pubsub('CHANNELS')).length === 3);
    expect(((await asker.pubsub('CHANNELS')) as string[]).sort()).toEqual(['alpha', 'beta', 'shared']);
    expect(await asker.pubsub('CHANNELS', 'b*')).toEqual(['beta']);
    expect(await asker.pubsub('NUMSUB', 'shared', 'alpha', 'none')).toEqual(['shared', 2, 'alpha', 1, 'none', 0]);
    expect(await asker.pubsub('NUMPAT')).toBe(2); // distinct patterns, as one Redis counts them
    await onB.unsubscribe('shared');
    // Named: ioredis 6's PUNSUBSCRIBE without arguments never resolves while channels remain (against redis-server too).
    await onB.punsubscribe('p.*', 'q.*');
    await eventually('B’s leave seen on A', async () => Number(await asker.pubsub('NUMPAT')) === 1);
    expect(await asker.pubsub('NUMSUB', 'shared')).toEqual(['shared', 1]);
    onB.disconnect();
    await eventually('B’s client gone', async () => (await asker.pubsub('CHANNELS')).length === 2);
  });

  it('redis-cli subscribed on A receives what B publishes, and a RESP3 client gets pushes', async () => {
    const space = ns();
    const [a, b] = [await startProcess(space), await startProcess(space)];
    const cli = spawn('redis-cli', ['-p', String(a.port), '--no-raw', 'subscribe', 'cli-channel'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    cleanups.push(() => cli.kill('SIGKILL'));
    let output = '';
    cli.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    const resp3 = await rawConnect(a.port);
    cleanups.push(() => resp3.destroy());
    resp3.write('HELLO 3\r\n');
    await readUntil(resp3, /proto/);
    resp3.write('PSUBSCRIBE cli-*\r\n');
    await readUntil(resp3, />3\r\n\$10\r\npsubscribe\r\n\$5\r\ncli-\*\r\n:1\r\n/);
    const publisher = client(b.port);
    await eventually('subscribers visible from B', async () => {
      const [, count] = (await publisher.pubsub('NUMSUB', 'cli-channel')) as [string, number];
      return count === 1 && Number(await publisher.pubsub('NUMPAT')) === 1;
    });
    const pushed = readUntil(resp3, /\$5\r\nbytes\r\n$/);
    expect(await publisher.publish('cli-channel', 'bytes')).toBe(2);
    expect(await pushed).toContain('>4\r\n$8\r\npmessage\r\n$5\r\ncli-*\r\n$11\r\ncli-channel\r\n$5\r\nbytes\r\n');
    await eventually('redis-cli printed it', () => output.includes('bytes'));
    expect(output).toMatch(/1\) "message"\s+2\) "cli-channel"\s+3\) "bytes"/);
  });

  it('SPUBLISH goes through the slot’s channel to SSUBSCRIBE on another process', async () => {
    const space = ns();
    const [a, b] = [await startProcess(space), await startProcess(space)];
    const raw = await rawConnect(a.port);
    cleanups.push(() => raw.destroy());
    raw.write('SSUBSCRIBE {user1}:inbox\r\n');
    await readUntil(raw, /ssubscribe[\s\S]*:1\r\n$/);
    const publisher = client(b.port);
    await eventually(
      'shard subscriber visible',
      async () => (await publisher.call('PUBSUB', 'SHARDNUMSUB', '{user1}:inbox'))?.toString() === '{user1}:inbox,1',
    );
    expect(await publisher.call('PUBSUB', 'SHARDCHANNELS')).toEqual(['{user1}:inbox']);
    const message = readUntil(raw, /\$2\r\nhi\r\n$/);
    expect(await publisher.call('SPUBLISH', '{user1}:inbox', 'hi')).toBe(1);
    expect(await message).toContain('*3\r\n$8\r\nsmessage\r\n$13\r\n{user1}:inbox\r\n$2\r\nhi\r\n');
    // A pattern subscriber does not see shard messages, on any process.
    const patterns = client(b.port);
    await patterns.psubscribe('*');
    expect(await publisher.call('SPUBLISH', '{user1}:inbox', 'again')).toBe(1);
  });

  it('a PUBLISH no other process has a subscriber for does not travel to Redis', async () => {
    const space = ns();
    const [a, b] = [await startProcess(space), await startProcess(space)];
    const subscriber = client(a.port);
    const got: string[] = [];
    subscriber.on('message', (_channel: string, message: string) => got.push(message));
    await subscriber.subscribe('watched');
    const publisher = client(b.port);
    await eventually('visible', async () => (await publisher.pubsub('NUMSUB', 'watched'))[1] === 1);
    const plain = new Redis(redis.url);
    cleanups.push(() => plain.disconnect());
    const publishes = async (): Promise<number> => Number(/cmdstat_publish:calls=(\d+)/.exec(await plain.info('commandstats'))?.[1] ?? 0);
    const before = await publishes();
    const pipeline = publisher.pipeline();
    for (let i = 0; i < 200; i++) pipeline.publish('unwatched', 'x');
    await pipeline.exec();
    const after = await publishes();
    expect(after - before).toBeLessThan(10); // none but an announcement from another test's process, at most
    expect(await publisher.publish('watched', 'y')).toBe(1);
    await eventually('A got it', () => got.includes('y')); // the bus's PUBLISH goes out after the client's reply
    expect(await publishes()).toBeGreaterThan(after);
  });

  it('two adapters sharing one memoryBus in one process behave as two processes', async () => {
    const shared = memoryBus();
    cleanups.push(() => shared.close());
    const space = ns();
    const [a, b] = [await startProcess(space, shared), await startProcess(space, shared)];
    const subscriber = client(a.port);
    const got: string[] = [];
    subscriber.on('message', (_channel: string, message: string) => got.push(message));
    await subscriber.subscribe('mem');
    const publisher = client(b.port);
    await eventually('visible', async () => (await publisher.pubsub('NUMSUB', 'mem'))[1] === 1);
    expect(await publisher.publish('mem', 'once')).toBe(1);
    await eventually('delivered', () => got.length === 1);
    expect(got).toEqual(['once']); // exactly once: a process ignores its own messages coming back
  });
});

describe('keyspace notifications stay on their process', () => {
  it('a notification reaches subscribers of its own process only (each node its own keys, as Redis Cluster)', async () => {
    const shared = memoryBus();
    cleanups.push(() => shared.close());
    const space = ns();
    const adapters = [respAdapter({ bus: { bus: shared, namespace: space } }), respAdapter({ bus: { bus: shared, namespace: space } })];
    const ports: number[] = [];
    for (const adapter of adapters) {
      const service = new PortService({ env: {} });
      const binding = service.bind(adapter, { port: 0, host: '127.0.0.1' });
      await service.start();
      cleanups.push(() => service.stop());
      ports.push(portOf(binding));
      adapter.setKeyspaceEvents('KEA');
    }
    const [a, b] = adapters as [ReturnType<typeof respAdapter>, ReturnType<typeof respAdapter>];
    const heard: Record<string, string[]> = { a: [], b: [] };
    for (const [name, port] of [
      ['a', ports[0]],
      ['b', ports[1]],
    ] as const) {
      const subscriber = client(port as number);
      subscriber.on('pmessage', (_pattern: string, channel: string, message: string) => heard[name]?.push(`${channel} ${message}`));
      await subscriber.psubscribe('__key*__:*', 'plain');
      await subscriber.subscribe(`on-${name}`);
    }
    // Each has the other's subscriptions (announced with its channels).
    await eventually('both see each other’s subscribers', () => a.subscriberCount('on-b') === 1 && b.subscriberCount('on-a') === 1);
    a.notifyKeyspaceEvent('generic', 'del', 'k', 0);
    // An ordinary publish after it, from A: it reaches B (so the notification would have, had it been sent).
    a.publish('plain', 'after');
    await eventually(
      'the plain message on both',
      () => heard.b?.includes('plain after') === true && heard.a?.includes('plain after') === true,
    );
    expect(heard.a?.sort()).toEqual(['__keyevent@0__:del k', '__keyspace@0__:k del', 'plain after']);
    expect(heard.b).toEqual(['plain after']);
  });
});

describe('bad configuration and bad peers', () => {
  it('a namespace with glob characters or a tiny presence TTL is PB_ERR_CONFIG at once', () => {
    const bus = memoryBus();
    expect(() => respAdapter({ bus: { bus, namespace: 'resp*' } })).toThrow(expect.objectContaining({ code: 'PB_ERR_CONFIG' }));
    expect(() => respAdapter({ bus: { bus, namespace: '' } })).toThrow(expect.objectContaining({ code: 'PB_ERR_CONFIG' }));
    expect(() => respAdapter({ bus: { bus, presenceTtlMs: 5 } })).toThrow(expect.objectContaining({ code: 'PB_ERR_CONFIG' }));
  });

  it('a malformed subscription entry on the bus is ignored; PUBSUB and PUBLISH go on', async () => {
    const shared = memoryBus();
    cleanups.push(() => shared.close());
    const space = ns();
    const a = await startProcess(space, shared);
    const intruder = shared.peer();
    cleanups.push(() => intruder.close());
    for (const [id, value] of [
      ['aaaaaaaaaaaaaaaa', 'not json'],
      ['bbbbbbbbbbbbbbbb', '{"c":[["x","many"]],"p":[],"s":[]}'],
      ['cccccccccccccccc', '{"c":[["ok",2]],"p":[],"s":[]}'],
    ] as const) {
      await intruder.presence.set(`${space}:subs:${id}`, value, { ttlMs: 60_000 });
      await intruder.publish(`${space}:announce`, id);
    }
    await intruder.publish(`${space}:announce`, 'short');
    const asker = client(a.port);
    await eventually('the well-formed entry counts', async () => (await asker.pubsub('NUMSUB', 'ok'))[1] === 2);
    expect(await asker.pubsub('CHANNELS')).toEqual(['ok']);
    expect(await asker.publish('x', 'y')).toBe(0);
  });
});

describe('Redis restarted in the middle', () => {
  it('subscribers on A get B’s publishes again within seconds; PUBLISH while Redis is down answers and nothing crashes', async () => {
    const space = ns();
    const [a, b] = [await startProcess(space), await startProcess(space)];
    const events: Array<keyof BusEvents> = [];
    a.bus.on('lost', () => events.push('lost'));
    a.bus.on('resubscribed', () => events.push('resubscribed'));
    const subscriber = client(a.port);
    const received: string[] = [];
    subscriber.on('message', (_channel: string, message: string) => received.push(message));
    subscriber.on('pmessage', (_pattern: string, _channel: string, message: string) => received.push(`p:${message}`));
    await subscriber.subscribe('ticker');
    await subscriber.psubscribe('tick*');
    const localOnB = client(b.port);
    const onB: string[] = [];
    localOnB.on('message', (_channel: string, message: string) => onB.push(message));
    await localOnB.subscribe('ticker');
    const publisher = client(b.port);
    await eventually('A’s subscribers visible on B', async () => (await publisher.pubsub('NUMSUB', 'ticker'))[1] === 2);
    expect(await publisher.publish('ticker', 'before')).toBe(3);
    await eventually('before', () => received.length === 2);

    await redis.kill();
    // B's own subscriber still gets it; the count is what B still believes of A.
    expect(await publisher.publish('ticker', 'while down')).toBeGreaterThanOrEqual(1);
    await eventually('B’s local subscriber', () => onB.includes('while down'));
    const restartedAt = Date.now();
    await redis.restart();
    await eventually('A resubscribed', () => events.includes('resubscribed'), 10_000);
    expect(Date.now() - restartedAt).toBeLessThan(10_000);
    expect(events.indexOf('lost')).toBeLessThan(events.indexOf('resubscribed'));
    await eventually('B’s bus back', () => b.bus.connected);
    // Publish until one arrives: B's publishing connection may come back a moment after A's subscriber.
    await eventually(
      'a publish after the restart reaches A',
      async () => {
        await publisher.publish('ticker', 'after');
        return received.includes('after');
      },
      10_000,
    );
    expect(received.slice(0, 2).sort()).toEqual(['before', 'p:before']);
    expect(received).not.toContain('while down');
    expect(await subscriber.ping()).toBe('PONG');
  });
});
