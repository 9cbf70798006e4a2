import { randomBytes } from 'node:crypto';
import { getHeapStatistics } from 'node:v8';
import type { JournalEntry, XmppCluster } from '../cluster.js';
import { XmppConfigError } from '../config-error.js';
import { escapeAttribute, XmlElement, xml } from '../element.js';
import { Jid } from '../jid.js';
import type { ModuleApi, SessionState, XmppModule } from '../module.js';
import { NS_CLIENT, NS_DELAY, NS_SM, NS_STANZAS } from '../namespaces.js';
import { parseXml } from '../parse.js';
import type { XmppSession } from '../session.js';
import { StreamError } from '../stream-error.js';
import { smJournalState } from './smacks-state.js';

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
  /**
   * The same threshold while the client says it is inactive (XEP-0352 `<inactive/>`, the csi module: a phone
   * with its screen off). Default 256, as Prosody's `smacks_max_inactive_unacked_stanzas`: an `<r/>` after
   * every burst would wake the phone's radio for nothing. `<active/>` asks for an ack at once. Either threshold
   * gives way once the queue holds half of `maxQueueSize` or of `maxQueueChars`.
   */
  maxInactiveUnackedStanzas?: number;
  /** Ask for an ack anyway when stanzas have waited this long unacknowledged. Default 30 s (Prosody's `smacks_max_ack_delay`). */
  ackDelayMs?: number;
  /**
   * Unacknowledged stanzas one session may hold. Past it a connected session is closed with
   * `<resource-constraint/>` and a hibernating one ends; either way its unacknowledged messages
   * are routed again. Default 5000 (ejabberd's `max_ack_queue`; Prosody's `smacks_max_queue_size` is
   * 500, which a burst outruns before the client's first ack: a contact's 1,000 messages, the
   * presences of a room of 600 occupants on join). `maxQueueChars` and `maxTotalQueueChars` bound
   * the memory.
   */
  maxQueueSize?: number;
  /**
   * The text those stanzas may add up to, in characters of their XML (a byte each for ASCII), past which the
   * same happens: 500 stanzas of the largest size a client may receive would otherwise be held per session.
   * Default 4,000,000.
   */
  maxQueueChars?: number;
  /**
   * The unacknowledged text of every session of this process together (connected and hibernating),
   * counted as characters of XML plus 64 a stanza for its bookkeeping. Past it, the session holding
   * the most ends (closed with `<resource-constraint/>`, not kept for a resume) and its messages are
   * routed again: many clients that never ack, each under its own limits, cannot exhaust the process.
   * Default: a sixteenth of the V8 heap limit (about 270,000,000 with Node's default heap on a large
   * machine; `--max-old-space-size` moves it).
   */
  maxTotalQueueChars?: number;
  /** Hibernating sessions per account; when one more hibernates, the oldest ends. Default 10 (Prosody's `smacks_max_hibernated_sessions`). */
  maxHibernatedSessions?: number;
  /** How many timed-out SM-IDs per account keep their `h`, so that a late `<resume/>` learns what was handled (`<failed h=…>`). Default 10. */
  maxOldSessions?: number;
}

/** The module's name in a server's module list. */
export const SMACKS = 'smacks';

/** What one queued stanza costs besides its text (its entry object and array slot), in characters. */
const ENTRY_COST = 64;

/** Journal entries written as one (see `#journalAppend`). */
interface JournalBatch {
  token: string;
  entries: JournalEntry[];
  /** Resolves to the batch's id in the journal once written. */
  written: Promise<string | undefined>;
}

