import { globMatch, OK, type RespClient, RespError, simple } from '@portbind/resp';
import type { MiniRedis } from '../app.js';
import { helpReply } from '../help.js';
import { INT64_MAX, INT64_MIN, int64Arg, intArg } from '../numbers.js';
import { bytesOf, copyValue, type Database, keyOf, type Value } from '../store.js';

const group = 'generic';
const upper = (arg: Buffer | undefined): string => (arg as Buffer).toString('latin1').toUpperCase();

export function registerKeyCommands({ resp, keyspace, blocked, encodings, propagation }: MiniRedis): void {
  for (const name of ['del', 'unlink']) {
    resp.command(name, { arity: -2, flags: ['write'], keys: [1, -1, 1], summary: 'Deletes one or more keys.', group }, (client, argv) => {
      let deleted = 0;
      for (const arg of argv.slice(1)) {
        const key = keyOf(arg);
        const db = keyspace.db(client.db);
        if (db.get(key) !== undefined && db.delete(key)) {
          resp.touch(client.db, key);
          resp.notifyKeyspaceEvent('generic', 'del', key, client.db);
          deleted++;
        }
      }
      return deleted;
    });
  }

  resp.command(
    'exists',
    { arity: -2, flags: ['readonly', 'fast'], keys: [1, -1, 1], summary: 'Determines whether one or more keys exist.', group },
    // EXISTS, TYPE, TTL and friends leave the LRU/LFU clock alone (Redis's LOOKUP_NOTOUCH).
    (client, argv) => argv.slice(1).filter((arg) => keyspace.db(client.db).peek(keyOf(arg)) !== undefined).length,
  );

  resp.command(
    'type',
    { arity: 2, flags: ['readonly', 'fast'], keys: [1, 1, 1], summary: 'Determines the type of value stored at a key.', group },
    (client, argv) => simple(keyspace.db(client.db).peek(keyOf(argv[1]))?.type ?? 'none'),
  );

  // ---- OBJECT ENCODING | REFCOUNT | IDLETIME | FREQ | HELP ------------------------------------

  const objectHelp = [
    'ENCODING <key>',
    '    Return the kind of internal representation used in order to store the value',
    '    associated with a <key>.',
    'FREQ <key>',
    '    Return the access frequency index of the <key>. The returned integer is',
    '    proportional to the logarithm of the recent access frequency of the key.',
    'IDLETIME <key>',
    '    Return the idle time of the <key>, that is the approximated number of',
    '    seconds elapsed since the last access to the key.',
    'REFCOUNT <key>',
    '    Return the number of references of the value associated with the specified',
    '    <key>.',
  ];
  resp.command(
    'object',
    {
      arity: -2,
      summary: 'A container for object introspection commands.',
      group,
      // As Redis declares them: each subcommand's key (the container has none), arity, tips.
      subcommands: {
        ...Object.fromEntries(
          ['encoding', 'refcount', 'idletime', 'freq'].map((name) => [
            name,
            { arity: 3, flags: ['readonly'], keySpecs: [{ flags: ['RO'], begin: 2 }], tips: ['nondeterministic_output'] },
          ]),
        ),
        help: { arity: 2, flags: ['loading', 'stale'] },
      },
    },
    (client, argv) => {
      const sub = upper(argv[1]);
      const known = ['ENCODING', 'REFCOUNT', 'IDLETIME', 'FREQ', 'HELP'].includes(sub);
      if (!known) throw new RespError(`ERR unknown subcommand '${(argv[1] as Buffer).toString('latin1')}'. Try OBJECT HELP.`);
      if (argv.length !== (sub === 'HELP' ? 2 : 3)) {
        throw new RespError(`ERR wrong number of arguments for 'object|${sub.toLowerCase()}' command`);
      }
      if (sub === 'HELP') return helpReply('OBJECT', objectHelp);
      const value = keyspace.db(client.db).peek(keyOf(argv[2])); // no access-clock touch, as Redis's LOOKUP_NOTOUCH
      if (value === undefined) return null;
      const adjust = 'Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.';
      switch (sub) {
        case 'ENCODING':
          return encodings.encoding(value);
        case 'REFCOUNT': {
          // Redis shares the integers 0–9999 between keys (OBJ_SHARED_REFCOUNT).
          const shared = value.type === 'string' && /^(0|[1-9][0-9]{0,3})$/.test(value.data.toString('latin1'));
          return shared ? 2147483647 : 1;
        }
        case 'IDLETIME':
          if (keyspace.access.lfu) throw new RespError(`ERR An LFU maxmemory policy is selected, idle time not tracked. ${adjust}`);
          return Math.floor(keyspace.access.idleMs(value) / 1000);
        default:
          if (!keyspace.access.lfu)
            throw new RespError(`ERR An LFU maxmemory policy is not selected, access frequency not tracked. ${adjust}`);
          return keyspace.access.frequency(value);
      }
    },
  );

  // ---- Expiry: EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT [NX|XX|GT|LT]; TTL, PTTL; PERSIST. ----------

  /** Redis's expireGenericCommand: options, overflow checks, then set the TTL (or delete, if in the past). */
  const expire = (client: RespClient, argv: Buffer[], name: string, unit: bigint, base: bigint): number => {
    const flags = new Set<string>();
    for (const arg of argv.slice(3)) {
      const flag = upper(arg);
      if (!['NX', 'XX', 'GT', 'LT'].includes(flag)) throw new RespError(`ERR Unsupported option ${arg.toString('latin1')}`);
      flags.add(flag);
    }
    if (flags.has('NX') && (flags.has('XX') || flags.has('GT') || flags.has('LT'))) {
      throw new RespError('ERR NX and XX, GT or LT options at the same time are not compatible');
    }
    if (flags.has('GT') && flags.has('LT')) throw new RespError('ERR GT and LT options at the same time are not compatible');
    const invalid = new RespError(`ERR invalid expire time in '${name}' command`);
    let when = int64Arg(argv[2]);
    if (when > INT64_MAX / unit || when < INT64_MIN / unit) throw invalid;
    when *= unit;
    if (when > INT64_MAX - base) throw invalid;
    when += base;

    const key = keyOf(argv[1]);
    const db = keyspace.db(client.db);
    if (db.get(key) === undefined) return 0;
    const current = db.expires.get(key); // undefined: no TTL, which GT/LT treat as infinite
    if (flags.has('NX') && current !== undefined) return 0;
    if (flags.has('XX') && current === undefined) return 0;
    if (flags.has('GT') && (current === undefined || when <= BigInt(current))) return 0;
    if (flags.has('LT') && current !== undefined && when >= BigInt(current)) return 0;
    const past = when <= BigInt(Date.now());
    if (past) db.delete(key);
    else db.expireAt(key, Number(when));
    // Replays as PEXPIREAT with the absolute time (its flags kept), or as a deletion (expire.c).
    if (past) propagation.rewrite([propagation.lazyExpire ? 'UNLINK' : 'DEL', argv[1] as Buffer]);
    else propagation.rewrite(['PEXPIREAT', argv[1] as Buffer, String(when), ...argv.slice(3)]);
    resp.touch(client.db, key);
    resp.notifyKeyspaceEvent('generic', past ? 'del' : 'expire', key, client.db);
    return 1;
  };

  for (const [name, unit, relative] of [
    ['expire', 1000n, true],
    ['pexpire', 1n, true],
    ['expireat', 1000n, false],
    ['pexpireat', 1n, false],
  ] as const) {
    resp.command(
      name,
      { arity: -3, flags: ['write', 'fast'], keys: [1, 1, 1], summary: 'Sets the expiration time of a key.', group },
      (client, argv) => expire(client, argv, name, unit, relative ? BigInt(Date.now()) : 0n),
    );
  }

  for (const [name, unit] of [
    ['ttl', 1000],
    ['pttl', 1],
  ] as const) {
    resp.command(
      name,
      { arity: 2, flags: ['readonly', 'fast'], keys: [1, 1, 1], summary: 'Returns the expiration time of a key.', group },
      (client, argv) => {
        const key = keyOf(argv[1]);
        const db = keyspace.db(client.db);
        if (db.peek(key) === undefined) return -2;
        const expiresAt = db.expires.get(key);
        if (expiresAt === undefined) return -1;
        const left = Math.max(expiresAt - Date.now(), 0);
        return unit === 1 ? left : Math.floor((left + 500) / 1000); // TTL rounds to the nearest second
      },
    );
  }

  resp.command(
    'persist',
    { arity: 2, flags: ['write', 'fast'], keys: [1, 1, 1], summary: 'Removes the expiration time of a key.', group },
    (client, argv) => {
      const key = keyOf(argv[1]);
      const db = keyspace.db(client.db);
      if (db.get(key) === undefined || !db.persist(key)) return 0;
      resp.touch(client.db, key);
      resp.notifyKeyspaceEvent('generic', 'persist', key, client.db);
      return 1;
    },
  );

  // ---- RENAME, RENAMENX -----------------------------------------------------------------------

  for (const [name, onlyIfNew] of [
    ['rename', false],
    ['renamenx', true],
  ] as const) {
    resp.command(name, { arity: 3, flags: ['write'], keys: [1, 2, 1], summary: 'Renames a key.', group }, (client, argv) => {
      const [from, to] = [keyOf(argv[1]), keyOf(argv[2])];
      const db = keyspace.db(client.db);
      const value = db.get(from);
      if (value === undefined) throw new RespError('ERR no such key');
      if (from === to) return onlyIfNew ? 0 : OK;
      if (onlyIfNew && db.get(to) !== undefined) return 0;
      const expiresAt = db.expires.get(from);
      db.delete(from);
      db.set(to, value);
      if (expiresAt !== undefined) db.expireAt(to, expiresAt);
      resp.touch(client.db, from);
      resp.touch(client.db, to);
      resp.notifyKeyspaceEvent('generic', 'rename_from', from, client.db);
      resp.notifyKeyspaceEvent('generic', 'rename_to', to, client.db);
      if (value.type === 'list' || value.type === 'zset' || value.type === 'stream') blocked.signal(client.db, to); // wakes a BLPOP / BZPOPMIN on the new name
      return onlyIfNew ? 1 : OK;
    });
  }

  for (const [name, unit] of [
    ['expiretime', 1000],
    ['pexpiretime', 1],
  ] as const) {
    resp.command(
      name,
      {
        arity: 2,
        flags: ['readonly', 'fast'],
        keys: [1, 1, 1],
        summary: 'Returns the expiration time of a key as a Unix timestamp.',
        group,
      },
      (client, argv) => {
        const key = keyOf(argv[1]);
        const db = keyspace.db(client.db);
        if (db.peek(key) === undefined) return -2;
        const expiresAt = db.expires.get(key);
        if (expiresAt === undefined) return -1;
        return Math.floor(expiresAt / unit);
      },
    );
  }

  resp.command(
    'touch',
    {
      arity: -2,
      flags: ['readonly', 'fast'],
      keys: [1, -1, 1],
      summary: 'Returns the number of existing keys out of those specified.',
      group,
    },
    (client, argv) => argv.slice(1).filter((arg) => keyspace.db(client.db).get(keyOf(arg)) !== undefined).length,
  );

  resp.command('randomkey', { arity: 1, flags: ['readonly'], summary: 'Returns a random key name from the database.', group }, (client) => {
    const db = keyspace.db(client.db);
    // Pick among the keys; an expired pick is deleted (as Redis does) and another is tried.
    for (let tries = 0; db.size > 0 && tries < 100; tries++) {
      const skip = Math.floor(Math.random() * db.size);
      let index = 0;
      for (const key of db.values.keys()) {
        if (index++ < skip) continue;
        if (db.get(key) !== undefined) return bytesOf(key);
        break;
      }
    }
    for (const key of db.values.keys()) if (db.get(key) !== undefined) return bytesOf(key);
    return null;
  });

  // ---- COPY, MOVE, SWAPDB ------------------------------------------------------------------------

  /** A database index argument: an integer, then in range, with Redis's errors. */
  const dbArg = (arg: Buffer | undefined, notInteger = 'ERR value is not an integer or out of range'): number => {
    const index = int64Arg(arg, notInteger);
    if (index < -2147483648n || index > 2147483647n) throw new RespError(notInteger);
    if (index < 0n || index >= BigInt(keyspace.databases.length)) throw new RespError('ERR DB index is out of range');
    return Number(index);
  };
  /** Put a value (a deep copy when `copy`) and its TTL under `to` in database `target`. */
  const place = (target: number, to: string, value: Value, expiresAt: number | undefined): void => {
    const db = keyspace.db(target);
    db.set(to, value);
    if (expiresAt !== undefined) db.expireAt(to, expiresAt);
    resp.touch(target, to);
    if (value.type === 'list' || value.type === 'zset' || value.type === 'stream') blocked.signal(target, to);
  };

  resp.command(
    'copy',
    { arity: -3, flags: ['write'], keys: [1, 2, 1], summary: 'Copies the value of a key to a new key.', group },
    (client, argv) => {
      let target = client.db;
      let replace = false;
      for (let i = 3; i < argv.length; i++) {
        const option = upper(argv[i]);
        if (option === 'REPLACE') replace = true;
        else if (option === 'DB' && i + 1 < argv.length) target = dbArg(argv[++i]);
        else throw new RespError('ERR syntax error');
      }
      // db.c, copyCommand: after the options are read, a cluster has database 0 only.
      if (resp.cluster !== undefined && (client.db !== 0 || target !== 0))
        throw new RespError('ERR Copying to another database is not allowed in cluster mode');
      const [from, to] = [keyOf(argv[1]), keyOf(argv[2])];
      if (from === to && target === client.db) throw new RespError('ERR source and destination objects are the same');
      const source = keyspace.db(client.db);
      const value = source.get(from);
      if (value === undefined) return 0;
      const destination = keyspace.db(target);
      if (destination.get(to) !== undefined) {
        if (!replace) return 0;
        destination.delete(to);
      }
      place(target, to, copyValue(value), source.expires.get(from));
      return 1;
    },
  );

  resp.command(
    'move',
    { arity: 3, flags: ['write', 'fast'], keys: [1, 1, 1], summary: 'Moves a key to another database.', group },
    (client, argv) => {
      const target = dbArg(argv[2]);
      const key = keyOf(argv[1]);
      if (target === client.db) throw new RespError('ERR source and destination objects are the same');
      const source = keyspace.db(client.db);
      const value = source.get(key);
      if (value === undefined || keyspace.db(target).get(key) !== undefined) return 0;
      const expiresAt = source.expires.get(key);
      source.delete(key);
      resp.touch(client.db, key);
      place(target, key, value, expiresAt);
      return 1;
    },
  );

  resp.command(
    'swapdb',
    { arity: 3, flags: ['write', 'fast'], summary: 'Swaps two Redis databases.', group: 'server' },
    (_client, argv) => {
      const a = dbArg(argv[1], 'ERR invalid first DB index');
      const b = dbArg(argv[2], 'ERR invalid second DB index');
      if (a === b) return OK;
      // WATCH: a watched key that exists in either database is touched (Redis's touchAllWatchedKeysInDb).
      const exists = (_db: number, key: string): boolean => keyspace.db(a).exists(key) || keyspace.db(b).exists(key);
      resp.touchAll(a, exists);
      resp.touchAll(b, exists);
      keyspace.db(a).swapWith(keyspace.db(b));
      // Clients blocked on a key that now holds a list or sorted set are served.
      for (const index of [a, b]) {
        for (const [key, value] of keyspace.db(index).values) {
          if (value.type === 'list' || value.type === 'zset' || value.type === 'stream') blocked.signal(index, key);
        }
      }
      return OK;
    },
  );

  // ---- KEYS, SCAN -----------------------------------------------------------------------------

  resp.command(
    'keys',
    { arity: 2, flags: ['readonly'], summary: 'Returns all key names that match a pattern.', group: 'generic' },
    (client, argv) => {
      const pattern = keyOf(argv[1]);
      const db = keyspace.db(client.db);
      const found: Buffer[] = [];
      for (const key of db.values.keys()) {
        if ((pattern === '*' || globMatch(pattern, key)) && db.get(key) !== undefined) found.push(bytesOf(key));
      }
      return found;
    },
  );

  // A scan in progress keeps a live iterator of its database under its cursor. A Map iterator
  // carries on through inserts and deletes, so every key present for the whole scan is returned,
  // as Redis promises. The 1000 most recent scans are kept; an unknown cursor starts over.
  const scans = new Map<string, { db: Database; keys: Iterator<string>; next: IteratorResult<string> }>();
  let lastCursor = 0;
  resp.command(
    'scan',
    { arity: -2, flags: ['readonly'], summary: 'Iterates over the key names in the database.', group },
    (client, argv) => {
      const cursor = (argv[1] as Buffer).toString('latin1');
      // Redis reads the cursor with strtoul: digits with an optional sign, at most 2^64-1.
      if (!/^([+-]?\d+)?$/.test(cursor) || BigInt(cursor.replace(/^[+-]/, '') || '0') > 2n ** 64n - 1n) {
        throw new RespError('ERR invalid cursor');
      }
      let count = 10;
      let pattern: string | undefined;
      let type: string | undefined;
      for (let i = 2; i < argv.length; i++) {
        const option = upper(argv[i]);
        const value = argv[i + 1];
        if (option === 'COUNT' && value !== undefined) {
          count = intArg(value);
          if (count < 1) throw new RespError('ERR syntax error');
        } else if (option === 'MATCH' && value !== undefined) pattern = keyOf(value);
        else if (option === 'TYPE' && value !== undefined) type = keyOf(value).toLowerCase();
        else throw new RespError('ERR syntax error');
        i++;
      }

      const db = keyspace.db(client.db);
      let scan = scans.get(cursor);
      scans.delete(cursor);
      if (scan === undefined || scan.db !== db) {
        const keys = db.values.keys();
        scan = { db, keys, next: keys.next() };
      }
      const found: Buffer[] = [];
      for (let visited = 0; visited < count && !scan.next.done; visited++) {
        const key = scan.next.value;
        scan.next = scan.keys.next();
        const value = db.get(key);
        if (value === undefined) continue;
        if (pattern !== undefined && pattern !== '*' && !globMatch(pattern, key)) continue;
        if (type !== undefined && value.type !== type) continue;
        found.push(bytesOf(key));
      }
      if (scan.next.done) return ['0', found];
      const next = String(++lastCursor);
      scans.set(next, scan);
      if (scans.size > 1000) scans.delete(scans.keys().next().value as string);
      return [next, found];
    },
  );
}
