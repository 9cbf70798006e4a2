import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { Adapter } from './adapter.js';
import { type Binding, describeSpec, listenOnce } from './binding.js';
import { alpnIds, type Sniffed, sniff } from './classify.js';
import type { ListenSpec } from './config.js';
import { BindError, ConfigError, PortbindError } from './errors.js';
import type { Logger } from './logger.js';
import { applyProxyHeader, compileProxyProtocol, type ProxyHeader, readProxyHeader, type TrustCheck } from './proxy-protocol.js';
import { listenUnix, type OwnedSocket, removeOwnedSocket } from './unix.js';

/**
 * `PortService` option `portSharing`: how a port shared by several bindings (port unification)
 * classifies new connections, and whether bindings without a port of their own join the main one.
 */
export interface PortSharingOptions {
  /**
   * Bindings with no address of their own (no `port` or `path` option, their port variable such as
   * `RESP_PORT` unset) listen on the main binding's port: the first binding that reads `PORT`, else
   * the first binding. So `PORT` alone serves every protocol, and `RESP_PORT=6380` still moves RESP
   * to a port of its own. Default false: each binding gets its port (variable or default port), and
   * only bindings given the same port share it.
   */
  join?: boolean;
  /**
   * How long a new connection may stay silent before its first byte, in ms. Default 30 000: above
   * the HTTP adapter's headers timeout (10 000), as browsers open connections ahead of need and send
   * nothing for a while. A silent connection is closed (never handed to a `fallback` binding).
   */
  firstByteTimeoutMs?: number;
  /** From the first byte, how long the bytes that say which protocol it is may take, in ms. Default 10 000. */
  classifyTimeoutMs?: number;
  /** The most bytes read to classify a connection (a TLS ClientHello, an HTTP request line). Default 16 384. */
  classifyBytes?: number;
}

export const sharingDefaults = { firstByteTimeoutMs: 30_000, classifyTimeoutMs: 10_000, classifyBytes: 16_384 } as const;

type Settings = Required<Omit<PortSharingOptions, 'join'>>;

/** Check the service option `portSharing` (a `ConfigError` for a bad value). */
export function sharingSettings(options: PortSharingOptions | undefined): Settings & { join: boolean } {
  const settings: Settings & { join: boolean } = { join: options?.join ?? false, ...sharingDefaults };
  for (const key of ['firstByteTimeoutMs', 'classifyTimeoutMs', 'classifyBytes'] as const) {
    const value = options?.[key];
    if (value === undefined) continue;
    if (!(typeof value === 'number' && Number.isInteger(value) && value >= 1)) {
      throw new ConfigError(`portSharing.${key}`, value, 'an integer ≥ 1');
    }
    settings[key] = value;
  }
  if (options?.join !== undefined && typeof options.join !== 'boolean')
    throw new ConfigError('portSharing.join', options.join, 'true or false');
  return settings;
}

/** The protocols an adapter serves: as declared, else from its scheme. */
export function protocolsOf(adapter: Adapter): readonly string[] {
  if (adapter.protocols !== undefined) return adapter.protocols;
  switch (adapter.scheme) {
    case 'http':
    case 'ws':
      return ['http'];
    case 'redis':
      return ['resp'];
    case 'xmpp':
    case 'xmpps':
      return ['xmpp'];
    default:
      return [];
  }
}

/** Where a classified connection goes. */
type Route =
  | { readonly kind: 'plain'; readonly to: Binding }
  | { readonly kind: 'tls'; readonly to: Binding; readonly reclassify: boolean; readonly serverName: string | undefined }
  | { readonly kind: 'unknown'; readonly reason: string };

type Decision<R> = R | 'more';

type HeadOutcome<R> =
  | { readonly kind: 'decided'; readonly route: R }
  | { readonly kind: 'silent' | 'slow' | 'closed'; readonly bytes: number };

const noop = (): void => {};

/**
 * One listener serving several bindings: each new connection is classified from its first bytes
 * (TLS by ALPN, then by its decrypted bytes; HTTP/1.x, h2c, RESP, XMPP; an adapter's own
 * `classify`) and handed, with the bytes read so far, to the binding that speaks its protocol.
 */
