// Port unification: what classifying each connection by its first bytes costs, in the same run.
//   node bench/unify.mjs [--rounds N] [--seconds S] [--requests N]
// 1. HTTP/1.1 hello world with wrk (-t1 -c50): bare node:http, @portbind/http on its own port, and
//    the same adapter on a port shared with RESP (servers/unified.mjs); keep-alive, and a new
//    connection per request (`Connection: close`), where every request pays for a classification.
// 2. RESP GET/SET with redis-benchmark (-c 50 -P 1): the bare adapter on its own port vs on the
//    shared port; keep-alive, and a new connection per request (-k 0).
// 3. Per new connection, in this process: connect, one request, close — own port vs shared port,
//    interleaved (machine drift hits both alike); the median latency difference is what
//    classification costs a connection.
// 4. sniff() alone, in this process: nanoseconds per call for each kind of first bytes.
// Needs Debian's wrk and redis-tools, and a build (npx pnpm@10.34.8 build).
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { connect, createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { PortService, silentLogger, sniff } from '@portbind/core';
import { httpAdapter } from '@portbind/http';
import { respAdapter } from '@portbind/resp';
import { freePort } from './support.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const option = (name, fallback) => {
  const index = args.indexOf(`--${name}`);
  return index === -1 ? fallback : Number(args[index + 1]);
};
const rounds = option('rounds', 3);
const seconds = option('seconds', 8);
const requests = option('requests', 500_000);
// --only http|resp|latency|sniff: one part alone.
const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : undefined;

