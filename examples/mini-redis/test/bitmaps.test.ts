import { describe, expect, it } from 'vitest';
import { prng } from '../../../test/support/prng.js';
import {
  type CommandLine,
  differential,
  keyspaceMessage,
  notifications,
  RawClient,
  redisAndMiniForFile,
  replicationStream,
  show,
  until,
} from './support.js';

// BITCOUNT, BITPOS, BITOP, BITFIELD and BITFIELD_RO against a real redis-server 7.0.15 over real
// sockets: the same scripts on both, the replies compared byte for byte, GET after the writes (the
// bytes themselves), the errors and the order in which arguments are checked, keyspace
// notifications, WATCH, and what replicas are sent. Cases from Redis's tests/unit/bitops.tcl and
// bitfield.tcl, and random ones from a seeded generator.

const servers = redisAndMiniForFile();
const { same, sameOnBoth } = differential(servers);
const random = prng;

const bytes = (...values: number[]): Buffer => Buffer.from(values);

describe('BITCOUNT', () => {
  it('whole strings, BYTE and BIT ranges, negative and out-of-range indexes', async () => {
    const script: CommandLine[] = [
      ['SET', 's', bytes(0xff, 0xf0, 0x00, 0x0f, 0xaa, 0x55, 0x01, 0x80)],
      'BITCOUNT s',
      'BITCOUNT missing',
      'SET foobar foobar',
      'BITCOUNT foobar',
      ['SET', 'empty', ''],
      'BITCOUNT empty',
      'BITCOUNT empty 0 -1',
      'BITCOUNT empty 0 -1 BIT',
    ];
    for (const [start, end] of [
      [0, 0],
      [1, 1],
      [0, -1],
      [-1, -1],
      [-2, -1],
      [-100, 100],
      [5, 2],
      [-1, -5],
      [3, 100],
      [100, 200],
      [-100, -50],
      [0, -100],
      [7, 7],
      [0, 63],
      [1, 62],
      [5, 30],
      [63, 63],
      [64, 64],
      [-9, -3],
    ]) {
      script.push(`BITCOUNT s ${start} ${end}`, `BITCOUNT s ${start} ${end} BYTE`, `BITCOUNT s ${start} ${end} BIT`);
      script.push(`BITCOUNT foobar ${start} ${end} bit`, `BITCOUNT foobar ${start} ${end} byte`);
    }
    script.push(
      'BITCOUNT s -9223372036854775808 9223372036854775807',
      'BITCOUNT s -9223372036854775808 9223372036854775807 BIT',
      'BITCOUNT s 9223372036854775807 -9223372036854775808 BIT',
      'BITCOUNT s 0 -9223372036854775808',
      'SET n 12345',
      'BITCOUNT n',
      'BITCOUNT n 1 2 BIT',
    );
    await same(script);
  });

  it('errors in Redis order: WRONGTYPE, then syntax and integers; a missing key answers 0 whatever follows', async () => {
    await same([
      'SET s abc',
      'LPUSH list a',
      'BITCOUNT list',
      'BITCOUNT list 0 1 BIT',
      'BITCOUNT list x',
      'BITCOUNT missing x',
      'BITCOUNT missing 0 1 nonsense',
      'BITCOUNT missing a b c d e',
      'BITCOUNT s 0',
      'BITCOUNT s 0 1 BIT extra',
      'BITCOUNT s 0 1 BITS',
      'BITCOUNT s 0 1 ""',
      'BITCOUNT s a 1',
      'BITCOUNT s 0 b',
      'BITCOUNT s 0 1.5',
      'BITCOUNT s 0 9223372036854775808',
      // Both negative and start past end: 0 before the unit is even read.
      'BITCOUNT s -1 -2 nonsense',
      'BITCOUNT s -2 -1 nonsense',
      'BITCOUNT s a b nonsense',
      'BITCOUNT',
    ]);
  });

  it('random strings and ranges, as Redis', async () => {
    const next = random(7);
    const script: CommandLine[] = [];
    for (let k = 0; k < 20; k++) {
      const value = Buffer.from(Array.from({ length: Math.floor(next() * 40) }, () => Math.floor(next() * 256)));
      script.push(['SET', 'r', value], 'BITCOUNT r');
      for (let i = 0; i < 15; i++) {
        const span = value.length * (i % 2 === 0 ? 8 : 1) + 4;
        const start = Math.floor(next() * 2 * span) - span;
        const end = Math.floor(next() * 2 * span) - span;
        script.push(`BITCOUNT r ${start} ${end} ${i % 2 === 0 ? 'BIT' : 'BYTE'}`, `BITCOUNT r ${start} ${end}`);
      }
    }
    await same(script);
  });
});

