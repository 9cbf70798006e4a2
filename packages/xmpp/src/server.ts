import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import type { Adapter, BindingContext, Bus, Connection, Logger } from '@portbind/core';
import { silentLogger } from '@portbind/core';
import { connectionOf, type UpgradeHandler } from '@portbind/http';
import { type WsConnection, type WsEndpoint, wsEndpoint } from '@portbind/ws';
import { applyRecord, XmppCluster, type XmppClusterOptions, type XmppClusterView } from './cluster.js';
import { XmppConfigError } from './config-error.js';
import { type XmlElement, xml } from './element.js';
import { ModuleHost, sessionState } from './host.js';
import { Jid } from './jid.js';
import type { XmppModule } from './module.js';
import { defaultModules } from './modules/index.js';
import { NS_CLIENT, NS_REGISTER, NS_SASL } from './namespaces.js';
import {
  decodeSaslPayload,
  encodeSaslPayload,
  LoginThrottle,
  normalizeUsername,
  offeredScramMechanisms,
  type SaslFailure,
  SaslprepError,
  type ScramMechanism,
  ScramServer,
  scramLookup,
  type UserStore,
  verifyPlain,
} from './sasl/index.js';
import type { Session, SessionHost, XmppSession } from './session.js';
import { SharedLimits } from './shared-limits.js';
import { StanzaErrorException, type stanzaError } from './stanza-error.js';
import { sqliteStorage } from './stores/sqlite.js';
import type { XmppStorage } from './stores/types.js';
import { NS_STREAMS, StreamError } from './stream-error.js';
import { DEFAULT_MAX_DEPTH, DEFAULT_MAX_STANZA_SIZE } from './stream-parser.js';
import { TcpSession } from './tcp-session.js';
import { WsSession } from './ws-session.js';

export { StanzaErrorException, XmppConfigError };

/** What a hook or IQ handler gets besides the stanza. */
export interface StanzaContext {
  /** The sender's session (its `jid`, `user`; `send()` to answer). */
  readonly session: XmppSession;
  readonly server: XmppServer;
}

/**
 * A hook on stanzas from clients, after `from` is stamped and before routing: return nothing to let
 * the stanza go on, another element to send that instead, or `null` to drop it (answer it yourself
 * with `context.session.send(…)`). Throw a {@link StanzaErrorException} to bounce it with an error.
 * (The same as a module's `message/in`, `presence/in` or `iq/in` hook; see {@link XmppModule}.)
 */
export type StanzaHook = (
  stanza: XmlElement,
  context: StanzaContext,
) => XmlElement | null | undefined | Promise<XmlElement | null | undefined>;

/**
 * Answers IQs addressed to the server whose payload is in a namespace: return the result payload
 * (or nothing for an empty result); throw a {@link StanzaErrorException} for an error.
 */
export type IqHandler = (iq: XmlElement, context: StanzaContext) => XmlElement | undefined | Promise<XmlElement | undefined>;

export interface XmppServerOptions {
  /** The domain this server serves (`XMPP_DOMAIN`), e.g. `localhost` or `chat.example.com`. */
  domain: string;
  /**
   * Where accounts, rosters, vCards, offline messages, archives, PEP data, block lists and
   * stream-management sessions live. Default: `sqliteStorage({ file: DATA_DIR/xmpp.sqlite })`, an
   * embedded SQLite file in `dataDir`. `memoryStorage()` keeps nothing across restarts (tests).
   */
  storage?: XmppStorage;
  /** The directory of the default SQLite storage. Default: `DATA_DIR`, else `./data`. */
  dataDir?: string;
  /** Accounts from elsewhere (a directory, another database) instead of `storage.users`. */
  users?: UserStore;
  /**
   * The server's features, each a module. Default: {@link defaultModules}(). Add yours after them:
   * `modules: [...defaultModules(), myModule]`; leave one out by filtering on its `name`.
   */
  modules?: readonly XmppModule[];
  /**
   * Authentication without TLS. Default false: TLS (STARTTLS, direct TLS, or wss://) is required,
   * and a binding without a certificate fails at start (`PB_ERR_XMPP_NO_TLS`).
   *
   * - `'loopback'`: clients on **this machine** only (127.0.0.0/8, ::1, a Unix socket), judged by
   *   the client's address: the one a trusted proxy names (c2s `proxyProtocol`, the HTTP binding's
   *   `trustProxy` for WebSocket); a WebSocket request from any other peer with `Forwarded`,
   *   `X-Forwarded-For` or `X-Real-IP` is not local, it came through a proxy. For a development
   *   page on http://localhost. PLAIN is offered to them too: nobody else can read loopback traffic.
   * - `true`: **everyone**, from any network, with SCRAM only (PLAIN never goes over a network in
   *   the clear). Only behind a TLS-terminating proxy you trust, or for a test.
   *
   * In-band registration is never offered without TLS, whatever this says.
   */
  allowPlaintext?: boolean | 'loopback';
  /**
   * Offer SCRAM-*-PLUS with `tls-exporter` channel binding (RFC 9266) on TLS 1.3, advertised with
   * XEP-0440. Default false: clients that know only `tls-unique` (undefined on TLS 1.3; slixmpp
   * 1.8 is one) pick -PLUS when offered and then cannot log in.
   */
  channelBinding?: boolean;
  /**
   * In-band registration (XEP-0077): `true` lets anyone create an account before logging in (over
   * TLS only), or give a function to decide (a sign-up code, an allow list). At most 5 accounts per
   * address per hour. Default false.
   */
  registration?: boolean | ((username: string, session: XmppSession) => boolean | Promise<boolean>);
  /** Largest stanza in bytes once authenticated (never below 10 000). Default 256 KiB. */
  maxStanzaSize?: number;
  /** Largest stanza before authentication (never below 10 000, RFC 6120 §13.12). Default 10 000, as Prosody's. */
  maxStanzaSizeBeforeAuth?: number;
  /** Deepest nesting of elements in a stanza (the stanza is depth 1); deeper gets `<policy-violation/>`. Default 64. */
  maxDepth?: number;
  /** A client with this many bytes unsent (it stopped reading) is disconnected. Default 4 MiB. */
  maxOutputBytes?: number;
  /**
   * Reading limit per TCP connection, in bytes per second, with a burst allowance: a client that
   * sends faster is read more slowly (its socket paused), as Prosody's c2s limits do. Default
   * 256 KiB/s with a 1 MiB burst; 0 turns it off.
   */
  rateLimit?: { bytesPerSecond: number; burstBytes?: number };
  /** Close connections that have not authenticated after this long. Default 60 000 ms. */
  authTimeoutMs?: number;
  /** A STARTTLS handshake that takes longer is cut off. Default 10 000 ms. */
  tlsHandshakeTimeoutMs?: number;
  /**
   * Failed-login throttling. Default: 5 failures in 5 minutes lock that address out of that
   * account, 20 lock the account (from anywhere); lockouts grow to 15 minutes.
   */
  throttle?: LoginThrottle;
  /**
   * The bus between the processes of one service (`memoryBus()` in tests, `redisBus({ url })` of
   * @portbind/bus-redis on a real Redis): users on different processes chat as if on one server
   * (see "Several processes" in the README). Give every process the same shared `storage`.
   * Absent: one process, everything in its memory.
   */
  bus?: Bus;
  /** Tuning of the directory of sessions on the bus (with `bus`). */
  cluster?: XmppClusterOptions;
}

