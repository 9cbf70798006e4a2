import { type Bus, BusEventEmitter, type BusEvents, type MemoryBus, memoryBus } from '@portbind/core';
import { describe, expect, it } from 'vitest';
import { memoryStorage } from '../src/index.js';
import { befriend, RawClient } from './pep-raw.js';
import { start } from './support.js';

// PEP on two processes (issue 12): two servers sharing a memoryBus (one "process" each: `bus.peer()`)
// and one store. What a process keeps in memory of the nodes — configurations read through ("no such
// node" included) and the last item of nodes that do not persist items — follows what another
// process changed: created, configured, deleted, published, retracted. When bus messages may have
// been lost, everything kept is dropped.

const PUBSUB = 'http://jabber.org/protocol/pubsub';
const NODE = 'urn:example:diary';

/** B's bus: module messages to B can be held back (as if lost on the way), and a `lost` event raised. */
function lossyPeer(bus: MemoryBus) {
  const inner = bus.peer();
  const events = new BusEventEmitter();
  let dropping = false;
  let dropped = 0;
  const lossy: Bus = {
    id: inner.id,
    get connected() {
      return inner.connected;
    },
    publish: (channel, data) => inner.publish(channel, data),
    subscribe: (channel, listener) =>
      inner.subscribe(channel, (message) => {
        if (dropping && channel.startsWith('xmpp:modules:')) {
          dropped++;
          return;
        }
        listener(message);
      }),
    psubscribe: (pattern, listener) => inner.psubscribe(pattern, listener),
    stream: (name) => inner.stream(name),
    presence: inner.presence,
    values: inner.values,
    on: (event, listener) => {
      const off = inner.on(event, listener);
      const offOwn = events.on(event, listener);
      return () => {
        off();
        offOwn();
      };
    },
    close: () => inner.close(),
  };
  return {
    bus: lossy,
    drop(on: boolean) {
      dropping = on;
    },
    get dropped() {
      return dropped;
    },
    lost(info: BusEvents['lost']) {
      events.emit('lost', info);
    },
  };
}

async function cluster(busB?: Bus) {
  const bus = memoryBus();
  const storage = memoryStorage();
  const a = await start({ server: { bus, storage } });
  const b = await start({ server: { bus: busB ?? bus.peer(), storage } });
  await a.server.cluster?.ready;
  await b.server.cluster?.ready;
  return { bus, storage, a, b };
}

/** Wait until `check` holds (other processes hear of changes asynchronously, as on Redis). */
async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
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

function configure(fields: Record<string, string>): string {
  return (
    `<pubsub xmlns='${PUBSUB}#owner'><configure node='${NODE}'><x xmlns='jabber:x:data' type='submit'>` +
    "<field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field>" +
    Object.entries(fields)
      .map(([name, value]) => `<field var='${name}'><value>${value}</value></field>`)
      .join('') +
    '</x></configure></pubsub>'
  );
}

const publish = (id: string, text: string, options = ''): string =>
  `<pubsub xmlns='${PUBSUB}'><publish node='${NODE}'><item id='${id}'><entry xmlns='${NODE}'>${text}</entry></item></publish>${options}</pubsub>`;

const getItems = `<pubsub xmlns='${PUBSUB}'><items node='${NODE}'/></pubsub>`;