describe('BITPOS', () => {
  it('the first 1 or 0, with and without START and END, in BYTE and BIT units (bitops.tcl cases)', async () => {
    const script: CommandLine[] = [
      'BITPOS missing 1',
      'BITPOS missing 0',
      'BITPOS missing 0 5 10 BIT',
      'BITPOS missing 1 nonsense',
      ['SET', 'ones', bytes(0xff, 0xff, 0xff)],
      'BITPOS ones 0',
      'BITPOS ones 0 0',
      'BITPOS ones 0 0 -1',
      'BITPOS ones 0 0 -1 BIT',
      'BITPOS ones 0 1 BIT',
      'BITPOS ones 0 8 BIT',
      'BITPOS ones 1',
      ['SET', 'zeros', bytes(0, 0, 0)],
      'BITPOS zeros 1',
      'BITPOS zeros 0',
      'BITPOS zeros 1 1',
      'BITPOS zeros 0 1',
      'BITPOS zeros 0 1 1',
      'BITPOS zeros 1 7 15 BIT',
      ['SET', 'empty', ''],
      'BITPOS empty 0',
      'BITPOS empty 1',
      'BITPOS empty 0 0',
      'BITPOS empty 0 0 -1 BIT',
      ['SET', 'str', bytes(0x00, 0xff, 0xf0)],
      'BITPOS str 1 0',
      'BITPOS str 1 2',
      'BITPOS str 1 3',
      'BITPOS str 0 2',
      'BITPOS str 0 2 -1',
      'BITPOS str 0 2 -1 BYTE',
      'BITPOS str 0 2 2',
      'BITPOS str 1 7 15 BIT',
      'BITPOS str 1 7 -3 BIT',
      'BITPOS str 0 8 15 BIT',
      'BITPOS str 0 8 BIT',
      'BITPOS str 0 9 12 BIT',
      'BITPOS str 0 19 BIT',
      'BITPOS str 0 20 BIT',
      'BITPOS str 0 20 23 BIT',
      'BITPOS str 0 8 11 BIT',
      'BITPOS str 1 -4 -1 BIT',
      'BITPOS str 1 -5 -5 BIT',
      'BITPOS str 0 100 BIT',
      'BITPOS str 0 -100 BIT',
      'BITPOS str 1 -100 -1',
      'BITPOS str 1 5 2',
      'BITPOS str 0 5 2 BIT',
      'BITPOS str 0 -9223372036854775808 9223372036854775807 BIT',
      'BITPOS str 1 9223372036854775807',
      'SET n 12345',
      'BITPOS n 1',
      'BITPOS n 0 2 BIT',
    ];
    await same(script);
  });

  it('errors: the bit first, then WRONGTYPE, then the unit (before END), then integers and syntax', async () => {
    await same([
      'SET s abc',
      'LPUSH list a',
      'BITPOS s 2',
      'BITPOS s -1',
      'BITPOS s x',
      'BITPOS missing 2',
      'BITPOS list 1',
      'BITPOS list 2',
      'BITPOS s 1 x',
      'BITPOS s 1 0 x',
      'BITPOS s 1 0 x BITS',
      'BITPOS s 1 0 1 BITS',
      'BITPOS s 1 0 1 bit extra',
      'BITPOS s 1 x 1 nonsense',
      'BITPOS s 1 0 1 byte',
      'BITPOS',
      'BITPOS s',
    ]);
  });

  it('random strings and ranges: every combination of bit, START, END and unit, as Redis', async () => {
    const next = random(11);
    const script: CommandLine[] = [];
    const pick = (values: number[]): number => values[Math.floor(next() * values.length)] as number;
    for (let k = 0; k < 20; k++) {
      const value = Buffer.from(Array.from({ length: Math.floor(next() * 24) }, () => pick([0, 0xff, 0x80, 0x01, 0x7f, 0xfe, 0x10, 0xef])));
      script.push(['SET', 'r', value], 'BITPOS r 0', 'BITPOS r 1');
      for (let i = 0; i < 20; i++) {
        const bits = i % 2 === 0;
        const span = value.length * (bits ? 8 : 1) + 3;
        const start = Math.floor(next() * 2 * span) - span;
        const end = Math.floor(next() * 2 * span) - span;
        for (const bit of [0, 1]) {
          script.push(
            `BITPOS r ${bit} ${start}`,
            `BITPOS r ${bit} ${start} ${end}`,
            `BITPOS r ${bit} ${start} ${end} ${bits ? 'BIT' : 'BYTE'}`,
          );
        }
      }
    }
    await same(script);
  });
});

