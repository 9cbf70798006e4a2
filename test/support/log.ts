import type { Logger } from '@portbind/core';

/** One line a {@link capturingLogger} kept. */
export interface LogLine {
  level: 'debug' | 'info' | 'warn' | 'error';
  /** The line's fields, with those of the child loggers it came through (`binding`, …). */
  fields: Record<string, unknown>;
  message: string | undefined;
}

/**
 * A logger that keeps every line, for tests that assert on levels and content (no error-level line
 * for peer input, a warning logged once, never a password). Pass an array to collect into, or read
 * `.lines`.
 */
export function capturingLogger(lines: LogLine[] = []): Logger & { lines: LogLine[] } {
  const make = (bindings: Record<string, unknown>): Logger => {
    const at =
      (level: LogLine['level']) =>
      (fields: object | string, message?: string): void => {
        if (typeof fields === 'string') lines.push({ level, fields: { ...bindings }, message: fields });
        else lines.push({ level, fields: { ...bindings, ...(fields as Record<string, unknown>) }, message });
      };
    return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: (more) => make({ ...bindings, ...more }) };
  };
  return Object.assign(make({}), { lines });
}
