import { type Bus, type BusMessage, type BusSubscription, ConfigError, globMatch, type Logger, newBusId } from '@portbind/core';
import type { RespClient } from './client.js';
import { keySlot } from './cluster.js';

// The pub/sub broker, as Redis's pubsub.c: channels, patterns and (Redis 7.0) shard channels,
// each an index from name to subscribers; publishing writes `message` / `pmessage` / `smessage`
// frames (RESP2 arrays, RESP3 pushes) and closes a subscriber that falls behind past the
// output buffer limits (client-output-buffer-limit pubsub).

export interface PubSubLimits {
  hardBytes: number;
  softBytes: number;
  softSeconds: number;
}

/**
 * Pub/sub across processes (`respAdapter({ bus })`): PUBLISH reaches the subscribers of every
 * process sharing the bus, SPUBLISH goes through a channel per slot, and PUBSUB answers for all.
 */
export interface RespBusOptions {
  bus: Bus;
  /** Prefix of this service's names on the bus (several services may share one Redis). Default `resp`. No glob characters. */
  namespace?: string;
  /** How long a dead process's subscriptions still count in PUBSUB NUMSUB/CHANNELS/NUMPAT. Default 15 000 ms. */
  presenceTtlMs?: number;
}

/** What the broker needs from the adapter. */
export interface PubSubHost<Context> {
  readonly clients: ReadonlyMap<number, RespClient<Context>>;
  readonly limits: PubSubLimits | undefined;
  readonly logger: Logger;
  /** The bus to the other processes of the service, if any. */
  readonly bus?: Bus | RespBusOptions | undefined;
}

const DEFAULT_LIMITS: PubSubLimits = { hardBytes: 32 * 1024 * 1024, softBytes: 8 * 1024 * 1024, softSeconds: 60 };
const NO_SHARDS: ReadonlySet<string> = new Set();

export class PubSub<Context> {
  readonly #host: PubSubHost<Context>;
  readonly #channels = new Map<string, Set<RespClient<Context>>>();
  readonly #patterns = new Map<string, Set<RespClient<Context>>>();
  readonly #shardChannels = new Map<string, Set<RespClient<Context>>>();
  /** Each client's shard channels (RespClient keeps channels and patterns itself). */
  readonly #shardsOf = new WeakMap<RespClient<Context>, Set<string>>();
  /** Subscribers already closed for their output buffer limits. */
  readonly #cutOff = new WeakSet<RespClient<Context>>();
  #softLimitTimer: NodeJS.Timeout | undefined;
  /** Across processes, when the adapter has a bus. */
  readonly #remote: RemotePubSub<Context> | undefined;

  constructor(host: PubSubHost<Context>) {
    this.#host = host;
    const bus = host.bus;
    if (bus !== undefined) this.#remote = new RemotePubSub(this, host, 'publish' in bus ? { bus } : bus);
  }

  // ---- subscriptions --------------------------------------------------------------------------

