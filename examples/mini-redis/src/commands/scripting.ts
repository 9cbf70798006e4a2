import {
  type CommandFlag,
  type CommandHandler,
  type CommandOptions,
  integerArg,
  type KeySpec,
  OK,
  type ReplyValue,
  type RespClient,
  RespError,
  ScriptClient,
  type SubcommandOptions,
  simple,
} from '@portbind/resp';
import type { MiniRedis } from '../app.js';
import { integer } from '../config.js';
import { helpReply } from '../help.js';
import { type FunctionLibraries, verifyDumpPayload } from '../rdb.js';
import { type Callable, LuaEngine, ScriptError, shebang } from '../scripting/engine.js';
import { dumpFunctions, PayloadError, readFunctions } from '../scripting/function-payload.js';
import { Functions } from '../scripting/functions.js';
import { snapshotState, writesDeniedByDiskError } from '../snapshot.js';

// EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT, on one Lua VM (wasmoon: Lua 5.4 in WebAssembly;
// scripting/engine.ts). A script runs synchronously, as in Redis: nothing else runs meanwhile.
// Its commands run through ScriptClient (@portbind/resp), Redis's fake script client.

const group = 'scripting';
const BUSY_EVAL = 'BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.';
const BUSY_FUNCTION = 'BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.';
const text = (arg: Buffer | undefined): string => (arg as Buffer).toString('latin1');

/** The Lua VM's heap limit: a script allocating past it fails with "not enough memory". */
export const LUA_MEMORY_LIMIT = 64 * 1024 * 1024;
/** Scripts EVAL added that the cache keeps (least recently used out first, as Redis 7.4); SCRIPT LOAD'ed ones stay. */
export const EVAL_CACHE_SIZE = 500;

const scriptHelp = [
  'DEBUG (YES|SYNC|NO)',
  '    Set the debug mode for subsequent scripts executed.',
  'EXISTS <sha1> [<sha1> ...]',
  '    Return information about the existence of the scripts in the script cache.',
  'FLUSH [ASYNC|SYNC]',
  '    Flush the Lua scripts cache. Very dangerous on replicas.',
  '    When called without the optional mode argument, the behavior is determined by the',
  '    lazyfree-lazy-user-flush configuration directive. Valid modes are:',
  '    * ASYNC: Asynchronously flush the scripts cache.',
  '    * SYNC: Synchronously flush the scripts cache.',
  'KILL',
  '    Kill the currently executing Lua script.',
  'LOAD <script>',
  '    Load a script into the scripts cache without executing it.',
];

/** Redis 7.0's CMD_ALLOW_BUSY commands (SCRIPT KILL, FUNCTION KILL/STATS, AUTH, HELLO, QUIT, RESET, SHUTDOWN, MULTI, DISCARD, WATCH, UNWATCH, REPLCONF). */
function allowedWhileBusy(argv: readonly Buffer[]): boolean {
  const name = (argv[0] as Buffer).toString('latin1').toLowerCase();
  if (['auth', 'hello', 'quit', 'reset', 'replconf', 'shutdown', 'discard', 'multi', 'unwatch', 'watch'].includes(name)) return true;
  const sub = argv[1]?.toString('latin1').toLowerCase();
  return (name === 'script' && sub === 'kill') || (name === 'function' && (sub === 'kill' || sub === 'stats'));
}

