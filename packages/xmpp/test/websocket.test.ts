import { PortService } from '@portbind/core';
import { httpAdapter } from '@portbind/http';
import { type Element, xml, client as xmppClient } from '@xmpp/client';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { portOf, selfSignedCert } from '../../../test/support/net.js';
import { MemoryUserStore, xmppServer } from '../src/index.js';
import { clients } from './support.js';

// XMPP over WebSocket (RFC 7395) with @xmpp/client, sharing sessions and routing with TCP.
// @xmpp/client uses the global WebSocket of browsers and Node ≥ 22; on Node 20 it comes from ws.
(globalThis as { WebSocket?: unknown }).WebSocket ??= WebSocket;

const services: PortService[] = [];
afterEach(async () => {
  await Promise.all(services.splice(0).map((s) => s.stop()));
});

async function start() {
  const users = new MemoryUserStore({ iterations: 4096 });
  await users.create('juliet', 'balcony');
  await users.create('romeo', 'r0meo!');
  // Loopback development: ws:// and plain TCP without TLS, SCRAM only.
  const server = xmppServer({ domain: 'localhost', users, allowPlaintext: true });
  const service = new PortService({ env: {}, gracePeriodMs: 2000 });
  services.push(service);
  const http = service.bind(httpAdapter({ upgrades: { '/xmpp-websocket': server.websocket() } }), { port: 0, host: '127.0.0.1' });
  const tcp = service.bind(server.c2s(), { port: 0, host: '127.0.0.1', tls: await selfSignedCert() });
  await service.start();
  return { server, service, http, httpPort: portOf(http), tcpPort: portOf(tcp) };
}

async function loginWs(port: number, username: string, password: string) {
  const client = xmppClient({ service: `ws://127.0.0.1:${port}/xmpp-websocket`, domain: 'localhost', username, password });
  client.on('error', () => {});
  clients.push(client);
  const jid = String(await client.start());
  await client.send(xml('presence'));
  return { client, jid };
}

describe('XMPP over WebSocket', () => {
  it('logs in over WebSocket and chats both ways with a TCP client', async () => {
    const { httpPort, tcpPort, http } = await start();
    expect(http.urls).toContain(`ws://127.0.0.1:${httpPort}/xmpp-websocket`);
    const juliet = await loginWs(httpPort, 'juliet', 'balcony');
    expect(juliet.jid).toMatch(/^juliet@localhost\/.+/);
    const romeo = xmppClient({ service: `xmpp://127.0.0.1:${tcpPort}`, domain: 'localhost', username: 'romeo', password: 'r0meo!' });
    romeo.on('error', () => {});
    clients.push(romeo);
    const romeoJid = String(await romeo.start());
    await romeo.send(xml('presence'));
    const toJuliet = new Promise<Element>((resolve) => juliet.client.on('stanza', (s: Element) => s.is('message') && resolve(s)));
    await romeo.send(xml('message', { to: 'juliet@localhost', type: 'chat' }, xml('body', {}, 'over TCP')));
    expect((await toJuliet).getChildText('body')).toBe('over TCP');
    const toRomeo = new Promise<Element>((resolve) => romeo.on('stanza', (s: Element) => s.is('message') && resolve(s)));
    await juliet.client.send(xml('message', { to: romeoJid, type: 'chat' }, xml('body', {}, 'over WebSocket')));
    const received = await toRomeo;
    expect(received.getChildText('body')).toBe('over WebSocket');
    expect(received.attrs.from).toBe(juliet.jid);
  });

  it('refuses an upgrade without the xmpp subprotocol, and answers restricted XML with a stream error', async () => {
    const { httpPort } = await start();
    const wrong = new WebSocket(`ws://127.0.0.1:${httpPort}/xmpp-websocket`, ['chat']);
    const status = await new Promise<number>((resolve) => wrong.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0)));
    expect(status).toBe(400);
    const ws = new WebSocket(`ws://127.0.0.1:${httpPort}/xmpp-websocket`, ['xmpp']);
    const frames: string[] = [];
    ws.on('message', (data: Buffer) => frames.push(data.toString()));
    await new Promise((resolve) => ws.once('open', resolve));
    ws.send("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>");
    ws.send('<!-- sneaky -->');
    const code = await new Promise<number>((resolve) => ws.once('close', (c: number) => resolve(c)));
    expect(frames[0]).toMatch(
      /^<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' id='[^']+' from='localhost' version='1.0' xml:lang='en'\/>$/,
    );
    expect(frames.join('')).toContain("<restricted-xml xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>");
    expect(frames.at(-1)).toBe("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>");
    expect(code).toBe(1000);
  });

  it('sends <system-shutdown/> over WebSocket on stop', async () => {
    const { httpPort, service } = await start();
    const juliet = await loginWs(httpPort, 'juliet', 'balcony');
    const shutdown = new Promise<string>((resolve) =>
      juliet.client.on('error', (error: { condition?: string }) => resolve(String(error.condition))),
    );
    await service.stop();
    expect(await shutdown).toBe('system-shutdown');
  });
});
