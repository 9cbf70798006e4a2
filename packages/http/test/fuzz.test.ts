import { PortService } from '@portbind/core';
import { afterAll, describe, expect, it } from 'vitest';
import { portOf } from '../../../test/support/net.js';
import { httpAdapter, type UpgradeHandler } from '../src/index.js';
import { capturingLogger, exchange, type LogLine, Mutator, pool } from './fuzz-support.js';

const SEED = 0x7007;
const INPUTS = 2500;
const CONCURRENCY = 16;
const PER_INPUT_TIMEOUT_MS = 150;
const CHECK_EVERY = 100;

/** Valid traffic, as captured from curl, fetch and ws clients: the seeds of every mutation. */
const corpus = [
  'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n',
  'GET /hello?name=world&x=1 HTTP/1.1\r\nHost: localhost:5000\r\nAccept: application/json\r\nConnection: keep-alive\r\n\r\n',
  'POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{"hello":"w"}',
  'POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n',
  'PUT /echo HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nbody',
  'GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n',
  'HEAD / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n',
  'GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /livez HTTP/1.1\r\nHost: a\r\n\r\n',
  'OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n',
  'DELETE /items/42 HTTP/1.1\r\nHost: localhost\r\nCookie: a=1; b=2\r\nAuthorization: Bearer abc.def\r\n\r\n',
  'GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
  'GET http://localhost/abs?q=1 HTTP/1.1\r\nHost: localhost\r\n\r\n',
].map((text) => Buffer.from(text, 'latin1'));

/** A minimal upgrade endpoint that completes nothing fancy: accepts a WebSocket-looking upgrade with 101 and echoes. */
const rawEcho: UpgradeHandler = {
  scheme: 'ws',
  secureScheme: 'wss',
  handleUpgrade(_request, socket) {
    socket.on('error', () => {});
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
    socket.on('data', (chunk: Buffer) => socket.write(chunk));
    setTimeout(() => socket.destroy(), 100).unref();
  },
  drain() {},
};

const lines: LogLine[] = [];
const service = new PortService({ env: {}, logger: capturingLogger(lines), gracePeriodMs: 2000 });
afterAll(async () => {
  await service.stop();
});

describe('HTTP fuzz', () => {
  it(`${INPUTS} mutated inputs, one connection each: the server lives, a good client is served throughout, no error logs`, async () => {
    const binding = service.bind(
      httpAdapter({
        health: true,
        bodyLimit: 64 * 1024,
        headersTimeoutMs: 2000,
        upgrades: { '/ws': rawEcho },
        fetch: async (request) => {
          const url = new URL(request.url);
          const body = request.method === 'GET' || request.method === 'HEAD' ? '' : await request.text();
          return Response.json({
            method: request.method,
            path: url.pathname,
            query: Object.fromEntries(url.searchParams),
            headers: [...request.headers.keys()].length,
            body: body.length,
          });
        },
      }),
      { port: 0, host: '127.0.0.1' },
    );
    await service.start();
    const port = portOf(binding);
    const mutator = new Mutator(SEED);
    const inputs = Array.from({ length: INPUTS }, (_, i) => mutator.mutate(mutator.pick(corpus), corpus) ?? corpus[i % corpus.length]);

    const statuses = new Map<string, number>();
    let closedByServer = 0;
    let goodChecks = 0;
    const check = async (): Promise<void> => {
      const response = await fetch(`http://127.0.0.1:${port}/check?n=${goodChecks}`);
      expect(response.status).toBe(200);
      expect(await response.json()).toMatchObject({ method: 'GET', path: '/check' });
      goodChecks++;
    };

    const started = Date.now();
    await pool(inputs, CONCURRENCY, async (input, index) => {
      const result = await exchange(port, input, mutator.random, PER_INPUT_TIMEOUT_MS);
      const status = result.status ?? (result.received === 0 ? 'none' : 'other');
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
      if (result.closed) closedByServer++;
      if (index % CHECK_EVERY === 0) await check();
    });
    await check();
    const took = Date.now() - started;

    expect(service.state).toBe('running');
    const errors = lines.filter((line) => line.level === 'error');
    expect([
      ...new Set(errors.map((line) => `${line.message}: ${String((line.fields as { err?: Error }).err?.stack).slice(0, 600)}`)),
    ]).toEqual([]);
    // The numbers, for the report: inputs sent, how the server answered, good-client checks.
    console.log(
      `HTTP fuzz: seed ${SEED}, ${INPUTS} inputs in ${took} ms, ${closedByServer} closed by the server, ` +
        `statuses ${JSON.stringify(Object.fromEntries([...statuses].sort()))}, ${goodChecks} good-client checks, ` +
        `${errors.length} error lines, ${lines.filter((line) => line.level === 'warn').length} warn lines`,
    );
    expect(goodChecks).toBe(Math.ceil(INPUTS / CHECK_EVERY) + 1);
    // The inputs did reach the parser and the handler, not only the socket (bounds far below a
    // typical run's ~1,950 × 400 and ~200 × 200, so a slow machine does not make them flaky).
    expect(statuses.get('400') ?? 0).toBeGreaterThan(500);
    expect(statuses.get('200') ?? 0).toBeGreaterThan(50);
  }, 60_000);
});