/** What the adapters need from the server besides a session's host. @internal */
interface ServerInternals extends SessionHost {
  readonly allowPlaintext: boolean | 'loopback';
  /** `shared` on a bus (workers and hosts find each other's sessions), else `local`. */
  readonly scope: 'shared' | 'local';
  /** A new session: tracked for the authentication deadline. */
  track(session: Session): void;
  /** The logger of the binding that opened last. */
  useLogger(logger: Logger): void;
  /** An adapter of this server opened / closed (after the service stopped). */
  adapterOpened(): void;
  adapterClosed(): Promise<void>;
  /** With a bus: resolves once this process is in the service's directory; rejects if it could not enter it. */
  clusterReady(): Promise<void>;
}

/** SASL exchange in progress. */
const saslState = sessionState<{ scram?: ScramServer; account?: string }>(() => ({}));

/**
 * An XMPP server for one domain: accounts, sessions, stanza routing and the modules that make its
 * features. Make one with {@link xmppServer}; bind its client-to-server listener with
 * `service.bind(server.c2s(), { tls: { certFile, keyFile } })` (`XMPP_PORT`, 5222).
 */
export class XmppServer {
  readonly domain: string;
  /** Durable state: accounts and every module's stores. */
  readonly storage: XmppStorage;
  readonly allowPlaintext: boolean | 'loopback';
  readonly registration: XmppServerOptions['registration'];
  readonly throttle: LoginThrottle;
  /** When the server was created (uptime, XEP-0012). */
  readonly startedAt = Date.now();
  /** Registrations per address in the current hour. */
  readonly #registrations = new Map<string, { count: number; since: number }>();
  /** Every connected session (authenticated or not), for holding their input. */
  readonly #connected = new Set<Session>();
  /** Input held since (the storage is behind), or undefined. */
  #heldSince: number | undefined;
  #pressureOff: (() => void) | undefined;
  /** With a bus: login failures and registrations counted across the service's processes. */
  readonly #sharedLimits: SharedLimits | undefined;
  readonly #options: {
    maxStanzaSize: number;
    maxStanzaSizeBeforeAuth: number;
    maxDepth: number;
    maxOutputBytes: number;
    rateLimit: { bytesPerSecond: number; burstBytes: number };
    authTimeoutMs: number;
    tlsHandshakeTimeoutMs: number;
    channelBinding: boolean;
  };
  #logger: Logger = silentLogger;
  /** Bound (and hibernating) sessions by bare JID, then resource. */
  readonly #sessions = new Map<string, Map<string, Session>>();
  readonly #host: ModuleHost;
  readonly #internals: ServerInternals;
  #openAdapters = 0;
  #closing: Promise<void> | undefined;
  readonly #cluster: XmppCluster | undefined;

  constructor(options: XmppServerOptions) {
    const domain = typeof options?.domain === 'string' ? Jid.parse(options.domain) : undefined;
    if (domain === undefined || !domain.isBare || domain.local !== '') {
      throw new XmppConfigError(
        'PB_ERR_XMPP_DOMAIN',
        `not a domain: ${JSON.stringify(options?.domain)} (give a host name, e.g. 'localhost' or 'chat.example.com')`,
      );
    }
    this.domain = domain.domain;
    this.allowPlaintext = options.allowPlaintext ?? false;
    if (this.allowPlaintext !== true && this.allowPlaintext !== false && this.allowPlaintext !== 'loopback') {
      throw new XmppConfigError(
        'PB_ERR_XMPP_OPTION',
        `allowPlaintext must be true, false or 'loopback', got ${JSON.stringify(this.allowPlaintext)}`,
      );
    }
    this.registration = options.registration ?? false;
    const rate = number('rateLimit.bytesPerSecond', options.rateLimit?.bytesPerSecond, 256 * 1024, 0);
    this.#options = {
      maxStanzaSize: Math.max(10_000, number('maxStanzaSize', options.maxStanzaSize, DEFAULT_MAX_STANZA_SIZE, 1)),
      maxStanzaSizeBeforeAuth: Math.max(10_000, number('maxStanzaSizeBeforeAuth', options.maxStanzaSizeBeforeAuth, 10_000, 1)),
      maxDepth: number('maxDepth', options.maxDepth, DEFAULT_MAX_DEPTH, 2),
      maxOutputBytes: number('maxOutputBytes', options.maxOutputBytes, 4 * 1024 * 1024, 1),
      rateLimit: {
        bytesPerSecond: rate,
        burstBytes: number('rateLimit.burstBytes', options.rateLimit?.burstBytes, Math.max(rate * 4, 64 * 1024), 1),
      },
      authTimeoutMs: number('authTimeoutMs', options.authTimeoutMs, 60_000, 1),
      tlsHandshakeTimeoutMs: number('tlsHandshakeTimeoutMs', options.tlsHandshakeTimeoutMs, 10_000, 1),
      channelBinding: options.channelBinding ?? false,
    };
    this.throttle = options.throttle ?? new LoginThrottle();
    // The bus first: a refused option must not leave the default storage open.
    let sessionTtlMs = 30_000;
    if (options.bus !== undefined) {
      const bus: unknown = options.bus;
      if (
        typeof bus !== 'object' ||
        bus === null ||
        typeof (bus as Bus).stream !== 'function' ||
        typeof (bus as Bus).presence !== 'object'
      ) {
        throw new XmppConfigError(
          'PB_ERR_XMPP_OPTION',
          'bus must be a Bus: memoryBus() of @portbind/core, or redisBus({ url }) of @portbind/bus-redis',
        );
      }
      sessionTtlMs = number('cluster.sessionTtlMs', options.cluster?.sessionTtlMs, 30_000, 300);
    }
    const modules = options.modules ?? defaultModules();
    if (!Array.isArray(modules)) throw new XmppConfigError('PB_ERR_XMPP_OPTION', 'modules must be an array of modules');
    const storage = options.storage ?? sqliteStorage({ file: join(options.dataDir ?? process.env.DATA_DIR ?? 'data', 'xmpp.sqlite') });
    const users = options.users;
    this.storage =
      users === undefined
        ? storage
        : {
            users,
            keyValue: (name) => storage.keyValue(name),
            archive: (name) => storage.archive(name),
            close: () => storage.close(),
          };
    // A storage behind the server (its thread waits for the disk, or for another process's write lock):
    // stop reading from every client until it caught up, rather than queue without end or stop the event loop.
    this.#pressureOff = storage.onPressure?.((behind) => this.#holdInput(behind));
    const server = this;
    this.#host = new ModuleHost(
      {
        domain: this.domain,
        get logger() {
          return server.#logger;
        },
        storage: this.storage,
        sessionsOf: (bare) => {
          const local: XmppSession[] = this.#sessionsOf(bare);
          const cluster = this.#cluster;
          if (cluster === undefined) return local;
          const remote = cluster.sessionsOf(bare);
          return remote.length === 0 ? local : [...local, ...remote];
        },
        sessionOf: (full) => this.#sessionOf(full) ?? this.#cluster?.sessionOf(full),
        userExists: (user) => this.#userExists(user),
        takeOver: (old, replacement) => this.#takeOver(old, replacement),
        endSession: (session) => this.#endSession(session),
        adoptSession: (session, resource, record) => this.#adopt(session, resource, record),
        detachSession: (session) => this.#detach(session),
        fromSession: (session, stanza) => this.#stanza(session, stanza),
      },
      (message) => new XmppConfigError('PB_ERR_XMPP_OPTION', message),
    );
    try {
      for (const module of modules) this.#host.load(module, (host, name) => host.api(name, this));
    } catch (error) {
      // A module refused its options: the default storage this constructor opened is closed again
      // (a caller's own storage stays theirs).
      if (options.storage === undefined) {
        storage.close().catch((closeError: unknown) => this.#logger.error({ err: closeError }, 'closing the storage failed'));
      }
      throw error;
    }
    if (options.bus !== undefined) {
      const host = this.#host;
      this.#cluster = new XmppCluster(
        options.bus,
        {
          domain: this.domain,
          get logger() {
            return server.#logger;
          },
          localSession: (full) => this.#sessionOf(full),
          localSessions: () => [...this.#sessions.values()].flatMap((resources) => [...resources.values()]),
          localSessionsOf: (bare) => this.#sessionsOf(bare),
          storage: this.storage,
          route: (stanza) => host.route(stanza, true),
          bounce: (stanza, condition, text) => host.bounce(stanza, condition, text),
          offline: (stanza, to) =>
            host.fire('message/offline', {
              stanza,
              session: undefined,
              from: Jid.parse(stanza.attr('from') ?? '') ?? new Jid('', this.domain),
              to,
              redelivery: true,
            }),
        },
        { ...options.cluster, sessionTtlMs },
      );
      this.#sharedLimits = new SharedLimits(options.bus, {
        domain: this.domain,
        get logger() {
          return server.#logger;
        },
        failed: (address, account) => this.throttle.failed(address, account),
        succeeded: (address, account) => this.throttle.succeeded(address, account),
        registered: (address) => this.#countRegistration(address, Date.now()),
      });
      this.#sharedLimits.start();
      // A message stored offline: the user may be available on some process after all (a mirror was behind).
      const cluster = this.#cluster;
      host.hook(
        'cluster',
        'message/offline',
        (event) => {
          cluster.offlineStored(event.to.bare);
        },
        1000,
      );
    }
    const limits = this.#options;
    this.#internals = {
      domain: this.domain,
      get logger() {
        return server.#logger;
      },
      maxStanzaSize: limits.maxStanzaSize,
      maxStanzaSizeBeforeAuth: limits.maxStanzaSizeBeforeAuth,
      maxDepth: limits.maxDepth,
      maxOutputBytes: limits.maxOutputBytes,
      rateLimit: limits.rateLimit,
      tlsHandshakeTimeoutMs: limits.tlsHandshakeTimeoutMs,
      allowPlaintext: this.allowPlaintext,
      scope: this.#cluster === undefined ? 'local' : 'shared',
      plaintextAllowed: (session) => this.#plaintextAllowed(session),
      mechanisms: (session) => this.#mechanisms(session),
      channelBinding: (session) => this.#channelBinding(session),
      registrationOffered: (session) => this.#registrationOffered(session),
      beforeAuth: (session, iq) => this.#beforeAuth(session, iq),
      sasl: (session, element) => this.#sasl(session, element),
      bind: (session, resource) => this.#bind(session, resource),
      stanza: (session, stanza) => this.#stanza(session, stanza),
      nonza: (session, element) => this.#host.nonzaFrom(session, element),
      features: (session, stage) => this.#host.features(session, stage),
      outbound: (session, stanza) => this.#host.filterOutbound(session, stanza),
      closed: (session) => this.#closed(session),
      end: (session) => this.#end(session),
      track: (session) => this.#track(session),
      useLogger: (logger) => {
        this.#logger = logger;
      },
      adapterOpened: () => {
        this.#openAdapters++;
      },
      clusterReady: () => this.#cluster?.ready ?? Promise.resolve(),
      adapterClosed: async () => {
        if (--this.#openAdapters <= 0) await this.close();
      },
    };
  }

  /** The logger of the binding the server serves (silent until bound). */
  get logger(): Logger {
    return this.#logger;
  }

  /** The directory of sessions on the bus (with the `bus` option), else undefined. */
  get cluster(): XmppClusterView | undefined {
    return this.#cluster;
  }

  /** The names of the loaded modules, in order. */
  get modules(): string[] {
    return this.#host.modules;
  }

  /**
   * The client-to-server adapter: RFC 6120 over TCP with STARTTLS on `XMPP_PORT` (5222), or with
   * `{ directTls: true }` TLS from the first byte (XEP-0368) on `XMPPS_PORT` (5223). Each call makes
   * a new adapter; bind each once.
   */
  c2s(options: { directTls?: boolean } = {}): Adapter {
    return new C2sAdapter(this.#internals, options.directTls === true);
  }

  /**
   * XMPP over WebSocket (RFC 7395, subprotocol `xmpp`): mount it on an HTTP binding,
   * `httpAdapter({ upgrades: { '/xmpp-websocket': server.websocket() } })`. Same accounts,
   * sessions and routing as the TCP clients. TLS comes from the binding (wss://); a binding
   * without TLS needs `allowPlaintext`, or it fails at start.
   */
  websocket(): UpgradeHandler {
    return new XmppWebSocket(this.#internals, this.#options.maxStanzaSize);
  }

  /**
   * Bound sessions of a bare JID on this process. With a bus, a module's `api.sessionsOf()` also lists those
   * of the other processes (`RemoteSession`s from the mirror).
   */
  sessionsOf(bare: string): XmppSession[] {
    return this.#sessionsOf(bare);
  }

  /** The server's (or every account's) disco#info identities and features, sorted (XEP-0030, XEP-0115). */
  discoInfo(where: 'host' | 'account' = 'host'): {
    identities: Array<{ category: string; type: string; name?: string }>;
    features: string[];
  } {
    const info = this.#host.disco[where];
    return { identities: info.identities.map((identity) => ({ ...identity })), features: [...info.features].sort() };
  }

  /** The domain services (MUC, upload, components) the server's disco#items lists (XEP-0030). */
  discoItems(): Array<{ jid: string; name?: string }> {
    return this.#host.domainItems();
  }

  /**
   * Route a stanza as the server (its `from` as given): to the server itself, an account, or a
   * session, through every module's hooks.
   */
  route(stanza: XmlElement): Promise<void> {
    return this.#host.route(stanza);
  }

  /**
   * Stop the modules (flush what they hold) and close the storage. Called by the last of the
   * server's bindings once the service has stopped; call it yourself when you never bound it.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      // The modules stop first, while the cluster still carries what they say on the way out (stream
      // management hands its sessions to the other processes); then this process leaves the directory.
      await this.#host.stop();
      await this.#cluster?.stop();
      await this.#sharedLimits?.stop();
      this.#pressureOff?.();
      await this.storage.close();
    })();
    return this.#closing;
  }

  #sessionsOf(bare: string): Session[] {
    return [...(this.#sessions.get(bare)?.values() ?? [])];
  }

  #sessionOf(full: string): Session | undefined {
    const slash = full.indexOf('/');
    if (slash === -1) return undefined;
    return this.#sessions.get(full.slice(0, slash))?.get(full.slice(slash + 1));
  }

  #plaintextAllowed(session: Session): boolean {
    return this.allowPlaintext === true || (this.allowPlaintext === 'loopback' && session.loopback);
  }

  #track(session: Session): void {
    const timer = setTimeout(() => {
      if (!session.authenticated) session.close(new StreamError('connection-timeout', 'authentication took too long'));
    }, this.#options.authTimeoutMs);
    timer.unref();
    this.#connected.add(session);
    if (this.#heldSince !== undefined) session.holdInput(true);
    session.conn.socket.once('close', () => {
      clearTimeout(timer);
      this.#connected.delete(session);
    });
  }

  /** The storage fell behind (true) or caught up (false): every client's input is held meanwhile. */
  #holdInput(behind: boolean): void {
    if (behind === (this.#heldSince !== undefined)) return;
    if (behind) {
      this.#heldSince = Date.now();
      this.#logger.warn({ sessions: this.#connected.size }, 'XMPP: the storage is behind: reading from clients paused until it caught up');
    } else {
      this.#logger.info(
        { pausedMs: Date.now() - (this.#heldSince ?? Date.now()) },
        'XMPP: the storage caught up: reading from clients again',
      );
      this.#heldSince = undefined;
    }
    for (const session of this.#connected) session.holdInput(behind);
  }

  /** The channel binding offered on this session (only with `channelBinding: true`, on TLS 1.3). */
  #channelBinding(session: Session): ReturnType<Session['channelBinding']> {
    return this.#options.channelBinding ? session.channelBinding() : undefined;
  }

  #mechanisms(session: Session): string[] {
    const scram = offeredScramMechanisms(this.#channelBinding(session));
    // PLAIN needs TLS — or a loopback peer under `allowPlaintext: 'loopback'`, where nobody else can
    // read the wire (browser builds of XMPP clients often have PLAIN only).
    const plainOk = session.secure || (this.allowPlaintext === 'loopback' && session.loopback);
    return plainOk ? [...scram, 'PLAIN'] : scram;
  }

  async #sasl(session: Session, element: XmlElement): Promise<void> {
    const address = session.remoteAddress ?? 'unix';
    const fail = (failure: SaslFailure, text?: string): void => {
      saslState.delete(session);
      session.send(
        xml('failure', { xmlns: NS_SASL }, xml(failure), text === undefined ? undefined : xml('text', { 'xml:lang': 'en' }, text)),
      );
    };
    // A failed attempt: counted, and logged at warn with the address and account (never a password).
    const failed = (account: string | undefined, mechanism: string, failure: SaslFailure, text?: string): void => {
      this.throttle.failed(address, account);
      this.#sharedLimits?.failed(address, account);
      this.#logger.warn({ remoteAddress: address, account, mechanism, condition: failure }, 'XMPP login failed');
      fail(failure, text);
    };
    if (element.local === 'abort') return fail('aborted');
    if (element.local === 'auth') {
      const mechanism = element.attr('mechanism') ?? '';
      if (!this.#mechanisms(session).includes(mechanism)) {
        return fail(mechanism === 'PLAIN' && !session.secure ? 'encryption-required' : 'invalid-mechanism');
      }
      const payload = decodeSaslPayload(element.text().trim());
      if (payload === undefined) return fail('incorrect-encoding');
      const account = claimedUsername(mechanism, payload);
      const decision = this.throttle.check(address, account);
      if (!decision.allowed) {
        this.#logger.warn({ remoteAddress: address, account, mechanism }, 'XMPP login refused: too many failures');
        return fail('temporary-auth-failure', `too many failed logins: retry in ${Math.ceil(decision.retryAfterMs / 1000)} s`);
      }
      // The account store failing (PostgreSQL down, the storage thread gone) is no wrong password: RFC 6120
      // §6.5.12's temporary-auth-failure, which the client may retry, and not counted by the throttle.
      const storeFailed = (error: unknown): void => {
        this.#logger.warn({ err: error, remoteAddress: address, account, mechanism }, 'XMPP login: the account store failed');
        fail('temporary-auth-failure', 'the account store is unavailable: try again later');
      };
      if (mechanism === 'PLAIN') {
        let result: Awaited<ReturnType<typeof verifyPlain>>;
        try {
          result = await verifyPlain(payload, scramLookup(this.storage.users), { domain: this.domain });
        } catch (error) {
          return storeFailed(error);
        }
        if ('failure' in result) return failed(account, mechanism, result.failure, result.text);
        return this.#authenticated(session, result.username, undefined);
      }
      const scram = new ScramServer({
        mechanism: mechanism as ScramMechanism,
        lookup: scramLookup(this.storage.users),
        channelBinding: this.#channelBinding(session),
        domain: this.domain,
      });
      let started: Awaited<ReturnType<typeof scram.start>>;
      try {
        started = await scram.start(payload);
      } catch (error) {
        return storeFailed(error);
      }
      if ('failure' in started) return failed(account, mechanism, started.failure, started.text);
      saslState.get(session).scram = scram;
      saslState.get(session).account = account;
      session.send(xml('challenge', { xmlns: NS_SASL }, encodeSaslPayload(started.challenge)));
      return;
    }
    if (element.local === 'response') {
      const scram = saslState.peek(session)?.scram;
      if (scram === undefined) return fail('malformed-request', 'no exchange in progress');
      const payload = decodeSaslPayload(element.text().trim());
      if (payload === undefined) return fail('incorrect-encoding');
      const finished = scram.finish(payload);
      const account = saslState.peek(session)?.account;
      if ('failure' in finished) return failed(account, scram.mechanism, finished.failure, finished.text);
      saslState.delete(session);
      return this.#authenticated(session, finished.username, finished.success);
    }
    fail('malformed-request');
  }

  #authenticated(session: Session, username: string, serverFinal: Buffer | undefined): void {
    this.throttle.succeeded(session.remoteAddress ?? 'unix', username);
    this.#sharedLimits?.succeeded(session.remoteAddress ?? 'unix', username);
    session.user = normalizeUsername(username) ?? username;
    this.#logger.debug({ conn: session.conn.id, remoteAddress: session.remoteAddress, account: session.user }, 'XMPP login');
    session.send(xml('success', { xmlns: NS_SASL }, serverFinal === undefined ? undefined : encodeSaslPayload(serverFinal)));
    session.restart();
    this.#host
      .fire('session/authenticated', { session })
      .catch((error: unknown) => this.#logger.error({ err: error }, 'session/authenticated failed'));
  }

  /**
   * `session` takes the routing slot of `jid`. A session that held it is replaced (RFC 6120 §7.7.2.2):
   * the new one takes the slot first, so the old one's end (presence, `session/closed`) never touches it.
   */
  #takeSlot(session: Session, jid: Jid, why: string): void {
    let resources = this.#sessions.get(jid.bare);
    if (resources === undefined) {
      resources = new Map();
      this.#sessions.set(jid.bare, resources);
    }
    const previous = resources.get(jid.resource);
    resources.set(jid.resource, session);
    if (previous !== undefined && previous !== session) {
      if (previous.hibernating) previous.hibernating = false;
      else previous.close(new StreamError('conflict', why));
      this.#end(previous);
    }
  }

  #bind(session: Session, resource: string): Jid {
    const jid = new Jid(session.user ?? '', this.domain, resource);
    this.#takeSlot(session, jid, 'replaced by a new connection');
    if (this.#cluster !== undefined) {
      // In the directory from now (the session takes its JID when this returns).
      session.jid = jid;
      this.#cluster.bound(session);
    }
    this.#host.fire('session/bound', { session }).catch((error: unknown) => this.#logger.error({ err: error }, 'session/bound failed'));
    return jid;
  }

  /** Hook message, presence or iq stanzas from clients (inspect, rewrite, answer, drop): a `…/in` hook. */
  on(kind: 'message' | 'presence' | 'iq', hook: StanzaHook): this {
    if ((kind !== 'message' && kind !== 'presence' && kind !== 'iq') || typeof hook !== 'function') {
      throw new XmppConfigError(
        'PB_ERR_XMPP_OPTION',
        `on(kind, hook): kind is 'message', 'presence' or 'iq' and hook a function, got ${JSON.stringify(kind)}`,
      );
    }
    this.#host.hook('server.on', `${kind}/in`, async (event) => {
      const session = event.session;
      if (session === undefined) return;
      const result = await hook(event.stanza, { session, server: this });
      if (result === null) return true;
      if (result !== undefined) event.stanza = result.setAttr('from', event.from.toString());
      return undefined;
    });
    return this;
  }

  /**
   * Answer IQs to the server whose payload is in `namespace` (get and set), and list the namespace
   * as a disco#info feature. Replaces an earlier handler for it.
   */
  iq(namespace: string, handler: IqHandler): this {
    this.#host.replaceIq('server.iq', { xmlns: namespace, to: 'host' }, (iq, context) => {
      if (context.session === undefined) throw new StanzaErrorException('service-unavailable');
      return handler(iq, { session: context.session, server: this });
    });
    this.#host.disco.host.features.add(namespace);
    return this;
  }

  /** Advertise a feature in the server's disco#info (XEP-0030). */
  feature(name: string): this {
    this.#host.disco.host.features.add(name);
    return this;
  }

  get #registrationOpen(): boolean {
    return this.registration !== false && this.registration !== undefined;
  }

  /** In-band registration is offered only over TLS: a password chosen over plaintext is a password anyone on the path has. */
  #registrationOffered(session: Session): boolean {
    return this.#registrationOpen && session.secure;
  }

  /** In-band registration (XEP-0077) before authentication. */
  async #beforeAuth(session: Session, iq: XmlElement): Promise<boolean> {
    const query = iq.getChild('query', NS_REGISTER);
    if (query === undefined || !this.#registrationOffered(session)) return false;
    const result = (...children: XmlElement[]): void => session.send(xml('iq', { type: 'result', id: iq.attr('id') }, ...children));
    const error = (condition: Parameters<typeof stanzaError>[1] | 'conflict' | 'not-acceptable', type = 'cancel', text?: string): void =>
      session.send(
        xml(
          'iq',
          { type: 'error', id: iq.attr('id') },
          xml(
            'error',
            { type },
            xml(condition, { xmlns: 'urn:ietf:params:xml:ns:xmpp-stanzas' }),
            text === undefined ? undefined : xml('text', { xmlns: 'urn:ietf:params:xml:ns:xmpp-stanzas' }, text),
          ),
        ),
      );
    if (iq.attr('type') === 'get') {
      result(
        xml(
          'query',
          { xmlns: NS_REGISTER },
          xml('instructions', {}, `Choose a username and password for ${this.domain}.`),
          xml('username'),
          xml('password'),
        ),
      );
      return true;
    }
    if (iq.attr('type') !== 'set') {
      error('bad-request', 'modify');
      return true;
    }
    const username = query.getChildText('username')?.trim() ?? '';
    const password = query.getChildText('password') ?? '';
    if (username === '' || password === '') {
      error('not-acceptable', 'modify', 'a username and a password are required');
      return true;
    }
    const address = session.remoteAddress ?? 'unix';
    if (this.#registrationsFrom(address, Date.now()).count >= 5) {
      error('resource-constraint', 'wait', 'too many registrations from this address: try again later');
      return true;
    }
    const decide = this.registration;
    if (typeof decide === 'function' && !(await decide(username, session))) {
      error('not-allowed');
      return true;
    }
    let created: boolean;
    try {
      created = await this.storage.users.create(username, password);
    } catch (failure) {
      // Only what SASLprep refuses is the client's to fix; a store that failed is the server's problem.
      if (failure instanceof SaslprepError) error('not-acceptable', 'modify', failure.message);
      else if (failure instanceof StanzaErrorException) error(failure.condition, failure.type, failure.message);
      else {
        this.#logger.error({ err: failure, username }, 'in-band registration: the account store failed');
        error('internal-server-error', 'wait', 'the account store failed: try again later');
      }
      return true;
    }
    if (!created) {
      error('conflict', 'cancel', 'that username is taken');
      return true;
    }
    this.#countRegistration(address, Date.now());
    this.#sharedLimits?.registered(address);
    this.#logger.info({ username, domain: this.domain }, 'account registered in-band');
    result();
    return true;
  }

  /** In-band registrations from an address in the last hour (this process's, and with a bus every process's). */
  #registrationsFrom(address: string, now: number): { count: number; since: number } {
    const window = this.#registrations.get(address);
    return window !== undefined && now - window.since < 3_600_000 ? window : { count: 0, since: now };
  }

  #countRegistration(address: string, now: number): void {
    const recent = this.#registrationsFrom(address, now);
    recent.count++;
    this.#registrations.set(address, recent);
    if (this.#registrations.size > 10_000) this.#registrations.delete(this.#registrations.keys().next().value as string);
  }

  /** Whether an account exists. */
  async #userExists(user: string): Promise<boolean> {
    return (await this.storage.users.get(user)) !== undefined;
  }

  async #stanza(session: Session, stanza: XmlElement): Promise<void> {
    const from = session.jid as Jid;
    // The server stamps `from`; a client may only give its own address (RFC 6120 §8.1.2.1).
    const claimed = stanza.attr('from');
    if (claimed !== undefined) {
      const jid = Jid.parse(claimed);
      if (jid === undefined || !(jid.equals(from) || (jid.isBare && jid.bare === from.bare))) throw new StreamError('invalid-from');
    }
    stanza.setAttr('from', from.toString());
    await this.#host.fromClient(session, stanza);
    // What other processes read of this session (presence, roster interest, carbons) may have changed.
    this.#cluster?.refresh(session);
  }

  /** The transport closed: a module may keep the session (stream management), else it ends. */
  #closed(session: Session): void {
    const jid = session.jid;
    if (jid === undefined || this.#sessions.get(jid.bare)?.get(jid.resource) !== session) return this.#end(session);
    this.#host.fire('session/disconnected', { session, clean: session.cleanEnd }).then(
      (kept) => {
        if (kept) {
          session.hibernating = true;
          this.#cluster?.refresh(session);
        } else this.#end(session);
      },
      (error: unknown) => {
        this.#logger.error({ err: error }, 'session/disconnected failed');
        this.#end(session);
      },
    );
  }

  #end(session: Session): void {
    this.#endSession(session).catch((error: unknown) => this.#logger.error({ err: error }, 'session end failed'));
  }

  /** Out of the routing table and the directory, once: false when it had left already. */
  #leaveSlot(session: Session): boolean {
    if (session.ended) return false;
    session.ended = true;
    session.hibernating = false;
    const jid = session.jid;
    if (jid !== undefined) {
      const resources = this.#sessions.get(jid.bare);
      if (resources?.get(jid.resource) === session) resources.delete(jid.resource);
      if (resources?.size === 0) this.#sessions.delete(jid.bare);
      this.#cluster?.ended(session);
    }
    return true;
  }

  /** A session is gone for good: out of the routing table, then `session/closed` (presence modules broadcast unavailable). */
  async #endSession(session: Session): Promise<void> {
    // Once: a replaced session ends at its replacement and again when its transport closes.
    if (!this.#leaveSlot(session)) return;
    if (session.user === undefined) return;
    await this.#host.fire('session/closed', { session });
  }

  /** Stream resumption of a session another process held: the resource and the directory record's state (issue 12). */
  #adopt(session: Session, resource: string, record: unknown): void {
    if (this.#cluster === undefined) throw new Error('adoptSession: only with a bus');
    if (session.user === undefined) throw new Error('adoptSession: the session is not authenticated');
    const jid = new Jid(session.user, this.domain, resource);
    this.#takeSlot(session, jid, 'replaced by a resumed session');
    session.jid = jid;
    applyRecord(session, record);
    this.#cluster.bound(session);
    this.#host.fire('session/resumed', { session }).catch((error: unknown) => this.#logger.error({ err: error }, 'session/resumed failed'));
  }

  /** The session resumed on another process: it leaves this one without ending (no `session/closed`). */
  #detach(session: Session): void {
    const jid = session.jid;
    if (!this.#leaveSlot(session)) return;
    // Before its stream closes (which clears its JID): modules let go of what they keep for it here,
    // telling no one (it did not go offline: the process it moved to carries on).
    if (jid !== undefined && session.user !== undefined) {
      this.#host.fire('session/moved', { session }).catch((error: unknown) => this.#logger.error({ err: error }, 'session/moved failed'));
    }
    session.closeReplaced();
  }

  /** Stream resumption: the new session takes the old one's identity, routing and module state. */
  #takeOver(old: Session, replacement: Session): void {
    const jid = old.jid;
    if (jid === undefined) throw new Error('takeOver: the old session is not bound');
    replacement.user = old.user;
    replacement.jid = jid;
    replacement.moduleState = old.moduleState;
    old.moduleState = new Map();
    let resources = this.#sessions.get(jid.bare);
    if (resources === undefined) {
      resources = new Map();
      this.#sessions.set(jid.bare, resources);
    }
    resources.set(jid.resource, replacement);
    old.hibernating = false;
    this.#cluster?.bound(replacement);
    old.closeReplaced();
    this.#host
      .fire('session/resumed', { session: replacement })
      .catch((error: unknown) => this.#logger.error({ err: error }, 'session/resumed failed'));
  }
}

