import { once } from 'node:events';
import type { Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { type Logger, PortService, type PortSharingOptions } from '@portbind/core';
import { httpAdapter } from '@portbind/http';
import { OK, respAdapter } from '@portbind/resp';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { portOf, rawConnect, rawExchange, readUntil, readUntilClose, selfSignedCert, sleep } from './support/net.js';
import { prng } from './support/prng.js';

/**
 * Bad input on a port shared by HTTP (plain and TLS) and RESP, each over a raw socket: silence,
 * a trickle, garbage, a ClientHello a byte at a time, an unknown ALPN, an inline RESP line that
 * reads as HTTP. After each, the port still serves both protocols.
 */

let pems: { cert: string; key: string };
beforeAll(async () => {
  pems = await selfSignedCert();
});

const services: PortService[] = [];
afterEach(async () => {
  await Promise.all(services.splice(0).map((service) => service.stop()));
});

const debugLines: string[] = [];
const logger: Logger = {
  debug: (fields: object | string, message?: string) => {
    debugLines.push(`${message ?? ''} ${JSON.stringify(fields)}`);
  },
  info: () => {},
  warn: () => {},
  error: () => {},
  child: () => logger,
};

async function start(sharing: PortSharingOptions = {}, options: { fallback?: boolean } = {}) {
  const service = new PortService({ env: {}, gracePeriodMs: 2000, logger, portSharing: { join: true, ...sharing } });
  services.push(service);
  const resp = respAdapter();
  const notes = new Map<string, string>();
  resp.command('set', { arity: 3, flags: ['write'] }, (_client, [, key, value]) => {
    notes.set(String(key), String(value));
    return OK;
  });
  resp.command('get', { arity: 2, flags: ['readonly'] }, (_client, [, key]) => notes.get(String(key)) ?? null);
  const http = service.bind(httpAdapter({ fetch: (request) => new Response(`hello ${new URL(request.url).pathname}\n`) }), {
    port: 0,
    host: '127.0.0.1',
  });
  service.bind(httpAdapter({ fetch: () => new Response('secure\n') }), { name: 'https', tls: pems });
  service.bind(resp, { fallback: options.fallback });
  await service.start();
  return { service, port: portOf(http) };
}

/** The port still serves HTTP, HTTPS and RESP. */
async function stillServes(port: number): Promise<void> {
  const reply = await rawExchange(port, 'GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  expect(reply.data).toMatch(/^HTTP\/1\.1 200 OK[\s\S]*hello \/ok\n$/);
  const secure = tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] });
  await once(secure, 'secureConnect');
  expect(secure.alpnProtocol).toBe('http/1.1');
  secure.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  expect((await readUntilClose(secure as unknown as Socket)).data).toMatch(/^HTTP\/1\.1 200 OK[\s\S]*secure\n$/);
  const redis = await rawConnect(port);
  redis.write('*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n');
  expect(await readUntil(redis, /\$1\r\nv\r\n/)).toBe('+OK\r\n$1\r\nv\r\n');
  redis.destroy();
}

