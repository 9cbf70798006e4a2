import { Crc64 } from './crc64.js';
import { Deque } from './deque.js';
import { lzfCompress, lzfDecompress } from './lzf.js';
import { SortedSet } from './sorted-set.js';
import type { Keyspace, Value } from './store.js';
import { Group, IdMap, MAX_ID, makeId, msOf, SEQ_MASK, Stream, type StreamId, seqOf } from './stream.js';

// Redis's RDB format, version 10, as Redis 7.0.15 writes and reads it (src/rdb.c, rdb.h): the file
// SAVE writes, the payload of DUMP/RESTORE, and what a replica gets on a full sync. Written here by
// hand: no maintained npm package reads or writes RDB (the old parsers stop at version 9 and none
// writes), and both directions must match Redis byte for byte for redis-server to load the result.
//
// Writing, mini-redis uses the plain ("legacy") object types Redis 7.0 still loads and converts as
// it reads: RDB_TYPE_STRING (integers up to 32 bits in the int encodings, longer strings
// LZF-compressed when `rdbcompression`), RDB_TYPE_LIST, RDB_TYPE_SET, RDB_TYPE_HASH and
// RDB_TYPE_ZSET_2 (binary doubles). mini-redis keeps no listpacks in memory, so building them only
// to write them would cost time for nothing: Redis picks listpack/intset itself when it loads a
// small value, by the same limits it would have used. Streams have no plain type: they are written
// as 7.0 writes them (RDB_TYPE_STREAM_LISTPACKS_2: listpack nodes, consumer groups, PELs).
// Reading takes everything 7.0.15 writes for these types (listpack, intset, quicklist 2 with packed
// and plain nodes, ziplists and quicklist 1 of older files, zipmap of very old ones, LZF and
// integer-encoded strings, streams of 5.0–7.0), and names what it cannot hold (module values,
// module aux data) in a clear error. Function libraries are written and read as 7.0 does (FUNCTION2
// after the aux fields) when the server has them (`FunctionLibraries`, from commands/scripting.ts).

export const RDB_VERSION = 10;

const TYPE = {
  STRING: 0,
  LIST: 1,
  SET: 2,
  ZSET: 3,
  HASH: 4,
  ZSET_2: 5,
  MODULE: 6,
  MODULE_2: 7,
  HASH_ZIPMAP: 9,
  LIST_ZIPLIST: 10,
  SET_INTSET: 11,
  ZSET_ZIPLIST: 12,
  HASH_ZIPLIST: 13,
  LIST_QUICKLIST: 14,
  STREAM_LISTPACKS: 15,
  HASH_LISTPACK: 16,
  ZSET_LISTPACK: 17,
  LIST_QUICKLIST_2: 18,
  STREAM_LISTPACKS_2: 19,
} as const;

const OPCODE = {
  FUNCTION2: 245,
  FUNCTION: 246,
  MODULE_AUX: 247,
  IDLE: 248,
  FREQ: 249,
  AUX: 250,
  RESIZEDB: 251,
  EXPIRETIME_MS: 252,
  EXPIRETIME: 253,
  SELECTDB: 254,
  EOF: 255,
} as const;

/** Names of the types mini-redis cannot hold, for the error that says so. */
const UNSUPPORTED: Record<number, string> = {
  [TYPE.MODULE]: 'a module value (RDB_TYPE_MODULE)',
  [TYPE.MODULE_2]: 'a module value (RDB_TYPE_MODULE_2)',
};

/**
 * The function libraries (FUNCTION LOAD) an RDB file holds, as Redis 7.0's rdbSaveFunctions /
 * rdbFunctionLoad: each library's code after the aux fields (opcode FUNCTION2). Scripting gives it
 * (commands/scripting.ts); a server without it neither writes nor reads libraries.
 */
export interface FunctionLibraries {
  /** The libraries' codes, as FUNCTION LOAD got them. */
  codes(): Buffer[];
  /** Replace every library by these (a load): a ScriptError when one cannot load (nothing changes then). */
  replace(codes: readonly Buffer[]): void;
  /** Called after each change (FUNCTION LOAD/DELETE/FLUSH/RESTORE; Redis's server.dirty++): snapshot.ts counts it. */
  onChange: (() => void) | undefined;
}

/** The part of the server an RDB file is written from and loaded into. */
export interface RdbServer {
  readonly keyspace: Keyspace;
  readonly functions?: FunctionLibraries;
}

/** Why an RDB file or payload could not be read. */
export type RdbFailure = 'short-read' | 'checksum' | 'corrupt' | 'unsupported' | 'signature' | 'version' | 'too-big';

export class RdbError extends Error {
  readonly reason: RdbFailure;
  constructor(reason: RdbFailure, message: string) {
    super(message);
    this.name = 'RdbError';
    this.reason = reason;
  }
}

const shortRead = (): RdbError => new RdbError('short-read', 'Short read or OOM loading DB. Unrecoverable error, aborting now.');
const corrupt = (what: string): RdbError => new RdbError('corrupt', `Internal error in RDB reading: ${what}`);

// ---- Writing ---------------------------------------------------------------------------------

/** Options of a write: Redis's `rdbcompression` and `rdbchecksum` (both yes by default). */
export interface RdbWriteOptions {
  compression?: boolean;
  checksum?: boolean;
  /** The file is the base of an append-only file (aux field `aof-base`). */
  aofBase?: boolean;
  /** What `used-mem` says (bytes); the heap in use when absent. */
  usedMemory?: number;
  /** The time that decides which keys have expired (ms); now when absent. */
  now?: number;
}

/** An append-only byte buffer that doubles as it fills. */
class Writer {
  buffer: Buffer;
  length = 0;
  readonly compression: boolean;

  constructor(compression: boolean, size = 64 * 1024) {
    this.buffer = Buffer.allocUnsafe(size);
    this.compression = compression;
  }

