import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import { connect, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { freePort, Haproxy, type ServerStat } from './support/haproxy.js';
import { readUntil, sleep } from './support/net.js';

/**
 * A rolling restart behind a real HAProxy (Debian's `haproxy`) under load. Two portbind processes
 * (test/fixtures/rolling-service.mjs: HTTP, WebSocket, RESP and XMPP on one PORT, PROXY protocol v2
 * from the proxy) sit behind HAProxy: HTTP mode for HTTP/WebSocket with a health check on `/readyz`,
 * TCP mode with `send-proxy-v2` for RESP and XMPP, whose servers track the HTTP servers' health.
 * While HTTP requests run (keep-alive and new connections) and a WebSocket, an XMPP session and a RESP
 * client stay connected, each process in turn gets SIGTERM: `/readyz` turns 503 at once while the
 * port keeps serving for `readinessDelayMs`, HAProxy marks the server DOWN and sends it nothing new,
 * then the drain closes the long-lived connections in their protocols' terms (WebSocket 1001, XMPP
 * `<system-shutdown/>`, RESP after its reply), in-flight requests finish, the process exits 0, and a
 * new process starts on the same port and is marked UP before the other one goes.
 *
 * Clients connect from 127.0.0.2 and HAProxy from 127.0.0.1, so the address a service reports can
 * only be the client's if PROXY v2 carried it.
 */

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const fixture = join(root, 'test', 'fixtures', 'rolling-service.mjs');
const CLIENT = '127.0.0.2';
/** Longer than HAProxy needs to see a 503 (fall 2 × inter 300 ms) many times over, on a busy 2-core box. */
const READINESS_DELAY_MS = 4000;
const SERVERS = ['app1', 'app2'] as const;
type ServerName = (typeof SERVERS)[number];

interface LogEntry {
  t: number;
  level: string;
  msg: string;
  pid: number;
  [field: string]: unknown;
}

/** One portbind process of the fixture. */
class ServiceProcess {
  readonly child: ChildProcess;
  readonly logs: LogEntry[] = [];
  readonly exited: Promise<number | null>;
  #pending = '';
  #stderr = '';
  #listeners: Array<() => void> = [];

  constructor(readonly port: number) {
    this.child = spawn(process.execPath, [fixture], {
      env: {
        ...process.env,
        PORT: String(port),
        HOST: '127.0.0.1',
        READINESS_DELAY_MS: String(READINESS_DELAY_MS),
        GRACE_PERIOD_MS: '20000',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    // 'close', not 'exit': every line the process wrote has been read by then.
    this.exited = once(this.child, 'close').then(([code]) => code as number | null);
    this.child.stdout?.on('data', (chunk: Buffer) => {
      this.#pending += chunk.toString();
      const lines = this.#pending.split('\n');
      this.#pending = lines.pop() ?? '';
      for (const line of lines) if (line !== '') this.logs.push(JSON.parse(line) as LogEntry);
      for (const listener of this.#listeners) listener();
    });
    this.child.stderr?.on('data', (chunk: Buffer) => {
      this.#stderr += chunk.toString();
    });
  }

  get pid(): number {
    return this.child.pid as number;
  }

  /** Resolves with the first log line that matches (already logged or to come). */
  waitLog(what: string, match: (entry: LogEntry) => boolean, timeoutMs = 30_000): Promise<LogEntry> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const found = this.logs.find(match);
        if (found === undefined) return;
        cleanup();
        resolve(found);
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`process ${this.pid}: no log line "${what}" in ${JSON.stringify(this.logs)}\n${this.#stderr}`));
      }, timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        this.#listeners = this.#listeners.filter((listener) => listener !== check);
      };
      this.#listeners.push(check);
      check();
    });
  }

  log(msg: string): LogEntry | undefined {
    return this.logs.find((entry) => entry.msg === msg);
  }
}

