import { createServer } from 'node:net';
import { globMatch, RespError } from '@portbind/resp';

// CONFIG GET/SET parameters. Each file that has parameters adds them to `server.config` (a Map
// from the lowercase name to a Setting) with the constructors below, which give Redis's checks and
// error texts; CONFIG SET's "argument …" reason is the Error's message. `configGet` and
// `configSet` are CONFIG GET and CONFIG SET as Redis 7.0.15's config.c.

/** A CONFIG parameter: how to read it, and how to change it (absent: immutable). */
export interface Setting {
  get(): string;
  /** Check and store a new value (Redis's `set`): throw an Error whose message is Redis's reason. */
  set?(value: string): void;
  /**
   * Make the stored value take effect (Redis's `apply`): runs once every parameter of the CONFIG
   * SET was stored, for those whose value changed; a throw rolls the whole CONFIG SET back.
   */
  apply?(): void;
  /**
   * Before anything is stored: an asynchronous look at a new value that `apply` needs (can the
   * port be listened on). It must not throw: `apply` reports what it found.
   */
  prepare?(value: string): Promise<void>;
  /** Redis's HIDDEN_CONFIG: CONFIG GET gives it only when asked by name, never for a pattern. */
  readonly hidden?: boolean;
}

/** The parameters, by lowercase name. */
export type Config = Map<string, Setting>;

/** INFO's sections, in the order INFO lists them: each gives its fields. */
export type InfoSections = Map<string, () => Record<string, string | number>>;

/** A parameter that cannot change. */
export const fixed = (value: () => string | number): Setting => ({ get: () => String(value()) });
/** An integer setting with Redis's range check and error texts. */
export const integer = (min: number, max: number | bigint, get: () => number, set: (value: number) => void): Setting => ({
  get: () => String(get()),
  set(value) {
    if (!/^-?\d+$/.test(value)) throw new Error("argument couldn't be parsed into an integer");
    const number = Number(value);
    if (number < min || BigInt(value) > BigInt(max)) throw new Error(`argument must be between ${min} and ${max} inclusive`);
    set(number);
  },
});
/** A size in bytes as Redis's memtoull reads it: `64`, `1k`, `1kb`, `2mb`, `1gb` (any case). */
export const memory = (min: number, get: () => number, set: (value: number) => void): Setting => ({
  get: () => String(get()),
  set(value) {
    const match = /^(\d+)(b|k|kb|m|mb|g|gb)?$/i.exec(value);
    if (match === null) throw new Error('argument must be a memory value');
    const units: Record<string, number> = { b: 1, k: 1000, kb: 1024, m: 1e6, mb: 1024 ** 2, g: 1e9, gb: 1024 ** 3 };
    const number = Number(match[1]) * (units[(match[2] ?? 'b').toLowerCase()] ?? 1);
    if (number < min) throw new Error(`argument must be between ${min} and 9223372036854775807 inclusive`);
    set(number);
  },
});
/** A parameter Redis can change and mini-redis cannot: setting its present value is a no-op. */
export const current = (value: () => string | number, reason: string): Setting => ({
  get: () => String(value()),
  set(next) {
    if (next !== String(value())) throw new Error(reason);
  },
});
/** A parameter mini-redis can only have at one value: setting that value is a no-op. */
export const only = (value: string, reason: string): Setting => ({
  get: () => value,
  set(next) {
    if (next !== value) throw new Error(reason);
  },
});

/** A yes/no parameter, with Redis's error text. */
export const yesNo = (get: () => boolean, set: (value: boolean) => void): Setting => ({
  get: () => (get() ? 'yes' : 'no'),
  set(value) {
    const lower = value.toLowerCase();
    if (lower !== 'yes' && lower !== 'no') throw new Error("argument must be 'yes' or 'no'");
    set(lower === 'yes');
  },
});

/** A hidden parameter (Redis's HIDDEN_CONFIG: debugging knobs such as `key-load-delay`). */
export const hidden = (setting: Setting): Setting => ({ ...setting, hidden: true });

/**
 * Redis's MEMORY_CONFIG | PERCENT_CONFIG (`maxmemory-clients`): a size, or `N%` (of maxmemory),
 * kept as a negative number as Redis does; GET gives `N%` back.
 */
