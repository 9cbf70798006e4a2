import { createHash } from 'node:crypto';
import { formatDouble, type ReplyWriter, type RespClient, type ScriptClient, type ScriptReply } from '@portbind/resp';
import { LuaFactory } from 'wasmoon';
import { SANDBOX } from './sandbox.js';

// The Lua VM behind EVAL: one lua_State for every script (as Redis has one), driven through
// wasmoon's raw Lua C API so strings cross binary-safe (lua_pushlstring / lua_tolstring on the
// WebAssembly heap), and the conversions are Redis's (script_lua.c): redisProtocolToLuaType for a
// command's reply, luaReplyToRedisReply for the script's result.

/** The raw Lua C API of wasmoon's module (lua_Integer arguments are BigInts). */
interface Raw {
  HEAPU8: Uint8Array;
  HEAPU32: Uint32Array;
  _malloc(size: number): number;
  _free(pointer: number): void;
  addFunction(fn: (...args: number[]) => number | undefined, signature: string): number;
  _lua_gettop(L: number): number;
  _lua_settop(L: number, index: number): void;
  _lua_type(L: number, index: number): number;
  _lua_pushlstring(L: number, pointer: number, length: number): number;
  _lua_tolstring(L: number, index: number, lengthPointer: number): number;
  _lua_pushinteger(L: number, value: bigint): void;
  _lua_pushnumber(L: number, value: number): void;
  _lua_pushboolean(L: number, value: number): void;
  _lua_pushnil(L: number): void;
  _lua_pushvalue(L: number, index: number): void;
  _lua_pushlightuserdata(L: number, pointer: number): void;
  _lua_toboolean(L: number, index: number): number;
  _lua_tonumberx(L: number, index: number, isnum: number): number;
  _lua_tointegerx(L: number, index: number, isnum: number): bigint;
  _lua_isinteger(L: number, index: number): number;
  _lua_createtable(L: number, narr: number, nrec: number): void;
  _lua_rawgeti(L: number, index: number, n: bigint): number;
  _lua_rawseti(L: number, index: number, n: bigint): void;
  _lua_rawget(L: number, index: number): number;
  _lua_rawset(L: number, index: number): void;
  _lua_next(L: number, index: number): number;
  _lua_error(L: number): number;
  _lua_pcallk(L: number, nargs: number, nresults: number, errfunc: number, ctx: number, k: number): number;
  _lua_sethook(L: number, hook: number, mask: number, count: number): void;
  _lua_pushcclosure(L: number, fn: number, n: number): void;
  _lua_newthread(L: number): number;
  _lua_resume(L: number, from: number, nargs: number, nresults: number): number;
  _lua_xmove(from: number, to: number, n: number): void;
  _lua_isyieldable(L: number): number;
  _lua_yieldk(L: number, nresults: number, ctx: number, k: number): number;
  _lua_getinfo(L: number, what: number, ar: number): number;
  _lua_rotate(L: number, index: number, n: number): void;
  _lua_callk(L: number, nargs: number, nresults: number, ctx: number, k: number): void;
  _lua_checkstack(L: number, n: number): number;
}

/** What the cwrap'd half of wasmoon gives (strings as JS strings: names only). */
interface Wrapped {
  lua_setglobal(L: number, name: string): void;
  lua_getglobal(L: number, name: string): number;
  lua_setfield(L: number, index: number, name: string): void;
  lua_getfield(L: number, index: number, name: string): number;
  lua_pushstring(L: number, value: string): void;
  luaL_ref(L: number, table: number): number;
  luaL_unref(L: number, table: number, ref: number): void;
  luaL_loadbufferx(L: number, buffer: number, size: number, name: number, mode: number): number;
}

const LUA_REGISTRYINDEX = -1001000;
const T_NIL = 0;
const T_BOOLEAN = 1;
const T_NUMBER = 3;
const T_STRING = 4;
const T_TABLE = 5;
const MASK_LINE = 4;
const MASK_COUNT = 8;
/** Instructions between two checks of the clock. */
const HOOK_COUNT = 10_000;
/** Once busy, the script yields to the event loop this often (ms). */
const SLICE_MS = 20;

/** A script in the cache. */
export interface Script extends Callable {
  readonly sha: string;
  readonly body: Buffer;
  /** Registry reference of the compiled function. */
  readonly ref: number;
  readonly flags: ScriptFlags;
  /** Loaded by SCRIPT LOAD (kept), or by EVAL (evicted past the cap, least recently used first). */
  loaded: boolean;
}

export interface ScriptFlags {
  /** No shebang: Redis's compatibility mode (the command's own flags apply). */
  readonly compat: boolean;
  readonly noWrites: boolean;
  readonly allowOom: boolean;
}

/** What run() runs: an EVAL script (name: its sha) or a function (FCALL: name: the function's). */
export interface Callable {
  readonly name: string;
  /** Registry reference of the Lua function. */
  readonly ref: number;
  /** A function gets KEYS and ARGV as arguments; a script as globals. */
  readonly function: boolean;
}

/** A function a library registered. */
export interface LibraryFunction {
  readonly name: string;
  readonly description: string | undefined;
  readonly flags: readonly string[];
  readonly ref: number;
}

/** A Redis error for the caller (`-ERR …` etc.), without the dash. */
export class ScriptError extends Error {}