export class SharedPort {
  readonly members: readonly Binding[];
  readonly #settings: Settings;
  readonly #logger: Logger;
  /** Plaintext protocol → binding (bindings without direct TLS). */
  readonly #plain = new Map<string, Binding>();
  /** Protocol over TLS → binding (bindings with `tls`; direct TLS before STARTTLS ones). */
  readonly #secure = new Map<string, Binding>();
  /** ALPN id → binding. */
  readonly #alpn = new Map<string, Binding>();
  readonly #fallback: Binding | undefined;
  /** SNI host name (lower case) → binding (bind option `serverNames`). */
  readonly #serverNames = new Map<string, Binding>();
  /** The binding whose certificate answers a ClientHello that no ALPN routed. */
  readonly #tlsDefault: Binding | undefined;
  readonly #trusts: TrustCheck | undefined;
  readonly #headerTimeoutMs: number;
  /** Connections not yet classified (counted against the members' limits), with the function that stops reading. */
  readonly #pending = new Map<Duplex, () => void>();
  /** TLS connections whose decrypted first bytes are awaited (their TCP socket counts for the binding that made the handshake). */
  readonly #pendingSecure = new Map<Duplex, () => void>();
  #server: Server | undefined;
  #closed: Promise<void> | undefined;
  #address: AddressInfo | string | undefined;
  #accepting = true;
  /** True while connections are refused before classification (a warning once per such episode). */
  #refusing = false;

  constructor(members: readonly Binding[], settings: Settings, logger: Logger) {
    this.members = members;
    this.#settings = settings;
    const names = members.map((member) => member.name).join(', ');
    this.#logger = logger.child({ port: names });
    const where = `the port shared by ${names}`;
    const fallbacks = members.filter((member) => member.options.fallback === true);
    if (fallbacks.length > 1) {
      throw new ConfigError('fallback', fallbacks.map((member) => member.name).join(', '), `one fallback binding per port (${where})`);
    }
    this.#fallback = fallbacks[0];
    for (const member of members) {
      const protocols = protocolsOf(member.adapter);
      if (protocols.length === 0 && member.adapter.classify === undefined && member !== this.#fallback) {
        throw new ConfigError(
          'protocols',
          member.adapter.name,
          `binding ${member.name} is on ${where} but its adapter declares no protocols (Adapter.protocols or classify), so no connection could be routed to it: give it a port of its own, declare its protocols, or bind it with fallback: true`,
        );
      }
      for (const protocol of protocols) {
        if (!member.secure) this.#claim(this.#plain, protocol, member, where);
        if (member.options.tls === undefined) continue;
        const other = this.#secure.get(protocol);
        if (other === undefined || (!other.secure && member.secure)) this.#secure.set(protocol, member);
        else if (other.secure === member.secure) this.#claim(this.#secure, protocol, member, where);
      }
    }
    for (const [protocol, member] of this.#secure) {
      for (const id of alpnIds[protocol] ?? [protocol]) this.#alpn.set(id, member);
    }
    for (const member of members) {
      for (const name of member.options.serverNames ?? []) {
        if (member.options.tls === undefined) {
          throw new ConfigError('serverNames', member.options.serverNames, `binding ${member.name} has serverNames but no tls`);
        }
        const other = this.#serverNames.get(name.toLowerCase());
        if (other !== undefined) {
          throw new ConfigError('serverNames', name, `bindings ${other.name} and ${member.name} both claim it on ${where}`);
        }
        this.#serverNames.set(name.toLowerCase(), member);
      }
    }
    this.#tlsDefault = members.find((member) => member.secure) ?? members.find((member) => member.options.tls !== undefined);
    const proxies = new Set(members.map((member) => JSON.stringify(member.options.proxyProtocol ?? null)));
    if (proxies.size > 1) {
      throw new ConfigError(
        'proxyProtocol',
        members[0]?.options.proxyProtocol,
        `bindings on ${where} read PROXY headers differently: one listener reads them once for all, so give them the same proxyProtocol option`,
      );
    }
    const proxyProtocol = members[0]?.options.proxyProtocol;
    if (proxyProtocol !== undefined) {
      const compiled = compileProxyProtocol(proxyProtocol);
      this.#trusts = compiled.trusts;
      this.#headerTimeoutMs = compiled.timeoutMs ?? (members[0]?.options.handshakeTimeoutMs || 10_000);
    } else {
      this.#headerTimeoutMs = 0;
    }
  }

