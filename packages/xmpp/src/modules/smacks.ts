import { randomBytes } from 'node:crypto';
import { XmppConfigError } from '../config-error.js';
import { XmlElement, xml } from '../element.js';
import { Jid } from '../jid.js';
import type { ModuleApi, SessionState, XmppModule } from '../module.js';
import { NS_CLIENT, NS_DELAY, NS_SM, NS_STANZAS } from '../namespaces.js';
import { parseXml } from '../parse.js';
import type { XmppSession } from '../session.js';
import { StreamError } from '../stream-error.js';

// Stream management (XEP-0198 1.6, urn:xmpp:sm:3) with resumption, the way Prosody's mod_smacks
// does it: `h` counts the client's stanzas, every stanza written to the client waits in a queue
// until the client's `<a h/>` covers it, and a session whose connection is lost hibernates — it
// stays routed, what is sent to it queues — until the client resumes it on a new stream (the queue
// is re-sent: nothing lost, nothing twice) or the resumption timeout ends it (its unacknowledged
// messages are routed again: another resource or offline storage; IQs get an error back).
// While a session hibernates its queue is also written to `api.keyValue('smacks')`, so a crash
// does not lose it: the next start routes what it finds there.

export interface SmacksOptions {
  /** How long a session whose connection was lost may be resumed; sent as `max` (seconds). Default 600 s (Prosody's `smacks_hibernation_time`). */
  resumeTimeoutMs?: number;
  /** Ask for an ack (`<r/>`) once more than this many stanzas are unacknowledged; 0 (the default, as Prosody's `smacks_max_unacked_stanzas`) asks after every burst. */
  maxUnackedStanzas?: number;
  /** Ask for an ack anyway when stanzas have waited this long unacknowledged. Default 30 s (Prosody's `smacks_max_ack_delay`). */
  ackDelayMs?: number;
  /**
   * Unacknowledged stanzas one session may hold. Past it a connected session is closed with
   * `<resource-constraint/>` and a hibernating one ends; either way its unacknowledged messages
   * are routed again. Default 500 (Prosody's `smacks_max_queue_size`).
   */
  maxQueueSize?: number;
  /** Hibernating sessions per account; when one more hibernates, the oldest ends. Default 10 (Prosody's `smacks_max_hibernated_sessions`). */
  maxHibernatedSessions?: number;
  /** How many timed-out SM-IDs per account keep their `h`, so that a late `<resume/>` learns what was handled (`<failed h=…>`). Default 10. */
  maxOldSessions?: number;
}

/** The module's name in a server's module list. */
export const SMACKS = 'smacks';

interface Queued {
  stanza: XmlElement;
  /** When it was first sent (ms): the `<delay/>` stamp when it is sent again. */
  stamp: number;
}

interface SmState {
  enabled: boolean;
  /** The SM-ID, when the client asked for resumption. */
  token: string | undefined;
  /** Seconds the session may be resumed for (what `<enabled max>` said). */
  maxSeconds: number;
  /** Stanzas handled from the client (mod 2^32). */
  inbound: number;
  /** Stanzas the client acknowledged (mod 2^32); sent = acked + queue.length. */
  acked: number;
  queue: Queued[];
  /** An `<r/>` is out and not yet answered. */
  awaitingAck: boolean;
  /** The sent count when the last `<r/>` went out (no second request for the same count). */
  lastRequested: number;
  requestScheduled: boolean;
  ackTimer: NodeJS.Timeout | undefined;
  /** Since when (ms) the session hibernates. */
  hibernating: number | undefined;
  hibernationTimer: NodeJS.Timeout | undefined;
  /** The session ended: its queue was (or is being) routed again. */
  done: boolean;
  /** Store writes of this session, in order. */
  persisting: Promise<void>;
}

/** What the store keeps of a hibernating session (owner: the account, key: the SM-ID). */
interface StoredSession {
  [key: string]: string | number | Array<[number, string]>;
  resource: string;
  inbound: number;
  acked: number;
  since: number;
  /** [stamp, xml] */
  queue: Array<[number, string]>;
}

