import { OK, type ReplyValue, type RespClient, RespError } from '@portbind/resp';
import type { MiniRedis } from '../app.js';
import { addLongDouble, formatLongDouble, type LongDouble, parseLongDouble } from '../long-double.js';
import { addInt64, INT64_MAX, INT64_MIN, int64Arg, NOT_INTEGER, toInt64 } from '../numbers.js';
import { keyOf } from '../store.js';

const group = 'string';
const upper = (arg: Buffer | undefined): string => (arg as Buffer).toString('latin1').toUpperCase();

export function registerStringCommands({ resp, keyspace, encodings, propagation }: MiniRedis): void {
  /**
   * Store a copy of `data` (argv is a view into the network buffer), dropping the key's TTL unless
   * keepTtl; tell WATCH and keyspace notifications (`event`). Returns the copy.
   */
  const store = (client: RespClient, key: string, data: Buffer, keepTtl = false, event = 'set'): Buffer => {
    const copy = Buffer.from(data);
    keyspace.db(client.db).set(key, { type: 'string', data: copy }, keepTtl);
    resp.touch(client.db, key);
    resp.notifyKeyspaceEvent('string', event, key, client.db);
    return copy;
  };
  const expired = (client: RespClient, key: string): void => resp.notifyKeyspaceEvent('generic', 'expire', key, client.db);
  const readString = (client: RespClient, arg: Buffer | undefined): Buffer | undefined => keyspace.db(client.db).read(keyOf(arg), 'string');

  resp.command(
    'get',
    { arity: 2, flags: ['readonly', 'fast'], keys: [1, 1, 1], summary: 'Returns the string value of a key.', group },
    (client, argv) => readString(client, argv[1]) ?? null,
  );

  resp.command(
    'set',
    { arity: -3, flags: ['write'], keys: [1, 1, 1], summary: 'Sets the string value of a key, ignoring its type.', group },
    (client, argv) => {
      const options = parseSetOptions(argv);
      const key = keyOf(argv[1]);
      const db = keyspace.db(client.db);
      const expiresAt = options.expiry && expiryTime('set', options.expiry.unit, options.expiry.arg);
      // GET answers with the old value (and fails on a non-string) whether or not NX/XX let the SET happen.
      const old = options.get ? (db.read(key, 'string') ?? null) : undefined;
      const exists = db.get(key) !== undefined;
      if ((options.condition === 'NX' && exists) || (options.condition === 'XX' && !exists)) return options.get ? old : null;
      store(client, key, argv[2] as Buffer, options.keepTtl);
      if (expiresAt !== undefined) {
        db.expireAt(key, expiresAt);
        expired(client, key);
        // Replays as SET key value PXAT <ms> (t_string.c, setGenericCommand).
        propagation.rewrite(['SET', argv[1] as Buffer, argv[2] as Buffer, 'PXAT', String(expiresAt)]);
      } else if (options.get) propagation.rewrite(argv.filter((arg, i) => i < 3 || arg.toString('latin1').toUpperCase() !== 'GET'));
      return options.get ? old : OK;
    },
  );

  for (const [name, unit] of [
    ['setex', 'EX'],
    ['psetex', 'PX'],
  ] as const) {
    resp.command(
      name,
      { arity: 4, flags: ['write'], keys: [1, 1, 1], summary: `Sets the value and expiration time (${unit}) of a key.`, group },
      (client, argv) => {
        const expiresAt = expiryTime(name, unit, argv[2] as Buffer);
        const key = keyOf(argv[1]);
        store(client, key, argv[3] as Buffer);
        keyspace.db(client.db).expireAt(key, expiresAt);
        expired(client, key);
        propagation.rewrite(['SET', argv[1] as Buffer, argv[3] as Buffer, 'PXAT', String(expiresAt)]);
        return OK;
      },
    );
  }

  resp.command(
    'setnx',
    { arity: 3, flags: ['write', 'fast'], keys: [1, 1, 1], summary: 'Set the string value of a key only when it does not exist.', group },
    (client, argv) => {
      const key = keyOf(argv[1]);
      if (keyspace.db(client.db).get(key) !== undefined) return 0;
      store(client, key, argv[2] as Buffer);
      return 1;
    },
  );

  resp.command(
    'getset',
    { arity: 3, flags: ['write', 'fast'], keys: [1, 1, 1], summary: 'Returns the previous string value of a key after setting it.', group },
    (client, argv) => {
      const old = readString(client, argv[1]) ?? null;
      store(client, keyOf(argv[1]), argv[2] as Buffer);
      propagation.rewrite(['SET', argv[1] as Buffer, argv[2] as Buffer]); // t_string.c, getsetCommand
      return old;
    },
  );

  resp.command(
    'getdel',
    { arity: 2, flags: ['write', 'fast'], keys: [1, 1, 1], summary: 'Returns the string value of a key after deleting the key.', group },
    (client, argv) => {
      const value = readString(client, argv[1]);
      if (value === undefined) return null;
      keyspace.db(client.db).delete(keyOf(argv[1]));
      resp.touch(client.db, keyOf(argv[1]));
      resp.notifyKeyspaceEvent('generic', 'del', keyOf(argv[1]), client.db);
      propagation.rewrite(['DEL', argv[1] as Buffer]);
      return value;
    },
  );

  resp.command(
    'mset',
    {
      arity: -3,
      flags: ['write'],
      keys: [1, -1, 2],
      summary: 'Atomically creates or modifies the string values of one or more keys.',
      group,
    },
    (client, argv) => {
      if (argv.length % 2 === 0) throw new RespError("ERR wrong number of arguments for 'mset' command");
      for (let i = 1; i < argv.length; i += 2) store(client, keyOf(argv[i]), argv[i + 1] as Buffer);
      return OK;
    },
  );

  resp.command(
    'mget',
    {
      arity: -2,
      flags: ['readonly', 'fast'],
      keys: [1, -1, 1],
      summary: 'Atomically returns the string values of one or more keys.',
      group,
    },
    (client, argv) =>
      argv.slice(1).map((arg) => {
        const value = keyspace.db(client.db).get(keyOf(arg));
        return value?.type === 'string' ? value.data : null; // MGET answers nil for other types
      }),
  );

  /** INCR and friends: the value must be a 64-bit integer; the result keeps the key's TTL. */
  const incrementBy = (client: RespClient, arg: Buffer | undefined, increment: bigint): bigint => {
    const current = readString(client, arg);
    const value = current === undefined ? 0n : toInt64(current);
    if (value === undefined) throw new RespError(NOT_INTEGER);
    const result = addInt64(value, increment);
    store(client, keyOf(arg), Buffer.from(String(result)), true, 'incrby');
    return result;
  };
  const counter = { flags: ['write', 'fast'], keys: [1, 1, 1], group } as const;
  resp.command('incr', { arity: 2, ...counter, summary: 'Increments the integer value of a key by one.' }, (client, argv) =>
    incrementBy(client, argv[1], 1n),
  );
  resp.command('decr', { arity: 2, ...counter, summary: 'Decrements the integer value of a key by one.' }, (client, argv) =>
    incrementBy(client, argv[1], -1n),
  );
  resp.command('incrby', { arity: 3, ...counter, summary: 'Increments the integer value of a key by a number.' }, (client, argv) =>
    incrementBy(client, argv[1], int64Arg(argv[2])),
  );
  resp.command('decrby', { arity: 3, ...counter, summary: 'Decrements a number from the integer value of a key.' }, (client, argv) => {
    const decrement = int64Arg(argv[2]);
    if (decrement === INT64_MIN) throw new RespError('ERR decrement would overflow');
    return incrementBy(client, argv[1], -decrement);
  });

  resp.command(
    'incrbyfloat',
    { arity: 3, ...counter, summary: 'Increment the floating point value of a key by a number.' },
    (client, argv) => {
      const current = readString(client, argv[1]);
      const value = current === undefined ? ZERO : parseLongDouble(current);
      const increment = parseLongDouble(argv[2] as Buffer);
      if (value === undefined || increment === undefined) throw new RespError('ERR value is not a valid float');
      const sum = value === 'infinity' || increment === 'infinity' ? 'infinity' : addLongDouble(value, increment);
      if (sum === 'infinity') throw new RespError('ERR increment would produce NaN or Infinity');
      const text = Buffer.from(formatLongDouble(sum));
      store(client, keyOf(argv[1]), text, true, 'incrbyfloat');
      // Replays as SET with the result (float formatting may differ elsewhere), keeping the TTL.
      propagation.rewrite(['SET', argv[1] as Buffer, text, 'KEEPTTL']);
      return text;
    },
  );

  resp.command(
    'append',
    { arity: 3, flags: ['write'], keys: [1, 1, 1], summary: 'Appends a string to the value of a key.', group },
    (client, argv) => {
      const current = readString(client, argv[1]);
      const data = Buffer.concat([current ?? Buffer.alloc(0), argv[2] as Buffer]);
      if (data.length > 512 * 1024 * 1024) throw new RespError('ERR string exceeds maximum allowed size (proto-max-bulk-len)');
      const stored = store(client, keyOf(argv[1]), data, true, 'append');
      if (current !== undefined) encodings.markRaw(stored); // appended in place: `raw`, as in Redis
      return data.length;
    },
  );

  resp.command(
    'strlen',
    { arity: 2, flags: ['readonly', 'fast'], keys: [1, 1, 1], summary: 'Returns the length of a string value.', group },
    (client, argv) => readString(client, argv[1])?.length ?? 0,
  );

  // ---- GETEX, MSETNX ----------------------------------------------------------------------------

  resp.command(
    'getex',
    {
      arity: -2,
      flags: ['write', 'fast'],
      keys: [1, 1, 1],
      summary: 'Returns the string value of a key after setting its expiration time.',
      group,
    },
    (client, argv) => {
      let expiry: { unit: 'EX' | 'PX' | 'EXAT' | 'PXAT'; arg: Buffer } | undefined;
      let persist = false;
      for (let i = 2; i < argv.length; i++) {
        const option = upper(argv[i]);
        const next = argv[i + 1];
        if (
          (option === 'EX' || option === 'PX' || option === 'EXAT' || option === 'PXAT') &&
          !persist &&
          expiry === undefined &&
          next !== undefined
        ) {
          expiry = { unit: option, arg: next };
          i++;
        } else if (option === 'PERSIST' && expiry === undefined && !persist) persist = true;
        else throw new RespError('ERR syntax error');
      }
      const key = keyOf(argv[1]);
      const db = keyspace.db(client.db);
      const value = db.read(key, 'string');
      if (value === undefined) return null;
      if (expiry !== undefined) {
        const at = expiryTime('getex', expiry.unit, expiry.arg);
        if (at <= Date.now()) {
          db.delete(key); // EXAT/PXAT in the past: the key goes, as in Redis
          propagation.rewrite([propagation.lazyExpire ? 'UNLINK' : 'DEL', argv[1] as Buffer]);
        } else {
          db.expireAt(key, at);
          propagation.rewrite(['PEXPIREAT', argv[1] as Buffer, String(at)]);
        }
        resp.touch(client.db, key);
      } else if (persist && db.persist(key)) {
        resp.touch(client.db, key);
        propagation.rewrite(['PERSIST', argv[1] as Buffer]);
      }
      return value;
    },
  );

  resp.command(
    'msetnx',
    {
      arity: -3,
      flags: ['write'],
      keys: [1, -1, 2],
      summary: "Atomically sets the values of one or more keys only when all keys don't exist.",
      group,
    },
    (client, argv) => {
      if (argv.length % 2 === 0) throw new RespError("ERR wrong number of arguments for 'msetnx' command");
      const db = keyspace.db(client.db);
      for (let i = 1; i < argv.length; i += 2) if (db.get(keyOf(argv[i])) !== undefined) return 0;
      for (let i = 1; i < argv.length; i += 2) store(client, keyOf(argv[i]), argv[i + 1] as Buffer);
      return 1;
    },
  );

  // ---- GETRANGE, SUBSTR, SETRANGE, GETBIT, SETBIT -----------------------------------------------

  const MAX_STRING = 512 * 1024 * 1024; // proto-max-bulk-len
  const TOO_BIG = 'ERR string exceeds maximum allowed size (proto-max-bulk-len)';
  for (const name of ['getrange', 'substr']) {
    resp.command(
      name,
      { arity: 4, flags: ['readonly'], keys: [1, 1, 1], summary: 'Returns a substring of the string stored at a key.', group },
      (client, argv) => {
        let start = int64Arg(argv[2]);
        let end = int64Arg(argv[3]);
        const value = readString(client, argv[1]);
        if (value === undefined) return '';
        const length = BigInt(value.length);
        if (start < 0n && end < 0n && start > end) return '';
        if (start < 0n) start += length;
        if (end < 0n) end += length;
        if (start < 0n) start = 0n;
        if (end < 0n) end = 0n;
        if (end >= length) end = length - 1n;
        if (start > end || length === 0n) return '';
        return value.subarray(Number(start), Number(end) + 1);
      },
    );
  }

  resp.command(
    'setrange',
    { arity: 4, flags: ['write'], keys: [1, 1, 1], summary: 'Overwrites a part of a string value with another by an offset.', group },
    (client, argv) => {
      const offset = int64Arg(argv[2]);
      if (offset < 0n) throw new RespError('ERR offset is out of range');
      const patch = argv[3] as Buffer;
      const key = keyOf(argv[1]);
      const current = readString(client, argv[1]);
      if (patch.length === 0) return current?.length ?? 0;
      if (offset + BigInt(patch.length) > BigInt(MAX_STRING)) throw new RespError(TOO_BIG);
      const at = Number(offset);
      const data = Buffer.alloc(Math.max(current?.length ?? 0, at + patch.length));
      current?.copy(data);
      patch.copy(data, at);
      encodings.markRaw(store(client, key, data, true, 'setrange'));
      return data.length;
    },
  );

  /** A bit offset argument, with Redis's error (0 to 2^32-1 bits: 512 MB). */
  const bitOffset = (arg: Buffer | undefined): number => {
    const offset = toInt64(arg as Buffer);
    if (offset === undefined || offset < 0n || offset >= BigInt(MAX_STRING) * 8n) {
      throw new RespError('ERR bit offset is not an integer or out of range');
    }
    return Number(offset);
  };

  resp.command(
    'getbit',
    { arity: 3, flags: ['readonly', 'fast'], keys: [1, 1, 1], summary: 'Returns a bit value by offset.', group },
    (client, argv) => {
      const offset = bitOffset(argv[2]);
      const value = readString(client, argv[1]);
      const byte = value?.[offset >> 3];
      return byte === undefined ? 0 : (byte >> (7 - (offset & 7))) & 1;
    },
  );

  resp.command(
    'setbit',
    { arity: 4, flags: ['write'], keys: [1, 1, 1], summary: 'Sets or clears the bit at offset of the string value.', group },
    (client, argv) => {
      const offset = bitOffset(argv[2]);
      const bit = (argv[3] as Buffer).toString('latin1');
      if (bit !== '0' && bit !== '1') throw new RespError('ERR bit is not an integer or out of range');
      const current = readString(client, argv[1]);
      const index = offset >> 3;
      const data = Buffer.alloc(Math.max(current?.length ?? 0, index + 1));
      current?.copy(data);
      const mask = 1 << (7 - (offset & 7));
      const old = ((data[index] as number) & mask) === 0 ? 0 : 1;
      data[index] = bit === '1' ? (data[index] as number) | mask : (data[index] as number) & ~mask;
      encodings.markRaw(store(client, keyOf(argv[1]), data, true, 'setbit'));
      return old;
    },
  );

  // ---- LCS ------------------------------------------------------------------------------------

  resp.command(
    'lcs',
    { arity: -3, flags: ['readonly'], keys: [1, 2, 1], summary: 'Finds the longest common substring.', group },
    (client, argv) => {
      const db = keyspace.db(client.db);
      const strings = [argv[1], argv[2]].map((arg) => {
        const value = db.get(keyOf(arg));
        if (value !== undefined && value.type !== 'string') throw new RespError('ERR The specified keys must contain string values');
        return value?.data ?? Buffer.alloc(0);
      });
      let getLen = false;
      let getIdx = false;
      let withMatchLen = false;
      let minMatchLen = 0;
      for (let i = 3; i < argv.length; i++) {
        const option = upper(argv[i]);
        if (option === 'IDX') getIdx = true;
        else if (option === 'LEN') getLen = true;
        else if (option === 'WITHMATCHLEN') withMatchLen = true;
        else if (option === 'MINMATCHLEN' && i + 1 < argv.length) {
          const value = int64Arg(argv[++i]);
          minMatchLen = value < 0n ? 0 : Number(value);
        } else throw new RespError('ERR syntax error');
      }
      if (getLen && getIdx) throw new RespError('ERR If you want both the length and indexes, please just use IDX.');
      return lcs(strings[0] as Buffer, strings[1] as Buffer, { getLen, getIdx, withMatchLen, minMatchLen });
    },
  );
}

