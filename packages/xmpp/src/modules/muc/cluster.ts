// A MUC service on several processes (issue 12): one room is one room for the whole service. Each
// room is hosted by one process at a time, the one holding its claim on the bus
// (`cluster.claim('muc:<room JID>')`): the first process to get a stanza for a room nobody holds
// claims it and loads it (from the shared store, or from the snapshot a previous holder left on
// the bus); the others forward what their users send it to that process (`cluster.forward`). The
// room answers and broadcasts with `api.route`, which reaches sessions on every process.
//
// What the next holder needs when a holder dies, kept where it can read it:
// - occupants: each process keeps a presence entry per room its local sessions sit in
//   (`xmpp:muc:o:<service>:<room>:<real JID>`: nick, role, presence, as the room's self-presence
//   (status 110) told the session), so the entries of a dead process expire with it;
// - a temporary room's state (configuration, affiliations, subject, lock): a bus value the holder
//   writes at each change (`xmpp:muc:r:<service>:<room>`; persistent rooms are in the store);
// - who sat in the room (real JID and nick), a bus value the holder rewrites as occupants come and go
//   (`xmpp:muc:m:<service>:<room>`): those the next holder finds gone (their session ended with a
//   dead process, or while nobody held the room) are seen leaving by the others;
// - history: a room that archives reads its newest archived messages (the store); one that does not
//   keeps its history in a capped bus stream (`xmpp:muc:h:<service>:<room>`).
// Held rooms are listed for disco#items by presence entries of their holder (`xmpp:muc:d:…`).

import type { Bus, Logger } from '@portbind/core';
import type { XmppClusterView } from '../../cluster.js';
import { XmlElement } from '../../element.js';
import { presenceState } from '../../host.js';
import { Jid } from '../../jid.js';
import { parseXml } from '../../parse.js';
import type { XmppSession } from '../../session.js';
import { StanzaErrorException } from '../../stanza-error.js';
import type { HistoryEntry } from './history.js';
import { MAX_CARRIED_ROOMS, mucOccupancyState } from './occupancy-state.js';
import { NS_MUC_USER, type OccupantEntry, ROLES, type Role } from './types.js';

/** A temporary room's snapshot outlives its holder this long unless written again (held rooms' are, hourly). */
const SNAPSHOT_TTL_MS = 7 * 86_400_000;
const SNAPSHOT_REFRESH_MS = 3_600_000;
/** A room's history stream is deleted after this long without a message. */
const HISTORY_TTL_MS = 30 * 86_400_000;
/** Entries of a room's history stream read at most when a process takes the room over. */
const HISTORY_READ_CAP = 1000;
/**
 * Another process's room is forwarded there without asking the bus again for this long (a claim is
 * two round trips on Redis). A stale entry costs a hop: a process that no longer holds the room
 * claims it again on receipt and forwards on (or serves it).
 */
const HOLDER_CACHE_MS = 5000;
const HOLDER_CACHE_SIZE = 10_000;
/**
 * A room found missing is answered `item-not-found` on this process without asking the bus again for
 * this long (joins, which create rooms, always ask): a client sending to rooms that do not exist costs
 * the bus at most one claim and one load per room name per second.
 */
const MISSING_CACHE_MS = 1000;

/** How a listed room shows in disco#items. */
export interface ListedRoom {
  name: string;
  /** Its display name (the room's localpart when it has none). */
  title: string;
  public: boolean;
  locked: boolean;
  /** Who created it (bare JID): `maxRoomsPerUser` counts across processes. Absent in older processes' entries. */
  creator?: string;
}

/** Bus names are byte strings (one char per byte). */
function latin1(text: string): string {
  return Buffer.from(text).toString('latin1');
}

function utf8(name: string): string {
  return Buffer.from(name, 'latin1').toString();
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms).unref());

