import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { PortService } from '@portbind/core';
import type { ClusterNode, RespAdapter, SlotRange } from '@portbind/resp';
import { Cluster } from 'ioredis';
import { createCluster } from 'redis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Raw, type RealRedis, startRedis } from '../../../packages/resp/test/redis-cluster.js';
import { freePort, MAIN, type Spawned, type Started, spawnServer, startMiniRedis, tempDirs, until } from './support.js';

// mini-redis in cluster mode (CLUSTER_ENABLED=yes): real cluster clients use it — alone (it owns
// every slot) and as two processes each owning half of the slots, following -MOVED between them.

const run = promisify(execFile);
const ID_A = 'a'.repeat(40);
const ID_B = 'b'.repeat(40);

const raws: Raw[] = [];
const clusters: Cluster[] = [];
afterEach(() => {
  for (const raw of raws.splice(0)) raw.close();
  for (const cluster of clusters.splice(0)) cluster.disconnect();
});

const adapterOf = (node: Started & { service: PortService }): RespAdapter => node.service.binding('resp').adapter as RespAdapter;

/** The test's `<id> <host>:<port> <slots>` text as nodes for setNodes. */
function nodesOf(text: string): ClusterNode[] {
  return text.split(';').map((entry) => {
    const [id = '', address = '', ...ranges] = entry.trim().split(' ');
    const [host = '', port = ''] = address.split(':');
    const slots = ranges.map((range): SlotRange => {
      const [first, last] = range.split('-').map(Number);
      return last === undefined ? (first as number) : [first as number, last];
    });
    return { id, host, port: Number(port), slots };
  });
}

function raw(port: number): Raw {
  const client = new Raw(port);
  raws.push(client);
  return client;
}

function ioredisCluster(port: number, protocol: 2 | 3 = 2): Cluster {
  const cluster = new Cluster([{ host: '127.0.0.1', port }], { redisOptions: { maxRetriesPerRequest: 1, protocol } });
  clusters.push(cluster);
  return cluster;
}

async function cli(port: number, ...args: string[]): Promise<string> {
  const { stdout } = await run('redis-cli', ['-c', '-p', String(port), ...args], { timeout: 10_000 });
  return stdout.trim();
}

