// HTTP/2 through @portbind/http (option http2) against a bare node:http2 server, in the same run.
//   node bench/http2.mjs [--rounds N] [--requests R] [--streams M] [--clients C] [--only h2c|tls|h1]
// 1. h2c (prior knowledge), h2load -t1 -c C -m M: node:http2 createServer vs portbind on its port
//    (HTTP/1.1 beside it: every connection's first bytes are read for the preface).
// 2. h2 over TLS (ALPN), same load: node:http2 createSecureServer vs portbind with `tls`.
// 3. HTTP/1.1 keep-alive, h2load --h1 -t1 -c C: node:http vs portbind without and with http2 (the
//    preface check is the only difference HTTP/1.1 clients see).
// Each server runs in a child process of its own (this script with --serve KIND); each round runs the
// bare Node server and one target side by side, each under its own h2load, so whatever else the
// machine does slows both alike. Two measures, median of the rounds: req/s as h2load saw it, and
// the server's CPU time per request (user + system, after the warm-up), which a busy machine
// disturbs far less than throughput. The ratio is, per round, the bare server's CPU per request
// over the target's: 1.0 = as cheap, 0.95 = 5 % more CPU per request. Needs Debian's h2load (apt-get install nghttp2-client), openssl, and a build
// (npx pnpm@10.34.8 build).
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttp1 } from 'node:http';
import { createServer as createH2c, createSecureServer } from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './support.mjs';

const self = fileURLToPath(import.meta.url);
const args = process.argv.slice(2);
const option = (name, fallback) => {
  const index = args.indexOf(`--${name}`);
  return index === -1 ? fallback : args[index + 1];
};

/** The handler every server runs: a Node request listener, the same for node:http, node:http2 and portbind. */
const hello = (_req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.end('Hello, World!');
};

if (args[0] === '--serve') {
  const kind = args[1];
  // CPU time between SIGUSR2 (after the warm-up) and SIGINT (the end), printed on exit; a clean exit
  // also lets `node --cpu-prof bench/http2.mjs --serve KIND` write its profile.
  let baseline = process.cpuUsage();
  process.on('SIGUSR2', () => {
    baseline = process.cpuUsage();
  });
  process.on('SIGINT', () => {
    const used = process.cpuUsage(baseline);
    process.stdout.write(`cpu ${used.user + used.system}\n`, () => process.exit(0));
  });
  const port = Number(process.env.PORT);
  const tls = process.env.CERT ? { cert: readFileSync(process.env.CERT), key: readFileSync(process.env.KEY) } : undefined;
  if (kind === 'node-h2c' || kind === 'node-h2-tls' || kind === 'node-h1') {
    // The same modules loaded as in the portbind servers (a heap of the same size for the collector),
    // so that the comparison is of the request path, not of what the process imported.
    await import('@portbind/core');
    await import('@portbind/http');
    const server =
      kind === 'node-h2c'
        ? createH2c({ settings: { maxConcurrentStreams: 100 } }, hello)
        : kind === 'node-h2-tls'
          ? createSecureServer({ ...tls, allowHTTP1: true, settings: { maxConcurrentStreams: 100 } }, hello)
          : createHttp1(hello);
    server.listen(port, '127.0.0.1', () => console.log('ready'));
  } else {
    const { PortService, silentLogger } = await import('@portbind/core');
    const { httpAdapter } = await import('@portbind/http');
    const service = new PortService({ logger: silentLogger, env: {} });
    const http2 = kind !== 'portbind-h1';
    const bind = { port, host: '127.0.0.1' };
    if (kind === 'portbind-h2-tls') bind.tls = { ...tls, ALPNProtocols: ['h2', 'http/1.1'] };
    service.bind(httpAdapter({ http2, handler: hello }), bind);
    await service.start();
    console.log('ready');
  }
} else {
  await main();
}

