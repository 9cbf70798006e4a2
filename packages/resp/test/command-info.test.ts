import type { Socket } from 'node:net';
import { PortService } from '@portbind/core';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { portOf, rawConnect } from '../../../test/support/net.js';
import { type CommandOptions, keySlot, OK, type RespAdapter, respAdapter, type SubcommandOptions } from '../src/index.js';
import { type Server, startRedis } from './real-redis.js';

// Key specs, ACL categories and COMMAND (INFO, GETKEYS, GETKEYSANDFLAGS, LIST, DOCS, COUNT, HELP)
// compared with a real redis-server 7.0.15: application commands declared as Redis declares them
// give the same COMMAND INFO, byte for byte in RESP2 and RESP3, and the same keys.

/** Redis 7.0.15's declarations (src/commands/*.json) of a few commands, as an application writes them. */
const DECLARED: Record<string, CommandOptions> = {
  get: { arity: 2, flags: ['readonly', 'fast'], keys: [1, 1, 1], group: 'string' },
  set: {
    arity: -3,
    flags: ['write', 'denyoom'],
    keySpecs: [
      { notes: 'RW and ACCESS due to the optional `GET` argument', flags: ['RW', 'access', 'update', 'variable_flags'], begin: 1 },
    ],
    group: 'string',
  },
  lmove: {
    arity: 5,
    flags: ['write', 'denyoom'],
    keySpecs: [
      { flags: ['RW', 'access', 'delete'], begin: 1 },
      { flags: ['RW', 'insert'], begin: 2 },
    ],
    group: 'list',
  },
  zunionstore: {
    arity: -4,
    flags: ['write', 'denyoom'],
    keySpecs: [
      { flags: ['OW', 'update'], begin: 1 },
      { flags: ['RO', 'access'], begin: 2, find: { keynumIndex: 0, firstKey: 1, step: 1 } },
    ],
    group: 'sorted-set',
  },
  xread: {
    arity: -4,
    flags: ['readonly', 'blocking'],
    keySpecs: [{ flags: ['RO', 'access'], begin: { keyword: 'STREAMS', startFrom: 1 }, find: { lastKey: -1, step: 1, limit: 2 } }],
    group: 'stream',
  },
  eval: {
    arity: -3,
    flags: ['noscript', 'skip_monitor', 'stale', 'no_mandatory_keys'],
    keySpecs: [
      {
        notes: 'We cannot tell how the keys will be used so we assume the worst, RW and UPDATE',
        flags: ['RW', 'access', 'update'],
        begin: 2,
        find: { keynumIndex: 0, firstKey: 1, step: 1 },
      },
    ],
    group: 'scripting',
  },
  sort: {
    arity: -2,
    flags: ['write', 'denyoom'],
    aclCategories: ['set', 'sortedset', 'list', 'dangerous'],
    keySpecs: [
      { flags: ['RO', 'access'], begin: 1 },
      {
        notes: "For the optional BY/GET keyword. It is marked 'unknown' because the key names derive from the content of the key we sort",
        flags: ['RO', 'access'],
        begin: 'unknown',
        find: 'unknown',
      },
      {
        notes: "For the optional STORE keyword. It is marked 'unknown' because the keyword can appear anywhere in the argument array",
        flags: ['OW', 'update'],
        begin: 'unknown',
        find: 'unknown',
      },
    ],
    // SORT's STORE can be anywhere: its own key finder (Redis's sortGetKeys).
    keysOf: (argv) => {
      const keys = [argv[1] as Buffer];
      for (let i = 2; i < argv.length; i++) {
        const word = (argv[i] as Buffer).toString('latin1').toLowerCase();
        if (word === 'store' && i + 1 < argv.length) keys.push(argv[i + 1] as Buffer);
        else if (word === 'limit') i += 2;
        else if (word === 'by' || word === 'get') i++;
      }
      return keys;
    },
    group: 'generic',
  },
};

/** OBJECT as Redis 7.0.15 declares it: each subcommand its arity, key spec and tips, the container none. */
const OBJECT: CommandOptions = {
  arity: -2,
  group: 'generic',
  subcommands: {
    ...Object.fromEntries(
      ['encoding', 'freq', 'idletime', 'refcount'].map((name): [string, SubcommandOptions] => [
        name,
        { arity: 3, flags: ['readonly'], keySpecs: [{ flags: ['RO'], begin: 2 }], tips: ['nondeterministic_output'] },
      ]),
    ),
    help: { arity: 2, flags: ['loading', 'stale'] },
  },
};

