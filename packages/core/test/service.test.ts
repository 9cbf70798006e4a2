import { once } from 'node:events';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { createServer as createNetServer, connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { occupyPort, portOf, rawConnect, readUntil, readUntilClose, selfSignedCert, sleep } from '../../../test/support/net.js';
import { BindError, type BindOptions, ConfigError, PortService, StateError } from '../src/index.js';
import { LineAdapter } from './line-adapter.js';

const services: PortService[] = [];
function service(options: ConstructorParameters<typeof PortService>[0] = {}): PortService {
  const created = new PortService({ env: {}, ...options });
  services.push(created);
  return created;
}
afterEach(async () => {
  await Promise.all(services.splice(0).map((s) => s.stop()));
});

/** A started service with one LineAdapter on 127.0.0.1 and an ephemeral port. */
async function startLine(bind: BindOptions = {}, options: ConstructorParameters<typeof PortService>[0] = {}) {
  const s = service(options);
  const binding = s.bind(new LineAdapter(), { port: 0, host: '127.0.0.1', ...bind });
  await s.start();
  return { s, binding, port: portOf(binding) };
}

describe('options a typo can break fail at once, as PB_ERR_CONFIG', () => {
  it.each<[string, BindOptions]>([
    ['maxConnections', { maxConnections: -1 }],
    ['maxConnections', { maxConnections: 1.5 }],
    ['idleTimeoutMs', { idleTimeoutMs: Number.NaN }],
    ['closeWaitMs', { closeWaitMs: -5 }],
    ['backlog', { backlog: -1 }],
    ['name', { name: '' }],
  ])('bind option %s', (option, options) => {
    const service = new PortService();
    expect(() => service.bind(new LineAdapter(), options)).toThrow(expect.objectContaining({ code: 'PB_ERR_CONFIG', variable: option }));
    expect(service.bindings).toHaveLength(0);
  });

  it.each([
    ['gracePeriodMs', -1],
    ['readinessDelayMs', Number.POSITIVE_INFINITY],
  ])('service option %s=%s', (option, value) => {
    expect(() => new PortService({ [option]: value })).toThrow(expect.objectContaining({ code: 'PB_ERR_CONFIG', variable: option }));
  });
});

describe('PortService start', () => {
  it('binds an ephemeral port and reports its address and URL', async () => {
    const { s, binding, port } = await startLine();
    expect(s.state).toBe('running');
    expect(s.ready).toBe(true);
    expect(port).toBeGreaterThan(0);
    expect(binding.url).toBe(`line://127.0.0.1:${port}`);
    const socket = await rawConnect(port);
    socket.write('hello\n');
    expect(await readUntil(socket, /\n/)).toBe('hello\n');
    socket.destroy();
  });

  it('reports localhost in the URL when bound to all interfaces', async () => {
    const s = service({ env: { LINE_PORT: '0' } });
    const binding = s.bind(new LineAdapter());
    await s.start();
    expect(binding.url).toBe(`line://localhost:${portOf(binding)}`);
  });

  it('binds all or none: a taken port releases the ports already bound and names the binding', async () => {
    const taken = await occupyPort();
    try {
      const s = service();
      const first = s.bind(new LineAdapter('first'), { port: 0, host: '127.0.0.1' });
      s.bind(new LineAdapter('second'), { port: taken.port, host: '127.0.0.1' });
      let error: unknown;
      await s.start().catch((caught: unknown) => {
        error = caught;
      });
      expect(error).toBeInstanceOf(BindError);
      expect(error).toMatchObject({ code: 'PB_ERR_BIND', binding: 'second', address: `127.0.0.1:${taken.port}` });
      expect((error as Error).message).toBe(
        `Cannot bind second on 127.0.0.1:${taken.port}: EADDRINUSE, the address is already in use (another process, or another binding, listens there)`,
      );
      expect(((error as Error).cause as NodeJS.ErrnoException).code).toBe('EADDRINUSE');
      expect(s.state).toBe('idle');
      // The first binding's port is free again: nothing is left half-bound.
      const firstPort = portOf(first);
      const probe = createNetServer();
      probe.listen(firstPort, '127.0.0.1');
      await once(probe, 'listening');
      probe.close();
    } finally {
      await taken.close();
    }
  });

  it('fails on a bad PORT before binding anything', async () => {
    const s = service({ env: { PORT: 'abc' } });
    const ok = s.bind(new LineAdapter('ok'), { port: 0 });
    s.bind(new LineAdapter('web', 'PORT'));
    await expect(s.start()).rejects.toThrow(new ConfigError('PORT', 'abc', 'a port must be an integer from 0 to 65535'));
    expect(() => ok.address).toThrow('not listening');
  });

  it('names the cause for a host that is not on this machine', async () => {
    const s = service();
    s.bind(new LineAdapter(), { port: 0, host: '192.0.2.1' });
    await expect(s.start()).rejects.toThrow('Cannot bind line on 192.0.2.1:0: EADDRNOTAVAIL');
  });

  it('names the cause for a privileged port when not allowed, or binds it as root', async () => {
    const s = service();
    const binding = s.bind(new LineAdapter(), { port: 1, host: '127.0.0.1' });
    if (process.getuid?.() === 0) {
      await s.start();
      expect(portOf(binding)).toBe(1);
    } else {
      await expect(s.start()).rejects.toThrow('EACCES');
    }
  });

  it('refuses two bindings with one name, and bind() after start', async () => {
    const s = service();
    s.bind(new LineAdapter(), { port: 0 });
    expect(() => s.bind(new LineAdapter(), { port: 0 })).toThrow(StateError);
    await s.start();
    expect(() => s.bind(new LineAdapter('other'), { port: 0 })).toThrow('bind() after start()');
    await expect(s.start()).rejects.toMatchObject({ code: 'PB_ERR_STATE' });
  });

  it('listens on a Unix socket, taking over a stale socket file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'portbind-'));
    const path = join(dir, 'line.sock');
    // A socket file left by a dead process: bind it, then close the handle without unlinking.
    const stale = createNetServer();
    stale.listen(path);
    await once(stale, 'listening');
    await writeFile(join(dir, 'marker'), '');
    // Simulate a crash: close the fd but keep the file (Node unlinks on close, so re-create it).
    stale.close();
    await once(stale, 'close');
    const leftover = createNetServer();
    leftover.listen(path);
    await once(leftover, 'listening');
    const handle = (leftover as unknown as { _handle: { close(): void } | null })._handle;
    handle?.close();
    (leftover as unknown as { _handle: null })._handle = null;

    const s = service();
    const binding = s.bind(new LineAdapter(), { path });
    await s.start();
    expect(binding.address).toBe(path);
    expect(binding.url).toBe(`line+unix://${encodeURIComponent(path)}`);
    const socket = netConnect(path);
    await once(socket, 'connect');
    socket.write('WHO\n');
    expect(await readUntil(socket, /\n/)).toMatch(/^\d+ plain loopback\n$/);
    socket.destroy();
  });
});

