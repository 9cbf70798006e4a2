import type { XmppModule } from '../module.js';
import { NS_PING, NS_SESSION } from '../namespaces.js';

/** XMPP ping (XEP-0199): the server answers pings addressed to it. */
export function ping(): XmppModule {
  return {
    name: 'ping',
    setup(api) {
      api.discoFeature(NS_PING);
      api.iq({ xmlns: NS_PING, element: 'ping', to: 'host', type: 'get' }, () => undefined);
      // Pinging one's own account is answered by the server too (clients check their link that way).
      api.iq({ xmlns: NS_PING, element: 'ping', to: 'self', type: 'get' }, () => undefined);
    },
  };
}

/** The RFC 3921 session IQ, answered with an empty result for old clients (RFC 6121 Appendix E). */
export function legacySession(): XmppModule {
  return {
    name: 'session',
    setup(api) {
      api.iq({ xmlns: NS_SESSION, element: 'session', to: 'host', type: 'set' }, () => undefined);
      api.iq({ xmlns: NS_SESSION, element: 'session', to: 'self', type: 'set' }, () => undefined);
    },
  };
}
