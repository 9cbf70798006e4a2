import { OK, type ReplyValue, type RespClient, RespError } from '@portbind/resp';
import type { MiniRedis } from '../app.js';
import { addLongDouble, formatLongDouble, parseLongDouble } from '../long-double.js';
import { addInt64, INT64_MIN, int64Arg, toInt64 } from '../numbers.js';
import { scanArgs, scanStep } from '../scan.js';
import { bytesOf, keyOf, WRONGTYPE } from '../store.js';

const group = 'hash';

export function registerHashCommands({ resp, keyspace, encodings, propagation }: MiniRedis): void {
  const readHash = (client: RespClient, arg: Buffer | undefined): Map<string, Buffer> | undefined =>
    keyspace.db(client.db).read(keyOf(arg), 'hash');

  /** HSET and HMSET: field/value pairs; returns how many fields are new. */
  const setFields = (client: RespClient, argv: Buffer[], name: string): number => {
    // HSET, HMSET and HSETNX all notify `hset`, as Redis.
    if (argv.length % 2 !== 0) throw new RespError(`ERR wrong number of arguments for '${name}' command`);
    const key = keyOf(argv[1]);
    const hash = keyspace.db(client.db).readOrCreate(key, 'hash');
    let added = 0;
    for (let i = 2; i < argv.length; i += 2) {
      const field = keyOf(argv[i]);
      if (!hash.has(field)) added++;
      hash.set(field, Buffer.from(argv[i + 1] as Buffer));
    }
    resp.touch(client.db, key);
    resp.notifyKeyspaceEvent('hash', 'hset', key, client.db);
    return added;
  };

  const write = { flags: ['write', 'fast'], keys: [1, 1, 1], group } as const;
  const read = { flags: ['readonly', 'fast'], keys: [1, 1, 1], group } as const;

  resp.command('hset', { arity: -4, ...write, summary: 'Creates or modifies the value of a field in a hash.' }, (client, argv) =>
    setFields(client, argv, 'hset'),
  );

  resp.command('hmset', { arity: -4, ...write, summary: 'Sets the values of multiple fields.' }, (client, argv) => {
    setFields(client, argv, 'hmset');
    return OK;
  });

  resp.command(
    'hsetnx',
    { arity: 4, ...write, summary: 'Sets the value of a field in a hash only when the field does not exist.' },
    (client, argv) => {
      if (readHash(client, argv[1])?.has(keyOf(argv[2]))) return 0;
      return setFields(client, argv, 'hsetnx');
    },
  );

  resp.command('hget', { arity: 3, ...read, summary: 'Returns the value of a field in a hash.' }, (client, argv) => {
    return readHash(client, argv[1])?.get(keyOf(argv[2])) ?? null;
  });

  resp.command('hmget', { arity: -3, ...read, summary: 'Returns the values of all fields in a hash.' }, (client, argv) => {
    const hash = readHash(client, argv[1]);
    return argv.slice(2).map((field) => hash?.get(keyOf(field)) ?? null);
  });

  resp.command('hdel', { arity: -3, ...write, summary: 'Deletes one or more fields and their values from a hash.' }, (client, argv) => {
    const key = keyOf(argv[1]);
    const deleted = keyspace.db(client.db).removeMembers(key, 'hash', argv.slice(2).map(keyOf));
    if (deleted > 0) {
      resp.touch(client.db, key);
      resp.notifyKeyspaceEvent('hash', 'hdel', key, client.db);
      if (keyspace.db(client.db).get(key) === undefined) resp.notifyKeyspaceEvent('generic', 'del', key, client.db);
    }
    return deleted;
  });

  resp.command(
    'hgetall',
    { arity: 2, flags: ['readonly'], keys: [1, 1, 1], group, summary: 'Returns all fields and values in a hash.' },
    (client, argv) => {
      const hash = readHash(client, argv[1]) ?? new Map<string, Buffer>();
      // A map reply: RESP3 `%`, a flat field/value array on RESP2.
      client.reply.map(hash.size);
      for (const [field, value] of hash) client.reply.bulk(bytesOf(field)).bulk(value);
    },
  );

  resp.command(
    'hkeys',
    { arity: 2, flags: ['readonly'], keys: [1, 1, 1], group, summary: 'Returns all fields in a hash.' },
    (client, argv) => [...(readHash(client, argv[1])?.keys() ?? [])].map(bytesOf),
  );

  resp.command(
    'hvals',
    { arity: 2, flags: ['readonly'], keys: [1, 1, 1], group, summary: 'Returns all values in a hash.' },
    (client, argv) => [...(readHash(client, argv[1])?.values() ?? [])],
  );

  resp.command(
    'hlen',
    { arity: 2, ...read, summary: 'Returns the number of fields in a hash.' },
    (client, argv) => readHash(client, argv[1])?.size ?? 0,
  );

  resp.command('hexists', { arity: 3, ...read, summary: 'Determines whether a field exists in a hash.' }, (client, argv) =>
    readHash(client, argv[1])?.has(keyOf(argv[2])) ? 1 : 0,
  );

  resp.command(
    'hincrby',
    { arity: 4, ...write, summary: 'Increments the integer value of a field in a hash by a number.' },
    (client, argv) => {
      const increment = int64Arg(argv[3]);
      const key = keyOf(argv[1]);
      const field = keyOf(argv[2]);
      const hash = keyspace.db(client.db).readOrCreate(key, 'hash');
      const current = hash.get(field);
      const value = current === undefined ? 0n : toInt64(current);
      if (value === undefined) throw new RespError('ERR hash value is not an integer');
      const result = addInt64(value, increment);
      hash.set(field, Buffer.from(String(result)));
      resp.touch(client.db, key);
      resp.notifyKeyspaceEvent('hash', 'hincrby', key, client.db);
      return result;
    },
  );

  resp.command(
    'hincrbyfloat',
    { arity: 4, ...write, summary: 'Increments the floating point value of a field by a number.' },
    (client, argv) => {
      const increment = parseLongDouble(argv[3] as Buffer);
      if (increment === undefined) throw new RespError('ERR value is not a valid float');
      if (increment === 'infinity') throw new RespError('ERR value is NaN or Infinity');
      const key = keyOf(argv[1]);
      const field = keyOf(argv[2]);
      const hash = keyspace.db(client.db).readOrCreate(key, 'hash');
      const current = hash.get(field);
      const value = current === undefined ? { significand: 0n, exponent: 0 } : parseLongDouble(current);
      if (value === undefined || value === 'infinity') {
        keyspace.db(client.db).deleteIfEmpty(key, hash);
        throw new RespError('ERR hash value is not a float');
      }
      const sum = addLongDouble(value, increment);
      if (sum === 'infinity') throw new RespError('ERR increment would produce NaN or Infinity');
      const text = Buffer.from(formatLongDouble(sum));
      hash.set(field, text);
      resp.touch(client.db, key);
      resp.notifyKeyspaceEvent('hash', 'hincrbyfloat', key, client.db);
      propagation.rewrite(['HSET', argv[1] as Buffer, argv[2] as Buffer, text]); // as Redis: the result, not the increment
      return text;
    },
  );

  resp.command('hstrlen', { arity: 3, ...read, summary: 'Returns the length of the value of a field.' }, (client, argv) => {
    return readHash(client, argv[1])?.get(keyOf(argv[2]))?.length ?? 0;
  });

  resp.command(
    'hrandfield',
    { arity: -2, flags: ['readonly'], keys: [1, 1, 1], group, summary: 'Returns one or more random fields from a hash.' },
    (client, argv) => {
      if (argv.length > 4 || (argv.length === 4 && (argv[3] as Buffer).toString('latin1').toUpperCase() !== 'WITHVALUES')) {
        throw new RespError('ERR syntax error');
      }
      const withValues = argv.length === 4;
      if (argv.length === 2) {
        const hash = readHash(client, argv[1]);
        if (hash === undefined) return null;
        return bytesOf(pick([...hash.keys()]));
      }
      const count = int64Arg(argv[2]);
      if (count === INT64_MIN || (count < 0n && withValues && count < -(2n ** 62n))) {
        throw new RespError('ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807');
      }
      const hash = readHash(client, argv[1]);
      if (hash === undefined || count === 0n) return [];
      const fields = [...hash.keys()];
      let chosen: string[];
      if (count < 0n) {
        if (-count > 10_000_000n) throw new RespError('ERR value is out of range'); // what would not fit in memory
        chosen = Array.from({ length: Number(-count) }, () => pick(fields));
      } else if (count >= BigInt(fields.length)) chosen = fields;
      else {
        for (let i = 0; i < Number(count); i++) {
          const j = i + Math.floor(Math.random() * (fields.length - i));
          [fields[i], fields[j]] = [fields[j] as string, fields[i] as string];
        }
        chosen = fields.slice(0, Number(count));
      }
      if (!withValues) return chosen.map(bytesOf);
      // WITHVALUES: [field, value] pairs on RESP3, a flat array on RESP2, as Redis.
      const pairs = chosen.map((field): ReplyValue[] => [bytesOf(field), hash.get(field) as Buffer]);
      return client.protocol === 3 ? pairs : pairs.flat();
    },
  );

  resp.command(
    'hscan',
    { arity: -3, flags: ['readonly'], keys: [1, 1, 1], group, summary: 'Iterates over fields and values of a hash.' },
    (client, argv) => {
      const args = scanArgs(argv, 2);
      const value = keyspace.db(client.db).get(keyOf(argv[1]));
      if (value === undefined) return ['0', []];
      if (value.type !== 'hash') throw new RespError(WRONGTYPE);
      const hash = value.data;
      const [cursor, found] = scanStep(hash, () => hash.keys(), args, encodings.encoding(value) === 'listpack');
      return [cursor, found.flatMap((field) => [bytesOf(field), hash.get(field) as Buffer])];
    },
  );
}

function pick(items: readonly string[]): string {
  return items[Math.floor(Math.random() * items.length)] as string;
}
