// Keyspace notifications as Redis's notify.c: `notify-keyspace-events` is a string of class
// letters, and an event in an enabled class is published on `__keyspace@<db>__:<key>` (message:
// the event) when K is on, and on `__keyevent@<db>__:<event>` (message: the key) when E is on.

/** The classes of keyspace events, by the letter `notify-keyspace-events` uses for each. */
export type KeyspaceEventClass =
  | 'generic' // g: DEL, EXPIRE, RENAME…
  | 'string' // $
  | 'list' // l
  | 'set' // s
  | 'hash' // h
  | 'zset' // z
  | 'expired' // x: a key deleted because its TTL passed
  | 'evicted' // e: a key evicted for maxmemory
  | 'stream' // t
  | 'keymiss' // m: a read of a missing key (not part of A)
  | 'module' // d
  | 'new'; // n: a key added to the keyspace (not part of A)

export const KEYSPACE = 1 << 0;
export const KEYEVENT = 1 << 1;
const bits: Record<KeyspaceEventClass, number> = {
  generic: 1 << 2,
  string: 1 << 3,
  list: 1 << 4,
  set: 1 << 5,
  hash: 1 << 6,
  zset: 1 << 7,
  expired: 1 << 8,
  evicted: 1 << 9,
  stream: 1 << 10,
  keymiss: 1 << 11,
  module: 1 << 13,
  new: 1 << 14,
};
const ALL =
  bits.generic | bits.string | bits.list | bits.set | bits.hash | bits.zset | bits.expired | bits.evicted | bits.stream | bits.module;
const letters: ReadonlyArray<readonly [string, number]> = [
  ['g', bits.generic],
  ['$', bits.string],
  ['l', bits.list],
  ['s', bits.set],
  ['h', bits.hash],
  ['z', bits.zset],
  ['x', bits.expired],
  ['e', bits.evicted],
  ['t', bits.stream],
  ['d', bits.module],
  ['n', bits.new],
];

/** The bit of a class. */
export function classBit(kind: KeyspaceEventClass): number {
  return bits[kind];
}

/** `notify-keyspace-events` text to flags; undefined for a letter that names no class. */
export function parseKeyspaceEvents(text: string): number | undefined {
  let flags = 0;
  for (const letter of text) {
    if (letter === 'A') flags |= ALL;
    else if (letter === 'K') flags |= KEYSPACE;
    else if (letter === 'E') flags |= KEYEVENT;
    else if (letter === 'm') flags |= bits.keymiss;
    else {
      const bit = letters.find(([name]) => name === letter)?.[1];
      if (bit === undefined) return undefined;
      flags |= bit;
    }
  }
  return flags;
}

/** Flags back to Redis's text: `A` for all of A's classes (an `n` with it is not shown, as in 7.0), then K, E and m. */
export function formatKeyspaceEvents(flags: number): string {
  let text = '';
  if ((flags & ALL) === ALL) text = 'A';
  else for (const [letter, bit] of letters) if (flags & bit) text += letter;
  if (flags & KEYSPACE) text += 'K';
  if (flags & KEYEVENT) text += 'E';
  if (flags & bits.keymiss) text += 'm';
  return text;
}
