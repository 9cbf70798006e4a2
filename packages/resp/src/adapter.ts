import type { Socket } from 'node:net';
import { getHeapStatistics } from 'node:v8';
import type { Adapter, BindingContext, Bus, Connection, Logger } from '@portbind/core';
import { ConfigError, silentLogger } from '@portbind/core';
import { clientAddress } from './address.js';
import { AuthPolicy, DENIED, UNAUTHENTICATED_QUERY_LIMIT } from './auth.js';
import { type ClientHost, RespClient } from './client.js';
import { Cluster, type ClusterOptions, type ClusterState, registerClusterCommands } from './cluster.js';
import { registerBuiltins } from './commands/index.js';
import { builtinSections } from './commands/info.js';
import { type CommandStats, Dispatcher, type PreRunCheck } from './dispatch.js';
import type { BuiltinHost, InfoFields, ServerStats } from './host.js';
import { Monitors } from './monitor.js';
import { classBit, formatKeyspaceEvents, KEYEVENT, KEYSPACE, type KeyspaceEventClass, parseKeyspaceEvents } from './notify.js';
import { type Command, parserDefaults, RequestParser } from './parser.js';
import { ClientPause } from './pause.js';
import { PubSub, type RespBusOptions } from './pubsub.js';
import { type CommandHandler, type CommandOptions, CommandRegistry, type CommandSpec } from './registry.js';
import type { DoubleFormat } from './reply.js';
import type { SlowLog } from './slowlog.js';
import { DEFAULT_TRACKING_MAX_KEYS, Tracking } from './tracking.js';
import { Watches } from './watch.js';

// The adapter: options, the connection lifecycle (accept, protected mode, query buffer limits,
// drain, close) and the public API. The parts live in their own files: the command table
// (registry.ts), dispatch (dispatch.ts), authentication (auth.ts), the pub/sub broker
// (pubsub.ts), WATCH (watch.ts), client-side caching (tracking.ts), MONITOR (monitor.ts),
// CLIENT PAUSE (pause.ts) and the built-in commands (commands/*, on the host.ts interface).