export const memoryOrPercent = (maxPercent: number, get: () => number, set: (value: number) => void): Setting => ({
  get: () => {
    const value = get();
    return value < 0 ? `${-value}%` : String(value);
  },
  set(value) {
    let number = memtoull(value);
    // string2ll: an optional minus, no leading zero.
    if (number === undefined && value.length > 1 && value.endsWith('%') && /^(0|-?[1-9]\d*)$/.test(value.slice(0, -1))) {
      const percent = Number(value.slice(0, -1));
      if (percent >= 0) number = -percent;
    }
    if (number === undefined) throw new Error('argument must be a memory or percent value');
    if (number < -maxPercent) throw new Error(`percentage argument must be less or equal to ${maxPercent}`);
    set(number);
  },
});

/** util.c memtoull: digits and an optional unit (b, k, kb, m, mb, g, gb; any case); undefined if not. */
function memtoull(value: string): number | undefined {
  const match = /^(\d+)(b|k|kb|m|mb|g|gb)?$/i.exec(value);
  if (match === null) return undefined;
  const units: Record<string, number> = { b: 1, k: 1000, kb: 1024, m: 1e6, mb: 1024 ** 2, g: 1e9, gb: 1024 ** 3 };
  return Number(match[1]) * (units[(match[2] ?? 'b').toLowerCase()] ?? 1);
}

/**
 * The TCP port of a listener that cannot move at run time (portbind's bindings listen once).
 * CONFIG SET port checks the new port as Redis does (0 to 65535), then, in the apply phase, fails:
 * with Redis's "Unable to listen on this port" when another socket holds that port (tried with a
 * listen on the same address), else saying that the listener stays where it is. Either way the
 * whole CONFIG SET rolls back; setting the present port is a no-op.
 */
export const listenPort = (bound: () => { port: number; address: string }): Setting => {
  let wanted: number | undefined;
  const free = new Map<number, boolean>();
  const parse = (value: string): number | undefined => (/^-?\d+$/.test(value) ? Number(value) : undefined);
  return {
    get: () => String(wanted ?? bound().port),
    set(value) {
      const port = parse(value);
      if (port === undefined) throw new Error("argument couldn't be parsed into an integer");
      if (port < 0 || port > 65535) throw new Error('argument must be between 0 and 65535 inclusive');
      wanted = port === bound().port ? undefined : port;
    },
    async prepare(value) {
      const port = parse(value);
      if (port === undefined || port < 1 || port > 65535 || port === bound().port) return;
      free.set(port, await canListen(bound().address, port));
    },
    apply() {
      const port = wanted;
      if (port === undefined) return;
      // What this CONFIG SET's prepare found (kept by port: at most 65,535 booleans).
      const known = free.get(port);
      if (known !== true) throw new Error('Unable to listen on this port. Check server logs.');
      throw new Error(`mini-redis cannot move its listener at run time: restart it with RESP_PORT=${port}`);
    },
  };
};

/** Whether a listener could bind `host:port` now (it is closed again at once). */
function canListen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

