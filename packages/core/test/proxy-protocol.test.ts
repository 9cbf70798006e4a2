import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { capturingLogger, type LogLine } from '../../../test/support/log.js';
import { portOf, rawConnect, readUntil, readUntilClose, selfSignedCert, sleep } from '../../../test/support/net.js';
import type { Adapter, BindingContext, BindOptions, Connection } from '../src/index.js';
import { PortService } from '../src/index.js';
import { v1Header, v2Header } from './proxy-support.js';

/** `ADDR` answers what the adapter sees: `conn.remoteAddress conn.remotePort socket.remoteAddress loopback|remote version`. */
class AddressAdapter implements Adapter {
  readonly name = 'addr';
  readonly scheme = 'addr';
  readonly secureScheme = 'addrs';
  readonly portEnv = 'ADDR_PORT';
  readonly defaultPort = 7000;
  readonly conns = new Set<Connection>();

  open(_binding: BindingContext): void {}

  connection(conn: Connection): void {
    this.conns.add(conn);
    conn.socket.on('error', () => {});
    conn.socket.once('close', () => this.conns.delete(conn));
    let buffer = '';
    conn.socket.on('data', (chunk: Buffer) => {
      buffer += chunk.toString('latin1');
      let newline = buffer.indexOf('\n');
      while (newline !== -1) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        if (line === 'ADDR') {
          const parts = [
            conn.remoteAddress,
            conn.remotePort,
            conn.socket.remoteAddress,
            conn.isLoopback ? 'loopback' : 'remote',
            conn.proxy === undefined ? 'direct' : `v${conn.proxy.version}-${conn.proxy.command}`,
          ];
          conn.socket.write(`${parts.join(' ')}\n`);
        } else {
          conn.socket.write(`echo ${JSON.stringify(line)}\n`);
        }
        newline = buffer.indexOf('\n');
      }
    });
  }

  refuse(socket: Socket): void {
    socket.write('ERR max clients\n');
  }

  drain(): void {
    for (const conn of this.conns) conn.socket.end('BYE\n');
  }
}

const services: PortService[] = [];
const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(services.splice(0).map((s) => s.stop()));
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'portbind-pp-'));
  dirs.push(dir);
  return dir;
}

async function start(bind: BindOptions, lines: LogLine[] = []) {
  const service = new PortService({ env: {}, logger: capturingLogger(lines), gracePeriodMs: 5000 });
  services.push(service);
  const adapter = new AddressAdapter();
  const binding = service.bind(adapter, { port: 0, host: '127.0.0.1', ...bind });
  await service.start();
  return { service, binding, adapter, port: portOf(binding), lines };
}

const trustLoopback: BindOptions = { proxyProtocol: { trusted: ['127.0.0.1'] } };

async function ask(socket: Socket, line = 'ADDR'): Promise<string> {
  socket.write(`${line}\n`);
  return (await readUntil(socket, /\n/)).trim();
}

/** A raw connection that sends `bytes` and expects the server to close it, having said nothing. */
async function expectRefused(port: number, bytes: string | Buffer): Promise<void> {
  const socket = await rawConnect(port);
  const outcome = readUntilClose(socket);
  socket.write(bytes);
  expect(await outcome).toEqual({ data: '', closed: true });
}

