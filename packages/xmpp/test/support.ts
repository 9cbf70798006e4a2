import { once } from 'node:events';
import { connect as tlsConnect } from 'node:tls';
import { type BindOptions, type Logger, PortService } from '@portbind/core';
import { xml as clientXml, client as xmppClient } from '@xmpp/client';
import { afterEach, beforeAll } from 'vitest';
import { capturingLogger } from '../../../test/support/log.js';
import { portOf, rawConnect, readUntil, selfSignedCert } from '../../../test/support/net.js';
import { MemoryUserStore, memoryStorage, type XmppServerOptions, xmppServer } from '../src/index.js';

// Shared by the XMPP tests: a server for localhost with juliet and romeo, real clients, raw sockets.
// @xmpp/client checks the server certificate; ours is self-signed, made for this test run.
process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';

const services: PortService[] = [];
/** Stop this service after the test. */
export function stopAfterTest(service: PortService): PortService {
  services.push(service);
  return service;
}
/** Clients stopped after each test. */
export const clients: Array<{ stop(): Promise<unknown> }> = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.stop().catch(() => {})));
  await Promise.all(services.splice(0).map((s) => s.stop()));
});

let pems: { cert: string; key: string };
/** This run's self-signed certificate for localhost. */
export function testCert(): { cert: string; key: string } {
  return pems;
}
beforeAll(async () => {
  pems = await selfSignedCert();
});

export async function start(
  options: {
    allowPlaintext?: boolean;
    tls?: boolean;
    maxOutputBytes?: number;
    channelBinding?: boolean;
    registration?: boolean;
    rateLimit?: { bytesPerSecond: number; burstBytes?: number };
    directTls?: boolean;
    /** More server options. */
    server?: Partial<XmppServerOptions>;
    /** More bind options. */
    bind?: Partial<BindOptions>;
    logger?: Logger;
    /** More accounts, `name: password`. */
    accounts?: Record<string, string>;
    gracePeriodMs?: number;
  } = {},
) {
  const users = new MemoryUserStore({ iterations: 4096 });
  await users.create('juliet', 'balcony');
  await users.create('romeo', 'r0meo!');
  for (const [name, password] of Object.entries(options.accounts ?? {})) await users.create(name, password);
  const server = xmppServer({
    domain: 'localhost',
    storage: memoryStorage(),
    users,
    allowPlaintext: options.allowPlaintext,
    maxOutputBytes: options.maxOutputBytes,
    channelBinding: options.channelBinding,
    registration: options.registration,
    rateLimit: options.rateLimit,
    ...options.server,
  });
  const service = new PortService({ env: {}, gracePeriodMs: options.gracePeriodMs ?? 2000, logger: options.logger });
  services.push(service);
  const binding = service.bind(server.c2s({ directTls: options.directTls }), {
    port: 0,
    host: '127.0.0.1',
    tls: options.tls === false ? undefined : pems,
    ...options.bind,
  });
  await service.start();
  return { server, service, binding, port: portOf(binding) };
}

/** An @xmpp/client for this account, not started (stopped after the test). */
export function newClient(port: number, username: string, password: string, resource?: string) {
  const xmpp = xmppClient({ timeout: 8000, service: `xmpp://127.0.0.1:${port}`, domain: 'localhost', username, password, resource });
  clients.push(xmpp);
  return xmpp;
}

export async function login(
  port: number,
  username: string,
  password: string,
  resource?: string,
  options: { presence?: boolean | number } = {},
) {
  const xmpp = xmppClient({ timeout: 8000, service: `xmpp://127.0.0.1:${port}`, domain: 'localhost', username, password, resource });
  xmpp.on('error', () => {});
  clients.push(xmpp);
  const address = await xmpp.start();
  // Available, as a chat client is once logged in (messages to the bare JID need it); a number is the priority.
  const presence = options.presence ?? true;
  if (presence !== false) {
    await xmpp.send(clientXml('presence', {}, ...(typeof presence === 'number' ? [clientXml('priority', {}, String(presence))] : [])));
  }
  return { xmpp, jid: String(address) };
}

export const OPEN =
  "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

/** A raw client that opens a stream, does STARTTLS, and returns the TLS socket (stream not yet reopened). */
export async function rawStartTls(port: number, options: { minVersion?: 'TLSv1.3' } = {}): Promise<import('node:net').Socket> {
  const socket = await rawConnect(port);
  socket.write(OPEN);
  await readUntil(socket, /<\/stream:features>/);
  socket.write("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
  await readUntil(socket, /<proceed/);
  const secure = tlsConnect({ socket, rejectUnauthorized: false, servername: 'localhost', ...options });
  await once(secure, 'secureConnect');
  return secure as unknown as import('node:net').Socket;
}

/** Log in over a raw TLS socket with PLAIN and bind `resource`: the socket, stream open, resource bound. */
export async function rawLogin(port: number, username: string, password: string, resource = 'raw'): Promise<import('node:net').Socket> {
  const secure = await rawStartTls(port);
  const plain = Buffer.from(`\u0000${username}\u0000${password}`).toString('base64');
  secure.write(`${OPEN}<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${plain}</auth>`);
  await readUntil(secure, /<success/);
  secure.write(
    `${OPEN}<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>${resource}</resource></bind></iq>`,
  );
  await readUntil(secure, /<\/iq>/);
  return secure;
}

export { capturingLogger };
