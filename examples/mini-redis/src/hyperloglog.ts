// Redis 7.0's HyperLogLog (hyperloglog.c), byte for byte: an HLL is a plain string value, so its
// bytes are what GET, DUMP, the RDB file, the AOF and a replica see, and what a client may SET back
// (or what a real Redis made). The exact bytes are part of the contract, so they are built here as
// Redis builds them: no npm library reproduces Redis's format (its MurmurHash64A seed, its 16-byte
// header with the cached cardinality, its dense 6-bit registers and its sparse ZERO/XZERO/VAL
// opcodes with Redis's exact split-and-merge rules, and the Ertl estimator of Redis 7), and a
// library that estimated well but laid out bytes its own way would not be Redis.
//
// The layout (see hyperloglog.c's header comment for the long version):
//   "HYLL" | encoding (0 dense, 1 sparse) | 3 unused bytes | cached cardinality (8 bytes, little
//   endian; card[7] & 0x80 set: not valid) | registers.
//   Dense: 16384 registers of 6 bits, packed from each byte's least significant bit (12288 bytes).
//   Sparse: opcodes ZERO 00xxxxxx (1–64 zero registers), XZERO 01xxxxxx yyyyyyyy (1–16384 zero
//   registers), VAL 1vvvvvxx (1–4 registers of value 1–32).
//
// A sparse value is edited in place in Redis (an sds string): the functions below work on an `Sds`,
// a Buffer with room to grow and Redis's implicit terminator byte after the content, because a
// corrupted value can make Redis read (and even write) that byte, and the result shows in the bytes.

/** The 16-byte header. */
export const HLL_HDR_SIZE = 16;
/** 2^14 registers. */
export const HLL_REGISTERS = 16384;
const HLL_P_MASK = HLL_REGISTERS - 1;
/** The length of a dense HLL: header and 16384 × 6 bits. */
export const HLL_DENSE_SIZE = HLL_HDR_SIZE + (HLL_REGISTERS * 6) / 8;
export const HLL_DENSE = 0;
export const HLL_SPARSE = 1;
const HLL_MAX_ENCODING = 1;
/** 64 − P + 1: the longest run a 64-bit hash gives (reghisto[HLL_Q + 1] in hllCount). */
const HLL_Q = 50;
const SPARSE_VAL_MAX_VALUE = 32;
const SPARSE_VAL_MAX_LEN = 4;
const SPARSE_ZERO_MAX_LEN = 64;
/** 0.5 / ln(2): the estimator's α for m → ∞ (Redis writes 0.721347520444481703680: the same double). */
const HLL_ALPHA_INF = 0.7213475204444817;
/** The byte offset of card[7], whose most significant bit marks the cached cardinality stale. */
const CARD_MSB = 15;

/** What PFADD and PFCOUNT answer for a value that passes the header checks but does not decode. */
export const INVALIDOBJ = 'INVALIDOBJ Corrupted HLL object detected';
/** What they answer for a string that is not an HLL. */
export const NOT_HLL = 'WRONGTYPE Key is not a valid HyperLogLog string value.';

// ---- The sds emulation ------------------------------------------------------------------------

/**
 * The byte after the content of values whose terminator is not 0: Redis's sparse editing can, on a
 * corrupted value ending in half an XZERO, leave a non-zero byte there, and the next command reads
 * it. Kept by the stored Buffer, so it follows the value as Redis's sds does (RENAME keeps it; a
 * SET, APPEND or COPY makes a new Buffer, as Redis makes a new sds with a 0 terminator).
 */
const terminators = new WeakMap<Buffer, number>();

/** A string being edited, as an sds: `len` bytes of content in `buf`, `buf[len]` the terminator. */
export class Sds {
  buf: Buffer;
  len: number;

  constructor(buf: Buffer, len: number) {
    this.buf = buf;
    this.len = len;
  }

  /** A copy of a stored value to edit (room for a few more bytes, and its terminator). */
  static of(data: Buffer): Sds {
    const buf = Buffer.alloc(data.length + 16);
    data.copy(buf);
    buf[data.length] = terminators.get(data) ?? 0;
    return new Sds(buf, data.length);
  }

  /** The encoding byte. */
  get encoding(): number {
    return this.buf[4] as number;
  }

