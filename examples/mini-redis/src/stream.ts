// The stream type (XADD, XRANGE, consumer groups). An entry ID is Redis's pair of unsigned 64-bit
// integers <ms>-<seq>, held here as one 128-bit bigint (ms << 64 | seq), so IDs compare with < and
// key a Map as they are.
//
// Entries sit in two parallel arrays in ID order (XADD only ever appends at the end), so an ID is
// found by binary search in O(log n) and a range is a slice. XDEL leaves a tombstone (as Redis marks
// a listpack entry deleted); trimming advances a head index; the arrays are compacted when the dead
// part is more than half. Redis uses a radix tree of listpacks to pack many small entries into few
// allocations: in JavaScript every field is a Buffer object anyway, so packing would save little
// and cost a parser; the arrays give the same O(log n) lookup and O(1) append.
//
// Redis's `~` trimming removes whole listpack nodes only: mini-redis keeps the node boundaries
// Redis would have (a new node every `stream-node-max-entries` entries or `stream-node-max-bytes`
// bytes), so MAXLEN ~ and MINID ~ leave the same entries as Redis does.

export type StreamId = bigint;

export const SEQ_MASK = (1n << 64n) - 1n;
export const MAX_ID: StreamId = (SEQ_MASK << 64n) | SEQ_MASK;

export const makeId = (ms: bigint, seq: bigint): StreamId => (ms << 64n) | seq;
export const msOf = (id: StreamId): bigint => id >> 64n;
export const seqOf = (id: StreamId): bigint => id & SEQ_MASK;
export const formatId = (id: StreamId): string => `${id >> 64n}-${id & SEQ_MASK}`;

export interface Entry {
  readonly id: StreamId;
  /** field, value, field, value… */
  readonly fields: readonly Buffer[];
}

// V8 hashes a BigInt by its lowest 64 bits only, and a stream ID keeps its sequence there: every
// ID of the form <ms>-0 (what XADD * gives, one entry a millisecond) lands in the same bucket of
// a Map or Set, so 20 000 pending entries took 9 s to add (a client could stall the server for
// minutes with one XREADGROUP). The pending lists below key their IDs by a bijection whose low 64
// bits mix both halves with a per-process secret (so a client cannot choose colliding IDs):
// low = ms XOR h(seq), high = seq, with h(seq) = ((seq XOR S) * R) mod 2^64, R odd.
const randomU64 = (): bigint => {
  const bytes = new BigUint64Array(1);
  crypto.getRandomValues(bytes);
  return bytes[0] as bigint;
};
const SECRET_S = randomU64();
const SECRET_R = randomU64() | 1n;
const mix = (seq: bigint): bigint => ((seq ^ SECRET_S) * SECRET_R) & SEQ_MASK;
/** The key a pending list stores an ID under. */
const keyOfId = (id: StreamId): bigint => {
  const seq = id & SEQ_MASK;
  return (seq << 64n) | ((id >> 64n) ^ mix(seq));
};
/** The ID a key stands for. */
const idOfKey = (key: bigint): StreamId => {
  const seq = key >> 64n;
  return (((key & SEQ_MASK) ^ mix(seq)) << 64n) | seq;
};

/** A Map from stream IDs, hashed well (see keyOfId); iterates the IDs themselves. */
export class IdMap<V> extends Map<StreamId, V> {
  override get(id: StreamId): V | undefined {
    return super.get(keyOfId(id));
  }
  override set(id: StreamId, value: V): this {
    return super.set(keyOfId(id), value);
  }
  override has(id: StreamId): boolean {
    return super.has(keyOfId(id));
  }
  override delete(id: StreamId): boolean {
    return super.delete(keyOfId(id));
  }
  override *keys(): MapIterator<StreamId> {
    for (const key of super.keys()) yield idOfKey(key);
  }
  override *entries(): MapIterator<[StreamId, V]> {
    for (const [key, value] of super.entries()) yield [idOfKey(key), value];
  }
  override [Symbol.iterator](): MapIterator<[StreamId, V]> {
    return this.entries();
  }
  override forEach(callback: (value: V, id: StreamId, map: Map<StreamId, V>) => void, thisArg?: unknown): void {
    for (const [id, value] of this.entries()) callback.call(thisArg, value, id, this);
  }
}