/** The account a SASL payload claims (PLAIN's authcid, SCRAM's `n=`), for throttling and logs; never verified here. */
function claimedUsername(mechanism: string, payload: Buffer): string | undefined {
  const text = payload.toString('utf8');
  if (mechanism === 'PLAIN') {
    const parts = text.split('\u0000');
    return parts.length === 3 && parts[1] !== '' ? parts[1]?.slice(0, 1023) : undefined;
  }
  // gs2-header "," ["m=" …","] "n=" saslname "," …  (RFC 5802 §7)
  const match = /^[^,]*,[^,]*,(?:m=[^,]*,)?n=([^,]{1,1023}),/.exec(text);
  return match?.[1]?.replace(/=2C/gi, ',').replace(/=3D/gi, '=');
}

/** An option's value: the default when not given, else a finite number ≥ min. */
function number(name: string, value: number | undefined, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value < min) {
    throw new XmppConfigError('PB_ERR_XMPP_OPTION', `${name} must be a number ≥ ${min}, got ${value}`);
  }
  return value;
}

/** Create an {@link XmppServer} for one domain. */
export function xmppServer(options: XmppServerOptions): XmppServer {
  return new XmppServer(options);
}

/** The stream-level start of a refusal, before the client said anything (RFC 6120 §4.9.1.1). */
function refusal(domain: string, error: StreamError): string {
  return `<?xml version='1.0'?><stream:stream xmlns='${NS_CLIENT}' xmlns:stream='${NS_STREAMS}' id='${randomBytes(9).toString('base64url')}' from='${domain}' version='1.0' xml:lang='en'>${error.toElement().toString()}</stream:stream>`;
}

