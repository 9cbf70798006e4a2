import { createHash } from 'node:crypto';
import { PortService } from '@portbind/core';
import { httpAdapter } from '@portbind/http';
import { type Element, xml, client as xmppClient } from '@xmpp/client';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { WebSocket } from 'ws';
import { portOf, selfSignedCert } from '../../../test/support/net.js';
import { MemoryUserStore, memoryStorage, xmppServer } from '../src/index.js';
import { clients } from './support.js';

// The modules a modern client uses, over XMPP-over-WebSocket (RFC 7395) with @xmpp/client next to a
// TCP client: stream management enabled by the client itself, the message archive, PEP with +notify,
// and blocking. Same sessions and routing as TCP.
(globalThis as { WebSocket?: unknown }).WebSocket ??= WebSocket;

const services: PortService[] = [];
afterEach(async () => {
  await Promise.all(services.splice(0).map((s) => s.stop()));
});

type Client = ReturnType<typeof xmppClient>;
/** What @xmpp/client has at run time and its types leave out. */
interface Untyped {
  once(event: string, listener: () => void): void;
  removeListener(event: string, listener: (stanza: Element) => void): void;
  iqCallee: { get(xmlns: string, element: string, handler: () => Element): void };
}
const untyped = (client: Client): Untyped => client as unknown as Untyped;

async function start() {
  const users = new MemoryUserStore({ iterations: 4096 });
  await users.create('juliet', 'balcony');
  await users.create('romeo', 'r0meo!');
  const server = xmppServer({ domain: 'localhost', storage: memoryStorage(), users, allowPlaintext: true });
  const service = new PortService({ env: {}, gracePeriodMs: 2000 });
  services.push(service);
  const http = service.bind(httpAdapter({ upgrades: { '/xmpp-websocket': server.websocket() } }), { port: 0, host: '127.0.0.1' });
  const tcp = service.bind(server.c2s(), { port: 0, host: '127.0.0.1', tls: await selfSignedCert() });
  await service.start();
  return { server, httpPort: portOf(http), tcpPort: portOf(tcp) };
}

async function connect(service: string, username: string, password: string): Promise<{ client: Client; jid: string }> {
  const client = xmppClient({ timeout: 8000, service, domain: 'localhost', username, password, resource: username });
  client.on('error', () => {});
  clients.push(client);
  const online = new Promise<void>((resolve) => untyped(client).once('online', () => resolve()));
  const jid = String(await client.start());
  await online;
  return { client, jid };
}

function next(client: Client, test: (stanza: Element) => boolean): Promise<Element> {
  return new Promise((resolve) => {
    const listener = (stanza: Element): void => {
      if (!test(stanza)) return;
      untyped(client).removeListener('stanza', listener);
      resolve(stanza);
    };
    client.on('stanza', listener);
  });
}

/** A mutual presence subscription, and both available. */
async function befriend(juliet: Client, romeo: Client): Promise<void> {
  for (const [from, to, toName, fromName] of [
    [juliet, romeo, 'romeo', 'juliet'],
    [romeo, juliet, 'juliet', 'romeo'],
  ] as const) {
    const asked = next(to, (s) => s.is('presence') && s.attrs.type === 'subscribe');
    await from.send(xml('presence', { to: `${toName}@localhost`, type: 'subscribe' }));
    await asked;
    const approved = next(from, (s) => s.is('presence') && s.attrs.type === 'subscribed');
    await to.send(xml('presence', { to: `${fromName}@localhost`, type: 'subscribed' }));
    await approved;
  }
}

