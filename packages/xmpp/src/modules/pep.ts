// Personal Eventing Protocol (XEP-0163 v1.2.2) on the PubSub core (XEP-0060 v1.26): every account
// is a PubSub service at its bare JID. The owner publishes (nodes are created on first publish,
// publish-options set or check their configuration), retracts, configures and deletes; contacts
// allowed by a node's access model (open, presence, roster, whitelist) read its items. Notifications
// go to the owner's available resources and to its contacts' (and to those it received directed
// presence from), filtered by `NODE+notify` in their entity capabilities (caps.ts) and by the access
// model; the last published item goes to such a resource when it comes online, when its caps are
// known, and when it receives the owner's presence (a subscription approved, §4.3.4). Explicit
// subscriptions (XEP-0060 §6.1) are taken too: the last item after the answer, notifications
// whatever the subscriber's caps. What rides on it: avatars (XEP-0084), nicknames
// (XEP-0172), bookmarks (XEP-0402), private data (XEP-0223), OMEMO (XEP-0384).

import { randomBytes } from 'node:crypto';
import { RemoteSession } from '../cluster.js';
import { type XmlElement, xml } from '../element.js';
import { presenceState } from '../host.js';
import { Jid } from '../jid.js';
import type { IqContext, ModuleApi, XmppModule } from '../module.js';
import { NS_DELAY, NS_DISCO_INFO, NS_DISCO_ITEMS, NS_PUBSUB, NS_PUBSUB_EVENT, NS_PUBSUB_OWNER } from '../namespaces.js';
import { StanzaErrorException } from '../stanza-error.js';
import type { JsonValue } from '../stores/types.js';
import { updateValue } from '../stores/update.js';
import { entityCapsOf } from './caps.js';
import { buildDataForm, parseSubmittedForm } from './data-form.js';
import {
  configForm,
  defaultNodeConfig,
  NODE_CONFIG_FORM,
  type NodeConfig,
  PUBLISH_OPTIONS_FORM,
  requestedConfig,
} from './pubsub/config.js';
import { pubsubError, unsupported } from './pubsub/errors.js';
import { wholeNumber } from './pubsub/options.js';

/** Implicit subscribers by directed presence remembered per account at most. */
const MAX_SEEN = 10_000;
/** The cluster topic of directed presences seen by another process (implicit subscribers). */
const SEEN_TOPIC = 'pep-seen';
/** The cluster topic of what changed in the nodes another process keeps in memory (a {@link PubSubChange}). */
const CHANGE_TOPIC = 'pep';

import { type PublishOutcome, type PubSubChange, type PubSubItem, PubSubService, type StoredNode } from './pubsub/service.js';

/** A contact in a user's roster (RFC 6121 §2.1.2): bare JID, presence subscription, groups. */
export interface RosterEntry {
  jid: string;
  subscription: 'none' | 'to' | 'from' | 'both';
  groups: readonly string[];
}

/** A user's roster (the localpart's). */
export type RosterLookup = (user: string) => readonly RosterEntry[] | Promise<readonly RosterEntry[]>;

export interface PepOptions {
  /** Largest item, serialized, in bytes; past it `<not-acceptable/>` + `<payload-too-big/>`. Default 128 KiB (under the default stanza limit, so the answer is a stanza error). */
  maxItemBytes?: number;
  /** Nodes per account. Default 256. */
  maxNodes?: number;
  /** Items per node at most (`max_items`, and what `max` means). Default 256. */
  maxItemsPerNode?: number;
  /** The configuration of nodes created without options (XEP-0163 §5's defaults). */
  defaults?: Partial<NodeConfig>;
  /** The rosters, for the `presence` and `roster` access models and for who gets notifications. Default: the im module's. */
  roster?: RosterLookup;
  /** Answer disco#items on account JIDs with their nodes. Default true. */
  discoItems?: boolean;
}

/** An item published (through an IQ or {@link Pep.publish}). */
export interface PepPublishEvent {
  /** The account's localpart. */
  readonly user: string;
  readonly node: StoredNode;
  readonly item: PubSubItem;
  /** This publish created the node. */
  readonly created: boolean;
}

/** Items retracted; no ids when the node was purged or deleted. */
export interface PepRetractEvent {
  readonly user: string;
  readonly node: StoredNode;
  readonly ids: readonly string[];
}

/** PEP as other modules use it (bookmarks, vCard-avatar): publishing here notifies as an IQ would. */
export interface Pep {
  readonly service: PubSubService;
  /** Publish as the account itself (nodes created as needed; `config` are publish-options checked as preconditions when `preconditions`). */
  publish(
    user: string,
    node: string,
    item: XmlElement,
    options?: { config?: Partial<NodeConfig>; preconditions?: boolean },
  ): Promise<PublishOutcome>;
  retract(user: string, node: string, ids: readonly string[], notify?: boolean): Promise<void>;
  /** Called after every publish (hooks must not throw; errors are logged). */
  onPublish(listener: (event: PepPublishEvent) => void | Promise<void>): void;
  onRetract(listener: (event: PepRetractEvent) => void | Promise<void>): void;
  /** Whether `requester` (a bare JID) may read the node. */
  mayRead(user: string, node: StoredNode, requester: string): Promise<boolean>;
}

