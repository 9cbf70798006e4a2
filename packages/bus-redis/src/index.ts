import {
  type AppendOptions,
  type Bus,
  type BusEntry,
  BusEventEmitter,
  type BusEventName,
  type BusEvents,
  type BusListener,
  type BusPresence,
  type BusStream,
  type BusSubscription,
  type BusValues,
  busBytes,
  ConfigError,
  type Logger,
  memoryBus,
  newBusId,
  PortbindError,
  silentLogger,
} from '@portbind/core';
import { Redis } from 'ioredis';

// @portbind/bus-redis: the bus between portbind processes on a real Redis (issue 12). Two
// connections: commands (PUBLISH, streams, presence) and a subscriber; one more per stream read that
// blocks. Names are byte strings (latin1) on the wire, so Redis's glob patterns match as in memoryBus.

export const BUS_REDIS_VERSION = '0.1.0';

export interface RedisBusOptions {
  /** `redis://[user:password@]host:port[/db]` or `rediss://…` (TLS). */
  url: string;
  /** Where the bus says what happens to its connection (lost, back, resubscribed). Default: silent. */
  logger?: Logger;
  /** Longest pause between reconnection attempts. Default 1 000 ms (attempt n waits min(n × 50, this)). */
  maxReconnectDelayMs?: number;
}

/** The engine could not be reached: the operation did not happen. */
export class BusUnavailableError extends PortbindError {
  constructor(what: string) {
    super('PB_ERR_BUS_UNAVAILABLE', `${what}: the bus's Redis is not reachable right now`);
  }
}

const FIELD = Buffer.from('d');

function bytes(name: string): Buffer {
  return Buffer.from(name, 'latin1');
}

function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Stream entries as XREADGROUP / XAUTOCLAIM give them: [[id, [field, value, …]], …]; deleted ones have null fields. */
function toEntries(items: unknown, redelivered: boolean): BusEntry[] {
  if (!Array.isArray(items)) return [];
  const out: BusEntry[] = [];
  for (const item of items) {
    if (!Array.isArray(item)) continue;
    const [id, fields] = item as [unknown, unknown];
    if (!Array.isArray(fields)) continue;
    let data: Buffer | undefined;
    for (let i = 0; i + 1 < fields.length; i += 2) if (FIELD.equals(fields[i] as Buffer)) data = fields[i + 1] as Buffer;
    out.push({ id: String(id), data: data ?? Buffer.alloc(0), redelivered });
  }
  return out;
}

class RedisStream implements BusStream {
  readonly name: string;
  readonly #bus: RedisBus;
  readonly #key: Buffer;

  constructor(bus: RedisBus, name: string) {
    this.#bus = bus;
    this.name = name;
    this.#key = bytes(name);
  }

