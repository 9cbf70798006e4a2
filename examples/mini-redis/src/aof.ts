import {
  closeSync,
  existsSync,
  fdatasync,
  constants as fsConstants,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import { type Logger, PortbindError } from '@portbind/core';
import { type Command, type RespClient, RespError, simple } from '@portbind/resp';
import type { MiniRedis } from './app.js';
import { yesNo } from './config.js';
import { frameCommand, type Sink } from './propagate.js';
import { encodeRdb, loadRdb, RdbError } from './rdb.js';
import { addDiskErrorCheck, addPersistenceInfo } from './snapshot.js';

// The append-only file, as Redis 7.0's multi-part AOF: in `dir`/`appenddirname` (default
// DATA_DIR/appendonlydir) a manifest (`appendonly.aof.manifest`) names one base file (the dataset
// as an RDB, Redis's default aof-use-rdb-preamble) and one incremental file that every propagated
// command is appended to, framed as Redis frames them, with a SELECT when the database changes.
// `appendfsync always` fsyncs before the replies of the commands go out (the commands of one
// event-loop turn share one write and one fsync), `everysec` once a second, `no` never.
//
// BGREWRITEAOF: Redis forks; here the dataset is encoded synchronously (one point in time, like
// BGSAVE in snapshot.ts), a new incremental file starts at that same moment, and the base is
// written, fsynced and renamed while clients are served; then a new manifest is renamed into
// place and the old files go. It runs when asked, when the AOF is turned on at run time, and when
// the incremental file grew past auto-aof-rewrite-percentage of the base (and past
// auto-aof-rewrite-min-size).
//
// The environment configures it at start: APPENDONLY=yes (Redis's `appendonly`; CONFIG SET changes
// it at run time, not for the next start), APPENDFSYNC, AOF_LOAD_TRUNCATED=no, APPENDFILENAME and
// APPENDDIRNAME. With APPENDONLY=yes the base and the incremental files are replayed at start
// through the registered command handlers (an AOF wins over an RDB loaded before it, as in Redis). A
// truncated last command (a crash mid-write): with aof-load-truncated yes (the default) what is
// complete loads, the file is truncated there and a warning is logged; else, and for anything
// else that is not a command, start-up fails with AofLoadError naming the file and the offset.

/** Loading the append-only file at start failed (Redis: "Bad file format reading the append only file"). */
export class AofLoadError extends PortbindError {
  readonly path: string;
  readonly offset: number;
  constructor(path: string, offset: number, message: string, cause?: unknown) {
    super(
      'PB_ERR_AOF_LOAD',
      `${message} reading the append only file ${path} at offset ${offset}`,
      cause === undefined ? undefined : { cause },
    );
    this.path = path;
    this.offset = offset;
  }
}

type Fsync = 'always' | 'everysec' | 'no';

interface ManifestEntry {
  name: string;
  seq: number;
  type: 'b' | 'i' | 'h';
}

/** The state INFO persistence, CONFIG and BGREWRITEAOF share. */
export interface AofState {
  enabled: boolean;
  fsync: Fsync;
  dir: string;
  dirname: string;
  filename: string;
  loadTruncated: boolean;
  rewritePercentage: number;
  rewriteMinSize: number;
  /** Bytes of the base at the last rewrite (aof_base_size) and of base + incremental now (aof_current_size). */
  baseSize: number;
  currentSize: number;
  rewriteInProgress: { started: number } | undefined;
  rewriteScheduled: boolean;
  lastRewriteSeconds: number;
  lastRewriteStatus: 'ok' | 'err';
  lastWriteStatus: 'ok' | 'err';
  /** The error code (ENOSPC, EIO, …) of the last failed write, until a write succeeds. */
  writeError: string | undefined;
  /** The error code of the last failed everysec fsync, until one succeeds. */
  fsyncError: string | undefined;
  rewrites: number;
  lastFsync: number;
  delayedFsync: number;
}

const states = new WeakMap<object, AofState>();

/** Redis's aof_* fields of INFO persistence, in Redis 7.0.15's order (snapshot.ts puts them after the rdb_* ones). */
export function aofInfo(server: MiniRedis): Record<string, string | number> {
  const state = states.get(server);
  if (state === undefined) return { aof_enabled: 0 };
  const now = Date.now();
  const fields: Record<string, string | number> = {
    aof_enabled: state.enabled ? 1 : 0,
    aof_rewrite_in_progress: state.rewriteInProgress === undefined ? 0 : 1,
    aof_rewrite_scheduled: state.rewriteScheduled ? 1 : 0,
    aof_last_rewrite_time_sec: state.lastRewriteSeconds,
    aof_current_rewrite_time_sec: state.rewriteInProgress === undefined ? -1 : Math.floor((now - state.rewriteInProgress.started) / 1000),
    aof_last_bgrewrite_status: state.lastRewriteStatus,
    aof_rewrites: state.rewrites,
    aof_rewrites_consecutive_failures: 0,
    aof_last_write_status: state.lastWriteStatus,
    aof_last_cow_size: 0,
  };
  if (state.enabled) {
    Object.assign(fields, {
      aof_current_size: state.currentSize,
      aof_base_size: state.baseSize,
      aof_pending_rewrite: state.rewriteScheduled ? 1 : 0,
      aof_buffer_length: 0,
      aof_pending_bio_fsync: 0,
      aof_delayed_fsync: state.delayedFsync,
    });
  }
  return fields;
}

/** Split an append-only file into commands. `truncatedAt`: where an incomplete last command starts. */
export function parseAof(data: Buffer): { commands: Array<{ argv: Buffer[]; offset: number }>; truncatedAt?: number; badAt?: number } {
  const commands: Array<{ argv: Buffer[]; offset: number }> = [];
  let pos = 0;
  const line = (): string | undefined => {
    const end = data.indexOf('\r\n', pos, 'latin1');
    if (end === -1) return undefined;
    const text = data.toString('latin1', pos, end);
    pos = end + 2;
    return text;
  };
  while (pos < data.length) {
    const start = pos;
    if (data[pos] === 0x0a || data[pos] === 0x0d) {
      pos++; // a stray newline between commands (Redis skips it too)
      continue;
    }
    if (data[pos] !== 0x2a /* * */) return { commands, badAt: start };
    const head = line();
    if (head === undefined) return { commands, truncatedAt: start };
    const count = Number(head.slice(1));
    if (!/^\*[1-9]\d{0,6}$/.test(head)) return { commands, badAt: start };
    const argv: Buffer[] = [];
    for (let i = 0; i < count; i++) {
      if (pos >= data.length) return { commands, truncatedAt: start };
      if (data[pos] !== 0x24 /* $ */) return { commands, badAt: pos };
      const at = pos;
      const size = line();
      if (size === undefined) return { commands, truncatedAt: start };
      if (!/^\$\d{1,10}$/.test(size)) return { commands, badAt: at };
      const length = Number(size.slice(1));
      if (length > 512 * 1024 * 1024) return { commands, badAt: at };
      if (pos + length + 2 > data.length) return { commands, truncatedAt: start };
      if (data[pos + length] !== 0x0d || data[pos + length + 1] !== 0x0a) return { commands, badAt: pos + length };
      argv.push(data.subarray(pos, pos + length));
      pos += length + 2;
    }
    commands.push({ argv, offset: start });
  }
  return { commands };
}

/** `file <name> seq <n> type <b|i|h>` lines (aof.c, aofLoadManifestFromFile). */
function parseManifest(text: string, path: string): ManifestEntry[] {
  const entries: ManifestEntry[] = [];
  let offset = 0;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line !== '' && !line.startsWith('#')) {
      const words = line.split(/\s+/);
      const fields = new Map<string, string>();
      for (let i = 0; i + 1 < words.length; i += 2) fields.set(words[i] as string, words[i + 1] as string);
      const name = fields.get('file');
      const seq = Number(fields.get('seq'));
      const type = fields.get('type');
      if (name === undefined || !Number.isInteger(seq) || (type !== 'b' && type !== 'i' && type !== 'h') || name.includes('/')) {
        throw new AofLoadError(path, offset, 'Invalid AOF manifest file format');
      }
      entries.push({ name, seq, type });
    }
    offset += raw.length + 1;
  }
  return entries;
}

