import { type Element, xml } from '@xmpp/client';
import { describe, expect, it } from 'vitest';
import { readUntil } from '../../../test/support/net.js';
import { StanzaErrorException, xml as serverXml } from '../src/index.js';
import { login, rawLogin, start } from './support.js';

// Handler hooks, IQ handlers and disco features, vCard-temp (XEP-0054) and carbons (XEP-0280),
// with a real client (@xmpp/client).

type Client = Awaited<ReturnType<typeof login>>['xmpp'];

function next(xmpp: Client, test: (stanza: Element) => boolean): Promise<Element> {
  return new Promise((resolve) => {
    xmpp.on('stanza', (stanza: Element) => {
      if (test(stanza)) resolve(stanza);
    });
  });
}

describe('hooks and handlers', () => {
  it('a message hook rewrites, drops and bounces stanzas', async () => {
    const { port, server } = await start();
    server.on('message', (message) => {
      const body = message.getChild('body');
      if (body?.text().includes('spam')) return null;
      if (body?.text().includes('forbidden')) throw new StanzaErrorException('policy-violation', 'not here');
      if (body !== undefined) body.children.splice(0, body.children.length, body.text().toUpperCase());
      return undefined;
    });
    const juliet = await login(port, 'juliet', 'balcony');
    const romeo = await login(port, 'romeo', 'r0meo!');
    const bodies: string[] = [];
    juliet.xmpp.on('stanza', (s: Element) => {
      if (s.is('message')) bodies.push(s.getChildText('body') ?? '');
    });
    const bounced = next(romeo.xmpp, (s) => s.is('message') && s.attrs.type === 'error');
    for (const text of ['buy spam now', 'hello', 'forbidden words']) {
      await romeo.xmpp.send(xml('message', { to: 'juliet@localhost', type: 'chat' }, xml('body', {}, text)));
    }
    const error = await bounced;
    expect(error.getChild('error')?.getChild('policy-violation', 'urn:ietf:params:xml:ns:xmpp-stanzas')).toBeDefined();
    await romeo.xmpp.iqCaller.request(xml('iq', { type: 'get', to: 'localhost' }, xml('ping', { xmlns: 'urn:xmpp:ping' })));
    expect(bodies).toEqual(['HELLO']);
  });

  it('answers IQs of a registered namespace and lists it in disco#info', async () => {
    const { port, server } = await start();
    server.iq('urn:example:uptime', (iq, { session }) =>
      serverXml('uptime', { xmlns: 'urn:example:uptime', for: session.jid?.bare }, iq.attr('type') === 'get' ? '42' : 'set'),
    );
    const { xmpp } = await login(port, 'juliet', 'balcony');
    const result = await xmpp.iqCaller.request(xml('iq', { type: 'get', to: 'localhost' }, xml('uptime', { xmlns: 'urn:example:uptime' })));
    expect(result.getChild('uptime')?.attrs.for).toBe('juliet@localhost');
    expect(result.getChildText('uptime')).toBe('42');
    const info = await xmpp.iqCaller.get(xml('query', { xmlns: 'http://jabber.org/protocol/disco#info' }), 'localhost');
    const features = info.children.filter((c): c is Element => typeof c !== 'string' && c.name === 'feature').map((f) => f.attrs.var);
    expect(features).toEqual(expect.arrayContaining(['urn:example:uptime', 'urn:xmpp:carbons:2', 'vcard-temp', 'urn:xmpp:ping']));
  });
});

