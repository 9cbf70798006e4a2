import { type CommandFlag, clientAddress, type InfoFields, localAddress, type RespAdapter } from './adapter.js';
import type { RespClient } from './client.js';
import type { Command } from './parser.js';
import { OK, type ReplyValue, RespError, simple } from './reply.js';

// The connection-level commands every Redis client expects, with Redis 7's replies and error
// texts. Each is registered like a user command, so an application can replace any of them.

type Server = RespAdapter<Record<string, unknown>>;
type Client = RespClient<Record<string, unknown>>;

const text = (arg: Buffer | undefined): string => (arg === undefined ? '' : arg.toString());
const upper = (arg: Buffer | undefined): string => (arg === undefined ? '' : arg.toString('latin1').toUpperCase());

const NOT_INTEGER = 'ERR value is not an integer or out of range';
const WRONGPASS = 'WRONGPASS invalid username-password pair or user is disabled.';

/** Parse an integer argument as Redis does (no spaces, no '+', no leading zeros), or throw its error. */
export function integerArg(arg: Buffer | undefined, message = NOT_INTEGER): number {
  const value = arg === undefined ? '' : arg.toString('latin1');
  if (!/^-?(0|[1-9]\d{0,18})$/.test(value)) throw new RespError(message);
  const number = Number(value);
  if (!Number.isSafeInteger(number)) throw new RespError(message);
  return number;
}

export function registerBuiltins(server: Server): void {
  server.command(
    'ping',
    { arity: -1, flags: ['pubsub', 'fast'], summary: 'Returns the server’s liveliness response.', group: 'connection' },
    (client, argv) => {
      if (argv.length > 2) throw new RespError("ERR wrong number of arguments for 'ping' command");
      // RESP2 subscribed mode answers with a message-shaped array (server.c, pingCommand).
      if (client.protocol === 2 && client.subscribed) return ['pong', argv[1] ?? ''];
      return argv.length === 2 ? (argv[1] as Buffer) : simple('PONG');
    },
  );

  server.command(
    'echo',
    { arity: 2, flags: ['fast'], summary: 'Returns the given string.', group: 'connection' },
    (_client, argv) => argv[1] as Buffer,
  );

  server.command(
    'quit',
    { arity: -1, flags: ['noauth', 'pubsub', 'nomulti', 'fast'], summary: 'Closes the connection.', group: 'connection' },
    (client) => {
      client.reply.ok();
      client.closeAfterReply();
    },
  );

  server.command(
    'select',
    { arity: 2, flags: ['fast'], summary: 'Changes the selected database.', group: 'connection' },
    (client, argv) => {
      const db = integerArg(argv[1]);
      if (db < 0 || db >= server.databases) throw new RespError('ERR DB index is out of range');
      client.db = db;
      return OK;
    },
  );

  server.command(
    'auth',
    { arity: -2, flags: ['noauth', 'fast'], summary: 'Authenticates the connection.', group: 'connection' },
    async (client, argv) => {
      if (argv.length > 3) throw new RespError('ERR syntax error');
      if (argv.length === 2 && server.options.password === undefined && !server.authConfigured) {
        throw new RespError(
          'ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?',
        );
      }
      const [user, password] = argv.length === 3 ? [text(argv[1]), text(argv[2])] : ['default', text(argv[1])];
      if (!(await server.checkCredentials(user, password, client))) throw new RespError(WRONGPASS);
      client.user = user;
      return OK;
    },
  );

  server.command(
    'hello',
    { arity: -1, flags: ['noauth', 'fast'], summary: 'Handshakes with the Redis server.', group: 'connection' },
    async (client, argv) => {
      let protocol = client.protocol;
      if (argv.length >= 2) {
        const asked = argv[1]?.toString('latin1') ?? '';
        if (!/^-?(0|[1-9]\d{0,18})$/.test(asked)) throw new RespError('ERR Protocol version is not an integer or out of range');
        const version = Number(asked);
        if (version < 2 || version > 3) throw new RespError('NOPROTO unsupported protocol version');
        protocol = version as 2 | 3;
      }
      let credentials: [string, string] | undefined;
      let name: string | undefined;
      for (let i = 2; i < argv.length; i++) {
        const option = upper(argv[i]);
        const left = argv.length - i - 1;
        if (option === 'AUTH' && left >= 2) {
          credentials = [text(argv[i + 1]), text(argv[i + 2])];
          i += 2;
        } else if (option === 'SETNAME' && left >= 1) {
          name = text(argv[i + 1]);
          checkName(name);
          i += 1;
        } else {
          throw new RespError(`ERR Syntax error in HELLO option '${text(argv[i])}'`);
        }
      }
      if (credentials !== undefined) {
        if (!(await server.checkCredentials(credentials[0], credentials[1], client))) throw new RespError(WRONGPASS);
        client.user = credentials[0];
      }
      if (server.authRequired(client)) {
        throw new RespError(
          'NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time',
        );
      }
      if (name !== undefined) client.name = name;
      // The reply is already in the new protocol (networking.c, helloCommand).
      client.reply.protocol = protocol;
      client.reply
        .map(7)
        .bulk('server')
        .bulk('redis')
        .bulk('version')
        .bulk(server.serverVersion)
        .bulk('proto')
        .integer(protocol)
        .bulk('id')
        .integer(client.id)
        .bulk('mode')
        .bulk('standalone')
        .bulk('role')
        .bulk('master')
        .bulk('modules')
        .array(0);
    },
  );

  server.command(
    'reset',
    { arity: 1, flags: ['noauth', 'pubsub', 'nomulti', 'fast'], summary: 'Resets the connection.', group: 'connection' },
    (client) => {
      client.multi = undefined;
      client.multiDirty = false;
      server.unwatch(client);
      server.tracking.disable(client); // as Redis's clearClientConnectionState
      for (const channel of [...client.channels]) server.unsubscribe(client, channel);
      for (const pattern of [...client.patterns]) server.punsubscribe(client, pattern);
      client.db = 0;
      client.name = '';
      if (client.monitoring) server.stopMonitor(client);
      client.reply.protocol = 2;
      if (server.authConfigured) client.user = undefined;
      return simple('RESET');
    },
  );

  server.command(
    'info',
    { arity: -1, summary: 'Returns information and statistics about the server.', group: 'server' },
    (client, argv) => {
      client.reply.verbatim(infoText(server, argv));
    },
  );

  server.command(
    'monitor',
    { arity: 1, flags: ['admin'], summary: 'Listens for all requests received by the server in real-time.', group: 'server' },
    (client) => {
      // server.c, monitorCommand: not from EXEC (Redis's CLIENT_DENY_BLOCKING); a second MONITOR
      // is ignored, without a reply.
      if (inExec.has(client)) throw new RespError("ERR MONITOR isn't allowed for DENY BLOCKING client");
      if (client.monitoring) return undefined;
      server.startMonitor(client);
      return OK;
    },
  );

  registerClient(server);
  registerCommand(server);
  registerTransactions(server);
  registerPubSub(server);
}