class C2sAdapter implements Adapter {
  readonly name: string;
  readonly scheme: string;
  readonly secureScheme = 'xmpps';
  readonly portEnv: string;
  readonly defaultPort: number;
  /** Workers: `local` (sessions find each other in this process's memory), `shared` on a bus. */
  readonly scope: 'shared' | 'local';
  readonly tlsMode: 'direct' | 'starttls';
  readonly #host: ServerInternals;
  readonly #sessions = new Map<Connection, Session>();
  #binding: BindingContext | undefined;

  /** STARTTLS on XMPP_PORT (5222), or direct TLS (XEP-0368) on XMPPS_PORT (5223). */
  constructor(host: ServerInternals, directTls: boolean) {
    this.#host = host;
    this.scope = host.scope;
    this.name = directTls ? 'xmpps' : 'xmpp';
    this.scheme = directTls ? 'xmpps' : 'xmpp';
    this.portEnv = directTls ? 'XMPPS_PORT' : 'XMPP_PORT';
    this.defaultPort = directTls ? 5223 : 5222;
    this.tlsMode = directTls ? 'direct' : 'starttls';
  }

  async open(binding: BindingContext): Promise<void> {
    const tls = this.tlsMode === 'direct' ? binding.secure : binding.secureContext() !== undefined;
    if (this.tlsMode === 'direct' && !tls) {
      throw new XmppConfigError(
        'PB_ERR_XMPP_NO_TLS',
        `XMPP binding ${binding.name} is direct TLS (XEP-0368) but has no certificate: give the bind option tls: { certFile, keyFile }, or bind c2s() without directTls`,
      );
    }
    if (!tls && this.#host.allowPlaintext === false) {
      throw new XmppConfigError(
        'PB_ERR_XMPP_NO_TLS',
        `XMPP binding ${binding.name} has no TLS and allowPlaintext is off, so no client could log in: give the bind option tls: { certFile, keyFile } (see the @portbind/xmpp README for a development certificate), or set allowPlaintext: 'loopback' for clients on this machine`,
      );
    }
    // With a bus, not before this process is in the directory: a start that could not enter it fails the
    // service's start (all or none), rather than serve users that no other process can reach.
    await this.#host.clusterReady();
    this.#binding = binding;
    this.#host.useLogger(binding.logger);
    this.#host.adapterOpened();
  }

