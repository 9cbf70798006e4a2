export { ProtocolError } from './errors.js';
export { type Command, type ParserLimits, parseInteger, parserDefaults, RequestParser, splitArgs } from './parser.js';
