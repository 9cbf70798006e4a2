import { randomBytes } from 'node:crypto';
import { XmppConfigError } from '../config-error.js';
import { type XmlElement, xml } from '../element.js';
import { Jid } from '../jid.js';
import type { IqContext, ModuleApi, SessionState, StanzaEvent, XmppModule } from '../module.js';
import { NS_DATA, NS_PUBSUB } from '../namespaces.js';
import { parseXml } from '../parse.js';
import type { XmppSession } from '../session.js';
import { StanzaErrorException } from '../stanza-error.js';
import { updateValue } from '../stores/update.js';
import { configuredComponentDomains } from './component.js';
import { buildDataForm, type DataFormField } from './data-form.js';

// Push notifications (XEP-0357 0.4.1, urn:xmpp:push:0), the server's part, as Prosody's
// mod_cloud_notify: a client (a phone app) registers its app server's push service (`jid`, and a
// `node` naming the device) with an `<enable/>` IQ to its own account; when a message arrives
// that the device would miss — the account has no connected resource (the message goes to
// offline storage), or the device's session hibernates under stream management (XEP-0198) —
// the server publishes a `urn:xmpp:push:summary` form to that node, and the app server wakes
// the device through Apple's or Google's push service. Registrations are kept per account and
// device in `api.keyValue('push')` (they survive restarts). An error from the app server disables
// the registration (XEP-0357 §7.1), unless it is of type `wait` (then only after `maxErrors` in a
// row). Since this server has no server-to-server connections, the app server must be reachable
// here: an external component (XEP-0114) of this server, or one of its accounts.

/** XEP-0357's namespace. */
export const NS_PUSH = 'urn:xmpp:push:0';
/** The FORM_TYPE of the notification's summary form. */
export const NS_PUSH_SUMMARY = 'urn:xmpp:push:summary';
const NS_CARBONS = 'urn:xmpp:carbons:2';
const NS_FORWARD = 'urn:xmpp:forward:0';

export interface PushOptions {
  /**
   * Registrations (devices) per account. Past it, enabling one more drops the one enabled longest
   * ago, as Prosody's `push_max_devices`. Default 5.
   */
  maxRegistrations?: number;
  /** Put the message's body into `last-message-body`. Default false: the app server (and Apple or Google) never see what was written. */
  includeBody?: boolean;
  /** Put the sender's bare JID into `last-message-sender`. Default false, for the same reason. */
  includeSender?: boolean;
  /**
   * Without `includeBody`, an important message (a body, an encrypted payload, a call) still gets
   * this text as `last-message-body`, so that apps show a visible notification (iOS needs one),
   * as Prosody's `push_notification_important_body`. Default `'New Message!'`; `''` leaves it out.
   */
  importantBody?: string;
  /**
   * At most one push per registration in this window: more messages within it are counted and go
   * out in one push at its end. Default 5 000 ms.
   */
  minIntervalMs?: number;
  /** An app server that has not answered a push after this long counts it as a transient error. Default 30 000 ms. */
  responseTimeoutMs?: number;
  /** Transient errors (type `wait`, no answer, app server not connected) in a row that disable a registration. Default 16, as Prosody. */
  maxErrors?: number;
}

/** The module's name in a server's module list. */
export const PUSH = 'push';

/** A registration as stored (owner: the account; key: `jid<node`). */
interface Registration {
  [key: string]: string | number | undefined;
  jid: string;
  node: string;
  /** The publish-options form, serialized (XEP-0357 §5: sent with every publish). */
  options?: string | undefined;
  /** When it was enabled (ms): the oldest goes first past `maxRegistrations`. */
  since: number;
}

/** What one push summarises. */
interface Pending {
  messages: number;
  subscriptions: number;
  sender: string | undefined;
  body: string | undefined;
  important: boolean;
}

