import { toInt64 } from './numbers.js';
import type { Value } from './store.js';

// OBJECT ENCODING as Redis 7.0 answers it. mini-redis stores every type one way (a Map, a Set, a
// skip list), but clients and Redis's own tests read the encoding Redis would have chosen, and
// tune it with CONFIG SET hash-max-listpack-entries and friends. So mini-redis keeps Redis's rule:
// a small hash, set or sorted set has the compact encoding (listpack, intset) until a write takes
// it past a limit, and from then on the big one (hashtable, skiplist) — Redis never converts back.
// Lists are always `quicklist` in 7.0; strings are `int`, `embstr` (up to 44 bytes) or `raw`.

/** The limits Redis's CONFIG names (with their 7.0 defaults). */
export interface EncodingLimits {
  hashMaxListpackEntries: number;
  hashMaxListpackValue: number;
  setMaxIntsetEntries: number;
  zsetMaxListpackEntries: number;
  zsetMaxListpackValue: number;
  listMaxListpackSize: number;
  listCompressDepth: number;
}

/** What Redis's string2ll accepts, before the range check. */
const INTEGER = /^(0|-?[1-9][0-9]*)$/;

/** Redis keeps embedded strings up to 44 bytes (OBJ_ENCODING_EMBSTR_SIZE_LIMIT). */
const EMBSTR_LIMIT = 44;

export class Encodings {
  readonly limits: EncodingLimits = {
    hashMaxListpackEntries: 512,
    hashMaxListpackValue: 64,
    setMaxIntsetEntries: 512,
    zsetMaxListpackEntries: 128,
    zsetMaxListpackValue: 64,
    listMaxListpackSize: -2,
    listCompressDepth: 0,
  };
  /** Hashes, sets and sorted sets that went past their compact encoding's limits. */
  readonly #converted = new WeakSet<object>();
  /** Strings changed in place (APPEND, SETRANGE): Redis makes them `raw`. */
  readonly #raw = new WeakSet<Buffer>();

  /** After a write to a key: note a value that now needs the big encoding. */
  wrote(value: Value | undefined): void {
    if (value === undefined || this.#converted.has(value.data)) return;
    if (this.#needsBig(value)) this.#converted.add(value.data);
  }

  /** Force the big encoding (SORT converts a sorted set to a skiplist). */
  convert(data: object): void {
    this.#converted.add(data);
  }

  /** A string APPEND or SETRANGE built: `raw`, as Redis's in-place edits leave it. */
  markRaw(data: Buffer): void {
    this.#raw.add(data);
  }

  /** Redis's OBJECT ENCODING for a value. */
  encoding(value: Value): string {
    switch (value.type) {
      case 'string': {
        const data = value.data;
        if (this.#raw.has(data)) return 'raw';
        if (data.length <= 20 && toInt64(data) !== undefined) return 'int';
        return data.length <= EMBSTR_LIMIT ? 'embstr' : 'raw';
      }
      case 'list':
        return 'quicklist';
      case 'hash':
        return this.#converted.has(value.data) || this.#needsBig(value) ? 'hashtable' : 'listpack';
      case 'set':
        return this.#converted.has(value.data) || this.#needsBig(value) ? 'hashtable' : 'intset';
      case 'zset':
        return this.#converted.has(value.data) || this.#needsBig(value) ? 'skiplist' : 'listpack';
      case 'stream':
        return 'stream';
    }
  }

  /** Whether a value is past its compact encoding's limits (at most one pass over a small value). */
  #needsBig(value: Value): boolean {
    const limits = this.limits;
    switch (value.type) {
      case 'hash': {
        if (value.data.size > limits.hashMaxListpackEntries) return true;
        for (const [field, data] of value.data) {
          if (field.length > limits.hashMaxListpackValue || data.length > limits.hashMaxListpackValue) return true;
        }
        return false;
      }
      case 'set': {
        if (value.data.size > limits.setMaxIntsetEntries) return true;
        for (const member of value.data) {
          // A regular expression first (no allocation); the 64-bit range only for the longest.
          if (member.length > 20 || !INTEGER.test(member)) return true;
          if (member.length >= 19 && toInt64(Buffer.from(member, 'latin1')) === undefined) return true;
        }
        return false;
      }
      case 'zset': {
        if (value.data.size > limits.zsetMaxListpackEntries) return true;
        for (const member of value.data.scores.keys()) if (member.length > limits.zsetMaxListpackValue) return true;
        return false;
      }
      default:
        return false;
    }
  }
}
