import { describe, expect, it } from 'vitest';
import { prng } from '../../../test/support/prng.js';
import { hash, murmurHash64A } from '../src/hyperloglog.js';
import {
  type CommandLine,
  differential,
  notifications,
  parseReply,
  RawClient,
  redisAndMiniForFile,
  replicationStream,
  show,
  until,
} from './support.js';

// PFADD, PFCOUNT, PFMERGE and PFDEBUG against a real redis-server 7.0.15 over real sockets: the
// same scripts on both, the replies compared byte for byte, and the HLL's bytes themselves (GET)
// after every step that writes one: the sparse encoding's opcodes, the promotion to dense, the
// cached cardinality in the header, the estimate up to 100k elements, merges, errors on corrupted
// values, and values made by one server used by the other.

const servers = redisAndMiniForFile();
const { run, same, sameOnBoth } = differential(servers);
const random = prng;

/** A bulk reply's payload. */
const bulk = (reply: Buffer): Buffer => {
  const eol = reply.indexOf('\r\n');
  return reply.subarray(eol + 2, eol + 2 + Number(reply.toString('latin1', 1, eol)));
};

// ---- Elements with a chosen hash --------------------------------------------------------------
// MurmurHash64A is invertible (odd multiplications modulo 2^64, xor-shifts by 47): an 8-byte
// element can be made to land in any register with any run length, e.g. the 33 that a sparse VAL
// opcode cannot hold, or the maximum 51.

const MASK = (1n << 64n) - 1n;
const M = 0xc6a4a7935bd1e995n;
const M_INVERSE = (() => {
  let inverse = M;
  for (let i = 0; i < 6; i++) inverse = (inverse * (2n - ((M * inverse) & MASK))) & MASK;
  return inverse;
})();
const unshift47 = (x: bigint): bigint => x ^ (x >> 47n);

/** Reference MurmurHash64A (seed 0xadc83b19) in BigInt arithmetic, as hyperloglog.c writes it. */
function referenceHash(key: Buffer): bigint {
  let h = (0xadc83b19n ^ (BigInt(key.length) * M)) & MASK;
  const blocks = key.length - (key.length & 7);
  for (let i = 0; i < blocks; i += 8) {
    let k = (key.readBigUInt64LE(i) * M) & MASK;
    k = (unshift47(k) * M) & MASK;
    h = ((h ^ k) * M) & MASK;
  }
  const rest = key.length & 7;
  if (rest > 0) {
    for (let j = rest - 1; j >= 0; j--) h ^= BigInt(key[blocks + j] as number) << BigInt(8 * j);
    h = (h * M) & MASK;
  }
  return unshift47((unshift47(h) * M) & MASK);
}

/** An 8-byte element that PFADD puts in register `index` with run length `count` (1–51). */
function elementFor(index: number, count: number): Buffer {
  const target = BigInt(index) | (count <= 50 ? 1n << BigInt(13 + count) : 0n);
  const h1 = unshift47((unshift47(target) * M_INVERSE) & MASK); // before the finalization
  const h0 = (0xadc83b19n ^ (8n * M)) & MASK;
  const mixed = ((h1 * M_INVERSE) & MASK) ^ h0; // h1 = (h0 ^ mix(k)) * m
  const k = (unshift47((mixed * M_INVERSE) & MASK) * M_INVERSE) & MASK; // mix(k) = ((k*m) ^ >>47) * m
  const element = Buffer.alloc(8);
  element.writeBigUInt64LE(k);
  expect(referenceHash(element)).toBe(target);
  return element;
}

/** A dense HLL's bytes with the given registers, its cached cardinality marked stale. */
function denseValue(register: (i: number) => number): Buffer {
  const value = Buffer.alloc(16 + 12288);
  value.write('HYLL');
  value[15] = 0x80;
  for (let i = 0; i < 16384; i++) {
    const bit = i * 6;
    const byte = 16 + (bit >> 3);
    const shifted = register(i) << (bit & 7);
    value[byte] = (value[byte] as number) | (shifted & 0xff);
    if (shifted > 0xff) value[byte + 1] = (value[byte + 1] as number) | (shifted >> 8);
  }
  return value;
}

