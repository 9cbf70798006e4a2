import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { PortService } from '@portbind/core';
import { httpAdapter } from '@portbind/http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { freePort, Haproxy } from '../../../test/support/haproxy.js';
import { capturingLogger, type LogLine } from '../../../test/support/log.js';
import { portOf, readUntil, sleep } from '../../../test/support/net.js';
import { LoginThrottle, MemoryUserStore, memoryStorage, xmppServer } from '../src/index.js';

/**
 * A real HAProxy (Debian's `haproxy`) in front of an XMPP server: in TCP mode with `send-proxy-v2`
 * before `c2s()` (bind option `proxyProtocol`), and in HTTP mode with `option forwardfor` before the
 * HTTP binding that serves `websocket()` (its `trustProxy` names the proxy). The proxy is 127.0.0.1;
 * clients connect from 127.0.0.2 and 127.0.0.3, and the `remote` frontends make the proxy see the
 * client as 203.0.113.9 (`set-src`), a client on another machine. Under `allowPlaintext: 'loopback'`
 * the SASL mechanisms tell whether a session is local: PLAIN is offered to local ones, a remote
 * plaintext stream is refused with `<policy-violation/>`.
 */

const lines: LogLine[] = [];
const logger = capturingLogger(lines);
let haproxy: Haproxy | undefined;
let service: PortService;
let httpPort = 0;
const front = { c2s: 0, c2sRemote: 0, ws: 0, wsRemote: 0 };

const NS_SASL = 'urn:ietf:params:xml:ns:xmpp-sasl';
const OPEN =
  "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";
const plain = (username: string, password: string): string =>
  `<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${Buffer.from(`\u0000${username}\u0000${password}`).toString('base64')}</auth>`;

/** A raw c2s stream through the proxy from `localAddress`: the socket and its first features. */
async function tcpStream(port: number, localAddress: string): Promise<{ socket: Socket; features: string }> {
  const socket = connect({ port, host: '127.0.0.1', localAddress });
  socket.on('error', () => {});
  await once(socket, 'connect');
  socket.write(OPEN);
  const features = await readUntil(socket, /<\/stream:features>|<\/stream:stream>/);
  return { socket, features };
}

/** One PLAIN login over c2s through the proxy from `localAddress`: the server's answer. */
async function tcpLogin(localAddress: string, username: string, password: string): Promise<string> {
  const { socket, features } = await tcpStream(front.c2s, localAddress);
  expect(features).toContain('<mechanism>PLAIN</mechanism>');
  socket.write(plain(username, password));
  const answer = await readUntil(socket, /<\/failure>|<success/);
  socket.destroy();
  return answer;
}

/** A raw XMPP-over-WebSocket client (RFC 7395 framing) on `port`, from `localAddress`. */
async function rawWs(port: number, localAddress: string, headers: Record<string, string> = {}) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/xmpp-websocket`, ['xmpp'], { headers, localAddress });
  const frames: string[] = [];
  ws.on('message', (data: Buffer) => frames.push(data.toString()));
  ws.on('error', () => {});
  const closed = new Promise<number>((resolve) => ws.once('close', (code: number) => resolve(code)));
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade answered ${res.statusCode}`)));
  });
  ws.send("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>");
  return { ws, frames, closed };
}

async function framesUntil(frames: string[], pattern: RegExp): Promise<string> {
  for (let i = 0; i < 500; i++) {
    const text = frames.join('');
    if (pattern.test(text)) return text;
    await sleep(10);
  }
  throw new Error(`no ${pattern} in ${JSON.stringify(frames)}`);
}

/** The stream features a WebSocket session gets (or the stream error that ends it). */
async function wsFeatures(port: number, localAddress: string, headers: Record<string, string> = {}): Promise<string> {
  const peer = await rawWs(port, localAddress, headers);
  const text = await framesUntil(peer.frames, /<\/stream:features>|<close /);
  peer.ws.close();
  return text;
}