  async append(data: Buffer | string, options?: AppendOptions): Promise<string> {
    const trim = options?.maxLength === undefined ? [] : ['MAXLEN', '~', String(options.maxLength)];
    const ttlMs = options?.ttlMs;
    if (ttlMs === undefined) return String(await this.#bus.call('XADD', this.#key, ...trim, '*', FIELD, busBytes(data)));
    if (!(ttlMs > 0)) throw new RangeError('append ttlMs must be more than 0');
    // One round trip, in one transaction: the entry and the stream's new lifetime.
    this.#bus.batch();
    const transaction = this.#bus.commands
      .multi()
      .call('XADD', this.#key, ...trim, '*', FIELD, busBytes(data))
      .call('PEXPIRE', this.#key, String(Math.ceil(ttlMs)));
    const results = await this.#bus.track(transaction.exec());
    const first = results?.[0];
    if (first === undefined) throw new BusUnavailableError('append (transaction discarded)');
    if (first[0] !== null) throw first[0];
    return String(first[1]);
  }

  async entries(options?: { after?: string; count?: number }): Promise<BusEntry[]> {
    const start = options?.after === undefined ? '-' : `(${options.after}`;
    const reply = await this.#bus.callBuffer('XRANGE', this.#key, start, '+', 'COUNT', String(options?.count ?? 100));
    return toEntries(reply, false);
  }

  async delete(): Promise<void> {
    await this.#bus.call('DEL', this.#key);
  }

  async trim(minId: string): Promise<number> {
    return Number(await this.#bus.call('XTRIM', this.#key, 'MINID', minId));
  }

  async createGroup(group: string, from: 'start' | 'end' = 'end'): Promise<void> {
    try {
      await this.#bus.call('XGROUP', 'CREATE', this.#key, bytes(group), from === 'start' ? '0' : '$', 'MKSTREAM');
    } catch (error) {
      if (!errorText(error).startsWith('BUSYGROUP')) throw error;
    }
    this.#bus.knownGroups.add(`${this.name}\0${group}`);
  }

  /** Run `op`; a group missing (NOGROUP) is created from the start and `op` retried, and signalled as lost if it existed before. */
  async #withGroup<T>(group: string, op: () => Promise<T>): Promise<T> {
    try {
      const result = await op();
      this.#bus.knownGroups.add(`${this.name}\0${group}`);
      return result;
    } catch (error) {
      if (!errorText(error).startsWith('NOGROUP')) throw error;
      if (this.#bus.knownGroups.has(`${this.name}\0${group}`)) {
        const now = Date.now();
        this.#bus.lost(
          'stream',
          `group ${group} of stream ${this.name} vanished (Redis lost its data): entries not yet read may be gone`,
          now,
          now,
          [this.name],
        );
      }
      await this.createGroup(group, 'start');
      return op();
    }
  }

  async read(group: string, consumer: string, options?: { count?: number; blockMs?: number }): Promise<BusEntry[]> {
    const count = String(options?.count ?? 100);
    const blockMs = options?.blockMs ?? 0;
    const args = ['GROUP', bytes(group), bytes(consumer), 'COUNT', count, 'STREAMS', this.#key, '>'];
    // A blocked read holds its connection: its own (re-sent by ioredis after a reconnection, as it only reads).
    const reply = await this.#withGroup(group, () =>
      blockMs > 0
        ? this.#bus.blocker(this).callBuffer('XREADGROUP', ...args.slice(0, 5), 'BLOCK', String(blockMs), ...args.slice(5))
        : this.#bus.callBuffer('XREADGROUP', ...args),
    );
    if (!Array.isArray(reply) || reply.length === 0) return [];
    // [[key, entries]] as Redis sends it; ioredis 6 unwraps a single stream's to [key, entries].
    const first = reply[0] as unknown;
    return toEntries(Array.isArray(first) ? first[1] : reply[1], false);
  }

  async claim(group: string, consumer: string, minIdleMs: number, count = 100): Promise<BusEntry[]> {
    const reply = await this.#withGroup(group, () =>
      this.#bus.callBuffer(
        'XAUTOCLAIM',
        this.#key,
        bytes(group),
        bytes(consumer),
        String(Math.max(0, Math.floor(minIdleMs))),
        '0-0',
        'COUNT',
        String(count),
      ),
    );
    return Array.isArray(reply) ? toEntries(reply[1], true) : [];
  }

