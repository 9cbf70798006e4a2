import type { Logger } from '@portbind/core';
import { clientAddress } from './address.js';
import type { AuthPolicy } from './auth.js';
import { type RespClient, writeFailure, writeResult } from './client.js';
import { type Monitors, redactedArgument } from './monitor.js';
import type { Command } from './parser.js';
import type { ClientPause } from './pause.js';
import type { PubSub } from './pubsub.js';
import {
  type CommandHandler,
  type CommandRegistry,
  type CommandSpec,
  commandKeys,
  type Entry,
  fullName,
  subcommandFlags,
  subEntry,
} from './registry.js';
import { RespError } from './reply.js';
import { SlowLog } from './slowlog.js';
import type { Tracking } from './tracking.js';
import type { Watches } from './watch.js';

// Dispatch: one command received → the checks Redis's processCommand makes, in its order
// (lookup, arity, auth, MONITOR, OOM, the pre-run check, CLIENT PAUSE, MULTI's queue, RESP2
// subscribed mode), then run() calls the handler, writes its result or error, and does what
// follows a command (client-side caching, INFO commandstats, MONITOR).

/** Per command (`client|list` for a subcommand), as INFO commandstats shows it. */
export interface CommandStats {
  calls: number;
  usec: number;
  rejected: number;
  failed: number;
}

/**
 * A check made on every command after arity, auth and OOM, before CLIENT PAUSE holds it or MULTI
 * queues it (Redis's processCommand): the error to refuse it with (`MOVED …`, `READONLY …`,
 * `NOREPLICAS …`), or undefined to go on. A refused command counts as rejected_calls and, inside
 * MULTI, makes EXEC answer `-EXECABORT`. EXEC itself passes through the checks too (its queued
 * commands are in `client.multi`), as Redis checks a transaction that queued a write.
 */
export type PreRunCheck<Context> = (client: RespClient<Context>, spec: CommandSpec<Context>, argv: Command) => string | undefined;

/** What dispatch needs from the adapter. */
export interface DispatchHost<Context> {
  readonly registry: CommandRegistry<Context>;
  readonly auth: AuthPolicy<Context>;
  readonly pubsub: PubSub<Context>;
  readonly pause: ClientPause<Context>;
  readonly monitors: Monitors<Context>;
  readonly tracking: Tracking<Context>;
  /** WATCH: a refused EXEC discards the transaction and its watches. */
  readonly watches: Watches<Context>;
  /** INFO's total_commands_processed and total_error_replies. */
  readonly stats: { commandsProcessed: number; errorReplies: number };
  readonly outOfMemory: (() => boolean) | undefined;
  readonly logger: Logger;
  /** Cluster mode's slot check (MOVED, CROSSSLOT, CLUSTERDOWN), when cluster mode is on. */
  readonly clusterCheck: PreRunCheck<Context> | undefined;
  /** The pre-run checks ({@link PreRunCheck}), in order; the first error wins. */
  readonly checks: ReadonlyArray<PreRunCheck<Context>>;
}

/** The reply of a command ended by `CLIENT UNBLOCK id ERROR` (networking.c, clientCommand). */
const UNBLOCKED = 'UNBLOCKED client unblocked via CLIENT UNBLOCK';

const PUBSUB_ONLY = 'only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context';

