import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type Logger, PortService } from '@portbind/core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { capturingLogger, type LogLine } from '../../../test/support/log.js';
import { portOf, rawConnect, readUntil, readUntilClose, sleep } from '../../../test/support/net.js';
import { OK, type RespOptions, respAdapter } from '../src/index.js';

// Query buffer limits (Redis's client-query-buffer-limit, counted as real memory, plus a limit
// for all clients together), the close after a protocol error, and drain with peers that never
// answer: each over real sockets, the crash case in a child process with a small heap.

const here = dirname(fileURLToPath(import.meta.url));
const services: PortService[] = [];
afterEach(async () => {
  await Promise.all(services.splice(0).map((s) => s.stop()));
});

async function start(options: RespOptions = {}, bind: Parameters<PortService['bind']>[1] = {}, logger?: Logger) {
  const resp = respAdapter(options);
  const store = new Map<string, Buffer>();
  resp.command('set', { arity: 3, flags: ['write'] }, (_client, [, key, value]) => {
    store.set(String(key), Buffer.from(value as Buffer));
    return OK;
  });
  resp.command('get', { arity: 2, flags: ['readonly'] }, (_client, [, key]) => store.get(String(key)) ?? null);
  resp.command('del', { arity: -2, flags: ['write'] }, (_client, argv) => argv.slice(1).filter((key) => store.delete(String(key))).length);
  const service = new PortService({ env: {}, gracePeriodMs: 20_000, ...(logger === undefined ? {} : { logger }) });
  services.push(service);
  const binding = service.bind(resp, { port: 0, host: '127.0.0.1', closeWaitMs: 300, ...bind });
  await service.start();
  return { resp, service, port: portOf(binding) };
}

/** `*n\r\n$3\r\nDEL\r\n` then one-byte arguments, never finished: the 280 MB attack, scaled. */
const floodHeader = (count: number): string => `*${count + 2}\r\n$3\r\nDEL\r\n`;
const floodPiece = Buffer.from('$1\r\na\r\n'.repeat(10_000));

/** Write `count` one-byte arguments (or until the server closes); resolves with the bytes written. */
async function flood(socket: Socket, count: number): Promise<number> {
  let written = 0;
  let closed = socket.destroyed;
  socket.once('close', () => {
    closed = true;
  });
  socket.on('error', () => {});
  while (!closed && written < count * 7) {
    if (!socket.write(floodPiece)) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          socket.off('drain', done);
          socket.off('close', done);
          resolve();
        };
        socket.on('drain', done);
        socket.on('close', done);
      });
    }
    written += floodPiece.length;
  }
  return written;
}

/** Resolves on 'drain' or 'close', or after `ms`; leaves no listener behind. */
function writable(socket: Socket, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      socket.off('drain', done);
      socket.off('close', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    socket.on('drain', done);
    socket.on('close', done);
  });
}

/** Wait (polling) until `condition` holds; fail with `what` after `ms`. */
async function until(condition: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await sleep(10);
  }
}

async function ping(port: number): Promise<string> {
  const socket = await rawConnect(port);
  socket.write('PING\r\n');
  try {
    return await readUntil(socket, /\r\n$/, 10_000);
  } finally {
    socket.destroy();
  }
}