async function main() {
  const rounds = Number(option('rounds', 3));
  const requests = Number(option('requests', 100_000));
  const streams = Number(option('streams', 10));
  const clients = Number(option('clients', 50));
  const only = option('only', undefined);
  const dir = mkdtempSync(join(tmpdir(), 'bench-http2-'));
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost'],
    {
      stdio: 'ignore',
    },
  );

  async function start(kind) {
    const port = await freePort();
    const child = spawn(process.execPath, [self, '--serve', kind], {
      env: { ...process.env, PORT: String(port), CERT: cert, KEY: key, NODE_ENV: 'production' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const server = { child, port, output: '' };
    child.stdout.on('data', (chunk) => {
      server.output += chunk;
    });
    while (!server.output.includes('ready')) {
      if (child.exitCode !== null) throw new Error(`server ${kind} exited`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return server;
  }

  /** Stop the server; its CPU time in µs since `mark()`. */
  async function stop(server) {
    const exited = once(server.child, 'exit');
    server.child.kill('SIGINT');
    const timer = setTimeout(() => server.child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
    return Number(/cpu (\d+)/.exec(server.output)?.[1]);
  }

  /** h2load as a child process: req/s and how many requests succeeded. */
  function h2load(url, extra, n) {
    return new Promise((resolve, reject) => {
      const child = spawn('h2load', ['-t1', `-c${clients}`, `-n${n}`, ...extra, url], { stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      child.stdout.on('data', (chunk) => {
        out += chunk;
      });
      child.on('error', reject);
      child.on('close', () => {
        const rps = Number(/finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(out)?.[1]);
        const succeeded = Number(/requests: .*?(\d+) succeeded/.exec(out)?.[1] ?? 0);
        const failed = Number(/requests: .*?(\d+) failed/.exec(out)?.[1] ?? 0);
        const errored = Number(/requests: .*?(\d+) errored/.exec(out)?.[1] ?? 0);
        if (failed + errored > 0) console.error(`  ${url}: ${failed} failed, ${errored} errored`);
        resolve({ rps, succeeded });
      });
    });
  }

  const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

  /**
   * Each round runs the anchor (first target) and one other target at the same time, each under its
   * own h2load: whatever else the machine is doing slows both alike. Per round, the ratio is the
   * anchor's CPU per request over the target's; the table gives medians.
   */
  async function suite(title, targets, url, extra) {
    const [anchor, ...others] = targets;
    const results = new Map(targets.map(([label]) => [label, { rps: [], cpu: [], ratio: [] }]));
    for (let round = 0; round < rounds; round++) {
      for (const other of others) {
        const pair = round % 2 === 0 ? [anchor, other] : [other, anchor];
        const servers = [];
        try {
          for (const [, kind] of pair) servers.push(await start(kind));
          await Promise.all(servers.map((server) => h2load(url(server.port), extra, Math.max(clients * 20, Math.floor(requests / 10)))));
          for (const server of servers) server.child.kill('SIGUSR2');
          const outcomes = await Promise.all(servers.map((server) => h2load(url(server.port), extra, requests)));
          const cpus = [];
          for (const server of servers) cpus.push(await stop(server));
          servers.length = 0;
          const perRequest = cpus.map((cpu, i) => cpu / outcomes[i].succeeded);
          const anchorAt = pair[0] === anchor ? 0 : 1;
          pair.forEach(([label], i) => {
            const result = results.get(label);
            result.rps.push(outcomes[i].rps);
            result.cpu.push(perRequest[i]);
            console.error(
              `  ${title} round ${round + 1}: ${label.padEnd(38)} ${outcomes[i].rps.toFixed(0).padStart(7)} req/s ${perRequest[i].toFixed(1).padStart(6)} µs CPU/req`,
            );
          });
          results.get(other[0]).ratio.push(perRequest[anchorAt] / perRequest[1 - anchorAt]);
        } finally {
          for (const server of servers) await stop(server);
        }
      }
    }
    console.log(`\n${title} (median of ${rounds} rounds; each target ran beside ${anchor[0]})`);
    console.log('| target | req/s | server CPU µs/request | ratio (CPU, paired) |\n|---|---:|---:|---:|');
    for (const [label, { rps, cpu, ratio }] of results) {
      const paired = label === anchor[0] ? '1.000' : median(ratio).toFixed(3);
      console.log(`| ${label} | ${Math.round(median(rps)).toLocaleString('en')} | ${median(cpu).toFixed(1)} | ${paired} |`);
    }
  }

  const version = execFileSync('h2load', ['--version'], { encoding: 'utf8' }).trim();
  console.log(`node ${process.version}, ${version}, -t1 -c${clients} -n${requests}, ${streams} streams per connection (h2)`);
  try {
    if (only === undefined || only === 'h2c') {
      await suite(
        'h2c prior knowledge, req/s',
        [
          ['node:http2', 'node-h2c'],
          ['portbind http2 (h2c beside HTTP/1.1)', 'portbind-h2c'],
        ],
        (port) => `http://127.0.0.1:${port}/`,
        [`-m${streams}`],
      );
    }
    if (only === undefined || only === 'tls') {
      await suite(
        'h2 over TLS (ALPN), req/s',
        [
          ['node:http2 (secure, allowHTTP1)', 'node-h2-tls'],
          ['portbind http2 with tls', 'portbind-h2-tls'],
        ],
        (port) => `https://127.0.0.1:${port}/`,
        [`-m${streams}`],
      );
    }
    if (only === undefined || only === 'h1') {
      await suite(
        'HTTP/1.1 keep-alive, req/s',
        [
          ['node:http', 'node-h1'],
          ['portbind http', 'portbind-h1'],
          ['portbind http2 (preface check)', 'portbind-h2c'],
        ],
        (port) => `http://127.0.0.1:${port}/`,
        ['--h1'],
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
