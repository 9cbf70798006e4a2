import { RespError } from './reply.js';

// Arguments as Redis reads them: integers with string2ll (64-bit, written exactly), floats with
// string2d (strtod on the whole argument). Shared by the built-ins and by applications (mini-redis).

export const NOT_INTEGER = 'ERR value is not an integer or out of range';
export const NOT_FLOAT = 'ERR value is not a valid float';
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** Redis's string2ll: the 64-bit integer an argument spells (no spaces, no '+', no leading zeros, no `-0`), or undefined. */
export function parseInt64(arg: Buffer): bigint | undefined {
  if (arg.length === 0 || arg.length > 20) return undefined;
  const text = arg.toString('latin1');
  if (!/^(0|-?[1-9][0-9]*)$/.test(text)) return undefined;
  const value = BigInt(text);
  return value >= INT64_MIN && value <= INT64_MAX ? value : undefined;
}

/** A 64-bit integer argument, or throw Redis's error for it (`message`, by default `value is not an integer or out of range`). */
export function int64Arg(arg: Buffer | undefined, message = NOT_INTEGER): bigint {
  const value = arg === undefined ? undefined : parseInt64(arg);
  if (value === undefined) throw new RespError(message);
  return value;
}

/** An integer argument as a JavaScript number (exact within ±2^53, else Redis's error), as Redis parses it. */
export function integerArg(arg: Buffer | undefined, message = NOT_INTEGER): number {
  const value = Number(int64Arg(arg, message));
  if (!Number.isSafeInteger(value)) throw new RespError(message);
  return value;
}

/** C's strtod on a whole string: decimal, `inf`/`infinity`, `nan`, hex; undefined if it is not a number. */
export function parseNumber(text: string): number | undefined {
  if (/^[+-]?(inf|infinity)$/i.test(text)) return text.startsWith('-') ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY;
  if (/^[+-]?nan$/i.test(text)) return Number.NaN;
  if (/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text)) return Number(text);
  const hex = /^([+-]?)0[xX]([\da-fA-F]*)(?:\.([\da-fA-F]*))?(?:[pP]([+-]?\d+))?$/.exec(text);
  if (hex && (hex[2] || hex[3])) {
    const [, sign, whole = '', fraction = '', power = '0'] = hex;
    const value = Number.parseInt(whole + fraction || '0', 16) * 2 ** (Number(power) - 4 * fraction.length);
    return sign === '-' ? -value : value;
  }
  return undefined;
}

/**
 * Redis's string2d (scores, timeouts, INCRBYFLOAT's check): the whole argument is a float — no
 * white space first, not NaN, no overflow to ±inf from digits, no underflow to 0 from non-zero digits.
 */
export function parseDouble(arg: Buffer): number | undefined {
  const text = arg.toString('latin1');
  if (text === '' || /^[ \t\n\v\f\r]/.test(text)) return undefined;
  const value = parseNumber(text);
  if (value === undefined || Number.isNaN(value)) return undefined;
  if (!Number.isFinite(value) && !/inf/i.test(text)) return undefined;
  if (value === 0 && /[1-9]/.test(text.replace(/[eE].*$/, ''))) return undefined;
  return value;
}

/** A float argument, or throw Redis's error for it (by default `value is not a valid float`). */
export function floatArg(arg: Buffer | undefined, message = NOT_FLOAT): number {
  const value = arg === undefined ? undefined : parseDouble(arg);
  if (value === undefined) throw new RespError(message);
  return value;
}
