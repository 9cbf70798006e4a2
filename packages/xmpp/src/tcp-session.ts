import type { Socket } from 'node:net';
import { type SecureContext, TLSSocket } from 'node:tls';
import type { Connection } from '@portbind/core';
import { type XmlElement, xml } from './element.js';
import { NS_CLIENT, NS_TLS } from './namespaces.js';
import type { ChannelBinding } from './sasl/index.js';
import { Session, type SessionHost } from './session.js';
import { NS_STREAMS, StreamError } from './stream-error.js';
import { type StreamEvent, StreamParser } from './stream-parser.js';

/** An XML stream over TCP (RFC 6120 §4), with STARTTLS. */
export class TcpSession extends Session {
  /** The socket corked until the end of this tick (STARTTLS replaces the socket). */
  #corked: Socket | undefined;
  readonly #beforeFlush: Array<() => void> = [];
  readonly #parser: StreamParser;
  readonly #secureContext: () => SecureContext | undefined;
  readonly #closeSoon: (socket: Socket) => void;
  #socket: Socket;
  /** Token bucket of the reading limit: bytes that may be read now, refilled at the rate. */
  #tokens: number;
  #refilledAt = Date.now();

  /**
   * `secureContext`: the binding's certificate for STARTTLS (undefined: no STARTTLS);
   * `closeSoon`: the binding's, called after a polite close.
   */
  constructor(
    conn: Connection,
    host: SessionHost,
    transport: { secureContext: () => SecureContext | undefined; closeSoon: (socket: Socket) => void },
  ) {
    super(conn, host);
    this.#secureContext = transport.secureContext;
    this.#closeSoon = transport.closeSoon;
    this.#tokens = host.rateLimit.burstBytes;
    this.#socket = conn.socket;
    this.#parser = new StreamParser((event) => this.#event(event), {
      maxStanzaSize: host.maxStanzaSizeBeforeAuth,
      maxDepth: host.maxDepth,
    });
    this.#listen(this.#socket);
  }

  get secure(): boolean {
    return this.#socket instanceof TLSSocket;
  }

  channelBinding(): ChannelBinding | undefined {
    const socket = this.#socket;
    if (!(socket instanceof TLSSocket) || socket.getProtocol() !== 'TLSv1.3') return undefined;
    return { type: 'tls-exporter', data: socket.exportKeyingMaterial(32, 'EXPORTER-Channel-Binding', Buffer.alloc(0)) };
  }

  override restart(): void {
    super.restart();
    this.#parser.restart();
    // Small stanzas until the client has authenticated (Prosody's limit is 10 KB too).
    this.#parser.maxStanzaSize = this.authenticated ? this.host.maxStanzaSize : this.host.maxStanzaSizeBeforeAuth;
  }

  protected write(text: string): void {
    const socket = this.#socket;
    if (socket.destroyed) return;
    this.#cork(socket);
    socket.write(text);
  }

  override beforeFlush(callback: () => void): void {
    const socket = this.#socket;
    if (socket.destroyed) return;
    this.#cork(socket);
    this.#beforeFlush.push(callback);
  }

  /**
   * Everything written to this stream in one tick leaves in one write (writev): a message fans out
   * as a stanza, a carbon, an ack request… — one syscall instead of one per element.
   */
  #cork(socket: Socket | TLSSocket): void {
    if (this.#corked !== undefined) return;
    this.#corked = socket;
    socket.cork();
    process.nextTick(this.#flush);
  }

  readonly #flush = (): void => {
    // Callbacks may write (and queue more callbacks): all of it joins this write.
    for (let i = 0; i < this.#beforeFlush.length; i++) {
      try {
        (this.#beforeFlush[i] as () => void)();
      } catch (error) {
        this.host.logger.error({ err: error, session: this.id }, 'XMPP: a before-flush callback failed');
      }
    }
    this.#beforeFlush.length = 0;
    const socket = this.#corked;
    this.#corked = undefined;
    socket?.uncork();
  };

  protected get unsent(): number {
    return this.#socket.writableLength;
  }

  protected endTransport(): void {
    this.#socket.end();
  }

  protected closeSoon(): void {
    this.#closeSoon(this.#socket);
  }

  protected destroyTransport(): void {
    this.#socket.destroy();
  }

  protected header(id: string): string {
    return `<?xml version='1.0'?><stream:stream xmlns='${NS_CLIENT}' xmlns:stream='${NS_STREAMS}' id='${id}' from='${this.host.domain}' version='1.0' xml:lang='en'>`;
  }

  protected footer(): string {
    return '</stream:stream>';
  }

  protected streamElement(element: XmlElement): XmlElement {
    return element; // the stream header declares the stream: prefix
  }

  protected get starttlsOffered(): boolean {
    return this.#secureContext() !== undefined;
  }

  protected async starttls(): Promise<void> {
    const context = this.#secureContext();
    if (this.secure || context === undefined) {
      this.send(xml('failure', { xmlns: NS_TLS }));
      return this.close();
    }
    this.send(xml('proceed', { xmlns: NS_TLS }));
    const raw = this.#socket;
    raw.off('data', this.#onData);
    const tls = new TLSSocket(raw, { isServer: true, secureContext: context });
    // The handshake has its own deadline: a peer that asks for TLS and then says nothing is cut off.
    const timer = setTimeout(() => tls.destroy(new Error('TLS handshake timed out')), this.host.tlsHandshakeTimeoutMs);
    timer.unref();
    await new Promise<void>((resolve, reject) => {
      tls.once('secure', () => resolve());
      tls.once('error', reject);
      tls.once('close', () => reject(new Error('closed during the TLS handshake')));
    })
      .catch((error: unknown) => {
        this.host.logger.debug({ err: error, conn: this.conn.id, remoteAddress: this.conn.remoteAddress }, 'STARTTLS handshake failed');
        raw.destroy();
        tls.destroy();
        throw new StreamError('policy-violation', 'TLS handshake failed');
      })
      .finally(() => clearTimeout(timer));
    this.#socket = tls;
    this.conn.upgrade(tls);
    this.#listen(tls);
    this.restart();
  }

  /** The session holds the input (the server's storage is behind, or its own stanzas wait). */
  #held = false;
  /** The rate limit holds it until its timer. */
  #throttled = false;

  protected pauseReading(hold: boolean): void {
    this.#held = hold;
    if (hold) this.#socket.pause();
    else if (!this.#throttled && !this.#socket.destroyed) this.#socket.resume();
  }

  #listen(socket: Socket): void {
    if (this.#held) socket.pause();
    socket.on('data', this.#onData);
    socket.on('error', () => {});
    socket.once('close', () => this.gone());
  }

  readonly #onData = (chunk: Buffer): void => {
    if (this.closed) return;
    this.#throttle(chunk.length);
    try {
      this.#parser.write(chunk);
    } catch (error) {
      if (error instanceof StreamError) this.close(error);
      else throw error;
    }
  };

  /** Past the rate, stop reading until the bucket has refilled (the kernel then slows the sender). */
  #throttle(bytes: number): void {
    const { bytesPerSecond, burstBytes } = this.host.rateLimit;
    if (bytesPerSecond <= 0) return;
    const now = Date.now();
    this.#tokens = Math.min(burstBytes, this.#tokens + ((now - this.#refilledAt) * bytesPerSecond) / 1000);
    this.#refilledAt = now;
    this.#tokens -= bytes;
    if (this.#tokens >= 0) return;
    const socket = this.#socket;
    socket.pause();
    this.#throttled = true;
    setTimeout(
      () => {
        this.#throttled = false;
        if (!socket.destroyed && !this.#held) socket.resume();
      },
      Math.ceil((-this.#tokens * 1000) / bytesPerSecond),
    ).unref();
  }

  #event(event: StreamEvent): void {
    if (event.type === 'close') return this.peerClosed();
    if (event.type === 'element') return this.received(event.element);
    if (event.xmlns !== NS_STREAMS || event.name.split(':').pop() !== 'stream') return this.close(new StreamError('invalid-namespace'));
    if (event.attrs.xmlns !== NS_CLIENT)
      return this.close(new StreamError('invalid-namespace', 'the content namespace must be jabber:client'));
    this.opened(event.attrs);
  }
}
