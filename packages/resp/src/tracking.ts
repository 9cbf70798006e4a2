import type { RespClient } from './client.js';
import { RespError } from './reply.js';
import type { TrackingState } from './tracking-state.js';

// Server-assisted client-side caching, as Redis 7.0's tracking.c behaves (written from its
// documentation and observed replies): CLIENT TRACKING ON|OFF with the default mode (the keys a
// client read are remembered in a bounded table, and the first write to one tells every client that
// read it, once), BCAST with prefixes (every write to a key under a prefix is announced, batched per
// event-loop turn), OPTIN/OPTOUT with CLIENT CACHING, NOLOOP and REDIRECT (to a RESP3 client as a
// push, to a RESP2 subscriber as a message on __redis__:invalidate).

export type { TrackingState } from './tracking-state.js';

/** The channel RESP2 clients receive redirected invalidations on. */
export const INVALIDATE_CHANNEL = '__redis__:invalidate';

/** What the tracking machinery needs from the adapter. */
export interface TrackingHost<C> {
  readonly clients: ReadonlyMap<number, RespClient<C>>;
  /** The client whose command is running now (NOLOOP), if any. */
  readonly currentClient: RespClient<C> | undefined;
}

/** Redis's `tracking-table-max-keys` default. */
export const DEFAULT_TRACKING_MAX_KEYS = 1_000_000;
/** The most BCAST prefixes one client may register (Redis has no limit but its argument count). */
export const DEFAULT_TRACKING_MAX_PREFIXES = 1_000;

const overlaps = (a: string, b: string): boolean => (a.length <= b.length ? b.startsWith(a) : a.startsWith(b));

export class Tracking<C> {
  /**
   * Key (latin1) → the id of the client that read it, or a set of ids when several did (default
   * mode; one number per key in the common case keeps the table small). Keys are not per database, as in Redis.
   */
  readonly #table = new Map<string, number | Set<number>>();
  #items = 0;
  /** BCAST prefix → the clients registered on it and the keys modified since the last broadcast (→ who modified it). */
  readonly #prefixes = new Map<string, { clients: Set<RespClient<C>>; keys: Map<string, RespClient<C> | undefined> }>();
  /** Distinct prefix lengths, so a write looks up a handful of slices instead of scanning every prefix. */
  readonly #lengths = new Map<number, number>();
  #broadcastScheduled = false;
  /** Invalidations for the client whose command is running, sent after its reply. */
  #pending: Array<() => void> = [];
  #limitScheduled = false;
  /** Clients with tracking on. */
  #trackingClients = 0;
  /** `tracking-table-max-keys` (0: no limit). */
  maxKeys = DEFAULT_TRACKING_MAX_KEYS;
  maxPrefixes = DEFAULT_TRACKING_MAX_PREFIXES;
  readonly #host: TrackingHost<C>;

  constructor(host: TrackingHost<C>) {
    this.#host = host;
  }

  /** True while some client tracks keys or prefixes: writes must look at the table. */
  get active(): boolean {
    return this.#trackingClients > 0 || this.#table.size > 0;
  }

  /** Keys in the table (INFO's tracking_total_keys). */
  get keys(): number {
    return this.#table.size;
  }

  /** Client ids summed over keys (tracking_total_items). */
  get items(): number {
    return this.#items;
  }

  get prefixCount(): number {
    return this.#prefixes.size;
  }

  get clientCount(): number {
    return this.#trackingClients;
  }

  // ---- CLIENT TRACKING / CACHING / TRACKINGINFO / GETREDIR ------------------------------------

