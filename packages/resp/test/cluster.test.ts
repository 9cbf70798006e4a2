import { once } from 'node:events';
import tls from 'node:tls';
import { PortService } from '@portbind/core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { portOf, selfSignedCert } from '../../../test/support/net.js';
import { crc16, keySlot } from '../src/cluster.js';
import { type ClusterNode, OK, type RespOptions, respAdapter } from '../src/index.js';
import { Raw, type RealRedis, startRedis } from './redis-cluster.js';

// Cluster mode: CLUSTER replies compared byte for byte with a cluster-enabled redis-server 7.0.15
// owning every slot (node ids and ports aside), Redis's redirections and errors over raw sockets.

const ID_A = 'a'.repeat(40);
const ID_B = 'b'.repeat(40);
const ID_R = 'c'.repeat(40);

const services: PortService[] = [];
const raws: Raw[] = [];
afterEach(async () => {
  for (const raw of raws.splice(0)) raw.close();
  await Promise.all(services.splice(0).map((service) => service.stop()));
});

let real: RealRedis;
let plain: RealRedis;
beforeAll(async () => {
  [real, plain] = await Promise.all([startRedis(true), startRedis(false)]);
}, 60_000);
afterAll(async () => {
  await Promise.all([real?.stop(), plain?.stop()]);
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
  resp.command('mset', { arity: -3, flags: ['write'], keys: [1, -1, 2] }, (_client, argv) => {
    for (let i = 1; i < argv.length; i += 2) store.set(String(argv[i]), Buffer.from(argv[i + 1] as Buffer));
    return OK;
  });
  resp.command('sum', { arity: -3, flags: ['readonly'], keysOf: (argv) => argv.slice(2, 2 + Number(argv[1])) }, () => 0);
  resp.command('time', { arity: 1, flags: ['fast'] }, () => ['1', '2']);
  const service = new PortService({ env: {} });
  services.push(service);
  const binding = service.bind(resp, { port: 0, host: '127.0.0.1' });
  await service.start();
  return { resp, port: portOf(binding) };
}

function raw(port: number): Raw {
  const client = new Raw(port);
  raws.push(client);
  return client;
}

/** A reply with node ids and ports (announced port, bus port) made comparable. */
function normalize(reply: string, id: string, port: number): string {
  return reply
    .replaceAll(id, '<id>')
    .replaceAll(`@${port + 10_000}`, '@<bus>')
    .replaceAll(`:${port}\r\n`, ':<port>\r\n')
    .replaceAll(`:${port}@`, ':<port>@')
    .replace(/^=\d+|^\$\d+/, '<len>');
}

describe('hash slots', () => {
  it('CRC16 is XMODEM (the check value of "123456789" is 0x31C3)', () => {
    expect(crc16(Buffer.from('123456789'))).toBe(0x31c3);
  });

  it('keySlot agrees with CLUSTER KEYSLOT of redis-server 7.0.15, hash tags and binary keys included', async () => {
    const keys: Array<string | Buffer> = [
      'foo',
      '',
      '{user1000}.following',
      '{user1000}.followers',
      'foo{}{bar}',
      'foo{{bar}}zap',
      'foo{bar}{zap}',
      '{}',
      '{',
      '}',
      '}{a}',
      'a{b',
      'héllo',
      Buffer.from([0, 255, 0x7b, 1, 0x7d, 200]),
    ];
    for (let i = 0; i < 200; i++) keys.push(`key:${i * 7919}`);
    const client = raw(real.port);
    const replies = await client.send(...keys.map((key) => ['CLUSTER', 'KEYSLOT', key]));
    expect(keys.map((key) => `:${keySlot(key)}\r\n`)).toEqual(replies);
  });
});

describe('CLUSTER replies as a cluster-enabled redis-server 7.0.15 owning every slot', () => {
  it('SLOTS, SHARDS, NODES, INFO, MYID, LINKS on RESP2 and RESP3', async () => {
    const { resp, port } = await start({ cluster: { host: '127.0.0.1' } });
    const ours = raw(port);
    const theirs = raw(real.port);
    const [realId] = await theirs.send('CLUSTER MYID');
    const ourId = resp.cluster?.myId as string;
    expect(ourId).toMatch(/^[0-9a-f]{40}$/);
    const commands = ['CLUSTER SLOTS', 'CLUSTER SHARDS', 'CLUSTER NODES', 'CLUSTER INFO', 'CLUSTER MYID', 'CLUSTER LINKS'];
    for (const hello of ['HELLO 2', 'HELLO 3']) {
      await ours.send(hello);
      await theirs.send(hello);
      const expected = (await theirs.send(...commands)).map((reply) => normalize(reply, (realId as string).slice(5, 45), real.port));
      const actual = (await ours.send(...commands)).map((reply) => normalize(reply, ourId, port));
      expect(actual).toEqual(expected);
    }
  });

  it("HELLO says mode cluster, as a cluster-enabled redis-server (the version's and ids' fields aside)", async () => {
    const { port } = await start({ cluster: {}, serverVersion: '7.0.15' });
    const [ours] = await raw(port).send('HELLO 3');
    const [theirs] = await raw(real.port).send('HELLO 3');
    const modeOf = (reply: string | undefined) => /\$4\r\nmode\r\n\$\d+\r\n(\w+)\r\n/.exec(reply ?? '')?.[1];
    expect(modeOf(theirs)).toBe('cluster');
    expect(modeOf(ours)).toBe('cluster');
    const [standalone] = await raw((await start({})).port).send('HELLO 3');
    expect(modeOf(standalone)).toBe('standalone');
  });

  it('the announced endpoint defaults to the address the client connected to', async () => {
    const { port } = await start({ cluster: {} });
    const [slots] = await raw(port).send('CLUSTER SLOTS');
    expect(slots).toContain(`$9\r\n127.0.0.1\r\n:${port}\r\n`);
  });

  it('errors: arity, unknown subcommand, COUNTKEYSINSLOT and GETKEYSINSLOT arguments', async () => {
    const counted = new Map([[12182, ['foo']]]);
    const { port } = await start({
      cluster: {
        countKeysInSlot: (slot) => counted.get(slot)?.length ?? 0,
        getKeysInSlot: (slot) => counted.get(slot) ?? [],
      },
    });
    const commands = [
      'CLUSTER KEYSLOT',
      'CLUSTER KEYSLOT a b',
      'CLUSTER x',
      'CLUSTER',
      'READONLY x',
      'CLUSTER COUNTKEYSINSLOT x',
      'CLUSTER COUNTKEYSINSLOT 16384',
      'CLUSTER COUNTKEYSINSLOT -1',
      'CLUSTER GETKEYSINSLOT 1 x',
      'CLUSTER GETKEYSINSLOT 1 -1',
      'CLUSTER GETKEYSINSLOT 16384 1',
      'CLUSTER REPLICAS abc',
      'CLUSTER COUNT-FAILURE-REPORTS abc',
      'CLUSTER COUNTKEYSINSLOT 5',
      'READONLY',
      'READWRITE',
      'ASKING',
      'SELECT 1',
      'SELECT 0',
      'SELECT x',
      'EXEC',
    ];
    const expected = await raw(real.port).send(...commands);
    expect(await raw(port).send(...commands)).toEqual(expected);
    expect(expected[2]).toBe("-ERR unknown subcommand 'x'. Try CLUSTER HELP.\r\n");
    expect(await raw(port).send('CLUSTER COUNTKEYSINSLOT 12182', 'CLUSTER GETKEYSINSLOT 12182 5')).toEqual([
      ':1\r\n',
      '*1\r\n$3\r\nfoo\r\n',
    ]);
  });

  it('COUNTKEYSINSLOT without the application hook is refused, the connection lives on', async () => {
    const { port } = await start({ cluster: {} });
    expect(await raw(port).send('CLUSTER COUNTKEYSINSLOT 1', 'CLUSTER ADDSLOTS 1', 'PING')).toEqual([
      "-ERR CLUSTER COUNTKEYSINSLOT is not supported: the application sets this node's slot map\r\n",
      "-ERR CLUSTER ADDSLOTS is not supported: the application sets this node's slot map\r\n",
      '+PONG\r\n',
    ]);
  });

  it("CLUSTER HELP lists the subcommands it answers, in Redis 7.0.15's words", async () => {
    const { port } = await start({ cluster: {} });
    const [ours] = await raw(port).send('CLUSTER HELP');
    const [theirs] = await raw(real.port).send('CLUSTER HELP');
    const lines = (reply: string) => reply.split('\r\n').filter((line) => line.startsWith('+'));
    expect(lines(ours as string).length).toBeGreaterThan(20);
    for (const line of lines(ours as string)) expect(lines(theirs as string)).toContain(line);
  });
});

describe('cluster mode off: as a redis-server without cluster support', () => {
  it('CLUSTER, READONLY, READWRITE, ASKING', async () => {
    const { resp, port } = await start();
    expect(resp.cluster).toBeUndefined();
    const commands = [
      'CLUSTER INFO',
      'CLUSTER SLOTS',
      'CLUSTER KEYSLOT a',
      'CLUSTER KEYSLOT',
      'CLUSTER x',
      'CLUSTER HELP',
      'READONLY',
      'READWRITE',
      'ASKING',
      'READONLY x',
      'SELECT 1',
    ];
    const expected = await raw(plain.port).send(...commands);
    expect(expected[0]).toBe('-ERR This instance has cluster support disabled\r\n');
    expect(await raw(port).send(...commands)).toEqual(expected);
  });
});

describe('redirections', () => {
  const twoNodes: ClusterNode[] = [
    { id: ID_A, slots: [[0, 8191]] },
    { id: ID_B, host: '127.0.0.2', port: 7001, slots: [[8192, 16383]] },
  ];

  it("MOVED to the owner of a key's slot; CROSSSLOT; commands without keys run", async () => {
    const { port } = await start({ cluster: { id: ID_A, nodes: twoNodes } });
    const client = raw(port);
    // foo: slot 12182 (node B); bar: 5061 (node A); {foo}x: 12182.
    expect(
      await client.send(
        'GET foo',
        'SET bar 1',
        'GET bar',
        'MSET bar 1 foo 2',
        'MSET {foo}a 1 {foo}b 2',
        'MSET bar 1 bar 2',
        'SUM 2 bar {bar}x',
        'SUM 2 bar foo',
        'TIME',
        'PING',
      ),
    ).toEqual([
      '-MOVED 12182 127.0.0.2:7001\r\n',
      '+OK\r\n',
      '$1\r\n1\r\n',
      "-CROSSSLOT Keys in request don't hash to the same slot\r\n",
      '-MOVED 12182 127.0.0.2:7001\r\n',
      '+OK\r\n',
      ':0\r\n',
      "-CROSSSLOT Keys in request don't hash to the same slot\r\n",
      '*2\r\n$1\r\n1\r\n$1\r\n2\r\n',
      '+PONG\r\n',
    ]);
    expect(keySlot('{foo}a')).toBe(12182);
  });

  it('in MULTI: CROSSSLOT or MOVED while queuing aborts EXEC; keys of several queued commands must share a slot', async () => {
    const { port } = await start({ cluster: { id: ID_A, nodes: twoNodes } });
    const commands = ['MULTI', 'MSET a 1 b 2', 'SET a 1', 'EXEC', 'MULTI', 'SET a 1', 'SET b 2', 'EXEC', 'EXEC'];
    const expected = await raw(real.port).send(...commands);
    expect(expected).toEqual([
      '+OK\r\n',
      "-CROSSSLOT Keys in request don't hash to the same slot\r\n",
      '+QUEUED\r\n',
      '-EXECABORT Transaction discarded because of previous errors.\r\n',
      '+OK\r\n',
      '+QUEUED\r\n',
      '+QUEUED\r\n',
      "-CROSSSLOT Keys in request don't hash to the same slot\r\n",
      '-ERR EXEC without MULTI\r\n',
    ]);
    // Here a (slot 15495) is node B's, b (3300) and bar (5061) node A's.
    const client = raw(port);
    expect(await client.send(...commands)).toEqual([
      '+OK\r\n',
      "-CROSSSLOT Keys in request don't hash to the same slot\r\n",
      '-MOVED 15495 127.0.0.2:7001\r\n',
      '-EXECABORT Transaction discarded because of previous errors.\r\n',
      '+OK\r\n',
      '-MOVED 15495 127.0.0.2:7001\r\n',
      '+QUEUED\r\n',
      '-EXECABORT Transaction discarded because of previous errors.\r\n',
      '-ERR EXEC without MULTI\r\n',
    ]);
    expect(await client.send('MULTI', 'SET bar 1', 'SET b 2', 'EXEC', 'GET b')).toEqual([
      '+OK\r\n',
      '+QUEUED\r\n',
      '+QUEUED\r\n',
      "-CROSSSLOT Keys in request don't hash to the same slot\r\n",
      '$-1\r\n',
    ]);
  });

  it('TLS clients are sent to TLS ports (MOVED, SLOTS); SHARDS lists port and tls-port', async () => {
    const pems = await selfSignedCert();
    const resp = respAdapter({
      cluster: {
        id: ID_A,
        nodes: [
          { id: ID_A, slots: [[0, 8191]] },
          { id: ID_B, host: '127.0.0.2', port: 7001, tlsPort: 7101, slots: [[8192, 16383]] },
        ],
      },
    });
    resp.command('get', { arity: 2, flags: ['readonly'], keys: [1, 1, 1] }, () => null);
    const service = new PortService({ env: {} });
    services.push(service);
    const binding = service.bind(resp, { port: 0, host: '127.0.0.1', tls: pems });
    await service.start();
    const port = portOf(binding);
    const socket = tls.connect({ port, host: '127.0.0.1', ca: pems.cert, servername: 'localhost' });
    await once(socket, 'secureConnect');
    const client = new Raw(port, socket);
    raws.push(client);
    const [moved, slots, shards] = await client.send('GET foo', 'CLUSTER SLOTS', 'CLUSTER SHARDS');
    expect(moved).toBe('-MOVED 12182 127.0.0.2:7101\r\n');
    expect(slots).toContain(`*4\r\n$9\r\n127.0.0.2\r\n:7101\r\n$40\r\n${ID_B}\r\n`);
    // This node, reached over TLS and announcing no port: its port is a TLS one.
    expect(shards).toContain(`$2\r\nid\r\n$40\r\n${ID_A}\r\n$8\r\ntls-port\r\n:${port}\r\n$2\r\nip\r\n`);
    expect(shards).toContain(`$2\r\nid\r\n$40\r\n${ID_B}\r\n$4\r\nport\r\n:7001\r\n$8\r\ntls-port\r\n:7101\r\n`);
  });

  it('sharded pub/sub: channels hash as keys (MOVED, CROSSSLOT as redis-server), a replica serves them without READONLY', async () => {
    const same = ['SSUBSCRIBE a b', 'SPUBLISH a hello', 'SSUBSCRIBE {x}1 {x}2'];
    const theirs = raw(real.port);
    const expected = await theirs.send(...same);
    expect(expected[0]).toBe("-CROSSSLOT Keys in request don't hash to the same slot\r\n");
    const { port } = await start({ cluster: { id: ID_A } });
    expect(await raw(port).send(...same)).toEqual(expected);
    const split = await start({ cluster: { id: ID_A, nodes: twoNodes } });
    expect(await raw(split.port).send('SPUBLISH foo hello', 'SPUBLISH bar hello')).toEqual(['-MOVED 12182 127.0.0.2:7001\r\n', ':0\r\n']);
    const replica = await start({
      cluster: {
        id: ID_R,
        nodes: [
          { id: ID_A, host: '127.0.0.3', port: 7000, slots: [[0, 16383]] },
          { id: ID_R, replicaOf: ID_A },
        ],
      },
    });
    expect(await raw(replica.port).send('SPUBLISH foo hello', 'GET foo')).toEqual([':0\r\n', '-MOVED 12182 127.0.0.3:7000\r\n']);
  });

  it('a slot no node serves: CLUSTERDOWN; CLUSTER INFO says fail', async () => {
    const { port } = await start({ cluster: { id: ID_A, nodes: [{ id: ID_A, slots: [[0, 100]] }] } });
    const client = raw(port);
    const [info] = await client.send('CLUSTER INFO');
    expect(info).toContain('cluster_state:fail\r\ncluster_slots_assigned:101\r\n');
    expect(await client.send('GET foo', 'GET k126', 'PING')).toEqual([
      '-CLUSTERDOWN Hash slot not served\r\n',
      '-CLUSTERDOWN The cluster is down\r\n',
      '+PONG\r\n',
    ]);
    expect(keySlot('k126')).toBe(58);
  });

  it("a replica serves reads of its master's slots to READONLY clients, MOVED for writes", async () => {
    const nodes: ClusterNode[] = [
      { id: ID_A, host: '127.0.0.3', port: 7000, slots: [[0, 16383]] },
      { id: ID_R, replicaOf: ID_A },
    ];
    const { port } = await start({ cluster: { id: ID_R, host: '127.0.0.1', nodes } });
    const client = raw(port);
    expect(await client.send('GET foo', 'READONLY', 'GET foo', 'SET foo 1', 'READWRITE', 'GET foo')).toEqual([
      '-MOVED 12182 127.0.0.3:7000\r\n',
      '+OK\r\n',
      '$-1\r\n',
      '-MOVED 12182 127.0.0.3:7000\r\n',
      '+OK\r\n',
      '-MOVED 12182 127.0.0.3:7000\r\n',
    ]);
    const [slots] = await client.send('CLUSTER SLOTS');
    expect(slots).toBe(
      `*1\r\n*4\r\n:0\r\n:16383\r\n*4\r\n$9\r\n127.0.0.3\r\n:7000\r\n$40\r\n${ID_A}\r\n*0\r\n` +
        `*4\r\n$9\r\n127.0.0.1\r\n:${port}\r\n$40\r\n${ID_R}\r\n*0\r\n`,
    );
    const [nodesText] = await client.send('CLUSTER NODES');
    expect(nodesText).toContain(`${ID_R} 127.0.0.1:${port}@${port + 10_000} myself,slave ${ID_A} 0 0 0 connected\n`);
  });

  it('setNodes replaces the slot map at run time; a bad map is refused with ConfigError and the old one stays', async () => {
    const { resp, port } = await start({ cluster: { id: ID_A } });
    const client = raw(port);
    expect(await client.send('GET foo')).toEqual(['$-1\r\n']);
    const cluster = resp.cluster;
    if (cluster === undefined) throw new Error('cluster mode is on');
    cluster.setNodes([
      {
        id: ID_A,
        slots: [
          [0, 12181],
          [12183, 16383],
        ],
      },
      { id: ID_B, host: '127.0.0.2', port: 7001, slots: [12182] },
    ]);
    expect(await client.send('GET foo', 'GET bar')).toEqual(['-MOVED 12182 127.0.0.2:7001\r\n', '$-1\r\n']);
    expect(cluster.ownerOf(12182)?.id).toBe(ID_B);
    expect(() =>
      cluster.setNodes([
        { id: ID_A, slots: [[0, 10]] },
        { id: ID_B, host: 'h', port: 1, slots: [[10, 20]] },
      ]),
    ).toThrow(expect.objectContaining({ code: 'PB_ERR_CONFIG', message: expect.stringContaining('slot 10 is given to two nodes') }));
    expect(() => cluster.setNodes([{ id: ID_B, slots: [1] }])).toThrow(expect.objectContaining({ code: 'PB_ERR_CONFIG' }));
    expect(() => cluster.setNodes([{ id: 'x', host: 'h', port: 1 }])).toThrow(expect.objectContaining({ code: 'PB_ERR_CONFIG' }));
    expect(cluster.ownerOf(12182)?.id).toBe(ID_B);
    const [nodesText] = await client.send('CLUSTER NODES');
    expect(nodesText).toContain(`${ID_A} 127.0.0.1:${port}@${port + 10_000} myself,master - 0 0 0 connected 0-12181 12183-16383\n`);
    expect(nodesText).toContain(`${ID_B} 127.0.0.2:7001@17001 master - 0 0 0 connected 12182\n`);
  });

  it('a bad node list at construction throws ConfigError', () => {
    expect(() => respAdapter({ cluster: { id: 'nothex' } })).toThrow(expect.objectContaining({ code: 'PB_ERR_CONFIG' }));
    expect(() => respAdapter({ cluster: { id: ID_A, nodes: [{ id: ID_A, slots: [[0, 16384]] }] } })).toThrow(
      expect.objectContaining({ code: 'PB_ERR_CONFIG' }),
    );
  });
});
