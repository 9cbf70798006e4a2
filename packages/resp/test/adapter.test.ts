import { once } from 'node:events';
import { PortService } from '@portbind/core';
import { afterEach, describe, expect, it } from 'vitest';
import { portOf, rawConnect, readUntil, readUntilClose, sleep } from '../../../test/support/net.js';
import { OK, type RespAdapter, RespError, type RespOptions, respAdapter } from '../src/index.js';

const services: PortService[] = [];
afterEach(async () => {
  await Promise.all(services.splice(0).map((s) => s.stop()));
});

/** A RESP server on 127.0.0.1 with a tiny key-value store (SET/GET/SLOW/BOOM) for testing the adapter. */
async function start(options: RespOptions = {}, bind: Parameters<PortService['bind']>[1] = {}) {
  const resp = respAdapter(options);
  const store = new Map<string, Buffer>();
  resp.command('set', { arity: 3, flags: ['write'] }, (client, [, key, value]) => {
    store.set((key as Buffer).toString(), Buffer.from(value as Buffer));
    resp.touch(client.db, (key as Buffer).toString());
    return OK;
  });
  resp.command('get', { arity: 2, flags: ['readonly'] }, (_client, [, key]) => store.get((key as Buffer).toString()) ?? null);
  resp.command('slow', { arity: 3 }, async (_client, [, ms, value]) => {
    await sleep(Number((ms as Buffer).toString()));
    return value as Buffer;
  });
  resp.command('boom', { arity: 1 }, () => {
    throw new Error('handler bug');
  });
  resp.command('aboom', { arity: 1 }, async () => {
    throw new RespError('WRONGTYPE Operation against a key holding the wrong kind of value');
  });
  resp.command('types', { arity: 1 }, (client) => {
    client.reply.map(2).bulk('double').double(1.5).bulk('flag').boolean(true);
  });
  const service = new PortService({ env: {}, gracePeriodMs: 2000 });
  services.push(service);
  const binding = service.bind(resp, { port: 0, host: '127.0.0.1', ...bind });
  await service.start();
  return { resp, service, binding, port: portOf(binding) };
}

/** Send raw bytes, return what came back once `expected` bytes (or the close) arrived. */
async function exchange(port: number, bytes: string, until: RegExp): Promise<string> {
  const socket = await rawConnect(port);
  socket.write(bytes);
  const reply = await readUntil(socket, until);
  socket.destroy();
  return reply;
}

async function closedExchange(port: number, bytes: string): Promise<{ data: string; closed: boolean }> {
  const socket = await rawConnect(port);
  const result = readUntilClose(socket, 5000);
  socket.write(bytes);
  return result;
}

