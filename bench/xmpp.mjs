// XMPP benchmark: portbind's XmppServer side by side with Debian's Prosody in the same run, on
// loopback, both without TLS (SASL PLAIN over plain TCP):
//   node bench/xmpp.mjs [--seconds 10] [--clients 50] [--idle 10000] [--rounds 3] [--window 10]
//                       [--warmup 2] [--only prosody,portbind] [--install] [--keep]
// 1. Throughput and latency: CLIENTS users in pairs send chat messages to their partner's full JID,
//    WINDOW in flight per client (xmpp/load.mjs throughput); delivered msg/s, p50 and p99 latency.
// 2. Memory: the server's RSS (VmRSS) before and after IDLE sessions log in and stay idle
//    (xmpp/load.mjs idle, spread over processes of at most 5 000 sessions); --idle 0 skips it.
// Every measurement starts its server fresh as a child process on a free port; rounds rotate the
// order of the servers and the tables report medians. Needs a build (npx tsc -b) and Prosody
// (apt-get install prosody; --install runs it). Prosody runs as a child process with its own
// config and data in a temp dir, never as the system service.
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const args = process.argv.slice(2);
const option = (name, fallback) => {
  const index = args.indexOf(`--${name}`);
  return index === -1 ? fallback : Number(args[index + 1]);
};
const seconds = option('seconds', 10);
const clients = option('clients', 50);
const idleSessions = option('idle', 10_000);
const rounds = option('rounds', 3);
const window = option('window', 10);
const warmup = option('warmup', 2);
const keep = args.includes('--keep');
const only = args.includes('--only') ? args[args.indexOf('--only') + 1].split(',') : undefined;
const password = 'secret';
const SESSIONS_PER_LOADER = 5000;
/** Standard output of a command, '' when it cannot run. */
const output = (file, argv) => (spawnSync(file, argv, { encoding: 'utf8' }).stdout ?? '').trim();
const CLK_TCK = Number(output('getconf', ['CLK_TCK'])) || 100;

// ---------------------------------------------------------------------------------------------
// Child processes: every one is tracked and killed on the way out, errors and signals included.

const children = new Set();
function track(child) {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}
function killAll() {
  for (const child of children) {
    try {
      child.kill('SIGKILL');
    } catch {}
  }
}
let workDir;
process.on('exit', () => {
  killAll();
  if (workDir !== undefined && !keep) rmSync(workDir, { recursive: true, force: true });
});
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    console.error(`\n${signal}: stopping every server and load generator`);
    process.exit(130);
  });
}

async function stopChild(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGKILL');
  await once(child, 'exit');
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const freePort = () =>
  new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });

const canConnect = (port) =>
  new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });

const rssOf = (pid) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) * 1024;
/** CPU seconds (user + system) the process has used. */
const cpuOf = (pid) => {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
};

/** Lines of a child's stream, as they come. */
function lines(stream, onLine) {
  createInterface({ input: stream }).on('line', onLine);
}

// ---------------------------------------------------------------------------------------------
// Preconditions: a build, Prosody, enough file descriptors.

const fail = (message) => {
  console.error(message);
  process.exit(1);
};

for (const pkg of ['core', 'xmpp']) {
  if (!existsSync(join(root, 'packages', pkg, 'dist', 'index.js')))
    fail(`packages/${pkg}/dist is missing: build first (cd ${root} && npx tsc -b)`);
}

const which = (command) => output('/bin/sh', ['-c', `command -v ${command}`]);
const names = ['prosody', 'portbind'].filter((name) => only === undefined || only.includes(name));
if (names.includes('prosody') && (which('prosody') === '' || which('prosodyctl') === '')) {
  if (args.includes('--install')) {
    console.error('installing prosody: apt-get install -y prosody (the system service is not used)');
    const installed = spawnSync('apt-get', ['install', '-y', 'prosody'], { stdio: 'inherit' });
    if (installed.status !== 0 || which('prosody') === '') fail('apt-get install -y prosody failed');
  } else {
    fail(
      "Prosody is not installed. Install Debian's package with\n  apt-get install prosody\n(or run this script with --install), or benchmark portbind alone with --only portbind.",
    );
  }
}
const prosodyVersion = names.includes('prosody')
  ? (/Prosody ([\w.+-]+)/.exec(spawnSync('prosodyctl', ['about'], { encoding: 'utf8' }).stdout)?.[1] ?? 'unknown')
  : undefined;

