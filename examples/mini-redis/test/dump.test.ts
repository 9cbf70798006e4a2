import { Redis } from 'ioredis';
import { beforeAll, describe, expect, it } from 'vitest';
import { askEach, type CommandLine, RawClient, redisAndMiniForFile, show } from './support.js';

// DUMP and RESTORE against a real redis-server 7.0.15: a payload dumped by one restores in the
// other, and every bad input gets Redis's exact error bytes over a raw socket.

const servers = redisAndMiniForFile();

const connect = (port: number): Redis => new Redis({ port, host: '127.0.0.1', protocol: 2 } as never);

/** Build one key of each type, small and big, on a server. */
async function build(client: Redis): Promise<void> {
  await client.flushall();
  await client.set('s:small', 'hello');
  await client.set('s:int', '123456');
  await client.set('s:big', 'abcdefgh'.repeat(2000));
  await client.set(Buffer.from([0, 1, 255]), Buffer.from([254, 0, 10]));
  await client.rpush('l:small', 'a', '1', 'b');
  await client.rpush('l:big', ...Array.from({ length: 1500 }, (_, i) => `item${i}`));
  await client.sadd('set:int', '1', '2', '3');
  await client.sadd('set:str', 'x', 'y');
  await client.sadd('set:big', ...Array.from({ length: 700 }, (_, i) => `m${i}`));
  await client.hset('h:small', 'a', '1', 'b', 'two');
  await client.hset('h:big', ...Array.from({ length: 600 }, (_, i) => [`f${i}`, `v${i}`]).flat());
  await client.zadd('z:small', '1', 'a', '2.5', 'b', '-inf', 'c');
  await client.zadd('z:big', ...Array.from({ length: 200 }, (_, i) => [String(i * 1.5), `m${i}`]).flat());
  for (let i = 1; i <= 120; i++) await client.xadd('x:stream', `${i}-1`, 'n', String(i), ...(i % 7 === 0 ? ['extra', 'yes'] : []));
  await client.xgroup('CREATE', 'x:stream', 'g', '0');
  await client.xreadgroup('GROUP', 'g', 'c1', 'COUNT', '4', 'STREAMS', 'x:stream', '>');
}

const KEYS: Array<string | Buffer> = [
  's:small',
  's:int',
  's:big',
  Buffer.from([0, 1, 255]),
  'l:small',
  'l:big',
  'set:int',
  'set:str',
  'set:big',
  'h:small',
  'h:big',
  'z:small',
  'z:big',
];

/** A key's value as comparable text, whatever its type. */
async function read(client: Redis, key: string | Buffer): Promise<unknown> {
  const type = await client.type(key);
  if (type === 'string') return [type, (await client.getBuffer(key))?.toString('hex')];
  if (type === 'list') return [type, await client.lrange(key, 0, -1)];
  if (type === 'set') return [type, (await client.smembers(key)).sort()];
  if (type === 'hash') return [type, await client.hgetall(key)];
  if (type === 'zset') return [type, await client.call('ZRANGE', key, '0', '-1', 'WITHSCORES')];
  if (type === 'stream') {
    const groups = (await client.call('XINFO', 'GROUPS', key)) as unknown[];
    return [type, await client.xrange(key, '-', '+'), groups, await client.call('XPENDING', key, 'g')];
  }
  return [type];
}

describe('DUMP and RESTORE between redis-server 7.0.15 and mini-redis', () => {
  for (const [from, to] of [
    ['redis-server', 'mini-redis'],
    ['mini-redis', 'redis-server'],
  ] as const) {
    it(`DUMP on ${from} restores on ${to}: every type, small and big`, async () => {
      const source = connect(from === 'redis-server' ? servers.redis.port : servers.mini.port);
      const target = connect(to === 'redis-server' ? servers.redis.port : servers.mini.port);
      try {
        await build(source);
        await target.flushall();
        for (const key of KEYS) {
          const payload = await source.dumpBuffer(key);
          expect(payload).not.toBeNull();
          expect(await target.restore(key, 0, payload as Buffer)).toBe('OK');
          expect(await read(target, key)).toEqual(await read(source, key));
        }
      } finally {
        source.disconnect();
        target.disconnect();
      }
    });
  }

  it('DUMP of a short string and of an integer: the same bytes as Redis', async () => {
    const a = connect(servers.redis.port);
    const b = connect(servers.mini.port);
    try {
      for (const client of [a, b]) {
        await client.set('short', 'hello world');
        await client.set('number', '-4242');
      }
      expect(await b.dumpBuffer('short')).toEqual(await a.dumpBuffer('short'));
      expect(await b.dumpBuffer('number')).toEqual(await a.dumpBuffer('number'));
      expect(await b.dumpBuffer('no-such-key')).toBeNull();
    } finally {
      a.disconnect();
      b.disconnect();
    }
  });
});

