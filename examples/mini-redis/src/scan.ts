import { globMatch, RespError } from '@portbind/resp';
import { intArg } from './numbers.js';

// HSCAN and SSCAN: a compact-encoded value (listpack, intset) is returned whole with cursor 0, as
// Redis does; a large one a page of COUNT at a time. A cursor is an iterator over the Map or Set
// (iteration carries on through inserts and deletes), so every element present for the whole scan
// is returned, as Redis promises. The 1000 most recent cursors are kept; an unknown one starts over.

const scans = new Map<string, { of: object; items: Iterator<string>; next: IteratorResult<string> }>();
let lastCursor = 0;

export interface ScanArgs {
  cursor: string;
  count: number;
  pattern: string | undefined;
}

/** `cursor [MATCH pattern] [COUNT count]` from `argv[at]` on, with Redis's errors. */
export function scanArgs(argv: readonly Buffer[], at: number): ScanArgs {
  const cursor = (argv[at] as Buffer).toString('latin1');
  // Redis reads the cursor with strtoul: digits with an optional sign, at most 2^64-1.
  if (!/^([+-]?\d+)?$/.test(cursor) || BigInt(cursor.replace(/^[+-]/, '') || '0') > 2n ** 64n - 1n) {
    throw new RespError('ERR invalid cursor');
  }
  let count = 10;
  let pattern: string | undefined;
  for (let i = at + 1; i < argv.length; i += 2) {
    const option = (argv[i] as Buffer).toString('latin1').toUpperCase();
    const value = argv[i + 1];
    if (option === 'COUNT' && value !== undefined) {
      count = intArg(value);
      if (count < 1) throw new RespError('ERR syntax error');
    } else if (option === 'MATCH' && value !== undefined) pattern = value.toString('latin1');
    else throw new RespError('ERR syntax error');
  }
  return { cursor, count, pattern };
}

/**
 * One SCAN step over `keys` (a Map's or Set's keys); `whole`: return everything at once.
 * Returns the next cursor ('0' when done) and the keys found that match.
 */
export function scanStep(of: object, keys: () => Iterator<string>, args: ScanArgs, whole: boolean): [string, string[]] {
  const matches = (item: string): boolean => args.pattern === undefined || args.pattern === '*' || globMatch(args.pattern, item);
  let scan = scans.get(args.cursor);
  scans.delete(args.cursor);
  if (scan === undefined || scan.of !== of) {
    const items = keys();
    scan = { of, items, next: items.next() };
  }
  const found: string[] = [];
  for (let visited = 0; (whole || visited < args.count) && !scan.next.done; visited++) {
    const item = scan.next.value;
    scan.next = scan.items.next();
    if (matches(item)) found.push(item);
  }
  if (scan.next.done) return ['0', found];
  const next = String(++lastCursor);
  scans.set(next, scan);
  if (scans.size > 1000) scans.delete(scans.keys().next().value as string);
  return [next, found];
}
