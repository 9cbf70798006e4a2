// One room of the MUC service (XEP-0045 v1.35): occupants and their roles, affiliations, the
// subject, history, the owner's configuration and the admin lists, as Prosody's
// plugins/muc/muc.lib.lua does it. Every stanza to the room runs in the room's queue, one at a
// time, so that joins, nick changes and affiliation changes never interleave.

import { randomBytes } from 'node:crypto';
import { XmlElement, xml } from '../../element.js';
import { Jid } from '../../jid.js';
import type { StanzaEvent, StanzaKind } from '../../module.js';
import { NS_DELAY, NS_DISCO_INFO, NS_DISCO_ITEMS, NS_MAM, NS_PING, NS_SID } from '../../namespaces.js';
import { StanzaErrorException } from '../../stanza-error.js';
import { roomMamForm, roomMamQuery } from './archive.js';
import { applyConfigForm, configForm, defaultConfig, type RoomConfig, roomFeatures, roomInfoForm } from './config.js';
import { type HistoryEntry, parseHistoryRequest, selectHistory } from './history.js';
import {
  AFFILIATION_RANK,
  AFFILIATIONS,
  type Affiliation,
  type MucContext,
  NS_CONFERENCE,
  NS_MUC,
  NS_MUC_ADMIN,
  NS_MUC_OWNER,
  NS_MUC_SELF_PING,
  NS_MUC_STABLE_ID,
  NS_MUC_USER,
  type Occupant,
  type OccupantEntry,
  ROLES,
  type Role,
  type StoredRoom,
} from './types.js';

/** An IQ between occupants in flight: the forwarded id → where the answer goes. */
interface ForwardedIq {
  id: string | undefined;
  /** Where it was forwarded: only that JID's answer is taken. */
  target: string;
  /** The asker's real full JID. */
  to: string;
  /** The answerer's room JID. */
  from: string;
}

/** IQs between occupants in flight per room at most (the oldest is forgotten past it). */
const MAX_FORWARDED_IQS = 1000;

export class Room {
  readonly name: string;
  /** `room@service`. */
  readonly jid: string;
  config: RoomConfig;
  readonly affiliations = new Map<string, Affiliation>();
  readonly occupants = new Map<string, Occupant>();
  /** Real full JID → its occupant. */
  readonly byReal = new Map<string, Occupant>();
  subject: { text: string; nick: string; when: number } | undefined;
  readonly history: HistoryEntry[] = [];
  /** Created and not configured yet (§10.1.1): only the owner may enter. */
  locked = false;
  destroyedRoom = false;
  /** Another process holds the room now (this one lost its claim): stanzas go there. */
  detached = false;
  readonly creator: string;
  readonly created: number;
  readonly #ctx: MucContext;
  #queue: Promise<unknown> = Promise.resolve();
  #lockTimer: NodeJS.Timeout | undefined;
  readonly #forwarded = new Map<string, ForwardedIq>();
  #historyChars = 0;

  constructor(ctx: MucContext, name: string, creator: string, stored?: StoredRoom) {
    this.#ctx = ctx;
    this.name = name;
    this.jid = `${name}@${ctx.service}`;
    this.config = stored?.config ?? defaultConfig(ctx.defaults, ctx.limits);
    this.creator = stored?.creator ?? creator;
    this.created = stored?.created ?? ctx.now();
    this.subject = stored?.subject;
    if (stored !== undefined) for (const [jid, affiliation] of Object.entries(stored.affiliations)) this.affiliations.set(jid, affiliation);
  }

