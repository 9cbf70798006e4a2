// The storage interfaces (src/stores/types.ts) against every backend: one conformance suite for
// memoryStorage(), sqliteStorage() (batched and not) and postgresStorage() (on a real PostgreSQL this file
// starts: test/support/postgres.ts), then what only a file has: reopening, migrations, and the startup
// errors a file can cause (PB_ERR_XMPP_STORAGE). What only PostgreSQL has: postgres.test.ts.
import { execFileSync } from 'node:child_process';
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Postgres, startPostgres } from '../../../test/support/postgres.js';
import { deriveScram, type ScramHash, ScramServer, scramLookup, verifyPlain } from '../src/sasl/index.js';
import { StanzaErrorException } from '../src/stanza-error.js';
import {
  type ArchiveItem,
  type KeyValueStore,
  memoryStorage,
  postgresStorage,
  SCHEMA_VERSION,
  StorageConflictError,
  sqliteStorage,
  updateValue,
  type XmppStorage,
} from '../src/stores/index.js';
import { type Migration, migrations } from '../src/stores/migrations.js';
import { migrate } from '../src/stores/sqlite.js';

let dir: string;
let files = 0;
const opened: XmppStorage[] = [];
/** A fresh database path in this file's temporary directory. */
const newFile = (): string => join(dir, `db${++files}`, 'xmpp.sqlite');

let postgres: Postgres | undefined;
/** Each postgresStorage() of the suite in a schema of its own: a fresh, empty database. */
let schemas = 0;
const postgresUrl = (): string => {
  if (postgres === undefined) throw new Error('PostgreSQL did not start');
  return postgres.url();
};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portbind-stores-'));
  postgres = await startPostgres();
});
afterEach(async () => {
  for (const storage of opened.splice(0)) await storage.close();
});
afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  await postgres?.stop();
});

/** Few PBKDF2 rounds: the tests create many accounts. */
const ITERATIONS = 64;

const backends: Array<[string, () => XmppStorage]> = [
  ['memoryStorage()', () => memoryStorage({ iterations: ITERATIONS })],
  ['sqliteStorage()', () => sqliteStorage({ file: newFile(), iterations: ITERATIONS })],
  ['sqliteStorage({ batch: false })', () => sqliteStorage({ file: newFile(), iterations: ITERATIONS, batch: false })],
  // SQLite on the event loop instead of its own thread.
  ['sqliteStorage({ thread: false })', () => sqliteStorage({ file: newFile(), iterations: ITERATIONS, thread: false })],
  ['postgresStorage()', () => postgresStorage({ url: postgresUrl(), schema: `conformance${++schemas}`, iterations: ITERATIONS, max: 4 })],
  // One INSERT per append instead of one per turn of the event loop.
  [
    'postgresStorage({ batch: false })',
    () => postgresStorage({ url: postgresUrl(), schema: `conformance${++schemas}`, iterations: ITERATIONS, max: 4, batch: false }),
  ],
];

function open(factory: () => XmppStorage): XmppStorage {
  const storage = factory();
  opened.push(storage);
  return storage;
}

const item = (id: string, when: number, withValue = 'bob@localhost', xml = `<message id='${id}'/>`): ArchiveItem => ({
  id,
  when,
  with: withValue,
  xml,
});
const ids = (result: { items: ArchiveItem[] }): string[] => result.items.map((entry) => entry.id);

/** A SCRAM client after RFC 5802 with node:crypto only: the exchange the server runs at login. */
async function scramLogin(storage: XmppStorage, hash: ScramHash, username: string, password: string): Promise<boolean> {
  const mechanism = hash === 'sha1' ? 'SCRAM-SHA-1' : 'SCRAM-SHA-256';
  const server = new ScramServer({ mechanism, lookup: scramLookup(storage.users) });
  const bare = `n=${username},r=clientnonce${hash}`;
  const started = await server.start(Buffer.from(`n,,${bare}`));
  if ('failure' in started) return false;
  const serverFirst = started.challenge.toString();
  const fields = new Map(serverFirst.split(',').map((field) => [field.slice(0, 2), field.slice(2)]));
  const salted = pbkdf2Sync(
    password,
    Buffer.from(fields.get('s=') ?? '', 'base64'),
    Number(fields.get('i=')),
    hash === 'sha1' ? 20 : 32,
    hash,
  );
  const hmac = (key: Buffer, data: string): Buffer => createHmac(hash, key).update(data).digest();
  const clientKey = hmac(salted, 'Client Key');
  const withoutProof = `c=biws,r=${fields.get('r=')}`;
  const authMessage = `${bare},${serverFirst},${withoutProof}`;
  const signature = hmac(createHash(hash).update(clientKey).digest(), authMessage);
  const proof = Buffer.from(clientKey.map((byte, i) => byte ^ (signature[i] ?? 0)));
  const result = server.finish(Buffer.from(`${withoutProof},p=${proof.toString('base64')}`));
  if ('failure' in result) return false;
  // The server proves it holds the ServerKey.
  expect(result.success.toString()).toBe(`v=${hmac(hmac(salted, 'Server Key'), authMessage).toString('base64')}`);
  return true;
}

const plain = (username: string, password: string): Buffer => Buffer.from(`\0${username}\0${password}`);