describe('one mini-redis owning every slot', () => {
  let single: Started;
  let real: RealRedis;
  beforeAll(async () => {
    [single, real] = await Promise.all([startMiniRedis({ CLUSTER_ENABLED: 'yes' }), startRedis(true)]);
  }, 60_000);
  afterAll(async () => {
    await Promise.all([single?.stop(), real?.stop()]);
  });

  it('ioredis.Cluster: set, get, mget with hash tags, a pipeline', async () => {
    const cluster = ioredisCluster(single.port);
    expect(await cluster.set('greeting', 'hello')).toBe('OK');
    expect(await cluster.get('greeting')).toBe('hello');
    expect(await cluster.mset('{user1}:name', 'ann', '{user1}:age', '33')).toBe('OK');
    expect(await cluster.mget('{user1}:name', '{user1}:age', '{user1}:none')).toEqual(['ann', '33', null]);
    const results = await cluster.pipeline().set('a', '1').incr('a').get('greeting').exec();
    expect(results).toEqual([
      [null, 'OK'],
      [null, 2],
      [null, 'hello'],
    ]);
    expect(cluster.nodes('master').map((node) => node.options.port)).toEqual([single.port]);
  });

  it('ioredis.Cluster on RESP3', async () => {
    const cluster = ioredisCluster(single.port, 3);
    expect(await cluster.set('{r3}a', '1')).toBe('OK');
    expect(await cluster.mget('{r3}a', '{r3}b')).toEqual(['1', null]);
    expect(await cluster.cluster('INFO')).toContain('cluster_state:ok');
  });

  it('node-redis createCluster', async () => {
    const cluster = createCluster({ rootNodes: [{ url: `redis://127.0.0.1:${single.port}` }] });
    await cluster.connect();
    try {
      expect(await cluster.set('{tag}x', '1')).toBe('OK');
      expect(await cluster.mGet(['{tag}x', '{tag}y'])).toEqual(['1', null]);
      expect(await cluster.incr('counter')).toBe(1);
    } finally {
      cluster.destroy();
    }
  });

  it('redis-cli -c', async () => {
    expect(await cli(single.port, 'set', 'cli-key', 'v')).toBe('OK');
    expect(await cli(single.port, 'get', 'cli-key')).toBe('v');
    expect(await cli(single.port, 'cluster', 'keyslot', 'cli-key')).toBe(await cli(real.port, 'cluster', 'keyslot', 'cli-key'));
  });

  it('errors over a raw socket as redis-server 7.0.15 in cluster mode: CROSSSLOT, MULTI + CROSSSLOT → EXECABORT, CLUSTER arity, unknown subcommand', async () => {
    const commands = [
      'FLUSHALL',
      'MSET a 1 b 2',
      'MGET a b',
      'DEL a b',
      'MULTI',
      'MSET a 1 b 2',
      'SET a 1',
      'EXEC',
      'MULTI',
      'SET a 1',
      'SET b 2',
      'EXEC',
      'CLUSTER KEYSLOT',
      'CLUSTER nosuch',
      'SELECT 1',
      'MOVE a 1',
      'SWAPDB 0 1',
      'CLUSTER COUNTKEYSINSLOT 15495',
      'SET a 1',
      'CLUSTER COUNTKEYSINSLOT 15495',
      'CLUSTER GETKEYSINSLOT 15495 10',
      'CONFIG GET cluster-enabled',
      'INFO cluster',
      'PING',
    ];
    const expected = await raw(real.port).send(...commands);
    expect(expected[1]).toBe("-CROSSSLOT Keys in request don't hash to the same slot\r\n");
    expect(expected[7]).toBe('-EXECABORT Transaction discarded because of previous errors.\r\n');
    expect(await raw(single.port).send(...commands)).toEqual(expected);
  });

  it('refuses REPLICAOF, SLAVEOF, COPY to another database, and WATCH/LMPOP/SORT … STORE across slots as redis-server does', async () => {
    const commands = [
      'REPLICAOF 127.0.0.1 1',
      'SLAVEOF NO ONE',
      'REPLICAOF no one',
      'REPLICAOF a',
      'SET {a}x 1',
      'COPY {a}x {a}x DB 1',
      'COPY {a}x {a}y DB 0',
      'COPY {a}x {a}z DB 16',
      'COPY {a}x {a}z DB x',
      'COPY {a}x {a}z DB 1 BAD',
      'COPY {a}x {a}z DB -1',
      'COPY {a}x b DB 1',
      'COPY {a}x {a}y REPLACE',
      'DEL {a}x {a}y',
      // WATCH declares its keys: one slot, or -CROSSSLOT.
      'WATCH {a}x b',
      'WATCH {a}x {a}y',
      'UNWATCH',
      'LMPOP 2 {a}x b LEFT',
      'LMPOP 2 {a}x {a}y LEFT',
      'SORT {a}x STORE b',
      'SORT {a}x STORE {a}y',
      'PING',
    ];
    const expected = await raw(real.port).send(...commands);
    expect(expected[0]).toBe('-ERR REPLICAOF not allowed in cluster mode.\r\n');
    expect(expected[5]).toBe('-ERR Copying to another database is not allowed in cluster mode\r\n');
    expect(expected[14]).toBe("-CROSSSLOT Keys in request don't hash to the same slot\r\n");
    expect(await raw(single.port).send(...commands)).toEqual(expected);
  });
});

