import { existsSync } from 'node:fs';
import type { Socket } from 'node:net';
import { PortService } from '@portbind/core';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { portOf, rawConnect, readUntil, readUntilClose } from '../../../test/support/net.js';
import { OK, type RespClient, respAdapter } from '../src/index.js';
import { REDIS_SERVER, type Server, startRedis } from './real-redis.js';

// CLIENT REPLY, PAUSE/UNPAUSE, UNBLOCK, NO-EVICT, GETREDIR and HELP: the same scripts over raw
// sockets to redis-server 7.0.15 and to an adapter reporting 7.0.15 must give the same bytes, in
// the same order, with the same delays (a command held by CLIENT PAUSE answers late on both).

/** An adapter with just enough of a keyspace for the scripts: SET, GET, LPUSH and a BLPOP that CLIENT UNBLOCK can end. */
async function startAdapter(): Promise<Server> {
  const resp = respAdapter({ serverVersion: '7.0.15' });
  const strings = new Map<string, Buffer>();
  const lists = new Map<string, Buffer[]>();
  const waiting = new Map<string, Array<(element: Buffer) => void>>();
  resp.command('flushall', { arity: -1, flags: ['write'] }, () => {
    strings.clear();
    lists.clear();
    return OK;
  });
  resp.command('set', { arity: 3, flags: ['write'] }, (_client, [, key, value]) => {
    strings.set(String(key), Buffer.from(value as Buffer));
    return OK;
  });
  resp.command('get', { arity: 2, flags: ['readonly'] }, (_client, [, key]) => strings.get(String(key)) ?? null);
  resp.command('lpush', { arity: -3, flags: ['write'] }, (_client, [, key, ...elements]) => {
    const name = String(key);
    const list = lists.get(name) ?? [];
    for (const element of elements) list.unshift(Buffer.from(element));
    lists.set(name, list);
    const length = list.length;
    for (;;) {
      const waiter = waiting.get(name)?.shift();
      const element = list.shift();
      if (waiter === undefined || element === undefined) {
        if (element !== undefined) list.unshift(element);
        break;
      }
      waiter(element);
    }
    return length;
  });
  resp.command('blpop', { arity: 3, flags: ['write'] }, (client: RespClient, [, key]) => {
    const name = String(key);
    const element = lists.get(name)?.shift();
    if (element !== undefined) return [name, element];
    return new Promise<undefined>((resolve) => {
      const waiter = (value: Buffer): void => {
        client.onUnblock(undefined); // answered: no longer unblockable
        client.reply.array(2).bulk(name).bulk(value);
        resolve(undefined);
      };
      const queue = waiting.get(name) ?? [];
      queue.push(waiter);
      waiting.set(name, queue);
      client.onUnblock(() => {
        queue.splice(queue.indexOf(waiter), 1);
        client.reply.nullArray(); // as on its timeout
        resolve(undefined);
      });
    });
  });
  const service = new PortService({ env: {} });
  const binding = service.bind(resp, { port: 0, host: '127.0.0.1' });
  await service.start();
  return {
    port: portOf(binding),
    stop: async () => {
      await service.stop();
    },
  };
}

let real: Server | undefined;
let adapter: Server | undefined;

beforeAll(async () => {
  if (!existsSync(REDIS_SERVER)) throw new Error(`${REDIS_SERVER} not found: apt-get install redis-server (bash .ci/run does)`);
  [real, adapter] = await Promise.all([startRedis(), startAdapter()]);
});

afterAll(async () => {
  await Promise.all([real?.stop(), adapter?.stop()]);
});

/** A raw connection: send lines, read until a pattern, note when (ms since the scenario began). */
class Peer {
  constructor(
    readonly socket: Socket,
    readonly started: number,
  ) {}

  static async open(port: number, started: number): Promise<Peer> {
    return new Peer(await rawConnect(port), started);
  }

  send(...lines: string[]): void {
    this.socket.write(lines.map((line) => `${line}\r\n`).join(''));
  }

  async until(pattern: RegExp): Promise<{ text: string; at: number }> {
    const text = await readUntil(this.socket, pattern, 5000);
    return { text, at: Date.now() - this.started };
  }
}

