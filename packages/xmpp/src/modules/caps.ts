// Entity capabilities (XEP-0115 v1.6.0). Two sides:
// - the clients': each session's `<c/>` in its broadcast presence is tracked, and the hash is
//   resolved into features with a disco#info query to the client, cached by verification string
//   once the answer hashes to the advertised `ver` (§5.4) — what PEP's +notify filtering reads;
// - the server's: its own caps hash, computed from its disco#info, as a stream feature (§6.3).

import { createHash, randomBytes } from 'node:crypto';
import { RemoteSession } from '../cluster.js';
import { type XmlElement, xml } from '../element.js';
import { sessionState } from '../host.js';
import type { ModuleApi, XmppModule } from '../module.js';
import { NS_CAPS, NS_DATA, NS_DISCO_INFO } from '../namespaces.js';
import { wholeNumber } from './pubsub/options.js';

export interface CapsOptions {
  /** The node the server's own caps name (its software's URI). Default `https://github.com/portbind/portbind`. */
  node?: string;
  /** Verified verification strings remembered (their features). Default 1000. */
  cacheSize?: number;
  /** disco#info queries to clients outstanding at most. Default 1000. */
  maxPending?: number;
}

/** What other modules read: the features of a client (by full JID), once resolved. */
export interface EntityCaps {
  /** The features of this full JID's client, when its caps are resolved. */
  features(jid: string): ReadonlySet<string> | undefined;
  /** Called when a full JID's features become known (or change). */
  onResolved(listener: (jid: string, features: ReadonlySet<string>) => void): void;
}

/** Identities, features and extended forms of a disco#info answer (XEP-0030, XEP-0128). */
export interface DiscoInfo {
  identities: ReadonlyArray<{ category: string; type: string; lang?: string; name?: string }>;
  features: readonly string[];
  /** Extended information forms (`<x xmlns='jabber:x:data' type='result'>`). */
  forms?: readonly XmlElement[];
}

const HASHES: Record<string, string> = {
  'sha-1': 'sha1',
  'sha-224': 'sha224',
  'sha-256': 'sha256',
  'sha-384': 'sha384',
  'sha-512': 'sha512',
};

const registry = new WeakMap<object, EntityCaps>();

/** `+notify` features mirrored per session at most (a client's disco#info is its own to make long). */
const MAX_NOTIFY = 64;
/** Longer `+notify` features name no node (PubSub node names are at most 512 characters) and are not mirrored. */
const MAX_NOTIFY_LENGTH = 512 + '+notify'.length;

/**
 * A session's `+notify` features (what PEP filters on, XEP-0163 §4.3) once its caps are resolved:
 * `list` (sorted) is what the cluster directory publishes of a local session, `notify` what a
 * session of another process advertised (mirrored). One state for every server, like carbonsState.
 */
export const capsNotifyState = sessionState<{ notify?: ReadonlySet<string>; list?: string[] }>(() => ({}));

/** The caps tracker of a server (its `api.server`), when the caps module is loaded. */
export function entityCapsOf(server: object): EntityCaps | undefined {
  return registry.get(server);
}

