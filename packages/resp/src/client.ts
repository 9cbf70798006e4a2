import type { Socket } from 'node:net';
import type { Connection } from '@portbind/core';
import { ProtocolError } from './errors.js';
import { ARGUMENT_OVERHEAD, type Command, type RequestParser } from './parser.js';
import { type DoubleFormat, type ReplyValue, ReplyWriter, RespError } from './reply.js';
import type { TrackingState } from './tracking.js';

/** What a client needs from the server it belongs to. */
export interface ClientHost<Context> {
  execute(client: RespClient<Context>, argv: Command): void | Promise<void>;
  authRequired(client: RespClient<Context>): boolean;
  closed(client: RespClient<Context>): void;
  /** The client's query cost changed: check it against the limits (may kill the client). */
  accountQuery(client: RespClient<Context>): void;
  /** Destroy the socket unless the peer closes within the binding's closeWaitMs. */
  closeSoon(socket: Socket): void;
  readonly outputHighWaterMark: number;
  /** How replies print doubles, from the server version reported. */
  readonly doubleFormat: DoubleFormat;
  /** INFO's byte counters. */
  readonly stats: { netInputBytes: number; netOutputBytes: number };
}

/** What a closing client may still send (read and dropped) before the server stops reading it. */
const DISCARD_BUDGET = 64 * 1024;

