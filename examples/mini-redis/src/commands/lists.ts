import { RespError } from '@portbind/resp';
import type { MiniRedis } from '../app.js';
import { popEnd } from '../blocking.js';
import { ceilLongDouble, parseLongDouble, scaleLongDouble } from '../long-double.js';
import { INT64_MAX, INT64_MIN, intArg } from '../numbers.js';
import { bytesOf, keyOf } from '../store.js';

const group = 'list';

export function registerListCommands({ resp, keyspace, blocked }: MiniRedis): void {
  for (const [name, end] of [
    ['lpush', 'left'],
    ['rpush', 'right'],
  ] as const) {
    resp.command(
      name,
      { arity: -3, flags: ['write', 'fast'], keys: [1, 1, 1], summary: `Prepends (LPUSH) or appends (RPUSH) elements to a list.`, group },
      (client, argv) => {
        const key = keyOf(argv[1]);
        const list = keyspace.db(client.db).readOrCreate(key, 'list');
        for (const arg of argv.slice(2)) {
          if (end === 'left') list.unshift(Buffer.from(arg));
          else list.push(Buffer.from(arg));
        }
        const length = list.length; // the reply: the length before blocked clients take their share
        resp.touch(client.db, key);
        blocked.signal(client.db, key);
        return length;
      },
    );
  }

  for (const [name, end] of [
    ['lpop', 'left'],
    ['rpop', 'right'],
  ] as const) {
    resp.command(
      name,
      { arity: -2, flags: ['write', 'fast'], keys: [1, 1, 1], summary: 'Returns and removes elements from one end of a list.', group },
      (client, argv) => {
        if (argv.length > 3) throw new RespError(`ERR wrong number of arguments for '${name}' command`);
        const positive = 'ERR value is out of range, must be positive';
        const count = argv.length === 3 ? intArg(argv[2], positive) : undefined;
        if (count !== undefined && count < 0) throw new RespError(positive);
        const key = keyOf(argv[1]);
        const db = keyspace.db(client.db);
        const list = db.read(key, 'list');
        if (list === undefined) {
          if (count === undefined) return null;
          client.reply.nullArray(); // with a count, a missing key is a null array
          return undefined;
        }
        if (count === 0) return [];
        const popped = count === undefined ? popEnd(list, end) : end === 'left' ? list.splice(0, count) : list.splice(-count).reverse();
        db.deleteIfEmpty(key, list);
        resp.touch(client.db, key);
        return popped;
      },
    );
  }

  resp.command(
    'llen',
    { arity: 2, flags: ['readonly', 'fast'], keys: [1, 1, 1], summary: 'Returns the length of a list.', group },
    (client, argv) => keyspace.db(client.db).read(keyOf(argv[1]), 'list')?.length ?? 0,
  );

  resp.command(
    'lrange',
    { arity: 4, flags: ['readonly'], keys: [1, 1, 1], summary: 'Returns a range of elements from a list.', group },
    (client, argv) => {
      let start = intArg(argv[2]);
      let stop = intArg(argv[3]);
      const list = keyspace.db(client.db).read(keyOf(argv[1]), 'list');
      if (list === undefined) return [];
      // Negative indexes count from the end; out-of-range ones are clamped.
      if (start < 0) start = Math.max(list.length + start, 0);
      if (stop < 0) stop = list.length + stop;
      if (start > stop || start >= list.length) return [];
      return list.slice(start, stop + 1);
    },
  );

  resp.command(
    'lindex',
    { arity: 3, flags: ['readonly'], keys: [1, 1, 1], summary: 'Returns an element from a list by its index.', group },
    (client, argv) => {
      const list = keyspace.db(client.db).read(keyOf(argv[1]), 'list');
      if (list === undefined) return null;
      const index = intArg(argv[2]);
      return list[index < 0 ? list.length + index : index] ?? null;
    },
  );

  for (const [name, end] of [
    ['blpop', 'left'],
    ['brpop', 'right'],
  ] as const) {
    resp.command(
      name,
      {
        arity: -3,
        flags: ['write'],
        keys: [1, -2, 1],
        summary:
          'Removes and returns the first (BLPOP) or last (BRPOP) element of the first non-empty list, or blocks until one is available.',
        group,
      },
      (client, argv) => {
        const timeoutMs = timeoutArg(argv[argv.length - 1] as Buffer);
        const keys = argv.slice(1, -1).map(keyOf);
        const db = keyspace.db(client.db);
        for (const key of keys) {
          const list = db.read(key, 'list');
          if (list === undefined) continue; // lists are never empty: a missing key is an empty list
          const element = popEnd(list, end);
          db.deleteIfEmpty(key, list);
          resp.touch(client.db, key);
          return [bytesOf(key), element];
        }
        if (!blocked.mayBlock(client)) {
          client.reply.nullArray();
          return undefined;
        }
        // A Promise: the adapter sends the reply when it resolves, and reads nothing more from
        // this client meanwhile, as a blocked Redis client.
        return blocked.wait(client, keys, end, timeoutMs);
      },
    );
  }
}

/**
 * A blocking timeout in seconds (a float; 0 = forever) as Redis 7.0 reads it: in long double,
 * `ceill(seconds * 1000)` milliseconds, where infinite or huge values end up negative.
 */
export function timeoutArg(arg: Buffer): number {
  const seconds = parseLongDouble(arg);
  if (seconds === undefined) throw new RespError('ERR timeout is not a float or out of range');
  const scaled = seconds === 'infinity' ? 'infinity' : scaleLongDouble(seconds, 1000n);
  let ms = scaled === 'infinity' ? INT64_MIN : ceilLongDouble(scaled);
  if (ms > INT64_MAX || ms < INT64_MIN) ms = INT64_MIN; // C's out-of-range conversion
  if (ms < 0n) throw new RespError('ERR timeout is negative');
  return Number(ms);
}
