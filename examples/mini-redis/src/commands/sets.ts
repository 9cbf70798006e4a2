import { type RespClient, RespError } from '@portbind/resp';
import type { MiniRedis } from '../app.js';
import { INT64_MIN, int64Arg } from '../numbers.js';
import { scanArgs, scanStep } from '../scan.js';
import { bytesOf, keyOf, numkeysKeys, WRONGTYPE } from '../store.js';

const group = 'set';

export function registerSetCommands({ resp, keyspace, encodings, propagation }: MiniRedis): void {
  const readSet = (client: RespClient, arg: Buffer | undefined): Set<string> | undefined => keyspace.db(client.db).read(keyOf(arg), 'set');

  resp.command(
    'sadd',
    { arity: -3, flags: ['write', 'fast'], keys: [1, 1, 1], summary: 'Adds one or more members to a set.', group },
    (client, argv) => {
      const key = keyOf(argv[1]);
      const set = keyspace.db(client.db).readOrCreate(key, 'set');
      const before = set.size;
      for (const member of argv.slice(2)) set.add(keyOf(member));
      if (set.size > before) {
        resp.touch(client.db, key);
        resp.notifyKeyspaceEvent('set', 'sadd', key, client.db);
      }
      return set.size - before;
    },
  );

  resp.command(
    'srem',
    { arity: -3, flags: ['write', 'fast'], keys: [1, 1, 1], summary: 'Removes one or more members from a set.', group },
    (client, argv) => {
      const key = keyOf(argv[1]);
      const removed = keyspace.db(client.db).removeMembers(key, 'set', argv.slice(2).map(keyOf));
      if (removed > 0) {
        resp.touch(client.db, key);
        resp.notifyKeyspaceEvent('set', 'srem', key, client.db);
        if (keyspace.db(client.db).get(key) === undefined) resp.notifyKeyspaceEvent('generic', 'del', key, client.db);
      }
      return removed;
    },
  );

  resp.command(
    'smembers',
    { arity: 2, flags: ['readonly'], keys: [1, 1, 1], summary: 'Returns all members of a set.', group },
    // A set reply: RESP3 `~`, an array on RESP2.
    (client, argv) => new Set([...(readSet(client, argv[1]) ?? [])].map(bytesOf)),
  );

  resp.command(
    'sismember',
    { arity: 3, flags: ['readonly', 'fast'], keys: [1, 1, 1], summary: 'Determines whether a member belongs to a set.', group },
    (client, argv) => (readSet(client, argv[1])?.has(keyOf(argv[2])) ? 1 : 0),
  );

  resp.command(
    'scard',
    { arity: 2, flags: ['readonly', 'fast'], keys: [1, 1, 1], summary: 'Returns the number of members in a set.', group },
    (client, argv) => readSet(client, argv[1])?.size ?? 0,
  );

  resp.command(
    'srandmember',
    { arity: -2, flags: ['readonly'], keys: [1, 1, 1], summary: 'Get one or multiple random members from a set.', group },
    (client, argv) => {
      if (argv.length > 3) throw new RespError('ERR syntax error');
      if (argv.length === 2) {
        const members = [...(readSet(client, argv[1]) ?? [])];
        return members.length === 0 ? null : bytesOf(pick(members));
      }
      const count = int64Arg(argv[2]);
      if (count === INT64_MIN)
        throw new RespError('ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807');
      const members = [...(readSet(client, argv[1]) ?? [])];
      if (count === 0n || members.length === 0) return [];
      // A negative count may repeat members: that many independent picks.
      if (count < 0n) {
        // Redis would stream that many replies; we refuse what would not fit in memory.
        if (-count > 10_000_000n) throw new RespError('ERR value is out of range');
        return Array.from({ length: Number(-count) }, () => bytesOf(pick(members)));
      }
      // A positive count: distinct members, the whole set when it asks for as many or more.
      if (count >= BigInt(members.length)) return members.map(bytesOf);
      for (let i = 0; i < Number(count); i++) {
        const j = i + Math.floor(Math.random() * (members.length - i)); // a partial Fisher–Yates shuffle
        [members[i], members[j]] = [members[j] as string, members[i] as string];
      }
      return members.slice(0, Number(count)).map(bytesOf);
    },
  );

  // ---- SPOP, SMOVE, SMISMEMBER, SSCAN ----------------------------------------------------------

  resp.command(
    'spop',
    {
      arity: -2,
      flags: ['write', 'fast'],
      keys: [1, 1, 1],
      summary: 'Returns one or more random members from a set after removing them.',
      group,
    },
    (client, argv) => {
      if (argv.length > 3) throw new RespError('ERR syntax error');
      const key = keyOf(argv[1]);
      const db = keyspace.db(client.db);
      let count = 1;
      if (argv.length === 3) {
        const asked = int64Arg(argv[2], 'ERR value is out of range, must be positive');
        if (asked < 0n) throw new RespError('ERR value is out of range, must be positive');
        count = asked > 2n ** 53n ? Number.MAX_SAFE_INTEGER : Number(asked);
      }
      const set = db.read(key, 'set');
      if (set === undefined || (argv.length === 3 && count === 0)) return argv.length === 3 ? [] : null;
      const all = count >= set.size;
      const members = all ? [...set] : sample([...set], count);
      // Replays as SREM (one member), DEL (all of them), or one SREM per member (t_set.c).
      if (argv.length === 2) propagation.rewrite(['SREM', argv[1] as Buffer, bytesOf(members[0] as string)]);
      else if (all) propagation.rewrite(['DEL', argv[1] as Buffer]);
      else {
        propagation.prevent();
        for (const member of members) propagation.also(client.db, ['SREM', argv[1] as Buffer, bytesOf(member)]);
      }
      for (const member of members) set.delete(member);
      db.deleteIfEmpty(key, set);
      resp.touch(client.db, key);
      return argv.length === 3 ? new Set(members.map(bytesOf)) : bytesOf(members[0] as string);
    },
  );

  resp.command(
    'smove',
    { arity: 4, flags: ['write', 'fast'], keys: [1, 2, 1], summary: 'Moves a member from one set to another.', group },
    (client, argv) => {
      const db = keyspace.db(client.db);
      const from = keyOf(argv[1]);
      const to = keyOf(argv[2]);
      const member = keyOf(argv[3]);
      const source = db.get(from);
      const target = db.get(to);
      if (source === undefined) return 0; // before any type check, as Redis
      if (source.type !== 'set' || (target !== undefined && target.type !== 'set')) throw new RespError(WRONGTYPE);
      if (from === to) return source.data.has(member) ? 1 : 0;
      if (!source.data.delete(member)) return 0;
      db.deleteIfEmpty(from, source.data);
      resp.touch(client.db, from);
      const destination = db.readOrCreate(to, 'set');
      if (!destination.has(member)) {
        destination.add(member);
        resp.touch(client.db, to);
      }
      return 1;
    },
  );

  resp.command(
    'smismember',
    { arity: -3, flags: ['readonly', 'fast'], keys: [1, 1, 1], summary: 'Determines whether multiple members belong to a set.', group },
    (client, argv) => {
      const set = readSet(client, argv[1]);
      return argv.slice(2).map((member) => (set?.has(keyOf(member)) ? 1 : 0));
    },
  );

  resp.command(
    'sscan',
    { arity: -3, flags: ['readonly'], keys: [1, 1, 1], summary: 'Iterates over members of a set.', group },
    (client, argv) => {
      const args = scanArgs(argv, 2);
      const value = keyspace.db(client.db).get(keyOf(argv[1]));
      if (value === undefined) return ['0', []];
      if (value.type !== 'set') throw new RespError(WRONGTYPE);
      const set = value.data;
      const [cursor, found] = scanStep(set, () => set.values(), args, encodings.encoding(value) === 'intset');
      return [cursor, found.map(bytesOf)];
    },
  );

  // ---- SINTER, SUNION, SDIFF, their STORE forms, SINTERCARD -------------------------------------

  /** The sets of `args` (a missing key: undefined), WRONGTYPE for another type. */
  const setsOf = (client: RespClient, args: readonly Buffer[]): Array<Set<string> | undefined> => args.map((arg) => readSet(client, arg));
  const inter = (sets: Array<Set<string> | undefined>, limit = 0): Set<string> => {
    if (sets.some((set) => set === undefined)) return new Set();
    const ordered = (sets as Array<Set<string>>).slice().sort((a, b) => a.size - b.size);
    const result = new Set<string>();
    for (const member of ordered[0] ?? []) {
      if (ordered.every((set) => set.has(member))) {
        result.add(member);
        if (limit > 0 && result.size >= limit) break;
      }
    }
    return result;
  };
  const union = (sets: Array<Set<string> | undefined>): Set<string> => {
    const result = new Set<string>();
    for (const set of sets) for (const member of set ?? []) result.add(member);
    return result;
  };
  const diff = (sets: Array<Set<string> | undefined>): Set<string> => {
    const [first, ...others] = sets;
    const result = new Set<string>();
    for (const member of first ?? []) if (!others.some((set) => set?.has(member))) result.add(member);
    return result;
  };
  const operations: Record<string, { run: (sets: Array<Set<string> | undefined>) => Set<string>; summary: string }> = {
    sinter: { run: (sets) => inter(sets), summary: 'Returns the intersect of multiple sets.' },
    sunion: { run: union, summary: 'Returns the union of multiple sets.' },
    sdiff: { run: diff, summary: 'Returns the difference of multiple sets.' },
  };
  for (const [name, { run, summary }] of Object.entries(operations)) {
    resp.command(name, { arity: -2, flags: ['readonly'], keys: [1, -1, 1], summary, group }, (client, argv) => {
      const sets = setsOf(client, argv.slice(1)); // every key's type is checked, missing ones too
      return new Set([...run(sets)].map(bytesOf));
    });
    resp.command(
      `${name}store`,
      { arity: -3, flags: ['write'], keys: [1, -1, 1], summary: `Stores the ${name.slice(1)} of multiple sets in a key.`, group },
      (client, argv) => {
        const db = keyspace.db(client.db);
        const destination = keyOf(argv[1]);
        const sets = setsOf(client, argv.slice(2));
        const result = run(sets);
        if (result.size === 0) {
          if (db.delete(destination)) resp.touch(client.db, destination);
          return 0;
        }
        db.set(destination, { type: 'set', data: result });
        resp.touch(client.db, destination);
        return result.size;
      },
    );
  }

  resp.command(
    'sintercard',
    {
      arity: -3,
      flags: ['readonly'],
      keysOf: numkeysKeys(1),
      summary: 'Returns the number of members of the intersect of multiple sets.',
      group,
    },
    (client, argv) => {
      const numkeys = int64Arg(argv[1], 'ERR numkeys should be greater than 0');
      if (numkeys <= 0n) throw new RespError('ERR numkeys should be greater than 0');
      if (numkeys > BigInt(argv.length - 2)) throw new RespError("ERR Number of keys can't be greater than number of args");
      const keys = argv.slice(2, 2 + Number(numkeys));
      let limit = 0;
      for (let i = 2 + Number(numkeys); i < argv.length; i += 2) {
        if ((argv[i] as Buffer).toString('latin1').toUpperCase() === 'LIMIT' && argv[i + 1] !== undefined) {
          const value = int64Arg(argv[i + 1], "ERR LIMIT can't be negative");
          if (value < 0n) throw new RespError("ERR LIMIT can't be negative");
          limit = Number(value);
        } else throw new RespError('ERR syntax error');
      }
      return inter(setsOf(client, keys), limit).size;
    },
  );
}

function pick(members: readonly string[]): string {
  return members[Math.floor(Math.random() * members.length)] as string;
}

/** `count` distinct members picked at random (a partial Fisher–Yates shuffle). */
function sample(members: string[], count: number): string[] {
  for (let i = 0; i < count; i++) {
    const j = i + Math.floor(Math.random() * (members.length - i));
    [members[i], members[j]] = [members[j] as string, members[i] as string];
  }
  return members.slice(0, count);
}
