import type { Bus, BusEvents, BusMessage, BusSubscription, Logger } from '@portbind/core';
import { newBusId } from '@portbind/core';
import type { WsConnection } from './connection.js';

// Broadcast and named channels of one WebSocket endpoint, on this process and — with a bus
// (issue 12) — on every process of the service. A message is sent to this process's peers at once,
// and published on the bus for the others; each process sends what the bus brings to its own
// peers, with the same slow-peer rule as a local broadcast (a peer past its high-water mark misses
// it, one that stopped reading is cut off). Bus channels: `portbind:ws:<busName>:all` for
// broadcast(), `portbind:ws:<busName>:c:<channel>` for publish(); a process subscribes to a
// channel while one of its peers is in it.
//
// A message on the bus: one byte of flags (bit 0: binary), one byte the length of the origin id,
// the origin id (this endpoint's, so that the process that sent it skips its own copy), the payload.

/** Send `data` to `peers` that keep up; how many got it. */
export type Deliver<Context> = (peers: Iterable<WsConnection<Context>>, data: string | Buffer) => number;

export interface FanoutOptions<Context> {
  bus: Bus | undefined;
  busName: string;
  maxChannelsPerPeer: number;
  maxChannelNameLength: number;
  deliver: Deliver<Context>;
  /** Every peer of this process, for broadcast. */
  peers: () => Iterable<WsConnection<Context>>;
  onLost: ((info: BusEvents['lost']) => void) | undefined;
}

interface Channel<Context> {
  readonly members: Set<WsConnection<Context>>;
  subscription: Promise<BusSubscription | undefined> | undefined;
}

const BINARY = 1;

export class Fanout<Context> {
  readonly #options: FanoutOptions<Context>;
  readonly #origin = newBusId();
  readonly #channels = new Map<string, Channel<Context>>();
  readonly #joined = new WeakMap<WsConnection<Context>, Set<string>>();
  #logger: Logger | undefined;
  #broadcastSubscription: Promise<BusSubscription | undefined> | undefined;
  #stopListening: Array<() => void> = [];
  /**
   * Publishing failed and has not succeeded since: one report per outage, not one per message (an
   * onLost that broadcasts would otherwise report its own failure, and so on while the bus is down).
   */
  #publishFailing = false;

  constructor(options: FanoutOptions<Context>) {
    this.#options = options;
  }

  get bus(): Bus | undefined {
    return this.#options.bus;
  }