const ZERO: LongDouble = { significand: 0n, exponent: 0 };

interface SetOptions {
  condition?: 'NX' | 'XX';
  get: boolean;
  keepTtl: boolean;
  expiry?: { unit: 'EX' | 'PX' | 'EXAT' | 'PXAT'; arg: Buffer };
}

/** SET's options, with Redis's rules: NX or XX, one kind of expiry or KEEPTTL, else a syntax error. */
function parseSetOptions(argv: Buffer[]): SetOptions {
  const options: SetOptions = { get: false, keepTtl: false };
  for (let i = 3; i < argv.length; i++) {
    const option = upper(argv[i]);
    const next = argv[i + 1];
    if ((option === 'NX' || option === 'XX') && options.condition !== (option === 'NX' ? 'XX' : 'NX')) {
      options.condition = option;
    } else if (option === 'GET') {
      options.get = true;
    } else if (option === 'KEEPTTL' && options.expiry === undefined) {
      options.keepTtl = true;
    } else if (
      (option === 'EX' || option === 'PX' || option === 'EXAT' || option === 'PXAT') &&
      !options.keepTtl &&
      (options.expiry === undefined || options.expiry.unit === option) &&
      next !== undefined
    ) {
      options.expiry = { unit: option, arg: next };
      i++;
    } else {
      throw new RespError('ERR syntax error');
    }
  }
  return options;
}

