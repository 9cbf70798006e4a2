// Last Activity (XEP-0012 v2.0), as Prosody's mod_uptime and mod_lastactivity answer it: to the
// server, its uptime; to an account's bare JID, the seconds since the account last logged out and
// the status of its last unavailable presence — only to the account itself and contacts allowed
// to see its presence (§3, §8), `0` while it has an available resource.

import { xml } from '../element.js';
import type { ModuleIqHandler, XmppModule } from '../module.js';
import { NS_LAST } from '../namespaces.js';
import { StanzaErrorException } from '../stanza-error.js';
import { defaultSubscription, type SubscriptionLookup } from './blocking.js';

export interface LastActivityOptions {
  /** Whether a contact may see the account's presence (from/both). Default: the account's roster (`api.subscription`). */
  subscription?: SubscriptionLookup;
  /** The clock in milliseconds (tests). Default `Date.now`. */
  now?: () => number;
}

const STORE_KEY = 'last';

/** XEP-0012: `jabber:iq:last` to the server (uptime) and to accounts (last logout), stored in the 'lastlog' key-value store. */
export function lastActivity(options: LastActivityOptions = {}): XmppModule {
  const now = options.now ?? Date.now;
  return {
    name: 'last-activity',
    setup(api) {
      const started = now();
      const store = api.keyValue('lastlog');
      const subscription = options.subscription ?? defaultSubscription(api);
      // The status of each session's last unavailable presence, stored when the session ends.
      const status = api.sessionState<{ text?: string }>(() => ({}));

      api.discoFeature(NS_LAST);

      // §5: to the server, how long it has been up; no text.
      api.iq({ xmlns: NS_LAST, element: 'query', to: 'host', type: 'get' }, () =>
        xml('query', { xmlns: NS_LAST, seconds: String(Math.max(0, Math.floor((now() - started) / 1000))) }),
      );

      const account: ModuleIqHandler = async (_iq, context) => {
        const user = context.to.local;
        const bare = `${user}@${api.domain}`;
        if (!context.self && context.from.bare !== bare) {
          const state = await subscription(user, context.from.bare);
          if (state !== 'from' && state !== 'both') throw new StanzaErrorException('forbidden', 'you are not subscribed to this account');
        }
        // §3: online now, so zero seconds since it logged out.
        if (api.availableSessionsOf(bare).length > 0) return xml('query', { xmlns: NS_LAST, seconds: '0' });
        const record = await store.get(user, STORE_KEY);
        if (typeof record !== 'object' || record === null || Array.isArray(record) || typeof record.when !== 'number') {
          // Never seen logging out (as ejabberd's mod_last answers).
          throw new StanzaErrorException('service-unavailable');
        }
        const seconds = String(Math.max(0, Math.floor((now() - record.when) / 1000)));
        return xml('query', { xmlns: NS_LAST, seconds }, typeof record.status === 'string' ? record.status : undefined);
      };
      api.iq({ xmlns: NS_LAST, element: 'query', to: 'account', type: 'get' }, account);
      api.iq({ xmlns: NS_LAST, element: 'query', to: 'self', type: 'get' }, account);

      // The status of a session's unavailable broadcast presence (no `to`).
      api.hook(
        'presence/in',
        ({ stanza, session }) => {
          if (session === undefined || stanza.attr('to') !== undefined || stanza.attr('type') !== 'unavailable') return;
          const text = stanza.getChildText('status');
          status.get(session).text = text === undefined || text === '' ? undefined : text;
        },
        10,
      );

      api.hook('session/closed', async ({ session }) => {
        const user = session.user;
        if (user === undefined || session.jid === undefined) return;
        // An account removed meanwhile keeps no record.
        if (!(await api.userExists(user))) return;
        const text = status.peek(session)?.text;
        await store.set(user, STORE_KEY, text === undefined ? { when: now() } : { when: now(), status: text });
      });

      api.hook('account/deleted', async ({ user }) => {
        await store.clear(user);
      });
    },
  };
}