/** The MUC service's side of the cluster (one per process, with a bus). */
export class MucCluster {
  readonly cluster: XmppClusterView;
  readonly #bus: Bus;
  readonly #ttlMs: number;
  readonly #service: string;
  readonly #logger: () => Logger;
  readonly #locks = new Map<string, Promise<unknown>>();
  /** Local sessions (real full JID) → room → nick: the rooms they sit in, as the rooms' self-presences said. */
  readonly #joined = new Map<string, Map<string, string>>();
  /** What this process last wrote to each of its occupant entries. */
  readonly #written = new Map<string, string>();
  /** The role each of those entries says (occupant key → role), for the sessions' directory records. */
  readonly #roles = new Map<string, string>();
  /** Snapshots of temporary rooms this process holds (rewritten hourly, so that they outlive it by a day). */
  readonly #snapshots = new Map<string, string>();
  /** Who sits in the rooms this process holds, as last written (rewritten hourly too). */
  readonly #members = new Map<string, string>();
  readonly #timer: NodeJS.Timeout;
  /** Rooms other processes hold, as last claimed: room → holder and when it was asked. */
  readonly #holders = new Map<string, { node: string; at: number }>();
  /** Rooms found missing, and when. */
  readonly #missing = new Map<string, number>();

  constructor(cluster: XmppClusterView, bus: Bus, ttlMs: number, service: string, logger: () => Logger) {
    this.cluster = cluster;
    this.#bus = bus;
    this.#ttlMs = ttlMs;
    this.#service = service;
    this.#logger = logger;
    this.#timer = setInterval(() => {
      const refresh = (key: string, text: string, room: string): void => {
        this.#bus.values
          .set(key, text, { ttlMs: SNAPSHOT_TTL_MS })
          .catch((error: unknown) => this.#logger().warn({ err: error, room }, 'XMPP MUC: could not refresh a room snapshot'));
      };
      for (const [name, text] of this.#snapshots) refresh(this.#snapshotKey(name), text, name);
      for (const [name, text] of this.#members) refresh(this.#membersKey(name), text, name);
    }, SNAPSHOT_REFRESH_MS);
    this.#timer.unref();
  }

  get nodeId(): string {
    return this.cluster.nodeId;
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  // ---- names on the bus ----

  #claimName(room: string): string {
    return `muc:${room}@${this.#service}`;
  }

  #occupantPrefix(room: string): string {
    return `xmpp:muc:o:${latin1(this.#service)}:${latin1(room)}:`;
  }

