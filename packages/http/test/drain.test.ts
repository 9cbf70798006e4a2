import { PortService } from '@portbind/core';
import express from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import { portOf, rawConnect, readUntil, readUntilClose, sleep } from '../../../test/support/net.js';
import { type HttpOptions, httpAdapter } from '../src/index.js';

const services: PortService[] = [];
afterEach(async () => {
  await Promise.all(services.splice(0).map((s) => s.stop()));
});

async function serve(options: HttpOptions, serviceOptions: ConstructorParameters<typeof PortService>[0] = {}) {
  const service = new PortService({ env: {}, ...serviceOptions });
  services.push(service);
  const binding = service.bind(httpAdapter(options), { port: 0, host: '127.0.0.1' });
  await service.start();
  return { service, port: portOf(binding) };
}

describe('drain with Express 5 (it swaps the response prototype)', () => {
  it('an in-flight Express response carries Connection: close and the connection closes', async () => {
    const app = express();
    app.get('/slow', (_req, res) => {
      setTimeout(() => res.json({ done: true }), 300);
    });
    app.get('/fast', (_req, res) => {
      res.send('fast');
    });
    const { service, port } = await serve({ handler: app });

    // Before the drain, Express answers keep-alive.
    const socket = await rawConnect(port);
    socket.write('GET /fast HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(await readUntil(socket, /fast$/)).toMatch(/Connection: keep-alive/i);

    const output = readUntilClose(socket);
    socket.write('GET /slow HTTP/1.1\r\nHost: x\r\n\r\n');
    await sleep(50);
    const report = await service.stop();
    expect(report.forced).toBe(0);
    const result = await output;
    expect(result.closed).toBe(true);
    expect(result.data).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(result.data).toMatch(/\r\nConnection: close\r\n/i);
    expect(result.data).not.toMatch(/keep-alive/i);
    expect(result.data).toMatch(/\{"done":true\}$/);
  });

  it('a request arriving on a keep-alive connection during the readiness delay is answered with Connection: close', async () => {
    const app = express();
    app.get('/', (_req, res) => {
      res.send('hi');
    });
    const { service, port } = await serve({ handler: app }, { readinessDelayMs: 300 });
    const socket = await rawConnect(port);
    socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await readUntil(socket, /hi$/);
    const stopping = service.stop();
    const output = readUntilClose(socket);
    socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    const result = await output;
    expect(result.data).toMatch(/\r\nConnection: close\r\n/i);
    expect(result.closed).toBe(true);
    await stopping;
  });
});
