import type { BuiltinHost } from '../host.js';
import type { CommandFlag } from '../registry.js';
import { OK, RespError, simple } from '../reply.js';
import { type InfoHost, infoText } from './info.js';
import { runningExec } from './transactions.js';
import { text, upper } from './util.js';

// INFO, MONITOR and COMMAND (COUNT, LIST, INFO, DOCS): what a client learns about the server.

type Host<C> = Pick<BuiltinHost<C>, 'command' | 'lookup' | 'commands' | 'monitors'> & InfoHost<C>;

/** INFO and MONITOR. */
export function registerInfo<C>(server: Host<C>): void {
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
      if (runningExec(client)) throw new RespError("ERR MONITOR isn't allowed for DENY BLOCKING client");
      if (client.monitoring) return undefined;
      server.monitors.start(client);
      return OK;
    },
  );
}

/** COMMAND, COMMAND COUNT, LIST, INFO and DOCS. */
export function registerCommand<C>(server: Host<C>): void {
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