  /** The endpoint opened: with a bus, listen for broadcasts from the other processes. */
  open(logger: Logger): void {
    this.#logger = logger;
    const bus = this.#options.bus;
    if (bus === undefined || this.#broadcastSubscription !== undefined) return;
    this.#broadcastSubscription = this.#subscribe(this.#busChannel(undefined), (message) =>
      this.#options.deliver(this.#options.peers(), message),
    );
    this.#stopListening.push(
      bus.on('lost', (info) => {
        if (info.kind !== 'pubsub') return;
        const prefix = `portbind:ws:${this.#options.busName}:`;
        const ours = info.names.filter((name) => name.startsWith(prefix));
        if (ours.length > 0 || info.names.length === 0) this.#lost({ ...info, names: ours });
      }),
    );
  }

  broadcast(data: string | Buffer): number {
    const sent = this.#options.deliver(this.#options.peers(), data);
    this.#publish(this.#busChannel(undefined), data);
    return sent;
  }

  publish(channel: string, data: string | Buffer): number {
    const members = this.#channels.get(channel)?.members;
    const sent = members === undefined ? 0 : this.#options.deliver(members, data);
    this.#publish(this.#busChannel(channel), data);
    return sent;
  }

  join(conn: WsConnection<Context>, channel: string): boolean {
    if (channel.length === 0 || Buffer.byteLength(channel) > this.#options.maxChannelNameLength) return false;
    let joined = this.#joined.get(conn);
    if (joined?.has(channel)) return true;
    if (joined !== undefined && joined.size >= this.#options.maxChannelsPerPeer) return false;
    if (!conn.open) return false;
    if (joined === undefined) {
      joined = new Set();
      this.#joined.set(conn, joined);
    }
    joined.add(channel);
    let entry = this.#channels.get(channel);
    if (entry === undefined) {
      entry = { members: new Set(), subscription: undefined };
      this.#channels.set(channel, entry);
      if (this.#options.bus !== undefined) {
        const members = entry.members;
        entry.subscription = this.#subscribe(this.#busChannel(channel), (message) => this.#options.deliver(members, message));
      }
    }
    entry.members.add(conn);
    return true;
  }

  leave(conn: WsConnection<Context>, channel: string): boolean {
    const joined = this.#joined.get(conn);
    if (joined === undefined || !joined.delete(channel)) return false;
    const entry = this.#channels.get(channel);
    if (entry === undefined) return true;
    entry.members.delete(conn);
    if (entry.members.size === 0) {
      this.#channels.delete(channel);
      void entry.subscription?.then((subscription) => subscription?.unsubscribe());
    }
    return true;
  }

  /** A peer closed: it leaves every channel. */
  forget(conn: WsConnection<Context>): void {
    const joined = this.#joined.get(conn);
    if (joined === undefined) return;
    for (const channel of [...joined]) this.leave(conn, channel);
    this.#joined.delete(conn);
  }

  channelsOf(conn: WsConnection<Context>): ReadonlySet<string> {
    return this.#joined.get(conn) ?? new Set();
  }

  members(channel: string): ReadonlySet<WsConnection<Context>> {
    return this.#channels.get(channel)?.members ?? new Set();
  }

  /** The endpoint stopped: leave every bus channel (the bus itself is the application's to close). */
  async stop(): Promise<void> {
    for (const stop of this.#stopListening.splice(0)) stop();
    const subscriptions = [this.#broadcastSubscription, ...[...this.#channels.values()].map((entry) => entry.subscription)];
    this.#broadcastSubscription = undefined;
    this.#channels.clear();
    await Promise.all(subscriptions.map(async (pending) => (await pending)?.unsubscribe()));
  }

  #busChannel(channel: string | undefined): string {
    // Bus names are byte strings (one char per byte): a channel name in UTF-8, as latin1 chars.
    const prefix = `portbind:ws:${this.#options.busName}:`;
    return channel === undefined ? `${prefix}all` : `${prefix}c:${Buffer.from(channel).toString('latin1')}`;
  }

  #subscribe(name: string, deliver: (data: string | Buffer) => void): Promise<BusSubscription | undefined> {
    const bus = this.#options.bus as Bus;
    return bus
      .subscribe(name, (message) => {
        const data = this.#decode(message);
        if (data !== undefined) deliver(data);
      })
      .catch((error: unknown) => {
        this.#logger?.error(
          { err: error, channel: name },
          'WebSocket: subscribing on the bus failed: this process misses what others publish there',
        );
        this.#lost({
          kind: 'pubsub',
          reason: `subscribe failed: ${(error as Error).message}`,
          since: Date.now(),
          until: Date.now(),
          names: [name],
        });
        return undefined;
      });
  }

  #publish(name: string, data: string | Buffer): void {
    const bus = this.#options.bus;
    if (bus === undefined) return;
    const payload = typeof data === 'string' ? Buffer.from(data) : data;
    const origin = Buffer.from(this.#origin, 'latin1');
    const frame = Buffer.allocUnsafe(2 + origin.length + payload.length);
    frame[0] = typeof data === 'string' ? 0 : BINARY;
    frame[1] = origin.length;
    origin.copy(frame, 2);
    payload.copy(frame, 2 + origin.length);
    bus.publish(name, frame).then(
      () => {
        this.#publishFailing = false;
      },
      (error: unknown) => {
        if (this.#publishFailing) return;
        this.#publishFailing = true;
        const now = Date.now();
        this.#logger?.warn(
          { err: error, channel: name },
          'WebSocket: publishing on the bus failed: only this process gets what is sent until it works again',
        );
        this.#lost({ kind: 'pubsub', reason: `publish failed: ${(error as Error).message}`, since: now, until: now, names: [name] });
      },
    );
  }

  /** A bus message as the data to send, or undefined for our own (or a malformed) one. */
  #decode(message: BusMessage): string | Buffer | undefined {
    const frame = message.data;
    if (frame.length < 2) return undefined;
    const originLength = frame[1] as number;
    if (frame.length < 2 + originLength) return undefined;
    if (frame.toString('latin1', 2, 2 + originLength) === this.#origin) return undefined;
    const payload = frame.subarray(2 + originLength);
    return ((frame[0] as number) & BINARY) !== 0 ? payload : payload.toString('utf8');
  }

  #lost(info: BusEvents['lost']): void {
    const hook = this.#options.onLost;
    if (hook === undefined) {
      this.#logger?.warn(info, 'WebSocket: messages from other processes may have been lost');
      return;
    }
    try {
      hook(info);
    } catch (error) {
      this.#logger?.error({ err: error }, 'onLost failed');
    }
  }
}