// Servers and loaders inherit this process's limit on open files; raise the soft limit when needed.
const ulimit = (flag) => Number(output('/bin/sh', ['-c', `ulimit ${flag}`])) || Number.POSITIVE_INFINITY;
const softFiles = ulimit('-Sn');
const hardFiles = ulimit('-Hn');
const filesNeeded = Math.max(idleSessions, clients) + 1024;
if (filesNeeded > hardFiles)
  fail(`--idle ${idleSessions} needs about ${filesNeeded} open files, and the hard limit (ulimit -Hn) is ${hardFiles}`);
const raiseFiles = filesNeeded > softFiles;
/** Runs the command under a raised `ulimit -n` if needed (exec keeps the pid). */
const command = (file, argv) => (raiseFiles ? ['sh', ['-c', `ulimit -n ${filesNeeded} && exec "$@"`, 'sh', file, ...argv]] : [file, argv]);

// ---------------------------------------------------------------------------------------------
// Prosody: a config, data and log in a temp dir; accounts registered with prosodyctl.

workDir = mkdtempSync(join(tmpdir(), 'portbind-xmpp-bench-'));
const isRoot = process.getuid?.() === 0;
// Prosody refuses to run as root: as root, run it (and prosodyctl) as Debian's prosody user.
const prosodyUser = (() => {
  if (!isRoot || !names.includes('prosody')) return undefined;
  const id = (flag) => {
    const value = output('id', [flag, 'prosody']);
    return value === '' ? Number.NaN : Number(value);
  };
  const uid = id('-u');
  const gid = id('-g');
  if (!Number.isInteger(uid) || uid === 0) fail('running as root, and there is no "prosody" user to run Prosody as');
  return { uid, gid };
})();
const prosodyDir = join(workDir, 'prosody');

function prosodyConfig(port) {
  return `-- Written by bench/xmpp.mjs: a throwaway Prosody on loopback, no TLS, no persistence worth keeping.
daemonize = false
pidfile = "${prosodyDir}/prosody.pid"
data_path = "${prosodyDir}/data"
certificates = "${prosodyDir}/certs"
plugin_paths = {}
network_backend = "epoll"
-- The listen backlog Node uses (511) instead of Prosody's 128, which overflows when hundreds of
-- clients connect at once (a few dozen of 10 000 logins then fail with ECONNRESET).
network_settings = { tcp_backlog = 511 }
modules_enabled = { "roster"; "saslauth"; "disco"; "ping"; }
-- c2s, presence, message and iq are always loaded; no federation, no offline storage.
modules_disabled = { "s2s"; "s2s_auth_certs"; "offline"; }
c2s_ports = { ${port} }
c2s_interfaces = { "127.0.0.1" }
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_plain"
storage = "internal"
log = { error = "${prosodyDir}/prosody.err"; warn = "${prosodyDir}/prosody.warn" }
VirtualHost "localhost"
`;
}

function chownTree(path) {
  if (prosodyUser === undefined) return;
  chownSync(path, prosodyUser.uid, prosodyUser.gid);
  if (!statSync(path).isDirectory()) return;
  for (const entry of readdirSync(path)) chownTree(join(path, entry));
}

function setUpProsody() {
  mkdirSync(join(prosodyDir, 'data'), { recursive: true });
  mkdirSync(join(prosodyDir, 'certs'), { recursive: true });
  const config = join(prosodyDir, 'prosody.cfg.lua');
  writeFileSync(config, prosodyConfig(5222));
  chownTree(workDir);
  // One account the documented way, to learn where and how internal_plain stores it …
  const registered = spawnSync('prosodyctl', ['--config', config, 'register', 'user0', 'localhost', password], { encoding: 'utf8' });
  const accounts = join(prosodyDir, 'data', 'localhost', 'accounts');
  const template = join(accounts, 'user0.dat');
  if (registered.status !== 0 || !existsSync(template)) {
    fail(`prosodyctl register failed (status ${registered.status}):\n${registered.stdout}${registered.stderr}`);
  }
  // … then the rest as copies of that file (prosodyctl takes ~70 ms an account: 12 minutes for 10 000).
  const record = readFileSync(template);
  const names = [...Array.from({ length: clients }, (_, i) => `user${i}`), ...Array.from({ length: idleSessions }, (_, i) => `idle${i}`)];
  for (const name of names) if (name !== 'user0') writeFileSync(join(accounts, `${name}.dat`), record);
  chownTree(workDir);
}

// ---------------------------------------------------------------------------------------------
// Servers.

async function waitReady(child, port, name, readyLine) {
  const deadline = Date.now() + 30_000;
  let exited;
  child.once('exit', (code, signal) => {
    exited = `exited with ${signal ?? code}`;
  });
  let ready = false;
  if (readyLine) {
    lines(child.stdout, (line) => {
      if (line === 'ready') ready = true;
    });
  }
  while (Date.now() < deadline) {
    if (exited) return `${name} ${exited}`;
    if (readyLine ? ready : await canConnect(port)) return undefined;
    await sleep(50);
  }
  return `${name} did not start listening on 127.0.0.1:${port} within 30 s`;
}

