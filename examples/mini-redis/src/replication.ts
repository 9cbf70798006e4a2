import { randomBytes } from 'node:crypto';
import type { RespClient } from '@portbind/resp';
import { type Argv, frameCommand, type Propagation, type Sink } from './propagate.js';
import { encodeRdb, type RdbServer } from './rdb.js';
import type { Keyspace } from './store.js';

// The master side of Redis replication: SYNC/PSYNC answer with a full resynchronization (an RDB of
// the dataset), then every propagated command follows on the same connection, framed as Redis
// frames them (a SELECT when the database changes). master_repl_offset counts the bytes of that
// stream; replicas acknowledge offsets (REPLCONF ACK), which WAIT counts.

/** One replica: the connection SYNC/PSYNC turned into a replication link. */
export interface Replica {
  readonly client: RespClient;
  /** REPLCONF listening-port (0 until told). */
  listeningPort: number;
  /** The last offset it acknowledged (REPLCONF ACK), and when. */
  ackOffset: number;
  ackTime: number;
  /** When its output first went past the soft limit (0: under it). */
  softSince: number;
}

/** `client-output-buffer-limit replica`: hard bytes, soft bytes, soft seconds (Redis: 256mb 64mb 60). */
export interface OutputLimit {
  hard: number;
  soft: number;
  seconds: number;
}

export class Replication implements Sink {
  /** 40 hex characters, new at each start (Redis's replid). */
  readonly replid = randomBytes(20).toString('hex');
  /** Bytes sent down the replication stream since start (master_repl_offset). */
  offset = 0;
  readonly replicas = new Set<Replica>();
  readonly limit: OutputLimit = { hard: 256 * 1024 * 1024, soft: 64 * 1024 * 1024, seconds: 60 };
  /** repl-ping-replica-period, seconds. */
  pingPeriod = 10;
  /** The database the stream last selected (-1: none yet, so the next command brings a SELECT). */
  #selected = -1;
  #pingTimer: NodeJS.Timeout | undefined;
  readonly #propagation: Propagation;
  readonly #keyspace: Keyspace;
  readonly #server: RdbServer;
  /** Resolve WAITs when an ACK arrives. */
  readonly #ackWaiters = new Set<() => void>();
  /** repl-backlog-size: the last bytes of the stream, kept for a replica that reconnects (PSYNC). */
  backlogSize = 1024 * 1024;
  /** The backlog, in frames; undefined until the first replica (Redis creates it then). */
  #backlog: Buffer[] | undefined;
  #backlogBytes = 0;
  /** Stream offset of the backlog's first byte (bytes are numbered from 1, as Redis's). */
  #backlogStart = 1;
  /** Called when a replica disconnects or is dropped (logs). */
  onDrop: (replica: Replica, reason: string) => void = () => {};

  /** `server`: what a full synchronization's RDB holds (its keyspace, and its function libraries once scripting is on). */
  constructor(propagation: Propagation, server: RdbServer) {
    this.#propagation = propagation;
    this.#server = server;
    this.#keyspace = server.keyspace;
  }

  /** The backlog's state for INFO replication. */
  get backlog(): { active: boolean; firstByte: number; length: number } {
    return {
      active: this.#backlog !== undefined,
      firstByte: this.#backlog === undefined ? 0 : this.#backlogStart,
      length: this.#backlogBytes,
    };
  }

