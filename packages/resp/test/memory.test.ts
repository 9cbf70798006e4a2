import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { PortService, silentLogger } from '@portbind/core';
import { describe, expect, it } from 'vitest';
import { portOf, sleep } from '../../../test/support/net.js';
import { respAdapter } from '../src/index.js';
import { ARGUMENT_OVERHEAD, RequestParser } from '../src/parser.js';

// The query buffer limits count what a pending command really costs. Measure it through the
// parser, so the figures cannot silently fall behind V8: V8's heap and the ArrayBuffers
// (Buffers' bytes live outside the heap) together.

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
/** Collect, and again once the freed ArrayBuffers' memory is returned (that happens after the collection). */
const settle = async (): Promise<void> => {
  gc();
  await new Promise((resolve) => setTimeout(resolve, 100));
  gc();
};
const used = (): number => {
  const { heapUsed, arrayBuffers } = process.memoryUsage();
  return heapUsed + arrayBuffers;
};
const header = (count: number): Buffer => Buffer.from(`*${count + 1}\r\n$3\r\nDEL\r\n`);
/** `$1\r\na\r\n`: seven bytes on the wire for one one-byte argument. */
const oneByteArgs = (count: number): Buffer => Buffer.from('$1\r\na\r\n'.repeat(count));

describe('what a pending argument costs', () => {
  it('a command received over many reads: about 5 bytes per one-byte argument (7 on the wire), and the parser counts at least that', async () => {
    const count = 500_000;
    const parser = new RequestParser();
    const piece = oneByteArgs(10_000);
    await settle();
    const before = used();
    parser.push(header(count + 1));
    for (let i = 0; i < count / 10_000; i++) {
      parser.push(piece);
      expect(parser.next()).toBeUndefined();
    }
    await settle();
    const real = used() - before;
    // The arguments of earlier reads are copied into blocks of 64 KiB (1 byte each) with a 4-byte
    // length each: about 5 bytes per argument, under 1 byte per byte on the wire.
    // (As Buffer views, one per argument, they cost about 115: 18.5 bytes per byte on the wire;
    // Redis 7.0.15 pays about 41, 5.9 per byte.)
    const perWireByte = real / (count * 7);
    expect(perWireByte).toBeLessThan(1);
    // What the limits count: at least what it really costs.
    expect(parser.cost).toBeGreaterThanOrEqual(real * 0.9);
    expect(parser.partialArgvBytes).toBe(count + 3);
    // Completed, the command holds every argument intact.
    parser.push(Buffer.from('$1\r\nz\r\n'));
    const command = parser.next();
    expect(command?.length).toBe(count + 2);
    expect(command?.[0]?.toString()).toBe('DEL');
    expect(command?.[count]?.toString()).toBe('a');
    expect(command?.[count + 1]?.toString()).toBe('z');
    expect(parser.cost).toBe(0);
  });

  it(`a command's arguments as Buffers (one read, or queued by MULTI): at most ARGUMENT_OVERHEAD (${ARGUMENT_OVERHEAD} bytes) each beyond their bytes`, async () => {
    const count = 200_000;
    const parser = new RequestParser();
    const wire = Buffer.concat([header(count), oneByteArgs(count)]);
    await settle();
    const before = used();
    parser.push(wire);
    const command = parser.next();
    await settle();
    const perArgument = (used() - before) / count;
    expect(command?.length).toBe(count + 1);
    // On Node 20 this measures about 108 bytes: a Buffer view and its array slot.
    expect(perArgument).toBeGreaterThan(50);
    expect(perArgument).toBeLessThanOrEqual(ARGUMENT_OVERHEAD);
  });

  it('discarding a pending command frees what it counted', () => {
    const parser = new RequestParser();
    parser.push(header(100_000));
    parser.push(oneByteArgs(50_000));
    expect(parser.next()).toBeUndefined();
    expect(parser.cost).toBeGreaterThan(50_000);
    parser.discard();
    expect(parser.cost).toBe(0);
    expect(parser.partialArgvBytes).toBe(0);
  });
});

/** Heap bytes per connection while `count` idle clients are connected (the clients' own sockets included). */
async function heapPerIdleConnection(port: number, accepted: () => number, count: number): Promise<number> {
  const sockets: Socket[] = [];
  await settle();
  const before = process.memoryUsage().heapUsed;
  // In batches, each accepted before the next (a full accept queue would hold connections back).
  for (let batch = 0; batch < count; batch += 100) {
    for (let i = batch; i < Math.min(count, batch + 100); i++) {
      const socket = connect(port, '127.0.0.1');
      socket.on('error', () => {});
      sockets.push(socket);
    }
    await Promise.all(sockets.slice(batch).map((socket) => (socket.connecting ? once(socket, 'connect') : undefined)));
    for (let i = 0; i < 500 && accepted() < sockets.length; i++) await sleep(10);
  }
  expect(accepted()).toBe(count);
  await settle();
  const per = (process.memoryUsage().heapUsed - before) / count;
  for (const socket of sockets) socket.destroy();
  await sleep(100);
  return per;
}

describe('what an idle client costs', () => {
  it('portbind adds under 1 KB of heap per idle RESP client to what Node costs for the connection', async () => {
    const count = 2_000;
    // Node alone: a server whose sockets read, and the same clients.
    let netAccepted = 0;
    const server = createServer((socket) => {
      netAccepted++;
      socket.on('data', () => {});
      socket.on('error', () => {});
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port: netPort } = server.address() as { port: number };
    const node = await heapPerIdleConnection(netPort, () => netAccepted, count);
    server.close();

    const resp = respAdapter();
    const service = new PortService({ env: {}, logger: silentLogger });
    const binding = service.bind(resp, { port: 0, host: '127.0.0.1', maxConnections: count + 10 });
    await service.start();
    try {
      const portbind = await heapPerIdleConnection(portOf(binding), () => resp.clients.size, count);
      // Measured on Node 20: ~0.6 KB (RespClient, its parser, core's Connection, the context
      // object, map entries). It was ~2.2 KB with three Sets, four closures and once() wrappers
      // per client, and a reply writer made before the first reply.
      expect(portbind - node).toBeLessThan(1024);
      expect(portbind).toBeGreaterThan(node);
    } finally {
      await service.stop();
    }
  }, 60_000);
});
