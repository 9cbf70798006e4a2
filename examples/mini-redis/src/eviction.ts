import type { MiniRedis } from './app.js';
import { integer } from './config.js';
import type { Database, Keyspace, Value } from './store.js';

// maxmemory eviction as Redis 7.0's evict.c. Each value carries Redis's 24-bit `lru` field: the
// LRU clock (seconds, 24 bits, wrapping every 194 days) when it was last read or written, or,
// under an LFU policy, the minute of its last access (16 bits) and a logarithmic access counter
// (8 bits). Before a command that may use more memory runs while the dataset is over maxmemory,
// keys are evicted by the policy until it is under (or nothing is left to evict: -OOM).
//
// Like Redis, the choice is approximate: each round samples `maxmemory-samples` keys (of all keys
// or of those with a TTL) and keeps the best candidates in a pool of 16 across rounds; the best one
// left in the pool goes. Redis samples a run of neighbouring hash buckets from a random place; a
// JavaScript Map has no random access, so mini-redis samples a run of neighbouring keys from a
// cursor that walks each Map round and round (and skips a random few for the random policies).
//
// The memory compared with maxmemory is the heap mini-redis had when it started (its code and
// structures: INFO's used_memory_startup) plus a running estimate of the data (used_memory_dataset),
// kept up to date on every write in O(1) (store.ts, estimateSize). Not the heap in use now: that
// costs ~7 µs to read (process.memoryUsage(), before every write command) and, worse, does not
// fall when keys are deleted until the garbage collector runs, so an eviction loop watching it
// would evict every key. As in Redis, a maxmemory below the startup figure means always -OOM.

export const POLICIES = [
  'volatile-lru',
  'volatile-lfu',
  'volatile-random',
  'volatile-ttl',
  'allkeys-lru',
  'allkeys-lfu',
  'allkeys-random',
  'noeviction',
] as const;
export type EvictionPolicy = (typeof POLICIES)[number];

const LRU_CLOCK_MAX = (1 << 24) - 1;
/** A new key's LFU counter (Redis's LFU_INIT_VAL): new keys are not evicted at once. */
const LFU_INIT_VAL = 5;
const POOL_SIZE = 16;

/** The clock each access stamps on a value: LRU seconds, or LFU minutes and counter. */
export class AccessClock {
  /** Under an LFU policy, `lru` holds the LFU fields. */
  lfu = false;
  /** `lfu-log-factor`: how many hits it takes to grow the counter (10: 1M hits for 255). */
  logFactor = 10;
  /** `lfu-decay-time`: an idle key's counter drops by one every this many minutes (0: never). */
  decayTime = 1;
  /** The LRU clock (seconds), refreshed by the keyspace's timer as Redis's serverCron does. */
  #seconds = Math.floor(Date.now() / 1000);

  /** Refresh the cached clock (ten times a second with the expiry timer). */
  tick(now = Date.now()): void {
    this.#seconds = Math.floor(now / 1000);
  }

