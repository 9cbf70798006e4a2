import type { CommandHandler, CommandOptions, RespAdapter, RespClient } from '@portbind/resp';

// Command propagation, as Redis's call() / alsoPropagate() / propagatePendingCommands(): after a
// command that changed the data, the command as it must be replayed goes to every sink (the
// append-only file, the replicas). A command changed the data when it wrote a key (every write
// reaches `resp.touch`, Redis's dirty counter here) or bumped `dirty` itself (FUNCTION LOAD,
// DELETE and FLUSH: the function libraries are data too). A handler may replace what is replayed
// (`rewrite`: SET … EX becomes SET … PXAT), add to it (`also`: SPOP's SREMs), or prevent it.
// What one top-level command (or EXEC) propagates is one unit: more than one command in a unit
// is wrapped in MULTI/EXEC, as Redis 7.0 does. Each sink tracks its own selected database and
// sends a SELECT when the next command is for another one.

/** A command to replay: the arguments, binary-safe. */
export type Argv = readonly (Buffer | string)[];

/** Where propagated commands go (the AOF, the replicas). */
export interface Sink {
  /** One command for database `db`, already framed as a RESP array. */
  feed(db: number, frame: Buffer): void;
  /** The append-only file: it does not get what only replicas get (PUBLISH). */
  readonly aof?: boolean;
}

interface Op {
  readonly db: number;
  readonly argv: Argv;
  /** To the replicas only (PUBLISH: Redis's forceCommandPropagation(c, PROPAGATE_REPL)). */
  readonly replicasOnly?: boolean;
}

/** One running command: what it propagates instead of its own argv. */
interface Invocation {
  readonly dirty: number;
  /** undefined: its own argv; null: nothing; else these. */
  replacement: Argv | null | undefined;
}

