import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { xml as clientXml, client as xmppClient } from '@xmpp/client';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readUntil, readUntilClose } from '../../../test/support/net.js';
import { type Postgres, startPostgres } from '../../../test/support/postgres.js';
import { StanzaErrorException } from '../src/stanza-error.js';
import {
  type ArchiveItem,
  POSTGRES_SCHEMA_VERSION,
  type PostgresStorage,
  postgresStorage,
  StorageUnavailableError,
  type XmppStorage,
} from '../src/stores/index.js';
import { ARCHIVE_COUNT, archivingPair, burstUntilBehind, saidBehind } from './pressure-support.js';
import { Raw } from './raw-stream.js';
import { capturingLogger, clients, login, OPEN, rawLogin, rawStartTls, start, testCert } from './support.js';

// What only postgresStorage() has (its store semantics are the conformance suite of stores.test.ts): the
// schema in `portbind_schema` migrated once by processes starting together, archive appends of one turn in
// one INSERT, PostgreSQL killed and restarted under a live storage and a live XMPP server, and two XMPP
// servers sharing one database. A real PostgreSQL (Debian's), started by this file on an ephemeral port.

let postgres: Postgres;
let databases = 0;
const opened: XmppStorage[] = [];
const pools: pg.Pool[] = [];

beforeAll(async () => {
  postgres = await startPostgres();
}, 60_000);
afterEach(async () => {
  for (const storage of opened.splice(0)) await storage.close().catch(() => {});
  for (const pool of pools.splice(0)) {
    // pool.end() resolves before its connections have closed: one that PostgreSQL's stop reaches first reports it here.
    pool.on('error', () => {});
    await pool.end().catch(() => {});
  }
});
afterAll(async () => {
  await postgres?.stop();
});

/** A new, empty database: its connection string. */
async function freshDatabase(): Promise<string> {
  const name = `portbind${++databases}`;
  await sql(postgres.url(), `CREATE DATABASE ${name}`);
  return postgres.url(name);
}

/** One statement on a connection of its own. */
async function sql<R extends pg.QueryResultRow>(url: string, text: string, values: unknown[] = []): Promise<R[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<R>(text, values)).rows;
  } finally {
    await client.end();
  }
}

function open(options: Parameters<typeof postgresStorage>[0]): PostgresStorage {
  const storage = postgresStorage({ iterations: 64, ...options });
  opened.push(storage);
  return storage;
}

const rejection = (promise: Promise<unknown>): Promise<unknown> =>
  promise.then(
    (value) => {
      throw new Error(`resolved with ${JSON.stringify(value)}`);
    },
    (error: unknown) => error,
  );

