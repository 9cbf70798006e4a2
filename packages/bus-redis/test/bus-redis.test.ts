import { type Bus, type BusEntry, type BusEvents, type BusMessage, consumeStream } from '@portbind/core';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { busFromEnv, redisBus } from '../src/index.js';
import { eventually, type RestartableRedis, startRestartableRedis } from './redis.js';

let redis: RestartableRedis;
const buses: Bus[] = [];
beforeAll(async () => {
  redis = await startRestartableRedis();
});
afterAll(async () => {
  await redis.stop();
});
afterEach(async () => {
  await Promise.all(buses.splice(0).map((bus) => bus.close()));
});

async function bus(): Promise<Bus> {
  const made = await redisBus({ url: redis.url, maxReconnectDelayMs: 200 });
  buses.push(made);
  return made;
}

function inbox(): { messages: BusMessage[]; listener: (message: BusMessage) => void } {
  const messages: BusMessage[] = [];
  return { messages, listener: (message) => messages.push(message) };
}

describe('redisBus pub/sub', () => {
  it('delivers across two bus instances by channel and by pattern, binary names included, with Redis’s count', async () => {
    const a = await bus();
    const b = await bus();
    const onA = inbox();
    const onB = inbox();
    await a.subscribe('news', onA.listener);
    await b.psubscribe('n[ae]ws.*', onB.listener);
    const binary = Buffer.from([0x6e, 0xe9, 0x00, 0xff]).toString('latin1');
    await b.subscribe(binary, onB.listener);
    expect(await b.publish('news', 'one')).toBe(1);
    expect(await a.publish('news.sport', Buffer.from([0, 1, 2]))).toBe(1);
    expect(await a.publish(binary, 'bin')).toBe(1);
    await eventually('three messages', () => onA.messages.length === 1 && onB.messages.length === 2);
    expect(onA.messages[0]?.data.toString()).toBe('one');
    expect(onB.messages[0]).toMatchObject({ channel: 'news.sport', pattern: 'n[ae]ws.*' });
    expect([...(onB.messages[0]?.data ?? [])]).toEqual([0, 1, 2]);
    expect(onB.messages[1]?.channel).toBe(binary);
    // Seen from a plain Redis client: the names are the bytes.
    const plain = new Redis(redis.url);
    expect(await plain.pubsub('NUMPAT')).toBe(1);
    plain.disconnect();
  });

  it('leaves the Redis channel when its last listener goes', async () => {
    const a = await bus();
    const b = await bus();
    const first = inbox();
    const second = inbox();
    const one = await a.subscribe('room', first.listener);
    const two = await a.subscribe('room', second.listener);
    expect(await b.publish('room', 'x')).toBe(1);
    await eventually('both listeners', () => first.messages.length === 1 && second.messages.length === 1);
    await one.unsubscribe();
    expect(await b.publish('room', 'y')).toBe(1);
    await eventually('second listener', () => second.messages.length === 2);
    expect(first.messages).toHaveLength(1);
    await two.unsubscribe();
    expect(await b.publish('room', 'z')).toBe(0);
  });
});

describe('redisBus streams', () => {
  it('re-delivers what a crashed consumer left unacknowledged to the next reader', async () => {
    const a = await bus();
    const stream = a.stream(`jobs-${a.id}`);
    await stream.createGroup('workers', 'start');
    await stream.append('first');
    await stream.append('second');
    const taken = await stream.read('workers', 'a', { count: 1 });
    expect(taken.map((entry) => entry.data.toString())).toEqual(['first']);
    // The process of consumer a dies without acknowledging.
    await a.close();
    buses.splice(buses.indexOf(a), 1);
    const b = await bus();
    const seen: BusEntry[] = [];
    const consumer = consumeStream(b.stream(stream.name), {
      group: 'workers',
      consumer: 'b',
      claimIdleMs: 200,
      blockMs: 100,
      handler: (entry) => {
        seen.push(entry);
      },
    });
    await eventually('both entries at b', () => seen.length === 2);
    await consumer.stop();
    expect(seen.map((entry) => [entry.data.toString(), entry.redelivered]).sort()).toEqual([
      ['first', true],
      ['second', false],
    ]);
    expect(await b.stream(stream.name).pending('workers')).toBe(0);
  });

  it('a blocked read returns as soon as another process appends', async () => {
    const a = await bus();
    const b = await bus();
    const name = `wake-${a.id}`;
    await a.stream(name).createGroup('g', 'end');
    const reading = a.stream(name).read('g', 'reader', { blockMs: 20_000 });
    await b.stream(name).append('hello');
    const entries = await reading;
    expect(entries.map((entry) => entry.data.toString())).toEqual(['hello']);
  });
});

