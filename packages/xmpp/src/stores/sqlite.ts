import { pbkdf2 } from 'node:crypto';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { promisify } from 'node:util';
import { Worker } from 'node:worker_threads';
import { PortbindError } from '@portbind/core';
import Database from 'better-sqlite3';
import { XmppConfigError } from '../config-error.js';
import { DEFAULT_ITERATIONS, deriveStoredUser, normalizeUsername, type StoredUser, type UserStore } from '../sasl/credentials.js';
import { SaslprepError } from '../sasl/saslprep.js';
import { compareKeys, cursorNotFound, pageSize } from './memory.js';
import { type Migration, migrations } from './migrations.js';
import type { ArchiveItem, ArchiveQuery, ArchiveResult, ArchiveStore, JsonValue, KeyValueStore, XmppStorage } from './types.js';
import { casTexts } from './update.js';
import { WorkerStorage } from './worker-storage.js';

// Durable storage in one SQLite file (better-sqlite3). better-sqlite3 is synchronous: each call
// runs on the event loop. Operations are queued and the queue runs at setImmediate; the operations of
// consecutive busy turns of the event loop, up to commitDelay ms, run in one transaction (one commit
// instead of one per write, or per turn); each promise resolves once that transaction committed.
// Reads go through the same queue, so a read issued after a write sees it.

export interface SqliteStorageOptions {
  /**
   * The database file (e.g. `${DATA_DIR}/xmpp.sqlite`). Its directory is created if missing (with its
   * parents); SQLite writes `<file>-wal` and `<file>-shm` beside it, so the directory must be writable.
   * A new file is created with mode 0600 (its -wal and -shm files too): it holds SCRAM keys and messages.
   * `':memory:'` for a database that lives as long as the process (tests).
   */
  file: string;
  /** PBKDF2 rounds for new credentials. Default 4096. */
  iterations?: number;
  /**
   * Bytes of database pages this connection keeps in memory (`PRAGMA cache_size`). Default 32 MiB: an
   * archive's indexes are touched all over (a trim or a delete of one conversation reaches pages across the
   * whole file), and SQLite's default of 2 MB then reads most pages from the operating system again.
   */
  cacheSize?: number;
  /** How long a write waits for another connection's lock before failing (`PRAGMA busy_timeout`), ms. Default 5000. */
  busyTimeout?: number;
  /**
   * Group the operations issued in one turn of the event loop into one transaction. Default true.
   * False: every operation is its own transaction, run when it is called.
   */
  batch?: boolean;
  /** Most operations in one transaction; the rest go to the next transaction. Default 1000. */
  maxBatch?: number;
  /**
   * Longest time a write transaction stays open for the operations of later turns of the event loop, ms. A
   * commit writes every page the transaction changed (in each index, a page per archive owner), so one commit
   * for the appends of a few milliseconds writes far fewer pages than one per turn. The transaction stays open
   * only while every turn of the event loop queues more operations (a busy server); the first turn that queues
   * none commits it, so an idle server's writes wait for no timer. Every operation resolves only once its
   * transaction committed (a read queued meanwhile waits for it too); a transaction also commits when it holds
   * `maxBatch` operations, and at close(). Default 10 on the event loop; 50 on the storage thread (`thread`, the
   * default), where a longer transaction costs the event loop nothing: at 20,000 archived rows a second a
   * transaction then holds `maxBatch` (1000) rows, which costs the storage thread about a third less per row than
   * 200. 0 commits at the end of each turn.
   */
  commitDelay?: number;
  /**
   * Check every page of the file at open (`PRAGMA quick_check`, which reads the whole file), so a damaged
   * file fails at start rather than at the first query that reaches the damage. Default true; without it
   * only the header and schema are read (an unreadable or truncated file still fails at start).
   */
  quickCheck?: boolean;
  /**
   * Copy the WAL back into the database file (a checkpoint, which fsyncs) on a worker thread with its own
   * connection, after commits, at most every `checkpointInterval` ms, so the event loop does not wait for the disk.
   * Default true. False: SQLite checkpoints on the event loop after the commit that makes the WAL pass
   * 1000 pages (4 MB), as it does by default.
   */
  checkpointWorker?: boolean;
  /** Least time between two checkpoints of the worker. Default 20 ms. */
  checkpointInterval?: number;
  /**
   * Run SQLite on a thread of its own (default true): the event loop only posts the calls and settles
   * their promises, so archiving a message costs the server almost nothing on its own thread. The file is
   * opened and checked on the calling thread first (so every startup error is still thrown by
   * `sqliteStorage()`), then by the storage thread. False: SQLite runs on the event loop. `':memory:'`
   * always runs on the event loop (a memory database belongs to one connection).
   */
  thread?: boolean;
  /**
   * With `thread`: calls waiting for the storage thread (archived messages, mostly) past which the storage is
   * behind — a disk slower than the server archives, another process holding the file's write lock — and the
   * server stops reading from its clients until half of them are done. The event loop goes on meanwhile:
   * timers, pings, the cluster's heartbeats, health checks. Past four times as many (what was read already
   * still comes) the event loop waits for the thread. Default 20,000 (about half a second of a busy server).
   */
  maxInFlight?: number;
  /**
   * With `thread`: the same, counted in characters (a byte each for ASCII) of the archived messages' XML and of
   * the values written to key-value stores (vCards, PEP items, rosters) — what the waiting calls hold in memory,
   * whatever their number. Default 67,108,864 (64 MiB).
   */
  maxInFlightChars?: number;
}

