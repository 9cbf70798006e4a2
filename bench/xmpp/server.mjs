// portbind's XMPP server for bench/xmpp.mjs: xmppServer() with an in-memory account store, bound on
// 127.0.0.1 without TLS (`allowPlaintext: 'loopback'`: loopback clients may log in with PLAIN),
// no reading rate limit. Prints "ready" on stdout once listening.
//
// Environment: PORT; USERS (accounts user0..user{USERS-1}, created with users.create());
// IDLE (accounts idle0..idle{IDLE-1}, seeded into the store, see below); PASSWORD;
// LOG=warn to write the server's warnings and errors to stderr (default: silent). Exits when
// stdin closes.

import { PortService, silentLogger } from '../../packages/core/dist/index.js';
import { deriveScram, MemoryUserStore, xmppServer } from '../../packages/xmpp/dist/index.js';

const port = Number(process.env.PORT);
const password = process.env.PASSWORD ?? 'secret';
const userCount = Number(process.env.USERS ?? 50);
const idleCount = Number(process.env.IDLE ?? 0);

// The idle accounts are seeded through MemoryUserStore's `users` map with one set of derived
// credentials: users.create() runs PBKDF2 (4096 rounds, SHA-1 and SHA-256) synchronously, about
// 2.4 ms an account, 24 s for 10 000. Logging in still costs the full PBKDF2 per session (PLAIN is
// checked against the stored SCRAM-SHA-256 key), and the accounts are in the heap before the
// "before" RSS is read, so they are not counted per session.
const seeded = new Map();
if (idleCount > 0) {
  const sha1 = deriveScram(password, 'sha1');
  const sha256 = deriveScram(password, 'sha256');
  for (let i = 0; i < idleCount; i++) seeded.set(`idle${i}`, { username: `idle${i}`, sha1, sha256 });
}
const users = new MemoryUserStore({ users: seeded });
for (let i = 0; i < userCount; i++) await users.create(`user${i}`, password);

const write = (level) => (fields, message) =>
  process.stderr.write(
    `${JSON.stringify({ level, ...(typeof fields === 'string' ? { msg: fields } : { ...fields, err: fields?.err?.stack ?? fields?.err, msg: message }) })}\n`,
  );
const warnLogger = { debug: () => {}, info: () => {}, warn: write('warn'), error: write('error'), child: () => warnLogger };
const logger = process.env.LOG === 'warn' ? warnLogger : silentLogger;

const server = xmppServer({ domain: 'localhost', users, allowPlaintext: 'loopback', rateLimit: { bytesPerSecond: 0 } });
const service = new PortService({ logger, gracePeriodMs: 1000 });
service.bind(server.c2s(), { port, host: '127.0.0.1' });
await service.start();
process.on('SIGTERM', () => service.stop().finally(() => process.exit(0)));
// The runner holds our stdin: if it goes away (even killed), so do we.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
process.stdout.write('ready\n');
