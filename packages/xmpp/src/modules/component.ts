import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Adapter, BindingContext, Connection } from '@portbind/core';
import { XmppConfigError } from '../config-error.js';
import type { XmlElement } from '../element.js';
import { Jid } from '../jid.js';
import type { DomainServiceHandle, ModuleApi, XmppModule } from '../module.js';
import { NS_CLIENT } from '../namespaces.js';
import { stanzaError } from '../stanza-error.js';
import { NS_STREAMS, StreamError } from '../stream-error.js';
import { DEFAULT_MAX_DEPTH, DEFAULT_MAX_STANZA_SIZE, type StreamEvent, StreamParser } from '../stream-parser.js';

// External components (XEP-0114 1.6, "jabber:component:accept"), as Prosody's mod_component: a
// bridge or a bot runs as a process of its own, connects to the component port, opens a stream to
// its domain (`to='bot.localhost'`) and proves it knows the domain's shared secret with
// `<handshake>` = hex SHA-1(stream id + secret). From then on the server routes every stanza for
// that domain (or a JID on it) down the component's stream, and routes what the component sends,
// `from` on its domain, like any other stanza. When it disconnects the domain is unknown again:
// stanzas to it bounce.

/** The component stream's content namespace (XEP-0114). */
export const NS_COMPONENT = 'jabber:component:accept';

export interface ComponentsOptions {
  /**
   * The shared secret of each component domain: `{ 'bot.example.com': 'secret' }`. Each domain is
   * served by the component that connects with its secret (one connection at a time).
   */
  secrets: Readonly<Record<string, string>>;
  /**
   * Accept components from other machines too. Default false: as Prosody binds its component port
   * to 127.0.0.1, a connection from anywhere but this machine (or a Unix socket) gets
   * `<policy-violation/>` — the handshake is a hash of a shared secret over plain TCP, fine on
   * loopback, not across a network (unless the binding has TLS: bind it with `tls` and set this).
   */
  allowRemote?: boolean;
  /** A component that has not completed its handshake after this long gets `<connection-timeout/>`. Default 30 000 ms. */
  handshakeTimeoutMs?: number;
  /** Largest stanza from a component after the handshake (never below 10 000). Default 256 KiB, as clients. */
  maxStanzaSize?: number;
  /** Deepest nesting in a stanza from a component. Default 64, as clients. */
  maxDepth?: number;
  /** A component with this many bytes unsent (it stopped reading) is disconnected. Default 16 MiB. */
  maxOutputBytes?: number;
  /** Whether the server's disco#items lists connected components. Default true. */
  listed?: boolean;
}

/** The components module: add it to the server's modules, and bind its {@link ComponentsModule.adapter}. */
export interface ComponentsModule extends XmppModule {
  /**
   * The component port (XEP-0114): `service.bind(components.adapter())` on `XMPP_COMPONENT_PORT`
   * (default 5347). Each call makes a new adapter; bind each once. The module must be in the
   * server's modules before the binding opens.
   */
  adapter(): Adapter;
  /** The component domains this module knows (configured), lower case. */
  readonly domains: readonly string[];
  /** The domains with a component connected now. */
  connected(): string[];
}

/** The module's name in a server's module list. */
export const COMPONENTS = 'components';

/** Component domains configured per server, so that push (XEP-0357) knows an app server that is only briefly away. */
const configured = new WeakMap<object, ReadonlySet<string>>();

/** The component domains a components module configured on this server (empty without one). @internal */
export function configuredComponentDomains(server: object): ReadonlySet<string> {
  return configured.get(server) ?? new Set();
}

/**
 * `XMPP_COMPONENTS`-style text — `bot.example.com=secret,gateway.example.com=other` — as the
 * `secrets` option of {@link components}. An empty or unset value gives no components.
 */
