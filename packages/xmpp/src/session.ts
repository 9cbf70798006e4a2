import { randomBytes } from 'node:crypto';
import type { Connection, Logger } from '@portbind/core';
import { type XmlElement, xml } from './element.js';
import { Jid } from './jid.js';
import { NS_BIND, NS_CLIENT, NS_SASL, NS_SESSION, NS_TLS } from './namespaces.js';
import type { ChannelBinding } from './sasl/index.js';
import { StreamError } from './stream-error.js';

/** A client's session, as hooks, IQ handlers and the registration check see it. */
export interface XmppSession {
  /** Unique in the process. */
  readonly id: number;
  /** The connection (remote address, `context` for your own per-connection state). */
  readonly conn: Connection;
  /** The authenticated account's localpart, after SASL. */
  readonly user: string | undefined;
  /** The full JID, after resource binding. */
  readonly jid: Jid | undefined;
  /** True on TLS (STARTTLS, direct TLS, wss://). */
  readonly secure: boolean;
  /**
   * The client's address: the connection's (after a PROXY protocol header from a trusted proxy), or
   * on WebSocket the one a proxy trusted by the HTTP binding's `trustProxy` forwarded. `undefined`
   * on a Unix socket. Login throttling, the registration limit and the logs count this address.
   */
  readonly remoteAddress: string | undefined;
  /**
   * True when the client is on this machine: its {@link remoteAddress} is loopback (or a Unix
   * socket), and no untrusted peer's forwarding headers say it speaks for someone else.
   */
  readonly loopback: boolean;
  readonly authenticated: boolean;
  /**
   * Where the session is: `tls` (STARTTLS required first), `auth` (SASL), `bind` (authenticated, no
   * resource yet), `bound`, `hibernating` (transport lost, kept for stream resumption), `closed`.
   */
  readonly stage: SessionStage;
  /** Send an element (or raw XML text) on this stream. Stanzas pass the modules' outbound filters first. */
  send(element: XmlElement | string): void;
  /** Write an element without the modules' outbound filters: stream-level elements (`<a/>`, `<enabled/>`). */
  sendRaw(element: XmlElement | string): void;
  /**
   * Run `callback` once, when what this turn of the event loop wrote to the stream is about to leave:
   * what it writes goes out in the same packet (stream management's `<r/>` after a burst of stanzas).
   */
  beforeFlush(callback: () => void): void;
  /** End the stream, with a stream error when given. */
  close(error?: StreamError): void;
}

export type SessionStage = 'tls' | 'auth' | 'bind' | 'bound' | 'hibernating' | 'closed';

/** What a session needs from the server: limits, authentication and routing. @internal */
export interface SessionHost {
  readonly domain: string;
  readonly logger: Logger;
  /** Largest stanza after authentication. */
  readonly maxStanzaSize: number;
  /** Largest stanza before authentication. */
  readonly maxStanzaSizeBeforeAuth: number;
  /** Deepest element nesting in a stanza. */
  readonly maxDepth: number;
  /** Unsent bytes past which a client that stopped reading is disconnected. */
  readonly maxOutputBytes: number;
  /** Reading limit per connection (bytes per second, 0 = none) and burst allowance. */
  readonly rateLimit: { bytesPerSecond: number; burstBytes: number };
  /** Time a STARTTLS handshake may take. */
  readonly tlsHandshakeTimeoutMs: number;
  /** Authentication without TLS is allowed for this session (development). */
  plaintextAllowed(session: Session): boolean;
  /** SASL mechanisms to offer on this connection. */
  mechanisms(session: Session): string[];
  /** The channel binding offered on this connection, if any (advertised with XEP-0440). */
  channelBinding(session: Session): ChannelBinding | undefined;
  /** In-band registration (XEP-0077) is offered to this session before authentication (never without TLS). */
  registrationOffered(session: Session): boolean;
  /** An IQ before authentication (in-band registration); false when not handled. */
  beforeAuth(session: Session, iq: XmlElement): Promise<boolean>;
  /** Handle an element of the SASL exchange; resolves when handled. */
  sasl(session: Session, element: XmlElement): Promise<void>;
  /** Bind a resource: the full JID, after closing any session with the same one. */
  bind(session: Session, resource: string): Jid;
  /** A stanza from a bound session. */
  stanza(session: Session, stanza: XmlElement): void | Promise<void>;
  /** A top-level element that is not a stanza, from an authenticated session; false when no module takes it. */
  nonza(session: Session, element: XmlElement): Promise<boolean>;
  /** Stream features modules add at this stage. */
  features(session: Session, stage: 'sasl' | 'bind'): XmlElement[];
  /** The modules' outbound filters: the stanza to write, or null to hold it back. */
  outbound(session: Session, stanza: XmlElement): XmlElement | null;
  /** The transport closed. */
  closed(session: Session): void;
  /** End a session for good (a hibernating one closed by the server: a password change, an account removal). */
  end(session: Session): void;
}

