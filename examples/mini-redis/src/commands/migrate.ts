import { connect, type Socket } from 'node:net';
import { networkInterfaces } from 'node:os';
import type { Adapter } from '@portbind/core';
import { int64Arg, OK, RespError, simple } from '@portbind/resp';
import type { MiniRedis } from '../app.js';
import { frameCommand } from '../propagate.js';
import { dumpPayload } from '../rdb.js';
import { snapshotState } from '../snapshot.js';
import { keyOf } from '../store.js';

// MIGRATE host port key|"" destination-db timeout [COPY] [REPLACE] [AUTH password]
// [AUTH2 username password] [KEYS key …], as Redis 7.0.15's migrateCommand (cluster.c): each key's
// value goes to the target as `RESTORE key ttl <DUMP payload> [REPLACE]` (RESTORE-ASKING in
// cluster mode), after AUTH and SELECT as needed, and the source key is deleted once the target
// acknowledged it (unless COPY). MIGRATE replays to the AOF and replicas as DEL of the moved keys.
// Replies and errors as Redis's, including its one retry on a fresh connection when a cached one
// turned out dead.
//
// The connection to the target is mini-redis's own: a plain node:net socket, cached per host:port and
// closed after 10 s unused, as Redis's migrateGetSocket, and when the server stops. No client library:
// two replies of one line each (AUTH/SELECT/RESTORE answer +OK or -ERR…) are all MIGRATE reads, line
// by line as Redis's connSyncReadLine does. Redis blocks the whole server during a MIGRATE; here only
// the client that sent it waits (the handler returns a Promise), and MIGRATEs to the same target take
// turns on its connection. Also RESTORE-ASKING, which is RESTORE with the `asking` flag, so that two
// mini-redis instances migrate to each other in cluster mode too.

const group = 'generic';
const NOKEY = simple('NOKEY');
/** MIGRATE_SOCKET_CACHE_ITEMS and MIGRATE_SOCKET_CACHE_TTL of cluster.c. */
const CACHE_ITEMS = 64;
const CACHE_TTL_MS = 10_000;
/** Redis writes the command to the target in 64 KB chunks, each within the timeout. */
const CHUNK = 64 * 1024;
/** Redis reads a reply line into a 1024-byte buffer: an error text is cut there. */
const LINE_MAX = 1023;
/** A reply line longer than this (a target that is not a Redis) is a read error. */
const LINE_LIMIT = 64 * 1024;
/** setTimeout's largest delay. */
const MAX_TIMER = 2_147_483_647;

/** A failed read or write on the target's socket; `timedOut` as Redis's errno == ETIMEDOUT. */
class SocketFailure extends Error {
  constructor(readonly timedOut: boolean) {
    super(timedOut ? 'timeout' : 'socket error');
  }
}

/** A cached connection to a target (Redis's migrateCachedSocket). */
class TargetConnection {
  /** The database the target has selected on this connection, -1 unknown (last_dbid). */
  lastDb = -1n;
  lastUse = Date.now();
  inUse = false;
  closed = false;
  #buffer: Buffer = Buffer.alloc(0);
  #wake: (() => void) | undefined;

  /** The most unread reply bytes kept: LINE_LIMIT, plus LINE_LIMIT per reply line awaited. */
  allowance = LINE_LIMIT;
  /** A connect that failed: the first write fails with it. */
  #failure: SocketFailure | undefined;