/** The same declarations, and built-ins, compared whole with redis-server. */
const COMPARED = [...Object.keys(DECLARED), 'monitor', 'info'];

let real: Server;
let service: PortService;
let resp: RespAdapter;
let port: number;
const sockets: Socket[] = [];

beforeAll(async () => {
  real = await startRedis();
  resp = respAdapter();
  for (const [name, options] of Object.entries(DECLARED)) resp.command(name, options, () => OK);
  resp.command('object', OBJECT, () => OK);
  ({ service, port } = await serve(resp));
});

async function serve(adapter: RespAdapter): Promise<{ service: PortService; port: number }> {
  const started = new PortService({ env: {} });
  const binding = started.bind(adapter, { port: 0, host: '127.0.0.1' });
  await started.start();
  return { service: started, port: portOf(binding) };
}

afterAll(async () => {
  for (const socket of sockets) socket.destroy();
  await service.stop();
  await real.stop();
});

/** Read exactly one RESP2/RESP3 reply's bytes (aggregates followed to their end). */
function readReply(socket: Socket, timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let data = Buffer.alloc(0);
    const end = (at: number): number | undefined => {
      const line = data.indexOf('\r\n', at);
      if (line === -1) return undefined;
      const type = String.fromCharCode(data[at] as number);
      const head = data.toString('latin1', at + 1, line);
      if ('$=!'.includes(type)) {
        const length = Number(head);
        if (length < 0) return line + 2;
        return data.length >= line + 4 + length ? line + 4 + length : undefined;
      }
      if ('*~>%|'.includes(type)) {
        const count = Number(head) * (type === '%' || type === '|' ? 2 : 1);
        let next: number | undefined = line + 2;
        for (let i = 0; i < count && next !== undefined; i++) next = end(next);
        return next;
      }
      return line + 2;
    };
    const timer = setTimeout(() => {
      socket.off('data', onData);
      reject(new Error(`no whole reply in ${timeoutMs} ms: ${JSON.stringify(data.toString('latin1'))}`));
    }, timeoutMs);
    const onData = (chunk: Buffer): void => {
      data = Buffer.concat([data, chunk]);
      const done = end(0);
      if (done === undefined) return;
      clearTimeout(timer);
      socket.off('data', onData);
      resolve(data.toString('latin1', 0, done));
    };
    socket.on('data', onData);
  });
}

function encode(args: readonly string[]): string {
  return `*${args.length}\r\n${args.map((arg) => `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`).join('')}`;
}

async function connection(to: number, protocol: 2 | 3): Promise<Socket> {
  const socket = await rawConnect(to);
  sockets.push(socket);
  if (protocol === 3) {
    socket.write(encode(['HELLO', '3']));
    await readReply(socket);
  }
  return socket;
}

/** The reply bytes of each command, from one connection. */
async function replies(to: number, protocol: 2 | 3, commands: ReadonlyArray<readonly string[]>): Promise<string[]> {
  const socket = await connection(to, protocol);
  const out: string[] = [];
  for (const command of commands) {
    socket.write(encode(command));
    out.push(await readReply(socket));
  }
  return out;
}

