import { randomBytes, timingSafeEqual } from 'node:crypto';
import {
  DEFAULT_ITERATIONS,
  DEFAULT_SALT_LENGTH,
  hashLength,
  hmac,
  type MaybePromise,
  normalizeUsername,
  type ScramCredentials,
  type ScramHash,
} from './credentials.js';

/** Finds the credentials of a normalized username for one hash; undefined if there is no such account. */
export type CredentialsLookup = (username: string, hash: ScramHash) => MaybePromise<ScramCredentials | undefined>;

/** How unknown usernames are disguised as accounts. */
export interface UnknownUserOptions {
  /** The iteration count shown for them: that of your real accounts. Default 4096. */
  iterations?: number;
  /**
   * Key of the HMAC their salts are derived from. Default: random per process. Share one across
   * processes (cluster, restarts) if their salts must not change, which would tell them apart.
   */
  secret?: Buffer;
}

/** Largest SASL message accepted, in bytes: ample for 1023-byte usernames and authzids, escaped. */
export const MAX_MESSAGE_BYTES = 16 * 1024;

const processSecret = randomBytes(32);
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Strict UTF-8 decoding (no replacement characters, a BOM kept as U+FEFF); undefined if invalid. */
export function decodeUtf8(bytes: Uint8Array): string | undefined {
  try {
    return utf8.decode(bytes);
  } catch {
    return undefined;
  }
}

/**
 * Strict base64 (RFC 4648 §4): padded, no whitespace, no other alphabet, unused bits zero.
 * Undefined if `text` is not exactly the encoding of some bytes.
 */
export function decodeBase64(text: string): Buffer | undefined {
  if (!BASE64.test(text)) return undefined;
  const bytes = Buffer.from(text, 'base64');
  return bytes.toString('base64') === text ? bytes : undefined;
}

/**
 * Decodes the character data of an XMPP `<auth/>` or `<response/>` (RFC 6120 §6.4.2): `=` is an
 * empty response, anything else strict base64. Undefined means the `incorrect-encoding` failure.
 * An element without character data carries no response at all; do not pass it here.
 */
export function decodeSaslPayload(text: string): Buffer | undefined {
  return text === '=' ? Buffer.alloc(0) : text === '' ? undefined : decodeBase64(text);
}

/** Encodes a challenge or success payload as XMPP character data (`=` for an empty one, RFC 6120 §6.4.2). */
export function encodeSaslPayload(bytes: Uint8Array): string {
  return bytes.length === 0 ? '=' : Buffer.from(bytes).toString('base64');
}

/**
 * Whether `authzid` names the account authenticated as `username` (normalized): either that
 * localpart alone, or the bare JID `localpart@domain` when `domain` is given. Full JIDs and other
 * domains are refused, and so are bare JIDs when the server's domain is not known.
 */
export function authzidMatches(authzid: string, username: string, domain: string | undefined): boolean {
  // A resource (`/...`) fails too: `/` is no localpart character, nor part of the domain compared with.
  const at = authzid.indexOf('@');
  if (at === -1) return normalizeUsername(authzid) === username;
  if (domain === undefined || normalizeUsername(authzid.slice(0, at)) !== username) return false;
  return normalizeDomain(authzid.slice(at + 1)) === normalizeDomain(domain);
}

function normalizeDomain(domain: string): string {
  return domain.toLowerCase().replace(/\.$/, '');
}

/**
 * Credentials for a username with no account: a salt derived from the name (the same on every
 * attempt, as a real account's is), the configured iteration count, and random keys no proof or
 * password can match.
 */
export function fakeCredentials(username: string, hash: ScramHash, options: UnknownUserOptions = {}): ScramCredentials {
  const salt = hmac('sha256', options.secret ?? processSecret, `scram-salt\0${hash}\0${username}`).subarray(0, DEFAULT_SALT_LENGTH);
  return {
    salt,
    iterations: options.iterations ?? DEFAULT_ITERATIONS,
    storedKey: randomBytes(hashLength[hash]),
    serverKey: randomBytes(hashLength[hash]),
  };
}

/** Whether credentials returned by a lookup are usable with `hash`. */
export function validCredentials(credentials: ScramCredentials, hash: ScramHash): boolean {
  return (
    credentials.salt.length > 0 &&
    Number.isSafeInteger(credentials.iterations) &&
    credentials.iterations > 0 &&
    credentials.storedKey.length === hashLength[hash] &&
    credentials.serverKey.length === hashLength[hash]
  );
}

/** Constant-time equality; buffers of different lengths are unequal (their length is not secret). */
export function safeEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
