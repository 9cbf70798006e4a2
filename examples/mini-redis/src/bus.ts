// Pub/sub across processes: with BUS_URL=redis://…, the mini-redis processes sharing that Redis are one
// Redis for PUBLISH/SUBSCRIBE/PSUBSCRIBE and PUBSUB (packages/resp's `bus` option, on @portbind/bus-redis).
// In cluster mode this is Redis Cluster's broadcast of PUBLISH over its cluster bus (cluster.c,
// clusterPropagatePublish): a subscriber on any node hears a PUBLISH on any node. Keys are not shared.
import { busFromEnv } from '@portbind/bus-redis';
import { type Bus, ConfigError, type Logger } from '@portbind/core';
import type { RespBusOptions } from '@portbind/resp';

/** The bus namespace when BUS_NAMESPACE is unset: mini-redis's processes meet there, apart from other RESP services. */
export const DEFAULT_BUS_NAMESPACE = 'mini-redis';

/**
 * BUS_URL set: connect to the bus's Redis (resolves once connected; rejects with PB_ERR_BUS_UNAVAILABLE
 * if it cannot be reached, PB_ERR_CONFIG for another scheme than redis:// or rediss://). Unset or empty:
 * undefined, and mini-redis's pub/sub stays in its process exactly as without a bus.
 */
export async function connectBus(env: Readonly<Record<string, string | undefined>>, logger: Logger): Promise<Bus | undefined> {
  const url = env['BUS_URL'];
  if (url === undefined || url === '') return undefined;
  busNamespace(env); // a bad BUS_NAMESPACE is refused before connecting
  return busFromEnv({ BUS_URL: url }, { logger });
}

/** The adapter's `bus` option: the bus under BUS_NAMESPACE (default `mini-redis`). */
export function respBusOptions(env: Readonly<Record<string, string | undefined>>, bus: Bus): RespBusOptions {
  return { bus, namespace: busNamespace(env) };
}

function busNamespace(env: Readonly<Record<string, string | undefined>>): string {
  const namespace = env['BUS_NAMESPACE'] || DEFAULT_BUS_NAMESPACE;
  // The namespace prefixes channel names and SCAN patterns on the bus: no glob characters.
  if (/[*?[\]\\\s]/.test(namespace))
    throw new ConfigError('BUS_NAMESPACE', namespace, 'a name without spaces or glob characters (* ? [ ] \\)');
  return namespace;
}
