import { once } from 'node:events';
import { PortService } from '@portbind/core';
import { httpAdapter } from '@portbind/http';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { portOf, rawConnect, rawExchange, readUntil, sleep } from '../../../test/support/net.js';
import { UpgradeError, type WsEndpoint, type WsOptions, wsEndpoint } from '../src/index.js';

const services: PortService[] = [];
afterEach(async () => {
  await Promise.all(services.splice(0).map((s) => s.stop()));
});

/** Mount an endpoint at /ws on an HTTP binding, as most services do. */
async function mounted<C = undefined>(options: WsOptions<C>, gracePeriodMs = 5000) {
  const endpoint = wsEndpoint(options);
  const service = new PortService({ env: {}, gracePeriodMs });
  services.push(service);
  const binding = service.bind(httpAdapter({ upgrades: { '/ws': endpoint }, handler: (_req, res) => res.end('http') }), {
    port: 0,
    host: '127.0.0.1',
  });
  await service.start();
  return { endpoint, service, binding, port: portOf(binding), url: `ws://127.0.0.1:${portOf(binding)}/ws` };
}

async function open(
  url: string,
  protocols?: string | string[],
  options: ConstructorParameters<typeof WebSocket>[2] = {},
): Promise<WebSocket> {
  const ws = new WebSocket(url, protocols, options);
  await once(ws, 'open');
  return ws;
}

function nextMessage(ws: WebSocket): Promise<string> {
  return new Promise((resolve) => ws.once('message', (data: Buffer) => resolve(data.toString())));
}

function closeOf(ws: WebSocket): Promise<{ code: number; reason: string }> {
  return new Promise((resolve) => ws.once('close', (code: number, reason: Buffer) => resolve({ code, reason: reason.toString() })));
}

const echo: WsOptions<undefined> = {
  message: (conn, data, isBinary) => {
    conn.send(isBinary ? (data as Buffer) : data.toString());
  },
};