const registry = new WeakMap<object, Pep>();

/** The PEP service of a server (its `api.server`), when the pep module is loaded. */
export function pepOf(server: object): Pep | undefined {
  return registry.get(server);
}

const FEATURES = [
  'access-open',
  'access-presence',
  'access-roster',
  'access-whitelist',
  'auto-create',
  'auto-subscribe',
  'config-node',
  'create-and-configure',
  'create-nodes',
  'delete-items',
  'delete-nodes',
  'filtered-notifications',
  'item-ids',
  'last-published',
  'modify-affiliations',
  'persistent-items',
  'presence-notifications',
  'publish',
  'publish-options',
  'purge-nodes',
  'retract-items',
  'retrieve-affiliations',
  'retrieve-default',
  'retrieve-items',
  'retrieve-subscriptions',
  'manage-subscriptions',
  'subscribe',
];

/** Node name to affiliations key (whitelist members). */
const AFFILIATIONS_KEY = 'affiliations:';
/** Node name to explicit subscriptions key (XEP-0060 §6.1: JIDs subscribed beside the presence-based ones). */
const SUBSCRIPTIONS_KEY = 'subscriptions:';
/** Explicit subscriptions per node at most. */
const MAX_SUBSCRIPTIONS = 1000;

type Affiliation = 'owner' | 'member' | 'publisher' | 'outcast' | 'none';

