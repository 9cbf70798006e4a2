import type { RespClient } from '../client.js';
import type { BuiltinHost } from '../host.js';
import type { Command } from '../parser.js';
import type { SubcommandOptions } from '../registry.js';
import { RespError } from '../reply.js';
import { runningExec } from './transactions.js';
import { subcommandSyntaxError, text, upper } from './util.js';

// SUBSCRIBE, PSUBSCRIBE, UNSUBSCRIBE, PUNSUBSCRIBE, PUBLISH, Redis 7.0's sharded pub/sub
// (SSUBSCRIBE, SUNSUBSCRIBE, SPUBLISH) and PUBSUB (pubsub.c). The broker is the host's `pubsub`.

type Host<C> = Pick<BuiltinHost<C>, 'command' | 'pubsub'>;

type Kind = 'subscribe' | 'psubscribe' | 'unsubscribe' | 'punsubscribe' | 'ssubscribe' | 'sunsubscribe';

export function registerPubSub<C>(server: Host<C>): void {
  const broker = server.pubsub;
  // Confirmations are pushes (Redis's CLIENT_PUSHING): CLIENT REPLY OFF does not silence them.
  // Their count is the client's channels and patterns, or for the shard kinds its shard channels.
  const confirm = (client: RespClient<C>, kind: Kind, name: Buffer | null): void => {
    client.pushToSelf((reply) => {
      reply.push(3).bulk(kind);
      if (name === null) reply.null();
      else reply.bulk(name);
      reply.integer(
        kind === 'ssubscribe' || kind === 'sunsubscribe' ? broker.shardSubscriptionCount(client) : broker.subscriptionCount(client),
      );
    });
  };
  const group = { group: 'pubsub' };
  server.command(
    'subscribe',
    { arity: -2, flags: ['pubsub', 'noscript', 'loading', 'stale'], summary: 'Listens for messages published to channels.', ...group },
    (client, argv) => {
      for (const channel of argv.slice(1)) {
        broker.subscribe(client, channel.toString('latin1'));
        confirm(client, 'subscribe', channel);
      }
    },
  );
  server.command(
    'psubscribe',
    {
      arity: -2,
      flags: ['pubsub', 'noscript', 'loading', 'stale'],
      summary: 'Listens for messages published to channels that match patterns.',
      ...group,
    },
    (client, argv) => {
      for (const pattern of argv.slice(1)) {
        broker.psubscribe(client, pattern.toString('latin1'));
        confirm(client, 'psubscribe', pattern);
      }
    },
  );
  server.command(
    'ssubscribe',
    {
      arity: -2,
      flags: ['pubsub', 'noscript', 'loading', 'stale'],
      keys: [1, -1, 1],
      summary: 'Listens for messages published to shard channels.',
      since: '7.0.0',
      ...group,
    },
    (client, argv) => {
      // pubsub.c, ssubscribeCommand: not from EXEC (CLIENT_DENY_BLOCKING; SUBSCRIBE is let through there, SSUBSCRIBE is not).
      if (runningExec(client)) throw new RespError("ERR SSUBSCRIBE isn't allowed for a DENY BLOCKING client");
      for (const channel of argv.slice(1)) {
        broker.ssubscribe(client, channel.toString('latin1'));
        confirm(client, 'ssubscribe', channel);
      }
    },
  );
  /** UNSUBSCRIBE, PUNSUBSCRIBE, SUNSUBSCRIBE: the names given, or every one (a null name when there is none). */
  const leave = (kind: 'unsubscribe' | 'punsubscribe' | 'sunsubscribe') => (client: RespClient<C>, argv: Command) => {
    const current = kind === 'unsubscribe' ? client.channels : kind === 'punsubscribe' ? client.patterns : broker.shardChannelsOf(client);
    const names = argv.length > 1 ? argv.slice(1).map((arg) => arg.toString('latin1')) : [...current];
    if (names.length === 0) confirm(client, kind, null);
    for (const name of names) {
      if (kind === 'unsubscribe') broker.unsubscribe(client, name);
      else if (kind === 'punsubscribe') broker.punsubscribe(client, name);
      else broker.sunsubscribe(client, name);
      confirm(client, kind, Buffer.from(name, 'latin1'));
    }
  };
  server.command(
    'unsubscribe',
    { arity: -1, flags: ['pubsub', 'noscript', 'loading', 'stale'], summary: 'Stops listening to messages posted to channels.', ...group },
    leave('unsubscribe'),
  );
  server.command(
    'punsubscribe',
    {
      arity: -1,
      flags: ['pubsub', 'noscript', 'loading', 'stale'],
      summary: 'Stops listening to messages published to channels that match patterns.',
      ...group,
    },
    leave('punsubscribe'),
  );
  server.command(
    'sunsubscribe',
    {
      arity: -1,
      flags: ['pubsub', 'noscript', 'loading', 'stale'],
      keys: [1, -1, 1],
      summary: 'Stops listening to messages posted to shard channels.',
      since: '7.0.0',
      ...group,
    },
    leave('sunsubscribe'),
  );
  server.command(
    'publish',
    { arity: 3, flags: ['loading', 'stale', 'fast'], summary: 'Posts a message to a channel.', ...group },
    (_client, argv) => broker.publish(argv[1] as Buffer, argv[2] as Buffer),
  );
  server.command(
    'spublish',
    {
      arity: 3,
      flags: ['loading', 'stale', 'fast'],
      keys: [1, 1, 1],
      summary: 'Post a message to a shard channel',
      since: '7.0.0',
      ...group,
    },
    (_client, argv) => broker.spublish(argv[1] as Buffer, argv[2] as Buffer),
  );
  // Redis 7.0.15: each subcommand loading stale, with the pubsub flag and @pubsub (the group's) but
  // HELP (@slow only: its declared, empty, categories leave the group's out).
  const pubsubSubcommands = Object.fromEntries(
    Object.entries(PUBSUB_ARITY).map(([name, arity]): [string, SubcommandOptions] => [
      name.toLowerCase(),
      { arity, flags: ['loading', 'stale'], ...(name === 'HELP' ? { aclCategories: [] } : {}) },
    ]),
  );
  server.command(
    'pubsub',
    { arity: -2, subcommands: pubsubSubcommands, summary: 'A container for Pub/Sub commands.', ...group },
    (client, argv) => {
      const sub = upper(argv[1]);
      const arity = PUBSUB_ARITY[sub];
      if (arity === undefined) throw new RespError(`ERR unknown subcommand '${text(argv[1]).slice(0, 128)}'. Try PUBSUB HELP.`);
      if (arity >= 0 ? argv.length !== arity : argv.length < -arity)
        throw new RespError(`ERR wrong number of arguments for 'pubsub|${sub.toLowerCase()}' command`);
      const names = (list: string[]): Buffer[] => list.map((name) => Buffer.from(name, 'latin1'));
      if (sub === 'CHANNELS' || sub === 'SHARDCHANNELS') {
        if (argv.length > 3) throw subcommandSyntaxError(argv);
        const pattern = argv[2]?.toString('latin1');
        return names(sub === 'CHANNELS' ? broker.activeChannels(pattern) : broker.activeShardChannels(pattern));
      }
      if (sub === 'NUMSUB') return argv.slice(2).flatMap((channel) => [channel, broker.subscriberCount(channel.toString('latin1'))]);
      if (sub === 'SHARDNUMSUB')
        return argv.slice(2).flatMap((channel) => [channel, broker.shardSubscriberCount(channel.toString('latin1'))]);
      if (sub === 'NUMPAT') return broker.patternCount;
      client.reply.array(PUBSUB_HELP.length);
      for (const line of PUBSUB_HELP) client.reply.simple(line);
      return undefined;
    },
  );
}

/** Arity of each PUBSUB subcommand, the command and subcommand included (Redis 7's command table). */
const PUBSUB_ARITY: Record<string, number> = { CHANNELS: -2, NUMSUB: -2, NUMPAT: 2, SHARDCHANNELS: -2, SHARDNUMSUB: -2, HELP: 2 };

/** PUBSUB HELP, as redis-server 7.0.15 prints it. */
const PUBSUB_HELP = [
  'PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:',
  'CHANNELS [<pattern>]',
  "    Return the currently active channels matching a <pattern> (default: '*').",
  'NUMPAT',
  '    Return number of subscriptions to patterns.',
  'NUMSUB [<channel> ...]',
  '    Return the number of subscribers for the specified channels, excluding',
  '    pattern subscriptions(default: no channels).',
  'SHARDCHANNELS [<pattern>]',
  "    Return the currently active shard level channels matching a <pattern> (default: '*').",
  'SHARDNUMSUB [<shardchannel> ...]',
  '    Return the number of subscribers for the specified shard level channel(s)',
  'HELP',
  '    Prints this help.',
];
