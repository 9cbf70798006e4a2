// The 40-million-argument client of issue 7, against the demo's RESP port and a real redis-server
// in the same run:
//   node bench/resp-flood.mjs [--args 40000000] [--no-build]
// One unauthenticated client sends `*40000002\r\n$3\r\nDEL\r\n` and then `$1\r\na\r\n` forty
// million times (280 MB) — a multibulk that never completes. Meanwhile another client sends PING
// every 100 ms. Reported per server: peak RSS while flooding, whether the flooding client was
// disconnected (and after how many bytes), whether the server is alive afterwards, and how the
// other client was served, and what the server held per byte sent ((peak RSS − RSS before) ÷ bytes
// on the wire). Not part of CI. Needs Debian's redis-server.
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './support.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const option = (name, fallback) => {
  const index = args.indexOf(`--${name}`);
  return index === -1 ? fallback : Number(args[index + 1]);
};
const count = option('args', 40_000_000);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const rssOf = (pid) => {
  try {
    return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) * 1024;
  } catch {
    return 0;
  }
};
const mb = (bytes) => `${(bytes / 1024 / 1024).toFixed(0)} MB`;

async function ping(port, timeoutMs = 5000) {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {});
  try {
    await Promise.race([once(socket, 'connect'), sleep(timeoutMs).then(() => Promise.reject(new Error('connect timeout')))]);
    socket.write('PING\r\n');
    const [data] = await Promise.race([once(socket, 'data'), sleep(timeoutMs).then(() => Promise.reject(new Error('reply timeout')))]);
    return String(data) === '+PONG\r\n';
  } catch {
    return false;
  } finally {
    socket.destroy();
  }
}

async function startDemo() {
  const [port, respPort, xmppPort] = [await freePort(), await freePort(), await freePort()];
  const child = spawn(process.execPath, [join(root, 'examples/http-embed/dist/main.js')], {
    env: {
      ...process.env,
      PORT: String(port),
      RESP_PORT: String(respPort),
      XMPP_PORT: String(xmppPort),
      HOST: '127.0.0.1',
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let logs = '';
  child.stdout.on('data', (chunk) => {
    logs += chunk;
  });
  child.stderr.on('data', (chunk) => {
    logs += chunk;
  });
  return { name: 'portbind demo (examples/http-embed)', child, port: respPort, logs: () => logs };
}

async function startRedis() {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let logs = '';
  child.stdout.on('data', (chunk) => {
    logs += chunk;
  });
  const version = execFileSync('redis-server', ['--version'], { encoding: 'utf8' }).match(/v=(\S+)/)?.[1];
  return { name: `redis-server ${version}`, child, port, logs: () => logs };
}

async function flood(server) {
  for (let i = 0; i < 200 && !(await ping(server.port, 500)); i++) await sleep(50);
  const pid = server.child.pid;
  const rssBefore = rssOf(pid);
  let peak = rssBefore;
  const sampler = setInterval(() => {
    peak = Math.max(peak, rssOf(pid));
  }, 20);

  // The other client: PING every 100 ms, on one connection, throughout.
  const other = connect(server.port, '127.0.0.1');
  other.on('error', () => {});
  await once(other, 'connect');
  let pongs = 0;
  let unanswered = 0;
  let worstMs = 0;
  let otherRunning = true;
  const otherLoop = (async () => {
    while (otherRunning) {
      const sent = Date.now();
      other.write('PING\r\n');
      const answered = await new Promise((resolve) => {
        const timer = setTimeout(() => done(false), 10_000);
        const done = (value) => {
          clearTimeout(timer);
          other.off('data', onData);
          resolve(value);
        };
        const onData = () => done(true);
        other.on('data', onData);
      });
      if (answered) {
        pongs++;
        worstMs = Math.max(worstMs, Date.now() - sent);
      } else {
        unanswered++;
      }
      if (other.destroyed) return;
      await sleep(100);
    }
  })();

  const offender = connect(server.port, '127.0.0.1');
  offender.on('error', () => {});
  await once(offender, 'connect');
  let closed = false;
  offender.once('close', () => {
    closed = true;
  });
  const started = Date.now();
  offender.write(`*${count + 2}\r\n$3\r\nDEL\r\n`);
  const perPiece = 10_000;
  const piece = Buffer.from('$1\r\na\r\n'.repeat(perPiece));
  let sentArgs = 0;
  while (!closed && sentArgs < count) {
    const n = Math.min(perPiece, count - sentArgs);
    const ok = offender.write(n === perPiece ? piece : piece.subarray(0, n * 7));
    sentArgs += n;
    if (!ok) {
      await new Promise((resolve) => {
        const done = () => {
          offender.off('drain', done);
          offender.off('close', done);
          resolve();
        };
        offender.on('drain', done);
        offender.on('close', done);
      });
    }
  }
  const floodSeconds = (Date.now() - started) / 1000;
  // Give the server time to read what is in flight (or to close the client).
  for (let i = 0; i < 50 && !closed; i++) await sleep(100);
  const rssAtEnd = rssOf(pid);
  const disconnected = closed;
  offender.destroy();
  otherRunning = false;
  await otherLoop;
  const otherAfter =
    !other.destroyed &&
    (await (async () => {
      other.write('PING\r\n');
      const [data] = await Promise.race([once(other, 'data'), sleep(5000).then(() => [''])]);
      return String(data) === '+PONG\r\n';
    })());
  other.destroy();
  await sleep(1000);
  clearInterval(sampler);
  const alive = server.child.exitCode === null && server.child.signalCode === null && (await ping(server.port));
  const result = {
    server: server.name,
    rssBefore: mb(rssBefore),
    rssPeak: mb(peak),
    // What the server held per byte the client sent: (peak RSS − RSS before) ÷ bytes on the wire.
    perWireByte: Number(((peak - rssBefore) / (sentArgs * 7)).toFixed(2)),
    rssWhenFloodEnded: mb(rssAtEnd),
    rssAfter: mb(rssOf(pid)),
    offender: disconnected
      ? `disconnected by the server after ${sentArgs.toLocaleString('en')} arguments sent (${mb(sentArgs * 7)})`
      : `still connected after all ${sentArgs.toLocaleString('en')} arguments (${mb(sentArgs * 7)})`,
    floodSeconds: Number(floodSeconds.toFixed(1)),
    serverAlive: alive,
    otherClient: `${pongs} PONGs during the flood, ${unanswered} unanswered, slowest ${worstMs} ms; served afterwards: ${otherAfter}`,
    log: server
      .logs()
      .split('\n')
      .filter((line) => /query buffer|heap out of memory|FATAL/i.test(line))
      .map((line) => line.slice(0, 300))
      .slice(0, 3),
  };
  server.child.kill('SIGKILL');
  return result;
}

if (!args.includes('--no-build')) execFileSync('npx', ['tsc', '-b', join(root, 'examples/http-embed')], { cwd: root, stdio: 'inherit' });
const results = [];
for (const start of [startDemo, startRedis]) results.push(await flood(await start()));
for (const result of results) console.log(JSON.stringify(result, null, 2));
console.log(
  '\n| server | peak RSS | bytes held per byte on the wire | flooding client | server alive | other client |\n|---|---|---:|---|---|---|',
);
for (const r of results) {
  console.log(`| ${r.server} | ${r.rssPeak} | ${r.perWireByte} | ${r.offender} | ${r.serverAlive ? 'yes' : 'no'} | ${r.otherClient} |`);
}