/**
 * Every store in one SQLite file, which survives restarts: WAL journal, `synchronous = NORMAL`.
 * Opens (and creates or migrates) the file now, synchronously; a file that cannot be used throws an
 * {@link XmppConfigError} with code `PB_ERR_XMPP_STORAGE`: not a database or damaged, not writable,
 * a directory that cannot be created, a schema written by a newer version.
 */
export function sqliteStorage(options: SqliteStorageOptions): XmppStorage {
  if (options?.thread === false || options?.file === ':memory:') return new SqliteStorage(options);
  // Open, migrate and check the file here, so that what is wrong with it is thrown now; then the
  // storage thread opens it (no second quick_check of the whole file).
  const check = new SqliteStorage({ ...options, checkpointWorker: false });
  check.dispose();
  const { thread: _thread, ...rest } = options;
  if (options.maxInFlight !== undefined) positiveInteger('maxInFlight', options.maxInFlight, 1);
  if (options.maxInFlightChars !== undefined) positiveInteger('maxInFlightChars', options.maxInFlightChars, 1);
  // On its thread, the storage takes a quiet millisecond (not a quiet turn of its own loop) as idle.
  return new WorkerStorage(check.file, {
    ...rest,
    commitDelay: options.commitDelay ?? THREAD_COMMIT_DELAY,
    file: check.file,
    quickCheck: false,
    idleWait: 1,
  });
}

const _pbkdf2Async = promisify(pbkdf2);

/** commitDelay's default on the storage thread (ms). */
const THREAD_COMMIT_DELAY = 50;

type Statement = Database.Statement<unknown[], unknown>;

interface Operation {
  write: boolean;
  run: () => unknown;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

/** A configuration error about the file: code `PB_ERR_XMPP_STORAGE`. */
function storageError(file: string, message: string, cause?: unknown): XmppConfigError {
  return new XmppConfigError('PB_ERR_XMPP_STORAGE', `storage ${file}: ${message}`, cause === undefined ? undefined : { cause });
}

function sqliteCode(error: unknown): string {
  return typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string' ? error.code : '';
}

function errorText(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const code = sqliteCode(error);
  return code.startsWith('SQLITE_') ? `${code}: ${error.message}` : error.message;
}

/** What an error at open means, in words that say what to do. */
function openError(file: string, error: unknown): XmppConfigError {
  if (error instanceof XmppConfigError) return error;
  const code = sqliteCode(error);
  if (code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_CORRUPT')) {
    return storageError(
      file,
      `not an SQLite database, or damaged (${errorText(error)}); restore it from a backup, or move it away to start with an empty one`,
      error,
    );
  }
  if (code.startsWith('SQLITE_READONLY') || code.startsWith('SQLITE_CANTOPEN') || code === 'SQLITE_PERM' || code === 'SQLITE_AUTH') {
    return storageError(
      file,
      `cannot be opened for writing (${errorText(error)}); the file and its directory must be writable by this process (SQLite creates ${file}-wal and ${file}-shm beside it)`,
      error,
    );
  }
  return storageError(file, `cannot be opened (${errorText(error)})`, error);
}

/** The storage on the thread that uses it (the storage thread runs one too). @internal */
export class SqliteStorage implements XmppStorage {
  readonly users: SqliteUserStore;
  readonly file: string;
  readonly #db: Database.Database;
  readonly #batch: boolean;
  readonly #maxBatch: number;
  readonly #commitDelay: number;
  readonly #queue: Operation[] = [];
  /** Operations run in the open transaction (or a read-only batch), with their results, until it commits. */
  readonly #done: Array<{ operation: Operation; ok: boolean; value: unknown }> = [];
  /** Archive count changes of the open transaction, by owner id. */
  readonly #counts = new Map<number, number>();
  /** Owner ids (archive_owners.oid) by store and owner, as read or created on this connection. */
  readonly #owners = new Map<string, number>();
  #timer: NodeJS.Timeout | undefined;
  #idleCheck = false;
  /** Operations were queued since the last idle check. */
  #queuedSinceCheck = false;
  /** How long without new operations counts as idle (ms; 0: one turn of the event loop). */
  readonly #idleWait: number;
  #scheduled = false;
  #closed = false;
  readonly #keyValues = new Map<string, KeyValueStore>();
  readonly #archives = new Map<string, ArchiveStore>();
  readonly #statements = new Map<string, Statement>();
  readonly #begin: Statement;
  readonly #commitStatement: Statement;
  readonly #rollback: Statement;
  readonly #checkpointer: Checkpointer | undefined;