/** One PLAIN login over WebSocket through the proxy from `localAddress`: the server's answer. */
async function wsLogin(localAddress: string, username: string, password: string): Promise<string> {
  const peer = await rawWs(front.ws, localAddress);
  expect(await framesUntil(peer.frames, /<\/stream:features>/)).toContain('<mechanism>PLAIN</mechanism>');
  const before = peer.frames.length;
  peer.ws.send(plain(username, password));
  await framesUntil(peer.frames, /<\/failure>|<success/);
  peer.ws.close();
  return peer.frames.slice(before).join('');
}

const warnings = (message: string): unknown[] =>
  lines.filter((line) => line.level === 'warn' && line.message === message).map((line) => [line.fields.remoteAddress, line.fields.account]);

beforeAll(async () => {
  const users = new MemoryUserStore({ iterations: 4096 });
  await users.create('juliet', 'balcony');
  await users.create('romeo', 'r0meo!');
  const xmpp = xmppServer({
    domain: 'localhost',
    storage: memoryStorage(),
    users,
    allowPlaintext: 'loopback',
    throttle: new LoginThrottle({ maxFailures: 2 }),
  });
  service = new PortService({ env: {}, logger, gracePeriodMs: 2000 });
  const c2s = service.bind(xmpp.c2s(), { port: 0, host: '127.0.0.1', proxyProtocol: { trusted: ['127.0.0.1'] } });
  const http = service.bind(httpAdapter({ trustProxy: ['127.0.0.1'], upgrades: { '/xmpp-websocket': xmpp.websocket() } }), {
    port: 0,
    host: '127.0.0.1',
  });
  await service.start();
  httpPort = portOf(http);

  front.c2s = await freePort();
  front.c2sRemote = await freePort();
  front.ws = await freePort();
  front.wsRemote = await freePort();
  const config = [
    'defaults',
    '  timeout connect 5s',
    '  timeout client 30s',
    '  timeout server 30s',
    '  timeout tunnel 30s',
    'frontend c2s_in',
    '  mode tcp',
    `  bind 127.0.0.1:${front.c2s}`,
    '  default_backend c2s',
    'frontend c2s_remote_in',
    '  mode tcp',
    `  bind 127.0.0.1:${front.c2sRemote}`,
    '  tcp-request connection set-src ipv4(203.0.113.9)',
    '  default_backend c2s',
    'backend c2s',
    '  mode tcp',
    `  server portbind 127.0.0.1:${portOf(c2s)} send-proxy-v2`,
    'frontend ws_in',
    '  mode http',
    '  option forwardfor',
    `  bind 127.0.0.1:${front.ws}`,
    '  default_backend web',
    'frontend ws_remote_in',
    '  mode http',
    '  option forwardfor',
    `  bind 127.0.0.1:${front.wsRemote}`,
    '  http-request set-src ipv4(203.0.113.9)',
    '  default_backend web',
    'backend web',
    '  mode http',
    `  server portbind 127.0.0.1:${httpPort}`,
  ];
  haproxy = await Haproxy.start({ config, name: 'portbind-haproxy-xmpp' });
  // Ready once every frontend accepts connections.
  await haproxy.waitListening(Object.values(front));
});

afterAll(async () => {
  await haproxy?.stop();
  await service?.stop();
});