describe('mini-redis off cluster mode', () => {
  let plain: Started;
  let real: RealRedis;
  beforeAll(async () => {
    [plain, real] = await Promise.all([startMiniRedis(), startRedis(false)]);
  }, 60_000);
  afterAll(async () => {
    await Promise.all([plain?.stop(), real?.stop()]);
  });

  it('CLUSTER and READONLY answer as a redis-server without cluster support; CONFIG and INFO say so', async () => {
    const commands = [
      'CLUSTER INFO',
      'CLUSTER SLOTS',
      'CLUSTER KEYSLOT',
      'CLUSTER x',
      'READONLY',
      'CONFIG GET cluster-enabled',
      'INFO cluster',
    ];
    const expected = await raw(real.port).send(...commands);
    expect(expected[0]).toBe('-ERR This instance has cluster support disabled\r\n');
    expect(await raw(plain.port).send(...commands)).toEqual(expected);
  });
});

describe('two mini-redis processes, each owning half of the slots', () => {
  let a: Started & { service: PortService };
  let b: Started & { service: PortService };
  beforeAll(async () => {
    const [portA, portB] = [await freePort(), await freePort()];
    const nodes = `${ID_A} 127.0.0.1:${portA} 0-8191; ${ID_B} 127.0.0.1:${portB} 8192-16383`;
    [a, b] = await Promise.all([
      startMiniRedis({ CLUSTER_ENABLED: 'yes', CLUSTER_NODE_ID: ID_A, CLUSTER_NODES: nodes, RESP_PORT: String(portA) }),
      startMiniRedis({ CLUSTER_ENABLED: 'yes', CLUSTER_NODE_ID: ID_B, CLUSTER_NODES: nodes, RESP_PORT: String(portB) }),
    ]);
  }, 60_000);
  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
  });

  it('each answers -MOVED for the keys of the other', async () => {
    // foo: slot 12182 (B); bar: 5061 (A).
    expect(await raw(a.port).send('SET foo 1', 'SET bar 1', 'CLUSTER MYID')).toEqual([
      `-MOVED 12182 127.0.0.1:${b.port}\r\n`,
      '+OK\r\n',
      `$40\r\n${ID_A}\r\n`,
    ]);
    expect(await raw(b.port).send('GET bar', 'SET foo 2', 'GET foo')).toEqual([
      `-MOVED 5061 127.0.0.1:${a.port}\r\n`,
      '+OK\r\n',
      '$1\r\n2\r\n',
    ]);
  });

  it('ioredis.Cluster reaches every key through either node', async () => {
    const cluster = ioredisCluster(a.port);
    const keys = Array.from({ length: 200 }, (_, i) => `key:${i}`);
    for (const key of keys) await cluster.set(key, key.toUpperCase());
    // (An ioredis.Cluster pipeline must stay on one node: the reads go as concurrent commands.)
    expect(await Promise.all(keys.map((key) => cluster.get(key)))).toEqual(keys.map((key) => key.toUpperCase()));
    // Both processes hold some of them.
    const [countA] = await raw(a.port).send('DBSIZE');
    const [countB] = await raw(b.port).send('DBSIZE');
    expect(Number(countA?.slice(1)) + Number(countB?.slice(1))).toBeGreaterThanOrEqual(200);
    expect(Number(countA?.slice(1))).toBeGreaterThan(50);
    expect(Number(countB?.slice(1))).toBeGreaterThan(50);
    const other = ioredisCluster(b.port);
    expect(await other.get('key:7')).toBe('KEY:7');
  });

  it('ioredis.Cluster follows -MOVED when a slot changes hands (setNodes at run time)', async () => {
    const cluster = ioredisCluster(a.port);
    expect(await cluster.set('foo', 'before')).toBe('OK'); // on B (slot 12182)
    // Slot 12182 moves to A on both processes (the data stays behind: this is the map, not a migration).
    const moved = `${ID_A} 127.0.0.1:${a.port} 0-8191 12182; ${ID_B} 127.0.0.1:${b.port} 8192-12181 12183-16383`;
    for (const node of [a, b]) adapterOf(node).cluster?.setNodes(nodesOf(moved));
    expect(await raw(b.port).send('GET foo')).toEqual([`-MOVED 12182 127.0.0.1:${a.port}\r\n`]);
    // ioredis still routes slot 12182 to B, gets -MOVED, follows it to A.
    expect(await cluster.get('foo')).toBeNull();
    expect(await cluster.set('foo', 'after')).toBe('OK');
    expect(await raw(a.port).send('GET foo')).toEqual(['$5\r\nafter\r\n']);
    const back = `${ID_A} 127.0.0.1:${a.port} 0-8191; ${ID_B} 127.0.0.1:${b.port} 8192-16383`;
    for (const node of [a, b]) adapterOf(node).cluster?.setNodes(nodesOf(back));
    await raw(a.port).send('DEL foo');
  });

  it('node-redis createCluster reaches keys on both nodes', async () => {
    const cluster = createCluster({ rootNodes: [{ url: `redis://127.0.0.1:${b.port}` }] });
    await cluster.connect();
    try {
      for (const key of ['n:1', 'n:2', 'n:3', 'n:4', 'n:5', 'n:6']) expect(await cluster.set(key, key)).toBe('OK');
      expect(await Promise.all(['n:1', 'n:2', 'n:3', 'n:4', 'n:5', 'n:6'].map((key) => cluster.get(key)))).toEqual([
        'n:1',
        'n:2',
        'n:3',
        'n:4',
        'n:5',
        'n:6',
      ]);
      expect(cluster.masters.map((node) => node.port).sort()).toEqual([a.port, b.port].sort());
    } finally {
      cluster.destroy();
    }
  });

  it('redis-cli --cluster check: both nodes agree, every slot covered', async () => {
    const { stdout } = await run('redis-cli', ['--cluster', 'check', `127.0.0.1:${a.port}`], { timeout: 10_000 });
    expect(stdout).toContain('[OK] All nodes agree about slots configuration.');
    expect(stdout).toContain('[OK] All 16384 slots covered.');
    expect(stdout).toContain(`M: ${ID_B} 127.0.0.1:${b.port}\n   slots:[8192-16383] (8192 slots) master`);
  });

  it('redis-cli -c follows MOVED', async () => {
    expect(await cli(a.port, 'set', 'foo', 'from-cli')).toBe('OK');
    expect(await raw(b.port).send('GET foo')).toEqual(['$8\r\nfrom-cli\r\n']);
    expect(await cli(b.port, 'get', 'foo')).toBe('from-cli');
    expect(await cli(b.port, 'get', 'bar')).toBe('1');
  });

  it('CLUSTER SLOTS and NODES describe both', async () => {
    const [slots] = await raw(b.port).send('CLUSTER SLOTS');
    expect(slots).toBe(
      `*2\r\n*3\r\n:0\r\n:8191\r\n*4\r\n$9\r\n127.0.0.1\r\n:${a.port}\r\n$40\r\n${ID_A}\r\n*0\r\n` +
        `*3\r\n:8192\r\n:16383\r\n*4\r\n$9\r\n127.0.0.1\r\n:${b.port}\r\n$40\r\n${ID_B}\r\n*0\r\n`,
    );
    const [nodes] = await raw(a.port).send('CLUSTER NODES');
    expect(nodes).toContain(`${ID_A} 127.0.0.1:${a.port}@${a.port + 10_000} myself,master - 0 0 0 connected 0-8191\n`);
    expect(nodes).toContain(`${ID_B} 127.0.0.1:${b.port}@${b.port + 10_000} master - 0 0 0 connected 8192-16383\n`);
  });
});