  reserve(bytes: number): void {
    if (this.length + bytes <= this.buffer.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buffer.length * 2, this.length + bytes));
    this.buffer.copy(next, 0, 0, this.length);
    this.buffer = next;
  }

  byte(value: number): void {
    this.reserve(1);
    this.buffer[this.length++] = value;
  }

  bytes(data: Uint8Array): void {
    this.reserve(data.length);
    this.buffer.set(data, this.length);
    this.length += data.length;
  }

  /** rdbSaveLen: 6 bits, 14 bits, 32 bits or 64 bits, big-endian. */
  len(value: number): void {
    this.reserve(9);
    const b = this.buffer;
    if (value < 1 << 6) {
      b[this.length++] = value;
    } else if (value < 1 << 14) {
      b[this.length++] = 0x40 | (value >> 8);
      b[this.length++] = value & 0xff;
    } else if (value <= 0xffffffff) {
      b[this.length++] = 0x80;
      b.writeUInt32BE(value, this.length);
      this.length += 4;
    } else {
      b[this.length++] = 0x81;
      b.writeBigUInt64BE(BigInt(value), this.length);
      this.length += 8;
    }
  }

  /** rdbSaveLen of a 64-bit value (stream IDs; -1 as Redis's cast to uint64_t). */
  lenBig(value: bigint): void {
    const unsigned = BigInt.asUintN(64, value);
    if (unsigned <= 0xffffffffn) {
      this.len(Number(unsigned));
      return;
    }
    this.reserve(9);
    this.buffer[this.length++] = 0x81;
    this.buffer.writeBigUInt64BE(unsigned, this.length);
    this.length += 8;
  }

  /** rdbSaveRawString: an integer encoding if it spells one in 32 bits, else LZF or verbatim. */
  string(data: Buffer | string): void {
    const size = typeof data === 'string' ? data.length : data.length;
    if (size <= 11 && size > 0) {
      const text = typeof data === 'string' ? data : data.toString('latin1');
      if (INTEGER.test(text) && this.#integer(Number(text))) return;
    }
    if (this.compression && size > 20) {
      const bytes = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
      const packed = lzfCompress(bytes, size - 4);
      if (packed !== undefined) {
        this.byte(0xc3); // RDB_ENCVAL << 6 | RDB_ENC_LZF
        this.len(packed.length);
        this.len(size);
        this.bytes(packed);
        return;
      }
    }
    this.len(size);
    if (typeof data === 'string') {
      this.reserve(size);
      this.length += this.buffer.write(data, this.length, 'latin1');
    } else {
      this.bytes(data);
    }
  }

  /** rdbEncodeInteger: int8, int16 or int32, little-endian; false past 32 bits. */
  #integer(value: number): boolean {
    this.reserve(5);
    const b = this.buffer;
    if (value >= -128 && value <= 127) {
      b[this.length++] = 0xc0;
      b.writeInt8(value, this.length);
      this.length += 1;
    } else if (value >= -32768 && value <= 32767) {
      b[this.length++] = 0xc1;
      b.writeInt16LE(value, this.length);
      this.length += 2;
    } else if (value >= -2147483648 && value <= 2147483647) {
      b[this.length++] = 0xc2;
      b.writeInt32LE(value, this.length);
      this.length += 4;
    } else {
      return false;
    }
    return true;
  }

  /** rdbSaveBinaryDoubleValue: 8 bytes, little-endian. */
  double(value: number): void {
    this.reserve(8);
    this.buffer.writeDoubleLE(value, this.length);
    this.length += 8;
  }

  /** rdbSaveMillisecondTime: 8 bytes, little-endian. */
  millis(value: number): void {
    this.reserve(8);
    this.buffer.writeBigInt64LE(BigInt(value), this.length);
    this.length += 8;
  }

  result(): Buffer {
    return this.buffer.subarray(0, this.length);
  }
}

/** What Redis's string2ll accepts (the range is checked by rdbEncodeInteger). */
const INTEGER = /^(0|-?[1-9][0-9]*)$/;

/** The RDB type byte of each type, as mini-redis writes it. */
const TYPE_OF: Record<string, number | undefined> = {
  string: TYPE.STRING,
  list: TYPE.LIST,
  set: TYPE.SET,
  hash: TYPE.HASH,
  zset: TYPE.ZSET_2,
  stream: TYPE.STREAM_LISTPACKS_2,
};
function typeOf(value: Value): number {
  const type = TYPE_OF[value.type];
  if (type === undefined) throw new RdbError('unsupported', `mini-redis cannot write a ${value.type} to an RDB file yet`);
  return type;
}

/** rdbSaveObject, with the types above. */
function writeObject(out: Writer, value: Value): void {
  const type: string = value.type;
  switch (value.type) {
    case 'string':
      out.string(value.data);
      return;
    case 'list':
      out.len(value.data.length);
      for (const element of value.data) out.string(element);
      return;
    case 'set':
      out.len(value.data.size);
      for (const member of value.data) out.string(member);
      return;
    case 'hash':
      out.len(value.data.size);
      for (const [field, data] of value.data) {
        out.string(field);
        out.string(data);
      }
      return;
    case 'zset':
      out.len(value.data.size);
      for (const [member, score] of value.data.scores) {
        out.string(member);
        out.double(score);
      }
      return;
    case 'stream':
      writeStream(out, value.data);
      return;
    default:
      throw new RdbError('unsupported', `mini-redis cannot write a ${type} to an RDB file yet`);
  }
}

// ---- Streams: RDB_TYPE_STREAM_LISTPACKS_2, as Redis 7.0 (rdb.c, t_stream.c) ------------------

/** A stream ID as Redis keys its radix trees: ms and seq, 8 bytes each, big-endian. */
function rawId(id: StreamId): Buffer {
  const out = Buffer.allocUnsafe(16);
  out.writeBigUInt64BE(msOf(id), 0);
  out.writeBigUInt64BE(seqOf(id), 8);
  return out;
}
const idOf = (raw: Buffer): StreamId => makeId(raw.readBigUInt64BE(0), raw.readBigUInt64BE(8));

/** Redis's lpStringToInt64: the integer a listpack stores a string as, if it spells one. */
function listpackInteger(data: Buffer): bigint | undefined {
  if (data.length === 0 || data.length > 20) return undefined;
  const text = data.toString('latin1');
  if (!INTEGER.test(text)) return undefined;
  const value = BigInt(text);
  return value === BigInt.asIntN(64, value) ? value : undefined;
}

/** A listpack being built (Redis 7's listpack.c encodings). */
class Listpack {
  readonly body = new Writer(false, 512);
  count = 0;

  integer(value: bigint): void {
    const out = this.body;
    const start = out.length;
    out.reserve(9);
    const b = out.buffer;
    if (value >= 0n && value <= 127n) {
      b[out.length++] = Number(value);
    } else if (value >= -4096n && value <= 4095n) {
      const v = Number(value < 0n ? value + 8192n : value);
      b[out.length++] = 0xc0 | (v >> 8);
      b[out.length++] = v & 0xff;
    } else if (value >= -32768n && value <= 32767n) {
      b[out.length++] = 0xf1;
      b.writeInt16LE(Number(value), out.length);
      out.length += 2;
    } else if (value >= -8388608n && value <= 8388607n) {
      b[out.length++] = 0xf2;
      b.writeIntLE(Number(value), out.length, 3);
      out.length += 3;
    } else if (value >= -2147483648n && value <= 2147483647n) {
      b[out.length++] = 0xf3;
      b.writeInt32LE(Number(value), out.length);
      out.length += 4;
    } else {
      b[out.length++] = 0xf4;
      b.writeBigInt64LE(value, out.length);
      out.length += 8;
    }
    this.#backlen(out.length - start);
  }

