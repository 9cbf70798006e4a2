import { randomBytes } from 'node:crypto';
import { globMatch } from './glob.js';

// The bus between the processes of one service (issue 12): what every protocol needs to act as one
// service on several processes or hosts. Ephemeral pub/sub by channel and by pattern (Redis pub/sub
// semantics), durable delivery with acknowledgement (Redis Streams: append, read as a consumer
// group, ack, re-delivery of what a dead reader left unacknowledged), presence entries that expire
// when their process dies, and events that make every loss visible. `memoryBus()` is the bus of
// one process (and of tests); `@portbind/bus-redis` is the bus on a real Redis.
//
// Names (channels, patterns, streams, groups, presence keys) are byte strings: one char per byte
// (latin1), so that pattern matching is the same on every bus. ASCII text is unchanged; encode other
// text with `Buffer.from(text).toString('latin1')`.

/** A message received on a subscription. */
export interface BusMessage {
  readonly channel: string;
  /** The pattern it matched, for a pattern subscription. */
  readonly pattern: string | undefined;
  readonly data: Buffer;
}

export type BusListener = (message: BusMessage) => void;

/** One listener on a channel or a pattern. */
export interface BusSubscription {
  /** The channel or the pattern. */
  readonly name: string;
  readonly kind: 'channel' | 'pattern';
  /** Stop this listener (the bus leaves the channel when its last listener goes). Idempotent. */
  unsubscribe(): Promise<void>;
}

/** An entry of a stream, as a consumer group delivers it. */
export interface BusEntry {
  /** The stream's id (`<ms>-<seq>`), what `ack` takes. */
  readonly id: string;
  readonly data: Buffer;
  /** True when the entry was claimed from a consumer that did not acknowledge it (`claim`). */
  readonly redelivered: boolean;
}

/** Options of {@link BusStream.append}. */
export interface AppendOptions {
  maxLength?: number;
  ttlMs?: number;
}

/** A durable stream with consumer groups (Redis Streams). */
export interface BusStream {
  readonly name: string;
  /**
   * Append an entry (XADD); `maxLength` trims the oldest past about that many (XADD MAXLEN ~); `ttlMs`
   * deletes the whole stream that long after this append unless appended to again (PEXPIRE). Resolves to its id.
   */
  append(data: Buffer | string, options?: AppendOptions): Promise<string>;
  /** Entries in order (XRANGE), whoever read them: after the id `after` (exclusive), at most `count` (default 100). */
  entries(options?: { after?: string; count?: number }): Promise<BusEntry[]>;
  /** Delete the stream, its entries and groups (DEL). */
  delete(): Promise<void>;
  /** Drop the entries older than the id `minId` (XTRIM MINID; that entry and later ones stay). Resolves to how many went. */
  trim(minId: string): Promise<number>;
  /** Create the group if it does not exist (XGROUP CREATE … MKSTREAM): from the first entry, or only new ones. */
  createGroup(group: string, from?: 'start' | 'end'): Promise<void>;
  /**
   * Entries never delivered to the group (XREADGROUP … >), now pending for `consumer` until acknowledged;
   * waits up to `blockMs` (default 0: no wait) for one. The group is created from the start if missing.
   */
  read(group: string, consumer: string, options?: { count?: number; blockMs?: number }): Promise<BusEntry[]>;
  /** Take over entries pending longer than `minIdleMs` for any consumer of the group (XAUTOCLAIM): the re-delivery after a reader died. */
  claim(group: string, consumer: string, minIdleMs: number, count?: number): Promise<BusEntry[]>;
  /** Acknowledge (XACK): the entries leave the group's pending list. Resolves to how many were pending. */
  ack(group: string, ids: readonly string[]): Promise<number>;
  /** Entries delivered to the group and not yet acknowledged. */
  pending(group: string): Promise<number>;
  /** Entries in the stream. */
  length(): Promise<number>;
}

