import type { RespAdapter, RespClient } from '@portbind/resp';
import type { Deque } from './deque.js';
import { bytesOf, type Keyspace } from './store.js';

/** Which end of a list: LPOP/BLPOP take from the left (head), RPOP/BRPOP from the right. */
export type End = 'left' | 'right';

/** Take one element from a non-empty list. */
export function popEnd(list: Deque<Buffer>, end: End): Buffer {
  return (end === 'left' ? list.shift() : list.pop()) as Buffer;
}

interface Waiter {
  readonly db: number;
  readonly keys: readonly string[];
  /** Take what this client waits for from `key` (and delete the key if it empties), or undefined when the key has none. */
  readonly take: (key: string) => unknown;
  /** Answer (a null array when `served` is null: timeout), and let the client run its next command. */
  readonly finish: (served: unknown) => void;
}

/**
 * Clients blocked in BLPOP/BRPOP/BZPOPMIN/BZPOPMAX. A client waits on one or more keys until a push gives one of
 * them an element, its timeout passes or it disconnects. Each key serves its waiters first come,
 * first served, while it has elements, as Redis does.
 */
export class BlockedClients {
  readonly #resp: RespAdapter;
  readonly #keyspace: Keyspace;
  /** `db\0key` → the clients waiting on it, oldest first. */
  readonly #queues = new Map<string, Waiter[]>();
  readonly #waiters = new Set<Waiter>();
  /** Clients running EXEC: they must not block, and pushes are served when EXEC is done. */
  readonly #inTransaction = new Set<RespClient>();
  readonly #pushedDuringTransaction = new Map<string, { db: number; key: string }>();
  /**
   * Keys signalled while waiters are being served (a BLMOVE's push): served after the current
   * waiter is done, one after the other, as Redis's list of ready keys (circular BLMOVEs terminate).
   */
  #ready: Array<{ db: number; key: string }> | undefined;

  constructor(resp: RespAdapter, keyspace: Keyspace) {
    this.#resp = resp;
    this.#keyspace = keyspace;
  }

  /** Number of clients blocked now (INFO's blocked_clients). */
  get count(): number {
    return this.#waiters.size;
  }

  /** False inside MULTI/EXEC, where Redis answers a blocking pop at once (a null array when empty). */
  mayBlock(client: RespClient): boolean {
    return !this.#inTransaction.has(client);
  }

  /**
   * Block `client` on `keys` for `timeoutMs` (0: forever). Resolves with `[key, element]`, or
   * with undefined once a null array was written (timeout, shutdown, disconnect).
   */
  wait(client: RespClient, keys: readonly string[], end: End, timeoutMs: number): Promise<[Buffer, Buffer] | undefined> {
    const database = this.#keyspace.db(client.db);
    return this.waitFor(
      client,
      keys,
      (key): [Buffer, Buffer] | undefined => {
        const list = database.get(key);
        if (list?.type !== 'list') return undefined;
        const element = popEnd(list.data, end);
        database.deleteIfEmpty(key, list.data);
        return [bytesOf(key), element];
      },
      timeoutMs,
    );
  }

  /**
   * Block `client` on `keys` until `take(key)` gives something when one of them is written to
   * (`signal`), or `timeoutMs` passes (0: forever). Resolves with what `take` gave, or with
   * undefined once a null array was written (timeout, shutdown, disconnect). BZPOPMIN and
   * BZPOPMAX wait with this too.
   */
  waitFor<T>(client: RespClient, keys: readonly string[], take: (key: string) => T | undefined, timeoutMs: number): Promise<T | undefined> {
    return new Promise((resolve) => {
      const socket = client.conn.socket;
      let timer: NodeJS.Timeout | undefined;
      const waiter: Waiter = {
        db: client.db,
        keys: [...new Set(keys)],
        take,
        finish: (served) => {
          if (!this.#remove(waiter)) return; // answered already
          // Served or timed out: a CLIENT UNBLOCK right behind must find it no longer blocked.
          client.onUnblock(undefined);
          clearTimeout(timer);
          socket.off('close', onClose);
          if (served === null) client.reply.nullArray();
          resolve((served ?? undefined) as T | undefined);
        },
      };
      this.#waiters.add(waiter);
      for (const key of waiter.keys) {
        const id = `${waiter.db}\u0000${key}`;
        const queue = this.#queues.get(id);
        if (queue) queue.push(waiter);
        else this.#queues.set(id, [waiter]);
      }
      const onClose = (): void => waiter.finish(null);
      socket.once('close', onClose);
      // CLIENT UNBLOCK id [TIMEOUT|ERROR] ends the wait as its timeout would.
      client.onUnblock(() => waiter.finish(null));
      // Node timers take at most 2^31-1 ms (24.8 days): re-arm until the deadline.
      const deadline = Date.now() + timeoutMs;
      const arm = (): void => {
        const left = deadline - Date.now();
        if (left <= 0) waiter.finish(null);
        else timer = setTimeout(arm, Math.min(left, 2 ** 31 - 1));
      };
      if (timeoutMs > 0) arm();
    });
  }

  /** A list or sorted set got elements (LPUSH, ZADD, RENAME…): serve the clients waiting on it. */
  signal(db: number, key: string): void {
    const id = `${db}\u0000${key}`;
    if (!this.#queues.has(id)) return;
    if (this.#inTransaction.size > 0) this.#pushedDuringTransaction.set(id, { db, key });
    else if (this.#ready !== undefined) this.#ready.push({ db, key });
    else {
      this.#ready = [{ db, key }];
      try {
        for (let next = this.#ready.shift(); next !== undefined; next = this.#ready.shift()) this.#serve(next.db, next.key);
      } finally {
        this.#ready = undefined;
      }
    }
  }

  /** Run an EXEC: blocking pops inside don't block, and waiters are served once it is over. */
  async transaction<T>(client: RespClient, exec: () => T | Promise<T>): Promise<T> {
    this.#inTransaction.add(client);
    try {
      return await exec();
    } finally {
      this.#inTransaction.delete(client);
      if (this.#inTransaction.size === 0) {
        const pushed = [...this.#pushedDuringTransaction.values()];
        this.#pushedDuringTransaction.clear();
        for (const { db, key } of pushed) this.signal(db, key);
      }
    }
  }

  /** On shutdown: answer every blocked client as if it timed out, so it can be closed politely. */
  releaseAll(): void {
    for (const waiter of [...this.#waiters]) waiter.finish(null);
  }

  #serve(db: number, key: string): void {
    // Oldest first; a waiter of another type (BLPOP on what is now a sorted set) is skipped.
    for (const waiter of [...(this.#queues.get(`${db}\u0000${key}`) ?? [])]) {
      const served = waiter.take(key);
      if (served === undefined) continue;
      this.#resp.touch(db, key);
      waiter.finish(served); // also takes it off this queue
    }
  }

  /** Take a waiter off every queue; false if it was not waiting any more. */
  #remove(waiter: Waiter): boolean {
    if (!this.#waiters.delete(waiter)) return false;
    for (const key of waiter.keys) {
      const id = `${waiter.db}\u0000${key}`;
      const queue = this.#queues.get(id) ?? [];
      queue.splice(queue.indexOf(waiter), 1);
      if (queue.length === 0) this.#queues.delete(id);
    }
    return true;
  }
}
