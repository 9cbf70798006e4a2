import { OK, type RespClient, RespError } from '@portbind/resp';
import type { MiniRedis } from '../app.js';
import { addLongDouble, formatLongDouble, type LongDouble, parseLongDouble } from '../long-double.js';
import { addInt64, INT64_MAX, INT64_MIN, int64Arg, NOT_INTEGER, toInt64 } from '../numbers.js';
import { keyOf } from '../store.js';

const group = 'string';
const upper = (arg: Buffer | undefined): string => (arg as Buffer).toString('latin1').toUpperCase();

export function registerStringCommands({ resp, keyspace, encodings }: MiniRedis): void {
  /** Store a string (dropping the key's TTL unless keepTtl) and tell WATCH. */
  /** Store a copy of `data` (argv is a view into the network buffer); returns the copy. */
  const store = (client: RespClient, key: string, data: Buffer, keepTtl = false): Buffer => {
    const copy = Buffer.from(data);
    keyspace.db(client.db).set(key, { type: 'string', data: copy }, keepTtl);
    resp.touch(client.db, key);
    return copy;
  };
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
      if (expiresAt !== undefined) db.expireAt(key, expiresAt);
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
    store(client, keyOf(arg), Buffer.from(String(result)), true);
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
      store(client, keyOf(argv[1]), text, true);
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
      const stored = store(client, keyOf(argv[1]), data, true);
      if (current !== undefined) encodings.markRaw(stored); // appended in place: `raw`, as in Redis
      return data.length;
    },
  );

  resp.command(
    'strlen',
    { arity: 2, flags: ['readonly', 'fast'], keys: [1, 1, 1], summary: 'Returns the length of a string value.', group },
    (client, argv) => readString(client, argv[1])?.length ?? 0,
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
