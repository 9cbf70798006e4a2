import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import type { Connection } from '@portbind/core';
import { type XmlElement, xml } from './element.js';
import { Jid } from './jid.js';
import { NS_BIND, NS_CLIENT, NS_SASL, NS_SESSION, NS_TLS } from './namespaces.js';
import type { ChannelBinding } from './sasl/index.js';
import { StreamError } from './stream-error.js';
import { type StreamEvent, StreamParser } from './stream-parser.js';

/** What a session needs from the server: authentication and routing. */
export interface SessionHost {
  readonly domain: string;
  readonly maxStanzaSize: number;
  /** Unsent bytes past which a client that stopped reading is disconnected. */
  readonly maxOutputBytes: number;
  /** TLS is on offer (a certificate is configured). */
  readonly tlsAvailable: boolean;
  /** Authentication without TLS is allowed (loopback development only). */
  readonly plaintextAllowed: boolean;
  secureContext(): import('node:tls').SecureContext | undefined;
  /** SASL mechanisms to offer on this connection. */
  mechanisms(session: Session): string[];
  /** The channel binding offered on this connection, if any (advertised with XEP-0440). */
  channelBinding(session: Session): ChannelBinding | undefined;
  /** Handle an element of the SASL exchange; resolves when handled. */
  sasl(session: Session, element: XmlElement): Promise<void>;
  /** Bind a resource: the full JID, after closing any session with the same one. */
  bind(session: Session, resource: string): Jid;
  /** A stanza from a bound session. */
  stanza(session: Session, stanza: XmlElement): void | Promise<void>;
  closed(session: Session): void;
}

let nextId = 1;

/**
 * One client-to-server XML stream over TCP (RFC 6120): stream header, STARTTLS, SASL, resource
 * binding, then stanzas. Its state is explicit: `secure`, `user` (after SASL), `jid` (after bind).
 */
export class Session {
  readonly id = nextId++;
  readonly conn: Connection;
  /** The authenticated account's localpart, after SASL. */
  user: string | undefined;
  /** The full JID, after resource binding. */
  jid: Jid | undefined;
  /** Per-session state for the server's modules (SASL exchange in progress, …). */
  readonly state: Record<string, unknown> = {};
  readonly #host: SessionHost;
  readonly #parser: StreamParser;
  #socket: Socket;
  #headerSent = false;
  #closed = false;
  #gone = false;
  #queue: Promise<void> = Promise.resolve();

  constructor(conn: Connection, host: SessionHost) {
    this.conn = conn;
    this.#host = host;
    this.#socket = conn.socket;
    this.#parser = new StreamParser((event) => this.#event(event), { maxStanzaSize: host.maxStanzaSize });
    this.#listen(this.#socket);
  }

  get secure(): boolean {
    return this.#socket instanceof TLSSocket;
  }

  get authenticated(): boolean {
    return this.user !== undefined;
  }

  /** The TLS channel binding (tls-exporter, RFC 9266) when on TLS 1.3. */
  channelBinding(): ChannelBinding | undefined {
    const socket = this.#socket;
    if (!(socket instanceof TLSSocket) || socket.getProtocol() !== 'TLSv1.3') return undefined;
    return { type: 'tls-exporter', data: socket.exportKeyingMaterial(32, 'EXPORTER-Channel-Binding', Buffer.alloc(0)) };
  }

