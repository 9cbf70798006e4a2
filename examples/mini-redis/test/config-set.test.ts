import { createServer, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CommandLine, freePort, parseReply, RawClient, type Started, show, startMiniRedis, startRedisServer } from './support.js';

// CONFIG GET and CONFIG SET as Redis 7.0.15's config.c, over raw sockets, each reply compared byte
// for byte with a real redis-server: several names and patterns in one GET, hidden parameters,
// CONFIG SET of several parameters all or nothing (a bad value in the set phase, a port that cannot
// be listened on in the apply phase: everything rolls back), and Redis's error texts.

let redis: Started;
let mini: Started;
beforeAll(async () => {
  [redis, mini] = await Promise.all([startRedisServer(), startMiniRedis()]);
});
afterAll(async () => {
  await Promise.all([redis?.stop(), mini?.stop()]);
});

/** Run `script` on a fresh connection to `port`: the replies, readable and exact. */
async function run(port: number, script: readonly CommandLine[]): Promise<string[]> {
  const client = new RawClient(port);
  try {
    return (await client.send(script)).map(show);
  } finally {
    client.close();
  }
}

/** The same script on both servers: the same replies, byte for byte. */
async function same(script: readonly CommandLine[]): Promise<string[]> {
  const expected = await run(redis.port, script);
  const actual = await run(mini.port, script);
  expect(actual).toEqual(expected);
  return actual;
}

/** CONFIG GET's reply as name → value (its order is Redis's hash order, not meaningful). */
async function configGet(port: number, ...patterns: string[]): Promise<Record<string, string>> {
  const client = new RawClient(port);
  try {
    const [reply] = await client.send([['CONFIG', 'GET', ...patterns]]);
    const flat = parseReply(reply as Buffer) as string[];
    const map: Record<string, string> = {};
    for (let i = 0; i < flat.length; i += 2) {
      expect(Object.hasOwn(map, flat[i] as string)).toBe(false); // each name once
      map[flat[i] as string] = flat[i + 1] as string;
    }
    return map;
  } finally {
    client.close();
  }
}

/** A listener holding a free port on 127.0.0.1, as introspection.tcl's dummy_accept. */
async function holdPort(): Promise<{ port: number; server: Server }> {
  const port = await freePort();
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host: '127.0.0.1' }, resolve);
  });
  return { port, server };
}