  string(data: Buffer): void {
    const integer = listpackInteger(data);
    if (integer !== undefined) {
      this.integer(integer);
      return;
    }
    const out = this.body;
    const start = out.length;
    const size = data.length;
    out.reserve(5);
    if (size < 64) {
      out.buffer[out.length++] = 0x80 | size;
    } else if (size < 4096) {
      out.buffer[out.length++] = 0xe0 | (size >> 8);
      out.buffer[out.length++] = size & 0xff;
    } else {
      out.buffer[out.length++] = 0xf0;
      out.buffer.writeUInt32LE(size, out.length);
      out.length += 4;
    }
    out.bytes(data);
    this.#backlen(out.length - start);
  }

  /** lpEncodeBacklen: the entry's size, 7 bits a byte, so the list can be walked backwards. */
  #backlen(size: number): void {
    const bytes = size <= 127 ? 1 : size < 16383 ? 2 : size < 2097151 ? 3 : size < 268435455 ? 4 : 5;
    for (let i = bytes - 1; i >= 0; i--) this.body.byte(((size / 2 ** (7 * i)) & 127) | (i === bytes - 1 ? 0 : 128));
    this.count++;
  }

  finish(): Buffer {
    const total = 6 + this.body.length + 1;
    const out = Buffer.allocUnsafe(total);
    out.writeUInt32LE(total, 0);
    out.writeUInt16LE(Math.min(this.count, 65535), 4);
    this.body.result().copy(out, 6);
    out[total - 1] = 0xff;
    return out;
  }
}

/** Redis's stream-node-max-entries and -bytes defaults: how many entries one listpack node holds. */
const NODE_MAX_ENTRIES = 100;
const NODE_MAX_BYTES = 4096;
const FLAG_SAMEFIELDS = 2;
const FLAG_DELETED = 1;

/** The entries of a stream as listpack nodes: a master entry (the first entry's fields) and the entries. */
function streamNodes(stream: Stream): Array<{ key: Buffer; listpack: Buffer }> {
  const entries = stream.range(0n, MAX_ID);
  const nodes: Array<{ key: Buffer; listpack: Buffer }> = [];
  let index = 0;
  while (index < entries.length) {
    const master = entries[index] as (typeof entries)[number];
    const masterFields = master.fields.filter((_, i) => i % 2 === 0);
    // How many entries this node takes: up to 100, and about 4 KiB of field data.
    let end = index;
    let bytes = 0;
    while (end < entries.length && end - index < NODE_MAX_ENTRIES && (end === index || bytes < NODE_MAX_BYTES)) {
      for (const part of (entries[end] as (typeof entries)[number]).fields) bytes += part.length + 2;
      end++;
    }
    const lp = new Listpack();
    lp.integer(BigInt(end - index)); // count
    lp.integer(0n); // deleted
    lp.integer(BigInt(masterFields.length));
    for (const name of masterFields) lp.string(name);
    lp.integer(0n); // the master entry's terminator
    const [masterMs, masterSeq] = [msOf(master.id), seqOf(master.id)];
    for (let i = index; i < end; i++) {
      const { id, fields } = entries[i] as (typeof entries)[number];
      const same = fields.length === masterFields.length * 2 && masterFields.every((name, k) => name.equals(fields[k * 2] as Buffer));
      lp.integer(BigInt(same ? FLAG_SAMEFIELDS : 0));
      lp.integer(msOf(id) - masterMs);
      lp.integer(seqOf(id) - masterSeq);
      if (same) {
        for (let k = 1; k < fields.length; k += 2) lp.string(fields[k] as Buffer);
      } else {
        lp.integer(BigInt(fields.length / 2));
        for (const part of fields) lp.string(part);
      }
      lp.integer(BigInt(same ? fields.length / 2 + 3 : fields.length + 4)); // lp-count
    }
    nodes.push({ key: rawId(master.id), listpack: lp.finish() });
    index = end;
  }
  return nodes;
}

/** Byte order of names, as Redis's radix trees list groups and consumers. */
const byBytes = (a: string, b: string): number => Buffer.compare(Buffer.from(a, 'latin1'), Buffer.from(b, 'latin1'));

function writeStream(out: Writer, stream: Stream): void {
  const nodes = streamNodes(stream);
  out.len(nodes.length);
  for (const { key, listpack } of nodes) {
    out.string(key);
    out.string(listpack);
  }
  out.len(stream.length);
  for (const id of [stream.lastId, stream.firstId, stream.maxDeletedId]) {
    out.lenBig(msOf(id));
    out.lenBig(seqOf(id));
  }
  out.len(stream.entriesAdded);
  const groups = [...stream.groups].sort(([a], [b]) => byBytes(a, b));
  out.len(groups.length);
  for (const [name, group] of groups) {
    out.string(name);
    out.lenBig(msOf(group.lastId));
    out.lenBig(seqOf(group.lastId));
    out.lenBig(BigInt(group.entriesRead));
    const pending = [...group.pel].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    out.len(pending.length);
    for (const [id, nack] of pending) {
      out.bytes(rawId(id));
      out.millis(nack.deliveryTime);
      out.len(nack.deliveryCount);
    }
    const consumers = [...group.consumers].sort(([a], [b]) => byBytes(a, b));
    out.len(consumers.length);
    for (const [consumerName, consumer] of consumers) {
      out.string(consumerName);
      out.millis(consumer.seenTime);
      const ids = [...consumer.pending].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      out.len(ids.length);
      for (const id of ids) out.bytes(rawId(id));
    }
  }
}

