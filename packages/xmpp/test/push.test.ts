import { describe, expect, it } from 'vitest';
import { memoryStorage, XmppConfigError, type XmppServer, type XmppStorage } from '../src/index.js';
import { type PushOptions, push } from '../src/modules/push.js';
import { componentLogin, startWithComponents } from './component-support.js';
import { Raw, type RawTranscript } from './raw-stream.js';

// Push notifications (XEP-0357): a device registers its app server (here a raw XEP-0114 component
// on push.localhost); messages the account would miss — nobody online, or the device's session
// hibernating — are published to the app server with the summary form; errors disable; every bad
// enable gets its error over a raw socket.

const PUSH = 'urn:xmpp:push:0';
const FORM = `<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var='secret'><value>eruio234vzxc2kla-91</value></field></x>`;

async function setup(options: PushOptions = {}, storage: XmppStorage = memoryStorage()) {
  const started = await startWithComponents({ storage, modules: (base) => [...base, push({ minIntervalMs: 0, ...options })] });
  const app = await componentLogin(started.componentPort, 'push.localhost', 'pushsecret');
  return { ...started, app, storage };
}

function enable(raw: Raw, id: string, node: string, attrs = "jid='push.localhost'", form = ''): Promise<string> {
  return raw.iq(id, `<enable xmlns='${PUSH}' ${attrs} node='${node}'>${form}</enable>`);
}

/** The next publish the app server gets: the whole IQ, its id, node and summary fields. */
async function nextPublish(app: RawTranscript): Promise<{ text: string; id: string; node: string; fields: Record<string, string> }> {
  const text = await app.until(/<iq[^>]*type='set'[\s\S]*?<\/iq>/, 15_000);
  const iq = text.slice(text.lastIndexOf('<iq'));
  const fields: Record<string, string> = {};
  const summary = /<notification xmlns='urn:xmpp:push:0'>([\s\S]*?)<\/notification>/.exec(iq)?.[1] ?? '';
  for (const match of summary.matchAll(/<field var='([^']+)'[^>]*><value>([^<]*)<\/value><\/field>/g))
    fields[match[1] as string] = match[2] as string;
  return { text: iq, id: /id='([^']+)'/.exec(iq)?.[1] ?? '', node: /<publish node='([^']+)'/.exec(iq)?.[1] ?? '', fields };
}

async function offline(raw: Raw, server: XmppServer, bare: string): Promise<void> {
  raw.send('</stream:stream>');
  await waitFor(() => server.sessionsOf(bare).length === 0);
}

