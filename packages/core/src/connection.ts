import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { type ProxyHeader, proxyHeaderOf } from './proxy-protocol.js';

let nextId = 1;

/**
 * One accepted connection, as core tracks it and hands it to an adapter.
 * `context` is free for the adapter and the user's handlers: per-connection state lives there.
 */
export class Connection {
  /** Unique in the process, increasing: like Redis's client id. */
  readonly id: number = nextId++;
  /** The binding that accepted it. */
  readonly binding: string;
  /** When it was accepted (ms since the epoch). */
  readonly openedAt: number = Date.now();
  /**
   * The peer's address: the client's, as a trusted proxy's PROXY header names it, on a binding with
   * `proxyProtocol`; `undefined` on a Unix socket.
   */
  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined;
  /** The PROXY header this connection arrived with (bind option `proxyProtocol`), if any. */
  readonly proxy: ProxyHeader | undefined;
  #context: Record<string, unknown> | undefined;
  #socket: Socket;

  constructor(binding: string, socket: Socket) {
    this.binding = binding;
    this.#socket = socket;
    this.remoteAddress = socket.remoteAddress;
    this.remotePort = socket.remotePort;
    this.proxy = proxyHeaderOf(socket);
  }

  /** Per-connection state for adapters and handlers (made on first use: an idle connection has none). */
  get context(): Record<string, unknown> {
    if (this.#context === undefined) this.#context = {};
    return this.#context;
  }

  /** The socket to read and write: a `TLSSocket` once TLS is on. */
  get socket(): Socket {
    return this.#socket;
  }

  /** True once the connection is encrypted (direct TLS, or after STARTTLS). */
  get secure(): boolean {
    return this.#socket instanceof TLSSocket;
  }

  /** True when the peer is on the loopback interface (127.0.0.0/8, ::1, or a Unix socket). */
  get isLoopback(): boolean {
    const address = this.remoteAddress;
    if (address === undefined) return true; // Unix domain socket
    return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
  }

  /** Replace the socket, e.g. with the `TLSSocket` made by STARTTLS. */
  upgrade(socket: Socket): void {
    this.#socket = socket;
  }
}
