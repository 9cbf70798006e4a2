import { Crc64 } from '../crc64.js';
import { lzfCompress, lzfDecompress } from '../lzf.js';
import { RDB_VERSION } from '../rdb.js';

// FUNCTION DUMP's payload, as Redis 7.0's functionDumpCommand: for each library the RDB opcode
// FUNCTION2 (245) and its code as an RDB string (LZF-compressed past 20 bytes with rdbcompression),
// then the RDB version (2 bytes, little-endian) and the CRC-64 of all that (8 bytes, little-endian).
// FUNCTION RESTORE reads it back (also the FUNCTION opcode, 246, of 7.0's release candidates).

const FUNCTION = 246;
const FUNCTION2 = 245;

/** An RDB length (rdbSaveLen). */
function length(n: number): Buffer {
  if (n < 64) return Buffer.from([n]);
  if (n < 16384) return Buffer.from([0x40 | (n >> 8), n & 0xff]);
  const out = Buffer.alloc(5);
  out[0] = 0x80;
  out.writeUInt32BE(n, 1);
  return out;
}

/** An RDB string (rdbSaveRawString): LZF when asked, longer than 20 bytes and it saves 4 bytes or more. */
function string(data: Buffer, compression: boolean): Buffer {
  if (compression && data.length > 20) {
    const compressed = lzfCompress(data, data.length - 4);
    if (compressed !== undefined)
      return Buffer.concat([Buffer.from([0xc3]), length(compressed.length), length(data.length), Buffer.from(compressed)]);
  }
  return Buffer.concat([length(data.length), data]);
}

/** The payload of these libraries' codes. */
export function dumpFunctions(codes: readonly Buffer[], compression: boolean): Buffer {
  const parts: Buffer[] = [];
  for (const code of codes) parts.push(Buffer.from([FUNCTION2]), string(code, compression));
  parts.push(Buffer.from([RDB_VERSION & 0xff, (RDB_VERSION >> 8) & 0xff]));
  const body = Buffer.concat(parts);
  return Buffer.concat([body, new Crc64().update(body).digest()]);
}

/** Why a payload cannot be read: Redis's text (without "ERR "). */
export class PayloadError extends Error {}

/** The libraries' codes in a payload `verifyDumpPayload` accepted (rdbFunctionLoad's errors otherwise). */
export function readFunctions(payload: Buffer): Buffer[] {
  let pos = 0;
  const fail = (message: string): never => {
    throw new PayloadError(message);
  };
  const byte = (): number | undefined => (pos < payload.length ? (payload[pos++] as number) : undefined);
  /** rdbLoadLen; undefined when cut off; `encoded` for a special encoding (11xxxxxx). */
  const readLength = (): { n: number; encoded: boolean } | undefined => {
    const first = byte();
    if (first === undefined) return undefined;
    const kind = first >> 6;
    if (kind === 0) return { n: first & 0x3f, encoded: false };
    if (kind === 1) {
      const second = byte();
      return second === undefined ? undefined : { n: ((first & 0x3f) << 8) | second, encoded: false };
    }
    if (kind === 3) return { n: first & 0x3f, encoded: true };
    const size = first === 0x80 ? 4 : first === 0x81 ? 8 : 0;
    if (size === 0 || pos + size > payload.length) return undefined;
    const n = size === 4 ? payload.readUInt32BE(pos) : Number(payload.readBigUInt64BE(pos));
    pos += size;
    return { n, encoded: false };
  };
  /** rdbGenericLoadStringObject; undefined when it cannot be read. */
  const readString = (): Buffer | undefined => {
    const head = readLength();
    if (head === undefined) return undefined;
    if (!head.encoded) {
      if (pos + head.n > payload.length) return undefined;
      pos += head.n;
      return payload.subarray(pos - head.n, pos);
    }
    if (head.n <= 2) {
      const size = 1 << head.n;
      if (pos + size > payload.length) return undefined;
      const value = size === 1 ? payload.readInt8(pos) : size === 2 ? payload.readInt16LE(pos) : payload.readInt32LE(pos);
      pos += size;
      return Buffer.from(String(value));
    }
    if (head.n !== 3) return undefined;
    const compressed = readLength();
    const original = readLength();
    if (compressed === undefined || original === undefined || compressed.encoded || original.encoded) return undefined;
    if (pos + compressed.n > payload.length) return undefined;
    const data = lzfDecompress(payload.subarray(pos, pos + compressed.n), original.n);
    pos += compressed.n;
    return data === undefined || data.length !== original.n ? undefined : data;
  };
  const codes: Buffer[] = [];
  while (payload.length - pos > 10) {
    const type = byte();
    if (type === undefined) fail('can not read data type');
    if (type !== FUNCTION && type !== FUNCTION2) fail('given type is not a function');
    if (type === FUNCTION2) {
      codes.push(readString() ?? fail('Failed loading library payload'));
      continue;
    }
    // 7.0 rc1/rc2: name, engine, a description (if flagged), then the code without its shebang.
    const name = readString() ?? fail('Failed loading library name');
    const engine = readString() ?? fail('Failed loading engine name');
    const hasDescription = readLength();
    if (hasDescription === undefined || hasDescription.encoded) fail('Failed loading library description indicator');
    if (hasDescription?.n !== 0 && readString() === undefined) fail('Failed loading library description');
    const blob = readString() ?? fail('Failed loading library blob');
    codes.push(Buffer.concat([Buffer.from(`#!${engine.toString('latin1')} name=${name.toString('latin1')}\n`, 'latin1'), blob]));
  }
  return codes;
}
