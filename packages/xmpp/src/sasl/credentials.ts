import { createHash, createHmac, pbkdf2, pbkdf2Sync, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { SaslprepError, saslprep, trySaslprep } from './saslprep.js';

/** The hash functions of the SCRAM mechanisms offered: SCRAM-SHA-1 (RFC 5802) and SCRAM-SHA-256 (RFC 7677). */
export type ScramHash = 'sha1' | 'sha256';

/**
 * What a server keeps of a password for one SCRAM hash (RFC 5802 §3): enough to verify a client,
 * not enough to impersonate one to this server (that needs ClientKey) nor to recover the password
 * other than by brute force over `iterations` rounds of PBKDF2.
 */
export interface ScramCredentials {
  salt: Buffer;
  iterations: number;
  /** H(ClientKey). */
  storedKey: Buffer;
  /** HMAC(SaltedPassword, "Server Key"). */
  serverKey: Buffer;
}

export interface DeriveScramOptions {
  /** Default: 16 random bytes. */
  salt?: Buffer;
  /** PBKDF2 rounds. Default 4096, the minimum RFC 7677 recommends. */
  iterations?: number;
}

/** One account, as a {@link UserStore} keeps it: derived credentials for each hash, never the password. */
export interface StoredUser {
  /** The normalized username (see {@link normalizeUsername}). */
  username: string;
  sha1: ScramCredentials;
  sha256: ScramCredentials;
}

/** A value, or a promise of one: stores may be synchronous (memory) or not (a database). */
export type MaybePromise<T> = T | Promise<T>;

/**
 * Where accounts live. Implementations keep {@link StoredUser} records and compare usernames after
 * {@link normalizeUsername}; passwords are only ever handed to {@link deriveScram}.
 */
export interface UserStore {
  get(username: string): MaybePromise<StoredUser | undefined>;
  /** Creates the account; false if it exists already. Throws on an invalid username or password. */
  create(username: string, password: string): MaybePromise<boolean>;
  /** Replaces the credentials; false if there is no such account. Throws on an invalid password. */
  setPassword(username: string, password: string): MaybePromise<boolean>;
  /** False if there was no such account. */
  delete(username: string): MaybePromise<boolean>;
}

export const DEFAULT_ITERATIONS = 4096;
export const DEFAULT_SALT_LENGTH = 16;

/** Bytes of output of each hash. */
export const hashLength: Readonly<Record<ScramHash, number>> = { sha1: 20, sha256: 32 };

/** Largest localpart, in UTF-8 bytes (RFC 7622 §3.3.1). */
const MAX_LOCALPART_BYTES = 1023;
/** Characters RFC 7622 §3.3.1 excludes from localparts, and the space PRECIS excludes. */
const LOCALPART_EXCLUDED = /["&'/:<>@ ]/;

/**
 * The form usernames (XMPP localparts) are stored and compared in: SASLprep (as a query, RFC 4013),
 * lowercased and NFKC-normalized again. Undefined if the name is empty, fails SASLprep, holds a
 * character RFC 7622 excludes from localparts (`"&'/:<>@` and space) or exceeds 1023 bytes.
 *
 * This approximates, and is not, the PRECIS UsernameCaseMapped profile of RFC 7622.
 */
export function normalizeUsername(username: string): string | undefined {
  const prepared = trySaslprep(username, { allowUnassigned: true });
  if (prepared === undefined) return undefined;
  const name = prepared.toLowerCase().normalize('NFKC');
  if (name === '' || LOCALPART_EXCLUDED.test(name) || Buffer.byteLength(name) > MAX_LOCALPART_BYTES) return undefined;
  return name;
}

/**
 * Prepares a password as SCRAM's Normalize() does (RFC 5802 §2.2: SASLprep as a query string).
 * Throws a SaslprepError (`PB_ERR_XMPP_CREDENTIALS`) for prohibited characters or an empty result.
 */
export function preparePassword(password: string): string {
  const prepared = saslprep(password, { allowUnassigned: true });
  if (prepared === '') throw new SaslprepError('empty password');
  return prepared;
}

/**
 * Derives the SCRAM credentials of `password` (RFC 5802 §3):
 * SaltedPassword = Hi(Normalize(password), salt, i), ClientKey = HMAC(SaltedPassword, "Client Key"),
 * StoredKey = H(ClientKey), ServerKey = HMAC(SaltedPassword, "Server Key").
 *
 * Throws a SaslprepError (`PB_ERR_XMPP_CREDENTIALS`) for a password SASLprep refuses, an empty password, an
 * empty salt or an iteration count that is not a positive integer. Runs PBKDF2 synchronously.
 */
export function deriveScram(password: string, hash: ScramHash, options: DeriveScramOptions = {}): ScramCredentials {
  const salt = options.salt ?? randomBytes(DEFAULT_SALT_LENGTH);
  const iterations = options.iterations ?? DEFAULT_ITERATIONS;
  checkParameters(salt, iterations);
  const salted = pbkdf2Sync(preparePassword(password), salt, iterations, hashLength[hash], hash);
  // ClientKey must not be kept: with it anyone can authenticate as the user.
  const { storedKey, serverKey } = scramKeys(salted, hash);
  return { salt: Buffer.from(salt), iterations, storedKey, serverKey };
}

const pbkdf2Async = promisify(pbkdf2);

/**
 * An account's stored credentials (SCRAM-SHA-1 and SCRAM-SHA-256) as `deriveScram()` makes them — the
 * same salt length, rounds and keys — with PBKDF2 on libuv's thread pool, for the stores that must not
 * hold the event loop (SQLite's, PostgreSQL's). Throws a SaslprepError for a password SASLprep refuses or
 * an empty one, before any work.
 */
export async function deriveStoredUser(username: string, password: string, iterations: number): Promise<StoredUser> {
  const prepared = preparePassword(password);
  const derive = async (hash: ScramHash): Promise<ScramCredentials> => {
    const salt = randomBytes(DEFAULT_SALT_LENGTH);
    const salted = await pbkdf2Async(prepared, salt, iterations, hashLength[hash], hash);
    const { storedKey, serverKey } = scramKeys(salted, hash);
    return { salt, iterations, storedKey, serverKey };
  };
  const [sha1, sha256] = await Promise.all([derive('sha1'), derive('sha256')]);
  return { username, sha1, sha256 };
}

/**
 * The StoredKey a password already prepared with {@link preparePassword} yields with the salt and
 * iteration count of `credentials`. PBKDF2 runs on libuv's thread pool, not the event loop.
 */
export async function storedKeyFor(preparedPassword: string, hash: ScramHash, credentials: ScramCredentials): Promise<Buffer> {
  const salted = await pbkdf2Async(preparedPassword, credentials.salt, credentials.iterations, hashLength[hash], hash);
  return scramKeys(salted, hash).storedKey;
}

/** ClientKey, StoredKey and ServerKey from SaltedPassword. */
export function scramKeys(saltedPassword: Buffer, hash: ScramHash): { clientKey: Buffer; storedKey: Buffer; serverKey: Buffer } {
  const clientKey = hmac(hash, saltedPassword, 'Client Key');
  return {
    clientKey,
    storedKey: createHash(hash).update(clientKey).digest(),
    serverKey: hmac(hash, saltedPassword, 'Server Key'),
  };
}

export function hmac(hash: ScramHash, key: Buffer, data: string | Buffer): Buffer {
  return createHmac(hash, key).update(data).digest();
}

function checkParameters(salt: Buffer, iterations: number): void {
  if (salt.length === 0) throw new SaslprepError('empty salt');
  if (!Number.isSafeInteger(iterations) || iterations < 1) throw new SaslprepError(`invalid iteration count ${iterations}`);
}

/** Adapts a {@link UserStore} to the `lookup` of ScramServer and verifyPlain. */
export function scramLookup(store: UserStore): (username: string, hash: ScramHash) => Promise<ScramCredentials | undefined> {
  return async (username, hash) => (await store.get(username))?.[hash];
}

export interface MemoryUserStoreOptions {
  /** PBKDF2 rounds for new credentials. Default 4096. */
  iterations?: number;
  /** The map to keep accounts in, keyed by normalized username (to seed or snapshot it). Default: a new one. */
  users?: Map<string, StoredUser>;
}

/** A {@link UserStore} in memory. It keeps the derived credentials only: the passwords it is given are not retained. */
export class MemoryUserStore implements UserStore {
  readonly #users: Map<string, StoredUser>;
  readonly #iterations: number;

  constructor(options: MemoryUserStoreOptions = {}) {
    this.#users = options.users ?? new Map();
    this.#iterations = options.iterations ?? DEFAULT_ITERATIONS;
    checkParameters(Buffer.alloc(1), this.#iterations);
  }

  get size(): number {
    return this.#users.size;
  }

  get(username: string): StoredUser | undefined {
    const name = normalizeUsername(username);
    const user = name === undefined ? undefined : this.#users.get(name);
    return user && { username: user.username, sha1: copy(user.sha1), sha256: copy(user.sha256) };
  }

  /** Throws a SaslprepError (`PB_ERR_XMPP_CREDENTIALS`) for an invalid username, an empty password or one SASLprep refuses. */
  create(username: string, password: string): boolean {
    const name = normalizeUsername(username);
    if (name === undefined) throw new SaslprepError(`invalid username ${JSON.stringify(username)}: no @, /, spaces or control characters`);
    if (this.#users.has(name)) return false;
    this.#users.set(name, this.#derive(name, password));
    return true;
  }

  setPassword(username: string, password: string): boolean {
    const name = normalizeUsername(username);
    if (name === undefined || !this.#users.has(name)) return false;
    this.#users.set(name, this.#derive(name, password));
    return true;
  }

  delete(username: string): boolean {
    const name = normalizeUsername(username);
    return name !== undefined && this.#users.delete(name);
  }

  #derive(username: string, password: string): StoredUser {
    const iterations = this.#iterations;
    return { username, sha1: deriveScram(password, 'sha1', { iterations }), sha256: deriveScram(password, 'sha256', { iterations }) };
  }
}

function copy(credentials: ScramCredentials): ScramCredentials {
  return {
    salt: Buffer.from(credentials.salt),
    iterations: credentials.iterations,
    storedKey: Buffer.from(credentials.storedKey),
    serverKey: Buffer.from(credentials.serverKey),
  };
}
