import { xml } from '../element.js';
import type { XmppModule } from '../module.js';
import { NS_DISCO_INFO, NS_DISCO_ITEMS } from '../namespaces.js';
import { StanzaErrorException } from '../stanza-error.js';

/**
 * Service discovery (XEP-0030): the server's identity and the features every module registered, and
 * for an account's bare JID the account's (PEP, MAM). The server's items are its domain services (MUC, upload, components).
 */
export function disco(options: { name?: string } = {}): XmppModule {
  return {
    name: 'disco',
    setup(api) {
      api.discoIdentity({ category: 'server', type: 'im', name: options.name ?? 'portbind' });
      api.discoFeature(NS_DISCO_INFO);
      api.discoFeature(NS_DISCO_ITEMS);
      api.discoFeature(NS_DISCO_INFO, 'account');
      api.iq({ xmlns: NS_DISCO_INFO, element: 'query', to: 'host', type: 'get' }, (_iq, context) => {
        const node = context.payload.attr('node');
        if (node !== undefined) throw new StanzaErrorException('item-not-found');
        const info = api.server.discoInfo('host');
        return xml(
          'query',
          { xmlns: NS_DISCO_INFO },
          ...info.identities.map((identity) => xml('identity', { ...identity })),
          ...info.features.map((name) => xml('feature', { var: name })),
        );
      });
      api.iq({ xmlns: NS_DISCO_ITEMS, element: 'query', to: 'host', type: 'get' }, (_iq, context) => {
        if (context.payload.attr('node') !== undefined) throw new StanzaErrorException('item-not-found');
        return xml(
          'query',
          { xmlns: NS_DISCO_ITEMS },
          ...api.server.discoItems().map((item) => xml('item', { jid: item.jid, name: item.name })),
        );
      });
      api.iq({ xmlns: NS_DISCO_INFO, element: 'query', to: 'account', type: 'get' }, async (_iq, context) => {
        if (context.payload.attr('node') !== undefined) throw new StanzaErrorException('item-not-found');
        if (!(await api.userExists(context.to.local))) throw new StanzaErrorException('service-unavailable');
        const info = api.server.discoInfo('account');
        // The account identity to the account itself (XEP-0030 §3.1: a server answers for its accounts).
        const identities = context.self ? [{ category: 'account', type: 'registered' }, ...info.identities] : info.identities;
        return xml(
          'query',
          { xmlns: NS_DISCO_INFO },
          ...identities.map((identity) => xml('identity', { ...identity })),
          ...info.features.map((name) => xml('feature', { var: name })),
        );
      });
    },
  };
}
