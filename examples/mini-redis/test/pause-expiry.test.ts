import { describe, expect, it } from 'vitest';
import { RawClient, redisAndMiniForFile, replicationStream, show, until } from './support.js';

// Expiry during CLIENT PAUSE, against redis-server 7.0.15 (expire.c activeExpireCycle and db.c
// expireIfNeeded both return early while clients are paused): keys whose TTL runs out during a
// pause stay (DBSIZE counts them) but read as missing, and no DEL reaches the replication stream
// until the pause ends; then the active cycle (or a read) deletes them and their DELs replay.

const servers = redisAndMiniForFile();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The propagated commands, PXAT's time as `*`. */
const lines = (commands: readonly string[][]): string[] =>
  commands.map((args) => args.map((arg, i) => ((args[i - 1] ?? '').toUpperCase() === 'PXAT' ? '*' : arg)).join(' '));

async function run(port: number, type: 'WRITE' | 'ALL') {
  const client = new RawClient(port);
  await client.send([['CONFIG', 'SET', 'repl-ping-replica-period', '3600'], 'FLUSHALL', ['CONFIG', 'SET', 'hz', '100']]);
  const stream = await replicationStream(port);
  try {
    // One pipeline, so the pause begins before the TTLs can run out however slow the box. WRITE: held until
    // CLIENT UNPAUSE; ALL: this connection's commands are held too, so it ends by itself.
    await client.send([
      'SET k1 v PX 300',
      'SET k2 v PX 300',
      'SET k3 v',
      type === 'WRITE' ? 'CLIENT PAUSE 60000 WRITE' : 'CLIENT PAUSE 3000 ALL',
    ]);
    await sleep(1500); // the TTLs ran out long ago; at hz 100 the active cycle ran ~150 times meanwhile
    const duringPause = lines(stream.commands);
    let reads: string[] = [];
    if (type === 'WRITE') {
      reads = (
        await client.send(['GET k1', 'EXISTS k1 k2 k3', 'TTL k1', 'PTTL k2', 'MGET k1 k2 k3', 'KEYS *', 'SCAN 0', 'DBSIZE', 'TYPE k2'])
      ).map(show);
      await sleep(300);
      reads.push(...(await client.send(['DBSIZE'])).map(show)); // the reads deleted nothing either
    }
    // Read before CLIENT UNPAUSE: after it, the active cycle's DELs (hz 100) may reach the stream before its reply.
    const stillPaused = lines(stream.commands);
    if (type === 'WRITE') await client.send(['CLIENT UNPAUSE']);
    // After the pause: the active cycle deletes both (hz 100), and their DELs replay.
    await until(async () => (await client.send(['DBSIZE']))[0]?.toString() === ':1\r\n', 'the expired keys deleted');
    await client.send(['SET sentinel done', ['CONFIG', 'SET', 'hz', '10']]);
    await until(() => stream.commands.some((args) => args[1] === 'sentinel'), 'the sentinel replayed');
    const after = lines(stream.commands);
    // The active cycle meets k1 and k2 in hash order: sort the two DELs.
    const tail = after.slice(duringPause.length, -1);
    return { duringPause, stillPaused, reads, afterPause: tail.sort(), last: after.at(-1) };
  } finally {
    stream.close();
    client.close();
  }
}

describe('expiry during CLIENT PAUSE, as redis-server 7.0.15', () => {
  it('PAUSE WRITE: expired keys read as missing but stay, no DEL replays until CLIENT UNPAUSE', async () => {
    const redis = await run(servers.redis.port, 'WRITE');
    expect(redis).toEqual({
      duringPause: ['SELECT 0', 'SET k1 v PXAT *', 'SET k2 v PXAT *', 'SET k3 v'],
      stillPaused: ['SELECT 0', 'SET k1 v PXAT *', 'SET k2 v PXAT *', 'SET k3 v'],
      reads: ['$-1⏎', ':1⏎', ':-2⏎', ':-2⏎', '*3⏎$-1⏎$-1⏎$1⏎v⏎', '*1⏎$2⏎k3⏎', '*2⏎$1⏎0⏎*1⏎$2⏎k3⏎', ':3⏎', '+none⏎', ':3⏎'],
      afterPause: ['DEL k1', 'DEL k2'],
      last: 'SET sentinel done',
    });
    expect(await run(servers.mini.port, 'WRITE')).toEqual(redis);
  });

  it('PAUSE ALL: nothing expires until the pause ends by itself', async () => {
    const redis = await run(servers.redis.port, 'ALL');
    expect(redis).toEqual({
      duringPause: ['SELECT 0', 'SET k1 v PXAT *', 'SET k2 v PXAT *', 'SET k3 v'],
      stillPaused: ['SELECT 0', 'SET k1 v PXAT *', 'SET k2 v PXAT *', 'SET k3 v'],
      reads: [],
      afterPause: ['DEL k1', 'DEL k2'],
      last: 'SET sentinel done',
    });
    expect(await run(servers.mini.port, 'ALL')).toEqual(redis);
  });
});
