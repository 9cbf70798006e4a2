import { createMiniRedis } from './app.js';

// RESP_PORT (default 6379) and HOST choose where Redis clients connect; PORT (default 5000)
// serves the HTTP health endpoints; REQUIREPASS makes clients AUTH. SIGTERM/SIGINT drain and exit.
await createMiniRedis().run();
