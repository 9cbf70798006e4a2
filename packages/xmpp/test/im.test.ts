import { type Element, xml } from '@xmpp/client';
import { describe, expect, it } from 'vitest';
import { login, start } from './support.js';

// RFC 6121 with a real client (@xmpp/client): rosters, subscriptions, presence, priorities,
// offline messages.

type Client = Awaited<ReturnType<typeof login>>['xmpp'];

/** The next stanza matching `test`. */
function next(xmpp: Client, test: (stanza: Element) => boolean): Promise<Element> {
  return new Promise((resolve) => {
    xmpp.on('stanza', (stanza: Element) => {
      if (test(stanza)) resolve(stanza);
    });
  });
}

async function roster(xmpp: Client): Promise<Array<Record<string, string | undefined>>> {
  const query = await xmpp.iqCaller.get(xml('query', { xmlns: 'jabber:iq:roster' }));
  return query.children.filter((child): child is Element => typeof child !== 'string').map((item) => item.attrs);
}

describe('rosters and subscriptions', () => {
  it('adds a contact with a roster set and pushes it; versioning answers an up-to-date client with nothing', async () => {
    const { port } = await start();
    const { xmpp } = await login(port, 'juliet', 'balcony');
    expect(await roster(xmpp)).toEqual([]);
    const push = next(xmpp, (s) => s.is('iq') && s.attrs.type === 'set');
    await xmpp.iqCaller.set(
      xml('query', { xmlns: 'jabber:iq:roster' }, xml('item', { jid: 'romeo@localhost', name: 'Romeo' }, xml('group', {}, 'Montague'))),
    );
    const pushed = (await push).getChild('query')?.getChild('item');
    expect(pushed?.attrs).toMatchObject({ jid: 'romeo@localhost', name: 'Romeo', subscription: 'none' });
    expect(pushed?.getChildText('group')).toBe('Montague');
    const full = await xmpp.iqCaller.get(xml('query', { xmlns: 'jabber:iq:roster' }));
    const version = full.attrs.ver as string;
    expect(version).not.toBe('0');
    const upToDate = await xmpp.iqCaller.request(xml('iq', { type: 'get' }, xml('query', { xmlns: 'jabber:iq:roster', ver: version })));
    expect(upToDate.children).toEqual([]);
  });

  it('runs the subscription handshake: subscribe, subscribed, then presence flows to the subscriber', async () => {
    const { port } = await start();
    const juliet = await login(port, 'juliet', 'balcony', 'balcony');
    const romeo = await login(port, 'romeo', 'r0meo!', 'orchard');
    await roster(juliet.xmpp);
    await roster(romeo.xmpp);
    const request = next(juliet.xmpp, (s) => s.is('presence') && s.attrs.type === 'subscribe');
    await romeo.xmpp.send(xml('presence', { to: 'juliet@localhost', type: 'subscribe' }));
    expect((await request).attrs.from).toBe('romeo@localhost');

    const approved = next(romeo.xmpp, (s) => s.is('presence') && s.attrs.type === 'subscribed');
    const julietsPresence = next(romeo.xmpp, (s) => s.is('presence') && s.attrs.type === undefined && s.attrs.from === juliet.jid);
    await juliet.xmpp.send(xml('presence', { to: 'romeo@localhost', type: 'subscribed' }));
    expect((await approved).attrs.from).toBe('juliet@localhost');
    await julietsPresence;
    expect(await roster(romeo.xmpp)).toEqual([expect.objectContaining({ jid: 'juliet@localhost', subscription: 'to' })]);
    expect(await roster(juliet.xmpp)).toEqual([expect.objectContaining({ jid: 'romeo@localhost', subscription: 'from' })]);

    // Juliet's later presence reaches Romeo; her going offline too.
    const away = next(romeo.xmpp, (s) => s.is('presence') && s.getChildText('show') === 'away');
    await juliet.xmpp.send(xml('presence', {}, xml('show', {}, 'away')));
    expect((await away).attrs.from).toBe(juliet.jid);
    const offline = next(romeo.xmpp, (s) => s.is('presence') && s.attrs.type === 'unavailable');
    await juliet.xmpp.stop();
    expect((await offline).attrs.from).toBe(juliet.jid);
  });

  it("removing an account (XEP-0077 §3.2) ends its subscriptions: the contact's roster shows none, both ways", async () => {
    const { port } = await start();
    const juliet = await login(port, 'juliet', 'balcony', 'balcony');
    const romeo = await login(port, 'romeo', 'r0meo!', 'orchard');
    await roster(juliet.xmpp);
    await roster(romeo.xmpp);
    // A mutual subscription: romeo ⇄ juliet.
    for (const [from, to, name] of [
      [romeo, juliet, 'juliet'],
      [juliet, romeo, 'romeo'],
    ] as const) {
      const asked = next(to.xmpp, (s) => s.is('presence') && s.attrs.type === 'subscribe');
      await from.xmpp.send(xml('presence', { to: `${name}@localhost`, type: 'subscribe' }));
      await asked;
      const approved = next(from.xmpp, (s) => s.is('presence') && s.attrs.type === 'subscribed');
      await to.xmpp.send(xml('presence', { to: `${from === romeo ? 'romeo' : 'juliet'}@localhost`, type: 'subscribed' }));
      await approved;
    }
    expect(await roster(romeo.xmpp)).toEqual([expect.objectContaining({ jid: 'juliet@localhost', subscription: 'both' })]);
    const revoked = next(romeo.xmpp, (s) => s.is('presence') && s.attrs.type === 'unsubscribed' && s.attrs.from === 'juliet@localhost');
    const cancelled = next(romeo.xmpp, (s) => s.is('presence') && s.attrs.type === 'unsubscribe' && s.attrs.from === 'juliet@localhost');
    await juliet.xmpp.iqCaller.set(xml('query', { xmlns: 'jabber:iq:register' }, xml('remove')));
    await Promise.all([revoked, cancelled]);
    expect(await roster(romeo.xmpp)).toEqual([expect.objectContaining({ jid: 'juliet@localhost', subscription: 'none' })]);
  });

  it('delivers a subscription request that arrived while the contact was offline at their next login', async () => {
    const { port } = await start();
    const romeo = await login(port, 'romeo', 'r0meo!');
    await romeo.xmpp.send(xml('presence', { to: 'juliet@localhost', type: 'subscribe' }));
    await romeo.xmpp.iqCaller.get(xml('query', { xmlns: 'jabber:iq:roster' })); // a round trip: the request was handled
    const juliet = await login(port, 'juliet', 'balcony', undefined, { presence: false });
    const request = next(juliet.xmpp, (s) => s.is('presence') && s.attrs.type === 'subscribe');
    await juliet.xmpp.send(xml('presence'));
    expect((await request).attrs.from).toBe('romeo@localhost');
  });
});

