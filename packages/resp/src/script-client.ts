// Running commands from inside another command, as Redis's scripting engine does with its fake
// client (eval.c, script.c): same database as the caller, the reply captured and decoded instead
// of sent, no connection counted. The command runs its registered handler synchronously, through
// the same touch paths as a client's command (WATCH, keyspace notifications, client-side caching
// invalidations), and is counted in INFO commandstats and shown to MONITOR as `[db lua]`.
import { Socket } from 'node:net';
import { Connection } from '@portbind/core';
import type { CommandSpec, RespAdapter } from './adapter.js';
import { RespClient } from './client.js';
import { hiddenFromMonitor, quoteArg } from './monitor.js';
import { type Command, RequestParser } from './parser.js';
import { commandKeys, subcommandFlags } from './registry.js';
import { RespError } from './reply.js';

/** A reply decoded from RESP, with its type kept (a script converts each type its own way). */
export type ScriptReply =
  | { readonly type: 'integer'; readonly value: bigint }
  | { readonly type: 'bulk'; readonly value: Buffer }
  | { readonly type: 'status'; readonly value: string }
  | { readonly type: 'error'; readonly value: string }
  /** `$-1` (RESP2 null bulk) and `*-1` (null array). */
  | { readonly type: 'nil' }
  /** RESP3 `_`. */
  | { readonly type: 'null' }
  | { readonly type: 'boolean'; readonly value: boolean }
  | { readonly type: 'double'; readonly value: number }
  | { readonly type: 'bignumber'; readonly value: string }
  | { readonly type: 'verbatim'; readonly format: string; readonly value: Buffer }
  | { readonly type: 'array'; readonly value: readonly ScriptReply[] }
  | { readonly type: 'set'; readonly value: readonly ScriptReply[] }
  | { readonly type: 'map'; readonly value: ReadonlyArray<readonly [ScriptReply, ScriptReply]> };

/**
 * Redis 7.0's commands flagged CMD_NOSCRIPT (commands.c): a script may not call them. The blocking
 * pops among them (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BZPOPMIN/MAX); CLIENT, CONFIG, ACL, FUNCTION,
 * SCRIPT, LATENCY and MODULE have every subcommand flagged.
 */
export const NOSCRIPT_COMMANDS: ReadonlySet<string> = new Set(
  (
    'auth hello quit reset wait blmove blpop brpop brpoplpush bzpopmax bzpopmin psubscribe punsubscribe ssubscribe ' +
    'subscribe sunsubscribe unsubscribe eval evalsha evalsha_ro eval_ro fcall fcall_ro bgrewriteaof bgsave debug ' +
    'failover monitor psync replconf replicaof role save shutdown slaveof sync discard exec multi unwatch watch ' +
    'client config acl function script latency module cluster|reset cluster|failover cluster|setslot'
  ).split(' '),
);

export interface ScriptClientOptions {
  /** Commands a script may not call (`This Redis command is not allowed from script`). Default {@link NOSCRIPT_COMMANDS}. */
  denied?: (name: string) => boolean;
}

export interface ScriptCallOptions {
  /** The client whose script runs: its database is used, its tracking remembers the keys read. */
  readonly caller: RespClient<never> | RespClient<Record<string, unknown>>;
  /** EVAL_RO or a `no-writes` script: `write` commands are refused. */
  readonly readOnly?: boolean;
  /** RESP version the script asked for (redis.setresp). Default 2. */
  readonly protocol?: 2 | 3;
  /**
   * A script flagged `allow-oom`: `denyoom` commands run even past `outOfMemory()`. Without it, the
   * first `denyoom` command of a script that wrote nothing yet is refused with -OOM (script.c, scriptVerifyOOM).
   */
  readonly allowOom?: boolean;
}

/**
 * Redis's fake script client for a {@link RespAdapter}: `call(argv, options)` runs a registered
 * command synchronously and returns its reply decoded. Errors a script sees before the command
 * runs (unknown command, arity, not allowed from scripts, write in a read-only script) come back
 * as `{ type: 'error' }` with Redis's texts. A handler that returns a Promise (a command that
 * must wait) cannot run inside a script: its reply is an error and the promise is left to settle.
 */
export class ScriptClient<Context = Record<string, unknown>> {
  readonly #resp: RespAdapter<Context>;
  /** The fake client: not in CLIENT LIST, never connected. */
  readonly client: RespClient<Context>;
  readonly #denied: (name: string) => boolean;
  readonly #monitors = new Set<RespClient<Context>>();
  #running = false;
  /** The running script wrote already (Redis's SCRIPT_WRITE_DIRTY): no more -OOM, it cannot stop halfway. */
  #wrote = false;

