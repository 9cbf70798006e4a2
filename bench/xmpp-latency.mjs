// Cross-process latency of XMPP chat at the load Prosody saturates at (issue 12), in one run:
//   node bench/xmpp-latency.mjs [--prosody sm+mam,none] [--rounds 2] [--seconds 8] [--clients 50]
//                               [--window 10] [--saturation-rounds 3] [--modes prosody,one,cross,same]
//                               [--rate R] [--cpu-prof DIR] [--quiet-wait 30] [--nice 0]
// 1. Saturation: Debian's Prosody 0.12 (bench/support.mjs prosodySetUp, the chat set-up of
//    bench/xmpp.mjs) under bench/xmpp/load.mjs's closed loop (CLIENTS users in pairs, WINDOW in flight
//    each): its delivered msg/s, the median of --saturation-rounds runs, is the rate. --prosody says
//    which configuration: `sm+mam` (stream management and the message archive, what portbind's
//    default modules run: the like-for-like rate) and/or `none` (neither: Prosody's highest rate).
//    --rate R skips this and uses R.
// 2. At that fixed rate (load.mjs --rate, an open loop: the same offered load whatever the server
//    does), latency from send to receipt, p50 / p95 / p99, in each mode: `prosody` — Prosody itself
//    at its saturation rate (its queueing there); `one` — portbind on one process, no bus; `cross` —
//    WORKERS=2 with BUS_URL (a real redis-server), every pair of users on *different* workers (the
//    server fixture says which process holds each session; load.mjs --pairing cross); `same` — the
//    same two workers, every pair on one worker. portbind is bench/servers/xmpp-scale.mjs: default
//    modules (stream management, MAM, carbons…) on an SQLite file.
// Reports CPU of the server (per worker too), of redis-server and of the load generator, CPU-µs per
// delivered message, and how busy the machine was (cores used by others) just before each run:
// the machine is shared, so each run first waits up to --quiet-wait seconds for a second in which
// others use less than 0.3 of a core; --nice N (e.g. -10, as root) gives this run's processes
// priority over others' (the autogroup's nice value). --cpu-prof DIR
// writes a V8 CPU profile of every portbind process (primary and workers) into DIR.
// Needs Debian's prosody and redis-server, and a build (npx pnpm@10.34.8 build).
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { childrenOf, cpuOf, freePort, niceAutogroup, prosodySetUp, rssOf, startRedisServer, treeCpu, waitQuiet } from './support.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const option = (name, fallback) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1] : fallback);
const rounds = Number(option('rounds', 2));
const seconds = Number(option('seconds', 8));
const clients = Number(option('clients', 50));
const window = Number(option('window', 10));
const saturationRounds = Number(option('saturation-rounds', 3));
const prosodyModes = option('prosody', 'sm+mam').split(',');
const modes = option('modes', 'prosody,one,cross').split(',');
const fixedRate = Number(option('rate', 0));
const cpuProf = option('cpu-prof', undefined);
const nodeFlags = cpuProf === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', cpuProf];
const quietWait = Number(option('quiet-wait', 30));
const niceness = Number(option('nice', 0));
if (niceness !== 0 && !niceAutogroup(niceness)) throw new Error('--nice: this kernel has no autogroup scheduling');
const PROSODY_MODULES = { 'sm+mam': ['smacks', 'mam'], sm: ['smacks'], mam: ['mam'], none: [] };

const children = new Set();
const track = (child) => {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
};
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(130));

const redis = await startRedisServer();
track(redis.child);
const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
/** Cores others keep busy just before a run (after waiting for a quiet second). */
const load1 = () => waitQuiet(quietWait);

