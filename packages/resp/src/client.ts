import type { Connection } from '@portbind/core';
import { ProtocolError } from './errors.js';
import type { Command, RequestParser } from './parser.js';
import { type ReplyValue, ReplyWriter, RespError } from './reply.js';

/** What a client needs from the server it belongs to. */
export interface ClientHost<Context> {
  execute(client: RespClient<Context>, argv: Command): void | Promise<void>;
  authRequired(client: RespClient<Context>): boolean;
  closed(client: RespClient<Context>): void;
  readonly outputHighWaterMark: number;
}

/**
 * One connected Redis client: its protocol version, authentication, selected database, name,
 * subscriptions and transaction state, and `context` for the application's own per-connection
 * data. Handlers write replies through `client.reply`.
 */
export class RespClient<Context = Record<string, unknown>> {
  /** Unique in the process, increasing (CLIENT ID). */
  readonly id: number;
  readonly conn: Connection;
  readonly reply = new ReplyWriter();
  /** The application's per-connection data. */
  context: Context;
  /** CLIENT SETNAME / HELLO SETNAME ('' when none). */
  name = '';
  /** CLIENT SETINFO LIB-NAME / LIB-VER. */
  libName = '';
  libVersion = '';
  /** Selected database (SELECT). */
  db = 0;
  /** Authenticated user, or undefined. */
  user: string | undefined;
  readonly channels = new Set<string>();
  readonly patterns = new Set<string>();
  /** Commands queued by MULTI, or undefined outside a transaction. */
  multi: Command[] | undefined;
  /** A command inside MULTI failed to queue: EXEC will answer EXECABORT. */
  multiDirty = false;
  /** A watched key changed: EXEC will answer a null array. */
  watchDirty = false;
  /** @internal Watched keys as `${db}\0${key}`; read them with {@link RespClient.watchedKeys}. */
  readonly watched = new Set<string>();
  /** The last command's name, for CLIENT LIST. */
  lastCommand = 'NULL';
  lastActivity = Date.now();
  readonly #host: ClientHost<Context>;
  readonly #parser: RequestParser;
  #busy = false;
  #deferred: ReplyWriter | undefined;
  #closing = false;
  #paused = false;
  /** Pub/sub output over the soft limit since (ms), or 0. */
  softLimitSince = 0;

  constructor(conn: Connection, host: ClientHost<Context>, parser: RequestParser, context: Context) {
    this.id = conn.id;
    this.conn = conn;
    this.#host = host;
    this.#parser = parser;
    this.context = context;
    const socket = conn.socket;
    socket.on('data', (chunk: Buffer) => {
      this.lastActivity = Date.now();
      this.#parser.push(chunk);
      this.#pump();
    });
    socket.on('drain', () => {
      if (this.#paused) {
        this.#paused = false;
        socket.resume();
        this.#pump();
      }
    });
    socket.on('error', () => {});
    socket.once('close', () => host.closed(this));
  }

  /** The protocol version negotiated with HELLO (2 until then). */
  get protocol(): 2 | 3 {
    return this.reply.protocol;
  }

  /** The keys this client WATCHes, as [db, key] pairs. */
  watchedKeys(): Array<[db: number, key: string]> {
    return [...this.watched].map((id) => {
      const split = id.indexOf('\u0000');
      return [Number(id.slice(0, split)), id.slice(split + 1)];
    });
  }

  /** True while subscribed to a channel or a pattern. */
  get subscribed(): boolean {
    return this.channels.size + this.patterns.size > 0;
  }

  /** True while closing: no more commands run. */
  get closing(): boolean {
    return this.#closing;
  }

  /** Bytes waiting to go out to this client (replies written, socket buffer). */
  get outputBytes(): number {
    return this.reply.pending + this.conn.socket.writableLength;
  }

  /** Bytes received and not yet parsed into a command. */
  get inputBytes(): number {
    return this.#parser.buffered;
  }

