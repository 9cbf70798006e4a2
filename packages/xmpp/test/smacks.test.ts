import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { xml as clientXml, client as xmppClient } from '@xmpp/client';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { defaultModules } from '../src/modules/index.js';
import { type SmacksOptions, smacks } from '../src/modules/smacks.js';
import { memoryStorage } from '../src/stores/memory.js';
import { sqliteStorage } from '../src/stores/sqlite.js';
import type { XmppStorage } from '../src/stores/types.js';
import { RawTranscript } from './raw-stream.js';
import { clients, login, newClient, OPEN, rawLogin, rawStartTls, start } from './support.js';

const run = promisify(execFile);

/** A server with stream management (its options as given) on this storage. */
function smServer(options: SmacksOptions = {}, storage: XmppStorage = memoryStorage()) {
  return start({ server: { storage, modules: [...defaultModules().filter((m) => m.name !== 'smacks'), smacks(options)] } });
}

class Raw extends RawTranscript {}

const SM = 'urn:xmpp:sm:3';

/** Logged in with PLAIN over STARTTLS, `resource` bound. */
async function bound(port: number, user = 'juliet', password = 'balcony', resource = 'raw'): Promise<Raw> {
  return new Raw(await rawLogin(port, user, password, resource));
}

/** Logged in (stream restarted after SASL), no resource bound yet; the features have been read. */
async function authenticated(port: number, user = 'juliet', password = 'balcony'): Promise<{ raw: Raw; features: string }> {
  const raw = new Raw(await rawStartTls(port));
  const plain = Buffer.from(`\u0000${user}\u0000${password}`).toString('base64');
  raw.write(`${OPEN}<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${plain}</auth>`);
  await raw.until(/<success[^>]*>/);
  raw.write(OPEN);
  const features = await raw.until(/<\/stream:features>/);
  return { raw, features };
}

/** Enable stream management with resumption: the SM-ID. */
async function enable(raw: Raw): Promise<string> {
  raw.write(`<enable xmlns='${SM}' resume='true'/>`);
  const enabled = await raw.until(/<enabled [^>]*\/>/);
  const id = /id='([^']+)'/.exec(enabled)?.[1];
  expect(enabled).toContain("resume='true'");
  if (id === undefined) throw new Error(`no id in ${enabled}`);
  return id;
}

/** The `h` of the next `<a/>`. */
async function ackOf(raw: Raw): Promise<number> {
  const a = await raw.until(/<a xmlns='urn:xmpp:sm:3' h='\d+'\/>/);
  return Number(/h='(\d+)'/.exec(a)?.[1]);
}

function bodies(text: string): string[] {
  return [...text.matchAll(/<body>([^<]*)<\/body>/g)].map((m) => m[1] as string);
}

