// The WebSocket fan-out server of bench/ws-fanout.mjs: a wsEndpoint on PORT (path /ws) whose peers
// send `pub <payload>`; the endpoint broadcasts `<payload>` to every peer — with BUS_URL, to the peers
// of every process (worker) too, through @portbind/bus-redis. WORKERS=N runs N workers (core's
// node:cluster supervisor). Prints "ready" once listening (the primary, with workers).

import { busFromEnv } from '../../packages/bus-redis/dist/index.js';
import { PortService, silentLogger } from '../../packages/core/dist/index.js';
import { httpAdapter } from '../../packages/http/dist/index.js';
import { wsEndpoint } from '../../packages/ws/dist/index.js';

const bus = await busFromEnv(process.env);
const endpoint = wsEndpoint({
  bus,
  heartbeatIntervalMs: 0,
  message: (_conn, data) => {
    const text = data.toString();
    if (text.startsWith('pub ')) endpoint.broadcast(text.slice(4));
  },
});
const logger = {
  ...silentLogger,
  info: (fields, message) => {
    const text = typeof fields === 'string' ? fields : message;
    if (typeof text === 'string' && text.startsWith('listening on')) console.log('ready');
  },
  child: () => logger,
};
const service = new PortService({ logger, env: process.env });
service.bind(httpAdapter({ upgrades: { '/ws': endpoint } }), { host: '127.0.0.1' });
await service.run();
