import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { xml as clientXml, client as xmppClient } from '@xmpp/client';
import { freePort as freeHaproxyPort, Haproxy } from '../../../test/support/haproxy.js';
import { rawConnect, sleep } from '../../../test/support/net.js';
import { REDIS_SERVER, type Server } from '../../../test/support/redis-server.js';
import { sqliteStorage } from '../src/index.js';
import { clients, testCert } from './support.js';

// Real processes of one XMPP service on a real redis-server (issue 12), for cluster-redis.test.ts and
// cluster-muc-redis.test.ts: fixtures/cluster/node.mjs processes sharing one SQLite file, @xmpp/client
// users, JSON lines of a child's stdout, a redis-server that can be killed and started again.

export const fixtures = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'cluster');
export const PYTHON = '/usr/bin/python3';
/** What a test started (children, a redis-server, a temp dir, an HAProxy), stopped by {@link cleanup}. */
export const run: { children: ChildProcess[]; redis: Server | undefined; dir: string | undefined; haproxy: Haproxy | undefined } = {
  children: [],
  redis: undefined,
  dir: undefined,
  haproxy: undefined,
};

/** Stop everything a test started (call it in `afterEach`). */
export async function cleanup(): Promise<void> {
  await run.haproxy?.stop();
  run.haproxy = undefined;
  for (const child of run.children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await run.redis?.stop();
  run.redis = undefined;
  if (run.dir !== undefined) await rm(run.dir, { recursive: true, force: true });
  run.dir = undefined;
}

/** JSON lines of a child's stdout, waited for one by one. */
export class Lines {
  readonly #lines: unknown[] = [];
  #wake: (() => void) | undefined;
  #ended = false;

  constructor(stream: Readable) {
    let buffer = '';
    stream.on('data', (chunk: Buffer) => {
      buffer += chunk.toString();
      for (let end = buffer.indexOf('\n'); end !== -1; end = buffer.indexOf('\n')) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + 1);
        try {
          this.#lines.push(JSON.parse(line));
        } catch {
          // Not ours (a log line).
        }
      }
      this.#wake?.();
    });
    stream.on('end', () => {
      this.#ended = true;
      this.#wake?.();
    });
  }

  async next<T>(match: (line: Record<string, unknown>) => boolean, what: string, timeoutMs = 60_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const index = this.#lines.findIndex((line) => typeof line === 'object' && line !== null && match(line as Record<string, unknown>));
      if (index !== -1) return this.#lines.splice(index, 1)[0] as T;
      if (this.#ended) throw new Error(`ended waiting for ${what}; got ${JSON.stringify(this.#lines)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; got ${JSON.stringify(this.#lines)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }
}

/** One process of the service (fixtures/cluster/node.mjs, on the builds in dist/). */
export async function startNode(
  env: Record<string, string>,
): Promise<{ child: ChildProcess; port: number; node: string; stderr: () => string }> {
  const child = spawn(process.execPath, ['./node.mjs'], {
    cwd: fixtures,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  run.children.push(child);
  let errors = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    errors += chunk.toString();
  });
  const lines = new Lines(child.stdout as Readable);
  const ready = await lines.next<{ port: number; node: string }>((line) => typeof line.port === 'number', 'the node to listen');
  return { child, port: ready.port, node: ready.node, stderr: () => errors };
}

/** Two processes of the service on the Redis at `redisPort`, sharing one SQLite file (juliet and romeo) in a new `dir`. */
export async function twoNodes(
  redisPort: number,
  extraEnv: Record<string, string> = {},
): Promise<[Awaited<ReturnType<typeof startNode>>, Awaited<ReturnType<typeof startNode>>]> {
  run.dir = await mkdtemp(join(tmpdir(), 'portbind-xmpp-cluster-'));
  const storage = sqliteStorage({ file: join(run.dir, 'xmpp.sqlite') });
  await storage.users.create('juliet', 'balcony');
  await storage.users.create('romeo', 'r0meo!');
  await storage.close();
  const { cert, key } = testCert();
  const env = {
    BUS_URL: `redis://127.0.0.1:${redisPort}`,
    DATA_DIR: run.dir,
    TLS_CERT: cert,
    TLS_KEY: key,
    SESSION_TTL_MS: '2000',
    ...extraEnv,
  };
  return Promise.all([startNode(env), startNode(env)]);
}

/** romeo (or another user) with @xmpp/client: every chat body he receives, in order. */
export async function romeo(
  port: number,
  resource: string,
  account: { username: string; password: string } = { username: 'romeo', password: 'r0meo!' },
): Promise<{ bodies: string[]; xmpp: ReturnType<typeof xmppClient> }> {
  const xmpp = xmppClient({
    timeout: 20_000,
    service: `xmpp://127.0.0.1:${port}`,
    domain: 'localhost',
    ...account,
    resource,
  });
  xmpp.on('error', () => {});
  const bodies: string[] = [];
  xmpp.on('stanza', (stanza) => {
    const body = stanza.is('message') ? stanza.getChildText('body') : null;
    if (body !== null && body !== undefined) bodies.push(body);
  });
  clients.push(xmpp);
  await xmpp.start();
  await xmpp.send(clientXml('presence', {}));
  return { bodies, xmpp };
}

export async function until(check: () => boolean, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A redis-server on this port (no persistence: a restart starts empty, as after a crash without AOF). */
export async function redisOn(port: number): Promise<ChildProcess> {
  const child = spawn(
    REDIS_SERVER,
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--loglevel', 'warning', '--dir', tmpdir()],
    { stdio: 'ignore' },
  );
  run.children.push(child);
  for (let attempt = 0; ; attempt++) {
    try {
      (await rawConnect(port)).destroy();
      return child;
    } catch (error) {
      if (attempt > 100) throw error;
      await sleep(50);
    }
  }
}

/** HAProxy in front of two processes (round robin, health checks every 300 ms): its port, once both are UP. */
export async function behindHaproxy(onePort: number, twoPort: number): Promise<{ front: number; proxy: Haproxy }> {
  const front = await freeHaproxyPort();
  const proxy = await Haproxy.start({
    name: 'portbind-xmpp-cluster',
    config: [
      'defaults',
      '  mode tcp',
      '  timeout connect 5s',
      '  timeout client 5m',
      '  timeout server 5m',
      '  timeout check 5s',
      'frontend xmpp_in',
      `  bind 127.0.0.1:${front}`,
      '  default_backend xmpp',
      'backend xmpp',
      '  balance roundrobin',
      '  default-server check inter 300 fall 2 rise 2',
      `  server one 127.0.0.1:${onePort}`,
      `  server two 127.0.0.1:${twoPort}`,
    ],
  });
  run.haproxy = proxy;
  await proxy.waitFor('both UP', (states) => states['xmpp/one']?.status === 'UP' && states['xmpp/two']?.status === 'UP');
  return { front, proxy };
}