/** A Set of stream IDs, hashed well (see keyOfId); iterates the IDs themselves. */
export class IdSet extends Set<StreamId> {
  override add(id: StreamId): this {
    return super.add(keyOfId(id));
  }
  override has(id: StreamId): boolean {
    return super.has(keyOfId(id));
  }
  override delete(id: StreamId): boolean {
    return super.delete(keyOfId(id));
  }
  override *values(): SetIterator<StreamId> {
    for (const key of super.values()) yield idOfKey(key);
  }
  override keys(): SetIterator<StreamId> {
    return this.values();
  }
  override *entries(): SetIterator<[StreamId, StreamId]> {
    for (const id of this.values()) yield [id, id];
  }
  override [Symbol.iterator](): SetIterator<StreamId> {
    return this.values();
  }
  override forEach(callback: (value: StreamId, key: StreamId, set: Set<StreamId>) => void, thisArg?: unknown): void {
    for (const id of this.values()) callback.call(thisArg, id, id, this);
  }
}

/** A pending entry: delivered to a consumer, not yet acknowledged (Redis's streamNACK). */
export interface Nack {
  consumer: Consumer;
  deliveryTime: number;
  deliveryCount: number;
}

export class Consumer {
  readonly name: string;
  /** The last time it read or claimed (XINFO's `idle`, Redis 7.0's seen-time). */
  seenTime = Date.now();
  /** Its pending IDs. */
  readonly pending: Set<StreamId> = new IdSet();
  constructor(name: string) {
    this.name = name;
  }
}

/**
 * IDs kept sorted, for the pending entries lists: binary search, insert and remove. Removing the
 * first ID (XACK and XCLAIM take the oldest first) moves a start index instead of shifting the
 * array, which is compacted once half of it is behind the start: acking 50 000 entries oldest
 * first took 2.5 s of splices, quadratic in the list's size.
 */
