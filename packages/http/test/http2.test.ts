import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:http';
import { type ClientHttp2Session, connect as h2connect } from 'node:http2';
import { promisify } from 'node:util';
import { type BindOptions, PortService } from '@portbind/core';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { portOf, rawConnect, readUntilClose, selfSignedCert, sleep } from '../../../test/support/net.js';
import { clientInfo, type HttpOptions, httpAdapter } from '../src/index.js';
import { ErrorCode, FrameType, frame, headers, RawH2, rstStream } from './h2-frames.js';

const run = promisify(execFile);
const services: PortService[] = [];
const clients: Array<ClientHttp2Session | RawH2> = [];
afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  await Promise.all(services.splice(0).map((s) => s.stop()));
});

async function serve(options: HttpOptions, bind: BindOptions = {}, serviceOptions: ConstructorParameters<typeof PortService>[0] = {}) {
  const service = new PortService({ env: {}, ...serviceOptions });
  services.push(service);
  const binding = service.bind(httpAdapter(options), { port: 0, host: '127.0.0.1', ...bind });
  await service.start();
  return { service, binding, port: portOf(binding) };
}

/** One Node listener for every protocol: it says which HTTP version and scheme carried the request. */
const whoAmI: HttpOptions['handler'] = (req, res) => {
  res.setHeader('content-type', 'application/json');
  res.end(
    JSON.stringify({ version: req.httpVersion, secure: clientInfo(req)?.secure, client: clientInfo(req)?.remoteAddress, path: req.url }),
  );
};

async function curl(args: string[]): Promise<{ body: unknown; protocol: string }> {
  const { stdout } = await run('curl', ['-sS', '-k', '-w', '\n%{http_version}', ...args], { timeout: 20_000 });
  const lines = stdout.trimEnd().split('\n');
  const protocol = lines.pop() as string;
  return { body: JSON.parse(lines.join('\n')), protocol };
}

async function rawOpen(port: number, options: { ack?: boolean; preface?: boolean } = {}): Promise<RawH2> {
  const raw = await RawH2.open(port, options);
  clients.push(raw);
  return raw;
}

/** Wait until the server's SETTINGS are acknowledged by us and its ACK of ours arrived: the limits are in force. */
async function settled(raw: RawH2): Promise<void> {
  await raw.until((f) => f.type === FrameType.SETTINGS && f.flags === 1);
  await raw.until((f) => f.type === FrameType.SETTINGS && f.flags === 0);
}

