import { PortbindError } from '@portbind/core';
import { inTable, L_CAT, MAPPED_TO_NOTHING, NON_ASCII_SPACE, PROHIBITED, RAND_AL_CAT, UNASSIGNED } from './saslprep-tables.js';

// SASLprep (RFC 4013), the stringprep (RFC 3454) profile SCRAM and PLAIN prepare user names and
// passwords with. Written here rather than depending on @mongodb-js/saslprep; the signature
// matches that package's `saslprep(input, { allowUnassigned })` so either can stand in for the other.
//
// Covered, in RFC 3454 §3 order:
//  1. Mapping (RFC 4013 §2.1): non-ASCII spaces (table C.1.2) become U+0020, "commonly mapped to
//     nothing" characters (table B.1) are removed. U+200B ZERO WIDTH SPACE is in both tables; like
//     libidn and @mongodb-js/saslprep, the space mapping wins.
//  2. Normalization (§2.2): Unicode NFKC, by String.prototype.normalize('NFKC').
//  3. Prohibited output (§2.3): tables C.1.2, C.2.1, C.2.2, C.3, C.4, C.5 (lone surrogates in the
//     JavaScript string), C.6, C.7, C.8 and C.9.
//  4. Bidirectional characters (§2.4, RFC 3454 §6): a string holding any RandALCat (table D.1)
//     character holds no LCat (table D.2) character, and begins and ends with a RandALCat character.
//  5. Unassigned code points (§2.5): table A.1 (unassigned in Unicode 3.2) is refused for "stored
//     strings" (the default) and let through for "queries" (`allowUnassigned: true`).
//
// Not covered exactly:
//  - NFKC is that of the Unicode version of the running Node.js (ICU), not Unicode 3.2 as stringprep
//    requires. For characters assigned in Unicode 3.2 the two agree (normalization stability), except
//    for the five CJK compatibility ideographs Corrigendum #4 changed; those are mapped here to their
//    Unicode 3.2 decompositions first, so every string without unassigned code points prepares
//    exactly as RFC 4013 says. Code points unassigned in 3.2 (allowed in queries only) may normalize
//    differently, as they do between any two SASLprep implementations of different Unicode versions.
//  - The check for unassigned code points runs on the input (before mapping), which cannot change
//    the outcome: mapping and normalizing assigned characters yields assigned characters.
//  - Other profiles (nameprep, PRECIS) are not implemented; XMPP localparts proper are PRECIS
//    UsernameCaseMapped (RFC 7622). See `normalizeUsername` in credentials.ts for what is used instead.

/**
 * Why a string could not be prepared, or why account credentials were refused (an invalid username,
 * an empty password, bad SCRAM parameters): code `PB_ERR_XMPP_CREDENTIALS`.
 */
export class SaslprepError extends PortbindError {
  constructor(message: string) {
    super('PB_ERR_XMPP_CREDENTIALS', message);
  }
}

export interface SaslprepOptions {
  /** Let code points unassigned in Unicode 3.2 through ("query" strings). Default false ("stored" strings). */
  allowUnassigned?: boolean;
}

/** Unicode 3.2 NFKC of the characters whose decomposition Corrigendum #4 corrected. */
const CORRIGENDUM_4: ReadonlyMap<number, string> = new Map([
  [0x2f868, '\u{2136a}'],
  [0x2f874, '\u5f33'],
  [0x2f91f, '\u43ab'],
  [0x2f95f, '\u7aae'],
  [0x2f9bf, '\u4d57'],
]);

/**
 * Prepares `input` with SASLprep (RFC 4013). Throws a {@link SaslprepError} if the result would
 * contain prohibited characters, break the bidirectional rule or (unless `allowUnassigned`) hold
 * code points unassigned in Unicode 3.2. The result may be empty.
 */
export function saslprep(input: string, options: SaslprepOptions = {}): string {
  let mapped = '';
  for (const char of input) {
    const codePoint = char.codePointAt(0) ?? 0;
    if (!options.allowUnassigned && inTable(UNASSIGNED, codePoint)) {
      throw new SaslprepError(`unassigned code point U+${hex(codePoint)}`);
    }
    if (inTable(NON_ASCII_SPACE, codePoint)) mapped += ' ';
    else if (inTable(MAPPED_TO_NOTHING, codePoint)) continue;
    else mapped += CORRIGENDUM_4.get(codePoint) ?? char;
  }

  const normalized = mapped.normalize('NFKC');

  let hasRandAL = false;
  let hasL = false;
  for (const char of normalized) {
    const codePoint = char.codePointAt(0) ?? 0;
    if (inTable(PROHIBITED, codePoint)) throw new SaslprepError(`prohibited code point U+${hex(codePoint)}`);
    if (inTable(RAND_AL_CAT, codePoint)) hasRandAL = true;
    else if (inTable(L_CAT, codePoint)) hasL = true;
  }
  if (hasRandAL) {
    if (hasL) throw new SaslprepError('both left-to-right and right-to-left characters');
    const first = normalized.codePointAt(0) ?? 0;
    const last = lastCodePoint(normalized);
    if (!inTable(RAND_AL_CAT, first) || !inTable(RAND_AL_CAT, last)) {
      throw new SaslprepError('right-to-left string neither starting nor ending with a right-to-left character');
    }
  }
  return normalized;
}

/** {@link saslprep}, returning undefined instead of throwing. */
export function trySaslprep(input: string, options: SaslprepOptions = {}): string | undefined {
  try {
    return saslprep(input, options);
  } catch (error) {
    if (error instanceof SaslprepError) return undefined;
    throw error;
  }
}

function lastCodePoint(text: string): number {
  const low = text.charCodeAt(text.length - 1);
  if (low >= 0xdc00 && low <= 0xdfff && text.length >= 2) {
    const high = text.charCodeAt(text.length - 2);
    if (high >= 0xd800 && high <= 0xdbff) return text.codePointAt(text.length - 2) ?? low;
  }
  return low;
}

function hex(codePoint: number): string {
  return codePoint.toString(16).toUpperCase().padStart(4, '0');
}