/** Read RDB_TYPE_STREAM_LISTPACKS (Redis 5–6) or _2 (Redis 7.0) into a Stream. */
function readStream(input: Reader, type: number): Stream {
  const stream = new Stream();
  const bad = (what: string) => corrupt(`Stream ${what}`);
  let previous = -1n;
  const nodes = input.len();
  for (let n = 0; n < nodes; n++) {
    const key = input.string();
    if (key.length !== 16) throw bad('node key entry is not the size of a stream ID');
    const [masterMs, masterSeq] = [key.readBigUInt64BE(0), key.readBigUInt64BE(8)];
    const blob = input.string();
    input.charge(blobElements(blob, 'listpack'));
    const items = listpackEntries(blob);
    if (items.length === 0) throw corrupt('Empty listpack inside stream');
    let at = 0;
    const next = (): Buffer => {
      const item = items[at++];
      if (item === undefined) throw bad('listpack integrity check failed.');
      return item;
    };
    const int = (): bigint => {
      const value = listpackInteger(next());
      if (value === undefined) throw bad('listpack integrity check failed.');
      return value;
    };
    const count = int() + int(); // valid + deleted
    const fieldCount = int();
    if (fieldCount < 0n || fieldCount > BigInt(items.length)) throw bad('listpack integrity check failed.');
    const masterFields = Array.from({ length: Number(fieldCount) }, next);
    if (int() !== 0n) throw bad('listpack integrity check failed.');
    for (let i = 0n; i < count; i++) {
      const flags = int();
      const ms = masterMs + int();
      const id = makeId(ms, BigInt.asUintN(64, masterSeq + int()));
      // IDs only grow along a stream: anything else is a corrupt payload (and would break the Stream's order).
      if (ms < 0n || ms > SEQ_MASK || id <= previous) throw bad('entry IDs are not in order');
      previous = id;
      const fields: Buffer[] = [];
      if (flags & BigInt(FLAG_SAMEFIELDS)) {
        for (const name of masterFields) fields.push(name, next());
      } else {
        const pairs = Number(int());
        for (let k = 0; k < pairs * 2; k++) fields.push(next());
      }
      int(); // lp-count
      if (!(flags & BigInt(FLAG_DELETED)))
        stream.append(
          id,
          fields.map((part) => Buffer.from(part)),
          NODE_MAX_ENTRIES,
          NODE_MAX_BYTES,
        );
    }
    if (at !== items.length) throw bad('listpack integrity check failed.');
  }
  const length = input.len();
  if (length !== stream.length) throw bad('length inconsistent with rax entries');
  stream.lastId = makeId(input.lenBig(), input.lenBig());
  if (stream.lastId < previous) throw bad('last ID is below its last entry');
  if (type === TYPE.STREAM_LISTPACKS_2) {
    stream.firstId = makeId(input.lenBig(), input.lenBig());
    stream.maxDeletedId = makeId(input.lenBig(), input.lenBig());
    stream.entriesAdded = Number(input.lenBig());
  } else {
    stream.entriesAdded = stream.length;
  }
  // Groups (~580 bytes each), pending entries (~240 with the consumer's copy) and consumers cost
  // far more than the bytes that describe them: counted before they are made.
  const groups = input.count(6);
  input.charge(groups * 4);
  for (let g = 0; g < groups; g++) {
    const name = input.latin1();
    const lastId = makeId(input.lenBig(), input.lenBig());
    // Before 7.0 no read counter was kept: estimated as rdb.c does (streamEstimateDistanceFromFirstEverEntry).
    const entriesRead =
      type === TYPE.STREAM_LISTPACKS_2 ? Number(BigInt.asIntN(64, input.lenBig())) : stream.distanceFromFirstEverEntry(lastId);
    if (stream.groups.has(name)) throw corrupt(`Duplicated consumer group name ${name}`);
    const group = new Group(lastId, entriesRead);
    stream.groups.set(name, group);
    const pending = new IdMap<{ time: number; count: number; owner?: string }>();
    const pelSize = input.count(25);
    input.charge(pelSize);
    for (let i = 0; i < pelSize; i++) {
      const id = idOf(input.take(16));
      const time = Number(input.take(8).readBigInt64LE(0));
      pending.set(id, { time, count: input.len() });
    }
    if (pending.size !== pelSize) throw corrupt('Duplicated global PEL entry loading stream consumer group');
    const consumers = input.count(10);
    input.charge(consumers);
    for (let c = 0; c < consumers; c++) {
      const consumerName = input.latin1();
      const { consumer, created } = group.consumer(consumerName);
      if (!created) throw corrupt('Duplicate stream consumer detected.');
      consumer.seenTime = Number(input.take(8).readBigInt64LE(0));
      const owned = input.len();
      for (let i = 0; i < owned; i++) {
        const id = idOf(input.take(16));
        const nack = pending.get(id);
        if (nack === undefined) throw corrupt('Consumer entry not found in group global PEL');
        // One owner per pending entry (rdb.c: "Duplicated consumer PEL entry loading a stream consumer group").
        if (nack.owner !== undefined) throw corrupt('Duplicated consumer PEL entry loading a stream consumer group');
        group.deliver(id, consumer, nack.count, nack.time).deliveryTime = nack.time;
        nack.owner = consumerName;
      }
    }
    for (const nack of pending.values()) if (nack.owner === undefined) throw corrupt('Stream CG PEL entry without consumer');
  }
  return stream;
}

/** The 8 bytes after EOF: the CRC-64 of everything before, or zeros without `rdbchecksum`. */
const trailer = (data: Buffer, checksum: boolean): Buffer => (checksum ? new Crc64().update(data).digest() : Buffer.alloc(8));

/**
 * A whole RDB file of every database, as Redis's rdbSaveRio: magic, aux fields, then per
 * non-empty database SELECTDB, RESIZEDB and its keys (EXPIRETIME_MS before a key with a TTL),
 * EOF and the checksum. Keys already past their TTL are left out.
 */
export function encodeRdb(server: RdbServer, options: RdbWriteOptions = {}): Buffer {
  const out = new Writer(options.compression ?? true, 1024 * 1024);
  const now = options.now ?? Date.now();
  out.bytes(Buffer.from(`REDIS${String(RDB_VERSION).padStart(4, '0')}`, 'latin1'));
  const aux = (name: string, value: string | number): void => {
    out.byte(OPCODE.AUX);
    out.string(name);
    out.string(String(value));
  };
  aux('redis-ver', '7.0.15');
  aux('redis-bits', 64);
  aux('ctime', Math.floor(now / 1000));
  aux('used-mem', options.usedMemory ?? process.memoryUsage().heapUsed);
  aux('aof-base', options.aofBase === true ? 1 : 0);
  for (const code of server.functions?.codes() ?? []) {
    out.byte(OPCODE.FUNCTION2);
    out.string(code);
  }
  server.keyspace.databases.forEach((db, index) => {
    if (db.values.size === 0) return;
    out.byte(OPCODE.SELECTDB);
    out.len(index);
    out.byte(OPCODE.RESIZEDB);
    out.len(db.values.size);
    out.len(db.expires.size);
    for (const [key, value] of db.values) {
      const expiresAt = db.expires.get(key);
      if (expiresAt !== undefined) {
        if (expiresAt <= now) continue;
        out.byte(OPCODE.EXPIRETIME_MS);
        out.millis(expiresAt);
      }
      out.byte(typeOf(value));
      out.string(key);
      writeObject(out, value);
    }
  });
  out.byte(OPCODE.EOF);
  const body = out.result();
  out.bytes(trailer(body, options.checksum ?? true));
  return out.result();
}

/**
 * DUMP's payload, as Redis's createDumpPayload: the type byte and the object, the RDB version
 * (2 bytes, little-endian) and the CRC-64 of all that (8 bytes, little-endian).
 */