  async ack(group: string, ids: readonly string[]): Promise<number> {
    if (ids.length === 0) return 0;
    return Number(await this.#bus.call('XACK', this.#key, bytes(group), ...ids));
  }

  async pending(group: string): Promise<number> {
    try {
      const reply = await this.#bus.call('XPENDING', this.#key, bytes(group));
      return Array.isArray(reply) ? Number(reply[0]) : 0;
    } catch (error) {
      if (errorText(error).startsWith('NOGROUP')) return 0;
      throw error;
    }
  }

  async length(): Promise<number> {
    return Number(await this.#bus.call('XLEN', this.#key));
  }
}

interface Owned {
  value: string;
  ttlMs: number;
  /** A claim: refreshed only while it is still this process's value. */
  claim?: boolean;
}

/** A claim's heartbeat: 1 refreshed, 2 written again (it had expired), 0 another process holds it. */
const REFRESH_CLAIM = `local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if v then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 2`;
/** Release a claim only if it is still this process's value. */
const RELEASE_CLAIM = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

/** Keys refreshed per pipeline by the heartbeat. */
const HEARTBEAT_BATCH = 1000;

class RedisBus implements Bus {
  readonly id = newBusId();
  readonly commands: Redis;
  readonly #subscriber: Redis;
  readonly #blockers = new Map<string, Redis>();
  /** Stream groups (`stream\0group`) this bus saw exist: one missing later was lost with Redis's data. */
  readonly knownGroups = new Set<string>();
  readonly #events = new BusEventEmitter();
  readonly #logger: Logger;
  readonly #channels = new Map<string, Set<BusListener>>();
  readonly #patterns = new Map<string, Set<BusListener>>();
  readonly #owned = new Map<string, Owned>();
  /** Claims another process took (key → this process's value): `delete` must not remove the other's. */
  readonly #lostClaims = new Map<string, string>();
  readonly #options: RedisBusOptions;
  #closed = false;
  /** When the subscriber connection went down (0 while up). */
  #downSince = 0;
  #everReady = false;
  readonly presence: BusPresence;
  readonly values: BusValues;

  constructor(options: RedisBusOptions) {
    this.#options = options;
    this.#logger = options.logger ?? silentLogger;
    // A command in flight when the connection broke may or may not have run: its caller gets an error
    // (a PUBLISH re-sent after the others resubscribed would arrive late, or twice), never a silent re-send.
    // ioredis drops such commands without settling them: #track rejects them on 'close'.
    this.commands = this.#connect('commands', { autoResendUnfulfilledCommands: false });
    this.commands.on('ready', () => {
      // The offline queue is sent now: from here on those commands are in flight too.
      for (const pending of this.#pendingCommands) pending.sent = true;
    });
    this.commands.on('close', () => {
      for (const pending of [...this.#pendingCommands]) {
        if (!pending.sent) continue;
        this.#pendingCommands.delete(pending);
        pending.reject(new BusUnavailableError('a command interrupted (it may or may not have run)'));
      }
    });
    // ioredis's autoResubscribe re-sends SUBSCRIBE/PSUBSCRIBE but tells nobody: the bus resubscribes
    // itself on 'ready', so that it can say so (resubscribed) and name what may have been lost.
    this.#subscriber = this.#connect('subscriber', { autoResubscribe: false });
    this.#subscriber.on('messageBuffer', (channel: Buffer, data: Buffer) =>
      this.#deliver(this.#channels, channel.toString('latin1'), undefined, data),
    );
    this.#subscriber.on('pmessageBuffer', (pattern: Buffer, channel: Buffer, data: Buffer) =>
      this.#deliver(this.#patterns, channel.toString('latin1'), pattern.toString('latin1'), data),
    );
    this.#subscriber.on('ready', () => void this.#onReady());
    this.#subscriber.on('close', () => this.#onClose());
    this.presence = this.#makePresence();
    this.values = {
      set: async (key, value, { ttlMs }) => {
        if (!(ttlMs > 0)) throw new RangeError('values ttlMs must be more than 0');
        await this.call('SET', bytes(key), value, 'PX', String(Math.ceil(ttlMs)));
      },
      get: async (key) => {
        const value = await this.callBuffer('GET', bytes(key));
        return Buffer.isBuffer(value) ? value.toString() : undefined;
      },
      delete: async (key) => {
        await this.call('DEL', bytes(key));
      },
    };
  }

  /** Commands on the commands connection not yet answered; `sent` once written to a ready connection. */
  readonly #pendingCommands = new Set<{ sent: boolean; reject: (error: Error) => void }>();

  track<T>(promise: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const pending = { sent: this.commands.status === 'ready', reject };
      this.#pendingCommands.add(pending);
      promise.then(
        (value) => {
          if (this.#pendingCommands.delete(pending)) resolve(value);
        },
        (error: unknown) => {
          if (this.#pendingCommands.delete(pending)) reject(error);
        },
      );
    });
  }

  /** A command on the commands connection (rejected if the connection breaks while it is in flight). */
  call(command: string, ...args: Array<string | Buffer>): Promise<unknown> {
    this.batch();
    return this.track(this.commands.call(command, ...args));
  }

  callBuffer(command: string, ...args: Array<string | Buffer>): Promise<unknown> {
    this.batch();
    return this.track(this.commands.callBuffer(command, ...args));
  }

  #corked = false;

  /**
   * The commands of one turn of the event loop leave in one write: the socket is corked at the first
   * and uncorked after the turn (an XMPP process appends to streams for every stanza it routes: one
   * syscall each otherwise). ioredis's own auto-pipelining would do it, but in ioredis 6 it loses the
   * command name of `call()`.
   */
  batch(): void {
    if (this.#corked) return;
    const socket = (this.commands as unknown as { stream?: { cork?: () => void; uncork?: () => void; writable?: boolean } }).stream;
    if (socket?.cork === undefined || socket.writable !== true) return;
    socket.cork();
    this.#corked = true;
    process.nextTick(() => {
      this.#corked = false;
      socket.uncork?.();
    });
  }

  #connect(role: string, extra: { autoResubscribe?: boolean; autoResendUnfulfilledCommands?: boolean }): Redis {
    const maxDelay = this.#options.maxReconnectDelayMs ?? 1000;
    const connection = new Redis(this.#options.url, {
      ...extra,
      connectionName: `portbind-bus-${this.id}-${role}`,
      retryStrategy: (times) => Math.min(times * 50, maxDelay),
      // Commands wait for the connection while it comes back, but not forever.
      maxRetriesPerRequest: 20,
      lazyConnect: false,
    });
    connection.on('error', (error: Error) => {
      if (!this.#closed) this.#logger.debug({ err: error, role }, 'bus: Redis connection error');
    });
    return connection;
  }

  get connected(): boolean {
    return !this.#closed && this.#subscriber.status === 'ready' && this.commands.status === 'ready';
  }

  on<E extends BusEventName>(event: E, listener: (info: BusEvents[E]) => void): () => void {
    return this.#events.on(event, listener);
  }

  lost(kind: BusEvents['lost']['kind'], reason: string, since: number, until: number, names: readonly string[]): void {
    this.#logger.warn({ kind, names: names.slice(0, 20), count: names.length, since, until }, `bus: delivery not guaranteed: ${reason}`);
    this.#events.emit('lost', { kind, reason, since, until, names });
  }

  #onClose(): void {
    if (this.#closed || this.#downSince !== 0 || !this.#everReady) return;
    this.#downSince = Date.now();
    this.#logger.warn(
      { url: redactedUrl(this.#options.url) },
      "bus: connection to Redis lost; messages from other processes stop until it's back",
    );
    this.#events.emit('disconnected', { at: this.#downSince, error: undefined });
  }

  async #onReady(): Promise<void> {
    if (this.#closed) return;
    const now = Date.now();
    if (!this.#everReady) {
      this.#everReady = true;
      this.#events.emit('connected', { at: now });
      return;
    }
    const since = this.#downSince || now;
    this.#downSince = 0;
    this.#events.emit('connected', { at: now });
    const channels = [...this.#channels.keys()];
    const patterns = [...this.#patterns.keys()];
    try {
      if (channels.length > 0) await this.#subscriber.subscribe(...channels.map(bytes));
      if (patterns.length > 0) await this.#patternCalls.psubscribe(...patterns.map(bytes));
    } catch (error) {
      // The connection broke again: the next 'ready' tries again.
      this.#logger.warn({ err: error }, 'bus: resubscription failed, retrying on the next connection');
      this.#downSince = since;
      return;
    }
    if (channels.length + patterns.length > 0)
      this.lost('pubsub', 'messages published while the connection to Redis was down did not arrive', since, Date.now(), [
        ...channels,
        ...patterns,
      ]);
    this.#logger.info(
      { channels: channels.length, patterns: patterns.length, downMs: Date.now() - since },
      'bus: Redis is back, resubscribed',
    );
    this.#events.emit('resubscribed', { at: Date.now(), channels: channels.length, patterns: patterns.length });
  }

  #deliver(index: Map<string, Set<BusListener>>, channel: string, pattern: string | undefined, data: Buffer): void {
    const listeners = index.get(pattern ?? channel);
    if (listeners === undefined) return;
    const message = { channel, pattern, data };
    for (const listener of [...listeners]) {
      try {
        listener(message);
      } catch (error) {
        this.#logger.error({ err: error, channel }, 'bus: a listener threw');
      }
    }
  }

  async publish(channel: string, data: Buffer | string): Promise<number> {
    if (this.#closed) throw new BusUnavailableError('publish (bus closed)');
    // Queued for after a reconnection, a message would arrive before the others resubscribed: refuse now.
    if (this.commands.status !== 'ready') throw new BusUnavailableError(`publish to ${channel}`);
    // Between the socket's death and ioredis noticing it, a command to a socket that can no longer be
    // written goes to ioredis's offline queue, to be sent after the reconnection: refused too.
    const socket = (this.commands as unknown as { stream?: { writable?: boolean } }).stream;
    if (socket?.writable === false) throw new BusUnavailableError(`publish to ${channel}`);
    return Number(await this.call('PUBLISH', bytes(channel), busBytes(data)));
  }

  subscribe(channel: string, listener: BusListener): Promise<BusSubscription> {
    return this.#listen('channel', channel, listener);
  }

  psubscribe(pattern: string, listener: BusListener): Promise<BusSubscription> {
    return this.#listen('pattern', pattern, listener);
  }

  async #listen(kind: 'channel' | 'pattern', name: string, listener: BusListener): Promise<BusSubscription> {
    if (this.#closed) throw new BusUnavailableError('subscribe (bus closed)');
    const index = kind === 'channel' ? this.#channels : this.#patterns;
    let listeners = index.get(name);
    const first = listeners === undefined;
    if (listeners === undefined) {
      listeners = new Set();
      index.set(name, listeners);
    }
    const own = listeners;
    own.add(listener);
    if (first) {
      try {
        if (kind === 'channel') await this.#subscriber.subscribe(bytes(name));
        else await this.#patternCalls.psubscribe(bytes(name));
      } catch (error) {
        // Still listed: the next resubscription covers it, and the caller knows it is not confirmed yet.
        throw new BusUnavailableError(`subscribe to ${name} (${errorText(error)})`);
      }
    }
    let active = true;
    return {
      name,
      kind,
      unsubscribe: async () => {
        if (!active) return;
        active = false;
        own.delete(listener);
        if (own.size > 0 || index.get(name) !== own) return;
        index.delete(name);
        if (this.#closed || this.#subscriber.status !== 'ready') return; // gone with the connection anyway
        if (kind === 'channel') await this.#subscriber.unsubscribe(bytes(name));
        else await this.#patternCalls.punsubscribe(bytes(name));
      },
    };
  }

  /** ioredis types PSUBSCRIBE's patterns as strings; it sends Buffers as they are (binary names). */
  get #patternCalls(): { psubscribe(...patterns: Buffer[]): Promise<unknown>; punsubscribe(...patterns: Buffer[]): Promise<unknown> } {
    return this.#subscriber as unknown as {
      psubscribe(...patterns: Buffer[]): Promise<unknown>;
      punsubscribe(...patterns: Buffer[]): Promise<unknown>;
    };
  }

  stream(name: string): BusStream {
    return new RedisStream(this, name);
  }

  /** The connection a stream's blocking reads use (a blocked XREADGROUP holds its connection). */
  blocker(stream: RedisStream): Redis {
    let connection = this.#blockers.get(stream.name);
    if (connection === undefined) {
      if (this.#closed) throw new BusUnavailableError('read (bus closed)');
      connection = this.#connect('reader', {});
      this.#blockers.set(stream.name, connection);
    }
    return connection;
  }

  /** One heartbeat timer per TTL in use (not one per entry: a process may hold many thousands of sessions). */
  readonly #beats = new Map<number, NodeJS.Timeout>();

  #ensureHeartbeat(ttlMs: number): void {
    if (this.#beats.has(ttlMs)) return;
    const timer = setInterval(
      () => {
        this.#heartbeat(ttlMs).catch((error: unknown) => this.#logger.debug({ err: error }, 'bus: heartbeat failed'));
      },
      Math.max(1, Math.floor(ttlMs / 3)),
    );
    timer.unref();
    this.#beats.set(ttlMs, timer);
  }

  /** Refresh every entry of this TTL, pipelined; one found gone is written again and reported lost (a claim someone else holds now, too). */
  async #heartbeat(ttlMs: number): Promise<void> {
    const keys: string[] = [];
    for (const [key, own] of this.#owned) if (own.ttlMs === ttlMs) keys.push(key);
    if (keys.length === 0) {
      clearInterval(this.#beats.get(ttlMs));
      this.#beats.delete(ttlMs);
      return;
    }
    if (this.#closed || this.commands.status !== 'ready') return;
    const missing: string[] = [];
    const rewritten: string[] = [];
    const taken: string[] = [];
    for (let at = 0; at < keys.length; at += HEARTBEAT_BATCH) {
      const batch = keys.slice(at, at + HEARTBEAT_BATCH);
      const owned = batch.map((key) => this.#owned.get(key));
      const pipeline = this.commands.pipeline();
      batch.forEach((key, i) => {
        const own = owned[i];
        if (own?.claim === true) pipeline.call('EVAL', REFRESH_CLAIM, '1', bytes(key), own.value, String(ttlMs));
        else pipeline.call('SET', bytes(key), own?.value ?? '', 'PX', String(ttlMs), 'XX');
      });
      const results = (await this.track(pipeline.exec())) ?? [];
      // XX: a key that is gone (expired while Redis was unreachable, or lost with its data) is a loss to report.
      results.forEach(([error, reply], i) => {
        if (error !== null) return;
        const key = batch[i] as string;
        if (owned[i]?.claim === true) {
          if (Number(reply) === 2) rewritten.push(key);
          else if (Number(reply) === 0) taken.push(key);
        } else if (reply === null) missing.push(key);
      });
    }
    const rewrite = missing.filter((key) => this.#owned.get(key)?.ttlMs === ttlMs);
    if (rewrite.length > 0) {
      const pipeline = this.commands.pipeline();
      for (const key of rewrite) pipeline.call('SET', bytes(key), this.#owned.get(key)?.value ?? '', 'PX', String(ttlMs));
      await this.track(pipeline.exec());
    }
    const now = Date.now();
    rewrite.push(...rewritten);
    if (rewrite.length > 0)
      this.lost('presence', `${rewrite.length} presence entries had expired and were written again`, now, now, rewrite);
    for (const key of taken) {
      const value = this.#owned.get(key)?.value;
      this.#owned.delete(key);
      if (value !== undefined) this.#lostClaims.set(key, value);
    }
    if (taken.length > 0) this.lost('claim', `${taken.length} claims are held by another process now`, now, now, taken);
  }

  #makePresence(): BusPresence {
    const bus = this;
    return {
      async set(key, value, { ttlMs }) {
        if (bus.#closed) throw new BusUnavailableError('presence (bus closed)');
        if (!(ttlMs > 0)) throw new RangeError('presence ttlMs must be more than 0');
        bus.#owned.set(key, { value, ttlMs });
        bus.#ensureHeartbeat(ttlMs);
        await bus.call('SET', bytes(key), value, 'PX', String(ttlMs));
      },
      async get(key) {
        const value = await bus.callBuffer('GET', bytes(key));
        return Buffer.isBuffer(value) ? value.toString() : undefined;
      },
      async delete(key) {
        const own = bus.#owned.get(key);
        const lost = bus.#lostClaims.get(key);
        bus.#owned.delete(key);
        bus.#lostClaims.delete(key);
        if (own?.claim === true || lost !== undefined) await bus.call('EVAL', RELEASE_CLAIM, '1', bytes(key), own?.value ?? lost ?? '');
        else await bus.call('DEL', bytes(key));
      },
      async claim(key, value, { ttlMs }) {
        if (bus.#closed) throw new BusUnavailableError('presence (bus closed)');
        if (!(ttlMs > 0)) throw new RangeError('presence ttlMs must be more than 0');
        for (let attempt = 0; attempt < 3; attempt++) {
          const set = await bus.call('SET', bytes(key), value, 'PX', String(ttlMs), 'NX');
          const holder = set === null ? await this.get(key) : value;
          // Expired between the two commands: try again.
          if (holder === undefined) continue;
          if (holder === value) {
            bus.#lostClaims.delete(key);
            bus.#owned.set(key, { value, ttlMs, claim: true });
            bus.#ensureHeartbeat(ttlMs);
          }
          return holder;
        }
        throw new BusUnavailableError(`presence claim of ${key} (it keeps expiring)`);
      },
      forget(key) {
        // Its heartbeat leaves it alone from now on: a heartbeat already under way writes back only the
        // keys still owned when its answers come (a claim forgotten lapses the same way).
        bus.#owned.delete(key);
      },
      async list(prefix) {
        const out = new Map<string, string>();
        let cursor = '0';
        do {
          const reply = (await bus.callBuffer('SCAN', cursor, 'MATCH', bytes(`${escapeGlob(prefix)}*`), 'COUNT', '1000')) as [
            Buffer,
            Buffer[],
          ];
          cursor = reply[0].toString();
          const keys = reply[1];
          if (keys.length === 0) continue;
          const values = (await bus.callBuffer('MGET', ...keys)) as Array<Buffer | null>;
          keys.forEach((key, i) => {
            const value = values[i];
            if (value != null) out.set(key.toString('latin1'), value.toString());
          });
        } while (cursor !== '0');
        return out;
      },
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    const keys = [...this.#owned.keys()];
    for (const timer of this.#beats.values()) clearInterval(timer);
    this.#beats.clear();
    this.#owned.clear();
    if (keys.length > 0 && this.commands.status === 'ready') {
      try {
        await this.call('DEL', ...keys.map(bytes));
      } catch {
        // They expire by themselves.
      }
    }
    this.#closed = true;
    this.#channels.clear();
    this.#patterns.clear();
    for (const connection of this.#blockers.values()) connection.disconnect();
    this.#blockers.clear();
    this.#subscriber.disconnect();
    if (this.commands.status === 'ready') await this.commands.quit().catch(() => this.commands.disconnect());
    else this.commands.disconnect();
  }

  /** Resolves once both connections are ready (used by `redisBus` so that a new bus is usable at once). */
  async ready(): Promise<void> {
    const wait = (connection: Redis): Promise<void> =>
      connection.status === 'ready'
        ? Promise.resolve()
        : new Promise((resolve, reject) => {
            const onError = (error: Error): void => {
              connection.off('ready', onReady);
              reject(error);
            };
            const onReady = (): void => {
              connection.off('error', onError);
              resolve();
            };
            connection.once('ready', onReady);
            connection.once('error', onError);
          });
    await Promise.all([wait(this.commands), wait(this.#subscriber)]);
  }
}

function redactedUrl(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//***@');
}

/**
 * The bus on a real Redis. Resolves once both connections are up; rejects (and closes) if Redis
 * cannot be reached at all. Afterwards it reconnects by itself, for as long as it lives.
 */
export async function redisBus(options: RedisBusOptions): Promise<Bus> {
  if (!/^rediss?:\/\//.test(options.url))
    throw new ConfigError('redisBus({ url })', redactedUrl(options.url), 'must be redis://host:port or rediss://host:port');
  const bus = new RedisBus(options);
  try {
    await bus.ready();
  } catch (error) {
    await bus.close();
    throw new BusUnavailableError(`connect to ${redactedUrl(options.url)} (${errorText(error)})`);
  }
  return bus;
}

/** `BUS_URL=redis://…` → the Redis bus; unset or empty → `memoryBus()` (one process, as without a bus). */
export async function busFromEnv(env: Record<string, string | undefined> = process.env, options?: { logger?: Logger }): Promise<Bus> {
  const url = env.BUS_URL;
  if (url === undefined || url === '') return memoryBus();
  if (!/^rediss?:\/\//.test(url)) throw new ConfigError('BUS_URL', redactedUrl(url), 'must be redis://host:port or rediss://host:port');
  return redisBus({ url, logger: options?.logger });
}
