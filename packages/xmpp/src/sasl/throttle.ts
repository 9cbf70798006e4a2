import { isIPv4, isIPv6 } from 'node:net';
import { PortbindError } from '@portbind/core';
import { normalizeUsername } from './credentials.js';

export interface LoginThrottleOptions {
  /** Failures of one (address, account) pair within `windowMs` that trigger its first lockout. Default 5. */
  maxFailures?: number;
  /**
   * Failures against one account, from any addresses, within `windowMs` that lock the account
   * (distributed guessing). Default 20: higher than `maxFailures`, so one careless or hostile
   * address locks only itself.
   */
  maxAccountFailures?: number;
  /** Default 5 minutes. Also the quiet time after which a key's history is forgotten. */
  windowMs?: number;
  /** Length of the first lockout; each further failure before the history is forgotten doubles it. Default 1 minute. */
  baseDelayMs?: number;
  /** Longest lockout. Default 15 minutes. */
  maxDelayMs?: number;
  /** Most addresses and usernames tracked at once; past it, the least recently failed is forgotten. Default 10,000. */
  maxKeys?: number;
  /** The clock, in milliseconds. Default Date.now. */
  now?: () => number;
}

export type ThrottleDecision = { allowed: true } | { allowed: false; retryAfterMs: number };

interface Entry {
  /** Times of the latest failures (at most maxFailures of them). */
  recent: number[];
  /** Lockouts so far: the next one lasts baseDelay * 2^level. */
  level: number;
  lockedUntil: number;
  lastFailure: number;
}

/**
 * Limits failed logins per (remote address, account) pair and per account. After `maxFailures`
 * failures of a pair within `windowMs`, that address is refused for that account for `baseDelayMs`;
 * after `maxAccountFailures` failures against an account from anywhere, the account is. Every
 * further failure doubles the lockout (up to `maxDelayMs`) until the key has been quiet, neither
 * failing nor locked, for `windowMs`. An address is never locked as a whole: the clients behind one
 * NAT or reverse proxy are not refused for what one of them did with another account.
 *
 * Call `check()` before verifying credentials (refuse with `temporary-auth-failure` when not
 * allowed), then `failed()` or `succeeded()`. Usernames are compared normalized; IPv6 addresses per
 * /64 (one host usually has a whole /64), IPv4-mapped ones as IPv4.
 *
 * Memory is bounded by `maxKeys`: when full, the key that failed least recently is forgotten, so an
 * attacker spreading failures over more keys than that can shorten lockouts. Per-account lockouts
 * also let anyone lock an account out for up to `maxDelayMs`; that is the price of stopping
 * distributed guessing against it.
 */
export class LoginThrottle {
  readonly #maxFailures: number;
  readonly #maxAccountFailures: number;
  readonly #windowMs: number;
  readonly #baseDelayMs: number;
  readonly #maxDelayMs: number;
  readonly #maxKeys: number;
  readonly #now: () => number;
  /** In order of last failure, oldest first. */
  readonly #entries = new Map<string, Entry>();

  constructor(options: LoginThrottleOptions = {}) {
    this.#maxFailures = positive(options.maxFailures ?? 5, 'maxFailures');
    this.#maxAccountFailures = positive(options.maxAccountFailures ?? Math.max(20, this.#maxFailures), 'maxAccountFailures');
    this.#windowMs = positive(options.windowMs ?? 5 * 60_000, 'windowMs');
    this.#baseDelayMs = positive(options.baseDelayMs ?? 60_000, 'baseDelayMs');
    this.#maxDelayMs = positive(options.maxDelayMs ?? 15 * 60_000, 'maxDelayMs');
    this.#maxKeys = positive(options.maxKeys ?? 10_000, 'maxKeys');
    this.#now = options.now ?? Date.now;
  }

  /** Keys tracked now (for monitoring and tests). */
  get size(): number {
    return this.#entries.size;
  }

