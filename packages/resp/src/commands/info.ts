import type { BuiltinHost, InfoFields } from '../host.js';
import type { Command } from '../parser.js';

// INFO's built-in sections (what the adapter knows: clients, its counters, the process's memory
// and CPU) and INFO's text, merged with the sections and fields the application adds.

export type InfoHost<C> = Pick<
  BuiltinHost<C>,
  'serverVersion' | 'clients' | 'maxClients' | 'stats' | 'commandStats' | 'errorStats' | 'tracking' | 'pubsub' | 'infoSections'
>;

/**
 * INFO's sections in the order Redis 7.0 prints them (server.c, genRedisInfoString), whatever order
 * they were added in; an application's own sections follow. The one list of it: an application that
 * builds its own INFO (examples/mini-redis) sorts by it too.
 */
export const INFO_SECTIONS: readonly string[] = [
  'server',
  'clients',
  'memory',
  'persistence',
  'stats',
  'replication',
  'cpu',
  'modules',
  'commandstats',
  'errorstats',
  'latencystats',
  'cluster',
  'keyspace',
];

/** The sections INFO without arguments (or `INFO default`) leaves out: asked by name, or with `all`/`everything`. */
export const INFO_NOT_DEFAULT: readonly string[] = ['commandstats', 'latencystats'];

/** For instantaneous_ops_per_sec: the counter at the previous INFO, and when. */
const opsSample = new WeakMap<object, { at: number; commands: number; rate: number }>();

