import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type CommandLine,
  encode,
  parseReply,
  RawClient,
  REDIS_SERVER,
  type Started,
  show,
  startMiniRedis,
  startRedisServer,
} from './support.js';

// The same command scripts, pipelined over raw TCP, to a real redis-server and to mini-redis:
// the reply bytes must be identical. Replies that legitimately differ (HELLO, CLIENT ID, INFO's
// numbers, TIME, SCAN cursors, the order of unordered collections) are compared apart, sorted.

let real: Started | undefined;
let mini: Started | undefined;

const servers = (): [Started, Started] => [real as Started, mini as Started];
const label = (command: CommandLine): string =>
  typeof command === 'string' ? command : command.map((word) => (typeof word === 'string' ? word : `<${word.length} bytes>`)).join(' ');

/** Run a script on a fresh connection to empty databases (after HELLO 3 when asked). */
async function run(port: number, script: readonly CommandLine[], resp3: boolean): Promise<Buffer[]> {
  const client = new RawClient(port);
  try {
    await client.send(resp3 ? ['FLUSHALL', 'HELLO 3'] : ['FLUSHALL']);
    return await client.send(script);
  } finally {
    client.close();
  }
}

/** The script's replies from both servers must be the same bytes. */
async function compare(script: readonly CommandLine[], { resp3 = false } = {}): Promise<void> {
  const [expected, actual] = await Promise.all(servers().map((server) => run(server.port, script, resp3)));
  const lines = (replies: Buffer[]): string[] => script.map((command, i) => `${label(command)} → ${show(replies[i] as Buffer)}`);
  expect(lines(actual as Buffer[])).toEqual(lines(expected as Buffer[]));
  expect(Buffer.concat(actual as Buffer[]).equals(Buffer.concat(expected as Buffer[]))).toBe(true);
}

/**
 * Several connections in turn: each step sends commands on one connection and reads `replies`
 * replies there (default: one per command; fewer when a command blocks). Replies must match.
 */
async function compareSessions(
  connections: number,
  steps: ReadonlyArray<{ on: number; send?: CommandLine[]; replies?: number; blocked?: number; wait?: number }>,
) {
  const transcripts = await Promise.all(
    servers().map(async (server) => {
      const clients = Array.from({ length: connections }, () => new RawClient(server.port));
      const transcript: string[] = [];
      try {
        await (clients[0] as RawClient).send(['FLUSHALL']);
        for (const step of steps) {
          const client = clients[step.on] as RawClient;
          if (step.send) client.socket.write(encode(step.send));
          const replies = await client.read(step.replies ?? step.send?.length ?? 0);
          transcript.push(...replies.map((reply) => `#${step.on} ${show(reply)}`));
          if (step.blocked !== undefined) await waitBlocked(server.port, step.blocked);
          if (step.wait !== undefined) await new Promise((resolve) => setTimeout(resolve, step.wait));
        }
      } finally {
        for (const client of clients) client.close();
      }
      return transcript;
    }),
  );
  expect(transcripts[1]).toEqual(transcripts[0]);
}

