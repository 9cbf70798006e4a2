import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { createClient } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type CommandLine,
  encode,
  onEach,
  RawClient,
  REDIS_SERVER,
  type Started,
  show,
  startMiniRedis,
  startRedisServer,
} from './support.js';

// Client-side caching (CLIENT TRACKING) against a real redis-server 7.0.15: the same sessions on
// several raw connections, every frame compared byte for byte — replies and invalidation pushes.
// Client ids differ between the servers: they are written as <id N> (the id of connection N).

const execFileAsync = promisify(execFile);

let real: Started | undefined;
let mini: Started | undefined;

beforeAll(async () => {
  if (!existsSync(REDIS_SERVER)) throw new Error(`${REDIS_SERVER} is needed for the differential tests`);
  [real, mini] = await Promise.all([startRedisServer(), startMiniRedis()]);
}, 30_000);

afterAll(async () => {
  await Promise.all([real?.stop(), mini?.stop()]);
});

/** A step: send commands (built from the connections' ids) on connection `on`, read `replies` frames (default one per command). */
interface Step {
  on: number;
  send?: CommandLine[] | ((ids: number[]) => CommandLine[]);
  replies?: number;
  /** Read the frames but leave them out of the transcript (HELLO's map names the server). */
  quiet?: boolean;
  /** The frames may hold client ids: write them as <id N>. */
  ids?: boolean;
  close?: boolean;
  wait?: number;
}

async function session(port: number, connections: number, steps: readonly Step[]): Promise<string[]> {
  const clients = Array.from({ length: connections }, () => new RawClient(port));
  const transcript: string[] = [];
  try {
    await (clients[0] as RawClient).send(['FLUSHALL', 'CONFIG SET tracking-table-max-keys 1000000']);
    const ids: number[] = [];
    for (const client of clients) {
      const [id] = await client.send(['CLIENT ID']);
      ids.push(Number(String(id).slice(1)));
    }
    const named = (reply: Buffer, withIds = false): string => {
      let text = show(reply);
      if (!withIds) return text;
      ids.forEach((id, n) => {
        text = text.replaceAll(`:${id}⏎`, `:<id ${n}>⏎`).replaceAll(`id=${id} `, `id=<id ${n}> `);
      });
      return text;
    };
    for (const step of steps) {
      const client = clients[step.on] as RawClient;
      if (step.close) {
        client.close();
        // Let the server see the close before the next command (it is on another connection).
        await new Promise((resolve) => setTimeout(resolve, 200));
        continue;
      }
      const commands = typeof step.send === 'function' ? step.send(ids) : (step.send ?? []);
      if (commands.length > 0) client.socket.write(encode(commands));
      const replies = await client.read(step.replies ?? commands.length);
      if (!step.quiet) transcript.push(...replies.map((reply) => `#${step.on} ${named(reply, step.ids)}`));
      if (step.wait !== undefined) await new Promise((resolve) => setTimeout(resolve, step.wait));
    }
    // Nothing else may be waiting on any connection: a PING each must come back as the next frame.
    for (const [n, client] of clients.entries()) {
      if (steps.some((step) => step.on === n && step.close)) continue;
      const [pong] = await client.send(['PING']);
      transcript.push(`#${n} ${named(pong as Buffer)}`);
    }
  } finally {
    for (const client of clients) client.close();
  }
  return transcript;
}

async function compare(connections: number, steps: readonly Step[]): Promise<string[]> {
  const [expected, actual] = await onEach([real as Started, mini as Started], (server) => session(server.port, connections, steps));
  expect(actual).toEqual(expected);
  return actual as string[];
}

const hello3 = (on: number): Step => ({ on, send: ['HELLO 3'], quiet: true });

