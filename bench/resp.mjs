// RESP benchmarks, side by side with a real redis-server in the same run:
//   node bench/resp.mjs [--requests N] [--rounds R] [--pipelines 1,16] [--tests set,get,lpush,lpop,zadd,zrange]
//                       [--only redis,mini-redis] [--no-memory | --no-throughput] [--idle 10000] [--warmup 50000]
//                       [--settle 2] [--extra 'name=server.mjs']
// 1. Throughput: redis-benchmark -c 50 -n N -P <p>, one invocation per test, against redis-server,
//    mini-redis (examples/mini-redis), the bare adapter (servers/resp-portbind.mjs, SET/GET only) and
//    `node:net floor` (servers/resp-floor.mjs: a node:net server that only counts commands and answers
//    +OK, the least any Node server spends on a request).
//    Besides req/s, the server's CPU time per request (utime + stime of the server process from
//    /proc/<pid>/stat over the test): on a shared machine the load generator and other jobs move
//    req/s, while the server's own CPU per request barely moves. Tests: set, get, lpush, lpop
//    (redis-benchmark's own), zadd (`zadd myz __rand_int__ m:__rand_int__`, -r 100000) and zrange
//    (`zrange myz 0 9`, after the zadd test filled the set).
// 2. Memory: the server's RSS with 10 000 idle clients connected, and with one client that
//    pipelines 1 000 000 GETs without reading its replies.
// Needs Debian's redis-server and redis-tools, and a build (npx pnpm@10.34.8 build).
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './support.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const option = (name, fallback) => {
  const index = args.indexOf(`--${name}`);
  return index === -1 ? fallback : Number(args[index + 1]);
};
const list = (name, fallback) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1].split(',') : fallback);
const requests = option('requests', 1_000_000);
const rounds = option('rounds', 1);
const idleClients = option('idle', 10_000);
const pipelines = args.includes('--no-throughput') ? [] : list('pipelines', ['1', '16']).map(Number);
const tests = list('tests', ['set', 'get', 'lpush', 'lpop', 'zadd', 'zrange']);
const memory = !args.includes('--no-memory');
const pipelined = option('pipelined', 1_000_000);
const warmup = option('warmup', 50_000);
/** Seconds between the last idle client's connect and the RSS reading. */
const settle = option('settle', 2);

/** redis-benchmark arguments per test; the bare adapter only has SET and GET. */
const testArgs = {
  set: ['-t', 'set'],
  get: ['-t', 'get'],
  lpush: ['-t', 'lpush'],
  lpop: ['-t', 'lpop'],
  zadd: ['-r', '100000', 'zadd', 'myz', '__rand_int__', 'm:__rand_int__'],
  zrange: ['zrange', 'myz', '0', '9'],
};
const supports = (name, test) => !memoryOnly.has(name) && (!bareLike.has(name) || test === 'set' || test === 'get');

/** Servers that only have SET and GET. */
const bareLike = new Set(['portbind (bare)', 'node:net floor']);
const targets = {
  redis: async (port) =>
    spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--maxclients', '20000'], {
      stdio: 'ignore',
    }),
  'mini-redis': async (port) =>
    spawn(process.execPath, [join(here, '..', 'examples', 'mini-redis', 'dist', 'main.js')], {
      env: { ...process.env, RESP_PORT: String(port), PORT: String(await freePort()), HOST: '127.0.0.1', LOG_LEVEL: 'silent' },
      stdio: 'ignore',
    }),
  'portbind (bare)': async (port) =>
    spawn(process.execPath, [join(here, 'servers', 'resp-portbind.mjs')], { env: { ...process.env, PORT: String(port) }, stdio: 'ignore' }),
  // Throughput only (SET and GET): the least any Node server does per request (servers/resp-floor.mjs).
  'node:net floor': async (port) =>
    spawn(process.execPath, [join(here, 'servers', 'resp-floor.mjs')], { env: { ...process.env, PORT: String(port) }, stdio: 'ignore' }),
  // Memory only: what Node itself costs per idle connection (a net.Socket that reads), the floor
  // under any Node server. It answers +PONG to anything.
  'node:net': async (port) =>
    spawn(
      process.execPath,
      [
        '-e',
        `require('node:net').createServer((socket) => { socket.on('error', () => {}); socket.on('data', () => socket.write('+PONG\\r\\n')); }).listen(${port}, '127.0.0.1');`,
      ],
      { stdio: 'ignore' },
    ),
};
const memoryOnly = new Set(['node:net']);
// --extra 'name=path/to/server.mjs' (repeatable): another RESP server with SET and GET, started
// as the bare adapter is (PORT in its environment); e.g. an older build of the adapter, for A/B runs.
for (let i = args.indexOf('--extra'); i !== -1; i = args.indexOf('--extra', i + 1)) {
  const [name, path] = args[i + 1].split('=');
  targets[name] = async (port) => spawn(process.execPath, [path], { env: { ...process.env, PORT: String(port) }, stdio: 'ignore' });
  bareLike.add(name);
}

