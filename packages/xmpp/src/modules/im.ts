import type { Logger } from '@portbind/core';
import { type XmlElement, xml } from './element.js';
import { Jid } from './jid.js';
import type { Session } from './session.js';
import type { OfflineStore, RosterItem, RosterStore } from './stores.js';

// Instant messaging and presence (RFC 6121): rosters, subscriptions, presence broadcast,
// delivery to bare JIDs by priority, and offline messages.

export const NS_ROSTER = 'jabber:iq:roster';
export const NS_DELAY = 'urn:xmpp:delay';

/** What the IM module needs from the server. */
export interface ImHost {
  readonly domain: string;
  readonly logger: Logger;
  readonly rosters: RosterStore;
  readonly offline: OfflineStore;
  /** Bound sessions of a bare JID. */
  sessionsOf(bare: string): Session[];
  /** Whether an account exists (a localpart of this domain). */
  userExists(user: string): Promise<boolean>;
  /** Deliver a message to sessions (with message carbons). */
  deliverMessage(sender: Session, message: XmlElement, targets: Session[]): void;
  /** Answer a stanza with a stanza error. */
  bounce(
    session: Session,
    stanza: XmlElement,
    condition: 'service-unavailable' | 'bad-request' | 'not-allowed' | 'resource-constraint',
  ): void;
}

/** Per-session presence state, kept on the session. */
interface PresenceState {
  available: boolean;
  priority: number;
  /** The last broadcast available presence, resent to contacts who probe. */
  last?: XmlElement;
  /** The client asked for the roster: it gets roster pushes (RFC 6121 §2.1.6). */
  interested: boolean;
}

export function presenceOf(session: Session): PresenceState {
  let state = session.state.presence as PresenceState | undefined;
  if (state === undefined) {
    state = { available: false, priority: 0, interested: false };
    session.state.presence = state;
  }
  return state;
}

const SUBSCRIPTION_TYPES = new Set(['subscribe', 'subscribed', 'unsubscribe', 'unsubscribed']);

export class Im {
  readonly #host: ImHost;
  /** Subscription requests waiting for a user to come online, by bare JID (at most 100 each). */
  readonly #pending = new Map<string, XmlElement[]>();

  constructor(host: ImHost) {
    this.#host = host;
  }

  // ---- roster ----------------------------------------------------------------------------------

  /** `<iq><query xmlns='jabber:iq:roster'/></iq>` from the user (RFC 6121 §2). */
  async roster(session: Session, iq: XmlElement): Promise<void> {
    const user = session.user as string;
    const own = (session.jid as Jid).bare;
    const query = iq.getChild('query', NS_ROSTER) as XmlElement;
    const type = iq.attr('type');
    if (type === 'get') {
      presenceOf(session).interested = true;
      const roster = await this.#host.rosters.get(user);
      // Roster versioning: an up-to-date client gets an empty result (RFC 6121 §2.6.3).
      if (query.attr('ver') !== undefined && query.attr('ver') === roster.version) {
        session.send(xml('iq', { type: 'result', id: iq.attr('id'), to: iq.attr('from') }));
        return;
      }
      session.send(
        xml(
          'iq',
          { type: 'result', id: iq.attr('id'), to: iq.attr('from') },
          xml('query', { xmlns: NS_ROSTER, ver: roster.version }, ...roster.items.map(itemElement)),
        ),
      );
      return;
    }
    if (type !== 'set') return this.#host.bounce(session, iq, 'bad-request');
    const items = query.getChildren('item');
    const item = items[0];
    const contact = item === undefined ? undefined : Jid.parse(item.attr('jid') ?? '');
    if (items.length !== 1 || item === undefined || contact === undefined || contact.bare === own)
      return this.#host.bounce(session, iq, 'bad-request');
    const bare = contact.toBare().toString();
    const current = await this.#item(user, bare);
    if (item.attr('subscription') === 'remove') {
      if (current !== undefined) {
        // Removing a contact cancels both subscriptions (RFC 6121 §2.5.2).
        if (current.subscription === 'to' || current.subscription === 'both') await this.#deliverSubscription(own, bare, 'unsubscribe');
        if (current.subscription === 'from' || current.subscription === 'both') await this.#deliverSubscription(own, bare, 'unsubscribed');
        const version = await this.#host.rosters.remove(user, bare);
        this.#push(own, xml('item', { jid: bare, subscription: 'remove' }), version);
      }
      session.send(xml('iq', { type: 'result', id: iq.attr('id'), to: iq.attr('from') }));
      return;
    }
    const updated: RosterItem = {
      jid: bare,
      name: item.attr('name'),
      groups: item.getChildren('group').map((group) => group.text()),
      subscription: current?.subscription ?? 'none',
      ask: current?.ask,
    };
    await this.#save(user, updated);
    session.send(xml('iq', { type: 'result', id: iq.attr('id'), to: iq.attr('from') }));
  }

