// portbind: the same hello world as a Node request listener on @portbind/http.
import { PortService, silentLogger } from '@portbind/core';
import { httpAdapter } from '@portbind/http';

const service = new PortService({ logger: silentLogger });
service.bind(
  httpAdapter({
    handler: (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('Hello, World!');
    },
  }),
  { host: '127.0.0.1' },
);
await service.start();
console.log('ready');
