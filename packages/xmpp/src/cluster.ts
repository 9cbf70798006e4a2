import { randomBytes } from 'node:crypto';
import type { Bus, BusMessage, BusSubscription, Connection, Logger, StreamConsumer } from '@portbind/core';
import { consumeStream } from '@portbind/core';
import { type ElementTree, fromTree, toTree, type XmlElement, xml } from './element.js';
import { presenceState } from './host.js';
import { Jid } from './jid.js';
import { blockingPushState } from './modules/blocking.js';
import { capsNotifyState } from './modules/caps.js';
import { carbonsState } from './modules/carbons.js';
import { MAX_CARRIED_ROOMS, mucOccupancyState } from './modules/muc/occupancy-state.js';
import { smJournalState } from './modules/smacks-state.js';
import { parseXml } from './parse.js';
import type { Session, SessionStage, XmppSession } from './session.js';
import type { StanzaErrorCondition } from './stanza-error.js';
import type { XmppStorage } from './stores/types.js';
import { StreamError, type StreamErrorCondition, streamErrorConditions } from './stream-error.js';

// One XMPP service on several processes (issue 12): every process keeps a directory entry per bound
// session on the bus (presence with a TTL, refreshed by heartbeats) holding what the other
// processes' modules read of it (availability, priority, last presence, roster interest, carbons),
// and a mirror of the other processes' entries, kept current by a change channel and rebuilt from
// the entries after a reconnection. `api.sessionsOf()` / `sessionOf()` / `availableSessionsOf()`
// return local sessions and {@link RemoteSession}s from the mirror: the modules run unchanged, and
// what they `send()` to a remote session is appended to its process's durable stream
// (`xmpp:node:<node>`, Redis Streams), which that process consumes and hands to the session through
// the normal outbound path (filters, stream management, CSI). A stanza for a session that is gone
// meanwhile is routed again as the server would route a new one (never silently dropped), and the
// stream of a process that died (its node entry expired) is drained by the others the same way.

/** Cluster tuning (`xmppServer({ bus, cluster })`). */
export interface XmppClusterOptions {
  /**
   * Directory entries (sessions, the process itself) expire this long after their process stopped
   * refreshing them (it died); the others then forget its sessions and route what was sent to it
   * again. Default 30 000 ms; at least 300 ms.
   */
  sessionTtlMs?: number;
}

/** What a cluster node reports of itself (`server.cluster`). */
export interface XmppClusterView {
  /** This process's node id (its stream is `xmpp:node:<nodeId>`). */
  readonly nodeId: string;
  /**
   * Publish a local session's directory entry again if what it says changed: a module changed session
   * state the entry carries, outside a stanza from the session (after which the server does it anyway).
   */
  refresh(session: XmppSession): void;
  /** Resolves once the mirror is loaded and this process's stream is consumed. */
  readonly ready: Promise<void>;
  /** Full JIDs of the sessions other processes hold, as this process's mirror has them. */
  remoteSessions(): string[];
  /** A mirrored session's availability and priority (undefined when the mirror does not have it). */
  remotePresence(full: string): { available: boolean; priority: number } | undefined;
  /**
   * Tell the other processes' listeners of `topic` something (a module keeping a cache of shared
   * data says what changed: `blocking` names the user whose block list did). At most once, soon:
   * a listener also hears `undefined` when messages may have been lost (the bus was away).
   */
  broadcast(topic: string, data: string): void;
  /**
   * Hear what the other processes broadcast on `topic`; `undefined` means some may have been lost
   * (reload what you keep). Returns a function that stops listening.
   */
  listen(topic: string, listener: (data: string | undefined) => void): () => void;
  /**
   * Hold `name` (a room, any lease) for this process while it lives, unless another process holds
   * it: resolves to the holder's node id (`nodeId` when this process holds it now). A holder that
   * died keeps it until `sessionTtlMs` after its death. Rejects while the bus is unreachable.
   */
  claim(name: string): Promise<string>;
  /** Let go of a claim of this process (nothing when it holds none). */
  release(name: string): Promise<void>;
  /** Hear the names of claims this process lost (another process took them while the bus was away). */
  onClaimLost(listener: (name: string) => void): () => void;
  /**
   * Hand a stanza to another process, routed there as the server routes what a module sends (a room
   * that process holds). A process that died meanwhile: the process draining its stream routes it.
   * `hops` counts how often this stanza was forwarded already: past 3 it is bounced rather than sent on.
   */
  forward(node: string, stanza: XmlElement): Promise<void>;
  /** How often the stanza being routed was forwarded between processes (0 for one that was not). */
  hopsOf(stanza: XmlElement): number;
  /** The process holding a session (this one's id for a local session), undefined when no process does. */
  nodeOf(full: string): string | undefined;
  /** Whether a process is alive as far as this one knows: false once its entry was found expired. */
  isAlive(node: string): boolean;
  /** Hear of processes found dead (their entry expired): their sessions have left the directory. */
  onNodeGone(listener: (node: string) => void): () => void;
  /** The bus the cluster runs on (modules keep entries of their own on it, under `xmpp:<module>:…`). */
  readonly bus: Bus;
  /** `cluster.sessionTtlMs` as configured: entries a module sets live as long as the directory's. */
  readonly sessionTtlMs: number;
}

/** What the cluster needs from its server. @internal */
export interface ClusterHost {
  readonly domain: string;
  readonly logger: Logger;
  /** A local bound (or hibernating) session by full JID. */
  localSession(full: string): Session | undefined;
  /** Every local bound (or hibernating) session. */
  localSessions(): Iterable<Session>;
  /** Local bound (or hibernating) sessions of a bare JID. */
  localSessionsOf(bare: string): Session[];
  /** Route a stanza as the server would (marked as a redelivery). */
  route(stanza: XmlElement): Promise<void>;
  /** Answer a stanza with an error routed back to its sender. */
  bounce(stanza: XmlElement, condition: StanzaErrorCondition, text?: string): void;
  /** Store a message offline for a bare JID (fires `message/offline`): false when nothing took it. */
  offline(stanza: XmlElement, to: Jid): Promise<boolean>;
  /** The durable stores (rosters: who sees a gone process's users go offline). */
  readonly storage: XmppStorage;
}

/** A directory entry: what other processes read of a session. */
interface SessionRecord {
  node: string;
  jid: string;
  available: boolean;
  priority: number;
  /** The last broadcast available presence (probes are answered from it). */
  last?: string;
  /** It asked for the roster: roster pushes go to it. */
  interested: boolean;
  carbons: boolean;
  hibernating: boolean;
  /** It asked for its block list: block and unblock pushes go to it (XEP-0191 §3.3). */
  blockPushes?: boolean;
  /** The `+notify` features of its resolved caps (PEP notifications, XEP-0163 §4.3), sorted. */
  notify?: string[];
  /** Its stream-management SM-ID when it may be resumed: its journal (see {@link JournalState}) names it. */
  sm?: string;
  /** The rooms it sits in, `[room, nick, role]` (a resume on another process enters it there again). */
  muc?: Array<[string, string, string]>;
}