const servers = {
  prosody: async (port) => {
    const config = join(prosodyDir, 'prosody.cfg.lua');
    writeFileSync(config, prosodyConfig(port));
    chownTree(config);
    for (const log of ['prosody.err', 'prosody.warn']) rmSync(join(prosodyDir, log), { force: true });
    const [file, argv] = command('prosody', ['--config', config]);
    const child = track(
      spawn(file, argv, {
        cwd: prosodyDir,
        stdio: ['ignore', 'pipe', 'pipe'],
        ...(prosodyUser ?? {}),
        env: { ...process.env, HOME: prosodyDir },
      }),
    );
    const output = [];
    lines(child.stdout, (line) => output.push(line));
    lines(child.stderr, (line) => output.push(line));
    const problem = await waitReady(child, port, 'prosody', false);
    const logs = () =>
      ['prosody.err', 'prosody.warn']
        .map((log) => join(prosodyDir, log))
        .filter((log) => existsSync(log))
        .flatMap((log) => readFileSync(log, 'utf8').split('\n'))
        .filter((line) => line.trim() !== '' && !/certmanager|'daemonize' option has been deprecated/.test(line));
    if (problem) throw new Error(`${problem}\n${[...output, ...logs()].join('\n')}`);
    return { child, problems: () => [...output.filter((line) => /error|warn/i.test(line)), ...logs()] };
  },
  portbind: async (port, { users, idle }) => {
    const [file, argv] = command(process.execPath, [join(here, 'xmpp', 'server.mjs')]);
    const child = track(
      spawn(file, argv, {
        stdio: ['pipe', 'pipe', 'pipe'],
        env: { ...process.env, PORT: String(port), USERS: String(users), IDLE: String(idle), PASSWORD: password, LOG: 'warn' },
      }),
    );
    const output = [];
    lines(child.stderr, (line) => output.push(line));
    const problem = await waitReady(child, port, 'portbind', true);
    if (problem) throw new Error(`${problem}\n${output.join('\n')}`);
    return { child, problems: () => output };
  },
};

async function startServer(name, accounts) {
  const port = await freePort();
  const server = await servers[name](port, accounts);
  let exit;
  server.child.once('exit', (code, signal) => {
    exit = signal ?? code;
  });
  return { ...server, name, port, died: () => exit };
}

// ---------------------------------------------------------------------------------------------
// Load.

function loader(argv) {
  const [file, rest] = command(process.execPath, [join(here, 'xmpp', 'load.mjs'), ...argv]);
  const child = track(spawn(file, rest, { stdio: ['pipe', 'pipe', 'pipe'] }));
  const stderr = [];
  lines(child.stderr, (line) => stderr.push(line));
  return { child, stderr };
}

async function throughputRun(name) {
  const server = await startServer(name, { users: clients, idle: 0 });
  try {
    const { child, stderr } = loader([
      'throughput',
      '--port',
      String(server.port),
      '--clients',
      String(clients),
      '--window',
      String(window),
      '--seconds',
      String(seconds),
      '--warmup',
      String(warmup),
      '--password',
      password,
    ]);
    let result;
    let cpuStart;
    let rssStart;
    let serverCpu;
    let rssEnd;
    lines(child.stdout, (line) => {
      if (line === 'measure-start') {
        cpuStart = cpuOf(server.child.pid);
        rssStart = rssOf(server.child.pid);
      } else if (line === 'measure-end') {
        serverCpu = (cpuOf(server.child.pid) - cpuStart) / seconds;
        rssEnd = rssOf(server.child.pid);
      } else if (line.startsWith('{')) result = JSON.parse(line);
    });
    const [code] = await once(child, 'exit');
    if (result === undefined || result.error) {
      throw new Error(`${name}: load generator failed (exit ${code}): ${result ? JSON.stringify(result) : ''}\n${stderr.join('\n')}`);
    }
    await sleep(200);
    return { ...result, serverCpu, rssStart, rssEnd, died: server.died(), problems: server.problems() };
  } finally {
    await stopChild(server.child);
  }
}

