import { createHash } from 'node:crypto';
import { type BindOptions, PortService } from '@portbind/core';
import { portOf, rawConnect } from '../../../test/support/net.js';
import { MemoryUserStore, memoryStorage, type XmppModule, type XmppStorage, xmppServer } from '../src/index.js';
import { type ComponentsOptions, components } from '../src/modules/component.js';
import { RawTranscript } from './raw-stream.js';
import { stopAfterTest, testCert } from './support.js';

// Shared by the component and push tests: a server for localhost (juliet, romeo) with a component
// port, and a raw XEP-0114 component stream.

export async function startWithComponents(
  options: {
    components?: Partial<ComponentsOptions>;
    modules?: (base: XmppModule[]) => XmppModule[];
    storage?: XmppStorage;
    componentBind?: Partial<BindOptions>;
    gracePeriodMs?: number;
  } = {},
) {
  const users = new MemoryUserStore({ iterations: 4096 });
  await users.create('juliet', 'balcony');
  await users.create('romeo', 'r0meo!');
  const module = components({ secrets: { 'bot.localhost': 'secret', 'push.localhost': 'pushsecret' }, ...options.components });
  const { defaultModules } = await import('../src/index.js');
  const base = [...defaultModules(), module];
  const server = xmppServer({
    domain: 'localhost',
    storage: options.storage ?? memoryStorage(),
    users,
    modules: options.modules === undefined ? base : options.modules(base),
  });
  const service = stopAfterTest(new PortService({ env: {}, gracePeriodMs: options.gracePeriodMs ?? 2000 }));
  const c2s = service.bind(server.c2s(), { port: 0, host: '127.0.0.1', tls: testCert() });
  const component = service.bind(module.adapter(), { port: 0, host: '127.0.0.1', ...options.componentBind });
  await service.start();
  return { server, service, module, port: portOf(c2s), componentPort: portOf(component), users };
}

export const componentOpen = (domain: string): string =>
  `<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='${domain}'>`;

/** A raw component stream after its header came back: the stream id and the transcript. */
export async function componentStream(port: number, domain: string, prefix = ''): Promise<{ raw: RawTranscript; id: string }> {
  const socket = await rawConnect(port);
  const raw = new RawTranscript(socket);
  raw.write(prefix + componentOpen(domain));
  const head = await raw.until(/<stream:stream[^>]*>/);
  const id = /id='([^']+)'/.exec(head)?.[1] ?? '';
  return { raw, id };
}

/** A component logged in with its secret (XEP-0114 §3). */
export async function componentLogin(port: number, domain: string, secret: string): Promise<RawTranscript> {
  const { raw, id } = await componentStream(port, domain);
  raw.write(`<handshake>${handshake(id, secret)}</handshake>`);
  await raw.until(/<handshake\/>/);
  return raw;
}

export function handshake(id: string, secret: string): string {
  return createHash('sha1')
    .update(id + secret)
    .digest('hex');
}