  constructor(resp: RespAdapter<Context>, options: ScriptClientOptions = {}) {
    this.#resp = resp;
    this.#denied = options.denied ?? ((name) => NOSCRIPT_COMMANDS.has(name));
    const conn = new Connection('lua', new Socket());
    this.client = new RespClient<Context>(conn, resp, new RequestParser(), {} as Context);
    this.client.reply.doubleFormat = resp.doubleFormat;
    this.client.user = 'default';
    // MONITOR: the adapter keeps its monitors to itself; follow them to show script commands as Redis does.
    const start = resp.startMonitor.bind(resp);
    const stop = resp.stopMonitor.bind(resp);
    resp.startMonitor = (client) => {
      this.#monitors.add(client);
      start(client);
    };
    resp.stopMonitor = (client) => {
      this.#monitors.delete(client);
      stop(client);
    };
  }

  /** Clients in MONITOR mode now (as seen through startMonitor/stopMonitor). */
  get monitoring(): boolean {
    return this.#monitors.size > 0;
  }

  /** One MONITOR line for every monitor: `[db lua]` for a script's command, the client's address else. */
  feedMonitors(db: number, addr: string, argv: Command): void {
    if (this.#monitors.size === 0) return;
    const micros = Math.floor((performance.timeOrigin + performance.now()) * 1000);
    let line = `${Math.floor(micros / 1e6)}.${String(micros % 1e6).padStart(6, '0')} [${db} ${addr}]`;
    for (const arg of argv) line += ` ${quoteArg(arg)}`;
    for (const monitor of this.#monitors) {
      if (monitor.closing) continue;
      monitor.pushWriter().simple(line);
      monitor.flushLater();
    }
  }

  /** Start a script run for `caller`: the fake client takes its database and RESP 2. */
  begin(caller: { readonly db: number }): void {
    this.client.db = caller.db;
    this.client.reply.protocol = 2;
    this.#running = true;
    this.#wrote = false;
  }

  /** The script ended. */
  end(): void {
    this.#running = false;
    this.client.reply.take();
  }

  get running(): boolean {
    return this.#running;
  }

  /** The running script wrote already (SCRIPT KILL answers -UNKILLABLE then). */
  get wrote(): boolean {
    return this.#wrote;
  }

  /** Run one command for a script, as Redis's scriptCall: checks, then the handler, then the reply decoded. */
  call(argv: Command, options: ScriptCallOptions): ScriptReply {
    const resp = this.#resp;
    const client = this.client;
    const name = (argv[0] as Buffer).toString('latin1').toLowerCase();
    const spec = argv[0] !== undefined && (argv[0] as Buffer).length <= 64 ? resp.lookup(name) : undefined;
    if (spec === undefined) return error('ERR Unknown Redis command called from script');
    if (spec.arity >= 0 ? argv.length !== spec.arity : argv.length < -spec.arity) {
      this.#rejected(spec, argv);
      return error('ERR Wrong number of args calling Redis command from script');
    }
    const sub = argv[1] !== undefined && argv[1].length <= 64 ? `${spec.name}|${argv[1].toString('latin1').toLowerCase()}` : '';
    // The container's noscript, or its subcommand's (server.c: the subcommand is the command run).
    const subFlags = sub === '' || spec.subcommands === undefined ? undefined : subcommandFlags(spec, sub.slice(spec.name.length + 1));
    const noscript = spec.flags?.includes('noscript') === true || subFlags?.includes('noscript') === true;
    if (noscript || this.#denied(spec.name) || (sub !== '' && this.#denied(sub))) {
      this.#rejected(spec, argv);
      return error('ERR This Redis command is not allowed from script');
    }
    if (spec.name === 'xread' || spec.name === 'xreadgroup') {
      // t_stream.c: BLOCK makes no sense in a script, and Redis says so in its own words.
      for (let i = 1; i < argv.length; i++)
        if ((argv[i] as Buffer).length === 5 && (argv[i] as Buffer).toString('latin1').toUpperCase() === 'BLOCK')
          return error(`ERR ${(argv[0] as Buffer).toString('latin1')} command is not allowed with BLOCK option from scripts`);
    }
    const flags = spec.flags ?? [];
    if (options.readOnly === true && (flags.includes('write') || spec.name === 'publish')) {
      this.#rejected(spec, argv);
      return error('ERR Write commands are not allowed from read-only scripts.');
    }
    if (options.allowOom !== true && !this.#wrote && flags.includes('denyoom') && resp.options.outOfMemory?.() === true) {
      this.#rejected(spec, argv);
      return error("OOM command not allowed when used memory > 'maxmemory'.");
    }
    if (flags.includes('write')) this.#wrote = true;
    client.reply.protocol = options.protocol ?? 2;
    client.reply.take();
    const full = fullName(spec, argv);
    client.lastCommand = full;
    resp.stats.commandsProcessed++;
    const stats = statsOf(resp, full);
    stats.calls++;
    const started = performance.now();
    try {
      const result = spec.handler(client, argv);
      if (result instanceof Promise) {
        result.catch(() => {});
        stats.failed++;
        client.reply.take();
        return error('ERR This Redis command is not allowed from script');
      }
      if (result !== undefined) client.reply.value(result);
    } catch (thrown) {
      stats.failed++;
      client.reply.error(thrown instanceof RespError ? thrown.message : `ERR ${thrown instanceof Error ? thrown.message : String(thrown)}`);
    }
    stats.usec += Math.round((performance.now() - started) * 1000);
    const caller = options.caller as unknown as RespClient<Context>;
    if (caller.tracking !== undefined && flags.includes('readonly')) resp.tracking.remember(caller, commandKeys(spec, argv));
    if (!hiddenFromMonitor(spec, full === spec.name ? undefined : full.slice(spec.name.length + 1)))
      this.feedMonitors(client.db, 'lua', argv);
    const bytes = client.reply.take();
    if (bytes === undefined) return { type: 'nil' };
    const buffer = typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes;
    return decodeReply(buffer);
  }

  #rejected(spec: CommandSpec<Context>, _argv: Command): void {
    statsOf(this.#resp, spec.name).rejected++;
  }
}

function error(message: string): ScriptReply {
  return { type: 'error', value: message };
}

function statsOf<C>(resp: RespAdapter<C>, name: string): { calls: number; usec: number; rejected: number; failed: number } {
  let stats = resp.commandStats.get(name);
  if (stats === undefined) {
    stats = { calls: 0, usec: 0, rejected: 0, failed: 0 };
    resp.commandStats.set(name, stats);
  }
  return stats;
}

function fullName<C>(spec: CommandSpec<C>, argv: Command): string {
  const sub = argv[1];
  if (spec.subcommands === undefined || sub === undefined || sub.length > 64) return spec.name;
  const lower = sub.toString('latin1').toLowerCase();
  return Object.hasOwn(spec.subcommands, lower) ? `${spec.name}|${lower}` : spec.name;
}

/**
 * Decode one RESP2/RESP3 reply (as a handler wrote it: complete, well formed). Attributes are
 * skipped, as Redis's script reply parser does; a push (never written to a script client) reads as an array.
 */
export function decodeReply(buffer: Buffer): ScriptReply {
  let offset = 0;
  const line = (): string => {
    const end = buffer.indexOf(13, offset);
    const text = buffer.toString('latin1', offset, end);
    offset = end + 2;
    return text;
  };
  const one = (): ScriptReply => {
    const kind = buffer[offset++];
    switch (kind) {
      case 0x2b /* + */:
        return { type: 'status', value: line() };
      case 0x2d /* - */:
        return { type: 'error', value: line() };
      case 0x3a /* : */:
        return { type: 'integer', value: BigInt(line()) };
      case 0x24 /* $ */:
        {
          const length = Number(line());
          if (length < 0) return { type: 'nil' };
          const value = buffer.subarray(offset, offset + length);
          offset += length + 2;
          return { type: 'bulk', value };
        }
      case 0x3d /* = */:
        {
          const length = Number(line());
          const value = buffer.subarray(offset + 4, offset + length);
          const format = buffer.toString('latin1', offset, offset + 3);
          offset += length + 2;
          return { type: 'verbatim', format, value };
        }
      case 0x2a /* * */:
      case 0x3e /* > */:
      case 0x7e /* ~ */:
        {
          const length = Number(line());
          if (length < 0) return { type: 'nil' };
          const items: ScriptReply[] = [];
          for (let i = 0; i < length; i++) items.push(one());
          return kind === 0x7e ? { type: 'set', value: items } : { type: 'array', value: items };
        }
      case 0x25 /* % */:
        {
          const length = Number(line());
          const entries: Array<[ScriptReply, ScriptReply]> = [];
          for (let i = 0; i < length; i++) entries.push([one(), one()]);
          return { type: 'map', value: entries };
        }
      case 0x7c /* | */:
        {
          const length = Number(line());
          for (let i = 0; i < 2 * length; i++) one();
          return one();
        }
      case 0x5f /* _ */:
        line();
        return { type: 'null' };
      case 0x23 /* # */:
        return { type: 'boolean', value: line() === 't' };
      case 0x2c /* , */:
        {
          const text = line();
          return { type: 'double', value: text === 'inf' ? Infinity : text === '-inf' ? -Infinity : Number(text) };
        }
      case 0x28 /* ( */:
        return { type: 'bignumber', value: line() };
      default:
        throw new Error(`not a RESP reply (byte ${kind})`);
    }
  };
  return one();
}
