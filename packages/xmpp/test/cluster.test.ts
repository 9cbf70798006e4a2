import { memoryBus, PortService } from '@portbind/core';
import { describe, expect, it } from 'vitest';
import { memoryStorage, type XmppServer, xmppServer } from '../src/index.js';
import { entityCapsOf } from '../src/modules/caps.js';
import { befriend as befriendRaw, RawClient } from './pep-raw.js';
import { Raw } from './raw-stream.js';
import { start } from './support.js';

// One XMPP service on two processes (issue 12): two servers in one test sharing a memoryBus (one
// "process" each: `bus.peer()`) and one store. juliet on A, romeo on B: messages, presence,
// subscriptions, probes, carbons, offline storage, IQs to full JIDs, sessions gone meanwhile, a
// process that dies, block lists (pushes and routing) and PEP notifications.

const PASSWORDS: Record<string, string> = { juliet: 'balcony', romeo: 'r0meo!' };

async function cluster(ttlMs = 30_000) {
  const bus = memoryBus();
  const storage = memoryStorage();
  const busB = bus.peer();
  const a = await start({ server: { bus, storage, cluster: { sessionTtlMs: ttlMs } } });
  const b = await start({ server: { bus: busB, storage, cluster: { sessionTtlMs: ttlMs } } });
  await a.server.cluster?.ready;
  await b.server.cluster?.ready;
  return { bus, busB, storage, a, b };
}

/** Wait until `check` holds (mirrors are updated asynchronously, as on Redis). */
async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Wait until `server` mirrors `full` (available when asked). */
function sees(server: XmppServer, full: string, available = true): Promise<void> {
  return until(() => server.cluster?.remotePresence(full)?.available === available, `${full} ${available ? 'available' : 'known'}`);
}

async function online(port: number, user: string, resource: string, presence = '<presence/>'): Promise<Raw> {
  const raw = await Raw.login(port, user, PASSWORDS[user] ?? user, resource);
  if (presence !== '') raw.send(presence);
  await raw.sync();
  return raw;
}

/** Make juliet and romeo subscribe to each other (both online), through the two processes. */
async function befriend(juliet: Raw, romeo: Raw): Promise<void> {
  juliet.send("<presence to='romeo@localhost' type='subscribe'/>");
  await romeo.next(/^<presence[^>]* type='subscribe'/);
  romeo.send("<presence to='juliet@localhost' type='subscribed'/>");
  await juliet.next(/^<presence[^>]* type='subscribed'/);
  romeo.send("<presence to='juliet@localhost' type='subscribe'/>");
  await juliet.next(/^<presence[^>]* type='subscribe'/);
  juliet.send("<presence to='romeo@localhost' type='subscribed'/>");
  await romeo.next(/^<presence[^>]* type='subscribed'/);
}

