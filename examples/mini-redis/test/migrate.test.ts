import { once } from 'node:events';
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type CommandLine,
  freePort,
  RawClient,
  replicationStream,
  type Started,
  show,
  startMiniRedis,
  startRedisServer,
  until,
} from './support.js';

// MIGRATE against a real redis-server 7.0.15: mini-redis → redis-server (mini-redis's own RESP
// connection, its DUMP payloads), redis-server → mini-redis (MIGRATE run on the real server: that
// exercises mini-redis's RESTORE), mini-redis → mini-redis (also in cluster mode: RESTORE-ASKING),
// COPY/REPLACE/KEYS/AUTH/AUTH2, NOKEY, the target's errors, a target that never answers, and every
// bad input's reply byte for byte as the real server's.

let redis: Started;
let redisTarget: Started;
let mini: Started;
let miniTarget: Started;
/** A mini-redis that wants a password (REQUIREPASS). */
let miniAuth: Started;
beforeAll(async () => {
  [redis, redisTarget, mini, miniTarget, miniAuth] = await Promise.all([
    startRedisServer(),
    startRedisServer(),
    startMiniRedis(),
    startMiniRedis(),
    startMiniRedis({ REQUIREPASS: 'sekret' }),
  ]);
});
afterAll(async () => {
  await Promise.all([redis?.stop(), redisTarget?.stop(), mini?.stop(), miniTarget?.stop(), miniAuth?.stop()]);
});

const clients: Redis[] = [];
const client = (port: number, options: Record<string, unknown> = {}): Redis => {
  const made = new Redis({ port, host: '127.0.0.1', protocol: 2, ...options } as never);
  clients.push(made);
  return made;
};
afterAll(() => {
  for (const made of clients) made.disconnect();
});

/** One command's reply over a fresh raw socket, shown exactly. */
async function raw(port: number, command: CommandLine): Promise<string> {
  const socket = new RawClient(port);
  try {
    const [reply] = await socket.send([command]);
    return show(reply as Buffer);
  } finally {
    socket.close();
  }
}

/** Keys of every type, one with a TTL, on a server. */
async function build(source: Redis): Promise<void> {
  await source.flushall();
  await source.set('s', 'hello');
  await source.set('big', 'abcdefgh'.repeat(20_000)); // 160 KB: several 64 KB writes
  await source.set('ttl', 'soon', 'PX', 100_000);
  await source.rpush('l', 'a', '1', 'b');
  await source.sadd('set', 'x', 'y');
  await source.hset('h', 'a', '1', 'b', 'two');
  await source.zadd('z', '1', 'a', '2.5', 'b');
  await source.xadd('x', '1-1', 'n', '1');
}
const ALL = ['s', 'big', 'ttl', 'l', 'set', 'h', 'z', 'x'];

/** What a server holds of the keys `build` made. */
async function contents(server: Redis): Promise<unknown[]> {
  return [
    await server.get('s'),
    (await server.get('big'))?.length,
    await server.get('ttl'),
    await server.lrange('l', 0, -1),
    (await server.smembers('set')).sort(),
    await server.hgetall('h'),
    await server.zrange('z', '0', '-1', 'WITHSCORES'),
    await server.xrange('x', '-', '+'),
  ];
}
const EXPECTED = [
  'hello',
  160_000,
  'soon',
  ['a', '1', 'b'],
  ['x', 'y'],
  { a: '1', b: 'two' },
  ['a', '1', 'b', '2.5'],
  [['1-1', ['n', '1']]],
];