  #lruClock(): number {
    return this.#seconds & LRU_CLOCK_MAX;
  }

  #minutes(): number {
    return Math.floor(this.#seconds / 60) & 65535;
  }

  /** The field of a value created now (Redis's createObject). */
  initial(): number {
    return this.lfu ? (this.#minutes() << 8) | LFU_INIT_VAL : this.#lruClock();
  }

  /** A read or write of the value (Redis's lookupKey: LRU clock, or updateLFU). */
  touch(value: Value): void {
    if (!this.lfu) {
      value.lru = this.#lruClock();
      return;
    }
    let counter = this.frequency(value);
    if (counter < 255) {
      const base = Math.max(counter - LFU_INIT_VAL, 0);
      if (Math.random() < 1 / (base * this.logFactor + 1)) counter++;
    }
    value.lru = (this.#minutes() << 8) | counter;
  }

  /** Milliseconds since the last access, at the clock's 1 s resolution (estimateObjectIdleTime). */
  idleMs(value: Value): number {
    const lru = value.lru ?? 0;
    const clock = this.#lruClock();
    return (clock >= lru ? clock - lru : clock + (LRU_CLOCK_MAX - lru)) * 1000;
  }

  /** The LFU counter after its decay for the periods the value sat idle (LFUDecrAndReturn). */
  frequency(value: Value): number {
    const lru = value.lru ?? 0;
    const ldt = lru >> 8;
    const counter = lru & 255;
    const now = this.#minutes();
    const elapsed = now >= ldt ? now - ldt : 65535 - ldt + now;
    const periods = this.decayTime > 0 ? Math.floor(elapsed / this.decayTime) : 0;
    return periods > counter ? 0 : counter - periods;
  }
}

/** Collections up to this size are always counted element by element. */
export const EXACT_UP_TO = 32;

/**
 * The size estimate of a key and its value, in bytes, for the running total maxmemory is compared
 * with: a fixed overhead per key and element plus the bytes held. `exact` (and any collection of
 * up to EXACT_UP_TO elements) counts every element; otherwise up to 5 are sampled, as MEMORY USAGE
 * does, so that it costs O(1). A sample is no defence against a client that chooses which elements
 * are sampled (five small ones first, then big ones), so the keyspace only uses it between exact
 * counts (store.ts, Database.resize).
 */
export function estimateSize(key: string, value: Value, exact = false): number {
  const overhead = 64 + key.length;
  switch (value.type) {
    case 'string':
      return overhead + value.data.length;
    case 'list': {
      const list = value.data;
      const n = list.length;
      if (n === 0) return overhead;
      const take = exact || n <= EXACT_UP_TO ? n : 5;
      let sampled = 0;
      for (let i = 0; i < take; i++) sampled += (list.at(i) as Buffer).length;
      return overhead + n * 16 + (n * sampled) / take;
    }
    case 'hash':
      return overhead + sampleMap(value.data.size, value.data.entries(), ([field, data]) => 48 + field.length + data.length, exact);
    case 'set':
      return overhead + sampleMap(value.data.size, value.data.values(), (member) => 32 + member.length, exact);
    case 'zset':
      return overhead + sampleMap(value.data.size, value.data.scores.keys(), (member) => 96 + member.length, exact);
    case 'stream': {
      // Consumer groups, their consumers and pending entries cost memory too (a client could make
      // 100k groups and the entries alone would say ~100 bytes): measured with --expose-gc, a
      // group ~580 bytes, a pending entry ~180 (its NACK, its slots in the group's and the
      // consumer's indexes), a consumer ~250 and its name.
      let groups = 0;
      for (const [name, group] of value.data.groups) {
        groups += GROUP_COST + name.length + group.pel.size * NACK_COST;
        for (const consumerName of group.consumers.keys()) groups += CONSUMER_COST + consumerName.length;
      }
      return overhead + value.data.bytes + groups;
    }
  }
}

/** The part of a value's estimate that is exact in O(1) (a stream's entries), not scaled between counts. */
export function exactPartOf(key: string, value: Value): number {
  return value.type === 'stream' ? 64 + key.length + value.data.bytes : 0;
}

const GROUP_COST = 580;
const NACK_COST = 180;
const CONSUMER_COST = 250;

/**
 * The number of elements of a collection, what an exact count walks: a stream's consumer groups
 * (its entries' size is kept exact as they come and go), 1 for a string.
 */
export function elementsOf(value: Value): number {
  switch (value.type) {
    case 'stream':
      return value.data.groups.size;
    case 'list':
      return value.data.length;
    case 'hash':
    case 'set':
    case 'zset':
      return value.data.size;
    default:
      return 1;
  }
}

function sampleMap<T>(size: number, items: Iterator<T>, cost: (item: T) => number, exact: boolean): number {
  if (size === 0) return 0;
  const limit = exact || size <= EXACT_UP_TO ? size : 5;
  let sampled = 0;
  let taken = 0;
  for (let next = items.next(); !next.done && taken < limit; next = items.next(), taken++) sampled += cost(next.value);
  return (size * sampled) / taken;
}

interface Candidate {
  score: number;
  key: string;
  db: number;
}

/** The eviction policy, its pool of candidates and its counters. */
export class Eviction {
  policy: EvictionPolicy = 'noeviction';
  /** `maxmemory-samples`: keys looked at per eviction round (Redis's default 5). */
  samples = 5;
  /** INFO stats `evicted_keys`. */
  evictedKeys = 0;
  readonly #keyspace: Keyspace;
  readonly #limits: { maxmemory: number };
  readonly #onEvicted: (db: number, key: string) => void;
  /** Best candidates so far, lowest score first (Redis's EvictionPoolLRU). */
  #pool: Candidate[] = [];
  /** A sampling cursor per Map of keys (values or expires). */
  readonly #cursors = new WeakMap<Map<string, unknown>, Iterator<string>>();
  /** Where the random policies look next (Redis's static next_db). */
  #nextDb = 0;
  /** The heap in use at start (INFO's used_memory_startup). */
  readonly startup = process.memoryUsage().heapUsed;

  constructor(keyspace: Keyspace, limits: { maxmemory: number }, onEvicted: (db: number, key: string) => void) {
    this.#keyspace = keyspace;
    this.#limits = limits;
    this.#onEvicted = onEvicted;
  }

  /** Change the policy: LFU policies keep frequencies in the access clock. */
  setPolicy(policy: EvictionPolicy): void {
    this.policy = policy;
    this.#keyspace.access.lfu = policy.endsWith('-lfu');
    this.#pool = [];
  }

  /** The memory maxmemory is compared with: the startup heap plus the running estimate of the data. */
  used(): number {
    return this.startup + this.dataset();
  }

  /** The running size estimate of every database's data. */
  dataset(): number {
    let bytes = 0;
    for (const db of this.#keyspace.databases) bytes += db.bytes;
    return bytes;
  }

  /** Whether the data is over maxmemory. */
  over(): boolean {
    return this.#limits.maxmemory > 0 && this.used() > this.#limits.maxmemory;
  }

  /**
   * Redis's performEvictions: evict keys by the policy until the data fits in maxmemory. False
   * when it is still over and nothing more can go (the caller answers -OOM).
   */
  perform(): boolean {
    // During a client pause (WRITE or ALL) the dataset stays as it is: nothing evicted and no -OOM
    // (7.0's isSafeToPerformEvictions); the writes the pause held run, and evict, once it ends.
    if (this.#keyspace.frozen()) return true;
    const max = this.#limits.maxmemory;
    if (max === 0) return true;
    let used = this.used();
    if (used <= max) return true;
    if (this.policy === 'noeviction') return false;
    while (used > max) {
      const found = this.policy.endsWith('-random') ? this.#random() : this.#best();
      if (found === undefined) return false;
      const db = this.#keyspace.db(found.db);
      const before = db.bytes;
      db.delete(found.key);
      used -= before - db.bytes;
      this.evictedKeys++;
      this.#onEvicted(found.db, found.key);
    }
    return true;
  }

  /** The keys a policy chooses among in a database: all of them, or those with a TTL. */
  #dict(db: Database): Map<string, unknown> {
    return this.policy.startsWith('allkeys') ? db.values : db.expires;
  }

  /** Up to `count` neighbouring keys from the Map's cursor, wrapping around at most once. */
  #sample(dict: Map<string, unknown>, count: number, skip = 0): string[] {
    const keys: string[] = [];
    let wrapped = false;
    let cursor = this.#cursors.get(dict) ?? dict.keys();
    while (keys.length < Math.min(count, dict.size)) {
      const next = cursor.next();
      if (next.done) {
        cursor = dict.keys();
        if (wrapped) break;
        wrapped = true;
        continue;
      }
      if (skip > 0) skip--;
      else keys.push(next.value);
    }
    this.#cursors.set(dict, cursor);
    return keys;
  }

  /** The LRU, LFU and TTL policies: fill the pool from every database, take its best key still there. */
  #best(): Candidate | undefined {
    const access = this.#keyspace.access;
    for (;;) {
      let sampled = 0;
      this.#keyspace.databases.forEach((db, index) => {
        const dict = this.#dict(db);
        if (dict.size === 0) return;
        for (const key of this.#sample(dict, this.samples)) {
          sampled++;
          let score: number;
          if (this.policy === 'volatile-ttl') score = -(db.expires.get(key) ?? 0);
          else {
            const value = db.values.get(key);
            if (value === undefined) continue;
            score = this.policy.endsWith('-lru') ? access.idleMs(value) : 255 - access.frequency(value);
          }
          this.#insert({ score, key, db: index });
        }
      });
      if (sampled === 0) return undefined;
      // The best candidate that still exists (a pooled key may have gone since).
      while (this.#pool.length > 0) {
        const candidate = this.#pool.pop() as Candidate;
        if (this.#dict(this.#keyspace.db(candidate.db)).has(candidate.key)) return candidate;
      }
    }
  }

  /** Into the pool, kept sorted by score, at most 16: a worse key than all of a full pool is dropped. */
  #insert(candidate: Candidate): void {
    const pool = this.#pool;
    if (pool.some((other) => other.key === candidate.key && other.db === candidate.db)) return;
    let at = 0;
    while (at < pool.length && (pool[at] as Candidate).score < candidate.score) at++;
    if (pool.length >= POOL_SIZE) {
      if (at === 0) return;
      pool.shift();
      at--;
    }
    pool.splice(at, 0, candidate);
  }

  /** The random policies: a key from the next database that has any. */
  #random(): Candidate | undefined {
    const count = this.#keyspace.databases.length;
    for (let i = 0; i < count; i++) {
      const index = (this.#nextDb + i) % count;
      const dict = this.#dict(this.#keyspace.db(index));
      if (dict.size === 0) continue;
      this.#nextDb = (index + 1) % count;
      const [key] = this.#sample(dict, 1, Math.floor(Math.random() * Math.min(dict.size, 16)));
      if (key !== undefined) return { score: 0, key, db: index };
    }
    return undefined;
  }
}

