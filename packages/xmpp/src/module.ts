import type { Logger } from '@portbind/core';
import type { XmlElement } from './element.js';
import type { Jid } from './jid.js';
import type { XmppServer } from './server.js';
import type { XmppSession } from './session.js';
import type { StanzaErrorCondition } from './stanza-error.js';
import type { ArchiveStore, KeyValueStore, XmppStorage } from './stores/types.js';

// The module API: a server is the list of its modules (as Prosody's is). Every built-in feature
// (roster, presence, carbons, vCard, MAM, PEP, stream management, …) is a module on this API, and
// users write theirs the same way:
//
//   const hello: XmppModule = {
//     name: 'hello',
//     setup(api) {
//       api.iq({ xmlns: 'urn:example:hello', to: 'host' }, () => xml('hello', { xmlns: 'urn:example:hello' }));
//     },
//   };
//   xmppServer({ domain, modules: [...defaultModules(), hello] });

/** One feature of the server. `setup` runs once, when the server is created, in list order. */
export interface XmppModule {
  /** Unique in a server (a second module with the same name is a configuration error). */
  readonly name: string;
  setup(api: ModuleApi): void;
}

/** Stanza kinds. */
export type StanzaKind = 'message' | 'presence' | 'iq';

/**
 * A stanza on its way through the router. Hooks may read it, replace `stanza` (the next hook and
 * the delivery see the replacement), or handle it completely (return `true`: nothing after runs).
 */
export interface StanzaEvent {
  stanza: XmlElement;
  /** The client session it came from; undefined for stanzas the server itself routes. */
  readonly session: XmppSession | undefined;
  /** The sender (always stamped by the server for client stanzas). */
  readonly from: Jid;
  /** The addressee; for client stanzas without `to`, the sender's own bare JID (RFC 6120 §10.3). */
  readonly to: Jid;
  /** Set when a stanza is routed again after its first delivery failed (stream management's unacknowledged messages): archive and copy it only once. */
  readonly redelivery: boolean;
}

/** A hook's answer: `true` when it handled the event (later hooks and the default do not run). */
// biome-ignore lint/suspicious/noConfusingVoidType: hooks that return nothing are written `() => { … }`.
export type HookResult = boolean | undefined | void;

export interface SessionEvent {
  readonly session: XmppSession;
}

/**
 * The events modules hook, with what they carry. Names follow Prosody's:
 *
 * - `message/in`, `presence/in`, `iq/in`: a stanza from a bound client, `from` stamped, before
 *   routing (blocking, rate limits, rewriting).
 * - `message/host`, `presence/host`, `iq/host`: addressed to the server's domain.
 * - `message/bare`, `presence/bare`, `iq/bare`: addressed to a local account's bare JID (an IQ
 *   with no `to` from a client is `iq/bare` to its own account: roster, MAM, PEP, blocking).
 * - `message/full`, `presence/full`, `iq/full`: addressed to a full JID of a local account.
 * - `message/offline`: a message for an account with no available resource (offline storage).
 * - `message/delivered`: a message was handed to these sessions (carbons, archive bookkeeping).
 * - `session/authenticated`, `session/bound`: a session passed SASL / bound a resource.
 * - `presence/initial`: a session's first available presence (deliver offline messages, probes).
 * - `stanza/received`: every stanza a bound client sends, first of all (stream management counts them).
 * - `session/disconnected`: the transport closed (`clean` when the stream was ended on purpose); a hook
 *   returning `true` keeps the session routed (stream management hibernation) and must later call
 *   `api.endSession()`.
 * - `session/hibernating`: stream management keeps a session whose transport was lost, for a resume;
 *   `queue` holds what the client had not acknowledged.
 * - `session/resumed`: a stream resumption moved a session onto a new stream here (same process, or
 *   from another process's journal).
 * - `session/moved`: a session of this process resumed on another process: let go of it here, quietly.
 * - `session/closed`: the session is gone for good (unavailable presence already broadcast).
 * - `account/deleted`: an account was removed (modules delete its data).
 */