/** Presence entries: what this process holds (a session, a subscription), gone when the process is. */
export interface BusPresence {
  /** Set `key`; this bus refreshes it (heartbeat, every third of `ttlMs`) until `delete` or `close`. Past `ttlMs` without a heartbeat it expires. */
  set(key: string, value: string, options: { ttlMs: number }): Promise<void>;
  get(key: string): Promise<string | undefined>;
  delete(key: string): Promise<void>;
  /**
   * Stop refreshing `key` without deleting it: what it says is now another process's to keep (a session
   * that moved there). It expires `ttlMs` from its last refresh unless someone sets it again; this
   * process neither refreshes nor writes it back when it finds it gone, nor deletes it on `close()`.
   */
  forget(key: string): void;
  /** Every live entry whose key starts with `prefix` (any process's). */
  list(prefix: string): Promise<Map<string, string>>;
  /**
   * Hold `key` as long as this process lives, unless another process holds it already (a lease: which
   * process hosts a room, which one leads). Resolves to the holder's value: `value` when this process
   * holds it now (or held it already). Refreshed like `set`; if the heartbeat finds another holder
   * (the entry expired while the engine was unreachable and someone claimed it), this process no
   * longer holds it and a `lost` event of kind `claim` names the key. `delete` releases it.
   */
  claim(key: string, value: string, options: { ttlMs: number }): Promise<string>;
}

/**
 * Values with a lifetime of their own: unlike presence entries they outlive the process that set
 * them until `ttlMs` (what another process must be able to read after this one died).
 */
export interface BusValues {
  set(key: string, value: string, options: { ttlMs: number }): Promise<void>;
  get(key: string): Promise<string | undefined>;
  delete(key: string): Promise<void>;
}

/** What {@link Bus.on} reports. */
export interface BusEvents {
  /** The bus reached its engine (again). */
  connected: { readonly at: number };
  /** The connection to the engine broke: until `resubscribed`, messages published elsewhere do not arrive here. */
  disconnected: { readonly at: number; readonly error: Error | undefined };
  /** After a reconnection, every channel and pattern is subscribed again. */
  resubscribed: { readonly at: number; readonly channels: number; readonly patterns: number };
  /**
   * Delivery could not be guaranteed: pub/sub messages of `names` published between `since` and
   * `until` may not have arrived (`pubsub`), a stream or group vanished with the engine's data
   * (`stream`), presence entries had to be written again (`presence`), or a claim is now another
   * process's (`claim`). Tell your peers in the protocol's terms; never lose silently.
   */
  lost: {
    readonly kind: 'pubsub' | 'stream' | 'presence' | 'claim';
    readonly reason: string;
    readonly since: number;
    readonly until: number;
    readonly names: readonly string[];
  };
}

export type BusEventName = keyof BusEvents;

/** The bus between the processes of one service. */
export interface Bus {
  /** This bus instance's id (random), unique among the processes sharing the engine. */
  readonly id: string;
  /** True while the engine is reachable. */
  readonly connected: boolean;
  /**
   * Publish to every listener of the channel and of every matching pattern, on every process (this
   * one included). Resolves to how many bus connections received it (Redis's PUBLISH count: processes,
   * not listeners). Rejects while the engine is unreachable: the message reached nobody.
   */
  publish(channel: string, data: Buffer | string): Promise<number>;
  /** Listen to a channel; resolves once the engine confirmed the subscription. */
  subscribe(channel: string, listener: BusListener): Promise<BusSubscription>;
  /** Listen to every channel matching a glob pattern (`*`, `?`, `[a-z]`, `\x`: Redis's PSUBSCRIBE). */
  psubscribe(pattern: string, listener: BusListener): Promise<BusSubscription>;
  /** A durable stream by name (no I/O until used). */
  stream(name: string): BusStream;
  readonly presence: BusPresence;
  readonly values: BusValues;
  /** Listen to an event; returns the function that stops listening. */
  on<E extends BusEventName>(event: E, listener: (info: BusEvents[E]) => void): () => void;
  /** Delete this bus's presence entries, leave every subscription, close the connections. Idempotent. */
  close(): Promise<void>;
}

/** What a consumer's handler is given; it acknowledges when the handler resolves. */
export interface ConsumeOptions {
  group: string;
  consumer: string;
  /** Called once per entry; resolves → acknowledged; throws → left pending, re-delivered after `claimIdleMs`. */
  handler: (entry: BusEntry) => void | Promise<void>;
  /** Entries pending longer than this for any consumer of the group are claimed and re-delivered. Default 30 000 ms. */
  claimIdleMs?: number;
  /** How long one read waits for new entries. Default 1 000 ms. */
  blockMs?: number;
  /** Entries per read. Default 100. */
  count?: number;
  /** Read or handler errors (the loop goes on after a pause). */
  onError?: (error: unknown) => void;
}

