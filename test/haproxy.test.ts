import { once } from 'node:events';
import { get as httpGet } from 'node:http';
import { connect, type Socket } from 'node:net';
import type { Adapter, Connection, Logger } from '@portbind/core';
import { PortService } from '@portbind/core';
import { httpAdapter } from '@portbind/http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, Haproxy } from './support/haproxy.js';
import { portOf, readUntil, sleep } from './support/net.js';

/**
 * A real HAProxy (Debian's `haproxy`) in TCP mode in front of a portbind service: `send-proxy-v2`
 * before a line protocol binding, `send-proxy` (v1) before an HTTP binding, both with health checks
 * that carry PROXY headers too; and in HTTP mode with `option forwardfor` before an HTTP binding
 * whose `trustProxy` names the proxy. Clients connect from 127.0.0.2 so the proxy (127.0.0.1) and
 * the client have different addresses.
 */

/** `ADDR` answers `remoteAddress remotePort proxyVersion-command`; records every connection's header. */
class AddressAdapter implements Adapter {
  readonly name = 'addr';
  readonly scheme = 'addr';
  readonly secureScheme = 'addrs';
  readonly portEnv = 'ADDR_PORT';
  readonly defaultPort = 7000;
  readonly seen: string[] = [];
  readonly #conns = new Set<Connection>();

  open(): void {}

  connection(conn: Connection): void {
    this.seen.push(conn.proxy === undefined ? 'direct' : `v${conn.proxy.version}-${conn.proxy.command}`);
    this.#conns.add(conn);
    conn.socket.on('error', () => {});
    conn.socket.once('close', () => this.#conns.delete(conn));
    conn.socket.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('ADDR\n')) {
        conn.socket.write(`${conn.remoteAddress} ${conn.remotePort} v${conn.proxy?.version}-${conn.proxy?.command}\n`);
      }
    });
  }

  drain(): void {
    for (const conn of this.#conns) conn.socket.end();
  }
}

const problems: string[] = [];
const logger: Logger = {
  debug: () => {},
  info: () => {},
  warn: (fields: object | string, message?: string) => problems.push(`warn ${message ?? fields} ${JSON.stringify(fields)}`),
  error: (fields: object | string, message?: string) => problems.push(`error ${message ?? fields} ${JSON.stringify(fields)}`),
  child: () => logger,
};

let haproxy: Haproxy | undefined;
let service: PortService;
const adapter = new AddressAdapter();
const httpSeen: string[] = [];
let linePort = 0;
let httpPort = 0;
let forwardPort = 0;

beforeAll(async () => {
  service = new PortService({ env: {}, logger, gracePeriodMs: 5000 });
  const line = service.bind(adapter, { port: 0, host: '127.0.0.1', proxyProtocol: { trusted: ['127.0.0.1'] } });
  const web = service.bind(
    httpAdapter({
      handler: (req, res) => {
        httpSeen.push(`${req.method} ${req.url} ${req.socket.remoteAddress}`);
        res.end(req.url === '/readyz' ? 'ready\n' : `${req.socket.remoteAddress} ${req.socket.remotePort}\n`);
      },
    }),
    { port: 0, host: '127.0.0.1', proxyProtocol: { trusted: ['127.0.0.1'] } },
  );
  // HTTP mode: no PROXY header, the client is in X-Forwarded-For from the trusted proxy.
  const forwarding = service.bind(
    httpAdapter({
      trustProxy: ['127.0.0.1'],
      // HAProxy's option forwardfor writes X-Forwarded-For only: a client's Forwarded must not count,
      // and with the default proxyHeader ('x-forwarded-for') it does not.
      fetch: (request, info) =>
        new Response(
          `${info.remoteAddress} ${info.forwarded ? 'forwarded' : 'direct'} peer=${info.connection.remoteAddress} xff=${request.headers.get('x-forwarded-for')}\n`,
        ),
    }),
    { port: 0, host: '127.0.0.1', name: 'forwarding' },
  );
  await service.start();

  linePort = await freePort();
  httpPort = await freePort();
  forwardPort = await freePort();
  const config = [
    'defaults',
    '  mode tcp',
    '  timeout connect 5s',
    '  timeout client 30s',
    '  timeout server 30s',
    'frontend line_in',
    `  bind 127.0.0.1:${linePort}`,
    '  default_backend line',
    'backend line',
    // Health checks carry a v2 LOCAL header (check-send-proxy): the check asks ADDR and expects the
    // proxy's own address back, so a passing check (L7OK) proves LOCAL kept the socket's address.
    '  option tcp-check',
    '  tcp-check send ADDR\\n',
    '  tcp-check expect rstring ^127\\.0\\.0\\.1\\ [0-9]+\\ v2-local',
    `  server portbind 127.0.0.1:${portOf(line)} send-proxy-v2 check check-send-proxy inter 300 rise 1 fall 2`,
    'frontend web_in',
    `  bind 127.0.0.1:${httpPort}`,
    '  default_backend web',
    'backend web',
    '  option httpchk',
    '  http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host portbind',
    '  http-check expect status 200',
    `  server portbind 127.0.0.1:${portOf(web)} send-proxy check check-send-proxy inter 300 rise 1 fall 2`,
    'frontend forward_in',
    '  mode http',
    '  option forwardfor',
    `  bind 127.0.0.1:${forwardPort}`,
    '  default_backend forward',
    'backend forward',
    '  mode http',
    `  server portbind 127.0.0.1:${portOf(forwarding)}`,
  ];
  haproxy = await Haproxy.start({ config, name: 'portbind-haproxy' });
  // Ready once both servers have passed a health check (they went through portbind's PROXY reader).
  await haproxy.waitFor(
    'both health checks to pass',
    (states) => states['line/portbind']?.check === 'L7OK' && states['web/portbind']?.check === 'L7OK',
  );
});