async function startServer(script) {
  const port = await freePort();
  const child = spawn(process.execPath, [join(here, script)], {
    env: { ...process.env, PORT: String(port), LOG_LEVEL: 'silent', NODE_ENV: 'production' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let output = '';
  child.stdout.on('data', (chunk) => {
    output += chunk;
  });
  while (!output.includes('ready')) {
    if (child.exitCode !== null) throw new Error(`${script} exited`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return { child, port };
}

async function stopServer({ child }) {
  child.kill('SIGKILL');
  await once(child, 'exit');
}

function wrk(port, close) {
  const run = (secs) =>
    execFileSync('wrk', ['-t1', '-c50', `-d${secs}s`, ...(close ? ['-H', 'Connection: close'] : []), `http://127.0.0.1:${port}/`], {
      encoding: 'utf8',
    });
  run(2); // warm-up
  return Number(/Requests\/sec:\s+([\d.]+)/.exec(run(seconds))?.[1]);
}

function redisBenchmark(port, keepAlive) {
  const n = keepAlive ? requests : Math.floor(requests / 10);
  const out = execFileSync(
    'redis-benchmark',
    ['-h', '127.0.0.1', '-p', String(port), '-c', '50', '-n', String(n), '-t', 'set,get', '-P', '1', '-k', keepAlive ? '1' : '0', '--csv'],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
  );
  const rps = {};
  for (const line of out.split('\n')) {
    const match = /^"(SET|GET)","([\d.]+)"/.exec(line);
    if (match) rps[match[1]] = Number(match[2]);
  }
  return (rps.SET + rps.GET) / 2;
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

async function suite(title, anchor, targets, load) {
  const results = new Map(targets.map(([label]) => [label, []]));
  for (let round = 0; round < rounds; round++) {
    const order = targets.map((_, i) => targets[(i + round) % targets.length]);
    for (const [label, script] of order) {
      const server = await startServer(script);
      try {
        const value = load(server.port);
        results.get(label).push(value);
        console.error(`  ${title} round ${round + 1}: ${label.padEnd(28)} ${value.toFixed(0)}`);
      } finally {
        await stopServer(server);
      }
    }
  }
  const base = median(results.get(anchor));
  console.log(`\n${title} (median of ${rounds} rounds)`);
  console.log('| target | median | ratio |\n|---|---:|---:|');
  for (const [label, values] of results) {
    console.log(`| ${label} | ${Math.round(median(values)).toLocaleString('en')} | ${(median(values) / base).toFixed(3)} |`);
  }
}

const httpTargets = [
  ['node:http', 'servers/http-raw.mjs'],
  ['portbind http, own port', 'servers/http-portbind.mjs'],
  ['portbind http, shared port', 'servers/unified.mjs'],
];
const respTargets = [
  ['portbind resp, own port', 'servers/resp-portbind.mjs'],
  ['portbind resp, shared port', 'servers/unified.mjs'],
];
console.log(`node ${process.version}, wrk -t1 -c50 ${seconds}s, redis-benchmark -c 50 -P 1 -t set,get`);
if (only === undefined || only === 'http') {
  await suite('HTTP/1.1 keep-alive, req/s', 'node:http', httpTargets, (port) => wrk(port, false));
  await suite('HTTP/1.1 a new connection per request, req/s', 'node:http', httpTargets, (port) => wrk(port, true));
}
if (only === undefined || only === 'resp') {
  await suite('RESP keep-alive -P 1, req/s (SET and GET averaged)', 'portbind resp, own port', respTargets, (port) =>
    redisBenchmark(port, true),
  );
  await suite('RESP a new connection per request (-k 0), req/s', 'portbind resp, own port', respTargets, (port) =>
    redisBenchmark(port, false),
  );
}
if (only === undefined || only === 'latency') {
  const handler = (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('Hello, World!');
  };
  const own = new PortService({ logger: silentLogger, env: {} });
  const ownHttp = own.bind(httpAdapter({ handler }), { port: 0, host: '127.0.0.1' });
  const ownResp = own.bind(respAdapter(), { port: 0, host: '127.0.0.1' });
  const shared = new PortService({ logger: silentLogger, env: {}, portSharing: { join: true } });
  const sharedPort = shared.bind(httpAdapter({ handler }), { port: 0, host: '127.0.0.1' });
  shared.bind(respAdapter());
  await own.start();
  await shared.start();
  const once = (port, request) =>
    new Promise((resolve, reject) => {
      const started = performance.now();
      const socket = connect(port, '127.0.0.1', () => socket.write(request));
      socket.on('data', () => socket.end());
      socket.on('close', () => resolve(performance.now() - started));
      socket.on('error', reject);
    });
  const httpRequest = 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n';
  const respRequest = '*1\r\n$4\r\nPING\r\n';
  const samples = { httpOwn: [], httpShared: [], respOwn: [], respShared: [] };
  const count = option('connections', 2000);
  for (let i = 0; i < count; i++) {
    samples.httpOwn.push(await once(ownHttp.address.port, httpRequest));
    samples.httpShared.push(await once(sharedPort.address.port, httpRequest));
    samples.respOwn.push(await once(ownResp.address.port, respRequest));
    samples.respShared.push(await once(sharedPort.address.port, respRequest));
  }
  const ms = (values) => median(values);
  console.log(`\nper new connection: connect, one request, close (in process, ${count} each, interleaved; median ms)`);
  console.log('| protocol | own port | shared port | difference |\n|---|---:|---:|---:|');
  for (const [label, a, b] of [
    ['HTTP/1.1', samples.httpOwn, samples.httpShared],
    ['RESP', samples.respOwn, samples.respShared],
  ]) {
    console.log(`| ${label} | ${ms(a).toFixed(3)} | ${ms(b).toFixed(3)} | ${ms(b) - ms(a) >= 0 ? '+' : ''}${(ms(b) - ms(a)).toFixed(3)} |`);
  }
  await own.stop();
  await shared.stop();
}
if (only !== undefined && only !== 'sniff') process.exit(0);

// sniff() alone on typical first bytes, including a real ClientHello captured from node:tls.
async function clientHello() {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const accepted = once(server, 'connection');
  const client = tlsConnect({
    port: server.address().port,
    host: '127.0.0.1',
    ALPNProtocols: ['h2', 'http/1.1'],
    servername: 'example.com',
  });
  client.on('error', () => {});
  const [socket] = await accepted;
  let hello = Buffer.alloc(0);
  for await (const chunk of socket) {
    hello = Buffer.concat([hello, chunk]);
    if (hello.length >= 5 && hello.length >= 5 + hello.readUInt16BE(3)) break;
  }
  client.destroy();
  socket.destroy();
  server.close();
  return hello;
}
const samples = [
  ['HTTP request line', Buffer.from('GET /api/notes?limit=10 HTTP/1.1\r\nHost: localhost:5000\r\n\r\n')],
  ['RESP array', Buffer.from('*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n')],
  ['RESP inline line', Buffer.from('SET greeting hello\r\n')],
  ['XMPP stream header', Buffer.from("<?xml version='1.0'?><stream:stream to='localhost'>")],
  ['TLS ClientHello', await clientHello()],
];
console.log('\nsniff() per call (in process, after warm-up)\n| first bytes | bytes | ns/call |\n|---|---:|---:|');
for (const [label, bytes] of samples) {
  for (let i = 0; i < 200_000; i++) sniff(bytes);
  const n = 1_000_000;
  const started = process.hrtime.bigint();
  for (let i = 0; i < n; i++) sniff(bytes);
  const ns = Number(process.hrtime.bigint() - started) / n;
  console.log(`| ${label} | ${bytes.length} | ${ns.toFixed(0)} |`);
}
