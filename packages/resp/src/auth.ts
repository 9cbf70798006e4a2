import type { Connection } from '@portbind/core';
import type { RespClient } from './client.js';

// Who may run commands: `requirepass`, ACL-style users or the application's own check, and
// Redis's protected mode for a server with none of them.

export interface AuthOptions<Context> {
  password?: string;
  users?: Readonly<Record<string, string>>;
  authenticate?: (user: string, password: string, client: RespClient<Context>) => boolean | Promise<boolean>;
  protectedMode?: boolean;
}

export const DENIED =
  "DENIED Redis is running in protected mode because protected mode is enabled and no password is set for the default user. In this mode connections are only accepted from the loopback interface. If you want to connect from external computers to Redis you may adopt one of the following solutions: 1) Just disable protected mode sending the command 'CONFIG SET protected-mode no' from the loopback interface by connecting to Redis from the same host the server is running, however MAKE SURE Redis is not publicly accessible from internet if you do so. Use CONFIG REWRITE to make this change permanent. 2) Alternatively you can just disable the protected mode by editing the Redis configuration file, and setting the protected mode option to 'no', and then restarting the server. 3) If you started the server manually just for testing, restart it with the '--protected-mode no' option. 4) Set up an authentication password for the default user. NOTE: You only need to do one of the above things in order for the server to start accepting connections from the outside.";

/** Redis 7.4 holds a client that has not authenticated to 1 MB of input. */
export const UNAUTHENTICATED_QUERY_LIMIT = 1024 * 1024;

export class AuthPolicy<Context> {
  readonly #options: AuthOptions<Context>;
  readonly #clients: ReadonlyMap<number, RespClient<Context>>;
  /** True when clients must authenticate (a password, users or a check is configured). */
  readonly configured: boolean;

  constructor(options: AuthOptions<Context>, clients: ReadonlyMap<number, RespClient<Context>>) {
    this.#options = options;
    this.#clients = clients;
    this.configured = options.password !== undefined || options.users !== undefined || options.authenticate !== undefined;
  }

  /** The client must AUTH (or HELLO AUTH) before anything but `noauth` commands. */
  required(client: RespClient<Context>): boolean {
    return this.configured && client.user === undefined;
  }

  /** Protected mode: refuse a non-loopback peer while nothing is configured. */
  refuses(conn: Connection): boolean {
    return this.#options.protectedMode !== false && !this.configured && !conn.isLoopback;
  }

  /**
   * Whether a user of that name exists (CLIENT KILL USER): `default`, one of `users`, or (with
   * your own `authenticate`) one a connected client authenticated as.
   */
  userExists(user: string): boolean {
    if (user === 'default' || this.#options.users?.[user] !== undefined) return true;
    for (const client of this.#clients.values()) if (client.user === user) return true;
    return false;
  }

  /** Check credentials; the default user has the configured `password`. */
  async check(user: string, password: string, client: RespClient<Context>): Promise<boolean> {
    const { authenticate, users } = this.#options;
    if (authenticate) return authenticate(user, password, client);
    if (user === 'default') return this.#options.password === undefined ? !this.configured : this.#options.password === password;
    return users?.[user] !== undefined && users[user] === password;
  }
}
