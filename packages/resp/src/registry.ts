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

/**
 * Flags of a command, as Redis's command table has them. `noauth`, `pubsub`, `nomulti`, `no_multi`,
 * `readonly`, `write`, `admin`, `skip_monitor` and `denyoom` change dispatch; all are shown by COMMAND INFO (and give the
 * command its implicit ACL categories: `write` → @write, `readonly` → @read, `admin` → @admin
 * @dangerous, `blocking` → @blocking, `fast` → @fast, else @slow).
 */
export type CommandFlag =
  /** Runs before authentication (AUTH, HELLO, QUIT, RESET). */
  | 'noauth'
  /** Allowed in RESP2 subscribed mode. */
  | 'pubsub'
  /** Runs at once inside MULTI instead of being queued (EXEC, DISCARD, MULTI, WATCH, QUIT, RESET). */
  | 'nomulti'
  /**
   * Refused inside MULTI with `ERR Command not allowed inside a transaction` (EXEC then answers
   * EXECABORT): Redis's CMD_NO_MULTI (SAVE, SHUTDOWN, SYNC, PSYNC), shown as `no_multi`.
   */
  | 'no_multi'
  | 'readonly'
  | 'write'
  | 'fast'
  | 'admin'
  /** May use more memory (SET, LPUSH…): refused while `outOfMemory()` says so, as Redis's CMD_DENYOOM. */
  | 'denyoom'
  /** May block the client (BLPOP, XREAD BLOCK…): @blocking. */
  | 'blocking'
  /**
   * A read that may still write and replicate (Redis's CMD_MAY_REPLICATE: PFCOUNT caches its count in the
   * key): held by CLIENT PAUSE … WRITE like a `write` command. Not shown by COMMAND INFO, as in Redis.
   */
  | 'may_replicate'
  /** The rest are reported by COMMAND INFO only, as Redis names them. */
  | 'noscript'
  | 'loading'
  | 'stale'
  /** Not shown to MONITOR (Redis's CMD_SKIP_MONITOR: EVAL, which prints itself before its script's commands); `admin` neither. */
  | 'skip_monitor'
  | 'skip_slowlog'
  | 'asking'
  | 'no_mandatory_keys'
  | 'no_async_loading'
  | 'allow_busy';

/**
 * How a command uses the keys a {@link KeySpec} finds (Redis 7's key-spec flags): one of `RO` (read
 * only), `RW` (read and write), `OW` (overwrite: the old value is not read), `RM` (remove), with
 * what is done to the data (`access`, `update`, `insert`, `delete`); `not_key` marks arguments
 * that are not keys but hash like them (shard channels: the cluster's slot check sees them,
 * COMMAND GETKEYS does not list them); `incomplete`: the spec may not find every key;
 * `variable_flags`: the flags depend on the arguments.
 */
export type KeySpecFlag =
  | 'RO'
  | 'RW'
  | 'OW'
  | 'RM'
  | 'access'
  | 'update'
  | 'insert'
  | 'delete'
  | 'not_key'
  | 'incomplete'
  | 'variable_flags';

/**
 * Where a command's keys are (Redis 7's key specs, as COMMAND INFO shows them). `begin` finds the
 * first key: an argument index (1 = the first argument), or the argument after a keyword,
 * searched from `startFrom` (negative: backwards from the end), or `'unknown'`. `find` then takes
 * the keys from there: a range (`lastKey` relative to the first key, -1 the last argument, every
 * `step`th, `limit`: 0 all, 2 half of the remaining arguments…) — default one key — or a count at
 * `keynumIndex` (relative to the first key) followed by the keys from `firstKey`, or `'unknown'`.
 *
 * ```ts
 * // ZUNIONSTORE destination numkeys key [key …]
 * const zunionstoreKeys: KeySpec[] = [
 *   { flags: ['OW', 'update'], begin: 1 },
 *   { flags: ['RO', 'access'], begin: 2, find: { keynumIndex: 0, firstKey: 1, step: 1 } },
 * ];
 * // XREAD … STREAMS key [key …] id [id …]
 * const xreadKeys: KeySpec[] = [
 *   { flags: ['RO', 'access'], begin: { keyword: 'STREAMS', startFrom: 1 }, find: { lastKey: -1, step: 1, limit: 2 } },
 * ];
 * ```
 */