describe('BITOP', () => {
  it('AND, OR, XOR and NOT of keys of different lengths, missing keys, the destination among the sources', async () => {
    await same([
      ['SET', 'a', bytes(0xff, 0x0f, 0xaa)],
      ['SET', 'b', bytes(0xf0, 0xff)],
      ['SET', 'c', bytes(0x3c)],
      'BITOP AND d a b c',
      'GET d',
      'BITOP AND d a b',
      'GET d',
      'BITOP OR d a b c',
      'GET d',
      'BITOP XOR d a b c',
      'GET d',
      'BITOP NOT d a',
      'GET d',
      'BITOP NOT d c',
      'GET d',
      'BITOP and d a missing',
      'GET d',
      'BITOP or d missing a',
      'GET d',
      'BITOP xor d a a',
      'GET d',
      'BITOP Xor d a',
      'GET d',
      'BITOP AND a a b',
      'GET a',
      'BITOP OR b b c',
      'GET b',
      'BITOP NOT c c',
      'GET c',
      ['SET', 'long', Buffer.alloc(100, 0x5a)],
      ['SET', 'mid', Buffer.alloc(37, 0xc3)],
      'BITOP AND d long mid',
      'GET d',
      'BITOP OR d long mid b',
      'GET d',
      'BITOP XOR d mid long',
      'GET d',
      'BITOP NOT d long',
      'GET d',
      'STRLEN d',
      'OBJECT ENCODING d',
      'SET n 12',
      'BITOP OR d n',
      'GET d',
      'OBJECT ENCODING d',
    ]);
  });

  it('an empty result deletes the destination (0), a result replaces any type and drops the TTL', async () => {
    await same([
      'SET dest x',
      ['SET', 'empty', ''],
      'BITOP AND dest missing1 missing2',
      'EXISTS dest',
      'SET dest x',
      'BITOP OR dest empty',
      'EXISTS dest',
      'BITOP NOT dest missing',
      'EXISTS dest',
      'BITOP XOR nothing missing',
      'EXISTS nothing',
      'RPUSH dest a b',
      'SET a abc',
      'BITOP OR dest a',
      'TYPE dest',
      'GET dest',
      'SET dest x EX 100',
      'BITOP AND dest a',
      'TTL dest',
      'GET dest',
    ]);
  });

  it('errors: the operation, NOT with more than one key, WRONGTYPE of a source (not of the destination), arity', async () => {
    await same([
      'SET a abc',
      'LPUSH list x',
      'BITOP NAND d a',
      'BITOP AN d a',
      'BITOP NOT d a a',
      'BITOP NOT d missing missing',
      'BITOP NOT d list a',
      'BITOP AND d a list',
      'BITOP OR d list',
      'EXISTS d',
      'BITOP AND list a',
      'TYPE list',
      'BITOP AND d',
      'BITOP',
    ]);
  });
});