  #claim(map: Map<string, Binding>, protocol: string, member: Binding, where: string): void {
    const other = map.get(protocol);
    if (other !== undefined) {
      throw new ConfigError(
        'protocols',
        protocol,
        `bindings ${other.name} and ${member.name} both serve ${protocol}${map === this.#secure ? ' over TLS' : ''} on ${where}: a connection could not be routed; give one of them a port of its own`,
      );
    }
    map.set(protocol, member);
  }

  /** The ALPN protocol negotiated for a client's list: the first one served on this port. */
  selectAlpn(offered: readonly string[]): string | undefined {
    return offered.find((id) => this.#alpn.has(id));
  }

  async listen(spec: ListenSpec, backlog: number | undefined): Promise<void> {
    for (const member of this.members) member.joinShared(this);
    for (const member of this.members) await member.prepare();
    const server = createServer({ noDelay: true }, (socket) => this.#accept(socket));
    this.#server = server;
    let owned: OwnedSocket | undefined;
    const names = this.members.map((member) => member.name).join('+');
    try {
      if (spec.kind === 'unix') {
        const variable = spec.source.startsWith('env ') ? spec.source.slice('env '.length) : 'path';
        owned = await listenUnix(server, spec.path, (path) => listenOnce(server, { kind: 'unix', path, source: spec.source }, backlog), {
          binding: names,
          variable,
        });
      } else {
        await listenOnce(server, spec, backlog);
      }
    } catch (error) {
      this.#server = undefined;
      if (error instanceof PortbindError) throw error;
      throw new BindError(names, describeSpec(spec), error);
    }
    this.#address = spec.kind === 'unix' ? spec.path : (server.address() ?? undefined);
    server.on('error', (error) => this.#logger.warn({ err: error }, 'listener error'));
    this.#closed = new Promise((resolve) =>
      server.once('close', () => {
        if (owned === undefined) resolve();
        else void removeOwnedSocket(owned).then(resolve);
      }),
    );
    for (const member of this.members) member.sharedListening(this.#address as AddressInfo | string, this.#closed);
  }

  /** Stop accepting; connections still being classified are closed (they gave no adapter anything to finish). */
  stopAccepting(): void {
    if (!this.#accepting) return;
    this.#accepting = false;
    this.#server?.close();
    for (const [socket, cancel] of this.#pending) {
      cancel();
      socket.destroy();
    }
    this.#pending.clear();
    for (const [socket, cancel] of this.#pendingSecure) {
      cancel();
      socket.destroy();
    }
    this.#pendingSecure.clear();
  }

  /** Connections being classified count against the members' `maxConnections` (their sum; none if one is unlimited). */
  #full(): boolean {
    let limit = 0;
    let open = this.#pending.size;
    for (const member of this.members) {
      const max = member.limits.maxConnections;
      if (max === 0) return false;
      limit += max;
      open += member.connectionCount;
    }
    return open >= limit;
  }

  #accept(socket: Socket): void {
    if (this.#full()) {
      const fields = { remoteAddress: socket.remoteAddress, classifying: this.#pending.size };
      if (this.#refusing) this.#logger.debug(fields, 'connection refused: max connections (before classification)');
      else {
        this.#refusing = true;
        this.#logger.warn(
          fields,
          'connection refused before classification: the bindings on this port hold their maxConnections together (connections still being classified count); more are refused until some close',
        );
      }
      socket.on('error', noop);
      socket.destroy();
      return;
    }
    this.#refusing = false;
    const trusts = this.#trusts;
    if (trusts === undefined) {
      this.#classifyPlain(socket, undefined);
      return;
    }
    const address = socket.remoteAddress;
    if (address === undefined && !(typeof this.#address === 'string')) {
      socket.on('error', noop);
      socket.destroy();
      return;
    }
    const trusted = trusts(address);
    const cancel = readProxyHeader(
      socket,
      { trusted, timeoutMs: trusted ? this.#headerTimeoutMs : this.#settings.firstByteTimeoutMs },
      (outcome) => {
        this.#pending.delete(socket);
        if (outcome.kind === 'refused') {
          this.#logger.debug({ remoteAddress: address, problem: outcome.problem }, `connection refused: ${outcome.reason}`);
          socket.on('error', noop);
          socket.destroy();
          return;
        }
        if (outcome.header !== undefined) applyProxyHeader(socket, outcome.header);
        this.#classifyPlain(socket, outcome.header);
      },
    );
    this.#pending.set(socket, cancel);
    socket.once('close', () => this.#pending.delete(socket));
  }

  /** A new connection (after its PROXY header): TLS, or a plaintext protocol. */
  #classifyPlain(socket: Socket, header: ProxyHeader | undefined): void {
    const cancel = readHead<Route>(
      socket,
      this.#settings,
      (bytes) => this.#routePlain(bytes),
      (outcome) => {
        this.#pending.delete(socket);
        if (outcome.kind !== 'decided') {
          this.#failed(socket, outcome);
          return;
        }
        const route = outcome.route;
        if (route.kind === 'unknown') {
          const fallback = this.#fallback;
          if (fallback !== undefined && !fallback.secure) {
            this.#logger.debug(
              { remoteAddress: socket.remoteAddress, reason: route.reason },
              `unknown protocol: to fallback ${fallback.name}`,
            );
            fallback.adopt(socket, { tls: false, reclassify: false, header });
            return;
          }
          this.#unknown(socket, route.reason);
          return;
        }
        if (route.kind === 'plain') route.to.adopt(socket, { tls: false, reclassify: false, header });
        else route.to.adopt(socket, { tls: true, reclassify: route.reclassify, header });
      },
    );
    this.#pending.set(socket, cancel);
    socket.once('close', () => this.#pending.delete(socket));
  }

  #routePlain(bytes: Buffer): Decision<Route> {
    let unsure = false;
    for (const member of this.members) {
      if (member.secure || member.adapter.classify === undefined) continue;
      const mine = member.adapter.classify(bytes);
      if (mine === true) return { kind: 'plain', to: member };
      if (mine === undefined) unsure = true;
    }
    const sniffed = sniff(bytes);
    if (sniffed.kind === 'more') return 'more';
    if (sniffed.kind === 'tls') return this.#routeTls(sniffed);
    if (sniffed.kind === 'unknown') return unsure ? 'more' : sniffed;
    const to = this.#plain.get(sniffed.protocol);
    if (to !== undefined) return { kind: 'plain', to };
    return unsure ? 'more' : { kind: 'unknown', reason: `${sniffed.protocol}, which no binding on this port serves in plaintext` };
  }

  #routeTls(hello: Extract<Sniffed, { kind: 'tls' }>): Route {
    const tlsDefault = this.#tlsDefault;
    if (tlsDefault === undefined) return { kind: 'unknown', reason: 'TLS, and no binding on this port has TLS' };
    const id = this.selectAlpn(hello.alpn);
    const to = id === undefined ? undefined : this.#alpn.get(id);
    if (to !== undefined) return { kind: 'tls', to, reclassify: false, serverName: hello.serverName };
    const named = hello.serverName === undefined ? undefined : this.#serverNames.get(hello.serverName);
    if (named !== undefined) return { kind: 'tls', to: named, reclassify: false, serverName: hello.serverName };
    // No ALPN, or none served here: the default TLS binding's handshake (whose ALPN callback answers
    // an unserved list with no_application_protocol), then the decrypted bytes decide.
    return { kind: 'tls', to: tlsDefault, reclassify: true, serverName: hello.serverName };
  }

  /** After the TLS handshake of `from`: classify the decrypted bytes and hand the TLS socket over. */
  classifySecure(from: Binding, socket: TLSSocket): void {
    if (!this.#accepting) {
      socket.destroy();
      return;
    }
    const cancel = readHead<Route>(
      socket,
      this.#settings,
      (bytes) => this.#routeSecure(bytes),
      (outcome) => {
        this.#pendingSecure.delete(socket);
        if (outcome.kind !== 'decided') {
          this.#failed(socket, outcome);
          return;
        }
        const route = outcome.route;
        if (route.kind === 'plain') {
          route.to.serveSecure(socket, from);
          return;
        }
        const fallback = this.#fallback;
        const reason = route.kind === 'unknown' ? route.reason : 'TLS inside TLS';
        if (fallback !== undefined && fallback.options.tls !== undefined) {
          this.#logger.debug({ remoteAddress: socket.remoteAddress, reason }, `unknown protocol over TLS: to fallback ${fallback.name}`);
          fallback.serveSecure(socket, from);
          return;
        }
        this.#unknown(socket, `${reason} (over TLS)`);
      },
    );
    // Not counted again (the TCP socket counts for `from`), but closed by a drain all the same.
    this.#pendingSecure.set(socket, cancel);
    socket.once('close', () => this.#pendingSecure.delete(socket));
  }

  #routeSecure(bytes: Buffer): Decision<Route> {
    let unsure = false;
    for (const member of this.members) {
      if (member.options.tls === undefined || member.adapter.classify === undefined) continue;
      const mine = member.adapter.classify(bytes);
      if (mine === true) return { kind: 'plain', to: member };
      if (mine === undefined) unsure = true;
    }
    const sniffed = sniff(bytes);
    if (sniffed.kind === 'more') return 'more';
    if (sniffed.kind === 'unknown') return unsure ? 'more' : sniffed;
    if (sniffed.kind === 'tls') return { kind: 'unknown', reason: 'a ClientHello inside TLS' };
    const to = this.#secure.get(sniffed.protocol);
    if (to !== undefined) return { kind: 'plain', to };
    return unsure ? 'more' : { kind: 'unknown', reason: `${sniffed.protocol}, which no binding on this port serves over TLS` };
  }

  #failed(socket: Duplex, outcome: { kind: 'silent' | 'slow' | 'closed'; bytes: number }): void {
    const remoteAddress = (socket as Socket).remoteAddress;
    if (outcome.kind === 'closed') {
      this.#logger.debug({ remoteAddress, bytes: outcome.bytes }, 'connection closed before its protocol was known');
    } else if (outcome.kind === 'silent') {
      this.#logger.debug(
        { remoteAddress, firstByteTimeoutMs: this.#settings.firstByteTimeoutMs },
        'connection closed: no first byte in time',
      );
    } else {
      this.#logger.debug(
        { remoteAddress, bytes: outcome.bytes, classifyTimeoutMs: this.#settings.classifyTimeoutMs },
        'connection closed: its protocol was not recognised in time',
      );
    }
    socket.on('error', noop);
    socket.destroy();
  }

  #unknown(socket: Duplex, reason: string): void {
    this.#logger.debug({ remoteAddress: (socket as Socket).remoteAddress, reason }, `connection closed: unknown protocol: ${reason}`);
    socket.on('error', noop);
    socket.destroy();
  }
}

