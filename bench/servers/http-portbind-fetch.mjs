// portbind: the same hello world as a fetch-style handler (Request in, Response out).
import { PortService, silentLogger } from '@portbind/core';
import { httpAdapter } from '@portbind/http';

const service = new PortService({ logger: silentLogger });
service.bind(httpAdapter({ fetch: () => new Response('Hello, World!', { headers: { 'content-type': 'text/plain' } }) }), {
  host: '127.0.0.1',
});
await service.start();
console.log('ready');
