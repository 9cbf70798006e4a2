import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAof } from '../src/aof.js';
import { infoField, RawClient, type Spawned, show, spawnMiniRedis, spawnRedisServer, tempDirs, until } from './support.js';

// AOF write errors as Redis 7.0.15's (aof.c flushAppendOnlyFile, server.c writeCommandsDeniedByDiskError):
// on a real full disk — DATA_DIR is a 512 KB tmpfs mounted in a mount namespace of the server's own
// (`unshare -m`, as root) — the same script runs against mini-redis and redis-server, and every reply
// is compared byte for byte: writes refused with -MISCONF and the reason, reads served,
// aof_last_write_status:err, and writing again (the write that failed first included) once there
// is room. With appendfsync always both exit with 1 instead.

const tempDir = tempDirs('mini-redis-aof-errors-');

/** Run the server in its own mount namespace, with `dir` a 512 KB tmpfs. */
const onTinyTmpfs = (dir: string): string[] => ['unshare', '-m', 'sh', '-c', 'mount -t tmpfs -o size=512k tmpfs "$0" && exec "$@"', dir];

type Which = 'redis' | 'mini';
async function start(which: Which, dir: string, fsync: 'everysec' | 'always'): Promise<Spawned> {
  const wrap = onTinyTmpfs(dir);
  return which === 'redis'
    ? spawnRedisServer(['--dir', dir, '--appendonly', 'yes', '--appendfsync', fsync], wrap)
    : spawnMiniRedis({ DATA_DIR: dir, APPENDONLY: 'yes', APPENDFSYNC: fsync }, wrap);
}

/** `dir` as the server sees it (inside its mount namespace). */
const inside = (server: Spawned, dir: string): string => `/proc/${server.child.pid}/root${dir}`;

/**
 * `which` server with the AOF on (appendfsync `fsync`) in a 512 KB tmpfs: SET before 1, wait for the
 * base the start writes, fill the rest of the disk with a file of the test's, then `body`.
 */
async function onFullDisk<T>(
  which: Which,
  fsync: 'everysec' | 'always',
  body: (server: Spawned, client: RawClient, filler: string, aofDir: string) => Promise<T>,
): Promise<T> {
  const dir = tempDir();
  const server = await start(which, dir, fsync);
  const client = new RawClient(server.port);
  try {
    await client.send([['SET', 'before', '1']]);
    await until(async () => {
      const [info] = await client.send(['INFO persistence']);
      return infoField(info ?? '', 'aof_rewrite_in_progress') === '0' && infoField(info ?? '', 'aof_rewrite_scheduled') === '0';
    }, 'the AOF base');
    const filler = join(inside(server, dir), 'filler');
    let error: NodeJS.ErrnoException | undefined;
    try {
      writeFileSync(filler, Buffer.alloc(1024 * 1024));
    } catch (caught) {
      error = caught as NodeJS.ErrnoException;
    }
    expect(error?.code).toBe('ENOSPC');
    return await body(server, client, filler, join(inside(server, dir), 'appendonlydir'));
  } finally {
    client.close();
    await server.stop('SIGKILL');
  }
}

const big = 'b'.repeat(16 * 1024); // more than the last page of the incremental file can take

describe('the disk fills up (appendfsync everysec)', () => {
  const run = (which: Which) =>
    onFullDisk(which, 'everysec', async (_server, client, filler, aofDir) => {
      // The write that meets the full disk was done in memory; its reply is already on its way.
      const first = await client.send([['SET', 'big', big]]);
      const refused = await client.send([
        'SET small v',
        'PING',
        'GET before',
        'STRLEN big',
        'GET small',
        'MULTI',
        'INCR n',
        'EXEC',
        'DBSIZE',
        'BGREWRITEAOF', // the new incremental file's manifest cannot be written either
      ]);
      const [info] = await client.send(['INFO persistence']);
      const whileFull = {
        status: infoField(info ?? '', 'aof_last_write_status'),
        enabled: infoField(info ?? '', 'aof_enabled'),
        rewrite: infoField(info ?? '', 'aof_last_bgrewrite_status'),
      };
      // Room again: the retry (once a second) writes what failed, and writes are accepted again.
      rmSync(filler);
      await until(async () => {
        const [again] = await client.send(['INFO persistence']);
        return infoField(again ?? '', 'aof_last_write_status') === 'ok';
      }, 'aof_last_write_status:ok');
      const recovered = await client.send(['SET small v', 'PING', 'GET small']);
      // What the incremental file the manifest names holds now (with everysec: once written, whatever the fsync).
      const manifest = readFileSync(join(aofDir, 'appendonly.aof.manifest'), 'latin1');
      const incr = /file (\S+) seq \d+ type i\n$/.exec(manifest)?.[1] as string;
      const commands = parseAof(readFileSync(join(aofDir, incr))).commands.map(({ argv }) =>
        argv.map((arg) => (arg.length > 20 ? `<${arg.length} bytes>` : arg.toString('latin1'))).join(' '),
      );
      // Redis leaves the manifest it could not write as temp-appendonly.aof.manifest; mini-redis removes it.
      const files = readdirSync(aofDir)
        .filter((name) => !name.startsWith('temp-'))
        .sort();
      return { first: first.map(show), refused: refused.map(show), whileFull, recovered: recovered.map(show), manifest, files, commands };
    });

  it('refuses writes with -MISCONF and the reason, serves reads, says err in INFO, and recovers as redis-server 7.0.15', async () => {
    const [redis, mini] = [await run('redis'), await run('mini')];
    const misconf = '-MISCONF Errors writing to the AOF file: No space left on device⏎';
    expect(redis).toEqual({
      first: ['+OK⏎'],
      refused: [
        misconf,
        misconf,
        '$1⏎1⏎',
        ':16384⏎',
        '$-1⏎',
        '+OK⏎',
        misconf,
        '-EXECABORT Transaction discarded because of previous errors.⏎',
        ':2⏎',
        "-ERR Can't execute an AOF background rewriting. Please check the server logs for more information.⏎",
      ],
      whileFull: { status: 'err', enabled: '1', rewrite: 'err' },
      recovered: ['+OK⏎', '+PONG⏎', '$1⏎v⏎'],
      // The manifest still names the first increment (the rewrite could not switch), which has every
      // write once, the one that failed first included; the rewrite that failed to start left its
      // empty increment behind, and made the next write SELECT again.
      manifest: 'file appendonly.aof.1.base.rdb seq 1 type b\nfile appendonly.aof.1.incr.aof seq 1 type i\n',
      files: ['appendonly.aof.1.base.rdb', 'appendonly.aof.1.incr.aof', 'appendonly.aof.2.incr.aof', 'appendonly.aof.manifest'],
      commands: ['SELECT 0', 'SET before 1', 'SET big <16384 bytes>', 'SELECT 0', 'SET small v'],
    });
    expect(mini).toEqual(redis);
  });
});

