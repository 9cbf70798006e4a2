import type { Socket } from 'node:net';
import { PortService } from '@portbind/core';
import { afterEach, describe, expect, it } from 'vitest';
import { portOf, rawConnect, readUntil } from '../../../test/support/net.js';
import { OK, type RespOptions, respAdapter } from '../src/index.js';

// Client-side caching as the framework gives it to any service: commands declare the keys they
// read (`keys`, or `keysOf` for a numkeys form) and call `touch` on writes; the adapter keeps the
// tracking table and sends the invalidations. (mini-redis's test compares it with redis-server.)

const services: PortService[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  await Promise.all(services.splice(0).map((service) => service.stop()));
});

async function start(options: RespOptions = {}) {
  const resp = respAdapter(options);
  const store = new Map<string, Buffer>();
  resp.command('set', { arity: 3, flags: ['write'], keys: [1, 1, 1] }, (client, [, key, value]) => {
    store.set(String(key), Buffer.from(value as Buffer));
    resp.touch(client.db, String(key));
    return OK;
  });
  resp.command('get', { arity: 2, flags: ['readonly'], keys: [1, 1, 1] }, (_client, [, key]) => store.get(String(key)) ?? null);
  // A numkeys command: `sum numkeys key… [WEIGHT w]`, its keys said by keysOf.
  resp.command(
    'sum',
    {
      arity: -3,
      flags: ['readonly'],
      keysOf: (argv) => argv.slice(2, 2 + Number(argv[1])),
    },
    (_client, argv) => argv.slice(2, 2 + Number(argv[1])).reduce((total, key) => total + Number(store.get(String(key)) ?? 0), 0),
  );
  // An async read: its keys are remembered once it answers.
  resp.command('slowget', { arity: 2, flags: ['readonly'], keys: [1, 1, 1] }, async (_client, [, key]) => {
    await new Promise((resolve) => setTimeout(resolve, 20));
    return store.get(String(key)) ?? null;
  });
  resp.command('flush', { arity: 1, flags: ['write'] }, () => {
    store.clear();
    resp.invalidateAll();
    return OK;
  });
  const service = new PortService({ env: {} });
  services.push(service);
  const binding = service.bind(resp, { port: 0, host: '127.0.0.1' });
  await service.start();
  return { resp, port: portOf(binding) };
}

async function connect(port: number, resp3 = true): Promise<Socket> {
  const socket = await rawConnect(port);
  sockets.push(socket);
  if (resp3) {
    socket.write('HELLO 3\r\n');
    await readUntil(socket, /proto\r\n:3\r\n[\s\S]*modules\r\n\*0\r\n$/);
  }
  return socket;
}

const push = (...keys: string[]): string =>
  `>2\r\n$10\r\ninvalidate\r\n*${keys.length}\r\n${keys.map((key) => `$${key.length}\r\n${key}\r\n`).join('')}`;

