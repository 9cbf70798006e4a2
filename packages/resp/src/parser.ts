import { ProtocolError } from './errors.js';

// The request side of RESP, as Redis 7 reads it (networking.c: processInputBuffer,
// processInlineBuffer, processMultibulkBuffer; sds.c: sdssplitargs; util.c: string2ll).
// Written by hand: the only RESP parser on npm (redis-parser) parses replies, not requests,
// knows no inline commands and no limits, and is unmaintained. docs/research/resp-edges.md
// records the behaviour followed here, edge by edge.

const CR = 0x0d;
const LF = 0x0a;
const NUL = 0x00;
const STAR = 0x2a;
const DOLLAR = 0x24;
const INT_MAX = 2 ** 31 - 1;
/** Redis checks unauthenticated clients against these (CVE-2021-32675). */
const UNAUTHENTICATED_MULTIBULK = 10;
const UNAUTHENTICATED_BULK = 16 * 1024;
const EMPTY = Buffer.alloc(0);
/** The argument list between commands: shared, never pushed to (a multibulk header gives each command its own). */
const NO_ARGS: Command = [];
/**
 * Arguments of a command received in several reads are copied, once the read they came in is
 * parsed, into blocks (their bytes, and a 4-byte length each; see Spill), instead of being
 * kept as a Buffer view each (over 100 bytes) pinning every chunk with its protocol headers.
 * Arguments at least this long stay views: copying them would cost more than the view.
 */
const SPILL_COPY_LIMIT = 1024;
/** Marks, in the spilled lengths, an argument kept as a view (in #spillViews). */
const VIEW = 0xffffffff;

/**
 * What one argument held as a Buffer costs on the V8 heap beyond its bytes: the Buffer view (a
 * JSTypedArray, about 96 bytes on 64-bit Node without pointer compression), its slot in the
 * argument array and that array's growth slack; about 108 bytes on Node 20. That is what the
 * arguments of a command parsed from the current read, and of the commands MULTI queued, cost.
 * A command received over several reads keeps its earlier arguments in blocks instead (about 5
 * bytes per 1-byte argument: test/memory.test.ts measures both). Redis pays about 40 bytes (an
 * robj, an embedded sds and an argv slot).
 */
export const ARGUMENT_OVERHEAD = 112;

/** Limits a client cannot push the parser past. */
export interface ParserLimits {
  /** Largest bulk argument, Redis's `proto-max-bulk-len`. Default 512 MB. */
  maxBulkLength: number;
  /** Largest inline request or `*`/`$` header line still without its end, Redis's PROTO_INLINE_MAX_SIZE. Default 64 KiB. */
  maxInlineLength: number;
}

export const parserDefaults: ParserLimits = {
  maxBulkLength: 512 * 1024 * 1024,
  maxInlineLength: 64 * 1024,
};

/** The last limits made: parsers of one server share them (one object, not one per client). */
let sharedLimits: ParserLimits = Object.freeze({ ...parserDefaults });

function limitsOf(limits: Partial<ParserLimits>): ParserLimits {
  const maxBulkLength = limits.maxBulkLength ?? parserDefaults.maxBulkLength;
  const maxInlineLength = limits.maxInlineLength ?? parserDefaults.maxInlineLength;
  if (sharedLimits.maxBulkLength !== maxBulkLength || sharedLimits.maxInlineLength !== maxInlineLength) {
    sharedLimits = Object.freeze({ maxBulkLength, maxInlineLength });
  }
  return sharedLimits;
}

/**
 * The arguments of a command received so far from earlier reads. Bytes and lengths are kept in
 * blocks that grow by doubling up to BLOCK bytes, then are chained: no copy of everything so far
 * when a flood of arguments keeps coming, and no more than one partly used block of each.
 */
