import { RespError } from '@portbind/resp';

// Numbers as Redis reads them: 64-bit signed integers written exactly (no spaces, no '+', no
// leading zeros, no "-0"), as C's `long long`. BigInt keeps the full range: INCR 2^63-1 must fail
// with an overflow error, not round.

export const NOT_INTEGER = 'ERR value is not an integer or out of range';
export const INT64_MIN = -(2n ** 63n);
export const INT64_MAX = 2n ** 63n - 1n;

/** Redis's string2ll: the integer a value spells, or undefined. */
export function toInt64(bytes: Buffer): bigint | undefined {
  if (bytes.length === 0 || bytes.length > 20) return undefined;
  const text = bytes.toString('latin1');
  if (!/^(0|-?[1-9][0-9]*)$/.test(text)) return undefined;
  const value = BigInt(text);
  return value >= INT64_MIN && value <= INT64_MAX ? value : undefined;
}

/** An integer argument, or throw Redis's error for it. */
export function int64Arg(arg: Buffer | undefined, message = NOT_INTEGER): bigint {
  const value = arg === undefined ? undefined : toInt64(arg);
  if (value === undefined) throw new RespError(message);
  return value;
}

/** An integer argument as a JavaScript number: indexes, counts (exact up to 2^53). */
export function intArg(arg: Buffer | undefined, message = NOT_INTEGER): number {
  return Number(int64Arg(arg, message));
}

/** `a + b`, or Redis's overflow error when the sum leaves the 64-bit range. */
export function addInt64(a: bigint, b: bigint): bigint {
  const sum = a + b;
  if (sum < INT64_MIN || sum > INT64_MAX) throw new RespError('ERR increment or decrement would overflow');
  return sum;
}