describe('MIGRATE moves keys', () => {
  /** Every key of `build` from one server to the other: all there, the source empty; the target's client. */
  const moveAll = async (from: number, to: number): Promise<Redis> => {
    const source = client(from);
    const target = client(to);
    await build(source);
    await target.flushall();
    expect(await source.call('MIGRATE', '127.0.0.1', String(to), '', '0', '5000', 'KEYS', ...ALL)).toBe('OK');
    expect(await contents(target)).toEqual(EXPECTED);
    expect(await source.dbsize()).toBe(0);
    return target;
  };

  it('mini-redis → redis-server: every type, its TTL, the source keys deleted', async () => {
    const target = await moveAll(mini.port, redisTarget.port);
    const ttl = await target.pttl('ttl');
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(100_000);
    expect(await target.pttl('s')).toBe(-1);
  });

  it('redis-server → mini-redis (the real server MIGRATEs: mini-redis RESTOREs)', async () => {
    const target = await moveAll(redis.port, miniTarget.port);
    expect(await target.pttl('ttl')).toBeGreaterThan(0);
  });

  it('mini-redis → mini-redis, one key, into another database (SELECT), then back', async () => {
    const source = client(mini.port);
    const target = client(miniTarget.port);
    await source.flushall();
    await target.flushall();
    await source.rpush('list', 'x', 'y', 'z');
    expect(await source.call('MIGRATE', '127.0.0.1', String(miniTarget.port), 'list', '3', '5000')).toBe('OK');
    expect(await source.exists('list')).toBe(0);
    await target.select(3);
    expect(await target.lrange('list', 0, -1)).toEqual(['x', 'y', 'z']);
    // And back, from the target, into database 0 of the first.
    expect(await target.call('MIGRATE', '127.0.0.1', String(mini.port), 'list', '0', '5000')).toBe('OK');
    expect(await source.lrange('list', 0, -1)).toEqual(['x', 'y', 'z']);
    expect(await target.exists('list')).toBe(0);
  });

  it('COPY keeps the source key; REPLACE overwrites the target key; BUSYKEY without it, as redis-server', async () => {
    const target = client(miniTarget.port);
    for (const port of [mini.port, redis.port]) {
      const source = client(port);
      await source.flushall();
      await target.flushall();
      await source.set('k', 'new');
      await target.set('k', 'old');
      const command = ['MIGRATE', '127.0.0.1', String(miniTarget.port), 'k', '0', '5000'];
      expect(await raw(port, command)).toBe('-ERR Target instance replied with error: BUSYKEY Target key name already exists.⏎');
      expect(await source.get('k')).toBe('new');
      expect(await raw(port, [...command, 'COPY'])).toBe(
        '-ERR Target instance replied with error: BUSYKEY Target key name already exists.⏎',
      );
      expect(await raw(port, [...command, 'COPY', 'REPLACE'])).toBe('+OK⏎');
      expect(await target.get('k')).toBe('new');
      expect(await source.get('k')).toBe('new');
      await target.set('k', 'old');
      expect(await raw(port, [...command, 'REPLACE'])).toBe('+OK⏎');
      expect(await target.get('k')).toBe('new');
      expect(await source.exists('k')).toBe(0);
    }
  });

  it('KEYS: only the keys that exist move; a BUSYKEY for one leaves it and moves the others', async () => {
    const replies: string[] = [];
    for (const [port, targetPort] of [
      [mini.port, redisTarget.port],
      [redis.port, redisTarget.port],
    ] as const) {
      const source = client(port);
      const target = client(targetPort);
      await source.flushall();
      await target.flushall();
      await source.mset('a', '1', 'b', '2', 'c', '3');
      await target.set('b', 'there');
      replies.push(await raw(port, ['MIGRATE', '127.0.0.1', String(targetPort), '', '0', '5000', 'KEYS', 'a', 'missing', 'b', 'c']));
      expect((await source.keys('*')).sort()).toEqual(['b']);
      expect([await target.get('a'), await target.get('b'), await target.get('c')]).toEqual(['1', 'there', '3']);
    }
    expect(replies[0]).toBe('-ERR Target instance replied with error: BUSYKEY Target key name already exists.⏎');
    expect(replies[0]).toBe(replies[1]);
  });

  it('NOKEY when no key exists, as redis-server', async () => {
    for (const command of [
      ['MIGRATE', '127.0.0.1', '1', 'nosuchkey', '0', '1000'],
      ['MIGRATE', '127.0.0.1', '1', '', '0', '1000', 'KEYS', 'nope', 'neither'],
      ['MIGRATE', '127.0.0.1', '1', '', '0', '1000', 'KEYS'],
      ['MIGRATE', '127.0.0.1', '1', '', '0', '1000', 'COPY', 'REPLACE', 'AUTH', 'x', 'KEYS', 'nope'],
    ]) {
      expect(await raw(mini.port, command)).toBe('+NOKEY⏎');
      expect(await raw(redis.port, command)).toBe('+NOKEY⏎');
    }
  });
});

