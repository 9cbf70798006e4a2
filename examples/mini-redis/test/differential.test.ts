import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type CommandLine,
  encode,
  onEach,
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

const execFileAsync = promisify(execFile);

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
  const transcripts = await onEach(servers(), async (server) => {
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
  });
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

  it('an EXEC refused over maxmemory answers EXECABORT with the reason and ends the transaction (rejectCommand)', async () => {
    // Redis's unit/multi "EXEC with at least one use-memory command should fail", plus what follows it.
    await compareSessions(2, [
      { on: 0, send: ['SET x 0', 'WATCH x', 'MULTI', 'SET x 1', 'GET x'] },
      { on: 1, send: ['CONFIG SET maxmemory 1'] },
      { on: 0, send: ['EXEC', 'DISCARD', 'UNWATCH', 'PING'] },
      { on: 1, send: ['CONFIG SET maxmemory 0'] },
      { on: 0, send: ['MULTI', 'GET x', 'EXEC'] },
    ]);
  });

  it("a subcommand's own arity and flags decide at dispatch: XGROUP CREATE refused past maxmemory (alone and queued), OBJECT ENCODING's arity", async () => {
    // server.c processCommand works on c->cmd, the subcommand: XGROUP CREATE is write + denyoom, XINFO
    // STREAM readonly; a wrong arity names the subcommand ('object|encoding').
    await compareSessions(2, [
      { on: 0, send: ['XADD s 1-1 f v', 'OBJECT ENCODING', 'OBJECT ENCODING s extra', 'XINFO STREAM'] },
      { on: 1, send: ['CONFIG SET maxmemory 1'] },
      { on: 0, send: ['XGROUP CREATE s g $', 'XINFO GROUPS s', 'MULTI', 'XGROUP CREATE s g $', 'EXEC', 'OBJECT ENCODING s'] },
      { on: 1, send: ['CONFIG SET maxmemory 0'] },
      { on: 0, send: ['XGROUP CREATE s g $', 'XINFO GROUPS s'] },
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

describe('sorted sets reply byte for byte as redis-server 7.0', () => {
  beforeAll(async () => {
    if (!existsSync(REDIS_SERVER)) throw new Error(`${REDIS_SERVER} not found: apt-get install redis-server (bash .ci/run does)`);
    [real, mini] = await Promise.all([startRedisServer(), startMiniRedis()]);
  });

  afterAll(async () => {
    await Promise.all([real?.stop(), mini?.stop()]);
  });

  // ZADD's options and errors, ZINCRBY, the single-member reads, ZRANGE and its family with
  // every option and error, ZREM, ZCOUNT, ZLEXCOUNT, ZRANGESTORE, ZREMRANGEBY*, ZPOP*, WRONGTYPE.
  const commands: CommandLine[] = [
    'ZADD z 1 a 2 b 3 c',
    'ZADD z 0.1 d 1.5 e -inf f +inf g',
    'ZADD z NX 5 a 6 new',
    'ZADD z XX 5 a 6 new2',
    'ZADD z XX CH 7 a 2 b',
    'ZADD z GT CH 1 a 8 b',
    'ZADD z LT CH 1 a 9 b',
    'ZADD z NX XX 1 a',
    'ZADD z GT LT 1 a',
    'ZADD z GT NX 1 a',
    'ZADD z LT NX 1 a',
    'ZADD z INCR 1 a 2 b',
    'ZADD z INCR 1 a',
    'ZADD z INCR NX 1 a',
    'ZADD z INCR XX 1 nope',
    'ZADD z INCR GT -100 a',
    'ZADD z nan a',
    'ZADD z abc a',
    'ZADD z',
    'ZADD z NX',
    'ZADD z 1 a 2',
    ['ZADD', 'z', '1', ''],
    'ZRANGE z 0 0',
    'ZADD z 1e400 a',
    'ZADD z 1e-400 a',
    'ZADD z 0x10 h',
    'ZADD z inf a',
    'ZADD z INCR -inf a',
    'ZRANGE z 0 -1 WITHSCORES',
    'ZADD z INCR +inf f',
    'ZINCRBY z +inf f',
    'ZINCRBY z 1 a',
    'ZINCRBY z x a',
    'ZINCRBY z 1 newone',
    'ZINCRBY z nx a',
    'ZINCRBY z 0.1 newone',
    'ZCARD z',
    'ZCARD nokey',
    'ZSCORE z a',
    'ZSCORE z zz',
    'ZSCORE nokey a',
    'ZMSCORE z a b zz',
    'ZMSCORE nokey a',
    'ZRANK z a',
    'ZRANK z c',
    'ZREVRANK z c',
    'ZRANK z zz',
    'ZRANK nokey a',
    'ZRANGE z 0 -1 WITHSCORES',
    'ZRANGE z 0 -1',
    'ZRANGE z 2 4',
    'ZRANGE z -3 -1 WITHSCORES',
    'ZRANGE z -100 100',
    'ZRANGE z 5 1',
    'ZRANGE z 100 200',
    'ZRANGE z 0 -1 REV',
    'ZRANGE z 0 1 REV WITHSCORES',
    'ZRANGE z 0 1 LIMIT 0 1',
    'ZRANGE z 0 1 LIMIT 0 -1',
    'ZRANGE z 0 1 LIMIT 0',
    'ZRANGE z 0 1 FOO',
    'ZRANGE z a b',
    'ZRANGE z -inf +inf BYSCORE',
    'ZRANGE z -inf +inf BYSCORE WITHSCORES',
    'ZRANGE z (1 3 BYSCORE WITHSCORES',
    'ZRANGE z 1 (3 BYSCORE',
    'ZRANGE z +inf -inf BYSCORE REV WITHSCORES',
    'ZRANGE z 3 1 BYSCORE REV',
    'ZRANGE z -inf +inf BYSCORE LIMIT 1 2',
    'ZRANGE z -inf +inf BYSCORE LIMIT 1 -1',
    'ZRANGE z -inf +inf BYSCORE LIMIT -1 2',
    'ZRANGE z -inf +inf BYSCORE LIMIT 100 2',
    'ZRANGE z -inf +inf BYSCORE LIMIT 1 0',
    'ZRANGE z +inf -inf BYSCORE REV LIMIT 1 3 WITHSCORES',
    'ZRANGE z x y BYSCORE',
    'ZRANGE z 1 x BYSCORE',
    'ZRANGE z ( 5 BYSCORE',
    'ZRANGE z nan 5 BYSCORE',
    'ZRANGE z - + BYLEX',
    'ZRANGE z - + BYLEX WITHSCORES',
    'ZRANGE z [a (c BYLEX',
    'ZRANGE z + - BYLEX REV',
    'ZRANGE z a c BYLEX',
    'ZRANGE z - + BYLEX LIMIT 1 2',
    'ZRANGE z 0 -1 BYSCORE BYLEX',
    'ZRANGE z 0 -1 REV REV',
    'ZRANGE nokey 0 -1',
    'ZRANGE nokey x y',
    'ZRANGEBYSCORE z -inf +inf',
    'ZRANGEBYSCORE z 1 3 WITHSCORES',
    'ZRANGEBYSCORE z 1 3 LIMIT 0 1',
    'ZRANGEBYSCORE z 1 3 BYSCORE',
    'ZRANGEBYSCORE z 1 3 REV',
    'ZREVRANGEBYSCORE z 3 1 WITHSCORES',
    'ZREVRANGEBYSCORE z +inf -inf LIMIT 0 2',
    'ZREVRANGE z 0 1',
    'ZREVRANGE z 0 -1 WITHSCORES',
    'ZREVRANGE z 0 1 LIMIT 0 1',
    'ZREVRANGE z 0 1 BYSCORE',
    'ZRANGEBYLEX z - +',
    'ZRANGEBYLEX z [b [d',
    'ZRANGEBYLEX z (b (d',
    'ZRANGEBYLEX z - + LIMIT 0 2',
    'ZRANGEBYLEX z b d',
    'ZRANGEBYLEX z - + WITHSCORES',
    'ZREVRANGEBYLEX z + -',
    'ZREVRANGEBYLEX z [d [b',
    'ZREVRANGEBYLEX z (d - LIMIT 0 1',
    'ZCOUNT z -inf +inf',
    'ZCOUNT z 1 3',
    'ZCOUNT z (1 (3',
    'ZCOUNT z 3 1',
    'ZCOUNT z x 1',
    'ZCOUNT nokey 0 1',
    'ZLEXCOUNT z - +',
    'ZLEXCOUNT z [b (d',
    'ZLEXCOUNT z b d',
    'ZLEXCOUNT z + -',
    'ZREM z a zz',
    'ZREM z zz',
    'ZREM nokey a',
    'ZRANGESTORE dst z 0 1',
    'ZRANGE dst 0 -1 WITHSCORES',
    'ZRANGESTORE dst z 0 -1 BYSCORE',
    'ZRANGESTORE dst z -inf +inf BYSCORE LIMIT 0 2',
    'ZRANGESTORE dst z 0 1 WITHSCORES',
    'ZRANGESTORE dst nokey 0 1',
    'EXISTS dst',
    'ZRANGESTORE dst z 10 20',
    'ZRANGESTORE dst z [a [c BYLEX REV',
    'ZRANGESTORE dst z [c [a BYLEX REV',
    'ZRANGE dst 0 -1',
    'ZREMRANGEBYRANK z 0 0',
    'ZREMRANGEBYRANK z x 0',
    'ZREMRANGEBYRANK z 10 20',
    'ZREMRANGEBYSCORE z (1 3',
    'ZREMRANGEBYSCORE z x 3',
    'ZREMRANGEBYLEX z - [b',
    'ZREMRANGEBYLEX z a b',
    'ZRANGE z 0 -1 WITHSCORES',
    'ZREMRANGEBYRANK nokey 0 -1',
    'ZPOPMIN z',
    'ZPOPMAX z',
    'ZPOPMIN z 2',
    'ZPOPMIN z 0',
    'ZPOPMIN z -1',
    'ZPOPMIN z x',
    'ZPOPMIN z 1 2',
    'ZPOPMIN nokey',
    'ZPOPMIN nokey 2',
    'ZPOPMAX z 100',
    'EXISTS z',
    'SET s v',
    'ZADD s 1 a',
    'ZRANGE s 0 -1',
    'ZSCORE s a',
    'ZCARD s',
    'ZPOPMIN s',
    'ZPOPMIN s 0',
    'ZCOUNT s 0 1',
    'ZCOUNT s x 1',
    'ZADD s x a',
    'ZREM s a',
    'ZINCRBY s 1 a',
    'ZRANGESTORE s2 s 0 1',
    'ZUNION 1 s',
    'LPUSH l a',
    'ZRANGEBYSCORE l 0 1',
    'ZRANDMEMBER s',
  ];

  // ZUNION/ZINTER/ZDIFF[STORE] with WEIGHTS and AGGREGATE (sets count as score 1), ZINTERCARD,
  // ZSCAN of small sets (whole, cursor 0), what ZRANDMEMBER does deterministically, empty keys
  // deleted, TTLs kept, lex ranges, and how scores are read (strtod: hex, inf, overflow).
  const combined: CommandLine[] = [
    'ZADD a 1 x 2 y 3 z',
    'ZADD b 10 y 20 z 30 w',
    'SADD s y w v',
    'ZUNION 2 a b',
    'ZUNION 2 a b WITHSCORES',
    'ZUNION 2 a b WEIGHTS 2 3 WITHSCORES',
    'ZUNION 2 a b AGGREGATE MIN WITHSCORES',
    'ZUNION 2 a b AGGREGATE MAX WITHSCORES',
    'ZUNION 2 a b AGGREGATE FOO',
    'ZUNION 2 a b WEIGHTS 1',
    'ZUNION 2 a b WEIGHTS 1 x',
    'ZUNION 2 a b AGGREGATE',
    'ZUNION 0 a',
    'ZUNION -1 a',
    'ZUNION x a',
    'ZUNION 3 a b',
    'ZUNION 2 a s WITHSCORES',
    'ZUNION 2 a nokey WITHSCORES',
    'ZINTER 2 a b WITHSCORES',
    'ZINTER 2 a s WITHSCORES',
    'ZINTER 2 a b WEIGHTS 1 -1 AGGREGATE SUM WITHSCORES',
    'ZINTER 2 a nokey',
    'ZDIFF 2 a b WITHSCORES',
    'ZDIFF 2 b a',
    'ZDIFF 2 b s WITHSCORES',
    'ZDIFF 2 a b WEIGHTS 1 1',
    'ZDIFF 2 a b AGGREGATE SUM',
    'ZDIFF 0 a',
    'ZUNIONSTORE dst 2 a b',
    'ZRANGE dst 0 -1 WITHSCORES',
    'ZUNIONSTORE dst 2 a b WITHSCORES',
    'ZINTERSTORE dst 2 a b WEIGHTS 2 0.5',
    'ZRANGE dst 0 -1 WITHSCORES',
    'ZINTERSTORE dst 2 a nokey',
    'EXISTS dst',
    'ZDIFFSTORE dst 2 a b',
    'ZRANGE dst 0 -1 WITHSCORES',
    'ZDIFFSTORE dst 1 nokey',
    'EXISTS dst',
    'ZUNIONSTORE dst 0 a',
    'ZINTERSTORE dst 0 a',
    'ZDIFFSTORE dst 0 a',
    'ZINTERCARD 2 a b',
    'ZINTERCARD 2 a b LIMIT 1',
    'ZINTERCARD 2 a b LIMIT 0',
    'ZINTERCARD 2 a b LIMIT -1',
    'ZINTERCARD 2 a b LIMIT x',
    'ZINTERCARD 0 a',
    'ZINTERCARD x a',
    'ZINTERCARD 3 a b',
    'ZINTERCARD 2 a b FOO',
    'ZINTERCARD 2 a b LIMIT',
    'ZINTERCARD 1 nokey',
    'SET str v',
    'ZUNION 2 a str',
    'ZINTERCARD 2 a str',
    'ZSCAN a 0',
    'ZSCAN a 0 MATCH x*',
    'ZSCAN a 0 COUNT 1',
    'ZSCAN a 0 COUNT 0',
    'ZSCAN a 0 COUNT x',
    'ZSCAN a 0 FOO',
    'ZSCAN a x',
    'ZSCAN a -1',
    'ZSCAN nokey 0',
    'ZSCAN str 0',
    'ZSCAN str x',
    'ZSCAN a 0 TYPE zset',
    'ZADD f 1e17 big 0.1 small 4611686018427387904 p62 9223372036854775808 p63 -0 negzero 1.5e-7 tiny',
    'ZSCAN f 0',
    'ZRANGE f 0 -1 WITHSCORES',
    'ZSCORE f negzero',
    'ZADD one 5 only',
    'ZRANDMEMBER one',
    'ZRANDMEMBER one 1',
    'ZRANDMEMBER one 5',
    'ZRANDMEMBER one 5 WITHSCORES',
    'ZRANDMEMBER one -3',
    'ZRANDMEMBER one -3 WITHSCORES',
    'ZRANDMEMBER one 0',
    'ZRANDMEMBER one 1 FOO',
    'ZRANDMEMBER one 1 WITHSCORES x',
    'ZRANDMEMBER one x',
    'ZRANDMEMBER one -9223372036854775808',
    'ZRANDMEMBER one 9223372036854775807 WITHSCORES',
    'ZRANDMEMBER one -9223372036854775807 WITHSCORES',
    'ZRANDMEMBER nokey',
    'ZRANDMEMBER nokey 3',
    'ZRANDMEMBER str',
    'ZRANDMEMBER str 3',
    'ZRANDMEMBER a 3 WITHSCORES',
    'ZRANDMEMBER a 10',
    'ZADD zk 1 a',
    'GET zk',
    'LPUSH zk x',
    'SADD zk x',
    'HSET zk f v',
    'INCR zk',
    'TYPE zk',
    'RENAME zk zk2',
    'ZRANGE zk2 0 -1 WITHSCORES',
    'ZADD e 1 m',
    'ZREM e m',
    'EXISTS e',
    'ZADD e 1 m',
    'ZPOPMIN e',
    'EXISTS e',
    'ZADD e 1 m',
    'ZREMRANGEBYSCORE e -inf +inf',
    'EXISTS e',
    'ZADD e 1 m',
    'ZINCRBY e 1 m',
    'EXPIRE e 100',
    'ZADD e 2 n',
    'TTL e',
    'TYPE e',
    'ZADD lex 0 a 0 b 0 c 0 A 0 aa',
    'ZRANGEBYLEX lex - +',
    'ZRANGEBYLEX lex [a [b',
    'ZRANGEBYLEX lex (a +',
    'ZRANGEBYLEX lex [aa [a',
    'ZRANGEBYLEX lex [a (a',
    'ZLEXCOUNT lex [a [a',
    'ZLEXCOUNT lex - -',
    'ZLEXCOUNT lex + +',
    'ZREMRANGEBYLEX lex [a [aa',
    'ZRANGE lex 0 -1',
    'ZRANGE lex 1 0 BYSCORE REV',
    'ZCOUNT lex ( 1',
    'ZCOUNT lex 1e400 1e400',
    'ZCOUNT lex -1e400 1',
    'ZADD h 0x1p3 m',
    'ZADD h 1. m',
    'ZADD h .5 n',
    'ZADD h 5e-1 o',
    'ZADD h +5 p',
    'ZADD h 5x q',
    'ZADD h -inf q Infinity r -INFINITY t',
    'ZRANGE h 0 -1 WITHSCORES',
    'ZADD h 1e308 big',
    'ZINCRBY h 1e308 big',
    'ZADD h INCR -inf r',
    'ZMSCORE',
    'ZMSCORE h',
    'ZRANGE h',
    'ZRANGESTORE d',
    'ZINTERCARD 1',
    'ZPOPMIN',
    'ZINTERCARD 2 a b WEIGHTS 1 1',
    'ZINTERCARD 2 a str LIMIT x',
    'ZINTERCARD 2 a b LIMIT 1 LIMIT 2',
    'ZINTER 2 a b LIMIT 1',
    'ZADD negz -0 m',
    'ZSCORE negz m',
    'ZADD negz INCR -0 n',
    'ZUNION 2 a b WEIGHTS 0 -1 WITHSCORES',
  ];

  it('ZADD, ZINCRBY, ZSCORE, ZMSCORE, ZRANK, ZRANGE family, ZCOUNT, ZREM*, ZPOP*: RESP2', async () => {
    await compare(commands);
  });

  it('the same on RESP3: doubles, [member, score] pairs, nulls', async () => {
    await compare(commands, { resp3: true });
  });

  it('ZUNION, ZINTER, ZDIFF (+STORE), ZINTERCARD, ZSCAN, ZRANDMEMBER, empty keys, score parsing: RESP2', async () => {
    await compare(combined);
  });

  it('the same on RESP3', async () => {
    await compare(combined, { resp3: true });
  });

  // Redis 7.0 prints scores with printf("%.17g") (networking.c, addReplyDouble), on RESP3 (`,…`)
  // as on RESP2 (a bulk string): 0.1 is 0.10000000000000001, exponents have a sign and two digits.
  const doubles: CommandLine[] = [
    'ZADD d 0.1 tenth 1e-7 small 0.3333333333333333 third 1e300 huge -1e-300 tiny 1e17 big 1.5e-7 b',
    'ZADD d -0 negzero inf up -inf down 1e21 e21 123456.789 mixed 2251799813685247.75 tie 1125899906842623.25 even',
    'ZADD d 4.9406564584124654e-324 denormal 1.7976931348623157e308 max 0.0001 m4 0.00001 m5 -2.5 neg 1e16 e16',
    'ZRANGE d 0 -1 WITHSCORES',
    'ZSCORE d tenth',
    'ZSCORE d negzero',
    'ZSCORE d up',
    'ZSCORE d down',
    'ZMSCORE d small third huge nothing',
    'ZINCRBY d 0.2 tenth',
    'ZADD d INCR 1e-7 small',
    'ZINCRBY d 1 up',
    'ZPOPMIN d',
    'ZPOPMAX d 2',
    'ZRANGEBYSCORE d (0 1 WITHSCORES',
    'ZUNION 1 d WEIGHTS 0.1 WITHSCORES',
  ];

  it('scores print as Redis 7.0 prints them ("%.17g"): RESP2', async () => {
    await compare(doubles);
  });

  it('scores print as Redis 7.0 prints them ("%.17g"): RESP3', async () => {
    await compare(doubles, { resp3: true });
  });

  it('score ranges read as strtod reads them: an empty end is 0, leading blanks skipped, a NUL ends it', async () => {
    await compare([
      'ZADD z 0 a 1 b 2 c',
      ['ZCOUNT', 'z', '', '1'],
      ['ZCOUNT', 'z', '(', '1'],
      ['ZCOUNT', 'z', ' 1', '2'],
      ['ZCOUNT', 'z', '   ', '2'],
      ['ZCOUNT', 'z', '1 ', '2'],
      ['ZCOUNT', 'z', Buffer.from('1\u0000x'), '2'],
      ['ZRANGEBYSCORE', 'z', '\t(0', '+inf'],
      ['ZADD', 'z', ' 1', 'd'],
      ['ZADD', 'z', '', 'd'],
      ['ZADD', 'z', '1 ', 'd'],
    ]);
  });

  it('binary members sort by their bytes (memcmp) on equal scores', async () => {
    await compare([
      [
        'ZADD',
        'z',
        '0',
        Buffer.from([0xff]),
        '0',
        Buffer.from([0x00]),
        '0',
        Buffer.from([0x80, 0x01]),
        '0',
        Buffer.from('a'),
        '0',
        Buffer.from([0x80]),
      ],
      ['ZADD', 'z', '0', binaryKey, '0', binary],
      'ZRANGE z 0 -1',
      'ZRANGEBYLEX z - +',
      ['ZRANGEBYLEX', 'z', Buffer.from([0x5b, 0x80]), '+'],
      ['ZRANK', 'z', Buffer.from([0x80, 0x01])],
      ['ZSCORE', 'z', binary],
      ['ZREM', 'z', binaryKey],
      'ZCARD z',
    ]);
  });

  it('large sorted sets: ranks, ranges and counts over 1000 members', async () => {
    const members = Array.from({ length: 1000 }, (_, i) => `${(i * 7919) % 1000} m${i}`);
    const script: CommandLine[] = [];
    for (let i = 0; i < members.length; i += 100) script.push(`ZADD big ${members.slice(i, i + 100).join(' ')}`);
    script.push(
      'ZCARD big',
      'ZRANK big m500',
      'ZREVRANK big m500',
      'ZRANGE big 100 110 WITHSCORES',
      'ZRANGE big -5 -1',
      'ZRANGEBYSCORE big (250 260 WITHSCORES',
      'ZRANGE big 900 800 BYSCORE REV LIMIT 3 4',
      'ZCOUNT big 100 (200',
      'ZREMRANGEBYRANK big 0 99',
      'ZREMRANGEBYSCORE big 500 599',
      'ZCARD big',
      'ZRANGE big 0 4 WITHSCORES',
      'ZPOPMAX big 3',
      'ZINCRBY big 1000 m1',
      'ZREVRANGE big 0 2 WITHSCORES',
      'ZUNIONSTORE u 2 big big WEIGHTS 1 2',
      'ZRANGE u 0 2 WITHSCORES',
      'ZINTERCARD 2 big u LIMIT 10',
    );
    await compare(script);
    await compare(script, { resp3: true });
  });

  it('ZMPOP, BZMPOP, BZPOPMIN, BZPOPMAX without blocking: replies and errors, RESP2 and RESP3', async () => {
    const script: CommandLine[] = [
      'ZADD a 1 x 2 y 3 z',
      'ZADD b 10 p',
      'SET str v',
      'ZMPOP 1 a MIN',
      'ZMPOP 2 nokey a MAX COUNT 5',
      'EXISTS a',
      'ZMPOP 1 nokey MIN',
      'ZMPOP 2 nokey b MIN COUNT 1',
      'ZMPOP 0 a MIN',
      'ZMPOP -1 a MIN',
      'ZMPOP x a MIN',
      'ZMPOP 1 a',
      'ZMPOP 3 a MIN',
      'ZMPOP 1 a FOO',
      'ZMPOP 1 a MIN COUNT 0',
      'ZMPOP 1 a MIN COUNT -1',
      'ZMPOP 1 a MIN COUNT x',
      'ZMPOP 1 a MIN COUNT',
      'ZMPOP 1 a MIN COUNT 1 COUNT 1',
      'ZMPOP 1 a MIN FOO',
      'ZMPOP 1 str MIN',
      'ZMPOP 2 nokey str MIN',
      'ZADD a 1 x 2 y 3 z',
      'BZPOPMIN a 0',
      'BZPOPMAX nokey a 0',
      'BZPOPMIN str 0',
      'BZPOPMIN a x',
      'BZPOPMIN a -1',
      'BZMPOP 0 1 a MAX COUNT 10',
      'BZMPOP x 1 a MAX',
      'BZMPOP 0 0 a MAX',
      'BZMPOP 0 1 a FOO',
      'BZMPOP 0 1 str MIN',
      'BZPOPMIN nokey 0.01',
      'BZMPOP 0.01 1 nokey MIN',
      'MULTI',
      'BZPOPMIN nokey 0',
      'BZMPOP 0 1 nokey MIN',
      'ZADD m 1 a',
      'BZPOPMAX m 0',
      'EXEC',
    ];
    await compare(script);
    await compare(script, { resp3: true });
  });

  it('BZPOPMIN/BZPOPMAX/BZMPOP block: served oldest first by ZADD, after EXEC, not by other types; timeouts', async () => {
    await compareSessions(3, [
      { on: 0, send: ['BZPOPMIN z 0'], replies: 0, blocked: 1 },
      { on: 1, send: ['BZPOPMAX other z 0'], replies: 0, blocked: 2 },
      { on: 2, send: ['ZADD z 1 a 2 b 3 c'] },
      { on: 0, replies: 1 },
      { on: 1, replies: 1 },
      { on: 2, send: ['ZRANGE z 0 -1 WITHSCORES'] },
      { on: 0, send: ['BZMPOP 0 2 e1 e2 MAX COUNT 2'], replies: 0, blocked: 1 },
      // A transaction that adds and pops: the waiter sees the state after EXEC.
      { on: 2, send: ['MULTI', 'ZADD e2 1 x 2 y 3 w', 'ZPOPMIN e2', 'EXEC'] },
      { on: 0, replies: 1 },
      { on: 2, send: ['ZRANGE e2 0 -1'] },
      // A BLPOP waiter is not served by a sorted set, nor a BZPOPMIN waiter by a list.
      { on: 0, send: ['BLPOP k 0'], replies: 0, blocked: 1 },
      { on: 1, send: ['BZPOPMIN k 0'], replies: 0, blocked: 2 },
      { on: 2, send: ['ZADD k 5 m'] },
      { on: 1, replies: 1 },
      { on: 2, send: ['DEL k', 'RPUSH k v'] },
      { on: 0, replies: 1 },
      { on: 2, send: ['EXISTS k'] },
      { on: 0, send: ['BZPOPMIN none 0.02', 'BZMPOP 0.02 1 none MIN', 'PING'] },
    ]);
  });

  it('WATCH: ZADD, ZINCRBY, ZREM, ZPOP, ZREMRANGEBY*, stores dirty the key; no-op writes do not', async () => {
    const watched = (write: CommandLine, setup: CommandLine[] = ['DEL k', 'ZADD k 1 a 2 b']) => [
      { on: 1, send: setup },
      { on: 0, send: ['WATCH k', 'ZCARD k'] },
      { on: 1, send: [write] },
      { on: 0, send: ['MULTI', 'ZADD k 3 c', 'EXEC', 'ZRANGE k 0 -1'] },
    ];
    await compareSessions(2, [
      ...watched('ZADD k 5 a'),
      ...watched('ZADD k 1 new'),
      ...watched('ZINCRBY k 1 a'),
      ...watched('ZREM k a'),
      ...watched('ZPOPMIN k'),
      ...watched('ZREMRANGEBYSCORE k 0 1'),
      ...watched('ZRANGESTORE k k 0 0'),
      ...watched('ZUNIONSTORE k 1 k'),
      ...watched('ZADD k 1 a', ['DEL k']),
      // Not touched: reads, writes that change nothing.
      ...watched('ZRANGE k 0 -1'),
      ...watched('ZADD k 1 a'),
      ...watched('ZADD k NX 9 a'),
      ...watched('ZADD k XX 9 zz'),
      ...watched('ZADD k GT 0 b'),
      ...watched('ZREM k zz'),
      ...watched('ZREMRANGEBYRANK k 10 20'),
      ...watched('ZPOPMIN k 0'),
    ]);
  });
});

describe('introspection with real clients: redis-py, redis-cli --stat, redis-cli monitor', () => {
  let server: (Started & { service: import('@portbind/core').PortService }) | undefined;
  beforeAll(async () => {
    server = await startMiniRedis();
  });
  afterAll(async () => {
    await server?.stop();
  });
  const port = (): number => (server as Started).port;

  it("redis-py (Debian's python3-redis) parses CLIENT INFO and CLIENT LIST", async () => {
    const script = [
      'import json, sys, redis',
      'r = redis.Redis(host="127.0.0.1", port=int(sys.argv[1]))',
      'r.client_setname("py")',
      'info = r.client_info()',
      'listed = r.client_list()',
      'print(json.dumps({"info": info, "list": listed}))',
    ].join('\n');
    const { stdout } = await execFileAsync('/usr/bin/python3', ['-c', script, String(port())], { timeout: 20_000 });
    const { info, list } = JSON.parse(stdout) as { info: Record<string, unknown>; list: Array<Record<string, unknown>> };
    expect(info.name).toBe('py');
    expect(info.cmd).toBe('client|info');
    for (const field of ['oll', 'omem', 'tot-mem', 'qbuf-free', 'argv-mem', 'multi-mem', 'rbs', 'rbp', 'redir', 'resp'])
      expect(info).toHaveProperty(field);
    expect(list.some((client) => client.name === 'py' && client.cmd === 'client|list')).toBe(true);
  });

  it('CLIENT LIST has the fields of the Redis version mini-redis reports (7.0.15), in its order', async () => {
    const real = await startRedisServer();
    try {
      const fields = async (port: number): Promise<string> => {
        const client = new RawClient(port);
        try {
          const [reply] = await client.send(['CLIENT LIST']);
          const line = (reply as Buffer).toString('latin1').split('\r\n')[1] as string;
          return line
            .trim()
            .split(' ')
            .map((field) => field.slice(0, field.indexOf('=')))
            .join(' ');
        } finally {
          client.close();
        }
      };
      expect(await fields(port())).toBe(await fields(real.port));
    } finally {
      await real.stop();
    }
  });

  it('CLIENT LIST filters: the same replies and errors as redis-server 7.0', async () => {
    const script: CommandLine[] = [
      'CLIENT LIST TYPE bogus',
      'CLIENT LIST TYPE replica',
      'CLIENT LIST TYPE MASTER',
      'CLIENT LIST TYPE slave',
      'CLIENT LIST TYPE pubsub',
      'CLIENT LIST ID 1 x',
      'CLIENT LIST ID 99999 -5 0',
      'CLIENT LIST ID 99999999999999999999',
      'CLIENT LIST ID',
      'CLIENT LIST TYPE',
      'CLIENT LIST TYPE normal extra',
      'CLIENT LIST foo bar',
      'CLIENT LIST foo',
    ];
    const real = await startRedisServer();
    try {
      const replies = async (at: number): Promise<string[]> => {
        const client = new RawClient(at);
        try {
          return (await client.send(script)).map((reply, i) => `${script[i]} → ${show(reply)}`);
        } finally {
          client.close();
        }
      };
      expect(await replies(port())).toEqual(await replies(real.port));
    } finally {
      await real.stop();
    }
  });

  it('redis-cli --stat: no garbage numbers, and the request counter grows', async () => {
    const cli = spawn('stdbuf', ['-oL', 'redis-cli', '-p', String(port()), '--stat', '-i', '0.2'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    cli.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    const traffic = new RawClient(port());
    const exited = new Promise((resolve) => cli.once('exit', resolve));
    try {
      await traffic.send(['SET stat:a 1', 'SET stat:b 2']);
      // Until five samples are in (about a second), with traffic between them.
      for (let i = 0; i < 100 && output.split('\n').filter((line) => /^\d/.test(line)).length < 5; i++) {
        await traffic.send(['INCR stat:n', 'GET stat:a']);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    } finally {
      traffic.close();
      cli.kill('SIGTERM');
      await exited;
    }
    const samples = output.split('\n').filter((line) => /^\d/.test(line));
    expect(samples.length, output).toBeGreaterThanOrEqual(5);
    expect(output).not.toMatch(/-\d/);
    const requests: number[] = [];
    for (const sample of samples) {
      // keys mem clients blocked requests (+delta) connections
      const match = sample.match(/^(\d+)\s+([\d.]+[BKMGT])\s+(\d+)\s+(\d+)\s+(\d+) \(\+(\d+)\)\s+(\d+)\s*$/);
      expect(match, sample).not.toBeNull();
      const [, keys, , clients, , total, , connections] = match as RegExpMatchArray;
      expect(Number(keys)).toBeGreaterThanOrEqual(2);
      expect(Number(clients)).toBeGreaterThanOrEqual(1);
      expect(Number(connections)).toBeGreaterThanOrEqual(2);
      requests.push(Number(total));
    }
    for (let i = 1; i < requests.length; i++) expect(requests[i]).toBeGreaterThan(requests[i - 1] as number);
  });

  it('MONITOR: the same lines as redis-server 7.0 (quoting, redaction, MULTI/EXEC, SELECT, what is left out), timestamp and port masked', async () => {
    const script: CommandLine[] = [
      'SET k v',
      ['SET', 'q', Buffer.from('a\u0001b"c\\d\n\r\t\u0007\b\u00ff ü')],
      'AUTH x',
      'AUTH u p',
      'HELLO 3 AUTH u p SETNAME nm',
      'HELLO 2',
      'MULTI',
      'INCR k',
      'SET k 1',
      'EXEC',
      'CLIENT LIST',
      'CLIENT ID',
      'CLIENT KILL ID 999999',
      'SELECT 3',
      'PING',
      'NOSUCH a',
      'GET',
      'Get k',
      'DEL k',
      'SELECT 0',
      'ECHO done',
    ];
    const session = async (port: number): Promise<{ lines: string[]; monitorReplies: string[] }> => {
      const monitor = new RawClient(port);
      const other = new RawClient(port);
      try {
        expect((await monitor.send(['MONITOR']))[0]?.toString()).toBe('+OK\r\n');
        await other.send(['FLUSHALL']);
        const address = `127.0.0.1:${other.socket.localPort}`;
        await other.send(script);
        const lines: string[] = [];
        for (;;) {
          const [line] = await monitor.read(1);
          const text = (line as Buffer).toString('latin1');
          expect(text).toMatch(/^\+\d{10}\.\d{6} \[\d+ 127\.0\.0\.1:\d+\] /);
          if (text.includes('"FLUSHALL"')) continue;
          expect(text).toContain(`[${text.match(/\[(\d+)/)?.[1]} ${address}]`);
          lines.push(text.replace(/^\+\d+\.\d{6} \[(\d+) [^\]]+\]/, '+<time> [$1 <addr>]'));
          if (text.includes('"done"')) break;
        }
        // The monitor itself: its own commands are fed to it after their reply; keyspace commands
        // are refused; a second MONITOR is ignored; RESET ends monitor mode.
        const replies = await monitor.send(['PING', 'GET k', 'MONITOR', 'RESET', 'GET k', 'MULTI', 'MONITOR', 'EXEC', 'PING']);
        return { lines, monitorReplies: replies.map((reply) => show(reply)) };
      } finally {
        monitor.close();
        other.close();
      }
    };
    const real = await startRedisServer();
    try {
      const expected = await session(real.port);
      const actual = await session(port());
      expect(actual.lines).toEqual(expected.lines);
      expect(actual.monitorReplies.map((reply) => reply.replace(/^\+\d+\.\d{6} \[[^\]]+\]/, '+<line>'))).toEqual(
        expected.monitorReplies.map((reply) => reply.replace(/^\+\d+\.\d{6} \[[^\]]+\]/, '+<line>')),
      );
    } finally {
      await real.stop();
    }
  });

  it('redis-cli monitor prints each command other clients run, then stops when killed', async () => {
    const cli = spawn('stdbuf', ['-oL', 'redis-cli', '-p', String(port()), 'monitor'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    let errors = '';
    cli.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString('latin1');
    });
    cli.stderr.on('data', (chunk: Buffer) => {
      errors += chunk.toString();
    });
    const exited = new Promise((resolve) => cli.once('exit', resolve));
    const other = new RawClient(port());
    let address = '';
    try {
      for (let i = 0; i < 200 && !output.startsWith('OK\n'); i++) await new Promise((resolve) => setTimeout(resolve, 20));
      expect(output, errors).toMatch(/^OK\n/);
      await other.send(['SET mon:key "hello world"', 'AUTH secret', 'GET mon:key']);
      address = `127.0.0.1:${other.socket.localPort}`;
      for (let i = 0; i < 200 && !output.includes('"GET" "mon:key"'); i++) await new Promise((resolve) => setTimeout(resolve, 20));
    } finally {
      other.close();
      cli.kill('SIGTERM');
      await exited;
    }
    const lines = output.split('\n').filter((line) => line !== '' && line !== 'OK');
    expect(lines.map((line) => line.replace(/^\d{10}\.\d{6} /, ''))).toEqual([
      `[0 ${address}] "SET" "mon:key" "\\"hello" "world\\""`,
      `[0 ${address}] "AUTH" "(redacted)"`,
      `[0 ${address}] "GET" "mon:key"`,
    ]);
  });
});

describe("what Redis's own test suite needs, as redis-server 7.0.15", () => {
  beforeAll(async () => {
    if (!existsSync(REDIS_SERVER)) throw new Error(`${REDIS_SERVER} not found: apt-get install redis-server (bash .ci/run does)`);
    [real, mini] = await Promise.all([startRedisServer(), startMiniRedis()]);
  });

  afterAll(async () => {
    await Promise.all([real?.stop(), mini?.stop()]);
  });

  it("the harness's set-up: SELECT 9, FUNCTION FLUSH and LIST, CONFIG GET/SET of what it saves and restores", async () => {
    await compare([
      'SELECT 9',
      'FUNCTION FLUSH',
      'FUNCTION FLUSH ASYNC',
      'FUNCTION FLUSH sync',
      'FUNCTION FLUSH bad',
      'FUNCTION FLUSH a b',
      'FUNCTION LIST',
      'FUNCTION DELETE nolib',
      'FUNCTION KILL',
      'FUNCTION HELP',
      'FUNCTION nope',
      'FUNCTION',
      'CONFIG GET save',
      ['CONFIG', 'SET', 'save', ''],
      'CONFIG GET appendonly',
      'CONFIG SET appendonly no',
      'CONFIG GET zset-max-ziplist-entries',
      'CONFIG SET zset-max-ziplist-entries 16',
      'CONFIG GET zset-max-ziplist-entries',
      'CONFIG GET zset-max-listpack-entries',
      'CONFIG SET zset-max-ziplist-entries 128',
      'CONFIG SET hash-max-listpack-value abc',
      'CONFIG SET hash-max-listpack-value 1kb',
      'CONFIG GET hash-max-listpack-value',
      'CONFIG SET hash-max-listpack-value 64',
      'CONFIG SET set-max-intset-entries -1',
      'CONFIG GET set-max-intset-entries',
      'CONFIG GET hash-max-ziplist-entries',
      'CONFIG GET list-max-ziplist-size',
      'CONFIG SET daemonize yes',
      'CONFIG GET daemonize',
      'CONFIG GET replicaof',
      'CONFIG GET slaveof',
      'CONFIG SET protected-mode yes',
      'CONFIG SET proto-max-bulk-len 536870912',
    ]);
  });

  it('OBJECT ENCODING: the encoding Redis picks, kept once a write took a value past the limits; REFCOUNT, FREQ, HELP, errors', async () => {
    const long = 'x'.repeat(65);
    await compare([
      'SET s 123',
      'OBJECT ENCODING s',
      'OBJECT REFCOUNT s',
      'SET s -9223372036854775808',
      'OBJECT ENCODING s',
      'SET s 0123',
      'OBJECT ENCODING s',
      'SET s abc',
      'OBJECT ENCODING s',
      'OBJECT REFCOUNT s',
      `SET s ${'y'.repeat(44)}`,
      'OBJECT ENCODING s',
      `SET s ${'y'.repeat(45)}`,
      'OBJECT ENCODING s',
      'SET a abc',
      'APPEND a def',
      'OBJECT ENCODING a',
      'RPUSH l a b c',
      'OBJECT ENCODING l',
      'HSET h f v',
      'OBJECT ENCODING h',
      `HSET h f2 ${long}`,
      'OBJECT ENCODING h',
      'HDEL h f2',
      'OBJECT ENCODING h',
      'CONFIG SET hash-max-listpack-entries 2',
      'HSET h2 a 1 b 2',
      'OBJECT ENCODING h2',
      'HSET h2 c 3',
      'OBJECT ENCODING h2',
      'CONFIG SET hash-max-listpack-entries 512',
      'SADD set 1 2 3',
      'OBJECT ENCODING set',
      'SADD set x',
      'OBJECT ENCODING set',
      'SREM set x',
      'OBJECT ENCODING set',
      'ZADD z 1 a',
      'OBJECT ENCODING z',
      `ZADD z 2 ${long}`,
      'OBJECT ENCODING z',
      `ZREM z ${long}`,
      'OBJECT ENCODING z',
      'OBJECT ENCODING missing',
      'OBJECT REFCOUNT missing',
      'OBJECT IDLETIME set',
      'OBJECT FREQ set',
      'OBJECT ENCODING',
      'OBJECT nope k',
      'OBJECT HELP',
    ]);
  });

  it('WATCH: FLUSHALL and FLUSHDB abort a transaction watching a key that existed, not one watching a missing key', async () => {
    await compare([
      'SET x 30',
      'WATCH x',
      'FLUSHALL',
      'MULTI',
      'PING',
      'EXEC',
      'DEL x',
      'WATCH x',
      'FLUSHALL',
      'MULTI',
      'PING',
      'EXEC',
      'SET x 30',
      'WATCH x',
      'FLUSHDB',
      'MULTI',
      'PING',
      'EXEC',
      'WATCH x',
      'FLUSHDB',
      'MULTI',
      'PING',
      'EXEC',
      'SELECT 1',
      'SET y 1',
      'SELECT 0',
      'WATCH y',
      'SELECT 1',
      'FLUSHDB',
      'SELECT 0',
      'MULTI',
      'PING',
      'EXEC',
    ]);
  });

  it('sets: SPOP, SMOVE, SMISMEMBER, SINTER/SUNION/SDIFF (+STORE), SINTERCARD, SSCAN — replies and errors', async () => {
    await compare([
      'SADD s a',
      'SPOP s',
      'EXISTS s',
      'SPOP s',
      'SPOP s 0',
      'SPOP s 3',
      'SADD s a',
      'SPOP s 5',
      'SPOP s -1',
      'SPOP s x',
      'SPOP s 1 2',
      'SADD a 1 2 3',
      'SADD b 3 4',
      'SET str x',
      'SMOVE a b 1',
      'SMOVE a b 3',
      'SMOVE a b nope',
      'SMOVE missing str x',
      'SMOVE str a x',
      'SMOVE a str 2',
      'SMOVE a a 2',
      'SMOVE a c 2',
      'EXISTS a',
      'SMISMEMBER b 1 3 9',
      'SMISMEMBER missing x',
      'SMISMEMBER str x',
      'SINTER b c',
      'SINTER b missing',
      'SINTER missing str',
      'SUNION missing c',
      'SDIFF c b',
      'SDIFF c missing',
      'SUNION c str',
      'SINTERSTORE dst b c',
      'SINTERSTORE dst b missing',
      'EXISTS dst',
      'SUNIONSTORE dst c',
      'SMEMBERS dst',
      'SDIFFSTORE dst c c',
      'EXISTS dst',
      'SINTERCARD 2 b c',
      'SINTERCARD 1 b LIMIT 1',
      'SINTERCARD 0 b',
      'SINTERCARD 3 b c',
      'SINTERCARD 1 b LIMIT -1',
      'SINTERCARD 1 b FOO 1',
      'SINTERCARD 1 str',
      'SSCAN c 0',
      'SSCAN missing 0',
      'SSCAN c 0 COUNT 0',
      'SSCAN c x',
      'SSCAN str 0',
    ]);
  });

  it('strings and keys: GETEX, MSETNX, GETRANGE/SUBSTR, SETRANGE, GETBIT/SETBIT, LCS, COPY, MOVE, SWAPDB, EXPIRETIME, TOUCH', async () => {
    await compare([
      'SET k hello',
      'GETEX k',
      'GETEX k EX 100',
      'TTL k',
      'GETEX k PERSIST',
      'TTL k',
      'GETEX k PX 0',
      'GETEX k EX 10 PX 10',
      'GETEX k PERSIST EX 10',
      'GETEX k FOO',
      'GETEX missing EX 10',
      'GETEX k EXAT 1',
      'EXISTS k',
      'MSETNX a 1 b 2',
      'MSETNX a 1 c 3',
      'MSETNX a',
      'EXISTS c',
      'SET s "Hello World"',
      'GETRANGE s 0 4',
      'GETRANGE s -3 -1',
      'GETRANGE s 5 1',
      'GETRANGE s -1 -5',
      'GETRANGE s 0 -100',
      'GETRANGE s 0 9223372036854775807',
      'SUBSTR s 1 2',
      'GETRANGE missing 0 1',
      'GETRANGE s x 1',
      'SETRANGE s 6 Redis',
      'GET s',
      'SETRANGE fresh 3 ab',
      'GET fresh',
      ['SETRANGE', 'nothing', '3', ''],
      'EXISTS nothing',
      'SETRANGE s -1 x',
      'SETRANGE s 536870911 xx',
      'SET n 1234',
      'SETRANGE n 1 5',
      'OBJECT ENCODING n',
      'SETBIT bits 7 1',
      'SETBIT bits 7 0',
      'SETBIT bits 100 1',
      'GETBIT bits 100',
      'GETBIT bits 99',
      'GETBIT bits 100000',
      'STRLEN bits',
      'SETBIT bits -1 1',
      'SETBIT bits 4294967296 1',
      'SETBIT bits 1 2',
      'GETBIT missing 0',
      'SET x1 ohmytext',
      'SET x2 mynewtext',
      'LCS x1 x2',
      'LCS x1 x2 LEN',
      'LCS x1 x2 IDX',
      'LCS x1 x2 IDX MINMATCHLEN 4 WITHMATCHLEN',
      'LCS x1 x2 IDX LEN',
      'LCS x1 missing',
      'LCS x1 x2 FOO',
      'RPUSH list a',
      'LCS x1 list',
      'COPY x1 y1',
      'COPY x1 y1',
      'COPY x1 y1 REPLACE',
      'COPY x1 x1',
      'COPY x1 z DB 1',
      'COPY x1 z DB 99',
      'COPY x1 z DB x',
      'COPY x1 z FOO',
      'COPY missing z',
      'MOVE y1 2',
      'MOVE y1 2',
      'MOVE x1 0',
      'MOVE x1 99',
      'MOVE x1 abc',
      'SET t v PX 100000',
      'PEXPIRETIME missing',
      'EXPIRETIME x2',
      'TOUCH x2 t missing',
      'SWAPDB 0 2',
      'GET y1',
      'SWAPDB 0 2',
      'SWAPDB 0 x',
      'SWAPDB x 0',
      'SWAPDB 0 99',
      'SELECT 3',
      'RANDOMKEY',
      'SET only 1',
      'RANDOMKEY',
      'SELECT 0',
    ]);
  });

  it('hashes: HINCRBYFLOAT, HSTRLEN, HRANDFIELD, HSCAN, MEMORY USAGE of a missing key — replies and errors', async () => {
    for (const resp3 of [false, true]) {
      await compare(
        [
          'HINCRBYFLOAT h f 1.5',
          'HINCRBYFLOAT h f 10e3',
          'HINCRBYFLOAT h f -0.5',
          'HINCRBYFLOAT h f abc',
          'HINCRBYFLOAT h f inf',
          'HSET h s text',
          'HINCRBYFLOAT h s 1',
          'HINCRBYFLOAT fresh f 1',
          'SET str x',
          'HINCRBYFLOAT str f 1',
          'HSTRLEN h s',
          'HSTRLEN h nope',
          'HSTRLEN missing f',
          'HSTRLEN str f',
          'HSET one f v',
          'HRANDFIELD one',
          'HRANDFIELD one 1',
          'HRANDFIELD one 5 WITHVALUES',
          'HRANDFIELD one -3',
          'HRANDFIELD one -2 WITHVALUES',
          'HRANDFIELD one 0',
          'HRANDFIELD missing',
          'HRANDFIELD missing 3',
          'HRANDFIELD one 1 FOO',
          'HRANDFIELD one x',
          'HRANDFIELD one -9223372036854775808',
          'HRANDFIELD str',
          'HSCAN one 0',
          'HSCAN one 0 MATCH f*',
          'HSCAN one 0 MATCH x*',
          'HSCAN missing 0',
          'HSCAN one 0 COUNT 0',
          'HSCAN str 0',
          'MEMORY USAGE missing',
          'MEMORY USAGE one SAMPLES x',
          'MEMORY nope',
          'MEMORY USAGE',
          'MEMORY HELP x',
        ],
        { resp3 },
      );
    }
  });

  it('lists: LPUSHX/RPUSHX, LINSERT, LREM, LSET, LTRIM, LPOS, LMOVE, RPOPLPUSH, LMPOP — replies and errors', async () => {
    await compare([
      'LPUSHX l a',
      'RPUSH l a b c a b c a',
      'LPUSHX l z',
      'RPUSHX l y',
      'LINSERT l BEFORE b B',
      'LINSERT l AFTER y Y',
      'LINSERT l AFTER nope x',
      'LINSERT l MIDDLE a x',
      'LINSERT missing BEFORE a x',
      'LRANGE l 0 -1',
      'LREM l 1 a',
      'LREM l -1 c',
      'LREM l 0 b',
      'LREM l x a',
      'LRANGE l 0 -1',
      'LSET l 0 first',
      'LSET l -1 last',
      'LSET l 100 x',
      'LSET missing 0 x',
      'LPOS l a',
      'LPOS l a RANK -1',
      'LPOS l a COUNT 0',
      'LPOS l a RANK 2 COUNT 1',
      'LPOS l a MAXLEN 1',
      'LPOS l nope',
      'LPOS l nope COUNT 2',
      'LPOS missing a',
      'LPOS missing a COUNT 1',
      'LPOS l a RANK 0',
      'LPOS l a COUNT -1',
      'LPOS l a MAXLEN -1',
      'LPOS l a FOO 1',
      'LTRIM l 1 -2',
      'LRANGE l 0 -1',
      'LTRIM l 5 1',
      'EXISTS l',
      'RPUSH src 1 2 3',
      'LMOVE src dst LEFT RIGHT',
      'LMOVE src dst RIGHT LEFT',
      'LMOVE src src LEFT RIGHT',
      'LRANGE src 0 -1',
      'LMOVE src dst UP LEFT',
      'LMOVE missing dst LEFT LEFT',
      'SET str x',
      'LMOVE src str LEFT LEFT',
      'LMOVE missing str LEFT LEFT',
      'RPOPLPUSH src dst',
      'EXISTS src',
      'LRANGE dst 0 -1',
      'LMPOP 2 missing dst LEFT',
      'LMPOP 1 dst RIGHT COUNT 10',
      'LMPOP 1 dst RIGHT',
      'LMPOP 0 dst LEFT',
      'LMPOP 2 dst LEFT',
      'LMPOP 1 dst MIDDLE',
      'LMPOP 1 dst LEFT COUNT 0',
      'LMPOP 1 dst LEFT COUNT 1 COUNT 1',
      'LMPOP 1 str LEFT',
    ]);
  });

  it('BLMOVE, BRPOPLPUSH, BLMPOP block until a push, WRONGTYPE when the destination changed type, timeouts', async () => {
    await compareSessions(3, [
      { on: 0, send: ['BLMOVE src dst RIGHT LEFT 0'], replies: 0, blocked: 1 },
      { on: 2, send: ['RPUSH src a b'] },
      { on: 0, replies: 1 },
      { on: 2, send: ['LRANGE src 0 -1', 'LRANGE dst 0 -1'] },
      { on: 0, send: ['BRPOPLPUSH empty target 0'], replies: 0, blocked: 1 },
      { on: 1, send: ['BLMPOP 0 2 e1 empty LEFT COUNT 5'], replies: 0, blocked: 2 },
      { on: 2, send: ['SET target nolist', 'RPUSH empty x y'] },
      { on: 0, replies: 1 },
      { on: 1, replies: 1 },
      { on: 2, send: ['EXISTS empty'] },
      { on: 0, send: ['BLMOVE none dst LEFT LEFT 0.02', 'BRPOPLPUSH none dst 0.02', 'BLMPOP 0.02 1 none LEFT', 'PING'] },
      { on: 0, send: ['MULTI', 'BLMOVE none dst LEFT LEFT 0', 'BLMPOP 0 1 none RIGHT', 'EXEC'] },
      { on: 0, send: ['BLMOVE a b LEFT LEFT -1', 'BLMPOP x 1 a LEFT', 'BLMOVE a b UP LEFT 0'] },
    ]);
  });

  it('maxmemory: past it, commands that may use memory get -OOM, MULTI queues nothing, reads and DEL go on', async () => {
    await compare([
      'SET k v',
      'MULTI',
      'GET k',
      'CONFIG SET maxmemory 1',
      'EXEC',
      'CONFIG GET maxmemory',
      'SET k v',
      'LPUSH l a',
      'INCR n',
      'GET k',
      'MULTI',
      'GET k',
      'SET k w',
      'EXEC',
      'MULTI',
      'DISCARD',
      'DEL k',
      'CONFIG SET maxmemory 1kb',
      'CONFIG SET maxmemory 0',
      'SET k v',
      'CONFIG SET maxmemory abc',
      'CONFIG SET maxmemory-policy noeviction',
    ]);
  });

  it('keyspace notifications: notify-keyspace-events classes, keyspace and keyevent channels, new and expired keys', async () => {
    await compareSessions(2, [
      { on: 1, send: ['CONFIG SET notify-keyspace-events KEA', 'CONFIG GET notify-keyspace-events'] },
      { on: 0, send: ['PSUBSCRIBE __key*'] },
      { on: 1, send: ['SET foo bar', 'EXPIRE foo 100', 'DEL foo', 'LPUSH l a', 'RPUSH l b', 'RPOP l', 'LPOP l'] },
      { on: 0, replies: 16 },
      { on: 1, send: ['SADD s a b', 'SREM s a', 'ZADD z 1 a', 'ZINCRBY z 1 a', 'ZREM z a', 'HSET h f 1', 'HINCRBY h f 1', 'HDEL h f'] },
      { on: 0, replies: 20 },
      { on: 1, send: ['INCR n', 'APPEND n 1', 'SETRANGE n 0 2', 'RENAME n m', 'PERSIST m', 'GETDEL m', 'SET t v EX 100'] },
      { on: 0, replies: 16 },
      {
        on: 1,
        send: ['CONFIG SET notify-keyspace-events En', 'CONFIG GET notify-keyspace-events', 'SET fresh 1', 'SET fresh 2', 'SADD fresh2 a'],
      },
      { on: 0, replies: 2 },
      { on: 1, send: ['CONFIG SET notify-keyspace-events Ex', 'SET gone v PX 1'] },
      { on: 0, replies: 1 },
      {
        on: 1,
        send: ['CONFIG SET notify-keyspace-events gKE', 'CONFIG GET notify-keyspace-events', 'CONFIG SET notify-keyspace-events KA'],
      },
      { on: 1, send: ['CONFIG GET notify-keyspace-events', 'CONFIG SET notify-keyspace-events EAn', 'CONFIG GET notify-keyspace-events'] },
      { on: 1, send: ['CONFIG SET notify-keyspace-events Q', ['CONFIG', 'SET', 'notify-keyspace-events', '']] },
    ]);
  });

  it('SORT and SORT_RO: numbers, ALPHA, DESC, LIMIT, BY and GET patterns (keys and hash fields), STORE, errors', async () => {
    await compare([
      'RPUSH l 3 1 2 10',
      'SORT l',
      'SORT l DESC',
      'SORT l ALPHA',
      'SORT l LIMIT 1 2',
      'SORT l LIMIT -5 2',
      'SORT l LIMIT 10 2',
      'SORT l LIMIT 0 -1',
      'SORT l LIMIT 1 x',
      'MSET w_1 40 w_2 30 w_3 20 w_10 10 name_1 one name_3 three',
      'HSET h_1 f b',
      'HSET h_2 f a',
      'SORT l BY w_*',
      'SORT l BY w_* DESC GET # GET name_*',
      'SORT l BY nosort',
      'SORT l BY nosort DESC LIMIT 0 2',
      'SORT l BY h_*->f ALPHA',
      'SORT l BY missing_* GET h_*->f',
      'SORT l GET nostar',
      'SORT l STORE dst',
      'LRANGE dst 0 -1',
      'SORT l BY w_* GET name_* STORE dst',
      'LRANGE dst 0 -1',
      'SORT empty STORE dst',
      'EXISTS dst',
      'SADD s 5 4 x',
      'SORT s',
      'SORT s ALPHA',
      'SORT s BY nosort STORE dst',
      'LRANGE dst 0 -1',
      'ZADD z 3 c 1 a 2 b',
      'SORT z BY nosort',
      'SORT z BY nosort DESC LIMIT 1 5',
      'SORT z ALPHA DESC',
      'SORT_RO l LIMIT 0 2',
      'SORT_RO l STORE dst',
      'SET str x',
      'SORT str',
      'SORT l FOO',
      'SORT l LIMIT 1',
    ]);
  });

  it('chained blocking moves: a circular BRPOPLPUSH settles, a self-referential one keeps the element, SORT STORE serves BLPOP', async () => {
    await compareSessions(3, [
      { on: 0, send: ['BRPOPLPUSH list1 list2 0'], replies: 0, blocked: 1 },
      { on: 1, send: ['BRPOPLPUSH list2 list1 0'], replies: 0, blocked: 2 },
      { on: 2, send: ['RPUSH list1 foo'] },
      { on: 0, replies: 1 },
      { on: 1, replies: 1 },
      { on: 2, send: ['LRANGE list1 0 -1', 'LRANGE list2 0 -1'] },
      { on: 0, send: ['BRPOPLPUSH self self 0'], replies: 0, blocked: 1 },
      { on: 2, send: ['RPUSH self bar'] },
      { on: 0, replies: 1 },
      { on: 2, send: ['LRANGE self 0 -1', 'RPUSH src b a'] },
      { on: 0, send: ['BLPOP sorted 0'], replies: 0, blocked: 1 },
      { on: 2, send: ['SORT src ALPHA STORE sorted'] },
      { on: 0, replies: 1 },
      { on: 2, send: ['LRANGE sorted 0 -1'] },
    ]);
  });

  it('glob patterns nest at most 1000 runs of * (KEYS, SCAN MATCH), as Redis since CVE-2024-31228', async () => {
    const key = 'a'.repeat(1100);
    await compare([
      ['SET', key, '1'],
      ['KEYS', `${'a*'.repeat(1000)}a`],
      ['KEYS', `${'a*'.repeat(1001)}a`],
      ['KEYS', `${'a**'.repeat(1001)}a`],
      ['KEYS', `${'a\\*'.repeat(1001)}*`],
      ['SCAN', '0', 'MATCH', `${'*?'.repeat(1001)}`, 'COUNT', '100'],
      ['SCAN', '0', 'MATCH', `${'*?'.repeat(1000)}`, 'COUNT', '100'],
    ]);
  });

  it('lists as ring buffers: pushes and pops at both ends wrap around, indexes, LSET, LTRIM and LRANGE stay right', async () => {
    const script: CommandLine[] = [];
    for (let round = 0; round < 40; round++) {
      script.push(`LPUSH q ${Array.from({ length: 7 + (round % 5) }, (_, i) => `l${round}.${i}`).join(' ')}`);
      script.push(`RPUSH q ${Array.from({ length: 3 + (round % 7) }, (_, i) => `r${round}.${i}`).join(' ')}`);
      script.push(`LPOP q ${1 + (round % 4)}`, `RPOP q ${round % 3}`, 'RPOP q', 'LPOP q');
      script.push(`LINDEX q ${round % 9}`, `LINDEX q -${1 + (round % 6)}`, `LSET q ${round % 5} set${round}`, 'LLEN q');
      if (round % 10 === 9) script.push('LTRIM q 2 -3', 'LRANGE q 0 -1');
    }
    script.push('LRANGE q 5 25', 'LRANGE q -30 -10', 'LPOS q set39', 'LREM q 0 set38', 'LINSERT q BEFORE set39 ins', 'LRANGE q 0 -1');
    await compare(script);
  });
});
