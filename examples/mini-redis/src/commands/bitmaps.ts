import { type ReplyValue, type RespClient, RespError } from '@portbind/resp';
import type { MiniRedis } from '../app.js';
import { int64Arg, toInt64 } from '../numbers.js';
import { keyOf } from '../store.js';

// BITCOUNT, BITPOS, BITOP, BITFIELD and BITFIELD_RO as Redis 7.0's bitops.c answers them (GETBIT and
// SETBIT are in strings.ts): the same range rules (negative indexes, BYTE or BIT units, the order in
// which arguments are checked), the same errors, and the same writes: a changed value replaces the
// key's (a copy: a reply may still hold the old bytes), keeps its TTL (BITFIELD) or drops it (BITOP,
// as SET), touches WATCH and maxmemory's count (resp.touch), notifies and propagates only when Redis
// counts a change.

const group = 'bitmap';
const MAX_STRING = 512 * 1024 * 1024; // proto-max-bulk-len, in bytes
const SYNTAX = 'ERR syntax error';
const BIT_OFFSET = 'ERR bit offset is not an integer or out of range';
const BAD_TYPE = 'ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.';

/** Whether an argument is `word` (lower case), ASCII case-insensitively, as strcasecmp. */
const is = (arg: Buffer | undefined, word: string): boolean =>
  arg !== undefined && arg.length === word.length && arg.toString('latin1').toLowerCase() === word;

/** Set bits in each byte value. */
const POPCOUNT = Uint8Array.from({ length: 256 }, (_, byte) => {
  let n = 0;
  for (let b = byte; b !== 0; b >>= 1) n += b & 1;
  return n;
});

/** The bits `from`..`to` (0 = most significant) of a byte. */
const maskOf = (from: number, to: number): number => (0xff >> from) & (0xff << (7 - to)) & 0xff;

/** Set bits from bit `first` to bit `last` (inclusive, both within `data`). */
function countBits(data: Buffer, first: number, last: number): number {
  const firstByte = Math.floor(first / 8);
  const lastByte = Math.floor(last / 8);
  if (firstByte === lastByte) return POPCOUNT[(data[firstByte] as number) & maskOf(first % 8, last % 8)] as number;
  let count = POPCOUNT[(data[firstByte] as number) & maskOf(first % 8, 7)] as number;
  for (let i = firstByte + 1; i < lastByte; i++) count += POPCOUNT[data[i] as number] as number;
  return count + (POPCOUNT[(data[lastByte] as number) & maskOf(0, last % 8)] as number);
}

/** The first bit equal to `bit` from bit `first` to bit `last` (inclusive, within `data`), or -1. */
function findBit(data: Buffer, bit: 0 | 1, first: number, last: number): number {
  const skip = bit === 1 ? 0x00 : 0xff;
  const lastByte = Math.floor(last / 8);
  for (let i = Math.floor(first / 8); i <= lastByte; i++) {
    const byte = data[i] as number;
    const from = i * 8 < first ? first % 8 : 0;
    const to = i === lastByte ? last % 8 : 7;
    if (byte === skip && from === 0 && to === 7) continue;
    for (let b = from; b <= to; b++) if (((byte >> (7 - b)) & 1) === bit) return i * 8 + b;
  }
  return -1;
}

/**
 * A start/end pair (int64s) for a string of `total` units made an inclusive range as Redis does:
 * negative counts from the end, then clamped to the string. undefined: empty.
 */
function clampRange(start: bigint, end: bigint, total: bigint): [number, number] | undefined {
  let from = start < 0n ? start + total : start;
  let to = end < 0n ? end + total : end;
  if (from < 0n) from = 0n;
  if (to < 0n) to = 0n;
  if (to >= total) to = total - 1n;
  return from > to ? undefined : [Number(from), Number(to)];
}

/** BYTE or BIT (an absent unit is BYTE); anything else is a syntax error. */
function isBitUnit(arg: Buffer | undefined): boolean {
  if (arg === undefined || is(arg, 'byte')) return false;
  if (is(arg, 'bit')) return true;
  throw new RespError(SYNTAX);
}

