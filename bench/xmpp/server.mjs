// portbind's XMPP server for bench/xmpp.mjs, bound on 127.0.0.1 without TLS (`allowPlaintext:
// 'loopback'`: loopback clients may log in with PLAIN), no reading rate limit. Built from modules
// with durable storage: `xmppServer({ domain, storage: sqliteStorage({ file }), modules })`:
// `defaultModules()` (what a user of the package gets) with stream management (`smacks`) and the
// message archive (`mam`) kept, added or taken out as FEATURES says. Prints one JSON line saying what it
// built (API, storage, modules), then "ready" once listening.
//
// Environment: PORT; FEATURES (none, sm, mam or sm+mam); MUC=on (the MUC service on
// conference.localhost, rooms of up to MUC_MAX_USERS occupants, default 1000); DATA_DIR (the SQLite file goes there;
// without it, or with a build that has no sqliteStorage, the storage is in memory and the JSON line
// says so); USERS (accounts user0..user{USERS-1}); IDLE (accounts idle0..idle{IDLE-1}); PASSWORD;
// SQLITE_THREAD=off, SQLITE_COMMIT_DELAY, SQLITE_MAX_BATCH (sqliteStorage options); LOG=warn to write the server's warnings and errors to stderr (default: silent). Exits when stdin
// closes.
//
// A build from before the module host (no defaultModules export) runs the old way: in-memory
// stores, no modules, FEATURES ignored (the runner's probe then reports what it really offers).

import { createRequire } from 'node:module';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { PortService, silentLogger } from '../../packages/core/dist/index.js';
import * as xmpp from '../../packages/xmpp/dist/index.js';

const port = Number(process.env.PORT);
const password = process.env.PASSWORD ?? 'secret';
const userCount = Number(process.env.USERS ?? 50);
const idleCount = Number(process.env.IDLE ?? 0);
const features = process.env.FEATURES ?? 'none';
const dataDir = process.env.DATA_DIR;
const wantSm = features.includes('sm');
const wantMam = features.includes('mam');

const write = (level) => (fields, message) =>
  process.stderr.write(
    `${JSON.stringify({ level, ...(typeof fields === 'string' ? { msg: fields } : { ...fields, err: fields?.err?.stack ?? fields?.err, msg: message }) })}\n`,
  );
const warnLogger = { debug: () => {}, info: () => {}, warn: write('warn'), error: write('error'), child: () => warnLogger };
const logger = process.env.LOG === 'warn' ? warnLogger : silentLogger;

const names = [...Array.from({ length: userCount }, (_, i) => `user${i}`), ...Array.from({ length: idleCount }, (_, i) => `idle${i}`)];
const info = { features };
/** Storage calls by store and method. */
const calls = new Map();
let server;

if (typeof xmpp.defaultModules === 'function') {
  // ---- the module host ----
  let storage;
  if (dataDir !== undefined && typeof xmpp.sqliteStorage === 'function') {
    const file = join(dataDir, 'xmpp.sqlite');
    // SQLITE_THREAD=off: SQLite on the event loop (to tell the storage thread's cost from SQLite's).
    // SQLITE_COMMIT_DELAY / SQLITE_MAX_BATCH / SQLITE_CHECKPOINT_INTERVAL: the store's commitDelay, maxBatch and checkpointInterval (default: the store's own).
    const tuning = {};
    if (process.env.SQLITE_COMMIT_DELAY) tuning.commitDelay = Number(process.env.SQLITE_COMMIT_DELAY);
    if (process.env.SQLITE_MAX_BATCH) tuning.maxBatch = Number(process.env.SQLITE_MAX_BATCH);
    if (process.env.SQLITE_CHECKPOINT_INTERVAL) tuning.checkpointInterval = Number(process.env.SQLITE_CHECKPOINT_INTERVAL);
    storage = xmpp.sqliteStorage({ file, thread: process.env.SQLITE_THREAD !== 'off', ...tuning });
    info.storage = `sqlite (${file})`;
    await seedSqlite(storage, file);
  } else {
    storage = xmpp.memoryStorage();
    info.storage = 'memory';
    for (const name of names) await storage.users.create(name, password);
  }
  storage = counted(storage);
  const isSm = (m) => /^(smacks|sm|stream-?management)$/i.test(m.name);
  const isMam = (m) => /^(mam|archive|message-?archive)$/i.test(m.name);
  // The default modules, with stream management and MAM only as FEATURES says (added when the
  // defaults lack them).
  const defaults = xmpp.defaultModules();
  const modules = defaults.filter((m) => (wantSm || !isSm(m)) && (wantMam || !isMam(m)));
  const missing = [];
  const exported = { smacks: xmpp.smacks, mam: xmpp.mam };
  const factory = async (name) => {
    if (typeof exported[name] === 'function') return exported[name];
    // Not (yet) exported from the package: the module file itself, if the build has it.
    try {
      const module = await import(`../../packages/xmpp/dist/modules/${name === 'smacks' ? 'smacks' : 'mam'}.js`);
      if (typeof module[name] !== 'function') return undefined;
      info.unexported = [...(info.unexported ?? []), name];
      return module[name];
    } catch {
      return undefined;
    }
  };
  for (const [wanted, name, is] of [
    [wantSm, 'smacks', isSm],
    [wantMam, 'mam', isMam],
  ]) {
    if (!wanted || modules.some(is)) continue;
    const make = await factory(name);
    if (make === undefined) missing.push(`${name} (not in this build)`);
    else modules.push(make());
  }
  // MUC=on (the room scenario): the MUC module (XEP-0045) on conference.localhost, at its defaults
  // (rooms locked until the owner's form, history 20, semi-anonymous, archived unless the form says
  // otherwise) but for room sizes: MUC_MAX_USERS occupants a room may be set up for. Replaces a
  // `muc` in the defaults (which cannot be configured from here).
  if (process.env.MUC === 'on') {
    const make = typeof xmpp.muc === 'function' ? xmpp.muc : await importMuc();
    if (make === undefined) missing.push('muc (not in this build)');
    else {
      const at = modules.findIndex((m) => m.name === 'muc');
      if (at !== -1) modules.splice(at, 1);
      modules.push(make({ maxUsers: Number(process.env.MUC_MAX_USERS ?? 1000) }));
    }
  }
  info.api = 'modules';
  info.modules = modules.map((m) => m.name);
  if (missing.length > 0) info.missing = missing;
  server = xmpp.xmppServer({
    domain: 'localhost',
    storage,
    modules,
    allowPlaintext: 'loopback',
    rateLimit: { bytesPerSecond: 0 },
  });
} else {
  // ---- before the module host: in-memory stores, built-in features only ----
  const seeded = new Map();
  if (names.length > 0) {
    const sha1 = xmpp.deriveScram(password, 'sha1');
    const sha256 = xmpp.deriveScram(password, 'sha256');
    for (const name of names) seeded.set(name, { username: name, sha1, sha256 });
  }
  const users = new xmpp.MemoryUserStore({ users: seeded });
  info.api = 'legacy';
  info.storage = 'memory';
  server = xmpp.xmppServer({ domain: 'localhost', users, allowPlaintext: 'loopback', rateLimit: { bytesPerSecond: 0 } });
}