describe('mounted on an HTTP binding', () => {
  it('echoes over the same port as HTTP and lists the ws:// URL', async () => {
    const { binding, port, url } = await mounted(echo);
    expect(binding.urls).toEqual([`http://127.0.0.1:${port}/`, `ws://127.0.0.1:${port}/ws`]);
    const ws = await open(url);
    ws.send('hello');
    expect(await nextMessage(ws)).toBe('hello');
    expect(await (await fetch(`http://127.0.0.1:${port}/`)).text()).toBe('http');
    ws.close();
  });

  it('negotiates a subprotocol from the server’s list', async () => {
    const { url } = await mounted({ protocols: ['xmpp', 'chat'], open: (conn) => void conn.send(`proto=${conn.protocol}`) });
    const ws = new WebSocket(url, ['chat', 'xmpp']);
    const first = nextMessage(ws);
    await once(ws, 'open');
    expect(ws.protocol).toBe('xmpp');
    expect(await first).toBe('proto=xmpp');
    ws.close();
  });

  it('refuses a client without a required subprotocol with 400', async () => {
    const { port } = await mounted({ protocols: ['xmpp'], requireProtocol: true });
    const result = await rawExchange(port, upgradeRequest('/ws', 'Sec-WebSocket-Protocol: chat\r\n'));
    expect(result.data).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    expect(result.data).toContain('Unsupported WebSocket subprotocol: expected xmpp');
    expect(result.closed).toBe(true);
  });

  it('authenticates in the upgrade hook: context on success, the hook’s status on refusal', async () => {
    const { url, port } = await mounted<{ user: string }>({
      upgrade: async (request) => {
        const token = new URL(request.url ?? '/', 'http://x').searchParams.get('token');
        if (token !== 'secret') throw new UpgradeError(401, 'Bad token', { 'WWW-Authenticate': 'Bearer' });
        return { user: 'alice' };
      },
      open: (conn) => void conn.send(`hello ${conn.context.user}`),
    });
    const ws = new WebSocket(`${url}?token=secret`);
    expect(await nextMessage(ws)).toBe('hello alice');
    ws.close();
    const refused = await rawExchange(port, upgradeRequest('/ws?token=wrong'));
    expect(refused.data).toMatch(/^HTTP\/1\.1 401 Unauthorized\r\n/);
    expect(refused.data).toContain('WWW-Authenticate: Bearer');
    expect(refused.data).toContain('Bad token');
    expect(refused.closed).toBe(true);
  });

  it('answers 500 when the upgrade hook fails unexpectedly', async () => {
    const { port } = await mounted({
      upgrade: () => {
        throw new Error('db down');
      },
    });
    const result = await rawExchange(port, upgradeRequest('/ws'));
    expect(result.data).toMatch(/^HTTP\/1\.1 500 Internal Server Error\r\n/);
  });

  it('closes with 1009 a frame over maxPayload; other clients live on', async () => {
    const { url } = await mounted({ ...echo, maxPayload: 1024 });
    const big = await open(url);
    const other = await open(url);
    const closed = closeOf(big);
    big.send('x'.repeat(2048));
    expect((await closed).code).toBe(1009);
    other.send('still here');
    expect(await nextMessage(other)).toBe('still here');
    other.close();
  });

  it('defaults maxPayload to 1 MiB, far below ws’s 100 MiB', async () => {
    const { url } = await mounted(echo);
    const ws = await open(url);
    const closed = closeOf(ws);
    ws.send(Buffer.alloc(1024 * 1024 + 1));
    expect((await closed).code).toBe(1009);
  });

  it('closes with 1011 when a handler throws or rejects; other clients and the process live on', async () => {
    const { url } = await mounted<undefined>({
      message: async (conn, data) => {
        const text = data.toString();
        if (text === 'throw') throw new Error('handler bug');
        if (text === 'reject') await Promise.reject(new Error('async handler bug'));
        conn.send(text);
      },
    });
    const a = await open(url);
    const b = await open(url);
    const c = await open(url);
    const aClosed = closeOf(a);
    const bClosed = closeOf(b);
    a.send('throw');
    b.send('reject');
    expect(await aClosed).toEqual({ code: 1011, reason: 'internal error' });
    expect((await bClosed).code).toBe(1011);
    c.send('fine');
    expect(await nextMessage(c)).toBe('fine');
    c.close();
  });

  it('terminates a peer that stops answering pings', async () => {
    const { url, endpoint } = await mounted({ heartbeatIntervalMs: 100 });
    const alive = await open(url);
    const dead = await open(url, undefined, { autoPong: false });
    const deadClosed = closeOf(dead);
    expect((await deadClosed).code).toBe(1006);
    await sleep(250);
    expect(alive.readyState).toBe(WebSocket.OPEN);
    expect(endpoint.clients.size).toBe(1);
    alive.close();
  });

  it('shows backpressure to handlers and disconnects a peer that never reads', async () => {
    let conn: Parameters<NonNullable<WsOptions['open']>>[0] | undefined;
    const opened = new Promise<void>((resolve) => {
      void mounted<undefined>({
        highWaterMark: 64 * 1024,
        maxBufferedBytes: 1024 * 1024,
        open: (c) => {
          conn = c;
          resolve();
        },
      }).then(async ({ port }) => {
        // A raw client that completes the handshake and then never reads.
        const socket = await rawConnect(port);
        socket.write(upgradeRequest('/ws'));
        await readUntil(socket, /\r\n\r\n/);
        socket.pause();
      });
    });
    await opened;
    if (conn === undefined) throw new Error('no connection');
    const chunk = Buffer.alloc(16 * 1024);
    // The kernel's socket buffers take a few MB first; then send() reports the backlog.
    let accepted = 0;
    while (conn.send(chunk) && accepted < 2000) accepted++;
    expect(accepted).toBeLessThan(2000);
    expect(conn.bufferedAmount).toBeGreaterThan(64 * 1024);
    // Keep sending, as a careless broadcaster would: the peer is cut off, memory stays bounded.
    let sends = 0;
    while (conn.open && sends < 10_000) {
      conn.send(chunk);
      sends++;
      if (sends % 16 === 0) await sleep(1);
    }
    expect(conn.open).toBe(false);
    expect(sends).toBeLessThan(10_000);
  });

  it('drained() resolves once a slow reader catches up', async () => {
    let conn: Parameters<NonNullable<WsOptions['open']>>[0] | undefined;
    const { url } = await mounted<undefined>({
      highWaterMark: 16 * 1024,
      open: (c) => {
        conn = c;
      },
    });
    const ws = await open(url);
    await sleep(20);
    if (conn === undefined) throw new Error('no connection');
    let received = 0;
    ws.on('message', (data: Buffer) => {
      received += data.length;
    });
    const chunk = Buffer.alloc(64 * 1024);
    let sent = 0;
    for (let i = 0; i < 50; i++) {
      if (!conn.send(chunk)) await conn.drained();
      sent += chunk.length;
    }
    while (received < sent) await sleep(10);
    expect(received).toBe(50 * 64 * 1024);
    ws.close();
  });

  it('broadcasts to every open peer', async () => {
    let endpoint: WsEndpoint | undefined;
    const setup = await mounted<undefined>({ message: (_c, data) => void endpoint?.broadcast(data.toString()) });
    endpoint = setup.endpoint;
    const a = await open(setup.url);
    const b = await open(setup.url);
    const toA = nextMessage(a);
    const toB = nextMessage(b);
    a.send('to all');
    expect(await toA).toBe('to all');
    expect(await toB).toBe('to all');
    a.close();
    b.close();
  });
});

