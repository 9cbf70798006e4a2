import { describe, expect, it } from 'vitest';
import { readUntil, readUntilClose } from '../../../test/support/net.js';
import { login, OPEN, rawStartTls, start } from './support.js';

// In-band registration (XEP-0077) over a raw TLS stream, then a real client logs in with the account.

const REGISTER = (id: string, username: string, password: string) =>
  `<iq type='set' id='${id}'><query xmlns='jabber:iq:register'><username>${username}</username><password>${password}</password></query></iq>`;

describe('in-band registration (XEP-0077)', () => {
  it('creates an account before login when switched on; a taken name gets conflict; the account then logs in', async () => {
    const { port } = await start({ registration: true });
    const secure = await rawStartTls(port);
    secure.write(OPEN);
    const features = await readUntil(secure, /<\/stream:features>/);
    expect(features).toContain("<register xmlns='http://jabber.org/features/iq-register'/>");
    secure.write("<iq type='get' id='g'><query xmlns='jabber:iq:register'/></iq>");
    const form = await readUntil(secure, /<\/iq>/);
    expect(form).toContain('<username/><password/>');
    secure.write(REGISTER('r1', 'mercutio', 'queen-mab'));
    expect(await readUntil(secure, /<iq[^>]*id='r1'[^>]*\/>|<\/iq>/)).toMatch(/<iq type='result' id='r1'\/>/);
    secure.write(REGISTER('r2', 'romeo', 'whatever'));
    const taken = await readUntil(secure, /<\/iq>/);
    expect(taken).toContain("<conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>");
    secure.destroy();
    const { jid } = await login(port, 'mercutio', 'queen-mab');
    expect(jid).toMatch(/^mercutio@localhost\//);
  });

  it('is off by default: a registration attempt before login ends the stream with not-authorized', async () => {
    const { port } = await start();
    const secure = await rawStartTls(port);
    secure.write(OPEN);
    const features = await readUntil(secure, /<\/stream:features>/);
    expect(features).not.toContain('iq-register');
    const result = readUntilClose(secure);
    secure.write(REGISTER('r', 'tybalt', 'x'));
    expect((await result).data).toContain("<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>");
  });

  it('limits registrations per address', async () => {
    const { port } = await start({ registration: true });
    const secure = await rawStartTls(port);
    secure.write(OPEN);
    await readUntil(secure, /<\/stream:features>/);
    const replies: string[] = [];
    for (let i = 0; i < 6; i++) {
      secure.write(REGISTER(`n${i}`, `user${i}`, 'pw'));
      replies.push(await readUntil(secure, /<\/iq>|<iq[^>]*\/>/));
    }
    expect(replies.slice(0, 5).every((reply) => reply.includes("type='result'"))).toBe(true);
    expect(replies[5]).toContain("<resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>");
    secure.destroy();
  });
});