/** INFO's sections in Redis's order; `default` and `all` list these (commandstats and the like are not kept). */
const INFO_ORDER = [
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
  'cluster',
  'keyspace',
];

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
export function builtinSections(server: Server): Map<string, Array<readonly [string, string | number]>> {
  const memory = process.memoryUsage();
  const cpu = process.cpuUsage();
  const now = Date.now();
  const stats = server.stats;
  // instantaneous_ops_per_sec: commands per second since the previous INFO (Redis samples every
  // 100 ms; this costs the command path nothing). Kept when INFO is asked again within 100 ms.
  const sample = opsSample.get(server) ?? { at: now, commands: stats.commandsProcessed, rate: 0 };
  if (now - sample.at >= 100) {
    sample.rate = Math.round(((stats.commandsProcessed - sample.commands) * 1000) / (now - sample.at));
    sample.at = now;
    sample.commands = stats.commandsProcessed;
  }
  opsSample.set(server, sample);
  let blocked = 0;
  let pubsubClients = 0;
  for (const client of server.clients.values()) {
    if (client.blocked) blocked++;
    if (client.subscribed) pubsubClients++;
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
        ['maxclients', server.limits.maxConnections],
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
        ['pubsub_channels', server.activeChannels().length],
        ['pubsub_patterns', server.patternCount],
        ['tracking_total_keys', server.tracking.keys],
        ['tracking_total_items', server.tracking.items],
        ['tracking_total_prefixes', server.tracking.prefixCount],
        ['total_blocking_keys', 0],
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
  ]);
}