describe('three mini-redis processes (dist/main.js), the slots in thirds, data in their own DATA_DIR', () => {
  // Issue 12: cluster-aware clients spread their keys over three processes by themselves. One process
  // is killed with SIGKILL: the keys of its slots fail (no replicas), the others go on; started again
  // on the same port and DATA_DIR (AOF, appendfsync always), it has its keys back and the clients find it.
  const ids = ['c'.repeat(40), 'd'.repeat(40), 'e'.repeat(40)] as const;
  const slots = ['0-5460', '5461-10922', '10923-16383'] as const;
  let ports: number[] = [];
  let nodes = '';
  const dirs = tempDirs('portbind-mini-cluster-');
  const dataDirs: string[] = [];
  const processes: Spawned[] = [];
  const launch = (i: number): Promise<Spawned> =>
    spawnServer(process.execPath, [MAIN], {
      port: ports[i] as number,
      env: {
        RESP_PORT: String(ports[i]),
        PORT: '0',
        HOST: '127.0.0.1',
        SAVE: '',
        DATA_DIR: dataDirs[i] as string,
        APPENDONLY: 'yes',
        APPENDFSYNC: 'always',
        CLUSTER_ENABLED: 'yes',
        CLUSTER_NODE_ID: ids[i] as string,
        CLUSTER_NODES: nodes,
      },
    });
  beforeAll(async () => {
    ports = [await freePort(), await freePort(), await freePort()];
    nodes = ids.map((id, i) => `${id} 127.0.0.1:${ports[i]} ${slots[i]}`).join('; ');
    for (let i = 0; i < 3; i++) dataDirs.push(dirs());
    processes.push(...(await Promise.all([0, 1, 2].map(launch))));
  }, 60_000);
  afterAll(async () => {
    await Promise.all(processes.map((p) => p.stop('SIGKILL')));
  });

  it('ioredis.Cluster and node-redis createCluster spread keys over the three and read them back through any', async () => {
    const cluster = ioredisCluster(ports[1] as number);
    const keys = Array.from({ length: 300 }, (_, i) => `k:${i}`);
    for (const key of keys) expect(await cluster.set(key, `v${key}`)).toBe('OK');
    const sizes = await Promise.all(ports.map(async (port) => Number((await raw(port).send('DBSIZE'))[0]?.slice(1))));
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(300);
    for (const size of sizes) expect(size).toBeGreaterThan(60);
    const client = createCluster({ rootNodes: [{ url: `redis://127.0.0.1:${ports[2]}` }] });
    await client.connect();
    try {
      expect(await Promise.all(keys.map((key) => client.get(key)))).toEqual(keys.map((key) => `v${key}`));
    } finally {
      await client.disconnect();
    }
    const { stdout } = await run('redis-cli', ['--cluster', 'check', `127.0.0.1:${ports[0]}`], { timeout: 10_000 });
    expect(stdout).toContain('[OK] All nodes agree about slots configuration.');
    expect(stdout).toContain('[OK] All 16384 slots covered.');
  });

  it('one killed with SIGKILL: its slots fail, the others serve; started again, its keys are back and the client finds them', async () => {
    const cluster = ioredisCluster(ports[0] as number);
    // k:0 … in every third: find a key of each process's slots.
    const keyOf = async (port: number): Promise<string> => {
      for (let i = 0; i < 300; i++) {
        const [reply] = await raw(port).send(`GET k:${i}`);
        if (reply?.startsWith('$')) return `k:${i}`;
      }
      throw new Error(`no key on ${port}`);
    };
    const [onA, onB, onC] = [await keyOf(ports[0] as number), await keyOf(ports[1] as number), await keyOf(ports[2] as number)];
    const victim = processes[1] as Spawned;
    await victim.stop('SIGKILL');
    await expect(cluster.get(onB)).rejects.toThrow();
    expect(await cluster.get(onA)).toBe(`v${onA}`);
    expect(await cluster.get(onC)).toBe(`v${onC}`);
    processes[1] = await launch(1);
    await until(async () => (await cluster.get(onB).catch(() => null)) === `v${onB}`, 'the restarted node serving its keys again');
    expect(Number((await raw(ports[1] as number).send('DBSIZE'))[0]?.slice(1))).toBeGreaterThan(60);
  });
});
