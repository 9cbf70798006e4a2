import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from '@portbind/core';
import { afterEach, describe, expect, it } from 'vitest';
import { defaultModules, memoryStorage, sqliteStorage, type XmppStorage, xml } from '../src/index.js';
import type { ModuleApi, XmppModule } from '../src/module.js';
import { account } from '../src/modules/account.js';
import { buildDataForm, DataFormError, parseDataForm, parseSubmittedForm } from '../src/modules/data-form.js';
import { type MamOptions, mam } from '../src/modules/mam.js';
import { buildRsmAnswer, parseRsm } from '../src/modules/rsm.js';
import { parseXml } from '../src/parse.js';
import { ARCHIVE_COUNT, archivingPair, burstUntilBehind, lockedSqlite, saidBehind } from './pressure-support.js';
import { Raw } from './raw-stream.js';
import { capturingLogger, rawLogin, start } from './support.js';

// Message archive (XEP-0313) with RSM paging (XEP-0059) and stanza ids (XEP-0359): slixmpp's
// xep_0313 plugin pages through a real conversation; raw streams check what is archived for whom,
// every error case, preferences, retention and account removal against the storage itself.

const run = promisify(execFile);
const DAY = 86_400_000;

/** A module that only keeps its API, to route stanzas as the server does. */
function probe(): XmppModule & { api?: ModuleApi } {
  const module: XmppModule & { api?: ModuleApi } = {
    name: 'probe',
    setup(api) {
      module.api = api;
    },
  };
  return module;
}

async function server(options: MamOptions & { storage?: XmppStorage; logger?: Logger } = {}) {
  const storage = options.storage ?? memoryStorage();
  const archive = mam(options);
  const spy = probe();
  const started = await start({
    logger: options.logger,
    server: {
      storage,
      modules: [...defaultModules().filter((module) => module.name !== 'mam' && module.name !== 'account'), archive, account(), spy],
    },
    accounts: { mercutio: 'queen-mab' },
  });
  return { ...started, storage, archive, api: spy.api as ModuleApi };
}

const chat = (to: string, body: string, extra = '') =>
  `<message type='chat' to='${to}' id='m${Math.random().toString(36).slice(2)}'><body>${body}</body>${extra}</message>`;
const form = (fields: Record<string, string | string[]>, formType = 'urn:xmpp:mam:2', type = 'submit') =>
  `<x xmlns='jabber:x:data' type='${type}'><field var='FORM_TYPE' type='hidden'><value>${formType}</value></field>${Object.entries(fields)
    .map(
      ([name, value]) =>
        `<field var='${name}'>${(Array.isArray(value) ? value : [value]).map((v) => `<value>${v}</value>`).join('')}</field>`,
    )
    .join('')}</x>`;
const rsm = (inner: string) => `<set xmlns='http://jabber.org/protocol/rsm'>${inner}</set>`;
const query = (queryid: string, inner = '') => `<query xmlns='urn:xmpp:mam:2' queryid='${queryid}'>${inner}</query>`;
const condition = (reply: string) => /<([a-z-]+) xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'\/>/.exec(reply)?.[1];

/** Run a query over a raw stream: the result messages (in order) and the IQ answer. */
async function mamQuery(raw: Raw, queryid: string, inner = '', attrs = "type='set'") {
  const answer = await raw.iq(queryid, query(queryid, inner), attrs);
  const results = raw.take(new RegExp(`<result xmlns='urn:xmpp:mam:2' queryid='${queryid}'`));
  const ids = results.map((r) => /<result [^>]*id='([^']+)'/.exec(r.replace(/queryid='[^']*'/, ''))?.[1]);
  const bodies = results.map((r) => /<body>([^<]*)<\/body>/.exec(r)?.[1]);
  return { answer, results, ids, bodies };
}

/** Put items straight into the archive (for paging and time-range tests). */
async function seed(
  storage: XmppStorage,
  owner: string,
  count: number,
  options: { with?: (i: number) => string; when?: (i: number) => number } = {},
) {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const id = `seed-${String(i).padStart(4, '0')}`;
    const peer = options.with?.(i) ?? 'romeo@localhost';
    await storage.archive('mam').append(owner, {
      id,
      when: options.when?.(i) ?? Date.UTC(2026, 0, 1) + i * 1000,
      with: peer,
      xml: `<message xmlns='jabber:client' type='chat' from='${peer}/x' to='${owner}@localhost'><body>seed ${i}</body></message>`,
    });
    ids.push(id);
  }
  return ids;
}