/** A sparse HLL's bytes: the header (stale cache unless `card`), then the opcodes. */
function sparseValue(opcodes: readonly number[], card?: bigint): Buffer {
  const header = Buffer.alloc(16);
  header.write('HYLL');
  header[4] = 1;
  if (card === undefined) header[15] = 0x80;
  else header.writeBigUInt64LE(card, 8);
  return Buffer.concat([header, Buffer.from(opcodes)]);
}

const elements = (prefix: string, from: number, to: number): string[] =>
  Array.from({ length: to - from }, (_, i) => `${prefix}${from + i}`);

describe('MurmurHash64A', () => {
  it('matches a BigInt transcription of hyperloglog.c for every length 0–40 and random bytes', () => {
    const next = random(7);
    for (let i = 0; i < 5000; i++) {
      const key = Buffer.from(Array.from({ length: i % 41 }, () => Math.floor(next() * 256)));
      murmurHash64A(key);
      expect(((BigInt(hash.hi) << 32n) | BigInt(hash.lo)).toString(16)).toBe(referenceHash(key).toString(16));
    }
  });
});

describe('PFADD and PFCOUNT, byte for byte as redis-server 7.0.15', () => {
  it('creates a sparse HLL, answers 1 or 0, invalidates and caches the cardinality in the header', async () => {
    const replies = await same([
      'PFADD hll',
      'EXISTS hll',
      'GET hll',
      'PFCOUNT hll',
      'GET hll',
      'PFADD hll a b c',
      'GETRANGE hll 15 15',
      'PFCOUNT hll',
      'GETRANGE hll 15 15',
      'PFADD hll a b c',
      'GETRANGE hll 15 15',
      'PFADD hll 1 2 3',
      'GETRANGE hll 15 15',
      ['PFADD', 'hll', ''],
      'GET hll',
      'PFDEBUG ENCODING hll',
      'PFDEBUG DECODE hll',
      'TYPE hll',
      'OBJECT ENCODING hll',
      'STRLEN hll',
      'PFCOUNT hll',
      'PFCOUNT hll',
      'PFCOUNT nosuchkey',
      'EXISTS nosuchkey',
    ]);
    // What Redis answered (so that the comparison above compared something meaningful).
    expect(show(replies[2] as Buffer)).toBe('$18⏎HYLL\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80\x7f\xff⏎');
    expect(replies.slice(5, 13).map(show)).toEqual([':1⏎', '$1⏎\x80⏎', ':3⏎', '$1⏎\x00⏎', ':0⏎', '$1⏎\x00⏎', ':1⏎', '$1⏎\x80⏎']);
    expect(show(replies[20] as Buffer)).toBe(':7⏎');
  });

  it('keeps the key TTL, counts changes and signals WATCH only when the value changes', async () => {
    const kept = await same(['PFADD hll a b c', 'EXPIRE hll 1000', 'PFADD hll d e', 'PFCOUNT hll', 'TTL hll']);
    expect(show(kept[4] as Buffer)).toBe(':1000⏎');
    // rdb_changes_since_last_save is server.dirty: PFADD adds one per register raised.
    // Its growth over the script (no SAVE: mini-redis without DATA_DIR would write its dump.rdb here).
    const dirtyAfter = async (port: number, commands: CommandLine[]): Promise<number> => {
      const client = new RawClient(port);
      const changes = async (): Promise<number> => {
        const [info] = await client.send(['INFO persistence']);
        return Number(/rdb_changes_since_last_save:(\d+)/.exec((info as Buffer).toString())?.[1]);
      };
      try {
        await client.send(['FLUSHALL']);
        const before = await changes();
        await client.send(commands);
        return (await changes()) - before;
      } finally {
        client.close();
      }
    };
    const script: CommandLine[] = ['PFADD h a b c d e f g', 'PFADD h a b', 'PFCOUNT h', 'PFCOUNT h', 'PFMERGE m h', 'PFCOUNT h m'];
    const [theirs, ours] = [await dirtyAfter(servers.redis.port, script), await dirtyAfter(servers.mini.port, script)];
    expect(ours).toBe(theirs);
    expect(theirs).toBe(8 + 1 + 1); // 8 registers raised (creation counts one), one cache write, one merge

    // WATCH: a PFCOUNT that writes the cache aborts the transaction; a cached one does not.
    const watched = await same([
      'PFADD h a b c',
      'WATCH h',
      'PFCOUNT h',
      'MULTI',
      'PING',
      'EXEC',
      'WATCH h',
      'PFCOUNT h',
      'PFADD h a',
      'MULTI',
      'PING',
      'EXEC',
    ]);
    expect(watched.map(show).slice(5)).toEqual(['*-1⏎', '+OK⏎', ':3⏎', ':0⏎', '+OK⏎', '+QUEUED⏎', '*1⏎+PONG⏎']);
  });

  it('grows the sparse encoding one element at a time until it turns dense past hll-sparse-max-bytes', async () => {
    const script: CommandLine[] = [];
    const gets: number[] = [];
    for (let i = 0; i < 2200; i++) {
      script.push(['PFADD', 'hll', `element:${i}`]);
      // Every value while sparse (Redis turns it dense near 1800 elements here), then a few.
      if (i < 1900 || i % 50 === 0) gets.push(script.push('GET hll') - 1);
    }
    script.push('PFDEBUG ENCODING hll', 'PFCOUNT hll', 'STRLEN hll');
    const replies = await same(script);
    const lengths = gets.map((i) => bulk(replies[i] as Buffer).length);
    // Redis's own replies: sparse up to 3000 bytes, then the 12304 bytes of the dense encoding.
    expect(lengths.filter((length) => length > 18 && length <= 3000).length).toBeGreaterThan(1500);
    expect(lengths.filter((length) => length > 3000 && length !== 12304)).toEqual([]);
    expect(lengths.at(-1)).toBe(12304);
    expect(show(replies.at(-3) as Buffer)).toBe('+dense⏎');
  });

  it('CONFIG SET hll-sparse-max-bytes moves the promotion, with Redis checks and texts', async () => {
    try {
      const script: CommandLine[] = ['CONFIG GET hll-sparse-max-bytes', 'CONFIG SET hll-sparse-max-bytes 100', 'CONFIG GET hll*'];
      for (let i = 0; i < 40; i++) script.push(['PFADD', 'hll', `e${i}`], 'PFDEBUG ENCODING hll', 'STRLEN hll');
      script.push(
        'PFADD small a',
        'CONFIG SET hll-sparse-max-bytes 1kb',
        'CONFIG GET hll-sparse-max-bytes',
        'CONFIG SET hll-sparse-max-bytes -1',
        'CONFIG SET hll-sparse-max-bytes abc',
        'CONFIG SET hll-sparse-max-bytes 0',
        'PFADD zero a b c',
        'PFDEBUG ENCODING zero',
        'STRLEN zero',
        'CONFIG SET hll-sparse-max-bytes 3000',
      );
      const replies = await same(script);
      expect(show(replies[0] as Buffer)).toBe('*2⏎$20⏎hll-sparse-max-bytes⏎$4⏎3000⏎');
      expect(replies.map(show)).toContain('+dense⏎');
      expect(replies.map(show)).toContain('+sparse⏎');
    } finally {
      await Promise.all([servers.redis.port, servers.mini.port].map((port) => run(port, ['CONFIG SET hll-sparse-max-bytes 3000'])));
    }
  });

  it('estimates up to 100k elements as Redis does, caching each count', async () => {
    const script: CommandLine[] = [];
    for (let n = 0; n < 100_000; n += 2500) {
      script.push(['PFADD', 'hll', ...elements('item-', n, n + 2500)], 'PFCOUNT hll', 'GETRANGE hll 0 15');
      if (n % 25_000 === 0) script.push('GET hll');
    }
    script.push('PFCOUNT hll', 'GET hll', ['PFADD', 'hll', ...elements('item-', 0, 1000)], 'GET hll');
    const replies = await same(script);
    const counts = replies.filter((reply) => reply[0] === 0x3a && reply.length > 5).map((reply) => Number(reply.toString().slice(1)));
    // Redis's estimate stays within 2% of the truth here.
    expect(Math.abs((counts.at(-1) as number) - 100_000)).toBeLessThan(2000);
  });

  it('a run longer than 32 promotes a sparse HLL to dense; the longest run is 51', async () => {
    const long = elementFor(1000, 33);
    const longest = elementFor(16383, 51);
    const replies = await same([
      ['PFADD', 'hll', elementFor(1000, 5), elementFor(1001, 5), elementFor(0, 32)],
      'GET hll',
      'PFDEBUG ENCODING hll',
      ['PFADD', 'hll', long],
      'PFDEBUG ENCODING hll',
      'GET hll',
      ['PFADD', 'hll', long],
      ['PFADD', 'hll', longest],
      'GETRANGE hll 12300 12303',
      'PFCOUNT hll',
      ['PFADD', 'other', longest],
      'PFDEBUG ENCODING other',
      'PFDEBUG GETREG other',
    ]);
    expect(replies.slice(2, 7).map(show)).toEqual(['+sparse⏎', ':1⏎', '+dense⏎', expect.any(String), ':0⏎']);
    const registers = parseReply(replies.at(-1) as Buffer) as number[];
    expect(registers[16383]).toBe(51);
    expect(registers.filter((value) => value !== 0)).toEqual([51]);
  });
});

