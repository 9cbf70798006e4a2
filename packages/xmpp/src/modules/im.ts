import { type XmlElement, xml } from '../element.js';
import { presenceState } from '../host.js';
import { Jid } from '../jid.js';
import type { ModuleApi, StanzaEvent, XmppModule } from '../module.js';
import { NS_DELAY, NS_ROSTER, NS_ROSTER_VER } from '../namespaces.js';
import { parseXml } from '../parse.js';
import type { XmppSession } from '../session.js';
import { StanzaErrorException } from '../stanza-error.js';
import type { KeyValueStore } from '../stores/types.js';
import { updateValue } from '../stores/update.js';

// Instant messaging and presence (RFC 6121): rosters with versioning, subscriptions (pending ones
// stored), presence broadcast and probes, delivery by priority, and offline messages (XEP-0160).
// One module where Prosody has four (roster, presence, message, offline): they share the roster
// and the presence state at every step, and none is useful without the others.

/** A contact in a user's roster (RFC 6121 §2.1.2). */
export interface RosterItem {
  /** The contact's bare JID. */
  jid: string;
  name?: string;
  subscription: 'none' | 'to' | 'from' | 'both';
  /** An outbound subscription request is pending. */
  ask?: 'subscribe';
  groups: string[];
}

interface StoredRoster {
  version: number;
  items: RosterItem[];
}

export interface ImOptions {
  /** Offline messages kept per account; past it the sender gets `<service-unavailable/>`. Default 100. */
  offlineLimit?: number;
  /** Contacts per roster; past it an add gets `<resource-constraint/>`. Default 1000. */
  rosterLimit?: number;
  /** Subscription requests kept for an offline account. Default 100. */
  pendingLimit?: number;
}

const SUBSCRIPTION_TYPES = new Set(['subscribe', 'subscribed', 'unsubscribe', 'unsubscribed']);
type SubscriptionType = 'subscribe' | 'subscribed' | 'unsubscribe' | 'unsubscribed';

/** RFC 6121 instant messaging and presence: rosters, subscriptions, presence, delivery, offline storage. */
export function im(options: ImOptions = {}): XmppModule {
  return {
    name: 'im',
    setup(api) {
      new Im(api, {
        offlineLimit: options.offlineLimit ?? 100,
        rosterLimit: options.rosterLimit ?? 1000,
        pendingLimit: options.pendingLimit ?? 100,
      });
    },
  };
}

class Im {
  readonly #api: ModuleApi;
  readonly #options: Required<ImOptions>;
  readonly #rosters: KeyValueStore;
  /**
   * Per-user serialisation of roster writes on this process (fewer lost races); against other processes
   * sharing the store, each write is a compare-and-set (updateValue).
   */
  readonly #locks = new Map<string, Promise<unknown>>();