/** Starts bench/servers/xmpp-scale.mjs: `workers` 1 (no bus) or 2 (with BUS_URL). */
async function startPortbind(port, workers) {
  const dataDir = mkdtempSync(join(tmpdir(), 'portbind-xmpp-latency-'));
  const env = { ...process.env, PORT: String(port), DATA_DIR: dataDir, USERS: String(clients), LOG_LEVEL: 'info' };
  delete env.BUS_URL;
  delete env.WORKERS;
  if (workers > 1) Object.assign(env, { WORKERS: String(workers), BUS_URL: `redis://127.0.0.1:${redis.port}` });
  const child = track(
    spawn(process.execPath, [...nodeFlags, join(here, 'servers', 'xmpp-scale.mjs')], { env, stdio: ['ignore', 'pipe', 'inherit'] }),
  );
  await new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (line) => line === 'ready' && resolve());
    child.once('exit', (code) => reject(new Error(`portbind (${workers} worker(s)) exited (${code})`)));
  });
  return {
    child,
    stop: async () => {
      child.kill('SIGTERM');
      await once(child, 'exit');
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** One run of load.mjs throughput against a server; CPU of the server's processes over the window. */
async function measure(server, port, loadArgs) {
  const load = track(
    spawn(
      process.execPath,
      [
        join(here, 'xmpp', 'load.mjs'),
        'throughput',
        ...['--port', String(port), '--clients', String(clients), '--window', String(window)],
        ...['--seconds', String(seconds), '--warmup', '2', '--password', 'secret'],
        ...loadArgs,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    ),
  );
  const snapshot = () => {
    const workers = childrenOf(server.pid);
    return {
      at: performance.now(),
      server: treeCpu(server.pid),
      redis: cpuOf(redis.child.pid),
      workers: new Map(workers.map((pid) => [pid, cpuOf(pid)])),
    };
  };
  // What the processes asked of Redis in the window: calls per second of each command.
  const redisCli = (...argv) => execFileSync('redis-cli', ['-p', String(redis.port), ...argv], { encoding: 'utf8' });
  const commandStats = () =>
    Object.fromEntries(
      [...redisCli('INFO', 'commandstats').matchAll(/^cmdstat_(\w+(?:\|\w+)?):calls=(\d+)/gm)].map((m) => [m[1], Number(m[2])]),
    );
  let result;
  let start;
  let end;
  let commands;
  createInterface({ input: load.stdout }).on('line', (line) => {
    if (line === 'measure-start') {
      redisCli('CONFIG', 'RESETSTAT');
      start = snapshot();
    } else if (line === 'measure-end') {
      end = { ...snapshot(), rss: [server.pid, ...childrenOf(server.pid)].map(rssOf) };
      commands = commandStats();
    } else if (line.startsWith('{')) result = JSON.parse(line);
  });
  await once(load, 'exit');
  if (result === undefined || result.error || start === undefined || end === undefined) {
    throw new Error(`the load generator failed: ${JSON.stringify(result)}`);
  }
  const wall = (end.at - start.at) / 1000;
  const serverCpu = (end.server - start.server) / 1e6 / wall;
  return {
    ...result,
    serverCpu,
    redisCpu: (end.redis - start.redis) / 1e6 / wall,
    workerCpu: [...end.workers].map(([pid, cpu]) => (cpu - (start.workers.get(pid) ?? cpu)) / 1e6 / wall),
    rssMiB: end.rss.map((bytes) => bytes / 2 ** 20),
    cpuUsPerMessage: (serverCpu * 1e6) / result.messagesPerSecond,
    redisCalls: Object.fromEntries(
      Object.entries(commands)
        .filter(([name, calls]) => name !== 'config' && name !== 'info' && calls > 0)
        .sort((a, b) => b[1] - a[1])
        .map(([name, calls]) => [name, Math.round(calls / wall)]),
    ),
  };
}

const prosodies = Object.fromEntries(
  prosodyModes.map((mode) => {
    if (!(mode in PROSODY_MODULES)) throw new Error(`--prosody ${mode}: one of ${Object.keys(PROSODY_MODULES).join(', ')}`);
    return [mode, prosodySetUp({ users: clients, modules: PROSODY_MODULES[mode] })];
  }),
);
process.on('exit', () => {
  for (const p of Object.values(prosodies)) p.remove();
});
const version = Object.values(prosodies)[0]?.version;

async function runProsody(mode, loadArgs) {
  const port = await freePort();
  const prosody = await prosodies[mode].start(port);
  track(prosody.child);
  try {
    return await measure(prosody.child, port, loadArgs);
  } finally {
    prosody.stop();
    await once(prosody.child, 'exit').catch(() => {});
  }
}

const line = (label, r) =>
  `  ${label.padEnd(34)} ${Math.round(r.messagesPerSecond)} msg/s (offered ${Math.round(r.offeredPerSecond ?? 0)}), p50 ${r.p50?.toFixed(1)} / p95 ${r.p95?.toFixed(1)} / p99 ${r.p99?.toFixed(1)} ms, lost ${r.lost}, errors ${r.errors}${r.disconnects.warmup + r.disconnects.measure > 0 ? `, disconnected ${r.disconnects.warmup + r.disconnects.measure} (${JSON.stringify(r.streamErrors).slice(0, 300)})` : ''}${r.errorSamples?.length > 0 ? ` (first error: ${r.errorSamples[0].slice(0, 200)})` : ''}; CPU server ${(100 * r.serverCpu).toFixed(0)} %${r.workerCpu.length > 1 ? ` (${r.workerCpu.map((c) => `${(100 * c).toFixed(0)} %`).join(' + ')})` : ''}, redis ${(100 * r.redisCpu).toFixed(0)} %, load ${(100 * r.loadCpu).toFixed(0)} %; ${r.cpuUsPerMessage.toFixed(0)} CPU-µs/msg; RSS ${r.rssMiB.map((m) => m.toFixed(0)).join('+')} MiB${r.pairs?.perProcess ? `; pairs ${JSON.stringify(r.pairs)}` : ''}; machine busy before: ${r.loadBefore.toFixed(2)} cores
      delivered each second: ${r.perSecond.join(' ')}; max latency ${r.max?.toFixed(0)} ms${
        Object.keys(r.redisCalls).length > 0
          ? `; Redis calls/s: ${Object.entries(r.redisCalls)
              .filter(([name]) => !name.startsWith('config'))
              .map(([name, n]) => `${name} ${n}`)
              .join(', ')}`
          : ''
      }`;

console.log(
  `XMPP latency at Prosody's saturation rate, node ${process.version}, Prosody ${version}: ${clients} clients in pairs, ${seconds} s (+2 s warm-up), ${rounds} round(s)${niceness === 0 ? '' : `, nice ${niceness}`}; load average ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}\n`,
);
const report = [];
for (const prosodyMode of fixedRate > 0 ? ['given'] : prosodyModes) {
  let rate = fixedRate;
  let saturation;
  if (rate === 0) {
    const runs = [];
    for (let i = 0; i < saturationRounds; i++) {
      const loadBefore = await load1();
      const r = { ...(await runProsody(prosodyMode, ['--sm', 'on'])), loadBefore };
      runs.push(r);
      console.log(line(`Prosody ${prosodyMode}, closed loop (window ${window})`, r));
    }
    rate = Math.round(median(runs.map((r) => r.messagesPerSecond)));
    saturation = runs;
    console.log(`  → Prosody (${prosodyMode}) saturates at ${rate} delivered msg/s: the fixed rate\n`);
  }
  const results = Object.fromEntries(modes.map((mode) => [mode, []]));
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < modes.length; i++) {
      const mode = modes[(i + round) % modes.length];
      const loadArgs = ['--sm', 'on', '--rate', String(rate)];
      const loadBefore = await load1();
      let r;
      try {
        if (mode === 'prosody') {
          if (prosodyMode === 'given') continue;
          r = await runProsody(prosodyMode, loadArgs);
        } else {
          const port = await freePort();
          const server = await startPortbind(port, mode === 'one' ? 1 : 2);
          try {
            r = await measure(server.child, port, [...loadArgs, '--pairing', mode === 'one' ? 'index' : mode]);
          } finally {
            await server.stop();
          }
        }
      } catch (error) {
        // A failed run is reported and left out of the medians; the others go on.
        console.log(`  round ${round + 1} ${mode} at ${rate} msg/s FAILED: ${error.message}`);
        continue;
      }
      r.loadBefore = loadBefore;
      results[mode].push(r);
      console.log(line(`round ${round + 1} ${mode} at ${rate} msg/s`, r));
    }
  }
  report.push({ prosodyMode, rate, saturation, results });
}
redis.stop();

const LABELS = {
  prosody: 'Prosody itself',
  one: 'portbind, one process',
  cross: 'portbind, 2 workers, pairs across workers',
  same: 'portbind, 2 workers, pairs on one worker',
};
console.log(
  '\n| fixed rate (Prosody config) | server | delivered msg/s | p50 | p95 | p99 | lost | server CPU (per worker) | redis-server CPU | CPU-µs/msg | others busy before |',
);
console.log('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const { prosodyMode, rate, saturation, results } of report) {
  for (const mode of [...(saturation ? ['saturation'] : []), ...modes]) {
    const rs = mode === 'saturation' ? saturation : results[mode];
    if (rs.length === 0) continue;
    const m = (key) => median(rs.map((r) => r[key]));
    const perWorker =
      rs[0].workerCpu.length > 1
        ? ` (${rs[0].workerCpu.map((_, k) => `${(100 * median(rs.map((r) => r.workerCpu[k] ?? 0))).toFixed(0)}`).join(' + ')} %)`
        : '';
    console.log(
      `| ${rate} (${prosodyMode}) | ${mode === 'saturation' ? `Prosody, closed loop (window ${window}): its saturation` : LABELS[mode]} | ${Math.round(m('messagesPerSecond'))} | ${m('p50').toFixed(1)} ms | ${m('p95').toFixed(1)} ms | **${m('p99').toFixed(1)} ms** | ${rs.reduce((n, r) => n + r.lost, 0)} | ${(100 * m('serverCpu')).toFixed(0)} %${perWorker} | ${(100 * m('redisCpu')).toFixed(0)} % | ${m('cpuUsPerMessage').toFixed(0)} | ${m('loadBefore').toFixed(2)} cores |`,
    );
  }
}
process.exit(0);