describe('HTTP/2 beside HTTP/1.1 on one port', () => {
  it('curl --http2-prior-knowledge (h2c) and HTTP/1.1 reach the same listener on one plaintext port', async () => {
    const { port } = await serve({ http2: true, handler: whoAmI });
    const h2c = await curl(['--http2-prior-knowledge', `http://127.0.0.1:${port}/a`]);
    expect(h2c).toEqual({ protocol: '2', body: { version: '2.0', secure: false, client: '127.0.0.1', path: '/a' } });
    const h1 = await curl(['--http1.1', `http://127.0.0.1:${port}/b`]);
    expect(h1).toEqual({ protocol: '1.1', body: { version: '1.1', secure: false, client: '127.0.0.1', path: '/b' } });
    // Without prior knowledge curl speaks HTTP/1.1 (no Upgrade: h2c is offered, so none is taken).
    expect((await curl([`http://127.0.0.1:${port}/c`])).protocol).toBe('1.1');
  });

  it('curl --http2 over TLS negotiates h2 by ALPN, HTTP/1.1 still served on the same TLS port', async () => {
    const pems = await selfSignedCert();
    const { port } = await serve({ http2: true, handler: whoAmI }, { tls: { ...pems, ALPNProtocols: ['h2', 'http/1.1'] } });
    const h2 = await curl(['--http2', `https://127.0.0.1:${port}/a`]);
    expect(h2).toEqual({ protocol: '2', body: { version: '2.0', secure: true, client: '127.0.0.1', path: '/a' } });
    const h1 = await curl(['--http1.1', `https://127.0.0.1:${port}/b`]);
    expect(h1).toEqual({ protocol: '1.1', body: { version: '1.1', secure: true, client: '127.0.0.1', path: '/b' } });
  });

  it('a TLS binding of its own offers h2 by itself (no ALPNProtocols given): curl --http2 gets h2, --http1.1 HTTP/1.1', async () => {
    const pems = await selfSignedCert();
    const { port } = await serve({ http2: true, handler: whoAmI }, { tls: pems });
    expect((await curl(['--http2', `https://127.0.0.1:${port}/a`])).protocol).toBe('2');
    expect((await curl(['--http1.1', `https://127.0.0.1:${port}/b`])).protocol).toBe('1.1');
  });

  it('on a port shared with a TLS binding: curl --http2 (TLS, ALPN h2), --http2-prior-knowledge and HTTP/1.1, one handler', async () => {
    const pems = await selfSignedCert();
    const service = new PortService({ env: {} });
    services.push(service);
    const plain = service.bind(httpAdapter({ http2: true, handler: whoAmI }), { port: 0, host: '127.0.0.1' });
    // Find a free port first (port 0 is never shared), then bind both there.
    await service.start();
    const port = portOf(plain);
    await service.stop();
    services.pop();
    const shared = new PortService({ env: {} });
    services.push(shared);
    shared.bind(httpAdapter({ http2: true, handler: whoAmI }), { port, host: '127.0.0.1' });
    // No ALPNProtocols here: core's shared listener negotiates what the bindings declare (h2, http/1.1).
    shared.bind(httpAdapter({ http2: true, handler: whoAmI }), { name: 'https', port, host: '127.0.0.1', tls: pems });
    await shared.start();
    expect((await curl(['--http2', `https://127.0.0.1:${port}/tls`])).body).toEqual({
      version: '2.0',
      secure: true,
      client: '127.0.0.1',
      path: '/tls',
    });
    expect((await curl(['--http1.1', `https://127.0.0.1:${port}/tls1`])).protocol).toBe('1.1');
    expect((await curl(['--http2-prior-knowledge', `http://127.0.0.1:${port}/h2c`])).body).toEqual({
      version: '2.0',
      secure: false,
      client: '127.0.0.1',
      path: '/h2c',
    });
    expect((await curl(['--http1.1', `http://127.0.0.1:${port}/h1`])).protocol).toBe('1.1');
  });

  it('a fetch handler (Hono underneath) serves h2c: method, body, status and headers', async () => {
    const { port } = await serve({
      http2: true,
      fetch: async (request, info) =>
        Response.json(
          { method: request.method, body: await request.text(), url: request.url, client: info.remoteAddress },
          { status: 201 },
        ),
    });
    const client = h2connect(`http://127.0.0.1:${port}`);
    clients.push(client);
    const stream = client.request({ ':method': 'POST', ':path': '/p?q=1', 'content-type': 'text/plain' });
    stream.end('hello');
    const [head] = (await once(stream, 'response')) as [Record<string, string | number>];
    let text = '';
    for await (const chunk of stream) text += chunk;
    expect(head[':status']).toBe(201);
    expect(JSON.parse(text)).toEqual({ method: 'POST', body: 'hello', url: `http://127.0.0.1:${port}/p?q=1`, client: '127.0.0.1' });
  });

  it("Fastify's routing serves h2c and HTTP/1.1 alike (Express does not survive node:http2's objects: http2 stays opt-in)", async () => {
    let routing: HttpOptions['handler'];
    const fastify = Fastify({
      serverFactory: (handler) => {
        routing = handler;
        return createServer();
      },
    });
    fastify.get('/f/:id', async (request) => ({ id: (request.params as { id: string }).id, version: request.raw.httpVersion }));
    await fastify.ready();
    try {
      const { port } = await serve({ http2: true, handler: routing });
      expect(await curl(['--http2-prior-knowledge', `http://127.0.0.1:${port}/f/7`])).toEqual({
        protocol: '2',
        body: { id: '7', version: '2.0' },
      });
      expect(await curl(['--http1.1', `http://127.0.0.1:${port}/f/8`])).toEqual({ protocol: '1.1', body: { id: '8', version: '1.1' } });
    } finally {
      await fastify.close();
    }
  });

  it('bodyLimit holds over h2: a body without Content-Length past it gets 413, a declared one at once', async () => {
    const { port } = await serve({
      http2: true,
      bodyLimit: 1000,
      fetch: async (request) => new Response(`got ${(await request.text()).length}`),
    });
    const client = h2connect(`http://127.0.0.1:${port}`);
    clients.push(client);
    const post = async (body: Buffer, declared: boolean): Promise<{ status: unknown; text: string }> => {
      const stream = client.request({ ':method': 'POST', ':path': '/', ...(declared ? { 'content-length': body.length } : {}) });
      stream.on('error', () => {});
      stream.end(body);
      const [head] = (await once(stream, 'response')) as [Record<string, string | number>];
      let text = '';
      for await (const chunk of stream) text += chunk;
      return { status: head[':status'], text };
    };
    expect(await post(Buffer.alloc(500), false)).toEqual({ status: 200, text: 'got 500' });
    expect((await post(Buffer.alloc(5000), false)).status).toBe(413);
    expect((await post(Buffer.alloc(5000), true)).status).toBe(413);
    expect(await post(Buffer.alloc(10), false)).toEqual({ status: 200, text: 'got 10' });
  });

  it('WebSocket-style upgrades stay on HTTP/1.1 while h2c is on', async () => {
    const { port } = await serve({
      http2: true,
      handler: whoAmI,
      upgrades: {
        '/up': {
          scheme: 'ws',
          secureScheme: 'wss',
          handleUpgrade: (_req, socket) =>
            socket.end('HTTP/1.1 101 Switching Protocols\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\nupgraded'),
          drain: () => {},
        },
      },
    });
    const socket = await rawConnect(port);
    const reply = readUntilClose(socket);
    socket.write('GET /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n');
    expect((await reply).data).toMatch(/^HTTP\/1\.1 101 Switching Protocols\r\n[\s\S]*upgraded$/);
  });
});