let nextId = 1;

/**
 * Elements one session may have waiting for their turn (see Session.received) before the server stops
 * reading from it. A client's own pipelining (a burst of messages, a roster and a vCard and disco at
 * login) fits; each element is at most `maxStanzaSize`.
 */
export const MAX_WAITING_ELEMENTS = 64;
/**
 * One client-to-server XML stream (RFC 6120): stream header, (STARTTLS,) SASL, resource binding,
 * then stanzas. Its state is explicit: `secure`, `user` (after SASL), `jid` (after bind). The
 * framing is the transport's: an XML stream over TCP (`TcpSession`) or one element per
 * WebSocket message (`WsSession`, RFC 7395).
 */
export abstract class Session implements XmppSession {
  readonly id = nextId++;
  readonly conn: Connection;
  /** The authenticated account's localpart, after SASL. */
  user: string | undefined;
  /** The full JID, after resource binding. */
  jid: Jid | undefined;
  /** Per-session state of the server's modules, by module state key (moved as a whole by a stream resumption). */
  moduleState = new Map<object, unknown>();
  /** The transport is gone but the session stays routed (stream management). */
  hibernating = false;
  /** Replaced by a resumed session: its end is silent (no presence, no events). */
  replaced = false;
  /** The stream was ended on purpose (by either side), not lost with its transport. */
  cleanEnd = false;
  /** The server has ended the session for good (`session/closed` fired). */
  ended = false;
  protected readonly host: SessionHost;
  protected closed = false;
  #headerSent = false;
  #gone = false;
  #queue: Promise<void> = Promise.resolve();

  constructor(conn: Connection, host: SessionHost) {
    this.conn = conn;
    this.host = host;
  }

  abstract get secure(): boolean;
  /** The TLS channel binding (tls-exporter, RFC 9266) when on TLS 1.3. */
  abstract channelBinding(): ChannelBinding | undefined;
  /** Write serialized XML to the transport. */
  protected abstract write(text: string): void;
  /** Bytes written and not yet taken by the peer. */
  protected abstract get unsent(): number;
  /** Close the transport politely (the stream's end was sent): a WebSocket close frame, a TCP FIN. */
  protected abstract endTransport(error: StreamError | undefined): void;
  /** After a polite close: destroy the transport unless the peer closes within the binding's closeWaitMs. */
  protected abstract closeSoon(): void;
  protected abstract destroyTransport(): void;
  /** The transport's stream header, answering the client's. */
  protected abstract header(id: string): string;
  /** The transport's end of stream. */
  protected abstract footer(): string;
  /** Stream features and stream errors carry the streams namespace declaration where needed. */
  protected abstract streamElement(element: XmlElement): XmlElement;
  /** STARTTLS, where the transport has it. */
  protected abstract starttls(): Promise<void>;
  /** Stop (true) or go on (false) reading from the client: the server's storage is behind. */
  holdInput(hold: boolean): void {
    this.#storageHold = hold;
    this.#applyHold();
  }

  /** Stop (true) or go on (false) reading from the transport; the session says when (the reasons below). */
  protected abstract pauseReading(pause: boolean): void;

  /** The server's storage is behind ({@link holdInput}). */
  #storageHold = false;
  /** Elements received and not yet begun: each waits for the one before it ({@link received}). */
  #waiting = 0;
  #backlogHold = false;

  #applyHold(): void {
    this.pauseReading(this.#storageHold || this.#backlogHold);
  }
  /** Whether STARTTLS is offered (and so required) on this transport. */
  protected abstract get starttlsOffered(): boolean;

  /** The connection's peer; a transport may know better (a trusted proxy's forwarding header on WebSocket). */
  get remoteAddress(): string | undefined {
    return this.conn.remoteAddress;
  }

  /** On the loopback interface; a transport may know better (forwarding headers on WebSocket). */
  get loopback(): boolean {
    return this.conn.isLoopback;
  }

  get authenticated(): boolean {
    return this.user !== undefined;
  }