describe('CLIENT TRACKING against redis-server 7.0.15', () => {
  it('default mode: a key read by a tracking client is invalidated once by another client’s write, for every type', async () => {
    const transcript = await compare(2, [
      hello3(0),
      { on: 0, send: ['CLIENT TRACKING on', 'GET foo', 'MGET a b', 'HGET h f', 'LRANGE l 0 -1', 'SMEMBERS s', 'ZRANGE z 0 -1'] },
      { on: 1, send: ['SET foo bar'] },
      { on: 0, replies: 1 },
      { on: 1, send: ['SET foo baz', 'MSET a 1 b 2'] },
      { on: 0, replies: 2 },
      { on: 1, send: ['HSET h f v', 'RPUSH l x', 'SADD s m', 'ZADD z 1 m'] },
      { on: 0, replies: 4 },
      // A write by the tracking client itself: its reply, then the push.
      { on: 0, send: ['GET foo', 'SET foo mine'], replies: 3 },
      { on: 0, send: ['CLIENT TRACKINGINFO', 'CLIENT GETREDIR'] },
      // Tracking off: no more invalidations for what it read before.
      { on: 0, send: ['GET foo', 'CLIENT TRACKING off', 'CLIENT GETREDIR', 'CLIENT TRACKINGINFO'] },
      { on: 1, send: ['SET foo again'] },
    ]);
    expect(transcript).toContain('#0 >2⏎$10⏎invalidate⏎*1⏎$3⏎foo⏎');
  });

  it('writes of every kind invalidate: DEL, EXPIRE, RENAME, INCR, APPEND, LPOP, and a read after the write re-arms', async () => {
    await compare(2, [
      { on: 1, send: ['MSET k1 1 k2 2 k3 3 k4 x', 'RPUSH l a b'] },
      hello3(0),
      { on: 0, send: ['CLIENT TRACKING on', 'MGET k1 k2 k3 k4', 'LINDEX l 0'] },
      { on: 1, send: ['DEL k1', 'EXPIRE k2 100', 'RENAME k3 k5', 'INCR k5', 'APPEND k4 y', 'LPOP l'] },
      { on: 0, replies: 5 },
      { on: 0, send: ['GET k5'] },
      { on: 1, send: ['INCR k5'] },
      { on: 0, replies: 1 },
    ]);
  });

  it('BCAST with prefixes: every write under a prefix, batched per prefix; errors for overlaps and bad combinations', async () => {
    await compare(2, [
      hello3(0),
      { on: 0, send: ['CLIENT TRACKING on BCAST PREFIX user: PREFIX obj:', 'CLIENT TRACKINGINFO'] },
      { on: 1, send: ['MSET user:1 a user:2 b other c obj:1 d'] },
      { on: 0, replies: 2 },
      { on: 1, send: ['SET other2 x'] },
      {
        on: 0,
        send: [
          'CLIENT TRACKING on BCAST PREFIX us',
          'CLIENT TRACKING on BCAST PREFIX a PREFIX ab',
          'CLIENT TRACKING on PREFIX x',
          'CLIENT TRACKING on BCAST OPTIN',
          'CLIENT TRACKING on OPTIN',
          'CLIENT TRACKING on OPTIN OPTOUT',
          'CLIENT TRACKING on BCAST PREFIX zz',
          'CLIENT TRACKINGINFO',
        ],
      },
      // The client's own writes come back too (no NOLOOP).
      { on: 0, send: ['SET zz1 v'], replies: 2 },
    ]);
  });

  it('BCAST without a prefix announces every key; NOLOOP leaves out the client’s own writes', async () => {
    await compare(2, [
      hello3(0),
      { on: 0, send: ['CLIENT TRACKING on BCAST NOLOOP'] },
      { on: 0, send: ['SET mine 1'] },
      { on: 1, send: ['SET theirs 1'] },
      { on: 0, replies: 1 },
    ]);
  });

  it('OPTIN with CLIENT CACHING yes tracks only the next command; OPTOUT with CACHING no skips it', async () => {
    await compare(2, [
      hello3(0),
      {
        on: 0,
        send: ['CLIENT CACHING yes', 'CLIENT TRACKING on OPTIN', 'CLIENT CACHING no', 'GET a', 'CLIENT CACHING yes', 'GET b', 'GET c'],
      },
      { on: 0, send: ['CLIENT TRACKINGINFO'] },
      { on: 1, send: ['MSET a 1 b 1 c 1'] },
      { on: 0, replies: 1 },
      {
        on: 0,
        send: ['CLIENT TRACKING on OPTOUT', 'CLIENT TRACKING off', 'CLIENT TRACKING on OPTOUT', 'CLIENT CACHING no', 'GET a', 'GET b'],
      },
      { on: 1, send: ['MSET a 2 b 2'] },
      { on: 0, replies: 1 },
      // CACHING yes spans a whole MULTI … EXEC.
      {
        on: 0,
        send: ['CLIENT TRACKING off', 'CLIENT TRACKING on OPTIN', 'CLIENT CACHING yes', 'MULTI', 'GET x', 'GET y', 'EXEC', 'GET z'],
      },
      { on: 1, send: ['MSET x 1 y 1 z 1'] },
      { on: 0, replies: 2 },
    ]);
  });

  it('NOLOOP: a write by the tracking client does not invalidate its own read', async () => {
    await compare(2, [
      hello3(0),
      { on: 0, send: ['CLIENT TRACKING on NOLOOP', 'GET k', 'SET k v', 'GET k2'] },
      { on: 1, send: ['SET k2 v'] },
      { on: 0, replies: 1 },
    ]);
  });

  it('REDIRECT to a RESP2 subscriber of __redis__:invalidate, and to a RESP3 client; a closed target breaks the redirect', async () => {
    await compare(4, [
      { on: 1, send: ['SUBSCRIBE __redis__:invalidate'] },
      { on: 0, send: (ids) => [['CLIENT', 'TRACKING', 'on', 'REDIRECT', String(ids[1])], 'GET k', 'CLIENT GETREDIR'], ids: true },
      { on: 2, send: ['SET k v'] },
      { on: 1, replies: 1 },
      { on: 2, send: ['FLUSHALL'] },
      { on: 1, replies: 1 },
      // A RESP3 target gets a push, subscribed or not.
      hello3(3),
      { on: 0, send: (ids) => [['CLIENT', 'TRACKING', 'on', 'REDIRECT', String(ids[3])], 'GET k'] },
      { on: 2, send: ['SET k v'] },
      { on: 3, replies: 1 },
      { on: 3, close: true },
      hello3(0),
      { on: 0, send: ['GET k'] },
      { on: 2, send: ['SET k w'] },
      { on: 0, replies: 1, ids: true },
      { on: 0, send: ['CLIENT TRACKINGINFO'], ids: true },
    ]);
  });

  it('bad REDIRECTs, a RESP2 client without REDIRECT, syntax errors and CLIENT CACHING outside tracking', async () => {
    await compare(2, [
      {
        on: 0,
        send: (ids) => [
          'CLIENT TRACKING on REDIRECT 987654',
          'CLIENT TRACKING on REDIRECT x',
          ['CLIENT', 'TRACKING', 'on', 'REDIRECT', String(ids[1]), 'REDIRECT', String(ids[1])],
          'CLIENT TRACKING on REDIRECT',
          'CLIENT TRACKING maybe',
          'CLIENT TRACKING on NOSUCH',
          'CLIENT TRACKING',
          'CLIENT CACHING yes',
          'CLIENT CACHING maybe',
          'CLIENT TRACKINGINFO extra',
          // RESP2 on the same connection: accepted, though no invalidation can reach it.
          'CLIENT TRACKING on',
          'GET k',
          'CLIENT TRACKING on BCAST',
          'CLIENT CACHING maybe',
          'CLIENT CACHING yes',
        ],
      },
      { on: 1, send: ['SET k v'] },
    ]);
  });

  it('FLUSHALL and FLUSHDB: a null invalidation to every tracking client, the flusher after its reply', async () => {
    await compare(3, [
      hello3(0),
      hello3(1),
      { on: 0, send: ['CLIENT TRACKING on', 'GET k'] },
      { on: 1, send: ['CLIENT TRACKING on BCAST PREFIX k'] },
      { on: 2, send: ['FLUSHALL'] },
      { on: 0, replies: 1 },
      { on: 1, replies: 1 },
      { on: 0, send: ['FLUSHDB'], replies: 2 },
      { on: 1, replies: 1 },
      // The table was emptied: a write after the flush tells nobody in default mode.
      { on: 2, send: ['SET k v'] },
      { on: 1, replies: 1 },
    ]);
  });

  it('expiry: a tracked key that expires is invalidated', async () => {
    await compare(2, [
      hello3(0),
      { on: 1, send: ['SET k v PX 100'] },
      { on: 0, send: ['CLIENT TRACKING on', 'GET k'] },
      // Active expiry (10 times a second) finds it: the push arrives without a command.
      { on: 0, replies: 1 },
    ]);
  });
  it('edges: the same prefix twice, re-enabling with other options, SWAPDB, lazy expiry of a key the reader reads again', async () => {
    await compare(2, [
      hello3(0),
      {
        on: 0,
        send: [
          'CLIENT TRACKING on BCAST PREFIX p',
          'CLIENT TRACKING on BCAST PREFIX p',
          'CLIENT TRACKING on BCAST',
          'CLIENT TRACKINGINFO',
          'CLIENT TRACKING off',
          'CLIENT TRACKING on NOLOOP',
          'CLIENT TRACKING on',
          'CLIENT TRACKINGINFO',
          'GET k',
        ],
      },
      { on: 1, send: ['SWAPDB 0 1', 'SET e v PX 1'], wait: 50 },
      // The reader's GET of an expired key it read: the expiry's invalidation after the reply.
      { on: 0, send: ['GET e', 'GET e'] },
      { on: 1, send: ['SET e w'] },
      { on: 0, replies: 1 },
    ]);
  });

  it('a RESP3 client redirecting to a RESP2 subscriber: keys and a flush', async () => {
    await compare(3, [
      { on: 1, send: ['SUBSCRIBE __redis__:invalidate'] },
      hello3(0),
      { on: 0, send: (ids) => [['CLIENT', 'TRACKING', 'on', 'REDIRECT', String(ids[1])], 'GET k'] },
      { on: 2, send: ['SET k v', 'FLUSHDB'] },
      { on: 1, replies: 2 },
      // The tracking client's own write while its target is gone: the broken-redirect push after its reply.
      { on: 0, send: (ids) => [['CLIENT', 'TRACKING', 'on', 'REDIRECT', String(ids[2])], 'GET k'] },
      { on: 2, close: true },
      { on: 0, send: ['SET k v', 'CLIENT TRACKINGINFO', 'RESET', 'CLIENT TRACKINGINFO'], replies: 5, ids: true },
    ]);
  });
});

