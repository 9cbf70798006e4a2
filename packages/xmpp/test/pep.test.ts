import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { defaultModules, memoryStorage, sqliteStorage, type XmppServerOptions } from '../src/index.js';
import { caps } from '../src/modules/caps.js';
import { type PepOptions, pep } from '../src/modules/pep.js';
import { privateStorage } from '../src/modules/private.js';
import { befriend, RawClient } from './pep-raw.js';
import { OPEN, rawStartTls, start } from './support.js';

// PEP (XEP-0163) over raw streams: publishing, retrieval, publish-options, access models,
// notifications filtered by +notify, the last item on presence, limits and errors.

const run = promisify(execFile);
const PUBSUB = 'http://jabber.org/protocol/pubsub';
const NICK = 'http://jabber.org/protocol/nick';

/** The default modules, with this PEP configuration. */
function modules(options: PepOptions = {}) {
  return [...defaultModules().filter((module) => module.name !== 'pep'), pep(options)];
}

async function server(options: { pep?: PepOptions; server?: Partial<XmppServerOptions> } = {}) {
  return start({ server: { storage: memoryStorage(), modules: modules(options.pep), ...options.server } });
}

const clients: RawClient[] = [];
async function login(port: number, user: 'juliet' | 'romeo' | 'nurse', resource = 'raw'): Promise<RawClient> {
  const passwords = { juliet: 'balcony', romeo: 'r0meo!', nurse: 'nurse' };
  const client = await RawClient.login(port, user, passwords[user], resource);
  clients.push(client);
  return client;
}

function publishOptions(fields: Record<string, string>): string {
  return (
    "<publish-options><x xmlns='jabber:x:data' type='submit'>" +
    "<field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>" +
    Object.entries(fields)
      .map(([name, value]) => `<field var='${name}'><value>${value}</value></field>`)
      .join('') +
    '</x></publish-options>'
  );
}

function publishNick(nick: string, options = '', id = 'current'): string {
  return `<pubsub xmlns='${PUBSUB}'><publish node='${NICK}'><item id='${id}'><nick xmlns='${NICK}'>${nick}</nick></item></publish>${options}</pubsub>`;
}

