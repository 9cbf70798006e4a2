import { afterEach, describe, expect, it } from 'vitest';
import { readUntil } from '../../../test/support/net.js';
import { MemoryUserStore, type UserStore } from '../src/index.js';
import { capturingLogger, clients, OPEN, rawStartTls, start } from './support.js';

// The account store failing (PostgreSQL down, the storage thread gone) while clients log in or register:
// answers in XMPP's terms that say "the server's problem, try again" — SASL <temporary-auth-failure/>
// (RFC 6120 §6.5.12), which the throttle does not count and after which the same stream may try again;
// in-band registration <internal-server-error/> of type wait, not the <not-acceptable/> that would tell the
// client its username or password is wrong. Raw streams over TLS.

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.stop().catch(() => {})));
});

/** MemoryUserStore whose calls fail while `down` is true, as a store whose database went away. */
function flakyUsers(): { users: UserStore; setDown(down: boolean): void } {
  const inner = new MemoryUserStore({ iterations: 4096 });
  void inner.create('juliet', 'balcony');
  let down = false;
  const fail = (): Promise<never> => Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:5432'));
  const users: UserStore = {
    get: (name) => (down ? fail() : inner.get(name)),
    create: (name, password) => (down ? fail() : inner.create(name, password)),
    setPassword: (name, password) => (down ? fail() : inner.setPassword(name, password)),
    delete: (name) => (down ? fail() : inner.delete(name)),
  };
  return {
    users,
    setDown: (value) => {
      down = value;
    },
  };
}

const plain = (user: string, password: string): string =>
  `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from(`\u0000${user}\u0000${password}`).toString('base64')}</auth>`;

describe('the account store failing', () => {
  it('a login gets SASL temporary-auth-failure, not counted by the throttle; the same stream logs in once the store is back', async () => {
    const logger = capturingLogger();
    const store = flakyUsers();
    const { port } = await start({ logger, server: { users: store.users } });
    store.setDown(true);
    const socket = await rawStartTls(port);
    socket.write(OPEN);
    await readUntil(socket, /<\/stream:features>/);
    // More failures than the throttle allows wrong passwords (5): none of them counts.
    for (let i = 0; i < 7; i++) {
      socket.write(plain('juliet', 'balcony'));
      const failure = await readUntil(socket, /<\/failure>/);
      expect(failure).toContain("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><temporary-auth-failure/>");
      expect(failure).toContain('the account store is unavailable: try again later');
    }
    // SCRAM too: its first message needs the account's salt from the store.
    const first = Buffer.from('n,,n=juliet,r=abcdefghijklmnop').toString('base64');
    socket.write(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>${first}</auth>`);
    expect(await readUntil(socket, /<\/failure>/)).toContain('<temporary-auth-failure/>');
    store.setDown(false);
    socket.write(plain('juliet', 'balcony'));
    expect(await readUntil(socket, /<success/)).toContain("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'");
    socket.destroy();
    expect(logger.lines.filter((line) => line.message === 'XMPP login: the account store failed')).toHaveLength(8);
    expect(logger.lines.some((line) => line.message === 'XMPP login failed')).toBe(false);
    expect(logger.lines.some((line) => line.message === 'XMPP login refused: too many failures')).toBe(false);
  });

  it('in-band registration gets internal-server-error (wait) from a failed store, not-acceptable only for what SASLprep refuses', async () => {
    const logger = capturingLogger();
    const store = flakyUsers();
    const { port } = await start({ logger, registration: true, server: { users: store.users } });
    const socket = await rawStartTls(port);
    socket.write(OPEN);
    await readUntil(socket, /<\/stream:features>/);
    const register = (id: string, user: string, password: string): void => {
      socket.write(
        `<iq type='set' id='${id}'><query xmlns='jabber:iq:register'><username>${user}</username><password>${password}</password></query></iq>`,
      );
    };
    store.setDown(true);
    register('r1', 'nurse', 'garden');
    const down = await readUntil(socket, /<\/iq>/);
    expect(down).toContain("type='error'");
    expect(down).toContain("<error type='wait'><internal-server-error xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>");
    expect(down).not.toContain('not-acceptable');
    store.setDown(false);
    // A password SASLprep refuses (a private-use character): the client's to fix.
    register('r2', 'nurse', '\uE000private');
    const refused = await readUntil(socket, /<\/iq>/);
    expect(refused).toContain("<error type='modify'><not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>");
    register('r3', 'nurse', 'garden');
    expect(await readUntil(socket, /id='r3'/)).toContain("<iq type='result' id='r3'");
    socket.destroy();
    expect(logger.lines.some((line) => line.level === 'error' && line.message === 'in-band registration: the account store failed')).toBe(
      true,
    );
  });
});
