import { RespError } from '@portbind/resp';
import { Deque } from './deque.js';
import { AccessClock, EXACT_UP_TO, elementsOf, estimateSize, exactPartOf } from './eviction.js';
import { SortedSet } from './sorted-set.js';
import type { Stream } from './stream.js';

// The data: 16 numbered databases (SELECT 0–15), each a Map from key to a typed value, plus
// Redis's expiry model: a key with a TTL is deleted when it is next read after its time (lazy),
// and a timer sweeps keys nobody reads (active expiry), a few at a time, ten times a second.
// While the keyspace is frozen (CLIENT PAUSE WRITE or ALL, expire.ts) neither deletes: an expired
// key reads as missing but stays, and no deletion replays, until the pause ends (Redis 7.0's
// checkClientPauseTimeoutAndReturnIfPaused in expireIfNeeded and activeExpireCycle).

export const WRONGTYPE = 'WRONGTYPE Operation against a key holding the wrong kind of value';

/**
 * What a key holds, by type. Keys, hash fields and set members are `latin1` strings, one
 * character per byte, so any binary key round-trips; values are Buffers, copied out of the
 * network buffer.
 */
export interface Types {
  string: Buffer;
  list: Deque<Buffer>;
  hash: Map<string, Buffer>;
  set: Set<string>;
  zset: SortedSet;
  stream: Stream;
}
export type TypeName = keyof Types;
/**
 * A stored value: `{ type: 'list', data: [...] }` and so on. The database stamps `lru` (Redis's
 * 24-bit LRU clock or LFU fields, eviction.ts) and `bytes` (its size estimate) when it stores it.
 */
export type Value = { [T in TypeName]: { type: T; data: Types[T]; lru?: number; bytes?: number } }[TypeName];

/** A deep copy of a value (COPY): changing one leaves the other as it was. */
export function copyValue(value: Value): Value {
  switch (value.type) {
    case 'string':
      return { type: 'string', data: Buffer.from(value.data) };
    case 'list':
      return { type: 'list', data: new Deque(value.data) };
    case 'hash':
      return { type: 'hash', data: new Map(value.data) };
    case 'set':
      return { type: 'set', data: new Set(value.data) };
    case 'zset':
      return { type: 'zset', data: value.data.clone() };
    case 'stream':
      return { type: 'stream', data: value.data.clone() };
  }
}

/** A key (or field, or member) from a command argument. */
export const keyOf = (arg: Buffer | undefined): string => (arg as Buffer).toString('latin1');

/** A key back to the bytes the client sent. */
export const bytesOf = (key: string): Buffer => Buffer.from(key, 'latin1');

/** Each value's last exact size count (Database.resize): writes since, elements and bytes then (less the exact part). */
const counted = new WeakMap<Value, { writes: number; elements: number; bytes: number }>();

/** One numbered database. */
export class Database {
  values = new Map<string, Value>();
  /** When keys with a TTL expire (ms since the epoch), like Redis's `expires` dict. */
  expires = new Map<string, number>();
  /** The running size estimate of this database's keys and values (what maxmemory is compared with). */
  bytes = 0;
  /** The access clock every read and write stamps on a value (LRU/LFU, eviction.ts). */
  readonly access: AccessClock;
  /** Called when a key is deleted because it expired (mini-redis tells WATCH, as Redis does). */
  readonly #onExpired: (key: string) => void;
  /** Called when a key is added (keyspace notifications' `new`). */
  readonly #onNew: (key: string) => void;
  /** Whether expired keys must stay for now (a client pause): read as missing, not deleted. */
  readonly #frozen: () => boolean;
  #sweep: Iterator<[string, number]> | undefined;

  constructor(
    onExpired: (key: string) => void = () => {},
    onNew: (key: string) => void = () => {},
    access: AccessClock = new AccessClock(),
    frozen: () => boolean = () => false,
  ) {
    this.#onExpired = onExpired;
    this.#onNew = onNew;
    this.access = access;
    this.#frozen = frozen;
  }

  /** The value of a key, or undefined. An expired key is deleted now (lazy expiry). A read stamps the access clock. */
  get(key: string): Value | undefined {
    const value = this.peek(key);
    if (value !== undefined) this.access.touch(value);
    return value;
  }