describe('PortService stop', () => {
  it('lets in-flight work finish, closes politely, and refuses new connections', async () => {
    const { s, port } = await startLine({}, { gracePeriodMs: 5000 });
    const busy = await rawConnect(port);
    const idle = await rawConnect(port);
    const busyOutput = readUntilClose(busy);
    const idleOutput = readUntilClose(idle);
    busy.write('WAIT 300\n');
    await sleep(50);
    const stopping = s.stop();
    expect(s.state).toBe('draining');
    expect(s.ready).toBe(false);
    await sleep(20);
    const refused = netConnect(port, '127.0.0.1');
    const [error] = (await once(refused, 'error')) as [NodeJS.ErrnoException];
    expect(error.code).toBe('ECONNREFUSED');
    const report = await stopping;
    expect(report.forced).toBe(0);
    expect(await busyOutput).toEqual({ data: 'DONE\nBYE shutdown\n', closed: true });
    expect(await idleOutput).toEqual({ data: 'BYE shutdown\n', closed: true });
    expect(s.state).toBe('stopped');
    expect(s.stop()).toBe(s.stop());
  });

  it('force-closes what is still open after the grace period', async () => {
    const { s, port } = await startLine({}, { gracePeriodMs: 200 });
    const socket = await rawConnect(port);
    const output = readUntilClose(socket);
    socket.write('WAIT 5000\n');
    await sleep(50);
    const started = Date.now();
    const report = await s.stop();
    expect(report.forced).toBe(1);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(await output).toEqual({ data: '', closed: true });
  });

  it('keeps accepting during the readiness delay while reporting not ready', async () => {
    const { s, port } = await startLine({}, { readinessDelayMs: 300 });
    const stopping = s.stop();
    await sleep(50);
    expect(s.ready).toBe(false);
    const late = await rawConnect(port);
    const output = readUntilClose(late);
    late.write('still here\n');
    expect(await output).toEqual({ data: 'still here\nBYE shutdown\n', closed: true });
    await stopping;
  });
});