describe('BITFIELD', () => {
  it('GET, SET and INCRBY of signed and unsigned fields, bit and #N offsets, the bytes after each write', async () => {
    await same([
      'BITFIELD bits SET u8 0 255',
      'GET bits',
      'BITFIELD bits GET u8 0 GET i8 0 GET u4 0 GET i4 4 GET u1 7 GET i1 7',
      'BITFIELD bits SET i8 0 -100 GET i8 0 GET u8 0',
      'GET bits',
      'BITFIELD bits SET u5 7 23',
      'GET bits',
      'BITFIELD bits SET u8 #1 42 SET u8 #3 7 GET u8 #1 GET u16 #1',
      'GET bits',
      'BITFIELD bits INCRBY u2 100 1 INCRBY i5 100 1 GET u4 100',
      'GET bits',
      'BITFIELD bits SET i16 #2 -1234 INCRBY i16 #2 100 GET i16 #2 GET u16 #2',
      'GET bits',
      'BITFIELD bits SET i32 3 -2147483648 GET i32 3 GET u32 3',
      'GET bits',
      'BITFIELD bits SET i64 5 -9223372036854775808 GET i64 5 GET u63 5 GET u63 6',
      'GET bits',
      'BITFIELD bits SET i64 0 9223372036854775807 GET i64 0 GET u63 1 GET u63 0',
      'GET bits',
      'BITFIELD bits SET u63 #2 9223372036854775807 GET u63 #2 GET i64 #2',
      'GET bits',
      'BITFIELD bits SET i50 13 -562949953421312 GET i50 13 GET u49 14 INCRBY u48 0 281474976710655',
      'GET bits',
      'BITFIELD bits GET u8 1000 GET i64 1000000',
      'BITFIELD missing GET u8 0 GET i64 123',
      'EXISTS missing',
      'BITFIELD missing',
      'BITFIELD bits',
      'BITFIELD bits get u8 0 set i8 0 1 incrby u8 0 2 overflow sat get u8 0',
      'GET bits',
      'SET n 12345',
      'BITFIELD n GET u8 0 INCRBY u8 0 1',
      'GET n',
      'OBJECT ENCODING n',
      'SET t abc EX 100',
      'BITFIELD t SET u8 0 65',
      'TTL t',
      'GET t',
    ]);
  });

  it('OVERFLOW WRAP, SAT and FAIL at the boundaries of u1…u63 and i1…i64 (bitfield.tcl cases)', async () => {
    const script: CommandLine[] = [];
    for (const bits of [1, 2, 7, 8, 15, 16, 31, 32, 33, 47, 48, 49, 52, 53, 62, 63, 64]) {
      const smax = 2n ** BigInt(bits - 1) - 1n;
      const smin = -(2n ** BigInt(bits - 1));
      const umax = 2n ** BigInt(bits) - 1n;
      for (const mode of ['WRAP', 'SAT', 'FAIL']) {
        const signed = [smin, smin + 1n, -1n, 0n, 1n, smax - 1n, smax];
        for (const value of signed) {
          for (const increment of [1n, -1n, 2n, -2n, smax, smin, 9223372036854775807n, -9223372036854775808n, 12345n]) {
            script.push(`BITFIELD k OVERFLOW ${mode} SET i${bits} 3 ${value} INCRBY i${bits} 3 ${increment} GET i${bits} 3`);
          }
        }
        for (const value of [smax + 1n, smin - 1n, 9223372036854775807n, -9223372036854775808n, 12345678901n]) {
          if (value > 9223372036854775807n || value < -9223372036854775808n) continue;
          script.push(`BITFIELD k OVERFLOW ${mode} SET i${bits} 3 ${value} GET i${bits} 3`);
        }
        if (bits === 64) continue;
        for (const value of [0n, 1n, umax - 1n, umax]) {
          if (value > 9223372036854775807n) continue;
          for (const increment of [
            1n,
            -1n,
            2n,
            -2n,
            umax > 9223372036854775807n ? 1n : umax,
            9223372036854775807n,
            -9223372036854775808n,
          ]) {
            script.push(`BITFIELD k OVERFLOW ${mode} SET u${bits} 5 ${value} INCRBY u${bits} 5 ${increment} GET u${bits} 5`);
          }
        }
        for (const value of [umax + 1n, -1n, -2n, 9223372036854775807n, -9223372036854775808n]) {
          if (value > 9223372036854775807n) continue;
          script.push(`BITFIELD k OVERFLOW ${mode} SET u${bits} 5 ${value} GET u${bits} 5`);
        }
      }
      script.push('GET k');
    }
    await same(script);
  });

  it('OVERFLOW applies to the operations after it; FAIL answers nil and writes nothing (but pads a new key)', async () => {
    await same([
      'BITFIELD k SET u8 0 250 INCRBY u8 0 10 OVERFLOW SAT INCRBY u8 0 100 OVERFLOW FAIL INCRBY u8 0 1 OVERFLOW WRAP INCRBY u8 0 1',
      'GET k',
      'BITFIELD k overflow fail incrby i8 8 200 overflow Sat incrby i8 8 200 OVERFLOW fail GET i8 8 INCRBY i8 8 -1',
      'GET k',
      'BITFIELD f OVERFLOW FAIL INCRBY u2 100 10 SET i4 0 100',
      'EXISTS f',
      'GET f',
      'STRLEN f',
      'BITFIELD k OVERFLOW FAIL SET u8 200 1000',
      'GET k',
      'STRLEN k',
    ]);
  });

  it('errors: each subcommand checked in order before any runs, Redis texts', async () => {
    await same([
      'SET s abc',
      'LPUSH list x',
      'BITFIELD s GET u64 0',
      'BITFIELD s GET i65 0',
      'BITFIELD s GET i0 0',
      'BITFIELD s GET u0 0',
      'BITFIELD s GET U8 0',
      'BITFIELD s GET I8 0',
      'BITFIELD s GET x8 0',
      'BITFIELD s GET i 0',
      'BITFIELD s GET i08 0',
      'BITFIELD s GET i-8 0',
      'BITFIELD s GET u8 -1',
      'BITFIELD s GET u8 4294967295',
      'BITFIELD s GET u8 4294967296',
      'BITFIELD s GET u8 #-1',
      'BITFIELD s GET u8 #536870911',
      'BITFIELD s GET u8 #536870912',
      'BITFIELD s GET i64 #9223372036854775807',
      'BITFIELD s GET i64 #2305843009213693952',
      'BITFIELD s GET i64 #4611686018427387904',
      'BITFIELD s GET u8 ##1',
      'BITFIELD s GET u8 #',
      'BITFIELD s GET u8 1.5',
      'BITFIELD s GET u8 x',
      'BITFIELD s SET u8 0 x',
      'BITFIELD s SET u8 0 9223372036854775808',
      'BITFIELD s INCRBY u8 0 1.0',
      'BITFIELD s GET u8',
      'BITFIELD s SET u8 0',
      'BITFIELD s INCRBY u8 0',
      'BITFIELD s OVERFLOW',
      'BITFIELD s OVERFLOW NOPE GET u8 0',
      'BITFIELD s FOO u8 0',
      'BITFIELD s SET u8 0 1 GET u64 0',
      'BITFIELD s SET u8 0 1 GET u8 0 FOO',
      'GET s',
      'BITFIELD list GET u8 0',
      'BITFIELD list SET u8 0 1',
      'BITFIELD list',
      'BITFIELD list GET u64 0',
      'BITFIELD',
    ]);
  });

  it('BITFIELD_RO: GET only, errors as BITFIELD, then the read-only one', async () => {
    await same([
      ['SET', 's', bytes(0x12, 0x34, 0x56)],
      'LPUSH list x',
      'BITFIELD_RO s GET u8 0 GET i12 4 GET u16 #1 GET i64 0',
      'BITFIELD_RO missing GET u8 0',
      'BITFIELD_RO s',
      'BITFIELD_RO s SET u8 0 1',
      'BITFIELD_RO s INCRBY u8 0 1',
      'BITFIELD_RO s GET u8 0 OVERFLOW SAT INCRBY u8 0 1',
      'BITFIELD_RO s SET u8 0 x',
      'BITFIELD_RO s SET u64 0 1',
      'BITFIELD_RO s OVERFLOW FAIL',
      'BITFIELD_RO list GET u8 0',
      'BITFIELD_RO list SET u8 0 1',
      'GET s',
      'BITFIELD_RO',
    ]);
  });

  it('random operations on random fields: the replies and the bytes as Redis', async () => {
    const next = random(3);
    const script: CommandLine[] = [];
    for (let k = 0; k < 40; k++) {
      const words: string[] = ['BITFIELD', 'r'];
      for (let n = 1 + Math.floor(next() * 6); n > 0; n--) {
        const signed = next() < 0.5;
        const bits = 1 + Math.floor(next() * (signed ? 64 : 63));
        const offset = next() < 0.2 ? `#${Math.floor(next() * 8)}` : String(Math.floor(next() * 200));
        const roll = next();
        const big = BigInt(Math.floor(next() * 2 ** 31)) * BigInt(Math.floor(next() * 2 ** 32)) * (next() < 0.5 ? -1n : 1n);
        const value = next() < 0.5 ? big : BigInt(Math.floor(next() * 600) - 300);
        const clamped = value > 9223372036854775807n ? 9223372036854775807n : value < -9223372036854775808n ? -9223372036854775808n : value;
        if (roll < 0.15) words.push('OVERFLOW', ['WRAP', 'SAT', 'FAIL'][Math.floor(next() * 3)] as string);
        else if (roll < 0.4) words.push('GET', `${signed ? 'i' : 'u'}${bits}`, offset);
        else if (roll < 0.7) words.push('SET', `${signed ? 'i' : 'u'}${bits}`, offset, String(clamped));
        else words.push('INCRBY', `${signed ? 'i' : 'u'}${bits}`, offset, String(clamped));
      }
      script.push(words, 'GET r');
    }
    await same(script);
  });

  it('WATCH: a BITFIELD that changes nothing leaves EXEC to run, one that does aborts it', async () => {
    await same([
      'BITFIELD w SET u8 0 7',
      'WATCH w',
      'BITFIELD w SET u8 0 7 GET u8 0',
      'BITFIELD w OVERFLOW FAIL INCRBY u8 0 300',
      'MULTI',
      'GET w',
      'EXEC',
      'WATCH w',
      'BITFIELD w INCRBY u8 0 1',
      'MULTI',
      'GET w',
      'EXEC',
      'WATCH w',
      'BITOP OR w w',
      'MULTI',
      'GET w',
      'EXEC',
    ]);
  });
});