  get stage(): SessionStage {
    if (this.hibernating) return 'hibernating';
    if (this.closed) return 'closed';
    if (this.jid !== undefined) return 'bound';
    if (this.authenticated) return 'bind';
    if (!this.secure && this.starttlsOffered) return 'tls';
    return 'auth';
  }

  /** Send an element (or raw XML text). Stanzas to a bound (or hibernating) session pass the outbound filters. */
  send(element: XmlElement | string): void {
    if (typeof element !== 'string' && this.jid !== undefined && (this.hibernating || !this.closed) && isStanza(element)) {
      const filtered = this.host.outbound(this, element);
      if (filtered === null) return;
      element = filtered;
    }
    this.sendRaw(element);
  }

  beforeFlush(callback: () => void): void {
    process.nextTick(callback);
  }

  /** Write without the outbound filters (stream-level elements: `<a/>`, `<enabled/>`, resent queues). */
  sendRaw(element: XmlElement | string): void {
    if (this.closed) return;
    let text: string;
    try {
      text = typeof element === 'string' ? element : element.toString();
    } catch (error) {
      // Serializing is iterative and cannot overflow; anything else here is a bug: one stanza is lost, not the stream.
      this.host.logger.error({ err: error, session: this.id }, 'could not serialize a stanza: dropped');
      return;
    }
    this.write(text);
    // A client that stopped reading cannot grow the server's memory: it would not read a
    // stream error either, so it is cut off.
    if (this.unsent > this.host.maxOutputBytes) this.destroyTransport();
  }

