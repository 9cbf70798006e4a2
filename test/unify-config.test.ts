import { once } from 'node:events';
import type { Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { type Adapter, ConfigError, type Connection, PortService } from '@portbind/core';
import { clientAddress, httpAdapter } from '@portbind/http';
import { OK, type RespAdapter, respAdapter } from '@portbind/resp';
import { MemoryUserStore, memoryStorage, xmppServer } from '@portbind/xmpp';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { v2Header } from '../packages/core/test/proxy-support.js';
import { freePort, portOf, rawConnect, rawExchange, readUntil, readUntilClose, selfSignedCert } from './support/net.js';

/**
 * How bindings come to share a port (the same port variable value, the same `port`, or
 * `portSharing.join`), what cannot share one (a `ConfigError` at start), a custom protocol beside
 * HTTP, PROXY headers before classification, and a STARTTLS XMPP binding given direct TLS.
 */

let pems: { cert: string; key: string };
beforeAll(async () => {
  pems = await selfSignedCert();
});

const services: PortService[] = [];
afterEach(async () => {
  await Promise.all(services.splice(0).map((service) => service.stop()));
});

function service(options: ConstructorParameters<typeof PortService>[0] = {}): PortService {
  const made = new PortService({ env: {}, gracePeriodMs: 2000, ...options });
  services.push(made);
  return made;
}

function redis(): RespAdapter {
  const resp = respAdapter();
  const notes = new Map<string, string>();
  resp.command('set', { arity: 3, flags: ['write'] }, (_client, [, key, value]) => {
    notes.set(String(key), String(value));
    return OK;
  });
  resp.command('get', { arity: 2, flags: ['readonly'] }, (_client, [, key]) => notes.get(String(key)) ?? null);
  return resp;
}

const hello = () => httpAdapter({ fetch: () => new Response('hi\n') });

async function startError(s: PortService): Promise<unknown> {
  return s.start().then(
    () => undefined,
    (error: unknown) => error,
  );
}

/** `HELLO` in, `WORLD` out: a custom protocol recognised by its own `classify`. */
class HelloAdapter implements Adapter {
  readonly name = 'hello';
  readonly scheme = 'hello';
  readonly secureScheme = 'hellos';
  readonly portEnv = 'HELLO_PORT';
  readonly defaultPort = 7001;
  readonly protocols = ['hello'];
  open(): void {}
  classify(head: Buffer): boolean | undefined {
    const magic = Buffer.from('HELLO');
    const n = Math.min(head.length, magic.length);
    if (!head.subarray(0, n).equals(magic.subarray(0, n))) return false;
    return head.length >= magic.length ? true : undefined;
  }
  connection(conn: Connection): void {
    conn.socket.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('HELLO')) conn.socket.end('WORLD\n');
    });
  }
  drain(): void {}
}