describe.each(backends)('%s', (_name, factory) => {
  describe('keyValue', () => {
    it('gets what was set, as a copy, for any JSON value; undefined for a missing key', async () => {
      const store = open(factory).keyValue('vcard');
      expect(await store.get('alice', 'missing')).toBeUndefined();
      const values = [
        { name: 'Alice', tags: ['a', 'b'], nested: { n: 1.5, ok: true, none: null } },
        [1, 'two', null],
        'text ☃ 𝄞',
        0,
        -12.25,
        true,
        false,
        null,
      ];
      for (const [index, value] of values.entries()) await store.set('alice', `k${index}`, value);
      for (const [index, value] of values.entries()) expect(await store.get('alice', `k${index}`)).toEqual(value);
      const copy = (await store.get('alice', 'k0')) as { name: string };
      copy.name = 'changed';
      expect(await store.get('alice', 'k0')).toEqual(values[0]);
    });

    it('replaces on set, deletes on set(undefined); owners and store names are separate', async () => {
      const storage = open(factory);
      const roster = storage.keyValue('roster');
      await roster.set('alice', 'k', 1);
      await roster.set('alice', 'k', { v: 2 });
      await roster.set('bob', 'k', 'bob');
      await storage.keyValue('private').set('alice', 'k', 'private');
      expect(await roster.get('alice', 'k')).toEqual({ v: 2 });
      expect(await roster.get('bob', 'k')).toBe('bob');
      expect(await storage.keyValue('private').get('alice', 'k')).toBe('private');
      expect(storage.keyValue('roster')).toBe(roster);
      await roster.set('alice', 'k', undefined);
      expect(await roster.get('alice', 'k')).toBeUndefined();
      expect(await roster.keys('alice')).toEqual([]);
      expect(await roster.get('bob', 'k')).toBe('bob');
      await roster.set('alice', 'never-set', undefined);
    });

    it('lists keys sorted, with a prefix taken literally (no LIKE or GLOB wildcards)', async () => {
      const store = open(factory).keyValue('pep');
      for (const key of ['b', 'a', 'a%b', 'a_c', 'ab', 'a*', 'é', 'z', 'a\u{1F600}x', 'A']) await store.set('alice', key, key);
      await store.set('bob', 'a-bob', 1);
      expect(await store.keys('alice')).toEqual(['A', 'a', 'a%b', 'a*', 'a_c', 'ab', 'a\u{1F600}x', 'b', 'z', 'é']);
      expect(await store.keys('alice', 'a')).toEqual(['a', 'a%b', 'a*', 'a_c', 'ab', 'a\u{1F600}x']);
      expect(await store.keys('alice', 'a%')).toEqual(['a%b']);
      expect(await store.keys('alice', 'a_')).toEqual(['a_c']);
      expect(await store.keys('alice', 'a*')).toEqual(['a*']);
      expect(await store.keys('alice', 'a\u{1F600}')).toEqual(['a\u{1F600}x']);
      expect(await store.keys('alice', 'q')).toEqual([]);
      expect(await store.keys('nobody')).toEqual([]);
    });

    it('clear() deletes every key of one owner only', async () => {
      const storage = open(factory);
      const store = storage.keyValue('roster');
      await store.set('alice', 'x', 1);
      await store.set('alice', 'y', 2);
      await store.set('bob', 'x', 3);
      await storage.keyValue('vcard').set('alice', 'x', 4);
      await store.clear('alice');
      expect(await store.keys('alice')).toEqual([]);
      expect(await store.get('bob', 'x')).toBe(3);
      expect(await storage.keyValue('vcard').get('alice', 'x')).toBe(4);
    });

    it('compareAndSet changes a value only from the one expected (undefined: absent), and says whether it did', async () => {
      const store = open(factory).keyValue('roster');
      const cas = store.compareAndSet?.bind(store);
      if (cas === undefined) throw new Error('this store has no compareAndSet');
      expect(await cas('alice', 'k', undefined, { v: 1 })).toBe(true);
      expect(await cas('alice', 'k', undefined, { v: 2 })).toBe(false);
      expect(await cas('alice', 'k', { v: 0 }, { v: 2 })).toBe(false);
      expect(await store.get('alice', 'k')).toEqual({ v: 1 });
      expect(await cas('alice', 'k', { v: 1 }, { v: 2, list: ['a', 'é'] })).toBe(true);
      expect(await store.get('alice', 'k')).toEqual({ v: 2, list: ['a', 'é'] });
      // Another owner's key of the same name is another value.
      expect(await cas('bob', 'k', { v: 2, list: ['a', 'é'] }, 'bob')).toBe(false);
      expect(await store.get('bob', 'k')).toBeUndefined();
      expect(await cas('alice', 'k', { v: 1 }, undefined)).toBe(false);
      expect(await cas('alice', 'k', { v: 2, list: ['a', 'é'] }, undefined)).toBe(true);
      expect(await store.get('alice', 'k')).toBeUndefined();
      expect(await cas('alice', 'k', undefined, undefined)).toBe(true);
      await store.set('alice', 'k', 'x');
      expect(await cas('alice', 'k', undefined, undefined)).toBe(false);
      expect(await store.get('alice', 'k')).toBe('x');
    });

    it('updateValue: two callers changing one value at once both count; change() gets a copy; an unchanged value is not written', async () => {
      const store = open(factory).keyValue('roster');
      const increment = async (times: number): Promise<void> => {
        for (let i = 0; i < times; i++) await updateValue<number>(store, 'alice', 'n', (n) => (n ?? 0) + 1);
      };
      await Promise.all([increment(20), increment(20)]);
      expect(await store.get('alice', 'n')).toBe(40);
      await store.set('alice', 'doc', { items: ['a'] });
      const written = await updateValue<{ items: string[] }>(store, 'alice', 'doc', (doc) => {
        doc?.items.push('b');
        return doc;
      });
      expect(written).toEqual({ items: ['a', 'b'] });
      expect(await store.get('alice', 'doc')).toEqual({ items: ['a', 'b'] });
      expect(await updateValue(store, 'alice', 'doc', () => undefined)).toBeUndefined();
      expect(await store.get('alice', 'doc')).toBeUndefined();
    });

    it('a read called after a write, without awaiting it, sees it', async () => {
      const store = open(factory).keyValue('roster');
      const write = store.set('alice', 'k', 'v');
      const read = store.get('alice', 'k');
      const deleted = store.set('alice', 'k', undefined);
      const after = store.get('alice', 'k');
      await write;
      await deleted;
      expect(await read).toBe('v');
      expect(await after).toBeUndefined();
    });
  });

  describe('archive', () => {
    /** alice's archive: m1..m6 alternating bob and carol, at 1000, 2000, … */
    async function filled(storage: XmppStorage) {
      const archive = storage.archive('mam');
      for (let i = 1; i <= 6; i++)
        await archive.append('alice', item(`m${i}`, i * 1000, i % 2 === 1 ? 'bob@localhost' : 'carol@localhost'));
      return archive;
    }

    it('keeps append order, whatever the times; items come back whole', async () => {
      const archive = open(factory).archive('mam');
      await archive.append('alice', item('late', 5000, 'bob@localhost', "<message to='bob@localhost'><body>hi &amp; ☃</body></message>"));
      await archive.append('alice', item('early', 1000));
      await archive.append('alice', item('middle', 3000));
      const result = await archive.query('alice');
      expect(result).toEqual({
        items: [
          { id: 'late', when: 5000, with: 'bob@localhost', xml: "<message to='bob@localhost'><body>hi &amp; ☃</body></message>" },
          item('early', 1000),
          item('middle', 3000),
        ],
        complete: true,
        count: 3,
      });
      expect(await archive.query('nobody')).toEqual({ items: [], complete: true, count: 0 });
    });

    it('an append with an existing id replaces that item and moves it to the end', async () => {
      const archive = await filled(open(factory));
      await archive.append('alice', item('m2', 9000, 'dave@localhost', '<replaced/>'));
      const result = await archive.query('alice');
      expect(ids(result)).toEqual(['m1', 'm3', 'm4', 'm5', 'm6', 'm2']);
      expect(result.items.at(-1)).toEqual(item('m2', 9000, 'dave@localhost', '<replaced/>'));
      expect(result.count).toBe(6);
      // The same id in another owner's archive is another item.
      await archive.append('bob', item('m2', 1, 'alice@localhost'));
      expect(ids(await archive.query('alice'))).toHaveLength(6);
    });

    it('counts every item once through appends, replacements (in one turn too), deletes, trims and expiry', async () => {
      const storage = open(factory);
      const archive = storage.archive('mam');
      // One turn: new items, one replaced twice, another owner, another store.
      await Promise.all([
        archive.append('alice', item('a1', 1000)),
        archive.append('alice', item('a2', 2000, 'carol@localhost')),
        archive.append('alice', item('a1', 3000)),
        archive.append('bob', item('a1', 1000)),
        archive.append('alice', item('a1', 4000)),
        storage.archive('offline').append('alice', item('o1', 1000)),
      ]);
      expect(await archive.query('alice')).toMatchObject({ count: 2 });
      expect(ids(await archive.query('alice'))).toEqual(['a2', 'a1']);
      // Counted before a delete in the same turn, and by a query in the same turn.
      const [, , counted] = await Promise.all([
        archive.append('alice', item('a3', 5000)),
        archive.delete('alice', { ids: ['a2'] }),
        archive.query('alice', { max: 0 }),
      ]);
      expect(counted.count).toBe(2);
      await archive.append('alice', item('a4', 6000));
      expect(await archive.trim('alice', 'bob@localhost', 1)).toBe(2);
      expect(await archive.query('alice')).toMatchObject({ count: 1 });
      expect(await archive.expire(5000)).toBe(1);
      expect(await archive.query('alice')).toMatchObject({ count: 1 });
      expect(await archive.query('bob')).toMatchObject({ count: 0 });
      expect(await storage.archive('offline').query('alice')).toMatchObject({ count: 1 });
    });

    it('calls of one turn on several owners apply in call order around an expire of the whole store', async () => {
      const archive = open(factory).archive('mam');
      await archive.append('carol', item('c0', 100));
      const [before, , expired, , bob, alice] = await Promise.all([
        archive.query('bob'),
        archive.append('alice', item('a1', 100)),
        archive.expire(500),
        archive.append('bob', item('b1', 100)),
        archive.query('bob'),
        archive.query('alice'),
        archive.append('alice', item('a2', 100)),
      ]);
      // a1 and c0 were there before the expire; b1 came after it.
      expect(ids(before)).toEqual([]);
      expect(expired).toBe(2);
      expect(ids(bob)).toEqual(['b1']);
      expect(ids(alice)).toEqual([]);
      expect(ids(await archive.query('alice'))).toEqual(['a2']);
    });

    it('filters by with, start and end (inclusive), and ids', async () => {
      const archive = await filled(open(factory));
      expect(ids(await archive.query('alice', { with: 'bob@localhost' }))).toEqual(['m1', 'm3', 'm5']);
      expect(ids(await archive.query('alice', { start: 2000, end: 4000 }))).toEqual(['m2', 'm3', 'm4']);
      expect(ids(await archive.query('alice', { with: 'carol@localhost', start: 2001 }))).toEqual(['m4', 'm6']);
      expect(ids(await archive.query('alice', { end: 1999 }))).toEqual(['m1']);
      expect(ids(await archive.query('alice', { ids: ['m5', 'm2', 'nope'] }))).toEqual(['m2', 'm5']);
      expect(await archive.query('alice', { ids: [] })).toEqual({ items: [], complete: true, count: 0 });
      const filtered = await archive.query('alice', { with: 'bob@localhost', ids: ['m1', 'm2'] });
      expect(filtered).toEqual({ items: [item('m1', 1000)], complete: true, count: 1 });
    });

    it('pages forward: max, then after; complete on the last page; count ignores paging', async () => {
      const archive = await filled(open(factory));
      const first = await archive.query('alice', { max: 2 });
      expect([ids(first), first.complete, first.count]).toEqual([['m1', 'm2'], false, 6]);
      const second = await archive.query('alice', { max: 2, after: 'm2' });
      expect([ids(second), second.complete, second.count]).toEqual([['m3', 'm4'], false, 6]);
      const last = await archive.query('alice', { max: 2, after: 'm4' });
      expect([ids(last), last.complete, last.count]).toEqual([['m5', 'm6'], true, 6]);
      const beyond = await archive.query('alice', { max: 2, after: 'm6' });
      expect([ids(beyond), beyond.complete, beyond.count]).toEqual([[], true, 6]);
      const exact = await archive.query('alice', { max: 6 });
      expect([ids(exact).length, exact.complete]).toEqual([6, true]);
      const filtered = await archive.query('alice', { with: 'carol@localhost', max: 1, after: 'm2' });
      expect([ids(filtered), filtered.complete, filtered.count]).toEqual([['m4'], false, 3]);
    });

    it("pages backward: before '' is the last page, before an id the page before it, oldest first", async () => {
      const archive = await filled(open(factory));
      const last = await archive.query('alice', { before: '', max: 2 });
      expect([ids(last), last.complete, last.count]).toEqual([['m5', 'm6'], false, 6]);
      const previous = await archive.query('alice', { before: 'm5', max: 2 });
      expect([ids(previous), previous.complete]).toEqual([['m3', 'm4'], false]);
      const first = await archive.query('alice', { before: 'm3', max: 2 });
      expect([ids(first), first.complete]).toEqual([['m1', 'm2'], true]);
      const all = await archive.query('alice', { before: '' });
      expect([ids(all), all.complete]).toEqual([['m1', 'm2', 'm3', 'm4', 'm5', 'm6'], true]);
      const withFilter = await archive.query('alice', { with: 'bob@localhost', before: '', max: 2 });
      expect([ids(withFilter), withFilter.complete, withFilter.count]).toEqual([['m3', 'm5'], false, 3]);
      const between = await archive.query('alice', { after: 'm1', before: 'm6', max: 2 });
      expect([ids(between), between.complete]).toEqual([['m4', 'm5'], false]);
      const betweenForward = await archive.query('alice', { after: 'm1', before: 'm4' });
      expect([ids(betweenForward), betweenForward.complete]).toEqual([['m2', 'm3'], true]);
    });

    it('pages a large time range (past what is sorted in memory) the same as a small one', async () => {
      const archive = open(factory).archive('mam');
      // 3000 items, their times not in archive order at the seams: ids i, time 10 * i, except every 100th a second late.
      const appended = Array.from({ length: 3000 }, (_, i) => item(`i${i}`, i % 100 === 0 ? 10 * i + 1000 : 10 * i, `c${i % 3}`));
      await Promise.all(appended.map((entry) => archive.append('alice', entry)));
      const matchingItems = (query: { start?: number; end?: number; with?: string }) =>
        appended.filter(
          (entry) =>
            (query.start === undefined || entry.when >= query.start) &&
            (query.end === undefined || entry.when <= query.end) &&
            (query.with === undefined || entry.with === query.with),
        );
      for (const range of [{ start: 100 }, { start: 25_000 }, { end: 5000 }, { start: 100, end: 25_000 }, { start: 1000, with: 'c1' }]) {
        const matching = matchingItems(range).map((entry) => entry.id);
        const first = await archive.query('alice', { ...range, max: 7 });
        expect([ids(first), first.complete, first.count]).toEqual([matching.slice(0, 7), matching.length <= 7, matching.length]);
        const next = await archive.query('alice', { ...range, max: 7, after: matching[6] });
        expect(ids(next)).toEqual(matching.slice(7, 14));
        const last = await archive.query('alice', { ...range, max: 7, before: '' });
        expect([ids(last), last.complete]).toEqual([matching.slice(-7), matching.length <= 7]);
        const previous = await archive.query('alice', { ...range, max: 7, before: matching.at(-7) });
        expect(ids(previous)).toEqual(matching.slice(-14, -7));
      }
    });

    it('max 0 returns only the count; complete says whether anything matched', async () => {
      const archive = await filled(open(factory));
      expect(await archive.query('alice', { max: 0 })).toEqual({ items: [], complete: false, count: 6 });
      expect(await archive.query('alice', { max: 0, with: 'nobody' })).toEqual({ items: [], complete: true, count: 0 });
    });

    it('an after or before id not in the archive is item-not-found (XEP-0059, XEP-0313)', async () => {
      const archive = await filled(open(factory));
      for (const query of [{ after: 'nope' }, { before: 'nope' }, { after: 'm1', before: 'nope' }]) {
        const error = await archive.query('alice', query).then(
          () => undefined,
          (rejected: unknown) => rejected,
        );
        expect(error).toBeInstanceOf(StanzaErrorException);
        expect((error as StanzaErrorException).condition).toBe('item-not-found');
      }
      // Another owner's ids are not cursors in this archive.
      await expect(archive.query('bob', { after: 'm1' })).rejects.toBeInstanceOf(StanzaErrorException);
    });

    it('deletes by ids, with, end (inclusive), or everything of one owner', async () => {
      const storage = open(factory);
      const archive = await filled(storage);
      await archive.append('bob', item('b1', 1000));
      await storage.archive('offline').append('alice', item('o1', 1000));
      expect(await archive.delete('alice', { ids: ['m1', 'nope'] })).toBe(1);
      expect(await archive.delete('alice', { with: 'carol@localhost', end: 4000 })).toBe(2);
      expect(ids(await archive.query('alice'))).toEqual(['m3', 'm5', 'm6']);
      expect(await archive.delete('alice', { end: 3000 })).toBe(1);
      expect(await archive.delete('alice')).toBe(2);
      expect(await archive.query('alice')).toEqual({ items: [], complete: true, count: 0 });
      expect(ids(await archive.query('bob'))).toEqual(['b1']);
      expect(ids(await storage.archive('offline').query('alice'))).toEqual(['o1']);
      expect(await archive.delete('nobody')).toBe(0);
    });

    it('trim keeps the newest items of one with (archive order), others untouched', async () => {
      const archive = open(factory).archive('pubsub');
      for (let i = 1; i <= 5; i++) await archive.append('alice', item(`a${i}`, 6000 - i * 1000, 'node-a'));
      await archive.append('alice', item('b1', 1, 'node-b'));
      await archive.append('alice', item('a1', 100, 'node-a'));
      // node-a in archive order: a2 a3 a4 a5 a1.
      expect(await archive.trim('alice', 'node-a', 3)).toBe(2);
      expect(await archive.query('alice')).toMatchObject({ count: 4 });
      expect(ids(await archive.query('alice'))).toEqual(['a4', 'a5', 'b1', 'a1']);
      expect(await archive.trim('alice', 'node-a', 3)).toBe(0);
      expect(await archive.trim('alice', 'node-a', 0)).toBe(3);
      expect(ids(await archive.query('alice'))).toEqual(['b1']);
      expect(await archive.trim('nobody', 'node-a', 1)).toBe(0);
    });

    it('deletes, trims and expires more items than one chunk (100 rows per commit) removes', async () => {
      const archive = open(factory).archive('mam');
      const entries = Array.from({ length: 1300 }, (_, i) => item(`i${i}`, i, i % 2 === 0 ? 'even' : 'odd'));
      await Promise.all(
        entries.flatMap((entry) => [archive.append('alice', entry), archive.append('bob', entry), archive.append('carol', entry)]),
      );
      expect(await archive.expire(1100)).toBe(3300);
      expect(await archive.query('alice', { max: 0 })).toMatchObject({ count: 200 });
      expect(await archive.delete('bob')).toBe(200);
      expect(await archive.trim('carol', 'even', 1)).toBe(99);
      expect(await archive.query('carol')).toMatchObject({ count: 101 });
      expect(await archive.query('bob')).toEqual({ items: [], complete: true, count: 0 });
    });

    it('expire deletes items older than a time across the owners of this store only', async () => {
      const storage = open(factory);
      const archive = await filled(storage);
      await archive.append('bob', item('b1', 500));
      await archive.append('bob', item('b2', 3000));
      await storage.archive('offline').append('alice', item('o1', 1));
      expect(await archive.expire(3000)).toBe(3);
      expect(ids(await archive.query('alice'))).toEqual(['m3', 'm4', 'm5', 'm6']);
      expect(await archive.query('bob')).toEqual({ items: [item('b2', 3000)], complete: true, count: 1 });
      expect(await archive.query('alice', { max: 1 })).toMatchObject({ complete: false, count: 4 });
      expect(ids(await storage.archive('offline').query('alice'))).toEqual(['o1']);
    });
  });

  describe('users', () => {
    it('create, get, setPassword, delete; usernames normalized; the credentials log in with SCRAM and PLAIN', async () => {
      const storage = open(factory);
      const users = storage.users;
      expect(await users.create('Alice', 'secret')).toBe(true);
      expect(await users.create('alice', 'other')).toBe(false);
      const stored = await users.get('ALICE');
      expect(stored?.username).toBe('alice');
      for (const hash of ['sha1', 'sha256'] as const) {
        const credentials = stored?.[hash];
        expect(credentials?.salt).toHaveLength(16);
        expect(credentials?.iterations).toBe(ITERATIONS);
        // The same derivation MemoryUserStore and the SCRAM code use.
        const expected = deriveScram('secret', hash, { salt: credentials?.salt as Buffer, iterations: ITERATIONS });
        expect(credentials?.storedKey.equals(expected.storedKey)).toBe(true);
        expect(credentials?.serverKey.equals(expected.serverKey)).toBe(true);
        expect(await scramLogin(storage, hash, 'alice', 'secret')).toBe(true);
        expect(await scramLogin(storage, hash, 'alice', 'wrong')).toBe(false);
        expect(await verifyPlain(plain('alice', 'secret'), scramLookup(users), { hash })).toEqual({ username: 'alice' });
      }
      expect(stored?.sha1.salt.equals(stored?.sha256.salt as Buffer)).toBe(false);

      expect(await users.setPassword('alice', 'changed')).toBe(true);
      expect(await scramLogin(storage, 'sha256', 'alice', 'secret')).toBe(false);
      expect(await scramLogin(storage, 'sha256', 'alice', 'changed')).toBe(true);
      expect(await verifyPlain(plain('alice', 'secret'), scramLookup(users))).toEqual({ failure: 'not-authorized' });
      expect(await users.setPassword('nobody', 'x')).toBe(false);

      expect(await users.delete('Alice')).toBe(true);
      expect(await users.get('alice')).toBeUndefined();
      expect(await users.delete('alice')).toBe(false);
      expect(await scramLogin(storage, 'sha256', 'alice', 'changed')).toBe(false);
      expect(await users.get('not a valid@name')).toBeUndefined();
    });

    it('refuses an invalid username or an empty password (PB_ERR_XMPP_CREDENTIALS)', async () => {
      const users = open(factory).users;
      await expect(Promise.resolve().then(() => users.create('a@b', 'pw'))).rejects.toMatchObject({ code: 'PB_ERR_XMPP_CREDENTIALS' });
      await expect(Promise.resolve().then(() => users.create('carol', ''))).rejects.toMatchObject({ code: 'PB_ERR_XMPP_CREDENTIALS' });
      expect(await users.get('carol')).toBeUndefined();
      await users.create('carol', 'pw');
      await expect(Promise.resolve().then(() => users.setPassword('carol', ''))).rejects.toMatchObject({ code: 'PB_ERR_XMPP_CREDENTIALS' });
      expect(await verifyPlain(plain('carol', 'pw'), scramLookup(users))).toEqual({ username: 'carol' });
    });

    it('operations on one account apply in the order they were called', async () => {
      const users = open(factory).users;
      const results = await Promise.all([
        users.create('dave', 'one'),
        users.create('dave', 'two'),
        users.delete('dave'),
        users.create('dave', 'three'),
        users.setPassword('dave', 'four'),
      ]);
      expect(results).toEqual([true, false, true, true, true]);
      expect(await verifyPlain(plain('dave', 'four'), scramLookup(users))).toEqual({ username: 'dave' });
    });
  });
});

