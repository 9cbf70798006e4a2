import type { Socket } from 'node:net';
import { getHeapStatistics } from 'node:v8';
import type { Adapter, BindingContext, Connection, Logger } from '@portbind/core';
import { ConfigError, silentLogger } from '@portbind/core';
import { builtinSections, registerBuiltins } from './builtins.js';
import { type ClientHost, RespClient, writeFailure, writeResult } from './client.js';
import { globMatch } from './glob.js';
import { classBit, formatKeyspaceEvents, KEYEVENT, KEYSPACE, type KeyspaceEventClass, parseKeyspaceEvents } from './notify.js';
import { type Command, parserDefaults, RequestParser } from './parser.js';
import type { DoubleFormat, ReplyValue } from './reply.js';
import { DEFAULT_TRACKING_MAX_KEYS, Tracking } from './tracking.js';

/** A command handler: `argv[0]` is the command name as sent, the arguments follow, binary-safe. */
export type CommandHandler<Context = Record<string, unknown>> = (
  client: RespClient<Context>,
  argv: Command,
  // biome-ignore lint/suspicious/noConfusingVoidType: a handler may return nothing (it wrote its reply itself)
) => ReplyValue | undefined | void | Promise<ReplyValue | undefined | void>;

/** Flags of a command, as Redis's command table has them (the ones that change dispatch). */
export type CommandFlag =
  /** Runs before authentication (AUTH, HELLO, QUIT, RESET). */
  | 'noauth'
  /** Allowed in RESP2 subscribed mode. */
  | 'pubsub'
  /** Runs at once inside MULTI instead of being queued (EXEC, DISCARD, MULTI, WATCH, QUIT, RESET). */
  | 'nomulti'
  | 'readonly'
  | 'write'
  | 'fast'
  | 'admin'
  /** May use more memory (SET, LPUSH…): refused while `outOfMemory()` says so, as Redis's CMD_DENYOOM. */
  | 'denyoom';

export interface CommandOptions {
  /** Redis arity, the name included: 2 = exactly `GET key`; -2 = at least one argument. */
  arity: number;
  flags?: readonly CommandFlag[];
  /** First key, last key (-1: the last argument), step: for COMMAND INFO and client-side routing. */
  keys?: readonly [number, number, number];
  /**
   * The keys of a call, when `keys` cannot say (a `numkeys` argument: ZUNION, SINTERCARD, LCS…).
   * Client-side caching remembers these for a `readonly` command.
   */
  keysOf?: (argv: Command) => readonly Buffer[];
  /**
   * For a container command (CLIENT, CONFIG, OBJECT…): its subcommands, lowercase, each with its
   * own flags. CLIENT LIST then shows `cmd=client|list`, and MONITOR skips the `admin` ones.
   */
  subcommands?: Readonly<Record<string, readonly CommandFlag[]>>;
  /** For COMMAND DOCS (redis-cli's hints). */
  summary?: string;
  group?: string;
  since?: string;
}

export interface CommandSpec<Context = Record<string, unknown>> extends CommandOptions {
  /** Lowercase name. */
  readonly name: string;
  readonly handler: CommandHandler<Context>;
}

/** A command as dispatch needs it: flags looked up once, at registration. */
interface Entry<Context> {
  readonly spec: CommandSpec<Context>;
  readonly noauth: boolean;
  readonly pubsub: boolean;
  readonly nomulti: boolean;
  /** Reads or writes keys: refused to a client in MONITOR mode, as Redis refuses a replica. */
  readonly keyspace: boolean;
  /** Held by CLIENT PAUSE … WRITE: `write` commands and PUBLISH (Redis's may-replicate). */
  readonly pausedByWrite: boolean;
  readonly denyoom: boolean;
}

/** A section of INFO: `[field, value]` pairs, computed when INFO runs. */
export type InfoFields = ReadonlyArray<readonly [string, string | number]>;

export interface RespOptions<Context = Record<string, unknown>> {
  /** The default user's password, Redis's `requirepass`. Clients must AUTH (or HELLO AUTH) first. */
  password?: string;
  /** ACL-style users and their passwords: `AUTH alice secret`. */
  users?: Readonly<Record<string, string>>;
  /** Your own credential check (a database, a token service); replaces `password` and `users`. */
  authenticate?: (user: string, password: string, client: RespClient<Context>) => boolean | Promise<boolean>;
  /**
   * Redis's protected mode: with no authentication configured, clients from other hosts than
   * loopback get `-DENIED …` and are closed. Default true; turn off behind your own firewall.
   */
  protectedMode?: boolean;
  /**
   * Redis's `maxmemory` with the `noeviction` policy: while this returns true, commands flagged
   * `denyoom`, an EXEC that queued one, and anything a client in MULTI would queue (but EXEC,
   * DISCARD, QUIT, RESET) are refused with `-OOM command not allowed when used memory >
   * 'maxmemory'.` (a refused queued command aborts the transaction). Called only for those.
   */
  outOfMemory?: () => boolean;
  /** Number of databases for SELECT. Default 16. */
  databases?: number;
  /** Largest bulk argument (`proto-max-bulk-len`). Default 512 MB. */
  maxBulkLength?: number;
  /**
   * Redis's `client-query-buffer-limit`: the most one client's input may cost before it is
   * disconnected. Counted as real memory — the bytes of the command being received, the objects
   * holding each of its arguments (about 112 bytes each: a million one-byte arguments cost 115 MB,
   * not 7 MB) and the commands queued by MULTI. Default 1 GiB. A client that has not
   * authenticated (when authentication is configured) gets 1 MiB, as in Redis 7.4.
   */
  queryBufferLimit?: number;
  /**
   * The most the input of all clients together may cost, counted as for `queryBufferLimit`. Past
   * it the clients with the largest input are disconnected until the total is back under (as
   * Redis's `maxmemory-clients` evicts), so no mix of clients can exhaust the heap. Default: half
   * of V8's heap limit (`v8.getHeapStatistics().heap_size_limit`, which `--max-old-space-size` sets).
   */
  totalQueryBufferLimit?: number;
  /** Stop reading a client whose unsent replies pass this many bytes (it pipelines without reading). Default 1 MiB. */
  outputHighWaterMark?: number;
  /** Redis's `client-output-buffer-limit pubsub`: disconnect a subscriber that falls behind. Default 32 MB hard, 8 MB for 60 s. */
  pubsubLimits?: { hardBytes: number; softBytes: number; softSeconds: number };
  /**
   * The version HELLO and INFO report. Default 7.2.0 (clients feature-detect on it). Replies follow
   * it where Redis versions differ: before 7.2 doubles print as `%.17g` (`0.10000000000000001`).
   */
  serverVersion?: string;
  /**
   * Redis's `tracking-table-max-keys`: the most keys client-side caching remembers (default
   * 1,000,000; 0: no limit). Past it, keys are dropped, each invalidated for the clients that read it.
   */
  trackingTableMaxKeys?: number;
  /** The most BCAST prefixes one client may track (default 1,000). */
  trackingMaxPrefixes?: number;
  /** Make the per-connection context. */
  context?: (conn: Connection) => Context;
  /**
   * Called when the service starts draining, before each client's running command finishes and
   * the connection closes: answer clients blocked in a command (a BLPOP), stop your timers.
   */
  onDrain?: () => void;
}