  constructor(options: SqliteStorageOptions) {
    if (typeof options?.file !== 'string' || options.file === '') {
      throw new XmppConfigError('PB_ERR_XMPP_OPTION', `sqliteStorage({ file }): file must be a path, got ${JSON.stringify(options?.file)}`);
    }
    const memory = options.file === ':memory:';
    const file = memory ? options.file : resolve(options.file);
    this.file = file;
    this.#batch = options.batch ?? true;
    this.#maxBatch = positiveInteger('maxBatch', options.maxBatch, 1000);
    this.#commitDelay = nonNegativeInteger('commitDelay', options.commitDelay, 10);
    this.#idleWait = (options as { idleWait?: number }).idleWait ?? 0;
    const busyTimeout = positiveInteger('busyTimeout', options.busyTimeout, 5000);
    const cacheSize = positiveInteger('cacheSize', options.cacheSize, 32 * 1024 * 1024);
    if (!memory) {
      try {
        mkdirSync(dirname(file), { recursive: true });
      } catch (error) {
        throw storageError(file, `cannot create its directory ${dirname(file)} (${errorText(error)})`, error);
      }
      // A new file is readable by this user only (0600): it holds SCRAM keys and messages. SQLite gives the
      // -wal and -shm files the database file's mode. An existing file keeps its mode; when this fails (the file
      // exists, the directory is not writable) SQLite opens the file or says why it cannot.
      try {
        closeSync(openSync(file, 'wx', 0o600));
      } catch {
        // Existing, or SQLite reports the error below.
      }
    }
    let db: Database.Database | undefined;
    try {
      db = new Database(file);
      db.pragma(`busy_timeout = ${busyTimeout}`);
      // First the schema (the file's own journal mode until it fits): a file that is not ours is left as it was.
      migrate(db, file);
      // WAL: readers do not block the writer, and a commit appends to <file>-wal (no rewrite of the
      // database file); SQLite copies the WAL back into the file at checkpoints.
      const mode = db.pragma('journal_mode = WAL', { simple: true });
      if (!memory && mode !== 'wal') throw storageError(file, `cannot use the WAL journal (journal_mode is ${String(mode)})`);
      // NORMAL in WAL mode: a commit is written to the WAL before its promise resolves but not fsync'ed;
      // the WAL is fsync'ed at checkpoints. A committed write survives a crash or SIGKILL of this process
      // (the data is in the operating system's cache, and SQLite replays the WAL at the next open). It
      // does NOT survive a power loss or an operating-system crash: the last transactions committed
      // before it may be rolled back (the file stays consistent, never corrupt). FULL would fsync every
      // commit, at the cost of a disk flush per batch.
      db.pragma('synchronous = NORMAL');
      db.pragma(`cache_size = ${-Math.ceil(cacheSize / 1024)}`);
      db.pragma('foreign_keys = OFF');
      // Reading the header and schema proves the file is a database, not that it can be written (SQLite
      // opens a file it cannot write read-only, and a database already in WAL mode needs no write to open).
      probeWrite(db);
      // Statistics for the query planner (which archive index serves a query), cheap at open (SQLite ≥ 3.46).
      db.pragma('optimize = 0x10002');
      if (options.quickCheck ?? true) {
        const result = db.pragma('quick_check', { simple: true });
        if (result !== 'ok') throw storageError(file, `damaged: PRAGMA quick_check says ${String(result)}; restore it from a backup`);
      }
    } catch (error) {
      try {
        db?.close();
      } catch {
        // Closing a connection whose file is unusable: nothing more to report than the first error.
      }
      throw openError(file, error);
    }
    this.#db = db;
    if (!memory && (options.checkpointWorker ?? true)) {
      // The worker does the checkpoints; this connection does one only if the WAL passes 16 MB (the
      // worker cannot keep up, or a checkpoint never catches up with continuous writes). After a
      // checkpoint the WAL file is truncated to 64 MB, not left at its largest.
      db.pragma('wal_autocheckpoint = 4096');
      db.pragma(`journal_size_limit = ${64 * 1024 * 1024}`);
      this.#checkpointer = new Checkpointer(file, busyTimeout, positiveInteger('checkpointInterval', options.checkpointInterval, 20));
    }
    this.#begin = db.prepare('BEGIN IMMEDIATE');
    this.#commitStatement = db.prepare('COMMIT');
    this.#rollback = db.prepare('ROLLBACK');
    this.users = new SqliteUserStore(this, positiveInteger('iterations', options.iterations, DEFAULT_ITERATIONS));
  }

  keyValue(name: string): KeyValueStore {
    let store = this.#keyValues.get(name);
    if (store === undefined) {
      store = new SqliteKeyValueStore(this, name);
      this.#keyValues.set(name, store);
    }
    return store;
  }

  archive(name: string): ArchiveStore {
    let store = this.#archives.get(name);
    if (store === undefined) {
      store = new SqliteArchiveStore(this, name);
      this.#archives.set(name, store);
    }
    return store;
  }

  /** A prepared statement, prepared once per connection. */
  statement(sql: string): Statement {
    let statement = this.#statements.get(sql);
    if (statement === undefined) {
      statement = this.#db.prepare(sql);
      this.#statements.set(sql, statement);
    }
    return statement;
  }

  /** Queues `run` (a read, or a write when `write`); resolves with its result once its transaction committed. */
  run<T>(write: boolean, run: () => T): Promise<T> {
    if (this.#closed) return Promise.reject(new PortbindError('PB_ERR_XMPP_STORAGE', `storage ${this.file} is closed`));
    if (!this.#batch) {
      if (!write) {
        try {
          return Promise.resolve(run());
        } catch (error) {
          return Promise.reject(error);
        }
      }
      // A write and the archive counts it changed: one transaction.
      return new Promise<T>((resolve, reject) => {
        this.#execute([{ write, run, resolve: resolve as (value: unknown) => void, reject }]);
        this.#commit();
      });
    }
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({ write, run, resolve: resolve as (value: unknown) => void, reject });
      this.#queuedSinceCheck = true;
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(this.#flush);
      }
    });
  }