export function dumpPayload(value: Value, compression = true): Buffer {
  const out = new Writer(compression, 256);
  out.byte(typeOf(value));
  writeObject(out, value);
  out.byte(RDB_VERSION & 0xff);
  out.byte((RDB_VERSION >> 8) & 0xff);
  out.bytes(new Crc64().update(out.result()).digest());
  return out.result();
}

/** Redis's verifyDumpPayload: at least 10 bytes, an RDB version it knows, and a matching CRC-64. */
export function verifyDumpPayload(payload: Buffer, checksum = true): boolean {
  if (payload.length < 10) return false;
  const footer = payload.length - 10;
  const version = (payload[footer] as number) | ((payload[footer + 1] as number) << 8);
  if (version > RDB_VERSION) return false;
  if (!checksum) return true;
  return new Crc64()
    .update(payload, 0, payload.length - 8)
    .digest()
    .equals(payload.subarray(payload.length - 8));
}

/**
 * RESTORE's half: the value in a payload `verifyDumpPayload` accepted. Throws an RdbError when the
 * object is malformed, empty or of a type mini-redis cannot hold (RESTORE answers "Bad data format"),
 * or ('too-big') when what it decodes to would cost more than `budget` bytes (each container is
 * counted from its header before it is decoded: a 512 MB payload of listpack integers would
 * otherwise become ~30 GB of heap, far past V8's limit, and end the process).
 */
export function restorePayload(payload: Buffer, budget = Number.POSITIVE_INFINITY): Value {
  const input = new Reader(payload.subarray(0, payload.length - 10), budget);
  const type = input.byte();
  const value = readObject(input, type, '');
  if (value === undefined) throw corrupt('empty key');
  return value;
}

// ---- Reading ---------------------------------------------------------------------------------

/**
 * What one element of a list, set, hash or sorted set costs mini-redis in heap beyond its bytes
 * (a Buffer or string and its slot: measured 115–120 bytes for a list of 1M one-byte elements).
 * A payload packs an element in 2 bytes (a listpack integer), so 1 MB of payload can become 60 MB.
 */
export const ELEMENT_COST = 120;

class Reader {
  readonly data: Buffer;
  pos = 0;
  /** The most the decoded value may cost (bytes, counted with ELEMENT_COST); Infinity: no limit. */
  readonly budget: number;
  spent = 0;

  constructor(data: Buffer, budget = Number.POSITIVE_INFINITY) {
    this.data = data;
    this.budget = budget;
  }

  /** Count what a container about to be decoded will cost, before it is: past the budget, stop. */
  charge(elements: number, bytes = 0): void {
    this.spent += elements * ELEMENT_COST + bytes;
    if (this.spent > this.budget) {
      throw new RdbError('too-big', `the value would cost more than the ${Math.floor(this.budget)} bytes it may use`);
    }
  }

  /** A count of elements of at least `each` bytes apiece: more than the bytes left is a lie. */
  count(each = 1): number {
    const value = this.len();
    if (value * each > this.data.length - this.pos) throw shortRead();
    this.charge(value);
    return value;
  }

  need(bytes: number): void {
    if (this.pos + bytes > this.data.length) throw shortRead();
  }

  byte(): number {
    this.need(1);
    return this.data[this.pos++] as number;
  }

  take(bytes: number): Buffer {
    this.need(bytes);
    const slice = this.data.subarray(this.pos, this.pos + bytes);
    this.pos += bytes;
    return slice;
  }

  /** Set by `lenOrEncoding`: the value read was an RDB_ENC_* (a special string encoding), not a length. */
  encoded = false;

  /** rdbLoadLen: the length, or (then `encoded` is true) the RDB_ENC_* of a special string encoding. */
  lenOrEncoding(): number {
    const first = this.byte();
    this.encoded = false;
    switch (first >> 6) {
      case 0:
        return first & 0x3f;
      case 1:
        return ((first & 0x3f) << 8) | this.byte();
      case 3:
        this.encoded = true;
        return first & 0x3f;
      default: {
        if (first === 0x80) {
          this.need(4);
          this.pos += 4;
          return this.data.readUInt32BE(this.pos - 4);
        }
        if (first === 0x81) {
          const value = this.take(8).readBigUInt64BE(0);
          if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt(`length ${value} out of range`);
          return Number(value);
        }
        throw corrupt(`Unknown length encoding ${first} in rdbLoadLen()`);
      }
    }
  }

  /** A length that may need 64 bits (stream IDs, counters). */
  lenBig(): bigint {
    const first = this.data[this.pos];
    if (first === 0x81) {
      this.pos++;
      return this.take(8).readBigUInt64BE(0);
    }
    return BigInt(this.len());
  }

  len(): number {
    const value = this.lenOrEncoding();
    if (this.encoded) throw corrupt('encoded length where a length was expected');
    return value;
  }

  /** rdbGenericLoadStringObject: the bytes of a string, whatever its encoding (a copy: the file can go). */
  string(): Buffer {
    const value = this.lenOrEncoding();
    if (!this.encoded) {
      this.need(value);
      const out = Buffer.allocUnsafe(value);
      this.data.copy(out, 0, this.pos, this.pos + value);
      this.pos += value;
      return out;
    }
    return this.#special(value);
  }

  /** A string as a latin1 JavaScript string (keys, fields, members). */
  latin1(): string {
    const value = this.lenOrEncoding();
    if (!this.encoded) {
      this.need(value);
      this.pos += value;
      return this.data.toString('latin1', this.pos - value, this.pos);
    }
    return this.#special(value).toString('latin1');
  }

  /** The integer and LZF encodings of a string. */
  #special(encoding: number): Buffer {
    switch (encoding) {
      case 0:
        return Buffer.from(String(this.take(1).readInt8(0)), 'latin1');
      case 1:
        return Buffer.from(String(this.take(2).readInt16LE(0)), 'latin1');
      case 2:
        return Buffer.from(String(this.take(4).readInt32LE(0)), 'latin1');
      case 3: {
        const packedLength = this.len();
        const length = this.len();
        const packed = this.take(packedLength);
        // Redis's lzf_decompress into 0 bytes writes nothing and returns 0, which equals the length: "".
        if (length === 0) return Buffer.alloc(0);
        // A back reference (at most 3 bytes) yields at most 264: a longer claim is a lie, not a buffer to allocate.
        if (length > packedLength * 88 + 32) throw corrupt('Invalid LZF compressed string');
        this.charge(0, length);
        const plain = lzfDecompress(packed, length);
        if (plain === undefined) throw corrupt('Invalid LZF compressed string');
        return plain;
      }
      default:
        throw corrupt(`Unknown RDB string encoding type ${encoding}`);
    }
  }

  /** rdbLoadBinaryDoubleValue. */
  binaryDouble(): number {
    return this.take(8).readDoubleLE(0);
  }

  /** rdbLoadDoubleValue (RDB_TYPE_ZSET): a length byte (253 NaN, 254 +inf, 255 -inf) and the text. */
  textDouble(): number {
    const length = this.byte();
    if (length === 253) return Number.NaN;
    if (length === 254) return Number.POSITIVE_INFINITY;
    if (length === 255) return Number.NEGATIVE_INFINITY;
    return parseScore(this.take(length).toString('latin1'));
  }
}