describe('MIGRATE with AUTH', () => {
  it('AUTH and AUTH2 reach a target that wants a password; a wrong one is the target error, as redis-server', async () => {
    const target = client(miniAuth.port, { password: 'sekret' });
    for (const port of [mini.port, redis.port]) {
      const source = client(port);
      await source.flushall();
      await target.flushall();
      await source.set('k1', 'v1');
      await source.set('k2', 'v2');
      const base = ['MIGRATE', '127.0.0.1', String(miniAuth.port)];
      expect(await raw(port, [...base, 'k1', '0', '5000'])).toBe(
        '-ERR Target instance replied with error: NOAUTH Authentication required.⏎',
      );
      expect(await raw(port, [...base, 'k1', '0', '5000', 'AUTH', 'wrong'])).toBe(
        '-ERR Target instance replied with error: WRONGPASS invalid username-password pair or user is disabled.⏎',
      );
      expect(await source.exists('k1')).toBe(1);
      expect(await raw(port, [...base, 'k1', '0', '5000', 'AUTH', 'sekret'])).toBe('+OK⏎');
      expect(await raw(port, [...base, 'k2', '0', '5000', 'AUTH2', 'default', 'sekret'])).toBe('+OK⏎');
      expect([await target.get('k1'), await target.get('k2')]).toEqual(['v1', 'v2']);
      expect(await source.dbsize()).toBe(0);
    }
  });
});

