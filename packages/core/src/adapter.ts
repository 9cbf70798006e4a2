import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { SecureContext } from 'node:tls';
import type { Connection } from './connection.js';
import type { Logger } from './logger.js';

/** Limits core enforces on every connection of a binding. */
export interface ConnectionLimits {
  /** Accepted connections at once; past it a new one is refused (in the protocol's words, then closed). 0 = no limit. */
  maxConnections: number;
  /** Close a connection after this long with no bytes in either direction. 0 = never. */
  idleTimeoutMs: number;
}

/** What core tells an adapter about the binding it serves. */
export interface BindingContext {
  /** The binding's name (the adapter's name unless the user chose another). */
  readonly name: string;
  readonly logger: Logger;
  /** True when core terminates TLS before the adapter sees a connection. */
  readonly secure: boolean;
  /** True once the service is draining: answer "not ready", send `Connection: close`, and so on. */
  readonly draining: boolean;
  /**
   * True until the binding stops accepting connections: new clients are still welcome, even while
   * `draining` already steers a load balancer away (the `readinessDelayMs` after a stop). Refuse new
   * connections or upgrades only when this is false.
   */
  readonly accepting: boolean;
  /** True while the service is started and not draining. */
  readonly ready: boolean;
  /** The current TLS context, for adapters that upgrade in-band (STARTTLS). Undefined without TLS. */
  secureContext(): SecureContext | undefined;
  /** How long {@link BindingContext.closeSoon} waits for the peer (bind option `closeWaitMs`, default 2000 ms). */
  readonly closeWaitMs: number;
  /**
   * Call right after a polite close in the protocol's own terms (a RESP error or QUIT reply, a
   * WebSocket close frame, `</stream:stream>`): the peer gets `closeWaitMs` to close its side, then
   * the socket is destroyed. A peer that never answers can no longer hold a drain (or the process)
   * for the whole grace period. Safe to call more than once; a socket that closes first costs nothing.
   */
  closeSoon(socket: Duplex): void;
}

/**
 * A protocol adapter: what a binding serves. Core owns the listener, TLS, connection tracking,
 * limits and the drain deadline; the adapter parses its protocol on each connection it is given.
 *
 * An adapter object is bound once: `PortService.bind()` refuses the same object twice
 * (`PB_ERR_STATE`). To serve one protocol on two ports, make two adapters with the package's
 * factory (they may share a server object, as `@portbind/xmpp`'s `c2s()` and
 * `c2s({ directTls: true })` do).
 *
 * Adapters that speak over HTTP upgrades (WebSocket, XMPP over WebSocket) mount on an HTTP
 * adapter instead of binding a port of their own; see `@portbind/http`.
 */
export interface Adapter {
  /** Short name, used in logs, errors and as the default binding name: `http`, `resp`. */
  readonly name: string;
  /** URL scheme of a plain binding (`http`, `ws`, `redis`, `xmpp`). */
  readonly scheme: string;
  /** URL scheme of a TLS binding (`https`, `wss`, `rediss`, `xmpps`). */
  readonly secureScheme: string;
  /** Environment variable that holds the port: `PORT`, `RESP_PORT`, `XMPP_PORT`. */
  readonly portEnv: string;
  /** Port used when neither options nor the environment give one. */
  readonly defaultPort: number;
  /**
   * `direct` (default): with bind option `tls`, core terminates TLS before the adapter sees a
   * connection. `starttls`: the protocol upgrades in-band (XMPP's STARTTLS): core loads the
   * certificate and hands over plain connections; the adapter wraps them with
   * `binding.secureContext()` when the peer asks.
   */
  readonly tlsMode?: 'direct' | 'starttls';
  /**
   * Whether connections on different worker processes (`WORKERS`, the `workers` option of `PortService.run`) still
   * see one service. `shared` (default): yes — the adapter keeps no state between connections, or
   * shares it through a bus or a store. `local`: connections meet in this process's memory (XMPP
   * routing, RESP pub/sub without a bus), so `run()` refuses workers (PB_ERR_WORKERS) rather than
   * split the service in several that cannot see each other. The bind option `scope` overrides it.
   */
  readonly scope?: 'shared' | 'local';
  /** Defaults for the connection limits; the user's bind options win. */
  readonly limits?: Partial<ConnectionLimits>;
  /**
   * What the adapter speaks, for a port shared by several bindings (port unification): core
   * recognises `http` (HTTP/1.x), `h2c`, `h2` (by ALPN), `resp` and `xmpp` from a connection's first
   * bytes, and routes TLS by ALPN (`http/1.1`, `h2`, `xmpp-client`, `redis`). Another name is a
   * custom protocol, recognised by {@link Adapter.classify} and, on TLS, by an ALPN id equal to the
   * name. Default: from the scheme (`http`/`ws` → `http`, `redis` → `resp`, `xmpp`/`xmpps` → `xmpp`).
   */
  readonly protocols?: readonly string[];
  /**
   * For a custom protocol on a shared port: is this connection yours, from its first (plaintext)
   * bytes? `true` yes, `false` no, `undefined` not sure yet (core reads more, within its limits).
   * Asked before core's own classification.
   */
  classify?(head: Buffer): boolean | undefined;

  /** Called once per start, before the port is bound. */
  open(binding: BindingContext): void | Promise<void>;
  /** A new connection, after the TLS handshake when the binding has TLS. */
  connection(conn: Connection): void;
  /** Over `maxConnections`: tell the peer why in protocol terms. Core closes the socket afterwards. */
  refuse?(socket: Socket, reason: 'max-connections'): void;
  /** The idle timeout fired: close politely in protocol terms. Default: the socket is destroyed. */
  idle?(conn: Connection): void;
  /**
   * Called synchronously as soon as `stop()` begins, before any readiness delay: from now on
   * answers should steer clients away (HTTP: `Connection: close`). Optional.
   */
  beginDrain?(): void;
  /**
   * Stop gracefully: let in-flight work finish and close long-lived connections politely in the
   * protocol's own terms (then {@link BindingContext.closeSoon} each one). Resolve once that has
   * been started — core itself waits until every connection of the binding (upgraded ones
   * included) has closed, so an adapter never waits for its own set of connections to empty.
   * `signal` aborts at the grace deadline, after which core destroys whatever is still open.
   */
  drain(signal: AbortSignal): void | Promise<void>;
  /**
   * Called once when the service has stopped and every connection of the binding is closed (after
   * the grace period): flush and release what the adapter holds (a store, timers). Optional.
   */
  stopped?(): void | Promise<void>;
  /** More URLs this binding serves, beyond its base URL (e.g. mounted WebSocket endpoints). */
  urls?(base: string): string[];
  /** The binding's main URL from the base URL, e.g. adding the path `/`. Default: the base. */
  url?(base: string): string;
}