  constructor(api: ModuleApi, options: Required<ImOptions>) {
    this.#api = api;
    this.#options = options;
    this.#rosters = api.keyValue('roster');
    api.iq({ xmlns: NS_ROSTER, element: 'query', to: 'self' }, (iq, context) => this.#roster(iq, context.session));
    api.streamFeature('bind', () => xml('ver', { xmlns: NS_ROSTER_VER }));
    // The defaults: after every other module's hooks.
    api.hook('presence/bare', (event) => this.#presence(event), -1000);
    api.hook('presence/full', (event) => this.#presence(event), -1000);
    api.hook('presence/host', () => true, -1000);
    api.hook('message/bare', (event) => this.#messageToBare(event, event.to), -1000);
    api.hook('message/full', (event) => this.#messageToFull(event), -1000);
    api.hook('message/offline', (event) => this.#offline(event), -1000);
    api.hook('session/closed', (event) => this.#gone(event.session), -1000);
    api.hook('account/deleted', async ({ user }) => {
      // The account's subscriptions end with it (XEP-0077 §3.2): its contacts' rosters follow.
      const own = `${user}@${api.domain}`;
      for (const item of await this.#items(user)) {
        if (item.subscription === 'to' || item.subscription === 'both') await this.#deliverSubscription(own, item.jid, 'unsubscribe');
        if (item.subscription === 'from' || item.subscription === 'both') await this.#deliverSubscription(own, item.jid, 'unsubscribed');
      }
      await this.#rosters.clear(user);
      await api.archive('offline').delete(user);
    });
  }

  get #domain(): string {
    return this.#api.domain;
  }

  // ---- roster ----------------------------------------------------------------------------------

  async #load(user: string): Promise<StoredRoster> {
    const stored = (await this.#rosters.get(user, 'roster')) as unknown as StoredRoster | undefined;
    return stored ?? { version: 0, items: [] };
  }

  async #items(user: string): Promise<RosterItem[]> {
    return (await this.#load(user)).items;
  }

  /** Run a read-modify-write of one user's roster alone. */
  #locked<T>(user: string, work: () => Promise<T>): Promise<T> {
    const previous = this.#locks.get(user) ?? Promise.resolve();
    const next = previous.then(work, work);
    const settled = next.then(
      () => undefined,
      () => undefined,
    );
    this.#locks.set(user, settled);
    settled.then(() => {
      if (this.#locks.get(user) === settled) this.#locks.delete(user);
    });
    return next;
  }

  /** Add, update (`item`) or remove (`remove`) one contact; returns the new version, or undefined if nothing changed. */
  async #write(user: string, jid: string, item: RosterItem | undefined): Promise<string | undefined> {
    return this.#locked(user, async () => {
      let changed = false;
      const written = await updateValue<StoredRoster>(this.#rosters, user, 'roster', (stored) => {
        changed = false;
        const roster = stored ?? { version: 0, items: [] };
        const index = roster.items.findIndex((existing) => existing.jid === jid);
        if (item === undefined) {
          if (index === -1) return stored;
          roster.items.splice(index, 1);
        } else if (index === -1) {
          if (roster.items.length >= this.#options.rosterLimit) throw new StanzaErrorException('resource-constraint', 'the roster is full');
          roster.items.push(item);
        } else {
          roster.items[index] = item;
        }
        roster.version++;
        changed = true;
        return roster;
      });
      return changed && written !== undefined ? String(written.version) : undefined;
    });
  }

  /** `<iq><query xmlns='jabber:iq:roster'/></iq>` from the user (RFC 6121 §2). */
  async #roster(iq: XmlElement, session: XmppSession | undefined): Promise<XmlElement | undefined> {
    if (session?.user === undefined || session.jid === undefined) throw new StanzaErrorException('service-unavailable');
    const user = session.user;
    const own = session.jid.bare;
    const query = iq.getChild('query', NS_ROSTER) as XmlElement;
    if (iq.attr('type') === 'get') {
      presenceState.get(session).interested = true;
      const roster = await this.#load(user);
      const version = String(roster.version);
      // Roster versioning: an up-to-date client gets an empty result (RFC 6121 §2.6.3).
      if (query.attr('ver') !== undefined && query.attr('ver') === version) return undefined;
      return xml('query', { xmlns: NS_ROSTER, ver: version }, ...roster.items.map(itemElement));
    }
    const items = query.getChildren('item');
    const item = items[0];
    const contact = item === undefined ? undefined : Jid.parse(item.attr('jid') ?? '');
    if (items.length !== 1 || item === undefined || contact === undefined || contact.bare === own) {
      throw new StanzaErrorException('bad-request', 'one item with a JID other than your own');
    }
    const bare = contact.toBare().toString();
    const current = (await this.#items(user)).find((existing) => existing.jid === bare);
    if (item.attr('subscription') === 'remove') {
      if (current !== undefined) {
        // Removing a contact cancels both subscriptions (RFC 6121 §2.5.2).
        if (current.subscription === 'to' || current.subscription === 'both') await this.#deliverSubscription(own, bare, 'unsubscribe');
        if (current.subscription === 'from' || current.subscription === 'both') await this.#deliverSubscription(own, bare, 'unsubscribed');
        const version = await this.#write(user, bare, undefined);
        if (version !== undefined) this.#push(own, xml('item', { jid: bare, subscription: 'remove' }), version);
      }
      return undefined;
    }
    const name = item.attr('name');
    const groups = item.getChildren('group').map((group) => group.text());
    // Bounded: every roster is loaded at each presence broadcast.
    if ((name?.length ?? 0) > 1023 || groups.length > 100 || groups.some((group) => group.length === 0 || group.length > 1023)) {
      throw new StanzaErrorException('not-acceptable', 'names and groups are 1–1023 characters, at most 100 groups');
    }
    await this.#save(user, {
      jid: bare,
      name,
      groups,
      subscription: current?.subscription ?? 'none',
      ask: current?.ask,
    });
    return undefined;
  }

  async #save(user: string, item: RosterItem): Promise<void> {
    const version = await this.#write(user, item.jid, item);
    if (version !== undefined) this.#push(`${user}@${this.#domain}`, itemElement(item), version);
  }

