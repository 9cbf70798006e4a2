// The public surface: the factory, the types handlers and options are written against, and the
// helpers a handler needs (replies, errors, integer and float arguments, glob patterns). The
// request parser, the reply encoder's class and ProtocolError stay internal.

export { globMatch } from '@portbind/core';
export type { RespAdapter, RespOptions } from './adapter.js';
export { respAdapter } from './adapter.js';
export { floatArg, int64Arg, integerArg, NOT_FLOAT, NOT_INTEGER, parseDouble, parseInt64, parseNumber } from './args.js';
export type { RespClient } from './client.js';
export { CLUSTER_SLOTS, type ClusterNode, type ClusterOptions, type ClusterState, keySlot, type SlotRange } from './cluster.js';
export { INFO_NOT_DEFAULT, INFO_SECTIONS } from './commands/info.js';
export type { PreRunCheck } from './dispatch.js';
export type { InfoFields } from './host.js';
export type { KeyspaceEventClass } from './notify.js';
export type { Command } from './parser.js';
export type { RespBusOptions } from './pubsub.js';
export type { CommandFlag, CommandHandler, CommandOptions, CommandSpec, SubcommandOptions } from './registry.js';
export { ACL_CATEGORIES, type AclCategory, type KeySpec, type KeySpecFlag } from './registry.js';
export {
  type DoubleFormat,
  formatDouble,
  OK,
  type ReplyValue,
  type ReplyWriter,
  RespError,
  type SimpleString,
  simple,
} from './reply.js';
export { NOSCRIPT_COMMANDS, type ScriptCallOptions, ScriptClient, type ScriptClientOptions, type ScriptReply } from './script-client.js';
export { SLOWLOG_MAX_ARG_BYTES, SLOWLOG_MAX_ARGS, SlowLog, type SlowLogEntry } from './slowlog.js';
export type { Tracking, TrackingState } from './tracking.js';
