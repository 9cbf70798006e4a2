import type { Socket } from 'node:net';
import { PortService } from '@portbind/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { portOf, rawConnect } from '../../../test/support/net.js';
import { INFO_NOT_DEFAULT, INFO_SECTIONS, respAdapter } from '../src/index.js';
import { type Server, startRedis } from './real-redis.js';

// INFO's sections in Redis 7.0's order, whatever order an application added them in (the one list,
// INFO_SECTIONS, that examples/mini-redis's own INFO sorts by too), compared with redis-server 7.0.15.

let real: Server;
let service: PortService;
let port: number;
const sockets: Socket[] = [];

beforeAll(async () => {
  real = await startRedis();
  const resp = respAdapter();
  // Added in the wrong order on purpose, with one section of the application's own.
  resp.infoSection('mine', () => [['answer', '42']]);
  resp.infoSection('keyspace', () => [['db0', 'keys=1,expires=0,avg_ttl=0']]);
  resp.infoSection('latencystats', () => [['latency_percentiles_usec_ping', 'p50=1.003,p99=1.003,p99.9=1.003']]);
  resp.infoSection('cluster', () => [['cluster_enabled', '0']]);
  resp.infoSection('modules', () => []);
  resp.infoSection('persistence', () => [['loading', '0']]);
  service = new PortService({ env: {} });
  const binding = service.bind(resp, { port: 0, host: '127.0.0.1' });
  await service.start();
  port = portOf(binding);
});

afterAll(async () => {
  for (const socket of sockets) socket.destroy();
  await service.stop();
  await real.stop();
});

/** The section headers of `INFO <args>` (`Server`, `CPU`…), in order: the whole bulk reply read first. */
async function headers(to: number, args: readonly string[]): Promise<string[]> {
  const socket = await rawConnect(to);
  sockets.push(socket);
  const command = ['INFO', ...args];
  const body = await new Promise<string>((resolve, reject) => {
    let data = Buffer.alloc(0);
    const timer = setTimeout(() => reject(new Error(`no whole INFO reply: ${JSON.stringify(data.toString('latin1'))}`)), 10_000);
    socket.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      const line = data.indexOf('\r\n');
      const length = Number(data.toString('latin1', 1, line));
      if (line === -1 || data.length < line + 2 + length + 2) return;
      clearTimeout(timer);
      resolve(data.toString('latin1', line + 2, line + 2 + length));
    });
    socket.write(`*${command.length}\r\n${command.map((arg) => `$${arg.length}\r\n${arg}\r\n`).join('')}`);
  });
  return [...body.matchAll(/^# (\w+)\r$/gm)].map((match) => match[1] as string);
}

describe('INFO sections', () => {
  it("are printed in Redis 7.0's order (INFO_SECTIONS), the application's own after; latencystats and commandstats not by default", async () => {
    expect(INFO_SECTIONS).toEqual([
      'server',
      'clients',
      'memory',
      'persistence',
      'stats',
      'replication',
      'cpu',
      'modules',
      'commandstats',
      'errorstats',
      'latencystats',
      'cluster',
      'keyspace',
    ]);
    expect(INFO_NOT_DEFAULT).toEqual(['commandstats', 'latencystats']);
    const ours = await headers(port, []);
    expect(ours).toEqual([
      'Server',
      'Clients',
      'Memory',
      'Persistence',
      'Stats',
      'Replication',
      'CPU',
      'Modules',
      'Errorstats',
      'Cluster',
      'Keyspace',
      'Mine',
    ]);
    expect(await headers(port, ['latencystats'])).toEqual(['Latencystats']);
    expect(await headers(port, ['keyspace', 'server', 'mine'])).toEqual(['Server', 'Keyspace', 'Mine']);
  });

  it.each([[[]], [['all']], [['default']], [['everything']], [['keyspace', 'latencystats', 'server', 'cpu']]])(
    'INFO %j: the sections both servers print, in the same order as redis-server 7.0.15',
    async (args) => {
      const [ours, theirs] = await Promise.all([headers(port, args), headers(real.port, args)]);
      const common = ours.filter((name) => theirs.includes(name));
      expect(common.length).toBeGreaterThan(args.length === 1 && ['all', 'everything'].includes(args[0] as string) ? 10 : 3);
      expect(common).toEqual(theirs.filter((name) => ours.includes(name)));
      // What redis-server prints and we do not: sections this adapter knows nothing of (none of these).
      expect(theirs.filter((name) => !ours.includes(name))).toEqual([]);
    },
  );
});
