import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { request } from 'node:http';
import { createInterface } from 'node:readline';
import { afterEach } from 'vitest';

// An app of packages/core/test/fixtures run as a process of its own (PORT=0, JSON log lines on stdout),
// as the workers tests use it: its log lines, a wait for one, plain GETs that tell its processes apart.

export interface LogLine {
  msg?: string;
  url?: string;
  err?: { message?: string; code?: string };
  [key: string]: unknown;
}

export interface Running {
  child: ChildProcess;
  lines: LogLine[];
  /** Resolves with the first log line that matches (seen already, or to come). */
  waitFor(match: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  exited: Promise<[number | null, NodeJS.Signals | null]>;
}

const running: ChildProcess[] = [];
afterEach(() => {
  for (const child of running.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

/**
 * Starts `app` with `env` over the test's environment (without vitest's variables, NODE_ENV and WORKERS, which
 * the app would otherwise inherit); killed after the test if it still runs.
 */
export function startApp(app: string, env: Record<string, string>, waitTimeoutMs = 20_000): Running {
  const { VITEST: _v, VITEST_WORKER_ID: _w, VITEST_POOL_ID: _p, NODE_ENV: _n, WORKERS: _workers, ...parent } = process.env;
  const child = spawn(process.execPath, [app], {
    env: { ...parent, PORT: '0', LOG_LEVEL: 'debug', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  running.push(child);
  const lines: LogLine[] = [];
  const waiters: { match: (line: LogLine) => boolean; resolve: (line: LogLine) => void }[] = [];
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (text) => {
    let line: LogLine;
    try {
      line = JSON.parse(text) as LogLine;
    } catch {
      line = { msg: text };
    }
    lines.push(line);
    for (const waiter of [...waiters]) {
      if (waiter.match(line)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(line);
      }
    }
  });
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  return {
    child,
    lines,
    exited,
    waitFor(match, timeoutMs = waitTimeoutMs) {
      const seen = lines.find(match);
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no such log line in ${timeoutMs} ms; got:\n${lines.map((l) => JSON.stringify(l)).join('\n')}`)),
          timeoutMs,
        );
        waiters.push({
          match,
          resolve: (line) => {
            clearTimeout(timer);
            resolve(line);
          },
        });
      });
    },
  };
}

/** GET on a connection of its own (no keep-alive): the body. */
export function get(url: string, path = '/'): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(new URL(path, url), { agent: false, headers: { connection: 'close' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
      });
      res.on('end', () => resolve(body));
      res.on('error', reject);
    });
    req.on('error', reject);
    // A request nobody answers must fail the test with a reason, not hang it.
    req.setTimeout(10_000, () => req.destroy(new Error(`no answer in 10 s from ${url}${path}`)));
    req.end();
  });
}

/** The URL of the app's "listening on" line. */
export async function listening(app: Running): Promise<string> {
  const line = await app.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('listening on'));
  return line.url as string;
}

/** The pids that answered `requests` GETs (the app answers with its pid), each on a connection of its own. */
export async function pidsOver(url: string, requests: number): Promise<Set<number>> {
  const pids = new Set<number>();
  for (let i = 0; i < requests; i++) pids.add(Number(await get(url)));
  return pids;
}
