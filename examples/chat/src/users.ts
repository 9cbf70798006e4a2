import { defaultModules, type ModuleApi, normalizeUsername, xmppServer } from '@portbind/xmpp';
import { openStorage } from './app.js';

// `user add` and `user del` open DATA_DIR/xmpp.sqlite, change it and close it. SQLite's WAL
// journal lets this second process write while the server runs (each waits for the other's
// transaction, at most busy_timeout, 5 s); the server reads accounts from the file at each login,
// so a new account works at once.

/** Create an account; false when it exists already. Throws on an invalid name or password. */
export async function addUser(name: string, password: string, env: Record<string, string | undefined> = process.env): Promise<boolean> {
  const storage = openStorage(env);
  try {
    return await storage.users.create(name, password);
  } finally {
    await storage.close();
  }
}

/**
 * Delete an account and everything the modules keep for it (roster, vCard, offline messages,
 * archive, PEP nodes, block list…): the `account/deleted` event, as in-band removal fires it. Sessions
 * of the account on a running server stay until they log out; they cannot log in again.
 */
export async function deleteUser(name: string, env: Record<string, string | undefined> = process.env): Promise<boolean> {
  const storage = openStorage(env);
  let api: ModuleApi | undefined;
  const server = xmppServer({
    domain: env.XMPP_DOMAIN ?? 'localhost',
    storage,
    modules: [
      ...defaultModules(),
      {
        name: 'chat-cli',
        setup: (moduleApi) => {
          api = moduleApi;
        },
      },
    ],
  });
  try {
    const user = normalizeUsername(name);
    if (user === undefined || !(await storage.users.delete(user))) return false;
    await api?.fire('account/deleted', { user });
    return true;
  } finally {
    await server.close();
  }
}