describe('delivery to a bare JID', () => {
  it('goes to the available resource of highest priority', async () => {
    const { port } = await start();
    const phone = await login(port, 'juliet', 'balcony', 'phone', { presence: 1 });
    const laptop = await login(port, 'juliet', 'balcony', 'laptop', { presence: 5 });
    const romeo = await login(port, 'romeo', 'r0meo!');
    let phoneGot = false;
    phone.xmpp.on('stanza', (s: Element) => {
      if (s.is('message')) phoneGot = true;
    });
    const toLaptop = next(laptop.xmpp, (s) => s.is('message'));
    await romeo.xmpp.send(xml('message', { to: 'juliet@localhost', type: 'chat' }, xml('body', {}, 'to the best resource')));
    expect((await toLaptop).getChildText('body')).toBe('to the best resource');
    await romeo.xmpp.iqCaller.get(xml('query', { xmlns: 'jabber:iq:roster' }));
    expect(phoneGot).toBe(false);
  });

  it('is stored while the user is offline and delivered, with a delay stamp, at the next login', async () => {
    const { port } = await start();
    const romeo = await login(port, 'romeo', 'r0meo!');
    await romeo.xmpp.send(xml('message', { to: 'juliet@localhost', type: 'chat' }, xml('body', {}, 'while you were out')));
    await romeo.xmpp.iqCaller.get(xml('query', { xmlns: 'jabber:iq:roster' }));
    const juliet = await login(port, 'juliet', 'balcony', undefined, { presence: false });
    const stored = next(juliet.xmpp, (s) => s.is('message'));
    await juliet.xmpp.send(xml('presence'));
    const message = await stored;
    expect(message.getChildText('body')).toBe('while you were out');
    expect(message.attrs.from).toMatch(/^romeo@localhost\//);
    expect(message.getChild('delay', 'urn:xmpp:delay')?.attrs.stamp).toMatch(/^\d{4}-\d\d-\d\dT/);
  });
});
