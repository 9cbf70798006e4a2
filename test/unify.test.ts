import { execFile } from 'node:child_process';
import { once } from 'node:events';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { type Binding, PortService } from '@portbind/core';
import { httpAdapter } from '@portbind/http';
import { OK, respAdapter } from '@portbind/resp';
import { wsEndpoint } from '@portbind/ws';
import { MemoryUserStore, memoryStorage, xmppServer } from '@portbind/xmpp';
import { type Client, xml as clientXml, client as xmppClient } from '@xmpp/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { portOf, selfSignedCert } from './support/net.js';

/**
 * Port unification with real clients: curl (HTTP/1.1 plain and over TLS, h2 over TLS, h2c), redis-cli, ws, and
 * @xmpp/client over STARTTLS, direct TLS with ALPN `xmpp-client` and WebSocket — all on one port,
 * the port of the HTTP binding, which the others join (`portSharing: { join: true }`).
 */

const run = promisify(execFile);
// @xmpp/client checks the server certificate; ours is self-signed, made for this test run.
process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';
// @xmpp/websocket uses the global WebSocket, which Node 20 lacks.
(globalThis as { WebSocket?: unknown }).WebSocket ??= WebSocket;

let service: PortService;
let web: Binding;
let port = 0;
const clients: Client[] = [];

beforeAll(async () => {
  const pems = await selfSignedCert();
  const users = new MemoryUserStore({ iterations: 4096 });
  await users.create('juliet', 'balcony');
  await users.create('romeo', 'r0meo!');
  const xmpp = xmppServer({ domain: 'localhost', storage: memoryStorage(), users, allowPlaintext: false });
  const notes = new Map<string, string>();
  const resp = respAdapter();
  resp.command('set', { arity: 3, flags: ['write'] }, (_client, [, key, value]) => {
    notes.set(String(key), String(value));
    return OK;
  });
  resp.command('get', { arity: 2, flags: ['readonly'] }, (_client, [, key]) => notes.get(String(key)) ?? null);
  const echo = wsEndpoint({
    message: (conn, data) => {
      conn.send(`echo ${data.toString()}`);
    },
  });

  service = new PortService({ env: {}, gracePeriodMs: 2000, portSharing: { join: true } });
  web = service.bind(
    httpAdapter({
      http2: true, // h2c with prior knowledge beside HTTP/1.1
      upgrades: { '/ws': echo },
      fetch: (request) => new Response(`hello ${new URL(request.url).pathname} over http\n`),
    }),
    { port: 0, host: '127.0.0.1' },
  );
  service.bind(
    httpAdapter({ http2: true, upgrades: { '/xmpp-websocket': xmpp.websocket() }, fetch: () => new Response('hello over https\n') }),
    {
      name: 'https',
      tls: pems,
    },
  );
  service.bind(resp);
  service.bind(xmpp.c2s(), { tls: pems });
  service.bind(xmpp.c2s({ directTls: true }), { tls: pems });
  await service.start();
  port = portOf(web);
});

afterAll(async () => {
  await Promise.all(clients.map((client) => client.stop().catch(() => {})));
  await service?.stop();
});

async function login(service: string, username: string, password: string): Promise<Client> {
  const client = xmppClient({ timeout: 8000, service, domain: 'localhost', username, password, resource: 'unified' });
  client.on('error', () => {});
  clients.push(client);
  await client.start();
  return client;
}