/** Makes a file or directory unwritable, for root too: `chattr +i` as root (file modes do not bind root), chmod otherwise. */
function readOnly(path: string): () => void {
  if (process.getuid?.() === 0) {
    execFileSync('chattr', ['+i', path]);
    return () => execFileSync('chattr', ['-i', path]);
  }
  const mode = statSync(path).mode;
  chmodSync(path, statSync(path).isDirectory() ? 0o555 : 0o444);
  return () => chmodSync(path, mode);
}

/** The error sqliteStorage() throws for this file. */
function openError(file: string): { code?: string; message: string; name: string } {
  try {
    opened.push(sqliteStorage({ file }));
  } catch (error) {
    return error as { code?: string; message: string; name: string };
  }
  throw new Error(`sqliteStorage opened ${file}`);
}

describe('updateValue across processes: two handles on the same data (a SQLite file, a PostgreSQL schema)', () => {
  const pairs: Array<[string, () => [XmppStorage, XmppStorage]]> = [
    [
      'sqliteStorage() ×2, one file',
      () => {
        const file = newFile();
        const first = open(() => sqliteStorage({ file, iterations: ITERATIONS }));
        return [first, open(() => sqliteStorage({ file, iterations: ITERATIONS }))];
      },
    ],
    [
      'postgresStorage() ×2, one schema',
      () => {
        const schema = `conformance${++schemas}`;
        return [
          open(() => postgresStorage({ url: postgresUrl(), schema, iterations: ITERATIONS, max: 4 })),
          open(() => postgresStorage({ url: postgresUrl(), schema, iterations: ITERATIONS, max: 4 })),
        ];
      },
    ],
  ];

  it.each(pairs)('%s: 2 × 40 read-modify-writes of one roster, at once, lose none', async (_name, both) => {
    const [a, b] = both();
    // PostgreSQL: the schema exists before both race to create it.
    await a.keyValue('roster').get('alice', 'roster');
    const add = async (store: KeyValueStore, prefix: string): Promise<void> => {
      for (let i = 0; i < 40; i++) {
        await updateValue<{ items: string[] }>(store, 'alice', 'roster', (roster) => ({
          items: [...(roster?.items ?? []), `${prefix}${i}`],
        }));
      }
    };
    await Promise.all([add(a.keyValue('roster'), 'a'), add(b.keyValue('roster'), 'b')]);
    const items = ((await a.keyValue('roster').get('alice', 'roster')) as { items: string[] }).items;
    expect(items).toHaveLength(80);
    expect(new Set(items).size).toBe(80);
  });

  it('gives up with StorageConflictError (resource-constraint, wait) when it loses every race', async () => {
    let value = 0;
    const store: KeyValueStore = {
      get: async () => value,
      set: async () => {},
      keys: async () => [],
      clear: async () => {},
      // Someone else always wrote first.
      compareAndSet: async () => {
        value++;
        return false;
      },
    };
    const error = await updateValue<number>(store, 'alice', 'n', (n) => (n ?? 0) + 1).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(StorageConflictError);
    expect(error).toMatchObject({ code: 'PB_ERR_XMPP_STORAGE_CONFLICT', condition: 'resource-constraint', type: 'wait' });
    expect(value).toBe(25);
  });
});