/** `*<n>\r\n$<len>\r\n<arg>\r\n…`: a command as Redis writes it to the AOF and to replicas. */
export function frameCommand(argv: Argv): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${argv.length}\r\n`, 'latin1')];
  for (const arg of argv) {
    const bytes = typeof arg === 'string' ? Buffer.from(arg, 'latin1') : arg;
    parts.push(Buffer.from(`$${bytes.length}\r\n`, 'latin1'), bytes, CRLF);
  }
  return Buffer.concat(parts);
}
const CRLF = Buffer.from('\r\n');

/** The commands not flagged `write` that Redis still propagates (CMD_MAY_REPLICATE). */
const MAY_REPLICATE = new Set(['publish']);

/** A write command, or a container with a write subcommand (XGROUP CREATE, FUNCTION LOAD…). */
const writes = (options: CommandOptions): boolean =>
  options.flags?.includes('write') === true ||
  Object.values(options.subcommands ?? {}).some((sub) => ('arity' in sub ? (sub.flags ?? []) : sub).includes('write'));

/** A command that reads keys (a read may expire them lazily: their deletions make one unit, as Redis). */
const reads = (options: CommandOptions): boolean =>
  options.flags?.includes('readonly') === true ||
  Object.values(options.subcommands ?? {}).some((sub) => ('arity' in sub ? (sub.flags ?? []) : sub).includes('readonly'));

/** Redis's CMD_TOUCHES_ARBITRARY_KEYS: the keys they expire replay one by one, never in MULTI/EXEC. */
const ARBITRARY_KEYS = new Set(['keys', 'scan', 'randomkey']);

export class Propagation {
  /** Writes so far (Redis's server.dirty): every resp.touch. */
  dirty = 0;
  /** Redis's lazyfree-lazy-expire: an expired key replays as UNLINK instead of DEL. */
  lazyExpire = false;
  readonly #sinks = new Set<Sink>();
  readonly #stack: Invocation[] = [];
  #pending: Op[] = [];
  /** Units to send after the current one (blocked clients a push served: each its own unit). */
  #after: Op[] = [];
  /** Inside a unit (a wrapped command, or EXEC, is running). */
  #depth = 0;
  /** The running unit is a SCAN, KEYS or RANDOMKEY: not wrapped in MULTI/EXEC (Redis's propagatePendingCommands). */
  #noMulti = false;

  addSink(sink: Sink): void {
    this.#sinks.add(sink);
  }

  removeSink(sink: Sink): void {
    this.#sinks.delete(sink);
  }

  /** Whether anything listens (else nothing is framed). */
  get active(): boolean {
    return this.#sinks.size > 0;
  }

  /** The running command replays as `argv` (when it wrote something), not as it was sent. */
  rewrite(argv: Argv): void {
    const top = this.#stack.at(-1);
    if (top !== undefined) top.replacement = argv;
  }

  /** The running command replays as nothing of its own (what it gave `also` still goes). */
  prevent(): void {
    const top = this.#stack.at(-1);
    if (top !== undefined) top.replacement = null;
  }

  /** Propagate `argv` for database `db` beside the running command (or now, outside any: active expiry). */
  also(db: number, argv: Argv): void {
    if (this.#sinks.size === 0) return;
    this.#pending.push({ db, argv });
    if (this.#depth === 0) this.#flush();
  }

  /**
   * A blocked client was served by the running command (BLPOP by an LPUSH): its pop goes after
   * the running command's unit, as a unit of its own (Redis's handleClientsBlockedOnKeys).
   */
  served(db: number, argv: Argv): void {
    if (this.#sinks.size === 0) return;
    if (this.#depth === 0) {
      this.#send([{ db, argv }]);
      return;
    }
    this.#after.push({ db, argv });
  }

  /** A key expired (lazily, or by the active cycle): replay its deletion (UNLINK with lazyfree-lazy-expire). */
  expired(db: number, key: string): void {
    this.also(db, [this.lazyExpire ? 'UNLINK' : 'DEL', Buffer.from(key, 'latin1')]);
  }

  /** Wrap a handler: after it ran, its propagation (if it wrote) joins the current unit. */
  wrap(name: string, options: CommandOptions, handler: CommandHandler): CommandHandler {
    if (name === 'exec') return this.#wrapExec(handler);
    if (!writes(options) && !MAY_REPLICATE.has(name)) return reads(options) ? this.#wrapRead(name, handler) : handler;
    const always = MAY_REPLICATE.has(name);
    return (client, argv) => {
      const invocation: Invocation = { dirty: this.dirty, replacement: undefined };
      this.#stack.push(invocation);
      this.#depth++;
      let result: ReturnType<CommandHandler>;
      try {
        result = handler(client, argv);
      } finally {
        this.#stack.pop();
        this.#finish(invocation, client, argv, always);
      }
      return result;
    };
  }

  #finish(invocation: Invocation, client: RespClient, argv: Argv, always: boolean): void {
    if (this.#sinks.size !== 0 && (always || this.dirty !== invocation.dirty)) {
      const replacement = invocation.replacement;
      if (replacement === undefined) this.#pending.push({ db: client.db, argv, replicasOnly: always });
      else if (replacement !== null) this.#pending.push({ db: client.db, argv: replacement });
    }
    this.#depth--;
    if (this.#depth === 0) this.#flush();
  }

  /** EXEC: the queued commands' propagations make one unit (MULTI/EXEC around more than one). */
  #wrapExec(handler: CommandHandler): CommandHandler {
    return (client, argv) => {
      this.#depth++;
      let result: ReturnType<CommandHandler>;
      try {
        result = handler(client, argv);
      } catch (error) {
        this.#leave();
        throw error;
      }
      if (result instanceof Promise) {
        return result.finally(() => this.#leave());
      }
      this.#leave();
      return result;
    };
  }

  /**
   * A read: the keys it expires lazily (MGET of two expired keys) replay as one unit after it, in
   * MULTI/EXEC when more than one (Redis 7.0's afterCommand → propagatePendingCommands), but for
   * SCAN, KEYS and RANDOMKEY.
   */
  #wrapRead(name: string, handler: CommandHandler): CommandHandler {
    const arbitrary = ARBITRARY_KEYS.has(name);
    return (client, argv) => {
      if (this.#sinks.size === 0) return handler(client, argv);
      if (this.#depth === 0) this.#noMulti = arbitrary;
      this.#depth++;
      try {
        return handler(client, argv);
      } finally {
        this.#leave();
      }
    };
  }

  #leave(): void {
    this.#depth--;
    if (this.#depth === 0) this.#flush();
  }

  #flush(): void {
    const ops = this.#pending;
    this.#pending = [];
    const noMulti = this.#noMulti;
    this.#noMulti = false;
    if (ops.length > 0) {
      if (noMulti) for (const op of ops) this.#send([op]);
      else this.#send(ops);
    }
    while (this.#after.length > 0) {
      const after = this.#after;
      this.#after = [];
      for (const op of after) this.#send([op]);
    }
  }

  #send(ops: Op[]): void {
    if (this.#sinks.size === 0) return;
    const transaction = ops.length > 1;
    const first = ops[0] as Op;
    if (transaction) this.#emit(first.db, MULTI, false);
    for (const op of ops) this.#emit(op.db, frameCommand(op.argv), op.replicasOnly === true);
    if (transaction) this.#emit((ops.at(-1) as Op).db, EXEC, false);
  }

  #emit(db: number, frame: Buffer, replicasOnly: boolean): void {
    for (const sink of this.#sinks) if (!(replicasOnly && sink.aof)) sink.feed(db, frame);
  }
}

const MULTI = frameCommand(['MULTI']);
const EXEC = frameCommand(['EXEC']);

/**
 * Hook propagation into the adapter: every write (resp.touch, touchAll) counts as dirty, an
 * expired key replays as DEL/UNLINK, and commands registered from now on are wrapped.
 */
export function installPropagation(resp: RespAdapter): Propagation {
  const propagation = new Propagation();
  const touch = resp.touch.bind(resp);
  resp.touch = (db, key) => {
    propagation.dirty++;
    touch(db, key);
  };
  const touchAll = resp.touchAll.bind(resp);
  resp.touchAll = (db, exists) => {
    propagation.dirty++;
    touchAll(db, exists);
  };
  const notify = resp.notifyKeyspaceEvent.bind(resp);
  resp.notifyKeyspaceEvent = (kind, event, key, db) => {
    if (kind === 'expired' || kind === 'evicted') {
      // The touch before this was the expiry (or eviction), not the running command's write; it
      // replays as a deletion (Redis's propagateDeletion).
      propagation.dirty--;
      propagation.expired(db, typeof key === 'string' ? key : key.toString('latin1'));
    }
    notify(kind, event, key, db);
  };
  const register = resp.command.bind(resp);
  resp.command = (name, options, handler) => register(name, options, propagation.wrap(name.toLowerCase(), options, handler));
  // EXEC and PUBLISH are built in (registered before this): wrap them too.
  for (const name of ['exec', 'publish']) {
    const spec = resp.lookup(name);
    if (spec !== undefined) register(name, spec, propagation.wrap(name, spec, spec.handler));
  }
  return propagation;
}
