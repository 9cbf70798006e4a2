import { setMaxListeners } from 'node:events';
import type { Adapter } from './adapter.js';
import { Binding, type BindOptions } from './binding.js';
import { resolveListen } from './config.js';
import { ConfigError, StateError, WorkersError } from './errors.js';
import { readFdBudget, reservedFds, shareConnections } from './fds.js';
import { createLogger, type Logger } from './logger.js';
import { type PortSharingOptions, SharedPort, sharingSettings } from './unify.js';
import { isPortbindWorker, reportReady, resolveWorkers, supervise, WORKERS_ENV } from './workers.js';

export interface PortServiceOptions {
  /** Where logs go. Default: pino on stdout, level from `LOG_LEVEL`, silent under a test runner. */
  logger?: Logger;
  /** How long `stop()` lets in-flight work finish before it force-closes. Default 10 000 ms. */
  gracePeriodMs?: number;
  /**
   * On `stop()`, keep accepting connections this long while readiness already reports "not
   * ready" (HTTP `/readyz` answers 503), so a load balancer stops routing here before the port
   * closes, like a Kubernetes preStop sleep. Default 0: stop accepting at once.
   */
  readinessDelayMs?: number;
  /** Environment to read `PORT`, `HOST`, … from. Default: `process.env`. */
  env?: Record<string, string | undefined>;
  /**
   * Port unification: bindings given the same port (`RESP_PORT=$PORT`, or the same `port` option)
   * always share one listener, which tells their protocols apart by each connection's first bytes.
   * `join: true` makes bindings without an address of their own share the main binding's port, so
   * `PORT` alone serves everything. The limits of classification are set here too.
   */
  portSharing?: PortSharingOptions;
}

/** `idle` → `starting` → `running` → `draining` → `stopped`. */
export type ServiceState = 'idle' | 'starting' | 'running' | 'draining' | 'stopped';

/** What `stop()` did. */
export interface StopReport {
  /** Connections still open at the grace deadline, and destroyed. */
  forced: number;
  /** Milliseconds from `stop()` to the last socket closed. */
  durationMs: number;
}

/** Options of {@link PortService.run}. */
export interface RunOptions {
  /** Signals that start a graceful stop. Default: SIGTERM and SIGINT. */
  signals?: NodeJS.Signals[];
  /**
   * Worker processes on this host behind the same ports (`node:cluster`: this process becomes the
   * primary, which owns the listeners and hands connections to the workers; each worker runs the
   * whole program). A number, or `auto` for one per CPU. Default: `WORKERS` from the environment,
   * else 1 (no workers, this process serves). SIGTERM/SIGINT drain every worker; SIGHUP replaces
   * them one at a time. Every binding must be `shared` in scope ({@link Adapter.scope}), and TCP.
   */
  workers?: number | 'auto';
}

/** Options of the static {@link PortService.run} (a service built by a factory). */
export interface RunServiceOptions extends RunOptions {
  /** Environment to read `WORKERS` from. Default: `process.env`. */
  env?: Record<string, string | undefined>;
  /** The primary's logger (and where a factory's failure is logged). Default: pino on stdout, level from `LOG_LEVEL`. */
  logger?: Logger;
}

/**
 * A self-contained service that exports its protocols by binding ports (twelve-factor, factor VII).
 *
 * ```ts
 * import { PortService } from '@portbind/core';
 * import { httpAdapter } from '@portbind/http';
 *
 * const service = new PortService();
 * service.bind(httpAdapter({ fetch: () => new Response('hi') })); // PORT, default 5000
 * await service.run(); // start, log URLs, drain on SIGTERM
 * ```
 */
export class PortService {
  readonly logger: Logger;
  readonly gracePeriodMs: number;
  readonly readinessDelayMs: number;
  readonly #env: Record<string, string | undefined>;
  readonly #sharing: ReturnType<typeof sharingSettings>;
  readonly #bindings: Binding[] = [];
  #state: ServiceState = 'idle';
  /** Set when the drain stops accepting connections (after the readiness delay). */
  #stopAccepting = false;
  #stopping: Promise<StopReport> | undefined;
  #starting: Promise<unknown> | undefined;