describe('HTTP/2 drain', () => {
  it('a stream in flight completes; the client sees GOAWAY 2^31-1, then GOAWAY with its last stream, no RST_STREAM, then the close', async () => {
    const { service, port } = await serve({
      http2: true,
      handler: (req, res) => {
        if (req.url === '/slow') setTimeout(() => res.end('slow done'), 400);
        else res.end('fast');
      },
    });
    const raw = await rawOpen(port);
    await settled(raw);
    raw.write(headers(1, '/fast'));
    await raw.until((f) => f.streamId === 1 && (f.flags & 1) === 1);
    raw.write(headers(3, '/slow'));
    await sleep(100);
    const report = await service.stop();
    await raw.untilClosed();
    expect(report.forced).toBe(0);
    expect(raw.body(3)).toBe('slow done');
    expect(raw.ended(3)).toBe(true);
    expect(raw.resets()).toEqual([]);
    const goaways = raw.goaways();
    expect(goaways[0]).toEqual({ lastStreamId: 2 ** 31 - 1, code: ErrorCode.NO_ERROR });
    expect(goaways.at(-1)).toEqual({ lastStreamId: 3, code: ErrorCode.NO_ERROR });
    // The final GOAWAY comes before the in-flight stream's last frame: it finished after the announcement.
    const finalAt = raw.frames.findIndex((f) => f.type === FrameType.GOAWAY && f.payload.readUInt32BE(0) === 3);
    const lastData = raw.frames.findLastIndex((f) => f.streamId === 3);
    expect(finalAt).toBeLessThan(lastData);
  });

  it('a stream opened after the announcing GOAWAY is not processed and not reset: the final GOAWAY excludes it (client retries)', async () => {
    let seen = 0;
    const { service, port } = await serve({
      http2: true,
      handler: (req, res) => {
        seen++;
        if (req.url === '/slow') setTimeout(() => res.end('slow done'), 500);
        else res.end('fast');
      },
    });
    const raw = await rawOpen(port);
    // No automatic PING answer: the late stream goes out between the two GOAWAYs for sure.
    raw.ackPings = false;
    await settled(raw);
    raw.write(headers(1, '/slow'));
    await sleep(100);
    const stopping = service.stop();
    await raw.until((f) => f.type === FrameType.GOAWAY);
    raw.write(headers(3, '/late'));
    const ping = await raw.until((f) => f.type === FrameType.PING && (f.flags & 1) === 0);
    raw.write(frame(FrameType.PING, 1, 0, ping?.payload));
    await raw.untilClosed();
    expect((await stopping).forced).toBe(0);
    expect(raw.body(1)).toBe('slow done');
    expect(raw.goaways()[0]).toEqual({ lastStreamId: 2 ** 31 - 1, code: ErrorCode.NO_ERROR });
    expect(raw.goaways().at(-1)).toEqual({ lastStreamId: 1, code: ErrorCode.NO_ERROR });
    expect(raw.resets()).toEqual([]);
    expect(raw.frames.some((f) => f.streamId === 3)).toBe(false);
    expect(seen).toBe(1);
  });

  it('node:http2 client: an in-flight request completes during stop(), the session gets GOAWAY and closes', async () => {
    const { service, port } = await serve({ http2: true, fetch: async () => new Response(await sleep(300).then(() => 'late')) });
    const client = h2connect(`http://127.0.0.1:${port}`);
    clients.push(client);
    const goaway = once(client, 'goaway');
    const stream = client.request({ ':path': '/' });
    const [head] = (await once(stream, 'response')) as [Record<string, string | number>];
    const stopping = service.stop();
    let text = '';
    for await (const chunk of stream) text += chunk;
    expect(head[':status']).toBe(200);
    expect(text).toBe('late');
    expect(stream.rstCode).toBe(ErrorCode.NO_ERROR);
    const [code] = (await goaway) as [number];
    expect(code).toBe(ErrorCode.NO_ERROR);
    expect((await stopping).forced).toBe(0);
  });

  it('an idle h2 session closes at once on stop (GOAWAY, no wait for the grace period)', async () => {
    const { service, port } = await serve({ http2: true, handler: whoAmI });
    const raw = await rawOpen(port);
    await settled(raw);
    const started = Date.now();
    const report = await service.stop();
    await raw.untilClosed();
    expect(report.forced).toBe(0);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(raw.goaways().at(-1)).toEqual({ lastStreamId: 0, code: ErrorCode.NO_ERROR });
  });
});

