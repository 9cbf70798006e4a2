import { once } from 'node:events';
import { mkdtemp, readdir, readlink, rm } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PortService } from '@portbind/core';
import { xml as clientXml, type Element, client as xmppClient } from '@xmpp/client';
import { describe, expect, it, vi } from 'vitest';
import { rawConnect, readUntil, readUntilClose } from '../../../test/support/net.js';
import {
  defaultModules,
  MemoryUserStore,
  memoryStorage,
  ping as pingModule,
  type XmppServerOptions,
  type XmppStorage,
  xml,
  xmppServer,
} from '../src/index.js';
import { capturingLogger, clients, login, OPEN, rawLogin, rawStartTls, start, stopAfterTest, testCert } from './support.js';

// Issue 7: no single client takes the server down or reads what is not theirs; bad input gets
// XMPP's own error terms; configuration mistakes fail at start.

type Client = Awaited<ReturnType<typeof login>>['xmpp'];

function next(xmpp: Client, test: (stanza: Element) => boolean): Promise<Element> {
  return new Promise((resolve) => {
    xmpp.on('stanza', (stanza: Element) => {
      if (test(stanza)) resolve(stanza);
    });
  });
}

async function ping(xmpp: Client): Promise<string | undefined> {
  const pong = await xmpp.iqCaller.request(
    clientXml('iq', { type: 'get', to: 'localhost' }, clientXml('ping', { xmlns: 'urn:xmpp:ping' })),
  );
  return pong.attrs.type as string | undefined;
}

const nested = (depth: number, inner = ''): string => `${'<x>'.repeat(depth)}${inner}${'</x>'.repeat(depth)}`;