export interface XmppEvents {
  'message/in': StanzaEvent;
  'presence/in': StanzaEvent;
  'iq/in': StanzaEvent;
  'message/host': StanzaEvent;
  'presence/host': StanzaEvent;
  'iq/host': StanzaEvent;
  'message/bare': StanzaEvent;
  'presence/bare': StanzaEvent;
  'iq/bare': StanzaEvent;
  'message/full': StanzaEvent;
  'presence/full': StanzaEvent;
  'iq/full': StanzaEvent;
  'message/offline': StanzaEvent;
  'message/delivered': StanzaEvent & { readonly targets: readonly XmppSession[] };
  'session/authenticated': SessionEvent;
  'session/bound': SessionEvent;
  /** A stream resumption moved a session onto this new one (XEP-0198). */
  'session/resumed': SessionEvent;
  /**
   * A session of this process resumed on another process (XEP-0198 through the cluster): it is out of
   * this process's routing, its JID still set while the hooks run, and it did not go offline (no
   * `session/closed` follows). Let go of what is kept here for it without telling anyone, and stop
   * refreshing its entries on the bus: the process it moved to keeps them from now on.
   */
  'session/moved': SessionEvent;
  'presence/initial': SessionEvent;
  /** The client said nobody looks at it (XEP-0352 `<inactive/>`, the csi module): a phone with its screen off. */
  'session/inactive': SessionEvent;
  /** The client said it is looked at again (XEP-0352 `<active/>`) after `session/inactive`. */
  'session/active': SessionEvent;
  'session/disconnected': SessionEvent & {
    /** The stream was ended on purpose (`</stream:stream>`, a stream error), not lost with its transport. */
    readonly clean: boolean;
  };
  'stanza/received': { readonly stanza: XmlElement; readonly session: XmppSession };
  /** Stream management kept a session whose transport was lost, with the stanzas it had not acknowledged (push wakes the device). */
  'session/hibernating': SessionEvent & { readonly queue: readonly XmlElement[] };
  'session/closed': SessionEvent;
  'account/deleted': { readonly user: string };
}

export type XmppEventName = keyof XmppEvents;

export type Hook<E extends XmppEventName> = (event: XmppEvents[E]) => HookResult | Promise<HookResult>;

/** Where an IQ handler answers. */
export type IqTarget =
  /** IQs to the server's domain. */
  | 'host'
  /** IQs to an account's bare JID from anyone (vCard get, PEP reads); `context.self` tells the owner. */
  | 'account'
  /** IQs from an account to itself (no `to`, or its own bare JID): roster, MAM, blocking, private storage. */
  | 'self'
  /** IQs to a full JID that the server answers itself (rare; most go to the client). */
  | 'full';

export interface IqContext extends StanzaEvent {
  /** The session that sent it (undefined when the server routed it). */
  readonly session: XmppSession | undefined;
  /** The IQ's payload element (its first child element). */
  readonly payload: XmlElement;
  /** The sender is the addressed account (or the IQ had no `to`). */
  readonly self: boolean;
}

/**
 * Answers an IQ: return the result's payload (or nothing for an empty result). Throw a
 * `StanzaErrorException` to answer with an error; anything else thrown is logged and answered
 * with `<internal-server-error/>`.
 */
export type ModuleIqHandler = (iq: XmlElement, context: IqContext) => XmlElement | undefined | Promise<XmlElement | undefined>;

export interface IqSpec {
  /** The payload's namespace. */
  xmlns: string;
  /** The payload's local name; any when absent. */
  element?: string;
  to: IqTarget;
  /** Only this type; both `get` and `set` when absent. */
  type?: 'get' | 'set';
}

/** Where a stream feature is offered: with the SASL mechanisms, or with resource binding (after SASL). */
export type FeatureStage = 'sasl' | 'bind';

/** A top-level element that is not a stanza (`<enable/>`, `<r/>`, `<inactive/>`), from an authenticated session. */
export type NonzaHandler = (element: XmlElement, session: XmppSession) => void | Promise<void>;

/**
 * Runs on every stanza about to be written to a bound session (and to a hibernating one). Return
 * the element to send (the same or another), or `null` to hold it back (CSI) — synchronous, in
 * priority order (highest first).
 */
export type OutboundFilter = (stanza: XmlElement, session: XmppSession) => XmlElement | null;

/**
 * A service on a domain of its own (`conference.example.com`, `upload.example.com`, an external
 * component): every stanza addressed to that domain or a JID on it goes to `stanza`, after the
 * `…/in` hooks of a client's stanza ran (blocking, rate limits). What the service sends back it
 * routes with `api.route(stanza)`, `from` on its domain.
 */
export interface DomainService {
  /** Listed in the server's disco#items (XEP-0030) under this name. */
  readonly name?: string;
  /** Whether the server's disco#items lists it (default true). */
  readonly listed?: boolean;
  /** Takes a stanza to the domain. Throw a `StanzaErrorException` to bounce it. */
  stanza(event: StanzaEvent, kind: StanzaKind): void | Promise<void>;
}

/** A registered domain service: `close()` takes the domain away again (stanzas to it then bounce). */
export interface DomainServiceHandle {
  readonly domain: string;
  close(): void;
}

/** Typed per-session state of one module: created on first `get`, moved with the session on a resume. */
export interface SessionState<T> {
  get(session: XmppSession): T;
  /** The state if created, without creating it. */
  peek(session: XmppSession): T | undefined;
  delete(session: XmppSession): void;
}

