// INCRBYFLOAT (and BLPOP's timeout) compute in C's `long double`: on x86-64 the x87 80-bit
// format, with a 64-bit significand where a JavaScript number has 53. The difference shows:
// 10.5 + 0.1 prints as 10.6 in Redis but 10.59999999999999964 with doubles. So this file does
// that arithmetic exactly, with BigInt: parse as strtold does, add, round to 64 bits, and print
// as Redis does (printf "%.17Lf", then trailing zeros trimmed).

/** A finite long double: significand × 2^exponent, with |significand| < 2^64. */
export interface LongDouble {
  readonly significand: bigint;
  readonly exponent: number;
}

const SIGNIFICAND_BITS = 64;
/** The smallest subnormal is 2^-16445; values from 2^16384 on overflow to infinity. */
const MIN_EXPONENT = -16445;
const MAX_EXPONENT = 16384 - SIGNIFICAND_BITS;
/** Redis refuses float arguments of 5 KiB or more (MAX_LONG_DOUBLE_CHARS). */
const MAX_CHARS = 5 * 1024;

const DECIMAL = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/;
const HEX = /^([+-]?)0[xX]([\da-fA-F]*)(?:\.([\da-fA-F]*))?(?:[pP]([+-]?\d+))?$/;
const INFINITY = /^[+-]?inf(inity)?$/i;

/**
 * Redis's string2ld: a float as strtold reads it (decimal, hex, `inf`), with nothing before or
 * after. Returns 'infinity' for ±inf and undefined for what Redis refuses: NaN, garbage, and
 * values that overflow or underflow to zero.
 */
export function parseLongDouble(bytes: Buffer): LongDouble | 'infinity' | undefined {
  if (bytes.length === 0 || bytes.length >= MAX_CHARS) return undefined;
  const text = bytes.toString('latin1');
  if (INFINITY.test(text)) return 'infinity';
  const decimal = DECIMAL.exec(text);
  if (decimal) {
    const [, sign, whole = '', fraction = '', exponent = '0'] = decimal;
    if (whole === '' && fraction === '') return undefined;
    const digits = (whole + fraction).replace(/^0+/, '');
    if (digits === '') return zero;
    const power = Number(exponent) - fraction.length; // value = digits × 10^power
    // Outside these bounds the value overflows, or underflows to zero: strtold's ERANGE.
    if (digits.length + power > 4933 || digits.length + power < -4952) return undefined;
    const scale = 10n ** BigInt(Math.abs(power));
    const numerator = BigInt(digits) * (power > 0 ? scale : 1n);
    return checked(round(sign === '-', numerator, power < 0 ? scale : 1n, 0));
  }
  const hex = HEX.exec(text);
  if (hex) {
    const [, sign, whole = '', fraction = '', exponent = '0'] = hex;
    if (whole === '' && fraction === '') return undefined;
    const digits = (whole + fraction).replace(/^0+/, '');
    if (digits === '') return zero;
    const power = Number(exponent) - 4 * fraction.length; // value = digits × 2^power
    if (digits.length * 4 + power > 16385 || digits.length * 4 + power < -16500) return undefined;
    return checked(round(sign === '-', BigInt(`0x${digits}`), 1n, power));
  }
  return undefined;
}

/** `a + b` rounded to a long double; 'infinity' when it overflows. */
export function addLongDouble(a: LongDouble, b: LongDouble): LongDouble | 'infinity' {
  const exponent = Math.min(a.exponent, b.exponent);
  const sum = (a.significand << BigInt(a.exponent - exponent)) + (b.significand << BigInt(b.exponent - exponent));
  return round(sum < 0n, sum < 0n ? -sum : sum, 1n, exponent);
}

/** `a × factor` rounded to a long double. */
export function scaleLongDouble(a: LongDouble, factor: bigint): LongDouble | 'infinity' {
  const product = a.significand * factor;
  return round(product < 0n, product < 0n ? -product : product, 1n, a.exponent);
}

/** The smallest integer ≥ a (C's ceill). */
export function ceilLongDouble(a: LongDouble): bigint {
  if (a.exponent >= 0) return a.significand << BigInt(a.exponent);
  const divisor = 1n << BigInt(-a.exponent);
  const quotient = a.significand / divisor; // rounds toward zero
  return a.significand > 0n && quotient * divisor !== a.significand ? quotient + 1n : quotient;
}

/** Redis's ld2string in human mode: "%.17Lf", trailing zeros and point trimmed, "-0" as "0". */
export function formatLongDouble(a: LongDouble): string {
  const negative = a.significand < 0n;
  const magnitude = negative ? -a.significand : a.significand;
  // The value × 10^17, rounded half to even as glibc's printf does.
  const scaled = round(false, magnitude * 10n ** 17n, 1n, a.exponent, 0);
  const digits = scaled.toString().padStart(18, '0');
  const text = `${negative ? '-' : ''}${digits.slice(0, -17)}.${digits.slice(-17)}`.replace(/\.?0+$/, '');
  return text === '-0' ? '0' : text;
}

const zero: LongDouble = { significand: 0n, exponent: 0 };

function checked(value: LongDouble | 'infinity'): LongDouble | undefined {
  return value === 'infinity' || value.significand === 0n ? undefined : value;
}

/**
 * Round the exact value numerator / denominator × 2^exponent, ties to even: to a long double,
 * or with `integer` 0 to the nearest integer.
 */
function round(negative: boolean, numerator: bigint, denominator: bigint, exponent: number): LongDouble | 'infinity';
function round(negative: boolean, numerator: bigint, denominator: bigint, exponent: number, integer: 0): bigint;
function round(negative: boolean, numerator: bigint, denominator: bigint, exponent: number, integer?: 0): LongDouble | 'infinity' | bigint {
  // The result is q × 2^e with q an integer: pick e so q has 64 bits (or e = 0 for an integer).
  let e = integer === 0 ? 0 : Math.max(bitLength(numerator) - bitLength(denominator) - SIGNIFICAND_BITS + exponent, MIN_EXPONENT);
  if (integer === undefined && numerator === 0n) return zero;
  for (;;) {
    const shift = exponent - e; // q = numerator / denominator × 2^shift
    const n = shift >= 0 ? numerator << BigInt(shift) : numerator;
    const d = shift >= 0 ? denominator : denominator << BigInt(-shift);
    let q = n / d;
    const twice = 2n * (n % d);
    if (twice > d || (twice === d && q % 2n === 1n)) q++;
    if (integer === 0) return negative ? -q : q;
    if (q >= 1n << BigInt(SIGNIFICAND_BITS)) {
      e++; // the estimate was one bit short, or rounding carried into a 65th bit
      continue;
    }
    if (e > MAX_EXPONENT) return 'infinity';
    return { significand: negative ? -q : q, exponent: e };
  }
}

function bitLength(value: bigint): number {
  return value === 0n ? 0 : value.toString(2).length;
}
