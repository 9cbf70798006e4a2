import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { type AddressInfo, connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { PortService } from '@portbind/core';
import { Redis, type RedisOptions } from 'ioredis';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { freePort, REDIS_SERVER, startRedis } from '../../../test/support/redis-server.js';
import { parseAof } from '../src/aof.js';
import { createMiniRedis } from '../src/app.js';

// Helpers for the tests: start a real redis-server and mini-redis on free ports, and talk to
// them over raw TCP, byte for byte.

export { freePort, REDIS_SERVER } from '../../../test/support/redis-server.js';

export interface Started {
  port: number;
  stop(): Promise<void>;
}

/** Start redis-server with no persistence on a free port (test/support/redis-server.ts, shared with packages/resp). */
export const startRedisServer: () => Promise<Started> = startRedis;

/** Start mini-redis on ephemeral ports, in this process. */
export async function startMiniRedis(env: Record<string, string> = {}): Promise<Started & { service: PortService }> {
  const service = createMiniRedis({ env: { RESP_PORT: '0', PORT: '0', HOST: '127.0.0.1', ...env } });
  await service.start();
  const { port } = service.binding('resp').address as AddressInfo;
  return {
    port,
    service,
    stop: async () => {
      await service.stop();
    },
  };
}

/**
 * `work` on each server at once; resolves with every result, or rejects with the first failure only
 * once every server's work has ended. Promise.all rejects at the first failure and lets the other
 * server's session run on into the next test, on a server the tests share (its pushes, its keys).
 */
export async function onEach<S, T>(servers: readonly S[], work: (server: S) => Promise<T>): Promise<T[]> {
  const settled = await Promise.allSettled(servers.map(work));
  const failed = settled.find((outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
  return settled.map((outcome) => (outcome as PromiseFulfilledResult<T>).value);
}

/** A command: its words, as strings (UTF-8) or raw bytes. `'SET k v'` splits on spaces. */
export type CommandLine = string | ReadonlyArray<string | Buffer>;

const words = (command: CommandLine): Array<string | Buffer> => (typeof command === 'string' ? command.split(' ') : [...command]);

/** Encode commands as one pipelined RESP request. */
export function encode(commands: readonly CommandLine[]): Buffer {
  const parts: Buffer[] = [];
  for (const command of commands) {
    const args = words(command);
    parts.push(Buffer.from(`*${args.length}\r\n`));
    for (const arg of args) {
      const bytes = typeof arg === 'string' ? Buffer.from(arg) : arg;
      parts.push(Buffer.from(`$${bytes.length}\r\n`), bytes, Buffer.from('\r\n'));
    }
  }
  return Buffer.concat(parts);
}

/**
 * Where the reply starting at `start` ends, or -1 if it is not complete yet. Understands every
 * RESP2 and RESP3 type; this is what lets a test split a byte stream into replies.
 */
export function replyEnd(buffer: Buffer, start: number): number {
  const lineEnd = buffer.indexOf('\r\n', start);
  if (lineEnd === -1) return -1;
  const type = String.fromCharCode(buffer[start] as number);
  const header = buffer.toString('latin1', start + 1, lineEnd);
  let next = lineEnd + 2;
  if ('+-:_#,('.includes(type)) return next;
  const length = Number(header);
  if ('$=!'.includes(type)) {
    if (length < 0) return next;
    return buffer.length >= next + length + 2 ? next + length + 2 : -1;
  }
  if ('*~>%|'.includes(type)) {
    const items = length < 0 ? 0 : type === '%' || type === '|' ? length * 2 : length;
    for (let i = 0; i < items; i++) {
      next = replyEnd(buffer, next);
      if (next === -1) return -1;
    }
    // An attribute comes before the reply it describes.
    return type === '|' ? replyEnd(buffer, next) : next;
  }
  throw new Error(`not RESP at ${start}: ${JSON.stringify(buffer.toString('latin1', start, start + 40))}`);
}

/** A raw connection: send pipelined commands, get back each reply's exact bytes. */
export class RawClient {
  readonly socket: Socket;
  #buffer = Buffer.alloc(0);
  #waiting: (() => void) | undefined;
  #error: Error | undefined;

  constructor(port: number) {
    this.socket = connect(port, '127.0.0.1');
    this.socket.on('data', (chunk: Buffer) => {
      this.#buffer = Buffer.concat([this.#buffer, chunk]);
      this.#waiting?.();
    });
    this.socket.on('error', (error) => {
      this.#error = error;
      this.#waiting?.();
    });
    this.socket.on('close', () => {
      this.#error ??= new Error('connection closed');
      this.#waiting?.();
    });
  }

  /** Send the commands in one write; resolve with one Buffer per reply. */
  async send(commands: readonly CommandLine[]): Promise<Buffer[]> {
    this.socket.write(encode(commands));
    return this.read(commands.length);
  }

  /** Read `count` replies. */
  async read(count: number): Promise<Buffer[]> {
    const replies: Buffer[] = [];
    let offset = 0;
    for (;;) {
      while (replies.length < count) {
        const end = this.#buffer.length > offset ? replyEnd(this.#buffer, offset) : -1;
        if (end === -1) break;
        replies.push(this.#buffer.subarray(offset, end));
        offset = end;
      }
      if (replies.length === count) {
        this.#buffer = this.#buffer.subarray(offset);
        return replies.map((reply) => Buffer.from(reply));
      }
      if (this.#error) throw this.#error;
      await new Promise<void>((resolve) => {
        this.#waiting = resolve;
      });
      this.#waiting = undefined;
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

/** A reply's bytes as a string, `\r\n` shown as `⏎`: readable in a test diff, still exact (latin1). */
export const show = (reply: Buffer): string => reply.toString('latin1').replaceAll('\r\n', '⏎');

/** Parse one reply into JavaScript values, for comparisons that ignore order. */
export function parseReply(reply: Buffer): unknown {
  let offset = 0;
  const value = (): unknown => {
    const lineEnd = reply.indexOf('\r\n', offset);
    const type = String.fromCharCode(reply[offset] as number);
    const header = reply.toString('latin1', offset + 1, lineEnd);
    offset = lineEnd + 2;
    if (type === '$' || type === '=') {
      const length = Number(header);
      if (length < 0) return null;
      const data = reply.toString('latin1', offset, offset + length);
      offset += length + 2;
      return data;
    }
    if (type === '*' || type === '~' || type === '%') {
      const length = Number(header);
      if (length < 0) return null;
      return Array.from({ length: type === '%' ? length * 2 : length }, value);
    }
    if (type === ':') return Number(header);
    if (type === '_') return null;
    return `${type}${header}`;
  };
  return value();
}

/** One mini-redis for a whole test file (started in beforeAll, stopped in afterAll); read `.port` in tests. */
export function miniRedisForFile(): { readonly port: number } {
  let started: Started | undefined;
  beforeAll(async () => {
    started = await startMiniRedis();
  });
  afterAll(async () => {
    await started?.stop();
  });
  return {
    get port(): number {
      if (started === undefined) throw new Error('mini-redis is not started yet: read .port inside a test');
      return started.port;
    },
  };
}

/**
 * ioredis clients on `protocol` for the tests of a describe block: `connect()` opens one, `fresh()`
 * opens one on an emptied server (FLUSHALL); every client is disconnected after each test.
 */
export function ioredisPerTest(
  port: () => number,
  protocol: 2 | 3,
): { connect: (options?: RedisOptions) => Redis; fresh: () => Promise<Redis> } {
  const clients: Redis[] = [];
  const connect = (options: RedisOptions = {}): Redis => {
    const client = new Redis({ port: port(), host: '127.0.0.1', protocol, maxRetriesPerRequest: 1, ...options });
    clients.push(client);
    return client;
  };
  afterEach(() => {
    for (const client of clients.splice(0)) client.disconnect();
  });
  return {
    connect,
    fresh: async () => {
      const client = connect();
      await client.flushall();
      return client;
    },
  };
}

// ---- Servers in processes of their own, temp dirs, polling -------------------------------------

/** mini-redis's entry point, as `npm start` runs it (build first: `npx tsc -b examples/mini-redis`). */
export const MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url));

/** Poll (every 50 ms, up to `timeoutMs`) until `check` holds; `what` names it in the timeout error. */
export async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A maker of temp dirs named `<prefix>XXXXXX`, all removed after the test file. */
export function tempDirs(prefix: string): () => string {
  const dirs: string[] = [];
  afterAll(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });
  return () => {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    dirs.push(dir);
    return dir;
  };
}

/** A server in a process of its own, answering PING on `port`. */
export interface Spawned {
  port: number;
  child: ChildProcess;
  /** Resolves with the exit code and signal. */
  exited: Promise<[number | null, NodeJS.Signals | null]>;
  /** What it printed so far (stdout and stderr). */
  output(): string;
  /** `signal` (SIGTERM: a graceful stop), then wait for the exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/**
 * Spawn `command args` (behind `wrap`, e.g. `unshare …`, if given) and wait until it answers PING on
 * `port`; if it exits first, throw with what it printed.
 */
export async function spawnServer(
  command: string,
  args: readonly string[],
  options: { port: number; env?: Record<string, string>; wrap?: readonly string[] },
): Promise<Spawned> {
  const argv = [...(options.wrap ?? []), command, ...args];
  const child = spawn(argv[0] as string, argv.slice(1), {
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  const spawned: Spawned = {
    port: options.port,
    child,
    exited,
    output: () => output,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
  await until(async () => {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${command} exited (${child.exitCode ?? child.signalCode}) before listening:\n${output}`);
    }
    const client = new RawClient(options.port);
    try {
      return (await client.send(['PING']))[0]?.toString() === '+PONG\r\n';
    } catch {
      return false;
    } finally {
      client.close();
    }
  }, `${command} to listen on ${options.port}`).catch(async (error: unknown) => {
    await spawned.stop('SIGKILL');
    throw error;
  });
  return spawned;
}

/** mini-redis (dist/main.js) in a process of its own on free ports, with no save points unless `env` sets SAVE. */
export async function spawnMiniRedis(env: Record<string, string> = {}, wrap?: readonly string[]): Promise<Spawned> {
  const port = await freePort();
  const ports = { RESP_PORT: String(port), PORT: String(await freePort()), HOST: '127.0.0.1', SAVE: '' };
  return spawnServer(process.execPath, [MAIN], { port, env: { ...ports, ...env }, ...(wrap === undefined ? {} : { wrap }) });
}

/**
 * redis-server 7.0.15 on a free port with `args` (its files in `--dir`, persistence as `args` say:
 * by default none), for the tests that need its files; stop() is SIGTERM, a clean stop.
 */
export async function spawnRedisServer(args: readonly string[], wrap?: readonly string[]): Promise<Spawned> {
  const port = await freePort();
  const defaults = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--loglevel', 'warning'];
  return spawnServer(REDIS_SERVER, [...defaults, ...args], { port, ...(wrap === undefined ? {} : { wrap }) });
}

/** Run `command args` (behind `wrap`, if given) until it exits by itself: its exit code and what it printed. */
export async function runToExit(
  command: string,
  args: readonly string[],
  options: { env?: Record<string, string>; wrap?: readonly string[] } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const argv = [...(options.wrap ?? []), command, ...args];
  const child = spawn(argv[0] as string, argv.slice(1), { env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let [stdout, stderr] = ['', ''];
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stdout, stderr };
}

/** Run dist/main.js with `env` (free ports) until it exits by itself; what it printed and its exit code. */
export async function runMiniRedisToExit(
  env: Record<string, string>,
  wrap?: readonly string[],
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const ports = { RESP_PORT: String(await freePort()), PORT: String(await freePort()), HOST: '127.0.0.1', SAVE: '' };
  return runToExit(process.execPath, [MAIN], { env: { ...ports, ...env }, ...(wrap === undefined ? {} : { wrap }) });
}

/** Send `commands` (pipelined) on a fresh raw connection to `port`: the replies, shown (⏎). */
export async function ask(port: number, commands: readonly CommandLine[]): Promise<string[]> {
  const client = new RawClient(port);
  try {
    return (await client.send(commands)).map(show);
  } finally {
    client.close();
  }
}

/** `commands` on each server in turn (a fresh connection each): the answers, one list per port, to compare. */
export async function askEach(ports: readonly number[], commands: readonly CommandLine[]): Promise<string[][]> {
  const answers: string[][] = [];
  for (const port of ports) answers.push(await ask(port, commands));
  return answers;
}

/** A field of an INFO reply (`name:value` line). */
export const infoField = (info: string | Buffer, name: string): string | undefined =>
  new RegExp(`^${name}:(.*)\\r?$`, 'm').exec(typeof info === 'string' ? info : info.toString('latin1'))?.[1]?.trim();

/** What `withMiniRedis` hands its body: the server, a raw client and an ioredis client (connects on first use). */
export interface MiniRedisSession extends Started {
  service: PortService;
  raw: RawClient;
  redis: Redis;
}

/**
 * Start mini-redis in this process with `env` (e.g. `{ DATA_DIR, APPENDONLY: 'yes', SAVE: '' }`), run
 * `body`, then close its clients and stop it, whatever happened.
 */
export async function withMiniRedis<T>(env: Record<string, string>, body: (mini: MiniRedisSession) => Promise<T>): Promise<T> {
  const mini = await startMiniRedis(env);
  const raw = new RawClient(mini.port);
  const redis = new Redis({ port: mini.port, host: '127.0.0.1', protocol: 2, lazyConnect: true } as RedisOptions);
  try {
    return await body({ ...mini, raw, redis });
  } finally {
    raw.close();
    redis.disconnect();
    await mini.stop();
  }
}

/** A redis-server (no persistence) and a mini-redis for the tests of a file or describe block; read them inside tests. */
export function redisAndMiniForFile(miniEnv: Record<string, string> = {}): { readonly redis: Started; readonly mini: Started } {
  let redis: Started | undefined;
  let mini: Started | undefined;
  beforeAll(async () => {
    [redis, mini] = await Promise.all([startRedisServer(), startMiniRedis(miniEnv)]);
  });
  afterAll(async () => {
    await Promise.all([redis?.stop(), mini?.stop()]);
  });
  const started = (server: Started | undefined): Started => {
    if (server === undefined) throw new Error('the servers are not started yet: read them inside a test');
    return server;
  };
  return {
    get redis() {
      return started(redis);
    },
    get mini() {
      return started(mini);
    },
  };
}

/**
 * A replica's view of `port` (SYNC): skips the RDB, then collects the propagated commands as strings.
 * After the RDB the stream is RESP commands, as an append-only file: aof.ts's parseAof splits it.
 */
export async function replicationStream(port: number): Promise<{ commands: string[][]; close(): void }> {
  const socket = connect(port, '127.0.0.1');
  let buffer = Buffer.alloc(0);
  let stream: Buffer | undefined;
  const commands: string[][] = [];
  let rdbSkipped!: () => void;
  const skipped = new Promise<void>((resolve) => {
    rdbSkipped = resolve;
  });
  socket.on('data', (chunk: Buffer) => {
    if (stream !== undefined) {
      stream = Buffer.concat([stream, chunk]);
    } else {
      // Before the RDB: newlines (keep-alives while it is made), then `$<length>\r\n` and the RDB.
      buffer = Buffer.concat([buffer, chunk]);
      while (buffer[0] === 0x0a) buffer = buffer.subarray(1);
      const eol = buffer.indexOf('\r\n');
      if (eol === -1) return;
      const end = eol + 2 + Number(buffer.toString('latin1', 1, eol));
      if (buffer.length < end) return;
      stream = buffer.subarray(end);
      rdbSkipped();
    }
    const parsed = parseAof(stream);
    commands.push(...parsed.commands.map(({ argv }) => argv.map((arg) => arg.toString('latin1'))));
    stream = stream.subarray(parsed.truncatedAt ?? stream.length);
  });
  socket.write('SYNC\r\n');
  await skipped;
  return { commands, close: () => socket.destroy() };
}

/** A command as a failure message shows it: raw bytes as hex, at most 160 characters. */
export const commandLabel = (command: CommandLine): string =>
  typeof command === 'string'
    ? command
    : command
        .map((word) => (typeof word === 'string' ? word : `<${word.toString('hex')}>`))
        .join(' ')
        .slice(0, 160);

/**
 * Differential helpers on the two servers of {@link redisAndMiniForFile}: `run` a script on a fresh connection to
 * emptied databases (a leading `HELLO 3` is sent and its reply dropped: it holds the connection's id, which differs),
 * `same` a script on both — the same replies, byte for byte; redis-server's returned — and `sameOnBoth` any work on
 * both at once (both finish, even when one fails). `words` rewrites each command before it is sent.
 */
export function differential(
  servers: { readonly redis: { port: number }; readonly mini: { port: number } },
  words: (command: CommandLine) => CommandLine = (command) => command,
): {
  run(port: number, script: readonly CommandLine[]): Promise<Buffer[]>;
  same(script: readonly CommandLine[]): Promise<Buffer[]>;
  sameOnBoth<T>(work: (port: number) => Promise<T>): Promise<T>;
} {
  const run = async (port: number, script: readonly CommandLine[]): Promise<Buffer[]> => {
    const client = new RawClient(port);
    try {
      const hello = script[0] === 'HELLO 3';
      await client.send(hello ? ['FLUSHALL', 'HELLO 3'] : ['FLUSHALL']);
      return await client.send((hello ? script.slice(1) : script).map(words));
    } finally {
      client.close();
    }
  };
  return {
    run,
    async same(script) {
      const expected = await run(servers.redis.port, script);
      const actual = await run(servers.mini.port, script);
      const sent = script.filter((command, i) => i !== 0 || command !== 'HELLO 3');
      const lines = (replies: Buffer[]): string[] => sent.map((command, i) => `${commandLabel(command)} → ${show(replies[i] as Buffer)}`);
      expect(lines(actual)).toEqual(lines(expected));
      expect(Buffer.concat(actual).equals(Buffer.concat(expected))).toBe(true);
      return expected;
    },
    async sameOnBoth<T>(work: (port: number) => Promise<T>): Promise<T> {
      const [expected, actual] = await onEach([servers.redis.port, servers.mini.port], work);
      expect(actual).toEqual(expected);
      return expected as T;
    },
  };
}

/**
 * The first `count` pub/sub messages a script makes on emptied databases, with `notify-keyspace-events` set to `events`
 * for it (and off after), heard on `subscribe` (e.g. `PSUBSCRIBE __keyspace@0__:*`): each message's exact bytes.
 */
export async function notifications(
  port: number,
  events: string,
  subscribe: CommandLine,
  script: readonly CommandLine[],
  count: number,
): Promise<string[]> {
  const subscriber = new RawClient(port);
  const client = new RawClient(port);
  try {
    await client.send(['FLUSHALL', ['CONFIG', 'SET', 'notify-keyspace-events', events]]);
    await subscriber.send([subscribe]);
    await client.send(script);
    return (await subscriber.read(count)).map(show);
  } finally {
    await client.send([['CONFIG', 'SET', 'notify-keyspace-events', '']]);
    subscriber.close();
    client.close();
  }
}

/** A `__keyspace@0__:*` pattern message for `key` and event `name`, as show() prints it. */
export const keyspaceMessage = (key: string, name: string): string =>
  `*4⏎$8⏎pmessage⏎$16⏎__keyspace@0__:*⏎$${15 + key.length}⏎__keyspace@0__:${key}⏎$${name.length}⏎${name}⏎`;