  /** sdsMakeRoomFor: at least `extra` more bytes after the content and its terminator. */
  reserve(extra: number): void {
    if (this.buf.length >= this.len + extra + 8) return;
    const buf = Buffer.alloc(Math.max(this.buf.length * 2, this.len + extra + 8));
    this.buf.copy(buf);
    this.buf = buf;
  }

  /** sdsIncrLen: the content grows or shrinks by `delta`, and the byte after it becomes 0. */
  incrLen(delta: number): void {
    this.len += delta;
    this.buf[this.len] = 0;
  }

  /** The content as a value to store (a new Buffer: a stored value is never edited in place). */
  toValue(): Buffer {
    const value = Buffer.from(this.buf.subarray(0, this.len));
    const terminator = this.buf[this.len] ?? 0;
    if (terminator !== 0) terminators.set(value, terminator);
    return value;
  }
}

/** The byte at `i` of a stored value, the terminator Redis would read just past its end. */
const byteAt = (data: Buffer, i: number): number => (i < data.length ? (data[i] as number) : (terminators.get(data) ?? 0));

// ---- Validation and creation --------------------------------------------------------------------

/** isHLLObjectOrReply's checks on a string: the magic, a known encoding, a dense value's exact length. */
export function isHll(data: Buffer): boolean {
  if (data.length < HLL_HDR_SIZE) return false;
  if (data[0] !== 0x48 || data[1] !== 0x59 || data[2] !== 0x4c || data[3] !== 0x4c) return false; // "HYLL"
  const encoding = data[4] as number;
  if (encoding > HLL_MAX_ENCODING) return false;
  return encoding !== HLL_DENSE || data.length === HLL_DENSE_SIZE;
}

/** createHLLObject: an empty sparse HLL, one XZERO of 16384 registers, cardinality 0 (valid). */
export function createHll(): Sds {
  const buf = Buffer.alloc(HLL_HDR_SIZE + 2 + 16);
  buf.write('HYLL', 0, 'latin1');
  buf[4] = HLL_SPARSE;
  buf[HLL_HDR_SIZE] = 0x40 | ((HLL_REGISTERS - 1) >> 8);
  buf[HLL_HDR_SIZE + 1] = (HLL_REGISTERS - 1) & 0xff;
  return new Sds(buf, HLL_HDR_SIZE + 2);
}

/** Mark the cached cardinality stale (HLL_INVALIDATE_CACHE). */
export function invalidateCache(s: Sds): void {
  s.buf[CARD_MSB] = (s.buf[CARD_MSB] as number) | 0x80;
}

/** The cached cardinality, if valid (its 64 bits, unsigned: card[7]'s top bit is then clear). */
export function cachedCardinality(data: Buffer): bigint | undefined {
  if (((data[CARD_MSB] as number) & 0x80) !== 0) return undefined;
  return data.readBigUInt64LE(8);
}

/** Cache a cardinality in the header (the command then stores the value again). */
export function setCachedCardinality(s: Sds, card: bigint): void {
  s.buf.writeBigUInt64LE(card, 8);
}

// ---- MurmurHash64A ------------------------------------------------------------------------------
//
// Redis's hash, endian neutral, seed 0xadc83b19. Its 64-bit products modulo 2^64 are computed on two
// 32-bit halves (BigInt allocates for every operation: several times slower on a PFADD of many
// elements). The constant m = 0xc6a4a7935bd1e995.

const M_HI = 0xc6a4a793;
const M_LO = 0x5bd1e995;
const SEED = 0xadc83b19;
/** The result of mulM, as two halves (no allocation per multiplication). */
let mulHi = 0;
let mulLo = 0;

/** (hi:lo) × m mod 2^64 into mulHi:mulLo. */
function mulM(hi: number, lo: number): void {
  // The high 32 bits of lo × M_LO, exactly: lo in two 16-bit halves, each product < 2^47.
  const low = (lo & 0xffff) * M_LO;
  const high = (lo >>> 16) * M_LO;
  const carry = Math.floor((high + Math.floor(low / 65536)) / 65536);
  // The cross products count for their low 32 bits only (hi × M_HI overflows away).
  mulHi = (carry + Math.imul(hi, M_LO) + Math.imul(lo, M_HI)) >>> 0;
  mulLo = Math.imul(lo, M_LO) >>> 0;
}