  /**
   * The id of (store, owner) in `archive_owners`; with `create`, a new owner gets one (only inside a write
   * transaction). -1 for an owner that has none: it matches no row.
   */
  ownerId(store: string, owner: string, create: boolean): number {
    const key = `${store}\u0000${owner}`;
    let oid = this.#owners.get(key);
    if (oid !== undefined) return oid;
    oid = this.statement('SELECT oid FROM archive_owners WHERE store = ? AND owner = ?').pluck().get(store, owner) as number | undefined;
    if (oid === undefined) {
      if (!create) return -1;
      oid = Number(this.statement('INSERT INTO archive_owners (store, owner, items) VALUES (?, ?, 0)').run(store, owner).lastInsertRowid);
    }
    this.#owners.set(key, oid);
    return oid;
  }

  /**
   * Adds `delta` to the item count of an owner in `archive_owners`, at the commit (or before an
   * operation that reads or deletes archive rows: {@link flushCounts}). Only inside a write transaction.
   */
  countItems(oid: number, delta: number): void {
    this.#counts.set(oid, (this.#counts.get(oid) ?? 0) + delta);
  }

  /** Writes the item counts {@link countItems} gathered: one update per owner, not one per append. */
  flushCounts(): void {
    if (this.#counts.size === 0) return;
    const update = this.statement('UPDATE archive_owners SET items = items + ? WHERE oid = ?');
    for (const [oid, delta] of this.#counts) if (delta !== 0) update.run(delta, oid);
    this.#counts.clear();
  }

  readonly #flush = (): void => {
    this.#scheduled = false;
    while (this.#queue.length > 0) {
      this.#execute(this.#queue.splice(0, Math.max(1, this.#maxBatch - this.#done.length)));
      if (!this.#db.inTransaction || this.#done.length >= this.#maxBatch || this.#commitDelay === 0) this.#commit();
      // Leave the rest to the next turn, so I/O callbacks run in between.
      if (this.#queue.length > 0 && !this.#closed) {
        this.#scheduled = true;
        setImmediate(this.#flush);
        return;
      }
    }
    if (!this.#db.inTransaction) return;
    // The open transaction takes the operations of the next turns while every turn brings some (a busy server:
    // one commit for many turns, far fewer pages written), until it is `commitDelay` old or full. It commits
    // at the first turn that brought none: an idle server's writes wait for no timer.
    if (this.#timer === undefined) this.#timer = setTimeout(this.#commitNow, this.#commitDelay);
    if (!this.#idleCheck) {
      this.#idleCheck = true;
      this.#queuedSinceCheck = false;
      if (this.#idleWait === 0) setImmediate(this.#commitIfIdle);
      else setTimeout(this.#commitIfIdle, this.#idleWait);
    }
  };

  /** A turn after a flush: commits unless operations were queued meanwhile (their flush comes next). */
  readonly #commitIfIdle = (): void => {
    this.#idleCheck = false;
    // On the storage thread, calls arrive once per turn of the server's event loop, not of this one: a
    // quiet millisecond, not a quiet turn, says the server is idle.
    if (this.#idleWait !== 0 && this.#queuedSinceCheck && this.#db.inTransaction && !this.#closed) {
      this.#idleCheck = true;
      this.#queuedSinceCheck = false;
      setTimeout(this.#commitIfIdle, this.#idleWait);
      return;
    }
    if (this.#queue.length === 0 && !this.#closed) this.#commit();
  };

  readonly #commitNow = (): void => {
    this.#timer = undefined;
    this.#commit();
  };

  /**
   * Runs a batch of operations, in the open write transaction (begun here when the batch writes and
   * none is open); their results wait in #done for {@link #commit}. A statement that fails is undone
   * alone (SQLite's statement journal): its operation fails, the others go on. An I/O error or a full
   * disk rolls the whole transaction back: then every operation of it failed, those of earlier turns too.
   */
  #execute(batch: Operation[]): void {
    try {
      if (!this.#db.inTransaction && batch.some((operation) => operation.write)) this.#begin.run();
      const transaction = this.#db.inTransaction;
      for (const operation of batch) {
        try {
          this.#done.push({ operation, ok: true, value: operation.run() });
        } catch (error) {
          if (transaction && !this.#db.inTransaction) throw error;
          this.#done.push({ operation, ok: false, value: error });
        }
      }
    } catch (error) {
      this.#fail(error, batch);
    }
  }

  /** Commits the open transaction (if any), then settles the operations that ran in it. */
  #commit(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    if (this.#db.inTransaction) {
      try {
        this.flushCounts();
        this.#commitStatement.run();
      } catch (error) {
        this.#fail(error, []);
        return;
      }
      this.#checkpointer?.written();
    }
    const done = this.#done.splice(0);
    for (const entry of done) {
      if (entry.ok) entry.operation.resolve(entry.value);
      else entry.operation.reject(entry.value);
    }
  }

  /** Rolls the open transaction back: its operations, and those of `batch` not run yet, fail with `error`. */
  #fail(error: unknown, batch: Operation[]): void {
    this.#counts.clear();
    // Owners created in the transaction are rolled back with it.
    this.#owners.clear();
    if (this.#db.inTransaction) {
      try {
        this.#rollback.run();
      } catch {
        // The rollback of a failed transaction: the first error is the one to report.
      }
    }
    const failed = new Set<Operation>(batch);
    for (const entry of this.#done.splice(0)) failed.add(entry.operation);
    for (const operation of failed) operation.reject(error);
  }

  /** Closes the file at once, with nothing pending (after opening it to check it). */
  dispose(): void {
    this.#closed = true;
    this.#db.close();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    await this.users.settled();
    this.#closed = true;
    while (this.#queue.length > 0) {
      this.#execute(this.#queue.splice(0, Math.max(1, this.#maxBatch - this.#done.length)));
      if (this.#done.length >= this.#maxBatch) this.#commit();
    }
    this.#commit();
    await this.#checkpointer?.close();
    try {
      this.#db.pragma('optimize');
    } finally {
      this.#db.close();
    }
  }
}

/**
 * The checkpointing worker's program: its own connection to the file, and a loop that runs a PASSIVE
 * checkpoint (copy what it can, never wait for the writer or readers) whenever the main thread committed
 * since the last one, at most every `interval` ms. `state[0]` counts commits, `state[1]` asks it to stop:
 * shared memory, so the main thread signals a commit with one atomic add, no message.
 */
const CHECKPOINTER_SOURCE = `
const { workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const state = new Int32Array(workerData.state);
const db = new Database(workerData.file, { fileMustExist: true });
db.pragma('busy_timeout = ' + workerData.busyTimeout);
while (Atomics.load(state, 1) === 0) {
  if (Atomics.exchange(state, 0, 0) === 0) {
    Atomics.wait(state, 0, 0, 1000);
    continue;
  }
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
  } catch {
    // Busy or failed: the next one does it, or the main connection's own checkpoint at its limit.
  }
  Atomics.wait(state, 1, 0, workerData.interval);
}
db.close();
`;

/** Checkpoints on a worker thread, after commits, at most every `interval` ms. */
class Checkpointer {
  readonly #worker: Worker;
  readonly #state = new Int32Array(new SharedArrayBuffer(8));
  readonly #exited: Promise<void>;

  constructor(file: string, busyTimeout: number, interval: number) {
    const driver = createRequire(import.meta.url).resolve('better-sqlite3');
    this.#worker = new Worker(CHECKPOINTER_SOURCE, {
      eval: true,
      workerData: { file, busyTimeout, interval, driver, state: this.#state.buffer },
    });
    // It must not keep a process alive that forgot to close its storage.
    this.#worker.unref();
    this.#exited = new Promise((resolve) => {
      this.#worker.once('exit', () => resolve());
      this.#worker.once('error', () => resolve());
    });
  }

  /** After a commit: wakes the worker if it sleeps. */
  written(): void {
    if (Atomics.add(this.#state, 0, 1) === 0) Atomics.notify(this.#state, 0);
  }

  async close(): Promise<void> {
    // Awaited here, it must keep the process alive until it exited.
    this.#worker.ref();
    Atomics.store(this.#state, 1, 1);
    Atomics.notify(this.#state, 1);
    Atomics.notify(this.#state, 0);
    await this.#exited;
  }
}

function nonNegativeInteger(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new XmppConfigError(
      'PB_ERR_XMPP_OPTION',
      `sqliteStorage option ${name} must be a whole number of milliseconds (0 or more), got ${JSON.stringify(value)}`,
    );
  }
  return value;
}

function positiveInteger(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new XmppConfigError(
      'PB_ERR_XMPP_OPTION',
      `sqliteStorage option ${name} must be a positive integer, got ${JSON.stringify(value)}`,
    );
  }
  return value;
}

/**
 * Applies the migrations the file lacks, in order, in one transaction: all of them or none. Exported for
 * tests (with a list of their own); sqliteStorage() applies {@link migrations}.
 */
export function migrate(db: Database.Database, file: string, list: readonly Migration[] = migrations): void {
  // Reads the header and the whole schema: an unreadable or truncated file fails here.
  db.prepare('SELECT count(*) FROM sqlite_schema').get();
  const version = Number(db.pragma('user_version', { simple: true }));
  const latest = list[list.length - 1]?.version ?? 0;
  if (version > latest) {
    throw storageError(
      file,
      `its schema version is ${version}, newer than this version of @portbind/xmpp knows (${latest}); upgrade @portbind/xmpp, or open a backup made by this version`,
    );
  }
  const missing = list.filter((migration) => migration.version > version);
  if (missing.length === 0) return;
  let current = version;
  try {
    db.transaction(() => {
      for (const migration of missing) {
        current = migration.version;
        db.exec(migration.sql);
        db.pragma(`user_version = ${migration.version}`);
      }
    }).immediate();
  } catch (error) {
    // A file that cannot be written, or is damaged, says so (openError); anything else is this schema
    // meeting a file it does not fit (another application's database with a table of the same name).
    const code = sqliteCode(error);
    if (code !== 'SQLITE_ERROR' && !code.startsWith('SQLITE_CONSTRAINT')) throw error;
    throw storageError(
      file,
      `cannot migrate its schema from version ${version} to ${current} (${errorText(error)}); nothing was changed. Is it another application's database?`,
      error,
    );
  }
}

/** Fails (SQLITE_READONLY, SQLITE_CANTOPEN) unless the file can really be written; writes nothing. */
function probeWrite(db: Database.Database): void {
  db.exec('BEGIN IMMEDIATE');
  try {
    db.exec('CREATE TABLE write_probe (x); DROP TABLE write_probe');
  } finally {
    db.exec('ROLLBACK');
  }
}

class SqliteKeyValueStore implements KeyValueStore {
  readonly #storage: SqliteStorage;
  readonly #name: string;

  constructor(storage: SqliteStorage, name: string) {
    this.#storage = storage;
    this.#name = name;
  }

  get(owner: string, key: string): Promise<JsonValue | undefined> {
    return this.#storage.run(false, () => {
      const statement = this.#storage.statement('SELECT value FROM key_values WHERE store = ? AND owner = ? AND key = ?');
      const row = statement.get(this.#name, owner, key) as { value: string } | undefined;
      return row === undefined ? undefined : (JSON.parse(row.value) as JsonValue);
    });
  }

  async set(owner: string, key: string, value: JsonValue | undefined): Promise<void> {
    if (value === undefined) {
      await this.#storage.run(true, () =>
        this.#storage.statement('DELETE FROM key_values WHERE store = ? AND owner = ? AND key = ?').run(this.#name, owner, key),
      );
      return;
    }
    const text = JSON.stringify(value);
    await this.#storage.run(true, () =>
      this.#storage
        .statement('INSERT OR REPLACE INTO key_values (store, owner, key, value) VALUES (?, ?, ?, ?)')
        .run(this.#name, owner, key, text),
    );
  }

  compareAndSet(owner: string, key: string, expected: JsonValue | undefined, value: JsonValue | undefined): Promise<boolean> {
    // Serialized now: a value that cannot be stored throws in the caller's turn, as a rejection. In a write
    // transaction (BEGIN IMMEDIATE: the file's write lock), so no other process writes between the
    // comparison and the change.
    const texts = casTexts(expected, value);
    if (texts instanceof Error) return Promise.reject(texts);
    const [before, after] = texts;
    return this.#storage.run(true, () => {
      const where = 'store = ? AND owner = ? AND key = ?';
      if (before === undefined) {
        if (after === undefined)
          return this.#storage.statement(`SELECT 1 FROM key_values WHERE ${where}`).get(this.#name, owner, key) === undefined;
        const insert = this.#storage.statement(
          'INSERT INTO key_values (store, owner, key, value) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING',
        );
        return insert.run(this.#name, owner, key, after).changes === 1;
      }
      if (after === undefined) {
        return (
          this.#storage.statement(`DELETE FROM key_values WHERE ${where} AND value = ?`).run(this.#name, owner, key, before).changes === 1
        );
      }
      const update = this.#storage.statement(`UPDATE key_values SET value = ? WHERE ${where} AND value = ?`);
      return update.run(after, this.#name, owner, key, before).changes === 1;
    });
  }

  keys(owner: string, prefix = ''): Promise<string[]> {
    // `key >= prefix` bounds the index range; substr() (characters, as length()) keeps the prefix only.
    return this.#storage.run(false, () => {
      const statement = this.#storage.statement(
        'SELECT key FROM key_values WHERE store = ? AND owner = ? AND key >= ? AND substr(key, 1, length(?)) = ?',
      );
      return (statement.pluck().all(this.#name, owner, prefix, prefix, prefix) as string[]).sort(compareKeys);
    });
  }

  async clear(owner: string): Promise<void> {
    await this.#storage.run(true, () =>
      this.#storage.statement('DELETE FROM key_values WHERE store = ? AND owner = ?').run(this.#name, owner),
    );
  }
}

interface ArchiveRow {
  id: string;
  when: number;
  with: string;
  xml: string;
}

/** A time range with at most this many items is read by time and sorted; a larger one in archive order. */
const TIME_RANGE_SORT = 2000;

/** Rows one operation of a large delete removes at most. */
const DELETE_CHUNK = 100;

class SqliteArchiveStore implements ArchiveStore {
  readonly #storage: SqliteStorage;
  readonly #name: string;

  constructor(storage: SqliteStorage, name: string) {
    this.#storage = storage;
    this.#name = name;
  }

  async append(owner: string, item: ArchiveItem): Promise<void> {
    await this.#storage.run(true, () => this.#append(owner, item));
  }

  record(owner: string, item: ArchiveItem, onError: (error: unknown, owner: string) => void): void {
    this.#storage.run(true, () => this.#append(owner, item)).catch((error: unknown) => onError(error, owner));
  }

  #append(owner: string, item: ArchiveItem): void {
    // A fresh id (MAM's, an offline message's) is one insert into the table and its indexes, and a count in
    // memory written once per owner at the commit. An existing id is replaced: its row deleted (the
    // archive_deleted trigger counts it), then the new one inserted with the next seq ("moves it to the end").
    const oid = this.#storage.ownerId(this.#name, owner, true);
    const insert = this.#storage.statement(
      'INSERT INTO archive (oid, id, "when", "with", xml) VALUES (?, ?, ?, ?, ?) ON CONFLICT (oid, id) DO NOTHING',
    );
    if (insert.run(oid, item.id, item.when, item.with, item.xml).changes === 0) {
      this.#storage.flushCounts();
      this.#storage.statement('DELETE FROM archive WHERE oid = ? AND id = ?').run(oid, item.id);
      insert.run(oid, item.id, item.when, item.with, item.xml);
    }
    this.#storage.countItems(oid, 1);
  }

