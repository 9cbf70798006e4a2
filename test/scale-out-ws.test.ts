import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { type RestartableRedis, startRestartableRedis } from '../packages/bus-redis/test/redis.js';
import { freePort, Haproxy } from './support/haproxy.js';
import { sleep } from './support/net.js';

/**
 * WebSocket broadcast and channels across processes behind a real routing layer (issue 12): two
 * portbind processes (test/fixtures/scale-ws.mjs) share a real redis-server as their bus
 * (`BUS_URL`), behind HAProxy (HTTP mode, round-robin, health checks on /readyz). Clients connect
 * through HAProxy only, so they land on both processes; what one says reaches everyone. Then Redis
 * is killed and restarted (every peer is told of the gap, delivery resumes), and one process is
 * killed with SIGKILL (its clients reconnect through HAProxy to the other, which goes on).
 */

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const fixture = join(root, 'test', 'fixtures', 'scale-ws.mjs');

interface Peer {
  ws: WebSocket;
  pid: number;
  got: Array<Record<string, unknown>>;
}

let redis: RestartableRedis;
let haproxy: Haproxy;
let front: number;
const processes: Record<'app1' | 'app2', { child: ChildProcess; port: number }> = {} as never;
const peers: WebSocket[] = [];

function startApp(port: number): ChildProcess {
  const child = spawn(process.execPath, [fixture], {
    env: { ...process.env, PORT: String(port), BUS_URL: redis.url, LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  return child;
}

async function connectPeer(): Promise<Peer> {
  const ws = new WebSocket(`ws://127.0.0.1:${front}/chat`);
  peers.push(ws);
  const got: Array<Record<string, unknown>> = [];
  const hello = new Promise<number>((resolve, reject) => {
    ws.once('error', reject);
    ws.on('message', (data: Buffer) => {
      const message = JSON.parse(data.toString()) as Record<string, unknown>;
      if (typeof message.hello === 'number') resolve(message.hello);
      else got.push(message);
    });
  });
  return { ws, pid: await hello, got };
}

async function eventually(what: string, check: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

const said = (peer: Peer, text: string): boolean => peer.got.some((message) => message.say === text);

beforeAll(async () => {
  redis = await startRestartableRedis({ persistence: false });
  const ports = { app1: await freePort(), app2: await freePort() };
  front = await freePort();
  for (const name of ['app1', 'app2'] as const) processes[name] = { child: startApp(ports[name]), port: ports[name] };
  haproxy = await Haproxy.start({
    name: 'portbind-scale-ws',
    config: [
      'defaults',
      '  timeout connect 5s',
      '  timeout client 5m',
      '  timeout server 5m',
      '  timeout tunnel 5m',
      '  timeout check 5s',
      '  retries 3',
      '  option redispatch 1',
      'frontend web_in',
      '  mode http',
      `  bind 127.0.0.1:${front}`,
      '  default_backend web',
      'backend web',
      '  mode http',
      '  balance roundrobin',
      '  option httpchk GET /readyz',
      '  http-check expect status 200',
      '  default-server check inter 300 fall 2 rise 2',
      `  server app1 127.0.0.1:${ports.app1}`,
      `  server app2 127.0.0.1:${ports.app2}`,
    ],
  });
  await haproxy.waitFor('both processes UP', (states) => states['web/app1']?.status === 'UP' && states['web/app2']?.status === 'UP');
}, 60_000);

afterAll(async () => {
  for (const ws of peers) ws.terminate();
  for (const { child } of Object.values(processes)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await haproxy?.stop();
  await redis?.stop();
});

describe('WebSocket across two processes behind HAProxy, on a real Redis bus', () => {
  const everyone: Peer[] = [];

  it('clients land on both processes; a broadcast from either reaches every client once', async () => {
    for (let i = 0; i < 4; i++) everyone.push(await connectPeer());
    const pids = new Set(everyone.map((peer) => peer.pid));
    expect(pids).toEqual(new Set([processes.app1.child.pid, processes.app2.child.pid]));
    await sleep(300); // subscriptions confirmed by Redis
    const [first, second] = [
      everyone.find((p) => p.pid === processes.app1.child.pid),
      everyone.find((p) => p.pid === processes.app2.child.pid),
    ] as [Peer, Peer];
    first.ws.send(JSON.stringify({ say: 'hello from app1' }));
    second.ws.send(JSON.stringify({ say: 'hello from app2' }));
    for (const peer of everyone) await eventually('both broadcasts', () => said(peer, 'hello from app1') && said(peer, 'hello from app2'));
    await sleep(100);
    for (const peer of everyone) expect(peer.got.filter((message) => typeof message.say === 'string')).toHaveLength(2);
  });

  it("a channel's message reaches its members on both processes and nobody else", async () => {
    const members = [everyone[0], everyone[1]] as [Peer, Peer];
    expect(members[0].pid).not.toBe(members[1].pid);
    for (const member of members) {
      member.ws.send(JSON.stringify({ join: 'room' }));
      await eventually('joined', () => member.got.some((message) => message.joined === true));
    }
    await sleep(300);
    (everyone[3] as Peer).ws.send(JSON.stringify({ say: 'to the room', to: 'room' }));
    for (const member of members) await eventually('room message', () => said(member, 'to the room'));
    await sleep(200);
    expect(said(everyone[2] as Peer, 'to the room')).toBe(false);
    expect(said(everyone[3] as Peer, 'to the room')).toBe(false);
  });

  it('Redis killed and restarted: every client is told of the gap, and broadcasts across processes resume', async () => {
    await redis.kill();
    await sleep(500);
    await redis.restart();
    for (const peer of everyone) await eventually('gap notice', () => peer.got.some((message) => message.gap === 'pubsub'), 20_000);
    const sender = everyone[0] as Peer;
    let n = 0;
    // Resubscription takes a moment after the gap notice: say it again until everyone hears one.
    await eventually(
      'broadcast after the restart',
      () => {
        if (everyone.every((peer) => peer.got.some((m) => typeof m.say === 'string' && m.say.startsWith('after restart')))) return true;
        sender.ws.send(JSON.stringify({ say: `after restart ${n++}` }));
        return false;
      },
      20_000,
    );
  });

  it('a process killed with SIGKILL: its clients reconnect through HAProxy to the other, which goes on', async () => {
    const victim = processes.app2.child;
    const orphans = everyone.filter((peer) => peer.pid === victim.pid);
    const survivors = everyone.filter((peer) => peer.pid !== victim.pid);
    expect(orphans.length).toBeGreaterThan(0);
    const closed = orphans.map((peer) => once(peer.ws, 'close'));
    victim.kill('SIGKILL');
    await Promise.all(closed);
    await haproxy.waitFor('app2 DOWN', (states) => states['web/app2']?.status === 'DOWN');
    const back: Peer[] = [];
    for (const _ of orphans) back.push(await connectPeer());
    for (const peer of back) expect(peer.pid).toBe(processes.app1.child.pid);
    await sleep(200);
    back[0]?.ws.send(JSON.stringify({ say: 'back again' }));
    for (const peer of [...back, ...survivors]) await eventually('after failover', () => said(peer, 'back again'));
  });
});
