import { type Bus, createLogger, PortbindError, type PortService } from '@portbind/core';
import { createMiniRedis } from './app.js';
import { connectBus } from './bus.js';

// RESP_PORT (default 6379) and HOST choose where Redis clients connect; PORT (default 5000)
// serves the HTTP health endpoints; REQUIREPASS makes clients AUTH. SIGTERM/SIGINT drain and exit.
// BUS_URL=redis://…: pub/sub spans every mini-redis process on that Redis (bus.ts); Redis must be
// reachable at start (afterwards the bus reconnects by itself).
//
// A file in DATA_DIR that cannot be loaded (PB_ERR_RDB_LOAD, PB_ERR_AOF_LOAD), a bad setting
// (PB_ERR_AOF_CONFIG, PB_ERR_CONFIG, …) or an unreachable BUS_URL (PB_ERR_BUS_UNAVAILABLE): one line
// on stderr with the code (docs/errors.md says what to do), exit 1.
// On stderr whatever LOG_LEVEL says: the reason a server does not start must always be seen.
const logger = createLogger();
let bus: Bus | undefined;
let service: PortService;
try {
  bus = await connectBus(process.env, logger);
  service = createMiniRedis({ logger, bus });
} catch (error) {
  await bus?.close();
  if (!(error instanceof PortbindError)) throw error;
  process.stderr.write(`mini-redis: cannot start: ${error.code}: ${error.message}\n`);
  process.exit(1);
}
await service.run();