  query(owner: string, query: ArchiveQuery = {}): Promise<ArchiveResult> {
    const filter = filterSql(query);
    const backward = query.before !== undefined;
    const bounds = [query.after === undefined ? '' : ' AND seq > @after', query.before ? ' AND seq < @before' : ''].join('');
    const unfiltered = query.with === undefined && query.start === undefined && query.end === undefined && query.ids === undefined;
    const max = pageSize(query.max);
    return this.#storage.run(false, () => {
      this.#storage.flushCounts();
      const oid = this.#storage.ownerId(this.#name, owner, false);
      const parameters: Record<string, unknown> = { oid, ...filterParameters(query) };
      const count = unfiltered
        ? this.#storage.statement('SELECT items FROM archive_owners WHERE oid = @oid')
        : this.#storage.statement(`SELECT count(*) FROM archive INDEXED BY ${indexFor(query, true)} WHERE ${filter}`);
      const total = (count.pluck().get(parameters) as number | undefined) ?? 0;
      // The index a page reads is chosen here rather than by the planner, which (without statistics, or even
      // with them) may walk an owner's whole archive in seq order to avoid sorting a few rows. A time range
      // alone is read by time and sorted when it is small, otherwise in archive order until the page is full.
      const small = total <= TIME_RANGE_SORT;
      const index = indexFor(query, small);
      const order = `${index === 'archive_id' || index === 'archive_time' ? '+seq' : 'seq'} ${backward ? 'DESC' : 'ASC'}`;
      const page = this.#storage.statement(
        `SELECT id, "when", "with", xml FROM archive INDEXED BY ${index} WHERE ${filter}${bounds} ORDER BY ${order} LIMIT @limit`,
      );
      const seqOf = this.#storage.statement('SELECT seq FROM archive WHERE oid = ? AND id = ?');
      const seq = (id: string): number => {
        const found = seqOf.pluck().get(oid, id) as number | undefined;
        if (found === undefined) throw cursorNotFound(id);
        return found;
      };
      if (query.after !== undefined) parameters.after = seq(query.after);
      if (query.before) parameters.before = seq(query.before);
      // One more row than asked for says whether the page is complete.
      parameters.limit = max === undefined ? -1 : max + 1;
      const rows = page.all(parameters) as ArchiveRow[];
      const complete = max === undefined || rows.length <= max;
      if (!complete) rows.pop();
      if (backward) rows.reverse();
      const items = rows.map((row) => ({ id: row.id, when: row.when, with: row.with, xml: row.xml }));
      return { items, complete, count: total };
    });
  }

  delete(owner: string, query: Pick<ArchiveQuery, 'ids' | 'with' | 'end'> = {}): Promise<number> {
    const selection = { ids: query.ids, with: query.with, end: query.end };
    return this.#deleteChunked(`SELECT seq FROM archive INDEXED BY ${indexFor(selection, true)} WHERE ${filterSql(selection)}`, () => ({
      oid: this.#storage.ownerId(this.#name, owner, false),
      ...filterParameters(selection),
    }));
  }

  async trim(owner: string, withValue: string, keep: number): Promise<number> {
    const parameters = { oid: -1, with: withValue, keep: Math.max(0, Math.floor(keep)) };
    // The newest item to delete: the (keep+1)th newest of this `with`; then everything at or before it.
    const cutoff = await this.#storage.run(false, () => {
      parameters.oid = this.#storage.ownerId(this.#name, owner, false);
      return this.#storage
        .statement(
          'SELECT seq FROM archive INDEXED BY archive_with WHERE oid = @oid AND "with" = @with ORDER BY seq DESC LIMIT 1 OFFSET @keep',
        )
        .pluck()
        .get(parameters);
    });
    if (cutoff === undefined) return 0;
    return this.#deleteChunked(
      'SELECT seq FROM archive INDEXED BY archive_with WHERE oid = @oid AND "with" = @with AND seq <= @cutoff',
      () => ({
        oid: parameters.oid,
        with: withValue,
        cutoff,
      }),
    );
  }

  expire(before: number): Promise<number> {
    // Owner by owner (archive_owners lists them), each a range of archive_time: no index on time alone to
    // keep up to date at every append.
    return this.#deleteChunked(
      `SELECT a.seq FROM archive_owners AS o JOIN archive AS a INDEXED BY archive_time
        ON a.oid = o.oid AND a."when" < @before WHERE o.store = @store`,
      () => ({ store: this.#name, before }),
    );
  }

  /**
   * Deletes the rows whose seq `select` returns, DELETE_CHUNK rows per operation (and commit), other
   * operations running in between: deleting an account's 100,000 items, or a conversation's rows spread
   * over the whole file, does not hold the event loop (a commit writes every page it changed to the WAL:
   * rows spread out change a page each, in the table and in each index). Not atomic: a crash between
   * operations leaves the rest, which the same call deletes again. `parameters` runs in the operation.
   */
  async #deleteChunked(select: string, parameters: () => Record<string, unknown>): Promise<number> {
    const sql = `DELETE FROM archive WHERE seq IN (${select} LIMIT ${DELETE_CHUNK})`;
    let deleted = 0;
    for (;;) {
      const changes = await this.#storage.run(true, () => {
        // The archive_deleted trigger updates archive_owners: the counts of this transaction's appends first.
        this.#storage.flushCounts();
        return this.#storage.statement(sql).run(parameters()).changes;
      });
      deleted += changes;
      if (changes < DELETE_CHUNK) return deleted;
    }
  }
}

