import type { Command } from '../parser.js';
import { RespError } from '../reply.js';

// Small helpers the built-in commands share.

export const text = (arg: Buffer | undefined): string => (arg === undefined ? '' : arg.toString());
export const upper = (arg: Buffer | undefined): string => (arg === undefined ? '' : arg.toString('latin1').toUpperCase());

/** Redis formats option values with %s: the text stops at a NUL byte. */
export function cstr(arg: Buffer | undefined): string {
  const value = text(arg);
  const nul = value.indexOf('\u0000');
  return nul === -1 ? value : value.slice(0, nul);
}

/** CLIENT SETNAME / HELLO SETNAME: printable ASCII, no spaces. */
export function checkName(name: string): void {
  for (let i = 0; i < name.length; i++) {
    const code = name.charCodeAt(i);
    if (code < 0x21 || code > 0x7e) throw new RespError('ERR Client names cannot contain spaces, newlines or special characters.');
  }
}

/** A known subcommand with more arguments than it takes (server.c, addReplySubcommandSyntaxError). */
export function subcommandSyntaxError(argv: Command): RespError {
  return new RespError(
    `ERR unknown subcommand or wrong number of arguments for '${cstr(argv[1]).slice(0, 128)}'. Try ${upper(argv[0])} HELP.`,
  );
}

/** True when `version` (`7.2.0`) is at least major.minor. */
export function versionAtLeast(version: string, major: number, minor: number): boolean {
  const [a = 0, b = 0] = version.split('.').map(Number);
  return a > major || (a === major && b >= minor);
}
