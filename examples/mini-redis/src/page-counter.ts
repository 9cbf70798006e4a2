import { PortService, type PortServiceOptions } from '@portbind/core';
import { httpAdapter } from '@portbind/http';
import { Redis } from 'ioredis';

/** The page counter's service and its connection to the key-value store. */
export interface PageCounter {
  readonly service: PortService;
  readonly kv: Redis;
}

/**
 * A page-view counter over HTTP (PORT, default 5000), keeping its counts in a Redis found at
 * KV_URL (default redis://127.0.0.1:6379): Redis as a twelve-factor backing service, an attached
 * resource named by a URL. Nothing here knows whether that is Redis or mini-redis.
 *
 *   GET /stats   {"total": 3, "pages": {"/": 2, "/about": 1}}
 *   GET /<any>   counts a view of that path: {"path": "/about", "views": 1, "total": 3}
 */
export function createPageCounter(options: PortServiceOptions = {}): PageCounter {
  const env = options.env ?? process.env;
  const kv = new Redis(env['KV_URL'] || 'redis://127.0.0.1:6379');
  const http = httpAdapter({
    health: true,
    fetch: async (request) => {
      const { pathname } = new URL(request.url);
      if (request.method !== 'GET') return Response.json({ error: 'GET only' }, { status: 405 });
      if (pathname === '/stats') {
        const [total, pages] = await Promise.all([kv.get('views:total'), kv.hgetall('views:pages')]);
        return Response.json({
          total: Number(total ?? 0),
          pages: Object.fromEntries(Object.entries(pages).map(([path, n]) => [path, Number(n)])),
        });
      }
      // One transaction: both counters move together.
      const results = await kv.multi().incr('views:total').hincrby('views:pages', pathname, 1).exec();
      const [[, total], [, views]] = results as [[unknown, number], [unknown, number]];
      return Response.json({ path: pathname, views, total });
    },
  });
  const service = new PortService(options);
  service.bind(http);
  return { service, kv };
}
