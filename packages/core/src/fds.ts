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

/** What a binding with no limit of its own is sure to get before explicit limits are honoured in full. */
const unlimitedFloor = 1024;

/**
 * Share `budget` descriptors among bindings that asked for `requested` connections each (0: no
 * limit). When the explicit limits fit with at least 1024 (or an even share, if less) left for
 * each binding without one, every explicit limit is granted whole, as Redis keeps `maxclients`
 * when the descriptors are there, and the bindings without a limit split the rest. Otherwise the
 * budget is shared max-min fair: the smallest requests are granted whole, the rest split what is
 * left evenly. Every binding gets at least 1.
 */
export function shareConnections(requested: readonly number[], budget: number): number[] {
  const unlimited = requested.filter((value) => value <= 0).length;
  const explicit = requested.reduce((sum, value) => sum + (value > 0 ? value : 0), 0);
  const floor = Math.min(unlimitedFloor, Math.floor(Math.max(0, budget) / Math.max(1, requested.length)));
  if (explicit + unlimited * floor <= budget) {
    const rest = unlimited > 0 ? Math.max(1, Math.floor((budget - explicit) / unlimited)) : 0;
    return requested.map((value) => (value > 0 ? value : rest));
  }
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
