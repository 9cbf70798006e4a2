import { OK, type RespClient, RespError, simple } from '@portbind/resp';
import type { MiniRedis } from '../app.js';
import { memory } from '../config.js';
import {
  cachedCardinality,
  createHll,
  decodeSparse,
  HLL_DENSE,
  HLL_REGISTERS,
  HLL_SPARSE,
  hllAdd,
  hllCount,
  hllMerge,
  INVALIDOBJ,
  invalidateCache,
  isHll,
  NOT_HLL,
  rawCount,
  registersOf,
  Sds,
  selfTest,
  setCachedCardinality,
  setRegisters,
  sparseToDense,
} from '../hyperloglog.js';
import { keyOf, type Value, WRONGTYPE } from '../store.js';

// PFADD, PFCOUNT, PFMERGE, PFDEBUG and PFSELFTEST as Redis 7.0.15's hyperloglog.c (summaries as its
// commands/*.json). An HLL is a
// string value (hyperloglog.ts builds its bytes exactly as Redis does), so every other string
// command, DUMP/RESTORE, the RDB file and the AOF see it as the string it is. Each command edits a
// copy of the value and stores the result (a stored Buffer is never changed in place: a reply may
// still hold it), keeping the key's TTL, as Redis's in-place edit keeps it.

const group = 'hyperloglog';

type StringValue = Extract<Value, { type: 'string' }>;

/** An integer reply from a 64-bit count (long long: 2^63 is Redis's overflow, sent as LLONG_MIN). */
const integerReply = (card: bigint): number | bigint => {
  const signed = BigInt.asIntN(64, card);
  return signed >= BigInt(Number.MIN_SAFE_INTEGER) && signed <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(signed) : signed;
};

