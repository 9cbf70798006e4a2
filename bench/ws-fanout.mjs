// WebSocket fan-out on one process against two workers sharing a bus (issue 12), side by side in
// the same run:
//   node bench/ws-fanout.mjs [--rounds 3] [--seconds 8] [--connections 200] [--publishers 4] [--window 4]
//                            [--modes single,single+bus,workers] [--listeners 0] [--rate 0]
//                            [--quiet-wait 30] [--nice 0]
// Modes: `single` — one process, no bus (broadcast() reaches its own peers); `single+bus` — one
// process with BUS_URL (what the bus costs when nobody else listens); `workers` — WORKERS=2 with
// BUS_URL: the primary hands connections to two workers, each broadcast goes to the sender's
// worker's peers at once and through Redis pub/sub to the other's. The server is
// servers/ws-fanout.mjs; the load ws-fanout-client.mjs (its own process): CONNECTIONS peers, PUBLISHERS
// of them keeping WINDOW broadcasts in flight (a broadcast is done when every peer got it).
// Reports deliveries per second (one message to one peer), latency of a delivery, and CPU of the
// server's processes, of redis-server and of the load generator (utime + stime from /proc, over the
// measured window), and per server process: its peers (sockets it holds, less those it held before
// the load), its CPU and RSS.
// --listeners N: N more peers, from a process of their own (ws-fanout-client.mjs LISTEN_ONLY=1), that
// only read — every broadcast reaches them too — connected before the load; the server's RSS before
// and after they connect gives the memory of a connection. Their deliveries count in the total.
// --rate R: R broadcasts a second (an open loop, ws-fanout-client.mjs RATE) instead of the closed loop.
// The machine is shared: each run first waits up to --quiet-wait seconds for a second in which others
// use less than 0.3 of a core, and reports how busy it was; --nice N (e.g. -10, as root) gives this
// run's processes priority over others' (the autogroup's nice value).
// Needs Debian's redis-server and a build (npx pnpm@10.34.8 build).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, readlinkSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { childrenOf, cpuOf, freePort, niceAutogroup, rssOf, startRedisServer, treeCpu, waitQuiet } from './support.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const option = (name, fallback) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1] : fallback);
const rounds = Number(option('rounds', 3));
const seconds = Number(option('seconds', 8));
const connections = Number(option('connections', 200));
const publishers = Number(option('publishers', 4));
const window = Number(option('window', 4));
const modes = option('modes', 'single,single+bus,workers').split(',');
const listeners = Number(option('listeners', 0));
const rate = Number(option('rate', 0));
const quietWait = Number(option('quiet-wait', 30));
const niceness = Number(option('nice', 0));
if (niceness !== 0 && !niceAutogroup(niceness)) throw new Error('--nice: this kernel has no autogroup scheduling');

/** Sockets a process holds (its peers, plus Redis and IPC connections). */
const socketsOf = (pid) => {
  try {
    return readdirSync(`/proc/${pid}/fd`).filter((fd) => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('socket:');
      } catch {
        return false;
      }
    }).length;
  } catch {
    return 0;
  }
};
/** The processes that serve: the workers, or the single process. */
const servingOf = (server) => {
  const workers = childrenOf(server.pid);
  return workers.length > 0 ? workers : [server.pid];
};
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const redisServer = await startRedisServer();
const redisPort = redisServer.port;
const redis = redisServer.child;