/** A score as a listpack or an old file spells it (strtod: "inf", "-inf", "1.5e10"). */
function parseScore(text: string): number {
  const lower = text.trim().toLowerCase();
  if (lower === 'inf' || lower === '+inf' || lower === 'infinity') return Number.POSITIVE_INFINITY;
  if (lower === '-inf' || lower === '-infinity') return Number.NEGATIVE_INFINITY;
  const value = Number(text);
  if (text.length === 0 || Number.isNaN(value)) throw corrupt('Zset with NAN score detected');
  return value;
}

/** The size of a ziplist integer entry (encoding byte and data) by its encoding byte. */
const ZIPLIST_INT_SIZE: Record<number, number> = { 192: 3, 208: 5, 224: 9, 240: 4, 254: 2 };

/** The entries of a ziplist (Redis ≤ 6.2's compact encoding), each as the bytes of its string. */
function ziplistEntries(blob: Buffer): Buffer[] {
  if (blob.length < 11 || blob.readUInt32LE(0) !== blob.length || blob[blob.length - 1] !== 0xff) {
    throw corrupt('Ziplist integrity check failed.');
  }
  const entries: Buffer[] = [];
  let pos = 10;
  const check = (bytes: number) => {
    if (pos + bytes > blob.length - 1) throw corrupt('Ziplist integrity check failed.');
  };
  while (blob[pos] !== 0xff) {
    check(1);
    pos += blob[pos] === 0xfe ? 5 : 1; // prevlen
    check(1);
    const head = blob[pos] as number;
    if (head >> 6 === 0) {
      check(1 + (head & 0x3f));
      entries.push(blob.subarray(pos + 1, pos + 1 + (head & 0x3f)));
      pos += 1 + (head & 0x3f);
    } else if (head >> 6 === 1) {
      check(2);
      const length = ((head & 0x3f) << 8) | (blob[pos + 1] as number);
      check(2 + length);
      entries.push(blob.subarray(pos + 2, pos + 2 + length));
      pos += 2 + length;
    } else if (head >> 6 === 2) {
      check(5);
      const length = blob.readUInt32BE(pos + 1);
      check(5 + length);
      entries.push(blob.subarray(pos + 5, pos + 5 + length));
      pos += 5 + length;
    } else {
      const size = ZIPLIST_INT_SIZE[head] ?? (head >= 0xf1 && head <= 0xfd ? 1 : 0);
      if (size === 0) throw corrupt('Ziplist integrity check failed.');
      check(size);
      const value = size === 1 ? (head & 0x0f) - 1 : size === 9 ? blob.readBigInt64LE(pos + 1) : blob.readIntLE(pos + 1, size - 1);
      entries.push(Buffer.from(String(value), 'latin1'));
      pos += size;
    }
  }
  if (pos !== blob.length - 1) throw corrupt('Ziplist integrity check failed.');
  return entries;
}

/**
 * How many entries a listpack or ziplist holds, before it is walked: its header's count (checked
 * when it is walked), or when the header does not say (65535), the most its size allows.
 */
function blobElements(blob: Buffer, kind: 'listpack' | 'ziplist'): number {
  const at = kind === 'listpack' ? 4 : 8;
  const count = blob.length >= at + 2 ? blob.readUInt16LE(at) : 0;
  return count !== 65535 ? count : Math.floor(blob.length / 2);
}

/** The entries of a listpack (Redis 7's compact encoding), each as the bytes of its string. */
function listpackEntries(blob: Buffer): Buffer[] {
  if (blob.length < 7 || blob.readUInt32LE(0) !== blob.length || blob[blob.length - 1] !== 0xff) {
    throw corrupt('Listpack integrity check failed.');
  }
  const entries: Buffer[] = [];
  let pos = 6;
  const check = (bytes: number) => {
    if (pos + bytes > blob.length - 1) throw corrupt('Listpack integrity check failed.');
  };
  /** The backlen after an entry of `size` bytes (encoding and data). */
  const backlen = (size: number) => (size <= 127 ? 1 : size < 16383 ? 2 : size < 2097151 ? 3 : size < 268435455 ? 4 : 5);
  const integer = (value: number | bigint, size: number) => {
    entries.push(Buffer.from(String(value), 'latin1'));
    check(size + backlen(size));
    pos += size + backlen(size);
  };
  const text = (header: number, length: number) => {
    check(header + length);
    entries.push(blob.subarray(pos + header, pos + header + length));
    pos += header + length + backlen(header + length);
  };
  while (blob[pos] !== 0xff) {
    const head = blob[pos] as number;
    if (head >> 7 === 0) integer(head, 1);
    else if (head >> 6 === 2) text(1, head & 0x3f);
    else if (head >> 5 === 6) {
      check(2);
      const raw = ((head & 0x1f) << 8) | (blob[pos + 1] as number);
      integer(raw >= 1 << 12 ? raw - (1 << 13) : raw, 2);
    } else if (head >> 4 === 14) {
      check(2);
      text(2, ((head & 0x0f) << 8) | (blob[pos + 1] as number));
    } else if (head === 0xf0) {
      check(5);
      text(5, blob.readUInt32LE(pos + 1));
    } else if (head >= 0xf1 && head <= 0xf4) {
      const size = head === 0xf4 ? 9 : (head & 0x0f) + 2; // int16, int24, int32, int64
      check(size);
      integer(size === 9 ? blob.readBigInt64LE(pos + 1) : blob.readIntLE(pos + 1, size - 1), size);
    } else throw corrupt('Listpack integrity check failed.');
  }
  if (pos !== blob.length - 1) throw corrupt('Listpack integrity check failed.');
  const count = blob.readUInt16LE(4);
  if (count !== 65535 && count !== entries.length) throw corrupt('Listpack integrity check failed.');
  return entries;
}

