import { once } from 'node:events';
import { type Bus, type BusEvents, memoryBus, PortService } from '@portbind/core';
import { httpAdapter } from '@portbind/http';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { portOf, sleep } from '../../../test/support/net.js';
import { redisBus } from '../../bus-redis/src/index.js';
import { type RestartableRedis, startRestartableRedis } from '../../bus-redis/test/redis.js';
import { type WsEndpoint, type WsOptions, wsEndpoint } from '../src/index.js';

// broadcast() and named channels across processes (issue 12): two services, each with its own
// endpoint and its own peers, share a bus — a memoryBus (two "processes" in one), then a real
// redis-server reached by two redisBus connections, restarted in the middle. Peers are real `ws`
// clients over 127.0.0.1. The app lets a peer join a channel by sending `join <name>`.

const services: PortService[] = [];
const sockets: WebSocket[] = [];
const buses: Bus[] = [];
afterEach(async () => {
  for (const ws of sockets.splice(0)) ws.terminate();
  await Promise.all(services.splice(0).map((s) => s.stop()));
  await Promise.all(buses.splice(0).map((bus) => bus.close()));
});

interface Node {
  endpoint: WsEndpoint;
  url: string;
}

async function node(bus: Bus, options: Partial<WsOptions> = {}): Promise<Node> {
  const endpoint: WsEndpoint = wsEndpoint({
    bus,
    ...options,
    message: (conn, data) => {
      const text = data.toString();
      if (text.startsWith('join ')) conn.send(String(endpoint.join(conn, text.slice(5))));
      else if (text.startsWith('leave ')) conn.send(String(endpoint.leave(conn, text.slice(6))));
    },
  });
  const service = new PortService({ env: {}, gracePeriodMs: 2000 });
  services.push(service);
  const binding = service.bind(httpAdapter({ upgrades: { '/ws': endpoint } }), { port: 0, host: '127.0.0.1' });
  await service.start();
  return { endpoint, url: `ws://127.0.0.1:${portOf(binding)}/ws` };
}

/** A peer that records every message it gets. */
async function peer(url: string): Promise<{ ws: WebSocket; got: Array<string | Buffer> }> {
  const ws = new WebSocket(url);
  sockets.push(ws);
  const got: Array<string | Buffer> = [];
  ws.on('message', (data: Buffer, isBinary: boolean) => got.push(isBinary ? Buffer.from(data) : data.toString()));
  await once(ws, 'open');
  return { ws, got };
}

async function joinChannel(p: { ws: WebSocket; got: Array<string | Buffer> }, channel: string): Promise<void> {
  const before = p.got.length;
  p.ws.send(`join ${channel}`);
  await eventually(`join ${channel}`, () => p.got.length > before);
  expect(p.got.pop()).toBe('true');
}