// The fixture runs on the packages' dist/ (a child process cannot use the TypeScript sources): `tsc -b` first.
for (const name of ['core', 'http', 'ws', 'resp', 'xmpp']) {
  if (!existsSync(join(root, 'packages', name, 'dist', 'index.js'))) {
    throw new Error(`packages/${name}/dist is missing: the rolling-restart fixture runs on the built packages; run \`npx tsc -b\` first`);
  }
}

const started: ServiceProcess[] = [];
let haproxy: Haproxy | undefined;

async function startService(port: number): Promise<ServiceProcess> {
  const service = new ServiceProcess(port);
  started.push(service);
  await service.waitLog('started', (entry) => entry.msg === 'started');
  return service;
}

/** Stops the load and the clients if the test ends early. */
const cleanups: Array<() => Promise<void> | void> = [];

afterAll(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
  for (const service of started) if (service.child.exitCode === null && service.child.signalCode === null) service.child.kill('SIGKILL');
  await haproxy?.stop();
});

// ---------------------------------------------------------------------------------------------
// Load: HTTP requests in loops, each outcome recorded.

interface Outcome {
  path: string;
  status?: number;
  body?: { pid: number; remoteAddress: string; phase: string };
  error?: string;
}

function get(port: number, path: string, agent: Agent | false, headers: Record<string, string> = {}): Promise<Outcome> {
  return new Promise((resolve) => {
    const request = httpRequest({ host: '127.0.0.1', port, path, agent, localAddress: CLIENT, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
      });
      res.on('end', () => {
        try {
          resolve({ path, status: res.statusCode, body: JSON.parse(text) as Outcome['body'] });
        } catch {
          resolve({ path, status: res.statusCode, error: `not JSON: ${text.slice(0, 200)}` });
        }
      });
      res.on('error', (error) => resolve({ path, status: res.statusCode, error: error.message }));
    });
    request.setTimeout(60_000, () => request.destroy(new Error('no answer in 60 s')));
    request.on('error', (error) => resolve({ path, error: `${(error as NodeJS.ErrnoException).code ?? ''} ${error.message}` }));
    request.end();
  });
}

// ---------------------------------------------------------------------------------------------
// Long-lived clients through HAProxy: each reconnects when the server closes it, and records how
// each session ended.

interface Session {
  /** The process that served it (WebSocket, RESP: from the server's greeting; XMPP: from the logs). */
  pid?: number;
  remoteAddress?: string;
  /** How the server ended it: `1001`, `system-shutdown`, `reply-then-close`; or what went wrong. */
  end?: string;
  endedAt?: number;
}

abstract class LongLived {
  readonly sessions: Session[] = [];
  readonly errors: string[] = [];
  stopping = false;
  #wake: Array<() => void> = [];
  #loop: Promise<void> | undefined;

  constructor(protected readonly port: number) {}

  start(): void {
    this.#loop = (async () => {
      while (!this.stopping) {
        const session: Session = {};
        this.sessions.push(session);
        try {
          await this.session(session);
        } catch (error) {
          if (!this.stopping) this.errors.push(`${(error as Error).message}`);
          session.end ??= `error: ${(error as Error).message}`;
          await sleep(100);
        }
        session.endedAt = Date.now();
        this.#notify();
      }
    })();
  }

  /** One session: connect, log in, wait for the server to end it (or `stopping`). */
  protected abstract session(session: Session): Promise<void>;

  /** Resolves when a session satisfies `match`. */
  async until(what: string, match: (sessions: Session[]) => boolean, timeoutMs = 40_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!match(this.sessions)) {
      if (Date.now() > deadline)
        throw new Error(`${this.constructor.name}: timed out waiting for ${what}: ${JSON.stringify(this.sessions)}`);
      await new Promise<void>((resolve) => {
        this.#wake.push(resolve);
        setTimeout(resolve, 200);
      });
    }
  }

  protected notify(): void {
    this.#notify();
  }

  #notify(): void {
    for (const wake of this.#wake.splice(0)) wake();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.close();
    await this.#loop;
  }

  protected abstract close(): void;
}