  /** Whether an attempt from `address` as `username` (if known yet) may go ahead. */
  check(address: string, username?: string): ThrottleDecision {
    const now = this.#now();
    let retryAfterMs = 0;
    for (const key of keys(address, username)) {
      const entry = this.#live(key, now);
      if (entry !== undefined && entry.lockedUntil > now) retryAfterMs = Math.max(retryAfterMs, entry.lockedUntil - now);
    }
    return retryAfterMs > 0 ? { allowed: false, retryAfterMs } : { allowed: true };
  }

  /** Records a failed attempt. */
  failed(address: string, username?: string): void {
    const now = this.#now();
    for (const key of keys(address, username)) {
      const limit = key.startsWith('u:') ? this.#maxAccountFailures : this.#maxFailures;
      const entry = this.#live(key, now) ?? { recent: [], level: 0, lockedUntil: 0, lastFailure: 0 };
      this.#entries.delete(key);
      while (this.#entries.size >= this.#maxKeys) {
        const oldest = this.#entries.keys().next();
        if (oldest.done) break;
        this.#entries.delete(oldest.value);
      }
      this.#entries.set(key, entry);

      entry.recent = entry.recent.filter((time) => now - time < this.#windowMs);
      entry.recent.push(now);
      if (entry.recent.length > limit) entry.recent.shift();
      entry.lastFailure = now;
      if (entry.level > 0 || entry.recent.length >= limit) {
        const delay = Math.min(this.#baseDelayMs * 2 ** entry.level, this.#maxDelayMs);
        entry.level = Math.min(entry.level + 1, 64);
        entry.lockedUntil = now + delay;
      }
    }
  }

  /**
   * Records a successful login: the pair's history is cleared. The account's is kept (it expires
   * by itself), or a guesser who also holds the password of a spread of addresses could reset it.
   */
  succeeded(address: string, username?: string): void {
    const [pairKey] = keys(address, username);
    if (pairKey !== undefined) this.#entries.delete(pairKey);
  }

  /** The entry of `key`, unless there is none or it has been quiet long enough to forget. */
  #live(key: string, now: number): Entry | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    if (now - Math.max(entry.lastFailure, entry.lockedUntil) >= this.#windowMs) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry;
  }
}

/** The pair's key, then (with a username) the account's. */
function keys(address: string, username: string | undefined): string[] {
  const network = networkOf(address);
  if (username === undefined) return [`p:${network}\u0000`];
  const account = normalizeUsername(username) ?? username.toLowerCase();
  return [`p:${network}\u0000${account}`, `u:${account}`];
}

/** The address itself for IPv4 (including IPv4-mapped IPv6), its /64 for IPv6, anything else as given. */
export function networkOf(address: string): string {
  const bare = address.replace(/%.*$/, '');
  if (!isIPv6(bare)) return address;
  const lower = bare.toLowerCase();
  if (lower.startsWith('::ffff:') && isIPv4(lower.slice(7))) return lower.slice(7);
  const [head = '', tail = ''] = lower.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === '' ? [] : tail.split(':');
  const last = lower.includes('::') ? tailGroups : headGroups;
  const embedded = last[last.length - 1];
  if (embedded?.includes('.')) {
    const [a = 0, b = 0, c = 0, d = 0] = embedded.split('.').map(Number);
    last.splice(last.length - 1, 1, ((a << 8) | b).toString(16), ((c << 8) | d).toString(16));
  }
  const zeros = Array<string>(8 - headGroups.length - tailGroups.length).fill('0');
  const groups = lower.includes('::') ? [...headGroups, ...zeros, ...tailGroups] : headGroups;
  return `${groups
    .slice(0, 4)
    .map((group) => Number.parseInt(group, 16).toString(16))
    .join(':')}::/64`;
}

function positive(value: number, name: string): number {
  if (!Number.isFinite(value) || value <= 0) {
    throw new PortbindError('PB_ERR_XMPP_OPTION', `LoginThrottle option ${name} must be a positive number, got ${value}`);
  }
  return value;
}