export interface StreamConsumer {
  /** Stop reading after the current batch; resolves when the loop has ended. */
  stop(): Promise<void>;
}

/**
 * Read a stream as one consumer of a group until stopped: new entries and, every `claimIdleMs / 2`,
 * the entries other consumers left unacknowledged longer than `claimIdleMs` (their process died).
 */
export function consumeStream(stream: BusStream, options: ConsumeOptions): StreamConsumer {
  const claimIdleMs = options.claimIdleMs ?? 30_000;
  const blockMs = options.blockMs ?? 1000;
  const count = options.count ?? 100;
  let running = true;
  let lastClaim = 0;
  const handle = async (entries: BusEntry[]): Promise<void> => {
    const done: string[] = [];
    for (const entry of entries) {
      try {
        await options.handler(entry);
        done.push(entry.id);
      } catch (error) {
        options.onError?.(error);
      }
    }
    if (done.length > 0) await stream.ack(options.group, done);
  };
  const loop = (async () => {
    while (running) {
      try {
        if (Date.now() - lastClaim >= claimIdleMs / 2) {
          lastClaim = Date.now();
          await handle(await stream.claim(options.group, options.consumer, claimIdleMs, count));
        }
        const wait = Math.max(0, Math.min(blockMs, claimIdleMs / 2 - (Date.now() - lastClaim)));
        const entries = await stream.read(options.group, options.consumer, { count, blockMs: Math.max(1, Math.floor(wait)) });
        if (running || entries.length > 0) await handle(entries);
      } catch (error) {
        if (!running) break;
        options.onError?.(error);
        await new Promise((resolve) => setTimeout(resolve, Math.min(1000, blockMs)));
      }
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
    },
  };
}

/** A small typed event emitter for bus implementations. */
export class BusEventEmitter {
  readonly #listeners = new Map<BusEventName, Set<(info: never) => void>>();

  on<E extends BusEventName>(event: E, listener: (info: BusEvents[E]) => void): () => void {
    let set = this.#listeners.get(event);
    if (set === undefined) {
      set = new Set();
      this.#listeners.set(event, set);
    }
    const entry = listener as (info: never) => void;
    set.add(entry);
    return () => {
      set.delete(entry);
    };
  }

  emit<E extends BusEventName>(event: E, info: BusEvents[E]): void {
    for (const listener of [...(this.#listeners.get(event) ?? [])]) {
      try {
        (listener as (info: BusEvents[E]) => void)(info);
      } catch {
        // A listener's failure is its own; the bus goes on.
      }
    }
  }
}

/** A new bus instance id: 16 hex digits. */
export function newBusId(): string {
  return randomBytes(8).toString('hex');
}

/** The data of a message or an entry as bytes. */
export function busBytes(data: Buffer | string): Buffer {
  return typeof data === 'string' ? Buffer.from(data) : data;
}

// ---- memoryBus ----------------------------------------------------------------------------------

interface MemoryEntry {
  id: string;
  data: Buffer;
}

interface MemoryPending {
  consumer: string;
  deliveredAt: number;
  deliveries: number;
}

interface MemoryGroup {
  /** Index in `entries` of the next entry never delivered. */
  lastDelivered: string;
  pending: Map<string, MemoryPending>;
}

interface MemoryStreamState {
  /** When the stream is deleted (an `append` with `ttlMs`). */
  expiresAt: number;
  entries: MemoryEntry[];
  groups: Map<string, MemoryGroup>;
  lastMs: number;
  lastSeq: number;
  waiters: Set<() => void>;
}

interface Listening {
  bus: MemoryBusInstance;
  kind: 'channel' | 'pattern';
  name: string;
  listener: BusListener;
}

/** What the processes sharing a memory bus share. */
class MemoryHub {
  readonly listening = new Set<Listening>();
  readonly streams = new Map<string, MemoryStreamState>();
  /** Entries of a live bus never expire (its heartbeat would keep them); a killed bus's expire `ttlMs` after its death. */
  readonly presence = new Map<string, { value: string; expiresAt: number; owner: object | undefined }>();
  readonly values = new Map<string, { value: string; expiresAt: number }>();

  /** A stream that exists (not expired), if any. */
  existing(name: string): MemoryStreamState | undefined {
    const state = this.streams.get(name);
    if (state !== undefined && state.expiresAt <= Date.now()) {
      this.streams.delete(name);
      for (const wake of [...state.waiters]) wake();
      return undefined;
    }
    return state;
  }

  stream(name: string): MemoryStreamState {
    let state = this.existing(name);
    if (state === undefined) {
      state = { expiresAt: Number.POSITIVE_INFINITY, entries: [], groups: new Map(), lastMs: 0, lastSeq: 0, waiters: new Set() };
      this.streams.set(name, state);
    }
    return state;
  }

  livePresence(key: string): string | undefined {
    const entry = this.presence.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiresAt <= Date.now()) {
      this.presence.delete(key);
      return undefined;
    }
    return entry.value;
  }
}

/** The bus of one process, or of several "processes" in one test: {@link MemoryBus.peer} makes another one on the same hub. */
export interface MemoryBus extends Bus {
  /** Another bus instance (another "process") sharing this one's channels, streams and presence. */
  peer(): MemoryBus;
  /** Die as a crashed process does: listeners and heartbeats stop, presence entries are left to expire, pending entries stay pending. */
  kill(): void;
}

function compareIds(a: string, b: string): number {
  const [am, as] = a.split('-').map(Number) as [number, number];
  const [bm, bs] = b.split('-').map(Number) as [number, number];
  return am - bm || as - bs;
}

class MemoryStream implements BusStream {
  readonly name: string;
  readonly #hub: MemoryHub;
  readonly #bus: MemoryBusInstance;

  constructor(hub: MemoryHub, bus: MemoryBusInstance, name: string) {
    this.#hub = hub;
    this.#bus = bus;
    this.name = name;
  }

  async append(data: Buffer | string, options?: AppendOptions): Promise<string> {
    this.#bus.check();
    const state = this.#hub.stream(this.name);
    const ttlMs = options?.ttlMs;
    if (ttlMs !== undefined) {
      if (!(ttlMs > 0)) throw new RangeError('append ttlMs must be more than 0');
      state.expiresAt = Date.now() + ttlMs;
    }
    const now = Date.now();
    if (now > state.lastMs) {
      state.lastMs = now;
      state.lastSeq = 0;
    } else state.lastSeq++;
    const id = `${state.lastMs}-${state.lastSeq}`;
    state.entries.push({ id, data: Buffer.from(busBytes(data)) });
    const max = options?.maxLength;
    if (max !== undefined && state.entries.length > max) state.entries.splice(0, state.entries.length - max);
    for (const wake of [...state.waiters]) wake();
    return id;
  }

  async entries(options?: { after?: string; count?: number }): Promise<BusEntry[]> {
    this.#bus.check();
    const count = options?.count ?? 100;
    const after = options?.after;
    const out: BusEntry[] = [];
    for (const entry of this.#hub.existing(this.name)?.entries ?? []) {
      if (out.length >= count) break;
      if (after !== undefined && compareIds(entry.id, after) <= 0) continue;
      out.push({ id: entry.id, data: entry.data, redelivered: false });
    }
    return out;
  }

  async trim(minId: string): Promise<number> {
    this.#bus.check();
    const state = this.#hub.existing(this.name);
    if (state === undefined) return 0;
    const keep = state.entries.findIndex((entry) => compareIds(entry.id, minId) >= 0);
    const drop = keep === -1 ? state.entries.length : keep;
    state.entries.splice(0, drop);
    return drop;
  }

  async delete(): Promise<void> {
    this.#bus.check();
    const state = this.#hub.streams.get(this.name);
    this.#hub.streams.delete(this.name);
    for (const wake of [...(state?.waiters ?? [])]) wake();
  }

  async createGroup(group: string, from: 'start' | 'end' = 'end'): Promise<void> {
    this.#bus.check();
    this.#group(group, from);
  }

  #group(group: string, from: 'start' | 'end'): MemoryGroup {
    const state = this.#hub.stream(this.name);
    let found = state.groups.get(group);
    if (found === undefined) {
      found = { lastDelivered: from === 'start' ? '0-0' : `${state.lastMs}-${state.lastSeq}`, pending: new Map() };
      state.groups.set(group, found);
    }
    return found;
  }

  async read(group: string, consumer: string, options?: { count?: number; blockMs?: number }): Promise<BusEntry[]> {
    this.#bus.check();
    const count = options?.count ?? 100;
    const take = (): BusEntry[] => {
      const state = this.#hub.stream(this.name);
      const own = this.#group(group, 'start');
      const out: BusEntry[] = [];
      for (const entry of state.entries) {
        if (out.length >= count) break;
        if (compareIds(entry.id, own.lastDelivered) <= 0) continue;
        own.lastDelivered = entry.id;
        own.pending.set(entry.id, { consumer, deliveredAt: Date.now(), deliveries: 1 });
        out.push({ id: entry.id, data: entry.data, redelivered: false });
      }
      return out;
    };
    const now = take();
    const blockMs = options?.blockMs ?? 0;
    if (now.length > 0 || blockMs <= 0) return now;
    const state = this.#hub.stream(this.name);
    return new Promise<BusEntry[]>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        state.waiters.delete(wake);
        this.#bus.wakers.delete(wake);
      };
      const wake = (): void => {
        done();
        resolve(this.#bus.alive ? take() : []);
      };
      const timer = setTimeout(() => {
        done();
        resolve([]);
      }, blockMs);
      state.waiters.add(wake);
      this.#bus.wakers.add(wake);
    });
  }

  async claim(group: string, consumer: string, minIdleMs: number, count = 100): Promise<BusEntry[]> {
    this.#bus.check();
    const state = this.#hub.stream(this.name);
    const own = this.#group(group, 'start');
    const now = Date.now();
    const out: BusEntry[] = [];
    for (const [id, pending] of own.pending) {
      if (out.length >= count) break;
      if (now - pending.deliveredAt < minIdleMs) continue;
      const entry = state.entries.find((candidate) => candidate.id === id);
      if (entry === undefined) {
        // Trimmed away (XAUTOCLAIM deletes such ids from the pending list).
        own.pending.delete(id);
        continue;
      }
      pending.consumer = consumer;
      pending.deliveredAt = now;
      pending.deliveries++;
      out.push({ id, data: entry.data, redelivered: true });
    }
    return out;
  }

  async ack(group: string, ids: readonly string[]): Promise<number> {
    this.#bus.check();
    const own = this.#hub.existing(this.name)?.groups.get(group);
    if (own === undefined) return 0;
    let acked = 0;
    for (const id of ids) if (own.pending.delete(id)) acked++;
    return acked;
  }

  async pending(group: string): Promise<number> {
    this.#bus.check();
    return this.#hub.existing(this.name)?.groups.get(group)?.pending.size ?? 0;
  }

  async length(): Promise<number> {
    this.#bus.check();
    return this.#hub.existing(this.name)?.entries.length ?? 0;
  }
}

