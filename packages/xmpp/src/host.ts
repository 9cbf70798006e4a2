import type { Logger } from '@portbind/core';
import { type XmlElement, xml } from './element.js';
import { Jid } from './jid.js';
import type {
  DomainService,
  DomainServiceHandle,
  FeatureStage,
  Hook,
  HookResult,
  IqContext,
  IqSpec,
  ModuleApi,
  ModuleIqHandler,
  NonzaHandler,
  OutboundFilter,
  SessionState,
  StanzaEvent,
  StanzaKind,
  XmppEventName,
  XmppEvents,
  XmppModule,
} from './module.js';
import type { Session, XmppSession } from './session.js';
import { type StanzaErrorCondition, StanzaErrorException, stanzaError } from './stanza-error.js';
import type { ArchiveStore, KeyValueStore, XmppStorage } from './stores/types.js';

// The module host: hooks with priorities, IQ dispatch by namespace and target, nonzas, stream
// features, disco data, typed session state, and the router that ties them (Prosody's
// core/stanza_router.lua and util/events.lua, in one place).

/** A configuration error raised while modules are set up. */
export type ConfigErrorFactory = (message: string) => Error;

interface Registered<F> {
  fn: F;
  priority: number;
  module: string;
  order: number;
}

export interface DiscoIdentity {
  category: string;
  type: string;
  name?: string;
}

/** What the router needs from the server: sessions, accounts, the logger. */
export interface RouterServer {
  readonly domain: string;
  readonly logger: Logger;
  readonly storage: XmppStorage;
  /** Bound sessions of a bare JID: this process's and, in a cluster, other processes' (`RemoteSession`). */
  sessionsOf(bare: string): XmppSession[];
  sessionOf(full: string): XmppSession | undefined;
  userExists(user: string): Promise<boolean>;
  takeOver(old: Session, replacement: Session): void;
  endSession(session: Session): Promise<void>;
  adoptSession(session: Session, resource: string, record: unknown): void;
  detachSession(session: Session): void;
  fromSession(session: Session, stanza: XmlElement): Promise<void>;
}

let order = 0;

export class ModuleHost {
  readonly #server: RouterServer;
  readonly #configError: ConfigErrorFactory;
  readonly #hooks = new Map<XmppEventName, Registered<Hook<XmppEventName>>[]>();
  readonly #iq = new Map<string, { handler: ModuleIqHandler; module: string }>();
  readonly #nonzas = new Map<string, { handler: NonzaHandler; module: string }>();
  readonly #features: Record<FeatureStage, Array<(session: XmppSession) => XmlElement | undefined>> = { sasl: [], bind: [] };
  readonly #outbound: Registered<OutboundFilter>[] = [];
  readonly #stops: Array<() => void | Promise<void>> = [];
  readonly #modules = new Set<string>();
  readonly #domains = new Map<string, { service: DomainService; module: string }>();
  readonly disco = {
    host: { features: new Set<string>(), identities: [] as DiscoIdentity[] },
    account: { features: new Set<string>(), identities: [] as DiscoIdentity[] },
  };

  constructor(server: RouterServer, configError: ConfigErrorFactory) {
    this.#server = server;
    this.#configError = configError;
  }

