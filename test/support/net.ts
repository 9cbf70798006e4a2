import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { generate } from 'selfsigned';

/** Whether `port` on `host` can be listened on right now. */
async function bindable(port: number, host: string): Promise<boolean> {
  const server = createServer();
  const listening = await new Promise<boolean>((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, host, () => resolve(true));
  });
  if (listening) await new Promise((resolve) => server.close(resolve));
  return listening;
}

/** The kernel's ephemeral range (what `listen(0)` and outgoing connections get), Linux's default elsewhere. */
function ephemeralRange(): [number, number] {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'latin1').trim().split(/\s+/).map(Number);
    if (low !== undefined && high !== undefined && Number.isInteger(low) && Number.isInteger(high)) return [low, high];
  } catch {
    // not Linux: assume its default
  }
  return [32768, 60999];
}

/**
 * A TCP port nobody listens on, for a child server that must be told its port (redis-server, HAProxy,
 * PostgreSQL, a service started in another process). Chosen at random BELOW the kernel's ephemeral
 * range: the test files run in parallel, and a port taken with `listen(0)` and released is one the
 * kernel may hand out again at once, to another file's `listen(0)` or outgoing connection — a CI run
 * saw redis-server lose its port to an HTTP server that way, and the test talk RESP to the HTTP
 * server. Below the range, only another caller of this function can pick the same port (1 chance in
 * about 20,000), and a server started here must still check that what answers is its own process.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const [low] = ephemeralRange();
  const floor = 10_000;
  const ceiling = low - 1;
  if (ceiling - floor >= 1000) {
    for (let attempt = 0; attempt < 100; attempt++) {
      const port = floor + Math.floor(Math.random() * (ceiling - floor + 1));
      if (await bindable(port, host)) return port;
    }
  }
  // No room below the range (or all of it taken): the kernel's choice, released.
  const server = createServer();
  server.listen(0, host);
  await once(server, 'listening');
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

/** Connect a raw TCP socket to 127.0.0.1:port. */
export async function rawConnect(port: number): Promise<Socket> {
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  return socket;
}

/** Everything a socket receives until it closes (or `timeoutMs` passes), as a string. */
export function readUntilClose(socket: Socket, timeoutMs = 10_000): Promise<{ data: string; closed: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const done = (closed: boolean): void => {
      clearTimeout(timer);
      resolve({ data: Buffer.concat(chunks).toString('latin1'), closed });
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', () => {});
    socket.once('close', () => done(true));
    socket.resume();
  });
}

/** Send bytes on a fresh raw connection and collect the reply until the server closes it. */
export async function rawExchange(port: number, bytes: string | Buffer, timeoutMs = 10_000): Promise<{ data: string; closed: boolean }> {
  const socket = await rawConnect(port);
  const result = readUntilClose(socket, timeoutMs);
  socket.write(bytes);
  const outcome = await result;
  socket.destroy();
  return outcome;
}

/** Resolves with what was received once it matches `pattern`; later bytes wait for the next reader. */
export function readUntil(socket: Socket, pattern: RegExp, timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (chunk: Buffer): void => {
      text += chunk.toString('latin1');
      if (pattern.test(text)) {
        cleanup();
        resolve(text);
      }
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`timed out waiting for ${pattern}; got ${JSON.stringify(text)}`));
    }, timeoutMs);
    const cleanup = (): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      // Keep later bytes in the socket until the next reader attaches, instead of losing them.
      socket.pause();
    };
    socket.on('data', onData);
    socket.resume();
  });
}

/** A port that is bound by another server for the duration of the test. */
export async function occupyPort(): Promise<{ port: number; close: () => Promise<void> }> {
  const { createServer } = await import('node:net');
  const server = createServer((socket) => socket.destroy());
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return { port: address.port, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

/** A fresh self-signed certificate for 127.0.0.1 / localhost, made at test time. */
export async function selfSignedCert(): Promise<{ cert: string; key: string }> {
  const pems = await generate([{ name: 'commonName', value: 'localhost' }], {
    keySize: 2048,
    extensions: [
      {
        name: 'subjectAltName',
        altNames: [
          { type: 2, value: 'localhost' },
          { type: 7, ip: '127.0.0.1' },
        ],
      },
    ],
  });
  return { cert: pems.cert, key: pems.private };
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The TCP port a binding listens on (tests bind 127.0.0.1:0). */
export function portOf(binding: { readonly address: import('node:net').AddressInfo | string }): number {
  const address = binding.address;
  if (typeof address === 'string') throw new Error(`bound to a Unix socket: ${address}`);
  return address.port;
}