/** A reply writer that drops everything (every method chains; `take` gives nothing). */
function nullReply(): object {
  const chain: object = new Proxy(
    {},
    {
      get: (_target, property) => {
        if (property === 'take') return () => undefined;
        if (property === 'pending' || property === 'protocol') return property === 'protocol' ? 2 : 0;
        if (property === 'checkpoint') return () => 0;
        return () => chain;
      },
    },
  );
  return chain;
}

/** A client for replaying commands: its replies go nowhere (Redis's fake client of loadAppendOnlyFiles). */
function replayClient(): RespClient {
  const fake = {
    id: 0,
    db: 0,
    reply: nullReply(),
    multi: undefined,
    multiDirty: false,
    watchDirty: false,
    watched: new Set<string>(),
    channels: new Set<string>(),
    patterns: new Set<string>(),
    tracking: undefined,
    protocol: 2,
    conn: { id: 0, socket: { once() {}, off() {}, on() {}, destroyed: false }, remoteAddress: undefined },
    onUnblock() {},
    flush() {},
    flushLater() {},
  };
  return fake as unknown as RespClient;
}

/**
 * The append-only file: its CONFIG parameters, BGREWRITEAOF, INFO fields, the replay at start
 * (throws AofLoadError) and the writes. `logger` gets the load and rewrite messages.
 */
