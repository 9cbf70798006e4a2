// Cluster mode (packages/resp's): CLUSTER_ENABLED=yes makes mini-redis describe itself as a Redis
// Cluster, so that ioredis.Cluster, node-redis createCluster and redis-cli -c use it. Alone it owns
// every slot; CLUSTER_NODES gives a static slot map of several mini-redis processes, each
// answering -MOVED for the keys of the others. CONFIG cluster-enabled and INFO's cluster section.
import { ConfigError } from '@portbind/core';
import { type ClusterNode, type ClusterOptions, keySlot, RespError, type SlotRange } from '@portbind/resp';
import type { MiniRedis } from './app.js';
import { fixed } from './config.js';
import type { Keyspace } from './store.js';

/**
 * The adapter's `cluster` option from the environment, undefined unless CLUSTER_ENABLED=yes:
 * CLUSTER_NODE_ID (40 hex; default random), CLUSTER_ANNOUNCE_IP / _PORT / _TLS_PORT / _HOSTNAME
 * (default: where the client connected), CLUSTER_NODES (`<id> <host>:<port> <slot or first-last>…`
 * entries separated by `;`; default: this node owns every slot).
 */
export function clusterOptions(env: Readonly<Record<string, string | undefined>>, keyspace: () => Keyspace): ClusterOptions | undefined {
  const enabled = env['CLUSTER_ENABLED'] ?? 'no';
  if (enabled !== 'yes' && enabled !== 'no') throw new ConfigError('CLUSTER_ENABLED', enabled, 'yes or no');
  if (enabled === 'no') return undefined;
  const options: ClusterOptions = {
    // Keys live in database 0 in cluster mode (SELECT of another is refused).
    countKeysInSlot: (slot) => keysInSlot(keyspace(), slot, Number.POSITIVE_INFINITY).length,
    getKeysInSlot: (slot, count) => keysInSlot(keyspace(), slot, count),
  };
  const id = env['CLUSTER_NODE_ID'];
  if (id) options.id = id;
  const host = env['CLUSTER_ANNOUNCE_IP'];
  if (host) options.host = host;
  const hostname = env['CLUSTER_ANNOUNCE_HOSTNAME'];
  if (hostname) options.hostname = hostname;
  const port = portOf(env, 'CLUSTER_ANNOUNCE_PORT');
  if (port !== undefined) options.port = port;
  const tlsPort = portOf(env, 'CLUSTER_ANNOUNCE_TLS_PORT');
  if (tlsPort !== undefined) options.tlsPort = tlsPort;
  const nodes = env['CLUSTER_NODES'];
  if (nodes) options.nodes = parseNodes(nodes);
  return options;
}

/**
 * `CONFIG GET cluster-enabled` (read-only) and, in cluster mode, INFO's `cluster_enabled:1` and
 * `redis_mode:cluster`, and MOVE/SWAPDB refused as Redis refuses them
 * (COPY … DB n and REPLICAOF/SLAVEOF refuse themselves: keys.ts, replication.ts).
 */
export function registerCluster(server: MiniRedis): void {
  const enabled = server.resp.cluster !== undefined;
  server.config.set(
    'cluster-enabled',
    fixed(() => (enabled ? 'yes' : 'no')),
  );
  if (!enabled) return;
  server.info.set('cluster', () => ({ cluster_enabled: 1 }));
  const serverSection = server.info.get('server');
  if (serverSection !== undefined) server.info.set('server', () => ({ ...serverSection(), redis_mode: 'cluster' }));
  // db.c: a cluster has database 0 only (SELECT is refused by packages/resp).
  for (const name of ['move', 'swapdb']) {
    const spec = server.resp.lookup(name);
    if (spec === undefined) continue;
    const { name: _name, handler: _handler, ...options } = spec;
    server.resp.command(name, options, () => {
      throw new RespError(`ERR ${name.toUpperCase()} is not allowed in cluster mode`);
    });
  }
}

/** Up to `count` live keys of database 0 in a slot (mini-redis keeps no per-slot index: a scan). */
function keysInSlot(keyspace: Keyspace, slot: number, count: number): string[] {
  const db = keyspace.db(0);
  const keys: string[] = [];
  for (const key of db.values.keys()) {
    if (keys.length >= count) break;
    // Keys are stored one character per byte (store.ts).
    if (db.exists(key) && keySlot(Buffer.from(key, 'latin1')) === slot) keys.push(key);
  }
  return keys;
}

function portOf(env: Readonly<Record<string, string | undefined>>, name: string): number | undefined {
  const value = env[name];
  if (!value) return undefined;
  const port = Number(value);
  if (!/^\d+$/.test(value) || port < 1 || port > 65_535) throw new ConfigError(name, value, 'a port from 1 to 65535');
  return port;
}

/** `<id> <host>:<port> <slots>…; …` → nodes (the adapter checks ids and overlaps). */
function parseNodes(text: string): ClusterNode[] {
  return text
    .split(';')
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '')
    .map((entry) => {
      const [id = '', address = '', ...ranges] = entry.split(/\s+/);
      const match = /^(.+):(\d+)$/.exec(address);
      if (match === null) throw new ConfigError('CLUSTER_NODES', entry, 'each entry is `<id> <host>:<port> <slot or first-last>…`');
      const slots: SlotRange[] = ranges.map((range) => {
        const bounds = /^(\d+)(?:-(\d+))?$/.exec(range);
        if (bounds === null) throw new ConfigError('CLUSTER_NODES', range, 'a slot is `n` or `first-last`');
        return bounds[2] === undefined ? Number(bounds[1]) : [Number(bounds[1]), Number(bounds[2])];
      });
      return { id, host: (match[1] as string).replace(/^\[(.*)\]$/, '$1'), port: Number(match[2]), slots };
    });
}