/** The hash's high and low 32 bits, set by murmurHash64A. */
export const hash = { hi: 0, lo: 0 };

/** MurmurHash64A(key, len, 0xadc83b19) into `hash`. */
export function murmurHash64A(key: Uint8Array): void {
  const len = key.length;
  // h = seed ^ (len * m)
  mulM(0, len >>> 0);
  let hHi = mulHi;
  let hLo = (mulLo ^ SEED) >>> 0;
  const blocks = len - (len & 7);
  let i = 0;
  for (; i < blocks; i += 8) {
    const kLo =
      ((key[i] as number) | ((key[i + 1] as number) << 8) | ((key[i + 2] as number) << 16) | ((key[i + 3] as number) << 24)) >>> 0;
    const kHi =
      ((key[i + 4] as number) | ((key[i + 5] as number) << 8) | ((key[i + 6] as number) << 16) | ((key[i + 7] as number) << 24)) >>> 0;
    mulM(kHi, kLo); // k *= m
    mulM(mulHi, (mulLo ^ (mulHi >>> 15)) >>> 0); // k ^= k >> 47; k *= m
    hHi = (hHi ^ mulHi) >>> 0; // h ^= k
    hLo = (hLo ^ mulLo) >>> 0;
    mulM(hHi, hLo); // h *= m
    hHi = mulHi;
    hLo = mulLo;
  }
  const rest = len & 7;
  if (rest !== 0) {
    // The tail, byte j at bit 8j: bytes 4–6 in the high half, 0–3 in the low one.
    for (let j = rest - 1; j >= 4; j--) hHi = (hHi ^ ((key[i + j] as number) << (8 * (j - 4)))) >>> 0;
    for (let j = Math.min(rest, 4) - 1; j >= 0; j--) hLo = (hLo ^ ((key[i + j] as number) << (8 * j))) >>> 0;
    mulM(hHi, hLo);
    hHi = mulHi;
    hLo = mulLo;
  }
  // h ^= h >> r; h *= m; h ^= h >> r
  mulM(hHi, (hLo ^ (hHi >>> 15)) >>> 0);
  hash.hi = mulHi;
  hash.lo = (mulLo ^ (mulHi >>> 15)) >>> 0;
}

/** hllPatLen's register index (set by patLen). */
let patIndex = 0;

/**
 * hllPatLen: the register an element goes to (the hash's low 14 bits, into `patIndex`) and the
 * length of the 000…1 pattern in the 50 bits above them (1 to 51).
 */
function patLen(element: Uint8Array): number {
  murmurHash64A(element);
  patIndex = hash.lo & HLL_P_MASK;
  const low = hash.lo >>> 14; // bits 14–31: 18 bits
  if (low !== 0) return 32 - Math.clz32(low & -low);
  if (hash.hi !== 0) return 18 + 32 - Math.clz32(hash.hi & -hash.hi);
  return HLL_Q + 1;
}

// ---- Dense representation -----------------------------------------------------------------------

/** Register `index` of a dense value whose registers start at `offset`. */
export function denseGet(buf: Uint8Array, offset: number, index: number): number {
  const bit = index * 6;
  const byte = offset + (bit >>> 3);
  const fb = bit & 7;
  return (((buf[byte] as number) >> fb) | ((buf[byte + 1] ?? 0) << (8 - fb))) & 63;
}

/** Set register `index` of a dense value (the value already in 0–63). */
function denseSetRegister(buf: Uint8Array, offset: number, index: number, value: number): void {
  const bit = index * 6;
  const byte = offset + (bit >>> 3);
  const fb = bit & 7;
  buf[byte] = ((buf[byte] as number) & ~(63 << fb)) | ((value << fb) & 0xff);
  if (fb > 2) buf[byte + 1] = ((buf[byte + 1] as number) & ~(63 >> (8 - fb))) | (value >> (8 - fb));
}

/** hllDenseSet: raise register `index` to `count` if lower; 1 if it changed. */
function denseSet(buf: Uint8Array, index: number, count: number): 0 | 1 {
  if (count <= denseGet(buf, HLL_HDR_SIZE, index)) return 0;
  denseSetRegister(buf, HLL_HDR_SIZE, index, count);
  return 1;
}