/** Redis's bytesToHuman: `31.00K`, `1.50M`. */
function human(bytes: number): string {
  const units = ['B', 'K', 'M', 'G', 'T', 'P'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes}B` : `${value.toFixed(2)}${units[unit]}`;
}

/** `ip:port` as MONITOR shows a client. */
function addressOf(client: RespClient): string {
  const ip = client.conn.remoteAddress;
  if (ip === undefined) return 'unix:0';
  return ip.includes(':') ? `[${ip}]:${client.conn.remotePort ?? 0}` : `${ip}:${client.conn.remotePort ?? 0}`;
}

export function registerScriptingCommands(server: MiniRedis): void {
  const { resp, keyspace, blocked, config, info, propagation, env } = server;
  const scripts = new ScriptClient(resp);
  let timeLimitMs = 5000;
  const limit = integer(
    0,
    Number.MAX_SAFE_INTEGER,
    () => timeLimitMs,
    (value) => {
      timeLimitMs = value;
    },
  );
  config.set('busy-reply-threshold', limit);
  config.set('lua-time-limit', limit);

  /**
   * A write command a script calls while the disk cannot take writes (a failed BGSAVE with save
   * points, an AOF that cannot be written): Redis's -MISCONF text, as script.c's
   * scriptVerifyWriteCommandAllow — unless the script already wrote (it cannot stop halfway).
   * Unknown commands, wrong arity and noscript commands get ScriptClient's own errors first.
   */
  const refuseWrite = (argv: readonly Buffer[]): string | undefined => {
    if (scripts.wrote) return undefined;
    const denied = writesDeniedByDiskError(server);
    if (denied === undefined || argv[0] === undefined || argv[0].length > 64) return undefined;
    const spec = resp.lookup(text(argv[0]).toLowerCase());
    if (spec === undefined || (spec.arity >= 0 ? argv.length !== spec.arity : argv.length < -spec.arity)) return undefined;
    const declared = argv[1] !== undefined && argv[1].length <= 64 ? spec.subcommands?.[text(argv[1]).toLowerCase()] : undefined;
    const subFlags = declared === undefined ? [] : 'arity' in declared ? (declared.flags ?? []) : declared;
    const flags = [...(spec.flags ?? []), ...subFlags];
    if (flags.includes('noscript') || !flags.includes('write')) return undefined;
    return denied;
  };
  /** A script (or function) that may write refused before it runs, as processCommand refuses a write command. */
  const refuseWriter = (): void => {
    const denied = writesDeniedByDiskError(server);
    if (denied !== undefined) throw new RespError(denied);
  };

  let engine: LuaEngine | undefined;
  const ready = LuaEngine.create(scripts, {
    memoryLimit: LUA_MEMORY_LIMIT,
    evalCacheSize: EVAL_CACHE_SIZE,
    version: '7.0.15',
    exists: (name) => name.length <= 64 && resp.lookup(name) !== undefined,
    refuseWrite: (argv) => refuseWrite(argv),
    onBusy: (on) => {
      // While a script is busy nothing else may change the data: no active expiry either.
      if (on) keyspace.stopExpiry();
      else keyspace.startExpiry();
    },
    log: (level, message) => {
      // redis.log: to stderr, as Redis writes its log, at LOG_NOTICE and above (Redis's default verbosity).
      if (level >= 2 && env['LUA_LOG'] !== 'off')
        process.stderr.write(`${process.pid}:M ${new Date().toISOString()} ${'.-*#'[level]} ${message}\n`);
    },
  }).then((created) => {
    engine = created;
    return created;
  });
  ready.catch(() => {});

  // INFO memory: Redis 7.0's fields for EVAL's VM and script cache.
  const memorySection = info.get('memory');
  info.set('memory', () => {
    const vm = engine?.memoryUsed ?? 0;
    const scriptsBytes = engine?.cachedBytes ?? 0;
    return {
      ...memorySection?.(),
      used_memory_lua: vm,
      used_memory_vm_eval: vm,
      used_memory_lua_human: human(vm),
      used_memory_scripts_eval: scriptsBytes,
      number_of_cached_scripts: engine?.scriptCount ?? 0,
      number_of_functions: functions.functionCount,
      number_of_libraries: functions.libraryCount,
      used_memory_vm_functions: 0,
      used_memory_vm_total: vm,
      used_memory_vm_total_human: human(vm),
      used_memory_functions: 0,
      used_memory_scripts: scriptsBytes,
      used_memory_scripts_human: human(scriptsBytes),
    };
  });

  const keysOf = (argv: readonly Buffer[]): readonly Buffer[] => {
    const numkeys = Number(argv[2]?.toString('latin1'));
    if (!Number.isSafeInteger(numkeys) || numkeys <= 0 || numkeys > argv.length - 3) return [];
    return argv.slice(3, 3 + numkeys);
  };
  // The commands a script ran make one unit for the AOF and replicas (MULTI/EXEC around more than one), as Redis 7.0's effects replication.
  const unit = (options: CommandOptions, handler: CommandHandler): CommandHandler => propagation.wrap('exec', options, handler);

  /** `numkeys`: Redis's checks and texts, in evalGenericCommand's order. */
  const numkeysOf = (argv: Buffer[]): number => {
    const numkeys = integerArg(argv[2]);
    if (numkeys > argv.length - 3) throw new RespError("ERR Number of keys can't be greater than number of args");
    if (numkeys < 0) throw new RespError("ERR Number of keys can't be negative");
    return numkeys;
  };

  const evaluate = (client: RespClient, argv: Buffer[], bySha: boolean, ro: boolean, lua: LuaEngine): Promise<undefined> | undefined => {
    if (bySha && argv[1]?.length !== 40) throw new RespError('NOSCRIPT No matching script. Please use EVAL.');
    const numkeys = numkeysOf(argv);
    let script: ReturnType<LuaEngine['load']> | undefined;
    if (bySha) {
      script = lua.get(text(argv[1]));
      if (script === undefined) throw new RespError('NOSCRIPT No matching script. Please use EVAL.');
    } else {
      try {
        script = lua.load(argv[1] as Buffer, false);
      } catch (error) {
        if (error instanceof ScriptError) throw new RespError(error.message);
        throw error;
      }
    }
    const flags = script.flags;
    if (!flags.compat) {
      // processCommand's checks on the flags the shebang gives the command (OOM, then the disk), then evalGenericCommand's.
      if (!flags.noWrites && !flags.allowOom && resp.options.outOfMemory?.() === true)
        throw new RespError("OOM command not allowed when used memory > 'maxmemory'."); // as processCommand refuses a command its (shebang) flags make denyoom
      if (!flags.noWrites) refuseWriter();
      if (ro && !flags.noWrites) throw new RespError('ERR Can not execute a script with write flag using *_ro command.');
    }
    return runCallable(lua, script, client, argv, numkeys, {
      readOnly: ro || (!flags.compat && flags.noWrites),
      allowOom: !flags.compat && (flags.allowOom || flags.noWrites),
    });
  };

  /** Run a script or a function for `client`; its error (if any) fails the command. */
  const runCallable = (
    lua: LuaEngine,
    callable: Callable,
    client: RespClient,
    argv: Buffer[],
    numkeys: number,
    mode: { readOnly: boolean; allowOom: boolean },
  ): Promise<undefined> => {
    const fail = (failed: string | undefined): void => {
      if (failed !== undefined) throw new RespError(failed);
    };
    const run = (): void | Promise<void> => {
      const failed = lua.run(callable, {
        caller: client,
        keys: argv.slice(3, 3 + numkeys),
        args: argv.slice(3 + numkeys),
        ...mode,
        busyAfterMs: timeLimitMs,
      });
      if (failed instanceof Promise) return failed.then(fail);
      fail(failed);
    };
    // A blocking command (BLMPOP…) answers at once inside a script, as inside EXEC; clients
    // blocked on keys the script pushed to are served once it is done.
    return blocked.transaction(scripts.client as unknown as RespClient, run).then(() => undefined);
  };

  // ---- FCALL, FCALL_RO, FUNCTION -----------------------------------------------------------------
  const functions = new Functions();
  // The libraries as an RDB file holds them (rdb.ts): a load before the VM is ready waits for it
  // (and runs before any FUNCTION or FCALL queued on it, which waits the same way).
  let pendingLibraries: readonly Buffer[] | undefined;
  const libraries: FunctionLibraries = {
    codes: () => (pendingLibraries !== undefined ? [...pendingLibraries] : functions.list(undefined).map((library) => library.code)),
    replace: (codes) => {
      if (engine !== undefined) {
        functions.restore(engine, codes, 'flush');
        return;
      }
      pendingLibraries = codes;
      void ready.then((lua) => {
        if (pendingLibraries !== codes) return; // a later load replaced these
        pendingLibraries = undefined;
        try {
          functions.restore(lua, codes, 'flush');
        } catch (error) {
          process.stderr.write(`${process.pid}:M ${new Date().toISOString()} # Failed loading library, ${(error as Error).message}\n`);
        }
      });
    },
    onChange: undefined,
  };
  server.functions = libraries;
  /** A change of the libraries: it replays (propagate.ts) and counts for the save points (snapshot.ts). */
  const changed = (): void => {
    propagation.dirty++;
    libraries.onChange?.();
  };
  const fcall = (client: RespClient, argv: Buffer[], ro: boolean, lua: LuaEngine): Promise<undefined> => {
    const fn = functions.get(text(argv[1]));
    if (fn === undefined) throw new RespError('ERR Function not found');
    const numkeys = integerArg(argv[2], 'ERR Bad number of keys provided');
    if (numkeys > argv.length - 3) throw new RespError("ERR Number of keys can't be greater than number of args");
    if (numkeys < 0) throw new RespError("ERR Number of keys can't be negative");
    // processCommand's checks on the flags the function gives FCALL (OOM, then the disk), then fcallCommandGeneric's.
    if (!fn.noWrites && !fn.allowOom && resp.options.outOfMemory?.() === true)
      throw new RespError("OOM command not allowed when used memory > 'maxmemory'.");
    if (!fn.noWrites) refuseWriter();
    if (ro && !fn.noWrites) throw new RespError('ERR Can not execute a script with write flag using *_ro command.');
    return runCallable(lua, { name: fn.name, ref: fn.ref, function: true }, client, argv, numkeys, {
      readOnly: ro || fn.noWrites,
      allowOom: fn.allowOom || fn.noWrites,
    });
  };
  const fcallHandler =
    (ro: boolean): CommandHandler =>
    (client, argv) => {
      scripts.feedMonitors(client.db, addressOf(client), argv);
      if (engine !== undefined) return fcall(client, argv, ro, engine);
      return ready.then((lua) => fcall(client, argv, ro, lua));
    };
  const fcallOpts = (summary: string, readonly: boolean): CommandOptions => ({
    arity: -3,
    flags: scriptFlags(readonly),
    // CLIENT PAUSE WRITE holds a function that may write (fcallGetCommandFlags); an unknown one as FCALL's flags say.
    pausedByWrite: (argv) => {
      const fn = argv[1] === undefined ? undefined : functions.get(text(argv[1]));
      return fn === undefined ? !readonly : !fn.noWrites;
    },
    keySpecs: scriptKeySpecs(readonly, true),
    keysOf,
    summary,
    group,
    since: '7.0.0',
  });
  const fcallOptions = fcallOpts('Invokes a function.', false);
  resp.command('fcall', fcallOptions, unit(fcallOptions, fcallHandler(false)));
  const fcallRoOptions = fcallOpts('Invokes a read-only function.', true);
  resp.command('fcall_ro', fcallRoOptions, unit(fcallRoOptions, fcallHandler(true)));

  // FUNCTION: libraries of functions (scripting/functions.ts).
  const functionSubcommands: Record<
    string,
    { arity: number; run: (client: RespClient, argv: Buffer[], lua: LuaEngine) => ReturnType<CommandHandler> }
  > = {
    load: {
      arity: -3,
      run: (_client, argv, lua) => {
        let replace = false;
        let i = 2;
        for (; i < argv.length - 1; i++) {
          if (text(argv[i]).toUpperCase() === 'REPLACE') replace = true;
          else throw new RespError(`ERR Unknown option given: ${text(argv[i])}`);
        }
        const code = argv[i];
        if (code === undefined) throw new RespError('ERR Function code is missing');
        try {
          const name = functions.load(lua, code, replace);
          changed();
          return name;
        } catch (error) {
          if (error instanceof ScriptError) throw new RespError(error.message);
          throw error;
        }
      },
    },
    delete: {
      arity: 3,
      run: (_client, argv, lua) => {
        if (!functions.delete(lua, text(argv[2]))) throw new RespError('ERR Library not found');
        changed();
        return OK;
      },
    },
    flush: {
      arity: -2,
      run: (_client, argv, lua) => {
        if (argv.length > 3)
          throw new RespError(`ERR unknown subcommand or wrong number of arguments for '${text(argv[1])}'. Try FUNCTION HELP.`);
        const mode = argv.length === 3 ? text(argv[2]).toUpperCase() : 'SYNC';
        if (mode !== 'SYNC' && mode !== 'ASYNC') throw new RespError('ERR FUNCTION FLUSH only supports SYNC|ASYNC option');
        functions.flush(lua);
        changed(); // even with nothing to flush, as functionFlushCommand
        return OK;
      },
    },
    list: {
      arity: -2,
      run: (_client, argv) => {
        let pattern: string | undefined;
        let withCode = false;
        for (let i = 2; i < argv.length; i++) {
          const option = text(argv[i]).toUpperCase();
          if (option === 'WITHCODE') withCode = true;
          else if (option === 'LIBRARYNAME') {
            if (i + 1 >= argv.length) throw new RespError('ERR library name argument was not given');
            pattern = text(argv[++i]);
          } else throw new RespError(`ERR Unknown argument ${text(argv[i])}`);
        }
        return functions.list(pattern).map((library) => {
          const entries: Array<[ReplyValue, ReplyValue]> = [
            ['library_name', library.name],
            ['engine', 'LUA'],
            [
              'functions',
              library.functions.map(
                (fn) =>
                  new Map<ReplyValue, ReplyValue>([
                    ['name', fn.name],
                    ['description', fn.description ?? null],
                    ['flags', new Set<ReplyValue>(fn.flags.map((flag) => simple(flag)))],
                  ]),
              ),
            ],
          ];
          if (withCode) entries.push(['library_code', library.code]);
          return new Map<ReplyValue, ReplyValue>(entries);
        });
      },
    },
    stats: {
      arity: 2,
      run: (_client, _argv, lua) => {
        const running = lua.running;
        return new Map<ReplyValue, ReplyValue>([
          [
            'running_script',
            running === undefined
              ? null
              : new Map<ReplyValue, ReplyValue>([
                  ['name', running.name],
                  ['command', running.caller.lastCommand],
                  ['duration_ms', Date.now() - running.startedAt],
                ]),
          ],
          [
            'engines',
            new Map<ReplyValue, ReplyValue>([
              [
                'LUA',
                new Map<ReplyValue, ReplyValue>([
                  ['libraries_count', functions.libraryCount],
                  ['functions_count', functions.functionCount],
                ]),
              ],
            ]),
          ],
        ]);
      },
    },
    dump: {
      arity: 2,
      run: () =>
        dumpFunctions(
          functions.list(undefined).map((library) => library.code),
          snapshotState(server).compression,
        ),
    },
    restore: {
      arity: -3,
      run: (_client, argv, lua) => {
        if (argv.length > 4)
          throw new RespError(`ERR unknown subcommand or wrong number of arguments for '${text(argv[1])}'. Try FUNCTION HELP.`);
        const policy = argv.length === 4 ? text(argv[3]).toLowerCase() : 'append';
        if (policy !== 'append' && policy !== 'replace' && policy !== 'flush')
          throw new RespError('ERR Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE.');
        const payload = argv[2] as Buffer;
        if (!verifyDumpPayload(payload)) throw new RespError('ERR DUMP payload version or checksum are wrong');
        try {
          functions.restore(lua, readFunctions(payload), policy);
        } catch (error) {
          if (error instanceof PayloadError) throw new RespError(`ERR ${error.message}`);
          if (error instanceof ScriptError) throw new RespError(error.message);
          throw error;
        }
        changed();
        return OK;
      },
    },
    kill: { arity: 2, run: (_client, _argv, lua) => kill(lua, true) },
    help: { arity: 2, run: () => helpReply('FUNCTION', FUNCTION_HELP) },
  };
  resp.command(
    'function',
    {
      arity: -2,
      summary: 'A container for function commands.',
      group,
      // Their arity, flags and tips as Redis's (COMMAND INFO).
      subcommands: declare(functionSubcommands, {
        load: [['write', 'denyoom', 'noscript'], ALL_SHARDS_SUCCEEDED],
        delete: [['write', 'noscript'], ALL_SHARDS_SUCCEEDED],
        flush: [['write', 'noscript'], ALL_SHARDS_SUCCEEDED],
        list: [['noscript'], ['nondeterministic_output_order']],
        stats: [
          ['noscript', 'allow_busy'],
          ['nondeterministic_output', 'request_policy:all_shards', 'response_policy:special'],
        ],
        kill: [
          ['noscript', 'allow_busy'],
          ['request_policy:all_shards', 'response_policy:one_succeeded'],
        ],
        help: [['loading', 'stale']],
        dump: [['noscript']],
        restore: [['write', 'denyoom', 'noscript'], ALL_SHARDS_SUCCEEDED],
      }),
    },
    (client, argv) => {
      const name = text(argv[1]).toLowerCase();
      const sub = Object.hasOwn(functionSubcommands, name) ? functionSubcommands[name] : undefined;
      if (sub === undefined) throw new RespError(`ERR unknown subcommand '${text(argv[1]).slice(0, 128)}'. Try FUNCTION HELP.`);
      const arityOk = sub.arity >= 0 ? argv.length === sub.arity : argv.length >= -sub.arity;
      if (!arityOk) throw new RespError(`ERR wrong number of arguments for 'function|${name}' command`);
      if (engine !== undefined) return sub.run(client, argv, engine);
      // The VM not ready yet: what the subcommand changes replays once it ran (the wrapper saw no change).
      return ready.then((lua) => {
        const dirty = propagation.dirty;
        const result = sub.run(client, argv, lua);
        if (propagation.dirty !== dirty) propagation.also(client.db, argv);
        return result;
      });
    },
  );

  /** SCRIPT KILL (`byFunction` false) and FUNCTION KILL (true): scriptKill in script.c. */
  const kill = (lua: LuaEngine, byFunction: boolean): ReplyValue => {
    const running = lua.running;
    if (running === undefined) throw new RespError('NOTBUSY No scripts in execution right now.');
    if (running.wrote)
      throw new RespError(
        'UNKILLABLE Sorry the script already executed write commands against the dataset. You can either wait the script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command.',
      );
    if (!byFunction && running.function) throw new RespError(BUSY_FUNCTION);
    if (byFunction && !running.function) throw new RespError(BUSY_EVAL);
    lua.kill();
    return OK;
  };

  const evalHandler =
    (bySha: boolean, ro: boolean): CommandHandler =>
    (client, argv) => {
      // Redis prints EVAL to MONITOR before its script's commands (EVAL is flagged skip_monitor so the adapter does not again).
      scripts.feedMonitors(client.db, addressOf(client), argv);
      if (engine !== undefined) return evaluate(client, argv, bySha, ro, engine);
      return ready.then((lua) => evaluate(client, argv, bySha, ro, lua));
    };

  // `skip_monitor` keeps the adapter from printing EVAL to MONITOR after the script (see above).
  const evalOptions = (summary: string, readonly: boolean, bySha: boolean): CommandOptions => ({
    arity: -3,
    flags: scriptFlags(readonly),
    // CLIENT PAUSE WRITE holds a script that may write (evalGetCommandFlags): one whose shebang lacks `no-writes`;
    // without a shebang, an unknown SHA or a bad shebang, the command's own flags decide (EVAL and EVALSHA may
    // replicate, the _RO ones do not).
    pausedByWrite: (argv) => {
      let flags: { compat: boolean; noWrites: boolean } | undefined;
      try {
        flags = bySha
          ? argv[1] === undefined
            ? undefined
            : engine?.get(text(argv[1]))?.flags
          : argv[1] === undefined
            ? undefined
            : shebang(argv[1]).flags;
      } catch {
        flags = undefined;
      }
      return flags === undefined || flags.compat ? !readonly : !flags.noWrites;
    },
    keySpecs: scriptKeySpecs(readonly, !bySha),
    keysOf,
    summary,
    group,
    since: readonly ? '7.0.0' : '2.6.0',
  });
  const evalOpts = evalOptions('Executes a server-side Lua script.', false, false);
  resp.command('eval', evalOpts, unit(evalOpts, evalHandler(false, false)));
  const evalShaOpts = evalOptions('Executes a server-side Lua script by SHA1 digest.', false, true);
  resp.command('evalsha', evalShaOpts, unit(evalShaOpts, evalHandler(true, false)));
  const evalRoOpts = evalOptions('Executes a read-only server-side Lua script.', true, false);
  resp.command('eval_ro', evalRoOpts, unit(evalRoOpts, evalHandler(false, true)));
  const evalShaRoOpts = evalOptions('Executes a read-only server-side Lua script by SHA1 digest.', true, true);
  resp.command('evalsha_ro', evalShaRoOpts, unit(evalShaRoOpts, evalHandler(true, true)));

  // ---- -BUSY ---------------------------------------------------------------------------------------
  // While a script is busy, other clients' commands get -BUSY, but those Redis flags allow-busy
  // (server.c, processCommand): unknown commands and wrong arities still get their own errors first.
  const execute = resp.execute.bind(resp);
  resp.execute = (client, argv) => {
    const running = engine?.running;
    if (running?.busy === true && client !== running.caller && !allowedWhileBusy(argv)) {
      const spec = argv[0] !== undefined && argv[0].length <= 64 ? resp.lookup(text(argv[0])) : undefined;
      if (spec !== undefined && (spec.arity >= 0 ? argv.length === spec.arity : argv.length >= -spec.arity)) {
        const stats = resp.commandStats.get(spec.name);
        if (stats !== undefined) stats.rejected++;
        else resp.commandStats.set(spec.name, { calls: 0, usec: 0, rejected: 1, failed: 0 });
        const busy = running.function ? BUSY_FUNCTION : BUSY_EVAL;
        if (client.multi !== undefined && spec.name === 'exec') {
          // networking.c, execCommandAbort: the transaction is discarded.
          client.multi = undefined;
          client.multiDirty = false;
          resp.unwatch(client);
          client.reply.error(`EXECABORT Transaction discarded because of: ${busy}`);
          return;
        }
        if (client.multi !== undefined) client.multiDirty = true;
        client.reply.error(busy);
        client.flushLater();
        return;
      }
    }
    return execute(client, argv);
  };

  // ---- SCRIPT -------------------------------------------------------------------------------------
  const subcommands: Record<
    string,
    { arity: number; run: (client: RespClient, argv: Buffer[], lua: LuaEngine) => ReturnType<CommandHandler> }
  > = {
    help: { arity: 2, run: () => helpReply('SCRIPT', scriptHelp) },
    flush: {
      arity: -2,
      run: (_client, argv, lua) => {
        const mode = argv.length === 3 ? text(argv[2]).toUpperCase() : 'SYNC';
        if (argv.length > 3 || (mode !== 'SYNC' && mode !== 'ASYNC'))
          throw new RespError('ERR SCRIPT FLUSH only support SYNC|ASYNC option');
        lua.flush();
        return OK;
      },
    },
    exists: { arity: -3, run: (_client, argv, lua) => argv.slice(2).map((sha) => (lua.has(text(sha)) ? 1 : 0)) },
    load: {
      arity: 3,
      run: (_client, argv, lua) => {
        try {
          return lua.load(argv[2] as Buffer, true).sha;
        } catch (error) {
          if (error instanceof ScriptError) throw new RespError(error.message);
          throw error;
        }
      },
    },
    // Only while a script is busy (past busy-reply-threshold, yielding to the event loop) can a SCRIPT KILL arrive.
    kill: { arity: 2, run: (_client, _argv, lua) => kill(lua, false) },
    debug: {
      arity: 3,
      run: (_client, argv) => {
        const mode = text(argv[2]).toLowerCase();
        if (mode === 'no') return OK;
        if (mode === 'yes' || mode === 'sync') throw new RespError('ERR SCRIPT DEBUG is not supported by mini-redis (no Lua debugger)');
        throw new RespError('ERR Use SCRIPT DEBUG YES/SYNC/NO');
      },
    },
  };
  resp.command(
    'script',
    {
      arity: -2,
      summary: 'A container for Lua scripts management commands.',
      group,
      subcommands: declare(subcommands, {
        help: [['loading', 'stale']],
        flush: [['noscript'], ALL_NODES_SUCCEEDED],
        exists: [['noscript'], ['request_policy:all_shards', 'response_policy:agg_logical_and']],
        load: [['noscript', 'stale'], ALL_NODES_SUCCEEDED],
        kill: [
          ['noscript', 'allow_busy'],
          ['request_policy:all_shards', 'response_policy:one_succeeded'],
        ],
        debug: [['noscript']],
      }),
    },
    (client, argv) => {
      const name = text(argv[1]).toLowerCase();
      const sub = Object.hasOwn(subcommands, name) ? subcommands[name] : undefined;
      if (sub === undefined) throw new RespError(`ERR unknown subcommand '${text(argv[1]).slice(0, 128)}'. Try SCRIPT HELP.`);
      const arityOk = sub.arity >= 0 ? argv.length === sub.arity : argv.length >= -sub.arity;
      if (!arityOk) throw new RespError(`ERR wrong number of arguments for 'script|${name}' command`);
      if (engine !== undefined) return sub.run(client, argv, engine);
      return ready.then((lua) => sub.run(client, argv, lua));
    },
  );
}