describe('deep nesting', () => {
  it('a stanza nested 3,800 levels deep gets <policy-violation/> and the stream closes; other clients are served', async () => {
    const { port } = await start();
    const romeo = await login(port, 'romeo', 'r0meo!');
    const secure = await rawLogin(port, 'juliet', 'balcony');
    const result = readUntilClose(secure);
    secure.write(`<message to='romeo@localhost' type='chat'><body>hi</body>${nested(3800)}</message>`);
    const { data, closed } = await result;
    expect(data).toContain("<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>");
    expect(data).toContain('nested deeper than 64 levels');
    expect(data.endsWith('</stream:stream>')).toBe(true);
    expect(closed).toBe(true);
    expect(await ping(romeo.xmpp)).toBe('result');
  });

  it('a presence nested 6,000 deep is refused, and the contacts subscribed to it log in as before', async () => {
    const { port } = await start();
    // Romeo is subscribed to Juliet's presence.
    const juliet = await login(port, 'juliet', 'balcony', 'balcony');
    const romeo = await login(port, 'romeo', 'r0meo!', 'orchard');
    const asked = next(juliet.xmpp, (s) => s.is('presence') && s.attrs.type === 'subscribe');
    await romeo.xmpp.send(clientXml('presence', { to: 'juliet@localhost', type: 'subscribe' }));
    await asked;
    const approved = next(romeo.xmpp, (s) => s.is('presence') && s.attrs.type === 'subscribed');
    await juliet.xmpp.send(clientXml('presence', { to: 'romeo@localhost', type: 'subscribed' }));
    await approved;
    await romeo.xmpp.stop();

    const raw = await rawLogin(port, 'juliet', 'balcony', 'deep');
    const result = readUntilClose(raw);
    raw.write(`<presence><status>deep</status>${nested(6000)}</presence>`);
    expect((await result).data).toContain("<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>");

    // Romeo logs in again and gets Juliet's (ordinary) presence, addressed to him.
    const again = xmppClient({
      timeout: 8000,
      service: `xmpp://127.0.0.1:${port}`,
      domain: 'localhost',
      username: 'romeo',
      password: 'r0meo!',
    });
    again.on('error', () => {});
    clients.push(again);
    const presence = next(again, (s) => s.is('presence') && s.attrs.from === 'juliet@localhost/balcony');
    const jid = String(await again.start());
    await again.send(clientXml('presence'));
    expect((await presence).attrs.to).toBe(jid);
  });

  it('serialises an element nested 100,000 deep without recursion', () => {
    let element = xml('leaf', {}, 'text & more');
    for (let i = 0; i < 100_000; i++) element = xml('x', { i: String(i % 10) }, element);
    const text = element.toString();
    expect(text.startsWith("<x i='9'><x i='8'>")).toBe(true);
    expect(text).toContain('<leaf>text &amp; more</leaf>');
    expect(text.length).toBe(100_000 * ("<x i='0'>".length + '</x>'.length) + '<leaf>text &amp; more</leaf>'.length);
  });

  it('delivers the offline messages behind one that cannot be delivered', async () => {
    const logger = capturingLogger();
    // A store that hands back a corrupt row among good ones (a damaged file, a bug in a custom backend).
    const memory = memoryStorage();
    const storage: XmppStorage = {
      users: memory.users,
      keyValue: (name) => memory.keyValue(name),
      close: () => memory.close(),
      archive: (name) => {
        const archive = memory.archive(name);
        if (name !== 'offline') return archive;
        return {
          ...archive,
          append: (owner, item) => archive.append(owner, item),
          delete: (owner, query) => archive.delete(owner, query),
          trim: (owner, value, keep) => archive.trim(owner, value, keep),
          expire: (before) => archive.expire(before),
          query: async (owner, query) => {
            const result = await archive.query(owner, query);
            const broken = { id: 'broken', when: Date.now(), with: 'romeo@localhost', xml: '<message><body>cut off' };
            return { ...result, items: [...result.items.slice(0, 1), broken, ...result.items.slice(1)] };
          },
        };
      },
    };
    const { port } = await start({ server: { storage }, logger });
    const romeo = await login(port, 'romeo', 'r0meo!');
    for (const body of ['one', 'two', 'three']) {
      await romeo.xmpp.send(clientXml('message', { to: 'juliet@localhost', type: 'chat' }, clientXml('body', {}, body)));
    }
    await ping(romeo.xmpp); // the three messages were handled before the ping
    const juliet = xmppClient({
      timeout: 8000,
      service: `xmpp://127.0.0.1:${port}`,
      domain: 'localhost',
      username: 'juliet',
      password: 'balcony',
    });
    juliet.on('error', () => {});
    clients.push(juliet);
    const bodies: string[] = [];
    const all = new Promise<void>((resolve) =>
      juliet.on('stanza', (s: Element) => {
        if (s.is('message') && s.getChildText('body') !== null) bodies.push(s.getChildText('body') as string);
        if (bodies.length === 3) resolve();
      }),
    );
    await juliet.start();
    await juliet.send(clientXml('presence'));
    await all;
    expect(bodies).toEqual(['one', 'two', 'three']);
    expect(await ping(juliet)).toBe('result');
    expect(logger.lines.some((line) => line.message?.includes('stored offline message is corrupt'))).toBe(true);
  });
});