  /** Roster push to every interested resource (RFC 6121 §2.1.6). */
  #push(bare: string, item: XmlElement, version: string): void {
    for (const session of this.#api.sessionsOf(bare)) {
      if (presenceState.peek(session)?.interested !== true) continue;
      session.send(
        xml(
          'iq',
          { type: 'set', id: `push${Math.random().toString(36).slice(2)}`, to: session.jid?.toString() },
          xml('query', { xmlns: NS_ROSTER, ver: version }, item),
        ),
      );
    }
  }

  // ---- presence --------------------------------------------------------------------------------

  /** A presence stanza to a local account (from its own client, or routed by the server). */
  async #presence(event: StanzaEvent): Promise<boolean> {
    const { stanza: presence, session, to } = event;
    const type = presence.attr('type');
    const fromClient = session !== undefined && session.jid !== undefined;
    const addressed = presence.attr('to') !== undefined;
    if (fromClient && type !== undefined && SUBSCRIPTION_TYPES.has(type)) {
      if (!addressed) throw new StanzaErrorException('bad-request', 'a subscription request needs a to address');
      await this.#subscription(session, type as SubscriptionType, to.toBare());
      return true;
    }
    if (type === 'probe') return true; // probes come from servers, not clients
    if (fromClient && !addressed) {
      await this.#ownPresence(session, presence, type);
      return true;
    }
    // Directed presence: delivered as it is (addressed as the sender addressed it).
    for (const target of this.#targets(to)) target.send(presence);
    return true;
  }

  async #ownPresence(session: XmppSession, presence: XmlElement, type: string | undefined): Promise<void> {
    const state = presenceState.get(session);
    if (type === 'unavailable') {
      state.available = false;
      state.last = undefined;
      await this.#broadcast(session, presence);
      return;
    }
    if (type !== undefined && type !== 'available') throw new StanzaErrorException('bad-request', `presence of type ${type}`);
    const first = !state.available;
    state.available = true;
    state.priority = clampPriority(presence.getChildText('priority'));
    state.last = presence;
    await this.#broadcast(session, presence);
    if (first) await this.#initial(session);
  }

  /** The session went away: contacts see it unavailable (RFC 6121 §4.6.3). */
  async #gone(session: XmppSession): Promise<void> {
    const state = presenceState.peek(session);
    if (state?.available !== true || session.jid === undefined) return;
    state.available = false;
    await this.#broadcast(session, xml('presence', { type: 'unavailable', from: session.jid.toString() }));
  }

  /** After the first available presence: probe contacts, deliver pending requests and offline messages. */
  async #initial(session: XmppSession): Promise<void> {
    const user = session.user as string;
    const from = session.jid as Jid;
    for (const item of await this.#items(user)) {
      // The contacts this user is subscribed to: their current presence (RFC 6121 §4.3).
      if (item.subscription === 'to' || item.subscription === 'both') {
        for (const contact of this.#api.sessionsOf(item.jid)) {
          const last = presenceState.peek(contact)?.last;
          // A copy addressed to this session: the stored presence itself is never readdressed.
          if (presenceState.peek(contact)?.available === true && last !== undefined)
            this.#deliverStored(session, last, 'presence', from.toString());
        }
      }
    }
    // Subscription requests that arrived while offline (RFC 6121 §3.1.3).
    let pending: string[] = [];
    await updateValue<string[]>(this.#rosters, user, 'pending', (stored) => {
      pending = stored ?? [];
      return undefined;
    });
    for (const text of pending) {
      const request = parseXml(text);
      if (request !== undefined) this.#deliverStored(session, request, 'subscription request');
    }
    // Offline messages, oldest first; deleted once handed to the session.
    const offline = this.#api.archive('offline');
    const stored = await offline.query(user);
    for (const item of stored.items) {
      const message = parseXml(item.xml);
      if (message !== undefined) this.#deliverStored(session, message, 'offline message');
      else this.#api.logger.warn({ jid: from.toString(), id: item.id }, 'stored offline message is corrupt: dropped');
    }
    if (stored.items.length > 0) await offline.delete(user, { ids: stored.items.map((item) => item.id) });
    // Modules that act on a session's first available presence (PEP's last items, …).
    await this.#api.fire('presence/initial', { session });
  }

  /**
   * Deliver one stored stanza (offline message, pending request, a contact's last presence): one
   * that cannot be sent is logged and dropped, and never stops the ones behind it.
   */
  #deliverStored(session: XmppSession, stanza: XmlElement, what: string, to?: string): void {
    try {
      session.send(to === undefined ? stanza : stanza.with({ to }));
    } catch (error) {
      this.#api.logger.warn({ err: error, jid: session.jid?.toString() }, `stored ${what} could not be delivered: dropped`);
    }
  }

  /** Send a user's presence to their subscribers and own other resources (RFC 6121 §4.2.2, §4.4.2). */
  async #broadcast(session: XmppSession, presence: XmlElement): Promise<void> {
    const from = session.jid as Jid;
    // Each copy is addressed to its recipient (RFC 6121 §4.2.2): no recipient sees another's address.
    for (const item of await this.#items(session.user as string)) {
      if (item.subscription !== 'from' && item.subscription !== 'both') continue;
      for (const { session: contact } of this.#api.availableSessionsOf(item.jid)) {
        contact.send(presence.with({ to: contact.jid?.toString() }));
      }
    }
    for (const { session: own } of this.#api.availableSessionsOf(from.bare)) {
      if (own !== session) own.send(presence.with({ to: own.jid?.toString() }));
    }
  }

  async #subscription(session: XmppSession, type: SubscriptionType, contact: Jid): Promise<void> {
    const user = session.user as string;
    const own = (session.jid as Jid).bare;
    const bare = contact.toString();
    if (bare === own) return;
    const item = (await this.#items(user)).find((existing) => existing.jid === bare) ?? {
      jid: bare,
      subscription: 'none' as const,
      groups: [],
    };
    // The user's own roster (RFC 6121 §3.1.2, §3.2.2, §3.3.2, §3.4.2).
    if (type === 'subscribe' && item.subscription !== 'to' && item.subscription !== 'both')
      await this.#save(user, { ...item, ask: 'subscribe' });
    if (type === 'unsubscribe')
      await this.#save(user, {
        ...item,
        ask: undefined,
        subscription: item.subscription === 'both' ? 'from' : item.subscription === 'to' ? 'none' : item.subscription,
      });
    if (type === 'subscribed' && (item.subscription === 'none' || item.subscription === 'to')) {
      await this.#save(user, { ...item, subscription: item.subscription === 'to' ? 'both' : 'from' });
    }
    if (type === 'unsubscribed')
      await this.#save(user, {
        ...item,
        subscription: item.subscription === 'both' ? 'to' : item.subscription === 'from' ? 'none' : item.subscription,
      });
    await this.#deliverSubscription(own, bare, type);
    // Approving sends the approver's current presence (RFC 6121 §3.1.5); revoking, unavailable.
    if (type === 'subscribed' || type === 'unsubscribed') {
      for (const { session: mine } of this.#api.availableSessionsOf(own)) {
        const last = presenceState.peek(mine)?.last;
        const presence =
          type === 'subscribed' && last !== undefined ? last : xml('presence', { type: 'unavailable', from: mine.jid?.toString() });
        for (const target of this.#targets(contact)) target.send(presence.with({ to: target.jid?.toString() }));
      }
    }
  }

  /** Deliver a subscription stanza to the contact's side and update the contact's roster. */
  async #deliverSubscription(fromBare: string, toBare: string, type: SubscriptionType): Promise<void> {
    const to = Jid.parse(toBare);
    if (to === undefined || to.domain !== this.#domain || !(await this.#api.userExists(to.local))) return;
    const stanza = xml('presence', { type, from: fromBare, to: toBare });
    const theirs = (await this.#items(to.local)).find((existing) => existing.jid === fromBare);
    if (type === 'subscribe') {
      // Already subscribed: answer for the contact (RFC 6121 §3.1.3).
      if (theirs?.subscription === 'from' || theirs?.subscription === 'both')
        return this.#deliverSubscription(toBare, fromBare, 'subscribed');
      const available = this.#api.availableSessionsOf(toBare);
      if (available.length === 0) {
        // Kept for the contact's next login, in the store (survives a restart).
        await this.#locked(to.local, () =>
          updateValue<string[]>(this.#rosters, to.local, 'pending', (stored) => {
            const pending = stored ?? [];
            if (pending.length >= this.#options.pendingLimit || pending.some((text) => parseXml(text)?.attr('from') === fromBare))
              return stored;
            pending.push(stanza.toString());
            return pending;
          }),
        );
      }
      for (const { session: target } of available) target.send(stanza);
      return;
    }
    if (theirs === undefined) return;
    if (type === 'subscribed') {
      if (theirs.ask !== 'subscribe' && theirs.subscription !== 'none' && theirs.subscription !== 'from') return;
      await this.#save(to.local, { ...theirs, ask: undefined, subscription: theirs.subscription === 'from' ? 'both' : 'to' });
    } else if (type === 'unsubscribed') {
      await this.#save(to.local, {
        ...theirs,
        ask: undefined,
        subscription: theirs.subscription === 'both' ? 'from' : theirs.subscription === 'to' ? 'none' : theirs.subscription,
      });
    } else {
      await this.#save(to.local, {
        ...theirs,
        subscription: theirs.subscription === 'both' ? 'to' : theirs.subscription === 'from' ? 'none' : theirs.subscription,
      });
    }
    for (const { session: target } of this.#api.availableSessionsOf(toBare)) target.send(stanza);
  }

  // ---- messages ---------------------------------------------------------------------------------

  /** A message to a full JID: to that session, else as if to the bare JID (RFC 6121 §8.5.3.2.1). */
  async #messageToFull(event: StanzaEvent): Promise<boolean> {
    const target = this.#api.sessionOf(event.to.toString());
    if (target !== undefined) {
      target.send(event.stanza);
      await this.#delivered(event, [target]);
      return true;
    }
    const type = event.stanza.attr('type') ?? 'normal';
    // groupchat and headline to an unavailable resource are dropped; errors too (§8.5.3.2.1).
    if (type === 'groupchat' || type === 'headline' || type === 'error') return true;
    return this.#messageToBare(event, event.to.toBare());
  }

  /**
   * A message to a user's bare JID (or to an unavailable full JID): to the available resources of
   * highest non-negative priority, else offline storage, else bounced (RFC 6121 §8.5.2).
   */
  async #messageToBare(event: StanzaEvent, to: Jid): Promise<boolean> {
    const message = event.stanza;
    const type = message.attr('type') ?? 'normal';
    const available = this.#api.availableSessionsOf(to.bare).filter((entry) => entry.priority >= 0);
    if (available.length > 0) {
      // A headline goes to every available resource; anything else to those of the highest priority.
      const top = Math.max(...available.map((entry) => entry.priority));
      const targets = available.filter((entry) => type === 'headline' || entry.priority === top).map((entry) => entry.session);
      for (const target of targets) target.send(message);
      await this.#delivered(event, targets);
      return true;
    }
    if (!(await this.#api.userExists(to.local))) throw new StanzaErrorException('service-unavailable');
    if (type === 'groupchat' || type === 'headline' || type === 'error') return true;
    if (!(await this.#api.fire('message/offline', { ...event, to }))) throw new StanzaErrorException('service-unavailable');
    return true;
  }

  async #delivered(event: StanzaEvent, targets: XmppSession[]): Promise<void> {
    await this.#api.fire('message/delivered', { ...event, targets });
  }

  /** Offline storage (XEP-0160): stored with the time it arrived (XEP-0203), delivered at the next login. */
  async #offline(event: StanzaEvent): Promise<boolean> {
    const user = event.to.local;
    const offline = this.#api.archive('offline');
    const message = event.stanza.with({ to: event.to.bare });
    if (message.getChild('delay', NS_DELAY) === undefined) {
      message.append(xml('delay', { xmlns: NS_DELAY, from: this.#domain, stamp: new Date().toISOString() }));
    }
    const { count } = await offline.query(user, { max: 0 });
    if (count >= this.#options.offlineLimit)
      throw new StanzaErrorException('service-unavailable', 'the recipient has too many offline messages');
    await offline.append(user, { id: randomId(), when: Date.now(), with: event.from.bare, xml: message.toString() });
    return true;
  }

  #targets(to: Jid): XmppSession[] {
    const sessions = this.#api.sessionsOf(to.bare);
    return to.isBare ? sessions : sessions.filter((s) => s.jid?.resource === to.resource);
  }
}

function randomId(): string {
  return `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 10)}`;
}

function itemElement(item: RosterItem): XmlElement {
  return xml(
    'item',
    { jid: item.jid, name: item.name, subscription: item.subscription, ask: item.ask },
    ...item.groups.map((group) => xml('group', {}, group)),
  );
}

/** Presence priority: an integer from -128 to 127 (RFC 6121 §4.7.2.3); 0 when absent or invalid. */
function clampPriority(text: string | undefined): number {
  if (text === undefined) return 0;
  const value = Number.parseInt(text.trim(), 10);
  if (!Number.isFinite(value)) return 0;
  return Math.max(-128, Math.min(127, value));
}
