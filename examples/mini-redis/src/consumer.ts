import { createPageCounter } from './page-counter.js';

// A second app that uses mini-redis (or Redis) as a backing service through ioredis:
//   KV_URL=redis://127.0.0.1:6379 PORT=5001 pnpm -C examples/mini-redis consumer
const { service } = createPageCounter();
await service.run();