// ---- Sparse representation ----------------------------------------------------------------------

const isZero = (op: number): boolean => (op & 0xc0) === 0;
const isXzero = (op: number): boolean => (op & 0xc0) === 0x40;
const isVal = (op: number): boolean => (op & 0x80) !== 0;
const zeroLen = (op: number): number => (op & 0x3f) + 1;
const xzeroLen = (op: number, next: number): number => (((op & 0x3f) << 8) | next) + 1;
const valValue = (op: number): number => ((op >> 2) & 0x1f) + 1;
const valLen = (op: number): number => (op & 3) + 1;
const valOp = (value: number, len: number): number => (((value - 1) << 2) | (len - 1) | 0x80) & 0xff;

// VAL_OVERFLOW: a VAL opcode that runs past register 16383 makes the value corrupted at once, in
// hllSparseToDense and hllMerge. Redis 7.0.15 as released only stopped there and then checked that
// 16384 registers were seen, so trailing VALs after exactly 16384 registers went unnoticed; the fix
// of CVE-2025-32023 (Redis 7.2.10, 7.4.5; backported to the Debian 7.0.15 packages, the Redis
// mini-redis is compared with) rejects them, as here. Every other overrun ends with a count that is
// not 16384 either way (no 32-bit wrap here: a JavaScript number stays exact).

/**
 * hllSparseToDense: the value becomes dense (header copied: the cached cardinality stays). False,
 * and the value unchanged, when the opcodes do not cover exactly 16384 registers.
 */
export function sparseToDense(s: Sds): boolean {
  if (s.encoding === HLL_DENSE) return true;
  const dense = Buffer.alloc(HLL_DENSE_SIZE + 8);
  s.buf.copy(dense, 0, 0, HLL_HDR_SIZE);
  dense[4] = HLL_DENSE;
  const { buf } = s;
  let idx = 0;
  let p = HLL_HDR_SIZE;
  while (p < s.len) {
    const op = buf[p] as number;
    if (isZero(op)) {
      idx += zeroLen(op);
      p++;
    } else if (isXzero(op)) {
      idx += xzeroLen(op, buf[p + 1] as number);
      p += 2;
    } else {
      let runlen = valLen(op);
      const value = valValue(op);
      if (runlen + idx > HLL_REGISTERS) return false; // overflow (see VAL_OVERFLOW)
      while (runlen-- > 0) denseSetRegister(dense, HLL_HDR_SIZE, idx++, value);
      p++;
    }
  }
  if (idx !== HLL_REGISTERS) return false;
  s.buf = dense;
  s.len = HLL_DENSE_SIZE;
  return true;
}

/**
 * hllSparseSet: raise register `index` to `count` in a sparse value, splitting the opcode that
 * covers it and merging equal neighbours as Redis does; the value turns dense when the count does
 * not fit a VAL opcode or the value would pass `maxBytes` (hll-sparse-max-bytes). 1: changed, 0:
 * not, -1: corrupted.
 */