  /**
   * SYNC / PSYNC: a PSYNC for this replid from an offset the backlog still holds continues
   * (`+CONTINUE`, then the bytes from there); anything else is a full resynchronization: the RDB
   * (after `+FULLRESYNC <replid> <offset>` for PSYNC), then the stream.
   */
  attach(client: RespClient, psync: { replid: string; offset: number } | undefined, listeningPort: number): Replica {
    const replica: Replica = { client, listeningPort, ackOffset: 0, ackTime: Date.now(), softSince: 0 };
    // Replies the replica's earlier commands (PING, REPLCONF) wrote go first; after this the link
    // carries only the stream (the replica's REPLCONF ACKs get no reply, as in Redis).
    client.flush();
    client.replyOff = true;
    const socket = client.conn.socket;
    const backlog = this.#backlog;
    if (
      psync !== undefined &&
      backlog !== undefined &&
      psync.replid.toLowerCase() === this.replid &&
      psync.offset >= this.#backlogStart &&
      psync.offset <= this.offset + 1
    ) {
      // replication.c, masterTryPartialResynchronization: the bytes the replica missed.
      socket.write(`+CONTINUE ${this.replid}\r\n`, 'latin1');
      const missed = Buffer.concat(backlog).subarray(psync.offset - this.#backlogStart);
      if (missed.length > 0) socket.write(missed);
      replica.ackOffset = psync.offset - 1;
      this.replicas.add(replica);
      socket.once('close', () => this.#remove(replica, 'connection closed'));
      this.#schedulePing();
      return replica;
    }
    if (psync !== undefined) socket.write(`+FULLRESYNC ${this.replid} ${this.offset}\r\n`, 'latin1');
    // The function libraries too (opcode FUNCTION2), as Redis's full sync: a replica gets FUNCTION LOAD's libraries.
    const rdb = encodeRdb(this.#server);
    socket.write(`$${rdb.length}\r\n`, 'latin1');
    socket.write(rdb);
    // Redis forces a SELECT into the stream after a new full sync (slaveseldb = -1).
    this.#selected = -1;
    this.replicas.add(replica);
    if (this.#backlog === undefined) {
      // From the first replica on, the stream is kept in the backlog even while no replica is
      // connected (Redis keeps it for repl-backlog-ttl; here for as long as mini-redis runs).
      this.#backlog = [];
      this.#backlogStart = this.offset + 1;
      this.#propagation.addSink(this);
    }
    socket.once('close', () => this.#remove(replica, 'connection closed'));
    this.#schedulePing();
    return replica;
  }

  /** A propagated command: SELECT first if the stream is on another database, then to every replica. */
  feed(db: number, frame: Buffer): void {
    if (db !== this.#selected) {
      this.#write(frameCommand(['SELECT', String(db)]));
      this.#selected = db;
    }
    this.#write(frame);
  }

  /** A command outside any database (PING, REPLCONF GETACK). */
  feedRaw(argv: Argv): void {
    if (this.replicas.size > 0) this.#write(frameCommand(argv));
  }

  #write(frame: Buffer): void {
    this.offset += frame.length;
    const backlog = this.#backlog;
    if (backlog !== undefined) {
      backlog.push(frame);
      this.#backlogBytes += frame.length;
      while (this.#backlogBytes > this.backlogSize && backlog.length > 1) {
        const dropped = backlog.shift() as Buffer;
        this.#backlogBytes -= dropped.length;
        this.#backlogStart += dropped.length;
      }
    }
    for (const replica of this.replicas) {
      const socket = replica.client.conn.socket;
      if (socket.destroyed) continue;
      socket.write(frame);
      this.#checkLimit(replica, socket.writableLength);
    }
  }

  /** client-output-buffer-limit replica: past the hard limit, or the soft one for long enough, the replica is dropped. */
  #checkLimit(replica: Replica, used: number): void {
    const { hard, soft, seconds } = this.limit;
    let over = hard > 0 && used >= hard;
    if (!over && soft > 0 && used >= soft) {
      const now = Date.now();
      if (replica.softSince === 0) replica.softSince = now;
      else if (now - replica.softSince >= seconds * 1000) over = true;
    } else if (used < soft) replica.softSince = 0;
    if (over) {
      this.#remove(replica, 'output buffer limit');
      replica.client.kill();
    }
  }

  #remove(replica: Replica, reason: string): void {
    if (!this.replicas.delete(replica)) return;
    this.onDrop(replica, reason);
    if (this.replicas.size === 0) {
      clearInterval(this.#pingTimer);
      this.#pingTimer = undefined;
    }
    for (const wake of this.#ackWaiters) wake();
  }

  /** repl-ping-replica-period: a PING down the stream keeps replicas from timing out. */
  #schedulePing(): void {
    clearInterval(this.#pingTimer);
    this.#pingTimer = setInterval(() => this.feedRaw(['PING']), this.pingPeriod * 1000);
    this.#pingTimer.unref();
  }

  setPingPeriod(seconds: number): void {
    this.pingPeriod = seconds;
    if (this.#pingTimer !== undefined) this.#schedulePing();
  }

  /** REPLCONF ACK <offset> from a replica. */
  ack(client: RespClient, offset: number): void {
    for (const replica of this.replicas) {
      if (replica.client !== client) continue;
      if (offset > replica.ackOffset) replica.ackOffset = offset;
      replica.ackTime = Date.now();
    }
    for (const wake of this.#ackWaiters) wake();
  }

  replicaOf(client: RespClient): Replica | undefined {
    for (const replica of this.replicas) if (replica.client === client) return replica;
    return undefined;
  }

  /** How many replicas acknowledged `offset`. */
  acked(offset: number): number {
    let count = 0;
    for (const replica of this.replicas) if (replica.ackOffset >= offset) count++;
    return count;
  }

  /** WAIT: resolve with the replicas that acknowledged `offset` once `count` did, or at the timeout (0: never). */
  waitFor(offset: number, count: number, timeoutMs: number, client: RespClient): Promise<number> {
    // Ask every replica for its offset now (Redis's replicationRequestAckFromSlaves).
    this.feedRaw(['REPLCONF', 'GETACK', '*']);
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const done = (): void => {
        this.#ackWaiters.delete(check);
        clearTimeout(timer);
        client.conn.socket.off('close', done);
        client.onUnblock(undefined);
        resolve(this.acked(offset));
      };
      const check = (): void => {
        if (this.acked(offset) >= count) done();
      };
      this.#ackWaiters.add(check);
      client.conn.socket.once('close', done);
      client.onUnblock(done);
      if (timeoutMs > 0) timer = setTimeout(done, timeoutMs);
    });
  }

  /** Stop: the replicas are closed (they reconnect to the next start and resync). */
  close(): void {
    clearInterval(this.#pingTimer);
    this.#pingTimer = undefined;
    for (const replica of [...this.replicas]) replica.client.kill();
  }
}