describe('COMMAND INFO', () => {
  it.each([2, 3] as const)(
    "gives Redis 7.0.15's 10 fields (flags, key specs, ACL categories, tips) byte for byte, RESP%i",
    async (protocol) => {
      const commands = COMPARED.map((name) => ['COMMAND', 'INFO', name]);
      commands.push(['COMMAND', 'INFO', 'nosuch', 'get', 'LMOVE']);
      const ours = await replies(port, protocol, commands);
      const theirs = await replies(real.port, protocol, commands);
      for (let i = 0; i < commands.length; i++) expect([commands[i], ours[i]]).toEqual([commands[i], theirs[i]]);
    },
  );

  it("shows the shard channels of SPUBLISH, SSUBSCRIBE, SUNSUBSCRIBE as Redis 7.0.15's not_key key specs", async () => {
    const client = new Redis(port, { lazyConnect: true });
    const redis = new Redis(real.port, { lazyConnect: true });
    await Promise.all([client.connect(), redis.connect()]);
    try {
      for (const name of ['spublish', 'ssubscribe', 'sunsubscribe', 'command']) {
        const [ours] = (await client.call('COMMAND', 'INFO', name)) as unknown[][];
        const [theirs] = (await redis.call('COMMAND', 'INFO', name)) as unknown[][];
        // Name, arity, first/last/step, ACL categories, tips, key specs (the flags differ: loading, stale).
        for (const field of [0, 1, 3, 4, 5, 6, 7, 8]) expect([name, field, ours?.[field]]).toEqual([name, field, theirs?.[field]]);
      }
    } finally {
      client.disconnect();
      redis.disconnect();
    }
  });

  it('derives first/last/step and movablekeys from key specs as Redis (keyword, keynum, several ranges)', async () => {
    const client = new Redis(port, { lazyConnect: true });
    await client.connect();
    try {
      const info = (await client.call('COMMAND', 'INFO', 'lmove', 'zunionstore', 'xread', 'eval', 'sort')) as unknown[][];
      expect(info.map((entry) => [entry[0], entry[3], entry[4], entry[5], (entry[2] as string[]).includes('movablekeys')])).toEqual([
        ['lmove', 1, 2, 1, false],
        ['zunionstore', 1, 1, 1, true],
        ['xread', 0, 0, 0, true],
        ['eval', 0, 0, 0, true],
        ['sort', 1, 1, 1, true],
      ]);
    } finally {
      client.disconnect();
    }
  });

  it('a container command lists its subcommands, each with its flags and categories', async () => {
    const [reply] = await replies(port, 2, [['COMMAND', 'INFO', 'client|list', 'client|nosuch']]);
    expect(reply).toBe(
      '*2\r\n*10\r\n$11\r\nclient|list\r\n:-2\r\n*4\r\n+admin\r\n+noscript\r\n+loading\r\n+stale\r\n:0\r\n:0\r\n:0\r\n' +
        '*4\r\n+@admin\r\n+@slow\r\n+@dangerous\r\n+@connection\r\n*1\r\n$23\r\nnondeterministic_output\r\n*0\r\n*0\r\n$-1\r\n',
    );
  });

  it.each([2, 3] as const)(
    "built-in subcommands (CLIENT, PUBSUB, COMMAND, CLUSTER), READONLY/READWRITE/ASKING and an application's OBJECT: Redis 7.0.15's fields, RESP%i",
    async (protocol) => {
      const names = [
        ...['client|list', 'client|help', 'client|id', 'client|kill', 'client|info', 'client|tracking', 'client|no-evict'],
        ...['pubsub|help', 'pubsub|numsub', 'pubsub|numpat', 'command|info', 'command|getkeys', 'command|count'],
        ...['cluster|slots', 'cluster|help', 'cluster|reset', 'cluster|setslot', 'cluster|replicas', 'cluster|keyslot'],
        ...['readonly', 'readwrite', 'asking', 'object|encoding', 'object|help', 'object', 'pubsub', 'client'],
      ];
      // Subcommands one by one (a container lists its own in Redis's dict order): all 10 fields.
      const commands = names.map((name) => ['COMMAND', 'INFO', name]);
      const [ours, theirs] = await Promise.all([replies(port, protocol, commands), replies(real.port, protocol, commands)]);
      for (let i = 0; i < commands.length; i++) {
        const [a, b] = [ours[i] as string, theirs[i] as string];
        // A container: its own 9 fields here; its subcommands are compared one by one above.
        const cut = (reply: string): string =>
          names[i]?.includes('|') || ['readonly', 'readwrite', 'asking'].includes(names[i] as string) ? reply : containerHead(reply);
        expect([names[i], cut(a)]).toEqual([names[i], cut(b)]);
      }
    },
  );

  it("finds an application subcommand's declared key as redis-server (COMMAND GETKEYS OBJECT ENCODING k), and cluster mode routes it", async () => {
    const calls = [
      ['OBJECT', 'ENCODING', 'k'],
      ['OBJECT', 'ENCODING'],
      ['OBJECT', 'HELP'],
      ['OBJECT', 'NOSUCH', 'k'],
    ];
    const commands = calls.map((call) => ['COMMAND', 'GETKEYS', ...call]);
    const [ours, theirs] = await Promise.all([replies(port, 2, commands), replies(real.port, 2, commands)]);
    expect(ours).toEqual(theirs);
    expect(ours[0]).toBe('*1\r\n$1\r\nk\r\n');
    // The subcommand's key is the call's key: a key of another node's slot is MOVED, OBJECT HELP is not.
    const me = 'a'.repeat(40);
    const other = 'b'.repeat(40);
    const clustered = respAdapter({
      cluster: {
        id: me,
        nodes: [
          { id: me, slots: [[0, 8191]] },
          { id: other, host: '127.0.0.1', port: 7999, slots: [[8192, 16383]] },
        ],
      },
    });
    clustered.command('object', OBJECT, () => OK);
    // Wrapped as an application wraps a command (registered again from its own spec): the key finder
    // derived from the subcommands is derived again, not shown as the application's (movablekeys).
    const { name: _name, handler, ...registered } = clustered.lookup('object') as NonNullable<ReturnType<RespAdapter['lookup']>>;
    clustered.command('object', registered, handler);
    const { service: clusterService, port: clusterPort } = await serve(clustered);
    try {
      let key = 'k';
      for (let i = 0; keySlot(Buffer.from(key)) < 8192; i++) key = `k${i}`;
      const [moved, help, info] = await replies(clusterPort, 2, [
        ['OBJECT', 'ENCODING', key],
        ['OBJECT', 'HELP'],
        ['COMMAND', 'INFO', 'object'],
      ]);
      expect(moved).toBe(`-MOVED ${keySlot(Buffer.from(key))} 127.0.0.1:7999\r\n`);
      expect(help).toBe('+OK\r\n');
      expect(info?.startsWith('*1\r\n*10\r\n$6\r\nobject\r\n:-2\r\n*0\r\n:0\r\n:0\r\n:0\r\n*1\r\n+@slow\r\n')).toBe(true);
    } finally {
      await clusterService.stop();
    }
  });
});

