import { createServer, type RequestListener } from 'node:http';
import { type BindOptions, PortService } from '@portbind/core';
import { httpAdapter } from '@portbind/http';
import express from 'express';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { portOf, rawConnect, readUntil, readUntilClose } from '../../../test/support/net.js';
import { v1Header, v2Header } from './proxy-support.js';

const services: PortService[] = [];
afterEach(async () => {
  await Promise.all(services.splice(0).map((s) => s.stop()));
});

async function serve(handler: RequestListener, bind: BindOptions = {}): Promise<number> {
  const service = new PortService({ env: {} });
  services.push(service);
  const binding = service.bind(httpAdapter({ handler }), {
    port: 0,
    host: '127.0.0.1',
    proxyProtocol: { trusted: ['127.0.0.1'] },
    ...bind,
  });
  await service.start();
  return portOf(binding);
}

/** Header and request in one write; the body of the response. */
async function get(port: number, header: string | Buffer, path = '/'): Promise<string> {
  const socket = await rawConnect(port);
  const outcome = readUntilClose(socket);
  socket.write(Buffer.concat([Buffer.from(header), Buffer.from(`GET ${path} HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n`)]));
  const { data } = await outcome;
  socket.destroy();
  expect(data).toMatch(/^HTTP\/1\.1 200 /);
  return data.slice(data.indexOf('\r\n\r\n') + 4);
}

describe('PROXY protocol in front of HTTP: handlers see the client', () => {
  it('Express: req.socket.remoteAddress, req.ip', async () => {
    const app = express();
    app.get('/', (req, res) => {
      res.json({ socket: req.socket.remoteAddress, port: req.socket.remotePort, ip: req.ip });
    });
    const port = await serve(app);
    expect(JSON.parse(await get(port, v1Header(['203.0.113.7', 51000])))).toEqual({
      socket: '203.0.113.7',
      port: 51000,
      ip: '203.0.113.7',
    });
    expect(JSON.parse(await get(port, v2Header({ family: 0x21, source: ['2001:db8::5', 1234] })))).toEqual({
      socket: '2001:db8::5',
      port: 1234,
      ip: '2001:db8::5',
    });
  });

  it('Fastify: request.ip and request.socket.remoteAddress', async () => {
    let routing: RequestListener | undefined;
    const fastify = Fastify({
      serverFactory: (handler) => {
        routing = handler;
        return createServer();
      },
    });
    fastify.get('/', async (request) => ({ ip: request.ip, socket: request.socket.remoteAddress }));
    await fastify.ready();
    if (routing === undefined) throw new Error('no handler from fastify');
    const port = await serve(routing);
    expect(JSON.parse(await get(port, v1Header(['198.51.100.3', 999])))).toEqual({ ip: '198.51.100.3', socket: '198.51.100.3' });
  });

  it('keep-alive: every request on the connection sees the client; LOCAL sees the proxy', async () => {
    const port = await serve((req, res) => res.end(`${req.socket.remoteAddress}\n`));
    const socket = await rawConnect(port);
    socket.write(`${v1Header(['192.0.2.44', 5])}GET / HTTP/1.1\r\nHost: a\r\n\r\n`);
    expect(await readUntil(socket, /192\.0\.2\.44\n$/)).toMatch(/^HTTP\/1\.1 200/);
    socket.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    expect(await readUntil(socket, /192\.0\.2\.44\n$/)).toMatch(/^HTTP\/1\.1 200/);
    socket.destroy();
    expect(await get(port, v2Header({ command: 0 }))).toBe('127.0.0.1\n');
  });

  it('a trusted proxy that sends a bare request gets no answer: closed', async () => {
    const port = await serve((_req, res) => res.end('no\n'));
    const socket = await rawConnect(port);
    const outcome = readUntilClose(socket);
    socket.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    expect(await outcome).toEqual({ data: '', closed: true });
  });
});