/**
 * The index that serves a query's filters: archive_id for ids, archive_with for a `with`, for a time
 * range alone archive_time when `small` (read by time, then sorted) or archive_owner (archive order,
 * the time in the index), archive_owner for none.
 */
function indexFor(query: Pick<ArchiveQuery, 'ids' | 'with' | 'start' | 'end'>, small: boolean): string {
  if (query.ids !== undefined) return 'archive_id';
  if (query.with !== undefined) return 'archive_with';
  if ((query.start !== undefined || query.end !== undefined) && small) return 'archive_time';
  return 'archive_owner';
}

/** The WHERE clause of a query's filters (named parameters: see {@link filterParameters}). */
function filterSql(query: Pick<ArchiveQuery, 'ids' | 'with' | 'start' | 'end'>): string {
  return [
    'oid = @oid',
    query.with === undefined ? '' : ' AND "with" = @with',
    query.start === undefined ? '' : ' AND "when" >= @start',
    query.end === undefined ? '' : ' AND "when" <= @end',
    query.ids === undefined ? '' : ' AND id IN (SELECT value FROM json_each(@ids))',
  ].join('');
}

function filterParameters(query: Pick<ArchiveQuery, 'ids' | 'with' | 'start' | 'end'>): Record<string, unknown> {
  const parameters: Record<string, unknown> = {};
  if (query.with !== undefined) parameters.with = query.with;
  if (query.start !== undefined) parameters.start = query.start;
  if (query.end !== undefined) parameters.end = query.end;
  if (query.ids !== undefined) parameters.ids = JSON.stringify(query.ids);
  return parameters;
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

/** Accounts in the `accounts` table. PBKDF2 runs on libuv's thread pool; operations on one username run in the order they were called. */
class SqliteUserStore implements UserStore {
  readonly #storage: SqliteStorage;
  readonly #iterations: number;
  /** The last pending operation per normalized username. */
  readonly #pending = new Map<string, Promise<unknown>>();

  constructor(storage: SqliteStorage, iterations: number) {
    this.#storage = storage;
    this.#iterations = iterations;
  }

  /** Resolves once every operation called so far finished. */
  async settled(): Promise<void> {
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending.values()]);
  }

  get(username: string): Promise<StoredUser | undefined> {
    const name = normalizeUsername(username);
    if (name === undefined) return Promise.resolve(undefined);
    return this.#serial(name, () => this.#read(name));
  }

  create(username: string, password: string): Promise<boolean> {
    const name = normalizeUsername(username);
    if (name === undefined) {
      return Promise.reject(new SaslprepError(`invalid username ${JSON.stringify(username)}: no @, /, spaces or control characters`));
    }
    return this.#serial(name, async () => {
      if ((await this.#read(name)) !== undefined) return false;
      const user = await this.#derive(name, password);
      const now = Date.now();
      return this.#storage.run(
        true,
        () =>
          this.#storage
            .statement(
              `INSERT INTO accounts (username, sha1_salt, sha1_iterations, sha1_stored_key, sha1_server_key,
          sha256_salt, sha256_iterations, sha256_stored_key, sha256_server_key, created, updated)
         VALUES (@username, @sha1_salt, @sha1_iterations, @sha1_stored_key, @sha1_server_key,
          @sha256_salt, @sha256_iterations, @sha256_stored_key, @sha256_server_key, @now, @now)
         ON CONFLICT (username) DO NOTHING`,
            )
            .run({ ...columns(user), now }).changes === 1,
      );
    });
  }

  setPassword(username: string, password: string): Promise<boolean> {
    const name = normalizeUsername(username);
    if (name === undefined) return Promise.resolve(false);
    return this.#serial(name, async () => {
      if ((await this.#read(name)) === undefined) return false;
      const user = await this.#derive(name, password);
      return this.#storage.run(
        true,
        () =>
          this.#storage
            .statement(
              `UPDATE accounts SET sha1_salt = @sha1_salt, sha1_iterations = @sha1_iterations, sha1_stored_key = @sha1_stored_key,
          sha1_server_key = @sha1_server_key, sha256_salt = @sha256_salt, sha256_iterations = @sha256_iterations,
          sha256_stored_key = @sha256_stored_key, sha256_server_key = @sha256_server_key, updated = @now
         WHERE username = @username`,
            )
            .run({ ...columns(user), now: Date.now() }).changes === 1,
      );
    });
  }

  delete(username: string): Promise<boolean> {
    const name = normalizeUsername(username);
    if (name === undefined) return Promise.resolve(false);
    return this.#serial(name, () =>
      this.#storage.run(true, () => this.#storage.statement('DELETE FROM accounts WHERE username = ?').run(name).changes === 1),
    );
  }

  #read(name: string): Promise<StoredUser | undefined> {
    return this.#storage.run(false, () => {
      const row = this.#storage.statement('SELECT * FROM accounts WHERE username = ?').get(name) as AccountRow | undefined;
      return row === undefined ? undefined : storedUser(row);
    });
  }

  /** Runs `operation` after the operations on `name` called before it. */
  #serial<T>(name: string, operation: () => Promise<T>): Promise<T> {
    const previous = this.#pending.get(name);
    const result = previous === undefined ? operation() : previous.then(operation, operation);
    const settled = result.then(
      () => undefined,
      () => undefined,
    );
    this.#pending.set(name, settled);
    void settled.then(() => {
      if (this.#pending.get(name) === settled) this.#pending.delete(name);
    });
    return result;
  }

  #derive(username: string, password: string): Promise<StoredUser> {
    return deriveStoredUser(username, password, this.#iterations);
  }
}

function columns(user: StoredUser): Record<string, unknown> {
  return {
    username: user.username,
    sha1_salt: user.sha1.salt,
    sha1_iterations: user.sha1.iterations,
    sha1_stored_key: user.sha1.storedKey,
    sha1_server_key: user.sha1.serverKey,
    sha256_salt: user.sha256.salt,
    sha256_iterations: user.sha256.iterations,
    sha256_stored_key: user.sha256.storedKey,
    sha256_server_key: user.sha256.serverKey,
  };
}

function storedUser(row: AccountRow): StoredUser {
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
