import { execFile } from 'node:child_process';
import type { Socket } from 'node:net';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { defaultModules, memoryStorage, type XmppStorage } from '../src/index.js';
import { account } from '../src/modules/account.js';
import { blocking, type PresenceSubscription } from '../src/modules/blocking.js';
import { Raw } from './raw-stream.js';
import { rawLogin, start } from './support.js';

// Blocking Command (XEP-0191) over raw streams: the list, pushes, what a block does to stanzas
// both ways, JID matching (§4), bad input; then slixmpp's xep_0191 plugin.

const run = promisify(execFile);
const STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';

const BLOCKLIST = "<blocklist xmlns='urn:xmpp:blocking'/>";
const block = (...jids: string[]) => `<block xmlns='urn:xmpp:blocking'>${jids.map((jid) => `<item jid='${jid}'/>`).join('')}</block>`;
const unblock = (...jids: string[]) =>
  jids.length === 0
    ? "<unblock xmlns='urn:xmpp:blocking'/>"
    : `<unblock xmlns='urn:xmpp:blocking'>${jids.map((jid) => `<item jid='${jid}'/>`).join('')}</unblock>`;
const items = (reply: string) => [...reply.matchAll(/<item jid='([^']+)'\/>/g)].map((m) => m[1]);

async function server(
  options: { subscriptions?: Record<string, PresenceSubscription>; maxItems?: number; cacheSize?: number; storage?: XmppStorage } = {},
) {
  const storage = options.storage ?? memoryStorage();
  const subscriptions = options.subscriptions;
  const started = await start({
    server: {
      storage,
      modules: [
        ...defaultModules().filter((module) => !['blocking', 'account'].includes(module.name)),
        blocking({
          maxItems: options.maxItems,
          cacheSize: options.cacheSize,
          // The roster's answer unless the test names the subscriptions.
          subscription: subscriptions === undefined ? undefined : (user, contact) => subscriptions[`${user}:${contact}`] ?? 'none',
        }),
        account(),
      ],
    },
    accounts: { mercutio: 'queen-mab' },
  });
  return { ...started, storage };
}

