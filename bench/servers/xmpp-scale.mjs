// The XMPP server of bench/xmpp-scale.mjs: xmppServer() with its default modules on an SQLite file in
// DATA_DIR, PLAIN on loopback, no reading rate limit, on PORT; with BUS_URL, on a Redis bus
// (@portbind/bus-redis) so that users on different processes chat; WORKERS=N runs N node:cluster
// workers behind the port (core's supervisor). Accounts user0..user{USERS-1} (password "secret") are
// created by the primary (or the single process) before the workers start. Prints "ready" once
// listening (the primary, once every worker is). Besides the default modules, an IQ for benchmarks:
// `<iq type='get' to='localhost'><process xmlns='urn:portbind:bench:process'/></iq>` is answered with
// `<process xmlns='urn:portbind:bench:process' worker='N' pid='P'/>`, the node:cluster worker id (0 for a
// single process) and the process id of the process that holds the session, so that a load generator
// can pair users on different processes (bench/xmpp/load.mjs --pairing cross).
import cluster from 'node:cluster';
import { join } from 'node:path';
import { busFromEnv } from '../../packages/bus-redis/dist/index.js';
import { PortService, silentLogger } from '../../packages/core/dist/index.js';
import * as xmpp from '../../packages/xmpp/dist/index.js';

const storage = xmpp.sqliteStorage({ file: join(process.env.DATA_DIR, 'xmpp.sqlite') });
if (!cluster.isWorker) {
  const users = Number(process.env.USERS ?? 50);
  for (let i = 0; i < users; i++) await storage.users.create(`user${i}`, 'secret');
}
const bus = process.env.BUS_URL ? await busFromEnv(process.env) : undefined;
const NS_PROCESS = 'urn:portbind:bench:process';
const whichProcess = {
  name: 'bench-process',
  setup(api) {
    api.iq({ xmlns: NS_PROCESS, element: 'process', to: 'host', type: 'get' }, () =>
      xmpp.xml('process', { xmlns: NS_PROCESS, worker: String(cluster.worker?.id ?? 0), pid: String(process.pid) }),
    );
  },
};
const server = xmpp.xmppServer({
  domain: 'localhost',
  modules: [...xmpp.defaultModules(), whichProcess],
  storage,
  allowPlaintext: 'loopback',
  rateLimit: { bytesPerSecond: 0 },
  ...(bus === undefined ? {} : { bus }),
});
const logger = {
  ...silentLogger,
  info: (fields, message) => {
    const text = typeof fields === 'string' ? fields : message;
    if (typeof text === 'string' && text.startsWith('listening on')) process.stdout.write('ready\n');
  },
  error: (fields, message) => process.stderr.write(`${JSON.stringify({ fields: String(fields?.err ?? fields), message })}\n`),
  child: () => logger,
};
const service = new PortService({ logger, gracePeriodMs: 2000, env: process.env });
service.bind(server.c2s(), { host: '127.0.0.1', port: Number(process.env.PORT) });
await service.run();
