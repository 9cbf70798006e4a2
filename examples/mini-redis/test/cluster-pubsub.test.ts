import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { createCluster } from 'redis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { eventually, type RestartableRedis, startRestartableRedis } from '../../../packages/bus-redis/test/redis.js';
import { ask, freePort, MAIN, runMiniRedisToExit, type Spawned, spawnServer, tempDirs } from './support.js';

// Issue 12: three mini-redis processes (dist/main.js) in cluster mode, the slots in thirds, sharing one
// real redis-server as their bus (BUS_URL). As in Redis Cluster, whose cluster bus broadcasts every
// PUBLISH to every node (cluster.c, clusterPropagatePublish), a PUBLISH on any node reaches the
// SUBSCRIBE/PSUBSCRIBE clients of every node — ioredis.Cluster subscribes on one node of its choice and
// publishes through another. Sharded pub/sub stays with the slot's node (-MOVED elsewhere). The bus's
// Redis killed and restarted empty in the middle: no node crashes, the loss is logged, delivery resumes.

const run = promisify(execFile);
const ids = ['1'.repeat(40), '2'.repeat(40), '3'.repeat(40)] as const;
const slotRanges = [
  [0, 5460],
  [5461, 10922],
  [10923, 16383],
] as const;

let redis: RestartableRedis;
let ports: number[] = [];
let nodes = '';
const dirs = tempDirs('portbind-mini-cluster-pubsub-');
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
      CLUSTER_ENABLED: 'yes',
      CLUSTER_NODE_ID: ids[i] as string,
      CLUSTER_NODES: nodes,
      BUS_URL: redis.url,
      LOG_LEVEL: 'info', // the logs are part of what is tested (the loss of messages is logged)
    },
  });

beforeAll(async () => {
  // No persistence, as a bus for pub/sub alone runs: restarted, it has lost every subscription and presence entry.
  redis = await startRestartableRedis({ persistence: false });
  ports = [await freePort(), await freePort(), await freePort()];
  nodes = ids.map((id, i) => `${id} 127.0.0.1:${ports[i]} ${slotRanges[i]?.join('-')}`).join('; ');
  for (let i = 0; i < 3; i++) dataDirs.push(dirs());
  processes.push(...(await Promise.all([0, 1, 2].map(launch))));
}, 60_000);
afterAll(async () => {
  await Promise.all(processes.map((p) => p.stop('SIGKILL')));
  await redis?.stop();
});

const clients: Array<Redis | Cluster> = [];
const children: ChildProcess[] = [];
const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const client of clients.splice(0)) client.disconnect();
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await Promise.all(cleanups.splice(0).map((cleanup) => cleanup().catch(() => undefined)));
});

const port = (i: number): number => ports[i] as number;

/** A plain ioredis client on node `i`. */
function node(i: number, options: RedisOptions = {}): Redis {
  const client = new Redis({ port: port(i), host: '127.0.0.1', maxRetriesPerRequest: 1, ...options });
  client.on('error', () => {});
  clients.push(client);
  return client;
}

function ioredisCluster(i: number): Cluster {
  const cluster = new Cluster([{ host: '127.0.0.1', port: port(i) }], { redisOptions: { maxRetriesPerRequest: 1 } });
  cluster.on('error', () => {});
  clients.push(cluster);
  return cluster;
}

/** Every node counts `count` subscribers of `channel` (PUBSUB NUMSUB, or SHARDNUMSUB): the subscription was announced. */
async function countedEverywhere(channel: string, count: number, sub: 'NUMSUB' | 'SHARDNUMSUB' = 'NUMSUB'): Promise<void> {
  await eventually(`${sub} ${channel} = ${count} on every node`, async () => {
    for (let i = 0; i < 3; i++) {
      const [reply] = await ask(port(i), [['PUBSUB', sub, channel]]);
      if (reply !== `*2⏎$${channel.length}⏎${channel}⏎:${count}⏎`) return false;
    }
    return true;
  });
}

/** The node whose slots hold `channel`. */
async function ownerOf(channel: string): Promise<number> {
  const [reply] = await ask(port(0), [['CLUSTER', 'KEYSLOT', channel]]);
  const slot = Number(reply?.slice(1, -1));
  return slotRanges.findIndex(([first, last]) => slot >= first && slot <= last);
}

const lines = (output: string, text: string): string[] => output.split('\n').filter((line) => line.includes(text));

