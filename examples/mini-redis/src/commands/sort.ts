import { type AclCategory, type Command, type KeySpec, type ReplyValue, type RespClient, RespError } from '@portbind/resp';
import type { MiniRedis } from '../app.js';
import { Deque } from '../deque.js';
import { int64Arg } from '../numbers.js';
import { bytesOf, type Database, keyOf, WRONGTYPE } from '../store.js';

// SORT and SORT_RO as Redis 7.0's sort.c behaves: the elements of a list, set or sorted set,
// ordered as numbers (or bytes with ALPHA), by themselves or BY the values of other keys
// (`weight_*`, `hash_*->field`), a LIMIT window, GET patterns, STORE into a list.

interface Item {
  readonly element: string;
  score: number;
  /** ALPHA with BY: the value compared (null: the key is missing). */
  by: Buffer | null;
}

/** The value a pattern names for an element (Redis's lookupKeyByPattern), or null. */
function lookup(db: Database, pattern: string, element: string): Buffer | null {
  if (pattern === '#') return bytesOf(element);
  const star = pattern.indexOf('*');
  if (star === -1) return null;
  const arrow = pattern.indexOf('->', star + 1);
  const field = arrow !== -1 && arrow + 2 < pattern.length ? pattern.slice(arrow + 2) : undefined;
  const keyPattern = field === undefined ? pattern : pattern.slice(0, arrow);
  const key = keyPattern.slice(0, star) + element + keyPattern.slice(star + 1);
  const value = db.get(key);
  if (value === undefined) return null;
  if (field !== undefined) return value.type === 'hash' ? (value.data.get(field) ?? null) : null;
  return value.type === 'string' ? value.data : null;
}

/** C's strtod over the whole text (leading spaces allowed), as SORT reads a score; undefined when it is not one. */
function strtod(text: string): number | undefined {
  const trimmed = text.replace(/^[ \t\n\v\f\r]+/, '');
  if (/^[+-]?(inf|infinity)$/i.test(trimmed)) return trimmed.startsWith('-') ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(trimmed)) return undefined;
  const value = Number(trimmed);
  return Number.isFinite(value) ? value : undefined; // ERANGE
}

