import { globMatch } from '@portbind/core';
import type { BuiltinHost } from '../host.js';
import type { Command } from '../parser.js';
import {
  ACL_CATEGORIES,
  type CommandOptions,
  type CommandSpec,
  describeCommand,
  type KeySpec,
  type KeySpecFlag,
  keysFromSpecs,
  type SubcommandOptions,
  subcommandOptions,
} from '../registry.js';
import { OK, type ReplyValue, RespError, simple } from '../reply.js';
import { type InfoHost, infoText } from './info.js';
import { runningExec } from './transactions.js';
import { cstr, text, upper } from './util.js';

// INFO, MONITOR and COMMAND (COUNT, LIST, INFO, DOCS): what a client learns about the server.

type Host<C> = Pick<BuiltinHost<C>, 'command' | 'lookup' | 'commands' | 'monitors'> & InfoHost<C>;

/** INFO and MONITOR. */
export function registerInfo<C>(server: Host<C>): void {
  server.command(
    'info',
    {
      arity: -1,
      flags: ['loading', 'stale'],
      aclCategories: ['dangerous'],
      tips: ['nondeterministic_output', 'request_policy:all_shards', 'response_policy:special'],
      summary: 'Returns information and statistics about the server.',
      group: 'server',
    },
    (client, argv) => {
      client.reply.verbatim(infoText(server, argv));
    },
  );

  server.command(
    'monitor',
    {
      arity: 1,
      flags: ['admin', 'noscript', 'loading', 'stale'],
      summary: 'Listens for all requests received by the server in real-time.',
      group: 'server',
    },
    (client) => {
      // server.c, monitorCommand: not from EXEC (Redis's CLIENT_DENY_BLOCKING); a second MONITOR
      // is ignored, without a reply.
      if (runningExec(client)) throw new RespError("ERR MONITOR isn't allowed for DENY BLOCKING client");
      if (client.monitoring) return undefined;
      server.monitors.start(client);
      return OK;
    },
  );
}

/** COMMAND's subcommands and their arities (commands.c, COMMAND_Subcommands). */
const COMMAND_ARITY: Readonly<Record<string, number>> = {
  count: 2,
  docs: -2,
  getkeys: -4,
  getkeysandflags: -4,
  help: 2,
  info: -2,
  list: -2,
};

const COMMAND_HELP = [
  'COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:',
  '(no subcommand)',
  '    Return details about all Redis commands.',
  'COUNT',
  '    Return the total number of commands in this Redis server.',
  'LIST',
  '    Return a list of all commands in this Redis server.',
  'INFO [<command-name> ...]',
  '    Return details about multiple Redis commands.',
  '    If no command names are given, documentation details for all',
  '    commands are returned.',
  'DOCS [<command-name> ...]',
  '    Return documentation details about multiple Redis commands.',
  '    If no command names are given, documentation details for all',
  '    commands are returned.',
  'GETKEYS <full-command>',
  '    Return the keys from a full Redis command.',
  'GETKEYSANDFLAGS <full-command>',
  '    Return the keys and the access flags from a full Redis command.',
  'HELP',
  '    Prints this help.',
];

/** A key spec as COMMAND INFO shows it (server.c, addReplyCommandKeySpecs). */
function keySpecReply(spec: KeySpec): ReplyValue {
  const begin = spec.begin;
  const find = spec.find ?? { lastKey: 0 };
  const entries: Array<[ReplyValue, ReplyValue]> = [];
  if (spec.notes !== undefined) entries.push(['notes', spec.notes]);
  entries.push(['flags', new Set(spec.flags.map((flag) => simple(flag)))]);
  entries.push([
    'begin_search',
    typeof begin === 'number'
      ? new Map<ReplyValue, ReplyValue>([
          ['type', 'index'],
          ['spec', new Map([['index', begin]])],
        ])
      : begin === 'unknown'
        ? new Map<ReplyValue, ReplyValue>([
            ['type', 'unknown'],
            ['spec', new Map()],
          ])
        : new Map<ReplyValue, ReplyValue>([
            ['type', 'keyword'],
            [
              'spec',
              new Map<ReplyValue, ReplyValue>([
                ['keyword', begin.keyword],
                ['startfrom', begin.startFrom],
              ]),
            ],
          ]),
  ]);
  entries.push([
    'find_keys',
    find === 'unknown'
      ? new Map<ReplyValue, ReplyValue>([
          ['type', 'unknown'],
          ['spec', new Map()],
        ])
      : 'lastKey' in find
        ? new Map<ReplyValue, ReplyValue>([
            ['type', 'range'],
            [
              'spec',
              new Map<ReplyValue, ReplyValue>([
                ['lastkey', find.lastKey],
                ['keystep', find.step ?? 1],
                ['limit', find.limit ?? 0],
              ]),
            ],
          ])
        : new Map<ReplyValue, ReplyValue>([
            ['type', 'keynum'],
            [
              'spec',
              new Map<ReplyValue, ReplyValue>([
                ['keynumidx', find.keynumIndex],
                ['firstkey', find.firstKey],
                ['keystep', find.step ?? 1],
              ]),
            ],
          ]),
  ]);
  return new Map(entries);
}