export class SortedIds {
  #ids: StreamId[] = [];
  #start = 0;
  get size(): number {
    return this.#ids.length - this.#start;
  }
  /** The index (from the start) of the first ID >= id. */
  lowerBound(id: StreamId): number {
    let lo = this.#start;
    let hi = this.#ids.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.#ids[mid] as StreamId) < id) lo = mid + 1;
      else hi = mid;
    }
    return lo - this.#start;
  }
  add(id: StreamId): void {
    const at = this.#start + this.lowerBound(id);
    if (this.#ids[at] === id) return;
    if (at === this.#ids.length) this.#ids.push(id);
    else this.#ids.splice(at, 0, id);
  }
  delete(id: StreamId): void {
    const at = this.#start + this.lowerBound(id);
    if (this.#ids[at] !== id) return;
    if (at === this.#start) {
      this.#start++;
      if (this.#start === this.#ids.length) {
        this.#ids = [];
        this.#start = 0;
      } else if (this.#start > 1024 && this.#start * 2 > this.#ids.length) {
        this.#ids = this.#ids.slice(this.#start);
        this.#start = 0;
      }
    } else this.#ids.splice(at, 1);
  }
  at(index: number): StreamId | undefined {
    return index < 0 ? undefined : this.#ids[this.#start + index];
  }
  first(): StreamId | undefined {
    return this.#ids[this.#start];
  }
  last(): StreamId | undefined {
    return this.size === 0 ? undefined : this.#ids[this.#ids.length - 1];
  }
  /** IDs from `start` to `end` (inclusive), in order. */
  *range(start: StreamId, end: StreamId): Generator<StreamId> {
    for (let i = this.#start + this.lowerBound(start); i < this.#ids.length; i++) {
      const id = this.#ids[i] as StreamId;
      if (id > end) return;
      yield id;
    }
  }
}

export class Group {
  lastId: StreamId;
  /** Entries the group has read (Redis's entries_read), -1 when not known. */
  entriesRead: number;
  /** Every pending entry, by ID. */
  readonly pel: Map<StreamId, Nack> = new IdMap<Nack>();
  readonly order = new SortedIds();
  readonly consumers = new Map<string, Consumer>();
  constructor(lastId: StreamId, entriesRead: number) {
    this.lastId = lastId;
    this.entriesRead = entriesRead;
  }

  /** Add or reassign a pending entry to `consumer` (a delivery now, with the count given). */
  deliver(id: StreamId, consumer: Consumer, count: number, now = Date.now()): Nack {
    const nack = this.pel.get(id);
    if (nack !== undefined) {
      nack.consumer.pending.delete(id);
      nack.consumer = consumer;
      nack.deliveryTime = now;
      nack.deliveryCount = count;
      consumer.pending.add(id);
      return nack;
    }
    const created = { consumer, deliveryTime: now, deliveryCount: count };
    this.pel.set(id, created);
    this.order.add(id);
    consumer.pending.add(id);
    return created;
  }

  /** Acknowledge: true if it was pending. */
  ack(id: StreamId): boolean {
    const nack = this.pel.get(id);
    if (nack === undefined) return false;
    this.pel.delete(id);
    this.order.delete(id);
    nack.consumer.pending.delete(id);
    return true;
  }

  /** The consumer, created if missing; `created` says whether it was. */
  consumer(name: string): { consumer: Consumer; created: boolean } {
    const existing = this.consumers.get(name);
    if (existing !== undefined) return { consumer: existing, created: false };
    const consumer = new Consumer(name);
    this.consumers.set(name, consumer);
    return { consumer, created: true };
  }

  /** Delete a consumer and its pending entries; returns how many were pending. */
  deleteConsumer(name: string): number {
    const consumer = this.consumers.get(name);
    if (consumer === undefined) return 0;
    const pending = consumer.pending.size;
    for (const id of [...consumer.pending]) this.ack(id);
    this.consumers.delete(name);
    return pending;
  }
}

/** Bytes an entry takes in the size estimate (and roughly in a listpack node). */
const entryBytes = (fields: readonly Buffer[]): number => {
  let bytes = 16;
  for (const field of fields) bytes += field.length + 2;
  return bytes;
};

export class Stream {
  #ids: StreamId[] = [];
  /** The fields of each entry; undefined for a deleted one (tombstone). */
  #fields: Array<readonly Buffer[] | undefined> = [];
  #head = 0;
  #length = 0;
  /** Node boundaries as Redis's listpacks would have them: start index, entries and bytes of each. */
  #nodes: Array<{ start: number; count: number; bytes: number }> = [];
  lastId: StreamId = 0n;
  /** The first live entry's ID when trimmed or deleted (Redis's first_id), 0 when empty. */
  firstId: StreamId = 0n;
  maxDeletedId: StreamId = 0n;
  entriesAdded = 0;
  readonly groups = new Map<string, Group>();
  /** The size estimate (maxmemory). */
  bytes = 0;

  get length(): number {
    return this.#length;
  }

  /** Listpack nodes (XINFO's radix-tree-keys). */
  get nodeCount(): number {
    return this.#nodes.length;
  }

  /** Append an entry with an ID greater than `lastId`. */
  append(id: StreamId, fields: readonly Buffer[], nodeMaxEntries: number, nodeMaxBytes: number): void {
    const bytes = entryBytes(fields);
    const index = this.#ids.length;
    this.#ids.push(id);
    this.#fields.push(fields);
    const node = this.#nodes[this.#nodes.length - 1];
    if (
      node === undefined ||
      (nodeMaxEntries > 0 && node.count >= nodeMaxEntries) ||
      (nodeMaxBytes > 0 && node.bytes + bytes > nodeMaxBytes)
    ) {
      this.#nodes.push({ start: index, count: 1, bytes });
    } else {
      node.count++;
      node.bytes += bytes;
    }
    if (this.#length === 0) this.firstId = id;
    this.#length++;
    this.lastId = id;
    this.entriesAdded++;
    this.bytes += bytes;
  }

  /** The index of the first slot whose ID is >= id. */
  #lowerBound(id: StreamId): number {
    let lo = this.#head;
    let hi = this.#ids.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.#ids[mid] as StreamId) < id) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** The entry with this ID, if present. */
  get(id: StreamId): Entry | undefined {
    const at = this.#lowerBound(id);
    const fields = this.#fields[at];
    return this.#ids[at] === id && fields !== undefined ? { id, fields } : undefined;
  }

  /** Entries from `start` to `end` inclusive, oldest first (or newest first when `rev`), at most `count` (0: all). */
  range(start: StreamId, end: StreamId, count = 0, rev = false): Entry[] {
    const out: Entry[] = [];
    if (start > end) return out;
    if (!rev) {
      for (let i = this.#lowerBound(start); i < this.#ids.length; i++) {
        const id = this.#ids[i] as StreamId;
        if (id > end) break;
        const fields = this.#fields[i];
        if (fields === undefined) continue;
        out.push({ id, fields });
        if (count > 0 && out.length >= count) break;
      }
    } else {
      let i = this.#lowerBound(end);
      if (i >= this.#ids.length || (this.#ids[i] as StreamId) > end) i--;
      for (; i >= this.#head; i--) {
        const id = this.#ids[i] as StreamId;
        if (id < start) break;
        const fields = this.#fields[i];
        if (fields === undefined) continue;
        out.push({ id, fields });
        if (count > 0 && out.length >= count) break;
      }
    }
    return out;
  }

  /** Every entry in ID order. */
  *entries(): Generator<Entry> {
    for (let i = this.#head; i < this.#ids.length; i++) {
      const fields = this.#fields[i];
      if (fields !== undefined) yield { id: this.#ids[i] as StreamId, fields };
    }
  }

  /** The first or last live entry. */
  edge(last: boolean): Entry | undefined {
    if (this.#length === 0) return undefined;
    return last ? this.range(0n, MAX_ID, 1, true)[0] : this.range(0n, MAX_ID, 1)[0];
  }

  /** XDEL one ID: true if it was there. */
  delete(id: StreamId): boolean {
    const at = this.#lowerBound(id);
    const fields = this.#fields[at];
    if (this.#ids[at] !== id || fields === undefined) return false;
    this.#fields[at] = undefined;
    this.bytes -= entryBytes(fields);
    this.#length--;
    if (id > this.maxDeletedId) this.maxDeletedId = id;
    this.#afterRemoval();
    return true;
  }

  /** After entries went: the first ID, dropping emptied nodes at the head, compaction. */
  #afterRemoval(): void {
    // Drop dead slots at the head (and the nodes wholly made of them).
    while (this.#head < this.#ids.length && this.#fields[this.#head] === undefined) this.#head++;
    while (this.#nodes.length > 0) {
      const node = this.#nodes[0] as { start: number; count: number };
      if (node.start + node.count > this.#head) break;
      this.#nodes.shift();
    }
    const firstNode = this.#nodes[0];
    if (firstNode !== undefined && firstNode.start < this.#head) {
      firstNode.count -= this.#head - firstNode.start;
      firstNode.start = this.#head;
    }
    if (this.#length === 0) this.firstId = 0n;
    else this.firstId = this.#ids[this.#head] as StreamId;
    if (this.#head > 1024 && this.#head * 2 > this.#ids.length) {
      const shift = this.#head;
      this.#ids = this.#ids.slice(shift);
      this.#fields = this.#fields.slice(shift);
      for (const node of this.#nodes) node.start -= shift;
      this.#head = 0;
    }
  }

  /**
   * XTRIM / XADD's trimming, as Redis's streamTrim: whole nodes from the head while they can go;
   * then, unless `approx`, entry by entry inside the first node. `limit` caps the entries removed
   * (0: none). Returns how many went.
   */
  trim(strategy: 'maxlen' | 'minid', threshold: bigint, approx: boolean, limit: number): number {
    let deleted = 0;
    const done = (id: StreamId): boolean => (strategy === 'maxlen' ? BigInt(this.#length) <= threshold : id >= threshold);
    while (this.#nodes.length > 0) {
      if (strategy === 'maxlen' && BigInt(this.#length) <= threshold) break;
      const node = this.#nodes[0] as { start: number; count: number; bytes: number };
      let live = 0;
      let lastId: StreamId = 0n;
      for (let i = node.start; i < node.start + node.count; i++) {
        if (this.#fields[i] !== undefined) live++;
        lastId = this.#ids[i] as StreamId;
      }
      // Redis counts a node's live entries against the limit.
      if (limit > 0 && deleted + live > limit) break;
      const removeNode = strategy === 'maxlen' ? BigInt(this.#length - live) >= threshold : lastId < threshold;
      if (removeNode) {
        for (let i = node.start; i < node.start + node.count; i++) {
          const fields = this.#fields[i];
          if (fields !== undefined) this.bytes -= entryBytes(fields);
          this.#fields[i] = undefined;
        }
        this.#length -= live;
        deleted += live;
        this.#head = node.start + node.count;
        this.#nodes.shift();
        continue;
      }
      if (approx) break;
      for (let i = node.start; i < node.start + node.count; i++) {
        const id = this.#ids[i] as StreamId;
        if (done(id)) break;
        const fields = this.#fields[i];
        if (fields === undefined) continue;
        this.bytes -= entryBytes(fields);
        this.#fields[i] = undefined;
        this.#length--;
        deleted++;
      }
      break;
    }
    if (deleted > 0 || this.#length === 0) this.#afterRemoval();
    return deleted;
  }

  /** Whether an XDEL left a tombstone between `start` and `end` (Redis's streamRangeHasTombstones). */
  rangeHasTombstones(start: StreamId, end: StreamId = MAX_ID): boolean {
    if (this.#length === 0 || this.maxDeletedId === 0n) return false;
    if (this.firstId > this.maxDeletedId) return false;
    return start <= this.maxDeletedId && this.maxDeletedId <= end;
  }

  /** A group's read counter for an ID, or -1 (Redis's streamEstimateDistanceFromFirstEverEntry). */
  distanceFromFirstEverEntry(id: StreamId): number {
    if (this.entriesAdded === 0) return 0;
    if (this.#length === 0 && id <= this.lastId) return this.entriesAdded;
    if (id === this.lastId) return this.entriesAdded;
    if (id > this.lastId) return -1;
    if (this.maxDeletedId === 0n || this.maxDeletedId < this.firstId) {
      if (id < this.firstId) return this.entriesAdded - this.#length;
      if (id === this.firstId) return this.entriesAdded - this.#length + 1;
    }
    return -1;
  }

  /** A group's lag, or null when it cannot be known (Redis's streamReplyWithCGLag). */
  lag(group: Group): number | null {
    if (this.entriesAdded === 0) return 0;
    if (group.entriesRead !== -1 && !this.rangeHasTombstones(group.lastId)) return this.entriesAdded - group.entriesRead;
    const read = this.distanceFromFirstEverEntry(group.lastId);
    return read === -1 ? null : this.entriesAdded - read;
  }

  /** A deep copy (COPY): entries are immutable, so they are shared; groups are copied. */
  clone(): Stream {
    const copy = new Stream();
    copy.#ids = this.#ids.slice(this.#head);
    copy.#fields = this.#fields.slice(this.#head);
    copy.#nodes = this.#nodes.map((node) => ({ ...node, start: node.start - this.#head }));
    copy.#length = this.#length;
    copy.lastId = this.lastId;
    copy.firstId = this.firstId;
    copy.maxDeletedId = this.maxDeletedId;
    copy.entriesAdded = this.entriesAdded;
    copy.bytes = this.bytes;
    for (const [name, group] of this.groups) {
      const twin = new Group(group.lastId, group.entriesRead);
      for (const [consumerName, consumer] of group.consumers) {
        const made = twin.consumer(consumerName).consumer;
        made.seenTime = consumer.seenTime;
      }
      for (const [id, nack] of group.pel) {
        const consumer = twin.consumer(nack.consumer.name).consumer;
        const made = twin.deliver(id, consumer, nack.deliveryCount, nack.deliveryTime);
        made.deliveryTime = nack.deliveryTime;
      }
      copy.groups.set(name, twin);
    }
    return copy;
  }
}
