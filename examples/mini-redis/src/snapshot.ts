import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { type Adapter, PortbindError, type PortService } from '@portbind/core';
import { OK, RespError, simple } from '@portbind/resp';
import type { MiniRedis } from './app.js';
import { yesNo } from './config.js';
import { encodeRdb, loadRdb, RdbError } from './rdb.js';

// RDB snapshots, as Redis's: the whole dataset written to `dir`/`dbfilename` by SAVE, BGSAVE, the
// save points (`save "3600 1 300 100 60 10000"`: after 3600 s if 1 key changed, …), SHUTDOWN and
// the graceful stop; read back at start.
//
// DATA_DIR turns it on: with it set, mini-redis loads DATA_DIR/dump.rdb at start and has Redis 7.0's
// default save points; without it, data lives in memory only (no file is read, no save point is
// set) and `dir` is the current directory, so SAVE still writes ./dump.rdb as Redis would. SAVE
// (the environment variable) sets the save points as Redis's `save` does (`SAVE=""`: none).
//
// BGSAVE: Redis forks, and the child writes a copy-on-write view of the data while the parent
// serves on. Node cannot fork a heap, a worker shares no Map, and encoding in slices between
// commands would write a snapshot of no single moment. So BGSAVE encodes the whole dataset into one
// buffer synchronously — a point-in-time snapshot, at the cost of blocking the event loop for the
// encoding (measured on a shared 2-core box, Node 20: 1M small string keys, a 25 MB file, take
// 1.0–1.5 s to encode, CRC-64 included, and about 1 s to load) and holding the file in memory once —
// then writes, fsyncs and renames it asynchronously while clients are served.

/** The state SAVE, BGSAVE, INFO persistence and CONFIG share. */
export interface SnapshotState {
  /** Redis's `dir` and `dbfilename`. */
  dir: string;
  dbfilename: string;
  /** `rdbcompression` (LZF for strings over 20 bytes; DUMP uses it too) and `rdbchecksum`. */
  compression: boolean;
  checksum: boolean;
  /** The save points: a BGSAVE after `seconds` if at least `changes` writes happened. */
  savePoints: Array<{ seconds: number; changes: number }>;
  /** Writes since the last successful save (Redis's `server.dirty` against the last save). */
  dirty: number;
  /** Unix time (s) of the last successful save, or of the start. */
  lastSave: number;
  /** When the last BGSAVE was tried (ms), for the 5 s retry delay after a failure. */
  lastTry: number;
  lastStatus: 'ok' | 'err';
  /** `stop-writes-on-bgsave-error`: after a failed BGSAVE (with save points), writes get -MISCONF. */
  stopWritesOnError: boolean;
  /** A BGSAVE writing now: when it started (ms), and its promise. */
  inProgress: { started: number; done: Promise<boolean>; cancelled: boolean } | undefined;
  /** BGSAVE SCHEDULE while one runs: another after it. */
  scheduled: boolean;
  lastBgsaveSeconds: number;
  saves: number;
  lastLoad: { loaded: number; expired: number };
}

const states = new WeakMap<object, SnapshotState>();

/** Redis 7.0's default save points. */
export const DEFAULT_SAVE = '3600 1 300 100 60 10000';
/** After a failed BGSAVE, the save points wait this long before trying again (CONFIG_BGSAVE_RETRY_DELAY). */
const RETRY_DELAY_MS = 5000;

/** Parse `save`'s value: pairs of seconds and changes, or "" for none; throws Redis's reason. */
export function parseSavePoints(value: string): Array<{ seconds: number; changes: number }> {
  const words = value.split(/\s+/).filter((word) => word !== '');
  if (words.length % 2 !== 0) throw new Error('Invalid save parameters');
  const points: Array<{ seconds: number; changes: number }> = [];
  for (let i = 0; i < words.length; i += 2) {
    const [seconds, changes] = [Number(words[i]), Number(words[i + 1])];
    if (!/^\d+$/.test(words[i] as string) || !/^\d+$/.test(words[i + 1] as string) || seconds < 1 || changes < 0) {
      throw new Error('Invalid save parameters');
    }
    points.push({ seconds, changes });
  }
  return points;
}