/** Per registration in memory: throttling, counts since the account was last online, errors. */
interface Tracker {
  user: string;
  key: string;
  lastSent: number;
  timer: NodeJS.Timeout | undefined;
  pending: Pending | undefined;
  /** Messages and subscription requests since the account was last online. */
  messageCount: number;
  subscriptionCount: number;
  errors: number;
}

const MAX_NODE = 1023;
const MAX_OPTIONS = 8 * 1024;
const MAX_TRACKERS = 100_000;
const MAX_IN_FLIGHT = 10_000;

function option(name: string, value: number | undefined, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min) {
    throw new XmppConfigError('PB_ERR_XMPP_OPTION', `push: ${name} must be a number ≥ ${min}, got ${String(value)}`);
  }
  return value;
}

function flag(name: string, value: boolean | undefined): boolean {
  if (value !== undefined && typeof value !== 'boolean') {
    throw new XmppConfigError('PB_ERR_XMPP_OPTION', `push: ${name} must be true or false, got ${JSON.stringify(value)}`);
  }
  return value ?? false;
}

interface Settings {
  maxRegistrations: number;
  includeBody: boolean;
  includeSender: boolean;
  importantBody: string;
  minIntervalMs: number;
  responseTimeoutMs: number;
  maxErrors: number;
}

/** Push notifications (XEP-0357): enable/disable per device, publishes to the app server for messages a device would miss. */
export function push(options: PushOptions = {}): XmppModule {
  if (options === null || typeof options !== 'object') throw new XmppConfigError('PB_ERR_XMPP_OPTION', 'push: options must be an object');
  if (options.importantBody !== undefined && typeof options.importantBody !== 'string') {
    throw new XmppConfigError('PB_ERR_XMPP_OPTION', 'push: importantBody must be a string');
  }
  const settings: Settings = {
    maxRegistrations: Math.floor(option('maxRegistrations', options.maxRegistrations, 5, 1)),
    includeBody: flag('includeBody', options.includeBody),
    includeSender: flag('includeSender', options.includeSender),
    importantBody: options.importantBody ?? 'New Message!',
    minIntervalMs: option('minIntervalMs', options.minIntervalMs, 5000, 0),
    responseTimeoutMs: option('responseTimeoutMs', options.responseTimeoutMs, 30_000, 1),
    maxErrors: Math.floor(option('maxErrors', options.maxErrors, 16, 1)),
  };
  return {
    name: PUSH,
    setup(api) {
      new Push(api, settings);
    },
  };
}

/** The registration's key in the store: Prosody's push identifier. */
function keyOf(jid: string, node: string): string {
  return `${jid}<${node}`;
}

/** Is this stanza worth waking a phone for (Prosody's is_important)? Undefined when not a message to push at all. */
function classify(stanza: XmlElement): { body: string | undefined; important: boolean } | undefined {
  if (stanza.local !== 'message') return undefined;
  let message = stanza;
  // A carbon: the message inside; a copy of what the user sent elsewhere wakes nobody.
  const sent = stanza.getChild('sent', NS_CARBONS);
  if (sent !== undefined) return undefined;
  const received = stanza.getChild('received', NS_CARBONS)?.getChild('forwarded', NS_FORWARD)?.getChild('message');
  if (received !== undefined) message = received;
  const type = message.attr('type') ?? 'normal';
  if (type === 'headline' || type === 'error') return undefined;
  const body = message.getChildText('body');
  if (type === 'groupchat' && message.getChild('subject') !== undefined && body === undefined) return undefined;
  const encrypted =
    message.getChild('encrypted', 'eu.siacs.conversations.axolotl') !== undefined ||
    message.getChild('encrypted', 'urn:xmpp:omemo:2') !== undefined ||
    message.getChild('x', 'jabber:x:encrypted') !== undefined ||
    message.getChild('openpgp', 'urn:xmpp:openpgp:0') !== undefined;
  // A call (XEP-0353 Jingle Message Initiation).
  const call = message.getChild('propose', 'urn:xmpp:jingle-message:0') !== undefined;
  if (body !== undefined && body !== '') return { body, important: true };
  if (encrypted || call) return { body: undefined, important: true };
  return undefined;
}