/** When a SET/SETEX expiry ends, in ms since the epoch; Redis's errors for non-positive or overflowing times. */
function expiryTime(command: string, unit: 'EX' | 'PX' | 'EXAT' | 'PXAT', arg: Buffer): number {
  const invalid = new RespError(`ERR invalid expire time in '${command}' command`);
  let ms = int64Arg(arg);
  const seconds = unit === 'EX' || unit === 'EXAT';
  if (ms <= 0n || (seconds && ms > INT64_MAX / 1000n)) throw invalid;
  if (seconds) ms *= 1000n;
  if (unit === 'EX' || unit === 'PX') ms += BigInt(Date.now());
  if (ms > INT64_MAX) throw invalid;
  return Number(ms);
}

/**
 * LCS as Redis 7.0 answers it: the table of common-subsequence lengths, then a walk back from the
 * ends that rebuilds the subsequence and, for IDX, the matching ranges from last to first.
 */
function lcs(
  a: Buffer,
  b: Buffer,
  { getLen, getIdx, withMatchLen, minMatchLen }: { getLen: boolean; getIdx: boolean; withMatchLen: boolean; minMatchLen: number },
): ReplyValue {
  const width = b.length + 1;
  if ((a.length + 1) * width * 4 > 512 * 1024 * 1024) {
    throw new RespError('ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len');
  }
  const table = new Uint32Array((a.length + 1) * width);
  const at = (i: number, j: number): number => table[i * width + j] as number;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      table[i * width + j] = a[i - 1] === b[j - 1] ? at(i - 1, j - 1) + 1 : Math.max(at(i - 1, j), at(i, j - 1));
    }
  }
  const length = at(a.length, b.length);
  if (getLen) return length;
  const result = Buffer.alloc(length);
  const matches: ReplyValue[] = [];
  let index = length;
  let i = a.length;
  let j = b.length;
  let aStart = -1;
  let aEnd = 0;
  let bStart = 0;
  let bEnd = 0;
  while (i > 0 && j > 0) {
    let emit = false;
    if (a[i - 1] === b[j - 1]) {
      result[index - 1] = a[i - 1] as number;
      if (aStart === -1) {
        aStart = aEnd = i - 1;
        bStart = bEnd = j - 1;
      } else if (aStart === i && bStart === j) {
        aStart--;
        bStart--;
      } else {
        emit = true;
      }
      if (aStart === 0 || bStart === 0) emit = true;
      index--;
      i--;
      j--;
    } else {
      if (at(i - 1, j) > at(i, j - 1)) i--;
      else j--;
      if (aStart !== -1) emit = true;
    }
    if (emit) {
      const matchLen = aEnd - aStart + 1;
      if (getIdx && (minMatchLen === 0 || matchLen >= minMatchLen)) {
        const range: ReplyValue[] = [
          [aStart, aEnd],
          [bStart, bEnd],
        ];
        if (withMatchLen) range.push(matchLen);
        matches.push(range);
      }
      aStart = -1;
    }
  }
  if (!getIdx) return result;
  return new Map<string, ReplyValue>([
    ['matches', matches],
    ['len', length],
  ]);
}