/** Run a scenario against both servers (one after the other, so timings do not mix); transcripts must be equal. */
async function differential(scenario: (port: number) => Promise<string[]>): Promise<void> {
  const expected = await scenario((real as Server).port);
  const actual = await scenario((adapter as Server).port);
  expect(actual).toEqual(expected);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('CLIENT subcommands, byte for byte as redis-server 7.0.15', () => {
  it('bad arguments: arity, syntax, timeouts, modes and reasons', async () => {
    const script = [
      'CLIENT REPLY',
      'CLIENT REPLY foo',
      'CLIENT REPLY on x',
      'CLIENT PAUSE',
      'CLIENT PAUSE abc',
      'CLIENT PAUSE -1',
      'CLIENT PAUSE 00',
      'CLIENT PAUSE -0',
      'CLIENT PAUSE 1.5',
      'CLIENT PAUSE 99999999999999999999',
      'CLIENT PAUSE 10 foo',
      'CLIENT PAUSE abc foo',
      'CLIENT PAUSE 10 write x',
      'CLIENT pause 10 write x',
      'CLIENT UNPAUSE x',
      'CLIENT UNBLOCK',
      'CLIENT UNBLOCK abc',
      'CLIENT UNBLOCK 1 foo',
      'CLIENT UNBLOCK abc foo',
      'CLIENT UNBLOCK 1 timeout x',
      'CLIENT UNBLOCK 00',
      'CLIENT UNBLOCK 99999',
      'CLIENT UNBLOCK -5 error',
      'CLIENT UNBLOCK 0 TIMEOUT',
      'CLIENT NO-EVICT',
      'CLIENT NO-EVICT maybe',
      'CLIENT NO-EVICT off x',
      'CLIENT NO-EVICT on',
      'CLIENT no-evict OFF',
      'CLIENT GETREDIR x',
      'CLIENT GETREDIR',
      'CLIENT HELP x',
      'CLIENT ID x',
      'CLIENT GETNAME x',
      'CLIENT INFO x',
      'CLIENT FOO',
      'CLIENT PAUSE 0',
      'CLIENT PAUSE 0 write',
      'CLIENT PAUSE 0 ALL',
      'CLIENT UNPAUSE',
      'PING end',
    ];
    await differential(async (port) => {
      const peer = await Peer.open(port, Date.now());
      peer.send(...script);
      const { text } = await peer.until(/\$3\r\nend\r\n$/);
      peer.socket.destroy();
      return text.split('\r\n');
    });
  });

  it('CLIENT HELP', async () => {
    await differential(async (port) => {
      const peer = await Peer.open(port, Date.now());
      peer.send('CLIENT HELP', 'client help', 'PING end');
      const { text } = await peer.until(/\$3\r\nend\r\n$/);
      peer.socket.destroy();
      return text.split('\r\n');
    });
  });

  it('CLIENT REPLY OFF drops every reply (errors too) until ON; SKIP drops exactly the next one', async () => {
    const script = [
      'CLIENT REPLY OFF',
      'PING',
      'FOO',
      'SET k v',
      'CLIENT REPLY SKIP',
      'CLIENT REPLY SKIP',
      'PING 1',
      'CLIENT REPLY ON',
      'CLIENT REPLY SKIP',
      'GET k',
      'PING 2',
      'CLIENT REPLY SKIP',
      'CLIENT REPLY ON',
      'CLIENT REPLY SKIP',
      'CLIENT REPLY BAD',
      'PING 3',
      'CLIENT REPLY SKIP',
      'MULTI',
      'SET k w',
      'EXEC',
      'CLIENT REPLY SKIP',
      'NOSUCHCOMMAND',
      'GET k',
      'CLIENT REPLY OFF',
      'CLIENT REPLY BAD',
      'CLIENT REPLY SKIP',
      'GET k',
      'CLIENT REPLY ON',
      'PING end',
    ];
    await differential(async (port) => {
      const peer = await Peer.open(port, Date.now());
      peer.send('FLUSHALL', ...script);
      const { text } = await peer.until(/\$3\r\nend\r\n$/);
      peer.socket.destroy();
      return text.split('\r\n');
    });
    // Sent one at a time (each in its own packet), the replies are the same.
    await differential(async (port) => {
      const peer = await Peer.open(port, Date.now());
      for (const line of ['FLUSHALL', ...script]) {
        peer.send(line);
        await sleep(2);
      }
      const { text } = await peer.until(/\$3\r\nend\r\n$/);
      peer.socket.destroy();
      return text.split('\r\n');
    });
  });

  it('pub/sub confirmations and messages go out under CLIENT REPLY OFF and SKIP (pushes), on RESP2 and RESP3', async () => {
    for (const hello of ['PING', 'HELLO 3']) {
      await differential(async (port) => {
        const subscriber = await Peer.open(port, Date.now());
        const publisher = await Peer.open(port, Date.now());
        subscriber.send(hello, 'CLIENT REPLY OFF', 'SUBSCRIBE ch', 'PSUBSCRIBE c*', 'PING');
        const subscribed = await subscriber.until(/c\*\r\n:2\r\n$/);
        publisher.send('PUBLISH ch hello');
        await publisher.until(/:2\r\n$/);
        const messages = await subscriber.until(/hello\r\n[\s\S]*hello\r\n$/);
        subscriber.send('CLIENT REPLY SKIP', 'UNSUBSCRIBE ch', 'PUNSUBSCRIBE c*', 'CLIENT REPLY ON', 'PING end');
        const left = await subscriber.until(/end\r\n$/);
        subscriber.socket.destroy();
        publisher.socket.destroy();
        // The HELLO 3 map is left out: its id differs.
        const confirmations = subscribed.text.slice(subscribed.text.indexOf(hello === 'PING' ? '+PONG' : '>3'));
        return [confirmations, messages.text, left.text];
      });
    }
  });

  it('a protocol error under CLIENT REPLY OFF gets no reply either', async () => {
    await differential(async (port) => {
      const peer = await Peer.open(port, Date.now());
      const received: Buffer[] = [];
      peer.socket.on('data', (chunk: Buffer) => received.push(chunk));
      peer.send('CLIENT REPLY OFF', 'PING', '*1', '$x');
      await sleep(200);
      peer.socket.destroy();
      return [Buffer.concat(received).toString('latin1')];
    });
  });

  it('CLIENT PAUSE 300 WRITE holds writes (and PUBLISH, and an EXEC that writes) but not reads; UNPAUSE releases them', async () => {
    await differential(async (port) => {
      const started = Date.now();
      const [a, b] = await Promise.all([Peer.open(port, started), Peer.open(port, started)]);
      const transcript: string[] = [];
      a.send('FLUSHALL');
      await a.until(/\r\n$/);
      a.send('CLIENT PAUSE 300 WRITE');
      transcript.push(`a ${(await a.until(/\r\n$/)).text}`);
      b.send('GET x', 'PING');
      const read = await b.until(/PONG\r\n$/);
      transcript.push(`b ${read.text}`, `read in time: ${read.at < 150}`);
      b.send('SET x 1', 'GET x');
      const write = await b.until(/\$1\r\n1\r\n$/);
      transcript.push(`b ${write.text}`, `write held: ${write.at >= 250}`);
      // A read behind a held write waits behind it; a transaction that writes is held at EXEC.
      a.send('CLIENT PAUSE 5000 WRITE');
      transcript.push(`a ${(await a.until(/\r\n$/)).text}`);
      b.send('PUBLISH c m', 'MULTI', 'GET x', 'EXEC', 'MULTI', 'SET x 2', 'EXEC', 'GET x');
      await sleep(150);
      a.send('GET x', 'CLIENT UNPAUSE');
      const released = await b.until(/\$1\r\n2\r\n$/);
      transcript.push(`a ${(await a.until(/OK\r\n$/)).text}`);
      transcript.push(`b ${released.text}`, `released by UNPAUSE: ${released.at < 1500}`);
      a.socket.destroy();
      b.socket.destroy();
      return transcript;
    });
  });

  it('CLIENT PAUSE ALL holds every command of every client, the pausing one and CLIENT UNPAUSE included', async () => {
    await differential(async (port) => {
      const started = Date.now();
      const [a, b] = await Promise.all([Peer.open(port, started), Peer.open(port, started)]);
      const transcript: string[] = [];
      a.send('FLUSHALL');
      await a.until(/\r\n$/);
      a.send('CLIENT PAUSE 300 ALL', 'PING');
      await sleep(50);
      b.send('CLIENT UNPAUSE', 'GET x');
      const pinged = await a.until(/PONG\r\n$/);
      const unpaused = await b.until(/\$-1\r\n$/);
      transcript.push(`a ${pinged.text}`, `b ${unpaused.text}`, `held: ${pinged.at >= 250 && unpaused.at >= 250}`);
      // A second, shorter pause does not shorten the first; WRITE does not weaken ALL.
      a.send('CLIENT PAUSE 300 ALL', 'CLIENT PAUSE 10 WRITE', 'PING');
      const again = await a.until(/PONG\r\n$/);
      transcript.push(`a ${again.text}`, `still held: ${again.at - unpaused.at >= 250}`);
      a.socket.destroy();
      b.socket.destroy();
      return transcript;
    });
  });

  it('CLIENT UNBLOCK id [TIMEOUT|ERROR] ends a BLPOP as its timeout would, or with -UNBLOCKED; 0 for a client not blocked', async () => {
    await differential(async (port) => {
      const started = Date.now();
      const [a, b] = await Promise.all([Peer.open(port, started), Peer.open(port, started)]);
      const transcript: string[] = [];
      b.send('CLIENT ID');
      const id = /^:(\d+)\r\n$/.exec((await b.until(/\r\n$/)).text)?.[1];
      a.send(`CLIENT UNBLOCK ${id}`, `CLIENT UNBLOCK ${id} ERROR`);
      transcript.push(`a ${(await a.until(/:0\r\n:0\r\n$/)).text}`);
      b.send('BLPOP list 0');
      await sleep(50);
      a.send(`CLIENT UNBLOCK ${id}`);
      transcript.push(`a ${(await a.until(/\r\n$/)).text}`);
      transcript.push(`b ${(await b.until(/\r\n$/)).text}`);
      b.send('BLPOP list 0', 'PING after');
      await sleep(50);
      a.send(`CLIENT UNBLOCK ${id} error`);
      transcript.push(`a ${(await a.until(/\r\n$/)).text}`);
      transcript.push(`b ${(await b.until(/after\r\n$/)).text}`);
      // A BLPOP that gets its element is not unblocked afterwards.
      b.send('BLPOP list 0');
      await sleep(50);
      a.send('LPUSH list e', `CLIENT UNBLOCK ${id}`);
      transcript.push(`a ${(await a.until(/:0\r\n$/)).text}`);
      transcript.push(`b ${(await b.until(/e\r\n$/)).text}`);
      a.socket.destroy();
      b.socket.destroy();
      return transcript;
    });
  });
});

describe('CLIENT NO-EVICT, PAUSE through clients', () => {
  it('NO-EVICT ON shows the e flag in CLIENT INFO, OFF takes it away', async () => {
    for (const server of [real as Server, adapter as Server]) {
      const peer = await Peer.open(server.port, Date.now());
      peer.send('CLIENT NO-EVICT on', 'CLIENT INFO');
      expect((await peer.until(/resp=2\r?\n\r\n$/)).text).toMatch(/^\+OK\r\n\$\d+\r\nid=\d+ .* flags=e /);
      peer.send('CLIENT NO-EVICT off', 'CLIENT INFO');
      expect((await peer.until(/resp=2\r?\n\r\n$/)).text).toMatch(/^\+OK\r\n\$\d+\r\nid=\d+ .* flags=N /);
      peer.socket.destroy();
    }
  });

  it('NO-EVICT ON spares a client when the input of all clients passes totalQueryBufferLimit: the next largest is closed', async () => {
    const resp = respAdapter({ totalQueryBufferLimit: 10 * 1024 * 1024 });
    resp.command('set', { arity: 3, flags: ['write'] }, () => OK);
    const service = new PortService({ env: {} });
    const binding = service.bind(resp, { port: 0, host: '127.0.0.1' });
    await service.start();
    try {
      const port = portOf(binding);
      const [big, small] = await Promise.all([Peer.open(port, Date.now()), Peer.open(port, Date.now())]);
      big.send('CLIENT NO-EVICT ON');
      expect((await big.until(/\r\n$/)).text).toBe('+OK\r\n');
      const smallClosed = readUntilClose(small.socket, 10_000);
      big.socket.write(`*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$${7 * 1024 * 1024}\r\n`);
      big.socket.write(Buffer.alloc(6 * 1024 * 1024, 0x61));
      while (resp.queryBytes < 6 * 1024 * 1024) await sleep(10);
      small.socket.write(`*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$${5 * 1024 * 1024}\r\n`);
      small.socket.write(Buffer.alloc(5 * 1024 * 1024, 0x61));
      expect(await smallClosed).toEqual({ data: '', closed: true });
      big.socket.write(Buffer.alloc(1024 * 1024, 0x61));
      big.socket.write('\r\nPING\r\n');
      expect((await big.until(/PONG\r\n$/)).text).toBe('+OK\r\n+PONG\r\n');
      big.socket.destroy();
    } finally {
      await service.stop();
    }
  });

  it('ioredis: CLIENT PAUSE 200 WRITE delays SET, not GET; CLIENT UNPAUSE releases it', async () => {
    for (const server of [real as Server, adapter as Server]) {
      const admin = new Redis(server.port, '127.0.0.1', { lazyConnect: true });
      const user = new Redis(server.port, '127.0.0.1', { lazyConnect: true });
      await Promise.all([admin.connect(), user.connect()]);
      try {
        await admin.flushall();
        expect(await admin.call('CLIENT', 'PAUSE', '200', 'WRITE')).toBe('OK');
        let start = Date.now();
        expect(await user.get('k')).toBe(null);
        expect(Date.now() - start).toBeLessThan(150);
        start = Date.now();
        expect(await user.set('k', 'v')).toBe('OK');
        expect(Date.now() - start).toBeGreaterThanOrEqual(150);
        expect(await admin.call('CLIENT', 'PAUSE', '10000', 'WRITE')).toBe('OK');
        start = Date.now();
        const set = user.set('k', 'w');
        await sleep(100);
        expect(await admin.call('CLIENT', 'UNPAUSE')).toBe('OK');
        expect(await set).toBe('OK');
        expect(Date.now() - start).toBeLessThan(2000);
        expect(await user.get('k')).toBe('w');
      } finally {
        admin.disconnect();
        user.disconnect();
      }
    }
  });
});