describe('one client cannot exhaust the heap', () => {
  let child: ChildProcess | undefined;
  let output = '';

  beforeAll(async () => {
    // The child runs the built package: build it first, so the test never runs a stale dist/.
    const tsc = join(here, '../../../node_modules/.bin/tsc');
    await promisify(execFile)(tsc, ['-b', join(here, '..')]);
  }, 120_000);

  afterAll(() => {
    child?.kill('SIGKILL');
  });

  it('the 40-million-argument multibulk, scaled to a 128 MB heap: the offender is closed, the process lives, others are served', async () => {
    child = spawn(process.execPath, ['--max-old-space-size=128', join(here, 'fixtures/server.mjs')], {
      env: { ...process.env, LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const collect = (chunk: Buffer): void => {
      output += chunk.toString();
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    const deadline = Date.now() + 10_000;
    while (!output.includes('"port"') && Date.now() < deadline && child.exitCode === null) await sleep(20);
    const { port, totalQueryBufferLimit } = JSON.parse(output.split('\n')[0] as string) as { port: number; totalQueryBufferLimit: number };
    // The default limit for all clients is half the heap limit.
    expect(totalQueryBufferLimit).toBeLessThan(128 * 1024 * 1024);

    const other = await rawConnect(port);
    const offender = await rawConnect(port);
    const offenderClosed = readUntilClose(offender, 60_000);
    offender.write(floodHeader(40_000_000));
    // 40 million one-byte arguments (280 MB on the wire) held as they arrive cost ~260 MB (a
    // 4-byte length and a byte each, grown by doubling; as Buffer views ~4.6 GB): over the total
    // limit of half this child's heap long before they are all sent.
    const flooding = flood(offender, 40_000_000);
    // Another client is served while the flood comes in.
    const replies: string[] = [];
    let serving = true;
    const served = (async () => {
      while (serving) {
        other.write('PING\r\n');
        replies.push(await readUntil(other, /\r\n$/, 20_000));
        await sleep(20);
      }
    })();
    const written = await flooding;
    const { data, closed } = await offenderClosed;
    serving = false;
    await served;
    expect(closed).toBe(true);
    expect(data).toBe(''); // Redis closes such a client without a reply
    expect(written).toBeLessThan(40_000_000 * 7);
    expect(replies.length).toBeGreaterThan(0);
    expect(new Set(replies)).toEqual(new Set(['+PONG\r\n']));
    expect(child.exitCode).toBeNull();
    // The child's log line comes over a pipe, maybe after the socket closed: wait for it.
    await until(() => output.includes('closing client') || child?.exitCode !== null, 'the child logs the closed client');
    expect(output).toContain('closing client');
    expect(output).not.toContain('heap out of memory');
    // Afterwards: the process still serves, old and new clients alike.
    other.write('SET k v\r\nGET k\r\n');
    expect(await readUntil(other, /\$1\r\nv\r\n$/)).toBe('+OK\r\n$1\r\nv\r\n');
    other.destroy();
    expect(await ping(port)).toBe('+PONG\r\n');
    child.kill('SIGTERM');
    const [code] = await once(child, 'exit');
    expect(code).toBe(0);
  }, 120_000);
});

describe('query buffer limits', () => {
  it('closes a client whose pending command passes queryBufferLimit, counting each argument’s objects', async () => {
    const { port, resp } = await start({ queryBufferLimit: 1024 * 1024 });
    const offender = await rawConnect(port);
    const closed = readUntilClose(offender, 20_000);
    offender.write(floodHeader(10_000_000));
    // 10 000 one-byte arguments are 70 KB on the wire but ~1.2 MB in memory: over 1 MiB. The
    // client is cut off long before its 70 MB are sent.
    const written = await flood(offender, 10_000_000);
    expect(await closed).toEqual({ data: '', closed: true });
    expect(written).toBeLessThan(10_000_000 * 7);
    expect(resp.queryBytes).toBe(0);
    expect(await ping(port)).toBe('+PONG\r\n');
  });

  it('lets a big command under the limit through', async () => {
    const { port, resp } = await start({ queryBufferLimit: 4 * 1024 * 1024 });
    const socket = await rawConnect(port);
    socket.write(`*20002\r\n$3\r\nDEL\r\n$1\r\nb\r\n`);
    socket.write(floodPiece);
    socket.write(floodPiece);
    expect(await readUntil(socket, /\r\n$/)).toBe(':0\r\n');
    expect(resp.queryBytes).toBe(0);
    socket.destroy();
  });

  it('counts commands queued by MULTI', async () => {
    const { port } = await start({ queryBufferLimit: 1024 * 1024 });
    const socket = await rawConnect(port);
    const result = readUntilClose(socket, 20_000);
    socket.write('MULTI\r\n');
    const value = 'x'.repeat(60_000);
    for (let i = 0; i < 30 && !socket.destroyed; i++) {
      socket.write(`*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$${value.length}\r\n${value}\r\n`);
      await sleep(5);
    }
    const { data, closed } = await result;
    expect(closed).toBe(true);
    expect(data).toMatch(/^\+OK\r\n(\+QUEUED\r\n)+$/);
    expect((data.match(/QUEUED/g) ?? []).length).toBeLessThan(30);
  });

  it('holds a client that has not authenticated to 1 MiB', async () => {
    const { port } = await start({
      queryBufferLimit: 64 * 1024 * 1024,
      authenticate: async () => {
        await sleep(2000);
        return false;
      },
    });
    const socket = await rawConnect(port);
    const result = readUntilClose(socket, 20_000);
    socket.write('AUTH someone secret\r\n');
    // While AUTH runs, the rest waits unparsed: 2 MiB of it is over the limit.
    const line = Buffer.from(`PING ${'p'.repeat(1000)}\r\n`);
    for (let i = 0; i < 2048 && !socket.destroyed; i++) socket.write(line);
    expect(await result).toEqual({ data: '', closed: true });
  });

  it('bounds all clients together: each under its own limit, together over the total, the largest is closed and the rest served', async () => {
    const { port, resp } = await start({ queryBufferLimit: 64 * 1024 * 1024, totalQueryBufferLimit: 10 * 1024 * 1024 });
    // Three clients each send 4 MiB of a SET that is not finished yet: 12 MiB together.
    const size = 5 * 1024 * 1024;
    const part = 4 * 1024 * 1024;
    const clients = await Promise.all([0, 1, 2].map(() => rawConnect(port)));
    const outcomes = clients.map((socket) => readUntilClose(socket, 20_000));
    for (const [i, socket] of clients.entries()) {
      socket.write(`*3\r\n$3\r\nSET\r\n$2\r\nk${i}\r\n$${size}\r\n`);
      socket.write(Buffer.alloc(part, 0x61));
      // Wait until the server holds it (or closed someone), so the order is known.
      const deadline = Date.now() + 10_000;
      while (resp.queryBytes < (i + 1) * part && Date.now() < deadline) {
        if (clients.some((c) => c.destroyed)) break;
        await sleep(10);
      }
    }
    // The third pushed the total over 10 MiB: the client holding the most was closed.
    const deadline = Date.now() + 10_000;
    while (!clients.some((c) => c.destroyed) && Date.now() < deadline) await sleep(10);
    expect(resp.queryBytes).toBeLessThanOrEqual(10 * 1024 * 1024);
    expect(await ping(port)).toBe('+PONG\r\n');
    // The others finish their commands and are answered.
    const alive = clients.filter((c) => !c.destroyed && c.readyState === 'open');
    expect(alive.length).toBe(2);
    for (const socket of alive) {
      socket.write(Buffer.alloc(size - part, 0x61));
      socket.write('\r\nPING\r\n');
      socket.end();
    }
    const results = await Promise.all(outcomes);
    const answered = results.filter(({ data }) => data === '+OK\r\n+PONG\r\n');
    const closedSilently = results.filter(({ data }) => data === '');
    expect(answered.length).toBe(2);
    expect(closedSilently.length).toBe(1);
  });
});

describe('limit options', () => {
  it.each([
    [{ databases: 0 }, 'Invalid respAdapter({ databases })=0: must be an integer from 1 to 2147483647'],
    [{ databases: 1.5 }, 'Invalid respAdapter({ databases })=1.5: must be an integer from 1 to 2147483647'],
    [{ databases: Number.NaN }, 'Invalid respAdapter({ databases })=NaN: must be an integer from 1 to 2147483647'],
    [{ outputHighWaterMark: 0 }, 'Invalid respAdapter({ outputHighWaterMark })=0: must be a positive number of bytes'],
    [{ maxBulkLength: -1 }, 'Invalid respAdapter({ maxBulkLength })=-1: must be a positive number of bytes'],
    [
      { pubsubLimits: { hardBytes: -1, softBytes: 0, softSeconds: 0 } },
      'Invalid respAdapter({ pubsubLimits: { hardBytes } })=-1: must be a number, 0 (no limit) or more',
    ],
    [
      { pubsubLimits: { hardBytes: 0, softBytes: 0, softSeconds: Number.NaN } },
      'Invalid respAdapter({ pubsubLimits: { softSeconds } })=NaN: must be a number, 0 (no limit) or more',
    ],
  ] satisfies Array<[RespOptions, string]>)('refuses %o, naming the option (PB_ERR_CONFIG)', (options, message) => {
    expect(() => respAdapter(options)).toThrow(expect.objectContaining({ code: 'PB_ERR_CONFIG', message }));
  });

  it('serves SELECT within the configured databases', async () => {
    const { port } = await start({ databases: 1 });
    const socket = await rawConnect(port);
    socket.write('SELECT 0\r\nSELECT 1\r\n');
    expect(await readUntil(socket, /range\r\n$/)).toBe('+OK\r\n-ERR DB index is out of range\r\n');
    socket.destroy();
  });

  it('refuses a limit that is not a positive number of bytes, naming the option (PB_ERR_CONFIG)', () => {
    expect(() => respAdapter({ queryBufferLimit: 0 })).toThrow(
      expect.objectContaining({
        code: 'PB_ERR_CONFIG',
        message: 'Invalid respAdapter({ queryBufferLimit })=0: must be a positive number of bytes',
      }),
    );
    expect(() => respAdapter({ totalQueryBufferLimit: Number.NaN })).toThrow(
      expect.objectContaining({
        code: 'PB_ERR_CONFIG',
        message: 'Invalid respAdapter({ totalQueryBufferLimit })=NaN: must be a positive number of bytes',
      }),
    );
  });
});

describe('pub/sub output limit', () => {
  it('a subscriber that never reads is cut at the hard limit and logged once, however much more is published', async () => {
    const lines: LogLine[] = [];
    const { port, resp } = await start({}, {}, capturingLogger(lines));
    const slow = await rawConnect(port);
    slow.write('SUBSCRIBE firehose\r\n');
    await readUntil(slow, /:1\r\n$/);
    slow.pause(); // never reads again
    slow.on('error', () => {});
    const closed = once(slow, 'close');
    // ~300 MB published in bursts of 16 × 256 KiB, each burst before the event loop turns: the
    // default 32 MB hard limit is passed in the first bursts, and every later publish arrives
    // while the cut-off subscriber is still subscribed (until its socket's 'close').
    const payload = Buffer.alloc(256 * 1024, 120);
    for (let burst = 0; burst < 75; burst++) {
      for (let i = 0; i < 16; i++) resp.publish('firehose', payload);
      await sleep(1);
    }
    slow.resume(); // to see the server's close
    await closed;
    expect(resp.subscriberCount('firehose')).toBe(0);
    const cut = lines.filter((line) => line.message === 'subscriber closed for overcoming of output buffer limits');
    expect(cut.length).toBe(1);
    expect(cut[0]?.level).toBe('warn');
    expect(cut[0]?.fields.outputBytes).toBeGreaterThanOrEqual(32 * 1024 * 1024);
    expect(await ping(port)).toBe('+PONG\r\n');
  });
});

describe('protocol errors', () => {
  it('answers the error and closes; what the client sends after it is not read into memory', async () => {
    const { port, resp } = await start();
    const socket = await rawConnect(port);
    const result = readUntilClose(socket, 20_000);
    socket.write('*abc\r\n');
    await readUntil(socket, /\r\n$/).catch(() => undefined);
    // The client keeps sending: the server drops it and closes within closeWaitMs.
    const junk = Buffer.alloc(64 * 1024, 0x61);
    let sent = 0;
    let maxHeld = 0;
    socket.on('error', () => {});
    while (!socket.destroyed && socket.readyState !== 'closed' && sent < 512 * 1024 * 1024) {
      if (!socket.write(junk)) await writable(socket, 200);
      sent += junk.length;
      for (const client of resp.clients.values()) maxHeld = Math.max(maxHeld, client.inputBytes, client.conn.socket.readableLength);
      maxHeld = Math.max(maxHeld, resp.queryBytes);
    }
    const { data, closed } = await result;
    expect(data).toBe('-ERR Protocol error: invalid multibulk length\r\n');
    expect(closed).toBe(true);
    expect(maxHeld).toBeLessThan(1024 * 1024);
    const deadline = Date.now() + 5000;
    while (resp.clients.size > 0 && Date.now() < deadline) await sleep(10);
    expect(resp.clients.size).toBe(0);
  });

  it.each([
    ['a protocol error', '*1\r\n$x\r\n', '-ERR Protocol error: invalid bulk length\r\n'],
    ['QUIT', 'QUIT\r\n', '+OK\r\n'],
  ])('after %s, a client that keeps writing for a second is no longer read, and still gets the reply', async (_what, request, reply) => {
    // closeWaitMs as by default: the socket lives on for 2 s after the reply, but unread.
    const { port, resp } = await start({}, { closeWaitMs: 2000 });
    // A peer that ignores the server's FIN and goes on writing.
    const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    await once(socket, 'connect');
    await until(() => resp.clients.size === 1, 'the client is registered');
    const server = [...resp.clients.values()][0]?.conn.socket as Socket;
    const result = readUntilClose(socket, 20_000);
    socket.write(request);
    const junk = Buffer.alloc(64 * 1024, 0x61);
    const started = Date.now();
    while (Date.now() - started < 1000 && !socket.destroyed) {
      if (!socket.write(junk)) await writable(socket, 50);
    }
    const accepted = socket.bytesWritten;
    const read = server.bytesRead;
    if (process.env.RESP_REPORT) console.log(JSON.stringify({ what: _what, accepted, read }));
    // Before: 1.2–1.4 GB went through in that second. Now the server reads 64 KiB more, then
    // only the two kernels' socket buffers fill up.
    expect(read).toBeLessThan(1024 * 1024);
    expect(accepted).toBeLessThan(16 * 1024 * 1024);
    // The reply arrives, then the connection is reset after closeWaitMs.
    const { data, closed } = await result;
    expect(data).toBe(reply);
    expect(closed).toBe(true);
    await until(() => resp.clients.size === 0, 'the server dropped the client');
  });

  it('after QUIT, a client that closes at once is seen closing at once', async () => {
    const { port, resp } = await start({}, { closeWaitMs: 20_000 });
    const socket = await rawConnect(port);
    const result = readUntilClose(socket, 20_000);
    socket.write('QUIT\r\n');
    expect(await result).toEqual({ data: '+OK\r\n', closed: true });
    // Long before closeWaitMs: the server read the peer's FIN.
    await until(() => resp.clients.size === 0, 'the server saw the close', 10_000);
  });

  it('after QUIT, later bytes are not buffered either', async () => {
    const { port, resp } = await start();
    const socket = await rawConnect(port);
    const result = readUntilClose(socket, 20_000);
    socket.write('QUIT\r\n');
    socket.write(Buffer.alloc(4 * 1024 * 1024, 0x61));
    expect(await result).toEqual({ data: '+OK\r\n', closed: true });
    expect(resp.queryBytes).toBe(0);
  });
});

describe('drain', () => {
  it('a client that never reads and never closes does not hold stop() beyond closeWaitMs', async () => {
    const { port, service } = await start({ outputHighWaterMark: 64 * 1024 }, { closeWaitMs: 300 });
    const socket = await rawConnect(port);
    socket.pause(); // never reads
    socket.on('error', () => {});
    const value = 'v'.repeat(100_000);
    socket.write(`SET big ${value}\r\n`);
    for (let i = 0; i < 200; i++) socket.write('GET big\r\n');
    await sleep(200);
    const started = Date.now();
    const report = await service.stop();
    const took = Date.now() - started;
    // The grace period is 20 s: the peer was cut off after closeWaitMs (0.3 s), not at the deadline.
    expect(took).toBeLessThan(10_000);
    expect(report.forced).toBe(0);
    socket.destroy();
  });
});