/** What a parsed command costs while it waits (queued by MULTI): its bytes and its argument objects. */
export function commandCost(argv: Command): number {
  let bytes = 0;
  for (const arg of argv) bytes += arg.length + ARGUMENT_OVERHEAD;
  return bytes;
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
  #multi: Command[] | undefined;
  /** Bytes held by the commands MULTI queued ({@link commandCost}), counted against the query limits. */
  #multiCost = 0;
  /** @internal The query cost last counted into the adapter's total. */
  accountedQuery = 0;
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
  #ended = false;
  #paused = false;
  readonly #onData: (chunk: Buffer) => void;
  /** Pub/sub output over the soft limit since (ms), or 0. */
  softLimitSince = 0;
  /** In MONITOR mode: every command other clients run is sent here; keyspace commands are refused. */
  monitoring = false;
  /** CLIENT REPLY OFF: no reply is sent until CLIENT REPLY ON (pushes still are). */
  replyOff = false;
  /** CLIENT REPLY SKIP: the reply of the command now running is dropped. */
  replySkip = false;
  /** CLIENT REPLY SKIP was run: the next command's reply is dropped. */
  replySkipNext = false;
  /** CLIENT NO-EVICT ON: never closed to bring the input of all clients under totalQueryBufferLimit. */
  noEvict = false;
  /** CLIENT TRACKING state (undefined while tracking is off). */
  tracking: TrackingState | undefined = undefined;
  /** What CLIENT UNBLOCK calls while the running command is blocked ({@link RespClient.onUnblock}). */
  #unblock: (() => void) | undefined;
  /** CLIENT UNBLOCK … ERROR: the blocked command answers `-UNBLOCKED …` instead of its result. */
  #unblockError = false;
  /** The running (async) command's reply is dropped (CLIENT REPLY OFF or SKIP when it started). */
  #silenced = false;

  constructor(conn: Connection, host: ClientHost<Context>, parser: RequestParser, context: Context) {
    this.id = conn.id;
    this.conn = conn;
    this.#host = host;
    this.#parser = parser;
    this.context = context;
    this.reply.doubleFormat = host.doubleFormat;
    const socket = conn.socket;
    this.#onData = (chunk: Buffer) => {
      this.lastActivity = Date.now();
      host.stats.netInputBytes += chunk.length;
      this.#parser.push(chunk);
      this.#pump();
      host.accountQuery(this);
    };
    socket.on('data', this.#onData);
    socket.on('drain', () => {
      if (this.#paused) {
        this.#paused = false;
        socket.resume();
        this.#pump();
        host.accountQuery(this);
      }
    });
    socket.on('error', () => {});
    socket.once('close', () => host.closed(this));
  }

  /** Commands queued by MULTI, or undefined outside a transaction. */
  get multi(): Command[] | undefined {
    return this.#multi;
  }

  set multi(queue: Command[] | undefined) {
    this.#multi = queue;
    this.#multiCost = 0;
    for (const argv of queue ?? []) this.#multiCost += commandCost(argv);
  }

  /** Queue a command inside MULTI. */
  queue(argv: Command): void {
    if (this.#multi === undefined) this.multi = [];
    (this.#multi as Command[]).push(argv);
    this.#multiCost += commandCost(argv);
  }

  /**
   * What this client's input costs in memory right now: the command being received (its bytes
   * and, per argument, the objects that hold it) plus the commands queued by MULTI. Counted
   * against `queryBufferLimit` and, with every other client's, `totalQueryBufferLimit`.
   */
  get queryBytes(): number {
    return this.#closing ? 0 : this.#parser.cost + this.#multiCost;
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

  /** Redis's query buffer length while this client's command runs (see Parser.queryBufferLength). */
  get queryBufferBytes(): number {
    return this.#parser.queryBufferLength;
  }

  /** Bytes of the arguments of a command received in part (its bytes are parsed, it has not run). */
  get partialArgvBytes(): number {
    return this.#parser.partialArgvBytes;
  }

  /** Bytes held by the commands MULTI queued, their argument objects included. */
  get multiBytes(): number {
    return this.#multiCost;
  }

  /** True while a command of this client waits for its promise (a BLPOP, say): CLIENT LIST's `b`. */
  get blocked(): boolean {
    return this.#busy;
  }

  /** False while reading is paused for backpressure (CLIENT LIST's `events` without `r`). */
  get reading(): boolean {
    return !this.#paused && !this.#closing;
  }

  /** Send what handlers wrote at the end of this event-loop turn (with the other clients' replies). */
  flushLater(): void {
    flushSoon(this);
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
    this.#deferred.doubleFormat = this.reply.doubleFormat;
    return this.#deferred;
  }

  /**
   * @internal A pub/sub reply a command sends its own client (SUBSCRIBE's confirmations): as
   * Redis's CLIENT_PUSHING, it goes out even under CLIENT REPLY OFF or SKIP.
   */
  pushToSelf(write: (reply: ReplyWriter) => void): void {
    if (!this.replyOff && !this.replySkip) {
      write(this.reply);
      return;
    }
    // Silenced: what the command wrote before is dropped anyway (earlier replies went out when it started).
    this.reply.take();
    write(this.reply);
    this.#write(this.reply.take());
  }

  /** Send what handlers wrote (when no command is halfway through its reply). */
  flush(): void {
    if (this.#busy) return;
    this.#write(this.reply.take());
  }

  #write(out: string | Buffer | undefined): void {
    if (out === undefined || this.conn.socket.destroyed) return;
    this.#host.stats.netOutputBytes += out.length; // a string here is latin1: one char, one byte
    if (typeof out === 'string') this.conn.socket.write(out, 'latin1');
    else this.conn.socket.write(out);
  }

  /**
   * Close once the replies written so far are sent (QUIT, a protocol error, a drain): nothing
   * more is run, at most 64 KiB more is read (and dropped) before reading stops, the replies go
   * out, the connection is ended, and destroyed if the peer has not closed within closeWaitMs.
   */
  closeAfterReply(): void {
    if (!this.#closing) this.#stopReading();
    if (!this.#busy) this.#end();
  }

  /** Close at once, dropping unsent output (CLIENT KILL, output buffer and query buffer limits). */
  kill(): void {
    if (!this.#closing) this.#stopReading();
    this.conn.socket.destroy();
  }

  #stopReading(): void {
    this.#closing = true;
    this.#parser.discard();
    this.#multi = undefined;
    this.#multiCost = 0;
    const socket = this.conn.socket;
    // Read on a little, into nothing, so that a peer which closes at once (redis-cli after QUIT,
    // a client seeing the end of a drain) is seen closing at once. A peer that keeps writing is
    // no longer read past DISCARD_BUDGET: the socket is paused, the kernel's receive window
    // closes, and the connection is destroyed closeWaitMs after the reply (as Redis resets it).
    socket.off('data', this.#onData);
    let discarded = 0;
    const discard = (chunk: Buffer): void => {
      discarded += chunk.length;
      if (discarded <= DISCARD_BUDGET) return;
      socket.off('data', discard);
      socket.pause();
    };
    socket.on('data', discard);
    if (this.#paused) {
      this.#paused = false;
      socket.resume();
    }
    this.#host.accountQuery(this);
  }

  /** Send what is left, end the connection and give the peer closeWaitMs to close its side. */
  #end(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.flush();
    this.#write(this.#deferred?.take());
    const socket = this.conn.socket;
    if (socket.destroyed) return;
    socket.end();
    this.#host.closeSoon(socket);
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
        // Under CLIENT REPLY OFF/SKIP Redis sends no error either (it closes; 7.0.15 even leaves the socket open).
        if (!this.replyOff && !this.replySkip) this.reply.error(`ERR ${error.message}`);
        this.closeAfterReply();
        return;
      }
      if (argv === undefined) break;
      // CLIENT REPLY OFF/SKIP: what earlier commands wrote goes out, what this one writes is dropped.
      const silenced = this.replyOff || this.replySkip;
      if (silenced) this.#write(this.reply.take());
      const pending = this.#host.execute(this, argv);
      if (pending !== undefined) {
        const out = this.reply.take(); // replies before this command go out now
        if (!silenced) this.#write(out);
        this.#silenced = silenced;
        this.#busy = true;
        pending.then(
          () => this.#resume(),
          () => this.#resume(),
        );
        return;
      }
      this.#replied(silenced);
    }
    if (this.#closing) {
      this.#end();
      return;
    }
    flushSoon(this);
  }

  /**
   * After a command: drop its reply if replies were off when it started and still are (CLIENT
   * REPLY ON answers; OFF and SKIP are silent), and let SKIP take effect for the next command only
   * (networking.c, resetClient).
   */
  #replied(silenced: boolean): void {
    if (silenced && (this.replyOff || this.replySkip)) this.reply.take();
    this.replySkip = this.replySkipNext;
    this.replySkipNext = false;
  }

  /**
   * For a blocking command (a handler whose promise waits for data, BLPOP-style): `callback` is
   * what CLIENT UNBLOCK calls while this command waits. It must make the handler settle as on its
   * timeout (a BLPOP resolves with null); with `CLIENT UNBLOCK id ERROR` the adapter then answers
   * `-UNBLOCKED client unblocked via CLIENT UNBLOCK` instead. Forgotten when the command finishes;
   * a blocked command that registered nothing is not unblockable (CLIENT UNBLOCK answers 0). A
   * command served by another client's write (an LPUSH) calls `onUnblock(undefined)` as it takes
   * its element: its promise settles only after the writer's turn, and a CLIENT UNBLOCK pipelined
   * behind that LPUSH must find it no longer blocked (Redis serves blocked clients after each command).
   */
  onUnblock(callback: (() => void) | undefined): void {
    this.#unblock = callback;
  }

  /** @internal CLIENT UNBLOCK: false if this client is not in an unblockable command. */
  unblock(error: boolean): boolean {
    const callback = this.#unblock;
    if (!this.#busy || callback === undefined || this.#closing) return false;
    this.#unblock = undefined;
    this.#unblockError = error;
    // With ERROR, what the handler writes as it stops waiting is dropped: the error is its reply.
    const checkpoint = error ? this.reply.checkpoint() : 0;
    callback();
    if (error) this.reply.rollback(checkpoint);
    return true;
  }

  /** @internal When the blocked command settles: whether CLIENT UNBLOCK … ERROR replaces its reply. */
  takeUnblockError(): boolean {
    const error = this.#unblockError;
    this.#unblockError = false;
    this.#unblock = undefined;
    return error;
  }

  #resume(): void {
    this.#busy = false;
    this.#unblock = undefined;
    this.#unblockError = false;
    this.#replied(this.#silenced);
    this.#silenced = false;
    if (this.#closing) {
      this.#end();
      return;
    }
    this.flush();
    this.#write(this.#deferred?.take());
    this.#pump();
    this.#host.accountQuery(this);
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
