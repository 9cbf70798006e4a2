import { OK, type ReplyValue, RespError, simple } from '@portbind/resp';
import type { MiniRedis } from '../app.js';
import { integer, memory, yesNo } from '../config.js';
import { Replication } from '../replication.js';

const group = 'server';
const text = (arg: Buffer | undefined): string => (arg as Buffer).toString('latin1');
const NOT_INTEGER = 'ERR value is not an integer or out of range';

/** Redis's string2ll: an optional minus, digits, no leading zero, within 64 bits. */
function parseLong(arg: Buffer | undefined): number | undefined {
  const value = text(arg);
  if (!/^(0|-?[1-9]\d{0,18})$/.test(value)) return undefined;
  const big = BigInt(value);
  if (big > 2n ** 63n - 1n || big < -(2n ** 63n)) return undefined;
  return Number(big);
}

/**
 * Replication, master side: SYNC, PSYNC (always a full resynchronization), REPLCONF, WAIT, ROLE,
 * INFO replication, and the parameters repl-ping-replica-period, client-output-buffer-limit
 * (the replica class) and lazyfree-lazy-expire.
 */
export function registerReplicationCommands(server: MiniRedis): Replication {
  const { resp, propagation, config, info } = server;
  const replication = new Replication(propagation, server);
  replication.onDrop = (replica, reason) => resp.logger.warn({ client: replica.client.id, reason }, 'replica dropped');

  const sync = (psync: boolean) => (client: Parameters<Parameters<typeof resp.command>[2]>[0], argv: Buffer[]) => {
    if (replication.replicaOf(client) !== undefined) return undefined; // already a replica: ignored, as Redis
    if (client.multi !== undefined) {
      client.multiDirty = true;
      throw new RespError('ERR Command not allowed inside a transaction');
    }
    const offset = psync ? parseLong(argv[2]) : undefined;
    if (psync && offset === undefined) throw new RespError(NOT_INTEGER);
    const port = listening.get(client.id) ?? 0;
    listening.delete(client.id);
    replication.attach(client, psync ? { replid: text(argv[1]), offset: offset as number } : undefined, port);
    return undefined;
  };
  /** REPLCONF listening-port before SYNC/PSYNC, by client id. */
  const listening = new Map<number, number>();

  resp.command('sync', { arity: 1, flags: ['admin', 'nomulti'], summary: 'An internal command used in replication.', group }, sync(false));
  resp.command('psync', { arity: -3, flags: ['admin', 'nomulti'], summary: 'An internal command used in replication.', group }, sync(true));

  resp.command(
    'replconf',
    { arity: -1, flags: ['admin'], summary: 'An internal command for configuring the replication stream.', group },
    (client, argv) => {
      if (argv.length % 2 === 0) throw new RespError('ERR syntax error');
      for (let i = 1; i < argv.length; i += 2) {
        const option = text(argv[i]).toLowerCase();
        const value = argv[i + 1];
        switch (option) {
          case 'listening-port': {
            const port = parseLong(value);
            if (port === undefined) throw new RespError(NOT_INTEGER);
            const replica = replication.replicaOf(client);
            if (replica !== undefined) replica.listeningPort = port;
            else listening.set(client.id, port);
            client.conn.socket.once('close', () => listening.delete(client.id));
            break;
          }
          case 'ip-address':
          case 'capa':
          case 'rdb-only':
          case 'rdb-filter-only':
            break;
          case 'ack': {
            // From a replica: no reply at all.
            const offset = parseLong(value);
            if (offset !== undefined && replication.replicaOf(client) !== undefined) replication.ack(client, offset);
            return undefined;
          }
          case 'getack':
            // Only a master asks this of a replica; mini-redis is never one.
            return undefined;
          default:
            throw new RespError(`ERR Unrecognized REPLCONF option: ${text(argv[i])}`);
        }
      }
      return OK;
    },
  );

  resp.command(
    'wait',
    {
      arity: 3,
      summary: 'Wait for the synchronous replication of all the write commands sent in the context of the current connection.',
      group,
    },
    (client, argv) => {
      const numreplicas = parseLong(argv[1]);
      if (numreplicas === undefined) throw new RespError(NOT_INTEGER);
      const timeout = parseLong(argv[2]);
      if (timeout === undefined) throw new RespError('ERR timeout is not an integer or out of range');
      if (timeout < 0) throw new RespError('ERR timeout is negative');
      const offset = replication.offset;
      const acked = replication.acked(offset);
      if (acked >= numreplicas || client.multi !== undefined || !server.blocked.mayBlock(client)) return acked;
      return replication.waitFor(offset, numreplicas, timeout, client);
    },
  );

  // ---- REPLICAOF ---------------------------------------------------------------------------------
  // mini-redis serves as a master only: REPLICAOF host port makes it a replica whose link to its
  // master stays down (it never connects) — writes get READONLY, and with replica-serve-stale-data
  // no, a transaction gets MASTERDOWN — until REPLICAOF NO ONE, as a Redis that cannot reach its master.
  const roles = {
    master: undefined as { host: string; port: number } | undefined,
    readOnly: true,
    serveStale: true,
    minReplicas: 0,
    maxLag: 10,
  };
  /** Redis's CMD_STALE commands: allowed on a replica whose link is down with replica-serve-stale-data no. */
  const STALE = new Set(
    'auth echo hello quit reset select psubscribe publish punsubscribe spublish ssubscribe subscribe sunsubscribe unsubscribe command debug failover info lastsave monitor replconf replicaof role shutdown slaveof time discard exec multi unwatch watch client config latency slowlog memory module'.split(
      ' ',
    ),
  );
  const goodReplicas = (): number => {
    let count = 0;
    for (const replica of replication.replicas) if ((Date.now() - replica.ackTime) / 1000 <= roles.maxLag) count++;
    return count;
  };
  const refusal = (write: boolean, names: string[]): string | undefined => {
    if (write && roles.minReplicas > 0 && goodReplicas() < roles.minReplicas) return 'NOREPLICAS Not enough good replicas to write.';
    if (write && roles.master !== undefined && roles.readOnly) return "READONLY You can't write against a read only replica.";
    if (roles.master !== undefined && !roles.serveStale && names.some((name) => !STALE.has(name))) {
      return "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.";
    }
    return undefined;
  };
  // Refused where Redis's processCommand refuses them (a check on every command after OOM, before
  // MULTI queues it): a write (READONLY, NOREPLICAS) or a non-stale command (MASTERDOWN) is refused at
  // once, inside MULTI too (EXEC then answers EXECABORT); EXEC is judged by what it queued.
  resp.addCheck((client, spec) => {
    const names = spec.name === 'exec' ? (client.multi ?? []).map((argv) => text(argv[0]).toLowerCase()) : [spec.name];
    const write =
      spec.name === 'exec' ? names.some((name) => resp.lookup(name)?.flags?.includes('write')) : spec.flags?.includes('write') === true;
    return refusal(write, names);
  });
  for (const name of ['replicaof', 'slaveof']) {
    resp.command(
      name,
      { arity: 3, flags: ['admin'], summary: 'Configures a server as replica of another, or promotes it to a master.', group },
      (_client, argv) => {
        // replication.c: a cluster configures its replicas itself (the text says REPLICAOF for SLAVEOF too).
        if (resp.cluster !== undefined) throw new RespError('ERR REPLICAOF not allowed in cluster mode.');
        if (text(argv[1]).toLowerCase() === 'no' && text(argv[2]).toLowerCase() === 'one') {
          if (roles.master !== undefined) resp.logger.info({}, 'MASTER MODE enabled (user request)');
          roles.master = undefined;
          return OK;
        }
        const port = parseLong(argv[2]);
        if (port === undefined || port < 0 || port > 65535) throw new RespError('ERR Invalid master port');
        const host = text(argv[1]);
        if (roles.master?.host.toLowerCase() === host.toLowerCase() && roles.master.port === port) {
          return simple('OK Already connected to specified master');
        }
        roles.master = { host, port };
        replication.close(); // a replica has no replicas of its own here: they resync elsewhere
        resp.logger.warn(
          { host, port },
          'REPLICAOF enabled: mini-redis does not connect to a master, its link stays down until REPLICAOF NO ONE',
        );
        return OK;
      },
    );
  }
  const where = () => (roles.master === undefined ? '' : `${roles.master.host} ${roles.master.port}`);
  config.set('replicaof', { get: where });
  config.set('slaveof', { get: where });

  resp.command('role', { arity: 1, flags: ['fast'], summary: 'Returns the replication role.', group }, () => {
    if (roles.master !== undefined) return ['slave', roles.master.host, roles.master.port, 'connect', -1];
    const replicas: ReplyValue[] = [...replication.replicas].map((replica) => [
      replica.client.conn.remoteAddress ?? '127.0.0.1',
      String(replica.listeningPort),
      String(replica.ackOffset),
    ]);
    return ['master', replication.offset, replicas];
  });

  info.set('replication', () => {
    if (roles.master !== undefined) {
      return {
        role: 'slave',
        master_host: roles.master.host,
        master_port: roles.master.port,
        master_link_status: 'down',
        master_last_io_seconds_ago: -1,
        master_sync_in_progress: 0,
        slave_read_repl_offset: 0,
        slave_repl_offset: 0,
        master_link_down_since_seconds: -1,
        slave_priority: 100,
        slave_read_only: roles.readOnly ? 1 : 0,
        replica_announced: 1,
        connected_slaves: 0,
        master_failover_state: 'no-failover',
        master_replid: replication.replid,
        master_replid2: '0000000000000000000000000000000000000000',
        master_repl_offset: replication.offset,
        second_repl_offset: -1,
        repl_backlog_active: 0,
        repl_backlog_size: 1048576,
        repl_backlog_first_byte_offset: 0,
        repl_backlog_histlen: 0,
      };
    }
    const fields: Record<string, string | number> = { role: 'master', connected_slaves: replication.replicas.size };
    let index = 0;
    for (const replica of replication.replicas) {
      const ip = (replica.client.conn.remoteAddress ?? '127.0.0.1').replace(/^::ffff:/, '');
      const lag = Math.floor((Date.now() - replica.ackTime) / 1000);
      fields[`slave${index++}`] = `ip=${ip},port=${replica.listeningPort},state=online,offset=${replica.ackOffset},lag=${lag}`;
    }
    Object.assign(fields, {
      master_failover_state: 'no-failover',
      master_replid: replication.replid,
      master_replid2: '0000000000000000000000000000000000000000',
      master_repl_offset: replication.offset,
      second_repl_offset: -1,
      repl_backlog_active: replication.backlog.active ? 1 : 0,
      repl_backlog_size: replication.backlogSize,
      repl_backlog_first_byte_offset: replication.backlog.firstByte,
      repl_backlog_histlen: replication.backlog.length,
    });
    return fields;
  });

  config.set(
    'repl-ping-replica-period',
    integer(
      1,
      2147483647,
      () => replication.pingPeriod,
      (value) => replication.setPingPeriod(value),
    ),
  );
  config.set('repl-ping-slave-period', config.get('repl-ping-replica-period') as NonNullable<ReturnType<typeof config.get>>);
  config.set(
    'lazyfree-lazy-expire',
    yesNo(
      () => propagation.lazyExpire,
      (value) => {
        propagation.lazyExpire = value;
      },
    ),
  );
  // client-output-buffer-limit: the replica class is this file's (the normal and pubsub classes
  // stay as packages/resp has them).
  const pubsub = resp.options.pubsubLimits;
  const outputLimit = {
    get: () =>
      `normal 0 0 0 slave ${replication.limit.hard} ${replication.limit.soft} ${replication.limit.seconds} ` +
      `pubsub ${pubsub?.hardBytes ?? 33554432} ${pubsub?.softBytes ?? 8388608} ${pubsub?.softSeconds ?? 60}`,
    set(value: string) {
      const words = value.trim().split(/\s+/);
      if (words.length % 4 !== 0) throw new Error('Wrong number of arguments in buffer limit configuration.');
      const limits: Array<{ hard: number; soft: number; seconds: number }> = [];
      for (let i = 0; i < words.length; i += 4) {
        const kind = (words[i] as string).toLowerCase();
        if (!['normal', 'slave', 'replica', 'pubsub'].includes(kind))
          throw new Error('Invalid client class specified in buffer limit configuration.');
        const sizes = words.slice(i + 1, i + 3).map((word) => {
          const match = /^(\d+)(b|k|kb|m|mb|g|gb)?$/i.exec(word);
          if (match === null) throw new Error('Error in hard, soft or soft_seconds setting in buffer limit configuration.');
          const units: Record<string, number> = { b: 1, k: 1000, kb: 1024, m: 1e6, mb: 1024 ** 2, g: 1e9, gb: 1024 ** 3 };
          return Number(match[1]) * (units[(match[2] ?? 'b').toLowerCase()] ?? 1);
        });
        const seconds = words[i + 3] as string;
        if (!/^\d+$/.test(seconds)) throw new Error('Error in hard, soft or soft_seconds setting in buffer limit configuration.');
        if (kind === 'slave' || kind === 'replica') limits.push({ hard: sizes[0] ?? 0, soft: sizes[1] ?? 0, seconds: Number(seconds) });
      }
      for (const limit of limits) Object.assign(replication.limit, limit);
    },
  };
  config.set('client-output-buffer-limit', outputLimit);
  config.set(
    'repl-backlog-size',
    memory(
      1,
      () => replication.backlogSize,
      (value) => {
        replication.backlogSize = Math.max(value, 16 * 1024); // Redis's CONFIG_REPL_BACKLOG_MIN_SIZE
      },
    ),
  );
  for (const [names, get, set] of [
    [['replica-read-only', 'slave-read-only'], () => roles.readOnly, (value: boolean) => (roles.readOnly = value)],
    [['replica-serve-stale-data', 'slave-serve-stale-data'], () => roles.serveStale, (value: boolean) => (roles.serveStale = value)],
  ] as const) {
    for (const name of names) config.set(name, yesNo(get, set));
  }
  const minReplicas = integer(
    0,
    2147483647,
    () => roles.minReplicas,
    (value) => {
      roles.minReplicas = value;
    },
  );
  const maxLag = integer(
    0,
    2147483647,
    () => roles.maxLag,
    (value) => {
      roles.maxLag = value;
    },
  );
  config.set('min-replicas-to-write', minReplicas);
  config.set('min-slaves-to-write', minReplicas);
  config.set('min-replicas-max-lag', maxLag);
  config.set('min-slaves-max-lag', maxLag);

  return replication;
}
