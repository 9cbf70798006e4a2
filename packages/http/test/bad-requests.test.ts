import { PortService } from '@portbind/core';
import { afterEach, describe, expect, it } from 'vitest';
import { capturingLogger, type LogLine } from '../../../test/support/log.js';
import { portOf, rawConnect, rawExchange, readUntilClose } from '../../../test/support/net.js';
import { type HttpOptions, httpAdapter, httpDefaults } from '../src/index.js';

/** Wait (polling) until `condition` holds; fail after 5 s. */
async function until(condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met within 5 s');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const services: PortService[] = [];
afterEach(async () => {
  await Promise.all(services.splice(0).map((s) => s.stop()));
});

async function serve(options: HttpOptions) {
  const lines: LogLine[] = [];
  const service = new PortService({ env: {}, logger: capturingLogger(lines) });
  services.push(service);
  const binding = service.bind(httpAdapter(options), { port: 0, host: '127.0.0.1' });
  await service.start();
  return { port: portOf(binding), url: binding.url, errors: () => lines.filter((line) => line.level === 'error'), lines };
}

describe('malformed requests on the fetch-handler path', () => {
  let calls = 0;
  const fetchHandler = () => {
    calls++;
    return new Response('ok');
  };

  it.each([
    ['HTTP/1.0 without Host', 'GET / HTTP/1.0\r\n\r\n'],
    ['a Host with a space', 'GET / HTTP/1.1\r\nHost: exa mple.com\r\n\r\n'],
    ['a Host with a path', 'GET / HTTP/1.1\r\nHost: a/b\r\n\r\n'],
    ['a Host with a broken IPv6 literal', 'GET / HTTP/1.1\r\nHost: [::1\r\n\r\n'],
    ['a Host with a user part', 'GET / HTTP/1.1\r\nHost: user@evil.example\r\n\r\n'],
    ['a Host that looks like an IPv4 address but is none', 'GET / HTTP/1.1\r\nHost: 1.2.3.256\r\n\r\n'],
    ['a backslash in the path', 'GET /a\\b HTTP/1.1\r\nHost: x\r\n\r\n'],
    ['an asterisk request target', 'GET * HTTP/1.1\r\nHost: x\r\n\r\n'],
  ])('answers 400 to %s, logs no error, and keeps serving', async (_name, request) => {
    const { port, url, errors } = await serve({ fetch: fetchHandler });
    const before = calls;
    const result = await rawExchange(port, request);
    expect(result.data).toMatch(/^HTTP\/1\.[01] 400 Bad Request\r\n/);
    expect(result.data).toMatch(/\r\nconnection: close\r\n/i);
    expect(result.closed).toBe(true);
    expect(calls).toBe(before);
    expect(errors()).toEqual([]);
    expect(await (await fetch(url)).text()).toBe('ok');
  });
});

describe('two Host headers (RFC 9112 §3.2)', () => {
  it.each([
    ['a fetch handler', { fetch: () => new Response('ok') }],
    ['a Node listener', { handler: (_req: unknown, res: { end: (body: string) => void }) => res.end('ok') } as HttpOptions],
  ])('answer 400 on %s, without calling it, and close', async (_name, options) => {
    const { port, url, errors } = await serve(options as HttpOptions);
    const result = await rawExchange(port, 'GET / HTTP/1.1\r\nHost: a.example\r\nhost: b.example\r\n\r\n');
    expect(result.data).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    expect(result.data).toContain('more than one Host header');
    expect(result.closed).toBe(true);
    expect(errors()).toEqual([]);
    expect(await (await fetch(url)).text()).toBe('ok');
  });
});

describe('options a typo can break fail at construction (PB_ERR_CONFIG)', () => {
  it.each([
    ['fetch', { fetch: 5 }],
    ['handler', { handler: 'app' }],
    ['upgrades', { upgrades: { chat: { scheme: 'ws', secureScheme: 'wss', handleUpgrade: () => {}, drain: () => {} } } }],
  ])('%s', (option, options) => {
    expect(() => httpAdapter(options as unknown as HttpOptions)).toThrow(
      expect.objectContaining({ code: 'PB_ERR_CONFIG', variable: option }),
    );
  });
});

describe('a client that leaves mid-body', () => {
  it('is logged at debug, not as a handler failure', async () => {
    let rejected: unknown;
    let calls = 0;
    const { port, url, errors, lines } = await serve({
      fetch: async (request) => {
        calls++;
        try {
          return new Response(await request.text());
        } catch (error) {
          rejected = error;
          throw error;
        }
      },
    });
    const socket = await rawConnect(port);
    socket.write('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly part');
    await until(() => calls > 0); // the handler is reading the body
    socket.destroy();
    await until(() => rejected !== undefined);
    expect(rejected).toBeInstanceOf(Error);
    await until(() => lines.some((line) => line.message === 'client left before the response'));
    expect(errors()).toEqual([]);
    expect(lines.some((line) => line.level === 'debug' && line.message === 'client left before the response')).toBe(true);
    expect((await fetch(url, { method: 'POST', body: 'whole' })).status).toBe(200);
  });
});

describe('request body limit for fetch handlers', () => {
  const echoLength: HttpOptions['fetch'] = async (request) => new Response(`got ${(await request.arrayBuffer()).byteLength}`);

  it('defaults to 1 MiB, as Fastify', async () => {
    expect(httpDefaults.bodyLimit).toBe(1024 * 1024);
    const { port, errors } = await serve({ fetch: echoLength });
    const socket = await rawConnect(port);
    const output = readUntilClose(socket);
    socket.write(`POST / HTTP/1.1\r\nHost: x\r\nContent-Length: ${1024 * 1024 + 1}\r\n\r\n`);
    const result = await output;
    expect(result.data).toMatch(/^HTTP\/1\.1 413 Payload Too Large\r\n/);
    expect(result.data).toMatch(/\r\nconnection: close\r\n/i);
    expect(result.data).toContain('at most 1048576 bytes');
    expect(result.closed).toBe(true);
    expect(errors()).toEqual([]);
  });

  it('answers 413 to a Content-Length over the limit before the handler runs', async () => {
    let calls = 0;
    const { port, url, errors } = await serve({
      bodyLimit: 1000,
      fetch: async (request) => {
        calls++;
        return new Response(`got ${(await request.arrayBuffer()).byteLength}`);
      },
    });
    const result = await rawExchange(port, `POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n${'a'.repeat(1001)}`);
    expect(result.data).toMatch(/^HTTP\/1\.1 413 /);
    expect(calls).toBe(0);
    const fits = await fetch(url, { method: 'POST', body: 'b'.repeat(1000) });
    expect(await fits.text()).toBe('got 1000');
    expect(errors()).toEqual([]);
  });

  it('counts a chunked body as it streams: 413 once it grows past the limit, no truncated body reaches the handler', async () => {
    const seen: string[] = [];
    const { port, url, errors, lines } = await serve({
      bodyLimit: 1000,
      fetch: async (request) => {
        try {
          const body = await request.text();
          seen.push(`body ${body.length}`);
          return new Response(`got ${body.length}`);
        } catch (error) {
          seen.push(`rejected ${(error as Error).name}`);
          throw error;
        }
      },
    });
    const chunk = (text: string): string => `${text.length.toString(16)}\r\n${text}\r\n`;
    const socket = await rawConnect(port);
    const output = readUntilClose(socket);
    socket.write(`POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${chunk('a'.repeat(600))}`);
    socket.write(`${chunk('b'.repeat(600))}0\r\n\r\n`);
    const result = await output;
    expect(result.data).toMatch(/^HTTP\/1\.1 413 /);
    expect(result.data).toMatch(/\r\nconnection: close\r\n/i);
    expect(result.closed).toBe(true);
    await until(() => seen.length > 0);
    expect(seen).toEqual(['rejected BodyLimitError']);
    expect(errors()).toEqual([]);
    expect(lines.some((line) => line.level === 'debug' && line.message === 'request body over the limit')).toBe(true);

    // A chunked body under the limit is whole.
    const small = await rawExchange(
      port,
      `POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${chunk('c'.repeat(700))}0\r\n\r\n`,
    );
    expect(small.data).toMatch(/got 700$/);
    expect(await (await fetch(url)).text()).toBe('got 0');
  });

  it('Infinity turns the limit off', async () => {
    const { url } = await serve({ bodyLimit: Number.POSITIVE_INFINITY, fetch: echoLength });
    const response = await fetch(url, { method: 'POST', body: new Uint8Array(2 * 1024 * 1024) });
    expect(await response.text()).toBe(`got ${2 * 1024 * 1024}`);
  });
});
