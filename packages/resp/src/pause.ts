import type { RespClient } from './client.js';
import type { Command } from './parser.js';
import type { CommandRegistry, Entry } from './registry.js';

// CLIENT PAUSE: hold every command (`all`) or the write ones (`write`) of every client until the
// pause ends or CLIENT UNPAUSE; held commands then run in the order they came (networking.c, pauseClients).

export class ClientPause<Context> {
  #type: 'write' | 'all' | undefined;
  #end = 0;
  #timer: NodeJS.Timeout | undefined;
  /** Commands held, in arrival order, each waiting for the pause to end. */
  #waiters: Array<() => void> = [];
  /** Clients whose command is held now (a client's later commands wait behind it: one each). */
  readonly #held = new Set<RespClient<Context>>();
  readonly #registry: CommandRegistry<Context>;

  constructor(registry: CommandRegistry<Context>) {
    this.#registry = registry;
  }

  /** What is held now: `write`, `all`, or undefined. */
  get type(): 'write' | 'all' | undefined {
    return this.#type;
  }

  /** Pause until `end` (ms since the epoch). A second pause never shortens the first nor turns `all` into `write`. */
  pause(end: number, type: 'write' | 'all'): void {
    if (this.#type !== 'all') this.#type = type;
    if (end <= this.#end && this.#timer !== undefined) return;
    this.#end = Math.max(end, this.#end);
    clearTimeout(this.#timer);
    // setTimeout takes at most 2^31-1 ms: a longer pause re-arms itself.
    const wait = Math.min(Math.max(this.#end - Date.now(), 0), 2 ** 31 - 1);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (Date.now() >= this.#end) this.unpause();
      else this.pause(this.#end, this.#type ?? type);
    }, wait);
    this.#timer.unref();
  }

  /** CLIENT UNPAUSE (or the pause's end): held commands run, in the order they came. */
  unpause(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#type = undefined;
    this.#end = 0;
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const resume of waiters) resume();
  }

  /** Whether the current pause holds this command (an EXEC is a write when it queued one). */
  holds(client: RespClient<Context>, entry: Entry<Context>, argv: Command): boolean {
    if (this.#type === undefined) return false;
    if (this.#type === 'all') return true;
    if (writes(entry, argv)) return true;
    if (entry.spec.name !== 'exec' || client.multi === undefined) return false;
    for (const queued of client.multi) {
      const queuedEntry = this.#registry.entryFor(queued);
      if (queuedEntry !== undefined && writes(queuedEntry, queued)) return true;
    }
    return false;
  }

  /** Clients with a command held now: Redis counts them in INFO's blocked_clients (BLOCKED_POSTPONE). */
  get heldClients(): number {
    return this.#held.size;
  }

  /** Whether `client` has a command held now (dispatch says so while it waits). */
  hold(client: RespClient<Context>, held: boolean): void {
    if (held) this.#held.add(client);
    else this.#held.delete(client);
  }

  /** Resolves when the pause ends (check `holds` again: another may have begun). */
  ended(): Promise<void> {
    return new Promise<void>((resolve) => this.#waiters.push(resolve));
  }
}

/** Whether CLIENT PAUSE … WRITE holds this call: the command's own answer by its arguments, else its flags. */
function writes<Context>(entry: Entry<Context>, argv: Command): boolean {
  return entry.pausedByWriteOf === undefined ? entry.pausedByWrite : entry.pausedByWriteOf(argv);
}