describe('redisBus presence', () => {
  it('a heartbeat keeps entries past their TTL; a dead process’s entries expire; close deletes at once', async () => {
    const a = await bus();
    const b = await bus();
    await a.presence.set(`sess:${a.id}:juliet`, 'a', { ttlMs: 300 });
    await b.presence.set(`sess:${b.id}:romeo`, 'b', { ttlMs: 300 });
    await new Promise((resolve) => setTimeout(resolve, 700));
    expect(await b.presence.get(`sess:${a.id}:juliet`)).toBe('a');
    const listed = await b.presence.list('sess:');
    expect(listed.get(`sess:${a.id}:juliet`)).toBe('a');
    expect(listed.get(`sess:${b.id}:romeo`)).toBe('b');
    // a's process dies: its heartbeat stops, nobody deletes the key.
    const killer = new Redis(redis.url);
    const clients = String(await killer.client('LIST'));
    for (const line of clients.split('\n')) {
      const id = /id=(\d+)/.exec(line)?.[1];
      if (id !== undefined && line.includes(`portbind-bus-${a.id}`)) await killer.client('KILL', 'ID', id);
    }
    await a.close(); // after its connections were cut: it can no longer delete anything
    buses.splice(buses.indexOf(a), 1);
    await eventually('juliet expired', async () => (await b.presence.get(`sess:${a.id}:juliet`)) === undefined, 5000);
    expect(await b.presence.get(`sess:${b.id}:romeo`)).toBe('b');
    await b.close();
    buses.splice(buses.indexOf(b), 1);
    expect(await killer.get(`sess:${b.id}:romeo`)).toBeNull();
    killer.disconnect();
  });
});

describe('redisBus presence: forget', () => {
  it('a forgotten entry is no longer refreshed nor written back when deleted, and close() leaves it; the new writer keeps it', async () => {
    const a = await bus();
    const b = await bus();
    await a.presence.set('occ:lobby:juliet', 'from-a', { ttlMs: 300 });
    await a.presence.set('occ:lobby:romeo', 'romeo', { ttlMs: 300 });
    // The entry moves to b: b sets it, a forgets it; b deletes it, and a's heartbeat does not bring it back.
    await b.presence.set('occ:lobby:juliet', 'from-b', { ttlMs: 300 });
    a.presence.forget('occ:lobby:juliet');
    const lost: BusEvents['lost'][] = [];
    a.on('lost', (event) => lost.push(event));
    await b.presence.delete('occ:lobby:juliet');
    await new Promise((resolve) => setTimeout(resolve, 700));
    expect(await b.presence.get('occ:lobby:juliet')).toBeUndefined();
    expect(lost).toEqual([]);
    // What a still owns stays refreshed.
    expect(await b.presence.get('occ:lobby:romeo')).toBe('romeo');
    // Forgotten while set by a alone: it expires within its TTL, and a's close() does not delete b's.
    await a.presence.set('occ:hall:juliet', 'from-a', { ttlMs: 300 });
    a.presence.forget('occ:hall:juliet');
    await eventually('the forgotten entry expired', async () => (await b.presence.get('occ:hall:juliet')) === undefined, 2000);
    await a.presence.set('occ:porch:juliet', 'from-a', { ttlMs: 300 });
    a.presence.forget('occ:porch:juliet');
    await b.presence.set('occ:porch:juliet', 'from-b', { ttlMs: 300 });
    await a.close();
    buses.splice(buses.indexOf(a), 1);
    expect(await b.presence.get('occ:porch:juliet')).toBe('from-b');
    expect(await b.presence.get('occ:lobby:romeo')).toBeUndefined();
  });
});

describe('busFromEnv', () => {
  it('is the memory bus without BUS_URL, the Redis bus with it, and refuses another scheme', async () => {
    const memory = await busFromEnv({});
    const seen = inbox();
    await memory.subscribe('c', seen.listener);
    expect(await memory.publish('c', 'x')).toBe(1);
    await memory.close();
    const real = await busFromEnv({ BUS_URL: redis.url });
    buses.push(real);
    expect(real.connected).toBe(true);
    await expect(busFromEnv({ BUS_URL: 'http://127.0.0.1:1' })).rejects.toMatchObject({ code: 'PB_ERR_CONFIG' });
    await expect(redisBus({ url: 'redis://127.0.0.1:1' })).rejects.toMatchObject({ code: 'PB_ERR_BUS_UNAVAILABLE' });
  });
});