describe('requests and replies', () => {
  it('reports a redis:// URL on RESP_PORT', async () => {
    const { binding, port } = await start();
    expect(binding.url).toBe(`redis://127.0.0.1:${port}`);
  });

  it('answers multibulk and inline commands, pipelined, in order', async () => {
    const { port } = await start();
    const reply = await exchange(port, '*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv1\r\nget k\r\nPING\r\nECHO "a b"\r\n', /\$3\r\na b\r\n$/);
    expect(reply).toBe('+OK\r\n$2\r\nv1\r\n+PONG\r\n$3\r\na b\r\n');
  });

  it('keeps replies in request order with async handlers in a deep pipeline', async () => {
    const { port } = await start();
    let request = '';
    let expected = '';
    for (let i = 0; i < 200; i++) {
      request += i % 3 === 0 ? `SLOW ${(7 * i) % 5} v${i}\r\n` : `ECHO v${i}\r\n`;
      expected += `$${`v${i}`.length}\r\nv${i}\r\n`;
    }
    expect(await exchange(port, request, /v199\r\n$/)).toBe(expected);
  });

  it('answers a throwing handler with an error; the connection and others live on', async () => {
    const { port } = await start();
    expect(await exchange(port, 'BOOM\r\nABOOM\r\nPING\r\n', /PONG\r\n$/)).toBe(
      '-ERR handler bug\r\n-WRONGTYPE Operation against a key holding the wrong kind of value\r\n+PONG\r\n',
    );
  });

  it("uses Redis's unknown-command and arity texts", async () => {
    const { port } = await start();
    expect(await exchange(port, 'FOO a b\r\nFOO\r\nGET\r\nGET a b\r\n', /'get' command\r\n-ERR.*\r\n$/)).toBe(
      "-ERR unknown command 'FOO', with args beginning with: 'a' 'b' \r\n" +
        "-ERR unknown command 'FOO', with args beginning with: \r\n" +
        "-ERR wrong number of arguments for 'get' command\r\n" +
        "-ERR wrong number of arguments for 'get' command\r\n",
    );
  });

  it('downgrades RESP3 types on RESP2 and keeps them on RESP3', async () => {
    const { port } = await start();
    expect(await exchange(port, 'TYPES\r\n', /\r\n:1\r\n$/)).toBe('*4\r\n$6\r\ndouble\r\n$3\r\n1.5\r\n$4\r\nflag\r\n:1\r\n');
    const three = await exchange(port, 'HELLO 3\r\nTYPES\r\n', /#t\r\n$/);
    expect(three.endsWith('%2\r\n$6\r\ndouble\r\n,1.5\r\n$4\r\nflag\r\n#t\r\n')).toBe(true);
  });
});

describe('protocol errors over a raw socket, byte for byte, then close', () => {
  it.each([
    ['expected $', '*1\r\nfoo\r\n', "-ERR Protocol error: expected '$', got 'f'\r\n"],
    ['bad count', '*abc\r\n', '-ERR Protocol error: invalid multibulk length\r\n'],
    ['negative bulk', '*1\r\n$-1\r\n', '-ERR Protocol error: invalid bulk length\r\n'],
    ['bulk over 512 MB', '*1\r\n$1000000000\r\n', '-ERR Protocol error: invalid bulk length\r\n'],
    ['unbalanced quotes', 'SET "open\r\n', '-ERR Protocol error: unbalanced quotes in request\r\n'],
    ['inline over 64 KiB', 'A'.repeat(70_000), '-ERR Protocol error: too big inline request\r\n'],
    ['count line over 64 KiB', `*${'1'.repeat(70_000)}`, '-ERR Protocol error: too big mbulk count string\r\n'],
    ['bulk line over 64 KiB', `*1\r\n$${'1'.repeat(70_000)}`, '-ERR Protocol error: too big bulk count string\r\n'],
  ])('%s', async (_label, input, reply) => {
    const { port } = await start();
    expect(await closedExchange(port, input)).toEqual({ data: reply, closed: true });
  });

  it('runs the commands before the bad frame, then errors and closes; other clients live on', async () => {
    const { port } = await start();
    const other = await rawConnect(port);
    expect(await closedExchange(port, 'PING\r\n*1\r\nfoo\r\nPING\r\n')).toEqual({
      data: "+PONG\r\n-ERR Protocol error: expected '$', got 'f'\r\n",
      closed: true,
    });
    other.write('PING\r\n');
    expect(await readUntil(other, /\r\n/)).toBe('+PONG\r\n');
    other.destroy();
  });

  it('ignores *0 and negative multibulk counts', async () => {
    const { port } = await start();
    expect(await exchange(port, '*0\r\n*-10\r\nPING\r\n', /\r\n$/)).toBe('+PONG\r\n');
  });
});

describe('HELLO and AUTH', () => {
  it('HELLO 3 answers a map with integer proto and id; HELLO 4 answers NOPROTO', async () => {
    const { port } = await start();
    const reply = await exchange(port, 'HELLO 3\r\n', /modules\r\n\*0\r\n$/);
    expect(reply).toMatch(
      /^%7\r\n\$6\r\nserver\r\n\$5\r\nredis\r\n\$7\r\nversion\r\n\$5\r\n7\.2\.0\r\n\$5\r\nproto\r\n:3\r\n\$2\r\nid\r\n:\d+\r\n\$4\r\nmode\r\n\$10\r\nstandalone\r\n\$4\r\nrole\r\n\$6\r\nmaster\r\n\$7\r\nmodules\r\n\*0\r\n$/,
    );
    expect(await exchange(port, 'HELLO 4\r\n', /\r\n$/)).toBe('-NOPROTO unsupported protocol version\r\n');
    expect(await exchange(port, 'HELLO x\r\n', /\r\n$/)).toBe('-ERR Protocol version is not an integer or out of range\r\n');
    expect(await exchange(port, 'HELLO 2 FOO\r\n', /\r\n$/)).toBe("-ERR Syntax error in HELLO option 'FOO'\r\n");
  });

  it('holds unauthenticated clients to NOAUTH and to the stricter limits', async () => {
    const { port } = await start({ password: 'secret' });
    expect(await exchange(port, 'GET k\r\n', /\r\n$/)).toBe('-NOAUTH Authentication required.\r\n');
    expect(await exchange(port, 'AUTH wrong\r\n', /\r\n$/)).toBe('-WRONGPASS invalid username-password pair or user is disabled.\r\n');
    expect(await exchange(port, 'AUTH secret\r\nGET k\r\n', /\$-1\r\n$/)).toBe('+OK\r\n$-1\r\n');
    const many = `*11\r\n${'$1\r\nx\r\n'.repeat(11)}`;
    expect(await closedExchange(port, many)).toEqual({ data: '-ERR Protocol error: unauthenticated multibulk length\r\n', closed: true });
    expect(await closedExchange(port, '*2\r\n$3\r\nGET\r\n$20000\r\n')).toEqual({
      data: '-ERR Protocol error: unauthenticated bulk length\r\n',
      closed: true,
    });
    // Once authenticated in the same pipeline, the limits lift at once.
    expect(await exchange(port, `AUTH secret\r\n${many}`, /\r\n-ERR.*\r\n$/)).toBe(
      "+OK\r\n-ERR unknown command 'x', with args beginning with: 'x' 'x' 'x' 'x' 'x' 'x' 'x' 'x' 'x' 'x' \r\n",
    );
  });

  it('authenticates ACL-style users, through HELLO AUTH too', async () => {
    const { port } = await start({ users: { alice: 'wonder' } });
    expect(await exchange(port, 'AUTH alice wonder\r\nGET k\r\n', /\$-1\r\n$/)).toBe('+OK\r\n$-1\r\n');
    const hello = await exchange(port, 'HELLO 3 AUTH alice wonder SETNAME app\r\nCLIENT GETNAME\r\n', /\$3\r\napp\r\n$/);
    expect(hello.startsWith('%7\r\n')).toBe(true);
    expect(await exchange(port, 'HELLO 3 AUTH alice nope\r\n', /\r\n$/)).toBe(
      '-WRONGPASS invalid username-password pair or user is disabled.\r\n',
    );
  });

  it('answers AUTH without a configured password as Redis does', async () => {
    const { port } = await start();
    expect(await exchange(port, 'AUTH x\r\n', /\r\n$/)).toBe(
      '-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n',
    );
  });
});

describe('pub/sub', () => {
  it('delivers messages as arrays on RESP2 and pushes on RESP3, with pattern matches', async () => {
    const { port } = await start();
    const two = await rawConnect(port);
    two.write('SUBSCRIBE news\r\nPSUBSCRIBE n*\r\n');
    expect(await readUntil(two, /:2\r\n$/)).toBe(
      '*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n*3\r\n$10\r\npsubscribe\r\n$2\r\nn*\r\n:2\r\n',
    );
    const three = await rawConnect(port);
    three.write('HELLO 3\r\nSUBSCRIBE news\r\n');
    await readUntil(three, /subscribe\r\n\$4\r\nnews\r\n:1\r\n$/);
    expect(await exchange(port, 'PUBLISH news hi\r\n', /\r\n$/)).toBe(':3\r\n');
    expect(await readUntil(two, /hi\r\n\*4[\s\S]*hi\r\n$/)).toBe(
      '*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$2\r\nhi\r\n',
    );
    expect(await readUntil(three, /hi\r\n$/)).toBe('>3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n');
    two.destroy();
    three.destroy();
  });

  it('restricts RESP2 subscribed mode with Redis’s text; PING answers pong arrays there', async () => {
    const { port } = await start();
    expect(await exchange(port, 'SUBSCRIBE c\r\nGET k\r\nPING\r\n', /\$0\r\n\r\n$/)).toBe(
      "*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n*2\r\n$4\r\npong\r\n$0\r\n\r\n",
    );
  });

  it('UNSUBSCRIBE with nothing subscribed answers a null name', async () => {
    const { port } = await start();
    expect(await exchange(port, 'UNSUBSCRIBE\r\n', /:0\r\n$/)).toBe('*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n');
  });

  it('disconnects a subscriber that stops reading past the hard limit; publishers live on', async () => {
    const { port, resp } = await start({ pubsubLimits: { hardBytes: 256 * 1024, softBytes: 0, softSeconds: 0 } });
    const slow = await rawConnect(port);
    slow.write('SUBSCRIBE firehose\r\n');
    await readUntil(slow, /:1\r\n$/);
    slow.pause();
    const closed = once(slow, 'close');
    const payload = Buffer.alloc(64 * 1024, 120);
    let published = 0;
    while (resp.subscriberCount('firehose') > 0 && published < 2000) {
      resp.publish('firehose', payload);
      published++;
      if (published % 8 === 0) await sleep(1);
    }
    expect(resp.subscriberCount('firehose')).toBe(0);
    expect(published).toBeLessThan(2000);
    slow.resume();
    await closed;
    expect(await exchange(port, 'PING\r\n', /\r\n$/)).toBe('+PONG\r\n');
  });
});

describe('transactions', () => {
  it('queues and executes, aborts on queueing errors, and honours WATCH', async () => {
    const { port } = await start();
    expect(await exchange(port, 'MULTI\r\nSET a 1\r\nGET a\r\nEXEC\r\n', /\$1\r\n1\r\n$/)).toBe(
      '+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n$1\r\n1\r\n',
    );
    expect(await exchange(port, 'MULTI\r\nGET\r\nEXEC\r\n', /EXECABORT.*\r\n$/)).toBe(
      "+OK\r\n-ERR wrong number of arguments for 'get' command\r\n-EXECABORT Transaction discarded because of previous errors.\r\n",
    );
    expect(await exchange(port, 'EXEC\r\nDISCARD\r\n', /DISCARD without MULTI\r\n$/)).toBe(
      '-ERR EXEC without MULTI\r\n-ERR DISCARD without MULTI\r\n',
    );

    const watcher = await rawConnect(port);
    watcher.write('WATCH w\r\nMULTI\r\nSET w mine\r\n');
    await readUntil(watcher, /QUEUED\r\n$/);
    expect(await exchange(port, 'SET w theirs\r\n', /\r\n$/)).toBe('+OK\r\n');
    watcher.write('EXEC\r\n');
    expect(await readUntil(watcher, /\*-1\r\n$/)).toBe('*-1\r\n');
    watcher.destroy();
  });
});

describe('limits and lifecycle', () => {
  it('refuses clients past maxConnections with Redis’s error', async () => {
    const { port } = await start({}, { maxConnections: 1 });
    const first = await rawConnect(port);
    await sleep(20);
    expect(await closedExchange(port, 'PING\r\n')).toEqual({ data: '-ERR max number of clients reached\r\n', closed: true });
    first.destroy();
  });

  it('stops reading a client that pipelines without reading: memory stays bounded', async () => {
    const { port, resp } = await start({ outputHighWaterMark: 64 * 1024 });
    const socket = await rawConnect(port);
    socket.pause();
    // 100 000 pipelined ECHOs of 1 KiB: ~100 MB of replies if the server answered them all.
    const value = 'x'.repeat(1024);
    const batch = `ECHO ${value}\r\n`.repeat(1000);
    for (let i = 0; i < 100; i++) socket.write(batch);
    await sleep(500);
    const client = [...resp.clients.values()][0];
    expect(client).toBeDefined();
    // Unsent replies stay near the mark (plus kernel buffers), not ~100 MB.
    expect(client?.outputBytes ?? 0).toBeLessThan(8 * 1024 * 1024);
    const rss = process.memoryUsage().rss;
    expect(rss).toBeLessThan(2 * 1024 * 1024 * 1024);
    // It catches up once it reads.
    let received = 0;
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
    });
    socket.resume();
    const total = 100_000 * (value.length + '$1024\r\n\r\n'.length);
    const deadline = Date.now() + 20_000;
    while (received < total && Date.now() < deadline) await sleep(50);
    expect(received).toBe(total);
    socket.destroy();
  });

  it('closes idle clients at the idle timeout but never subscribers, as Redis', async () => {
    const { port } = await start({}, { idleTimeoutMs: 300 });
    const idle = await rawConnect(port);
    const subscriber = await rawConnect(port);
    subscriber.write('SUBSCRIBE c\r\n');
    await readUntil(subscriber, /:1\r\n$/);
    const idleResult = await readUntilClose(idle, 5000);
    expect(idleResult).toEqual({ data: '', closed: true });
    await sleep(400);
    expect(subscriber.destroyed).toBe(false);
    subscriber.write('PING\r\n');
    expect(await readUntil(subscriber, /\r\n\r\n$/)).toBe('*2\r\n$4\r\npong\r\n$0\r\n\r\n');
    subscriber.destroy();
  });

  it('QUIT answers +OK and closes; pipelined commands after it are not run', async () => {
    const { port } = await start();
    expect(await closedExchange(port, 'PING\r\nQUIT\r\nPING\r\n')).toEqual({ data: '+PONG\r\n+OK\r\n', closed: true });
  });

  it('drains: the command in flight gets its reply, then the connection closes', async () => {
    const { port, service } = await start();
    const socket = await rawConnect(port);
    const output = readUntilClose(socket, 5000);
    socket.write('SLOW 300 done\r\n');
    await sleep(50);
    const report = await service.stop();
    expect(report.forced).toBe(0);
    expect(await output).toEqual({ data: '$4\r\ndone\r\n', closed: true });
  });

  it('denies non-loopback clients in protected mode unless auth is set', async () => {
    const { resp } = await start();
    const remote = await simulateRemote(resp);
    expect(await remote).toMatch(
      /^-DENIED Redis is running in protected mode because protected mode is enabled and no password is set for the default user\. .* NOTE: You only need to do one of the above things in order for the server to start accepting connections from the outside\.\r\n$/,
    );
  });
});

/**
 * Hand the adapter a real socket whose peer address claims to be remote: the loopback-only rule
 * of this test environment forbids real non-loopback traffic.
 */
async function simulateRemote(resp: RespAdapter): Promise<string> {
  const { Connection } = await import('@portbind/core');
  const { createServer, connect } = await import('node:net');
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  const client = connect(address.port, '127.0.0.1');
  const [accepted] = (await once(server, 'connection')) as [import('node:net').Socket];
  const conn = new Connection('resp', accepted);
  Object.defineProperty(conn, 'isLoopback', { value: false });
  const result = readUntilClose(client, 5000);
  resp.connection(conn);
  const { data } = await result;
  server.close();
  return data;
}
