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

/** The client a socket serves: the socket listeners are shared by all clients, not closures per client. */
const CLIENT = Symbol('respClient');
type ClientSocket = Socket & { [CLIENT]?: RespClient<unknown> };
const ignore = (): void => {};

// Boolean state, as bits of one number (one field, not one per flag).
const BUSY = 1;
const CLOSING = 2;
const ENDED = 4;
const PAUSED = 8;
const UNBLOCK_ERROR = 16;
const SILENCED = 32;
const MULTI_DIRTY = 64;
const WATCH_DIRTY = 128;
const MONITORING = 256;
const REPLY_OFF = 512;
const REPLY_SKIP = 1024;
const REPLY_SKIP_NEXT = 2048;
const NO_EVICT = 4096;
const DRAIN_LISTENER = 8192;

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
  readonly conn: Connection;
  #context: Context | undefined;
  /** Selected database (SELECT). */
  db = 0;
  /** Authenticated user, or undefined. */
  user: string | undefined;
  /** @internal The query cost last counted into the adapter's total. */
  accountedQuery = 0;
  /** The last command's name, for CLIENT LIST. */
  lastCommand = 'NULL';
  lastActivity = Date.now();
  readonly #host: ClientHost<Context>;
  readonly #parser: RequestParser;
  /** Made at the first reply: an idle client has none. */
  #reply: ReplyWriter | undefined;
  /** BUSY, CLOSING, … (the constants above). */
  #flags = 0;
  /** What most clients never use (names, subscriptions, MULTI, tracking…), made on first use. */
  #rare: RareState | undefined;

  /** `context`: the application's per-connection data, or undefined to make `{}` on first use. */
  constructor(conn: Connection, host: ClientHost<Context>, parser: RequestParser, context?: Context) {
    this.conn = conn;
    this.#host = host;
    this.#parser = parser;
    this.#context = context;
    const socket = conn.socket as ClientSocket;
    socket[CLIENT] = this as RespClient<unknown>;
    socket.on('data', RespClient.#onData);
    if (socket.listenerCount('error') === 0) socket.on('error', ignore);
    socket.on('close', RespClient.#onClose); // 'close' comes once
  }

  // The socket listeners, shared by every client (`this` is the socket).
  static #onData(this: ClientSocket, chunk: Buffer): void {
    // biome-ignore lint/complexity/noThisInStatic: an EventEmitter listener: `this` is the socket
    const client = this[CLIENT] as RespClient<unknown>;
    client.lastActivity = Date.now();
    client.#host.stats.netInputBytes += chunk.length;
    client.#parser.push(chunk);
    client.#pump();
    client.#host.accountQuery(client);
  }

  static #onDrain(this: ClientSocket): void {
    // biome-ignore lint/complexity/noThisInStatic: an EventEmitter listener: `this` is the socket
    const client = this[CLIENT] as RespClient<unknown>;
    if ((client.#flags & PAUSED) === 0) return;
    client.#flags &= ~PAUSED;
    client.conn.socket.resume();
    client.#pump();
    client.#host.accountQuery(client);
  }

  static #onClose(this: ClientSocket): void {
    // biome-ignore lint/complexity/noThisInStatic: an EventEmitter listener: `this` is the socket
    const client = this[CLIENT] as RespClient<unknown>;
    client.#host.closed(client);
  }

  /** The application's per-connection data (`{}` unless the adapter's `context` option made it). */
  get context(): Context {
    if (this.#context === undefined) this.#context = {} as Context;
    return this.#context;
  }

  set context(context: Context) {
    this.#context = context;
  }

  #more(): RareState {
    if (this.#rare === undefined) this.#rare = new RareState();
    return this.#rare;
  }

  /** Where handlers write replies. */
  get reply(): ReplyWriter {
    return this.#reply ?? this.#newReply();
  }

  #newReply(): ReplyWriter {
    const reply = new ReplyWriter();
    reply.doubleFormat = this.#host.doubleFormat;
    this.#reply = reply;
    return reply;
  }

  /** CLIENT SETNAME / HELLO SETNAME ('' when none). */
  get name(): string {
    return this.#rare?.name ?? '';
  }

  set name(name: string) {
    if (name !== '' || this.#rare !== undefined) this.#more().name = name;
  }

  /** CLIENT SETINFO LIB-NAME. */
  get libName(): string {
    return this.#rare?.libName ?? '';
  }

  set libName(name: string) {
    if (name !== '' || this.#rare !== undefined) this.#more().libName = name;
  }

  /** CLIENT SETINFO LIB-VER. */
  get libVersion(): string {
    return this.#rare?.libVersion ?? '';
  }

  set libVersion(version: string) {
    if (version !== '' || this.#rare !== undefined) this.#more().libVersion = version;
  }

  /** Pub/sub output over the soft limit since (ms), or 0. */
  get softLimitSince(): number {
    return this.#rare?.softLimitSince ?? 0;
  }

  set softLimitSince(since: number) {
    if (since !== 0 || this.#rare !== undefined) this.#more().softLimitSince = since;
  }

  /** CLIENT TRACKING state (undefined while tracking is off). */
  get tracking(): TrackingState | undefined {
    return this.#rare?.tracking;
  }

  set tracking(state: TrackingState | undefined) {
    if (state !== undefined || this.#rare !== undefined) this.#more().tracking = state;
  }

  #flag(bit: number, on: boolean): void {
    if (on) this.#flags |= bit;
    else this.#flags &= ~bit;
  }

  /** Unique in the process, increasing (CLIENT ID). */
  get id(): number {
    return this.conn.id;
  }

  /** Channels this client is subscribed to (SUBSCRIBE). */
  get channels(): Set<string> {
    const rare = this.#more();
    if (rare.channels === undefined) rare.channels = new Set();
    return rare.channels;
  }

  /** Patterns this client is subscribed to (PSUBSCRIBE). */
  get patterns(): Set<string> {
    const rare = this.#more();
    if (rare.patterns === undefined) rare.patterns = new Set();
    return rare.patterns;
  }

  /** How many channels this client is subscribed to (without making the set). */
  get channelCount(): number {
    return this.#rare?.channels?.size ?? 0;
  }

  /** How many patterns this client is subscribed to (without making the set). */
  get patternCount(): number {
    return this.#rare?.patterns?.size ?? 0;
  }

  /** @internal Watched keys as `${db}\0${key}`; read them with {@link RespClient.watchedKeys}. */
  get watched(): Set<string> {
    const rare = this.#more();
    if (rare.watched === undefined) rare.watched = new Set();
    return rare.watched;
  }

  /** How many keys this client WATCHes. */
  get watchCount(): number {
    return this.#rare?.watched?.size ?? 0;
  }

  /** A command inside MULTI failed to queue: EXEC will answer EXECABORT. */
  get multiDirty(): boolean {
    return (this.#flags & MULTI_DIRTY) !== 0;
  }

  set multiDirty(on: boolean) {
    this.#flag(MULTI_DIRTY, on);
  }

  /** A watched key changed: EXEC will answer a null array. */
  get watchDirty(): boolean {
    return (this.#flags & WATCH_DIRTY) !== 0;
  }

  set watchDirty(on: boolean) {
    this.#flag(WATCH_DIRTY, on);
  }

  /** In MONITOR mode: every command other clients run is sent here; keyspace commands are refused. */
  get monitoring(): boolean {
    return (this.#flags & MONITORING) !== 0;
  }

  set monitoring(on: boolean) {
    this.#flag(MONITORING, on);
  }

  /** CLIENT REPLY OFF: no reply is sent until CLIENT REPLY ON (pushes still are). */
  get replyOff(): boolean {
    return (this.#flags & REPLY_OFF) !== 0;
  }

  set replyOff(on: boolean) {
    this.#flag(REPLY_OFF, on);
  }

  /** CLIENT REPLY SKIP: the reply of the command now running is dropped. */
  get replySkip(): boolean {
    return (this.#flags & REPLY_SKIP) !== 0;
  }

  set replySkip(on: boolean) {
    this.#flag(REPLY_SKIP, on);
  }

  /** CLIENT REPLY SKIP was run: the next command's reply is dropped. */
  get replySkipNext(): boolean {
    return (this.#flags & REPLY_SKIP_NEXT) !== 0;
  }

  set replySkipNext(on: boolean) {
    this.#flag(REPLY_SKIP_NEXT, on);
  }

  /** CLIENT NO-EVICT ON: never closed to bring the input of all clients under totalQueryBufferLimit. */
  get noEvict(): boolean {
    return (this.#flags & NO_EVICT) !== 0;
  }

  set noEvict(on: boolean) {
    this.#flag(NO_EVICT, on);
  }

  /** Commands queued by MULTI, or undefined outside a transaction. */
  get multi(): Command[] | undefined {
    return this.#rare?.multi;
  }

  set multi(queue: Command[] | undefined) {
    if (queue === undefined && this.#rare === undefined) return;
    const rare = this.#more();
    rare.multi = queue;
    rare.multiCost = 0;
    for (const argv of queue ?? []) rare.multiCost += commandCost(argv);
  }

  /** Queue a command inside MULTI. */
  queue(argv: Command): void {
    if (this.#rare?.multi === undefined) this.multi = [];
    const rare = this.#rare as RareState;
    (rare.multi as Command[]).push(argv);
    rare.multiCost += commandCost(argv);
  }

  /**
   * What this client's input costs in memory right now: the command being received (its bytes
   * and, per argument, the objects that hold it) plus the commands queued by MULTI. Counted
   * against `queryBufferLimit` and, with every other client's, `totalQueryBufferLimit`.
   */
  get queryBytes(): number {
    return (this.#flags & CLOSING) !== 0 ? 0 : this.#parser.cost + (this.#rare?.multiCost ?? 0);
  }

  /** The protocol version negotiated with HELLO (2 until then). */
  get protocol(): 2 | 3 {
    return this.#reply?.protocol ?? 2;
  }

  /** The keys this client WATCHes, as [db, key] pairs. */
  watchedKeys(): Array<[db: number, key: string]> {
    return [...(this.#rare?.watched ?? [])].map((id) => {
      const split = id.indexOf('\u0000');
      return [Number(id.slice(0, split)), id.slice(split + 1)];
    });
  }

  /** True while subscribed to a channel or a pattern. */
  get subscribed(): boolean {
    return this.channelCount + this.patternCount > 0;
  }

  /** True while closing: no more commands run. */
  get closing(): boolean {
    return (this.#flags & CLOSING) !== 0;
  }

  /** Bytes waiting to go out to this client (replies written, socket buffer). */
  get outputBytes(): number {
    return (this.#reply?.pending ?? 0) + this.conn.socket.writableLength;
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
    return this.#rare?.multiCost ?? 0;
  }

  /** True while a command of this client waits for its promise (a BLPOP, say): CLIENT LIST's `b`. */
  get blocked(): boolean {
    return (this.#flags & BUSY) !== 0;
  }

  /** False while reading is paused for backpressure (CLIENT LIST's `events` without `r`). */
  get reading(): boolean {
    return (this.#flags & (PAUSED | CLOSING)) === 0;
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
    if ((this.#flags & BUSY) === 0) return this.reply;
    const rare = this.#more();
    rare.deferred ??= new ReplyWriter();
    rare.deferred.protocol = this.reply.protocol;
    rare.deferred.doubleFormat = this.reply.doubleFormat;
    return rare.deferred;
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
    if ((this.#flags & BUSY) !== 0 || this.#reply === undefined) return;
    this.#write(this.#reply.take());
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
    if ((this.#flags & CLOSING) === 0) this.#stopReading();
    if ((this.#flags & BUSY) === 0) this.#end();
  }

  /** Close at once, dropping unsent output (CLIENT KILL, output buffer and query buffer limits). */
  kill(): void {
    if ((this.#flags & CLOSING) === 0) this.#stopReading();
    this.conn.socket.destroy();
  }

  #stopReading(): void {
    this.#flags |= CLOSING;
    this.#parser.discard();
    if (this.#rare !== undefined) {
      this.#rare.multi = undefined;
      this.#rare.multiCost = 0;
    }
    const socket = this.conn.socket;
    // Read on a little, into nothing, so that a peer which closes at once (redis-cli after QUIT,
    // a client seeing the end of a drain) is seen closing at once. A peer that keeps writing is
    // no longer read past DISCARD_BUDGET: the socket is paused, the kernel's receive window
    // closes, and the connection is destroyed closeWaitMs after the reply (as Redis resets it).
    socket.off('data', RespClient.#onData);
    let discarded = 0;
    const discard = (chunk: Buffer): void => {
      discarded += chunk.length;
      if (discarded <= DISCARD_BUDGET) return;
      socket.off('data', discard);
      socket.pause();
    };
    socket.on('data', discard);
    if ((this.#flags & PAUSED) !== 0) {
      this.#flags &= ~PAUSED;
      socket.resume();
    }
    this.#host.accountQuery(this);
  }

  /** Send what is left, end the connection and give the peer closeWaitMs to close its side. */
  #end(): void {
    if ((this.#flags & ENDED) !== 0) return;
    this.#flags |= ENDED;
    this.flush();
    this.#write(this.#rare?.deferred?.take());
    const socket = this.conn.socket;
    if (socket.destroyed) return;
    socket.end();
    this.#host.closeSoon(socket);
  }

  /** Run the commands received, one at a time, as Redis does: each runs before the next is parsed. */
  #pump(): void {
    if ((this.#flags & BUSY) !== 0) return;
    const socket = this.conn.socket;
    const mark = this.#host.outputHighWaterMark;
    while ((this.#flags & CLOSING) === 0) {
      // Backpressure: a client that pipelines without reading stops being read past the mark.
      if ((this.#reply?.pending ?? 0) > mark || socket.writableLength > mark) {
        this.flush();
        if (socket.writableLength > mark) {
          this.#flags |= PAUSED;
          socket.pause();
          // The drain listener is only needed once a client was paused: most never are.
          if ((this.#flags & DRAIN_LISTENER) === 0) {
            this.#flags |= DRAIN_LISTENER;
            socket.on('drain', RespClient.#onDrain);
          }
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
        this.#flag(SILENCED, silenced);
        this.#flags |= BUSY;
        pending.then(
          () => this.#resume(),
          () => this.#resume(),
        );
        return;
      }
      this.#replied(silenced);
    }
    if ((this.#flags & CLOSING) !== 0) {
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
    if (callback !== undefined || this.#rare !== undefined) this.#more().unblock = callback;
  }

  /** @internal CLIENT UNBLOCK: false if this client is not in an unblockable command. */
  unblock(error: boolean): boolean {
    const callback = this.#rare?.unblock;
    if ((this.#flags & BUSY) === 0 || callback === undefined || (this.#flags & CLOSING) !== 0) return false;
    if (this.#rare !== undefined) this.#rare.unblock = undefined;
    this.#flag(UNBLOCK_ERROR, error);
    // With ERROR, what the handler writes as it stops waiting is dropped: the error is its reply.
    const checkpoint = error ? this.reply.checkpoint() : 0;
    callback();
    if (error) this.reply.rollback(checkpoint);
    return true;
  }

  /** @internal When the blocked command settles: whether CLIENT UNBLOCK … ERROR replaces its reply. */
  takeUnblockError(): boolean {
    const error = (this.#flags & UNBLOCK_ERROR) !== 0;
    this.#flags &= ~UNBLOCK_ERROR;
    if (this.#rare !== undefined) this.#rare.unblock = undefined;
    return error;
  }

  #resume(): void {
    const silenced = (this.#flags & SILENCED) !== 0;
    this.#flags &= ~(BUSY | UNBLOCK_ERROR | SILENCED);
    if (this.#rare !== undefined) this.#rare.unblock = undefined;
    this.#replied(silenced);
    if ((this.#flags & CLOSING) !== 0) {
      this.#end();
      return;
    }
    this.flush();
    this.#write(this.#rare?.deferred?.take());
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

/** A client's state that most clients never use, in one object made on first use. */
class RareState {
  name = '';
  libName = '';
  libVersion = '';
  softLimitSince = 0;
  tracking: TrackingState | undefined = undefined;
  channels: Set<string> | undefined = undefined;
  patterns: Set<string> | undefined = undefined;
  /** Watched keys as `${db}\0${key}`. */
  watched: Set<string> | undefined = undefined;
  multi: Command[] | undefined = undefined;
  /** Bytes held by the commands MULTI queued ({@link commandCost}), counted against the query limits. */
  multiCost = 0;
  /** Pushes written while a command runs, sent after its reply. */
  deferred: ReplyWriter | undefined = undefined;
  /** What CLIENT UNBLOCK calls while the running command is blocked ({@link RespClient.onUnblock}). */
  unblock: (() => void) | undefined = undefined;
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