export interface KeySpec {
  readonly flags: readonly KeySpecFlag[];
  readonly begin: number | { readonly keyword: string; readonly startFrom: number } | 'unknown';
  readonly find?:
    | { readonly lastKey: number; readonly step?: number; readonly limit?: number }
    | { readonly keynumIndex: number; readonly firstKey: number; readonly step?: number }
    | 'unknown';
  /** COMMAND INFO's `notes`. */
  readonly notes?: string;
}

export interface CommandOptions {
  /** Redis arity, the name included: 2 = exactly `GET key`; -2 = at least one argument. */
  arity: number;
  flags?: readonly CommandFlag[];
  /**
   * First key, last key (-1: the last argument), step: Redis's legacy key range. Enough for most
   * commands; WATCH-free key extraction, client-side caching, cluster mode and COMMAND GETKEYS use it.
   * Without `keySpecs`, it gives the command one key spec (`RO access` for a `readonly` command,
   * `RW access update` else; `not_key` for a `pubsub` group command's shard channels).
   */
  keys?: readonly [number, number, number];
  /**
   * Redis 7's key specs (COMMAND INFO, COMMAND GETKEYSANDFLAGS), when `keys` cannot say it all
   * (several specs with their own flags, a `numkeys` argument, a keyword): the keys of a call are
   * then found from these, and `keys` (if not given) is derived as Redis derives its legacy range.
   */
  keySpecs?: readonly KeySpec[];
  /**
   * The keys of a call, when neither `keys` nor `keySpecs` can find them (SORT's STORE, a command
   * whose keys depend on its options). Takes precedence over both for finding keys; client-side
   * caching remembers these for a `readonly` command. The command is shown with `movablekeys`.
   */
  keysOf?: (argv: Command) => readonly Buffer[];
  /**
   * Whether CLIENT PAUSE … WRITE holds this call, for a command whose effect its arguments decide (Redis's
   * getCommandFlags: EVAL and FCALL take the flags of their script or function — one declared `no-writes`
   * runs during the pause). Not given: the flags decide (`write`, `may_replicate`).
   */
  pausedByWrite?: (argv: Command) => boolean;
  /**
   * ACL categories besides those Redis derives from the flags (@write, @read, @fast/@slow, @admin
   * @dangerous, @blocking). Not given, the `group` gives one (`string` → @string, `sorted-set` →
   * @sortedset, `generic` → @keyspace, `connection`, `transactions`, `scripting`…); given, these
   * replace it: `['keyspace', 'dangerous']` for KEYS, `['set', 'sortedset', 'list', 'dangerous']` for SORT.
   */
  aclCategories?: readonly AclCategory[];
  /** COMMAND INFO's tips (`nondeterministic_output`, `request_policy:all_shards`…). */
  tips?: readonly string[];
  /**
   * The arguments MONITOR shows as `"(redacted)"` (passwords: Redis's redactClientCommandArgument),
   * by index in `argv`. AUTH's and HELLO's are built in.
   */
  redact?: (argv: Command) => Iterable<number>;
  /**
   * For a container command (CLIENT, CONFIG, OBJECT…): its subcommands, lowercase, each with its
   * own flags (`['readonly']`, shown with arity -2 and no keys), or its own {@link SubcommandOptions}
   * (arity, flags, keys or key specs, tips, ACL categories) as Redis declares each subcommand.
   * CLIENT LIST then shows `cmd=client|list`, MONITOR skips the `admin`/`skip_monitor` ones, and
   * COMMAND INFO lists each under the container. The keys a subcommand declares are the
   * container's keys for that call (WATCH, tracking, cluster slots, COMMAND GETKEYS), while the
   * container itself shows none, as Redis's OBJECT, XGROUP, XINFO.
   */
  subcommands?: Readonly<Record<string, readonly CommandFlag[] | SubcommandOptions>>;
  /** For COMMAND DOCS (redis-cli's hints). */
  summary?: string;
  group?: string;
  since?: string;
}