describe('XMPP on several processes (a shared bus)', () => {
  it('declares its adapters shared on a bus, local without', async () => {
    const { a } = await cluster();
    expect(a.binding.adapter.scope).toBe('shared');
    const alone = await start();
    expect(alone.binding.adapter.scope).toBe('local');
    expect(alone.server.cluster).toBeUndefined();
  });

  it('fails its service start (all or none) when it cannot enter the directory, instead of serving outside the cluster', async () => {
    const bus = memoryBus();
    await bus.close();
    const server = xmppServer({ domain: 'localhost', storage: memoryStorage(), bus, allowPlaintext: 'loopback' });
    const service = new PortService({ env: {} });
    const binding = service.bind(server.c2s(), { port: 0, host: '127.0.0.1' });
    await expect(service.start()).rejects.toThrow(/bus closed/);
    expect(() => binding.address).toThrow(/not listening/);
    await server.close();
  });

  it('refuses a bus that is not one, and a TTL under 300 ms, at configuration time', () => {
    expect(() => xmppServer({ domain: 'localhost', storage: memoryStorage(), bus: {} as never })).toThrow(
      expect.objectContaining({ code: 'PB_ERR_XMPP_OPTION' }),
    );
    expect(() => xmppServer({ domain: 'localhost', storage: memoryStorage(), bus: memoryBus(), cluster: { sessionTtlMs: 10 } })).toThrow(
      /cluster.sessionTtlMs must be a number ≥ 300/,
    );
  });

  it('delivers messages both ways, to bare and full JIDs', async () => {
    const { a, b } = await cluster();
    const juliet = await online(a.port, 'juliet', 'balcony');
    const romeo = await online(b.port, 'romeo', 'garden');
    await sees(a.server, 'romeo@localhost/garden');
    await sees(b.server, 'juliet@localhost/balcony');

    juliet.send("<message to='romeo@localhost' type='chat' id='m1'><body>Wherefore art thou?</body></message>");
    const m1 = await romeo.next(/^<message[^>]* id='m1'/);
    expect(m1).toContain("from='juliet@localhost/balcony'");
    expect(m1).toContain('Wherefore art thou?');

    romeo.send("<message to='juliet@localhost/balcony' type='chat' id='m2'><body>Here, love</body></message>");
    const m2 = await juliet.next(/^<message[^>]* id='m2'/);
    expect(m2).toContain("from='romeo@localhost/garden'");
    expect(m2).toContain("to='juliet@localhost/balcony'");

    // Several in a row arrive in order.
    for (let i = 0; i < 20; i++) juliet.send(`<message to='romeo@localhost/garden' type='chat' id='seq${i}'><body>${i}</body></message>`);
    for (let i = 0; i < 20; i++) {
      const next = await romeo.next(/^<message[^>]* id='seq\d+'/);
      expect(next).toContain(`id='seq${i}'`);
    }
  });

  it('carries subscriptions, presence broadcasts and probes across processes', async () => {
    const { a, b } = await cluster();
    const juliet = await online(a.port, 'juliet', 'balcony');
    const romeo = await online(b.port, 'romeo', 'garden');
    await sees(a.server, 'romeo@localhost/garden');
    await sees(b.server, 'juliet@localhost/balcony');
    await befriend(juliet, romeo);

    // A broadcast from A reaches the subscriber on B (and back).
    juliet.send('<presence><show>away</show><status>on the balcony</status></presence>');
    const away = await romeo.next(/^<presence[^>]* from='juliet@localhost\/balcony'[^>]*>[\s\S]*on the balcony/);
    expect(away).toContain("to='romeo@localhost/garden'");
    romeo.send('<presence><status>below</status></presence>');
    await juliet.next(/^<presence[^>]* from='romeo@localhost\/garden'[^>]*>[\s\S]*below/);

    // A new resource of romeo on A probes: juliet's presence comes from the mirror, romeo's own from B.
    await until(async () => {
      const roster = (await a.server.storage.keyValue('roster').get('romeo', 'roster')) as { items: Array<{ subscription: string }> };
      return roster?.items?.[0]?.subscription === 'both';
    }, 'the roster');
    await sees(a.server, 'romeo@localhost/garden');
    await until(
      () => a.server.cluster !== undefined && b.server.cluster?.remotePresence('juliet@localhost/balcony')?.available === true,
      'juliet',
    );
    const phone = await online(a.port, 'romeo', 'phone', '');
    phone.send('<presence/>');
    const probed = await phone.next(/^<presence[^>]* from='juliet@localhost\/balcony'/);
    expect(probed).toContain('on the balcony');
    // His other resource (on B) sees the phone come online.
    await romeo.next(/^<presence[^>]* from='romeo@localhost\/phone'/);

    // Unavailable on B reaches A's subscriber.
    romeo.send("<presence type='unavailable'/>");
    await juliet.next(
      /^<presence[^>]* from='romeo@localhost\/garden'[^>]* type='unavailable'|^<presence[^>]* type='unavailable'[^>]* from='romeo@localhost\/garden'/,
    );
  });

  it('copies messages with carbons to a resource on the other process', async () => {
    const { a, b } = await cluster();
    const juliet = await online(a.port, 'juliet', 'balcony');
    const julietB = await online(b.port, 'juliet', 'chamber');
    const romeo = await online(b.port, 'romeo', 'garden');
    expect(await julietB.iq('c1', "<enable xmlns='urn:xmpp:carbons:2'/>")).toMatch(/type='result'/);
    expect(await juliet.iq('c2', "<enable xmlns='urn:xmpp:carbons:2'/>")).toMatch(/type='result'/);
    await until(() => a.server.sessionsOf('juliet@localhost').length === 1, 'juliet on A');
    await sees(a.server, 'juliet@localhost/chamber');
    await sees(b.server, 'juliet@localhost/balcony');
    // Carbons enabled on B is known on A (the directory carries it): wait for the refresh.
    await new Promise((resolve) => setTimeout(resolve, 100));

    // Sent from A: the copy goes to juliet's resource on B.
    juliet.send("<message to='romeo@localhost/garden' type='chat' id='s1'><body>sent</body></message>");
    await romeo.next(/^<message[^>]* id='s1'/);
    const sent = await julietB.next(/<sent xmlns='urn:xmpp:carbons:2'/);
    expect(sent).toContain("id='s1'");
    // Received on A (to the full JID): the copy goes to B.
    romeo.send("<message to='juliet@localhost/balcony' type='chat' id='r1'><body>received</body></message>");
    await juliet.next(/^<message[^>]* id='r1'/);
    const received = await julietB.next(/<received xmlns='urn:xmpp:carbons:2'/);
    expect(received).toContain("id='r1'");
    // Received on B: the copy goes to A.
    romeo.send("<message to='juliet@localhost/chamber' type='chat' id='r2'><body>received</body></message>");
    await julietB.next(/^<message[^>]* id='r2'/);
    expect(await juliet.next(/<received xmlns='urn:xmpp:carbons:2'/)).toContain("id='r2'");
  });

  it('stores a message offline when the user is on no process, and delivers it at login on the other', async () => {
    const { a, b } = await cluster();
    const juliet = await online(b.port, 'juliet', 'balcony');
    juliet.send("<message to='romeo@localhost' type='chat' id='off1'><body>where are you?</body></message>");
    await juliet.sync();
    await until(async () => (await a.server.storage.archive('offline').query('romeo', { max: 0 })).count === 1, 'the offline message');
    const romeo = await online(a.port, 'romeo', 'garden');
    const delivered = await romeo.next(/^<message[^>]* id='off1'/);
    expect(delivered).toContain('where are you?');
    expect(delivered).toContain("xmlns='urn:xmpp:delay'");
    expect((await b.server.storage.archive('offline').query('romeo', { max: 0 })).count).toBe(0);
  });

  it('delivers at once a message stored offline for a user who is available after all (a mirror was behind)', async () => {
    const { bus, storage, b } = await cluster();
    const romeo = await online(b.port, 'romeo', 'garden', '<presence><priority>1</priority></presence>');
    // As a process whose mirror did not have romeo yet would: stored offline, then the nudge on the bus.
    await storage.archive('offline').append('romeo', {
      id: 'late1',
      when: Date.now(),
      with: 'juliet@localhost',
      xml: "<message from='juliet@localhost/balcony' to='romeo@localhost' type='chat' id='stored'><body>stored</body></message>",
    });
    await bus.publish('xmpp:offline:localhost', 'romeo@localhost');
    expect(await romeo.next(/^<message[^>]* id='stored'/)).toContain('stored');
    await until(async () => (await storage.archive('offline').query('romeo', { max: 0 })).count === 0, 'the offline store emptied');
  });

  it('routes an IQ to a full JID on the other process and its result back', async () => {
    const { a, b } = await cluster();
    const juliet = await online(a.port, 'juliet', 'balcony');
    const romeo = await online(b.port, 'romeo', 'garden');
    await sees(a.server, 'romeo@localhost/garden');
    await sees(b.server, 'juliet@localhost/balcony');
    juliet.send("<iq type='get' id='v1' to='romeo@localhost/garden'><query xmlns='jabber:iq:version'/></iq>");
    const asked = await romeo.next(/^<iq[^>]* id='v1'/);
    expect(asked).toContain("from='juliet@localhost/balcony'");
    romeo.send(
      "<iq type='result' id='v1' to='juliet@localhost/balcony'><query xmlns='jabber:iq:version'><name>garden</name><version>1</version></query></iq>",
    );
    const answer = await juliet.next(/^<iq[^>]* id='v1'/);
    expect(answer).toContain("type='result'");
    expect(answer).toContain("from='romeo@localhost/garden'");
    expect(answer).toContain('<name>garden</name>');
    // A ping the client answers with an error comes back too.
    romeo.send("<iq type='get' id='p1' to='juliet@localhost/balcony'><ping xmlns='urn:xmpp:ping'/></iq>");
    await juliet.next(/^<iq[^>]* id='p1'/);
    juliet.send(
      "<iq type='error' id='p1' to='romeo@localhost/garden'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
    );
    expect(await romeo.next(/^<iq[^>]* id='p1'/)).toContain("type='error'");
  });

  it('routes again what reaches a process for a session gone meanwhile: another resource, offline, or an error', async () => {
    const { bus, a, b } = await cluster();
    const juliet = await online(a.port, 'juliet', 'balcony');
    const romeo = await online(b.port, 'romeo', 'garden');
    const stream = bus.stream(`xmpp:node:${b.server.cluster?.nodeId}`);
    // A message for romeo's resource that closed meanwhile (a process with an out-of-date mirror sent it).
    await stream.append(
      JSON.stringify({
        to: 'romeo@localhost/gone',
        xml: "<message from='juliet@localhost/balcony' to='romeo@localhost/gone' type='chat' id='late'><body>late</body></message>",
      }),
    );
    expect(await romeo.next(/^<message[^>]* id='late'/)).toContain("from='juliet@localhost/balcony'");
    // An IQ get for it: juliet (on A) gets <service-unavailable/>.
    await sees(b.server, 'juliet@localhost/balcony');
    await stream.append(
      JSON.stringify({
        to: 'romeo@localhost/gone',
        xml: "<iq from='juliet@localhost/balcony' to='romeo@localhost/gone' type='get' id='lost-iq'><ping xmlns='urn:xmpp:ping'/></iq>",
      }),
    );
    const error = await juliet.next(/^<iq[^>]* id='lost-iq'/);
    expect(error).toContain("type='error'");
    expect(error).toContain('<service-unavailable');
    // romeo logs out; a message for his session arrives after: offline, delivered at his next login.
    romeo.send('</stream:stream>');
    await until(() => a.server.cluster?.remoteSessions().length === 0, 'romeo gone from the mirror');
    await stream.append(
      JSON.stringify({
        to: 'romeo@localhost/garden',
        xml: "<message from='juliet@localhost/balcony' to='romeo@localhost/garden' type='chat' id='later'><body>later</body></message>",
      }),
    );
    await until(async () => (await a.server.storage.archive('offline').query('romeo', { max: 0 })).count === 1, 'offline');
    const back = await online(a.port, 'romeo', 'again');
    expect(await back.next(/^<message[^>]* id='later'/)).toContain('later');
    // An unreadable entry is skipped; what follows is delivered.
    await stream.append('not json');
    await stream.append(JSON.stringify({ to: 42 }));
    const romeoB = await online(b.port, 'romeo', 'garden2');
    await stream.append(
      JSON.stringify({
        to: 'romeo@localhost/garden2',
        xml: "<message from='juliet@localhost/balcony' to='romeo@localhost/garden2' type='chat' id='after'><body>after</body></message>",
      }),
    );
    expect(await romeoB.next(/^<message[^>]* id='after'/)).toContain('after');
  });

  it('keeps a subscription request for a session gone meanwhile until the next login', async () => {
    const { bus, a, b } = await cluster();
    await bus.stream(`xmpp:node:${b.server.cluster?.nodeId}`).append(
      JSON.stringify({
        to: 'romeo@localhost/gone',
        xml: "<presence from='juliet@localhost' to='romeo@localhost/gone' type='subscribe'/>",
      }),
    );
    await until(async () => {
      const pending = await a.server.storage.keyValue('roster').get('romeo', 'pending');
      return Array.isArray(pending) && pending.length === 1;
    }, 'the request kept');
    const romeo = await online(a.port, 'romeo', 'garden');
    expect(await romeo.next(/^<presence[^>]* type='subscribe'/)).toContain("from='juliet@localhost'");
  });

  it('closes a session on the other process when the same full JID logs in here', async () => {
    const { a, b } = await cluster();
    const first = await online(b.port, 'romeo', 'garden');
    await sees(a.server, 'romeo@localhost/garden');
    const second = await online(a.port, 'romeo', 'garden');
    await first.next(/<conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/);
    await until(() => b.server.sessionsOf('romeo@localhost').length === 0, 'the old session gone');
    await second.sync();
    expect(second.closed).toBe(false);
  });

  it("closes the account's sessions on every process when its password changes", async () => {
    const { a, b } = await cluster();
    const here = await online(a.port, 'juliet', 'balcony');
    const there = await online(b.port, 'juliet', 'chamber');
    await sees(a.server, 'juliet@localhost/chamber');
    const answer = await here.iq(
      'pw',
      "<query xmlns='jabber:iq:register'><username>juliet</username><password>new secret</password></query>",
      "type='set' to='localhost'",
    );
    expect(answer).toContain("type='result'");
    await there.next(/<reset xmlns='urn:ietf:params:xml:ns:xmpp-streams'/);
    await until(() => b.server.sessionsOf('juliet@localhost').length === 0, 'the session on B gone');
    await until(() => a.server.cluster?.remoteSessions().length === 0, 'gone from the mirror');
  });

  it('forgets the sessions of a process that died and routes again what was sent to it', async () => {
    const { bus, busB, a, b } = await cluster(600);
    const nodeB = b.server.cluster?.nodeId;
    const juliet = await online(a.port, 'juliet', 'balcony');
    const romeo = await online(b.port, 'romeo', 'garden');
    await sees(a.server, 'romeo@localhost/garden');
    await sees(b.server, 'juliet@localhost/balcony');
    await befriend(juliet, romeo);
    // B's process dies: its bus stops (no heartbeats, its stream is no longer read), its clients stay connected to nothing.
    busB.kill();
    juliet.send("<message to='romeo@localhost' type='chat' id='meanwhile'><body>are you there?</body></message>");
    // Its entries expire: juliet sees romeo unavailable, the message goes offline.
    await juliet.next(/^<presence(?=[^>]* type='unavailable')(?=[^>]* from='romeo@localhost\/garden')/);
    await until(() => a.server.cluster?.remoteSessions().length === 0, 'romeo gone from A');
    await until(async () => (await a.server.storage.archive('offline').query('romeo', { max: 0 })).count === 1, 'the message offline');
    // romeo reconnects to A: he gets what was sent meanwhile.
    romeo.socket.destroy();
    await b.service.stop();
    const back = await online(a.port, 'romeo', 'garden');
    expect(await back.next(/^<message[^>]* id='meanwhile'/)).toContain('are you there?');
    // Once drained for good, the dead process's stream is deleted (nothing of it is left on the bus).
    expect(await bus.stream(`xmpp:node:${nodeB}`).length()).toBeGreaterThan(0);
    await until(async () => (await bus.stream(`xmpp:node:${nodeB}`).length()) === 0, "B's stream deleted");
  });

  it('pushes a block made on A to a resource on B, and B routes by the new list (XEP-0191 §3.3, §3.5)', async () => {
    const { a, b } = await cluster();
    const juliet = await online(a.port, 'juliet', 'balcony');
    const phone = await online(b.port, 'juliet', 'phone', '');
    const romeo = await online(b.port, 'romeo', 'garden');
    // The phone asks for its list (so gets pushes), then comes online: once A sees it available, A knows it wants pushes.
    expect(await phone.iq('bl1', "<blocklist xmlns='urn:xmpp:blocking'/>", "type='get'")).toMatch(
      /<blocklist xmlns='urn:xmpp:blocking'\/>/,
    );
    phone.send('<presence/>');
    await phone.sync();
    await sees(a.server, 'juliet@localhost/phone');
    await sees(b.server, 'juliet@localhost/balcony');
    // Before the block, romeo's message from B reaches juliet's phone on B (B has juliet's list in memory).
    romeo.send("<message to='juliet@localhost/phone' type='chat' id='before'><body>hi</body></message>");
    await phone.next(/^<message[^>]* id='before'/);

    expect(await juliet.iq('b1', "<block xmlns='urn:xmpp:blocking'><item jid='romeo@localhost'/></block>")).toMatch(/type='result'/);
    const push = await phone.next(/^<iq[^>]* type='set'[\s\S]*<block xmlns='urn:xmpp:blocking'>/);
    expect(push).toContain("<item jid='romeo@localhost'/>");
    expect(push).toContain("to='juliet@localhost/phone'");

    // B refuses romeo's messages to juliet now (§3.3: <service-unavailable/>), to her resource there too,
    // once its copy of her list is read again (told on the bus: a moment).
    let attempts = 0;
    const attempt = async (to: string): Promise<string> => {
      const id = `try${attempts++}`;
      romeo.send(`<message to='${to}' type='chat' id='${id}'><body>still there?</body></message>`);
      const pattern = new RegExp(`^<message[^>]* id='${id}'`);
      return Promise.race([
        phone.next(pattern).then(() => 'delivered'),
        romeo.next(pattern).then((answer) => (answer.includes("type='error'") ? answer : 'answered')),
      ]).catch(() => 'timed out');
    };
    await until(async () => (await attempt('juliet@localhost/phone')).includes('<service-unavailable'), 'the block on B');
    const refused = await attempt('juliet@localhost');
    expect(refused).toContain("type='error'");
    expect(refused).toContain('<service-unavailable');
    // What the phone sends to romeo is refused with <blocked/> (B's copy of the list).
    phone.send("<message to='romeo@localhost' type='chat' id='out'><body>hey</body></message>");
    const blocked = await phone.next(/^<message[^>]* id='out'/);
    expect(blocked).toContain('<not-acceptable');
    expect(blocked).toContain("<blocked xmlns='urn:xmpp:blocking:errors'/>");

    // Unblocked on A: the push reaches B, and romeo's messages get through on B again.
    expect(await juliet.iq('u1', "<unblock xmlns='urn:xmpp:blocking'><item jid='romeo@localhost'/></unblock>")).toMatch(/type='result'/);
    expect(await phone.next(/<unblock xmlns='urn:xmpp:blocking'>/)).toContain("<item jid='romeo@localhost'/>");
    await until(async () => (await attempt('juliet@localhost/phone')) === 'delivered', 'the unblock on B');
  });

  it('notifies a PEP publish on A to a contact resource on B that wants it (+notify in its caps), and the last item on B', async () => {
    const { a, b } = await cluster();
    const NICK = 'http://jabber.org/protocol/nick';
    const juliet = await RawClient.login(a.port, 'juliet', 'balcony', 'balcony');
    const romeo = await RawClient.login(b.port, 'romeo', 'r0meo!', 'garden');
    await befriendRaw(juliet, romeo);
    // romeo's caps are resolved on B: A learns his +notify features from the directory.
    await romeo.announce([`${NICK}+notify`]);
    await until(() => entityCapsOf(a.server)?.features('romeo@localhost/garden')?.has(`${NICK}+notify`) === true, "romeo's caps on A");
    await sees(a.server, 'romeo@localhost/garden');

    await juliet.iq(
      'set',
      `<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='${NICK}'><item id='current'><nick xmlns='${NICK}'>Jules</nick></item></publish></pubsub>`,
    );
    const event = await romeo.next(/<event xmlns='http:\/\/jabber.org\/protocol\/pubsub#event'>/);
    expect(event).toMatch(/^<message from='juliet@localhost' to='romeo@localhost\/garden' type='headline'/);
    expect(event).toContain(`<items node='${NICK}'><item id='current'><nick xmlns='${NICK}'>Jules</nick></item></items>`);

    // A second resource of romeo's on B coming online with +notify gets the last item (from the shared store).
    const laptop = await RawClient.login(b.port, 'romeo', 'r0meo!', 'laptop');
    laptop.presence([`${NICK}+notify`]);
    const last = await laptop.next(/pubsub#event/);
    expect(last).toContain('>Jules</nick>');
    expect(last).toContain("<delay xmlns='urn:xmpp:delay'");
  });

  it('mirrors at most 64 +notify features of a session, none longer than a node name allows', async () => {
    const { a, b } = await cluster();
    const romeo = await RawClient.login(b.port, 'romeo', 'r0meo!', 'garden');
    const many = Array.from({ length: 100 }, (_, i) => `urn:example:n${String(i).padStart(3, '0')}+notify`);
    await romeo.announce([...many, `urn:${'x'.repeat(600)}+notify`, 'urn:example:plain']);
    await until(() => (entityCapsOf(a.server)?.features('romeo@localhost/garden')?.size ?? 0) > 0, "romeo's caps on A");
    const mirrored = entityCapsOf(a.server)?.features('romeo@localhost/garden');
    expect([...(mirrored ?? [])]).toEqual(many.slice(0, 64));
    // On B, his own process, every feature is known.
    expect(entityCapsOf(b.server)?.features('romeo@localhost/garden')?.size).toBe(103);
    // He lives on: a ping is answered.
    expect(await romeo.iq('get', "<ping xmlns='urn:xmpp:ping'/>")).toMatch(/type='result'/);
  });

  it('notifies a resource on B that sent directed presence to an account on A (an implicit subscriber, XEP-0163 §4.1)', async () => {
    const { a, b } = await cluster();
    const NICK = 'http://jabber.org/protocol/nick';
    const form =
      "<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>" +
      "<field var='pubsub#access_model'><value>open</value></field></x></publish-options>";
    const publish = (nick: string): string =>
      `<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='${NICK}'><item id='current'><nick xmlns='${NICK}'>${nick}</nick></item></publish>${form}</pubsub>`;
    const juliet = await RawClient.login(a.port, 'juliet', 'balcony', 'balcony');
    await juliet.announce([]);
    // romeo is not in juliet's roster: his directed presence (routed by B) makes him an implicit subscriber.
    const romeo = await RawClient.login(b.port, 'romeo', 'r0meo!', 'garden');
    await romeo.announce([`${NICK}+notify`]);
    await until(() => entityCapsOf(a.server)?.features('romeo@localhost/garden')?.has(`${NICK}+notify`) === true, "romeo's caps on A");
    romeo.send("<presence to='juliet@localhost'/>");
    await juliet.next(/^<presence[^>]* from='romeo@localhost\/garden'/);
    // A hears of it on the bus a moment later: juliet publishes until the notification reaches B.
    let round = 0;
    await until(async () => {
      const nick = `Jules${round++}`;
      expect(await juliet.iq('set', publish(nick))).toMatch(/type='result'/);
      return romeo
        .next(new RegExp(`<nick xmlns='${NICK}'>${nick}</nick>`), 1000)
        .then(() => true)
        .catch(() => false);
    }, 'the notification on B');
  });
});
