import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Adapter, BindingContext, Connection, Logger } from '@portbind/core';
import { PortbindError, silentLogger } from '@portbind/core';
import { connectionOf, type UpgradeHandler } from '@portbind/http';
import { type WsConnection, type WsEndpoint, wsEndpoint } from '@portbind/ws';
import { XmlElement, xml } from './element.js';
import { Im, NS_ROSTER } from './im.js';
import { Jid } from './jid.js';
import {
  NS_CARBONS,
  NS_CLIENT,
  NS_DISCO_INFO,
  NS_DISCO_ITEMS,
  NS_FORWARD,
  NS_HINTS,
  NS_PING,
  NS_REGISTER,
  NS_SASL,
  NS_SESSION,
  NS_VCARD,
} from './namespaces.js';
import {
  decodeSaslPayload,
  encodeSaslPayload,
  LoginThrottle,
  MemoryUserStore,
  normalizeUsername,
  offeredScramMechanisms,
  type SaslFailure,
  type ScramMechanism,
  ScramServer,
  scramLookup,
  type UserStore,
  verifyPlain,
} from './sasl/index.js';
import type { Session, SessionHost, XmppSession } from './session.js';
import { type StanzaErrorCondition, StanzaErrorException, stanzaError } from './stanza-error.js';
export { StanzaErrorException };
import { MemoryOfflineStore, MemoryRosterStore, type OfflineStore, type RosterStore } from './stores.js';
import { NS_STREAMS, StreamError } from './stream-error.js';
import { DEFAULT_MAX_DEPTH, DEFAULT_MAX_STANZA_SIZE, StreamParser } from './stream-parser.js';
import { TcpSession } from './tcp-session.js';
import { WsSession } from './ws-session.js';

/** What a hook or IQ handler gets besides the stanza. */
export interface StanzaContext {
  /** The sender's session (its `jid`, `user`, `state`; `send()` to answer). */
  readonly session: XmppSession;
  readonly server: XmppServer;
}

/**
 * A hook on stanzas from clients, after `from` is stamped and before routing: return nothing to let
 * the stanza go on, another element to send that instead, or `null` to drop it (answer it yourself
 * with `context.session.send(…)`). Throw a {@link StanzaErrorException} to bounce it with an error.
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


/** A configuration error of the XMPP server (bad domain, no TLS, a bad option). */
export class XmppConfigError extends PortbindError {}

export interface XmppServerOptions {
  /** The domain this server serves (`XMPP_DOMAIN`), e.g. `localhost` or `chat.example.com`. */
  domain: string;
  /** Accounts: salted SCRAM credentials. Default: an in-memory store. */
  users?: UserStore;
  /** Rosters. Default: in memory. */
  rosters?: RosterStore;
  /** Messages for offline users. Default: in memory, 100 per user. */
  offline?: OfflineStore;
  /**
   * Authentication without TLS. Default false: TLS (STARTTLS, direct TLS, or wss://) is required,
   * and a binding without a certificate fails at start (`PB_ERR_XMPP_NO_TLS`).
   *
   * - `'loopback'`: clients on **this machine** only (127.0.0.0/8, ::1, a Unix socket; a WebSocket
   *   request with `Forwarded`, `X-Forwarded-For` or `X-Real-IP` is not local, it came through a
   *   proxy). For a development page on http://localhost. PLAIN is offered to them too: nobody
   *   else can read loopback traffic.
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
}

/** What the adapters need from the server besides a session's host. @internal */
interface ServerInternals extends SessionHost {
  readonly allowPlaintext: boolean | 'loopback';
  /** A new session: tracked for the authentication deadline. */
  track(session: Session): void;
  /** The logger of the binding that opened last. */
  useLogger(logger: Logger): void;
}

/**
 * An XMPP server for one domain: accounts, sessions and stanza routing. Make one with
 * {@link xmppServer}; bind its client-to-server listener with
 * `service.bind(server.c2s(), { tls: { certFile, keyFile } })` (`XMPP_PORT`, 5222).
 */
export class XmppServer {
  readonly domain: string;
  readonly users: UserStore;
  readonly rosters: RosterStore;
  readonly offline: OfflineStore;
  readonly allowPlaintext: boolean | 'loopback';
  readonly registration: XmppServerOptions['registration'];
  readonly throttle: LoginThrottle;
  /** Registrations per address in the current hour. */
  readonly #registrations = new Map<string, { count: number; since: number }>();
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
  /** Bound sessions by bare JID, then resource. */
  readonly #sessions = new Map<string, Map<string, Session>>();
  readonly #im: Im;
  readonly #hooks: Record<'message' | 'presence' | 'iq', StanzaHook[]> = { message: [], presence: [], iq: [] };
  readonly #iqHandlers = new Map<string, IqHandler>();
  readonly #features = new Set<string>([NS_DISCO_INFO, NS_DISCO_ITEMS, NS_PING, NS_CARBONS, NS_VCARD]);
  /** vCard-temp (XEP-0054) by bare JID, serialized. */
  readonly #vcards = new Map<string, string>();
  readonly #host: ServerInternals;