describe('blocking (XEP-0191)', () => {
  it('is advertised on the server; the list starts empty, a block is pushed to each resource that asked for the list', async () => {
    const { port } = await server();
    const a = await Raw.login(port, 'juliet', 'balcony', 'a');
    const b = await Raw.login(port, 'juliet', 'balcony', 'b');
    const disco = await a.iq('d', "<query xmlns='http://jabber.org/protocol/disco#info'/>", "type='get' to='localhost'");
    expect(disco).toContain("<feature var='urn:xmpp:blocking'/>");
    expect(await a.iq('l1', BLOCKLIST, "type='get'")).toMatch(/<iq[^>]*type='result'[^>]*><blocklist xmlns='urn:xmpp:blocking'\/><\/iq>/);
    expect(await a.iq('b1', block('romeo@localhost', 'iago@shakespeare.lit'), "type='set'")).toMatch(/type='result'/);
    const pushed = await a.next(/<block xmlns='urn:xmpp:blocking'>/);
    expect(pushed).toMatch(/^<iq [^>]*type='set'/);
    expect(pushed).toContain("to='juliet@localhost/a'");
    expect(items(pushed)).toEqual(['romeo@localhost', 'iago@shakespeare.lit']);
    // b never asked for the list: no push (the push to a and b would be written in the same turn).
    await b.sync();
    expect(b.queued().filter((element) => element.includes('urn:xmpp:blocking'))).toEqual([]);
    expect(items(await b.iq('l2', BLOCKLIST, "type='get'"))).toEqual(['iago@shakespeare.lit', 'romeo@localhost']);
    // Now b asked: an unblock reaches both.
    await a.iq('u1', unblock('iago@shakespeare.lit'), "type='set'");
    for (const resource of [a, b])
      expect(items(await resource.next(/<unblock xmlns='urn:xmpp:blocking'>/))).toEqual(['iago@shakespeare.lit']);
    expect(items(await a.iq('l3', BLOCKLIST, "type='get'"))).toEqual(['romeo@localhost']);
  });

  it('a blocked contact: messages and IQs bounce with service-unavailable, presence is dropped, nothing reaches the user', async () => {
    const { port } = await server();
    const juliet = await Raw.login(port, 'juliet', 'balcony', 'balcony');
    const romeo = await Raw.login(port, 'romeo', 'r0meo!', 'orchard');
    juliet.send('<presence/>');
    await juliet.iq('b', block('romeo@localhost'), "type='set'");

    romeo.send("<message id='m1' to='juliet@localhost' type='chat'><body>Can you hear me now?</body></message>");
    const bounced = await romeo.next(/^<message[^>]* id='m1'/);
    expect(bounced).toContain("type='error'");
    expect(bounced).toContain(`<service-unavailable xmlns='${STANZAS}'/>`);
    romeo.send("<message id='m2' to='juliet@localhost/balcony' type='headline'><body>news</body></message>");
    const iq = await romeo.iq('v', "<query xmlns='jabber:iq:version'/>", "type='get' to='juliet@localhost/balcony'");
    expect(iq).toContain(`<service-unavailable xmlns='${STANZAS}'/>`);
    romeo.send("<presence to='juliet@localhost' type='subscribe'/>");
    romeo.send("<presence to='juliet@localhost/balcony'/>");
    await romeo.sync();
    // Headlines and presence are dropped without an answer.
    expect(romeo.queued().filter((element) => element.includes("type='error'"))).toEqual([]);
    await juliet.sync();
    expect(juliet.queued().filter((element) => element.includes('romeo@localhost'))).toEqual([]);

    // Unblocked: messages flow again.
    await juliet.iq('u', unblock('romeo@localhost'), "type='set'");
    romeo.send("<message id='m3' to='juliet@localhost/balcony' type='chat'><body>Now?</body></message>");
    expect(await juliet.next(/^<message[^>]* id='m3'/)).toContain('<body>Now?</body>');
  });

  it("the user's own stanzas to a blocked JID get not-acceptable with <blocked/>; results and errors are dropped", async () => {
    const { port } = await server();
    const juliet = await Raw.login(port, 'juliet', 'balcony', 'balcony');
    const romeo = await Raw.login(port, 'romeo', 'r0meo!', 'orchard');
    await juliet.iq('b', block('romeo@localhost'), "type='set'");
    juliet.send("<message id='m1' to='romeo@localhost' type='chat'><body>Can you hear me now?</body></message>");
    const error = await juliet.next(/^<message[^>]* id='m1'/);
    expect(error).toContain("type='error'");
    expect(error).toContain("from='romeo@localhost'");
    expect(error).toMatch(
      new RegExp(`<error type='cancel'><not-acceptable xmlns='${STANZAS}'/>.*<blocked xmlns='urn:xmpp:blocking:errors'/></error>`),
    );
    const iq = await juliet.iq('q', "<query xmlns='jabber:iq:version'/>", "type='get' to='romeo@localhost/orchard'");
    expect(iq).toContain("<blocked xmlns='urn:xmpp:blocking:errors'/>");
    juliet.send("<presence id='p1' to='romeo@localhost' type='subscribe'/>");
    expect(await juliet.next(/^<presence[^>]* id='p1'/)).toContain("<blocked xmlns='urn:xmpp:blocking:errors'/>");
    juliet.send("<iq id='r1' type='result' to='romeo@localhost/orchard'/>");
    juliet.send(
      "<message id='e1' type='error' to='romeo@localhost/orchard'><error type='cancel'><gone xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>",
    );
    await juliet.sync();
    expect(juliet.queued().filter((element) => /id='(r1|e1)'/.test(element))).toEqual([]);
    await romeo.sync();
    expect(romeo.queued().filter((element) => element.includes('juliet@localhost'))).toEqual([]);
    // The server itself and the user's own account are never blocked.
    expect(await juliet.iq('own', "<query xmlns='http://jabber.org/protocol/disco#info'/>", "type='get' to='localhost'")).toContain(
      "type='result'",
    );
  });

  it('matches JIDs as §4 says: a full JID blocks that resource only, a domain blocks everyone there, subdomains too', async () => {
    const { port } = await server({ subscriptions: {} });
    const juliet = await Raw.login(port, 'juliet', 'balcony', 'balcony');
    const orchard = await Raw.login(port, 'romeo', 'r0meo!', 'orchard');
    const garden = await Raw.login(port, 'romeo', 'r0meo!', 'garden');
    await juliet.iq('b1', block('romeo@localhost/orchard'), "type='set'");
    orchard.send("<message id='o1' to='juliet@localhost/balcony' type='chat'><body>from the orchard</body></message>");
    expect(await orchard.next(/id='o1'/)).toContain('service-unavailable');
    garden.send("<message id='g1' to='juliet@localhost/balcony' type='chat'><body>from the garden</body></message>");
    expect(await juliet.next(/id='g1'/)).toContain('from the garden');
    // To the blocked resource: refused; to the bare JID (another resource may answer): allowed.
    juliet.send("<message id='j1' to='romeo@localhost/orchard' type='chat'><body>x</body></message>");
    expect(await juliet.next(/id='j1'/)).toContain('<blocked');

    // The domain: every account on it, but not juliet herself nor the server.
    await juliet.iq('u', unblock(), "type='set'");
    await juliet.iq('b2', block('localhost', 'capulet.lit'), "type='set'");
    garden.send("<message id='g2' to='juliet@localhost/balcony' type='chat'><body>x</body></message>");
    expect(await garden.next(/id='g2'/)).toContain('service-unavailable');
    juliet.send("<message id='j2' to='nurse@chat.capulet.lit' type='chat'><body>x</body></message>");
    expect(await juliet.next(/id='j2'/)).toContain('<blocked');
    juliet.send("<message id='self' to='juliet@localhost/balcony' type='chat'><body>note to self</body></message>");
    expect(await juliet.next(/^<message[^>]* id='self'/)).toContain('note to self');
    await juliet.sync();
  });

  it('blocks sent at once from two resources both land', async () => {
    // A store that takes its time writing, as a database on another host may: edits must not interleave.
    const memory = memoryStorage();
    const storage: XmppStorage = {
      users: memory.users,
      archive: (name) => memory.archive(name),
      close: () => memory.close(),
      keyValue(name) {
        const store = memory.keyValue(name);
        return {
          get: (owner, key) => store.get(owner, key),
          keys: (owner, prefix) => store.keys(owner, prefix),
          clear: (owner) => store.clear(owner),
          set: async (owner, key, value) => {
            await new Promise((resolve) => setTimeout(resolve, 5));
            await store.set(owner, key, value);
          },
        };
      },
    };
    const { port } = await server({ storage });
    const a = await Raw.login(port, 'juliet', 'balcony', 'a');
    const b = await Raw.login(port, 'juliet', 'balcony', 'b');
    const names = ['paris@localhost', 'tybalt@localhost'];
    const replies = names.map((jid, i) => (i % 2 === 0 ? a : b).iq(`b${i}`, block(jid), "type='set'"));
    for (const reply of await Promise.all(replies)) expect(reply).toMatch(/type='result'/);
    expect(items(await a.iq('l', BLOCKLIST, "type='get'"))).toEqual([...names].sort());
    // What is stored, not only what is in memory.
    expect(((await storage.keyValue('blocklist').get('juliet', 'jids')) as string[]).sort()).toEqual([...names].sort());
  });

  it('unblock all empties the list and pushes an empty <unblock/>', async () => {
    const { port } = await server();
    const juliet = await Raw.login(port, 'juliet', 'balcony', 'balcony');
    await juliet.iq('l', BLOCKLIST, "type='get'");
    await juliet.iq('b', block('romeo@localhost', 'tybalt@localhost'), "type='set'");
    await juliet.next(/<block xmlns/);
    expect(await juliet.iq('u', unblock(), "type='set'")).toMatch(/type='result'/);
    expect(await juliet.next(/<unblock/)).toMatch(/<unblock xmlns='urn:xmpp:blocking'\/>/);
    expect(items(await juliet.iq('l2', BLOCKLIST, "type='get'"))).toEqual([]);
  });

  it('blocking a contact who may see the presence sends them unavailable presence from each available resource', async () => {
    const { port } = await server({ subscriptions: { 'juliet:romeo@localhost': 'both' } });
    const juliet = await Raw.login(port, 'juliet', 'balcony', 'balcony');
    const romeo = await Raw.login(port, 'romeo', 'r0meo!', 'orchard');
    romeo.send('<presence/>');
    juliet.send('<presence/>');
    await romeo.sync();
    await juliet.sync();
    await juliet.iq('b', block('romeo@localhost', 'mercutio@localhost'), "type='set'");
    const unavailable = await romeo.next(/^<presence[^>]* type='unavailable'/);
    expect(unavailable).toContain("from='juliet@localhost/balcony'");
    // mercutio is not subscribed: he learns nothing.
  });

  it("with a real subscription: a block sends unavailable, hides later presence, and an unblock sends the user's current presence", async () => {
    // No list of an offline account kept in memory: those of online accounts still are.
    const { port } = await server({ cacheSize: 0 });
    const juliet = await Raw.login(port, 'juliet', 'balcony', 'balcony');
    const romeo = await Raw.login(port, 'romeo', 'r0meo!', 'orchard');
    // romeo subscribes to juliet's presence; she approves (RFC 6121 §3).
    romeo.send("<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>");
    await romeo.next(/id='r'/);
    romeo.send('<presence/>');
    juliet.send('<presence/>');
    await juliet.sync();
    romeo.send("<presence to='juliet@localhost' type='subscribe'/>");
    await juliet.next(/^<presence[^>]* type='subscribe'/);
    juliet.send("<presence to='romeo@localhost' type='subscribed'/>");
    await romeo.next(/^<presence[^>]* type='subscribed'/);
    await romeo.next(/^<presence[^>]* from='juliet@localhost\/balcony'(?![^>]* type=)/);

    await juliet.iq('b', block('romeo@localhost'), "type='set'");
    expect(await romeo.next(/^<presence[^>]* from='juliet@localhost\/balcony'/)).toContain("type='unavailable'");
    // While blocked, her presence changes do not reach him.
    juliet.send('<presence><show>away</show></presence>');
    await juliet.sync();
    await romeo.sync();
    expect(romeo.queued().filter((element) => element.startsWith('<presence'))).toEqual([]);

    await juliet.iq('u', unblock('romeo@localhost'), "type='set'");
    const current = await romeo.next(/^<presence[^>]* from='juliet@localhost\/balcony'/);
    expect(current).not.toContain("type='unavailable'");
    expect(current).toContain('<show>away</show>');
  });

  it('bad input: own JID, malformed JID, empty block, a list past its limit; nothing changes', async () => {
    const { port } = await server({ maxItems: 3 });
    const juliet = await Raw.login(port, 'juliet', 'balcony', 'balcony');
    await juliet.iq('b0', block('romeo@localhost'), "type='set'");
    for (const [id, body, condition] of [
      ['own', block('juliet@localhost'), 'not-acceptable'],
      ['ownfull', block('tybalt@localhost', 'juliet@localhost/balcony'), 'not-acceptable'],
      ['malformed', block('tybalt@localhost', '@localhost'), 'jid-malformed'],
      ['noattr', "<block xmlns='urn:xmpp:blocking'><item/></block>", 'jid-malformed'],
      ['badresource', block('tybalt@localhost/'), 'jid-malformed'],
      ['empty', "<block xmlns='urn:xmpp:blocking'/>", 'bad-request'],
      ['toomany', block('a@localhost', 'b@localhost', 'c@localhost'), 'policy-violation'],
    ] as const) {
      const reply = await juliet.iq(id, body, "type='set'");
      expect(reply, id).toContain("type='error'");
      expect(reply, id).toContain(`<${condition} xmlns='${STANZAS}'/>`);
    }
    expect(items(await juliet.iq('l', BLOCKLIST, "type='get'"))).toEqual(['romeo@localhost']);
    // Unblocking what is not blocked (her own JID included) is no error.
    expect(await juliet.iq('u', unblock('juliet@localhost', 'tybalt@localhost'), "type='set'")).toMatch(/type='result'/);
    expect(items(await juliet.iq('l2', BLOCKLIST, "type='get'"))).toEqual(['romeo@localhost']);
    // Another account's list is not readable.
    expect(await juliet.iq('other', BLOCKLIST, "type='get' to='romeo@localhost'")).toContain("type='error'");
  });

  it('the list is stored: a new server on the same storage enforces it; removing the account clears it', async () => {
    const storage = memoryStorage();
    const first = await server({ storage });
    const juliet = await Raw.login(first.port, 'juliet', 'balcony', 'balcony');
    await juliet.iq('b', block('romeo@localhost'), "type='set'");
    juliet.socket.destroy();
    await first.service.stop();

    const second = await server({ storage });
    const again = await Raw.login(second.port, 'juliet', 'balcony', 'balcony');
    expect(items(await again.iq('l', BLOCKLIST, "type='get'"))).toEqual(['romeo@localhost']);
    const romeo = await Raw.login(second.port, 'romeo', 'r0meo!', 'orchard');
    romeo.send("<message id='m' to='juliet@localhost' type='chat'><body>x</body></message>");
    expect(await romeo.next(/id='m'/)).toContain('service-unavailable');

    expect(await again.iq('rm', "<query xmlns='jabber:iq:register'><remove/></query>", "type='set'")).toMatch(/type='result'/);
    await again.next(/<stream:error>/);
    expect(await storage.keyValue('blocklist').keys('juliet')).toEqual([]);
  });
});

describe('slixmpp (Debian python3-slixmpp, xep_0191)', () => {
  it('blocks a contact whose messages then never arrive and whose stanzas bounce; unblocking lets them through', async () => {
    const { port } = await server();
    const script = new URL('./slixmpp/blocking.py', import.meta.url).pathname;
    const { stdout } = await run('/usr/bin/python3', [script, '127.0.0.1', String(port)], { timeout: 90_000 });
    const result = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as Record<string, unknown>;
    expect(result).toEqual({
      before: [],
      pushed: ['romeo@localhost'],
      after: ['romeo@localhost'],
      romeoBounced: 'service-unavailable',
      julietBounced: { condition: 'not-acceptable', blocked: true },
      received: ['after the unblock'],
      unpushed: ['romeo@localhost'],
    });
  });
});
