import { MemoryUserStore, type MemoryUserStoreOptions } from '../sasl/credentials.js';
import { StanzaErrorException } from '../stanza-error.js';
import type { ArchiveItem, ArchiveQuery, ArchiveResult, ArchiveStore, JsonValue, KeyValueStore, XmppStorage } from './types.js';

// Storage in memory, for tests: the reference semantics the SQLite backend is tested against
// (test/stores.test.ts runs one suite on both).

/** Options of the {@link MemoryUserStore} of `users`: PBKDF2 `iterations` (as sqliteStorage's), a `users` map to seed accounts. */
export type MemoryStorageOptions = MemoryUserStoreOptions;

/** Every store in memory: nothing survives the process. For tests. */
export function memoryStorage(options: MemoryStorageOptions = {}): XmppStorage {
  return new MemoryStorage(options);
}

class MemoryStorage implements XmppStorage {
  readonly users: MemoryUserStore;
  readonly #keyValues = new Map<string, MemoryKeyValueStore>();
  readonly #archives = new Map<string, MemoryArchiveStore>();

  constructor(options: MemoryStorageOptions) {
    this.users = new MemoryUserStore(options);
  }

  keyValue(name: string): KeyValueStore {
    let store = this.#keyValues.get(name);
    if (store === undefined) {
      store = new MemoryKeyValueStore();
      this.#keyValues.set(name, store);
    }
    return store;
  }

  archive(name: string): ArchiveStore {
    let store = this.#archives.get(name);
    if (store === undefined) {
      store = new MemoryArchiveStore();
      this.#archives.set(name, store);
    }
    return store;
  }

  async close(): Promise<void> {}
}

/** The order keys are listed in, by both backends: UTF-16 code units, as `Array.prototype.sort()`. */
export function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The error a query with an `after` or `before` id that is not in the archive gets: `item-not-found`,
 * the error XEP-0059 (RSM) and XEP-0313 (MAM) give for a page that does not exist. A module that lets it
 * propagate answers the IQ with it.
 */
export function cursorNotFound(id: string): StanzaErrorException {
  return new StanzaErrorException('item-not-found', `no item ${JSON.stringify(id)} in this archive`);
}

/** `max` as a count: undefined for "no limit", otherwise a non-negative integer. */
export function pageSize(max: number | undefined): number | undefined {
  if (max === undefined || Number.isNaN(max) || max === Number.POSITIVE_INFINITY) return undefined;
  return Math.max(0, Math.floor(max));
}

class MemoryKeyValueStore implements KeyValueStore {
  readonly #owners = new Map<string, Map<string, string>>();

  async get(owner: string, key: string): Promise<JsonValue | undefined> {
    const text = this.#owners.get(owner)?.get(key);
    return text === undefined ? undefined : (JSON.parse(text) as JsonValue);
  }

  async set(owner: string, key: string, value: JsonValue | undefined): Promise<void> {
    if (value === undefined) {
      const values = this.#owners.get(owner);
      values?.delete(key);
      if (values?.size === 0) this.#owners.delete(owner);
      return;
    }
    const text = JSON.stringify(value);
    let values = this.#owners.get(owner);
    if (values === undefined) {
      values = new Map();
      this.#owners.set(owner, values);
    }
    values.set(key, text);
  }

  async keys(owner: string, prefix = ''): Promise<string[]> {
    const values = this.#owners.get(owner);
    if (values === undefined) return [];
    return [...values.keys()].filter((key) => key.startsWith(prefix)).sort(compareKeys);
  }

  async clear(owner: string): Promise<void> {
    this.#owners.delete(owner);
  }

  async compareAndSet(owner: string, key: string, expected: JsonValue | undefined, value: JsonValue | undefined): Promise<boolean> {
    const current = this.#owners.get(owner)?.get(key);
    if (current !== (expected === undefined ? undefined : JSON.stringify(expected))) return false;
    await this.set(owner, key, value);
    return true;
  }
}

class MemoryArchiveStore implements ArchiveStore {
  /** Per owner, items by id in archive order (a Map keeps insertion order; delete + set moves to the end). */
  readonly #owners = new Map<string, Map<string, ArchiveItem>>();

  async append(owner: string, item: ArchiveItem): Promise<void> {
    let items = this.#owners.get(owner);
    if (items === undefined) {
      items = new Map();
      this.#owners.set(owner, items);
    }
    items.delete(item.id);
    items.set(item.id, { id: item.id, when: item.when, with: item.with, xml: item.xml });
  }

  async query(owner: string, query: ArchiveQuery = {}): Promise<ArchiveResult> {
    const all = [...(this.#owners.get(owner)?.values() ?? [])];
    const position = (id: string): number => {
      const index = all.findIndex((item) => item.id === id);
      if (index < 0) throw cursorNotFound(id);
      return index;
    };
    // Cursors are positions in the whole archive: an `after` id need not match the filters.
    const from = query.after === undefined ? 0 : position(query.after) + 1;
    const to = query.before === undefined || query.before === '' ? all.length : position(query.before);
    const ids = query.ids === undefined ? undefined : new Set(query.ids);
    const matches = (item: ArchiveItem): boolean =>
      (query.with === undefined || item.with === query.with) &&
      (query.start === undefined || item.when >= query.start) &&
      (query.end === undefined || item.when <= query.end) &&
      (ids === undefined || ids.has(item.id));
    const matching = all.filter(matches);
    const range = all.slice(from, Math.max(from, to)).filter(matches);
    const max = pageSize(query.max) ?? range.length;
    const backward = query.before !== undefined;
    const page = backward ? range.slice(Math.max(0, range.length - max)) : range.slice(0, max);
    return { items: page.map((item) => ({ ...item })), complete: range.length <= max, count: matching.length };
  }

  async delete(owner: string, query: Pick<ArchiveQuery, 'ids' | 'with' | 'end'> = {}): Promise<number> {
    const items = this.#owners.get(owner);
    if (items === undefined) return 0;
    const ids = query.ids === undefined ? undefined : new Set(query.ids);
    let deleted = 0;
    for (const item of [...items.values()]) {
      if (
        (ids === undefined || ids.has(item.id)) &&
        (query.with === undefined || item.with === query.with) &&
        (query.end === undefined || item.when <= query.end)
      ) {
        items.delete(item.id);
        deleted++;
      }
    }
    if (items.size === 0) this.#owners.delete(owner);
    return deleted;
  }

  async trim(owner: string, withValue: string, keep: number): Promise<number> {
    const items = this.#owners.get(owner);
    if (items === undefined) return 0;
    const same = [...items.values()].filter((item) => item.with === withValue);
    const excess = same.slice(0, Math.max(0, same.length - Math.max(0, Math.floor(keep))));
    for (const item of excess) items.delete(item.id);
    if (items.size === 0) this.#owners.delete(owner);
    return excess.length;
  }

  async expire(before: number): Promise<number> {
    let deleted = 0;
    for (const [owner, items] of this.#owners) {
      for (const item of [...items.values()]) {
        if (item.when < before) {
          items.delete(item.id);
          deleted++;
        }
      }
      if (items.size === 0) this.#owners.delete(owner);
    }
    return deleted;
  }
}
