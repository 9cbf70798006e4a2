import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CommandLine, RawClient, type Started, startMiniRedis, startRedisServer } from './support.js';

// The replication stream, frame by frame, against redis-server 7.0.15: the same commands run on
// both, each with a SYNC client attached (as Redis's test suite's attach_to_replication_stream),
// and the commands each propagates must be the same — rewrites (SET … EX → SET … PXAT), MULTI/EXEC
// around more than one, SELECT when the database changes, expired keys as DEL/UNLINK, blocked
// clients served by a push after it.

/** A SYNC client: skips the RDB payload, then parses the propagated commands. */
class ReplicationStream {
  readonly socket: Socket;
  #buffer = Buffer.alloc(0);
  #skippedRdb = false;
  readonly commands: string[][] = [];
  #wake: (() => void) | undefined;

  constructor(port: number) {
    this.socket = connect(port, '127.0.0.1');
    this.socket.on('data', (chunk: Buffer) => {
      this.#buffer = Buffer.concat([this.#buffer, chunk]);
      this.#parse();
      this.#wake?.();
    });
    this.socket.write('SYNC\r\n');
  }

  #parse(): void {
    for (;;) {
      const buffer = this.#buffer;
      if (buffer.length === 0) return;
      if (buffer[0] === 0x0a) {
        this.#buffer = buffer.subarray(1); // a newline: Redis's keepalive while it prepares the RDB
        continue;
      }
      const eol = buffer.indexOf('\r\n');
      if (eol === -1) return;
      if (!this.#skippedRdb) {
        const length = Number(buffer.toString('latin1', 1, eol));
        if (buffer.length < eol + 2 + length) return;
        this.#buffer = buffer.subarray(eol + 2 + length);
        this.#skippedRdb = true;
        continue;
      }
      const count = Number(buffer.toString('latin1', 1, eol));
      let pos = eol + 2;
      const args: string[] = [];
      for (let i = 0; i < count; i++) {
        const end = buffer.indexOf('\r\n', pos);
        if (end === -1) return;
        const length = Number(buffer.toString('latin1', pos + 1, end));
        if (buffer.length < end + 2 + length + 2) return;
        args.push(buffer.toString('latin1', end + 2, end + 2 + length));
        pos = end + 2 + length + 2;
      }
      this.commands.push(args);
      this.#buffer = buffer.subarray(pos);
    }
  }

  /** The commands up to (not including) `SET sentinel <value>`. */
  async until(value: string): Promise<string[][]> {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const index = this.commands.findIndex((args) => args[0]?.toLowerCase() === 'set' && args[1] === 'sentinel' && args[2] === value);
      if (index !== -1) return this.commands.splice(0, index + 1).slice(0, -1);
      if (Date.now() > deadline) throw new Error(`no sentinel in ${JSON.stringify(this.commands)}`);
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        setTimeout(resolve, 100);
      });
    }
  }

  /** Once the RDB is read, commands sent after this are in the stream. */
  async ready(): Promise<void> {
    while (!this.#skippedRdb) await new Promise((resolve) => setTimeout(resolve, 10));
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Timestamps and random members vary between runs: `*` in their place. */
function normalize(commands: string[][]): string[] {
  return commands.map((args) => {
    const out = [...args];
    const name = (out[0] ?? '').toUpperCase();
    for (let i = 1; i < out.length; i++) if ((out[i - 1] ?? '').toUpperCase() === 'PXAT') out[i] = '*';
    if (name === 'PEXPIREAT') out[2] = '*';
    if (name === 'SREM') out.splice(2, out.length - 2, '*');
    // XCLAIM's delivery time (XREADGROUP, XCLAIM, XAUTOCLAIM replay as XCLAIM … TIME <ms>).
    for (let i = 1; i < out.length; i++) if (name === 'XCLAIM' && (out[i - 1] ?? '').toUpperCase() === 'TIME') out[i] = '*';
    return out.join(' ');
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let redis: Started;
let mini: Started;
beforeAll(async () => {
  [redis, mini] = await Promise.all([startRedisServer(), startMiniRedis()]);
});
afterAll(async () => {
  await Promise.all([redis?.stop(), mini?.stop()]);
});

/** Run `script` against a server with a SYNC client attached; the propagated commands, normalized. */
async function streamOf(port: number, script: (client: RawClient, port: number) => Promise<void>, tag: string): Promise<string[]> {
  const setup = new RawClient(port);
  await setup.send([['CONFIG', 'SET', 'repl-ping-replica-period', '3600'], 'FLUSHALL']);
  const stream = new ReplicationStream(port);
  await stream.ready();
  try {
    await script(setup, port);
    await setup.send([['SET', 'sentinel', tag]]);
    return normalize(await stream.until(tag));
  } finally {
    stream.close();
    setup.close();
  }
}

/** Both servers, the same script: the same stream. */
async function sameStream(
  script: (client: RawClient, port: number) => Promise<void>,
  tag: string,
  canonical: (lines: string[]) => string[] = (lines) => lines,
): Promise<string[]> {
  const expected = canonical(await streamOf(redis.port, script, tag));
  const actual = canonical(await streamOf(mini.port, script, tag));
  expect(actual).toEqual(expected);
  return actual;
}

describe('the replication stream is Redis 7.0.15’s', () => {
  it('rewrites TTLs as absolute times, INCRBYFLOAT/HINCRBYFLOAT as their results, GETDEL/GETEX as DEL/PERSIST', async () => {
    const stream = await sameStream(async (client) => {
      const past = String(Math.floor(Date.now() / 1000) - 100);
      await client.send([
        'SET foo bar EX 100',
        'SET foo bar PX 100000',
        'SETEX foo 100 bar',
        'PSETEX foo 100000 bar',
        'SET foo bar GET',
        'EXPIRE foo 100',
        'PEXPIRE foo 200000 GT',
        'GETEX foo PERSIST',
        'GETEX foo EX 100',
        'GETEX foo',
        ['EXPIREAT', 'foo', past],
        'DEL missing',
        'EXPIRE missing 100',
        'INCRBYFLOAT f 1.5',
        'HINCRBYFLOAT h f 2.5',
        'SET g v',
        'GETDEL g',
        'GETDEL g',
        'GETSET g w',
      ]);
    }, 'ttl');
    expect(stream[0]).toMatch(/^SELECT \d+$/);
    expect(stream).toContain('SET foo bar PXAT *');
    expect(stream).toContain('SET f 1.5 KEEPTTL');
  });

  it('wraps a transaction of more than one write in MULTI/EXEC and SELECTs when the database changes', async () => {
    const stream = await sameStream(async (client) => {
      await client.send(['MULTI', 'SET a 1', 'GET a', 'INCR a', 'EXEC']);
      await client.send(['MULTI', 'SET b 1', 'GET b', 'EXEC']);
      await client.send(['MULTI', 'GET b', 'EXEC']);
      await client.send(['MULTI', 'SELECT 2', 'SET c 1', 'SELECT 3', 'SET d 1', 'EXEC', 'SELECT 9']);
      await client.send(['SELECT 4', 'SET e 1', 'SELECT 0', 'PUBLISH ch m']);
    }, 'multi');
    expect(stream).toContain('MULTI');
  });

  it('SPOP, LMPOP, ZMPOP, BLPOP/BZPOPMIN at once replay as plain pops with counts', async () => {
    await sameStream(async (client) => {
      await client.send([
        'SADD s a b c d',
        'SPOP s',
        'SPOP s 2',
        'SPOP s 10',
        'RPUSH l a b c',
        'LMPOP 1 l LEFT COUNT 2',
        'BLPOP l 0',
        'RPUSH l2 x y',
        'BLMPOP 0 1 l2 RIGHT COUNT 5',
        'RPUSH l3 x',
        'BLMOVE l3 l4 LEFT RIGHT 0',
        'BRPOPLPUSH l4 l3 0',
        'ZADD z 1 a 2 b 3 c',
        'ZMPOP 1 z MIN COUNT 2',
        'BZPOPMAX z 0',
        'ZMPOP 1 z MIN',
      ]);
    }, 'pops');
  });

  it('a blocked client served by a push replays as the pop after the push', async () => {
    await sameStream(async (client, port) => {
      const waiter = new RawClient(port);
      const waiterZ = new RawClient(port);
      try {
        const served = waiter.send(['BLPOP q 0']);
        const servedZ = waiterZ.send(['BZMPOP 0 1 zq MAX COUNT 2']);
        for (;;) {
          const [info] = await client.send(['INFO clients']);
          if (/blocked_clients:2/.test(info?.toString() ?? '')) break;
          await sleep(20);
        }
        await client.send(['LPUSH q x y', 'ZADD zq 1 a 2 b 3 c']);
        await Promise.all([served, servedZ]);
      } finally {
        waiter.close();
        waiterZ.close();
      }
    }, 'served');
  });

  it('FUNCTION LOAD, DELETE, FLUSH and RESTORE replay as sent (the libraries are data); failed ones and reads do not', async () => {
    const code = "#!lua name=plib\nredis.register_function('pf', function() return 1 end)";
    let payload = '';
    const stream = await sameStream(async (client) => {
      await client.send([
        ['FUNCTION', 'FLUSH'],
        ['FUNCTION', 'LOAD', code],
        ['FUNCTION', 'LOAD', code], // already exists: an error, nothing replayed
        ['FUNCTION', 'LOAD', 'REPLACE', code],
        ['FUNCTION', 'LIST'],
        ['FCALL', 'pf', '0'],
        ['FUNCTION', 'DELETE', 'plib'],
        ['FUNCTION', 'DELETE', 'plib'], // not found
        ['FUNCTION', 'FLUSH', 'ASYNC'], // nothing left to flush: still replayed, as functionFlushCommand
      ]);
      const [, dumped] = await client.send([['FUNCTION', 'LOAD', code], 'FUNCTION DUMP']);
      const raw = dumped as Buffer;
      payload = raw.toString('latin1', raw.indexOf('\r\n') + 2, raw.length - 2);
      await client.send([
        ['FUNCTION', 'RESTORE', Buffer.from(payload, 'latin1')], // already there: an error, nothing replayed
        ['FUNCTION', 'RESTORE', Buffer.from(payload, 'latin1'), 'REPLACE'],
      ]);
    }, 'functions');
    expect(stream).toEqual([
      'SELECT 0',
      'FUNCTION FLUSH',
      `FUNCTION LOAD ${code}`,
      `FUNCTION LOAD REPLACE ${code}`,
      'FUNCTION DELETE plib',
      'FUNCTION FLUSH ASYNC',
      `FUNCTION LOAD ${code}`,
      `FUNCTION RESTORE ${payload} REPLACE`,
    ]);
  });

  it('expired keys replay as DEL, or UNLINK with lazyfree-lazy-expire', async () => {
    const stream = await sameStream(async (client) => {
      // Lazily (GET) or by the active cycle, whichever comes first: the same replay.
      await client.send(['SET lazy v PX 1']);
      await sleep(20);
      await client.send(['GET lazy', ['CONFIG', 'SET', 'lazyfree-lazy-expire', 'yes'], 'SET lazy2 v PX 1']);
      await sleep(20);
      await client.send(['GET lazy2', ['CONFIG', 'SET', 'lazyfree-lazy-expire', 'no']]);
    }, 'expired');
    expect(stream).toContain('DEL lazy');
    expect(stream).toContain('UNLINK lazy2');
  });

  it('XGROUP subcommands replay as sent; XREADGROUP of several entries, or in MULTI, replays inside one MULTI/EXEC', async () => {
    const stream = await sameStream(async (client) => {
      await client.send([
        'XADD s 1-1 f v',
        'XADD s 1-2 f v',
        'XADD s 1-3 f v',
        'XGROUP CREATE s g 0',
        'XGROUP CREATE s2 g2 $ MKSTREAM',
        'XGROUP CREATE s g 0', // BUSYGROUP: nothing
        'XGROUP CREATECONSUMER s g alice',
        'XGROUP CREATECONSUMER s g alice', // exists: nothing
        'XGROUP SETID s2 g2 0 ENTRIESREAD 0',
        'XGROUP DESTROY s2 g2',
        'XGROUP DESTROY s2 g2', // gone: nothing
        'XGROUP HELP',
        'XINFO GROUPS s',
        // One read of two entries: two XCLAIMs, one unit.
        'XREADGROUP GROUP g c1 COUNT 2 STREAMS s >',
        // multi.tcl's "MULTI propagation of XREADGROUP": three XCLAIMs in one MULTI/EXEC.
        'XGROUP SETID s g 0',
        'MULTI',
        'XREADGROUP GROUP g c2 COUNT 2 STREAMS s >',
        'XREADGROUP GROUP g c2 STREAMS s >',
        'EXEC',
        // A read of one entry is one command: no MULTI.
        'XGROUP SETID s g 1-2',
        'XREADGROUP GROUP g c3 STREAMS s >',
        // Nothing new to read: nothing.
        'XREADGROUP GROUP g c3 STREAMS s >',
        // XCLAIM of several entries, XAUTOCLAIM: one unit each.
        'XCLAIM s g c4 0 1-1 1-2',
        'XAUTOCLAIM s g c5 0 0-0 COUNT 10 JUSTID',
        'XGROUP DELCONSUMER s g alice',
      ]);
    }, 'xgroup');
    // The commands, less SELECT and the arguments after the first two, in order:
    const shape = stream.filter((line) => !line.startsWith('SELECT')).map((line) => line.split(' ').slice(0, 2).join(' ').toUpperCase());
    expect(shape).toEqual([
      'XADD S',
      'XADD S',
      'XADD S',
      'XGROUP CREATE',
      'XGROUP CREATE',
      'XGROUP CREATECONSUMER',
      'XGROUP SETID',
      'XGROUP DESTROY',
      'MULTI',
      'XCLAIM S',
      'XCLAIM S',
      'EXEC',
      'XGROUP SETID',
      'MULTI',
      'XCLAIM S',
      'XCLAIM S',
      'XCLAIM S',
      'EXEC',
      'XGROUP SETID',
      'XCLAIM S',
      'MULTI',
      'XCLAIM S',
      'XCLAIM S',
      'EXEC',
      'MULTI',
      'XCLAIM S',
      'XCLAIM S',
      'XCLAIM S',
      'EXEC',
      'XGROUP DELCONSUMER',
    ]);
  });

  it('keys a read expires lazily replay after it, in MULTI/EXEC when more than one; SCAN’s one by one', async () => {
    // Active expiry must not find the two short-lived keys first: they hide among 5,000 keys with a
    // long TTL (each cycle looks at about 20) and are read 5 ms after they expired, with hz 1.
    const fillers: CommandLine[] = Array.from({ length: 5000 }, (_, i) => ['SET', `f${i}`, 'v', 'EX', '100000']);
    const stream = await sameStream(
      async (client) => {
        const round = async (keys: string[], read: CommandLine) => {
          await client.send(keys.map((key) => ['SET', key, 'v', 'PX', '1']));
          await sleep(5);
          await client.send([read]);
        };
        await client.send([['CONFIG', 'SET', 'hz', '1'], ...fillers]);
        await round(['a', 'b'], 'MGET a b x');
        await round(['c'], 'GET c');
        await round(['d', 'e', 'g'], 'EXISTS d e g');
        await round(['h', 'i'], 'SUNION h i');
        await round(['j', 'k'], 'SCAN 0 MATCH [jk] COUNT 100000');
        await client.send([['CONFIG', 'SET', 'hz', '10']]);
      },
      'lazy',
      // SCAN meets keys in Redis's (randomly seeded) hash order: its two DELs, the stream's end, sorted.
      (lines) => [...lines.slice(0, -2), ...lines.slice(-2).sort()],
    );
    const tail = stream.filter((line) => !/^(SET f|SELECT)/.test(line) && !line.endsWith('PXAT *'));
    expect(tail).toEqual([
      'MULTI',
      'DEL a',
      'DEL b',
      'EXEC',
      'DEL c',
      'MULTI',
      'DEL d',
      'DEL e',
      'DEL g',
      'EXEC',
      'MULTI',
      'DEL h',
      'DEL i',
      'EXEC',
      'DEL j',
      'DEL k',
    ]);
  });
});