describe('HTTP/2 bad input (raw frames)', () => {
  it('a rapid-reset flood (CVE-2023-44487) gets GOAWAY ENHANCE_YOUR_CALM and is closed; other clients are served meanwhile', async () => {
    let served = 0;
    const { port } = await serve({
      http2: true,
      handler: (_req, res) => {
        served++;
        setTimeout(() => res.end('ok'), 10);
      },
    });
    const raw = await rawOpen(port);
    await settled(raw);
    const flood: Buffer[] = [];
    for (let id = 1; id < 2 * 5000; id += 2) flood.push(headers(id, '/'), rstStream(id, ErrorCode.CANCEL));
    raw.write(Buffer.concat(flood));
    const calm = await raw.until((f) => f.type === FrameType.GOAWAY);
    expect(calm && raw.goaways()[0]?.code).toBe(ErrorCode.ENHANCE_YOUR_CALM);
    await raw.untilClosed();
    // Cut well before the 5000 streams of the flood (default: 100 resets per second).
    expect(served).toBeLessThan(1000);
    const h1 = await fetch(`http://127.0.0.1:${port}/`);
    expect(await h1.text()).toBe('ok');
  });

  it('streams over maxConcurrentStreams (default 100): REFUSED_STREAM while the SETTINGS are pending, a connection error (GOAWAY) once acknowledged', async () => {
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const { port } = await serve({ http2: true, handler: (_req, res) => void held.then(() => res.end('done')) });
    const open101 = (): Buffer => Buffer.concat(Array.from({ length: 101 }, (_, i) => headers(1 + 2 * i, '/')));
    // Before the client acknowledged the limit: the 101st stream is refused, the 100 others complete.
    const early = await rawOpen(port, { ack: false });
    early.write(open101());
    const refused = await early.until((f) => f.type === FrameType.RST_STREAM);
    expect(refused?.streamId).toBe(201);
    expect(refused?.payload.readUInt32BE(0)).toBe(ErrorCode.REFUSED_STREAM);
    release();
    await early.until((f) => f.streamId === 199 && (f.flags & 1) === 1);
    expect(early.body(1)).toBe('done');
    expect(early.resets()).toEqual([{ streamId: 201, code: ErrorCode.REFUSED_STREAM }]);
    // Once acknowledged, exceeding it is a protocol violation (RFC 9113 §5.1.2): nghttp2 makes it a
    // connection error, and node:http2 ends the session with GOAWAY INTERNAL_ERROR and closes it.
    const raw = await rawOpen(port);
    await settled(raw);
    raw.write(open101());
    await raw.untilClosed();
    expect(raw.goaways()).toEqual([{ lastStreamId: 199, code: ErrorCode.INTERNAL_ERROR }]);
    expect(await (await fetch(`http://127.0.0.1:${port}/`)).text()).toBe('done');
  });

  it('headers over the limit: RST_STREAM ENHANCE_YOUR_CALM once SETTINGS are acknowledged, 431 before; the session lives on', async () => {
    const { port } = await serve({ http2: true, handler: (_req, res) => res.end('fine') });
    const big = { 'x-big': 'a'.repeat(20_000) };
    // Sent before the client has seen (and acknowledged) the server's SETTINGS: answered 431.
    const early = await rawOpen(port);
    early.write(headers(1, '/', { extra: big }));
    await early.until((f) => f.streamId === 1 && (f.flags & 1) === 1);
    expect(early.frames.find((f) => f.streamId === 1 && f.type === FrameType.HEADERS)?.payload.includes(Buffer.from('431'))).toBe(true);
    expect(early.body(1)).toBe('Request Header Fields Too Large\n');
    // After the SETTINGS exchange node:http2 enforces SETTINGS_MAX_HEADER_LIST_SIZE itself.
    const raw = await rawOpen(port);
    await settled(raw);
    raw.write(headers(1, '/', { extra: big }));
    const reset = await raw.until((f) => f.type === FrameType.RST_STREAM);
    expect(reset?.payload.readUInt32BE(0)).toBe(ErrorCode.ENHANCE_YOUR_CALM);
    raw.write(headers(3, '/'));
    await raw.until((f) => f.streamId === 3 && (f.flags & 1) === 1);
    expect(raw.body(3)).toBe('fine');
    expect(raw.goaways()).toEqual([]);
  });

  it('a client that never acknowledges SETTINGS gets GOAWAY SETTINGS_TIMEOUT and is closed after settingsTimeoutMs', async () => {
    const { port } = await serve({ http2: { settingsTimeoutMs: 500 }, handler: whoAmI });
    const raw = await rawOpen(port, { ack: false });
    await raw.until((f) => f.type === FrameType.SETTINGS && f.flags === 0);
    const opened = Date.now();
    await raw.untilClosed();
    expect(Date.now() - opened).toBeGreaterThanOrEqual(400);
    expect(raw.goaways()).toEqual([{ lastStreamId: 0, code: ErrorCode.SETTINGS_TIMEOUT }]);
  });

  it('a connection that stops inside the preface is closed after headersTimeoutMs; a complete HTTP/1.1 request is not held', async () => {
    const { port } = await serve({ http2: true, headersTimeoutMs: 500, handler: whoAmI });
    const socket = await rawConnect(port);
    const reply = readUntilClose(socket);
    socket.write('PRI * HTTP/2.0\r\n');
    const opened = Date.now();
    const result = await reply;
    expect(result.closed).toBe(true);
    expect(result.data).toBe('');
    expect(Date.now() - opened).toBeGreaterThanOrEqual(400);
    // "P" alone could start the preface or a POST: the request line decides.
    const post = await rawConnect(port);
    const answer = readUntilClose(post);
    post.write('P');
    await sleep(50);
    post.write('OST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    expect((await answer).data).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*"version":"1.1"/);
  });

  it('an idle session (no stream for keepAliveTimeoutMs) gets GOAWAY NO_ERROR and closes', async () => {
    const { port } = await serve({ http2: true, keepAliveTimeoutMs: 400, handler: whoAmI });
    const raw = await rawOpen(port);
    await settled(raw);
    raw.write(headers(1, '/'));
    await raw.until((f) => f.streamId === 1 && (f.flags & 1) === 1);
    await raw.untilClosed();
    expect(raw.goaways().length).toBeGreaterThan(0);
    for (const goaway of raw.goaways()) expect(goaway).toEqual({ lastStreamId: 1, code: ErrorCode.NO_ERROR });
  });

  it('garbage after the preface gets a GOAWAY PROTOCOL_ERROR, closed by the idle timeout; the process serves the next client', async () => {
    const { port } = await serve({ http2: true, keepAliveTimeoutMs: 500, handler: (_req, res) => res.end('ok') });
    const raw = await rawOpen(port);
    await settled(raw);
    // A DATA frame on stream 0 is a connection error of type PROTOCOL_ERROR (RFC 9113 §6.1).
    raw.write(frame(FrameType.DATA, 0, 0, Buffer.from('x')));
    await raw.until((f) => f.type === FrameType.GOAWAY);
    // node:http2 stops reading after a connection error but leaves the socket open: the idle timeout closes it.
    await raw.untilClosed();
    expect(raw.goaways()[0]?.code).toBe(ErrorCode.PROTOCOL_ERROR);
    expect(await (await fetch(`http://127.0.0.1:${port}/`)).text()).toBe('ok');
  });

  it('two Host headers on one h2 request: RST_STREAM PROTOCOL_ERROR (a malformed request); the session lives on', async () => {
    const { port } = await serve({ http2: true, handler: (_req, res) => res.end('fine') });
    const raw = await rawOpen(port);
    await settled(raw);
    raw.write(headers(1, '/', { extra: [['host', 'a.example']] }));
    raw.write(
      headers(3, '/', {
        extra: [
          ['host', 'a.example'],
          ['host', 'b.example'],
        ],
      }),
    );
    raw.write(headers(5, '/'));
    await raw.until((f) => f.streamId === 5 && (f.flags & 1) === 1);
    expect(raw.body(1)).toBe('fine');
    expect(raw.resets()).toEqual([{ streamId: 3, code: ErrorCode.PROTOCOL_ERROR }]);
    expect(raw.body(5)).toBe('fine');
    expect(raw.goaways()).toEqual([]);
  });

  it('rejects a bad http2 option at bind time', () => {
    expect(() => httpAdapter({ http2: { maxConcurrentStreams: 0 } })).toThrow(/http2\.maxConcurrentStreams/);
    expect(() => httpAdapter({ http2: 'yes' as unknown as boolean })).toThrow(/PB_ERR_CONFIG|http2/);
  });
});
