import { type Adapter, type Binding, type Bus, PortService, type PortServiceOptions } from '@portbind/core';
import { httpAdapter } from '@portbind/http';
import { type RespAdapter, respAdapter } from '@portbind/resp';
import { registerAof } from './aof.js';
import { BlockedClients } from './blocking.js';
import { respBusOptions } from './bus.js';
import { clusterOptions, registerCluster } from './cluster.js';
import { registerBitmapCommands } from './commands/bitmaps.js';
import { registerDumpCommands } from './commands/dump.js';
import { registerGeoCommands } from './commands/geo.js';
import { registerHashCommands } from './commands/hashes.js';
import { registerHyperLogLogCommands } from './commands/hyperloglog.js';
import { registerKeyCommands } from './commands/keys.js';
import { registerListCommands } from './commands/lists.js';
import { registerMigrateCommands } from './commands/migrate.js';
import { registerReplicationCommands } from './commands/replication.js';
import { registerScriptingCommands } from './commands/scripting.js';
import { registerServerCommands } from './commands/server.js';
import { registerSetCommands } from './commands/sets.js';
import { registerSortCommands } from './commands/sort.js';
import { registerStreamCommands } from './commands/streams.js';
import { registerStringCommands } from './commands/strings.js';
import { registerTransactionCommands } from './commands/transactions.js';
import { registerSortedSetCommands } from './commands/zsets.js';
import type { Config, InfoSections } from './config.js';
import { Encodings } from './encodings.js';
import { Eviction, registerEviction } from './eviction.js';
import { registerExpiry } from './expire.js';
import { installPropagation, type Propagation } from './propagate.js';
import type { FunctionLibraries } from './rdb.js';
import { asRedisDeclares } from './redis-table.js';
import { registerSnapshot } from './snapshot.js';
import { Keyspace } from './store.js';

/** What each command file registers its commands with. */
export interface MiniRedis {
  /** The RESP adapter: `resp.command(…)` adds a command; `resp.touch(db, key)` after every write (WATCH). */
  readonly resp: RespAdapter;
  /** The data: `keyspace.db(client.db)`. */
  readonly keyspace: Keyspace;
  /** The encodings OBJECT ENCODING reports, and the CONFIG limits that choose them. */
  readonly encodings: Encodings;
  /** Redis's `maxmemory` (0: no limit; CONFIG SET maxmemory): past it, `denyoom` commands get -OOM. */
  readonly memory: { maxmemory: number };
  /** Clients blocked in BLPOP/BRPOP. */
  readonly blocked: BlockedClients;
  /** The RESP binding: its address, and the connection limits CONFIG SET changes. */
  readonly binding: Binding;
  readonly startedAt: number;
  /** CONFIG GET/SET's parameters: a file with parameters of its own adds them here (config.ts). */
  readonly config: Config;
  /** INFO's sections, in order: a file replaces a section (`info.set('persistence', …)`) or adds one. */
  readonly info: InfoSections;
  /** The environment mini-redis was started with (DATA_DIR, …). */
  readonly env: NodeJS.ProcessEnv;
  /** Command propagation to the AOF and replicas: `rewrite`/`prevent`/`also` in a handler (propagate.ts). */
  readonly propagation: Propagation;
  /** The function libraries as an RDB file holds them (set by registerScriptingCommands; rdb.ts). */
  functions?: FunctionLibraries;
}

/** createMiniRedis's options: the service's, and the bus to the other processes. */
export interface MiniRedisOptions extends PortServiceOptions {
  /**
   * The bus shared with the other mini-redis processes of the service (`connectBus` of bus.ts, from
   * BUS_URL): PUBLISH, SUBSCRIBE/PSUBSCRIBE and PUBSUB span them, under BUS_NAMESPACE. The service
   * closes it once it has stopped. Absent: pub/sub stays in this process.
   */
  bus?: Bus | undefined;
}

/**
 * mini-redis: Redis clients connect on RESP_PORT (default 6379; HOST chooses the interface),
 * and PORT (default 5000) serves the HTTP health endpoints /livez and /readyz.
 * Set REQUIREPASS to make clients authenticate. Without it, as in Redis's protected mode, only
 * clients on this host may connect, unless PROTECTED_MODE=no (behind your own firewall).
 */