async function runMode(mode) {
  const busyBefore = await waitQuiet(quietWait);
  const port = await freePort();
  const env = { ...process.env, PORT: String(port), LOG_LEVEL: 'silent' };
  delete env.BUS_URL;
  delete env.WORKERS;
  if (mode !== 'single') env.BUS_URL = `redis://127.0.0.1:${redisPort}`;
  if (mode === 'workers') env.WORKERS = '2';
  const server = spawn(process.execPath, [join(here, 'servers', 'ws-fanout.mjs')], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolve, reject) => {
    server.stdout.on('data', (chunk) => chunk.toString().includes('ready') && resolve());
    server.once('exit', () => reject(new Error(`${mode}: the server exited`)));
  });
  await sleep(300);
  const serving = servingOf(server);
  const baseline = { sockets: serving.map(socketsOf), rss: serving.map(rssOf) };
  // Listeners: processes of at most 10 000 connections each (a process's file descriptor limit).
  const listenerProcs = [];
  let listenerRss;
  let listenerSockets;
  for (let from = 0; from < listeners; from += 10_000) {
    const child = spawn(process.execPath, [join(here, 'ws-fanout-client.mjs'), `ws://127.0.0.1:${port}/ws`], {
      env: { ...process.env, LISTEN_ONLY: '1', CONNECTIONS: String(Math.min(10_000, listeners - from)) },
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const results = [];
    createInterface({ input: child.stdout }).on('line', (line) => results.push(JSON.parse(line)));
    child.result = async () => {
      while (results.length < 2 && child.exitCode === null) await sleep(50);
      return results[1];
    };
    while (results.length === 0) {
      if (child.exitCode !== null) throw new Error(`${mode}: a listeners' process exited`);
      await sleep(50);
    }
    listenerProcs.push(child);
  }
  if (listeners > 0) {
    await sleep(1000);
    listenerRss = serving.map(rssOf);
    listenerSockets = serving.map(socketsOf);
  }
  const listenersCpu = () => listenerProcs.reduce((sum, child) => sum + cpuOf(child.pid), 0);
  const snapshot = () => ({
    at: performance.now(),
    server: treeCpu(server.pid),
    redis: cpuOf(redis.pid),
    serving: serving.map(cpuOf),
    sockets: serving.map(socketsOf),
  });
  let before;
  let after;
  const client = spawn(process.execPath, [join(here, 'ws-fanout-client.mjs'), `ws://127.0.0.1:${port}/ws`], {
    env: {
      ...process.env,
      CONNECTIONS: String(connections),
      PUBLISHERS: String(publishers),
      WINDOW: String(window),
      RATE: String(rate),
      DURATION_MS: String(seconds * 1000),
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let result;
  createInterface({ input: client.stdout }).on('line', (line) => {
    if (line === 'measure-start') {
      before = { ...snapshot(), client: cpuOf(client.pid), listener: listenersCpu() };
      for (const child of listenerProcs) child.stdin.write('start\n');
    } else if (line === 'measure-end') {
      for (const child of listenerProcs) child.stdin.write('stop\n');
      after = { ...snapshot(), client: cpuOf(client.pid), listener: listenersCpu(), rss: serving.map(rssOf) };
    } else if (line.startsWith('{')) result = JSON.parse(line);
  });
  await once(client, 'exit');
  const heards = await Promise.all(listenerProcs.map((child) => child.result()));
  for (const child of listenerProcs) child.kill('SIGKILL');
  // Listeners' figures together: deliveries and open peers summed, the worst latency percentiles.
  const heard =
    heards.length === 0
      ? undefined
      : {
          deliveriesPerSecond: heards.reduce((sum, h) => sum + (h?.deliveriesPerSecond ?? 0), 0),
          p50: Math.max(...heards.map((h) => h?.p50 ?? Number.NaN)),
          p99: Math.max(...heards.map((h) => h?.p99 ?? Number.NaN)),
          open: heards.reduce((sum, h) => sum + (h?.open ?? 0), 0),
        };
  server.kill('SIGTERM');
  await once(server, 'exit');
  if (result === undefined || before === undefined || after === undefined) throw new Error(`${mode}: the load generator failed`);
  const wall = (after.at - before.at) / 1000;
  const perSecond = (key) => (after[key] - before[key]) / 1e6 / wall;
  const deliveriesPerSecond = result.deliveriesPerSecond + (heard?.deliveriesPerSecond ?? 0);
  return {
    ...result,
    activeDeliveriesPerSecond: result.deliveriesPerSecond,
    deliveriesPerSecond,
    heard,
    busyBefore,
    serverCpu: perSecond('server'),
    redisCpu: perSecond('redis'),
    clientCpu: perSecond('client') + perSecond('listener'),
    processes: serving.map((_pid, k) => ({
      // Counted when the window opens (when it closes, the load generator may be closing its peers already).
      peers: before.sockets[k] - baseline.sockets[k],
      cpu: (after.serving[k] - before.serving[k]) / 1e6 / wall,
      rssMiB: after.rss[k] / 2 ** 20,
      // Memory of one listener connection on this process: RSS after they connected, less before.
      rssPerListenerKiB:
        listenerRss === undefined ? undefined : (listenerRss[k] - baseline.rss[k]) / 1024 / (listenerSockets[k] - baseline.sockets[k]),
    })),
  };
}

const results = Object.fromEntries(modes.map((mode) => [mode, []]));
console.log(
  `WebSocket fan-out, node ${process.version}: ${connections} peers${listeners > 0 ? ` + ${listeners} that only read` : ''}, ${publishers} publishers × ${rate > 0 ? `${rate} broadcasts/s in all` : `${window} in flight`}, ${seconds} s (+2 s warm-up), ${rounds} round(s)${niceness === 0 ? '' : `, nice ${niceness}`}; load average ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}\n`,
);
for (let round = 0; round < rounds; round++) {
  const order = modes.map((_, i) => modes[(i + round) % modes.length]);
  for (const mode of order) {
    const r = await runMode(mode);
    results[mode].push(r);
    console.log(
      `  round ${round + 1} ${mode.padEnd(10)} ${Math.round(r.deliveriesPerSecond)} deliveries/s (${Math.round(r.broadcastsPerSecond)} broadcasts/s), p50 ${r.p50?.toFixed(1)} ms, p99 ${r.p99?.toFixed(1)} ms, missed ${r.missed}; CPU server ${(100 * r.serverCpu).toFixed(0)} %, redis ${(100 * r.redisCpu).toFixed(0)} %, load ${(100 * r.clientCpu).toFixed(0)} %; others busy before: ${r.busyBefore.toFixed(2)} cores`,
    );
    for (const [k, p] of r.processes.entries()) {
      console.log(
        `      process ${k + 1}: ${p.peers} peers, CPU ${(100 * p.cpu).toFixed(0)} %, RSS ${p.rssMiB.toFixed(0)} MiB${p.rssPerListenerKiB === undefined ? '' : `, ${p.rssPerListenerKiB.toFixed(1)} KiB per connection`}`,
      );
    }
    if (r.heard) {
      console.log(
        `      listeners: ${Math.round(r.heard.deliveriesPerSecond)} deliveries/s, p50 ${r.heard.p50?.toFixed(1)} ms, p99 ${r.heard.p99?.toFixed(1)} ms, ${r.heard.open} of ${listeners} still open`,
      );
    }
  }
}
redis.kill('SIGKILL');
const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
};
const row = (mode) => {
  const rs = results[mode];
  return {
    rate: median(rs.map((r) => r.deliveriesPerSecond)),
    p99: median(rs.map((r) => r.p99)),
    server: median(rs.map((r) => r.serverCpu)),
    redis: median(rs.map((r) => r.redisCpu)),
    load: median(rs.map((r) => r.clientCpu)),
    missed: rs.reduce((sum, r) => sum + r.missed, 0),
  };
};
console.log('\n| mode | deliveries/s (median) | p99 | server CPU | redis-server CPU | load generator CPU | missed (all rounds) |');
console.log('|---|---:|---:|---:|---:|---:|---:|');
for (const mode of modes) {
  const r = row(mode);
  console.log(
    `| ${mode} | ${Math.round(r.rate)} | ${r.p99?.toFixed(1)} ms | ${(100 * r.server).toFixed(0)} % | ${(100 * r.redis).toFixed(0)} % | ${(100 * r.load).toFixed(0)} % | ${r.missed} |`,
  );
}
console.log('\nPer process (medians): | mode | process | peers | deliveries/s written | CPU | RSS | p99 |');
for (const mode of modes) {
  const rs = results[mode];
  const count = rs[0].processes.length;
  for (let k = 0; k < count; k++) {
    const m = (f) => median(rs.map((r) => f(r, r.processes[k])));
    // A process writes each broadcast to its own peers: its share of the deliveries is its share of the peers.
    const total = connections + listeners;
    console.log(
      `| ${mode} | ${k + 1} of ${count} | ${m((_, p) => p.peers)} | ${Math.round(m((r, p) => (r.deliveriesPerSecond * p.peers) / total))} | ${(100 * m((_, p) => p.cpu)).toFixed(0)} % | ${m((_, p) => p.rssMiB).toFixed(0)} MiB${listeners > 0 ? ` (${m((_, p) => p.rssPerListenerKiB).toFixed(1)} KiB/connection)` : ''} | ${m((r) => r.p99).toFixed(1)} ms |`,
    );
  }
}
if (results.single && results.workers) {
  console.log(`\nworkers ÷ single, deliveries/s: **${(row('workers').rate / row('single').rate).toFixed(2)}** (goal ≥ 1.7)`);
}