const isPattern = (name: string): boolean => /[*?[]/.test(name);

/**
 * CONFIG GET as config.c's configGetCommand: every argument a name (looked up in any case, answered
 * as written) or a glob pattern (any case; hidden parameters never match one); each parameter once.
 * A map reply: RESP3 `%`, RESP2 a flat name/value array.
 */
export function configGet(config: Config, patterns: readonly string[]): Map<string, string> {
  const matches = new Map<string, [name: string, setting: Setting]>(); // by lowercase name
  for (const pattern of patterns) {
    if (!isPattern(pattern)) {
      const lower = pattern.toLowerCase();
      const setting = matches.has(lower) ? undefined : config.get(lower);
      if (setting !== undefined) matches.set(lower, [pattern, setting]);
      continue;
    }
    const lowerPattern = pattern.toLowerCase();
    for (const [name, setting] of config) {
      if (setting.hidden === true || matches.has(name)) continue;
      if (globMatch(lowerPattern, name)) matches.set(name, [name, setting]);
    }
  }
  return new Map([...matches.values()].map(([name, setting]) => [name, setting.get()]));
}

/**
 * CONFIG SET as config.c's configSetCommand: all the parameters change, or none. Every name is
 * checked first (unknown, immutable, given twice: the first such error); then each value is stored
 * in order (a bad one restores those before it); then the apply functions of those that changed run,
 * each once (one that fails restores every value and applies them again). A parameter with
 * `prepare` makes this asynchronous: its look happens before anything changes, so what follows
 * runs in one go, as in Redis.
 */
export function configSet(config: Config, args: readonly string[]): void | Promise<void> {
  if (args.length % 2 !== 0) throw new RespError('ERR syntax error');
  const changes: Array<{ name: string; setting: Setting; value: string }> = [];
  for (let i = 0; i < args.length; i += 2) {
    const given = args[i] as string;
    const name = given.toLowerCase();
    const setting = config.get(name);
    if (setting === undefined) throw new RespError(`ERR Unknown option or number of arguments for CONFIG SET - '${given}'`);
    const failed = (reason: string) => new RespError(`ERR CONFIG SET failed (possibly related to argument '${given}') - ${reason}`);
    if (setting.set === undefined) throw failed("can't set immutable config");
    if (changes.some((change) => change.name === name)) throw failed('duplicate parameter');
    changes.push({ name, setting, value: args[i + 1] as string });
  }
  const looks = changes.filter(({ setting }) => setting.prepare !== undefined);
  if (looks.length === 0) return store(changes);
  return Promise.all(looks.map(({ setting, value }) => setting.prepare?.(value))).then(() => store(changes));
}

function store(changes: ReadonlyArray<{ name: string; setting: Setting; value: string }>): void {
  const before = changes.map(({ setting }) => setting.get());
  const restore = (count: number): void => {
    for (let i = 0; i < count; i++) {
      try {
        changes[i]?.setting.set?.(before[i] as string);
      } catch {
        // Redis logs "Failed restoring failed CONFIG SET command" and goes on.
      }
    }
  };
  const applies: Array<{ name: string; setting: Setting }> = [];
  for (const [i, { name, setting, value }] of changes.entries()) {
    try {
      setting.set?.(value);
    } catch (error) {
      restore(i + 1);
      throw new RespError(`ERR CONFIG SET failed (possibly related to argument '${name}') - ${(error as Error).message}`);
    }
    // An apply function runs once however many of its parameters changed (aliases share theirs).
    const apply = setting.apply;
    if (apply !== undefined && setting.get() !== before[i] && !applies.some((known) => known.setting.apply === apply)) {
      applies.push({ name, setting });
    }
  }
  for (const { name, setting } of applies) {
    try {
      setting.apply?.();
    } catch (error) {
      restore(changes.length);
      for (const again of applies) {
        try {
          again.setting.apply?.();
        } catch {
          // Redis logs "Failed applying restored failed CONFIG SET command" and goes on.
        }
      }
      throw new RespError(`ERR CONFIG SET failed (possibly related to argument '${name}') - ${(error as Error).message}`);
    }
  }
}

/**
 * The parameters of the RESP listener and of the adapter's input limits, for server.ts's table:
 * `port` (listenPort), `client-query-buffer-limit` (the adapter's queryBufferLimit, at run time),
 * `maxmemory-clients` (Redis's checks; mini-redis evicts no client by memory: 0 only) and the
 * hidden `key-load-delay` (0 only: loading is not slowed).
 */
export function listenerParameters(
  queryBuffer: { queryBufferLimit: number },
  bound: () => { port: number; address: string },
): Record<string, Setting> {
  return {
    port: listenPort(bound),
    'client-query-buffer-limit': memory(
      1024 * 1024,
      () => queryBuffer.queryBufferLimit,
      (value) => {
        queryBuffer.queryBufferLimit = value;
      },
    ),
    'maxmemory-clients': memoryOrPercent(
      100,
      () => 0,
      (value) => {
        if (value !== 0) throw new Error('mini-redis does not evict clients by their memory: only 0');
      },
    ),
    'key-load-delay': hidden(
      integer(
        -2147483648,
        2147483647,
        () => 0,
        (value) => {
          if (value !== 0) throw new Error('mini-redis does not slow its loading: only 0');
        },
      ),
    ),
  };
}
