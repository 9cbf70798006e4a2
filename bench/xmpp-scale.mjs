// XMPP on one process against two workers sharing a Redis bus (issue 12), side by side in the same run:
//   node bench/xmpp-scale.mjs [--rounds 3] [--seconds 8] [--clients 50] [--window 10] [--sm on|off]
// Modes: `one process` — WORKERS=1, no bus (every pair of users on one process); `two workers` —
// WORKERS=2 with BUS_URL: the primary hands connections to two workers in turn, so about half of the
// pairs chat across processes (through each worker's durable stream on Redis) and every presence and
// session entry goes through the bus. Both on an SQLite file in a fresh DATA_DIR (the workers share it),
// default modules (stream management, MAM, carbons…). The load is bench/xmpp/load.mjs's throughput mode:
// CLIENTS users in pairs, WINDOW chat messages in flight each (a closed loop), answering acks. Reports
// delivered msg/s, latency, and the CPU of the server's processes (with their threads), of redis-server
// and of the load generator. Needs Debian's redis-server and a build (npx pnpm@10.34.8 build).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { cpuOf, freePort, startRedisServer, treeCpu } from './support.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const option = (name, fallback) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1] : fallback);
const rounds = Number(option('rounds', 3));
const seconds = Number(option('seconds', 8));
const clients = Number(option('clients', 50));
const window = Number(option('window', 10));
const sm = option('sm', 'on');

const redis = await startRedisServer();

async function runMode(mode) {
  const port = await freePort();
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
  createInterface({ input: load.stdout }).on('line', (line) => {
    if (line === 'measure-start') start = { server: treeCpu(server.pid), redis: cpuOf(redis.child.pid), at: performance.now() };
    else if (line === 'measure-end') end = { server: treeCpu(server.pid), redis: cpuOf(redis.child.pid), at: performance.now() };
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
  };
}

const modes = ['one process', 'two workers'];
const results = Object.fromEntries(modes.map((mode) => [mode, []]));
console.log(
  `XMPP on one process and on two workers over a Redis bus, node ${process.version}: ${clients} clients in pairs, ${window} in flight each, SM ${sm}, ${seconds} s (+2 s warm-up), ${rounds} round(s)\n`,
);
for (let round = 0; round < rounds; round++) {
  for (let i = 0; i < modes.length; i++) {
    const mode = modes[(i + round) % modes.length];
    const r = await runMode(mode);
    results[mode].push(r);
    console.log(
      `  round ${round + 1} ${mode.padEnd(12)} ${Math.round(r.rate)} msg/s, p50 ${r.p50?.toFixed(1)} ms, p99 ${r.p99?.toFixed(1)} ms, lost ${r.lost}, errors ${r.errors}; CPU server ${(100 * r.serverCpu).toFixed(0)} %, redis ${(100 * r.redisCpu).toFixed(0)} %, load ${(100 * r.loadCpu).toFixed(0)} %`,
    );
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
const ratio = median(results['two workers'].map((r) => r.rate)) / median(results['one process'].map((r) => r.rate));
console.log(`\ntwo workers ÷ one process, delivered msg/s: **${ratio.toFixed(2)}** (goal ≥ 1.7)`);
process.exit(0);