export function registerHyperLogLogCommands({ resp, keyspace, encodings, propagation, config }: MiniRedis): void {
  /** hll-sparse-max-bytes: past it, a sparse HLL turns dense (CONFIG SET, as Redis's size_t config). */
  const settings = { sparseMaxBytes: 3000 };
  config.set(
    'hll-sparse-max-bytes',
    memory(
      0,
      () => settings.sparseMaxBytes,
      (value) => {
        settings.sparseMaxBytes = value;
      },
    ),
  );

  /** isHLLObjectOrReply: a string value that is an HLL, or Redis's WRONGTYPE errors. */
  const hllOf = (value: Value): StringValue => {
    if (value.type !== 'string') throw new RespError(WRONGTYPE);
    if (!isHll(value.data)) throw new RespError(NOT_HLL);
    return value;
  };

  /**
   * The key's value after dbUnshareStringValue (the command may write it), which OBJECT ENCODING
   * then calls `raw`, as Redis's unshared copy is.
   */
  const unshared = (value: Value): StringValue => {
    const hll = hllOf(value);
    encodings.markRaw(hll.data);
    return hll;
  };

  /** Put an edited value in place of the key's (same key, TTL and access clock). */
  const replace = (value: StringValue, s: Sds): void => {
    value.data = s.toValue();
    encodings.markRaw(value.data);
  };

  /** Store a new key's value (an HLL is `raw` from the start in Redis: createObject). */
  const create = (client: RespClient, key: string, s: Sds): void => {
    const data = s.toValue();
    encodings.markRaw(data);
    keyspace.db(client.db).set(key, { type: 'string', data });
  };

  resp.command(
    'pfadd',
    {
      arity: -2,
      flags: ['write', 'fast'],
      keys: [1, 1, 1],
      summary: 'Adds the specified elements to the specified HyperLogLog.',
      group,
      since: '2.8.9',
    },
    (client, argv) => {
      const key = keyOf(argv[1]);
      const db = keyspace.db(client.db);
      const found = db.get(key);
      const existing = found === undefined ? undefined : unshared(found);
      const s = existing === undefined ? createHll() : Sds.of(existing.data);
      let updated = existing === undefined ? 1 : 0;
      const maxBytes = settings.sparseMaxBytes;
      for (let j = 2; j < argv.length; j++) {
        const result = hllAdd(s, argv[j] as Buffer, maxBytes);
        if (result === 1) updated++;
        else if (result === -1) {
          // Redis edits in place: the elements added before the corrupted part stay added, with
          // nothing signalled (no WATCH, no notification, no propagation).
          if (existing !== undefined && updated > 0) {
            replace(existing, s);
            db.resize(key);
          }
          throw new RespError(INVALIDOBJ);
        }
      }
      if (updated === 0) return 0;
      invalidateCache(s);
      if (existing === undefined) create(client, key, s);
      else replace(existing, s);
      // server.dirty += updated: each register raised counts as a change (save points, INFO).
      for (let i = 0; i < updated; i++) resp.touch(client.db, key);
      resp.notifyKeyspaceEvent('string', 'pfadd', key, client.db);
      return 1;
    },
  );

  resp.command(
    'pfcount',
    {
      arity: -2,
      // may_replicate: CLIENT PAUSE … WRITE holds it, as Redis does (it caches the count in the key).
      flags: ['readonly', 'may_replicate'],
      keys: [1, -1, 1],
      summary: 'Return the approximated cardinality of the set(s) observed by the HyperLogLog at key(s).',
      group,
      since: '2.8.9',
    },
    (client, argv) => {
      const db = keyspace.db(client.db);
      if (argv.length > 2) {
        // The union of several: merged into one byte per register; nothing cached.
        const max = new Uint8Array(HLL_REGISTERS);
        for (let j = 1; j < argv.length; j++) {
          const value = db.get(keyOf(argv[j]));
          if (value === undefined) continue; // a missing key is an empty HLL
          if (!hllMerge(max, hllOf(value).data)) throw new RespError(INVALIDOBJ);
        }
        return integerReply(rawCount(max));
      }
      const key = keyOf(argv[1]);
      const value = db.get(key);
      if (value === undefined) return 0;
      const hll = unshared(value);
      const data = hll.data;
      const cached = cachedCardinality(data);
      if (cached !== undefined) return integerReply(cached);
      const card = hllCount(data);
      if (card === undefined) throw new RespError(INVALIDOBJ);
      // CLIENT PAUSE … WRITE holds PFCOUNT (may_replicate); one that runs during a pause all the same (in
      // a script or a transaction that began before it) caches nothing: the dataset stays as it is.
      if (resp.paused !== undefined) return integerReply(card);
      const s = Sds.of(data);
      setCachedCardinality(s, card);
      replace(hll, s);
      // The cached value changed the string: a write, though PFCOUNT is a read. Redis signals the key
      // (WATCH), counts a change and replays the PFCOUNT to the AOF and the replicas.
      resp.touch(client.db, key);
      propagation.also(client.db, argv);
      return integerReply(card);
    },
  );

  resp.command(
    'pfmerge',
    {
      arity: -2,
      flags: ['write'],
      keys: [1, -1, 1],
      summary: 'Merge N different HyperLogLogs into a single one.',
      group,
      since: '2.8.9',
    },
    (client, argv) => {
      const db = keyspace.db(client.db);
      // The destination is merged too (it is argv[1]); one dense input makes the result dense.
      const max = new Uint8Array(HLL_REGISTERS);
      let dense = false;
      for (let j = 1; j < argv.length; j++) {
        const value = db.get(keyOf(argv[j]));
        if (value === undefined) continue;
        const data = hllOf(value).data;
        if (data[4] === HLL_DENSE) dense = true;
        if (!hllMerge(max, data)) throw new RespError(INVALIDOBJ);
      }
      const key = keyOf(argv[1]);
      const found = db.get(key);
      // Checked with the sources: it is one.
      const existing = found === undefined ? undefined : unshared(found);
      const s = existing === undefined ? createHll() : Sds.of(existing.data);
      if (dense && !sparseToDense(s)) throw new RespError(INVALIDOBJ);
      setRegisters(s, max, settings.sparseMaxBytes);
      invalidateCache(s);
      if (existing === undefined) create(client, key, s);
      else replace(existing, s);
      resp.touch(client.db, key);
      // A PFADD event: PFMERGE is a mass add, as Redis sees it.
      resp.notifyKeyspaceEvent('string', 'pfadd', key, client.db);
      return OK;
    },
  );

  /** PFDEBUG's conversion to dense: replicated (Redis's dirty++) but not signalled (no WATCH). */
  const toDense = (client: RespClient, key: string, hll: StringValue): Buffer => {
    const s = Sds.of(hll.data);
    if (!sparseToDense(s)) throw new RespError(INVALIDOBJ);
    replace(hll, s);
    keyspace.db(client.db).resize(key);
    propagation.dirty++;
    return hll.data;
  };

  resp.command(
    'pfdebug',
    {
      arity: 3,
      flags: ['write', 'admin'],
      keys: [2, 2, 1],
      summary: 'Internal commands for debugging HyperLogLog values',
      group,
      since: '2.8.9',
    },
    (client, argv) => {
      const name = (argv[1] as Buffer).toString('latin1');
      const key = keyOf(argv[2]);
      const value = keyspace.db(client.db).get(key);
      if (value === undefined) throw new RespError('ERR The specified key does not exist');
      const hll = unshared(value);
      const data = hll.data;
      switch (name.toLowerCase()) {
        case 'getreg':
          return registersOf(data[4] === HLL_SPARSE ? toDense(client, key, hll) : data);
        case 'decode':
          if (data[4] !== HLL_SPARSE) throw new RespError('ERR HLL encoding is not sparse');
          return Buffer.from(decodeSparse(data), 'latin1');
        case 'encoding':
          return simple(data[4] === HLL_DENSE ? 'dense' : 'sparse');
        case 'todense':
          if (data[4] !== HLL_SPARSE) return 0;
          toDense(client, key, hll);
          return 1;
        default:
          throw new RespError(`ERR Unknown PFDEBUG subcommand '${name.replace(/[\r\n]/g, ' ')}'`);
      }
    },
  );

  resp.command(
    'pfselftest',
    { arity: 1, flags: ['admin'], summary: 'An internal command for testing HyperLogLog values', group, since: '2.8.9' },
    () => {
      const failure = selfTest(settings.sparseMaxBytes);
      if (failure !== undefined) throw new RespError(`ERR ${failure}`);
      return OK;
    },
  );
}