  /** End the stream: with a stream error when given (RFC 6120 §4.9), then the stream's end. */
  close(error?: StreamError): void {
    if (this.closed) {
      // Its transport is gone already, kept for stream resumption: closing it ends it (it may not be resumed).
      if (this.hibernating) this.host.end(this);
      return;
    }
    // Ended on purpose (the client's `</stream:stream>`, a stream error): not a lost link that
    // stream management may resume. An idle timeout is a link that went silent; a shutdown is the
    // server going away (with several processes the session resumes on another).
    this.cleanEnd = error?.condition !== 'connection-timeout' && error?.condition !== 'system-shutdown';
    if (!this.#headerSent) this.#sendHeader();
    if (error !== undefined) this.send(this.streamElement(error.toElement()));
    this.send(this.footer());
    this.closed = true;
    this.host.logger.debug(
      { conn: this.conn.id, remoteAddress: this.remoteAddress, jid: this.jid?.toString(), condition: error?.condition },
      error === undefined ? 'stream closed' : 'stream closed with an error',
    );
    this.endTransport(error);
    // A peer that never answers the closing handshake is not waited for.
    this.closeSoon();
  }

  /**
   * The client ended its stream (`</stream:stream>`, `<close/>`): close ours once every element it
   * sent before is handled — a last unavailable presence with a status comes in the same packet.
   */
  protected peerClosed(): void {
    this.#queue = this.#queue.then(() => this.close());
  }

  /** Restart the stream after SASL success (RFC 6120 §6.4.6). */
  restart(): void {
    this.#headerSent = false;
  }

  /** The transport closed. */
  protected gone(): void {
    this.closed = true;
    if (this.#gone) return;
    this.#gone = true;
    if (!this.replaced) this.host.closed(this);
  }

  /** Close the transport of a session replaced by a resumed one, with no presence or events. */
  closeReplaced(): void {
    this.replaced = true;
    this.jid = undefined;
    this.close(new StreamError('conflict', 'replaced by a resumed session'));
  }

  /** The client opened (or reopened) its stream with these attributes. */
  protected opened(attrs: Record<string, string>): void {
    this.#sendHeader();
    const to = attrs.to === undefined ? undefined : Jid.parse(attrs.to);
    if (to === undefined || to.bare !== this.host.domain)
      return this.close(new StreamError('host-unknown', `this server is ${this.host.domain}`));
    const version = attrs.version ?? '0.9';
    if (Number.parseInt(version, 10) < 1) return this.close(new StreamError('unsupported-version'));
    // Nothing this client could do here (no TLS on offer, plaintext not allowed for it): say so
    // rather than offer empty features and leave it waiting.
    if (!this.authenticated && !this.secure && !this.starttlsOffered && !this.host.plaintextAllowed(this)) {
      return this.close(
        new StreamError('policy-violation', 'TLS is required: this server accepts logins without TLS only from its own machine'),
      );
    }
    this.send(this.streamElement(this.#features()));
  }

  /**
   * A top-level element: handled in order, one at a time, even when one waits (SASL's key derivation, a
   * store's answer). The elements behind it wait in memory: past {@link MAX_WAITING_ELEMENTS} of them this
   * client is not read (TCP then slows it down) until half have begun, so a client that sends faster than
   * its stanzas are handled (a slow store, a flood of IQs) holds a bounded number, not all it can send.
   */
  protected received(element: XmlElement): void {
    if (++this.#waiting > MAX_WAITING_ELEMENTS && !this.#backlogHold) {
      this.#backlogHold = true;
      this.#applyHold();
    }
    this.#queue = this.#queue
      .then(() => {
        if (--this.#waiting <= MAX_WAITING_ELEMENTS / 2 && this.#backlogHold) {
          this.#backlogHold = false;
          if (!this.closed) this.#applyHold();
        }
        return this.#element(element);
      })
      .catch((error: unknown) => {
        if (!(error instanceof StreamError)) this.host.logger.error({ err: error, conn: this.conn.id }, 'stanza handling failed');
        this.close(error instanceof StreamError ? error : new StreamError('internal-server-error'));
      });
  }

  #sendHeader(): void {
    this.#headerSent = true;
    this.write(this.header(randomBytes(9).toString('base64url')));
  }

  #features(): XmlElement {
    const features = xml('stream:features');
    if (!this.secure && this.starttlsOffered) {
      return features.append(xml('starttls', { xmlns: NS_TLS }, xml('required')));
    }
    if (!this.authenticated) {
      if (!this.secure && !this.host.plaintextAllowed(this)) return features;
      const binding = this.host.channelBinding(this);
      features.append(xml('mechanisms', { xmlns: NS_SASL }, ...this.host.mechanisms(this).map((name) => xml('mechanism', {}, name))));
      if (this.host.registrationOffered(this)) features.append(xml('register', { xmlns: 'http://jabber.org/features/iq-register' }));
      // XEP-0440: which channel-binding type the -PLUS mechanisms use.
      if (binding !== undefined) {
        features.append(xml('sasl-channel-binding', { xmlns: 'urn:xmpp:sasl-cb:0' }, xml('channel-binding', { type: binding.type })));
      }
      features.append(...this.host.features(this, 'sasl'));
      return features;
    }
    return features.append(
      xml('bind', { xmlns: NS_BIND }),
      xml('session', { xmlns: NS_SESSION }, xml('optional')),
      ...this.host.features(this, 'bind'),
    );
  }

  async #element(element: XmlElement): Promise<void> {
    if (this.closed) return;
    if (element.xmlns === NS_TLS && element.local === 'starttls') return this.starttls();
    if (!this.secure && this.starttlsOffered) throw new StreamError('not-authorized', 'STARTTLS first');
    if (element.xmlns === NS_SASL) {
      if (this.authenticated) throw new StreamError('not-authorized', 'already authenticated');
      if (!this.secure && !this.host.plaintextAllowed(this)) throw new StreamError('not-authorized', 'TLS first');
      return this.host.sasl(this, element);
    }
    if (!this.authenticated) {
      const allowed = this.secure || this.host.plaintextAllowed(this);
      if (allowed && element.xmlns === NS_CLIENT && element.local === 'iq' && (await this.host.beforeAuth(this, element))) return;
      throw new StreamError('not-authorized', 'authenticate first');
    }
    if (element.xmlns !== NS_CLIENT || !isStanza(element)) {
      if (await this.host.nonza(this, element)) return;
      throw new StreamError('unsupported-stanza-type', `<${element.name}/> is not a stanza`);
    }
    if (this.jid === undefined) return this.#beforeBind(element);
    await this.host.stanza(this, element);
  }

  /** Only resource binding (and the legacy session IQ) before a resource is bound. */
  #beforeBind(stanza: XmlElement): void {
    const bind = stanza.local === 'iq' && stanza.attr('type') === 'set' ? stanza.getChild('bind', NS_BIND) : undefined;
    if (bind === undefined) throw new StreamError('not-authorized', 'bind a resource first');
    const requested = bind.getChildText('resource')?.trim() ?? '';
    const resource = requested === '' ? randomBytes(6).toString('base64url') : requested;
    this.jid = this.host.bind(this, resource);
    this.send(xml('iq', { type: 'result', id: stanza.attr('id') }, xml('bind', { xmlns: NS_BIND }, xml('jid', {}, this.jid.toString()))));
  }
}

function isStanza(element: XmlElement): boolean {
  const local = element.local;
  return (local === 'message' || local === 'presence' || local === 'iq') && (element.xmlns === NS_CLIENT || element.xmlns === '');
}