function humanBytes(bytes: number): string {
  const units = ['B', 'K', 'M', 'G', 'T'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes}B` : `${value.toFixed(2)}${units[unit]}`;
}

/**
 * The built-in sections, with what the adapter knows (clients, its counters, the process's memory
 * and CPU); the application adds sections (`keyspace`) or fields through `infoSection`.
 */
export function builtinSections<C>(server: InfoHost<C>): Map<string, Array<readonly [string, string | number]>> {
  const memory = process.memoryUsage();
  const cpu = process.cpuUsage();
  const now = Date.now();
  const stats = server.stats;
  // instantaneous_ops_per_sec: commands per second since the previous INFO (Redis samples every
  // 100 ms; this costs the command path nothing). Kept when INFO is asked again within 100 ms.
  const sample = opsSample.get(server) ?? { at: now, commands: stats.commandsProcessed, rate: 0 };
  if (now - sample.at >= 100) {
    sample.rate = Math.max(0, Math.round(((stats.commandsProcessed - sample.commands) * 1000) / (now - sample.at)));
    sample.at = now;
    sample.commands = stats.commandsProcessed;
  }
  opsSample.set(server, sample);
  let blocked = 0;
  let pubsubClients = 0;
  for (const client of server.clients.values()) {
    if (client.blocked) blocked++;
    if (server.pubsub.isSubscribed(client)) pubsubClients++;
  }
  const used = memory.heapUsed + memory.external;
  const uptime = Math.floor(process.uptime());
  return new Map<string, Array<readonly [string, string | number]>>([
    [
      'server',
      [
        ['redis_version', server.serverVersion],
        ['redis_mode', 'standalone'],
        ['os', `${process.platform} ${process.arch}`],
        ['arch_bits', 64],
        ['process_id', process.pid],
        ['server_time_usec', now * 1000],
        ['uptime_in_seconds', uptime],
        ['uptime_in_days', Math.floor(uptime / 86400)],
        ['executable', process.execPath],
      ],
    ],
    [
      'clients',
      [
        ['connected_clients', server.clients.size],
        ['maxclients', server.maxClients],
        ['blocked_clients', blocked],
        ['tracking_clients', server.tracking.clientCount],
        ['pubsub_clients', pubsubClients],
      ],
    ],
    [
      'memory',
      [
        ['used_memory', used],
        ['used_memory_human', humanBytes(used)],
        ['used_memory_rss', memory.rss],
        ['used_memory_rss_human', humanBytes(memory.rss)],
        ['used_memory_dataset', memory.heapUsed],
        ['total_system_memory', 0],
        ['maxmemory', 0],
        ['maxmemory_policy', 'noeviction'],
      ],
    ],
    [
      'persistence',
      [
        ['loading', 0],
        ['rdb_bgsave_in_progress', 0],
        ['aof_enabled', 0],
        ['aof_rewrite_in_progress', 0],
      ],
    ],
    [
      'stats',
      [
        ['total_connections_received', stats.connectionsReceived],
        ['total_commands_processed', stats.commandsProcessed],
        ['instantaneous_ops_per_sec', sample.rate],
        ['total_net_input_bytes', stats.netInputBytes],
        ['total_net_output_bytes', stats.netOutputBytes],
        ['rejected_connections', stats.rejectedConnections],
        ['pubsub_channels', server.pubsub.activeChannels().length],
        ['pubsub_patterns', server.pubsub.patternCount],
        ['pubsubshard_channels', server.pubsub.shardChannelCount],
        ['tracking_total_keys', server.tracking.keys],
        ['tracking_total_items', server.tracking.items],
        ['tracking_total_prefixes', server.tracking.prefixCount],
        ['total_blocking_keys', 0],
        ['total_error_replies', stats.errorReplies],
      ],
    ],
    [
      'replication',
      [
        ['role', 'master'],
        ['connected_slaves', 0],
        ['master_repl_offset', 0],
      ],
    ],
    [
      'cpu',
      [
        ['used_cpu_sys', (cpu.system / 1e6).toFixed(6)],
        ['used_cpu_user', (cpu.user / 1e6).toFixed(6)],
        ['used_cpu_sys_children', '0.000000'],
        ['used_cpu_user_children', '0.000000'],
      ],
    ],
    [
      'commandstats',
      [...server.commandStats]
        .filter(([, counts]) => counts.calls > 0 || counts.rejected > 0 || counts.failed > 0)
        .map(([name, counts]): readonly [string, string] => [
          `cmdstat_${name}`,
          `calls=${counts.calls},usec=${counts.usec},usec_per_call=${(counts.calls === 0 ? 0 : counts.usec / counts.calls).toFixed(2)},` +
            `rejected_calls=${counts.rejected},failed_calls=${counts.failed}`,
        ]),
    ],
    ['errorstats', [...server.errorStats].map(([code, count]): readonly [string, string] => [`errorstat_${code}`, `count=${count}`])],
  ]);
}

/** INFO [section …]: the built-in sections merged with the application's, in Redis's order. */
export function infoText<C>(server: InfoHost<C>, argv: Command): string {
  const wanted = new Set(argv.slice(1).map((arg) => arg.toString('latin1').toLowerCase()));
  // default (or nothing): every section but commandstats and latencystats; all and everything: those too.
  const all = wanted.has('all') || wanted.has('everything');
  const every = wanted.size === 0 || all || wanted.has('default');
  if (all) for (const name of INFO_NOT_DEFAULT) wanted.add(name);
  const sections = builtinSections(server);
  for (const [name, providers] of server.infoSections) {
    if (!every && !wanted.has(name)) continue;
    const fields = sections.get(name) ?? [];
    for (const provider of providers) {
      for (const [key, value] of provider() as InfoFields) {
        const at = fields.findIndex(([existing]) => existing === key);
        if (at === -1) fields.push([key, value]);
        else fields[at] = [key, value];
      }
    }
    sections.set(name, fields);
  }
  const names = [...INFO_SECTIONS, ...[...sections.keys()].filter((name) => !INFO_SECTIONS.includes(name))];
  const parts: string[] = [];
  for (const name of names) {
    const fields = sections.get(name);
    if (fields === undefined || !((every && !INFO_NOT_DEFAULT.includes(name)) || wanted.has(name))) continue;
    let part = `# ${name === 'cpu' ? 'CPU' : `${name[0]?.toUpperCase()}${name.slice(1)}`}\r\n`;
    for (const [key, value] of fields) part += `${key}:${value}\r\n`;
    parts.push(part);
  }
  return parts.join('\r\n');
}
