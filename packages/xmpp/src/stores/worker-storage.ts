import { existsSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { PortbindError } from '@portbind/core';
import type { UserStore } from '../sasl/credentials.js';
import { SaslprepError } from '../sasl/saslprep.js';
import { type StanzaErrorCondition, StanzaErrorException } from '../stanza-error.js';
import { PressureSignal } from './pressure.js';
import type { ArchiveItem, ArchiveStore, KeyValueStore, XmppStorage } from './types.js';

// SQLite on a thread of its own. better-sqlite3 is synchronous: on the event loop, every archived
// message costs the server the inserts into the table and its indexes (measured: ~40 µs of a
// message's ~100 µs with stream management and MAM). Here the main thread only posts the calls
// (one message per turn of the event loop) and settles their promises from the answers (one
// message per commit); the storage thread runs the same SqliteStorage — queue, group commits,
// checkpoints — so durability is unchanged: a write resolves once its transaction committed.
// Calls are answered in the order they were made for writes and reads alike (one queue).

/**
 * One call: id, which store, its name, the method, the arguments (structured-cloned); with `quiet`, a
 * call nobody waits for (ArchiveStore.record): answered only when it fails, naming the error handler
 * by its index. @internal
 */
export type StorageCall = [id: number, target: CallTarget, store: string, method: string, args: unknown[]] | RecordsCall;
/** Which store a call goes to. @internal */
export type CallTarget = 'users' | 'kv' | 'archive';
/**
 * ArchiveStore.record calls in a row to one store with one error handler: the id of the first (the
 * others follow it), the handler's index, how many, and their fields as bytes ({@link RecordWriter}),
 * whose memory is handed to the storage thread (transferred, not copied). @internal
 */
export type RecordsCall = [id: number, target: 'records', store: string, handler: number, count: number, fields: Uint8Array];

/**
 * The records of a {@link RecordsCall}, written as they come: each string as its UTF-8 length (4 bytes) and
 * bytes, `when` as a double, the xml after a flag byte (0: the text of the record before it, a message's
 * other archive copy, which crosses once). Why bytes: the string this replaced (one per turn, every
 * record's fields joined) kept each record's pieces alive on the heap until the turn's end — tens of
 * milliseconds in a busy turn, long enough for scavenges to copy them — and was flattened and cloned
 * to be posted; bytes written now leave nothing behind but the buffer, which is off the heap and moves
 * to the storage thread without a copy. Measured (`node --trace-gc`, SM+MAM at 13–15k msg/s): scavenges
 * 3.2–3.4 ms on average before, 2.6–2.9 ms after; throughput within the machine's noise. UTF-8 as SQLite
 * stores text (a lone surrogate becomes U+FFFD here as it would when bound). @internal
 */
export class RecordWriter {
  #bytes: Buffer;
  #at = 0;
  count = 0;

  constructor(size = 16 * 1024) {
    // Never from Buffer's shared pool: its memory is transferred.
    this.#bytes = Buffer.allocUnsafeSlow(size);
  }

  add(owner: string, item: ArchiveItem, sameXml: boolean): void {
    const xml = sameXml ? '' : item.xml;
    // At most 3 bytes per UTF-16 unit, 4 per length, 8 for when, 1 flag.
    this.#room(4 + owner.length * 3 + 4 + item.id.length * 3 + 8 + 4 + item.with.length * 3 + 1 + 4 + xml.length * 3);
    this.#string(owner);
    this.#string(item.id);
    this.#at = this.#bytes.writeDoubleLE(item.when, this.#at);
    this.#string(item.with);
    if (sameXml) {
      this.#bytes[this.#at++] = 0;
    } else {
      this.#bytes[this.#at++] = 1;
      this.#string(xml);
    }
    this.count++;
  }

  /** The bytes written (a view of memory that is then posted with its buffer transferred). */
  finish(): Uint8Array {
    return new Uint8Array(this.#bytes.buffer, this.#bytes.byteOffset, this.#at);
  }

  #string(value: string): void {
    const written = this.#bytes.write(value, this.#at + 4, 'utf8');
    this.#bytes.writeUInt32LE(written, this.#at);
    this.#at += 4 + written;
  }

  #room(needed: number): void {
    if (this.#at + needed <= this.#bytes.length) return;
    const grown = Buffer.allocUnsafeSlow(Math.max(this.#bytes.length * 2, this.#at + needed));
    this.#bytes.copy(grown, 0, 0, this.#at);
    this.#bytes = grown;
  }
}

/** The records of a {@link RecordsCall} ({@link RecordWriter}'s bytes), in order. @internal */
export function decodeRecords(fields: Uint8Array, count: number, each: (owner: string, item: ArchiveItem) => void): void {
  const bytes = Buffer.from(fields.buffer, fields.byteOffset, fields.byteLength);
  let at = 0;
  const text = (): string => {
    const length = bytes.readUInt32LE(at);
    at += 4;
    const value = bytes.toString('utf8', at, at + length);
    at += length;
    return value;
  };
  let xml = '';
  for (let i = 0; i < count; i++) {
    const owner = text();
    const id = text();
    const when = bytes.readDoubleLE(at);
    at += 8;
    const withValue = text();
    if (bytes[at++] === 1) xml = text();
    each(owner, { id, when, with: withValue, xml });
  }
}

/**
 * One answer: id, fulfilled, the value or the error. `[QUIET_DONE, true, n]`: n quiet calls committed;
 * a failed quiet call: `[id, false, error, handler, owner]`. @internal
 */
export type StorageReply = [id: number, ok: boolean, value: unknown, handler?: number, owner?: string];
/** The id of the answer that counts committed quiet calls. @internal */
export const QUIET_DONE = -1;
const EMPTY = new Uint8Array(0);
/** Error handlers of quiet calls kept by identity; past this many distinct ones, record() falls back to append(). */
const MAX_HANDLERS = 64;
/** An error, as it crosses threads. @internal */
export interface WorkerError {
  name: string;
  message: string;
  code?: string;
  condition?: string;
}

/** The storage thread's program: compiled beside this file; from the TypeScript sources (tests), the build's. */
function workerUrl(): URL {
  const here = import.meta.url;
  if (!here.endsWith('.ts')) return new URL('./sqlite-worker.js', here);
  const built = new URL('../../dist/stores/sqlite-worker.js', here);
  if (!existsSync(built))
    throw new PortbindError('PB_ERR_XMPP_STORAGE', `the storage thread needs the build: run tsc -b (missing ${built.pathname})`);
  return built;
}

/**
 * The process's Node options for the thread, without export conditions: the thread runs the build
 * (a test runner's `--conditions=@portbind/source` would send its imports to TypeScript sources).
 */
function threadArgs(): string[] {
  const args: string[] = [];
  for (let i = 0; i < process.execArgv.length; i++) {
    const arg = process.execArgv[i] as string;
    if (arg === '-C' || arg === '--conditions') {
      i++;
      continue;
    }
    if (arg.startsWith('--conditions=') || (arg.startsWith('-C') && arg.length > 2)) continue;
    args.push(arg);
  }
  return args;
}

/**
 * The storage thread, with the process's Node options ({@link threadArgs}) but those a worker cannot
 * take (V8's per-process flags such as `--trace-gc` or `--max-semi-space-size`: Node refuses to start
 * a worker with them, ERR_WORKER_INVALID_EXEC_ARGV, and the process's own already apply to it).
 */
function startThread(url: URL, workerData: unknown): Worker {
  const execArgv = threadArgs();
  try {
    return new Worker(url, { workerData, execArgv });
  } catch (error) {
    if ((error as { code?: unknown }).code !== 'ERR_WORKER_INVALID_EXEC_ARGV') throw error;
    const message = (error as Error).message;
    const invalid = new Set(
      message
        .slice(message.indexOf(':') + 1)
        .split(',')
        .map((flag) => flag.trim()),
    );
    const valid = execArgv.filter((arg) => !invalid.has(arg));
    try {
      return new Worker(url, { workerData, execArgv: valid });
    } catch {
      return new Worker(url, { workerData, execArgv: [] });
    }
  }
}

/** The error as the store threw it: a PortbindError with its code, a stanza error, a plain Error. */
function revive(error: WorkerError): Error {
  if (error.name === 'SaslprepError') return new SaslprepError(error.message);
  if (error.condition !== undefined) {
    const condition = error.condition as StanzaErrorCondition;
    return new StanzaErrorException(condition, error.message === condition ? undefined : error.message);
  }
  if (error.code?.startsWith('PB_ERR_')) return new PortbindError(error.code as string, error.message);
  const revived = new Error(error.message);
  revived.name = error.name;
  if (error.code !== undefined) Object.assign(revived, { code: error.code });
  return revived;
}

/** The length of an archive item's text (an append's second argument), 0 for anything else. */
function textLength(item: unknown): number {
  const xml = (item as { xml?: unknown } | null | undefined)?.xml;
  return typeof xml === 'string' ? xml.length : 0;
}

/**
 * What a call holds in memory until the storage thread is through with it, in characters, for
 * `maxInFlightChars`: an archive item's text; a key-value write's value (a PEP item, a vCard, a roster),
 * and a compare-and-set's expected value too. Other calls (reads, account changes) hold little: 0.
 */
function callChars(target: CallTarget, method: string, args: readonly unknown[]): number {
  if (target === 'archive') return method === 'append' ? textLength(args[1]) : 0;
  if (target !== 'kv') return 0;
  if (method === 'set') return valueChars(args[2]);
  if (method === 'compareAndSet') return valueChars(args[2]) + valueChars(args[3]);
  return 0;
}

/**
 * About the characters of a value's JSON text (its strings and keys, 8 per number or literal), counted
 * without writing it: structured cloning walks the same value again on its way to the thread.
 */
function valueChars(value: unknown): number {
  let chars = 0;
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const next = stack.pop();
    if (typeof next === 'string') chars += next.length + 2;
    else if (next === null || typeof next !== 'object') chars += next === undefined ? 0 : 8;
    else if (Array.isArray(next)) {
      chars += 2 + next.length;
      for (const entry of next) stack.push(entry);
    } else {
      chars += 2;
      for (const key in next) {
        chars += key.length + 4;
        stack.push((next as Record<string, unknown>)[key]);
      }
    }
  }
  return chars;
}

/** Byte arrays come back as Uint8Array: the credentials' keys are Buffers again. */
function buffers(value: unknown): unknown {
  if (value instanceof Uint8Array) return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map(buffers);
  const copy: Record<string, unknown> = {};
  for (const [key, entry] of Object.entries(value)) copy[key] = buffers(entry);
  return copy;
}

/** Calls posted and not answered past which the storage says it is behind (onPressure), or, with nobody listening, the event loop waits for it. */
const MAX_IN_FLIGHT = 20_000;
/** … until this few are left. */
const RESUME_IN_FLIGHT = 10_000;
/** With a listener that stops the input: past this many (what was read already still comes), the event loop waits after all. */
const HARD_IN_FLIGHT_FACTOR = 4;
/**
 * Archived text (characters of XML) posted and not answered past which the storage is behind as well, whatever
 * the count of calls: 20,000 calls of messages of the largest size a client may send would be gigabytes in
 * this process (the records wait in the thread's queue). Resumes at half, as the count does.
 */
const MAX_IN_FLIGHT_CHARS = 64 * 1024 * 1024;

/** The storage on its thread: the store interfaces, each call posted there. @internal */
export class WorkerStorage implements XmppStorage {
  readonly users: UserStore;
  readonly file: string;
  readonly #worker: Worker;
  readonly #pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: unknown) => void; users: boolean }>();
  readonly #keyValues = new Map<string, KeyValueStore>();
  readonly #archives = new Map<string, ArchiveStore>();
  #outbox: StorageCall[] = [];
  /** The records call at the end of the outbox, which the next record() to its store and handler joins. */
  #records: RecordsCall | undefined;
  /** Where #records' fields are being written. */
  #writer: RecordWriter | undefined;
  /** The text of the last record in #records (sent once when the next one has the same). */
  #lastXml: string | undefined;
  /** Quiet calls posted and not yet committed (they keep the thread referenced, as pending calls do). */
  #quietPending = 0;
  /** Error handlers of quiet calls, by index (record()'s onError, one per caller). */
  readonly #handlers: Array<(error: unknown, owner: string) => void> = [];
  readonly #handlerIndex = new Map<(error: unknown, owner: string) => void, number>();
  #scheduled = false;
  #next = 0;
  /** Calls the storage thread has answered, counted there: shared memory, readable while this thread waits. */
  readonly #done = new Int32Array(new SharedArrayBuffer(4));
  #closed: Promise<void> | undefined;
  #dead: Error | undefined;
  readonly #exited: Promise<void>;
  readonly #maxInFlight: number;
  readonly #maxInFlightChars: number;
  readonly #pressure = new PressureSignal();
  /** Characters of archived text posted so far, and those of the calls known answered. */
  #charsPosted = 0;
  #charsDone = 0;
  /** Pairs (call id, #charsPosted after it) of the calls with text, from #charHead on not yet known answered. */
  readonly #charMarks: number[] = [];
  #charHead = 0;

  /** `options` were checked by opening the file on this thread; the thread opens it again. */
  constructor(file: string, options: Record<string, unknown>) {
    this.file = file;
    this.#maxInFlight = typeof options.maxInFlight === 'number' ? options.maxInFlight : MAX_IN_FLIGHT;
    this.#maxInFlightChars = typeof options.maxInFlightChars === 'number' ? options.maxInFlightChars : MAX_IN_FLIGHT_CHARS;
    this.#worker = startThread(workerUrl(), { options, done: this.#done.buffer });
    // Idle, it must not keep a process alive that forgot to close its storage; with calls pending, it does.
    this.#worker.unref();
    this.#worker.on('message', (message: StorageReply[] | { closed: true }) => {
      if (Array.isArray(message)) this.#settle(message);
      if (this.#pressure.behind && this.#caughtUp()) this.#pressure.tell(false);
    });
    this.#exited = new Promise((resolve) => {
      this.#worker.once('exit', () => {
        this.#fail(new PortbindError('PB_ERR_XMPP_STORAGE', `storage ${file}: its thread stopped`));
        resolve();
      });
    });
    this.#worker.on('error', (error) => {
      this.#fail(new PortbindError('PB_ERR_XMPP_STORAGE', `storage ${file}: its thread failed: ${error.message}`, { cause: error }));
    });
    const call =
      (target: CallTarget, store: string, method: string) =>
      (...args: unknown[]) =>
        this.#call(target, store, method, args);
    this.users = {
      get: call('users', '', 'get') as UserStore['get'],
      create: call('users', '', 'create') as UserStore['create'],
      setPassword: call('users', '', 'setPassword') as UserStore['setPassword'],
      delete: call('users', '', 'delete') as UserStore['delete'],
    };
    this.#stores = { call };
  }

  readonly #stores: { call: (target: CallTarget, store: string, method: string) => (...args: unknown[]) => Promise<unknown> };

  keyValue(name: string): KeyValueStore {
    let store = this.#keyValues.get(name);
    if (store === undefined) {
      const call = this.#stores.call;
      store = {
        get: call('kv', name, 'get') as KeyValueStore['get'],
        set: call('kv', name, 'set') as KeyValueStore['set'],
        keys: call('kv', name, 'keys') as KeyValueStore['keys'],
        clear: call('kv', name, 'clear') as KeyValueStore['clear'],
        compareAndSet: call('kv', name, 'compareAndSet') as NonNullable<KeyValueStore['compareAndSet']>,
      };
      this.#keyValues.set(name, store);
    }
    return store;
  }

  archive(name: string): ArchiveStore {
    let store = this.#archives.get(name);
    if (store === undefined) {
      const call = this.#stores.call;
      store = {
        append: call('archive', name, 'append') as ArchiveStore['append'],
        record: (owner, item, onError) => this.#record(name, owner, item, onError),
        query: call('archive', name, 'query') as ArchiveStore['query'],
        delete: call('archive', name, 'delete') as ArchiveStore['delete'],
        trim: call('archive', name, 'trim') as ArchiveStore['trim'],
        expire: call('archive', name, 'expire') as ArchiveStore['expire'],
      };
      this.#archives.set(name, store);
    }
    return store;
  }

  #call(target: CallTarget, store: string, method: string, args: unknown[]): Promise<unknown> {
    if (this.#closed !== undefined) return Promise.reject(new PortbindError('PB_ERR_XMPP_STORAGE', `storage ${this.file} is closed`));
    if (this.#dead !== undefined) return Promise.reject(this.#dead);
    const id = this.#next++;
    this.#backpressure(id, callChars(target, method, args));
    // Undefined arguments (an optional query) are left out, as the store would see them.
    while (args.length > 0 && args[args.length - 1] === undefined) args.pop();
    return new Promise((resolve, reject) => {
      if (this.#pending.size === 0 && this.#quietPending === 0) this.#worker.ref();
      this.#pending.set(id, { resolve, reject, users: target === 'users' });
      this.#endRecords();
      this.#outbox.push([id, target, store, method, args]);
      if (!this.#scheduled) {
        this.#scheduled = true;
        // The calls of one turn of the event loop, in one message.
        setImmediate(this.#post);
      }
    });
  }

  /** ArchiveStore.record: posted like append, no promise; the thread answers only a failure. */
  #record(store: string, owner: string, item: ArchiveItem, onError: (error: unknown, owner: string) => void): void {
    let handler = this.#handlerIndex.get(onError);
    if (handler === undefined) {
      if (this.#handlers.length >= MAX_HANDLERS) {
        this.#call('archive', store, 'append', [owner, item]).catch((error: unknown) => onError(error, owner));
        return;
      }
      handler = this.#handlers.push(onError) - 1;
      this.#handlerIndex.set(onError, handler);
    }
    if (this.#closed !== undefined || this.#dead !== undefined) {
      const error = this.#dead ?? new PortbindError('PB_ERR_XMPP_STORAGE', `storage ${this.file} is closed`);
      queueMicrotask(() => onError(error, owner));
      return;
    }
    // The fields cross as text: anything but strings and a number would arrive as something else.
    if (
      typeof owner !== 'string' ||
      typeof item.id !== 'string' ||
      typeof item.with !== 'string' ||
      typeof item.xml !== 'string' ||
      typeof item.when !== 'number'
    ) {
      const error = new TypeError(`storage: cannot store this value (an archive item's id, with and xml are strings, when a number)`);
      queueMicrotask(() => onError(error, owner));
      return;
    }
    const id = this.#next++;
    this.#backpressure(id, item.xml.length);
    if (this.#pending.size === 0 && this.#quietPending === 0) this.#worker.ref();
    this.#quietPending++;
    const records = this.#records;
    if (records !== undefined && this.#writer !== undefined && records[2] === store && records[3] === handler) {
      this.#writer.add(owner, item, item.xml === this.#lastXml);
    } else {
      this.#endRecords();
      this.#writer = new RecordWriter();
      this.#writer.add(owner, item, false);
      this.#records = [id, 'records', store, handler, 0, EMPTY];
      this.#outbox.push(this.#records);
    }
    this.#lastXml = item.xml;
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(this.#post);
    }
  }

  /**
   * Memory is bounded, by calls and by archived text: when the storage thread is this far behind (a server
   * archiving faster than the disk commits), the server stops reading from its clients (onPressure), and past
   * four times as much this thread waits for it, as it would with SQLite on the event loop, instead of
   * queueing without end. `chars`: the archived text call `id` carries, counted once it is through.
   */
  #backpressure(id: number, chars: number): void {
    this.#hold(id, chars);
    if (chars > 0) {
      this.#charsPosted += chars;
      this.#charMarks.push(id, this.#charsPosted);
    }
  }

  #hold(id: number, chars: number): void {
    const behind = id - Atomics.load(this.#done, 0);
    const text = chars > 0 ? this.#charsInFlight() + chars : 0;
    if (behind < this.#maxInFlight && text < this.#maxInFlightChars) return;
    if (this.#pressure.heard) {
      // The server stops reading from its clients until the thread caught up: the event loop goes on
      // (timers, pings, the cluster's heartbeats, health checks), only what was read already still comes.
      this.#pressure.tell(true);
      if (behind < this.#maxInFlight * HARD_IN_FLIGHT_FACTOR && text < this.#maxInFlightChars * HARD_IN_FLIGHT_FACTOR) return;
    }
    this.#post();
    // Until the calls before this one are few enough (this one is not posted yet: it cannot be waited for).
    const deadline = Date.now() + 30_000;
    while (
      (id - Atomics.load(this.#done, 0) >= this.#resumeInFlight || this.#charsInFlight() > this.#maxInFlightChars / 2) &&
      this.#dead === undefined &&
      Date.now() < deadline
    ) {
      Atomics.wait(this.#done, 0, Atomics.load(this.#done, 0), 100);
    }
  }

  /** Characters of archived text posted and not yet answered. */
  #charsInFlight(): number {
    const done = Atomics.load(this.#done, 0);
    const marks = this.#charMarks;
    let head = this.#charHead;
    while (head < marks.length && (marks[head] as number) < done) {
      this.#charsDone = marks[head + 1] as number;
      head += 2;
    }
    if (head >= 4096 && head * 2 >= marks.length) {
      marks.splice(0, head);
      head = 0;
    }
    this.#charHead = head;
    return this.#charsPosted - this.#charsDone;
  }

  /** Few enough calls and little enough text wait for the thread: the input may be read again. */
  #caughtUp(): boolean {
    return this.#next - Atomics.load(this.#done, 0) <= this.#resumeInFlight && this.#charsInFlight() <= this.#maxInFlightChars / 2;
  }

  get #resumeInFlight(): number {
    return Math.floor((this.#maxInFlight * RESUME_IN_FLIGHT) / MAX_IN_FLIGHT);
  }

  /**
   * Hear when the storage thread falls behind (`true`: more calls waiting than `maxInFlight`) and when it
   * has caught up (`false`): the server stops reading from its clients meanwhile. Returns the unsubscribe.
   */
  onPressure(listener: (behind: boolean) => void): () => void {
    return this.#pressure.listen(listener);
  }

  /** The records call being written gets its bytes and count; the next record() starts another. */
  #endRecords(): void {
    const records = this.#records;
    const writer = this.#writer;
    this.#records = undefined;
    this.#writer = undefined;
    this.#lastXml = undefined;
    if (records === undefined || writer === undefined) return;
    records[4] = writer.count;
    records[5] = writer.finish();
  }

  readonly #post = (): void => {
    this.#scheduled = false;
    if (this.#outbox.length === 0) return;
    this.#endRecords();
    const batch = this.#outbox;
    this.#outbox = [];
    const transfer = (calls: StorageCall[]): ArrayBuffer[] =>
      calls.flatMap((call) => (call[1] === 'records' ? [call[5].buffer as ArrayBuffer] : []));
    try {
      this.#worker.postMessage(batch, transfer(batch));
    } catch (error) {
      // A value that cannot be cloned (a function in a JSON value): those calls fail, not the others
      // (a records call is bytes and numbers only: it always crosses). Nothing was transferred.
      for (const call of batch) {
        try {
          this.#worker.postMessage([call], transfer([call]));
        } catch {
          const failure: WorkerError = { name: 'TypeError', message: `storage: cannot store this value (${String(error)})` };
          this.#settle([[call[0], false, failure]]);
        }
      }
    }
  };

  #settle(replies: StorageReply[]): void {
    for (const [id, ok, value, handler, owner] of replies) {
      if (handler !== undefined) {
        // A quiet call failed.
        this.#quietPending--;
        try {
          this.#handlers[handler]?.(revive(value as WorkerError), owner ?? '');
        } catch {
          // A handler that throws: nothing else to tell.
        }
        continue;
      }
      if (id === QUIET_DONE) {
        this.#quietPending -= value as number;
        continue;
      }
      const pending = this.#pending.get(id);
      if (pending === undefined) continue;
      this.#pending.delete(id);
      if (ok) pending.resolve(pending.users ? buffers(value) : value);
      else pending.reject(revive(value as WorkerError));
    }
    // Idle again: the thread no longer keeps the process alive — unless it is closing (close() holds it until it closed).
    if (this.#pending.size === 0 && this.#quietPending === 0 && this.#closed === undefined) this.#worker.unref();
  }

  #fail(error: Error): void {
    this.#dead ??= error;
    for (const pending of this.#pending.values()) pending.reject(error);
    this.#pending.clear();
    // Quiet calls in flight: their writes are lost with the thread; their callers hear of it once.
    if (this.#quietPending > 0) {
      this.#quietPending = 0;
      for (const handler of this.#handlers) {
        try {
          handler(error, '');
        } catch {
          // Nothing else to tell.
        }
      }
    }
  }

  close(): Promise<void> {
    this.#closed ??= (async () => {
      this.#post();
      // Awaited, the thread keeps the process alive until it closed the file.
      this.#worker.ref();
      const closed = new Promise<WorkerError | undefined>((resolve) => {
        this.#worker.on('message', (message: StorageReply[] | { closed: true; error?: WorkerError }) => {
          if (!Array.isArray(message)) resolve(message.error);
        });
        void this.#exited.then(() => resolve(undefined));
      });
      this.#worker.postMessage({ close: true });
      const error = await closed;
      await this.#worker.terminate();
      if (error !== undefined) throw revive(error);
    })();
    return this.#closed;
  }
}