/** The snapshot state of a server (created with the environment's defaults on first use). */
export function snapshotState(server: Pick<MiniRedis, 'env'>): SnapshotState {
  let state = states.get(server);
  if (state === undefined) {
    const dataDir = server.env['DATA_DIR'];
    state = {
      dir: resolve(dataDir || '.'),
      dbfilename: 'dump.rdb',
      compression: true,
      checksum: true,
      savePoints: parseSavePoints(server.env['SAVE'] ?? (dataDir ? DEFAULT_SAVE : '')),
      dirty: 0,
      lastSave: Math.floor(Date.now() / 1000),
      lastTry: 0,
      lastStatus: 'ok',
      stopWritesOnError: true,
      inProgress: undefined,
      scheduled: false,
      lastBgsaveSeconds: -1,
      saves: 0,
      lastLoad: { loaded: 0, expired: 0 },
    };
    states.set(server, state);
  }
  return state;
}

/** INFO persistence's AOF fields, from the file that has the append-only file (aof.ts). */
const aofInfo = new WeakMap<object, () => Record<string, string | number>>();

/**
 * For aof.ts: give INFO persistence its aof_* fields (aof_enabled … aof_last_cow_size, in Redis's
 * order). snapshot.ts owns the section and puts them after the rdb_* fields, as Redis does.
 */
export function addPersistenceInfo(server: MiniRedis, fields: () => Record<string, string | number>): void {
  aofInfo.set(server, fields);
}

/** INFO persistence, in Redis 7.0.15's order. */
export function persistenceInfo(server: MiniRedis): Record<string, string | number> {
  const state = snapshotState(server);
  const now = Date.now();
  return {
    loading: 0, // a file loads before mini-redis accepts connections
    async_loading: 0,
    current_cow_peak: 0,
    current_cow_size: 0,
    current_cow_size_age: 0,
    current_fork_perc: '0.00',
    current_save_keys_processed: 0,
    current_save_keys_total: 0,
    rdb_changes_since_last_save: state.dirty,
    rdb_bgsave_in_progress: state.inProgress === undefined ? 0 : 1,
    rdb_last_save_time: state.lastSave,
    rdb_last_bgsave_status: state.lastStatus,
    rdb_last_bgsave_time_sec: state.lastBgsaveSeconds,
    rdb_current_bgsave_time_sec: state.inProgress === undefined ? -1 : Math.floor((now - state.inProgress.started) / 1000),
    rdb_saves: state.saves,
    rdb_last_cow_size: 0,
    rdb_last_load_keys_expired: state.lastLoad.expired,
    rdb_last_load_keys_loaded: state.lastLoad.loaded,
    ...(aofInfo.get(server)?.() ?? {
      aof_enabled: 0,
      aof_rewrite_in_progress: 0,
      aof_rewrite_scheduled: 0,
      aof_last_rewrite_time_sec: -1,
      aof_current_rewrite_time_sec: -1,
      aof_last_bgrewrite_status: 'ok',
      aof_rewrites: 0,
      aof_rewrites_consecutive_failures: 0,
      aof_last_write_status: 'ok',
      aof_last_cow_size: 0,
    }),
    module_fork_in_progress: 0,
    module_fork_last_cow_size: 0,
  };
}

/** The AOF's reason to refuse writes (aof.ts), checked after the RDB's. */
const aofDiskError = new WeakMap<object, () => string | undefined>();

/**
 * For aof.ts: the -MISCONF text while the append-only file cannot be written, else undefined.
 * snapshot.ts refuses writes for both reasons in one check, in Redis's order
 * (writeCommandsDeniedByDiskError: a failed BGSAVE first, then the AOF).
 */
export function addDiskErrorCheck(server: MiniRedis, error: () => string | undefined): void {
  aofDiskError.set(server, error);
}

/**
 * server.c's writeCommandsDeniedByDiskError with its message: the -MISCONF text (without the '-')
 * while writes must be refused (a failed BGSAVE with save points and stop-writes-on-bgsave-error, or
 * an AOF that cannot be written), else undefined. Scripts check it for the writes they make.
 */
export function writesDeniedByDiskError(server: MiniRedis): string | undefined {
  const state = snapshotState(server);
  if (state.stopWritesOnError && state.savePoints.length > 0 && state.lastStatus === 'err') return MISCONF;
  return aofDiskError.get(server)?.();
}

/** Each server's SAVE, for `afterFlushAll`. */
const saveFunctions = new WeakMap<object, () => boolean>();