// ---- BITFIELD ---------------------------------------------------------------------------------

const WRAP = 0;
const SAT = 1;
const FAIL = 2;
type Overflow = typeof WRAP | typeof SAT | typeof FAIL;

interface FieldOp {
  /** 0 GET, 1 SET, 2 INCRBY. */
  readonly kind: 0 | 1 | 2;
  readonly signed: boolean;
  readonly bits: number;
  /** In bits. */
  readonly offset: number;
  /** SET's value or INCRBY's increment. */
  readonly arg: bigint;
  readonly overflow: Overflow;
}

/** Fields up to this wide with arguments up to ±2^52 compute in doubles (exact below 2^53); others in BigInt. */
const NUMBER_BITS = 48;
const NUMBER_ARG = 2n ** 52n;

/** `bits` (≤ 48) bits from bit `offset`, as an unsigned number; bits past the end of `data` read as 0. */
function readBits(data: Buffer | undefined, offset: number, bits: number): number {
  let value = 0;
  for (let i = 0; i < bits; i++) {
    const at = offset + i;
    const byte = data?.[Math.floor(at / 8)] ?? 0;
    value = value * 2 + ((byte >> (7 - (at % 8))) & 1);
  }
  return value;
}

/** Write `value` (unsigned, < 2^bits, bits ≤ 48) in `bits` bits from bit `offset` (within `data`). */
function writeBits(data: Buffer, offset: number, bits: number, value: number): void {
  let rest = value;
  for (let i = bits - 1; i >= 0; i--) {
    const at = offset + i;
    const index = Math.floor(at / 8);
    const mask = 1 << (7 - (at % 8));
    const bit = rest % 2;
    rest = (rest - bit) / 2;
    data[index] = bit === 1 ? (data[index] as number) | mask : (data[index] as number) & ~mask;
  }
}

/** A field of any width (1–64) as an unsigned BigInt. */
function readBig(data: Buffer | undefined, offset: number, bits: number): bigint {
  if (bits <= 32) return BigInt(readBits(data, offset, bits));
  const high = readBits(data, offset, bits - 32);
  return (BigInt(high) << 32n) | BigInt(readBits(data, offset + bits - 32, 32));
}

function writeBig(data: Buffer, offset: number, bits: number, value: bigint): void {
  const unsigned = BigInt.asUintN(bits, value);
  if (bits <= 32) return writeBits(data, offset, bits, Number(unsigned));
  writeBits(data, offset, bits - 32, Number(unsigned >> 32n));
  writeBits(data, offset + bits - 32, 32, Number(unsigned & 0xffffffffn));
}

/** The field's value (signed or not) at `offset` of `data` (missing bytes are 0). */
function getField(data: Buffer | undefined, op: FieldOp): number | bigint {
  if (op.bits <= NUMBER_BITS) {
    const unsigned = readBits(data, op.offset, op.bits);
    const half = 2 ** (op.bits - 1);
    return op.signed && unsigned >= half ? unsigned - 2 * half : unsigned;
  }
  const unsigned = readBig(data, op.offset, op.bits);
  return op.signed ? BigInt.asIntN(op.bits, unsigned) : unsigned;
}

/**
 * SET or INCRBY on a field of `data`: the reply (SET: the old value; INCRBY: the new one; null when
 * OVERFLOW FAIL refused it), and whether the field changed. The arithmetic is exact (what the C
 * checks amount to): WRAP takes the result modulo 2^bits, SAT clamps it; SET of a negative value on
 * an unsigned field overflows upwards (C reads it as a uint64), so SAT stores the maximum.
 */