  #snapshotKey(room: string): string {
    return `xmpp:muc:r:${latin1(this.#service)}:${latin1(room)}`;
  }

  #membersKey(room: string): string {
    return `xmpp:muc:m:${latin1(this.#service)}:${latin1(room)}`;
  }

  #historyName(room: string): string {
    return `xmpp:muc:h:${latin1(this.#service)}:${latin1(room)}`;
  }

  #directoryPrefix(): string {
    return `xmpp:muc:d:${latin1(this.#service)}:`;
  }

  /** Per holder: for a moment after a claim was lost two processes may list a room (`listed` gives it once). */
  #directoryKey(room: string): string {
    return `${this.#directoryPrefix()}${latin1(room)}:${this.nodeId}`;
  }

  /** The room named by a claim of this service (undefined for another's). */
  roomOfClaim(claim: string): string | undefined {
    const suffix = `@${this.#service}`;
    if (!claim.startsWith('muc:') || !claim.endsWith(suffix)) return undefined;
    return claim.slice(4, -suffix.length);
  }

  // ---- holding rooms ----

  /** Run `task` after every task queued before it for this room on this process (claiming, loading and letting go never interleave). */
  lock<T>(room: string, task: () => Promise<T>): Promise<T> {
    const previous = this.#locks.get(room) ?? Promise.resolve();
    const result = previous.then(task);
    const tail = result.catch(() => undefined);
    this.#locks.set(room, tail);
    void tail.then(() => {
      if (this.#locks.get(room) === tail) this.#locks.delete(room);
    });
    return result;
  }

  /**
   * The process holding the room, claiming it when nobody does: this process's id when it holds it
   * now. A holder known dead keeps its claim until it expires (about when it was found dead): waited
   * out. The bus unreachable: `recipient-unavailable` (the room may be fine, this process cannot tell).
   */
  async holder(room: string): Promise<string> {
    const cached = this.#holders.get(room);
    if (cached !== undefined) {
      if (Date.now() - cached.at < HOLDER_CACHE_MS && this.cluster.isAlive(cached.node)) return cached.node;
      this.#holders.delete(room);
    }
    const deadline = Date.now() + Math.max(2 * this.#ttlMs, 5000);
    for (let pause = 50; ; pause = Math.min(2 * pause, 500)) {
      let node: string;
      try {
        node = await this.cluster.claim(this.#claimName(room));
      } catch (error) {
        this.#logger().warn({ err: error, room }, 'XMPP MUC: could not find who holds a room (the bus is away)');
        throw new StanzaErrorException('recipient-unavailable', 'the room cannot be reached now: try again');
      }
      if (node === this.nodeId) return node;
      if (this.cluster.isAlive(node)) {
        this.#holders.set(room, { node, at: Date.now() });
        if (this.#holders.size > HOLDER_CACHE_SIZE) this.#holders.delete(this.#holders.keys().next().value as string);
        return node;
      }
      if (Date.now() > deadline) throw new StanzaErrorException('recipient-unavailable', 'the room is moving: try again');
      await sleep(pause);
    }
  }

  /** Whether the room was found missing a moment ago. */
  missing(room: string): boolean {
    const at = this.#missing.get(room);
    if (at === undefined) return false;
    if (Date.now() - at < MISSING_CACHE_MS) return true;
    this.#missing.delete(room);
    return false;
  }

  /** The room does not exist (now). */
  remember(room: string): void {
    this.#missing.delete(room);
    this.#missing.set(room, Date.now());
    if (this.#missing.size > HOLDER_CACHE_SIZE) this.#missing.delete(this.#missing.keys().next().value as string);
  }

  /** A process was found dead: what this one believed it holds is asked again. */
  nodeGone(node: string): void {
    for (const [room, cached] of [...this.#holders]) if (cached.node === node) this.#holders.delete(room);
  }

  /** Hand a stanza for a room to the process holding it. */
  async forward(node: string, stanza: XmlElement): Promise<void> {
    try {
      await this.cluster.forward(node, stanza);
    } catch (error) {
      this.#logger().warn({ err: error }, 'XMPP MUC: could not hand a stanza to the process holding its room');
      throw new StanzaErrorException('recipient-unavailable', 'the room cannot be reached now: try again');
    }
  }

  /** Let go of a room: its claim, its listing, and (`gone`) what a next holder would have read of it. */
  async release(room: string, gone: boolean): Promise<void> {
    this.#snapshots.delete(room);
    this.#members.delete(room);
    if (gone) await this.forget(room);
    for (const step of [() => this.#bus.presence.delete(this.#directoryKey(room)), () => this.cluster.release(this.#claimName(room))]) {
      try {
        await step();
      } catch (error) {
        this.#logger().warn({ err: error, room }, 'XMPP MUC: could not let go of a room on the bus');
      }
    }
  }

  // ---- what a next holder reads ----

  /** Drop what a next holder would read of a room that is gone (its snapshot, its history). */
  async forget(room: string): Promise<void> {
    this.#snapshots.delete(room);
    this.#members.delete(room);
    for (const step of [
      () => this.#bus.values.delete(this.#snapshotKey(room)),
      () => this.#bus.values.delete(this.#membersKey(room)),
      () => this.#bus.stream(this.#historyName(room)).delete(),
    ]) {
      try {
        await step();
      } catch (error) {
        this.#logger().warn({ err: error, room }, 'XMPP MUC: could not drop what the bus kept of a room');
      }
    }
  }

  /** A temporary room's snapshot (undefined: delete it, the room is persistent or gone). */
  async writeSnapshot(room: string, text: string | undefined): Promise<void> {
    try {
      if (text === undefined) {
        if (this.#snapshots.delete(room)) await this.#bus.values.delete(this.#snapshotKey(room));
        return;
      }
      this.#snapshots.set(room, text);
      await this.#bus.values.set(this.#snapshotKey(room), text, { ttlMs: SNAPSHOT_TTL_MS });
    } catch (error) {
      this.#logger().warn({ err: error, room }, 'XMPP MUC: could not write a room snapshot');
    }
  }

  /**
   * The bus was away (a Redis restart may have emptied it): write again what a next holder reads of
   * the rooms this process holds (snapshots, who sits in them, the history of those that do not archive).
   */
  async rewrite(history: (room: string) => { entries: readonly HistoryEntry[]; length: number } | undefined): Promise<void> {
    const write = async (key: string, text: string, room: string): Promise<void> => {
      try {
        await this.#bus.values.set(key, text, { ttlMs: SNAPSHOT_TTL_MS });
      } catch (error) {
        this.#logger().warn({ err: error, room }, 'XMPP MUC: could not write a room snapshot again');
      }
    };
    for (const [room, text] of [...this.#snapshots]) await write(this.#snapshotKey(room), text, room);
    for (const [room, text] of [...this.#members]) {
      await write(this.#membersKey(room), text, room);
      const kept = history(room);
      if (kept === undefined) continue;
      try {
        const stream = this.#bus.stream(this.#historyName(room));
        if ((await stream.length()) >= Math.min(kept.entries.length, kept.length)) continue;
        await stream.delete();
        for (const entry of kept.entries) await this.appendHistory(room, entry, kept.length);
      } catch (error) {
        this.#logger().warn({ err: error, room }, 'XMPP MUC: could not write a room history again');
      }
    }
  }

  /** Who sits in a room this process holds now: real JID → nick. */
  async writeMembers(room: string, members: ReadonlyArray<readonly [string, string]>): Promise<void> {
    const text = JSON.stringify(members);
    if (this.#members.get(room) === text) return;
    this.#members.set(room, text);
    try {
      await this.#bus.values.set(this.#membersKey(room), text, { ttlMs: SNAPSHOT_TTL_MS });
    } catch (error) {
      this.#logger().warn({ err: error, room }, 'XMPP MUC: could not write who sits in a room');
    }
  }

  /** Who sat in a room as its last holder wrote it: [real JID, nick] pairs. */
  async readMembers(room: string): Promise<Array<[string, string]>> {
    const text = await this.#bus.values.get(this.#membersKey(room));
    if (text === undefined) return [];
    try {
      const parsed = JSON.parse(text) as unknown;
      if (!Array.isArray(parsed)) return [];
      return parsed.filter(
        (pair): pair is [string, string] => Array.isArray(pair) && typeof pair[0] === 'string' && typeof pair[1] === 'string',
      );
    } catch {
      return [];
    }
  }

  readSnapshot(room: string): Promise<string | undefined> {
    return this.#bus.values.get(this.#snapshotKey(room));
  }

  /** The room was loaded here: its snapshot is rewritten while this process holds it. */
  holding(room: string, snapshot: string | undefined): void {
    if (snapshot !== undefined) this.#snapshots.set(room, snapshot);
  }

  /** Keep a message of a room that does not archive where the next holder reads it. */
  async appendHistory(room: string, entry: HistoryEntry, historyLength: number): Promise<void> {
    if (historyLength <= 0) return;
    const data = JSON.stringify({ when: entry.when, chars: entry.chars, xml: entry.message.toString() });
    try {
      await this.#bus.stream(this.#historyName(room)).append(data, { maxLength: historyLength, ttlMs: HISTORY_TTL_MS });
    } catch (error) {
      this.#logger().warn({ err: error, room }, 'XMPP MUC: could not keep a history message on the bus');
    }
  }

  /** The history a previous holder kept on the bus, oldest first (at most `historyLength`). */
  async readHistory(room: string, historyLength: number): Promise<HistoryEntry[]> {
    if (historyLength <= 0) return [];
    const stream = this.#bus.stream(this.#historyName(room));
    const kept: HistoryEntry[] = [];
    let after: string | undefined;
    for (let read = 0; read < HISTORY_READ_CAP; ) {
      const entries = await stream.entries({ after, count: 100 });
      if (entries.length === 0) break;
      read += entries.length;
      after = entries[entries.length - 1]?.id;
      for (const entry of entries) {
        try {
          const { when, chars, xml } = JSON.parse(entry.data.toString()) as { when?: unknown; chars?: unknown; xml?: unknown };
          const message = typeof xml === 'string' ? parseXml(xml) : undefined;
          if (message === undefined || typeof when !== 'number' || typeof chars !== 'number') continue;
          kept.push({ message, when, chars });
        } catch {
          // Not ours: skipped.
        }
      }
      if (kept.length > historyLength) kept.splice(0, kept.length - historyLength);
    }
    return kept;
  }

  /**
   * The occupants of a room as their processes keep them, whose sessions still are (`nodeOf`): the
   * roster a process taking the room over starts with.
   */
  async roster(room: string): Promise<OccupantEntry[]> {
    const found: OccupantEntry[] = [];
    for (const [key, value] of await this.#bus.presence.list(this.#occupantPrefix(room))) {
      const real = utf8(key.slice(this.#occupantPrefix(room).length));
      let parsed: { nick?: unknown; role?: unknown; presence?: unknown };
      try {
        parsed = JSON.parse(value) as typeof parsed;
      } catch {
        continue;
      }
      const presence = typeof parsed.presence === 'string' ? parseXml(parsed.presence) : undefined;
      if (typeof parsed.nick !== 'string' || presence === undefined) continue;
      if (this.cluster.nodeOf(real) === undefined) continue;
      const role = (ROLES as readonly unknown[]).includes(parsed.role) ? (parsed.role as Role) : 'participant';
      found.push({ real, nick: parsed.nick, role, presence });
    }
    return found;
  }

  /** A session's presence as a room shows it: its last broadcast presence, without MUC payloads. */
  #presenceOf(session: XmppSession): XmlElement {
    const last = presenceState.peek(session)?.last;
    return new XmlElement(
      'presence',
      {},
      (last?.children ?? []).filter((child) => typeof child === 'string' || !(child.local === 'x' && child.xmlns === NS_MUC_USER)),
    );
  }

  // ---- the listing ----

  /** List a room this process holds (disco#items on every process), or take it off the list. */
  async announce(room: ListedRoom): Promise<void> {
    try {
      await this.#bus.presence.set(this.#directoryKey(room.name), JSON.stringify(room), { ttlMs: this.#ttlMs });
    } catch (error) {
      this.#logger().warn({ err: error, room: room.name }, 'XMPP MUC: could not list a room');
    }
  }

  /** The rooms held by any process now (each once). */
  async listed(): Promise<ListedRoom[]> {
    const rooms = new Map<string, ListedRoom>();
    for (const value of (await this.#bus.presence.list(this.#directoryPrefix())).values()) {
      try {
        const room = JSON.parse(value) as Partial<ListedRoom>;
        if (typeof room.name === 'string' && typeof room.title === 'string') {
          const listed: ListedRoom = { name: room.name, title: room.title, public: room.public === true, locked: room.locked === true };
          if (typeof room.creator === 'string') listed.creator = room.creator;
          rooms.set(room.name, listed);
        }
      } catch {
        // Not ours.
      }
    }
    return [...rooms.values()];
  }

  // ---- the occupants of this process ----

  /**
   * What a room says to a local session (an outbound filter): its self-presence (status 110) says
   * the session sits in the room, with which nick, role and presence; its unavailable self-presence
   * (but a nick change's, 303) that it left. Kept on the bus for the room's next holder.
   */
  observe(stanza: XmlElement, session: XmppSession): void {
    if (stanza.local !== 'presence') return;
    const from = stanza.attr('from');
    if (from === undefined || !from.includes(this.#service)) return;
    const x = stanza.getChild('x', NS_MUC_USER);
    if (x === undefined) return;
    const codes = x.getChildren('status').map((status) => status.attr('code'));
    if (!codes.includes('110')) return;
    const room = Jid.parse(from);
    const real = session.jid?.toString();
    if (room === undefined || room.domain !== this.#service || room.local === '' || room.isBare || real === undefined) return;
    const type = stanza.attr('type');
    if (type === 'unavailable') {
      // A nick change: the presence under the new nick follows.
      if (!codes.includes('303')) {
        this.#left(real, room.local);
        this.#carry(session, real);
      }
      return;
    }
    if (type !== undefined) return;
    let rooms = this.#joined.get(real);
    if (rooms === undefined) {
      rooms = new Map();
      this.#joined.set(real, rooms);
    }
    rooms.set(room.local, room.resource);
    const body = new XmlElement(
      'presence',
      {},
      stanza.children.filter((child) => typeof child === 'string' || !(child.local === 'x' && child.xmlns === NS_MUC_USER)),
    );
    const role = x.getChild('item')?.attr('role') ?? 'participant';
    if (this.#keep(room.local, real, room.resource, role, body)) this.#carry(session, real);
  }

  /** Write a local occupant's entry (nick, role, presence) unless it says that already: true when written. */
  #keep(room: string, real: string, nick: string, role: string, presence: XmlElement): boolean {
    const value = JSON.stringify({ nick, role, presence: presence.toString() });
    const key = this.#occupantPrefix(room) + latin1(real);
    if (this.#written.get(key) === value) return false;
    this.#written.set(key, value);
    this.#roles.set(key, role);
    this.#bus.presence
      .set(key, value, { ttlMs: this.#ttlMs })
      .catch((error: unknown) => this.#logger().warn({ err: error, room }, 'XMPP MUC: could not keep an occupant on the bus'));
    return true;
  }

  /**
   * The session's rooms into its directory record (mucOccupancyState), with other services' rooms kept: a
   * process resuming it after this one died (stream management) enters it there again ({@link resumed}).
   */
  #carry(session: XmppSession, real: string): void {
    const state = mucOccupancyState.get(session);
    const suffix = `@${this.#service}`;
    const others = (state.rooms ?? []).filter(([room]) => !room.endsWith(suffix));
    const ours = [...(this.#joined.get(real) ?? [])].map(([room, nick]): [string, string, string] => [
      `${room}${suffix}`,
      nick,
      this.#roles.get(this.#occupantPrefix(room) + latin1(real)) ?? 'participant',
    ]);
    const rooms = [...others, ...ours].slice(0, MAX_CARRIED_ROOMS);
    state.rooms = rooms.length === 0 ? undefined : rooms;
    this.cluster.refresh(session);
  }

  /**
   * A session resumed here from another process's journal (its process died, or it moved): back into the
   * occupant entries of the rooms its record says it sits in, with its current presence, so that a room's
   * next holder finds it among the occupants. This process keeps them from now on: the entries its old
   * process kept expire with that process, or that process forgot them when it let the session go
   * ({@link moved}), before this one resumed it. A session resumed on the same process has its entries already.
   */
  resumed(session: XmppSession): void {
    const real = session.jid?.toString();
    const state = mucOccupancyState.peek(session);
    if (real === undefined || state?.rooms === undefined) return;
    // Its rooms, as this process's own: what it says of them (a nick change, leaving) is kept from now on.
    for (const [jid, nick, role] of state.rooms) {
      const room = Jid.parse(jid);
      if (room === undefined || room.domain !== this.#service || room.local === '' || !room.isBare || nick === '') continue;
      let joined = this.#joined.get(real);
      if (joined === undefined) {
        joined = new Map();
        this.#joined.set(real, joined);
      }
      if (joined.has(room.local)) continue;
      joined.set(room.local, nick);
      this.#roles.set(this.#occupantPrefix(room.local) + latin1(real), ROLES.includes(role as Role) ? role : 'participant');
    }
    this.#enterAgain(session, real);
  }

  /**
   * A session of this process resumed on another one (`session/moved`): it did not leave its rooms, so
   * nothing is deleted, but its occupant entries are that process's to keep now. This one stops
   * refreshing them (the same keys: two writers would each bring back what the other deleted, and a room
   * it leaves there would keep it as a ghost) and forgets the rooms it sat in.
   */
  moved(real: string): void {
    for (const room of [...(this.#joined.get(real)?.keys() ?? [])]) {
      const key = this.#occupantPrefix(room) + latin1(real);
      this.#roles.delete(key);
      if (this.#written.delete(key)) this.#bus.presence.forget(key);
    }
    this.#joined.delete(real);
  }

  /** Write the entries of a local session's rooms that this process has not written (a resumed session's). */
  #enterAgain(session: XmppSession, real: string): void {
    const presence = this.#presenceOf(session);
    for (const [room, nick] of this.#joined.get(real) ?? []) {
      const key = this.#occupantPrefix(room) + latin1(real);
      if (this.#written.has(key)) continue;
      this.#keep(room, real, nick, this.#roles.get(key) ?? 'participant', presence);
    }
  }

  /** The rooms a local session sits in (room → nick), as far as the rooms told it. */
  joinedBy(real: string): ReadonlyMap<string, string> | undefined {
    return this.#joined.get(real);
  }

  /** A local session ended: its occupant entries go. */
  ended(real: string): void {
    for (const room of [...(this.#joined.get(real)?.keys() ?? [])]) this.#left(real, room);
  }

  #left(real: string, room: string): void {
    const rooms = this.#joined.get(real);
    rooms?.delete(room);
    if (rooms?.size === 0) this.#joined.delete(real);
    const key = this.#occupantPrefix(room) + latin1(real);
    this.#roles.delete(key);
    if (!this.#written.delete(key)) return;
    this.#bus.presence
      .delete(key)
      .catch((error: unknown) => this.#logger().warn({ err: error, room }, 'XMPP MUC: could not drop an occupant from the bus'));
  }
}
