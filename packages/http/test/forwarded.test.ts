import { once } from 'node:events';
import { connect } from 'node:net';
import { type Logger, PortService } from '@portbind/core';
import express from 'express';
import { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { portOf, readUntilClose } from '../../../test/support/net.js';
import { type ClientInfo, clientAddress, clientInfo, connectionOf, httpAdapter } from '../src/index.js';

const problems: string[] = [];
const logger: Logger = {
  debug: () => {},
  info: () => {},
  warn: (fields: object | string, message?: string) => problems.push(`warn ${message ?? ''} ${JSON.stringify(fields)}`),
  error: (fields: object | string, message?: string) => problems.push(`error ${message ?? ''} ${JSON.stringify(fields)}`),
  child: () => logger,
};

const describeInfo = (info: ClientInfo | undefined) =>
  info === undefined
    ? null
    : { address: info.remoteAddress, port: info.remotePort ?? null, secure: info.secure, forwarded: info.forwarded };

let service: PortService;
let fetchPort = 0;
let expressPort = 0;
let plainPort = 0;
let presetPort = 0;
let honoPort = 0;

beforeAll(async () => {
  service = new PortService({ env: {}, logger });
  const trustProxy = ['127.0.0.1', '10.0.0.0/8'];
  const withFetch = service.bind(
    httpAdapter({
      trustProxy,
      proxyHeader: 'auto',
      fetch: (_request, info) => {
        expect(info.connection.remoteAddress).toBeDefined();
        return Response.json(describeInfo(info));
      },
    }),
    { port: 0, host: '127.0.0.1', name: 'fetch' },
  );
  const app = express();
  app.get('/', (req, res) => {
    res.json({ ...describeInfo(clientInfo(req)), clientAddress: clientAddress(req), ip: req.ip, id: connectionOf(req)?.id ?? null });
  });
  const withExpress = service.bind(httpAdapter({ trustProxy: '127.0.0.1, 10.0.0.0/8', proxyHeader: 'x-forwarded-for', handler: app }), {
    port: 0,
    host: '127.0.0.1',
    name: 'express',
  });
  // No trustProxy: forwarding headers are never read.
  const plain = service.bind(httpAdapter({ fetch: (_request, info) => Response.json(describeInfo(info)) }), {
    port: 0,
    host: '127.0.0.1',
    name: 'plain',
  });
  // Express's named sets: 'loopback' is 127.0.0.0/8 and ::1.
  const preset = service.bind(
    httpAdapter({
      trustProxy: ['loopback', 'linklocal', 'uniquelocal'],
      proxyHeader: 'forwarded',
      fetch: (_r, info) => Response.json(describeInfo(info)),
    }),
    {
      port: 0,
      host: '127.0.0.1',
      name: 'preset',
    },
  );
  // Hono: `info` arrives as `c.env`.
  const hono = new Hono<{ Bindings: ClientInfo }>().get('/', (c) => c.json(describeInfo(c.env)));
  const withHono = service.bind(httpAdapter({ trustProxy: ['127.0.0.1'], proxyHeader: 'forwarded', fetch: hono.fetch }), {
    port: 0,
    host: '127.0.0.1',
    name: 'hono',
  });
  await service.start();
  fetchPort = portOf(withFetch);
  expressPort = portOf(withExpress);
  plainPort = portOf(plain);
  presetPort = portOf(preset);
  honoPort = portOf(withHono);
});

afterAll(async () => {
  await service?.stop();
});

/** One request over a raw socket with `headers` (raw lines), from `localAddress`; the status and JSON body. */
async function ask(
  port: number,
  headers: string[],
  localAddress = '127.0.0.1',
): Promise<{ status: number; body: Record<string, unknown>; localPort: number }> {
  const socket = connect({ port, host: '127.0.0.1', localAddress });
  await once(socket, 'connect');
  const localPort = socket.localPort ?? 0;
  const reply = readUntilClose(socket);
  socket.write(`GET / HTTP/1.1\r\nHost: app.test\r\n${headers.map((h) => `${h}\r\n`).join('')}Connection: close\r\n\r\n`);
  const { data } = await reply;
  const status = Number(data.slice(9, 12));
  const body = data.slice(data.indexOf('\r\n\r\n') + 4);
  // The bodies are small JSON; Express may send them chunked.
  const json = body.slice(body.indexOf('{'), body.lastIndexOf('}') + 1);
  return { status, body: JSON.parse(json) as Record<string, unknown>, localPort };
}

describe('trustProxy: X-Forwarded-For from a trusted peer', () => {
  it('walks the chain from the right past trusted hops: the first untrusted address is the client', async () => {
    const { body } = await ask(fetchPort, ['X-Forwarded-For: 203.0.113.9, 198.51.100.7, 10.1.2.3']);
    expect(body).toEqual({ address: '198.51.100.7', port: null, secure: false, forwarded: true });
  });

  it('when every hop is trusted, the leftmost is the client', async () => {
    const { body } = await ask(fetchPort, ['X-Forwarded-For: 10.0.0.5, 10.0.0.6']);
    expect(body).toEqual({ address: '10.0.0.5', port: null, secure: false, forwarded: true });
  });

  it('X-Forwarded-Proto: https makes the request secure; repeated header lines join as one list', async () => {
    const { body } = await ask(fetchPort, ['X-Forwarded-For: 192.0.2.1', 'X-Forwarded-For: 10.9.9.9', 'X-Forwarded-Proto: https']);
    expect(body).toEqual({ address: '192.0.2.1', port: null, secure: true, forwarded: true });
  });

  it('accepts IPv6 entries and the a.b.c.d:port form some proxies write', async () => {
    expect((await ask(fetchPort, ['X-Forwarded-For: 2001:db8::7'])).body.address).toBe('2001:db8::7');
    expect((await ask(fetchPort, ['X-Forwarded-For: 192.0.2.44:5555'])).body.address).toBe('192.0.2.44');
  });
});

describe('trustProxy: Forwarded (RFC 7239) from a trusted peer', () => {
  it('IPv4 with proto', async () => {
    const { body } = await ask(fetchPort, ['Forwarded: for=192.0.2.60;proto=https;by=203.0.113.43']);
    expect(body).toEqual({ address: '192.0.2.60', port: null, secure: true, forwarded: true });
  });

  it('quoted IPv6 with a port', async () => {
    const { body } = await ask(fetchPort, ['Forwarded: For="[2001:db8:cafe::17]:4711"']);
    expect(body).toEqual({ address: '2001:db8:cafe::17', port: 4711, secure: false, forwarded: true });
  });

  it('several elements (and header lines): walked from the right past trusted hops; Forwarded wins over X-Forwarded-For', async () => {
    const { body } = await ask(fetchPort, [
      'Forwarded: for=198.51.100.1;proto=http, for="[2001:db8::1]:80";proto=https',
      'Forwarded: for=10.0.0.1',
      'X-Forwarded-For: 203.0.113.200',
    ]);
    expect(body).toEqual({ address: '2001:db8::1', port: 80, secure: true, forwarded: true });
  });

  it('an obfuscated or unknown identifier is not an address: the walk ends at the last known hop', async () => {
    expect((await ask(fetchPort, ['Forwarded: for=192.0.2.43, for=_hidden, for=10.0.0.1'])).body).toEqual({
      address: '10.0.0.1',
      port: null,
      secure: false,
      forwarded: true,
    });
    expect((await ask(fetchPort, ['Forwarded: for="_gazonk"'])).body).toEqual({
      address: '127.0.0.1',
      port: expect.any(Number),
      secure: false,
      forwarded: false,
    });
    expect((await ask(fetchPort, ['Forwarded: for=unknown;proto=https'])).body.address).toBe('127.0.0.1');
    // An obfuscated port keeps the address.
    expect((await ask(fetchPort, ['Forwarded: for="192.0.2.43:_p1"'])).body).toEqual({
      address: '192.0.2.43',
      port: null,
      secure: false,
      forwarded: true,
    });
  });
});

describe('trustProxy: what is ignored', () => {
  it('an untrusted peer’s Forwarded, X-Forwarded-For and X-Forwarded-Proto are ignored', async () => {
    const { body, localPort } = await ask(
      fetchPort,
      ['Forwarded: for=192.0.2.60;proto=https', 'X-Forwarded-For: 192.0.2.61', 'X-Forwarded-Proto: https'],
      '127.0.0.2',
    );
    expect(body).toEqual({ address: '127.0.0.2', port: localPort, secure: false, forwarded: false });
  });

  it('without trustProxy, no peer’s forwarding headers count', async () => {
    const { body, localPort } = await ask(plainPort, ['X-Forwarded-For: 192.0.2.61', 'Forwarded: for=192.0.2.60']);
    expect(body).toEqual({ address: '127.0.0.1', port: localPort, secure: false, forwarded: false });
  });

  it('malformed headers fall back to the peer, answer 200, and log nothing at warn or error', async () => {
    const malformed = [
      'Forwarded: for=',
      'Forwarded: for="192.0.2.1',
      'Forwarded: for=192.0.2.1;for=192.0.2.2',
      'Forwarded: for=2001:db8::1',
      'Forwarded: =192.0.2.1',
      'Forwarded: for=192.0.2.1 junk',
      'Forwarded: for="[2001:db8::1"',
      'Forwarded: for="[not-an-address]:80"',
      'Forwarded: for="999.1.1.1"',
      'Forwarded: ;;,,',
      `Forwarded: ${'for=192.0.2.1;'.repeat(500)}`,
      'X-Forwarded-For: garbage',
      'X-Forwarded-For: ,,,',
      'X-Forwarded-For: 192.0.2.1, [::1',
      'X-Forwarded-For: 300.1.2.3',
    ];
    for (const header of malformed) {
      const { status, body, localPort } = await ask(fetchPort, [header]);
      expect({ header, status, body }).toEqual({
        header,
        status: 200,
        body: { address: '127.0.0.1', port: localPort, secure: false, forwarded: false },
      });
    }
    // X-Forwarded-Proto with an unknown scheme is ignored; the address still counts.
    expect((await ask(fetchPort, ['X-Forwarded-For: 192.0.2.9', 'X-Forwarded-Proto: gopher'])).body).toEqual({
      address: '192.0.2.9',
      port: null,
      secure: false,
      forwarded: true,
    });
    expect(problems).toEqual([]);
  });
});

describe('trustProxy: Node listeners (Express)', () => {
  it('clientAddress(req) and clientInfo(req) name the client; req.ip stays Express’s own (its trust proxy is off)', async () => {
    const { body } = await ask(expressPort, ['X-Forwarded-For: 203.0.113.5, 10.2.3.4', 'X-Forwarded-Proto: https']);
    expect(body).toMatchObject({ address: '203.0.113.5', secure: true, forwarded: true, clientAddress: '203.0.113.5', ip: '127.0.0.1' });
    expect(body.id).toEqual(expect.any(Number));
  });

  it("with proxyHeader 'x-forwarded-for', a Forwarded header (a client's, passed through) is not read", async () => {
    const { body } = await ask(expressPort, ['Forwarded: for=198.51.100.99', 'X-Forwarded-For: 203.0.113.5']);
    expect(body).toMatchObject({ address: '203.0.113.5', clientAddress: '203.0.113.5' });
    const alone = await ask(expressPort, ['Forwarded: for=198.51.100.99']);
    expect(alone.body).toMatchObject({ address: '127.0.0.1', forwarded: false, clientAddress: '127.0.0.1' });
  });

  it('an untrusted peer is its own client there too', async () => {
    const { body } = await ask(expressPort, ['X-Forwarded-For: 203.0.113.5'], '127.0.0.2');
    expect(body).toMatchObject({ address: '127.0.0.2', forwarded: false, clientAddress: '127.0.0.2', ip: '127.0.0.2' });
  });
});

describe('trustProxy: Hono', () => {
  it('a Hono app given as fetch: app.fetch reads the client from c.env', async () => {
    const { body } = await ask(honoPort, ['Forwarded: for="[2001:db8::5]:443";proto=https']);
    expect(body).toEqual({ address: '2001:db8::5', port: 443, secure: true, forwarded: true });
  });
});

describe('trustProxy: configuration', () => {
  it("Express's names loopback, linklocal, uniquelocal stand for their ranges", async () => {
    const { body } = await ask(
      presetPort,
      ['Forwarded: for=203.0.113.77, for=172.16.5.5, for=169.254.1.1, for="[fd00::1]"', 'X-Forwarded-For: 198.51.100.1'],
      '127.0.0.2',
    );
    expect(body).toEqual({ address: '203.0.113.77', port: null, secure: false, forwarded: true });
    // proxyHeader 'forwarded': X-Forwarded-For is not read there.
    const xff = await ask(presetPort, ['X-Forwarded-For: 198.51.100.1'], '127.0.0.2');
    expect(xff.body).toEqual({ address: '127.0.0.2', port: xff.localPort, secure: false, forwarded: false });
  });

  it('a bad trustProxy entry or proxyHeader is PB_ERR_CONFIG naming the option', () => {
    expect(() => httpAdapter({ trustProxy: ['10.0.0.0/33'] })).toThrow(expect.objectContaining({ code: 'PB_ERR_CONFIG' }));
    expect(() => httpAdapter({ trustProxy: ['constructor'] })).toThrow(/trustProxy/);
    expect(() => httpAdapter({ trustProxy: [] })).toThrow(/trustProxy/);
    expect(() => httpAdapter({ trustProxy: 5 as unknown as string })).toThrow(/trustProxy/);
    expect(() => httpAdapter({ trustProxy: ['127.0.0.1'], proxyHeader: 'x-real-ip' as 'auto' })).toThrow(
      expect.objectContaining({ code: 'PB_ERR_CONFIG', message: expect.stringMatching(/proxyHeader/) }),
    );
  });
});
