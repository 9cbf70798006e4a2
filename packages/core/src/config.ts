import { isIP } from 'node:net';
import { ConfigError } from './errors.js';

/** Where a binding listens, as the user asks for it. Every field is optional. */
export interface ListenOptions {
  /** Port number (0 for an ephemeral port). Wins over the environment. */
  port?: number | string;
  /** Host or IP address. Wins over the environment. Default: all interfaces, as Node does. */
  host?: string;
  /** Unix domain socket path. Wins over `port` and the environment. */
  path?: string;
  /** Environment variable to read the port from. Default: the adapter's (`PORT`, `RESP_PORT`, …). */
  portEnv?: string;
  /** Environment variable to read the host from. Default: `HOST`. */
  hostEnv?: string;
}

/** A resolved, validated listen address. */
export type ListenSpec =
  | { kind: 'tcp'; port: number; host: string | undefined; source: string }
  | { kind: 'unix'; path: string; source: string };

export interface ListenDefaults {
  portEnv: string;
  defaultPort: number;
}

type Env = Record<string, string | undefined>;

/**
 * Resolve where to listen, twelve-factor style: explicit options, then the environment
 * (`PORT`-like variable and `HOST`), then the adapter's default port.
 *
 * A value that is set but unusable (`PORT=abc`, `PORT=70000`, `PORT=-1`, `PORT=` empty) throws a
 * {@link ConfigError} naming the variable and the value; it never silently falls back.
 * A port variable may also hold a Unix socket path (`/run/app.sock` or `unix:/run/app.sock`).
 * Options `path` and `port` together are an error: a binding listens on one address.
 */
export function resolveListen(options: ListenOptions, defaults: ListenDefaults, env: Env = process.env): ListenSpec {
  const portEnv = options.portEnv ?? defaults.portEnv;
  const hostEnv = options.hostEnv ?? 'HOST';

  if (options.path !== undefined) {
    if (options.port !== undefined) {
      throw new ConfigError(
        'path',
        options.path,
        `give a Unix socket path or a port, not both (port ${describeValue(options.port)} was given too)`,
      );
    }
    return { kind: 'unix', path: checkPath('path', options.path), source: 'option path' };
  }

  const host = resolveHost(options.host, hostEnv, env);

  if (options.port !== undefined) {
    return { kind: 'tcp', port: parsePort('port', options.port), host, source: 'option port' };
  }

  const fromEnv = env[portEnv];
  if (fromEnv !== undefined) {
    if (fromEnv.trim() === '') {
      // Set but empty is a mistake (a template that did not fill it in), not "use the default".
      throw new ConfigError(portEnv, fromEnv, 'a port must be an integer from 0 to 65535; unset the variable for the default');
    }
    const unixPath = socketPathOf(fromEnv);
    if (unixPath !== undefined) {
      return { kind: 'unix', path: checkPath(portEnv, unixPath), source: `env ${portEnv}` };
    }
    return { kind: 'tcp', port: parsePort(portEnv, fromEnv), host, source: `env ${portEnv}` };
  }

  return { kind: 'tcp', port: defaults.defaultPort, host, source: 'default' };
}

/** Parse a TCP port: an integer 0–65535 written in decimal digits only. */
export function parsePort(variable: string, value: number | string): number {
  const text = typeof value === 'number' ? String(value) : value.trim();
  if (!/^\d+$/.test(text)) {
    throw new ConfigError(variable, value, 'a port must be an integer from 0 to 65535');
  }
  const port = Number(text);
  if (port > 65535) {
    throw new ConfigError(variable, value, 'a port must be an integer from 0 to 65535');
  }
  return port;
}

// RFC 1123 host names: dot-separated labels of letters, digits and inner hyphens.
const hostnamePattern = /^(?=.{1,253}$)([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*\.?$/;

function resolveHost(explicit: string | undefined, hostEnv: string, env: Env): string | undefined {
  if (explicit !== undefined) return checkHost('host', explicit);
  const fromEnv = env[hostEnv];
  if (fromEnv === undefined) return undefined;
  // Set but empty is a templating slip, not a request for every interface: a loopback-only
  // service must not turn public silently.
  if (fromEnv.trim() === '') {
    throw new ConfigError(
      hostEnv,
      fromEnv,
      'set but empty; unset it to listen on all interfaces, or give an address (127.0.0.1, ::, a host name)',
    );
  }
  return checkHost(hostEnv, fromEnv);
}

function checkHost(variable: string, value: string): string {
  const host = value.trim();
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (isIP(bare) !== 0 || hostnamePattern.test(bare)) return bare;
  throw new ConfigError(variable, value, 'expected an IP address or a host name');
}

function socketPathOf(value: string): string | undefined {
  if (value.startsWith('unix:')) return value.slice('unix:'.length);
  if (value.startsWith('/') || value.startsWith('./')) return value;
  return undefined;
}

function describeValue(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}

function checkPath(variable: string, path: string): string {
  // sockaddr_un.sun_path is 108 bytes on Linux, including the terminating NUL.
  if (path === '' || Buffer.byteLength(path) > 107) {
    throw new ConfigError(variable, path, 'a Unix socket path must be 1 to 107 bytes long');
  }
  return path;
}