describe('MIGRATE when the target fails', () => {
  it('a refused connection is -IOERR … writing (after one retry), a host that does not resolve -IOERR … connecting, as redis-server', async () => {
    const closed = await freePort();
    for (const port of [mini.port, redis.port]) {
      const source = client(port);
      await source.set('k', 'v');
      for (const target of [String(closed), 'notaport', '0', '70000']) {
        expect(await raw(port, ['MIGRATE', '127.0.0.1', target, 'k', '0', '1000'])).toBe(
          '-IOERR error or timeout writing to target instance⏎',
        );
      }
      expect(await raw(port, ['MIGRATE', 'nosuchhost.invalid', '6379', 'k', '0', '1000'])).toBe(
        '-IOERR error or timeout connecting to the client⏎',
      );
      expect(await source.get('k')).toBe('v');
    }
  });

  it('a target that never answers: -IOERR … reading after the timeout; the key stays; the client and the server live on', async () => {
    const accepted: Socket[] = [];
    const silent: Server = createServer((socket) => {
      accepted.push(socket);
      socket.on('error', () => {});
    });
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
    const silentPort = (silent.address() as AddressInfo).port;
    try {
      for (const port of [mini.port, redis.port]) {
        const source = client(port);
        await source.set('k', 'v');
        const socket = new RawClient(port);
        const pending = socket.send([['MIGRATE', '127.0.0.1', String(silentPort), 'k', '0', '300'], 'PING']);
        if (port === mini.port) {
          // While that client waits, the others are served.
          expect(await raw(port, 'PING')).toBe('+PONG⏎');
        }
        const replies = (await pending).map(show);
        expect(replies).toEqual(['-IOERR error or timeout reading to target instance⏎', '+PONG⏎']);
        socket.close();
        expect(await source.get('k')).toBe('v');
      }
      // The target got the RESTORE (and a SELECT) before it went silent.
      expect(accepted.length).toBeGreaterThanOrEqual(2);
    } finally {
      for (const socket of accepted) socket.destroy();
      silent.close();
    }
  });

  it('MIGRATE to itself: nothing answers within the timeout (-IOERR … reading), the key stays, as redis-server', async () => {
    for (const port of [mini.port, redis.port]) {
      const source = client(port);
      await source.set('self', 'v');
      expect(await raw(port, ['MIGRATE', '127.0.0.1', String(port), 'self', '0', '200', 'REPLACE'])).toBe(
        '-IOERR error or timeout reading to target instance⏎',
      );
      expect(await source.get('self')).toBe('v');
    }
  });

  it('a target that closes the connection at once: one retry on a fresh connection, then -IOERR … reading, as redis-server', async () => {
    let connections = 0;
    const closing: Server = createServer((socket) => {
      connections++;
      socket.on('error', () => {});
      socket.once('data', () => socket.destroy());
    });
    closing.listen(0, '127.0.0.1');
    await once(closing, 'listening');
    const closingPort = (closing.address() as AddressInfo).port;
    try {
      const counts: number[] = [];
      for (const port of [mini.port, redis.port]) {
        connections = 0;
        const source = client(port);
        await source.set('k', 'v');
        expect(await raw(port, ['MIGRATE', '127.0.0.1', String(closingPort), 'k', '0', '2000'])).toBe(
          '-IOERR error or timeout reading to target instance⏎',
        );
        counts.push(connections);
        expect(await source.get('k')).toBe('v');
      }
      expect(counts).toEqual([2, 2]);
    } finally {
      closing.close();
    }
  });

  it('a target that floods replies without end: the connection is dropped once the MIGRATE is done, the server lives on', async () => {
    const closedByMiniRedis: Promise<unknown>[] = [];
    const flooding: Server = createServer((socket) => {
      socket.on('error', () => {});
      closedByMiniRedis.push(new Promise((resolve) => socket.on('close', resolve)));
      const line = Buffer.from(`${'x'.repeat(1000)}\r\n`.repeat(1000));
      const pump = (): void => {
        while (!socket.destroyed && socket.write(line)) {}
        if (!socket.destroyed) socket.once('drain', pump);
      };
      socket.once('data', pump);
    });
    flooding.listen(0, '127.0.0.1');
    await once(flooding, 'listening');
    const floodPort = (flooding.address() as AddressInfo).port;
    try {
      const source = client(mini.port);
      await source.set('f', 'v');
      // The SELECT's reply is one of those lines (not an error): the RESTORE's is read from the
      // flood, then the connection is closed for the rest.
      const reply = await raw(mini.port, ['MIGRATE', '127.0.0.1', String(floodPort), '', '0', '5000', 'COPY', 'KEYS', 'f']);
      expect(reply).toBe('+OK⏎');
      expect(await raw(mini.port, 'PING')).toBe('+PONG⏎');
      expect(await source.get('f')).toBe('v');
      // mini-redis dropped the connection instead of buffering the flood.
      expect(closedByMiniRedis).toHaveLength(1);
      await closedByMiniRedis[0];
    } finally {
      flooding.close();
    }
  });

  it('the cached connection is reused, and a dead one is replaced without an error', async () => {
    const own = await startMiniRedis();
    let stopTarget = (): void => {};
    try {
      const source = client(mini.port);
      const target = new Redis({ port: own.port, host: '127.0.0.1', protocol: 2 } as never);
      stopTarget = () => target.disconnect();
      await source.mset('one', '1', 'two', '2', 'three', '3');
      /** The ids of the target's clients that MIGRATE connected (their last command a RESTORE). */
      const restorers = async (): Promise<string[]> =>
        [...((await target.client('LIST')) as string).matchAll(/id=(\d+) .*cmd=restore /g)].map((match) => match[1] as string);
      expect(await source.call('MIGRATE', '127.0.0.1', String(own.port), 'one', '0', '5000')).toBe('OK');
      const first = await restorers();
      expect(first).toHaveLength(1);
      expect(await source.call('MIGRATE', '127.0.0.1', String(own.port), 'two', '0', '5000')).toBe('OK');
      expect(await restorers()).toEqual(first);
      await target.client('KILL', 'ID', first[0] as string);
      expect(await source.call('MIGRATE', '127.0.0.1', String(own.port), 'three', '0', '5000')).toBe('OK');
      const second = await restorers();
      expect(second).toHaveLength(1);
      expect(second).not.toEqual(first);
      expect(await target.mget('one', 'two', 'three')).toEqual(['1', '2', '3']);
    } finally {
      stopTarget();
      await own.stop();
    }
  });
});