const DENIED =
  "DENIED Redis is running in protected mode because protected mode is enabled and no password is set for the default user. In this mode connections are only accepted from the loopback interface. If you want to connect from external computers to Redis you may adopt one of the following solutions: 1) Just disable protected mode sending the command 'CONFIG SET protected-mode no' from the loopback interface by connecting to Redis from the same host the server is running, however MAKE SURE Redis is not publicly accessible from internet if you do so. Use CONFIG REWRITE to make this change permanent. 2) Alternatively you can just disable the protected mode by editing the Redis configuration file, and setting the protected mode option to 'no', and then restarting the server. 3) If you started the server manually just for testing, restart it with the '--protected-mode no' option. 4) Set up an authentication password for the default user. NOTE: You only need to do one of the above things in order for the server to start accepting connections from the outside.";

/** Redis 7.4 holds a client that has not authenticated to 1 MB of input. */
const UNAUTHENTICATED_QUERY_LIMIT = 1024 * 1024;

/** A peer's address as Redis writes it: `ip:port`, `[ipv6]:port`, or `unix:0` for a Unix socket (Redis: `path:0`). */
export function clientAddress(conn: Connection): string {
  const ip = conn.remoteAddress;
  if (ip === undefined) return 'unix:0';
  return ip.includes(':') ? `[${ip}]:${conn.remotePort ?? 0}` : `${ip}:${conn.remotePort ?? 0}`;
}

/** The local end as Redis writes it (`laddr`). */
export function localAddress(conn: Connection): string {
  const socket = conn.socket;
  const ip = socket.localAddress;
  if (conn.remoteAddress === undefined || ip === undefined) return 'unix:0';
  return ip.includes(':') ? `[${ip}]:${socket.localPort ?? 0}` : `${ip}:${socket.localPort ?? 0}`;
}

/** The reply of a command ended by `CLIENT UNBLOCK id ERROR` (networking.c, clientCommand). */
const UNBLOCKED = 'UNBLOCKED client unblocked via CLIENT UNBLOCK';

const PUBSUB_ONLY = 'only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context';

/**
 * The Redis-protocol adapter: binds `RESP_PORT` (default 6379), `redis://` or `rediss://` with TLS.
 * Register commands; HELLO, AUTH, PING, ECHO, QUIT, RESET, SELECT, CLIENT, COMMAND, MULTI/EXEC,
 * WATCH and pub/sub are built in, and each can be replaced by registering the same name.
 *
 * ```ts
 * const resp = respAdapter();
 * const store = new Map<string, Buffer>();
 * resp.command('set', { arity: 3, flags: ['write'] }, (_client, [, key, value]) => {
 *   store.set(key.toString(), Buffer.from(value));
 *   return OK;
 * });
 * resp.command('get', { arity: 2, flags: ['readonly'] }, (_client, [, key]) => store.get(key.toString()) ?? null);
 * service.bind(resp);
 * ```
 */
export class RespAdapter<Context = Record<string, unknown>> implements Adapter, ClientHost<Context> {
  readonly name: string = 'resp';
  readonly scheme: string = 'redis';
  /** What this adapter speaks, for core's port sharing. */
  readonly protocols: readonly string[] = ['resp'];
  readonly secureScheme: string = 'rediss';
  readonly portEnv: string = 'RESP_PORT';
  readonly defaultPort: number = 6379;
  /** Redis's defaults: maxclients 10000, timeout 0. */
  readonly limits = { maxConnections: 10_000, idleTimeoutMs: 0 };
  readonly options: Readonly<RespOptions<Context>>;
  #keyspaceEvents = 0;
  readonly outputHighWaterMark: number;
  readonly databases: number;
  readonly serverVersion: string;
  /** Doubles as the reported version prints them: `%.17g` before 7.2, the shortest text from 7.2 (networking.c, addReplyDouble). */
  readonly doubleFormat: DoubleFormat;
  logger: Logger = silentLogger;
  readonly #commands = new Map<string, CommandSpec<Context>>();
  /** Lookup by the name as clients send it: lowercase and UPPERCASE hit without a case conversion. */
  readonly #dispatch = new Map<string, Entry<Context>>();
  readonly #clients = new Map<number, RespClient<Context>>();
  readonly #channels = new Map<string, Set<RespClient<Context>>>();
  readonly #patterns = new Map<string, Set<RespClient<Context>>>();
  readonly #watchers = new Map<string, Set<RespClient<Context>>>();
  /** The client whose command runs now (tracking's NOLOOP). */
  #current: RespClient<Context> | undefined;
  /** Nesting of run() (EXEC runs the queued commands inside its own run). */
  #depth = 0;
  /** Client-side caching: CLIENT TRACKING's table, prefixes and invalidation messages. */
  readonly tracking: Tracking<Context>;
  readonly #authConfigured: boolean;
  readonly queryBufferLimit: number;
  readonly totalQueryBufferLimit: number;
  #queryTotal = 0;
  readonly #logFailure = (error: unknown, command: string): void => this.logger.error({ err: error, command }, 'command handler failed');
  #binding: BindingContext | undefined;
  #softLimitTimer: NodeJS.Timeout | undefined;
  /** Subscribers already closed for their output buffer limits. */
  readonly #cutOff = new WeakSet<RespClient<Context>>();
  /** Clients in MONITOR mode; while it is empty, running a command costs nothing more. */
  readonly #monitors = new Set<RespClient<Context>>();
  /** CLIENT PAUSE: what is held (`write`: write commands; `all`: every command), until when (ms). */
  #pauseType: 'write' | 'all' | undefined;
  #pauseEnd = 0;
  #pauseTimer: NodeJS.Timeout | undefined;
  /** Commands held by CLIENT PAUSE, in arrival order, each waiting for the pause to end. */
  #pauseWaiters: Array<() => void> = [];
  /** Sections the application adds to INFO (or fields it adds to, or overrides in, a built-in one). */
  readonly #infoSections = new Map<string, Array<() => InfoFields>>();
  /** INFO commandstats: per command (`client|list` for a subcommand), as Redis counts them. */
  readonly commandStats = new Map<string, { calls: number; usec: number; rejected: number; failed: number }>();
  /** INFO stats, counted where the adapter sees them. */
  readonly stats = {
    /** Connections accepted (Redis's total_connections_received). */
    connectionsReceived: 0,
    /** Connections refused at maxclients (rejected_connections). */
    rejectedConnections: 0,
    /** Commands run, queued ones counted when EXEC runs them (total_commands_processed). */
    commandsProcessed: 0,
    /** Bytes read from clients (total_net_input_bytes). */
    netInputBytes: 0,
    /** Bytes written to clients (total_net_output_bytes). */
    netOutputBytes: 0,
  };

