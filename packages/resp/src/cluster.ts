// Cluster mode: the service describes itself as a Redis Cluster (CLUSTER SLOTS/SHARDS/NODES/INFO…),
// so that ioredis.Cluster, node-redis createCluster and redis-cli -c work against it, and commands
// whose keys live elsewhere get Redis's redirections (-MOVED, -CROSSSLOT, -CLUSTERDOWN). The slot
// map is static (given by the application, replaceable at run time with setNodes): there is no
// cluster bus. By default this node owns all 16,384 slots (Dragonfly's emulated cluster mode).
import { randomBytes } from 'node:crypto';
import { ConfigError } from '@portbind/core';
import { integerArg } from './args.js';
import type { RespClient } from './client.js';
import type { Command } from './parser.js';
import {
  type CommandFlag,
  type CommandHandler,
  type CommandOptions,
  type CommandSpec,
  commandKeys,
  type SubcommandOptions,
} from './registry.js';
import { OK, RespError } from './reply.js';

/** Number of hash slots (Redis's CLUSTER_SLOTS). */
export const CLUSTER_SLOTS = 16_384;

/** A slot, or an inclusive range of slots: `5`, `[0, 8191]`. */
export type SlotRange = number | readonly [number, number];

/** A node of the cluster, as the application describes it. */
export interface ClusterNode {
  /** Redis's node id: 40 lowercase hex characters. */
  id: string;
  /** The address clients reach it at (Redis's announced IP or endpoint). Required for every node but this one. */
  host?: string;
  /** Its plaintext port. Required for every node but this one. */
  port?: number;
  /** Its TLS port: shown to TLS clients instead of `port` (CLUSTER SLOTS/NODES, MOVED), and as `tls-port` in SHARDS. */
  tlsPort?: number;
  /** Redis's `cluster-announce-hostname`: the `hostname` field of CLUSTER SHARDS and NODES. */
  hostname?: string;
  /** Its cluster bus port, shown in CLUSTER NODES only (`ip:port@busPort`). Default port + 10000. */
  busPort?: number;
  /** The slots it serves (a master's). */
  slots?: readonly SlotRange[];
  /** The id of its master when it is a replica (serves reads to READONLY clients; owns no slots). */
  replicaOf?: string;
  /** Its config epoch (CLUSTER NODES, CLUSTER INFO). Default 0. */
  epoch?: number;
}

/** `respAdapter({ cluster: { … } })`: turns cluster mode on. */
export interface ClusterOptions {
  /** This node's id (40 hex characters). Default: random at start, or the one node of `nodes` without `host`. */
  id?: string;
  /** Announced address (Redis's `cluster-announce-ip`). Default: the address the client connected to. */
  host?: string;
  /** Announced port (`cluster-announce-port`). Default: the port the client connected to. */
  port?: number;
  /** Announced TLS port (`cluster-announce-tls-port`). */
  tlsPort?: number;
  /** `cluster-announce-hostname`. */
  hostname?: string;
  /**
   * The slot map: every node with its slots. Default: this node alone, owning all 16,384 slots.
   * This node's entry (by `id`) may leave out `host`/`port` (the announced ones apply); when the
   * list has no entry for it, this node is a master with no slots (a fresh Redis node).
   */
  nodes?: readonly ClusterNode[];
  /** CLUSTER COUNTKEYSINSLOT: the keys this node holds in a slot (without it, the subcommand is refused). */
  countKeysInSlot?: (slot: number) => number;
  /** CLUSTER GETKEYSINSLOT: up to `count` key names this node holds in a slot. */
  getKeysInSlot?: (slot: number, count: number) => Iterable<string | Buffer>;
}