  // ---- presence --------------------------------------------------------------------------------

  /** A presence stanza from a bound session. */
  async presence(session: Session, presence: XmlElement, to: Jid | undefined): Promise<void> {
    const type = presence.attr('type');
    const from = session.jid as Jid;
    if (type !== undefined && SUBSCRIPTION_TYPES.has(type)) {
      if (to === undefined) return this.#host.bounce(session, presence, 'bad-request');
      return this.#subscription(session, type as 'subscribe' | 'subscribed' | 'unsubscribe' | 'unsubscribed', to.toBare());
    }
    if (type === 'probe') return; // probes come from servers, not clients
    if (to !== undefined) {
      // Directed presence: delivered as it is (addressed as the sender addressed it).
      for (const target of this.#targets(to)) target.send(presence);
      return;
    }
    const state = presenceOf(session);
    if (type === 'unavailable') {
      state.available = false;
      state.last = undefined;
      await this.#broadcast(session, presence);
      return;
    }
    if (type !== undefined && type !== 'available') return this.#host.bounce(session, presence, 'bad-request');
    const first = !state.available;
    state.available = true;
    state.priority = clampPriority(presence.getChildText('priority'));
    state.last = presence;
    await this.#broadcast(session, presence);
    if (first) await this.#initial(session, from);
  }

  /** The session went away: contacts see it unavailable (RFC 6121 §4.6.3). */
  async gone(session: Session): Promise<void> {
    const state = presenceOf(session);
    if (!state.available || session.jid === undefined) return;
    state.available = false;
    await this.#broadcast(session, xml('presence', { type: 'unavailable', from: session.jid.toString() }));
  }

  // ---- messages to a bare JID ------------------------------------------------------------------

  /**
   * A message to a user's bare JID (or to an unavailable full JID): to the available resources of
   * highest non-negative priority, else stored offline, else bounced (RFC 6121 §8.5.2).
   */
  async messageToBare(session: Session, message: XmlElement, to: Jid): Promise<void> {
    const available = this.#host.sessionsOf(to.bare).filter((s) => presenceOf(s).available && presenceOf(s).priority >= 0);
    if (available.length > 0) {
      const top = Math.max(...available.map((s) => presenceOf(s).priority));
      this.#host.deliverMessage(
        session,
        message,
        available.filter((target) => presenceOf(target).priority === top),
      );
      return;
    }
    if (!(await this.#host.userExists(to.local))) return this.#host.bounce(session, message, 'service-unavailable');
    const type = message.attr('type') ?? 'normal';
    if (type === 'groupchat' || type === 'headline' || type === 'error') return;
    // Delivered later with the time it arrived (XEP-0203).
    message.setAttr('to', to.bare).append(xml('delay', { xmlns: NS_DELAY, from: this.#host.domain, stamp: new Date().toISOString() }));
    const stored = await this.#host.offline.push(to.local, message);
    if (!stored) this.#host.bounce(session, message, 'service-unavailable');
  }

  // ---- internals -------------------------------------------------------------------------------

  /** After the first available presence: probe contacts, deliver pending requests and offline messages. */
  async #initial(session: Session, from: Jid): Promise<void> {
    const user = session.user as string;
    const roster = await this.#host.rosters.get(user);
    for (const item of roster.items) {
      // The contacts this user is subscribed to: their current presence (RFC 6121 §4.3).
      if (item.subscription === 'to' || item.subscription === 'both') {
        for (const contact of this.#host.sessionsOf(item.jid)) {
          const last = presenceOf(contact).last;
          // A copy addressed to this session: the stored presence itself is never readdressed.
          if (presenceOf(contact).available && last !== undefined) this.#deliverStored(session, last, 'presence', from.toString());
        }
      }
    }
    // Subscription requests that arrived while offline (RFC 6121 §3.1.3).
    const pendingRequests = this.#pending.get(from.bare) ?? [];
    this.#pending.delete(from.bare);
    for (const request of pendingRequests) this.#deliverStored(session, request, 'subscription request');
    for (const message of await this.#host.offline.take(user)) this.#deliverStored(session, message, 'offline message');
  }

  /**
   * Deliver one stored stanza (offline message, pending request, a contact's last presence): one
   * that cannot be sent is logged and dropped, and never stops the ones behind it.
   */
  #deliverStored(session: Session, stanza: XmlElement, what: string, to?: string): void {
    try {
      session.send(to === undefined ? stanza : stanza.with({ to }));
    } catch (error) {
      this.#host.logger.warn({ err: error, jid: session.jid?.toString() }, `stored ${what} could not be delivered: dropped`);
    }
  }

  /** Send a user's presence to their subscribers and own other resources (RFC 6121 §4.2.2, §4.4.2). */
  async #broadcast(session: Session, presence: XmlElement): Promise<void> {
    const from = session.jid as Jid;
    const roster = await this.#host.rosters.get(session.user as string);
    // Each copy is addressed to its recipient (RFC 6121 §4.2.2): no recipient sees another's address.
    for (const item of roster.items) {
      if (item.subscription !== 'from' && item.subscription !== 'both') continue;
      for (const contact of this.#host.sessionsOf(item.jid)) {
        if (presenceOf(contact).available) contact.send(presence.with({ to: contact.jid?.toString() }));
      }
    }
    for (const own of this.#host.sessionsOf(from.bare)) {
      if (own !== session && presenceOf(own).available) own.send(presence.with({ to: own.jid?.toString() }));
    }
  }

  async #subscription(session: Session, type: 'subscribe' | 'subscribed' | 'unsubscribe' | 'unsubscribed', contact: Jid): Promise<void> {
    const user = session.user as string;
    const own = (session.jid as Jid).bare;
    const bare = contact.toString();
    if (bare === own) return;
    const item = (await this.#item(user, bare)) ?? { jid: bare, subscription: 'none' as const, groups: [] };
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
      for (const mine of this.#host.sessionsOf(own)) {
        const state = presenceOf(mine);
        if (!state.available) continue;
        const presence =
          type === 'subscribed' && state.last !== undefined
            ? state.last
            : xml('presence', { type: 'unavailable', from: mine.jid?.toString() });
        for (const target of this.#targets(contact)) target.send(presence.with({ to: target.jid?.toString() }));
      }
    }
  }

  /** Deliver a subscription stanza to the contact's side and update the contact's roster. */
  async #deliverSubscription(
    fromBare: string,
    toBare: string,
    type: 'subscribe' | 'subscribed' | 'unsubscribe' | 'unsubscribed',
  ): Promise<void> {
    const to = Jid.parse(toBare);
    if (to === undefined || to.domain !== this.#host.domain || !(await this.#host.userExists(to.local))) return;
    const stanza = xml('presence', { type, from: fromBare, to: toBare });
    const theirs = await this.#item(to.local, fromBare);
    if (type === 'subscribe') {
      // Already subscribed: answer for the contact (RFC 6121 §3.1.3).
      if (theirs?.subscription === 'from' || theirs?.subscription === 'both')
        return this.#deliverSubscription(toBare, fromBare, 'subscribed');
      const available = this.#host.sessionsOf(toBare).filter((s) => presenceOf(s).available);
      if (available.length === 0) {
        const list = this.#pending.get(toBare) ?? [];
        if (list.length < 100 && !list.some((p) => p.attr('from') === fromBare)) list.push(stanza);
        this.#pending.set(toBare, list);
      }
      for (const target of available) target.send(stanza);
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
    for (const target of this.#host.sessionsOf(toBare)) if (presenceOf(target).available) target.send(stanza);
  }

  async #item(user: string, bare: string): Promise<RosterItem | undefined> {
    return (await this.#host.rosters.get(user)).items.find((item) => item.jid === bare);
  }

  async #save(user: string, item: RosterItem): Promise<void> {
    const version = await this.#host.rosters.set(user, item);
    this.#push(`${user}@${this.#host.domain}`, itemElement(item), version);
  }

  /** Roster push to every interested resource (RFC 6121 §2.1.6). */
  #push(bare: string, item: XmlElement, version: string): void {
    for (const session of this.#host.sessionsOf(bare)) {
      if (!presenceOf(session).interested) continue;
      session.send(
        xml(
          'iq',
          { type: 'set', id: `push${Math.random().toString(36).slice(2)}`, to: session.jid?.toString() },
          xml('query', { xmlns: NS_ROSTER, ver: version }, item),
        ),
      );
    }
  }

  #targets(to: Jid): Session[] {
    const sessions = this.#host.sessionsOf(to.bare);
    return to.isBare ? sessions : sessions.filter((s) => s.jid?.resource === to.resource);
  }
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