  constructor(readonly socket: Socket | undefined) {
    if (socket === undefined) return;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
      // More than the replies awaited can be (a target that floods): the connection goes.
      if (this.#buffer.length > this.allowance) this.close();
      this.#wake?.();
    });
    socket.on('error', () => this.close());
    socket.on('close', () => this.close());
  }

  /**
   * Connect within `timeout` ms. undefined only when the host does not resolve: Redis 7.0's
   * connBlockingConnect fails only when the connect cannot start, and a refused or timed-out one
   * turns into a failed write (-IOERR … writing, after a retry unless it timed out), as here.
   */
  static open(host: string, port: number, timeout: number): Promise<TargetConnection | undefined> {
    return new Promise((resolve) => {
      const broken = (timedOut: boolean): TargetConnection => {
        const connection = new TargetConnection(undefined);
        connection.#failure = new SocketFailure(timedOut);
        connection.closed = true;
        return connection;
      };
      if (!Number.isInteger(port) || port <= 0 || port > 65_535) {
        resolve(broken(false));
        return;
      }
      const socket = connect({ host, port });
      socket.unref();
      const timer = setTimeout(() => done(false, true), timeout);
      const done = (ok: boolean, timedOut: boolean, unresolved = false): void => {
        clearTimeout(timer);
        socket.off('connect', onConnect);
        socket.off('error', onError);
        if (ok) {
          resolve(new TargetConnection(socket));
          return;
        }
        socket.on('error', () => {});
        socket.destroy();
        resolve(unresolved ? undefined : broken(timedOut));
      };
      const onConnect = (): void => done(true, false);
      const onError = (error: NodeJS.ErrnoException): void => done(false, false, error.syscall === 'getaddrinfo');
      socket.once('connect', onConnect);
      socket.once('error', onError);
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket?.destroy();
    this.#wake?.();
  }

  /** Write `data` in 64 KB chunks, each handed to the kernel within `timeout` ms. */
  async write(data: Buffer, timeout: number): Promise<void> {
    for (let pos = 0; pos < data.length; pos += CHUNK) {
      const chunk = data.subarray(pos, pos + CHUNK);
      await new Promise<void>((resolve, reject) => {
        if (this.closed || this.socket === undefined) {
          reject(this.#failure ?? new SocketFailure(false));
          return;
        }
        const socket = this.socket;
        const timer = setTimeout(() => reject(new SocketFailure(true)), timeout);
        socket.write(chunk, (error) => {
          clearTimeout(timer);
          if (error) reject(new SocketFailure(false));
          else resolve();
        });
      });
    }
  }

  /** One reply line without its CRLF (cut at 1023 bytes), within `timeout` ms. */
  async readLine(timeout: number): Promise<string> {
    const deadline = Date.now() + timeout;
    for (;;) {
      const end = this.#buffer.indexOf(10);
      if (end !== -1) {
        let line = this.#buffer.subarray(0, end);
        this.#buffer = this.#buffer.subarray(end + 1);
        if (line.at(-1) === 13) line = line.subarray(0, -1);
        return line.subarray(0, LINE_MAX).toString('latin1');
      }
      if (this.#buffer.length > LINE_LIMIT || this.closed) throw new SocketFailure(false);
      const left = deadline - Date.now();
      if (left <= 0) throw new SocketFailure(true);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = undefined;
    }
  }
}

/** Redis's atoi: the leading digits (after an optional sign) of the port argument, 0 if none. */
function atoi(text: string): number {
  const match = /^[ \t\n\v\f\r]*([+-]?\d+)/.exec(text);
  return match ? Number.parseInt(match[1] as string, 10) : 0;
}

const bulk = (arg: Buffer | string | bigint): Buffer => {
  const bytes = typeof arg === 'bigint' ? Buffer.from(String(arg)) : typeof arg === 'string' ? Buffer.from(arg, 'latin1') : arg;
  return Buffer.concat([Buffer.from(`$${bytes.length}\r\n`), bytes, Buffer.from('\r\n')]);
};

/** MIGRATE's keys (Redis's migrateGetKeys): the key argument, or those after KEYS when it is "". */
function migrateKeys(argv: readonly Buffer[]): readonly Buffer[] {
  if (argv.length > 6 && (argv[3] as Buffer).length === 0) {
    for (let i = 6; i < argv.length; i++) {
      if ((argv[i] as Buffer).toString('latin1').toLowerCase() === 'keys') return argv.slice(i + 1);
    }
  }
  return argv.slice(3, 4);
}

export function registerMigrateCommands(server: MiniRedis): void {
  const { resp, keyspace, propagation } = server;
  const state = snapshotState(server);

  // --- the connection cache (migrateGetSocket, migrateCloseSocket, migrateCloseTimedoutSockets) ---
  const cache = new Map<string, TargetConnection>();
  /** MIGRATEs to one target take turns: each waits for the one before it. */
  const turns = new Map<string, Promise<void>>();
  let sweeper: NodeJS.Timeout | undefined;
  const sweep = (): void => {
    const now = Date.now();
    for (const [name, connection] of cache) {
      if (connection.closed || (!connection.inUse && now - connection.lastUse > CACHE_TTL_MS)) {
        connection.close();
        cache.delete(name);
      }
    }
    if (cache.size === 0 && sweeper !== undefined) {
      clearInterval(sweeper);
      sweeper = undefined;
    }
  };
  const getSocket = async (name: string, host: string, port: number, timeout: number): Promise<TargetConnection | undefined> => {
    const cached = cache.get(name);
    if (cached !== undefined && !cached.closed) {
      cached.lastUse = Date.now();
      return cached;
    }
    cache.delete(name);
    if (cache.size >= CACHE_ITEMS) {
      // Too many: drop one that is not in use (Redis drops one at random).
      for (const [other, connection] of cache) {
        if (connection.inUse) continue;
        connection.close();
        cache.delete(other);
        break;
      }
    }
    const connection = await TargetConnection.open(host, port, timeout);
    if (connection === undefined) return undefined;
    cache.set(name, connection);
    sweeper ??= setInterval(sweep, 1000).unref();
    return connection;
  };
  /**
   * Whether a connection leads back to this mini-redis. Redis, blocked in MIGRATE, cannot answer
   * itself: the read times out (-IOERR … reading) and the keys stay. Here the same process would
   * answer, and a MIGRATE … REPLACE to itself would restore a key and then delete it.
   */
  const isSelf = (connection: TargetConnection): boolean => {
    const socket = connection.socket;
    if (socket === undefined || socket.remotePort === undefined) return false;
    const bound = server.binding.address;
    if (typeof bound === 'string' || bound.port !== socket.remotePort) return false;
    const remote = socket.remoteAddress?.replace(/^::ffff:/, '');
    if (remote === bound.address.replace(/^::ffff:/, '')) return true;
    if (bound.address !== '0.0.0.0' && bound.address !== '::') return false;
    return Object.values(networkInterfaces()).some((list) => list?.some((info) => info.address === remote));
  };
  // The server stops: its cached connections go too (after the last client's MIGRATE finished:
  // `stopped` runs once every client connection is closed), and so does the sweeper.
  const adapter: Adapter = resp;
  const stopped = adapter.stopped?.bind(resp);
  adapter.stopped = async () => {
    for (const connection of cache.values()) connection.close();
    cache.clear();
    if (sweeper !== undefined) clearInterval(sweeper);
    sweeper = undefined;
    await stopped?.();
  };
  const closeSocket = (name: string, connection: TargetConnection): void => {
    connection.close();
    if (cache.get(name) === connection) cache.delete(name);
  };

  resp.command(
    'migrate',
    {
      arity: -6,
      flags: ['write'],
      keySpecs: [
        { flags: ['RW', 'access', 'delete'], begin: 3 },
        { flags: ['RW', 'access', 'delete', 'incomplete'], begin: { keyword: 'KEYS', startFrom: -2 }, find: { lastKey: -1, step: 1 } },
      ],
      keysOf: (argv) => migrateKeys(argv),
      // MONITOR hides AUTH's password and AUTH2's user and password (cluster.c, migrateCommand).
      redact: (argv) => {
        const hidden: number[] = [];
        for (let i = 6; i < argv.length; i++) {
          const option = (argv[i] as Buffer).toString('latin1').toUpperCase();
          if (option === 'AUTH') hidden.push(++i);
          else if (option === 'AUTH2') hidden.push(++i, ++i);
          else if (option === 'KEYS') break;
        }
        return hidden;
      },
      aclCategories: ['keyspace', 'dangerous'],
      tips: ['nondeterministic_output'],
      summary: 'Atomically transfer a key from a Redis instance to another one.',
      group,
      since: '2.6.0',
    },
    (client, argv) => {
      // Redis lets a script MIGRATE (its server blocks meanwhile); a script here cannot wait for the
      // target, so it is refused before anything moves (packages/resp would refuse the Promise too,
      // but only after the migration had started).
      if (client.conn.binding === 'lua') throw new RespError('ERR This Redis command is not allowed from script');
      let copy = false;
      let replace = false;
      let username: Buffer | undefined;
      let password: Buffer | undefined;
      let firstKey = 3;
      let numKeys = 1;
      for (let j = 6; j < argv.length; j++) {
        const more = argv.length - 1 - j;
        const option = (argv[j] as Buffer).toString('latin1').toLowerCase();
        if (option === 'copy') copy = true;
        else if (option === 'replace') replace = true;
        else if (option === 'auth') {
          if (more < 1) throw new RespError('ERR syntax error');
          password = argv[++j];
        } else if (option === 'auth2') {
          if (more < 2) throw new RespError('ERR syntax error');
          username = argv[++j];
          password = argv[++j];
        } else if (option === 'keys') {
          if ((argv[3] as Buffer).length !== 0) {
            throw new RespError('ERR When using MIGRATE KEYS option, the key argument must be set to the empty string');
          }
          firstKey = j + 1;
          numKeys = argv.length - j - 1;
          break;
        } else throw new RespError('ERR syntax error');
      }
      let timeout = Number(int64Arg(argv[5]));
      const dbid = int64Arg(argv[4]);
      if (timeout <= 0) timeout = 1000;
      timeout = Math.min(timeout, MAX_TIMER);

      const dbIndex = client.db;
      const db = keyspace.db(dbIndex);
      const keys: Buffer[] = [];
      for (let j = 0; j < numKeys; j++) {
        const key = argv[firstKey + j] as Buffer;
        if (db.get(keyOf(key)) !== undefined) keys.push(key);
      }
      if (keys.length === 0) return NOKEY;

      const host = (argv[1] as Buffer).toString('latin1');
      const portText = (argv[2] as Buffer).toString('latin1');
      const name = `${host}:${portText}`;
      const restore = resp.cluster !== undefined ? 'RESTORE-ASKING' : 'RESTORE';

      const run = async (): Promise<typeof OK> => {
        let mayRetry = true;
        for (;;) {
          const connection = await getSocket(name, host, atoi(portText), timeout);
          if (connection === undefined) throw new RespError('IOERR error or timeout connecting to the client');
          connection.inUse = true;
          if (isSelf(connection)) {
            // As Redis: nothing answers within the timeout (it is this very server, busy with MIGRATE).
            await new Promise((resolve) => setTimeout(resolve, timeout));
            connection.inUse = false;
            closeSocket(name, connection);
            throw new RespError('IOERR error or timeout reading to target instance');
          }
          let writeError = false;
          let timedOut = false;
          let deleted: Buffer[] = [];
          try {
            const parts: Buffer[] = [];
            if (password !== undefined) {
              parts.push(frameCommand(username !== undefined ? ['AUTH', username, password] : ['AUTH', password]));
            }
            const select = connection.lastDb !== dbid;
            if (select) parts.push(Buffer.from('*2\r\n$6\r\nSELECT\r\n'), bulk(dbid));
            // The keys still there (one may have expired since the lookup), each with its TTL left.
            const sent: Buffer[] = [];
            const now = Date.now();
            for (const key of keys) {
              const value = db.peek(keyOf(key));
              if (value === undefined) continue;
              let ttl = 0;
              const expireAt = db.expires.get(keyOf(key));
              if (expireAt !== undefined) {
                ttl = expireAt - now;
                if (ttl < 0) continue;
                if (ttl < 1) ttl = 1;
              }
              sent.push(key);
              parts.push(Buffer.from(`*${replace ? 5 : 4}\r\n`), bulk(restore), bulk(key), bulk(String(ttl)));
              parts.push(bulk(dumpPayload(value, state.compression)));
              if (replace) parts.push(bulk('REPLACE'));
            }

            connection.allowance = LINE_LIMIT * (sent.length + 3);
            try {
              await connection.write(Buffer.concat(parts), timeout);
            } catch (error) {
              writeError = true;
              throw error;
            }
            const authReply = password !== undefined ? await connection.readLine(timeout) : '';
            const selectReply = select ? await connection.readLine(timeout) : '';

            let targetError: string | undefined;
            let socketError = false;
            let j = 0;
            for (; j < sent.length; j++) {
              let reply: string;
              try {
                reply = await connection.readLine(timeout);
              } catch (error) {
                socketError = true;
                timedOut = error instanceof SocketFailure && error.timedOut;
                break;
              }
              if (authReply.startsWith('-') || selectReply.startsWith('-') || reply.startsWith('-')) {
                if (targetError === undefined) {
                  connection.lastDb = -1n;
                  const text = authReply.startsWith('-') ? authReply : selectReply.startsWith('-') ? selectReply : reply;
                  targetError = `ERR Target instance replied with error: ${text.slice(1)}`;
                }
              } else if (!copy) {
                // Acknowledged by the target: the local key goes.
                const key = keyOf(sent[j]);
                if (db.delete(key)) {
                  resp.touch(dbIndex, key);
                  resp.notifyKeyspaceEvent('generic', 'del', key, dbIndex);
                }
                deleted.push(sent[j] as Buffer);
              }
            }
            // Nothing processed and the first read failed (not a timeout): retry on a fresh connection.
            if (targetError === undefined && socketError && j === 0 && mayRetry && !timedOut) {
              throw new SocketFailure(false);
            }
            if (socketError) closeSocket(name, connection);
            if (deleted.length > 0) propagation.also(dbIndex, ['DEL', ...deleted]);
            deleted = [];
            if (targetError === undefined && socketError) {
              mayRetry = false;
              throw new SocketFailure(timedOut);
            }
            if (targetError !== undefined) throw new RespError(targetError);
            connection.lastDb = dbid;
            return OK;
          } catch (error) {
            if (!(error instanceof SocketFailure)) throw error;
            if (deleted.length > 0) propagation.also(dbIndex, ['DEL', ...deleted]);
            closeSocket(name, connection);
            if (!error.timedOut && mayRetry) {
              mayRetry = false;
              continue;
            }
            throw new RespError(`IOERR error or timeout ${writeError ? 'writing' : 'reading'} to target instance`);
          } finally {
            connection.allowance = LINE_LIMIT;
            connection.inUse = false;
            connection.lastUse = Date.now();
          }
        }
      };

      // One MIGRATE at a time per target connection.
      const before = turns.get(name) ?? Promise.resolve();
      const result = before.then(run);
      const turn = result.then(
        () => {},
        () => {},
      );
      turns.set(name, turn);
      void turn.then(() => {
        if (turns.get(name) === turn) turns.delete(name);
      });
      return result;
    },
  );

  // RESTORE-ASKING: RESTORE, flagged `asking` (Redis's restore-asking.json). RESTORE's own handler
  // propagates it (as RESTORE-ASKING, with its ABSTTL rewrite); this wrapper must not add a second.
  const restoreSpec = resp.lookup('restore');
  if (restoreSpec === undefined) throw new Error('MIGRATE needs RESTORE (dump.ts) registered first');
  const { name: _name, handler: restoreHandler, ...restoreOptions } = restoreSpec;
  resp.command(
    'restore-asking',
    {
      ...restoreOptions,
      flags: [...(restoreOptions.flags ?? []), 'asking'],
      keySpecs: [{ flags: ['OW', 'update'], begin: 1 }],
      aclCategories: ['keyspace', 'dangerous'],
      summary: 'An internal command for migrating keys in a cluster',
      group: 'server',
      since: '3.0.0',
    },
    (client, argv) => {
      try {
        return restoreHandler(client, argv);
      } finally {
        propagation.prevent();
      }
    },
  );
}