  /**
   * Like `get` without touching the access clock (Redis's LOOKUP_NOTOUCH: OBJECT, TYPE, TTL). An
   * expired key is missing; it is deleted unless the keyspace is frozen (a client pause).
   */
  peek(key: string): Value | undefined {
    const expiresAt = this.expires.get(key);
    if (expiresAt !== undefined && expiresAt <= Date.now()) {
      if (this.#frozen()) return undefined;
      this.delete(key);
      this.#onExpired(key);
      return undefined;
    }
    return this.values.get(key);
  }

  /**
   * After a write to a key's value in place: its size estimate again. A collection of up to
   * EXACT_UP_TO (32) elements is counted whole. A bigger one is counted whole again once the writes
   * since its last count reach an eighth of its size (O(8) amortized per write); in between, its
   * last exact count is scaled by the change in its number of elements. A sample alone would let
   * a client choose what is sampled: five small elements first, then big ones, and maxmemory
   * would see a few KB of many MB.
   */
  resize(key: string): void {
    const value = this.values.get(key);
    if (value === undefined) return;
    if (value.type === 'string') {
      // Exact in O(1): no count to remember (a WeakMap entry per write cost 12 % of a SET).
      const bytes = estimateSize(key, value, true);
      this.bytes += bytes - (value.bytes ?? 0);
      value.bytes = bytes;
      return;
    }
    const n = elementsOf(value);
    const last = counted.get(value);
    const exact = exactPartOf(key, value);
    let bytes: number;
    if (n <= EXACT_UP_TO || last === undefined || last.writes + 1 >= n / 8) {
      bytes = estimateSize(key, value, true);
      counted.set(value, { writes: 0, elements: n, bytes: bytes - exact });
    } else {
      last.writes++;
      bytes = exact + (last.elements === 0 ? last.bytes : Math.max(64 + key.length, (last.bytes * n) / last.elements));
    }
    this.bytes += bytes - (value.bytes ?? 0);
    value.bytes = bytes;
  }

  /** Account a value newly stored under `key`. */
  #stamp(key: string, value: Value, replaced: Value | undefined): void {
    // Redis's dbSetValue: an overwrite keeps the old value's LFU counter under an LFU policy.
    value.lru = replaced !== undefined && this.access.lfu ? replaced.lru : this.access.initial();
    // A value stored whole is counted whole: making it cost O(n) already. A string's count is exact
    // in O(1) every time (resize counts it whole), so it needs no entry: a WeakMap entry per SET
    // was 12 % of a SET's CPU.
    const bytes = estimateSize(key, value, true);
    if (value.type !== 'string') counted.set(value, { writes: 0, elements: elementsOf(value), bytes: bytes - exactPartOf(key, value) });
    this.bytes += bytes - (replaced?.bytes ?? 0);
    value.bytes = bytes;
  }

  /** The data of a key of the given type, undefined when missing, WRONGTYPE for another type. */
  read<T extends TypeName>(key: string, type: T): Types[T] | undefined {
    const value = this.get(key);
    if (value === undefined) return undefined;
    if (value.type !== type) throw new RespError(WRONGTYPE);
    return value.data as Types[T];
  }

  /** Like `read`, but a missing key becomes an empty list, hash, set or sorted set (LPUSH, HSET, SADD, ZADD). */
  readOrCreate<T extends 'list' | 'hash' | 'set' | 'zset'>(key: string, type: T): Types[T] {
    const existing = this.read(key, type);
    if (existing !== undefined) return existing;
    // An expired key kept by a pause is replaced whole (its TTL and size go with it).
    if (this.values.has(key)) this.delete(key);
    const data = type === 'list' ? new Deque<Buffer>() : type === 'hash' ? new Map() : type === 'set' ? new Set() : new SortedSet();
    const value = { type, data } as Value;
    this.values.set(key, value);
    this.#stamp(key, value, undefined);
    this.#onNew(key);
    return value.data as Types[T];
  }

  /** Whether a key is there and not past its TTL (it is not deleted if it is). */
  exists(key: string): boolean {
    const expiresAt = this.expires.get(key);
    return this.values.has(key) && (expiresAt === undefined || expiresAt > Date.now());
  }

  /** Store a value. Like Redis's SET, this drops the key's TTL unless `keepTtl`. */
  set(key: string, value: Value, keepTtl = false): void {
    const replaced = this.values.get(key);
    this.values.set(key, value);
    if (replaced !== value) this.#stamp(key, value, replaced);
    if (replaced === undefined) this.#onNew(key);
    if (!keepTtl) this.expires.delete(key);
  }

  /** Delete a key; true if it existed. */
  delete(key: string): boolean {
    this.expires.delete(key);
    const value = this.values.get(key);
    if (value === undefined) return false;
    this.bytes -= value.bytes ?? 0;
    return this.values.delete(key);
  }

  /** Lists, hashes, sets and sorted sets never stay empty in Redis: the last element out deletes the key. */
  deleteIfEmpty(key: string, data: { readonly length: number } | { readonly size: number }): void {
    if (('length' in data ? data.length : data.size) === 0) this.delete(key);
  }