function sparseSet(s: Sds, index: number, count: number, maxBytes: number): -1 | 0 | 1 {
  if (count > SPARSE_VAL_MAX_VALUE) return promote(s, index, count);
  s.reserve(3);
  // Step 1: find the opcode covering the register (`first`: the first register it covers).
  let buf = s.buf;
  const sparse = HLL_HDR_SIZE;
  let end = s.len;
  let p = sparse;
  let first = 0;
  let prev = -1;
  let span = 0;
  while (p < end) {
    const op = buf[p] as number;
    let oplen = 1;
    if (isZero(op)) span = zeroLen(op);
    else if (isVal(op)) span = valLen(op);
    else {
      span = xzeroLen(op, buf[p + 1] as number);
      oplen = 2;
    }
    if (index <= first + span - 1) break;
    prev = p;
    p += oplen;
    first += span;
  }
  if (span === 0 || p >= end) return -1;
  const op = buf[p] as number;
  let next = isXzero(op) ? p + 2 : p + 1;
  if (next >= end) next = -1;
  const zero = isZero(op);
  const xzero = isXzero(op);
  const runlen = zero ? zeroLen(op) : xzero ? xzeroLen(op, buf[p + 1] as number) : valLen(op);

  // Step 2: a VAL already as high: nothing to do; a VAL or ZERO of one register: rewrite it.
  let rewritten = false;
  if (!zero && !xzero) {
    if (valValue(op) >= count) return 0;
    if (runlen === 1) {
      buf[p] = valOp(count, 1);
      rewritten = true;
    }
  }
  if (zero && runlen === 1) {
    buf[p] = valOp(count, 1);
    rewritten = true;
  }
  if (!rewritten) {
    // Otherwise split the opcode in up to three (XZERO-VAL-XZERO at worst: 5 bytes).
    const seq: number[] = [];
    const last = first + span - 1;
    const zeros = (len: number): void => {
      if (len > SPARSE_ZERO_MAX_LEN) seq.push(0x40 | ((len - 1) >> 8), (len - 1) & 0xff);
      else seq.push(len - 1);
    };
    if (zero || xzero) {
      if (index !== first) zeros(index - first);
      seq.push(valOp(count, 1));
      if (index !== last) zeros(last - index);
    } else {
      const current = valValue(op);
      if (index !== first) seq.push(valOp(current, index - first));
      seq.push(valOp(count, 1));
      if (index !== last) seq.push(valOp(current, last - index));
    }
    // Step 3: put the sequence in place of the opcode, moving what follows.
    const delta = seq.length - (xzero ? 2 : 1);
    if (delta > 0 && s.len + delta > maxBytes) return promote(s, index, count);
    if (delta !== 0 && next !== -1) buf.copyWithin(next + delta, next, end);
    s.incrLen(delta);
    for (const [j, byte] of seq.entries()) buf[p + j] = byte;
    end += delta;
  }

  // Step 4: merge adjacent VALs of the same value (up to 5 opcodes from the one before).
  buf = s.buf;
  p = prev !== -1 ? prev : sparse;
  let scan = 5;
  while (p < end && scan-- !== 0) {
    const here = buf[p] as number;
    if (isXzero(here)) {
      p += 2;
      continue;
    }
    if (isZero(here)) {
      p++;
      continue;
    }
    const right = buf[p + 1] as number;
    if (p + 1 < end && isVal(right)) {
      const value = valValue(here);
      if (value === valValue(right)) {
        const len = valLen(here) + valLen(right);
        if (len <= SPARSE_VAL_MAX_LEN) {
          buf[p + 1] = valOp(value, len);
          buf.copyWithin(p, p + 1, end + 1); // memmove(p, p+1, end-p): the terminator comes along
          s.incrLen(-1);
          end--;
          continue; // try the merged opcode with the next one
        }
      }
    }
    p++;
  }
  invalidateCache(s);
  return 1;
}

/** The sparse value turns dense, then the register is set there (-1: the sparse value did not decode). */
function promote(s: Sds, index: number, count: number): -1 | 1 {
  if (!sparseToDense(s)) return -1;
  // Redis asserts this changed the register: a register needed raising (so PFADD propagates).
  denseSet(s.buf, index, count);
  return 1;
}

// ---- Adding, counting, merging ------------------------------------------------------------------

/** hllAdd: add one element. 1: a register changed, 0: none did, -1: the value is corrupted. */
export function hllAdd(s: Sds, element: Uint8Array, maxBytes: number): -1 | 0 | 1 {
  const count = patLen(element);
  const encoding = s.encoding;
  if (encoding === HLL_DENSE) return denseSet(s.buf, patIndex, count);
  if (encoding === HLL_SPARSE) return sparseSet(s, patIndex, count, maxBytes);
  return -1;
}

/** hllSigma (Otmar Ertl, "New cardinality estimation algorithms for HyperLogLog sketches"). */
function sigma(x: number): number {
  if (x === 1) return Number.POSITIVE_INFINITY;
  let zPrime: number;
  let y = 1;
  let z = x;
  do {
    x *= x;
    zPrime = z;
    z += x * y;
    y += y;
  } while (zPrime !== z);
  return z;
}

/** hllTau (same paper). `pow(1 - x, 2)` is x*x in Redis's build (GCC folds it). */
function tau(x: number): number {
  if (x === 0 || x === 1) return 0;
  let zPrime: number;
  let y = 1;
  let z = 1 - x;
  do {
    x = Math.sqrt(x);
    zPrime = z;
    y *= 0.5;
    const d = 1 - x;
    z -= d * d * y;
  } while (zPrime !== z);
  return z / 3;
}

