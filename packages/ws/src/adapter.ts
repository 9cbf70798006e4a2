import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { BindingContext, Bus, BusEvents, Logger } from '@portbind/core';
import { ConfigError, silentLogger } from '@portbind/core';
import { HttpAdapter, rejectUpgrade, requestPath, UpgradeError, type UpgradeHandler } from '@portbind/http';
import { type RawData, WebSocketServer } from 'ws';
import { WsConnection } from './connection.js';
import { Fanout } from './fanout.js';

export interface WsHandlers<Context> {
  /** A peer connected. */
  open?(conn: WsConnection<Context>): void | Promise<void>;
  /** A message arrived: a Buffer (or Buffer[] / ArrayBuffer per `ws`'s binaryType) and whether it is binary. */
  message?(conn: WsConnection<Context>, data: RawData, isBinary: boolean): void | Promise<void>;
  /** The peer is gone: code and reason of the close. */
  close?(conn: WsConnection<Context>, code: number, reason: Buffer): void | Promise<void>;
}

export interface WsOptions<Context = undefined> extends WsHandlers<Context> {
  /**
   * Authenticate or inspect the upgrade request before the handshake. Return the per-connection
   * context; throw `new UpgradeError(401)` (or any status) to refuse with that HTTP status.
   */
  upgrade?(request: IncomingMessage): Context | Promise<Context>;
  /** Subprotocols the server speaks, in order of preference (e.g. `['xmpp']`). */
  protocols?: readonly string[];
  /** Refuse (400) a client that offers none of `protocols`. Default false: accept without a subprotocol. */
  requireProtocol?: boolean;
  /** Largest message accepted, in bytes; a bigger one closes the connection with 1009. Default 1 MiB (ws: 100 MiB). */
  maxPayload?: number;
  /** Ping every peer this often and close those that did not answer the last ping. Default 30 000 ms; 0 = off. */
  heartbeatIntervalMs?: number;
  /** `send()` returns false past this many buffered bytes. Default 1 MiB. */
  highWaterMark?: number;
  /** A peer with more than this many bytes queued (it stopped reading) is disconnected. Default 16 MiB. */
  maxBufferedBytes?: number;
  /** Path to serve on its own port. Default: any path. (When mounted, the mount path applies.) */
  path?: string;
  /**
   * The bus between the service's processes (`@portbind/core`'s `Bus`: `redisBus()` from
   * `@portbind/bus-redis` on a real Redis, `memoryBus()` in one process): `broadcast()` and
   * `publish()` then reach the peers of every process that shares it, with the same slow-peer rule.
   * The endpoint subscribes while it runs and unsubscribes when it stops; closing the bus is yours.
   */
  bus?: Bus;
  /** What tells this endpoint's messages from other endpoints' on the bus. Default `'ws'`: give each endpoint of a service its own. */
  busName?: string;
  /**
   * Messages from other processes may have been lost (the bus lost its connection, a publish
   * failed): tell your peers in your protocol's terms. Default: a warning in the log.
   */
  onLost?: (info: BusEvents['lost']) => void;
  /** Channels one peer may be in at once (`join()` refuses more). Default 100. */
  maxChannelsPerPeer?: number;
  /** Longest channel name, in UTF-8 bytes (`join()` refuses longer ones). Default 256. */
  maxChannelNameLength?: number;
  /**
   * Workers (`WORKERS`, core's `Adapter.scope`): by default `local` without a bus (`broadcast()` and
   * channels reach this process's peers only) and `shared` with one; `shared` also suits an app whose
   * connections never need to meet (request/response over WebSocket).
   */
  scope?: 'shared' | 'local';
  /** Compress messages (permessage-deflate). Default false: it costs CPU and memory per connection. */
  perMessageDeflate?: boolean;
  /**
   * Called when the service drains, before every peer is closed with 1001: say goodbye in your
   * own protocol first (XMPP over WebSocket sends `<system-shutdown/>`).
   */
  onDrain?: () => void;
}

export const wsDefaults = {
  maxPayload: 1024 * 1024,
  heartbeatIntervalMs: 30_000,
  highWaterMark: 1024 * 1024,
  maxBufferedBytes: 16 * 1024 * 1024,
} as const;

/**
 * A WebSocket endpoint on `ws`. Mount it on an HTTP binding
 * (`httpAdapter({ upgrades: { '/ws': endpoint } })`), or bind it on a port of its own
 * (`service.bind(endpoint.standalone())`, `PORT`-style variable `WS_PORT`).
 */
export class WsEndpoint<Context = undefined> implements UpgradeHandler {
  readonly scheme = 'ws';
  readonly secureScheme = 'wss';
  /** Workers: `local` unless the endpoint has a bus (option `scope` overrides). */
  readonly scope: 'shared' | 'local';
  readonly options: Readonly<WsOptions<Context>>;
  /** Connected peers. */
  readonly clients = new Set<WsConnection<Context>>();
  readonly #server: WebSocketServer;
  #logger: Logger = silentLogger;
  #binding: BindingContext | undefined;
  #heartbeat: NodeJS.Timeout | undefined;
  /** Each peer's upgraded socket, for `closeSoon()` after the close frame. */
  readonly #sockets = new WeakMap<WsConnection<Context>, Duplex>();
  readonly #fanout: Fanout<Context>;