export class Dispatcher<Context> {
  readonly #host: DispatchHost<Context>;
  /** INFO commandstats. */
  readonly commandStats = new Map<string, CommandStats>();
  /**
   * INFO errorstats: error replies by code (`ERR`, `WRONGTYPE`, `NOGROUP`…), as Redis's
   * afterErrorReply counts them — here the errors dispatch sees: refusals, a handler's thrown or
   * returned RespError (not an error a handler writes itself with `client.reply.error`).
   */
  readonly errorStats = new Map<string, number>();
  /** SLOWLOG: commands that ran longer than its threshold (slowlog.ts). */
  readonly slowLog = new SlowLog();
  /** When the last timed command of this turn ended (its successor in a pipeline starts then); undefined between turns. */
  #chainEnd: number | undefined;
  #chainScheduled = false;
  readonly #endChain = (): void => {
    this.#chainEnd = undefined;
    this.#chainScheduled = false;
  };
  /** The client whose command runs now (tracking's NOLOOP). */
  #current: RespClient<Context> | undefined;
  /** Nesting of run() (EXEC runs the queued commands inside its own run). */
  #depth = 0;
  readonly #logFailure = (error: unknown, command: string): void =>
    this.#host.logger.error({ err: error, command }, 'command handler failed');

  constructor(host: DispatchHost<Context>) {
    this.#host = host;
  }

  /** The client whose command is running, if any. */
  get current(): RespClient<Context> | undefined {
    return this.#current;
  }

  /** A closed client is no longer current. */
  forget(client: RespClient<Context>): void {
    if (this.#current === client) this.#current = undefined;
  }

  /** Dispatch one command, in Redis's order of checks. */
  execute(own: RespClient<Context>, argv: Command): void | Promise<void> {
    const host = this.#host;
    let entry = host.registry.entry((argv[0] as Buffer).toString('latin1'));
    if (entry === undefined) {
      this.#reject(own, unknownCommand(argv));
      return;
    }
    const spec = entry.spec;
    const arity = spec.arity;
    if (arity >= 0 ? argv.length !== arity : argv.length < -arity) {
      this.#rejectCommand(own, spec.name, `ERR wrong number of arguments for '${spec.name}' command`);
      return;
    }
    // A declared subcommand decides from here on, with its own arity and flags, as Redis's processCommand
    // works on c->cmd (XGROUP CREATE is write and denyoom); an unknown one is the handler's to answer.
    let name = spec.name;
    if (entry.subs !== undefined) {
      const sub = subEntry(entry, argv);
      if (sub !== undefined) {
        name = sub.fullName;
        if (sub.arity >= 0 ? argv.length !== sub.arity : argv.length < -sub.arity) {
          this.#rejectCommand(own, name, `ERR wrong number of arguments for '${name}' command`);
          return;
        }
        entry = sub;
      }
    }
    if (!entry.noauth && host.auth.required(own)) {
      this.#rejectCommand(own, name, 'NOAUTH Authentication required.');
      return;
    }
    // server.c, processCommand: a CMD_NO_MULTI command (SAVE, SHUTDOWN…) is refused inside MULTI, right after auth.
    if (entry.noMulti && own.multi !== undefined) {
      this.#rejectCommand(own, name, 'ERR Command not allowed inside a transaction');
      return;
    }
    // Cluster mode's slot check comes right after auth (and ACLs), before OOM (server.c, processCommand).
    const redirect = host.clusterCheck?.(own, spec, argv);
    if (redirect !== undefined) {
      this.statsOf(name).rejected++;
      // A redirected EXEC discards the transaction and the error is sent as it is, not inside EXECABORT
      // (processCommand: discardTransaction, clusterRedirectClient); another command flags MULTI.
      if (spec.name === 'exec') this.#discard(own);
      this.#reject(own, redirect);
      return;
    }
    if (own.monitoring && entry.keyspace) {
      // server.c, processCommand: a MONITOR client is a replica, kept away from the keyspace.
      this.#rejectCommand(own, name, "ERR Replica can't interact with the keyspace");
      return;
    }
    if (host.outOfMemory !== undefined && this.#usesMemory(own, entry) && host.outOfMemory()) {
      this.#rejectCommand(own, name, "OOM command not allowed when used memory > 'maxmemory'.");
      return;
    }
    // The pre-run checks (an application's READONLY, NOREPLICAS…, after OOM as in processCommand):
    // the one place for a check on every command that passed the above, before CLIENT PAUSE holds it
    // and MULTI queues it.
    const checks = host.checks;
    for (let i = 0; i < checks.length; i++) {
      const refused = (checks[i] as PreRunCheck<Context>)(own, spec, argv);
      if (refused === undefined) continue;
      this.#rejectCommand(own, name, refused);
      return;
    }
    if (host.pause.type !== undefined && host.pause.holds(own, entry, argv)) return this.#afterPause(own, entry, argv);
    return this.#proceed(own, entry, argv);
  }

  /** Whether a command is refused when out of memory (server.c, processCommand's reject_cmd_on_oom). */
  #usesMemory(own: RespClient<Context>, entry: Entry<Context>): boolean {
    if (entry.denyoom) return true;
    const name = entry.spec.name;
    if (own.multi === undefined) return false;
    if (name !== 'exec') return name !== 'discard' && name !== 'quit' && name !== 'reset';
    for (const queued of own.multi) {
      if (this.#host.registry.entryFor(queued)?.denyoom) return true;
    }
    return false;
  }

  /** The rest of dispatch, once no CLIENT PAUSE holds the command: MULTI's queue, RESP2 pub/sub, run. */
  #proceed(own: RespClient<Context>, entry: Entry<Context>, argv: Command): void | Promise<void> {
    const spec = entry.spec;
    if (own.multi !== undefined && !entry.nomulti) {
      own.queue(argv);
      own.reply.simple('QUEUED');
      return;
    }
    if (!entry.pubsub && own.protocol === 2 && this.#host.pubsub.isSubscribed(own)) {
      this.#rejectCommand(own, spec.name, `ERR Can't execute '${spec.name}': ${PUBSUB_ONLY}`);
      return;
    }
    return this.run(own, spec, argv);
  }

  /**
   * Wait for the pause to end (the client is blocked meanwhile, its later commands behind it), then
   * dispatch the command again from the start, as Redis processes a postponed command again
   * (processCommand): OOM, MISCONF and the other checks see the server as it is once the pause ended
   * (a maxmemory lowered meanwhile refuses the held write), and a new pause holds it again.
   */
  async #afterPause(own: RespClient<Context>, entry: Entry<Context>, argv: Command): Promise<void> {
    const spec = entry.spec;
    const pause = this.#host.pause;
    own.lastCommand = spec.subcommands === undefined ? spec.name : fullName(spec, argv); // CLIENT LIST's cmd= while held, as Redis
    pause.hold(own, true);
    try {
      await pause.ended();
    } finally {
      pause.hold(own, false);
    }
    if (own.closing) return;
    const pending = this.execute(own, argv);
    if (pending !== undefined) await pending;
  }

  /** Run a command's handler and write its result or error (EXEC uses this for queued commands). */
  run(client: RespClient<Context>, spec: CommandSpec<Context>, argv: Command): void | Promise<void> {
    const host = this.#host;
    const name = spec.subcommands === undefined ? spec.name : fullName(spec, argv);
    client.lastCommand = name;
    // INFO commandstats: calls and failures; the time the handler ran (not the time a blocked
    // command waited) is measured on one call in 32 and counted 32 times — a clock read costs about
    // as much as a small command here.
    const stats = this.statsOf(name);
    // Counted once the command is done (Redis's call(): INFO does not count itself; a command
    // blocked on keys counts when it ends).
    // The slow log times every command while it is on (EXEC not: its commands are logged one by one).
    const logged = this.slowLog.on && spec.flags?.includes('skip_slowlog') !== true;
    const timed = (stats.calls & 31) === 0 || logged;
    // One clock read per command: a command run right after another in the same turn (a pipeline) starts when
    // that one ended (#chainEnd, forgotten at the end of the turn).
    const started = timed ? (this.#chainEnd ?? performance.now()) : 0;
    let result: ReturnType<CommandHandler<Context>>;
    this.#current = client;
    this.#depth++;
    try {
      result = spec.handler(client, argv);
    } catch (error) {
      this.#depth--;
      this.#current = this.#depth === 0 ? undefined : client;
      if (timed) this.#timed(stats, client, spec, argv, started, logged);
      stats.calls++;
      host.stats.commandsProcessed++;
      stats.failed++;
      writeFailure(client, error, spec.name, this.#logFailure);
      this.countError(error);
      this.#after(client, spec, argv, this.#depth === 0);
      return;
    }
    this.#depth--;
    this.#current = this.#depth === 0 ? undefined : client;
    if (timed) this.#timed(stats, client, spec, argv, started, logged);
    if (result instanceof Promise) {
      return result.then(
        (value) => {
          stats.calls++;
          host.stats.commandsProcessed++;
          if (client.takeUnblockError()) {
            client.reply.error(UNBLOCKED);
            stats.failed++;
            this.countError(UNBLOCKED);
          } else {
            writeResult(client, value);
            if (value instanceof RespError) {
              stats.failed++;
              this.countError(value);
            }
          }
          this.#after(client, spec, argv, true);
        },
        (error: unknown) => {
          stats.calls++;
          host.stats.commandsProcessed++;
          stats.failed++;
          const unblocked = client.takeUnblockError();
          if (unblocked) client.reply.error(UNBLOCKED);
          else writeFailure(client, error, spec.name, this.#logFailure);
          this.countError(unblocked ? UNBLOCKED : error);
          this.#after(client, spec, argv, true);
        },
      );
    }
    stats.calls++;
    host.stats.commandsProcessed++;
    if (result !== undefined) {
      client.reply.value(result);
      if (result instanceof RespError) {
        stats.failed++;
        this.countError(result);
      }
    }
    this.#after(client, spec, argv, this.#depth === 0);
  }

  /**
   * After a command's reply (or error) is written: client-side caching (invalidations for this
   * client's own writes go after its reply, after EXEC's whole array), then MONITOR — as Redis's
   * call(), after the command ran, so a SELECT shows the new db.
   */
  #after(client: RespClient<Context>, spec: CommandSpec<Context>, argv: Command, outermost: boolean): void {
    const { tracking, monitors } = this.#host;
    if (client.tracking !== undefined) {
      // Remember the keys a read-only command read (server.c, call); CLIENT CACHING covers a whole EXEC.
      const flags =
        spec.subcommands === undefined || argv.length < 2 || (argv[1] as Buffer).length > 64
          ? spec.flags
          : subcommandFlags(spec, (argv[1] as Buffer).toString('latin1').toLowerCase());
      if (flags?.includes('readonly')) tracking.remember(client, commandKeys(spec, argv));
      if (this.#depth === 0) tracking.commandDone(client, spec.name);
    }
    if (outermost) tracking.sendPending();
    if (monitors.size !== 0) monitors.feed(client, spec, argv);
  }

  /**
   * The handler's own time (a promise it returned is not waited for: a blocked command's wait is not its
   * cost, as in Redis): counted 32 times in commandstats for one sampled call in 32, and given to the slow log.
   */
  #timed(
    stats: CommandStats,
    client: RespClient<Context>,
    spec: CommandSpec<Context>,
    argv: Command,
    started: number,
    logged: boolean,
  ): void {
    const now = performance.now();
    const ms = now - started;
    this.#chainEnd = now;
    if (!this.#chainScheduled) {
      this.#chainScheduled = true;
      queueMicrotask(this.#endChain);
    }
    if ((stats.calls & 31) === 0) stats.usec += Math.round(ms * 32_000);
    // The entry's address and name are written only for a command slow enough to keep.
    if (logged && ms * 1000 >= this.slowLog.slowerThanUs) {
      this.slowLog.push(argv, ms * 1000, clientAddress(client.conn), client.name, (i) => redactedArgument(spec, argv, i));
    }
  }

  statsOf(name: string): CommandStats {
    let stats = this.commandStats.get(name);
    if (stats === undefined) {
      stats = { calls: 0, usec: 0, rejected: 0, failed: 0 };
      this.commandStats.set(name, stats);
    }
    return stats;
  }

  /** A known command refused before it ran: its rejected_calls count (INFO commandstats). */
  #rejectCommand(client: RespClient<Context>, name: string, message: string): void {
    this.statsOf(name).rejected++;
    if (name === 'exec') {
      // A refused EXEC ends the transaction (server.c rejectCommand → multi.c execCommandAbort):
      // its queue and watches go, and the reason is given inside EXECABORT.
      this.#discard(client);
      this.#reject(client, `EXECABORT Transaction discarded because of: ${message}`);
      return;
    }
    this.#reject(client, message);
  }

  /** multi.c, discardTransaction: the queue, its error flag and the client's watches go. */
  #discard(client: RespClient<Context>): void {
    client.multi = undefined;
    client.multiDirty = false;
    this.#host.watches.unwatch(client);
  }

  #reject(client: RespClient<Context>, message: string): void {
    if (client.multi !== undefined) client.multiDirty = true;
    client.reply.error(message);
    this.countError(message);
  }

  /**
   * Count an error reply (INFO errorstats, total_error_replies): its code is the text before the
   * first space within 32 characters, else ERR (networking.c, afterErrorReply). A handler that
   * writes an error itself can call this (through the adapter's `countError`) to be counted.
   */
  countError(error: unknown): void {
    const message = error instanceof RespError ? error.message : typeof error === 'string' ? error : 'ERR';
    const space = message.indexOf(' ');
    const code = space > 0 && space < 31 ? message.slice(0, space) : 'ERR';
    this.#host.stats.errorReplies++;
    this.errorStats.set(code, (this.errorStats.get(code) ?? 0) + 1);
  }
}

/** Redis 7's text: the name cut to 128 bytes, then arguments quoted, within a 128-byte budget. */
function unknownCommand(argv: Command): string {
  const cut = (buffer: Buffer, max: number): string => {
    const nul = buffer.indexOf(0);
    return buffer.toString('latin1', 0, Math.min(nul === -1 ? buffer.length : nul, max));
  };
  let args = '';
  for (let i = 1; i < argv.length && args.length < 128; i++) args += `'${cut(argv[i] as Buffer, 128 - args.length)}' `;
  return `ERR unknown command '${cut(argv[0] as Buffer, 128)}', with args beginning with: ${args}`;
}