describe('PEP on several processes (a shared bus and store)', () => {
  it('a node created, reconfigured (open → whitelist) and deleted on A: B answers each time as A does', async () => {
    const { a, b } = await cluster();
    const juliet = await RawClient.login(a.port, 'juliet', 'balcony', 'balcony');
    const romeo = await RawClient.login(b.port, 'romeo', 'r0meo!', 'garden');
    const readOnB = () => romeo.iq('get', getItems, 'juliet@localhost');

    // B reads the node missing (and keeps that in memory).
    const missing = await readOnB();
    expect(missing).toMatch(/type='error'/);
    expect(missing).toContain('<item-not-found');

    // Created on A (open): B reads its item, not its remembered "no such node".
    expect(await juliet.iq('set', publish('today', 'sunny', publishOptions({ 'pubsub#access_model': 'open' })))).toMatch(/type='result'/);
    await until(async () => (await readOnB()).includes('>sunny</entry>'), 'the node created on A, read on B');

    // Reconfigured on A: whitelist. B refuses romeo as A does (not-allowed + closed-node, XEP-0060 §6.5.9 / §12.1).
    expect(await juliet.iq('set', configure({ 'pubsub#access_model': 'whitelist' }))).toMatch(/type='result'/);
    await until(async () => (await readOnB()).includes('<closed-node'), 'the whitelist on B');
    const refused = await readOnB();
    expect(refused).toMatch(/type='error'/);
    expect(refused).toContain("<not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>");
    expect(refused).toContain("<closed-node xmlns='http://jabber.org/protocol/pubsub#errors'/>");
    // disco#info on B shows the node's new access model to its owner.
    const info = await juliet.iq('get', `<query xmlns='http://jabber.org/protocol/disco#info' node='${NODE}'/>`, 'juliet@localhost');
    expect(info).toContain('whitelist');

    // Deleted on A: B answers item-not-found.
    expect(await juliet.iq('set', `<pubsub xmlns='${PUBSUB}#owner'><delete node='${NODE}'/></pubsub>`)).toMatch(/type='result'/);
    await until(async () => (await readOnB()).includes('<item-not-found'), 'the deletion on B');
    // And created again on A (open): B reads the new one.
    expect(await juliet.iq('set', publish('again', 'cloudy', publishOptions({ 'pubsub#access_model': 'open' })))).toMatch(/type='result'/);
    await until(async () => (await readOnB()).includes('>cloudy</entry>'), 'the node created again, read on B');
    expect(await readOnB()).not.toContain('sunny');
  });

  it("max_items lowered on A: the owner's publishes through B keep that many items", async () => {
    const { a, b } = await cluster();
    const juliet = await RawClient.login(a.port, 'juliet', 'balcony', 'balcony');
    const phone = await RawClient.login(b.port, 'juliet', 'balcony', 'phone');
    const open = publishOptions({ 'pubsub#access_model': 'open', 'pubsub#max_items': '10' });
    expect(await phone.iq('set', publish('p0', 'zero', open))).toMatch(/type='result'/);
    // B keeps max_items 10 in memory; A lowers it to 2.
    await until(async () => (await juliet.iq('get', getItems)).includes('>zero</entry>'), 'the node on A');
    expect(await juliet.iq('set', configure({ 'pubsub#max_items': '2' }))).toMatch(/type='result'/);
    const maxItemsOnB = async (): Promise<string | undefined> => {
      const info = await phone.iq('get', `<query xmlns='http://jabber.org/protocol/disco#info' node='${NODE}'/>`, 'juliet@localhost');
      return /<field var='pubsub#max_items'[^>]*><value>(\d+)<\/value>/.exec(info)?.[1];
    };
    await until(async () => (await maxItemsOnB()) === '2', 'max_items 2 on B');
    for (const [id, text] of [
      ['p1', 'one'],
      ['p2', 'two'],
      ['p3', 'three'],
    ] as const)
      expect(await phone.iq('set', publish(id, text))).toMatch(/type='result'/);
    const items = await juliet.iq('get', getItems);
    expect(items.match(/<item /g)).toHaveLength(2);
    expect(items).toContain('>two</entry>');
    expect(items).toContain('>three</entry>');
  });

  it('the last item of a node that does not persist items, published on A, goes to a contact coming online on B; retracted or purged on A, gone on B', async () => {
    const { a, b } = await cluster();
    const juliet = await RawClient.login(a.port, 'juliet', 'balcony', 'balcony');
    const romeo = await RawClient.login(b.port, 'romeo', 'r0meo!', 'garden');
    await befriend(juliet, romeo);
    const volatile = publishOptions({ 'pubsub#persist_items': '0' });
    expect(await juliet.iq('set', publish('now', 'at the window', volatile))).toMatch(/type='result'/);
    // Not in the shared store: B holds it because A told it.
    await until(async () => (await romeo.iq('get', getItems, 'juliet@localhost')).includes('>at the window</entry>'), 'the last item on B');
    // A resource of romeo's coming online on B with +notify gets it (XEP-0163 §4.3.2), with its delay.
    const laptop = await RawClient.login(b.port, 'romeo', 'r0meo!', 'laptop');
    laptop.presence([`${NODE}+notify`]);
    const last = await laptop.next(/pubsub#event/);
    expect(last).toMatch(/^<message from='juliet@localhost' to='romeo@localhost\/laptop' type='headline'/);
    expect(last).toContain(`<items node='${NODE}'><item id='now'><entry xmlns='${NODE}'>at the window</entry></item></items>`);
    expect(last).toContain("<delay xmlns='urn:xmpp:delay'");

    // Retracted on A: B has no last item any more.
    expect(await juliet.iq('set', `<pubsub xmlns='${PUBSUB}'><retract node='${NODE}'><item id='now'/></retract></pubsub>`)).toMatch(
      /type='result'/,
    );
    await until(async () => !(await romeo.iq('get', getItems, 'juliet@localhost')).includes('<item '), 'the retraction on B');
    const after = await romeo.iq('get', getItems, 'juliet@localhost');
    expect(after).toMatch(/type='result'/);
    expect(after).toContain(`<items node='${NODE}'/>`);

    // Published again, then purged on A: gone on B too.
    expect(await juliet.iq('set', publish('later', 'in the garden'))).toMatch(/type='result'/);
    await until(async () => (await romeo.iq('get', getItems, 'juliet@localhost')).includes('>in the garden</entry>'), 'the new item on B');
    expect(await juliet.iq('set', `<pubsub xmlns='${PUBSUB}#owner'><purge node='${NODE}'/></pubsub>`)).toMatch(/type='result'/);
    await until(async () => !(await romeo.iq('get', getItems, 'juliet@localhost')).includes('<item '), 'the purge on B');
  });

  it('messages maybe lost on the bus (a lost event): B drops what it kept, and reads the nodes again', async () => {
    const bus = memoryBus();
    const lossy = lossyPeer(bus);
    const storage = memoryStorage();
    const a = await start({ server: { bus, storage } });
    const b = await start({ server: { bus: lossy.bus, storage } });
    await a.server.cluster?.ready;
    await b.server.cluster?.ready;
    const juliet = await RawClient.login(a.port, 'juliet', 'balcony', 'balcony');
    const romeo = await RawClient.login(b.port, 'romeo', 'r0meo!', 'garden');
    await befriend(juliet, romeo);
    const readOnB = () => romeo.iq('get', getItems, 'juliet@localhost');
    expect(await juliet.iq('set', publish('p', 'kept', publishOptions({ 'pubsub#access_model': 'open' })))).toMatch(/type='result'/);
    await until(async () => (await readOnB()).includes('>kept</entry>'), 'the node on B');
    // A non-persistent node's last item too (held on B in memory).
    expect(
      await juliet.iq(
        'set',
        `<pubsub xmlns='${PUBSUB}'><publish node='urn:example:mood'><item id='m'><mood xmlns='urn:example:mood'>calm</mood></item></publish>${publishOptions({ 'pubsub#persist_items': '0' })}</pubsub>`,
      ),
    ).toMatch(/type='result'/);
    const moodOnB = () => romeo.iq('get', `<pubsub xmlns='${PUBSUB}'><items node='urn:example:mood'/></pubsub>`, 'juliet@localhost');
    await until(async () => (await moodOnB()).includes('>calm</mood>'), 'the mood on B');

    // A's word on the whitelist never reaches B: B goes on answering from memory (the stale state this is about).
    lossy.drop(true);
    expect(await juliet.iq('set', configure({ 'pubsub#access_model': 'whitelist' }))).toMatch(/type='result'/);
    await until(() => lossy.dropped > 0, 'the message dropped on the way to B');
    expect(await readOnB()).toContain('>kept</entry>');
    lossy.drop(false);

    // The bus says messages may have been lost: B drops what it kept, reads the configuration again.
    const now = Date.now();
    lossy.lost({ kind: 'pubsub', reason: 'test', since: now - 1000, until: now, names: [] });
    const refused = await readOnB();
    expect(refused).toContain('<closed-node');
    // The last item not persisted is gone with it (nothing to read it from): none until the next publish.
    expect(await moodOnB()).toContain("<items node='urn:example:mood'/>");
  });
});