  constructor(options: WsOptions<Context> = {}) {
    this.scope = options.scope ?? (options.bus === undefined ? 'local' : 'shared');
    for (const option of [
      'maxPayload',
      'heartbeatIntervalMs',
      'highWaterMark',
      'maxBufferedBytes',
      'maxChannelsPerPeer',
      'maxChannelNameLength',
    ] as const) {
      const value = options[option];
      if (value !== undefined && !(typeof value === 'number' && Number.isInteger(value) && value >= 0)) {
        throw new ConfigError(option, value, 'an integer ≥ 0');
      }
    }
    this.options = options;
    const busName = options.busName ?? 'ws';
    if (typeof busName !== 'string' || busName.length === 0 || /[^\x21-\x7e]/.test(busName)) {
      throw new ConfigError('busName', busName, 'a non-empty name of printable ASCII characters');
    }
    const highWaterMark = options.highWaterMark ?? wsDefaults.highWaterMark;
    this.#fanout = new Fanout({
      bus: options.bus,
      busName,
      maxChannelsPerPeer: options.maxChannelsPerPeer ?? 100,
      maxChannelNameLength: options.maxChannelNameLength ?? 256,
      peers: () => this.clients,
      onLost: options.onLost,
      deliver: (peers, data) => {
        let sent = 0;
        for (const client of peers) {
          if (client.open && client.bufferedAmount <= highWaterMark) {
            client.send(data);
            sent++;
          }
        }
        return sent;
      },
    });
    const supported = options.protocols ?? [];
    this.#server = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      maxPayload: options.maxPayload ?? wsDefaults.maxPayload,
      perMessageDeflate: options.perMessageDeflate ?? false,
      // Pick the first of our protocols that the client offers (RFC 6455 §4.2.2).
      handleProtocols: (offered) => supported.find((protocol) => offered.has(protocol)) ?? false,
    });
  }

  open(binding: BindingContext): void {
    this.#binding = binding;
    this.#logger = binding.logger.child({ endpoint: 'ws' });
    this.#fanout.open(this.#logger);
    const interval = this.options.heartbeatIntervalMs ?? wsDefaults.heartbeatIntervalMs;
    if (interval > 0 && this.#heartbeat === undefined) {
      this.#heartbeat = setInterval(() => this.#beat(), interval);
      this.#heartbeat.unref();
    }
  }

  /**
   * Send to every open peer; a peer past its high-water mark is skipped for this message. With a
   * bus, the peers of every other process get it too. Returns how many of this process's peers got it.
   */
  broadcast(data: string | Buffer): number {
    return this.#fanout.broadcast(data);
  }

  /**
   * Add a peer to a named channel (a room, a topic). False when refused: the peer is in
   * `maxChannelsPerPeer` channels already, the name is empty or longer than `maxChannelNameLength`,
   * or the peer is closed. A peer leaves every channel when it closes.
   */
  join(conn: WsConnection<Context>, channel: string): boolean {
    return this.#fanout.join(conn, channel);
  }

  /** Take a peer out of a channel; false when it was not in it. */
  leave(conn: WsConnection<Context>, channel: string): boolean {
    return this.#fanout.leave(conn, channel);
  }

  /**
   * Send to the channel's peers, as `broadcast()` (same slow-peer rule); with a bus, to its peers on
   * every process. Returns how many of this process's peers got it.
   */
  publish(channel: string, data: string | Buffer): number {
    return this.#fanout.publish(channel, data);
  }

  /** The channels a peer is in. */
  channelsOf(conn: WsConnection<Context>): ReadonlySet<string> {
    return this.#fanout.channelsOf(conn);
  }

  /** This process's peers in a channel. */
  members(channel: string): ReadonlySet<WsConnection<Context>> {
    return this.#fanout.members(channel);
  }

  /** Every connection closed after the stop: leave the bus's channels. */
  async stopped(): Promise<void> {
    await this.#fanout.stop();
  }

  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void {
    const path = this.options.path;
    if (path !== undefined && requestPath(request.url) !== path) {
      rejectUpgrade(socket, 404);
      return;
    }
    const protocols = this.options.protocols ?? [];
    if (this.options.requireProtocol && protocols.length > 0) {
      const offered = offeredProtocols(request);
      if (!protocols.some((protocol) => offered.includes(protocol))) {
        rejectUpgrade(socket, 400, `Unsupported WebSocket subprotocol: expected ${protocols.join(', ')}`);
        return;
      }
    }
    const hook = this.options.upgrade;
    if (hook === undefined) {
      this.#accept(request, socket, head, undefined as Context);
      return;
    }
    socket.on('error', () => {});
    let context: Context | Promise<Context>;
    try {
      context = hook(request);
    } catch (error) {
      this.#refuse(socket, error);
      return;
    }
    Promise.resolve(context).then(
      (value) => this.#accept(request, socket, head, value),
      (error: unknown) => this.#refuse(socket, error),
    );
  }

  /**
   * Close every peer with 1001 (going away), after the `onDrain` hook. A peer gets the binding's
   * `closeWaitMs` (default 2 s) to answer the close frame, then its socket is destroyed: one that
   * never answers cannot hold the drain for the grace period (ws alone would wait 30 s). Core
   * waits until every socket has closed; this resolves once the closes are started.
   */
  async drain(_signal: AbortSignal): Promise<void> {
    try {
      this.options.onDrain?.();
    } catch (error) {
      this.#logger.error({ err: error }, 'onDrain failed');
    }
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    this.#heartbeat = undefined;
    for (const client of this.clients) this.#goAway(client);
  }

  #goAway(client: WsConnection<Context>): void {
    if (client.open) client.close(1001, 'server shutting down');
    const socket = this.#sockets.get(client);
    if (socket === undefined) return;
    if (this.#binding) this.#binding.closeSoon(socket);
    else socket.destroy();
  }

  /** This endpoint as an adapter with a port of its own (`WS_PORT`, default 5001). */
  standalone(): HttpAdapter {
    return new StandaloneWs(this);
  }

  #refuse(socket: Duplex, error: unknown): void {
    if (error instanceof UpgradeError) {
      rejectUpgrade(socket, error.status, error.message, error.headers);
      return;
    }
    this.#logger.error({ err: error }, 'upgrade hook failed');
    rejectUpgrade(socket, 500);
  }

  #accept(request: IncomingMessage, socket: Duplex, head: Buffer, context: Context): void {
    if (socket.destroyed) return;
    // An upgrade hook that finished after the drain stopped accepting: too late to join (during
    // readinessDelayMs, while only readiness has turned, a new peer is still welcome).
    if (this.#binding !== undefined && !this.#binding.accepting) {
      rejectUpgrade(socket, 503, 'Service is shutting down', { 'Retry-After': '1' });
      return;
    }
    this.#server.handleUpgrade(request, socket, head, (ws) => {
      const conn = new WsConnection(ws, request, socket, context, {
        highWaterMark: this.options.highWaterMark ?? wsDefaults.highWaterMark,
        maxBufferedBytes: this.options.maxBufferedBytes ?? wsDefaults.maxBufferedBytes,
      });
      this.clients.add(conn);
      this.#sockets.set(conn, socket);
      const { message, close } = this.options;
      ws.on('pong', () => {
        conn.alive = true;
      });
      // 'error' precedes 'close' (e.g. a frame over maxPayload: ws closes with 1009).
      ws.on('error', (error) => this.#logger.debug({ err: error, conn: conn.id }, 'WebSocket error'));
      if (message) ws.on('message', (data, isBinary) => this.#call(conn, () => message(conn, data, isBinary)));
      ws.once('close', (code, reason) => {
        this.clients.delete(conn);
        this.#fanout.forget(conn);
        if (close) this.#call(conn, () => close(conn, code, reason));
      });
      const open = this.options.open;
      if (open) this.#call(conn, () => open(conn));
    });
  }

  /** Run a handler; a throw or rejection closes the peer with 1011 (internal error) and the process lives on. */
  #call(conn: WsConnection<Context>, run: () => void | Promise<void>): void {
    const fail = (error: unknown): void => {
      this.#logger.error({ err: error, conn: conn.id }, 'WebSocket handler failed');
      if (conn.open) conn.close(1011, 'internal error');
    };
    try {
      const result = run();
      if (result instanceof Promise) result.catch(fail);
    } catch (error) {
      fail(error);
    }
  }

  #beat(): void {
    for (const client of this.clients) {
      if (!client.alive) {
        this.#logger.debug({ conn: client.id }, 'no pong: closing dead peer');
        client.ws.terminate();
        continue;
      }
      client.alive = false;
      client.ws.ping();
    }
  }
}

/** A WebSocket endpoint on a port of its own: plain HTTP requests get 426 Upgrade Required. */
class StandaloneWs extends HttpAdapter {
  override readonly name = 'ws';
  override readonly scheme = 'ws';
  override readonly secureScheme = 'wss';
  override readonly portEnv = 'WS_PORT';
  override readonly defaultPort = 5001;
  constructor(endpoint: UpgradeHandler) {
    super({
      upgrades: { '*': endpoint },
      handler: (_req, res) => {
        res.statusCode = 426;
        res.setHeader('upgrade', 'websocket');
        res.setHeader('connection', 'Upgrade');
        res.setHeader('content-type', 'text/plain; charset=utf-8');
        res.end('Upgrade Required: this port speaks WebSocket\n');
      },
    });
  }

  override url(base: string): string {
    return `${base}/`;
  }
}

/** Create a {@link WsEndpoint}. */
export function wsEndpoint<Context = undefined>(options: WsOptions<Context> = {}): WsEndpoint<Context> {
  return new WsEndpoint(options);
}

function offeredProtocols(request: IncomingMessage): string[] {
  const header = request.headers['sec-websocket-protocol'];
  if (header === undefined) return [];
  return header.split(',').map((protocol) => protocol.trim());
}
