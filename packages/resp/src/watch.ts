import type { RespClient } from './client.js';

// WATCH: which clients watch which key, and the dirty flag a write to one of them sets (Redis's
// multi.c, touchWatchedKey / touchAllWatchedKeysInDb). A client's own keys live on the client
// (`client.watched`, as `${db}\0${key}`), the index from key to clients here.

export class Watches<Context> {
  readonly #watchers = new Map<string, Set<RespClient<Context>>>();

  /** WATCH: the transaction of `client` aborts if `key` in `db` is touched before EXEC. */
  watch(client: RespClient<Context>, db: number, key: string): void {
    const id = `${db}\u0000${key}`;
    client.watched.add(id);
    let set = this.#watchers.get(id);
    if (set === undefined) {
      set = new Set();
      this.#watchers.set(id, set);
    }
    set.add(client);
  }

  /** UNWATCH, EXEC, DISCARD, RESET and a closed connection: forget every key of `client`. */
  unwatch(client: RespClient<Context>): void {
    client.watchDirty = false;
    if (client.watchCount === 0) return; // (without making the client's set)
    for (const id of client.watched) {
      const set = this.#watchers.get(id);
      if (set === undefined) continue;
      set.delete(client);
      if (set.size === 0) this.#watchers.delete(id);
    }
    client.watched.clear();
  }

  /** A write to `key` in `db`: transactions watching it will abort. */
  touch(db: number, key: string): void {
    if (this.#watchers.size === 0) return;
    for (const client of this.#watchers.get(`${db}\u0000${key}`) ?? []) client.watchDirty = true;
  }

  /**
   * A database (or every one, with -1) flushed. With `exists(db, key)`, only the watched keys that
   * exist are touched (a WATCH on a missing key survives FLUSHALL); without it, every watched key there.
   */
  touchAll(db: number, exists?: (db: number, key: string) => boolean): void {
    for (const [id, clients] of this.#watchers) {
      const separator = id.indexOf('\u0000');
      const keyDb = Number(id.slice(0, separator));
      if (db !== -1 && keyDb !== db) continue;
      if (exists !== undefined && !exists(keyDb, id.slice(separator + 1))) continue;
      for (const client of clients) client.watchDirty = true;
    }
  }
}