/** The MUC factory from the module's own file, when the package does not export it (yet). */
async function importMuc() {
  try {
    const module = await import('../../packages/xmpp/dist/modules/muc/index.js');
    if (typeof module.muc !== 'function') return undefined;
    info.unexported = [...(info.unexported ?? []), 'muc'];
    return module.muc;
  } catch {
    return undefined;
  }
}

/**
 * The storage as the server sees it, with every call counted by store and method (the runner asks
 * for the counts with "stats" on stdin, to report storage operations per delivered message).
 */
function counted(storage) {
  const wrap = (target, label) => {
    const wrapper = {};
    for (let proto = target; proto !== null && proto !== Object.prototype; proto = Object.getPrototypeOf(proto)) {
      for (const key of Object.getOwnPropertyNames(proto)) {
        if (key === 'constructor' || key in wrapper || typeof target[key] !== 'function') continue;
        const name = `${label}.${key}`;
        wrapper[key] = (...args) => {
          calls.set(name, (calls.get(name) ?? 0) + 1);
          return target[key](...args);
        };
      }
    }
    return wrapper;
  };
  return {
    users: wrap(storage.users, 'users'),
    keyValue: (name) => wrap(storage.keyValue(name), `keyValue(${name})`),
    archive: (name) => wrap(storage.archive(name), `archive(${name})`),
    close: () => storage.close(),
    // The storage thread's "behind" signal, as the server gets it without this wrapper.
    ...(typeof storage.onPressure === 'function' ? { onPressure: (listener) => storage.onPressure(listener) } : {}),
  };
}

/**
 * Accounts in the SQLite file: the first with `users.create()` (PBKDF2, 4096 rounds of SHA-1 and
 * SHA-256), the others as copies of its row with another username — `create()` costs about 2.4 ms
 * of PBKDF2 an account (24 s for 10 000). Logging in still costs the full PBKDF2 per session
 * (PLAIN is checked against the stored SCRAM key), read from the file.
 */
async function seedSqlite(storage, file) {
  if (names.length === 0) return;
  if (!(await storage.users.create(names[0], password))) throw new Error(`could not create ${names[0]}`);
  if (names.length === 1) return;
  const require = createRequire(new URL('../../packages/xmpp/package.json', import.meta.url));
  const Database = require('better-sqlite3');
  const db = new Database(file);
  try {
    db.pragma('busy_timeout = 5000');
    const columns = db
      .prepare('SELECT name FROM pragma_table_info(?)')
      .all('accounts')
      .map((row) => row.name);
    if (!columns.includes('username')) throw new Error(`no accounts.username column in ${file}: ${columns.join(', ')}`);
    const list = columns.map((c) => `"${c}"`).join(', ');
    const select = columns.map((c) => (c === 'username' ? '?' : `"${c}"`)).join(', ');
    const copy = db.prepare(`INSERT INTO accounts (${list}) SELECT ${select} FROM accounts WHERE username = ?`);
    db.transaction(() => {
      for (const name of names.slice(1)) copy.run(name, names[0]);
    })();
  } finally {
    db.close();
  }
  for (const name of [names[1], names.at(-1)]) {
    if ((await storage.users.get(name)) === undefined) throw new Error(`seeded account ${name} not readable through storage.users`);
  }
}

const service = new PortService({ logger, gracePeriodMs: 1000 });
service.bind(server.c2s(), { port, host: '127.0.0.1' });
await service.start();
process.on('SIGTERM', () => service.stop().finally(() => process.exit(0)));
// The runner holds our stdin: if it goes away (even killed), so do we.
process.stdin.on('end', () => process.exit(0));
// "stats" on stdin: one JSON line with the storage calls so far and the process's CPU time.
createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() !== 'stats') return;
  const cpu = process.cpuUsage();
  process.stdout.write(`${JSON.stringify({ stats: Object.fromEntries(calls), cpu: (cpu.user + cpu.system) / 1e6 })}\n`);
});
process.stdout.write(`${JSON.stringify(info)}\nready\n`);