class MemoryBusInstance implements MemoryBus {
  readonly id = newBusId();
  readonly #hub: MemoryHub;
  readonly #events = new BusEventEmitter();
  readonly #owned = new Map<string, { value: string; ttlMs: number }>();
  /** Blocked reads to end on close. */
  readonly wakers = new Set<() => void>();
  alive = true;
  readonly presence: BusPresence;
  readonly values: BusValues;

  constructor(hub: MemoryHub) {
    this.#hub = hub;
    const bus = this;
    this.presence = {
      async set(key, value, { ttlMs }) {
        bus.check();
        if (!(ttlMs > 0)) throw new RangeError('presence ttlMs must be more than 0');
        hub.presence.set(key, { value, expiresAt: Number.POSITIVE_INFINITY, owner: bus });
        bus.#owned.set(key, { value, ttlMs });
      },
      async get(key) {
        bus.check();
        return hub.livePresence(key);
      },
      async delete(key) {
        bus.check();
        bus.#owned.delete(key);
        hub.presence.delete(key);
      },
      forget(key) {
        const own = bus.#owned.get(key);
        if (own === undefined) return;
        bus.#owned.delete(key);
        // As if its heartbeat had stopped: it expires ttlMs from now unless another bus sets it.
        const entry = hub.presence.get(key);
        if (entry?.owner === bus) entry.expiresAt = Date.now() + own.ttlMs;
      },
      async list(prefix) {
        bus.check();
        const out = new Map<string, string>();
        for (const key of [...hub.presence.keys()]) {
          if (!key.startsWith(prefix)) continue;
          const value = hub.livePresence(key);
          if (value !== undefined) out.set(key, value);
        }
        return out;
      },
      async claim(key, value, { ttlMs }) {
        bus.check();
        if (!(ttlMs > 0)) throw new RangeError('presence ttlMs must be more than 0');
        const held = hub.livePresence(key);
        const entry = hub.presence.get(key);
        if (held !== undefined && entry?.owner !== bus) return held;
        if (held !== undefined && held !== value) return held;
        hub.presence.set(key, { value, expiresAt: Number.POSITIVE_INFINITY, owner: bus });
        bus.#owned.set(key, { value, ttlMs });
        return value;
      },
    };
    this.values = {
      async set(key, value, { ttlMs }) {
        bus.check();
        if (!(ttlMs > 0)) throw new RangeError('values ttlMs must be more than 0');
        hub.values.set(key, { value, expiresAt: Date.now() + ttlMs });
      },
      async get(key) {
        bus.check();
        const entry = hub.values.get(key);
        if (entry === undefined) return undefined;
        if (entry.expiresAt > Date.now()) return entry.value;
        hub.values.delete(key);
        return undefined;
      },
      async delete(key) {
        bus.check();
        hub.values.delete(key);
      },
    };
  }