  constructor(options: RespOptions<Context> = {}) {
    this.options = options;
    this.outputHighWaterMark = byteLimit('outputHighWaterMark', options.outputHighWaterMark) ?? 1024 * 1024;
    this.databases = options.databases ?? 16;
    if (!Number.isInteger(this.databases) || this.databases < 1 || this.databases > 2 ** 31 - 1)
      throw new ConfigError('respAdapter({ databases })', options.databases, 'must be an integer from 1 to 2147483647');
    byteLimit('maxBulkLength', options.maxBulkLength);
    checkPubsubLimits(options.pubsubLimits);
    this.serverVersion = options.serverVersion ?? '7.2.0';
    this.doubleFormat = doubleFormatOf(this.serverVersion);
    this.queryBufferLimit = byteLimit('queryBufferLimit', options.queryBufferLimit) ?? 1024 * 1024 * 1024;
    this.totalQueryBufferLimit =
      byteLimit('totalQueryBufferLimit', options.totalQueryBufferLimit) ?? Math.floor(getHeapStatistics().heap_size_limit / 2);
    this.#authConfigured = options.password !== undefined || options.users !== undefined || options.authenticate !== undefined;
    this.tracking = new Tracking<Context>({
      clients: this.#clients,
      get currentClient() {
        return current();
      },
    });
    const current = (): RespClient<Context> | undefined => this.#current;
    this.tracking.maxKeys = nonNegative('trackingTableMaxKeys', options.trackingTableMaxKeys) ?? DEFAULT_TRACKING_MAX_KEYS;
    const prefixes = nonNegative('trackingMaxPrefixes', options.trackingMaxPrefixes);
    if (prefixes !== undefined) this.tracking.maxPrefixes = prefixes;
    registerBuiltins(this as unknown as RespAdapter<Record<string, unknown>>);
  }

  /** Register (or replace) a command. Names are case-insensitive. */
  command(name: string, options: CommandOptions, handler: CommandHandler<Context>): this {
    const lower = name.toLowerCase();
    const spec: CommandSpec<Context> = { ...options, name: lower, handler };
    const flags = options.flags ?? [];
    const entry = {
      spec,
      noauth: flags.includes('noauth'),
      pubsub: flags.includes('pubsub'),
      nomulti: flags.includes('nomulti'),
      keyspace: flags.includes('readonly') || flags.includes('write'),
      pausedByWrite: flags.includes('write') || lower === 'publish',
      denyoom: flags.includes('denyoom'),
    };
    this.#commands.set(lower, spec);
    this.#dispatch.set(lower, entry);
    this.#dispatch.set(lower.toUpperCase(), entry);
    return this;
  }

  /** The registered command of that name (lowercase), if any. */
  lookup(name: string): CommandSpec<Context> | undefined {
    return this.#commands.get(name.toLowerCase());
  }

  /** Every registered command. */
  get commands(): IterableIterator<CommandSpec<Context>> {
    return this.#commands.values();
  }

  /** Connected clients by id. */
  get clients(): ReadonlyMap<number, RespClient<Context>> {
    return this.#clients;
  }

  /** True when clients must authenticate (a password, users or a check is configured). */
  get authConfigured(): boolean {
    return this.#authConfigured;
  }

  authRequired(client: RespClient<Context>): boolean {
    return this.#authConfigured && client.user === undefined;
  }