/** The eviction CONFIG parameters and INFO fields (`maxmemory-policy`, `evicted_keys`…). */
export function registerEviction(server: MiniRedis, eviction: Eviction): void {
  const { config, info, keyspace, memory: limits } = server;
  const sizeSetting = config.get('maxmemory');
  // CONFIG SET maxmemory evicts at once when the data is over the new limit, as Redis's updateMaxmemory.
  config.set('maxmemory', {
    get: () => String(limits.maxmemory),
    set(value) {
      sizeSetting?.set?.(value);
      eviction.perform();
    },
  });
  config.set('maxmemory-policy', {
    get: () => eviction.policy,
    set(value) {
      const policy = POLICIES.find((name) => name === value.toLowerCase());
      if (policy === undefined) throw new Error('argument(s) must be one of the following: ' + POLICIES.join(', '));
      eviction.setPolicy(policy);
    },
  });
  config.set(
    'maxmemory-samples',
    integer(
      1,
      2147483647,
      () => eviction.samples,
      (value) => {
        eviction.samples = value;
      },
    ),
  );
  config.set(
    'lfu-log-factor',
    integer(
      0,
      2147483647,
      () => keyspace.access.logFactor,
      (value) => {
        keyspace.access.logFactor = value;
      },
    ),
  );
  config.set(
    'lfu-decay-time',
    integer(
      0,
      2147483647,
      () => keyspace.access.decayTime,
      (value) => {
        keyspace.access.decayTime = value;
      },
    ),
  );
  const memorySection = info.get('memory');
  info.set('memory', () => ({
    ...memorySection?.(),
    used_memory_startup: eviction.startup,
    used_memory_dataset: Math.round(eviction.dataset()),
    maxmemory: limits.maxmemory,
    maxmemory_policy: eviction.policy,
  }));
  const statsSection = info.get('stats');
  info.set('stats', () => ({ ...statsSection?.(), evicted_keys: eviction.evictedKeys }));
}