  /** CLIENT TRACKING ON|OFF [REDIRECT id] [BCAST] [PREFIX p]… [OPTIN] [OPTOUT] [NOLOOP], checked in Redis's order. */
  command(client: RespClient<C>, argv: readonly Buffer[]): void {
    let redirect = 0;
    let bcast = false;
    let optin = false;
    let optout = false;
    let noloop = false;
    const prefixes: string[] = [];
    for (let j = 3; j < argv.length; j++) {
      const more = argv.length - 1 - j > 0;
      const option = (argv[j] as Buffer).toString('latin1').toLowerCase();
      if (option === 'redirect' && more) {
        j++;
        if (redirect !== 0) throw new RespError('ERR A client can only redirect to a single other client');
        const text = (argv[j] as Buffer).toString('latin1');
        if (!/^(0|-?[1-9]\d{0,18})$/.test(text) || BigInt(text) > 9223372036854775807n || BigInt(text) < -9223372036854775808n)
          throw new RespError('ERR value is not an integer or out of range');
        redirect = Number(text);
        if (!this.#host.clients.has(redirect)) throw new RespError('ERR The client ID you want redirect to does not exist');
      } else if (option === 'bcast') bcast = true;
      else if (option === 'optin') optin = true;
      else if (option === 'optout') optout = true;
      else if (option === 'noloop') noloop = true;
      else if (option === 'prefix' && more) {
        j++;
        prefixes.push((argv[j] as Buffer).toString('latin1'));
      } else throw new RespError('ERR syntax error');
    }
    const mode = (argv[2] as Buffer).toString('latin1').toLowerCase();
    if (mode === 'on') {
      const state = client.tracking;
      if (!bcast && prefixes.length > 0) throw new RespError('ERR PREFIX option requires BCAST mode to be enabled');
      if (state?.on && state.bcast !== bcast)
        throw new RespError(
          "ERR You can't switch BCAST mode on/off before disabling tracking for this client, and then re-enabling it with a different mode.",
        );
      if (bcast && (optin || optout)) throw new RespError('ERR OPTIN and OPTOUT are not compatible with BCAST');
      if (optin && optout) throw new RespError("ERR You can't use both OPTIN and OPTOUT");
      if (state?.on && ((optin && state.optout) || (optout && state.optin)))
        throw new RespError(
          "ERR You can't switch OPTIN/OPTOUT mode before disabling tracking for this client, and then re-enabling it with a different mode.",
        );
      if (bcast) this.#checkPrefixes(client, prefixes);
      this.#enable(client, { redirect, bcast, optin, optout, noloop }, prefixes);
    } else if (mode === 'off') {
      this.disable(client);
    } else throw new RespError('ERR syntax error');
  }

  /** Prefixes must not overlap those the client has nor each other (tracking.c, checkPrefixCollisionsOrReply). */
  #checkPrefixes(client: RespClient<C>, prefixes: readonly string[]): void {
    const existing = client.tracking?.prefixes ?? new Set<string>();
    if (existing.size + prefixes.length > this.maxPrefixes)
      throw new RespError(`ERR Too many prefixes: a client may track at most ${this.maxPrefixes}`);
    for (let i = 0; i < prefixes.length; i++) {
      const prefix = prefixes[i] as string;
      for (const other of existing) {
        if (overlaps(other, prefix))
          throw new RespError(
            `ERR Prefix '${cstr(prefix)}' overlaps with an existing prefix '${cstr(other)}'. Prefixes for a single client must not overlap.`,
          );
      }
      for (let j = i + 1; j < prefixes.length; j++) {
        if (overlaps(prefix, prefixes[j] as string))
          throw new RespError(
            `ERR Prefix '${cstr(prefix)}' overlaps with another provided prefix '${cstr(prefixes[j] as string)}'. Prefixes for a single client must not overlap.`,
          );
      }
    }
  }

