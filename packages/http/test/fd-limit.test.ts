import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rawConnect, readUntil, readUntilClose, sleep } from '../../../test/support/net.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');
const fixture = join(here, 'fixtures', 'fd-limit-server.mjs');

interface Ready {
  http: number;
  line: number;
  maxConnections: { http: number; line: number };
}

let child: ChildProcess;
let ready: Ready;
let output = '';
const logLines = (): Array<{ level?: number; msg?: string }> =>
  output
    .split('\n')
    .filter((line) => line.startsWith('{"level"'))
    .map((line) => JSON.parse(line) as { level?: number; msg?: string });

beforeAll(async () => {
  // The child runs the built packages: build them (incremental, quick when nothing changed).
  await promisify(execFile)(join(root, 'node_modules', '.bin', 'tsc'), ['-b', 'packages/http'], { cwd: root });
  child = spawn('bash', ['-c', `ulimit -n 64 && exec "${process.execPath}" "${fixture}"`], {
    cwd: here,
    env: { ...process.env, LOG_LEVEL: 'debug', NODE_ENV: 'production' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  child.stdout?.setEncoding('utf8');
  ready = await new Promise<Ready>((resolve, reject) => {
    child.stdout?.on('data', (text: string) => {
      output += text;
      const line = output.split('\n').find((candidate) => candidate.startsWith('{"fixture":"ready"'));
      if (line !== undefined) resolve(JSON.parse(line) as Ready);
    });
    child.once('exit', (code) => reject(new Error(`fixture exited with ${code}: ${output}`)));
  });
}, 60_000);

afterAll(async () => {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    await exited;
  }
});

/** GET / until it is answered 200 (refusals are 503 while the server still counts closed clients). */
async function servedSoon(port: number): Promise<string> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const response = await fetch(`http://127.0.0.1:${port}/`).catch(() => undefined);
    if (response?.status === 200) return response.text();
    await response?.body?.cancel();
    if (Date.now() > deadline) throw new Error(`not served again: ${response?.status}`);
    await sleep(50);
  }
}

/** A line client until it is echoed (not refused). */
async function lineServedSoon(port: number): Promise<string> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const socket = await rawConnect(port);
    socket.on('error', () => {});
    socket.write('hello\n');
    const answer = await readUntil(socket, /\n/).catch(() => '');
    socket.destroy();
    if (answer === 'hello\n' || Date.now() > deadline) return answer;
    await sleep(50);
  }
}

async function httpClient(port: number): Promise<Socket> {
  const socket = await rawConnect(port);
  socket.on('error', () => {});
  socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  expect(await readUntil(socket, /\r\n\r\nok\n$/)).toMatch(/^HTTP\/1\.1 200 /);
  return socket;
}

async function lineClient(port: number): Promise<Socket> {
  const socket = await rawConnect(port);
  socket.on('error', () => {});
  socket.write('hello\n');
  expect(await readUntil(socket, /\n/)).toBe('hello\n');
  return socket;
}

describe('at the open-file limit (ulimit -n 64)', () => {
  it('lowers maxConnections to what the process can open and says why', () => {
    expect(ready.maxConnections.http).toBeGreaterThan(0);
    expect(ready.maxConnections.line).toBeGreaterThan(0);
    // 64 descriptors, a reserve of 32 and what node opened itself: far fewer than 64 between them.
    expect(ready.maxConnections.http + ready.maxConnections.line).toBeLessThan(64 - 32);
    const warning = logLines().find((line) => line.msg?.startsWith('maxConnections lowered to fit the open-file limit'));
    expect(warning).toMatchObject({ level: 40, openFileLimit: 64, reservedFds: 32 });
    expect(warning?.msg).toContain('ulimit -n is 64');
  });

  it('refuses extra clients in their protocol’s words, logs why, and serves again once others leave', async () => {
    const held: Socket[] = [];
    for (let i = 0; i < ready.maxConnections.http; i++) held.push(await httpClient(ready.http));
    for (let i = 0; i < ready.maxConnections.line; i++) held.push(await lineClient(ready.line));

    for (let i = 0; i < 5; i++) {
      const extra = await rawConnect(ready.http);
      const answer = await readUntilClose(extra);
      expect(answer.closed).toBe(true);
      expect(answer.data).toMatch(/^HTTP\/1\.1 503 Service Unavailable\r\n/);
      const extraLine = await rawConnect(ready.line);
      expect(await readUntilClose(extraLine)).toEqual({ data: '-ERR max number of clients reached\r\n', closed: true });
    }
    // One warning per binding for the whole episode, not one per refused client.
    const refusals = logLines().filter((line) => line.level === 40 && line.msg?.startsWith('connection refused'));
    expect(refusals).toHaveLength(2);
    expect(refusals[0]?.msg).toContain('open-file limit');

    // The clients already in are still served.
    held[0]?.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(await readUntil(held[0] as Socket, /\r\n\r\nok\n$/)).toMatch(/^HTTP\/1\.1 200 /);

    for (const socket of held) socket.destroy();
    // Once the server has seen them go (no fixed sleep: poll), a well-behaved client is served.
    expect(await servedSoon(ready.http)).toBe('ok\n');
    expect(await lineServedSoon(ready.line)).toBe('hello\n');
    expect(child.exitCode).toBeNull();
  });

  it('survives running out of descriptors (EMFILE on accept): no crash, no error line, serves again', async () => {
    const keepAlive = await httpClient(ready.http);
    keepAlive.write('GET /hog HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(await readUntil(keepAlive, /EMFILE after \d+\n$/)).toMatch(/^HTTP\/1\.1 200 /);
    // Every descriptor is taken: new peers are accepted and closed unanswered by libuv.
    for (let i = 0; i < 3; i++) {
      const socket = await rawConnect(ready.http);
      socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      expect((await readUntilClose(socket)).data).toBe('');
    }
    keepAlive.write('GET /release HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(await readUntil(keepAlive, /released\n$/)).toMatch(/^HTTP\/1\.1 200 /);
    keepAlive.destroy();
    // A new connection is accepted and served again.
    (await httpClient(ready.http)).destroy();
    expect(child.exitCode).toBeNull();
    // libuv usually hides EMFILE (it accepts and closes the peer with a descriptor kept in
    // reserve); when it does report it, core logs one warning, never an error or a crash.
    const warnings = logLines().filter((line) => line.msg?.startsWith('cannot accept connections'));
    expect(warnings.length).toBeLessThanOrEqual(1);
    expect(logLines().filter((line) => (line.level ?? 0) >= 50)).toEqual([]);
  });

  it('drains on SIGTERM and exits 0', async () => {
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    const [code] = (await exited) as [number | null];
    expect(code).toBe(0);
  });
});
