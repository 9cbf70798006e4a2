import type { Logger } from '@portbind/core';
import type { RespClient } from './client.js';
import { globMatch } from './glob.js';

// The pub/sub broker, as Redis's pubsub.c: channels, patterns and (Redis 7.0) shard channels,
// each an index from name to subscribers; publishing writes `message` / `pmessage` / `smessage`
// frames (RESP2 arrays, RESP3 pushes) and closes a subscriber that falls behind past the
// output buffer limits (client-output-buffer-limit pubsub).

export interface PubSubLimits {
  hardBytes: number;
  softBytes: number;
  softSeconds: number;
}

/** What the broker needs from the adapter. */
export interface PubSubHost<Context> {
  readonly clients: ReadonlyMap<number, RespClient<Context>>;
  readonly limits: PubSubLimits | undefined;
  readonly logger: Logger;
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

  constructor(host: PubSubHost<Context>) {
    this.#host = host;
  }

  // ---- subscriptions --------------------------------------------------------------------------

  subscribe(client: RespClient<Context>, channel: string): void {
    client.channels.add(channel);
    join(this.#channels, channel, client);
  }

  unsubscribe(client: RespClient<Context>, channel: string): boolean {
    if (!client.channels.delete(channel)) return false;
    leave(this.#channels, channel, client);
    return true;
  }

  psubscribe(client: RespClient<Context>, pattern: string): void {
    client.patterns.add(pattern);
    join(this.#patterns, pattern, client);
  }

  punsubscribe(client: RespClient<Context>, pattern: string): boolean {
    if (!client.patterns.delete(pattern)) return false;
    leave(this.#patterns, pattern, client);
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
    join(this.#shardChannels, channel, client);
  }

  sunsubscribe(client: RespClient<Context>, channel: string): boolean {
    const own = this.#shardsOf.get(client);
    if (own === undefined || !own.delete(channel)) return false;
    if (own.size === 0) this.#shardsOf.delete(client);
    leave(this.#shardChannels, channel, client);
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

  /** Channels with at least one subscriber, optionally matching a glob pattern. */
  activeChannels(pattern?: string): string[] {
    return matching(this.#channels, pattern);
  }

  subscriberCount(channel: string): number {
    return this.#channels.get(channel)?.size ?? 0;
  }

  get patternCount(): number {
    return this.#patterns.size;
  }

  /** Shard channels with at least one subscriber, optionally matching a glob pattern (PUBSUB SHARDCHANNELS). */
  activeShardChannels(pattern?: string): string[] {
    return matching(this.#shardChannels, pattern);
  }

  shardSubscriberCount(channel: string): number {
    return this.#shardChannels.get(channel)?.size ?? 0;
  }

  /** Shard channels with a subscriber (INFO's pubsubshard_channels). */
  get shardChannelCount(): number {
    return this.#shardChannels.size;
  }

  // ---- publishing -----------------------------------------------------------------------------

  /** PUBLISH: to the channel's subscribers and the matching patterns'; the number of clients reached. */
  publish(channel: string | Buffer, message: string | Buffer): number {
    const name = typeof channel === 'string' ? channel : channel.toString('latin1');
    const channelBytes = typeof channel === 'string' ? Buffer.from(channel, 'latin1') : channel;
    let received = 0;
    for (const client of this.#channels.get(name) ?? []) {
      received++;
      // A client being closed gets no more output (Redis: CLIENT_CLOSE_AFTER_REPLY / CLOSE_ASAP).
      if (client.closing) continue;
      client.pushWriter().push(3).bulk('message').bulk(channelBytes).bulk(message);
      this.#delivered(client);
    }
    for (const [pattern, clients] of this.#patterns) {
      if (!globMatch(pattern, name)) continue;
      for (const client of clients) {
        received++;
        if (client.closing) continue;
        client.pushWriter().push(4).bulk('pmessage').bulk(Buffer.from(pattern, 'latin1')).bulk(channelBytes).bulk(message);
        this.#delivered(client);
      }
    }
    return received;
  }

  /** SPUBLISH: to the shard channel's subscribers only (patterns do not see shard messages). */
  spublish(channel: string | Buffer, message: string | Buffer): number {
    const name = typeof channel === 'string' ? channel : channel.toString('latin1');
    const channelBytes = typeof channel === 'string' ? Buffer.from(channel, 'latin1') : channel;
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

function join<Context>(index: Map<string, Set<RespClient<Context>>>, key: string, client: RespClient<Context>): void {
  let set = index.get(key);
  if (set === undefined) {
    set = new Set();
    index.set(key, set);
  }
  set.add(client);
}

function leave<Context>(index: Map<string, Set<RespClient<Context>>>, key: string, client: RespClient<Context>): void {
  const set = index.get(key);
  if (set === undefined) return;
  set.delete(client);
  if (set.size === 0) index.delete(key);
}

function matching(index: Map<string, unknown>, pattern: string | undefined): string[] {
  const all = [...index.keys()];
  return pattern === undefined ? all : all.filter((name) => globMatch(pattern, name));
}
