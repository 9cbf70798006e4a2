// The storage thread's program: one SqliteStorage (the same code as on the main thread, with its
// group commits and checkpoints) answering the calls the main thread's WorkerStorage posts. See
// worker-storage.ts for why SQLite runs here.
import { parentPort, workerData } from 'node:worker_threads';
import { SqliteStorage, type SqliteStorageOptions } from './sqlite.js';
import type { KeyValueStore, XmppStorage } from './types.js';
import { decodeRecords, QUIET_DONE, type RecordsCall, type StorageCall, type StorageReply, type WorkerError } from './worker-storage.js';

const port = parentPort;
if (port === null) throw new Error('sqlite-worker.js runs as a worker thread');

const data = workerData as { options: SqliteStorageOptions; done: SharedArrayBuffer };
/** Calls answered, read by the main thread while it waits for this one (backpressure). */
const done = new Int32Array(data.done);
let storage: XmppStorage | undefined;
let failure: WorkerError | undefined;
try {
  storage = new SqliteStorage(data.options);
} catch (error) {
  failure = describe(error);
}

function describe(error: unknown): WorkerError {
  if (!(error instanceof Error)) return { name: 'Error', message: String(error) };
  const code = (error as { code?: unknown }).code;
  const condition = (error as { condition?: unknown }).condition;
  return {
    name: error.name,
    message: error.message,
    code: typeof code === 'string' ? code : undefined,
    condition: typeof condition === 'string' ? condition : undefined,
  };
}

let replies: StorageReply[] = [];
/** Quiet calls committed since the last flush: counted, not answered one by one. */
let quietDone = 0;
let scheduled = false;
function flush(): void {
  scheduled = false;
  if (replies.length === 0 && quietDone === 0) return;
  const batch = replies;
  const answered = batch.length + quietDone;
  replies = [];
  if (quietDone > 0) batch.push([QUIET_DONE, true, quietDone]);
  quietDone = 0;
  // Counted before the answers go: the main thread reads the count when they arrive (whether the storage
  // caught up), and answers read before the count moved were the last it would hear, its input held for good.
  Atomics.add(done, 0, answered);
  Atomics.notify(done, 0);
  port?.postMessage(batch);
}
/** Every call a commit settled, in one message. */
function schedule(): void {
  if (scheduled) return;
  scheduled = true;
  setImmediate(flush);
}
/** A quiet call committed. */
function quietCommitted(): void {
  quietDone++;
  schedule();
}
function reply(entry: StorageReply): void {
  replies.push(entry);
  schedule();
}

function target(call: Exclude<StorageCall, RecordsCall>): object {
  const open = storage as XmppStorage;
  if (call[1] === 'users') return open.users;
  if (call[1] === 'kv') return open.keyValue(call[2]) as KeyValueStore;
  return open.archive(call[2]);
}

port.on('message', (message: StorageCall[] | { close: true }) => {
  if (!Array.isArray(message)) {
    const closing = storage === undefined ? Promise.resolve() : storage.close();
    // The answers of the last commit leave before the word that the file is closed.
    const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
    closing.then(
      () =>
        settle().then(() => {
          flush();
          port.postMessage({ closed: true });
        }),
      (error: unknown) =>
        settle().then(() => {
          flush();
          port.postMessage({ closed: true, error: describe(error) });
        }),
    );
    return;
  }
  for (const call of message) {
    const id = call[0];
    if (call[1] === 'records') {
      const [, , store, handler, count, fields] = call;
      let next = id;
      decodeRecords(fields, count, (owner, item) => {
        const recordId = next++;
        if (failure !== undefined) {
          reply([recordId, false, failure, handler, owner]);
          return;
        }
        (storage as XmppStorage)
          .archive(store)
          .append(owner, item)
          .then(quietCommitted, (error: unknown) => reply([recordId, false, describe(error), handler, owner]));
      });
      continue;
    }
    if (failure !== undefined) {
      reply([id, false, failure]);
      continue;
    }
    try {
      const object = target(call) as Record<string, (...args: unknown[]) => unknown>;
      const method = object[call[3]];
      if (typeof method !== 'function') throw new TypeError(`no storage method ${call[1]}.${call[3]}`);
      Promise.resolve(method.apply(object, call[4])).then(
        (value) => reply([id, true, value]),
        (error: unknown) => reply([id, false, describe(error)]),
      );
    } catch (error) {
      reply([id, false, describe(error)]);
    }
  }
});