/** Hash-slot routing of keys: what CLUSTER SLOTS describes and MOVED enforces. */
export interface ClusterState {
  /** This node's id. */
  readonly myId: string;
  /** The nodes of the slot map, this node included. */
  readonly nodes: readonly ClusterNode[];
  /** Replace the slot map (validated as the option is; throws ConfigError and keeps the old one). */
  setNodes(nodes: readonly ClusterNode[]): void;
  /** The node serving a slot (its master), or undefined when no node does. */
  ownerOf(slot: number): ClusterNode | undefined;
  /** Whether every slot is served (CLUSTER INFO's `cluster_state:ok`). */
  readonly covered: boolean;
}

// ---- key hash slots --------------------------------------------------------------------------

/** CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0), as Redis's crc16.c. */
const CRC16_TABLE = (() => {
  const table = new Uint16Array(256);
  for (let byte = 0; byte < 256; byte++) {
    let crc = byte << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1;
    table[byte] = crc & 0xffff;
  }
  return table;
})();

export function crc16(data: Uint8Array, start = 0, end = data.length): number {
  let crc = 0;
  for (let i = start; i < end; i++) crc = ((crc << 8) & 0xff00) ^ (CRC16_TABLE[((crc >> 8) ^ (data[i] as number)) & 0xff] as number);
  return crc;
}

/**
 * The hash slot of a key (Redis's keyHashSlot): CRC16 of the key modulo 16,384 — or, when the key
 * holds a `{…}` with at least one byte between the first `{` and the next `}`, of those bytes only.
 */
export function keySlot(key: string | Uint8Array): number {
  const bytes = typeof key === 'string' ? Buffer.from(key) : key;
  const length = bytes.length;
  // A loop, not indexOf: keys are short, and a native call costs more than scanning them.
  for (let open = 0; open < length; open++) {
    if (bytes[open] !== 0x7b) continue;
    for (let close = open + 1; close < length; close++) {
      if (bytes[close] !== 0x7d) continue;
      if (close > open + 1) return crc16(bytes, open + 1, close) & 0x3fff;
      break;
    }
    break;
  }
  return crc16(bytes, 0, length) & 0x3fff;
}

// ---- the slot map ----------------------------------------------------------------------------

const NODE_ID = /^[0-9a-f]{40}$/;
/** Sharded pub/sub: its channels hash as keys (cluster.c, getNodeByQuery's is_pubsubshard). */
const SHARD_PUBSUB = new Set(['ssubscribe', 'sunsubscribe', 'spublish']);
const ASKING = 1;
const READONLY = 2;

/** What the slot check needs of the adapter: the queued commands' specs (EXEC), WATCH (EXEC refused). */
export interface ClusterHost<Context> {
  lookup(name: string): CommandSpec<Context> | undefined;
  unwatch(client: RespClient<Context>): void;
}

/** What registering the cluster commands needs. */
export interface ClusterCommandHost<Context> {
  command(name: string, options: CommandOptions, handler: CommandHandler<Context>): unknown;
  lookup(name: string): CommandSpec<Context> | undefined;
}

/** A key-declaring command as `check` reads it. */
type KeyedSpec<Context> = CommandSpec<Context>;

/** A node as the replies need it. */
interface Member {
  readonly node: ClusterNode;
  readonly myself: boolean;
  /** Its master (replicas only). */
  readonly master: Member | undefined;
  /** Its slot ranges, sorted, merged (masters only). */
  readonly ranges: ReadonlyArray<readonly [number, number]>;
}

/** @internal The cluster mode of one adapter. */
export class Cluster<Context = Record<string, unknown>> implements ClusterState {
  readonly myId: string;
  readonly #options: ClusterOptions;
  readonly #host: ClusterHost<Context>;
  /** Per client: ASKING / READONLY bits. */
  readonly #flags = new WeakMap<RespClient<Context>, number>();
  #members: Member[] = [];
  /** Slot → index into #members of its master, -1 when unserved. */
  #owners = new Int32Array(CLUSTER_SLOTS);
  #assigned = 0;
  #myself!: Member;
  /** This node serves every slot (the default): a command with one key needs no hashing. */
  #ownsAll = false;