export function parseComponentSecrets(text: string | undefined): Record<string, string> {
  const secrets: Record<string, string> = {};
  if (text === undefined || text.trim() === '') return secrets;
  for (const entry of text.split(',')) {
    const trimmed = entry.trim();
    if (trimmed === '') continue;
    const equals = trimmed.indexOf('=');
    const domain = equals === -1 ? '' : trimmed.slice(0, equals).trim();
    const secret = equals === -1 ? '' : trimmed.slice(equals + 1);
    if (domain === '' || secret === '') {
      throw new XmppConfigError(
        'PB_ERR_XMPP_OPTION',
        `component list: expected domain=secret, got ${JSON.stringify(trimmed.replace(/=.*/, '=…'))} (e.g. XMPP_COMPONENTS=bot.example.com=secret,gateway.example.com=other)`,
      );
    }
    secrets[domain] = secret;
  }
  return secrets;
}

function optionError(message: string): XmppConfigError {
  return new XmppConfigError('PB_ERR_XMPP_OPTION', `components: ${message}`);
}

function numberOption(name: string, value: number | undefined, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min)
    throw optionError(`${name} must be a number ≥ ${min}, got ${String(value)}`);
  return value;
}

interface Settings {
  secrets: Map<string, string>;
  allowRemote: boolean;
  handshakeTimeoutMs: number;
  maxStanzaSize: number;
  maxDepth: number;
  maxOutputBytes: number;
  listed: boolean;
}

function settingsOf(options: ComponentsOptions): Settings {
  if (options === null || typeof options !== 'object') throw optionError('give { secrets: { "bot.example.com": "secret" } }');
  const { secrets } = options;
  if (secrets === null || typeof secrets !== 'object' || Array.isArray(secrets)) {
    throw optionError('secrets must be an object of component domain → shared secret, e.g. { "bot.example.com": "secret" }');
  }
  const map = new Map<string, string>();
  for (const [domain, secret] of Object.entries(secrets)) {
    const jid = Jid.parse(domain);
    if (jid === undefined || jid.local !== '' || !jid.isBare) {
      throw optionError(`${JSON.stringify(domain)} is not a component domain (give a domain name such as bot.example.com)`);
    }
    if (typeof secret !== 'string' || secret === '') throw optionError(`the secret of ${jid.domain} must be a non-empty string`);
    if (map.has(jid.domain)) throw optionError(`${jid.domain} is given twice`);
    map.set(jid.domain, secret);
  }
  if (map.size === 0) throw optionError('secrets names no component domain');
  if (options.allowRemote !== undefined && typeof options.allowRemote !== 'boolean') throw optionError('allowRemote must be true or false');
  if (options.listed !== undefined && typeof options.listed !== 'boolean') throw optionError('listed must be true or false');
  return {
    secrets: map,
    allowRemote: options.allowRemote ?? false,
    handshakeTimeoutMs: numberOption('handshakeTimeoutMs', options.handshakeTimeoutMs, 30_000, 1),
    maxStanzaSize: Math.max(10_000, numberOption('maxStanzaSize', options.maxStanzaSize, DEFAULT_MAX_STANZA_SIZE, 1)),
    maxDepth: numberOption('maxDepth', options.maxDepth, DEFAULT_MAX_DEPTH, 2),
    maxOutputBytes: numberOption('maxOutputBytes', options.maxOutputBytes, 16 * 1024 * 1024, 1),
    listed: options.listed ?? true,
  };
}

/**
 * External components (XEP-0114): a shared secret per component domain, and a port for them.
 *
 *     const components = components({ secrets: { 'bot.localhost': 'secret' } });
 *     const server = xmppServer({ domain: 'localhost', modules: [...defaultModules(), components] });
 *     service.bind(components.adapter());   // XMPP_COMPONENT_PORT, 5347
 */
export function components(options: ComponentsOptions): ComponentsModule {
  const settings = settingsOf(options);
  const hub = new ComponentHub(settings);
  return {
    name: COMPONENTS,
    domains: [...settings.secrets.keys()],
    setup(api) {
      for (const domain of settings.secrets.keys()) {
        if (domain === api.domain) throw optionError(`${domain} is the server's own domain, not a component's`);
      }
      hub.setup(api);
      configured.set(api.server, new Set(settings.secrets.keys()));
    },
    adapter: () => new ComponentAdapter(hub),
    connected: () => hub.connected(),
  };
}

/** What every component connection of one module shares: the API, secrets, who is connected. */
class ComponentHub {
  readonly settings: Settings;
  #api: ModuleApi | undefined;
  /** Domain → the component serving it now. */
  readonly #connected = new Map<string, ComponentStream>();

