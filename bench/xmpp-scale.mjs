// XMPP on one process against two workers sharing a Redis bus (issue 12), side by side in the same run:
//   node bench/xmpp-scale.mjs [--rounds 3] [--seconds 8] [--clients 50] [--window 10] [--sm on|off]
//                             [--quiet-wait 30] [--nice 0]
// Modes: `one process` — WORKERS=1, no bus (every pair of users on one process); `two workers` —
// WORKERS=2 with BUS_URL: the primary hands connections to two workers in turn, so about half of the
// pairs chat across processes (through each worker's durable stream on Redis) and every presence and
// session entry goes through the bus. Both on an SQLite file in a fresh DATA_DIR (the workers share it),
// default modules (stream management, MAM, carbons…). The load is bench/xmpp/load.mjs's throughput mode:
// CLIENTS users in pairs, WINDOW chat messages in flight each (a closed loop), answering acks. Reports
// delivered msg/s, latency, and the CPU of the server's processes (with their threads), of redis-server
// and of the load generator, and per process (each worker): its sessions, CPU and RSS. The machine is
// shared: each run first waits up to --quiet-wait seconds for a second in which others use less than
// 0.3 of a core, and says how busy it was; --nice N (e.g. -10, as root) gives this run's processes
// priority over others'. Needs Debian's redis-server and a build (npx pnpm@10.34.8 build).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { childrenOf, cpuOf, freePort, niceAutogroup, rssOf, startRedisServer, treeCpu, waitQuiet } from './support.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const option = (name, fallback) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1] : fallback);
const rounds = Number(option('rounds', 3));
const seconds = Number(option('seconds', 8));
const clients = Number(option('clients', 50));
const window = Number(option('window', 10));
const sm = option('sm', 'on');
const quietWait = Number(option('quiet-wait', 30));
const niceness = Number(option('nice', 0));
if (niceness !== 0 && !niceAutogroup(niceness)) throw new Error('--nice: this kernel has no autogroup scheduling');

const redis = await startRedisServer();

async function runMode(mode) {
  const busyBefore = await waitQuiet(quietWait);
  const port = await freePort();
  currentPort = port;
  const dataDir = mkdtempSync(join(tmpdir(), 'portbind-xmpp-scale-'));
  const env = { ...process.env, PORT: String(port), DATA_DIR: dataDir, USERS: String(clients), LOG_LEVEL: 'info' };
  delete env.BUS_URL;
  delete env.WORKERS;
  if (mode === 'two workers') Object.assign(env, { WORKERS: '2', BUS_URL: `redis://127.0.0.1:${redis.port}` });
  const server = spawn(process.execPath, [join(here, 'servers', 'xmpp-scale.mjs')], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolve, reject) => {
    createInterface({ input: server.stdout }).on('line', (line) => line === 'ready' && resolve());
    server.once('exit', (code) => reject(new Error(`${mode}: the server exited (${code})`)));
  });
  const load = spawn(
    process.execPath,
    [
      join(here, 'xmpp', 'load.mjs'),
      'throughput',
      ...['--port', String(port), '--clients', String(clients), '--window', String(window)],
      ...['--seconds', String(seconds), '--warmup', '2', '--sm', sm, '--password', 'secret'],
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let result;
  let start;
  let end;
  const workers = childrenOf(server.pid);
  const serving = workers.length > 0 ? workers : [server.pid];
  const snapshot = () => ({
    server: treeCpu(server.pid),
    redis: cpuOf(redis.child.pid),
    serving: serving.map(cpuOf),
    at: performance.now(),
  });
  createInterface({ input: load.stdout }).on('line', (line) => {
    if (line === 'measure-start') start = snapshot();
    else if (line === 'measure-end') end = { ...snapshot(), rss: serving.map(rssOf), sessions: serving.map(sessionsOf) };
    else if (line.startsWith('{')) result = JSON.parse(line);
  });
  await once(load, 'exit');
  server.kill('SIGTERM');
  await once(server, 'exit');
  rmSync(dataDir, { recursive: true, force: true });
  if (result === undefined || result.error || start === undefined || end === undefined) {
    throw new Error(`${mode}: the load generator failed: ${JSON.stringify(result)}`);
  }
  const wall = (end.at - start.at) / 1000;
  return {
    rate: result.messagesPerSecond,
    p50: result.p50,
    p99: result.p99,
    lost: result.lost,
    errors: result.errors,
    serverCpu: (end.server - start.server) / 1e6 / wall,
    redisCpu: (end.redis - start.redis) / 1e6 / wall,
    loadCpu: result.loadCpu,
    busyBefore,
    processes: serving.map((_pid, k) => ({
      sessions: end.sessions[k],
      cpu: (end.serving[k] - start.serving[k]) / 1e6 / wall,
      rssMiB: end.rss[k] / 2 ** 20,
    })),
  };
}

/** TCP connections a process holds with peers on `port` (its XMPP sessions), from /proc/<pid>/net/tcp and its fds. */
let currentPort = 0;
function sessionsOf(pid) {
  try {
    const inodes = new Set();
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const link = readlinkSync(`/proc/${pid}/fd/${fd}`);
        if (link.startsWith('socket:[')) inodes.add(link.slice(8, -1));
      } catch {}
    }
    const local = currentPort.toString(16).toUpperCase().padStart(4, '0');
    return readFileSync(`/proc/${pid}/net/tcp`, 'utf8')
      .split('\n')
      .slice(1)
      .map((row) => row.trim().split(/\s+/))
      .filter((f) => f.length > 9 && f[1].endsWith(`:${local}`) && f[3] === '01' && inodes.has(f[9])).length;
  } catch {
    return 0;
  }
}