/** A TCP proxy in front of the server whose connections can be cut (both sides at once), as a lost mobile link is. */
async function proxy(port: number): Promise<{ port: number; cut(): void; close(): Promise<void> }> {
  const pairs = new Set<[Socket, Socket]>();
  const server: Server = createServer((downstream) => {
    const upstream = tcpConnect(port, '127.0.0.1');
    const pair: [Socket, Socket] = [downstream, upstream];
    pairs.add(pair);
    downstream.pipe(upstream);
    upstream.pipe(downstream);
    const drop = (): void => {
      pairs.delete(pair);
      downstream.destroy();
      upstream.destroy();
    };
    downstream.on('error', drop);
    upstream.on('error', drop);
    downstream.on('close', drop);
    upstream.on('close', drop);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return {
    port: address.port,
    cut() {
      for (const [downstream, upstream] of pairs) {
        // A reset, not a FIN: no </stream:stream> reaches the server.
        downstream.resetAndDestroy();
        upstream.resetAndDestroy();
      }
      pairs.clear();
    },
    close: () =>
      new Promise((resolve) => {
        for (const [downstream, upstream] of pairs) {
          downstream.destroy();
          upstream.destroy();
        }
        server.close(() => resolve());
      }),
  };
}

/** Chat messages of about 3,100 characters each (a body, then 3,000 x), one after the other. */
async function sendBig(
  from: { send(element: ReturnType<typeof clientXml>): Promise<unknown> },
  to: string,
  bodies: string[],
): Promise<void> {
  for (const body of bodies) {
    await from.send(clientXml('message', { to, type: 'chat', id: body }, clientXml('body', {}, `${body} ${'x'.repeat(3000)}`)));
  }
}

/** Poll until `check` is true (no fixed sleeps: the box may be slow). */
async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

describe('stream management (XEP-0198): negotiation and acks over raw streams', () => {
  it('offers <sm xmlns="urn:xmpp:sm:3"/> after SASL, refuses <enable/> before bind, and enables after bind', async () => {
    const { port } = await smServer();
    const { raw, features } = await authenticated(port);
    expect(features).toMatch(/<sm xmlns='urn:xmpp:sm:3'>/);
    raw.write(`<enable xmlns='${SM}' resume='true'/>`);
    expect(await raw.until(/<\/failed>/)).toMatch(
      /<failed xmlns='urn:xmpp:sm:3'><unexpected-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'\/><\/failed>/,
    );
    // Recoverable: the stream goes on, bind, then enable.
    raw.write(`<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>`);
    expect(await raw.until(/<\/iq>/)).toContain('juliet@localhost/r');
    raw.write(`<enable xmlns='${SM}' resume='true' max='120'/>`);
    const enabled = await raw.until(/<enabled [^>]*\/>/);
    expect(enabled).toMatch(/id='[A-Za-z0-9_-]{20,}'/);
    // The client's shorter maximum wins.
    expect(enabled).toContain("max='120'");
    // A second <enable/> on the same stream is refused too.
    raw.write(`<enable xmlns='${SM}'/>`);
    expect(await raw.until(/<\/failed>/)).toContain('unexpected-request');
    raw.socket.destroy();
  });

  it('answers <r/> and <a/> before <enable/> with <failed><unexpected-request/></failed> and keeps the stream', async () => {
    const { port } = await smServer();
    const raw = await bound(port);
    raw.write(`<r xmlns='${SM}'/>`);
    expect(await raw.until(/<\/failed>/)).toContain('<unexpected-request');
    raw.write(`<a xmlns='${SM}' h='3'/>`);
    expect(await raw.until(/<\/failed>/)).toContain('<unexpected-request');
    raw.write(`<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`);
    expect(await raw.until(/<iq [^>]*id='p'[^>]*\/>/)).toContain("type='result'");
    raw.socket.destroy();
  });

  it('counts the client stanzas in <a h/>, asks for acks after what it sends, and drops what the client acknowledges', async () => {
    const { port } = await smServer();
    const juliet = await bound(port);
    await enable(juliet);
    for (const id of ['p1', 'p2', 'p3']) juliet.write(`<iq type='get' id='${id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`);
    juliet.write(`<r xmlns='${SM}'/>`);
    expect(await ackOf(juliet)).toBe(3);
    // The three pongs were stanzas to the client: the server asks for an ack of them.
    await eventually(() => juliet.text.includes("<r xmlns='urn:xmpp:sm:3'/>"));
    juliet.write(`<a xmlns='${SM}' h='3'/>`);
    // The ack is consistent: the stream lives on.
    juliet.write(`<iq type='get' id='p4' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq><r xmlns='${SM}'/>`);
    expect(await ackOf(juliet)).toBe(4);
    juliet.socket.destroy();
  });

  it('acknowledges a message only once its archive entries are committed: another connection to the SQLite file sees them when <a/> arrives', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'portbind-smacks-'));
    try {
      const file = join(dir, 'xmpp.sqlite');
      // MAM at its defaults: delivery does not wait for the archive; the ack does.
      const { port } = await smServer({}, sqliteStorage({ file }));
      const juliet = await bound(port, 'juliet', 'balcony', 'balcony');
      await enable(juliet);
      const romeo = await bound(port, 'romeo', 'r0meo!', 'orchard');
      await enable(romeo);
      const reader = new Database(file, { readonly: true });
      try {
        const rows = (): unknown => reader.prepare('SELECT count(*) FROM archive').pluck().get();
        for (let i = 1; i <= 3; i++) {
          romeo.write(`<message to='juliet@localhost/balcony' type='chat' id='m${i}'><body>hi ${i}</body></message><r xmlns='${SM}'/>`);
          expect(await ackOf(romeo)).toBe(i);
          // Romeo's copy and Juliet's of every message acknowledged so far.
          expect(rows()).toBe(2 * i);
        }
        await juliet.until(/<body>hi 3<\/body>/);
      } finally {
        reader.close();
      }
      romeo.socket.destroy();
      juliet.socket.destroy();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('closes the stream with <undefined-condition/> and <handled-count-too-high/> when the client acknowledges more than was sent; other clients go on', async () => {
    const { port } = await smServer();
    const romeo = await login(port, 'romeo', 'r0meo!');
    const juliet = await bound(port);
    await enable(juliet);
    juliet.write(`<a xmlns='${SM}' h='5'/>`);
    const transcript = await juliet.ended();
    expect(transcript).toMatch(/<stream:error><undefined-condition xmlns='urn:ietf:params:xml:ns:xmpp-streams'\/>/);
    expect(transcript).toMatch(/<handled-count-too-high xmlns='urn:xmpp:sm:3' h='5' send-count='0'\/>/);
    expect(transcript).toContain('</stream:stream>');
    expect(juliet.closed).toBe(true);
    // The server and its other clients are unaffected.
    const pong = await romeo.xmpp.iqCaller.get(clientXml('ping', { xmlns: 'urn:xmpp:ping' }), 'localhost');
    expect(pong).toBeUndefined();
  });

  it('closes the stream with invalid-xml for an <a/> without a valid h', async () => {
    const { port } = await smServer();
    const juliet = await bound(port);
    await enable(juliet);
    juliet.write(`<a xmlns='${SM}' h='-1'/>`);
    expect(await juliet.ended()).toMatch(/<stream:error><invalid-xml /);
  });
});

describe('stream management: resumption over raw streams', () => {
  it('answers <resume/> with an unknown SM-ID with <failed><item-not-found/></failed>; the client may still bind', async () => {
    const { port } = await smServer();
    const { raw } = await authenticated(port);
    raw.write(`<resume xmlns='${SM}' previd='no-such-session' h='0'/>`);
    expect(await raw.until(/<\/failed>/)).toMatch(
      /<failed xmlns='urn:xmpp:sm:3'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'\/><\/failed>/,
    );
    raw.write(`<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>`);
    expect(await raw.until(/<\/iq>/)).toContain("type='result'");
    raw.socket.destroy();
  });

  it('refuses to resume another account’s session (item-not-found) and a resume after bind (unexpected-request)', async () => {
    const { port } = await smServer();
    const juliet = await bound(port);
    const id = await enable(juliet);
    const { raw: romeo } = await authenticated(port, 'romeo', 'r0meo!');
    romeo.write(`<resume xmlns='${SM}' previd='${id}' h='0'/>`);
    expect(await romeo.until(/<\/failed>/)).toContain('<item-not-found');
    const other = await bound(port, 'juliet', 'balcony', 'other');
    other.write(`<resume xmlns='${SM}' previd='${id}' h='0'/>`);
    expect(await other.until(/<\/failed>/)).toContain('<unexpected-request');
    for (const raw of [juliet, romeo, other]) raw.socket.destroy();
  });

  it('resumes after the connection is lost: what was sent meanwhile arrives exactly once, in order, and the session kept its resource', async () => {
    const { port } = await smServer();
    const romeo = await login(port, 'romeo', 'r0meo!', 'phone');
    const juliet = await bound(port, 'juliet', 'balcony', 'phone');
    const id = await enable(juliet);
    juliet.write(`<presence/>`);
    await romeo.xmpp.send(clientXml('message', { to: 'juliet@localhost/phone', type: 'chat', id: 'm0' }, clientXml('body', {}, 'before')));
    await juliet.until(/<body>before<\/body>.*?<\/message>/);
    // Juliet saw every stanza up to here: count them (the server's own presence echo, the message).
    const seenBefore = (juliet.text.split('<enabled ')[1] ?? '').match(/<(message|presence|iq)[ >]/g)?.length ?? 0;
    juliet.socket.destroy();
    for (const body of ['during-1', 'during-2', 'during-3']) {
      await romeo.xmpp.send(clientXml('message', { to: 'juliet@localhost/phone', type: 'chat', id: body }, clientXml('body', {}, body)));
    }
    // A stanza without children (queued as `<presence …/>`), and one that has its own <delay/>.
    await romeo.xmpp.send(clientXml('presence', { to: 'juliet@localhost/phone', id: 'directed' }));
    await romeo.xmpp.send(
      clientXml(
        'message',
        { to: 'juliet@localhost/phone', type: 'normal', id: 'stamped' },
        clientXml('delay', { xmlns: 'urn:xmpp:delay', stamp: '2020-01-01T00:00:00Z' }),
      ),
    );
    // Round trip through the server: they are routed (and queued for the hibernating session).
    await romeo.xmpp.iqCaller.get(clientXml('ping', { xmlns: 'urn:xmpp:ping' }), 'localhost');
    const { raw } = await authenticated(port);
    raw.write(`<resume xmlns='${SM}' previd='${id}' h='${seenBefore}'/>`);
    const resumed = await raw.until(/<resumed [^>]*\/>/);
    expect(resumed).toContain(`previd='${id}'`);
    // The server handled juliet's one stanza (the presence).
    expect(resumed).toContain("h='1'");
    await raw.until(/<body>during-3<\/body>/);
    await romeo.xmpp.send(
      clientXml('message', { to: 'juliet@localhost/phone', type: 'chat', id: 'after' }, clientXml('body', {}, 'after')),
    );
    await raw.until(/<body>after<\/body>/);
    expect(bodies(raw.text)).toEqual(['during-1', 'during-2', 'during-3', 'after']);
    // Re-sent stanzas say when they were first sent (XEP-0203), once.
    expect(raw.text).toMatch(/<body>during-1<\/body>(?:(?!<\/message>).)*<delay xmlns='urn:xmpp:delay' from='localhost' stamp='[^']+'\/>/);
    expect(raw.text).toMatch(
      /<presence [^>]*id='directed'[^>]*'><delay xmlns='urn:xmpp:delay' from='localhost' stamp='\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ'\/><\/presence>/,
    );
    expect(raw.text).toMatch(/<message [^>]*id='stamped'[^>]*><delay xmlns='urn:xmpp:delay' stamp='2020-01-01T00:00:00Z'\/><\/message>/);
    // The resumed session acks and is acked as one sequence.
    raw.write(`<a xmlns='${SM}' h='${seenBefore + 6}'/><r xmlns='${SM}'/>`);
    expect(await ackOf(raw)).toBe(1);
    raw.socket.destroy();
  });

  it('a <resume/> whose h is larger than what the old stream sent ends the new stream with handled-count-too-high', async () => {
    const { port } = await smServer();
    const juliet = await bound(port);
    const id = await enable(juliet);
    juliet.socket.destroy();
    const { raw } = await authenticated(port);
    raw.write(`<resume xmlns='${SM}' previd='${id}' h='7'/>`);
    const transcript = await raw.ended();
    expect(transcript).toMatch(/<undefined-condition xmlns='urn:ietf:params:xml:ns:xmpp-streams'\/>/);
    expect(transcript).toMatch(/<handled-count-too-high xmlns='urn:xmpp:sm:3' h='7' send-count='0'\/>/);
  });

  it('a resume while the old connection is still open closes the old stream with <conflict/>', async () => {
    const { port } = await smServer();
    const juliet = await bound(port);
    const id = await enable(juliet);
    const { raw } = await authenticated(port);
    raw.write(`<resume xmlns='${SM}' previd='${id}' h='0'/>`);
    expect(await raw.until(/<resumed [^>]*\/>/)).toContain(`previd='${id}'`);
    const old = await juliet.ended();
    expect(old).toMatch(/<conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'\/>/);
    expect(juliet.closed).toBe(true);
    // The new stream is the session: a ping through it.
    raw.write(`<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`);
    expect(await raw.until(/<iq [^>]*id='p'[^>]*\/>/)).toContain("type='result'");
    raw.socket.destroy();
  });
});

describe('stream management: the resumption timeout and limits', () => {
  it('after the timeout, unacknowledged messages go to offline storage and arrive at the next login; IQs get an error; a late <resume/> learns h', async () => {
    const { port } = await smServer({ resumeTimeoutMs: 1000 });
    const romeo = await login(port, 'romeo', 'r0meo!', 'desk');
    const juliet = await bound(port, 'juliet', 'balcony', 'phone');
    const id = await enable(juliet);
    juliet.write(`<presence/><r xmlns='${SM}'/>`);
    await ackOf(juliet);
    juliet.socket.destroy();
    const errors: string[] = [];
    romeo.xmpp.on('stanza', (stanza) => {
      if (stanza.is('iq') && stanza.attrs.type === 'error') errors.push(String(stanza.attrs.id));
    });
    for (const body of ['lost-1', 'lost-2']) {
      await romeo.xmpp.send(clientXml('message', { to: 'juliet@localhost/phone', type: 'chat', id: body }, clientXml('body', {}, body)));
    }
    await romeo.xmpp.send(
      clientXml('iq', { to: 'juliet@localhost/phone', type: 'get', id: 'v1' }, clientXml('query', { xmlns: 'jabber:iq:version' })),
    );
    // The session ends after a second: the IQ gets its error then.
    await eventually(() => errors.includes('v1'));
    const { raw } = await authenticated(port);
    raw.write(`<resume xmlns='${SM}' previd='${id}' h='0'/>`);
    const failed = await raw.until(/<\/failed>/);
    expect(failed).toContain('<item-not-found');
    expect(failed).toMatch(/<failed xmlns='urn:xmpp:sm:3' h='1'>/);
    raw.socket.destroy();
    // Next login: both messages, from offline storage, once each.
    const again = await bound(port, 'juliet', 'balcony', 'laptop');
    again.write(`<presence/>`);
    await again.until(/<body>lost-2<\/body>/);
    expect(bodies(again.text)).toEqual(['lost-1', 'lost-2']);
    again.socket.destroy();
  });

  it('a hibernating session past its queue limit ends at once and its messages go to offline storage', async () => {
    const { port } = await smServer({ maxQueueSize: 3 });
    const romeo = await login(port, 'romeo', 'r0meo!');
    const juliet = await bound(port, 'juliet', 'balcony', 'phone');
    await enable(juliet);
    juliet.socket.destroy();
    const sent = ['q1', 'q2', 'q3', 'q4', 'q5'];
    for (const body of sent) {
      await romeo.xmpp.send(clientXml('message', { to: 'juliet@localhost/phone', type: 'chat', id: body }, clientXml('body', {}, body)));
    }
    const again = await bound(port, 'juliet', 'balcony', 'laptop');
    again.write(`<presence/>`);
    await again.until(/<body>q5<\/body>/);
    expect(bodies(again.text)).toEqual(sent);
    again.socket.destroy();
  });

  it('a connected session that does not ack past maxQueueChars is closed with <resource-constraint/>; its messages go offline', async () => {
    const { port } = await smServer({ maxQueueChars: 10_000 });
    const romeo = await login(port, 'romeo', 'r0meo!');
    const juliet = await bound(port, 'juliet', 'balcony', 'phone');
    await enable(juliet);
    juliet.write(`<presence/>`);
    // Juliet reads but never acks: each message is ≈ 3,100 characters, the fourth passes 10,000.
    const sent = ['big-1', 'big-2', 'big-3', 'big-4'];
    await sendBig(romeo.xmpp, 'juliet@localhost/phone', sent);
    const transcript = await juliet.ended();
    expect(transcript).toContain("<resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>");
    // The others live on, and what Juliet did not acknowledge waits for her next login.
    await romeo.xmpp.iqCaller.get(clientXml('ping', { xmlns: 'urn:xmpp:ping' }), 'localhost');
    const again = await bound(port, 'juliet', 'balcony', 'laptop');
    again.write(`<presence/>`);
    await again.until(/<body>big-4 /);
    expect(bodies(again.text).map((body) => body.split(' ')[0])).toEqual(sent);
    again.socket.destroy();
  });

  it('past maxTotalQueueChars the session holding the most unacknowledged text ends for good; the others live on; its messages go offline', async () => {
    const { port } = await smServer({ maxTotalQueueChars: 20_000 });
    const romeo = await login(port, 'romeo', 'r0meo!');
    // Two of juliet's streams that read but never ack. The laptop sends no presence: what the
    // phone leaves goes to offline storage, not to it.
    const laptop = await bound(port, 'juliet', 'balcony', 'laptop');
    await enable(laptop);
    const phone = await bound(port, 'juliet', 'balcony', 'phone');
    const phoneId = await enable(phone);
    phone.write(`<presence/>`);
    await romeo.xmpp.send(
      clientXml('message', { to: 'juliet@localhost/laptop', type: 'chat', id: 'small' }, clientXml('body', {}, 'small')),
    );
    await laptop.until(/<body>small<\/body>/);
    // ≈ 3,150 characters a message: the seventh passes 20,000 for the process (each session stays far
    // below its own maxQueueChars and maxQueueSize).
    const sent = Array.from({ length: 7 }, (_, i) => `big-${i}`);
    await sendBig(romeo.xmpp, 'juliet@localhost/phone', sent);
    const transcript = await phone.ended();
    expect(transcript).toContain("<resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>");
    expect(bodies(transcript).map((body) => body.split(' ')[0])).toEqual(sent);
    // Not kept for a resume: the memory is given back.
    const { raw } = await authenticated(port);
    raw.write(`<resume xmlns='${SM}' previd='${phoneId}' h='0'/>`);
    expect(await raw.until(/<\/failed>/)).toContain('<item-not-found');
    raw.socket.destroy();
    // The laptop's stream lives on, its queue too: it still answers, and it acks the one message.
    laptop.write(`<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq><a xmlns='${SM}' h='1'/>`);
    await laptop.until(/<iq [^>]*id='p1'[^>]*type='result'|<iq [^>]*type='result'[^>]*id='p1'/);
    expect(laptop.text).not.toContain('<stream:error>');
    // What the phone never acknowledged waits for juliet's next login, each message once.
    const again = await bound(port, 'juliet', 'balcony', 'tablet');
    again.write(`<presence/>`);
    await again.until(/<body>big-6 /);
    expect(bodies(again.text).map((body) => body.split(' ')[0])).toEqual(sent);
    again.socket.destroy();
    laptop.socket.destroy();
  });

  it('a burst to a hibernating session is stored in a few writes of its queue, not one per stanza', async () => {
    const storage = memoryStorage();
    const { port } = await smServer({}, storage);
    const smStore = storage.keyValue('smacks');
    const set = smStore.set.bind(smStore);
    let queueWrites = 0;
    smStore.set = (owner, key, value) => {
      if (owner === 'juliet' && value !== undefined && typeof value === 'object' && value !== null && 'queue' in value) queueWrites++;
      return set(owner, key, value);
    };
    const juliet = await bound(port, 'juliet', 'balcony', 'phone');
    const id = await enable(juliet);
    juliet.write(`<presence/><r xmlns='${SM}'/>`);
    await ackOf(juliet);
    juliet.socket.destroy();
    const romeo = await bound(port, 'romeo', 'r0meo!', 'desk');
    const sent = Array.from({ length: 300 }, (_, i) => `held-${i}`);
    romeo.write(sent.map((body) => `<message to='juliet@localhost/phone' type='chat'><body>${body}</body></message>`).join(''));
    // All of them reach the stored queue (what a crash would leave for the next start)…
    await eventually(async () => {
      const stored = (await storage.keyValue('smacks').get('juliet', id)) as { queue?: unknown[] } | undefined;
      return (stored?.queue?.length ?? 0) >= sent.length;
    });
    // …in a handful of writes (each of the whole queue), where one per stanza wrote 300.
    expect(queueWrites).toBeGreaterThan(0);
    expect(queueWrites).toBeLessThan(30);
    romeo.socket.destroy();
  });

  it('twenty sessions dropped at once (a routing layer restarting) write the index of hibernating sessions a few times, not once each', async () => {
    const storage = memoryStorage();
    // Twenty of one account may hibernate (10 by default).
    const { port } = await smServer({ maxHibernatedSessions: 20 }, storage);
    const smStore = storage.keyValue('smacks');
    const set = smStore.set.bind(smStore);
    let indexWrites = 0;
    smStore.set = (owner, key, value) => {
      if (owner === '') indexWrites++;
      return set(owner, key, value);
    };
    const streams: Raw[] = [];
    for (let i = 0; i < 20; i++) {
      const raw = await bound(port, 'juliet', 'balcony', `device-${i}`);
      await enable(raw);
      streams.push(raw);
    }
    const before = indexWrites;
    for (const raw of streams) raw.socket.destroy();
    await eventually(async () => {
      const index = await storage.keyValue('smacks').get('', 'hibernating');
      return Array.isArray(index) && index.length === 20;
    });
    expect(indexWrites - before).toBeGreaterThan(0);
    expect(indexWrites - before).toBeLessThan(10);
  });

  it('a stop ends hibernating sessions and keeps their messages: the next start delivers them', async () => {
    const storage = memoryStorage();
    const first = await smServer({}, storage);
    const romeo = await login(first.port, 'romeo', 'r0meo!');
    const juliet = await bound(first.port, 'juliet', 'balcony', 'phone');
    await enable(juliet);
    juliet.socket.destroy();
    await romeo.xmpp.send(
      clientXml('message', { to: 'juliet@localhost/phone', type: 'chat', id: 's1' }, clientXml('body', {}, 'kept over a stop')),
    );
    await romeo.xmpp.iqCaller.get(clientXml('ping', { xmlns: 'urn:xmpp:ping' }), 'localhost');
    await romeo.xmpp.stop();
    await first.service.stop();
    const second = await smServer({}, storage);
    const again = await bound(second.port, 'juliet', 'balcony', 'laptop');
    again.write(`<presence/>`);
    await again.until(/<body>kept over a stop<\/body>/);
    expect(bodies(again.text)).toEqual(['kept over a stop']);
    again.socket.destroy();
  });

  it('a crash while a session hibernated: the next start finds its queue in the store and delivers it', async () => {
    const storage = memoryStorage();
    // What the store holds after a SIGKILL during hibernation.
    const store = storage.keyValue('smacks');
    const queued = `<message xmlns='jabber:client' from='romeo@localhost/desk' to='juliet@localhost/phone' type='chat' id='c1'><body>kept over a crash</body></message>`;
    await store.set('juliet', 'crashed-id', {
      resource: 'phone',
      inbound: 4,
      acked: 0,
      since: Date.now() - 5000,
      queue: [[Date.now() - 4000, queued]],
    });
    await store.set('', 'hibernating', [['juliet', 'crashed-id']]);
    const { port } = await smServer({}, storage);
    await eventually(async () => (await store.get('', 'hibernating')) === undefined);
    const again = await bound(port, 'juliet', 'balcony', 'laptop');
    again.write(`<presence/>`);
    await again.until(/<body>kept over a crash<\/body>/);
    expect(bodies(again.text)).toEqual(['kept over a crash']);
    // The SM-ID is known as ended: a resume learns the h it had.
    const { raw } = await authenticated(port);
    raw.write(`<resume xmlns='${SM}' previd='crashed-id' h='0'/>`);
    expect(await raw.until(/<\/failed>/)).toMatch(/<failed xmlns='urn:xmpp:sm:3' h='4'><item-not-found /);
    for (const r of [again, raw]) r.socket.destroy();
  });

  it('rejects bad options with PB_ERR_XMPP_OPTION', () => {
    expect(() => smacks({ resumeTimeoutMs: -1 })).toThrow(expect.objectContaining({ code: 'PB_ERR_XMPP_OPTION' }));
    expect(() => smacks({ maxQueueSize: 0 })).toThrow(expect.objectContaining({ code: 'PB_ERR_XMPP_OPTION' }));
    expect(() => smacks({ maxQueueChars: 0 })).toThrow(expect.objectContaining({ code: 'PB_ERR_XMPP_OPTION' }));
  });
});

describe('stream management with real clients', () => {
  it('@xmpp/client resumes through a cut link: messages sent meanwhile arrive exactly once', async () => {
    const { port } = await smServer();
    const link = await proxy(port);
    try {
      const romeo = await login(port, 'romeo', 'r0meo!', 'desk');
      const juliet = xmppClient({
        timeout: 8000,
        service: `xmpp://127.0.0.1:${link.port}`,
        domain: 'localhost',
        username: 'juliet',
        password: 'balcony',
        resource: 'phone',
      });
      juliet.on('error', () => {});
      clients.push(juliet);
      const received: string[] = [];
      juliet.on('stanza', (stanza) => {
        if (stanza.is('message')) received.push(String(stanza.getChildText('body')));
      });
      const sm = (juliet as unknown as { streamManagement: { enabled: boolean; on(event: 'resumed', listener: () => void): void } })
        .streamManagement;
      const resumed = new Promise<void>((resolve) => sm.on('resumed', resolve));
      await juliet.start();
      await eventually(() => sm.enabled);
      await juliet.send(clientXml('presence'));
      await romeo.xmpp.send(clientXml('message', { to: 'juliet@localhost/phone', type: 'chat' }, clientXml('body', {}, 'one')));
      await eventually(() => received.includes('one'));
      link.cut();
      for (const body of ['two', 'three', 'four']) {
        await romeo.xmpp.send(clientXml('message', { to: 'juliet@localhost/phone', type: 'chat' }, clientXml('body', {}, body)));
      }
      // @xmpp/client reconnects by itself (its reconnect module) and resumes.
      await resumed;
      await eventually(() => received.includes('four'));
      await romeo.xmpp.send(clientXml('message', { to: 'juliet@localhost/phone', type: 'chat' }, clientXml('body', {}, 'five')));
      await eventually(() => received.includes('five'));
      expect(received).toEqual(['one', 'two', 'three', 'four', 'five']);
    } finally {
      await link.close();
    }
  });

  it('@xmpp/client takes a burst of 1,500 messages with stream management on: each arrives once, in order, and its stream stays up', async () => {
    // A contact's burst, a large room's presences on join, a full roster's presences at login: more
    // stanzas than a client acks in one round trip. They must wait in the queue, not end the stream.
    const { port } = await smServer();
    const juliet = newClient(port, 'juliet', 'balcony', 'phone');
    const errors: string[] = [];
    juliet.on('error', (error: Error) => errors.push(error.message));
    let disconnects = 0;
    juliet.on('disconnect', () => disconnects++);
    const received: string[] = [];
    juliet.on('stanza', (stanza) => {
      if (stanza.is('message')) received.push(String(stanza.getChildText('body')));
    });
    const sm = (juliet as unknown as { streamManagement: { enabled: boolean } }).streamManagement;
    await juliet.start();
    await eventually(() => sm.enabled);
    await juliet.send(clientXml('presence'));
    const romeo = await bound(port, 'romeo', 'r0meo!', 'desk');
    const sent = Array.from({ length: 1500 }, (_, i) => `burst-${i}`);
    // One write: the server reads them as fast as its rate limit lets it, and writes them on.
    romeo.write(sent.map((body) => `<message to='juliet@localhost/phone' type='chat'><body>${body}</body></message>`).join(''));
    await eventually(() => received.length >= sent.length || disconnects > 0, 20_000);
    expect(disconnects).toBe(0);
    expect(received).toEqual(sent);
    expect(errors).toEqual([]);
    expect(sm.enabled).toBe(true);
    romeo.socket.destroy();
  });

  it('slixmpp (Debian) resumes after its link drops: every message sent meanwhile arrives exactly once', async () => {
    const { port } = await smServer();
    const script = new URL('./slixmpp/smacks.py', import.meta.url).pathname;
    const { stdout } = await run('/usr/bin/python3', [script, '127.0.0.1', String(port)], { timeout: 90_000 });
    const result = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as {
      enabled: boolean;
      resumed: boolean;
      bodies: string[];
      jid: string;
    };
    expect(result.enabled).toBe(true);
    expect(result.resumed).toBe(true);
    expect(result.jid).toBe('juliet@localhost/slix');
    expect(result.bodies).toEqual(['before', 'during-1', 'during-2', 'during-3', 'after']);
  });
});