/** A container's COMMAND INFO reply without its subcommands' entries (listed in each server's own order). */
function containerHead(reply: string): string {
  const first = reply.indexOf('*10\r\n');
  const second = reply.indexOf('*10\r\n', first + 1);
  return second === -1 ? reply : reply.slice(0, second).replace(/\*\d+\r\n$/, '');
}

describe('COMMAND GETKEYS and GETKEYSANDFLAGS', () => {
  const calls: string[][] = [
    ['get', 'a'],
    ['set', 'a', 'b'],
    ['set', 'a', 'b', 'GET'],
    ['lmove', 'src', 'dst', 'left', 'right'],
    ['zunionstore', 'dest', '2', 'a', 'b', 'WEIGHTS', '1', '2'],
    ['zunionstore', 'dest', '0', 'a'],
    ['zunionstore', 'dest', 'x', 'a'],
    ['zunionstore', 'dest', '3', 'a'],
    ['xread', 'COUNT', '2', 'STREAMS', 'a', 'b', '0', '0'],
    ['xread', 'streams', 'a', '0'],
    ['xread', 'COUNT', '2', 'BLOCK', '0'],
    ['eval', 'return 1', '2', 'k1', 'k2', 'arg'],
    ['eval', 'return 1', '0'],
    ['eval', 'return 1', '-1'],
    ['sort', 'k'],
    ['sort', 'k', 'BY', 'w_*', 'GET', '#', 'STORE', 'out'],
    ['spublish', 'channel', 'message'],
    ['ssubscribe', 'a', 'b'],
    ['ping'],
    ['ping', 'x'],
    ['nosuch', 'a'],
    ['get'],
    ['get', 'a', 'b'],
    ['set', 'a'],
    ['client', 'nosuch'],
    ['client', 'list'],
    ['command', 'info'],
  ];

  it('find the same keys as redis-server 7.0.15, with its errors for every bad call', async () => {
    const commands = calls.map((call) => ['COMMAND', 'GETKEYS', ...call]);
    commands.push(['COMMAND', 'GETKEYS'], ['COMMAND', 'GETKEYSANDFLAGS', 'get']);
    const ours = await replies(port, 2, commands);
    const theirs = await replies(real.port, 2, commands);
    for (let i = 0; i < commands.length; i++) expect([commands[i], ours[i]]).toEqual([commands[i], theirs[i]]);
    expect(ours[0]).toBe('*1\r\n$1\r\na\r\n');
    expect(ours[16]).toBe('-ERR The command has no key arguments\r\n');
  });

  it.each([2, 3] as const)('GETKEYSANDFLAGS gives each key with its spec flags as redis-server, RESP%i', async (protocol) => {
    const commands = [
      ['get', 'a'],
      ['lmove', 'src', 'dst', 'left', 'right'],
      ['zunionstore', 'dest', '2', 'a', 'b'],
      ['xread', 'COUNT', '2', 'STREAMS', 'a', 'b', '0', '0'],
      ['eval', 'return 1', '2', 'k1', 'k2'],
    ].map((call) => ['COMMAND', 'GETKEYSANDFLAGS', ...call]);
    const ours = await replies(port, protocol, commands);
    const theirs = await replies(real.port, protocol, commands);
    for (let i = 0; i < commands.length; i++) expect([commands[i], ours[i]]).toEqual([commands[i], theirs[i]]);
  });

  it('an application key finder (keysOf) answers for a command without key specs', async () => {
    const own = respAdapter();
    own.command(
      'mget2',
      { arity: -3, flags: ['readonly'], keysOf: (argv) => argv.slice(2).filter((_, i) => i % 2 === 0), group: 'string' },
      () => null,
    );
    const { service: ownService, port: ownPort } = await serve(own);
    try {
      const [keys, flagged, info] = await replies(ownPort, 2, [
        ['COMMAND', 'GETKEYS', 'mget2', 'x', 'a', 'b', 'c'],
        ['COMMAND', 'GETKEYSANDFLAGS', 'mget2', 'x', 'a'],
        ['COMMAND', 'INFO', 'mget2'],
      ]);
      expect(keys).toBe('*2\r\n$1\r\na\r\n$1\r\nc\r\n');
      expect(flagged).toBe('*1\r\n*2\r\n$1\r\na\r\n*2\r\n+RO\r\n+access\r\n');
      expect(info).toBe(
        '*1\r\n*10\r\n$5\r\nmget2\r\n:-3\r\n*2\r\n+readonly\r\n+movablekeys\r\n:0\r\n:0\r\n:0\r\n*3\r\n+@read\r\n+@string\r\n+@slow\r\n*0\r\n' +
          '*1\r\n*6\r\n$5\r\nflags\r\n*2\r\n+RO\r\n+access\r\n$12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n$7\r\nunknown\r\n$4\r\nspec\r\n*0\r\n' +
          '$9\r\nfind_keys\r\n*4\r\n$4\r\ntype\r\n$7\r\nunknown\r\n$4\r\nspec\r\n*0\r\n*0\r\n',
      );
    } finally {
      await ownService.stop();
    }
  });
});