  /** Keep a message for history: at most `historyLength` of them, and at most `maxHistoryChars` in all. */
  #remember(entry: HistoryEntry): void {
    this.history.push(entry);
    this.#historyChars += entry.chars;
    this.#trimHistory();
  }

  #trimHistory(): void {
    const cap = this.#ctx.limits.maxHistoryChars;
    while (this.history.length > this.config.historyLength || (this.#historyChars > cap && this.history.length > 0)) {
      this.#historyChars -= (this.history.shift() as HistoryEntry).chars;
    }
  }

  /** Seed the history (a persistent room after a restart), oldest first. */
  seedHistory(entries: HistoryEntry[]): void {
    for (const entry of entries) this.#remember(entry);
  }

  /** Run `task` after everything queued before it (a room handles one stanza at a time). */
  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.#queue.then(task);
    this.#queue = result.catch(() => undefined);
    return result;
  }

  stored(): StoredRoom {
    return {
      name: this.name,
      config: { ...this.config },
      affiliations: Object.fromEntries(this.affiliations),
      subject: this.subject,
      creator: this.creator,
      created: this.created,
    };
  }

  affiliation(bare: string): Affiliation {
    return this.affiliations.get(bare) ?? 'none';
  }

  /** The role an affiliation enters with (§5.1.2). */
  defaultRole(affiliation: Affiliation): Role {
    if (affiliation === 'owner' || affiliation === 'admin') return 'moderator';
    if (affiliation === 'outcast') return 'none';
    if (this.config.moderated && affiliation === 'none') return 'visitor';
    return 'participant';
  }

  /** Lock a new room until its owner configures it; destroyed if not configured in time (as Prosody's muc_room_lock_timeout). */
  lock(): void {
    this.locked = true;
    this.#lockTimer = setTimeout(() => {
      this.run(async () => {
        if (this.locked) await this.destroy(undefined, 'The room was not configured in time');
      }).catch((error: unknown) => this.#ctx.api.logger.error({ err: error, room: this.jid }, 'XMPP MUC: destroying a locked room failed'));
    }, this.#ctx.lockTimeoutMs);
    this.#lockTimer.unref();
  }

  #unlock(): void {
    this.locked = false;
    clearTimeout(this.#lockTimer);
    this.#lockTimer = undefined;
  }

  stop(): void {
    clearTimeout(this.#lockTimer);
  }

  async #save(): Promise<void> {
    await this.#ctx.save(this.stored(), this.config.persistent);
  }

  /** Tell the service the room's state changed (on several processes, the next holder reads it). */
  async #changed(): Promise<void> {
    await this.#ctx.changed(this.name, { stored: this.stored(), locked: this.locked });
  }

  /**
   * Take over occupants from a previous holder of the room (another process that died or lost the
   * room): their sessions, nicks, roles and presences, without a word to them (nothing changed for them).
   */
  restore(entries: readonly OccupantEntry[]): void {
    for (const entry of entries) {
      const existing = this.occupants.get(entry.nick);
      if (existing !== undefined && existing.bare !== bareOf(entry.real)) continue;
      if (this.byReal.has(entry.real)) continue;
      const occupant: Occupant = existing ?? {
        nick: entry.nick,
        bare: bareOf(entry.real),
        role: ROLES.includes(entry.role) && entry.role !== 'none' ? entry.role : this.defaultRole(this.affiliation(bareOf(entry.real))),
        sessions: new Map(),
        primary: entry.real,
      };
      occupant.sessions.set(entry.real, entry.presence);
      this.occupants.set(entry.nick, occupant);
      this.byReal.set(entry.real, occupant);
      this.#ctx.track(entry.real, occupant.bare, this.name, true);
    }
  }

  /**
   * Occupants a previous holder had that are gone now (their session ended with a dead process, or
   * while nobody held the room): the others see them leave, as from a session that ended.
   */
  async departed(gone: ReadonlyArray<readonly [string, string]>): Promise<void> {
    for (const [real, nick] of gone) {
      if (this.byReal.has(real) || this.occupants.has(nick)) continue;
      const bare = bareOf(real);
      const affiliation = this.affiliation(bare);
      await this.#broadcast((viewer) =>
        xml(
          'presence',
          { from: `${this.jid}/${nick}`, type: 'unavailable' },
          xml('x', { xmlns: NS_MUC_USER }, xml('item', { affiliation, role: 'none', jid: this.#seesJids(viewer) ? real : undefined })),
        ),
      );
    }
  }

  /** This process no longer holds the room (another one took it): forget it without a word to its occupants. */
  detach(): void {
    this.detached = true;
    this.stop();
    for (const occupant of this.occupants.values())
      for (const real of occupant.sessions.keys()) this.#ctx.track(real, occupant.bare, this.name, false);
    this.occupants.clear();
    this.byReal.clear();
  }

  // ---- dispatch ----

  async handle(event: StanzaEvent, kind: StanzaKind, created: boolean): Promise<void> {
    if (this.destroyedRoom) throw new StanzaErrorException('item-not-found', 'the room is gone');
    if (kind === 'presence') return this.#presence(event, created);
    if (kind === 'message') return this.#message(event);
    return this.#iq(event);
  }

  // ---- presence: join, change, nick change, leave (§7.2–§7.4, §7.6, §7.14) ----

  async #presence(event: StanzaEvent, created: boolean): Promise<void> {
    const { stanza, from, to } = event;
    const type = stanza.attr('type');
    const real = from.toString();
    const occupant = this.byReal.get(real);
    if (to.isBare) {
      // §7.2.1: a join names a nick.
      if (type === undefined) throw new StanzaErrorException('jid-malformed', 'a room JID with a nickname is needed to join');
      return;
    }
    if (type === 'unavailable' || type === 'error') {
      if (occupant !== undefined) await this.leave(real, type === 'unavailable' ? stanza : undefined);
      return;
    }
    // Subscriptions and probes mean nothing to a room.
    if (type !== undefined) return;
    // What an occupant shows goes to every occupant, at every join: bounded (Prosody has no such cap).
    if (presenceBody(stanza).toString().length > this.#ctx.limits.maxPresenceChars)
      throw new StanzaErrorException(
        'policy-violation',
        `a presence in a room has at most ${this.#ctx.limits.maxPresenceChars} characters`,
      );
    const nick = to.resource;
    if (occupant === undefined) return this.#join(event, nick, created);
    if (occupant.nick === nick) return this.#update(occupant, real, stanza);
    return this.#changeNick(occupant, real, nick, stanza);
  }

  async #join(event: StanzaEvent, nick: string, created: boolean): Promise<void> {
    const { stanza, from } = event;
    const real = from.toString();
    const bare = from.bare;
    const affiliation = this.affiliation(bare);
    const x = stanza.getChild('x', NS_MUC);
    if (this.locked && affiliation !== 'owner')
      throw new StanzaErrorException('item-not-found', 'this room is locked until its owner configures it');
    if (affiliation === 'outcast') throw new StanzaErrorException('forbidden', 'you are banned from this room');
    if (this.config.membersOnly && AFFILIATION_RANK[affiliation] < AFFILIATION_RANK.member)
      throw new StanzaErrorException('registration-required', 'this room is members-only');
    const existing = this.occupants.get(nick);
    if (existing !== undefined && existing.bare !== bare) throw new StanzaErrorException('conflict', 'that nickname is already in use');
    if (this.config.password !== '' && x?.getChildText('password', NS_MUC) !== this.config.password)
      throw new StanzaErrorException('not-authorized', 'a password is required to enter this room');
    if (existing === undefined) {
      const privileged = AFFILIATION_RANK[affiliation] >= AFFILIATION_RANK.admin;
      if (this.occupants.size >= this.config.maxUsers && !privileged)
        throw new StanzaErrorException('service-unavailable', 'the room is full');
      if (this.#ctx.joinedRooms(bare) >= this.#ctx.limits.maxJoinedRoomsPerUser)
        throw new StanzaErrorException(
          'policy-violation',
          `you are in ${this.#ctx.limits.maxJoinedRoomsPerUser} rooms already: leave one first`,
        );
    } else if (existing.sessions.size >= this.#ctx.limits.maxSessionsPerOccupant) {
      throw new StanzaErrorException('policy-violation', 'too many sessions share this nickname');
    }

    const occupant: Occupant = existing ?? { nick, bare, role: this.defaultRole(affiliation), sessions: new Map(), primary: real };
    occupant.sessions.set(real, presenceBody(stanza));
    occupant.primary = real;
    this.occupants.set(nick, occupant);
    this.byReal.set(real, occupant);
    this.#ctx.track(real, bare, this.name, true);

    // To the newcomer: every other occupant's presence (§7.2.3), then its own with 110 (and the
    // room's status codes), then history and the subject.
    const sees = this.#seesJids(occupant);
    for (const other of this.occupants.values()) {
      if (other === occupant) continue;
      await this.#send(this.#presenceOf(other, { jid: sees }).with({ to: real }));
    }
    const codes = [110];
    if (this.config.whois === 'anyone') codes.push(100);
    if (this.config.logging) codes.push(170);
    if (created) codes.push(201);
    await this.#send(this.#presenceOf(occupant, { jid: true, codes }).with({ to: real }));
    // Everyone else (and the occupant's other sessions) learn of it.
    await this.#broadcastPresence(occupant, { exclude: real });

    const request = parseHistoryRequest(x?.getChild('history', NS_MUC));
    const limited = { ...request, maxStanzas: Math.min(request.maxStanzas ?? this.config.historyLength, this.config.historyLength) };
    for (const entry of selectHistory(this.history, limited, this.#ctx.now())) {
      const delayed = new XmlElement(
        entry.message.name,
        { ...entry.message.attrs, to: real },
        [...entry.message.children, xml('delay', { xmlns: NS_DELAY, from: this.jid, stamp: stamp(entry.when) })],
        entry.message.xmlns,
      );
      await this.#send(delayed);
    }
    // §7.2.15: the subject, always (empty when there is none), after the history.
    const subject = this.subject;
    await this.#send(
      xml(
        'message',
        {
          from: subject !== undefined && subject.nick !== '' ? `${this.jid}/${subject.nick}` : this.jid,
          to: real,
          type: 'groupchat',
          id: randomId(),
        },
        subjectOf(subject?.text ?? ''),
        subject === undefined ? undefined : xml('delay', { xmlns: NS_DELAY, from: this.jid, stamp: stamp(subject.when) }),
      ),
    );
  }

  /** A new presence from a joined session: broadcast (§7.7). */
  async #update(occupant: Occupant, real: string, stanza: XmlElement): Promise<void> {
    occupant.sessions.set(real, presenceBody(stanza));
    occupant.primary = real;
    await this.#broadcastPresence(occupant);
  }

  /** §7.6: unavailable from the old nick with 303 and the new nick, then available from the new one. */
  async #changeNick(occupant: Occupant, real: string, nick: string, stanza: XmlElement): Promise<void> {
    const taken = this.occupants.get(nick);
    if (taken !== undefined && taken.bare !== occupant.bare) throw new StanzaErrorException('conflict', 'that nickname is already in use');
    if (occupant.sessions.size > 1)
      throw new StanzaErrorException('not-acceptable', 'change the nickname from one session at a time: leave from the others first');
    if (taken !== undefined) throw new StanzaErrorException('conflict', 'that nickname is already in use');
    occupant.sessions.set(real, presenceBody(stanza));
    // Unavailable from the old nick to everyone, with the new nick and 303.
    await this.#broadcast((viewer, self) => {
      const item = this.#item(occupant, this.#seesJids(viewer) || self, { nick });
      return xml(
        'presence',
        { from: `${this.jid}/${occupant.nick}`, type: 'unavailable' },
        xml('x', { xmlns: NS_MUC_USER }, item, status(303), self ? status(110) : undefined),
      );
    }, occupant);
    this.occupants.delete(occupant.nick);
    occupant.nick = nick;
    this.occupants.set(nick, occupant);
    this.#ctx.renamed(this.name);
    await this.#broadcastPresence(occupant);
  }

  /** A session leaves (§7.14): unavailable to everyone; the occupant is gone once its last session is. */
  async leave(real: string, stanza?: XmlElement): Promise<void> {
    const occupant = this.byReal.get(real);
    if (occupant === undefined) return;
    this.byReal.delete(real);
    occupant.sessions.delete(real);
    this.#ctx.track(real, occupant.bare, this.name, false);
    const statusText = stanza?.getChildText('status');
    if (occupant.sessions.size > 0) {
      // Another session keeps the nick: this one gets its own unavailable, the others the remaining presence.
      await this.#send(
        xml(
          'presence',
          { from: `${this.jid}/${occupant.nick}`, to: real, type: 'unavailable' },
          xml('x', { xmlns: NS_MUC_USER }, this.#item(occupant, true), status(110)),
        ),
      );
      occupant.primary = occupant.sessions.keys().next().value as string;
      await this.#broadcastPresence(occupant);
      return;
    }
    this.occupants.delete(occupant.nick);
    const unavailable = (self: boolean, jid: boolean): XmlElement =>
      xml(
        'presence',
        { from: `${this.jid}/${occupant.nick}`, type: 'unavailable' },
        statusText === undefined ? undefined : xml('status', {}, statusText.slice(0, 1024)),
        xml('x', { xmlns: NS_MUC_USER }, this.#itemFor(occupant, real, 'none', jid), self ? status(110) : undefined),
      );
    await this.#send(unavailable(true, true).with({ to: real }));
    await this.#broadcast((viewer) => unavailable(false, this.#seesJids(viewer)));
    await this.#emptied();
  }

  /** Remove an occupant (all its sessions) with these status codes: kicked (307), banned (301), removed (321, 322). */
  async #remove(occupant: Occupant, codes: number[], reason: string | undefined, actor: Occupant | undefined): Promise<void> {
    const reals = [...occupant.sessions.keys()];
    for (const real of reals) {
      this.byReal.delete(real);
      this.#ctx.track(real, occupant.bare, this.name, false);
    }
    occupant.sessions.clear();
    this.occupants.delete(occupant.nick);
    occupant.role = 'none';
    const affiliation = this.affiliation(occupant.bare);
    const build = (self: boolean, jid: boolean, real: string): XmlElement =>
      xml(
        'presence',
        { from: `${this.jid}/${occupant.nick}`, type: 'unavailable' },
        xml(
          'x',
          { xmlns: NS_MUC_USER },
          xml(
            'item',
            { affiliation, role: 'none', jid: jid ? real : undefined },
            actor === undefined ? undefined : xml('actor', { nick: actor.nick }),
            reason === undefined ? undefined : xml('reason', {}, reason),
          ),
          ...codes.map(status),
          self ? status(110) : undefined,
        ),
      );
    for (const real of reals) await this.#send(build(true, true, real).with({ to: real }));
    await this.#broadcast((viewer) => build(false, this.#seesJids(viewer), reals[0] as string));
    await this.#emptied();
  }

  /** A room nobody is in any more: a temporary one is destroyed (§10.1, as Prosody: unless locked awaiting its owner's form). */
  async #emptied(): Promise<void> {
    if (this.occupants.size > 0 || this.config.persistent) return;
    await this.destroy(undefined, undefined, false);
  }

  // ---- messages (§7.4, §7.5, §7.8, §8.1) ----

  async #message(event: StanzaEvent): Promise<void> {
    const { stanza, from, to } = event;
    const type = stanza.attr('type') ?? 'normal';
    const real = from.toString();
    if (type === 'error') {
      // An occupant's client bounced what the room sent it (Prosody kicks on some errors; we only drop it).
      return;
    }
    const sender = this.byReal.get(real);
    if (!to.isBare) return this.#privateMessage(stanza, sender, to.resource, type);
    if (type === 'groupchat') return this.#groupchat(stanza, sender);
    const x = stanza.getChild('x', NS_MUC_USER);
    if (x !== undefined && (x.getChild('invite', NS_MUC_USER) !== undefined || x.getChild('decline', NS_MUC_USER) !== undefined))
      return this.#invitation(x, sender, from);
    if (sender === undefined) throw new StanzaErrorException('not-acceptable', 'you are not in this room');
    // A message of another type to the room: nothing to do with it (Prosody answers bad-request for chat).
    throw new StanzaErrorException('bad-request', 'messages to the room are of type groupchat');
  }

  async #groupchat(stanza: XmlElement, sender: Occupant | undefined): Promise<void> {
    if (sender === undefined) throw new StanzaErrorException('not-acceptable', 'you are not in this room');
    if (sender.role === 'visitor' || sender.role === 'none')
      throw new StanzaErrorException('forbidden', 'you have no voice in this room (moderated)');
    const body = stanza.getChild('body');
    const subjectElement = stanza.getChild('subject');
    const from = `${this.jid}/${sender.nick}`;
    if (subjectElement !== undefined && body === undefined) {
      // §8.1: moderators change the subject, participants too when the room allows it.
      const allowed = sender.role === 'moderator' || (this.config.changeSubject && sender.role === 'participant');
      if (!allowed) throw new StanzaErrorException('forbidden', 'you may not change the subject of this room');
      const text = subjectElement.text();
      if ([...text].length > this.#ctx.limits.maxSubjectLength)
        throw new StanzaErrorException('not-acceptable', `the subject is longer than ${this.#ctx.limits.maxSubjectLength} characters`);
      this.subject = text === '' ? undefined : { text, nick: sender.nick, when: this.#ctx.now() };
      if (this.config.persistent) await this.#save();
      await this.#changed();
      const message = xml(
        'message',
        { from, type: 'groupchat', id: stanza.attr('id') ?? randomId() },
        subjectOf(text),
      ).shareSerialization();
      await this.#toAll(message);
      return;
    }
    const children = stanza.children.filter(
      (child) =>
        typeof child === 'string' ||
        !(
          (child.local === 'stanza-id' && child.xmlns === NS_SID && child.attr('by') === this.jid) ||
          (child.local === 'x' && child.xmlns === NS_MUC_USER) ||
          (child.local === 'delay' && child.xmlns === NS_DELAY)
        ),
    );
    const attrs: Record<string, string> = { from, type: 'groupchat' };
    const id = stanza.attr('id');
    if (id !== undefined) attrs.id = id;
    const lang = stanza.attr('xml:lang');
    if (lang !== undefined) attrs['xml:lang'] = lang;
    const when = this.#ctx.now();
    let message: XmlElement;
    if (body !== undefined) {
      const archiveId = `${when.toString(36)}${randomId()}`;
      const stored = new XmlElement('message', { ...attrs }, children, stanza.xmlns);
      // A stanza id by the room only when the room archives it (XEP-0359 §4: an id a MAM query on the room can find).
      message = this.config.logging
        ? new XmlElement('message', attrs, [...children, xml('stanza-id', { xmlns: NS_SID, by: this.jid, id: archiveId })], stanza.xmlns)
        : new XmlElement('message', attrs, children, stanza.xmlns);
      const text = stored.toString();
      const entry = { message, when, chars: text.length };
      this.#remember(entry);
      this.#ctx.remembered(this.name, entry, this.config);
      if (this.config.logging) {
        this.#ctx.archive
          .append(this.name, { id: archiveId, when, with: from, xml: text })
          .catch((error: unknown) => this.#ctx.api.logger.error({ err: error, room: this.jid }, 'XMPP MUC: archiving a message failed'));
      }
    } else {
      // Chat states and other content-free messages: broadcast, not kept.
      message = new XmlElement('message', attrs, children, stanza.xmlns);
    }
    message.shareSerialization();
    await this.#toAll(message);
  }

  /** §7.5: a private message to an occupant, from the sender's room JID. */
  async #privateMessage(stanza: XmlElement, sender: Occupant | undefined, nick: string, type: string): Promise<void> {
    if (sender === undefined) {
      // Notifications (PEP to an occupant JID that got a directed presence) are dropped, not bounced.
      if (type === 'headline') return;
      throw new StanzaErrorException('not-acceptable', 'you are not in this room');
    }
    if (type === 'groupchat') throw new StanzaErrorException('bad-request', 'a private message is not of type groupchat');
    const target = this.occupants.get(nick);
    if (target === undefined) throw new StanzaErrorException('item-not-found', 'no occupant with that nickname');
    const policy = this.config.allowPm;
    const allowed =
      policy === 'anyone' ||
      (policy === 'participants' && (sender.role === 'participant' || sender.role === 'moderator')) ||
      (policy === 'moderators' && sender.role === 'moderator');
    if (!allowed) throw new StanzaErrorException('forbidden', 'private messages are not allowed in this room');
    const children = stanza.children.filter((child) => typeof child === 'string' || !(child.local === 'x' && child.xmlns === NS_MUC_USER));
    const message = new XmlElement(
      'message',
      { ...withoutAddresses(stanza.attrs), from: `${this.jid}/${sender.nick}` },
      [...children, xml('x', { xmlns: NS_MUC_USER })],
      stanza.xmlns,
    ).shareSerialization();
    for (const session of target.sessions.keys()) await this.#send(message.with({ to: session }));
  }

  /** §7.8.2: an invitation through the room (sent on the inviter's behalf), or a decline passed back. */
  async #invitation(x: XmlElement, sender: Occupant | undefined, from: Jid): Promise<void> {
    const decline = x.getChild('decline', NS_MUC_USER);
    if (decline !== undefined) {
      const to = Jid.parse(decline.attr('to') ?? '');
      if (to === undefined) throw new StanzaErrorException('jid-malformed', 'a decline names whom it goes to');
      const reason = decline.getChildText('reason');
      await this.#send(
        xml(
          'message',
          { from: this.jid, to: to.toString() },
          xml(
            'x',
            { xmlns: NS_MUC_USER },
            xml('decline', { from: from.bare }, reason === undefined ? undefined : xml('reason', {}, reason.slice(0, 1024))),
          ),
        ),
      );
      return;
    }
    if (sender === undefined) throw new StanzaErrorException('not-acceptable', 'you are not in this room');
    const affiliation = this.affiliation(sender.bare);
    const privileged = AFFILIATION_RANK[affiliation] >= AFFILIATION_RANK.admin;
    if (this.config.membersOnly && !privileged && !this.config.allowInvites)
      throw new StanzaErrorException('forbidden', 'only admins may invite to this members-only room');
    if (sender.role === 'visitor') throw new StanzaErrorException('forbidden', 'visitors may not invite');
    const invites = x.getChildren('invite', NS_MUC_USER);
    if (invites.length > this.#ctx.limits.maxInvitees)
      throw new StanzaErrorException('policy-violation', `at most ${this.#ctx.limits.maxInvitees} invitations at once`);
    const targets: Array<{ to: Jid; reason: string | undefined }> = [];
    for (const invite of invites) {
      const to = Jid.parse(invite.attr('to') ?? '');
      if (to === undefined) throw new StanzaErrorException('jid-malformed', 'an invitation names whom it goes to');
      targets.push({ to, reason: invite.getChildText('reason')?.slice(0, 1024) });
    }
    let changed = false;
    for (const { to, reason } of targets) {
      // §7.8.2: in a members-only room the invitee may become a member.
      if (this.config.membersOnly && this.affiliation(to.bare) === 'none' && this.affiliations.size < this.#ctx.limits.maxAffiliations) {
        this.affiliations.set(to.bare, 'member');
        changed = true;
      }
      const password = this.config.password === '' ? undefined : xml('password', {}, this.config.password);
      await this.#send(
        xml(
          'message',
          { from: this.jid, to: to.toString(), id: randomId() },
          xml('body', {}, `${from.bare} invites you to the room ${this.jid}${reason === undefined ? '' : `: ${reason}`}`),
          xml(
            'x',
            { xmlns: NS_MUC_USER },
            xml('invite', { from: from.toString() }, reason === undefined ? undefined : xml('reason', {}, reason)),
            password,
          ),
          xml('x', {
            xmlns: NS_CONFERENCE,
            jid: this.jid,
            reason,
            password: this.config.password === '' ? undefined : this.config.password,
          }),
        ),
      );
    }
    if (changed && this.config.persistent) await this.#save();
    if (changed) await this.#changed();
  }

  // ---- IQs (§6, §8, §9, §10, XEP-0313, XEP-0410) ----

  async #iq(event: StanzaEvent): Promise<void> {
    const { stanza, from, to } = event;
    const type = stanza.attr('type');
    const real = from.toString();
    if (!to.isBare) return this.#iqToOccupant(event, type, real);
    if (type !== 'get' && type !== 'set') return;
    const payloads = stanza.getChildren();
    const payload = payloads[0];
    if (payloads.length !== 1 || payload === undefined)
      throw new StanzaErrorException('bad-request', 'an IQ get or set has exactly one payload');
    const answer = await this.#iqToRoom(event, type, payload);
    await this.#send(xml('iq', { type: 'result', id: stanza.attr('id'), from: this.jid, to: real }, answer));
  }

  async #iqToRoom(event: StanzaEvent, type: 'get' | 'set', payload: XmlElement): Promise<XmlElement | undefined> {
    const real = event.from.toString();
    const bare = event.from.bare;
    const key = `${type} ${payload.xmlns} ${payload.local}`;
    switch (key) {
      case `get ${NS_DISCO_INFO} query`: {
        if (payload.attr('node') !== undefined) throw new StanzaErrorException('item-not-found');
        const features = [
          NS_MUC,
          NS_DISCO_INFO,
          NS_DISCO_ITEMS,
          NS_MUC_STABLE_ID,
          NS_MUC_SELF_PING,
          ...roomFeatures(this.config),
          ...(this.config.logging ? [NS_MAM, NS_SID] : []),
        ];
        return xml(
          'query',
          { xmlns: NS_DISCO_INFO },
          xml('identity', { category: 'conference', type: 'text', name: this.config.name === '' ? this.name : this.config.name }),
          ...features.map((feature) => xml('feature', { var: feature })),
          roomInfoForm(this.config, this.occupants.size, this.subject?.text ?? ''),
        );
      }
      case `get ${NS_DISCO_ITEMS} query`: {
        if (payload.attr('node') !== undefined) throw new StanzaErrorException('item-not-found');
        // §6.5: occupants are listed to occupants only (a semi-anonymous room keeps them from others).
        const items = this.byReal.has(real) ? [...this.occupants.keys()].map((nick) => xml('item', { jid: `${this.jid}/${nick}` })) : [];
        return xml('query', { xmlns: NS_DISCO_ITEMS }, ...items);
      }
      case `get ${NS_PING} ping`:
        return undefined;
      case `get ${NS_MUC_OWNER} query`:
        this.#requireOwner(bare);
        return xml('query', { xmlns: NS_MUC_OWNER }, configForm(this.jid, this.config, this.#ctx.limits));
      case `set ${NS_MUC_OWNER} query`:
        this.#requireOwner(bare);
        await this.#ownerSet(payload);
        return undefined;
      case `get ${NS_MUC_ADMIN} query`:
        return this.#adminGet(payload, bare);
      case `set ${NS_MUC_ADMIN} query`:
        await this.#adminSet(payload, bare, real);
        return undefined;
      case `get ${NS_MAM} query`:
        this.#requireArchiveAccess(bare);
        return roomMamForm();
      case `set ${NS_MAM} query`: {
        this.#requireArchiveAccess(bare);
        const results = await roomMamQuery(this.#ctx.archive, this.name, payload, { defaultMax: 50, maxCap: 250 });
        const queryId = payload.attr('queryid');
        for (const item of results.items) {
          await this.#send(
            xml(
              'message',
              { from: this.jid, to: real, id: randomId() },
              xml('result', { xmlns: NS_MAM, queryid: queryId, id: item.id }, item.forwarded),
            ),
          );
        }
        return results.fin;
      }
      default:
        throw new StanzaErrorException('service-unavailable');
    }
  }

  #requireOwner(bare: string): void {
    if (this.affiliation(bare) !== 'owner') throw new StanzaErrorException('forbidden', 'only owners may configure or destroy the room');
  }

  /** Who may read the room's archive (as Prosody's muc_mam): anyone but outcasts; members and above in a members-only room. */
  #requireArchiveAccess(bare: string): void {
    const affiliation = this.affiliation(bare);
    if (affiliation === 'outcast') throw new StanzaErrorException('forbidden', 'you are banned from this room');
    if (this.config.membersOnly && affiliation === 'none') throw new StanzaErrorException('forbidden', 'this room is members-only');
    if (!this.config.logging) throw new StanzaErrorException('feature-not-implemented', 'this room is not archived');
  }

  /** IQs to an occupant JID: XEP-0410 self-ping, else forwarded to the occupant (§7.5's IQ routing, as Prosody). */
  async #iqToOccupant(event: StanzaEvent, type: string | undefined, real: string): Promise<void> {
    const { stanza, to } = event;
    const nick = to.resource;
    if (type === 'result' || type === 'error') {
      // An answer to an IQ the room forwarded: back to the asker, from the answerer's room JID.
      const id = stanza.attr('id') ?? '';
      const forwarded = this.#forwarded.get(id);
      if (forwarded === undefined || forwarded.target !== real) return;
      this.#forwarded.delete(id);
      await this.#send(
        new XmlElement(
          'iq',
          { ...withoutAddresses(stanza.attrs), id: forwarded.id ?? '', from: forwarded.from, to: forwarded.to },
          stanza.children,
          stanza.xmlns,
        ),
      );
      return;
    }
    const sender = this.byReal.get(real);
    // XEP-0410 §3: not joined (under this nick or at all): not-acceptable.
    if (sender === undefined) throw new StanzaErrorException('not-acceptable', 'you are not in this room');
    const payload = stanza.getChildren()[0];
    if (sender.nick === nick && payload?.local === 'ping' && payload.xmlns === NS_PING) {
      await this.#send(xml('iq', { type: 'result', id: stanza.attr('id'), from: to.toString(), to: real }));
      return;
    }
    const target = this.occupants.get(nick);
    if (target === undefined) throw new StanzaErrorException('item-not-found', 'no occupant with that nickname');
    if (type !== 'get' && type !== 'set') throw new StanzaErrorException('bad-request', 'an IQ is of type get, set, result or error');
    const id = randomId();
    // vCards are the account's, answered by its server: to the bare JID (as Prosody); anything else to the occupant's client.
    const forwardTo = payload?.xmlns === 'vcard-temp' ? target.bare : target.primary;
    this.#forwarded.set(id, { id: stanza.attr('id'), target: forwardTo, to: real, from: `${this.jid}/${nick}` });
    if (this.#forwarded.size > MAX_FORWARDED_IQS) this.#forwarded.delete(this.#forwarded.keys().next().value as string);
    await this.#send(
      new XmlElement(
        'iq',
        { ...withoutAddresses(stanza.attrs), id, from: `${this.jid}/${sender.nick}`, to: forwardTo },
        stanza.children,
        stanza.xmlns,
      ),
    );
  }

  // ---- owner: configuration and destruction (§10) ----

  async #ownerSet(query: XmlElement): Promise<void> {
    const destroy = query.getChild('destroy', NS_MUC_OWNER);
    if (destroy !== undefined) {
      const alternate = destroy.attr('jid');
      if (alternate !== undefined && Jid.parse(alternate) === undefined) throw new StanzaErrorException('jid-malformed', 'not a JID');
      await this.destroy(alternate, destroy.getChildText('reason')?.slice(0, 1024));
      return;
    }
    const x = query.getChild('x', 'jabber:x:data');
    if (x === undefined) throw new StanzaErrorException('bad-request', 'a configuration form or <destroy/> is expected');
    if (x.attr('type') === 'cancel') {
      // §10.1.3: cancelling the initial configuration destroys the new room.
      if (this.locked) await this.destroy(undefined, undefined);
      return;
    }
    const previous = this.config;
    // §10.1.2: an empty submission accepts the defaults (an instant room).
    const next =
      x.getChildren('field').length === 0 && x.attr('type') === 'submit' ? { ...previous } : applyConfigForm(x, previous, this.#ctx.limits);
    this.config = next;
    const wasLocked = this.locked;
    this.#unlock();
    this.#trimHistory();
    if (next.persistent || previous.persistent) await this.#save();
    await this.#changed();
    // §10.2.1: occupants learn of the change (104, and what it means for their privacy).
    const codes = [104];
    if (next.logging !== previous.logging) codes.push(next.logging ? 170 : 171);
    if (next.whois !== previous.whois) codes.push(next.whois === 'anyone' ? 172 : 173);
    if (!wasLocked || codes.length > 1)
      await this.#toAll(
        xml(
          'message',
          { from: this.jid, type: 'groupchat', id: randomId() },
          xml('x', { xmlns: NS_MUC_USER }, ...codes.map(status)),
        ).shareSerialization(),
      );
    // Becoming members-only removes those who are not members (322, §9.4 / Prosody).
    if (next.membersOnly && !previous.membersOnly) {
      for (const occupant of [...this.occupants.values()]) {
        if (AFFILIATION_RANK[this.affiliation(occupant.bare)] < AFFILIATION_RANK.member)
          await this.#remove(occupant, [322], undefined, undefined);
      }
    }
    // Whether occupants see real JIDs changed: everyone's presence again.
    if (next.whois !== previous.whois) for (const occupant of this.occupants.values()) await this.#broadcastPresence(occupant);
    if (!next.persistent && previous.persistent) await this.#emptied();
  }

  /** §10.9: every occupant gets unavailable with `<destroy/>`; the room and what is stored of it are gone. */
  async destroy(alternate: string | undefined, reason: string | undefined, notify = true): Promise<void> {
    if (this.destroyedRoom) return;
    this.destroyedRoom = true;
    this.#unlock();
    if (notify) {
      for (const occupant of this.occupants.values()) {
        for (const real of occupant.sessions.keys()) {
          await this.#send(
            xml(
              'presence',
              { from: `${this.jid}/${occupant.nick}`, to: real, type: 'unavailable' },
              xml(
                'x',
                { xmlns: NS_MUC_USER },
                xml('item', { affiliation: 'none', role: 'none' }),
                xml('destroy', { jid: alternate }, reason === undefined ? undefined : xml('reason', {}, reason)),
                status(110),
              ),
            ),
          );
        }
      }
    }
    for (const occupant of this.occupants.values())
      for (const real of occupant.sessions.keys()) this.#ctx.track(real, occupant.bare, this.name, false);
    this.occupants.clear();
    this.byReal.clear();
    await this.#ctx.destroyed(this);
  }

  // ---- admin: roles and affiliations (§8, §9, §10) ----

  #adminGet(query: XmlElement, bare: string): XmlElement {
    const items = query.getChildren('item', NS_MUC_ADMIN);
    const first = items[0];
    if (items.length !== 1 || first === undefined) throw new StanzaErrorException('bad-request', 'ask for one role or affiliation list');
    const affiliation = this.affiliation(bare);
    const actor = [...this.occupants.values()].find((o) => o.bare === bare);
    const role = first.attr('role');
    const wanted = first.attr('affiliation');
    if (role !== undefined) {
      if (!(ROLES as readonly string[]).includes(role) || role === 'none')
        throw new StanzaErrorException('bad-request', `no role list '${role}'`);
      if (actor?.role !== 'moderator' && AFFILIATION_RANK[affiliation] < AFFILIATION_RANK.admin)
        throw new StanzaErrorException('forbidden', 'only moderators may see role lists');
      return xml(
        'query',
        { xmlns: NS_MUC_ADMIN },
        ...[...this.occupants.values()]
          .filter((o) => o.role === role)
          .map((o) => xml('item', { nick: o.nick, role: o.role, affiliation: this.affiliation(o.bare), jid: o.primary })),
      );
    }
    if (wanted !== undefined) {
      if (!(AFFILIATIONS as readonly string[]).includes(wanted) || wanted === 'none')
        throw new StanzaErrorException('bad-request', `no affiliation list '${wanted}'`);
      // Admins and owners see every list; members see the member list of a members-only room (as Prosody).
      const mayRead =
        AFFILIATION_RANK[affiliation] >= AFFILIATION_RANK.admin ||
        (wanted === 'member' && affiliation === 'member' && this.config.membersOnly);
      if (!mayRead) throw new StanzaErrorException('forbidden', 'only admins and owners may see affiliation lists');
      return xml(
        'query',
        { xmlns: NS_MUC_ADMIN },
        ...[...this.affiliations]
          .filter(([, a]) => a === wanted)
          .map(([jid, a]) => {
            const nick = [...this.occupants.values()].find((o) => o.bare === jid)?.nick;
            return xml('item', { affiliation: a, jid, nick });
          }),
      );
    }
    throw new StanzaErrorException('bad-request', 'an item names a role or an affiliation');
  }

  async #adminSet(query: XmlElement, bare: string, real: string): Promise<void> {
    const items = query.getChildren('item', NS_MUC_ADMIN);
    if (items.length === 0) throw new StanzaErrorException('bad-request', 'no items');
    if (items.length > 100) throw new StanzaErrorException('policy-violation', 'at most 100 items at once');
    const actorAffiliation = this.affiliation(bare);
    const actor = this.byReal.get(real);
    const actorIsModerator = actor?.role === 'moderator';
    type Change =
      | { kind: 'role'; occupant: Occupant; role: Role; reason: string | undefined }
      | { kind: 'affiliation'; jid: string; affiliation: Affiliation; reason: string | undefined };
    const changes: Change[] = [];
    const affiliations = new Map(this.affiliations);
    for (const item of items) {
      const role = item.attr('role');
      const affiliation = item.attr('affiliation');
      const reason = item.getChildText('reason')?.slice(0, 1024);
      if (role !== undefined && affiliation === undefined) {
        if (!(ROLES as readonly string[]).includes(role)) throw new StanzaErrorException('bad-request', `no role '${role}'`);
        const nick = item.attr('nick');
        if (nick === undefined) throw new StanzaErrorException('bad-request', 'a role change names the occupant by nick');
        const occupant = this.occupants.get(nick);
        if (occupant === undefined) throw new StanzaErrorException('item-not-found', 'no occupant with that nickname');
        if (!actorIsModerator) throw new StanzaErrorException('forbidden', 'only moderators may change roles');
        const targetAffiliation = affiliations.get(occupant.bare) ?? 'none';
        const targetRank = AFFILIATION_RANK[targetAffiliation];
        if (role === 'moderator' || occupant.role === 'moderator') {
          // Granting or revoking moderation: admins and owners only (§9.6, §9.7).
          if (AFFILIATION_RANK[actorAffiliation] < AFFILIATION_RANK.admin)
            throw new StanzaErrorException('forbidden', 'only admins may grant or revoke moderation');
        }
        // Kicking, or taking voice or moderation from, an admin or owner (§8.2, §8.4, §9.7): not allowed.
        if (targetRank >= AFFILIATION_RANK.admin && role !== 'moderator')
          throw new StanzaErrorException('not-allowed', 'admins and owners cannot be kicked or silenced');
        changes.push({ kind: 'role', occupant, role: role as Role, reason });
        continue;
      }
      if (affiliation !== undefined && role === undefined) {
        if (!(AFFILIATIONS as readonly string[]).includes(affiliation))
          throw new StanzaErrorException('bad-request', `no affiliation '${affiliation}'`);
        let jid: string | undefined;
        const jidText = item.attr('jid');
        if (jidText !== undefined) {
          const parsed = Jid.parse(jidText);
          if (parsed === undefined) throw new StanzaErrorException('jid-malformed', 'not a JID');
          jid = parsed.bare;
        } else {
          const nick = item.attr('nick');
          const occupant = nick === undefined ? undefined : this.occupants.get(nick);
          if (occupant === undefined)
            throw new StanzaErrorException('item-not-found', 'name the user by JID or by the nick of an occupant');
          jid = occupant.bare;
        }
        if (AFFILIATION_RANK[actorAffiliation] < AFFILIATION_RANK.admin)
          throw new StanzaErrorException('forbidden', 'only admins and owners may change affiliations');
        const current = affiliations.get(jid) ?? 'none';
        const next = affiliation as Affiliation;
        if (actorAffiliation !== 'owner') {
          // Admins manage members and outcasts below them (§9); owners and admins are the owners' (§10).
          if (next === 'owner' || next === 'admin') throw new StanzaErrorException('forbidden', 'only owners may grant admin or owner');
          if (AFFILIATION_RANK[current] >= AFFILIATION_RANK.admin)
            throw new StanzaErrorException('not-allowed', 'admins cannot change an admin or owner');
        }
        if (next === 'none') affiliations.delete(jid);
        else affiliations.set(jid, next);
        if (current === 'owner' && ![...affiliations.values()].includes('owner'))
          throw new StanzaErrorException('conflict', 'a room keeps at least one owner');
        changes.push({ kind: 'affiliation', jid, affiliation: next, reason });
        continue;
      }
      throw new StanzaErrorException('bad-request', 'an item changes either a role or an affiliation');
    }
    if (affiliations.size > this.#ctx.limits.maxAffiliations)
      throw new StanzaErrorException('policy-violation', `a room has at most ${this.#ctx.limits.maxAffiliations} affiliations`);

    // Valid: apply, then tell the occupants.
    let affiliationsChanged = false;
    for (const change of changes) {
      if (change.kind === 'role') {
        const { occupant, role, reason } = change;
        if (!this.occupants.has(occupant.nick) || this.occupants.get(occupant.nick) !== occupant) continue;
        if (role === 'none') await this.#remove(occupant, [307], reason, actor);
        else {
          occupant.role = role;
          await this.#broadcastPresence(occupant, { reason, actor });
        }
        continue;
      }
      const { jid, affiliation, reason } = change;
      if (affiliation === 'none') this.affiliations.delete(jid);
      else this.affiliations.set(jid, affiliation);
      affiliationsChanged = true;
      const occupant = [...this.occupants.values()].find((o) => o.bare === jid);
      if (occupant === undefined) continue;
      if (affiliation === 'outcast') await this.#remove(occupant, [301], reason, actor);
      else if (this.config.membersOnly && affiliation === 'none') await this.#remove(occupant, [321], reason, actor);
      else {
        occupant.role = this.defaultRole(affiliation);
        await this.#broadcastPresence(occupant, { reason, actor });
      }
    }
    if (affiliationsChanged && this.config.persistent) await this.#save();
    if (affiliationsChanged) await this.#changed();
  }

  // ---- building and sending ----

  /** Whether this viewer sees real JIDs (§7.2.3/§7.2.4): in a non-anonymous room everyone; else moderators. */
  #seesJids(viewer: Occupant): boolean {
    return this.config.whois === 'anyone' || viewer.role === 'moderator';
  }

  #item(occupant: Occupant, jid: boolean, extra: { nick?: string; reason?: string; actor?: Occupant } = {}): XmlElement {
    return xml(
      'item',
      { affiliation: this.affiliation(occupant.bare), role: occupant.role, jid: jid ? occupant.primary : undefined, nick: extra.nick },
      extra.actor === undefined ? undefined : xml('actor', { nick: extra.actor.nick }),
      extra.reason === undefined ? undefined : xml('reason', {}, extra.reason),
    );
  }

  #itemFor(occupant: Occupant, real: string, role: Role, jid: boolean): XmlElement {
    return xml('item', { affiliation: this.affiliation(occupant.bare), role, jid: jid ? real : undefined });
  }

  /** The occupant's current presence, from its room JID (no `to` yet). */
  #presenceOf(occupant: Occupant, options: { jid: boolean; codes?: number[]; reason?: string; actor?: Occupant }): XmlElement {
    const body = occupant.sessions.get(occupant.primary);
    const children = body === undefined ? [] : [...body.children];
    children.push(
      xml(
        'x',
        { xmlns: NS_MUC_USER },
        this.#item(occupant, options.jid, { reason: options.reason, actor: options.actor }),
        ...(options.codes ?? []).map(status),
      ),
    );
    return new XmlElement('presence', { from: `${this.jid}/${occupant.nick}` }, children);
  }

  /** The occupant's presence to everyone: with its real JID to those who see it, 110 to its own sessions. */
  async #broadcastPresence(occupant: Occupant, options: { exclude?: string; reason?: string; actor?: Occupant } = {}): Promise<void> {
    const withJid = this.#presenceOf(occupant, { jid: true, reason: options.reason, actor: options.actor }).shareSerialization();
    const withoutJid = this.#presenceOf(occupant, { jid: false, reason: options.reason, actor: options.actor }).shareSerialization();
    const self = this.#presenceOf(occupant, { jid: true, codes: [110], reason: options.reason, actor: options.actor }).shareSerialization();
    for (const viewer of [...this.occupants.values()]) {
      const presence = viewer === occupant ? self : this.#seesJids(viewer) ? withJid : withoutJid;
      for (const real of viewer.sessions.keys()) {
        if (real === options.exclude) continue;
        await this.#send(presence.with({ to: real }));
      }
    }
  }

  /** A stanza built per viewer (once per kind of viewer would do; rare events: built per viewer). */
  async #broadcast(build: (viewer: Occupant, self: boolean) => XmlElement, about?: Occupant): Promise<void> {
    for (const viewer of [...this.occupants.values()]) {
      const stanza = build(viewer, viewer === about);
      for (const real of viewer.sessions.keys()) await this.#send(stanza.with({ to: real }));
    }
  }

  /** One message to every session in the room: serialized once (`shareSerialization`), addressed per session. */
  async #toAll(message: XmlElement): Promise<void> {
    for (const occupant of [...this.occupants.values()]) {
      for (const real of occupant.sessions.keys()) await this.#send(message.with({ to: real }));
    }
  }

  async #send(stanza: XmlElement): Promise<void> {
    await this.#ctx.api.route(stanza);
  }
}

/** What an occupant's presence shows: its children without the MUC payloads (the room adds its own). */
function presenceBody(stanza: XmlElement): XmlElement {
  const children = stanza.children.filter(
    (child) => typeof child !== 'string' && !(child.local === 'x' && (child.xmlns === NS_MUC || child.xmlns === NS_MUC_USER)),
  );
  return new XmlElement('presence', {}, children);
}

/** `<subject/>` (empty: no subject, §8.1) or with its text. */
function subjectOf(text: string): XmlElement {
  return text === '' ? xml('subject') : xml('subject', {}, text);
}

function status(code: number): XmlElement {
  return xml('status', { code: String(code) });
}

function withoutAddresses(attrs: Record<string, string>): Record<string, string> {
  const { from: _from, to: _to, xmlns: _xmlns, ...rest } = attrs;
  return rest;
}

function bareOf(full: string): string {
  return Jid.parse(full)?.bare ?? full;
}

export function stamp(when: number): string {
  return new Date(when).toISOString().replace('.000Z', 'Z');
}

export function randomId(): string {
  return randomBytes(9).toString('base64url');
}
