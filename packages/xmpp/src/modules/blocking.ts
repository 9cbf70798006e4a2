// Blocking Command (XEP-0191 v1.3), the size of Prosody's mod_blocklist: a user's list of blocked
// JIDs, kept in the 'blocklist' key-value store; stanzas from a blocked JID never reach the user,
// stanzas the user sends to one are refused with <not-acceptable/> and <blocked/>.

import { randomUUID } from 'node:crypto';
import { type XmlElement, xml } from '../element.js';
import { presenceState, sessionState } from '../host.js';
import { Jid } from '../jid.js';
import type { ModuleApi, StanzaEvent, XmppModule } from '../module.js';
import { NS_BLOCKING, NS_BLOCKING_ERRORS } from '../namespaces.js';
import type { XmppSession } from '../session.js';
import { StanzaErrorException, stanzaError } from '../stanza-error.js';
import type { JsonValue } from '../stores/types.js';
import { updateValue } from '../stores/update.js';

/** A contact's presence subscription in a user's roster (RFC 6121 §2.1.2.5). */
export type PresenceSubscription = 'none' | 'to' | 'from' | 'both';

/** Looks up `contactBare`'s subscription in `user`'s roster. */
export type SubscriptionLookup = (user: string, contactBare: string) => PresenceSubscription | Promise<PresenceSubscription>;

export interface BlockingOptions {
  /** The most JIDs one block list holds (a block past it is refused with `<policy-violation/>`). Default 1000. */
  maxItems?: number;
  /** Block lists of accounts without a session kept in memory (least recently used dropped first); those of online accounts always are. Default 10000. */
  cacheSize?: number;
  /**
   * Whether a contact may see the user's presence, for the unavailable presence sent on block
   * (§3.3). Default: the account's roster (`api.subscription`).
   */
  subscription?: SubscriptionLookup;
}

const STORE_KEY = 'jids';
/** The cluster topic naming a user whose block list changed on another process. */
const CLUSTER_TOPIC = 'blocking';

/**
 * Whether a session retrieved its block list, so gets the block and unblock pushes (§3.3, §3.5).
 * One state for every server (it lives in each session), so that the cluster directory publishes
 * it and mirrors it on the sessions of other processes, like carbonsState.
 */
export const blockingPushState = sessionState<{ pushes: boolean }>(() => ({ pushes: false }));

/**
 * XEP-0191 blocking: `urn:xmpp:blocking` on the server's disco#info; `<blocklist/>`, `<block/>`,
 * `<unblock/>` on the user's own JID; pushes to each resource that asked for the list.
 */