/**
 * A subcommand as Redis declares it (`OBJECT ENCODING`: arity 3, `readonly`, its key at index 2):
 * a command's options but subcommands. Its `group` and `aclCategories`, not given, are the
 * container's.
 *
 * ```ts
 * const objectSubcommands: Record<string, SubcommandOptions | readonly CommandFlag[]> = {
 *   encoding: { arity: 3, flags: ['readonly'], keySpecs: [{ flags: ['RO'], begin: 2 }], tips: ['nondeterministic_output'] },
 *   help: { arity: 2, flags: ['loading', 'stale'] },
 *   freq: ['readonly'], // flags only: arity -2, no keys
 * };
 * ```
 */
export type SubcommandOptions = Omit<CommandOptions, 'subcommands'>;

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
  /** Refused inside MULTI (`no_multi`). */
  readonly noMulti: boolean;
  /** Reads or writes keys: refused to a client in MONITOR mode, as Redis refuses a replica. */
  readonly keyspace: boolean;
  /** Held by CLIENT PAUSE … WRITE: `write` and `may_replicate` commands, PUBLISH/SPUBLISH (Redis's may-replicate). */
  readonly pausedByWrite: boolean;
  /** The command's own answer to {@link pausedByWrite}, by its arguments (CommandOptions.pausedByWrite). */
  readonly pausedByWriteOf: ((argv: Command) => boolean) | undefined;
  readonly denyoom: boolean;
  /**
   * A container's declared subcommands, by lowercase name: entries with the subcommand's own arity
   * and flags (Redis's processCommand checks c->cmd, the subcommand: XGROUP CREATE is write and
   * denyoom, XINFO STREAM readonly). The spec and handler stay the container's.
   */
  readonly subs: ReadonlyMap<string, SubEntry<Context>> | undefined;
}

/** A subcommand's dispatch entry: its full name (`object|encoding`) and arity beside the flags. */
export interface SubEntry<Context> extends Entry<Context> {
  readonly fullName: string;
  readonly arity: number;
}

/** Redis 7.0's ACL categories, in the order COMMAND INFO lists them (acl.c, ACLCommandCategories). */
export const ACL_CATEGORIES = [
  'keyspace',
  'read',
  'write',
  'set',
  'sortedset',
  'list',
  'hash',
  'string',
  'bitmap',
  'hyperloglog',
  'geo',
  'stream',
  'pubsub',
  'admin',
  'fast',
  'slow',
  'blocking',
  'dangerous',
  'connection',
  'transaction',
  'scripting',
] as const;

export type AclCategory = (typeof ACL_CATEGORIES)[number];

/** Registered commands by name. */
export class CommandRegistry<Context> {
  readonly #commands = new Map<string, CommandSpec<Context>>();
  /** Lookup by the name as clients send it: lowercase and UPPERCASE hit without a case conversion. */
  readonly #entries = new Map<string, Entry<Context>>();

  /** Register (or replace) a command. Names are case-insensitive. */
  add(name: string, options: CommandOptions, handler: CommandHandler<Context>): void {
    const lower = name.toLowerCase();
    const spec: CommandSpec<Context> = { ...options, name: lower, handler };
    // A spec registered again (a wrapper: `resp.command(name, resp.lookup(name), …)`) brings the key
    // finder derived from its key specs or subcommands: derived again, not taken as the application's.
    if (spec.keysOf !== undefined && derivedKeyFinders.has(spec.keysOf)) delete spec.keysOf;
    deriveKeys(spec);
    if (spec.subcommands !== undefined && spec.keys === undefined && spec.keysOf === undefined && spec.keySpecs === undefined) {
      // Keys declared on subcommands (OBJECT ENCODING key, XGROUP CREATE key …) are the
      // container's keys for that call; COMMAND INFO still shows the container without keys.
      const subs = Object.keys(spec.subcommands).filter((sub) => {
        const options = subcommandOptions(spec, sub);
        return options !== undefined && (options.keys !== undefined || options.keySpecs !== undefined || options.keysOf !== undefined);
      });
      if (subs.length > 0) {
        const keyed = new Set(subs);
        spec.keysOf = derived((argv) => {
          const sub = argv[1];
          if (sub === undefined || sub.length > 64) return [];
          const lowerSub = sub.toString('latin1').toLowerCase();
          const options = keyed.has(lowerSub) ? subcommandOptions(spec, lowerSub) : undefined;
          return options === undefined ? [] : commandKeys(options, argv);
        });
      }
    }
    const flagsOf = (flags: readonly CommandFlag[]) => ({
      noauth: flags.includes('noauth'),
      pubsub: flags.includes('pubsub'),
      nomulti: flags.includes('nomulti'),
      noMulti: flags.includes('no_multi'),
      keyspace: flags.includes('readonly') || flags.includes('write'),
      pausedByWrite: flags.includes('write') || flags.includes('may_replicate') || lower === 'publish' || lower === 'spublish',
      denyoom: flags.includes('denyoom'),
    });
    const own = flagsOf(options.flags ?? []);
    let subs: Map<string, SubEntry<Context>> | undefined;
    if (spec.subcommands !== undefined) {
      subs = new Map();
      for (const sub of Object.keys(spec.subcommands)) {
        const declared = subcommandOptions(spec, sub);
        if (declared === undefined) continue;
        // Connection-level flags (noauth, pubsub, nomulti) stay the container's: they decide before the subcommand is known.
        const subFlags = flagsOf(declared.flags ?? []);
        subs.set(sub, {
          ...subFlags,
          noauth: own.noauth,
          pubsub: own.pubsub,
          nomulti: own.nomulti,
          spec,
          pausedByWriteOf: undefined,
          subs: undefined,
          fullName: declared.name,
          arity: declared.arity ?? -2,
        });
      }
      if (subs.size === 0) subs = undefined;
    }
    const entry: Entry<Context> = { spec, ...own, pausedByWriteOf: options.pausedByWrite, subs };
    this.#commands.set(lower, spec);
    this.#entries.set(lower, entry);
    this.#entries.set(lower.toUpperCase(), entry);
  }