describe('client-side caching in @portbind/resp', () => {
  it('keys declared by keys and keysOf, and read by async handlers, are tracked and invalidated once', async () => {
    const { port, resp } = await start();
    const reader = await connect(port);
    const writer = await connect(port, false);
    reader.write('CLIENT TRACKING on\r\nSUM 2 a b\r\nSLOWGET c\r\n');
    expect(await readUntil(reader, /\+OK\r\n:0\r\n_\r\n$/)).toBe('+OK\r\n:0\r\n_\r\n');
    expect(resp.tracking.keys).toBe(3);
    writer.write('SET a 1\r\nSET c 3\r\nSET a 2\r\n');
    await readUntil(writer, /(\+OK\r\n){3}$/);
    expect(await readUntil(reader, /c\r\n$/)).toBe(push('a') + push('c'));
    expect(resp.tracking.keys).toBe(1); // b
  });

  it('the invalidation of a client’s own write comes after its reply, after EXEC’s whole array', async () => {
    const { port } = await start();
    const client = await connect(port);
    client.write('CLIENT TRACKING on\r\nGET k\r\nMULTI\r\nSET k v\r\nGET k\r\nEXEC\r\n');
    const expected = `+OK\r\n_\r\n+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n$1\r\nv\r\n${push('k')}`;
    expect(await readUntil(client, /invalidate\r\n\*1\r\n\$1\r\nk\r\n$/)).toBe(expected);
  });

  it('CLIENT LIST flags t and B, redir=, INFO tracking fields, and a closed client leaves no prefixes', async () => {
    const { port, resp } = await start();
    const client = await connect(port);
    client.write('CLIENT TRACKING on BCAST PREFIX a PREFIX b\r\nCLIENT INFO\r\nINFO clients\r\n');
    const text = await readUntil(client, /tracking_clients:1\r\n[\s\S]*\r\n$/);
    expect(text).toMatch(/flags=tB .* redir=0 /);
    expect(resp.tracking.prefixCount).toBe(2);
    client.destroy();
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(resp.tracking.prefixCount).toBe(0);
    expect(resp.tracking.clientCount).toBe(0);
  });

  it('invalidateAll() (a flush) sends a null invalidation; REDIRECT to a RESP2 subscriber gets a message', async () => {
    const { port } = await start();
    const subscriber = await connect(port, false);
    subscriber.write('CLIENT ID\r\nSUBSCRIBE __redis__:invalidate\r\n');
    const id = /^:(\d+)\r\n/.exec(await readUntil(subscriber, /:1\r\n$/))?.[1];
    const tracked = await connect(port, false);
    tracked.write(`CLIENT TRACKING on REDIRECT ${id}\r\nGET k\r\nFLUSH\r\n`);
    await readUntil(tracked, /\+OK\r\n\$-1\r\n\+OK\r\n$/);
    expect(await readUntil(subscriber, /\$-1\r\n$/)).toBe('*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n$-1\r\n');
  });

  it('limits: prefixes per client (trackingMaxPrefixes) and keys in the table (trackingTableMaxKeys)', async () => {
    const { port, resp } = await start({ trackingMaxPrefixes: 2, trackingTableMaxKeys: 3 });
    const client = await connect(port);
    client.write('CLIENT TRACKING on BCAST PREFIX a PREFIX b PREFIX c\r\nPING\r\n');
    expect(await readUntil(client, /PONG\r\n$/)).toBe('-ERR Too many prefixes: a client may track at most 2\r\n+PONG\r\n');
    const reader = await connect(port);
    reader.write('CLIENT TRACKING on\r\nGET k1\r\nGET k2\r\nGET k3\r\nGET k4\r\nGET k5\r\n');
    // Two keys over: the two oldest go, each with its invalidation.
    expect(await readUntil(reader, /k2\r\n$/)).toBe(`+OK\r\n${'_\r\n'.repeat(5)}${push('k1')}${push('k2')}`);
    expect(resp.tracking.keys).toBe(3);
  });

  it('bad options at construction are a ConfigError', () => {
    expect(() => respAdapter({ trackingTableMaxKeys: -1 })).toThrow(/trackingTableMaxKeys.*integer, 0 or more/);
    expect(() => respAdapter({ trackingMaxPrefixes: 1.5 })).toThrow(/trackingMaxPrefixes/);
  });

  it('bad input over a raw socket gets Redis’s errors and the connection lives on', async () => {
    const { port } = await start();
    const client = await connect(port);
    client.write(
      'CLIENT TRACKING on REDIRECT 99999\r\nCLIENT TRACKING on BCAST PREFIX ab PREFIX a\r\nCLIENT TRACKING on PREFIX a\r\n' +
        'CLIENT CACHING yes\r\nCLIENT TRACKING on BCAST PREFIX ab\r\nCLIENT TRACKING on BCAST PREFIX a\r\nCLIENT TRACKING on\r\nPING\r\n',
    );
    const text = await readUntil(client, /PONG\r\n$/);
    expect(text.split('\r\n').slice(0, -1)).toEqual([
      '-ERR The client ID you want redirect to does not exist',
      "-ERR Prefix 'ab' overlaps with another provided prefix 'a'. Prefixes for a single client must not overlap.",
      '-ERR PREFIX option requires BCAST mode to be enabled',
      '-ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled',
      '+OK',
      "-ERR Prefix 'a' overlaps with an existing prefix 'ab'. Prefixes for a single client must not overlap.",
      "-ERR You can't switch BCAST mode on/off before disabling tracking for this client, and then re-enabling it with a different mode.",
      '+PONG',
    ]);
  });
});
