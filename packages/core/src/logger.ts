import { pino } from 'pino';

/** A log method in pino's shape: an object of fields and a message, or a message alone. */
export interface LogFn {
  (fields: object, message?: string): void;
  (message: string): void;
}

/**
 * The logger portbind writes to: pino's interface, so a pino logger (or anything shaped like one)
 * can be injected. Logs are one JSON object per line.
 */
export interface Logger {
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
  child(bindings: Record<string, unknown>): Logger;
}

/**
 * The default logger: pino, one JSON object per line on stdout. Its level comes from `LOG_LEVEL`
 * and is `silent` under a test runner (`NODE_ENV=test` or vitest), `info` otherwise.
 */
export function createLogger(env: Record<string, string | undefined> = process.env): Logger {
  const underTest = env.NODE_ENV === 'test' || env.VITEST !== undefined;
  const level = env.LOG_LEVEL ?? (underTest ? 'silent' : 'info');
  return pino({ level, base: { pid: process.pid } });
}

/** A logger that drops everything. */
export const silentLogger: Logger = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
  child: () => silentLogger,
};