const U32 = 2 ** 32;
const INDEX_KEY = 'hibernating';
const OLD_PREFIX = 'old:';
/** The key an ack reads (never written): its answer comes once the writes queued before it committed. */
const BARRIER_KEY = 'ack-barrier';

/** A stream error with XEP-0198's `<handled-count-too-high/>` beside `<undefined-condition/>`. */
export class HandledCountTooHigh extends StreamError {
  readonly h: number;
  readonly sendCount: number;
  constructor(h: number, sendCount: number) {
    super('undefined-condition', `You acknowledged ${h} stanzas, but I only sent you ${sendCount} so far.`);
    this.h = h;
    this.sendCount = sendCount;
  }

  override toElement(prefix = 'stream'): XmlElement {
    return super
      .toElement(prefix)
      .append(xml('handled-count-too-high', { xmlns: NS_SM, h: String(this.h), 'send-count': String(this.sendCount) }));
  }
}

function isStanza(element: XmlElement): boolean {
  return (
    (element.xmlns === '' || element.xmlns === NS_CLIENT) &&
    (element.name === 'message' || element.name === 'presence' || element.name === 'iq')
  );
}

function failed(condition: string, attrs: Record<string, string | undefined> = {}): XmlElement {
  return xml('failed', { xmlns: NS_SM, ...attrs }, xml(condition, { xmlns: NS_STANZAS }));
}

/** An unsigned 32-bit `h`, or undefined. */
function parseH(value: string | undefined): number | undefined {
  if (value === undefined || !/^\d{1,10}$/.test(value)) return undefined;
  const h = Number(value);
  return h < U32 ? h : undefined;
}

/** A copy of a stanza with a `<delay/>` (XEP-0203) saying when it was first sent, unless it has one (IQs never get one). */
function withDelay(stanza: XmlElement, stamp: number, from: string): XmlElement {
  if (stanza.name === 'iq' || stanza.getChild('delay', NS_DELAY) !== undefined) return stanza;
  const delay = xml('delay', { xmlns: NS_DELAY, from, stamp: new Date(stamp).toISOString().replace(/\.\d{3}Z$/, 'Z') });
  return new XmlElement(stanza.name, { ...stanza.attrs }, [...stanza.children, delay], stanza.xmlns);
}

function positive(name: string, value: number | undefined, fallback: number, min = 0): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value < min) {
    throw new XmppConfigError('PB_ERR_XMPP_OPTION', `smacks: ${name} must be a number ≥ ${min}, not ${String(value)}`);
  }
  return value;
}

/** Stream management (XEP-0198) with resumption. */
export function smacks(options: SmacksOptions = {}): XmppModule {
  const resumeTimeoutMs = positive('resumeTimeoutMs', options.resumeTimeoutMs, 600_000, 1000);
  const maxUnacked = positive('maxUnackedStanzas', options.maxUnackedStanzas, 0);
  const ackDelayMs = positive('ackDelayMs', options.ackDelayMs, 30_000, 1);
  const maxQueue = positive('maxQueueSize', options.maxQueueSize, 500, 1);
  const maxHibernated = positive('maxHibernatedSessions', options.maxHibernatedSessions, 10, 1);
  const maxOld = positive('maxOldSessions', options.maxOldSessions, 10);
  return {
    name: SMACKS,
    setup(api) {
      new StreamManagement(api, { resumeTimeoutMs, maxUnacked, ackDelayMs, maxQueue, maxHibernated, maxOld });
    },
  };
}

interface Limits {
  resumeTimeoutMs: number;
  maxUnacked: number;
  ackDelayMs: number;
  maxQueue: number;
  maxHibernated: number;
  maxOld: number;
}