describe('tracking-table-max-keys', () => {
  it('past the limit, keys leave the table and their readers are told; CONFIG GET/SET', async () => {
    const client = new RawClient((mini as Started).port);
    try {
      const [, , , , ...reads] = await client.send([
        'HELLO 3',
        'CONFIG SET tracking-table-max-keys 2',
        'CONFIG GET tracking-table-max-keys',
        'CLIENT TRACKING on',
        'GET a',
        'GET b',
        'GET c',
      ]);
      expect(reads.map(show)).toEqual(['_⏎', '_⏎', '_⏎']);
      // The oldest key goes (Redis picks random ones): one invalidation, for a.
      const [evicted] = await client.read(1);
      expect(show(evicted as Buffer)).toBe('>2⏎$10⏎invalidate⏎*1⏎$1⏎a⏎');
      const replies = await client.send([
        'CONFIG GET tracking-table-max-keys',
        'CONFIG SET tracking-table-max-keys -1',
        'CONFIG SET tracking-table-max-keys 1000000',
      ]);
      expect(replies.map(show)).toEqual([
        '%1⏎$23⏎tracking-table-max-keys⏎$1⏎2⏎',
        "-ERR CONFIG SET failed (possibly related to argument 'tracking-table-max-keys') - argument must be between 0 and 9223372036854775807 inclusive⏎",
        '+OK⏎',
      ]);
    } finally {
      client.close();
    }
  });

  it('CONFIG SET tracking-table-max-keys answers as redis-server for a bad value', async () => {
    const answers = await Promise.all(
      [real as Started, mini as Started].map(async (server) => {
        const client = new RawClient(server.port);
        try {
          return (await client.send(['CONFIG SET tracking-table-max-keys -1', 'CONFIG SET tracking-table-max-keys x'])).map(show);
        } finally {
          client.close();
        }
      }),
    );
    expect(answers[1]).toEqual(answers[0]);
  });
});