describe('one port for HTTP, WebSocket, RESP and XMPP', () => {
  it('binds one listener: every binding reports the same port in its own scheme', () => {
    expect(service.bindings.map((binding) => binding.url)).toEqual([
      `http://127.0.0.1:${port}/`,
      `https://127.0.0.1:${port}/`,
      `redis://127.0.0.1:${port}`,
      `xmpp://127.0.0.1:${port}`,
      `xmpps://127.0.0.1:${port}`,
    ]);
    expect(web.sharedWith).toEqual(['https', 'resp', 'xmpp', 'xmpps']);
  });

  it('serves curl over HTTP/1.1, plain and over TLS (ALPN http/1.1)', async () => {
    const plain = await run('curl', ['-sS', '--http1.1', `http://127.0.0.1:${port}/plain`]);
    expect(plain.stdout).toBe('hello /plain over http\n');
    const secure = await run('curl', ['-sS', '-k', '--http1.1', `https://127.0.0.1:${port}/`]);
    expect(secure.stdout).toBe('hello over https\n');
  });

  it('serves curl over HTTP/2 on the same port: h2 over TLS by ALPN, h2c with prior knowledge', async () => {
    const h2 = await run('curl', ['-sS', '-k', '--http2', '-w', '%{http_version}', `https://127.0.0.1:${port}/`]);
    expect(h2.stdout).toBe('hello over https\n2');
    const h2c = await run('curl', ['-sS', '--http2-prior-knowledge', '-w', '%{http_version}', `http://127.0.0.1:${port}/h2c`]);
    expect(h2c.stdout).toBe('hello /h2c over http\n2');
  });

  it('serves redis-cli', async () => {
    expect((await run('redis-cli', ['-p', String(port), 'set', 'greeting', 'hi'])).stdout).toBe('OK\n');
    expect((await run('redis-cli', ['-p', String(port), 'get', 'greeting'])).stdout).toBe('hi\n');
    // Inline commands too (redis-cli sends RESP arrays; a raw inline line is tested in unify-bad-input).
    expect((await run('redis-cli', ['-p', String(port), 'ping'])).stdout).toBe('PONG\n');
  });

  it('serves a WebSocket (an HTTP upgrade on the shared port)', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
    await once(ws, 'open');
    ws.send('hi');
    const [data] = (await once(ws, 'message')) as [Buffer];
    expect(data.toString()).toBe('echo hi');
    ws.close();
    await once(ws, 'close');
  });

  it('serves @xmpp/client over STARTTLS and over direct TLS with ALPN xmpp-client; they talk to each other', async () => {
    const juliet = await login(`xmpp://127.0.0.1:${port}`, 'juliet', 'balcony');
    // @xmpp/client's direct TLS sends no ALPN of its own: add xmpp-client, as XEP-0368 asks of clients.
    const original = tls.connect;
    let alpn: string | false | null = null;
    (tls as { connect: typeof tls.connect }).connect = ((...args: Parameters<typeof tls.connect>) => {
      const [options] = args;
      const socket =
        typeof options === 'object' && options !== null
          ? original(
              { ...(options as tls.ConnectionOptions), ALPNProtocols: ['xmpp-client'], servername: 'localhost' },
              ...(args.slice(1) as []),
            )
          : original(...args);
      socket.once('secureConnect', () => {
        alpn = socket.alpnProtocol;
      });
      return socket;
    }) as typeof tls.connect;
    let romeo: Client;
    try {
      romeo = await login(`xmpps://127.0.0.1:${port}`, 'romeo', 'r0meo!');
    } finally {
      (tls as { connect: typeof tls.connect }).connect = original;
    }
    expect(alpn).toBe('xmpp-client');
    expect(service.binding('xmpps').connectionCount).toBe(1);
    expect(service.binding('xmpp').connectionCount).toBe(1);
    const received = new Promise<string | null>((resolve) =>
      romeo.on('stanza', (stanza) => {
        if (stanza.is('message')) resolve(stanza.getChildText('body'));
      }),
    );
    await juliet.send(clientXml('message', { to: 'romeo@localhost/unified', type: 'chat' }, clientXml('body', {}, 'hi from STARTTLS')));
    expect(await received).toBe('hi from STARTTLS');
  });

  it('serves @xmpp/client over WebSocket (wss:// on the shared port)', async () => {
    const client = await login(`wss://127.0.0.1:${port}/xmpp-websocket`, 'juliet', 'balcony');
    const reply = await client.iqCaller.request(
      clientXml('iq', { type: 'get', to: 'localhost' }, clientXml('ping', { xmlns: 'urn:xmpp:ping' })),
    );
    expect(reply.attrs.type).toBe('result');
  });
});