describe('PEP (XEP-0163)', () => {
  it('refuses limits that are not whole numbers ≥ 1 when the module is made (PB_ERR_XMPP_OPTION)', () => {
    for (const bad of [0, -1, 1.5, Number.NaN]) {
      expect(() => pep({ maxNodes: bad })).toThrow(expect.objectContaining({ code: 'PB_ERR_XMPP_OPTION' }));
      expect(() => privateStorage({ maxItemBytes: bad })).toThrow(/private: maxItemBytes must be a whole number/);
      expect(() => caps({ cacheSize: bad })).toThrow(/caps: cacheSize/);
    }
  });

  it('publishes to the own account (node auto-created), reads items back with max_items and ids, and lists nodes in disco', async () => {
    const { port } = await server();
    const juliet = await login(port, 'juliet');
    const published = await juliet.iq('set', publishNick('Jules', '', 'one'));
    expect(published).toMatch(/type='result'/);
    expect(published).toContain(`<publish node='${NICK}'><item id='one'/></publish>`);
    // max_items default is 1: a second publish replaces the first.
    await juliet.iq('set', publishNick('Juliet', '', 'two'));
    const items = await juliet.iq('get', `<pubsub xmlns='${PUBSUB}'><items node='${NICK}'/></pubsub>`);
    expect(items).toContain("<item id='two'><nick xmlns='http://jabber.org/protocol/nick'>Juliet</nick></item>");
    expect(items).not.toContain("id='one'");
    const byId = await juliet.iq('get', `<pubsub xmlns='${PUBSUB}'><items node='${NICK}'><item id='two'/></items></pubsub>`);
    expect(byId).toContain('>Juliet</nick>');
    // Disco: the account is a PEP service, the node is listed.
    const info = await juliet.iq('get', "<query xmlns='http://jabber.org/protocol/disco#info'/>", 'juliet@localhost');
    expect(info).toContain("category='pubsub'");
    expect(info).toContain("type='pep'");
    expect(info).toContain('http://jabber.org/protocol/pubsub#publish-options');
    const discoItems = await juliet.iq('get', "<query xmlns='http://jabber.org/protocol/disco#items'/>", 'juliet@localhost');
    expect(discoItems).toContain(`node='${NICK}'`);
    // The node itself: a leaf with its meta-data.
    const nodeInfo = await juliet.iq('get', `<query xmlns='http://jabber.org/protocol/disco#info' node='${NICK}'/>`, 'juliet@localhost');
    expect(nodeInfo).toContain("<identity category='pubsub' type='leaf'/>");
    expect(nodeInfo).toContain('<value>http://jabber.org/protocol/pubsub#meta-data</value>');
    expect(nodeInfo).toMatch(/var='pubsub#access_model'[^>]*><value>presence<\/value>/);
    const noNode = await juliet.iq(
      'get',
      "<query xmlns='http://jabber.org/protocol/disco#info' node='urn:example:none'/>",
      'juliet@localhost',
    );
    expect(noNode).toContain('<item-not-found');
  });

  it("refuses a publish to another user's node with <forbidden/>", async () => {
    const { port } = await server();
    const romeo = await login(port, 'romeo');
    const answer = await romeo.iq('set', publishNick('Romeo was here'), 'juliet@localhost');
    expect(answer).toMatch(/type='error'/);
    expect(answer).toMatch(/<error type='auth'><forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'\/>/);
    // Nor may he delete or configure her nodes.
    const owner = await romeo.iq('set', `<pubsub xmlns='${PUBSUB}#owner'><delete node='${NICK}'/></pubsub>`, 'juliet@localhost');
    expect(owner).toContain('<forbidden');
    // The stream lives on.
    expect(await romeo.iq('get', "<ping xmlns='urn:xmpp:ping'/>")).toMatch(/type='result'/);
  });

  it('answers malformed PubSub requests with their errors and keeps the stream', async () => {
    const { port } = await server();
    const juliet = await login(port, 'juliet');
    await juliet.iq('set', publishNick('Jules'));
    const cases: Array<[string, string, RegExp]> = [
      [
        'set',
        `<pubsub xmlns='${PUBSUB}'><publish><item><x xmlns='urn:example:x'/></item></publish></pubsub>`,
        /<bad-request[\s\S]*<nodeid-required/,
      ],
      ['set', `<pubsub xmlns='${PUBSUB}'><publish node='urn:example:x'/></pubsub>`, /<bad-request[\s\S]*<item-required/],
      ['set', `<pubsub xmlns='${PUBSUB}'><publish node='urn:example:x'><item/></publish></pubsub>`, /<bad-request[\s\S]*<item-required/],
      [
        'set',
        `<pubsub xmlns='${PUBSUB}'><publish node='urn:example:x'><item><a xmlns='urn:example:x'/><b xmlns='urn:example:x'/></item></publish></pubsub>`,
        /<bad-request[\s\S]*<invalid-payload/,
      ],
      [
        'set',
        `<pubsub xmlns='${PUBSUB}'><publish node='has space'><item><x xmlns='urn:example:x'/></item></publish></pubsub>`,
        /<not-acceptable/,
      ],
      ['get', `<pubsub xmlns='${PUBSUB}'><items node='${NICK}' max_items='-1'/></pubsub>`, /<bad-request/],
      ['get', `<pubsub xmlns='${PUBSUB}'><items node='urn:example:none'/></pubsub>`, /<item-not-found/],
      ['set', `<pubsub xmlns='${PUBSUB}'><retract node='urn:example:none'><item id='x'/></retract></pubsub>`, /<item-not-found/],
      ['set', `<pubsub xmlns='${PUBSUB}'/>`, /<bad-request/],
      ['set', `<pubsub xmlns='${PUBSUB}'><subscribe node='${NICK}' jid='romeo@localhost'/></pubsub>`, /<bad-request[\s\S]*<invalid-jid/],
      [
        'set',
        `<pubsub xmlns='${PUBSUB}'><unsubscribe node='${NICK}' jid='juliet@localhost'/></pubsub>`,
        /<unexpected-request[\s\S]*<not-subscribed/,
      ],
      ['set', `<pubsub xmlns='${PUBSUB}#owner'><configure node='urn:example:none'/></pubsub>`, /<item-not-found/],
    ];
    for (const [type, payload, expected] of cases) {
      const answer = await juliet.iq(type as 'get' | 'set', payload);
      expect(answer, payload).toMatch(/type='error'/);
      expect(answer, payload).toMatch(expected);
    }
    const nobody = await juliet.iq('get', `<pubsub xmlns='${PUBSUB}'><items node='${NICK}'/></pubsub>`, 'nobody@localhost');
    expect(nobody).toContain('<service-unavailable');
    expect(await juliet.iq('get', "<ping xmlns='urn:xmpp:ping'/>")).toMatch(/type='result'/);
  });

  it('answers a 10 MB item with <not-acceptable/> + <payload-too-big/> when the stanza limit lets it through', async () => {
    // Neither the stanza limit nor the reading rate limit stops it first.
    const { port } = await server({ server: { maxStanzaSize: 16 * 1024 * 1024, rateLimit: { bytesPerSecond: 0 } } });
    const juliet = await login(port, 'juliet');
    const big = 'A'.repeat(10 * 1024 * 1024);
    const answer = await juliet.iq(
      'set',
      `<pubsub xmlns='${PUBSUB}'><publish node='urn:xmpp:avatar:data'><item id='big'><data xmlns='urn:xmpp:avatar:data'>${big}</data></item></publish></pubsub>`,
    );
    expect(answer).toMatch(/<error type='modify'><not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'\/>/);
    expect(answer).toContain("<payload-too-big xmlns='http://jabber.org/protocol/pubsub#errors'/>");
    // Nothing stored, the stream is fine.
    const items = await juliet.iq('get', `<pubsub xmlns='${PUBSUB}'><items node='urn:xmpp:avatar:data'/></pubsub>`);
    expect(items).toContain('<item-not-found');
    expect(await juliet.iq('get', "<ping xmlns='urn:xmpp:ping'/>")).toMatch(/type='result'/);
  });

  it('closes the stream of a 10 MB item with the default stanza limit (policy-violation), and other clients live on', async () => {
    const { port } = await server();
    const juliet = await login(port, 'juliet');
    const romeo = await login(port, 'romeo');
    juliet.send(
      `<iq type='set' id='big'><pubsub xmlns='${PUBSUB}'><publish node='urn:xmpp:avatar:data'><item id='big'><data xmlns='urn:xmpp:avatar:data'>${'A'.repeat(10 * 1024 * 1024)}</data></item></publish></pubsub></iq>`,
    );
    expect(await juliet.next(/<stream:error>/)).toContain('<policy-violation');
    expect(await romeo.iq('get', "<ping xmlns='urn:xmpp:ping'/>")).toMatch(/type='result'/);
  });

  it('answers an item over the PEP limit but under the stanza limit with <payload-too-big/> (defaults)', async () => {
    const { port } = await server();
    const juliet = await login(port, 'juliet');
    const answer = await juliet.iq(
      'set',
      `<pubsub xmlns='${PUBSUB}'><publish node='urn:example:big'><item><data xmlns='urn:example:big'>${'B'.repeat(200 * 1024)}</data></item></publish></pubsub>`,
    );
    expect(answer).toContain('<not-acceptable');
    expect(answer).toContain('<payload-too-big');
  });

  it('fails a publish whose publish-options conflict with the node configuration (precondition-not-met)', async () => {
    const { port } = await server();
    const juliet = await login(port, 'juliet');
    const created = await juliet.iq(
      'set',
      publishNick('Jules', publishOptions({ 'pubsub#access_model': 'open', 'pubsub#max_items': 'max' })),
    );
    expect(created).toMatch(/type='result'/);
    const conflicting = await juliet.iq('set', publishNick('Jules', publishOptions({ 'pubsub#access_model': 'whitelist' })));
    expect(conflicting).toMatch(/<error type='cancel'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'\/>/);
    expect(conflicting).toContain("<precondition-not-met xmlns='http://jabber.org/protocol/pubsub#errors'/>");
    // Matching options publish ('max' is the service's limit).
    const matching = await juliet.iq(
      'set',
      publishNick('Jules', publishOptions({ 'pubsub#access_model': 'open', 'pubsub#max_items': 'max' })),
    );
    expect(matching).toMatch(/type='result'/);
    // The configuration is unchanged.
    const config = await juliet.iq('get', `<pubsub xmlns='${PUBSUB}#owner'><configure node='${NICK}'/></pubsub>`);
    expect(config).toMatch(/var='pubsub#access_model'[^>]*>(<[^>]*>)*?<value>open<\/value>/);
    expect(config).toContain('<value>256</value>');
    // A malformed form is a bad request.
    const malformed = await juliet.iq(
      'set',
      publishNick(
        'x',
        "<publish-options><x xmlns='jabber:x:data' type='form'><field var='pubsub#access_model'><value>open</value></field></x></publish-options>",
      ),
    );
    expect(malformed).toContain('<bad-request');
  });

  it("denies a contact the items of a whitelist node (not-allowed + closed-node), allows them a presence node's, and refuses strangers", async () => {
    const { port } = await server();
    const juliet = await login(port, 'juliet');
    const romeo = await login(port, 'romeo');
    await befriend(juliet, romeo);
    await juliet.iq(
      'set',
      `<pubsub xmlns='${PUBSUB}'><publish node='urn:example:diary'><item id='today'><entry xmlns='urn:example:diary'>secret</entry></item></publish>${publishOptions({ 'pubsub#access_model': 'whitelist', 'pubsub#persist_items': '1' })}</pubsub>`,
    );
    await juliet.iq('set', publishNick('Jules'));
    const denied = await romeo.iq('get', `<pubsub xmlns='${PUBSUB}'><items node='urn:example:diary'/></pubsub>`, 'juliet@localhost');
    expect(denied).toMatch(/<error type='cancel'><not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'\/>/);
    expect(denied).toContain("<closed-node xmlns='http://jabber.org/protocol/pubsub#errors'/>");
    expect(denied).not.toContain('secret');
    // The whitelist node is not listed for him either; the presence one is.
    const listed = await romeo.iq('get', "<query xmlns='http://jabber.org/protocol/disco#items'/>", 'juliet@localhost');
    expect(listed).toContain(`node='${NICK}'`);
    expect(listed).not.toContain('urn:example:diary');
    const allowed = await romeo.iq('get', `<pubsub xmlns='${PUBSUB}'><items node='${NICK}'/></pubsub>`, 'juliet@localhost');
    expect(allowed).toContain('>Jules</nick>');
    // Whitelisted (a member), he reads the diary.
    const whitelisted = await juliet.iq(
      'set',
      `<pubsub xmlns='${PUBSUB}#owner'><affiliations node='urn:example:diary'><affiliation jid='romeo@localhost' affiliation='member'/></affiliations></pubsub>`,
    );
    expect(whitelisted).toMatch(/type='result'/);
    expect(await romeo.iq('get', `<pubsub xmlns='${PUBSUB}'><items node='urn:example:diary'/></pubsub>`, 'juliet@localhost')).toContain(
      'secret',
    );
    // The nurse is no contact: the presence model refuses her.
    const stranger = await start({ server: { storage: memoryStorage(), modules: modules() }, accounts: { nurse: 'nurse' } });
    const nurse = await login(stranger.port, 'nurse');
    const strangerJuliet = await login(stranger.port, 'juliet');
    await strangerJuliet.iq('set', publishNick('Jules'));
    const refused = await nurse.iq('get', `<pubsub xmlns='${PUBSUB}'><items node='${NICK}'/></pubsub>`, 'juliet@localhost');
    expect(refused).toContain('<not-authorized');
    expect(refused).toContain('<presence-subscription-required');
  });

  it('notifies contacts with +notify, sends the last item when one comes online, and notifies retractions', async () => {
    const { port } = await server();
    const juliet = await login(port, 'juliet');
    const romeo = await login(port, 'romeo', 'phone');
    await befriend(juliet, romeo);
    // Caps resolved: the server asks once for these features, and knows them the second time.
    await juliet.announce([`${NICK}+notify`], 'query');
    await romeo.announce([`${NICK}+notify`], 'cached');
    expect(romeo.discoQueries).toBe(0);
    await juliet.iq('set', publishNick('Jules'));
    const event = await romeo.next(/<event xmlns='http:\/\/jabber.org\/protocol\/pubsub#event'>/);
    expect(event).toMatch(/^<message from='juliet@localhost' to='romeo@localhost\/phone' type='headline'/);
    expect(event).toContain(`<items node='${NICK}'><item id='current'><nick xmlns='${NICK}'>Jules</nick></item></items>`);
    // The owner's own resource is notified too.
    expect(await juliet.next(/pubsub#event/)).toContain('>Jules</nick>');
    // A second resource of Romeo's coming online gets the last item, with its delay.
    const laptop = await login(port, 'romeo', 'laptop');
    laptop.presence([`${NICK}+notify`, 'urn:example:other']);
    const last = await laptop.next(/pubsub#event/);
    expect(last).toContain('>Jules</nick>');
    expect(last).toContain("<delay xmlns='urn:xmpp:delay'");
    // A retraction is notified.
    await juliet.iq('set', `<pubsub xmlns='${PUBSUB}'><retract node='${NICK}' notify='true'><item id='current'/></retract></pubsub>`);
    expect(await romeo.next(/<retract id='current'\/>/)).toContain(`<items node='${NICK}'><retract id='current'/></items>`);
  });

  it('sends the last items to a contact when the owner approves its subscription (XEP-0163 §4.3.4)', async () => {
    const { port } = await server();
    const juliet = await login(port, 'juliet');
    const romeo = await login(port, 'romeo');
    await juliet.iq('set', publishNick('Jules'));
    await juliet.announce([]);
    await romeo.announce([`${NICK}+notify`]);
    await befriend(juliet, romeo, { available: true });
    const event = await romeo.next(/pubsub#event/);
    expect(event).toMatch(/^<message from='juliet@localhost' to='romeo@localhost\/raw' type='headline'/);
    expect(event).toContain('>Jules</nick>');
  });

  it('refuses a node past the per-account limit (not-allowed + max-nodes-exceeded)', async () => {
    const { port } = await server({ pep: { maxNodes: 2 } });
    const juliet = await login(port, 'juliet');
    for (const name of ['urn:example:one', 'urn:example:two']) {
      expect(
        await juliet.iq('set', `<pubsub xmlns='${PUBSUB}'><publish node='${name}'><item><x xmlns='${name}'/></item></publish></pubsub>`),
      ).toMatch(/type='result'/);
    }
    const third = await juliet.iq(
      'set',
      `<pubsub xmlns='${PUBSUB}'><publish node='urn:example:three'><item><x xmlns='urn:example:three'/></item></publish></pubsub>`,
    );
    expect(third).toContain('<not-allowed');
    expect(third).toContain("<max-nodes-exceeded xmlns='http://jabber.org/protocol/pubsub#errors'/>");
    // Existing nodes still take items.
    expect(
      await juliet.iq(
        'set',
        `<pubsub xmlns='${PUBSUB}'><publish node='urn:example:one'><item><x xmlns='urn:example:one'/></item></publish></pubsub>`,
      ),
    ).toMatch(/type='result'/);
  });

  it('publishes a vCard PHOTO set by an older client as the PEP avatar (XEP-0398 §3), and names it in presence (XEP-0153)', async () => {
    const { port } = await server();
    const juliet = await login(port, 'juliet');
    const romeo = await login(port, 'romeo');
    await befriend(juliet, romeo);
    const image = Buffer.from('not really a png, but bytes all the same');
    const sha1 = createHash('sha1').update(image).digest('hex');
    const set = await juliet.iq(
      'set',
      `<vCard xmlns='vcard-temp'><FN>Juliet Capulet</FN><PHOTO><TYPE>image/png</TYPE><BINVAL>${image.toString('base64')}</BINVAL></PHOTO></vCard>`,
    );
    expect(set).toMatch(/type='result'/);
    const metadata = await romeo.iq(
      'get',
      `<pubsub xmlns='${PUBSUB}'><items node='urn:xmpp:avatar:metadata'/></pubsub>`,
      'juliet@localhost',
    );
    expect(metadata).toContain(`<info id='${sha1}' bytes='${image.length}' type='image/png'/>`);
    const data = await romeo.iq(
      'get',
      `<pubsub xmlns='${PUBSUB}'><items node='urn:xmpp:avatar:data'><item id='${sha1}'/></items></pubsub>`,
      'juliet@localhost',
    );
    expect(data).toContain(`<data xmlns='urn:xmpp:avatar:data'>${image.toString('base64')}</data>`);
    // Her next presence names it, whatever the client put there.
    juliet.send("<presence><x xmlns='vcard-temp:x:update'><photo>stale</photo></x></presence>");
    const presence = await romeo.next(/^<presence[^>]*from='juliet@localhost\/raw'[^>]*>.*vcard-temp:x:update/);
    expect(presence).toContain(`<x xmlns='vcard-temp:x:update'><photo>${sha1}</photo></x>`);
    expect(presence).not.toContain('stale');
    // The avatar node deleted, the server no longer speaks for her avatar: the client's own hash passes.
    await juliet.iq('set', `<pubsub xmlns='${PUBSUB}#owner'><delete node='urn:xmpp:avatar:metadata'/></pubsub>`);
    juliet.send("<presence><status>later</status><x xmlns='vcard-temp:x:update'><photo>from-the-client</photo></x></presence>");
    const later = await romeo.next(/^<presence[^>]*from='juliet@localhost\/raw'[^>]*>.*later/);
    expect(later).toContain('<photo>from-the-client</photo>');
  });

  it('keeps notifying a session resumed with stream management (XEP-0198) on a new connection', async () => {
    const { port } = await server();
    const phone = await login(port, 'juliet', 'phone');
    phone.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
    const previd = /id='([^']+)'/.exec(await phone.next(/^<enabled /))?.[1];
    expect(previd).toBeDefined();
    await phone.announce([`${NICK}+notify`]);
    phone.close();
    // The link comes back: a new connection resumes the session (its caps and availability with it).
    const socket = await rawStartTls(port);
    const resumed = new RawClient(socket, 'juliet@localhost/phone');
    clients.push(resumed);
    resumed.send(
      `${OPEN}<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from('\u0000juliet\u0000balcony').toString('base64')}</auth>`,
    );
    await resumed.next(/^<success/);
    resumed.send(OPEN);
    await resumed.next(/^<stream:features>/);
    resumed.send(`<resume xmlns='urn:xmpp:sm:3' previd='${previd}' h='0'/>`);
    await resumed.next(/^<resumed /);
    await resumed.iq('get', "<ping xmlns='urn:xmpp:ping'/>");
    const laptop = await login(port, 'juliet', 'laptop');
    await laptop.iq('set', publishNick('Resumed'));
    expect(await resumed.next(/pubsub#event/)).toContain('>Resumed</nick>');
  });

  it('takes explicit subscriptions (XEP-0060 §6.1): the last item after the answer, notifications without caps, unsubscribe', async () => {
    const { port } = await start({ server: { storage: memoryStorage(), modules: modules() }, accounts: { nurse: 'nurse' } });
    const juliet = await login(port, 'juliet');
    await juliet.iq('set', publishNick('Jules', publishOptions({ 'pubsub#access_model': 'open' })));
    await juliet.iq(
      'set',
      `<pubsub xmlns='${PUBSUB}'><publish node='urn:example:diary'><item><entry xmlns='urn:example:diary'/></item></publish></pubsub>`,
    );
    const nurse = await login(port, 'nurse');
    // The presence model keeps a stranger out.
    const refused = await nurse.iq(
      'set',
      `<pubsub xmlns='${PUBSUB}'><subscribe node='urn:example:diary' jid='nurse@localhost/raw'/></pubsub>`,
      'juliet@localhost',
    );
    expect(refused).toContain('<presence-subscription-required');
    const answer = await nurse.iq(
      'set',
      `<pubsub xmlns='${PUBSUB}'><subscribe node='${NICK}' jid='nurse@localhost/raw'/></pubsub>`,
      'juliet@localhost',
    );
    expect(answer).toContain(`<subscription node='${NICK}' jid='nurse@localhost/raw' subscription='subscribed'/>`);
    const last = await nurse.next(/pubsub#event/);
    expect(last).toContain('>Jules</nick>');
    expect(last).toContain("<delay xmlns='urn:xmpp:delay'");
    expect(await nurse.iq('get', `<pubsub xmlns='${PUBSUB}'><subscriptions/></pubsub>`, 'juliet@localhost')).toContain(
      `<subscription node='${NICK}' jid='nurse@localhost/raw' subscription='subscribed'/>`,
    );
    expect(await juliet.iq('get', `<pubsub xmlns='${PUBSUB}#owner'><subscriptions node='${NICK}'/></pubsub>`)).toContain(
      "<subscription jid='nurse@localhost/raw' subscription='subscribed'/>",
    );
    // No caps at all: the subscription alone brings the notification.
    await juliet.iq('set', publishNick('Juliet'));
    expect(await nurse.next(/pubsub#event/)).toContain('>Juliet</nick>');
    expect(
      await nurse.iq(
        'set',
        `<pubsub xmlns='${PUBSUB}'><unsubscribe node='${NICK}' jid='nurse@localhost/raw'/></pubsub>`,
        'juliet@localhost',
      ),
    ).toMatch(/type='result'/);
    const again = await nurse.iq(
      'set',
      `<pubsub xmlns='${PUBSUB}'><unsubscribe node='${NICK}' jid='nurse@localhost/raw'/></pubsub>`,
      'juliet@localhost',
    );
    expect(again).toContain('<not-subscribed');
  });

  it("keeps a node's configuration: get and set by the owner, delete with a notification", async () => {
    const { port } = await server();
    const juliet = await login(port, 'juliet');
    await juliet.announce(['urn:example:tune+notify']);
    await juliet.iq(
      'set',
      `<pubsub xmlns='${PUBSUB}'><create node='urn:example:tune'/><configure><x xmlns='jabber:x:data' type='submit'><field var='pubsub#max_items'><value>5</value></field></x></configure></pubsub>`,
    );
    for (const id of ['a', 'b', 'c']) {
      await juliet.iq(
        'set',
        `<pubsub xmlns='${PUBSUB}'><publish node='urn:example:tune'><item id='${id}'><tune xmlns='urn:example:tune'>${id}</tune></item></publish></pubsub>`,
      );
    }
    const two = await juliet.iq('get', `<pubsub xmlns='${PUBSUB}'><items node='urn:example:tune' max_items='2'/></pubsub>`);
    expect(two.match(/<item id='/g)).toHaveLength(2);
    expect(two).toContain("<item id='b'>");
    expect(two).toContain("<item id='c'>");
    const set = await juliet.iq(
      'set',
      `<pubsub xmlns='${PUBSUB}#owner'><configure node='urn:example:tune'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field><field var='pubsub#max_items'><value>1</value></field></x></configure></pubsub>`,
    );
    expect(set).toMatch(/type='result'/);
    const one = await juliet.iq('get', `<pubsub xmlns='${PUBSUB}'><items node='urn:example:tune'/></pubsub>`);
    expect(one.match(/<item id='/g)).toHaveLength(1);
    const deleted = await juliet.iq('set', `<pubsub xmlns='${PUBSUB}#owner'><delete node='urn:example:tune'/></pubsub>`);
    expect(deleted).toMatch(/type='result'/);
    expect(await juliet.next(/<delete node='urn:example:tune'\/>/)).toContain('pubsub#event');
    const gone = await juliet.iq('get', `<pubsub xmlns='${PUBSUB}'><items node='urn:example:tune'/></pubsub>`);
    expect(gone).toContain('<item-not-found');
  });

  it('keeps nodes, items and their configuration across a restart on the SQLite file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'portbind-pep-'));
    try {
      const file = join(dir, 'xmpp.sqlite');
      const first = await start({ server: { storage: sqliteStorage({ file }), modules: modules() } });
      const juliet = await login(first.port, 'juliet');
      await juliet.iq('set', publishNick('Durable', publishOptions({ 'pubsub#access_model': 'open' })));
      // Same item ids on two nodes (avatar data and metadata share the hash) stay apart.
      await juliet.iq(
        'set',
        `<pubsub xmlns='${PUBSUB}'><publish node='urn:example:a'><item id='same'><a xmlns='urn:example:a'/></item></publish></pubsub>`,
      );
      await juliet.iq(
        'set',
        `<pubsub xmlns='${PUBSUB}'><publish node='urn:example:b'><item id='same'><b xmlns='urn:example:b'/></item></publish></pubsub>`,
      );
      juliet.close();
      await first.service.stop();
      const second = await start({ server: { storage: sqliteStorage({ file }), modules: modules() } });
      const again = await login(second.port, 'juliet');
      expect(await again.iq('get', `<pubsub xmlns='${PUBSUB}'><items node='${NICK}'/></pubsub>`)).toContain('>Durable</nick>');
      expect(await again.iq('get', `<pubsub xmlns='${PUBSUB}'><items node='urn:example:a'/></pubsub>`)).toContain(
        "<item id='same'><a xmlns='urn:example:a'/></item>",
      );
      expect(await again.iq('get', `<pubsub xmlns='${PUBSUB}'><items node='urn:example:b'/></pubsub>`)).toContain(
        "<item id='same'><b xmlns='urn:example:b'/></item>",
      );
      const config = await again.iq('get', `<pubsub xmlns='${PUBSUB}#owner'><configure node='${NICK}'/></pubsub>`);
      expect(config).toMatch(/var='pubsub#access_model'[^>]*>(<[^>]*>)*?<value>open<\/value>/);
      again.close();
      await second.service.stop();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('carries OMEMO device lists and bundles (XEP-0384): open access for anyone, several bundles with max_items max', async () => {
    const { port } = await start({ server: { storage: memoryStorage(), modules: modules() }, accounts: { nurse: 'nurse' } });
    const juliet = await login(port, 'juliet');
    const open = publishOptions({ 'pubsub#access_model': 'open', 'pubsub#max_items': 'max' });
    const devices = await juliet.iq(
      'set',
      `<pubsub xmlns='${PUBSUB}'><publish node='urn:xmpp:omemo:2:devices'><item id='current'><devices xmlns='urn:xmpp:omemo:2'><device id='12345'/><device id='4223'/></devices></item></publish>${open}</pubsub>`,
    );
    expect(devices).toMatch(/type='result'/);
    for (const id of ['12345', '4223']) {
      const bundle = await juliet.iq(
        'set',
        `<pubsub xmlns='${PUBSUB}'><publish node='urn:xmpp:omemo:2:bundles'><item id='${id}'><bundle xmlns='urn:xmpp:omemo:2'><spk id='0'>c3BrMA==</spk></bundle></item></publish>${open}</pubsub>`,
      );
      expect(bundle).toMatch(/type='result'/);
    }
    // The nurse shares no presence with Juliet and still starts a session with her.
    const nurse = await login(port, 'nurse');
    expect(
      await nurse.iq('get', `<pubsub xmlns='${PUBSUB}'><items node='urn:xmpp:omemo:2:devices'/></pubsub>`, 'juliet@localhost'),
    ).toContain("<device id='12345'/><device id='4223'/>");
    const bundles = await nurse.iq(
      'get',
      `<pubsub xmlns='${PUBSUB}'><items node='urn:xmpp:omemo:2:bundles'/></pubsub>`,
      'juliet@localhost',
    );
    expect(bundles).toContain("<item id='12345'>");
    expect(bundles).toContain("<item id='4223'>");
  });
});

describe('slixmpp (Debian python3-slixmpp: xep_0163, xep_0084, xep_0172, xep_0048/xep_0049, xep_0054)', () => {
  it('carries a nickname and an avatar to a contact, the vCard photo and presence hash follow, bookmarks both ways', async () => {
    const { port } = await server();
    const script = new URL('./slixmpp/pep.py', import.meta.url).pathname;
    const { stdout } = await run('/usr/bin/python3', [script, '127.0.0.1', String(port)], { timeout: 90_000 });
    const result = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as Record<string, unknown>;
    expect(result).toEqual({
      subscribed: true,
      nick: { from: 'juliet@localhost', nick: 'Jules' },
      avatarNotified: true,
      avatarFetched: true,
      vcardPhoto: true,
      presencePhoto: true,
      lastNick: 'Jules',
      bookmarks2: [['council@chat.example', 'The Council']],
      legacy: [
        ['council@chat.example', 'The Council', 'JC', true],
        ['orchard@chat.example', 'Orchard', 'Juliet', false],
      ],
      afterPep: ['balcony@chat.example', 'council@chat.example', 'orchard@chat.example'],
      legacyPep: ['balcony@chat.example', 'council@chat.example', 'orchard@chat.example'],
    });
  }, 120_000);
});
