import { memoryBus } from '@portbind/core';
import { describe, expect, it } from 'vitest';
import { readUntil } from '../../../test/support/net.js';
import { defaultModules, type KeyValueStore, memoryStorage, type XmppStorage } from '../src/index.js';
import { push } from '../src/modules/push.js';
import { Raw } from './raw-stream.js';
import { OPEN, rawStartTls, start } from './support.js';

// Login throttling and the in-band registration limit across the processes of one service (issue 12):
// two servers on one memoryBus (`bus.peer()`: another "process"), the same client address. Guesses
// spread over both meet the limit one process alone would apply; so do registrations.

async function twoProcesses(options: { registration?: boolean } = {}) {
  const bus = memoryBus();
  const storage = memoryStorage();
  const a = await start({ ...options, server: { bus, storage } });
  const b = await start({ ...options, server: { bus: bus.peer(), storage } });
  return { a, b };
}

/** One SASL PLAIN attempt on a stream of its own: the <success/> or <failure/> element. */
async function attempt(port: number, user: string, password: string): Promise<string> {
  const socket = await rawStartTls(port);
  try {
    socket.write(OPEN);
    await readUntil(socket, /<\/stream:features>/);
    const payload = Buffer.from(`\u0000${user}\u0000${password}`).toString('base64');
    socket.write(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${payload}</auth>`);
    const answer = await readUntil(socket, /<\/failure>|<success[^>]*\/>|<\/success>/);
    return answer.slice(answer.search(/<failure|<success/));
  } finally {
    socket.destroy();
  }
}

/** One in-band registration on a stream of its own: the IQ answer. */
async function register(port: number, user: string): Promise<string> {
  const socket = await rawStartTls(port);
  try {
    socket.write(OPEN);
    await readUntil(socket, /<\/stream:features>/);
    socket.write(
      `<iq type='set' id='reg'><query xmlns='jabber:iq:register'><username>${user}</username><password>secret-${user}</password></query></iq>`,
    );
    return await readUntil(socket, /id='reg'[\s\S]*?(\/>|<\/iq>)/);
  } finally {
    socket.destroy();
  }
}

/**
 * A shared store with a database's latency: every key-value call answers after a timer, so the calls of
 * two "processes" interleave as they do on a real shared SQLite file or PostgreSQL (the memory store
 * answers within the caller's turn, and two processes' read-modify-writes then never overlap).
 */
function slowShared(storage: XmppStorage): XmppStorage {
  const later = <T>(work: () => Promise<T>): Promise<T> => new Promise((resolve) => setTimeout(resolve, 1)).then(work);
  const slow = (store: KeyValueStore): KeyValueStore => ({
    get: (owner, key) => later(() => store.get(owner, key)),
    set: (owner, key, value) => later(() => store.set(owner, key, value)),
    keys: (owner, prefix) => later(() => store.keys(owner, prefix)),
    clear: (owner) => later(() => store.clear(owner)),
  });
  return {
    users: storage.users,
    keyValue: (name) => slow(storage.keyValue(name)),
    archive: (name) => storage.archive(name),
    close: () => storage.close(),
  };
}

async function until(check: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('limits across the processes of one service', () => {
  it('failed logins on either process count together: the sixth guess is refused wherever it lands', async () => {
    const { a, b } = await twoProcesses();
    for (let i = 0; i < 3; i++) expect(await attempt(a.port, 'juliet', `guess-a${i}`)).toContain('<not-authorized/>');
    for (let i = 0; i < 2; i++) expect(await attempt(b.port, 'juliet', `guess-b${i}`)).toContain('<not-authorized/>');
    // B applies A's failures as they arrive on the bus (asynchronously, as on Redis).
    await until(async () => !b.server.throttle.check('127.0.0.1', 'juliet').allowed, "A's failures counted on B");
    const refused = await attempt(b.port, 'juliet', 'balcony');
    expect(refused).toContain('<temporary-auth-failure/>');
    expect(refused).toContain('too many failed logins');
    expect(await attempt(a.port, 'juliet', 'balcony')).toContain('<temporary-auth-failure/>');
    // Another account from the same address is not locked.
    expect(await attempt(b.port, 'romeo', 'r0meo!')).toContain('<success');
  });

  it('a success clears the pair on every process', async () => {
    const { a, b } = await twoProcesses();
    for (let i = 0; i < 4; i++) expect(await attempt(a.port, 'romeo', `guess-${i}`)).toContain('<not-authorized/>');
    expect(await attempt(a.port, 'romeo', 'r0meo!')).toContain('<success');
    // On B the four failures arrived, then the success that forgets them: two more guesses lock nothing.
    await new Promise((resolve) => setTimeout(resolve, 100));
    for (let i = 0; i < 2; i++) expect(await attempt(b.port, 'romeo', `again-${i}`)).toContain('<not-authorized/>');
    expect(await attempt(b.port, 'romeo', 'r0meo!')).toContain('<success');
  });

  it('in-band registrations from one address count on every process: the sixth in an hour is refused', async () => {
    const { a, b } = await twoProcesses({ registration: true });
    for (const name of ['reg1', 'reg2', 'reg3']) expect(await register(a.port, name)).toContain("type='result'");
    for (const name of ['reg4', 'reg5']) expect(await register(b.port, name)).toContain("type='result'");
    // A's three reach B through the bus (in-process here: well within the pause); without them B has
    // counted two and would accept.
    await new Promise((resolve) => setTimeout(resolve, 200));
    const answer = await register(b.port, 'reg6');
    expect(answer).toContain("<error type='wait'><resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>");
    expect(answer).toContain('too many registrations from this address');
  });

  it('push registrations (XEP-0357) of one account enabled on both processes at once end at maxRegistrations, the newest kept', async () => {
    const bus = memoryBus();
    const storage = slowShared(memoryStorage());
    const modules = [...defaultModules(), push({ maxRegistrations: 2 })];
    const a = await start({ server: { bus, storage, modules } });
    const b = await start({ server: { bus: bus.peer(), storage, modules } });
    const onA = await Raw.login(a.port, 'juliet', 'balcony', 'phone');
    const onB = await Raw.login(b.port, 'juliet', 'balcony', 'tablet');
    // The app server: a client of this server (its full JID), so both processes accept it.
    const enable = (raw: Raw, id: string): Promise<string> =>
      raw.iq(id, `<enable xmlns='urn:xmpp:push:0' jid='romeo@localhost/app' node='${id}'/>`);
    for (let round = 0; round < 4; round++) {
      const answers = await Promise.all([enable(onA, `a${round}`), enable(onB, `b${round}`)]);
      for (const answer of answers) expect(answer).toContain("type='result'");
    }
    const kept = await storage.keyValue('push').keys('juliet');
    expect(kept).toHaveLength(2);
    // The two newest: those of the last round.
    expect(kept.join(' ')).toMatch(/a3/);
    expect(kept.join(' ')).toMatch(/b3/);
  });
});