class WsClient extends LongLived {
  #ws: WebSocket | undefined;

  protected async session(session: Session): Promise<void> {
    const ws = new WebSocket(`ws://127.0.0.1:${this.port}/ws`, { localAddress: CLIENT });
    this.#ws = ws;
    const messages: string[] = [];
    const closed = new Promise<number>((resolve) => ws.once('close', (code: number) => resolve(code)));
    ws.on('message', (data: Buffer) => {
      messages.push(data.toString());
      this.notify();
    });
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
      ws.once('unexpected-response', (_request, response) => reject(new Error(`upgrade answered ${response.statusCode}`)));
    });
    ws.on('error', (error) => this.errors.push(`ws: ${error.message}`));
    await this.until('the greeting', () => messages.length > 0 || ws.readyState !== ws.OPEN);
    const hello = JSON.parse(messages[0] ?? '{}') as { pid?: number; remoteAddress?: string };
    session.pid = hello.pid;
    session.remoteAddress = hello.remoteAddress;
    this.notify();
    // An echo round trip proves the session works end to end.
    ws.send('ping');
    await this.until('the echo', () => messages.includes('ping') || ws.readyState !== ws.OPEN);
    if (!messages.includes('ping')) throw new Error('no echo');
    session.end = String(await closed);
  }

  protected close(): void {
    this.#ws?.close(1000);
  }
}

const XMPP_OPEN =
  "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

class XmppClient extends LongLived {
  #socket: Socket | undefined;
  #logins = 0;

  /** `logins()`: the processes' `XMPP login` lines so far, in time order (this is the only XMPP client). */
  constructor(
    port: number,
    private readonly logins: () => LogEntry[],
  ) {
    super(port);
  }

  protected async session(session: Session): Promise<void> {
    const socket = connect({ port: this.port, host: '127.0.0.1', localAddress: CLIENT });
    this.#socket = socket;
    socket.on('error', () => {});
    await once(socket, 'connect');
    socket.write(XMPP_OPEN);
    expect(await readUntil(socket, /<\/stream:features>/, 20_000)).toContain('<mechanism>PLAIN</mechanism>');
    socket.write(
      `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from('\u0000juliet\u0000balcony').toString('base64')}</auth>`,
    );
    await readUntil(socket, /<success/, 20_000);
    socket.write(XMPP_OPEN);
    await readUntil(socket, /<\/stream:features>/, 20_000);
    socket.write("<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>rolling</resource></bind></iq>");
    expect(await readUntil(socket, /<\/iq>/, 20_000)).toContain('juliet@localhost/rolling');
    // Which process logged this login, and the address it saw.
    const index = this.#logins++;
    await this.until('the login in the logs', () => this.logins().length > index, 20_000);
    const login = this.logins()[index];
    session.pid = login?.pid;
    session.remoteAddress = String(login?.remoteAddress);
    this.notify();
    // Until the server ends the stream: record what it said, answer with our own end, and wait for the close.
    let text = '';
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      if (text.includes('</stream:stream>') && socket.writable) socket.end('</stream:stream>');
    });
    socket.resume();
    if (!socket.destroyed) await once(socket, 'close');
    session.end =
      /<system-shutdown xmlns='urn:ietf:params:xml:ns:xmpp-streams'\/>/.test(text) && text.includes('</stream:stream>')
        ? 'system-shutdown'
        : `closed after ${JSON.stringify(text)}`;
  }

  protected close(): void {
    this.#socket?.end('</stream:stream>');
  }
}

class RespClient extends LongLived {
  #socket: Socket | undefined;