/**
 * Read a connection's first bytes until `decide` routes it, then put every byte read back into the
 * socket (`unshift`): the adapter reads the connection from its first byte, as on a port of its own.
 * Limits: `firstByteTimeoutMs` before any byte (`silent`), then `classifyTimeoutMs`; past
 * `classifyBytes` the last answer stands (`more` turns `slow`). Returns a function that stops reading.
 */
function readHead<R extends { kind: string }>(
  socket: Duplex,
  limits: Settings,
  decide: (bytes: Buffer) => Decision<R | { kind: 'unknown'; reason: string }>,
  done: (outcome: HeadOutcome<R | { kind: 'unknown'; reason: string }>) => void,
): () => void {
  let chunks: Buffer[] = [];
  let total = 0;
  let finished = false;
  let timer = setTimeout(() => finish({ kind: 'silent', bytes: 0 }), limits.firstByteTimeoutMs);
  const detach = (): void => {
    finished = true;
    clearTimeout(timer);
    socket.off('readable', onReadable);
    socket.off('end', onEnd);
    socket.off('close', onEnd);
    socket.off('error', onEnd);
  };
  const finish = (outcome: HeadOutcome<R | { kind: 'unknown'; reason: string }>): void => {
    if (finished) return;
    detach();
    if (outcome.kind === 'decided' && total > 0) socket.unshift(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, total));
    chunks = [];
    done(outcome);
  };
  const onEnd = (): void => finish({ kind: 'closed', bytes: total });
  const onReadable = (): void => {
    let chunk: Buffer | null;
    let grew = false;
    // biome-ignore lint/suspicious/noAssignInExpressions: the usual stream read loop
    while (!finished && (chunk = socket.read() as Buffer | null) !== null) {
      if (total === 0) {
        clearTimeout(timer);
        timer = setTimeout(() => finish({ kind: 'slow', bytes: total }), limits.classifyTimeoutMs);
      }
      chunks.push(chunk);
      total += chunk.length;
      grew = true;
    }
    if (finished || !grew) return;
    if (chunks.length > 1) chunks = [Buffer.concat(chunks, total)];
    const bytes = chunks[0] as Buffer;
    const decision = decide(total > limits.classifyBytes ? bytes.subarray(0, limits.classifyBytes) : bytes);
    if (decision !== 'more') finish({ kind: 'decided', route: decision });
    else if (total >= limits.classifyBytes) {
      finish({ kind: 'decided', route: { kind: 'unknown', reason: `no protocol recognised in the first ${limits.classifyBytes} bytes` } });
    }
  };
  socket.on('readable', onReadable);
  socket.once('end', onEnd);
  socket.once('close', onEnd);
  socket.on('error', onEnd);
  return detach;
}
