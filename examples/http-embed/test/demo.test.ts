import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';

// The demo as a user runs it: the built example in its own process, real signals, real clients.
const main = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'main.js');
const run = promisify(execFile);
const children: ChildProcess[] = [];
afterEach(() => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
});

interface Started {
  child: ChildProcess;
  port: number;
  respPort: number;
  xmppPort: number;
  logs: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Spawn the demo with extra environment (`undefined`: unset); collect what it prints. */
function spawnDemo(env: Record<string, string | undefined>): { child: ChildProcess; logs: () => string } {
  const merged: Record<string, string | undefined> = { ...process.env, LOG_LEVEL: 'info', ...env };
  for (const [name, value] of Object.entries(merged)) if (value === undefined) delete merged[name];
  const child = spawn(process.execPath, [main], {
    env: merged,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let output = '';
  const collect = (chunk: Buffer): void => {
    output += chunk.toString();
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  return { child, logs: () => output };
}

/**
 * Start the demo on an ephemeral port — PORT alone, so RESP and XMPP share it — and resolve once it
 * logs its URLs.
 */
async function startDemo(env: Record<string, string | undefined> = {}): Promise<Started> {
  const { child, logs } = spawnDemo({ PORT: '0', RESP_PORT: undefined, XMPP_PORT: undefined, HOST: '127.0.0.1', ...env });
  const exited = once(child, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }));
  const deadline = Date.now() + 10_000;
  while (!/listening on http:\/\/127\.0\.0\.1:(\d+)\//.test(logs())) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`demo did not start:\n${logs()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  while (!/listening on xmpp:\/\/127\.0\.0\.1:(\d+)/.test(logs())) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`demo did not start:\n${logs()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const port = Number(/listening on http:\/\/127\.0\.0\.1:(\d+)\//.exec(logs())?.[1]);
  const respPort = Number(/listening on redis:\/\/127\.0\.0\.1:(\d+)/.exec(logs())?.[1]);
  const xmppPort = Number(/listening on xmpp:\/\/127\.0\.0\.1:(\d+)/.exec(logs())?.[1]);
  return { child, port, respPort, xmppPort, logs, exited };
}

describe('examples/http-embed', () => {
  it('logs one JSON object per line with every URL it serves', async () => {
    const demo = await startDemo();
    const lines = demo.logs().trim().split('\n');
    const records = lines.map((line) => JSON.parse(line) as { msg: string; url?: string });
    expect(records.filter((r) => r.msg.startsWith('demo XMPP account')).map((r) => r.msg)).toEqual([
      'demo XMPP account alice@localhost',
      'demo XMPP account bob@localhost',
    ]);
    expect(records.filter((r) => r.url !== undefined).map((r) => r.url)).toEqual([
      `http://127.0.0.1:${demo.port}/`,
      `ws://127.0.0.1:${demo.port}/ws/echo`,
      `ws://127.0.0.1:${demo.port}/ws/broadcast`,
      `ws://127.0.0.1:${demo.port}/xmpp-websocket`,
      `redis://127.0.0.1:${demo.port}`,
      `xmpp://127.0.0.1:${demo.port}`,
    ]);
    expect([demo.respPort, demo.xmppPort]).toEqual([demo.port, demo.port]);
  });

  it('moves RESP and XMPP to ports of their own when RESP_PORT and XMPP_PORT are set', async () => {
    const demo = await startDemo({ RESP_PORT: '0', XMPP_PORT: '0' });
    expect(new Set([demo.port, demo.respPort, demo.xmppPort]).size).toBe(3);
    const cli = (...args: string[]) => run('redis-cli', ['-h', '127.0.0.1', '-p', String(demo.respPort), ...args]);
    expect((await cli('SET', 'greeting', 'on its own port')).stdout).toBe('OK\n');
    expect(await (await fetch(`http://127.0.0.1:${demo.port}/api/notes`)).json()).toEqual({ greeting: 'on its own port' });
  });

  it('serves the page, the JSON API, health and both WebSocket channels on one port (curl, fetch, ws)', async () => {
    const { port } = await startDemo();
    const base = `http://127.0.0.1:${port}`;
    const { stdout } = await run('curl', ['-sS', `${base}/api/hello?name=curl`]);
    expect(JSON.parse(stdout)).toEqual({ hello: 'curl' });
    expect(await (await fetch(`${base}/`)).text()).toContain('<h1>portbind demo</h1>');
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    const echoed = await fetch(`${base}/api/echo`, { method: 'POST', body: '{"x":[1,2]}' });
    expect(await echoed.json()).toEqual({ echo: { x: [1, 2] } });
    expect((await fetch(`${base}/api/echo`, { method: 'POST', body: 'not json' })).status).toBe(400);

    const echo = new WebSocket(`ws://127.0.0.1:${port}/ws/echo`);
    await once(echo, 'open');
    echo.send('ping');
    const [reply] = (await once(echo, 'message')) as [Buffer];
    expect(reply.toString()).toBe('ping');

    const a = new WebSocket(`ws://127.0.0.1:${port}/ws/broadcast`);
    const b = new WebSocket(`ws://127.0.0.1:${port}/ws/broadcast`);
    await Promise.all([once(a, 'open'), once(b, 'open')]);
    const toB = once(b, 'message');
    a.send('hi all');
    expect(((await toB)[0] as Buffer).toString()).toBe('hi all');
    const stats = (await (await fetch(`${base}/api/stats`)).json()) as { peers: { echo: number; broadcast: number } };
    expect(stats.peers).toEqual({ echo: 1, broadcast: 2 });
    echo.close();
    a.close();
    b.close();
  });

  it('speaks RESP to the same state: redis-cli notes show in the API, PUBLISH reaches WebSocket peers and back', async () => {
    const { port, respPort } = await startDemo();
    const cli = (...args: string[]) => run('redis-cli', ['-h', '127.0.0.1', '-p', String(respPort), ...args]);
    expect((await cli('SET', 'greeting', 'hello from redis-cli')).stdout).toBe('OK\n');
    expect(await (await fetch(`http://127.0.0.1:${port}/api/notes`)).json()).toEqual({ greeting: 'hello from redis-cli' });
    await fetch(`http://127.0.0.1:${port}/api/notes/todo`, { method: 'PUT', body: 'write docs' });
    expect((await cli('GET', 'todo')).stdout).toBe('write docs\n');
    expect((await cli('KEYS', '*')).stdout.split('\n').filter(Boolean).sort()).toEqual(['greeting', 'todo']);

    const peer = new WebSocket(`ws://127.0.0.1:${port}/ws/broadcast`);
    await once(peer, 'open');
    const toPeer = once(peer, 'message');
    expect((await cli('PUBLISH', 'broadcast', 'from redis')).stdout).toBe('1\n');
    expect(((await toPeer)[0] as Buffer).toString()).toBe('from redis');

    const { Redis } = await import('ioredis');
    const subscriber = new Redis({ port: respPort, host: '127.0.0.1' });
    const heard = new Promise<string>((resolve) => subscriber.on('message', (_channel: string, message: string) => resolve(message)));
    await subscriber.subscribe('broadcast');
    peer.send('from the browser');
    expect(await heard).toBe('from the browser');
    subscriber.disconnect();
    peer.close();
  });

  it('answers a note name that is not valid percent-encoding with 400, not a 500 and a stack trace', async () => {
    const demo = await startDemo();
    const response = await fetch(`http://127.0.0.1:${demo.port}/api/notes/%E0`, { method: 'PUT', body: 'x' });
    expect(response.status).toBe(400);
    expect(await response.json()).toEqual({ error: 'the note name is not valid percent-encoded UTF-8' });
    expect((await fetch(`http://127.0.0.1:${demo.port}/api/notes/caf%C3%A9`, { method: 'PUT', body: 'ok' })).status).toBe(204);
    expect(await (await fetch(`http://127.0.0.1:${demo.port}/api/notes`)).json()).toMatchObject({ café: 'ok' });
    expect(demo.logs()).not.toMatch(/"level":(50|60)/);
  });

  it('speaks XMPP: the demo accounts from the log chat over TCP and WebSocket', async () => {
    const { port, xmppPort, logs } = await startDemo();
    const password = (name: string) => new RegExp(`"jid":"${name}@localhost","password":"([^"]+)"`).exec(logs())?.[1] ?? '';
    const { client, xml } = await import('@xmpp/client');
    (globalThis as { WebSocket?: unknown }).WebSocket ??= WebSocket;
    const alice = client({ service: `xmpp://127.0.0.1:${xmppPort}`, domain: 'localhost', username: 'alice', password: password('alice') });
    const bob = client({
      service: `ws://127.0.0.1:${port}/xmpp-websocket`,
      domain: 'localhost',
      username: 'bob',
      password: password('bob'),
    });
    alice.on('error', () => {});
    bob.on('error', () => {});
    try {
      await alice.start();
      await bob.start();
      await bob.send(xml('presence'));
      const toBob = new Promise<string | null>((resolve) => bob.on('stanza', (s) => s.is('message') && resolve(s.getChildText('body'))));
      await alice.send(xml('message', { to: 'bob@localhost', type: 'chat' }, xml('body', {}, 'hi bob')));
      expect(await toBob).toBe('hi bob');
    } finally {
      await Promise.all([alice.stop().catch(() => {}), bob.stop().catch(() => {})]);
    }
  });

  it('on SIGTERM finishes the request in flight with 200, refuses new connections, and exits 0', async () => {
    const demo = await startDemo();
    const base = `http://127.0.0.1:${demo.port}`;
    const inFlight = fetch(`${base}/api/slow?ms=1500`);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const signalled = Date.now();
    demo.child.kill('SIGTERM');
    await new Promise((resolve) => setTimeout(resolve, 200));
    await expect(fetch(`${base}/api/hello`)).rejects.toThrow();
    const response = await inFlight;
    expect(response.status).toBe(200);
    expect(response.headers.get('connection')).toBe('close');
    expect(await response.json()).toEqual({ sleptMs: 1500 });
    const { code } = await demo.exited;
    expect(code).toBe(0);
    // Well within the 10 s grace period.
    expect(Date.now() - signalled).toBeLessThan(5000);
    expect(demo.logs()).toContain('"msg":"stopped"');
  });

  it('closes WebSocket peers with 1001 on SIGTERM', async () => {
    const demo = await startDemo();
    const ws = new WebSocket(`ws://127.0.0.1:${demo.port}/ws/broadcast`);
    await once(ws, 'open');
    const closed = once(ws, 'close');
    demo.child.kill('SIGTERM');
    const [code] = (await closed) as [number];
    expect(code).toBe(1001);
    expect((await demo.exited).code).toBe(0);
  });

  it('one Ctrl-C delivered twice at once (the terminal and `npm start` forwarding it) still drains and exits 0', async () => {
    const demo = await startDemo();
    const inFlight = fetch(`http://127.0.0.1:${demo.port}/api/slow?ms=1000`);
    await new Promise((resolve) => setTimeout(resolve, 200));
    demo.child.kill('SIGINT');
    demo.child.kill('SIGINT');
    const response = await inFlight;
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ sleptMs: 1000 });
    expect((await demo.exited).code).toBe(0);
    expect(demo.logs()).toContain('"msg":"stopped"');
  });

  it('a second signal exits at once', async () => {
    const demo = await startDemo();
    const inFlight = fetch(`http://127.0.0.1:${demo.port}/api/slow?ms=20000`).catch(() => 'cut');
    await new Promise((resolve) => setTimeout(resolve, 200));
    demo.child.kill('SIGTERM');
    await new Promise((resolve) => setTimeout(resolve, 200));
    demo.child.kill('SIGINT');
    const { code } = await demo.exited;
    expect(code).toBe(1);
    expect(await inFlight).toBe('cut');
  });

  it('a second service asking for a taken port fails with a clear error and binds nothing', async () => {
    const first = await startDemo();
    const second = spawnDemo({ PORT: String(first.port), HOST: '127.0.0.1' });
    const [code] = await once(second.child, 'exit');
    const output = second.logs();
    expect(code).toBe(1);
    // HTTP, RESP and XMPP share the one listener that could not bind.
    expect(output).toContain(`Cannot bind http+resp+xmpp on 127.0.0.1:${first.port}: EADDRINUSE`);
    expect(output).not.toContain('listening on');
    // The first is unharmed.
    expect((await fetch(`http://127.0.0.1:${first.port}/livez`)).status).toBe(200);
  });

  it.each([['abc'], ['70000'], ['-1']])('refuses to start with PORT=%s and says why', async (value) => {
    const demo = spawnDemo({ PORT: value });
    const [code] = await once(demo.child, 'exit');
    expect(code).toBe(1);
    expect(demo.logs()).toContain(`Invalid PORT=\\"${value}\\": a port must be an integer from 0 to 65535`);
  });
});
