// The load of bench/ws-fanout.mjs: CONNECTIONS WebSocket peers of ws://…/ws; PUBLISHERS of them each
// keep WINDOW broadcasts in flight: `pub <publisher>:<seq>:<sent µs>`, and the next one goes once
// every peer has received one of its broadcasts (a broadcast is done when all CONNECTIONS got it). Counts
// deliveries for DURATION_MS after WARMUP_MS; prints JSON: deliveries per second, broadcasts per second,
// latency percentiles of single deliveries (ms), deliveries missed (a broadcast some peer never got
// within 2 s).
import { WebSocket } from 'ws';

const url = process.argv[2];
const connections = Number(process.env.CONNECTIONS ?? 200);
const publishers = Math.min(connections, Number(process.env.PUBLISHERS ?? 4));
const window = Number(process.env.WINDOW ?? 4);
const durationMs = Number(process.env.DURATION_MS ?? 8000);
const warmupMs = Number(process.env.WARMUP_MS ?? 2000);
const padding = 'x'.repeat(Number(process.env.PAYLOAD ?? 64));

const sockets = [];
for (let i = 0; i < connections; i += 50) {
  const batch = await Promise.all(
    Array.from({ length: Math.min(50, connections - i) }, () => {
      const ws = new WebSocket(url, { perMessageDeflate: false });
      return new Promise((resolve, reject) => {
        ws.once('open', () => resolve(ws));
        ws.once('error', reject);
      });
    }),
  );
  sockets.push(...batch);
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
const now = () => Math.round(performance.now() * 1000);

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
      send(Number(id.slice(0, id.indexOf(':'))));
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
      send(Number(id.slice(0, id.indexOf(':'))));
    }
  }
}, 250);

for (let p = 0; p < publishers; p++) for (let w = 0; w < window; w++) send(p);
await new Promise((resolve) => setTimeout(resolve, warmupMs));
measuring = true;
const started = performance.now();
await new Promise((resolve) => setTimeout(resolve, durationMs));
measuring = false;
running = false;
const seconds = (performance.now() - started) / 1000;
clearInterval(sweeper);
for (const ws of sockets) ws.terminate();
latencies.sort((a, b) => a - b);
const pct = (q) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? null;
console.log(
  JSON.stringify({
    deliveriesPerSecond: delivered / seconds,
    broadcastsPerSecond: completed / seconds,
    p50: pct(0.5),
    p99: pct(0.99),
    missed,
  }),
);