/**
 * For FLUSHALL (call it after emptying the data), as Redis 7.0's flushAllDataAndResetRDB: a BGSAVE
 * writing now is cancelled (its file would bring the old data back), and with save points set, the
 * empty dataset is saved at once, so a restart does not resurrect what FLUSHALL removed.
 */
export function afterFlushAll(server: MiniRedis): void {
  const state = snapshotState(server);
  if (state.inProgress !== undefined) state.inProgress.cancelled = true;
  if (state.savePoints.length > 0) saveFunctions.get(server)?.();
}

/** Loading the snapshot at start failed: the file is truncated, corrupt or holds what mini-redis cannot. */
export class SnapshotLoadError extends PortbindError {
  readonly path: string;
  constructor(path: string, cause: Error) {
    super('PB_ERR_RDB_LOAD', `Cannot load ${path}: ${cause.message}`, { cause });
    this.path = path;
  }
}

/** Write `data` to `path` as Redis's rdbSave: a temp file in the same directory, fsync, rename, fsync of the directory. */
function writeAtomicallySync(dir: string, name: string, data: Buffer): void {
  mkdirSync(dir, { recursive: true });
  const temp = join(dir, `temp-${process.pid}.rdb`);
  const fd = openSync(temp, 'w', 0o644);
  try {
    let written = 0;
    while (written < data.length) written += writeSync(fd, data, written);
    fsyncSync(fd);
  } catch (error) {
    closeSync(fd);
    rmSync(temp, { force: true });
    throw error;
  }
  closeSync(fd);
  renameSync(temp, join(dir, name));
  const dirFd = openSync(dir, 'r');
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
}

/** BGSAVE's write: as `writeAtomicallySync`, off the event loop; false (nothing renamed) if `cancelled()` by then. */
async function writeAtomically(dir: string, name: string, data: Buffer, cancelled: () => boolean): Promise<boolean> {
  await mkdir(dir, { recursive: true });
  // Redis's child writes temp-<child pid>.rdb: a name of its own, apart from SAVE's.
  const temp = join(dir, `temp-bgsave-${process.pid}.rdb`);
  const file = await open(temp, 'w', 0o644);
  try {
    await file.writeFile(data);
    await file.sync();
  } catch (error) {
    await file.close();
    await rm(temp, { force: true });
    throw error;
  } finally {
    // close() twice is harmless for a FileHandle already closed above.
    await file.close().catch(() => {});
  }
  if (cancelled()) {
    await rm(temp, { force: true });
    return false;
  }
  await rename(temp, join(dir, name));
  const dirHandle = await open(dir, 'r');
  try {
    await dirHandle.sync();
  } finally {
    await dirHandle.close();
  }
  return true;
}

/**
 * SAVE, BGSAVE, LASTSAVE, SHUTDOWN, the save points and their CONFIG parameters and INFO fields,
 * loading `dir`/`dbfilename` now if DATA_DIR is set (a file that cannot be read: SnapshotLoadError).
 * `service` is what SHUTDOWN stops.
 */
/** server.c's shared.bgsaveerr. */
const MISCONF =
  "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk. Commands that may modify the data set are disabled, because this instance is configured to report errors during writes if RDB snapshotting fails (stop-writes-on-bgsave-error option). Please check the Redis logs for details about the RDB error.";