const ALL_SHARDS_SUCCEEDED = ['request_policy:all_shards', 'response_policy:all_succeeded'];
const ALL_NODES_SUCCEEDED = ['request_policy:all_nodes', 'response_policy:all_succeeded'];

/** Subcommands as Redis declares them: each one's arity (from its handler table), flags and tips. */
function declare(
  table: Readonly<Record<string, { readonly arity: number }>>,
  declared: Readonly<Record<string, readonly [flags: readonly CommandFlag[], tips?: readonly string[]]>>,
): Record<string, SubcommandOptions> {
  return Object.fromEntries(
    Object.entries(declared).map(([name, [flags, tips]]): [string, SubcommandOptions] => [
      name,
      { arity: (table[name] as { arity: number }).arity, flags, ...(tips === undefined ? {} : { tips }) },
    ]),
  );
}

/**
 * EVAL's, EVALSHA's and FCALL's flags as Redis's (no_mandatory_keys: a call without keys may run in
 * cluster mode on any node; skip_monitor: the adapter does not print the call to MONITOR after the
 * script, the handler prints it before the script's commands, as Redis).
 */
function scriptFlags(readonly: boolean): CommandFlag[] {
  const flags: CommandFlag[] = ['noscript', 'stale', 'skip_monitor', 'no_mandatory_keys'];
  return readonly ? [...flags, 'readonly'] : flags;
}