/** 2^63: llroundl's overflow (and infinity) gives LLONG_MIN, which Redis's cast makes 2^63. */
const TWO_63 = 2 ** 63;

/** hllCount's estimate from the histogram of register values (64 slots). */
function estimate(histogram: Float64Array): bigint {
  const m = HLL_REGISTERS;
  let z = m * tau((m - (histogram[HLL_Q + 1] as number)) / m);
  for (let j = HLL_Q; j >= 1; --j) {
    z += histogram[j] as number;
    z *= 0.5;
  }
  z += m * sigma((histogram[0] as number) / m);
  const e = (HLL_ALPHA_INF * m * m) / z;
  // llroundl then a cast to uint64_t: out of range (or infinite), the x86-64 result is 2^63.
  if (!(e < TWO_63)) return 1n << 63n;
  return BigInt(Math.round(e));
}

/** The histogram of a dense value's registers. */
function denseHistogram(buf: Uint8Array, histogram: Float64Array): void {
  // 4 registers in 3 bytes at a time.
  for (let r = HLL_HDR_SIZE; r < HLL_DENSE_SIZE; r += 3) {
    const b0 = buf[r] as number;
    const b1 = buf[r + 1] as number;
    const b2 = buf[r + 2] as number;
    (histogram[b0 & 63] as number)++;
    (histogram[((b0 >> 6) | (b1 << 2)) & 63] as number)++;
    (histogram[((b1 >> 4) | (b2 << 4)) & 63] as number)++;
    (histogram[b2 >> 2] as number)++;
  }
}

/**
 * hllCount of a stored value (dense or sparse, already checked by isHll). Undefined when a sparse
 * value's opcodes do not cover exactly 16384 registers.
 */
export function hllCount(data: Buffer): bigint | undefined {
  const histogram = new Float64Array(64);
  if (data[4] === HLL_DENSE) {
    denseHistogram(data, histogram);
    return estimate(histogram);
  }
  let idx = 0;
  let p = HLL_HDR_SIZE;
  while (p < data.length) {
    const op = data[p] as number;
    if (isZero(op)) {
      const runlen = zeroLen(op);
      idx += runlen;
      (histogram[0] as number) += runlen;
      p++;
    } else if (isXzero(op)) {
      const runlen = xzeroLen(op, byteAt(data, p + 1));
      idx += runlen;
      (histogram[0] as number) += runlen;
      p += 2;
    } else {
      const runlen = valLen(op);
      idx += runlen;
      (histogram[valValue(op)] as number) += runlen;
      p++;
    }
  }
  if (idx !== HLL_REGISTERS) return undefined;
  return estimate(histogram);
}

/** hllCount of raw registers, one byte each (PFCOUNT of several keys). */
export function rawCount(registers: Uint8Array): bigint {
  const histogram = new Float64Array(64);
  for (let i = 0; i < HLL_REGISTERS; i++) (histogram[registers[i] as number] as number)++;
  return estimate(histogram);
}

/**
 * hllMerge: max[i] = MAX(max[i], register i) over a stored value (checked by isHll). False when a
 * sparse value does not cover exactly 16384 registers (max may then be partly merged).
 */
export function hllMerge(max: Uint8Array, data: Buffer): boolean {
  if (data[4] === HLL_DENSE) {
    for (let i = 0; i < HLL_REGISTERS; i++) {
      const value = denseGet(data, HLL_HDR_SIZE, i);
      if (value > (max[i] as number)) max[i] = value;
    }
    return true;
  }
  let i = 0;
  let p = HLL_HDR_SIZE;
  while (p < data.length) {
    const op = data[p] as number;
    if (isZero(op)) {
      i += zeroLen(op);
      p++;
    } else if (isXzero(op)) {
      i += xzeroLen(op, byteAt(data, p + 1));
      p += 2;
    } else {
      let runlen = valLen(op);
      const value = valValue(op);
      if (runlen + i > HLL_REGISTERS) return false; // overflow (see VAL_OVERFLOW)
      while (runlen-- > 0) {
        if (value > (max[i] as number)) max[i] = value;
        i++;
      }
      p++;
    }
  }
  return i === HLL_REGISTERS;
}