  /**
   * Whether a user of that name exists (CLIENT KILL USER): `default`, one of `users`, or (with
   * your own `authenticate`) one a connected client authenticated as.
   */
  userExists(user: string): boolean {
    if (user === 'default' || this.options.users?.[user] !== undefined) return true;
    for (const client of this.#clients.values()) if (client.user === user) return true;
    return false;
  }

  /** Check credentials; the default user has the configured `password`. */
  async checkCredentials(user: string, password: string, client: RespClient<Context>): Promise<boolean> {
    const { authenticate, users } = this.options;
    if (authenticate) return authenticate(user, password, client);
    if (user === 'default') return this.options.password === undefined ? !this.authConfigured : this.options.password === password;
    return users?.[user] !== undefined && users[user] === password;
  }

  open(binding: BindingContext): void {
    this.#binding = binding;
    this.logger = binding.logger;
  }

  connection(conn: Connection): void {
    const socket = conn.socket;
    if (this.options.protectedMode !== false && !this.authConfigured && !conn.isLoopback) {
      this.logger.warn({ remoteAddress: conn.remoteAddress }, 'protected mode: refused a non-loopback client');
      socket.on('error', () => {});
      socket.end(`-${DENIED}\r\n`);
      this.closeSoon(socket);
      return;
    }
    // The drain stopped accepting: too late to join. (During readinessDelayMs, while only readiness has
    // turned, a new client is still served: a load balancer may send one before it saw the 503.)
    if (this.#binding !== undefined && !this.#binding.accepting) {
      socket.end();
      this.closeSoon(socket);
      return;
    }
    const parser = new RequestParser({ maxBulkLength: this.options.maxBulkLength ?? parserDefaults.maxBulkLength });
    const context = this.options.context ? this.options.context(conn) : ({} as Context);
    const client = new RespClient<Context>(conn, this, parser, context);
    this.#clients.set(client.id, client);
    this.stats.connectionsReceived++;
  }

  refuse(socket: Socket): void {
    this.stats.rejectedConnections++;
    socket.write('-ERR max number of clients reached\r\n');
  }

  idle(conn: Connection): void {
    const client = this.#clients.get(conn.id);
    // Redis never times out subscribers (nor clients blocked in a command).
    if (client?.subscribed) return;
    conn.socket.destroy();
  }

  /**
   * Finish the command each client is running, send its reply, then end the connection; a peer
   * that does not close its side within closeWaitMs is cut off. Core waits for the connections.
   */
  drain(): void {
    try {
      this.options.onDrain?.();
    } catch (error) {
      this.logger.error({ err: error }, 'onDrain failed');
    }
    this.unpause();
    for (const client of [...this.#clients.values()]) client.closeAfterReply();
  }

  /** @internal */
  closeSoon(socket: Socket): void {
    this.#binding?.closeSoon(socket);
  }

  /** Input held by all clients, as the query buffer limits count it. */
  get queryBytes(): number {
    return this.#queryTotal;
  }

  /** @internal Count a client's input against the query buffer limits; disconnect it (or the largest) past them. */
  accountQuery(client: RespClient<Context>): void {
    const cost = client.queryBytes;
    this.#queryTotal += cost - client.accountedQuery;
    client.accountedQuery = cost;
    if (cost === 0) return;
    const limit = this.authRequired(client) ? Math.min(UNAUTHENTICATED_QUERY_LIMIT, this.queryBufferLimit) : this.queryBufferLimit;
    if (cost > limit) {
      // networking.c, readQueryFromClient: logged, and the client is closed without a reply.
      this.logger.warn(
        { client: client.id, addr: clientAddress(client.conn), queryBytes: cost, limit },
        'closing client that reached max query buffer length',
      );
      client.kill();
      return;
    }
    if (this.#queryTotal > this.totalQueryBufferLimit) this.#evict();
  }

  /** Over the total: close the clients holding the most input until the total is under again. */
  #evict(): void {
    const byCost = [...this.#clients.values()]
      .filter((client) => client.accountedQuery > 0 && !client.noEvict)
      .sort((a, b) => b.accountedQuery - a.accountedQuery);
    for (const client of byCost) {
      if (this.#queryTotal <= this.totalQueryBufferLimit) return;
      this.logger.warn(
        {
          client: client.id,
          addr: clientAddress(client.conn),
          queryBytes: client.accountedQuery,
          totalQueryBytes: this.#queryTotal,
          limit: this.totalQueryBufferLimit,
        },
        'closing client: the query buffers of all clients reached totalQueryBufferLimit',
      );
      client.kill();
    }
  }

  url(base: string): string {
    return base;
  }

  closed(own: RespClient<Context>): void {
    this.#clients.delete(own.id);
    if (own.monitoring) this.stopMonitor(own);
    for (const channel of own.channels) this.#leave(this.#channels, channel, own);
    for (const pattern of own.patterns) this.#leave(this.#patterns, pattern, own);
    this.unwatch(own);
    this.tracking.disable(own);
    if (this.#current === own) this.#current = undefined;
    this.#queryTotal -= own.accountedQuery;
    own.accountedQuery = 0;
  }

  /** Dispatch one command, in Redis's order of checks: lookup, arity, auth, MULTI, RESP2 pub/sub. */
  execute(own: RespClient<Context>, argv: Command): void | Promise<void> {
    const sent = (argv[0] as Buffer).toString('latin1');
    const entry = this.#dispatch.get(sent) ?? this.#dispatch.get(sent.toLowerCase());
    if (entry === undefined) {
      this.#reject(own, unknownCommand(argv));
      return;
    }
    const spec = entry.spec;
    const arity = spec.arity;
    if (arity >= 0 ? argv.length !== arity : argv.length < -arity) {
      this.#rejectCommand(own, spec.name, `ERR wrong number of arguments for '${spec.name}' command`);
      return;
    }
    if (!entry.noauth && this.#authConfigured && own.user === undefined) {
      this.#rejectCommand(own, spec.name, 'NOAUTH Authentication required.');
      return;
    }
    if (own.monitoring && entry.keyspace) {
      // server.c, processCommand: a MONITOR client is a replica, kept away from the keyspace.
      this.#rejectCommand(own, spec.name, "ERR Replica can't interact with the keyspace");
      return;
    }
    if (this.options.outOfMemory !== undefined && this.#usesMemory(own, entry) && this.options.outOfMemory()) {
      this.#rejectCommand(own, spec.name, "OOM command not allowed when used memory > 'maxmemory'.");
      return;
    }
    if (this.#pauseType !== undefined && this.#holds(own, entry)) return this.#afterPause(own, entry, argv);
    return this.#proceed(own, entry, argv);
  }

  /** Whether a command is refused when out of memory (server.c, processCommand's reject_cmd_on_oom). */
  #usesMemory(own: RespClient<Context>, entry: Entry<Context>): boolean {
    if (entry.denyoom) return true;
    const name = entry.spec.name;
    if (own.multi === undefined) return false;
    if (name !== 'exec') return name !== 'discard' && name !== 'quit' && name !== 'reset';
    for (const queued of own.multi) {
      if (this.#dispatch.get((queued[0] as Buffer).toString('latin1').toLowerCase())?.denyoom) return true;
    }
    return false;
  }

  /** The rest of dispatch, once no CLIENT PAUSE holds the command: MULTI's queue, RESP2 pub/sub, run. */
  #proceed(own: RespClient<Context>, entry: Entry<Context>, argv: Command): void | Promise<void> {
    const spec = entry.spec;
    if (own.multi !== undefined && !entry.nomulti) {
      own.queue(argv);
      own.reply.simple('QUEUED');
      return;
    }
    if (!entry.pubsub && own.protocol === 2 && own.subscribed) {
      this.#rejectCommand(own, spec.name, `ERR Can't execute '${spec.name}': ${PUBSUB_ONLY}`);
      return;
    }
    return this.run(own, spec, argv);
  }

  // ---- CLIENT PAUSE --------------------------------------------------------------------------

  /**
   * CLIENT PAUSE: hold every command (`all`) or the write ones (`write`) of every client until
   * `end` (ms since the epoch). A second pause never shortens the first nor turns `all` into
   * `write` (networking.c, pauseClients).
   */
  pause(end: number, type: 'write' | 'all'): void {
    if (this.#pauseType !== 'all') this.#pauseType = type;
    if (end <= this.#pauseEnd && this.#pauseTimer !== undefined) return;
    this.#pauseEnd = Math.max(end, this.#pauseEnd);
    clearTimeout(this.#pauseTimer);
    // setTimeout takes at most 2^31-1 ms: a longer pause re-arms itself.
    const wait = Math.min(Math.max(this.#pauseEnd - Date.now(), 0), 2 ** 31 - 1);
    this.#pauseTimer = setTimeout(() => {
      this.#pauseTimer = undefined;
      if (Date.now() >= this.#pauseEnd) this.unpause();
      else this.pause(this.#pauseEnd, this.#pauseType ?? type);
    }, wait);
    this.#pauseTimer.unref();
  }

  /** CLIENT UNPAUSE (or the pause's end): held commands run, in the order they came. */
  unpause(): void {
    clearTimeout(this.#pauseTimer);
    this.#pauseTimer = undefined;
    this.#pauseType = undefined;
    this.#pauseEnd = 0;
    const waiters = this.#pauseWaiters;
    this.#pauseWaiters = [];
    for (const resume of waiters) resume();
  }

  /** What CLIENT PAUSE holds now: `write`, `all`, or undefined. */
  get paused(): 'write' | 'all' | undefined {
    return this.#pauseType;
  }

  /** Whether the current pause holds this command (an EXEC is a write when it queued one). */
  #holds(own: RespClient<Context>, entry: Entry<Context>): boolean {
    if (this.#pauseType === 'all') return true;
    if (entry.pausedByWrite) return true;
    if (entry.spec.name !== 'exec' || own.multi === undefined) return false;
    for (const queued of own.multi) {
      const name = (queued[0] as Buffer).toString('latin1').toLowerCase();
      if (this.#dispatch.get(name)?.pausedByWrite) return true;
    }
    return false;
  }

  /** Wait for the pause to end (the client is blocked meanwhile, its later commands behind it), then go on. */
  async #afterPause(own: RespClient<Context>, entry: Entry<Context>, argv: Command): Promise<void> {
    const spec = entry.spec;
    own.lastCommand = spec.subcommands === undefined ? spec.name : fullName(spec, argv); // CLIENT LIST's cmd= while held, as Redis
    while (this.#pauseType !== undefined && this.#holds(own, entry)) {
      await new Promise<void>((resolve) => this.#pauseWaiters.push(resolve));
      if (own.closing) return;
    }
    const pending = this.#proceed(own, entry, argv);
    if (pending !== undefined) await pending;
  }

  /** Run a command's handler and write its result or error (EXEC uses this for queued commands). */
  run(client: RespClient<Context>, spec: CommandSpec<Context>, argv: Command): void | Promise<void> {
    const name = spec.subcommands === undefined ? spec.name : fullName(spec, argv);
    client.lastCommand = name;
    this.stats.commandsProcessed++;
    // INFO commandstats: calls and failures; the time the handler ran (not the time a blocked
    // command waited) is measured on one call in 32 and counted 32 times — a clock read costs about
    // as much as a small command here.
    const stats = this.#statsOf(name);
    const timed = (stats.calls++ & 31) === 0;
    const started = timed ? performance.now() : 0;
    let result: ReturnType<CommandHandler<Context>>;
    this.#current = client;
    this.#depth++;
    try {
      result = spec.handler(client, argv);
    } catch (error) {
      this.#depth--;
      this.#current = this.#depth === 0 ? undefined : client;
      if (timed) stats.usec += Math.round((performance.now() - started) * 32_000);
      stats.failed++;
      writeFailure(client, error, spec.name, this.#logFailure);
      if (client.tracking !== undefined) this.#tracked(client, spec, argv);
      if (this.#depth === 0) this.tracking.sendPending();
      if (this.#monitors.size !== 0) this.#feedMonitors(client, spec, argv);
      return;
    }
    this.#depth--;
    this.#current = this.#depth === 0 ? undefined : client;
    if (timed) stats.usec += Math.round((performance.now() - started) * 32_000);
    if (result instanceof Promise) {
      return result.then(
        (value) => {
          if (client.takeUnblockError()) client.reply.error(UNBLOCKED);
          else writeResult(client, value);
          if (client.tracking !== undefined) this.#tracked(client, spec, argv);
          this.tracking.sendPending();
          if (this.#monitors.size !== 0) this.#feedMonitors(client, spec, argv);
        },
        (error: unknown) => {
          stats.failed++;
          if (client.takeUnblockError()) client.reply.error(UNBLOCKED);
          else writeFailure(client, error, spec.name, this.#logFailure);
          if (client.tracking !== undefined) this.#tracked(client, spec, argv);
          this.tracking.sendPending();
          if (this.#monitors.size !== 0) this.#feedMonitors(client, spec, argv);
        },
      );
    }
    if (result !== undefined) client.reply.value(result);
    if (client.tracking !== undefined) this.#tracked(client, spec, argv);
    // Invalidations for this client's own writes go after its reply (after EXEC's whole array).
    if (this.#depth === 0) this.tracking.sendPending();
    // As Redis's call(): after the command ran (its reply, or error, written), so a SELECT shows the new db.
    if (this.#monitors.size !== 0) this.#feedMonitors(client, spec, argv);
  }

  /** After a tracking client's command: remember the keys a read-only one read (server.c, call), end CLIENT CACHING's one command. */
  #tracked(client: RespClient<Context>, spec: CommandSpec<Context>, argv: Command): void {
    if (spec.flags?.includes('readonly')) this.tracking.remember(client, commandKeys(spec, argv));
    // Not for the commands EXEC runs: CACHING covers the whole transaction.
    if (this.#depth === 0) this.tracking.commandDone(client, spec.name);
  }

  /**
   * FLUSHDB / FLUSHALL: every client tracking keys gets a null invalidation (its whole cache goes),
   * and the tracking table is emptied (tracking.c, trackingInvalidateKeysOnFlush).
   */
  invalidateAll(): void {
    this.tracking.flushed();
  }

  // ---- MONITOR -------------------------------------------------------------------------------

  /** MONITOR: from now on `client` receives every command run (not admin ones), as Redis prints them. */
  startMonitor(client: RespClient<Context>): void {
    client.monitoring = true;
    this.#monitors.add(client);
  }

  /** Leave MONITOR mode (RESET, or the connection closed). */
  stopMonitor(client: RespClient<Context>): void {
    client.monitoring = false;
    this.#monitors.delete(client);
  }

  /** Clients in MONITOR mode now. */
  get monitorCount(): number {
    return this.#monitors.size;
  }

  /** replication.c, replicationFeedMonitors: `+<sec>.<usec> [<db> <addr>] "arg" …`, one line for every monitor. */
  #feedMonitors(client: RespClient<Context>, spec: CommandSpec<Context>, argv: Command): void {
    if (spec.flags?.includes('admin')) return;
    const sub = spec.subcommands === undefined ? undefined : client.lastCommand.split('|')[1];
    if (sub !== undefined && spec.subcommands?.[sub]?.includes('admin')) return;
    const line = monitorLine(client.db, clientAddress(client.conn), spec.name, argv);
    for (const monitor of this.#monitors) {
      if (monitor.closing) continue;
      monitor.pushWriter().simple(line);
      monitor.flushLater();
    }
  }

  // ---- INFO ----------------------------------------------------------------------------------

  /**
   * Add a section to INFO, or fields to a built-in one (a field of the same name replaces the
   * built-in's): `resp.infoSection('keyspace', () => [['db0', 'keys=3,expires=0,avg_ttl=0']])`.
   * `fields` runs each time INFO asks for the section.
   */
  infoSection(name: string, fields: () => InfoFields): this {
    const lower = name.toLowerCase();
    const providers = this.#infoSections.get(lower) ?? [];
    providers.push(fields);
    this.#infoSections.set(lower, providers);
    return this;
  }

  /**
   * The fields the built-in INFO has for a section (`server`, `clients`, `memory`, `persistence`,
   * `stats`, `replication`, `cpu`), for an application that registers its own INFO:
   * `Object.fromEntries(resp.infoFields('stats') ?? [])`.
   */
  infoFields(section: string): InfoFields | undefined {
    return builtinSections(this as unknown as RespAdapter<Record<string, unknown>>).get(section.toLowerCase());
  }

  /** @internal The application's sections and fields, for the built-in INFO. */
  get infoSections(): ReadonlyMap<string, ReadonlyArray<() => InfoFields>> {
    return this.#infoSections;
  }

  /** A known command refused before it ran: its rejected_calls count (INFO commandstats). */
  #rejectCommand(client: RespClient<Context>, name: string, message: string): void {
    this.#statsOf(name).rejected++;
    this.#reject(client, message);
  }

  #statsOf(name: string): { calls: number; usec: number; rejected: number; failed: number } {
    let stats = this.commandStats.get(name);
    if (stats === undefined) {
      stats = { calls: 0, usec: 0, rejected: 0, failed: 0 };
      this.commandStats.set(name, stats);
    }
    return stats;
  }

  #reject(client: RespClient<Context>, message: string): void {
    if (client.multi !== undefined) client.multiDirty = true;
    client.reply.error(message);
  }

  // ---- pub/sub -------------------------------------------------------------------------------

  subscribe(client: RespClient<Context>, channel: string): void {
    client.channels.add(channel);
    this.#join(this.#channels, channel, client);
  }

  unsubscribe(client: RespClient<Context>, channel: string): boolean {
    if (!client.channels.delete(channel)) return false;
    this.#leave(this.#channels, channel, client);
    return true;
  }

  psubscribe(client: RespClient<Context>, pattern: string): void {
    client.patterns.add(pattern);
    this.#join(this.#patterns, pattern, client);
  }

  punsubscribe(client: RespClient<Context>, pattern: string): boolean {
    if (!client.patterns.delete(pattern)) return false;
    this.#leave(this.#patterns, pattern, client);
    return true;
  }

  /** Channels with at least one subscriber, optionally matching a glob pattern. */
  activeChannels(pattern?: string): string[] {
    const all = [...this.#channels.keys()];
    return pattern === undefined ? all : all.filter((channel) => globMatch(pattern, channel));
  }

  subscriberCount(channel: string): number {
    return this.#channels.get(channel)?.size ?? 0;
  }

  get patternCount(): number {
    return this.#patterns.size;
  }

  /**
   * Publish a message (also from application code, outside any command). Returns the number of
   * clients that received it. Subscribers that fall behind past the pub/sub limits are dropped.
   */
  // ---- keyspace notifications ---------------------------------------------------------------

  /** Redis's `notify-keyspace-events` as text (`KEA`, `Elg`…); '' when off (the default). */
  get keyspaceEvents(): string {
    return formatKeyspaceEvents(this.#keyspaceEvents);
  }

  /** Set `notify-keyspace-events`; false (nothing changed) when a letter names no class. */
  setKeyspaceEvents(text: string): boolean {
    const flags = parseKeyspaceEvents(text);
    if (flags === undefined) return false;
    this.#keyspaceEvents = flags;
    return true;
  }

  /**
   * Tell subscribers that `event` happened to `key` in `db` (Redis's notifyKeyspaceEvent): when
   * `kind` is enabled, publishes `event` on `__keyspace@<db>__:<key>` (K) and `key` on
   * `__keyevent@<db>__:<event>` (E). Costs one bit test while notifications are off.
   */
  notifyKeyspaceEvent(kind: KeyspaceEventClass, event: string, key: string | Buffer, db: number): void {
    const flags = this.#keyspaceEvents;
    if ((flags & classBit(kind)) === 0) return;
    const name = typeof key === 'string' ? Buffer.from(key, 'latin1') : key;
    if (flags & KEYSPACE) this.publish(Buffer.concat([Buffer.from(`__keyspace@${db}__:`), name]), event);
    if (flags & KEYEVENT) this.publish(`__keyevent@${db}__:${event}`, name);
  }

  publish(channel: string | Buffer, message: string | Buffer): number {
    const name = typeof channel === 'string' ? channel : channel.toString('latin1');
    const channelBytes = typeof channel === 'string' ? Buffer.from(channel, 'latin1') : channel;
    let received = 0;
    for (const client of this.#channels.get(name) ?? []) {
      received++;
      // A client being closed gets no more output (Redis: CLIENT_CLOSE_AFTER_REPLY / CLOSE_ASAP).
      if (client.closing) continue;
      const out = client.pushWriter();
      out.push(3).bulk('message').bulk(channelBytes).bulk(message);
      this.#delivered(client);
    }
    for (const [pattern, clients] of this.#patterns) {
      if (!globMatch(pattern, name)) continue;
      for (const client of clients) {
        received++;
        if (client.closing) continue;
        const out = client.pushWriter();
        out.push(4).bulk('pmessage').bulk(Buffer.from(pattern, 'latin1')).bulk(channelBytes).bulk(message);
        this.#delivered(client);
      }
    }
    return received;
  }

  #delivered(client: RespClient<Context>): void {
    client.flush();
    const limits = this.options.pubsubLimits ?? { hardBytes: 32 * 1024 * 1024, softBytes: 8 * 1024 * 1024, softSeconds: 60 };
    const used = client.outputBytes;
    if (limits.hardBytes > 0 && used >= limits.hardBytes) {
      this.#overLimit(client, used);
      return;
    }
    if (limits.softBytes > 0 && used >= limits.softBytes) {
      const now = Date.now();
      if (client.softLimitSince === 0) {
        client.softLimitSince = now;
        this.#watchSoftLimits(limits.softSeconds);
      } else if (now - client.softLimitSince > limits.softSeconds * 1000) {
        this.#overLimit(client, used);
      }
    } else {
      client.softLimitSince = 0;
    }
  }

  #overLimit(client: RespClient<Context>, used: number): void {
    // Once per client: it stays subscribed until its socket's 'close', and later publishes or
    // the soft-limit timer must not log it again.
    if (this.#cutOff.has(client)) return;
    this.#cutOff.add(client);
    this.logger.warn({ client: client.id, outputBytes: used }, 'subscriber closed for overcoming of output buffer limits');
    client.kill();
  }

  /** A subscriber over the soft limit is closed after softSeconds even if no new message comes. */
  #watchSoftLimits(softSeconds: number): void {
    if (this.#softLimitTimer !== undefined) return;
    this.#softLimitTimer = setInterval(() => {
      let over = 0;
      for (const client of this.#clients.values()) {
        if (client.softLimitSince === 0) continue;
        if (client.outputBytes < (this.options.pubsubLimits?.softBytes ?? 8 * 1024 * 1024)) client.softLimitSince = 0;
        else if (Date.now() - client.softLimitSince > softSeconds * 1000) this.#overLimit(client, client.outputBytes);
        else over++;
      }
      if (over === 0) {
        clearInterval(this.#softLimitTimer);
        this.#softLimitTimer = undefined;
      }
    }, 1000);
    this.#softLimitTimer.unref();
  }

  #join(index: Map<string, Set<RespClient<Context>>>, key: string, client: RespClient<Context>): void {
    let set = index.get(key);
    if (set === undefined) {
      set = new Set();
      index.set(key, set);
    }
    set.add(client);
  }

  #leave(index: Map<string, Set<RespClient<Context>>>, key: string, client: RespClient<Context>): void {
    const set = index.get(key);
    if (set === undefined) return;
    set.delete(client);
    if (set.size === 0) index.delete(key);
  }

  // ---- WATCH ---------------------------------------------------------------------------------

  /** WATCH: the transaction of `client` aborts if `key` in `db` is touched before EXEC. */
  watch(client: RespClient<Context>, db: number, key: string): void {
    const id = `${db}\u0000${key}`;
    client.watched.add(id);
    this.#join(this.#watchers, id, client);
  }

  unwatch(client: RespClient<Context>): void {
    for (const id of client.watched) this.#leave(this.#watchers, id, client);
    client.watched.clear();
    client.watchDirty = false;
  }

  /** Call on every write to a key: transactions watching it will abort (Redis's touchWatchedKey). */
  touch(db: number, key: string): void {
    // Client-side caching: tracking is not per database, as in Redis.
    if (this.tracking.active) this.tracking.invalidate(key);
    if (this.#watchers.size === 0) return;
    for (const client of this.#watchers.get(`${db}\u0000${key}`) ?? []) client.watchDirty = true;
  }

  /**
   * Call before a whole database (or every one, with -1) is flushed. With `exists(db, key)`, only
   * the watched keys that exist are touched, as Redis's touchAllWatchedKeysInDb (a WATCH on a
   * missing or expired key survives FLUSHALL); without it, every watched key in those databases.
   */
  touchAll(db: number, exists?: (db: number, key: string) => boolean): void {
    for (const [id, clients] of this.#watchers) {
      const separator = id.indexOf('\u0000');
      const keyDb = Number(id.slice(0, separator));
      if (db !== -1 && keyDb !== db) continue;
      if (exists !== undefined && !exists(keyDb, id.slice(separator + 1))) continue;
      for (const client of clients) client.watchDirty = true;
    }
  }
}

/** Create a {@link RespAdapter}. */
export function respAdapter<Context = Record<string, unknown>>(options: RespOptions<Context> = {}): RespAdapter<Context> {
  return new RespAdapter<Context>(options);
}

/** A limit in bytes from the options: a positive number, or a ConfigError naming the option. */
function byteLimit(option: string, value: number | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !(value > 0))
    throw new ConfigError(`respAdapter({ ${option} })`, value, 'must be a positive number of bytes');
  return value;
}

/** A count from the options: an integer, 0 or more, or a ConfigError naming the option. */
function nonNegative(option: string, value: number | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0)
    throw new ConfigError(`respAdapter({ ${option} })`, value, 'must be an integer, 0 or more');
  return value;
}

/** The keys of a call: `keysOf`, else the `keys` [first, last, step] triple (last -1: the last argument). */
export function commandKeys<C>(spec: CommandOptions | CommandSpec<C>, argv: Command): readonly Buffer[] {
  if (spec.keysOf !== undefined) return spec.keysOf(argv);
  const range = spec.keys;
  if (range === undefined) return [];
  const [first, lastSpec, step] = range;
  if (first <= 0) return [];
  const last = lastSpec < 0 ? argv.length + lastSpec : lastSpec;
  const keys: Buffer[] = [];
  for (let i = first; i <= last && i < argv.length; i += Math.max(step, 1)) keys.push(argv[i] as Buffer);
  return keys;
}

/** `pubsubLimits`: byte counts and seconds that are 0 (no limit) or more, as Redis's client-output-buffer-limit. */
function checkPubsubLimits(limits: RespOptions['pubsubLimits']): void {
  if (limits === undefined) return;
  if (typeof limits !== 'object' || limits === null)
    throw new ConfigError('respAdapter({ pubsubLimits })', limits, 'must be { hardBytes, softBytes, softSeconds }');
  for (const key of ['hardBytes', 'softBytes', 'softSeconds'] as const) {
    const value = limits[key];
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0)
      throw new ConfigError(`respAdapter({ pubsubLimits: { ${key} } })`, value, 'must be a number, 0 (no limit) or more');
  }
}

/** `client|list` for a container command's known subcommand, else the command's name. */
function fullName<Context>(spec: CommandSpec<Context>, argv: Command): string {
  const sub = argv[1];
  if (sub === undefined || sub.length > 64) return spec.name;
  const lower = sub.toString('latin1').toLowerCase();
  return spec.subcommands !== undefined && Object.hasOwn(spec.subcommands, lower) ? `${spec.name}|${lower}` : spec.name;
}

/** Arguments redacted in MONITOR output (Redis's redactClientCommandArgument): passwords. */
function redacted(name: string, argv: Command, i: number): boolean {
  if (name === 'auth') return i >= 1;
  if (name === 'hello') {
    // HELLO <proto> AUTH <user> <pass> [SETNAME name]: the two words after AUTH.
    for (let j = 2; j < argv.length && j < i; j++) {
      if ((argv[j] as Buffer).toString('latin1').toUpperCase() === 'AUTH') {
        if (i === j + 1 || i === j + 2) return true;
        j += 2;
      } else if ((argv[j] as Buffer).toString('latin1').toUpperCase() === 'SETNAME') j += 1;
    }
  }
  return false;
}

/** One MONITOR line, without the `+` and CRLF: time with microseconds, db and address, each argument quoted. */
export function monitorLine(db: number, addr: string, name: string, argv: Command): string {
  const micros = Math.floor((performance.timeOrigin + performance.now()) * 1000);
  let line = `${Math.floor(micros / 1e6)}.${String(micros % 1e6).padStart(6, '0')} [${db} ${addr}]`;
  for (let i = 0; i < argv.length; i++) line += ` ${redacted(name, argv, i) ? '"(redacted)"' : quoteArg(argv[i] as Buffer)}`;
  return line;
}

/** sds.c, sdscatrepr: in double quotes, `\\ \" \n \r \t \a \b` escaped, other unprintable bytes as `\xHH`. */
export function quoteArg(arg: Buffer): string {
  let out = '"';
  for (let i = 0; i < arg.length; i++) {
    const byte = arg[i] as number;
    if (byte === 0x5c) out += '\\\\';
    else if (byte === 0x22) out += '\\"';
    else if (byte === 0x0a) out += '\\n';
    else if (byte === 0x0d) out += '\\r';
    else if (byte === 0x09) out += '\\t';
    else if (byte === 0x07) out += '\\a';
    else if (byte === 0x08) out += '\\b';
    else if (byte >= 0x20 && byte <= 0x7e) out += String.fromCharCode(byte);
    else out += `\\x${byte.toString(16).padStart(2, '0')}`;
  }
  return `${out}"`;
}

/** Redis 7's text: the name cut to 128 bytes, then arguments quoted, within a 128-byte budget. */
function unknownCommand(argv: Command): string {
  const cut = (buffer: Buffer, max: number): string => {
    const nul = buffer.indexOf(0);
    return buffer.toString('latin1', 0, Math.min(nul === -1 ? buffer.length : nul, max));
  };
  let args = '';
  for (let i = 1; i < argv.length && args.length < 128; i++) args += `'${cut(argv[i] as Buffer, 128 - args.length)}' `;
  return `ERR unknown command '${cut(argv[0] as Buffer, 128)}', with args beginning with: ${args}`;
}

/** Redis before 7.2 printed doubles with printf("%.17g"); 7.2 (#10587) switched to the shortest round-trip text. */
function doubleFormatOf(version: string): DoubleFormat {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  return major > 7 || (major === 7 && minor >= 2) ? 'shortest' : '%.17g';
}