/** COMMAND, COMMAND COUNT, LIST [FILTERBY …], INFO, DOCS, GETKEYS, GETKEYSANDFLAGS and HELP, as Redis 7.0. */
export function registerCommand<C>(server: Host<C>): void {
  /** A subcommand as its own command: `client|list`, as declared (registry.ts, subcommandOptions). */
  const subcommandSpec = (spec: CommandSpec<C>, sub: string): CommandOptions & { name: string } =>
    subcommandOptions(spec, sub) ?? { name: `${spec.name}|${sub}`, arity: -2 };
  /** `get`, or `client|list` (server.c, lookupCommandBySds). */
  const find = (name: string): (CommandOptions & { name: string }) | undefined => {
    const [base = '', sub, extra] = name.toLowerCase().split('|');
    const spec = server.lookup(base);
    if (spec === undefined || extra !== undefined) return undefined;
    if (sub === undefined) return spec;
    return spec.subcommands !== undefined && Object.hasOwn(spec.subcommands, sub) ? subcommandSpec(spec, sub) : undefined;
  };
  const subcommandsOf = (spec: CommandOptions & { name: string }): Array<CommandOptions & { name: string }> => {
    const container = server.lookup(spec.name);
    if (container === undefined || container !== spec || container.subcommands === undefined) return [];
    return Object.keys(container.subcommands).map((sub) => subcommandSpec(container, sub));
  };
  // server.c, addReplyCommandInfo: the 10 fields of Redis 7.0.
  const info = (spec: (CommandOptions & { name: string }) | undefined): ReplyValue => {
    if (spec === undefined) return null;
    const described = describeCommand(spec);
    const [first, last, step] = described.range;
    const subs = subcommandsOf(spec);
    return [
      spec.name,
      spec.arity,
      new Set(described.flags.map((flag) => simple(flag))),
      first,
      last,
      step,
      new Set(described.categories.map((category) => simple(`@${category}`))),
      new Set(spec.tips ?? []),
      new Set(described.keySpecs.map(keySpecReply)),
      subs.length === 0 ? new Set() : subs.map(info),
    ];
  };
  // server.c, addReplyCommandDocs (what this server knows: summary, since, group, subcommands).
  const docs = (spec: CommandOptions & { name: string }): ReplyValue => {
    const entries: Array<[ReplyValue, ReplyValue]> = [];
    if (spec.summary !== undefined) entries.push(['summary', spec.summary]);
    entries.push(['since', spec.since ?? '1.0.0']);
    entries.push(['group', spec.group ?? 'generic']);
    const subs = subcommandsOf(spec);
    if (subs.length > 0) entries.push(['subcommands', new Map(subs.map((sub): [ReplyValue, ReplyValue] => [sub.name, docs(sub)]))]);
    return new Map(entries);
  };
  const everyName = (): string[] => {
    const names: string[] = [];
    for (const spec of server.commands) {
      names.push(spec.name);
      for (const sub of Object.keys(spec.subcommands ?? {})) names.push(`${spec.name}|${sub}`);
    }
    return names;
  };
  // server.c, getKeysSubcommandImpl.
  const getKeys = (argv: Command, withFlags: boolean): ReplyValue => {
    const call = argv.slice(2);
    const name = (call[0] as Buffer).toString('latin1');
    let spec: (CommandOptions & { name: string }) | undefined = server.lookup(name);
    if (spec !== undefined && call.length >= 2 && spec.subcommands !== undefined) {
      const sub = (call[1] as Buffer).toString('latin1').toLowerCase();
      // server.c, lookupCommand: the subcommand with its own arity and keys (declared with flags only: the container's).
      const declared = Object.hasOwn(spec.subcommands, sub) ? spec.subcommands[sub] : undefined;
      spec = declared === undefined ? undefined : Array.isArray(declared) ? spec : subcommandOptions(spec, sub);
    }
    if (spec === undefined) throw new RespError('ERR Invalid command specified');
    const described = describeCommand(spec);
    const keySpecs = described.keySpecs.filter((keySpec) => !keySpec.flags.includes('not_key'));
    if (described.keysOf === undefined && keySpecs.length === 0) throw new RespError('ERR The command has no key arguments');
    if (spec.arity >= 0 ? call.length !== spec.arity : call.length < -spec.arity)
      throw new RespError('ERR Invalid number of arguments specified for command');
    // db.c, getKeysFromCommandWithSpecs: the key specs when their flags are reliable, else the
    // command's own key finder (keysOf), with the flags of its first key spec.
    let found: Array<{ key: Buffer; flags: readonly KeySpecFlag[] }> | undefined;
    const variable = keySpecs.some((keySpec) => keySpec.flags.includes('variable_flags'));
    if (keySpecs.length > 0 && (!variable || described.keysOf === undefined)) {
      found = keysFromSpecs(keySpecs, call)?.map(({ index, flags }) => ({ key: call[index] as Buffer, flags }));
    }
    if (found === undefined && described.keysOf !== undefined) {
      const flags = keySpecs[0]?.flags ?? [];
      found = described.keysOf(call).map((key) => ({ key, flags }));
    }
    if (found === undefined || found.length === 0) {
      if (spec.flags?.includes('no_mandatory_keys')) return [];
      throw new RespError('ERR Invalid arguments specified for command');
    }
    return found.map(({ key, flags }) => (withFlags ? [key, new Set(flags.map((flag) => simple(flag)))] : key));
  };
  // server.c, commandListCommand: FILTERBY MODULE (no module commands here), ACLCAT, PATTERN.
  const list = (argv: Command): ReplyValue => {
    if (argv.length === 2) return everyName();
    if (argv.length !== 5 || upper(argv[2]) !== 'FILTERBY') throw new RespError('ERR syntax error');
    const type = upper(argv[3]);
    const value = text(argv[4]);
    if (type === 'MODULE') return [];
    if (type === 'ACLCAT') {
      const category = value.toLowerCase();
      if (!(ACL_CATEGORIES as readonly string[]).includes(category)) return [];
      return everyName().filter((name) =>
        (describeCommand(find(name) as CommandOptions).categories as readonly string[]).includes(category),
      );
    }
    if (type === 'PATTERN') return everyName().filter((name) => globMatch(value.toLowerCase(), name));
    throw new RespError('ERR syntax error');
  };
  // Redis 7.0.15: every subcommand loading stale; DOCS, INFO and LIST nondeterministic_output_order.
  const commandSubcommands = Object.fromEntries(
    Object.entries(COMMAND_ARITY).map(([name, arity]): [string, SubcommandOptions] => [
      name,
      {
        arity,
        flags: ['loading', 'stale'],
        ...(['docs', 'info', 'list'].includes(name) ? { tips: ['nondeterministic_output_order'] } : {}),
      },
    ]),
  );
  server.command(
    'command',
    {
      arity: -1,
      flags: ['loading', 'stale'],
      aclCategories: ['connection'],
      tips: ['nondeterministic_output_order'],
      subcommands: commandSubcommands,
      summary: 'Get array of Redis command details',
      since: '2.8.13',
      group: 'server',
    },
    (client, argv) => {
      if (argv.length === 1) return [...server.commands].map(info);
      const sub = text(argv[1]).toLowerCase();
      const arity = COMMAND_ARITY[sub];
      if (arity === undefined) throw new RespError(`ERR unknown subcommand '${cstr(argv[1]).slice(0, 128)}'. Try COMMAND HELP.`);
      if (arity >= 0 ? argv.length !== arity : argv.length < -arity)
        throw new RespError(`ERR wrong number of arguments for 'command|${sub}' command`);
      const names = argv.slice(2).map((arg) => text(arg));
      switch (sub) {
        case 'count':
          return [...server.commands].length;
        case 'list':
          return list(argv);
        case 'info':
          return names.length === 0 ? [...server.commands].map(info) : names.map((name) => info(find(name)));
        case 'docs': {
          const specs = names.length === 0 ? [...server.commands] : names.map(find).filter((spec) => spec !== undefined);
          client.reply.map(specs.length);
          for (const spec of specs) client.reply.bulk(spec.name).value(docs(spec));
          return undefined;
        }
        case 'getkeys':
          return getKeys(argv, false);
        case 'getkeysandflags':
          return getKeys(argv, true);
        default:
          return COMMAND_HELP.map((line) => simple(line));
      }
    },
  );
}
