import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { parseReply, RawClient, show, startMiniRedis } from './support.js';

// Behaviour beyond single replies: expiry, blocking clients, shutdown, configuration.

const stops: Array<() => Promise<void>> = [];
const cleanups: Array<() => void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) cleanup();
  await Promise.all(stops.splice(0).map((stop) => stop()));
});

async function start(env: Record<string, string> = {}) {
  const server = await startMiniRedis(env);
  stops.push(server.stop);
  return server;
}

function raw(port: number): RawClient {
  const client = new RawClient(port);
  cleanups.push(() => client.close());
  return client;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('mini-redis', () => {
  it('deletes expired keys nobody reads (active expiry), and hides them at once (lazy expiry)', async () => {
    const { port } = await start();
    const client = raw(port);
    // A TTL long enough that a loaded machine still counts them all before any expires.
    await client.send([...Array.from({ length: 500 }, (_, i) => `SET temp:${i} x PX 1000`), 'SET kept x', 'SET later x EX 100']);
    expect(show((await client.send(['DBSIZE']))[0] as Buffer)).toBe(':502⏎');
    await sleep(1100);
    // Expired keys are invisible before they are swept...
    expect((await client.send(['GET temp:1', 'EXISTS temp:2'])).map(show)).toEqual(['$-1⏎', ':0⏎']);
    // ...and the sweep removes the rest without anyone reading them.
    const deadline = Date.now() + 3000;
    let size = '';
    while (Date.now() < deadline) {
      size = show((await client.send(['DBSIZE']))[0] as Buffer);
      if (size === ':2⏎') break;
      await sleep(50);
    }
    expect(size).toBe(':2⏎');
  });

  it('forgets a blocked client that disconnects: the next push stays in the list', async () => {
    const { port } = await start();
    const blocked = raw(port);
    blocked.socket.write('*3\r\n$5\r\nBLPOP\r\n$1\r\nq\r\n$1\r\n0\r\n');
    const other = raw(port);
    while (!show((await other.send(['INFO clients']))[0] as Buffer).includes('blocked_clients:1')) await sleep(5);
    blocked.close();
    while (!show((await other.send(['INFO clients']))[0] as Buffer).includes('blocked_clients:0')) await sleep(5);
    expect((await other.send(['RPUSH q job', 'LRANGE q 0 -1'])).map(show)).toEqual([':1⏎', '*1⏎$3⏎job⏎']);
  });

  it('serves clients blocked on several keys once, first come first served', async () => {
    const { port } = await start();
    const [a, b, c] = [raw(port), raw(port), raw(port)];
    const info = raw(port);
    const blockedCount = async (): Promise<string> => show((await info.send(['INFO clients']))[0] as Buffer);
    a.socket.write('*4\r\n$5\r\nBLPOP\r\n$2\r\nk1\r\n$2\r\nk2\r\n$1\r\n0\r\n');
    while (!(await blockedCount()).includes('blocked_clients:1')) await sleep(5);
    b.socket.write('*3\r\n$5\r\nBLPOP\r\n$2\r\nk2\r\n$1\r\n0\r\n');
    while (!(await blockedCount()).includes('blocked_clients:2')) await sleep(5);
    expect((await c.send(['RPUSH k2 first second third'])).map(show)).toEqual([':3⏎']);
    expect((await a.read(1)).map(show)).toEqual(['*2⏎$2⏎k2⏎$5⏎first⏎']);
    expect((await b.read(1)).map(show)).toEqual(['*2⏎$2⏎k2⏎$6⏎second⏎']);
    expect((await c.send(['RPUSH k1 x', 'LRANGE k1 0 -1', 'LRANGE k2 0 -1'])).map(show)).toEqual([':1⏎', '*1⏎$1⏎x⏎', '*1⏎$5⏎third⏎']);
  });

  it('stops gracefully with clients blocked in BLPOP 0: they get a null reply, nothing is forced', async () => {
    const { port, service } = await startMiniRedis();
    const client = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 0, retryStrategy: () => null });
    cleanups.push(() => client.disconnect());
    client.on('error', () => {});
    const waiting = client.blpop('never', 0);
    // Stop once the server has the client blocked (not after a fixed sleep: a loaded machine may not
    // have connected it yet, and the stop would then close a client that never sent BLPOP).
    const observer = new Redis({ port, host: '127.0.0.1' });
    cleanups.push(() => observer.disconnect());
    while (!/blocked_clients:1/.test(await observer.info('clients'))) await sleep(20);
    observer.disconnect();
    const started = Date.now();
    const report = await service.stop();
    expect(await waiting).toBeNull();
    expect(report.forced).toBe(0);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('SCAN returns every key present for the whole scan, while keys come and go', async () => {
    const { port } = await start();
    const client = raw(port);
    await client.send(Array.from({ length: 1000 }, (_, i) => `SET stable:${i} x`));
    const seen = new Set<string>();
    let cursor = '0';
    let round = 0;
    do {
      const [reply] = await client.send([`SCAN ${cursor} COUNT 50`]);
      const [next, keys] = parseReply(reply as Buffer) as [string, string[]];
      for (const key of keys) seen.add(key);
      cursor = next;
      // Churn between calls: new keys, deleted keys.
      await client.send([`SET churn:${round} x`, `DEL churn:${round - 1}`]);
      round++;
    } while (cursor !== '0');
    for (let i = 0; i < 1000; i++) expect(seen.has(`stable:${i}`)).toBe(true);
  });

  it('REQUIREPASS makes clients authenticate', async () => {
    const { port } = await start({ REQUIREPASS: 's3cret' });
    const client = raw(port);
    expect((await client.send(['GET k'])).map(show)).toEqual(['-NOAUTH Authentication required.⏎']);
    expect((await client.send(['AUTH wrong'])).map(show)).toEqual(['-WRONGPASS invalid username-password pair or user is disabled.⏎']);
    const redis = new Redis({ port, host: '127.0.0.1', password: 's3cret' });
    cleanups.push(() => redis.disconnect());
    expect(await redis.set('k', 'v')).toBe('OK');
    expect(await redis.get('k')).toBe('v');
  });

  it('CONFIG SET maxclients and timeout apply to new connections', async () => {
    const { port } = await start();
    const admin = raw(port);
    expect((await admin.send(['CONFIG SET maxclients 2 timeout 1'])).map(show)).toEqual(['+OK⏎']);
    const second = raw(port);
    expect((await second.send(['PING'])).map(show)).toEqual(['+PONG⏎']);
    const third = raw(port);
    await expect(third.send(['PING'])).resolves.toEqual([Buffer.from('-ERR max number of clients reached\r\n')]);
    // `second` was accepted after timeout 1: it is closed after a second of silence.
    await expect(second.read(1)).rejects.toThrow('connection closed');
    expect((await admin.send(['CONFIG GET maxclients'])).map(show)).toEqual(['*2⏎$10⏎maxclients⏎$1⏎2⏎']);
  });

  it('serves /livez and /readyz on PORT', async () => {
    const { service } = await start();
    const { port } = service.binding('http').address as AddressInfo;
    expect((await fetch(`http://127.0.0.1:${port}/livez`)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);
  });

  it('INFO has the sections of Redis 7.0.15, in its order (default: no commandstats, no latencystats)', async () => {
    const { port } = await start();
    const client = raw(port);
    await client.send(['SET a 1 EX 100', 'SELECT 3', 'SET b 2']);
    const info = parseReply((await client.send(['INFO']))[0] as Buffer) as string;
    const headings = info.split('\r\n').filter((line) => line.startsWith('# '));
    const usual = ['# Server', '# Clients', '# Memory', '# Persistence', '# Stats', '# Replication', '# CPU', '# Modules'];
    expect(headings).toEqual([...usual, '# Errorstats', '# Cluster', '# Keyspace']);
    expect(info).toContain('used_cpu_user:');
    expect(info).toContain('# Cluster\r\ncluster_enabled:0\r\n');
    expect(info).not.toContain('cmdstat_');
    const all = parseReply((await client.send(['INFO all']))[0] as Buffer) as string;
    expect(all).toContain('# Commandstats\r\ncmdstat_');
    for (const asked of ['INFO all', 'INFO everything', 'INFO default commandstats']) {
      const text = parseReply((await client.send([asked]))[0] as Buffer) as string;
      const sections = text.split('\r\n').filter((line) => line.startsWith('# '));
      const latency = asked.endsWith('commandstats') ? [] : ['# Latencystats'];
      expect([asked, sections]).toEqual([asked, [...usual, '# Commandstats', '# Errorstats', ...latency, '# Cluster', '# Keyspace']]);
    }
    expect(parseReply((await client.send(['INFO module_list']))[0] as Buffer)).toBe('# Modules\r\n');
    expect(info).toContain(`tcp_port:${port}\r\n`);
    expect(info).toContain('connected_clients:1\r\n');
    expect(info).toContain('loading:0\r\n');
    expect(info).toContain('db0:keys=1,expires=1,avg_ttl=0\r\ndb3:keys=1,expires=0,avg_ttl=0\r\n');
    const keyspace = parseReply((await client.send(['INFO keyspace']))[0] as Buffer);
    expect(keyspace).toBe('# Keyspace\r\ndb0:keys=1,expires=1,avg_ttl=0\r\ndb3:keys=1,expires=0,avg_ttl=0\r\n');
  });

  it('FUNCTION FLUSH (sent by the Redis test harness before every unit) answers OK, with or without SYNC/ASYNC', async () => {
    const { port } = await start();
    const client = raw(port);
    const replies = await client.send([
      'FUNCTION FLUSH',
      'FUNCTION FLUSH SYNC',
      'FUNCTION FLUSH ASYNC',
      'FUNCTION FLUSH NOW',
      'FUNCTION LIST',
    ]);
    expect(replies.map(show)).toEqual(['+OK⏎', '+OK⏎', '+OK⏎', '-ERR FUNCTION FLUSH only supports SYNC|ASYNC option⏎', '*0⏎']);
  });
});