  protected async session(session: Session): Promise<void> {
    const socket = connect({ port: this.port, host: '127.0.0.1', localAddress: CLIENT });
    this.#socket = socket;
    socket.on('error', () => {});
    await once(socket, 'connect');
    socket.write('*1\r\n$6\r\nWHOAMI\r\n');
    const [, pid, address] = /(\d+) (\S+)\r\n$/.exec(await readUntil(socket, /\d+ \S+\r\n$/, 20_000)) ?? [];
    session.pid = Number(pid);
    session.remoteAddress = address;
    this.notify();
    // Blocks until this process drains: the reply must come, then the close.
    socket.write('*1\r\n$9\r\nWAITDRAIN\r\n');
    let text = '';
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString();
    });
    socket.resume();
    if (!socket.destroyed) await once(socket, 'close');
    session.end = new RegExp(`^(\\+|\\$\\d+\r\n)draining ${pid}\r\n$`).test(text)
      ? 'reply-then-close'
      : `closed after ${JSON.stringify(text)}`;
  }

  protected close(): void {
    this.#socket?.destroy();
  }
}

// ---------------------------------------------------------------------------------------------

describe('a rolling restart of two portbind processes behind HAProxy, under load', () => {
  it('0 failed HTTP requests; WebSocket, XMPP and RESP clients get a clean close from the draining process and reconnect to the other; every service sees the client, not the proxy', async () => {
    const ports: Record<ServerName, number> = { app1: await freePort(), app2: await freePort() };
    const current: Record<ServerName, ServiceProcess> = {
      app1: await startService(ports.app1),
      app2: await startService(ports.app2),
    };
    const front = { web: await freePort(), resp: await freePort(), xmpp: await freePort() };
    haproxy = await Haproxy.start({
      name: 'portbind-haproxy-rolling',
      config: [
        'defaults',
        '  timeout connect 5s',
        '  timeout client 5m',
        '  timeout server 5m',
        '  timeout tunnel 5m',
        '  timeout check 5s',
        '  timeout http-keep-alive 30s',
        '  retries 3',
        '  option redispatch 1',
        'frontend web_in',
        '  mode http',
        `  bind 127.0.0.1:${front.web}`,
        '  option forwardfor',
        '  default_backend web',
        'backend web',
        '  mode http',
        '  balance roundrobin',
        '  option httpchk GET /readyz',
        '  http-check expect status 200',
        '  retry-on conn-failure empty-response',
        // X-Pin sends one request to a given server while it is UP (the test's slow request in flight).
        '  use-server app1 if { req.hdr(x-pin) app1 }',
        '  use-server app2 if { req.hdr(x-pin) app2 }',
        '  default-server send-proxy-v2 check check-send-proxy inter 300 fall 2 rise 2',
        ...SERVERS.map((name) => `  server ${name} 127.0.0.1:${ports[name]}`),
        'frontend resp_in',
        '  mode tcp',
        `  bind 127.0.0.1:${front.resp}`,
        '  default_backend resp',
        'backend resp',
        '  mode tcp',
        '  balance roundrobin',
        ...SERVERS.map((name) => `  server ${name} 127.0.0.1:${ports[name]} send-proxy-v2 track web/${name}`),
        'frontend xmpp_in',
        '  mode tcp',
        `  bind 127.0.0.1:${front.xmpp}`,
        '  default_backend xmpp',
        'backend xmpp',
        '  mode tcp',
        '  balance roundrobin',
        ...SERVERS.map((name) => `  server ${name} 127.0.0.1:${ports[name]} send-proxy-v2 track web/${name}`),
      ],
    });
    const up = (states: Record<string, ServerStat>, name: ServerName): boolean =>
      states[`web/${name}`]?.status === 'UP' && states[`web/${name}`]?.check === 'L7OK';
    await haproxy.waitFor('both servers UP', (states) => up(states, 'app1') && up(states, 'app2'));

    // Load: two keep-alive loops, one loop of new connections, one of slow requests.
    const outcomes: Outcome[] = [];
    let loading = true;
    const agents = [
      new Agent({ keepAlive: true, maxSockets: 1 }),
      new Agent({ keepAlive: true, maxSockets: 1 }),
      new Agent({ keepAlive: true, maxSockets: 1 }),
    ];
    const loop = async (path: string, agent: Agent | false): Promise<void> => {
      while (loading) outcomes.push(await get(front.web, path, agent));
    };
    const loops = [
      loop('/who', agents[0] as Agent),
      loop('/who', agents[1] as Agent),
      loop('/who', false),
      loop('/slow?ms=300', agents[2] as Agent),
    ];

    const logins = () =>
      started
        .flatMap((service) => service.logs.filter((entry) => entry.msg === 'XMPP login').map((entry) => ({ ...entry, pid: service.pid })))
        .sort((x, y) => x.t - y.t);
    const ws = new WsClient(front.web);
    const xmpp = new XmppClient(front.xmpp, logins);
    const resp = new RespClient(front.resp);
    const clients = [
      { name: 'WebSocket', client: ws as LongLived, clean: '1001' },
      { name: 'XMPP', client: xmpp as LongLived, clean: 'system-shutdown' },
      { name: 'RESP', client: resp as LongLived, clean: 'reply-then-close' },
    ];
    for (const { client } of clients) client.start();
    cleanups.push(async () => {
      loading = false;
      for (const agent of agents) agent.destroy();
      for (const { client } of clients) await client.stop();
    });
    for (const { name, client } of clients) await client.until(`a ${name} session`, (sessions) => sessions[0]?.pid !== undefined);

    const restarts: Array<{ name: ServerName; old: ServiceProcess; next: ServiceProcess; pinned: Outcome }> = [];
    for (const name of SERVERS) {
      const other = SERVERS.find((candidate) => candidate !== name) as ServerName;
      const old = current[name];
      // A slow request in flight on this process when it gets SIGTERM: it must finish (200) during the drain.
      const pinned = get(front.web, `/slow?ms=${READINESS_DELAY_MS + 2000}&log=1`, false, { 'X-Pin': name });
      await old.waitLog('the pinned slow request', (entry) => entry.msg === 'slow request');

      old.child.kill('SIGTERM');
      // Readiness first: HAProxy sees /readyz answer 503 and marks the server DOWN (its RESP and XMPP
      // servers track it) while the process still accepts, before the drain begins.
      const atDown = await haproxy.waitFor(`${name} DOWN`, (states) =>
        ['web', 'resp', 'xmpp'].every((backend) => states[`${backend}/${name}`]?.status === 'DOWN'),
      );
      const downAt = Date.now();
      expect(atDown[`web/${name}`]?.check).toBe('L7STS'); // the check got a status other than 200: the 503
      expect(old.log('drain began'), 'HAProxy marked it DOWN before the drain began').toBeUndefined();

      // The process drains and exits 0, nothing force-closed, the drain after HAProxy's DOWN.
      expect(await old.exited).toBe(0);
      expect(old.log('stopped')).toMatchObject({ forced: 0 });
      expect((old.log('drain began') as LogEntry).t).toBeGreaterThanOrEqual(downAt - 50);
      // HAProxy sent it no new session after it was marked DOWN.
      const afterExit = await haproxy.servers();
      for (const backend of ['web', 'resp', 'xmpp']) {
        expect(afterExit[`${backend}/${name}`]?.sessions, `${backend}/${name}: sessions after DOWN`).toBe(
          atDown[`${backend}/${name}`]?.sessions,
        );
      }
      // The slow request in flight at SIGTERM finished on its process, after the drain had begun.
      expect(await pinned).toMatchObject({ status: 200, body: { pid: old.pid, remoteAddress: CLIENT, phase: 'drain' } });

      // Every long-lived session on the old process was closed cleanly, and its client is back, on the other process.
      const otherPid = current[other].pid;
      for (const { name: protocol, client, clean } of clients) {
        await client.until(`${protocol}: sessions on ${old.pid} ended, and a session on ${otherPid} after them`, (sessions) => {
          const last = sessions.findLastIndex((session) => session.pid === old.pid);
          return last === -1 || (sessions[last]?.end !== undefined && sessions.slice(last + 1).some((session) => session.pid === otherPid));
        });
        for (const session of client.sessions.filter((session) => session.pid === old.pid)) expect(session.end, protocol).toBe(clean);
      }

      // A new process on the same port; HAProxy marks it UP.
      const next = await startService(ports[name]);
      current[name] = next;
      await haproxy.waitFor(`${name} UP again`, (states) => up(states, name) && up(states, other));
      restarts.push({ name, old, next, pinned: await pinned });
    }

    // Both new processes serve: wait for HTTP responses from each, then stop the load.
    const newPids = SERVERS.map((name) => current[name].pid);
    const deadline = Date.now() + 30_000;
    while (!newPids.every((pid) => outcomes.some((outcome) => outcome.body?.pid === pid))) {
      if (Date.now() > deadline) throw new Error(`new processes not serving: ${JSON.stringify(outcomes.slice(-5))}`);
      await sleep(50);
    }
    loading = false;
    await Promise.all(loops);
    for (const agent of agents) agent.destroy();
    for (const { client } of clients) await client.stop();

    // 0 failed HTTP requests: every one answered 2xx, with the client's address as the service saw it.
    const failed = outcomes.filter((outcome) => outcome.error !== undefined || (outcome.status ?? 0) < 200 || (outcome.status ?? 0) >= 300);
    expect(failed).toEqual([]);
    expect(outcomes.length).toBeGreaterThan(100);
    expect(new Set(outcomes.map((outcome) => outcome.body?.remoteAddress))).toEqual(new Set([CLIENT]));
    for (const service of started)
      expect(
        outcomes.some((outcome) => outcome.body?.pid === service.pid),
        `responses from ${service.pid}`,
      ).toBe(true);

    // Each client went through at least one restart (all of them were on app2 when it restarted):
    // every session the server ended ended cleanly, every reconnect worked, and ended on the new app1.
    const [first] = restarts;
    for (const { name: protocol, client, clean } of clients) {
      expect(client.errors, protocol).toEqual([]);
      const closedByServer = client.sessions.slice(0, -1);
      expect(closedByServer.length, protocol).toBeGreaterThanOrEqual(1);
      for (const session of closedByServer) expect(session.end, protocol).toBe(clean);
      for (const session of client.sessions) expect(session.remoteAddress, protocol).toMatch(/^127\.0\.0\.2$/);
      expect(client.sessions.at(-1)?.pid, protocol).toBe(first?.next.pid);
    }
    // Requests kept arriving after SIGTERM until HAProxy saw the 503 (served in the readiness delay):
    // without the delay they would have met a closed port.
    expect(outcomes.filter((outcome) => outcome.body?.phase === 'delay').length).toBeGreaterThan(0);
    // HAProxy never had to retry or redispatch a request: no request reached a process that was no
    // longer accepting (the readiness delay outlasted HAProxy's DOWN), so retry-on masked nothing.
    const final = await haproxy.servers();
    for (const name of SERVERS) expect(final[`web/${name}`], `web/${name}`).toMatchObject({ retries: 0, redispatches: 0 });

    const summary = {
      requests: outcomes.length,
      byPhase: Object.fromEntries(
        ['running', 'delay', 'drain'].map((phase) => [phase, outcomes.filter((outcome) => outcome.body?.phase === phase).length]),
      ),
      byPid: Object.fromEntries(
        started.map((service) => [service.pid, outcomes.filter((outcome) => outcome.body?.pid === service.pid).length]),
      ),
      sessions: Object.fromEntries(
        clients.map(({ name: protocol, client }) => [protocol, client.sessions.map((session) => `${session.pid}:${session.end}`)]),
      ),
      haproxy: final,
    };
    console.log(JSON.stringify(summary));
  }, 180_000);
});
