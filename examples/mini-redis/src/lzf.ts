// LZF, the compression of strings in Redis's RDB files (Redis bundles Marc Lehmann's liblzf:
// lzf_c.c, lzf_d.c). Written here by hand: the npm lzf packages are unmaintained native addons or
// decompress only, and RDB needs both directions. The format: a control byte below 32 starts a run
// of ctrl+1 literal bytes; otherwise its top 3 bits are the match length - 2 (7: one more byte
// follows with the rest), its low 5 bits and the next byte the distance back - 1 (up to 8 KiB).

const HASH_BITS = 14;
const MAX_OFFSET = 1 << 13;
const MAX_MATCH = (1 << 8) + (1 << 3); // 264
const MAX_LITERAL = 32;

/** Where each 3-byte sequence was last seen. Shared by every call: a stale slot is checked byte by byte. */
const table = new Int32Array(1 << HASH_BITS);

const hashAt = (data: Uint8Array, i: number): number =>
  ((((data[i] as number) << 16) | ((data[i + 1] as number) << 8) | (data[i + 2] as number)) * 2654435761) >>> (32 - HASH_BITS);

/** The output buffer every call reuses (grown as needed): no allocation per string. */
let scratch = Buffer.allocUnsafe(64 * 1024);

/**
 * Compress `input`; undefined when the result would be longer than `limit` bytes (Redis stores
 * the string as it is then: it asks for at most `length - 4`). The result is a view of a buffer the
 * next call reuses: copy it (or write it out) before compressing again.
 */
export function lzfCompress(input: Uint8Array, limit: number): Buffer | undefined {
  const length = input.length;
  if (length === 0 || limit <= 0) return undefined;
  // Room for what one step may write past the limit before the loop notices.
  if (scratch.length < limit + 2 * MAX_LITERAL + 16) scratch = Buffer.allocUnsafe(limit + 2 * MAX_LITERAL + 16);
  const out = scratch;
  let op = 0;
  let literalStart = 0;
  let ip = 0;
  const flushLiterals = (end: number): void => {
    while (literalStart < end) {
      const run = Math.min(MAX_LITERAL, end - literalStart);
      out[op++] = run - 1;
      for (let k = 0; k < run; k++) out[op++] = input[literalStart + k] as number;
      literalStart += run;
    }
  };
  while (ip + 2 < length && op <= limit) {
    const slot = hashAt(input, ip);
    const ref = (table[slot] as number) - 1; // stored +1 so that 0 means empty
    table[slot] = ip + 1;
    const distance = ip - ref - 1;
    if (
      ref >= 0 &&
      ref < ip &&
      distance < MAX_OFFSET &&
      input[ref] === input[ip] &&
      input[ref + 1] === input[ip + 1] &&
      input[ref + 2] === input[ip + 2]
    ) {
      const most = Math.min(MAX_MATCH, length - ip);
      let matched = 3;
      while (matched < most && input[ref + matched] === input[ip + matched]) matched++;
      flushLiterals(ip);
      const code = matched - 2;
      if (code < 7) {
        out[op++] = (code << 5) | (distance >>> 8);
      } else {
        out[op++] = (7 << 5) | (distance >>> 8);
        out[op++] = code - 7;
      }
      out[op++] = distance & 0xff;
      ip += matched;
      literalStart = ip;
      // Remember the sequences the match covered, as liblzf does for its last two.
      if (ip + 2 < length) table[hashAt(input, ip - 1)] = ip;
    } else {
      ip++;
      if (ip - literalStart === MAX_LITERAL) flushLiterals(ip);
    }
  }
  if (op > limit) return undefined;
  flushLiterals(length);
  return op <= limit ? out.subarray(0, op) : undefined;
}

/**
 * How many bytes LZF data expands to, walking its control bytes without writing anything;
 * undefined when it is corrupt (a run or a reference past the input, a reference before the start).
 */
export function lzfLength(input: Uint8Array): number | undefined {
  let ip = 0;
  let op = 0;
  while (ip < input.length) {
    const ctrl = input[ip++] as number;
    if (ctrl < 32) {
      ip += ctrl + 1;
      op += ctrl + 1;
      if (ip > input.length) return undefined;
    } else {
      let matched = ctrl >>> 5;
      if (matched === 7) {
        if (ip >= input.length) return undefined;
        matched += input[ip++] as number;
      }
      if (ip >= input.length) return undefined;
      if (op - ((ctrl & 0x1f) << 8) - (input[ip++] as number) - 1 < 0) return undefined;
      op += matched + 2;
    }
  }
  return op;
}

/**
 * Decompress LZF data that must expand to exactly `length` bytes; undefined when it is corrupt.
 * The claimed length is checked against the data before anything is allocated: a payload that
 * claims hundreds of MB costs nothing but the walk over its own bytes.
 */
export function lzfDecompress(input: Uint8Array, length: number): Buffer | undefined {
  if (lzfLength(input) !== length) return undefined;
  const out = Buffer.allocUnsafe(length);
  let ip = 0;
  let op = 0;
  while (ip < input.length) {
    const ctrl = input[ip++] as number;
    if (ctrl < 32) {
      const run = ctrl + 1;
      if (op + run > length || ip + run > input.length) return undefined;
      for (let k = 0; k < run; k++) out[op++] = input[ip++] as number;
    } else {
      let matched = ctrl >>> 5;
      if (matched === 7) {
        if (ip >= input.length) return undefined;
        matched += input[ip++] as number;
      }
      if (ip >= input.length) return undefined;
      const ref = op - ((ctrl & 0x1f) << 8) - (input[ip++] as number) - 1;
      matched += 2;
      if (ref < 0 || op + matched > length) return undefined;
      for (let k = 0; k < matched; k++) out[op++] = out[ref + k] as number;
    }
  }
  return op === length ? out : undefined;
}
