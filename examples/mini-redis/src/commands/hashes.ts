import { OK, type RespClient, RespError } from '@portbind/resp';
import type { MiniRedis } from '../app.js';
import { addInt64, int64Arg, toInt64 } from '../numbers.js';
import { bytesOf, keyOf } from '../store.js';

const group = 'hash';

export function registerHashCommands({ resp, keyspace }: MiniRedis): void {
  const readHash = (client: RespClient, arg: Buffer | undefined): Map<string, Buffer> | undefined =>
    keyspace.db(client.db).read(keyOf(arg), 'hash');

  /** HSET and HMSET: field/value pairs; returns how many fields are new. */
  const setFields = (client: RespClient, argv: Buffer[], name: string): number => {
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
    if (deleted > 0) resp.touch(client.db, key);
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
      return result;
    },
  );
}