describe('MIGRATE: the cached connections', () => {
  /** A TCP proxy in front of `port`: the connections made through it, to watch them close. */
  async function watchingProxy(port: number): Promise<{ port: number; accepted: Socket[]; close(): void }> {
    const accepted: Socket[] = [];
    const proxy = createServer((socket) => {
      accepted.push(socket);
      const upstream = connect(port, '127.0.0.1');
      socket.pipe(upstream).pipe(socket);
      socket.on('error', () => {});
      upstream.on('error', () => socket.destroy());
      socket.on('close', () => upstream.destroy());
      upstream.on('close', () => socket.destroy());
    });
    proxy.listen(0, '127.0.0.1');
    await once(proxy, 'listening');
    return {
      port: (proxy.address() as AddressInfo).port,
      accepted,
      close: () => {
        for (const socket of accepted) socket.destroy();
        proxy.close();
      },
    };
  }

  it('are closed when the server stops', async () => {
    const own = await startMiniRedis();
    const proxy = await watchingProxy(redisTarget.port);
    try {
      const source = client(own.port);
      await source.set('stop-migrated', 'v');
      expect(await source.call('MIGRATE', '127.0.0.1', String(proxy.port), 'stop-migrated', '0', '5000')).toBe('OK');
      expect(proxy.accepted).toHaveLength(1);
      const socket = proxy.accepted[0] as Socket;
      const closed = once(socket, 'close');
      expect(socket.destroyed).toBe(false); // cached: still open after the MIGRATE
      source.disconnect();
      await own.stop();
      await closed;
    } finally {
      proxy.close();
      await own.stop();
    }
  });

  it('an idle one is closed 10 s after its last use, as redis-server (migrate_cached_sockets)', { timeout: 60_000 }, async () => {
    /** Seconds from the last MIGRATE's reply until the source closed its connection to the target. */
    const idleClose = async (sourcePort: number, name: string): Promise<number> => {
      const proxy = await watchingProxy(redisTarget.port);
      try {
        const source = client(sourcePort);
        await source.mset(`${name}-a`, 'v', `${name}-b`, 'v');
        for (const key of [`${name}-a`, `${name}-b`]) {
          expect(await source.call('MIGRATE', '127.0.0.1', String(proxy.port), key, '0', '5000', 'REPLACE')).toBe('OK');
        }
        const lastUse = Date.now();
        expect(proxy.accepted).toHaveLength(1); // the second MIGRATE reused the connection
        await once(proxy.accepted[0] as Socket, 'close');
        return (Date.now() - lastUse) / 1000;
      } finally {
        proxy.close();
      }
    };
    const [fromMini, fromRedis] = await Promise.all([idleClose(mini.port, 'idle-mini'), idleClose(redis.port, 'idle-redis')]);
    // Redis sweeps once a second and counts whole seconds: 10–11 s; generous bounds for a busy box.
    for (const seconds of [fromMini, fromRedis]) {
      expect(seconds).toBeGreaterThanOrEqual(8);
      expect(seconds).toBeLessThan(40);
    }
  });
});

describe('MIGRATE: bad input, byte for byte as redis-server', () => {
  const cases: CommandLine[] = [
    ['MIGRATE', '127.0.0.1', '1', 'k', '0'],
    ['MIGRATE', '127.0.0.1', '1', 'k', '0', '1000', 'AUTH'],
    ['MIGRATE', '127.0.0.1', '1', 'k', '0', '1000', 'AUTH2', 'user'],
    ['MIGRATE', '127.0.0.1', '1', 'k', '0', '1000', 'BOGUS'],
    ['MIGRATE', '127.0.0.1', '1', 'k', '0', '1000', 'COPY', 'KEYS', 'a'],
    ['MIGRATE', '127.0.0.1', '1', 'k', '0', '1000', 'BOGUS', 'KEYS', 'a'],
    ['MIGRATE', '127.0.0.1', '1', 'k', '0', 'soon'],
    ['MIGRATE', '127.0.0.1', '1', 'k', 'zero', '1000'],
    ['MIGRATE', '127.0.0.1', '1', 'k', '0', '99999999999999999999'],
    ['MIGRATE', '127.0.0.1', '1', '', 'x', 'y', 'KEYS', 'a'],
    ['RESTORE-ASKING', 'k'],
    ['RESTORE-ASKING', 'k', '0', 'garbage'],
  ];
  it.each(cases.map((command) => [Array.isArray(command) ? command.join(' ') : command, command] as const))(
    '%s',
    async (_name, command) => {
      expect(await raw(mini.port, command)).toBe(await raw(redis.port, command));
      expect(await raw(mini.port, 'PING')).toBe('+PONG⏎');
    },
  );

  it('MULTI/EXEC runs it; a script may not (mini-redis cannot block on the target inside one), and nothing moves', async () => {
    const source = client(mini.port);
    const target = client(redisTarget.port);
    await source.set('m', 'v');
    await target.del('m');
    const socket = new RawClient(mini.port);
    const replies = await socket.send(['MULTI', ['MIGRATE', '127.0.0.1', String(redisTarget.port), 'm', '0', '5000'], 'EXEC']);
    socket.close();
    expect(replies.map(show)).toEqual(['+OK⏎', '+QUEUED⏎', '*1⏎+OK⏎']);
    expect(await target.get('m')).toBe('v');
    await source.set('m', 'v');
    await target.del('m');
    const script = `return redis.pcall('migrate', '127.0.0.1', '${redisTarget.port}', 'm', '0', '5000')`;
    await expect(source.eval(script, 0)).rejects.toThrow(/^ERR This Redis command is not allowed from script/);
    expect(await source.get('m')).toBe('v');
    expect(await target.exists('m')).toBe(0);
  });

  it('a database the target has not is the target error, as redis-server', async () => {
    for (const port of [mini.port, redis.port]) {
      const source = client(port);
      await source.set('k', 'v');
      expect(await raw(port, ['MIGRATE', '127.0.0.1', String(redisTarget.port), 'k', '99', '5000'])).toBe(
        '-ERR Target instance replied with error: ERR DB index is out of range⏎',
      );
      expect(await source.get('k')).toBe('v');
    }
  });
});

