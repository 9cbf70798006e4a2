// What the benchmark scripts share: a free port, a process's CPU time and memory, a real redis-server of
// their own, and a throwaway Prosody.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A free TCP port on 127.0.0.1 (for servers that cannot bind port 0 and report it). */
export const freePort = () =>
  new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });

/** /proc/<pid>/stat counts in clock ticks (USER_HZ = 100). */
const TICK_US = 1_000_000 / 100;

/** A process's CPU time so far, user + system, in µs (0 once it is gone). */
export const cpuOf = (pid) => {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) * TICK_US;
  } catch {
    return 0;
  }
};

/** CPU time so far, in µs, of a process and its children (a node:cluster primary and its workers). */
export const treeCpu = (pid) => {
  let children = [];
  try {
    children = execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .filter(Boolean)
      .map(Number);
  } catch {}
  return cpuOf(pid) + children.reduce((sum, child) => sum + cpuOf(child), 0);
};

/** Debian's redis-server on a free port, no persistence, its files in the temp dir; resolves once it answers PING. */
export async function startRedisServer(extra = []) {
  const port = await freePort();
  const child = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      mkdtempSync(join(tmpdir(), 'portbind-bench-redis-')),
      ...extra,
    ],
    { stdio: 'ignore' },
  );
  for (let i = 0; i < 200; i++) {
    try {
      const pong = execFileSync('redis-cli', ['-p', String(port), 'PING'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
      if (pong.trim() === 'PONG') break;
    } catch {}
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { port, child, stop: () => child.kill('SIGKILL') };
}

/** The process ids of a process's children (a node:cluster primary's workers). */
export const childrenOf = (pid) => {
  try {
    return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
};

/** A process's resident memory (VmRSS) in bytes, 0 once it is gone. */
export const rssOf = (pid) => {
  try {
    return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
  } catch {
    return 0;
  }
};

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const canConnect = (port) =>
  new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });

/**
 * Debian's Prosody (0.12) as a child process with a config, accounts and data of its own in a temp dir —
 * the chat set-up of bench/xmpp.mjs (c2s on loopback without TLS, PLAIN, internal_plain accounts,
 * file storage; roster, carbons, offline messages, disco, ping, plus `modules`: "smacks" for stream
 * management, "mam" for the archive), never the system service. As root it runs as Debian's prosody
 * user (Prosody refuses root). Accounts user0..user{users-1} with `password`. `start(port)` starts a
 * fresh one (every earlier archive, roster or offline message removed) and resolves once it accepts
 * connections; `remove()` deletes the temp dir.
 */
export function prosodySetUp({ users = 50, password = 'secret', modules = [] } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'portbind-bench-prosody-'));
  const owner = (() => {
    if (process.getuid?.() !== 0) return undefined;
    const id = (flag) => Number(spawnSync('id', [flag, 'prosody'], { encoding: 'utf8' }).stdout.trim() || Number.NaN);
    const uid = id('-u');
    const gid = id('-g');
    if (!Number.isInteger(uid) || uid === 0) throw new Error('running as root, and there is no "prosody" user to run Prosody as');
    return { uid, gid };
  })();
  const chownTree = (path) => {
    if (owner === undefined) return;
    chownSync(path, owner.uid, owner.gid);
    if (statSync(path).isDirectory()) for (const entry of readdirSync(path)) chownTree(join(path, entry));
  };
  const config = join(dir, 'prosody.cfg.lua');
  const writeConfig = (port) =>
    writeFileSync(
      config,
      `-- Written by bench/support.mjs: a throwaway Prosody on loopback, no TLS.
daemonize = false
pidfile = "${dir}/prosody.pid"
data_path = "${dir}/data"
certificates = "${dir}/certs"
plugin_paths = {}
network_backend = "epoll"
network_settings = { tcp_backlog = 511 }
modules_enabled = { "roster"; "saslauth"; "disco"; "ping"; "carbons"; "offline"; ${modules.map((m) => `"${m}"; `).join('')}}
modules_disabled = { "s2s"; "s2s_auth_certs"; }
c2s_ports = { ${port} }
c2s_interfaces = { "127.0.0.1" }
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_plain"
storage = "internal"
log = { error = "${dir}/prosody.err"; warn = "${dir}/prosody.warn" }
VirtualHost "localhost"
`,
    );
  mkdirSync(join(dir, 'data'), { recursive: true });
  mkdirSync(join(dir, 'certs'), { recursive: true });
  writeConfig(5222);
  chownTree(dir);
  // One account the documented way, the rest as copies of its file (prosodyctl takes ~70 ms an account).
  const registered = spawnSync('prosodyctl', ['--config', config, 'register', 'user0', 'localhost', password], { encoding: 'utf8' });
  const accounts = join(dir, 'data', 'localhost', 'accounts');
  if (registered.status !== 0 || !existsSync(join(accounts, 'user0.dat'))) {
    throw new Error(`prosodyctl register failed (status ${registered.status}):\n${registered.stdout}${registered.stderr}`);
  }
  const record = readFileSync(join(accounts, 'user0.dat'));
  for (let i = 1; i < users; i++) writeFileSync(join(accounts, `user${i}.dat`), record);
  chownTree(dir);
  const version = /Prosody ([\w.+-]+)/.exec(spawnSync('prosodyctl', ['about'], { encoding: 'utf8' }).stdout)?.[1] ?? 'unknown';
  return {
    dir,
    version,
    async start(port) {
      writeConfig(port);
      const hostData = join(dir, 'data', 'localhost');
      for (const entry of readdirSync(hostData)) if (entry !== 'accounts') rmSync(join(hostData, entry), { recursive: true, force: true });
      chownTree(dir);
      const child = spawn('prosody', ['--config', config], {
        cwd: dir,
        stdio: ['ignore', 'ignore', 'pipe'],
        ...(owner ?? {}),
        env: { ...process.env, HOME: dir },
      });
      let stderr = '';
      child.stderr.on('data', (chunk) => {
        stderr += chunk;
      });
      for (let waited = 0; ; waited += 50) {
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`prosody exited: ${stderr}`);
        if (await canConnect(port)) break;
        if (waited > 30_000) {
          child.kill('SIGKILL');
          throw new Error(`prosody did not listen on ${port} within 30 s: ${stderr}`);
        }
        await sleep(50);
      }
      return { child, stop: () => child.kill('SIGKILL') };
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** CPU seconds the whole machine has been busy (all cores), from /proc/stat. */
export const machineBusy = () => {
  const [user, nice, system, , , irq, softirq, steal] = readFileSync('/proc/stat', 'utf8')
    .split('\n')[0]
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  return (user + nice + system + irq + softirq + (steal ?? 0)) / 100;
};

/**
 * The machine is shared: wait (up to `maxSeconds`) for a second in which it is busy less than `cores`
 * (nothing of ours runs meanwhile). Resolves with the cores busy in the last second sampled.
 */
export async function waitQuiet(maxSeconds = 60, cores = 0.3) {
  let busy = Number.POSITIVE_INFINITY;
  for (let waited = 0; waited < maxSeconds; waited++) {
    const before = machineBusy();
    await sleep(1000);
    busy = machineBusy() - before;
    if (busy < cores) break;
  }
  return busy;
}

/**
 * `--nice N` for a benchmark on a shared machine: sets the nice value of this run's autogroup (the
 * runner and every child it starts share its session, so servers, Redis and load generators alike),
 * put back on exit. Negative values need root; false when the kernel has no autogroup scheduling.
 */
export function niceAutogroup(niceness) {
  if (niceness === 0) return false;
  if (readFileSync('/proc/sys/kernel/sched_autogroup_enabled', 'utf8').trim() !== '1') return false;
  const before = /nice (-?\d+)/.exec(readFileSync('/proc/self/autogroup', 'utf8'))?.[1] ?? '0';
  writeFileSync('/proc/self/autogroup', String(niceness));
  process.on('exit', () => {
    try {
      writeFileSync('/proc/self/autogroup', before);
    } catch {}
  });
  return true;
}