  /** The registered command of that name, if any (any case). */
  lookup(name: string): CommandSpec<Context> | undefined {
    return this.#commands.get(name.toLowerCase());
  }

  /**
   * The entry that decides for a whole command as sent (its subcommand's, for a declared one), as
   * dispatch uses it for a queued command (EXEC's OOM and CLIENT PAUSE checks).
   */
  entryFor(argv: readonly Buffer[]): Entry<Context> | undefined {
    const entry = this.entry((argv[0] as Buffer).toString('latin1'));
    return entry === undefined ? undefined : (subEntry(entry, argv) ?? entry);
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

/**
 * Memoize a spec's description, then derive from declared key specs what finds its keys fast:
 * `keys` (Redis's legacy range), and `keysOf` for keys the range cannot find (a keyword, a
 * numkeys, several specs). The description is taken before, so a derived `keysOf` is not shown
 * as movablekeys.
 */
function deriveKeys(spec: CommandOptions): void {
  const description = describe(spec, spec.keysOf);
  descriptions.set(spec, description);
  if (spec.keySpecs === undefined) return;
  if ((spec.keys === undefined || spec.keys[0] <= 0) && description.range[0] > 0) spec.keys = description.range;
  if (spec.keysOf === undefined && description.movable) {
    const specs = description.keySpecs;
    spec.keysOf = derived((argv) =>
      (keysFromSpecs(specs, argv, { notKeys: true, partial: true }) ?? []).map(({ index }) => argv[index] as Buffer),
    );
  }
}

/** Key finders the registry derived (from key specs or subcommands), as opposed to an application's `keysOf`. */
const derivedKeyFinders = new WeakSet<object>();
const derived = (keysOf: (argv: Command) => readonly Buffer[]): ((argv: Command) => readonly Buffer[]) => {
  derivedKeyFinders.add(keysOf);
  return keysOf;
};

const subcommandSpecs = new WeakMap<object, Map<string, CommandOptions & { name: string }>>();

/**
 * A container's subcommand as a command of its own (`client|list`): its declared
 * {@link SubcommandOptions}, or arity -2 and the flags for a flags-only declaration; the
 * container's `group` and `aclCategories` when it gives none. Undefined for an unknown subcommand
 * (`sub` lowercase). The same object for every call (COMMAND INFO, MONITOR, key lookups).
 */
export function subcommandOptions(
  container: CommandOptions & { readonly name: string },
  sub: string,
): (CommandOptions & { name: string }) | undefined {
  const declared = container.subcommands;
  if (declared === undefined || !Object.hasOwn(declared, sub)) return undefined;
  let byName = subcommandSpecs.get(container);
  if (byName === undefined) {
    byName = new Map();
    subcommandSpecs.set(container, byName);
  }
  let options = byName.get(sub);
  if (options === undefined) {
    const own = declared[sub] as readonly CommandFlag[] | SubcommandOptions;
    const inherited = {
      ...(container.group === undefined ? {} : { group: container.group }),
      ...(container.aclCategories === undefined ? {} : { aclCategories: container.aclCategories }),
    };
    options = isFlagList(own)
      ? { arity: -2, flags: own, ...inherited, name: `${container.name}|${sub}` }
      : { ...inherited, ...own, name: `${container.name}|${sub}` };
    deriveKeys(options);
    byName.set(sub, options);
  }
  return options;
}

/** The flags of a container's subcommand (`sub` lowercase); the container's own for an unknown one. */
export function subcommandFlags(container: CommandOptions, sub: string): readonly CommandFlag[] | undefined {
  const declared = container.subcommands;
  if (declared === undefined || !Object.hasOwn(declared, sub)) return container.flags;
  const own = declared[sub] as readonly CommandFlag[] | SubcommandOptions;
  return isFlagList(own) ? own : own.flags;
}

const isFlagList = (own: readonly CommandFlag[] | SubcommandOptions): own is readonly CommandFlag[] => Array.isArray(own);

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

// ---- key specs, ACL categories: what COMMAND INFO and COMMAND GETKEYS say of a command ----------

/** A command as COMMAND INFO and COMMAND GETKEYS see it (computed once per registration). */
export interface CommandDescription {
  /** Declared, or derived from `keys` / `keysOf`. */
  readonly keySpecs: readonly KeySpec[];
  /** True when the key specs were declared (`keySpecs`). */
  readonly declared: boolean;
  /** COMMAND INFO's first key, last key, step (Redis's legacy range, from the specs when not declared). */
  readonly range: readonly [number, number, number];
  /** Keys that `keys` alone cannot find (Redis's movablekeys). */
  readonly movable: boolean;
  /** COMMAND INFO's flags, Redis's names in Redis's order. */
  readonly flags: readonly string[];
  readonly categories: readonly AclCategory[];
  /** The application's own `keysOf`, if any. */
  readonly keysOf: ((argv: Command) => readonly Buffer[]) | undefined;
}

/** A key found in a call: its index in argv and the flags of the spec that found it. */
export interface FoundKey {
  readonly index: number;
  readonly flags: readonly KeySpecFlag[];
}

/** COMMAND INFO's flag names, in Redis's order (server.c, addReplyFlagsForCommand). */
const FLAG_NAMES: ReadonlyArray<readonly [CommandFlag | 'movablekeys', string]> = [
  ['write', 'write'],
  ['readonly', 'readonly'],
  ['denyoom', 'denyoom'],
  ['admin', 'admin'],
  // Redis's pubsub flag marks pub/sub commands (shown for the `pubsub` group); the adapter's
  // `pubsub` flag (allowed in RESP2 subscribed mode: PING, QUIT…) is not shown.
  ['pubsub', 'pubsub'],
  ['noscript', 'noscript'],
  ['blocking', 'blocking'],
  ['loading', 'loading'],
  ['stale', 'stale'],
  ['skip_monitor', 'skip_monitor'],
  ['skip_slowlog', 'skip_slowlog'],
  ['asking', 'asking'],
  ['fast', 'fast'],
  ['noauth', 'no_auth'],
  ['no_mandatory_keys', 'no_mandatory_keys'],
  ['no_async_loading', 'no_async_loading'],
  ['no_multi', 'no_multi'],
  ['movablekeys', 'movablekeys'],
  ['allow_busy', 'allow_busy'],
];

/** The ACL category each command group carries in Redis's command table. */
const GROUP_CATEGORY: Readonly<Record<string, AclCategory>> = {
  generic: 'keyspace',
  string: 'string',
  list: 'list',
  set: 'set',
  'sorted-set': 'sortedset',
  hash: 'hash',
  transactions: 'transaction',
  connection: 'connection',
  scripting: 'scripting',
  hyperloglog: 'hyperloglog',
  geo: 'geo',
  stream: 'stream',
  bitmap: 'bitmap',
};

const descriptions = new WeakMap<object, CommandDescription>();

/** What COMMAND INFO and COMMAND GETKEYS say of a command (memoized per spec object). */
export function describeCommand(spec: CommandOptions): CommandDescription {
  let description = descriptions.get(spec);
  if (description === undefined) {
    description = describe(spec, spec.keysOf);
    descriptions.set(spec, description);
  }
  return description;
}

function describe(options: CommandOptions, keysOf: CommandOptions['keysOf']): CommandDescription {
  const flags = options.flags ?? [];
  const channels = options.group === 'pubsub';
  const derivedFlags: readonly KeySpecFlag[] = channels
    ? ['not_key']
    : flags.includes('readonly')
      ? ['RO', 'access']
      : ['RW', 'access', 'update'];
  const declared = options.keySpecs !== undefined;
  let keySpecs: KeySpec[];
  if (options.keySpecs !== undefined) keySpecs = [...options.keySpecs];
  else {
    keySpecs = [];
    const keys = options.keys;
    if (keys !== undefined && keys[0] > 0) {
      const [first, last, step] = keys;
      keySpecs.push({ flags: derivedFlags, begin: first, find: { lastKey: last < 0 ? last : last - first, step, limit: 0 } });
    }
    if (keysOf !== undefined) keySpecs.push({ flags: derivedFlags, begin: 'unknown', find: 'unknown' });
  }
  const legacy = legacyRange(keySpecs);
  const movable = legacy.movable || keysOf !== undefined;
  // Declared key specs give the range, as Redis derives it (`keys` is then only a hint for lookups).
  const range = declared ? legacy.range : (options.keys ?? legacy.range);
  // Redis's pubsub flag and @pubsub for the `pubsub` group's commands, unless declared ACL
  // categories leave @pubsub out (PUBSUB HELP: @slow only).
  const pubsub =
    options.group === 'pubsub' &&
    options.subcommands === undefined &&
    (options.aclCategories === undefined || options.aclCategories.includes('pubsub'));
  const names = FLAG_NAMES.filter(([flag]) => (flag === 'movablekeys' ? movable : flag === 'pubsub' ? pubsub : flags.includes(flag))).map(
    ([, name]) => name,
  );
  // server.c, setImplicitACLCategories, over the categories the group gives (not to a container
  // command: CLIENT is @slow, its subcommands @connection).
  const categories = new Set<AclCategory>(options.aclCategories ?? []);
  const group =
    options.group === undefined || options.subcommands !== undefined || options.aclCategories !== undefined
      ? undefined
      : GROUP_CATEGORY[options.group];
  if (group !== undefined) categories.add(group);
  if (flags.includes('write')) categories.add('write');
  if (flags.includes('readonly') && !categories.has('scripting')) categories.add('read');
  if (flags.includes('admin')) categories.add('admin').add('dangerous');
  if (pubsub) categories.add('pubsub');
  if (flags.includes('fast')) categories.add('fast');
  if (flags.includes('blocking')) categories.add('blocking');
  if (!categories.has('fast')) categories.add('slow');
  return {
    keySpecs,
    declared,
    range,
    movable,
    flags: names,
    categories: ACL_CATEGORIES.filter((category) => categories.has(category)),
    keysOf,
  };
}

const beginIndex = (spec: KeySpec): number | undefined => (typeof spec.begin === 'number' ? spec.begin : undefined);
const rangeOf = (spec: KeySpec): { lastKey: number; step: number; limit: number } | undefined => {
  const find = spec.find ?? { lastKey: 0 };
  if (find === 'unknown' || !('lastKey' in find)) return undefined;
  return { lastKey: find.lastKey, step: find.step ?? 1, limit: find.limit ?? 0 };
};

/** Redis's legacy (first, last, step) from key specs (server.c, populateCommandLegacyRangeSpec). */
function legacyRange(specs: readonly KeySpec[]): { range: readonly [number, number, number]; movable: boolean } {
  if (specs.length === 0) return { range: [0, 0, 0], movable: false };
  const only = specs[0] as KeySpec;
  const onlyRange = rangeOf(only);
  const onlyBegin = beginIndex(only);
  if (specs.length === 1 && onlyBegin !== undefined && onlyRange !== undefined) {
    const last = onlyRange.lastKey >= 0 ? onlyRange.lastKey + onlyBegin : onlyRange.lastKey;
    return { range: [onlyBegin, last, onlyRange.step], movable: only.flags.includes('incomplete') };
  }
  let movable = false;
  let first = Number.MAX_SAFE_INTEGER;
  let last = 0;
  let previous = 0;
  for (const spec of specs) {
    const begin = beginIndex(spec);
    const range = rangeOf(spec);
    if (begin === undefined || range === undefined) {
      movable = true;
      continue;
    }
    if (range.step !== 1 || (previous !== 0 && previous !== begin - 1)) {
      movable = true;
      continue;
    }
    if (spec.flags.includes('incomplete')) movable = true;
    first = Math.min(first, begin);
    const absolute = range.lastKey >= 0 ? range.lastKey + begin : range.lastKey;
    // Unsigned comparison, as Redis: a negative last key (-1: the last argument) wins.
    last = last >>> 0 >= absolute >>> 0 ? last : absolute;
    previous = last;
  }
  if (first === Number.MAX_SAFE_INTEGER) return { range: [0, 0, 0], movable: true };
  return { range: [first, last, 1], movable };
}

/**
 * The keys key specs find in a call (db.c, getKeysUsingKeySpecs): undefined when a spec cannot
 * say (unknown, incomplete, a bad `numkeys`, out of range) unless `partial` (then it is skipped).
 */
export function keysFromSpecs(
  specs: readonly KeySpec[],
  argv: Command,
  options: { notKeys?: boolean; partial?: boolean } = {},
): FoundKey[] | undefined {
  const found: FoundKey[] = [];
  const argc = argv.length;
  for (const spec of specs) {
    if (spec.flags.includes('not_key') && options.notKeys !== true) continue;
    let first = 0;
    const begin = spec.begin;
    if (typeof begin === 'number') first = begin;
    else if (begin !== 'unknown') {
      const from = begin.startFrom > 0 ? begin.startFrom : argc + begin.startFrom;
      const end = begin.startFrom > 0 ? argc - 1 : 1;
      const keyword = begin.keyword.toLowerCase();
      for (let i = from; i !== end; i = from <= end ? i + 1 : i - 1) {
        if (i >= argc || i < 1) break;
        if ((argv[i] as Buffer).toString('latin1').toLowerCase() === keyword) {
          first = i + 1;
          break;
        }
      }
      if (first === 0) continue;
    }
    const find = spec.find ?? { lastKey: 0 };
    let last: number;
    let step: number;
    let valid = first > 0 && find !== 'unknown';
    if (!valid || find === 'unknown') last = step = 0;
    else if ('lastKey' in find) {
      step = find.step ?? 1;
      const limit = find.limit ?? 0;
      if (find.lastKey >= 0) last = first + find.lastKey;
      else if (limit === 0) last = argc + find.lastKey;
      else last = first + (Math.floor((argc - first) / limit) + find.lastKey);
    } else {
      step = find.step ?? 1;
      const at = first + find.keynumIndex;
      const count = at < argc ? parseCount(argv[at] as Buffer) : undefined;
      if (count === undefined) {
        valid = false;
        last = 0;
      } else {
        first += find.firstKey;
        last = first + count - 1;
      }
    }
    if (valid && count(first, last, argc)) {
      for (let i = first; i <= last && i < argc; i += Math.max(step, 1)) found.push({ index: i, flags: spec.flags });
      if (!spec.flags.includes('incomplete')) continue;
    }
    if (options.partial === true) continue;
    return undefined;
  }
  return found;
}

/** First and last within the call (db.c: `last >= argc || last < first || first >= argc` is an error). */
function count(first: number, last: number, argc: number): boolean {
  return !(last >= argc || last < first || first >= argc);
}

/** A `numkeys` argument: a non-negative integer (string2ll), else undefined. */
function parseCount(arg: Buffer): number | undefined {
  const text = arg.toString('latin1');
  if (!/^(0|[1-9][0-9]{0,15})$/.test(text)) return undefined;
  return Number(text);
}

/** A container's declared subcommand named by `argv[1]` (any case; not looked up past 64 bytes), if any. */
export function subEntry<Context>(entry: Entry<Context>, argv: readonly Buffer[]): SubEntry<Context> | undefined {
  const subs = entry.subs;
  if (subs === undefined || argv.length < 2) return undefined;
  const sub = argv[1] as Buffer;
  if (sub.length > 64) return undefined;
  const name = sub.toString('latin1');
  return subs.get(name) ?? subs.get(name.toLowerCase());
}
