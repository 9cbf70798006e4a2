import { once } from 'node:events';
import { PortService } from '@portbind/core';
import { describe, expect, it } from 'vitest';
import { rawConnect } from '../../../test/support/net.js';
import { memoryStorage, XmppConfigError, xmppServer } from '../src/index.js';
import { components, parseComponentSecrets } from '../src/modules/component.js';
import { componentLogin, componentOpen, componentStream, handshake, startWithComponents } from './component-support.js';
import { Raw, RawTranscript } from './raw-stream.js';

// External components (XEP-0114): the handshake, routing both ways while connected, bounces once
// gone, and every bad input a component can send answered with its stream error while the server
// and its clients live on.

describe('external components (XEP-0114)', () => {
  it('serve their domain after the handshake: stanzas both ways, listed in disco#items, bounced once gone', async () => {
    const { componentPort, port, module } = await startWithComponents();
    const bot = await componentLogin(componentPort, 'bot.localhost', 'secret');
    expect(module.connected()).toEqual(['bot.localhost']);
    const juliet = await Raw.login(port, 'juliet', 'balcony', 'balcony');

    juliet.send("<message to='echo@bot.localhost' type='chat' id='m1'><body>hello bot</body></message>");
    const got = await bot.until(/<message[\s\S]*?<\/message>/);
    expect(got).toContain("from='juliet@localhost/balcony'");
    expect(got).toContain("to='echo@bot.localhost'");
    expect(got).toContain('<body>hello bot</body>');
    // In the component's namespace (inherited from the stream), not jabber:client.
    expect(got).not.toContain("xmlns='jabber:client'");

    bot.write("<message from='echo@bot.localhost' to='juliet@localhost/balcony' type='chat' id='r1'><body>hi juliet</body></message>");
    const answer = await juliet.next(/<message[^>]* id='r1'/);
    expect(answer).toContain("from='echo@bot.localhost'");
    expect(answer).toContain('<body>hi juliet</body>');
    expect(answer).not.toContain('jabber:component:accept');

    // An IQ to the component and its answer to the client's full JID.
    juliet.send("<iq type='get' id='v1' to='bot.localhost'><query xmlns='jabber:iq:version'/></iq>");
    const asked = await bot.until(/<iq[\s\S]*?<\/iq>/);
    expect(asked).toContain("id='v1'");
    bot.write(
      "<iq type='result' id='v1' from='bot.localhost' to='juliet@localhost/balcony'><query xmlns='jabber:iq:version'><name>bot</name></query></iq>",
    );
    expect(await juliet.next(/<iq[^>]* id='v1'/)).toContain('<name>bot</name>');

    const items = await juliet.iq('i', "<query xmlns='http://jabber.org/protocol/disco#items'/>", "type='get' to='localhost'");
    expect(items).toContain("jid='bot.localhost'");

    // Gone: stanzas to it bounce, and the server no longer lists it.
    bot.write('</stream:stream>');
    await bot.ended();
    await waitFor(() => module.connected().length === 0);
    juliet.send("<message to='echo@bot.localhost' type='chat' id='m2'><body>anyone?</body></message>");
    expect(await juliet.next(/<message[^>]* id='m2'/)).toContain('<remote-server-not-found');
    const after = await juliet.iq('j', "<query xmlns='http://jabber.org/protocol/disco#items'/>", "type='get' to='localhost'");
    expect(after).not.toContain('bot.localhost');
  });

  it("gets answers and bounces on its bare domain: the server's IQ results, an unknown account's error", async () => {
    const { componentPort } = await startWithComponents();
    const bot = await componentLogin(componentPort, 'bot.localhost', 'secret');
    bot.write("<iq type='get' id='p1' from='bot.localhost' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    const pong = await bot.until(/<iq[^>]* id='p1'[^>]*\/>|<iq[^>]* id='p1'[\s\S]*?<\/iq>/);
    expect(pong).toContain("type='result'");
    expect(pong).toContain("to='bot.localhost'");
    bot.write("<message id='x1' from='bot.localhost' to='nobody@localhost' type='chat'><body>hello?</body></message>");
    const bounce = await bot.until(/<message[^>]* id='x1'[\s\S]*?<\/message>/);
    expect(bounce).toContain("type='error'");
    expect(bounce).toContain('<service-unavailable');
  });

  it('answers a wrong secret with <not-authorized/> and closes; the right one still works after', async () => {
    const { componentPort, port } = await startWithComponents();
    const { raw, id } = await componentStream(componentPort, 'bot.localhost');
    raw.write(`<handshake>${handshake(id, 'wrong')}</handshake>`);
    const text = await raw.ended();
    expect(text).toMatch(/<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'\/>[\s\S]*<\/stream:stream>$/);
    expect(raw.closed).toBe(true);
    // A handshake computed with another stream's id is wrong too (no replay).
    const first = await componentStream(componentPort, 'bot.localhost');
    const second = await componentStream(componentPort, 'bot.localhost');
    second.raw.write(`<handshake>${handshake(first.id, 'secret')}</handshake>`);
    expect(await second.raw.ended()).toContain('<not-authorized');
    first.raw.write(`<handshake>${handshake(first.id, 'secret').toUpperCase()}</handshake>`);
    await first.raw.until(/<handshake\/>/);
    const juliet = await Raw.login(port, 'juliet', 'balcony', 'r');
    await juliet.sync();
  });

  it('answers an unknown domain with <host-unknown/>, a second component for a connected domain with <conflict/>', async () => {
    const { componentPort, port } = await startWithComponents();
    const unknown = await componentStream(componentPort, 'nobody.localhost');
    expect(await unknown.raw.ended()).toContain('<host-unknown');
    const server = await componentStream(componentPort, 'localhost');
    expect(await server.raw.ended()).toContain('<host-unknown');

    const bot = await componentLogin(componentPort, 'bot.localhost', 'secret');
    const second = await componentStream(componentPort, 'bot.localhost');
    second.raw.write(`<handshake>${handshake(second.id, 'secret')}</handshake>`);
    expect(await second.raw.ended()).toContain('<conflict');
    // The first one is untouched: it still gets its stanzas.
    const juliet = await Raw.login(port, 'juliet', 'balcony', 'r');
    juliet.send("<message to='bot.localhost' type='chat' id='still'><body>still there?</body></message>");
    expect(await bot.until(/<message[^>]* id='still'[\s\S]*?<\/message>/)).toContain('still there?');
  });

  it('closes a stream with no handshake in time with <connection-timeout/>', async () => {
    const { componentPort } = await startWithComponents({ components: { handshakeTimeoutMs: 300 } });
    const { raw } = await componentStream(componentPort, 'bot.localhost');
    expect(await raw.ended()).toContain('<connection-timeout');
    // Saying nothing at all times out too.
    const silent = new RawTranscript(await rawConnect(componentPort));
    expect(await silent.ended()).toContain('<connection-timeout');
  });

  it('closes a component that sends from another domain with <invalid-from/>, and frees its domain', async () => {
    const { componentPort, port, module } = await startWithComponents();
    const bot = await componentLogin(componentPort, 'bot.localhost', 'secret');
    bot.write("<message from='romeo@localhost' to='juliet@localhost' type='chat'><body>forged</body></message>");
    expect(await bot.ended()).toContain('<invalid-from');
    await waitFor(() => module.connected().length === 0);
    const juliet = await Raw.login(port, 'juliet', 'balcony', 'r');
    juliet.send('<presence/>');
    await juliet.sync();
    expect(juliet.take(/forged/)).toEqual([]);
    // A subdomain is another domain.
    const again = await componentLogin(componentPort, 'bot.localhost', 'secret');
    again.write("<message from='x@sub.bot.localhost' to='juliet@localhost'><body>b</body></message>");
    expect(await again.ended()).toContain('<invalid-from');
  });

  it('answers a stanza with no addressee with <bad-request/>, a bad one with <jid-malformed/>, and stamps a missing from', async () => {
    const { componentPort, port } = await startWithComponents();
    const bot = await componentLogin(componentPort, 'bot.localhost', 'secret');
    bot.write("<message id='n1' from='bot.localhost' type='chat'><body>to nobody</body></message>");
    expect(await bot.until(/<message[^>]* id='n1'[\s\S]*?<\/message>/)).toContain('<bad-request');
    bot.write("<message id='n2' from='bot.localhost' to='a@b@c' type='chat'><body>x</body></message>");
    expect(await bot.until(/<message[^>]* id='n2'[\s\S]*?<\/message>/)).toContain('<jid-malformed');
    const juliet = await Raw.login(port, 'juliet', 'balcony', 'r');
    bot.write("<message id='n3' to='juliet@localhost/r' type='chat'><body>no from</body></message>");
    expect(await juliet.next(/id='n3'/)).toContain("from='bot.localhost'");
  });

  it('holds components to the stanza size and depth limits, before and after the handshake', async () => {
    const { componentPort, port } = await startWithComponents({ components: { maxStanzaSize: 20_000 } });
    // Before the handshake: 10 000 bytes.
    const early = await componentStream(componentPort, 'bot.localhost');
    early.raw.write(`<handshake>${'a'.repeat(12_000)}</handshake>`);
    expect(await early.raw.ended()).toContain('<policy-violation');
    const bot = await componentLogin(componentPort, 'bot.localhost', 'secret');
    bot.write(`<message from='bot.localhost' to='juliet@localhost'><body>${'x'.repeat(15_000)}</body></message>`);
    bot.write(`<message from='bot.localhost' to='juliet@localhost'><body>${'y'.repeat(25_000)}</body></message>`);
    expect(await bot.ended()).toContain('<policy-violation');
    const deep = await componentLogin(componentPort, 'bot.localhost', 'secret');
    deep.write(`<message from='bot.localhost' to='juliet@localhost'>${'<a>'.repeat(100)}${'</a>'.repeat(100)}</message>`);
    expect(await deep.ended()).toContain('<policy-violation');
    // Clients are unaffected.
    const juliet = await Raw.login(port, 'juliet', 'balcony', 'r');
    await juliet.sync();
  });

  it('refuses a client stream, a non-stanza, and a second header', async () => {
    const { componentPort } = await startWithComponents();
    const socket = await rawConnect(componentPort);
    const client = new RawTranscript(socket);
    client.write(componentOpen('bot.localhost').replace('jabber:component:accept', 'jabber:client'));
    expect(await client.ended()).toContain('<invalid-namespace');
    const bot = await componentLogin(componentPort, 'bot.localhost', 'secret');
    bot.write("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
    expect(await bot.ended()).toContain('<unsupported-stanza-type');
    const early = await componentStream(componentPort, 'bot.localhost');
    early.raw.write("<message to='juliet@localhost'/>");
    expect(await early.raw.ended()).toContain('<not-authorized');
  });

  it('refuses a component from another machine unless allowRemote (PROXY protocol names the peer)', async () => {
    const proxied = { proxyProtocol: { trusted: ['127.0.0.1'] } };
    const { componentPort } = await startWithComponents({ componentBind: proxied });
    const remote = await componentStream(componentPort, 'bot.localhost', 'PROXY TCP4 203.0.113.5 127.0.0.1 40000 5347\r\n');
    expect(await remote.raw.ended()).toContain('<policy-violation');
    const local = await componentStream(componentPort, 'bot.localhost', 'PROXY TCP4 127.0.0.1 127.0.0.1 40000 5347\r\n');
    local.raw.write(`<handshake>${handshake(local.id, 'secret')}</handshake>`);
    await local.raw.until(/<handshake\/>/);

    const open = await startWithComponents({ componentBind: proxied, components: { allowRemote: true } });
    const allowed = await componentStream(open.componentPort, 'bot.localhost', 'PROXY TCP4 203.0.113.5 127.0.0.1 40000 5347\r\n');
    allowed.raw.write(`<handshake>${handshake(allowed.id, 'secret')}</handshake>`);
    await allowed.raw.until(/<handshake\/>/);
  });

  it('refuses connections past maxConnections with <resource-constraint/>', async () => {
    const { componentPort } = await startWithComponents({ componentBind: { maxConnections: 1 } });
    await componentLogin(componentPort, 'bot.localhost', 'secret');
    const refused = new RawTranscript(await rawConnect(componentPort));
    expect(await refused.ended()).toMatch(/<resource-constraint[\s\S]*<\/stream:stream>/);
  });

  it('sends <system-shutdown/> when the service stops', async () => {
    const { componentPort, service } = await startWithComponents();
    const bot = await componentLogin(componentPort, 'bot.localhost', 'secret');
    await service.stop();
    expect(await bot.ended()).toMatch(/<system-shutdown[\s\S]*<\/stream:stream>/);
  });

  it('disconnects a component that stops reading', async () => {
    const { componentPort, port } = await startWithComponents({ components: { maxOutputBytes: 64 * 1024 } });
    const bot = await componentLogin(componentPort, 'bot.localhost', 'secret');
    // The component writes to itself and reads nothing: what the server writes back piles up.
    bot.socket.pause();
    const body = 'z'.repeat(60_000);
    for (let i = 0; i < 1000 && !bot.closed; i++) {
      if (!bot.socket.write(`<message from='bot.localhost' to='bot.localhost'><body>${body}</body></message>`)) {
        await Promise.race([once(bot.socket, 'drain'), once(bot.socket, 'close')]).catch(() => {});
      }
    }
    await bot.ended(20_000);
    expect(bot.closed).toBe(true);
    const juliet = await Raw.login(port, 'juliet', 'balcony', 'r');
    await juliet.sync();
  });

  it('refuses to open a component port whose module is in no server, and a module in two servers', async () => {
    const orphan = components({ secrets: { 'bot.localhost': 'secret' } });
    const service = new PortService({ env: {} });
    service.bind(orphan.adapter(), { port: 0, host: '127.0.0.1' });
    await expect(service.start()).rejects.toThrow(/not in a server's modules/);
    const shared = components({ secrets: { 'bot.localhost': 'secret' } });
    xmppServer({ domain: 'localhost', storage: memoryStorage(), modules: [shared] });
    expect(() => xmppServer({ domain: 'localhost', storage: memoryStorage(), modules: [shared] })).toThrow(/one server/);
  });

  it('validates its options (PB_ERR_XMPP_OPTION)', () => {
    const bad: unknown[] = [
      undefined,
      {},
      { secrets: {} },
      { secrets: { 'bot.localhost': '' } },
      { secrets: { 'not a domain': 'x' } },
      { secrets: { 'user@bot.localhost': 'x' } },
      { secrets: { 'bot.localhost': 'x', 'BOT.localhost': 'y' } },
      { secrets: { 'bot.localhost': 'x' }, handshakeTimeoutMs: -1 },
      { secrets: { 'bot.localhost': 'x' }, allowRemote: 'yes' },
    ];
    for (const options of bad) {
      expect(() => components(options as never), JSON.stringify(options)).toThrow(XmppConfigError);
    }
    try {
      components({ secrets: {} });
    } catch (error) {
      expect((error as XmppConfigError).code).toBe('PB_ERR_XMPP_OPTION');
    }
    // The server's own domain is not a component's.
    expect(() =>
      xmppServer({
        domain: 'localhost',
        storage: memoryStorage(),
        modules: [components({ secrets: { 'bot.localhost': 'x', localhost: 'y' } })],
      }),
    ).toThrow(/own domain/);
    expect(parseComponentSecrets('bot.localhost=s3cret, gw.localhost=a=b')).toEqual({ 'bot.localhost': 's3cret', 'gw.localhost': 'a=b' });
    expect(parseComponentSecrets('')).toEqual({});
    expect(parseComponentSecrets(undefined)).toEqual({});
    expect(() => parseComponentSecrets('bot.localhost')).toThrow(XmppConfigError);
    expect(() => parseComponentSecrets('=secret')).toThrow(XmppConfigError);
  });
});

async function waitFor(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
}
