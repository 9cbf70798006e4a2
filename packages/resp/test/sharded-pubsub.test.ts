import { once } from 'node:events';
import type { Socket } from 'node:net';
import { PortService } from '@portbind/core';
import { Redis } from 'ioredis';
import { createClient } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { portOf, rawConnect, readUntil, sleep } from '../../../test/support/net.js';
import { OK, respAdapter } from '../src/index.js';
import { type Server, startRedis } from './real-redis.js';

// Sharded pub/sub (Redis 7.0): SSUBSCRIBE, SUNSUBSCRIBE, SPUBLISH, PUBSUB SHARDCHANNELS and
// SHARDNUMSUB. The same scripts over raw sockets to redis-server 7.0.15 and to an adapter
// reporting 7.0.15 must give the same bytes; then ioredis and node-redis use them.

async function startAdapter(): Promise<Server> {
  const resp = respAdapter({ serverVersion: '7.0.15' });
  const strings = new Map<string, Buffer>();
  resp.command('set', { arity: 3, flags: ['write'] }, (_client, [, key, value]) => {
    strings.set(String(key), Buffer.from(value as Buffer));
    return OK;
  });
  resp.command('get', { arity: 2, flags: ['readonly'] }, (_client, [, key]) => strings.get(String(key)) ?? null);
  const service = new PortService({ env: {} });
  const binding = service.bind(resp, { port: 0, host: '127.0.0.1' });
  await service.start();
  return { port: portOf(binding), stop: () => service.stop().then(() => undefined) };
}

let real: Server | undefined;
let adapter: Server | undefined;

beforeAll(async () => {
  [real, adapter] = await Promise.all([startRedis(), startAdapter()]);
});

afterAll(async () => {
  await Promise.all([real?.stop(), adapter?.stop()]);
});

/** A raw connection: send commands (inline), read replies until a pattern. */
class Peer {
  private constructor(readonly socket: Socket) {}

  static async open(port: number): Promise<Peer> {
    return new Peer(await rawConnect(port));
  }

  /** Send one command as a multibulk (binary-safe arguments). */
  async call(args: Array<string | Buffer>, until: RegExp): Promise<string> {
    const parts = args.map((arg) => (typeof arg === 'string' ? Buffer.from(arg) : arg));
    let out = `*${parts.length}\r\n`;
    const chunks: Buffer[] = [];
    for (const part of parts) {
      chunks.push(Buffer.from(`${out}$${part.length}\r\n`), part, Buffer.from('\r\n'));
      out = '';
    }
    this.socket.write(Buffer.concat(chunks));
    return this.read(until);
  }

