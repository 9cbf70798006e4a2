import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { lstat, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { readUntil } from '../../../test/support/net.js';
import { BindError, PortService, SocketPathError } from '../src/index.js';
import { LineAdapter } from './line-adapter.js';

const services: PortService[] = [];
const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(services.splice(0).map((s) => s.stop()));
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'pb-unix-'));
  dirs.push(dir);
  return dir;
}

/** A service whose line adapter reads its socket path from RESP_PORT, as the demo's RESP port does. */
function respLike(path: string): PortService {
  const s = new PortService({ env: { RESP_PORT: path } });
  services.push(s);
  s.bind(new LineAdapter('resp', 'RESP_PORT'));
  return s;
}

async function ask(path: string, line: string): Promise<string> {
  const socket = netConnect(path);
  await once(socket, 'connect');
  socket.write(`${line}\n`);
  const answer = await readUntil(socket, /\n/);
  socket.destroy();
  return answer;
}

/** A socket file left by a process that died: a child listens on it and is SIGKILLed (no cleanup runs). */
async function staleSocket(path: string): Promise<void> {
  const child: ChildProcess = spawn(
    process.execPath,
    ['-e', `require('node:net').createServer().listen(${JSON.stringify(path)}, () => console.log('ready'))`],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await once(child.stdout as NodeJS.ReadableStream, 'data');
  const exited = once(child, 'exit');
  child.kill('SIGKILL');
  await exited;
  expect((await lstat(path)).isSocket()).toBe(true);
}

describe('Unix socket paths never delete files', () => {
  it('refuses a regular file at the path, naming the variable and the path; the file survives intact', async () => {
    const dir = await tempDir();
    const path = join(dir, 'notes.db');
    await writeFile(path, 'precious data\n');
    const s = respLike(path);
    let error: unknown;
    await s.start().catch((caught: unknown) => {
      error = caught;
    });
    expect(error).toBeInstanceOf(SocketPathError);
    expect(error).toMatchObject({ code: 'PB_ERR_SOCKET_PATH', binding: 'resp', variable: 'RESP_PORT', path });
    expect((error as Error).message).toContain(`RESP_PORT=${JSON.stringify(path)}: a regular file is there`);
    expect(s.state).toBe('idle');
    expect(await readFile(path, 'utf8')).toBe('precious data\n');
    await s.stop();
    expect(await readFile(path, 'utf8')).toBe('precious data\n');
  });

  it('refuses a directory at the path with a clear error', async () => {
    const dir = await tempDir();
    const path = join(dir, 'run');
    await mkdir(path);
    await writeFile(join(path, 'inside'), 'x');
    const s = new PortService({ env: {} });
    services.push(s);
    s.bind(new LineAdapter(), { path });
    await expect(s.start()).rejects.toMatchObject({
      code: 'PB_ERR_SOCKET_PATH',
      variable: 'path',
      message: expect.stringContaining('a directory is there, not a socket'),
    });
    expect((await lstat(path)).isDirectory()).toBe(true);
    expect(await readFile(join(path, 'inside'), 'utf8')).toBe('x');
  });

  it('takes over a stale socket left by a killed process, and removes its own socket on stop', async () => {
    const dir = await tempDir();
    const path = join(dir, 'resp.sock');
    await staleSocket(path);
    const s = respLike(path);
    await s.start();
    expect(s.binding('resp').address).toBe(path);
    expect(await ask(path, 'hello')).toBe('hello\n');
    await s.stop();
    await expect(lstat(path)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('does not take a socket somebody answers on; that socket keeps working', async () => {
    const dir = await tempDir();
    const path = join(dir, 'busy.sock');
    const other = createServer((socket) => {
      socket.on('error', () => {}); // portbind's probe connects and leaves at once
      socket.end('other\n');
    });
    other.listen(path);
    await once(other, 'listening');
    try {
      const s = respLike(path);
      let error: unknown;
      await s.start().catch((caught: unknown) => {
        error = caught;
      });
      expect(error).toBeInstanceOf(BindError);
      expect(error).toMatchObject({ code: 'PB_ERR_BIND', message: expect.stringContaining('EADDRINUSE') });
      const socket = netConnect(path);
      expect(await readUntil(socket, /\n/)).toBe('other\n');
      socket.destroy();
    } finally {
      other.close();
    }
  });

  it('on stop, leaves alone a file that replaced its socket while it ran', async () => {
    const dir = await tempDir();
    const path = join(dir, 'app.sock');
    const s = respLike(path);
    await s.start();
    expect((await lstat(path)).isSocket()).toBe(true);
    // Someone (a deploy script, a second instance) replaces the socket file with a file of its own.
    await rm(path);
    await writeFile(path, 'not yours\n');
    await s.stop();
    expect(await readFile(path, 'utf8')).toBe('not yours\n');
  });
});