describe('PFMERGE and PFCOUNT of several keys', () => {
  it('merges sparse into sparse (Redis 7.0 keeps it sparse), sparse with dense into dense, the destination included', async () => {
    const replies = await same([
      'PFADD a{t} a b c',
      'PFADD b{t} b c d',
      'PFADD c{t} c d e',
      'PFMERGE m{t} a{t} b{t} c{t}',
      'PFDEBUG ENCODING m{t}',
      'GET m{t}',
      'PFCOUNT m{t}',
      'GET m{t}',
      'PFCOUNT a{t} b{t} c{t} missing{t}',
      'GET a{t}',
      ['PFADD', 'd{t}', ...elements('dense-', 0, 5000)],
      'PFDEBUG ENCODING d{t}',
      'PFMERGE m{t} d{t}',
      'PFDEBUG ENCODING m{t}',
      'GET m{t}',
      'PFCOUNT m{t}',
      'PFCOUNT a{t} d{t}',
      'PFMERGE m{t}',
      'GET m{t}',
      'PFMERGE new{t}',
      'GET new{t}',
      'PFMERGE new2{t} missing{t}',
      'GET new2{t}',
      ['PFADD', 'big{t}', ...elements('x', 0, 400)],
      'PFMERGE big{t} a{t} b{t}',
      'GET big{t}',
      'PFMERGE sum{t} big{t} a{t}',
      'GET sum{t}',
      'PFCOUNT sum{t} d{t} a{t}',
    ]);
    expect(show(replies[3] as Buffer)).toBe('+OK⏎');
    expect(show(replies[4] as Buffer)).toBe('+sparse⏎');
    expect(show(replies[6] as Buffer)).toBe(':5⏎');
    expect(show(replies[13] as Buffer)).toBe('+dense⏎');
  });

  it('PFMERGE promotes a sparse destination that grows past hll-sparse-max-bytes while it is written', async () => {
    const script: CommandLine[] = [];
    for (let i = 0; i < 8; i++) script.push(['PFADD', `s${i}{t}`, ...elements(`k${i}-`, 0, 300)]);
    script.push('PFMERGE dest{t} s0{t} s1{t}', 'GET dest{t}', 'PFDEBUG ENCODING dest{t}');
    script.push('PFMERGE dest{t} s2{t} s3{t} s4{t} s5{t} s6{t} s7{t}', 'GET dest{t}', 'PFDEBUG ENCODING dest{t}', 'PFCOUNT dest{t}');
    const replies = await same(script);
    expect(show(replies[10] as Buffer)).toBe('+sparse⏎');
    expect(show(replies[13] as Buffer)).toBe('+dense⏎');
  });
});