/** Compare as XEP-0115 §5.1 says: "i;octet" (bytes of UTF-8). */
function octet(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/**
 * The verification string of a disco#info answer (XEP-0115 §5.1), with this hash (`sha-1` by
 * default); undefined when the answer is malformed in the ways §5.4 rejects (duplicate identities,
 * features or forms, a form without a hidden FORM_TYPE) or the hash is unknown.
 */
export function capsVerification(info: DiscoInfo, hash = 'sha-1'): string | undefined {
  const algorithm = HASHES[hash];
  if (algorithm === undefined) return undefined;
  const identities = info.identities.map((id) => `${id.category}/${id.type}/${id.lang ?? ''}/${id.name ?? ''}`);
  if (new Set(identities).size !== identities.length) return undefined;
  if (new Set(info.features).size !== info.features.length) return undefined;
  let s = '';
  for (const identity of [...identities].sort(octet)) s += `${identity}<`;
  for (const feature of [...info.features].sort(octet)) s += `${feature}<`;
  const forms: Array<{ type: string; text: string }> = [];
  for (const form of info.forms ?? []) {
    const fields = form.getChildren('field', NS_DATA);
    const formType = fields.find((field) => field.attr('var') === 'FORM_TYPE');
    const types = formType?.getChildren('value', NS_DATA) ?? [];
    if (formType === undefined || formType.attr('type') !== 'hidden' || types.length !== 1) return undefined;
    const type = (types[0] as XmlElement).text();
    let text = `${type}<`;
    const others = fields.filter((field) => field !== formType && field.attr('var') !== undefined);
    others.sort((a, b) => octet(a.attr('var') as string, b.attr('var') as string));
    for (const field of others) {
      text += `${field.attr('var')}<`;
      for (const value of field
        .getChildren('value', NS_DATA)
        .map((v) => v.text())
        .sort(octet))
        text += `${value}<`;
    }
    forms.push({ type, text });
  }
  if (new Set(forms.map((form) => form.type)).size !== forms.length) return undefined;
  for (const form of forms.sort((a, b) => octet(a.type, b.type))) s += form.text;
  return createHash(algorithm).update(s, 'utf8').digest('base64');
}

/** Read a disco#info `<query/>`. */
export function discoInfoOf(query: XmlElement): DiscoInfo {
  return {
    identities: query.getChildren('identity', NS_DISCO_INFO).map((identity) => ({
      category: identity.attr('category') ?? '',
      type: identity.attr('type') ?? '',
      lang: identity.attr('xml:lang'),
      name: identity.attr('name'),
    })),
    features: query
      .getChildren('feature', NS_DISCO_INFO)
      .map((feature) => feature.attr('var'))
      .filter((name): name is string => name !== undefined),
    forms: query.getChildren('x', NS_DATA).filter((x) => x.attr('type') === 'result'),
  };
}

interface Advertised {
  node: string;
  ver: string;
  /** Undefined for legacy caps (no `hash`: not verifiable, not cached). */
  hash: string | undefined;
}

/** Something that may expose the host's own disco#info (the module host's, when it does). */
interface DiscoInfoSource {
  discoInfo?: (where: 'host') => DiscoInfo;
}

export function caps(options: CapsOptions = {}): XmppModule {
  const ownNode = options.node ?? 'https://github.com/portbind/portbind';
  const cacheSize = wholeNumber('caps', 'cacheSize', options.cacheSize, 1000);
  const maxPending = wholeNumber('caps', 'maxPending', options.maxPending, 1000);
  return {
    name: 'caps',
    setup(api: ModuleApi) {
      /** Verified: `hash ver` → features. */
      const byVer = new Map<string, ReadonlySet<string>>();
      /** Full JID → what it advertises and, once resolved, its features. */
      const clients = new Map<string, { advertised: Advertised; features?: ReadonlySet<string> }>();
      /** Outstanding queries by IQ id. */
      const pending = new Map<string, { jid: string; advertised: Advertised }>();
      const listeners: Array<(jid: string, features: ReadonlySet<string>) => void> = [];
      let ownVer: string | undefined;
      let ownQuery: string | undefined;

      /** A session of another process (the cluster mirror): the `+notify` features it advertised, all PEP needs. */
      const mirrored = (jid: string): ReadonlySet<string> | undefined => {
        const session = api.sessionOf(jid);
        return session === undefined ? undefined : capsNotifyState.peek(session)?.notify;
      };
      const tracker: EntityCaps = {
        features: (jid) => {
          const client = clients.get(jid);
          return client === undefined ? mirrored(jid) : client.features;
        },
        onResolved: (listener) => {
          listeners.push(listener);
        },
      };
      registry.set(api.server, tracker);

      const resolved = (jid: string, features: ReadonlySet<string>): void => {
        const client = clients.get(jid);
        if (client === undefined) return;
        client.features = features;
        const session = api.sessionOf(jid);
        if (session !== undefined) {
          const list = [...features].filter((feature) => feature.endsWith('+notify') && feature.length <= MAX_NOTIFY_LENGTH).sort(octet);
          capsNotifyState.get(session).list = list.length === 0 ? undefined : list.slice(0, MAX_NOTIFY);
        }
        for (const listener of listeners) {
          try {
            listener(jid, features);
          } catch (error) {
            api.logger.error({ err: error, jid }, 'caps listener failed');
          }
        }
      };

      const forget = (jid: string): void => {
        clients.delete(jid);
        const session = api.sessionOf(jid);
        const state = session === undefined ? undefined : capsNotifyState.peek(session);
        if (state !== undefined) state.list = undefined;
        for (const [id, query] of pending) if (query.jid === jid) pending.delete(id);
      };

      const track = (jid: string, c: XmlElement | undefined): void => {
        const node = c?.attr('node');
        const ver = c?.attr('ver');
        if (c === undefined || node === undefined || ver === undefined) {
          // No caps: nothing to filter on (no +notify, so no PEP notifications).
          if (!clients.has(jid)) clients.set(jid, { advertised: { node: '', ver: '', hash: undefined }, features: new Set() });
          return;
        }
        const hash = c.attr('hash');
        const current = clients.get(jid);
        if (current !== undefined && current.advertised.ver === ver && current.advertised.hash === hash && current.advertised.node === node)
          return;
        const advertised: Advertised = { node, ver, hash };
        clients.set(jid, { advertised });
        const known = hash === undefined ? undefined : byVer.get(`${hash} ${ver}`);
        if (known !== undefined) return resolved(jid, known);
        if (pending.size >= maxPending) return;
        const id = `caps-${randomBytes(9).toString('base64url')}`;
        pending.set(id, { jid, advertised });
        void api
          .route(xml('iq', { type: 'get', id, from: api.domain, to: jid }, xml('query', { xmlns: NS_DISCO_INFO, node: `${node}#${ver}` })))
          .catch((error: unknown) => {
            pending.delete(id);
            api.logger.debug({ err: error, jid }, 'caps query could not be sent');
          });
      };

      const answered = (stanza: XmlElement, query: { jid: string; advertised: Advertised }): void => {
        const { jid, advertised } = query;
        const client = clients.get(jid);
        // The client changed its caps (or left) meanwhile.
        if (client === undefined || client.advertised !== advertised) return;
        const info = stanza.attr('type') === 'result' ? stanza.getChild('query', NS_DISCO_INFO) : undefined;
        if (info === undefined) return resolved(jid, new Set());
        const disco = discoInfoOf(info);
        const features: ReadonlySet<string> = new Set(disco.features);
        if (advertised.hash !== undefined && capsVerification(disco, advertised.hash) === advertised.ver) {
          byVer.set(`${advertised.hash} ${advertised.ver}`, features);
          if (byVer.size > cacheSize) byVer.delete(byVer.keys().next().value as string);
          // Others that advertised the same caps meanwhile.
          for (const [other, entry] of clients) {
            if (
              other !== jid &&
              entry.features === undefined &&
              entry.advertised.hash === advertised.hash &&
              entry.advertised.ver === advertised.ver
            ) {
              resolved(other, features);
            }
          }
        } else if (advertised.hash !== undefined) {
          api.logger.debug({ jid, ver: advertised.ver }, 'caps: the disco#info answer does not hash to the advertised ver (not cached)');
        }
        resolved(jid, features);
      };

      // Clients' caps, from their broadcast presence.
      api.hook(
        'presence/in',
        (event) => {
          const { stanza, session } = event;
          const jid = session?.jid?.toString();
          if (jid === undefined || stanza.attr('to') !== undefined) return;
          const type = stanza.attr('type');
          if (type === 'unavailable') forget(jid);
          else if (type === undefined) track(jid, stanza.getChild('c', NS_CAPS));
        },
        50,
      );
      api.hook('session/closed', ({ session }) => {
        const jid = session.jid?.toString();
        // A session replaced by another with the same JID (a resumption, a resource conflict) leaves the new one's
        // caps; one on another process has its caps there (mirrored).
        const next = jid === undefined ? undefined : api.sessionOf(jid);
        if (jid !== undefined && (next === undefined || next instanceof RemoteSession)) forget(jid);
      });

      // Answers to the server's disco#info queries (to clients, and to itself).
      api.hook(
        'iq/host',
        (event) => {
          const { stanza } = event;
          const type = stanza.attr('type');
          if (type === 'get') return answerOwnNode(stanza, event.from.toString());
          if (type !== 'result' && type !== 'error') return;
          const id = stanza.attr('id') ?? '';
          if (id === ownQuery) {
            ownQuery = undefined;
            const info = type === 'result' ? stanza.getChild('query', NS_DISCO_INFO) : undefined;
            if (info !== undefined) ownVer = capsVerification(discoInfoOf(info));
            return true;
          }
          const query = pending.get(id);
          if (query === undefined || event.from.toString() !== query.jid) return;
          pending.delete(id);
          answered(stanza, query);
          return true;
        },
        100,
      );

      // The server's own caps (§6.3), from its disco#info: read from the host when it exposes it,
      // else asked of itself once.
      const ownCaps = (): string | undefined => {
        if (ownVer !== undefined) return ownVer;
        const source = api.server as unknown as DiscoInfoSource;
        if (typeof source.discoInfo === 'function') {
          ownVer = capsVerification(source.discoInfo('host'));
          return ownVer;
        }
        if (ownQuery === undefined) {
          ownQuery = `caps-self-${randomBytes(6).toString('base64url')}`;
          void api
            .route(xml('iq', { type: 'get', id: ownQuery, from: api.domain, to: api.domain }, xml('query', { xmlns: NS_DISCO_INFO })))
            .catch(() => {
              ownQuery = undefined;
            });
        }
        return undefined;
      };
      // disco#info to `node#ver` of the server's own caps: the same answer as without a node (§6.2).
      const answerOwnNode = (stanza: XmlElement, from: string): boolean | undefined => {
        const query = stanza.getChild('query', NS_DISCO_INFO);
        const node = query?.attr('node');
        const ver = ownCaps();
        if (query === undefined || node === undefined || ver === undefined || node !== `${ownNode}#${ver}`) return undefined;
        const source = api.server as unknown as DiscoInfoSource;
        if (typeof source.discoInfo !== 'function') return undefined;
        const info = source.discoInfo('host');
        const answer = xml(
          'iq',
          { type: 'result', id: stanza.attr('id'), from: api.domain, to: from },
          xml(
            'query',
            { xmlns: NS_DISCO_INFO, node },
            ...info.identities.map((identity) =>
              xml('identity', { category: identity.category, type: identity.type, 'xml:lang': identity.lang, name: identity.name }),
            ),
            ...info.features.map((feature) => xml('feature', { var: feature })),
          ),
        );
        void api.route(answer).catch((error: unknown) => api.logger.debug({ err: error }, 'caps: disco#info answer not routed'));
        return true;
      };

      api.streamFeature('bind', () => {
        const ver = ownCaps();
        return ver === undefined ? undefined : xml('c', { xmlns: NS_CAPS, hash: 'sha-1', node: ownNode, ver });
      });
      api.discoFeature(NS_CAPS);
    },
  };
}