/**
 * What a stream-management session's journal on the bus tells (`xmpp:sm:<domain>:<SM-ID>`, one
 * stream per resumable session, appended as stanzas are written to it): enough for another process
 * to resume the session after its own died or let it go.
 */
export interface JournalState {
  user: string;
  resource: string;
  /** The process that holds (or held) the session. */
  node: string;
  /** Seconds the session may be resumed for. */
  maxSeconds: number;
  /** Stanzas handled from the client (the server's h), as of its last ack. */
  inbound: number;
  /** Stanzas the client acknowledged, as far as the journal knows. */
  acked: number;
  /** Stanzas written to the session so far (mod 2^32): the last `seq`. */
  sent: number;
  /** What other processes read of the session (presence, carbons…): its directory record. */
  record: unknown;
  /** Stanzas written and not known acknowledged: seq (the sent count after it), first-sent stamp, text. */
  stanzas: Array<{ seq: number; stamp: number; xml: string; id: string }>;
}

/** One entry of a journal. */
export interface JournalEntry {
  /** An outbound stanza: its seq, stamp and text. */
  s?: number;
  t?: number;
  x?: string;
  /** The acknowledged count (the client's h) when written. */
  a?: number;
  /** The handled count (the server's h). */
  i?: number;
  /** The sent count at a checkpoint (stanza entries carry theirs as `s`). */
  c?: number;
  /** The session: user, resource, holder, max seconds. */
  m?: { u: string; r: string; n: string; max: number };
  /** The directory record. */
  r?: unknown;
  /** Entries written together (one turn of the event loop), in order. */
  b?: JournalEntry[];
}

/** How another process answered a request to hand over a session. */
export type HandoverOutcome = 'released' | 'unknown' | 'timeout' | 'unreachable';

/** A change of the directory, on `xmpp:sessions:<domain>`. */
type Change = { op: 'set'; record: SessionRecord } | { op: 'del'; node: string; jid: string };

/** An entry of a node's stream: a stanza (or a close order) for one of its sessions. */
interface Delivery {
  to: string;
  /** The stanza as JSON (element.ts `toTree`): no XML parser on the receiving side. */
  el?: ElementTree;
  /** Raw text (and, from older processes, stanzas as XML). */
  xml?: string;
  /** Write without the outbound filters. */
  raw?: boolean;
  /** Route this stanza here (a room this process holds); `to` is its `to`. */
  route?: boolean;
  /** Hand over the resumable session of this SM-ID (to the process `reply`), answering with `released`. */
  handover?: { token: string; reply: string; id: string };
  /** The answer to a handover request. */
  released?: { id: string; ok: boolean };
  /** Close the session with this stream error: only the process it was sent to (never a process draining a dead one's stream, where the JID may be another session's now). */
  close?: { condition: string; text?: string; node: string };
  /** How many times this stanza was routed again already (bounded: no loop). */
  hops?: number;
}

/** Entries kept per journal (XADD MAXLEN ~): more than a session may leave unacknowledged (smacks' maxQueueSize). */
const JOURNAL_MAX_LENGTH = 4096;
/** How long a process waits for another to hand over a session before it takes the journal as it is. */
const HANDOVER_TIMEOUT_MS = 5000;

/** A stanza routed again more often than this goes to offline storage (messages) or is dropped. */
const MAX_HOPS = 3;
/** Entries kept per node stream (XADD MAXLEN ~): far more than a live reader ever lags. */
const STREAM_MAX_LENGTH = 100_000;
/** Deliveries of a stanza that was routed again, by element. */
const hopsOf = new WeakMap<XmlElement, number>();

let nextRemoteId = -1;

/**
 * A session another process holds, as the modules see it: its JID and the mirrored state; `send()`
 * appends to that process's stream. It has no connection here.
 */
export class RemoteSession implements XmppSession {
  readonly id = nextRemoteId--;
  readonly user: string;
  readonly jid: Jid;
  readonly secure = true;
  readonly remoteAddress = undefined;
  readonly loopback = false;
  readonly authenticated = true;
  /** Per-session state as the modules read it (presence, carbons), filled from the directory entry. */
  moduleState = new Map<object, unknown>();
  node: string;
  hibernating = false;
  /** Its SM-ID, when it may be resumed. */
  sm: string | undefined;
  readonly #cluster: XmppCluster;

  constructor(cluster: XmppCluster, record: SessionRecord, jid: Jid) {
    this.#cluster = cluster;
    this.jid = jid;
    this.user = jid.local;
    this.node = record.node;
    this.update(record);
  }

  get conn(): Connection {
    throw new Error(`${this.jid.toString()} is a session of another process: it has no connection here`);
  }

  get stage(): SessionStage {
    return this.hibernating ? 'hibernating' : 'bound';
  }

  /** Take a newer directory entry. */
  update(record: SessionRecord): void {
    this.node = record.node;
    this.hibernating = record.hibernating;
    this.sm = typeof record.sm === 'string' ? record.sm : undefined;
    applyRecord(this, record);
  }

  send(element: XmlElement | string): void {
    this.#cluster.deliver(this, element, false);
  }

  sendRaw(element: XmlElement | string): void {
    this.#cluster.deliver(this, element, true);
  }

  beforeFlush(callback: () => void): void {
    process.nextTick(callback);
  }

  close(error?: StreamError): void {
    this.#cluster.closeRemote(this, error);
  }
}

/** Set what a directory record says of a session on its module states (a mirrored session, or a session resumed here). */
export function applyRecord(session: XmppSession, value: unknown): void {
  if (!isRecord(value)) return;
  const record = value;
  const presence = presenceState.get(session);
  presence.available = record.available;
  presence.priority = typeof record.priority === 'number' ? record.priority : 0;
  presence.interested = record.interested === true;
  if (typeof record.last !== 'string') presence.last = undefined;
  else if (presence.last === undefined || presence.last.toString() !== record.last) presence.last = parseXml(record.last);
  carbonsState.get(session).on = record.carbons === true;
  blockingPushState.get(session).pushes = record.blockPushes === true;
  const rooms = Array.isArray(record.muc)
    ? record.muc
        .filter(
          (entry): entry is [string, string, string] =>
            Array.isArray(entry) && entry.length === 3 && entry.every((part) => typeof part === 'string' && part.length <= 3071),
        )
        .slice(0, MAX_CARRIED_ROOMS)
    : [];
  const occupancy = mucOccupancyState.get(session);
  occupancy.rooms = rooms.length === 0 ? undefined : rooms;
  const caps = capsNotifyState.get(session);
  const notify = Array.isArray(record.notify) ? record.notify.filter((name): name is string => typeof name === 'string').slice(0, 64) : [];
  // The same set while it does not change (readers compare them).
  if (notify.length === 0) {
    caps.notify = undefined;
    caps.list = undefined;
  } else if (caps.notify === undefined || [...caps.notify].join('\n') !== notify.join('\n')) {
    caps.notify = new Set(notify);
    caps.list = notify;
  }
}

