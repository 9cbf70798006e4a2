// The load of bench/ws-fanout.mjs: CONNECTIONS WebSocket peers of ws://…/ws; PUBLISHERS of them each
// keep WINDOW broadcasts in flight: `pub <publisher>:<seq>:<sent µs>`, and the next one goes once
// every peer has received one of its broadcasts (a broadcast is done when all CONNECTIONS got it). Counts
// deliveries for DURATION_MS after WARMUP_MS; prints JSON: deliveries per second, broadcasts per second,
// latency percentiles of single deliveries (ms), deliveries missed (a broadcast some peer never got
// within 2 s). Prints "measure-start" and "measure-end" around the measured window.
// RATE=R (> 0): an open loop instead: R broadcasts a second from the publishers in turn, whatever has
// arrived (a fixed load, for latency at a given rate rather than at saturation).
// LISTEN_ONLY=1: CONNECTIONS peers that only read (more connections per process, each receiving every
// broadcast): prints `{"open":N}` once connected; on "start" on stdin counts deliveries and their
// latency until "stop", then prints one JSON line (deliveries, latency, peers still open) and exits.
// Send times are wall-clock µs (performance.timeOrigin + now), comparable between the two processes.
import { createInterface } from 'node:readline';
import { WebSocket } from 'ws';

const url = process.argv[2];
const connections = Number(process.env.CONNECTIONS ?? 200);
const publishers = Math.min(connections, Number(process.env.PUBLISHERS ?? 4));
const window = Number(process.env.WINDOW ?? 4);
const durationMs = Number(process.env.DURATION_MS ?? 8000);
const warmupMs = Number(process.env.WARMUP_MS ?? 2000);
const padding = 'x'.repeat(Number(process.env.PAYLOAD ?? 64));
const rate = Number(process.env.RATE ?? 0);

const listenOnly = process.env.LISTEN_ONLY === '1';
const sockets = [];
const batchSize = listenOnly ? 200 : 50;
for (let i = 0; i < connections; i += batchSize) {
  const batch = await Promise.all(
    Array.from({ length: Math.min(batchSize, connections - i) }, () => {
      const ws = new WebSocket(url, { perMessageDeflate: false });
      return new Promise((resolve, reject) => {
        ws.once('open', () => resolve(ws));
        ws.once('error', reject);
      });
    }),
  );
  sockets.push(...batch);
}
const now = () => Math.round((performance.timeOrigin + performance.now()) * 1000);
const percentile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? null;

if (listenOnly) {
  let counting = false;
  let heard = 0;
  let closed = 0;
  let startedAt = 0;
  const heardLatencies = [];
  for (const ws of sockets) {
    ws.on('close', () => closed++);
    ws.on('message', (data) => {
      if (!counting) return;
      heard++;
      if (heard % 16 === 0 && heardLatencies.length < 2_000_000) {
        const text = data.toString();
        const second = text.indexOf(':', text.indexOf(':') + 1);
        heardLatencies.push((now() - Number(text.slice(second + 1, text.indexOf(':', second + 1)))) / 1000);
      }
    });
  }
  console.log(JSON.stringify({ open: sockets.length }));
  createInterface({ input: process.stdin }).on('line', (line) => {
    if (line === 'start') {
      counting = true;
      startedAt = performance.now();
    } else if (line === 'stop') {
      counting = false;
      const seconds = (performance.now() - startedAt) / 1000;
      heardLatencies.sort((a, b) => a - b);
      console.log(
        JSON.stringify({
          deliveriesPerSecond: heard / seconds,
          p50: percentile(heardLatencies, 0.5),
          p99: percentile(heardLatencies, 0.99),
          open: sockets.length - closed,
        }),
      );
      for (const ws of sockets) ws.terminate();
      process.exit(0);
    }
  });
  await new Promise(() => {});
}

let measuring = false;
let running = true;
let delivered = 0;
let completed = 0;
let missed = 0;
const latencies = [];
/** Deliveries still expected, by broadcast id. */
const pending = new Map();
const seqs = new Array(publishers).fill(0);

const send = (p) => {
  if (!running) return;
  const id = `${p}:${seqs[p]++}`;
  pending.set(id, { left: connections, sentAt: performance.now() });
  sockets[p].send(`pub ${id}:${now()}:${padding}`);
};

for (const ws of sockets) {
  ws.on('message', (data) => {
    const text = data.toString();
    const second = text.indexOf(':', text.indexOf(':') + 1);
    const id = text.slice(0, second);
    const sent = Number(text.slice(second + 1, text.indexOf(':', second + 1)));
    const entry = pending.get(id);
    if (measuring) {
      delivered++;
      if (latencies.length < 2_000_000) latencies.push((now() - sent) / 1000);
    }
    if (entry === undefined) return;
    if (--entry.left === 0) {
      pending.delete(id);
      if (measuring) completed++;
      if (rate === 0) send(Number(id.slice(0, id.indexOf(':'))));
    }
  });
}
// A broadcast some peer never got (skipped as slow, or lost): give up on it after 2 s and go on.
const sweeper = setInterval(() => {
  const limit = performance.now() - 2000;
  for (const [id, entry] of pending) {
    if (entry.sentAt < limit) {
      pending.delete(id);
      if (measuring) missed += entry.left;
      if (rate === 0) send(Number(id.slice(0, id.indexOf(':'))));
    }
  }
}, 250);

let pacer;
if (rate === 0) for (let p = 0; p < publishers; p++) for (let w = 0; w < window; w++) send(p);
else {
  const openedAt = performance.now();
  let due = 0;
  pacer = setInterval(() => {
    const target = Math.floor(((performance.now() - openedAt) * rate) / 1000);
    for (; due < target; due++) send(due % publishers);
  }, 5);
}
await new Promise((resolve) => setTimeout(resolve, warmupMs));
measuring = true;
console.log('measure-start');
const started = performance.now();
await new Promise((resolve) => setTimeout(resolve, durationMs));
measuring = false;
running = false;
console.log('measure-end');
const seconds = (performance.now() - started) / 1000;
clearInterval(sweeper);
clearInterval(pacer);
for (const ws of sockets) ws.terminate();
latencies.sort((a, b) => a - b);
const pct = (q) => percentile(latencies, q);
console.log(
  JSON.stringify({
    deliveriesPerSecond: delivered / seconds,
    broadcastsPerSecond: completed / seconds,
    p50: pct(0.5),
    p99: pct(0.99),
    missed,
  }),
);