class StreamManagement {
  readonly #api: ModuleApi;
  readonly #limits: Limits;
  readonly #state: SessionState<SmState>;
  /** SM-ID → the session it resumes (after a resume: the session that took over). */
  readonly #tokens = new Map<string, XmppSession>();
  readonly #store;
  /** Writes of the index of hibernating sessions, in order. */
  #indexWrites: Promise<void> = Promise.resolve();
  #stopping = false;
  /** The recovery of sessions a crash left in the store, while it runs. */
  #recovering: Promise<void> | undefined;
  /** Sessions being ended: their stanzas are being routed again. */
  readonly #closing = new Set<Promise<void>>();

  constructor(api: ModuleApi, limits: Limits) {
    this.#api = api;
    this.#limits = limits;
    this.#store = api.keyValue('smacks');
    this.#state = api.sessionState<SmState>(() => ({
      enabled: false,
      token: undefined,
      maxSeconds: Math.round(limits.resumeTimeoutMs / 1000),
      inbound: 0,
      acked: 0,
      queue: [],
      awaitingAck: false,
      lastRequested: -1,
      requestScheduled: false,
      ackTimer: undefined,
      hibernating: undefined,
      hibernationTimer: undefined,
      done: false,
      persisting: Promise.resolve(),
    }));

    // Offered with resource binding (after SASL), as Prosody does; `<enable/>` still waits for the bind.
    api.streamFeature('bind', (session) => (session.authenticated ? xml('sm', { xmlns: NS_SM }, xml('optional')) : undefined));

    api.nonza({ xmlns: NS_SM, element: 'enable' }, (element, session) => this.#enable(element, session));
    api.nonza({ xmlns: NS_SM, element: 'resume' }, (element, session) => this.#resume(element, session));
    api.nonza({ xmlns: NS_SM, element: 'r' }, (_element, session) => this.#request(session));
    api.nonza({ xmlns: NS_SM, element: 'a' }, (element, session) => this.#ack(element, session));

    // h: every stanza the client sends, counted before anything else looks at it.
    const count = (event: { session: XmppSession | undefined }): undefined => {
      if (event.session === undefined) return;
      const state = this.#state.peek(event.session);
      if (state?.enabled) state.inbound = (state.inbound + 1) % U32;
    };
    api.hook('message/in', count, 100_000);
    api.hook('presence/in', count, 100_000);
    api.hook('iq/in', count, 100_000);

    // Last of the outbound filters: what is written is what the client counts.
    api.outbound((stanza, session) => this.#outbound(stanza, session), -100_000);

    api.hook('session/disconnected', (event) => this.#disconnected(event.session, event.clean), 100);
    api.hook('session/closed', (event) => {
      const closing = this.#closed(event.session);
      this.#closing.add(closing);
      void closing.finally(() => this.#closing.delete(closing));
    });
    api.onStop(() => this.#stop());

    // A crash (or a stop that could not finish) left hibernating sessions in the store: their
    // clients cannot resume them on this process, so their messages go where messages to an
    // unavailable resource go, and the SM-ID keeps its h for a late <resume/>.
    setImmediate(() => {
      // A server stopped before it got here leaves the store for its next start.
      if (this.#stopping) return;
      this.#recovering = this.#recover().catch((error: unknown) =>
        api.logger.error({ err: error }, 'smacks: could not recover stored sessions'),
      );
    });
  }

  // ---- enabling, acks ----

  #enable(element: XmlElement, session: XmppSession): void {
    const state = this.#state.get(session);
    // XEP-0198 §3: after resource binding only; at most once per stream.
    if (session.jid === undefined || state.enabled) {
      session.sendRaw(failed('unexpected-request'));
      return;
    }
    state.enabled = true;
    state.inbound = 0;
    state.acked = 0;
    state.queue = [];
    const resume = element.attr('resume');
    if (resume === 'true' || resume === '1') {
      const token = randomBytes(18).toString('base64url');
      state.token = token;
      this.#tokens.set(token, session);
      // The client's preferred maximum, when shorter than ours.
      const preferred = Number(element.attr('max'));
      if (Number.isInteger(preferred) && preferred > 0) state.maxSeconds = Math.min(state.maxSeconds, preferred);
      session.sendRaw(xml('enabled', { xmlns: NS_SM, id: token, resume: 'true', max: String(state.maxSeconds) }));
    } else {
      session.sendRaw(xml('enabled', { xmlns: NS_SM }));
    }
  }

  #request(session: XmppSession): void {
    const state = this.#state.peek(session);
    if (!state?.enabled) {
      // Acks are for streams with stream management (XEP-0198 §4); recoverable, as ejabberd answers.
      session.sendRaw(failed('unexpected-request'));
      return;
    }
    // `<a h/>` tells the client the server has these stanzas: what handling them wrote is committed first
    // (a message's archive entries, queued without waiting, and anything else). The session handles its
    // elements one at a time, so every write of the stanzas counted in h is queued by now; a read queued
    // after them resolves only once their transaction committed (the storage answers in order). The
    // stream goes on meanwhile; a storage that fails sends no ack (the client resends after a resume).
    const h = String(state.inbound);
    this.#store.get('', BARRIER_KEY).then(
      () => session.sendRaw(xml('a', { xmlns: NS_SM, h })),
      (error: unknown) => this.#api.logger.error({ err: error }, 'smacks: the storage failed: no ack sent'),
    );
  }

  #ack(element: XmlElement, session: XmppSession): void {
    const state = this.#state.peek(session);
    if (!state?.enabled) {
      session.sendRaw(failed('unexpected-request'));
      return;
    }
    const h = parseH(element.attr('h'));
    if (h === undefined) throw new StreamError('invalid-xml', "<a/> needs an 'h' attribute: the number of stanzas handled");
    state.awaitingAck = false;
    this.#acknowledge(state, h);
    this.#maybeRequest(session, state);
  }

  /** The client handled stanzas up to `h`: drop them from the queue, or end the stream if it claims more than was sent. */
  #acknowledge(state: SmState, h: number): void {
    const handled = (h - state.acked + U32) % U32;
    if (handled > state.queue.length) throw new HandledCountTooHigh(h, (state.acked + state.queue.length) % U32);
    state.queue.splice(0, handled);
    state.acked = h;
    if (state.queue.length === 0 && state.ackTimer !== undefined) {
      clearTimeout(state.ackTimer);
      state.ackTimer = undefined;
    }
  }

  #outbound(stanza: XmlElement, session: XmppSession): XmlElement | null {
    const state = this.#state.peek(session);
    if (state === undefined || !state.enabled || !isStanza(stanza)) return stanza;
    if (state.done) return null;
    state.queue.push({ stanza, stamp: Date.now() });
    if (state.hibernating !== undefined) {
      if (state.queue.length > this.#limits.maxQueue) {
        this.#api.logger.info({ jid: session.jid?.toString() }, 'smacks: too many stanzas queued for a hibernating session: it ends');
        void this.#end(session, state);
      } else {
        this.#persist(session, state);
      }
      return null;
    }
    if (state.queue.length > this.#limits.maxQueue) {
      // Prosody's answer: the client is not reading its acks; it may still resume.
      this.#api.logger.info(
        { jid: session.jid?.toString(), queued: state.queue.length },
        'smacks: too many unacknowledged stanzas: closing the stream',
      );
      queueMicrotask(() => session.close(new StreamError('resource-constraint', 'Too many unacknowledged stanzas')));
      return stanza;
    }
    this.#maybeRequest(session, state);
    return stanza;
  }

  /** Ask for an ack after this burst of stanzas (or later, when few are waiting). */
  #maybeRequest(session: XmppSession, state: SmState): void {
    if (state.queue.length === 0 || state.hibernating !== undefined || state.awaitingAck) return;
    if (state.queue.length > this.#limits.maxUnacked) {
      if (state.requestScheduled) return;
      state.requestScheduled = true;
      // One <r/> after everything written in this turn of the event loop, in the same packet.
      session.beforeFlush(() => {
        state.requestScheduled = false;
        this.#sendRequest(session, state);
      });
    } else if (state.ackTimer === undefined) {
      state.ackTimer = setTimeout(() => {
        state.ackTimer = undefined;
        this.#sendRequest(session, state);
      }, this.#limits.ackDelayMs);
      state.ackTimer.unref();
    }
  }

  #sendRequest(session: XmppSession, state: SmState): void {
    if (state.done || state.hibernating !== undefined || state.awaitingAck || state.queue.length === 0) return;
    const sent = (state.acked + state.queue.length) % U32;
    // A client that answers with a lower h than expected is not asked again for the same count.
    if (sent === state.lastRequested) return;
    state.lastRequested = sent;
    state.awaitingAck = true;
    session.sendRaw(xml('r', { xmlns: NS_SM }));
  }

  // ---- hibernation ----

  #disconnected(session: XmppSession, clean: boolean): boolean | undefined {
    const state = this.#state.peek(session);
    if (state === undefined || !state.enabled || state.done || state.token === undefined) return undefined;
    if (this.#tokens.get(state.token) !== session) return undefined;
    // A clean </stream:stream> ends the session (XEP-0198 §7); so does a stop.
    if (clean || this.#stopping) return undefined;
    if (state.hibernating !== undefined) return true;
    state.hibernating = Date.now();
    state.awaitingAck = false;
    if (state.ackTimer !== undefined) clearTimeout(state.ackTimer);
    state.ackTimer = undefined;
    state.hibernationTimer = setTimeout(() => {
      this.#api.logger.debug({ jid: session.jid?.toString() }, 'smacks: resumption timeout: the session ends');
      void this.#end(session, state);
    }, state.maxSeconds * 1000);
    state.hibernationTimer.unref();
    this.#persist(session, state);
    this.#updateIndex();
    void this.#api.fire('session/hibernating', { session, queue: state.queue.map((item) => item.stanza) });
    // Too many hibernating sessions for this account: the oldest ends.
    const user = session.user;
    if (user !== undefined) {
      const asleep = [...this.#tokens.values()]
        .filter((other) => other.user === user && this.#state.peek(other)?.hibernating !== undefined)
        .sort((a, b) => (this.#state.peek(a)?.hibernating ?? 0) - (this.#state.peek(b)?.hibernating ?? 0));
      for (const oldest of asleep.slice(0, Math.max(0, asleep.length - this.#limits.maxHibernated))) {
        const oldState = this.#state.peek(oldest);
        if (oldState !== undefined) void this.#end(oldest, oldState);
      }
    }
    return true;
  }

  /** End a hibernating session: unavailable presence, then its unacknowledged stanzas are routed again (in `#closed`). */
  async #end(session: XmppSession, state: SmState): Promise<void> {
    if (state.hibernationTimer !== undefined) clearTimeout(state.hibernationTimer);
    state.hibernationTimer = undefined;
    if (state.hibernating === undefined) {
      session.close();
      return;
    }
    await this.#api.endSession(session);
  }

  /** The session is gone for good: forget its SM-ID (keeping its h for a late resume) and route what it did not acknowledge. */
  async #closed(session: XmppSession): Promise<void> {
    const state = this.#state.peek(session);
    if (state === undefined || !state.enabled || state.done) return;
    // After a resume the SM-ID belongs to the session that took over.
    if (state.token !== undefined && this.#tokens.get(state.token) !== session) return;
    state.done = true;
    if (state.hibernationTimer !== undefined) clearTimeout(state.hibernationTimer);
    if (state.ackTimer !== undefined) clearTimeout(state.ackTimer);
    const user = session.user;
    if (state.token !== undefined) {
      this.#tokens.delete(state.token);
      this.#updateIndex();
      if (user !== undefined) {
        const token = state.token;
        state.persisting = state.persisting
          .then(() => this.#store.set(user, token, undefined))
          .then(() => this.#rememberOld(user, token, state.inbound))
          .catch((error: unknown) => this.#api.logger.error({ err: error }, 'smacks: could not update the store'));
      }
    }
    const queue = state.queue;
    state.queue = [];
    await this.#reroute(
      queue.map((item) => item.stanza),
      queue.map((item) => item.stamp),
    );
    await state.persisting;
  }

  /** What a client did not acknowledge goes where a stanza to an unavailable resource goes (XEP-0198 §4). */
  async #reroute(stanzas: XmlElement[], stamps: number[]): Promise<void> {
    for (let i = 0; i < stanzas.length; i++) {
      const stanza = stanzas[i] as XmlElement;
      const type = stanza.attr('type');
      try {
        if (stanza.name === 'iq') {
          if (type === 'get' || type === 'set') this.#api.bounce(stanza, 'service-unavailable');
          continue;
        }
        if (stanza.name !== 'message' || type === 'error' || type === 'groupchat') continue;
        // Copies (carbons) and archive results were never the only copy.
        if (stanza.getChild('received', 'urn:xmpp:carbons:2') || stanza.getChild('sent', 'urn:xmpp:carbons:2')) continue;
        if (stanza.getChild('result', 'urn:xmpp:mam:2')) continue;
        const to = Jid.parse(stanza.attr('to') ?? '');
        const bare = to === undefined ? undefined : to.bare;
        if (bare === undefined) continue;
        const again = withDelay(stanza, stamps[i] ?? Date.now(), this.#api.domain).with({ to: bare });
        await this.#api.route(again, { redelivery: true });
      } catch (error) {
        this.#api.logger.error({ err: error }, 'smacks: could not route an unacknowledged stanza again');
      }
    }
  }

  // ---- resumption ----

  async #resume(element: XmlElement, session: XmppSession): Promise<void> {
    if (session.jid !== undefined || this.#state.peek(session)?.enabled) {
      session.sendRaw(failed('unexpected-request'));
      return;
    }
    const previd = element.attr('previd');
    const h = parseH(element.attr('h'));
    if (previd === undefined || h === undefined) {
      session.sendRaw(failed('bad-request'));
      return;
    }
    const old = this.#tokens.get(previd);
    const state = old === undefined ? undefined : this.#state.peek(old);
    if (old === undefined || state === undefined || state.done || old.user !== session.user || old.jid === undefined) {
      const user = session.user;
      const remembered = user === undefined ? undefined : await this.#store.get(user, OLD_PREFIX + previd).catch(() => undefined);
      session.sendRaw(failed('item-not-found', { h: typeof remembered === 'number' ? String(remembered) : undefined }));
      return;
    }
    // The client claims more than the old stream sent: the old session stays as it is.
    const handled = (h - state.acked + U32) % U32;
    if (handled > state.queue.length) throw new HandledCountTooHigh(h, (state.acked + state.queue.length) % U32);

    if (state.hibernationTimer !== undefined) clearTimeout(state.hibernationTimer);
    state.hibernationTimer = undefined;
    // If the old connection still looks open, takeOver ends it with a conflict stream error (XEP-0198 §5).
    state.hibernating = undefined;
    state.awaitingAck = false;
    state.lastRequested = -1;
    this.#tokens.set(previd, session);
    this.#api.takeOver(old, session);
    const moved = this.#state.peek(session) ?? state;
    session.sendRaw(xml('resumed', { xmlns: NS_SM, previd, h: String(moved.inbound) }));
    this.#acknowledge(moved, h);
    // Everything the client did not see, in order, once (they stay queued until acknowledged): written
    // as they are, past the outbound filters that saw them the first time.
    for (const item of moved.queue) session.sendRaw(withDelay(item.stanza, item.stamp, this.#api.domain));
    const user = session.user;
    if (user !== undefined) {
      moved.persisting = moved.persisting
        .then(() => this.#store.set(user, previd, undefined))
        .catch((error: unknown) => this.#api.logger.error({ err: error }, 'smacks: could not update the store'));
    }
    this.#updateIndex();
    this.#maybeRequest(session, moved);
  }

  // ---- the store ----

  #persist(session: XmppSession, state: SmState): void {
    const user = session.user;
    const token = state.token;
    const resource = session.jid?.resource;
    if (user === undefined || token === undefined || resource === undefined) return;
    state.persisting = state.persisting
      .then(() => {
        // Only the latest queue matters; a later write supersedes this one.
        if (state.done || state.hibernating === undefined) return;
        const record: StoredSession = {
          resource,
          inbound: state.inbound,
          acked: state.acked,
          since: state.hibernating,
          queue: state.queue.map((item): [number, string] => [item.stamp, item.stanza.toString()]),
        };
        return this.#store.set(user, token, record);
      })
      .catch((error: unknown) => this.#api.logger.error({ err: error }, 'smacks: could not store a hibernating session'));
  }

  /** The index (owner '', key 'hibernating') lists [user, SM-ID] of hibernating sessions, for recovery after a crash. */
  #updateIndex(): void {
    const entries: Array<[string, string]> = [];
    for (const [token, session] of this.#tokens) {
      if (this.#state.peek(session)?.hibernating !== undefined && session.user !== undefined) entries.push([session.user, token]);
    }
    this.#indexWrites = this.#indexWrites
      .then(() => this.#store.set('', INDEX_KEY, entries.length === 0 ? undefined : entries))
      .catch((error: unknown) => this.#api.logger.error({ err: error }, 'smacks: could not store the index'));
  }

  async #rememberOld(user: string, token: string, h: number): Promise<void> {
    if (this.#limits.maxOld === 0) return;
    await this.#store.set(user, OLD_PREFIX + token, h);
    const olds = await this.#store.keys(user, OLD_PREFIX);
    // Keys are random: keep a bounded number, dropping arbitrary ones past the limit.
    for (const key of olds.slice(0, Math.max(0, olds.length - this.#limits.maxOld))) {
      if (key !== OLD_PREFIX + token) await this.#store.set(user, key, undefined);
    }
  }

  async #recover(): Promise<void> {
    const index = await this.#store.get('', INDEX_KEY);
    if (!Array.isArray(index)) return;
    for (const entry of index) {
      if (!Array.isArray(entry) || typeof entry[0] !== 'string' || typeof entry[1] !== 'string') continue;
      const [user, token] = entry as [string, string];
      if (this.#tokens.has(token)) continue;
      const record = await this.#store.get(user, token);
      if (record !== undefined && record !== null && typeof record === 'object' && !Array.isArray(record)) {
        const queue = Array.isArray(record.queue) ? record.queue : [];
        const stanzas: XmlElement[] = [];
        const stamps: number[] = [];
        for (const item of queue) {
          if (!Array.isArray(item) || typeof item[0] !== 'number' || typeof item[1] !== 'string') continue;
          const stanza = parseXml(item[1]);
          if (stanza === undefined) continue;
          stanzas.push(stanza);
          stamps.push(item[0]);
        }
        this.#api.logger.info(
          { user, stanzas: stanzas.length },
          'smacks: a session hibernating at the last stop: its messages are routed again',
        );
        await this.#reroute(stanzas, stamps);
        await this.#store.set(user, token, undefined);
        if (typeof record.inbound === 'number') await this.#rememberOld(user, token, record.inbound);
      }
    }
    this.#updateIndex();
    await this.#indexWrites;
  }

  /** At stop: hibernating sessions end, their messages go to offline storage (nothing waits for a client that cannot come back to this process). */
  async #stop(): Promise<void> {
    this.#stopping = true;
    // The storage closes after the modules stopped: a recovery still reading it finishes first.
    await this.#recovering;
    const sessions = [...this.#tokens.values()];
    await Promise.all(
      sessions.map(async (session) => {
        const state = this.#state.peek(session);
        if (state === undefined || state.done) return;
        if (state.hibernationTimer !== undefined) clearTimeout(state.hibernationTimer);
        if (state.ackTimer !== undefined) clearTimeout(state.ackTimer);
        if (state.hibernating !== undefined) await this.#api.endSession(session);
      }),
    );
    // #closed ran for each: wait for its routing and store writes.
    await Promise.all([...this.#closing]);
    await this.#indexWrites;
  }
}
