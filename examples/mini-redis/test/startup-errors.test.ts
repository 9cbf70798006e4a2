import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { freePort, REDIS_SERVER, runMiniRedisToExit, runToExit, tempDirs } from './support.js';

// What `node dist/main.js` does when DATA_DIR holds a file it cannot load, or a setting is bad: one
// line on stderr naming the PB_ERR code (docs/errors.md) and the reason, exit code 1, no stack
// trace — whatever LOG_LEVEL says.

const tempDir = tempDirs('mini-redis-startup-');

/** The whole of stderr: exactly one line, `mini-redis: cannot start: <code>: <message>`. */
const oneLine = (stderr: string): string => {
  expect(stderr.endsWith('\n')).toBe(true);
  expect(stderr.slice(0, -1)).not.toContain('\n');
  return stderr.slice(0, -1);
};

describe('a file in DATA_DIR that cannot be loaded', () => {
  it("a truncated dump.rdb: PB_ERR_RDB_LOAD with Redis's words, exit 1", async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'dump.rdb'), Buffer.concat([Buffer.from('REDIS0010', 'latin1'), Buffer.from([0xfa, 0x09])]));
    const { code, stderr } = await runMiniRedisToExit({ DATA_DIR: dir, LOG_LEVEL: 'info' });
    expect(code).toBe(1);
    expect(oneLine(stderr)).toBe(
      `mini-redis: cannot start: PB_ERR_RDB_LOAD: Cannot load ${join(dir, 'dump.rdb')}: Short read or OOM loading DB. Unrecoverable error, aborting now.`,
    );
  });

  it('a dump.rdb with a wrong checksum: PB_ERR_RDB_LOAD, exit 1', async () => {
    const dir = tempDir();
    // An empty RDB 10: header, EOF, and a CRC-64 that is not the file's.
    writeFileSync(join(dir, 'dump.rdb'), Buffer.concat([Buffer.from('REDIS0010', 'latin1'), Buffer.from([0xff]), Buffer.alloc(8, 1)]));
    const { code, stderr } = await runMiniRedisToExit({ DATA_DIR: dir });
    expect(code).toBe(1);
    expect(oneLine(stderr)).toMatch(/^mini-redis: cannot start: PB_ERR_RDB_LOAD: Cannot load .*dump\.rdb: Wrong RDB checksum/);
  });

  it('garbage in the append-only file: PB_ERR_AOF_LOAD naming the file and the offset, exit 1', async () => {
    const dir = tempDir();
    const aofDir = join(dir, 'appendonlydir');
    mkdirSync(aofDir);
    writeFileSync(join(aofDir, 'appendonly.aof.manifest'), 'file appendonly.aof.1.incr.aof seq 1 type i\n');
    const good = '*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n';
    writeFileSync(join(aofDir, 'appendonly.aof.1.incr.aof'), `${good}garbage\r\n`);
    const { code, stderr } = await runMiniRedisToExit({ DATA_DIR: dir, APPENDONLY: 'yes' });
    expect(code).toBe(1);
    expect(oneLine(stderr)).toBe(
      'mini-redis: cannot start: PB_ERR_AOF_LOAD: Bad file format (make a backup of your AOF file, then use ./redis-check-aof --fix <filename.manifest>) ' +
        `reading the append only file ${join(aofDir, 'appendonly.aof.1.incr.aof')} at offset ${good.length}`,
    );
  });
});

describe('a bad setting', () => {
  it('APPENDDIRNAME that is a path: PB_ERR_AOF_CONFIG, exit 1', async () => {
    const { code, stderr } = await runMiniRedisToExit({ DATA_DIR: tempDir(), APPENDONLY: 'yes', APPENDDIRNAME: '../elsewhere' });
    expect(code).toBe(1);
    expect(oneLine(stderr)).toBe(
      "mini-redis: cannot start: PB_ERR_AOF_CONFIG: appenddirname can't be a path, just a filename: ../elsewhere",
    );
  });
});

describe('a full disk at the first start with the AOF on', () => {
  /** Run behind this: `dir` a 512 KB tmpfs of the process's own (`unshare -m`, as root), filled up before it starts. */
  const onFullTmpfs = (dir: string): string[] => [
    'unshare',
    '-m',
    'sh',
    '-c',
    'mount -t tmpfs -o size=512k tmpfs "$0" && { head -c 1048576 /dev/zero > "$0/filler" 2>/dev/null; exec "$@"; }',
    dir,
  ];

  it('the AOF cannot be created: PB_ERR_AOF_LOAD and exit 1, as redis-server 7.0.15 exits 1', async () => {
    const redisDir = tempDir();
    const redis = await runToExit(
      REDIS_SERVER,
      ['--port', String(await freePort()), '--bind', '127.0.0.1', '--dir', redisDir, '--appendonly', 'yes', '--save', ''],
      { wrap: onFullTmpfs(redisDir) },
    );
    expect(redis.code).toBe(1);
    expect(redis.stdout).toContain('Write error writing append only file on disk: No space left on device');
    const dir = tempDir();
    const { code, stderr } = await runMiniRedisToExit({ DATA_DIR: dir, APPENDONLY: 'yes' }, onFullTmpfs(dir));
    expect(code).toBe(1);
    expect(oneLine(stderr)).toBe(
      `mini-redis: cannot start: PB_ERR_AOF_LOAD: Can't open the append-only file in ${join(dir, 'appendonlydir')}: No space left on device`,
    );
  });
});