  /** Send an element (or raw XML text). */
  send(element: XmlElement | string): void {
    if (this.#closed || this.#socket.destroyed) return;
    this.#socket.write(typeof element === 'string' ? element : element.toString());
    // A client that stopped reading cannot grow the server's memory: it would not read a
    // stream error either, so it is cut off.
    if (this.#socket.writableLength > this.#host.maxOutputBytes) this.#socket.destroy();
  }

  /** End the stream: with a stream error when given (RFC 6120 §4.9), then `</stream:stream>`. */
  close(error?: StreamError): void {
    if (this.#closed) return;
    if (!this.#headerSent) this.#sendHeader();
    if (error !== undefined) this.send(error.toElement());
    this.send('</stream:stream>');
    this.#closed = true;
    this.#socket.end();
    // A peer that never answers the closing handshake is not waited for.
    setTimeout(() => this.#socket.destroy(), 2000).unref();
  }

  /** Restart the stream after SASL success (RFC 6120 §6.4.6). */
  restart(): void {
    this.#parser.restart();
    this.#headerSent = false;
  }

  #listen(socket: Socket): void {
    socket.on('data', this.#onData);
    socket.on('error', () => {});
    socket.once('close', () => {
      this.#closed = true;
      if (this.#gone) return;
      this.#gone = true;
      this.#host.closed(this);
    });
  }

  readonly #onData = (chunk: Buffer): void => {
    if (this.#closed) return;
    try {
      this.#parser.write(chunk);
    } catch (error) {
      if (error instanceof StreamError) this.close(error);
      else throw error;
    }
  };

  #event(event: StreamEvent): void {
    if (event.type === 'close') {
      this.close();
      return;
    }
    if (event.type === 'open') {
      this.#open(event);
      return;
    }
    // Elements are handled in order, one at a time, even when one waits (SASL's key derivation).
    this.#queue = this.#queue
      .then(() => this.#element(event.element))
      .catch((error: unknown) => {
        this.close(error instanceof StreamError ? error : new StreamError('internal-server-error'));
      });
  }

  #sendHeader(): void {
    this.#headerSent = true;
    const id = randomBytes(9).toString('base64url');
    this.#socket.write(
      `<?xml version='1.0'?><stream:stream xmlns='${NS_CLIENT}' xmlns:stream='http://etherx.jabber.org/streams' id='${id}' from='${this.#host.domain}' version='1.0' xml:lang='en'>`,
    );
  }

  #open(event: Extract<StreamEvent, { type: 'open' }>): void {
    this.#sendHeader();
    if (event.xmlns !== 'http://etherx.jabber.org/streams' || event.name.split(':').pop() !== 'stream') {
      return this.close(new StreamError('invalid-namespace'));
    }
    if (event.attrs.xmlns !== NS_CLIENT)
      return this.close(new StreamError('invalid-namespace', 'the content namespace must be jabber:client'));
    const to = event.attrs.to === undefined ? undefined : Jid.parse(event.attrs.to);
    if (to === undefined || to.bare !== this.#host.domain)
      return this.close(new StreamError('host-unknown', `this server is ${this.#host.domain}`));
    const version = event.attrs.version ?? '0.9';
    if (Number.parseInt(version, 10) < 1) return this.close(new StreamError('unsupported-version'));
    this.send(this.#features());
  }

  #features(): XmlElement {
    const features = xml('stream:features');
    if (!this.secure && this.#host.tlsAvailable) {
      return features.append(xml('starttls', { xmlns: NS_TLS }, xml('required')));
    }
    if (!this.authenticated) {
      if (!this.secure && !this.#host.plaintextAllowed) return features;
      const binding = this.#host.channelBinding(this);
      features.append(xml('mechanisms', { xmlns: NS_SASL }, ...this.#host.mechanisms(this).map((name) => xml('mechanism', {}, name))));
      // XEP-0440: which channel-binding type the -PLUS mechanisms use.
      if (binding !== undefined) {
        features.append(xml('sasl-channel-binding', { xmlns: 'urn:xmpp:sasl-cb:0' }, xml('channel-binding', { type: binding.type })));
      }
      return features;
    }
    return features.append(xml('bind', { xmlns: NS_BIND }), xml('session', { xmlns: NS_SESSION }, xml('optional')));
  }

  async #element(element: XmlElement): Promise<void> {
    if (this.#closed) return;
    if (element.xmlns === NS_TLS && element.local === 'starttls') return this.#starttls();
    if (!this.secure && this.#host.tlsAvailable) throw new StreamError('not-authorized', 'STARTTLS first');
    if (element.xmlns === NS_SASL) {
      if (this.authenticated) throw new StreamError('not-authorized', 'already authenticated');
      return this.#host.sasl(this, element);
    }
    if (!this.authenticated) throw new StreamError('not-authorized', 'authenticate first');
    if (element.xmlns !== NS_CLIENT || !['message', 'presence', 'iq'].includes(element.local)) {
      throw new StreamError('unsupported-stanza-type', `<${element.name}/> is not a stanza`);
    }
    if (this.jid === undefined) return this.#beforeBind(element);
    await this.#host.stanza(this, element);
  }

  /** Only resource binding (and the legacy session IQ) before a resource is bound. */
  #beforeBind(stanza: XmlElement): void {
    const bind = stanza.local === 'iq' && stanza.attr('type') === 'set' ? stanza.getChild('bind', NS_BIND) : undefined;
    if (bind === undefined) throw new StreamError('not-authorized', 'bind a resource first');
    const requested = bind.getChildText('resource')?.trim() ?? '';
    const resource = requested === '' ? randomBytes(6).toString('base64url') : requested;
    this.jid = this.#host.bind(this, resource);
    this.send(xml('iq', { type: 'result', id: stanza.attr('id') }, xml('bind', { xmlns: NS_BIND }, xml('jid', {}, this.jid.toString()))));
  }

  async #starttls(): Promise<void> {
    const context = this.#host.secureContext();
    if (this.secure || context === undefined) {
      this.send(xml('failure', { xmlns: NS_TLS }));
      return this.close();
    }
    this.send(xml('proceed', { xmlns: NS_TLS }));
    const raw = this.#socket;
    raw.off('data', this.#onData);
    const tls = new TLSSocket(raw, { isServer: true, secureContext: context });
    await new Promise<void>((resolve, reject) => {
      tls.once('secure', () => resolve());
      tls.once('error', reject);
    }).catch(() => {
      raw.destroy();
      throw new StreamError('policy-violation', 'TLS handshake failed');
    });
    this.#socket = tls;
    this.conn.upgrade(tls);
    this.#listen(tls);
    this.#parser.restart();
    this.#headerSent = false;
  }
}
