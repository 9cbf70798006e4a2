import { type ReplyValue, simple } from '@portbind/resp';

/**
 * A container command's HELP reply as Redis's addReplyHelp builds it: status lines, a header
 * naming the command, the subcommands' lines, then HELP itself.
 */
export function helpReply(command: string, lines: readonly string[]): ReplyValue[] {
  return [
    simple(`${command} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:`),
    ...lines.map((line) => simple(line)),
    simple('HELP'),
    simple('    Prints this help.'),
  ];
}
