import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';

let nextId = 1;

/** What a handler may send: text, or binary as a Buffer / typed array / ArrayBuffer. */
export type WsData = string | Buffer | ArrayBuffer | ArrayBufferView;

/**
 * One WebSocket peer, as handlers see it: the `ws` socket, the upgrade request, the context the
 * upgrade hook returned, and backpressure in the open (`send()` returns false past the high-water
 * mark; `drained()` resolves once the buffer is low again).
 */
export class WsConnection<Context = unknown> {
  readonly id: number = nextId++;
  /** The underlying `ws` WebSocket, for anything this class does not cover. */
  readonly ws: WebSocket;
  /** The HTTP upgrade request (headers, URL, remote address). */
  readonly request: IncomingMessage;
  /** Whatever the `upgrade` hook returned for this peer. */
  readonly context: Context;
  /** The negotiated subprotocol, or '' when none. */
  readonly protocol: string;
  /** @internal */
  alive = true;
  readonly #socket: Duplex;
  readonly #highWaterMark: number;
  readonly #maxBuffered: number;

  constructor(
    ws: WebSocket,
    request: IncomingMessage,
    socket: Duplex,
    context: Context,
    limits: { highWaterMark: number; maxBufferedBytes: number },
  ) {
    this.ws = ws;
    this.request = request;
    this.#socket = socket;
    this.context = context;
    this.protocol = ws.protocol;
    this.#highWaterMark = limits.highWaterMark;
    this.#maxBuffered = limits.maxBufferedBytes;
  }

  /** Bytes queued for this peer and not yet handed to the kernel. */
  get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  /** True while the connection is open. */
  get open(): boolean {
    return this.ws.readyState === this.ws.OPEN;
  }

  /**
   * Send a message. Returns false when the peer is behind (buffered bytes past the high-water
   * mark): wait for `drained()` before sending more. A peer that stops reading altogether is
   * disconnected once `maxBufferedBytes` is queued, so it cannot grow the server's memory.
   */
  send(data: WsData): boolean {
    if (!this.open) return false;
    this.ws.send(data);
    const buffered = this.ws.bufferedAmount;
    if (buffered > this.#maxBuffered) {
      // It does not read, so a close frame would never arrive either.
      this.ws.terminate();
      return false;
    }
    return buffered <= this.#highWaterMark;
  }

  /** Resolves once the buffered bytes are at or below the high-water mark (or the socket closed). */
  drained(): Promise<void> {
    return new Promise((resolve) => {
      const check = (): void => {
        if (!this.open || this.ws.bufferedAmount <= this.#highWaterMark) {
          this.#socket.off('drain', check);
          this.ws.off('close', check);
          resolve();
        }
      };
      this.#socket.on('drain', check);
      this.ws.once('close', check);
      check();
    });
  }

  /** Close with a code (1000 normal) and a reason. */
  close(code = 1000, reason = ''): void {
    this.ws.close(code, reason);
  }
}
