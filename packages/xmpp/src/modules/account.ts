// In-band account management after login (XEP-0077 v2.4 §3.2, §3.3), as Prosody's
// mod_user_account_management: `jabber:iq:register` to the server (or with no `to`) reads the
// registration, changes the password, or removes the account. Registration before login is the
// core's (it happens before there is a session to route).

import { type XmlElement, xml } from '../element.js';
import type { ModuleApi, ModuleIqHandler, XmppModule } from '../module.js';
import { NS_REGISTER } from '../namespaces.js';
import { normalizeUsername } from '../sasl/index.js';
import type { XmppSession } from '../session.js';
import { StanzaErrorException } from '../stanza-error.js';
import { StreamError } from '../stream-error.js';

export interface AccountOptions {
  /** Password changes in-band (§3.3). Default true; false answers `<not-allowed/>`. */
  passwordChange?: boolean;
  /** Account removal in-band (§3.2). Default true; false answers `<not-allowed/>`. */
  removal?: boolean;
  /**
   * After a password change, end the account's other sessions with a `<reset/>` stream error, as
   * Prosody does (whoever had the old password is logged out). Default true.
   */
  closeOtherSessions?: boolean;
}

/** XEP-0077 after login: `<registered/>`, password change, `<remove/>`. */
export function account(options: AccountOptions = {}): XmppModule {
  return {
    name: 'account',
    setup(api) {
      const handler: ModuleIqHandler = async (iq, context) => {
        const session = context.session;
        const user = session?.user;
        if (session === undefined || user === undefined) throw new StanzaErrorException('forbidden', 'log in first');
        const query = context.payload;
        if (iq.attr('type') === 'get') {
          return xml('query', { xmlns: NS_REGISTER }, xml('registered'), xml('username', {}, user), xml('password'));
        }
        if (query.getChild('remove') !== undefined) return remove(api, options, query, session, user);
        return changePassword(api, options, query, session, user);
      };
      api.discoFeature(NS_REGISTER);
      // "To the server": with `to` set to the domain, or with none (then the IQ is to the account itself).
      api.iq({ xmlns: NS_REGISTER, element: 'query', to: 'host' }, handler);
      api.iq({ xmlns: NS_REGISTER, element: 'query', to: 'self' }, handler);
    },
  };
}

async function changePassword(
  api: ModuleApi,
  options: AccountOptions,
  query: XmlElement,
  session: XmppSession,
  user: string,
): Promise<undefined> {
  if (options.passwordChange === false) throw new StanzaErrorException('not-allowed', 'password changes are switched off on this server');
  // §3.3: the server may refuse a channel it does not consider safe for a password in clear.
  if (!session.secure && !session.loopback) throw new StanzaErrorException('not-authorized', 'change your password over TLS');
  const username = query.getChildText('username');
  const password = query.getChildText('password');
  if (username === undefined || password === undefined) {
    throw new StanzaErrorException('bad-request', 'a password change needs <username/> and <password/>');
  }
  if (normalizeUsername(username) !== user) throw new StanzaErrorException('bad-request', 'the username must be your own');
  // §3.3: an empty password never replaces the existing one.
  if (password === '') throw new StanzaErrorException('not-acceptable', 'the password cannot be empty');
  let changed: boolean;
  try {
    changed = await api.storage.users.setPassword(user, password);
  } catch (error) {
    // SASLprep refused it (a control character, a prohibited code point).
    throw new StanzaErrorException('not-acceptable', error instanceof Error ? error.message : 'this password cannot be used');
  }
  if (!changed) throw new StanzaErrorException('item-not-found', 'this account no longer exists');
  api.logger.info({ user, domain: api.domain }, 'password changed in-band');
  if (options.closeOtherSessions !== false) {
    afterReply(() => {
      for (const other of api.sessionsOf(`${user}@${api.domain}`)) {
        if (other !== session) other.close(new StreamError('reset', 'password changed'));
      }
    });
  }
  return undefined;
}

async function remove(api: ModuleApi, options: AccountOptions, query: XmlElement, session: XmppSession, user: string): Promise<undefined> {
  if (options.removal === false) throw new StanzaErrorException('not-allowed', 'accounts cannot be removed in-band on this server');
  // §3.2: <remove/> must be the query's only child.
  if (query.getChildren().length !== 1) throw new StanzaErrorException('bad-request', '<remove/> must be the only child of <query/>');
  if (!(await api.storage.users.delete(user))) throw new StanzaErrorException('item-not-found', 'this account no longer exists');
  api.logger.info({ user, domain: api.domain }, 'account removed in-band');
  // The result first; then every session of the account ends with <not-authorized/> (§3.2), as
  // Prosody's mod_c2s does on user-deleted; then modules delete the account's data.
  afterReply(() => {
    for (const other of [session, ...api.sessionsOf(`${user}@${api.domain}`).filter((s) => s !== session)]) {
      other.close(new StreamError('not-authorized', 'account deleted'));
    }
    void api
      .fire('account/deleted', { user })
      .catch((error: unknown) => api.logger.error({ err: error, user }, 'cleaning up a removed account failed'));
  });
  return undefined;
}

/** Run after the IQ's result is written (the host sends it when the handler's promise settles). */
function afterReply(work: () => void): void {
  setImmediate(work);
}