describe('PROXY protocol from a trusted proxy', () => {
  it('v1: the client named in the header is the connection address, also as socket.remoteAddress', async () => {
    const { port } = await start(trustLoopback);
    const socket = await rawConnect(port);
    // Header and the first command in one write: the bytes after the header reach the adapter.
    socket.write(`${v1Header(['203.0.113.7', 51000])}ADDR\n`);
    expect((await readUntil(socket, /\n/)).trim()).toBe('203.0.113.7 51000 203.0.113.7 remote v1-proxy');
    expect(await ask(socket, 'hello')).toBe('echo "hello"');
    socket.destroy();
  });

  it('v1 TCP6 and v2 TCP6 give IPv6 clients; a v2 loopback client is loopback', async () => {
    const { port } = await start(trustLoopback);
    const a = await rawConnect(port);
    a.write('PROXY TCP6 2001:db8::1 ::1 4444 80\r\n');
    expect(await ask(a)).toBe('2001:db8::1 4444 2001:db8::1 remote v1-proxy');
    a.destroy();
    const b = await rawConnect(port);
    b.write(Buffer.concat([v2Header({ family: 0x21, source: ['::1', 5555], destination: ['::1', 80] }), Buffer.from('ADDR\n')]));
    expect((await readUntil(b, /\n/)).trim()).toBe('::1 5555 ::1 loopback v2-proxy');
    b.destroy();
  });

  it('v2 with TLVs, sent one byte at a time, then the stream untouched', async () => {
    const { port } = await start(trustLoopback);
    const socket = await rawConnect(port);
    socket.setNoDelay(true);
    const bytes = Buffer.concat([
      v2Header({ source: ['198.51.100.20', 61000], tlvs: [[0x02, Buffer.from('example.com')]] }),
      Buffer.from('ADDR\n'),
    ]);
    for (const byte of bytes) {
      socket.write(Buffer.from([byte]));
      await sleep(2);
    }
    expect((await readUntil(socket, /\n/)).trim()).toBe('198.51.100.20 61000 198.51.100.20 remote v2-proxy');
    socket.destroy();
  });

  it('v2 LOCAL (a health check) keeps the proxy’s own address', async () => {
    const { port } = await start(trustLoopback);
    const socket = await rawConnect(port);
    socket.write(v2Header({ command: 0 }));
    expect(await ask(socket)).toMatch(/^127\.0\.0\.1 \d+ 127\.0\.0\.1 loopback v2-local$/);
    socket.destroy();
  });

  it('an IPv4-mapped or CIDR entry trusts the loopback proxy too', async () => {
    for (const trusted of [['::ffff:127.0.0.1'], ['127.0.0.0/8'], ['0.0.0.0/0']]) {
      const { port } = await start({ proxyProtocol: { trusted } });
      const socket = await rawConnect(port);
      socket.write(v1Header(['192.0.2.9', 1000]));
      expect(await ask(socket)).toBe('192.0.2.9 1000 192.0.2.9 remote v1-proxy');
      socket.destroy();
    }
  });

  it('over TLS: the header comes before the ClientHello (in one segment or not), TLS and the adapter see the client', async () => {
    const { cert, key } = await selfSignedCert();
    const { port } = await start({ ...trustLoopback, tls: { cert, key } });

    // Header, then a TLS handshake on the same TCP connection.
    const raw = await rawConnect(port);
    raw.write(v1Header(['203.0.113.50', 4000]));
    const tls = tlsConnect({ socket: raw, rejectUnauthorized: false });
    await once(tls, 'secureConnect');
    expect(await ask(tls as unknown as Socket)).toBe('203.0.113.50 4000 203.0.113.50 remote v1-proxy');
    tls.destroy();

    // Header and ClientHello in one write: the TLS server reads the ClientHello from what was put back.
    const raw2 = await rawConnect(port);
    const tls2 = tlsConnect({ socket: prefixed(raw2, v2Header({ source: ['203.0.113.51', 4001] })), rejectUnauthorized: false });
    await once(tls2, 'secureConnect');
    expect(await ask(tls2 as unknown as Socket)).toBe('203.0.113.51 4001 203.0.113.51 remote v2-proxy');
    tls2.destroy();
  });
});

/** A duplex over `socket` whose first write carries `prefix` in the same TCP write. */
function prefixed(socket: Socket, prefix: Buffer): Duplex {
  let first = true;
  const duplex = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk: Buffer, _encoding, callback) {
      const bytes = first ? Buffer.concat([prefix, chunk]) : chunk;
      first = false;
      socket.write(bytes, callback);
    },
    final(callback) {
      socket.end(callback);
    },
    destroy(error, callback) {
      socket.destroy();
      callback(error);
    },
  });
  socket.on('data', (chunk: Buffer) => {
    if (!duplex.push(chunk)) socket.pause();
  });
  socket.on('end', () => duplex.push(null));
  socket.on('error', (error) => duplex.destroy(error));
  return duplex;
}