/** `numkeys key [key …]` after the script (or function name), as Redis's key spec. */
function scriptKeySpecs(readonly: boolean, notes: boolean): KeySpec[] {
  const spec: KeySpec = {
    flags: readonly ? ['RO', 'access'] : ['RW', 'access', 'update'],
    begin: 2,
    find: { keynumIndex: 0, firstKey: 1, step: 1 },
  };
  // Redis's EVALSHA and EVALSHA_RO have no notes.
  if (!notes) return [spec];
  return [
    { notes: `We cannot tell how the keys will be used so we assume the worst, ${readonly ? 'RO and ACCESS' : 'RW and UPDATE'}`, ...spec },
  ];
}

/** FUNCTION HELP's text (functions.c, functionHelpCommand). */
const FUNCTION_HELP = [
  'LOAD [REPLACE] <FUNCTION CODE>',
  '    Create a new library with the given library name and code.',
  'DELETE <LIBRARY NAME>',
  '    Delete the given library.',
  'LIST [LIBRARYNAME PATTERN] [WITHCODE]',
  '    Return general information on all the libraries:',
  '    * Library name',
  '    * The engine used to run the Library',
  '    * Library description',
  '    * Functions list',
  '    * Library code (if WITHCODE is given)',
  '    It also possible to get only function that matches a pattern using LIBRARYNAME argument.',
  'STATS',
  '    Return information about the current function running:',
  '    * Function name',
  '    * Command used to run the function',
  '    * Duration in MS that the function is running',
  '    If no function is running, return nil',
  '    In addition, returns a list of available engines.',
  'KILL',
  '    Kill the current running function.',
  'FLUSH [ASYNC|SYNC]',
  '    Delete all the libraries.',
  '    When called without the optional mode argument, the behavior is determined by the',
  '    lazyfree-lazy-user-flush configuration directive. Valid modes are:',
  '    * ASYNC: Asynchronously flush the libraries.',
  '    * SYNC: Synchronously flush the libraries.',
  'DUMP',
  '    Return a serialized payload representing the current libraries, can be restored using FUNCTION RESTORE command',
  'RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]',
  '    Restore the libraries represented by the given payload, it is possible to give a restore policy to',
  '    control how to handle existing libraries (default APPEND):',
  '    * FLUSH: delete all existing libraries.',
  '    * APPEND: appends the restored libraries to the existing libraries. On collision, abort.',
  '    * REPLACE: appends the restored libraries to the existing libraries, On collision, replace the old',
  '      libraries with the new libraries (notice that even on this option there is a chance of failure',
  '      in case of functions name collision with another library).',
];