interface Queued {
  /**
   * The stanza as it was written. Text, not the element: a stanza waits here for the client's ack, long
   * enough for scavenges to find it alive, and one string is what they copy instead of a dozen objects
   * (the element, its attributes, children, their attributes, the texts). Parsed again only on the rare
   * paths that need an element: the session ends unacknowledged, or hibernates (the push module reads it).
   * Measured (`node --trace-gc`, bench/xmpp SM+MAM, 3 runs each): GC pauses 6.0–6.3 µs per delivered
   * message with elements queued, 4.0–4.2 with text (1.2–1.3 without SM and MAM).
   */
  text: string;
  /** It gets a `<delay/>` when sent again: not an IQ, and it has none. */
  delayable: boolean;
  /** When it was first sent (ms): the `<delay/>` stamp when it is sent again. */
  stamp: number;
  /** Its entry in the session's journal on the bus, once written (several processes). */
  journalId?: string;
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
  /** The length of the queue's texts, summed (bounded by `maxQueueChars`). */
  queueChars: number;
  /** An `<r/>` is out and not yet answered. */
  awaitingAck: boolean;
  /** The sent count when the last `<r/>` went out (no second request for the same count). */
  lastRequested: number;
  requestScheduled: boolean;
  ackTimer: NodeJS.Timeout | undefined;
  /** The client said it is inactive (XEP-0352, through the csi module's `session/inactive`). */
  inactive: boolean;
  /** Since when (ms) the session hibernates. */
  hibernating: number | undefined;
  hibernationTimer: NodeJS.Timeout | undefined;
  /** The session ended: its queue was (or is being) routed again. */
  done: boolean;
  /** Store writes of this session, in order. */
  persisting: Promise<void>;
  /** A write of the hibernating queue is waiting in `persisting` (it will take the queue as it is then). */
  persistPending: boolean;
  /** Stanzas from the client not to count: a presence replayed for it after a resume on another process. */
  uncounted: number;
  /** When its journal on the bus was last written (ms; with a bus only). */
  journaled: number;
  /** When its journal's lifetime was last renewed (ms). */
  journalRenewed: number;
  /** Stanzas acknowledged since the journal was last trimmed. */
  trimCredit: number;
  /** The inbound count last written to the journal. */
  journaledInbound: number;
  /** Journal entries since its last checkpoint. */
  sinceCheckpoint: number;
  /** Journal entries of this turn of the event loop, written together at its end. */
  batch: JournalBatch | undefined;
  /** The process stops and leaves the session to the others: its stanzas stay in the journal. */
  handedOff: boolean;
  /** Ended to bring the process under `maxTotalQueueChars`: not kept for a resume. */
  shed: boolean;
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
/** `a` is ahead of `b` (mod 2^32) by less than half the range. */
function ahead(a: number, b: number): number {
  const diff = (a - b + U32) % U32;
  return diff < U32 / 2 ? diff : 0;
}
const INDEX_KEY = 'hibernating';
/** `<resume/>` attempts one stream may make (a client tries one SM-ID, perhaps two). */
const MAX_RESUME_ATTEMPTS = 3;
/** Journal entries between two checkpoints at most (then older entries are trimmed). */
const CHECKPOINT_EVERY = 128;
/** Sessions a stopping process leaves to the others, on the cluster's module channel. */
const ORPHAN_TOPIC = 'smacks:orphan';
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

/** The last available presence a directory record holds, as a stanza to send again. */
function presenceStateLast(record: unknown): XmlElement | undefined {
  if (typeof record !== 'object' || record === null) return undefined;
  const { available, last } = record as { available?: unknown; last?: unknown };
  if (available !== true || typeof last !== 'string') return undefined;
  const presence = parseXml(last);
  if (presence === undefined || presence.name !== 'presence') return undefined;
  // As the client sent it: no addressing (the server stamps `from`; a broadcast has no `to`).
  const attrs = { ...presence.attrs };
  delete attrs.from;
  delete attrs.to;
  return new XmlElement('presence', attrs, [...presence.children], presence.xmlns);
}

/** A copy of a stanza with a `<delay/>` (XEP-0203) saying when it was first sent, unless it has one (IQs never get one). */
function withDelay(stanza: XmlElement, stamp: number, from: string): XmlElement {
  if (!delayable(stanza)) return stanza;
  const delay = xml('delay', { xmlns: NS_DELAY, from, stamp: delayStamp(stamp) });
  return new XmlElement(stanza.name, { ...stanza.attrs }, [...stanza.children, delay], stanza.xmlns);
}

function delayable(stanza: XmlElement): boolean {
  return stanza.name !== 'iq' && stanza.getChild('delay', NS_DELAY) === undefined;
}

function delayStamp(stamp: number): string {
  return new Date(stamp).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** A queued stanza for the queue: its text (written by XmlElement's serializer). */
function queued(stanza: XmlElement, stamp: number, journalId?: string): Queued {
  return { text: stanza.toString(), delayable: delayable(stanza), stamp, journalId };
}

/**
 * A queued stanza's text as it is sent again: with a `<delay/>` as its last child when it may get one. The
 * text is the serializer's: `<name …/>` without children, else ending with its own `</name>`.
 */
function resent(item: Queued, from: string): string {
  if (!item.delayable) return item.text;
  const text = item.text;
  const delay = `<delay xmlns='${NS_DELAY}' from='${escapeAttribute(from)}' stamp='${delayStamp(item.stamp)}'/>`;
  if (text.endsWith('/>')) {
    const name = text.slice(1, text.search(/[\s/>]/));
    return `${text.slice(0, -2)}>${delay}</${name}>`;
  }
  const close = text.lastIndexOf('</');
  return `${text.slice(0, close)}${delay}${text.slice(close)}`;
}

/**
 * The element written from a queued stanza's text: the outbound filters' result, serialized once (for the
 * queue) and written from that same text.
 */
class WrittenStanza extends XmlElement {
  readonly #text: string;

  constructor(stanza: XmlElement, text: string) {
    super(stanza.name, stanza.attrs, stanza.children, stanza.xmlns);
    this.#text = text;
  }

  override toString(): string {
    return this.#text;
  }
}

/** The queued stanzas as elements (parsed from their text; what cannot be parsed, never expected, is left out). */
function elementsOf(queue: readonly Queued[]): XmlElement[] {
  const elements: XmlElement[] = [];
  for (const item of queue) {
    const element = parseXml(item.text);
    if (element !== undefined) elements.push(element);
  }
  return elements;
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
  const maxInactiveUnacked = positive('maxInactiveUnackedStanzas', options.maxInactiveUnackedStanzas, 256);
  const ackDelayMs = positive('ackDelayMs', options.ackDelayMs, 30_000, 1);
  const maxQueue = positive('maxQueueSize', options.maxQueueSize, 5000, 1);
  const maxQueueChars = positive('maxQueueChars', options.maxQueueChars, 4_000_000, 1);
  const maxTotal = positive('maxTotalQueueChars', options.maxTotalQueueChars, Math.floor(getHeapStatistics().heap_size_limit / 16), 1);
  const maxHibernated = positive('maxHibernatedSessions', options.maxHibernatedSessions, 10, 1);
  const maxOld = positive('maxOldSessions', options.maxOldSessions, 10);
  return {
    name: SMACKS,
    setup(api) {
      new StreamManagement(api, {
        resumeTimeoutMs,
        maxUnacked,
        maxInactiveUnacked,
        ackDelayMs,
        maxQueue,
        maxQueueChars,
        maxTotal,
        maxHibernated,
        maxOld,
      });
    },
  };
}

interface Limits {
  resumeTimeoutMs: number;
  maxUnacked: number;
  maxInactiveUnacked: number;
  ackDelayMs: number;
  maxQueue: number;
  maxQueueChars: number;
  maxTotal: number;
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
  /** A write of the index waits in #indexWrites (it lists the sessions as they are when it runs). */
  #indexPending = false;
  #stopping = false;
  /** The recovery of sessions a crash left in the store, while it runs. */
  #recovering: Promise<void> | undefined;
  /** Sessions being ended: their stanzas are being routed again. */
  readonly #closing = new Set<Promise<void>>();
  #journalTimer: NodeJS.Timeout | undefined;
  /** Sessions of dead processes this process looks after, until their resumption window ends. */
  readonly #orphans = new Map<string, NodeJS.Timeout>();
  readonly #orphanNodes = new Map<string, string>();
  readonly #orphanJids = new Map<string, string>();
  /** `<resume/>` attempts per stream. */
  readonly #resumes = new WeakMap<XmppSession, number>();
  /** The queues of every session here, in characters (texts, plus ENTRY_COST a stanza). */
  #queuedTotal = 0;
  /** Sessions that had a queue (some since ended or taken over: skipped when found). */
  readonly #holders = new Set<XmppSession>();

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
      queueChars: 0,
      awaitingAck: false,
      lastRequested: -1,
      requestScheduled: false,
      ackTimer: undefined,
      inactive: false,
      hibernating: undefined,
      hibernationTimer: undefined,
      done: false,
      persisting: Promise.resolve(),
      uncounted: 0,
      journaled: 0,
      journalRenewed: 0,
      trimCredit: 0,
      journaledInbound: -1,
      sinceCheckpoint: 0,
      batch: undefined,
      handedOff: false,
      shed: false,
      persistPending: false,
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
      if (!state?.enabled) return;
      if (state.uncounted > 0) state.uncounted--;
      else state.inbound = (state.inbound + 1) % U32;
    };
    api.hook('message/in', count, 100_000);
    api.hook('presence/in', count, 100_000);
    api.hook('iq/in', count, 100_000);

    // Last of the outbound filters: what is written is what the client counts.
    api.outbound((stanza, session) => this.#outbound(stanza, session), -100_000);

    // Client state (XEP-0352): fewer <r/> while nobody looks at the client; one at once when somebody does.
    api.hook('session/inactive', (event) => {
      const state = this.#state.peek(event.session);
      if (state !== undefined) state.inactive = true;
    });
    api.hook('session/active', (event) => {
      const state = this.#state.peek(event.session);
      if (state === undefined || !state.inactive) return;
      state.inactive = false;
      if (state.enabled) this.#maybeRequest(event.session, state);
    });
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
      const cluster = this.#cluster();
      if (cluster !== undefined) {
        // Several processes: each resumable session has a journal on the bus instead (one store
        // index shared by every process could not say whose sessions a crash left).
        cluster.onHandover((token) => this.#handover(token));
        cluster.onOrphan((orphan) => void this.#orphan(orphan.token, orphan.node, orphan.jid));
        // A client that logs in again with the resource instead of resuming: what the orphan had not
        // acknowledged goes now (to the new session, as on one process when a new bind replaces a
        // hibernating session), not at the end of the window.
        cluster.onBound((full, sm) => {
          for (const [token, jid] of this.#orphanJids) {
            if (jid !== full) continue;
            const timer = this.#orphans.get(token);
            if (timer === undefined) continue;
            clearTimeout(timer);
            this.#orphans.delete(token);
            const node = this.#orphanNodes.get(token) ?? '';
            // Resumed (sm is its SM-ID): nothing to do but let go of it.
            if (sm === token) {
              this.#orphanNodes.delete(token);
              this.#orphanJids.delete(token);
              void cluster.release(`sm:${token}`).catch(() => undefined);
            } else void this.#releaseOrphan(cluster, token, node);
          }
        });
        cluster.listen(ORPHAN_TOPIC, (data) => {
          // The bus was away: its data may be gone with it (a Redis restarted empty): journals written again.
          if (data === undefined) return this.#rejournal();
          try {
            const orphan = JSON.parse(data ?? 'null') as { token?: unknown; node?: unknown } | null;
            if (typeof orphan?.token === 'string' && typeof orphan.node === 'string')
              void this.#orphan(
                orphan.token,
                orphan.node,
                typeof (orphan as { jid?: unknown }).jid === 'string' ? String((orphan as { jid?: unknown }).jid) : '',
              );
          } catch {
            // Not ours.
          }
        });
        // Each second (a client's `max` may be short): journals near the end of their lifetime are written again.
        this.#journalTimer = setInterval(() => this.#keepJournals(), 1000);
        this.#journalTimer.unref();
        return;
      }
      this.#recovering = this.#recover().catch((error: unknown) =>
        api.logger.error({ err: error }, 'smacks: could not recover stored sessions'),
      );
    });
  }