describe('errors, as Redis', () => {
  it('wrong types, strings that are not HLLs, corrupted HLLs, arity', async () => {
    const replies = await same([
      'RPUSH list{t} a',
      'SET str{t} bar',
      'SET int{t} 12345678901234567890',
      'PFADD list{t} a',
      'PFCOUNT list{t}',
      'PFADD str{t} a',
      'PFCOUNT str{t}',
      'PFCOUNT int{t}',
      'PFMERGE dst{t} str{t}',
      'PFMERGE str{t} missing{t}',
      'PFMERGE list{t} missing{t}',
      'EXISTS dst{t}',
      'PFCOUNT missing{t} list{t}',
      ['SET', 'short{t}', 'HYLL'],
      'PFCOUNT short{t}',
      ['SET', 'header{t}', Buffer.concat([Buffer.from('HYLL'), Buffer.alloc(12)])],
      'PFCOUNT header{t}',
      'PFADD header{t} a',
      // A dense header with the wrong length, an unknown encoding.
      'PFADD h{t} a b c',
      ['SETRANGE', 'h{t}', '4', Buffer.from([0])],
      'PFCOUNT h{t}',
      ['SETRANGE', 'h{t}', '4', Buffer.from([2])],
      'PFADD h{t} x',
      ['SETRANGE', 'h{t}', '0', '0123'],
      'PFCOUNT h{t}',
      // Sparse opcodes that do not cover 16384 registers.
      'PFADD t{t} a b c',
      'APPEND t{t} hello',
      'PFCOUNT t{t}',
      'PFCOUNT t{t} missing{t}',
      'PFMERGE x{t} t{t}',
      'EXISTS x{t}',
      'PFADD t{t} a',
      // The first key that fails decides: a corrupted one before a wrong type.
      'PFCOUNT t{t} list{t}',
      'PFCOUNT list{t} t{t}',
      'PFMERGE x{t} t{t} list{t}',
      'PFADD',
      'PFCOUNT',
      'PFMERGE',
      'PFDEBUG ENCODING',
      'PFDEBUG ENCODING missing{t}',
      'PFDEBUG NOPE t{t}',
      'PFDEBUG NOPE str{t}',
      'PFADD d{t} a',
      'PFDEBUG TODENSE d{t}',
      'PFDEBUG DECODE d{t}',
      'PFDEBUG TODENSE d{t}',
      'PFDEBUG TODENSE t{t}',
      'PFDEBUG GETREG t{t}',
    ]);
    const shown = replies.map(show);
    expect(shown[3]).toBe('-WRONGTYPE Operation against a key holding the wrong kind of value⏎');
    expect(shown[5]).toBe('-WRONGTYPE Key is not a valid HyperLogLog string value.⏎');
    expect(shown[8]).toBe('-WRONGTYPE Key is not a valid HyperLogLog string value.⏎');
    expect(shown[9]).toBe('-WRONGTYPE Key is not a valid HyperLogLog string value.⏎'); // the destination is read first
    expect([shown[14], shown[16], shown[20], shown[22], shown[24]]).toEqual(
      Array(5).fill('-WRONGTYPE Key is not a valid HyperLogLog string value.⏎'),
    );
    expect(shown.slice(27, 32)).toEqual([
      '-INVALIDOBJ Corrupted HLL object detected⏎',
      '-INVALIDOBJ Corrupted HLL object detected⏎',
      '-INVALIDOBJ Corrupted HLL object detected⏎',
      ':0⏎',
      ':0⏎', // `a` is already counted in a register the opcodes reach
    ]);
    expect(shown[32]).toBe('-INVALIDOBJ Corrupted HLL object detected⏎');
    expect(shown[33]).toBe('-WRONGTYPE Operation against a key holding the wrong kind of value⏎');
    expect(shown[35]).toBe("-ERR wrong number of arguments for 'pfadd' command⏎");
  });

  it('sparse values whose opcodes are short of 16384 registers: PFADD keeps what it added before failing', async () => {
    // XZERO:1000 VAL:3,1 XZERO:8000: 9001 registers.
    const short = sparseValue([0x43, 0xe7, 0x88, 0x5f, 0x3f]);
    const replies = await same([
      ['SET', 'hll', short],
      ['PFADD', 'hll', elementFor(500, 2)],
      'GET hll',
      ['PFADD', 'hll', elementFor(10, 4), elementFor(12000, 1)],
      'GET hll',
      ['PFADD', 'hll', elementFor(1000, 1)],
      'PFCOUNT hll',
      // A cached cardinality is answered as it is, whatever the registers.
      ['SET', 'cached', sparseValue([0x43, 0xe7], 42n)],
      'PFCOUNT cached',
      ['PFADD', 'cached', elementFor(20, 1)],
      'GET cached',
      ['SET', 'huge', sparseValue([0x7f, 0xff], (1n << 63n) - 1n)],
      'PFCOUNT huge',
      ['SET', 'empty', sparseValue([], 7n)],
      'PFCOUNT empty',
      ['PFADD', 'empty', 'a'],
      ['SET', 'empty2', sparseValue([])],
      'PFCOUNT empty2',
    ]);
    expect(show(replies[1] as Buffer)).toBe(':1⏎'); // register 500 is among the 9001
    expect(show(replies[3] as Buffer)).toBe('-INVALIDOBJ Corrupted HLL object detected⏎');
    expect(bulk(replies[4] as Buffer).equals(short)).toBe(false); // register 10 was raised before the failure
    expect(show(replies[8] as Buffer)).toBe(':42⏎');
    expect(show(replies[12] as Buffer)).toBe(':9223372036854775807⏎');
  });

  it('a VAL opcode past register 16383 is a corruption (the CVE-2025-32023 fix in the Debian 7.0.15)', async () => {
    // XZERO:16384 then VAL:1,1: 16385 registers. PFCOUNT of the key alone counts them all and
    // fails; merging and the conversion to dense fail at the VAL.
    const value = sparseValue([0x7f, 0xff, 0x80]);
    const replies = await same([
      ['SET', 'hll', value],
      'PFCOUNT hll',
      'PFCOUNT hll missing',
      'PFMERGE dest hll',
      'PFDEBUG TODENSE hll',
      ['PFADD', 'hll', elementFor(5, 3)],
      'GET hll',
      ['PFADD', 'hll', elementFor(5, 40)],
      'GET hll',
    ]);
    expect(replies.slice(1, 5).map(show)).toEqual(Array(4).fill('-INVALIDOBJ Corrupted HLL object detected⏎'));
    expect(show(replies[5] as Buffer)).toBe(':1⏎'); // register 5 is reached before the excess
    expect(show(replies[7] as Buffer)).toBe('-INVALIDOBJ Corrupted HLL object detected⏎'); // no promotion
  });

  it('an estimate past 2^63 is LLONG_MIN, and stays uncached, as on x86-64 Redis', async () => {
    const replies = await same([
      ['SET', 'max', denseValue(() => 63)],
      'PFCOUNT max',
      'GETRANGE max 8 15',
      ['SET', 'fifty', denseValue(() => 50)],
      'PFCOUNT fifty',
      ['SET', 'ones', denseValue((i) => (i % 3 === 0 ? 1 : i % 3))],
      'PFCOUNT ones',
      'GETRANGE ones 8 15',
      'PFCOUNT ones fifty',
      'PFCOUNT ones max',
    ]);
    expect(show(replies[1] as Buffer)).toBe(':-9223372036854775808⏎');
  });

  it('randomly corrupted sparse and dense values: every reply and every byte as Redis', async () => {
    const next = random(2024);
    const script: CommandLine[] = [];
    for (let round = 0; round < 150; round++) {
      const count = Math.floor(next() * (round % 5 === 0 ? 4000 : 600));
      script.push('DEL hll m', ['PFADD', 'hll', ...elements(`r${round}-`, 0, count)]);
      for (let i = 0; i < 5; i++) {
        // A byte in the registers mostly; the header sometimes.
        const position = next() < 0.1 ? Math.floor(next() * 16) : 16 + Math.floor(next() * (count < 300 ? count * 2 : 1000));
        script.push(['SETRANGE', 'hll', String(position), Buffer.from([Math.floor(next() * 256)])]);
        if (next() < 0.5) break;
      }
      script.push('PFCOUNT hll', 'GET hll', ['PFADD', 'hll', ...elements(`more${round}-`, 0, 20)], 'GET hll', 'PFMERGE m hll', 'GET m');
    }
    const replies = await same(script);
    expect(replies.map(show)).toContain('-INVALIDOBJ Corrupted HLL object detected⏎');
  });

  it('random opcode sequences (some short or long of 16384 registers), elements in chosen registers, small sparse limits', async () => {
    const next = random(99);
    const below = (n: number): number => Math.floor(next() * n);
    const script: CommandLine[] = [];
    for (let round = 0; round < 80; round++) {
      const opcodes: number[] = [];
      const target = 16384 + (next() < 0.7 ? 0 : below(5) - 2);
      for (let total = 0; total < target; ) {
        const kind = next();
        const left = target - total;
        const n = Math.min(kind < 0.3 ? 1 + below(4) : kind < 0.6 ? 1 + below(64) : 1 + below(next() < 0.5 ? 300 : 16384), left);
        if (kind < 0.3) opcodes.push(0x80 | (below(32) << 2) | (n - 1));
        else if (kind < 0.6) opcodes.push(n - 1);
        else opcodes.push(0x40 | ((n - 1) >> 8), (n - 1) & 0xff);
        total += n;
      }
      if (next() < 0.1) opcodes.pop();
      const value = sparseValue(opcodes);
      script.push('DEL k d e', ['CONFIG', 'SET', 'hll-sparse-max-bytes', String([3000, 3000, 200, 50, 25][below(5)])]);
      script.push(['SET', 'k', value], 'PFCOUNT k');
      for (let i = 0; i < 6; i++) {
        const added = Array.from({ length: 1 + below(3) }, () => elementFor(below(16384), 1 + below(next() < 0.1 ? 51 : 6)));
        script.push(['PFADD', 'k', ...added], 'GET k');
      }
      script.push('PFCOUNT k', 'PFCOUNT k nokey', ['SET', 'd', value], ['PFADD', 'e', elementFor(below(16384), 3)]);
      script.push('PFMERGE e k', 'GET e', 'PFMERGE d k', 'GET d', 'PFDEBUG TODENSE k', 'GET k');
    }
    script.push('CONFIG SET hll-sparse-max-bytes 3000');
    const replies = await same(script);
    const shown = replies.map(show);
    expect(shown).toContain('-INVALIDOBJ Corrupted HLL object detected⏎');
    expect(shown.filter((reply) => reply === ':1⏎').length).toBeGreaterThan(300);
  });

  it('a corrupted value ending in half an XZERO: the byte Redis reads past the end follows the value', async () => {
    // XZERO:255 then a lone XZERO byte: with the 0 after it, 16129 more registers (16384 in all).
    // Raising register 300 splits that last opcode into ZERO VAL XZERO, whose last byte Redis writes
    // past the string's end (over its terminator), where the next command still reads it.
    const replies = await same([
      ['SET', 'hll', sparseValue([0x40, 0xfe, 0x7f])],
      'PFCOUNT hll',
      ['PFADD', 'hll', elementFor(300, 3)],
      'GET hll',
      'RENAME hll moved',
      'COPY moved copy',
      'PFCOUNT moved',
      'PFCOUNT copy',
      ['PFADD', 'moved', elementFor(10000, 2)],
      'GET moved',
      'PFDEBUG DECODE moved',
      'PFCOUNT moved',
    ]);
    expect(replies.slice(6, 8).map(show)).toEqual([':1⏎', '-INVALIDOBJ Corrupted HLL object detected⏎']);
  });
});

