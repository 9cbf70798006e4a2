// Anchor: Fastify hello world.
import Fastify from 'fastify';

const app = Fastify({ logger: false });
app.get('/', (_req, reply) => {
  reply.type('text/plain').send('Hello, World!');
});
await app.listen({ port: Number(process.env.PORT), host: '127.0.0.1' });
console.log('ready');