/** INFO [section …]: the built-in sections merged with the application's, in Redis's order. */
function infoText(server: Server, argv: Command): string {
  const wanted = new Set(argv.slice(1).map((arg) => arg.toString('latin1').toLowerCase()));
  // default (or nothing): every section but commandstats; all and everything: commandstats too.
  const all = wanted.has('all') || wanted.has('everything');
  const every = wanted.size === 0 || all || wanted.has('default');
  if (all) wanted.add('commandstats');
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
  const names = [...INFO_ORDER, ...[...sections.keys()].filter((name) => !INFO_ORDER.includes(name))];
  const parts: string[] = [];
  for (const name of names) {
    const fields = sections.get(name);
    if (fields === undefined || !((every && name !== 'commandstats') || wanted.has(name))) continue;
    let part = `# ${name === 'cpu' ? 'CPU' : `${name[0]?.toUpperCase()}${name.slice(1)}`}\r\n`;
    for (const [key, value] of fields) part += `${key}:${value}\r\n`;
    parts.push(part);
  }
  return parts.join('\r\n');
}

/** Clients running EXEC's queued commands (MONITOR refuses to start there). */
const inExec = new WeakSet<object>();

function checkName(name: string): void {
  for (let i = 0; i < name.length; i++) {
    const code = name.charCodeAt(i);
    if (code < 0x21 || code > 0x7e) throw new RespError('ERR Client names cannot contain spaces, newlines or special characters.');
  }
}

/** Bytes of a command's arguments (CLIENT LIST's argv-mem for the client running it). */
function argvBytes(argv: Command): number {
  let bytes = 0;
  for (const arg of argv) bytes += arg.length;
  return bytes;
}