describe('RESTORE: options and errors as Redis, byte for byte', () => {
  /** Run the same commands on both servers over raw sockets; both must answer the same bytes. */
  async function same(setup: readonly CommandLine[], commands: readonly CommandLine[]): Promise<string[]> {
    const answers = (await askEach([servers.redis.port, servers.mini.port], ['FLUSHALL', ...setup, ...commands])).map((replies) =>
      replies.slice(1 + setup.length),
    );
    expect(answers[1]).toEqual(answers[0]);
    return answers[0] as string[];
  }

  let payload: Buffer;
  beforeAll(async () => {
    const client = connect(servers.redis.port);
    await client.set('source', 'a value');
    payload = (await client.dumpBuffer('source')) as Buffer;
    client.disconnect();
  });

  it('BUSYKEY, REPLACE, TTL and ABSTTL', async () => {
    const now = Date.now();
    const replies = await same(
      [['SET', 'k', 'old']],
      [
        ['RESTORE', 'k', '0', payload],
        ['RESTORE', 'k', '0', payload, 'REPLACE'],
        ['GET', 'k'],
        ['RESTORE', 't', '100000', payload],
        ['EXISTS', 't'],
        ['RESTORE', 'abs', String(now + 100_000), payload, 'ABSTTL'],
        ['EXISTS', 'abs'],
        // ABSTTL in the past: nothing is created, and a REPLACEd key goes.
        ['RESTORE', 'k', '1', payload, 'ABSTTL', 'REPLACE'],
        ['EXISTS', 'k'],
        ['RESTORE', 'i', '0', payload, 'IDLETIME', '1000'],
        ['RESTORE', 'f', '0', payload, 'FREQ', '100'],
      ],
    );
    expect(replies[0]).toBe('-BUSYKEY Target key name already exists.⏎');
    expect(replies[2]).toBe('$7⏎a value⏎');
    expect(replies[8]).toBe(':0⏎');
  });

  it('IDLETIME sets the LRU clock; FREQ the LFU counter under an LFU policy (OBJECT IDLETIME / FREQ)', async () => {
    for (const port of [servers.redis.port, servers.mini.port]) {
      const client = new RawClient(port);
      try {
        const replies = (
          await client.send([
            ['FLUSHALL'],
            ['RESTORE', 'idle', '0', payload, 'IDLETIME', '1000'],
            ['OBJECT', 'IDLETIME', 'idle'],
            ['CONFIG', 'SET', 'maxmemory-policy', 'allkeys-lfu'],
            ['RESTORE', 'hot', '0', payload, 'FREQ', '100'],
            ['OBJECT', 'FREQ', 'hot'],
            ['CONFIG', 'SET', 'maxmemory-policy', 'noeviction'],
          ])
        ).map(show);
        // 1001 if the server's one-second LRU clock ticked between the two commands.
        expect(replies[2]).toMatch(/^:100[01]⏎$/);
        expect(replies.slice(3)).toEqual(['+OK⏎', '+OK⏎', ':100⏎', '+OK⏎']);
      } finally {
        client.close();
      }
    }
  });

  it('bad TTLs, payloads and options', async () => {
    const corrupt = Buffer.from(payload);
    corrupt[2] = (corrupt[2] as number) ^ 0xff;
    const future = Buffer.from(payload);
    future[future.length - 10] = 11; // RDB version 11
    const replies = await same(
      [],
      [
        ['RESTORE', 'k', '-1', payload],
        ['RESTORE', 'k', 'soon', payload],
        ['RESTORE', 'k', '0', 'short'],
        ['RESTORE', 'k', '0', corrupt],
        ['RESTORE', 'k', '0', future],
        ['RESTORE', 'k', '0', payload, 'NOPE'],
        ['RESTORE', 'k', '0', payload, 'IDLETIME', '-1'],
        ['RESTORE', 'k', '0', payload, 'FREQ', '256'],
        ['RESTORE', 'k', '0', payload, 'IDLETIME', '1', 'FREQ', '1'],
        ['RESTORE', 'k', '0', payload, 'IDLETIME'],
        ['RESTORE', 'k', '0'],
        ['CONFIG', 'SET', 'sanitize-dump-payload', 'always'],
        ['CONFIG', 'SET', 'sanitize-dump-payload', 'yes'],
        ['CONFIG', 'GET', 'sanitize-dump-payload'],
        ['CONFIG', 'SET', 'sanitize-dump-payload', 'no'],
        ['DUMP'],
        ['PING'],
      ],
    );
    expect(replies.slice(0, 6)).toEqual([
      '-ERR Invalid TTL value, must be >= 0⏎',
      '-ERR value is not an integer or out of range⏎',
      '-ERR DUMP payload version or checksum are wrong⏎',
      '-ERR DUMP payload version or checksum are wrong⏎',
      '-ERR DUMP payload version or checksum are wrong⏎',
      '-ERR syntax error⏎',
    ]);
  });

  it('a payload with a good checksum but a bad body: ERR Bad data format', async () => {
    const { crc64 } = await import('../src/crc64.js');
    /** A payload around any body: version 10 and its CRC-64. */
    const wrap = (body: number[]): Buffer => {
      const head = Buffer.from([...body, 10, 0]);
      return Buffer.concat([head, crc64(head)]);
    };
    const replies = await same(
      [],
      [
        ['RESTORE', 'k', '0', wrap([0, 0x45])], // a string whose length runs past the end
        ['RESTORE', 'k', '0', wrap([42, 1, 65])], // no such type
        ['RESTORE', 'k', '0', wrap([2, 0])], // an empty set
        ['RESTORE', 'k', '0', wrap([0, 3, 65, 66, 67])], // fine: "ABC"
        ['GET', 'k'],
      ],
    );
    expect(replies).toEqual(['-ERR Bad data format⏎', '-ERR Bad data format⏎', '-ERR Bad data format⏎', '+OK⏎', '$3⏎ABC⏎']);
  });

  it('2000 damaged payloads (bytes changed or cut, checksum made right): each one OK or Bad data format, the server lives on', async () => {
    const { crc64 } = await import('../src/crc64.js');
    const source = connect(servers.mini.port);
    const payloads: Buffer[] = [];
    try {
      await build(source);
      for (const key of KEYS)
        if (key !== 's:big' && key !== 'l:big' && key !== 'h:big') payloads.push((await source.dumpBuffer(key)) as Buffer);
    } finally {
      source.disconnect();
    }
    let seed = 12345;
    const random = (below: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % below;
    };
    const client = new RawClient(servers.mini.port);
    try {
      for (let round = 0; round < 20; round++) {
        const commands: CommandLine[] = [];
        for (let i = 0; i < 100; i++) {
          const original = payloads[random(payloads.length)] as Buffer;
          let body = Buffer.from(original.subarray(0, original.length - 10));
          if (random(4) === 0) body = body.subarray(0, random(body.length));
          else for (let k = 0, n = 1 + random(3); k < n; k++) body[random(body.length)] = random(256);
          const head = Buffer.concat([body, Buffer.from([10, 0])]);
          commands.push(['RESTORE', 'fuzz', '0', Buffer.concat([head, crc64(head)]), 'REPLACE']);
        }
        for (const reply of (await client.send(commands)).map(show)) expect(['+OK⏎', '-ERR Bad data format⏎']).toContain(reply);
      }
      expect((await client.send(['PING'])).map(show)).toEqual(['+PONG⏎']);
    } finally {
      client.close();
    }
  });

  it('RESTORE is a write: it aborts a WATCHing transaction and notifies `restore`', async () => {
    const watcher = new RawClient(servers.mini.port);
    const writer = new RawClient(servers.mini.port);
    const subscriber = new RawClient(servers.mini.port);
    try {
      await writer.send([['CONFIG', 'SET', 'notify-keyspace-events', 'KEg']]);
      await subscriber.send([['SUBSCRIBE', '__keyspace@0__:w']]);
      await watcher.send([['WATCH', 'w'], ['MULTI'], ['PING']]);
      expect((await writer.send([['RESTORE', 'w', '0', payload]])).map(show)).toEqual(['+OK⏎']);
      expect((await watcher.send([['EXEC']])).map(show)).toEqual(['*-1⏎']);
      expect(show((await subscriber.read(1))[0] as Buffer)).toBe('*3⏎$7⏎message⏎$16⏎__keyspace@0__:w⏎$7⏎restore⏎');
    } finally {
      await writer.send([['CONFIG', 'SET', 'notify-keyspace-events', '']]);
      for (const client of [watcher, writer, subscriber]) client.close();
    }
  });
});