async function memoryRun(name) {
  const server = await startServer(name, { users: 0, idle: idleSessions });
  const loaders = [];
  try {
    await sleep(1000);
    const before = rssOf(server.child.pid);
    const started = performance.now();
    for (let from = 0; from < idleSessions; from += SESSIONS_PER_LOADER) {
      const count = Math.min(SESSIONS_PER_LOADER, idleSessions - from);
      const load = loader([
        'idle',
        '--port',
        String(server.port),
        '--from',
        String(from),
        '--count',
        String(count),
        '--password',
        password,
      ]);
      load.replies = [];
      load.waiters = [];
      lines(load.child.stdout, (line) => {
        if (!line.startsWith('{')) return;
        const waiter = load.waiters.shift();
        if (waiter) waiter(JSON.parse(line));
        else load.replies.push(JSON.parse(line));
      });
      load.next = () =>
        new Promise((resolve, reject) => {
          if (load.replies.length > 0) return resolve(load.replies.shift());
          load.waiters.push(resolve);
          load.child.once('exit', (code) => reject(new Error(`idle loader exited (${code}): ${load.stderr.join('\n')}`)));
        });
      loaders.push(load);
    }
    const logins = await Promise.all(loaders.map((load) => load.next()));
    const loginSeconds = (performance.now() - started) / 1000;
    const loggedIn = logins.reduce((sum, r) => sum + r.loggedIn, 0);
    const failures = {};
    for (const r of logins) for (const [reason, n] of Object.entries(r.failures)) failures[reason] = (failures[reason] ?? 0) + n;
    await sleep(3000);
    const after = rssOf(server.child.pid);
    await sleep(5000);
    const later = rssOf(server.child.pid);
    const statuses = await Promise.all(
      loaders.map((load) => {
        const reply = load.next();
        load.child.stdin.write('status\n');
        return reply;
      }),
    );
    const open = statuses.reduce((sum, s) => sum + s.open, 0);
    const closedByServer = statuses.reduce((sum, s) => sum + s.closedByServer, 0);
    return {
      before,
      after,
      later,
      loggedIn,
      failures,
      loginSeconds,
      open,
      closedByServer,
      perSession: (after - before) / Math.max(1, loggedIn),
      died: server.died(),
      problems: server.problems(),
    };
  } finally {
    for (const load of loaders) await stopChild(load.child);
    await stopChild(server.child);
  }
}

// ---------------------------------------------------------------------------------------------
// Run.

const median = (values) => {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};
const mb = (bytes) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;
const kb = (bytes) => `${(bytes / 1024).toFixed(1)} KB`;
const int = (n) => Math.round(n).toLocaleString('en-US').replace(/,/g, ' ');
const ms = (n) => n.toFixed(2);
const label = { prosody: `Prosody ${prosodyVersion ?? ''}`.trim(), portbind: 'portbind XmppServer' };

