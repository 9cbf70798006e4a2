import { once } from 'node:events';
import type { Socket } from 'node:net';
import { PortService } from '@portbind/core';
import { httpAdapter } from '@portbind/http';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { portOf, rawConnect, readUntil, readUntilClose } from '../../../test/support/net.js';
import { type WsOptions, wsEndpoint } from '../src/index.js';

const services: PortService[] = [];
afterEach(async () => {
  await Promise.all(services.splice(0).map((s) => s.stop()));
});

async function mounted(options: WsOptions, gracePeriodMs: number, closeWaitMs?: number) {
  const endpoint = wsEndpoint(options);
  const service = new PortService({ env: {}, gracePeriodMs });
  services.push(service);
  const binding = service.bind(httpAdapter({ upgrades: { '/ws': endpoint } }), { port: 0, host: '127.0.0.1', closeWaitMs });
  await service.start();
  return { endpoint, service, port: portOf(binding) };
}

/** A WebSocket peer on a raw socket: it completes the handshake and then never answers anything. */
async function deafPeer(port: number): Promise<Socket> {
  const socket = await rawConnect(port);
  socket.write(
    'GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
  );
  expect(await readUntil(socket, /\r\n\r\n/)).toMatch(/^HTTP\/1\.1 101 /);
  return socket;
}

describe('drain', () => {
  it('cuts a peer that never answers the close frame after closeWaitMs, not the grace period', async () => {
    const { service, port } = await mounted({}, 20_000, 300);
    const peer = await deafPeer(port);
    const received = readUntilClose(peer, 15_000);
    const started = Date.now();
    const report = await service.stop();
    const took = Date.now() - started;
    // Far below the 20 s grace period (and ws's own 30 s close timeout): closeWaitMs did it.
    expect(took).toBeLessThan(10_000);
    expect(report.forced).toBe(0);
    const { data, closed } = await received;
    expect(closed).toBe(true);
    // An unmasked close frame with code 1001 (0x03e9) and the reason.
    const frame = Buffer.from(data, 'latin1');
    expect(frame[0]).toBe(0x88);
    expect(frame.readUInt16BE(2)).toBe(1001);
    expect(frame.subarray(4).toString()).toBe('server shutting down');
  });

  it('closes 20 peers with 1001 without a MaxListenersExceededWarning', async () => {
    const warnings: Error[] = [];
    const onWarning = (warning: Error): void => {
      warnings.push(warning);
    };
    process.on('warning', onWarning);
    try {
      const { service, port } = await mounted({}, 20_000, 2000);
      const peers = await Promise.all(
        Array.from({ length: 20 }, async () => {
          const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
          await once(ws, 'open');
          return ws;
        }),
      );
      const closes = peers.map((ws) => new Promise<number>((resolve) => ws.once('close', (code: number) => resolve(code))));
      const report = await service.stop();
      expect(await Promise.all(closes)).toEqual(new Array(20).fill(1001));
      expect(report.forced).toBe(0);
      // Warnings are emitted on the next tick.
      await new Promise((resolve) => setImmediate(resolve));
      expect(warnings.filter((warning) => warning.name === 'MaxListenersExceededWarning')).toEqual([]);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('runs the onDrain hook before closing peers', async () => {
    const order: string[] = [];
    const endpointOptions: WsOptions = {
      onDrain: () => {
        order.push('onDrain');
      },
      close: () => {
        order.push('closed');
      },
    };
    const { service, port } = await mounted(endpointOptions, 5000);
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
    await once(ws, 'open');
    await service.stop();
    expect(order).toEqual(['onDrain', 'closed']);
  });
});
