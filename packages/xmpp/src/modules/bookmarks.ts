// Bookmarks (XEP-0402 v1.1 `urn:xmpp:bookmarks:1`, with `#compat`): the PEP node is the one
// copy; clients still on XEP-0048 reading or writing `<storage xmlns='storage:bookmarks'/>` in
// private storage (XEP-0049) see and change that node — a legacy write becomes publishes and
// retractions (so XEP-0402 clients are notified), a legacy read is built from the node's items.

import { type XmlElement, xml } from '../element.js';
import { Jid } from '../jid.js';
import type { ModuleApi, XmppModule } from '../module.js';
import { NS_BOOKMARKS_LEGACY, NS_BOOKMARKS2 } from '../namespaces.js';
import { StanzaErrorException } from '../stanza-error.js';
import { type Pep, pepOf } from './pep.js';
import { privateStorageHandler } from './private.js';
import type { NodeConfig } from './pubsub/config.js';

export interface BookmarksOptions {
  /** Bookmarks per account (a legacy write with more is refused with `<not-acceptable/>`). Default 256, PEP's items per node. */
  maxBookmarks?: number;
}

/** The node configuration XEP-0402 §3 asks clients to publish with. */
export const BOOKMARKS_NODE_CONFIG: Partial<NodeConfig> = {
  persistItems: true,
  accessModel: 'whitelist',
  sendLastPublishedItem: 'never',
};

/** A legacy `<conference jid=…/>` as an XEP-0402 item payload (id = the room's JID). */
export function conferenceFromLegacy(legacy: XmlElement): { jid: string; conference: XmlElement } | undefined {
  const jid = Jid.parse(legacy.attr('jid') ?? '');
  if (jid === undefined || !jid.isBare) return undefined;
  const autojoin = legacy.attr('autojoin');
  const conference = xml('conference', {
    xmlns: NS_BOOKMARKS2,
    name: legacy.attr('name'),
    autojoin: autojoin === 'true' || autojoin === '1' ? 'true' : undefined,
  });
  const nick = legacy.getChildText('nick');
  if (nick !== undefined && nick !== '') conference.append(xml('nick', {}, nick));
  const password = legacy.getChildText('password');
  if (password !== undefined && password !== '') conference.append(xml('password', {}, password));
  // Anything else a legacy client kept there travels in <extensions/> (§3.2).
  const extensions = legacy.getChildren().filter((child) => child.local !== 'nick' && child.local !== 'password');
  if (extensions.length > 0) {
    conference.append(
      xml('extensions', {}, ...extensions.map((child) => (child.attr('xmlns') === undefined ? child.with({ xmlns: child.xmlns }) : child))),
    );
  }
  return { jid: jid.toString(), conference };
}

/** An XEP-0402 item as a legacy `<conference/>`. */
export function conferenceToLegacy(jid: string, conference: XmlElement): XmlElement {
  const autojoin = conference.attr('autojoin');
  const legacy = xml('conference', {
    jid,
    name: conference.attr('name'),
    autojoin: autojoin === 'true' || autojoin === '1' ? 'true' : 'false',
  });
  const nick = conference.getChildText('nick');
  if (nick !== undefined) legacy.append(xml('nick', {}, nick));
  const password = conference.getChildText('password');
  if (password !== undefined) legacy.append(xml('password', {}, password));
  for (const extension of conference.getChild('extensions')?.getChildren() ?? []) legacy.append(extension);
  return legacy;
}

export function bookmarks(options: BookmarksOptions = {}): XmppModule {
  const maxBookmarks = options.maxBookmarks ?? 256;
  return {
    name: 'bookmarks',
    setup(api: ModuleApi) {
      const pep = (): Pep => {
        const found = pepOf(api.server);
        if (found === undefined) throw new StanzaErrorException('service-unavailable', 'bookmarks need the pep module');
        return found;
      };

      privateStorageHandler(api.server, NS_BOOKMARKS_LEGACY, {
        async get(user) {
          const storage = xml('storage', { xmlns: NS_BOOKMARKS_LEGACY });
          for (const item of await pep().service.items(user, NS_BOOKMARKS2)) {
            if (item.payload?.local !== 'conference' || item.payload.xmlns !== NS_BOOKMARKS2) continue;
            storage.append(conferenceToLegacy(item.id, item.payload));
          }
          return storage;
        },
        async set(user, storage) {
          const service = pep();
          const wanted = new Map<string, XmlElement>();
          for (const legacy of storage.getChildren('conference')) {
            const converted = conferenceFromLegacy(legacy);
            if (converted === undefined) throw new StanzaErrorException('bad-request', `'${legacy.attr('jid') ?? ''}' is not a room's JID`);
            wanted.set(converted.jid, converted.conference);
          }
          if (wanted.size > maxBookmarks) throw new StanzaErrorException('not-acceptable', `at most ${maxBookmarks} bookmarks`);
          const node = await service.service.node(user, NS_BOOKMARKS2);
          const current = node === undefined ? [] : await service.service.items(user, NS_BOOKMARKS2);
          const currentById = new Map(current.map((item) => [item.id, item.payload?.toString()]));
          // The node keeps every bookmark (max_items 'max') whatever its earlier configuration.
          if (node !== undefined && node.config.maxItems < service.service.limits.maxItemsPerNode) {
            await service.service.configure(user, NS_BOOKMARKS2, { maxItems: service.service.limits.maxItemsPerNode });
          }
          for (const [jid, conference] of wanted) {
            const item = xml('item', { id: jid }, conference);
            if (currentById.get(jid) === conference.toString()) continue;
            await service.publish(user, NS_BOOKMARKS2, item, {
              config: { ...BOOKMARKS_NODE_CONFIG, maxItems: service.service.limits.maxItemsPerNode },
            });
          }
          const gone = current.map((item) => item.id).filter((id) => !wanted.has(id));
          if (gone.length > 0) await service.retract(user, NS_BOOKMARKS2, gone, true);
        },
      });

      api.discoFeature(`${NS_BOOKMARKS2}#compat`, 'account');
    },
  };
}