describe('sqliteStorage: the file', () => {
  it('keeps accounts, key-values and archives across close and reopen', async () => {
    const file = newFile();
    const first = sqliteStorage({ file, iterations: ITERATIONS });
    await first.users.create('alice', 'secret');
    await first.keyValue('roster').set('alice', 'bob@localhost', { subscription: 'both' });
    await first.archive('mam').append('alice', item('m1', 1000));
    await first.archive('mam').append('alice', item('m2', 2000));
    await first.archive('mam').append('alice', item('m1', 3000, 'bob@localhost', '<replaced/>'));
    await first.close();

    const second = open(() => sqliteStorage({ file, iterations: ITERATIONS }));
    expect(await scramLogin(second, 'sha256', 'alice', 'secret')).toBe(true);
    expect(await second.keyValue('roster').get('alice', 'bob@localhost')).toEqual({ subscription: 'both' });
    expect(await second.archive('mam').query('alice')).toEqual({
      items: [item('m2', 2000), item('m1', 3000, 'bob@localhost', '<replaced/>')],
      complete: true,
      count: 2,
    });
    // Archive order continues after the reopen.
    await second.archive('mam').append('alice', item('m3', 10));
    expect(ids(await second.archive('mam').query('alice'))).toEqual(['m2', 'm1', 'm3']);
  });

  it('keeps derived credentials only: the password is nowhere in the file', async () => {
    const file = newFile();
    const storage = sqliteStorage({ file, iterations: ITERATIONS });
    await storage.users.create('alice', 'correct horse battery staple');
    await storage.close();
    const bytes = Buffer.concat([readFileSync(file), existsSync(`${file}-wal`) ? readFileSync(`${file}-wal`) : Buffer.alloc(0)]);
    expect(bytes.includes('alice')).toBe(true);
    expect(bytes.includes('correct horse battery staple')).toBe(false);
  });

  it('creates a new file with the current schema in WAL mode; reopening applies nothing twice', async () => {
    const file = newFile();
    expect(existsSync(join(file, '..'))).toBe(false);
    await open(() => sqliteStorage({ file })).close();
    const db = new Database(file, { readonly: true });
    expect(db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    const tables = db
      .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
      .pluck()
      .all();
    expect(tables).toEqual(['accounts', 'archive', 'archive_owners', 'key_values']);
    const schema = db.prepare("SELECT sql FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%' ORDER BY name").pluck().all();
    db.close();

    const again = open(() => sqliteStorage({ file }));
    await again.keyValue('k').set('o', 'k', 1);
    await again.close();
    const after = new Database(file, { readonly: true });
    expect(after.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    expect(after.prepare("SELECT sql FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%' ORDER BY name").pluck().all()).toEqual(schema);
    after.close();
  });

  it('applies the missing migrations in order, all or none', () => {
    const file = newFile();
    mkdirSync(join(file, '..'), { recursive: true });
    const db = new Database(file);
    try {
      const steps: Migration[] = [
        { version: 1, description: 'a', sql: 'CREATE TABLE a (x)' },
        { version: 2, description: 'b', sql: 'CREATE TABLE b (y); INSERT INTO b SELECT x FROM a' },
      ];
      migrate(db, file, steps.slice(0, 1));
      db.exec('INSERT INTO a VALUES (42)');
      expect(db.pragma('user_version', { simple: true })).toBe(1);
      // Version 1 is not applied again; 2 sees 1's data.
      migrate(db, file, steps);
      expect(db.pragma('user_version', { simple: true })).toBe(2);
      expect(db.prepare('SELECT y FROM b').pluck().all()).toEqual([42]);
      // A failing step undoes the ones before it in the same run.
      const failing: Migration[] = [
        ...steps,
        { version: 3, description: 'c', sql: 'CREATE TABLE c (z)' },
        { version: 4, description: 'd', sql: 'CREATE TABLE a (x)' },
      ];
      expect(() => migrate(db, file, failing)).toThrow(
        expect.objectContaining({
          code: 'PB_ERR_XMPP_STORAGE',
          message: `storage ${file}: cannot migrate its schema from version 2 to 4 (SQLITE_ERROR: table a already exists); nothing was changed. Is it another application's database?`,
        }),
      );
      expect(db.pragma('user_version', { simple: true })).toBe(2);
      expect(db.prepare("SELECT count(*) FROM sqlite_schema WHERE name = 'c'").pluck().get()).toBe(0);
    } finally {
      db.close();
    }
  });

  it('migrates an empty (0-byte) file', async () => {
    const file = newFile();
    mkdirSync(join(file, '..'), { recursive: true });
    writeFileSync(file, '');
    const storage = open(() => sqliteStorage({ file }));
    await storage.keyValue('k').set('o', 'k', 'v');
    expect(await storage.keyValue('k').get('o', 'k')).toBe('v');
  });

  it('on its thread, takes more calls in one turn than it keeps in flight: the event loop waits, then all resolve', async () => {
    const storage = open(() => sqliteStorage({ file: newFile() }));
    const archive = storage.archive('load');
    const writes: Array<Promise<void>> = [];
    // More than the 20,000 calls the storage thread may have unanswered: the caller waits for it in the loop.
    for (let i = 0; i < 25_000; i++) writes.push(archive.append('alice', item(`m${i}`, i)));
    await Promise.all(writes);
    const result = await archive.query('alice', { max: 1, before: '' });
    expect(result.count).toBe(25_000);
    expect(ids(result)).toEqual(['m24999']);
  }, 60_000);

  it('record() on its thread: no promise, written as append writes it, past the in-flight limit; a value it cannot store calls onError with the owner', async () => {
    const storage = open(() => sqliteStorage({ file: newFile() }));
    const archive = storage.archive('load');
    expect(archive.record).toBeTypeOf('function');
    const errors: Array<[string, string]> = [];
    const onError = (error: unknown, owner: string): void => {
      errors.push([owner, error instanceof Error ? error.message : String(error)]);
    };
    // More than the 20,000 calls the storage thread may have unanswered: the caller waits for it in the loop.
    for (let i = 0; i < 25_000; i++) archive.record?.('alice', item(`m${i}`, i), onError);
    // A function cannot cross to the storage thread: this one fails, alone.
    archive.record?.('bob', { ...item('bad', 1), xml: (() => '<x/>') as unknown as string }, onError);
    archive.record?.('alice', item('after', 25_001), onError);
    // A read goes through the same queue: it sees every write recorded before it.
    const result = await archive.query('alice', { max: 1, before: '' });
    expect(result.count).toBe(25_001);
    expect(ids(result)).toEqual(['after']);
    expect(errors).toHaveLength(1);
    expect(errors[0]?.[0]).toBe('bob');
    expect(errors[0]?.[1]).toMatch(/cannot store this value/);
    expect((await archive.query('bob')).count).toBe(0);
  }, 60_000);

  it('record() on its thread: the fields cross as bytes, exactly (any text, a shared text, a large one, calls in between)', async () => {
    const storage = open(() => sqliteStorage({ file: newFile() }));
    const archive = storage.archive('mam');
    const errors: unknown[] = [];
    const onError = (error: unknown): void => {
      errors.push(error);
    };
    const shared = '<message><body>é 中文 😀 &amp; \' "</body></message>';
    const large = `<message><body>${'xÿ😀'.repeat(40_000)}</body></message>`;
    const sent: Array<[string, ArchiveItem]> = [
      ['ålice', { id: 'ïd-1', when: 1_700_000_000_123.5, with: 'böb@example.com', xml: shared }],
      // The same text: it crosses once.
      ['böb', { id: 'ïd-2', when: 1_700_000_000_124, with: 'ålice@example.com', xml: shared }],
      ['ålice', { id: '', when: 0, with: '', xml: '' }],
      // Larger than the first buffer (16 KB): it grows.
      ['ålice', { id: 'big', when: 3, with: 'böb@example.com', xml: large }],
    ];
    for (const [owner, entry] of sent.slice(0, 2)) archive.record?.(owner, entry, onError);
    // A call in between ends the first records call; the next record starts another.
    await storage.keyValue('k').set('o', 'k', 'v');
    for (const [owner, entry] of sent.slice(2)) archive.record?.(owner, entry, onError);
    const alice = await archive.query('ålice');
    expect(alice.items).toEqual([sent[0]?.[1], sent[2]?.[1], sent[3]?.[1]]);
    expect((await archive.query('böb')).items).toEqual([sent[1]?.[1]]);
    expect(errors).toEqual([]);
  });

  it('record() on a closed storage calls onError, and a recorded write is committed by close()', async () => {
    const file = newFile();
    const storage = sqliteStorage({ file });
    const errors: string[] = [];
    const onError = (_error: unknown, owner: string): void => {
      errors.push(owner);
    };
    storage.archive('mam').record?.('alice', item('m1', 1), onError);
    await storage.close();
    storage.archive('mam').record?.('carol', item('m2', 2), onError);
    await new Promise((resolve) => setImmediate(resolve));
    expect(errors).toEqual(['carol']);
    const again = open(() => sqliteStorage({ file }));
    expect(ids(await again.archive('mam').query('alice'))).toEqual(['m1']);
  });

  it('resolves a write only once it is committed: another connection sees it', async () => {
    const file = newFile();
    const storage = open(() => sqliteStorage({ file }));
    await storage.keyValue('k').set('o', 'first', 0);
    const reader = new Database(file, { readonly: true });
    try {
      const writes = Array.from({ length: 50 }, (_, i) => storage.archive('mam').append('alice', item(`m${i}`, i)));
      await writes[0];
      // Issued in one turn of the event loop: one transaction, all visible together.
      expect(reader.prepare('SELECT count(*) FROM archive').pluck().get()).toBe(50);
      await Promise.all(writes);
    } finally {
      reader.close();
    }
  });

  it('writes of consecutive busy turns of the event loop share one transaction; each resolves once it committed', async () => {
    const file = newFile();
    // Never committed by the clock here: by an idle turn, maxBatch, or close().
    const storage = open(() => sqliteStorage({ file, commitDelay: 600_000, maxBatch: 8 }));
    const archive = storage.archive('mam');
    const reader = new Database(file, { readonly: true });
    const rows = (): unknown => reader.prepare('SELECT count(*) FROM archive').pluck().get();
    try {
      // A lone write on an idle server commits at the next quiet turn, not after commitDelay.
      await archive.append('alice', item('lone', 0));
      expect(rows()).toBe(1);

      // An append in each of 4 turns (a busy server): one transaction, nothing committed or resolved until a turn
      // queues nothing. A read in the middle sees the writes before it (same connection) and waits for the commit.
      const settled: string[] = [];
      const pending: Array<Promise<unknown>> = [];
      let read: Promise<{ items: ArchiveItem[] }> | undefined;
      await new Promise<void>((resolve) => {
        let n = 0;
        const next = (): void => {
          n++;
          const id = `m${n}`;
          pending.push(archive.append('alice', item(id, n)).then(() => settled.push(id)));
          if (n === 2) read = archive.query('alice').finally(() => settled.push('read'));
          expect(settled).toEqual([]);
          expect(rows()).toBe(1);
          if (n < 4) setImmediate(next);
          else resolve();
        };
        setImmediate(next);
      });
      await Promise.all([...pending, read]);
      expect(settled.sort()).toEqual(['m1', 'm2', 'm3', 'm4', 'read']);
      expect(ids((await read) ?? { items: [] })).toEqual(['lone', 'm1', 'm2']);
      expect(rows()).toBe(5);

      // A full transaction (maxBatch) commits at once.
      const full = Array.from({ length: 8 }, (_, i) => archive.append('bob', item(`b${i}`, i)));
      await full[0];
      expect(rows()).toBe(13);
      await Promise.all(full);

      // close() commits what is open.
      const last = archive.append('alice', item('m5', 5));
      await storage.close();
      await last;
      expect(rows()).toBe(14);
    } finally {
      reader.close();
    }
  });

  it('creates a new file, its -wal and -shm, readable by their owner only (0600); an existing file keeps its mode', async () => {
    const file = newFile();
    const storage = open(() => sqliteStorage({ file }));
    await storage.keyValue('k').set('o', 'k', 1);
    for (const path of [file, `${file}-wal`, `${file}-shm`]) expect(statSync(path).mode & 0o777).toBe(0o600);
    await storage.close();
    chmodSync(file, 0o640);
    await open(() => sqliteStorage({ file })).close();
    expect(statSync(file).mode & 0o777).toBe(0o640);
  });

  it('migrates a version 1 archive (counted by triggers) to version 2 (counted by the code): counts and replacement stay right', async () => {
    const file = newFile();
    mkdirSync(join(file, '..'), { recursive: true });
    const db = new Database(file);
    migrate(db, file, migrations.slice(0, 1));
    const insert = db.prepare('INSERT INTO archive (store, owner, id, "when", "with", xml) VALUES (?, ?, ?, ?, ?, ?)');
    for (const id of ['m1', 'm2', 'm1', 'm3']) insert.run('mam', 'alice', id, 1000, 'bob@localhost', `<${id}/>`);
    expect(db.prepare('SELECT items FROM archive_counts').pluck().all()).toEqual([3]);
    db.close();
    const storage = open(() => sqliteStorage({ file }));
    const archive = storage.archive('mam');
    expect(await archive.query('alice')).toMatchObject({ count: 3 });
    expect(ids(await archive.query('alice'))).toEqual(['m2', 'm1', 'm3']);
    await Promise.all([archive.append('alice', item('m2', 2000)), archive.append('alice', item('m4', 2000))]);
    expect(await archive.query('alice')).toMatchObject({ count: 4 });
    expect(ids(await archive.query('alice'))).toEqual(['m1', 'm3', 'm2', 'm4']);
    await storage.close();
    const after = new Database(file, { readonly: true });
    expect(after.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    expect(after.prepare("SELECT name FROM sqlite_schema WHERE type = 'trigger'").pluck().all()).toEqual(['archive_deleted']);
    expect(after.prepare('SELECT items FROM archive_owners').pluck().all()).toEqual([4]);
    after.close();
  });

  it('migrates a version 2 archive (store and owner in every row) to version 3 (owner ids): same items, order, counts, cursors, filters', async () => {
    const file = newFile();
    mkdirSync(join(file, '..'), { recursive: true });
    const db = new Database(file);
    migrate(db, file, migrations.slice(0, 2));
    expect(db.pragma('user_version', { simple: true })).toBe(2);
    // Rows as version 2 wrote them: an insert per item, the counts per owner in archive_counts.
    const insert = db.prepare('INSERT INTO archive (store, owner, id, "when", "with", xml) VALUES (?, ?, ?, ?, ?, ?)');
    const count = db.prepare(
      'INSERT INTO archive_counts (store, owner, items) VALUES (?, ?, 1) ON CONFLICT (store, owner) DO UPDATE SET items = items + 1',
    );
    const rows: Array<[string, string, string, number, string]> = [
      ['mam', 'alice', 'a1', 1000, 'bob@localhost'],
      ['offline', 'alice', 'o1', 1500, 'carol@localhost'],
      ['mam', 'bob', 'b1', 1000, 'alice@localhost'],
      ['mam', 'alice', 'a2', 2000, 'carol@localhost'],
      ['mam', 'alice', 'a3', 3000, 'bob@localhost'],
      ['pep', '', 'i1', 3500, 'urn:xmpp:avatar:data'],
      ['mam', 'alice', 'a4', 500, 'bob@localhost'],
      ['mam', 'bob', 'b2', 2000, 'carol@localhost'],
    ];
    for (const [store, owner, id, when, withValue] of rows) {
      insert.run(store, owner, id, when, withValue, `<message id='${id}'/>`);
      count.run(store, owner);
    }
    // An item replaced by version 2: deleted (the trigger counts it), inserted again at the end.
    db.prepare("DELETE FROM archive WHERE store = 'mam' AND owner = 'alice' AND id = 'a2'").run();
    insert.run('mam', 'alice', 'a2', 2500, 'carol@localhost', '<replaced/>');
    count.run('mam', 'alice');
    db.close();

    const storage = open(() => sqliteStorage({ file }));
    const mam = storage.archive('mam');
    expect(await mam.query('alice')).toEqual({
      items: [item('a1', 1000), item('a3', 3000), item('a4', 500), { id: 'a2', when: 2500, with: 'carol@localhost', xml: '<replaced/>' }],
      complete: true,
      count: 4,
    });
    expect(ids(await mam.query('alice', { with: 'bob@localhost' }))).toEqual(['a1', 'a3', 'a4']);
    expect(await mam.query('alice', { start: 1000, end: 2500 })).toMatchObject({ count: 2 });
    expect(ids(await mam.query('alice', { start: 1000, end: 2500 }))).toEqual(['a1', 'a2']);
    expect(ids(await mam.query('alice', { after: 'a1', max: 2 }))).toEqual(['a3', 'a4']);
    expect(ids(await mam.query('alice', { before: '', max: 1 }))).toEqual(['a2']);
    expect(ids(await mam.query('alice', { ids: ['a4', 'a1', 'nope'] }))).toEqual(['a1', 'a4']);
    await expect(mam.query('alice', { after: 'b1' })).rejects.toBeInstanceOf(StanzaErrorException);
    expect(await mam.query('bob')).toMatchObject({ count: 2 });
    expect(ids(await mam.query('bob'))).toEqual(['b1', 'b2']);
    expect(await storage.archive('offline').query('alice')).toMatchObject({ count: 1, items: [{ id: 'o1' }] });
    expect(await storage.archive('pep').query('')).toMatchObject({ count: 1, items: [{ id: 'i1', with: 'urn:xmpp:avatar:data' }] });
    expect(await storage.archive('offline').query('bob')).toEqual({ items: [], complete: true, count: 0 });
    // And it goes on: appends after the migrated rows, replacement, deletes, trim, expiry keep the counts right.
    await mam.append('alice', item('a5', 4000));
    await mam.append('alice', item('a1', 4500));
    expect(ids(await mam.query('alice'))).toEqual(['a3', 'a4', 'a2', 'a5', 'a1']);
    expect(await mam.delete('alice', { ids: ['a3'] })).toBe(1);
    expect(await mam.trim('bob', 'alice@localhost', 0)).toBe(1);
    expect(await mam.expire(1000)).toBe(1);
    expect(await mam.query('alice')).toMatchObject({ count: 3 });
    expect(ids(await mam.query('alice'))).toEqual(['a2', 'a5', 'a1']);
    expect(await mam.query('bob')).toMatchObject({ count: 1 });
    await storage.close();

    const after = new Database(file, { readonly: true });
    expect(after.pragma('user_version', { simple: true })).toBe(3);
    expect(after.prepare('SELECT store, owner, items FROM archive_owners ORDER BY oid').all()).toEqual([
      { store: 'mam', owner: 'alice', items: 3 },
      { store: 'mam', owner: 'bob', items: 1 },
      { store: 'offline', owner: 'alice', items: 1 },
      { store: 'pep', owner: '', items: 1 },
    ]);
    expect(
      after.prepare("SELECT name FROM sqlite_schema WHERE type = 'index' AND name LIKE 'archive_%' ORDER BY name").pluck().all(),
    ).toEqual(['archive_id', 'archive_owner', 'archive_time', 'archive_with']);
    after.close();
  });

  it('a statement that fails in a batch fails alone; the others commit', async () => {
    const storage = open(() => sqliteStorage({ file: newFile() }));
    const archive = storage.archive('mam');
    const results = await Promise.allSettled([
      archive.append('alice', item('m1', 1)),
      // NaN is bound as NULL: the NOT NULL constraint fails this statement only.
      archive.append('alice', item('bad', Number.NaN)),
      archive.append('alice', item('m2', 2)),
    ]);
    expect(results.map((result) => result.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(ids(await archive.query('alice'))).toEqual(['m1', 'm2']);
  });

  it('rejects operations after close (PB_ERR_XMPP_STORAGE), and close writes what was pending', async () => {
    const file = newFile();
    const storage = sqliteStorage({ file, iterations: ITERATIONS });
    const pending = [storage.keyValue('k').set('o', 'k', 'v'), storage.users.create('alice', 'pw')];
    await storage.close();
    await Promise.all(pending);
    await expect(storage.keyValue('k').get('o', 'k')).rejects.toMatchObject({ code: 'PB_ERR_XMPP_STORAGE' });
    const reopened = open(() => sqliteStorage({ file }));
    expect(await reopened.keyValue('k').get('o', 'k')).toBe('v');
    expect(await reopened.users.get('alice')).toBeDefined();
  });
});

describe('sqliteStorage: startup errors are XmppConfigError PB_ERR_XMPP_STORAGE, thrown by sqliteStorage()', () => {
  /** A database with data in it, closed (its WAL checkpointed into the file). */
  async function database(): Promise<string> {
    const file = newFile();
    const storage = sqliteStorage({ file });
    for (let i = 0; i < 2000; i++)
      void storage.archive('mam').append('alice', item(`m${i}`, i, 'bob@localhost', `<message>${'x'.repeat(200)}</message>`));
    await storage.close();
    return file;
  }

  it('a file of random bytes', () => {
    const file = newFile();
    mkdirSync(join(file, '..'), { recursive: true });
    writeFileSync(file, randomBytes(16384));
    const error = openError(file);
    expect(error).toMatchObject({ name: 'XmppConfigError', code: 'PB_ERR_XMPP_STORAGE' });
    expect(error.message).toBe(
      `storage ${file}: not an SQLite database, or damaged (SQLITE_NOTADB: file is not a database); restore it from a backup, or move it away to start with an empty one`,
    );
  });

  it('a truncated database', async () => {
    const file = await database();
    truncateSync(file, Math.floor(statSync(file).size / 2));
    const error = openError(file);
    expect(error).toMatchObject({ name: 'XmppConfigError', code: 'PB_ERR_XMPP_STORAGE' });
    expect(error.message).toMatch(/^storage .*: not an SQLite database, or damaged \(SQLITE_CORRUPT: database disk image is malformed\)/);
  });

  it('a database damaged in a page the schema does not reach (quick_check), unless quickCheck is false', async () => {
    const file = await database();
    const size = statSync(file).size;
    // Overwrite the middle of the file, where archive rows are: the header and schema still read.
    const bytes = readFileSync(file);
    randomBytes(4096).copy(bytes, Math.floor(size / 2 / 4096) * 4096);
    writeFileSync(file, bytes);
    const error = openError(file);
    expect(error).toMatchObject({ name: 'XmppConfigError', code: 'PB_ERR_XMPP_STORAGE' });
    expect(error.message).toMatch(/^storage .*: (damaged: PRAGMA quick_check says|not an SQLite database, or damaged)/);
    opened.push(sqliteStorage({ file, quickCheck: false }));
  });

  it('a database file that cannot be written (SQLite opens it read-only; only a write finds out)', async () => {
    const file = await database();
    const undo = readOnly(file);
    try {
      const error = openError(file);
      expect(error).toMatchObject({ name: 'XmppConfigError', code: 'PB_ERR_XMPP_STORAGE' });
      expect(error.message).toBe(
        `storage ${file}: cannot be opened for writing (SQLITE_READONLY: attempt to write a readonly database); the file and its directory must be writable by this process (SQLite creates ${file}-wal and ${file}-shm beside it)`,
      );
    } finally {
      undo();
    }
  });

  it('a directory where the -wal and -shm files cannot be created', async () => {
    const file = await database();
    const undo = readOnly(join(file, '..'));
    try {
      const error = openError(file);
      expect(error).toMatchObject({ name: 'XmppConfigError', code: 'PB_ERR_XMPP_STORAGE' });
      expect(error.message).toMatch(
        /^storage .*: cannot be opened for writing \(SQLITE_CANTOPEN: unable to open database file\); the file and its directory must be writable/,
      );
      // And a new database in that directory.
      expect(openError(join(file, '..', 'new.sqlite')).message).toMatch(/cannot be opened for writing \(SQLITE_CANTOPEN/);
    } finally {
      undo();
    }
  });

  it('a directory that does not exist is created; one that cannot be is an error', async () => {
    const file = join(dir, 'missing', 'deeper', 'xmpp.sqlite');
    await open(() => sqliteStorage({ file })).close();
    expect(existsSync(file)).toBe(true);
    const blocker = join(dir, 'a-file');
    writeFileSync(blocker, 'not a directory');
    const error = openError(join(blocker, 'xmpp.sqlite'));
    expect(error).toMatchObject({ name: 'XmppConfigError', code: 'PB_ERR_XMPP_STORAGE' });
    expect(error.message).toMatch(/^storage .*a-file\/xmpp\.sqlite: cannot create its directory .*a-file \(EEXIST: file already exists/);
  });

  it("another application's database whose tables clash with the schema: nothing is changed", () => {
    const file = newFile();
    mkdirSync(join(file, '..'), { recursive: true });
    const other = new Database(file);
    other.exec("CREATE TABLE accounts (id INTEGER PRIMARY KEY, email TEXT); INSERT INTO accounts (email) VALUES ('a@example.com')");
    other.close();
    const error = openError(file);
    expect(error).toMatchObject({ name: 'XmppConfigError', code: 'PB_ERR_XMPP_STORAGE' });
    expect(error.message).toBe(
      `storage ${file}: cannot migrate its schema from version 0 to 1 (SQLITE_ERROR: table accounts already exists); nothing was changed. Is it another application's database?`,
    );
    const after = new Database(file, { readonly: true });
    expect(after.prepare('SELECT email FROM accounts').pluck().all()).toEqual(['a@example.com']);
    expect(after.prepare("SELECT count(*) FROM sqlite_schema WHERE name = 'archive'").pluck().get()).toBe(0);
    expect(after.pragma('journal_mode', { simple: true })).toBe('delete');
    after.close();
  });

  it('a schema written by a newer version', async () => {
    const file = newFile();
    await sqliteStorage({ file }).close();
    const db = new Database(file);
    db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    db.close();
    const error = openError(file);
    expect(error).toMatchObject({ name: 'XmppConfigError', code: 'PB_ERR_XMPP_STORAGE' });
    expect(error.message).toBe(
      `storage ${file}: its schema version is ${SCHEMA_VERSION + 1}, newer than this version of @portbind/xmpp knows (${SCHEMA_VERSION}); upgrade @portbind/xmpp, or open a backup made by this version`,
    );
  });

  it('bad options are PB_ERR_XMPP_OPTION', () => {
    expect(() => sqliteStorage({ file: '' })).toThrow(expect.objectContaining({ code: 'PB_ERR_XMPP_OPTION' }));
    expect(() => sqliteStorage({ file: newFile(), maxBatch: 0 })).toThrow(expect.objectContaining({ code: 'PB_ERR_XMPP_OPTION' }));
    expect(() => sqliteStorage({ file: newFile(), commitDelay: -1 })).toThrow(expect.objectContaining({ code: 'PB_ERR_XMPP_OPTION' }));
    expect(() => sqliteStorage({ file: newFile(), commitDelay: 1.5 })).toThrow(expect.objectContaining({ code: 'PB_ERR_XMPP_OPTION' }));
  });
});