describe('vCard-temp (XEP-0054)', () => {
  it('a user sets their vCard; others read it; nobody else may set it', async () => {
    const { port } = await start();
    const juliet = await login(port, 'juliet', 'balcony');
    const romeo = await login(port, 'romeo', 'r0meo!');
    await juliet.xmpp.iqCaller.set(xml('vCard', { xmlns: 'vcard-temp' }, xml('FN', {}, 'Juliet Capulet'), xml('NICKNAME', {}, 'Jules')));
    const card = await romeo.xmpp.iqCaller.get(xml('vCard', { xmlns: 'vcard-temp' }), 'juliet@localhost');
    expect(card.getChildText('FN')).toBe('Juliet Capulet');
    expect(card.getChildText('NICKNAME')).toBe('Jules');
    await expect(
      romeo.xmpp.iqCaller.set(xml('vCard', { xmlns: 'vcard-temp' }, xml('FN', {}, 'Not Juliet')), 'juliet@localhost'),
    ).rejects.toMatchObject({
      condition: 'not-allowed',
    });
    const empty = await juliet.xmpp.iqCaller.get(xml('vCard', { xmlns: 'vcard-temp' }), 'romeo@localhost');
    expect(empty.children).toEqual([]);
  });

  it('refuses a vCard over the size limit with <not-acceptable/> over a raw stream; the stored card and the stream stay', async () => {
    const { port } = await start();
    const socket = await rawLogin(port, 'juliet', 'balcony');
    socket.write("<iq type='set' id='small'><vCard xmlns='vcard-temp'><FN>Juliet</FN></vCard></iq>");
    await readUntil(socket, /id='small'/);
    // 70 KB of text in one field: over the default 64 KiB, under the 256 KiB stanza limit.
    socket.write(`<iq type='set' id='big'><vCard xmlns='vcard-temp'><DESC>${'x'.repeat(70_000)}</DESC></vCard></iq>`);
    const answer = await readUntil(socket, /id='big'[\s\S]*<\/iq>/);
    expect(answer).toMatch(/type='error'/);
    expect(answer).toContain("<not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>");
    socket.write("<iq type='get' id='read'><vCard xmlns='vcard-temp'/></iq>");
    const card = await readUntil(socket, /id='read'[\s\S]*<\/iq>/);
    expect(card).toContain('<FN>Juliet</FN>');
    expect(card).not.toContain('xxxx');
    socket.destroy();
  });
});

describe('message carbons (XEP-0280)', () => {
  it('copies chat messages sent and received on one resource to the user’s other carbon-enabled resources', async () => {
    const { port } = await start();
    const phone = await login(port, 'juliet', 'balcony', 'phone');
    const laptop = await login(port, 'juliet', 'balcony', 'laptop');
    const romeo = await login(port, 'romeo', 'r0meo!', 'orchard');
    await phone.xmpp.iqCaller.set(xml('enable', { xmlns: 'urn:xmpp:carbons:2' }));

    const sentCopy = next(phone.xmpp, (s) => s.is('message') && s.getChild('sent', 'urn:xmpp:carbons:2') !== undefined);
    await laptop.xmpp.send(xml('message', { to: 'romeo@localhost/orchard', type: 'chat' }, xml('body', {}, 'from the laptop')));
    const sent = (await sentCopy).getChild('sent')?.getChild('forwarded')?.getChild('message');
    expect(sent?.getChildText('body')).toBe('from the laptop');
    expect(sent?.attrs.from).toBe('juliet@localhost/laptop');

    const receivedCopy = next(phone.xmpp, (s) => s.is('message') && s.getChild('received', 'urn:xmpp:carbons:2') !== undefined);
    await romeo.xmpp.send(xml('message', { to: 'juliet@localhost/laptop', type: 'chat' }, xml('body', {}, 'to the laptop')));
    const received = await receivedCopy;
    expect(received.attrs.from).toBe('juliet@localhost');
    expect(received.getChild('received')?.getChild('forwarded')?.getChild('message')?.getChildText('body')).toBe('to the laptop');
  });
});

describe('the README', () => {
  it('echo bot answers a message to echo@localhost, in about ten lines', async () => {
    const { port, server } = await start();
    server.on('message', (message, { session }) => {
      const body = message.getChildText('body');
      if (message.attr('to') !== 'echo@localhost' || body === undefined) return undefined;
      session.send(serverXml('message', { from: 'echo@localhost', to: message.attr('from'), type: 'chat' }, serverXml('body', {}, body)));
      return null;
    });
    const juliet = await login(port, 'juliet', 'balcony');
    const echoed = next(juliet.xmpp, (s) => s.is('message') && s.attrs.from === 'echo@localhost');
    await juliet.xmpp.send(xml('message', { to: 'echo@localhost', type: 'chat' }, xml('body', {}, 'hello, echo')));
    const answer = await echoed;
    expect(answer.getChildText('body')).toBe('hello, echo');
    expect(answer.attrs.to).toBe(juliet.jid);
  });
});
