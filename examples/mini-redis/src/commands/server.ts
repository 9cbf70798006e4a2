import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { arch, release, type } from 'node:os';
import { INFO_NOT_DEFAULT, INFO_SECTIONS, OK, type RespClient, RespError, type SubcommandOptions } from '@portbind/resp';
import type { MiniRedis } from '../app.js';
import {
  configGet as configGetOf,
  configSet as configSetOf,
  current,
  fixed,
  integer,
  listenerParameters,
  memory,
  only,
  type Setting,
} from '../config.js';
import type { EncodingLimits } from '../encodings.js';
import { helpReply } from '../help.js';
import { toInt64 } from '../numbers.js';
import type { Value } from '../store.js';

const group = 'server';
const text = (arg: Buffer | undefined): string => (arg as Buffer).toString('latin1');

export function registerServerCommands({
  resp,
  keyspace,
  blocked,
  binding,
  startedAt,
  encodings,
  memory: limits,
  config,
  info,
}: MiniRedis): void {
  // ---- FLUSHDB, FLUSHALL, DBSIZE, TIME --------------------------------------------------------

  /** A flush dirties the WATCHes of keys that exist (not of missing or expired ones), as in Redis. */
  const exists = (db: number, key: string): boolean => keyspace.db(db).exists(key);
  /** FLUSHDB and FLUSHALL take an optional ASYNC or SYNC (the same thing here). */
  const checkFlushArgs = (argv: Buffer[]): void => {
    if (argv.length === 2 && ['ASYNC', 'SYNC'].includes(text(argv[1]).toUpperCase())) return;
    if (argv.length > 1) throw new RespError('ERR syntax error');
  };
  resp.command('flushdb', { arity: -1, flags: ['write'], summary: 'Remove all keys from the current database.', group }, (client, argv) => {
    checkFlushArgs(argv);
    resp.touchAll(client.db, exists);
    keyspace.db(client.db).clear();
    resp.invalidateAll(); // client-side caching: a null invalidation to every tracking client
    return OK;
  });
  resp.command('flushall', { arity: -1, flags: ['write'], summary: 'Removes all keys from all databases.', group }, (_client, argv) => {
    checkFlushArgs(argv);
    resp.touchAll(-1, exists);
    for (const db of keyspace.databases) db.clear();
    resp.invalidateAll();
    return OK;
  });

  resp.command(
    'dbsize',
    { arity: 1, flags: ['readonly', 'fast'], summary: 'Returns the number of keys in the database.', group },
    (client) => keyspace.db(client.db).size,
  );

  resp.command('time', { arity: 1, flags: ['fast'], summary: 'Returns the server time.', group }, () => {
    const microseconds = BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000));
    return [String(microseconds / 1_000_000n), String(microseconds % 1_000_000n)];
  });

  // ---- MEMORY USAGE -------------------------------------------------------------------------------
  // An estimate of what a key costs here (JavaScript strings, Buffers and collections), not Redis's
  // allocator figures: a missing key answers null, as Redis.

  const usage = (key: string, value: Value): number => {
    const overhead = 64 + key.length;
    switch (value.type) {
      case 'string':
        return overhead + value.data.length;
      case 'list':
        return overhead + value.data.toArray().reduce((sum, item) => sum + item.length + 16, 0);
      case 'hash': {
        let sum = overhead;
        for (const [field, data] of value.data) sum += field.length + data.length + 48;
        return sum;
      }
      case 'set': {
        let sum = overhead;
        for (const member of value.data) sum += member.length + 32;
        return sum;
      }
      case 'zset': {
        let sum = overhead;
        for (const member of value.data.scores.keys()) sum += member.length + 96;
        return sum;
      }
      case 'stream':
        return overhead + value.data.bytes;
    }
  };
  resp.command(
    'memory',
    {
      arity: -2,
      summary: 'A container for memory diagnostics commands.',
      group,
      // As Redis declares them: MEMORY USAGE's key on the subcommand (the container has none).
      subcommands: {
        usage: { arity: -3, flags: ['readonly'], keySpecs: [{ flags: ['RO'], begin: 2 }] },
        help: { arity: 2, flags: ['loading', 'stale'] },
      },
    },
    (client, argv) => {
      const sub = text(argv[1]).toUpperCase();
      if (sub === 'HELP' && argv.length === 2) {
        return helpReply('MEMORY', [
          'DOCTOR',
          '    Return memory problems reports.',
          'MALLOC-STATS',
          '    Return internal statistics report from the memory allocator.',
          'PURGE',
          '    Attempt to purge dirty pages for reclamation by the allocator.',
          'STATS',
          '    Return information about the memory usage of the server.',
          'USAGE <key> [SAMPLES <count>]',
          '    Return memory in bytes used by <key> and its value. Nested values are',
          '    sampled up to <count> times (default: 5, 0 means sample all).',
        ]);
      }
      if (sub !== 'USAGE' && sub !== 'HELP') throw new RespError(`ERR unknown subcommand '${text(argv[1])}'. Try MEMORY HELP.`);
      if (sub === 'HELP' || argv.length < 3) throw new RespError(`ERR wrong number of arguments for 'memory|${sub.toLowerCase()}' command`);
      for (let i = 3; i < argv.length; i += 2) {
        if (text(argv[i]).toUpperCase() !== 'SAMPLES' || argv[i + 1] === undefined) throw new RespError('ERR syntax error');
        const samples = toInt64(argv[i + 1] as Buffer);
        if (samples === undefined) throw new RespError('ERR value is not an integer or out of range');
        if (samples < 0n) throw new RespError('ERR syntax error');
      }
      const key = text(argv[2]);
      const value = keyspace.db(client.db).get(key);
      return value === undefined ? null : usage(key, value);
    },
  );

  // ---- INFO -----------------------------------------------------------------------------------

  const runId = randomBytes(20).toString('hex');
  // The RESP binding's address: a TCP port, or a Unix socket path.
  const address = (): AddressInfo | { port: number; address: string } => {
    const bound = binding.address;
    return typeof bound === 'string' ? { port: 0, address: bound } : bound;
  };
  const port = (): number => address().port;
  const builtInSections: Record<string, () => Record<string, string | number>> = {
    server: () => ({
      redis_version: resp.serverVersion,
      redis_mode: 'standalone',
      os: `${type()} ${release()} ${arch()}`,
      arch_bits: 64,
      process_id: process.pid,
      run_id: runId,
      tcp_port: port(),
      server_time_usec: Math.round((performance.timeOrigin + performance.now()) * 1000),
      uptime_in_seconds: Math.floor((Date.now() - startedAt) / 1000),
      uptime_in_days: Math.floor((Date.now() - startedAt) / 86_400_000),
      hz: keyspace.hz,
      configured_hz: keyspace.hz,
    }),
    clients: () => ({
      connected_clients: resp.clients.size,
      maxclients: binding.limits.maxConnections,
      // Clients blocked on keys and those CLIENT PAUSE holds (Redis 7.0's BLOCKED_POSTPONE counts too).
      blocked_clients: blocked.count + resp.pausedClients,
      tracking_clients: resp.tracking.clientCount,
    }),
    memory: () => {
      const used = process.memoryUsage().heapUsed;
      return {
        used_memory: used,
        used_memory_human: `${(used / 1024 / 1024).toFixed(2)}M`,
        maxmemory: limits.maxmemory,
        maxmemory_policy: 'noeviction',
      };
    },
    persistence: () => ({ loading: 0, async_loading: 0, rdb_bgsave_in_progress: 0, aof_enabled: 0 }),
    // The counters packages/resp keeps (commands, connections, net bytes): redis-cli --stat reads them.
    stats: () => Object.fromEntries(resp.infoFields('stats') ?? []),
    replication: () => ({ role: 'master', connected_slaves: 0, master_repl_offset: 0 }),
    // CPU time and per-command counters: packages/resp keeps them.
    cpu: () => Object.fromEntries(resp.infoFields('cpu') ?? []),
    commandstats: () => Object.fromEntries(resp.infoFields('commandstats') ?? []),
    errorstats: () => Object.fromEntries(resp.infoFields('errorstats') ?? []),
    // No modules; no latency percentiles (Redis prints the heading alone with latency-tracking off).
    modules: () => ({}),
    latencystats: () => ({}),
    // cluster.ts says 1 in cluster mode.
    cluster: () => ({ cluster_enabled: 0 }),
    keyspace: () => {
      const lines: Record<string, string> = {};
      keyspace.databases.forEach((db, index) => {
        if (db.size > 0) lines[`db${index}`] = `keys=${db.size},expires=${db.expires.size},avg_ttl=0`;
      });
      return lines;
    },
  };
  // Other files add sections or replace these (persistence, replication) through server.info.
  for (const [name, fields] of Object.entries(builtInSections)) if (!info.has(name)) info.set(name, fields);
  resp.command(
    'info',
    { arity: -1, flags: ['loading', 'stale'], summary: 'Returns information and statistics about the server.', group },
    (client, argv) => {
      // server.c, genInfoSectionDict / genRedisInfoString: `module_list` is `modules`; no section
      // or `default`: all but commandstats and latencystats; `all`, `everything`: every section.
      const asked = argv.slice(1).map((arg) => {
        const name = text(arg).toLowerCase();
        return name === 'module_list' ? 'modules' : name;
      });
      const every = asked.some((name) => name === 'all' || name === 'everything');
      const usual = asked.length === 0 || asked.includes('default');
      // Redis's order, whatever order the files registered their sections in; others after.
      const sections = [...info].sort(([a], [b]) => sectionRank(a) - sectionRank(b));
      const body = sections
        .filter(([name]) => every || (usual && !INFO_NOT_DEFAULT.includes(name)) || asked.includes(name))
        .map(([name, fields]) => {
          const lines = Object.entries(fields()).map(([field, value]) => `${field}:${value}\r\n`);
          return `# ${name === 'cpu' ? 'CPU' : `${name[0]?.toUpperCase()}${name.slice(1)}`}\r\n${lines.join('')}`;
        })
        .join('\r\n');
      client.reply.verbatim(body); // RESP3 verbatim text, a bulk string on RESP2, as Redis 7
    },
  );

  // ---- CONFIG GET / SET -----------------------------------------------------------------------

  /** An encoding limit, under each of its names. */
  const encodingLimit = (names: string[], field: keyof EncodingLimits, min: number): Record<string, Setting> => {
    const get = () => encodings.limits[field];
    const set = (value: number) => {
      encodings.limits[field] = value;
    };
    // The *-value limits are sizes (1kb); the others counts, up to INT_MAX or LONG_MAX.
    const setting = field.endsWith('Value')
      ? memory(min, get, set)
      : integer(min, field === 'listMaxListpackSize' ? 2147483647 : 2n ** 63n - 1n, get, set);
    return Object.fromEntries(names.map((name) => [name, setting]));
  };
  const builtIn: Record<string, Setting> = {
    databases: fixed(() => resp.databases),
    daemonize: fixed(() => 'no'),
    // port (checked as Redis, never moved), client-query-buffer-limit, maxmemory-clients…: config.ts.
    ...listenerParameters(resp, address),
    // Modifiable in Redis; mini-redis keeps what it started with (setting that again is a no-op).
    bind: current(() => address().address, 'Failed to bind to specified addresses: mini-redis keeps its address'),
    'protected-mode': current(() => (resp.options.protectedMode === false ? 'no' : 'yes'), 'mini-redis keeps its protected mode'),
    'proto-max-bulk-len': current(() => resp.options.maxBulkLength ?? 512 * 1024 * 1024, 'mini-redis keeps its limit'),
    // There are no replicas: mini-redis is never one.
    replicaof: fixed(() => ''),
    slaveof: fixed(() => ''),
    // Nothing is persisted: data lives in memory only, as with `--save '' --appendonly no`; setting
    // them to what they are is accepted (Redis's test harness saves and restores them).
    save: only('', 'mini-redis does not save snapshots'),
    appendonly: only('no', 'mini-redis has no append-only file'),
    // The limits of the compact encodings OBJECT ENCODING reports (7.0 names and their aliases).
    ...encodingLimit(['hash-max-listpack-entries', 'hash-max-ziplist-entries'], 'hashMaxListpackEntries', 0),
    ...encodingLimit(['hash-max-listpack-value', 'hash-max-ziplist-value'], 'hashMaxListpackValue', 0),
    ...encodingLimit(['set-max-intset-entries'], 'setMaxIntsetEntries', 0),
    ...encodingLimit(['zset-max-listpack-entries', 'zset-max-ziplist-entries'], 'zsetMaxListpackEntries', 0),
    ...encodingLimit(['zset-max-listpack-value', 'zset-max-ziplist-value'], 'zsetMaxListpackValue', 0),
    ...encodingLimit(['list-max-listpack-size', 'list-max-ziplist-size'], 'listMaxListpackSize', -2147483648),
    ...encodingLimit(['list-compress-depth'], 'listCompressDepth', 0),
    // Past maxmemory, commands that may use more memory get -OOM (mini-redis evicts nothing).
    maxmemory: memory(
      0,
      () => limits.maxmemory,
      (value) => {
        limits.maxmemory = value;
      },
    ),
    'maxmemory-policy': only('noeviction', 'mini-redis evicts nothing: only noeviction'),
    // Keyspace notifications: published through the adapter's pub/sub.
    'notify-keyspace-events': {
      get: () => resp.keyspaceEvents,
      set(value) {
        if (!resp.setKeyspaceEvents(value)) throw new Error("Invalid event class character. Use 'Ag$lshzxeKEtmdn'.");
      },
    },
    // Client-side caching: the most keys the tracking table remembers (0: no limit); past it, keys
    // are dropped and invalidated for the clients that read them.
    'tracking-table-max-keys': integer(
      0,
      2n ** 63n - 1n,
      () => resp.tracking.maxKeys,
      (value) => {
        resp.tracking.maxKeys = value;
        resp.tracking.limit();
      },
    ),
    // These apply to connections accepted from now on.
    maxclients: integer(
      1,
      4294967295,
      () => binding.limits.maxConnections,
      (value) => {
        // core lowers maxConnections at start to what the open-file limit allows; CONFIG SET
        // sets it as Redis does (Redis would first try to raise the limit).
        binding.setMaxConnections(value);
      },
    ),
    timeout: integer(
      0,
      2147483647,
      () => binding.limits.idleTimeoutMs / 1000,
      (value) => {
        binding.requestedLimits.idleTimeoutMs = value * 1000;
      },
    ),
    hz: integer(
      0,
      2147483647,
      () => keyspace.hz,
      (value) => keyspace.startExpiry(value),
    ),
  };
  // Other files add parameters through server.config (persistence, eviction…); theirs win.
  for (const [name, setting] of Object.entries(builtIn)) if (!config.has(name)) config.set(name, setting);

  // Redis's config.c: several names or patterns, hidden parameters, all-or-nothing SET (config.ts).
  const configGet = (_client: RespClient, argv: Buffer[]): Map<string, string> => configGetOf(config, argv.slice(2).map(text));
  const configSet = (_client: RespClient, argv: Buffer[]): Promise<typeof OK> | typeof OK => {
    const done = configSetOf(config, argv.slice(2).map(text));
    return done instanceof Promise ? done.then(() => OK) : OK;
  };

  const subcommands: Record<
    string,
    { arity: number; run: (client: RespClient, argv: Buffer[]) => ReturnType<typeof configGet> | ReturnType<typeof configSet> | string[] }
  > = {
    get: { arity: -3, run: configGet },
    set: { arity: -4, run: configSet },
    // INFO's counters back to 0 (commandstats, errorstats, total_*); mini-redis's own counters
    // (evicted_keys…) reset through resp.onResetStats hooks where they are kept.
    resetstat: {
      arity: 2,
      run: () => {
        resp.resetStats();
        return OK;
      },
    },
    rewrite: {
      arity: 2,
      run: () => {
        throw new RespError('ERR The server is running without a config file');
      },
    },
    help: {
      arity: 2,
      run: () => [
        'CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:',
        'GET <pattern>',
        '    Return parameters matching the glob-like <pattern> and their values.',
        'SET <directive> <value>',
        '    Set the configuration <directive> to <value>.',
        'RESETSTAT',
        '    Reset statistics reported by the INFO command.',
        'REWRITE',
        '    Rewrite the configuration file.',
        'HELP',
        '    Print this help.',
      ],
    },
  };
  resp.command(
    'config',
    {
      arity: -2,
      // INFO commandstats's cmdstat_config|get…, COMMAND INFO's subcommands (Redis's arity, flags, tips).
      subcommands: Object.fromEntries(
        Object.entries(subcommands).map(([name, { arity }]): [string, SubcommandOptions] => [
          name,
          {
            arity,
            flags: name === 'help' ? ['loading', 'stale'] : ['admin', 'noscript', 'loading', 'stale'],
            ...(name === 'set' ? { tips: ['request_policy:all_nodes', 'response_policy:all_succeeded'] } : {}),
          },
        ]),
      ),
      summary: 'A container for server configuration commands.',
      group,
    },
    (client, argv) => {
      const name = text(argv[1]).toLowerCase();
      const sub = subcommands[name];
      if (sub === undefined) throw new RespError(`ERR unknown subcommand '${text(argv[1])}'. Try CONFIG HELP.`);
      const arityOk = sub.arity >= 0 ? argv.length === sub.arity : argv.length >= -sub.arity;
      if (!arityOk) throw new RespError(`ERR wrong number of arguments for 'config|${name}' command`);
      return sub.run(client, argv);
    },
  );

  // ---- SLOWLOG ---------------------------------------------------------------------------------------
  // Redis's slowlog.c: @portbind/resp times the commands and keeps the entries (resp.slowLog); the two
  // settings are Redis's, with its ranges.
  const slowLog = resp.slowLog;
  config.set(
    'slowlog-log-slower-than',
    integer(
      -1,
      2n ** 63n - 1n,
      () => slowLog.slowerThanUs,
      (value) => {
        slowLog.slowerThanUs = value;
      },
    ),
  );
  config.set(
    'slowlog-max-len',
    integer(
      0,
      2n ** 63n - 1n,
      () => slowLog.maxLen,
      (value) => {
        slowLog.maxLen = value;
      },
    ),
  );
  const slowlogSubcommands: Record<string, { arity: number; flags: SubcommandOptions['flags']; tips?: string[] }> = {
    get: { arity: -2, flags: ['admin', 'loading', 'stale'], tips: ['request_policy:all_nodes', 'nondeterministic_output'] },
    len: {
      arity: 2,
      flags: ['admin', 'loading', 'stale'],
      tips: ['request_policy:all_nodes', 'response_policy:agg_sum', 'nondeterministic_output'],
    },
    reset: { arity: 2, flags: ['admin', 'loading', 'stale'], tips: ['request_policy:all_nodes', 'response_policy:all_succeeded'] },
    help: { arity: 2, flags: ['loading', 'stale'] },
  };
  resp.command(
    'slowlog',
    {
      arity: -2,
      subcommands: Object.fromEntries(
        Object.entries(slowlogSubcommands).map(([name, { arity, flags, tips }]): [string, SubcommandOptions] => [
          name,
          { arity, flags, ...(tips === undefined ? {} : { tips }) },
        ]),
      ),
      summary: 'A container for slow log commands',
      group,
      since: '2.2.12',
    },
    (_client, argv) => {
      const name = text(argv[1]).toLowerCase();
      const sub = slowlogSubcommands[name];
      if (sub === undefined) throw new RespError(`ERR unknown subcommand '${text(argv[1])}'. Try SLOWLOG HELP.`);
      const arityOk = sub.arity >= 0 ? argv.length === sub.arity : argv.length >= -sub.arity;
      if (!arityOk) throw new RespError(`ERR wrong number of arguments for 'slowlog|${name}' command`);
      if (name === 'help') {
        return helpReply('SLOWLOG', [
          'GET [<count>]',
          '    Return top <count> entries from the slowlog (default: 10, -1 mean all).',
          '    Entries are made of:',
          '    id, timestamp, time in microseconds, arguments array, client IP and port,',
          '    client name',
          'LEN',
          '    Return the length of the slowlog.',
          'RESET',
          '    Reset the slowlog.',
        ]);
      }
      if (name === 'len') return slowLog.length;
      if (name === 'reset') {
        slowLog.reset();
        return OK;
      }
      // GET [count]: more arguments are slowlogCommand's own syntax error.
      if (argv.length > 3)
        throw new RespError(`ERR unknown subcommand or wrong number of arguments for '${text(argv[1])}'. Try SLOWLOG HELP.`);
      let count = 10;
      if (argv.length === 3) {
        // A long from -1 (all) up, as getRangeLongFromObjectOrReply reads it.
        const given = text(argv[2]);
        const parsed = /^-?\d{1,19}$/.test(given) ? BigInt(given) : undefined;
        if (parsed === undefined || parsed < -1n || parsed > 2n ** 63n - 1n)
          throw new RespError('ERR count should be greater than or equal to -1');
        count = parsed > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(parsed);
      }
      return slowLog.get(count).map((entry) => [entry.id, entry.time, entry.durationUs, [...entry.args], entry.addr, entry.name]);
    },
  );
}

/** Redis's order of INFO's sections (@portbind/resp's INFO_SECTIONS), others after. */
const sectionRank = (name: string): number => {
  const rank = INFO_SECTIONS.indexOf(name);
  return rank === -1 ? INFO_SECTIONS.length : rank;
};