describe('MIGRATE propagates as DEL of the moved keys, as redis-server', () => {
  it('the same replication stream', async () => {
    const streams: string[][][] = [];
    for (const port of [mini.port, redis.port]) {
      const source = client(port);
      await source.flushall();
      await source.call('CONFIG', 'SET', 'repl-ping-replica-period', '3600');
      await source.mset('a', '1', 'b', '2', 'c', '3');
      const target = client(redisTarget.port);
      await target.flushall();
      await target.set('c', 'there');
      const stream = await replicationStream(port);
      await raw(port, ['MIGRATE', '127.0.0.1', String(redisTarget.port), '', '0', '5000', 'KEYS', 'a', 'b', 'c']);
      await raw(port, ['MIGRATE', '127.0.0.1', String(redisTarget.port), '', '0', '5000', 'COPY', 'KEYS', 'c']);
      await source.set('sentinel', 'done');
      await until(() => stream.commands.some((args) => args[1] === 'sentinel'), 'the sentinel in the stream');
      stream.close();
      streams.push(stream.commands.filter((args) => args[0]?.toUpperCase() !== 'PING'));
    }
    expect(streams[0]).toEqual([
      ['SELECT', '0'],
      ['DEL', 'a', 'b'],
      ['set', 'sentinel', 'done'],
    ]);
    expect(streams[0]).toEqual(streams[1]);
  });
});

describe('cluster mode: RESTORE-ASKING between two mini-redis', () => {
  let first: Started;
  let second: Started;
  beforeAll(async () => {
    [first, second] = await Promise.all([startMiniRedis({ CLUSTER_ENABLED: 'yes' }), startMiniRedis({ CLUSTER_ENABLED: 'yes' })]);
  });
  afterAll(async () => {
    await Promise.all([first?.stop(), second?.stop()]);
  });

  it('MIGRATE sends RESTORE-ASKING, which the other restores', async () => {
    const source = client(first.port);
    const target = client(second.port);
    await source.hset('user:1', 'name', 'ada');
    const monitor = new RawClient(second.port);
    expect((await monitor.send(['MONITOR'])).map(show)).toEqual(['+OK⏎']);
    expect(await source.call('MIGRATE', '127.0.0.1', String(second.port), 'user:1', '0', '5000')).toBe('OK');
    const lines = (await monitor.read(2)).map(show);
    monitor.close();
    expect(lines[0]).toMatch(/"SELECT" "0"/);
    expect(lines[1]).toMatch(/"RESTORE-ASKING" "user:1" "0"/);
    expect(await target.hgetall('user:1')).toEqual({ name: 'ada' });
    expect(await source.exists('user:1')).toBe(0);
  });
});
