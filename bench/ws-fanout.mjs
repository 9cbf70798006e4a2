// WebSocket fan-out on one process against two workers sharing a bus (issue 12), side by side in
// the same run:
//   node bench/ws-fanout.mjs [--rounds 3] [--seconds 8] [--connections 200] [--publishers 4] [--window 4]
//                            [--modes single,single+bus,workers]
// Modes: `single` — one process, no bus (broadcast() reaches its own peers); `single+bus` — one
// process with BUS_URL (what the bus costs when nobody else listens); `workers` — WORKERS=2 with
// BUS_URL: the primary hands connections to two workers, each broadcast goes to the sender's
// worker's peers at once and through Redis pub/sub to the other's. The server is
// servers/ws-fanout.mjs; the load ws-fanout-client.mjs (its own process): CONNECTIONS peers, PUBLISHERS
// of them keeping WINDOW broadcasts in flight (a broadcast is done when every peer got it).
// Reports deliveries per second (one message to one peer), latency of a delivery, and CPU of the
// server's processes, of redis-server and of the load generator (utime + stime from /proc).
// Needs Debian's redis-server and a build (npx pnpm@10.34.8 build).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuOf, freePort, startRedisServer, treeCpu } from './support.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const option = (name, fallback) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1] : fallback);
const rounds = Number(option('rounds', 3));
const seconds = Number(option('seconds', 8));
const connections = Number(option('connections', 200));
const publishers = Number(option('publishers', 4));
const window = Number(option('window', 4));
const modes = option('modes', 'single,single+bus,workers').split(',');

const redisServer = await startRedisServer();
const redisPort = redisServer.port;
const redis = redisServer.child;

async function runMode(mode) {
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
  const before = { server: treeCpu(server.pid), redis: cpuOf(redis.pid) };
  const client = spawn(process.execPath, [join(here, 'ws-fanout-client.mjs'), `ws://127.0.0.1:${port}/ws`], {
    env: {
      ...process.env,
      CONNECTIONS: String(connections),
      PUBLISHERS: String(publishers),
      WINDOW: String(window),
      DURATION_MS: String(seconds * 1000),
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  client.stdout.on('data', (chunk) => {
    out += chunk;
  });
  let clientCpu = 0;
  const sampler = setInterval(() => {
    clientCpu = cpuOf(client.pid) || clientCpu;
  }, 200);
  await once(client, 'exit');
  clearInterval(sampler);
  const after = { server: treeCpu(server.pid), redis: cpuOf(redis.pid) };
  server.kill('SIGTERM');
  await once(server, 'exit');
  const result = JSON.parse(out.trim().split('\n').pop());
  const wall = seconds + 2; // the warm-up is in the CPU figures too
  return {
    ...result,
    serverCpu: (after.server - before.server) / 1e6 / wall,
    redisCpu: (after.redis - before.redis) / 1e6 / wall,
    clientCpu: clientCpu / 1e6 / wall,
  };
}

const results = Object.fromEntries(modes.map((mode) => [mode, []]));
console.log(
  `WebSocket fan-out, node ${process.version}: ${connections} peers, ${publishers} publishers × ${window} in flight, ${seconds} s (+2 s warm-up), ${rounds} round(s)\n`,
);
for (let round = 0; round < rounds; round++) {
  const order = modes.map((_, i) => modes[(i + round) % modes.length]);
  for (const mode of order) {
    const r = await runMode(mode);
    results[mode].push(r);
    console.log(
      `  round ${round + 1} ${mode.padEnd(10)} ${Math.round(r.deliveriesPerSecond)} deliveries/s (${Math.round(r.broadcastsPerSecond)} broadcasts/s), p50 ${r.p50?.toFixed(1)} ms, p99 ${r.p99?.toFixed(1)} ms, missed ${r.missed}; CPU server ${(100 * r.serverCpu).toFixed(0)} %, redis ${(100 * r.redisCpu).toFixed(0)} %, load ${(100 * r.clientCpu).toFixed(0)} %`,
    );
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
if (results.single && results.workers) {
  console.log(`\nworkers ÷ single, deliveries/s: **${(row('workers').rate / row('single').rate).toFixed(2)}** (goal ≥ 1.7)`);
}