  constructor(options: ClusterOptions, host: ClusterHost<Context>) {
    this.#options = options;
    this.#host = host;
    const implicit = options.id === undefined ? options.nodes?.filter((node) => node.host === undefined) : undefined;
    this.myId = options.id ?? (implicit?.length === 1 ? (implicit[0] as ClusterNode).id : randomBytes(20).toString('hex'));
    if (!NODE_ID.test(this.myId)) throw new ConfigError('cluster.id', this.myId, 'a node id is 40 lowercase hex characters');
    this.setNodes(options.nodes ?? [{ id: this.myId, slots: [[0, CLUSTER_SLOTS - 1]] }]);
  }

  get nodes(): readonly ClusterNode[] {
    return this.#members.map((member) => member.node);
  }

  get covered(): boolean {
    return this.#assigned === CLUSTER_SLOTS;
  }

  ownerOf(slot: number): ClusterNode | undefined {
    const index = this.#owners[slot];
    return index === undefined || index < 0 ? undefined : this.#members[index]?.node;
  }

  setNodes(nodes: readonly ClusterNode[]): void {
    const byId = new Map<string, ClusterNode>();
    for (const node of nodes) {
      if (!NODE_ID.test(node.id)) throw new ConfigError('cluster.nodes', node.id, 'a node id is 40 lowercase hex characters');
      if (byId.has(node.id)) throw new ConfigError('cluster.nodes', node.id, 'node ids must be unique');
      if (node.id !== this.myId && (node.host === undefined || node.port === undefined))
        throw new ConfigError('cluster.nodes', node.id, 'every node but this one needs host and port');
      for (const port of [node.port, node.tlsPort, node.busPort]) {
        if (port !== undefined && (!Number.isInteger(port) || port < 1 || port > 65_535))
          throw new ConfigError('cluster.nodes', port, `node ${node.id}: a port is an integer from 1 to 65535`);
      }
      byId.set(node.id, node);
    }
    if (!byId.has(this.myId)) byId.set(this.myId, { id: this.myId });
    const owners = new Int32Array(CLUSTER_SLOTS).fill(-1);
    const masters = new Map<string, Member>();
    const members: Member[] = [];
    let assigned = 0;
    for (const node of byId.values()) {
      if (node.replicaOf !== undefined) {
        if (node.slots !== undefined && node.slots.length > 0)
          throw new ConfigError('cluster.nodes', node.id, 'a replica serves no slots of its own');
        continue;
      }
      const index = members.length;
      const ranges: Array<[number, number]> = [];
      for (const range of node.slots ?? []) {
        const [start, end] = typeof range === 'number' ? [range, range] : range;
        if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end >= CLUSTER_SLOTS || start > end)
          throw new ConfigError('cluster.nodes', range, `node ${node.id}: slots are integers from 0 to 16383, start ≤ end`);
        for (let slot = start; slot <= end; slot++) {
          if (owners[slot] !== -1) throw new ConfigError('cluster.nodes', range, `slot ${slot} is given to two nodes`);
          owners[slot] = index;
        }
        assigned += end - start + 1;
        ranges.push([start, end]);
      }
      const member: Member = { node: this.#announced(node), myself: node.id === this.myId, master: undefined, ranges: merge(ranges) };
      members.push(member);
      masters.set(node.id, member);
    }
    for (const node of byId.values()) {
      if (node.replicaOf === undefined) continue;
      const master = masters.get(node.replicaOf);
      if (master === undefined) throw new ConfigError('cluster.nodes', node.replicaOf, `node ${node.id} replicates no known master`);
      members.push({ node: this.#announced(node), myself: node.id === this.myId, master, ranges: [] });
    }
    this.#members = members;
    this.#owners = owners;
    this.#assigned = assigned;
    this.#myself = members.find((member) => member.myself) as Member;
    this.#ownsAll =
      this.#myself.ranges.length === 1 && this.#myself.ranges[0]?.[0] === 0 && this.#myself.ranges[0]?.[1] === CLUSTER_SLOTS - 1;
  }

  /** This node's entry with the announced address filled in where the entry leaves it out. */
  #announced(node: ClusterNode): ClusterNode {
    if (node.id !== this.myId) return node;
    const { host, port, tlsPort, hostname } = this.#options;
    return { ...definedOf({ host, port, tlsPort, hostname }), ...definedOf(node), id: node.id };
  }

  // ---- dispatch ------------------------------------------------------------------------------

  /**
   * Before a command runs (or is queued by MULTI): undefined to go on, else the error to answer
   * (server.c processCommand with cluster.c getNodeByQuery). Commands that declare no keys are
   * never redirected; EXEC checks every queued command's keys together and, on an error, discards
   * the transaction (the caller's rejection of a queued command flags it, so EXEC answers EXECABORT).
   */
  check(client: RespClient<Context>, spec: KeyedSpec<Context>, argv: Command): string | undefined {
    const flags = this.#flags.get(client) ?? 0;
    // ASKING lasts one command (not counting those queued in MULTI).
    if (flags & ASKING && spec.name !== 'asking' && client.multi === undefined) this.#flags.set(client, flags & ~ASKING);
    const exec = spec.name === 'exec';
    if (!exec && spec.keys === undefined && spec.keysOf === undefined) return undefined;
    // The usual case: this node serves every slot and the command names at most one key.
    const keys = spec.keys;
    if (this.#ownsAll && !exec && spec.keysOf === undefined && keys !== undefined && keys[0] === keys[1]) return undefined;
    let first: Buffer | undefined;
    let slot = 0;
    let write = false;
    const queued = exec ? (client.multi ?? []) : undefined;
    for (let i = 0; i < (queued?.length ?? 1); i++) {
      let commandSpec: KeyedSpec<Context> | undefined = spec;
      let commandArgv = argv;
      if (queued !== undefined) {
        commandArgv = queued[i] as Command;
        commandSpec = this.#host.lookup((commandArgv[0] as Buffer).toString('latin1'));
        if (commandSpec === undefined) continue;
      }
      if (commandSpec.flags?.includes('write')) write = true;
      for (const key of keysOf(commandSpec, commandArgv)) {
        if (first === undefined) {
          first = key;
          slot = keySlot(key);
          if ((this.#owners[slot] as number) < 0) return this.#refuse(client, exec, 'CLUSTERDOWN Hash slot not served');
        } else if (!key.equals(first) && keySlot(key) !== slot) {
          return this.#refuse(client, exec, "CROSSSLOT Keys in request don't hash to the same slot");
        }
      }
    }
    if (first === undefined) return undefined;
    // Sharded pub/sub goes on while the cluster is down (cluster-allow-pubsubshard-when-down yes).
    const shard = SHARD_PUBSUB.has(spec.name);
    if (!this.covered && !shard) return this.#refuse(client, exec, 'CLUSTERDOWN The cluster is down');
    const owner = this.#members[this.#owners[slot] as number] as Member;
    if (owner.myself) return undefined;
    // A replica serves reads of its master's slots to READONLY clients, and sharded pub/sub to all.
    if ((flags & READONLY || shard) && !write && this.#myself.master === owner) return undefined;
    return this.#refuse(client, exec, `MOVED ${slot} ${endpoint(owner, client)}:${portFor(owner, client)}`);
  }

  #refuse(client: RespClient<Context>, exec: boolean, error: string): string {
    if (exec) {
      // server.c: an EXEC refused by the cluster discards the transaction (discardTransaction).
      client.multi = undefined;
      client.multiDirty = false;
      this.#host.unwatch(client);
    }
    return error;
  }

  // ---- replies -------------------------------------------------------------------------------

  /** CLUSTER SLOTS: per contiguous run of slots of one master, [start, end, master, …replicas]. */
  slots(client: RespClient<Context>): void {
    const runs: Array<[number, number, Member]> = [];
    let start = 0;
    for (let slot = 1; slot <= CLUSTER_SLOTS; slot++) {
      if (slot < CLUSTER_SLOTS && this.#owners[slot] === this.#owners[start]) continue;
      const index = this.#owners[start] as number;
      if (index >= 0) runs.push([start, slot - 1, this.#members[index] as Member]);
      start = slot;
    }
    const reply = client.reply;
    reply.array(runs.length);
    for (const [first, last, master] of runs) {
      const serving = [master, ...this.#replicasOf(master)];
      reply
        .array(2 + serving.length)
        .integer(first)
        .integer(last);
      for (const member of serving) {
        reply.array(4).bulk(endpoint(member, client)).integer(portFor(member, client)).bulk(member.node.id);
        const hostname = member.node.hostname;
        if (hostname === undefined) reply.map(0);
        else reply.map(1).bulk('hostname').bulk(hostname);
      }
    }
  }

  /** CLUSTER SHARDS: per master, its slots and its nodes. */
  shards(client: RespClient<Context>): void {
    const masters = this.#members.filter((member) => member.master === undefined);
    const reply = client.reply;
    reply.array(masters.length);
    for (const master of masters) {
      reply
        .map(2)
        .bulk('slots')
        .array(master.ranges.length * 2);
      for (const [first, last] of master.ranges) reply.integer(first).integer(last);
      const serving = [master, ...this.#replicasOf(master)];
      reply.bulk('nodes').array(serving.length);
      for (const member of serving) {
        const { tlsPort, port } = portsOf(member, client);
        const hostname = member.node.hostname;
        reply.map(6 + (port === undefined ? 0 : 1) + (tlsPort === undefined ? 0 : 1) + (hostname === undefined ? 0 : 1));
        reply.bulk('id').bulk(member.node.id);
        if (port !== undefined) reply.bulk('port').integer(port);
        if (tlsPort !== undefined) reply.bulk('tls-port').integer(tlsPort);
        const host = endpoint(member, client);
        reply.bulk('ip').bulk(host).bulk('endpoint').bulk(host);
        if (hostname !== undefined) reply.bulk('hostname').bulk(hostname);
        reply.bulk('role').bulk(member.master === undefined ? 'master' : 'replica');
        reply.bulk('replication-offset').integer(0).bulk('health').bulk('online');
      }
    }
  }

  /** CLUSTER NODES (and REPLICAS): one line per node, Redis's clusterGenNodeDescription. */
  nodeLines(client: RespClient<Context>, members: readonly Member[] = this.#members): string {
    let text = '';
    for (const member of members) {
      const node = member.node;
      const port = portFor(member, client);
      const hostname = node.hostname;
      const bus = node.busPort ?? (node.port ?? port) + 10_000;
      const flags = `${member.myself ? 'myself,' : ''}${member.master === undefined ? 'master' : 'slave'}`;
      const epoch = (member.master ?? member).node.epoch ?? 0;
      text += `${node.id} ${endpoint(member, client)}:${port}@${bus}${hostname === undefined ? '' : `,${hostname}`} ${flags}`;
      text += ` ${member.master?.node.id ?? '-'} 0 0 ${epoch} connected`;
      for (const [first, last] of member.ranges) text += first === last ? ` ${first}` : ` ${first}-${last}`;
      text += '\n';
    }
    return text;
  }

  /** CLUSTER INFO's text. */
  info(): string {
    const epochs = this.#members.map((member) => member.node.epoch ?? 0);
    const mine = (this.#myself.master ?? this.#myself).node.epoch ?? 0;
    const size = this.#members.filter((member) => member.ranges.length > 0).length;
    return (
      `cluster_state:${this.covered ? 'ok' : 'fail'}\r\n` +
      `cluster_slots_assigned:${this.#assigned}\r\ncluster_slots_ok:${this.#assigned}\r\n` +
      'cluster_slots_pfail:0\r\ncluster_slots_fail:0\r\n' +
      `cluster_known_nodes:${this.#members.length}\r\ncluster_size:${size}\r\n` +
      `cluster_current_epoch:${Math.max(0, ...epochs)}\r\ncluster_my_epoch:${mine}\r\n` +
      'cluster_stats_messages_sent:0\r\ncluster_stats_messages_received:0\r\n' +
      'total_cluster_links_buffer_limit_exceeded:0\r\n'
    );
  }

  #replicasOf(master: Member): Member[] {
    return this.#members.filter((member) => member.master === master);
  }

  #member(id: Buffer | undefined): Member {
    const name = id?.toString('latin1') ?? '';
    const member = this.#members.find((candidate) => candidate.node.id === name);
    if (member === undefined) throw new RespError(`ERR Unknown node ${name}`);
    return member;
  }

  // ---- commands ------------------------------------------------------------------------------

  /** @internal The handlers of CLUSTER's subcommands. */
  subcommand(client: RespClient<Context>, sub: string, argv: Command): ReturnType<CommandHandler<Context>> {
    switch (sub) {
      case 'INFO':
        client.reply.verbatim(this.info());
        return undefined;
      case 'MYID':
        return this.myId;
      case 'SLOTS':
        this.slots(client);
        return undefined;
      case 'SHARDS':
        this.shards(client);
        return undefined;
      case 'NODES':
        client.reply.verbatim(this.nodeLines(client));
        return undefined;
      case 'KEYSLOT':
        return keySlot(argv[2] as Buffer);
      case 'COUNTKEYSINSLOT': {
        const count = this.#options.countKeysInSlot;
        if (count === undefined) throw unsupported(sub);
        const slot = integerArg(argv[2]);
        if (slot < 0 || slot >= CLUSTER_SLOTS) throw new RespError('ERR Invalid slot');
        return count(slot);
      }
      case 'GETKEYSINSLOT': {
        const keys = this.#options.getKeysInSlot;
        if (keys === undefined) throw unsupported(sub);
        const slot = integerArg(argv[2]);
        const max = integerArg(argv[3]);
        if (slot < 0 || slot >= CLUSTER_SLOTS || max < 0) throw new RespError('ERR Invalid slot or number of keys');
        const names: Array<string | Buffer> = [];
        for (const key of keys(slot, max)) {
          if (names.length >= max) break;
          names.push(key);
        }
        return names;
      }
      case 'LINKS':
        return [];
      case 'REPLICAS':
      case 'SLAVES': {
        const master = this.#member(argv[2]);
        if (master.master !== undefined) throw new RespError('ERR The specified node is not a master');
        return this.#replicasOf(master).map((member) => this.nodeLines(client, [member]).slice(0, -1));
      }
      case 'COUNT-FAILURE-REPORTS':
        this.#member(argv[2]);
        return 0;
      case 'HELP':
        client.reply.array(CLUSTER_HELP.length);
        for (const line of CLUSTER_HELP) client.reply.simple(line);
        return undefined;
      default:
        throw unsupported(sub);
    }
  }

  /** READONLY / READWRITE / ASKING. */
  setFlag(client: RespClient<Context>, flag: 'readonly' | 'readwrite' | 'asking'): void {
    const flags = this.#flags.get(client) ?? 0;
    this.#flags.set(client, flag === 'asking' ? flags | ASKING : flag === 'readonly' ? flags | READONLY : flags & ~READONLY);
  }

  /** Whether a client sent READONLY (and no READWRITE since). */
  isReadonly(client: RespClient<Context>): boolean {
    return ((this.#flags.get(client) ?? 0) & READONLY) !== 0;
  }
}

function merge(ranges: Array<[number, number]>): Array<[number, number]> {
  ranges.sort((a, b) => a[0] - b[0]);
  const merged: Array<[number, number]> = [];
  for (const range of ranges) {
    const last = merged[merged.length - 1];
    if (last !== undefined && last[1] + 1 === range[0]) last[1] = range[1];
    else merged.push([range[0], range[1]]);
  }
  return merged;
}

/** The keys of a call; a `keysOf` that throws on a malformed call means no keys (Redis's getKeys returns 0). */
function keysOf<Context>(spec: KeyedSpec<Context>, argv: Command): readonly Buffer[] {
  try {
    return commandKeys(spec, argv);
  } catch {
    return [];
  }
}

/** A node's address as a client should use it: its host, or for this node by default where the client connected. */
function endpoint<Context>(member: Member, client: RespClient<Context>): string {
  if (member.node.host !== undefined) return member.node.host;
  const local = client.conn.socket.localAddress ?? '';
  return local.startsWith('::ffff:') ? local.slice(7) : local;
}

/** The port a client should use: the TLS one for a TLS client when the node has one. */
function portFor<Context>(member: Member, client: RespClient<Context>): number {
  const node = member.node;
  if (client.conn.secure && node.tlsPort !== undefined) return node.tlsPort;
  return node.port ?? client.conn.socket.localPort ?? 0;
}

/** The ports of a node for SHARDS: plaintext `port` and `tls-port`, either left out when unknown. */
function portsOf<Context>(member: Member, client: RespClient<Context>): { port?: number; tlsPort?: number } {
  const node = member.node;
  const local = client.conn.socket.localPort ?? 0;
  const secure = client.conn.secure;
  return {
    port: node.port ?? (secure ? undefined : local),
    tlsPort: node.tlsPort ?? (secure && node.port === undefined ? local : undefined),
  };
}

/** An object's defined properties only (so that spreading it keeps the defaults under them). */
function definedOf<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, field]) => field !== undefined)) as Partial<T>;
}

function unsupported(sub: string): RespError {
  return new RespError(`ERR CLUSTER ${sub} is not supported: the application sets this node's slot map`);
}

/** CLUSTER's subcommands as Redis 7.0.15 declares them (commands/cluster-*.json): arity, flags, tips. */
const CLUSTER_SUBCOMMANDS: Readonly<Record<string, SubcommandOptions>> = (() => {
  const nondeterministic = ['nondeterministic_output'];
  const read = (arity: number, tips?: readonly string[]): SubcommandOptions => ({ arity, flags: ['stale'], ...(tips && { tips }) });
  const admin = (arity: number, tips?: readonly string[]): SubcommandOptions => ({
    arity,
    flags: ['admin', 'stale', 'no_async_loading'],
    ...(tips && { tips }),
  });
  const inspect = (arity: number): SubcommandOptions => ({ arity, flags: ['admin', 'stale'], tips: nondeterministic });
  return {
    ADDSLOTS: admin(-3),
    ADDSLOTSRANGE: admin(-4),
    BUMPEPOCH: admin(2, nondeterministic),
    'COUNT-FAILURE-REPORTS': inspect(3),
    COUNTKEYSINSLOT: read(3),
    DELSLOTS: admin(-3),
    DELSLOTSRANGE: admin(-4),
    FAILOVER: admin(-2),
    FORGET: admin(3),
    GETKEYSINSLOT: read(4, nondeterministic),
    FLUSHSLOTS: admin(2),
    HELP: { arity: 2, flags: ['loading', 'stale'] },
    INFO: read(2, nondeterministic),
    KEYSLOT: read(3),
    LINKS: read(2, nondeterministic),
    MEET: admin(-4),
    MYID: read(2),
    NODES: read(2, nondeterministic),
    REPLICAS: inspect(3),
    REPLICATE: admin(3),
    RESET: { arity: -2, flags: ['admin', 'noscript', 'stale'] },
    SAVECONFIG: admin(2),
    'SET-CONFIG-EPOCH': admin(3),
    SETSLOT: admin(-4),
    SHARDS: read(2, nondeterministic),
    SLAVES: inspect(3),
    SLOTS: read(2, nondeterministic),
  };
})();

/** CLUSTER HELP: Redis 7.0.15's lines for the subcommands this mode answers. */
const CLUSTER_HELP = [
  'CLUSTER <subcommand> [<arg> [value] [opt] ...]. Subcommands are:',
  'COUNT-FAILURE-REPORTS <node-id>',
  '    Return number of failure reports for <node-id>.',
  'COUNTKEYSINSLOT <slot>',
  '    Return the number of keys in <slot>.',
  'GETKEYSINSLOT <slot> <count>',
  '    Return key names stored by current node in a slot.',
  'INFO',
  '    Return information about the cluster.',
  'KEYSLOT <key>',
  '    Return the hash slot for <key>.',
  'MYID',
  '    Return the node id.',
  'NODES',
  '    Return cluster configuration seen by node. Output format:',
  '    <id> <ip:port> <flags> <master> <pings> <pongs> <epoch> <link> <slot> ...',
  'REPLICAS <node-id>',
  '    Return <node-id> replicas.',
  'SLOTS',
  '    Return information about slots range mappings. Each range is made of:',
  '    start, end, master and replicas IP addresses, ports and ids',
  'SHARDS',
  '    Return information about slot range mappings and the nodes associated with them.',
  'LINKS',
  '    Return information about all network links between this node and its peers.',
  '    Output format is an array where each array element is a map containing attributes of a link',
  'HELP',
  '    Prints this help.',
];

const DISABLED = 'ERR This instance has cluster support disabled';

/**
 * Register CLUSTER, READONLY, READWRITE and ASKING: with cluster mode off they answer as a
 * redis-server without cluster support; on, from the slot map. In cluster mode SELECT of any
 * database but 0 is refused, as Redis's.
 */
export function registerClusterCommands<Context>(host: ClusterCommandHost<Context>, cluster: Cluster<Context> | undefined): void {
  const subcommands = Object.fromEntries(Object.entries(CLUSTER_SUBCOMMANDS).map(([name, options]) => [name.toLowerCase(), options]));
  host.command(
    'cluster',
    { arity: -2, subcommands, summary: 'A container for Redis Cluster commands.', group: 'cluster' },
    (client, argv) => {
      const sub = (argv[1] as Buffer).toString('latin1').toUpperCase();
      const arity = CLUSTER_SUBCOMMANDS[sub]?.arity;
      if (arity === undefined) throw new RespError(`ERR unknown subcommand '${(argv[1] as Buffer).toString('latin1')}'. Try CLUSTER HELP.`);
      if (arity >= 0 ? argv.length !== arity : argv.length < -arity)
        throw new RespError(`ERR wrong number of arguments for 'cluster|${sub.toLowerCase()}' command`);
      if (cluster === undefined) throw new RespError(DISABLED);
      return cluster.subcommand(client, sub, argv);
    },
  );
  for (const name of ['readonly', 'readwrite', 'asking'] as const) {
    // Redis 7.0.15: READONLY and READWRITE loading stale fast, ASKING fast; all three @connection.
    const flags: CommandFlag[] = name === 'asking' ? ['fast'] : ['loading', 'stale', 'fast'];
    const options: CommandOptions = { arity: 1, flags, aclCategories: ['connection'], group: 'cluster', summary: SUMMARIES[name] };
    host.command(name, options, (client) => {
      if (cluster === undefined) throw new RespError(DISABLED);
      cluster.setFlag(client, name);
      return OK;
    });
  }
  const select = host.lookup('select');
  if (cluster !== undefined && select !== undefined) {
    const { name: _name, handler, ...options } = select;
    host.command('select', options, (client, argv) => {
      // db.c selectCommand: the integer is read first, then cluster mode allows db 0 only.
      let db: number | undefined;
      try {
        db = integerArg(argv[1]);
      } catch {
        db = undefined;
      }
      if (db !== undefined && db !== 0) throw new RespError('ERR SELECT is not allowed in cluster mode');
      return handler(client, argv);
    });
  }
}

const SUMMARIES = {
  readonly: 'Enables read-only queries for a connection to a Redis Cluster replica node.',
  readwrite: 'Enables read-write queries for a connection to a Redis Cluster replica node.',
  asking: 'Signals that a cluster client is following an -ASK redirect.',
} as const;