export function registerAof(server: MiniRedis, logger: Logger): AofState {
  const { resp, config, env, propagation, keyspace } = server;
  const state: AofState = {
    enabled: false,
    fsync: (['always', 'everysec', 'no'] as const).find((mode) => mode === env['APPENDFSYNC']) ?? 'everysec',
    dir: resolve(env['DATA_DIR'] || '.'),
    dirname: plainName(env['APPENDDIRNAME'], 'appenddirname') ?? 'appendonlydir',
    filename: plainName(env['APPENDFILENAME'], 'appendfilename') ?? 'appendonly.aof',
    loadTruncated: env['AOF_LOAD_TRUNCATED'] !== 'no',
    rewritePercentage: 100,
    rewriteMinSize: 64 * 1024 * 1024,
    baseSize: 0,
    currentSize: 0,
    rewriteInProgress: undefined,
    rewriteScheduled: false,
    lastRewriteSeconds: -1,
    lastRewriteStatus: 'ok',
    lastWriteStatus: 'ok',
    writeError: undefined,
    fsyncError: undefined,
    rewrites: 0,
    lastFsync: Date.now(),
    delayedFsync: 0,
  };
  states.set(server, state);
  const dirPath = (): string => join(state.dir, state.dirname);
  const manifestName = (): string => `${state.filename}.manifest`;

  // ---- Writing ----------------------------------------------------------------------------------
  let fd: number | undefined;
  /** What the manifest names: the base (once there is one) and the incremental files, oldest first. */
  let base: { name: string; seq: number } | undefined;
  let incrs: Array<{ name: string; seq: number }> = [];
  let seq = 0;
  let selected = -1;
  let batch: Buffer[] = [];
  let batchScheduled = false;
  let incrSize = 0;

  /**
   * What a failed write left unwritten (Redis keeps it in aof_buf): written before anything newer,
   * by the next write or by the retry once a second.
   */
  let unwritten: Buffer | undefined;
  let lastErrorLog = 0;
  const setWriteError = (code: string | undefined): void => {
    state.writeError = code;
    state.lastWriteStatus = state.writeError === undefined && state.fsyncError === undefined ? 'ok' : 'err';
  };
  const setFsyncError = (code: string | undefined): void => {
    state.fsyncError = code;
    state.lastWriteStatus = state.writeError === undefined && state.fsyncError === undefined ? 'ok' : 'err';
  };
  /** appendfsync always cannot take a reply back: Redis exits (aof.c, flushAppendOnlyFile). */
  const cannotRecover = (message: string, error: unknown): never => {
    logger.error({ err: error }, message);
    process.exit(1);
  };

  // aof.c's flushAppendOnlyFile: one write of what is pending. A failed write (ENOSPC, EIO, …)
  // keeps the data (a partial write is truncated away, as Redis does) and sets
  // aof_last_write_status to err: write commands get -MISCONF (snapshot.ts's check) until a retry
  // succeeds. With appendfsync always the replies cannot wait for that: exit, as Redis.
  const writeBatch = (): void => {
    batchScheduled = false;
    if (fd === undefined) {
      batch = [];
      return;
    }
    if (batch.length === 0 && unwritten === undefined) return;
    const parts = unwritten === undefined ? batch : [unwritten, ...batch];
    const data = parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
    batch = [];
    unwritten = undefined;
    let written = 0;
    let failure: NodeJS.ErrnoException | undefined;
    try {
      while (written < data.length) written += writeSync(fd, data, written);
    } catch (error) {
      failure = error as NodeJS.ErrnoException;
    }
    if (failure === undefined) {
      incrSize += data.length;
      state.currentSize += data.length;
      if (state.writeError !== undefined) {
        logger.warn('AOF write error looks solved, Redis can write again.');
        setWriteError(undefined);
      }
      if (state.fsync === 'always') {
        try {
          fsyncSync(fd);
        } catch (error) {
          cannotRecover(
            `Can't persist AOF for fsync error when the AOF fsync policy is 'always': ${strerror((error as NodeJS.ErrnoException).code)}. Exiting...`,
            error,
          );
        }
      }
      return;
    }
    // A short write (some bytes went out before the error): Redis reports ENOSPC and cuts them off.
    const code = written === 0 ? (failure.code ?? 'EIO') : 'ENOSPC';
    if (written > 0) {
      try {
        ftruncateSync(fd, incrSize);
        written = 0;
      } catch (error) {
        logger.error(
          { err: error },
          'Could not remove short write from the append-only file.  Redis may refuse to load the AOF the next time it starts.',
        );
      }
    }
    if (Date.now() - lastErrorLog > 30_000) {
      lastErrorLog = Date.now();
      logger.error({ err: failure, written, expected: data.length }, `Error writing to the AOF file: ${strerror(code)}`);
    }
    if (state.fsync === 'always') {
      cannotRecover("Can't recover from AOF write error when the AOF fsync policy is 'always'. Exiting...", failure);
    }
    incrSize += written;
    state.currentSize += written;
    unwritten = data.subarray(written);
    setWriteError(code);
  };
  const sink: Sink = {
    aof: true,
    feed(db, frame) {
      if (db !== selected) {
        batch.push(frameCommand(['SELECT', String(db)]));
        selected = db;
      }
      batch.push(frame);
      // One write (and, with always, one fsync) for the commands of this turn, before their replies
      // go out (replies are flushed in setImmediate).
      if (!batchScheduled) {
        batchScheduled = true;
        queueMicrotask(writeBatch);
      }
    },
  };
  // Once a second (serverCron): retry a failed write, and with everysec fsync off the event loop. A
  // failed fsync (bio.c: not EBADF or EINVAL) refuses writes too, until one succeeds.
  const fsyncTimer = setInterval(() => {
    if (fd === undefined) return;
    if (state.writeError !== undefined) writeBatch();
    if (state.fsync !== 'everysec') return;
    const started = Date.now();
    const syncing = fd;
    fdatasync(syncing, (error) => {
      if (syncing !== fd) return;
      if (error && error.code !== 'EBADF' && error.code !== 'EINVAL') {
        if (state.fsyncError === undefined) logger.error({ err: error }, `Fail to fsync the AOF file: ${strerror(error.code)}`);
        setFsyncError(error.code ?? 'EIO');
      } else {
        setFsyncError(undefined);
        state.lastFsync = started;
      }
    });
  }, 1000);
  fsyncTimer.unref();

  const closeIncr = (): void => {
    if (batch.length > 0 || unwritten !== undefined) writeBatch();
    if (unwritten !== undefined) {
      // The old file cannot take it. A rewrite's new base holds it (the dataset as of now); turning
      // the AOF off forgets it, as Redis's stopAppendOnly frees aof_buf.
      logger.warn({ bytes: unwritten.length }, 'dropping the AOF data that could not be written to the old file');
      unwritten = undefined;
    }
    if (state.writeError !== undefined || state.fsyncError !== undefined) {
      setWriteError(undefined);
      setFsyncError(undefined);
    }
    if (fd !== undefined) {
      try {
        fsyncSync(fd);
      } catch {}
      closeSync(fd);
    }
    fd = undefined;
  };
  const openIncr = (name: string): void => {
    closeIncr();
    mkdirSync(dirPath(), { recursive: true });
    fd = openSync(join(dirPath(), name), 'a', 0o644);
    incrSize = statSync(join(dirPath(), name)).size;
    selected = -1; // the first command of a file brings its SELECT
  };
  /** A new manifest naming the base and `increments` (by default the ones in use), renamed into place. */
  const writeManifest = (increments = incrs): void => {
    let text = base === undefined ? '' : `file ${base.name} seq ${base.seq} type b\n`;
    for (const incr of increments) text += `file ${incr.name} seq ${incr.seq} type i\n`;
    const temp = join(dirPath(), `temp-${manifestName()}`);
    const tempFd = openSync(temp, 'w', 0o644);
    try {
      writeSync(tempFd, text);
      fsyncSync(tempFd);
    } catch (error) {
      closeSync(tempFd);
      rmSync(temp, { force: true });
      throw error;
    }
    closeSync(tempFd);
    renameSync(temp, join(dirPath(), manifestName()));
    const dirFd = openSync(dirPath(), 'r');
    try {
      fsyncSync(dirFd);
    } finally {
      closeSync(dirFd);
    }
  };

  /**
   * BGREWRITEAOF: the dataset now as the new base, a new incremental file from now on. The base is
   * written asynchronously; the manifest switches once it is on disk. False if it could not start
   * (aof.c's rewriteAppendOnlyFileBackground: the new incremental file or the manifest naming it
   * could not be written; aof_last_bgrewrite_status becomes err).
   */
  /** Why the last rewrite could not start. */
  let lastStartError: NodeJS.ErrnoException | undefined;
  const rewrite = (): boolean => {
    if (state.rewriteInProgress !== undefined) {
      // One at a time: another right after this one (Redis's aof_rewrite_scheduled).
      state.rewriteScheduled = true;
      return true;
    }
    return rewriteNow();
  };
  const rewriteNow = (): boolean => {
    const started = Date.now();
    state.rewriteInProgress = { started };
    state.rewriteScheduled = false;
    let data: Buffer;
    try {
      data = encodeRdb(server, { aofBase: true });
    } catch (error) {
      state.rewriteInProgress = undefined;
      state.lastRewriteStatus = 'err';
      logger.error({ err: error }, 'Background AOF rewrite failed');
      return false;
    }
    // As Redis (rewriteAppendOnlyFileBackground): the next write to the AOF brings a SELECT again.
    selected = -1;
    const rewriteSeq = seq + 1;
    const newBase = `${state.filename}.${rewriteSeq}.base.rdb`;
    const newIncr = `${state.filename}.${rewriteSeq}.incr.aof`;
    let newFd: number | undefined;
    try {
      mkdirSync(dirPath(), { recursive: true });
      if (state.enabled) {
        // Writes from now on go to the new incremental file; until the new base is on disk the
        // manifest names the old base, the old increments and this one (a crash loses nothing).
        // The switch happens once that manifest is on disk (openNewIncrAofForAppend).
        // O_APPEND: after a short write is cut off (ftruncate), the next write lands at the new end.
        const { O_APPEND, O_CREAT, O_TRUNC, O_WRONLY } = fsConstants;
        newFd = openSync(join(dirPath(), newIncr), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0o644);
        writeManifest([...incrs, { name: newIncr, seq: rewriteSeq }]);
      }
    } catch (error) {
      if (newFd !== undefined) closeSync(newFd);
      lastStartError = error as NodeJS.ErrnoException;
      state.rewriteInProgress = undefined;
      state.lastRewriteStatus = 'err';
      logger.error({ err: error }, `Can't start the AOF rewrite: ${strerror((error as NodeJS.ErrnoException).code)}`);
      return false;
    }
    seq = rewriteSeq;
    if (newFd !== undefined) {
      closeIncr(); // what is pending goes to the old file (the old manifest's chain), then it closes
      fd = newFd;
      incrSize = 0;
      selected = -1; // the first command of a file brings its SELECT
      incrs.push({ name: newIncr, seq: rewriteSeq });
    }
    void (async () => {
      const { open, rename, rm } = await import('node:fs/promises');
      const temp = join(dirPath(), `temp-rewriteaof-bg-${process.pid}.aof`);
      const file = await open(temp, 'w', 0o644);
      try {
        await file.writeFile(data);
        await file.sync();
      } catch (error) {
        await file.close();
        await rm(temp, { force: true });
        throw error;
      }
      await file.close();
      await rename(temp, join(dirPath(), newBase));
      // The AOF was off (or turned off meanwhile): an empty increment, so the manifest names a pair.
      closeSync(openSync(join(dirPath(), newIncr), 'a', 0o644));
      base = { name: newBase, seq: rewriteSeq };
      incrs = incrs.filter((incr) => incr.seq >= rewriteSeq);
      if (incrs.length === 0) incrs = [{ name: newIncr, seq: rewriteSeq }];
      writeManifest();
      const keep = new Set([manifestName(), base.name, ...incrs.map((incr) => incr.name)]);
      for (const name of readdirSafe(dirPath())) {
        if (name.startsWith(`${state.filename}.`) && !keep.has(name)) rmSync(join(dirPath(), name), { force: true });
      }
      state.baseSize = data.length;
      state.currentSize = data.length + incrSize;
      return true;
    })().then(
      (ok) => {
        state.rewriteInProgress = undefined;
        state.lastRewriteSeconds = Math.round((Date.now() - started) / 1000);
        state.lastRewriteStatus = 'ok';
        state.rewrites++;
        logger.info({ base: newBase, bytes: data.length }, 'Background AOF rewrite finished successfully');
        if (state.rewriteScheduled) rewrite();
        return ok;
      },
      (error: unknown) => {
        state.rewriteInProgress = undefined;
        state.lastRewriteStatus = 'err';
        logger.error({ err: error }, 'Background AOF rewrite failed');
        return false;
      },
    );
    return true;
  };

  /** Turn the AOF on: Redis writes a rewrite first (the dataset as the base); false (and off) if it cannot start. */
  const enable = (): boolean => {
    if (state.enabled) return true;
    state.enabled = true;
    propagation.addSink(sink);
    if (rewrite()) return true;
    state.enabled = false;
    propagation.removeSink(sink);
    return false;
  };
  const disable = (): void => {
    if (!state.enabled) return;
    state.enabled = false;
    propagation.removeSink(sink);
    closeIncr();
  };

  // ---- Loading at start ---------------------------------------------------------------------------
  const load = (): boolean => {
    const manifestPath = join(dirPath(), manifestName());
    if (!existsSync(manifestPath)) return false;
    const entries = parseManifest(readFileSync(manifestPath, 'latin1'), manifestPath);
    const baseEntry = entries.find((entry) => entry.type === 'b');
    const incrEntries = entries.filter((entry) => entry.type === 'i').sort((a, b) => a.seq - b.seq);
    if (baseEntry === undefined && incrEntries.length === 0) throw new AofLoadError(manifestPath, 0, 'Found an empty AOF manifest');
    for (const db of keyspace.databases) db.clear();
    let total = 0;
    if (baseEntry !== undefined) {
      const path = join(dirPath(), baseEntry.name);
      const data = readFileSync(path);
      if (data.subarray(0, 5).toString('latin1') === 'REDIS') {
        try {
          loadRdb(server, data);
        } catch (error) {
          if (error instanceof RdbError) throw new AofLoadError(path, 0, `Bad file format (${error.message})`, error);
          throw error;
        }
      } else replay(path, data, incrEntries.length === 0);
      base = { name: baseEntry.name, seq: baseEntry.seq };
      seq = Math.max(seq, baseEntry.seq);
      total += data.length;
      state.baseSize = data.length;
    }
    incrEntries.forEach((incr, index) => {
      const path = join(dirPath(), incr.name);
      const data = existsSync(path) ? readFileSync(path) : Buffer.alloc(0);
      total += replay(path, data, index === incrEntries.length - 1);
      incrs.push({ name: incr.name, seq: incr.seq });
      seq = Math.max(seq, incr.seq);
    });
    state.currentSize = total;
    return true;
  };

  /** Replay one file; returns the bytes kept. Only the last file may be truncated. */
  const replay = (path: string, data: Buffer, last: boolean): number => {
    const parsed = parseAof(data);
    if (parsed.badAt !== undefined) {
      throw new AofLoadError(
        path,
        parsed.badAt,
        'Bad file format (make a backup of your AOF file, then use ./redis-check-aof --fix <filename.manifest>)',
      );
    }
    let commands = parsed.commands;
    let keep = data.length;
    // A MULTI without its EXEC at the end is a truncated transaction too (aof.c reverts it).
    let openMulti: number | undefined;
    for (const [index, { argv }] of commands.entries()) {
      const name = argv[0]?.toString('latin1').toLowerCase();
      if (name === 'multi') openMulti = index;
      else if (name === 'exec') openMulti = undefined;
    }
    let truncatedAt = parsed.truncatedAt;
    if (openMulti !== undefined) {
      truncatedAt = commands[openMulti]?.offset ?? truncatedAt;
      commands = commands.slice(0, openMulti);
    }
    if (truncatedAt !== undefined) {
      if (!last || !state.loadTruncated) {
        throw new AofLoadError(path, truncatedAt, 'Unexpected end of file (aof-load-truncated is no)');
      }
      logger.warn(
        { file: path, offset: truncatedAt, size: data.length },
        '!!! Warning: short read while loading the AOF file !!! Truncating the AOF at the last complete command',
      );
      const truncFd = openSync(path, 'r+');
      try {
        ftruncateSync(truncFd, truncatedAt);
        fsyncSync(truncFd);
      } finally {
        closeSync(truncFd);
      }
      keep = truncatedAt;
    }
    const client = replayClient();
    for (const { argv, offset } of commands) {
      const name = (argv[0] as Buffer).toString('latin1').toLowerCase();
      if (name === 'multi' || name === 'exec') continue;
      if (name === 'select') {
        const db = Number((argv[1] as Buffer).toString('latin1'));
        if (!Number.isInteger(db) || db < 0 || db >= keyspace.databases.length) throw new AofLoadError(path, offset, 'Bad SELECT');
        client.db = db;
        continue;
      }
      const spec = resp.lookup(name);
      if (spec === undefined) throw new AofLoadError(path, offset, `Unknown command '${name}'`);
      try {
        const result = spec.handler(client, argv as Command);
        if (result instanceof Promise) result.catch(() => {});
      } catch (error) {
        if (!(error instanceof RespError)) throw error;
        // Redis replays with a fake client and ignores the reply, errors included.
      }
      client.reply.take();
    }
    return keep;
  };

  // ---- Start ------------------------------------------------------------------------------------
  const wanted = (env['APPENDONLY'] ?? 'no').toLowerCase() === 'yes';
  if (wanted) {
    const started = Date.now();
    const loaded = load();
    if (loaded) {
      logger.info({ dir: dirPath(), ms: Date.now() - started }, 'DB loaded from append only file');
      state.enabled = true;
      propagation.addSink(sink);
      const last = incrs.at(-1);
      if (last !== undefined) openIncr(last.name);
      else {
        // A manifest with a base only: a new increment after it.
        seq++;
        incrs.push({ name: `${state.filename}.${seq}.incr.aof`, seq });
        openIncr(`${state.filename}.${seq}.incr.aof`);
        writeManifest();
      }
    } else if (!enable()) {
      // No AOF yet: a base of what there is (an RDB loaded just before, or nothing). Redis exits when
      // it cannot create the AOF at start ("Can't open the append-only file").
      throw new PortbindError(
        'PB_ERR_AOF_LOAD',
        `Can't open the append-only file in ${dirPath()}: ${strerror(lastStartError?.code)}`,
        lastStartError === undefined ? undefined : { cause: lastStartError },
      );
    }
  }

  // Auto rewrite (serverCron): the AOF grew by auto-aof-rewrite-percentage over the base.
  const autoTimer = setInterval(() => {
    if (!state.enabled || state.rewriteInProgress !== undefined || state.rewritePercentage === 0) return;
    if (state.currentSize < state.rewriteMinSize) return;
    const base = state.baseSize || 1;
    const growth = ((state.currentSize - base) * 100) / base;
    if (growth >= state.rewritePercentage) {
      logger.info({ growth: Math.round(growth) }, 'Starting automatic rewriting of AOF');
      rewrite();
    }
  }, 1000);
  autoTimer.unref();

  // ---- BGREWRITEAOF, CONFIG ---------------------------------------------------------------------
  resp.command(
    'bgrewriteaof',
    { arity: 1, flags: ['admin'], summary: 'Asynchronously rewrites the append-only file to disk.', group: 'server' },
    () => {
      if (state.rewriteInProgress !== undefined) {
        throw new RespError('ERR Background append only file rewriting already in progress');
      }
      if (rewrite()) return simple('Background append only file rewriting started');
      throw new RespError("ERR Can't execute an AOF background rewriting. Please check the server logs for more information.");
    },
  );

  config.set(
    'appendonly',
    yesNo(
      () => state.enabled,
      (on) => {
        if (!on) disable();
        else if (!enable()) throw new Error('Unable to turn on AOF. Check server logs.');
      },
    ),
  );
  config.set('appendfsync', {
    get: () => state.fsync,
    set(value) {
      const lower = value.toLowerCase();
      if (lower !== 'always' && lower !== 'everysec' && lower !== 'no')
        throw new Error('argument(s) must be one of the following: everysec, always, no');
      state.fsync = lower;
    },
  });
  config.set('appendfilename', { get: () => state.filename });
  config.set('appenddirname', { get: () => state.dirname });
  config.set(
    'aof-load-truncated',
    yesNo(
      () => state.loadTruncated,
      (value) => {
        state.loadTruncated = value;
      },
    ),
  );
  config.set('aof-use-rdb-preamble', {
    get: () => 'yes',
    set(value) {
      if (value.toLowerCase() !== 'yes') throw new Error('mini-redis always writes the base of its AOF as an RDB');
    },
  });
  config.set('auto-aof-rewrite-percentage', {
    get: () => String(state.rewritePercentage),
    set(value) {
      if (!/^\d+$/.test(value) || Number(value) > 2147483647) throw new Error('argument must be between 0 and 2147483647 inclusive');
      state.rewritePercentage = Number(value);
    },
  });
  config.set('auto-aof-rewrite-min-size', {
    get: () => String(state.rewriteMinSize),
    set(value) {
      const match = /^(\d+)(b|k|kb|m|mb|g|gb)?$/i.exec(value);
      if (match === null) throw new Error('argument must be a memory value');
      const units: Record<string, number> = { b: 1, k: 1000, kb: 1024, m: 1e6, mb: 1024 ** 2, g: 1e9, gb: 1024 ** 3 };
      state.rewriteMinSize = Number(match[1]) * (units[(match[2] ?? 'b').toLowerCase()] ?? 1);
    },
  });

  // INFO persistence: snapshot.ts owns the section and puts these after its rdb_* fields.
  addPersistenceInfo(server, () => aofInfo(server));
  // server.c's writeCommandsDeniedByDiskError: while the AOF is on and its last write (or fsync)
  // failed, writes are refused with the reason (snapshot.ts's check, after the RDB one).
  addDiskErrorCheck(server, () =>
    state.enabled && state.lastWriteStatus === 'err'
      ? `MISCONF Errors writing to the AOF file: ${strerror(state.writeError ?? state.fsyncError)}`
      : undefined,
  );

  return state;
}