describe('COMMAND COUNT, LIST, DOCS, HELP', () => {
  it("answer bad arguments with Redis 7.0.15's errors, and HELP with its text", async () => {
    const commands = [
      ['COMMAND', 'COUNT', 'x'],
      ['COMMAND', 'foo'],
      ['COMMAND', 'LIST', 'FILTERBY', 'aclcat'],
      ['COMMAND', 'LIST', 'foo'],
      ['COMMAND', 'LIST', 'FILTERBY', 'color', 'red'],
      ['COMMAND', 'LIST', 'FILTERBY', 'ACLCAT', 'nosuch'],
      ['COMMAND', 'LIST', 'FILTERBY', 'MODULE', 'x'],
      ['COMMAND', 'DOCS', 'nosuch'],
      ['COMMAND', 'HELP'],
      ['COMMAND', 'HELP', 'x'],
    ];
    const ours = await replies(port, 2, commands);
    const theirs = await replies(real.port, 2, commands);
    for (let i = 0; i < commands.length; i++) expect([commands[i], ours[i]]).toEqual([commands[i], theirs[i]]);
  });

  it('COUNT counts the commands, LIST names them with their subcommands, FILTERBY ACLCAT/PATTERN select', async () => {
    const client = new Redis(port, { lazyConnect: true });
    await client.connect();
    try {
      const all = (await client.call('COMMAND', 'LIST')) as string[];
      const top = all.filter((name) => !name.includes('|'));
      expect(await client.call('COMMAND', 'COUNT')).toBe(top.length);
      expect(top).toEqual(expect.arrayContaining([...Object.keys(DECLARED), 'command', 'client', 'spublish']));
      expect(all).toEqual(expect.arrayContaining(['client|list', 'command|getkeys', 'pubsub|shardchannels']));
      expect(new Set((await client.call('COMMAND', 'LIST', 'FILTERBY', 'ACLCAT', 'sortedset')) as string[])).toEqual(
        new Set(['zunionstore', 'sort']),
      );
      expect(new Set((await client.call('COMMAND', 'LIST', 'FILTERBY', 'ACLCAT', 'BLOCKING')) as string[])).toEqual(new Set(['xread']));
      expect(new Set((await client.call('COMMAND', 'LIST', 'FILTERBY', 'PATTERN', 'client|*l*')) as string[])).toEqual(
        new Set(all.filter((name) => name.startsWith('client|') && name.slice(7).includes('l'))),
      );
      const docs = (await client.call('COMMAND', 'DOCS', 'get', 'nosuch', 'command')) as unknown[];
      expect(docs[0]).toBe('get');
      expect(docs[2]).toBe('command');
      expect(docs[3]).toEqual(expect.arrayContaining(['summary', 'group', 'server', 'subcommands']));
      expect(docs).toHaveLength(4);
    } finally {
      client.disconnect();
    }
  });
});