describe('connection limits', () => {
  it('refuses connections over maxConnections in the adapter’s words, others live on', async () => {
    const { port } = await startLine({ maxConnections: 2 });
    const a = await rawConnect(port);
    const b = await rawConnect(port);
    await sleep(20);
    const c = await rawConnect(port);
    expect(await readUntilClose(c)).toEqual({ data: 'ERR max clients\n', closed: true });
    a.write('a\n');
    expect(await readUntil(a, /\n/)).toBe('a\n');
    a.destroy();
    await sleep(50);
    const d = await rawConnect(port);
    d.write('d\n');
    expect(await readUntil(d, /\n/)).toBe('d\n');
    b.destroy();
    d.destroy();
  });

  it('closes idle connections through the adapter, active ones stay', async () => {
    const { port } = await startLine({ idleTimeoutMs: 300 });
    const idle = await rawConnect(port);
    const active = await rawConnect(port);
    const idleOutput = readUntilClose(idle);
    const timer = setInterval(() => active.write('x\n'), 100);
    expect(await idleOutput).toEqual({ data: 'BYE idle\n', closed: true });
    expect(active.destroyed).toBe(false);
    clearInterval(timer);
    active.destroy();
  });
});

describe('TLS', () => {
  it('terminates TLS before the adapter, reports the secure scheme, and reloads certificates', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'portbind-tls-'));
    const first = await selfSignedCert();
    await writeFile(join(dir, 'cert.pem'), first.cert);
    await writeFile(join(dir, 'key.pem'), first.key);
    const s = service();
    const binding = s.bind(new LineAdapter(), {
      port: 0,
      host: '127.0.0.1',
      tls: { certFile: join(dir, 'cert.pem'), keyFile: join(dir, 'key.pem') },
    });
    await s.start();
    expect(binding.url).toBe(`lines://127.0.0.1:${portOf(binding)}`);

    const ask = async (ca: string): Promise<string> => {
      const socket = tlsConnect({ port: portOf(binding), host: '127.0.0.1', ca, servername: 'localhost' });
      await once(socket, 'secureConnect');
      socket.write('WHO\n');
      const line = await new Promise<string>((resolve) => socket.once('data', (d: Buffer) => resolve(d.toString())));
      socket.destroy();
      return line;
    };
    expect(await ask(first.cert)).toMatch(/^\d+ tls loopback\n$/);

    const second = await selfSignedCert();
    await writeFile(join(dir, 'cert.pem'), second.cert);
    await writeFile(join(dir, 'key.pem'), second.key);
    await s.reloadTls();
    expect(await ask(second.cert)).toMatch(/ tls /);
    await expect(ask(first.cert)).rejects.toThrow(/self.signed|certificate/i);
  });

  it('fails start with a clear error when the certificate file is missing', async () => {
    const s = service();
    s.bind(new LineAdapter(), { port: 0, tls: { certFile: '/nonexistent/cert.pem', keyFile: '/nonexistent/key.pem' } });
    await expect(s.start()).rejects.toMatchObject({
      code: 'PB_ERR_TLS',
      message: expect.stringContaining('Cannot read tls.certFile /nonexistent/cert.pem'),
    });
  });

  it('a client that never finishes the handshake does not reach the adapter and is cut at the handshake timeout', async () => {
    const pems = await selfSignedCert();
    const adapter = new LineAdapter();
    const s = service();
    const binding = s.bind(adapter, { port: 0, host: '127.0.0.1', tls: pems, handshakeTimeoutMs: 300 });
    await s.start();
    const socket = await rawConnect(portOf(binding));
    const result = await readUntilClose(socket, 5000);
    expect(result.closed).toBe(true);
    expect(adapter.conns.size).toBe(0);
  });
});
