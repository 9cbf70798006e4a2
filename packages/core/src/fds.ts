import { readdirSync, readFileSync } from 'node:fs';

/** File descriptors kept free for everything but accepted connections (Redis keeps 32 too). */
export const reservedFds = 32;

/** The process's open-file budget: its soft `RLIMIT_NOFILE` and how many descriptors are open now. */
export interface FdBudget {
  /** Soft limit on open files (`ulimit -n`). */
  limit: number;
  /** Descriptors open at the time of reading. */
  open: number;
}

/**
 * Read the soft open-file limit (Linux: `/proc/self/limits`, "Max open files") and count the open
 * descriptors (`/proc/self/fd`). Undefined where that is not available or the limit is unlimited:
 * then core does not lower any connection limit.
 */
export function readFdBudget(): FdBudget | undefined {
  try {
    const limits = readFileSync('/proc/self/limits', 'utf8');
    const line = limits.split('\n').find((text) => text.startsWith('Max open files'));
    const soft = line?.slice('Max open files'.length).trim().split(/\s+/)[0];
    if (soft === undefined || !/^\d+$/.test(soft)) return undefined;
    const open = readdirSync('/proc/self/fd').length;
    return { limit: Number(soft), open };
  } catch {
    return undefined;
  }
}

/**
 * Share `budget` descriptors among bindings that asked for `requested` connections each (0: no
 * limit): the smallest requests are granted whole, the rest split what is left evenly. Every
 * binding gets at least 1.
 */
export function shareConnections(requested: readonly number[], budget: number): number[] {
  const order = requested.map((value, index) => ({ index, want: value > 0 ? value : Number.POSITIVE_INFINITY }));
  order.sort((a, b) => a.want - b.want);
  const granted = new Array<number>(requested.length).fill(0);
  let left = Math.max(0, budget);
  order.forEach(({ index, want }, position) => {
    const share = Math.floor(left / (order.length - position));
    const grant = Math.max(1, Math.min(want, share));
    granted[index] = grant;
    left = Math.max(0, left - grant);
  });
  return granted;
}