  get connected(): boolean {
    return this.alive;
  }

  check(): void {
    if (!this.alive) throw new Error('bus closed');
  }

  async publish(channel: string, data: Buffer | string): Promise<number> {
    this.check();
    const bytes = busBytes(data);
    const receivers = new Set<MemoryBusInstance>();
    const deliveries: Array<() => void> = [];
    for (const entry of this.#hub.listening) {
      const match = entry.kind === 'channel' ? entry.name === channel : globMatch(entry.name, channel);
      if (!match) continue;
      receivers.add(entry.bus);
      const message: BusMessage = { channel, pattern: entry.kind === 'pattern' ? entry.name : undefined, data: bytes };
      deliveries.push(() => {
        if (entry.bus.alive && this.#hub.listening.has(entry)) entry.listener(message);
      });
    }
    // Delivered asynchronously, as from another process: a listener never runs inside publish().
    if (deliveries.length > 0)
      setImmediate(() => {
        for (const deliver of deliveries) deliver();
      });
    return receivers.size;
  }

  subscribe(channel: string, listener: BusListener): Promise<BusSubscription> {
    return this.#listen('channel', channel, listener);
  }

  psubscribe(pattern: string, listener: BusListener): Promise<BusSubscription> {
    return this.#listen('pattern', pattern, listener);
  }

  async #listen(kind: 'channel' | 'pattern', name: string, listener: BusListener): Promise<BusSubscription> {
    this.check();
    const entry: Listening = { bus: this, kind, name, listener };
    this.#hub.listening.add(entry);
    return {
      name,
      kind,
      unsubscribe: async () => {
        this.#hub.listening.delete(entry);
      },
    };
  }

