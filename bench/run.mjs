// Runs portbind and its anchors side by side in one run, on loopback, and reports ratios.
//   node bench/run.mjs [http|ws] [--rounds N] [--seconds S]
// HTTP load comes from wrk (Debian's `wrk`, one thread, 50 connections); WebSocket load from
// ws-client.mjs. Each round starts every server fresh, in a rotated order, and the median of the
// rounds is reported, so drift on a shared machine hits every target alike.
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const which = args.find((arg) => !arg.startsWith('--') && !/^\d+$/.test(arg)) ?? 'all';
const option = (name, fallback) => {
  const index = args.indexOf(`--${name}`);
  return index === -1 ? fallback : Number(args[index + 1]);
};
const rounds = option('rounds', 3);
const seconds = option('seconds', 8);

const suites = {
  http: {
    anchor: 'node:http',
    unit: 'req/s',
    targets: [
      ['node:http', 'servers/http-raw.mjs'],
      ['fastify', 'servers/http-fastify.mjs'],
      ['portbind (listener)', 'servers/http-portbind.mjs'],
      ['portbind (fetch)', 'servers/http-portbind-fetch.mjs'],
    ],
    load: (port) => wrk(port),
  },
  ws: {
    anchor: 'ws',
    unit: 'msg/s',
    targets: [
      ['ws', 'servers/ws-raw.mjs'],
      ['portbind ws', 'servers/ws-portbind.mjs'],
    ],
    load: (port) => wsLoad(port),
  },
};

function freePort() {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function startServer(script, port) {
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
  return child;
}

async function stopServer(child) {
  child.kill('SIGKILL');
  await once(child, 'exit');
}

async function wrk(port) {
  const run = (secs) => execFileSync('wrk', ['-t1', '-c50', `-d${secs}s`, '--latency', `http://127.0.0.1:${port}/`], { encoding: 'utf8' });
  run(2); // warm-up: let V8 optimise the hot path
  const out = run(seconds);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  const p99 = /99%\s+([\d.]+\w+)/.exec(out)?.[1] ?? '?';
  return { value: rps, extra: `p99 ${p99}` };
}

async function wsLoad(port) {
  const run = (ms) =>
    JSON.parse(
      execFileSync(process.execPath, [join(here, 'ws-client.mjs'), `ws://127.0.0.1:${port}/`], {
        encoding: 'utf8',
        env: { ...process.env, DURATION_MS: String(ms) },
      }),
    ).messagesPerSecond;
  run(2000);
  return { value: run(seconds * 1000), extra: '' };
}

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
};

for (const [name, suite] of Object.entries(suites)) {
  if (which !== 'all' && which !== name) continue;
  const results = new Map(suite.targets.map(([label]) => [label, []]));
  for (let round = 0; round < rounds; round++) {
    const order = suite.targets.map((_, i) => suite.targets[(i + round) % suite.targets.length]);
    for (const [label, script] of order) {
      const port = await freePort();
      const child = await startServer(script, port);
      try {
        const { value, extra } = await suite.load(port);
        results.get(label).push(value);
        console.error(`  ${name} round ${round + 1}: ${label.padEnd(20)} ${value.toFixed(0)} ${suite.unit} ${extra}`);
      } finally {
        await stopServer(child);
      }
    }
  }
  const anchor = median(results.get(suite.anchor));
  console.log(`\n${name}: median of ${rounds} rounds of ${seconds}s, node ${process.version}`);
  console.log(`| target | ${suite.unit} | ratio to ${suite.anchor} |`);
  console.log('|---|---:|---:|');
  for (const [label] of suite.targets) {
    const value = median(results.get(label));
    console.log(`| ${label} | ${value.toFixed(0)} | ${(value / anchor).toFixed(3)} |`);
  }
  if (name === 'http') {
    const fastify = median(results.get('fastify'));
    const ours = median(results.get('portbind (listener)'));
    console.log(`portbind (listener) / fastify: ${(ours / fastify).toFixed(3)}`);
  }
}
