import { PortService, type PortServiceOptions } from '@portbind/core';
import { httpAdapter } from '@portbind/http';
import { wsEndpoint } from '@portbind/ws';
import { page } from './page.js';

/**
 * The demo service: one HTTP binding (PORT, default 5000) that serves
 *   GET  /                 a page that talks to the channels below
 *   GET  /livez, /readyz   health (readiness turns 503 while draining)
 *   GET  /api/hello?name=  a JSON greeting
 *   POST /api/echo         echoes a JSON body back
 *   GET  /api/stats        uptime and connected WebSocket peers
 *   GET  /api/slow?ms=     answers after ms (at most 30 s): try a SIGTERM meanwhile
 *   WS   /ws/echo          sends each message back to its sender
 *   WS   /ws/broadcast     sends each message to every peer
 */
export function createApp(options: PortServiceOptions = {}): PortService {
  const started = Date.now();
  const echo = wsEndpoint({
    message: (conn, data, isBinary) => {
      conn.send(isBinary ? (data as Buffer) : data.toString());
    },
  });
  const broadcast = wsEndpoint({
    message: (_conn, data, isBinary) => {
      broadcast.broadcast(isBinary ? (data as Buffer) : data.toString());
    },
  });

  const http = httpAdapter({
    health: true,
    upgrades: { '/ws/echo': echo, '/ws/broadcast': broadcast },
    fetch: async (request) => {
      const url = new URL(request.url);
      const route = `${request.method} ${url.pathname}`;
      switch (route) {
        case 'GET /':
          return new Response(page, { headers: { 'content-type': 'text/html; charset=utf-8' } });
        case 'GET /api/hello':
          return Response.json({ hello: url.searchParams.get('name') ?? 'world' });
        case 'POST /api/echo': {
          const body: unknown = await request.json().catch(() => undefined);
          if (body === undefined) return Response.json({ error: 'body must be JSON' }, { status: 400 });
          return Response.json({ echo: body });
        }
        case 'GET /api/stats':
          return Response.json({
            uptimeMs: Date.now() - started,
            peers: { echo: echo.clients.size, broadcast: broadcast.clients.size },
          });
        case 'GET /api/slow': {
          const ms = Math.min(Math.max(Number(url.searchParams.get('ms')) || 0, 0), 30_000);
          await new Promise((resolve) => setTimeout(resolve, ms));
          return Response.json({ sleptMs: ms });
        }
        default:
          return Response.json({ error: `no route for ${route}` }, { status: 404 });
      }
    },
  });

  const service = new PortService(options);
  service.bind(http);
  return service;
}
