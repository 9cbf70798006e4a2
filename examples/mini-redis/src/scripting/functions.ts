import { globMatch } from '@portbind/resp';
import { type LibraryFunction, type LuaEngine, ScriptError } from './engine.js';

// Redis 7.0's functions (FUNCTION LOAD, FCALL): libraries of Lua functions, kept until deleted
// or flushed, on the same Lua VM as EVAL's scripts.

export interface LoadedFunction extends LibraryFunction {
  readonly library: string;
  readonly noWrites: boolean;
  readonly allowOom: boolean;
}

export interface Library {
  readonly name: string;
  readonly code: Buffer;
  readonly functions: readonly LoadedFunction[];
}

/** The shebang of a library: `#!lua name=mylib` (functions.c, functionExtractLibMetaData). */
function metadata(code: Buffer): { engine: string; name: string; skip: number } {
  if (code[0] !== 0x23 || code[1] !== 0x21) throw new ScriptError('ERR Missing library metadata');
  const end = code.indexOf(0x0a);
  if (end === -1) throw new ScriptError('ERR Invalid library metadata');
  const parts = code.toString('latin1', 2, end).trim().split(/\s+/);
  const engine = parts[0] ?? '';
  let name: string | undefined;
  for (const part of parts.slice(1)) {
    if (part.startsWith('name=')) {
      if (name !== undefined) throw new ScriptError('ERR Invalid metadata value, name argument was given multiple times');
      name = part.slice(5);
    } else throw new ScriptError(`ERR Invalid metadata value given: ${part}`);
  }
  if (name === undefined) throw new ScriptError('ERR Library name was not given');
  return { engine, name, skip: end };
}

export class Functions {
  readonly #libraries = new Map<string, Library>();
  readonly #functions = new Map<string, LoadedFunction>();

  get libraryCount(): number {
    return this.#libraries.size;
  }

  get functionCount(): number {
    return this.#functions.size;
  }

  get(name: string): LoadedFunction | undefined {
    return this.#functions.get(name);
  }

  /** FUNCTION LOAD [REPLACE]: the library's name, or a ScriptError. */
  load(lua: LuaEngine, code: Buffer, replace: boolean): string {
    const meta = metadata(code);
    if (!/^[A-Za-z0-9_]+$/.test(meta.name))
      throw new ScriptError(
        'ERR Library names can only contain letters, numbers, or underscores(_) and must be at least one character long',
      );
    if (meta.engine.toLowerCase() !== 'lua') throw new ScriptError(`ERR Engine '${meta.engine}' not found`);
    const existing = this.#libraries.get(meta.name);
    if (existing !== undefined && !replace) throw new ScriptError(`ERR Library '${meta.name}' already exists`);
    // The shebang line blanked (its line feed kept): line numbers stay the user's.
    const body = Buffer.concat([Buffer.alloc(meta.skip, 0x20), code.subarray(meta.skip)]);
    const registered = lua.loadLibrary(body);
    const release = (): void => {
      for (const fn of registered) lua.release(fn.ref);
    };
    if (registered.length === 0) {
      release();
      throw new ScriptError('ERR No functions registered');
    }
    for (const fn of registered) {
      const other = this.#functions.get(fn.name);
      if (other !== undefined && other.library !== meta.name) {
        release();
        throw new ScriptError(`ERR Function ${fn.name} already exists`);
      }
    }
    if (existing !== undefined) this.delete(lua, meta.name);
    const functions = registered.map((fn) => ({
      ...fn,
      library: meta.name,
      noWrites: fn.flags.includes('no-writes'),
      allowOom: fn.flags.includes('allow-oom'),
    }));
    this.#libraries.set(meta.name, { name: meta.name, code, functions });
    for (const fn of functions) this.#functions.set(fn.name, fn);
    return meta.name;
  }

  /** FUNCTION DELETE: false when there is no such library. */
  delete(lua: LuaEngine, name: string): boolean {
    const library = this.#libraries.get(name);
    if (library === undefined) return false;
    for (const fn of library.functions) {
      this.#functions.delete(fn.name);
      lua.release(fn.ref);
    }
    this.#libraries.delete(name);
    return true;
  }

  flush(lua: LuaEngine): void {
    for (const name of [...this.#libraries.keys()]) this.delete(lua, name);
  }

  /**
   * FUNCTION RESTORE: load `codes` as new libraries, then FLUSH (they replace every library),
   * APPEND (a library or function name already taken fails it all) or REPLACE (a library of the
   * same name is replaced; a function name taken by another fails it all): functions.c libraryJoin.
   * Nothing changes when it fails (a ScriptError).
   */
  restore(lua: LuaEngine, codes: readonly Buffer[], policy: 'flush' | 'append' | 'replace'): void {
    const staged = new Functions();
    try {
      for (const code of codes) staged.load(lua, code, false);
      if (policy !== 'flush') {
        const replaced = new Set<string>();
        for (const name of staged.#libraries.keys()) {
          if (!this.#libraries.has(name)) continue;
          if (policy === 'append') throw new ScriptError(`ERR Library ${name} already exists`);
          replaced.add(name);
        }
        for (const fn of staged.#functions.values()) {
          const other = this.#functions.get(fn.name);
          if (other !== undefined && !replaced.has(other.library)) throw new ScriptError(`ERR Function ${fn.name} already exists`);
        }
        for (const name of replaced) this.delete(lua, name);
      } else this.flush(lua);
    } catch (error) {
      staged.flush(lua);
      throw error;
    }
    for (const [name, library] of staged.#libraries) this.#libraries.set(name, library);
    for (const [name, fn] of staged.#functions) this.#functions.set(name, fn);
  }

  /** FUNCTION LIST [LIBRARYNAME pattern]. */
  list(pattern: string | undefined): Library[] {
    return [...this.#libraries.values()].filter((library) => pattern === undefined || globMatch(pattern, library.name));
  }
}