/** A session's directory entry: per process too (for a moment two processes may hold one full JID). */
function presenceKey(domain: string, node: string, full: string): string {
  return `xmpp:s:${latin1(domain)}:${node}:${latin1(full)}`;
}

function nodeKey(domain: string, node: string): string {
  return `xmpp:n:${latin1(domain)}:${node}`;
}

/** Bus names are byte strings (one char per byte). */
function latin1(text: string): string {
  return Buffer.from(text).toString('latin1');
}

function isRecord(value: unknown): value is SessionRecord {
  if (typeof value !== 'object' || value === null) return false;
  const record = value as Partial<SessionRecord>;
  return typeof record.node === 'string' && typeof record.jid === 'string' && typeof record.available === 'boolean';
}

/** The cluster side of one XMPP server. @internal */
export class XmppCluster implements XmppClusterView {
  readonly nodeId: string;
  readonly ready: Promise<void>;
  readonly #bus: Bus;
  readonly #host: ClusterHost;
  readonly #ttlMs: number;
  readonly #channel: string;
  /** Mirrored sessions of other processes: bare → resource → session. */
  readonly #mirror = new Map<string, Map<string, RemoteSession>>();
  /** What this process last wrote for each of its sessions, by full JID. */
  readonly #published = new Map<string, { session: Session; text: string; last: XmlElement | undefined; available?: boolean }>();
  /** Nodes seen alive; those that die get their streams drained. */
  readonly #nodes = new Set<string>();
  /** Dead nodes whose streams are drained for a while, with the checks left. */
  readonly #draining = new Map<string, number>();
  readonly #offs: Array<() => void> = [];
  #subscription: BusSubscription | undefined;
  #offlineSubscription: BusSubscription | undefined;
  readonly #offlineChannel: string;
  /** Modules' cache messages (`broadcast` / `listen`), on `xmpp:modules:<domain>`. */
  readonly #moduleChannel: string;
  #moduleSubscription: BusSubscription | undefined;
  readonly #listeners = new Map<string, Set<(data: string | undefined) => void>>();
  readonly #claimLost = new Set<(name: string) => void>();
  #handoverHandler: ((token: string) => Promise<boolean>) | undefined;
  readonly #handovers = new Map<string, (ok: boolean) => void>();
  readonly #boundListeners = new Set<(full: string, sm: string | undefined) => void>();
  readonly #orphanListeners = new Set<(orphan: { token: string; jid: string; node: string }) => void>();
  readonly #nodeGone = new Set<(node: string) => void>();
  /** Nodes found dead (the latest 1 000). */
  readonly #dead = new Set<string>();
  /** Users whose offline messages this process is delivering now. */
  readonly #delivering = new Set<string>();
  #consumer: StreamConsumer | undefined;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #checking = false;
  /**
   * No process is declared dead before this: after the bus was away (a Redis restart empties the
   * directory until every process has written its entries again), absence proves nothing for a TTL.
   */
  #quietUntil = 0;