/** Until `check` passes (generous: a 2-core machine shared by others). */
async function eventually<T>(check: () => Promise<T>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

const item = (id: string, when: number, xml = `<message id='${id}'/>`): ArchiveItem => ({ id, when, with: 'bob@localhost', xml });

describe('postgresStorage: the schema', () => {
  it('processes starting together migrate once (advisory lock); reopening applies nothing; the tables are SQLite’s latest', async () => {
    const url = await freshDatabase();
    const storages = Array.from({ length: 4 }, () => open({ url }));
    await Promise.all(storages.map((storage) => storage.ready()));
    expect(await sql(url, 'SELECT version, description FROM portbind_schema ORDER BY version')).toEqual([
      { version: 1, description: expect.stringContaining('SQLite schema version 3') },
    ]);
    expect(POSTGRES_SCHEMA_VERSION).toBe(1);
    const tables = await sql<{ name: string }>(
      url,
      "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name",
    );
    expect(tables.map((table) => table.name)).toEqual(['accounts', 'archive', 'archive_owners', 'key_values', 'portbind_schema']);
    await storages[0]?.keyValue('roster').set('alice', 'k', 1);
    const again = open({ url });
    expect(await again.keyValue('roster').get('alice', 'k')).toBe(1);
    expect(await sql(url, 'SELECT count(*)::int AS n FROM portbind_schema')).toEqual([{ n: 1 }]);
  });

  it('keeps its tables in the schema it is given (created if missing), apart from another one', async () => {
    const url = await freshDatabase();
    const one = open({ url, schema: 'xmpp_one' });
    const two = open({ url, schema: 'xmpp_two' });
    await one.users.create('alice', 'secret');
    expect(await two.users.get('alice')).toBeUndefined();
    expect((await one.users.get('alice'))?.username).toBe('alice');
    const rows = await sql<{ schema: string }>(
      url,
      "SELECT table_schema AS schema FROM information_schema.tables WHERE table_name = 'accounts' ORDER BY 1",
    );
    expect(rows.map((row) => row.schema)).toEqual(['xmpp_one', 'xmpp_two']);
  });

  it('a schema written by a newer version: XmppConfigError PB_ERR_XMPP_STORAGE, at ready() and at every call', async () => {
    const url = await freshDatabase();
    await open({ url }).ready();
    await sql(url, "INSERT INTO portbind_schema (version, description) VALUES (99, 'from the future')");
    const storage = open({ url });
    const error = await rejection(storage.ready());
    expect(error).toMatchObject({ name: 'XmppConfigError', code: 'PB_ERR_XMPP_STORAGE' });
    expect((error as Error).message).toContain('the schema version is 99, newer than this version of @portbind/xmpp knows (1)');
    await expect(storage.users.get('alice')).rejects.toMatchObject({ code: 'PB_ERR_XMPP_STORAGE' });
  });

  it("another application's table of the same name: PB_ERR_XMPP_STORAGE, and nothing was changed", async () => {
    const url = await freshDatabase();
    await sql(url, 'CREATE TABLE key_values (x integer)');
    const error = await rejection(open({ url }).ready());
    expect(error).toMatchObject({ code: 'PB_ERR_XMPP_STORAGE' });
    expect((error as Error).message).toMatch(/cannot migrate the schema from version 0 to 1 \(.*key_values.*\); nothing was changed/);
    expect(await sql(url, "SELECT to_regclass('portbind_schema') IS NULL AS none, to_regclass('accounts') IS NULL AS none2")).toEqual([
      { none: true, none2: true },
    ]);
  });

  it('bad options are XmppConfigError PB_ERR_XMPP_OPTION, thrown by postgresStorage()', () => {
    const pool = new pg.Pool({ connectionString: postgres.url() });
    pools.push(pool);
    for (const options of [
      {},
      { url: '' },
      { url: postgres.url(), pool },
      { url: postgres.url(), schema: 'no spaces' },
      { url: postgres.url(), max: 0 },
      { url: postgres.url(), maxBatch: 1.5 },
      { url: postgres.url(), connectTimeout: -1 },
    ]) {
      expect(() => postgresStorage(options)).toThrow(expect.objectContaining({ code: 'PB_ERR_XMPP_OPTION' }));
    }
  });
});

describe('postgresStorage: batched appends', () => {
  it('the appends and record() calls of one turn are one INSERT, in call order; a row PostgreSQL refuses fails alone', async () => {
    const url = await freshDatabase();
    const pool = new pg.Pool({ connectionString: url, max: 4 });
    pools.push(pool);
    const statements: string[] = [];
    const query = pool.query.bind(pool) as (...args: unknown[]) => unknown;
    (pool as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
      if (typeof args[0] === 'string') statements.push(args[0]);
      return query(...args);
    };
    const storage = open({ url: undefined, pool });
    await storage.ready();
    const archive = storage.archive('mam');
    const failures: Array<[unknown, string]> = [];
    const onError = (error: unknown, owner: string): void => {
      failures.push([error, owner]);
    };
    statements.length = 0;
    for (let i = 0; i < 600; i++) archive.record?.(`user${i % 6}`, item(`m${i}`, i), onError);
    await archive.append('user0', item('last', 1000));
    const inserts = statements.filter((text) => text.startsWith('INSERT INTO archive ('));
    expect(inserts).toHaveLength(1);
    expect(failures).toEqual([]);
    const result = await archive.query('user3');
    expect(result.count).toBe(100);
    expect(result.items.map((entry) => entry.id)).toEqual(Array.from({ length: 100 }, (_, i) => `m${i * 6 + 3}`));

    // PostgreSQL's text has no NUL: that row fails (its onError, with its owner), the others of its turn are written.
    archive.record?.('carol', item('c1', 1), onError);
    archive.record?.('dave', item('bad', 2, '<message>\u0000</message>'), onError);
    await archive.append('carol', item('c2', 3));
    expect(failures).toHaveLength(1);
    expect(failures[0]?.[1]).toBe('dave');
    expect(String(failures[0]?.[0])).toMatch(/0x00/);
    expect((await archive.query('carol')).items.map((entry) => entry.id)).toEqual(['c1', 'c2']);
    expect(await archive.query('dave')).toEqual({ items: [], complete: true, count: 0 });
  });
});

describe('postgresStorage: close', () => {
  it('close() writes what was called before it; calls after it reject (PB_ERR_XMPP_STORAGE), record() calls onError', async () => {
    const url = await freshDatabase();
    const storage = open({ url });
    const failures: unknown[] = [];
    const onError = (error: unknown): void => {
      failures.push(error);
    };
    for (let i = 0; i < 3; i++) storage.archive('mam').record?.('alice', item(`m${i}`, i), onError);
    const set = storage.keyValue('roster').set('alice', 'k', 'v');
    await storage.close();
    await set;
    expect(failures).toEqual([]);
    const reopened = open({ url });
    expect((await reopened.archive('mam').query('alice')).items.map((entry) => entry.id)).toEqual(['m0', 'm1', 'm2']);
    expect(await reopened.keyValue('roster').get('alice', 'k')).toBe('v');
    await expect(storage.keyValue('roster').get('alice', 'k')).rejects.toMatchObject({ code: 'PB_ERR_XMPP_STORAGE' });
    await expect(storage.archive('mam').append('alice', item('late', 9))).rejects.toMatchObject({ code: 'PB_ERR_XMPP_STORAGE' });
    await expect(storage.ready()).rejects.toMatchObject({ code: 'PB_ERR_XMPP_STORAGE' });
    const late = await new Promise<unknown>((resolve) => storage.archive('mam').record?.('alice', item('later', 10), resolve));
    expect(late).toMatchObject({ code: 'PB_ERR_XMPP_STORAGE', message: 'postgresStorage is closed' });
  });
});

describe('postgresStorage: several hosts appending to one archive', () => {
  it('per owner, archive order is commit order: an append waits for another host’s insert in flight on that owner', async () => {
    const url = await freshDatabase();
    const hostA = open({ url });
    const hostB = open({ url });
    await hostA.archive('mam').append('alice', item('a1', 1));
    // Another host's batch, mid-statement: it holds alice's lock and took its seq, not yet committed.
    const other = new pg.Client({ connectionString: url });
    await other.connect();
    let appended = false;
    try {
      await other.query('BEGIN');
      await other.query("SELECT pg_advisory_xact_lock(28770, hashtext('mam/alice'))");
      await other.query(
        `INSERT INTO archive (oid, id, "when", "with", xml)
         SELECT oid, 't1', 2, 'bob@localhost', '<t/>' FROM archive_owners WHERE store = 'mam' AND owner = 'alice'`,
      );
      const append = hostA
        .archive('mam')
        .append('alice', item('a2', 3))
        .then(() => {
          appended = true;
        });
      // Host A's append waits: no row of it (or seq after t1's) is visible before t1 is.
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(appended).toBe(false);
      expect((await hostB.archive('mam').query('alice')).items.map((entry) => entry.id)).toEqual(['a1']);
      await other.query('COMMIT');
      await append;
    } finally {
      await other.end();
    }
    expect((await hostB.archive('mam').query('alice')).items.map((entry) => entry.id)).toEqual(['a1', 't1', 'a2']);
    // Another owner's appends never wait for alice's lock.
    await hostA.archive('mam').append('bob', item('b1', 4));
  });
});

describe('postgresStorage: PostgreSQL unavailable', () => {
  it('calls reject with StorageUnavailableError (a wait/internal-server-error stanza error), record() calls onError, the process lives; restarted, the pool reconnects by itself', async () => {
    const url = await freshDatabase();
    const broken: Error[] = [];
    const storage = open({ url, max: 3, onConnectionError: (error) => broken.push(error) });
    // Connections in the pool, idle when PostgreSQL dies.
    await Promise.all([
      storage.keyValue('roster').set('alice', 'roster', { items: ['bob'] }),
      storage.users.create('alice', 'secret'),
      storage.archive('mam').append('alice', item('m1', 1)),
    ]);
    await postgres.kill();
    try {
      for (const call of [
        () => storage.keyValue('roster').get('alice', 'roster'),
        () => storage.users.get('alice'),
        () => storage.archive('mam').query('alice'),
        () => storage.archive('mam').append('alice', item('m2', 2)),
      ]) {
        const error = await rejection(Promise.resolve(call()));
        expect(error).toBeInstanceOf(StorageUnavailableError);
        expect(error).toBeInstanceOf(StanzaErrorException);
        expect(error).toMatchObject({ condition: 'internal-server-error', type: 'wait', code: 'PB_ERR_XMPP_STORAGE_UNAVAILABLE' });
        expect((error as Error).message).toMatch(/^storage unavailable \(.+\): try again later$/);
      }
      const recorded = await new Promise<[unknown, string]>((resolve) =>
        storage.archive('mam').record?.('alice', item('m3', 3), (error, owner) => resolve([error, owner])),
      );
      expect(recorded[0]).toBeInstanceOf(StorageUnavailableError);
      expect(recorded[1]).toBe('alice');
      // The connections that were idle in the pool broke: told, not thrown.
      await eventually(async () => expect(broken.length).toBeGreaterThan(0));
      // A storage created while PostgreSQL is down: ready() fails the same way, and is tried again later.
      const late = open({ url });
      expect(await rejection(late.ready())).toBeInstanceOf(StorageUnavailableError);
    } finally {
      await postgres.restart();
    }
    // The same storage, no new pool: what was committed before the kill is there, and writes work again.
    expect(await storage.keyValue('roster').get('alice', 'roster')).toEqual({ items: ['bob'] });
    expect((await storage.users.get('alice'))?.username).toBe('alice');
    await storage.archive('mam').append('alice', item('m4', 4));
    expect((await storage.archive('mam').query('alice')).items.map((entry) => entry.id)).toEqual(['m1', 'm4']);
    const late = open({ url });
    await late.ready();
    expect((await late.users.get('alice'))?.username).toBe('alice');
  });
});

describe('postgresStorage: PostgreSQL overloaded', () => {
  it('no free connection in time, or a statement past statementTimeout: StorageUnavailableError resource-constraint (wait)', async () => {
    const url = await freshDatabase();
    await open({ url }).ready();
    // A pool of one connection, held by someone else.
    const pool = new pg.Pool({ connectionString: url, max: 1, connectionTimeoutMillis: 300 });
    pools.push(pool);
    const storage = open({ url: undefined, pool });
    await storage.ready();
    const held = await pool.connect();
    try {
      const error = await rejection(storage.keyValue('roster').get('alice', 'k'));
      expect(error).toBeInstanceOf(StorageUnavailableError);
      expect(error).toMatchObject({ condition: 'resource-constraint', type: 'wait' });
    } finally {
      held.release();
    }
    expect(await storage.keyValue('roster').get('alice', 'k')).toBeUndefined();

    // A table locked by another transaction: the statement is cancelled at statementTimeout (SQLSTATE 57014).
    const slow = open({ url, statementTimeout: 200 });
    await slow.keyValue('roster').set('alice', 'k', 1);
    const locker = new pg.Client({ connectionString: url });
    await locker.connect();
    try {
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE key_values IN ACCESS EXCLUSIVE MODE');
      const error = await rejection(slow.keyValue('roster').get('alice', 'k'));
      expect(error).toBeInstanceOf(StorageUnavailableError);
      expect(error).toMatchObject({ condition: 'resource-constraint', type: 'wait', message: expect.stringContaining('57014') });
      await locker.query('ROLLBACK');
    } finally {
      await locker.end();
    }
    expect(await slow.keyValue('roster').get('alice', 'k')).toBe(1);
  });
});

const REGISTER = (id: string, username: string, password: string) =>
  `<iq type='set' id='${id}'><query xmlns='jabber:iq:register'><username>${username}</username><password>${password}</password></query></iq>`;
const ROSTER_GET = "<query xmlns='jabber:iq:roster'/>";

/** A PLAIN login over a raw TLS stream: what the server answered until it closed or succeeded. */
async function plainLogin(port: number, username: string, password: string): Promise<string> {
  const secure = await rawStartTls(port);
  try {
    secure.write(OPEN);
    await readUntil(secure, /<\/stream:features>/);
    const answer = readUntilClose(secure, 20_000);
    const plain = Buffer.from(`\u0000${username}\u0000${password}`).toString('base64');
    secure.write(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${plain}</auth>`);
    const reply = await Promise.race([
      readUntil(secure, /<success|<failure|<\/stream:stream>/, 20_000),
      answer.then((result) => result.data),
    ]);
    return reply;
  } finally {
    secure.destroy();
  }
}

describe('an XMPP server on postgresStorage', () => {
  it('two servers sharing one database: an account registered on one logs in on the other; roster, offline message and MAM archive cross over', async () => {
    const url = await freshDatabase();
    const storageA = open({ url, iterations: 4096 });
    const storageB = open({ url, iterations: 4096 });
    const a = await start({ registration: true, server: { storage: storageA, users: storageA.users } });
    const b = await start({ server: { storage: storageB, users: storageB.users } });

    // Registered in-band on A.
    const secure = await rawStartTls(a.port);
    secure.write(OPEN);
    await readUntil(secure, /<\/stream:features>/);
    secure.write(REGISTER('r1', 'juliet', 'balcony'));
    expect(await readUntil(secure, /<iq[^>]*id='r1'[^>]*\/>|<\/iq>/)).toMatch(/<iq type='result' id='r1'\/>/);
    secure.write(REGISTER('r2', 'romeo', 'r0meo!'));
    expect(await readUntil(secure, /<iq[^>]*id='r2'[^>]*\/>|<\/iq>/)).toMatch(/<iq type='result' id='r2'\/>/);
    secure.destroy();

    // A real client (SCRAM) logs in on B with it, and puts romeo in its roster there.
    const { xmpp, jid } = await login(b.port, 'juliet', 'balcony', 'phone');
    expect(jid).toBe('juliet@localhost/phone');
    await xmpp.iqCaller.set(
      clientXml('query', { xmlns: 'jabber:iq:roster' }, clientXml('item', { jid: 'romeo@localhost', name: 'Romeo' })),
    );

    // On A, juliet's roster has it; she writes to romeo, who is offline: archived (MAM) and stored offline on A.
    const julietA = await Raw.login(a.port, 'juliet', 'balcony', 'laptop');
    const roster = await julietA.iq('roster', ROSTER_GET, "type='get'");
    expect(roster).toMatch(/<item [^>]*jid='romeo@localhost'[^>]*name='Romeo'|<item [^>]*name='Romeo'[^>]*jid='romeo@localhost'/);
    julietA.send("<message type='chat' to='romeo@localhost' id='c1'><body>wherefore art thou</body></message>");
    await julietA.sync();

    // On B, her archive has the message A archived.
    const julietB = await Raw.login(b.port, 'juliet', 'balcony', 'tablet');
    const archived = await eventually(async () => {
      const id = `q${Math.random().toString(36).slice(2)}`;
      julietB.send(`<iq type='set' id='${id}'><query xmlns='urn:xmpp:mam:2' queryid='${id}'/></iq>`);
      const done = await julietB.next(new RegExp(`^<iq[^>]* id='${id}'`));
      expect(done).toContain("type='result'");
      const results = julietB.take(new RegExp(`queryid='${id}'`));
      const found = results.find((result) => result.includes('wherefore art thou'));
      expect(found).toBeDefined();
      return found as string;
    });
    expect(archived).toContain("to='romeo@localhost'");

    // romeo logs in on B: the offline message A stored is delivered there.
    const romeo = await Raw.login(b.port, 'romeo', 'r0meo!', 'orchard');
    romeo.send('<presence/>');
    const delivered = await romeo.next(/^<message[^>]*>.*wherefore art thou/s);
    expect(delivered).toContain("from='juliet@localhost/laptop'");
  });

  it('PostgreSQL killed: a login fails with an XMPP error, a roster read is a wait/internal-server-error, the server and its sessions live; restarted, logins work again', async () => {
    const url = await freshDatabase();
    const storage = open({ url, iterations: 4096 });
    await storage.users.create('juliet', 'balcony');
    await storage.users.create('romeo', 'r0meo!');
    const { port } = await start({ server: { storage, users: storage.users } });
    const juliet = await Raw.login(port, 'juliet', 'balcony', 'balcony');
    await juliet.iq('r0', ROSTER_GET, "type='get'");

    await postgres.kill();
    try {
      // The login: SASL's temporary-auth-failure, or (as the server answers a failed lookup today) the
      // stream's internal-server-error; never a success, never a hang.
      const refused = await plainLogin(port, 'romeo', 'r0meo!');
      expect(refused).toMatch(
        /<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><temporary-auth-failure\/>|<stream:error><internal-server-error xmlns='urn:ietf:params:xml:ns:xmpp-streams'\/>/,
      );
      expect(refused).not.toContain('<success');
      // A session already open lives: its store reads fail in the protocol's terms, the server still answers.
      const roster = await juliet.iq('r1', ROSTER_GET, "type='get'");
      expect(roster).toMatch(/^<iq [^>]*type='error'/);
      expect(roster).toMatch(/<error type='wait'><internal-server-error xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'\/>/);
      await juliet.sync();
      expect(juliet.closed).toBe(false);
    } finally {
      await postgres.restart();
    }
    // Back: the same server and storage log in again and read the roster.
    expect(await plainLogin(port, 'romeo', 'r0meo!')).toContain('<success');
    const { jid } = await login(port, 'romeo', 'r0meo!', 'orchard');
    expect(jid).toBe('romeo@localhost/orchard');
    expect(await juliet.iq('r2', ROSTER_GET, "type='get'")).toMatch(/^<iq [^>]*type='result'/);
  });
});

/**
 * An XMPP server in a Node process of its own (the package's build, as a user runs it) on postgresStorage:
 * STARTTLS with this run's certificate on 127.0.0.1, in-band registration on. Resolves with its port once it listens.
 */
const SERVER_PROCESS = `
import { PortService } from '@portbind/core';
import { postgresStorage, xmppServer } from './dist/index.js';
const storage = postgresStorage({ url: process.env.PG_URL });
await storage.ready();
const server = xmppServer({ domain: 'localhost', storage, registration: true });
const service = new PortService({ env: {} });
const binding = service.bind(server.c2s(), { port: 0, host: '127.0.0.1', tls: JSON.parse(process.env.TLS_PEMS) });
await service.start();
console.log('listening ' + binding.address.port);
`;
const processes: ChildProcess[] = [];
afterEach(async () => {
  for (const child of processes.splice(0)) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;
  }
});

async function serverProcess(url: string): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', SERVER_PROCESS], {
    cwd: join(dirname(fileURLToPath(import.meta.url)), '..'),
    env: { ...process.env, PG_URL: url, TLS_PEMS: JSON.stringify(testCert()), NODE_OPTIONS: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  processes.push(child);
  let output = '';
  const port = await new Promise<number>((resolve, reject) => {
    const read = (chunk: Buffer): void => {
      output += chunk.toString();
      const match = /listening (\d+)/.exec(output);
      if (match !== null) resolve(Number(match[1]));
    };
    child.stdout?.on('data', read);
    child.stderr?.on('data', read);
    child.once('exit', (code) => reject(new Error(`the server process exited (${code}): ${output}`)));
  });
  return { child, port };
}

/** In-band registration (XEP-0077) over a raw stream. */
async function register(port: number, username: string, password: string): Promise<string> {
  const socket = await rawStartTls(port);
  try {
    socket.write(OPEN);
    await readUntil(socket, /<\/stream:features>/);
    socket.write(REGISTER('r', username, password));
    return await readUntil(socket, /<iq[^>]*id='r'[^>]*\/>|<\/iq>/);
  } finally {
    socket.destroy();
  }
}

describe('an XMPP server on postgresStorage: PostgreSQL behind', () => {
  /** A table lock held elsewhere while juliet sends 300 messages (`filler` in each): the server holds its input, then reads it all. */
  const lockedBurst = async (options: { maxInFlight?: number; maxInFlightChars?: number }, filler = ''): Promise<void> => {
    const url = await freshDatabase();
    const storage = open({ url, ...options });
    const logger = capturingLogger();
    const { port } = await start({ logger, server: { storage } });
    const { juliet, romeo } = await archivingPair(port);
    // Another session holds the archive table: every insert waits.
    const locker = new pg.Client({ connectionString: url });
    await locker.connect();
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE archive IN ACCESS EXCLUSIVE MODE');
    let delivered = 0;
    try {
      await burstUntilBehind(juliet, logger.lines, 300, filler);
      // Held: part of the burst goes on (about 180 of 300 here: what the server had in hand), the rest waits.
      await new Promise((resolve) => setTimeout(resolve, 500));
      delivered = romeo.take(/^<message[^>]* id='p\d+'/).length;
      expect(delivered).toBeLessThan(300);
      expect(saidBehind(logger.lines)).toBe(true);
    } finally {
      await locker.query('COMMIT');
      await locker.end();
    }
    for (let i = delivered; i < 300; i++) await romeo.next(new RegExp(`^<message[^>]* id='p${i}'`), 15_000);
    expect(logger.lines.some((line) => line.message?.includes('the storage caught up'))).toBe(true);
    expect(await romeo.iq('c1', ARCHIVE_COUNT, "type='set'")).toContain('<count>301</count>');
  };

  it('a table lock held elsewhere: the server stops reading from its clients past maxInFlight, and reads again once it caught up; nothing lost', async () => {
    await lockedBurst({ maxInFlight: 100 });
  });

  it('the same past maxInFlightChars: large messages, far fewer than maxInFlight, hold the input by their size', async () => {
    // 300 messages of 2,000 characters: 600 archive rows, 1.2 million characters waiting; 20 times the limit.
    await lockedBurst({ maxInFlight: 1_000_000, maxInFlightChars: 60_000 }, ` ${'x'.repeat(2000)}`);
  });
});

describe('XMPP server processes sharing one PostgreSQL', () => {
  it('two processes started together migrate once; an account registered on one logs in on the other, its archive and offline message too; one SIGKILLed, the other goes on', async () => {
    const url = await freshDatabase();
    const [one, two] = await Promise.all([serverProcess(url), serverProcess(url)]);
    expect(await sql(url, 'SELECT count(*)::int AS n FROM portbind_schema')).toEqual([{ n: 1 }]);
    expect(await register(one.port, 'mercutio', 'queen-mab')).toMatch(/<iq type='result' id='r'\/>/);
    expect(await register(one.port, 'tybalt', 'prince-of-cats')).toMatch(/<iq type='result' id='r'\/>/);

    // mercutio on process two (a real client, SCRAM), writes to tybalt, who is offline.
    const mercutio = xmppClient({
      service: `xmpp://127.0.0.1:${two.port}`,
      domain: 'localhost',
      username: 'mercutio',
      password: 'queen-mab',
      resource: 'a',
      timeout: 8000,
    });
    mercutio.on('error', () => {});
    clients.push(mercutio);
    expect(String(await mercutio.start())).toBe('mercutio@localhost/a');
    await mercutio.send(
      clientXml('message', { type: 'chat', to: 'tybalt@localhost', id: 'x1' }, clientXml('body', {}, 'a plague on both your houses')),
    );
    await mercutio.iqCaller.get(clientXml('query', { xmlns: 'jabber:iq:roster' }));

    // Process two dies; process one has what two wrote.
    two.child.kill('SIGKILL');
    await once(two.child, 'exit');
    const tybalt = xmppClient({
      service: `xmpp://127.0.0.1:${one.port}`,
      domain: 'localhost',
      username: 'tybalt',
      password: 'prince-of-cats',
      resource: 'b',
      timeout: 8000,
    });
    tybalt.on('error', () => {});
    clients.push(tybalt);
    const delivered = new Promise<string>((resolve) => {
      tybalt.on('stanza', (stanza) => {
        if (stanza.is('message') && stanza.getChildText('body') !== null) resolve(stanza.getChildText('body') as string);
      });
    });
    await tybalt.start();
    await tybalt.send(clientXml('presence'));
    expect(await delivered).toBe('a plague on both your houses');

    const archived = await eventually(async () => {
      const socket = await rawLogin(one.port, 'mercutio', 'queen-mab', 'c');
      try {
        socket.write("<iq type='set' id='q'><query xmlns='urn:xmpp:mam:2' queryid='q'/></iq>");
        const answer = await readUntil(socket, /<iq[^>]*id='q'/);
        expect(answer).toContain('a plague on both your houses');
        return answer;
      } finally {
        socket.destroy();
      }
    });
    expect(archived).toContain("to='tybalt@localhost'");
  });
});
