// Anchor: a bare node:http hello world.
import { createServer } from 'node:http';

const server = createServer((_req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.end('Hello, World!');
});
server.listen(Number(process.env.PORT), '127.0.0.1', () => console.log('ready'));