const modes = ['one process', 'two workers'];
const results = Object.fromEntries(modes.map((mode) => [mode, []]));
console.log(
  `XMPP on one process and on two workers over a Redis bus, node ${process.version}: ${clients} clients in pairs, ${window} in flight each, SM ${sm}, ${seconds} s (+2 s warm-up), ${rounds} round(s)${niceness === 0 ? '' : `, nice ${niceness}`}\n`,
);
for (let round = 0; round < rounds; round++) {
  for (let i = 0; i < modes.length; i++) {
    const mode = modes[(i + round) % modes.length];
    const r = await runMode(mode);
    results[mode].push(r);
    console.log(
      `  round ${round + 1} ${mode.padEnd(12)} ${Math.round(r.rate)} msg/s, p50 ${r.p50?.toFixed(1)} ms, p99 ${r.p99?.toFixed(1)} ms, lost ${r.lost}, errors ${r.errors}; CPU server ${(100 * r.serverCpu).toFixed(0)} %, redis ${(100 * r.redisCpu).toFixed(0)} %, load ${(100 * r.loadCpu).toFixed(0)} %; others busy before ${r.busyBefore.toFixed(2)} cores`,
    );
    for (const [k, p] of r.processes.entries()) {
      console.log(`      process ${k + 1}: ${p.sessions} sessions, CPU ${(100 * p.cpu).toFixed(0)} %, RSS ${p.rssMiB.toFixed(0)} MiB`);
    }
  }
}
redis.stop();
const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
console.log('\n| mode | delivered msg/s (median) | p50 | p99 | server CPU | redis-server CPU | load generator CPU |');
console.log('|---|---:|---:|---:|---:|---:|---:|');
for (const mode of modes) {
  const rs = results[mode];
  console.log(
    `| ${mode} | ${Math.round(median(rs.map((r) => r.rate)))} | ${median(rs.map((r) => r.p50)).toFixed(1)} ms | ${median(rs.map((r) => r.p99)).toFixed(1)} ms | ${(100 * median(rs.map((r) => r.serverCpu))).toFixed(0)} % | ${(100 * median(rs.map((r) => r.redisCpu))).toFixed(0)} % | ${(100 * median(rs.map((r) => r.loadCpu))).toFixed(0)} % |`,
  );
}
console.log('\nPer process (medians): | mode | process | sessions | CPU | RSS |');
for (const mode of modes) {
  const rs = results[mode];
  for (let k = 0; k < rs[0].processes.length; k++) {
    const m = (key) => median(rs.map((r) => r.processes[k]?.[key] ?? 0));
    console.log(
      `| ${mode} | ${k + 1} of ${rs[0].processes.length} | ${m('sessions')} | ${(100 * m('cpu')).toFixed(0)} % | ${m('rssMiB').toFixed(0)} MiB |`,
    );
  }
}
const ratio = median(results['two workers'].map((r) => r.rate)) / median(results['one process'].map((r) => r.rate));
console.log(`\ntwo workers ÷ one process, delivered msg/s: **${ratio.toFixed(2)}** (goal ≥ 1.7)`);
process.exit(0);