export function registerSortCommands({ resp, keyspace, encodings, blocked }: MiniRedis): void {
  const sort = (client: RespClient, argv: Buffer[], readonly: boolean): ReplyValue => {
    let desc = false;
    let alpha = false;
    let dontsort = false;
    let by: string | undefined;
    let store: string | undefined;
    let limitStart = 0n;
    let limitCount = -1n;
    const gets: string[] = [];
    for (let j = 2; j < argv.length; j++) {
      const option = (argv[j] as Buffer).toString('latin1').toUpperCase();
      const left = argv.length - j - 1;
      if (option === 'ASC') desc = false;
      else if (option === 'DESC') desc = true;
      else if (option === 'ALPHA') alpha = true;
      else if (option === 'LIMIT' && left >= 2) {
        limitStart = int64Arg(argv[j + 1]);
        limitCount = int64Arg(argv[j + 2]);
        j += 2;
      } else if (!readonly && option === 'STORE' && left >= 1) store = keyOf(argv[++j]);
      else if (option === 'BY' && left >= 1) {
        by = keyOf(argv[++j]);
        if (!by.includes('*')) dontsort = true; // a constant BY: no sorting, no lookups
      } else if (option === 'GET' && left >= 1) gets.push(keyOf(argv[++j]));
      else throw new RespError('ERR syntax error');
    }
    const db = keyspace.db(client.db);
    const value = db.get(keyOf(argv[1]));
    if (value !== undefined && value.type !== 'list' && value.type !== 'set' && value.type !== 'zset') throw new RespError(WRONGTYPE);
    // A set has no order of its own: stored (or scripted) results are sorted as ALPHA anyway.
    if (dontsort && value?.type === 'set' && store !== undefined) {
      dontsort = false;
      alpha = true;
      by = undefined;
    }
    if (value?.type === 'zset') encodings.convert(value.data); // SORT converts a sorted set to a skiplist, as Redis
    let elements: string[];
    if (value === undefined) elements = [];
    else if (value.type === 'list') elements = value.data.toArray().map((element) => element.toString('latin1'));
    else if (value.type === 'set') elements = [...value.data];
    else if (dontsort) {
      elements = [];
      for (let node = value.data.first; node !== undefined; node = node.next) elements.push(node.member);
    } else elements = [...value.data.scores.keys()];
    if (dontsort && desc && value?.type !== 'set') elements.reverse();

    const length = elements.length;
    const start = Number(limitStart < 0n ? 0n : limitStart > BigInt(length) ? BigInt(length) : limitStart);
    const count = Number(limitCount < -1n ? -1n : limitCount > BigInt(length) ? BigInt(length) : limitCount);
    let first = start;
    let last = count < 0 ? length - 1 : start + count - 1;
    if (first >= length) {
      first = length - 1;
      last = length - 2;
    }
    if (last >= length) last = length - 1;

    const items: Item[] = elements.map((element) => ({ element, score: 0, by: null }));
    if (!dontsort) {
      let notNumber = false;
      for (const item of items) {
        const weight = by === undefined ? bytesOf(item.element) : lookup(db, by, item.element);
        if (weight === null) continue;
        if (alpha) {
          if (by !== undefined) item.by = weight;
        } else {
          const score = strtod(weight.toString('latin1'));
          if (score === undefined) notNumber = true;
          else item.score = score;
        }
      }
      if (notNumber) throw new RespError("ERR One or more scores can't be converted into double");
      const bytes = (a: string, b: string): number => Buffer.compare(bytesOf(a), bytesOf(b));
      items.sort((a, b) => {
        let cmp: number;
        if (!alpha) cmp = a.score > b.score ? 1 : a.score < b.score ? -1 : bytes(a.element, b.element);
        else if (by !== undefined)
          cmp = a.by === null || b.by === null ? (a.by === b.by ? 0 : a.by === null ? -1 : 1) : Buffer.compare(a.by, b.by);
        else cmp = bytes(a.element, b.element);
        return desc ? -cmp : cmp;
      });
    }
    const window = items.slice(first, last + 1);
    const output: Array<Buffer | null> = [];
    for (const item of window) {
      if (gets.length === 0) output.push(bytesOf(item.element));
      for (const pattern of gets) output.push(lookup(db, pattern, item.element));
    }
    if (store === undefined) return output;
    if (output.length > 0) {
      db.set(store, { type: 'list', data: new Deque(output.map((item) => Buffer.from(item ?? Buffer.alloc(0)))) });
      resp.touch(client.db, store);
      resp.notifyKeyspaceEvent('list', 'sortstore', store, client.db);
      blocked.signal(client.db, store); // a BLPOP waiting on the destination is served
    } else if (db.delete(store)) {
      resp.touch(client.db, store);
      resp.notifyKeyspaceEvent('generic', 'del', store, client.db);
    }
    return output.length;
  };

  resp.command(
    'sort',
    {
      arity: -2,
      flags: ['write'],
      keySpecs: [SORTED_KEY, BY_GET_KEYS, STORE_KEY],
      keysOf: (argv) => sortKeys(argv, true),
      aclCategories: SORT_CATEGORIES,
      summary: 'Sorts the elements in a list, a set, or a sorted set, optionally storing the result.',
      group: 'generic',
    },
    (client, argv) => sort(client, argv, false),
  );
  resp.command(
    'sort_ro',
    {
      arity: -2,
      flags: ['readonly'],
      keySpecs: [SORTED_KEY, BY_GET_KEYS],
      keysOf: (argv) => sortKeys(argv, false),
      aclCategories: SORT_CATEGORIES,
      summary: 'Returns the sorted elements of a list, a set, or a sorted set.',
      group: 'generic',
    },
    (client, argv) => sort(client, argv, true),
  );
}

// Redis's key specs for SORT (sort.json): the sorted key; BY/GET's keys (unknown: they derive
// from the elements); STORE's destination (unknown: the keyword may be anywhere).
const SORTED_KEY: KeySpec = { flags: ['RO', 'access'], begin: 1 };
const BY_GET_KEYS: KeySpec = {
  notes: "For the optional BY/GET keyword. It is marked 'unknown' because the key names derive from the content of the key we sort",
  flags: ['RO', 'access'],
  begin: 'unknown',
  find: 'unknown',
};
const STORE_KEY: KeySpec = {
  notes: "For the optional STORE keyword. It is marked 'unknown' because the keyword can appear anywhere in the argument array",
  flags: ['OW', 'update'],
  begin: 'unknown',
  find: 'unknown',
};
const SORT_CATEGORIES: readonly AclCategory[] = ['set', 'sortedset', 'list', 'dangerous'];

/**
 * The keys of a SORT call as db.c's sortGetKeys finds them: the sorted key and, for SORT, the
 * destination after the last STORE (LIMIT's two arguments and BY's/GET's one are skipped).
 */
function sortKeys(argv: Command, store: boolean): Buffer[] {
  const keys = [argv[1] as Buffer];
  let destination: Buffer | undefined;
  for (let i = 2; i < argv.length; i++) {
    const word = (argv[i] as Buffer).toString('latin1').toLowerCase();
    if (word === 'limit') i += 2;
    else if (word === 'get' || word === 'by') i += 1;
    else if (word === 'store' && store && i + 1 < argv.length) {
      destination = argv[i + 1] as Buffer;
      i += 1;
    }
  }
  if (destination !== undefined) keys.push(destination);
  return keys;
}