/** APPENDFILENAME / APPENDDIRNAME: a name, not a path (Redis: "appendfilename can't be a path, just a filename"). */
function plainName(value: string | undefined, parameter: string): string | undefined {
  if (value === undefined || value === '') return undefined;
  if (value.includes('/') || value === '.' || value === '..') {
    throw new AofConfigError(`${parameter} can't be a path, just a filename: ${value}`);
  }
  return value;
}

/** A bad AOF setting in the environment (APPENDFILENAME, APPENDDIRNAME). */
export class AofConfigError extends PortbindError {
  constructor(message: string) {
    super('PB_ERR_AOF_CONFIG', message);
  }
}

/** glibc's strerror() for the codes a write or fsync gives (Redis prints errno this way); the code itself otherwise. */
const STRERROR: Record<string, string> = {
  ENOSPC: 'No space left on device',
  EIO: 'Input/output error',
  EDQUOT: 'Disk quota exceeded',
  EFBIG: 'File too large',
  EROFS: 'Read-only file system',
  EBADF: 'Bad file descriptor',
  EPIPE: 'Broken pipe',
  EINVAL: 'Invalid argument',
  EACCES: 'Permission denied',
  EPERM: 'Operation not permitted',
  EAGAIN: 'Resource temporarily unavailable',
  EINTR: 'Interrupted system call',
  ENXIO: 'No such device or address',
  ENODEV: 'No such device',
  ESTALE: 'Stale file handle',
};
export function strerror(code: string | undefined): string {
  if (code === undefined) return 'Success';
  return STRERROR[code] ?? code;
}

function readdirSafe(path: string): string[] {
  try {
    return readdirSync(path);
  } catch {
    return [];
  }
}