/**
 * PFMERGE's last step: raise each register of `s` (the destination) to max[i], sparse registers
 * through hllSparseSet (so the destination may turn dense midway, as in Redis).
 */
export function setRegisters(s: Sds, max: Uint8Array, maxBytes: number): void {
  for (let j = 0; j < HLL_REGISTERS; j++) {
    const value = max[j] as number;
    if (value === 0) continue;
    if (s.encoding === HLL_DENSE) denseSet(s.buf, j, value);
    else sparseSet(s, j, value, maxBytes);
  }
}

// ---- PFDEBUG, PFSELFTEST ------------------------------------------------------------------------

/** PFDEBUG GETREG: the 16384 registers of a dense value. */
export function registersOf(data: Buffer): number[] {
  return Array.from({ length: HLL_REGISTERS }, (_, i) => denseGet(data, HLL_HDR_SIZE, i));
}

/** PFDEBUG DECODE: a sparse value's opcodes as `Z:16384 v:2,1 z:19`. */
export function decodeSparse(data: Buffer): string {
  const words: string[] = [];
  let p = HLL_HDR_SIZE;
  while (p < data.length) {
    const op = data[p] as number;
    if (isZero(op)) {
      words.push(`z:${zeroLen(op)}`);
      p++;
    } else if (isXzero(op)) {
      words.push(`Z:${xzeroLen(op, byteAt(data, p + 1))}`);
      p += 2;
    } else {
      words.push(`v:${valValue(op)},${valLen(op)}`);
      p++;
    }
  }
  return words.join(' ');
}

/**
 * PFSELFTEST: the dense registers read back what was written (1000 rounds of random values), and
 * 10 million elements added to a dense and a sparse HLL agree, within six standard errors of the
 * true count at each power of ten. An error text ("TESTFAILED …") or undefined when it passed.
 */
export function selfTest(maxBytes: number): string | undefined {
  const dense = Buffer.alloc(HLL_DENSE_SIZE + 1);
  const bytes = new Uint8Array(HLL_REGISTERS);
  for (let round = 0; round < 1000; round++) {
    for (let i = 0; i < HLL_REGISTERS; i++) {
      const r = Math.floor(Math.random() * 64);
      bytes[i] = r;
      denseSetRegister(dense, HLL_HDR_SIZE, i, r);
    }
    for (let i = 0; i < HLL_REGISTERS; i++) {
      const value = denseGet(dense, HLL_HDR_SIZE, i);
      if (value !== bytes[i]) return `TESTFAILED Register ${i} should be ${bytes[i]} but is ${value}`;
    }
  }
  dense.fill(0, HLL_HDR_SIZE);
  dense.write('HYLL', 0, 'latin1');
  const sparse = createHll();
  const relerr = 1.04 / Math.sqrt(HLL_REGISTERS);
  let checkpoint = 1;
  const seedHi = Math.floor(Math.random() * 2 ** 32);
  const seedLo = Math.floor(Math.random() * 2 ** 32);
  const element = Buffer.alloc(8);
  for (let j = 1; j <= 10_000_000; j++) {
    element.writeUInt32LE((j ^ seedLo) >>> 0, 0);
    element.writeUInt32LE(seedHi, 4);
    // One hash for both (Redis hashes twice: same registers, half the time here).
    const count = patLen(element);
    denseSet(dense, patIndex, count);
    if (sparse.encoding === HLL_DENSE) denseSet(sparse.buf, patIndex, count);
    else sparseSet(sparse, patIndex, count, maxBytes);
    if (j !== checkpoint) continue;
    if (j < maxBytes / 2 && sparse.encoding !== HLL_SPARSE) return 'TESTFAILED sparse encoding not used';
    const denseCard = hllCount(dense.subarray(0, HLL_DENSE_SIZE));
    if (denseCard !== hllCount(sparse.toValue())) return 'TESTFAILED dense/sparse disagree';
    const abserr = Math.abs(checkpoint - Number(denseCard));
    const maxerr = j === 10 ? 1 : Math.ceil(relerr * 6 * checkpoint);
    if (abserr > maxerr) return `TESTFAILED Too big error. card:${checkpoint} abserr:${abserr}`;
    checkpoint *= 10;
  }
  return undefined;
}