function writeField(data: Buffer, op: FieldOp): { reply: ReplyValue; changed: boolean } {
  const old = getField(data, op);
  if (op.bits <= NUMBER_BITS && op.arg <= NUMBER_ARG && op.arg >= -NUMBER_ARG) {
    const size = 2 ** op.bits;
    const min = op.signed ? -size / 2 : 0;
    const max = op.signed ? size / 2 - 1 : size - 1;
    const arg = Number(op.arg);
    const wanted = op.kind === 2 ? (old as number) + arg : arg;
    let value = wanted;
    if (wanted > max || wanted < min) {
      if (op.overflow === FAIL) return { reply: null, changed: false };
      if (op.overflow === SAT) value = wanted > max || (!op.signed && op.kind === 1) ? max : min;
      else {
        value = ((wanted % size) + size) % size;
        if (value > max) value -= size;
      }
    }
    writeBits(data, op.offset, op.bits, value < 0 ? value + size : value);
    return { reply: op.kind === 2 ? value : old, changed: value !== old };
  }
  const size = 1n << BigInt(op.bits);
  const min = op.signed ? -size / 2n : 0n;
  const max = op.signed ? size / 2n - 1n : size - 1n;
  const wanted = op.kind === 2 ? BigInt(old) + op.arg : op.arg;
  let value = wanted;
  if (wanted > max || wanted < min) {
    if (op.overflow === FAIL) return { reply: null, changed: false };
    // C computes `max - value` in 64 bits for SET's check: a value at or below max - 2^63 wraps it
    // negative, and counts as an overflow upwards (SAT stores the maximum).
    const up = wanted > max || (op.kind === 1 && (!op.signed || (op.bits < 64 && wanted <= max - 2n ** 63n)));
    if (op.overflow === SAT) value = up ? max : min;
    else value = op.signed ? BigInt.asIntN(op.bits, wanted) : BigInt.asUintN(op.bits, wanted);
  }
  writeBig(data, op.offset, op.bits, value);
  return { reply: op.kind === 2 ? value : old, changed: value !== BigInt(old) };
}

/** `i1`…`i64` or `u1`…`u63` (case-sensitive, as Redis). */
function fieldType(arg: Buffer): { signed: boolean; bits: number } {
  const sign = arg[0];
  if (sign !== 0x69 && sign !== 0x75) throw new RespError(BAD_TYPE); // 'i', 'u'
  const bits = toInt64(arg.subarray(1));
  const signed = sign === 0x69;
  if (bits === undefined || bits < 1n || bits > (signed ? 64n : 63n)) throw new RespError(BAD_TYPE);
  return { signed, bits: Number(bits) };
}

/** A bit offset, or `#n` (n fields of `bits` bits: the product wraps as C's 64-bit multiplication). */
function fieldOffset(arg: Buffer, bits: number): number {
  const hash = arg[0] === 0x23; // '#'
  let offset = toInt64(hash ? arg.subarray(1) : arg);
  if (offset === undefined) throw new RespError(BIT_OFFSET);
  if (hash) offset = BigInt.asIntN(64, offset * BigInt(bits));
  if (offset < 0n || offset >> 3n >= BigInt(MAX_STRING)) throw new RespError(BIT_OFFSET);
  return Number(offset);
}

/** BITFIELD's subcommands, checked in order (the first bad one is the error, before any is run). */
function parseFieldOps(argv: Buffer[]): FieldOp[] {
  const ops: FieldOp[] = [];
  let overflow: Overflow = WRAP;
  for (let j = 2; j < argv.length; j++) {
    const remaining = argv.length - j - 1;
    const sub = argv[j];
    let kind: 0 | 1 | 2;
    if (is(sub, 'get') && remaining >= 2) kind = 0;
    else if (is(sub, 'set') && remaining >= 3) kind = 1;
    else if (is(sub, 'incrby') && remaining >= 3) kind = 2;
    else if (is(sub, 'overflow') && remaining >= 1) {
      const type = argv[++j];
      if (is(type, 'wrap')) overflow = WRAP;
      else if (is(type, 'sat')) overflow = SAT;
      else if (is(type, 'fail')) overflow = FAIL;
      else throw new RespError('ERR Invalid OVERFLOW type specified');
      continue;
    } else throw new RespError(SYNTAX);
    const { signed, bits } = fieldType(argv[j + 1] as Buffer);
    const offset = fieldOffset(argv[j + 2] as Buffer, bits);
    const arg = kind === 0 ? 0n : int64Arg(argv[j + 3]);
    ops.push({ kind, signed, bits, offset, arg, overflow });
    j += kind === 0 ? 2 : 3;
  }
  return ops;
}