export function pep(options: PepOptions = {}): XmppModule {
  const maxItemsPerNode = wholeNumber('pep', 'maxItemsPerNode', options.maxItemsPerNode, 256);
  const limits = {
    maxItemBytes: wholeNumber('pep', 'maxItemBytes', options.maxItemBytes, 128 * 1024),
    maxNodes: wholeNumber('pep', 'maxNodes', options.maxNodes, 256),
    maxItemsPerNode,
    maxItemsPerRequest: maxItemsPerNode,
  };
  const defaults = (): NodeConfig => ({ ...defaultNodeConfig(), ...options.defaults });
  return {
    name: 'pep',
    setup(api: ModuleApi) {
      const store = api.keyValue('pep');
      const service = new PubSubService(store, api.archive('pep'), limits, defaults);
      const roster = options.roster ?? defaultRoster(api);
      const publishListeners: Array<(event: PepPublishEvent) => void | Promise<void>> = [];
      const retractListeners: Array<(event: PepRetractEvent) => void | Promise<void>> = [];
      /** Per account: full JIDs it received directed presence from (implicit subscribers outside its roster). */
      const seen = new Map<string, Set<string>>();
      /** Local resources that sent available presence. */
      const available = new Set<string>();
      /** Per resource: the accounts whose last items it was sent, with the features they were sent for. */
      const delivered = new Map<string, Map<string, ReadonlySet<string>>>();
      const entry = async (user: string, contact: string): Promise<RosterEntry | undefined> =>
        (await roster(user)).find((item) => item.jid === contact);

      const bareOf = (user: string): string => `${user}@${api.domain}`;
      /** Available here, or on another process (its mirrored presence; its caps are mirrored too). */
      const isAvailable = (jid: string): boolean => {
        if (available.has(jid)) return true;
        const session = api.sessionOf(jid);
        return session instanceof RemoteSession && presenceState.get(session).available;
      };
      const features = (jid: string): ReadonlySet<string> | undefined => entityCapsOf(api.server)?.features(jid);

      const affiliations = async (user: string, node: string): Promise<Record<string, Affiliation>> =>
        affiliationsOf(await store.get(user, AFFILIATIONS_KEY + node));

      const subscriptions = async (user: string, node: string): Promise<string[]> =>
        jidsOf(await store.get(user, SUBSCRIPTIONS_KEY + node));

      /** Throws the access model's error when `requester` (bare) may not read the node (XEP-0060 §6.5.8–§6.5.9, §12.1). */
      const checkAccess = async (user: string, node: StoredNode, requester: string): Promise<void> => {
        if (requester === bareOf(user)) return;
        const affiliation = (await affiliations(user, node.name))[requester];
        if (affiliation === 'outcast') throw new StanzaErrorException('forbidden');
        if (affiliation === 'member' || affiliation === 'publisher' || affiliation === 'owner') return;
        switch (node.config.accessModel) {
          case 'open':
            return;
          case 'presence': {
            const contact = await entry(user, requester);
            if (contact?.subscription === 'from' || contact?.subscription === 'both') return;
            throw pubsubError('not-authorized', 'presence-subscription-required');
          }
          case 'roster': {
            const contact = await entry(user, requester);
            const allowed = node.config.rosterGroupsAllowed;
            if (contact !== undefined && contact.subscription !== 'none' && contact.groups.some((group) => allowed.includes(group))) return;
            throw pubsubError('not-authorized', 'not-in-roster-group');
          }
          case 'whitelist':
            throw pubsubError('not-allowed', 'closed-node');
        }
      };
      const mayRead = async (user: string, node: StoredNode, requester: string): Promise<boolean> => {
        try {
          await checkAccess(user, node, requester);
          return true;
        } catch (error) {
          if (error instanceof StanzaErrorException) return false;
          throw error;
        }
      };

      const send = (user: string, to: string, event: XmlElement, delay?: number): void => {
        const message = xml(
          'message',
          { from: bareOf(user), to, type: 'headline', id: randomBytes(9).toString('base64url') },
          xml('event', { xmlns: NS_PUBSUB_EVENT }, event),
          delay === undefined ? undefined : xml('delay', { xmlns: NS_DELAY, from: bareOf(user), stamp: new Date(delay).toISOString() }),
        );
        void api.route(message).catch((error: unknown) => api.logger.debug({ err: error, to }, 'pep notification not routed'));
      };

      /**
       * The resources a node's notifications go to (XEP-0163 §4.3): the owner's, its contacts'
       * (whose presence it shares either way) and those it received directed presence from —
       * available, with `NODE+notify` in their caps, allowed by the access model.
       */
      const recipients = async (user: string, node: StoredNode): Promise<string[]> => {
        const interest = `${node.name}+notify`;
        const targets: string[] = [];
        const wants = (jid: string): boolean => isAvailable(jid) && features(jid)?.has(interest) === true;
        for (const session of api.sessionsOf(bareOf(user))) {
          const jid = session.jid?.toString();
          if (jid !== undefined && wants(jid)) targets.push(jid);
        }
        const candidates = new Map<string, string[]>();
        for (const contact of await roster(user)) {
          if (contact.subscription === 'none' || Jid.parse(contact.jid)?.domain !== api.domain) continue;
          const jids = api
            .sessionsOf(contact.jid)
            .map((session) => session.jid?.toString())
            .filter((jid): jid is string => jid !== undefined && wants(jid));
          if (jids.length > 0) candidates.set(contact.jid, jids);
        }
        for (const jid of seen.get(user) ?? []) {
          const bare = Jid.parse(jid)?.bare;
          if (bare === undefined || !wants(jid) || candidates.get(bare)?.includes(jid)) continue;
          candidates.set(bare, [...(candidates.get(bare) ?? []), jid]);
        }
        for (const [bare, jids] of candidates) if (await mayRead(user, node, bare)) targets.push(...jids);
        // Explicit subscriptions (XEP-0060 §6.1), whatever their caps, while the access model allows them.
        for (const jid of await subscriptions(user, node.name)) {
          const bare = Jid.parse(jid)?.bare;
          if (bare !== undefined && !targets.includes(jid) && (await mayRead(user, node, bare))) targets.push(jid);
        }
        return targets;
      };

      const itemElement = (item: PubSubItem, config: NodeConfig, payload: boolean): XmlElement =>
        xml(
          'item',
          { id: item.id, publisher: config.itemReply === 'publisher' ? item.publisher : undefined },
          payload ? item.payload : undefined,
        );

      const notifyPublished = async (user: string, node: StoredNode, item: PubSubItem, created: boolean): Promise<void> => {
        if (node.config.deliverNotifications) {
          const event = xml('items', { node: node.name }, itemElement(item, node.config, node.config.deliverPayloads));
          for (const jid of await recipients(user, node)) send(user, jid, event);
        }
        for (const listener of publishListeners) {
          try {
            await listener({ user, node, item, created });
          } catch (error) {
            api.logger.error({ err: error, user, node: node.name }, 'pep publish listener failed');
          }
        }
      };

      const notifyRetracted = async (user: string, node: StoredNode, ids: readonly string[], notify: boolean): Promise<void> => {
        if (notify && node.config.deliverNotifications) {
          const event = xml('items', { node: node.name }, ...ids.map((id) => xml('retract', { id })));
          for (const jid of await recipients(user, node)) send(user, jid, event);
        }
        for (const listener of retractListeners) {
          try {
            await listener({ user, node, ids });
          } catch (error) {
            api.logger.error({ err: error, user, node: node.name }, 'pep retract listener failed');
          }
        }
      };

      /** Send a resource the last item of each node it is interested in and may read (XEP-0163 §4.3.4). */
      const sendLastItems = async (user: string, jid: string, interests: ReadonlySet<string>): Promise<void> => {
        const bare = Jid.parse(jid)?.bare;
        if (bare === undefined) return;
        for (const node of await service.nodes(user)) {
          if (!interests.has(`${node.name}+notify`)) continue;
          if (node.config.sendLastPublishedItem !== 'on_sub_and_presence' || !node.config.deliverNotifications) continue;
          if (!(await mayRead(user, node, bare))) continue;
          const last = await service.lastItem(user, node.name);
          if (last === undefined) continue;
          send(user, jid, xml('items', { node: node.name }, itemElement(last, node.config, node.config.deliverPayloads)), last.when);
        }
      };

      /**
       * A local resource is available and its features known (or changed): send it the last items
       * of its own account's nodes and of those of the accounts whose presence it receives, that
       * it has not had for these features.
       */
      const refresh = (jid: string): void => {
        const current = features(jid);
        const parsed = Jid.parse(jid);
        if (current === undefined || parsed === undefined || !available.has(jid)) return;
        void (async () => {
          const owners = new Set<string>([parsed.local]);
          for (const contact of await roster(parsed.local)) {
            const contactJid = Jid.parse(contact.jid);
            if ((contact.subscription === 'to' || contact.subscription === 'both') && contactJid?.domain === api.domain)
              owners.add(contactJid.local);
          }
          for (const [owner, jids] of seen) if (jids.has(jid)) owners.add(owner);
          let sent = delivered.get(jid);
          if (sent === undefined) {
            sent = new Map();
            delivered.set(jid, sent);
          }
          for (const owner of owners) {
            if (sent.get(owner) === current) continue;
            sent.set(owner, current);
            await sendLastItems(owner, jid, current);
          }
        })().catch((error: unknown) => api.logger.error({ err: error, jid }, 'pep: last items not sent'));
      };

      let listening = false;
      const listen = (): void => {
        if (listening) return;
        const caps = entityCapsOf(api.server);
        if (caps === undefined) return;
        listening = true;
        caps.onResolved((jid) => refresh(jid));
      };

      const unavailable = (jid: string): void => {
        available.delete(jid);
        delivered.delete(jid);
      };

      // A local resource receiving an account's available presence (broadcast, probe answer, or the
      // presence sent on approving its subscription) is that account's implicit subscriber from
      // now on: the last items it has not had yet go to it (XEP-0163 §4.3.4).
      api.outbound((stanza, session) => {
        if (stanza.local !== 'presence' || stanza.attr('type') !== undefined) return stanza;
        const jid = session.jid?.toString();
        const from = Jid.parse(stanza.attr('from') ?? '');
        if (jid === undefined || from === undefined || from.domain !== api.domain || from.local === '' || from.local === session.user)
          return stanza;
        const current = features(jid);
        if (current === undefined || !available.has(jid) || delivered.get(jid)?.get(from.local) === current) return stanza;
        let sent = delivered.get(jid);
        if (sent === undefined) {
          sent = new Map();
          delivered.set(jid, sent);
        }
        sent.set(from.local, current);
        const owner = from.local;
        void sendLastItems(owner, jid, current).catch((error: unknown) =>
          api.logger.error({ err: error, jid }, 'pep: last items not sent'),
        );
        return stanza;
      });

      // Local resources: available presence without `to` (the broadcast).
      api.hook(
        'presence/in',
        (event) => {
          const { stanza, session } = event;
          const jid = session?.jid;
          if (jid === undefined || stanza.attr('to') !== undefined) return;
          listen();
          const type = stanza.attr('type');
          const full = jid.toString();
          if (type === 'unavailable') unavailable(full);
          else if (type === undefined) {
            available.add(full);
            refresh(full);
          }
        },
        40,
      );
      api.hook('session/closed', ({ session }) => {
        const full = session.jid?.toString();
        // A session replaced by another with the same JID (a resumption, a resource conflict) leaves the new one be;
        // one on another process is that process's to serve.
        const next = full === undefined ? undefined : api.sessionOf(full);
        if (full !== undefined && (next === undefined || next instanceof RemoteSession)) unavailable(full);
      });

      // Directed presence to an account from outside its roster: an implicit subscriber too (XEP-0163 §4.1).
      const directedPresence = (event: { stanza: XmlElement; from: Jid; to: Jid }): void => {
        const { stanza, from, to } = event;
        if (to.local === '' || from.bare === to.bare || from.isBare) return;
        listen();
        const type = stanza.attr('type');
        if (type !== undefined && type !== 'unavailable') return;
        const user = to.local;
        const full = from.toString();
        // The presence is routed by the sender's process: the others (where the account may publish) hear of it.
        if (noteSeen(user, full, type === undefined))
          api.server.cluster?.broadcast(SEEN_TOPIC, JSON.stringify([user, full, type === undefined]));
        if (type === undefined) {
          delivered.get(full)?.delete(user);
          refresh(full);
        }
      };
      /** Whether `seen` changed. */
      const noteSeen = (user: string, full: string, on: boolean): boolean => {
        let jids = seen.get(user);
        if (!on) {
          const had = jids?.delete(full) === true;
          if (jids?.size === 0) seen.delete(user);
          return had;
        }
        if (jids === undefined) {
          jids = new Set();
          seen.set(user, jids);
        }
        // Bounded: a flood of directed presences does not grow this without end.
        if (jids.has(full) || jids.size >= MAX_SEEN) return false;
        jids.add(full);
        return true;
      };
      // On several processes: what the others saw. Stale entries are harmless (notifications go to available resources only).
      queueMicrotask(() => {
        // After the server's constructor: its cluster exists then, if it has one.
        const cluster = api.server.cluster;
        if (cluster === undefined) return;
        // Node configurations and last items not persisted, changed here: the others forget or take them;
        // changed elsewhere: forgotten or taken here. Messages maybe lost (the bus was away): everything
        // kept is dropped (configurations are read again; last items not persisted are gone until the next publish).
        service.onChange((change) => cluster.broadcast(CHANGE_TOPIC, JSON.stringify(change)));
        api.onStop(
          cluster.listen(CHANGE_TOPIC, (data) => {
            if (data === undefined) {
              service.forgetAll();
              return;
            }
            const change = parseChange(data);
            if (change !== undefined) service.apply(change);
          }),
        );
        api.onStop(
          cluster.listen(SEEN_TOPIC, (data) => {
            let parsed: unknown;
            try {
              parsed = data === undefined ? undefined : JSON.parse(data);
            } catch {
              return;
            }
            if (!Array.isArray(parsed)) return;
            const [user, full, on] = parsed as unknown[];
            if (typeof user !== 'string' || typeof full !== 'string' || typeof on !== 'boolean') return;
            const jid = Jid.parse(full);
            if (jid === undefined || jid.isBare || user === '') return;
            noteSeen(user, jid.toString(), on);
          }),
        );
      });
      api.hook('presence/bare', directedPresence, 40);
      api.hook('presence/full', directedPresence, 40);

      api.hook('account/deleted', async ({ user }) => {
        seen.delete(user);
        for (const sent of delivered.values()) sent.delete(user);
        await service.deleteOwner(user);
      });

      // ---- the protocol ------------------------------------------------------------------------

      const publish = async (
        user: string,
        name: string,
        item: XmlElement,
        publishOptions: { config?: Partial<NodeConfig>; preconditions?: boolean } = {},
      ): Promise<PublishOutcome> => {
        const outcome = await service.publish(user, name, item, bareOf(user), publishOptions);
        await notifyPublished(user, outcome.node, outcome.item, outcome.created);
        return outcome;
      };

      const retract = async (user: string, name: string, ids: readonly string[], notify?: boolean): Promise<void> => {
        const { node, retracted } = await service.retract(user, name, ids);
        await notifyRetracted(user, node, retracted, notify ?? node.config.notifyRetract);
      };

      const pepApi: Pep = {
        service,
        publish,
        retract,
        onPublish: (listener) => {
          publishListeners.push(listener);
        },
        onRetract: (listener) => {
          retractListeners.push(listener);
        },
        mayRead,
      };
      registry.set(api.server, pepApi);

      const existing = async (user: string, name: string | undefined): Promise<StoredNode> => {
        const node = await service.node(user, PubSubService.checkName(name));
        if (node === undefined) throw pubsubError('item-not-found', undefined, 'no such node');
        return node;
      };

      /** `<pubsub xmlns='http://jabber.org/protocol/pubsub'>` */
      const pubsub = async (iq: XmlElement, context: IqContext): Promise<XmlElement | undefined> => {
        const user = context.to.local;
        const requester = context.from.bare;
        const type = iq.attr('type');
        const [action, ...rest] = context.payload.getChildren().filter((child) => child.xmlns === NS_PUBSUB);
        if (action === undefined) throw new StanzaErrorException('bad-request', 'no PubSub action');
        // RFC 6121 §8.5.1: no such account.
        if (!context.self && !(await api.userExists(user))) throw new StanzaErrorException('service-unavailable');

        if (type === 'get') {
          switch (action.local) {
            case 'items': {
              const node = await existing(user, action.attr('node'));
              await checkAccess(user, node, requester);
              const ids = action
                .getChildren('item', NS_PUBSUB)
                .map((item) => item.attr('id'))
                .filter((id): id is string => id !== undefined);
              const maxAttr = action.attr('max_items');
              let max: number | undefined;
              if (maxAttr !== undefined) {
                if (!/^\d{1,9}$/.test(maxAttr) || Number(maxAttr) < 1)
                  throw new StanzaErrorException('bad-request', 'max_items must be a positive number');
                max = Number(maxAttr);
              }
              const items = await service.items(user, node.name, ids.length > 0 ? { ids } : { max });
              return xml(
                'pubsub',
                { xmlns: NS_PUBSUB },
                xml('items', { node: node.name }, ...items.map((item) => itemElement(item, node.config, true))),
              );
            }
            case 'subscriptions': {
              // The requester's explicit subscriptions (presence-based ones are implicit, XEP-0163 §4.1).
              const wanted = action.attr('node');
              const list = xml('subscriptions', { node: wanted });
              for (const node of await service.nodes(user)) {
                if (wanted !== undefined && node.name !== wanted) continue;
                for (const jid of await subscriptions(user, node.name)) {
                  if (Jid.parse(jid)?.bare === requester)
                    list.append(xml('subscription', { node: node.name, jid, subscription: 'subscribed' }));
                }
              }
              return xml('pubsub', { xmlns: NS_PUBSUB }, list);
            }
            case 'affiliations': {
              if (!context.self) return xml('pubsub', { xmlns: NS_PUBSUB }, xml('affiliations'));
              const nodes = await service.nodes(user);
              const wanted = action.attr('node');
              return xml(
                'pubsub',
                { xmlns: NS_PUBSUB },
                xml(
                  'affiliations',
                  { node: wanted },
                  ...nodes
                    .filter((node) => wanted === undefined || node.name === wanted)
                    .map((node) => xml('affiliation', { node: node.name, affiliation: 'owner' })),
                ),
              );
            }
            default:
              throw unsupported(action.local, `${action.local} is not supported`);
          }
        }

        // set
        if (action.local === 'subscribe' || action.local === 'unsubscribe') {
          const node = await existing(user, action.attr('node'));
          const jid = Jid.parse(action.attr('jid') ?? '');
          // §6.1.3.1: one may only subscribe oneself.
          if (jid === undefined || jid.bare !== requester) throw pubsubError('bad-request', 'invalid-jid', 'subscribe your own JID');
          const subscriber = jid.toString();
          // Compare-and-set: contacts on other processes may subscribe to the same node at the same time.
          if (action.local === 'unsubscribe') {
            let subscribed = false;
            await updateValue<string[]>(store, user, SUBSCRIPTIONS_KEY + node.name, (stored) => {
              const list = jidsOf(stored);
              subscribed = list.includes(subscriber);
              if (!subscribed) return stored;
              const rest = list.filter((entry) => entry !== subscriber);
              return rest.length === 0 ? undefined : rest;
            });
            if (!subscribed) throw pubsubError('unexpected-request', 'not-subscribed');
            return undefined;
          }
          await checkAccess(user, node, requester);
          await updateValue<string[]>(store, user, SUBSCRIPTIONS_KEY + node.name, (stored) => {
            const list = jidsOf(stored);
            if (list.includes(subscriber)) return stored;
            if (list.length >= MAX_SUBSCRIPTIONS)
              throw new StanzaErrorException('policy-violation', `at most ${MAX_SUBSCRIPTIONS} subscriptions per node`);
            return [...list, subscriber];
          });
          // The last item follows the subscription's answer (§6.1.7).
          if (node.config.sendLastPublishedItem !== 'never') {
            setImmediate(() => {
              void service
                .lastItem(user, node.name)
                .then((last) => {
                  if (last !== undefined)
                    send(
                      user,
                      subscriber,
                      xml('items', { node: node.name }, itemElement(last, node.config, node.config.deliverPayloads)),
                      last.when,
                    );
                })
                .catch((error: unknown) => api.logger.error({ err: error, user }, 'pep: last item not sent on subscription'));
            });
          }
          return xml('pubsub', { xmlns: NS_PUBSUB }, xml('subscription', { node: node.name, jid: subscriber, subscription: 'subscribed' }));
        }
        if (!context.self) {
          // PEP nodes have one publisher and owner: the account (XEP-0163 §2.2).
          throw new StanzaErrorException('forbidden', "only the account's owner publishes to its nodes");
        }
        switch (action.local) {
          case 'publish': {
            const name = PubSubService.checkName(action.attr('node'));
            const items = action.getChildren('item', NS_PUBSUB);
            if (items.length !== 1)
              throw pubsubError('bad-request', items.length === 0 ? 'item-required' : 'invalid-payload', 'publish one item');
            const optionsElement = rest.find((child) => child.local === 'publish-options');
            let config: Partial<NodeConfig> | undefined;
            const x = optionsElement?.getChildren()[0];
            if (x !== undefined) {
              const form = parseSubmittedForm(x, PUBLISH_OPTIONS_FORM);
              config = requestedConfig(form, maxItemsPerNode, (text) => pubsubError('conflict', 'precondition-not-met', text));
            }
            const outcome = await publish(user, name, items[0] as XmlElement, { config, preconditions: config !== undefined });
            return xml('pubsub', { xmlns: NS_PUBSUB }, xml('publish', { node: name }, xml('item', { id: outcome.item.id })));
          }
          case 'retract': {
            const name = PubSubService.checkName(action.attr('node'));
            const ids = action
              .getChildren('item', NS_PUBSUB)
              .map((item) => item.attr('id'))
              .filter((id): id is string => id !== undefined && id !== '');
            if (ids.length === 0) throw pubsubError('bad-request', 'item-required', 'which item?');
            const notify = action.attr('notify');
            await retract(user, name, ids, notify === 'true' || notify === '1' ? true : undefined);
            return undefined;
          }
          case 'create': {
            const name = action.attr('node');
            if (name === undefined) throw pubsubError('not-acceptable', 'nodeid-required', 'PEP nodes are named');
            PubSubService.checkName(name);
            const x = rest.find((child) => child.local === 'configure')?.getChildren()[0];
            const config =
              x === undefined
                ? {}
                : requestedConfig(
                    parseSubmittedForm(x, NODE_CONFIG_FORM, { formTypeOptional: true }),
                    maxItemsPerNode,
                    (text) => new StanzaErrorException('not-acceptable', text),
                  );
            await service.create(user, name, config);
            return undefined;
          }
          default:
            throw unsupported(action.local, `${action.local} is not supported`);
        }
      };

      /** `<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>` */
      const owner = async (iq: XmlElement, context: IqContext): Promise<XmlElement | undefined> => {
        if (!context.self) throw new StanzaErrorException('forbidden', "only the account's owner manages its nodes");
        const user = context.to.local;
        const type = iq.attr('type');
        const action = context.payload.getChildren().find((child) => child.xmlns === NS_PUBSUB_OWNER);
        if (action === undefined) throw new StanzaErrorException('bad-request', 'no PubSub action');
        switch (`${type} ${action.local}`) {
          case 'get configure': {
            const node = await existing(user, action.attr('node'));
            return xml(
              'pubsub',
              { xmlns: NS_PUBSUB_OWNER },
              xml('configure', { node: node.name }, configForm(node.config, maxItemsPerNode)),
            );
          }
          case 'set configure': {
            const node = await existing(user, action.attr('node'));
            const x = action.getChildren()[0];
            if (x === undefined) throw new StanzaErrorException('bad-request', 'no configuration form');
            const form = parseSubmittedForm(x, NODE_CONFIG_FORM, { types: ['submit', 'cancel'], formTypeOptional: true });
            if (form.type === 'cancel') return undefined;
            const changes = requestedConfig(form, maxItemsPerNode, (text) => new StanzaErrorException('not-acceptable', text));
            await service.configure(user, node.name, changes);
            return undefined;
          }
          case 'get default':
            return xml('pubsub', { xmlns: NS_PUBSUB_OWNER }, xml('default', {}, configForm(defaults(), maxItemsPerNode)));
          case 'set delete': {
            const node = await existing(user, action.attr('node'));
            const targets = node.config.notifyDelete ? await recipients(user, node) : [];
            await service.delete(user, node.name);
            await store.set(user, AFFILIATIONS_KEY + node.name, undefined);
            await store.set(user, SUBSCRIPTIONS_KEY + node.name, undefined);
            for (const jid of targets) send(user, jid, xml('delete', { node: node.name }));
            // Modules following a node (vcard-avatar) learn it is empty: a retraction of no ids.
            await notifyRetracted(user, node, [], false);
            return undefined;
          }
          case 'set purge': {
            const node = await existing(user, action.attr('node'));
            await service.purge(user, node.name);
            for (const jid of await recipients(user, node)) send(user, jid, xml('purge', { node: node.name }));
            await notifyRetracted(user, node, [], false);
            return undefined;
          }
          case 'get affiliations': {
            const node = await existing(user, action.attr('node'));
            const list = await affiliations(user, node.name);
            return xml(
              'pubsub',
              { xmlns: NS_PUBSUB_OWNER },
              xml(
                'affiliations',
                { node: node.name },
                xml('affiliation', { jid: bareOf(user), affiliation: 'owner' }),
                ...Object.entries(list).map(([jid, affiliation]) => xml('affiliation', { jid, affiliation })),
              ),
            );
          }
          case 'set affiliations': {
            // The whitelist (XEP-0060 §8.9.2): members read a whitelist node; outcasts read nothing.
            const node = await existing(user, action.attr('node'));
            const entries = action.getChildren('affiliation', NS_PUBSUB_OWNER);
            await updateValue<Record<string, Affiliation>>(store, user, AFFILIATIONS_KEY + node.name, (stored) => {
              const list = affiliationsOf(stored);
              for (const entry of entries) {
                const jid = Jid.parse(entry.attr('jid') ?? '');
                const affiliation = entry.attr('affiliation');
                if (jid === undefined || !['member', 'publisher', 'outcast', 'none', 'owner'].includes(affiliation ?? '')) {
                  throw new StanzaErrorException('bad-request', 'an affiliation needs a JID and member, outcast or none');
                }
                if (jid.bare === bareOf(user) || affiliation === 'owner' || affiliation === 'publisher') {
                  throw new StanzaErrorException('not-acceptable', 'PEP nodes have one owner and publisher');
                }
                if (affiliation === 'none') delete list[jid.bare];
                else list[jid.bare] = affiliation as Affiliation;
              }
              if (Object.keys(list).length > 1000) throw new StanzaErrorException('policy-violation', 'at most 1000 affiliations');
              return Object.keys(list).length === 0 ? undefined : list;
            });
            return undefined;
          }
          case 'get subscriptions': {
            const node = await existing(user, action.attr('node'));
            return xml(
              'pubsub',
              { xmlns: NS_PUBSUB_OWNER },
              xml(
                'subscriptions',
                { node: node.name },
                ...(await subscriptions(user, node.name)).map((jid) => xml('subscription', { jid, subscription: 'subscribed' })),
              ),
            );
          }
          default:
            throw unsupported(action.local, `${type} ${action.local} is not supported`);
        }
      };

      for (const to of ['account', 'self'] as const) {
        api.iq({ xmlns: NS_PUBSUB, element: 'pubsub', to }, pubsub);
        api.iq({ xmlns: NS_PUBSUB_OWNER, element: 'pubsub', to }, owner);
      }

      // disco#info on a node (XEP-0060 §5.3–§5.4): a leaf, with its meta-data. Taken before the
      // disco module's account answer (which knows no nodes); anything else passes on.
      const nodeInfo = async (stanza: XmlElement, from: Jid, to: Jid, name: string): Promise<boolean> => {
        const node = await service.node(to.local, name);
        if (node === undefined || !(await mayRead(to.local, node, from.bare))) return false;
        const metaData = buildDataForm({
          type: 'result',
          formType: 'http://jabber.org/protocol/pubsub#meta-data',
          fields: [
            { var: 'pubsub#owner', type: 'jid-single', values: [bareOf(to.local)] },
            { var: 'pubsub#title', type: 'text-single', values: [node.config.title] },
            { var: 'pubsub#type', type: 'text-single', values: [node.config.type] },
            { var: 'pubsub#access_model', type: 'list-single', values: [node.config.accessModel] },
            { var: 'pubsub#max_items', type: 'text-single', values: [String(node.config.maxItems)] },
          ],
        });
        const answer = xml(
          'iq',
          { type: 'result', id: stanza.attr('id'), from: to.bare, to: from.toString() },
          xml(
            'query',
            { xmlns: NS_DISCO_INFO, node: name },
            xml('identity', { category: 'pubsub', type: 'leaf' }),
            xml('feature', { var: NS_PUBSUB }),
            metaData,
          ),
        );
        await api.route(answer);
        return true;
      };
      api.hook(
        'iq/bare',
        (event) => {
          const { stanza, from, to } = event;
          if (stanza.attr('type') !== 'get' || to.local === '') return undefined;
          const name = stanza.getChild('query', NS_DISCO_INFO)?.attr('node');
          return name === undefined ? undefined : nodeInfo(stanza, from, to, name);
        },
        100,
      );

      if (options.discoItems !== false) {
        // The account's nodes (those the requester may read), or a node's items (XEP-0060 §5.2, §5.5).
        const discoItems = async (_iq: XmlElement, context: IqContext): Promise<XmlElement> => {
          const user = context.to.local;
          if (!(await api.userExists(user))) throw new StanzaErrorException('service-unavailable');
          const requester = context.from.bare;
          const wanted = context.payload.attr('node');
          const query = xml('query', { xmlns: NS_DISCO_ITEMS, node: wanted });
          if (wanted !== undefined) {
            const node = await existing(user, wanted);
            await checkAccess(user, node, requester);
            for (const item of await service.items(user, node.name)) query.append(xml('item', { jid: bareOf(user), name: item.id }));
            return query;
          }
          for (const node of await service.nodes(user)) {
            if (await mayRead(user, node, requester)) {
              query.append(xml('item', { jid: bareOf(user), node: node.name, name: node.config.title || undefined }));
            }
          }
          return query;
        };
        api.iq({ xmlns: NS_DISCO_ITEMS, element: 'query', to: 'account', type: 'get' }, discoItems);
        api.iq({ xmlns: NS_DISCO_ITEMS, element: 'query', to: 'self', type: 'get' }, discoItems);
      }

      api.discoIdentity({ category: 'pubsub', type: 'pep' }, 'account');
      api.discoFeature(NS_PUBSUB, 'account');
      for (const feature of FEATURES) api.discoFeature(`${NS_PUBSUB}#${feature}`, 'account');
    },
  };
}

