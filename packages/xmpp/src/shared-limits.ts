import { type Bus, type BusSubscription, type Logger, newBusId } from '@portbind/core';

// Login throttling and the in-band registration limit across the processes of one service
// (issue 12): every process counts what every other one saw. A failed login, a successful one and
// an account registered in-band are published on the bus (`xmpp:limits:<domain>`) and applied by
// every other process to its own LoginThrottle and registration window, so an attacker who spreads
// guesses over the processes behind a routing layer meets the same limit as on one process. Pub/sub
// is enough: a count missed while the bus is away only makes one lockout start a little later, and
// the local counts still hold meanwhile.

/** What the processes tell each other. */
interface LimitEvent {
  /** The sending process, to skip its own events. */
  n: string;
  k: 'failed' | 'succeeded' | 'registered';
  a: string;
  u?: string;
}

export interface SharedLimitsHost {
  readonly domain: string;
  readonly logger: Logger;
  /** Apply another process's event to this process's counts. */
  failed(address: string, account: string | undefined): void;
  succeeded(address: string, account: string | undefined): void;
  registered(address: string): void;
}

/** Longest address or account accepted from the bus: anything longer is not ours. */
const MAX_FIELD = 1100;

export class SharedLimits {
  readonly #bus: Bus;
  readonly #host: SharedLimitsHost;
  readonly #channel: string;
  readonly #node = newBusId();
  #subscription: Promise<BusSubscription | undefined> | undefined;
  /** Publishing failed and has not worked since: logged once per outage. */
  #failing = false;

  constructor(bus: Bus, host: SharedLimitsHost) {
    this.#bus = bus;
    this.#host = host;
    // Bus names are byte strings: the domain (ASCII after IDNA) as it is.
    this.#channel = `xmpp:limits:${host.domain}`;
  }

  start(): void {
    this.#subscription ??= this.#bus
      .subscribe(this.#channel, (message) => this.#receive(message.data))
      .catch((error: unknown) => {
        this.#host.logger.warn({ err: error }, 'XMPP: login limits are per process until the bus is back (subscribing failed)');
        return undefined;
      });
  }

  failed(address: string, account: string | undefined): void {
    this.#publish({ n: this.#node, k: 'failed', a: address, ...(account === undefined ? {} : { u: account }) });
  }

  succeeded(address: string, account: string | undefined): void {
    this.#publish({ n: this.#node, k: 'succeeded', a: address, ...(account === undefined ? {} : { u: account }) });
  }

  registered(address: string): void {
    this.#publish({ n: this.#node, k: 'registered', a: address });
  }

  async stop(): Promise<void> {
    const subscription = await this.#subscription;
    this.#subscription = undefined;
    await subscription?.unsubscribe();
  }

  #publish(event: LimitEvent): void {
    this.#bus.publish(this.#channel, JSON.stringify(event)).then(
      () => {
        this.#failing = false;
      },
      (error: unknown) => {
        if (this.#failing) return;
        this.#failing = true;
        this.#host.logger.warn({ err: error }, 'XMPP: login limits are per process until the bus is back (publishing failed)');
      },
    );
  }

  #receive(data: Buffer): void {
    let event: LimitEvent;
    try {
      event = JSON.parse(data.toString('utf8')) as LimitEvent;
    } catch {
      return;
    }
    if (typeof event !== 'object' || event === null || event.n === this.#node) return;
    if (typeof event.a !== 'string' || event.a.length > MAX_FIELD) return;
    const account = typeof event.u === 'string' && event.u.length <= MAX_FIELD ? event.u : undefined;
    if (event.k === 'failed') this.#host.failed(event.a, account);
    else if (event.k === 'succeeded') this.#host.succeeded(event.a, account);
    else if (event.k === 'registered') this.#host.registered(event.a);
  }
}
