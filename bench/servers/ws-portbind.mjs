// portbind: the same echo on @portbind/ws, on a port of its own.
import { PortService, silentLogger } from '@portbind/core';
import { wsEndpoint } from '@portbind/ws';

const echo = wsEndpoint({
  message: (conn, data, isBinary) => {
    conn.send(isBinary ? data : data.toString());
  },
});
const service = new PortService({ logger: silentLogger, env: { WS_PORT: process.env.PORT } });
service.bind(echo.standalone(), { host: '127.0.0.1' });
await service.start();
console.log('ready');
