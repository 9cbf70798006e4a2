import { normalizeUsername, type ScramHash, storedKeyFor } from './credentials.js';
import type { SaslFailureResult } from './failures.js';
import { trySaslprep } from './saslprep.js';
import {
  authzidMatches,
  type CredentialsLookup,
  decodeUtf8,
  fakeCredentials,
  MAX_MESSAGE_BYTES,
  safeEqual,
  type UnknownUserOptions,
  validCredentials,
} from './util.js';

export interface VerifyPlainOptions {
  /** Which of the account's SCRAM credentials to check the password against. Default 'sha256'. */
  hash?: ScramHash;
  /** The domain the stream is addressed to: authzids of the form `user@domain` are accepted only for it. */
  domain?: string;
  /** Unknown usernames cost a PBKDF2 run like real ones; give the iteration count of real accounts. */
  unknownUser?: Pick<UnknownUserOptions, 'iterations'>;
}

export type VerifyPlainResult = { username: string; authzid?: string } | SaslFailureResult;

/**
 * Verifies a PLAIN message (RFC 4616: `[authzid] NUL authcid NUL passwd`, UTF-8) against the stored
 * SCRAM credentials: PBKDF2 of the SASLprepped password with the stored salt and iteration count
 * must give the stored StoredKey (compared with crypto.timingSafeEqual).
 *
 * PLAIN sends the password itself: the caller must offer it only over TLS (RFC 6120 §6.4.1,
 * RFC 4616 §6) and should prefer the SCRAM mechanisms.
 *
 * Failures: `malformed-request` for anything but two NULs, invalid UTF-8, an empty authcid or
 * password, or an oversized message; `invalid-authzid` if a non-empty authzid does not name the
 * account (see ScramServer); `not-authorized` for a wrong password, an unknown account (after the
 * same PBKDF2 work as a known one), an invalid username or a password SASLprep refuses;
 * `temporary-auth-failure` when the lookup returns unusable credentials. Rejects only if the
 * lookup throws.
 */
export async function verifyPlain(
  message: Buffer,
  lookup: CredentialsLookup,
  options: VerifyPlainOptions = {},
): Promise<VerifyPlainResult> {
  const hash = options.hash ?? 'sha256';
  if (message.length > MAX_MESSAGE_BYTES) return { failure: 'malformed-request', text: 'message too long' };
  const first = message.indexOf(0);
  const second = first === -1 ? -1 : message.indexOf(0, first + 1);
  if (second === -1 || message.indexOf(0, second + 1) !== -1) return { failure: 'malformed-request', text: 'invalid PLAIN message' };
  const authzid = decodeUtf8(message.subarray(0, first));
  const authcid = decodeUtf8(message.subarray(first + 1, second));
  const password = decodeUtf8(message.subarray(second + 1));
  if (authzid === undefined || authcid === undefined || password === undefined) {
    return { failure: 'malformed-request', text: 'invalid UTF-8' };
  }
  if (authcid === '' || password === '') return { failure: 'malformed-request', text: 'empty username or password' };

  const username = normalizeUsername(authcid);
  if (username === undefined) return { failure: 'not-authorized' };
  if (authzid !== '' && !authzidMatches(authzid, username, options.domain)) return { failure: 'invalid-authzid' };
  const prepared = trySaslprep(password, { allowUnassigned: true });
  if (prepared === undefined || prepared === '') return { failure: 'not-authorized' };

  const found = await lookup(username, hash);
  if (found !== undefined && !validCredentials(found, hash)) return { failure: 'temporary-auth-failure' };
  const credentials = found ?? fakeCredentials(username, hash, options.unknownUser);
  const storedKey = await storedKeyFor(prepared, hash, credentials);
  if (!safeEqual(storedKey, credentials.storedKey) || found === undefined) return { failure: 'not-authorized' };
  return authzid === '' ? { username } : { username, authzid };
}