/** The members of an intset: 4-byte encoding (2, 4 or 8), 4-byte count, sorted integers. */
function intsetMembers(blob: Buffer): string[] {
  if (blob.length < 8) throw corrupt('Intset integrity check failed.');
  const width = blob.readUInt32LE(0);
  const count = blob.readUInt32LE(4);
  if ((width !== 2 && width !== 4 && width !== 8) || blob.length !== 8 + width * count) {
    throw corrupt('Intset integrity check failed.');
  }
  const members: string[] = [];
  let previous: number | bigint | undefined;
  for (let i = 0; i < count; i++) {
    const at = 8 + i * width;
    const value = width === 2 ? blob.readInt16LE(at) : width === 4 ? blob.readInt32LE(at) : blob.readBigInt64LE(at);
    // intsetValidateIntegrity's deep check: strictly ascending (no duplicates), as a set's members must be.
    if (previous !== undefined && value <= previous) throw corrupt('Intset integrity check failed.');
    previous = value;
    members.push(String(value));
  }
  return members;
}

/** The field/value pairs of a zipmap (Redis ≤ 2.4's small hashes). */
function zipmapPairs(blob: Buffer): Buffer[] {
  const entries: Buffer[] = [];
  let pos = 1;
  const length = (): number => {
    const first = blob[pos++];
    if (first === undefined) throw corrupt('Zipmap integrity check failed.');
    if (first < 254) return first;
    if (first === 254 && pos + 4 <= blob.length) {
      pos += 4;
      return blob.readUInt32LE(pos - 4);
    }
    throw corrupt('Zipmap integrity check failed.');
  };
  const take = (bytes: number): Buffer => {
    if (pos + bytes > blob.length) throw corrupt('Zipmap integrity check failed.');
    pos += bytes;
    return blob.subarray(pos - bytes, pos);
  };
  while (blob[pos] !== 0xff) {
    entries.push(take(length()));
    const valueLength = length();
    const free = take(1)[0] as number;
    entries.push(take(valueLength));
    take(free);
  }
  return entries;
}

/** A hash from a flat field, value, field, value… list. */
function hashOf(flat: readonly Buffer[]): Value {
  if (flat.length % 2 !== 0) throw corrupt('Hash listpack with odd number of elements');
  const data = new Map<string, Buffer>();
  for (let i = 0; i < flat.length; i += 2) data.set((flat[i] as Buffer).toString('latin1'), Buffer.from(flat[i + 1] as Buffer));
  if (data.size * 2 !== flat.length) throw corrupt('Duplicate hash fields detected');
  return { type: 'hash', data };
}

/** A sorted set from a flat member, score, member, score… list. */
function zsetOf(flat: readonly Buffer[]): Value {
  if (flat.length % 2 !== 0) throw corrupt('Zset listpack with odd number of elements');
  const data = new SortedSet();
  for (let i = 0; i < flat.length; i += 2) {
    data.set((flat[i] as Buffer).toString('latin1'), parseScore((flat[i + 1] as Buffer).toString('latin1')));
  }
  if (data.size * 2 !== flat.length) throw corrupt('Duplicate zset fields detected');
  return { type: 'zset', data };
}

/** rdbLoadObject for the five types: the value, or undefined for an empty one (Redis skips those). */
function readObject(input: Reader, type: number, key: string): Value | undefined {
  const unsupported = UNSUPPORTED[type];
  if (unsupported !== undefined) {
    throw new RdbError('unsupported', `The RDB holds ${unsupported}${key === '' ? '' : ` at key '${key}'`}: mini-redis cannot load it`);
  }
  switch (type) {
    case TYPE.STRING:
      return { type: 'string', data: input.string() };
    case TYPE.LIST: {
      const count = input.count();
      const data = new Deque<Buffer>();
      for (let i = 0; i < count; i++) data.push(input.string());
      return count === 0 ? undefined : { type: 'list', data };
    }
    case TYPE.SET: {
      const count = input.count();
      const data = new Set<string>();
      for (let i = 0; i < count; i++) data.add(input.latin1());
      if (data.size !== count) throw corrupt('Duplicate set members detected');
      return count === 0 ? undefined : { type: 'set', data };
    }
    case TYPE.ZSET:
    case TYPE.ZSET_2: {
      const count = input.count(2);
      const data = new SortedSet();
      for (let i = 0; i < count; i++) {
        const member = input.latin1();
        const score = type === TYPE.ZSET_2 ? input.binaryDouble() : input.textDouble();
        if (Number.isNaN(score)) throw corrupt('Zset with NAN score detected');
        data.set(member, score);
      }
      if (data.size !== count) throw corrupt('Duplicate zset fields detected');
      return count === 0 ? undefined : { type: 'zset', data };
    }
    case TYPE.HASH: {
      const count = input.count(2);
      const data = new Map<string, Buffer>();
      for (let i = 0; i < count; i++) data.set(input.latin1(), input.string());
      if (data.size !== count) throw corrupt('Duplicate hash fields detected');
      return count === 0 ? undefined : { type: 'hash', data };
    }
    case TYPE.LIST_QUICKLIST:
    case TYPE.LIST_QUICKLIST_2: {
      const nodes = input.len();
      const data = new Deque<Buffer>();
      for (let i = 0; i < nodes; i++) {
        const container = type === TYPE.LIST_QUICKLIST_2 ? input.len() : 2;
        if (container !== 1 && container !== 2) throw corrupt('Quicklist integrity check failed.');
        const blob = input.string();
        if (blob.length === 0) throw corrupt('Quicklist integrity check failed.');
        input.charge(container === 1 ? 1 : blobElements(blob, type === TYPE.LIST_QUICKLIST_2 ? 'listpack' : 'ziplist'));
        if (container === 1)
          data.push(blob); // a plain node: one big element
        else
          for (const entry of type === TYPE.LIST_QUICKLIST_2 ? listpackEntries(blob) : ziplistEntries(blob)) data.push(Buffer.from(entry));
      }
      return data.length === 0 ? undefined : { type: 'list', data };
    }
    case TYPE.LIST_ZIPLIST: {
      const blob = input.string();
      input.charge(blobElements(blob, 'ziplist'));
      const data = new Deque<Buffer>(ziplistEntries(blob).map((entry) => Buffer.from(entry)));
      return data.length === 0 ? undefined : { type: 'list', data };
    }
    case TYPE.SET_INTSET: {
      const blob = input.string();
      input.charge(Math.floor(blob.length / 2));
      const members = intsetMembers(blob);
      return members.length === 0 ? undefined : { type: 'set', data: new Set(members) };
    }
    case TYPE.HASH_ZIPMAP:
    case TYPE.HASH_ZIPLIST:
    case TYPE.HASH_LISTPACK: {
      const blob = input.string();
      input.charge(blobElements(blob, type === TYPE.HASH_LISTPACK ? 'listpack' : 'ziplist'));
      const flat =
        type === TYPE.HASH_ZIPMAP ? zipmapPairs(blob) : type === TYPE.HASH_ZIPLIST ? ziplistEntries(blob) : listpackEntries(blob);
      return flat.length === 0 ? undefined : hashOf(flat);
    }
    case TYPE.ZSET_ZIPLIST:
    case TYPE.ZSET_LISTPACK: {
      const blob = input.string();
      input.charge(blobElements(blob, type === TYPE.ZSET_LISTPACK ? 'listpack' : 'ziplist'));
      const flat = type === TYPE.ZSET_ZIPLIST ? ziplistEntries(blob) : listpackEntries(blob);
      return flat.length === 0 ? undefined : zsetOf(flat);
    }
    case TYPE.STREAM_LISTPACKS:
    case TYPE.STREAM_LISTPACKS_2:
      return { type: 'stream', data: readStream(input, type) };
    default:
      throw corrupt(`Unknown RDB encoding type ${type}`);
  }
}

