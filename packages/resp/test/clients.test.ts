import { execFile } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { PortService } from '@portbind/core';
import { Redis } from 'ioredis';
import { createClient } from 'redis';
import { afterEach, describe, expect, it } from 'vitest';
import { portOf, selfSignedCert } from '../../../test/support/net.js';
import { integerArg, OK, type RespAdapter, RespError, type RespOptions, respAdapter } from '../src/index.js';

// Real Redis clients against a small store built on the adapter: redis-cli and redis-benchmark
// (Debian's redis-tools), ioredis 6 and node-redis 6 on RESP3 (their default) and RESP2.

const run = promisify(execFile);
const services: PortService[] = [];
const closers: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  await Promise.all(closers.splice(0).map((close) => close().catch(() => {})));
  await Promise.all(services.splice(0).map((s) => s.stop()));
});

function withStore(resp: RespAdapter): void {
  const dbs = new Map<number, Map<string, Buffer | Map<string, Buffer>>>();
  const db = (n: number) => {
    let map = dbs.get(n);
    if (map === undefined) {
      map = new Map();
      dbs.set(n, map);
    }
    return map;
  };
  const wrongType = new RespError('WRONGTYPE Operation against a key holding the wrong kind of value');
  resp.command('set', { arity: -3, flags: ['write'], keys: [1, 1, 1] }, (client, [, key, value]) => {
    db(client.db).set(String(key), Buffer.from(value as Buffer));
    return OK;
  });
  resp.command('get', { arity: 2, flags: ['readonly'], keys: [1, 1, 1] }, (client, [, key]) => {
    const value = db(client.db).get(String(key));
    if (value instanceof Map) throw wrongType;
    return value ?? null;
  });
  resp.command(
    'del',
    { arity: -2, flags: ['write'], keys: [1, -1, 1] },
    (client, argv) => argv.slice(1).filter((key) => db(client.db).delete(String(key))).length,
  );
  resp.command('incr', { arity: 2, flags: ['write'], keys: [1, 1, 1] }, (client, [, key]) => {
    const current = db(client.db).get(String(key));
    if (current instanceof Map) throw wrongType;
    const next = (current === undefined ? 0 : integerArg(current)) + 1;
    db(client.db).set(String(key), Buffer.from(String(next)));
    return next;
  });
  resp.command('hset', { arity: -4, flags: ['write'], keys: [1, 1, 1] }, (client, [, key, ...pairs]) => {
    let hash = db(client.db).get(String(key));
    if (hash !== undefined && !(hash instanceof Map)) throw wrongType;
    if (hash === undefined) {
      hash = new Map();
      db(client.db).set(String(key), hash);
    }
    let added = 0;
    for (let i = 0; i + 1 < pairs.length; i += 2) {
      if (!hash.has(String(pairs[i]))) added++;
      hash.set(String(pairs[i]), Buffer.from(pairs[i + 1] as Buffer));
    }
    return added;
  });
  resp.command('hgetall', { arity: 2, flags: ['readonly'], keys: [1, 1, 1] }, (client, [, key]) => {
    const hash = db(client.db).get(String(key));
    if (hash !== undefined && !(hash instanceof Map)) throw wrongType;
    client.reply.map(new Map([...(hash ?? new Map<string, Buffer>())]));
  });
}

async function start(options: RespOptions = {}, bind: Parameters<PortService['bind']>[1] = {}) {
  const resp = respAdapter(options);
  withStore(resp);
  const service = new PortService({ env: {} });
  services.push(service);
  const binding = service.bind(resp, { port: 0, host: '127.0.0.1', ...bind });
  await service.start();
  return { resp, binding, port: typeof binding.address === 'string' ? 0 : portOf(binding) };
}

