import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { memoryBus, PortService } from '@portbind/core';
import { httpAdapter } from '@portbind/http';
import { type Element, xml, client as xmppClient } from '@xmpp/client';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { portOf, selfSignedCert } from '../../../test/support/net.js';
import { MemoryUserStore, memoryStorage, sqliteStorage, xmppServer } from '../src/index.js';
import { lockedSqlite, saidBehind } from './pressure-support.js';
import { capturingLogger, clients } from './support.js';

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

/** @xmpp/client over plain TCP (the test servers allow it): logged in, no presence sent. */
async function loginTcp(port: number, username: string, password: string) {
  const client = xmppClient({ timeout: 8000, service: `xmpp://127.0.0.1:${port}`, domain: 'localhost', username, password });
  client.on('error', () => {});
  clients.push(client);
  return { client, jid: String(await client.start()) };
}

describe('XMPP over WebSocket', () => {
  it('logs in over WebSocket and chats both ways with a TCP client', async () => {
    const { httpPort, tcpPort, http } = await start();
    expect(http.urls).toContain(`ws://127.0.0.1:${httpPort}/xmpp-websocket`);
    const juliet = await loginWs(httpPort, 'juliet', 'balcony');
    expect(juliet.jid).toMatch(/^juliet@localhost\/.+/);
    const { client: romeo, jid: romeoJid } = await loginTcp(tcpPort, 'romeo', 'r0meo!');
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

describe('XMPP over WebSocket: the storage falling behind', () => {
  it('stops reading from WebSocket clients, not the event loop, while another process holds the write lock; nothing is lost', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'portbind-ws-pressure-'));
    const logger = capturingLogger();
    const file = join(dir, 'xmpp.sqlite');
    try {
      const users = new MemoryUserStore({ iterations: 4096 });
      await users.create('juliet', 'balcony');
      await users.create('romeo', 'r0meo!');
      // 20 calls in flight at most: ten messages (two archive rows each) and the server holds its clients' input.
      const server = xmppServer({ domain: 'localhost', storage: sqliteStorage({ file, maxInFlight: 20 }), users, allowPlaintext: true });
      const service = new PortService({ env: {}, gracePeriodMs: 2000, logger });
      services.push(service);
      const http = service.bind(httpAdapter({ upgrades: { '/xmpp-websocket': server.websocket() } }), { port: 0, host: '127.0.0.1' });
      const tcp = service.bind(server.c2s(), { port: 0, host: '127.0.0.1' });
      await service.start();
      const juliet = await loginWs(portOf(http), 'juliet', 'balcony');
      const { client: romeo, jid: romeoJid } = await loginTcp(portOf(tcp), 'romeo', 'r0meo!');
      const received: string[] = [];
      romeo.on('stanza', (stanza: Element) => {
        if (stanza.is('message')) received.push(String(stanza.attrs.id));
      });
      // One message archived before the lock: both archives' owners and preferences are known.
      await juliet.client.send(xml('message', { to: romeoJid, type: 'chat', id: 'first' }, xml('body', {}, 'first')));
      for (let i = 0; i < 500 && !received.includes('first'); i++) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(received).toEqual(['first']);
      const lock = await lockedSqlite(file);
      let duringLock = 0;
      try {
        // A frame every 10 ms (each read on its own): once the server holds the input, the rest wait in the socket.
        for (let i = 0; i < 100; i++) {
          await juliet.client.send(xml('message', { to: romeoJid, type: 'chat', id: `w${i}` }, xml('body', {}, `line ${i}`)));
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
        await new Promise((resolve) => setTimeout(resolve, 500));
        duringLock = received.length - 1;
        // Without the hold, what was read would pile up until four times maxInFlight, and then the event loop
        // itself would wait for the storage: timers late by as long as the lock is held.
        expect(lock.lag()).toBeLessThan(500);
        expect(saidBehind(logger.lines)).toBe(true);
        expect(duringLock).toBeLessThan(40);
      } finally {
        lock.release();
      }
      for (let i = 0; i < 1500 && received.length < 101; i++) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(received).toEqual(['first', ...Array.from({ length: 100 }, (_, i) => `w${i}`)]);
      expect(logger.lines.some((line) => line.message?.includes('the storage caught up'))).toBe(true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
