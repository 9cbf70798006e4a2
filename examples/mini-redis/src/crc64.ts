// CRC-64/Jones, the checksum at the end of Redis's RDB files and DUMP payloads (Redis's crc64.c:
// polynomial 0xad93d23594c935a9, bits reflected in and out, initial value 0, no final xor; check value
// crc64("123456789") = 0xe9c6d914c4b8d9ca). Written here by hand because no maintained npm package
// computes this variant (the crc64 packages there do ECMA-182 or ISO, which Redis does not use).
// A 64-bit CRC in two 32-bit halves: plain numbers stay fast where BigInt would not.

/** 0xad93d23594c935a9 with its bits reversed (the reflected form a right-shifting table uses). */
const POLY_HI = 0x95ac9329;
const POLY_LO = 0xac4bc9b5;

/** The byte-at-a-time table of the reflected polynomial, high and low halves. */
const TABLE_HI = new Uint32Array(256);
const TABLE_LO = new Uint32Array(256);
for (let n = 0; n < 256; n++) {
  let hi = 0;
  let lo = n;
  for (let bit = 0; bit < 8; bit++) {
    const carry = lo & 1;
    lo = ((lo >>> 1) | ((hi & 1) << 31)) >>> 0;
    hi >>>= 1;
    if (carry) {
      hi = (hi ^ POLY_HI) >>> 0;
      lo = (lo ^ POLY_LO) >>> 0;
    }
  }
  TABLE_HI[n] = hi;
  TABLE_LO[n] = lo;
}

/** A running CRC-64: `update` with each chunk, then `digest()`. */
export class Crc64 {
  #hi = 0;
  #lo = 0;

  update(data: Uint8Array, start = 0, end = data.length): this {
    let hi = this.#hi;
    let lo = this.#lo;
    for (let i = start; i < end; i++) {
      const index = (lo ^ (data[i] as number)) & 0xff;
      lo = ((lo >>> 8) | (hi << 24)) ^ (TABLE_LO[index] as number);
      hi = (hi >>> 8) ^ (TABLE_HI[index] as number);
    }
    this.#hi = hi >>> 0;
    this.#lo = lo >>> 0;
    return this;
  }

  /** The checksum as Redis stores it: 8 bytes, little-endian. */
  digest(): Buffer {
    const out = Buffer.allocUnsafe(8);
    out.writeUInt32LE(this.#lo, 0);
    out.writeUInt32LE(this.#hi, 4);
    return out;
  }

  /** The checksum as a number (for messages): an unsigned 64-bit BigInt. */
  get value(): bigint {
    return (BigInt(this.#hi) << 32n) | BigInt(this.#lo);
  }
}

/** CRC-64/Jones of `data`, as Redis's `crc64(0, data, len)`: 8 bytes, little-endian. */
export const crc64 = (data: Uint8Array): Buffer => new Crc64().update(data).digest();
