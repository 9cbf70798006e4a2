// portbind, port unification: the same HTTP hello world (a Node listener) and the same bare RESP
// GET/SET as servers/http-portbind.mjs and servers/resp-portbind.mjs, both on one port (PORT),
// where core classifies each new connection by its first bytes.
import { PortService, silentLogger } from '@portbind/core';
import { httpAdapter } from '@portbind/http';
import { OK, respAdapter } from '@portbind/resp';

const store = new Map();
const resp = respAdapter();
resp.command('set', { arity: -3, flags: ['write'] }, (_client, argv) => {
  store.set(argv[1].toString('latin1'), Buffer.from(argv[2]));
  return OK;
});
resp.command('get', { arity: 2, flags: ['readonly'] }, (_client, argv) => store.get(argv[1].toString('latin1')) ?? null);
const service = new PortService({ logger: silentLogger, env: { PORT: process.env.PORT }, portSharing: { join: true } });
service.bind(
  httpAdapter({
    handler: (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('Hello, World!');
    },
  }),
  { host: '127.0.0.1' },
);
service.bind(resp);
await service.start();
console.log('ready');