/** What a module gets: registration of what it adds, and the server's services. */
export interface ModuleApi {
  readonly server: XmppServer;
  readonly domain: string;
  /** The logger of the binding the server serves (silent until bound). */
  readonly logger: Logger;
  readonly storage: XmppStorage;

  // ---- what the module adds ----
  /** Run this hook on an event; higher priority first (default 0; core defaults run at -1000). */
  hook<E extends XmppEventName>(event: E, hook: Hook<E>, priority?: number): void;
  /** Answer IQs with this payload. A second handler for the same spec is a configuration error. */
  iq(spec: IqSpec, handler: ModuleIqHandler): void;
  /** A top-level element in this namespace (and local name, when given) from an authenticated session. */
  nonza(spec: { xmlns: string; element?: string }, handler: NonzaHandler): void;
  /** A stream feature, offered when `element` returns one for this session. */
  streamFeature(stage: FeatureStage, element: (session: XmppSession) => XmlElement | undefined): void;
  /** A disco#info feature of the server (`'host'`, the default) or of every account's bare JID (`'account'`: PEP, MAM). */
  discoFeature(name: string, where?: 'host' | 'account'): void;
  /** A disco#info identity of the server or of accounts. */
  discoIdentity(identity: { category: string; type: string; name?: string }, where?: 'host' | 'account'): void;
  /** Filter stanzas written to sessions (see {@link OutboundFilter}). */
  outbound(filter: OutboundFilter, priority?: number): void;
  /** Typed per-session state for this module. */
  sessionState<T>(init: (session: XmppSession) => T): SessionState<T>;
  /**
   * Serve a domain of its own (a MUC service, an upload service, a component): see
   * {@link DomainService}. A domain served twice, or the server's own domain, is a configuration
   * error at setup; later (a component connecting) it throws too, so check `servesDomain` first.
   */
  domainService(domain: string, service: DomainService): DomainServiceHandle;
  /** Whether a domain is the server's own or has a domain service now. */
  servesDomain(domain: string): boolean;
  /** Run when the server stops (after the bindings drained): flush, close timers. */
  onStop(callback: () => void | Promise<void>): void;

  // ---- services ----
  /** A named key-value store of the server's storage. */
  keyValue(name: string): KeyValueStore;
  /** A named archive store of the server's storage. */
  archive(name: string): ArchiveStore;
  /** Fire an event for every module's hooks (e.g. `account/deleted`); true when a hook handled it. */
  fire<E extends XmppEventName>(event: E, payload: XmppEvents[E]): Promise<boolean>;
  /** Route a stanza as the server does a client's (its `from` as given): to the host, an account, a session. */
  route(stanza: XmlElement, options?: { redelivery?: boolean }): Promise<void>;
  /** Answer a stanza with an error, routed back to its sender (never an error to an error). */
  bounce(stanza: XmlElement, condition: StanzaErrorCondition, text?: string, extra?: XmlElement): void;
  /** Bound (and hibernating) sessions of a bare JID. */
  sessionsOf(bare: string): XmppSession[];
  /** A session by full JID. */
  sessionOf(full: string): XmppSession | undefined;
  /** Sessions of a bare JID that sent available presence, with their priority. */
  availableSessionsOf(bare: string): Array<{ session: XmppSession; priority: number }>;
  /** Whether a local account exists. */
  userExists(user: string): Promise<boolean>;
  /** The subscription state of a contact in an account's roster (RFC 6121): `from`/`both` may see its presence. */
  subscription(user: string, contactBare: string): Promise<'none' | 'to' | 'from' | 'both'>;
  /** Move a hibernating session's identity, routing and module state onto a new session (stream resumption); the old one closes quietly. */
  takeOver(old: XmppSession, replacement: XmppSession): void;
  /** End a hibernating session for good: unavailable presence, `session/closed`. */
  endSession(session: XmppSession): Promise<void>;
  /**
   * Stream resumption of a session another process held (issue 12): the new session takes the
   * resource and what the directory record says of it (presence, carbons…), routing goes to it
   * everywhere, `session/resumed` fires. Needs the server's bus.
   */
  adoptSession(session: XmppSession, resource: string, record: unknown): void;
  /**
   * The session moves to another process (it resumed there): out of the routing table and the
   * directory without `session/closed` (no unavailable presence: the session lives on), its
   * transport, if still open, closed quietly.
   */
  detachSession(session: XmppSession): void;
  /** Handle a stanza as if the session had sent it (its `from` is set to the session's JID). */
  fromSession(session: XmppSession, stanza: XmlElement): Promise<void>;
}
