import { OK, type RespClient, RespError } from '@portbind/resp';
import type { MiniRedis } from '../app.js';
import { type End, popEnd } from '../blocking.js';
import type { Deque } from '../deque.js';
import { ceilLongDouble, parseLongDouble, scaleLongDouble } from '../long-double.js';
import { INT64_MAX, INT64_MIN, int64Arg, intArg } from '../numbers.js';
import { bytesOf, keyOf, WRONGTYPE } from '../store.js';

const group = 'list';

export function registerListCommands({ resp, keyspace, blocked, propagation }: MiniRedis): void {
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
        resp.notifyKeyspaceEvent('list', name, key, client.db);
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
        const popped = count === undefined ? popEnd(list, end) : end === 'left' ? list.shiftMany(count) : list.popMany(count);
        db.deleteIfEmpty(key, list);
        resp.touch(client.db, key);
        resp.notifyKeyspaceEvent('list', name, key, client.db);
        if (list.length === 0) resp.notifyKeyspaceEvent('generic', 'del', key, client.db);
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
      return list.at(index < 0 ? list.length + index : index) ?? null;
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
          propagation.rewrite([end === 'left' ? 'LPOP' : 'RPOP', bytesOf(key)]); // as a plain pop (t_list.c)
          return [bytesOf(key), element];
        }
        if (!blocked.mayBlock(client)) {
          client.reply.nullArray();
          return undefined;
        }
        // A Promise: the adapter sends the reply when it resolves, and reads nothing more from
        // this client meanwhile, as a blocked Redis client. Served, it replays as the pop, right
        // after the push that served it.
        const waitDb = client.db;
        const database = keyspace.db(waitDb);
        return blocked.waitFor(
          client,
          keys,
          (key): [Buffer, Buffer] | undefined => {
            const value = database.get(key);
            if (value?.type !== 'list') return undefined;
            const element = popEnd(value.data, end);
            database.deleteIfEmpty(key, value.data);
            propagation.served(waitDb, [end === 'left' ? 'LPOP' : 'RPOP', bytesOf(key)]);
            return [bytesOf(key), element];
          },
          timeoutMs,
        );
      },
    );
  }

  // ---- LPUSHX, RPUSHX, LINSERT, LREM, LSET, LTRIM, LPOS ----------------------------------------

  const readList = (client: RespClient, arg: Buffer | undefined): Deque<Buffer> | undefined =>
    keyspace.db(client.db).read(keyOf(arg), 'list');

  for (const [name, end] of [
    ['lpushx', 'left'],
    ['rpushx', 'right'],
  ] as const) {
    resp.command(
      name,
      {
        arity: -3,
        flags: ['write', 'fast'],
        keys: [1, 1, 1],
        summary: 'Prepends or appends elements to a list only when the list exists.',
        group,
      },
      (client, argv) => {
        const list = readList(client, argv[1]);
        if (list === undefined) return 0;
        for (const arg of argv.slice(2)) {
          if (end === 'left') list.unshift(Buffer.from(arg));
          else list.push(Buffer.from(arg));
        }
        resp.touch(client.db, keyOf(argv[1]));
        return list.length;
      },
    );
  }

  resp.command(
    'linsert',
    { arity: 5, flags: ['write'], keys: [1, 1, 1], summary: 'Inserts an element before or after another element in a list.', group },
    (client, argv) => {
      const where = (argv[2] as Buffer).toString('latin1').toUpperCase();
      if (where !== 'BEFORE' && where !== 'AFTER') throw new RespError('ERR syntax error');
      const list = readList(client, argv[1]);
      if (list === undefined) return 0;
      const elements = list.toArray();
      const index = elements.findIndex((element) => element.equals(argv[3] as Buffer));
      if (index === -1) return -1;
      elements.splice(where === 'BEFORE' ? index : index + 1, 0, Buffer.from(argv[4] as Buffer));
      list.replace(elements);
      resp.touch(client.db, keyOf(argv[1]));
      return list.length;
    },
  );

  resp.command('lrem', { arity: 4, flags: ['write'], keys: [1, 1, 1], summary: 'Removes elements from a list.', group }, (client, argv) => {
    const count = int64Arg(argv[2]);
    const key = keyOf(argv[1]);
    const list = readList(client, argv[1]);
    if (list === undefined) return 0;
    const element = argv[3] as Buffer;
    let removed = 0;
    const limit = count === 0n ? Number.POSITIVE_INFINITY : Number(count < 0n ? -count : count);
    const elements = list.toArray();
    if (count >= 0n) {
      for (let i = 0; i < elements.length && removed < limit; ) {
        if ((elements[i] as Buffer).equals(element)) {
          elements.splice(i, 1);
          removed++;
        } else i++;
      }
    } else {
      for (let i = elements.length - 1; i >= 0 && removed < limit; i--) {
        if ((elements[i] as Buffer).equals(element)) {
          elements.splice(i, 1);
          removed++;
        }
      }
    }
    if (removed > 0) list.replace(elements);
    if (removed > 0) {
      keyspace.db(client.db).deleteIfEmpty(key, list);
      resp.touch(client.db, key);
    }
    return removed;
  });

  resp.command(
    'lset',
    { arity: 4, flags: ['write'], keys: [1, 1, 1], summary: 'Sets the value of an element in a list by its index.', group },
    (client, argv) => {
      const index = int64Arg(argv[2]);
      const list = readList(client, argv[1]);
      if (list === undefined) throw new RespError('ERR no such key');
      const at = Number(index < 0n ? BigInt(list.length) + index : index);
      if (at < 0 || at >= list.length) throw new RespError('ERR index out of range');
      list.set(at, Buffer.from(argv[3] as Buffer));
      resp.touch(client.db, keyOf(argv[1]));
      return OK;
    },
  );

  resp.command(
    'ltrim',
    { arity: 4, flags: ['write'], keys: [1, 1, 1], summary: 'Removes elements from both ends a list.', group },
    (client, argv) => {
      let start = int64Arg(argv[2]);
      let end = int64Arg(argv[3]);
      const key = keyOf(argv[1]);
      const list = readList(client, argv[1]);
      if (list === undefined) return OK;
      const length = BigInt(list.length);
      if (start < 0n) start += length;
      if (end < 0n) end += length;
      if (start < 0n) start = 0n;
      if (start > end || start >= length) list.replace([]);
      else {
        if (end >= length) end = length - 1n;
        list.popMany(Number(length - end - 1n)); // from the right: O(what is trimmed)
        list.shiftMany(Number(start));
      }
      keyspace.db(client.db).deleteIfEmpty(key, list);
      resp.touch(client.db, key);
      return OK;
    },
  );

  resp.command(
    'lpos',
    { arity: -3, flags: ['readonly'], keys: [1, 1, 1], summary: 'Returns the index of matching elements in a list.', group },
    (client, argv) => {
      let rank = 1n;
      let count = -1;
      let maxlen = 0;
      for (let i = 3; i < argv.length; i++) {
        const option = (argv[i] as Buffer).toString('latin1').toUpperCase();
        const more = i + 1 < argv.length;
        if (option === 'RANK' && more) {
          rank = int64Arg(argv[++i]);
          if (rank === 0n) {
            throw new RespError(
              "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list",
            );
          }
        } else if (option === 'COUNT' && more) {
          const value = int64Arg(argv[++i], "ERR COUNT can't be negative");
          if (value < 0n) throw new RespError("ERR COUNT can't be negative");
          count = Number(value);
        } else if (option === 'MAXLEN' && more) {
          const value = int64Arg(argv[++i], "ERR MAXLEN can't be negative");
          if (value < 0n) throw new RespError("ERR MAXLEN can't be negative");
          maxlen = Number(value);
        } else throw new RespError('ERR syntax error');
      }
      const list = readList(client, argv[1]);
      if (list === undefined) return count === -1 ? null : [];
      const fromTail = rank < 0n;
      const skip = Number(fromTail ? -rank : rank);
      const element = argv[2] as Buffer;
      const found: number[] = [];
      let matches = 0;
      for (let n = 0; n < list.length && (maxlen === 0 || n < maxlen); n++) {
        const index = fromTail ? list.length - 1 - n : n;
        if (!(list.at(index) as Buffer).equals(element)) continue;
        matches++;
        if (matches < skip) continue;
        found.push(index);
        if (count === -1 || (count > 0 && found.length >= count)) break;
      }
      if (count === -1) return found[0] ?? null;
      return found;
    },
  );

  // ---- LMOVE, RPOPLPUSH, BLMOVE, BRPOPLPUSH, LMPOP, BLMPOP ------------------------------------

  const endArg = (arg: Buffer | undefined): End => {
    const where = (arg as Buffer).toString('latin1').toUpperCase();
    if (where === 'LEFT') return 'left';
    if (where === 'RIGHT') return 'right';
    throw new RespError('ERR syntax error');
  };
  /** Pop from `from`'s end and push to `to`'s: the moved element, or undefined when `from` is empty. */
  const move = (db: number, from: string, to: string, fromEnd: End, toEnd: End): Buffer | undefined => {
    const database = keyspace.db(db);
    const source = database.read(from, 'list');
    if (source === undefined) return undefined;
    const target = database.get(to);
    if (target !== undefined && target.type !== 'list') throw new RespError(WRONGTYPE);
    const element = popEnd(source, fromEnd);
    database.deleteIfEmpty(from, source);
    const destination = database.readOrCreate(to, 'list');
    if (toEnd === 'left') destination.unshift(element);
    else destination.push(element);
    resp.touch(db, from);
    resp.touch(db, to);
    blocked.signal(db, to);
    return element;
  };
  /** LMOVE and BLMOVE (blocking: a timeout) from their already parsed arguments. */
  /** Set by BRPOPLPUSH right before it calls lmove: it replays as RPOPLPUSH, BLMOVE as LMOVE. */
  let lmoveName = '';
  const lmove = (
    client: RespClient,
    from: string,
    to: string,
    fromEnd: End,
    toEnd: End,
    timeoutMs: number | undefined,
  ): Buffer | null | Promise<Buffer | RespError | undefined> => {
    const replay = (): Array<Buffer | string> =>
      timeoutMs !== undefined && fromEnd === 'right' && toEnd === 'left' && brpoplpush
        ? ['RPOPLPUSH', bytesOf(from), bytesOf(to)]
        : ['LMOVE', bytesOf(from), bytesOf(to), fromEnd.toUpperCase(), toEnd.toUpperCase()];
    const brpoplpush = lmoveName === 'brpoplpush';
    lmoveName = '';
    const element = move(client.db, from, to, fromEnd, toEnd);
    if (element !== undefined) {
      if (timeoutMs !== undefined) propagation.rewrite(replay()); // BLMOVE/BRPOPLPUSH served at once
      return element;
    }
    if (timeoutMs === undefined || !blocked.mayBlock(client)) return null;
    const db = client.db;
    // Served by a push to `from`: the element moves then, as Redis's serveClientBlockedOnList.
    // On its timeout a null array, as Redis answers any list-blocked client. Served while the
    // destination holds another type, it gets WRONGTYPE and the element stays, as in Redis.
    const take = (): Buffer | RespError | undefined => {
      if (keyspace.db(db).get(from)?.type !== 'list') return undefined;
      try {
        const moved = move(db, from, to, fromEnd, toEnd);
        if (moved !== undefined) propagation.served(db, replay());
        return moved;
      } catch (error) {
        return error as RespError;
      }
    };
    return blocked.waitFor(client, [from], take, timeoutMs);
  };

  resp.command(
    'lmove',
    {
      arity: 5,
      flags: ['write'],
      keys: [1, 2, 1],
      summary: 'Returns an element after popping it from one list and pushing it to another.',
      group,
    },
    (client, argv) => lmove(client, keyOf(argv[1]), keyOf(argv[2]), endArg(argv[3]), endArg(argv[4]), undefined),
  );
  resp.command(
    'rpoplpush',
    {
      arity: 3,
      flags: ['write'],
      keys: [1, 2, 1],
      summary: 'Returns the last element of a list after removing and pushing it to another list.',
      group,
    },
    (client, argv) => lmove(client, keyOf(argv[1]), keyOf(argv[2]), 'right', 'left', undefined),
  );
  resp.command(
    'blmove',
    {
      arity: 6,
      flags: ['write'],
      keys: [1, 2, 1],
      summary: 'Pops an element from a list, pushes it to another list and returns it; blocks until one is available.',
      group,
    },
    (client, argv) => {
      const fromEnd = endArg(argv[3]);
      const toEnd = endArg(argv[4]);
      return lmove(client, keyOf(argv[1]), keyOf(argv[2]), fromEnd, toEnd, timeoutArg(argv[5] as Buffer));
    },
  );
  resp.command(
    'brpoplpush',
    {
      arity: 4,
      flags: ['write'],
      keys: [1, 2, 1],
      summary: 'Pops an element from a list, pushes it to another list and returns it; blocks until one is available.',
      group,
    },
    (client, argv) => {
      lmoveName = 'brpoplpush';
      return lmove(client, keyOf(argv[1]), keyOf(argv[2]), 'right', 'left', timeoutArg(argv[3] as Buffer));
    },
  );

  /** LMPOP and BLMPOP: `numkeys key… LEFT|RIGHT [COUNT n]` from argv[at]. */
  const mpopArgs = (argv: Buffer[], at: number): { keys: string[]; end: End; count: number } => {
    const numkeys = toRange(argv[at], 'ERR numkeys should be greater than 0');
    const whereAt = at + numkeys + 1;
    if (whereAt >= argv.length) throw new RespError('ERR syntax error');
    const end = endArg(argv[whereAt]);
    let count = -1;
    for (let i = whereAt + 1; i < argv.length; i++) {
      if (count === -1 && (argv[i] as Buffer).toString('latin1').toUpperCase() === 'COUNT' && i + 1 < argv.length) {
        count = toRange(argv[++i], 'ERR count should be greater than 0');
      } else throw new RespError('ERR syntax error');
    }
    return { keys: argv.slice(at + 1, at + 1 + numkeys).map(keyOf), end, count: count === -1 ? 1 : count };
  };
  /** Pop up to `count` elements from `key`'s end: [key, elements], or undefined when it has none. */
  const popRange = (db: number, key: string, end: End, count: number, served = false): [Buffer, Buffer[]] | undefined => {
    const database = keyspace.db(db);
    const list = database.read(key, 'list');
    if (list === undefined) return undefined;
    const popped = end === 'left' ? list.shiftMany(count) : list.popMany(count);
    database.deleteIfEmpty(key, list);
    resp.touch(db, key);
    // LMPOP/BLMPOP replay as LPOP/RPOP key <how many went> (t_list.c).
    const replay = [end === 'left' ? 'LPOP' : 'RPOP', bytesOf(key), String(popped.length)];
    if (served) propagation.served(db, replay);
    else propagation.rewrite(replay);
    return [bytesOf(key), popped];
  };
  resp.command(
    'lmpop',
    {
      arity: -4,
      flags: ['write'],
      keySpecs: [{ flags: ['RW', 'access', 'delete'], begin: 1, find: { keynumIndex: 0, firstKey: 1, step: 1 } }],
      summary: 'Returns multiple elements from a list after removing them.',
      group,
    },
    (client, argv) => {
      const { keys, end, count } = mpopArgs(argv, 1);
      for (const key of keys) {
        const popped = popRange(client.db, key, end, count);
        if (popped !== undefined) return popped;
      }
      client.reply.nullArray();
      return undefined;
    },
  );
  resp.command(
    'blmpop',
    {
      arity: -5,
      flags: ['write', 'blocking'],
      keySpecs: [{ flags: ['RW', 'access', 'delete'], begin: 2, find: { keynumIndex: 0, firstKey: 1, step: 1 } }],
      summary: 'Pops the first element from one of multiple lists; blocks until one is available.',
      group,
    },
    (client, argv) => {
      const { keys, end, count } = mpopArgs(argv, 2);
      const timeoutMs = timeoutArg(argv[1] as Buffer);
      for (const key of keys) {
        const popped = popRange(client.db, key, end, count);
        if (popped !== undefined) return popped;
      }
      if (!blocked.mayBlock(client)) {
        client.reply.nullArray();
        return undefined;
      }
      const db = client.db;
      // Served by a push to one of the keys; one that now holds another type serves nobody.
      const take = (key: string) => (keyspace.db(db).get(key)?.type === 'list' ? popRange(db, key, end, count, true) : undefined);
      return blocked.waitFor(client, keys, take, timeoutMs);
    },
  );
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

/** An integer from 1 to 2^63-1, else `message` (Redis's getRangeLongFromObjectOrReply with a message). */
function toRange(arg: Buffer | undefined, message: string): number {
  const value = int64Arg(arg, message);
  if (value < 1n) throw new RespError(message);
  return Number(value);
}
