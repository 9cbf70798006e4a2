import { randomBytes } from 'node:crypto';
import { PortService, type PortServiceOptions } from '@portbind/core';
import { httpAdapter } from '@portbind/http';
import { globMatch, OK, respAdapter } from '@portbind/resp';
import { wsEndpoint } from '@portbind/ws';
import { memoryStorage, xmppServer } from '@portbind/xmpp';
import { page } from './page.js';

/**
 * The demo service, every protocol on one port: PORT (default 5000). RESP_PORT or XMPP_PORT, when
 * set, move RESP or XMPP to a port of their own. One HTTP binding serves
 *   GET  /                 a page that talks to the channels below
 *   GET  /livez, /readyz   health (readiness turns 503 while draining)
 *   GET  /api/hello?name=  a JSON greeting
 *   POST /api/echo         echoes a JSON body back
 *   GET  /api/stats        uptime and connected WebSocket peers
 *   GET  /api/slow?ms=     answers after ms (at most 30 s): try a SIGTERM meanwhile
 *   WS   /ws/echo          sends each message back to its sender
 *   WS   /ws/broadcast     sends each message to every peer
 *   GET  /api/notes        the notes, as JSON;  PUT /api/notes/NAME sets one (the body)
 * and one RESP binding (on PORT too, or RESP_PORT) speaks Redis to the same state:
 *   GET, SET, DEL, KEYS on the notes; PUBLISH broadcast MSG reaches the WebSocket peers,
 *   and SUBSCRIBE broadcast hears what they say.
 * and XMPP (on PORT too, or XMPP_PORT) and at ws://…/xmpp-websocket, for the demo accounts
 * alice@localhost and bob@localhost (passwords in the log). Without TLS here, only clients on this
 * machine may log in; examples/chat shows the full XMPP setup with TLS.
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
      resp.publish('broadcast', isBinary ? (data as Buffer) : data.toString());
    },
  });

  // The notes, shared by the JSON API and the Redis protocol.
  const notes = new Map<string, string>();
  const resp = respAdapter();
  resp.command('get', { arity: 2, flags: ['readonly'] }, (_client, [, key]) => notes.get(String(key)) ?? null);
  resp.command('set', { arity: 3, flags: ['write'] }, (_client, [, key, value]) => {
    notes.set(String(key), String(value));
    return OK;
  });
  resp.command('del', { arity: -2, flags: ['write'] }, (_client, [, ...keys]) => keys.filter((key) => notes.delete(String(key))).length);
  resp.command('keys', { arity: 2, flags: ['readonly'] }, (_client, [, pattern]) =>
    [...notes.keys()].filter((key) => globMatch(String(pattern), key)),
  );
  // PUBLISH reaches Redis subscribers as usual, and the WebSocket peers for the channel "broadcast".
  resp.command('publish', { arity: 3, flags: ['fast'] }, (_client, [, channel, message]) => {
    let received = resp.publish(channel as Buffer, message as Buffer);
    if (String(channel) === 'broadcast') received += broadcast.broadcast(String(message));
    return received;
  });

  // XMPP: two demo accounts with fresh passwords; loopback clients may log in without TLS. The demo
  // keeps its XMPP state in memory (it writes no files); examples/chat keeps it in DATA_DIR/xmpp.sqlite.
  const storage = memoryStorage();
  const demoAccounts = ['alice', 'bob'].map((name) => [name, randomBytes(6).toString('base64url')] as const);
  for (const [name, password] of demoAccounts) void storage.users.create(name, password);
  const xmpp = xmppServer({ domain: 'localhost', storage, allowPlaintext: 'loopback' });

  const http = httpAdapter({
    health: true,
    upgrades: { '/ws/echo': echo, '/ws/broadcast': broadcast, '/xmpp-websocket': xmpp.websocket() },
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
        case 'GET /api/notes':
          return Response.json(Object.fromEntries(notes));
        case 'GET /api/slow': {
          const ms = Math.min(Math.max(Number(url.searchParams.get('ms')) || 0, 0), 30_000);
          await new Promise((resolve) => setTimeout(resolve, ms));
          return Response.json({ sleptMs: ms });
        }
        default:
          if (request.method === 'PUT' && url.pathname.startsWith('/api/notes/')) {
            const name = decodeName(url.pathname.slice('/api/notes/'.length));
            if (name === undefined) return Response.json({ error: 'the note name is not valid percent-encoded UTF-8' }, { status: 400 });
            notes.set(name, await request.text());
            return new Response(null, { status: 204 });
          }
          return Response.json({ error: `no route for ${route}` }, { status: 404 });
      }
    },
  });

  // Bindings without a port of their own (RESP_PORT, XMPP_PORT unset) share PORT: core tells
  // HTTP, RESP and XMPP apart by each connection's first bytes.
  const service = new PortService({ portSharing: { join: true }, ...options });
  service.bind(http);
  service.bind(resp);
  service.bind(xmpp.c2s());
  for (const [name, password] of demoAccounts)
    service.logger.info({ jid: `${name}@localhost`, password }, `demo XMPP account ${name}@localhost`);
  return service;
}

/** A path segment decoded, or undefined when it is not valid percent-encoded UTF-8 (`%E0`, `%zz`): the client's fault, a 400. */
function decodeName(segment: string): string | undefined {
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}