  /** Set a module up: everything it registers is tagged with its name. */
  load(module: XmppModule, api: (host: ModuleHost, name: string) => ModuleApi): void {
    if (module === null || typeof module !== 'object' || typeof module.name !== 'string' || typeof module.setup !== 'function') {
      throw this.#configError(`modules: each module is an object with a name and a setup(api) function, got ${typeof module}`);
    }
    if (this.#modules.has(module.name)) throw this.#configError(`modules: two modules are named ${JSON.stringify(module.name)}`);
    this.#modules.add(module.name);
    module.setup(api(this, module.name));
  }

  get modules(): string[] {
    return [...this.#modules];
  }

  hook<E extends XmppEventName>(module: string, event: E, fn: Hook<E>, priority = 0): void {
    let list = this.#hooks.get(event);
    if (list === undefined) {
      list = [];
      this.#hooks.set(event, list);
    }
    list.push({ fn: fn as unknown as Hook<XmppEventName>, priority, module, order: order++ });
    // Highest priority first; equal priorities in the order they were added.
    list.sort((a, b) => b.priority - a.priority || a.order - b.order);
  }

  /** Fire an event: true when a hook handled it. A hook that throws a StanzaErrorException bounces the stanza. */
  async fire<E extends XmppEventName>(event: E, payload: XmppEvents[E]): Promise<boolean> {
    const list = this.#hooks.get(event);
    if (list === undefined) return false;
    for (const hook of list) {
      let result: HookResult;
      try {
        // Most hooks answer synchronously: awaited only when they return a promise (a microtask
        // per hook and per stanza adds up on the message path).
        const answer = (hook.fn as unknown as Hook<E>)(payload);
        result = typeof (answer as PromiseLike<HookResult> | undefined)?.then === 'function' ? await answer : (answer as HookResult);
      } catch (error) {
        const stanza = (payload as Partial<StanzaEvent>).stanza;
        if (error instanceof StanzaErrorException && stanza !== undefined) {
          this.bounceWith(stanza, error.reply(stanza));
          return true;
        }
        this.#server.logger.error({ err: error, event, module: hook.module }, 'XMPP module hook failed');
        if (stanza !== undefined) {
          this.bounce(stanza, 'internal-server-error');
          return true;
        }
        continue;
      }
      if (result === true) return true;
    }
    return false;
  }

  iq(module: string, spec: IqSpec, handler: ModuleIqHandler): void {
    const key = iqKey(spec.xmlns, spec.element, spec.to, spec.type);
    const existing = this.#iq.get(key);
    if (existing !== undefined) {
      throw this.#configError(`modules ${existing.module} and ${module} both answer IQs ${spec.xmlns} (${spec.to})`);
    }
    this.#iq.set(key, { handler, module });
  }

  /** Replace (or add) an IQ handler: the legacy `server.iq()`. */
  replaceIq(module: string, spec: IqSpec, handler: ModuleIqHandler): void {
    this.#iq.set(iqKey(spec.xmlns, spec.element, spec.to, spec.type), { handler, module });
  }

  nonza(module: string, spec: { xmlns: string; element?: string }, handler: NonzaHandler): void {
    const key = `${spec.xmlns}|${spec.element ?? '*'}`;
    const existing = this.#nonzas.get(key);
    if (existing !== undefined)
      throw this.#configError(`modules ${existing.module} and ${module} both take <${spec.element ?? '*'} xmlns='${spec.xmlns}'/>`);
    this.#nonzas.set(key, { handler, module });
  }

  streamFeature(stage: FeatureStage, element: (session: XmppSession) => XmlElement | undefined): void {
    this.#features[stage].push(element);
  }

  outbound(module: string, filter: OutboundFilter, priority = 0): void {
    this.#outbound.push({ fn: filter, priority, module, order: order++ });
    this.#outbound.sort((a, b) => b.priority - a.priority || a.order - b.order);
  }

  domainService(module: string, domain: string, service: DomainService): DomainServiceHandle {
    const parsed = Jid.parse(domain);
    if (parsed === undefined || parsed.local !== '' || !parsed.isBare) {
      throw this.#configError(`module ${module}: not a domain: ${JSON.stringify(domain)}`);
    }
    const name = parsed.domain;
    if (name === this.#server.domain) throw this.#configError(`module ${module}: ${name} is the server's own domain`);
    const existing = this.#domains.get(name);
    if (existing !== undefined) throw this.#configError(`modules ${existing.module} and ${module} both serve ${name}`);
    const entry = { service, module };
    this.#domains.set(name, entry);
    return {
      domain: name,
      close: () => {
        if (this.#domains.get(name) === entry) this.#domains.delete(name);
      },
    };
  }

  servesDomain(domain: string): boolean {
    return domain === this.#server.domain || this.#domains.has(domain);
  }

  /** The listed domain services, for the server's disco#items. */
  domainItems(): Array<{ jid: string; name?: string }> {
    const items: Array<{ jid: string; name?: string }> = [];
    for (const [jid, { service }] of this.#domains) {
      if (service.listed === false) continue;
      items.push(service.name === undefined ? { jid } : { jid, name: service.name });
    }
    return items.sort((a, b) => (a.jid < b.jid ? -1 : a.jid > b.jid ? 1 : 0));
  }

  onStop(callback: () => void | Promise<void>): void {
    this.#stops.push(callback);
  }

  async stop(): Promise<void> {
    for (const callback of this.#stops.splice(0)) {
      try {
        await callback();
      } catch (error) {
        this.#server.logger.error({ err: error }, 'XMPP module stop failed');
      }
    }
  }

  // ---- used by sessions ----

  features(session: XmppSession, stage: FeatureStage): XmlElement[] {
    const found: XmlElement[] = [];
    for (const make of this.#features[stage]) {
      const element = make(session);
      if (element !== undefined) found.push(element);
    }
    return found;
  }

  filterOutbound(session: XmppSession, stanza: XmlElement): XmlElement | null {
    let current: XmlElement | null = stanza;
    for (const filter of this.#outbound) {
      try {
        current = filter.fn(current, session);
      } catch (error) {
        this.#server.logger.error({ err: error, module: filter.module }, 'XMPP outbound filter failed');
      }
      if (current === null) return null;
    }
    return current;
  }

  async nonzaFrom(session: XmppSession, element: XmlElement): Promise<boolean> {
    const entry = this.#nonzas.get(`${element.xmlns}|${element.local}`) ?? this.#nonzas.get(`${element.xmlns}|*`);
    if (entry === undefined) return false;
    await entry.handler(element, session);
    return true;
  }

  // ---- routing ----

  /** A stanza from a bound client session, `from` already stamped. */
  async fromClient(session: Session, stanza: XmlElement): Promise<void> {
    await this.fire('stanza/received', { stanza, session });
    const kind = stanza.local as StanzaKind;
    const from = session.jid as Jid;
    const toText = stanza.attr('to');
    const to = toText === undefined ? from.toBare() : Jid.parse(toText);
    if (to === undefined) return this.bounce(stanza, 'jid-malformed', 'invalid to address');
    const event: StanzaEvent = { stanza, session, from, to, redelivery: false };
    if (await this.fire(`${kind}/in`, event)) return;
    await this.#route(event, kind);
  }

  /** Route a stanza from the server or a module (its `from` as given). */
  async route(stanza: XmlElement, redelivery = false): Promise<void> {
    const kind = stanza.local as StanzaKind;
    if (kind !== 'message' && kind !== 'presence' && kind !== 'iq') throw new TypeError(`not a stanza: <${stanza.name}/>`);
    const from = Jid.parse(stanza.attr('from') ?? this.#server.domain);
    const to = Jid.parse(stanza.attr('to') ?? this.#server.domain);
    if (from === undefined || to === undefined) {
      this.#server.logger.warn(
        { from: stanza.attr('from'), to: stanza.attr('to') },
        'XMPP: a module routed a stanza with an invalid address: dropped',
      );
      return;
    }
    await this.#route({ stanza, session: undefined, from, to, redelivery }, kind);
  }

  async #route(event: StanzaEvent, kind: StanzaKind): Promise<void> {
    const { to } = event;
    if (to.domain !== this.#server.domain) {
      const service = this.#domains.get(to.domain);
      if (service !== undefined) return this.#toService(service, event, kind);
      return this.bounce(event.stanza, kind === 'iq' ? 'service-unavailable' : 'remote-server-not-found', 'no server-to-server federation');
    }
    const target = to.local === '' ? 'host' : to.isBare ? 'bare' : 'full';
    if (await this.fire(`${kind}/${target}`, event)) return;
    if (kind === 'iq') return this.#iqDefault(event, target);
    // Nothing took it (a module was left out): errors are dropped, anything else bounced.
    if (kind === 'message' && target === 'full') {
      const session = this.#server.sessionOf(to.toString());
      if (session !== undefined) {
        session.send(event.stanza);
        return;
      }
    }
    if (kind === 'presence') return;
    this.bounce(event.stanza, 'service-unavailable');
  }

  async #toService(entry: { service: DomainService; module: string }, event: StanzaEvent, kind: StanzaKind): Promise<void> {
    try {
      await entry.service.stanza(event, kind);
    } catch (error) {
      if (error instanceof StanzaErrorException) return this.bounceWith(event.stanza, error.reply(event.stanza));
      this.#server.logger.error({ err: error, to: event.to.toString(), module: entry.module }, 'XMPP domain service failed');
      this.bounce(event.stanza, 'internal-server-error');
    }
  }

  async #iqDefault(event: StanzaEvent, target: 'host' | 'bare' | 'full'): Promise<void> {
    const { stanza, from, to } = event;
    const type = stanza.attr('type');
    if (type === 'result' || type === 'error') {
      // Answers go to the full JID they are addressed to; answers to the server or an account are consumed.
      if (target === 'full') this.#server.sessionOf(to.toString())?.send(stanza);
      return;
    }
    if (type !== 'get' && type !== 'set') return this.bounce(stanza, 'bad-request', 'an IQ is of type get, set, result or error');
    const payloads = stanza.children.filter((child): child is XmlElement => typeof child !== 'string');
    // Exactly one payload in a get or set (RFC 6120 §8.2.3).
    const payload = payloads[0];
    if (payloads.length !== 1 || payload === undefined)
      return this.bounce(stanza, 'bad-request', 'an IQ get or set has exactly one payload');
    const self = target === 'bare' && from.bare === to.bare;
    const targets: IqSpec['to'][] = target === 'host' ? ['host'] : target === 'full' ? ['full'] : self ? ['self', 'account'] : ['account'];
    let entry: { handler: ModuleIqHandler; module: string } | undefined;
    for (const where of targets) {
      entry =
        this.#iq.get(iqKey(payload.xmlns, payload.local, where, type)) ??
        this.#iq.get(iqKey(payload.xmlns, payload.local, where, undefined)) ??
        this.#iq.get(iqKey(payload.xmlns, undefined, where, type)) ??
        this.#iq.get(iqKey(payload.xmlns, undefined, where, undefined));
      if (entry !== undefined) break;
    }
    if (entry === undefined) {
      if (target === 'full') {
        const session = this.#server.sessionOf(to.toString());
        if (session !== undefined) return session.send(stanza);
      }
      // An IQ the server does not understand (RFC 6120 §8.4): to the server, feature-not-implemented;
      // to an account, the server answers on its behalf with service-unavailable (RFC 6121 §8.5.1).
      return this.bounce(stanza, target === 'host' ? 'feature-not-implemented' : 'service-unavailable');
    }
    const context: IqContext = { ...event, payload, self: self || (target === 'full' && from.bare === to.bare) };
    let result: XmlElement | undefined;
    try {
      result = await entry.handler(stanza, context);
    } catch (error) {
      if (error instanceof StanzaErrorException) return this.bounceWith(stanza, error.reply(stanza));
      this.#server.logger.error({ err: error, xmlns: payload.xmlns, module: entry.module }, 'XMPP IQ handler failed');
      return this.bounce(stanza, 'internal-server-error');
    }
    // The answer comes from the address the IQ was sent to (none when the client sent it to itself with no `to`).
    this.deliverReply(
      stanza,
      xml('iq', { type: 'result', id: stanza.attr('id'), from: stanza.attr('to'), to: stanza.attr('from') }, result),
    );
  }

  bounce(stanza: XmlElement, condition: StanzaErrorCondition, text?: string, extra?: XmlElement): void {
    this.bounceWith(stanza, stanzaError(stanza, condition, text, extra));
  }

  bounceWith(stanza: XmlElement, error: XmlElement): void {
    // Never answer an error with an error (RFC 6120 §8.3.1), nor a result.
    const type = stanza.attr('type');
    if (type === 'error' || (stanza.local === 'iq' && type === 'result')) return;
    this.deliverReply(stanza, error);
  }

  /** An answer (result or error) goes straight back to the sending session, or is routed. */
  deliverReply(_original: XmlElement, reply: XmlElement): void {
    const to = reply.attr('to');
    if (to === undefined) return;
    const session = this.#server.sessionOf(to);
    if (session !== undefined) {
      session.send(reply);
      return;
    }
    const jid = Jid.parse(to);
    // An answer to a domain service (a component, a room) is the service's to take, bare or not.
    const routed = jid !== undefined && this.#domains.has(jid.domain);
    // An answer to a bare JID (a stanza the server sent on an account's behalf): nobody to take it.
    if (!routed && jid?.isBare !== false) return;
    this.route(reply).catch((error: unknown) => this.#server.logger.error({ err: error }, 'XMPP: could not route a reply'));
  }

  // ---- the per-module API ----

  api(name: string, server: ModuleApi['server']): ModuleApi {
    const routerServer = this.#server;
    return {
      server,
      domain: routerServer.domain,
      get logger() {
        return routerServer.logger;
      },
      storage: routerServer.storage,
      hook: (event, fn, priority) => this.hook(name, event, fn, priority),
      iq: (spec, handler) => this.iq(name, spec, handler),
      nonza: (spec, handler) => this.nonza(name, spec, handler),
      streamFeature: (stage, element) => this.streamFeature(stage, element),
      discoFeature: (feature, where = 'host') => {
        this.disco[where].features.add(feature);
      },
      discoIdentity: (identity, where = 'host') => {
        this.disco[where].identities.push({ ...identity });
      },
      outbound: (filter, priority) => this.outbound(name, filter, priority),
      sessionState: <T>(init: (session: XmppSession) => T) => sessionState(init),
      onStop: (callback) => this.onStop(callback),
      domainService: (domain, service) => this.domainService(name, domain, service),
      servesDomain: (domain) => this.servesDomain(domain),
      keyValue: (store: string): KeyValueStore => routerServer.storage.keyValue(store),
      archive: (store: string): ArchiveStore => routerServer.storage.archive(store),
      fire: (event, payload) => this.fire(event, payload),
      route: (stanza, options) => this.route(stanza, options?.redelivery === true),
      bounce: (stanza, condition, text, extra) => this.bounce(stanza, condition, text, extra),
      sessionsOf: (bare) => routerServer.sessionsOf(bare),
      sessionOf: (full) => routerServer.sessionOf(full),
      availableSessionsOf: (bare) => availableSessionsOf(routerServer.sessionsOf(bare)),
      userExists: (user) => routerServer.userExists(user),
      subscription: async (user, contactBare) => {
        const roster = (await routerServer.storage.keyValue('roster').get(user, 'roster')) as
          | { items?: Array<{ jid: string; subscription: string }> }
          | undefined;
        const item = roster?.items?.find((entry) => entry.jid === contactBare);
        const state = item?.subscription;
        return state === 'to' || state === 'from' || state === 'both' ? state : 'none';
      },
      takeOver: (old, replacement) => routerServer.takeOver(old as Session, replacement as Session),
      endSession: (session) => routerServer.endSession(session as Session),
      adoptSession: (session, resource, record) => routerServer.adoptSession(session as Session, resource, record),
      detachSession: (session) => routerServer.detachSession(session as Session),
      fromSession: (session, stanza) => routerServer.fromSession(session as Session, stanza),
    };
  }
}

function iqKey(xmlns: string, element: string | undefined, to: string, type: string | undefined): string {
  return `${to}|${type ?? '*'}|${xmlns}|${element ?? '*'}`;
}

/** Typed session state: one key object per module state, values in the session's moduleState map. */
export function sessionState<T>(init: (session: XmppSession) => T): SessionState<T> {
  const key = {};
  const map = (session: XmppSession): Map<object, unknown> => (session as Session).moduleState;
  return {
    get(session) {
      const states = map(session);
      if (states.has(key)) return states.get(key) as T;
      const value = init(session);
      states.set(key, value);
      return value;
    },
    peek(session) {
      return map(session).get(key) as T | undefined;
    },
    delete(session) {
      map(session).delete(key);
    },
  };
}

/** Presence state every module can read: kept by the IM module, read by the host for availability. */
export interface PresenceState {
  available: boolean;
  priority: number;
  /** The last broadcast available presence, resent to contacts who probe. */
  last?: XmlElement;
  /** The client asked for the roster: it gets roster pushes (RFC 6121 §2.1.6). */
  interested: boolean;
}

/** The presence state of a session (shared by the IM module and `availableSessionsOf`). */
export const presenceState = sessionState<PresenceState>(() => ({ available: false, priority: 0, interested: false }));

function availableSessionsOf(sessions: XmppSession[]): Array<{ session: XmppSession; priority: number }> {
  const found: Array<{ session: XmppSession; priority: number }> = [];
  for (const session of sessions) {
    const state = presenceState.peek(session);
    if (state?.available === true) found.push({ session, priority: state.priority });
  }
  return found;
}
