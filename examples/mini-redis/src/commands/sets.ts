import { type RespClient, RespError } from '@portbind/resp';
import type { MiniRedis } from '../app.js';
import { INT64_MIN, int64Arg } from '../numbers.js';
import { bytesOf, keyOf } from '../store.js';

const group = 'set';

export function registerSetCommands({ resp, keyspace }: MiniRedis): void {
  const readSet = (client: RespClient, arg: Buffer | undefined): Set<string> | undefined => keyspace.db(client.db).read(keyOf(arg), 'set');

  resp.command(
    'sadd',
    { arity: -3, flags: ['write', 'fast'], keys: [1, 1, 1], summary: 'Adds one or more members to a set.', group },
    (client, argv) => {
      const key = keyOf(argv[1]);
      const set = keyspace.db(client.db).readOrCreate(key, 'set');
      const before = set.size;
      for (const member of argv.slice(2)) set.add(keyOf(member));
      if (set.size > before) resp.touch(client.db, key);
      return set.size - before;
    },
  );

  resp.command(
    'srem',
    { arity: -3, flags: ['write', 'fast'], keys: [1, 1, 1], summary: 'Removes one or more members from a set.', group },
    (client, argv) => {
      const key = keyOf(argv[1]);
      const removed = keyspace.db(client.db).removeMembers(key, 'set', argv.slice(2).map(keyOf));
      if (removed > 0) resp.touch(client.db, key);
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
}

function pick(members: readonly string[]): string {
  return members[Math.floor(Math.random() * members.length)] as string;
}
