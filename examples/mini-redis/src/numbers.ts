import { int64Arg, parseDouble, parseInt64, RespError } from '@portbind/resp';

// Numbers as Redis reads them, parsed by @portbind/resp (args.ts): 64-bit signed integers written
// exactly (string2ll: no spaces, no '+', no leading zeros, no "-0"), as C's `long long`, and floats
// as string2d. BigInt keeps the full range: INCR 2^63-1 must fail with an overflow error, not round.

export { floatArg, int64Arg, NOT_FLOAT, NOT_INTEGER, parseDouble } from '@portbind/resp';
export const INT64_MIN = -(2n ** 63n);
export const INT64_MAX = 2n ** 63n - 1n;

/** Redis's string2ll: the integer a value spells, or undefined. */
export const toInt64: (bytes: Buffer) => bigint | undefined = parseInt64;

/** Redis's string2d: the float a value spells (whole, not NaN, no overflow), or undefined. */
export const toDouble: (bytes: Buffer) => number | undefined = parseDouble;

/** An integer argument as a JavaScript number: indexes, counts (exact up to 2^53). */
export function intArg(arg: Buffer | undefined, message?: string): number {
  return Number(int64Arg(arg, message));
}

/** `a + b`, or Redis's overflow error when the sum leaves the 64-bit range. */
export function addInt64(a: bigint, b: bigint): bigint {
  const sum = a + b;
  if (sum < INT64_MIN || sum > INT64_MAX) throw new RespError('ERR increment or decrement would overflow');
  return sum;
}
