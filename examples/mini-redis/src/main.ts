import { PortbindError } from '@portbind/core';
import { createMiniRedis } from './app.js';

// RESP_PORT (default 6379) and HOST choose where Redis clients connect; PORT (default 5000)
// serves the HTTP health endpoints; REQUIREPASS makes clients AUTH. SIGTERM/SIGINT drain and exit.
//
// A file in DATA_DIR that cannot be loaded (PB_ERR_RDB_LOAD, PB_ERR_AOF_LOAD) or a bad setting
// (PB_ERR_AOF_CONFIG, …): one line on stderr with the code (docs/errors.md says what to do), exit 1.
// On stderr whatever LOG_LEVEL says: the reason a server does not start must always be seen.
let service: ReturnType<typeof createMiniRedis>;
try {
  service = createMiniRedis();
} catch (error) {
  if (!(error instanceof PortbindError)) throw error;
  process.stderr.write(`mini-redis: cannot start: ${error.code}: ${error.message}\n`);
  process.exit(1);
}
await service.run();