/** A {@link PubSubChange} from another process, checked (undefined when it is not one). */
/** A node's stored affiliations (anything else: none). */
function affiliationsOf(stored: JsonValue | undefined): Record<string, Affiliation> {
  return stored !== null && typeof stored === 'object' && !Array.isArray(stored) ? (stored as Record<string, Affiliation>) : {};
}

/** A node's stored subscribers (anything that is not a JID string ignored). */
function jidsOf(stored: JsonValue | undefined): string[] {
  return Array.isArray(stored) ? stored.filter((jid): jid is string => typeof jid === 'string') : [];
}

function parseChange(data: string): PubSubChange | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(data);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined;
  const { owner, node, config, last } = parsed as Record<string, unknown>;
  if (typeof owner !== 'string' || owner === '') return undefined;
  if (node !== undefined && typeof node !== 'string') return undefined;
  if (config !== undefined && typeof config !== 'boolean') return undefined;
  const change: PubSubChange = { owner, node, config };
  if (last === null) change.last = null;
  else if (last !== undefined) {
    const { xml: text, when } = last as Record<string, unknown>;
    if (typeof text !== 'string' || typeof when !== 'number' || !Number.isFinite(when)) return undefined;
    change.last = { xml: text, when };
  }
  return change;
}

interface StoredRosterShape {
  items?: Array<{ jid?: unknown; subscription?: unknown; groups?: unknown }>;
}

const SUBSCRIPTIONS: ReadonlySet<string> = new Set(['none', 'to', 'from', 'both']);

/** The im module's rosters (its 'roster' store, key 'roster'), read defensively. */
function defaultRoster(api: ModuleApi): RosterLookup {
  const rosters = api.keyValue('roster');
  return async (user) => {
    const stored = (await rosters.get(user, 'roster')) as StoredRosterShape | undefined;
    const entries: RosterEntry[] = [];
    for (const item of Array.isArray(stored?.items) ? stored.items : []) {
      if (typeof item.jid !== 'string') continue;
      const subscription = SUBSCRIPTIONS.has(String(item.subscription)) ? (item.subscription as RosterEntry['subscription']) : 'none';
      const groups = Array.isArray(item.groups) ? item.groups.filter((group): group is string => typeof group === 'string') : [];
      entries.push({ jid: item.jid, subscription, groups });
    }
    return entries;
  };
}