describe('CONFIG SET is all or nothing', () => {
  it('a bad value rolls back the values set before it (introspection.tcl "rollback on set error")', async () => {
    const replies = await same([
      ['CONFIG', 'SET', 'maxmemory', '10000002'],
      ['CONFIG', 'SET', 'maxmemory', '10000001', 'maxmemory-clients', '200%', 'client-query-buffer-limit', 'invalid'],
      ['CONFIG', 'GET', 'maxmemory'],
      ['CONFIG', 'GET', 'maxmemory-clients'],
      ['CONFIG', 'GET', 'client-query-buffer-limit'],
      ['CONFIG', 'SET', 'maxmemory', '10000001', 'client-query-buffer-limit', 'invalid', 'maxmemory-clients', '200%'],
      ['CONFIG', 'SET', 'client-query-buffer-limit', '2mb', 'maxmemory', '-1'],
      ['CONFIG', 'GET', 'client-query-buffer-limit'],
      ['CONFIG', 'SET', 'maxmemory', '0'],
    ]);
    expect(replies[1]).toBe(
      "-ERR CONFIG SET failed (possibly related to argument 'maxmemory-clients') - percentage argument must be less or equal to 100⏎",
    );
    expect(replies[2]).toBe('*2⏎$9⏎maxmemory⏎$8⏎10000002⏎');
    expect(replies[7]).toBe('*2⏎$25⏎client-query-buffer-limit⏎$10⏎1073741824⏎');
  });

  it('a port another socket holds fails in the apply phase and rolls everything back (introspection.tcl "rollback on apply error")', async () => {
    const held = await holdPort();
    try {
      const script: CommandLine[] = [
        ['CONFIG', 'SET', 'maxmemory', '10000001', 'port', String(held.port), 'client-query-buffer-limit', '10m'],
        ['CONFIG', 'GET', 'maxmemory'],
        ['CONFIG', 'GET', 'client-query-buffer-limit'],
        // The set phase comes first: a bad value after the port is what is reported.
        ['CONFIG', 'SET', 'port', String(held.port), 'client-query-buffer-limit', '1k'],
        // Inside MULTI too (mini-redis looks at the port asynchronously, before changing anything).
        'MULTI',
        ['CONFIG', 'SET', 'port', String(held.port), 'maxmemory', '5mb'],
        'EXEC',
        ['CONFIG', 'GET', 'maxmemory'],
        'PING',
      ];
      const replies = await same(script);
      expect(replies[0]).toBe(
        "-ERR CONFIG SET failed (possibly related to argument 'port') - Unable to listen on this port. Check server logs.⏎",
      );
      expect(replies[1]).toBe('*2⏎$9⏎maxmemory⏎$1⏎0⏎');
      expect(replies[3]).toBe(
        "-ERR CONFIG SET failed (possibly related to argument 'client-query-buffer-limit') - argument must be between 1048576 and 9223372036854775807 inclusive⏎",
      );
      // Both servers still listen where they did.
      expect(await run(redis.port, ['PING'])).toEqual(['+PONG⏎']);
      expect(await run(mini.port, ['PING'])).toEqual(['+PONG⏎']);
    } finally {
      held.server.close();
    }
  });

  it('the present port is a no-op; another free port is refused by mini-redis (its listener does not move)', async () => {
    const port = String(mini.port);
    expect(
      await run(mini.port, [
        ['CONFIG', 'SET', 'port', port, 'maxmemory', '1mb'],
        ['CONFIG', 'GET', 'port', 'maxmemory'],
      ]),
    ).toEqual(['+OK⏎', `*4⏎$4⏎port⏎$${port.length}⏎${port}⏎$9⏎maxmemory⏎$7⏎1048576⏎`]);
    const free = String(await freePort());
    expect(
      await run(mini.port, [
        ['CONFIG', 'SET', 'maxmemory', '0', 'port', free],
        ['CONFIG', 'GET', 'maxmemory', 'port'],
      ]),
    ).toEqual([
      `-ERR CONFIG SET failed (possibly related to argument 'port') - mini-redis cannot move its listener at run time: restart it with RESP_PORT=${free}⏎`,
      `*4⏎$9⏎maxmemory⏎$7⏎1048576⏎$4⏎port⏎$${port.length}⏎${port}⏎`,
    ]);
    expect(await run(mini.port, [['CONFIG', 'SET', 'maxmemory', '0']])).toEqual(['+OK⏎']);
  });

  it("answers bad names and values with Redis's errors", async () => {
    await same([
      ['CONFIG', 'SET', 'maxmemory'],
      ['CONFIG', 'SET', 'maxmemory', '1', 'hz'],
      ['CONFIG', 'SET', 'no-such-thing', '1', 'daemonize', 'yes'],
      ['CONFIG', 'SET', 'daemonize', 'yes', 'no-such-thing', '1'],
      ['CONFIG', 'SET', 'maxmemory', '1', 'MAXMEMORY', '2'],
      ['CONFIG', 'SET', 'port', 'abc'],
      ['CONFIG', 'SET', 'port', '70000'],
      ['CONFIG', 'SET', 'port', '-1'],
      ['CONFIG', 'SET', 'maxmemory-clients', 'abc'],
      ['CONFIG', 'SET', 'maxmemory-clients', '-5%'],
      ['CONFIG', 'SET', 'maxmemory-clients', '101%'],
      ['CONFIG', 'SET', 'maxmemory-clients', '0%'],
      ['CONFIG', 'GET', 'maxmemory-clients'],
      ['CONFIG', 'SET', 'maxmemory-clients', '0'],
      ['CONFIG', 'SET', 'client-query-buffer-limit', '1mb'],
      ['CONFIG', 'GET', 'client-query-buffer-limit'],
      ['CONFIG', 'SET', 'client-query-buffer-limit', '1gb'],
      ['CONFIG', 'SET', 'key-load-delay', 'x'],
      ['CONFIG', 'SET', 'key-load-delay', '0'],
    ]);
  });

  it('a lower client-query-buffer-limit takes effect at once: a bigger request closes its client, others go on', async () => {
    for (const server of [redis, mini]) {
      await run(server.port, [['CONFIG', 'SET', 'client-query-buffer-limit', '1mb']]);
      const big = new RawClient(server.port);
      const closed = new Promise<void>((resolve) => big.socket.once('close', () => resolve()));
      big.socket.on('error', () => {});
      // A 3 MB argument, sent in pieces: past 1 MB the server closes the connection.
      big.socket.write('*2\r\n$3\r\nset\r\n$3145728\r\n');
      const piece = Buffer.alloc(64 * 1024, 'x');
      for (let i = 0; i < 48 && !big.socket.destroyed; i++) big.socket.write(piece);
      await closed;
      expect(await run(server.port, ['PING', ['CONFIG', 'SET', 'client-query-buffer-limit', '1gb']])).toEqual(['+PONG⏎', '+OK⏎']);
    }
  });
});

describe('CONFIG GET', () => {
  it('gives a hidden parameter only when asked by name (introspection.tcl "hidden configs")', async () => {
    for (const server of [redis, mini]) {
      expect(Object.keys(await configGet(server.port, '*'))).not.toContain('key-load-delay');
      expect(Object.keys(await configGet(server.port, '*load*'))).not.toContain('key-load-delay');
      expect(await configGet(server.port, 'key-load-delay')).toEqual({ 'key-load-delay': '0' });
    }
    await same([['CONFIG', 'GET', 'KEY-LOAD-DELAY']]);
  });

  it('takes several names and patterns, each parameter once (introspection.tcl "multiple args")', async () => {
    for (const server of [redis, mini]) {
      const found = await configGet(server.port, 'maxmemory', 'maxmemory*', 'bind', '*of');
      for (const name of ['maxmemory', 'maxmemory-samples', 'maxmemory-clients', 'maxmemory-policy', 'bind', 'replicaof', 'slaveof']) {
        expect(found).toHaveProperty([name]);
      }
    }
    // A name is answered as written, once whatever its case; a pattern adds only what is not there yet.
    await same([
      ['CONFIG', 'GET', 'MaxMemory', 'maxmemory', 'MAXMEMORY'],
      ['CONFIG', 'GET', 'maxmemory', 'maxmemor[y]'],
      ['CONFIG', 'GET', 'databases', 'nothing*', 'no-such-name'],
      ['CONFIG', 'GET'],
    ]);
    const mixed = await configGet(mini.port, 'MAXMEMORY', 'maxmemory*');
    expect(Object.keys(mixed)).toContain('MAXMEMORY');
    expect(Object.keys(mixed)).not.toContain('maxmemory');
  });
});