describe('which bindings share a port', () => {
  it('RESP_PORT=$PORT XMPP_PORT=$PORT: one listener for the three; the port variables still choose', async () => {
    const port = await freePort();
    const s = service({ env: { PORT: String(port), RESP_PORT: String(port), XMPP_PORT: String(port), HOST: '127.0.0.1' } });
    const xmpp = xmppServer({ domain: 'localhost', storage: memoryStorage(), allowPlaintext: 'loopback' });
    const web = s.bind(hello());
    s.bind(redis());
    s.bind(xmpp.c2s());
    await s.start();
    expect(s.bindings.map((binding) => portOf(binding))).toEqual([port, port, port]);
    expect(web.sharedWith).toEqual(['resp', 'xmpp']);
    expect((await rawExchange(port, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')).data).toMatch(/hi\n$/);
    const socket = await rawConnect(port);
    socket.write('*1\r\n$4\r\nPING\r\n');
    expect(await readUntil(socket, /\r\n/)).toBe('+PONG\r\n');
    socket.destroy();
    const stream = await rawConnect(port);
    stream.write(
      "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>",
    );
    expect(await readUntil(stream, /<\/stream:features>/)).toContain('<mechanisms');
    stream.destroy();
  });

  it('separate ports stay separate, as before (no join, different values)', async () => {
    const [a, b] = [await freePort(), await freePort()];
    const s = service({ env: { PORT: String(a), RESP_PORT: String(b), HOST: '127.0.0.1' } });
    const web = s.bind(hello());
    const resp = s.bind(redis());
    await s.start();
    expect([portOf(web), portOf(resp)]).toEqual([a, b]);
    expect(web.sharedWith).toEqual([]);
    // Each listener serves only its own protocol, as before: RESP on the HTTP port is HTTP's 400.
    expect((await rawExchange(a, '*1\r\n$4\r\nPING\r\n')).data).toMatch(/^HTTP\/1\.1 400 /);
  });

  it('join: bindings without a port of their own join PORT; one with its variable set keeps its own', async () => {
    const [main, own] = [await freePort(), await freePort()];
    const s = service({ env: { PORT: String(main), XMPP_PORT: String(own), HOST: '127.0.0.1' }, portSharing: { join: true } });
    const xmpp = xmppServer({ domain: 'localhost', storage: memoryStorage(), allowPlaintext: 'loopback' });
    // Bound first, but the main binding is the one that reads PORT.
    const resp = s.bind(redis());
    const web = s.bind(hello());
    const c2s = s.bind(xmpp.c2s());
    await s.start();
    expect([portOf(resp), portOf(web), portOf(c2s)]).toEqual([main, main, own]);
    expect(resp.url).toBe(`redis://127.0.0.1:${main}`);
    expect(c2s.sharedWith).toEqual([]);
  });

  it('refuses at start what one listener could not route', async () => {
    const twoHttp = service({ portSharing: { join: true } });
    twoHttp.bind(hello(), { port: 0 });
    twoHttp.bind(hello(), { name: 'admin' });
    const error = await startError(twoHttp);
    expect(error).toBeInstanceOf(ConfigError);
    expect(error).toMatchObject({ code: 'PB_ERR_CONFIG' });
    expect((error as Error).message).toContain('bindings http and admin both serve http on the port shared by http, admin');
    expect(twoHttp.state).toBe('idle');

    const mute = service({ portSharing: { join: true } });
    mute.bind(hello(), { port: 0 });
    mute.bind({ ...new HelloAdapter(), protocols: [], classify: undefined, open() {}, connection() {}, drain() {} } as Adapter, {
      name: 'mute',
    });
    expect((await startError(mute)) as Error).toMatchObject({
      code: 'PB_ERR_CONFIG',
      message: expect.stringContaining('declares no protocols'),
    });

    const fallbacks = service({ portSharing: { join: true } });
    fallbacks.bind(hello(), { port: 0, fallback: true });
    fallbacks.bind(redis(), { fallback: true });
    expect((await startError(fallbacks)) as Error).toMatchObject({
      code: 'PB_ERR_CONFIG',
      message: expect.stringContaining('one fallback binding per port'),
    });

    const proxies = service({ portSharing: { join: true } });
    proxies.bind(hello(), { port: 0, proxyProtocol: { trusted: ['127.0.0.1'] } });
    proxies.bind(redis());
    expect((await startError(proxies)) as Error).toMatchObject({
      code: 'PB_ERR_CONFIG',
      message: expect.stringContaining('same proxyProtocol'),
    });

    expect(() => new PortService({ portSharing: { firstByteTimeoutMs: 0 } })).toThrow(
      'Invalid portSharing.firstByteTimeoutMs=0: an integer ≥ 1',
    );
  });

  it('a custom protocol (Adapter.classify) beside HTTP and RESP', async () => {
    const s = service({ portSharing: { join: true } });
    const web = s.bind(hello(), { port: 0, host: '127.0.0.1' });
    s.bind(new HelloAdapter());
    s.bind(redis());
    await s.start();
    const port = portOf(web);
    expect(await rawExchange(port, 'HELLO\n')).toEqual({ data: 'WORLD\n', closed: true });
    // "HEL" could be HELLO: the port waits for more, then decides.
    const socket = await rawConnect(port);
    const reply = readUntilClose(socket);
    socket.write('HEL');
    await new Promise((resolve) => setTimeout(resolve, 100));
    socket.write('LO\n');
    expect(await reply).toEqual({ data: 'WORLD\n', closed: true });
    expect((await rawExchange(port, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')).data).toMatch(/hi\n$/);
  });

  it('reads a PROXY v2 header before classifying: RESP and HTTP see the client named in it', async () => {
    const s = service({ portSharing: { join: true } });
    const proxyProtocol = { trusted: ['127.0.0.1'] };
    const web = s.bind(httpAdapter({ handler: (req, res) => res.end(`${clientAddress(req)} ${req.socket.remoteAddress}\n`) }), {
      port: 0,
      host: '127.0.0.1',
      proxyProtocol,
    });
    s.bind(redis(), { proxyProtocol });
    await s.start();
    const port = portOf(web);
    const header = v2Header({ source: ['203.0.113.9', 40001], destination: ['192.0.2.2', 443] });
    const http = await rawExchange(port, Buffer.concat([header, Buffer.from('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')]));
    expect(http.data).toMatch(/\r\n\r\n203\.0\.113\.9 203\.0\.113\.9\n$/);
    // A remote client: RESP's protected mode (no password set) turns it away, as redis-server would.
    const remote = await rawExchange(port, Buffer.concat([v2Header({ source: ['203.0.113.10', 40002] }), Buffer.from('PING\r\n')]));
    expect(remote.data).toMatch(/^-DENIED Redis is running in protected mode/);
    const socket = await rawConnect(port);
    socket.write(Buffer.concat([v2Header({ source: ['127.0.0.5', 40003] }), Buffer.from('CLIENT INFO\r\n')]));
    expect(await readUntil(socket, /\r\n$/)).toContain('addr=127.0.0.5:40003');
    socket.destroy();
    // A trusted peer without a header is refused before classification.
    expect(await rawExchange(port, '*1\r\n$4\r\nPING\r\n')).toEqual({ data: '', closed: true });
  });

  it('a STARTTLS XMPP binding also takes direct TLS (ALPN xmpp-client) on a shared port: no STARTTLS offered then', async () => {
    const users = new MemoryUserStore({ iterations: 4096 });
    await users.create('juliet', 'balcony');
    const xmpp = xmppServer({ domain: 'localhost', storage: memoryStorage(), users, allowPlaintext: false });
    const s = service({ portSharing: { join: true } });
    const web = s.bind(hello(), { port: 0, host: '127.0.0.1' });
    s.bind(xmpp.c2s(), { tls: pems });
    await s.start();
    const port = portOf(web);
    const secure = tlsConnect({
      port,
      host: '127.0.0.1',
      rejectUnauthorized: false,
      ALPNProtocols: ['xmpp-client'],
      servername: 'localhost',
    });
    await once(secure, 'secureConnect');
    expect(secure.alpnProtocol).toBe('xmpp-client');
    secure.write(
      "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>",
    );
    const features = await readUntil(secure as unknown as Socket, /<\/stream:features>/);
    expect(features).toContain('<mechanisms');
    expect(features).not.toContain('starttls');
    secure.destroy();
    // Plaintext on the same port still gets STARTTLS.
    const plain = await rawConnect(port);
    plain.write(
      "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>",
    );
    expect(await readUntil(plain, /<\/stream:features>/)).toContain('<starttls');
    plain.destroy();
  });

  it('routes TLS without ALPN by SNI (serverNames), else by the decrypted bytes; the count follows the connection', async () => {
    const s = service({ portSharing: { join: true } });
    const web = s.bind(hello(), { port: 0, host: '127.0.0.1' });
    const https = s.bind(httpAdapter({ fetch: () => new Response('secure\n') }), { name: 'https', tls: pems });
    const rediss = s.bind(redis(), { tls: pems, serverNames: ['Redis.localhost'] });
    await s.start();
    const port = portOf(web);
    const named = tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false, servername: 'redis.localhost' });
    await once(named, 'secureConnect');
    named.write('*1\r\n$4\r\nPING\r\n');
    expect(await readUntil(named as unknown as Socket, /\r\n/)).toBe('+PONG\r\n');
    expect([https.connectionCount, rediss.connectionCount]).toEqual([0, 1]);
    // No ALPN, no SNI that names a binding: the first TLS binding's certificate, then the bytes decide.
    const unnamed = tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false });
    await once(unnamed, 'secureConnect');
    unnamed.write('*1\r\n$4\r\nPING\r\n');
    expect(await readUntil(unnamed as unknown as Socket, /\r\n/)).toBe('+PONG\r\n');
    expect([https.connectionCount, rediss.connectionCount]).toEqual([0, 2]);
    named.destroy();
    unnamed.destroy();
  });

  it('a drain closes TLS connections still awaiting their first decrypted bytes', async () => {
    const s = service({ portSharing: { join: true } });
    const web = s.bind(hello(), { port: 0, host: '127.0.0.1' });
    s.bind(httpAdapter({ fetch: () => new Response('secure\n') }), { name: 'https', tls: pems });
    await s.start();
    const secure = tlsConnect({ port: portOf(web), host: '127.0.0.1', rejectUnauthorized: false });
    await once(secure, 'secureConnect');
    const closed = readUntilClose(secure as unknown as Socket);
    const report = await s.stop();
    expect(report.forced).toBe(0);
    expect((await closed).closed).toBe(true);
  });
});
