import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { appendFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { AofConfigError, AofLoadError } from '../src/aof.js';
import { createMiniRedis } from '../src/app.js';
import { freePort, parseReply, RawClient, REDIS_SERVER, show, startMiniRedis } from './support.js';

// The append-only file: what was acknowledged survives a SIGKILL (appendfsync always; everysec
// loses at most the last second), BGREWRITEAOF and CONFIG SET appendonly, and a truncated or
// corrupt file at start (Redis's aof-load-truncated rule, or a clear error naming the offset).

const MAIN = join(dirname(fileURLToPath(import.meta.url)), '../dist/main.js');
const dirs: string[] = [];
const tempDir = (): string => {
  const dir = mkdtempSync(join(tmpdir(), 'mini-redis-aof-'));
  dirs.push(dir);
  return dir;
};
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});
/** A flat name/value array reply as an object. */
const parseMap = (reply: Buffer): Record<string, string> => {
  const flat = parseReply(reply) as string[];
  return Object.fromEntries(Array.from({ length: flat.length / 2 }, (_, i) => [flat[2 * i], flat[2 * i + 1]]));
};
const field = (info: string, name: string): string | undefined => new RegExp(`^${name}:(.*)\\r?$`, 'm').exec(info)?.[1]?.trim();
const connect = (port: number): Redis => new Redis({ port, host: '127.0.0.1', lazyConnect: true });