describe('slixmpp (Debian python3-slixmpp, xep_0313)', () => {
  it('juliet pages through her archive with RSM, reads the last page, romeo iterates his: ids are the stanza-ids juliet saw live', async () => {
    const { port } = await server();
    const script = new URL('./slixmpp/mam.py', import.meta.url).pathname;
    const { stdout } = await run('/usr/bin/python3', [script, '127.0.0.1', String(port), '23', '10'], { timeout: 90_000 });
    const result = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as {
      live: Array<{ body: string; stanza_id: { by: string; id: string } | null }>;
      features: string[];
      pages: Array<{ results: Array<{ id: string; body: string; from: string; stamp: string }>; fin: Record<string, string | null> }>;
      last_page: { results: Array<{ id: string; body: string }>; fin: Record<string, string | null> };
      romeo: string[];
    };
    const lines = Array.from({ length: 23 }, (_, i) => `line ${i}`);
    expect(result.features).toEqual(expect.arrayContaining(['urn:xmpp:mam:2', 'urn:xmpp:mam:2#extended', 'urn:xmpp:sid:0']));
    // Live: every message carries juliet's stanza id — except the <no-store/> one, which is not archived.
    expect(result.live.map((m) => m.body)).toEqual(['forget me', ...lines]);
    expect(result.live[0]?.stanza_id).toBeNull();
    const liveIds = result.live.slice(1).map((m) => m.stanza_id);
    for (const sid of liveIds) expect(sid?.by).toBe('juliet@localhost');
    // Three pages of 10, 10 and 3; only the last says complete; each names its first, last and the count.
    expect(result.pages.map((page) => page.results.length)).toEqual([10, 10, 3]);
    expect(result.pages.map((page) => page.fin.complete)).toEqual([null, null, 'true']);
    expect(result.pages.map((page) => page.fin.count)).toEqual(['23', '23', '23']);
    const archived = result.pages.flatMap((page) => page.results);
    expect(archived.map((r) => r.body)).toEqual(lines);
    expect(archived.map((r) => r.id)).toEqual(liveIds.map((sid) => sid?.id));
    expect(new Set(archived.map((r) => r.id)).size).toBe(23);
    for (const page of result.pages) {
      expect(page.fin.first).toBe(page.results[0]?.id);
      expect(page.fin.last).toBe(page.results[page.results.length - 1]?.id);
    }
    for (const r of archived) {
      expect(r.from).toBe('romeo@localhost/slix');
      expect(r.stamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
    }
    // The last page (empty <before/>): the newest three, oldest first.
    expect(result.last_page.results.map((r) => r.body)).toEqual(['line 20', 'line 21', 'line 22']);
    expect(result.last_page.fin.complete).toBeNull();
    // Romeo's own archive holds what he sent (not the chat state, not the <no-store/> message).
    expect(result.romeo).toEqual(lines);
  });
});

describe('message archive (XEP-0313)', () => {
  it('archives for both parties; the recipient copy carries her stanza id (a spoofed one is stripped), the sender copy none', async () => {
    const { port, storage } = await server();
    const juliet = await Raw.login(port, 'juliet', 'balcony', 'balcony');
    const romeo = await Raw.login(port, 'romeo', 'r0meo!', 'orchard');
    juliet.send('<presence/>');
    romeo.send('<presence/>');
    await juliet.sync();
    romeo.send(
      chat(
        'juliet@localhost',
        'Did my heart love till now?',
        "<stanza-id xmlns='urn:xmpp:sid:0' by='juliet@localhost' id='spoofed'/><stanza-id xmlns='urn:xmpp:sid:0' by='romeo@localhost' id='mine'/>",
      ),
    );
    const delivered = await juliet.next(/Did my heart love till now/);
    const sids = [...delivered.matchAll(/<stanza-id xmlns='urn:xmpp:sid:0' by='([^']+)' id='([^']+)'\/>/g)].map((m) => ({
      by: m[1],
      id: m[2],
    }));
    expect(sids).toHaveLength(1);
    expect(sids[0]?.by).toBe('juliet@localhost');
    expect(sids[0]?.id).not.toBe('spoofed');

    const hers = await storage.archive('mam').query('juliet');
    expect(hers.items.map((item) => [item.id, item.with])).toEqual([[sids[0]?.id, 'romeo@localhost']]);
    expect(hers.items[0]?.xml).toContain("from='romeo@localhost/orchard'");
    const his = await storage.archive('mam').query('romeo');
    expect(his.items.map((item) => item.with)).toEqual(['juliet@localhost']);
    expect(his.items[0]?.id).not.toBe(sids[0]?.id);
    // No stanza id survives in either archive copy (they are added on delivery).
    expect(his.items[0]?.xml).not.toContain('stanza-id');
    expect(hers.items[0]?.xml).not.toContain('stanza-id');

    // Juliet's query answers with the id she saw; the forwarded message is in jabber:client with a delay.
    const { results, ids, answer } = await mamQuery(juliet, 'q1');
    expect(ids).toEqual([sids[0]?.id]);
    expect(results[0]).toContain("<forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' stamp='");
    expect(results[0]).toMatch(/<message [^>]*xmlns='jabber:client'/);
    expect(answer).toMatch(/<fin xmlns='urn:xmpp:mam:2' queryid='q1' complete='true'>/);

    // A message to oneself is archived once; chat states alone, errors, headlines and groupchat are not.
    juliet.send(chat('juliet@localhost', 'note to self'));
    juliet.send("<message type='chat' to='romeo@localhost'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>");
    juliet.send("<message type='headline' to='romeo@localhost'><body>headline</body></message>");
    juliet.send("<message type='error' to='romeo@localhost'><body>error</body></message>");
    juliet.send("<message type='normal' to='romeo@localhost'><body>normal</body><no-permanent-store xmlns='urn:xmpp:hints'/></message>");
    juliet.send("<message to='romeo@localhost'><body>a normal one</body></message>");
    await romeo.next(/a normal one/);
    await juliet.sync();
    const after = await storage.archive('mam').query('juliet');
    expect(after.items.map((item) => /<body>([^<]*)</.exec(item.xml)?.[1])).toEqual([
      'Did my heart love till now?',
      'note to self',
      'a normal one',
    ]);
    expect((await storage.archive('mam').query('romeo')).items.map((item) => /<body>([^<]*)</.exec(item.xml)?.[1])).toEqual([
      'Did my heart love till now?',
      'a normal one',
    ]);
  });

  it("carbons carry the archive's stanza id: a sent copy the sender's, a received copy the recipient's; the contact never sees the sender's", async () => {
    const { port, storage } = await server();
    const phone = await Raw.login(port, 'juliet', 'balcony', 'phone');
    const laptop = await Raw.login(port, 'juliet', 'balcony', 'laptop');
    const romeo = await Raw.login(port, 'romeo', 'r0meo!', 'orchard');
    for (const raw of [phone, laptop, romeo]) raw.send('<presence/>');
    expect(await laptop.iq('c', "<enable xmlns='urn:xmpp:carbons:2'/>")).toMatch(/type='result'/);
    await phone.sync();

    phone.send(chat('romeo@localhost', 'sent from the phone'));
    const toRomeo = await romeo.next(/sent from the phone/);
    const sent = await laptop.next(/<sent xmlns='urn:xmpp:carbons:2'>/);
    const julietIds = (await storage.archive('mam').query('juliet')).items.map((item) => item.id);
    const romeoIds = (await storage.archive('mam').query('romeo')).items.map((item) => item.id);
    expect(sent).toContain(`<stanza-id xmlns='urn:xmpp:sid:0' by='juliet@localhost' id='${julietIds[0]}'/>`);
    expect([...toRomeo.matchAll(/<stanza-id [^>]*by='([^']+)' id='([^']+)'/g)].map((m) => [m[1], m[2]])).toEqual([
      ['romeo@localhost', romeoIds[0]],
    ]);

    romeo.send(chat('juliet@localhost/phone', 'to the phone'));
    await phone.next(/to the phone/);
    const received = await laptop.next(/<received xmlns='urn:xmpp:carbons:2'>/);
    const latest = (await storage.archive('mam').query('juliet', { before: '', max: 1 })).items[0];
    expect(received).toContain(`<stanza-id xmlns='urn:xmpp:sid:0' by='juliet@localhost' id='${latest?.id}'/>`);
    expect(received).not.toContain("by='romeo@localhost'");
  });

  it('a message refused by blocking (XEP-0191) is not in the archive that refused it', async () => {
    const { port, storage } = await server();
    const juliet = await Raw.login(port, 'juliet', 'balcony', 'balcony');
    const romeo = await Raw.login(port, 'romeo', 'r0meo!', 'orchard');
    juliet.send('<presence/>');
    romeo.send('<presence/>');
    expect(await juliet.iq('b', "<block xmlns='urn:xmpp:blocking'><item jid='romeo@localhost'/></block>")).toMatch(/type='result'/);
    romeo.send(chat('juliet@localhost', 'let me in'));
    juliet.send(chat('romeo@localhost', 'go away'));
    // Her own message to a contact she blocks is refused before it is archived.
    expect(condition(await juliet.next(/^<message[^>]*type='error'/))).toBe('not-acceptable');
    await romeo.sync();
    await juliet.sync();
    expect((await storage.archive('mam').query('juliet')).items).toEqual([]);
    expect(juliet.take(/let me in/)).toEqual([]);
  });

  it('a message routed again (stream management redelivery) is archived once', async () => {
    const { port, storage, api } = await server();
    const juliet = await Raw.login(port, 'juliet', 'balcony', 'balcony');
    juliet.send('<presence/>');
    await juliet.sync();
    const stanza = () =>
      xml(
        'message',
        { type: 'chat', from: 'romeo@localhost/orchard', to: 'juliet@localhost/balcony', id: 'again' },
        xml('body', {}, 'once'),
      );
    await api.route(stanza());
    const first = await juliet.next(/id='again'/);
    await api.route(stanza(), { redelivery: true });
    const second = await juliet.next(/id='again'/);
    expect(first).toContain("by='juliet@localhost'");
    expect(second).not.toContain('stanza-id');
    expect((await storage.archive('mam').query('juliet')).items).toHaveLength(1);
  });

  it.each([
    ['memory', memoryStorage],
    ['SQLite', () => sqliteStorage({ file: ':memory:' })],
  ] as const)(
    'queries on %s storage: with, start/end, after-id/before-id/ids, RSM after/before, max 0 counts, flip-page, a million capped',
    async (_name, makeStorage) => {
      const { port, storage } = await server({ maxPageSize: 250, storage: makeStorage() });
      const ids = await seed(storage, 'juliet', 300, {
        with: (i) => (i % 3 === 0 ? 'mercutio@localhost' : 'romeo@localhost'),
        when: (i) => Date.UTC(2026, 0, 1) + i * 3_600_000,
      });
      const juliet = await Raw.login(port, 'juliet', 'balcony', 'balcony');

      // A million is capped to the server's page (250), and the page is not complete.
      const big = await mamQuery(juliet, 'big', rsm('<max>1000000</max>'));
      expect(big.results).toHaveLength(250);
      expect(big.answer).not.toContain("complete='true'");
      expect(big.answer).toContain('<count>300</count>');
      // No <set/>: the default page (50).
      expect((await mamQuery(juliet, 'default')).results).toHaveLength(50);

      // with: only mercutio's (every third).
      const withMercutio = await mamQuery(juliet, 'with', form({ with: 'mercutio@localhost' }) + rsm('<max>5</max>'));
      expect(withMercutio.ids).toEqual([ids[0], ids[3], ids[6], ids[9], ids[12]]);
      expect(withMercutio.answer).toContain('<count>100</count>');

      // start/end: inclusive bounds, XEP-0082 with an offset too.
      const range = await mamQuery(juliet, 'range', form({ start: '2026-01-01T10:00:00Z', end: '2026-01-01T14:00:00+02:00' }));
      expect(range.ids).toEqual(ids.slice(10, 13));
      expect(range.answer).toContain("complete='true'");

      // #extended: after-id + before-id (between two), ids (exactly those).
      const between = await mamQuery(juliet, 'between', form({ 'after-id': ids[4] as string, 'before-id': ids[8] as string }));
      expect(between.ids).toEqual(ids.slice(5, 8));
      const some = await mamQuery(juliet, 'some', form({ ids: [ids[7] as string, ids[2] as string] }));
      expect(some.ids).toEqual([ids[2], ids[7]]);

      // RSM paging backwards: <before>id</before> is the page just before it; <before/> the last page.
      const before = await mamQuery(juliet, 'before', rsm(`<max>3</max><before>${ids[100]}</before>`));
      expect(before.ids).toEqual(ids.slice(97, 100));
      const lastPage = await mamQuery(juliet, 'last', rsm('<max>2</max><before/>'));
      expect(lastPage.ids).toEqual(ids.slice(298));
      expect(lastPage.answer).toContain(`<first>${ids[298]}</first><last>${ids[299]}</last>`);
      const afterPage = await mamQuery(juliet, 'after', rsm(`<max>2</max><after>${ids[297]}</after>`));
      expect(afterPage.ids).toEqual(ids.slice(298));
      expect(afterPage.answer).toContain("complete='true'");

      // max 0: the count alone.
      const count = await mamQuery(juliet, 'count', form({ with: 'romeo@localhost' }) + rsm('<max>0</max>'));
      expect(count.results).toEqual([]);
      expect(count.answer).toContain('<count>200</count>');
      expect(count.answer).not.toContain('<first');

      // flip-page: the same page, newest first; fin names it as ever.
      const flipped = await mamQuery(juliet, 'flip', `${rsm('<max>3</max><before/>')}<flip-page/>`);
      expect(flipped.ids).toEqual([ids[299], ids[298], ids[297]]);
      expect(flipped.answer).toContain(`<first>${ids[297]}</first><last>${ids[299]}</last>`);
    },
  );

  it('bad input gets its stanza error and the stream lives on: malformed forms, unknown ids, RSM, another user’s archive, prefs', async () => {
    const { port, storage } = await server();
    const ids = await seed(storage, 'juliet', 3);
    const juliet = await Raw.login(port, 'juliet', 'balcony', 'balcony');
    const cases: Array<[string, string, string, string?]> = [
      ['noform', query('noform', form({ with: 'romeo@localhost' }, 'urn:example:other')), 'bad-request'],
      ['formtype', query('formtype', form({ with: 'romeo@localhost' }, 'urn:xmpp:mam:2', 'form')), 'bad-request'],
      ['novar', query('novar', "<x xmlns='jabber:x:data' type='submit'><field><value>x</value></field></x>"), 'bad-request'],
      [
        'twice',
        query(
          'twice',
          `<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:xmpp:mam:2</value></field><field var='with'><value>a@localhost</value></field><field var='with'><value>b@localhost</value></field></x>`,
        ),
        'bad-request',
      ],
      ['badjid', query('badjid', form({ with: '@localhost' })), 'bad-request'],
      ['twojids', query('twojids', form({ with: ['romeo@localhost', 'mercutio@localhost'] })), 'bad-request'],
      ['badtime', query('badtime', form({ start: 'yesterday' })), 'bad-request'],
      ['badmonth', query('badmonth', form({ end: '2026-13-01T00:00:00Z' })), 'bad-request'],
      ['unknownfield', query('unknownfield', form({ '{urn:example}fulltext': 'love' })), 'feature-not-implemented'],
      ['after', query('after', rsm('<after>no-such-id</after>')), 'item-not-found'],
      ['before', query('before', rsm('<before>no-such-id</before>')), 'item-not-found'],
      ['afterid', query('afterid', form({ 'after-id': 'no-such-id' })), 'item-not-found'],
      ['ids', query('ids', form({ ids: [ids[0] as string, 'no-such-id'] })), 'item-not-found'],
      ['maxnan', query('maxnan', rsm('<max>many</max>')), 'bad-request'],
      ['maxneg', query('maxneg', rsm('<max>-1</max>')), 'bad-request'],
      ['emptyafter', query('emptyafter', rsm('<after/>')), 'bad-request'],
      ['index', query('index', rsm('<max>1</max><index>2</index>')), 'feature-not-implemented'],
      ['longid', query('x'.repeat(300)), 'bad-request'],
      // Another account's archive: the server answers for romeo as for any unsupported IQ (RFC 6121 §8.5.1).
      ['other', query('other'), 'service-unavailable', "type='set' to='romeo@localhost'"],
      ['nouser', query('nouser'), 'service-unavailable', "type='set' to='tybalt@localhost'"],
      ['prefsdefault', "<prefs xmlns='urn:xmpp:mam:2' default='sometimes'/>", 'bad-request'],
      ['prefsjid', "<prefs xmlns='urn:xmpp:mam:2' default='always'><always><jid>@@</jid></always></prefs>", 'jid-malformed'],
      ['otherprefs', "<prefs xmlns='urn:xmpp:mam:2'/>", 'service-unavailable', "type='get' to='romeo@localhost'"],
    ];
    for (const [id, body, expected, attrs] of cases) {
      const reply = await juliet.iq(id, body, attrs);
      expect(reply, id).toContain("type='error'");
      expect(condition(reply), id).toBe(expected);
    }
    // Nothing was sent for the refused queries, and the stream still answers a good one.
    expect(juliet.take(/<result xmlns='urn:xmpp:mam:2'/)).toEqual([]);
    expect((await mamQuery(juliet, 'fine')).ids).toEqual(ids);
  });

  it('form discovery, archive metadata and account disco', async () => {
    const { port, storage } = await server();
    const juliet = await Raw.login(port, 'juliet', 'balcony', 'balcony');
    const fields = await juliet.iq('f', "<query xmlns='urn:xmpp:mam:2'/>", "type='get'");
    expect(fields).toContain("<x xmlns='jabber:x:data' type='form'>");
    expect(fields).toContain("<field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>");
    for (const name of ['with', 'start', 'end', 'before-id', 'after-id', 'ids']) expect(fields).toContain(`var='${name}'`);
    expect(fields).toContain("<validate xmlns='http://jabber.org/protocol/xdata-validate' datatype='xs:string'><open/></validate>");
    expect(fields).not.toContain('<required');

    expect(await juliet.iq('m0', "<metadata xmlns='urn:xmpp:mam:2'/>", "type='get'")).toContain("<metadata xmlns='urn:xmpp:mam:2'/>");
    const ids = await seed(storage, 'juliet', 4);
    const metadata = await juliet.iq('m1', "<metadata xmlns='urn:xmpp:mam:2'/>", "type='get'");
    expect(metadata).toContain(`<start id='${ids[0]}' timestamp='2026-01-01T00:00:00Z'/>`);
    expect(metadata).toContain(`<end id='${ids[3]}' timestamp='2026-01-01T00:00:03Z'/>`);

    const disco = await juliet.iq('d', "<query xmlns='http://jabber.org/protocol/disco#info'/>", "type='get' to='juliet@localhost'");
    for (const feature of ['urn:xmpp:mam:2', 'urn:xmpp:mam:2#extended', 'urn:xmpp:sid:0'])
      expect(disco).toContain(`<feature var='${feature}'/>`);
  });

  it("preferences: 'never' for a contact keeps his messages out (no stanza id), an always-list wins over default 'never'", async () => {
    const { port, storage } = await server();
    const juliet = await Raw.login(port, 'juliet', 'balcony', 'balcony');
    const romeo = await Raw.login(port, 'romeo', 'r0meo!', 'orchard');
    const mercutio = await Raw.login(port, 'mercutio', 'queen-mab', 'street');
    for (const raw of [juliet, romeo, mercutio]) raw.send('<presence/>');
    await juliet.sync();
    // Defaults: always, empty lists.
    expect(await juliet.iq('p0', "<prefs xmlns='urn:xmpp:mam:2'/>", "type='get'")).toContain(
      "<prefs xmlns='urn:xmpp:mam:2' default='always'><always/><never/></prefs>",
    );
    const set = await juliet.iq(
      'p1',
      "<prefs xmlns='urn:xmpp:mam:2' default='always'><always/><never><jid>romeo@localhost</jid></never></prefs>",
    );
    expect(set).toContain("<prefs xmlns='urn:xmpp:mam:2' default='always'><always/><never><jid>romeo@localhost</jid></never></prefs>");
    expect(await juliet.iq('p2', "<prefs xmlns='urn:xmpp:mam:2'/>", "type='get'")).toContain('<never><jid>romeo@localhost</jid></never>');

    romeo.send(chat('juliet@localhost', 'from romeo'));
    mercutio.send(chat('juliet@localhost', 'from mercutio'));
    expect(await juliet.next(/from romeo/)).not.toContain('stanza-id');
    expect(await juliet.next(/from mercutio/)).toContain("<stanza-id xmlns='urn:xmpp:sid:0' by='juliet@localhost'");
    juliet.send(chat('romeo@localhost', 'to romeo'));
    await romeo.next(/to romeo/);
    const hers = await storage.archive('mam').query('juliet');
    expect(hers.items.map((item) => item.with)).toEqual(['mercutio@localhost']);
    // Romeo's own preferences (the default) still archive on his side.
    expect((await storage.archive('mam').query('romeo')).items).toHaveLength(2);

    // Default never, with romeo always.
    await juliet.iq('p3', "<prefs xmlns='urn:xmpp:mam:2' default='never'><always><jid>romeo@localhost</jid></always><never/></prefs>");
    romeo.send(chat('juliet@localhost', 'romeo again'));
    mercutio.send(chat('juliet@localhost', 'mercutio again'));
    expect(await juliet.next(/romeo again/)).toContain('stanza-id');
    expect(await juliet.next(/mercutio again/)).not.toContain('stanza-id');
    expect((await storage.archive('mam').query('juliet')).items.map((item) => item.with)).toEqual([
      'mercutio@localhost',
      'romeo@localhost',
    ]);
    expect(await storage.keyValue('mam-prefs').get('juliet', 'prefs')).toEqual({
      default: 'never',
      always: ['romeo@localhost'],
      never: [],
    });
  });

  it("preferences: 'roster' archives contacts in the roster only (and oneself)", async () => {
    const { port, storage } = await server();
    const juliet = await Raw.login(port, 'juliet', 'balcony', 'balcony');
    const romeo = await Raw.login(port, 'romeo', 'r0meo!', 'orchard');
    const mercutio = await Raw.login(port, 'mercutio', 'queen-mab', 'street');
    for (const raw of [juliet, romeo, mercutio]) raw.send('<presence/>');
    expect(await juliet.iq('r', "<query xmlns='jabber:iq:roster'><item jid='romeo@localhost'/></query>")).toMatch(/type='result'/);
    await juliet.iq('p', "<prefs xmlns='urn:xmpp:mam:2' default='roster'/>");
    romeo.send(chat('juliet@localhost', 'a contact'));
    mercutio.send(chat('juliet@localhost', 'a stranger'));
    juliet.send(chat('juliet@localhost', 'myself'));
    expect(await juliet.next(/a contact/)).toContain('stanza-id');
    expect(await juliet.next(/a stranger/)).not.toContain('stanza-id');
    expect(await juliet.next(/myself/)).toContain('stanza-id');
    expect((await storage.archive('mam').query('juliet')).items.map((item) => item.with)).toEqual(['romeo@localhost', 'juliet@localhost']);
  });

  it('a message to an offline account is archived when it arrives and delivered later with the same stanza id', async () => {
    const { port, storage } = await server();
    const romeo = await Raw.login(port, 'romeo', 'r0meo!', 'orchard');
    romeo.send(chat('juliet@localhost', 'while you slept'));
    await romeo.sync();
    const archived = (await storage.archive('mam').query('juliet')).items;
    expect(archived).toHaveLength(1);
    const juliet = await Raw.login(port, 'juliet', 'balcony', 'balcony');
    juliet.send('<presence/>');
    const delivered = await juliet.next(/while you slept/);
    expect(delivered).toContain(`<stanza-id xmlns='urn:xmpp:sid:0' by='juliet@localhost' id='${archived[0]?.id}'/>`);
    expect(delivered).toContain("<delay xmlns='urn:xmpp:delay'");
    expect((await storage.archive('mam').query('juliet')).items).toHaveLength(1);
  });

  it('retention: the timer expires items older than retentionDays, from both archives', async () => {
    let clock = Date.UTC(2026, 5, 1);
    const { port, storage } = await server({ retentionDays: 2, expireIntervalMs: 20, now: () => clock });
    const juliet = await Raw.login(port, 'juliet', 'balcony', 'balcony');
    const romeo = await Raw.login(port, 'romeo', 'r0meo!', 'orchard');
    juliet.send('<presence/>');
    await juliet.sync();
    romeo.send(chat('juliet@localhost', 'old news'));
    await juliet.next(/old news/);
    clock += 1.5 * DAY;
    romeo.send(chat('juliet@localhost', 'fresh news'));
    await juliet.next(/fresh news/);
    expect((await storage.archive('mam').query('juliet')).items).toHaveLength(2);
    // Past two days for the first: the timer (every 20 ms) deletes it, from both archives.
    clock += 0.75 * DAY;
    const deadline = Date.now() + 10_000;
    while ((await storage.archive('mam').query('juliet')).items.length > 1 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    const left = await mamQuery(juliet, 'left');
    expect(left.bodies).toEqual(['fresh news']);
    expect((await storage.archive('mam').query('romeo')).items.map((item) => /<body>([^<]*)</.exec(item.xml)?.[1])).toEqual(['fresh news']);
  });

  it('retention: expire() deletes what is past retentionDays across accounts, and returns how many', async () => {
    const clock = Date.UTC(2026, 0, 10);
    // The timer runs hourly here: only the direct call deletes.
    const { storage, archive } = await server({ retentionDays: 3, now: () => clock });
    await seed(storage, 'juliet', 6, { when: (i) => clock - (6 - i) * DAY });
    await seed(storage, 'romeo', 2, { when: (i) => clock - (5 - i * 4) * DAY });
    expect(await archive.expire()).toBe(4);
    expect((await storage.archive('mam').query('juliet')).items.map((item) => item.when)).toEqual([
      clock - 3 * DAY,
      clock - 2 * DAY,
      clock - DAY,
    ]);
    expect((await storage.archive('mam').query('romeo')).items.map((item) => item.when)).toEqual([clock - DAY]);
    expect(await archive.expire()).toBe(0);
    expect(await mam({ retentionDays: null }).expire()).toBe(0);
  });

  it('options are checked when the module is made', () => {
    expect(() => mam({ retentionDays: 0 })).toThrow(expect.objectContaining({ code: 'PB_ERR_XMPP_OPTION' }));
    expect(() => mam({ maxPageSize: 10, defaultPageSize: 20 })).toThrow(expect.objectContaining({ code: 'PB_ERR_XMPP_OPTION' }));
    expect(() => mam({ defaultPolicy: 'sometimes' as never })).toThrow(/defaultPolicy/);
    expect(mam({ retentionDays: null }).name).toBe('mam');
  });

  it('removing the account deletes its archive and preferences', async () => {
    const { port, storage } = await server();
    await seed(storage, 'juliet', 5);
    await seed(storage, 'romeo', 2);
    await storage.keyValue('mam-prefs').set('juliet', 'prefs', { default: 'never', always: [], never: [] });
    const juliet = await Raw.login(port, 'juliet', 'balcony', 'balcony');
    expect(await juliet.iq('rm', "<query xmlns='jabber:iq:register'><remove/></query>")).toMatch(/type='result'/);
    const deadline = Date.now() + 10_000;
    while ((await storage.archive('mam').query('juliet')).items.length > 0 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    expect((await storage.archive('mam').query('juliet')).items).toEqual([]);
    expect(await storage.keyValue('mam-prefs').get('juliet', 'prefs')).toBeUndefined();
    expect((await storage.archive('mam').query('romeo')).items).toHaveLength(2);
  });

  it('the archive survives a restart on the SQLite file (waitForArchive): same ids, same order, prefs kept', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'portbind-mam-'));
    try {
      const file = join(dir, 'xmpp.sqlite');
      const first = await server({ storage: sqliteStorage({ file }), waitForArchive: true });
      const juliet = await Raw.login(first.port, 'juliet', 'balcony', 'balcony');
      const romeo = await Raw.login(first.port, 'romeo', 'r0meo!', 'orchard');
      juliet.send('<presence/>');
      await juliet.sync();
      await juliet.iq('p', "<prefs xmlns='urn:xmpp:mam:2' default='roster'><always><jid>romeo@localhost</jid></always><never/></prefs>");
      const seen: string[] = [];
      for (const body of ['one', 'two', 'three']) {
        romeo.send(chat('juliet@localhost', body));
        const delivered = await juliet.next(new RegExp(`<body>${body}</body>`));
        seen.push(/<stanza-id xmlns='urn:xmpp:sid:0' by='juliet@localhost' id='([^']+)'/.exec(delivered)?.[1] as string);
      }
      await first.service.stop();

      const second = await server({ storage: sqliteStorage({ file }) });
      const again = await Raw.login(second.port, 'juliet', 'balcony', 'phone');
      const { ids, bodies } = await mamQuery(again, 'after-restart', form({ with: 'romeo@localhost' }));
      expect(bodies).toEqual(['one', 'two', 'three']);
      expect(ids).toEqual(seen);
      expect(await again.iq('p2', "<prefs xmlns='urn:xmpp:mam:2'/>", "type='get'")).toContain(
        "<prefs xmlns='urn:xmpp:mam:2' default='roster'><always><jid>romeo@localhost</jid></always><never/></prefs>",
      );
      await second.service.stop();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it.each([false, true])(
    'a failing archive write (waitForArchive %s) is logged, then counted for 10 s, not logged per message; the message is delivered all the same',
    async (waitForArchive) => {
      const storage = memoryStorage();
      const broken: XmppStorage = {
        users: storage.users,
        keyValue: (name) => storage.keyValue(name),
        archive: (name) => {
          const store = storage.archive(name);
          return name === 'mam' ? { ...bind(store), append: () => Promise.reject(new Error('disk full')) } : store;
        },
        close: () => storage.close(),
      };
      let clock = Date.now();
      const logger = capturingLogger();
      const { port } = await server({ storage: broken, waitForArchive, now: () => clock, logger });
      const juliet = await Raw.login(port, 'juliet', 'balcony', 'balcony');
      const romeo = await Raw.login(port, 'romeo', 'r0meo!', 'orchard');
      juliet.send('<presence/>');
      await juliet.sync();
      const failures = () => logger.lines.filter((line) => line.level === 'error' && line.message?.startsWith('XMPP MAM:'));
      for (const body of ['still here', 'and here', 'here too']) {
        romeo.send(chat('juliet@localhost', body));
        const delivered = await juliet.next(new RegExp(body));
        if (waitForArchive) expect(delivered).not.toContain('stanza-id');
        else expect(delivered).toContain("by='juliet@localhost'");
      }
      expect(romeo.take(/type='error'/)).toEqual([]);
      await romeo.sync();
      // Three messages, each with the sender's and the recipient's copy failing: one line, with the error.
      expect(failures()).toHaveLength(1);
      expect(failures()[0]?.message).toBe('XMPP MAM: archiving a message failed');
      expect(String(failures()[0]?.fields.err)).toContain('disk full');
      // Ten seconds on, the next failure is logged with how many were not.
      clock += 10_000;
      romeo.send(chat('juliet@localhost', 'later'));
      await juliet.next(/later/);
      await romeo.sync();
      expect(failures()).toHaveLength(2);
      const counted = failures()[1]?.fields.failedBefore as number;
      if (waitForArchive) expect(counted).toBeGreaterThanOrEqual(2);
      else expect(counted).toBe(5);
    },
  );
});

/** An archive store's methods bound to it (to override one). */
function bind(store: ReturnType<XmppStorage['archive']>): ReturnType<XmppStorage['archive']> {
  return {
    append: store.append.bind(store),
    query: store.query.bind(store),
    delete: store.delete.bind(store),
    trim: store.trim.bind(store),
    expire: store.expire.bind(store),
  };
}

describe('data forms (XEP-0004) and result set management (XEP-0059)', () => {
  const parse = (text: string) => parseXml(text) as NonNullable<ReturnType<typeof parseXml>>;
  const submitted = (fields: string, type = 'submit') => parse(`<x xmlns='jabber:x:data' type='${type}'>${fields}</x>`);
  const FORM_TYPE = "<field var='FORM_TYPE' type='hidden'><value>urn:example:form</value></field>";

  it('parses a submitted form: FORM_TYPE, values, booleans, JIDs; builds form and result elements', () => {
    const form = parseSubmittedForm(
      submitted(
        `${FORM_TYPE}<field var='flag' type='boolean'><value>true</value></field><field var='who' type='jid-multi'><value>a@b</value><value>c@d/e</value></field><field var='name'><value>x</value></field><field type='fixed'><value>label</value></field>`,
      ),
      'urn:example:form',
      { allowed: ['flag', 'who', 'name'] },
    );
    expect(form.formType).toBe('urn:example:form');
    expect(form.boolean('flag')).toBe(true);
    expect(form.values('who')).toEqual(['a@b', 'c@d/e']);
    expect(form.value('name')).toBe('x');
    expect(form.jid('name')?.toString()).toBe('x');
    expect(form.value('absent')).toBeUndefined();
    expect(() => form.value('who')).toThrow(DataFormError);
    const built = buildDataForm({
      type: 'result',
      formType: 'urn:example:form',
      title: 'T',
      fields: [{ var: 'a', type: 'list-single', label: 'A', required: true, values: ['1'], options: [{ value: '1', label: 'one' }] }],
    }).toString();
    expect(built).toBe(
      "<x xmlns='jabber:x:data' type='result'><title>T</title><field var='FORM_TYPE' type='hidden'><value>urn:example:form</value></field><field var='a' type='list-single' label='A'><required/><value>1</value><option label='one'><value>1</value></option></field></x>",
    );
  });

  it('refuses malformed forms with bad-request', () => {
    for (const [name, x] of [
      ['not a form', parse("<x xmlns='urn:example'/>")],
      ['type form', submitted(FORM_TYPE, 'form')],
      ['no type', parse(`<x xmlns='jabber:x:data'>${FORM_TYPE}</x>`)],
      ['no var', submitted(`${FORM_TYPE}<field><value>1</value></field>`)],
      ['twice', submitted(`${FORM_TYPE}<field var='a'/><field var='a'/>`)],
      ['two FORM_TYPEs', submitted(FORM_TYPE + FORM_TYPE)],
      ['FORM_TYPE not hidden', submitted("<field var='FORM_TYPE' type='text-single'><value>urn:example:form</value></field>")],
      ['unknown type', submitted(`${FORM_TYPE}<field var='a' type='text-huge'/>`)],
      ['two values, single', submitted(`${FORM_TYPE}<field var='a' type='text-single'><value>1</value><value>2</value></field>`)],
      ['boolean', submitted(`${FORM_TYPE}<field var='a' type='boolean'><value>yes</value></field>`)],
      ['jid', submitted(`${FORM_TYPE}<field var='a' type='jid-single'><value>@x</value></field>`)],
      ['too many fields', submitted(`${FORM_TYPE}<field var='f1'/><field var='f2'/>`)],
    ] as const) {
      const options = name === 'too many fields' ? { maxFields: 2 } : {};
      expect(() => parseDataForm(x, options), name).toThrow(expect.objectContaining({ condition: 'bad-request' }));
    }
    expect(() => parseSubmittedForm(submitted(FORM_TYPE), 'urn:example:other')).toThrow(DataFormError);
    expect(() => parseSubmittedForm(submitted(''), 'urn:example:form')).toThrow(DataFormError);
    expect(parseSubmittedForm(submitted(''), 'urn:example:form', { formTypeOptional: true }).formType).toBeUndefined();
    expect(() => parseSubmittedForm(submitted(`${FORM_TYPE}<field var='z'/>`), 'urn:example:form', { allowed: ['a'] })).toThrow(
      DataFormError,
    );
  });

  it('parses RSM requests with a capped max and builds answers', () => {
    const set = (inner: string) => parse(`<set xmlns='http://jabber.org/protocol/rsm'>${inner}</set>`);
    const limits = { defaultMax: 20, maxCap: 100 };
    expect(parseRsm(undefined, limits)).toEqual({ max: 20, maxGiven: false });
    expect(parseRsm(set('<max>1000000</max><after>x</after>'), limits)).toEqual({ max: 100, maxGiven: true, after: 'x' });
    expect(parseRsm(set('<max>0</max><before/>'), limits)).toEqual({ max: 0, maxGiven: true, before: '' });
    expect(parseRsm(set('<index>3</index>'), limits)).toEqual({ max: 20, maxGiven: false, index: 3 });
    for (const bad of [
      '<max>ten</max>',
      '<max>-1</max>',
      '<max>99999999999</max>',
      '<after/>',
      '<after>x</after><index>1</index>',
      '<index>x</index>',
    ]) {
      expect(() => parseRsm(set(bad), limits), bad).toThrow(expect.objectContaining({ condition: 'bad-request' }));
    }
    expect(() => parseRsm(set(`<after>${'x'.repeat(2000)}</after>`), limits)).toThrow(
      expect.objectContaining({ condition: 'item-not-found' }),
    );
    expect(buildRsmAnswer({ first: 'a', firstIndex: 0, last: 'b', count: 2 }).toString()).toBe(
      "<set xmlns='http://jabber.org/protocol/rsm'><first index='0'>a</first><last>b</last><count>2</count></set>",
    );
    expect(buildRsmAnswer({ count: 0 }).toString()).toBe("<set xmlns='http://jabber.org/protocol/rsm'><count>0</count></set>");
  });
});

describe('the storage thread falling behind', () => {
  /** Another connection holds the write lock while juliet sends 300 messages (`filler` in each). */
  const lockedBurst = async (options: { maxInFlight?: number; maxInFlightChars?: number }, filler = ''): Promise<void> => {
    const dir = await mkdtemp(join(tmpdir(), 'portbind-pressure-'));
    const logger = capturingLogger();
    try {
      const file = join(dir, 'xmpp.sqlite');
      const { port } = await server({ storage: sqliteStorage({ file, ...options }), logger });
      const { juliet, romeo } = await archivingPair(port);
      // Another process holds the write lock: the archive's rows pile up behind the storage thread's commits.
      const lock = await lockedSqlite(file);
      try {
        await burstUntilBehind(juliet, logger.lines, 300, filler);
        // The event loop goes on while the lock is held (a second and a half more): timers keep their time.
        await new Promise((resolve) => setTimeout(resolve, 1500));
        expect(lock.lag()).toBeLessThan(500);
        expect(saidBehind(logger.lines)).toBe(true);
      } finally {
        lock.release();
      }
      // Once the storage caught up, the rest is read: every message arrives, and every one is archived.
      for (let i = 0; i < 300; i++) await romeo.next(new RegExp(`<message[^>]* id='p${i}'`), 15_000);
      expect(logger.lines.some((line) => line.message?.includes('the storage caught up'))).toBe(true);
      expect(await romeo.iq('c1', ARCHIVE_COUNT, "type='set'")).toContain('<count>301</count>');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  };

  it('stops reading from clients, not the event loop, while another process holds the write lock; nothing is lost', async () => {
    // 300 messages: 600 archive rows, three times maxInFlight.
    await lockedBurst({ maxInFlight: 200 });
  });

  it('the same past maxInFlightChars: large messages, far fewer than maxInFlight, hold the input by their size', async () => {
    // 300 messages of 2,000 characters: 600 archive rows, 1.2 million characters waiting; 20 times the limit.
    await lockedBurst({ maxInFlight: 1_000_000, maxInFlightChars: 60_000 }, ` ${'x'.repeat(2000)}`);
  });

  it('key-value writes count by their size too: large vCards from many sessions, far fewer than maxInFlight, hold the input', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'portbind-pressure-'));
    const logger = capturingLogger();
    try {
      const file = join(dir, 'xmpp.sqlite');
      const { port } = await server({ storage: sqliteStorage({ file, maxInFlight: 1_000_000, maxInFlightChars: 200_000 }), logger });
      // A session's stanzas are handled one at a time: each has one write waiting. Thirty sessions of juliet's.
      const sessions: Raw[] = [];
      for (let i = 0; i < 30; i++) sessions.push(await Raw.login(port, 'juliet', 'balcony', `r${i}`));
      const vcard = (i: number): string => `<vCard xmlns='vcard-temp'><FN>card ${i} ${'x'.repeat(20_000)}</FN></vCard>`;
      expect(await sessions[0]?.iq('v', vcard(0), "type='set'")).toContain("type='result'");
      const lock = await lockedSqlite(file);
      try {
        // 30 vCards of 20,000 characters: 600,000 characters waiting, three times the limit, in 30 calls.
        sessions.forEach((raw, i) => {
          raw.send(`<iq type='set' id='v${i}'>${vcard(i)}</iq>`);
        });
        const deadline = Date.now() + 10_000;
        while (!saidBehind(logger.lines) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
        expect(saidBehind(logger.lines)).toBe(true);
      } finally {
        lock.release();
      }
      // Every one is answered once the storage caught up.
      for (const [i, raw] of sessions.entries())
        expect(await raw.next(new RegExp(`<iq[^>]* id='v${i}'`), 15_000)).toContain("type='result'");
      expect(logger.lines.some((line) => line.message?.includes('the storage caught up'))).toBe(true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