describe('three mini-redis processes in cluster mode on one bus (BUS_URL)', () => {
  it('an ioredis.Cluster subscriber hears a PUBLISH sent through each node; PUBLISH and PUBSUB count for the whole cluster on every node', async () => {
    const subscriber = ioredisCluster(0);
    const received: string[] = [];
    subscriber.on('message', (channel: string, message: string) => received.push(`${channel} ${message}`));
    subscriber.on('pmessage', (pattern: string, channel: string, message: string) => received.push(`${pattern} ${channel} ${message}`));
    expect(await subscriber.subscribe('news')).toBe(1);
    expect(await subscriber.psubscribe('new*')).toBe(2);
    await countedEverywhere('news', 1);
    for (let i = 0; i < 3; i++) {
      expect(
        await ask(port(i), [
          ['PUBSUB', 'CHANNELS'],
          ['PUBSUB', 'NUMPAT'],
        ]),
      ).toEqual(['*1⏎$4⏎news⏎', ':1⏎']);
      // One channel subscriber and one pattern subscriber, wherever ioredis put them.
      expect(await node(i).publish('news', `via node ${i}`)).toBe(2);
    }
    const publisher = ioredisCluster(2);
    await publisher.publish('news', 'via ioredis.Cluster');
    const expected = ['via node 0', 'via node 1', 'via node 2', 'via ioredis.Cluster'].flatMap((text) => [
      `news ${text}`,
      `new* news ${text}`,
    ]);
    await eventually('every message, by channel and pattern', () => expected.every((line) => received.includes(line)));
    // Once each: the publishing node delivers to its own clients, the bus to the others'.
    expect(received.sort()).toEqual(expected.sort());
  });

  it('redis-cli SUBSCRIBE on node 1 gets redis-cli -p <node 3> PUBLISH', async () => {
    const child = spawn('redis-cli', ['-p', String(port(0)), 'SUBSCRIBE', 'cli-news'], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(child);
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    await eventually('redis-cli subscribed', () => output.includes('subscribe\ncli-news\n1\n'));
    await countedEverywhere('cli-news', 1);
    const { stdout } = await run('redis-cli', ['-p', String(port(2)), 'PUBLISH', 'cli-news', 'hello from node 3'], { timeout: 10_000 });
    expect(stdout.trim()).toBe('1');
    await eventually('redis-cli printed the message', () => output.includes('message\ncli-news\nhello from node 3\n'));
  });

  it("node-redis createCluster: sSubscribe and sPublish meet on the shard channel's node (SSUBSCRIBE elsewhere is -MOVED); subscribe and publish across nodes", async () => {
    const channel = 'orders:{eu}';
    const owner = await ownerOf(channel);
    const [slotReply] = await ask(port(0), [['CLUSTER', 'KEYSLOT', channel]]);
    const slot = slotReply?.slice(1, -1);
    const elsewhere = (owner + 1) % 3;
    // As Redis Cluster (cluster.c, getNodeByQuery: sharded pub/sub hashes its channel as a key).
    expect(await ask(port(elsewhere), [['SSUBSCRIBE', channel]])).toEqual([`-MOVED ${slot} 127.0.0.1:${port(owner)}⏎`]);

    const subscriber = createCluster({ rootNodes: [{ url: `redis://127.0.0.1:${port(elsewhere)}` }] });
    const publisher = createCluster({ rootNodes: [{ url: `redis://127.0.0.1:${port((owner + 2) % 3)}` }] });
    cleanups.push(
      () => subscriber.close(),
      () => publisher.close(),
    );
    await Promise.all([subscriber.connect(), publisher.connect()]);
    const received: string[] = [];
    await subscriber.sSubscribe(channel, (message, from) => received.push(`${from} ${message}`));
    await subscriber.subscribe('alerts', (message, from) => received.push(`${from} ${message}`));
    await countedEverywhere(channel, 1, 'SHARDNUMSUB');
    await countedEverywhere('alerts', 1);
    expect(await publisher.sPublish(channel, 'order 7 shipped')).toBe(1);
    // node-redis publishes on a node of its choice, its subscriber listens on another of its choice.
    expect(await publisher.publish('alerts', 'disk full')).toBe(1);
    await eventually('both messages', () => received.length === 2);
    expect(received.sort()).toEqual(['alerts disk full', `${channel} order 7 shipped`]);
    // A plain PUBLISH on the shard channel's name reaches no shard subscriber, on any node.
    expect(await node(owner).publish(channel, 'not sharded')).toBe(0);
    const [shardChannels] = await ask(port(elsewhere), [['PUBSUB', 'SHARDCHANNELS']]);
    expect(shardChannels).toBe(`*1⏎$${channel.length}⏎${channel}⏎`);
  });

  it('the bus’s Redis killed and restarted empty: no node crashes, each node keeps serving its own subscribers, the loss is logged once, delivery across nodes resumes within seconds', async () => {
    const subscriber = node(0);
    const clusterSubscriber = ioredisCluster(1);
    const received: string[] = [];
    const clusterReceived: string[] = [];
    subscriber.on('message', (_channel: string, message: string) => received.push(message));
    clusterSubscriber.on('message', (_channel: string, message: string) => clusterReceived.push(message));
    await subscriber.subscribe('feed');
    await clusterSubscriber.subscribe('feed');
    await countedEverywhere('feed', 2);
    const publisher = node(2);
    expect(await publisher.publish('feed', 'before')).toBe(2);
    await eventually('before, to both', () => received.includes('before') && clusterReceived.includes('before'));

    await redis.kill();
    // Every node noticed. (A bus PUBLISH in the instant between the socket's end and ioredis's close event
    // waits in ioredis's offline queue and goes out after the reconnection: @portbind/bus-redis, to be fixed there.)
    await eventually('every node saw the bus go', () => processes.every((p) => lines(p.output(), 'connection to Redis lost').length > 0));
    // Each node still answers, and still delivers its own publishes to its own subscribers.
    expect(await publisher.publish('feed', 'while down')).toBeGreaterThanOrEqual(0);
    await node(0).publish('feed', 'local while down');
    await eventually('a publish on node 1 reaching its own subscriber', () => received.includes('local while down'));
    await eventually(
      'node 3 logged the PUBLISH that did not reach the others',
      () => lines(processes[2]?.output() ?? '', 'a PUBLISH did not reach the other processes').length > 0,
    );
    await redis.restart();
    await eventually(
      'a publish on node 3 reaching both subscribers again',
      async () => {
        await publisher.publish('feed', 'after');
        return received.includes('after') && clusterReceived.includes('after');
      },
      15_000,
    );
    // Lost, not delayed: what was published while the bus was down never arrives.
    expect(received).not.toContain('while down');
    // The loss, one line on the subscriber's node: when it began and ended.
    const loss = lines(processes[0]?.output() ?? '', 'did not reach this process');
    expect(loss).toHaveLength(1);
    expect(JSON.parse(loss[0] as string)).toMatchObject({
      level: expect.anything(),
      since: expect.any(String),
      until: expect.any(String),
    });
    for (const p of processes) expect(p.child.exitCode).toBeNull();
    expect(await subscriber.ping()).toBe('PONG');
    for (let i = 0; i < 3; i++) expect(await node(i).ping()).toBe('PONG');
  }, 60_000);

  it('a node stopped with SIGTERM leaves the bus: its subscribers stop counting at once, its bus connections close, it exits 0', async () => {
    // No reconnection once its node is gone: ioredis re-subscribes on reconnecting without catching the
    // SUBSCRIBE's rejection, so the node restarted below and the disconnect after the test made it an
    // unhandled rejection (seen in a CI run).
    const subscriber = node(1, { retryStrategy: () => null });
    await subscriber.subscribe('goodbye');
    await countedEverywhere('goodbye', 1);
    const busClients = async (): Promise<number> => {
      const [list] = await ask(redis.port, [['CLIENT', 'LIST']]);
      return (list?.match(/name=portbind-bus-/g) ?? []).length;
    };
    const before = await busClients();
    const leaving = processes[1] as Spawned;
    const started = Date.now();
    await leaving.stop('SIGTERM');
    expect(leaving.child.exitCode).toBe(0);
    await eventually('node 1 no longer counts node 2’s subscriber', async () => {
      const [reply] = await ask(port(0), [['PUBSUB', 'NUMSUB', 'goodbye']]);
      return reply === '*2⏎$7⏎goodbye⏎:0⏎';
    });
    // Well before the presence TTL (15 s) would have let it expire.
    expect(Date.now() - started).toBeLessThan(10_000);
    await eventually('its bus connections closed', async () => (await busClients()) < before);
    processes[1] = await launch(1);
  }, 60_000);
});

describe('BUS_URL at start', () => {
  it('another scheme, or a Redis that cannot be reached: one line on stderr with the code, exit 1', async () => {
    const wrong = await runMiniRedisToExit({ BUS_URL: 'http://127.0.0.1:6379' });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/^mini-redis: cannot start: PB_ERR_CONFIG: Invalid BUS_URL=/);
    const unreachable = await runMiniRedisToExit({ BUS_URL: `redis://127.0.0.1:${await freePort()}` });
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toMatch(/^mini-redis: cannot start: PB_ERR_BUS_UNAVAILABLE: /);
    const namespace = await runMiniRedisToExit({ BUS_URL: redis.url, BUS_NAMESPACE: 'a*b' });
    expect(namespace.code).toBe(1);
    expect(namespace.stderr).toMatch(/^mini-redis: cannot start: PB_ERR_CONFIG: Invalid BUS_NAMESPACE="a\*b"/);
  });
});