  /** The service stopped: the last binding of the server closes its modules and storage. */
  stopped(): Promise<void> {
    return this.#host.adapterClosed();
  }

  connection(conn: Connection): void {
    const binding = this.#binding;
    const session = new TcpSession(conn, this.#host, {
      // STARTTLS uses this binding's certificate (and a reloaded one, once reloaded).
      secureContext: () => (this.tlsMode === 'starttls' ? binding?.secureContext() : undefined),
      closeSoon: (socket) => (binding === undefined ? socket.destroy() : binding.closeSoon(socket)),
    });
    this.#sessions.set(conn, session);
    conn.socket.once('close', () => this.#sessions.delete(conn));
    this.#host.track(session);
    this.#host.logger.debug({ conn: conn.id, remoteAddress: conn.remoteAddress }, 'XMPP connection');
  }

  /** Over maxConnections: a stream header, `<resource-constraint/>` and the stream's end (RFC 6120 §4.9.3.17). */
  refuse(socket: Socket): void {
    socket.write(refusal(this.#host.domain, new StreamError('resource-constraint', 'too many connections: try again later')));
  }

  /** The idle timeout fired: `<connection-timeout/>` (RFC 6120 §4.9.3.4), then the stream's end. */
  idle(conn: Connection): void {
    const session = this.#sessions.get(conn);
    if (session === undefined) {
      conn.socket.destroy();
      return;
    }
    session.close(new StreamError('connection-timeout', 'idle for too long'));
  }

  /** Every stream of this binding gets `<system-shutdown/>` and `</stream:stream>`; core waits for them to close. */
  drain(): void {
    for (const session of this.#sessions.values()) session.close(new StreamError('system-shutdown'));
  }
}

/** XMPP over WebSocket (RFC 7395) as an HTTP upgrade endpoint. */
class XmppWebSocket implements UpgradeHandler {
  readonly scheme = 'ws';
  readonly secureScheme = 'wss';
  /** Workers: `local` (sessions find each other in this process's memory), `shared` on a bus. */
  readonly scope: 'shared' | 'local';
  readonly #host: ServerInternals;
  readonly #endpoint: WsEndpoint;
  readonly #sessions = new Set<WsSession>();
  #binding: BindingContext | undefined;

  constructor(host: ServerInternals, maxStanzaSize: number) {
    this.#host = host;
    this.scope = host.scope;
    const sessions = new WeakMap<WsConnection<unknown>, WsSession>();
    this.#endpoint = wsEndpoint({
      protocols: ['xmpp'],
      requireProtocol: true,
      maxPayload: maxStanzaSize,
      open: (ws) => {
        const conn = connectionOf(ws.request);
        if (conn === undefined) return ws.close(1011, 'no connection');
        const binding = this.#binding;
        const session = new WsSession(conn, ws as WsConnection<unknown>, host, () =>
          binding === undefined ? conn.socket.destroy() : binding.closeSoon(conn.socket),
        );
        sessions.set(ws as WsConnection<unknown>, session);
        this.#sessions.add(session);
        ws.ws.once('close', () => this.#sessions.delete(session));
        host.track(session);
      },
      message: (ws, data) => sessions.get(ws as WsConnection<unknown>)?.message(data.toString()),
      // Before the endpoint closes every peer with 1001: <system-shutdown/> and <close/> (then 1001 too).
      onDrain: () => {
        for (const session of this.#sessions) session.close(new StreamError('system-shutdown'));
      },
    });
  }

  async open(binding: BindingContext): Promise<void> {
    if (!binding.secure && this.#host.allowPlaintext === false) {
      throw new XmppConfigError(
        'PB_ERR_XMPP_NO_TLS',
        `XMPP over WebSocket on binding ${binding.name} has no TLS (ws://) and allowPlaintext is off, so no client could log in: give the HTTP binding tls: { certFile, keyFile } (wss://), or set allowPlaintext: 'loopback' for clients on this machine`,
      );
    }
    await this.#host.clusterReady();
    this.#binding = binding;
    this.#host.useLogger(binding.logger);
    this.#host.adapterOpened();
    this.#endpoint.open(binding);
  }

  /** The service stopped: the last binding of the server closes its modules and storage. */
  stopped(): Promise<void> {
    return this.#host.adapterClosed();
  }

  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.#endpoint.handleUpgrade(request, socket, head);
  }

  drain(signal: AbortSignal): Promise<void> {
    return this.#endpoint.drain(signal);
  }
}