describe('values made by one server, used by the other', () => {
  const build: CommandLine[] = [
    ['PFADD', 'sparse', ...elements('s', 0, 300)],
    'PFCOUNT sparse',
    ['PFADD', 'dense', ...elements('d', 0, 20_000)],
  ];
  const use: CommandLine[] = [
    'PFCOUNT sparse',
    'PFCOUNT dense',
    ['PFADD', 'sparse', ...elements('t', 0, 50)],
    ['PFADD', 'dense', ...elements('t', 0, 50)],
    'PFCOUNT sparse',
    'PFCOUNT dense',
    'PFCOUNT sparse dense',
    'PFMERGE sparse dense',
    'GET sparse',
    'GET dense',
  ];

  for (const [from, to] of [
    ['redis', 'mini'],
    ['mini', 'redis'],
  ] as const) {
    it(`GET on ${from}, SET on ${to}: the same bytes and counts as staying on ${from}`, async () => {
      const source = new RawClient(servers[from].port);
      const target = new RawClient(servers[to].port);
      try {
        await Promise.all([source.send(['FLUSHALL']), target.send(['FLUSHALL'])]);
        await source.send(build);
        const values = await source.send(['GET sparse', 'GET dense', 'DUMP dense']);
        await target.send([
          ['SET', 'sparse', bulk(values[0] as Buffer)],
          ['SET', 'dense', bulk(values[1] as Buffer)],
        ]);
        const [there, here] = [(await source.send(use)).map(show), (await target.send(use)).map(show)];
        expect(here).toEqual(there);
        // A DUMP payload of one restores on the other.
        const restored = await target.send([['RESTORE', 'restored', '0', bulk(values[2] as Buffer)], 'PFCOUNT restored', 'GET restored']);
        expect(show(restored[0] as Buffer)).toBe('+OK⏎');
        expect(bulk(restored[2] as Buffer).length).toBe(12304);
      } finally {
        source.close();
        target.close();
      }
    });
  }

  it('DUMP of an HLL: the same payload as Redis, and OBJECT ENCODING raw once a PF command had it', async () => {
    const replies = await same([
      ['PFADD', 'hll', ...elements('z', 0, 100)],
      'DUMP hll',
      'OBJECT ENCODING hll',
      ['SET', 'copy', sparseValue([0x7f, 0xff])],
      'OBJECT ENCODING copy',
      'PFCOUNT copy',
      'OBJECT ENCODING copy',
    ]);
    expect(replies.slice(4).map(show)).toEqual(['$6⏎embstr⏎', ':0⏎', '$3⏎raw⏎']);
  });
});

