import type { Connection } from '@portbind/core';
import { clientAddress, clientInfo } from '@portbind/http';
import type { WsConnection } from '@portbind/ws';
import { XmlElement, xml } from './element.js';
import { NS_CLIENT, NS_TLS } from './namespaces.js';
import type { ChannelBinding } from './sasl/index.js';
import { Session, type SessionHost } from './session.js';
import { NS_STREAMS, StreamError } from './stream-error.js';
import { type StreamEvent, StreamParser } from './stream-parser.js';

export const NS_FRAMING = 'urn:ietf:params:xml:ns:xmpp-framing';

/**
 * XMPP over WebSocket (RFC 7395): each WebSocket message is one complete element — `<open/>`,
 * a stanza or a negotiation element, `<close/>`. The same sessions and routing as TCP.
 */
export class WsSession extends Session {
  readonly #ws: WsConnection<unknown>;
  readonly #closeSoon: () => void;

  /** `closeSoon`: the HTTP binding's, for the connection under the WebSocket. */
  constructor(conn: Connection, ws: WsConnection<unknown>, host: SessionHost, closeSoon: () => void) {
    super(conn, host);
    this.#ws = ws;
    this.#closeSoon = closeSoon;
    ws.ws.once('close', () => this.gone());
  }

  protected pauseReading(hold: boolean): void {
    // ws's pause()/resume(): the socket under it stops being read (frames already read still come).
    if (hold) this.#ws.ws.pause();
    else this.#ws.ws.resume();
  }

  /**
   * The client: behind a proxy that the HTTP binding trusts (`trustProxy`), the address its
   * forwarding header names; otherwise the connection's peer.
   */
  override get remoteAddress(): string | undefined {
    return clientAddress(this.#ws.request);
  }

  /**
   * Behind a trusted proxy (`trustProxy` on the HTTP binding), the forwarded client decides: a
   * client on this machine through a same-host proxy is local, a remote one is not. A loopback peer
   * that is not trusted but sent forwarding headers is a reverse proxy speaking for someone else:
   * not loopback (a same-host proxy in front of ws:// must not make every remote user "local").
   */
  override get loopback(): boolean {
    const info = clientInfo(this.#ws.request);
    if (info?.forwarded === true) return info.remoteAddress !== undefined && isLoopbackAddress(info.remoteAddress);
    if (!this.conn.isLoopback) return false;
    const headers = this.#ws.request.headers;
    return headers.forwarded === undefined && headers['x-forwarded-for'] === undefined && headers['x-real-ip'] === undefined;
  }

  get secure(): boolean {
    // wss:// — TLS is terminated by the HTTP binding.
    return this.conn.secure;
  }

  channelBinding(): ChannelBinding | undefined {
    return undefined;
  }

  /** One WebSocket text message. */
  message(text: string): void {
    if (this.closed) return;
    let element: XmlElement | undefined;
    try {
      const limit = this.authenticated ? this.host.maxStanzaSize : this.host.maxStanzaSizeBeforeAuth;
      if (text.length > Math.max(10_000, limit)) throw new StreamError('policy-violation', `stanza larger than ${limit} bytes`);
      element = parseFrame(text, limit, this.host.maxDepth);
    } catch (error) {
      return this.close(error instanceof StreamError ? error : new StreamError('not-well-formed'));
    }
    if (element === undefined) return;
    if (element.xmlns === NS_FRAMING && element.local === 'open') return this.opened(element.attrs);
    if (element.xmlns === NS_FRAMING && element.local === 'close') return this.peerClosed();
    this.received(element);
  }

  override send(element: XmlElement | string): void {
    // Every top-level element declares its namespace: there is no stream root to inherit it from.
    if (typeof element !== 'string' && element.attrs.xmlns === undefined && element.xmlns === NS_CLIENT) {
      super.send(new XmlElement(element.name, { xmlns: NS_CLIENT, ...element.attrs }, element.children, NS_CLIENT));
      return;
    }
    if (
      typeof element !== 'string' &&
      element.attrs.xmlns === undefined &&
      element.xmlns === '' &&
      ['message', 'presence', 'iq'].includes(element.name)
    ) {
      super.send(new XmlElement(element.name, { xmlns: NS_CLIENT, ...element.attrs }, element.children, NS_CLIENT));
      return;
    }
    super.send(element);
  }

  protected write(text: string): void {
    if (this.#ws.open) this.#ws.send(text);
  }

  protected get unsent(): number {
    return this.#ws.bufferedAmount;
  }

  protected endTransport(error: StreamError | undefined): void {
    // 1001 (going away) when the server shuts down, as every WebSocket endpoint of portbind does.
    this.#ws.close(error?.condition === 'system-shutdown' ? 1001 : 1000);
  }

  protected closeSoon(): void {
    this.#closeSoon();
  }

  protected destroyTransport(): void {
    this.#ws.ws.terminate();
  }

  protected header(id: string): string {
    return `<open xmlns='${NS_FRAMING}' id='${id}' from='${this.host.domain}' version='1.0' xml:lang='en'/>`;
  }

  protected footer(): string {
    return `<close xmlns='${NS_FRAMING}'/>`;
  }

  protected streamElement(element: XmlElement): XmlElement {
    return element.setAttr('xmlns:stream', NS_STREAMS);
  }

  protected get starttlsOffered(): boolean {
    return false;
  }

  protected async starttls(): Promise<void> {
    // RFC 7395 §3.6: TLS comes from wss://, never from STARTTLS.
    this.send(xml('failure', { xmlns: NS_TLS }));
    this.close();
  }
}

/** Parse one framed element with the stream parser's rules (restricted XML, size limit). */
function parseFrame(text: string, maxStanzaSize: number, maxDepth: number): XmlElement | undefined {
  let found: XmlElement | undefined;
  const parser = new StreamParser(
    (event: StreamEvent) => {
      if (event.type === 'element') found ??= event.element;
    },
    // The <frame> wrapper is the document's root, as <stream:stream> is: the stanza is depth 1 in both.
    { maxStanzaSize, maxDepth },
  );
  parser.write(Buffer.from(`<frame xmlns='${NS_CLIENT}' xmlns:stream='${NS_STREAMS}'>`));
  parser.write(Buffer.from(text));
  return found;
}

/** 127.0.0.0/8, ::1, and their IPv4-mapped forms, as `Connection.isLoopback` counts them. */
function isLoopbackAddress(address: string): boolean {
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}
