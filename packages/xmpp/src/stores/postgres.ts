import { pbkdf2 } from 'node:crypto';
import { promisify } from 'node:util';
import { PortbindError } from '@portbind/core';
import pg from 'pg';
import { XmppConfigError } from '../config-error.js';
import { DEFAULT_ITERATIONS, deriveStoredUser, normalizeUsername, type StoredUser, type UserStore } from '../sasl/credentials.js';
import { SaslprepError } from '../sasl/saslprep.js';
import { StanzaErrorException } from '../stanza-error.js';
import { compareKeys, cursorNotFound, pageSize } from './memory.js';
import { type PostgresMigration, postgresMigrations } from './postgres-migrations.js';
import { PressureSignal } from './pressure.js';
import type { ArchiveItem, ArchiveQuery, ArchiveResult, ArchiveStore, JsonValue, KeyValueStore, XmppStorage } from './types.js';
import { casTexts } from './update.js';

// Durable storage in PostgreSQL (node-postgres, a Pool), shared by several hosts: the same store interfaces
// and the same semantics as sqliteStorage (the conformance suite of test/stores.test.ts runs on both).
//
// Order: calls on one owner of one store (one account for `users`) run in the order they were made, each
// after the one before it settled, so that a read called after a write sees it, as with SQLite's single
// queue; calls on different owners run side by side on the pool's connections. Archive appends (append()
// and record()) of one turn of the event loop go to the database in one INSERT (rows as arrays, unnest()).
// A lost connection makes calls reject with a StorageUnavailableError (a stanza error: modules that let it
// propagate answer `<internal-server-error/>`); the pool opens new connections by itself for later calls.

export interface PostgresStorageOptions {
  /** `postgres://user:password@host:port/database` (node-postgres' connection string). Give this or `pool`. */
  url?: string;
  /**
   * A pool of your own (`new pg.Pool({ … })`) instead of `url`. It stays yours: close() does not end it. The
   * storage listens to its `error` events (a connection that broke while idle), so that they do not crash the process.
   */
  pool?: pg.Pool;
  /**
   * The PostgreSQL schema to keep the tables in (created if missing), e.g. one per XMPP domain in one
   * database. Default: none (the connection's search_path, usually `public`).
   */
  schema?: string;
  /** PBKDF2 rounds for new credentials. Default 4096. */
  iterations?: number;
  /** Most connections of the pool made from `url`. Default 10. */
  max?: number;
  /**
   * How long a call waits for a connection (a new one, or a free one of a busy pool) before it fails with a
   * StorageUnavailableError (`resource-constraint`), ms. Default 10000.
   */
  connectTimeout?: number;
  /**
   * How long a statement may run before the call fails (`statement_timeout` on the pool made from `url`; and
   * 5 s more, an answer that never comes: a silent network), ms; 0 for no limit. Default 30000.
   */
  statementTimeout?: number;
  /**
   * Group the archive appends of one turn of the event loop into one INSERT. Default true. False: one INSERT
   * per append.
   */
  batch?: boolean;
  /** Most rows in one INSERT. Default 1000. */
  maxBatch?: number;
  /**
   * Calls waiting for PostgreSQL (archived messages, mostly) past which the storage is behind — a database
   * slower than the server archives, a table lock held elsewhere — and the server stops reading from its
   * clients until half of them are done (`onPressure`): what waits to be written stays bounded. Default 20,000.
   */
  maxInFlight?: number;
  /**
   * The same, counted in characters of what waits to be written (a byte each for ASCII): the archived messages'
   * XML and the key-value stores' values as JSON (vCards, PEP items, rosters): what they hold in memory, whatever
   * their number. Default 67,108,864 (64 MiB).
   */
  maxInFlightChars?: number;
  /**
   * Told of a connection that broke while idle in the pool (PostgreSQL restarted or unreachable), once per
   * connection. The calls that need it fail on their own; this is for a log line. Default: nothing.
   */
  onConnectionError?: (error: Error) => void;
}

/** What postgresStorage() returns: an {@link XmppStorage}, and a way to connect (and migrate) now. */
export interface PostgresStorage extends XmppStorage {
  /**
   * Connects and brings the schema up to date (once; every call waits for it anyway). Rejects with a
   * {@link StorageUnavailableError} when PostgreSQL cannot be reached (a later call tries again), or an
   * XmppConfigError `PB_ERR_XMPP_STORAGE` for a schema this version cannot use. Await it at startup to
   * fail early.
   */
  ready(): Promise<void>;
}

/**
 * A store call failed because the database could not answer (down, unreachable, restarting, out of
 * connections): a stanza error, so that a module that lets it propagate answers the stanza with
 * `<internal-server-error/>` (or `<resource-constraint/>` when the database is overloaded), type `wait`.
 * `code` is `PB_ERR_XMPP_STORAGE_UNAVAILABLE`; `cause` is the driver's error. The next call tries again.
 */
export class StorageUnavailableError extends StanzaErrorException {
  readonly code = 'PB_ERR_XMPP_STORAGE_UNAVAILABLE';

