import type { RespClient } from './client.js';
import type { Command } from './parser.js';
import type { ReplyValue } from './reply.js';

// The command table: what a command is (arity, flags, keys, subcommands, docs) and the lookup
// dispatch does for every command received. Nothing here runs a command.

/** A command handler: `argv[0]` is the command name as sent, the arguments follow, binary-safe. */
export type CommandHandler<Context = Record<string, unknown>> = (
  client: RespClient<Context>,
  argv: Command,
  // biome-ignore lint/suspicious/noConfusingVoidType: a handler may return nothing (it wrote its reply itself)
) => ReplyValue | undefined | void | Promise<ReplyValue | undefined | void>;

/** Flags of a command, as Redis's command table has them (the ones that change dispatch). */
export type CommandFlag =
  /** Runs before authentication (AUTH, HELLO, QUIT, RESET). */
  | 'noauth'
  /** Allowed in RESP2 subscribed mode. */
  | 'pubsub'
  /** Runs at once inside MULTI instead of being queued (EXEC, DISCARD, MULTI, WATCH, QUIT, RESET). */
  | 'nomulti'
  | 'readonly'
  | 'write'
  | 'fast'
  | 'admin'
  /** May use more memory (SET, LPUSH…): refused while `outOfMemory()` says so, as Redis's CMD_DENYOOM. */
  | 'denyoom';

export interface CommandOptions {
  /** Redis arity, the name included: 2 = exactly `GET key`; -2 = at least one argument. */
  arity: number;
  flags?: readonly CommandFlag[];
  /** First key, last key (-1: the last argument), step: for COMMAND INFO and client-side routing. */
  keys?: readonly [number, number, number];
  /**
   * The keys of a call, when `keys` cannot say (a `numkeys` argument: ZUNION, SINTERCARD, LCS…).
   * Client-side caching remembers these for a `readonly` command.
   */
  keysOf?: (argv: Command) => readonly Buffer[];
  /**
   * For a container command (CLIENT, CONFIG, OBJECT…): its subcommands, lowercase, each with its
   * own flags. CLIENT LIST then shows `cmd=client|list`, and MONITOR skips the `admin` ones.
   */
  subcommands?: Readonly<Record<string, readonly CommandFlag[]>>;
  /** For COMMAND DOCS (redis-cli's hints). */
  summary?: string;
  group?: string;
  since?: string;
}

export interface CommandSpec<Context = Record<string, unknown>> extends CommandOptions {
  /** Lowercase name. */
  readonly name: string;
  readonly handler: CommandHandler<Context>;
}

/** A command as dispatch needs it: flags looked up once, at registration. */
export interface Entry<Context> {
  readonly spec: CommandSpec<Context>;
  readonly noauth: boolean;
  readonly pubsub: boolean;
  readonly nomulti: boolean;
  /** Reads or writes keys: refused to a client in MONITOR mode, as Redis refuses a replica. */
  readonly keyspace: boolean;
  /** Held by CLIENT PAUSE … WRITE: `write` commands and PUBLISH/SPUBLISH (Redis's may-replicate). */
  readonly pausedByWrite: boolean;
  readonly denyoom: boolean;
}

/** Registered commands by name. */
export class CommandRegistry<Context> {
  readonly #commands = new Map<string, CommandSpec<Context>>();
  /** Lookup by the name as clients send it: lowercase and UPPERCASE hit without a case conversion. */
  readonly #entries = new Map<string, Entry<Context>>();

  /** Register (or replace) a command. Names are case-insensitive. */
  add(name: string, options: CommandOptions, handler: CommandHandler<Context>): void {
    const lower = name.toLowerCase();
    const spec: CommandSpec<Context> = { ...options, name: lower, handler };
    const flags = options.flags ?? [];
    const entry: Entry<Context> = {
      spec,
      noauth: flags.includes('noauth'),
      pubsub: flags.includes('pubsub'),
      nomulti: flags.includes('nomulti'),
      keyspace: flags.includes('readonly') || flags.includes('write'),
      pausedByWrite: flags.includes('write') || lower === 'publish' || lower === 'spublish',
      denyoom: flags.includes('denyoom'),
    };
    this.#commands.set(lower, spec);
    this.#entries.set(lower, entry);
    this.#entries.set(lower.toUpperCase(), entry);
  }

  /** The registered command of that name, if any (any case). */
  lookup(name: string): CommandSpec<Context> | undefined {
    return this.#commands.get(name.toLowerCase());
  }

  /** The dispatch entry for a name as sent: lowercase and UPPERCASE found at once, mixed case lowered. */
  entry(sent: string): Entry<Context> | undefined {
    return this.#entries.get(sent) ?? this.#entries.get(sent.toLowerCase());
  }

  /** Every registered command. */
  values(): IterableIterator<CommandSpec<Context>> {
    return this.#commands.values();
  }
}

/** The keys of a call: `keysOf`, else the `keys` [first, last, step] triple (last -1: the last argument). */
export function commandKeys<C>(spec: CommandOptions | CommandSpec<C>, argv: Command): readonly Buffer[] {
  if (spec.keysOf !== undefined) return spec.keysOf(argv);
  const range = spec.keys;
  if (range === undefined) return [];
  const [first, lastSpec, step] = range;
  if (first <= 0) return [];
  const last = lastSpec < 0 ? argv.length + lastSpec : lastSpec;
  const keys: Buffer[] = [];
  for (let i = first; i <= last && i < argv.length; i += Math.max(step, 1)) keys.push(argv[i] as Buffer);
  return keys;
}

/** `client|list` for a container command's known subcommand, else the command's name. */
export function fullName<Context>(spec: CommandSpec<Context>, argv: Command): string {
  const sub = argv[1];
  if (sub === undefined || sub.length > 64) return spec.name;
  const lower = sub.toString('latin1').toLowerCase();
  return spec.subcommands !== undefined && Object.hasOwn(spec.subcommands, lower) ? `${spec.name}|${lower}` : spec.name;
}