  constructor(bus: Bus, host: ClusterHost, options: XmppClusterOptions = {}) {
    this.#bus = bus;
    this.#host = host;
    this.#ttlMs = Math.max(300, options.sessionTtlMs ?? 30_000);
    // One bus may serve several servers (tests share a memoryBus): the node id is the server's.
    this.nodeId = `${bus.id}.${randomBytes(4).toString('hex')}`;
    this.#channel = `xmpp:sessions:${latin1(host.domain)}`;
    this.#offlineChannel = `xmpp:offline:${latin1(host.domain)}`;
    this.#moduleChannel = `xmpp:modules:${latin1(host.domain)}`;
    this.ready = this.#start();
    this.ready.catch((error: unknown) => this.#host.logger.error({ err: error }, 'XMPP cluster: start failed'));
  }

  async #start(): Promise<void> {
    const stream = this.#bus.stream(`xmpp:node:${this.nodeId}`);
    await stream.createGroup('deliver', 'start');
    this.#subscription = await this.#bus.subscribe(this.#channel, (message) => this.#change(message));
    this.#offlineSubscription = await this.#bus.subscribe(this.#offlineChannel, (message) => {
      void this.#deliverOffline(message.data.toString());
    });
    this.#moduleSubscription = await this.#bus.subscribe(this.#moduleChannel, (message) => this.#moduleMessage(message));
    const quiet = (): void => {
      this.#quietUntil = Date.now() + this.#ttlMs * 2;
    };
    this.#offs.push(
      this.#bus.on('disconnected', quiet),
      this.#bus.on('connected', quiet),
      this.#bus.on('resubscribed', () => {
        quiet();
        this.#tellListeners(undefined, undefined);
        void this.#resync('resubscribed');
      }),
      this.#bus.on('lost', (info) => {
        if (info.kind === 'claim') {
          const prefix = this.#claimPrefix();
          for (const key of info.names) if (key.startsWith(prefix)) this.#tell(this.#claimLost, key.slice(prefix.length));
          return;
        }
        quiet();
        if (info.kind !== 'stream') this.#tellListeners(undefined, undefined);
        if (info.kind !== 'stream') void this.#resync(`lost ${info.kind}: ${info.reason}`);
        else this.#host.logger.warn({ reason: info.reason, names: info.names }, 'XMPP cluster: stream data lost on the bus');
      }),
    );
    await this.#bus.presence.set(nodeKey(this.#host.domain, this.nodeId), String(Date.now()), { ttlMs: this.#ttlMs });
    await this.#resync(undefined);
    this.#consumer = consumeStream(stream, {
      group: 'deliver',
      consumer: this.nodeId,
      handler: (entry) => this.#handle(entry.data, true),
      onError: (error) => this.#host.logger.warn({ err: error }, 'XMPP cluster: reading this process stream failed'),
    });
    this.#timer = setInterval(() => void this.#check(), Math.max(100, Math.floor(this.#ttlMs / 2)));
    this.#timer.unref();
  }

  // ---- the directory -----------------------------------------------------------------------------

  /** A local session bound a resource (or was resumed): enter it in the directory. */
  bound(session: Session): void {
    const jid = session.jid;
    if (jid === undefined) return;
    // The same full JID on another process: that one is replaced (RFC 6120 §7.7.2.2).
    const other = this.#mirror.get(jid.bare)?.get(jid.resource);
    if (other !== undefined) {
      this.#forget(jid.bare, jid.resource);
      this.closeRemote(other, new StreamError('conflict', 'replaced by a new connection'));
    }
    this.#published.delete(jid.toString());
    this.refresh(session);
    this.#tellBound(jid.toString(), smJournalState.peek(session)?.token);
  }

  /** Publish the session's entry again if what others read of it changed. Cheap when nothing did. */
  /** A local session's directory record (`last` as an element, not yet serialized), and its JID. */
  #record(session: Session): { full: string; record: SessionRecord; last: XmlElement | undefined } | undefined {
    const jid = session.jid;
    if (jid === undefined) return undefined;
    const full = jid.toString();
    const presence = presenceState.peek(session);
    const record: SessionRecord = {
      node: this.nodeId,
      jid: full,
      available: presence?.available === true,
      priority: presence?.priority ?? 0,
      interested: presence?.interested === true,
      carbons: carbonsState.peek(session)?.on === true,
      hibernating: session.hibernating,
      blockPushes: blockingPushState.peek(session)?.pushes === true || undefined,
      notify: capsNotifyState.peek(session)?.list,
      sm: smJournalState.peek(session)?.token,
      muc: mucOccupancyState.peek(session)?.rooms,
    };
    const last = presence?.available === true ? presence.last : undefined;
    return { full, record, last };
  }

  refresh(view: XmppSession): void {
    // Every session a module sees is the server's Session.
    const session = view as Session;
    if (this.#stopped || session.ended) return;
    const made = this.#record(session);
    if (made === undefined) return;
    const { full, record, last } = made;
    const previous = this.#published.get(full);
    const scalar = JSON.stringify(record);
    if (previous !== undefined && previous.session === session && previous.text === scalar && previous.last === last) return;
    this.#published.set(full, { session, text: scalar, last, available: record.available });
    if (record.available && !(previous?.session === session && previous.available)) this.#recheckOffline(session);
    if (last !== undefined) record.last = last.toString();
    const text = JSON.stringify(record);
    // A resumable session's journal keeps what a process resuming it must restore.
    const journal = smJournalState.peek(session);
    if (journal?.token !== undefined) {
      void this.journalAppend(journal.token, { r: record }, journal.ttlMs);
      journal.appended?.();
    }
    this.#bus.presence
      .set(presenceKey(this.#host.domain, this.nodeId, full), text, { ttlMs: this.#ttlMs })
      .then(() => this.#publish({ op: 'set', record }))
      .catch((error: unknown) => this.#host.logger.warn({ err: error, jid: full }, 'XMPP cluster: could not publish a session'));
  }

  /**
   * A session just became available: another process whose mirror did not have it yet may store a
   * message offline after this process delivered the offline messages. Looked at again once the
   * directory has spread (a second, or the TTL when shorter): what arrived is delivered now.
   */
  #recheckOffline(session: Session): void {
    const timer = setTimeout(
      () => {
        if (session.jid !== undefined) void this.#deliverOffline(session.jid.bare);
      },
      Math.min(1000, this.#ttlMs),
    );
    timer.unref();
  }

  /**
   * A message was stored offline (by any process, told on `xmpp:offline:<domain>`, a moment later):
   * if the user is available here after all (a mirror elsewhere was behind, the bus was down), the
   * process that holds the user's best resource delivers it now rather than at the next login.
   */
  offlineStored(bare: string): void {
    const timer = setTimeout(() => {
      if (!this.#stopped) this.#bus.publish(this.#offlineChannel, bare).catch(() => undefined);
    }, 200);
    timer.unref();
  }

  /** Deliver a user's offline messages to the best available resource, if this process holds it. */
  async #deliverOffline(bare: string): Promise<void> {
    if (this.#stopped || this.#delivering.has(bare)) return;
    const local = this.#host
      .localSessionsOf(bare)
      .filter((session) => !session.ended && presenceState.peek(session)?.available === true)
      .map((session) => ({ session, priority: presenceState.peek(session)?.priority ?? 0 }))
      .filter((entry) => entry.priority >= 0)
      .sort((x, y) => y.priority - x.priority);
    const best = local[0];
    if (best === undefined) return;
    // Another process's resource with a higher priority (or as high, on a process of a smaller id) takes them there.
    for (const remote of this.sessionsOf(bare)) {
      const state = presenceState.get(remote);
      if (!state.available) continue;
      if (state.priority > best.priority || (state.priority === best.priority && remote.node < this.nodeId)) return;
    }
    const user = best.session.user;
    if (user === undefined) return;
    this.#delivering.add(bare);
    try {
      const offline = this.#host.storage.archive('offline');
      const stored = await offline.query(user);
      if (stored.items.length === 0 || best.session.ended) return;
      for (const item of stored.items) {
        const message = parseXml(item.xml);
        if (message !== undefined) best.session.send(message);
      }
      await offline.delete(user, { ids: stored.items.map((item) => item.id) });
      this.#host.logger.debug(
        { jid: best.session.jid?.toString(), count: stored.items.length },
        'XMPP cluster: late offline messages delivered',
      );
    } catch (error) {
      this.#host.logger.warn({ err: error }, 'XMPP cluster: could not look at offline messages again');
    } finally {
      this.#delivering.delete(bare);
    }
  }

  /** A local session ended: out of the directory. */
  ended(session: Session): void {
    const jid = session.jid;
    if (jid === undefined || this.#stopped) return;
    const full = jid.toString();
    const entry = this.#published.get(full);
    if (entry === undefined || entry.session !== session) return;
    this.#published.delete(full);
    this.#bus.presence
      .delete(presenceKey(this.#host.domain, this.nodeId, full))
      .then(() => this.#publish({ op: 'del', node: this.nodeId, jid: full }))
      .catch((error: unknown) => this.#host.logger.warn({ err: error, jid: full }, 'XMPP cluster: could not withdraw a session'));
  }

  async #publish(change: Change): Promise<void> {
    await this.#bus.publish(this.#channel, JSON.stringify(change));
  }

  #change(message: BusMessage): void {
    let change: Change;
    try {
      change = JSON.parse(message.data.toString()) as Change;
    } catch {
      return;
    }
    if (change.op === 'set' && isRecord(change.record)) {
      if (change.record.node !== this.nodeId) this.#remember(change.record);
    } else if (change.op === 'del' && typeof change.jid === 'string' && change.node !== this.nodeId) {
      const jid = Jid.parse(change.jid);
      const known = jid === undefined ? undefined : this.#mirror.get(jid.bare)?.get(jid.resource);
      if (jid !== undefined && known?.node === change.node) this.#forget(jid.bare, jid.resource);
    }
  }

  #remember(record: SessionRecord): void {
    const jid = Jid.parse(record.jid);
    if (jid === undefined || jid.isBare || jid.domain !== this.#host.domain) return;
    this.#nodes.add(record.node);
    let resources = this.#mirror.get(jid.bare);
    if (resources === undefined) {
      resources = new Map();
      this.#mirror.set(jid.bare, resources);
    }
    const known = resources.get(jid.resource);
    if (known === undefined) resources.set(jid.resource, new RemoteSession(this, record, jid));
    else known.update(record);
    if (known === undefined || known.node !== record.node)
      this.#tellBound(record.jid, typeof record.sm === 'string' ? record.sm : undefined);
  }

  /** Hear of sessions bound (or resumed) on any process: full JID and SM-ID. */
  onBound(listener: (full: string, sm: string | undefined) => void): () => void {
    this.#boundListeners.add(listener);
    return () => this.#boundListeners.delete(listener);
  }

  #tellBound(full: string, sm: string | undefined): void {
    for (const listener of [...this.#boundListeners]) {
      try {
        listener(full, sm);
      } catch (error) {
        this.#host.logger.error({ err: error }, 'XMPP cluster: a bound listener failed');
      }
    }
  }

  #forget(bare: string, resource: string): void {
    const resources = this.#mirror.get(bare);
    if (resources === undefined) return;
    const session = resources.get(resource);
    if (session !== undefined) presenceState.get(session).available = false;
    resources.delete(resource);
    if (resources.size === 0) this.#mirror.delete(bare);
  }

  /** Rebuild the mirror from the directory (at start, after the bus came back or lost entries). */
  async #resync(why: string | undefined): Promise<void> {
    if (this.#stopped) return;
    try {
      if (why !== undefined) {
        this.#host.logger.info({ why }, 'XMPP cluster: rebuilding the session directory');
        // Our own entries may have been lost with the engine's data: written again.
        await this.#bus.presence.set(nodeKey(this.#host.domain, this.nodeId), String(Date.now()), { ttlMs: this.#ttlMs });
        for (const session of this.#host.localSessions()) {
          if (session.jid !== undefined) this.#published.delete(session.jid.toString());
          this.refresh(session);
        }
      }
      const entries = await this.#bus.presence.list(`xmpp:s:${latin1(this.#host.domain)}:`);
      const seen = new Set<string>();
      for (const value of entries.values()) {
        let record: unknown;
        try {
          record = JSON.parse(value);
        } catch {
          continue;
        }
        if (!isRecord(record) || record.node === this.nodeId) continue;
        seen.add(record.jid);
        this.#remember(record);
      }
      for (const [bare, resources] of [...this.#mirror]) {
        for (const [resource, session] of [...resources]) {
          if (!seen.has(session.jid.toString())) this.#forget(bare, resource);
        }
      }
      // While the bus was away, messages to this process's users went to offline storage.
      if (why !== undefined) {
        const users = new Set<string>();
        for (const session of this.#host.localSessions()) if (session.jid !== undefined) users.add(session.jid.bare);
        for (const bare of users) await this.#deliverOffline(bare);
      }
    } catch (error) {
      this.#host.logger.warn({ err: error }, 'XMPP cluster: could not read the session directory');
    }
  }

  /** Nodes whose entry expired: their sessions leave the mirror, their streams are drained here. */
  async #check(): Promise<void> {
    if (this.#stopped || this.#checking) return;
    this.#checking = true;
    try {
      const live = new Set<string>();
      const prefix = `xmpp:n:${latin1(this.#host.domain)}:`;
      for (const key of (await this.#bus.presence.list(prefix)).keys()) live.add(key.slice(prefix.length));
      for (const node of live) this.#nodes.add(node);
      const quiet = Date.now() < this.#quietUntil || !this.#bus.connected;
      for (const node of quiet ? [] : [...this.#nodes]) {
        if (live.has(node) || node === this.nodeId) continue;
        this.#nodes.delete(node);
        this.#host.logger.warn({ node }, 'XMPP cluster: a process is gone: its sessions leave the directory');
        const gone: RemoteSession[] = [];
        const orphans: Array<{ token: string; jid: string; node: string }> = [];
        for (const [bare, resources] of [...this.#mirror]) {
          for (const [resource, session] of [...resources]) {
            if (session.node !== node) continue;
            if (presenceState.get(session).available) gone.push(session);
            if (session.sm !== undefined) orphans.push({ token: session.sm, jid: session.jid.toString(), node });
            this.#forget(bare, resource);
          }
        }
        // Resumable sessions of the dead process: stream management decides (one process claims each).
        for (const orphan of orphans) {
          for (const listener of [...this.#orphanListeners]) {
            try {
              listener(orphan);
            } catch (error) {
              this.#host.logger.error({ err: error }, 'XMPP cluster: an orphan listener failed');
            }
          }
        }
        for (const session of gone) await this.#unavailable(session);
        this.#dead.add(node);
        if (this.#dead.size > 1000) this.#dead.delete(this.#dead.values().next().value as string);
        this.#tell(this.#nodeGone, node);
        // Drained now and at the next checks (stale mirrors elsewhere may still append to it).
        this.#draining.set(node, 10);
      }
      // One process drains (the first live one by id): it takes over at once, in order, the entries
      // the dead one had read and not acknowledged, with nobody else claiming them at the same time.
      const drainer = [...live].sort()[0] === this.nodeId;
      for (const [node, left] of [...this.#draining]) {
        if (left <= 1) this.#draining.delete(node);
        else this.#draining.set(node, left - 1);
        if (!drainer) continue;
        await this.#drain(node);
        // The last look: nothing is left in it (a mirror that far behind routes again what it appends later).
        if (left <= 1) await this.#bus.stream(`xmpp:node:${node}`).delete();
      }
    } catch (error) {
      this.#host.logger.warn({ err: error }, 'XMPP cluster: checking the processes failed');
    } finally {
      this.#checking = false;
    }
  }

  /**
   * A session of a dead process was available: its contacts and own resources on this process see
   * it unavailable (RFC 6121 §4.6.3, as its own process would have said). Each process tells its own.
   */
  async #unavailable(session: RemoteSession): Promise<void> {
    const from = session.jid.toString();
    const presence = xml('presence', { type: 'unavailable', from });
    const recipients = [session.jid.bare];
    try {
      const roster = (await this.#host.storage.keyValue('roster').get(session.user, 'roster')) as
        | { items?: Array<{ jid?: unknown; subscription?: unknown }> }
        | undefined;
      for (const item of roster?.items ?? []) {
        if (typeof item.jid === 'string' && (item.subscription === 'from' || item.subscription === 'both')) recipients.push(item.jid);
      }
    } catch (error) {
      this.#host.logger.warn({ err: error, jid: from }, 'XMPP cluster: could not read a roster');
    }
    for (const bare of recipients) {
      for (const local of this.#host.localSessionsOf(bare)) {
        if (presenceState.peek(local)?.available === true) local.send(presence.with({ to: local.jid?.toString() }));
      }
    }
  }

  /** Take over what a dead process's stream holds: entries it never read and those it read and never acknowledged. */
  async #drain(node: string): Promise<void> {
    const stream = this.#bus.stream(`xmpp:node:${node}`);
    for (let round = 0; round < 100 && !this.#stopped; round++) {
      // What it had read and not acknowledged first (older), then what it never read.
      const entries = [
        ...(await stream.claim('deliver', this.nodeId, 0, 100)),
        ...(await stream.read('deliver', this.nodeId, { count: 100 })),
      ];
      if (entries.length === 0) return;
      this.#host.logger.info({ node, entries: entries.length }, 'XMPP cluster: routing again what a gone process did not deliver');
      const done: string[] = [];
      for (const entry of entries) {
        try {
          await this.#handle(entry.data, false);
          done.push(entry.id);
        } catch (error) {
          this.#host.logger.warn({ err: error }, 'XMPP cluster: a stanza of a gone process could not be routed');
        }
      }
      await stream.ack('deliver', done);
    }
  }

  // ---- stream-management journals ----------------------------------------------------------------

  #journal(token: string) {
    return this.#bus.stream(`xmpp:sm:${latin1(this.#host.domain)}:${latin1(token)}`);
  }

  /**
   * Append to a resumable session's journal. Not awaited by the caller: issued before the stanza is
   * written to the client's socket (a command goes out on the bus's connection at once), so a process
   * killed after the write has in all likelihood journaled it; one that is not is taken as acknowledged.
   */
  journalAppend(token: string, entry: JournalEntry, ttlMs: number | undefined): Promise<string | undefined> {
    const options =
      ttlMs === undefined ? { maxLength: JOURNAL_MAX_LENGTH } : { maxLength: JOURNAL_MAX_LENGTH, ttlMs: Math.max(1000, ttlMs) };
    return this.#journal(token)
      .append(JSON.stringify(entry), options)
      .then(
        (id) => id,
        (error: unknown) => {
          this.#host.logger.warn({ err: error }, 'XMPP cluster: could not write a stream-management journal');
          return undefined;
        },
      );
  }

  /** Drop a journal's entries older than `minId` (what the client acknowledged, and older checkpoints). */
  journalTrim(token: string, minId: string): Promise<void> {
    return this.#journal(token)
      .trim(minId)
      .then(
        () => undefined,
        (error: unknown) => this.#host.logger.warn({ err: error }, 'XMPP cluster: could not trim a stream-management journal'),
      );
  }

  /** What a journal checkpoint keeps of a local session: its directory record (presence, carbons…). */
  journalRecord(session: Session): unknown {
    const made = this.#record(session);
    if (made === undefined) return undefined;
    return made.last === undefined ? made.record : { ...made.record, last: made.last.toString() };
  }

  /** Read a journal whole: undefined when there is none (never enabled here, ended, or expired). */
  async journalRead(token: string): Promise<JournalState | undefined> {
    const stream = this.#journal(token);
    let meta: JournalEntry['m'];
    let inbound = 0;
    let acked = 0;
    let sent = 0;
    let record: unknown;
    const stanzas: JournalState['stanzas'] = [];
    let after: string | undefined;
    for (let page = 0; page < 100; page++) {
      const entries = await stream.entries({ after, count: 500 });
      if (entries.length === 0) break;
      after = entries[entries.length - 1]?.id;
      for (const raw of entries) {
        let parsed: JournalEntry;
        try {
          parsed = JSON.parse(raw.data.toString()) as JournalEntry;
        } catch {
          continue;
        }
        if (typeof parsed !== 'object' || parsed === null) continue;
        for (const entry of Array.isArray(parsed.b) ? parsed.b : [parsed]) {
          if (typeof entry !== 'object' || entry === null) continue;
          if (typeof entry.m === 'object' && entry.m !== null && typeof entry.m.u === 'string') meta = entry.m;
          if (typeof entry.i === 'number') inbound = entry.i;
          if (typeof entry.a === 'number') acked = entry.a;
          if (typeof entry.c === 'number') sent = entry.c;
          if (entry.r !== undefined) record = entry.r;
          if (typeof entry.s === 'number' && typeof entry.x === 'string') {
            sent = entry.s;
            stanzas.push({ seq: entry.s, stamp: typeof entry.t === 'number' ? entry.t : Date.now(), xml: entry.x, id: raw.id });
          }
        }
      }
    }
    if (meta === undefined) return undefined;
    // Only what the client had not acknowledged as of the last entry.
    const U32 = 2 ** 32;
    const pending = stanzas.filter((item) => {
      const ahead = (item.seq - acked + U32) % U32;
      return ahead > 0 && ahead <= (sent - acked + U32) % U32;
    });
    return {
      user: meta.u,
      resource: meta.r,
      node: meta.n,
      maxSeconds: meta.max,
      inbound,
      acked,
      sent,
      record,
      stanzas: pending,
    };
  }

  /** The session ended (its stanzas went where they go): its journal is deleted. */
  journalDelete(token: string): Promise<void> {
    return this.#journal(token)
      .delete()
      .catch((error: unknown) => this.#host.logger.warn({ err: error }, 'XMPP cluster: could not delete a stream-management journal'));
  }

  /** How long directory entries outlive their process (`sessionTtlMs`). */
  get ttlMs(): number {
    return this.#ttlMs;
  }

  get sessionTtlMs(): number {
    return this.#ttlMs;
  }

  get bus(): Bus {
    return this.#bus;
  }

  /** Whether a process's entry is on the bus now (false once it expired: the process is dead, or was never there). */
  async nodeLive(node: string): Promise<boolean> {
    if (node === this.nodeId) return true;
    if (this.#dead.has(node)) return false;
    return (await this.#bus.presence.get(nodeKey(this.#host.domain, node))) !== undefined;
  }

  /** Ask the process holding a resumable session to let it go (it stops routing to it and writes its last state to the journal). */
  handover(node: string, token: string): Promise<HandoverOutcome> {
    const id = randomBytes(8).toString('hex');
    return new Promise<HandoverOutcome>((resolve) => {
      const timer = setTimeout(() => {
        this.#handovers.delete(id);
        resolve('timeout');
      }, HANDOVER_TIMEOUT_MS);
      this.#handovers.set(id, (ok) => {
        clearTimeout(timer);
        this.#handovers.delete(id);
        resolve(ok ? 'released' : 'unknown');
      });
      this.#append(node, { to: '', handover: { token, reply: this.nodeId, id } }).catch((error: unknown) => {
        // Not asked: nothing is known of the holder (it may live on), so nothing is taken over.
        this.#host.logger.warn({ err: error, node }, 'XMPP cluster: could not ask a process to hand over a session');
        clearTimeout(timer);
        this.#handovers.delete(id);
        resolve('unreachable');
      });
    });
  }

  /** Stream management answers handover requests (true: it let the session go). */
  onHandover(handler: (token: string) => Promise<boolean>): void {
    this.#handoverHandler = handler;
  }

  /** Hear of resumable sessions of a process found dead (their journal says where they stand). */
  onOrphan(listener: (orphan: { token: string; jid: string; node: string }) => void): () => void {
    this.#orphanListeners.add(listener);
    return () => this.#orphanListeners.delete(listener);
  }

  async #answerHandover(request: { token: string; reply: string; id: string }): Promise<void> {
    let ok = false;
    try {
      ok = (await this.#handoverHandler?.(request.token)) === true;
    } catch (error) {
      this.#host.logger.error({ err: error }, 'XMPP cluster: handing over a session failed');
    }
    await this.#append(request.reply, { to: '', released: { id: request.id, ok } });
  }

  // ---- claims, forwarding ------------------------------------------------------------------------

  #claimPrefix(): string {
    return `xmpp:claim:${latin1(this.#host.domain)}:`;
  }

  claim(name: string): Promise<string> {
    return this.#bus.presence.claim(this.#claimPrefix() + latin1(name), this.nodeId, { ttlMs: this.#ttlMs });
  }

  async release(name: string): Promise<void> {
    const key = this.#claimPrefix() + latin1(name);
    if ((await this.#bus.presence.get(key)) === this.nodeId) await this.#bus.presence.delete(key);
  }

  onClaimLost(listener: (name: string) => void): () => void {
    this.#claimLost.add(listener);
    return () => this.#claimLost.delete(listener);
  }

  onNodeGone(listener: (node: string) => void): () => void {
    this.#nodeGone.add(listener);
    return () => this.#nodeGone.delete(listener);
  }

  #tell(listeners: Set<(name: string) => void>, name: string): void {
    for (const listener of [...listeners]) {
      try {
        listener(name);
      } catch (error) {
        this.#host.logger.error({ err: error, name }, 'XMPP cluster: a listener failed');
      }
    }
  }

  async forward(node: string, stanza: XmlElement): Promise<void> {
    const hops = (hopsOf.get(stanza) ?? 0) + 1;
    if (hops > MAX_HOPS) {
      this.#host.bounce(stanza, 'recipient-unavailable', 'forwarded between processes too often');
      return;
    }
    const to = stanza.attr('to') ?? '';
    const tree = toTree(stanza);
    await this.#append(node, tree === undefined ? { to, xml: stanza.toString(), route: true, hops } : { to, el: tree, route: true, hops });
  }

  hopsOf(stanza: XmlElement): number {
    return hopsOf.get(stanza) ?? 0;
  }

  nodeOf(full: string): string | undefined {
    const local = this.#host.localSession(full);
    if (local !== undefined && !local.ended) return this.nodeId;
    return this.sessionOf(full)?.node;
  }

  isAlive(node: string): boolean {
    return node === this.nodeId || !this.#dead.has(node);
  }

  // ---- modules' cache messages -------------------------------------------------------------------

  broadcast(topic: string, data: string): void {
    if (this.#stopped) return;
    const text = JSON.stringify({ node: this.nodeId, topic, data });
    this.#bus.publish(this.#moduleChannel, text).catch((error: unknown) => {
      this.#host.logger.warn({ err: error, topic }, 'XMPP cluster: a module message could not be broadcast');
    });
  }

  listen(topic: string, listener: (data: string | undefined) => void): () => void {
    let listeners = this.#listeners.get(topic);
    if (listeners === undefined) {
      listeners = new Set();
      this.#listeners.set(topic, listeners);
    }
    listeners.add(listener);
    return () => {
      listeners.delete(listener);
      if (listeners.size === 0 && this.#listeners.get(topic) === listeners) this.#listeners.delete(topic);
    };
  }

  #moduleMessage(message: BusMessage): void {
    let parsed: unknown;
    try {
      parsed = JSON.parse(message.data.toString());
    } catch {
      return;
    }
    if (typeof parsed !== 'object' || parsed === null) return;
    const { node, topic, data } = parsed as { node?: unknown; topic?: unknown; data?: unknown };
    if (node === this.nodeId || typeof topic !== 'string' || typeof data !== 'string') return;
    this.#tellListeners(topic, data);
  }

  /** To the listeners of `topic` (of every topic when undefined: messages may have been lost). */
  #tellListeners(topic: string | undefined, data: string | undefined): void {
    const groups = topic === undefined ? [...this.#listeners.values()] : [this.#listeners.get(topic) ?? []];
    for (const listeners of groups) {
      for (const listener of [...listeners]) {
        try {
          listener(data);
        } catch (error) {
          this.#host.logger.error({ err: error, topic }, 'XMPP cluster: a module listener failed');
        }
      }
    }
  }

  // ---- delivery ----------------------------------------------------------------------------------

  /** Sessions of a bare JID on other processes. */
  sessionsOf(bare: string): RemoteSession[] {
    const resources = this.#mirror.get(bare);
    return resources === undefined ? [] : [...resources.values()];
  }

  sessionOf(full: string): RemoteSession | undefined {
    const jid = Jid.parse(full);
    if (jid === undefined || jid.isBare) return undefined;
    return this.#mirror.get(jid.bare)?.get(jid.resource);
  }

  remoteSessions(): string[] {
    return [...this.#mirror.values()].flatMap((resources) => [...resources.values()].map((session) => session.jid.toString()));
  }

  remotePresence(full: string): { available: boolean; priority: number } | undefined {
    const session = this.sessionOf(full);
    if (session === undefined) return undefined;
    const state = presenceState.get(session);
    return { available: state.available, priority: state.priority };
  }

  /** A module sent a stanza to a remote session: to its process's stream. */
  deliver(session: RemoteSession, element: XmlElement | string, raw: boolean): void {
    const hops = typeof element === 'string' ? 0 : (hopsOf.get(element) ?? 0);
    const to = session.jid.toString();
    if (hops >= MAX_HOPS && typeof element !== 'string') {
      // Routed again and again (directories out of date): kept offline rather than sent round.
      void this.#lastResort(element, to);
      return;
    }
    const tree = typeof element === 'string' || raw ? undefined : toTree(element);
    const delivery: Delivery =
      tree !== undefined
        ? { to, el: tree, hops: hops || undefined }
        : { to, xml: typeof element === 'string' ? element : element.toString(), raw: raw || undefined, hops: hops || undefined };
    this.#append(session.node, delivery).catch((error: unknown) => {
      this.#host.logger.warn({ err: error, to }, 'XMPP cluster: could not hand a stanza to its process');
      if (typeof element !== 'string') void this.#lastResort(element, to);
    });
  }

  closeRemote(session: RemoteSession, error: StreamError | undefined): void {
    const delivery: Delivery = {
      to: session.jid.toString(),
      close: { condition: error?.condition ?? '', text: error?.text, node: session.node },
    };
    this.#append(session.node, delivery).catch((failure: unknown) =>
      this.#host.logger.warn({ err: failure, to: delivery.to }, 'XMPP cluster: could not close a session of another process'),
    );
  }

  async #append(node: string, delivery: Delivery): Promise<void> {
    await this.#bus.stream(`xmpp:node:${node}`).append(JSON.stringify(delivery), { maxLength: STREAM_MAX_LENGTH });
  }

  /** A message nobody could take live: offline storage; anything else is logged. */
  async #lastResort(stanza: XmlElement, to: string): Promise<void> {
    const jid = Jid.parse(to);
    if (stanza.local === 'message' && jid !== undefined && (await this.#host.offline(stanza, jid.toBare()))) return;
    this.#host.logger.warn({ to, stanza: stanza.local }, 'XMPP cluster: a stanza could not be delivered: dropped');
  }

  /** An entry of this process's stream (`own`) or of a dead process's: to the local session, else routed again. */
  async #handle(data: Buffer, own: boolean): Promise<void> {
    let delivery: Delivery;
    try {
      delivery = JSON.parse(data.toString()) as Delivery;
    } catch {
      this.#host.logger.warn({}, 'XMPP cluster: an unreadable stream entry: dropped');
      return;
    }
    if (typeof delivery.to !== 'string') return;
    if (delivery.handover !== undefined) {
      // Only for this process (a drainer of a dead one's stream has nothing to hand over).
      if (typeof delivery.handover.token === 'string' && typeof delivery.handover.reply === 'string' && own)
        await this.#answerHandover(delivery.handover);
      return;
    }
    if (delivery.released !== undefined) {
      this.#handovers.get(String(delivery.released.id))?.(delivery.released.ok === true);
      return;
    }
    const session = this.#host.localSession(delivery.to);
    const live = session !== undefined && !session.ended && (session.stage === 'bound' || session.stage === 'hibernating');
    if (delivery.close !== undefined) {
      if (!live || delivery.close.node !== this.nodeId) return;
      const condition = delivery.close.condition;
      if (condition === '') session.close();
      else if ((streamErrorConditions as readonly string[]).includes(condition))
        session.close(new StreamError(condition as StreamErrorCondition, delivery.close.text));
      else session.close(new StreamError('undefined-condition', delivery.close.text));
      return;
    }
    const tree = delivery.el === undefined ? undefined : fromTree(delivery.el);
    if (tree === undefined && typeof delivery.xml !== 'string') return;
    if (delivery.route === true) {
      const stanza = tree ?? parseXml(delivery.xml as string);
      if (stanza === undefined) return;
      hopsOf.set(stanza, delivery.hops ?? 1);
      await this.#host.route(stanza);
      return;
    }
    if (live) {
      if (tree !== undefined) session.send(tree);
      else if (delivery.raw === true) session.sendRaw(delivery.xml as string);
      else {
        const stanza = parseXml(delivery.xml as string);
        if (stanza !== undefined) session.send(stanza);
        else session.sendRaw(delivery.xml as string);
      }
      return;
    }
    const stanza = tree ?? parseXml(delivery.xml as string);
    if (stanza === undefined) return;
    await this.#reroute(stanza, delivery.to, (delivery.hops ?? 0) + 1);
  }

  /** A stanza for a session that is gone: as the server routes a new stanza to that JID, once more. */
  async #reroute(stanza: XmlElement, to: string, hops: number): Promise<void> {
    const type = stanza.attr('type');
    if (stanza.local === 'message') {
      hopsOf.set(stanza, hops);
      // Addressed to the resource that is gone (or to the bare JID it had been given to).
      if (stanza.attr('to') === undefined) stanza.setAttr('to', to);
      if (hops > MAX_HOPS) return this.#lastResort(stanza, to);
      await this.#host.route(stanza);
      return;
    }
    if (stanza.local === 'iq' && (type === 'get' || type === 'set')) {
      this.#host.bounce(stanza, 'service-unavailable');
      return;
    }
    if (stanza.local === 'presence' && type === 'subscribe') {
      const bare = Jid.parse(to)?.bare;
      const elsewhere =
        bare !== undefined &&
        hops <= MAX_HOPS &&
        [...this.#host.localSessionsOf(bare), ...this.sessionsOf(bare)].some((session) => presenceState.peek(session)?.available === true);
      if (!elsewhere) return this.#keepRequest(stanza, to);
      // To the user's other available resources, as the request first was.
      hopsOf.set(stanza, hops);
      await this.#host.route(stanza.with({ to: bare }));
      return;
    }
    // Presence to an unavailable resource, and IQ answers nobody waits for, are dropped (RFC 6121 §8.5.3.2).
  }

  /**
   * A subscription request for a user whose session left meanwhile: kept with the ones that arrive
   * while offline (delivered at the next login, RFC 6121 §3.1.3), as the IM module keeps them.
   */
  async #keepRequest(stanza: XmlElement, to: string): Promise<void> {
    const jid = Jid.parse(to);
    const from = stanza.attr('from');
    if (jid === undefined || jid.domain !== this.#host.domain || from === undefined) return;
    const rosters = this.#host.storage.keyValue('roster');
    const stored = await rosters.get(jid.local, 'pending');
    const pending = Array.isArray(stored) ? stored.filter((text): text is string => typeof text === 'string') : [];
    if (pending.length >= 100 || pending.some((text) => parseXml(text)?.attr('from') === from)) return;
    pending.push(stanza.with({ to: jid.bare }).toString());
    await rosters.set(jid.local, 'pending', pending);
  }

  /** The server stops: withdraw this process from the directory (its sessions ended already). */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    await this.ready.catch(() => undefined);
    this.#stopped = true;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    for (const off of this.#offs.splice(0)) off();
    await this.#consumer?.stop();
    try {
      await this.#subscription?.unsubscribe();
      await this.#offlineSubscription?.unsubscribe();
      await this.#moduleSubscription?.unsubscribe();
      for (const full of this.#published.keys()) await this.#bus.presence.delete(presenceKey(this.#host.domain, this.nodeId, full));
      this.#published.clear();
      await this.#bus.presence.delete(nodeKey(this.#host.domain, this.nodeId));
    } catch (error) {
      this.#host.logger.warn({ err: error }, 'XMPP cluster: could not withdraw this process from the directory');
    }
  }
}