async function start(name) {
  const port = await freePort();
  const child = await targets[name](port);
  for (let i = 0; i < 200; i++) {
    try {
      const pong = execFileSync('redis-cli', ['-p', String(port), 'PING'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
      if (pong.trim() === 'PONG') break;
    } catch {}
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { port, child };
}

async function stop({ child }) {
  child.kill('SIGKILL');
  await once(child, 'exit');
}

const TICK_US = 1_000_000 / 100; // /proc/<pid>/stat counts in clock ticks (USER_HZ = 100)
const cpuOf = (pid) => {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) * TICK_US; // utime + stime, µs
};

/** One redis-benchmark run of one test: req/s, and the server's CPU µs per request. */
function benchmark(server, pipeline, test, n = requests) {
  const cpuBefore = cpuOf(server.child.pid);
  const out = execFileSync(
    'redis-benchmark',
    ['-h', '127.0.0.1', '-p', String(server.port), '-c', '50', '-n', String(n), '-P', String(pipeline), '--csv', ...testArgs[test]],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
  );
  const cpu = cpuOf(server.child.pid) - cpuBefore;
  const match = /^"[^"]+","([\d.]+)"/m.exec(out);
  return { rps: Number(match?.[1]), cpu: cpu / n };
}

const rssOf = (pid) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) * 1024;

async function idleMemory(name) {
  const server = await start(name);
  await new Promise((resolve) => setTimeout(resolve, 500));
  const before = rssOf(server.child.pid);
  const sockets = [];
  for (let i = 0; i < idleClients; i++) {
    const socket = connect(server.port, '127.0.0.1');
    socket.on('error', () => {});
    sockets.push(socket);
    if (i % 500 === 499) await new Promise((resolve) => setTimeout(resolve, 20));
  }
  await Promise.all(sockets.map((socket) => (socket.connecting ? once(socket, 'connect') : undefined)));
  await new Promise((resolve) => setTimeout(resolve, settle * 1000));
  const after = rssOf(server.child.pid);
  for (const socket of sockets) socket.destroy();
  await stop(server);
  return { before, after, perClient: (after - before) / idleClients };
}

async function pipelineMemory(name) {
  const server = await start(name);
  const before = rssOf(server.child.pid);
  execFileSync('redis-cli', ['-p', String(server.port), 'SET', 'key', 'x'.repeat(100)]);
  const socket = connect(server.port, '127.0.0.1');
  await once(socket, 'connect');
  socket.pause(); // never read the replies
  const get = Buffer.from('*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n');
  const batch = Buffer.concat(Array(1000).fill(get));
  let sent = 0;
  const deadline = Date.now() + 20_000;
  // Write until all are sent or the server stops reading (then the kernel buffers fill and
  // write() keeps returning false): give up waiting after the deadline.
  let drained = true;
  socket.on('drain', () => {
    drained = true;
  });
  while (sent < pipelined && Date.now() < deadline) {
    if (!drained) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      continue;
    }
    drained = socket.write(batch);
    sent += 1000;
  }
  await new Promise((resolve) => setTimeout(resolve, 3000));
  const after = rssOf(server.child.pid);
  socket.destroy();
  await stop(server);
  return { sent, before, after };
}

const mb = (bytes) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