export type { InfoFields } from './host.js';
export type { CommandFlag, CommandHandler, CommandOptions, CommandSpec } from './registry.js';

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
  /**
   * Cluster mode (cluster.ts): the service describes itself as a Redis Cluster (CLUSTER SLOTS…) and
   * answers -MOVED / -CROSSSLOT where a command's declared keys demand it. Off by default.
   */
  cluster?: ClusterOptions;
  /**
   * Pub/sub across processes (pubsub.ts): PUBLISH reaches the SUBSCRIBE/PSUBSCRIBE clients of every
   * process sharing the bus (`redisBus` of `@portbind/bus-redis`), SPUBLISH goes by slot, and PUBSUB
   * CHANNELS/NUMSUB/NUMPAT answer for the whole service. Without it, pub/sub stays in this process.
   */
  bus?: Bus | RespBusOptions;
}

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
  /**
   * Workers (`WORKERS`): an application's keyspace, MONITOR, CLIENT LIST/KILL and WATCH live in this
   * process's memory (pub/sub too, without a `bus`), so workers are refused unless the binding says
   * `{ scope: 'shared' }` — right for a service that keeps no state between connections in memory and
   * shares pub/sub through a `bus`.
   */
  readonly scope: 'shared' | 'local' = 'local';
  /** Redis's defaults: maxclients 10000, timeout 0. */
  readonly limits = { maxConnections: 10_000, idleTimeoutMs: 0 };
  readonly options: Readonly<RespOptions<Context>>;
  readonly outputHighWaterMark: number;
  readonly databases: number;
  readonly serverVersion: string;
  /** Doubles as the reported version prints them: `%.17g` before 7.2, the shortest text from 7.2 (networking.c, addReplyDouble). */
  readonly doubleFormat: DoubleFormat;
  /** `queryBufferLimit` in force: a server may change it at run time (CONFIG SET client-query-buffer-limit). */
  queryBufferLimit: number;
  readonly totalQueryBufferLimit: number;
  logger: Logger = silentLogger;
  /** Client-side caching: CLIENT TRACKING's table, prefixes and invalidation messages. */
  readonly tracking: Tracking<Context>;
  /** Cluster mode's slot map (`setNodes` replaces it); undefined when the `cluster` option is not given. */
  readonly cluster: ClusterState | undefined;
  /** INFO stats, counted where the adapter sees them. */
  readonly stats: ServerStats = {
    connectionsReceived: 0,
    rejectedConnections: 0,
    commandsProcessed: 0,
    netInputBytes: 0,
    netOutputBytes: 0,
    errorReplies: 0,
  };
  readonly #clients = new Map<number, RespClient<Context>>();
  readonly #registry = new CommandRegistry<Context>();
  readonly #watches = new Watches<Context>();
  readonly #monitors = new Monitors<Context>();
  readonly #pause = new ClientPause<Context>(this.#registry);
  readonly #auth: AuthPolicy<Context>;
  readonly #pubsub: PubSub<Context>;
  readonly #dispatcher: Dispatcher<Context>;
  /** What the built-in commands see of this adapter. */
  readonly #host: BuiltinHost<Context>;
  /** Sections the application adds to INFO (or fields it adds to, or overrides in, a built-in one). */
  readonly #infoSections = new Map<string, Array<() => InfoFields>>();
  /** The application's pre-run checks (dispatch.ts; `addCheck`); cluster mode's slot check runs before them. */
  readonly #checks: Array<PreRunCheck<Context>> = [];
  /** The application's CONFIG RESETSTAT hooks (`onResetStats`). */
  readonly #resetHooks: Array<() => void> = [];
  #keyspaceEvents = 0;
  #queryTotal = 0;
  #binding: BindingContext | undefined;

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
    const adapter = this;
    const clients = this.#clients;
    const registry = this.#registry;
    this.#auth = new AuthPolicy<Context>(options, clients);
    this.#pubsub = new PubSub<Context>({
      clients,
      limits: options.pubsubLimits,
      bus: options.bus,
      get logger() {
        return adapter.logger;
      },
    });
    this.tracking = new Tracking<Context>({
      clients,
      get currentClient() {
        return dispatcher.current;
      },
    });
    this.tracking.maxKeys = nonNegative('trackingTableMaxKeys', options.trackingTableMaxKeys) ?? DEFAULT_TRACKING_MAX_KEYS;
    const prefixes = nonNegative('trackingMaxPrefixes', options.trackingMaxPrefixes);
    if (prefixes !== undefined) this.tracking.maxPrefixes = prefixes;
    const cluster =
      options.cluster &&
      new Cluster<Context>(options.cluster, {
        lookup: (name) => registry.lookup(name),
        unwatch: (client) => this.#watches.unwatch(client),
      });
    this.cluster = cluster;
    const dispatcher = new Dispatcher<Context>({
      checks: this.#checks,
      clusterCheck: cluster ? (client, spec, argv) => cluster.check(client, spec, argv) : undefined,
      registry,
      auth: this.#auth,
      pubsub: this.#pubsub,
      pause: this.#pause,
      monitors: this.#monitors,
      tracking: this.tracking,
      watches: this.#watches,
      stats: this.stats,
      outOfMemory: options.outOfMemory,
      get logger() {
        return adapter.logger;
      },
    });
    this.#dispatcher = dispatcher;
    this.#host = {
      command: (name, commandOptions, handler) => this.command(name, commandOptions, handler),
      lookup: (name) => registry.lookup(name),
      get commands() {
        return registry.values();
      },
      run: (client, spec, argv) => dispatcher.run(client, spec, argv),
      clients,
      databases: this.databases,
      serverVersion: this.serverVersion,
      clusterEnabled: cluster !== undefined,
      get maxClients() {
        return adapter.limits.maxConnections;
      },
      auth: this.#auth,
      pubsub: this.#pubsub,
      watches: this.#watches,
      tracking: this.tracking,
      // Through the adapter's methods, so that code following startMonitor/stopMonitor sees MONITOR's too.
      monitors: { start: (client) => this.startMonitor(client), stop: (client) => this.stopMonitor(client) },
      pause: this.#pause,
      stats: this.stats,
      commandStats: dispatcher.commandStats,
      errorStats: dispatcher.errorStats,
      infoSections: this.#infoSections,
    };
    registerBuiltins(this.#host);
    registerClusterCommands(this.#host, cluster);
    if (cluster) this.infoSection('cluster', () => [['cluster_enabled', 1]]).infoSection('server', () => [['redis_mode', 'cluster']]);
  }

  // ---- commands ------------------------------------------------------------------------------

  /** Register (or replace) a command. Names are case-insensitive. */
  command(name: string, options: CommandOptions, handler: CommandHandler<Context>): this {
    this.#registry.add(name, options, handler);
    return this;
  }

  /** The registered command of that name (lowercase), if any. */
  lookup(name: string): CommandSpec<Context> | undefined {
    return this.#registry.lookup(name);
  }

  /** Every registered command. */
  get commands(): IterableIterator<CommandSpec<Context>> {
    return this.#registry.values();
  }

  /** Dispatch one command, in Redis's order of checks (dispatch.ts). */
  execute(own: RespClient<Context>, argv: Command): void | Promise<void> {
    return this.#dispatcher.execute(own, argv);
  }

  /** Run a command's handler and write its result or error (EXEC uses this for queued commands). */
  run(client: RespClient<Context>, spec: CommandSpec<Context>, argv: Command): void | Promise<void> {
    return this.#dispatcher.run(client, spec, argv);
  }

  /** INFO commandstats: per command (`client|list` for a subcommand), as Redis counts them. */
  get commandStats(): Map<string, CommandStats> {
    return this.#dispatcher.commandStats;
  }

  /**
   * Add a check made on every command before it runs or MULTI queues it, as Redis's processCommand
   * refuses a write on a replica: return the error text to refuse it with (`READONLY You can't
   * write against a read only replica.`), or undefined to let it go on. Runs after arity, auth and
   * OOM (and cluster mode's slot check), before CLIENT PAUSE: a command refused while queued in
   * MULTI makes EXEC answer `-EXECABORT`; EXEC itself is checked too (its commands are in
   * `client.multi`). Returns a function that removes the check.
   */
  addCheck(check: PreRunCheck<Context>): () => void {
    this.#checks.push(check);
    return () => {
      const at = this.#checks.indexOf(check);
      if (at !== -1) this.#checks.splice(at, 1);
    };
  }

  /**
   * CONFIG RESETSTAT: zero INFO's counters the adapter keeps (commandstats, errorstats,
   * total_error_replies, total_commands_processed, total_connections_received,
   * rejected_connections, net input and output bytes), then run the hooks added with
   * `onResetStats` (an application's keyspace hits, evicted keys…).
   */
  resetStats(): void {
    // Zeroed in place (Redis's resetCommandTableStats): the running CONFIG RESETSTAT counts itself after.
    for (const counts of this.#dispatcher.commandStats.values()) counts.calls = counts.usec = counts.rejected = counts.failed = 0;
    this.#dispatcher.errorStats.clear();
    this.stats.errorReplies = 0;
    this.stats.connectionsReceived = 0;
    this.stats.rejectedConnections = 0;
    this.stats.commandsProcessed = 0;
    this.stats.netInputBytes = 0;
    this.stats.netOutputBytes = 0;
    for (const hook of this.#resetHooks) {
      try {
        hook();
      } catch (error) {
        this.logger.error({ err: error }, 'onResetStats hook failed');
      }
    }
  }

  /**
   * Count an error reply a handler wrote itself (`client.reply.error(…)`) in INFO errorstats and
   * total_error_replies; errors a handler throws or returns, and dispatch's refusals, are counted already.
   */
  countError(message: string): void {
    this.#dispatcher.countError(message);
  }

  /** Run `hook` on every `resetStats()` (CONFIG RESETSTAT): zero your own INFO counters there. */
  onResetStats(hook: () => void): this {
    this.#resetHooks.push(hook);
    return this;
  }

  // ---- clients and authentication ------------------------------------------------------------

  /** Connected clients by id. */
  get clients(): ReadonlyMap<number, RespClient<Context>> {
    return this.#clients;
  }

  /** True when clients must authenticate (a password, users or a check is configured). */
  get authConfigured(): boolean {
    return this.#auth.configured;
  }

  authRequired(client: RespClient<Context>): boolean {
    return this.#auth.required(client);
  }

  /**
   * Whether a user of that name exists (CLIENT KILL USER): `default`, one of `users`, or (with
   * your own `authenticate`) one a connected client authenticated as.
   */
  userExists(user: string): boolean {
    return this.#auth.userExists(user);
  }

  /** Check credentials; the default user has the configured `password`. */
  checkCredentials(user: string, password: string, client: RespClient<Context>): Promise<boolean> {
    return this.#auth.check(user, password, client);
  }

  // ---- lifecycle -----------------------------------------------------------------------------

  open(binding: BindingContext): void {
    this.#binding = binding;
    this.logger = binding.logger;
  }

  connection(conn: Connection): void {
    const socket = conn.socket;
    if (this.#auth.refuses(conn)) {
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
    const context = this.options.context ? this.options.context(conn) : undefined; // RespClient makes {} on first use
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
    if (client !== undefined && this.#pubsub.isSubscribed(client)) return;
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

  url(base: string): string {
    return base;
  }

  closed(own: RespClient<Context>): void {
    this.#clients.delete(own.id);
    if (own.monitoring) this.stopMonitor(own);
    this.#pubsub.leaveAll(own);
    this.#watches.unwatch(own);
    this.tracking.disable(own);
    this.#dispatcher.forget(own);
    this.#queryTotal -= own.accountedQuery;
    own.accountedQuery = 0;
  }

  // ---- query buffer limits -------------------------------------------------------------------

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
    const limit = this.#auth.required(client) ? Math.min(UNAUTHENTICATED_QUERY_LIMIT, this.queryBufferLimit) : this.queryBufferLimit;
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

  // ---- CLIENT PAUSE, MONITOR -----------------------------------------------------------------

  /**
   * CLIENT PAUSE: hold every command (`all`) or the write ones (`write`) of every client until
   * `end` (ms since the epoch). A second pause never shortens the first nor turns `all` into
   * `write` (networking.c, pauseClients).
   */
  pause(end: number, type: 'write' | 'all'): void {
    this.#pause.pause(end, type);
  }

  /** CLIENT UNPAUSE (or the pause's end): held commands run, in the order they came. */
  unpause(): void {
    this.#pause.unpause();
  }

  /** What CLIENT PAUSE holds now: `write`, `all`, or undefined. */
  get paused(): 'write' | 'all' | undefined {
    return this.#pause.type;
  }

  /**
   * The slow log: commands that ran at least `slowLog.slowerThanUs` µs (default 10,000; negative: off), the newest
   * `slowLog.maxLen` (128) kept. The adapter fills it; a SLOWLOG command of the application's reads it.
   */
  get slowLog(): SlowLog {
    return this.#dispatcher.slowLog;
  }

  /** Clients whose command CLIENT PAUSE holds now (Redis counts them in INFO's `blocked_clients`). */
  get pausedClients(): number {
    return this.#pause.heldClients;
  }

  /** MONITOR: from now on `client` receives every command run (not admin ones), as Redis prints them. */
  startMonitor(client: RespClient<Context>): void {
    this.#monitors.start(client);
  }

  /** Leave MONITOR mode (RESET, or the connection closed). */
  stopMonitor(client: RespClient<Context>): void {
    this.#monitors.stop(client);
  }

  /** Clients in MONITOR mode now. */
  get monitorCount(): number {
    return this.#monitors.size;
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
    return builtinSections(this.#host).get(section.toLowerCase());
  }

  /** @internal The application's sections and fields, for the built-in INFO. */
  get infoSections(): ReadonlyMap<string, ReadonlyArray<() => InfoFields>> {
    return this.#infoSections;
  }

  // ---- pub/sub (pubsub.ts) -------------------------------------------------------------------

  subscribe(client: RespClient<Context>, channel: string): void {
    this.#pubsub.subscribe(client, channel);
  }

  unsubscribe(client: RespClient<Context>, channel: string): boolean {
    return this.#pubsub.unsubscribe(client, channel);
  }

  psubscribe(client: RespClient<Context>, pattern: string): void {
    this.#pubsub.psubscribe(client, pattern);
  }

  punsubscribe(client: RespClient<Context>, pattern: string): boolean {
    return this.#pubsub.punsubscribe(client, pattern);
  }

  /** Channels with at least one subscriber, optionally matching a glob pattern. */
  activeChannels(pattern?: string): string[] {
    return this.#pubsub.activeChannels(pattern);
  }

  subscriberCount(channel: string): number {
    return this.#pubsub.subscriberCount(channel);
  }

  get patternCount(): number {
    return this.#pubsub.patternCount;
  }

  /**
   * Publish a message (also from application code, outside any command). Returns the number of
   * clients that received it. Subscribers that fall behind past the pub/sub limits are dropped.
   */
  publish(channel: string | Buffer, message: string | Buffer): number {
    return this.#pubsub.publish(channel, message);
  }

  /** SPUBLISH from application code: to the shard channel's subscribers (SSUBSCRIBE); the number reached. */
  spublish(channel: string | Buffer, message: string | Buffer): number {
    return this.#pubsub.spublish(channel, message);
  }

  /** Shard channels with at least one subscriber, optionally matching a glob pattern. */
  activeShardChannels(pattern?: string): string[] {
    return this.#pubsub.activeShardChannels(pattern);
  }

  /** True while `client` is subscribed to a channel, a pattern or a shard channel (Redis's subscribed mode). */
  isSubscribed(client: RespClient<Context>): boolean {
    return this.#pubsub.isSubscribed(client);
  }

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
   * `__keyevent@<db>__:<event>` (E). Costs one bit test while notifications are off. Only to this
   * process's subscribers, with a bus too: the keys are this process's (Redis Cluster's nodes each
   * notify their own subscribers, notify.c; clients subscribe on every node).
   */
  notifyKeyspaceEvent(kind: KeyspaceEventClass, event: string, key: string | Buffer, db: number): void {
    const flags = this.#keyspaceEvents;
    if ((flags & classBit(kind)) === 0) return;
    const name = typeof key === 'string' ? Buffer.from(key, 'latin1') : key;
    if (flags & KEYSPACE) this.#pubsub.publishLocal(Buffer.concat([Buffer.from(`__keyspace@${db}__:`), name]), event);
    if (flags & KEYEVENT) this.#pubsub.publishLocal(`__keyevent@${db}__:${event}`, name);
  }

  // ---- WATCH (watch.ts) and client-side caching (tracking.ts) --------------------------------

  /** WATCH: the transaction of `client` aborts if `key` in `db` is touched before EXEC. */
  watch(client: RespClient<Context>, db: number, key: string): void {
    this.#watches.watch(client, db, key);
  }

  unwatch(client: RespClient<Context>): void {
    this.#watches.unwatch(client);
  }

  /** Call on every write to a key: transactions watching it will abort (Redis's touchWatchedKey), tracking clients are told. */
  touch(db: number, key: string): void {
    // Client-side caching: tracking is not per database, as in Redis.
    if (this.tracking.active) this.tracking.invalidate(key);
    this.#watches.touch(db, key);
  }

  /**
   * Call before a whole database (or every one, with -1) is flushed. With `exists(db, key)`, only
   * the watched keys that exist are touched, as Redis's touchAllWatchedKeysInDb (a WATCH on a
   * missing or expired key survives FLUSHALL); without it, every watched key in those databases.
   */
  touchAll(db: number, exists?: (db: number, key: string) => boolean): void {
    this.#watches.touchAll(db, exists);
  }

  /**
   * FLUSHDB / FLUSHALL: every client tracking keys gets a null invalidation (its whole cache goes),
   * and the tracking table is emptied (tracking.c, trackingInvalidateKeysOnFlush).
   */
  invalidateAll(): void {
    this.tracking.flushed();
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

/** Redis before 7.2 printed doubles with printf("%.17g"); 7.2 (#10587) switched to the shortest round-trip text. */
function doubleFormatOf(version: string): DoubleFormat {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  return major > 7 || (major === 7 && minor >= 2) ? 'shortest' : '%.17g';
}