describe('drain', () => {
  it('closes every socket with 1001 and refuses upgrades while draining', async () => {
    const { service, url } = await mounted(echo);
    const a = await open(url);
    const b = await open(url);
    const aClosed = closeOf(a);
    const bClosed = closeOf(b);
    const report = await service.stop();
    expect(await aClosed).toEqual({ code: 1001, reason: 'server shutting down' });
    expect((await bClosed).code).toBe(1001);
    expect(report.forced).toBe(0);
  });
});

describe('on a port of its own', () => {
  it('serves WebSocket on any path and answers 426 to plain HTTP', async () => {
    const endpoint = wsEndpoint(echo);
    const service = new PortService({ env: { WS_PORT: '0' } });
    services.push(service);
    const binding = service.bind(endpoint.standalone(), { host: '127.0.0.1' });
    await service.start();
    const port = portOf(binding);
    expect(binding.url).toBe(`ws://127.0.0.1:${port}/`);
    const ws = await open(`ws://127.0.0.1:${port}/anything`);
    ws.send('standalone');
    expect(await nextMessage(ws)).toBe('standalone');
    ws.close();
    const plain = await fetch(`http://127.0.0.1:${port}/`);
    expect(plain.status).toBe(426);
    expect(plain.headers.get('upgrade')).toBe('websocket');
  });
});

function upgradeRequest(path: string, extra = ''): string {
  return `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n${extra}\r\n`;
}

describe('options a typo can break fail at construction (PB_ERR_CONFIG)', () => {
  it.each([
    ['maxPayload', { maxPayload: -1 }],
    ['heartbeatIntervalMs', { heartbeatIntervalMs: Number.NaN }],
    ['highWaterMark', { highWaterMark: 1.5 }],
    ['maxBufferedBytes', { maxBufferedBytes: -10 }],
  ])('%s', (option, options) => {
    expect(() => wsEndpoint(options as WsOptions<undefined>)).toThrow(expect.objectContaining({ code: 'PB_ERR_CONFIG', variable: option }));
  });
});