export function createMiniRedis(options: MiniRedisOptions = {}): PortService {
  const { bus, ...serviceOptions } = options;
  const env = serviceOptions.env ?? process.env;
  const service = new PortService(serviceOptions);
  let blocked: BlockedClients | undefined;
  let eviction: Eviction | undefined;
  const memory = { maxmemory: 0 };
  const resp = respAdapter({
    // Past maxmemory (the running size estimate of the data, eviction.ts), evict by the policy;
    // -OOM when nothing more can go.
    outOfMemory: () => eviction?.perform() === false,
    password: env['REQUIREPASS'] || undefined,
    protectedMode: env['PROTECTED_MODE'] !== 'no',
    serverVersion: '7.0.15', // the Redis whose replies mini-redis reproduces
    cluster: clusterOptions(env, (): Keyspace => keyspace), // CLUSTER_ENABLED=yes (cluster.ts)
    // BUS_URL: pub/sub across the processes sharing the bus (bus.ts).
    ...(bus === undefined ? {} : { bus: respBusOptions(env, bus) }),
    // On stop, answer clients blocked in BLPOP as on a timeout (else they would hold the graceful
    // stop until the grace period ends), and stop the expiry timer.
    onDrain: () => {
      blocked?.releaseAll();
      keyspace.stopExpiry();
    },
  });
  // An expired key counts as written for WATCH, as in Redis; INFO stats counts it (expired_keys).
  let expiredKeys = 0;
  const keyspace = new Keyspace(
    resp.databases,
    (db, key) => {
      expiredKeys++;
      resp.touch(db, key);
      resp.notifyKeyspaceEvent('expired', 'expired', key, db);
    },
    (db, key) => resp.notifyKeyspaceEvent('new', 'new', key, db),
  );
  // Every write reaches resp.touch (for WATCH): it also tells the encodings, so a hash, set or
  // sorted set keeps the big encoding once a write took it past a limit, as in Redis.
  const encodings = new Encodings();
  const touch = resp.touch.bind(resp);
  resp.touch = (db, key) => {
    const database = keyspace.db(db);
    encodings.wrote(database.values.get(key));
    database.resize(key);
    touch(db, key);
  };
  // The commands Redis flags CMD_DENYOOM (they may use more memory) get the flag here too, and
  // what else COMMAND INFO shows of them as Redis (redis-table.ts).
  const register = resp.command.bind(resp);
  resp.command = (name, options, handler) => register(name, asRedisDeclares(name.toLowerCase(), options), handler);
  // Write commands registered from here on replay to the AOF and replicas (propagate.ts).
  const propagation = installPropagation(resp);
  const server: MiniRedis = {
    resp,
    keyspace,
    encodings,
    memory,
    blocked: new BlockedClients(resp, keyspace),
    binding: service.bind(resp),
    startedAt: Date.now(),
    config: new Map(),
    info: new Map(),
    env,
    propagation,
  };
  blocked = server.blocked;
  registerStringCommands(server);
  registerHyperLogLogCommands(server);
  registerBitmapCommands(server);
  registerKeyCommands(server);
  registerListCommands(server);
  registerHashCommands(server);
  registerSetCommands(server);
  registerSortedSetCommands(server);
  registerGeoCommands(server);
  registerSortCommands(server);
  registerServerCommands(server);
  registerCluster(server);
  registerScriptingCommands(server);
  registerExpiry(server); // expiry frozen during CLIENT PAUSE (expire.ts)
  // RDB snapshots (load at start, SAVE/BGSAVE/save points/SHUTDOWN) and DUMP/RESTORE: snapshot.ts, rdb.ts.
  registerSnapshot(server, service);
  registerDumpCommands(server);
  registerMigrateCommands(server); // MIGRATE, RESTORE-ASKING (after DUMP/RESTORE)
  registerReplicationCommands(server);
  eviction = new Eviction(keyspace, memory, (db, key) => {
    resp.touch(db, key);
    resp.notifyKeyspaceEvent('evicted', 'evicted', key, db);
  });
  registerEviction(server, eviction);
  // INFO stats's expired_keys (before evicted_keys, as Redis); CONFIG RESETSTAT zeroes both.
  const statsSection = server.info.get('stats');
  server.info.set('stats', () => {
    const fields = { ...statsSection?.() };
    return 'evicted_keys' in fields
      ? withFieldBefore(fields, 'evicted_keys', 'expired_keys', expiredKeys)
      : { ...fields, expired_keys: expiredKeys };
  });
  resp.onResetStats(() => {
    expiredKeys = 0;
    if (eviction !== undefined) eviction.evictedKeys = 0;
  });
  registerStreamCommands(server);
  registerTransactionCommands(server);
  // Last: the append-only file replays through every registered command (and wins over an RDB loaded before).
  registerAof(server, service.logger);
  keyspace.startExpiry();
  if (bus !== undefined) closeBusWhenStopped(resp, bus);

  service.bind(httpAdapter({ health: true }));
  return service;
}

/**
 * Close the bus once the RESP binding stopped (its last subscriber gone, after the final save). The
 * adapter announces that this process's subscribers left a few milliseconds after they left (its
 * announcements are batched): wait that long first, so that the other processes stop counting them at
 * once rather than after the presence TTL.
 */
function closeBusWhenStopped(resp: RespAdapter, bus: Bus): void {
  const adapter: Adapter = resp;
  const stopped = adapter.stopped?.bind(resp);
  adapter.stopped = async () => {
    try {
      await stopped?.();
      await new Promise((resolve) => setTimeout(resolve, ANNOUNCE_SETTLE_MS));
    } finally {
      await bus.close();
    }
  };
}

/** Longer than the adapter's batching of announcements (5 ms) and a round trip to the bus. */
const ANNOUNCE_SETTLE_MS = 100;

/** `fields` with `name: value` inserted just before `before`. */
function withFieldBefore<V>(fields: Record<string, V>, before: string, name: string, value: V): Record<string, V> {
  const out: Record<string, V> = {};
  for (const [field, current] of Object.entries(fields)) {
    if (field === before) out[name] = value;
    out[field] = current;
  }
  return out;
}