  read(until: RegExp): Promise<string> {
    return readUntil(this.socket, until, 5000);
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Run a scenario against both servers, one after the other; the transcripts must be equal. */
async function differential(scenario: (port: number) => Promise<string[]>): Promise<string[]> {
  const expected = await scenario((real as Server).port);
  const actual = await scenario((adapter as Server).port);
  expect(actual).toEqual(expected);
  return actual;
}

/** A reply ends with a line of its own: an integer, a status, an error or a bulk's data. */
const END = /\r\n$/;
/** `count` complete frames of three elements each (subscribe confirmations, messages). */
const frames = (count: number): RegExp =>
  new RegExp(`^(?:[*>]3\\r\\n(?:\\$\\d+\\r\\n[^\\r]*\\r\\n|\\$-1\\r\\n|_\\r\\n|:\\d+\\r\\n){3}){${count}}$`);

/** The fields of a CLIENT LIST line that say what a client is subscribed to. */
function subscriptionFields(list: string, name: string): string {
  const line = list.split('\n').find((entry) => entry.includes(` name=${name} `)) ?? '';
  return ['flags', 'sub', 'psub', 'ssub', 'multi', 'cmd'].map((field) => new RegExp(` ${field}=([^ ]*)`).exec(line)?.[0] ?? '').join('');
}

describe('sharded pub/sub, byte for byte as redis-server 7.0.15', () => {
  it('RESP2: ssubscribe/smessage frames, counts apart from channels and patterns, subscribed mode, SUNSUBSCRIBE', async () => {
    await differential(async (port) => {
      const sub = await Peer.open(port);
      const other = await Peer.open(port);
      const t: string[] = [];
      try {
        t.push(await other.call(['CLIENT', 'SETNAME', 'other'], END));
        t.push(await sub.call(['CLIENT', 'SETNAME', 'shardsub'], END));
        t.push(await sub.call(['SSUBSCRIBE', 'orders', 'orders'], frames(2)));
        t.push(await sub.call(['SSUBSCRIBE', 'bin\u0000ary', 'a b'], frames(2)));
        // Channels and patterns count on their own; shard channels on theirs.
        t.push(await sub.call(['SUBSCRIBE', 'orders'], frames(1)));
        t.push(await sub.call(['PSUBSCRIBE', 'ord*'], frames(1)));
        t.push(await sub.call(['SSUBSCRIBE', 'more'], frames(1)));
        // RESP2 subscribed mode: only (P|S)SUBSCRIBE, (P|S)UNSUBSCRIBE, PING, QUIT, RESET.
        t.push(await sub.call(['GET', 'k'], END));
        t.push(await sub.call(['SPUBLISH', 'orders', 'x'], END));
        t.push(await sub.call(['PING'], /pong\r\n\$0\r\n\r\n$/));
        t.push(await sub.call(['PING', 'hi'], /hi\r\n$/));
        // SPUBLISH reaches shard subscribers only; PUBLISH the channel's and the patterns'.
        t.push(await other.call(['SPUBLISH', 'orders', 'o1'], END));
        t.push(await sub.read(frames(1)));
        t.push(await other.call(['SPUBLISH', 'bin\u0000ary', Buffer.from([0, 0xff, 0x0d, 0x0a])], END));
        t.push(await sub.read(/\$4\r\n[\s\S]{4}\r\n$/));
        t.push(await other.call(['SPUBLISH', 'nobody', 'x'], END));
        t.push(await other.call(['PUBLISH', 'orders', 'p1'], END));
        t.push(await sub.read(/pmessage\r\n\$4\r\nord\*\r\n\$6\r\norders\r\n\$2\r\np1\r\n$/));
        // Introspection (one active name per query: Redis lists its dict in hash order).
        t.push(await other.call(['PUBSUB', 'SHARDCHANNELS', 'ord*'], END));
        t.push(await other.call(['PUBSUB', 'SHARDCHANNELS', 'nothing*'], END));
        t.push(await other.call(['PUBSUB', 'SHARDNUMSUB', 'orders', 'more', 'nobody'], END));
        t.push(await other.call(['PUBSUB', 'SHARDNUMSUB'], END));
        t.push(await other.call(['PUBSUB', 'CHANNELS', 'mo*'], END));
        t.push(await other.call(['PUBSUB', 'NUMSUB', 'more'], END));
        t.push(subscriptionFields(await other.call(['CLIENT', 'LIST'], END), 'shardsub'));
        t.push(subscriptionFields(await other.call(['CLIENT', 'LIST', 'TYPE', 'pubsub'], END), 'shardsub'));
        t.push(
          /pubsubshard_channels:\d+/.exec(await other.call(['INFO', 'stats'], /pubsubshard_channels:\d+\r\n[\s\S]*\r\n$/))?.[0] ?? 'none',
        );
        // SUNSUBSCRIBE one by one, a name never subscribed, then all (one left), then none.
        t.push(await sub.call(['SUNSUBSCRIBE', 'orders', 'never'], frames(2)));
        t.push(await sub.call(['SUNSUBSCRIBE', 'bin\u0000ary', 'a b'], frames(2)));
        t.push(await sub.call(['SUNSUBSCRIBE'], frames(1)));
        t.push(await sub.call(['SUNSUBSCRIBE'], frames(1)));
        t.push(await other.call(['PUBSUB', 'SHARDNUMSUB', 'orders', 'more'], END));
        // Still subscribed to a channel and a pattern: still in subscribed mode.
        t.push(await sub.call(['GET', 'k'], END));
        t.push(await sub.call(['UNSUBSCRIBE'], frames(1)));
        t.push(await sub.call(['PUNSUBSCRIBE'], frames(1)));
        t.push(await sub.call(['GET', 'k'], END));
      } finally {
        sub.close();
        other.close();
      }
      return t;
    });
  });

  it('RESP3: pushes, other commands allowed while subscribed, CLIENT INFO', async () => {
    await differential(async (port) => {
      const sub = await Peer.open(port);
      const other = await Peer.open(port);
      const t: string[] = [];
      try {
        await sub.call(['HELLO', '3', 'SETNAME', 'r3'], /\$7\r\nmodules\r\n\*0\r\n$/);
        t.push(await sub.call(['SSUBSCRIBE', 'r3chan'], frames(1)));
        t.push(await sub.call(['GET', 'k'], END));
        t.push(await sub.call(['PING'], END));
        t.push(await other.call(['SPUBLISH', 'r3chan', 'hello'], END));
        t.push(await sub.read(frames(1)));
        t.push(subscriptionFields((await sub.call(['CLIENT', 'INFO'], END)).replace(/^=\d+\r\ntxt:/, ' '), 'r3'));
        t.push(await sub.call(['SUNSUBSCRIBE', 'r3chan', 'other'], frames(2)));
        t.push(await sub.call(['SUNSUBSCRIBE'], frames(1)));
      } finally {
        sub.close();
        other.close();
      }
      return t;
    });
  });

  it('bad input gets Redis’s errors and the connection lives on; SSUBSCRIBE is refused inside EXEC, SPUBLISH is queued', async () => {
    await differential(async (port) => {
      const peer = await Peer.open(port);
      const t: string[] = [];
      try {
        t.push(await peer.call(['SSUBSCRIBE'], END));
        t.push(await peer.call(['SPUBLISH', 'a'], END));
        t.push(await peer.call(['SPUBLISH', 'a', 'b', 'c'], END));
        t.push(await peer.call(['PUBSUB', 'SHARDCHANNELS', 'a', 'b'], END));
        t.push(await peer.call(['PUBSUB', 'CHANNELS', 'a', 'b'], END));
        t.push(await peer.call(['PUBSUB', 'NUMPAT', 'x'], END));
        t.push(await peer.call(['PUBSUB', 'HELP', 'x'], END));
        t.push(await peer.call(['PUBSUB', 'NOPE'], END));
        t.push(await peer.call(['PUBSUB'], END));
        t.push(await peer.call(['PUBSUB', 'HELP'], /Prints this help.\r\n$/));
        t.push(await peer.call(['SUNSUBSCRIBE'], frames(1)));
        t.push(await peer.call(['MULTI'], END));
        t.push(await peer.call(['SSUBSCRIBE', 'tx'], END));
        t.push(await peer.call(['SPUBLISH', 'tx', 'm'], END));
        t.push(await peer.call(['EXEC'], /client\r\n:0\r\n$/));
        t.push(await peer.call(['PUBSUB', 'SHARDNUMSUB', 'tx'], END));
        t.push(await peer.call(['PING'], END));
      } finally {
        peer.close();
      }
      return t;
    });
  });

  it('RESET and a closed connection leave every shard channel', async () => {
    await differential(async (port) => {
      const sub = await Peer.open(port);
      const other = await Peer.open(port);
      const t: string[] = [];
      try {
        t.push(await sub.call(['SSUBSCRIBE', 'reset-a', 'reset-b'], frames(2)));
        t.push(await sub.call(['RESET'], END));
        t.push(await sub.call(['GET', 'k'], END));
        t.push(await other.call(['PUBSUB', 'SHARDNUMSUB', 'reset-a', 'reset-b'], END));
        t.push(await other.call(['SPUBLISH', 'reset-a', 'x'], END));
        t.push(await sub.call(['SSUBSCRIBE', 'gone'], frames(1)));
        sub.close();
        // The server sees the close a little later: ask until the count drops (both must reach 0).
        let count = '';
        for (let i = 0; i < 100; i++) {
          count = await other.call(['PUBSUB', 'SHARDNUMSUB', 'gone'], END);
          if (count.endsWith(':0\r\n')) break;
          await sleep(20);
        }
        t.push(count);
      } finally {
        sub.close();
        other.close();
      }
      return t;
    });
  });
});

describe('sharded pub/sub limits', () => {
  it('a shard subscriber that never reads is cut at the pubsubLimits hard limit; the others are served', async () => {
    const resp = respAdapter({ pubsubLimits: { hardBytes: 4 * 1024 * 1024, softBytes: 0, softSeconds: 0 } });
    const service = new PortService({ env: {} });
    const binding = service.bind(resp, { port: 0, host: '127.0.0.1' });
    await service.start();
    const port = portOf(binding);
    try {
      const slow = await rawConnect(port);
      slow.on('error', () => {});
      slow.write('SSUBSCRIBE firehose\r\n');
      await readUntil(slow, /:1\r\n$/);
      slow.pause(); // never reads again
      const closed = once(slow, 'close');
      // ~64 MB in bursts of 16 × 256 KiB, each burst before the event loop turns: past the 4 MB hard limit early.
      const payload = Buffer.alloc(256 * 1024, 120);
      let reached = 0;
      for (let burst = 0; burst < 16; burst++) {
        for (let i = 0; i < 16; i++) reached += resp.spublish('firehose', payload);
        await sleep(1);
      }
      slow.resume(); // to see the server's close
      await closed;
      expect(reached).toBeGreaterThan(0);
      expect(resp.activeShardChannels()).toEqual([]);
      const other = await Peer.open(port);
      expect(await other.call(['PING'], END)).toBe('+PONG\r\n');
      other.close();
    } finally {
      await service.stop();
    }
  });
});

describe('sharded pub/sub with real clients', () => {
  it('ioredis: ssubscribe, smessage events, spublish', async () => {
    const port = (adapter as Server).port;
    const sub = new Redis({ port, host: '127.0.0.1' });
    const pub = new Redis({ port, host: '127.0.0.1' });
    try {
      expect(await sub.ssubscribe('io-a', 'io-b')).toBe(2);
      const received = new Promise<[string, string]>((resolve) =>
        sub.once('smessage', (channel: string, message: string) => resolve([channel, message])),
      );
      expect(await pub.spublish('io-b', 'hello')).toBe(1);
      expect(await received).toEqual(['io-b', 'hello']);
      expect(await pub.pubsub('SHARDNUMSUB', 'io-a', 'io-b')).toEqual(['io-a', 1, 'io-b', 1]);
      expect(await sub.sunsubscribe('io-a')).toBe(1);
      expect(await pub.spublish('io-a', 'nobody')).toBe(0);
    } finally {
      sub.disconnect();
      pub.disconnect();
    }
  });

  it.each([[3], [2]] as const)('node-redis 6 on RESP%i: sSubscribe, sPublish, sUnsubscribe', async (RESP) => {
    const url = `redis://127.0.0.1:${(adapter as Server).port}`;
    const sub = createClient({ url, RESP });
    const pub = createClient({ url, RESP });
    sub.on('error', () => {});
    pub.on('error', () => {});
    await Promise.all([sub.connect(), pub.connect()]);
    try {
      const messages: Array<[string, string]> = [];
      let got: () => void = () => {};
      const second = new Promise<void>((resolve) => {
        got = resolve;
      });
      await sub.sSubscribe('nr-chan', (message, channel) => {
        messages.push([channel, message]);
        if (messages.length === 2) got();
      });
      expect(await pub.sPublish('nr-chan', 'one')).toBe(1);
      expect(await pub.sPublish('nr-chan', 'two')).toBe(1);
      await second;
      expect(messages).toEqual([
        ['nr-chan', 'one'],
        ['nr-chan', 'two'],
      ]);
      expect(await pub.pubSubShardChannels('nr-*')).toEqual(['nr-chan']);
      await sub.sUnsubscribe('nr-chan');
      expect(await pub.sPublish('nr-chan', 'three')).toBe(0);
    } finally {
      sub.destroy();
      pub.destroy();
    }
  });
});