describe('PROXY protocol: refused connections', () => {
  it('a trusted proxy without a header is refused (no guessing), and so is one that closes mid-header', async () => {
    const { port, lines } = await start(trustLoopback);
    await expectRefused(port, 'ADDR\n');
    await expectRefused(port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    const socket = await rawConnect(port);
    const outcome = readUntilClose(socket);
    socket.end('PROXY TCP4 1.2.3.4');
    expect(await outcome).toEqual({ data: '', closed: true });
    expect(lines.filter((l) => l.level === 'error')).toEqual([]);
  });

  it('a PROXY header from an address not in the list is refused; a direct client there is served as itself', async () => {
    const { port, lines } = await start({ proxyProtocol: { trusted: ['10.0.0.0/8', '::1'] } });
    await expectRefused(port, v1Header(['192.0.2.1', 1]));
    await expectRefused(port, v2Header({}));
    await expectRefused(port, 'PROXY UNKNOWN\r\n');
    const direct = await rawConnect(port);
    expect(await ask(direct)).toMatch(/^127\.0\.0\.1 \d+ 127\.0\.0\.1 loopback direct$/);
    direct.destroy();
    // One warning for the episode; the rest at debug.
    const refusals = lines.filter((l) => l.message?.startsWith('connection refused'));
    expect(refusals.map((l) => l.level)).toEqual(['warn', 'debug', 'debug']);
    expect(refusals[0]?.message).toMatch(/not in proxyProtocol\.trusted/);
  });

  it.each<[string, string | Buffer]>([
    ['bad v1 tokens', 'PROXY TCP4 1.2.3.4 nonsense 1 2\r\nADDR\n'],
    ['v1 over 107 bytes without CRLF', `PROXY TCP4 ${'1'.repeat(200)}`],
    ['v1 with a bare LF', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\nADDR\n'],
    ['a bad v2 signature', Buffer.concat([Buffer.from('\r\n\r\n\0\r\nQUIX\n'), Buffer.alloc(30)])],
    ['a bad v2 version', v2Header({ version: 1 })],
    ['a bad v2 command', v2Header({ command: 0xf })],
    ['a v2 length too short for its addresses', v2Header({ family: 0x21, lengthDelta: -20 })],
    ['a v2 TLV that overruns', v2Header({ tlvs: [[1, Buffer.from('abc')]], lengthDelta: -2 })],
  ])('malformed: %s → closed, the process and other clients live on, no error log', async (_what, bytes) => {
    const { port, lines } = await start(trustLoopback);
    const good = await rawConnect(port);
    good.write(v1Header(['192.0.2.77', 7]));
    expect(await ask(good)).toBe('192.0.2.77 7 192.0.2.77 remote v1-proxy');
    await expectRefused(port, bytes);
    expect(await ask(good)).toBe('192.0.2.77 7 192.0.2.77 remote v1-proxy');
    good.destroy();
    expect(lines.filter((l) => l.level === 'error')).toEqual([]);
    expect(lines.filter((l) => l.level === 'warn').length).toBe(1);
  });

  it('a truncated v2 header, or one byte a second, is closed at the time limit and not before', async () => {
    const timeoutMs = 1500;
    const { port, lines } = await start({ proxyProtocol: { trusted: ['127.0.0.1'], timeoutMs } });
    const truncated = await rawConnect(port);
    const truncatedOutcome = readUntilClose(truncated);
    const header = v2Header({ family: 0x21 });
    truncated.write(header.subarray(0, header.length - 3));

    const slow = await rawConnect(port);
    const started = Date.now();
    const slowOutcome = readUntilClose(slow);
    let closed = false;
    slow.once('close', () => {
      closed = true;
    });
    const line = Buffer.from(v1Header(['192.0.2.1', 1]));
    for (const byte of line) {
      if (closed) break;
      slow.write(Buffer.from([byte]));
      await sleep(1000);
    }
    expect(await slowOutcome).toEqual({ data: '', closed: true });
    expect(Date.now() - started).toBeGreaterThanOrEqual(timeoutMs - 20);
    expect(await truncatedOutcome).toEqual({ data: '', closed: true });
    const timeouts = lines.filter((l) => (l.fields as { problem?: string }).problem === 'timeout');
    expect(timeouts).toHaveLength(2);
    expect(lines.filter((l) => l.level === 'error')).toEqual([]);
  });

  it('connections still sending their header count for maxConnections, and drain destroys them', async () => {
    const { service, binding, port } = await start({ proxyProtocol: { trusted: ['127.0.0.1'], timeoutMs: 60_000 }, maxConnections: 1 });
    const pending = await rawConnect(port);
    const pendingOutcome = readUntilClose(pending, 30_000);
    pending.write('PROXY TCP4 '); // and nothing more
    while (binding.connectionCount < 1) await sleep(10);
    const second = await rawConnect(port);
    expect(await readUntilClose(second)).toEqual({ data: 'ERR max clients\n', closed: true });
    const report = await service.stop();
    expect(await pendingOutcome).toEqual({ data: '', closed: true });
    expect(report.durationMs).toBeLessThan(5000);
  });

  it('a bad proxyProtocol option fails at bind() with PB_ERR_CONFIG', () => {
    const service = new PortService({ env: {} });
    for (const proxyProtocol of [{ trusted: '127.0.0.1' }, { trusted: ['10.0.0.0/40'] }, { trusted: [] }, ['127.0.0.1']]) {
      expect(() => service.bind(new AddressAdapter(), { proxyProtocol } as unknown as BindOptions)).toThrow(
        expect.objectContaining({ code: 'PB_ERR_CONFIG' }),
      );
    }
    expect(service.bindings).toHaveLength(0);
  });
});

describe('PROXY protocol on a Unix socket binding', () => {
  it('a proxy on the socket is trusted with "unix"; its client becomes the address', async () => {
    const dir = await tempDir();
    const path = join(dir, 'addr.sock');
    const service = new PortService({ env: {} });
    services.push(service);
    service.bind(new AddressAdapter(), { path, proxyProtocol: { trusted: ['unix'] } });
    await service.start();
    const socket = connect(path);
    await once(socket, 'connect');
    socket.write(`${v1Header(['203.0.113.9', 9000])}ADDR\n`);
    expect((await readUntil(socket, /\n/)).trim()).toBe('203.0.113.9 9000 203.0.113.9 remote v1-proxy');
    socket.destroy();
  });

  it('without "unix" in the list, a PROXY header there is refused', async () => {
    const dir = await tempDir();
    const path = join(dir, 'addr.sock');
    const service = new PortService({ env: {} });
    services.push(service);
    service.bind(new AddressAdapter(), { path, proxyProtocol: { trusted: ['127.0.0.1'] } });
    await service.start();
    const socket = connect(path);
    await once(socket, 'connect');
    const outcome = readUntilClose(socket as Socket);
    socket.write(v1Header(['203.0.113.9', 9000]));
    expect(await outcome).toEqual({ data: '', closed: true });
  });

  it('with TLS, start() fails with PB_ERR_CONFIG (headers are matched to TLS sockets by TCP peer)', async () => {
    const dir = await tempDir();
    const { cert, key } = await selfSignedCert();
    const service = new PortService({ env: {} });
    services.push(service);
    service.bind(new AddressAdapter(), { path: join(dir, 'addr.sock'), tls: { cert, key }, proxyProtocol: { trusted: ['unix'] } });
    await expect(service.start()).rejects.toMatchObject({ code: 'PB_ERR_CONFIG', variable: 'proxyProtocol' });
  });
});

describe('without proxyProtocol', () => {
  it('a PROXY line is just data for the adapter', async () => {
    const { port } = await start({});
    const socket = connect(port, '127.0.0.1');
    await once(socket, 'connect');
    socket.write(v1Header(['192.0.2.1', 1]).replace('\r\n', '\n'));
    expect((await readUntil(socket, /\n/)).trim()).toBe('echo "PROXY TCP4 192.0.2.1 192.0.2.2 1 443"');
    socket.destroy();
  });
});
