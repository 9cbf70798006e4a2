// vCard-avatar compatibility (XEP-0398 v0.2 with XEP-0153 v1.1): one avatar whichever way a
// client handles them. An avatar published with PEP (XEP-0084) becomes the vCard's PHOTO; a vCard
// PHOTO set by an older client is published to the PEP avatar nodes; and the user's broadcast
// presence carries `<x xmlns='vcard-temp:x:update'><photo>sha1</photo></x>` (XEP-0153) naming the
// current avatar. The vCard is the vcard module's stored XML text (`vcard` store, key `vcard`).

import { createHash } from 'node:crypto';
import { XmlElement, xml } from '../element.js';
import type { ModuleApi, XmppModule } from '../module.js';
import { NS_AVATAR_DATA, NS_AVATAR_METADATA, NS_VCARD, NS_VCARD_UPDATE, NS_VCARD4_PEP } from '../namespaces.js';
import { parseXml } from '../parse.js';
import { updateValue } from '../stores/update.js';
import { type Pep, pepOf } from './pep.js';
import { wholeNumber } from './pubsub/options.js';

export interface VcardAvatarOptions {
  /** Largest avatar copied into the vCard (decoded bytes). Default 256 KiB. */
  maxPhotoBytes?: number;
}

export function vcardAvatar(options: VcardAvatarOptions = {}): XmppModule {
  const maxPhotoBytes = wholeNumber('vcard-avatar', 'maxPhotoBytes', options.maxPhotoBytes, 256 * 1024);
  return {
    name: 'vcard-avatar',
    setup(api: ModuleApi) {
      const vcards = api.keyValue('vcard');
      /** The current avatar's hash per account: '' for none, absent when not looked up yet. */
      const hashes = new Map<string, string>();
      /** Accounts known to have no avatar node (their presence is left as is without a storage read). */
      const none = new Set<string>();

      const pep = (): Pep | undefined => pepOf(api.server);

      const writePhoto = async (user: string, photo: { type: string; base64: string } | undefined): Promise<void> => {
        // A compare-and-set: the user may be saving the rest of the vCard from another process meanwhile.
        await updateValue<string>(vcards, user, 'vcard', (stored) => {
          const card = (typeof stored === 'string' ? parseXml(stored) : undefined) ?? xml('vCard', { xmlns: NS_VCARD });
          const kept = card.children.filter((child) => typeof child === 'string' || child.local !== 'PHOTO');
          const updated = xml('vCard', { xmlns: NS_VCARD }, ...kept);
          if (photo !== undefined) updated.append(xml('PHOTO', {}, xml('TYPE', {}, photo.type), xml('BINVAL', {}, photo.base64)));
          return updated.toString();
        });
      };

      /** The avatar named by the newest metadata item ('' when none or disabled). */
      const currentHash = async (user: string): Promise<string | undefined> => {
        const known = hashes.get(user);
        if (known !== undefined) return known;
        const service = pep()?.service;
        if (service === undefined) return undefined;
        const node = await service.node(user, NS_AVATAR_METADATA);
        if (node === undefined) {
          if (none.size >= 100_000) none.clear();
          none.add(user);
          return undefined;
        }
        const last = await service.lastItem(user, NS_AVATAR_METADATA);
        const hash = last?.payload?.getChild('info')?.attr('id') ?? '';
        hashes.set(user, hash);
        if (hashes.size > 100_000) hashes.delete(hashes.keys().next().value as string);
        return hash;
      };

      let listening = false;
      const listen = (): void => {
        const service = pep();
        if (listening || service === undefined) return;
        listening = true;
        // PEP → vCard: a new metadata item names the avatar (XEP-0398 §4).
        service.onPublish(async ({ user, node, item }) => {
          if (node.name !== NS_AVATAR_METADATA) return;
          none.delete(user);
          const infos = item.payload?.getChildren('info') ?? [];
          const info = infos.find((candidate) => candidate.attr('url') === undefined) ?? infos[0];
          if (info === undefined) {
            hashes.set(user, '');
            await writePhoto(user, undefined);
            return;
          }
          const id = info.attr('id') ?? '';
          hashes.set(user, id);
          const [data] = await service.service.items(user, NS_AVATAR_DATA, { ids: [id] });
          const base64 = data?.payload?.text().replace(/\s+/g, '');
          if (base64 === undefined || base64 === '' || (base64.length * 3) / 4 > maxPhotoBytes) return;
          await writePhoto(user, { type: info.attr('type') ?? 'image/png', base64 });
        });
        service.onRetract(async ({ user, node }) => {
          if (node.name === NS_AVATAR_METADATA) {
            hashes.delete(user);
            none.delete(user);
          }
        });
      };

      // vCard → PEP: an older client's PHOTO becomes the PEP avatar (XEP-0398 §3), published
      // before the vCard is stored (so its answer comes after the avatar notifications).
      const publishPhoto = async (user: string, id: string, bytes: Buffer, type: string): Promise<void> => {
        const service = pep();
        if (service === undefined) return;
        try {
          if ((await currentHash(user)) === id) return;
          // A vCard is public: so is the avatar made from it.
          const config = { accessModel: 'open' as const };
          await service.publish(
            user,
            NS_AVATAR_DATA,
            xml('item', { id }, xml('data', { xmlns: NS_AVATAR_DATA }, bytes.toString('base64'))),
            { config },
          );
          await service.publish(
            user,
            NS_AVATAR_METADATA,
            xml('item', { id }, xml('metadata', { xmlns: NS_AVATAR_METADATA }, xml('info', { id, bytes: String(bytes.length), type }))),
            { config },
          );
        } catch (error) {
          api.logger.warn({ err: error, user }, 'vcard-avatar: the vCard photo was not published to PEP');
        }
      };
      // Synchronous for every IQ but a vCard set with a photo.
      api.hook('iq/in', (event) => {
        const { stanza, session } = event;
        const user = session?.user;
        if (user === undefined || stanza.attr('type') !== 'set') return;
        const card = stanza.getChild('vCard', NS_VCARD);
        if (card === undefined || event.to.bare !== event.from.bare) return;
        listen();
        const photo = card.getChild('PHOTO');
        const base64 = photo?.getChildText('BINVAL')?.replace(/\s+/g, '');
        if (base64 === undefined || base64 === '') return;
        const bytes = Buffer.from(base64, 'base64');
        if (bytes.length === 0 || bytes.length > maxPhotoBytes) return;
        const id = createHash('sha1').update(bytes).digest('hex');
        return publishPhoto(user, id, bytes, photo?.getChildText('TYPE') ?? 'image/png').then(() => undefined);
      });

      api.hook('account/deleted', ({ user }) => {
        hashes.delete(user);
        none.delete(user);
      });

      // XEP-0153: the user's broadcast presence names the avatar (synchronous once the hash is known).
      const withHash = (stanza: XmlElement, hash: string): XmlElement => {
        const kept = stanza.children.filter((child) => typeof child === 'string' || child.local !== 'x' || child.xmlns !== NS_VCARD_UPDATE);
        const update = xml('x', { xmlns: NS_VCARD_UPDATE }, xml('photo', {}, ...(hash === '' ? [] : [hash])));
        return new XmlElement(stanza.name, { ...stanza.attrs }, [...kept, update], stanza.xmlns);
      };
      api.hook(
        'presence/in',
        (event) => {
          const { stanza, session } = event;
          const user = session?.user;
          if (user === undefined || stanza.attr('to') !== undefined || stanza.attr('type') !== undefined) return;
          listen();
          if (none.has(user)) return;
          const known = hashes.get(user);
          if (known !== undefined) {
            event.stanza = withHash(stanza, known);
            return;
          }
          return currentHash(user).then((hash) => {
            if (hash !== undefined) event.stanza = withHash(event.stanza, hash);
            return undefined;
          });
        },
        30,
      );

      api.discoFeature(NS_VCARD4_PEP, 'account');
      api.discoFeature(NS_VCARD4_PEP);
    },
  };
}