async function eventually(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

describe('WebSocket broadcast and channels across processes, on one memoryBus', () => {
  it('broadcast() reaches the peers of every process once, text as text and binary as binary', async () => {
    const bus = memoryBus();
    buses.push(bus);
    const a = await node(bus);
    const b = await node(bus);
    const a1 = await peer(a.url);
    const b1 = await peer(b.url);
    const b2 = await peer(b.url);
    expect(a.endpoint.broadcast('hello')).toBe(1); // this process's peers, at once
    expect(b.endpoint.broadcast(Buffer.from([0, 1, 2, 255]))).toBe(2);
    for (const p of [a1, b1, b2]) await eventually('two messages', () => p.got.length === 2);
    await sleep(50);
    for (const p of [a1, b1, b2]) {
      expect(p.got).toHaveLength(2);
      expect(p.got).toContain('hello');
      expect(p.got.find((m) => Buffer.isBuffer(m))).toEqual(Buffer.from([0, 1, 2, 255]));
    }
    expect(a.endpoint.scope).toBe('shared');
  });

  it("publish() reaches a channel's peers on every process and nobody else; a closed peer leaves its channels", async () => {
    const bus = memoryBus();
    buses.push(bus);
    const a = await node(bus);
    const b = await node(bus);
    const a1 = await peer(a.url);
    const b1 = await peer(b.url);
    const b2 = await peer(b.url);
    await joinChannel(a1, 'room:1');
    await joinChannel(b1, 'room:1');
    await joinChannel(b2, 'room:2');
    expect(a.endpoint.publish('room:1', 'to room 1')).toBe(1);
    expect(b.endpoint.publish('room:2', 'to room 2')).toBe(1);
    expect(a.endpoint.publish('room:2', 'to room 2 from a')).toBe(0);
    await eventually('room 1 on b', () => b1.got.includes('to room 1'));
    await eventually('room 2 from a', () => b2.got.includes('to room 2 from a'));
    await sleep(50);
    expect(a1.got).toEqual(['to room 1']);
    expect(b1.got).toEqual(['to room 1']);
    expect(b2.got).toEqual(['to room 2', 'to room 2 from a']);
    expect([...b.endpoint.channelsOf([...b.endpoint.members('room:1')][0] as never)]).toEqual(['room:1']);
    // b1 closes: b's last peer in room:1 is gone; a's peer still gets what b publishes there.
    b1.ws.close();
    await eventually('b1 gone', () => b.endpoint.members('room:1').size === 0);
    b.endpoint.publish('room:1', 'after b1 left');
    await eventually('a1 got it', () => a1.got.includes('after b1 left'));
    expect(b1.got).toEqual(['to room 1']);
  });

  it('limits: a peer joins at most maxChannelsPerPeer channels, of at most maxChannelNameLength bytes', async () => {
    const bus = memoryBus();
    buses.push(bus);
    const a = await node(bus, { maxChannelsPerPeer: 2, maxChannelNameLength: 8 });
    const a1 = await peer(a.url);
    await joinChannel(a1, 'one');
    await joinChannel(a1, 'two');
    await joinChannel(a1, 'two'); // already in: true, not a third
    a1.ws.send('join three');
    await eventually('refused', () => a1.got.length === 1);
    expect(a1.got.pop()).toBe('false');
    a1.ws.send('leave one');
    await eventually('left', () => a1.got.length === 1);
    expect(a1.got.pop()).toBe('true');
    a1.ws.send('join ninechars');
    await eventually('refused', () => a1.got.length === 1);
    expect(a1.got.pop()).toBe('false');
    a1.ws.send('join éééé'); // 8 bytes in UTF-8
    await eventually('joined', () => a1.got.length === 1);
    expect(a1.got.pop()).toBe('true');
  });

  it('publishing fails while the bus is down: onLost hears it once per outage, even when it broadcasts itself', async () => {
    const inner = memoryBus();
    buses.push(inner);
    let down = false;
    const flaky: Bus = {
      id: inner.id,
      get connected() {
        return !down;
      },
      publish: (channel, data) => (down ? Promise.reject(new Error('the bus is down')) : inner.publish(channel, data)),
      subscribe: (channel, listener) => inner.subscribe(channel, listener),
      psubscribe: (pattern, listener) => inner.psubscribe(pattern, listener),
      stream: (name) => inner.stream(name),
      presence: inner.presence,
      values: inner.values,
      on: (event, listener) => inner.on(event, listener),
      close: () => inner.close(),
    };
    const lost: BusEvents['lost'][] = [];
    let endpoint: WsEndpoint | undefined;
    const a = await node(flaky, {
      onLost: (info) => {
        lost.push(info);
        endpoint?.broadcast('{"gap":true}');
      },
    });
    endpoint = a.endpoint;
    const a1 = await peer(a.url);
    down = true;
    for (let i = 0; i < 5; i++) a.endpoint.broadcast(`while down ${i}`);
    await sleep(100);
    expect(lost).toHaveLength(1);
    expect(lost[0]).toMatchObject({ kind: 'pubsub', names: ['portbind:ws:ws:all'] });
    expect(lost[0]?.reason).toContain('the bus is down');
    down = false;
    a.endpoint.broadcast('back');
    await sleep(50);
    down = true;
    a.endpoint.broadcast('down again');
    await sleep(50);
    expect(lost).toHaveLength(2);
    // This process's peer got everything, the gap notices included.
    await eventually('local deliveries', () => a1.got.length === 9);
    expect(a1.got.filter((m) => m === '{"gap":true}')).toHaveLength(2);
  });

  it('a slow peer on the other process misses messages or is cut off, as locally; the others get everything', async () => {
    const bus = memoryBus();
    buses.push(bus);
    const a = await node(bus);
    const b = await node(bus, { highWaterMark: 16 * 1024, maxBufferedBytes: 256 * 1024 });
    const fast = await peer(b.url);
    const slow = await peer(b.url);
    // The slow peer stops reading: its socket pauses, the kernel buffers fill, then b's queue.
    (slow.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    const chunk = 'x'.repeat(4096);
    const total = 2000;
    for (let i = 0; i < total; i++) {
      a.endpoint.broadcast(chunk);
      if (i % 100 === 99) await sleep(5);
    }
    await eventually('fast got everything', () => fast.got.length === total, 20_000);
    // b kept the slow peer's queue bounded: past the high-water mark it was skipped (or, past
    // maxBufferedBytes, cut off), so once it reads again it gets far fewer than were sent.
    for (const conn of b.endpoint.clients) expect(conn.bufferedAmount).toBeLessThanOrEqual(256 * 1024 + 4096 + 16);
    (slow.ws as unknown as { _socket: { resume(): void } })._socket.resume();
    await sleep(500);
    expect(slow.got.length).toBeLessThan(total / 2);
  });
});

describe('WebSocket broadcast across processes on a real Redis', () => {
  let redis: RestartableRedis;
  beforeAll(async () => {
    redis = await startRestartableRedis({ persistence: false });
  });
  afterAll(async () => {
    await redis.stop();
  });

  it('two processes, each with its own redisBus: broadcast and channels reach both; Redis restarted: the loss is signalled and delivery resumes', async () => {
    const busA = await redisBus({ url: redis.url, maxReconnectDelayMs: 200 });
    const busB = await redisBus({ url: redis.url, maxReconnectDelayMs: 200 });
    buses.push(busA, busB);
    const lost: BusEvents['lost'][] = [];
    const a = await node(busA);
    const b = await node(busB, { onLost: (info) => lost.push(info) });
    const a1 = await peer(a.url);
    const b1 = await peer(b.url);
    await joinChannel(b1, 'news');
    await sleep(200); // the bus subscriptions are confirmed asynchronously
    a.endpoint.broadcast('before');
    a.endpoint.publish('news', 'news before');
    await eventually('b1 before', () => b1.got.includes('before') && b1.got.includes('news before'));
    expect(a1.got).toEqual(['before']);

    let resubscribed = false;
    busB.on('resubscribed', () => {
      resubscribed = true;
    });
    await redis.kill();
    await eventually('b disconnected', () => !busB.connected, 10_000);
    await redis.restart();
    // The bus knows what it may have missed once it is back: the loss comes before the resubscription.
    await eventually('loss signalled', () => lost.length > 0, 10_000);
    expect(lost[0]).toMatchObject({ kind: 'pubsub' });
    expect(lost[0]?.names).toEqual(expect.arrayContaining(['portbind:ws:ws:all', 'portbind:ws:ws:c:news']));
    await eventually('b resubscribed', () => resubscribed, 10_000);
    await eventually('a reconnected', () => busA.connected, 10_000);
    // Delivery resumes (retry until the resubscription is in place).
    await eventually(
      'b1 after',
      () => {
        if (!b1.got.includes('after')) a.endpoint.broadcast('after');
        return b1.got.includes('after');
      },
      10_000,
    );
    a.endpoint.publish('news', 'news after');
    await eventually('news after', () => b1.got.includes('news after'));
  });
});