interface Spill {
  /** Full blocks of argument bytes, then the one being filled. */
  blocks: Buffer[];
  bytes: Buffer;
  used: number;
  /** Bytes of all blocks (what they hold in memory). */
  blockBytes: number;
  /** Full blocks of lengths, then the one being filled: each argument's length, or VIEW. */
  lengthBlocks: Uint32Array[];
  lengths: Uint32Array;
  filled: number;
  count: number;
  /** Bytes of the arguments copied. */
  argBytes: number;
  /** Long arguments, kept as views. */
  views: Buffer[];
  viewBytes: number;
}

/** Largest block of a spill, in bytes (for the lengths too). */
const BLOCK = 64 * 1024;

/** One command: its name and arguments, binary-safe. */
export type Command = Buffer[];

/**
 * An incremental parser of RESP requests: multibulk (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`) and inline
 * (`GET k\r\n`, with redis-cli's quoting). Feed it bytes as they arrive, in chunks of any size,
 * and pull commands one at a time with `next()`, as Redis alternates parsing and running.
 *
 * Arguments are views into the bytes received, not copies: copy (`Buffer.from(arg)`) what you
 * keep after the command ran, or it pins the whole chunk it came in.
 */
export class RequestParser {
  readonly limits: Readonly<ParserLimits>;
  #buf: Buffer = EMPTY;
  #pos = 0;
  /** Chunks received while waiting: joined once there is enough to go on, not on every read. */
  #pending: Buffer[] | undefined = undefined;
  #pendingLength = 0;
  /** Whether a pending chunk holds the awaited byte (checked once per chunk, as it arrives). */
  #pendingHasNeeded = false;
  /** Bytes that must be available from #pos before parsing can progress (0: any). */
  #needBytes = 0;
  /** Byte whose arrival lets parsing progress (-1: none awaited). */
  #needByte = -1;
  /** Arguments still to read in the current multibulk (0: between commands). */
  #remaining = 0;
  /** Arguments of the current multibulk parsed from #buf (views into it). */
  #args: Command = NO_ARGS;
  /** Arguments of the current multibulk from earlier reads (see SPILL_COPY_LIMIT); made when needed. */
  #spill: Spill | undefined = undefined;
  /** Length of the bulk being read (-1: its `$` header is still to read). */
  #bulkLength = -1;
  /** Bytes of the multibulk being read that were already parsed (its arguments are views into them). */
  #consumed = 0;
  #failed = false;

  constructor(limits: Partial<ParserLimits> = {}) {
    this.limits = limitsOf(limits);
  }