describe('a shared port under bad input', () => {
  it('closes a connection that sends nothing after firstByteTimeoutMs, and not before', async () => {
    const { port } = await start({ firstByteTimeoutMs: 1500 });
    const socket = await rawConnect(port);
    const opened = Date.now();
    const closed = readUntilClose(socket, 20_000);
    // Half-way, the connection is still open: a ping from here would be answered by nobody, but the
    // socket has neither ended nor been reset.
    await sleep(700);
    expect(socket.destroyed).toBe(false);
    expect(socket.readableEnded).toBe(false);
    const outcome = await closed;
    const elapsed = Date.now() - opened;
    expect(outcome).toEqual({ data: '', closed: true });
    expect(elapsed).toBeGreaterThanOrEqual(1450);
    await stillServes(port);
  });

  it('cuts a peer sending one byte a second at classifyTimeoutMs (the byte limit holds the rest)', async () => {
    const { port } = await start({ firstByteTimeoutMs: 60_000, classifyTimeoutMs: 2500 });
    const socket = await rawConnect(port);
    const closed = readUntilClose(socket, 20_000);
    const line = 'GET /slowly-but-surely HTTP/1.1\r\n';
    let sent = 0;
    const started = Date.now();
    const trickle = setInterval(() => {
      if (socket.destroyed || sent >= line.length) return clearInterval(trickle);
      socket.write(line[sent++] as string);
    }, 1000);
    const outcome = await closed;
    clearInterval(trickle);
    expect(outcome).toEqual({ data: '', closed: true });
    // Cut by the classification deadline (2.5 s after the first byte), long before the line was sent.
    expect(Date.now() - started).toBeGreaterThanOrEqual(2400);
    expect(sent).toBeLessThan(line.length);
    await stillServes(port);
  });

  it('closes 2 KiB of garbage (unknown protocol, no fallback)', async () => {
    const { port } = await start();
    const random = prng(11);
    const garbage = Buffer.from(Array.from({ length: 2048 }, () => Math.floor(random() * 256)));
    garbage[0] = 0x01; // not TLS, RESP, XMPP or a letter
    const outcome = await rawExchange(port, garbage);
    expect(outcome).toEqual({ data: '', closed: true });
    expect(debugLines.some((line) => line.includes('unknown protocol'))).toBe(true);
    await stillServes(port);
  });

  it('hands 2 KiB of garbage to the fallback binding, bytes and all', async () => {
    const { port } = await start({}, { fallback: true });
    const garbage = Buffer.concat([Buffer.alloc(2046, 0x01), Buffer.from('\r\n')]);
    const socket = await rawConnect(port);
    socket.write(garbage);
    // The RESP adapter got the bytes from the first one: Redis's own answer to an unknown inline command.
    expect(await readUntil(socket, /\r\n/)).toMatch(new RegExp(`^-ERR unknown command '${'\u0001'.repeat(20)}`));
    socket.destroy();
    await stillServes(port);
  });

  it('closes a slow garbage stream at classifyBytes without waiting for the deadline', async () => {
    const { port } = await start({ classifyBytes: 1024, classifyTimeoutMs: 60_000 });
    const socket = await rawConnect(port);
    const closed = readUntilClose(socket, 20_000);
    // Printable, never a newline: could be an inline command until the byte limit says otherwise.
    socket.write('a'.repeat(600));
    await sleep(100);
    socket.write('a'.repeat(600));
    expect(await closed).toEqual({ data: '', closed: true });
    await stillServes(port);
  });

  it('reads a TLS ClientHello sent in 1-byte segments, routes it by ALPN and serves it', async () => {
    const { port } = await start();
    const raw = await rawConnect(port);
    raw.setNoDelay(true);
    // A TLS client over a duplex that forwards what it writes to the server a byte at a time.
    const { Duplex } = await import('node:stream');
    const trickle = new Duplex({
      read() {},
      write(chunk: Buffer, _encoding, callback) {
        void (async () => {
          for (const byte of chunk) {
            raw.write(Buffer.from([byte]));
            await sleep(1);
          }
          callback();
        })();
      },
    });
    raw.on('data', (chunk: Buffer) => trickle.push(chunk));
    raw.on('close', () => trickle.push(null));
    const secure = tlsConnect({ socket: trickle, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'], servername: 'localhost' });
    await once(secure, 'secureConnect');
    expect(secure.alpnProtocol).toBe('http/1.1');
    secure.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    const chunks: Buffer[] = [];
    secure.on('data', (chunk: Buffer) => chunks.push(chunk));
    await once(secure, 'end');
    expect(Buffer.concat(chunks).toString()).toMatch(/^HTTP\/1\.1 200 OK[\s\S]*secure\n$/);
    raw.destroy();
  });

  it('answers a ClientHello whose ALPN names nothing served here with no_application_protocol', async () => {
    const { port } = await start();
    const secure = tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false, ALPNProtocols: ['imap', 'spdy/3'] });
    const [error] = (await once(secure, 'error')) as [NodeJS.ErrnoException];
    expect(error.code).toBe('ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL');
    await stillServes(port);
  });

  it('serves TLS without ALPN by its decrypted bytes (RESP over TLS goes nowhere: no TLS RESP binding)', async () => {
    const { port } = await start();
    const http = tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false });
    await once(http, 'secureConnect');
    expect(http.alpnProtocol).toBe(false);
    http.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect((await readUntilClose(http as unknown as Socket)).data).toMatch(/secure\n$/);
    const redis = tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false });
    await once(redis, 'secureConnect');
    redis.write('*1\r\n$4\r\nPING\r\n');
    expect(await readUntilClose(redis as unknown as Socket)).toEqual({ data: '', closed: true });
  });

  it('takes an inline line that reads as an HTTP request line for HTTP; other inline lines are RESP', async () => {
    const { port } = await start();
    // `GET / HTTP/1.1` is an HTTP request line: HTTP answers (400: no Host header), not Redis.
    const http = await rawExchange(port, 'GET / HTTP/1.1\r\n\r\n');
    expect(http.data).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    // A lower-case method is no HTTP method: an inline Redis command.
    const redis = await rawConnect(port);
    // Only the first line decides: once RESP, a later line that reads as HTTP is a Redis command too.
    redis.write('set greeting hi\r\nget greeting\r\nGET / HTTP/1.1\r\n');
    expect(await readUntil(redis, /command\r\n/)).toBe("+OK\r\n$2\r\nhi\r\n-ERR wrong number of arguments for 'get' command\r\n");
    redis.destroy();
    await stillServes(port);
  });

  it('serves a client that sends its request and half-closes at once (HTTP/1.0, RESP inline)', async () => {
    const { port } = await start();
    const http = await rawConnect(port);
    const reply = readUntilClose(http);
    http.end('GET /half HTTP/1.0\r\nHost: x\r\n\r\n');
    expect((await reply).data).toMatch(/^HTTP\/1\.1 200 OK[\s\S]*hello \/half\n$/);
    const redis = await rawConnect(port);
    const answer = readUntilClose(redis);
    redis.end('PING\r\n');
    expect((await answer).data).toBe('+PONG\r\n');
  });

  it('counts connections being classified for maxConnections, and a drain closes them', async () => {
    const service = new PortService({ env: {}, gracePeriodMs: 2000, logger, portSharing: { join: true } });
    services.push(service);
    const http = service.bind(httpAdapter({ fetch: () => new Response('hi\n') }), { port: 0, host: '127.0.0.1', maxConnections: 1 });
    service.bind(respAdapter(), { maxConnections: 1 });
    await service.start();
    const port = portOf(http);
    const silent = [await rawConnect(port), await rawConnect(port)];
    const third = await rawExchange(port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(third).toEqual({ data: '', closed: true });
    const closed = silent.map((socket) => readUntilClose(socket));
    const report = await service.stop();
    expect(report.forced).toBe(0);
    expect(await Promise.all(closed)).toEqual([
      { data: '', closed: true },
      { data: '', closed: true },
    ]);
  });
});
