import { describe, expect, it } from 'vitest';
import { defaultModules, memoryStorage } from '../src/index.js';
import { privateStorage } from '../src/modules/private.js';
import { RawClient } from './pep-raw.js';
import { start } from './support.js';

// Private XML storage (XEP-0049) and bookmarks (XEP-0402 with #compat: XEP-0048 in private
// storage is the PEP node seen the old way) over raw streams.

const PUBSUB = 'http://jabber.org/protocol/pubsub';
const BOOKMARKS = 'urn:xmpp:bookmarks:1';

async function server(modules = defaultModules()) {
  return start({ server: { storage: memoryStorage(), modules } });
}

function privateSet(inner: string): string {
  return `<query xmlns='jabber:iq:private'>${inner}</query>`;
}

describe('private XML storage (XEP-0049)', () => {
  it('stores and returns elements by name and namespace, empty when nothing is stored', async () => {
    const { port } = await server();
    const juliet = await RawClient.login(port, 'juliet', 'balcony');
    const empty = await juliet.iq('get', privateSet("<prefs xmlns='urn:example:prefs'/>"));
    expect(empty).toContain("<query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'/></query>");
    expect(await juliet.iq('set', privateSet("<prefs xmlns='urn:example:prefs'><theme>dark</theme></prefs>"))).toMatch(/type='result'/);
    const stored = await juliet.iq('get', privateSet("<prefs xmlns='urn:example:prefs'/>"));
    expect(stored).toContain("<prefs xmlns='urn:example:prefs'><theme>dark</theme></prefs>");
    // Another user's storage is not reachable: the IQ to her JID is refused.
    const romeo = await RawClient.login(port, 'romeo', 'r0meo!');
    const other = await romeo.iq('get', privateSet("<prefs xmlns='urn:example:prefs'/>"), 'juliet@localhost');
    expect(other).toMatch(/type='error'/);
    expect(other).not.toContain('dark');
    juliet.close();
    romeo.close();
  });

  it('refuses reserved namespaces, several elements in a get, and elements over the size limit', async () => {
    const { port } = await server([
      ...defaultModules().filter((module) => module.name !== 'private'),
      privateStorage({ maxItemBytes: 1024 }),
    ]);
    const juliet = await RawClient.login(port, 'juliet', 'balcony');
    const reserved = await juliet.iq('set', privateSet("<query xmlns='jabber:iq:roster'/>"));
    expect(reserved).toContain('<not-acceptable');
    const two = await juliet.iq('get', privateSet("<a xmlns='urn:example:a'/><b xmlns='urn:example:b'/>"));
    expect(two).toContain('<not-acceptable');
    const big = await juliet.iq('set', privateSet(`<big xmlns='urn:example:big'>${'x'.repeat(2000)}</big>`));
    expect(big).toContain('<not-acceptable');
    expect(await juliet.iq('get', privateSet("<big xmlns='urn:example:big'/>"))).toContain("<big xmlns='urn:example:big'/>");
    juliet.close();
  });
});

