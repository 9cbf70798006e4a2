// RESP benchmarks, side by side with a real redis-server in the same run:
//   node bench/resp.mjs [--requests N] [--rounds R]
// 1. Throughput: redis-benchmark -c 50 -n N -t set,get at -P 1 and -P 16 against redis-server,
//    mini-redis (examples/mini-redis) and the bare adapter (servers/resp-portbind.mjs).
// 2. Memory: the server's RSS with 10 000 idle clients connected, and with one client that
//    pipelines 1 000 000 GETs without reading its replies.
// Needs Debian's redis-server and redis-tools, and a build (npx pnpm@10.34.8 build).
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const option = (name, fallback) => {
  const index = args.indexOf(`--${name}`);
  return index === -1 ? fallback : Number(args[index + 1]);
};
const requests = option('requests', 1_000_000);
const rounds = option('rounds', 1);
const idleClients = option('idle', 10_000);
const pipelines = args.includes('--pipelines') ? args[args.indexOf('--pipelines') + 1].split(',').map(Number) : [1, 16];
const memory = !args.includes('--no-memory');
const pipelined = option('pipelined', 1_000_000);

const freePort = () =>
  new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });

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
};

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

function benchmark(port, pipeline) {
  const out = execFileSync(
    'redis-benchmark',
    ['-h', '127.0.0.1', '-p', String(port), '-c', '50', '-n', String(requests), '-t', 'set,get', '-P', String(pipeline), '--csv'],
    {
      encoding: 'utf8',
    },
  );
  const rps = {};
  for (const line of out.split('\n')) {
    const match = /^"(SET|GET)","([\d.]+)"/.exec(line);
    if (match) rps[match[1]] = Number(match[2]);
  }
  return rps;
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
  await new Promise((resolve) => setTimeout(resolve, 2000));
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

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const mb = (bytes) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

console.log(`RESP benchmarks, node ${process.version}, ${requests} requests, ${rounds} round(s)\n`);
const only = args.includes('--only') ? args[args.indexOf('--only') + 1].split(',') : undefined;
const names = Object.keys(targets).filter((name) => only === undefined || only.includes(name));
const results = {};
for (const pipeline of pipelines) {
  for (const name of names) results[`${name} P${pipeline}`] = { SET: [], GET: [] };
  for (let round = 0; round < rounds; round++) {
    const order = names.map((_, i) => names[(i + round) % names.length]);
    for (const name of order) {
      const server = await start(name);
      const rps = benchmark(server.port, pipeline);
      await stop(server);
      results[`${name} P${pipeline}`].SET.push(rps.SET);
      results[`${name} P${pipeline}`].GET.push(rps.GET);
      console.error(`  -P ${pipeline} ${name.padEnd(16)} SET ${rps.SET} GET ${rps.GET}`);
    }
  }
}
console.log('| target | pipeline | SET req/s | GET req/s | SET ratio to Redis | GET ratio to Redis |');
console.log('|---|---:|---:|---:|---:|---:|');
for (const pipeline of pipelines) {
  const redis = results[`redis P${pipeline}`];
  for (const name of names) {
    const r = results[`${name} P${pipeline}`];
    const set = median(r.SET);
    const get = median(r.GET);
    console.log(
      `| ${name} | ${pipeline} | ${set.toFixed(0)} | ${get.toFixed(0)} | ${(set / median(redis.SET)).toFixed(2)} | ${(get / median(redis.GET)).toFixed(2)} |`,
    );
  }
}

if (memory) {
  console.log(
    `\n| target | RSS before | RSS with ${idleClients} idle clients | per client | RSS while one client pipelines ${pipelined} GETs unread |`,
  );
  console.log('|---|---:|---:|---:|---:|');
  for (const name of names.filter((name) => name !== 'portbind (bare)')) {
    const idle = await idleMemory(name);
    const piped = await pipelineMemory(name);
    console.log(
      `| ${name} | ${mb(idle.before)} | ${mb(idle.after)} | ${(idle.perClient / 1024).toFixed(1)} KB | ${mb(piped.after)} (sent ${piped.sent}) |`,
    );
  }
}
