import { clientAddress } from './address.js';
import type { RespClient } from './client.js';
import type { Command } from './parser.js';
import { type CommandFlag, type CommandOptions, type CommandSpec, subcommandFlags } from './registry.js';

// MONITOR: every command run (but admin and skip_monitor ones) is sent to the clients in MONITOR mode, as Redis's
// replicationFeedMonitors prints it. While no client monitors, running a command costs nothing more.

export class Monitors<Context> {
  readonly #clients = new Set<RespClient<Context>>();

  /** MONITOR: from now on `client` receives every command run (not admin ones). */
  start(client: RespClient<Context>): void {
    client.monitoring = true;
    this.#clients.add(client);
  }

  /** Leave MONITOR mode (RESET, or the connection closed). */
  stop(client: RespClient<Context>): void {
    client.monitoring = false;
    this.#clients.delete(client);
  }

  get size(): number {
    return this.#clients.size;
  }

  /** `+<sec>.<usec> [<db> <addr>] "arg" …`, one line for every monitor, after the command ran. */
  feed(client: RespClient<Context>, spec: CommandSpec<Context>, argv: Command): void {
    if (hiddenFromMonitor(spec, spec.subcommands === undefined ? undefined : client.lastCommand.split('|')[1])) return;
    const line = monitorLine(client.db, clientAddress(client.conn), spec.name, argv, spec.redact?.(argv));
    for (const monitor of this.#clients) {
      if (monitor.closing) continue;
      monitor.pushWriter().simple(line);
      monitor.flushLater();
    }
  }
}

/**
 * Whether MONITOR does not show a command (server.c, call(): CMD_SKIP_MONITOR or CMD_ADMIN), the
 * subcommand's flags for a container's known subcommand (`sub`: its lowercase name).
 */
export function hiddenFromMonitor(spec: CommandOptions, sub: string | undefined): boolean {
  const hides = (flags: readonly CommandFlag[] | undefined): boolean =>
    flags !== undefined && (flags.includes('admin') || flags.includes('skip_monitor'));
  return hides(spec.flags) || (sub !== undefined && spec.subcommands !== undefined && hides(subcommandFlags(spec, sub)));
}

/** Whether argument `i` is shown as `(redacted)` (MONITOR, SLOWLOG): AUTH's and HELLO's passwords, a command's `redact`. */
export function redactedArgument(spec: CommandOptions & { name: string }, argv: Command, i: number): boolean {
  if (redacted(spec.name, argv, i)) return true;
  if (spec.redact === undefined) return false;
  for (const index of spec.redact(argv)) if (index === i) return true;
  return false;
}

/** Arguments redacted in MONITOR output (Redis's redactClientCommandArgument): passwords. */
function redacted(name: string, argv: Command, i: number): boolean {
  if (name === 'auth') return i >= 1;
  if (name === 'hello') {
    // HELLO <proto> AUTH <user> <pass> [SETNAME name]: the two words after AUTH.
    for (let j = 2; j < argv.length && j < i; j++) {
      if ((argv[j] as Buffer).toString('latin1').toUpperCase() === 'AUTH') {
        if (i === j + 1 || i === j + 2) return true;
        j += 2;
      } else if ((argv[j] as Buffer).toString('latin1').toUpperCase() === 'SETNAME') j += 1;
    }
  }
  return false;
}

/** One MONITOR line, without the `+` and CRLF: time with microseconds, db and address, each argument quoted. */
export function monitorLine(db: number, addr: string, name: string, argv: Command, redact?: Iterable<number>): string {
  const micros = Math.floor((performance.timeOrigin + performance.now()) * 1000);
  let line = `${Math.floor(micros / 1e6)}.${String(micros % 1e6).padStart(6, '0')} [${db} ${addr}]`;
  const hidden = redact === undefined ? undefined : new Set(redact);
  for (let i = 0; i < argv.length; i++) {
    line += ` ${redacted(name, argv, i) || hidden?.has(i) ? '"(redacted)"' : quoteArg(argv[i] as Buffer)}`;
  }
  return line;
}

/** sds.c, sdscatrepr: in double quotes, `\\ \" \n \r \t \a \b` escaped, other unprintable bytes as `\xHH`. */
export function quoteArg(arg: Buffer): string {
  let out = '"';
  for (let i = 0; i < arg.length; i++) {
    const byte = arg[i] as number;
    if (byte === 0x5c) out += '\\\\';
    else if (byte === 0x22) out += '\\"';
    else if (byte === 0x0a) out += '\\n';
    else if (byte === 0x0d) out += '\\r';
    else if (byte === 0x09) out += '\\t';
    else if (byte === 0x07) out += '\\a';
    else if (byte === 0x08) out += '\\b';
    else if (byte >= 0x20 && byte <= 0x7e) out += String.fromCharCode(byte);
    else out += `\\x${byte.toString(16).padStart(2, '0')}`;
  }
  return `${out}"`;
}