describe('Redis restarted in the middle', () => {
  it('resubscribes within seconds, signals the loss, keeps streams, and never crashes', async () => {
    const a = await bus();
    const b = await bus();
    const onA = inbox();
    await a.subscribe('chat', onA.listener);
    await a.psubscribe('room.*', onA.listener);
    const events: Array<[keyof BusEvents, unknown]> = [];
    for (const name of ['connected', 'disconnected', 'resubscribed', 'lost'] as const) a.on(name, (info) => events.push([name, info]));
    const name = `durable-${a.id}`;
    await b.stream(name).createGroup('g', 'start');
    await b.stream(name).append('before');
    expect(await b.publish('chat', 'before')).toBe(1);
    await eventually('before', () => onA.messages.length === 1);

    // A PUBLISH in flight when Redis dies (held by CLIENT PAUSE): rejected, never re-sent after the restart.
    const pauser = new Redis(redis.url);
    pauser.on('error', () => {});
    await pauser.call('CLIENT', 'PAUSE', '30000', 'ALL');
    const inFlight = b.publish('chat', 'in flight').then(
      () => 'published',
      (error: unknown) => error,
    );
    await redis.kill();
    pauser.disconnect();
    expect(await inFlight).toMatchObject({ code: 'PB_ERR_BUS_UNAVAILABLE' });
    await eventually('disconnected', () => events.some(([event]) => event === 'disconnected'));
    await expect(b.publish('chat', 'while down')).rejects.toMatchObject({ code: 'PB_ERR_BUS_UNAVAILABLE' });
    const downAt = Date.now();
    await redis.restart();
    await eventually('resubscribed', () => events.some(([event]) => event === 'resubscribed'), 10_000);
    const resubscribedAfterMs = Date.now() - downAt;
    expect(resubscribedAfterMs).toBeLessThan(10_000);
    const lost = events.find(([event]) => event === 'lost')?.[1] as BusEvents['lost'];
    expect(lost).toMatchObject({ kind: 'pubsub' });
    expect([...lost.names].sort()).toEqual(['chat', 'room.*']);
    expect(events.findIndex(([event]) => event === 'lost')).toBeLessThan(events.findIndex(([event]) => event === 'resubscribed'));
    await eventually('b reconnected', () => b.connected);
    expect(await b.publish('chat', 'after')).toBe(1);
    expect(await b.publish('room.1', 'after')).toBe(1);
    await eventually('after', () => onA.messages.length === 3);
    expect(onA.messages.map((message) => message.data.toString())).toEqual(['before', 'after', 'after']);
    // The stream and its group were in the AOF.
    const entries = await a.stream(name).read('g', 'reader');
    expect(entries.map((entry) => entry.data.toString())).toEqual(['before']);
  });

  it('a Redis that lost its data: the group comes back empty and the loss is signalled', async () => {
    const volatile = await startRestartableRedis({ persistence: false });
    const a = await redisBus({ url: volatile.url, maxReconnectDelayMs: 200 });
    buses.push(a);
    const lost: Array<BusEvents['lost']> = [];
    a.on('lost', (info) => lost.push(info));
    await a.stream('s').createGroup('g', 'start');
    await a.presence.set('p', 'v', { ttlMs: 600 });
    await volatile.restart();
    await eventually('reconnected', () => a.connected);
    expect(await a.stream('s').read('g', 'c')).toEqual([]);
    await eventually('presence rewritten', () => lost.some((info) => info.kind === 'presence'));
    expect(lost.map((info) => info.kind)).toContain('stream');
    expect(await a.presence.get('p')).toBe('v');
    await a.close();
    buses.splice(buses.indexOf(a), 1);
    await volatile.stop();
  });
});

describe('redisBus claims, values and stream lifetimes', () => {
  it('a claim is held by one process, survives on its heartbeat, and is reported lost when another took it', async () => {
    const a = await bus();
    const b = await bus();
    const key = `claim:${a.id}`;
    expect(await a.presence.claim(key, 'A', { ttlMs: 300 })).toBe('A');
    expect(await b.presence.claim(key, 'B', { ttlMs: 300 })).toBe('A');
    await new Promise((resolve) => setTimeout(resolve, 700)); // past the TTL: the heartbeat kept it
    expect(await b.presence.get(key)).toBe('A');
    const lost: Array<BusEvents['lost']> = [];
    a.on('lost', (info) => lost.push(info));
    // As if the entry had expired while Redis was unreachable and b had claimed it meanwhile.
    const direct = new Redis(redis.url);
    await direct.set(key, 'B', 'PX', 10_000);
    await eventually('claim reported lost', async () => lost.some((info) => info.kind === 'claim' && info.names.includes(key)), 3000);
    // a no longer refreshes nor releases it: b's value stays.
    await a.presence.delete(key);
    expect(await direct.get(key)).toBe('B');
    direct.disconnect();
  });

  it('values outlive their process until their TTL; entries() reads in order; ttlMs and delete() remove a stream', async () => {
    const a = await bus();
    const b = await bus();
    await a.values.set(`v:${a.id}`, 'state', { ttlMs: 400 });
    expect(await b.values.get(`v:${a.id}`)).toBe('state');
    await eventually('value expired', async () => (await b.values.get(`v:${a.id}`)) === undefined, 3000);
    const stream = a.stream(`journal:${a.id}`);
    const first = await stream.append('one', { ttlMs: 400, maxLength: 10 });
    await stream.append('two', { ttlMs: 400 });
    expect((await b.stream(`journal:${a.id}`).entries()).map((entry) => entry.data.toString())).toEqual(['one', 'two']);
    expect((await stream.entries({ after: first })).map((entry) => entry.data.toString())).toEqual(['two']);
    const third = await stream.append('three', { ttlMs: 400 });
    expect(await stream.trim(third)).toBe(2);
    expect((await stream.entries()).map((entry) => entry.data.toString())).toEqual(['three']);
    await eventually('stream expired', async () => (await stream.length()) === 0, 3000);
    await stream.append('four');
    await stream.delete();
    expect(await stream.entries()).toEqual([]);
  });
});
