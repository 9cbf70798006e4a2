import { defaultModules, memoryStorage, type XmppStorage } from '../src/index.js';
import { type MucOptions, muc } from '../src/modules/muc/index.js';
import { Raw } from './raw-stream.js';
import { start } from './support.js';

// Shared by the MUC tests: a server with the MUC module on conference.localhost, raw occupants.

export const SERVICE = 'conference.localhost';
export const NS_MUC = 'http://jabber.org/protocol/muc';
export const NS_MUC_USER = 'http://jabber.org/protocol/muc#user';
export const NS_MUC_OWNER = 'http://jabber.org/protocol/muc#owner';
export const NS_MUC_ADMIN = 'http://jabber.org/protocol/muc#admin';

export async function mucServer(options: MucOptions = {}, more: { storage?: XmppStorage; accounts?: Record<string, string> } = {}) {
  const module = muc(options);
  const started = await start({
    server: { storage: more.storage ?? memoryStorage(), modules: [...defaultModules(), module] },
    accounts: { nurse: 'n', tybalt: 't', ...more.accounts },
  });
  return { ...started, muc: module };
}

const PASSWORDS: Record<string, string> = { juliet: 'balcony', romeo: 'r0meo!', nurse: 'n', tybalt: 't' };

export async function occupant(port: number, user: string, resource = 'raw'): Promise<Raw> {
  const raw = await Raw.login(port, user, PASSWORDS[user] ?? user, resource);
  raw.send('<presence/>');
  await raw.sync();
  return raw;
}

export const esc = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Send a join; resolves with the self-presence (status 110). */
export async function join(raw: Raw, room: string, nick: string, inner = ''): Promise<string> {
  raw.send(`<presence to='${room}@${SERVICE}/${nick}'><x xmlns='${NS_MUC}'>${inner}</x></presence>`);
  return raw.next(new RegExp(`^<presence[^>]* from='${esc(room)}@${esc(SERVICE)}/${esc(nick)}'[\\s\\S]*code='110'`));
}

/** Join, expecting an error presence: the error element text. */
export async function refusedJoin(raw: Raw, room: string, nick: string, inner = ''): Promise<string> {
  raw.send(`<presence to='${room}@${SERVICE}/${nick}'><x xmlns='${NS_MUC}'>${inner}</x></presence>`);
  return raw.next(new RegExp(`^<presence(?=[^>]* type='error')(?=[^>]* from='${esc(`${room}@${SERVICE}/${nick}`)}')`));
}

/** Create an instant room: join (201) and accept the default configuration with an empty form. */
export async function createRoom(raw: Raw, room: string, nick: string): Promise<string> {
  const self = await join(raw, room, nick);
  const result = await raw.iq(
    `create-${room}`,
    `<query xmlns='${NS_MUC_OWNER}'><x xmlns='jabber:x:data' type='submit'/></query>`,
    `type='set' to='${room}@${SERVICE}'`,
  );
  if (!result.includes("type='result'")) throw new Error(`instant room refused: ${result}`);
  return self;
}

/** Submit configuration fields as the owner; the IQ answer. */
export function configure(raw: Raw, room: string, fields: Record<string, string>, id = `cfg${Math.random().toString(36).slice(2)}`) {
  const body = Object.entries(fields)
    .map(([name, value]) => `<field var='${name}'><value>${value}</value></field>`)
    .join('');
  return raw.iq(
    id,
    `<query xmlns='${NS_MUC_OWNER}'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>${body}</x></query>`,
    `type='set' to='${room}@${SERVICE}'`,
  );
}

export function admin(raw: Raw, room: string, items: string, id = `adm${Math.random().toString(36).slice(2)}`) {
  return raw.iq(id, `<query xmlns='${NS_MUC_ADMIN}'>${items}</query>`, `type='set' to='${room}@${SERVICE}'`);
}
