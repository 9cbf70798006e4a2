import { clientAddress, localAddress } from '../address.js';
import { NOT_INTEGER } from '../args.js';
import type { RespClient } from '../client.js';
import type { BuiltinHost } from '../host.js';
import type { Command } from '../parser.js';
import type { CommandFlag, SubcommandOptions } from '../registry.js';
import { OK, type ReplyValue, RespError } from '../reply.js';
import { checkName, cstr, subcommandSyntaxError, text, upper, versionAtLeast } from './util.js';

// CLIENT and its subcommands (networking.c, clientCommand): ID, GETNAME/SETNAME, SETINFO, INFO,
// LIST, KILL, REPLY, PAUSE/UNPAUSE, UNBLOCK, NO-EVICT, TRACKING, CACHING, GETREDIR, TRACKINGINFO, HELP.

type Host<C> = Pick<BuiltinHost<C>, 'command' | 'clients' | 'serverVersion' | 'auth' | 'pubsub' | 'pause' | 'tracking'>;

/** Bytes of a command's arguments (CLIENT LIST's argv-mem for the client running it). */
function argvBytes(argv: Command): number {
  let bytes = 0;
  for (const arg of argv) bytes += arg.length;
  return bytes;
}

/** The file descriptor of a TCP connection, as Redis's `fd=`; -1 when Node does not expose one (TLS). */
function fileDescriptor<C>(client: RespClient<C>): number {
  // Node's private handle, read without a cast: undefined where it has none.
  const handle: unknown = Reflect.get(client.conn.socket, '_handle');
  const fd: unknown = typeof handle === 'object' && handle !== null ? Reflect.get(handle, 'fd') : undefined;
  return typeof fd === 'number' && fd >= 0 ? fd : -1;
}

/**
 * One line of CLIENT LIST / CLIENT INFO, with the fields of Redis (networking.c,
 * catClientInfoString) in its order, for the version this server reports: 7.0.15's set
 * (`id addr laddr fd name … user redir resp`) and, from 7.2 (the adapter's default
 * serverVersion), `lib-name lib-ver` after them. mini-redis reports 7.0.15 and gets 7.0's set.
 * `argv` is the running command's, for the client that asked; for the others, argv-mem counts
 * the arguments of a command received in part.
 */
function clientLine<C>(server: Host<C>, client: RespClient<C>, argv?: Command): string {
  const now = Date.now();
  let flags = '';
  if (client.monitoring) flags += 'O';
  if (server.pubsub.isSubscribed(client)) flags += 'P';
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
    ` flags=${flags} db=${client.db} sub=${client.channelCount} psub=${client.patternCount} ssub=${server.pubsub.shardSubscriptionCount(client)}` +
    ` multi=${client.multi === undefined ? -1 : client.multi.length} qbuf=${qbuf} qbuf-free=0 argv-mem=${argvMem}` +
    ` multi-mem=${multiMem} rbs=0 rbp=0 obl=${obl} oll=${omem > 0 ? 1 : 0} omem=${omem}` +
    ` tot-mem=${qbuf + argvMem + multiMem + obl + omem} events=${events} cmd=${client.lastCommand}` +
    ` user=${client.user ?? 'default'} redir=${tracking?.on ? tracking.redirect : -1} resp=${client.protocol}` +
    (versionAtLeast(server.serverVersion, 7, 2) ? ` lib-name=${client.libName} lib-ver=${client.libVersion}` : '')
  );
}

/** CLIENT LIST [TYPE normal|master|replica|pubsub] [ID id …], as networking.c (7.2) parses it. */
function clientList<C>(server: Host<C>, client: RespClient<C>, argv: Command): string {
  const line = (other: RespClient<C>): string => `${clientLine(server, other, other === client ? argv : undefined)}\n`;
  const option = upper(argv[2]);
  if (argv.length === 4 && option === 'TYPE') {
    const type = CLIENT_TYPES[text(argv[3]).toLowerCase()];
    if (type === undefined) throw new RespError(`ERR Unknown client type '${cstr(argv[3])}'`);
    let out = '';
    for (const other of server.clients.values()) if (clientType(server, other) === type) out += line(other);
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
      if (other !== undefined) out += line(other);
    }
    return out;
  }
  if (argv.length !== 2) throw new RespError('ERR syntax error');
  let out = '';
  for (const other of server.clients.values()) out += line(other);
  return out;
}

/** networking.c, getClientType: a MONITOR client counts as normal; there are no masters or replicas here. */
function clientType<C>(server: Host<C>, client: RespClient<C>): string {
  return server.pubsub.isSubscribed(client) ? 'pubsub' : 'normal';
}

export function registerClient<C>(server: Host<C>): void {
  const subcommands: Record<string, (client: RespClient<C>, argv: Command) => unknown> = {
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
      server.pause.pause(Date.now() + Number(timeout), type);
      return OK;
    },
    UNPAUSE: () => {
      server.pause.unpause();
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
  // Redis 7.0.15's flags and tips of each subcommand (commands/client-*.json; SETINFO as 7.2's).
  const admin = new Set(['LIST', 'KILL', 'PAUSE', 'UNPAUSE', 'UNBLOCK', 'NO-EVICT']);
  const tips: Readonly<Record<string, readonly string[]>> = {
    INFO: ['nondeterministic_output'],
    LIST: ['nondeterministic_output'],
    SETINFO: ['request_policy:all_nodes', 'response_policy:all_succeeded'],
  };
  const clientSubcommands = Object.fromEntries(
    Object.entries(CLIENT_ARITY).map(([name, arity]): [string, SubcommandOptions] => {
      const flags: CommandFlag[] =
        name === 'HELP' ? ['loading', 'stale'] : [...(admin.has(name) ? (['admin'] as const) : []), 'noscript', 'loading', 'stale'];
      const own = tips[name];
      return [name.toLowerCase(), { arity, flags, ...(own === undefined ? {} : { tips: own }) }];
    }),
  );
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
function clientKill<C>(server: Host<C>, client: RespClient<C>, argv: Command): number | typeof OK | undefined {
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
        if (!server.auth.userExists(user)) throw new RespError(`ERR No such user '${cstr(value)}'`);
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
  for (const other of [...server.clients.values()]) {
    if (addr !== undefined && clientAddress(other.conn) !== addr) continue;
    if (laddr !== undefined && localAddress(other.conn) !== laddr) continue;
    if (type !== undefined && clientType(server, other) !== type) continue;
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