/** One key of a loaded file. */
export interface RdbEntry {
  key: string;
  value: Value;
  /** When it expires (ms since the epoch), if it has a TTL. */
  expiresAt?: number;
}

/** What `decodeRdb` found. */
export interface DecodedRdb {
  /** Keys by database number. */
  databases: Map<number, RdbEntry[]>;
  /** The aux fields (redis-ver, ctime, …). */
  aux: Map<string, string>;
  /** The function libraries' codes (opcode FUNCTION2), in file order. */
  functions: Buffer[];
  /** Keys whose TTL had passed (left out, as Redis does on a master). */
  expired: number;
  /** Empty lists, sets, hashes or sorted sets (left out, as Redis does). */
  emptySkipped: number;
  /** Whether the trailer was checked (false: saved with `rdbchecksum no`, or `checksum: false`). */
  checksumVerified: boolean;
}

export interface RdbReadOptions {
  /** Verify the CRC-64 (Redis's `rdbchecksum`); default true. */
  checksum?: boolean;
  /** The number of databases there are (a file with more: error); default 16. */
  databases?: number;
  /** The time that decides which keys have expired (ms); now when absent. */
  now?: number;
}

/**
 * Read an RDB file (version 1–10) as Redis's rdbLoadRio does. Throws an RdbError with Redis's
 * messages: a short file, a wrong checksum, an unknown encoding, a type mini-redis cannot hold.
 */
export function decodeRdb(data: Buffer, options: RdbReadOptions = {}): DecodedRdb {
  const input = new Reader(data);
  const now = options.now ?? Date.now();
  const magic = input.take(9).toString('latin1');
  if (!magic.startsWith('REDIS')) throw new RdbError('signature', 'Wrong signature trying to load DB from file');
  const version = Number.parseInt(magic.slice(5), 10);
  if (!(version >= 1 && version <= RDB_VERSION)) throw new RdbError('version', `Can't handle RDB format version ${magic.slice(5)}`);
  const result: DecodedRdb = { databases: new Map(), aux: new Map(), functions: [], expired: 0, emptySkipped: 0, checksumVerified: false };
  let db: RdbEntry[] = [];
  result.databases.set(0, db);
  let expiresAt: number | undefined;
  const databases = options.databases ?? 16;
  for (;;) {
    const type = input.byte();
    if (type === OPCODE.EXPIRETIME) {
      expiresAt = input.take(4).readInt32LE(0) * 1000;
      continue;
    }
    if (type === OPCODE.EXPIRETIME_MS) {
      expiresAt = Number(input.take(8).readBigInt64LE(0));
      continue;
    }
    if (type === OPCODE.FREQ) {
      input.byte();
      continue;
    }
    if (type === OPCODE.IDLE) {
      input.len();
      continue;
    }
    if (type === OPCODE.EOF) break;
    if (type === OPCODE.SELECTDB) {
      const index = input.len();
      if (index >= databases) {
        throw new RdbError(
          'unsupported',
          `FATAL: Data file was created with a Redis server configured to handle more than ${databases} databases. Exiting`,
        );
      }
      db = result.databases.get(index) ?? [];
      result.databases.set(index, db);
      continue;
    }
    if (type === OPCODE.RESIZEDB) {
      input.len();
      input.len();
      continue;
    }
    if (type === OPCODE.AUX) {
      const name = input.latin1();
      result.aux.set(name, input.latin1());
      continue;
    }
    if (type === OPCODE.MODULE_AUX)
      throw new RdbError('unsupported', "The RDB file contains AUX module data I can't load: mini-redis has no modules");
    if (type === OPCODE.FUNCTION2) {
      result.functions.push(input.string());
      continue;
    }
    if (type === OPCODE.FUNCTION) {
      throw new RdbError('unsupported', 'The RDB file contains a function library in the format of Redis 7.0 release candidates');
    }
    const key = input.latin1();
    const value = readObject(input, type, key);
    const at = expiresAt;
    expiresAt = undefined;
    if (value === undefined) {
      result.emptySkipped++;
    } else if (at !== undefined && at <= now) {
      result.expired++;
    } else {
      db.push(at === undefined ? { key, value } : { key, value, expiresAt: at });
    }
  }
  if (version >= 5) {
    const expected = new Crc64().update(data, 0, input.pos).digest();
    const stored = input.take(8);
    if ((options.checksum ?? true) && !stored.equals(Buffer.alloc(8))) {
      if (!stored.equals(expected)) {
        throw new RdbError(
          'checksum',
          `Wrong RDB checksum expected: (${stored.readBigUInt64LE(0).toString(16)}) but got (${expected.readBigUInt64LE(0).toString(16)}). Aborting now.`,
        );
      }
      result.checksumVerified = true;
    }
  }
  return result;
}

/**
 * Load a file into the keyspace (every database emptied first, as Redis's emptyData before a
 * load). Returns the counts INFO persistence shows (rdb_last_load_keys_loaded, …_expired).
 */
export function loadRdb(
  server: RdbServer,
  data: Buffer,
  options: RdbReadOptions = {},
): { loaded: number; expired: number; aux: Map<string, string> } {
  const decoded = decodeRdb(data, { databases: server.keyspace.databases.length, ...options });
  if (server.functions === undefined && decoded.functions.length > 0)
    throw new RdbError('unsupported', 'The RDB file contains a function library: this server has no functions');
  // The libraries first (rdbFunctionLoad, before the keys): a library that cannot load fails the load.
  try {
    server.functions?.replace(decoded.functions);
  } catch (error) {
    throw new RdbError('corrupt', `Failed loading library, ${(error as Error).message}`);
  }
  let loaded = 0;
  for (const db of server.keyspace.databases) db.clear();
  for (const [index, entries] of decoded.databases) {
    const db = server.keyspace.db(index);
    for (const { key, value, expiresAt } of entries) {
      if (db.values.has(key)) throw corrupt(`RDB has duplicated key '${key}' in DB ${index}`);
      db.set(key, value);
      if (expiresAt !== undefined) db.expireAt(key, expiresAt);
      loaded++;
    }
  }
  return { loaded, expired: decoded.expired, aux: decoded.aux };
}