  /**
   * Where out-of-band data (pub/sub messages) goes: the reply stream when no command is running,
   * else a side buffer sent after the running command's reply, so that a push never lands in the
   * middle of a reply (an EXEC array, say).
   */
  pushWriter(): ReplyWriter {
    if (!this.#busy) return this.reply;
    this.#deferred ??= new ReplyWriter();
    this.#deferred.protocol = this.reply.protocol;
    return this.#deferred;
  }

  /** Send what handlers wrote (when no command is halfway through its reply). */
  flush(): void {
    if (this.#busy) return;
    this.#write(this.reply.take());
  }

  #write(out: string | Buffer | undefined): void {
    if (out === undefined || this.conn.socket.destroyed) return;
    if (typeof out === 'string') this.conn.socket.write(out, 'latin1');
    else this.conn.socket.write(out);
  }

  /** Close once the replies written so far are sent (QUIT, a protocol error, a drain). */
  closeAfterReply(): void {
    this.#closing = true;
    if (!this.#busy) {
      this.flush();
      this.conn.socket.end();
    }
  }

  /** Close at once, dropping unsent output (CLIENT KILL, output buffer limits). */
  kill(): void {
    this.#closing = true;
    this.conn.socket.destroy();
  }

  /** Run the commands received, one at a time, as Redis does: each runs before the next is parsed. */
  #pump(): void {
    if (this.#busy) return;
    const socket = this.conn.socket;
    const mark = this.#host.outputHighWaterMark;
    while (!this.#closing) {
      // Backpressure: a client that pipelines without reading stops being read past the mark.
      if (this.reply.pending > mark || socket.writableLength > mark) {
        this.flush();
        if (socket.writableLength > mark) {
          this.#paused = true;
          socket.pause();
          return;
        }
      }
      let argv: Command | undefined;
      try {
        argv = this.#parser.next(this.#host.authRequired(this));
      } catch (error) {
        if (!(error instanceof ProtocolError)) throw error;
        this.reply.error(`ERR ${error.message}`);
        this.closeAfterReply();
        return;
      }
      if (argv === undefined) break;
      const pending = this.#host.execute(this, argv);
      if (pending !== undefined) {
        this.#write(this.reply.take()); // replies before this command go out now
        this.#busy = true;
        pending.then(
          () => this.#resume(),
          () => this.#resume(),
        );
        return;
      }
    }
    if (this.#closing) {
      this.flush();
      if (!socket.destroyed) socket.end();
      return;
    }
    flushSoon(this);
  }

  #resume(): void {
    this.#busy = false;
    this.flush();
    this.#write(this.#deferred?.take());
    if (this.#closing) {
      this.conn.socket.end();
      return;
    }
    this.#pump();
  }
}

// Replies are written once per event-loop turn, after every client that had input in that turn
// ran its commands, as Redis writes in beforeSleep: the peers are woken once per turn, not once
// per read, which is what keeps a loaded server's throughput up.
const toFlush = new Set<{ flush(): void }>();
let flushScheduled = false;

function flushSoon(client: { flush(): void }): void {
  toFlush.add(client);
  if (flushScheduled) return;
  flushScheduled = true;
  setImmediate(flushAll);
}

function flushAll(): void {
  flushScheduled = false;
  for (const client of toFlush) client.flush();
  toFlush.clear();
}

/** Encode a handler's result, or its error, as the command's reply. */
// biome-ignore lint/suspicious/noConfusingVoidType: a handler may return nothing
export function writeResult<C>(client: RespClient<C>, result: ReplyValue | undefined | void): void {
  if (result !== undefined) client.reply.value(result);
}

export function writeFailure<C>(
  client: RespClient<C>,
  error: unknown,
  command: string,
  log: (error: unknown, command: string) => void,
): void {
  if (error instanceof RespError) {
    client.reply.error(error.message);
    return;
  }
  log(error, command);
  client.reply.error(`ERR ${error instanceof Error ? error.message : String(error)}`);
}