  constructor(options: XmppServerOptions) {
    const domain = typeof options?.domain === 'string' ? Jid.parse(options.domain) : undefined;
    if (domain === undefined || !domain.isBare || domain.local !== '') {
      throw new XmppConfigError(
        'PB_ERR_XMPP_DOMAIN',
        `not a domain: ${JSON.stringify(options.domain)} (give a host name, e.g. 'localhost' or 'chat.example.com')`,
      );
    }
    this.domain = domain.domain;
    this.users = options.users ?? new MemoryUserStore();
    this.rosters = options.rosters ?? new MemoryRosterStore();
    this.offline = options.offline ?? new MemoryOfflineStore();
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
    const server = this;
    const limits = this.#options;
    this.#host = {
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
      plaintextAllowed: (session) => this.#plaintextAllowed(session),
      mechanisms: (session) => this.#mechanisms(session),
      channelBinding: (session) => this.#channelBinding(session),
      registrationOffered: (session) => this.#registrationOffered(session),
      beforeAuth: (session, iq) => this.#beforeAuth(session, iq),
      sasl: (session, element) => this.#sasl(session, element),
      bind: (session, resource) => this.#bind(session, resource),
      stanza: (session, stanza) => this.#stanza(session, stanza),
      closed: (session) => this.#closed(session),
      track: (session) => this.#track(session),
      useLogger: (logger) => {
        this.#logger = logger;
      },
    };
    this.#im = new Im({
      domain: this.domain,
      rosters: this.rosters,
      offline: this.offline,
      get logger() {
        return server.#logger;
      },
      sessionsOf: (bare) => this.#sessionsOf(bare),
      userExists: (user) => this.#userExists(user),
      deliverMessage: (sender, message, targets) => this.#deliverMessage(sender, message, targets),
      bounce: (session, stanza, condition) => this.#bounce(session, stanza, condition),
    });
  }

  /** The logger of the binding the server serves (silent until bound). */
  get logger(): Logger {
    return this.#logger;
  }

  /**
   * The client-to-server adapter: RFC 6120 over TCP with STARTTLS on `XMPP_PORT` (5222), or with
   * `{ directTls: true }` TLS from the first byte (XEP-0368) on `XMPPS_PORT` (5223). Each call makes
   * a new adapter; bind each once.
   */
  c2s(options: { directTls?: boolean } = {}): Adapter {
    return new C2sAdapter(this.#host, options.directTls === true);
  }

  /**
   * XMPP over WebSocket (RFC 7395, subprotocol `xmpp`): mount it on an HTTP binding,
   * `httpAdapter({ upgrades: { '/xmpp-websocket': server.websocket() } })`. Same accounts,
   * sessions and routing as the TCP clients. TLS comes from the binding (wss://); a binding
   * without TLS needs `allowPlaintext`, or it fails at start.
   */
  websocket(): UpgradeHandler {
    return new XmppWebSocket(this.#host, this.#options.maxStanzaSize);
  }

  /** Bound sessions of a bare JID. */
  sessionsOf(bare: string): XmppSession[] {
    return this.#sessionsOf(bare);
  }

  #sessionsOf(bare: string): Session[] {
    return [...(this.#sessions.get(bare)?.values() ?? [])];
  }

  #plaintextAllowed(session: Session): boolean {
    return this.allowPlaintext === true || (this.allowPlaintext === 'loopback' && session.loopback);
  }

  #track(session: Session): void {
    const timer = setTimeout(() => {
      if (!session.authenticated) session.close(new StreamError('connection-timeout', 'authentication took too long'));
    }, this.#options.authTimeoutMs);
    timer.unref();
    session.conn.socket.once('close', () => clearTimeout(timer));
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
    const address = session.conn.remoteAddress ?? 'unix';
    const fail = (failure: SaslFailure, text?: string): void => {
      delete session.state.scram;
      delete session.state.saslAccount;
      session.send(
        xml('failure', { xmlns: NS_SASL }, xml(failure), text === undefined ? undefined : xml('text', { 'xml:lang': 'en' }, text)),
      );
    };
    // A failed attempt: counted, and logged at warn with the address and account (never a password).
    const failed = (account: string | undefined, mechanism: string, failure: SaslFailure, text?: string): void => {
      this.throttle.failed(address, account);
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
      if (mechanism === 'PLAIN') {
        const result = await verifyPlain(payload, scramLookup(this.users), { domain: this.domain });
        if ('failure' in result) return failed(account, mechanism, result.failure, result.text);
        return this.#authenticated(session, result.username, undefined);
      }
      const scram = new ScramServer({
        mechanism: mechanism as ScramMechanism,
        lookup: scramLookup(this.users),
        channelBinding: this.#channelBinding(session),
        domain: this.domain,
      });
      const started = await scram.start(payload);
      if ('failure' in started) return failed(account, mechanism, started.failure, started.text);
      session.state.scram = scram;
      session.state.saslAccount = account;
      session.send(xml('challenge', { xmlns: NS_SASL }, encodeSaslPayload(started.challenge)));
      return;
    }
    if (element.local === 'response') {
      const scram = session.state.scram;
      if (!(scram instanceof ScramServer)) return fail('malformed-request', 'no exchange in progress');
      const payload = decodeSaslPayload(element.text().trim());
      if (payload === undefined) return fail('incorrect-encoding');
      const finished = scram.finish(payload);
      const account = typeof session.state.saslAccount === 'string' ? session.state.saslAccount : undefined;
      if ('failure' in finished) return failed(account, scram.mechanism, finished.failure, finished.text);
      delete session.state.scram;
      delete session.state.saslAccount;
      return this.#authenticated(session, finished.username, finished.success);
    }
    fail('malformed-request');
  }

  #authenticated(session: Session, username: string, serverFinal: Buffer | undefined): void {
    this.throttle.succeeded(session.conn.remoteAddress ?? 'unix', username);
    session.user = normalizeUsername(username) ?? username;
    this.#logger.debug({ conn: session.conn.id, remoteAddress: session.conn.remoteAddress, account: session.user }, 'XMPP login');
    session.send(xml('success', { xmlns: NS_SASL }, serverFinal === undefined ? undefined : encodeSaslPayload(serverFinal)));
    session.restart();
  }

  #bind(session: Session, resource: string): Jid {
    const jid = new Jid(session.user ?? '', this.domain, resource);
    let resources = this.#sessions.get(jid.bare);
    if (resources === undefined) {
      resources = new Map();
      this.#sessions.set(jid.bare, resources);
    }
    // A second login with the same full JID replaces the first (RFC 6120 §7.7.2.2).
    const previous = resources.get(resource);
    if (previous !== undefined && previous !== session) {
      previous.jid = undefined;
      previous.close(new StreamError('conflict', 'replaced by a new connection'));
    }
    resources.set(resource, session);
    return jid;
  }

  /** Hook message, presence or iq stanzas from clients (inspect, rewrite, answer, drop). */
  on(kind: 'message' | 'presence' | 'iq', hook: StanzaHook): this {
    const hooks = Object.hasOwn(this.#hooks, kind) ? this.#hooks[kind] : undefined;
    if (hooks === undefined || typeof hook !== 'function') {
      throw new XmppConfigError(
        'PB_ERR_XMPP_OPTION',
        `on(kind, hook): kind is 'message', 'presence' or 'iq' and hook a function, got ${JSON.stringify(kind)}`,
      );
    }
    hooks.push(hook);
    return this;
  }

  /**
   * Answer IQs to the server whose payload is in `namespace` (get and set), and list the namespace
   * as a disco#info feature. Replaces an earlier handler for it.
   */
  iq(namespace: string, handler: IqHandler): this {
    this.#iqHandlers.set(namespace, handler);
    this.#features.add(namespace);
    return this;
  }

  /** Advertise a feature in the server's disco#info (XEP-0030). */
  feature(name: string): this {
    this.#features.add(name);
    return this;
  }

  /**
   * Deliver a message to these sessions, with message carbons (XEP-0280): chat messages are copied,
   * wrapped, to the sender's and the recipient's other resources that enabled carbons.
   */
  #deliverMessage(sender: Session, message: XmlElement, targets: Session[]): void {
    for (const target of targets) target.send(message);
    const type = message.attr('type') ?? 'normal';
    if (type !== 'chat' || message.getChild('private', NS_CARBONS) || message.getChild('no-copy', NS_HINTS)) return;
    const copy = (kind: 'sent' | 'received', owner: Session): XmlElement =>
      xml(
        'message',
        { from: owner.jid?.bare, to: owner.jid?.toString(), type: 'chat' },
        xml(
          kind,
          { xmlns: NS_CARBONS },
          xml(
            'forwarded',
            { xmlns: NS_FORWARD },
            new XmlElement(message.name, { xmlns: 'jabber:client', ...message.attrs }, message.children, message.xmlns),
          ),
        ),
      );
    for (const own of this.#sessionsOf(sender.jid?.bare ?? '')) {
      if (own !== sender && own.state.carbons === true) own.send(copy('sent', own));
    }
    const recipient = targets[0]?.jid?.bare;
    if (recipient === undefined) return;
    for (const other of this.#sessionsOf(recipient)) {
      if (!targets.includes(other) && other.state.carbons === true) other.send(copy('received', other));
    }
  }

  #carbons(session: Session, iq: XmlElement, enabled: boolean): void {
    session.state.carbons = enabled;
    session.send(xml('iq', { type: 'result', id: iq.attr('id'), to: iq.attr('from') }));
  }

  /** vCard-temp (XEP-0054), minimal: anyone may read a user's vCard, only the user may set it. */
  #vcard(session: Session, iq: XmlElement, owner: Jid): void {
    const type = iq.attr('type');
    if (type === 'get') {
      const stored = this.#vcards.get(owner.bare);
      const card =
        stored === undefined ? xml('vCard', { xmlns: NS_VCARD }) : (parseStoredVcard(stored) ?? xml('vCard', { xmlns: NS_VCARD }));
      session.send(
        xml(
          'iq',
          { type: 'result', id: iq.attr('id'), from: owner.bare === session.jid?.bare ? undefined : owner.bare, to: iq.attr('from') },
          card,
        ),
      );
      return;
    }
    if (type !== 'set') return this.#bounce(session, iq, 'bad-request');
    if (owner.bare !== session.jid?.bare) return this.#bounce(session, iq, 'not-allowed');
    const card = iq.getChild('vCard', NS_VCARD) as XmlElement;
    // A bounded size: it is kept in memory and sent to whoever asks.
    const text = new XmlElement('vCard', { xmlns: NS_VCARD }, card.children, NS_VCARD).toString();
    if (text.length > 64 * 1024) return this.#bounce(session, iq, 'resource-constraint');
    this.#vcards.set(owner.bare, text);
    session.send(xml('iq', { type: 'result', id: iq.attr('id'), to: iq.attr('from') }));
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
    const address = session.conn.remoteAddress ?? 'unix';
    const now = Date.now();
    const window = this.#registrations.get(address);
    const recent = window !== undefined && now - window.since < 3_600_000 ? window : { count: 0, since: now };
    if (recent.count >= 5) {
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
      created = await this.users.create(username, password);
    } catch (failure) {
      error('not-acceptable', 'modify', failure instanceof Error ? failure.message : 'invalid username or password');
      return true;
    }
    if (!created) {
      error('conflict', 'cancel', 'that username is taken');
      return true;
    }
    recent.count++;
    this.#registrations.set(address, recent);
    if (this.#registrations.size > 10_000) this.#registrations.delete(this.#registrations.keys().next().value as string);
    this.#logger.info({ username, domain: this.domain }, 'account registered in-band');
    result();
    return true;
  }

  /** Whether an account exists. */
  async #userExists(user: string): Promise<boolean> {
    return (await this.users.get(user)) !== undefined;
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
    for (const hook of this.#hooks[stanza.local as 'message' | 'presence' | 'iq']) {
      let result: XmlElement | null | undefined;
      try {
        result = await hook(stanza, { session, server: this });
      } catch (error) {
        if (error instanceof StanzaErrorException) return this.#bounce(session, stanza, error.condition, error.message);
        throw error;
      }
      if (result === null) return;
      if (result !== undefined) stanza = result.setAttr('from', from.toString());
    }
    const toText = stanza.attr('to');
    const to = toText === undefined ? undefined : Jid.parse(toText);
    if (toText !== undefined && to === undefined) return this.#bounce(session, stanza, 'bad-request', 'invalid to address');
    if (stanza.local === 'presence') return this.#im.presence(session, stanza, to);
    // The roster is the user's own: addressed to no one or to their bare JID (RFC 6121 §2.1.3).
    if (stanza.local === 'iq' && stanza.getChild('query', NS_ROSTER) && (to === undefined || to.toString() === from.bare)) {
      return this.#im.roster(session, stanza);
    }
    // vCard-temp is answered by the server for a user's bare JID (or the sender's own, with no `to`).
    if (
      stanza.local === 'iq' &&
      stanza.getChild('vCard', NS_VCARD) &&
      (to === undefined || (to.isBare && to.local !== '' && to.domain === this.domain))
    ) {
      return this.#vcard(session, stanza, to ?? from.toBare());
    }
    if (stanza.local === 'iq' && stanza.getChild('enable', NS_CARBONS) && to === undefined) return this.#carbons(session, stanza, true);
    if (stanza.local === 'iq' && stanza.getChild('disable', NS_CARBONS) && to === undefined) return this.#carbons(session, stanza, false);
    if (to === undefined || (to.local === '' && to.domain === this.domain)) return this.#toServer(session, stanza);
    if (to.domain !== this.domain) return this.#bounce(session, stanza, 'service-unavailable', 'no server-to-server federation');
    return this.#toUser(session, stanza, to);
  }

  async #toUser(session: Session, stanza: XmlElement, to: Jid): Promise<void> {
    if (!to.isBare) {
      const target = this.#sessions.get(to.bare)?.get(to.resource);
      if (target !== undefined) return stanza.local === 'message' ? this.#deliverMessage(session, stanza, [target]) : target.send(stanza);
    }
    // A message to a bare JID, or to an unavailable full JID, goes by priority (RFC 6121 §8.5).
    if (stanza.local === 'message') return this.#im.messageToBare(session, stanza, to.toBare());
    // An IQ to a bare JID is answered by the server on the user's behalf (RFC 6121 §8.5.1).
    this.#bounce(session, stanza, 'service-unavailable');
  }

  async #toServer(session: Session, stanza: XmlElement): Promise<void> {
    if (stanza.local !== 'iq') return;
    const type = stanza.attr('type');
    if (type === 'result' || type === 'error') return;
    const reply = (payload?: XmlElement): void =>
      session.send(xml('iq', { type: 'result', id: stanza.attr('id'), from: this.domain, to: stanza.attr('from') }, payload));
    const payload = stanza.children.find((child): child is XmlElement => typeof child !== 'string');
    if (payload?.local === 'ping' && payload.xmlns === NS_PING) return reply();
    if (payload?.local === 'session' && payload.xmlns === NS_SESSION) return reply();
    if (type === 'get' && payload?.local === 'query' && payload.xmlns === NS_DISCO_INFO) {
      return reply(
        xml(
          'query',
          { xmlns: NS_DISCO_INFO },
          xml('identity', { category: 'server', type: 'im', name: 'portbind' }),
          ...[...this.#features].sort().map((name) => xml('feature', { var: name })),
        ),
      );
    }
    // No components or rooms on this server yet: an empty item list (XEP-0030 §4).
    if (type === 'get' && payload?.local === 'query' && payload.xmlns === NS_DISCO_ITEMS && !this.#iqHandlers.has(NS_DISCO_ITEMS)) {
      return reply(xml('query', { xmlns: NS_DISCO_ITEMS }));
    }
    const handler = payload === undefined ? undefined : this.#iqHandlers.get(payload.xmlns);
    if (handler === undefined) return this.#bounce(session, stanza, 'feature-not-implemented');
    try {
      reply(await handler(stanza, { session, server: this }));
    } catch (error) {
      if (error instanceof StanzaErrorException) return this.#bounce(session, stanza, error.condition, error.message);
      this.#logger.error({ err: error, xmlns: payload?.xmlns }, 'IQ handler failed');
      this.#bounce(session, stanza, 'internal-server-error');
    }
  }

  #bounce(session: Session, stanza: XmlElement, condition: Parameters<typeof stanzaError>[1], text?: string): void {
    // Never answer an error with an error (RFC 6120 §8.3.1).
    if (stanza.attr('type') === 'error') return;
    const error = stanzaError(stanza, condition, text);
    error.setAttr('to', session.jid?.toString());
    session.send(error);
  }

  #closed(session: Session): void {
    this.#im.gone(session).catch((error: unknown) => this.#logger.error({ err: error }, 'presence broadcast failed'));
    const jid = session.jid;
    if (jid !== undefined) {
      const resources = this.#sessions.get(jid.bare);
      if (resources?.get(jid.resource) === session) resources.delete(jid.resource);
      if (resources?.size === 0) this.#sessions.delete(jid.bare);
    }
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
  readonly tlsMode: 'direct' | 'starttls';
  readonly #host: ServerInternals;
  readonly #sessions = new Map<Connection, Session>();
  #binding: BindingContext | undefined;

  /** STARTTLS on XMPP_PORT (5222), or direct TLS (XEP-0368) on XMPPS_PORT (5223). */
  constructor(host: ServerInternals, directTls: boolean) {
    this.#host = host;
    this.name = directTls ? 'xmpps' : 'xmpp';
    this.scheme = directTls ? 'xmpps' : 'xmpp';
    this.portEnv = directTls ? 'XMPPS_PORT' : 'XMPP_PORT';
    this.defaultPort = directTls ? 5223 : 5222;
    this.tlsMode = directTls ? 'direct' : 'starttls';
  }

  open(binding: BindingContext): void {
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
    this.#binding = binding;
    this.#host.useLogger(binding.logger);
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
  readonly #host: ServerInternals;
  readonly #endpoint: WsEndpoint;
  readonly #sessions = new Set<WsSession>();
  #binding: BindingContext | undefined;

  constructor(host: ServerInternals, maxStanzaSize: number) {
    this.#host = host;
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

  open(binding: BindingContext): void {
    if (!binding.secure && this.#host.allowPlaintext === false) {
      throw new XmppConfigError(
        'PB_ERR_XMPP_NO_TLS',
        `XMPP over WebSocket on binding ${binding.name} has no TLS (ws://) and allowPlaintext is off, so no client could log in: give the HTTP binding tls: { certFile, keyFile } (wss://), or set allowPlaintext: 'loopback' for clients on this machine`,
      );
    }
    this.#binding = binding;
    this.#host.useLogger(binding.logger);
    this.#endpoint.open(binding);
  }

  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.#endpoint.handleUpgrade(request, socket, head);
  }

  drain(signal: AbortSignal): Promise<void> {
    return this.#endpoint.drain(signal);
  }
}

/** Read back a stored vCard (serialized by the server itself, so it parses). */
function parseStoredVcard(text: string): XmlElement | undefined {
  let card: XmlElement | undefined;
  const parser = new StreamParser((event) => {
    if (event.type === 'element') card ??= event.element;
  });
  parser.write(Buffer.from(`<store xmlns='jabber:client'>${text}`));
  return card;
}
