// The public surface: the factory, the types handlers and options are written against, and the
// helpers a handler needs (replies, errors, integer arguments, glob patterns). The request
// parser, the reply encoder's class and ProtocolError stay internal.
export type { CommandFlag, CommandHandler, CommandOptions, CommandSpec, InfoFields, RespAdapter, RespOptions } from './adapter.js';
export { respAdapter } from './adapter.js';
export { integerArg } from './builtins.js';
export type { RespClient } from './client.js';
export { globMatch } from './glob.js';
export type { KeyspaceEventClass } from './notify.js';
export type { Command } from './parser.js';
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
export type { Tracking, TrackingState } from './tracking.js';