describe('replication and keyspace notifications', () => {
  it('replays PFADD and PFMERGE when they change the value, and a PFCOUNT that cached a count', async () => {
    const stream = await sameOnBoth(async (port) => {
      const client = new RawClient(port);
      await client.send([['CONFIG', 'SET', 'repl-ping-replica-period', '3600'], 'FLUSHALL']);
      const stream = await replicationStream(port);
      try {
        await client.send([
          'PFADD h a b c',
          'PFADD h a',
          'PFCOUNT h',
          'PFCOUNT h',
          'PFCOUNT h missing',
          'PFMERGE m h',
          'MULTI',
          'PFADD h d',
          'PFCOUNT h',
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
      'PFADD h a b c',
      'PFCOUNT h',
      'PFMERGE m h',
      'MULTI',
      'PFADD h d',
      'PFCOUNT h',
      'EXEC',
      'SET sentinel done',
    ]);
  });

  it('notifies `pfadd` for PFADD and PFMERGE that wrote, nothing for PFCOUNT', async () => {
    const transcript = await sameOnBoth((port) =>
      notifications(port, 'E$', 'SUBSCRIBE __keyevent@0__:pfadd', ['PFADD h a', 'PFADD h a', 'PFCOUNT h', 'PFMERGE m h', 'PFADD h b'], 3),
    );
    expect(transcript).toEqual([
      '*3⏎$7⏎message⏎$20⏎__keyevent@0__:pfadd⏎$1⏎h⏎',
      '*3⏎$7⏎message⏎$20⏎__keyevent@0__:pfadd⏎$1⏎m⏎',
      '*3⏎$7⏎message⏎$20⏎__keyevent@0__:pfadd⏎$1⏎h⏎',
    ]);
  });
});

describe('CLIENT PAUSE WRITE', () => {
  it('holds PFCOUNT (it may cache its count: a write) until the pause ends, then caches its count', async () => {
    const observed = await sameOnBoth(async (port) => {
      const pauser = new RawClient(port);
      const reader = new RawClient(port);
      try {
        await pauser.send(['FLUSHALL', 'PFADD h a b c', 'CLIENT PAUSE 60000 WRITE']);
        let answered = false;
        const held = reader.send(['PFCOUNT h']).then((replies) => {
          answered = true;
          return replies;
        });
        await new Promise((resolve) => setTimeout(resolve, 300));
        const answeredWhilePaused = answered;
        // A read that writes nothing is not held.
        const meanwhile = await pauser.send(['GETRANGE h 15 15']);
        await pauser.send(['CLIENT UNPAUSE']);
        const count = await held;
        const after = await pauser.send(['GETRANGE h 15 15']);
        return [String(answeredWhilePaused), ...[...meanwhile, ...count, ...after].map(show)];
      } finally {
        await pauser.send(['CLIENT UNPAUSE']);
        pauser.close();
        reader.close();
      }
    });
    // On both: not answered while paused, the stale cache flag (0x80) during the pause, 3, cached after.
    expect(observed).toEqual(['false', '$1⏎\x80⏎', ':3⏎', '$1⏎\x00⏎']);
  });
});

describe('PFSELFTEST', () => {
  it('passes (register access, and dense and sparse agreeing on 10 million elements)', async () => {
    const client = new RawClient(servers.mini.port);
    try {
      expect((await client.send(['PFSELFTEST'])).map(show)).toEqual(['+OK⏎']);
    } finally {
      client.close();
    }
  }, 60_000);
});