  subscribe(client: RespClient<Context>, channel: string): void {
    client.channels.add(channel);
    if (join(this.#channels, channel, client)) this.#remote?.join('c', channel);
    else this.#remote?.changed();
  }

  unsubscribe(client: RespClient<Context>, channel: string): boolean {
    if (!client.channels.delete(channel)) return false;
    if (leave(this.#channels, channel, client)) this.#remote?.leave('c', channel);
    else this.#remote?.changed();
    return true;
  }

  psubscribe(client: RespClient<Context>, pattern: string): void {
    client.patterns.add(pattern);
    if (join(this.#patterns, pattern, client)) this.#remote?.join('p', pattern);
    else this.#remote?.changed();
  }

  punsubscribe(client: RespClient<Context>, pattern: string): boolean {
    if (!client.patterns.delete(pattern)) return false;
    if (leave(this.#patterns, pattern, client)) this.#remote?.leave('p', pattern);
    else this.#remote?.changed();
    return true;
  }

  /** SSUBSCRIBE: a shard channel (Redis 7.0), counted apart from channels and patterns. */
  ssubscribe(client: RespClient<Context>, channel: string): void {
    let own = this.#shardsOf.get(client);
    if (own === undefined) {
      own = new Set();
      this.#shardsOf.set(client, own);
    }
    own.add(channel);
    if (join(this.#shardChannels, channel, client)) this.#remote?.join('s', channel);
    else this.#remote?.changed();
  }

  sunsubscribe(client: RespClient<Context>, channel: string): boolean {
    const own = this.#shardsOf.get(client);
    if (own === undefined || !own.delete(channel)) return false;
    if (own.size === 0) this.#shardsOf.delete(client);
    if (leave(this.#shardChannels, channel, client)) this.#remote?.leave('s', channel);
    else this.#remote?.changed();
    return true;
  }

  /** The shard channels `client` is subscribed to. */
  shardChannelsOf(client: RespClient<Context>): ReadonlySet<string> {
    return this.#shardsOf.get(client) ?? NO_SHARDS;
  }

  /** Channels and patterns of `client` (the count SUBSCRIBE's replies carry). */
  subscriptionCount(client: RespClient<Context>): number {
    return client.channelCount + client.patternCount;
  }

  /** Shard channels of `client` (the count SSUBSCRIBE's replies carry). */
  shardSubscriptionCount(client: RespClient<Context>): number {
    return this.#shardsOf.get(client)?.size ?? 0;
  }

  /** In subscribed mode (Redis's CLIENT_PUBSUB): a channel, a pattern or a shard channel. */
  isSubscribed(client: RespClient<Context>): boolean {
    return client.channelCount + client.patternCount > 0 || this.#shardsOf.has(client);
  }

  /** RESET or a closed connection: leave everything, without confirmations. */
  leaveAll(client: RespClient<Context>): void {
    if (client.channelCount > 0) for (const channel of [...client.channels]) this.unsubscribe(client, channel);
    if (client.patternCount > 0) for (const pattern of [...client.patterns]) this.punsubscribe(client, pattern);
    for (const channel of [...this.shardChannelsOf(client)]) this.sunsubscribe(client, channel);
  }

  // ---- introspection (PUBSUB, INFO) -----------------------------------------------------------

  // With a bus, these answer for every process of the service: this one's subscriptions and the
  // others' as each last announced them (RemotePubSub below).

  /** Channels with at least one subscriber, optionally matching a glob pattern. */
  activeChannels(pattern?: string): string[] {
    return matching(this.#remote ? this.#remote.union('c', this.#channels) : this.#channels, pattern);
  }

  subscriberCount(channel: string): number {
    return (this.#channels.get(channel)?.size ?? 0) + (this.#remote?.count('c', channel) ?? 0);
  }

  /** Patterns with a subscriber (PUBSUB NUMPAT, INFO's pubsub_patterns): distinct ones, over the service with a bus. */
  get patternCount(): number {
    return this.#remote ? this.#remote.union('p', this.#patterns).size : this.#patterns.size;
  }

  /** Shard channels with at least one subscriber, optionally matching a glob pattern (PUBSUB SHARDCHANNELS). */
  activeShardChannels(pattern?: string): string[] {
    return matching(this.#remote ? this.#remote.union('s', this.#shardChannels) : this.#shardChannels, pattern);
  }

  shardSubscriberCount(channel: string): number {
    return (this.#shardChannels.get(channel)?.size ?? 0) + (this.#remote?.count('s', channel) ?? 0);
  }

  /** Shard channels with a subscriber (INFO's pubsubshard_channels). */
  get shardChannelCount(): number {
    return this.#remote ? this.#remote.union('s', this.#shardChannels).size : this.#shardChannels.size;
  }

  /** This process's subscriptions by kind, with their subscriber counts (what RemotePubSub announces). */
  localSummary(): Summary {
    const counts = (index: Map<string, Set<RespClient<Context>>>): Array<[string, number]> =>
      [...index].map(([name, clients]) => [name, clients.size]);
    return { c: counts(this.#channels), p: counts(this.#patterns), s: counts(this.#shardChannels) };
  }

  /** Subscribers on this process of a channel or a pattern (RemotePubSub delivers what others published). */
  hasLocal(kind: Kind, name: string): boolean {
    return (kind === 'c' ? this.#channels : kind === 'p' ? this.#patterns : this.#shardChannels).has(name);
  }

  // ---- publishing -----------------------------------------------------------------------------

  /**
   * PUBLISH: to the channel's subscribers and the matching patterns'; the number of clients reached.
   * With a bus, also to every other process, and the count includes their subscribers as they last
   * announced them.
   */
  publish(channel: string | Buffer, message: string | Buffer): number {
    const name = typeof channel === 'string' ? channel : channel.toString('latin1');
    const channelBytes = typeof channel === 'string' ? Buffer.from(channel, 'latin1') : channel;
    let received = this.deliverChannel(name, channelBytes, message) + this.deliverPatterns(undefined, name, channelBytes, message);
    if (this.#remote) received += this.#remote.publish('c', name, message);
    return received;
  }

  /** To this process's subscribers only (Redis's keyspace notifications: a node's own, never the cluster's). */
  publishLocal(channel: string | Buffer, message: string | Buffer): number {
    const name = typeof channel === 'string' ? channel : channel.toString('latin1');
    const channelBytes = typeof channel === 'string' ? Buffer.from(channel, 'latin1') : channel;
    return this.deliverChannel(name, channelBytes, message) + this.deliverPatterns(undefined, name, channelBytes, message);
  }

  /** A message to the channel's own subscribers on this process. */
  deliverChannel(name: string, channelBytes: Buffer, message: string | Buffer): number {
    let received = 0;
    for (const client of this.#channels.get(name) ?? []) {
      received++;
      // A client being closed gets no more output (Redis: CLIENT_CLOSE_AFTER_REPLY / CLOSE_ASAP).
      if (client.closing) continue;
      client.pushWriter().push(3).bulk('message').bulk(channelBytes).bulk(message);
      this.#delivered(client);
    }
    return received;
  }

  /** A message to the subscribers of every matching pattern on this process (of `only` when given). */
  deliverPatterns(only: string | undefined, name: string, channelBytes: Buffer, message: string | Buffer): number {
    let received = 0;
    const deliver = (pattern: string, clients: Set<RespClient<Context>>): void => {
      for (const client of clients) {
        received++;
        if (client.closing) continue;
        client.pushWriter().push(4).bulk('pmessage').bulk(Buffer.from(pattern, 'latin1')).bulk(channelBytes).bulk(message);
        this.#delivered(client);
      }
    };
    if (only !== undefined) {
      const clients = this.#patterns.get(only);
      if (clients !== undefined && globMatch(only, name)) deliver(only, clients);
      return received;
    }
    for (const [pattern, clients] of this.#patterns) if (globMatch(pattern, name)) deliver(pattern, clients);
    return received;
  }

  /** SPUBLISH: to the shard channel's subscribers only (patterns do not see shard messages); with a bus, through the slot's channel. */
  spublish(channel: string | Buffer, message: string | Buffer): number {
    const name = typeof channel === 'string' ? channel : channel.toString('latin1');
    const channelBytes = typeof channel === 'string' ? Buffer.from(channel, 'latin1') : channel;
    let received = this.deliverShard(name, channelBytes, message);
    if (this.#remote) received += this.#remote.publish('s', name, message);
    return received;
  }

  /** A shard message to its subscribers on this process. */
  deliverShard(name: string, channelBytes: Buffer, message: string | Buffer): number {
    let received = 0;
    for (const client of this.#shardChannels.get(name) ?? []) {
      received++;
      if (client.closing) continue;
      client.pushWriter().push(3).bulk('smessage').bulk(channelBytes).bulk(message);
      this.#delivered(client);
    }
    return received;
  }

  #delivered(client: RespClient<Context>): void {
    client.flush();
    const limits = this.#host.limits ?? DEFAULT_LIMITS;
    const used = client.outputBytes;
    if (limits.hardBytes > 0 && used >= limits.hardBytes) {
      this.#overLimit(client, used);
      return;
    }
    if (limits.softBytes > 0 && used >= limits.softBytes) {
      const now = Date.now();
      if (client.softLimitSince === 0) {
        client.softLimitSince = now;
        this.#watchSoftLimits(limits);
      } else if (now - client.softLimitSince > limits.softSeconds * 1000) {
        this.#overLimit(client, used);
      }
    } else {
      client.softLimitSince = 0;
    }
  }

  #overLimit(client: RespClient<Context>, used: number): void {
    // Once per client: it stays subscribed until its socket's 'close', and later publishes or
    // the soft-limit timer must not log it again.
    if (this.#cutOff.has(client)) return;
    this.#cutOff.add(client);
    this.#host.logger.warn({ client: client.id, outputBytes: used }, 'subscriber closed for overcoming of output buffer limits');
    client.kill();
  }

  /** A subscriber over the soft limit is closed after softSeconds even if no new message comes. */
  #watchSoftLimits(limits: PubSubLimits): void {
    if (this.#softLimitTimer !== undefined) return;
    this.#softLimitTimer = setInterval(() => {
      let over = 0;
      for (const client of this.#host.clients.values()) {
        if (client.softLimitSince === 0) continue;
        if (client.outputBytes < limits.softBytes) client.softLimitSince = 0;
        else if (Date.now() - client.softLimitSince > limits.softSeconds * 1000) this.#overLimit(client, client.outputBytes);
        else over++;
      }
      if (over === 0) {
        clearInterval(this.#softLimitTimer);
        this.#softLimitTimer = undefined;
      }
    }, 1000);
    this.#softLimitTimer.unref();
  }
}

/** Add `client` under `key`; true when it is the key's first. */
function join<Context>(index: Map<string, Set<RespClient<Context>>>, key: string, client: RespClient<Context>): boolean {
  let set = index.get(key);
  const first = set === undefined;
  if (set === undefined) {
    set = new Set();
    index.set(key, set);
  }
  set.add(client);
  return first;
}

/** Remove `client` from `key`; true when the key has nobody left. */
function leave<Context>(index: Map<string, Set<RespClient<Context>>>, key: string, client: RespClient<Context>): boolean {
  const set = index.get(key);
  if (set === undefined || !set.delete(client)) return false;
  if (set.size > 0) return false;
  index.delete(key);
  return true;
}

function matching(index: ReadonlyMap<string, unknown>, pattern: string | undefined): string[] {
  const all = [...index.keys()];
  return pattern === undefined ? all : all.filter((name) => globMatch(pattern, name));
}

// ---- across processes -----------------------------------------------------------------------------

/** c: channels, p: patterns, s: shard channels. */
type Kind = 'c' | 'p' | 's';

/** What one process announces of its subscriptions: names with their subscriber counts. */
interface Summary {
  c: Array<[string, number]>;
  p: Array<[string, number]>;
  s: Array<[string, number]>;
}

type View = Record<Kind, Map<string, number>>;

/** The length of the id that starts each message on the bus (newBusId: 16 hex digits). */
const ORIGIN_LENGTH = 16;

/**
 * Pub/sub between the processes of a service, over the bus: each process subscribes on the bus to
 * the channels and patterns its own clients subscribed to (so a message travels only to processes
 * that have a subscriber), and announces its subscriptions as a presence entry (`<ns>:subs:<id>`,
 * kept alive by the bus's heartbeat, gone with the process) plus a message on `<ns>:announce`. The
 * others keep a view of them for PUBSUB and PUBLISH's count.
 */
class RemotePubSub<Context> {
  readonly #broker: PubSub<Context>;
  readonly #host: PubSubHost<Context>;
  readonly #bus: Bus;
  readonly #ns: string;
  readonly #ttlMs: number;
  readonly #origin = newBusId();
  readonly #originBytes: Buffer;
  /** This process's bus subscriptions, by kind and name; the token tells a current listener from a stale one. */
  readonly #subscriptions = new Map<string, { token: object; subscribing: Promise<BusSubscription | undefined> }>();
  /** The other processes' subscriptions, by their id. */
  readonly #views = new Map<string, View>();
  readonly #pending = new Set<Promise<unknown>>();
  #flushTimer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> = Promise.resolve();
  #lastPublishWarning = 0;

  constructor(broker: PubSub<Context>, host: PubSubHost<Context>, options: RespBusOptions) {
    this.#broker = broker;
    this.#host = host;
    this.#bus = options.bus;
    this.#ns = options.namespace ?? 'resp';
    if (/[*?[\]\\]/.test(this.#ns) || this.#ns === '')
      throw new ConfigError(
        'respAdapter({ bus: { namespace } })',
        this.#ns,
        'must be a non-empty name without glob characters (* ? [ ] \\)',
      );
    this.#ttlMs = options.presenceTtlMs ?? 15_000;
    if (!Number.isInteger(this.#ttlMs) || this.#ttlMs < 100)
      throw new ConfigError('respAdapter({ bus: { presenceTtlMs } })', options.presenceTtlMs, 'must be an integer, 100 ms or more');
    this.#originBytes = Buffer.from(this.#origin, 'latin1');
    this.#bus
      .subscribe(`${this.#ns}:announce`, (message) => {
        const origin = message.data.toString('latin1');
        if (origin !== this.#origin) void this.#reload(origin);
      })
      .catch((error: unknown) => this.#host.logger.warn({ err: error }, 'RESP pub/sub: cannot listen to the other processes (bus)'));
    this.#bus.on('lost', (info) => {
      // Our entry was gone (Redis lost its data): the heartbeat wrote it again; tell the others to read it.
      if (info.kind === 'presence') this.changed();
      if (info.kind !== 'pubsub') return;
      this.#host.logger.warn(
        { since: new Date(info.since).toISOString(), until: new Date(info.until).toISOString() },
        "RESP pub/sub: messages published on other processes while the bus was unreachable did not reach this process's subscribers",
      );
    });
    this.#bus.on('resubscribed', () => {
      void this.#refreshAll();
      this.changed();
    });
    const timer = setInterval(() => void this.#refreshAll(), this.#ttlMs);
    timer.unref();
    void this.#refreshAll();
  }

  #busName(kind: Kind, name: string): string {
    if (kind === 's') return `${this.#ns}:s:${keySlot(Buffer.from(name, 'latin1'))}:${name}`;
    return `${this.#ns}:c:${name}`;
  }

  /** The first subscriber of `name` on this process: listen on the bus. */
  join(kind: Kind, name: string): void {
    const token = {};
    const busName = this.#busName(kind, name);
    const listener = (message: BusMessage): void => this.#receive(kind, name, token, message);
    const subscribing = (kind === 'p' ? this.#bus.psubscribe(busName, listener) : this.#bus.subscribe(busName, listener)).catch(
      (error: unknown) => {
        this.#host.logger.warn(
          { err: error, name },
          'RESP pub/sub: bus subscription not confirmed; messages from other processes may be missed',
        );
        return undefined;
      },
    );
    this.#subscriptions.set(kind + name, { token, subscribing });
    this.changed(subscribing);
  }

  /** The last subscriber of `name` on this process left. */
  leave(kind: Kind, name: string): void {
    const own = this.#subscriptions.get(kind + name);
    this.#subscriptions.delete(kind + name);
    own?.subscribing
      .then((subscription) => subscription?.unsubscribe())
      .catch((error: unknown) => this.#host.logger.debug({ err: error, name }, 'RESP pub/sub: bus unsubscription failed'));
    this.changed();
  }

  #receive(kind: Kind, name: string, token: object, message: BusMessage): void {
    if (this.#subscriptions.get(kind + name)?.token !== token) return; // a listener left behind
    const data = message.data;
    if (data.length < ORIGIN_LENGTH) return;
    if (data.toString('latin1', 0, ORIGIN_LENGTH) === this.#origin) return; // delivered here when published
    const payload = data.subarray(ORIGIN_LENGTH);
    if (kind === 's') {
      this.#broker.deliverShard(name, Buffer.from(name, 'latin1'), payload);
      return;
    }
    const channel = kind === 'c' ? name : message.channel.slice(this.#ns.length + 3);
    const channelBytes = Buffer.from(channel, 'latin1');
    if (kind === 'c') this.#broker.deliverChannel(channel, channelBytes, payload);
    else this.#broker.deliverPatterns(name, channel, channelBytes, payload);
  }

  /**
   * Send to the other processes; the number of their subscribers as they last announced them. A message
   * no other process announced a subscriber for does not travel (keyspace notifications, publishes to
   * channels nobody elsewhere listens to cost no round trip to the bus).
   */
  publish(kind: 'c' | 's', name: string, message: string | Buffer): number {
    let receivers = 0;
    for (const view of this.#views.values()) {
      receivers += view[kind].get(name) ?? 0;
      if (kind === 'c') for (const [pattern, count] of view.p) if (globMatch(pattern, name)) receivers += count;
    }
    if (receivers === 0) return 0;
    const body = typeof message === 'string' ? Buffer.from(message) : message;
    this.#bus.publish(this.#busName(kind, name), Buffer.concat([this.#originBytes, body])).catch((error: unknown) => {
      const now = Date.now();
      if (now - this.#lastPublishWarning < 1000) return;
      this.#lastPublishWarning = now;
      this.#host.logger.warn({ err: error, channel: name }, 'RESP pub/sub: a PUBLISH did not reach the other processes (bus unreachable)');
    });
    return receivers;
  }

  /** Subscribers of `name` on the other processes. */
  count(kind: Kind, name: string): number {
    let total = 0;
    for (const view of this.#views.values()) total += view[kind].get(name) ?? 0;
    return total;
  }

  /** The names with a subscriber on any process. */
  union(kind: Kind, local: ReadonlyMap<string, unknown>): ReadonlyMap<string, unknown> {
    if (this.#views.size === 0) return local;
    const all = new Map<string, unknown>(local);
    for (const view of this.#views.values()) for (const name of view[kind].keys()) all.set(name, true);
    return all;
  }

  /** This process's subscriptions changed: announce them (soon, once `waitFor` has been confirmed by the bus). */
  changed(waitFor?: Promise<unknown>): void {
    if (waitFor !== undefined) {
      this.#pending.add(waitFor);
      void waitFor.finally(() => this.#pending.delete(waitFor));
    }
    if (this.#flushTimer !== undefined) return;
    this.#flushTimer = setTimeout(() => {
      this.#flushTimer = undefined;
      this.#flushing = this.#flushing.then(() => this.#announce());
    }, 5);
    this.#flushTimer.unref();
  }

  async #announce(): Promise<void> {
    // Announced once the bus confirmed the subscriptions: a process that sees them in PUBSUB NUMSUB can publish to them.
    await Promise.allSettled([...this.#pending]);
    const summary = this.#broker.localSummary();
    const key = `${this.#ns}:subs:${this.#origin}`;
    try {
      if (summary.c.length + summary.p.length + summary.s.length === 0) await this.#bus.presence.delete(key);
      else await this.#bus.presence.set(key, JSON.stringify(summary), { ttlMs: this.#ttlMs });
      await this.#bus.publish(`${this.#ns}:announce`, this.#origin);
    } catch (error) {
      // The bus is unreachable: announced again on resubscription.
      this.#host.logger.debug({ err: error }, 'RESP pub/sub: cannot announce subscriptions (bus)');
    }
  }

  async #reload(origin: string): Promise<void> {
    try {
      const value = await this.#bus.presence.get(`${this.#ns}:subs:${origin}`);
      const view = value === undefined ? undefined : parseSummary(value);
      if (view === undefined) this.#views.delete(origin);
      else this.#views.set(origin, view);
    } catch (error) {
      this.#host.logger.debug({ err: error }, 'RESP pub/sub: cannot read a process’s subscriptions (bus)');
    }
  }

  async #refreshAll(): Promise<void> {
    try {
      const prefix = `${this.#ns}:subs:`;
      const entries = await this.#bus.presence.list(prefix);
      const seen = new Set<string>();
      for (const [key, value] of entries) {
        const origin = key.slice(prefix.length);
        if (origin === this.#origin) continue;
        const view = parseSummary(value);
        if (view === undefined) continue;
        seen.add(origin);
        this.#views.set(origin, view);
      }
      for (const origin of [...this.#views.keys()]) if (!seen.has(origin)) this.#views.delete(origin);
    } catch (error) {
      this.#host.logger.debug({ err: error }, 'RESP pub/sub: cannot list the other processes’ subscriptions (bus)');
    }
  }
}

/** A presence entry of another process, or undefined when it is not one. */
function parseSummary(text: string): View | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null) return undefined;
  const view: View = { c: new Map(), p: new Map(), s: new Map() };
  for (const kind of ['c', 'p', 's'] as const) {
    const list = (parsed as Record<string, unknown>)[kind];
    if (!Array.isArray(list)) return undefined;
    for (const pair of list) {
      if (!Array.isArray(pair) || typeof pair[0] !== 'string' || typeof pair[1] !== 'number') return undefined;
      view[kind].set(pair[0], pair[1]);
    }
  }
  return view;
}
