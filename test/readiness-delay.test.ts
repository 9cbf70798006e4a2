import { once } from 'node:events';
import { PortService } from '@portbind/core';
import { httpAdapter } from '@portbind/http';
import { respAdapter } from '@portbind/resp';
import { wsEndpoint } from '@portbind/ws';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { portOf, rawConnect, readUntil, readUntilClose } from './support/net.js';

// During `readinessDelayMs` after a stop, only readiness has turned (/readyz 503, so a load balancer
// steers away); a client the balancer sent before it saw the 503 is still served — a RESP client, a
// WebSocket upgrade — and then gets the drain's polite close like everyone else.

const services: PortService[] = [];
afterEach(async () => {
  await Promise.all(services.splice(0).map((service) => service.stop()));
});

describe('readinessDelayMs', () => {
  it('serves new RESP clients and WebSocket upgrades while readiness is 503; the drain then closes them', async () => {
    const service = new PortService({ env: {}, readinessDelayMs: 1500, gracePeriodMs: 5000 });
    services.push(service);
    const echo = wsEndpoint({
      message: (conn, data) => {
        conn.send(data.toString());
      },
    });
    const http = service.bind(httpAdapter({ health: true, upgrades: { '/ws': echo }, fetch: () => new Response('hi') }), {
      port: 0,
      host: '127.0.0.1',
    });
    const resp = service.bind(respAdapter(), { port: 0, host: '127.0.0.1' });
    await service.start();

    const stopping = service.stop();
    // Readiness turned at once.
    const ready = await fetch(`http://127.0.0.1:${portOf(http)}/readyz`);
    expect(ready.status).toBe(503);

    // A new RESP client inside the delay: served.
    const client = await rawConnect(portOf(resp));
    client.write('PING\r\n');
    expect(await readUntil(client, /\r\n/)).toBe('+PONG\r\n');
    const respClosed = readUntilClose(client, 15_000);

    // A new WebSocket inside the delay: accepted and served.
    const ws = new WebSocket(`ws://127.0.0.1:${portOf(http)}/ws`);
    await once(ws, 'open');
    ws.send('still here');
    const [message] = (await once(ws, 'message')) as [Buffer];
    expect(message.toString()).toBe('still here');
    const wsClosed = once(ws, 'close') as Promise<[number]>;

    // Then the drain: both are closed politely, and the stop forced nothing.
    const report = await stopping;
    expect(report.forced).toBe(0);
    expect((await wsClosed)[0]).toBe(1001);
    expect((await respClosed).closed).toBe(true);
  });
});