describe('real clients', () => {
  it('node-redis 5 client-side cache (RESP3): hits from the cache until another client writes', async () => {
    const url = `redis://127.0.0.1:${(mini as Started).port}`;
    const cached = createClient({ url, RESP: 3, clientSideCache: { ttl: 0, maxEntries: 0 } });
    const writer = createClient({ url });
    await Promise.all([cached.connect(), writer.connect()]);
    try {
      await writer.set('greeting', 'hello');
      expect(await cached.get('greeting')).toBe('hello');
      expect(await cached.get('greeting')).toBe('hello');
      const cache = cached.clientSideCache;
      expect(cache?.stats().hitCount).toBe(1);
      const invalidated = new Promise<void>((resolve) => {
        cache?.on('invalidate', () => resolve());
      });
      await writer.set('greeting', 'bonjour');
      await invalidated;
      expect(await cached.get('greeting')).toBe('bonjour');
      expect(cache?.stats().missCount).toBe(2);
    } finally {
      cached.destroy();
      writer.destroy();
    }
  });

  it('ioredis (RESP3) with manual CLIENT TRACKING: the push arrives and the command stream stays in step', async () => {
    const port = (mini as Started).port;
    const tracked = new Redis({ port, host: '127.0.0.1', protocol: 3 });
    const writer = new Redis(port, '127.0.0.1');
    try {
      expect(await tracked.call('CLIENT', 'TRACKING', 'on')).toBe('OK');
      expect(await tracked.get('profile:1')).toBe(null);
      // ioredis has no event for `invalidate` pushes: watch its socket for the frame.
      const pushed = new Promise<void>((resolve) => {
        let seen = '';
        tracked.stream.on('data', (chunk: Buffer) => {
          seen += chunk.toString('latin1');
          if (seen.includes('>2\r\n$10\r\ninvalidate\r\n*1\r\n$9\r\nprofile:1\r\n')) resolve();
        });
      });
      await writer.set('profile:1', 'x');
      await pushed;
      expect(await tracked.get('profile:1')).toBe('x');
      expect(await tracked.call('CLIENT', 'GETREDIR')).toBe(0);
    } finally {
      tracked.disconnect();
      writer.disconnect();
    }
  });

  it('redis-cli -3 on a terminal prints the invalidation push as redis-server’s', async () => {
    // On a terminal (script(1) gives it one) redis-cli prints pushes; the lines of its stdin run on one
    // connection, so the client's own write invalidates its read.
    const dir = await mkdtemp(join(tmpdir(), 'tracking-cli-'));
    const input = join(dir, 'commands.txt');
    await writeFile(input, 'CLIENT TRACKING on\nGET cli:key\nSET cli:key v\nPING\n');
    const outputs = await Promise.all(
      [real as Started, mini as Started].map(async (server) => {
        const command = `redis-cli -3 -h 127.0.0.1 -p ${server.port} < ${input}`;
        const { stdout } = await execFileAsync('script', ['-qec', command, '/dev/null'], { timeout: 10_000 });
        return stdout;
      }),
    );
    await rm(dir, { recursive: true });
    expect(outputs[1]).toBe(outputs[0]);
    expect(outputs[1]).toContain("-> invalidate: 'cli:key'");
  });
});
