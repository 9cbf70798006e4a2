export {
  type CommandFlag,
  type CommandHandler,
  type CommandOptions,
  type CommandSpec,
  RespAdapter,
  type RespOptions,
  respAdapter,
} from './adapter.js';
export { integerArg } from './builtins.js';
export { RespClient } from './client.js';
export { ProtocolError } from './errors.js';
export { globMatch } from './glob.js';
export { type Command, type ParserLimits, parseInteger, parserDefaults, RequestParser, splitArgs } from './parser.js';
export { formatDouble, OK, type ReplyValue, ReplyWriter, RespError, SimpleString, simple } from './reply.js';
