import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort } from './support/net.js';
import { isRedisProcess, REDIS_SERVER, startRedis } from './support/redis-server.js';

// The test helpers that hand a port to a child server (redis-server, HAProxy, PostgreSQL): a CI run
// once had redis-server lose its port to another test file's HTTP server (listen(0) got the port
// freePort had just released), and the RESP test then read "HTTP/1.1 400 Bad Request".

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe('freePort', () => {
  it('picks a bindable port below the kernel’s ephemeral range, which listen(0) never hands out', async () => {
    const [low] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'latin1').trim().split(/\s+/).map(Number);
    const ports = new Set<number>();
    for (let i = 0; i < 20; i++) ports.add(await freePort());
    for (const port of ports) {
      expect(port).toBeGreaterThanOrEqual(10_000);
      expect(port).toBeLessThan(low as number);
    }
    // Random, not the same port each time.
    expect(ports.size).toBeGreaterThan(1);
    const port = await freePort();
    const server = createServer().listen(port, '127.0.0.1');
    await once(server, 'listening');
    cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    // listen(0) lands in the ephemeral range, away from every port freePort gives.
    const other = createServer().listen(0, '127.0.0.1');
    await once(other, 'listening');
    cleanups.push(() => new Promise<void>((resolve) => other.close(() => resolve())));
    expect((other.address() as { port: number }).port).toBeGreaterThanOrEqual(low as number);
  });
});

describe('isRedisProcess', () => {
  it('is true only for the redis-server process asked about, not for whatever else answers on the port', async () => {
    const redis = await startRedis();
    cleanups.push(() => redis.stop());
    // Another redis-server's process id: this test's own is not known to startRedis's caller, so start one here.
    const port = await freePort();
    const child = spawn(REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      stdio: 'ignore',
      cwd: '/tmp',
    });
    cleanups.push(async () => {
      if (child.exitCode === null) {
        child.kill('SIGKILL');
        await once(child, 'exit');
      }
    });
    let ours = false;
    for (let i = 0; i < 200 && !ours; i++) {
      ours = await isRedisProcess(port, child.pid).catch(() => false);
      if (!ours) await new Promise((resolve) => setTimeout(resolve, 25));
    }
    expect(ours).toBe(true);
    // The other server on redis.port is a redis-server too, but not this process.
    expect(await isRedisProcess(redis.port, child.pid)).toBe(false);
    // An HTTP server answering on a port: not a redis-server at all.
    const http = createHttpServer((_request, response) => response.end('hello'));
    http.listen(0, '127.0.0.1');
    await once(http, 'listening');
    cleanups.push(() => new Promise<void>((resolve) => http.close(() => resolve())));
    expect(await isRedisProcess((http.address() as { port: number }).port, child.pid)).toBe(false);
  });
});
