import { memoryBus, PortService } from '@portbind/core';
import { httpAdapter } from '@portbind/http';
import { type Element, xml, client as xmppClient } from '@xmpp/client';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { portOf, selfSignedCert } from '../../../test/support/net.js';
import { MemoryUserStore, memoryStorage, xmppServer } from '../src/index.js';
import { clients } from './support.js';

// XMPP over WebSocket (RFC 7395) with @xmpp/client, sharing sessions and routing with TCP.
// @xmpp/client uses the global WebSocket of browsers and Node ≥ 22; on Node 20 it comes from ws.
(globalThis as { WebSocket?: unknown }).WebSocket ??= WebSocket;

const services: PortService[] = [];
afterEach(async () => {
  await Promise.all(services.splice(0).map((s) => s.stop()));
});

async function start(options: { allowPlaintext?: boolean | 'loopback'; registration?: boolean } = {}) {
  const users = new MemoryUserStore({ iterations: 4096 });
  await users.create('juliet', 'balcony');
  await users.create('romeo', 'r0meo!');
  // Development: ws:// and plain TCP without TLS, SCRAM only.
  const server = xmppServer({
    domain: 'localhost',
    storage: memoryStorage(),
    users,
    allowPlaintext: options.allowPlaintext ?? true,
    registration: options.registration,
  });
  const service = new PortService({ env: {}, gracePeriodMs: 2000 });
  services.push(service);
  const http = service.bind(httpAdapter({ upgrades: { '/xmpp-websocket': server.websocket() } }), { port: 0, host: '127.0.0.1' });
  const tcp = service.bind(server.c2s(), { port: 0, host: '127.0.0.1', tls: await selfSignedCert() });
  await service.start();
  return { server, service, http, httpPort: portOf(http), tcpPort: portOf(tcp) };
}

async function loginWs(port: number, username: string, password: string) {
  const client = xmppClient({ timeout: 8000, service: `ws://127.0.0.1:${port}/xmpp-websocket`, domain: 'localhost', username, password });
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
    const romeo = xmppClient({
      timeout: 8000,
      service: `xmpp://127.0.0.1:${tcpPort}`,
      domain: 'localhost',
      username: 'romeo',
      password: 'r0meo!',
    });
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

/** A raw XMPP-over-WebSocket client: every frame it gets, and the close code. */
async function rawWs(port: number, headers: Record<string, string> = {}) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/xmpp-websocket`, ['xmpp'], { headers });
  const frames: string[] = [];
  ws.on('message', (data: Buffer) => frames.push(data.toString()));
  const closed = new Promise<number>((resolve) => ws.once('close', (code: number) => resolve(code)));
  await new Promise((resolve) => ws.once('open', resolve));
  ws.send("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>");
  return { ws, frames, closed };
}

async function framesUntil(frames: string[], pattern: RegExp): Promise<string> {
  for (let i = 0; i < 500; i++) {
    const text = frames.join('');
    if (pattern.test(text)) return text;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`no ${pattern} in ${JSON.stringify(frames)}`);
}

describe('XMPP over WebSocket: who counts as local', () => {
  it("under allowPlaintext: 'loopback', a loopback peer gets SCRAM and PLAIN; one with forwarding headers is not local", async () => {
    const { httpPort } = await start({ allowPlaintext: 'loopback', registration: true });
    const local = await rawWs(httpPort);
    const features = await framesUntil(local.frames, /<\/stream:features>/);
    expect(features).toContain('<mechanism>PLAIN</mechanism>');
    // Registration needs TLS, on every transport.
    expect(features).not.toContain('iq-register');
    local.ws.close();
    for (const headers of [
      { 'X-Forwarded-For': '203.0.113.9' },
      { Forwarded: 'for=203.0.113.9;proto=http' },
      { 'X-Real-IP': '203.0.113.9' },
    ] as Array<Record<string, string>>) {
      const proxied = await rawWs(httpPort, headers);
      const code = await proxied.closed;
      const text = proxied.frames.join('');
      expect(text, JSON.stringify(headers)).toContain("<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>");
      expect(text).not.toContain('<mechanism>');
      expect(code).toBe(1000);
    }
  });

  it('closes with 1001 on shutdown, after <system-shutdown/>', async () => {
    const { httpPort, service } = await start();
    const peer = await rawWs(httpPort);
    await framesUntil(peer.frames, /<\/stream:features>/);
    const report = await service.stop();
    expect(await peer.closed).toBe(1001);
    expect(peer.frames.join('')).toContain("<system-shutdown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>");
    expect(report.forced).toBe(0);
  });

  it('on an HTTP binding without TLS and without allowPlaintext, start fails with PB_ERR_XMPP_NO_TLS', async () => {
    const server = xmppServer({ domain: 'localhost', storage: memoryStorage() });
    const service = new PortService({ env: {} });
    services.push(service);
    service.bind(httpAdapter({ upgrades: { '/xmpp-websocket': server.websocket() } }), { port: 0, host: '127.0.0.1' });
    await expect(service.start()).rejects.toMatchObject({ code: 'PB_ERR_XMPP_NO_TLS' });
  });

  it('on an HTTP binding, start fails when the server cannot enter its cluster (a bus closed): nothing listens', async () => {
    const bus = memoryBus();
    await bus.close();
    const server = xmppServer({ domain: 'localhost', storage: memoryStorage(), bus, allowPlaintext: 'loopback' });
    const service = new PortService({ env: {} });
    services.push(service);
    const binding = service.bind(httpAdapter({ upgrades: { '/xmpp-websocket': server.websocket() } }), { port: 0, host: '127.0.0.1' });
    await expect(service.start()).rejects.toThrow(/bus closed/);
    expect(() => binding.address).toThrow(/not listening/);
    await server.close();
  });
});
