import { readFileSync } from 'node:fs';
import { PortService } from '@portbind/core';
import { httpAdapter } from '@portbind/http';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { portOf } from '../../../test/support/net.js';
import { type KeyValueStore, MemoryUserStore, memoryStorage, type XmppStorage, xmppServer } from '../src/index.js';
import { MAX_WAITING_ELEMENTS } from '../src/session.js';
import { Raw } from './raw-stream.js';
import { start } from './support.js';

// A client that sends faster than its stanzas are handled: each session handles its elements one at a
// time, so the others wait in memory. Past MAX_WAITING_ELEMENTS the server stops reading that client
// (the kernel's buffers then fill and TCP slows it down) until half have begun; nothing is lost.

/** A store whose key-value reads take `delayMs` (a store that fell behind); 0 answers at once. */
function slowReads(storage: XmppStorage): { storage: XmppStorage; setDelay(ms: number): void } {
  let delayMs = 0;
  const slow = (store: KeyValueStore): KeyValueStore => ({
    get: async (owner, key) => {
      if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
      return store.get(owner, key);
    },
    set: (owner, key, value) => store.set(owner, key, value),
    keys: (owner, prefix) => store.keys(owner, prefix),
    clear: (owner) => store.clear(owner),
  });
  return {
    storage: {
      users: storage.users,
      keyValue: (name) => slow(storage.keyValue(name)),
      archive: (name) => storage.archive(name),
      close: () => storage.close(),
    },
    setDelay: (ms) => {
      delayMs = ms;
    },
  };
}

/**
 * Bytes on their way from the client to the server on a loopback connection, not yet read by the server:
 * the client's send queue and the server's receive queue in the kernel (/proc/net/tcp).
 */
function inKernel(serverPort: number, clientPort: number): number {
  const hex = (port: number): string => `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  let bytes = 0;
  let found = 0;
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const [, local, remote, , queues] = line.trim().split(/\s+/);
    const [tx, rx] = (queues ?? '0:0').split(':').map((value) => Number.parseInt(value, 16));
    if (local?.endsWith(hex(serverPort)) && remote?.endsWith(hex(clientPort))) {
      bytes += rx ?? 0;
      found++;
    } else if (local?.endsWith(hex(clientPort)) && remote?.endsWith(hex(serverPort))) {
      bytes += tx ?? 0;
      found++;
    }
  }
  if (found !== 2) throw new Error(`the connection ${clientPort} -> ${serverPort} is not in /proc/net/tcp`);
  return bytes;
}

describe('a client sending faster than its stanzas are handled', () => {
  it(`is not read past ${MAX_WAITING_ELEMENTS} waiting elements; every one is answered once the store is fast again`, async () => {
    const slow = slowReads(memoryStorage());
    // No rate limit: only the backlog stops the reading.
    const { port } = await start({ rateLimit: { bytesPerSecond: 0 }, server: { storage: slow.storage } });
    const juliet = await Raw.login(port, 'juliet', 'balcony', 'balcony');
    slow.setDelay(20);
    // 5,000 vCard requests (about 450 KB) in one write: each waits 20 ms for the store.
    const count = 5000;
    let burst = '';
    for (let i = 0; i < count; i++) burst += `<iq type='get' id='g${i}' to='romeo@localhost'><vCard xmlns='vcard-temp'/></iq>`;
    juliet.send(burst);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    // After a second, about 50 are handled and at most the waiting ones and a read's worth (64 KB) were read:
    // the rest is in the kernel's buffers or still the client's to write. Read all at once, it would be neither.
    const notRead = inKernel(port, juliet.socket.localPort as number) + juliet.socket.writableLength;
    expect(notRead).toBeGreaterThan(300_000);
    slow.setDelay(0);
    for (let i = 0; i < count; i++) expect(await juliet.next(new RegExp(`<iq[^>]* id='g${i}'`), 20_000)).toContain("type='result'");
    expect(inKernel(port, juliet.socket.localPort as number)).toBe(0);
  }, 60_000);
});

const services: PortService[] = [];
afterEach(async () => {
  await Promise.all(services.splice(0).map((service) => service.stop()));
});

/** Frames from a WebSocket until `pattern` matches what came since `from`; resolves with the index after it. */
async function frameMatching(frames: string[], pattern: RegExp, from = 0): Promise<number> {
  for (let i = 0; i < 2000; i++) {
    for (let j = from; j < frames.length; j++) if (pattern.test(frames[j] as string)) return j + 1;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`no frame ${pattern} in ${JSON.stringify(frames.slice(from))}`);
}

describe('a WebSocket client sending faster than its stanzas are handled', () => {
  it(`is not read past ${MAX_WAITING_ELEMENTS} waiting elements either; every one is answered once the store is fast again`, async () => {
    const users = new MemoryUserStore({ iterations: 4096 });
    await users.create('juliet', 'balcony');
    await users.create('romeo', 'r0meo!');
    const slow = slowReads(memoryStorage());
    const server = xmppServer({
      domain: 'localhost',
      storage: slow.storage,
      users,
      allowPlaintext: 'loopback',
      rateLimit: { bytesPerSecond: 0 },
    });
    const service = new PortService({ env: {}, gracePeriodMs: 2000 });
    services.push(service);
    const http = service.bind(httpAdapter({ upgrades: { '/xmpp-websocket': server.websocket() } }), { port: 0, host: '127.0.0.1' });
    await service.start();
    const port = portOf(http);
    const ws = new WebSocket(`ws://127.0.0.1:${port}/xmpp-websocket`, ['xmpp']);
    const frames: string[] = [];
    ws.on('message', (data: Buffer) => frames.push(data.toString()));
    await new Promise((resolve) => ws.once('open', resolve));
    const open = "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>";
    ws.send(open);
    let at = await frameMatching(frames, /<stream:features/);
    ws.send(
      `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from('\u0000juliet\u0000balcony').toString('base64')}</auth>`,
    );
    at = await frameMatching(frames, /<success/, at);
    ws.send(open);
    at = await frameMatching(frames, /<stream:features/, at);
    ws.send("<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>");
    at = await frameMatching(frames, /id='bind'/, at);

    slow.setDelay(20);
    // 8,000 vCard requests (about 690 KB), a frame each: each waits 20 ms for the store.
    const count = 8000;
    for (let i = 0; i < count; i++) ws.send(`<iq type='get' id='g${i}' to='romeo@localhost'><vCard xmlns='vcard-temp'/></iq>`);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const localPort = (ws as unknown as { _socket: { localPort: number } })._socket.localPort;
    expect(inKernel(port, localPort) + ws.bufferedAmount).toBeGreaterThan(300_000);
    slow.setDelay(0);
    for (let i = 0; i < count; i++)
      at = await frameMatching(frames, new RegExp(`type='result'[^>]* id='g${i}'|id='g${i}'[^>]* type='result'`), at);
    expect(inKernel(port, localPort)).toBe(0);
    ws.close();
  }, 60_000);
});