async function main() {
  if (names.includes('prosody')) setUpProsody();
  console.log(
    `XMPP benchmark, node ${process.version}${prosodyVersion ? `, Prosody ${prosodyVersion}` : ''}: ${clients} clients (${clients / 2} pairs), ` +
      `${window} in flight each, ${warmup} s warm-up + ${seconds} s, ${idleSessions} idle sessions, ${rounds} round(s)\n`,
  );
  const results = Object.fromEntries(names.map((name) => [name, { throughput: [], memory: [] }]));
  const issues = [];
  const note = (name, round, what) => issues.push(`${label[name]}, round ${round + 1}: ${what}`);
  for (let round = 0; round < rounds; round++) {
    const order = names.map((_, i) => names[(i + round) % names.length]);
    for (const name of order) {
      const t = await throughputRun(name);
      results[name].throughput.push(t);
      console.error(
        `  round ${round + 1} ${name.padEnd(8)} ${int(t.messagesPerSecond)} msg/s, p50 ${ms(t.p50)} ms, p99 ${ms(t.p99)} ms, ` +
          `server CPU ${(t.serverCpu * 100).toFixed(0)} %, load CPU ${(t.loadCpu * 100).toFixed(0)} %, ${t.messagesPerRead.toFixed(1)} msg per read, per second [${t.perSecond.join(' ')}]`,
      );
      if (t.errors > 0) note(name, round, `${t.errors} messages bounced with an error, e.g. ${t.errorSamples[0]}`);
      if (t.malformed > 0) note(name, round, `${t.malformed} messages without a readable timestamp`);
      if (t.misrouted > 0) note(name, round, `${t.misrouted} messages from someone other than the partner`);
      if (t.lost !== 0) note(name, round, `${t.lost} of the ${clients * window} messages in flight at the end never arrived (within 5 s)`);
      if (t.disconnects.warmup + t.disconnects.measure > 0)
        note(name, round, `disconnects during the load: ${JSON.stringify(t.disconnects)}`);
      if (Object.keys(t.streamErrors).length > 0) note(name, round, `stream errors: ${JSON.stringify(t.streamErrors)}`);
      if (t.died !== undefined) note(name, round, `server exited (${t.died}) during the throughput run`);
      if (t.problems.length > 0) note(name, round, `server log: ${t.problems.slice(0, 5).join(' | ')}`);
      const slowest = Math.min(...t.perSecond.slice(0, Math.floor(seconds)));
      if (slowest < 0.5 * t.messagesPerSecond)
        note(name, round, `a second with ${slowest} messages only (a stall?): [${t.perSecond.join(' ')}]`);
      if (idleSessions > 0) {
        const m = await memoryRun(name);
        results[name].memory.push(m);
        console.error(
          `  round ${round + 1} ${name.padEnd(8)} ${m.loggedIn} idle sessions in ${m.loginSeconds.toFixed(1)} s: RSS ${mb(m.before)} -> ${mb(m.after)} ` +
            `(${mb(m.later)} 5 s later), ${kb(m.perSession)} per session`,
        );
        if (m.loggedIn < idleSessions) note(name, round, `${idleSessions - m.loggedIn} idle logins failed: ${JSON.stringify(m.failures)}`);
        if (m.closedByServer > 0) note(name, round, `${m.closedByServer} idle sessions closed by the server`);
        if (m.died !== undefined) note(name, round, `server exited (${m.died}) during the memory run`);
        if (m.problems.length > 0) note(name, round, `server log: ${m.problems.slice(0, 5).join(' | ')}`);
        if (m.later - m.after > 0.1 * (m.after - m.before)) {
          note(name, round, `RSS kept growing while the sessions were idle: ${mb(m.after)} -> ${mb(m.later)} in 5 s`);
        }
      }
    }
  }

  const summary = Object.fromEntries(
    names.map((name) => {
      const t = results[name].throughput;
      const m = results[name].memory;
      return [
        name,
        {
          rate: median(t.map((r) => r.messagesPerSecond)),
          p50: median(t.map((r) => r.p50)),
          p99: median(t.map((r) => r.p99)),
          cpu: median(t.map((r) => r.serverCpu)),
          rssGrowth: median(t.map((r) => r.rssEnd - r.rssStart)),
          before: median(m.map((r) => r.before)),
          after: median(m.map((r) => r.after)),
          perSession: median(m.map((r) => r.perSession)),
          login: median(m.map((r) => r.loginSeconds)),
        },
      ];
    }),
  );
  const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? (a / b).toFixed(2) : '–');
  const both = names.length === 2;
  const p = summary.portbind;
  const q = summary.prosody;

  console.log(
    `Throughput and latency (medians of ${rounds} round(s); chat messages to a full JID, ${clients} clients, ${window} in flight each):\n`,
  );
  console.log('| server | delivered msg/s | p50 latency | p99 latency | server CPU | RSS growth during the run |');
  console.log('|---|---:|---:|---:|---:|---:|');
  for (const name of names) {
    const s = summary[name];
    console.log(
      `| ${label[name]} | ${int(s.rate)} | ${ms(s.p50)} ms | ${ms(s.p99)} ms | ${(s.cpu * 100).toFixed(0)} % | ${mb(s.rssGrowth)} |`,
    );
  }
  if (both) console.log(`| ratio portbind / Prosody | ${ratio(p.rate, q.rate)} | ${ratio(p.p50, q.p50)} | ${ratio(p.p99, q.p99)} | | |`);

  if (idleSessions > 0) {
    console.log(`\nMemory (medians of ${rounds} round(s); RSS of the server process, ${idleSessions} idle logged-in sessions):\n`);
    console.log(`| server | RSS before | RSS with ${int(idleSessions)} sessions | per idle session | time to log them in |`);
    console.log('|---|---:|---:|---:|---:|');
    for (const name of names) {
      const s = summary[name];
      console.log(`| ${label[name]} | ${mb(s.before)} | ${mb(s.after)} | ${kb(s.perSession)} | ${s.login.toFixed(1)} s |`);
    }
    if (both) {
      console.log(
        `| ratio portbind / Prosody | ${ratio(p.before, q.before)} | ${ratio(p.after, q.after)} | ${ratio(p.perSession, q.perSession)} | ${ratio(p.login, q.login)} |`,
      );
    }
  }

  console.log(
    issues.length === 0
      ? '\nNo errors, disconnects, failed logins or server log lines.'
      : `\nIssues:\n${issues.map((i) => `- ${i}`).join('\n')}`,
  );
}

try {
  await main();
} catch (error) {
  console.error(error instanceof Error ? error.stack : error);
  process.exitCode = 1;
} finally {
  killAll();
}