  /** Bytes of the arguments of a command parsed so far, not yet complete (CLIENT LIST's argv-mem). */
  get partialArgvBytes(): number {
    let bytes = this.#spill === undefined ? 0 : this.#spill.argBytes + this.#spill.viewBytes;
    for (const arg of this.#args) bytes += arg.length;
    return bytes;
  }

  /**
   * Redis's `sdslen(querybuf)` while a command runs: Redis empties its query buffer only after
   * running every command a read brought, so this counts the bytes of the read the last command
   * came in — commands before it in the same read, itself, and what follows.
   */
  get queryBufferLength(): number {
    return this.#buf.length + this.#pendingLength;
  }

  /** Bytes received and not yet parsed into a command. */
  get buffered(): number {
    return this.#buf.length - this.#pos + this.#pendingLength;
  }

  /**
   * What the command being received costs so far, in bytes: the bytes not yet parsed, the bytes of
   * its arguments already parsed (views keep them alive) and {@link ARGUMENT_OVERHEAD} per
   * argument. This is what query buffer limits count.
   */
  get cost(): number {
    const spill = this.#spill;
    const spilled =
      spill === undefined
        ? 0
        : spill.blockBytes +
          (spill.lengthBlocks.length * BLOCK + spill.lengths.byteLength) +
          spill.viewBytes +
          spill.views.length * ARGUMENT_OVERHEAD;
    return this.buffered + this.#consumed + this.#args.length * ARGUMENT_OVERHEAD + spilled;
  }

  /** Drop everything received and stop parsing (the connection is closing). */
  discard(): void {
    this.#failed = true;
    this.#buf = EMPTY;
    this.#pos = 0;
    this.#pending = undefined;
    this.#pendingLength = 0;
    this.#args = NO_ARGS;
    this.#spill = undefined;
    this.#remaining = 0;
    this.#consumed = 0;
  }

  /** Add received bytes. */
  push(chunk: Buffer): void {
    if (this.#failed || chunk.length === 0) return;
    if (this.#pending === undefined) this.#pending = [chunk];
    else this.#pending.push(chunk);
    this.#pendingLength += chunk.length;
    if (this.#needByte !== -1 && !this.#pendingHasNeeded && chunk.includes(this.#needByte)) this.#pendingHasNeeded = true;
  }

  /**
   * The next complete command, or `undefined` until more bytes arrive. Throws a
   * {@link ProtocolError} for a malformed request; the parser then stays failed, as the
   * connection is to be closed. `authRequired` applies Redis's stricter limits for clients that
   * have not authenticated (at most 10 arguments of at most 16 KiB).
   */
  next(authRequired = false): Command | undefined {
    if (this.#failed) return undefined;
    if (!this.#join()) return undefined;
    try {
      return this.#parse(authRequired);
    } catch (error) {
      this.discard();
      throw error;
    }
  }

  /** Join pending chunks when they can let parsing progress; false when not worth trying yet. */
  #join(): boolean {
    if (this.#pendingLength === 0) return this.#pos < this.#buf.length && this.#needBytes === 0 && this.#needByte === -1;
    const available = this.buffered;
    const waitingForByte = this.#needByte !== -1 && available <= this.limits.maxInlineLength && !this.#pendingHasNeeded;
    if (available < this.#needBytes || waitingForByte) return false;
    const pending = this.#pending as Buffer[];
    const rest = this.#buf.subarray(this.#pos);
    this.#buf = rest.length === 0 && pending.length === 1 ? (pending[0] as Buffer) : Buffer.concat([rest, ...pending]);
    this.#pos = 0;
    this.#pending = undefined;
    this.#pendingLength = 0;
    this.#pendingHasNeeded = false;
    this.#needBytes = 0;
    this.#needByte = -1;
    return true;
  }

  #parse(authRequired: boolean): Command | undefined {
    const command = this.#parseFromBuffer(authRequired);
    // A command cut by the end of the read: its arguments so far move out of the read's buffer.
    if (command === undefined && this.#args.length > 0) this.#spillArgs();
    return command;
  }

  #parseFromBuffer(authRequired: boolean): Command | undefined {
    for (;;) {
      if (this.#remaining === 0) {
        if (this.#pos >= this.#buf.length) return this.#wait(0, -1);
        if (this.#buf[this.#pos] === STAR) {
          const start = this.#pos;
          const count = this.#multibulkHeader(authRequired);
          if (count === undefined) return undefined;
          if (count <= 0) continue; // `*0` and negative counts are ignored, as Redis does
          // The count is only a promise: arguments are allocated as they arrive, as Redis does
          // (it preallocates at most 1024 slots), so `*2147483647` alone costs nothing.
          this.#remaining = count;
          this.#args = [];
          this.#bulkLength = -1;
          this.#consumed = this.#pos - start;
        } else {
          const inline = this.#inline();
          if (inline === undefined) return undefined;
          if (inline.length === 0) continue; // an empty line: nothing to run, nothing to answer
          return inline;
        }
      }
      while (this.#remaining > 0) {
        if (this.#bulkLength === -1) {
          const start = this.#pos;
          if (!this.#bulkHeader(authRequired)) return undefined;
          this.#consumed += this.#pos - start;
        }
        const length = this.#bulkLength;
        if (this.#buf.length - this.#pos < length + 2) return this.#wait(length + 2, -1);
        this.#args.push(this.#buf.subarray(this.#pos, this.#pos + length));
        // Redis skips the two bytes after a payload without checking that they are CRLF.
        this.#pos += length + 2;
        this.#consumed += length + 2;
        this.#bulkLength = -1;
        this.#remaining--;
      }
      const command = this.#spill === undefined ? this.#args : this.#unspill(this.#spill);
      this.#args = NO_ARGS;
      this.#consumed = 0;
      return command;
    }
  }

  /** Copy the arguments parsed from #buf into the spill (short ones) or keep them (long ones). */
  #spillArgs(): void {
    const args = this.#args;
    if (this.#spill === undefined) {
      const lengths = new Uint32Array(Math.min(BLOCK / 4, Math.max(16, args.length)));
      this.#spill = {
        blocks: [],
        bytes: EMPTY,
        used: 0,
        blockBytes: 0,
        lengthBlocks: [],
        lengths,
        filled: 0,
        count: 0,
        argBytes: 0,
        views: [],
        viewBytes: 0,
      };
    }
    const spill = this.#spill;
    for (const arg of args) {
      if (spill.filled === spill.lengths.length) {
        if (spill.lengths.length < BLOCK / 4) {
          const grown = new Uint32Array(Math.min(BLOCK / 4, spill.lengths.length * 2));
          grown.set(spill.lengths);
          spill.lengths = grown;
        } else {
          spill.lengthBlocks.push(spill.lengths);
          spill.lengths = new Uint32Array(BLOCK / 4);
          spill.filled = 0;
        }
      }
      const length = arg.length;
      if (length >= SPILL_COPY_LIMIT) {
        spill.views.push(arg);
        spill.viewBytes += length;
        spill.lengths[spill.filled++] = VIEW;
        spill.count++;
        continue;
      }
      if (spill.used + length > spill.bytes.length) {
        // Grow the block being filled up to BLOCK, else start a new one (#unspill follows the same rule).
        const size = Math.min(BLOCK, Math.max(256, spill.used + length, spill.bytes.length * 2));
        if (spill.used + length <= size) {
          const grown = Buffer.allocUnsafe(size);
          spill.bytes.copy(grown, 0, 0, spill.used);
          spill.blockBytes += size - spill.bytes.length;
          spill.bytes = grown;
        } else {
          spill.blocks.push(spill.bytes);
          spill.bytes = Buffer.allocUnsafe(BLOCK);
          spill.blockBytes += BLOCK;
          spill.used = 0;
        }
      }
      arg.copy(spill.bytes, spill.used);
      spill.used += length;
      spill.argBytes += length;
      spill.lengths[spill.filled++] = length;
      spill.count++;
    }
    this.#args = [];
    // The bytes parsed from #buf are no longer referenced (its rest is copied at the next join).
    this.#consumed = 0;
  }

  /** The complete command: the spilled arguments (views into the blocks) and those of #buf. */
  #unspill(spill: Spill): Command {
    const command: Command = new Array(spill.count + this.#args.length);
    const blocks = [...spill.blocks, spill.bytes];
    const lengthBlocks = [...spill.lengthBlocks, spill.lengths];
    let block = 0;
    let offset = 0;
    let view = 0;
    for (let i = 0; i < spill.count; i++) {
      const length = (lengthBlocks[Math.floor(i / (BLOCK / 4))] as Uint32Array)[i % (BLOCK / 4)] as number;
      if (length === VIEW) {
        command[i] = spill.views[view++] as Buffer;
        continue;
      }
      if (offset + length > (blocks[block] as Buffer).length) {
        block++;
        offset = 0;
      }
      command[i] = (blocks[block] as Buffer).subarray(offset, offset + length);
      offset += length;
    }
    for (let i = 0; i < this.#args.length; i++) command[spill.count + i] = this.#args[i] as Buffer;
    this.#spill = undefined;
    return command;
  }

  #wait(bytes: number, byte: number): undefined {
    this.#needBytes = bytes;
    this.#needByte = byte;
    return undefined;
  }

  /** `*<n>\r\n`: the argument count, or undefined while incomplete. */
  #multibulkHeader(authRequired: boolean): number | undefined {
    const cr = this.#findCR();
    if (cr === -1) {
      if (this.#buf.length - this.#pos > this.limits.maxInlineLength) throw new ProtocolError('too big mbulk count string');
      return this.#wait(0, CR);
    }
    // Redis wants one byte after the \r and skips it unchecked.
    if (cr + 1 >= this.#buf.length) return this.#wait(cr + 2 - this.#pos, -1);
    const count = parseInteger(this.#buf, this.#pos + 1, cr);
    if (count === undefined || count > INT_MAX) throw new ProtocolError('invalid multibulk length');
    if (count > UNAUTHENTICATED_MULTIBULK && authRequired) throw new ProtocolError('unauthenticated multibulk length');
    this.#pos = cr + 2;
    return count;
  }

  /** `$<len>\r\n`: sets #bulkLength; false while incomplete. */
  #bulkHeader(authRequired: boolean): boolean {
    const cr = this.#findCR();
    if (cr === -1) {
      if (this.#buf.length - this.#pos > this.limits.maxInlineLength) throw new ProtocolError('too big bulk count string');
      this.#wait(0, CR);
      return false;
    }
    if (cr + 1 >= this.#buf.length) {
      this.#wait(cr + 2 - this.#pos, -1);
      return false;
    }
    const first = this.#buf[this.#pos] as number;
    if (first !== DOLLAR) throw new ProtocolError(`expected '$', got '${printable(first)}'`);
    const length = parseInteger(this.#buf, this.#pos + 1, cr);
    if (length === undefined || length < 0 || length > this.limits.maxBulkLength) throw new ProtocolError('invalid bulk length');
    if (length > UNAUTHENTICATED_BULK && authRequired) throw new ProtocolError('unauthenticated bulk length');
    this.#pos = cr + 2;
    this.#bulkLength = length;
    return true;
  }

  /** An inline request line, split into arguments; undefined while incomplete. */
  #inline(): Command | undefined {
    const lf = this.#find(LF);
    if (lf === -1) {
      if (this.#buf.length - this.#pos > this.limits.maxInlineLength) throw new ProtocolError('too big inline request');
      return this.#wait(0, LF);
    }
    // A line may end in \n alone; one \r before it is dropped too.
    const end = lf > this.#pos && this.#buf[lf - 1] === CR ? lf - 1 : lf;
    const args = splitArgs(this.#buf, this.#pos, end);
    if (args === undefined) throw new ProtocolError('unbalanced quotes in request');
    this.#pos = lf + 1;
    return args;
  }

  /** #find(CR) for header lines, which are short: a JS loop beats a native indexOf call there. */
  #findCR(): number {
    const buf = this.#buf;
    const end = Math.min(buf.length, this.#pos + 32);
    for (let i = this.#pos; i < end; i++) {
      const byte = buf[i];
      if (byte === CR) return i;
      if (byte === NUL) return -1;
    }
    return end === buf.length ? -1 : this.#find(CR);
  }

  /**
   * Index of `byte` from #pos, or -1. Redis searches with strchr, which stops at a NUL byte: a
   * NUL before the terminator means "not found yet", until the 64 KiB limit ends the wait.
   */
  #find(byte: number): number {
    const buf = this.#buf;
    const at = buf.indexOf(byte, this.#pos);
    if (at === -1) return -1;
    // Header lines are short: a byte loop up to the terminator beats a second indexOf that
    // would scan the rest of the buffer.
    for (let i = this.#pos; i < at; i++) if (buf[i] === NUL) return -1;
    return at;
  }
}

/** Redis's error formatter turns \r and \n into spaces; other bytes pass as they are. */
function printable(byte: number): string {
  return byte === CR || byte === LF ? ' ' : String.fromCharCode(byte);
}

/**
 * A decimal integer as Redis's string2ll accepts it: an optional '-', no '+', no leading zeros
 * (but "0"), no spaces, at most 20 characters, within a signed 64-bit range.
 */
export function parseInteger(buf: Buffer, start: number, end: number): number | undefined {
  const length = end - start;
  if (length <= 0 || length >= 21) return undefined;
  let i = start;
  const negative = buf[i] === 0x2d;
  if (negative) i++;
  if (i === end) return undefined;
  const first = buf[i] as number;
  if (first === 0x30) return length === 1 ? 0 : undefined;
  if (first < 0x31 || first > 0x39) return undefined;
  if (end - i >= 16) return parseLong(buf, start, end, i);
  // Up to 15 digits: exact in a double, no string needed (this runs twice per argument).
  let value = 0;
  for (let j = i; j < end; j++) {
    const digit = (buf[j] as number) - 0x30;
    if (digit < 0 || digit > 9) return undefined;
    value = value * 10 + digit;
  }
  return negative ? -value : value;
}

function parseLong(buf: Buffer, start: number, end: number, digits: number): number | undefined {
  for (let j = digits; j < end; j++) {
    const digit = buf[j] as number;
    if (digit < 0x30 || digit > 0x39) return undefined;
  }
  const big = BigInt(buf.toString('latin1', start, end));
  if (big > 9223372036854775807n || big < -9223372036854775808n) return undefined;
  return Number(big);
}

const isSpace = (byte: number): boolean => byte === 0x20 || (byte >= 0x09 && byte <= 0x0d);
const isHex = (byte: number): boolean => (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x46) || (byte >= 0x61 && byte <= 0x66);
const escapes: Record<number, number> = { 110: 0x0a, 114: 0x0d, 116: 0x09, 98: 0x08, 97: 0x07 };

/**
 * Split an inline request as redis-cli writes it (sds.c, sdssplitargs): tokens separated by
 * whitespace; "double quotes" with \xHH, \n, \r, \t, \b, \a and \<any> escapes; 'single quotes'
 * with only \' escaped; a closing quote must be followed by whitespace or the end of the line.
 * Returns undefined for unbalanced quotes.
 */
export function splitArgs(buf: Buffer, start: number, end: number): Command | undefined {
  const args: Buffer[] = [];
  let i = start;
  for (;;) {
    while (i < end && isSpace(buf[i] as number)) i++;
    if (i >= end) return args;
    const token: number[] = [];
    let quote: 0 | 0x22 | 0x27 = 0;
    let done = false;
    while (!done) {
      if (quote !== 0) {
        if (i >= end) return undefined;
        const c = buf[i] as number;
        const next = i + 1 < end ? (buf[i + 1] as number) : -1;
        if (c === 0x5c && quote === 0x22 && next === 0x78 && i + 3 < end && isHex(buf[i + 2] as number) && isHex(buf[i + 3] as number)) {
          token.push(Number.parseInt(buf.toString('latin1', i + 2, i + 4), 16));
          i += 3;
        } else if (c === 0x5c && quote === 0x22 && next !== -1) {
          token.push(escapes[next] ?? next);
          i++;
        } else if (c === 0x5c && quote === 0x27 && next === 0x27) {
          token.push(0x27);
          i++;
        } else if (c === quote) {
          // A closing quote must be followed by whitespace or the end of the line.
          if (next !== -1 && !isSpace(next)) return undefined;
          done = true;
        } else {
          token.push(c);
        }
        i++;
      } else {
        if (i >= end) break;
        const c = buf[i] as number;
        if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) done = true;
        else if (c === 0x22 || c === 0x27) quote = c;
        else token.push(c);
        i++;
      }
    }
    args.push(Buffer.from(token));
  }
}