  constructor(options: PortServiceOptions = {}) {
    this.logger = options.logger ?? createLogger();
    this.gracePeriodMs = options.gracePeriodMs ?? 10_000;
    this.readinessDelayMs = options.readinessDelayMs ?? 0;
    this.#env = options.env ?? process.env;
    this.#sharing = sharingSettings(options.portSharing);
    for (const [option, value] of [
      ['gracePeriodMs', this.gracePeriodMs],
      ['readinessDelayMs', this.readinessDelayMs],
    ] as const) {
      if (!(typeof value === 'number' && Number.isFinite(value) && value >= 0))
        throw new ConfigError(option, value, 'a number of milliseconds ≥ 0');
    }
  }

  get state(): ServiceState {
    return this.#state;
  }

  /** Readiness: true once started and until draining begins. */
  get ready(): boolean {
    return this.#state === 'running';
  }

  /** New connections are welcome: false once the drain stops accepting them (after `readinessDelayMs`). */
  get accepting(): boolean {
    return !this.#stopAccepting && this.#state !== 'stopped';
  }

  get draining(): boolean {
    return this.#state === 'draining';
  }

  get bindings(): readonly Binding[] {
    return this.#bindings;
  }

  /** Add an adapter and where it listens. Call before `start()`. */
  bind(adapter: Adapter, options: BindOptions = {}): Binding {
    if (this.#state !== 'idle') throw new StateError(`bind() after start(): the service is ${this.#state}`);
    if (this.#bindings.some((other) => other.adapter === adapter)) {
      throw new StateError(
        `adapter "${adapter.name}" is bound already: an adapter object serves one binding; make another with its factory`,
      );
    }
    const binding = new Binding(adapter, options, this.logger, this);
    if (this.#bindings.some((other) => other.name === binding.name)) {
      throw new StateError(`a binding named "${binding.name}" exists already: pass { name } to tell them apart`);
    }
    this.#bindings.push(binding);
    return binding;
  }

  /** The binding with this name (the adapter's name by default). */
  binding(name: string): Binding {
    const found = this.#bindings.find((binding) => binding.name === name);
    if (found === undefined) throw new StateError(`no binding named "${name}"`);
    return found;
  }

  /**
   * Bind every port, or none: when one fails, those already bound are released and the error
   * (a `BindError` or a `ConfigError`) names the binding, the address and the cause.
   */
  async start(): Promise<readonly Binding[]> {
    if (this.#state !== 'idle') throw new StateError(`start() when the service is ${this.#state}`);
    this.#state = 'starting';
    const starting = this.#listenAll();
    this.#starting = starting.catch(() => {});
    await starting;
    this.#state = 'running';
    return this.#bindings;
  }

  async #listenAll(): Promise<void> {
    try {
      // Resolve every address first: a bad PORT fails before anything is bound.
      const groups = this.#listeners();
      const shared = [...groups.values()]
        .filter((members) => members.length > 1)
        .map((members) => new SharedPort(members, this.#sharing, this.logger));
      this.#fitOpenFileLimit();
      const started: Binding[] = [];
      try {
        for (const members of groups.values()) {
          const [first] = members;
          if (first === undefined) continue;
          if (members.length === 1) {
            await first.listen();
            started.push(first);
            continue;
          }
          const port = shared.find((candidate) => candidate.members === members) as SharedPort;
          const spec = first.spec;
          if (spec === undefined) throw new Error('a shared port without its address');
          try {
            await port.listen(spec, first.options.backlog);
          } catch (error) {
            port.stopAccepting();
            throw error;
          }
          started.push(...members);
        }
      } catch (error) {
        for (const binding of started) binding.stopAccepting();
        await Promise.all(started.map((binding) => binding.closed()));
        throw error;
      }
    } catch (error) {
      this.#state = 'idle';
      throw error;
    }
  }

  /**
   * Resolve every binding's address, and group the bindings that share a listener: the same TCP
   * host and port (not 0), the same Unix socket path, or (option `portSharing.join`) no address of
   * their own, joining the main binding's.
   */
  #listeners(): Map<unknown, Binding[]> {
    const bindings = this.#bindings;
    const main = bindings.find((binding) => (binding.options.portEnv ?? binding.adapter.portEnv) === 'PORT') ?? bindings[0];
    const groups = new Map<unknown, Binding[]>();
    const keys = new Map<Binding, unknown>();
    const keyOf = (binding: Binding): unknown => {
      const spec = binding.spec;
      if (spec === undefined) return binding;
      if (spec.kind === 'unix') return `unix:${spec.path}`;
      return spec.port === 0 ? binding : `${spec.host ?? '*'}:${spec.port}`;
    };
    if (main !== undefined) {
      main.setSpec(resolveListen(main.options, main.adapter, this.#env));
      keys.set(main, keyOf(main));
    }
    for (const binding of bindings) {
      if (binding === main) continue;
      const variable = binding.options.portEnv ?? binding.adapter.portEnv;
      const own = binding.options.port !== undefined || binding.options.path !== undefined || this.#env[variable] !== undefined;
      if (this.#sharing.join && !own && main?.spec !== undefined) {
        binding.setSpec(main.spec);
        keys.set(binding, keys.get(main));
        continue;
      }
      binding.setSpec(resolveListen(binding.options, binding.adapter, this.#env));
      keys.set(binding, keyOf(binding));
    }
    for (const binding of bindings) {
      const key = keys.get(binding);
      const members = groups.get(key);
      if (members === undefined) groups.set(key, [binding]);
      else members.push(binding);
    }
    return groups;
  }

  /**
   * Lower each binding's `maxConnections` so that together they fit what the process may open
   * (its soft `RLIMIT_NOFILE`, less the descriptors open now and a reserve), as Redis lowers
   * `maxclients`; say so when a binding gets less than it asked for.
   */
  #fitOpenFileLimit(): void {
    const fds = readFdBudget();
    if (fds === undefined) return;
    const bindings = this.#bindings;
    // Each listener takes a descriptor of its own.
    const budget = fds.limit - fds.open - reservedFds - bindings.length;
    const requested = bindings.map((binding) => binding.requestedLimits.maxConnections);
    const granted = shareConnections(requested, budget);
    const lowered: string[] = [];
    bindings.forEach((binding, index) => {
      const asked = requested[index] ?? 0;
      const grant = granted[index] ?? 1;
      if (asked > 0 && asked <= grant) {
        binding.setMaxConnections(asked);
        return;
      }
      binding.setMaxConnections(grant);
      // An explicit limit lowered is always news; a cap on "no limit" only when it is small.
      if (asked > 0 || grant < 1024) lowered.push(`${binding.name} ${grant} (asked: ${asked > 0 ? asked : 'no limit'})`);
    });
    if (lowered.length > 0) {
      this.logger.warn(
        {
          openFileLimit: fds.limit,
          openFiles: fds.open,
          reservedFds,
          maxConnections: Object.fromEntries(bindings.map((b) => [b.name, b.limits.maxConnections])),
        },
        `maxConnections lowered to fit the open-file limit: ulimit -n is ${fds.limit}, ${fds.open} files are open and ${reservedFds} stay in reserve, so ${lowered.join(', ')}; raise ulimit -n (systemd: LimitNOFILE=) for more`,
      );
    }
  }

  /**
   * Drain and stop: stop accepting, let each adapter finish in-flight work and close long-lived
   * connections in its protocol's terms, then force-close what remains after the grace period.
   * Calling it again returns the same promise.
   */
  stop(): Promise<StopReport> {
    if (this.#stopping) return this.#stopping;
    if ((this.#state === 'idle' && this.#starting === undefined) || this.#state === 'stopped') {
      this.#state = 'stopped';
      return Promise.resolve({ forced: 0, durationMs: 0 });
    }
    if (this.#state === 'running') this.#beginDrain();
    this.#stopping = this.#drain();
    return this.#stopping;
  }

  /** Reload TLS certificate files on every TLS binding; new connections use them. */
  async reloadTls(): Promise<void> {
    await Promise.all(this.#bindings.map((binding) => binding.reloadTls()));
    this.logger.info('TLS material reloaded');
  }

  /**
   * The twelve-factor entry point: start, log every URL, and on SIGTERM or SIGINT drain and exit 0.
   * A second signal exits at once (code 1), unless it comes within 100 ms of the first (a copy forwarded by
   * a wrapper such as `npm start`, which Ctrl-C also reaches). A start failure is logged and exits 1.
   */
  async run(options: RunOptions = {}): Promise<void> {
    const signals = options.signals ?? ['SIGTERM', 'SIGINT'];
    const worker = isPortbindWorker();
    if (worker) {
      // A primary that built no service (the static run) checked nothing: every worker refuses what workers would split.
      try {
        this.#checkWorkers();
      } catch (error) {
        this.logger.error({ err: error }, `start failed: ${(error as Error).message}`);
        process.exit(1);
      }
    } else {
      let workers: number;
      try {
        workers = resolveWorkers(options.workers ?? this.#env[WORKERS_ENV]);
        if (workers > 1) this.#checkWorkers();
      } catch (error) {
        this.logger.error({ err: error }, `start failed: ${(error as Error).message}`);
        process.exit(1);
      }
      if (workers > 1) {
        // The primary: no adapter runs here; the workers (this same program) serve.
        const supervisor = supervise({
          count: workers,
          logger: this.logger,
          signals,
          stopTimeoutMs: this.#stopTimeoutMs(),
        });
        supervisor.done.then((code) => process.exit(code));
        if (!(await supervisor.ready)) await new Promise(() => {}); // exiting: run() never returns
        return;
      }
    }
    try {
      await this.start();
    } catch (error) {
      this.logger.error({ err: error }, `start failed: ${(error as Error).message}`);
      process.exit(1);
    }
    const urls = this.#bindings.flatMap((binding) => binding.urls);
    for (const binding of this.#bindings) {
      for (const url of binding.urls) {
        // A worker's URLs are the primary's to log, once for all of them.
        if (worker) this.logger.debug({ binding: binding.name, url }, `worker listening on ${url}`);
        else this.logger.info({ binding: binding.name, url }, `listening on ${url}`);
      }
    }
    if (worker) {
      // SIGHUP is the primary's (a rolling restart); one sent to the whole process group must not end a worker.
      process.on('SIGHUP', () => this.logger.debug('SIGHUP in a worker: the primary restarts the workers'));
      reportReady(urls, this.#stopTimeoutMs());
      // The primary gone (killed): nobody hands this worker connections any more; drain and exit.
      process.once('disconnect', () => {
        if (this.#stopping === undefined) process.emit('SIGTERM', 'SIGTERM');
      });
    }
    let firstSignalAt = 0;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (this.#stopping) {
        // Ctrl-C reaches every process of the terminal's group, and a wrapper such as `npm start`
        // forwards its own copy too: one keypress can arrive twice within a few milliseconds. Only
        // a signal sent on purpose later (a second Ctrl-C) cuts the drain short.
        if (Date.now() - firstSignalAt < duplicateSignalMs) {
          this.logger.debug({ signal }, 'the same signal again at once (forwarded by a wrapper): still draining');
          return;
        }
        this.logger.warn({ signal }, 'second signal: exiting now');
        process.exit(1);
      }
      firstSignalAt = Date.now();
      this.logger.info({ signal, gracePeriodMs: this.gracePeriodMs }, 'draining');
      this.stop().then(
        (report) => {
          this.logger.info(report, 'stopped');
          // A worker leaves once its IPC channel closes: every connection the primary handed over before
          // taking it off the listeners has been read by then (and declined, so re-sent elsewhere).
          if (worker && process.connected) {
            const exit = setTimeout(() => process.exit(0), 2000);
            process.once('disconnect', () => {
              clearTimeout(exit);
              process.exit(0);
            });
            return;
          }
          process.exit(0);
        },
        (error: unknown) => {
          this.logger.error({ err: error }, 'stop failed');
          process.exit(1);
        },
      );
    };
    for (const signal of signals) process.on(signal, onSignal);
  }

  /**
   * The twelve-factor entry point for a service that workers may serve: `build` makes it (opens its
   * storage, connects to its bus, binds its adapters) only in a process that serves. With
   * `WORKERS=N` (N > 1) this process is the *primary*: it never calls `build` — no adapter, no
   * storage, no bus connection here — and only supervises N workers, each of which runs this same
   * program, builds its own service and serves (then the promise never settles: the primary exits
   * when the workers are gone). Without workers (or in a worker) it is `(await build()).run()`.
   * `build` throwing is a start failure: logged, exit 1 (in a worker the primary stops the others
   * and exits 1 too: all or none).
   *
   * ```ts
   * await PortService.run(async () => {
   *   const service = new PortService();
   *   service.bind(httpAdapter({ fetch: () => new Response('hi') }));
   *   return service;
   * });
   * ```
   */
  static async run(build: () => PortService | Promise<PortService>, options: RunServiceOptions = {}): Promise<void> {
    const { env = process.env, logger: given, ...runOptions } = options;
    const logger = given ?? createLogger();
    let service: PortService;
    if (!isPortbindWorker()) {
      let workers: number;
      try {
        workers = resolveWorkers(options.workers ?? env[WORKERS_ENV]);
      } catch (error) {
        logger.error({ err: error }, `start failed: ${(error as Error).message}`);
        process.exit(1);
      }
      if (workers > 1) {
        const supervisor = supervise({
          count: workers,
          logger,
          signals: options.signals ?? ['SIGTERM', 'SIGINT'],
          // Until a worker says how long it drains (its grace period and readiness delay): the defaults'.
          stopTimeoutMs: 10_000 + 5_000,
        });
        supervisor.done.then((code) => process.exit(code));
        await supervisor.ready;
        // The primary goes no further: what follows run() in the program is the workers' (or the exit's).
        await new Promise(() => {});
      }
      // One process: serves itself, whatever the service's own env says of WORKERS.
      runOptions.workers = 1;
    }
    try {
      service = await build();
    } catch (error) {
      logger.error({ err: error }, `start failed: ${(error as Error).message}`);
      process.exit(1);
    }
    await service.run(runOptions);
  }

  /** How long the primary waits for a worker to drain before SIGKILL: the grace period, the readiness delay, and a margin. */
  #stopTimeoutMs(): number {
    return this.gracePeriodMs + this.readinessDelayMs + 5_000;
  }

  /**
   * Workers split a service in as many processes: refuse a binding whose connections meet in
   * memory (scope `local`), and Unix sockets (the path is bound once, by one process).
   */
  #checkWorkers(): void {
    this.#listeners();
    for (const binding of this.#bindings) {
      const scope = binding.options.scope ?? binding.adapter.scope ?? 'shared';
      if (scope === 'local') {
        throw new WorkersError(
          `binding "${binding.name}" keeps state between its connections in one process's memory (scope "local"), so workers would split it into services that cannot see each other; give it a bus (BUS_URL) if it has one, or bind it with { scope: 'shared' } if its connections never need to meet`,
        );
      }
      if (binding.spec?.kind === 'unix') {
        throw new WorkersError(
          `binding "${binding.name}" listens on a Unix socket (${binding.spec.path}), which one process binds: use a TCP port with workers, or one process per socket`,
        );
      }
    }
  }

  #beginDrain(): void {
    this.#state = 'draining';
    for (const binding of this.#bindings) {
      try {
        binding.adapter.beginDrain?.();
      } catch (error) {
        this.logger.error({ err: error, binding: binding.name }, 'adapter beginDrain failed');
      }
    }
  }

  async #drain(): Promise<StopReport> {
    const started = Date.now();
    // A stop() during start() waits for the ports to be bound (or not), then drains them.
    await this.#starting;
    if (this.#state !== 'draining') this.#beginDrain();
    if (this.readinessDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.readinessDelayMs));
    const grace = new AbortController();
    const timer = setTimeout(() => grace.abort(), this.gracePeriodMs);
    const deadline = grace.signal;
    // Every binding, adapter and endpoint may listen for the deadline: not a leak.
    setMaxListeners(0, deadline);
    this.#stopAccepting = true;
    for (const binding of this.#bindings) binding.stopAccepting();
    await Promise.all(
      this.#bindings.map(async (binding) => {
        try {
          await Promise.race([binding.adapter.drain(deadline), aborted(deadline)]);
        } catch (error) {
          this.logger.error({ err: error, binding: binding.name }, 'adapter drain failed');
        }
        await binding.connectionsClosed(deadline);
      }),
    );
    clearTimeout(timer);
    let forced = 0;
    for (const binding of this.#bindings) forced += binding.destroyAll();
    if (forced > 0) this.logger.warn({ forced }, 'grace period over: connections force-closed');
    await Promise.all(this.#bindings.map((binding) => binding.closed()));
    // Every connection is gone: adapters flush and release what they hold (stores, timers).
    await Promise.all(
      this.#bindings.map(async (binding) => {
        try {
          await binding.adapter.stopped?.();
        } catch (error) {
          this.logger.error({ err: error, binding: binding.name }, 'adapter close failed');
        }
      }),
    );
    this.#state = 'stopped';
    return { forced, durationMs: Date.now() - started };
  }
}

/** Signals closer together than this count as one (see `run()`). */
const duplicateSignalMs = 100;

function aborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
}
