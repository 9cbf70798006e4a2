import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import { ConfigError } from './errors.js';
import type { Logger } from './logger.js';

// Several worker processes on one host behind the same ports (issue 12, "Several cores on one
// host"), on Node's own `node:cluster`: the primary process owns every listener and hands each
// accepted connection to a worker (round-robin, Node's default on Linux); every worker runs the
// same program and serves whole connections. The primary runs no adapter (and with the static
// `PortService.run(build)` builds none either: no storage opened, no bus connected there): it forks, watches and
// replaces workers, forwards SIGTERM/SIGINT (every worker drains as a single process does), and on
// SIGHUP replaces the workers one at a time (a rolling restart: a new worker is ready before the
// old one drains, and the primary's listeners never close, so no connection is refused).
//
// Not written by hand elsewhere: pm2 and `throng` do this for a whole app, but they wrap the
// program from outside and know nothing of PortService's all-or-none start, its readiness or its
// drain; `node:cluster` itself is the maintained primitive, and this file is only the supervisor.
//
// `reusePort` (each worker binding its own socket with SO_REUSEPORT, the kernel spreading
// connections) arrived in Node 22.12 / 23.1; on Node 20 the primary's round-robin is the way.
// {@link reusePortAvailable} says which the running Node has; the supervisor uses round-robin
// on every version for now (see the core README).

/** The environment variable that asks for workers: a whole number ≥ 1, or `auto` (one per CPU). */
export const WORKERS_ENV = 'WORKERS';

/** The number of workers `WORKERS` (or the `workers` run option) asks for; 1 = no workers. */
export function resolveWorkers(value: string | number | undefined): number {
  if (value === undefined || value === '') return 1;
  if (value === 'auto') return availableParallelism();
  const count = typeof value === 'number' ? value : /^\s*\d+\s*$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(count) || count < 1 || count > 1024) {
    throw new ConfigError(WORKERS_ENV, value, 'a whole number of worker processes from 1 to 1024, or auto (one per CPU)');
  }
  return count;
}

/** Whether this Node offers `reusePort` on `net.Server.listen` (Node ≥ 22.12 on the 22 line, ≥ 23.1). */
export function reusePortAvailable(version: string = process.versions.node): boolean {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  return major > 23 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12);
}

/** A worker's messages to the primary. */
export interface WorkerMessage {
  portbind: 'ready';
  urls: string[];
  /** How long this worker may take to drain (its service's grace period, readiness delay and a margin). */
  stopTimeoutMs?: number;
}

const isWorkerMessage = (message: unknown): message is WorkerMessage =>
  typeof message === 'object' && message !== null && (message as { portbind?: unknown }).portbind === 'ready';

/** How the supervisor ends: the exit code the primary should exit with. */
export interface SupervisorOptions {
  count: number;
  logger: Logger;
  signals: readonly NodeJS.Signals[];
  /** Replace the workers one at a time on this signal. Default SIGHUP. */
  restartSignal?: NodeJS.Signals;
  /** A worker that is not ready this long after its fork is killed, and the start (or the rolling restart) fails. */
  readyTimeoutMs?: number;
  /**
   * Before SIGKILL of a worker that does not exit after SIGTERM: the service's grace period plus a
   * margin. A worker that reports its own (in its ready message) gets that.
   */
  stopTimeoutMs: number;
}

/** Signals closer together than this count as one (as PortService.run). */
const duplicateSignalMs = 100;

/** What {@link supervise} gives the primary. */
export interface Supervisor {
  /** True once every worker is ready (every binding bound); false when the start failed. */
  ready: Promise<boolean>;
  /**
   * The code to exit with: once every worker is gone after a stop signal (0 when each drained and
   * exited 0), or at once when the start failed (1).
   */
  done: Promise<number>;
}

/**
 * The primary's side: fork `count` workers, wait until each reports ready, log the URLs once, and
 * supervise them until a stop signal.
 */