describe('modern features over WebSocket (@xmpp/client) beside TCP', () => {
  it('enables stream management on both transports, archives the chat (MAM), carries a PEP nickname, and blocks', async () => {
    const { httpPort, tcpPort } = await start();
    const juliet = await connect(`ws://127.0.0.1:${httpPort}/xmpp-websocket`, 'juliet', 'balcony');
    const romeo = await connect(`xmpp://127.0.0.1:${tcpPort}`, 'romeo', 'r0meo!');
    // @xmpp/client enables XEP-0198 itself when the server offers it.
    const sm = (client: Client): { enabled: boolean; id: string } =>
      (client as unknown as { streamManagement: { enabled: boolean; id: string } }).streamManagement;
    // (It sends <enable/> right after binding; the answer may come after 'online'.)
    await vi.waitFor(() => expect(sm(romeo.client).enabled && sm(juliet.client).enabled).toBe(true), { timeout: 5000 });
    expect(sm(juliet.client).enabled).toBe(true);
    expect(sm(juliet.client).id).not.toBe('');
    expect(sm(romeo.client).enabled).toBe(true);
    await juliet.client.iqCaller.get(xml('query', { xmlns: 'jabber:iq:roster' }));
    await romeo.client.iqCaller.get(xml('query', { xmlns: 'jabber:iq:roster' }));
    // Presence with entity capabilities that ask for nickname notifications (+notify), answered by the
    // client when the server asks what the hash means.
    const features = ['http://jabber.org/protocol/disco#info', 'http://jabber.org/protocol/nick', 'http://jabber.org/protocol/nick+notify'];
    for (const { client } of [juliet, romeo]) {
      untyped(client).iqCallee.get('http://jabber.org/protocol/disco#info', 'query', () =>
        xml(
          'query',
          { xmlns: 'http://jabber.org/protocol/disco#info' },
          xml('identity', { category: 'client', type: 'web', name: 'test' }),
          ...features.map((name) => xml('feature', { var: name })),
        ),
      );
    }
    const caps = xml('c', { xmlns: 'http://jabber.org/protocol/caps', hash: 'sha-1', node: 'urn:example:test', ver: capsVer(features) });
    await juliet.client.send(xml('presence', {}, caps));
    await romeo.client.send(xml('presence', {}, caps));
    await befriend(juliet.client, romeo.client);

    // A chat over both transports, then juliet (WebSocket) reads it from her archive.
    for (const body of ['one', 'two', 'three']) {
      const got = next(juliet.client, (s) => s.is('message') && s.getChildText('body') === body);
      await romeo.client.send(xml('message', { to: 'juliet@localhost', type: 'chat' }, xml('body', {}, body)));
      const message = await got;
      expect(message.getChild('stanza-id', 'urn:xmpp:sid:0')?.attrs.by).toBe('juliet@localhost');
    }
    const results: Element[] = [];
    const collect = (stanza: Element): void => {
      const result = stanza.getChild('result', 'urn:xmpp:mam:2');
      if (stanza.is('message') && result?.attrs.queryid === 'q1') results.push(result);
    };
    juliet.client.on('stanza', collect);
    const answer = await juliet.client.iqCaller.request(
      xml(
        'iq',
        { type: 'set' },
        xml(
          'query',
          { xmlns: 'urn:xmpp:mam:2', queryid: 'q1' },
          xml('set', { xmlns: 'http://jabber.org/protocol/rsm' }, xml('max', {}, '2')),
        ),
      ),
    );
    untyped(juliet.client).removeListener('stanza', collect);
    const fin = answer.getChild('fin', 'urn:xmpp:mam:2');
    expect(fin?.attrs.queryid).toBe('q1');
    expect(fin?.attrs.complete).not.toBe('true');
    expect(results.map((r) => r.getChild('forwarded')?.getChild('message')?.getChildText('body'))).toEqual(['one', 'two']);

    // PEP: juliet publishes a nickname over WebSocket; romeo (TCP, +notify) gets the event.
    const event = next(
      romeo.client,
      (s) => s.is('message') && s.getChild('event', 'http://jabber.org/protocol/pubsub#event') !== undefined,
    );
    await juliet.client.iqCaller.set(
      xml(
        'pubsub',
        { xmlns: 'http://jabber.org/protocol/pubsub' },
        xml(
          'publish',
          { node: 'http://jabber.org/protocol/nick' },
          xml('item', {}, xml('nick', { xmlns: 'http://jabber.org/protocol/nick' }, 'Jules')),
        ),
      ),
    );
    const items = (await event).getChild('event')?.getChild('items');
    expect(items?.attrs.node).toBe('http://jabber.org/protocol/nick');
    expect(items?.getChild('item')?.getChildText('nick')).toBe('Jules');

    // Blocking: juliet blocks romeo; his next message bounces and never reaches her.
    await juliet.client.iqCaller.set(xml('block', { xmlns: 'urn:xmpp:blocking' }, xml('item', { jid: 'romeo@localhost' })));
    const bounced = next(romeo.client, (s) => s.is('message') && s.attrs.type === 'error');
    let leaked = false;
    juliet.client.on('stanza', (s: Element) => {
      if (s.is('message') && s.getChildText('body') === 'blocked?') leaked = true;
    });
    await romeo.client.send(xml('message', { to: 'juliet@localhost', type: 'chat' }, xml('body', {}, 'blocked?')));
    expect((await bounced).getChild('error')?.getChild('service-unavailable')).toBeDefined();
    await juliet.client.iqCaller.get(xml('ping', { xmlns: 'urn:xmpp:ping' }));
    expect(leaked).toBe(false);
  });
});

/** XEP-0115 §5.1 verification string for a client with one identity (client/web/test) and these features. */
function capsVer(features: string[]): string {
  const text = `client/web//test<${[...features].sort().join('<')}<`;
  return createHash('sha1').update(text).digest('base64');
}
