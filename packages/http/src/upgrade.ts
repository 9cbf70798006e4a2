import { type IncomingMessage, STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { type BindingContext, PortbindError } from '@portbind/core';

/**
 * Something that takes over connections through an HTTP `Upgrade` (WebSocket, XMPP over
 * WebSocket). Mount it on an HTTP binding under a path: `httpAdapter({ upgrades: { '/ws': endpoint } })`.
 */
export interface UpgradeHandler {
  /** URL scheme of the mounted endpoint on a plain binding (`ws`). */
  readonly scheme: string;
  /**
   * `local` when the endpoint's connections meet in this process's memory (a WebSocket broadcast,
   * XMPP routing): the HTTP binding it is mounted on then counts as `local` for workers
   * (core's `Adapter.scope`). Default `shared`.
   */
  readonly scope?: 'shared' | 'local';
  /** URL scheme on a TLS binding (`wss`). */
  readonly secureScheme: string;
  /** Called when the HTTP binding opens, before it listens; a promise is awaited (its rejection fails the start). */
  open?(binding: BindingContext): void | Promise<void>;
  /** Take the socket, or answer it with an HTTP error (see {@link rejectUpgrade}). */
  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void;
  /**
   * Start closing every upgraded connection politely (then `binding.closeSoon()` each one). Core
   * waits until they have closed, so do not wait for your own set to empty; `signal` aborts at the
   * grace deadline, when core destroys what is still open.
   */
  drain(signal: AbortSignal): void | Promise<void>;
  /** The service stopped and every connection of the binding closed: release what the endpoint holds. Optional. */
  stopped?(): void | Promise<void>;
}

/** Throw from an upgrade hook to refuse the upgrade with an HTTP status (401, 403, 429…). */
export class UpgradeError extends PortbindError {
  readonly status: number;
  readonly headers: Record<string, string>;

  constructor(status: number, message?: string, headers: Record<string, string> = {}) {
    super('PB_ERR_UPGRADE', message ?? STATUS_CODES[status] ?? `HTTP ${status}`);
    this.status = status;
    this.headers = headers;
  }
}

/** Answer an upgrade request with a plain HTTP response and close the socket. */
export function rejectUpgrade(socket: Duplex, status: number, message?: string, headers: Record<string, string> = {}): void {
  if (socket.destroyed) return;
  const body = `${message ?? STATUS_CODES[status] ?? ''}\n`;
  const lines = [
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}`,
    'Connection: close',
    'Content-Type: text/plain; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(body)}`,
  ];
  for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`);
  socket.end(`${lines.join('\r\n')}\r\n\r\n${body}`);
  // An upgrade socket may be half-open forever if the peer never closes: do not wait for it.
  setTimeout(() => socket.destroy(), 1000).unref();
}