  stream(name: string): BusStream {
    return new MemoryStream(this.#hub, this, name);
  }

  on<E extends BusEventName>(event: E, listener: (info: BusEvents[E]) => void): () => void {
    return this.#events.on(event, listener);
  }

  peer(): MemoryBus {
    return new MemoryBusInstance(this.#hub);
  }

  kill(): void {
    if (!this.alive) return;
    this.#stop();
  }

  async close(): Promise<void> {
    if (!this.alive) return;
    for (const key of this.#owned.keys()) this.#hub.presence.delete(key);
    this.#stop();
  }

  #stop(): void {
    this.alive = false;
    // Its heartbeat stops: what it still owns expires ttlMs from now (close() deleted them already).
    const now = Date.now();
    for (const [key, own] of this.#owned) {
      const entry = this.#hub.presence.get(key);
      if (entry?.owner === this) entry.expiresAt = now + own.ttlMs;
    }
    this.#owned.clear();
    for (const entry of [...this.#hub.listening]) if (entry.bus === this) this.#hub.listening.delete(entry);
    for (const wake of [...this.wakers]) wake();
  }
}

/**
 * The bus of one process: pub/sub, streams and presence in memory, with the semantics of the Redis
 * bus (messages arrive asynchronously, presence expires without heartbeat, unacknowledged entries
 * are claimable). Share one between several adapters of a test, or make more "processes" with `peer()`.
 */
export function memoryBus(): MemoryBus {
  return new MemoryBusInstance(new MemoryHub());
}