export function blocking(options: BlockingOptions = {}): XmppModule {
  const maxItems = options.maxItems ?? 1000;
  const cacheSize = options.cacheSize ?? 10_000;
  return {
    name: 'blocking',
    setup(api) {
      const store = api.keyValue('blocklist');
      const subscription = options.subscription ?? defaultSubscription(api);
      // Resources that retrieved the list get pushes (§3.3, §3.5).
      const interested = blockingPushState;
      // Lists in memory (a list changes only through this module, so they stay true; on several
      // processes, the others say which user's changed and it is read again): those of
      // accounts with a session, pinned (the outbound filter reads them synchronously), and
      // others recently used, least recently used first.
      const pinned = new Map<string, Set<string>>();
      const recent = new Map<string, Set<string>>();
      // Edits of one user's list run one after another (two resources may block at once).
      const edits = new Map<string, Promise<unknown>>();

      /** On several processes: listening to the others' changes before anything is kept. */
      let listening = false;
      function listen(): void {
        const cluster = listening ? undefined : api.server.cluster;
        if (cluster === undefined) return;
        listening = true;
        api.onStop(
          cluster.listen(CLUSTER_TOPIC, (user) => {
            if (user !== undefined) return void reload(user);
            // Changes may have been missed (the bus was away): the pinned lists are read again, the others dropped.
            recent.clear();
            for (const pinnedUser of [...pinned.keys()]) void reload(pinnedUser);
          }),
        );
      }

      /** Another process changed the list: read it again, into the same set (synchronous readers keep theirs). */
      function reload(user: string): Promise<void> {
        if (inMemory(user) === undefined) return Promise.resolve();
        return serialized(user, async () => {
          const list = inMemory(user);
          if (list === undefined) return;
          const stored = await store.get(user, STORE_KEY);
          list.clear();
          if (Array.isArray(stored)) for (const jid of stored) if (typeof jid === 'string') list.add(jid);
        }).catch((error: unknown) => api.logger.warn({ err: error, user }, 'blocking: a block list changed elsewhere could not be read'));
      }

      function inMemory(user: string): Set<string> | undefined {
        return pinned.get(user) ?? recent.get(user);
      }

      function remember(user: string, list: Set<string>): void {
        if (api.sessionsOf(`${user}@${api.domain}`).length > 0) {
          recent.delete(user);
          pinned.set(user, list);
          return;
        }
        pinned.delete(user);
        recent.delete(user);
        recent.set(user, list);
        if (recent.size > cacheSize) recent.delete(recent.keys().next().value as string);
      }

      async function listOf(user: string): Promise<Set<string>> {
        listen();
        const known = inMemory(user);
        if (known !== undefined) {
          if (recent.has(user)) remember(user, known);
          return known;
        }
        const stored = await store.get(user, STORE_KEY);
        // Another load may have finished meanwhile: keep the first, so that edits see one set.
        const raced = inMemory(user);
        if (raced !== undefined) return raced;
        const list = new Set(Array.isArray(stored) ? stored.filter((jid): jid is string => typeof jid === 'string') : []);
        remember(user, list);
        return list;
      }

      /** Whether `user` blocked `jid`: synchronous when the list is in memory (every routed stanza asks). */
      function isBlocked(user: string, jid: Jid): boolean | Promise<boolean> {
        const list = inMemory(user);
        return list === undefined ? listOf(user).then((loaded) => matches(loaded, jid)) : matches(list, jid);
      }

      function serialized<T>(user: string, work: () => Promise<T>): Promise<T> {
        const previous = edits.get(user) ?? Promise.resolve();
        const next = previous.then(work, work);
        const tail = next.catch(() => {});
        edits.set(user, tail);
        void tail.then(() => {
          if (edits.get(user) === tail) edits.delete(user);
        });
        return next;
      }

      /** Parse and prepare the items' JIDs; an invalid one fails the whole request (`jid-malformed`), nothing changed. */
      function itemsOf(payload: XmlElement, user: string, blocking: boolean): Jid[] {
        const own = `${user}@${api.domain}`;
        const jids: Jid[] = [];
        for (const item of payload.getChildren('item', NS_BLOCKING)) {
          const text = item.attr('jid');
          const jid = text === undefined ? undefined : Jid.parse(text);
          if (jid === undefined) throw new StanzaErrorException('jid-malformed', `not a JID: ${text ?? '(no jid attribute)'}`);
          // The account's own stanzas are never held back, so such a block could only mislead (an unblock of it is harmless).
          if (blocking && jid.bare === own) throw new StanzaErrorException('not-acceptable', 'you cannot block your own JID');
          jids.push(jid);
        }
        if (jids.length > maxItems) throw new StanzaErrorException('policy-violation', `a block list holds at most ${maxItems} JIDs`);
        return jids;
      }

      function ownerOf(session: XmppSession | undefined): { user: string; session: XmppSession } {
        if (session?.user === undefined) throw new StanzaErrorException('forbidden', 'only the account itself edits its block list');
        return { user: session.user, session };
      }

      /** The push to every resource that asked for the list (§3.3, §3.4, §3.5), after the IQ's result. */
      function push(user: string, payload: XmlElement): void {
        setImmediate(() => {
          for (const session of api.sessionsOf(`${user}@${api.domain}`)) {
            if (session.jid === undefined || !interested.peek(session)?.pushes) continue;
            session.send(xml('iq', { type: 'set', id: `push-${randomUUID()}`, to: session.jid.toString() }, payload));
          }
        });
      }

      api.discoFeature(NS_BLOCKING);

      api.iq({ xmlns: NS_BLOCKING, element: 'blocklist', to: 'self', type: 'get' }, async (_iq, context) => {
        const { user, session } = ownerOf(context.session);
        const list = await listOf(user);
        interested.get(session).pushes = true;
        return xml('blocklist', { xmlns: NS_BLOCKING }, ...[...list].sort().map((jid) => xml('item', { jid })));
      });

      api.iq({ xmlns: NS_BLOCKING, element: 'block', to: 'self', type: 'set' }, async (_iq, context) => {
        const { user } = ownerOf(context.session);
        const jids = itemsOf(context.payload, user, true);
        if (jids.length === 0) throw new StanzaErrorException('bad-request', '<block/> needs at least one <item/>');
        return serialized(user, async () => {
          const list = await listOf(user);
          let added: string[] = [];
          // Against the list as stored (another process may be changing it too): a compare-and-set.
          const stored = await updateValue<string[]>(store, user, STORE_KEY, (value) => {
            const now = new Set(stringsOf(value));
            added = [...new Set(jids.map(String))].filter((jid) => !now.has(jid));
            if (now.size + added.length > maxItems) {
              throw new StanzaErrorException('policy-violation', `a block list holds at most ${maxItems} JIDs`);
            }
            return added.length === 0 ? value : [...now, ...added];
          });
          api.server.cluster?.broadcast(CLUSTER_TOPIC, user);
          // Unavailable presence to contacts who could see the user (§3.3), before the block
          // itself would hold it back.
          await sendUnavailable(user, added);
          list.clear();
          for (const jid of stringsOf(stored)) list.add(jid);
          push(user, xml('block', { xmlns: NS_BLOCKING }, ...jids.map((jid) => xml('item', { jid: jid.toString() }))));
          return undefined;
        });
      });

      api.iq({ xmlns: NS_BLOCKING, element: 'unblock', to: 'self', type: 'set' }, async (_iq, context) => {
        const { user } = ownerOf(context.session);
        const jids = itemsOf(context.payload, user, false);
        return serialized(user, async () => {
          const list = await listOf(user);
          let removed: string[] = [];
          const stored = await updateValue<string[]>(store, user, STORE_KEY, (value) => {
            const now = stringsOf(value);
            // An empty <unblock/> unblocks everyone (§3.5).
            removed = jids.length === 0 ? now : jids.map(String).filter((jid) => now.includes(jid));
            if (removed.length === 0) return value;
            const remaining = now.filter((jid) => !removed.includes(jid));
            return remaining.length === 0 ? undefined : remaining;
          });
          api.server.cluster?.broadcast(CLUSTER_TOPIC, user);
          list.clear();
          for (const jid of stringsOf(stored)) list.add(jid);
          push(user, xml('unblock', { xmlns: NS_BLOCKING }, ...jids.map((jid) => xml('item', { jid: jid.toString() }))));
          // The user's current presence to contacts who may see it (§3.4).
          await sendCurrent(user, removed);
          return undefined;
        });
      });

      /** Each available resource's last presence to the unblocked contacts who may see it (§3.4). */
      async function sendCurrent(user: string, removed: string[]): Promise<void> {
        const sessions = api.availableSessionsOf(`${user}@${api.domain}`);
        if (sessions.length === 0) return;
        for (const contact of await contactsSeeingPresence(user, removed)) {
          for (const { session } of sessions) {
            const last = presenceState.peek(session)?.last;
            if (session.jid === undefined || last === undefined) continue;
            // A copy addressed to the contact: the stored presence itself is never readdressed.
            await api.route(last.with({ from: session.jid.toString(), to: contact.bare }));
          }
        }
      }

      /** The contacts (JIDs with a localpart) among `jids` allowed to see the user's presence (from/both). */
      async function contactsSeeingPresence(user: string, jids: string[]): Promise<Jid[]> {
        const found: Jid[] = [];
        for (const text of jids) {
          const contact = Jid.parse(text);
          if (contact === undefined || contact.local === '') continue;
          const state = await subscription(user, contact.bare);
          if (state === 'from' || state === 'both') found.push(contact);
        }
        return found;
      }

      async function sendUnavailable(user: string, added: string[]): Promise<void> {
        const sessions = api.availableSessionsOf(`${user}@${api.domain}`);
        if (sessions.length === 0) return;
        for (const contact of await contactsSeeingPresence(user, added)) {
          for (const { session } of sessions) {
            if (session.jid === undefined) continue;
            await api.route(xml('presence', { type: 'unavailable', from: session.jid.toString(), to: contact.toString() }));
          }
        }
      }

      // ---- inbound: stanzas for a user from someone the user blocked (§3.3) ----
      const inbound = (event: StanzaEvent): boolean | Promise<boolean> => {
        const { from, to } = event;
        if (to.local === '' || to.domain !== api.domain || from.bare === to.bare) return false;
        // The server's own stanzas (from its bare domain) always pass.
        if (from.local === '' && from.resource === '' && from.domain === api.domain) return false;
        return after(isBlocked(to.local, from), (blocked) => {
          if (!blocked) return senderBlocked(event);
          refuseInbound(event);
          return true;
        });
      };
      /** What a local account sends on its own (presence broadcasts, PEP notifications) does not reach a JID it blocked; what its clients send was refused in `…/in`. */
      function senderBlocked({ from, to, stanza }: StanzaEvent): boolean | Promise<boolean> {
        // Errors the server answers for the account (the bounce of a blocked contact's message) still go out.
        if (stanza.attr('type') === 'error') return false;
        return from.local !== '' && from.domain === api.domain && isBlocked(from.local, to);
      }
      function refuseInbound(event: StanzaEvent): void {
        const stanza = event.stanza;
        const type = stanza.attr('type');
        // Presence: never answered. Messages: <service-unavailable/> (SHOULD), except those no
        // one answers (errors, groupchat, headline). IQ get/set: <service-unavailable/> (MUST).
        const answer =
          stanza.name === 'iq'
            ? type === 'get' || type === 'set'
            : stanza.name === 'message' && (type === undefined || type === 'chat' || type === 'normal');
        if (answer) api.bounce(stamped(stanza, event), 'service-unavailable');
      }
      for (const name of [
        'message/bare',
        'message/full',
        'message/offline',
        'presence/bare',
        'presence/full',
        'iq/bare',
        'iq/full',
      ] as const) {
        api.hook(name, inbound, 100);
      }

      // ---- outbound: a user's client sends to a JID the user blocked (§3.3) ----
      const outbound = (event: StanzaEvent): boolean | Promise<boolean> => {
        const { from, to, stanza } = event;
        if (stanza.attr('to') === undefined || from.local === '' || from.domain !== api.domain) return false;
        if (to.bare === from.bare || (to.local === '' && to.resource === '' && to.domain === api.domain)) return false;
        return after(isBlocked(from.local, to), (blocked) => blocked && refuseOutbound(event));
      };
      function refuseOutbound(event: StanzaEvent): true {
        const { stanza, session } = event;
        const type = stanza.attr('type');
        // Nothing answers an error or an IQ result: dropped.
        if (type === 'error' || (stanza.name === 'iq' && type === 'result')) return true;
        const error = stanzaError(
          stamped(stanza, event),
          'not-acceptable',
          'You have blocked this JID',
          xml('blocked', { xmlns: NS_BLOCKING_ERRORS }),
          'cancel',
        );
        if (session !== undefined) session.send(error);
        else
          api.bounce(stamped(stanza, event), 'not-acceptable', 'You have blocked this JID', xml('blocked', { xmlns: NS_BLOCKING_ERRORS }));
        return true;
      }
      for (const name of ['message/in', 'presence/in', 'iq/in'] as const) api.hook(name, outbound, 100);

      // ---- what reaches a session without the routing hooks (presence broadcasts, PEP
      // notifications, offline messages stored before the block): the lists of online accounts
      // are in memory, read synchronously here ----
      api.hook('session/bound', async ({ session }) => {
        if (session.user !== undefined) remember(session.user, await listOf(session.user));
      });
      api.hook('session/closed', ({ session }) => {
        const user = session.user;
        const list = user === undefined ? undefined : pinned.get(user);
        if (user !== undefined && list !== undefined) remember(user, list);
      });
      api.outbound((stanza, session) => {
        if ((stanza.name !== 'presence' && stanza.name !== 'message') || stanza.attr('type') === 'error') return stanza;
        const text = stanza.attr('from');
        const owner = session.jid;
        if (text === undefined || owner === undefined || session.user === undefined) return stanza;
        const from = Jid.parse(text);
        if (from === undefined || from.bare === owner.bare || (from.local === '' && from.domain === api.domain)) return stanza;
        // From someone the recipient blocked, or from a local account that blocked the recipient.
        const own = inMemory(session.user);
        if (own !== undefined && matches(own, from)) return null;
        const theirs = from.domain === api.domain && from.local !== '' ? inMemory(from.local) : undefined;
        if (theirs !== undefined && matches(theirs, owner)) return null;
        return stanza;
      }, 100);

      api.hook('account/deleted', async ({ user }) => {
        await serialized(user, async () => {
          pinned.delete(user);
          recent.delete(user);
          await store.clear(user);
          api.server.cluster?.broadcast(CLUSTER_TOPIC, user);
        });
      });
    },
  };
}

