import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawClient, type Started, show, startMiniRedis, startRedisServer } from './support.js';

// COMMAND INFO and COMMAND GETKEYS of mini-redis against a real redis-server 7.0.15: what
// cluster-aware clients and proxies read to route a command (first/last/step, movablekeys, the
// keys of a call), and CONFIG RESETSTAT's counters.

let mini: Started;
let real: Started;
let ours: Redis;
let theirs: Redis;

beforeAll(async () => {
  [mini, real] = await Promise.all([startMiniRedis(), startRedisServer()]);
  ours = new Redis(mini.port, { lazyConnect: true });
  theirs = new Redis(real.port, { lazyConnect: true });
  await Promise.all([ours.connect(), theirs.connect()]);
});

afterAll(async () => {
  ours.disconnect();
  theirs.disconnect();
  await Promise.all([mini.stop(), real.stop()]);
});

/**
 * Commands whose routing fields differ from Redis's today (their declarations live in other
 * files): WATCH declares no keys; LMPOP/BLMPOP declare neither keys nor a key finder; SORT and
 * SORT_RO have no key finder for STORE/BY (Redis: movablekeys); XGROUP/XINFO find their key on the
 * container (movablekeys) where Redis declares it on each subcommand.
 */
const KNOWN_DIFFERENT = ['blmpop', 'lmpop', 'sort', 'sort_ro', 'watch', 'xgroup', 'xinfo'];

describe('COMMAND INFO', () => {
  it('routes like redis-server: arity, first/last/step and movablekeys of every command both have', async () => {
    const names = ((await ours.call('COMMAND', 'LIST')) as string[]).filter((name) => !name.includes('|'));
    expect(names.length).toBeGreaterThan(200);
    const different: string[] = [];
    let compared = 0;
    for (const name of names) {
      const [mine] = (await ours.call('COMMAND', 'INFO', name)) as unknown[][];
      const [redis] = (await theirs.call('COMMAND', 'INFO', name)) as Array<unknown[] | null>;
      if (redis === null || redis === undefined || mine === undefined) continue; // mini-redis's own (none today) or Redis-only
      compared++;
      const routing = (info: unknown[]): unknown[] => [info[1], info[3], info[4], info[5], (info[2] as string[]).includes('movablekeys')];
      if (JSON.stringify(routing(mine)) !== JSON.stringify(routing(redis))) different.push(name);
    }
    expect(compared).toBeGreaterThan(200);
    expect(different.sort()).toEqual(KNOWN_DIFFERENT);
  });

  it('sorted-set commands: all 10 fields (flags, ACL categories, key specs) as redis-server, RESP2 and RESP3', async () => {
    const names = [
      'zrange',
      'zunionstore',
      'zinterstore',
      'zdiffstore',
      'zunion',
      'zinter',
      'zdiff',
      'zintercard',
      'zrangestore',
      'zmpop',
      'bzmpop',
      'zscore',
      'get',
    ];
    for (const protocol of [2, 3] as const) {
      const a = new RawClient(mini.port);
      const b = new RawClient(real.port);
      try {
        const commands = [...(protocol === 3 ? [['HELLO', '3']] : []), ...names.map((name) => ['COMMAND', 'INFO', name])];
        const [mine, redis] = await Promise.all([a.send(commands), b.send(commands)]);
        for (let i = protocol === 3 ? 1 : 0; i < commands.length; i++) {
          expect([commands[i], show(mine[i] as Buffer)]).toEqual([commands[i], show(redis[i] as Buffer)]);
        }
      } finally {
        a.close();
        b.close();
      }
    }
  });
});

describe('COMMAND GETKEYS', () => {
  it('finds the keys redis-server finds in calls of mini-redis commands (or its error)', async () => {
    const calls = [
      ['GET', 'k'],
      ['SET', 'k', 'v', 'EX', '10'],
      ['MSET', 'a', '1', 'b', '2'],
      ['DEL', 'a', 'b', 'c'],
      ['RENAME', 'a', 'b'],
      ['LMOVE', 'src', 'dst', 'LEFT', 'RIGHT'],
      ['BLMOVE', 'src', 'dst', 'LEFT', 'RIGHT', '0'],
      ['ZUNIONSTORE', 'dest', '2', 'a', 'b', 'WEIGHTS', '1', '2'],
      ['ZINTERSTORE', 'dest', '0', 'a'],
      ['ZDIFF', '2', 'a', 'b', 'WITHSCORES'],
      ['ZINTERCARD', '2', 'a', 'b', 'LIMIT', '1'],
      ['ZRANGESTORE', 'dst', 'src', '0', '-1'],
      ['ZMPOP', '2', 'a', 'b', 'MIN'],
      ['BZMPOP', '0', '2', 'a', 'b', 'MAX', 'COUNT', '2'],
      ['BZPOPMIN', 'a', 'b', '0'],
      ['XREAD', 'COUNT', '1', 'STREAMS', 's1', 's2', '0', '0'],
      ['XREADGROUP', 'GROUP', 'g', 'c', 'STREAMS', 's1', '>'],
      ['EVAL', 'return 1', '2', 'k1', 'k2', 'arg'],
      ['SORT', 'k'],
      ['SINTERCARD', '2', 'a', 'b'],
      ['SPUBLISH', 'channel', 'message'],
      ['PING'],
    ];
    for (const call of calls) {
      const mine = await ours.call('COMMAND', 'GETKEYS', ...call).catch((error: Error) => `error: ${error.message}`);
      const redis = await theirs.call('COMMAND', 'GETKEYS', ...call).catch((error: Error) => `error: ${error.message}`);
      expect([call, mine]).toEqual([call, redis]);
    }
  });
});

describe('CONFIG RESETSTAT', () => {
  it('zeroes commandstats, errorstats and the counters as redis-server (INFO after RESETSTAT)', async () => {
    const fields = async (client: Redis): Promise<string[]> => {
      await client.call('SET', 'k', 'v');
      await client.call('INCR', 'k').catch(() => undefined); // an error: errorstat_ERR
      await client.call('CONFIG', 'RESETSTAT');
      await client.call('GET', 'k');
      await client.call('NOSUCHCOMMAND').catch(() => undefined);
      const commandstats = (await client.call('INFO', 'commandstats')) as string;
      const errorstats = (await client.call('INFO', 'errorstats')) as string;
      const stats = (await client.call('INFO', 'stats')) as string;
      const pick = (text: string, pattern: RegExp): string[] => text.split('\r\n').filter((line) => pattern.test(line));
      return [
        ...pick(commandstats, /^cmdstat_/)
          .map((line) => line.replace(/usec=\d+,usec_per_call=[\d.]+,/, ''))
          .sort(),
        ...pick(errorstats, /^errorstat_/),
        ...pick(stats, /^(total_error_replies|total_commands_processed):/),
      ];
    };
    const [mine, redis] = [await fields(ours), await fields(theirs)];
    expect(mine).toEqual(redis);
    expect(mine).toEqual(
      expect.arrayContaining(['cmdstat_get:calls=1,rejected_calls=0,failed_calls=0', 'errorstat_ERR:count=1', 'total_error_replies:1']),
    );
  });
});
