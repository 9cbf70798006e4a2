// Bookmarks (XEP-0402 v1.1 `urn:xmpp:bookmarks:1`, with `#compat` and `#compat-pep`): the PEP
// node is the reference; clients still on XEP-0048 reading or writing `<storage xmlns='storage:bookmarks'/>`
// in private storage (XEP-0049) see and change that node — a legacy write becomes publishes and
// retractions (so XEP-0402 clients are notified), a legacy read is built from the node's items —
// and a legacy PEP node `storage:bookmarks` (XEP-0048 §3.3), when a client made one, is kept equal
// to it both ways.

import { type XmlElement, xml } from '../element.js';
import { Jid } from '../jid.js';
import type { ModuleApi, XmppModule } from '../module.js';
import { NS_BOOKMARKS_LEGACY, NS_BOOKMARKS2 } from '../namespaces.js';
import { StanzaErrorException } from '../stanza-error.js';
import { type Pep, pepOf } from './pep.js';
import { privateStorageHandler } from './private.js';
import type { NodeConfig } from './pubsub/config.js';
import { wholeNumber } from './pubsub/options.js';

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
  const maxBookmarks = wholeNumber('bookmarks', 'maxBookmarks', options.maxBookmarks, 256);
  return {
    name: 'bookmarks',
    setup(api: ModuleApi) {
      const pep = (): Pep => {
        const found = pepOf(api.server);
        if (found === undefined) throw new StanzaErrorException('service-unavailable', 'bookmarks need the pep module');
        return found;
      };

      /** The bookmarks as a legacy `<storage/>` (XEP-0048 §3), from the XEP-0402 node. */
      const legacyStorage = async (user: string): Promise<XmlElement> => {
        const storage = xml('storage', { xmlns: NS_BOOKMARKS_LEGACY });
        for (const item of await pep().service.items(user, NS_BOOKMARKS2)) {
          if (item.payload?.local !== 'conference' || item.payload.xmlns !== NS_BOOKMARKS2) continue;
          storage.append(conferenceToLegacy(item.id, item.payload));
        }
        return storage;
      };

      /** Accounts whose bookmarks are being synchronised (their own publishes are not echoed back). */
      const syncing = new Set<string>();

      /** Mirror the XEP-0402 node into the legacy PEP node (`storage:bookmarks`, XEP-0048 §3.3) when one exists. */
      const mirrorToLegacyPep = async (user: string): Promise<void> => {
        const service = pep();
        if ((await service.service.node(user, NS_BOOKMARKS_LEGACY)) === undefined) return;
        await service.publish(user, NS_BOOKMARKS_LEGACY, xml('item', { id: 'current' }, await legacyStorage(user)));
      };

      /** A legacy `<storage/>` written (private storage or the legacy PEP node): the XEP-0402 node follows. */
      const applyLegacy = async (user: string, storage: XmlElement, merge = false): Promise<void> => {
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
        const maxItems = service.service.limits.maxItemsPerNode;
        if (node !== undefined && node.config.maxItems < maxItems) await service.service.configure(user, NS_BOOKMARKS2, { maxItems });
        for (const [jid, conference] of wanted) {
          if (currentById.get(jid) === conference.toString()) continue;
          await service.publish(user, NS_BOOKMARKS2, xml('item', { id: jid }, conference), {
            config: { ...BOOKMARKS_NODE_CONFIG, maxItems },
          });
        }
        const gone = merge ? [] : current.map((item) => item.id).filter((id) => !wanted.has(id));
        if (gone.length > 0) await service.retract(user, NS_BOOKMARKS2, gone, true);
      };

      const synchronised = async (user: string, run: () => Promise<void>): Promise<void> => {
        syncing.add(user);
        try {
          await run();
        } finally {
          syncing.delete(user);
        }
      };

      privateStorageHandler(api.server, NS_BOOKMARKS_LEGACY, {
        get: (user) => legacyStorage(user),
        set: (user, storage) =>
          synchronised(user, async () => {
            await applyLegacy(user, storage);
            await mirrorToLegacyPep(user);
          }),
      });

      // The legacy PEP node (#compat-pep) and the XEP-0402 node kept equal both ways.
      let listening = false;
      const listen = (): void => {
        const service = pepOf(api.server);
        if (listening || service === undefined) return;
        listening = true;
        service.onPublish(async ({ user, node, item, created }) => {
          if (syncing.has(user)) return;
          if (node.name === NS_BOOKMARKS_LEGACY) {
            const storage = item.payload;
            if (storage?.local !== 'storage' || storage.xmlns !== NS_BOOKMARKS_LEGACY) return;
            // The first legacy publish was written without seeing the XEP-0402 bookmarks (there was no
            // legacy node to read): it adds to them; later ones are the whole list. Either way the
            // legacy node then holds all of them.
            await synchronised(user, async () => {
              await applyLegacy(user, storage, created);
              if (created) await mirrorToLegacyPep(user);
            });
          } else if (node.name === NS_BOOKMARKS2) {
            await synchronised(user, () => mirrorToLegacyPep(user));
          }
        });
        service.onRetract(async ({ user, node }) => {
          if (!syncing.has(user) && node.name === NS_BOOKMARKS2) await synchronised(user, () => mirrorToLegacyPep(user));
        });
      };
      api.hook('session/authenticated', () => {
        listen();
      });

      api.discoFeature(`${NS_BOOKMARKS2}#compat-pep`, 'account');
      api.discoFeature(`${NS_BOOKMARKS2}#compat`, 'account');
    },
  };
}
