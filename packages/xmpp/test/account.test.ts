import type { Socket } from 'node:net';
import { xml as clientXml } from '@xmpp/client';
import { describe, expect, it } from 'vitest';
import { readUntil, readUntilClose } from '../../../test/support/net.js';
import { defaultModules, memoryStorage } from '../src/index.js';
import { type AccountOptions, account } from '../src/modules/account.js';
import { login, rawLogin, start } from './support.js';

// In-band account management after login (XEP-0077 §3.2, §3.3): @xmpp/client changes its
// password and logs in with the new one; removal ends every session and the account; raw streams
// for each error.

const STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';
const STREAMS = 'urn:ietf:params:xml:ns:xmpp-streams';

async function ask(socket: Socket, id: string, attrs: string, body: string): Promise<string> {
  socket.write(`<iq id='${id}' ${attrs}>${body}</iq>`);
  const text = await readUntil(socket, new RegExp(`<iq[^>]* id='${id}'[^>]*(/>|>[\\s\\S]*</iq>)`));
  return text.slice(text.indexOf('<iq'));
}

const change = (username: string, password: string) =>
  `<query xmlns='jabber:iq:register'><username>${username}</username><password>${password}</password></query>`;

async function server(options: AccountOptions = {}) {
  return start({
    server: {
      storage: memoryStorage(),
      modules: [...defaultModules().filter((module) => !['account'].includes(module.name)), account(options)],
    },
  });
}

describe('password change (XEP-0077 §3.3)', () => {
  it('@xmpp/client changes its password; the new one logs in, the old one is refused', async () => {
    const { port } = await server();
    const { xmpp } = await login(port, 'juliet', 'balcony');
    const reply = await xmpp.iqCaller.request(
      clientXml(
        'iq',
        { type: 'set', to: 'localhost' },
        clientXml('query', { xmlns: 'jabber:iq:register' }, clientXml('username', {}, 'juliet'), clientXml('password', {}, 'n3w-balcony')),
      ),
    );
    expect(reply.attrs.type).toBe('result');
    await xmpp.stop();
    const again = await login(port, 'juliet', 'n3w-balcony');
    expect(again.jid).toMatch(/^juliet@localhost\//);
    await expect(login(port, 'juliet', 'balcony')).rejects.toMatchObject({ condition: 'not-authorized' });
  });

  it('reads the registration; the other sessions of the account end with <reset/>', async () => {
    const { port } = await server();
    const a = await rawLogin(port, 'juliet', 'balcony', 'a');
    const b = await rawLogin(port, 'juliet', 'balcony', 'b');
    const registered = await ask(a, 'g', "type='get'", "<query xmlns='jabber:iq:register'/>");
    expect(registered).toContain("<query xmlns='jabber:iq:register'><registered/><username>juliet</username><password/></query>");
    const disco = await ask(a, 'd', "type='get' to='localhost'", "<query xmlns='http://jabber.org/protocol/disco#info'/>");
    expect(disco).toContain("<feature var='jabber:iq:register'/>");
    const closed = readUntilClose(b);
    // No `to`: the same as to the server.
    expect(await ask(a, 'c', "type='set'", change('juliet', 'n3w'))).toMatch(/type='result'/);
    const { data } = await closed;
    expect(data).toContain(`<reset xmlns='${STREAMS}'/>`);
    // The session that changed it stays.
    expect(await ask(a, 'p', "type='get' to='localhost'", "<ping xmlns='urn:xmpp:ping'/>")).toContain("type='result'");
    a.destroy();
  });

  it('bad input: an empty password, another username, missing fields, a password SASLprep refuses; the password stays', async () => {
    const { port } = await server();
    const juliet = await rawLogin(port, 'juliet', 'balcony');
    for (const [id, body, condition] of [
      ['empty', change('juliet', ''), 'not-acceptable'],
      ['emptytag', "<query xmlns='jabber:iq:register'><username>juliet</username><password/></query>", 'not-acceptable'],
      ['other', change('romeo', 'stolen'), 'bad-request'],
      ['nouser', "<query xmlns='jabber:iq:register'><password>x</password></query>", 'bad-request'],
      ['nopass', "<query xmlns='jabber:iq:register'><username>juliet</username></query>", 'bad-request'],
      ['private-use', change('juliet', 'secret\uE000'), 'not-acceptable'],
      ['extra', "<query xmlns='jabber:iq:register'><remove/><username>juliet</username></query>", 'bad-request'],
    ] as const) {
      const reply = await ask(juliet, id, "type='set' to='localhost'", body);
      expect(reply, id).toContain("type='error'");
      expect(reply, id).toContain(`<${condition} xmlns='${STANZAS}'/>`);
    }
    juliet.destroy();
    expect((await login(port, 'juliet', 'balcony')).jid).toMatch(/^juliet@localhost\//);
    expect((await login(port, 'romeo', 'r0meo!')).jid).toMatch(/^romeo@localhost\//);
  });

  it('switched off: not-allowed', async () => {
    const { port } = await server({ passwordChange: false, removal: false });
    const juliet = await rawLogin(port, 'juliet', 'balcony');
    expect(await ask(juliet, 'c', "type='set' to='localhost'", change('juliet', 'n3w'))).toContain(`<not-allowed xmlns='${STANZAS}'/>`);
    expect(await ask(juliet, 'r', "type='set'", "<query xmlns='jabber:iq:register'><remove/></query>")).toContain(
      `<not-allowed xmlns='${STANZAS}'/>`,
    );
    juliet.destroy();
  });
});

describe('account removal (XEP-0077 §3.2)', () => {
  it('answers, then ends every session of the account with <not-authorized/>; the account can no longer log in', async () => {
    const { port } = await server();
    const a = await rawLogin(port, 'juliet', 'balcony', 'a');
    const b = await rawLogin(port, 'juliet', 'balcony', 'b');
    const romeo = await login(port, 'romeo', 'r0meo!');
    const closedA = readUntilClose(a);
    const closedB = readUntilClose(b);
    a.write("<iq id='rm' type='set'><query xmlns='jabber:iq:register'><remove/></query></iq>");
    const { data } = await closedA;
    // The result comes before the stream error.
    const result = /<iq [^>]*id='rm'[^>]*\/>/.exec(data);
    expect(result?.[0]).toContain("type='result'");
    expect(data.indexOf(`<not-authorized xmlns='${STREAMS}'/>`)).toBeGreaterThan(result?.index ?? Number.POSITIVE_INFINITY);
    expect((await closedB).data).toContain(`<not-authorized xmlns='${STREAMS}'/>`);
    await expect(login(port, 'juliet', 'balcony')).rejects.toMatchObject({ condition: 'not-authorized' });
    // Nobody else is affected.
    expect((romeo.xmpp as unknown as { status: string }).status).toBe('online');
  });
});
