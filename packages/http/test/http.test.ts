import { once } from 'node:events';
import { createServer } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import { getRequestListener } from '@hono/node-server';
import { PortService, type PortServiceOptions } from '@portbind/core';
import express from 'express';
import Fastify from 'fastify';
import { Hono } from 'hono';
import { afterEach, describe, expect, it } from 'vitest';
import { portOf, rawConnect, rawExchange, readUntil, readUntilClose, selfSignedCert, sleep } from '../../../test/support/net.js';
import { connectionOf, type HttpOptions, httpAdapter } from '../src/index.js';

const services: PortService[] = [];
afterEach(async () => {
  await Promise.all(services.splice(0).map((s) => s.stop()));
});

async function serve(options: HttpOptions, serviceOptions: PortServiceOptions = {}, bind: Parameters<PortService['bind']>[1] = {}) {
  const service = new PortService({ env: {}, ...serviceOptions });
  services.push(service);
  const binding = service.bind(httpAdapter(options), { port: 0, host: '127.0.0.1', ...bind });
  await service.start();
  return { service, binding, port: portOf(binding), url: binding.url };
}

describe('handlers', () => {
  it('serves a fetch-style handler and reports an http:// URL', async () => {
    const { url, port } = await serve({
      fetch: async (request) => {
        const body = request.method === 'POST' ? await request.text() : null;
        return Response.json({ method: request.method, path: new URL(request.url).pathname, body }, { headers: { 'x-a': '1' } });
      },
    });
    expect(url).toBe(`http://127.0.0.1:${port}/`);
    const get = await fetch(`${url}hello?x=1`);
    expect(get.status).toBe(200);
    expect(get.headers.get('x-a')).toBe('1');
    expect(await get.json()).toEqual({ method: 'GET', path: '/hello', body: null });
    const post = await fetch(`${url}echo`, { method: 'POST', body: 'payload' });
    expect(await post.json()).toEqual({ method: 'POST', path: '/echo', body: 'payload' });
  });

  it('streams a fetch Response body and sets several cookies', async () => {
    const { url } = await serve({
      fetch: () => {
        const stream = new ReadableStream<Uint8Array>({
          start(controller) {
            controller.enqueue(new TextEncoder().encode('one,'));
            controller.enqueue(new TextEncoder().encode('two'));
            controller.close();
          },
        });
        const headers = new Headers();
        headers.append('set-cookie', 'a=1');
        headers.append('set-cookie', 'b=2');
        return new Response(stream, { status: 201, headers });
      },
    });
    const response = await fetch(url);
    expect(response.status).toBe(201);
    expect(response.headers.getSetCookie()).toEqual(['a=1', 'b=2']);
    expect(await response.text()).toBe('one,two');
  });

  it('mounts an Express app unchanged', async () => {
    const app = express();
    app.use(express.json());
    app.get('/users/:id', (req, res) => {
      res.json({ id: req.params.id });
    });
    app.post('/echo', (req, res) => {
      res.json(req.body);
    });
    const { url } = await serve({ handler: app });
    expect(await (await fetch(`${url}users/42`)).json()).toEqual({ id: '42' });
    const echoed = await fetch(`${url}echo`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"a":1}' });
    expect(await echoed.json()).toEqual({ a: 1 });
  });

  it('mounts a Hono app through its node adapter unchanged', async () => {
    const app = new Hono();
    app.get('/hi/:name', (c) => c.json({ hi: c.req.param('name') }));
    const { url } = await serve({ handler: getRequestListener(app.fetch) });
    expect(await (await fetch(`${url}hi/there`)).json()).toEqual({ hi: 'there' });
  });

  it("mounts Fastify's routing unchanged", async () => {
    let routing: HttpOptions['handler'];
    const fastify = Fastify({
      serverFactory: (handler) => {
        routing = handler;
        return createServer();
      },
    });
    fastify.get('/f', async () => ({ from: 'fastify' }));
    await fastify.ready();
    const { url } = await serve({ handler: routing });
    expect(await (await fetch(`${url}f`)).json()).toEqual({ from: 'fastify' });
    await fastify.close();
  });

  it('answers 500 when a handler throws or rejects, and keeps serving', async () => {
    const { url } = await serve({
      handler: (req, res) => {
        if (req.url === '/throw') throw new Error('boom');
        // A listener may return a promise (async handlers): its rejection answers 500 too.
        if (req.url === '/reject') return Promise.reject(new Error('async boom')) as unknown as undefined;
        res.end('fine');
      },
    });
    const thrown = await fetch(`${url}throw`);
    expect(thrown.status).toBe(500);
    expect(await thrown.text()).toBe('Internal Server Error\n');
    const rejected = await fetch(`${url}reject`);
    expect(rejected.status).toBe(500);
    expect(await (await fetch(url)).text()).toBe('fine');
  });

  it('answers 500 when a fetch handler throws', async () => {
    const { url } = await serve({
      fetch: () => {
        throw new Error('sync boom');
      },
    });
    expect((await fetch(url)).status).toBe(500);
  });

  it('gives each request its portbind connection and context', async () => {
    const { url } = await serve({
      handler: (req, res) => {
        const conn = connectionOf(req);
        if (conn === undefined) throw new Error('no connection');
        conn.context.count = ((conn.context.count as number | undefined) ?? 0) + 1;
        res.end(`${conn.id}:${conn.context.count}`);
      },
    });
    const socket = await rawConnect(Number(new URL(url).port));
    socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n');
    const text = await readUntil(socket, /:2$/);
    expect(text).toMatch(/\r\n\r\n(\d+):1HTTP\/1\.1 200 OK[\s\S]*\r\n\r\n\1:2$/);
    socket.destroy();
  });

  it('answers 404 without a handler', async () => {
    const { url } = await serve({});
    expect((await fetch(url)).status).toBe(404);
  });
});