export interface EngineOptions {
  /** The most bytes the Lua VM may allocate (its heap: scripts, tables, strings). */
  memoryLimit: number;
  /** How many scripts loaded by EVAL the cache keeps (SCRIPT LOAD'ed ones are always kept). */
  evalCacheSize: number;
  /** Redis version for redis.REDIS_VERSION. */
  version: string;
  /** Whether a command of that name exists (redis.acl_check_cmd). */
  exists: (name: string) => boolean;
  /**
   * Before a command a script calls that is not refused as a write in a read-only script: Redis's
   * error text (without the dash) when the server refuses it as a write now (-MISCONF: the disk), else undefined.
   */
  refuseWrite?: (argv: readonly Buffer[]) => string | undefined;
  /** A script became busy (past busy-reply-threshold: other clients get -BUSY) or stopped being. */
  onBusy: (busy: boolean) => void;
  /** redis.log's sink. */
  log: (level: number, message: string) => void;
}

export interface RunOptions {
  readonly caller: RespClient;
  readonly keys: readonly Buffer[];
  readonly args: readonly Buffer[];
  readonly readOnly: boolean;
  /** The script's shebang has `allow-oom`. */
  readonly allowOom: boolean;
  /** Redis's busy-reply-threshold: past it, other clients get -BUSY and SCRIPT KILL can stop the script (0: never). */
  readonly busyAfterMs: number;
}

/** The script running now. */
type RunState = RunOptions & {
  sha: string;
  /** FCALL (a function) rather than EVAL. */
  function: boolean;
  protocol: 2 | 3;
  /** When the script becomes busy (busy-reply-threshold): from then on it yields every SLICE_MS. */
  busyAt: number;
  startedAt: number;
  lastYield: number;
  killed: boolean;
  busy: boolean;
};

export function sha1hex(bytes: Buffer | string): string {
  return createHash('sha1').update(bytes).digest('hex');
}

export class LuaEngine {
  readonly #raw: Raw;
  readonly #lua: Wrapped;
  readonly #L: number;
  readonly #client: ScriptClient;
  readonly #options: EngineOptions;
  readonly #scripts = new Map<string, Script>();
  readonly #memory: { setMemoryMax(max: number | undefined): void; getMemoryUsed(): number };
  #errorHandlerRef = 0;
  #compileRef = 0;
  #globalsRef = 0;
  #collectRef = 0;
  #gcStepRef = 0;
  #runnerRef = 0;
  /** The coroutine scripts run in, and its registry reference (0: make one). */
  #thread = 0;
  #threadRef = 0;
  #loadLibraryRef = 0;
  /** Scripts run since the last GC step (Redis steps Lua's GC every 50 scripts: LUA_GC_CYCLE_PERIOD). */
  #sinceGc = 0;
  #hook = 0;
  /** The run in progress. */
  #run: RunState | undefined;
  /** Bytes of script bodies cached (INFO's used_memory_scripts_eval). */
  #cachedBytes = 0;

  static async create(client: ScriptClient, options: EngineOptions): Promise<LuaEngine> {
    const engine = await new LuaFactory().createEngine({
      openStandardLibs: true,
      injectObjects: false,
      enableProxy: false,
      traceAllocations: true,
    });
    return new LuaEngine(engine, client, options);
  }

  private constructor(engine: Awaited<ReturnType<LuaFactory['createEngine']>>, client: ScriptClient, options: EngineOptions) {
    this.#lua = engine.global.lua as unknown as Wrapped;
    this.#raw = engine.global.lua.module as unknown as Raw;
    this.#L = engine.global.address;
    this.#client = client;
    this.#options = options;
    this.#memory = engine.global;
    this.#setup();
    engine.global.setMemoryMax(options.memoryLimit);
  }

  /** Bytes the Lua VM holds now (INFO's used_memory_lua / used_memory_vm_eval). */
  get memoryUsed(): number {
    return this.#memory.getMemoryUsed();
  }

  get scriptCount(): number {
    return this.#scripts.size;
  }

  get cachedBytes(): number {
    return this.#cachedBytes;
  }

  has(sha: string): boolean {
    return this.#scripts.has(sha.toLowerCase());
  }

  flagsOf(sha: string): ScriptFlags | undefined {
    return this.#scripts.get(sha.toLowerCase())?.flags;
  }