  #enable(
    client: RespClient<C>,
    options: { redirect: number; bcast: boolean; optin: boolean; optout: boolean; noloop: boolean },
    prefixes: readonly string[],
  ): void {
    let state = client.tracking;
    if (state === undefined) {
      state = {
        on: false,
        bcast: false,
        optin: false,
        optout: false,
        noloop: false,
        caching: false,
        brokenRedirect: false,
        redirect: 0,
        prefixes: new Set(),
      };
      client.tracking = state;
    }
    if (!state.on) this.#trackingClients++;
    state.on = true;
    state.brokenRedirect = false;
    state.redirect = options.redirect;
    state.bcast = options.bcast;
    if (options.bcast) {
      if (prefixes.length === 0) this.#addPrefix(client, state, '');
      for (const prefix of prefixes) this.#addPrefix(client, state, prefix);
    }
    state.optin = options.optin;
    state.optout = options.optout;
    state.noloop = options.noloop;
  }

  #addPrefix(client: RespClient<C>, state: TrackingState, prefix: string): void {
    if (state.prefixes.has(prefix)) return;
    state.prefixes.add(prefix);
    let entry = this.#prefixes.get(prefix);
    if (entry === undefined) {
      entry = { clients: new Set(), keys: new Map() };
      this.#prefixes.set(prefix, entry);
      this.#lengths.set(prefix.length, (this.#lengths.get(prefix.length) ?? 0) + 1);
    }
    entry.clients.add(client);
  }

  /** CLIENT TRACKING OFF, or the connection closed. The keys it read stay in the table until written, as in Redis. */
  disable(client: RespClient<C>): void {
    const state = client.tracking;
    if (state === undefined || !state.on) return;
    for (const prefix of state.prefixes) {
      const entry = this.#prefixes.get(prefix);
      if (entry === undefined) continue;
      entry.clients.delete(client);
      if (entry.clients.size === 0) {
        this.#prefixes.delete(prefix);
        const count = (this.#lengths.get(prefix.length) ?? 1) - 1;
        if (count === 0) this.#lengths.delete(prefix.length);
        else this.#lengths.set(prefix.length, count);
      }
    }
    this.#trackingClients--;
    client.tracking = undefined;
  }

  /** CLIENT CACHING YES|NO. */
  caching(client: RespClient<C>, argv: readonly Buffer[]): void {
    const state = client.tracking;
    if (state === undefined || !state.on)
      throw new RespError('ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled');
    const option = (argv[2] as Buffer).toString('latin1').toLowerCase();
    if (option === 'yes') {
      if (!state.optin) throw new RespError('ERR CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode.');
    } else if (option === 'no') {
      if (!state.optout) throw new RespError('ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.');
    } else throw new RespError('ERR syntax error');
    state.caching = true;
  }

  /** CLIENT TRACKINGINFO: flags (a set), redirect, prefixes. */
  info(client: RespClient<C>): Map<string, unknown> {
    const state = client.tracking;
    const flags = new Set<string>();
    if (state === undefined || !state.on) flags.add('off');
    else {
      flags.add('on');
      if (state.bcast) flags.add('bcast');
      if (state.optin) {
        flags.add('optin');
        if (state.caching) flags.add('caching-yes');
      }
      if (state.optout) {
        flags.add('optout');
        if (state.caching) flags.add('caching-no');
      }
      if (state.noloop) flags.add('noloop');
      if (state.brokenRedirect) flags.add('broken_redirect');
    }
    const prefixes = state?.on ? [...state.prefixes].sort(compareBytes).map((prefix) => Buffer.from(prefix, 'latin1')) : [];
    return new Map<string, unknown>([
      ['flags', flags],
      ['redirect', state?.on ? state.redirect : -1],
      ['prefixes', prefixes],
    ]);
  }

  /** CLIENT GETREDIR: the redirect id, 0 when tracking without one, -1 when not tracking. */
  redirectOf(client: RespClient<C>): number {
    return client.tracking?.on ? client.tracking.redirect : -1;
  }

  // ---- reads and writes ------------------------------------------------------------------------

  /**
   * After a read-only command of a tracking client in default mode: remember the keys it read
   * (tracking.c, trackingRememberKeys), unless OPTIN without CACHING YES or OPTOUT with CACHING NO.
   */
  remember(client: RespClient<C>, keys: readonly Buffer[]): void {
    const state = client.tracking;
    if (state === undefined || !state.on || state.bcast) return;
    if ((state.optin && !state.caching) || (state.optout && state.caching)) return;
    for (const key of keys) {
      const name = key.toString('latin1');
      const ids = this.#table.get(name);
      if (ids === undefined) {
        this.#table.set(name, client.id);
        this.#items++;
      } else if (typeof ids === 'number') {
        if (ids !== client.id) {
          this.#table.set(name, new Set([ids, client.id]));
          this.#items++;
        }
      } else if (!ids.has(client.id)) {
        ids.add(client.id);
        this.#items++;
      }
    }
    if (this.maxKeys > 0 && this.#table.size > this.maxKeys && !this.#limitScheduled) {
      this.#limitScheduled = true;
      setImmediate(() => {
        this.#limitScheduled = false;
        this.limit();
      });
    }
  }

  /** After a command ran: CLIENT CACHING applies to one command (MULTI … EXEC counts as one). */
  commandDone(client: RespClient<C>, name: string): void {
    const state = client.tracking;
    if (state?.caching && client.multi === undefined && name !== 'client') state.caching = false;
  }

  /**
   * Keep the table within `maxKeys`: keys go, oldest first, each invalidated for the clients that
   * read it (Redis evicts random keys the same way, trackingLimitUsedSlots).
   */
  limit(): void {
    if (this.maxKeys <= 0) return;
    for (const name of this.#table.keys()) {
      if (this.#table.size <= this.maxKeys) return;
      this.#invalidateTable(name, undefined, false);
    }
  }

  /** A key was modified (Redis's trackingInvalidateKey): tell the clients that read it, and the BCAST prefixes it falls under. */
  invalidate(key: string): void {
    const current = this.#host.currentClient;
    if (this.#prefixes.size > 0) {
      for (const length of this.#lengths.keys()) {
        if (length > key.length) continue;
        const entry = this.#prefixes.get(length === key.length ? key : key.slice(0, length));
        if (entry === undefined) continue;
        entry.keys.delete(key); // the latest writer is the one NOLOOP compares with; re-insert keeps Map order fresh
        entry.keys.set(key, current);
      }
      if (!this.#broadcastScheduled) {
        this.#broadcastScheduled = true;
        setImmediate(() => this.broadcast());
      }
    }
    this.#invalidateTable(key, current, true);
  }

  #invalidateTable(key: string, current: RespClient<C> | undefined, loopCheck: boolean): void {
    const ids = this.#table.get(key);
    if (ids === undefined) return;
    this.#table.delete(key);
    this.#items -= typeof ids === 'number' ? 1 : ids.size;
    const clients = this.#host.clients;
    for (const id of typeof ids === 'number' ? [ids] : ids) {
      const target = clients.get(id);
      const state = target?.tracking;
      if (target === undefined || state === undefined || !state.on || state.bcast) continue;
      if (loopCheck && state.noloop && target === current) continue;
      this.#send(target, state, (out) => out.array(1).bulk(Buffer.from(key, 'latin1')));
    }
  }

  /** FLUSHDB / FLUSHALL: every tracking client gets a null invalidation, and the table is emptied. */
  flushed(): void {
    for (const client of this.#host.clients.values()) {
      const state = client.tracking;
      // The null is the tracking client's (tracking.c sends shared.null[c->resp]): a RESP3 client
      // redirecting to a RESP2 subscriber makes it `_`, as Redis does.
      if (state?.on)
        this.#send(client, state, (out) => {
          const own = out.protocol;
          out.protocol = client.protocol;
          out.null();
          out.protocol = own;
        });
    }
    this.#table.clear();
    this.#items = 0;
  }

  /** Send the keys modified under each BCAST prefix since the last turn (Redis's beforeSleep broadcast). */
  broadcast(): void {
    this.#broadcastScheduled = false;
    // Prefixes in byte order, as Redis walks its radix tree.
    const prefixes = [...this.#prefixes].filter(([, entry]) => entry.keys.size > 0).sort((a, b) => compareBytes(a[0], b[0]));
    for (const [, entry] of prefixes) {
      const keys = [...entry.keys].sort((a, b) => compareBytes(a[0], b[0]));
      entry.keys = new Map();
      for (const client of entry.clients) {
        const state = client.tracking;
        if (state === undefined || !state.on) continue;
        const own = state.noloop ? keys.filter(([, writer]) => writer !== client) : keys;
        if (own.length === 0) continue;
        this.#send(client, state, (out) => {
          out.array(own.length);
          for (const [name] of own) out.bulk(Buffer.from(name, 'latin1'));
        });
      }
    }
  }

  /** One invalidation message to a client or its redirect target (tracking.c, sendTrackingMessage). */
  #send(client: RespClient<C>, state: TrackingState, value: (out: ReturnType<RespClient<C>['pushWriter']>) => void): void {
    // For the client whose command is running: after that command's reply (Redis's tracking_pending_keys).
    if (client === this.#host.currentClient) {
      this.#pending.push(() => this.#sendNow(client, state, value));
      return;
    }
    this.#sendNow(client, state, value);
  }

  #sendNow(client: RespClient<C>, state: TrackingState, value: (out: ReturnType<RespClient<C>['pushWriter']>) => void): void {
    let target = client;
    let redirected = false;
    if (state.redirect !== 0) {
      const other = this.#host.clients.get(state.redirect);
      if (other === undefined || other.closing) {
        state.brokenRedirect = true;
        if (client.protocol === 3 && !client.closing) {
          client.pushWriter().push(2).bulk('tracking-redir-broken').integer(state.redirect);
          client.flushLater();
        }
        return;
      }
      target = other;
      redirected = true;
    }
    this.#deliver(target, redirected, value);
  }

  /** Send what was held for the client whose command just finished (its reply is written). */
  sendPending(): void {
    if (this.#pending.length === 0) return;
    const pending = this.#pending;
    this.#pending = [];
    for (const send of pending) send();
  }

  #deliver(target: RespClient<C>, redirected: boolean, value: (out: ReturnType<RespClient<C>['pushWriter']>) => void): void {
    if (target.closing) return;
    if (target.protocol === 3) {
      const out = target.pushWriter();
      out.push(2).bulk('invalidate');
      value(out);
    } else if (redirected && target.subscribed) {
      const out = target.pushWriter();
      out.array(3).bulk('message').bulk(INVALIDATE_CHANNEL);
      value(out);
    } else return; // RESP2 on the same connection: nowhere to send it, as Redis
    target.flushLater();
  }
}

/** Redis formats these with %s: the text stops at a NUL byte. */
function cstr(value: string): string {
  const nul = value.indexOf('\u0000');
  return nul === -1 ? value : value.slice(0, nul);
}

/** Byte order of latin1 strings (a radix tree's order). */
function compareBytes(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