describe('HAProxy (send-proxy-v2) in front of XMPP c2s', () => {
  it('login throttling counts the real client: failures from 127.0.0.2 lock it out, 127.0.0.3 through the same proxy logs in; the logs name the client', async () => {
    expect(await tcpLogin('127.0.0.2', 'juliet', 'wrong')).toContain('<not-authorized/>');
    expect(await tcpLogin('127.0.0.2', 'juliet', 'wrong again')).toContain('<not-authorized/>');
    // Locked out of juliet, even with her password.
    expect(await tcpLogin('127.0.0.2', 'juliet', 'balcony')).toContain('<temporary-auth-failure/>');
    // Another client behind the same proxy is not.
    expect(await tcpLogin('127.0.0.3', 'juliet', 'balcony')).toContain('<success');
    expect(warnings('XMPP login failed')).toEqual([
      ['127.0.0.2', 'juliet'],
      ['127.0.0.2', 'juliet'],
    ]);
    expect(warnings('XMPP login refused: too many failures')).toEqual([['127.0.0.2', 'juliet']]);
    expect(lines.filter((line) => line.message === 'XMPP login').map((line) => line.fields.remoteAddress)).toEqual(['127.0.0.3']);
  });

  it("allowPlaintext: 'loopback' judges the client, not the proxy: a client on this machine is local, one the proxy saw as 203.0.113.9 is not", async () => {
    const local = await tcpStream(front.c2s, '127.0.0.2');
    expect(local.features).toContain('<mechanism>PLAIN</mechanism>');
    local.socket.destroy();
    const remote = await tcpStream(front.c2sRemote, '127.0.0.2');
    expect(remote.features).not.toContain('<mechanism>');
    expect(remote.features).toContain("<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>");
    remote.socket.destroy();
  });
});

describe('HAProxy (mode http, option forwardfor) in front of XMPP over WebSocket, with trustProxy', () => {
  it('a client on this machine through the trusted proxy is local (PLAIN offered); one the proxy saw as 203.0.113.9 is not, even when it claims 127.0.0.1 in X-Forwarded-For', async () => {
    expect(await wsFeatures(front.ws, '127.0.0.2')).toContain('<mechanism>PLAIN</mechanism>');
    for (const headers of [{}, { 'X-Forwarded-For': '127.0.0.1' }, { Forwarded: 'for=127.0.0.1' }] as Array<Record<string, string>>) {
      const text = await wsFeatures(front.wsRemote, '127.0.0.2', headers);
      expect(text, JSON.stringify(headers)).not.toContain('<mechanism>');
      expect(text).toContain("<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>");
    }
  });

  it('a peer that is not a trusted proxy is local only without forwarding headers', async () => {
    // 127.0.0.2 straight to the HTTP binding: not in trustProxy.
    expect(await wsFeatures(httpPort, '127.0.0.2')).toContain('<mechanism>PLAIN</mechanism>');
    for (const headers of [{ 'X-Forwarded-For': '127.0.0.5' }, { Forwarded: 'for=127.0.0.5' }, { 'X-Real-IP': '127.0.0.5' }] as Array<
      Record<string, string>
    >) {
      const text = await wsFeatures(httpPort, '127.0.0.2', headers);
      expect(text, JSON.stringify(headers)).not.toContain('<mechanism>');
      expect(text).toContain("<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>");
    }
  });

  it('login throttling counts the forwarded client: failures from 127.0.0.2 lock it out, 127.0.0.3 through the same proxy logs in', async () => {
    const failedBefore = warnings('XMPP login failed').length;
    expect(await wsLogin('127.0.0.2', 'romeo', 'wrong')).toContain('<not-authorized/>');
    expect(await wsLogin('127.0.0.2', 'romeo', 'wrong again')).toContain('<not-authorized/>');
    expect(await wsLogin('127.0.0.2', 'romeo', 'r0meo!')).toContain('<temporary-auth-failure/>');
    expect(await wsLogin('127.0.0.3', 'romeo', 'r0meo!')).toContain('<success');
    expect(warnings('XMPP login failed').slice(failedBefore)).toEqual([
      ['127.0.0.2', 'romeo'],
      ['127.0.0.2', 'romeo'],
    ]);
    expect(warnings('XMPP login refused: too many failures')).toContainEqual(['127.0.0.2', 'romeo']);
    expect(lines.filter((line) => line.message === 'XMPP login').map((line) => line.fields.remoteAddress)).toContain('127.0.0.3');
  });
});