/** Apply `next` to a value that may still be on its way, staying synchronous when it is not. */
function after<T, R>(value: T | Promise<T>, next: (value: T) => R | Promise<R>): R | Promise<R> {
  return value instanceof Promise ? value.then(next) : next(value);
}

/** Whether a block list holds `jid`, matched as XEP-0191 §4 orders it: full, bare, domain/resource, domain (and its subdomains). */
/** The JIDs of a stored list (anything else in it ignored). */
function stringsOf(value: JsonValue | undefined): string[] {
  return Array.isArray(value) ? value.filter((jid): jid is string => typeof jid === 'string') : [];
}

function matches(list: ReadonlySet<string>, jid: Jid): boolean {
  if (list.size === 0) return false;
  if (list.has(jid.toString()) || list.has(jid.bare)) return true;
  if (jid.resource !== '' && list.has(`${jid.domain}/${jid.resource}`)) return true;
  for (let domain = jid.domain; ; ) {
    if (list.has(domain)) return true;
    const dot = domain.indexOf('.');
    if (dot === -1) return false;
    domain = domain.slice(dot + 1);
  }
}

/** The stanza with its sender stamped (as the router saw it), for an error reply's `to`. */
function stamped(stanza: XmlElement, event: StanzaEvent): XmlElement {
  return stanza.attr('from') === undefined ? stanza.with({ from: event.from.toString() }) : stanza;
}

/** The roster's answer (RFC 6121 §2.1.2.5), through the host. */
export function defaultSubscription(api: ModuleApi): SubscriptionLookup {
  return (user, contactBare) => api.subscription(user, contactBare);
}