export function registerBitmapCommands({ resp, keyspace, encodings }: MiniRedis): void {
  const readString = (client: RespClient, arg: Buffer | undefined): Buffer | undefined => keyspace.db(client.db).read(keyOf(arg), 'string');

  resp.command(
    'bitcount',
    { arity: -2, flags: ['readonly'], keys: [1, 1, 1], summary: 'Counts the number of set bits (population counting) in a string.', group },
    (client, argv) => {
      const value = readString(client, argv[1]);
      if (value === undefined) return 0; // before the arguments are looked at, as Redis
      let first = 0;
      let last = value.length * 8 - 1;
      if (argv.length === 4 || argv.length === 5) {
        const start = int64Arg(argv[2]);
        const end = int64Arg(argv[3]);
        if (start < 0n && end < 0n && start > end) return 0;
        const bits = isBitUnit(argv[4]);
        const range = clampRange(start, end, BigInt(bits ? value.length * 8 : value.length));
        if (range === undefined) return 0;
        [first, last] = bits ? range : [range[0] * 8, range[1] * 8 + 7];
      } else if (argv.length !== 2) throw new RespError(SYNTAX);
      return last < first ? 0 : countBits(value, first, last);
    },
  );

  resp.command(
    'bitpos',
    { arity: -3, flags: ['readonly'], keys: [1, 1, 1], summary: 'Finds the first set (1) or clear (0) bit in a string.', group },
    (client, argv) => {
      const wanted = int64Arg(argv[2]);
      if (wanted !== 0n && wanted !== 1n) throw new RespError('ERR The bit argument must be 1 or 0.');
      const bit = wanted === 1n ? 1 : 0;
      const value = readString(client, argv[1]);
      // A missing key is an endless run of 0 bits (whatever the other arguments).
      if (value === undefined) return bit === 1 ? -1 : 0;
      let first = 0;
      let last = value.length * 8 - 1;
      let endGiven = false;
      if (argv.length >= 4 && argv.length <= 6) {
        const start = int64Arg(argv[3]);
        const bits = isBitUnit(argv[5]); // checked before END, as Redis
        let end: bigint;
        if (argv.length >= 5) {
          end = int64Arg(argv[4]);
          endGiven = true;
        } else end = bits ? BigInt(value.length * 8 + 7) : BigInt(value.length - 1);
        const range = clampRange(start, end, BigInt(bits ? value.length * 8 : value.length));
        if (range === undefined) return -1;
        [first, last] = bits ? range : [range[0] * 8, range[1] * 8 + 7];
      } else if (argv.length !== 3) throw new RespError(SYNTAX);
      if (last < first) return -1;
      const found = findBit(value, bit, first, last);
      if (found !== -1 || bit === 1) return found;
      // Looking for a 0: past the end of the string it is all zeros, unless END bounded the range.
      return endGiven ? -1 : last + 1;
    },
  );

  resp.command(
    'bitop',
    {
      arity: -4,
      flags: ['write'],
      keys: [2, -1, 1],
      summary: 'Performs bitwise operations on multiple strings, and stores the result.',
      group,
    },
    (client, argv) => {
      const op = (argv[1] as Buffer).toString('latin1').toLowerCase();
      if (op !== 'and' && op !== 'or' && op !== 'xor' && op !== 'not') throw new RespError(SYNTAX);
      if (op === 'not' && argv.length !== 4) throw new RespError('ERR BITOP NOT must be called with a single source key.');
      const db = keyspace.db(client.db);
      const sources = argv.slice(3).map((arg) => db.read(keyOf(arg), 'string') ?? EMPTY);
      let length = 0;
      for (const source of sources) if (source.length > length) length = source.length;
      const dest = keyOf(argv[2]);
      if (length === 0) {
        if (db.delete(dest)) {
          resp.touch(client.db, dest);
          resp.notifyKeyspaceEvent('generic', 'del', dest, client.db);
        }
        return 0;
      }
      // The result: as long as the longest source; the shorter ones read as zeros past their end.
      const result = Buffer.alloc(length);
      (sources[0] as Buffer).copy(result);
      if (op === 'not') {
        for (let i = 0; i < length; i++) result[i] = ~(result[i] as number) & 0xff;
      } else {
        for (const source of sources.slice(1)) {
          const n = source.length;
          if (op === 'and') {
            for (let i = 0; i < n; i++) result[i] = (result[i] as number) & (source[i] as number);
            result.fill(0, n);
          } else if (op === 'or') {
            for (let i = 0; i < n; i++) result[i] = (result[i] as number) | (source[i] as number);
          } else {
            for (let i = 0; i < n; i++) result[i] = (result[i] as number) ^ (source[i] as number);
          }
        }
      }
      db.set(dest, { type: 'string', data: result }); // as SET: the TTL goes
      encodings.markRaw(result);
      resp.touch(client.db, dest);
      resp.notifyKeyspaceEvent('string', 'set', dest, client.db); // bitops.c says "set"
      return length;
    },
  );

  const bitfield = (client: RespClient, argv: Buffer[], readonly: boolean): ReplyValue => {
    const ops = parseFieldOps(argv);
    const key = keyOf(argv[1]);
    const db = keyspace.db(client.db);
    let highest = -1; // the last bit a SET or INCRBY writes
    for (const op of ops) if (op.kind !== 0 && op.offset + op.bits - 1 > highest) highest = op.offset + op.bits - 1;
    if (highest === -1) {
      const value = db.read(key, 'string');
      return ops.map((op) => getField(value, op));
    }
    if (readonly) throw new RespError('ERR BITFIELD_RO only supports the GET subcommand');
    const current = db.read(key, 'string');
    const needed = Math.floor(highest / 8) + 1;
    // Created or grown (zero padded) counts as a change of every SET and INCRBY, as in Redis.
    const grown = current === undefined || current.length < needed;
    const data = Buffer.alloc(Math.max(current?.length ?? 0, needed));
    current?.copy(data);
    let changes = 0;
    const replies = ops.map((op): ReplyValue => {
      if (op.kind === 0) return getField(data, op);
      const { reply, changed } = writeField(data, op);
      if (reply !== null && (grown || changed)) changes++;
      return reply;
    });
    if (changes > 0) {
      db.set(key, { type: 'string', data }, true);
      encodings.markRaw(data);
      resp.touch(client.db, key);
      resp.notifyKeyspaceEvent('string', 'setbit', key, client.db);
    } else if (grown) {
      // Every write refused by OVERFLOW FAIL: Redis keeps the zeros it padded the string with (or the
      // key it created) but counts no change: no WATCH, notification or propagation.
      db.set(key, { type: 'string', data }, true);
      encodings.markRaw(data);
    }
    return replies;
  };

  resp.command(
    'bitfield',
    {
      arity: -2,
      flags: ['write'],
      keys: [1, 1, 1],
      summary: 'Performs arbitrary bitfield integer operations on strings.',
      group,
    },
    (client, argv) => bitfield(client, argv, false),
  );

  resp.command(
    'bitfield_ro',
    {
      arity: -2,
      flags: ['readonly', 'fast'],
      keys: [1, 1, 1],
      summary: 'Performs arbitrary read-only bitfield integer operations on strings.',
      group,
    },
    (client, argv) => bitfield(client, argv, true),
  );
}

const EMPTY = Buffer.alloc(0);