describe('ioredis 6', () => {
  it.each([[3], [2]] as const)('works on RESP%i: strings, hashes, pipelines, transactions, errors', async (protocol) => {
    const { port } = await start();
    const redis = new Redis({ port, host: '127.0.0.1', protocol, lazyConnect: true, maxRetriesPerRequest: 0 });
    closers.push(() => redis.quit());
    await redis.connect();
    expect(await redis.set('greeting', 'hello')).toBe('OK');
    expect(await redis.get('greeting')).toBe('hello');
    expect(await redis.getBuffer('greeting')).toEqual(Buffer.from('hello'));
    expect(await redis.get('missing')).toBeNull();
    expect(await redis.incr('n')).toBe(1);
    expect(await redis.hset('h', 'a', '1', 'b', '2')).toBe(2);
    expect(await redis.hgetall('h')).toEqual({ a: '1', b: '2' });
    const results = await redis.pipeline().set('p', '1').incr('p').get('p').exec();
    expect(results).toEqual([
      [null, 'OK'],
      [null, 2],
      [null, '2'],
    ]);
    expect(await redis.multi().incr('p').incr('p').exec()).toEqual([
      [null, 3],
      [null, 4],
    ]);
    await expect(redis.incr('greeting')).rejects.toThrow('ERR value is not an integer or out of range');
    await expect(redis.call('nosuch', 'x')).rejects.toThrow("ERR unknown command 'nosuch', with args beginning with: 'x' ");
    expect(await redis.select(3)).toBe('OK');
    expect(await redis.get('greeting')).toBeNull();
    expect(await redis.client('ID')).toBeGreaterThan(0);
  });

  it('authenticates with a password and receives pub/sub messages', async () => {
    const { port } = await start({ password: 's3cret' });
    const sub = new Redis({ port, host: '127.0.0.1', password: 's3cret', lazyConnect: true });
    const pub = new Redis({ port, host: '127.0.0.1', password: 's3cret', lazyConnect: true });
    closers.push(
      () => sub.quit(),
      () => pub.quit(),
    );
    await Promise.all([sub.connect(), pub.connect()]);
    const received = new Promise<[string, string]>((resolve) =>
      sub.on('message', (channel: string, message: string) => resolve([channel, message])),
    );
    await sub.subscribe('news');
    expect(await pub.publish('news', 'hello subscribers')).toBe(1);
    expect(await received).toEqual(['news', 'hello subscribers']);
    const wrong = new Redis({
      port,
      host: '127.0.0.1',
      password: 'nope',
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    closers.push(async () => wrong.disconnect());
    const refused = new Promise<Error>((resolve) => wrong.once('error', resolve));
    await wrong.connect().catch(() => {});
    expect((await refused).message).toBe('WRONGPASS invalid username-password pair or user is disabled.');
  });

  it('connects over TLS (rediss://)', async () => {
    const pems = await selfSignedCert();
    const { binding, port } = await start({}, { tls: pems });
    expect(binding.url).toBe(`rediss://127.0.0.1:${port}`);
    const redis = new Redis({ port, host: '127.0.0.1', tls: { ca: pems.cert, servername: 'localhost' }, lazyConnect: true });
    closers.push(() => redis.quit());
    await redis.connect();
    expect(await redis.set('secure', 'yes')).toBe('OK');
    expect(await redis.get('secure')).toBe('yes');
  });
});

describe('node-redis 6', () => {
  it.each([[3], [2]] as const)('works on RESP%i', async (RESP) => {
    const { port } = await start();
    const client = createClient({ url: `redis://127.0.0.1:${port}`, RESP });
    client.on('error', () => {});
    closers.push(() => client.close());
    await client.connect();
    expect(await client.set('k', 'v')).toBe('OK');
    expect(await client.get('k')).toBe('v');
    expect(await client.incr('counter')).toBe(1);
    expect(await client.hSet('h', { a: '1' })).toBe(1);
    expect(await client.hGetAll('h')).toEqual({ a: '1' });
    expect(await client.ping()).toBe('PONG');
    const [a, b] = await client.multi().set('x', '1').get('x').exec();
    expect([a, b]).toEqual(['OK', '1']);
    const sub = client.duplicate();
    sub.on('error', () => {});
    closers.push(() => sub.close());
    await sub.connect();
    const message = new Promise<string>((resolve) => void sub.subscribe('chan', (m) => resolve(m)));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await client.publish('chan', 'hi')).toBe(1);
    expect(await message).toBe('hi');
  });
});

describe('redis-cli and redis-benchmark', () => {
  it('redis-cli sets and gets, reports errors in Redis words, and reads pipes', async () => {
    const { port } = await start();
    const cli = (...args: string[]) => run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args]);
    expect((await cli('SET', 'name', 'portbind')).stdout).toBe('OK\n');
    expect((await cli('GET', 'name')).stdout).toBe('portbind\n');
    expect((await cli('-3', 'HGETALL', 'none')).stdout).toBe('\n');
    // redis-cli prints an error and a blank line when its output is not a terminal.
    expect((await cli('NOSUCH')).stdout).toBe("ERR unknown command 'NOSUCH', with args beginning with: \n\n");
    const { stdout } = await run('bash', ['-c', `printf 'SET a 1\\nINCR a\\nINCR a\\nGET a\\n' | redis-cli -h 127.0.0.1 -p ${port}`]);
    expect(stdout).toBe('OK\n2\n3\n3\n');
    const count = Number((await cli('COMMAND', 'COUNT')).stdout);
    expect(count).toBeGreaterThan(20);
  });

  it('redis-cli over a Unix socket', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'portbind-resp-'));
    const path = join(dir, 'redis.sock');
    await start({}, { path, port: undefined, host: undefined });
    expect((await run('redis-cli', ['-s', path, 'PING'])).stdout).toBe('PONG\n');
  });

  it('redis-benchmark runs SET and GET with pipelining and gets no errors', async () => {
    const { port } = await start();
    const { stdout } = await run('redis-benchmark', [
      '-h',
      '127.0.0.1',
      '-p',
      String(port),
      '-t',
      'set,get',
      '-n',
      '20000',
      '-c',
      '10',
      '-P',
      '16',
      '-q',
    ]);
    expect(stdout).toMatch(/SET: [\d.]+ requests per second/);
    expect(stdout).toMatch(/GET: [\d.]+ requests per second/);
    expect(stdout).not.toMatch(/ERR|error/i);
  });
});