export function supervise(options: SupervisorOptions): Supervisor {
  const { count, logger } = options;
  const readyTimeoutMs = options.readyTimeoutMs ?? 60_000;
  const restartSignal = options.restartSignal ?? 'SIGHUP';
  /** Workers that serve (ready), in fork order. */
  const serving = new Set<Worker>();
  /** Workers forked and not yet ready. */
  const starting = new Map<Worker, (ok: boolean) => void>();
  /** Workers told to stop (a drain, or a replaced one). */
  const retiring = new Set<Worker>();
  /** What each worker said of its drain. */
  const stopTimeouts = new WeakMap<Worker, number>();
  let stopping = false;
  let firstSignalAt = 0;
  let restarting = false;
  let failures = 0;
  let crashBackoffMs = 500;
  let worstExit = 0;
  let finish: (code: number) => void = () => {};
  const done = new Promise<number>((resolve) => {
    finish = resolve;
  });

  const fork = (): Promise<Worker | undefined> => {
    const worker = cluster.fork({ PORTBIND_WORKER: '1' });
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        logger.error({ worker: worker.id, workerPid: worker.process.pid, readyTimeoutMs }, 'worker not ready in time: killed');
        worker.process.kill('SIGKILL');
        settle(false);
      }, readyTimeoutMs);
      timer.unref();
      const settle = (ok: boolean): void => {
        if (!starting.has(worker)) return;
        starting.delete(worker);
        clearTimeout(timer);
        if (ok) serving.add(worker);
        resolve(ok ? worker : undefined);
      };
      starting.set(worker, settle);
      worker.on('message', (message: unknown) => {
        if (isWorkerMessage(message) && starting.has(worker)) {
          logger.debug({ worker: worker.id, workerPid: worker.process.pid }, 'worker ready');
          if (firstUrls === undefined) firstUrls = message.urls;
          const own = message.stopTimeoutMs;
          if (typeof own === 'number' && Number.isFinite(own) && own > 0) stopTimeouts.set(worker, own);
          settle(true);
        }
      });
    });
  };
  let firstUrls: string[] | undefined;

  const stopWorker = (worker: Worker): Promise<void> =>
    new Promise((resolve) => {
      retiring.add(worker);
      serving.delete(worker);
      if (worker.isDead()) {
        resolve();
        return;
      }
      worker.once('exit', () => resolve());
      // First out of the primary's round-robin (disconnect() takes the worker off every listener at
      // once, then tells it so over IPC), so that no new connection is handed to a worker about to
      // exit: a connection in flight to a worker that exits before answering would be left open in
      // the primary, unanswered (node:cluster re-sends only what a live worker declines). Then the
      // drain in each protocol's terms.
      if (worker.isConnected()) worker.disconnect();
      worker.process.kill('SIGTERM');
      const timer = setTimeout(() => {
        logger.warn({ worker: worker.id, workerPid: worker.process.pid }, 'worker still running after its grace period: killed');
        worker.process.kill('SIGKILL');
      }, stopTimeouts.get(worker) ?? options.stopTimeoutMs);
      timer.unref();
      worker.once('exit', () => clearTimeout(timer));
    });

  const stopAll = async (): Promise<void> => {
    const all = [...serving, ...starting.keys(), ...retiring].filter((worker) => !worker.isDead());
    await Promise.all(all.map(stopWorker));
  };

  cluster.on('exit', (worker, code, signal) => {
    const settle = starting.get(worker);
    if (settle !== undefined) {
      // Died before it was ready: its start failed (a port in use, bad config). All or none.
      logger.error({ worker: worker.id, workerPid: worker.process.pid, code, signal }, 'worker exited before it was ready');
      settle(false);
      return;
    }
    if (retiring.delete(worker)) {
      if (code !== 0) worstExit = 1;
      logger.debug({ worker: worker.id, workerPid: worker.process.pid, code, signal }, 'worker stopped');
      return;
    }
    serving.delete(worker);
    if (stopping) return;
    // A serving worker died on its own: replace it, backing off while they keep dying.
    failures++;
    logger.error(
      { worker: worker.id, workerPid: worker.process.pid, code, signal, restartInMs: crashBackoffMs },
      'worker died: starting another',
    );
    const delay = crashBackoffMs;
    crashBackoffMs = Math.min(crashBackoffMs * 2, 10_000);
    setTimeout(async () => {
      if (stopping) return;
      const replacement = await fork();
      if (replacement !== undefined) {
        // Alive and well for a while: forget the backoff.
        setTimeout(() => {
          if (failures > 0 && !replacement.isDead()) crashBackoffMs = 500;
        }, 30_000).unref();
      }
    }, delay).unref();
  });

  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      if (Date.now() - firstSignalAt < duplicateSignalMs) return;
      logger.warn({ signal }, 'second signal: killing the workers and exiting now');
      for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGKILL');
      finish(1);
      return;
    }
    stopping = true;
    firstSignalAt = Date.now();
    logger.info({ signal, workers: serving.size }, 'draining every worker');
    stopAll().then(() => {
      logger.info({ code: worstExit }, 'every worker stopped');
      finish(worstExit);
    });
  };

  const rollingRestart = async (): Promise<void> => {
    if (stopping) return;
    if (restarting) {
      logger.warn('a rolling restart is under way already');
      return;
    }
    restarting = true;
    const old = [...serving];
    logger.info({ workers: old.length }, 'rolling restart: replacing the workers one at a time');
    try {
      for (const worker of old) {
        if (stopping) return;
        const replacement = await fork();
        if (replacement === undefined) {
          logger.error('rolling restart stopped: a new worker did not become ready (the old ones go on serving)');
          return;
        }
        await stopWorker(worker);
      }
      logger.info({ workers: serving.size }, 'rolling restart done');
    } finally {
      restarting = false;
    }
  };

  for (const signal of options.signals) process.on(signal, stop);
  process.on(restartSignal, () => void rollingRestart());

  logger.info({ workers: count }, `starting ${count} workers`);
  const ready = Promise.all(Array.from({ length: count }, fork)).then(async (started) => {
    if (stopping) return false;
    if (started.some((worker) => worker === undefined)) {
      logger.error('start failed: not every worker became ready');
      stopping = true;
      await stopAll();
      finish(1);
      return false;
    }
    for (const url of firstUrls ?? []) logger.info({ url, workers: count }, `listening on ${url} (${count} workers)`);
    return true;
  });
  return { ready, done };
}

/** In a worker: tell the primary every binding is bound (and its URLs). */
export function reportReady(urls: string[], stopTimeoutMs?: number): void {
  if (!cluster.isWorker || process.send === undefined) return;
  const message: WorkerMessage = { portbind: 'ready', urls, stopTimeoutMs };
  process.send(message);
}

/** True in a worker forked by {@link supervise}. */
export function isPortbindWorker(env: Record<string, string | undefined> = process.env): boolean {
  return cluster.isWorker && env.PORTBIND_WORKER === '1';
}
