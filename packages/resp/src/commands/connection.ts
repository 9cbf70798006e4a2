import { int64Arg } from '../args.js';
import type { BuiltinHost } from '../host.js';
import { OK, RespError, simple } from '../reply.js';
import { checkName, text, upper } from './util.js';

// PING, ECHO, QUIT, SELECT, AUTH, HELLO and RESET, with Redis 7's replies and error texts.

type Host<C> = Pick<
  BuiltinHost<C>,
  'command' | 'databases' | 'serverVersion' | 'clusterEnabled' | 'auth' | 'pubsub' | 'watches' | 'tracking' | 'monitors'
>;

const WRONGPASS = 'WRONGPASS invalid username-password pair or user is disabled.';

export function registerConnection<C>(server: Host<C>): void {
  server.command(
    'ping',
    {
      arity: -1,
      flags: ['pubsub', 'fast'],
      tips: ['request_policy:all_shards', 'response_policy:all_succeeded'],
      summary: 'Returns the server’s liveliness response.',
      group: 'connection',
    },
    (client, argv) => {
      if (argv.length > 2) throw new RespError("ERR wrong number of arguments for 'ping' command");
      // RESP2 subscribed mode answers with a message-shaped array (server.c, pingCommand).
      if (client.protocol === 2 && server.pubsub.isSubscribed(client)) return ['pong', argv[1] ?? ''];
      return argv.length === 2 ? (argv[1] as Buffer) : simple('PONG');
    },
  );

  server.command(
    'echo',
    { arity: 2, flags: ['loading', 'stale', 'fast'], summary: 'Returns the given string.', group: 'connection' },
    (_client, argv) => argv[1] as Buffer,
  );

  server.command(
    'quit',
    {
      arity: -1,
      flags: ['noauth', 'pubsub', 'nomulti', 'noscript', 'loading', 'stale', 'fast', 'allow_busy'],
      summary: 'Closes the connection.',
      group: 'connection',
    },
    (client) => {
      client.reply.ok();
      client.closeAfterReply();
    },
  );

  server.command(
    'select',
    { arity: 2, flags: ['loading', 'stale', 'fast'], summary: 'Changes the selected database.', group: 'connection' },
    (client, argv) => {
      // getIntFromObjectOrReply: a 64-bit integer, then a C int.
      const db = int64Arg(argv[1]);
      if (db < -2147483648n || db > 2147483647n)
        throw new RespError('ERR value is out of range, value must between -2147483648 and 2147483647');
      if (db < 0n || db >= BigInt(server.databases)) throw new RespError('ERR DB index is out of range');
      client.db = Number(db);
      return OK;
    },
  );

  server.command(
    'auth',
    {
      arity: -2,
      flags: ['noauth', 'noscript', 'loading', 'stale', 'fast', 'allow_busy'],
      summary: 'Authenticates the connection.',
      group: 'connection',
    },
    async (client, argv) => {
      if (argv.length > 3) throw new RespError('ERR syntax error');
      if (argv.length === 2 && !server.auth.configured) {
        throw new RespError(
          'ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?',
        );
      }
      const [user, password] = argv.length === 3 ? [text(argv[1]), text(argv[2])] : ['default', text(argv[1])];
      if (!(await server.auth.check(user, password, client))) throw new RespError(WRONGPASS);
      client.user = user;
      return OK;
    },
  );

  server.command(
    'hello',
    {
      arity: -1,
      flags: ['noauth', 'noscript', 'loading', 'stale', 'fast', 'allow_busy'],
      summary: 'Handshakes with the Redis server.',
      group: 'connection',
    },
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
        if (!(await server.auth.check(credentials[0], credentials[1], client))) throw new RespError(WRONGPASS);
        client.user = credentials[0];
      }
      if (server.auth.required(client)) {
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
        .bulk(server.clusterEnabled ? 'cluster' : 'standalone')
        .bulk('role')
        .bulk('master')
        .bulk('modules')
        .array(0);
    },
  );

  server.command(
    'reset',
    {
      arity: 1,
      flags: ['noauth', 'pubsub', 'nomulti', 'noscript', 'loading', 'stale', 'fast', 'allow_busy'],
      summary: 'Resets the connection.',
      group: 'connection',
    },
    (client) => {
      // As Redis's clearClientConnectionState: MULTI, WATCH, tracking, every subscription, db, name, MONITOR, protocol, user.
      client.multi = undefined;
      client.multiDirty = false;
      server.watches.unwatch(client);
      server.tracking.disable(client);
      server.pubsub.leaveAll(client);
      client.db = 0;
      client.name = '';
      if (client.monitoring) server.monitors.stop(client);
      client.reply.protocol = 2;
      if (server.auth.configured) client.user = undefined;
      return simple('RESET');
    },
  );
}