  /** The server's cluster, with a bus (created after the modules' setup). */
  #cluster(): XmppCluster | undefined {
    return this.#api.server.cluster as XmppCluster | undefined;
  }

  /** How long a journal outlives its last write: the resumption window, and the time to find its process dead. */
  #journalTtl(state: SmState, cluster: XmppCluster): number {
    return state.maxSeconds * 1000 + cluster.ttlMs * 3;
  }

  #journalAppend(session: XmppSession, state: SmState, entry: JournalEntry): Promise<string | undefined> | undefined {
    const cluster = this.#cluster();
    const token = state.token;
    if (cluster === undefined || token === undefined || state.done) return undefined;
    state.journaled = Date.now();
    if (typeof entry.i === 'number') state.journaledInbound = entry.i;
    if (entry.m === undefined) this.#counted(session, state);
    // What one turn of the event loop writes to a session's journal is one entry (a batch): one XADD
    // for a burst of stanzas, not one each.
    let batch = state.batch;
    if (batch === undefined || batch.token !== token) {
      const made: JournalBatch = { token, entries: [], written: Promise.resolve(undefined) };
      made.written = new Promise<string | undefined>((resolve) => {
        setImmediate(() => {
          if (state.batch === made) state.batch = undefined;
          const now = Date.now();
          const ttlMs = this.#journalTtl(state, cluster);
          // The journal's lifetime is renewed a few times per window, not with every write (one command less each).
          const renew = now - state.journalRenewed > ttlMs / 4;
          if (renew) state.journalRenewed = now;
          const only = made.entries.length === 1 ? made.entries[0] : undefined;
          resolve(cluster.journalAppend(made.token, only ?? { b: made.entries }, renew ? ttlMs : undefined));
        });
      });
      state.batch = made;
      batch = made;
    }
    batch.entries.push(entry);
    return batch.written;
  }

  /**
   * One more journal entry (a stanza, counts, a presence change the cluster wrote): past
   * CHECKPOINT_EVERY since the last checkpoint, a checkpoint and a trim, whatever the client acknowledged,
   * so that neither a client that only sends nor presence changes grow a journal (and push its
   * checkpoint out of the stream's length cap).
   */
  #counted(session: XmppSession, state: SmState): void {
    if (++state.sinceCheckpoint < CHECKPOINT_EVERY) return;
    state.sinceCheckpoint = 0;
    queueMicrotask(() => this.#trimJournal(session, state));
  }

  /**
   * Keep a journal to what the client has not acknowledged: a checkpoint (who, counts, state) first,
   * then everything older than the oldest unacknowledged stanza (or than the checkpoint) goes. The
   * journal holds at most what the queue does (maxQueueSize stanzas), whatever the client received.
   */
  #trimJournal(session: XmppSession, state: SmState): void {
    const cluster = this.#cluster();
    const user = session.user;
    const resource = session.jid?.resource;
    if (cluster === undefined || state.token === undefined || state.done || user === undefined || resource === undefined) return;
    const first = state.queue[0];
    if (first !== undefined && first.journalId === undefined) return; // still being written: next time
    state.trimCredit = 0;
    state.sinceCheckpoint = 0;
    const token = state.token;
    const checkpoint = this.#journalAppend(session, state, {
      m: { u: user, r: resource, n: cluster.nodeId, max: state.maxSeconds },
      i: state.inbound,
      a: state.acked,
      c: (state.acked + state.queue.length) % U32,
      r: cluster.journalRecord(session as never),
    });
    void checkpoint?.then((id) => {
      const minId = first?.journalId ?? id;
      if (minId !== undefined && !state.done) return cluster.journalTrim(token, minId);
    });
  }

  /** Every journal of this process's sessions written again whole: the session, its counts, what is not acknowledged. */
  #rejournal(): void {
    const cluster = this.#cluster();
    if (cluster === undefined) return;
    for (const [token, session] of this.#tokens) {
      const state = this.#state.peek(session);
      const user = session.user;
      const resource = session.jid?.resource;
      if (state === undefined || state.done || state.token !== token || user === undefined || resource === undefined) continue;
      this.#journalAppend(session, state, {
        m: { u: user, r: resource, n: cluster.nodeId, max: state.maxSeconds },
        i: state.inbound,
        a: state.acked,
        c: state.acked,
      });
      state.queue.forEach((item, index) => {
        this.#journalAppend(session, state, {
          s: (state.acked + index + 1) % U32,
          a: state.acked,
          i: state.inbound,
          t: item.stamp,
          x: item.text,
        });
      });
    }
  }

  /** Journals of idle sessions are written again before they could expire. */
  #keepJournals(): void {
    const cluster = this.#cluster();
    if (cluster === undefined) return;
    const now = Date.now();
    for (const [token, session] of this.#tokens) {
      const state = this.#state.peek(session);
      if (state === undefined || state.done || state.token !== token) continue;
      if (now - state.journalRenewed < this.#journalTtl(state, cluster) / 3) continue;
      this.#journalAppend(session, state, { i: state.inbound, a: state.acked });
    }
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
    state.queueChars = 0;
    this.#holders.add(session);
    const resume = element.attr('resume');
    if (resume === 'true' || resume === '1') {
      const token = randomBytes(18).toString('base64url');
      state.token = token;
      this.#tokens.set(token, session);
      // The client's preferred maximum, when shorter than ours.
      const preferred = Number(element.attr('max'));
      if (Number.isInteger(preferred) && preferred > 0) state.maxSeconds = Math.min(state.maxSeconds, preferred);
      const cluster = this.#cluster();
      if (cluster !== undefined && session.user !== undefined && session.jid !== undefined) {
        // Its journal on the bus: any process can resume it (issue 12).
        const mark = smJournalState.get(session);
        mark.token = token;
        mark.ttlMs = this.#journalTtl(state, cluster);
        mark.appended = () => this.#counted(session, state);
        this.#journalAppend(session, state, {
          m: { u: session.user, r: session.jid.resource, n: cluster.nodeId, max: state.maxSeconds },
          i: 0,
          a: 0,
          c: 0,
        });
        // The directory entry names the SM-ID now (and the journal gets the session's state).
        cluster.refresh(session as never);
      }
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
    const cluster = this.#cluster();
    // The journal has h before the client hears it (once per count: an <r/> flood writes nothing more).
    const journaled =
      cluster === undefined || state.token === undefined || state.done || state.journaledInbound === state.inbound
        ? undefined
        : this.#journalAppend(session, state, { i: state.inbound, a: state.acked });
    Promise.all([this.#store.get('', BARRIER_KEY), journaled]).then(
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
    const before = state.acked;
    this.#acknowledge(state, h);
    if (before !== h && state.token !== undefined && smJournalState.peek(session)?.token !== undefined) {
      // What the client has is dropped from the journal, in batches (or at once when it caught up).
      state.trimCredit += (h - before + U32) % U32;
      if (state.trimCredit >= 64) this.#trimJournal(session, state);
    }
    this.#maybeRequest(session, state);
  }

  /** The client handled stanzas up to `h`: drop them from the queue, or end the stream if it claims more than was sent. */
  #acknowledge(state: SmState, h: number): void {
    const handled = (h - state.acked + U32) % U32;
    if (handled > state.queue.length) throw new HandledCountTooHigh(h, (state.acked + state.queue.length) % U32);
    let chars = 0;
    for (const item of state.queue.splice(0, handled)) chars += item.text.length;
    state.queueChars -= chars;
    this.#queuedTotal -= chars + handled * ENTRY_COST;
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
    const stamp = Date.now();
    // The last filter (-100 000): what is queued is what is written, serialized once for both.
    const text = stanza.toString();
    const written = new WrittenStanza(stanza, text);
    state.queue.push({ text, delayable: delayable(stanza), stamp });
    state.queueChars += text.length;
    this.#queuedTotal += text.length + ENTRY_COST;
    if (this.#queuedTotal > this.#limits.maxTotal) this.#shed();
    const full = state.queue.length > this.#limits.maxQueue || state.queueChars > this.#limits.maxQueueChars;
    if (state.token !== undefined && smJournalState.peek(session)?.token !== undefined) {
      const item = state.queue[state.queue.length - 1] as Queued;
      void this.#journalAppend(session, state, {
        s: (state.acked + state.queue.length) % U32,
        a: state.acked,
        i: state.inbound,
        t: stamp,
        x: text,
      })?.then((id) => {
        item.journalId = id;
      });
    }
    if (state.hibernating !== undefined) {
      if (full) {
        this.#api.logger.info(
          { jid: session.jid?.toString(), queued: state.queue.length, chars: state.queueChars },
          'smacks: too much queued for a hibernating session: it ends',
        );
        void this.#end(session, state);
      } else if (this.#cluster() === undefined) {
        this.#persist(session, state);
      }
      return null;
    }
    if (full) {
      // Prosody's answer: the client is not reading its acks; it may still resume.
      this.#api.logger.info(
        { jid: session.jid?.toString(), queued: state.queue.length, chars: state.queueChars },
        'smacks: too much unacknowledged: closing the stream',
      );
      queueMicrotask(() => session.close(new StreamError('resource-constraint', 'Too many unacknowledged stanzas')));
      return written;
    }
    this.#maybeRequest(session, state);
    return written;
  }

  /** Ask for an ack after this burst of stanzas (or later, when few are waiting). */
  #maybeRequest(session: XmppSession, state: SmState): void {
    if (state.queue.length === 0 || state.hibernating !== undefined || state.awaitingAck) return;
    // At the latest at half the queue's limits, in stanzas or in text: a client asked late (large stanzas while
    // it is inactive, a threshold set above the queue's size) must not be closed for a queue it was never asked to ack.
    const limits = this.#limits;
    const threshold = Math.min(state.inactive ? limits.maxInactiveUnacked : limits.maxUnacked, Math.floor(limits.maxQueue / 2));
    if (state.queue.length > threshold || state.queueChars > limits.maxQueueChars / 2) {
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

  /**
   * The process holds more unacknowledged text than `maxTotalQueueChars`: the session with the largest
   * queue ends, for good (a hibernating one too), and its stanzas are routed again when it closes. The
   * total is counted again from the queues first, so an error in the running count cannot end anyone.
   */
  #shed(): void {
    let total = 0;
    let largest: XmppSession | undefined;
    let largestState: SmState | undefined;
    for (const holder of this.#holders) {
      const state = this.#state.peek(holder);
      if (state === undefined || !state.enabled || state.done) {
        this.#holders.delete(holder);
        continue;
      }
      // Already ending: its queue is on its way out.
      if (state.shed) continue;
      total += state.queueChars + state.queue.length * ENTRY_COST;
      if (largestState === undefined || state.queueChars > largestState.queueChars) {
        largest = holder;
        largestState = state;
      }
    }
    this.#queuedTotal = total;
    if (total <= this.#limits.maxTotal || largest === undefined || largestState === undefined) return;
    const session = largest;
    const state = largestState;
    state.shed = true;
    this.#queuedTotal -= state.queueChars + state.queue.length * ENTRY_COST;
    this.#api.logger.warn(
      { jid: session.jid?.toString(), queued: state.queue.length, chars: state.queueChars, total, limit: this.#limits.maxTotal },
      'smacks: the unacknowledged stanzas of all sessions pass maxTotalQueueChars: the session holding the most ends',
    );
    if (state.hibernating !== undefined) {
      void this.#end(session, state);
      return;
    }
    queueMicrotask(() => session.close(new StreamError('resource-constraint', 'Too many unacknowledged stanzas on this server')));
  }

  // ---- hibernation ----

  #disconnected(session: XmppSession, clean: boolean): boolean | undefined {
    const state = this.#state.peek(session);
    if (state === undefined || !state.enabled || state.done || state.token === undefined) return undefined;
    if (this.#tokens.get(state.token) !== session) return undefined;
    // A clean </stream:stream> ends the session (XEP-0198 §7); so does a stop, and shedding its queue.
    if (clean || this.#stopping || state.shed) return undefined;
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
    if (this.#cluster() === undefined) {
      this.#persist(session, state);
      this.#updateIndex();
    }
    void this.#api.fire('session/hibernating', { session, queue: elementsOf(state.queue) });
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
    this.#holders.delete(session);
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
    // A shed session's queue left the count when it was chosen.
    if (!state.shed) this.#queuedTotal -= state.queueChars + queue.length * ENTRY_COST;
    state.queue = [];
    state.queueChars = 0;
    // Left to the other processes (this one stops): the journal keeps them for a resume there.
    if (state.handedOff) return;
    await this.#reroute(
      queue.map((item) => parseXml(item.text)),
      queue.map((item) => item.stamp),
    );
    const cluster = this.#cluster();
    if (cluster !== undefined && state.token !== undefined) {
      smJournalState.delete(session);
      await cluster.journalDelete(state.token);
    }
    await state.persisting;
  }

  /** What a client did not acknowledge goes where a stanza to an unavailable resource goes (XEP-0198 §4). */
  async #reroute(stanzas: Array<XmlElement | undefined>, stamps: number[]): Promise<void> {
    for (let i = 0; i < stanzas.length; i++) {
      const stanza = stanzas[i];
      if (stanza === undefined) continue;
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
    // A stream that keeps guessing SM-IDs (each a read of the store or the bus) is stopped.
    const attempts = this.#resumes.get(session) ?? 0;
    if (attempts >= MAX_RESUME_ATTEMPTS) {
      session.sendRaw(failed('policy-violation'));
      return;
    }
    this.#resumes.set(session, attempts + 1);
    const previd = element.attr('previd');
    const h = parseH(element.attr('h'));
    if (previd === undefined || h === undefined) {
      session.sendRaw(failed('bad-request'));
      return;
    }
    const old = this.#tokens.get(previd);
    const state = old === undefined ? undefined : this.#state.peek(old);
    const cluster = this.#cluster();
    if (old === undefined && cluster !== undefined) {
      // Not here: maybe a session another process holds or held (issue 12).
      if (await this.#resumeFromJournal(session, cluster, previd, h)) return;
    }
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
    // A resumed stream starts active (XEP-0352 §5.2), as the csi module's state does.
    state.inactive = false;
    this.#tokens.set(previd, session);
    this.#api.takeOver(old, session);
    const moved = this.#state.peek(session) ?? state;
    this.#holders.add(session);
    const mark = smJournalState.peek(session);
    if (mark !== undefined) mark.appended = () => this.#counted(session, moved);
    session.sendRaw(xml('resumed', { xmlns: NS_SM, previd, h: String(moved.inbound) }));
    this.#acknowledge(moved, h);
    // Everything the client did not see, in order, once (they stay queued until acknowledged): written
    // as they are, past the outbound filters that saw them the first time.
    for (const item of moved.queue) session.sendRaw(resent(item, this.#api.domain));
    const user = session.user;
    if (user !== undefined) {
      moved.persisting = moved.persisting
        .then(() => this.#store.set(user, previd, undefined))
        .catch((error: unknown) => this.#api.logger.error({ err: error }, 'smacks: could not update the store'));
    }
    this.#updateIndex();
    this.#maybeRequest(session, moved);
  }

  // ---- several processes: journals on the bus (issue 12) ----

  /**
   * Resume a session of another process from its journal: that process lets it go first when it
   * lives (it may hibernate there, or its connection may look open still); a dead one's journal is
   * taken as it is. False when there is nothing to resume (the caller answers item-not-found).
   */
  async #resumeFromJournal(session: XmppSession, cluster: XmppCluster, previd: string, h: number): Promise<boolean> {
    let unavailable = false;
    let journal = await cluster.journalRead(previd).catch((error: unknown) => {
      this.#api.logger.warn({ err: error }, 'smacks: could not read a journal');
      unavailable = true;
      return undefined;
    });
    if (unavailable) {
      // The bus is away: the client may try again (XEP-0198 <failed/> with a temporary condition).
      session.sendRaw(failed('internal-server-error'));
      return true;
    }
    if (journal === undefined || journal.user !== session.user || session.user === undefined) return false;
    let oldAlive = false;
    if (journal.node !== cluster.nodeId) {
      const live = await cluster.nodeLive(journal.node).catch(() => false);
      const outcome = live ? await cluster.handover(journal.node, previd) : 'timeout';
      if (outcome === 'unknown') return false;
      if (outcome === 'unreachable') {
        session.sendRaw(failed('internal-server-error'));
        return true;
      }
      oldAlive = outcome === 'released';
      if (outcome === 'timeout') this.#api.logger.info({ node: journal.node }, 'smacks: resuming the session of a process that is gone');
      // Its last state is in the journal now (or what a silent holder wrote while this process waited).
      const holder = journal.node;
      journal = await cluster.journalRead(previd).catch(() => undefined);
      if (journal === undefined || journal.user !== session.user) return false;
      if (oldAlive && ahead(h, journal.sent) > 0) {
        // As on one process: more than was sent. The session is let go by its holder already: it is
        // looked after as one whose process died (what it had not acknowledged goes offline at the end).
        void this.#orphan(previd, holder, `${journal.user}@${this.#api.domain}/${journal.resource}`);
        throw new HandledCountTooHigh(h, journal.sent);
      }
    }
    // The client saw more than the journal holds: the old process wrote stanzas it died before
    // journaling; the client has them, so nothing is to be sent again.
    // The sent count goes on from the client's h then (else its next <a/> would claim more than was sent).
    const beyond = ahead(h, journal.sent);
    if (beyond > 0) this.#api.logger.info({ h, journaled: journal.sent }, 'smacks: a resume acknowledges stanzas the journal missed');
    const acked = h;
    const queue: Queued[] = [];
    for (const item of journal.stanzas) {
      if (ahead(item.seq, acked) === 0) continue;
      const stanza = parseXml(item.xml);
      if (stanza !== undefined) queue.push(queued(stanza, item.stamp, item.id));
    }
    // Its SM-ID first: the directory entry `adoptSession` writes names it (a process looking after
    // it as an orphan lets go of it then, rather than routing its stanzas again).
    const early = smJournalState.get(session);
    early.token = previd;
    this.#api.adoptSession(session, journal.resource, journal.record);
    const state = this.#state.get(session);
    state.enabled = true;
    state.token = previd;
    state.maxSeconds = journal.maxSeconds;
    state.inbound = journal.inbound;
    state.acked = acked;
    state.queue = queue;
    state.queueChars = queue.reduce((sum, item) => sum + item.text.length, 0);
    this.#queuedTotal += state.queueChars + queue.length * ENTRY_COST;
    this.#holders.add(session);
    this.#tokens.set(previd, session);
    const mark = smJournalState.get(session);
    mark.token = previd;
    mark.ttlMs = this.#journalTtl(state, cluster);
    mark.appended = () => this.#counted(session, state);
    // This process holds it now: said first, so that a late reader knows.
    const user = session.user;
    const resource = session.jid?.resource ?? journal.resource;
    this.#journalAppend(session, state, {
      m: { u: user, r: resource, n: cluster.nodeId, max: state.maxSeconds },
      i: state.inbound,
      a: acked,
      c: (acked + queue.length) % U32,
    });
    cluster.refresh(session as never);
    session.sendRaw(xml('resumed', { xmlns: NS_SM, previd, h: String(state.inbound) }));
    for (const item of queue) session.sendRaw(resent(item, this.#api.domain));
    // Its process died: contacts may have been told it went offline; its presence is said again.
    const last = presenceStateLast(journal.record);
    if (!oldAlive && last !== undefined) {
      state.uncounted++;
      this.#api.fromSession(session, last).catch((error: unknown) => {
        state.uncounted = Math.max(0, state.uncounted - 1);
        this.#api.logger.warn({ err: error }, 'smacks: could not announce a resumed session again');
      });
    }
    this.#api.logger.info(
      { jid: session.jid?.toString(), resent: queue.length, from: journal.node },
      'smacks: resumed a session of another process',
    );
    this.#maybeRequest(session, state);
    return true;
  }

  /** Another process resumes one of this process's sessions: it stops here, without ending (its stanzas stay in the journal). */
  async #handover(token: string): Promise<boolean> {
    const session = this.#tokens.get(token);
    const state = session === undefined ? undefined : this.#state.peek(session);
    if (session === undefined || state === undefined || state.done || state.token !== token) return false;
    const cluster = this.#cluster();
    if (cluster === undefined) return false;
    state.done = true;
    if (state.hibernationTimer !== undefined) clearTimeout(state.hibernationTimer);
    if (state.ackTimer !== undefined) clearTimeout(state.ackTimer);
    state.hibernationTimer = undefined;
    state.ackTimer = undefined;
    this.#tokens.delete(token);
    smJournalState.delete(session);
    // Asked too late (the other process gave up waiting and took the journal): it is that process's
    // now; this one only lets go, writing nothing more into it.
    const current = await cluster.journalRead(token).catch(() => undefined);
    if (current !== undefined && current.node !== cluster.nodeId) {
      this.#api.detachSession(session);
      this.#api.logger.warn({ jid: session.jid?.toString() }, 'smacks: a handover request came after another process took the session');
      return false;
    }
    const jid = session.jid?.toString();
    // Out of the routing table at once: what is sent to it from now on is routed as to a resource that
    // is away (offline storage, delivered to the resumed session once it is back in the directory),
    // never written into a session that no longer writes its journal.
    this.#api.detachSession(session);
    // Its last counts, before the other process reads the journal.
    await cluster.journalAppend(token, { i: state.inbound, a: state.acked }, this.#journalTtl(state, cluster));
    this.#api.logger.info({ jid }, 'smacks: a session resumed on another process');
    return true;
  }

  /**
   * A resumable session of a process found dead: one process (the claim's) waits out its resumption
   * window, then routes what it had not acknowledged where messages to an unavailable resource go,
   * unless a client resumed it somewhere meanwhile.
   */
  async #orphan(token: string, node: string, jid: string): Promise<void> {
    const cluster = this.#cluster();
    if (cluster === undefined || this.#stopping) return;
    try {
      if ((await cluster.claim(`sm:${token}`)) !== cluster.nodeId) return;
      const journal = await cluster.journalRead(token);
      if (journal === undefined || journal.node !== node) {
        await cluster.release(`sm:${token}`);
        return;
      }
      // Bound again meanwhile (a new login with that resource): what it had not acknowledged goes now.
      const full = jid || `${journal.user}@${this.#api.domain}/${journal.resource}`;
      const wait = cluster.nodeOf(full) !== undefined ? 0 : Math.max(0, journal.maxSeconds * 1000 - cluster.ttlMs);
      const timer = setTimeout(() => void this.#releaseOrphan(cluster, token, node), wait);
      timer.unref();
      this.#orphans.set(token, timer);
      this.#orphanNodes.set(token, node);
      this.#orphanJids.set(token, jid || `${journal.user}@${this.#api.domain}/${journal.resource}`);
    } catch (error) {
      this.#api.logger.warn({ err: error }, 'smacks: could not look after a session of a process that is gone');
    }
  }

  async #releaseOrphan(cluster: XmppCluster, token: string, node: string): Promise<void> {
    this.#orphans.delete(token);
    this.#orphanNodes.delete(token);
    this.#orphanJids.delete(token);
    try {
      const journal = await cluster.journalRead(token);
      if (journal !== undefined && journal.node === node) {
        this.#api.logger.info(
          { user: journal.user, stanzas: journal.stanzas.length },
          'smacks: a session of a process that is gone was not resumed: its messages are routed again',
        );
        const stanzas: XmlElement[] = [];
        const stamps: number[] = [];
        for (const item of journal.stanzas) {
          const stanza = parseXml(item.xml);
          if (stanza === undefined) continue;
          stanzas.push(stanza);
          stamps.push(item.stamp);
        }
        await this.#reroute(stanzas, stamps);
        await cluster.journalDelete(token);
        await this.#rememberOld(journal.user, token, journal.inbound);
      }
    } catch (error) {
      this.#api.logger.warn({ err: error }, 'smacks: could not route the messages of a session that was not resumed');
    } finally {
      await cluster.release(`sm:${token}`).catch(() => undefined);
    }
  }

  // ---- the store ----

  #persist(session: XmppSession, state: SmState): void {
    const user = session.user;
    const token = state.token;
    const resource = session.jid?.resource;
    if (user === undefined || token === undefined || resource === undefined) return;
    // Only the latest queue matters: a write waits for the end of this turn of the event loop (and for the
    // write before it), and takes what came meanwhile. A burst of N stanzas to a hibernating session is then a
    // few writes of the queue, not N (each of the whole queue: N² bytes, with N up to maxQueueSize).
    if (state.persistPending) return;
    state.persistPending = true;
    state.persisting = state.persisting
      // After this turn of the event loop: the rest of a burst joins the write.
      .then(() => new Promise<void>((resolve) => setImmediate(resolve)))
      .then(() => {
        state.persistPending = false;
        if (state.done || state.hibernating === undefined) return;
        const record: StoredSession = {
          resource,
          inbound: state.inbound,
          acked: state.acked,
          since: state.hibernating,
          queue: state.queue.map((item): [number, string] => [item.stamp, item.text]),
        };
        return this.#store.set(user, token, record);
      })
      .catch((error: unknown) => this.#api.logger.error({ err: error }, 'smacks: could not store a hibernating session'));
  }

  /** The index (owner '', key 'hibernating') lists [user, SM-ID] of hibernating sessions, for recovery after a crash. */
  #updateIndex(): void {
    // Once per turn of the event loop (and per finished write), listing the sessions as they are then: a
    // routing layer's restart that drops every connection at once is one write of the index, not one per
    // session (each of every session: quadratic).
    if (this.#indexPending) return;
    this.#indexPending = true;
    this.#indexWrites = this.#indexWrites
      .then(() => new Promise<void>((resolve) => setImmediate(resolve)))
      .then(() => {
        this.#indexPending = false;
        const entries: Array<[string, string]> = [];
        for (const [token, session] of this.#tokens) {
          if (this.#state.peek(session)?.hibernating !== undefined && session.user !== undefined) entries.push([session.user, token]);
        }
        return this.#store.set('', INDEX_KEY, entries.length === 0 ? undefined : entries);
      })
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
    if (this.#journalTimer !== undefined) clearInterval(this.#journalTimer);
    const cluster = this.#cluster();
    // Several processes: the sessions stay resumable on the others (a rolling restart loses none) —
    // their journals stay, and another process looks after them (as after a crash), with the
    // sessions of dead processes this one looked after.
    const handed: Array<{ token: string; node: string; jid: string }> = [];
    for (const [token, timer] of this.#orphans) {
      clearTimeout(timer);
      handed.push({ token, node: this.#orphanNodes.get(token) ?? '', jid: this.#orphanJids.get(token) ?? '' });
      await cluster?.release(`sm:${token}`).catch(() => undefined);
    }
    this.#orphans.clear();
    // The storage closes after the modules stopped: a recovery still reading it finishes first.
    await this.#recovering;
    const sessions = [...this.#tokens.values()];
    await Promise.all(
      sessions.map(async (session) => {
        const state = this.#state.peek(session);
        if (state === undefined || state.done) return;
        if (state.hibernationTimer !== undefined) clearTimeout(state.hibernationTimer);
        if (state.ackTimer !== undefined) clearTimeout(state.ackTimer);
        if (cluster !== undefined && state.token !== undefined && smJournalState.peek(session)?.token !== undefined) {
          state.handedOff = true;
          handed.push({ token: state.token, node: cluster.nodeId, jid: session.jid?.toString() ?? '' });
          await cluster.journalAppend(state.token, { i: state.inbound, a: state.acked }, this.#journalTtl(state, cluster));
        }
        if (state.hibernating !== undefined) await this.#api.endSession(session);
      }),
    );
    for (const orphan of handed) cluster?.broadcast(ORPHAN_TOPIC, JSON.stringify(orphan));
    // #closed ran for each: wait for its routing and store writes.
    await Promise.all([...this.#closing]);
    await this.#indexWrites;
  }
}