describe('long strings, RESP3, maxmemory', () => {
  it('megabyte strings: runs of zeros and ones, BITOP of unequal lengths, counts and positions', async () => {
    await same([
      'SETBIT big 8000000 1',
      'STRLEN big',
      'BITPOS big 1',
      'BITPOS big 0',
      'BITPOS big 1 1000 -1',
      'BITPOS big 1 -1 -1 BIT',
      'BITCOUNT big',
      'BITCOUNT big 0 999999',
      'BITCOUNT big 7999999 8000000 BIT',
      'BITOP NOT ones big',
      'BITPOS ones 0',
      'BITPOS ones 1 999999',
      'BITPOS ones 0 0 -1 BIT',
      'BITCOUNT ones',
      'SETBIT small 12345 1',
      'BITOP AND and big ones small',
      'BITCOUNT and',
      'STRLEN and',
      'BITOP OR or big small',
      'BITCOUNT or',
      'BITOP XOR xor ones small big',
      'BITCOUNT xor',
      'BITPOS xor 1',
      'BITPOS xor 0',
      'BITFIELD big GET u8 999999 INCRBY i64 7999990 -1 GET u63 #0',
      'BITCOUNT big',
      'GET or',
      'BITFIELD or SET u8 4294967296 1',
      'BITFIELD or SET u8 #536870912 1',
      'STRLEN or',
    ]);
  });

  it('RESP3: nil for OVERFLOW FAIL, arrays and integers as Redis', async () => {
    const replies = await sameOnBoth(async (port) => {
      const client = new RawClient(port);
      try {
        await client.send(['FLUSHALL', 'HELLO 3']);
        return (
          await client.send([
            'BITFIELD k OVERFLOW FAIL SET u2 0 7 SET u2 0 3 INCRBY u2 0 1 GET i64 0',
            'BITFIELD_RO k GET u2 0',
            'BITCOUNT k',
            'BITPOS k 1',
            'BITOP NOT d k',
            'GET d',
          ])
        ).map(show);
      } finally {
        client.close();
      }
    });
    expect(replies[0]).toBe('*4⏎_⏎:0⏎_⏎:-4611686018427387904⏎');
  });

  it('past maxmemory, BITOP and BITFIELD (even GET only) get -OOM; BITFIELD_RO, BITCOUNT and BITPOS still answer', async () => {
    await same([
      'SET a abc',
      'CONFIG SET maxmemory-policy noeviction',
      'CONFIG SET maxmemory 1',
      'BITOP OR d a',
      'BITFIELD a GET u8 0',
      'BITFIELD a SET u8 0 1',
      'BITFIELD_RO a GET u8 0',
      'BITCOUNT a',
      'BITPOS a 1',
      'CONFIG SET maxmemory 0',
      'BITOP OR d a',
      'GET d',
    ]);
  });
});