  constructor(condition: 'internal-server-error' | 'resource-constraint', reason: string, cause?: unknown) {
    super(condition, `storage unavailable (${reason}): try again later`, undefined, 'wait');
    this.name = 'StorageUnavailableError';
    if (cause !== undefined) Object.defineProperty(this, 'cause', { value: cause, configurable: true, writable: true });
  }
}

/**
 * Every store in PostgreSQL, for several hosts sharing one database. Returns at once: the pool connects
 * and the schema is migrated (in `portbind_schema`, under an advisory lock, so that processes starting
 * together migrate once) at the first call, or at {@link PostgresStorage.ready}. Bad options throw an
 * XmppConfigError `PB_ERR_XMPP_OPTION`.
 */
export function postgresStorage(options: PostgresStorageOptions): PostgresStorage {
  return new PgStorage(options);
}

const _pbkdf2Async = promisify(pbkdf2);

/**
 * The first key of the advisory locks that order appends per archive owner (two-key form: a key space apart from
 * the one-key lock of migrations). 0x7062, "pb".
 */
const OWNER_LOCK_CLASS = 0x7062;

function optionError(message: string): XmppConfigError {
  return new XmppConfigError('PB_ERR_XMPP_OPTION', `postgresStorage: ${message}`);
}

function integerOption(name: string, value: number | undefined, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < min) throw optionError(`${name} must be an integer ≥ ${min}, got ${JSON.stringify(value)}`);
  return value;
}

/** @internal The error to reject a call with: a StorageUnavailableError for anything that says the database did not answer. */
export function storageError(error: unknown): unknown {
  if (error instanceof StorageUnavailableError || error instanceof StanzaErrorException || error instanceof PortbindError) return error;
  const code = typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string' ? error.code : '';
  const message = error instanceof Error ? error.message : String(error);
  if (/^[0-9A-Z]{5}$/.test(code)) {
    // SQLSTATE: connection exceptions, shutdown and startup, authentication, a database that does not exist.
    if (code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03' || code.startsWith('28') || code === '3D000') {
      return new StorageUnavailableError('internal-server-error', `PostgreSQL ${code}`, error);
    }
    // Insufficient resources (too many connections, disk full, out of memory), a statement timeout.
    if (code.startsWith('53') || code === '57014') return new StorageUnavailableError('resource-constraint', `PostgreSQL ${code}`, error);
    return error;
  }
  if (/^E[A-Z_]+$/.test(code)) return new StorageUnavailableError('internal-server-error', code, error);
  if (/timeout exceeded when trying to connect|connection timeout|Query read timeout/i.test(message)) {
    return new StorageUnavailableError('resource-constraint', 'no connection in time', error);
  }
  if (/Connection terminated|not queryable|connection error|Client was closed|after calling end/i.test(message)) {
    return new StorageUnavailableError('internal-server-error', 'connection lost', error);
  }
  return error;
}

/** Builds numbered parameters: `add(value)` gives `$n`. */
class Params {
  readonly values: unknown[] = [];
  add(value: unknown): string {
    this.values.push(value);
    return `$${this.values.length}`;
  }
}

interface PendingAppend {
  store: string;
  owner: string;
  item: ArchiveItem;
  resolve?: () => void;
  reject?: (error: unknown) => void;
  onError?: (error: unknown, owner: string) => void;
}

/** The characters of an append's text (0 for a malformed item, which its INSERT refuses). */
function charsOf(entry: PendingAppend): number {
  return typeof entry.item?.xml === 'string' ? entry.item.xml.length : 0;
}

interface AppendBatch {
  /** When it was opened (see PgStorage.#stamp): it takes no lane a later call holds. */
  stamp: number;
  entries: PendingAppend[];
  /** The order lanes of the owners it appends to. */
  lanes: Set<string>;
  /** What ran before on those lanes. */
  deps: Promise<unknown>[];
  started: boolean;
  settled: Promise<void>;
  done: () => void;
}

const rowKey = (entry: PendingAppend): string => `${entry.store}\u0000${entry.owner}\u0000${entry.item.id}`;
const laneOf = (kind: 'k' | 'a' | 'u', store: string, owner: string): string => `${kind}\u0000${store}\u0000${owner}`;
/** The lane of a call on a whole archive store (expire): the calls on its owners made after it wait for it. */
const storeLaneOf = (store: string): string => `A\u0000${store}`;

/** The last call on a lane: settled (never rejects), and the number it was issued with. */
interface Lane {
  tail: Promise<unknown>;
  stamp: number;
}
const noop = (): void => {};

class PgStorage implements PostgresStorage {
  readonly users: PgUserStore;
  readonly #pool: pg.Pool;
  readonly #ownPool: boolean;
  /** `"schema".` or '' */
  readonly s: string;
  readonly #schema: string | undefined;
  readonly #batchEnabled: boolean;
  readonly #maxBatch: number;
  readonly #keyValues = new Map<string, KeyValueStore>();
  readonly #archives = new Map<string, ArchiveStore>();
  /** Per lane (kind, store, owner), the last call on it. */
  readonly #lanes = new Map<string, Lane>();
  /** Counts calls and batches in the order they were issued. */
  #stamp = 0;
  /** (store, owner) pairs known to have an archive_owners row. */
  readonly #knownOwners = new Set<string>();
  #batch: AppendBatch | undefined;
  readonly #maxInFlight: number;
  readonly #maxInFlightChars: number;
  /** Calls issued and not settled. */
  #inFlight = 0;
  /** Characters of archived text in the appends issued and not settled. */
  #charsInFlight = 0;
  readonly #pressure = new PressureSignal();
  #ready: Promise<void> | undefined;
  #closed: Promise<void> | undefined;
  readonly #onPoolError: (error: Error) => void;