  /** HDEL and SREM: remove fields or members; the key goes when it empties. Returns how many went. */
  removeMembers(key: string, type: 'hash' | 'set', names: readonly string[]): number {
    const collection = this.read(key, type);
    if (collection === undefined) return 0;
    const removed = names.filter((name) => collection.delete(name)).length;
    this.deleteIfEmpty(key, collection);
    return removed;
  }

  /** Give an existing key a TTL: `at` in ms since the epoch. */
  expireAt(key: string, at: number): void {
    this.expires.set(key, at);
  }

  /** Remove a key's TTL; true if it had one. */
  persist(key: string): boolean {
    return this.expires.delete(key);
  }

  /** Number of keys, counting expired ones not yet swept (as DBSIZE does in Redis). */
  get size(): number {
    return this.values.size;
  }

  /** SWAPDB: exchange every key and TTL with another database. */
  swapWith(other: Database): void {
    [this.values, other.values] = [other.values, this.values];
    [this.expires, other.expires] = [other.expires, this.expires];
    [this.bytes, other.bytes] = [other.bytes, this.bytes];
    this.#sweep = undefined;
    other.#sweep = undefined;
  }

  clear(): void {
    this.values.clear();
    this.expires.clear();
    this.bytes = 0;
  }

  /**
   * Active expiry: look at up to `budget` keys that have a TTL, carrying on where the last sweep
   * stopped (a Map iterator survives deletes and inserts), and delete the expired ones.
   * Returns how many keys it looked at and how many it deleted.
   */
  sweep(budget: number, now = Date.now()): { checked: number; deleted: number } {
    let checked = 0;
    let deleted = 0;
    while (checked < budget) {
      this.#sweep ??= this.expires.entries();
      const next = this.#sweep.next();
      if (next.done) {
        this.#sweep = undefined;
        break;
      }
      checked++;
      const [key, expiresAt] = next.value;
      if (expiresAt <= now) {
        this.delete(key);
        this.#onExpired(key);
        deleted++;
      }
    }
    return { checked, deleted };
  }
}

/** Every database, and the timer of active expiry. */
export class Keyspace {
  readonly databases: Database[];
  /** Redis's `hz`: active expiry runs this many times a second (1–500). */
  #hz = 10;
  #timer: NodeJS.Timeout | undefined;
  /** The access clock (LRU/LFU) every database stamps values with. */
  readonly access = new AccessClock();

  /** `onExpired(db, key)`: a key was deleted because its time had come; `onNew(db, key)`: a key was added. */
  constructor(count = 16, onExpired: (db: number, key: string) => void = () => {}, onNew: (db: number, key: string) => void = () => {}) {
    this.databases = Array.from(
      { length: count },
      (_, index) =>
        new Database(
          (key) => onExpired(index, key),
          (key) => onNew(index, key),
          this.access,
          () => this.frozen(),
        ),
    );
  }

  db(index: number): Database {
    return this.databases[index] as Database;
  }

  get hz(): number {
    return this.#hz;
  }

  /** Whether expired keys stay for now (set by expire.ts: a CLIENT PAUSE WRITE or ALL is on). */
  frozen: () => boolean = () => false;

  /** Start (or restart at a new `hz`) the active expiry timer. */
  startExpiry(hz = this.#hz): void {
    this.#hz = Math.min(Math.max(hz, 1), 500);
    this.stopExpiry();
    this.#timer = setInterval(() => this.#expireCycle(), 1000 / this.#hz);
    this.#timer.unref();
  }

  stopExpiry(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /**
   * Like Redis's activeExpireCycle: check 20 keys with a TTL per database and go on while more
   * than a quarter of them had expired, spending at most a quarter of the tick.
   */
  #expireCycle(): void {
    this.access.tick();
    if (this.frozen()) return; // the dataset stays as it is during a client pause
    const deadline = performance.now() + 250 / this.#hz;
    for (const db of this.databases) {
      for (;;) {
        const { checked, deleted } = db.sweep(20);
        if (checked === 0 || deleted <= checked / 4 || performance.now() > deadline) break;
      }
    }
  }
}

/**
 * The keys of a `numkeys key…` command (ZUNION, SINTERCARD…), for client-side caching: the count at
 * `index`, the keys after it; none when the count is not a valid one (the command failed anyway).
 */
export const numkeysKeys =
  (index: number) =>
  (argv: readonly Buffer[]): Buffer[] => {
    const text = argv[index]?.toString('latin1') ?? '';
    const count = /^[1-9]\d{0,9}$/.test(text) ? Number(text) : 0;
    if (count === 0 || index + count >= argv.length) return [];
    return argv.slice(index + 1, index + 1 + count) as Buffer[];
  };
