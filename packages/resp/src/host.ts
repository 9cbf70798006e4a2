import type { AuthPolicy } from './auth.js';
import type { RespClient } from './client.js';
import type { CommandStats } from './dispatch.js';
import type { Monitors } from './monitor.js';
import type { Command } from './parser.js';
import type { ClientPause } from './pause.js';
import type { PubSub } from './pubsub.js';
import type { CommandHandler, CommandOptions, CommandSpec } from './registry.js';
import type { Tracking } from './tracking.js';
import type { Watches } from './watch.js';

// What the built-in commands (src/commands/*) see of the server: the parts below, nothing else.
// Each group of built-ins takes the Pick of this it needs, so a file's first lines say what it touches.

/** A section of INFO: `[field, value]` pairs, computed when INFO runs. */
export type InfoFields = ReadonlyArray<readonly [string, string | number]>;

/** INFO stats, counted where the adapter sees them. */
export interface ServerStats {
  /** Connections accepted (Redis's total_connections_received). */
  connectionsReceived: number;
  /** Connections refused at maxclients (rejected_connections). */
  rejectedConnections: number;
  /** Commands run, queued ones counted when EXEC runs them (total_commands_processed). */
  commandsProcessed: number;
  /** Bytes read from clients (total_net_input_bytes). */
  netInputBytes: number;
  /** Bytes written to clients (total_net_output_bytes). */
  netOutputBytes: number;
  /** Error replies counted (total_error_replies; see Dispatcher.countError). */
  errorReplies: number;
}

export interface BuiltinHost<Context> {
  /** Register (or replace) a command. */
  command(name: string, options: CommandOptions, handler: CommandHandler<Context>): unknown;
  lookup(name: string): CommandSpec<Context> | undefined;
  /** Every registered command. */
  readonly commands: Iterable<CommandSpec<Context>>;
  /** Run a command as dispatch does once its checks passed (EXEC's queued commands). */
  run(client: RespClient<Context>, spec: CommandSpec<Context>, argv: Command): void | Promise<void>;
  /** Connected clients by id. */
  readonly clients: ReadonlyMap<number, RespClient<Context>>;
  readonly databases: number;
  /** The Redis version reported (HELLO, INFO, CLIENT LIST's field set). */
  readonly serverVersion: string;
  /** Cluster mode on (HELLO's `mode` is then `cluster`). */
  readonly clusterEnabled: boolean;
  readonly maxClients: number;
  readonly auth: AuthPolicy<Context>;
  readonly pubsub: PubSub<Context>;
  readonly watches: Watches<Context>;
  readonly tracking: Tracking<Context>;
  /** MONITOR mode on and off. */
  readonly monitors: Pick<Monitors<Context>, 'start' | 'stop'>;
  readonly pause: ClientPause<Context>;
  readonly stats: Readonly<ServerStats>;
  readonly commandStats: ReadonlyMap<string, Readonly<CommandStats>>;
  /** INFO errorstats: error replies by code. */
  readonly errorStats: ReadonlyMap<string, number>;
  /** The application's INFO sections and fields. */
  readonly infoSections: ReadonlyMap<string, ReadonlyArray<() => InfoFields>>;
}