console.log(`RESP benchmarks, node ${process.version}, ${requests} requests, ${rounds} round(s)\n`);
const only = list('only', undefined);
const names = Object.keys(targets).filter((name) => only === undefined || only.includes(name));
const throughputNames = names.filter((name) => !memoryOnly.has(name));
const results = {};
const key = (name, pipeline, test) => `${name} P${pipeline} ${test}`;
for (const pipeline of pipelines) {
  for (let round = 0; round < rounds; round++) {
    const order = throughputNames.map((_, i) => throughputNames[(i + round) % throughputNames.length]);
    for (const name of order) {
      const server = await start(name);
      const line = [];
      // Warm-up (V8's JIT), not measured.
      for (const test of tests.filter((test) => supports(name, test))) benchmark(server, pipeline, test, warmup);
      for (const test of tests.filter((test) => supports(name, test))) {
        const result = benchmark(server, pipeline, test);
        results[key(name, pipeline, test)] ??= [];
        results[key(name, pipeline, test)].push(result);
        line.push(`${test} ${result.rps.toFixed(0)} (${result.cpu.toFixed(2)} µs)`);
      }
      await stop(server);
      console.error(`  round ${round + 1} -P ${pipeline} ${name.padEnd(16)} ${line.join(' ')}`);
    }
  }
}
const fmt = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  return { min: sorted[0], median: sorted[Math.floor(sorted.length / 2)], max: sorted[sorted.length - 1] };
};
if (pipelines.length > 0)
  console.log(
    '| target | -P | test | req/s median (min–max) | ratio to Redis | server CPU µs/request median (min–max) | CPU ratio (Redis µs ÷ target µs) |',
  );
if (pipelines.length > 0) console.log('|---|---:|---|---:|---:|---:|---:|');
for (const pipeline of pipelines) {
  for (const test of tests) {
    const redis = results[key('redis', pipeline, test)];
    for (const name of names) {
      const r = results[key(name, pipeline, test)];
      if (r === undefined) continue;
      const rps = fmt(r.map((x) => x.rps));
      const cpu = fmt(r.map((x) => x.cpu));
      const rpsRatio = redis ? (rps.median / fmt(redis.map((x) => x.rps)).median).toFixed(2) : '—';
      const cpuRatio = redis ? (fmt(redis.map((x) => x.cpu)).median / cpu.median).toFixed(2) : '—';
      console.log(
        `| ${name} | ${pipeline} | ${test.toUpperCase()} | ${rps.median.toFixed(0)} (${rps.min.toFixed(0)}–${rps.max.toFixed(0)}) | ${rpsRatio} | ${cpu.median.toFixed(2)} (${cpu.min.toFixed(2)}–${cpu.max.toFixed(2)}) | ${cpuRatio} |`,
      );
    }
  }
}

if (memory) {
  // Idle clients: `rounds` times per target, targets alternating; median (min–max) per client.
  const idle = {};
  for (let round = 0; round < rounds; round++) {
    for (const name of names.map((_, i) => names[(i + round) % names.length])) {
      const result = await idleMemory(name);
      idle[name] ??= [];
      idle[name].push(result);
      console.error(`  round ${round + 1} ${name.padEnd(16)} idle: ${(result.perClient / 1024).toFixed(2)} KB per client`);
    }
  }
  console.log(
    `\n| target | RSS before | RSS with ${idleClients} idle clients | per client, median (min–max) | RSS while one client pipelines ${pipelined} GETs unread |`,
  );
  console.log('|---|---:|---:|---:|---:|');
  for (const name of names) {
    const runs = idle[name];
    const mid = [...runs].sort((a, b) => a.perClient - b.perClient)[Math.floor(runs.length / 2)];
    const per = fmt(runs.map((run) => run.perClient / 1024));
    const piped = memoryOnly.has(name) ? undefined : await pipelineMemory(name);
    console.log(
      `| ${name} | ${mb(mid.before)} | ${mb(mid.after)} | ${per.median.toFixed(1)} KB (${per.min.toFixed(1)}–${per.max.toFixed(1)}) | ${piped ? `${mb(piped.after)} (sent ${piped.sent})` : '—'} |`,
    );
  }
}