describe('key specs reach client-side caching', () => {
  it('a readonly command declared with a keynum key spec: the keys it read are invalidated on write', async () => {
    const own = respAdapter();
    const values = new Map<string, string>();
    own.command(
      'mgetn',
      { arity: -3, flags: ['readonly'], keySpecs: [{ flags: ['RO', 'access'], begin: 1, find: { keynumIndex: 0, firstKey: 1, step: 1 } }] },
      (_client, argv) => argv.slice(2, 2 + Number(String(argv[1]))).map((key) => values.get(String(key)) ?? null),
    );
    own.command('put', { arity: 3, flags: ['write'], keys: [1, 1, 1] }, (client, [, key, value]) => {
      values.set(String(key), String(value));
      own.touch(client.db, String(key));
      return OK;
    });
    const { service: ownService, port: ownPort } = await serve(own);
    try {
      const reader = await connection(ownPort, 3);
      const ask = async (socket: Socket, ...args: string[]): Promise<string> => {
        socket.write(encode(args));
        return readReply(socket);
      };
      expect(await ask(reader, 'CLIENT', 'TRACKING', 'ON')).toBe('+OK\r\n');
      expect(await ask(reader, 'MGETN', '2', 'a', 'b', 'not-a-key')).toBe('*2\r\n_\r\n_\r\n');
      const writer = await connection(ownPort, 2);
      const pushed = readReply(reader);
      expect(await ask(writer, 'PUT', 'b', '1')).toBe('+OK\r\n');
      expect(await pushed).toBe('>2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nb\r\n');
      // The key that was not declared (an argument past numkeys) was not remembered.
      expect(await ask(writer, 'PUT', 'not-a-key', '1')).toBe('+OK\r\n');
      expect(await ask(reader, 'PING')).toBe('+PONG\r\n');
    } finally {
      await ownService.stop();
    }
  });
});

describe('shard channels are not keys, but the cluster sees them', () => {
  it('SPUBLISH to a channel of another node is MOVED, while COMMAND GETKEYS lists no key', async () => {
    const me = 'a'.repeat(40);
    const other = 'b'.repeat(40);
    const clustered = respAdapter({
      cluster: {
        id: me,
        nodes: [
          { id: me, slots: [[0, 8191]] },
          { id: other, host: '127.0.0.1', port: 7999, slots: [[8192, 16383]] },
        ],
      },
    });
    const { service: clusterService, port: clusterPort } = await serve(clustered);
    try {
      let channel = 'news';
      for (let i = 0; keySlot(Buffer.from(channel)) < 8192; i++) channel = `news${i}`;
      const slot = keySlot(Buffer.from(channel));
      const [moved, keys] = await replies(clusterPort, 2, [
        ['SPUBLISH', channel, 'hello'],
        ['COMMAND', 'GETKEYS', 'SPUBLISH', channel, 'hello'],
      ]);
      expect(moved).toBe(`-MOVED ${slot} 127.0.0.1:7999\r\n`);
      expect(keys).toBe('-ERR The command has no key arguments\r\n');
    } finally {
      await clusterService.stop();
    }
  });
});