describe('presence is addressed to its recipient', () => {
  it("when alice approves dave after bob logged in, dave's copy is addressed to dave, never to bob's full JID", async () => {
    const { port } = await start({ accounts: { alice: 'alice-pw', bob: 'bob-pw', dave: 'dave-pw' } });
    const alice = await login(port, 'alice', 'alice-pw', 'home');
    const bob = await login(port, 'bob', 'bob-pw', 'bobphone-secret');
    // Bob subscribes to Alice; Alice approves.
    const asked = next(alice.xmpp, (s) => s.is('presence') && s.attrs.type === 'subscribe');
    await bob.xmpp.send(clientXml('presence', { to: 'alice@localhost', type: 'subscribe' }));
    await asked;
    const bobSees = next(bob.xmpp, (s) => s.is('presence') && s.attrs.from === alice.jid && s.attrs.type === undefined);
    await alice.xmpp.send(clientXml('presence', { to: 'bob@localhost', type: 'subscribed' }));
    expect((await bobSees).attrs.to).toBe(bob.jid);
    // Bob logs in again: he gets Alice's stored presence (the step that readdressed it before).
    const bob2 = xmppClient({
      timeout: 8000,
      service: `xmpp://127.0.0.1:${port}`,
      domain: 'localhost',
      username: 'bob',
      password: 'bob-pw',
      resource: 'laptop',
    });
    bob2.on('error', () => {});
    clients.push(bob2);
    const bob2Sees = next(bob2, (s) => s.is('presence') && s.attrs.from === alice.jid);
    await bob2.start();
    await bob2.send(clientXml('presence'));
    expect((await bob2Sees).attrs.to).toBe('bob@localhost/laptop');
    // Dave subscribes; Alice approves: Dave receives Alice's presence, addressed to Dave.
    const dave = await login(port, 'dave', 'dave-pw', 'd');
    const daveAsked = next(alice.xmpp, (s) => s.is('presence') && s.attrs.type === 'subscribe' && s.attrs.from === 'dave@localhost');
    await dave.xmpp.send(clientXml('presence', { to: 'alice@localhost', type: 'subscribe' }));
    await daveAsked;
    const daveSees = next(dave.xmpp, (s) => s.is('presence') && s.attrs.from === alice.jid && s.attrs.type === undefined);
    await alice.xmpp.send(clientXml('presence', { to: 'dave@localhost', type: 'subscribed' }));
    const seen = await daveSees;
    expect(seen.attrs.to).toBe(dave.jid);
    expect(seen.toString()).not.toContain('bob');
  });
});

