import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { promisify } from 'node:util';
import { xml as clientXml, client as xmppClient } from '@xmpp/client';
import { describe, expect, it } from 'vitest';
import { rawConnect, readUntil, readUntilClose } from '../../../test/support/net.js';
import { clients, login, OPEN, rawLogin, rawStartTls, start } from './support.js';

const run = promisify(execFile);

describe('@xmpp/client over TCP with STARTTLS and SCRAM', () => {
  it('logs in, binds a resource, and chats with another user', async () => {
    const { port, binding } = await start();
    expect(binding.url).toBe(`xmpp://127.0.0.1:${port}`);
    const juliet = await login(port, 'juliet', 'balcony', 'balcony');
    const romeo = await login(port, 'romeo', 'r0meo!');
    expect(juliet.jid).toBe('juliet@localhost/balcony');
    expect(romeo.jid).toMatch(/^romeo@localhost\/.+/);
    const received = new Promise<{ from: string; body: string | undefined }>((resolve) =>
      juliet.xmpp.on('stanza', (stanza) => {
        if (stanza.is('message')) resolve({ from: stanza.attrs.from as string, body: stanza.getChildText('body') ?? undefined });
      }),
    );
    await romeo.xmpp.send(clientXml('message', { to: 'juliet@localhost', type: 'chat' }, clientXml('body', {}, 'Wherefore art thou?')));
    expect(await received).toEqual({ from: romeo.jid, body: 'Wherefore art thou?' });
  });

  it('ends the stream of a client that spoofs another sender with <invalid-from/>; others live on', async () => {
    const { port } = await start();
    const juliet = await login(port, 'juliet', 'balcony');
    const romeo = await login(port, 'romeo', 'r0meo!');
    const ended = new Promise<string>((resolve) =>
      juliet.xmpp.on('error', (error: { condition?: string }) => resolve(String(error.condition))),
    );
    await juliet.xmpp.send(
      clientXml(
        'message',
        { from: 'romeo@localhost/orchard', to: 'romeo@localhost', type: 'chat' },
        clientXml('body', {}, 'it is I, Romeo'),
      ),
    );
    expect(await ended).toBe('invalid-from');
    const pong = await romeo.xmpp.iqCaller.request(
      clientXml('iq', { type: 'get', to: 'localhost' }, clientXml('ping', { xmlns: 'urn:xmpp:ping' })),
    );
    expect(pong.attrs.type).toBe('result');
  });

  it('throttles many wrong passwords in a row with <temporary-auth-failure/>', async () => {
    const { port } = await start();
    const conditions: string[] = [];
    for (let i = 0; i < 6; i++) {
      const xmpp = xmppClient({
        timeout: 8000,
        service: `xmpp://127.0.0.1:${port}`,
        domain: 'localhost',
        username: 'juliet',
        password: `guess${i}`,
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
    expect(conditions.slice(0, 5)).toEqual(Array(5).fill('not-authorized'));
    expect(conditions[5]).toBe('temporary-auth-failure');
    // The right password is refused too while the lock lasts: this address is locked out of this account.
    const right = xmppClient({
      timeout: 8000,
      service: `xmpp://127.0.0.1:${port}`,
      domain: 'localhost',
      username: 'juliet',
      password: 'balcony',
    });
    right.on('error', () => {});
    clients.push(right);
    await expect(right.start()).rejects.toMatchObject({ condition: 'temporary-auth-failure' });
  });

  it('answers ping and disco#info from the server', async () => {
    const { port } = await start();
    const { xmpp } = await login(port, 'juliet', 'balcony');
    const pong = await xmpp.iqCaller.request(
      clientXml('iq', { type: 'get', to: 'localhost' }, clientXml('ping', { xmlns: 'urn:xmpp:ping' })),
    );
    expect(pong.attrs).toMatchObject({ type: 'result', from: 'localhost' });
    const info = await xmpp.iqCaller.get(clientXml('query', { xmlns: 'http://jabber.org/protocol/disco#info' }), 'localhost');
    expect(info.getChild('identity')?.attrs).toMatchObject({ category: 'server', type: 'im' });
    const items = await xmpp.iqCaller.get(clientXml('query', { xmlns: 'http://jabber.org/protocol/disco#items' }), 'localhost');
    expect(items.children).toEqual([]);
  });

  it('refuses a wrong password with <not-authorized/>', async () => {
    const { port } = await start();
    const xmpp = xmppClient({
      timeout: 8000,
      service: `xmpp://127.0.0.1:${port}`,
      domain: 'localhost',
      username: 'juliet',
      password: 'nope',
    });
    xmpp.on('error', () => {});
    clients.push(xmpp);
    await expect(xmpp.start()).rejects.toMatchObject({ condition: 'not-authorized' });
  });

  it('a second login with the same full JID replaces the first with <conflict/>', async () => {
    const { port } = await start();
    const first = await login(port, 'juliet', 'balcony', 'phone');
    const conflict = new Promise<string>((resolve) =>
      first.xmpp.on('error', (error: { condition?: string }) => resolve(String(error.condition))),
    );
    await login(port, 'juliet', 'balcony', 'phone');
    expect(await conflict).toBe('conflict');
  });

  it('after a replacement, the new session is the one routed: it answers pings and gets messages (raw streams)', async () => {
    const { port } = await start();
    const old = await rawLogin(port, 'juliet', 'balcony', 'same');
    old.write('<presence/>');
    const replaced = readUntilClose(old);
    const fresh = await rawLogin(port, 'juliet', 'balcony', 'same');
    expect((await replaced).data).toContain("<conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>");
    fresh.write("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>");
    expect(await readUntil(fresh, /id='p1'/)).toMatch(/type='result'/);
    const romeo = await rawLogin(port, 'romeo', 'r0meo!', 'orchard');
    romeo.write("<message to='juliet@localhost/same' type='chat'><body>still there?</body></message>");
    expect(await readUntil(fresh, /still there\?/)).toContain("from='romeo@localhost/orchard'");
    fresh.destroy();
    romeo.destroy();
  });

  it('answers a message to an unknown user with service-unavailable', async () => {
    const { port } = await start();
    const { xmpp } = await login(port, 'juliet', 'balcony');
    const bounced = new Promise<string | undefined>((resolve) =>
      xmpp.on('stanza', (stanza) => {
        if (stanza.is('message') && stanza.attrs.type === 'error')
          resolve(stanza.getChild('error')?.children.map((c) => (typeof c === 'string' ? c : c.name))[0]);
      }),
    );
    await xmpp.send(clientXml('message', { to: 'nobody@localhost', type: 'chat' }, clientXml('body', {}, 'hello?')));
    expect(await bounced).toBe('service-unavailable');
  });

  it('disconnects a client that stops reading while others send to it; the sender lives on', async () => {
    const { port, server } = await start({ maxOutputBytes: 256 * 1024, rateLimit: { bytesPerSecond: 0 } });
    const romeo = await login(port, 'romeo', 'r0meo!');
    // Juliet logs in over a raw TLS socket and then never reads again.
    const secure = await rawStartTls(port);
    const plain = Buffer.from('\u0000juliet\u0000balcony').toString('base64');
    secure.write(`${OPEN}<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${plain}</auth>`);
    await readUntil(secure, /<success/);
    secure.write(`${OPEN}<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>slow</resource></bind></iq>`);
    await readUntil(secure, /<\/iq>/);
    secure.pause();
    const closed = once(secure, 'close');
    const body = 'x'.repeat(8 * 1024);
    let sent = 0;
    while (server.sessionsOf('juliet@localhost').length > 0 && sent < 5000) {
      await romeo.xmpp.send(clientXml('message', { to: 'juliet@localhost/slow', type: 'chat' }, clientXml('body', {}, body)));
      sent++;
      if (sent % 20 === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expect(server.sessionsOf('juliet@localhost')).toHaveLength(0);
    expect(sent).toBeLessThan(5000);
    secure.resume();
    await closed;
    const pong = await romeo.xmpp.iqCaller.request(
      clientXml('iq', { type: 'get', to: 'localhost' }, clientXml('ping', { xmlns: 'urn:xmpp:ping' })),
    );
    expect(pong.attrs.type).toBe('result');
  });

  it('sends <system-shutdown/> to every stream on stop', async () => {
    const { port, service } = await start();
    const { xmpp } = await login(port, 'juliet', 'balcony');
    const shutdown = new Promise<string>((resolve) =>
      xmpp.on('error', (error: { condition?: string }) => resolve(String(error.condition))),
    );
    await service.stop();
    expect(await shutdown).toBe('system-shutdown');
  });
});

describe('direct TLS (XEP-0368)', () => {
  it('serves xmpps:// on its own port: TLS from the first byte, no STARTTLS', async () => {
    const { port, binding } = await start({ directTls: true });
    expect(binding.url).toBe(`xmpps://127.0.0.1:${port}`);
    const xmpp = xmppClient({
      timeout: 8000,
      service: `xmpps://127.0.0.1:${port}`,
      domain: 'localhost',
      username: 'juliet',
      password: 'balcony',
    });
    xmpp.on('error', () => {});
    clients.push(xmpp);
    expect(String(await xmpp.start())).toMatch(/^juliet@localhost\//);
  });
});

describe('reading rate limit', () => {
  it('reads a client that sends too fast at the configured rate', async () => {
    const { port } = await start({ rateLimit: { bytesPerSecond: 40_000, burstBytes: 10_000 } });
    const secure = await rawStartTls(port);
    const plain = Buffer.from('\u0000juliet\u0000balcony').toString('base64');
    secure.write(`${OPEN}<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${plain}</auth>`);
    await readUntil(secure, /<success/);
    secure.write(`${OPEN}<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>`);
    await readUntil(secure, /<\/iq>/);
    const started = Date.now();
    // 200 KB of whitespace keepalives (allowed once authenticated), then a ping.
    secure.write(`${' '.repeat(200_000)}<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`);
    expect(await readUntil(secure, /id='p'/, 20_000)).toContain("type='result'");
    // Throttled per chunk read: the bytes before the last chunk (at least 126 KB) take over 3 s at 40 KB/s (a lower bound only: slower is fine).
    expect(Date.now() - started).toBeGreaterThan(2500);
    secure.destroy();
  });
});

describe('slixmpp (Debian python3-slixmpp)', () => {
  it('two slixmpp clients log in over STARTTLS with SCRAM and chat both ways', async () => {
    const { port } = await start();
    const script = new URL('./slixmpp/chat.py', import.meta.url).pathname;
    const { stdout } = await run('/usr/bin/python3', [script, '127.0.0.1', String(port)], { timeout: 60_000 });
    const result = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as {
      jids: string[];
      juliet: { from: string; body: string };
      romeo: { from: string; body: string };
    };
    expect(result.jids).toEqual(['juliet@localhost/slix', 'romeo@localhost/slix']);
    expect(result.juliet).toEqual({ from: 'romeo@localhost/slix', body: 'Wherefore art thou, from slixmpp?' });
    expect(result.romeo).toEqual({ from: 'juliet@localhost/slix', body: 'Here, in the orchard.' });
  });
});

describe('slixmpp: registration, roster, subscriptions, offline delivery', () => {
  it('registers two accounts in-band, subscribes both ways, and delivers a message stored while offline', async () => {
    const { port } = await start({ registration: true });
    const script = new URL('./slixmpp/im.py', import.meta.url).pathname;
    const { stdout } = await run('/usr/bin/python3', [script, '127.0.0.1', String(port)], { timeout: 90_000 });
    const result = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as {
      registered: string[];
      subscriptions: string[];
      offline: { from: string; body: string; delayed: boolean };
    };
    expect(result.registered).toEqual(['benvolio@localhost', 'mercutio@localhost']);
    expect(result.subscriptions).toEqual(['both', 'both']);
    expect(result.offline).toEqual({ from: 'benvolio@localhost/slix', body: 'A plague on both your houses?', delayed: true });
  });
});

describe('bad input over a raw socket', () => {
  it('requires STARTTLS: features offer only starttls, and a stanza before it ends the stream', async () => {
    const { port } = await start();
    const socket = await rawConnect(port);
    socket.write(OPEN);
    const features = await readUntil(socket, /<\/stream:features>/);
    expect(features).toContain("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>");
    expect(features).not.toContain('mechanisms');
    const result = readUntilClose(socket);
    socket.write("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGp1bGlldABiYWxjb255</auth>");
    const { data, closed } = await result;
    expect(data).toContain("<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>");
    expect(data).toContain('</stream:stream>');
    expect(closed).toBe(true);
  });

  it('after STARTTLS offers SCRAM and PLAIN; a stanza before authentication gets <not-authorized/>', async () => {
    const { port } = await start();
    const secure = await rawStartTls(port);
    secure.write(OPEN);
    const features = await readUntil(secure, /<\/stream:features>/);
    expect(features).toContain('<mechanism>SCRAM-SHA-256</mechanism>');
    expect(features).toContain('<mechanism>SCRAM-SHA-1</mechanism>');
    expect(features).toContain('<mechanism>PLAIN</mechanism>');
    expect(features).not.toContain('-PLUS');
    const result = readUntilClose(secure);
    secure.write("<message to='romeo@localhost'><body>sneaky</body></message>");
    expect((await result).data).toContain("<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>");
  });

  it('with channelBinding offers SCRAM-*-PLUS and advertises tls-exporter (XEP-0440) on TLS 1.3', async () => {
    const { port } = await start({ channelBinding: true });
    const secure = await rawStartTls(port, { minVersion: 'TLSv1.3' });
    secure.write(OPEN);
    const features = await readUntil(secure, /<\/stream:features>/);
    expect(features).toContain('<mechanism>SCRAM-SHA-256-PLUS</mechanism>');
    expect(features).toContain(
      "<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'><channel-binding type='tls-exporter'/></sasl-channel-binding>",
    );
    secure.destroy();
  });

  it.each([
    ['a stream to an unknown domain', OPEN.replace("to='localhost'", "to='example.org'"), 'host-unknown'],
    ['a comment', `${OPEN}<!-- x -->`, 'restricted-xml'],
    ['a processing instruction', `${OPEN}<?xml-stylesheet href='x'?>`, 'restricted-xml'],
    [
      'billion laughs',
      `<?xml version='1.0'?><!DOCTYPE s [<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;'><!ENTITY c '&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;'>]>${OPEN}<message><body>&c;</body></message>`,
      'restricted-xml',
    ],
    ['a DTD', "<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]>", 'restricted-xml'],
    ['invalid UTF-8', Buffer.concat([Buffer.from(`${OPEN}<message><body>`), Buffer.from([0xff, 0xfe, 0xfd])]), 'not-well-formed'],
    ['a 10 MB stanza', `${OPEN}<message><body>${'x'.repeat(10 * 1024 * 1024)}</body></message>`, 'policy-violation'],
    ['a never-ending attribute value', `${OPEN}<message to='${'a'.repeat(400_000)}`, 'policy-violation'],
  ])('answers %s with its stream error and closes', async (_name, input, condition) => {
    const { port } = await start();
    const socket = await rawConnect(port);
    const result = readUntilClose(socket, 10_000);
    socket.write(input);
    const { data, closed } = await result;
    expect(data).toContain(`<${condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>`);
    expect(data.endsWith('</stream:stream>')).toBe(true);
    expect(closed).toBe(true);
  });

  it('lets a loopback development server authenticate without TLS, but never with PLAIN', async () => {
    const { port } = await start({ tls: false, allowPlaintext: true });
    const socket = await rawConnect(port);
    socket.write(OPEN);
    const features = await readUntil(socket, /<\/stream:features>/);
    expect(features).toContain('<mechanism>SCRAM-SHA-1</mechanism>');
    expect(features).not.toContain('PLAIN');
    socket.write("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGp1bGlldABiYWxjb255</auth>");
    expect(await readUntil(socket, /<\/failure>/)).toContain('<encryption-required/>');
    socket.destroy();
  });
});