async function until(check: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** mini-redis in a process of its own (dist/main.js), so that it can be SIGKILLed. */
async function spawnMiniRedis(env: Record<string, string>): Promise<{ port: number; child: ChildProcess; exited: Promise<unknown> }> {
  const port = await freePort();
  const child = spawn(process.execPath, [MAIN], {
    env: { ...process.env, RESP_PORT: String(port), PORT: String(await freePort()), HOST: '127.0.0.1', SAVE: '', ...env },
    stdio: 'ignore',
  });
  const exited = once(child, 'exit');
  await until(async () => {
    const client = new RawClient(port);
    try {
      return (await client.send(['PING']))[0]?.toString() === '+PONG\r\n';
    } catch {
      return false;
    } finally {
      client.close();
    }
  }, 'mini-redis to listen');
  return { port, child, exited };
}

/** Run `commands` on a mini-redis with APPENDONLY=yes in `dir`, stop it, and give the files. */
async function writeAof(dir: string, commands: string[][]): Promise<{ manifest: string; incr: string }> {
  const mini = await startMiniRedis({ DATA_DIR: dir, APPENDONLY: 'yes', SAVE: '' });
  const client = new RawClient(mini.port);
  try {
    await client.send(commands);
    // The base the start wrote is on disk once INFO says no rewrite is running.
    await until(
      async () => field((await client.send(['INFO persistence']))[0]?.toString() ?? '', 'aof_rewrite_in_progress') === '0',
      'the first rewrite',
    );
  } finally {
    client.close();
    await mini.stop();
  }
  const aofDir = join(dir, 'appendonlydir');
  const incr = readdirSync(aofDir).find((name) => name.endsWith('.incr.aof')) as string;
  return { manifest: join(aofDir, 'appendonly.aof.manifest'), incr: join(aofDir, incr) };
}

describe('crash safety', () => {
  it('appendfsync always: a write acknowledged before SIGKILL is there after a restart', async () => {
    const dir = tempDir();
    const first = await spawnMiniRedis({ DATA_DIR: dir, APPENDONLY: 'yes', APPENDFSYNC: 'always' });
    const client = connect(first.port);
    await client.connect();
    await client.set('acknowledged', 'yes');
    await client.hset('h', 'f', 'v');
    client.disconnect();
    first.child.kill('SIGKILL');
    await first.exited;

    const second = await spawnMiniRedis({ DATA_DIR: dir, APPENDONLY: 'yes' });
    const again = connect(second.port);
    try {
      await again.connect();
      expect(await again.get('acknowledged')).toBe('yes');
      expect(await again.hgetall('h')).toEqual({ f: 'v' });
    } finally {
      again.disconnect();
      second.child.kill('SIGKILL');
      await second.exited;
    }
  });

  it('appendfsync everysec: what was written more than a second before SIGKILL is there after a restart', async () => {
    const dir = tempDir();
    const first = await spawnMiniRedis({ DATA_DIR: dir, APPENDONLY: 'yes', APPENDFSYNC: 'everysec' });
    const client = connect(first.port);
    await client.connect();
    await client.rpush('older', 'a', 'b');
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await client.set('newest', 'maybe');
    client.disconnect();
    first.child.kill('SIGKILL');
    await first.exited;

    const second = await spawnMiniRedis({ DATA_DIR: dir, APPENDONLY: 'yes' });
    const again = connect(second.port);
    try {
      await again.connect();
      expect(await again.lrange('older', 0, -1)).toEqual(['a', 'b']);
    } finally {
      again.disconnect();
      second.child.kill('SIGKILL');
      await second.exited;
    }
  });
});

describe('crash during a rewrite', () => {
  it('SIGKILL while BGREWRITEAOF writes the new base loses nothing acknowledged', async () => {
    const dir = tempDir();
    const first = await spawnMiniRedis({ DATA_DIR: dir, APPENDONLY: 'yes', APPENDFSYNC: 'always' });
    const client = new RawClient(first.port);
    const value = 'x'.repeat(1000);
    for (let batch = 0; batch < 20; batch++) {
      await client.send(Array.from({ length: 500 }, (_, i) => ['SET', `key:${batch * 500 + i}`, value]));
    }
    expect((await client.send(['BGREWRITEAOF', 'SET after-rewrite-began yes'])).map(show)).toEqual([
      '+Background append only file rewriting started⏎',
      '+OK⏎',
    ]);
    client.close();
    first.child.kill('SIGKILL');
    await first.exited;

    const second = await spawnMiniRedis({ DATA_DIR: dir, APPENDONLY: 'yes' });
    const again = new RawClient(second.port);
    try {
      expect((await again.send(['DBSIZE', 'GET after-rewrite-began', 'STRLEN key:9999'])).map(show)).toEqual([
        ':10001⏎',
        '$3⏎yes⏎',
        ':1000⏎',
      ]);
    } finally {
      again.close();
      second.child.kill('SIGKILL');
      await second.exited;
    }
  });
});

describe('loading at start', () => {
  const commands = [
    ['SET', 'a', '1'],
    ['SELECT', '2'],
    ['RPUSH', 'l', 'x', 'y'],
    ['SET', 't', 'v', 'EX', '1000'],
    ['MULTI'],
    ['INCR', 'n'],
    ['INCR', 'n'],
    ['EXEC'],
  ];

  it('replays base and incremental file: every database, TTLs, transactions (PUBLISH goes to replicas, not to the AOF)', async () => {
    const dir = tempDir();
    const { incr } = await writeAof(dir, [...commands, ['PUBLISH', 'channel', 'message']]);
    expect(readFileSync(incr, 'latin1')).not.toContain('PUBLISH');
    expect(readFileSync(incr, 'latin1')).toContain('*2\r\n$4\r\nINCR\r\n$1\r\nn\r\n');
    const mini = await startMiniRedis({ DATA_DIR: dir, APPENDONLY: 'yes', SAVE: '' });
    const client = connect(mini.port);
    try {
      await client.connect();
      expect(await client.get('a')).toBe('1');
      await client.select(2);
      expect(await client.lrange('l', 0, -1)).toEqual(['x', 'y']);
      expect(await client.ttl('t')).toBeGreaterThan(900);
      expect(await client.get('n')).toBe('2');
      expect(field(await client.info('persistence'), 'aof_enabled')).toBe('1');
    } finally {
      client.disconnect();
      await mini.stop();
    }
  });

  it('a truncated last command: loads what is complete and truncates the file (aof-load-truncated yes)', async () => {
    const dir = tempDir();
    const { incr } = await writeAof(dir, commands);
    const complete = statSync(incr).size;
    appendFileSync(incr, '*3\r\n$3\r\nSET\r\n$4\r\nhalf\r\n$5\r\nwri');
    const mini = await startMiniRedis({ DATA_DIR: dir, APPENDONLY: 'yes', SAVE: '' });
    const client = connect(mini.port);
    try {
      await client.connect();
      expect(await client.get('a')).toBe('1');
      expect(await client.exists('half')).toBe(0);
      expect(statSync(incr).size).toBe(complete);
    } finally {
      client.disconnect();
      await mini.stop();
    }
  });

  it('a MULTI without its EXEC at the end is reverted as a truncation', async () => {
    const dir = tempDir();
    const { incr } = await writeAof(dir, [['SET', 'a', '1']]);
    const complete = statSync(incr).size;
    appendFileSync(incr, '*1\r\n$5\r\nMULTI\r\n*3\r\n$3\r\nSET\r\n$1\r\nb\r\n$1\r\n2\r\n');
    const mini = await startMiniRedis({ DATA_DIR: dir, APPENDONLY: 'yes', SAVE: '' });
    const client = connect(mini.port);
    try {
      await client.connect();
      expect(await client.get('a')).toBe('1');
      expect(await client.exists('b')).toBe(0);
      expect(statSync(incr).size).toBe(complete);
    } finally {
      client.disconnect();
      await mini.stop();
    }
  });

  it('a truncated last command with aof-load-truncated no: a clear error naming the file and offset', async () => {
    const dir = tempDir();
    const { incr } = await writeAof(dir, commands);
    const at = statSync(incr).size;
    appendFileSync(incr, '*2\r\n$3\r\nDEL');
    const start = () =>
      createMiniRedis({
        env: { RESP_PORT: '0', PORT: '0', HOST: '127.0.0.1', DATA_DIR: dir, APPENDONLY: 'yes', SAVE: '', AOF_LOAD_TRUNCATED: 'no' },
      });
    expect(start).toThrow(AofLoadError);
    expect(start).toThrow(`Unexpected end of file (aof-load-truncated is no) reading the append only file ${incr} at offset ${at}`);
    try {
      start();
    } catch (error) {
      expect((error as AofLoadError).code).toBe('PB_ERR_AOF_LOAD');
    }
  });

  it('APPENDFILENAME or APPENDDIRNAME that is a path: PB_ERR_AOF_CONFIG at start; other names are used', async () => {
    const dir = tempDir();
    for (const env of [{ APPENDFILENAME: '../escape.aof' }, { APPENDDIRNAME: 'a/b' }]) {
      expect(() =>
        createMiniRedis({ env: { RESP_PORT: '0', PORT: '0', HOST: '127.0.0.1', DATA_DIR: dir, SAVE: '', APPENDONLY: 'yes', ...env } }),
      ).toThrow(AofConfigError);
    }
    const mini = await startMiniRedis({ DATA_DIR: dir, APPENDONLY: 'yes', SAVE: '', APPENDFILENAME: 'mine.aof', APPENDDIRNAME: 'aofdir' });
    const client = new RawClient(mini.port);
    try {
      await client.send(['SET k v']);
      await until(() => existsSync(join(dir, 'aofdir', 'mine.aof.manifest')), 'the manifest');
      expect((await client.send(['CONFIG GET append*name'])).map((reply) => parseMap(reply))).toEqual([
        { appenddirname: 'aofdir', appendfilename: 'mine.aof' },
      ]);
    } finally {
      client.close();
      await mini.stop();
    }
  });

  it('garbage in the middle: the process exits non-zero with "Bad file format" and the offset', async () => {
    const dir = tempDir();
    const { incr } = await writeAof(dir, commands);
    const data = readFileSync(incr);
    const at = data.indexOf('*2\r\n$4\r\nINCR');
    expect(at).toBeGreaterThan(0);
    writeFileSync(incr, Buffer.concat([data.subarray(0, at), Buffer.from('garbage\r\n'), data.subarray(at)]));
    const port = await freePort();
    const child = spawn(process.execPath, [MAIN], {
      env: {
        ...process.env,
        RESP_PORT: String(port),
        PORT: String(await freePort()),
        HOST: '127.0.0.1',
        SAVE: '',
        DATA_DIR: dir,
        APPENDONLY: 'yes',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(code).not.toBe(0);
    expect(output).toContain(
      `Bad file format (make a backup of your AOF file, then use ./redis-check-aof --fix <filename.manifest>) reading the append only file ${incr} at offset ${at}`,
    );
    expect(output).toContain('PB_ERR_AOF_LOAD');
  });
});

describe('BGREWRITEAOF and CONFIG SET appendonly', () => {
  it('CONFIG SET appendonly yes writes a base of the dataset; BGREWRITEAOF answers as Redis and switches to a new base', async () => {
    const dir = tempDir();
    const mini = await startMiniRedis({ DATA_DIR: dir, SAVE: '' });
    const client = new RawClient(mini.port);
    try {
      await client.send(['SET before-aof 1', 'CONFIG SET appendonly yes', 'SET after-aof 2']);
      const aofDir = join(dir, 'appendonlydir');
      // While the base is written the manifest names the increment only; then both.
      await until(
        () =>
          existsSync(join(aofDir, 'appendonly.aof.manifest')) &&
          readFileSync(join(aofDir, 'appendonly.aof.manifest'), 'latin1').includes('type b'),
        'the first base',
      );
      expect(readFileSync(join(aofDir, 'appendonly.aof.manifest'), 'latin1')).toBe(
        'file appendonly.aof.1.base.rdb seq 1 type b\nfile appendonly.aof.1.incr.aof seq 1 type i\n',
      );
      expect((await client.send(['BGREWRITEAOF'])).map(show)).toEqual(['+Background append only file rewriting started⏎']);
      await until(
        () => readFileSync(join(aofDir, 'appendonly.aof.manifest'), 'latin1').includes('appendonly.aof.2.base.rdb'),
        'the rewrite to switch the manifest',
      );
      expect(readdirSync(aofDir).sort()).toEqual(['appendonly.aof.2.base.rdb', 'appendonly.aof.2.incr.aof', 'appendonly.aof.manifest']);
      await client.send(['SET after-rewrite 3']);
      const info = (await client.send(['INFO persistence']))[0]?.toString() ?? '';
      expect(field(info, 'aof_enabled')).toBe('1');
      expect(field(info, 'aof_rewrites')).toBe('2');
      expect(field(info, 'aof_last_bgrewrite_status')).toBe('ok');
      expect((await client.send(['CONFIG GET appendonly'])).map(show)).toEqual(['*2⏎$10⏎appendonly⏎$3⏎yes⏎']);
    } finally {
      client.close();
      await mini.stop();
    }
    const again = await startMiniRedis({ DATA_DIR: dir, APPENDONLY: 'yes', SAVE: '' });
    const check = new RawClient(again.port);
    try {
      expect((await check.send(['MGET before-aof after-aof after-rewrite'])).map(show)).toEqual(['*3⏎$1⏎1⏎$1⏎2⏎$1⏎3⏎']);
    } finally {
      check.close();
      await again.stop();
    }
  });

  it('rewrites by itself once the AOF grew by auto-aof-rewrite-percentage past auto-aof-rewrite-min-size', async () => {
    const dir = tempDir();
    const mini = await startMiniRedis({ DATA_DIR: dir, APPENDONLY: 'yes', SAVE: '' });
    const client = new RawClient(mini.port);
    try {
      const info = async (name: string) => field((await client.send(['INFO persistence']))[0]?.toString() ?? '', name);
      await until(async () => (await info('aof_rewrite_in_progress')) === '0', 'the first base');
      const before = Number(await info('aof_rewrites'));
      expect(
        (await client.send(['CONFIG SET auto-aof-rewrite-min-size 4kb', 'CONFIG SET auto-aof-rewrite-percentage 100'])).map(show),
      ).toEqual(['+OK⏎', '+OK⏎']);
      const value = 'v'.repeat(100);
      for (let i = 0; i < 100; i++) await client.send([['SET', `key${i % 10}`, value]]);
      await until(async () => Number(await info('aof_rewrites')) > before, 'an automatic rewrite');
      // The increment starts over; the base holds the ten keys.
      await until(async () => Number(await info('aof_current_size')) < 8 * 1024, 'the smaller AOF');
    } finally {
      client.close();
      await mini.stop();
    }
  });
});

describe('the same files as Redis 7.0.15', () => {
  /** redis-server with appendonly yes in `dir` (its own AOF directory), until `stop()`. */
  async function redisWithAof(dir: string): Promise<{ port: number; stop(): Promise<void> }> {
    const port = await freePort();
    const child = spawn(
      REDIS_SERVER,
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes', '--dir', dir, '--loglevel', 'warning'],
      {
        stdio: 'ignore',
      },
    );
    const exited = once(child, 'exit');
    await until(async () => {
      const client = new RawClient(port);
      try {
        return (await client.send(['PING']))[0]?.toString() === '+PONG\r\n';
      } catch {
        return false;
      } finally {
        client.close();
      }
    }, 'redis-server to listen');
    return {
      port,
      stop: async () => {
        child.kill('SIGTERM'); // a clean stop: it fsyncs its AOF
        await exited;
      },
    };
  }
  const script = [
    ['SET', 'a', '1'],
    ['SELECT', '2'],
    ['RPUSH', 'l', 'a', 'b'],
    ['LPOP', 'l'],
    ['SELECT', '0'],
    ['INCRBYFLOAT', 'f', '1.5'],
    ['PUBLISH', 'ch', 'm'],
    ['DEL', 'nothing'],
    ['GETSET', 'a', '2'],
    ['MULTI'],
    ['SADD', 's', 'x'],
    ['HSET', 'h', 'f', 'v'],
    ['EXEC'],
  ];

  it('the incremental file and manifest are byte for byte redis-server’s, and each loads the other’s directory', async () => {
    const [redisDir, miniDir] = [tempDir(), tempDir()];
    const redis = await redisWithAof(redisDir);
    const mini = await startMiniRedis({ DATA_DIR: miniDir, APPENDONLY: 'yes', SAVE: '' });
    for (const port of [redis.port, mini.port]) {
      const client = new RawClient(port);
      try {
        await client.send(script);
        // Both write their first base in the background when the AOF starts.
        await until(
          async () => field((await client.send(['INFO persistence']))[0]?.toString() ?? '', 'aof_rewrite_in_progress') === '0',
          'the first base',
        );
      } finally {
        client.close();
      }
    }
    await redis.stop();
    await mini.stop();
    const files = (dir: string) => readdirSync(join(dir, 'appendonlydir')).sort();
    expect(files(miniDir)).toEqual(files(redisDir));
    for (const name of ['appendonly.aof.1.incr.aof', 'appendonly.aof.manifest']) {
      expect(show(readFileSync(join(miniDir, 'appendonlydir', name)))).toBe(show(readFileSync(join(redisDir, 'appendonlydir', name))));
    }
    const check = ['MGET a f', 'SMEMBERS s', 'HGETALL h', 'SELECT 2', 'LRANGE l 0 -1'];
    const expected = ['*2⏎$1⏎2⏎$3⏎1.5⏎', '*1⏎$1⏎x⏎', '*2⏎$1⏎f⏎$1⏎v⏎', '+OK⏎', '*1⏎$1⏎b⏎'];
    // redis-server loads mini-redis's directory; mini-redis loads redis-server's.
    const redisOnMini = await redisWithAof(miniDir);
    const miniOnRedis = await startMiniRedis({ DATA_DIR: redisDir, APPENDONLY: 'yes', SAVE: '' });
    try {
      for (const port of [redisOnMini.port, miniOnRedis.port]) {
        const client = new RawClient(port);
        try {
          expect((await client.send(check)).map(show)).toEqual(expected);
        } finally {
          client.close();
        }
      }
    } finally {
      await redisOnMini.stop();
      await miniOnRedis.stop();
    }
  });
});
