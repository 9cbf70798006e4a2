import { once } from 'node:events';
import { connect as tlsConnect } from 'node:tls';
import { describe, expect, it } from 'vitest';
import { rawConnect, readUntil } from '../../../test/support/net.js';
import { memoryStorage, parseXml, xml } from '../src/index.js';
import { capsVerification, discoInfoOf } from '../src/modules/caps.js';
import { RawClient } from './pep-raw.js';
import { OPEN, start } from './support.js';

// Entity capabilities (XEP-0115): the verification string, the server's own caps as a stream
// feature, and clients' caps resolved and cached by verified ver.

const NICK_NOTIFY = 'http://jabber.org/protocol/nick+notify';

describe('entity capabilities (XEP-0115)', () => {
  it("computes the verification strings of XEP-0115's examples (§5.2 and §5.3) and refuses duplicates (§5.4)", () => {
    const features = [
      'http://jabber.org/protocol/caps',
      'http://jabber.org/protocol/disco#info',
      'http://jabber.org/protocol/disco#items',
      'http://jabber.org/protocol/muc',
    ];
    expect(capsVerification({ identities: [{ category: 'client', type: 'pc', name: 'Exodus 0.9.1' }], features })).toBe(
      'QgayPKawpkPSDYmwT/WM94uAlu0=',
    );
    const form = xml(
      'x',
      { xmlns: 'jabber:x:data', type: 'result' },
      xml('field', { var: 'FORM_TYPE', type: 'hidden' }, xml('value', {}, 'urn:xmpp:dataforms:softwareinfo')),
      xml('field', { var: 'ip_version' }, xml('value', {}, 'ipv4'), xml('value', {}, 'ipv6')),
      xml('field', { var: 'os' }, xml('value', {}, 'Mac')),
      xml('field', { var: 'os_version' }, xml('value', {}, '10.5.1')),
      xml('field', { var: 'software' }, xml('value', {}, 'Psi')),
      xml('field', { var: 'software_version' }, xml('value', {}, '0.11')),
    );
    // Parsed back so that the form's children carry their namespace, as a received one does.
    const query = parseXml(
      xml(
        'query',
        { xmlns: 'http://jabber.org/protocol/disco#info' },
        xml('identity', { 'xml:lang': 'en', category: 'client', name: 'Psi 0.11', type: 'pc' }),
        xml('identity', { 'xml:lang': 'el', category: 'client', name: 'Ψ 0.11', type: 'pc' }),
        ...features.map((feature) => xml('feature', { var: feature })),
        form,
      ).toString(),
    );
    expect(query).toBeDefined();
    expect(capsVerification(discoInfoOf(query as NonNullable<typeof query>))).toBe('q07IKJEyjvHSyhy//CH0CxmKi8w=');
    expect(capsVerification({ identities: [{ category: 'client', type: 'pc' }], features: ['a', 'a'] })).toBeUndefined();
    expect(capsVerification({ identities: [], features: ['a'] }, 'md4')).toBeUndefined();
  });

  it("offers the server's caps as a stream feature, hashing its disco#info (§6.3)", async () => {
    const { port } = await start({ server: { storage: memoryStorage() } });
    const socket = await rawConnect(port);
    socket.write(OPEN);
    await readUntil(socket, /<\/stream:features>/);
    socket.write("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    await readUntil(socket, /<proceed/);
    const secure = tlsConnect({ socket, rejectUnauthorized: false, servername: 'localhost' });
    await once(secure, 'secureConnect');
    secure.write(OPEN);
    await readUntil(secure, /<\/stream:features>/);
    secure.write(
      `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from('\u0000juliet\u0000balcony').toString('base64')}</auth>`,
    );
    await readUntil(secure, /<success/);
    secure.write(OPEN);
    const features = await readUntil(secure, /<\/stream:features>/);
    const c = /<c xmlns='http:\/\/jabber.org\/protocol\/caps' hash='sha-1' node='[^']+' ver='([^']+)'\/>/.exec(features);
    expect(c).not.toBeNull();
    secure.write(
      `<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq><iq type='get' id='d' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`,
    );
    const answer = await readUntil(secure, /id='d'[\s\S]*<\/iq>/);
    const info = parseXml(answer.slice(answer.indexOf("<iq type='result' id='d'")));
    const query = info?.getChild('query', 'http://jabber.org/protocol/disco#info');
    expect(query).toBeDefined();
    expect(capsVerification(discoInfoOf(query as NonNullable<typeof query>))).toBe(c?.[1]);
    expect(query?.toString()).toContain("var='http://jabber.org/protocol/caps'");
    // The same answer to the caps node (§6.2), as a client verifying the hash asks.
    const node = /node='([^']+)'/.exec(c?.[0] ?? '')?.[1];
    secure.write(
      `<iq type='get' id='n' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info' node='${node}#${c?.[1]}'/></iq>`,
    );
    const byNode = await readUntil(secure, /id='n'[\s\S]*<\/iq>/);
    const nodeQuery = parseXml(byNode.slice(byNode.indexOf('<iq')))?.getChild('query', 'http://jabber.org/protocol/disco#info');
    expect(nodeQuery?.attr('node')).toBe(`${node}#${c?.[1]}`);
    expect(capsVerification(discoInfoOf(nodeQuery as NonNullable<typeof nodeQuery>))).toBe(c?.[1]);
    secure.destroy();
  });

  it('asks a client for its features once per verified ver, and again for a ver its answer does not hash to', async () => {
    const { port } = await start({ server: { storage: memoryStorage() }, accounts: { nurse: 'nurse' } });
    const juliet = await RawClient.login(port, 'juliet', 'balcony', 'a');
    const romeo = await RawClient.login(port, 'romeo', 'r0meo!', 'b');
    const nurse = await RawClient.login(port, 'nurse', 'nurse', 'c');
    const mallory = await RawClient.login(port, 'nurse', 'nurse', 'd');
    await juliet.announce([NICK_NOTIFY], 'query');
    // The same caps: known, not asked.
    await romeo.announce([NICK_NOTIFY], 'cached');
    expect(juliet.discoQueries).toBe(1);
    expect(romeo.discoQueries).toBe(0);
    // A ver the answer does not hash to is used for that client only, never cached: the next one is asked too.
    await nurse.announce(['urn:example:one+notify'], 'query', 'bogusbogusbogusbogusbogus0=');
    await mallory.announce(['urn:example:two+notify'], 'query', 'bogusbogusbogusbogusbogus0=');
    expect(nurse.discoQueries).toBe(1);
    expect(mallory.discoQueries).toBe(1);
    for (const client of [juliet, romeo, nurse, mallory]) client.close();
  });
});