/** The file descriptor of a TCP connection, as Redis's `fd=`; -1 when Node does not expose one (TLS). */
function fileDescriptor(client: Client): number {
  const fd = (client.conn.socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : -1;
}

/** True when `version` (`7.2.0`) is at least major.minor. */
function versionAtLeast(version: string, major: number, minor: number): boolean {
  const [a = 0, b = 0] = version.split('.').map(Number);
  return a > major || (a === major && b >= minor);
}

/**
 * One line of CLIENT LIST / CLIENT INFO, with the fields of Redis (networking.c,
 * catClientInfoString) in its order, for the version this server reports: 7.0.15's set
 * (`id addr laddr fd name … user redir resp`) and, from 7.2 (the adapter's default
 * serverVersion), `lib-name lib-ver` after them. mini-redis reports 7.0.15 and gets 7.0's set.
 * `argv` is the running command's, for the client that asked; for the others, argv-mem counts
 * the arguments of a command received in part.
 */
function clientLine(server: Server, client: Client, argv?: Command): string {
  const now = Date.now();
  let flags = '';
  if (client.monitoring) flags += 'O';
  if (client.subscribed) flags += 'P';
  if (client.multi !== undefined) flags += 'x';
  if (client.blocked) flags += 'b';
  const tracking = client.tracking;
  if (tracking?.on) flags += 't';
  if (tracking?.brokenRedirect) flags += 'R';
  if (tracking?.bcast) flags += 'B';
  if (client.watchDirty) flags += 'd';
  if (client.closing) flags += 'c';
  if (client.conn.remoteAddress === undefined) flags += 'U';
  if (client.noEvict) flags += 'e';
  if (flags === '') flags = 'N';
  const socket = client.conn.socket;
  // Redis empties its query buffer after the commands of a read ran: the client that asks still
  // has its CLIENT LIST in it (qbuf=26 for `*2 $6 client $4 list`), the others what is unparsed.
  const qbuf = argv === undefined ? client.inputBytes : client.queryBufferBytes;
  const argvMem = argv === undefined ? client.partialArgvBytes : argvBytes(argv);
  const multiMem = client.multiBytes;
  // Replies written by handlers and not yet handed to the socket play Redis's reply buffer (obl);
  // what the socket holds unsent plays its reply list (oll: 1 while there is some; omem: bytes).
  const obl = client.reply.pending;
  const omem = socket.writableLength;
  const events = `${client.reading ? 'r' : ''}${omem > 0 ? 'w' : ''}`;
  return (
    `id=${client.id} addr=${clientAddress(client.conn)} laddr=${localAddress(client.conn)} fd=${fileDescriptor(client)}` +
    ` name=${client.name} age=${Math.floor((now - client.conn.openedAt) / 1000)} idle=${Math.floor((now - client.lastActivity) / 1000)}` +
    ` flags=${flags} db=${client.db} sub=${client.channels.size} psub=${client.patterns.size} ssub=0` +
    ` multi=${client.multi === undefined ? -1 : client.multi.length} qbuf=${qbuf} qbuf-free=0 argv-mem=${argvMem}` +
    ` multi-mem=${multiMem} rbs=0 rbp=0 obl=${obl} oll=${omem > 0 ? 1 : 0} omem=${omem}` +
    ` tot-mem=${qbuf + argvMem + multiMem + obl + omem} events=${events} cmd=${client.lastCommand}` +
    ` user=${client.user ?? 'default'} redir=${tracking?.on ? tracking.redirect : -1} resp=${client.protocol}` +
    (versionAtLeast(server.serverVersion, 7, 2) ? ` lib-name=${client.libName} lib-ver=${client.libVersion}` : '')
  );
}

/** CLIENT LIST [TYPE normal|master|replica|pubsub] [ID id …], as networking.c (7.2) parses it. */
function clientList(server: Server, client: Client, argv: Command): string {
  const line = (other: Client): string => `${clientLine(server, other, other === client ? argv : undefined)}\n`;
  const option = upper(argv[2]);
  if (argv.length === 4 && option === 'TYPE') {
    const type = CLIENT_TYPES[text(argv[3]).toLowerCase()];
    if (type === undefined) throw new RespError(`ERR Unknown client type '${cstr(argv[3])}'`);
    let out = '';
    for (const other of server.clients.values()) if (clientType(other as Client) === type) out += line(other as Client);
    return out;
  }
  if (argv.length > 3 && option === 'ID') {
    const ids: number[] = [];
    for (const arg of argv.slice(3)) {
      const value = arg.toString('latin1');
      if (!/^-?(0|[1-9]\d{0,18})$/.test(value)) throw new RespError('ERR Invalid client ID');
      const id = BigInt(value);
      if (id < -9223372036854775808n || id > 9223372036854775807n) throw new RespError('ERR Invalid client ID');
      ids.push(Number(id));
    }
    let out = '';
    for (const id of ids) {
      const other = server.clients.get(id);
      if (other !== undefined) out += line(other as Client);
    }
    return out;
  }
  if (argv.length !== 2) throw new RespError('ERR syntax error');
  let out = '';
  for (const other of server.clients.values()) out += line(other as Client);
  return out;
}

/** networking.c, getClientType: a MONITOR client counts as normal; there are no masters or replicas here. */
function clientType(client: Client): string {
  return client.subscribed ? 'pubsub' : 'normal';
}

/** Redis formats option values with %s: the text stops at a NUL byte. */
function cstr(arg: Buffer | undefined): string {
  const value = text(arg);
  const nul = value.indexOf('\u0000');
  return nul === -1 ? value : value.slice(0, nul);
}

function registerClient(server: Server): void {
  const subcommands: Record<string, (client: Client, argv: Command) => unknown> = {
    ID: (client) => client.id,
    GETNAME: (client) => (client.name === '' ? null : client.name),
    SETNAME: (client, argv) => {
      if (argv.length !== 3) throw new RespError("ERR wrong number of arguments for 'client|setname' command");
      const name = text(argv[2]);
      checkName(name);
      client.name = name;
      return OK;
    },
    SETINFO: (client, argv) => {
      if (argv.length !== 4) throw new RespError("ERR wrong number of arguments for 'client|setinfo' command");
      const attribute = upper(argv[2]);
      const value = text(argv[3]);
      if (attribute === 'LIB-NAME') client.libName = value;
      else if (attribute === 'LIB-VER') client.libVersion = value;
      else throw new RespError(`ERR Unrecognized option '${text(argv[2])}'`);
      return OK;
    },
    INFO: (client, argv) => {
      client.reply.verbatim(`${clientLine(server, client, argv)}\n`);
      return undefined;
    },
    LIST: (client, argv) => {
      client.reply.verbatim(clientList(server, client, argv));
      return undefined;
    },
    KILL: (client, argv) => clientKill(server, client, argv),
    REPLY: (client, argv) => {
      // networking.c: ON answers +OK; OFF and SKIP are silent (SKIP does nothing while OFF).
      const mode = upper(argv[2]);
      if (mode === 'ON') {
        client.replyOff = false;
        client.replySkip = false;
        client.replySkipNext = false;
        return OK;
      }
      if (mode === 'OFF') client.replyOff = true;
      else if (mode === 'SKIP') client.replySkipNext ||= !client.replyOff;
      else throw new RespError('ERR syntax error');
      return undefined;
    },
    PAUSE: (_client, argv) => {
      if (argv.length > 4) throw subcommandSyntaxError(argv);
      // The mode is checked before the timeout, as networking.c does.
      let type: 'write' | 'all' = 'all';
      if (argv.length === 4) {
        const mode = upper(argv[3]);
        if (mode === 'WRITE') type = 'write';
        else if (mode !== 'ALL') throw new RespError('ERR CLIENT PAUSE mode must be WRITE or ALL');
      }
      const timeout = text(argv[2]);
      if (!/^(0|-?[1-9]\d{0,18})$/.test(timeout) || BigInt(timeout) > 9223372036854775807n || BigInt(timeout) < -9223372036854775808n)
        throw new RespError('ERR timeout is not an integer or out of range');
      if (timeout.startsWith('-')) throw new RespError('ERR timeout is negative');
      server.pause(Date.now() + Number(timeout), type);
      return OK;
    },
    UNPAUSE: () => {
      server.unpause();
      return OK;
    },
    UNBLOCK: (_client, argv) => {
      if (argv.length > 4) throw subcommandSyntaxError(argv);
      let error = false;
      if (argv.length === 4) {
        const reason = upper(argv[3]);
        if (reason === 'ERROR') error = true;
        else if (reason !== 'TIMEOUT') throw new RespError('ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR');
      }
      const id = text(argv[2]);
      if (!/^(0|-?[1-9]\d{0,18})$/.test(id) || BigInt(id) > 9223372036854775807n || BigInt(id) < -9223372036854775808n)
        throw new RespError(NOT_INTEGER);
      const target = server.clients.get(Number(id));
      return target?.unblock(error) ? 1 : 0;
    },
    'NO-EVICT': (client, argv) => {
      const mode = upper(argv[2]);
      if (mode === 'ON') client.noEvict = true;
      else if (mode === 'OFF') client.noEvict = false;
      else throw new RespError('ERR syntax error');
      return OK;
    },
    GETREDIR: (client) => server.tracking.redirectOf(client),
    TRACKING: (client, argv) => {
      server.tracking.command(client, argv);
      return OK;
    },
    CACHING: (client, argv) => {
      server.tracking.caching(client, argv);
      return OK;
    },
    TRACKINGINFO: (client) => server.tracking.info(client) as ReplyValue,
    HELP: (client) => {
      client.reply.array(CLIENT_HELP.length);
      for (const line of CLIENT_HELP) client.reply.simple(line);
      return undefined;
    },
  };
  const clientSubcommands = {
    id: [],
    getname: [],
    setname: [],
    setinfo: [],
    info: [],
    list: ['admin'],
    kill: ['admin'],
    reply: [],
    pause: ['admin'],
    unpause: ['admin'],
    unblock: ['admin'],
    'no-evict': ['admin'],
    getredir: [],
    tracking: [],
    caching: [],
    trackinginfo: [],
    help: [],
  } satisfies Record<string, CommandFlag[]>;
  server.command(
    'client',
    { arity: -2, subcommands: clientSubcommands, summary: 'A container for client connection commands.', group: 'connection' },
    (client, argv) => {
      const sub = upper(argv[1]);
      const run = subcommands[sub];
      if (run === undefined) throw new RespError(`ERR unknown subcommand '${text(argv[1])}'. Try CLIENT HELP.`);
      const arity = CLIENT_ARITY[sub] ?? -2;
      if (arity >= 0 ? argv.length !== arity : argv.length < -arity)
        throw new RespError(`ERR wrong number of arguments for 'client|${sub.toLowerCase()}' command`);
      return run(client, argv) as ReturnType<typeof run> & undefined;
    },
  );
}

/** Arity of each CLIENT subcommand, the command and subcommand included (Redis 7's command table). */
const CLIENT_ARITY: Record<string, number> = {
  ID: 2,
  GETNAME: 2,
  SETNAME: 3,
  SETINFO: 4,
  INFO: 2,
  LIST: -2,
  KILL: -3,
  REPLY: 3,
  PAUSE: -3,
  UNPAUSE: 2,
  UNBLOCK: -3,
  'NO-EVICT': 3,
  GETREDIR: 2,
  TRACKING: -3,
  CACHING: 3,
  TRACKINGINFO: 2,
  HELP: 2,
};

/** A known subcommand with more arguments than it takes (server.c, addReplySubcommandSyntaxError). */
function subcommandSyntaxError(argv: Command): RespError {
  return new RespError(
    `ERR unknown subcommand or wrong number of arguments for '${cstr(argv[1]).slice(0, 128)}'. Try ${upper(argv[0])} HELP.`,
  );
}

/** CLIENT HELP, as redis-server 7.0.15 prints it. */
const CLIENT_HELP = [
  'CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:',
  'CACHING (YES|NO)',
  '    Enable/disable tracking of the keys for next command in OPTIN/OPTOUT modes.',
  'GETREDIR',
  '    Return the client ID we are redirecting to when tracking is enabled.',
  'GETNAME',
  '    Return the name of the current connection.',
  'ID',
  '    Return the ID of the current connection.',
  'INFO',
  '    Return information about the current client connection.',
  'KILL <ip:port>',
  '    Kill connection made from <ip:port>.',
  'KILL <option> <value> [<option> <value> [...]]',
  '    Kill connections. Options are:',
  '    * ADDR (<ip:port>|<unixsocket>:0)',
  '      Kill connections made from the specified address',
  '    * LADDR (<ip:port>|<unixsocket>:0)',
  '      Kill connections made to specified local address',
  '    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)',
  '      Kill connections by type.',
  '    * USER <username>',
  '      Kill connections authenticated by <username>.',
  '    * SKIPME (YES|NO)',
  '      Skip killing current connection (default: yes).',
  'LIST [options ...]',
  '    Return information about client connections. Options:',
  '    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)',
  '      Return clients of specified type.',
  'UNPAUSE',
  '    Stop the current client pause, resuming traffic.',
  'PAUSE <timeout> [WRITE|ALL]',
  '    Suspend all, or just write, clients for <timeout> milliseconds.',
  'REPLY (ON|OFF|SKIP)',
  '    Control the replies sent to the current connection.',
  'SETNAME <name>',
  '    Assign the name <name> to the current connection.',
  'UNBLOCK <clientid> [TIMEOUT|ERROR]',
  '    Unblock the specified blocked client.',
  'TRACKING (ON|OFF) [REDIRECT <id>] [BCAST] [PREFIX <prefix> [...]]',
  '         [OPTIN] [OPTOUT] [NOLOOP]',
  '    Control server assisted client side caching.',
  'TRACKINGINFO',
  '    Report tracking status for the current connection.',
  'NO-EVICT (ON|OFF)',
  '    Protect current client connection from eviction.',
  'HELP',
  '    Prints this help.',
];

/** Redis 7's client types: every client here is `normal`, or `pubsub` while subscribed. */
const CLIENT_TYPES: Record<string, string> = { normal: 'normal', pubsub: 'pubsub', master: 'master', replica: 'replica', slave: 'replica' };

/**
 * CLIENT KILL as Redis 7.0–7.2 has it (networking.c, clientCommand): `CLIENT KILL ip:port` (may
 * kill the caller; +OK or `No such client`), or filters `ID`, `ADDR`, `LADDR`, `USER`, `TYPE`,
 * `SKIPME` (default yes) answering the number killed. Options are checked as they come, the
 * first bad one answers; a caller that kills itself gets the reply first.
 */
function clientKill(server: Server, client: Client, argv: Command): number | typeof OK | undefined {
  let addr: string | undefined;
  let laddr: string | undefined;
  let user: string | undefined;
  let type: string | undefined;
  let id = 0;
  let skipme = true;
  if (argv.length === 2) throw new RespError("ERR wrong number of arguments for 'client|kill' command");
  if (argv.length === 3) {
    addr = text(argv[2]);
    skipme = false; // with the old form a client may kill itself
  } else {
    for (let i = 2; i < argv.length; i += 2) {
      const option = upper(argv[i]);
      const more = i + 1 < argv.length;
      const value = argv[i + 1];
      if (option === 'ID' && more) {
        const parsed = text(value);
        if (!/^-?(0|[1-9]\d{0,18})$/.test(parsed)) throw new RespError('ERR client-id should be greater than 0');
        const number = BigInt(parsed);
        if (number < 1n || number > 9223372036854775807n) throw new RespError('ERR client-id should be greater than 0');
        id = Number(number);
      } else if (option === 'TYPE' && more) {
        const name = text(value).toLowerCase();
        type = CLIENT_TYPES[name];
        if (type === undefined) throw new RespError(`ERR Unknown client type '${cstr(value)}'`);
      } else if (option === 'ADDR' && more) {
        addr = text(value);
      } else if (option === 'LADDR' && more) {
        laddr = text(value);
      } else if (option === 'USER' && more) {
        user = text(value);
        if (!server.userExists(user)) throw new RespError(`ERR No such user '${cstr(value)}'`);
      } else if (option === 'SKIPME' && more) {
        const answer = upper(value);
        if (answer === 'YES') skipme = true;
        else if (answer === 'NO') skipme = false;
        else throw new RespError('ERR syntax error');
      } else {
        throw new RespError('ERR syntax error');
      }
    }
  }
  let killed = 0;
  let self = false;
  for (const other of [...server.clients.values()] as Client[]) {
    if (addr !== undefined && clientAddress(other.conn) !== addr) continue;
    if (laddr !== undefined && localAddress(other.conn) !== laddr) continue;
    if (type !== undefined && clientType(other) !== type) continue;
    if (id !== 0 && other.id !== id) continue;
    if (user !== undefined && (other.user ?? 'default') !== user) continue;
    if (other === client && skipme) continue;
    if (other === client) self = true;
    else other.kill();
    killed++;
  }
  const reply = argv.length === 3 ? OK : killed;
  if (argv.length === 3 && killed === 0) throw new RespError('ERR No such client');
  if (self) {
    // The reply goes out first, then the connection closes (CLIENT_CLOSE_AFTER_REPLY).
    client.reply.value(reply);
    client.closeAfterReply();
    return undefined;
  }
  return reply;
}

function registerCommand(server: Server): void {
  const info = (name: string): unknown[] | null => {
    const spec = server.lookup(name);
    if (spec === undefined) return null;
    const [first, last, step] = spec.keys ?? [0, 0, 0];
    return [spec.name, spec.arity, new Set((spec.flags ?? []).map((flag) => simple(flag))), first, last, step, [], [], [], []];
  };
  const docs = (name: string): [string, Map<string, string>] | undefined => {
    const spec = server.lookup(name);
    if (spec === undefined) return undefined;
    return [
      spec.name,
      new Map([
        ['summary', spec.summary ?? ''],
        ['since', spec.since ?? '1.0.0'],
        ['group', spec.group ?? 'generic'],
      ]),
    ];
  };
  const commandSubcommands = { count: [], list: [], info: [], docs: [] } satisfies Record<string, CommandFlag[]>;
  server.command(
    'command',
    { arity: -1, subcommands: commandSubcommands, summary: 'Returns detailed information about all commands.', group: 'server' },
    (client, argv) => {
      const sub = upper(argv[1]);
      const names = argv.slice(2).map((arg) => text(arg).toLowerCase());
      const all = [...server.commands].map((spec) => spec.name);
      if (argv.length === 1) return all.map(info) as never;
      if (sub === 'COUNT') return all.length;
      if (sub === 'LIST') return all;
      if (sub === 'INFO') return (names.length > 0 ? names : all).map(info) as never;
      if (sub === 'DOCS') {
        const entries = (names.length > 0 ? names : all).map(docs).filter((entry) => entry !== undefined);
        client.reply.map(entries.length);
        for (const [name, doc] of entries) client.reply.bulk(name).map(doc);
        return undefined;
      }
      throw new RespError(`ERR unknown subcommand '${text(argv[1])}'. Try COMMAND HELP.`);
    },
  );
}

function registerTransactions(server: Server): void {
  server.command('multi', { arity: 1, flags: ['nomulti', 'fast'], summary: 'Starts a transaction.', group: 'transactions' }, (client) => {
    if (client.multi !== undefined) throw new RespError('ERR MULTI calls can not be nested');
    client.multi = [];
    client.multiDirty = false;
    return OK;
  });
  server.command(
    'discard',
    { arity: 1, flags: ['nomulti', 'fast'], summary: 'Discards a transaction.', group: 'transactions' },
    (client) => {
      if (client.multi === undefined) throw new RespError('ERR DISCARD without MULTI');
      client.multi = undefined;
      server.unwatch(client);
      return OK;
    },
  );
  server.command(
    'exec',
    { arity: 1, flags: ['nomulti'], summary: 'Executes all commands in a transaction.', group: 'transactions' },
    async (client) => {
      const queued = client.multi;
      if (queued === undefined) throw new RespError('ERR EXEC without MULTI');
      client.multi = undefined;
      const dirty = client.multiDirty;
      const aborted = client.watchDirty;
      client.multiDirty = false;
      server.unwatch(client);
      if (dirty) throw new RespError('EXECABORT Transaction discarded because of previous errors.');
      if (aborted) {
        client.reply.nullArray();
        return undefined;
      }
      client.reply.array(queued.length);
      inExec.add(client);
      try {
        for (const argv of queued) {
          const spec = server.lookup((argv[0] as Buffer).toString('latin1'));
          if (spec === undefined) continue; // cannot happen: unknown commands make the transaction dirty
          const pending = server.run(client, spec, argv);
          if (pending !== undefined) await pending;
        }
      } finally {
        inExec.delete(client);
      }
      return undefined;
    },
  );
  server.command(
    'watch',
    { arity: -2, flags: ['nomulti', 'fast'], summary: 'Monitors changes to keys.', group: 'transactions' },
    (client, argv) => {
      if (client.multi !== undefined) throw new RespError('ERR WATCH inside MULTI is not allowed');
      for (const key of argv.slice(1)) server.watch(client, client.db, key.toString('latin1'));
      return OK;
    },
  );
  server.command('unwatch', { arity: 1, flags: ['fast'], summary: 'Forgets about watched keys.', group: 'transactions' }, (client) => {
    server.unwatch(client);
    return OK;
  });
}

function registerPubSub(server: Server): void {
  // Confirmations are pushes (Redis's CLIENT_PUSHING): CLIENT REPLY OFF does not silence them.
  const confirm = (client: Client, kind: string, name: Buffer | null): void => {
    client.pushToSelf((reply) => {
      reply.push(3).bulk(kind);
      if (name === null) reply.null();
      else reply.bulk(name);
      reply.integer(client.channels.size + client.patterns.size);
    });
  };
  const group = { group: 'pubsub' };
  server.command(
    'subscribe',
    { arity: -2, flags: ['pubsub'], summary: 'Listens for messages published to channels.', ...group },
    (client, argv) => {
      for (const channel of argv.slice(1)) {
        server.subscribe(client, channel.toString('latin1'));
        confirm(client, 'subscribe', channel);
      }
    },
  );
  server.command(
    'psubscribe',
    { arity: -2, flags: ['pubsub'], summary: 'Listens for messages published to channels that match patterns.', ...group },
    (client, argv) => {
      for (const pattern of argv.slice(1)) {
        server.psubscribe(client, pattern.toString('latin1'));
        confirm(client, 'psubscribe', pattern);
      }
    },
  );
  const leave = (kind: 'unsubscribe' | 'punsubscribe') => (client: Client, argv: Command) => {
    const current = kind === 'unsubscribe' ? client.channels : client.patterns;
    const names = argv.length > 1 ? argv.slice(1).map((arg) => arg.toString('latin1')) : [...current];
    if (names.length === 0) confirm(client, kind, null);
    for (const name of names) {
      if (kind === 'unsubscribe') server.unsubscribe(client, name);
      else server.punsubscribe(client, name);
      confirm(client, kind, Buffer.from(name, 'latin1'));
    }
  };
  server.command(
    'unsubscribe',
    { arity: -1, flags: ['pubsub'], summary: 'Stops listening to messages posted to channels.', ...group },
    leave('unsubscribe'),
  );
  server.command(
    'punsubscribe',
    { arity: -1, flags: ['pubsub'], summary: 'Stops listening to messages published to channels that match patterns.', ...group },
    leave('punsubscribe'),
  );
  server.command('publish', { arity: 3, flags: ['fast'], summary: 'Posts a message to a channel.', ...group }, (_client, argv) =>
    server.publish(argv[1] as Buffer, argv[2] as Buffer),
  );
  const pubsubSubcommands = { channels: [], numsub: [], numpat: [] } satisfies Record<string, CommandFlag[]>;
  server.command(
    'pubsub',
    { arity: -2, subcommands: pubsubSubcommands, summary: 'A container for Pub/Sub commands.', ...group },
    (_client, argv) => {
      const sub = upper(argv[1]);
      if (sub === 'CHANNELS') return server.activeChannels(argv[2]?.toString('latin1')).map((name) => Buffer.from(name, 'latin1'));
      if (sub === 'NUMSUB') return argv.slice(2).flatMap((channel) => [channel, server.subscriberCount(channel.toString('latin1'))]);
      if (sub === 'NUMPAT') return server.patternCount;
      throw new RespError(`ERR unknown subcommand '${text(argv[1])}'. Try PUBSUB HELP.`);
    },
  );
}