describe('replication and keyspace notifications', () => {
  it('replays BITOP and BITFIELD as sent when they change something, nothing else', async () => {
    const stream = await sameOnBoth(async (port) => {
      const client = new RawClient(port);
      await client.send([['CONFIG', 'SET', 'repl-ping-replica-period', '3600'], 'FLUSHALL']);
      const stream = await replicationStream(port);
      try {
        await client.send([
          'SET a abc',
          'BITOP NOT d a',
          'BITOP AND d missing', // deletes d
          'BITOP OR nothing missing', // nothing to delete: not replayed
          'BITOP XOR bad a a a a',
          'BITOP NOT bad a a',
          'BITCOUNT a',
          'BITPOS a 1',
          'BITFIELD f SET u8 0 1',
          'BITFIELD f SET u8 0 1', // no change
          'BITFIELD f GET u8 0',
          'BITFIELD f OVERFLOW FAIL INCRBY u8 0 1000', // refused
          'BITFIELD g OVERFLOW FAIL INCRBY u8 0 1000', // refused, though g is created
          'BITFIELD f SET u8 8 0', // grows f
          'BITFIELD f INCRBY i8 0 5 GET u8 0',
          'BITFIELD_RO f GET u8 0',
          'MULTI',
          'BITFIELD f INCRBY u4 0 1',
          'BITOP OR d f a',
          'EXEC',
          'SET sentinel done',
        ]);
        await until(() => stream.commands.some((args) => args[1] === 'sentinel'), 'the sentinel replayed');
        return stream.commands.map((args) => args.join(' '));
      } finally {
        stream.close();
        client.close();
      }
    });
    expect(stream).toEqual([
      'SELECT 0',
      'SET a abc',
      'BITOP NOT d a',
      'BITOP AND d missing',
      'BITOP XOR bad a a a a',
      'BITFIELD f SET u8 0 1',
      'BITFIELD f SET u8 8 0',
      'BITFIELD f INCRBY i8 0 5 GET u8 0',
      'MULTI',
      'BITFIELD f INCRBY u4 0 1',
      'BITOP OR d f a',
      'EXEC',
      'SET sentinel done',
    ]);
  });

  it('notifies `set` for BITOP (`del` when it deletes), `setbit` for a BITFIELD that changed something', async () => {
    const transcript = await sameOnBoth((port) =>
      notifications(
        port,
        'KEA',
        'PSUBSCRIBE __keyspace@0__:*',
        [
          'SET a abc',
          'BITOP NOT d a',
          'BITOP AND d missing',
          'BITOP AND d missing',
          'BITFIELD f SET u8 0 1',
          'BITFIELD f SET u8 0 1',
          'BITFIELD f GET u8 0',
          'BITFIELD f OVERFLOW FAIL INCRBY u8 0 1000',
          'BITFIELD g OVERFLOW FAIL INCRBY u8 0 1000',
          'BITFIELD f INCRBY u8 0 1',
          'BITCOUNT f',
          'SET sentinel 1',
        ],
        6,
      ),
    );
    const event = keyspaceMessage;
    expect(transcript).toEqual([
      event('a', 'set'),
      event('d', 'set'),
      event('d', 'del'),
      event('f', 'setbit'),
      event('f', 'setbit'),
      event('sentinel', 'set'),
    ]);
  });
});