describe('limits against slow and abusive clients', () => {
  it('answers 431 to headers over the limit and closes', async () => {
    const { port } = await serve({ handler: (_req, res) => res.end('ok'), maxHeaderSize: 4096 });
    const result = await rawExchange(port, `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(8000)}\r\n\r\n`);
    expect(result.data).toBe('HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n');
    expect(result.closed).toBe(true);
  });

  it('closes a client that sends headers byte by byte forever (408)', async () => {
    const { port, url } = await serve({ handler: (_req, res) => res.end('ok'), headersTimeoutMs: 500 });
    const socket = await rawConnect(port);
    const output = readUntilClose(socket, 5000);
    const head = 'GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ';
    let i = 0;
    const timer = setInterval(() => {
      if (!socket.destroyed) socket.write(i < head.length ? head.charAt(i++) : 'a');
    }, 20);
    const started = Date.now();
    const result = await output;
    clearInterval(timer);
    expect(result.data).toBe('HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n');
    expect(result.closed).toBe(true);
    expect(Date.now() - started).toBeLessThan(3000);
    // Everyone else is served.
    expect(await (await fetch(url)).text()).toBe('ok');
  });

  it('answers 400 to a malformed request and closes', async () => {
    const { port } = await serve({ handler: (_req, res) => res.end('ok') });
    const result = await rawExchange(port, 'NOT HTTP AT ALL\r\n\r\n');
    expect(result.data).toBe('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    expect(result.closed).toBe(true);
  });

  it('answers 503 past maxConnections', async () => {
    const { port } = await serve({ handler: (_req, res) => res.end('ok') }, {}, { maxConnections: 1 });
    const first = await rawConnect(port);
    await sleep(20);
    const result = await rawExchange(port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(result.data).toBe('HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n');
    first.destroy();
  });

  it('keeps idle keep-alive connections longer than load balancers do', async () => {
    const { port } = await serve({ handler: (_req, res) => res.end('ok') });
    const socket = await rawConnect(port);
    socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    const head = await readUntil(socket, /ok$/);
    expect(head).toContain('Keep-Alive: timeout=75');
    socket.destroy();
  });

  it('refuses an upgrade to an unknown path with 404', async () => {
    const { port } = await serve({ handler: (_req, res) => res.end('ok') });
    const result = await rawExchange(
      port,
      'GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    );
    expect(result.data).toMatch(/^HTTP\/1\.1 404 Not Found\r\nConnection: close\r\n/);
    expect(result.data).toContain('No upgrade endpoint at /nowhere');
    expect(result.closed).toBe(true);
  });
});

describe('drain', () => {
  it('finishes in-flight requests with Connection: close, closes idle keep-alives, refuses new connections', async () => {
    const { service, port } = await serve({
      handler: (req, res) => {
        const ms = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('ms') ?? 0);
        setTimeout(() => res.end(`slept ${ms}`), ms);
      },
    });
    const idle = await rawConnect(port);
    idle.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await readUntil(idle, /slept 0$/);
    const idleClosed = readUntilClose(idle);

    const busy = await rawConnect(port);
    const busyOutput = readUntilClose(busy);
    busy.write('GET /?ms=400 HTTP/1.1\r\nHost: x\r\n\r\n');
    await sleep(50);
    const stopping = service.stop();
    expect((await idleClosed).closed).toBe(true);

    const refused = connect(port, '127.0.0.1');
    const [error] = (await once(refused, 'error')) as [NodeJS.ErrnoException];
    expect(error.code).toBe('ECONNREFUSED');

    const report = await stopping;
    expect(report.forced).toBe(0);
    const busyResult = await busyOutput;
    expect(busyResult.closed).toBe(true);
    expect(busyResult.data).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(busyResult.data).toContain('Connection: close');
    expect(busyResult.data).toMatch(/slept 400$/);
  });

  it('answers /readyz with 503 while draining, /livez with 200', async () => {
    const { service, url } = await serve({ health: true, handler: (_req, res) => res.end('app') }, { readinessDelayMs: 500 });
    expect((await fetch(`${url}readyz`)).status).toBe(200);
    expect(await (await fetch(`${url}livez`)).text()).toBe('ok\n');
    expect(await (await fetch(url)).text()).toBe('app');
    const stopping = service.stop();
    const ready = await fetch(`${url}readyz`);
    expect(ready.status).toBe(503);
    expect(ready.headers.get('connection')).toBe('close');
    expect((await fetch(`${url}livez`)).status).toBe(200);
    await stopping;
  });

  it('uses custom health paths', async () => {
    const { url } = await serve({ health: { live: '/health/live', ready: '/health/ready' } });
    expect((await fetch(`${url}health/live`)).status).toBe(200);
    expect((await fetch(`${url}health/ready`)).status).toBe(200);
    expect((await fetch(`${url}livez`)).status).toBe(404);
  });
});

describe('HTTPS', () => {
  it('serves https:// with a certificate from config', async () => {
    const pems = await selfSignedCert();
    const { url, port } = await serve({ fetch: (request) => new Response(`secure ${new URL(request.url).protocol}`) }, {}, { tls: pems });
    expect(url).toBe(`https://127.0.0.1:${port}/`);
    const body = await new Promise<string>((resolve, reject) => {
      const req = httpsRequest({ host: '127.0.0.1', port, path: '/', ca: pems.cert, servername: 'localhost' }, (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => {
          text += chunk.toString();
        });
        res.on('end', () => resolve(text));
      });
      req.on('error', reject);
      req.end();
    });
    expect(body).toBe('secure https:');
  });
});