  constructor(settings: Settings) {
    this.settings = settings;
  }

  setup(api: ModuleApi): void {
    if (this.#api !== undefined) throw optionError('one components module serves one server (make another with components())');
    this.#api = api;
  }

  get api(): ModuleApi | undefined {
    return this.#api;
  }

  connected(): string[] {
    return [...this.#connected.keys()].sort();
  }

  /** Take the domain for this stream, or say why not. */
  claim(domain: string, stream: ComponentStream): StreamError | DomainServiceHandle {
    const api = this.#api;
    if (api === undefined) return new StreamError('internal-server-error');
    const current = this.#connected.get(domain);
    if ((current !== undefined && current !== stream) || api.servesDomain(domain)) {
      return new StreamError('conflict', `a component for ${domain} is already connected`);
    }
    let handle: DomainServiceHandle;
    try {
      handle = api.domainService(domain, {
        name: domain,
        listed: this.settings.listed,
        stanza: (event) => stream.deliver(event.stanza),
      });
    } catch {
      return new StreamError('conflict', `${domain} is served by another module`);
    }
    this.#connected.set(domain, stream);
    return handle;
  }

  release(domain: string, stream: ComponentStream): void {
    if (this.#connected.get(domain) === stream) this.#connected.delete(domain);
  }
}

/** The component port (XEP-0114). */
class ComponentAdapter implements Adapter {
  readonly name = 'xmpp-component';
  readonly scheme = 'xmpp-component';
  readonly secureScheme = 'xmpps-component';
  readonly portEnv = 'XMPP_COMPONENT_PORT';
  readonly defaultPort = 5347;
  /** A handful of components connect; more connections than this at once are refused (bind option `maxConnections` overrides). */
  readonly limits = { maxConnections: 64 };
  readonly #hub: ComponentHub;
  readonly #streams = new Map<Connection, ComponentStream>();
  #binding: BindingContext | undefined;

  constructor(hub: ComponentHub) {
    this.#hub = hub;
  }

  open(binding: BindingContext): void {
    if (this.#hub.api === undefined) {
      throw new XmppConfigError(
        'PB_ERR_XMPP_OPTION',
        `binding ${binding.name}: its components module is not in a server's modules (xmppServer({ modules: [...defaultModules(), components] })) — create the server before binding the component port`,
      );
    }
    this.#binding = binding;
  }

  connection(conn: Connection): void {
    const stream = new ComponentStream(conn, this.#hub, (socket) =>
      this.#binding === undefined ? socket.destroy() : this.#binding.closeSoon(socket),
    );
    this.#streams.set(conn, stream);
    conn.socket.once('close', () => this.#streams.delete(conn));
  }

  refuse(socket: Socket): void {
    socket.write(refusalText(new StreamError('resource-constraint', 'too many connections: try again later')));
  }

  idle(conn: Connection): void {
    const stream = this.#streams.get(conn);
    if (stream === undefined) conn.socket.destroy();
    else stream.close(new StreamError('connection-timeout', 'idle for too long'));
  }

  drain(): void {
    for (const stream of this.#streams.values()) stream.close(new StreamError('system-shutdown'));
  }
}

function header(id: string, from: string | undefined): string {
  const fromAttr = from === undefined ? '' : ` from='${from}'`;
  return `<?xml version='1.0'?><stream:stream xmlns:stream='${NS_STREAMS}' xmlns='${NS_COMPONENT}'${fromAttr} id='${id}'>`;
}

function refusalText(error: StreamError): string {
  return `${header(randomBytes(9).toString('base64url'), undefined)}${error.toElement().toString()}</stream:stream>`;
}

/** Stanzas in the component namespace become client stanzas (the router and modules know those), at every level. */
function asClientStanza(element: XmlElement): XmlElement {
  const stack: XmlElement[] = [element];
  while (stack.length > 0) {
    const current = stack.pop() as XmlElement;
    if (current.xmlns === NS_COMPONENT) current.xmlns = NS_CLIENT;
    if (current.attrs.xmlns === NS_COMPONENT) delete current.attrs.xmlns;
    for (const child of current.children) if (typeof child !== 'string') stack.push(child);
  }
  return element;
}

const STANZAS = new Set(['message', 'presence', 'iq']);

/** One component's XML stream (XEP-0114): header, handshake, then stanzas both ways. */
class ComponentStream {
  readonly #conn: Connection;
  readonly #hub: ComponentHub;
  readonly #closeSoon: (socket: Socket) => void;
  readonly #parser: StreamParser;
  readonly #id = randomBytes(12).toString('hex');
  #domain: string | undefined;
  #handle: DomainServiceHandle | undefined;
  #headerSent = false;
  #closed = false;
  #queue: Promise<void> = Promise.resolve();
  readonly #timer: NodeJS.Timeout;

  constructor(conn: Connection, hub: ComponentHub, closeSoon: (socket: Socket) => void) {
    this.#conn = conn;
    this.#hub = hub;
    this.#closeSoon = closeSoon;
    this.#parser = new StreamParser((event) => this.#event(event), { maxStanzaSize: 10_000, maxDepth: hub.settings.maxDepth });
    const socket = conn.socket;
    socket.on('error', () => {});
    socket.once('close', () => this.#gone());
    this.#timer = setTimeout(() => {
      if (this.#handle === undefined) this.close(new StreamError('connection-timeout', 'no handshake in time'));
    }, hub.settings.handshakeTimeoutMs);
    this.#timer.unref();
    if (!hub.settings.allowRemote && !conn.isLoopback) {
      this.#log('warn', 'XMPP component refused: not from this machine');
      this.close(new StreamError('policy-violation', 'components connect from this machine only (components option allowRemote)'));
      return;
    }
    socket.on('data', (chunk: Buffer) => {
      if (this.#closed) return;
      try {
        this.#parser.write(chunk);
      } catch (error) {
        if (error instanceof StreamError) this.close(error);
        else throw error;
      }
    });
  }

  /** A stanza the router sends to the component's domain. */
  deliver(stanza: XmlElement): void {
    const out = stanza.attrs.xmlns === NS_CLIENT ? stanza.with({ xmlns: undefined }) : stanza;
    this.#write(out.toString());
  }

  /** End the stream, with a stream error when given. */
  close(error?: StreamError): void {
    if (this.#closed) return;
    this.#closed = true;
    if (!this.#headerSent) {
      this.#headerSent = true;
      this.#rawWrite(header(this.#id, this.#domain));
    }
    if (error !== undefined) this.#rawWrite(error.toElement().toString());
    this.#rawWrite('</stream:stream>');
    this.#release();
    const socket = this.#conn.socket;
    socket.end();
    this.#closeSoon(socket);
    if (error !== undefined && error.condition !== 'system-shutdown') {
      this.#log('info', 'XMPP component stream closed with an error', { condition: error.condition, reason: error.text });
    }
  }

  #log(level: 'info' | 'warn', message: string, extra: Record<string, unknown> = {}): void {
    this.#hub.api?.logger[level](
      { conn: this.#conn.id, remoteAddress: this.#conn.remoteAddress, component: this.#domain, ...extra },
      message,
    );
  }

  #write(text: string): void {
    if (this.#closed) return;
    this.#rawWrite(text);
  }

  #rawWrite(text: string): void {
    const socket = this.#conn.socket;
    if (socket.destroyed) return;
    socket.write(text);
    // A component that stopped reading cannot grow the server's memory.
    if (socket.writableLength > this.#hub.settings.maxOutputBytes) {
      this.#log('warn', 'XMPP component stopped reading: disconnected');
      socket.destroy();
    }
  }

  #release(): void {
    clearTimeout(this.#timer);
    const handle = this.#handle;
    if (handle === undefined || this.#domain === undefined) return;
    this.#handle = undefined;
    handle.close();
    this.#hub.release(this.#domain, this);
    this.#log('info', 'XMPP component disconnected');
  }

  #gone(): void {
    this.#closed = true;
    this.#release();
  }

  #event(event: StreamEvent): void {
    if (event.type === 'close') {
      this.#queue = this.#queue.then(() => this.close());
      return;
    }
    if (event.type === 'open') return this.#opened(event);
    const element = event.element;
    this.#queue = this.#queue
      .then(() => this.#element(element))
      .catch((error: unknown) => {
        if (!(error instanceof StreamError))
          this.#hub.api?.logger.error({ err: error, conn: this.#conn.id }, 'XMPP component stanza failed');
        this.close(error instanceof StreamError ? error : new StreamError('internal-server-error'));
      });
  }

  #opened(event: Extract<StreamEvent, { type: 'open' }>): void {
    if (this.#headerSent) return this.close(new StreamError('unsupported-stanza-type', 'the stream is already open'));
    const to = event.attrs.to === undefined ? undefined : Jid.parse(event.attrs.to);
    this.#headerSent = true;
    this.#rawWrite(header(this.#id, to?.bare));
    if (event.xmlns !== NS_STREAMS || event.name.split(':').pop() !== 'stream') return this.close(new StreamError('invalid-namespace'));
    if (event.attrs.xmlns !== NS_COMPONENT) {
      return this.close(new StreamError('invalid-namespace', `the content namespace of a component stream is ${NS_COMPONENT}`));
    }
    if (to === undefined || !to.isBare || to.local !== '' || !this.#hub.settings.secrets.has(to.domain)) {
      this.#log('warn', 'XMPP component refused: unknown domain', { to: event.attrs.to });
      return this.close(new StreamError('host-unknown', 'no component is configured for that domain'));
    }
    this.#domain = to.domain;
  }

  async #element(element: XmlElement): Promise<void> {
    if (this.#closed) return;
    const domain = this.#domain;
    if (domain === undefined) throw new StreamError('not-authorized', 'open the stream first');
    if (this.#handle === undefined) {
      if (element.local !== 'handshake' || element.xmlns !== NS_COMPONENT) throw new StreamError('not-authorized', 'handshake first');
      return this.#handshake(domain, element.text().trim());
    }
    if (!STANZAS.has(element.local) || element.xmlns !== NS_COMPONENT) {
      throw new StreamError('unsupported-stanza-type', `<${element.name}/> is not a stanza`);
    }
    await this.#stanza(domain, asClientStanza(element));
  }

  #handshake(domain: string, digest: string): void {
    const secret = this.#hub.settings.secrets.get(domain) as string;
    const expected = Buffer.from(
      createHash('sha1')
        .update(this.#id + secret, 'utf8')
        .digest('hex'),
    );
    const given = Buffer.from(digest.toLowerCase());
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      this.#log('warn', 'XMPP component handshake failed');
      throw new StreamError('not-authorized', 'wrong handshake: hex SHA-1 of the stream id and the shared secret');
    }
    const claimed = this.#hub.claim(domain, this);
    if (claimed instanceof StreamError) {
      this.#log('warn', 'XMPP component refused: its domain is already served');
      throw claimed;
    }
    this.#handle = claimed;
    clearTimeout(this.#timer);
    this.#parser.maxStanzaSize = this.#hub.settings.maxStanzaSize;
    this.#write('<handshake/>');
    this.#log('info', 'XMPP component connected');
  }

  async #stanza(domain: string, stanza: XmlElement): Promise<void> {
    const api = this.#hub.api as ModuleApi;
    const fromText = stanza.attr('from');
    if (fromText === undefined) {
      // Prosody's COMPAT: a stanza without `from` is from the component's domain.
      stanza.setAttr('from', domain);
    } else {
      const from = Jid.parse(fromText);
      if (from === undefined || from.domain !== domain) {
        throw new StreamError('invalid-from', `a component on ${domain} sends from addresses on ${domain} only, not ${fromText}`);
      }
      stanza.setAttr('from', from.toString());
    }
    const toText = stanza.attr('to');
    const to = toText === undefined ? undefined : Jid.parse(toText);
    if (to === undefined) {
      const error = stanzaError(
        stanza,
        toText === undefined ? 'bad-request' : 'jid-malformed',
        toText === undefined ? "a component's stanzas name their addressee ('to')" : 'invalid to address',
      );
      if (stanza.attr('type') !== 'error' && !(stanza.local === 'iq' && stanza.attr('type') === 'result')) this.#write(error.toString());
      return;
    }
    stanza.setAttr('to', to.toString());
    await api.route(stanza);
  }
}