describe('bookmarks (XEP-0402 with #compat)', () => {
  it('advertises urn:xmpp:bookmarks:1#compat on the account', async () => {
    const { port } = await server();
    const juliet = await RawClient.login(port, 'juliet', 'balcony');
    const info = await juliet.iq('get', "<query xmlns='http://jabber.org/protocol/disco#info'/>", 'juliet@localhost');
    expect(info).toContain(`var='${BOOKMARKS}#compat'`);
    juliet.close();
  });

  it('turns a legacy (XEP-0048) write into PEP items, notified to XEP-0402 clients, and removes what the legacy list drops', async () => {
    const { port } = await server();
    const modern = await RawClient.login(port, 'juliet', 'balcony', 'modern');
    const legacy = await RawClient.login(port, 'juliet', 'balcony', 'legacy');
    await modern.announce([`${BOOKMARKS}+notify`]);
    const stored = await legacy.iq(
      'set',
      privateSet(
        "<storage xmlns='storage:bookmarks'>" +
          "<conference jid='council@chat.example' name='The Council' autojoin='true'><nick>JC</nick></conference>" +
          "<conference jid='orchard@chat.example' autojoin='false'/>" +
          '</storage>',
      ),
    );
    expect(stored).toMatch(/type='result'/);
    const event = await modern.next(/item id='council@chat.example'/);
    expect(event).toContain(`<conference xmlns='${BOOKMARKS}' name='The Council' autojoin='true'><nick>JC</nick></conference>`);
    const items = await modern.iq('get', `<pubsub xmlns='${PUBSUB}'><items node='${BOOKMARKS}'/></pubsub>`);
    expect(items).toContain("<item id='council@chat.example'>");
    expect(items).toContain("<item id='orchard@chat.example'>");
    // The node is private (XEP-0223): whitelist, items persisted.
    const config = await modern.iq('get', `<pubsub xmlns='${PUBSUB}#owner'><configure node='${BOOKMARKS}'/></pubsub>`);
    expect(config).toMatch(/var='pubsub#access_model'[^>]*>(<[^>]*>)*?<value>whitelist<\/value>/);
    // Dropping one in the legacy list retracts it.
    await legacy.iq(
      'set',
      privateSet(
        "<storage xmlns='storage:bookmarks'><conference jid='council@chat.example' name='The Council' autojoin='true'><nick>JC</nick></conference></storage>",
      ),
    );
    expect(await modern.next(/<retract id='orchard@chat.example'\/>/)).toContain(`<items node='${BOOKMARKS}'>`);
    const after = await modern.iq('get', `<pubsub xmlns='${PUBSUB}'><items node='${BOOKMARKS}'/></pubsub>`);
    expect(after).not.toContain('orchard');
    // A contact cannot read them.
    const romeo = await RawClient.login(port, 'romeo', 'r0meo!');
    const denied = await romeo.iq('get', `<pubsub xmlns='${PUBSUB}'><items node='${BOOKMARKS}'/></pubsub>`, 'juliet@localhost');
    expect(denied).toMatch(/type='error'/);
    expect(denied).not.toContain('council');
    for (const client of [modern, legacy, romeo]) client.close();
  });

  it('shows XEP-0402 items to a legacy client reading private storage', async () => {
    const { port } = await server();
    const juliet = await RawClient.login(port, 'juliet', 'balcony');
    const published = await juliet.iq(
      'set',
      `<pubsub xmlns='${PUBSUB}'><publish node='${BOOKMARKS}'><item id='theplay@conference.shakespeare.lit'>` +
        `<conference xmlns='${BOOKMARKS}' name='The Play&apos;s the Thing' autojoin='true'><nick>JC</nick><password>secret</password>` +
        "<extensions><state xmlns='http://myclient.example/bookmark/state' minimized='true'/></extensions></conference></item></publish>" +
        "<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>" +
        "<field var='pubsub#persist_items'><value>true</value></field><field var='pubsub#max_items'><value>max</value></field>" +
        "<field var='pubsub#send_last_published_item'><value>never</value></field><field var='pubsub#access_model'><value>whitelist</value></field></x></publish-options></pubsub>",
    );
    expect(published).toMatch(/type='result'/);
    const legacy = await juliet.iq('get', privateSet("<storage xmlns='storage:bookmarks'/>"));
    expect(legacy).toContain(
      "<storage xmlns='storage:bookmarks'><conference jid='theplay@conference.shakespeare.lit' name='The Play&apos;s the Thing' autojoin='true'><nick>JC</nick><password>secret</password><state xmlns='http://myclient.example/bookmark/state' minimized='true'/></conference></storage>",
    );
    juliet.close();
  });

  it('keeps a legacy PEP node (XEP-0048 §3.3, #compat-pep) and the XEP-0402 node equal both ways', async () => {
    const { port } = await server();
    const juliet = await RawClient.login(port, 'juliet', 'balcony');
    const privateOptions =
      "<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>" +
      "<field var='pubsub#persist_items'><value>1</value></field><field var='pubsub#access_model'><value>whitelist</value></field></x></publish-options>";
    const publish2 = (jid: string, name: string) =>
      juliet.iq(
        'set',
        `<pubsub xmlns='${PUBSUB}'><publish node='${BOOKMARKS}'><item id='${jid}'><conference xmlns='${BOOKMARKS}' name='${name}'/></item></publish></pubsub>`,
      );
    const publishLegacy = (jids: string[]) =>
      juliet.iq(
        'set',
        `<pubsub xmlns='${PUBSUB}'><publish node='storage:bookmarks'><item id='current'><storage xmlns='storage:bookmarks'>${jids
          .map((jid) => `<conference jid='${jid}' autojoin='true'><nick>JC</nick></conference>`)
          .join('')}</storage></item></publish>${privateOptions}</pubsub>`,
      );
    const ids = async (): Promise<string[]> => {
      const items = await juliet.iq('get', `<pubsub xmlns='${PUBSUB}'><items node='${BOOKMARKS}'/></pubsub>`);
      return [...items.matchAll(/<item id='([^']+)'/g)].map((match) => match[1] as string).sort();
    };
    const legacyJids = async (): Promise<string[]> => {
      const items = await juliet.iq('get', `<pubsub xmlns='${PUBSUB}'><items node='storage:bookmarks'/></pubsub>`);
      return [...items.matchAll(/<conference jid='([^']+)'/g)].map((match) => match[1] as string).sort();
    };
    expect(await publish2('a@chat.example', 'A')).toMatch(/type='result'/);
    // The first legacy publish adds to what XEP-0402 clients stored (it could not see it).
    expect(await publishLegacy(['b@chat.example'])).toMatch(/type='result'/);
    expect(await ids()).toEqual(['a@chat.example', 'b@chat.example']);
    expect(await legacyJids()).toEqual(['a@chat.example', 'b@chat.example']);
    // An XEP-0402 publish shows in the legacy node.
    await publish2('c@chat.example', 'C');
    expect(await legacyJids()).toEqual(['a@chat.example', 'b@chat.example', 'c@chat.example']);
    // A later legacy publish is the whole list.
    await publishLegacy(['a@chat.example']);
    expect(await ids()).toEqual(['a@chat.example']);
    expect(await legacyJids()).toEqual(['a@chat.example']);
    const info = await juliet.iq('get', "<query xmlns='http://jabber.org/protocol/disco#info'/>", 'juliet@localhost');
    expect(info).toContain(`var='${BOOKMARKS}#compat-pep'`);
    juliet.close();
  });
});