afterAll(async () => {
  await haproxy?.stop();
  await service?.stop();
});

describe('HAProxy in front of portbind', () => {
  it('send-proxy-v2 (TCP): the line service sees the client at 127.0.0.2, not the proxy', async () => {
    const socket: Socket = connect({ port: linePort, host: '127.0.0.1', localAddress: '127.0.0.2' });
    await once(socket, 'connect');
    const clientPort = socket.localPort;
    socket.write('ADDR\n');
    expect((await readUntil(socket, /\n/)).trim()).toBe(`127.0.0.2 ${clientPort} v2-proxy`);
    socket.destroy();
  });

  it('send-proxy (v1) before HTTP: req.socket.remoteAddress is the client', async () => {
    let clientPort = 0;
    const body = await new Promise<string>((resolve, reject) => {
      const request = httpGet({ host: '127.0.0.1', port: httpPort, path: '/who', localAddress: '127.0.0.2', agent: false }, (res) => {
        clientPort = res.socket.localPort ?? 0;
        let text = '';
        res.on('data', (chunk: Buffer) => {
          text += chunk.toString();
        });
        res.on('end', () => resolve(`${res.statusCode} ${text}`));
      });
      request.on('error', reject);
    });
    expect(body).toBe(`200 127.0.0.2 ${clientPort}\n`);
    expect(httpSeen).toContain('GET /who 127.0.0.2');
  });

  it('HTTP mode with option forwardfor: a fetch handler with trustProxy sees the client at 127.0.0.2; a spoofed X-Forwarded-For or Forwarded is not believed', async () => {
    const get = (headers: Record<string, string>) =>
      new Promise<string>((resolve, reject) => {
        const request = httpGet(
          { host: '127.0.0.1', port: forwardPort, path: '/who', localAddress: '127.0.0.2', agent: false, headers },
          (res) => {
            let text = '';
            res.on('data', (chunk: Buffer) => {
              text += chunk.toString();
            });
            res.on('end', () => resolve(`${res.statusCode} ${text}`));
          },
        );
        request.on('error', reject);
      });
    expect(await get({})).toBe('200 127.0.0.2 forwarded peer=127.0.0.1 xff=127.0.0.2\n');
    // HAProxy appends its own header line; the client's own claim is left of it and not trusted.
    expect(await get({ 'X-Forwarded-For': '6.6.6.6' })).toBe('200 127.0.0.2 forwarded peer=127.0.0.1 xff=6.6.6.6, 127.0.0.2\n');
    expect(await get({ Forwarded: 'for=6.6.6.7' })).toBe('200 127.0.0.2 forwarded peer=127.0.0.1 xff=127.0.0.2\n');
  });

  it('health checks (v2 LOCAL answered with the proxy’s address, v1 with an HTTP check on /readyz) keep the servers UP and log no refusal', async () => {
    // A few more check rounds after the tests above.
    await sleep(1000);
    const states = (await haproxy?.servers()) ?? {};
    expect(states['line/portbind']).toMatchObject({ status: 'UP', check: 'L7OK' });
    expect(states['web/portbind']).toMatchObject({ status: 'UP', check: 'L7OK' });
    // The TCP checks arrived as LOCAL headers (and were answered with the proxy's own address: L7OK).
    expect(adapter.seen).toContain('v2-local');
    expect(adapter.seen.filter((s) => s === 'direct')).toEqual([]);
    // The HTTP checks reached the handler through the v1 reader, as the proxy (127.0.0.1).
    expect(httpSeen.filter((s) => s.startsWith('GET /readyz')).length).toBeGreaterThan(0);
    expect(problems).toEqual([]);
  });
});
