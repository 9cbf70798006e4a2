import type { UserStore } from '../sasl/index.js';

// The storage interfaces every XMPP module uses: three shapes, as Prosody's storage API has
// (keyval, map, archive), so that one backend (memory, SQLite, PostgreSQL) serves every module.
// Values are JSON; stanzas are stored as their XML text. Every method is async: a backend may be
// on another host.

/** A JSON value: what a key-value store keeps. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/**
 * Small documents per owner and key: a roster, a vCard, a block list, private XML, a PubSub
 * node's configuration. `owner` is an account's localpart ('' for the server itself).
 */
export interface KeyValueStore {
  get(owner: string, key: string): Promise<JsonValue | undefined>;
  /** Set a value; `undefined` deletes it. */
  set(owner: string, key: string, value: JsonValue | undefined): Promise<void>;
  /** Every key of an owner (with this prefix, when given), sorted. */
  keys(owner: string, prefix?: string): Promise<string[]>;
  /** Delete every key of an owner (account removal). */
  clear(owner: string): Promise<void>;
  /**
   * Set `value` (`undefined` deletes) only if the key still holds `expected` (`undefined`: absent),
   * compared as JSON text; resolves to whether it did. Atomic across every process that shares the store
   * (SQLite's write lock, PostgreSQL's row lock): a read-modify-write that lost a race with another
   * process learns it and runs again ({@link updateValue}), where a get and a set would silently
   * undo the other process's change. Optional for a store of your own: without it, `updateValue`
   * gets and sets (safe within one process only).
   */
  compareAndSet?(owner: string, key: string, expected: JsonValue | undefined, value: JsonValue | undefined): Promise<boolean>;
}

/** One archived stanza. */
export interface ArchiveItem {
  /** Unique within the owner's archive of this store (a stanza-id, an item id). */
  id: string;
  /** Milliseconds since the epoch. */
  when: number;
  /** Who it was exchanged with (a bare JID for MAM), or a node name for PubSub items. */
  with: string;
  /** The stanza or payload, serialized XML. */
  xml: string;
}

/** A query on an archive (XEP-0313 with RSM, XEP-0059). Every bound is optional. */
export interface ArchiveQuery {
  /** Items with exactly this `with`. */
  with?: string;
  /** Items at or after this time (ms). */
  start?: number;
  /** Items at or before this time (ms). */
  end?: number;
  /** Items after the one with this id (in archive order). */
  after?: string;
  /** Items before the one with this id; `''` means "the last page" (RSM `<before/>`). */
  before?: string;
  /** At most this many items (the store caps nothing: the caller does). */
  max?: number;
  /** Only these ids. */
  ids?: string[];
}

export interface ArchiveResult {
  /** Oldest first, whatever the direction of the query. */
  items: ArchiveItem[];
  /** True when no more items match beyond this page in the query's direction (MAM `complete`). */
  complete: boolean;
  /** How many items match the query without paging (`with`, `start`, `end`). */
  count: number;
}

/**
 * Ordered items per owner: the message archive, offline messages, PubSub items. Appends keep
 * archive order; an append with an existing id replaces that item (and moves it to the end).
 */
export interface ArchiveStore {
  append(owner: string, item: ArchiveItem): Promise<void>;
  /**
   * {@link append} for a caller that waits for nothing (a message archived while it is delivered): no
   * promise; the item is written and committed as `append` writes it, and a failure calls `onError`. Pass
   * one function for every call (a store may keep it by identity). Optional: without it, `append` and a catch.
   */
  record?(owner: string, item: ArchiveItem, onError: (error: unknown, owner: string) => void): void;
  query(owner: string, query?: ArchiveQuery): Promise<ArchiveResult>;
  /** Delete items (by ids, with, or older than `end`); no query deletes all of the owner's. Returns how many. */
  delete(owner: string, query?: Pick<ArchiveQuery, 'ids' | 'with' | 'end'>): Promise<number>;
  /** Keep only the newest `keep` items with this `with` (PubSub `max_items`); returns how many were deleted. */
  trim(owner: string, withValue: string, keep: number): Promise<number>;
  /** Delete items older than this time across all owners (retention). Returns how many. */
  expire(before: number): Promise<number>;
}

/**
 * All of an XMPP server's durable state: accounts, and named stores modules ask for by name
 * (`'roster'`, `'vcard'`, `'private'`, `'pep'`, `'blocklist'`, `'mam'`, `'offline'`, `'smacks'`, …).
 * {@link memoryStorage} for tests, `sqliteStorage()` (the default) for a file that survives restarts.
 */
export interface XmppStorage {
  /** Accounts and their SCRAM credentials. */
  readonly users: UserStore;
  /** A key-value store by name (created on first use). */
  keyValue(name: string): KeyValueStore;
  /** An archive store by name (created on first use). */
  archive(name: string): ArchiveStore;
  /** Write everything pending and release the backend. */
  close(): Promise<void>;
  /**
   * Optional: hear when the storage falls behind the server (`true`) and when it caught up (`false`); the
   * server stops reading from its clients meanwhile, so that what waits to be written stays bounded. Returns
   * the unsubscribe. sqliteStorage() on its thread has it.
   */
  onPressure?(listener: (behind: boolean) => void): () => void;
}
