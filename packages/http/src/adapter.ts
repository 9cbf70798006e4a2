import { createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';
import { getRequestListener, RequestError } from '@hono/node-server';
import {
  type Adapter,
  type BindingContext,
  ConfigError,
  type Connection,
  type Logger,
  PortbindError,
  type TrustCheck,
} from '@portbind/core';
import { type ClientInfo, checkProxyHeader, compileTrustProxy, type ProxyHeaderName, resolveClient } from './forwarded.js';
import { Http2Front, type Http2Options, http2Settings, sniffPreface } from './http2.js';
import { rejectUpgrade, type UpgradeHandler } from './upgrade.js';

/** Paths of the opt-in health endpoints. */
export interface HealthOptions {
  /** Liveness: 200 while the process serves. Default `/livez`. */
  live?: string;
  /** Readiness: 200 when started, 503 while draining. Default `/readyz`. */
  ready?: string;
}

export interface HttpOptions {
  /**
   * A Node request listener `(req, res) => …`: an Express app, Fastify's `routing`, Hono's
   * `getRequestListener(app.fetch)`, or your own. A thrown error or rejected promise answers 500.
   */
  handler?: RequestListener;
  /**
   * A fetch-style handler `(Request) => Response`, for code without a framework. It runs on
   * `@hono/node-server`, the maintained and fastest bridge from node:http to the fetch API.
   */
  fetch?: FetchHandler;
  /**
   * With a `fetch` handler, let `@hono/node-server` replace the global `Request` and `Response`
   * with its lightweight, compatible subclasses: about 4× faster responses. Default true.
   */
  overrideGlobalObjects?: boolean;
  /**
   * With a `fetch` handler, the largest request body in bytes, answered 413 (Content Too Large)
   * with `Connection: close`: a `Content-Length` over it before the handler runs, a chunked body
   * as soon as it grows past it (reading the body then rejects). Default 1 MiB, as Fastify's;
   * `Infinity` turns it off. (A Node `handler` such as Express limits bodies in its body parsers.)
   */
  bodyLimit?: number;
  /** Upgrade endpoints by exact path (`'/ws'`), or `'*'` for any path. Other upgrades get 404. */
  upgrades?: Record<string, UpgradeHandler>;
  /** Serve health endpoints: `true` for `/livez` and `/readyz`, or your own paths. Default off. */
  health?: boolean | HealthOptions;
  /** Time to receive a request's headers (slowloris guard), answered 408. Default 10 000 ms. */
  headersTimeoutMs?: number;
  /** Time to receive a whole request, body included, answered 408. Default 120 000 ms. */
  requestTimeoutMs?: number;
  /**
   * How long an idle keep-alive connection stays open. Default 75 000 ms: longer than the idle
   * timeouts of common load balancers (AWS ALB 60 s, nginx 60 s), so the balancer, not the app,
   * closes idle connections. Node's 5 s default makes them send 502s.
   */
  keepAliveTimeoutMs?: number;
  /** Largest request head in bytes, answered 431. Default 16 384 (Node's). */
  maxHeaderSize?: number;
  /** Requests served on one keep-alive connection before it is closed. Default 0 (no limit). */
  maxRequestsPerSocket?: number;
  /**
   * The proxies in front whose forwarding headers name the client, as in Fastify's `trustProxy`
   * and Express's `trust proxy`: addresses and CIDR ranges (`['127.0.0.1', '10.0.0.0/8', '::1']`,
   * or one comma-separated string), and Express's names `loopback`, `linklocal`, `uniquelocal`.
   * When the TCP peer (the client of a PROXY protocol header, if the binding reads them) is in the
   * list, `Forwarded` (RFC 7239), or else `X-Forwarded-For` with `X-Forwarded-Proto`, is walked
   * from the right past trusted hops: the first untrusted address is the client. Read it as the
   * fetch handler's `info.remoteAddress`, or with `clientAddress(req)` / `clientInfo(req)`.
   * Default: none (forwarding headers are ignored).
   */
  trustProxy?: readonly string[] | string;
  /**
   * With `trustProxy`: the forwarding header your proxies write. `'x-forwarded-for'` (default:
   * HAProxy's `option forwardfor`, nginx, AWS ALB; what Express and Fastify read), `'forwarded'`
   * (RFC 7239, HAProxy's `option forwarded`), or `'auto'`: `Forwarded` when present, else
   * `X-Forwarded-For` — only behind proxies that remove a client's own `Forwarded`, since a proxy
   * that writes only `X-Forwarded-For` passes it through and the client would name itself.
   */
  proxyHeader?: ProxyHeaderName;
  /**
   * Serve HTTP/2 beside HTTP/1.1 on the same port, to the same handler (through node:http2's
   * compatibility API): `h2` over TLS by ALPN, and h2c with prior knowledge (a connection that
   * opens with `PRI * HTTP/2.0`) on a plaintext port. `true` for the defaults, or limits
   * ({@link Http2Options}). Upgrades (WebSocket) stay on HTTP/1.1. Default off.
   */
  http2?: boolean | Http2Options;
}

export const httpDefaults = {
  bodyLimit: 1024 * 1024,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 120_000,
  keepAliveTimeoutMs: 75_000,
  maxHeaderSize: 16_384,
} as const;

/**
 * A fetch-style handler: the standard `Request` in, a `Response` out. `info` says who sent it:
 * the client's address behind trusted proxies (option `trustProxy`), whether it used HTTPS, and
 * the portbind connection.
 */
export type FetchHandler = (request: Request, info: ClientInfo) => Response | Promise<Response>;

/** A request from node:http, or from node:http2's compatibility API (typed as node:http's for handlers). */
type AnyRequest = IncomingMessage | Http2ServerRequest;

interface Carrier {
  readonly connection: Connection;
  readonly trusts: TrustCheck | undefined;
  readonly header: ProxyHeaderName;
}

const connections = new WeakMap<object, Carrier>();
const clients = new WeakMap<IncomingMessage, ClientInfo>();

/** What `connections` is keyed by: the socket of an HTTP/1 request, the session of an HTTP/2 one. */
function carrierOf(request: AnyRequest): Carrier | undefined {
  const session = (request as { stream?: { session?: object } }).stream?.session;
  return connections.get(session ?? request.socket);
}

/** The portbind connection (with its `context`) that carries a request. */
export function connectionOf(request: IncomingMessage): Connection | undefined {
  return carrierOf(request)?.connection;
}

/**
 * Who sent a request served by an {@link HttpAdapter}: the client behind the proxies of option
 * `trustProxy`, its port when known, HTTPS or not, and the connection. `undefined` for a request
 * that portbind did not accept. For Node listeners (Express, Fastify) and upgrade handlers.
 */
export function clientInfo(request: IncomingMessage): ClientInfo | undefined {
  let info = clients.get(request);
  if (info !== undefined) return info;
  const carrier = carrierOf(request);
  if (carrier === undefined) return undefined;
  info = resolveClient(request, carrier.connection, carrier.trusts, carrier.header);
  clients.set(request, info);
  return info;
}

/**
 * The client's address for a request: {@link clientInfo}'s `remoteAddress`, or the socket's peer
 * for a request that portbind did not accept.
 */
export function clientAddress(request: IncomingMessage): string | undefined {
  const info = clientInfo(request);
  return info === undefined ? request.socket.remoteAddress : info.remoteAddress;
}

const noop = (): void => {};

const notFound: RequestListener = (_req, res) => {
  res.statusCode = 404;
  res.setHeader('content-type', 'text/plain; charset=utf-8');
  res.end('Not Found\n');
};

/**
 * The HTTP adapter: binds `PORT` (default 5000), `http://` or `https://` with TLS.
 *
 * ```ts
 * service.bind(httpAdapter({ fetch: () => Response.json({ hello: 'world' }) }));
 * ```
 */
export class HttpAdapter implements Adapter {
  readonly name: string = 'http';
  readonly scheme: string = 'http';
  readonly secureScheme: string = 'https';
  readonly portEnv: string = 'PORT';
  /**
   * Workers: each request stands alone, so any worker may serve it (what the handler keeps in memory
   * is its own) — unless an upgrade endpoint mounted here is `local` (its connections meet in memory).
   */
  get scope(): 'shared' | 'local' {
    return Object.values(this.options.upgrades ?? {}).some((endpoint) => endpoint.scope === 'local') ? 'local' : 'shared';
  }
  readonly defaultPort: number = 5000;
  /** node:http has its own timeouts (headers, request, keep-alive), so core's idle timer stays off. */
  readonly limits = { idleTimeoutMs: 0 };
  /** For a port shared with other protocols: HTTP/1.x, and with option `http2` h2c and h2 (ALPN). */
  readonly protocols: readonly string[];
  readonly options: Readonly<HttpOptions>;
  readonly #trusts: TrustCheck | undefined;
  readonly #proxyHeader: ProxyHeaderName;
  #binding: BindingContext | undefined;
  #server: Server | undefined;
  #h2: Http2Front | undefined;
  /** Connections handed to node:http and not closed yet: the drain sweep runs while there are any. */
  #open = 0;
  /** Responses whose request arrived and that have not finished: drain turns their keep-alive off. */
  readonly #inFlight = new Set<ServerResponse>();
  #sweep: NodeJS.Timeout | undefined;

  constructor(options: HttpOptions = {}) {
    if (options.handler !== undefined && typeof options.handler !== 'function') {
      throw new ConfigError('handler', typeof options.handler, 'a Node request listener, (req, res) => …');
    }
    if (options.fetch !== undefined && typeof options.fetch !== 'function') {
      throw new ConfigError('fetch', typeof options.fetch, 'a fetch handler, (request) => Response');
    }
    for (const path of Object.keys(options.upgrades ?? {})) {
      if (path !== '*' && !path.startsWith('/'))
        throw new ConfigError('upgrades', path, "a mount path starts with '/' (or is '*' for any path)");
    }
    if (options.handler && options.fetch) {
      throw new PortbindError('PB_ERR_CONFIG', 'httpAdapter: give `handler` (a Node listener) or `fetch` (a fetch handler), not both');
    }
    this.#trusts = compileTrustProxy(options.trustProxy);
    this.#proxyHeader = checkProxyHeader(options.proxyHeader);
    // Checked now, so a bad value fails at bind() rather than at start.
    http2Settings(options.http2, this.#http1Limits(options));
    this.protocols = options.http2 === undefined || options.http2 === false ? ['http'] : ['http', 'h2c', 'h2'];
    this.options = options;
  }

  /** The underlying node:http server (after start). */
  get server(): Server | undefined {
    return this.#server;
  }

  /** The underlying node:http2 server (after start, with option `http2`). */
  get http2Server(): Http2Front['server'] | undefined {
    return this.#h2?.server;
  }

  #http1Limits(options: HttpOptions): { maxHeaderSize: number; headersTimeoutMs: number; keepAliveTimeoutMs: number } {
    return {
      maxHeaderSize: options.maxHeaderSize ?? httpDefaults.maxHeaderSize,
      headersTimeoutMs: options.headersTimeoutMs ?? httpDefaults.headersTimeoutMs,
      keepAliveTimeoutMs: options.keepAliveTimeoutMs ?? httpDefaults.keepAliveTimeoutMs,
    };
  }

  async open(binding: BindingContext): Promise<void> {
    this.#binding = binding;
    const options = this.options;
    const listener = this.#requestListener(binding);
    const server = createServer(
      {
        headersTimeout: options.headersTimeoutMs ?? httpDefaults.headersTimeoutMs,
        requestTimeout: options.requestTimeoutMs ?? httpDefaults.requestTimeoutMs,
        keepAliveTimeout: options.keepAliveTimeoutMs ?? httpDefaults.keepAliveTimeoutMs,
        maxHeaderSize: options.maxHeaderSize ?? httpDefaults.maxHeaderSize,
        // How often node:http checks the headers and request timeouts.
        connectionsCheckingInterval: Math.min(1000, options.headersTimeoutMs ?? httpDefaults.headersTimeoutMs),
      },
      listener,
    );
    server.maxRequestsPerSocket = options.maxRequestsPerSocket ?? 0;
    // An Express app and the like expect `server.timeout` semantics of node:http: none by default.
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.#upgrade(req, socket, head));
    // Core owns the listening socket and hands connections over with `emit('connection')`, so
    // node:http never sees `listen()`. Its 'listening' handler is what starts the periodic check
    // of headersTimeout and requestTimeout: start it here, or slow clients are never timed out.
    server.emit('listening');
    this.#server = server;
    const h2 = http2Settings(options.http2, this.#http1Limits(options));
    // HTTP/2 needs neither the keep-alive bookkeeping nor the Host check of HTTP/1.1 (Http2Front
    // checks the header list itself): the health endpoints and the handler.
    if (h2 !== undefined) {
      const h2Listener = this.#routedListener(binding) as unknown as (req: Http2ServerRequest, res: Http2ServerResponse) => void;
      this.#h2 = new Http2Front(h2, binding, h2Listener);
    }
    // One after the other, as before: an upgrade that fails (a configuration error, a bus it cannot reach)
    // fails the binding's start.
    for (const upgrade of Object.values(options.upgrades ?? {})) await upgrade.open?.(binding);
  }

  connection(conn: Connection): void {
    const socket = conn.socket;
    const carrier: Carrier = { connection: conn, trusts: this.#trusts, header: this.#proxyHeader };
    connections.set(socket, carrier);
    this.#open++;
    socket.once('close', () => {
      this.#open--;
      if (this.#open === 0) this.#stopSweep();
    });
    const h2 = this.#h2;
    if (h2 === undefined) {
      (this.#server as Server).emit('connection', socket);
      return;
    }
    const serveH2 = (): void => h2.serve(socket, (session) => connections.set(session, carrier));
    // TLS: ALPN decided (h2, else HTTP/1.1, as node:http2's allowHTTP1). Plaintext: the preface does.
    if (socket instanceof TLSSocket) {
      if (socket.alpnProtocol === 'h2') serveH2();
      else (this.#server as Server).emit('connection', socket);
      return;
    }
    sniffPreface(socket, this.options.headersTimeoutMs ?? httpDefaults.headersTimeoutMs, (h2c) => {
      if (h2c) serveH2();
      else (this.#server as Server).emit('connection', socket);
    });
  }

  refuse(socket: Socket): void {
    socket.write('HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n');
  }

  /**
   * From now on responses carry `Connection: close`: those in flight (headers not sent yet) and
   * those of requests still arriving on keep-alive connections. This works at the node:http level
   * (`res.shouldKeepAlive`), so it holds for frameworks that swap the response prototype (Express).
   */
  beginDrain(): void {
    for (const res of this.#inFlight) res.shouldKeepAlive = false;
  }

  /** Every connection closed after the stop: the mounted endpoints release what they hold. */
  async stopped(): Promise<void> {
    for (const upgrade of Object.values(this.options.upgrades ?? {})) await upgrade.stopped?.();
  }

  /**
   * In-flight requests finish and their responses carry `Connection: close`; idle keep-alive
   * connections close now, and busy ones as soon as their response is done; upgraded
   * connections are closed by their endpoints. Core waits until every connection has closed.
   */
  drain(signal: AbortSignal): void {
    const server = this.#server;
    if (server === undefined) return;
    this.beginDrain();
    for (const upgrade of Object.values(this.options.upgrades ?? {})) {
      try {
        const started = upgrade.drain(signal);
        if (isPromise(started)) started.then(undefined, (error: unknown) => this.#drainFailed(error));
      } catch (error) {
        this.#drainFailed(error);
      }
    }
    // A response whose headers went out just before the drain began kept its keep-alive: close
    // such connections as soon as they turn idle, until none is left or the deadline passes.
    server.closeIdleConnections();
    this.#h2?.drain();
    if (this.#open === 0 || signal.aborted) return;
    this.#sweep = setInterval(() => server.closeIdleConnections(), 50);
    this.#sweep.unref();
    signal.addEventListener('abort', () => this.#stopSweep(), { once: true });
  }

  url(base: string): string {
    return `${base}/`;
  }

  urls(base: string): string[] {
    const secure = base.startsWith(`${this.secureScheme}:`) || base.startsWith(`${this.secureScheme}+`);
    const rest = base.slice(base.indexOf(':'));
    return Object.entries(this.options.upgrades ?? {})
      .filter(([path]) => path !== '*')
      .map(([path, upgrade]) => `${secure ? upgrade.secureScheme : upgrade.scheme}${rest}${path}`);
  }

  #stopSweep(): void {
    if (this.#sweep !== undefined) clearInterval(this.#sweep);
    this.#sweep = undefined;
  }

  #drainFailed(error: unknown): void {
    this.#binding?.logger.error({ err: error }, 'upgrade endpoint drain failed');
  }

  #upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const binding = this.#binding as BindingContext;
    // Refused once the drain stopped accepting; during readinessDelayMs (readiness already 503) a new
    // peer a load balancer sent before it saw the 503 is still welcome, and gets the drain's 1001 later.
    if (!binding.accepting) {
      rejectUpgrade(socket, 503, 'Service is shutting down', { 'Retry-After': '1' });
      return;
    }
    const upgrades = this.options.upgrades ?? {};
    const path = requestPath(req.url);
    const handler = upgrades[path] ?? upgrades['*'];
    if (handler === undefined) rejectUpgrade(socket, 404, `No upgrade endpoint at ${path}`);
    else handler.handleUpgrade(req, socket, head);
  }

  #requestListener(binding: BindingContext): RequestListener {
    const routed = this.#routedListener(binding);
    const inFlight = this.#inFlight;
    return (req, res) => {
      // RFC 9112 §3.2: a request with more than one Host header gets 400 (node:http lets it through,
      // and frameworks then disagree on which one counts).
      if (hostHeaders(req.rawHeaders) > 1) {
        binding.logger.debug({ remoteAddress: req.socket.remoteAddress }, 'bad request: more than one Host header');
        res.shouldKeepAlive = false;
        return answer(res, 400, 'more than one Host header');
      }
      // Before any framework sees `res` (Express swaps its prototype): an own property of the
      // response, read by node:http when it writes the headers.
      if (binding.draining) res.shouldKeepAlive = false;
      else {
        inFlight.add(res);
        res.once('close', () => inFlight.delete(res));
      }
      routed(req, res);
    };
  }

  #routedListener(binding: BindingContext): RequestListener {
    const base = this.#userListener(binding.logger);
    const health = healthPaths(this.options.health);
    if (health === undefined) return base;
    return (req, res) => {
      const path = requestPath(req.url);
      if (path === health.live) return answer(res, 200, 'ok');
      if (path === health.ready) return binding.ready ? answer(res, 200, 'ready') : answer(res, 503, 'draining');
      base(req, res);
    };
  }

  #userListener(logger: Logger): RequestListener {
    const { handler, fetch } = this.options;
    const listener = fetch === undefined ? (handler ?? notFound) : this.#fetchListener(fetch, logger);
    return (req, res) => {
      try {
        const result: unknown = listener(req, res);
        if (isPromise(result)) result.then(undefined, (error: unknown) => fail(logger, res, error));
      } catch (error) {
        fail(logger, res, error);
      }
    };
  }

  /**
   * A fetch handler on `@hono/node-server`. A request that cannot become a `Request` (no Host on
   * HTTP/1.0, a bad Host, a backslash in the path…) is the client's fault: 400, logged at debug.
   * Bodies are limited to `bodyLimit` (413).
   */
  #fetchListener(fetch: FetchHandler, logger: Logger): RequestListener {
    const limit = this.options.bodyLimit ?? httpDefaults.bodyLimit;
    if (!(limit >= 0)) throw new ConfigError('bodyLimit', limit, 'a number of bytes ≥ 0 (Infinity turns the limit off)');
    const listener = getRequestListener(clientGoneAware(fetch), {
      overrideGlobalObjects: this.options.overrideGlobalObjects ?? true,
      errorHandler: (error) => {
        // Answered 413 already, or the client left while the handler read its body: nothing to send.
        if (causedBy(error, BodyLimitError)) return undefined;
        if (error instanceof ClientGoneError) {
          logger.debug({ err: error.cause }, 'client left before the response');
          return undefined;
        }
        if (error instanceof RequestError) {
          logger.debug({ err: error }, 'bad request');
          return badRequest();
        }
        logger.error({ err: error }, 'request handler failed');
        return new Response('Internal Server Error\n', { status: 500, headers: { 'content-type': 'text/plain; charset=utf-8' } });
      },
    });
    // The last Host header that parsed: most requests repeat it, so each is checked once.
    let goodHost: string | undefined;
    return (req, res) => {
      // @hono/node-server trusts a Host made of host-name characters without parsing it, so a
      // Host such as 1.2.3.256 would reach the handler as a `request.url` that `new URL()` rejects.
      const host = req.headers.host ?? (req.headers[':authority'] as string | undefined);
      if (host !== undefined && host !== goodHost) {
        if (!URL.canParse(`http://${host}/`)) {
          logger.debug({ host }, 'bad request: invalid Host');
          return badRequest(res);
        }
        goodHost = host;
      }
      if (limit !== Number.POSITIVE_INFINITY) {
        const declared = req.headers['content-length'];
        if (declared !== undefined && Number(declared) > limit) {
          logger.debug({ contentLength: declared, bodyLimit: limit }, 'request body over the limit');
          return tooLarge(res, limit);
        }
        // node:http makes a body end at its Content-Length; a chunked one is counted as it arrives.
        // HTTP/2 bodies have no Transfer-Encoding: without a Content-Length they are counted the same way.
        if (req.headers['transfer-encoding'] !== undefined || (req.httpVersionMajor === 2 && declared === undefined && hasH2Body(req)))
          limitChunked(req, res, limit, logger);
      }
      return listener(req, res);
    };
  }
}

/** The handler failed because the client went away (its body read was aborted): not a server error. */
class ClientGoneError extends Error {
  constructor(cause: unknown) {
    super('client left before the response', { cause });
    this.name = 'ClientGoneError';
  }
}

/** Mark a handler's rejection as {@link ClientGoneError} when it is the client's disconnect itself. */
function clientGoneAware(
  fetch: FetchHandler,
): (request: Request, env: { incoming: object; outgoing: { destroyed: boolean } }) => Response | Promise<Response> {
  return (request, env) => {
    const incoming = env.incoming as IncomingMessage;
    const result = fetch(request, clientInfo(incoming) as ClientInfo);
    if (!isPromise(result)) return result;
    return result.catch((error: unknown) => {
      const code = (error as NodeJS.ErrnoException | undefined)?.code;
      const disconnect =
        code === 'ECONNRESET' ||
        code === 'ERR_STREAM_PREMATURE_CLOSE' ||
        (error as Error | undefined)?.message === 'Client connection prematurely closed.';
      if (disconnect && (incoming.destroyed || env.outgoing.destroyed)) throw new ClientGoneError(error);
      throw error;
    }) as Promise<Response>;
  };
}

function badRequest(): Response;
function badRequest(res: ServerResponse): void;
function badRequest(res?: ServerResponse): Response | undefined {
  const body = 'Bad Request\n';
  const headers = { 'content-type': 'text/plain; charset=utf-8', connection: 'close' };
  if (res === undefined) return new Response(body, { status: 400, headers });
  res.shouldKeepAlive = false;
  res.writeHead(400, { ...headers, 'content-length': Buffer.byteLength(body) });
  res.end(body);
  return undefined;
}

/** A request body grew past `bodyLimit`: reading it rejects with this error. */
class BodyLimitError extends Error {
  readonly status = 413;
  constructor(limit: number) {
    super(`request body larger than bodyLimit ${limit} bytes`);
    this.name = 'BodyLimitError';
  }
}

function causedBy(error: unknown, type: abstract new (...args: never[]) => Error): boolean {
  let cause: unknown = error;
  for (let depth = 0; cause instanceof Error && depth < 5; depth++) {
    if (cause instanceof type) return true;
    cause = (cause as Error).cause;
  }
  return false;
}

function tooLarge(res: ServerResponse, limit: number): void {
  if (res.headersSent) return;
  const body = `Content Too Large: the request body may have at most ${limit} bytes\n`;
  res.shouldKeepAlive = false;
  res.writeHead(413, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    // HTTP/2 has no Connection header (node:http2 would drop it with a warning).
    ...(res.req.httpVersionMajor === 2 ? {} : { connection: 'close' }),
  });
  res.end(body);
}

/**
 * Count a chunked body as node:http pushes it into the request stream. Past `limit`, nothing more
 * reaches the handler — not even the end of the body, so a truncated body can never look whole —
 * the client gets 413 (if no response has started) and the request stream fails with
 * {@link BodyLimitError}, which rejects the handler's pending `request.text()` and the like.
 */
/** An HTTP/2 request whose HEADERS frame did not end the stream: a body may follow. */
function hasH2Body(req: IncomingMessage): boolean {
  return (req as { stream?: { endAfterHeaders?: boolean } }).stream?.endAfterHeaders !== true;
}

/** How many Host headers a request has (`rawHeaders` alternates names and values). */
function hostHeaders(raw: readonly string[]): number {
  let count = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    if (name.length === 4 && name.toLowerCase() === 'host') count++;
  }
  return count;
}

function limitChunked(req: IncomingMessage, res: ServerResponse, limit: number, logger: Logger): void {
  let received = 0;
  let over = false;
  const push = req.push;
  req.push = function (this: IncomingMessage, chunk: unknown, encoding?: BufferEncoding): boolean {
    if (over) return false;
    if (chunk !== null && chunk !== undefined) {
      received += (chunk as Buffer).length;
      if (received > limit) {
        over = true;
        logger.debug({ received, bodyLimit: limit }, 'request body over the limit');
        const fail = (): void => {
          // The handler's pending read rejects with the error; a handler that is not reading (or,
          // over HTTP/2, the stream node:http2 passes the error on to) must not make it uncaught.
          req.on('error', noop);
          (req as { stream?: Duplex }).stream?.on('error', noop);
          req.destroy(new BodyLimitError(limit));
        };
        if (res.headersSent) fail();
        else {
          tooLarge(res, limit);
          res.once('finish', fail);
        }
        return false;
      }
    }
    return push.call(this, chunk, encoding);
  };
}

/** Create an {@link HttpAdapter}. */
export function httpAdapter(options: HttpOptions = {}): HttpAdapter {
  return new HttpAdapter(options);
}

function fail(logger: Logger, res: ServerResponse, error: unknown): void {
  logger.error({ err: error, method: res.req.method, url: res.req.url }, 'request handler failed');
  if (res.headersSent) {
    // Too late for a status: cut the response so the client sees it is incomplete.
    res.destroy();
    return;
  }
  for (const name of res.getHeaderNames()) res.removeHeader(name);
  answer(res, 500, 'Internal Server Error');
}

function answer(res: ServerResponse, status: number, body: string): void {
  res.statusCode = status;
  res.setHeader('content-type', 'text/plain; charset=utf-8');
  res.setHeader('cache-control', 'no-store');
  res.end(`${body}\n`);
}

function healthPaths(option: HttpOptions['health']): Required<HealthOptions> | undefined {
  if (option === undefined || option === false) return undefined;
  const paths = option === true ? {} : option;
  return { live: paths.live ?? '/livez', ready: paths.ready ?? '/readyz' };
}

/** The path of a request URL, without the query string. */
export function requestPath(url: string | undefined): string {
  if (url === undefined) return '/';
  const query = url.indexOf('?');
  return query === -1 ? url : url.slice(0, query);
}

function isPromise(value: unknown): value is Promise<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as Promise<unknown>).then === 'function';
}
