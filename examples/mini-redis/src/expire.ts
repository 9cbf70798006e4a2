import type { MiniRedis } from './app.js';

// Expiry and CLIENT PAUSE, as Redis 7.0: while clients are paused (WRITE or ALL) the dataset stays
// as it is — the active expiry cycle does not run and a read of an expired key reports it missing
// without deleting it, so no DEL replays to the AOF or the replicas until the pause ends (expire.c
// activeExpireCycle and db.c expireIfNeeded, both asking checkClientPauseTimeoutAndReturnIfPaused).
// Then the cycle, or the next read, deletes the key and its DEL replays.

/** Freeze expiry while a CLIENT PAUSE is on (@portbind/resp's `paused`). */
export function registerExpiry({ resp, keyspace }: MiniRedis): void {
  keyspace.frozen = () => resp.paused !== undefined;
}
