import { getHeapStatistics } from 'node:v8';
import { OK, RespError } from '@portbind/resp';
import type { MiniRedis } from '../app.js';
import { int64Arg } from '../numbers.js';
import { dumpPayload, RdbError, restorePayload, verifyDumpPayload } from '../rdb.js';
import { snapshotState } from '../snapshot.js';
import { keyOf } from '../store.js';

// DUMP and RESTORE with Redis's payload (the RDB serialization of one value, the RDB version in
// two bytes and a CRC-64: rdb.ts), so a value dumped from a real Redis 7.0 restores here and the
// other way round. Errors and their order as Redis 7.0.15's restoreCommand (cluster.c).

const group = 'generic';
const OOM = "OOM command not allowed when used memory > 'maxmemory'.";
const upper = (arg: Buffer | undefined): string => (arg as Buffer).toString('latin1').toUpperCase();

export function registerDumpCommands(server: MiniRedis): void {
  const { resp, keyspace, blocked, propagation } = server;
  const state = snapshotState(server);

  // Redis's deep check of a RESTORE payload (sanitize-dump-payload yes). mini-redis always reads a
  // payload whole into its own structures, checking every length and count as it goes, so each
  // value is as safe as Redis's `yes`; the setting is kept for clients and tests that set it.
  let sanitize = 'no';
  server.config.set('sanitize-dump-payload', {
    get: () => sanitize,
    set(value) {
      const lower = value.toLowerCase();
      if (!['no', 'yes', 'clients'].includes(lower)) throw new Error('argument(s) must be one of the following: no, yes, clients');
      sanitize = lower;
    },
  });

  resp.command(
    'dump',
    {
      arity: 2,
      flags: ['readonly'],
      keys: [1, 1, 1],
      summary: 'Returns a serialized representation of the value stored at a key.',
      group,
    },
    (client, argv) => {
      const value = keyspace.db(client.db).get(keyOf(argv[1]));
      return value === undefined ? null : dumpPayload(value, state.compression);
    },
  );

  /**
   * The most a restored value may cost: what maxmemory leaves (when set), and in any case what the
   * heap has left before V8's limit with a quarter of it kept free — a value decodes to up to ~60×
   * its payload (rdb.ts, ELEMENT_COST), and past V8's limit the process ends for every client.
   */
  const restoreBudget = (): number => {
    const heap = getHeapStatistics();
    let budget = heap.heap_size_limit * 0.75 - heap.used_heap_size;
    const { maxmemory } = server.memory;
    if (maxmemory > 0) {
      const memory = server.info.get('memory')?.() ?? {};
      const used = Number(memory['used_memory_startup'] ?? 0) + Number(memory['used_memory_dataset'] ?? 0);
      budget = Math.min(budget, maxmemory - used);
    }
    return Math.max(budget, 0);
  };

  resp.command(
    'restore',
    {
      arity: -4,
      // Redis flags RESTORE CMD_DENYOOM: past maxmemory it is -OOM (after eviction) like any write that grows.
      flags: ['write', 'denyoom'],
      keys: [1, 1, 1],
      summary: 'Creates a key from the serialized representation of a value.',
      group,
    },
    (client, argv) => {
      let replace = false;
      let absolute = false;
      let idle = -1n;
      let freq = -1n;
      for (let i = 4; i < argv.length; i++) {
        const option = upper(argv[i]);
        const more = argv.length - i - 1;
        if (option === 'REPLACE') replace = true;
        else if (option === 'ABSTTL') absolute = true;
        else if (option === 'IDLETIME' && more >= 1 && freq === -1n) {
          idle = int64Arg(argv[++i]);
          if (idle < 0n) throw new RespError('ERR Invalid IDLETIME value, must be >= 0');
        } else if (option === 'FREQ' && more >= 1 && idle === -1n) {
          freq = int64Arg(argv[++i]);
          if (freq < 0n || freq > 255n) throw new RespError('ERR Invalid FREQ value, must be >= 0 and <= 255');
        } else throw new RespError('ERR syntax error');
      }
      const key = keyOf(argv[1]);
      const db = keyspace.db(client.db);
      if (!replace && db.get(key) !== undefined) throw new RespError('BUSYKEY Target key name already exists.');
      let ttl = int64Arg(argv[2]);
      if (ttl < 0n) throw new RespError('ERR Invalid TTL value, must be >= 0');
      const payload = argv[3] as Buffer;
      if (!verifyDumpPayload(payload)) throw new RespError('ERR DUMP payload version or checksum are wrong');
      let value: ReturnType<typeof restorePayload>;
      try {
        value = restorePayload(payload, restoreBudget());
      } catch (error) {
        if (error instanceof RdbError && error.reason === 'too-big') throw new RespError(OOM);
        throw new RespError('ERR Bad data format');
      }
      const deleted = replace && db.delete(key);
      const now = Date.now();
      if (ttl !== 0n && !absolute) ttl += BigInt(now);
      if (ttl !== 0n && ttl <= BigInt(now)) {
        // Already past its time: the key is not created (and a replaced one is gone).
        if (deleted) {
          propagation.rewrite(['DEL', argv[1] as Buffer]);
          resp.touch(client.db, key);
          resp.notifyKeyspaceEvent('generic', 'del', key, client.db);
        }
        return OK;
      }
      db.set(key, value);
      if (ttl !== 0n) {
        db.expireAt(key, Number(ttl));
        // Replicas and the AOF get the absolute time (Redis rewrites the TTL and appends ABSTTL).
        if (!absolute) propagation.rewrite([...argv.slice(0, 2), Buffer.from(String(ttl)), ...argv.slice(3), Buffer.from('ABSTTL')]);
      }
      // Redis's objectSetLRUOrLFU: FREQ sets the LFU counter under an LFU policy, IDLETIME the LRU
      // clock otherwise (an option that does not fit the policy is accepted and ignored).
      const clock = db.access;
      if (clock.lfu && freq >= 0n) value.lru = (clock.initial() & ~255) | Number(freq);
      else if (!clock.lfu && idle >= 0n) {
        const now = clock.initial();
        const idleSeconds = Number(idle > 16_777_215n ? 16_777_215n : idle);
        value.lru = now - idleSeconds >= 0 ? now - idleSeconds : (now + 8_388_607) % 16_777_215;
      }
      resp.touch(client.db, key);
      resp.notifyKeyspaceEvent('generic', 'restore', key, client.db);
      if (value.type === 'list' || value.type === 'zset') blocked.signal(client.db, key);
      return OK;
    },
  );
}
