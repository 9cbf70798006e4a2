/**
 * Errors with a stable `code`, in the manner of Node's own (`ERR_…`) and Fastify's (`FST_ERR_…`).
 * Match on `code`, never on `message`: messages may improve, codes do not change.
 */
export class PortbindError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A configuration value (environment variable or option) that cannot be used. */
export class ConfigError extends PortbindError {
  /** The variable or option that holds the bad value, e.g. `PORT`. */
  readonly variable: string;
  readonly value: unknown;

  constructor(variable: string, value: unknown, why: string) {
    super('PB_ERR_CONFIG', `Invalid ${variable}=${showValue(value)}: ${why}`);
    this.variable = variable;
    this.value = value;
  }
}

/** A value as the user gave it: strings quoted, numbers as written (`NaN`, not JSON's `null`). */
function showValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean' || value === undefined) {
    return String(value);
  }
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/** `WORKERS` (or `run({ workers })`) asked for workers a binding cannot run in (its scope, a Unix socket). */
export class WorkersError extends PortbindError {
  constructor(message: string) {
    super('PB_ERR_WORKERS', `Cannot run workers: ${message}`);
  }
}

/** A binding could not listen. Nothing else from the same `start()` stays bound. */
export class BindError extends PortbindError {
  /** Name of the binding (by default the adapter's name), e.g. `http`. */
  readonly binding: string;
  /** Where it tried to listen: `host:port` or a Unix socket path. */
  readonly address: string;

  constructor(binding: string, address: string, cause: unknown) {
    const reason = describeCause(cause);
    super('PB_ERR_BIND', `Cannot bind ${binding} on ${address}: ${reason}`, { cause });
    this.binding = binding;
    this.address = address;
  }
}

/**
 * A Unix socket path points at something that is not a socket (a regular file, a directory…).
 * portbind never removes it: only a stale socket (one nobody answers on) is replaced.
 */
export class SocketPathError extends PortbindError {
  readonly binding: string;
  /** Where the path came from: the variable (`RESP_PORT`) or the option (`path`). */
  readonly variable: string;
  readonly path: string;

  constructor(binding: string, variable: string, path: string, what: string) {
    super(
      'PB_ERR_SOCKET_PATH',
      `Cannot bind ${binding} on Unix socket ${variable}=${JSON.stringify(path)}: ${what} is there, not a socket; ` +
        'portbind replaces only a stale socket file, so choose another path (or move that file away)',
    );
    this.binding = binding;
    this.variable = variable;
    this.path = path;
  }
}

/** A method was called in a lifecycle state that does not allow it (e.g. `start()` twice). */
export class StateError extends PortbindError {
  constructor(message: string) {
    super('PB_ERR_STATE', message);
  }
}

/** TLS material could not be loaded: a file is missing, is not PEM, or the key does not match the certificate. */
export class TlsConfigError extends PortbindError {
  /** The binding whose TLS material failed, when known. */
  readonly binding: string | undefined;
  /** The files (or inline options) at fault. */
  readonly files: readonly string[];

  constructor(message: string, cause?: unknown, details: { binding?: string; files?: readonly string[] } = {}) {
    super('PB_ERR_TLS', message, { cause });
    this.binding = details.binding;
    this.files = details.files ?? [];
  }
}

const hints: Record<string, string> = {
  EADDRINUSE: 'the address is already in use (another process, or another binding, listens there)',
  EACCES: 'permission denied (ports below 1024 need privileges; for a socket path, check the directory)',
  EADDRNOTAVAIL: 'the host address is not available on this machine',
  ENOTFOUND: 'the host name does not resolve',
  EAI_AGAIN: 'the host name could not be resolved (temporary DNS failure)',
};

function describeCause(cause: unknown): string {
  if (cause instanceof Error) {
    const code = (cause as NodeJS.ErrnoException).code;
    const hint = code ? hints[code] : undefined;
    return hint ? `${code}, ${hint}` : cause.message;
  }
  return String(cause);
}