  /** SCRIPT FLUSH: forget every script (their functions are collected). */
  flush(): void {
    const lua = this.#lua;
    for (const script of this.#scripts.values()) lua.luaL_unref(this.#L, LUA_REGISTRYINDEX, script.ref);
    this.#scripts.clear();
    this.#cachedBytes = 0;
    this.#raw._lua_rawgeti(this.#L, LUA_REGISTRYINDEX, BigInt(this.#collectRef));
    this.#raw._lua_pcallk(this.#L, 0, 0, 0, 0, 0);
    this.#raw._lua_settop(this.#L, 0);
  }

  /** Compile and cache a script (EVAL, SCRIPT LOAD). Returns its sha; a compile error throws ScriptError. */
  load(body: Buffer, byLoad: boolean): Script {
    const sha = sha1hex(body);
    const cached = this.#scripts.get(sha);
    if (cached !== undefined) {
      if (byLoad) cached.loaded = true;
      // Least recently used last out: move to the end.
      this.#scripts.delete(sha);
      this.#scripts.set(sha, cached);
      return cached;
    }
    const { flags, skip } = shebang(body);
    const raw = this.#raw;
    const L = this.#L;
    raw._lua_settop(L, 0);
    raw._lua_rawgeti(L, LUA_REGISTRYINDEX, BigInt(this.#compileRef));
    // Redis keeps the shebang's line feed, so line numbers stay the user's.
    this.#pushBytes(body.subarray(skip));
    const status = raw._lua_pcallk(L, 1, 2, 0, 0, 0);
    if (status !== 0 || raw._lua_type(L, 1) !== 6 /* function */) {
      const message = status !== 0 ? this.#string(-1) : this.#string(2);
      raw._lua_settop(L, 0);
      throw new ScriptError(`ERR Error compiling script (new function): ${message ?? 'not enough memory'}`);
    }
    raw._lua_settop(L, 1);
    const ref = this.#lua.luaL_ref(L, LUA_REGISTRYINDEX);
    const script: Script = { sha, name: sha, function: false, body, ref, flags, loaded: byLoad };
    this.#scripts.set(sha, script);
    this.#cachedBytes += body.length + 40;
    this.#evict();
    return script;
  }

  /** Redis 7.4's rule: past the cap, the least recently used script that EVAL (not SCRIPT LOAD) added goes. */
  #evict(): void {
    let evalScripts = 0;
    for (const script of this.#scripts.values()) if (!script.loaded) evalScripts++;
    if (evalScripts <= this.#options.evalCacheSize) return;
    for (const script of this.#scripts.values()) {
      if (script.loaded) continue;
      this.#lua.luaL_unref(this.#L, LUA_REGISTRYINDEX, script.ref);
      this.#scripts.delete(script.sha);
      this.#cachedBytes -= script.body.length + 40;
      if (--evalScripts <= this.#options.evalCacheSize) return;
    }
  }

  /** Look up a cached script by sha (EVALSHA). */
  get(sha: string): Script | undefined {
    const script = this.#scripts.get(sha.toLowerCase());
    if (script !== undefined) {
      this.#scripts.delete(script.sha);
      this.#scripts.set(script.sha, script);
    }
    return script;
  }

  /**
   * Run a script, and write its result to the caller's reply; or give the error to answer with
   * (the script failed, or returned an error table), so that the command fails as a command (INFO
   * commandstats' failed_calls, as Redis counts a script's error reply). Synchronous, unless the
   * script runs past `busyAfterMs`: then it yields to the event loop every few milliseconds (other
   * clients get -BUSY meanwhile: `onBusy`) and the result comes as a Promise.
   */
  run(script: Callable, options: RunOptions): string | undefined | Promise<string | undefined> {
    const raw = this.#raw;
    const L = this.#L;
    const started = Date.now();
    this.#run = {
      ...options,
      sha: script.name,
      function: script.function,
      protocol: 2,
      busyAt: options.busyAfterMs > 0 ? started + options.busyAfterMs : Number.POSITIVE_INFINITY,
      startedAt: started,
      lastYield: 0,
      killed: false,
      busy: false,
    };
    this.#client.begin(options.caller);
    raw._lua_settop(L, 0);
    if (!script.function) {
      // EVAL: KEYS and ARGV, into the sandbox's real globals table.
      raw._lua_rawgeti(L, LUA_REGISTRYINDEX, BigInt(this.#globalsRef));
      this.#lua.lua_pushstring(L, 'KEYS');
      this.#pushArray(options.keys);
      raw._lua_rawset(L, 1);
      this.#lua.lua_pushstring(L, 'ARGV');
      this.#pushArray(options.args);
      raw._lua_rawset(L, 1);
      raw._lua_settop(L, 0);
    }
    // The script runs in a coroutine (so that the time-slice hook can yield): runner(handler, f) is
    // xpcall(f, handler). One coroutine serves script after script; a new one after an error.
    if (this.#thread === 0) {
      this.#thread = raw._lua_newthread(L);
      this.#threadRef = this.#lua.luaL_ref(L, LUA_REGISTRYINDEX);
    }
    const thread = this.#thread;
    const threadRef = this.#threadRef;
    raw._lua_rawgeti(thread, LUA_REGISTRYINDEX, BigInt(this.#runnerRef));
    raw._lua_rawgeti(thread, LUA_REGISTRYINDEX, BigInt(this.#errorHandlerRef));
    raw._lua_rawgeti(thread, LUA_REGISTRYINDEX, BigInt(script.ref));
    if (script.function) {
      // FCALL: the callback gets KEYS and ARGV as its arguments.
      this.#pushArray(options.keys, thread);
      this.#pushArray(options.args, thread);
    }
    raw._lua_sethook(thread, this.#hook, MASK_COUNT, HOOK_COUNT);
    return this.#resume(thread, threadRef, script.function ? 4 : 2);
  }

  /** The running script, if any (SCRIPT KILL, the -BUSY gate). */
  get running():
    | {
        readonly busy: boolean;
        readonly wrote: boolean;
        readonly caller: RespClient;
        readonly function: boolean;
        readonly name: string;
        readonly startedAt: number;
      }
    | undefined {
    const run = this.#run;
    if (run === undefined) return undefined;
    return {
      busy: run.busy,
      wrote: this.#client.wrote,
      caller: run.caller,
      function: run.function,
      name: run.sha,
      startedAt: run.startedAt,
    };
  }

  /** SCRIPT KILL: the script stops at its next hook with an error. */
  kill(): void {
    if (this.#run !== undefined) this.#run.killed = true;
  }

  #resume(thread: number, threadRef: number, nargs: number): string | undefined | Promise<string | undefined> {
    const raw = this.#raw;
    const L = this.#L;
    const run = this.#run as RunState;
    const results = raw._malloc(4);
    const status = raw._lua_resume(thread, L, nargs, results);
    raw._free(results);
    if (status === 1 /* LUA_YIELD */) {
      // Past busy-reply-threshold: let the event loop run (other clients get -BUSY), then go on.
      if (!run.busy) {
        run.busy = true;
        this.#options.onBusy(true);
      }
      return new Promise((resolve) => {
        setImmediate(() => {
          const next = this.#resume(thread, threadRef, 0);
          if (next instanceof Promise) next.then(resolve, () => resolve('ERR script failed'));
          else resolve(next);
        });
      });
    }
    try {
      raw._lua_settop(L, 0);
      let failed: string | undefined;
      if (status === 0 && raw._lua_toboolean(thread, 1) !== 0) {
        raw._lua_settop(thread, 2);
        raw._lua_xmove(thread, L, 1);
        if (raw._lua_type(L, -1) === T_TABLE) {
          this.#lua.lua_pushstring(L, 'err');
          if (raw._lua_rawget(L, -2) === T_STRING) failed = (this.#string(-1) as string).replace(/[\r\n]/g, ' ');
          raw._lua_settop(L, -2);
        }
        if (failed === undefined) this.#writeReply(run.caller.reply, run.protocol, 0);
      } else {
        // xpcall's false and the handler's table; or an error the runner itself raised.
        raw._lua_xmove(thread, L, 1);
        failed = this.#errorText(run.sha);
      }
      if (++this.#sinceGc === 50) {
        this.#sinceGc = 0;
        raw._lua_rawgeti(L, LUA_REGISTRYINDEX, BigInt(this.#gcStepRef));
        raw._lua_pcallk(L, 0, 0, 0, 0, 0);
      }
      return failed;
    } finally {
      raw._lua_sethook(thread, 0, 0, 0);
      raw._lua_settop(L, 0);
      if (status === 0) raw._lua_settop(thread, 0);
      else {
        // A coroutine that failed is dead: the next script gets a new one.
        this.#lua.luaL_unref(L, LUA_REGISTRYINDEX, threadRef);
        this.#thread = 0;
      }
      this.#client.end();
      this.#run = undefined;
      if (run.busy) this.#options.onBusy(false);
    }
  }

  // ---- setup ------------------------------------------------------------------------------------

  #setup(): void {
    const raw = this.#raw;
    const lua = this.#lua;
    const L = this.#L;
    const register = (name: string, fn: (L: number) => number): void => {
      raw._lua_pushcclosure(L, raw.addFunction(fn, 'ii'), 0);
      lua.lua_setglobal(L, name);
    };
    // __mr_cwrap(f): f as a C function (a tail call to it keeps the caller's frame, as Redis's C libraries).
    const trampoline = raw.addFunction((state) => {
      const argc = raw._lua_gettop(state);
      raw._lua_pushvalue(state, LUA_REGISTRYINDEX - 1); // upvalue 1
      raw._lua_rotate(state, 1, 1);
      raw._lua_callk(state, argc, -1, 0, 0);
      return raw._lua_gettop(state);
    }, 'ii');
    register('__mr_cwrap', (state) => {
      raw._lua_settop(state, 1);
      raw._lua_pushcclosure(state, trampoline, 1);
      return 1;
    });
    register('__mr_exists', (state) => {
      raw._lua_pushboolean(state, this.#options.exists(this.#string(1, state) ?? '') ? 1 : 0);
      return 1;
    });
    register('__mr_call', (state) => this.#call(state, true));
    register('__mr_pcall', (state) => this.#call(state, false));
    register('__mr_sha1hex', (state) => {
      if (raw._lua_gettop(state) !== 1) return this.#raise(state, 'wrong number of arguments');
      const bytes = this.#bytes(1, state) ?? Buffer.alloc(0);
      lua.lua_pushstring(state, sha1hex(bytes));
      return 1;
    });
    register('__mr_log', (state) => {
      const argc = raw._lua_gettop(state);
      if (argc < 2) return this.#raise(state, 'redis.log() requires two arguments or more.');
      if (
        raw._lua_type(state, 1) !== T_NUMBER &&
        !(raw._lua_type(state, 1) === T_STRING && Number.isFinite(Number(this.#string(1, state))))
      )
        return this.#raise(state, 'First argument must be a number (log level).');
      const level = Math.trunc(raw._lua_tonumberx(state, 1, 0));
      if (level < 0 || level > 3) return this.#raise(state, 'Invalid debug level.');
      const parts: string[] = [];
      for (let i = 2; i <= argc; i++) {
        const type = raw._lua_type(state, i);
        if (type === T_STRING || type === T_NUMBER) parts.push(this.#string(i, state) ?? '');
      }
      this.#options.log(level, parts.join(' '));
      return 0;
    });
    register('__mr_setresp', (state) => {
      if (this.#run === undefined) return this.#raise(state, 'redis.setresp can only be called inside a script invocation');
      if (raw._lua_gettop(state) !== 1) return this.#raise(state, 'redis.setresp() requires one argument.');
      const resp = Math.trunc(raw._lua_tonumberx(state, 1, 0));
      if (resp !== 2 && resp !== 3) return this.#raise(state, 'RESP version must be 2 or 3.');
      this.#run.protocol = resp;
      return 0;
    });
    register('__mr_setrepl', (state) => {
      if (this.#run === undefined) return this.#raise(state, 'redis.set_repl can only be called inside a script invocation');
      if (raw._lua_gettop(state) !== 1) return this.#raise(state, 'redis.set_repl() requires two arguments.');
      const flags = Math.trunc(raw._lua_tonumberx(state, 1, 0));
      if ((flags & ~3) !== 0) return this.#raise(state, 'Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE.');
      // mini-redis has no replicas, and its AOF (if any) logs the commands themselves: nothing to switch.
      return 0;
    });
    register('__mr_cjson_decode', (state) => {
      const text = this.#bytes(1, state)?.toString('utf8') ?? '';
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch (error) {
        raw._lua_settop(state, 0);
        raw._lua_pushboolean(state, 0);
        lua.lua_pushstring(state, jsonError(text, error));
        return 2;
      }
      const maxDepth = Math.trunc(raw._lua_tonumberx(state, 3, 0)) || 1000;
      const depth = jsonDepth(value);
      if (depth > maxDepth) {
        raw._lua_settop(state, 0);
        raw._lua_pushboolean(state, 0);
        lua.lua_pushstring(state, `Found too many nested data structures (${maxDepth + 1}) at character ${nestingAt(text, maxDepth + 1)}`);
        return 2;
      }
      raw._lua_pushboolean(state, 1);
      this.#pushJson(state, value, 2, 0);
      return 2;
    });
    raw._lua_pushlightuserdata(L, 0);
    lua.lua_setglobal(L, '__mr_null');
    lua.lua_pushstring(L, this.#options.version);
    lua.lua_setglobal(L, '__mr_version');
    const [major = 0, minor = 0, patch = 0] = this.#options.version.split('.').map(Number);
    raw._lua_pushinteger(L, BigInt((major << 16) | (minor << 8) | patch));
    lua.lua_setglobal(L, '__mr_version_num');

    // The sandbox itself.
    const code = Buffer.from(SANDBOX, 'utf8');
    const pointer = raw._malloc(code.length);
    raw.HEAPU8.set(code, pointer);
    const name = raw._malloc(8);
    raw.HEAPU8.set(Buffer.from('=init\0'), name);
    const loaded = lua.luaL_loadbufferx(L, pointer, code.length, name, 0);
    raw._free(pointer);
    raw._free(name);
    if (loaded !== 0 || raw._lua_pcallk(L, 0, 0, 0, 0, 0) !== 0) throw new Error(`Lua sandbox: ${this.#string(-1)}`);
    const ref = (global: string): number => {
      lua.lua_getglobal(L, global);
      const id = lua.luaL_ref(L, LUA_REGISTRYINDEX);
      raw._lua_pushnil(L);
      lua.lua_setglobal(L, global);
      return id;
    };
    this.#errorHandlerRef = ref('__mr_error_handler');
    this.#compileRef = ref('__mr_compile');
    this.#globalsRef = ref('__mr_env');
    this.#collectRef = ref('__mr_collect');
    this.#gcStepRef = ref('__mr_gc_step');
    this.#runnerRef = ref('__mr_runner');
    this.#loadLibraryRef = ref('__mr_load_library');
    ref('__mr_globals');
    raw._lua_settop(L, 0);

    // The time limit: a count hook checks the clock; past the deadline the script is aborted, and
    // the hook fires on every line so that a pcall in the script cannot catch it for long.
    // "S" for lua_getinfo, and the source of the user's script, as C strings.
    const whatS = raw._malloc(2);
    raw.HEAPU8.set([0x53, 0], whatS);
    const userScript = Buffer.from('@user_script\0', 'latin1');
    const userFunction = Buffer.from('@user_function\0', 'latin1');
    /** The function running at the hook is the user's script (not the error handler, not a library's Lua). */
    const inUserScript = (state: number, ar: number): boolean => {
      if (raw._lua_getinfo(state, whatS, ar) === 0) return false;
      const source = raw.HEAPU32[(ar + 16) >> 2] as number; // lua_Debug.source (wasm32)
      if (source === 0) return false;
      const is = (name: Buffer): boolean => Buffer.compare(raw.HEAPU8.subarray(source, source + name.length), name) === 0;
      return is(userScript) || is(userFunction);
    };
    this.#hook = raw.addFunction((state, ar) => {
      const run = this.#run;
      if (run === undefined) return 0;
      if (run.killed) {
        // On every line from now on: a pcall in the script cannot catch it for long (as Redis).
        raw._lua_sethook(state, this.#hook, MASK_LINE | MASK_COUNT, 1);
        if (!inUserScript(state, ar as number)) return 0;
        return this.#raise(state, 'Script killed by user with SCRIPT KILL...');
      }
      const now = Date.now();
      if (now < run.busyAt || now - run.lastYield < SLICE_MS || raw._lua_isyieldable(state) === 0) return 0;
      run.lastYield = now;
      return raw._lua_yieldk(state, 0, 0, 0);
    }, 'vii');
  }

  // ---- redis.call / redis.pcall ----------------------------------------------------------------

  #call(L: number, raise: boolean): number {
    const raw = this.#raw;
    const run = this.#run;
    if (run === undefined) return this.#raise(L, 'redis.call/pcall can only be called inside a script invocation');
    if (run.killed) return this.#raise(L, 'Script killed by user with SCRIPT KILL...');
    const argc = raw._lua_gettop(L);
    if (argc === 0) return this.#fail(L, raise, 'Please specify at least one argument for this redis lib call');
    const argv: Buffer[] = [];
    for (let i = 1; i <= argc; i++) {
      const type = raw._lua_type(L, i);
      if (type === T_NUMBER) {
        // Redis prints a Lua number with %.17g (an integer as itself).
        argv.push(
          Buffer.from(raw._lua_isinteger(L, i) ? String(raw._lua_tointegerx(L, i, 0)) : formatDouble(raw._lua_tonumberx(L, i, 0), '%.17g')),
        );
      } else if (type === T_STRING) {
        argv.push(this.#bytes(i, L) as Buffer);
      } else {
        return this.#fail(L, raise, 'Lua redis lib command arguments must be strings or integers');
      }
    }
    raw._lua_settop(L, 0);
    const refused = run.readOnly ? undefined : this.#options.refuseWrite?.(argv);
    if (refused !== undefined) {
      this.#pushError(L, `-${refused}`);
      return raise ? raw._lua_error(L) : 1;
    }
    const reply = this.#client.call(argv, { caller: run.caller, readOnly: run.readOnly, protocol: run.protocol, allowOom: run.allowOom });
    if (reply.type === 'error') {
      this.#pushError(L, `-${reply.value}`);
      return raise ? raw._lua_error(L) : 1;
    }
    this.#pushReply(L, reply);
    return 1;
  }

  /** An error as redis.call raises it / redis.pcall returns it. */
  #fail(L: number, raise: boolean, message: string): number {
    this.#raw._lua_settop(L, 0);
    this.#pushError(L, message);
    return raise ? this.#raw._lua_error(L) : 1;
  }

  /** Raise an error table (Redis's luaPushError + luaError). */
  #raise(L: number, message: string): number {
    this.#raw._lua_settop(L, 0);
    this.#pushError(L, message);
    return this.#raw._lua_error(L);
  }

  /** luaPushErrorBuff: `-CODE msg` or `msg` (code ERR) → `{ err = 'CODE msg' }`. */
  #pushError(L: number, text: string): void {
    let code = 'ERR';
    let message = text;
    if (text.startsWith('-')) {
      const space = text.indexOf(' ');
      if (space === -1) message = text.slice(1);
      else {
        code = text.slice(1, space);
        message = text.slice(space + 1);
      }
    }
    message = message.replace(/^[\r\n]+|[\r\n]+$/g, '');
    this.#raw._lua_createtable(L, 0, 1);
    this.#pushBytes(Buffer.from(`${code} ${message}`, 'latin1'), L);
    this.#lua.lua_setfield(L, -2, 'err');
  }

  // ---- Redis reply → Lua ----------------------------------------------------------------------

  #pushReply(L: number, reply: ScriptReply): void {
    const raw = this.#raw;
    const lua = this.#lua;
    raw._lua_checkstack(L, 4);
    switch (reply.type) {
      case 'integer':
        raw._lua_pushinteger(L, reply.value);
        return;
      case 'bulk':
        this.#pushBytes(reply.value, L);
        return;
      case 'nil':
        raw._lua_pushboolean(L, 0);
        return;
      case 'null':
        raw._lua_pushnil(L);
        return;
      case 'boolean':
        raw._lua_pushboolean(L, reply.value ? 1 : 0);
        return;
      case 'status':
        raw._lua_createtable(L, 0, 1);
        this.#pushBytes(Buffer.from(reply.value, 'latin1'), L);
        lua.lua_setfield(L, -2, 'ok');
        return;
      case 'error':
        this.#pushError(L, `-${reply.value}`);
        return;
      case 'double':
        raw._lua_createtable(L, 0, 1);
        raw._lua_pushnumber(L, reply.value);
        lua.lua_setfield(L, -2, 'double');
        return;
      case 'bignumber':
        raw._lua_createtable(L, 0, 1);
        this.#pushBytes(Buffer.from(reply.value, 'latin1'), L);
        lua.lua_setfield(L, -2, 'big_number');
        return;
      case 'verbatim':
        raw._lua_createtable(L, 0, 1);
        raw._lua_createtable(L, 0, 2);
        this.#pushBytes(reply.value, L);
        lua.lua_setfield(L, -2, 'string');
        this.#pushBytes(Buffer.from(reply.format, 'latin1'), L);
        lua.lua_setfield(L, -2, 'format');
        lua.lua_setfield(L, -2, 'verbatim_string');
        return;
      case 'array':
        raw._lua_createtable(L, reply.value.length, 0);
        reply.value.forEach((item, i) => {
          this.#pushReply(L, item);
          raw._lua_rawseti(L, -2, BigInt(i + 1));
        });
        return;
      case 'set':
        raw._lua_createtable(L, 0, 1);
        raw._lua_createtable(L, 0, reply.value.length);
        for (const item of reply.value) {
          this.#pushReply(L, item);
          if (raw._lua_type(L, -1) === T_NIL) raw._lua_settop(L, -2);
          else {
            raw._lua_pushboolean(L, 1);
            raw._lua_rawset(L, -3);
          }
        }
        lua.lua_setfield(L, -2, 'set');
        return;
      case 'map':
        raw._lua_createtable(L, 0, 1);
        raw._lua_createtable(L, 0, reply.value.length);
        for (const [key, value] of reply.value) {
          this.#pushReply(L, key);
          this.#pushReply(L, value);
          if (raw._lua_type(L, -2) === T_NIL) raw._lua_settop(L, -3);
          else raw._lua_rawset(L, -3);
        }
        lua.lua_setfield(L, -2, 'map');
        return;
    }
  }

  // ---- Lua → Redis reply ----------------------------------------------------------------------

  /** luaReplyToRedisReply: the value on top of the stack, consumed. */
  #writeReply(w: ReplyWriter, scriptProtocol: 2 | 3, depth: number): void {
    const raw = this.#raw;
    const lua = this.#lua;
    const L = this.#L;
    if (depth > 1000 || raw._lua_checkstack(L, 4) === 0) {
      w.error('ERR reached lua stack limit');
      raw._lua_settop(L, -2);
      return;
    }
    const type = raw._lua_type(L, -1);
    switch (type) {
      case T_STRING:
        w.bulk(this.#bytes(-1) as Buffer);
        break;
      case T_BOOLEAN:
        if (scriptProtocol === 2) {
          if (raw._lua_toboolean(L, -1)) w.integer(1);
          else w.null();
        } else w.boolean(raw._lua_toboolean(L, -1) !== 0);
        break;
      case T_NUMBER:
        w.integer(this.#integer(-1));
        break;
      case T_TABLE: {
        const field = (name: string): number => {
          lua.lua_pushstring(L, name);
          return raw._lua_rawget(L, -2);
        };
        if (field('err') === T_STRING) {
          w.error((this.#string(-1) as string).replace(/[\r\n]/g, ' '));
          raw._lua_settop(L, -3);
          return;
        }
        raw._lua_settop(L, -2);
        if (field('ok') === T_STRING) {
          w.simple((this.#string(-1) as string).replace(/[\r\n]/g, ' '));
          raw._lua_settop(L, -3);
          return;
        }
        raw._lua_settop(L, -2);
        if (field('double') === T_NUMBER) {
          w.double(raw._lua_tonumberx(L, -1, 0));
          raw._lua_settop(L, -3);
          return;
        }
        raw._lua_settop(L, -2);
        if (field('big_number') === T_STRING) {
          w.bigNumber((this.#string(-1) as string).replace(/[\r\n]/g, ' '));
          raw._lua_settop(L, -3);
          return;
        }
        raw._lua_settop(L, -2);
        if (field('verbatim_string') === T_TABLE) {
          lua.lua_pushstring(L, 'format');
          if (raw._lua_rawget(L, -2) === T_STRING) {
            const format = this.#string(-1) as string;
            lua.lua_pushstring(L, 'string');
            if (raw._lua_rawget(L, -3) === T_STRING) {
              w.verbatim((this.#bytes(-1) as Buffer).toString('utf8'), format);
              raw._lua_settop(L, -5);
              return;
            }
            raw._lua_settop(L, -2);
          }
          raw._lua_settop(L, -2);
        }
        raw._lua_settop(L, -2);
        if (field('map') === T_TABLE) {
          let count = 0;
          raw._lua_pushnil(L);
          while (raw._lua_next(L, -2) !== 0) {
            count++;
            raw._lua_settop(L, -2);
          }
          w.map(count);
          raw._lua_pushnil(L);
          while (raw._lua_next(L, -2) !== 0) {
            raw._lua_pushvalue(L, -2);
            this.#writeReply(w, scriptProtocol, depth + 1); // key
            this.#writeReply(w, scriptProtocol, depth + 1); // value
          }
          raw._lua_settop(L, -3);
          return;
        }
        raw._lua_settop(L, -2);
        if (field('set') === T_TABLE) {
          let count = 0;
          raw._lua_pushnil(L);
          while (raw._lua_next(L, -2) !== 0) {
            count++;
            raw._lua_settop(L, -2);
          }
          w.set(count);
          raw._lua_pushnil(L);
          while (raw._lua_next(L, -2) !== 0) {
            raw._lua_settop(L, -2);
            raw._lua_pushvalue(L, -1);
            this.#writeReply(w, scriptProtocol, depth + 1);
          }
          raw._lua_settop(L, -3);
          return;
        }
        raw._lua_settop(L, -2);
        // An array: up to the first nil.
        let length = 0;
        while (raw._lua_rawgeti(L, -1, BigInt(length + 1)) !== T_NIL) {
          length++;
          raw._lua_settop(L, -2);
        }
        raw._lua_settop(L, -2);
        w.array(length);
        for (let i = 1; i <= length; i++) {
          raw._lua_rawgeti(L, -1, BigInt(i));
          this.#writeReply(w, scriptProtocol, depth + 1);
        }
        break;
      }
      default:
        w.null();
    }
    raw._lua_settop(L, -2);
  }

  /** Lua number → Redis integer, as `(long long)lua_tonumber()`. */
  #integer(index: number): bigint {
    const raw = this.#raw;
    if (raw._lua_isinteger(this.#L, index)) return raw._lua_tointegerx(this.#L, index, 0);
    const value = raw._lua_tonumberx(this.#L, index, 0);
    if (!Number.isFinite(value) || Math.abs(value) >= 2 ** 63) return -(2n ** 63n);
    return BigInt(Math.trunc(value));
  }

  /** The script failed: its error object (a table from the handler, or a string) as Redis replies it. */
  #errorText(sha: string): string {
    const raw = this.#raw;
    const lua = this.#lua;
    const L = this.#L;
    if (raw._lua_type(L, -1) !== T_TABLE) {
      const message = this.#string(-1) ?? 'execution failure';
      return `ERR Error running script ${sha}, ${message.slice(0, 100)}`.replace(/[\r\n]/g, ' ');
    }
    const get = (name: string): string | undefined => {
      lua.lua_getfield(L, -1, name);
      const type = raw._lua_type(L, -1);
      const value = type === T_STRING || type === T_NUMBER ? this.#string(-1) : undefined;
      raw._lua_settop(L, -2);
      return value;
    };
    const message = get('err') ?? '';
    const source = get('source');
    const line = get('line');
    const text = line !== undefined && source !== undefined ? `${message} script: ${sha}, on ${source}:${line}.` : message;
    return text.replace(/[\r\n]/g, ' ');
  }

  // ---- helpers --------------------------------------------------------------------------------

  #pushBytes(bytes: Buffer, L = this.#L): void {
    const raw = this.#raw;
    const pointer = raw._malloc(bytes.length + 1);
    raw.HEAPU8.set(bytes, pointer);
    raw._lua_pushlstring(L, pointer, bytes.length);
    raw._free(pointer);
  }

  #pushArray(items: readonly Buffer[], L = this.#L): void {
    const raw = this.#raw;
    raw._lua_createtable(L, items.length, 0);
    items.forEach((item, i) => {
      this.#pushBytes(item, L);
      raw._lua_rawseti(L, -2, BigInt(i + 1));
    });
  }

  // ---- FUNCTION LOAD ------------------------------------------------------------------------------

  /**
   * Run a library's code (its shebang line already blanked) with redis.register_function: the
   * functions it registered, or a ScriptError with Redis's text.
   */
  loadLibrary(code: Buffer): LibraryFunction[] {
    const raw = this.#raw;
    const lua = this.#lua;
    const L = this.#L;
    raw._lua_settop(L, 0);
    raw._lua_rawgeti(L, LUA_REGISTRYINDEX, BigInt(this.#loadLibraryRef));
    this.#pushBytes(code);
    const status = raw._lua_pcallk(L, 1, 2, 0, 0, 0);
    try {
      if (status !== 0) throw new ScriptError(`ERR ${this.#string(-1) ?? 'not enough memory'}`);
      if (raw._lua_toboolean(L, 1) === 0) throw new ScriptError(`ERR ${this.#string(2) ?? ''}`);
      const functions: LibraryFunction[] = [];
      for (let i = 1; raw._lua_rawgeti(L, 2, BigInt(i)) === T_TABLE; i++) {
        lua.lua_getfield(L, -1, 'name');
        const name = this.#string(-1) as string;
        raw._lua_settop(L, -2);
        lua.lua_getfield(L, -1, 'description');
        const description = raw._lua_type(L, -1) === T_STRING ? this.#string(-1) : undefined;
        raw._lua_settop(L, -2);
        const flags: string[] = [];
        lua.lua_getfield(L, -1, 'flags');
        for (let j = 1; raw._lua_rawgeti(L, -1, BigInt(j)) === T_STRING; j++) {
          flags.push(this.#string(-1) as string);
          raw._lua_settop(L, -2);
        }
        raw._lua_settop(L, -3);
        lua.lua_getfield(L, -1, 'callback');
        const ref = lua.luaL_ref(L, LUA_REGISTRYINDEX);
        raw._lua_settop(L, -2);
        functions.push({ name, description, flags, ref });
      }
      return functions;
    } finally {
      raw._lua_settop(L, 0);
    }
  }

  /** Forget a function's callback (FUNCTION DELETE, FLUSH, LOAD REPLACE). */
  release(ref: number): void {
    this.#lua.luaL_unref(this.#L, LUA_REGISTRYINDEX, ref);
  }

  /** A string (or number, converted) at `index`, binary-safe. */
  #bytes(index: number, L = this.#L): Buffer | undefined {
    const raw = this.#raw;
    const lengthPointer = raw._malloc(4);
    const pointer = raw._lua_tolstring(L, index, lengthPointer);
    const length = raw.HEAPU32[lengthPointer >> 2] as number;
    raw._free(lengthPointer);
    if (pointer === 0) return undefined;
    return Buffer.from(raw.HEAPU8.subarray(pointer, pointer + length));
  }

  #string(index: number, L = this.#L): string | undefined {
    return this.#bytes(index, L)?.toString('latin1');
  }

  /** cjson.decode's result: objects as tables, arrays as sequences, null as cjson.null (argument 2). */
  #pushJson(L: number, value: unknown, nullIndex: number, depth: number): void {
    const raw = this.#raw;
    raw._lua_checkstack(L, 4);
    if (value === null || depth > 1000) raw._lua_pushvalue(L, nullIndex);
    else if (typeof value === 'string') this.#pushBytes(Buffer.from(value, 'utf8'), L);
    else if (typeof value === 'number') {
      if (Number.isSafeInteger(value)) raw._lua_pushinteger(L, BigInt(value));
      else raw._lua_pushnumber(L, value);
    } else if (typeof value === 'boolean') raw._lua_pushboolean(L, value ? 1 : 0);
    else if (Array.isArray(value)) {
      raw._lua_createtable(L, value.length, 0);
      value.forEach((item, i) => {
        this.#pushJson(L, item, nullIndex, depth + 1);
        raw._lua_rawseti(L, -2, BigInt(i + 1));
      });
    } else {
      const entries = Object.entries(value as Record<string, unknown>);
      raw._lua_createtable(L, 0, entries.length);
      for (const [key, item] of entries) {
        this.#pushBytes(Buffer.from(key, 'utf8'), L);
        this.#pushJson(L, item, nullIndex, depth + 1);
        raw._lua_rawset(L, -3);
      }
    }
  }
}

/** How deep arrays and objects nest in a parsed JSON value. */
function jsonDepth(value: unknown): number {
  if (value === null || typeof value !== 'object') return 0;
  let deepest = 0;
  for (const item of Array.isArray(value) ? value : Object.values(value)) deepest = Math.max(deepest, jsonDepth(item));
  return deepest + 1;
}

/** The 1-based character where nesting reaches `depth` (cjson's error position). */
function nestingAt(text: string, depth: number): number {
  let level = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '[' || c === '{') {
      if (++level === depth) return i + 1;
    } else if (c === ']' || c === '}') level--;
  }
  return text.length;
}

/** cjson's texts for the commonest decode errors. */
function jsonError(text: string, error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const position = /position (\d+)/.exec(message);
  const at = position === null ? text.length + 1 : Number(position[1]) + 1;
  if (text.trim() === '') return 'Expected value but found T_END at character 1';
  return `Expected value but found invalid token at character ${at}`;
}

/** evalExtractShebangFlags: `#!lua flags=no-writes,allow-oom` on the first line. */
export function shebang(body: Buffer): { flags: ScriptFlags; skip: number } {
  if (body[0] !== 0x23 || body[1] !== 0x21) return { flags: { compat: true, noWrites: false, allowOom: false }, skip: 0 };
  const end = body.indexOf(0x0a);
  if (end === -1) throw new ScriptError('ERR Invalid script shebang');
  const parts = body.toString('latin1', 0, end).trim().split(/\s+/);
  if (parts[0] !== '#!lua') throw new ScriptError(`ERR Unexpected engine in script shebang: ${parts[0]}`);
  let noWrites = false;
  let allowOom = false;
  for (const part of parts.slice(1)) {
    if (!part.startsWith('flags=')) throw new ScriptError(`ERR Unknown lua shebang option: ${part}`);
    for (const flag of part.slice(6).split(',')) {
      if (flag === '') continue;
      if (flag === 'no-writes') noWrites = true;
      else if (flag === 'allow-oom') allowOom = true;
      else if (flag === 'allow-stale' || flag === 'no-cluster' || flag === 'allow-cross-slot-keys') {
        // Accepted: mini-redis is never stale, nor a cluster of several nodes.
      } else throw new ScriptError(`ERR Unexpected flag in script shebang: ${flag}`);
    }
  }
  return { flags: { compat: false, noWrites, allowOom }, skip: end };
}