describe('pre-run checks (addCheck)', () => {
  it('refuse a write at queue time as Redis on a replica: the refused command flags MULTI, EXEC aborts', async () => {
    const own = respAdapter();
    const store = new Map<string, string>();
    own.command('set', { arity: 3, flags: ['write'], keys: [1, 1, 1] }, (_client, [, key, value]) => {
      store.set(String(key), String(value));
      return OK;
    });
    own.command('get', { arity: 2, flags: ['readonly'], keys: [1, 1, 1] }, (_client, [, key]) => store.get(String(key)) ?? null);
    let replica = true;
    const remove = own.addCheck((client, spec) => {
      const write =
        spec.flags?.includes('write') || (spec.name === 'exec' && (client.multi ?? []).some((argv) => /^set$/i.test(String(argv[0]))));
      return replica && write ? "READONLY You can't write against a read only replica." : undefined;
    });
    own.addCheck((_client, _spec, argv) => (String(argv[1]) === 'forbidden' ? 'ERR forbidden key' : undefined));
    const { service: ownService, port: ownPort } = await serve(own);
    try {
      const socket = await connection(ownPort, 2);
      const ask = async (...args: string[]): Promise<string> => {
        socket.write(encode(args));
        return readReply(socket);
      };
      expect(await ask('SET', 'k', 'v')).toBe("-READONLY You can't write against a read only replica.\r\n");
      expect(await ask('GET', 'k')).toBe('$-1\r\n');
      expect(await ask('GET', 'forbidden')).toBe('-ERR forbidden key\r\n');
      expect(await ask('MULTI')).toBe('+OK\r\n');
      expect(await ask('SET', 'k', 'v')).toBe("-READONLY You can't write against a read only replica.\r\n");
      expect(await ask('GET', 'k')).toBe('+QUEUED\r\n');
      expect(await ask('EXEC')).toBe('-EXECABORT Transaction discarded because of previous errors.\r\n');
      // A write queued before the server became a replica: EXEC itself is refused.
      replica = false;
      expect(await ask('MULTI')).toBe('+OK\r\n');
      expect(await ask('SET', 'k', 'v')).toBe('+QUEUED\r\n');
      replica = true;
      // As Redis (server.c rejectCommand → execCommandAbort): the refused EXEC discards the transaction.
      expect(await ask('EXEC')).toBe(
        "-EXECABORT Transaction discarded because of: READONLY You can't write against a read only replica.\r\n",
      );
      expect(await ask('DISCARD')).toBe('-ERR DISCARD without MULTI\r\n');
      expect(own.commandStats.get('set')?.rejected).toBe(2);
      expect(own.commandStats.get('exec')?.rejected).toBe(1);
      remove();
      expect(await ask('SET', 'k', 'v')).toBe('+OK\r\n');
      expect(await ask('GET', 'k')).toBe('$1\r\nv\r\n');
    } finally {
      await ownService.stop();
    }
  });
});

describe('resetStats (CONFIG RESETSTAT)', () => {
  it('zeroes commandstats, errorstats, total_error_replies and the counters, and runs the hooks', async () => {
    const own = respAdapter();
    let hits = 5;
    own.onResetStats(() => {
      hits = 0;
    });
    own.command('fail', { arity: 1 }, () => {
      throw new Error('boom');
    });
    const { service: ownService, port: ownPort } = await serve(own);
    try {
      const before = await replies(ownPort, 2, [['PING'], ['nosuch'], ['fail'], ['GET'], ['INFO', 'errorstats']]);
      expect(before[4]).toContain('errorstat_ERR:count=3');
      expect(own.stats.errorReplies).toBe(3);
      expect(own.stats.commandsProcessed).toBeGreaterThan(0);
      own.resetStats();
      expect(hits).toBe(0);
      const [stats, commandstats, errorstats] = await replies(ownPort, 2, [
        ['INFO', 'stats'],
        ['INFO', 'commandstats'],
        ['INFO', 'errorstats'],
      ]);
      expect(stats).toContain('total_error_replies:0\r\n');
      expect(stats).toContain('total_commands_processed:0\r\n'); // as Redis: INFO does not count itself
      expect(stats).toContain('total_connections_received:1\r\n'); // the connection made since
      expect(commandstats).toMatch(/# Commandstats\r\ncmdstat_info:calls=1,/); // INFO stats (not this one)
      expect(commandstats).not.toContain('cmdstat_ping');
      expect(errorstats).toBe('$14\r\n# Errorstats\r\n\r\n');
    } finally {
      await ownService.stop();
    }
  });
});
