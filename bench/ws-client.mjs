// Echo load: CONNECTIONS clients, each with one message in flight (send, wait for the echo,
// send again), for DURATION_MS. Prints the echoed messages per second as JSON.
import { WebSocket } from 'ws';

const url = process.argv[2];
const connections = Number(process.env.CONNECTIONS ?? 50);
const durationMs = Number(process.env.DURATION_MS ?? 8000);
const payload = 'x'.repeat(Number(process.env.PAYLOAD ?? 64));

let echoed = 0;
let running = true;
const sockets = await Promise.all(
  Array.from(
    { length: connections },
    () =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(url, { perMessageDeflate: false });
        ws.once('open', () => resolve(ws));
        ws.once('error', reject);
      }),
  ),
);
for (const ws of sockets) {
  ws.on('message', () => {
    echoed++;
    if (running) ws.send(payload);
  });
}
const started = performance.now();
for (const ws of sockets) ws.send(payload);
await new Promise((resolve) => setTimeout(resolve, durationMs));
running = false;
const seconds = (performance.now() - started) / 1000;
for (const ws of sockets) ws.terminate();
console.log(JSON.stringify({ messagesPerSecond: echoed / seconds }));
