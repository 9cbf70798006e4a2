import { type AddressInfo, createServer, type Server, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { type SecureContext, type TLSSocket, Server as TlsServer } from 'node:tls';
import type { Adapter, BindingContext, ConnectionLimits } from './adapter.js';
import type { ListenOptions, ListenSpec } from './config.js';
import { Connection } from './connection.js';
import { BindError, ConfigError, PortbindError, StateError } from './errors.js';
import type { Logger } from './logger.js';
import {
  applyProxyHeader,
  compileProxyProtocol,
  type HeaderOutcome,
  type ProxyHeader,
  type ProxyProtocolOptions,
  readProxyHeader,
  type TrustCheck,
} from './proxy-protocol.js';
import { loadTls, secureContextFor, type TlsOptions } from './tls.js';
import type { SharedPort } from './unify.js';
import { listenUnix, type OwnedSocket, removeOwnedSocket } from './unix.js';

/** How to bind an adapter: where it listens, TLS, and connection limits. */
export interface BindOptions extends ListenOptions, Partial<ConnectionLimits> {
  /** Name in logs and errors. Default: the adapter's name. Must be unique in a service. */
  name?: string;
  /** Serve TLS on this binding (`https://`, `wss://`, `rediss://`). */
  tls?: TlsOptions;
  /** Listen backlog, as `net.Server.listen`. */
  backlog?: number;
  /** TLS handshake timeout in ms. Default 10 s. */
  handshakeTimeoutMs?: number;
  /**
   * After a polite close (drain, a protocol error, QUIT), how long a peer gets to close its side
   * before the socket is destroyed. Default 2000 ms.
   */
  closeWaitMs?: number;
  /**
   * Read a PROXY protocol header (v1 or v2, as HAProxy and AWS NLB send it) from the proxies in
   * `trusted`, before TLS and before the adapter: the client it names becomes the connection's
   * address for every adapter. A trusted peer without a valid header, and a PROXY header from any
   * other address, are refused. Off by default.
   */
  proxyProtocol?: ProxyProtocolOptions;
  /**
   * On a port shared with other bindings: connections whose protocol no binding on the port claims
   * (garbage, an unknown protocol) come to this binding instead of being closed. One per port.
   */
  fallback?: boolean;
  /**
   * On a port shared with other bindings, with `tls`: TLS connections whose SNI (the host name the
   * client asked for) is one of these come to this binding when their ALPN list does not decide
   * (no ALPN, or none served on the port), and its certificate answers them. Case-insensitive.
   */
  serverNames?: readonly string[];
  /**
   * Overrides the adapter's {@link Adapter.scope} for workers: `shared` when you know connections
   * on different workers need not meet (a WebSocket app with no broadcast), `local` to keep a
   * binding out of workers.
   */
  scope?: 'shared' | 'local';
}

interface ServiceView {
  readonly draining: boolean;
  readonly accepting: boolean;
  readonly ready: boolean;
}

const defaultLimits: ConnectionLimits = { maxConnections: 0, idleTimeoutMs: 0 };

/** One adapter listening on one address. Created by `PortService.bind()`. */
export class Binding {
  readonly name: string;
  readonly adapter: Adapter;
  readonly options: Readonly<BindOptions>;
  /** The limits asked for (bind options, else the adapter's defaults). */
  readonly requestedLimits: ConnectionLimits;
  #maxConnections: number;
  /** True while connections are being refused (a warning is logged once per such episode). */
  #refusing = false;
  #lastAcceptError = 0;
  #logger: Logger;
  #service: ServiceView;
  #spec: ListenSpec | undefined;
  #server: Server | undefined;
  #tlsServer: TlsServer | undefined;
  #secureContext: SecureContext | undefined;
  #address: AddressInfo | string | undefined;
  /** Every accepted socket (the TCP socket, under TLS too): counted for limits, destroyed at the deadline. */
  readonly #sockets = new Set<Socket>();
  /** The 'close' listener of all this binding's sockets: no closure and no once() wrapper per connection. */
  readonly #untrack = untrackFrom(this.#sockets);
  /** Sockets whose PROXY header (or first bytes) is still awaited, with the function that stops reading it. */
  readonly #awaitingHeader = new Map<Socket, () => void>();
  /** Compiled `proxyProtocol.trusted`, when the binding reads PROXY headers. */
  readonly #trusts: TrustCheck | undefined;
  readonly #headerTimeoutMs: number;
  /** TLS bindings: headers by the TCP peer (`address|port`), for the TLS socket made from that TCP socket. */
  readonly #headersByPeer = new Map<string, ProxyHeader>();
  /** True while PROXY refusals are logged at debug (a warning once per episode). */
  #proxyRefusing = false;
  #closed: Promise<void> | undefined;
  /** The listener this binding shares with others (same port), if any. */
  #shared: SharedPort | undefined;
  /** TLS sockets whose protocol is decided on their first decrypted bytes (no ALPN said it). */
  readonly #reclassify = new WeakSet<Socket>();

  constructor(adapter: Adapter, options: BindOptions, logger: Logger, service: ServiceView) {
    this.adapter = adapter;
    this.options = options;
    this.name = options.name ?? adapter.name;
    checkBindOptions(options);
    if (options.proxyProtocol !== undefined) {
      const compiled = compileProxyProtocol(options.proxyProtocol);
      this.#trusts = compiled.trusts;
      this.#headerTimeoutMs = compiled.timeoutMs ?? (options.handshakeTimeoutMs || 10_000);
    } else {
      this.#headerTimeoutMs = 0;
    }
    this.requestedLimits = {
      maxConnections: options.maxConnections ?? adapter.limits?.maxConnections ?? defaultLimits.maxConnections,
      idleTimeoutMs: options.idleTimeoutMs ?? adapter.limits?.idleTimeoutMs ?? defaultLimits.idleTimeoutMs,
    };
    this.#maxConnections = this.requestedLimits.maxConnections;
    this.#logger = logger.child({ binding: this.name });
    this.#service = service;
  }

  /** True when core terminates TLS before the adapter sees a connection (not for STARTTLS adapters). */
  get secure(): boolean {
    return this.options.tls !== undefined && this.adapter.tlsMode !== 'starttls';
  }

  /** The resolved listen address (after `start()` resolved the config). */
  get spec(): ListenSpec | undefined {
    return this.#spec;
  }

  /** The bound address: `{ address, family, port }`, or the Unix socket path. */
  get address(): AddressInfo | string {
    if (this.#address === undefined) throw new StateError(`binding ${this.name} is not listening: read its address after start()`);
    return this.#address;
  }

  /** The base URL in the adapter's scheme, e.g. `redis://127.0.0.1:6379`. */
  get url(): string {
    const base = this.#baseUrl();
    return this.adapter.url ? this.adapter.url(base) : base;
  }

  /** Every URL the binding serves: its main URL and those of mounted endpoints. */
  get urls(): string[] {
    return [this.url, ...(this.adapter.urls?.(this.#baseUrl()) ?? [])];
  }

  /**
   * The limits in force: as asked, except that `maxConnections` is lowered at start to what the
   * process can open (its open-file limit, `ulimit -n`, shared among the bindings).
   */
  get limits(): ConnectionLimits {
    return { maxConnections: this.#maxConnections, idleTimeoutMs: this.requestedLimits.idleTimeoutMs };
  }

  /** @internal Set by the service at start from the open-file budget (0: no limit). */
  setMaxConnections(maxConnections: number): void {
    this.#maxConnections = maxConnections;
  }

  /** Connections open now. */
  get connectionCount(): number {
    return this.#sockets.size;
  }

  /** @internal Set by the service once the config is resolved. */
  setSpec(spec: ListenSpec): void {
    this.#spec = spec;
  }

  /** Names of the other bindings on this binding's listener (a shared port), else empty. */
  get sharedWith(): string[] {
    return this.#shared?.members.filter((member) => member !== this).map((member) => member.name) ?? [];
  }

  /** @internal TLS material and `adapter.open()`: everything before listening. */
  async prepare(): Promise<void> {
    const spec = this.#spec;
    if (spec === undefined) throw new Error('prepare() before setSpec()');
    if (spec.kind === 'unix' && this.#trusts !== undefined && this.secure) {
      // The TLS socket is matched to its header by the TCP peer's address and port; Unix peers have none.
      throw new ConfigError(
        'proxyProtocol',
        this.options.proxyProtocol,
        `binding ${this.name} listens on a Unix socket with TLS: PROXY headers are read there only without TLS (terminate TLS at the proxy, or listen on TCP)`,
      );
    }
    if (this.options.tls !== undefined) await this.#setupTls(this.options.tls);
    await this.adapter.open(this.#context());
  }

  /** @internal Before `prepare()`: this binding serves on a listener shared with other bindings. */
  joinShared(shared: SharedPort): void {
    this.#shared = shared;
  }

  /** @internal The shared listener listens: its address, and when it has closed. */
  sharedListening(address: AddressInfo | string, closed: Promise<void>): void {
    this.#address = address;
    this.#closed = closed;
  }

  /** @internal The TLS server of this binding (made from bind option `tls`), for a shared port's TLS connections. */
  get tlsServer(): TlsServer | undefined {
    return this.#tlsServer;
  }

  /** @internal */
  async listen(): Promise<void> {
    const spec = this.#spec;
    if (spec === undefined) throw new Error('listen() before setSpec()');
    await this.prepare();

    const server = createServer({ noDelay: true }, (socket) => this.#accept(socket));
    this.#server = server;
    let owned: OwnedSocket | undefined;
    try {
      if (spec.kind === 'unix') {
        const variable = spec.source.startsWith('env ') ? spec.source.slice('env '.length) : 'path';
        owned = await listenUnix(
          server,
          spec.path,
          (path) => listenOnce(server, { kind: 'unix', path, source: spec.source }, this.options.backlog),
          {
            binding: this.name,
            variable,
          },
        );
      } else {
        await listenOnce(server, spec, this.options.backlog);
      }
    } catch (error) {
      this.#server = undefined;
      if (error instanceof PortbindError) throw error;
      throw new BindError(this.name, describeSpec(spec), error);
    }
    this.#address = spec.kind === 'unix' ? spec.path : (server.address() ?? undefined);
    // After listening, an accept() can still fail: EMFILE/ENFILE when the process or the system is
    // out of descriptors (libuv then accepts and closes the peer). Log it, never crash.
    server.on('error', (error: NodeJS.ErrnoException) => this.#acceptFailed(error));
    this.#closed = new Promise((resolve) =>
      server.once('close', () => {
        // Remove the socket file this binding made, and only that: never what replaced it since.
        if (owned === undefined) resolve();
        else void removeOwnedSocket(owned).then(resolve);
      }),
    );
  }

  /** @internal Stop accepting. Open connections stay. */
  stopAccepting(): void {
    this.#shared?.stopAccepting();
    this.#server?.close();
    // A connection still sending its PROXY header has given the adapter nothing to finish.
    for (const [socket, cancel] of this.#awaitingHeader) {
      cancel();
      socket.destroy();
    }
    this.#awaitingHeader.clear();
  }

  /** @internal Resolves when every connection has closed, or when `signal` aborts. */
  async connectionsClosed(signal: AbortSignal): Promise<void> {
    while (this.#sockets.size > 0 && !signal.aborted) {
      const [first] = this.#sockets;
      if (first === undefined) break;
      await new Promise<void>((resolve) => {
        const done = (): void => {
          signal.removeEventListener('abort', done);
          first.off('close', done);
          resolve();
        };
        // Every socket in the set has yet to emit 'close' (it is removed on 'close').
        first.once('close', done);
        signal.addEventListener('abort', done, { once: true });
      });
    }
  }

  /** @internal Destroy what is still open; returns how many. */
  destroyAll(): number {
    const count = this.#sockets.size;
    for (const socket of this.#sockets) socket.destroy();
    return count;
  }

  /** @internal Resolves once the server has closed (after every connection ended). */
  async closed(): Promise<void> {
    await this.#closed;
  }

  /** @internal Reload TLS files and swap the context for new connections. */
  async reloadTls(): Promise<void> {
    if (this.options.tls === undefined) return;
    await this.#setupTls(this.options.tls);
  }

  #context(): BindingContext {
    const service = this.#service;
    const closeWaitMs = this.options.closeWaitMs ?? 2000;
    return {
      closeWaitMs,
      closeSoon: (socket: Duplex) => closeSoon(socket, closeWaitMs),
      name: this.name,
      logger: this.#logger,
      secure: this.secure,
      get draining() {
        return service.draining;
      },
      get accepting() {
        return service.accepting;
      },
      get ready() {
        return service.ready;
      },
      secureContext: () => this.#secureContext,
    };
  }

  async #setupTls(options: TlsOptions): Promise<void> {
    const loaded = await loadTls(options, this.name);
    this.#secureContext = secureContextFor(options, loaded, this.name);
    if (this.#tlsServer !== undefined) {
      this.#tlsServer.setSecureContext(loaded);
      return;
    }
    // A TLS server that never listens: core's TCP server feeds it sockets, and it hands back
    // each one once the handshake is done. Node's TLS server brings ALPN, SNI, sessions and the
    // handshake timeout; core keeps one TCP listener for every kind of binding.
    // On a shared port, the protocol a ClientHello's ALPN chose is the one negotiated (unless the
    // user's TLS options choose ALPN themselves); a list naming nothing served here gets TLS's
    // no_application_protocol alert (RFC 7301 §3.2).
    const shared = this.#shared;
    const userAlpn = options.ALPNProtocols !== undefined || options.ALPNCallback !== undefined;
    const alpn = userAlpn
      ? {}
      : shared !== undefined
        ? { ALPNCallback: ({ protocols }: { protocols: string[] }) => shared.selectAlpn(protocols) }
        : // A binding of its own whose adapter speaks HTTP/2 (httpAdapter({ http2 })): offer h2 beside http/1.1.
          (this.adapter.protocols ?? []).includes('h2')
          ? { ALPNProtocols: ['h2', 'http/1.1'] }
          : {};
    const tlsServer = new TlsServer({ handshakeTimeout: this.options.handshakeTimeoutMs ?? 10_000, ...alpn, ...loaded });
    tlsServer.on('secureConnection', (socket: TLSSocket) => this.#secureConnection(socket));
    tlsServer.on('tlsClientError', (error, socket) => {
      this.#logger.debug({ err: error, remoteAddress: socket.remoteAddress }, 'TLS handshake failed');
      // With a listener on 'tlsClientError', Node leaves the socket open: close it here.
      socket.destroy();
    });
    this.#tlsServer = tlsServer;
  }

  #accept(socket: Socket): void {
    if (this.#refused(socket, !this.secure)) return;
    this.#track(socket);
    if (this.#trusts !== undefined) this.#awaitHeader(socket, this.#trusts);
    else this.#handOver(socket);
  }

  /**
   * @internal A connection a shared listener classified for this binding, with the bytes read so far
   * back in `socket` (and its PROXY header, if any, applied). `tls`: it starts with a ClientHello,
   * for this binding's TLS server; `reclassify`: no ALPN chose a binding, so the first decrypted
   * bytes decide which binding serves it.
   */
  adopt(socket: Socket, route: { tls: boolean; reclassify: boolean; header: ProxyHeader | undefined }): void {
    if (this.#refused(socket, !route.tls)) return;
    this.#track(socket);
    if (!route.tls) {
      this.#serve(socket);
      return;
    }
    const header = route.header;
    if (header !== undefined) {
      const key = peerKey(header.proxyAddress, header.proxyPort);
      this.#headersByPeer.set(key, header);
      socket.once('close', () => this.#headersByPeer.delete(key));
    }
    if (route.reclassify) this.#reclassify.add(socket);
    (this.#tlsServer as TlsServer).emit('connection', socket);
  }

  /**
   * @internal A TLS connection whose handshake `from` made and whose decrypted bytes chose this
   * binding: it counts here from now on.
   */
  serveSecure(socket: TLSSocket, from: Binding): void {
    const raw = parentOf(socket);
    if (from !== this && raw !== undefined && from.#sockets.delete(raw)) this.#track(raw);
    this.#serve(socket);
  }

  #track(socket: Socket): void {
    this.#sockets.add(socket);
    socket.on('close', this.#untrack); // 'close' comes once
  }

  /** Over `maxConnections`: refuse (in the protocol's words when `speak`), close, and return true. */
  #refused(socket: Socket, speak: boolean): boolean {
    const maxConnections = this.#maxConnections;
    if (maxConnections > 0 && this.#sockets.size >= maxConnections) {
      const fields = { remoteAddress: socket.remoteAddress, maxConnections, open: this.#sockets.size };
      if (this.#refusing) {
        this.#logger.debug(fields, 'connection refused: max connections');
      } else {
        // Once per episode: a flood of refusals must not become a flood of log lines.
        this.#refusing = true;
        const lowered = maxConnections < this.requestedLimits.maxConnections || this.requestedLimits.maxConnections === 0;
        this.#logger.warn(
          fields,
          lowered
            ? `connection refused: ${maxConnections} connections open, the most this binding may hold under the open-file limit (ulimit -n); more are refused until some close`
            : `connection refused: maxConnections ${maxConnections} reached; more are refused until some close`,
        );
      }
      socket.on('error', () => {});
      if (speak) {
        try {
          this.adapter.refuse?.(socket, 'max-connections');
        } catch (error) {
          this.#logger.error({ err: error }, 'adapter refuse failed');
        }
      }
      socket.end();
      socket.destroySoon();
      closeSoon(socket, this.options.closeWaitMs ?? 2000);
      return true;
    }
    if (this.#refusing && this.#sockets.size < maxConnections) this.#refusing = false;
    return false;
  }

  /** To TLS termination, or straight to the adapter. */
  #handOver(socket: Socket): void {
    if (this.#tlsServer !== undefined && this.secure) {
      this.#tlsServer.emit('connection', socket);
    } else {
      this.#serve(socket);
    }
  }

  /** PROXY protocol: read the header (trusted peer) or the first bytes (any other), then hand over. */
  #awaitHeader(socket: Socket, trusts: TrustCheck): void {
    const address = socket.remoteAddress;
    if (address === undefined && this.#spec?.kind !== 'unix') {
      // A TCP peer with no address has already reset the connection (getpeername failed).
      this.#logger.debug({}, 'connection gone before its PROXY header');
      socket.on('error', () => {});
      socket.destroy();
      return;
    }
    const trusted = trusts(address);
    const cancel = readProxyHeader(socket, { trusted, timeoutMs: this.#headerTimeoutMs }, (outcome) => {
      this.#awaitingHeader.delete(socket);
      if (outcome.kind === 'refused') {
        this.#refuseProxied(socket, outcome);
        return;
      }
      this.#proxyRefusing = false;
      if (outcome.header !== undefined) {
        applyProxyHeader(socket, outcome.header);
        if (this.secure) {
          // The TLS socket node:tls makes reports the TCP peer: find the header again by that peer.
          const key = peerKey(outcome.header.proxyAddress, outcome.header.proxyPort);
          this.#headersByPeer.set(key, outcome.header);
          socket.once('close', () => this.#headersByPeer.delete(key));
        }
      }
      this.#handOver(socket);
    });
    this.#awaitingHeader.set(socket, cancel);
    socket.once('close', () => this.#awaitingHeader.delete(socket));
  }

  #refuseProxied(socket: Socket, outcome: Extract<HeaderOutcome, { kind: 'refused' }>): void {
    const fields = { remoteAddress: socket.remoteAddress, remotePort: socket.remotePort, problem: outcome.problem };
    if (outcome.problem === 'closed') {
      this.#logger.debug(fields, 'connection closed before its PROXY header');
    } else if (this.#proxyRefusing) {
      this.#logger.debug(fields, `connection refused: ${outcome.reason}`);
    } else {
      // Once per episode (until a connection gets through): a flood of bad headers is one line.
      this.#proxyRefusing = true;
      this.#logger.warn(fields, `connection refused: ${outcome.reason}; more such refusals are logged at debug level`);
    }
    socket.on('error', () => {});
    socket.destroy();
  }

  #secureConnection(socket: TLSSocket): void {
    if (this.#trusts !== undefined) {
      const key = peerKey(socket.remoteAddress, socket.remotePort);
      const header = this.#headersByPeer.get(key);
      if (header === undefined && (socket.remoteAddress === undefined || this.#trusts(socket.remoteAddress))) {
        // A trusted peer always has a header by now; its TLS socket must never pass as the proxy itself.
        this.#logger.debug({ remoteAddress: socket.remoteAddress }, 'TLS connection without its PROXY header record');
        socket.destroy();
        return;
      }
      if (header !== undefined) applyProxyHeader(socket, header);
    }
    const raw = parentOf(socket);
    if (this.#shared !== undefined && raw !== undefined && this.#reclassify.has(raw)) {
      this.#shared.classifySecure(this, socket);
      return;
    }
    this.#serve(socket);
  }

  #acceptFailed(error: NodeJS.ErrnoException): void {
    if (error.code === 'EMFILE' || error.code === 'ENFILE') {
      const now = Date.now();
      const fields = { err: error, open: this.#sockets.size, maxConnections: this.#maxConnections };
      // At most one warning a minute: under a flood this fires for every connection attempt.
      if (now - this.#lastAcceptError > 60_000) {
        this.#lastAcceptError = now;
        this.#logger.warn(
          fields,
          `cannot accept connections: ${error.code === 'EMFILE' ? 'the process' : 'the system'} is out of file descriptors; peers are closed unanswered until some close (raise ulimit -n, or lower maxConnections)`,
        );
      } else {
        this.#logger.debug(fields, 'accept failed: out of file descriptors');
      }
      return;
    }
    this.#logger.error({ err: error }, 'listener error');
  }

  #serve(socket: Socket): void {
    const conn = new Connection(this.name, socket);
    const { idleTimeoutMs } = this.limits;
    if (idleTimeoutMs > 0) {
      socket.setTimeout(idleTimeoutMs);
      socket.on('timeout', () => {
        this.#logger.debug({ conn: conn.id }, 'idle timeout');
        if (this.adapter.idle) this.adapter.idle(conn);
        else socket.destroy();
      });
    }
    this.adapter.connection(conn);
  }

  #baseUrl(): string {
    const scheme = this.secure ? this.adapter.secureScheme : this.adapter.scheme;
    const address = this.address;
    if (typeof address === 'string') return `${scheme}+unix://${encodeURIComponent(address)}`;
    return `${scheme}://${urlHost(this.#spec, address)}:${address.port}`;
  }
}

function untrackFrom(sockets: Set<Socket>): (this: Socket) => void {
  return function untrack(this: Socket): void {
    sockets.delete(this);
  };
}

/** Bind options a peer never controls but a typo can: wrong values fail at `bind()`, not at the first client. */
function checkBindOptions(options: BindOptions): void {
  if (
    options.serverNames !== undefined &&
    !(Array.isArray(options.serverNames) && options.serverNames.every((name) => typeof name === 'string' && name !== ''))
  ) {
    throw new ConfigError('serverNames', options.serverNames, 'a list of host names');
  }
  if (options.name !== undefined && (typeof options.name !== 'string' || options.name.trim() === '')) {
    throw new ConfigError('name', options.name, 'a binding name is a non-empty string');
  }
  const counts: Array<[string, number | undefined]> = [
    ['maxConnections', options.maxConnections],
    ['idleTimeoutMs', options.idleTimeoutMs],
    ['closeWaitMs', options.closeWaitMs],
    ['handshakeTimeoutMs', options.handshakeTimeoutMs],
    ['backlog', options.backlog],
  ];
  for (const [option, value] of counts) {
    if (value !== undefined && !(typeof value === 'number' && Number.isInteger(value) && value >= 0)) {
      throw new ConfigError(option, value, 'an integer ≥ 0 (0 = no limit / never, where that applies)');
    }
  }
}

/** The TCP socket under a TLS socket (node:tls keeps it as `_parent`). */
function parentOf(socket: TLSSocket): Socket | undefined {
  const parent: unknown = (socket as unknown as { _parent?: unknown })._parent;
  return parent instanceof Socket ? parent : undefined;
}

function peerKey(address: string | undefined, port: number | undefined): string {
  return `${address ?? 'unix'}|${port ?? 0}`;
}

const closing = new WeakSet<Duplex>();

/** Destroy `socket` unless it closes by itself within `ms`. */
export function closeSoon(socket: Duplex, ms: number): void {
  if (socket.destroyed || closing.has(socket)) return;
  closing.add(socket);
  const timer = setTimeout(() => socket.destroy(), ms);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
}

function urlHost(spec: ListenSpec | undefined, address: AddressInfo): string {
  const asked = spec?.kind === 'tcp' ? spec.host : undefined;
  // Bound to every interface: "localhost" is the address a developer opens.
  if (asked === undefined || asked === '0.0.0.0' || asked === '::') return 'localhost';
  const host = address.address;
  return host.includes(':') ? `[${host}]` : host;
}

/** `host:port`, `[::1]:port`, `*:port` (all interfaces), or the socket path. */
export function describeSpec(spec: ListenSpec): string {
  if (spec.kind === 'unix') return spec.path;
  const host = spec.host === undefined ? '*' : spec.host.includes(':') ? `[${spec.host}]` : spec.host;
  return `${host}:${spec.port}`;
}

export function listenOnce(server: Server, spec: ListenSpec, backlog: number | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error): void => reject(error);
    server.once('error', onError);
    const onListening = (): void => {
      server.off('error', onError);
      resolve();
    };
    if (spec.kind === 'unix') server.listen({ path: spec.path, backlog }, onListening);
    else server.listen({ port: spec.port, host: spec.host, backlog }, onListening);
  });
}