export function registerSnapshot(server: MiniRedis, service: PortService): void {
  const { resp, config, info } = server;
  const state = snapshotState(server);
  const path = () => join(state.dir, state.dbfilename);
  const log = service.logger;

  // ---- Load at start --------------------------------------------------------------------------
  if (server.env['DATA_DIR']) {
    let data: Buffer | undefined;
    try {
      data = readFileSync(path());
    } catch (error) {
      // No file yet: an empty dataset, as Redis. Anything else (a directory, no permission): stop.
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw new SnapshotLoadError(path(), error as Error);
    }
    if (data !== undefined) {
      const started = Date.now();
      try {
        const { loaded, expired } = loadRdb(server, data, { checksum: state.checksum });
        state.lastLoad = { loaded, expired };
      } catch (error) {
        if (error instanceof RdbError) throw new SnapshotLoadError(path(), error);
        throw error;
      }
      log.info(
        { file: path(), keys: state.lastLoad.loaded, expired: state.lastLoad.expired, ms: Date.now() - started },
        'DB loaded from disk',
      );
    }
  }

  // ---- Counting changes -----------------------------------------------------------------------
  // Every write reaches resp.touch (and FLUSHDB/FLUSHALL touchAll): each is a change for the save points.
  const touch = resp.touch.bind(resp);
  resp.touch = (db, key) => {
    state.dirty++;
    touch(db, key);
  };
  const touchAll = resp.touchAll.bind(resp);
  resp.touchAll = (db, exists) => {
    state.dirty++;
    touchAll(db, exists);
    // FLUSHALL touches every database (-1) and then empties them: once it has, `afterFlushAll`.
    if (db === -1) queueMicrotask(() => afterFlushAll(server));
  };
  // FUNCTION LOAD/DELETE/FLUSH/RESTORE are changes too (functions.c: server.dirty++).
  if (server.functions !== undefined) server.functions.onChange = () => state.dirty++;

  const encode = (): Buffer => encodeRdb(server, { compression: state.compression, checksum: state.checksum });

  /** SAVE: encode and write now; true if it worked. */
  const saveNow = (): boolean => {
    try {
      const before = state.dirty;
      writeAtomicallySync(state.dir, state.dbfilename, encode());
      state.dirty -= before;
      state.lastSave = Math.floor(Date.now() / 1000);
      state.lastStatus = 'ok';
      state.saves++;
      log.info({ file: path() }, 'DB saved on disk');
      return true;
    } catch (error) {
      // rdb.c's rdbSave sets lastbgsave_status only when it works: a failed SAVE leaves it be.
      log.error({ err: error, file: path() }, 'failed saving the DB');
      return false;
    }
  };

  /** BGSAVE: encode now (a snapshot of this moment), write in the background. */
  const saveInBackground = (): boolean => {
    const started = Date.now();
    state.lastTry = started;
    let data: Buffer;
    try {
      data = encode();
    } catch (error) {
      log.error({ err: error }, 'background saving failed');
      state.lastStatus = 'err';
      return false;
    }
    const before = state.dirty;
    const job = { started, done: Promise.resolve(false), cancelled: false };
    job.done = writeAtomically(state.dir, state.dbfilename, data, () => job.cancelled).then(
      (written) => {
        if (!written) {
          log.info('Background saving cancelled (FLUSHALL)');
          return false;
        }
        state.dirty -= before;
        state.lastSave = Math.floor(Date.now() / 1000);
        state.lastStatus = 'ok';
        state.saves++;
        log.info({ file: path() }, 'Background saving terminated with success');
        return true;
      },
      (error: unknown) => {
        state.lastStatus = 'err';
        log.error({ err: error, file: path() }, 'Background saving error');
        return false;
      },
    );
    const done = job.done;
    state.inProgress = job;
    void done.then(() => {
      state.inProgress = undefined;
      state.lastBgsaveSeconds = Math.floor((Date.now() - started) / 1000);
      if (state.scheduled) {
        state.scheduled = false;
        saveInBackground();
      }
    });
    return true;
  };

  saveFunctions.set(server, saveNow);

  // ---- Save points (Redis's serverCron, once a second) ----------------------------------------
  const cron = setInterval(() => {
    if (state.inProgress !== undefined) return;
    const now = Date.now();
    if (state.scheduled) {
      state.scheduled = false;
      saveInBackground();
      return;
    }
    for (const point of state.savePoints) {
      if (
        state.dirty >= point.changes &&
        now / 1000 - state.lastSave > point.seconds &&
        (state.lastStatus === 'ok' || now - state.lastTry > RETRY_DELAY_MS)
      ) {
        log.info({ changes: point.changes, seconds: point.seconds }, 'save point reached: saving');
        saveInBackground();
        break;
      }
    }
  }, 1000);
  cron.unref();

  // ---- Stop: a last save when save points are set, as Redis's prepareForShutdown --------------
  let shutdownSaved = false;
  const adapter: Adapter = resp;
  const stopped = adapter.stopped?.bind(resp);
  adapter.stopped = async () => {
    clearInterval(cron);
    await stopped?.();
    await state.inProgress?.done;
    if (!shutdownSaved && state.savePoints.length > 0) {
      log.info('saving the final RDB snapshot before exiting');
      saveNow();
    }
  };

  // ---- Commands -------------------------------------------------------------------------------
  const group = 'server';
  resp.command('save', { arity: 1, flags: ['admin'], summary: 'Synchronously saves the database(s) to disk.', group }, () => {
    if (state.inProgress !== undefined) throw new RespError('ERR Background save already in progress');
    if (saveNow()) return OK;
    throw new RespError('ERR');
  });

  resp.command(
    'bgsave',
    { arity: -1, flags: ['admin'], summary: 'Asynchronously saves the database(s) to disk.', group },
    (_client, argv) => {
      let schedule = false;
      if (argv.length > 1) {
        if (argv.length === 2 && (argv[1] as Buffer).toString('latin1').toLowerCase() === 'schedule') schedule = true;
        else throw new RespError('ERR syntax error');
      }
      if (state.inProgress !== undefined) {
        // Redis answers this even with SCHEDULE when the running child is an RDB save.
        if (!schedule) throw new RespError('ERR Background save already in progress');
        state.scheduled = true;
        return simple('Background saving scheduled');
      }
      if (saveInBackground()) return simple('Background saving started');
      throw new RespError('ERR');
    },
  );

  resp.command(
    'lastsave',
    { arity: 1, flags: ['fast'], summary: 'Returns the Unix timestamp of the last successful save to disk.', group },
    () => state.lastSave,
  );

  resp.command(
    'shutdown',
    {
      arity: -1,
      flags: ['admin'],
      summary: 'Synchronously saves the database(s) to disk and shuts down the Redis server.',
      group,
    },
    (client, argv) => {
      let save: boolean | undefined;
      let now = false;
      let force = false;
      let abort = false;
      for (const arg of argv.slice(1)) {
        const option = (arg as Buffer).toString('latin1').toLowerCase();
        if (option === 'nosave' && save !== true) save = false;
        else if (option === 'save' && save !== false) save = true;
        else if (option === 'now') now = true;
        else if (option === 'force') force = true;
        else if (option === 'abort') abort = true;
        else throw new RespError('ERR syntax error');
      }
      if (abort && (save !== undefined || now || force)) throw new RespError('ERR syntax error');
      if (abort) throw new RespError('ERR No shutdown in progress.');
      if (save ?? state.savePoints.length > 0) {
        if (!saveNow() && !force) throw new RespError('ERR Errors trying to SHUTDOWN. Check logs.');
      }
      shutdownSaved = true;
      log.info({ client: client.id }, 'User requested shutdown...');
      client.closeAfterReply();
      void service.stop();
      return undefined;
    },
  );

  // ---- CONFIG parameters and INFO -------------------------------------------------------------
  config.set(
    'stop-writes-on-bgsave-error',
    yesNo(
      () => state.stopWritesOnError,
      (value) => {
        state.stopWritesOnError = value;
      },
    ),
  );
  // server.c's processCommand: while the last BGSAVE failed, save points are set and
  // stop-writes-on-bgsave-error is yes, or while the AOF cannot be written (aof.ts), a write (an
  // EXEC that queued one) or PING is refused.
  resp.addCheck((client, spec) => {
    const denied = writesDeniedByDiskError(server);
    if (denied === undefined) return undefined;
    const write =
      spec.name === 'exec'
        ? (client.multi ?? []).some((argv) => resp.lookup(argv[0]?.toString('latin1').toLowerCase() ?? '')?.flags?.includes('write'))
        : spec.name === 'ping' || spec.flags?.includes('write') === true;
    return write ? denied : undefined;
  });
  config.set('save', {
    get: () => state.savePoints.map(({ seconds, changes }) => `${seconds} ${changes}`).join(' '),
    set(value) {
      state.savePoints = parseSavePoints(value);
    },
  });
  // PROTECTED_CONFIG in Redis 7.0 (enable-protected-configs no): set at start (DATA_DIR), not by
  // clients — CONFIG SET dir was the classic way to make a server write files where it should not.
  const protectedSetting = (get: () => string) => ({
    get,
    set(value: string) {
      if (value !== get()) throw new Error("can't set protected config");
    },
  });
  config.set(
    'dir',
    protectedSetting(() => state.dir),
  );
  config.set(
    'dbfilename',
    protectedSetting(() => state.dbfilename),
  );
  config.set(
    'rdbcompression',
    yesNo(
      () => state.compression,
      (value) => {
        state.compression = value;
      },
    ),
  );
  // Immutable in Redis 7.0 (a config file sets it): CONFIG SET answers "can't set immutable config".
  config.set('rdbchecksum', { get: () => (state.checksum ? 'yes' : 'no') });
  info.set('persistence', () => persistenceInfo(server));
}