describe('push notifications (XEP-0357)', () => {
  it('publishes the summary to the app server for a message to an account with nobody online; the message is still stored', async () => {
    const { port, app, server } = await setup();
    const juliet = await Raw.login(port, 'juliet', 'balcony', 'phone');
    const info = await juliet.iq('d', "<query xmlns='http://jabber.org/protocol/disco#info'/>", "type='get' to='juliet@localhost'");
    expect(info).toContain(`<feature var='${PUSH}'/>`);
    expect(await enable(juliet, 'e1', 'yxs32uqsflafdk3iuqo', "jid='push.localhost'", FORM)).toMatch(/type='result'/);
    await offline(juliet, server, 'juliet@localhost');

    const romeo = await Raw.login(port, 'romeo', 'r0meo!', 'garden');
    romeo.send("<message to='juliet@localhost' type='chat' id='m1'><body>Wherefore art thou?</body></message>");
    const publish = await nextPublish(app);
    expect(publish.text).toContain("from='localhost'");
    expect(publish.text).toContain("to='push.localhost'");
    expect(publish.node).toBe('yxs32uqsflafdk3iuqo');
    expect(publish.fields).toEqual({ FORM_TYPE: 'urn:xmpp:push:summary', 'message-count': '1', 'last-message-body': 'New Message!' });
    // Private by default: neither the words nor the sender reach the app server.
    expect(publish.text).not.toContain('Wherefore');
    expect(publish.text).not.toContain('romeo');
    // The publish-options the client gave, as given.
    expect(publish.text).toContain(`<publish-options>${FORM}</publish-options>`);
    app.write(`<iq type='result' id='${publish.id}' from='push.localhost' to='localhost'/>`);

    // A chat state notification (no body) wakes nobody; the next message counts two.
    romeo.send("<message to='juliet@localhost' type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>");
    romeo.send("<message to='juliet@localhost' type='chat' id='m2'><body>It is my lady</body></message>");
    const second = await nextPublish(app);
    expect(second.fields['message-count']).toBe('2');

    // The messages wait in offline storage as always.
    const back = await Raw.login(port, 'juliet', 'balcony', 'phone');
    back.send('<presence/>');
    expect(await back.next(/id='m1'/)).toContain('Wherefore art thou?');
    expect(await back.next(/id='m2'/)).toContain('It is my lady');
  });

  it('includes the body and sender when configured, and counts subscription requests', async () => {
    const { port, app, server } = await setup({ includeBody: true, includeSender: true });
    const juliet = await Raw.login(port, 'juliet', 'balcony', 'phone');
    await enable(juliet, 'e1', 'n1');
    await offline(juliet, server, 'juliet@localhost');
    const romeo = await Raw.login(port, 'romeo', 'r0meo!', 'garden');
    romeo.send("<message to='juliet@localhost/phone' type='chat'><body>Good night, good night!</body></message>");
    const publish = await nextPublish(app);
    expect(publish.fields).toMatchObject({
      'message-count': '1',
      'last-message-sender': 'romeo@localhost',
      'last-message-body': 'Good night, good night!',
    });
    app.write(`<iq type='result' id='${publish.id}' from='push.localhost' to='localhost'/>`);
    romeo.send("<presence to='juliet@localhost' type='subscribe'/>");
    const subscription = await nextPublish(app);
    expect(subscription.fields['pending-subscription-count']).toBe('1');
    expect(subscription.fields['last-message-body']).toBeUndefined();
  });

  it("wakes a device whose stream-managed session hibernates, only that device's registration", async () => {
    const { port, app, server } = await setup();
    const phone = await Raw.login(port, 'juliet', 'balcony', 'phone');
    phone.send("<presence/><enable xmlns='urn:xmpp:sm:3' resume='true'/>");
    await phone.next(/<enabled/);
    await enable(phone, 'e1', 'phone-node');
    // Another device with a registration, online: not pushed for.
    const tablet = await Raw.login(port, 'juliet', 'balcony', 'tablet');
    tablet.send('<presence><priority>-1</priority></presence>');
    await enable(tablet, 'e2', 'tablet-node');
    await tablet.sync();
    phone.socket.destroy();
    await waitFor(() => server.sessionsOf('juliet@localhost').some((session) => session.stage === 'hibernating'));

    const romeo = await Raw.login(port, 'romeo', 'r0meo!', 'garden');
    romeo.send("<message to='juliet@localhost' type='chat' id='h1'><body>Are you there?</body></message>");
    const publish = await nextPublish(app);
    expect(publish.node).toBe('phone-node');
    expect(publish.fields['message-count']).toBe('1');
    app.write(`<iq type='result' id='${publish.id}' from='push.localhost' to='localhost'/>`);
    await romeo.sync();
    // The tablet (online, priority -1) got no push: nothing more reached the app server.
    romeo.send("<message to='juliet@localhost' type='chat' id='h2'><body>Hello?</body></message>");
    const again = await nextPublish(app);
    expect(again.node).toBe('phone-node');
  });

  it('wakes a device whose link died with a message it never acknowledged (at hibernation start)', async () => {
    const { port, app, server } = await setup();
    const phone = await Raw.login(port, 'juliet', 'balcony', 'phone');
    phone.send("<presence/><enable xmlns='urn:xmpp:sm:3' resume='true'/>");
    await phone.next(/<enabled/);
    await enable(phone, 'e1', 'phone-node');
    const romeo = await Raw.login(port, 'romeo', 'r0meo!', 'garden');
    romeo.send("<message to='juliet@localhost/phone' type='chat' id='u1'><body>Unread</body></message>");
    // Delivered, never acknowledged: no push while the phone is connected.
    await phone.next(/id='u1'/);
    phone.socket.destroy();
    await waitFor(() => server.sessionsOf('juliet@localhost').some((session) => session.stage === 'hibernating'));
    const publish = await nextPublish(app);
    expect(publish.node).toBe('phone-node');
    expect(publish.fields['message-count']).toBe('1');
  });

  it('disables a registration the app server answers with an error; others stay', async () => {
    const { port, app, server, storage } = await setup();
    const juliet = await Raw.login(port, 'juliet', 'balcony', 'phone');
    await enable(juliet, 'e1', 'gone-node');
    await enable(juliet, 'e2', 'good-node');
    await offline(juliet, server, 'juliet@localhost');
    const romeo = await Raw.login(port, 'romeo', 'r0meo!', 'garden');
    romeo.send("<message to='juliet@localhost' type='chat'><body>one</body></message>");
    const first = [await nextPublish(app), await nextPublish(app)];
    const gone = first.find((p) => p.node === 'gone-node');
    const good = first.find((p) => p.node === 'good-node');
    expect(gone).toBeDefined();
    expect(good).toBeDefined();
    app.write(
      `<iq type='error' id='${gone?.id}' from='push.localhost' to='localhost'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`,
    );
    app.write(`<iq type='result' id='${good?.id}' from='push.localhost' to='localhost'/>`);
    await waitFor(async () => (await storage.keyValue('push').keys('juliet')).length === 1);
    expect(await storage.keyValue('push').keys('juliet')).toEqual(['push.localhost<good-node']);
    romeo.send("<message to='juliet@localhost' type='chat'><body>two</body></message>");
    expect((await nextPublish(app)).node).toBe('good-node');
    // A transient error (type wait) does not disable.
    romeo.send("<message to='juliet@localhost' type='chat'><body>three</body></message>");
    const third = await nextPublish(app);
    app.write(
      `<iq type='error' id='${third.id}' from='push.localhost' to='localhost'><error type='wait'><resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`,
    );
    romeo.send("<message to='juliet@localhost' type='chat'><body>four</body></message>");
    expect((await nextPublish(app)).node).toBe('good-node');
  });

  it('throttles pushes per device: messages within the window go out in one push with their count', async () => {
    const { port, app, server } = await setup({ minIntervalMs: 2500 });
    const juliet = await Raw.login(port, 'juliet', 'balcony', 'phone');
    await enable(juliet, 'e1', 'n');
    await offline(juliet, server, 'juliet@localhost');
    const romeo = await Raw.login(port, 'romeo', 'r0meo!', 'garden');
    for (let i = 1; i <= 5; i++) romeo.send(`<message to='juliet@localhost' type='chat'><body>burst ${i}</body></message>`);
    await romeo.sync();
    const first = await nextPublish(app);
    const second = await nextPublish(app);
    expect(Number(first.fields['message-count'])).toBeGreaterThanOrEqual(1);
    expect(second.fields['message-count']).toBe('5');
    // Two publishes for five messages.
    await romeo.sync();
    expect(app.rest).not.toMatch(/<iq/);
  });

  it('publishes to a client of this server acting as the app server (its full JID), which answers', async () => {
    const { port, server, storage } = await setup();
    const appClient = await Raw.login(port, 'romeo', 'r0meo!', 'appserver');
    const juliet = await Raw.login(port, 'juliet', 'balcony', 'phone');
    expect(await enable(juliet, 'e1', 'n', "jid='romeo@localhost/appserver'")).toMatch(/type='result'/);
    await offline(juliet, server, 'juliet@localhost');
    const tybalt = await Raw.login(port, 'romeo', 'r0meo!', 'other');
    tybalt.send("<message to='juliet@localhost' type='chat'><body>x</body></message>");
    const publish = await appClient.next(/<iq[^>]*type='set'[\s\S]*<notification xmlns='urn:xmpp:push:0'>/);
    expect(publish).toContain("from='localhost'");
    expect(publish).toContain("<publish node='n'>");
    const id = /id='([^']+)'/.exec(publish)?.[1];
    appClient.send(
      `<iq type='error' id='${id}' to='localhost'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`,
    );
    await waitFor(async () => (await storage.keyValue('push').keys('juliet')).length === 0);
  });

  it('keeps registrations across a restart', async () => {
    const storage = memoryStorage();
    const first = await setup({}, storage);
    const juliet = await Raw.login(first.port, 'juliet', 'balcony', 'phone');
    await enable(juliet, 'e1', 'durable');
    await first.service.stop();
    const second = await setup({}, storage);
    const romeo = await Raw.login(second.port, 'romeo', 'r0meo!', 'garden');
    romeo.send("<message to='juliet@localhost' type='chat'><body>after the restart</body></message>");
    expect((await nextPublish(second.app)).node).toBe('durable');
  });

  it('answers bad enables and disables with their errors over a raw socket', async () => {
    const { port, app, componentPort, server } = await setup({ maxRegistrations: 2 });
    const juliet = await Raw.login(port, 'juliet', 'balcony', 'phone');
    const error = async (id: string, body: string, attrs?: string) => juliet.iq(id, body, attrs);
    expect(await error('a', `<enable xmlns='${PUSH}' node='n'/>`)).toMatch(/type='error'[\s\S]*<bad-request[\s\S]*jid/);
    expect(await error('b', `<enable xmlns='${PUSH}' jid='push.localhost'/>`)).toMatch(/<bad-request[\s\S]*node/);
    expect(await error('c', `<enable xmlns='${PUSH}' jid='a@b@c' node='n'/>`)).toContain('<jid-malformed');
    // A service this server cannot reach: no server-to-server connections.
    const unknown = await error('d', `<enable xmlns='${PUSH}' jid='push.example.net' node='n'/>`);
    expect(unknown).toContain('<remote-server-not-found');
    expect(unknown).toContain('component');
    expect(await error('e', `<enable xmlns='${PUSH}' jid='juliet@localhost' node='n'/>`)).toContain('<bad-request');
    expect(await error('f', `<enable xmlns='${PUSH}' jid='nobody@localhost/app' node='n'/>`)).toContain('<item-not-found');
    expect(await error('f2', `<enable xmlns='${PUSH}' jid='romeo@localhost' node='n'/>`)).toContain('<not-acceptable');
    expect(await error('f3', `<enable xmlns='${PUSH}' jid='localhost' node='n'/>`)).toContain('<not-acceptable');
    expect(await error('g', `<enable xmlns='${PUSH}' jid='push.localhost' node='${'n'.repeat(2000)}'/>`)).toContain('<not-acceptable');
    const big = `<x xmlns='jabber:x:data' type='submit'><field var='a'><value>${'v'.repeat(9000)}</value></field></x>`;
    expect(await error('h', `<enable xmlns='${PUSH}' jid='push.localhost' node='n'>${big}</enable>`)).toContain('<not-acceptable');
    expect(await error('i', `<disable xmlns='${PUSH}' node='n'/>`)).toContain('<bad-request');
    // Only for oneself.
    expect(await error('j', `<enable xmlns='${PUSH}' jid='push.localhost' node='n'/>`, "type='set' to='romeo@localhost'")).toContain(
      '<service-unavailable',
    );
    // A configured component that is not connected now is accepted (it may be restarting).
    app.write('</stream:stream>');
    await app.ended();
    expect(await enable(juliet, 'k', 'while-away')).toMatch(/type='result'/);

    // Past the limit the oldest registration goes.
    expect(await enable(juliet, 'l', 'second')).toMatch(/type='result'/);
    expect(await enable(juliet, 'm', 'third')).toMatch(/type='result'/);
    const back = await componentLogin(componentPort, 'push.localhost', 'pushsecret');
    await offline(juliet, server, 'juliet@localhost');
    const romeo = await Raw.login(port, 'romeo', 'r0meo!', 'garden');
    romeo.send("<message to='juliet@localhost' type='chat'><body>x</body></message>");
    const nodes = [(await nextPublish(back)).node, (await nextPublish(back)).node].sort();
    expect(nodes).toEqual(['second', 'third']);
  });

  it('disable removes one node or every node of a service', async () => {
    const { port, app, server, storage } = await setup();
    const juliet = await Raw.login(port, 'juliet', 'balcony', 'phone');
    await enable(juliet, 'a', 'one');
    await enable(juliet, 'b', 'two');
    await enable(juliet, 'c', 'three');
    expect(await juliet.iq('d', `<disable xmlns='${PUSH}' jid='push.localhost' node='one'/>`)).toMatch(/type='result'/);
    expect((await storage.keyValue('push').keys('juliet')).sort()).toEqual(['push.localhost<three', 'push.localhost<two']);
    expect(await juliet.iq('e', `<disable xmlns='${PUSH}' jid='push.localhost'/>`)).toMatch(/type='result'/);
    expect(await storage.keyValue('push').keys('juliet')).toEqual([]);
    await offline(juliet, server, 'juliet@localhost');
    const romeo = await Raw.login(port, 'romeo', 'r0meo!', 'garden');
    romeo.send("<message to='juliet@localhost' type='chat'><body>x</body></message>");
    await romeo.sync();
    await romeo.sync();
    expect(app.rest).not.toMatch(/<iq/);
  });

  it('validates its options (PB_ERR_XMPP_OPTION)', () => {
    for (const options of [
      { maxRegistrations: 0 },
      { minIntervalMs: -1 },
      { includeBody: 'yes' },
      { importantBody: 1 },
      { maxErrors: Number.NaN },
    ]) {
      expect(() => push(options as never), JSON.stringify(options)).toThrow(XmppConfigError);
    }
  });
});

async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
