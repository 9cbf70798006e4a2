import { StanzaErrorException } from '../stanza-error.js';
import type { JsonValue, KeyValueStore } from './types.js';

// Read-modify-write of one value when several processes share the store (a roster changed by the
// user on one process while a contact's subscription changes it on another): optimistic, as a
// compare-and-set loop — read, change, write only if nobody wrote meanwhile, else read again. No lock
// to take, none to leak when a process dies holding it; a conflict costs one more read.

/**
 * compareAndSet's two values as the JSON text stores keep (undefined: absent), or the error serializing one
 * threw (a cycle, a BigInt), for the store to reject with in the caller's turn. @internal
 */
export function casTexts(expected: JsonValue | undefined, value: JsonValue | undefined): [string | undefined, string | undefined] | Error {
  try {
    return [expected === undefined ? undefined : JSON.stringify(expected), value === undefined ? undefined : JSON.stringify(value)];
  } catch (error) {
    return error instanceof Error ? error : new TypeError(String(error));
  }
}

/**
 * {@link updateValue} lost the race to other processes too many times in a row: a stanza error (type
 * `wait`, `<resource-constraint/>`), so that a module letting it propagate tells the client to try again.
 * `code` is `PB_ERR_XMPP_STORAGE_CONFLICT`.
 */
export class StorageConflictError extends StanzaErrorException {
  readonly code = 'PB_ERR_XMPP_STORAGE_CONFLICT';

  constructor(reason: string) {
    super('resource-constraint', `storage: ${reason}; try again`, undefined, 'wait');
    this.name = 'StorageConflictError';
  }
}

/** Attempts before giving up: each lost one means another process wrote this very value meanwhile. */
const MAX_ATTEMPTS = 25;

/**
 * Change one value atomically: `change` gets the current value (`undefined`: absent; a fresh copy each
 * time, yours to modify) and returns the new one (`undefined` deletes), or the value it got, unchanged,
 * to write nothing. It may run more than once — when another process changed the value between the
 * read and the write — and only its last run counts: keep side effects out of it (what it computes
 * for later, in variables of yours, is overwritten by each run); throw from it to give up. `T` is the
 * value's shape, as JSON. Resolves to what was
 * written (or the value left as it was). With a store that lacks `compareAndSet`, a get and a set.
 * Fails with {@link StorageConflictError} after 25 lost races in a row.
 */
export async function updateValue<T = JsonValue>(
  store: KeyValueStore,
  owner: string,
  key: string,
  change: (current: T | undefined) => T | undefined,
): Promise<T | undefined> {
  for (let attempt = 1; ; attempt++) {
    const current = (await store.get(owner, key)) as T | undefined;
    // The store's copy is compared against; `change` gets one of its own to modify.
    const next = change(current === undefined ? undefined : (structuredClone(current) as T));
    if (next === undefined && current === undefined) return undefined;
    if (next !== undefined && current !== undefined && JSON.stringify(next) === JSON.stringify(current)) return next;
    if (store.compareAndSet === undefined) {
      await store.set(owner, key, next as JsonValue | undefined);
      return next;
    }
    if (await store.compareAndSet(owner, key, current as JsonValue | undefined, next as JsonValue | undefined)) return next;
    if (attempt >= MAX_ATTEMPTS) {
      throw new StorageConflictError(`${key} of ${owner} kept changing under ${MAX_ATTEMPTS} attempts to update it`);
    }
    // Several processes on one hot value: spread the retries.
    if (attempt > 2) await new Promise((resolve) => setTimeout(resolve, Math.random() * 2 ** Math.min(attempt, 6)));
  }
}