  constructor(options: PostgresStorageOptions) {
    if (options === null || typeof options !== 'object') throw optionError('give { url } or { pool }');
    if ((options.url === undefined) === (options.pool === undefined)) throw optionError('give exactly one of url and pool');
    if (options.url !== undefined && (typeof options.url !== 'string' || options.url === '')) {
      throw optionError('url must be a connection string such as postgres://user@host:5432/database');
    }
    if (options.schema !== undefined && (typeof options.schema !== 'string' || !/^[A-Za-z_][A-Za-z0-9_$]{0,62}$/.test(options.schema))) {
      throw optionError(`schema must be a name of letters, digits and _ (at most 63), got ${JSON.stringify(options.schema)}`);
    }
    const iterations = integerOption('iterations', options.iterations, DEFAULT_ITERATIONS, 1);
    const max = integerOption('max', options.max, 10, 1);
    const connectTimeout = integerOption('connectTimeout', options.connectTimeout, 10_000, 1);
    const statementTimeout = integerOption('statementTimeout', options.statementTimeout, 30_000, 0);
    this.#maxBatch = integerOption('maxBatch', options.maxBatch, 1000, 1);
    this.#maxInFlight = integerOption('maxInFlight', options.maxInFlight, 20_000, 1);
    this.#maxInFlightChars = integerOption('maxInFlightChars', options.maxInFlightChars, 64 * 1024 * 1024, 1);
    this.#batchEnabled = options.batch ?? true;
    this.#schema = options.schema;
    this.s = options.schema === undefined ? '' : `"${options.schema}".`;
    this.#ownPool = options.pool === undefined;
    this.#pool =
      options.pool ??
      new pg.Pool({
        connectionString: options.url,
        max,
        connectionTimeoutMillis: connectTimeout,
        statement_timeout: statementTimeout === 0 ? undefined : statementTimeout,
        // A connection that went silent (a network partition: no reset, no answer) fails its query rather than
        // waiting for TCP keepalive (hours); the pool then drops that connection.
        query_timeout: statementTimeout === 0 ? undefined : statementTimeout + 5000,
        keepAlive: true,
        allowExitOnIdle: true,
      });
    const report = options.onConnectionError;
    // A connection that breaks while idle emits `error` on the pool: without a listener, that would end the process.
    this.#onPoolError = (error) => {
      try {
        report?.(error);
      } catch {
        // The report's own failure: nothing more to tell.
      }
    };
    this.#pool.on('error', this.#onPoolError);
    this.users = new PgUserStore(this, iterations);
  }

  ready(): Promise<void> {
    if (this.#closed !== undefined) return Promise.reject(closedError());
    return this.#ensureReady();
  }

  #ensureReady(): Promise<void> {
    if (this.#ready === undefined) {
      const ready = this.#migrate().catch((error: unknown) => {
        const translated = storageError(error);
        // Unreachable: the next call tries again. A schema it cannot use stays an error.
        if (translated instanceof StorageUnavailableError && this.#ready === ready) this.#ready = undefined;
        throw translated;
      });
      this.#ready = ready;
    }
    return this.#ready;
  }

  async #migrate(list: readonly PostgresMigration[] = postgresMigrations): Promise<void> {
    const client = await this.#pool.connect();
    // Checked out, a connection that breaks emits `error` on the client: the query fails instead of the process.
    client.on('error', noop);
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      // Processes starting together: the first migrates, the others wait here, then find nothing to do.
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`portbind_schema:${this.#schema ?? ''}`]);
      if (this.#schema !== undefined) await client.query(`CREATE SCHEMA IF NOT EXISTS "${this.#schema}"`);
      await client.query(
        `CREATE TABLE IF NOT EXISTS ${this.s}portbind_schema (
          version INTEGER PRIMARY KEY,
          description TEXT NOT NULL,
          applied TIMESTAMPTZ NOT NULL DEFAULT now()
        )`,
      );
      const result = await client.query<{ version: number }>(`SELECT coalesce(max(version), 0) AS version FROM ${this.s}portbind_schema`);
      const version = Number(result.rows[0]?.version ?? 0);
      const latest = list[list.length - 1]?.version ?? 0;
      if (version > latest) {
        throw new XmppConfigError(
          'PB_ERR_XMPP_STORAGE',
          `postgresStorage: the schema version is ${version}, newer than this version of @portbind/xmpp knows (${latest}); upgrade @portbind/xmpp on every host`,
        );
      }
      let current = version;
      try {
        for (const migration of list) {
          if (migration.version <= version) continue;
          current = migration.version;
          await client.query(migration.sql(this.s));
          await client.query(`INSERT INTO ${this.s}portbind_schema (version, description) VALUES ($1, $2)`, [
            migration.version,
            migration.description,
          ]);
        }
      } catch (error) {
        if (storageError(error) instanceof StorageUnavailableError) throw error;
        throw new XmppConfigError(
          'PB_ERR_XMPP_STORAGE',
          `postgresStorage: cannot migrate the schema from version ${version} to ${current} (${error instanceof Error ? error.message : String(error)}); nothing was changed. Do tables of another application have the same names? Give postgresStorage a schema of its own.`,
          { cause: error },
        );
      }
      await client.query('COMMIT');
    } catch (error) {
      if (storageError(error) instanceof StorageUnavailableError) broken = error as Error;
      else await client.query('ROLLBACK').catch(noop);
      throw error;
    } finally {
      client.off('error', noop);
      client.release(broken);
    }
  }

  /** Runs one statement (after the schema is ready); errors translated. */
  async sql<R extends pg.QueryResultRow = Record<string, unknown>>(text: string, values: unknown[] = []): Promise<pg.QueryResult<R>> {
    await this.#ensureReady();
    try {
      return await this.#pool.query<R>(text, values);
    } catch (error) {
      throw storageError(error);
    }
  }

  /**
   * Runs `run` once the calls on these lanes (and on `after`, which it does not hold) made before it settled;
   * later calls on `lanes` wait for it.
   */
  serial<T>(lanes: readonly string[], run: () => Promise<T>, after: readonly string[] = [], chars = 0): Promise<T> {
    if (this.#closed !== undefined) return Promise.reject(closedError());
    const previous: Promise<unknown>[] = [];
    for (const lane of [...lanes, ...after]) {
      const last = this.#lanes.get(lane);
      if (last !== undefined) previous.push(last.tail);
    }
    const result = previous.length === 0 ? run() : Promise.allSettled(previous).then(run);
    const settled = result.then(noop, noop);
    const stamp = ++this.#stamp;
    for (const lane of lanes) this.#lanes.set(lane, { tail: settled, stamp });
    this.#entered(chars);
    void settled.then(() => {
      for (const lane of lanes) if (this.#lanes.get(lane)?.tail === settled) this.#lanes.delete(lane);
      this.#left(1, chars);
    });
    return result;
  }

  /**
   * A call (or an archive append, batched, with `chars` of text) was issued / `count` of them settled, with
   * `chars` of text: the pressure they make, by number and by size.
   */
  #entered(chars = 0): void {
    this.#inFlight++;
    this.#charsInFlight += chars;
    if ((this.#inFlight >= this.#maxInFlight || this.#charsInFlight >= this.#maxInFlightChars) && !this.#pressure.behind) {
      this.#pressure.tell(true);
    }
  }

  #left(count: number, chars = 0): void {
    this.#inFlight -= count;
    this.#charsInFlight -= chars;
    if (this.#pressure.behind && this.#inFlight <= this.#maxInFlight / 2 && this.#charsInFlight <= this.#maxInFlightChars / 2) {
      this.#pressure.tell(false);
    }
  }

  /**
   * Hear when more than `maxInFlight` calls wait for PostgreSQL (`true`) and when half of them are done
   * (`false`): the server stops reading from its clients meanwhile. Returns the unsubscribe.
   */
  onPressure(listener: (behind: boolean) => void): () => void {
    return this.#pressure.listen(listener);
  }

  /** A call on one owner of an archive store: after the calls on that owner, and on the whole store, made before it. */
  serialArchive<T>(store: string, owner: string, run: () => Promise<T>): Promise<T> {
    return this.serial([laneOf('a', store, owner)], run, [storeLaneOf(store)]);
  }

  /** A call on a whole archive store: after every call on it made before, and before those made after. */
  serialStore<T>(store: string, run: () => Promise<T>): Promise<T> {
    const prefix = laneOf('a', store, '');
    const owners = [...this.#lanes.keys()].filter((lane) => lane.startsWith(prefix));
    return this.serial([storeLaneOf(store), ...owners], run);
  }

  /** Queues an archive append into this turn's INSERT. */
  append(entry: PendingAppend): void {
    if (this.#closed !== undefined) {
      const error = closedError();
      if (entry.onError !== undefined) queueMicrotask(() => entry.onError?.(error, entry.owner));
      else entry.reject?.(error);
      return;
    }
    const lane = laneOf('a', entry.store, entry.owner);
    const storeLane = storeLaneOf(entry.store);
    let batch = this.#batch;
    // A call on this owner (a delete, a query) or on its whole store (expire) made after the batch was opened: the
    // append goes after it, in the next batch. (A batch never waits for a call made after it: no cycle.)
    if (
      batch !== undefined &&
      (batch.entries.length >= this.#maxBatch ||
        (this.#lanes.get(lane)?.stamp ?? 0) > batch.stamp ||
        (this.#lanes.get(storeLane)?.stamp ?? 0) > batch.stamp)
    ) {
      this.#startBatch(batch);
      batch = undefined;
    }
    if (batch === undefined) {
      let done = noop;
      const settled = new Promise<void>((resolve) => {
        done = resolve;
      });
      const created: AppendBatch = { stamp: ++this.#stamp, entries: [], lanes: new Set(), deps: [], started: false, settled, done };
      batch = created;
      this.#batch = created;
      if (this.#batchEnabled) setImmediate(() => this.#startBatch(created));
      else queueMicrotask(() => this.#startBatch(created));
      void settled.then(() => {
        for (const name of created.lanes) if (this.#lanes.get(name)?.tail === settled) this.#lanes.delete(name);
      });
    }
    if (!batch.lanes.has(lane)) {
      for (const before of [this.#lanes.get(lane), this.#lanes.get(storeLane)]) if (before !== undefined) batch.deps.push(before.tail);
      batch.lanes.add(lane);
      this.#lanes.set(lane, { tail: batch.settled, stamp: batch.stamp });
    }
    batch.entries.push(entry);
    this.#entered(charsOf(entry));
    if (!this.#batchEnabled) this.#startBatch(batch);
  }

  #startBatch(batch: AppendBatch): void {
    if (batch.started) return;
    batch.started = true;
    if (this.#batch === batch) this.#batch = undefined;
    const run = async (): Promise<void> => {
      if (batch.deps.length > 0) await Promise.allSettled(batch.deps);
      await this.#insert(batch.entries);
    };
    const settled = (): void => {
      batch.done();
      let chars = 0;
      for (const entry of batch.entries) chars += charsOf(entry);
      this.#left(batch.entries.length, chars);
    };
    run().then(settled, settled);
  }

  /** Inserts the rows of a batch in one statement; a statement that fails for one row's sake is retried row by row. */
  async #insert(entries: PendingAppend[]): Promise<void> {
    // The same id twice in one batch: the last one is the row (replace moves it to the end, so it takes the last one's place).
    const last = new Map<string, PendingAppend>();
    for (const entry of entries) last.set(rowKey(entry), entry);
    const rows = entries.filter((entry) => last.get(rowKey(entry)) === entry);
    let failure: unknown;
    try {
      await this.#insertRows(rows);
    } catch (error) {
      failure = error;
    }
    if (failure !== undefined && !(failure instanceof StorageUnavailableError) && rows.length > 1) {
      // One bad row (text PostgreSQL refuses) fails alone: the others are written one by one.
      const outcomes = await Promise.all(
        rows.map((row) =>
          this.#insertRows([row]).then(
            () => undefined,
            (error: unknown) => ({ error }),
          ),
        ),
      );
      const byKey = new Map<string, { error: unknown } | undefined>();
      for (const [index, row] of rows.entries()) byKey.set(rowKey(row), outcomes[index]);
      for (const entry of entries) settle(entry, byKey.get(rowKey(entry))?.error);
      return;
    }
    for (const entry of entries) settle(entry, failure);
  }

  async #insertRows(rows: PendingAppend[]): Promise<void> {
    const newOwners = new Map<string, [string, string]>();
    for (const row of rows) {
      const key = `${row.store}\u0000${row.owner}`;
      if (!this.#knownOwners.has(key)) newOwners.set(key, [row.store, row.owner]);
    }
    const s = this.s;
    if (newOwners.size > 0) {
      const pairs = [...newOwners.values()];
      await this.sql(
        `INSERT INTO ${s}archive_owners (store, owner) SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT (store, owner) DO NOTHING`,
        [pairs.map((pair) => pair[0]), pairs.map((pair) => pair[1])],
      );
      for (const key of newOwners.keys()) this.#knownOwners.add(key);
    }
    // Rows in the order given (ORDER BY n), so that seq follows it; an existing id takes the next seq (moves to the end).
    // Several hosts append to one owner's archive: a seq taken before another host's but committed after it would
    // appear behind a page a client already read past (an RSM `after` cursor), and be missed for good. So the
    // statement first takes a transaction lock per owner (the one-time filter runs before any row and its nextval;
    // sorted, so two batches cannot deadlock), held until it commits: per owner, seq order is commit order.
    await this.sql(
      `INSERT INTO ${s}archive (oid, id, "when", "with", xml)
        SELECT o.oid, t.id, t.w, t.wi, t.xml
        FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::text[], $6::text[]) WITH ORDINALITY AS t(store, owner, id, w, wi, xml, n)
        JOIN ${s}archive_owners AS o ON o.store = t.store AND o.owner = t.owner
        WHERE (SELECT count(pg_advisory_xact_lock(${OWNER_LOCK_CLASS}, k)) FROM (
          SELECT DISTINCT hashtext(x.store || '/' || x.owner) AS k FROM unnest($1::text[], $2::text[]) AS x(store, owner) ORDER BY 1
        ) AS keys) >= 0
        ORDER BY t.n
       ON CONFLICT (oid, id) DO UPDATE SET seq = nextval(pg_get_serial_sequence('${s}archive', 'seq')),
         "when" = excluded."when", "with" = excluded."with", xml = excluded.xml`,
      [
        rows.map((row) => row.store),
        rows.map((row) => row.owner),
        rows.map((row) => row.item.id),
        rows.map((row) => row.item.when),
        rows.map((row) => row.item.with),
        rows.map((row) => row.item.xml),
      ],
    );
  }

  keyValue(name: string): KeyValueStore {
    let store = this.#keyValues.get(name);
    if (store === undefined) {
      store = new PgKeyValueStore(this, name);
      this.#keyValues.set(name, store);
    }
    return store;
  }

  archive(name: string): ArchiveStore {
    let store = this.#archives.get(name);
    if (store === undefined) {
      store = new PgArchiveStore(this, name);
      this.#archives.set(name, store);
    }
    return store;
  }

  close(): Promise<void> {
    this.#closed ??= (async () => {
      // What was called before close() is written first.
      if (this.#batch !== undefined) this.#startBatch(this.#batch);
      while (this.#lanes.size > 0) await Promise.allSettled([...this.#lanes.values()].map((lane) => lane.tail));
      this.#pool.off('error', this.#onPoolError);
      if (this.#ownPool) {
        // Connections that break while the pool ends must not end the process either.
        this.#pool.on('error', noop);
        await this.#pool.end();
      }
    })();
    return this.#closed;
  }
}

function closedError(): PortbindError {
  return new PortbindError('PB_ERR_XMPP_STORAGE', 'postgresStorage is closed');
}

function settle(entry: PendingAppend, error: unknown): void {
  if (error === undefined) {
    entry.resolve?.();
    return;
  }
  if (entry.onError !== undefined) {
    try {
      entry.onError(error, entry.owner);
    } catch {
      // A handler that throws: nothing else to tell.
    }
  } else entry.reject?.(error);
}

class PgKeyValueStore implements KeyValueStore {
  readonly #storage: PgStorage;
  readonly #name: string;

  constructor(storage: PgStorage, name: string) {
    this.#storage = storage;
    this.#name = name;
  }

  get(owner: string, key: string): Promise<JsonValue | undefined> {
    return this.#storage.serial([laneOf('k', this.#name, owner)], async () => {
      const result = await this.#storage.sql<{ value: string }>(
        `SELECT value FROM ${this.#storage.s}key_values WHERE store = $1 AND owner = $2 AND key = $3`,
        [this.#name, owner, key],
      );
      const row = result.rows[0];
      return row === undefined ? undefined : (JSON.parse(row.value) as JsonValue);
    });
  }

  set(owner: string, key: string, value: JsonValue | undefined): Promise<void> {
    const s = this.#storage.s;
    // Serialized now: a value that cannot be stored (a cycle, a BigInt) throws in the caller's turn, as a rejection.
    let text: string | undefined;
    try {
      text = value === undefined ? undefined : JSON.stringify(value);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#storage.serial(
      [laneOf('k', this.#name, owner)],
      async () => {
        if (text === undefined) {
          await this.#storage.sql(`DELETE FROM ${s}key_values WHERE store = $1 AND owner = $2 AND key = $3`, [this.#name, owner, key]);
          return;
        }
        await this.#storage.sql(
          `INSERT INTO ${s}key_values (store, owner, key, value) VALUES ($1, $2, $3, $4)
         ON CONFLICT (store, owner, key) DO UPDATE SET value = excluded.value`,
          [this.#name, owner, key, text],
        );
      },
      [],
      text?.length ?? 0,
    );
  }

  compareAndSet(owner: string, key: string, expected: JsonValue | undefined, value: JsonValue | undefined): Promise<boolean> {
    const s = this.#storage.s;
    const texts = casTexts(expected, value);
    if (texts instanceof Error) return Promise.reject(texts);
    const [before, after] = texts;
    // One statement each: under READ COMMITTED an UPDATE or DELETE that waited for another transaction's
    // row lock checks its WHERE again on the row as that one left it, so the comparison is atomic.
    return this.#storage.serial(
      [laneOf('k', this.#name, owner)],
      async () => {
        const where = 'store = $1 AND owner = $2 AND key = $3';
        const base = [this.#name, owner, key];
        if (before === undefined) {
          if (after === undefined) return (await this.#storage.sql(`SELECT 1 FROM ${s}key_values WHERE ${where}`, base)).rowCount === 0;
          const inserted = await this.#storage.sql(
            `INSERT INTO ${s}key_values (store, owner, key, value) VALUES ($1, $2, $3, $4) ON CONFLICT (store, owner, key) DO NOTHING`,
            [...base, after],
          );
          return inserted.rowCount === 1;
        }
        if (after === undefined) {
          return (await this.#storage.sql(`DELETE FROM ${s}key_values WHERE ${where} AND value = $4`, [...base, before])).rowCount === 1;
        }
        const updated = await this.#storage.sql(`UPDATE ${s}key_values SET value = $5 WHERE ${where} AND value = $4`, [
          ...base,
          before,
          after,
        ]);
        return updated.rowCount === 1;
      },
      [],
      (before?.length ?? 0) + (after?.length ?? 0),
    );
  }

  keys(owner: string, prefix = ''): Promise<string[]> {
    return this.#storage.serial([laneOf('k', this.#name, owner)], async () => {
      // `key >= prefix` bounds the index range (bytewise, COLLATE "C"); starts_with() takes the prefix literally.
      const result = await this.#storage.sql<{ key: string }>(
        `SELECT key FROM ${this.#storage.s}key_values WHERE store = $1 AND owner = $2 AND key >= $3 AND starts_with(key, $3)`,
        [this.#name, owner, prefix],
      );
      return result.rows.map((row) => row.key).sort(compareKeys);
    });
  }

  clear(owner: string): Promise<void> {
    return this.#storage.serial([laneOf('k', this.#name, owner)], async () => {
      await this.#storage.sql(`DELETE FROM ${this.#storage.s}key_values WHERE store = $1 AND owner = $2`, [this.#name, owner]);
    });
  }
}

interface ArchiveRow {
  id: string;
  when: number;
  with: string;
  xml: string;
}

class PgArchiveStore implements ArchiveStore {
  readonly #storage: PgStorage;
  readonly #name: string;

  constructor(storage: PgStorage, name: string) {
    this.#storage = storage;
    this.#name = name;
  }

  append(owner: string, item: ArchiveItem): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#storage.append({ store: this.#name, owner, item: copyItem(item), resolve, reject });
    });
  }

  record(owner: string, item: ArchiveItem, onError: (error: unknown, owner: string) => void): void {
    this.#storage.append({ store: this.#name, owner, item: copyItem(item), onError });
  }

  /** The filter of a query: the owner's id, then `with`, `start`, `end`, `ids`. */
  #filter(params: Params, owner: string, query: Pick<ArchiveQuery, 'ids' | 'with' | 'start' | 'end'>): string {
    const s = this.#storage.s;
    const parts = [`oid = (SELECT oid FROM ${s}archive_owners WHERE store = ${params.add(this.#name)} AND owner = ${params.add(owner)})`];
    if (query.with !== undefined) parts.push(`"with" = ${params.add(query.with)}`);
    if (query.start !== undefined) parts.push(`"when" >= ${params.add(query.start)}`);
    if (query.end !== undefined) parts.push(`"when" <= ${params.add(query.end)}`);
    if (query.ids !== undefined) parts.push(`id = ANY(${params.add(query.ids)}::text[])`);
    return parts.join(' AND ');
  }

  query(owner: string, query: ArchiveQuery = {}): Promise<ArchiveResult> {
    const s = this.#storage.s;
    const max = pageSize(query.max);
    const backward = query.before !== undefined;
    return this.#storage.serialArchive(this.#name, owner, async () => {
      // Cursors are positions in the whole archive (an `after` id need not match the filters).
      const cursors = [query.after, query.before || undefined].filter((id): id is string => id !== undefined);
      const seqs = new Map<string, string>();
      if (cursors.length > 0) {
        const found = await this.#storage.sql<{ id: string; seq: string }>(
          `SELECT id, seq FROM ${s}archive
           WHERE oid = (SELECT oid FROM ${s}archive_owners WHERE store = $1 AND owner = $2) AND id = ANY($3::text[])`,
          [this.#name, owner, cursors],
        );
        for (const row of found.rows) seqs.set(row.id, row.seq);
        for (const id of cursors) if (!seqs.has(id)) throw cursorNotFound(id);
      }
      const countParams = new Params();
      const counting = this.#storage.sql<{ count: string }>(
        `SELECT count(*) AS count FROM ${s}archive WHERE ${this.#filter(countParams, owner, query)}`,
        countParams.values,
      );
      const params = new Params();
      let where = this.#filter(params, owner, query);
      if (query.after !== undefined) where += ` AND seq > ${params.add(seqs.get(query.after))}`;
      if (query.before) where += ` AND seq < ${params.add(seqs.get(query.before))}`;
      // One more row than asked for says whether the page is complete.
      const limit = params.add(max === undefined ? null : max + 1);
      const paging = this.#storage.sql<ArchiveRow>(
        `SELECT id, "when", "with", xml FROM ${s}archive WHERE ${where} ORDER BY seq ${backward ? 'DESC' : 'ASC'} LIMIT ${limit}`,
        params.values,
      );
      const [counted, page] = await Promise.all([counting, paging]);
      const rows = page.rows;
      const complete = max === undefined || rows.length <= max;
      if (!complete) rows.pop();
      if (backward) rows.reverse();
      const items = rows.map((row) => ({ id: row.id, when: row.when, with: row.with, xml: row.xml }));
      return { items, complete, count: Number(counted.rows[0]?.count ?? 0) };
    });
  }

  delete(owner: string, query: Pick<ArchiveQuery, 'ids' | 'with' | 'end'> = {}): Promise<number> {
    const selection = { ids: query.ids, with: query.with, end: query.end };
    return this.#storage.serialArchive(this.#name, owner, async () => {
      const params = new Params();
      const result = await this.#storage.sql(
        `DELETE FROM ${this.#storage.s}archive WHERE ${this.#filter(params, owner, selection)}`,
        params.values,
      );
      return result.rowCount ?? 0;
    });
  }

  trim(owner: string, withValue: string, keep: number): Promise<number> {
    const s = this.#storage.s;
    return this.#storage.serialArchive(this.#name, owner, async () => {
      // Everything of this `with` at or before its (keep+1)th newest item.
      const result = await this.#storage.sql(
        `WITH o AS (SELECT oid FROM ${s}archive_owners WHERE store = $1 AND owner = $2)
         DELETE FROM ${s}archive WHERE oid = (SELECT oid FROM o) AND "with" = $3 AND seq <= (
           SELECT seq FROM ${s}archive WHERE oid = (SELECT oid FROM o) AND "with" = $3 ORDER BY seq DESC OFFSET $4 LIMIT 1
         )`,
        [this.#name, owner, withValue, Math.max(0, Math.floor(keep))],
      );
      return result.rowCount ?? 0;
    });
  }

  expire(before: number): Promise<number> {
    const s = this.#storage.s;
    // After the calls on this store's owners made before it.
    return this.#storage.serialStore(this.#name, async () => {
      const result = await this.#storage.sql(
        `DELETE FROM ${s}archive AS a USING ${s}archive_owners AS o WHERE o.store = $1 AND a.oid = o.oid AND a."when" < $2`,
        [this.#name, before],
      );
      return result.rowCount ?? 0;
    });
  }
}

