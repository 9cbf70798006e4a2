import type { Command } from './parser.js';

// The slow log (Redis's slowlog.c): commands that ran longer than a threshold, newest first, as
// SLOWLOG GET shows them. The adapter times every command while the log is on (a negative threshold
// turns it off, and the clock is then not read); the application registers the SLOWLOG command and
// its two settings (mini-redis: slowlog-log-slower-than, slowlog-max-len).

/** Arguments kept per entry: past it the last one says how many more there were (SLOWLOG_ENTRY_MAX_ARGC). */
export const SLOWLOG_MAX_ARGS = 32;
/** Bytes kept per argument: past it, `... (N more bytes)` (SLOWLOG_ENTRY_MAX_STRING). */
export const SLOWLOG_MAX_ARG_BYTES = 128;

export interface SlowLogEntry {
  readonly id: number;
  /** When the command ran (Unix time, seconds). */
  readonly time: number;
  /** How long it ran (µs): the handler's own time, not the time a blocked command waited. */
  readonly durationUs: number;
  /** Its arguments, shortened as Redis shortens them (and passwords redacted). */
  readonly args: readonly Buffer[];
  /** The client's address (`ip:port`), as CLIENT LIST's addr. */
  readonly addr: string;
  /** The client's name (CLIENT SETNAME), or ''. */
  readonly name: string;
}

export class SlowLog {
  /** slowlog-log-slower-than (µs): commands that ran at least this long are logged; negative: none (default 10,000). */
  slowerThanUs = 10_000;
  #maxLen = 128;
  /** Newest first. */
  #entries: SlowLogEntry[] = [];
  #nextId = 0;

  /** slowlog-max-len: entries kept (the oldest go); lowering it drops the extra ones at once. */
  get maxLen(): number {
    return this.#maxLen;
  }

  set maxLen(value: number) {
    this.#maxLen = Math.max(0, Math.floor(value));
    if (this.#entries.length > this.#maxLen) this.#entries.length = this.#maxLen;
  }

  /** Whether commands are timed at all. */
  get on(): boolean {
    return this.slowerThanUs >= 0;
  }

  /** Log a command that ran `durationUs` if that is slow enough (slowlogPushEntryIfNeeded). */
  push(argv: Command, durationUs: number, addr: string, name: string, redacted: (i: number) => boolean): void {
    if (this.slowerThanUs < 0 || durationUs < this.slowerThanUs) return;
    const count = Math.min(argv.length, SLOWLOG_MAX_ARGS);
    const args: Buffer[] = [];
    for (let i = 0; i < count; i++) {
      if (count !== argv.length && i === count - 1) {
        args.push(Buffer.from(`... (${argv.length - count + 1} more arguments)`));
        break;
      }
      const arg = argv[i] as Buffer;
      if (redacted(i)) args.push(Buffer.from('(redacted)'));
      else if (arg.length > SLOWLOG_MAX_ARG_BYTES)
        args.push(
          Buffer.concat([arg.subarray(0, SLOWLOG_MAX_ARG_BYTES), Buffer.from(`... (${arg.length - SLOWLOG_MAX_ARG_BYTES} more bytes)`)]),
        );
      // A copy: the parser's buffer under the argument is reused for later input.
      else args.push(Buffer.from(arg));
    }
    this.#entries.unshift({
      id: this.#nextId++,
      time: Math.floor(Date.now() / 1000),
      durationUs: Math.floor(durationUs),
      args,
      addr,
      name,
    });
    if (this.#entries.length > this.#maxLen) this.#entries.length = this.#maxLen;
  }

  /** The newest `count` entries (all with -1). */
  get(count: number): readonly SlowLogEntry[] {
    return count < 0 ? [...this.#entries] : this.#entries.slice(0, count);
  }

  get length(): number {
    return this.#entries.length;
  }

  /** SLOWLOG RESET: the entries go; ids go on. */
  reset(): void {
    this.#entries = [];
  }
}
