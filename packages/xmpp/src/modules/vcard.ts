import { XmlElement, xml } from '../element.js';
import type { XmppModule } from '../module.js';
import { NS_VCARD } from '../namespaces.js';
import { parseXml } from '../parse.js';
import { StanzaErrorException } from '../stanza-error.js';

export interface VcardOptions {
  /** Largest stored vCard, in bytes of XML. Default 64 KiB (avatars belong in PEP, XEP-0084). */
  maxSize?: number;
}

/**
 * vCard-temp (XEP-0054): anyone may read an account's vCard, only the account may set it. Stored as
 * XML text in the `vcard` key-value store (owner: localpart, key: `vcard`).
 */
export function vcard(options: VcardOptions = {}): XmppModule {
  const maxSize = options.maxSize ?? 64 * 1024;
  return {
    name: 'vcard',
    setup(api) {
      const store = api.keyValue('vcard');
      api.discoFeature(NS_VCARD);
      api.iq({ xmlns: NS_VCARD, element: 'vCard', to: 'account' }, async (iq, context) => {
        const owner = context.to.local;
        if (iq.attr('type') === 'get') {
          if (!(await api.userExists(owner))) throw new StanzaErrorException('service-unavailable');
          const stored = await store.get(owner, 'vcard');
          const card = typeof stored === 'string' ? parseXml(stored) : undefined;
          return card ?? xml('vCard', { xmlns: NS_VCARD });
        }
        if (!context.self) throw new StanzaErrorException('not-allowed', 'only the account itself may set its vCard');
        const card = context.payload;
        const text = new XmlElement('vCard', { xmlns: NS_VCARD }, card.children, NS_VCARD).toString();
        if (Buffer.byteLength(text) > maxSize) {
          throw new StanzaErrorException('not-acceptable', `a vCard is at most ${maxSize} bytes`, undefined, 'modify');
        }
        await store.set(owner, 'vcard', text);
        return undefined;
      });
      api.hook('account/deleted', ({ user }) => store.clear(user));
    },
  };
}