function copyItem(item: ArchiveItem): ArchiveItem {
  return { id: item.id, when: item.when, with: item.with, xml: item.xml };
}

interface AccountRow {
  username: string;
  sha1_salt: Buffer;
  sha1_iterations: number;
  sha1_stored_key: Buffer;
  sha1_server_key: Buffer;
  sha256_salt: Buffer;
  sha256_iterations: number;
  sha256_stored_key: Buffer;
  sha256_server_key: Buffer;
}

/** Accounts in the `accounts` table. PBKDF2 runs on libuv's thread pool; calls on one username run in the order they were made. */
class PgUserStore implements UserStore {
  readonly #storage: PgStorage;
  readonly #iterations: number;

  constructor(storage: PgStorage, iterations: number) {
    this.#storage = storage;
    this.#iterations = iterations;
  }

  get(username: string): Promise<StoredUser | undefined> {
    const name = normalizeUsername(username);
    if (name === undefined) return Promise.resolve(undefined);
    return this.#storage.serial([laneOf('u', '', name)], () => this.#read(name));
  }

  create(username: string, password: string): Promise<boolean> {
    const name = normalizeUsername(username);
    if (name === undefined) {
      return Promise.reject(new SaslprepError(`invalid username ${JSON.stringify(username)}: no @, /, spaces or control characters`));
    }
    return this.#storage.serial([laneOf('u', '', name)], async () => {
      if ((await this.#read(name)) !== undefined) return false;
      const user = await this.#derive(name, password);
      const now = Date.now();
      // Another host may have created it meanwhile: then this one did not.
      const result = await this.#storage.sql(
        `INSERT INTO ${this.#storage.s}accounts (username, sha1_salt, sha1_iterations, sha1_stored_key, sha1_server_key,
           sha256_salt, sha256_iterations, sha256_stored_key, sha256_server_key, created, updated)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)
         ON CONFLICT (username) DO NOTHING`,
        [...columns(user), now],
      );
      return result.rowCount === 1;
    });
  }

  setPassword(username: string, password: string): Promise<boolean> {
    const name = normalizeUsername(username);
    if (name === undefined) return Promise.resolve(false);
    return this.#storage.serial([laneOf('u', '', name)], async () => {
      if ((await this.#read(name)) === undefined) return false;
      const user = await this.#derive(name, password);
      const result = await this.#storage.sql(
        `UPDATE ${this.#storage.s}accounts SET sha1_salt = $2, sha1_iterations = $3, sha1_stored_key = $4, sha1_server_key = $5,
           sha256_salt = $6, sha256_iterations = $7, sha256_stored_key = $8, sha256_server_key = $9, updated = $10
         WHERE username = $1`,
        [...columns(user), Date.now()],
      );
      return result.rowCount === 1;
    });
  }

  delete(username: string): Promise<boolean> {
    const name = normalizeUsername(username);
    if (name === undefined) return Promise.resolve(false);
    return this.#storage.serial([laneOf('u', '', name)], async () => {
      const result = await this.#storage.sql(`DELETE FROM ${this.#storage.s}accounts WHERE username = $1`, [name]);
      return result.rowCount === 1;
    });
  }

  async #read(name: string): Promise<StoredUser | undefined> {
    const result = await this.#storage.sql<AccountRow>(`SELECT * FROM ${this.#storage.s}accounts WHERE username = $1`, [name]);
    const row = result.rows[0];
    if (row === undefined) return undefined;
    return {
      username: row.username,
      sha1: { salt: row.sha1_salt, iterations: row.sha1_iterations, storedKey: row.sha1_stored_key, serverKey: row.sha1_server_key },
      sha256: {
        salt: row.sha256_salt,
        iterations: row.sha256_iterations,
        storedKey: row.sha256_stored_key,
        serverKey: row.sha256_server_key,
      },
    };
  }

  #derive(username: string, password: string): Promise<StoredUser> {
    return deriveStoredUser(username, password, this.#iterations);
  }
}

function columns(user: StoredUser): unknown[] {
  return [
    user.username,
    user.sha1.salt,
    user.sha1.iterations,
    user.sha1.storedKey,
    user.sha1.serverKey,
    user.sha256.salt,
    user.sha256.iterations,
    user.sha256.storedKey,
    user.sha256.serverKey,
  ];
}