describe('login throttling and its logs', () => {
  it('locks (address, account) after 5 failures, never another account from the same address; logs at warn without the password', async () => {
    const logger = capturingLogger();
    const { port } = await start({ logger });
    const conditions: string[] = [];
    for (let i = 0; i < 6; i++) {
      const xmpp = xmppClient({
        timeout: 8000,
        service: `xmpp://127.0.0.1:${port}`,
        domain: 'localhost',
        username: 'juliet',
        password: `guess-${i}-secret`,
      });
      xmpp.on('error', () => {});
      clients.push(xmpp);
      conditions.push(
        await xmpp.start().then(
          () => 'online',
          (error: { condition?: string }) => String(error.condition),
        ),
      );
    }
    expect(conditions).toEqual([...Array(5).fill('not-authorized'), 'temporary-auth-failure']);
    // The same address, another account, the right password: in.
    const romeo = await login(port, 'romeo', 'r0meo!');
    expect(romeo.jid).toMatch(/^romeo@localhost\//);

    const failures = logger.lines.filter((line) => line.level === 'warn' && line.message === 'XMPP login failed');
    expect(failures).toHaveLength(5);
    expect(failures[0]?.fields).toMatchObject({ remoteAddress: '127.0.0.1', account: 'juliet', condition: 'not-authorized' });
    expect(logger.lines.some((line) => line.level === 'warn' && line.message === 'XMPP login refused: too many failures')).toBe(true);
    const everything = JSON.stringify(logger.lines);
    for (let i = 0; i < 6; i++) expect(everything).not.toContain(`guess-${i}-secret`);
    expect(everything).not.toContain('r0meo!');
    // Per-connection lines are debug, not info.
    expect(logger.lines.find((line) => line.message === 'XMPP connection')?.level).toBe('debug');
    expect(logger.lines.filter((line) => line.level === 'error')).toEqual([]);
  });
});

describe('stanza size before authentication', () => {
  it('is 10 KB before login (policy-violation) and 256 KiB after', async () => {
    const { port } = await start();
    const secure = await rawStartTls(port);
    secure.write(OPEN);
    await readUntil(secure, /<\/stream:features>/);
    const result = readUntilClose(secure);
    secure.write(`<iq type='get' id='r'><query xmlns='jabber:iq:register'>${'x'.repeat(20_000)}</query></iq>`);
    const { data, closed } = await result;
    expect(data).toContain("<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>");
    expect(closed).toBe(true);

    const juliet = await login(port, 'juliet', 'balcony');
    const romeo = await login(port, 'romeo', 'r0meo!');
    const got = next(juliet.xmpp, (s) => s.is('message'));
    await romeo.xmpp.send(clientXml('message', { to: juliet.jid, type: 'chat' }, clientXml('body', {}, 'y'.repeat(100_000))));
    expect((await got).getChildText('body')).toHaveLength(100_000);
  });
});

describe('configuration', () => {
  it('a c2s binding with neither TLS nor allowPlaintext fails at start with PB_ERR_XMPP_NO_TLS, saying what to set', async () => {
    const server = xmppServer({ domain: 'localhost', storage: memoryStorage() });
    const service = stopAfterTest(new PortService({ env: {} }));
    service.bind(server.c2s(), { port: 0, host: '127.0.0.1' });
    const failure = await service.start().then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(failure).toMatchObject({ code: 'PB_ERR_XMPP_NO_TLS' });
    expect(String((failure as Error).message)).toMatch(/tls: \{ certFile, keyFile \}.*allowPlaintext: 'loopback'/);
  });

  it('direct TLS without a certificate fails at start; a bad domain or option at construction', async () => {
    const server = xmppServer({ domain: 'localhost', storage: memoryStorage(), allowPlaintext: true });
    const service = stopAfterTest(new PortService({ env: {} }));
    service.bind(server.c2s({ directTls: true }), { port: 0, host: '127.0.0.1' });
    await expect(service.start()).rejects.toMatchObject({ code: 'PB_ERR_XMPP_NO_TLS' });
    expect(() => xmppServer({ domain: 'juliet@localhost' })).toThrow(expect.objectContaining({ code: 'PB_ERR_XMPP_DOMAIN' }));
    expect(() => xmppServer({ domain: 'localhost', maxDepth: 0 })).toThrow(expect.objectContaining({ code: 'PB_ERR_XMPP_OPTION' }));
    // Plain JavaScript callers get the same codes, not a TypeError from deep inside.
    expect(() => xmppServer({} as XmppServerOptions)).toThrow(expect.objectContaining({ code: 'PB_ERR_XMPP_DOMAIN' }));
    expect(() => server.on('foo' as 'message', () => undefined)).toThrow(expect.objectContaining({ code: 'PB_ERR_XMPP_OPTION' }));
  });

  it('a module list the host refuses (two modules named ping) fails the construction; the default SQLite file is closed again', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'portbind-xmpp-config-'));
    const openFiles = async (): Promise<string[]> => {
      const links = await Promise.all((await readdir('/proc/self/fd')).map((fd) => readlink(`/proc/self/fd/${fd}`).catch(() => '')));
      return links.filter((link) => link.startsWith(dataDir));
    };
    try {
      expect(() => xmppServer({ domain: 'localhost', dataDir, modules: [...defaultModules(), pingModule()] })).toThrow(
        expect.objectContaining({ code: 'PB_ERR_XMPP_OPTION' }),
      );
      // The file was made (the default storage opened), and no descriptor of it stays open.
      expect((await readdir(dataDir)).some((name) => name.startsWith('xmpp.sqlite'))).toBe(true);
      await vi.waitFor(async () => expect(await openFiles()).toEqual([]), { timeout: 5000 });
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('in-band registration is never offered without TLS, even with allowPlaintext: true', async () => {
    const { port } = await start({ tls: false, allowPlaintext: true, registration: true });
    const socket = await rawConnect(port);
    socket.write(OPEN);
    const features = await readUntil(socket, /<\/stream:features>/);
    expect(features).toContain('<mechanism>SCRAM-SHA-256</mechanism>');
    expect(features).not.toContain('iq-register');
    const result = readUntilClose(socket);
    socket.write("<iq type='get' id='r'><query xmlns='jabber:iq:register'/></iq>");
    expect((await result).data).toContain("<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>");
  });
});

describe('timeouts and closing', () => {
  it('cuts off a peer that asks for STARTTLS and then sends nothing', async () => {
    const { port } = await start({ server: { tlsHandshakeTimeoutMs: 300 } });
    const socket = await rawConnect(port);
    socket.write(OPEN);
    await readUntil(socket, /<\/stream:features>/);
    socket.write("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    await readUntil(socket, /<proceed/);
    const { closed } = await readUntilClose(socket, 10_000);
    expect(closed).toBe(true);
  });

  it('an idle stream gets <connection-timeout/> and the end of the stream', async () => {
    const { port } = await start({ bind: { idleTimeoutMs: 300 } });
    const socket = await rawConnect(port);
    const result = readUntilClose(socket);
    socket.write(OPEN);
    const { data, closed } = await result;
    expect(data).toContain("<connection-timeout xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>");
    expect(data.endsWith('</stream:stream>')).toBe(true);
    expect(closed).toBe(true);
  });

  it('over maxConnections: a stream header, <resource-constraint/> and the end of the stream', async () => {
    const { port } = await start({ bind: { maxConnections: 1 } });
    const first = await rawConnect(port);
    first.write(OPEN);
    await readUntil(first, /<\/stream:features>/);
    const second = await rawConnect(port);
    const { data, closed } = await readUntilClose(second);
    expect(data).toMatch(/^<\?xml version='1.0'\?><stream:stream xmlns='jabber:client' [^>]*from='localhost'/);
    expect(data).toContain("<resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>");
    expect(data.endsWith('</stream:stream>')).toBe(true);
    expect(closed).toBe(true);
    first.destroy();
  });

  it('a server bound on both c2s() and c2s({ directTls: true }) stops promptly with clients on each', async () => {
    const users = new MemoryUserStore({ iterations: 4096 });
    await users.create('juliet', 'balcony');
    await users.create('romeo', 'r0meo!');
    const server = xmppServer({ domain: 'localhost', storage: memoryStorage(), users });
    const service = stopAfterTest(new PortService({ env: {}, gracePeriodMs: 20_000 }));
    const tls = testCert();
    const plain = service.bind(server.c2s(), { port: 0, host: '127.0.0.1', tls, closeWaitMs: 500 });
    const direct = service.bind(server.c2s({ directTls: true }), { port: 0, host: '127.0.0.1', tls, closeWaitMs: 500 });
    await service.start();
    const portOf = (binding: typeof plain): number => (binding.address as import('node:net').AddressInfo).port;
    const juliet = await login(portOf(plain), 'juliet', 'balcony');
    const romeo = xmppClient({
      timeout: 8000,
      service: `xmpps://127.0.0.1:${portOf(direct)}`,
      domain: 'localhost',
      username: 'romeo',
      password: 'r0meo!',
    });
    romeo.on('error', () => {});
    clients.push(romeo);
    await romeo.start();
    // And a raw client on each port that never answers the closing handshake.
    const silent: Socket[] = [await rawLogin(portOf(plain), 'juliet', 'balcony', 'silent')];
    const shutdowns = [juliet.xmpp, romeo].map(
      (client) => new Promise<string>((resolve) => client.on('error', (error: { condition?: string }) => resolve(String(error.condition)))),
    );
    const silentClosed = silent.map((socket) => {
      socket.on('error', () => {});
      socket.resume(); // reads, never answers
      return once(socket, 'close');
    });
    const report = await service.stop();
    expect(await Promise.all(shutdowns)).toEqual(['system-shutdown', 'system-shutdown']);
    await Promise.all(silentClosed);
    // Nothing waited for the 20 s grace period: every stream closed politely or after closeWaitMs.
    expect(report.forced).toBe(0);
    expect(report.durationMs).toBeLessThan(15_000);
  });
});