class Push {
  readonly #api: ModuleApi;
  readonly #settings: Settings;
  readonly #store;
  /** Which registration the client on a session enabled (for hibernation: only that device is woken). */
  readonly #session: SessionState<{ key: string | undefined }>;
  /** user → registration key → tracker (Map order: least recently used user first). */
  readonly #trackers = new Map<string, Map<string, Tracker>>();
  /** Publishes awaiting the app server's answer, by IQ id. */
  readonly #inFlight = new Map<string, { user: string; key: string; jid: string; timer: NodeJS.Timeout }>();
  /** Per-user serialisation of registration writes. */
  readonly #locks = new Map<string, Promise<unknown>>();
  #stopped = false;
  #lastSince = 0;

  constructor(api: ModuleApi, settings: Settings) {
    this.#api = api;
    this.#settings = settings;
    this.#store = api.keyValue('push');
    this.#session = api.sessionState(() => ({ key: undefined }));
    api.discoFeature(NS_PUSH, 'account');
    api.iq({ xmlns: NS_PUSH, element: 'enable', to: 'self', type: 'set' }, (_iq, context) => this.#enable(context));
    api.iq({ xmlns: NS_PUSH, element: 'disable', to: 'self', type: 'set' }, (_iq, context) => this.#disable(context));

    // An account with no available resource: the message goes to offline storage (im's hook, -1000, after this one).
    api.hook('message/offline', (event) => this.#offline(event), 10);
    // A subscription request for an account with nobody online (kept for the next login by im).
    api.hook('presence/bare', (event) => this.#subscription(event), 10);
    // A session that hibernates (XEP-0198): its own registration, as the stanza is queued for it.
    // After CSI (which holds back what is not urgent), before smacks (-100 000) queues it.
    api.outbound((stanza, session) => this.#outbound(stanza, session), -90_000);
    api.hook('session/hibernating', (event) => this.#hibernating(event.session, event.queue));
    // The app server's answers come to the server's domain.
    api.hook('iq/host', (event) => this.#answer(event), 1000);
    // Back online: counts start again.
    api.hook('presence/initial', ({ session }) => this.#online(session));
    api.hook('session/resumed', ({ session }) => this.#online(session));
    api.hook('account/deleted', async ({ user }) => {
      this.#forget(user);
      await this.#store.clear(user);
    });
    api.onStop(() => this.#stop());
  }

  // ---- enable / disable ----------------------------------------------------------------------

  async #enable(context: IqContext): Promise<undefined> {
    const enable = context.payload;
    const user = context.from.local;
    const jidText = enable.attr('jid');
    const node = enable.attr('node');
    if (jidText === undefined || jidText === '') throw new StanzaErrorException('bad-request', "<enable/> needs the push service's 'jid'");
    if (node === undefined || node === '') throw new StanzaErrorException('bad-request', "<enable/> needs the device's 'node'");
    if (node.length > MAX_NODE) throw new StanzaErrorException('not-acceptable', `the node is longer than ${MAX_NODE} characters`);
    const jid = Jid.parse(jidText);
    if (jid === undefined) throw new StanzaErrorException('jid-malformed', 'the push service JID is not a valid JID');
    if (jid.bare === context.from.bare) throw new StanzaErrorException('bad-request', 'the push service must be another JID than your own');
    await this.#checkService(jid);
    const form = enable.getChild('x', NS_DATA);
    let options: string | undefined;
    if (form !== undefined) {
      options = form.toString();
      if (options.length > MAX_OPTIONS)
        throw new StanzaErrorException('not-acceptable', `publish-options larger than ${MAX_OPTIONS} bytes`);
    }
    const service = jid.toString();
    const key = keyOf(service, node);
    await this.#locked(user, async () => {
      // Strictly increasing, so that two enables in one millisecond still have an order.
      this.#lastSince = Math.max(Date.now(), this.#lastSince + 1);
      const registration: Registration = { jid: service, node, since: this.#lastSince };
      if (options !== undefined) registration.options = options;
      await this.#store.set(user, key, registration as { [key: string]: string | number });
      // Then past the limit the registrations enabled longest ago go (Prosody keeps the most recent
      // devices). Stored first, trimmed after: the lock above is this process's, and another process
      // sharing the storage may be enabling a device of the same account meanwhile. Each trims by what it
      // reads after its own write, with the same rule (oldest `since`, then key), so whichever reads last
      // sees both new registrations and the account ends at the limit, never past it.
      await this.#trim(user);
    });
    if (context.session !== undefined) this.#session.get(context.session).key = key;
    this.#api.logger.debug({ user, push: key }, 'push enabled');
    return undefined;
  }

  /**
   * Only an app server this server can reach: no server-to-server connections, so a service on a
   * domain that is neither this server's, a domain service (a component connected now) nor a
   * configured component would never get a publish. XEP-0357 leaves the check to the server; the
   * error is the one routing to it would give.
   */
  async #checkService(jid: Jid): Promise<void> {
    if (jid.domain === this.#api.domain) {
      // A client of this server acting as an app server: its full JID (a bare JID or the server
      // itself would take the publish as a PEP or server request, never as a push).
      if (jid.local === '' || jid.isBare) {
        throw new StanzaErrorException(
          'not-acceptable',
          `a push service on ${jid.domain} is a client's full JID (user@${jid.domain}/resource)`,
        );
      }
      if (!(await this.#api.userExists(jid.local)))
        throw new StanzaErrorException('item-not-found', `no push service at ${jid.toString()}`);
      return;
    }
    if (this.#api.servesDomain(jid.domain) || configuredComponentDomains(this.#api.server).has(jid.domain)) return;
    throw new StanzaErrorException(
      'remote-server-not-found',
      `${jid.domain} is not reachable from this server (no server-to-server connections): the app server must be a component of this server (XEP-0114)`,
    );
  }

  async #disable(context: IqContext): Promise<undefined> {
    const disable = context.payload;
    const user = context.from.local;
    const jidText = disable.attr('jid');
    if (jidText === undefined || jidText === '') throw new StanzaErrorException('bad-request', "<disable/> needs the push service's 'jid'");
    const jid = Jid.parse(jidText);
    if (jid === undefined) throw new StanzaErrorException('jid-malformed', 'the push service JID is not a valid JID');
    const node = disable.attr('node');
    const service = jid.toString();
    await this.#locked(user, async () => {
      for (const key of await this.#store.keys(user)) {
        const value = (await this.#store.get(user, key)) as Registration | undefined;
        if (value?.jid !== service || (node !== undefined && value.node !== node)) continue;
        await this.#store.set(user, key, undefined);
        this.#drop(user, key);
        this.#api.logger.debug({ user, push: key }, 'push disabled');
      }
    });
    return undefined;
  }

  // ---- what triggers a push ------------------------------------------------------------------

  #offline(event: StanzaEvent): undefined {
    // A message routed again after a hibernation ended was pushed for when it was queued.
    if (event.redelivery) return;
    const summary = classify(event.stanza);
    if (summary === undefined) return;
    this.#notifyAll(event.to.local, { messages: 1, subscriptions: 0, sender: event.from.bare, ...summary });
  }

  #subscription(event: StanzaEvent): undefined {
    if (event.stanza.attr('type') !== 'subscribe' || event.redelivery) return;
    const to = event.to;
    if (to.domain !== this.#api.domain || to.local === '' || to.bare === event.from.bare) return;
    if (this.#api.availableSessionsOf(to.bare).length > 0) return;
    this.#notifyAll(to.local, { messages: 0, subscriptions: 1, sender: event.from.bare, body: undefined, important: false });
  }

  #outbound(stanza: XmlElement, session: XmppSession): XmlElement | null {
    if (session.stage !== 'hibernating') return stanza;
    const key = this.#session.peek(session)?.key;
    const user = session.user;
    if (key === undefined || user === undefined) return stanza;
    const summary = classify(stanza);
    if (summary === undefined) return stanza;
    const from = Jid.parse(stanza.attr('from') ?? '');
    this.#notify(user, key, { messages: 1, subscriptions: 0, sender: from?.bare, ...summary });
    return stanza;
  }

  /** A device's link died with stanzas it never acknowledged: one push for the important ones (Prosody's hibernation start). */
  #hibernating(session: XmppSession, queue: readonly XmlElement[]): undefined {
    const key = this.#session.peek(session)?.key;
    const user = session.user;
    if (key === undefined || user === undefined) return;
    let messages = 0;
    let last: Pending | undefined;
    for (const stanza of queue) {
      const summary = classify(stanza);
      if (summary === undefined) continue;
      messages++;
      last = { messages: 0, subscriptions: 0, sender: Jid.parse(stanza.attr('from') ?? '')?.bare, ...summary };
    }
    if (last !== undefined) this.#notify(user, key, { ...last, messages });
  }

  #online(session: XmppSession): undefined {
    const user = session.user;
    if (user === undefined) return;
    for (const tracker of this.#trackers.get(user)?.values() ?? []) {
      tracker.messageCount = 0;
      tracker.subscriptionCount = 0;
      tracker.pending = undefined;
      if (tracker.timer !== undefined) clearTimeout(tracker.timer);
      tracker.timer = undefined;
    }
  }

  #notifyAll(user: string, what: Pending): void {
    if (this.#stopped) return;
    this.#store.keys(user).then(
      (keys) => {
        for (const key of keys) this.#notify(user, key, what);
      },
      (error: unknown) => this.#api.logger.error({ err: error, user }, 'push: could not read registrations'),
    );
  }

  // ---- throttled publishing ------------------------------------------------------------------

  #tracker(user: string, key: string): Tracker {
    let trackers = this.#trackers.get(user);
    if (trackers === undefined) {
      if (this.#trackers.size >= MAX_TRACKERS) {
        // The least recently notified account with nothing waiting goes.
        for (const [oldUser, old] of this.#trackers) {
          if ([...old.values()].some((tracker) => tracker.timer !== undefined)) continue;
          this.#trackers.delete(oldUser);
          break;
        }
      }
      trackers = new Map();
    } else {
      this.#trackers.delete(user);
    }
    this.#trackers.set(user, trackers);
    let tracker = trackers.get(key);
    if (tracker === undefined) {
      tracker = { user, key, lastSent: 0, timer: undefined, pending: undefined, messageCount: 0, subscriptionCount: 0, errors: 0 };
      trackers.set(key, tracker);
    }
    return tracker;
  }

  #notify(user: string, key: string, what: Pending): void {
    if (this.#stopped) return;
    const tracker = this.#tracker(user, key);
    tracker.messageCount += what.messages;
    tracker.subscriptionCount += what.subscriptions;
    const pending = tracker.pending;
    if (pending === undefined) {
      tracker.pending = { ...what };
    } else {
      pending.messages += what.messages;
      pending.subscriptions += what.subscriptions;
      if (what.messages > 0) {
        pending.sender = what.sender;
        pending.body = what.body;
      }
      pending.important ||= what.important;
    }
    if (tracker.timer !== undefined) return;
    const wait = tracker.lastSent + this.#settings.minIntervalMs - Date.now();
    if (wait <= 0) {
      this.#flush(tracker);
      return;
    }
    tracker.timer = setTimeout(() => {
      tracker.timer = undefined;
      this.#flush(tracker);
    }, wait);
    tracker.timer.unref();
  }

  #flush(tracker: Tracker): void {
    const pending = tracker.pending;
    tracker.pending = undefined;
    if (pending === undefined || this.#stopped) return;
    tracker.lastSent = Date.now();
    this.#publish(tracker, pending).catch((error: unknown) =>
      this.#api.logger.error({ err: error, user: tracker.user, push: tracker.key }, 'push: publish failed'),
    );
  }

  async #publish(tracker: Tracker, pending: Pending): Promise<void> {
    const { user, key } = tracker;
    const registration = (await this.#store.get(user, key)) as Registration | undefined;
    if (registration === undefined || typeof registration.jid !== 'string') return;
    const service = Jid.parse(registration.jid);
    if (service === undefined) return;
    if (!this.#api.servesDomain(service.domain)) {
      // The app server (a component) is not connected now: a transient error.
      this.#api.logger.debug({ user, push: key }, 'push: the app server is not connected');
      await this.#failed(tracker, registration, 'wait');
      return;
    }
    const fields: DataFormField[] = [{ var: 'message-count', values: [String(tracker.messageCount)] }];
    if (tracker.subscriptionCount > 0) fields.push({ var: 'pending-subscription-count', values: [String(tracker.subscriptionCount)] });
    if (this.#settings.includeSender && pending.sender !== undefined && pending.messages > 0) {
      fields.push({ var: 'last-message-sender', values: [pending.sender] });
    }
    const body = this.#settings.includeBody ? pending.body : undefined;
    if (body !== undefined) fields.push({ var: 'last-message-body', values: [body] });
    else if (pending.important && this.#settings.importantBody !== '') {
      fields.push({ var: 'last-message-body', values: [this.#settings.importantBody] });
    }
    const id = `push-${randomBytes(9).toString('base64url')}`;
    const pubsub = xml(
      'pubsub',
      { xmlns: NS_PUBSUB },
      xml(
        'publish',
        { node: registration.node },
        xml('item', {}, xml('notification', { xmlns: NS_PUSH }, buildDataForm({ type: 'submit', formType: NS_PUSH_SUMMARY, fields }))),
      ),
    );
    const options = typeof registration.options === 'string' ? parseXml(registration.options) : undefined;
    if (options !== undefined) pubsub.append(xml('publish-options', {}, options));
    // From the server's domain, as Prosody: the app server learns which server, not which account.
    const publish = xml('iq', { type: 'set', id, from: this.#api.domain, to: registration.jid }, pubsub);
    if (this.#inFlight.size >= MAX_IN_FLIGHT) {
      this.#api.logger.warn({ user, push: key }, 'push: too many publishes awaiting an answer: dropped');
      return;
    }
    const timer = setTimeout(() => {
      if (this.#inFlight.delete(id)) this.#failedLogged(tracker, registration, 'wait');
    }, this.#settings.responseTimeoutMs);
    timer.unref();
    this.#inFlight.set(id, { user, key, jid: registration.jid, timer });
    this.#api.logger.debug({ user, push: key, important: pending.important }, 'push: publishing');
    await this.#api.route(publish);
  }

  /** The app server's answer to a publish. */
  #answer(event: StanzaEvent): boolean | undefined {
    const stanza = event.stanza;
    const type = stanza.attr('type');
    if (type !== 'result' && type !== 'error') return undefined;
    const id = stanza.attr('id');
    const flight = id === undefined ? undefined : this.#inFlight.get(id);
    if (id === undefined || flight === undefined || event.from.toString() !== flight.jid) return undefined;
    this.#inFlight.delete(id);
    clearTimeout(flight.timer);
    const tracker = this.#tracker(flight.user, flight.key);
    if (type === 'result') {
      tracker.errors = 0;
      return true;
    }
    const error = stanza.getChild('error');
    const errorType = error?.attr('type') === 'wait' ? 'wait' : 'permanent';
    const condition = error?.children.find((child) => typeof child !== 'string' && child.local !== 'text');
    this.#api.logger.info(
      {
        user: flight.user,
        push: flight.key,
        type: error?.attr('type'),
        condition: typeof condition === 'string' ? undefined : condition?.local,
      },
      'push: the app server answered with an error',
    );
    this.#store.get(flight.user, flight.key).then(
      (value) => {
        const registration = value as Registration | undefined;
        if (registration !== undefined) this.#failedLogged(tracker, registration, errorType);
      },
      (failure: unknown) => this.#api.logger.error({ err: failure }, 'push: could not read a registration'),
    );
    return true;
  }

  #failedLogged(tracker: Tracker, registration: Registration, kind: 'wait' | 'permanent'): void {
    this.#failed(tracker, registration, kind).catch((error: unknown) =>
      this.#api.logger.error({ err: error, user: tracker.user, push: tracker.key }, 'push: could not disable a registration'),
    );
  }

  /** A failed publish: a permanent error disables the registration (XEP-0357 §7.1), transient ones after `maxErrors` in a row. */
  async #failed(tracker: Tracker, registration: Registration, kind: 'wait' | 'permanent'): Promise<void> {
    tracker.errors++;
    if (kind === 'wait' && tracker.errors < this.#settings.maxErrors) return;
    const { user, key } = tracker;
    await this.#locked(user, () =>
      // Enabled again meanwhile (here or on another process sharing the storage): that is a new
      // registration, kept. A compare-and-set, so that a re-enable between the read and the delete stays.
      updateValue<Registration>(this.#store, user, key, (current) =>
        current === undefined || current.since !== registration.since ? current : undefined,
      ),
    );
    this.#drop(user, key);
    this.#api.logger.info({ user, push: key, kind }, 'push registration disabled after an error from the app server');
  }

  /** Forget a registration in memory: its tracker, and sessions that enabled it. */
  #drop(user: string, key: string): void {
    const trackers = this.#trackers.get(user);
    const tracker = trackers?.get(key);
    if (tracker?.timer !== undefined) clearTimeout(tracker.timer);
    trackers?.delete(key);
    if (trackers?.size === 0) this.#trackers.delete(user);
    for (const session of this.#api.sessionsOf(`${user}@${this.#api.domain}`)) {
      const state = this.#session.peek(session);
      if (state?.key === key) state.key = undefined;
    }
  }

  #forget(user: string): void {
    for (const key of [...(this.#trackers.get(user)?.keys() ?? [])]) this.#drop(user, key);
  }

  /** Removes an account's oldest registrations past `maxRegistrations` (oldest `since` first, then by key). */
  async #trim(user: string): Promise<void> {
    const keys = await this.#store.keys(user);
    if (keys.length <= this.#settings.maxRegistrations) return;
    const all: Array<{ key: string; since: number }> = [];
    for (const existing of keys) {
      const value = (await this.#store.get(user, existing)) as Registration | undefined;
      // Gone meanwhile (disabled, or trimmed by another process): nothing to count.
      if (value !== undefined) all.push({ key: existing, since: typeof value.since === 'number' ? value.since : 0 });
    }
    all.sort((a, b) => a.since - b.since || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    for (const old of all.slice(0, Math.max(0, all.length - this.#settings.maxRegistrations))) {
      await this.#store.set(user, old.key, undefined);
      this.#drop(user, old.key);
      this.#api.logger.info({ user, push: old.key }, 'push registration dropped: too many devices');
    }
  }

  #locked<T>(user: string, work: () => Promise<T>): Promise<T> {
    const previous = this.#locks.get(user) ?? Promise.resolve();
    const next = previous.then(work, work);
    const settled = next.then(
      () => undefined,
      () => undefined,
    );
    this.#locks.set(user, settled);
    void settled.then(() => {
      if (this.#locks.get(user) === settled) this.#locks.delete(user);
    });
    return next;
  }

  #stop(): void {
    this.#stopped = true;
    for (const trackers of this.#trackers.values()) {
      for (const tracker of trackers.values()) if (tracker.timer !== undefined) clearTimeout(tracker.timer);
    }
    for (const flight of this.#inFlight.values()) clearTimeout(flight.timer);
    this.#inFlight.clear();
    this.#trackers.clear();
  }
}