describe('the disk fills up (appendfsync always)', () => {
  const run = (which: Which) =>
    onFullDisk(which, 'always', async (server, client) => {
      // The write cannot be taken back and must not be acknowledged: the server exits, no reply.
      const reply = await client.send([['SET', 'big', big]]).then(
        (replies) => replies.map(show),
        (error: Error) => error.message,
      );
      const [code, signal] = await server.exited;
      return { reply, code, signal };
    });

  it('exits with 1 without acknowledging the write, as redis-server 7.0.15', async () => {
    const [redis, mini] = [await run('redis'), await run('mini')];
    expect(redis).toEqual({ reply: 'connection closed', code: 1, signal: null });
    expect(mini).toEqual(redis);
  });
});

describe('scripts on a full disk (appendfsync everysec)', () => {
  const write = "return redis.call('set',KEYS[1],'1')";
  const library = [
    '#!lua name=disklib',
    "redis.register_function('wf', function(keys) return redis.call('set', keys[1], '1') end)",
    "redis.register_function{function_name='rf', callback=function(keys) return redis.call('get', keys[1]) end, flags={'no-writes'}}",
  ].join('\n');
  const run = (which: Which) =>
    onFullDisk(which, 'everysec', async (_server, client) => {
      const loaded = await client.send([['FUNCTION', 'LOAD', library]]);
      await client.send([['SET', 'big', big]]); // meets the full disk: writes are refused from now on
      const replies = await client.send([
        ['EVAL', write, '1', 'x'], // refused at the SET, inside the script (script: <sha>, on @user_script:1.)
        ['EVAL', `#!lua\n${write}`, '1', 'x'], // a shebang without no-writes: refused before it runs
        ['EVAL', "return redis.pcall('set',KEYS[1],'1')", '1', 'x'], // pcall gets the error as a value
        ['EVAL', "redis.call('get',KEYS[1]) return redis.call('set',KEYS[1],'1')", '1', 'x'],
        ['EVAL', "return redis.call('get',KEYS[1])", '1', 'before'], // reads are served
        ['EVAL', "#!lua flags=no-writes\nreturn redis.call('get',KEYS[1])", '1', 'before'],
        ['EVAL_RO', write, '1', 'x'], // a read-only script's write: its own error first
        ['EVAL_RO', `#!lua\n${write}`, '1', 'x'],
        ['EVAL', "#!lua flags=no-writes\nreturn redis.call('set',KEYS[1],'1')", '1', 'x'],
        ['EVAL', "return redis.call('nosuchcommand')", '0'],
        ['EVAL', "return redis.call('set',KEYS[1])", '1', 'x'], // wrong arity: that error first
        ['FCALL', 'wf', '1', 'x'], // a function without no-writes: refused before it runs
        ['FCALL', 'rf', '1', 'before'],
        ['FCALL_RO', 'rf', '1', 'before'],
        ['FCALL_RO', 'wf', '1', 'x'],
        'GET x',
      ]);
      return { loaded: loaded.map(show), replies: replies.map(show) };
    });

  it('a script’s write, a shebang script or a function that may write get -MISCONF as from redis-server 7.0.15', async () => {
    const [redis, mini] = [await run('redis'), await run('mini')];
    const misconf = 'MISCONF Errors writing to the AOF file: No space left on device';
    expect(redis.loaded).toEqual(['$7⏎disklib⏎']);
    expect(redis.replies[0]).toMatch(new RegExp(`^-${misconf} script: [0-9a-f]{40}, on @user_script:1\\.⏎$`));
    expect(redis.replies[1]).toBe(`-${misconf}⏎`);
    expect(redis.replies[11]).toBe(`-${misconf}⏎`);
    expect(redis.replies.at(-1)).toBe('$-1⏎');
    expect(mini).toEqual(redis);
  });
});
