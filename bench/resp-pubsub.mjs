// RESP pub/sub fan-out, side by side in one run (issue 12):
//   node bench/resp-pubsub.mjs [--rounds 3] [--subscribers 20] [--messages 20000] [--payload 32]
// S ioredis subscribers of one channel and one publisher (pipelined PUBLISH, 500 per batch), against:
// redis-server 7.0.15 itself; one portbind process (respAdapter with a bus of its own: subscribers and
// publisher on it); and two portbind processes sharing a real Redis as their bus (BUS_URL), the
// subscribers on one, the publisher on the other, so every message crosses Redis. Reports deliveries per
// second (one message to one subscriber) and the CPU of the portbind processes and of redis-server.
// Needs Debian's redis-server and a build (npx pnpm@10.34.8 build).
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { cpuOf, startRedisServer } from './support.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const option = (name, fallback) => (args.includes(`--${name}`) ? Number(args[args.indexOf(`--${name}`) + 1]) : fallback);
const rounds = option('rounds', 3);
const S = option('subscribers', 20);
const M = option('messages', 20_000);
const payload = 'x'.repeat(option('payload', 32));
const redisServer = await startRedisServer();
const redisPort = redisServer.port;
const redis = redisServer.child;

function portbind(busUrl) {
  const env = { ...process.env };
  delete env.BUS_URL;
  if (busUrl) env.BUS_URL = busUrl;
  const child = spawn(process.execPath, [join(here, 'servers', 'resp-pubsub.mjs')], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve) =>
    createInterface({ input: child.stdout }).on('line', (line) => {
      const parsed = JSON.parse(line);
      if (parsed.port) resolve({ child, port: parsed.port });
    }),
  );
}

async function run(subPort, pubPort, pids) {
  const channel = `bench:${Math.random().toString(36).slice(2)}`;
  const subs = [];
  let got = 0;
  let done;
  const all = new Promise((resolve) => {
    done = resolve;
  });
  for (let i = 0; i < S; i++) {
    const s = new Redis({ port: subPort, lazyConnect: false });
    s.on('message', () => {
      if (++got === S * M) done();
    });
    await s.subscribe(channel);
    subs.push(s);
  }
  const pub = new Redis({ port: pubPort });
  for (let t = 0; t < 200; t++) {
    const n = (await pub.call('PUBSUB', 'NUMSUB', channel))[1];
    if (n === S) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const cpuBefore = pids.map(cpuOf);
  const start = process.hrtime.bigint();
  for (let i = 0; i < M; i += 500) {
    const p = pub.pipeline();
    for (let j = 0; j < 500; j++) p.publish(channel, payload);
    await p.exec();
  }
  await all;
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const cpu = pids.map((pid, i) => (cpuOf(pid) - cpuBefore[i]) / 1e6 / seconds);
  for (const s of subs) s.disconnect();
  pub.disconnect();
  return { rate: (S * M) / seconds, cpu };
}

const modes = ['redis-server 7.0.15', 'portbind, one process', 'portbind, two processes over Redis'];
const results = Object.fromEntries(modes.map((mode) => [mode, []]));
console.log(
  `RESP pub/sub fan-out, node ${process.version}: ${S} subscribers × ${M} messages of ${payload.length} bytes, ${rounds} round(s)\n`,
);
for (let round = 0; round < rounds; round++) {
  const single = await portbind(undefined);
  const a = await portbind(`redis://127.0.0.1:${redisPort}`);
  const b = await portbind(`redis://127.0.0.1:${redisPort}`);
  const runs = {
    'redis-server 7.0.15': () => run(redisPort, redisPort, [redis.pid]),
    'portbind, one process': () => run(single.port, single.port, [single.child.pid]),
    'portbind, two processes over Redis': () => run(a.port, b.port, [a.child.pid, b.child.pid, redis.pid]),
  };
  for (let i = 0; i < modes.length; i++) {
    const mode = modes[(i + round) % modes.length];
    const r = await runs[mode]();
    results[mode].push(r);
    console.log(
      `  round ${round + 1} ${mode.padEnd(36)} ${Math.round(r.rate)} deliveries/s; CPU ${r.cpu.map((c) => `${Math.round(100 * c)} %`).join(' / ')}`,
    );
  }
  for (const { child } of [single, a, b]) child.kill('SIGTERM');
}
redis.kill('SIGKILL');
const median = (values) => [...values].sort((x, y) => x - y)[Math.floor(values.length / 2)];
const anchor = median(results['redis-server 7.0.15'].map((r) => r.rate));
console.log('\n| target | deliveries/s (median) | ÷ redis-server |');
console.log('|---|---:|---:|');
for (const mode of modes) {
  const rate = median(results[mode].map((r) => r.rate));
  console.log(`| ${mode} | ${Math.round(rate)} | ${(rate / anchor).toFixed(2)} |`);
}
process.exit(0);
