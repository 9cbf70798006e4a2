// A RESP pub/sub service for bench/resp-pubsub.mjs: respAdapter({ bus }) on an ephemeral port, the bus
// from BUS_URL (@portbind/bus-redis; unset → this process alone). Prints `{"port":N}` once listening;
// exits on SIGTERM.
import { busFromEnv } from '../../packages/bus-redis/dist/index.js';
import { PortService, silentLogger } from '../../packages/core/dist/index.js';
import { respAdapter } from '../../packages/resp/dist/index.js';

const bus = await busFromEnv(process.env);
const service = new PortService({ env: {}, logger: silentLogger });
const binding = service.bind(respAdapter({ bus: { bus, namespace: 'bench' } }), { port: 0, host: '127.0.0.1' });
await service.start();
process.stdout.write(`${JSON.stringify({ port: binding.address.port })}\n`);
process.on('SIGTERM', async () => {
  await service.stop();
  await bus.close();
  process.exit(0);
});
