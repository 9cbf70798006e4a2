// portbind: the RESP adapter with the smallest possible store (GET/SET on a Map), to show what
// the framework itself costs next to real Redis.
import { PortService, silentLogger } from '@portbind/core';
import { OK, respAdapter } from '@portbind/resp';

const store = new Map();
const resp = respAdapter();
resp.command('set', { arity: -3, flags: ['write'] }, (_client, argv) => {
  store.set(argv[1].toString('latin1'), Buffer.from(argv[2]));
  return OK;
});
resp.command('get', { arity: 2, flags: ['readonly'] }, (_client, argv) => store.get(argv[1].toString('latin1')) ?? null);
const service = new PortService({ logger: silentLogger, env: { RESP_PORT: process.env.PORT } });
service.bind(resp, { host: '127.0.0.1' });
await service.start();
console.log('ready');