/** Wait until the server reports `count` clients blocked (so blocking order is deterministic). */
async function waitBlocked(port: number, count: number): Promise<void> {
  const client = new RawClient(port);
  try {
    for (;;) {
      const [info] = await client.send(['INFO clients']);
      if (new RegExp(`blocked_clients:${count}\\r`).test(String(info))) return;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  } finally {
    client.close();
  }
}

const binary = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
const binaryKey = Buffer.from([0x00, 0xff, 0x0d, 0x0a, 0x80, 0x20]);

describe('mini-redis replies byte for byte as redis-server 7.0', () => {
  beforeAll(async () => {
    // Never skipped: without the real server this comparison is what matters most, so say what is missing.
    if (!existsSync(REDIS_SERVER)) throw new Error(`${REDIS_SERVER} not found: apt-get install redis-server (bash .ci/run does)`);
    [real, mini] = await Promise.all([startRedisServer(), startMiniRedis()]);
  });

  afterAll(async () => {
    await Promise.all([real?.stop(), mini?.stop()]);
  });

  it('strings: SET options, GET, GETDEL, GETSET, SETNX, MSET/MGET, APPEND, STRLEN', async () => {
    await compare([
      'SET k v',
      'GET k',
      'GET missing',
      'SET k v2 GET',
      'get k',
      'gEt k',
      'SET fresh v GET',
      'SET k v3 NX',
      'SET k v4 XX',
      'SET nope v XX',
      'SET nx v NX',
      'SET k v5 NX GET',
      'SET k v6 XX GET',
      'SET k v EX 100',
      'TTL k',
      'SET k v KEEPTTL',
      'TTL k',
      'SET k v',
      'TTL k',
      'SET k v PX 100000 KEEPTTL',
      'SET k v EX 10 PX 10',
      'SET k v NX XX',
      'SET k v EX',
      'SET k v EX 0',
      'SET k v EX -5',
      'SET k v PX 0',
      'SET k v EX abc',
      'SET k v EX 9223372036854775807',
      'SET k v PX 9223372036854775807',
      'SET k v EX 10 EX 20',
      'TTL k',
      'SET k v EXAT 1',
      'GET k',
      'SET k v PXAT 99999999999999',
      'EXPIRE k 100 GT',
      'EXPIRE k 100 LT',
      'TTL k',
      'SET k v foo',
      'SET k v KEEPTTL KEEPTTL',
      'SET k v nx nx',
      'SET k',
      'GETDEL k',
      'GETDEL k',
      'GETSET k a',
      'GETSET k b',
      'SETNX k c',
      'SETNX other c',
      'MSET a 1 b 2 c 3',
      'MSET a 1 b',
      'MGET a b missing c',
      'APPEND a 23',
      'APPEND newkey hello',
      'STRLEN a',
      'STRLEN newkey',
      'STRLEN missing',
      'SETEX s 100 v',
      'TTL s',
      'SETEX s 0 v',
      'SETEX s abc v',
      'PSETEX s -5 v',
      'PSETEX s 100000 v',
      'GET s',
      'DEL a b c newkey k other s fresh nx',
    ]);
  });

  it('counters: INCR, DECR, INCRBY, DECRBY, INCRBYFLOAT, with overflows and non-numbers', async () => {
    await compare([
      'INCR n',
      'INCRBY n 41',
      'DECR n',
      'DECRBY n 10',
      'INCRBY n -0',
      'INCRBY n 007',
      'INCRBY n +1',
      'INCRBY n 1.5',
      'INCRBY n 99999999999999999999',
      'SET n 9223372036854775807',
      'INCR n',
      'INCRBY n -1',
      'SET m -9223372036854775808',
      'DECR m',
      'DECRBY m -9223372036854775808',
      'DECRBY m 9223372036854775808',
      'INCRBY m 9223372036854775807',
      'SET s abc',
      'INCR s',
      'SET e ',
      'INCR e',
      ['SET', 'sp', '1 '],
      'INCR sp',
      'SET f 10.5',
      'INCRBYFLOAT f 0.1',
      'INCRBYFLOAT f -5016.2',
      'INCRBYFLOAT f 5.0e3',
      'GET f',
      'INCRBYFLOAT g 3',
      'INCRBYFLOAT g 1.1',
      'INCRBYFLOAT g .5',
      'INCRBYFLOAT g 1.',
      'INCRBYFLOAT g +1',
      'INCRBYFLOAT g 0x10',
      'INCRBYFLOAT g 1e3',
      'INCRBYFLOAT g -0',
      'INCRBYFLOAT h 0.000003814697265625',
      'INCRBYFLOAT h 123456789012345678901234567890',
      'GET h',
      'incrbyfloat h 1',
      'IncrByFloat h -1',
      'INCRBYFLOAT z 0.1',
      'INCRBYFLOAT z 0.2',
      'INCRBYFLOAT z -0.3',
      'INCRBYFLOAT g abc',
      'INCRBYFLOAT g inf',
      'INCRBYFLOAT g nan',
      'INCRBYFLOAT g 1e5000',
      'INCRBYFLOAT s 1',
      'SET inf inf',
      'INCRBYFLOAT inf 1',
      'SET big 1.7976931348623157e308',
      'INCRBYFLOAT big 1e308',
      'INCRBYFLOAT g',
      'INCR',
    ]);
  });

  it('keys: DEL, EXISTS, TYPE, EXPIRE family, TTL, PERSIST, RENAME, DBSIZE, FLUSHDB, SELECT', async () => {
    await compare([
      'MSET a 1 b 2 c 3',
      'RPUSH l x',
      'HSET h f v',
      'SADD s m',
      'TYPE a',
      'TYPE l',
      'TYPE h',
      'TYPE s',
      'TYPE missing',
      'EXISTS a a missing b',
      'DEL a missing a',
      'UNLINK b',
      'EXISTS a b',
      'DBSIZE',
      'EXPIRE c 100',
      'TTL c',
      'PTTL missing',
      'PTTL l',
      'TTL missing',
      'TTL l',
      'EXPIRE c 100 NX',
      'EXPIRE c 200 XX',
      'TTL c',
      'EXPIRE c 100 GT',
      'EXPIRE c 300 GT',
      'TTL c',
      'EXPIRE c 50 LT',
      'TTL c',
      'EXPIRE l 50 XX',
      'EXPIRE l 50 GT',
      'EXPIRE l 50 LT',
      'TTL l',
      'EXPIRE c 10 NX XX',
      'EXPIRE c 10 GT LT',
      'EXPIRE c 10 FOO',
      'EXPIRE c abc',
      'EXPIRE c 9223372036854775807',
      'EXPIRE c -9223372036854775808',
      'expire c 100 nx',
      'expire c 100 Xx',
      'PEXPIRE c 9223372036854775807',
      'EXPIRE missing 10',
      'EXPIRE missing abc',
      'PERSIST c',
      'PERSIST c',
      'PERSIST missing',
      'TTL c',
      'PEXPIRE c 100000',
      'TTL c',
      'EXPIREAT c 99999999999',
      'EXPIRE c 100 GT',
      'PEXPIREAT c 99999999999999 LT',
      'EXPIRE c 100 LT',
      'TTL c',
      'PEXPIREAT c 1',
      'EXISTS c',
      'EXPIRE l -1',
      'EXISTS l',
      'RENAME missing x',
      'RENAME h h',
      'RENAME h h2',
      'TYPE h',
      'HGET h2 f',
      'SET t v EX 100',
      'RENAME t t2',
      'TTL t2',
      'SET target old',
      'RENAME s target',
      'TYPE target',
      'RENAMENX target h2',
      'RENAMENX target fresh',
      'RENAMENX fresh fresh',
      'SET d x EX 100',
      'SET src y',
      'RENAME src d',
      'TTL d',
      'PEXPIRE d -9223372036854775808',
      'EXISTS d',
      'DBSIZE',
      'SELECT 3',
      'SET k in-db-3',
      'DBSIZE',
      'SELECT 0',
      'GET k',
      'DBSIZE',
      'FLUSHDB foo',
      'FLUSHDB ASYNC',
      'DBSIZE',
      'SELECT 3',
      'GET k',
      'FLUSHDB SYNC',
      'DBSIZE',
      'SELECT 16',
      'SET k v',
      'INFO keyspace',
      'SELECT 5',
      'SET a b',
      'INFO keyspace',
      'FLUSHALL',
      'DBSIZE',
      'SELECT 0',
      'DBSIZE',
    ]);
  });

  it('KEYS and SCAN on one key (order-free cases), and their errors', async () => {
    await compare([
      'SET user:1 a',
      'KEYS *',
      'KEYS user:?',
      'KEYS [u]ser:1',
      'KEYS user\\:1',
      'KEYS [^a]*',
      'KEYS *[0-9]',
      'scan 0 match user* count 5 type string',
      'KEYS nomatch*',
      'SCAN 0',
      'SCAN 0 MATCH user:* COUNT 100',
      'SCAN 0 MATCH x*',
      'SCAN 0 TYPE string',
      'SCAN 0 TYPE list',
      'SCAN 0 TYPE STRING',
      'SCAN 0 TYPE foo',
      'SCAN abc',
      'SCAN 0x1',
      'SCAN 0 COUNT 0',
      'SCAN 0 COUNT abc',
      'SCAN 0 MATCH',
      'SCAN 0 FOO bar',
      'KEYS',
    ]);
  });

  it('lists: LPUSH, RPUSH, LPOP/RPOP with counts, LLEN, LRANGE with negative ranges, LINDEX', async () => {
    await compare([
      'RPUSH l a b c',
      'LPUSH l z y x',
      'LRANGE l 0 -1',
      'LRANGE l -2 -1',
      'LRANGE l -100 100',
      'LRANGE l 2 1',
      'LRANGE l 5 10',
      'LRANGE l 6 10',
      'LRANGE l -1 -2',
      'LRANGE l 0 0',
      'LRANGE l 0 9223372036854775807',
      'LRANGE l -9223372036854775808 -1',
      'LRANGE l 9223372036854775807 -1',
      'LINDEX l 9223372036854775807',
      'LINDEX l -9223372036854775808',
      'lrange l 1 2',
      'LRANGE l a 1',
      'LRANGE missing 0 -1',
      'LRANGE missing a 1',
      'LINDEX l 0',
      'LINDEX l -1',
      'LINDEX l 6',
      'LINDEX l -7',
      'LINDEX l abc',
      'LINDEX missing abc',
      'LLEN l',
      'LLEN missing',
      'LPOP l',
      'RPOP l',
      'LPOP l 2',
      'RPOP l 1',
      'LPOP l 0',
      'LLEN l',
      'RPOP l 10',
      'EXISTS l',
      'LPOP l',
      'LPOP l 2',
      'LPOP l abc',
      'LPOP l -1',
      'LPOP l 1 2',
      'RPUSH l ',
      'LRANGE l 0 -1',
      'BLPOP l 0',
      'RPUSH q1 a',
      'RPUSH q2 b c',
      'BLPOP missing q2 q1 0',
      'BRPOP missing q2 q1 0',
      'BRPOP q2 q1 1',
      'BLPOP q1 0.01',
      'BLPOP q1 -1',
      'BLPOP q1 abc',
      'BLPOP q1 inf',
      'BLPOP q1 nan',
      'BLPOP q1',
      'MULTI',
      'BLPOP nothing 0',
      'BRPOP nothing 1',
      'RPUSH nothing x',
      'BLPOP nothing 0',
      'EXEC',
    ]);
  });

  it('hashes: HSET, HGET, HDEL, HGETALL (small hashes keep insertion order), HINCRBY, HEXISTS, HLEN, HKEYS, HVALS, HMGET', async () => {
    await compare([
      'HSET h a 1 b 2 c 3',
      'HSET h a 10 d 4',
      'HSET h a 11 a 12',
      'HGET h a',
      'HDEL h zz zz',
      'HGET h a',
      'HGET h missing',
      'HGET nohash a',
      'HGETALL h',
      'HKEYS h',
      'HVALS h',
      'HLEN h',
      'HEXISTS h a',
      'HEXISTS h zz',
      'HMGET h a missing d',
      'HMGET nohash a b',
      'HDEL h a missing',
      'HDEL h a',
      'HGETALL h',
      'HINCRBY h n 5',
      'HINCRBY h n -7',
      'HINCRBY h b 1',
      'HINCRBY h n abc',
      'HSET h s xyz',
      'HINCRBY h s 1',
      'HSET h max 9223372036854775807',
      'HINCRBY h max 1',
      'HINCRBY fresh f 3',
      'HSETNX h b 1',
      'HSETNX h new 1',
      'HMSET h x 1 y 2',
      'HMSET h x',
      'HSET h a',
      'HSET h a b c',
      'HDEL h b c d n s max new x y',
      'EXISTS h',
      'HGETALL h',
      'HKEYS h',
      'HVALS h',
      'HLEN h',
      'HDEL missing a',
    ]);
  });

  it('sets: SADD, SREM, SISMEMBER, SCARD, SMEMBERS and SRANDMEMBER of one member', async () => {
    await compare([
      'SADD s a b c a',
      'SADD s a',
      'SCARD s',
      'SISMEMBER s a',
      'SISMEMBER s z',
      'SISMEMBER missing a',
      'SREM s a z',
      'SREM s b c',
      'SADD s a',
      'SREM s a a',
      'EXISTS s',
      'SADD one only',
      'SMEMBERS one',
      'SMEMBERS missing',
      'SRANDMEMBER one',
      'SRANDMEMBER one 1',
      'SRANDMEMBER one 5',
      'SRANDMEMBER one -3',
      'SRANDMEMBER one 0',
      'SRANDMEMBER missing',
      'SRANDMEMBER missing 3',
      'SRANDMEMBER missing -3',
      'SRANDMEMBER one abc',
      'SRANDMEMBER one 1 2',
      'SRANDMEMBER one -9223372036854775808',
      'SCARD missing',
      'SREM missing a',
    ]);
  });

  it('errors: wrong type, wrong arity, unknown commands, non-integers', async () => {
    const wrongType = [
      'GET l',
      'SET s x GET',
      'APPEND l x',
      'STRLEN l',
      'INCR l',
      'INCRBY h 1',
      'INCRBYFLOAT s 1',
      'GETDEL l',
      'GETSET l v',
      'LPUSH str a',
      'RPUSH h a',
      'LPOP str',
      'RPOP str 2',
      'LPOP str 0',
      'LLEN str',
      'LRANGE str 0 -1',
      'LINDEX str 0',
      'BLPOP str 0',
      'HSET str a b',
      'HGET str a',
      'HGETALL str',
      'HDEL str a',
      'HINCRBY str a 1',
      'HEXISTS str a',
      'HLEN str',
      'HKEYS l',
      'HVALS l',
      'HMGET str a',
      'SADD str a',
      'SREM str a',
      'SMEMBERS str',
      'SISMEMBER str a',
      'SCARD str',
      'SRANDMEMBER str',
      'SRANDMEMBER str 0',
      'MGET l str h s',
    ];
    await compare([
      'SET str v',
      'RPUSH l a',
      'HSET h f v',
      'SADD s m',
      ...wrongType,
      'GET',
      'GET a b',
      'SET a',
      'MGET',
      'DEL',
      'EXPIRE a',
      'TTL',
      'LPUSH l',
      'LRANGE l 0',
      'HGET h',
      'SADD s',
      'DBSIZE x',
      'TYPE',
      'RENAME a',
      'FLUSHALL x',
      'FLUSHALL x y',
      'NOSUCHCOMMAND',
      'NOSUCHCOMMAND a b',
      'nosuch "quoted" arg',
      'INCRBY a x',
      'EXPIRE str x',
      'LINDEX l 1.5',
      'LRANGE l 0 x',
      'SELECT x',
    ]);
  });

  it('edge cases: empty strings, binary keys and values, large values', async () => {
    const large = Buffer.alloc(1024 * 1024, 'x');
    await compare([
      ['SET', '', ''],
      ['GET', ''],
      ['EXISTS', ''],
      ['STRLEN', ''],
      ['APPEND', '', ''],
      ['SET', binaryKey, binary],
      ['GET', binaryKey],
      ['STRLEN', binaryKey],
      ['APPEND', binaryKey, binary],
      ['STRLEN', binaryKey],
      ['RPUSH', 'bl', binary, '', binaryKey],
      ['LRANGE', 'bl', '0', '-1'],
      // (values under 64 bytes: Redis keeps small hashes in insertion order, as mini-redis does)
      ['HSET', 'bh', binaryKey, Buffer.concat([binary.subarray(0, 30), binary.subarray(226)]), '', ''],
      ['HGETALL', 'bh'],
      ['HGET', 'bh', ''],
      ['SADD', 'bs', binaryKey],
      ['SMEMBERS', 'bs'],
      ['SISMEMBER', 'bs', binaryKey],
      ['KEYS', Buffer.concat([binaryKey.subarray(0, 2), Buffer.from('*')])],
      ['RENAME', binaryKey, Buffer.from('é')],
      ['GET', Buffer.from('é')],
      ['SET', 'big', large],
      ['STRLEN', 'big'],
      ['GET', 'big'],
      ['APPEND', 'big', large],
      ['GETDEL', 'big'],
      ['MSET', 'x', '', 'y', binary],
      ['MGET', 'x', 'y', 'z'],
      ['DEL', '', 'bl', 'bh', 'bs', 'x', 'y', 'é'],
      ['DBSIZE'],
    ]);
  });

  it('MULTI/EXEC: queued replies, errors at run time and at queue time, DISCARD', async () => {
    await compare([
      'MULTI',
      'SET a 1',
      'INCR a',
      'LPUSH a x',
      'INCRBY a 10',
      'GET a',
      'EXEC',
      'MULTI',
      'SET a 2',
      'NOSUCHCOMMAND',
      'GET a',
      'EXEC',
      'GET a',
      'MULTI',
      'GET a b',
      'EXEC',
      'MULTI',
      'SET a 3',
      'DISCARD',
      'GET a',
      'EXEC',
      'DISCARD',
      'MULTI',
      'MULTI',
      'EXEC',
      'MULTI',
      'EXEC',
    ]);
  });

  it('WATCH aborts EXEC when another client writes the key (writes of every type, and FLUSHALL)', async () => {
    const watched = (write: CommandLine, setup: CommandLine[] = ['DEL k', 'SET k 1']) => [
      { on: 1, send: setup },
      { on: 0, send: ['WATCH k', 'GET k'] },
      { on: 1, send: [write] },
      { on: 0, send: ['MULTI', 'SET k from-0', 'EXEC', 'GET k'] },
    ];
    const list = ['DEL k', 'RPUSH k a b'];
    const hash = ['DEL k', 'HSET k f v'];
    const set = ['DEL k', 'SADD k m'];
    await compareSessions(2, [
      ...watched('SET k 2'),
      ...watched('INCR k'),
      ...watched('APPEND k x'),
      ...watched('EXPIRE k 100'),
      ...watched('PERSIST k', ['SET k 1 EX 100']),
      ...watched('DEL k'),
      ...watched('GETDEL k'),
      ...watched('RPUSH k a', list),
      ...watched('LPOP k', list),
      ...watched('HSET k f2 v', hash),
      ...watched('HDEL k f', hash),
      ...watched('HINCRBY k n 1', hash),
      ...watched('SADD k m2', set),
      ...watched('SREM k m', set),
      ...watched('RENAME k k2'),
      ...watched('RENAME k2 k', ['DEL k', 'SET k2 1']),
      ...watched('FLUSHDB'),
      ...watched('FLUSHALL'),
      // Not touched: reads, failed writes, writes to other keys.
      ...watched('GET k'),
      ...watched('SET other 1'),
      ...watched('LPUSH k a'),
      ...watched('DEL nothing'),
    ]);
  });

  it('WATCH and expiry: a key that expires after WATCH aborts EXEC; one expired before does not', async () => {
    await compareSessions(1, [
      { on: 0, send: ['SET k v PX 30', 'WATCH k'], wait: 60 },
      { on: 0, send: ['MULTI', 'SET x 1', 'EXEC'] },
      { on: 0, send: ['SET k v PX 30', 'WATCH k'], wait: 60 },
      { on: 0, send: ['GET k', 'MULTI', 'SET x 2', 'EXEC'] },
      { on: 0, send: ['SET k v PX 10'], wait: 40 },
      { on: 0, send: ['WATCH k', 'MULTI', 'SET x 3', 'EXEC', 'GET x'] },
      { on: 0, send: ['SET k v PX 10'], wait: 40 },
      { on: 0, send: ['WATCH k', 'SET k fresh', 'MULTI', 'SET x 4', 'EXEC', 'GET x'] },
    ]);
  });

  it('blocking pops: wake-up order, EXEC serves waiters afterwards, timeouts', async () => {
    await compareSessions(3, [
      { on: 0, send: ['BLPOP q 0'], replies: 0, blocked: 1 },
      { on: 1, send: ['BRPOP other q 0'], replies: 0, blocked: 2 },
      { on: 2, send: ['RPUSH q a b c'] },
      { on: 0, replies: 1 },
      { on: 1, replies: 1 },
      { on: 2, send: ['LRANGE q 0 -1'] },
      { on: 0, send: ['BLPOP empty1 empty2 0'], replies: 0, blocked: 1 },
      // A transaction that pushes and pops: the waiter sees the state after EXEC.
      { on: 2, send: ['MULTI', 'RPUSH empty2 x', 'LPOP empty2', 'RPUSH empty2 y', 'EXEC'] },
      { on: 0, replies: 1 },
      { on: 2, send: ['EXISTS empty2', 'SET str v'] },
      { on: 0, send: ['BLPOP str 0'] },
      { on: 1, send: ['BLPOP q 0.05'] },
      { on: 0, send: ['BRPOP nothing 0.02', 'PING'] },
    ]);
  });

  it('RESP3 replies: maps, sets, nulls, doubles-as-strings', async () => {
    await compare(
      [
        'HSET h a 1 b 2',
        'HGETALL h',
        'HGETALL missing',
        'HKEYS missing',
        'SADD s one',
        'SMEMBERS s',
        'SMEMBERS missing',
        'SRANDMEMBER s 5',
        'SRANDMEMBER missing',
        'GET missing',
        'MGET missing h',
        'LPOP missing',
        'LPOP missing 2',
        'RPUSH l a',
        'LPOP l 0',
        'INCRBYFLOAT f 1.5',
        'SISMEMBER s one',
        'EXISTS h s',
        'TTL h',
        'TYPE s',
        'BLPOP missing 0.01',
        'MULTI',
        'BLPOP missing 0',
        'HGETALL h',
        'EXEC',
        'CONFIG GET databases',
        'CONFIG GET nomatch',
        'SET k v GET',
        'SET k v NX',
        'HMGET h a zz',
        'INFO keyspace',
      ],
      { resp3: true },
    );
  });

  it('CONFIG GET and SET: values, immutable settings, range and parse errors', async () => {
    await compare([
      // Both servers lower maxclients to what the open-file limit allows (which differs between a
      // lone redis-server and the test runner's process): set it, then compare.
      'CONFIG SET maxclients 10000',
      'CONFIG GET databases',
      'CONFIG GET maxclients',
      'CONFIG GET timeout',
      'CONFIG GET save',
      'CONFIG GET appendonly',
      'CONFIG GET protected-mode',
      'CONFIG GET proto-max-bulk-len',
      'CONFIG GET maxmemory',
      'CONFIG GET DATABASES',
      'CONFIG GET maxclient?',
      'CONFIG GET MAXCLIENT*',
      'CONFIG GET hz*',
      'CONFIG GET nonexistent',
      'CONFIG SET databases 3',
      'CONFIG SET hz abc',
      'CONFIG SET hz 1000',
      'CONFIG GET hz',
      'CONFIG SET hz 0',
      'CONFIG GET hz',
      'CONFIG SET hz 10',
      'CONFIG SET timeout -1',
      'CONFIG SET nope 1',
      'CONFIG SET maxclients 0',
      'CONFIG SET timeout 0 hz',
      'CONFIG SET timeout 0 timeout 1',
      'CONFIG SET timeout 0 databases 1',
      'CONFIG SET TIMEOUT 0',
      'CONFIG GET timeout',
      'CONFIG GET',
      'CONFIG SET timeout',
      'CONFIG FOO',
      'CONFIG',
      'CONFIG RESETSTAT',
      'CONFIG REWRITE',
    ]);
  });

  it('a deep pipeline: 20 000 commands in one write', async () => {
    const script: CommandLine[] = [];
    for (let i = 0; i < 5000; i++) {
      script.push(`SET key:${i} value:${i}`, 'INCR counter', `RPUSH list ${i}`, `GET key:${i % 97}`);
    }
    script.push('LLEN list', 'LRANGE list 4990 -1', 'GET counter', 'DBSIZE');
    await compare(script);
  });

  it('unordered replies hold the same members: SMEMBERS, KEYS, HGETALL of a large hash, a whole SCAN', async () => {
    const setup: CommandLine[] = [
      ['SADD', 's', ...Array.from({ length: 50 }, (_, i) => `m${i}`)],
      ['HSET', 'big', ...Array.from({ length: 300 }, (_, i) => [`f${i}`, `v${i}`]).flat()],
      ...Array.from({ length: 120 }, (_, i) => `SET key:${i} ${i}`),
    ];
    const sorted = (reply: unknown): unknown => (Array.isArray(reply) ? [...reply].sort() : reply);
    const pairs = (reply: unknown): string[] => {
      const flat = reply as string[];
      return Array.from({ length: flat.length / 2 }, (_, i) => `${flat[2 * i]}=${flat[2 * i + 1]}`).sort();
    };
    const results = await Promise.all(
      servers().map(async (server) => {
        const client = new RawClient(server.port);
        try {
          await client.send(['FLUSHALL', ...setup]);
          const [members, keys, hash] = await client.send(['SMEMBERS s', 'KEYS key:1*', 'HGETALL big']);
          const scanned: string[] = [];
          let cursor = '0';
          do {
            const [reply] = await client.send([`SCAN ${cursor} COUNT 7`]);
            const [next, found] = parseReply(reply as Buffer) as [string, string[]];
            scanned.push(...found);
            cursor = next;
          } while (cursor !== '0');
          return {
            members: sorted(parseReply(members as Buffer)),
            keys: sorted(parseReply(keys as Buffer)),
            hash: pairs(parseReply(hash as Buffer)),
            scanned: [...new Set(scanned)].sort(),
          };
        } finally {
          client.close();
        }
      }),
    );
    expect(results[1]).toEqual(results[0]);
    expect(results[0]?.scanned).toHaveLength(122);
  });

  it('CLIENT KILL: its errors, checked in order, and filters that match nobody', async () => {
    await compare([
      'CLIENT KILL',
      'CLIENT kill',
      'CLIENT KILL 10.1.2.3:4567',
      'CLIENT KILL ID',
      'CLIENT KILL ID 0',
      'CLIENT KILL ID -1',
      'CLIENT KILL ID abc',
      'CLIENT KILL ID 01',
      'CLIENT KILL ID 9223372036854775808',
      'CLIENT KILL ID 9223372036854775807',
      'CLIENT KILL ID 999999999',
      'CLIENT KILL id 999999999 SKIPME no',
      'CLIENT KILL ID 999999999 SKIPME',
      'CLIENT KILL ID 999999999 SKIPME maybe',
      'CLIENT KILL TYPE',
      'CLIENT KILL TYPE foo',
      'CLIENT KILL TYPE master',
      'CLIENT KILL TYPE replica',
      'CLIENT KILL TYPE SLAVE',
      'CLIENT KILL TYPE pubsub',
      'CLIENT KILL TYPE normal ID 999999999',
      'CLIENT KILL USER nobody',
      'CLIENT KILL USER default ID 999999999',
      'CLIENT KILL ADDR 10.1.2.3:4567',
      'CLIENT KILL LADDR 10.1.2.3:4567',
      'CLIENT KILL FOO bar',
      'CLIENT KILL MAXAGE 1',
      'CLIENT KILL ID abc TYPE foo',
      'CLIENT KILL TYPE foo ID abc',
      'CLIENT KILL TYPE normal USER nobody',
      'CLIENT KILL USER nobody TYPE foo',
      'CLIENT KILL ID 1 FOO',
      ['CLIENT', 'KILL', 'TYPE', 'no\r\nrmal'],
      'PING',
    ]);
  });

  it('CLIENT KILL: who is killed, who gets a reply, and the caller closed after its reply', async () => {
    const transcripts = await Promise.all(
      servers().map(async (server) => {
        const transcript: string[] = [];
        const clients: RawClient[] = [];
        const connect = async (): Promise<{ client: RawClient; id: string; addr: string }> => {
          const client = new RawClient(server.port);
          clients.push(client);
          const [id] = await client.send(['CLIENT ID']);
          return { client, id: String(parseReply(id as Buffer)), addr: `127.0.0.1:${client.socket.localPort}` };
        };
        const closed = (client: RawClient): Promise<string> =>
          new Promise((resolve) => {
            if (client.socket.destroyed) resolve('closed');
            const timer = setTimeout(() => resolve('open'), 3000);
            client.socket.once('close', () => {
              clearTimeout(timer);
              resolve('closed');
            });
          });
        const step = async (label: string, client: RawClient, command: CommandLine): Promise<void> => {
          const [reply] = await client.send([command]);
          transcript.push(`${label} ${show(reply as Buffer)}`);
        };
        try {
          const a = await connect();
          // Wait until the server has no other clients left from earlier tests.
          for (let i = 0; i < 200; i++) {
            const [list] = await a.client.send(['CLIENT LIST']);
            if (
              String(parseReply(list as Buffer))
                .trim()
                .split('\n').length === 1
            )
              break;
            await new Promise((resolve) => setTimeout(resolve, 10));
          }
          const b = await connect();
          const c = await connect();
          // By id: another client is closed, the caller answered with the count.
          await step('A kill id B', a.client, `CLIENT KILL ID ${b.id}`);
          transcript.push(`B ${await closed(b.client)}`);
          // The old form: +OK, then ERR No such client for a client already gone.
          await step('A kill addr C (old form)', a.client, `CLIENT KILL ${c.addr}`);
          transcript.push(`C ${await closed(c.client)}`);
          await step('A kill addr C again', a.client, `CLIENT KILL ${c.addr}`);
          await step('A kill ADDR C', a.client, `CLIENT KILL ADDR ${c.addr}`);
          // TYPE: a subscriber is pubsub, the rest normal; SKIPME yes spares the caller.
          const d = await connect();
          const e = await connect();
          const [subscribed] = await d.client.send(['SUBSCRIBE news']);
          transcript.push(`D ${show(subscribed as Buffer)}`);
          await step('A kill TYPE pubsub', a.client, 'CLIENT KILL TYPE pubsub');
          transcript.push(`D ${await closed(d.client)}`);
          transcript.push(`E ${await closed(e.client)}`);
          await step('A kill TYPE normal', a.client, 'CLIENT KILL TYPE normal');
          transcript.push(`E ${await closed(e.client)}`);
          await step('A kill by its own id (SKIPME default yes)', a.client, `CLIENT KILL ID ${a.id}`);
          await step('A kill USER default', a.client, 'CLIENT KILL USER default');
          await step('A ping', a.client, 'PING');
          // LADDR: every client here came in on this server's address.
          const f = await connect();
          await step('A kill LADDR', a.client, `CLIENT KILL LADDR 127.0.0.1:${server.port}`);
          transcript.push(`F ${await closed(f.client)}`);
          // A client that kills itself gets its reply, then is closed.
          await step('A kill itself (SKIPME no)', a.client, `CLIENT KILL ID ${a.id} SKIPME no`);
          transcript.push(`A ${await closed(a.client)}`);
          const g = await connect();
          await step('G kill itself (old form)', g.client, `CLIENT KILL ${g.addr}`);
          transcript.push(`G ${await closed(g.client)}`);
        } finally {
          for (const client of clients) client.close();
        }
        return transcript;
      }),
    );
    expect(transcripts[1]).toEqual(transcripts[0]);
    expect(transcripts[0]).toContain('A kill id B :1⏎');
    expect(transcripts[0]).toContain('A kill itself (SKIPME no) :1⏎');
  });
});
