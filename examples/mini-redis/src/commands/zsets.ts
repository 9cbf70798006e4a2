import { floatArg, formatDouble, globMatch, parseDouble, parseNumber, type RespClient, RespError } from '@portbind/resp';
import type { MiniRedis } from '../app.js';
import { INT64_MIN, int64Arg, intArg } from '../numbers.js';
import { type LexEnd, type LexRange, lexGteMin, lexLteMax, type ScoreRange, type SkipNode, SortedSet } from '../sorted-set.js';
import { bytesOf, type Database, keyOf, WRONGTYPE } from '../store.js';
import { timeoutArg } from './lists.js';

// Sorted sets, with Redis 7.0's replies and errors (t_zset.c): scores are doubles (RESP3 doubles,
// RESP2 bulk strings), printed as C's "%.17g" because the adapter reports 7.0.15; ties ordered by
// the members' bytes.

const group = 'sorted-set';

const NOT_FLOAT_RANGE = 'ERR min or max is not a float';
const NOT_LEX_RANGE = 'ERR min or max not valid string range item';
const SYNTAX = 'ERR syntax error';
const POSITIVE = 'ERR value is out of range, must be positive';

/** A member and its score, as the range commands produce them. */
type Entry = readonly [string, number];

export function registerSortedSetCommands({ resp, keyspace, blocked, propagation }: MiniRedis): void {
  const readZset = (client: RespClient, arg: Buffer | undefined): SortedSet | undefined => keyspace.db(client.db).read(keyOf(arg), 'zset');
  const write = { flags: ['write', 'fast'], keys: [1, 1, 1], group } as const;
  const writeSlow = { flags: ['write'], keys: [1, 1, 1], group } as const;
  const read = { flags: ['readonly', 'fast'], keys: [1, 1, 1], group } as const;
  const readSlow = { flags: ['readonly'], keys: [1, 1, 1], group } as const;

  /** After a write: the key goes when it empties, WATCH sees it, and BZPOP waiters are served. */
  const written = (client: RespClient, key: string, zset: SortedSet): void => {
    keyspace.db(client.db).deleteIfEmpty(key, zset);
    resp.touch(client.db, key);
  };

  // ---- ZADD, ZINCRBY ----------------------------------------------------------------------------

  const zadd = (client: RespClient, argv: Buffer[], incrOnly: boolean): void => {
    let [nx, xx, gt, lt, ch, incr] = [false, false, false, false, false, incrOnly];
    let index = 2;
    for (; index < argv.length; index++) {
      // Every option starts with a letter: a score (a digit, a sign, a dot) ends them without a string.
      const initial = ((argv[index] as Buffer)[0] ?? 0) | 0x20;
      if (initial < 0x61 || initial > 0x7a) break;
      const option = upper(argv[index]);
      if (option === 'NX') nx = true;
      else if (option === 'XX') xx = true;
      else if (option === 'CH') ch = true;
      else if (option === 'INCR') incr = true;
      else if (option === 'GT') gt = true;
      else if (option === 'LT') lt = true;
      else break;
    }
    const pairs = argv.length - index;
    if (pairs % 2 !== 0 || pairs === 0) throw new RespError(SYNTAX);
    if (nx && xx) throw new RespError('ERR XX and NX options at the same time are not compatible');
    if ((gt && nx) || (lt && nx) || (gt && lt)) throw new RespError('ERR GT, LT, and/or NX options at the same time are not compatible');
    if (incr && pairs > 2) throw new RespError('ERR INCR option supports a single increment-element pair');
    const scores: number[] = [];
    for (let i = index; i < argv.length; i += 2) scores.push(floatArg(argv[i]));

    const key = keyOf(argv[1]);
    const db = keyspace.db(client.db);
    let zset = db.read(key, 'zset');
    let [added, updated, processed] = [0, 0, 0];
    let score = 0;
    try {
      if (zset === undefined && !xx) zset = db.readOrCreate(key, 'zset');
      for (let j = 0; zset !== undefined && j < scores.length; j++) {
        const member = keyOf(argv[index + 1 + 2 * j]);
        let newScore = scores[j] as number;
        const current = zset.score(member);
        if (current !== undefined) {
          if (nx) continue;
          if (incr) {
            newScore += current;
            if (Number.isNaN(newScore)) throw new RespError('ERR resulting score is not a number (NaN)');
          }
          if ((lt && newScore >= current) || (gt && newScore <= current)) continue;
          if (newScore !== current) {
            zset.setKnown(member, current, newScore);
            updated++;
          }
        } else {
          if (xx) continue;
          zset.setKnown(member, undefined, newScore);
          added++;
        }
        processed++;
        score = newScore;
      }
    } finally {
      if (zset !== undefined) db.deleteIfEmpty(key, zset);
      if (added + updated > 0) {
        resp.touch(client.db, key);
        resp.notifyKeyspaceEvent('zset', incr ? 'zincr' : 'zadd', key, client.db);
        blocked.signal(client.db, key);
      }
    }
    if (incr) {
      if (processed > 0) replyScore(client, score);
      else client.reply.null();
    } else client.reply.integer(ch ? added + updated : added);
  };

  resp.command(
    'zadd',
    { arity: -4, ...write, summary: 'Adds one or more members to a sorted set, or updates their scores.' },
    (client, argv) => zadd(client, argv, false),
  );

  resp.command('zincrby', { arity: 4, ...write, summary: 'Increments the score of a member in a sorted set.' }, (client, argv) =>
    zadd(client, argv, true),
  );

  // ---- Reads of single members ----------------------------------------------------------------

  resp.command(
    'zcard',
    { arity: 2, ...read, summary: 'Returns the number of members in a sorted set.' },
    (client, argv) => readZset(client, argv[1])?.size ?? 0,
  );

  resp.command('zscore', { arity: 3, ...read, summary: 'Returns the score of a member in a sorted set.' }, (client, argv) => {
    const score = readZset(client, argv[1])?.score(keyOf(argv[2]));
    if (score === undefined) client.reply.null();
    else replyScore(client, score);
  });

  resp.command('zmscore', { arity: -3, ...read, summary: 'Returns the score of one or more members in a sorted set.' }, (client, argv) => {
    const zset = readZset(client, argv[1]);
    client.reply.array(argv.length - 2);
    for (const member of argv.slice(2)) {
      const score = zset?.score(keyOf(member));
      if (score === undefined) client.reply.null();
      else replyScore(client, score);
    }
  });

  for (const [name, reverse] of [
    ['zrank', false],
    ['zrevrank', true],
  ] as const) {
    resp.command(
      name,
      {
        arity: 3,
        ...read,
        summary: `Returns the index of a member in a sorted set ordered by ${reverse ? 'descending' : 'ascending'} scores.`,
      },
      (client, argv) => {
        const zset = readZset(client, argv[1]);
        const rank = zset?.rank(keyOf(argv[2]));
        if (zset === undefined || rank === undefined) return null;
        return reverse ? zset.size - 1 - rank : rank;
      },
    );
  }

  // ---- ZREM, ZCOUNT, ZLEXCOUNT ------------------------------------------------------------------

  resp.command('zrem', { arity: -3, ...write, summary: 'Removes one or more members from a sorted set.' }, (client, argv) => {
    const key = keyOf(argv[1]);
    const zset = keyspace.db(client.db).read(key, 'zset');
    if (zset === undefined) return 0;
    let removed = 0;
    for (const member of argv.slice(2)) if (zset.delete(keyOf(member))) removed++;
    if (removed > 0) {
      resp.notifyKeyspaceEvent('zset', 'zrem', key, client.db);
      written(client, key, zset);
      if (zset.size === 0) resp.notifyKeyspaceEvent('generic', 'del', key, client.db);
    }
    return removed;
  });

  resp.command(
    'zcount',
    { arity: 4, ...read, summary: 'Returns the count of members in a sorted set that have scores within a range.' },
    (client, argv) => {
      const range = scoreRangeArg(argv[2], argv[3]);
      const zset = readZset(client, argv[1]);
      const first = zset?.firstInRange(range);
      const last = zset?.lastInRange(range);
      return zset && first && last ? zset.rankOf(last) - zset.rankOf(first) + 1 : 0;
    },
  );

  resp.command(
    'zlexcount',
    { arity: 4, ...read, summary: 'Returns the number of members in a sorted set within a lexicographical range.' },
    (client, argv) => {
      const range = lexRangeArg(argv[2], argv[3]);
      const zset = readZset(client, argv[1]);
      const first = zset?.firstInLex(range);
      if (zset === undefined || first === undefined) return 0;
      if (zset.size <= 128) {
        // As Redis counts in a listpack: from the first match on, while members are ≤ max.
        let count = 0;
        for (const node of zset.walk(first)) {
          if (!lexLteMax(node.member, range)) break;
          count++;
        }
        return count;
      }
      const last = zset.lastInLex(range);
      return last ? zset.rankOf(last) - zset.rankOf(first) + 1 : 0;
    },
  );

  // ---- ZRANGE and its family --------------------------------------------------------------------

  type RangeType = 'rank' | 'score' | 'lex';
  interface RangeQuery {
    type: RangeType;
    reverse: boolean;
    withScores: boolean;
    offset: number;
    limit: number;
    min: Buffer;
    max: Buffer;
  }

  /**
   * Redis's zrangeGenericCommand: options after `<src> <min> <max>` (from `start`), checked in
   * Redis's order, then the range. `type`/`reverse` preset by ZRANGEBYSCORE & co.
   */
  const parseRange = (argv: Buffer[], start: number, store: boolean, presetType?: RangeType, presetReverse?: boolean): RangeQuery => {
    let type = presetType;
    let reverse = presetReverse;
    let withScores = false;
    let offset = 0;
    let limit = -1;
    for (let j = start + 3; j < argv.length; j++) {
      const option = upper(argv[j]);
      const left = argv.length - j - 1;
      if (!store && option === 'WITHSCORES') withScores = true;
      else if (option === 'LIMIT' && left >= 2) {
        offset = intArg(argv[j + 1]);
        limit = intArg(argv[j + 2]);
        j += 2;
      } else if (reverse === undefined && option === 'REV') reverse = true;
      else if (type === undefined && option === 'BYLEX') type = 'lex';
      else if (type === undefined && option === 'BYSCORE') type = 'score';
      else throw new RespError(SYNTAX);
    }
    type ??= 'rank';
    reverse ??= false;
    if (limit !== -1 && type === 'rank') {
      throw new RespError('ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX');
    }
    if (withScores && type === 'lex') throw new RespError('ERR syntax error, WITHSCORES not supported in combination with BYLEX');
    let [min, max] = [argv[start + 1] as Buffer, argv[start + 2] as Buffer];
    if (reverse && type !== 'rank') [min, max] = [max, min];
    return { type, reverse, withScores, offset, limit, min, max };
  };

  /** The entries a parsed range selects (the range's own syntax errors come first, as in Redis). */
  const selectRange = (query: RangeQuery, zset: () => SortedSet | undefined): Entry[] => {
    if (query.type === 'rank') {
      const start = indexArg(query.min);
      const stop = indexArg(query.max);
      const set = zset();
      return set === undefined ? [] : rankRange(set, start, stop, query.reverse);
    }
    if (query.type === 'score') {
      const range = scoreRangeArg(query.min, query.max);
      const set = zset();
      if (set === undefined) return [];
      const first = query.reverse ? set.lastInRange(range) : set.firstInRange(range);
      return collect(set, first, query, (node) => (query.reverse ? gte(node.score, range) : lte(node.score, range)));
    }
    const range = lexRangeArg(query.min, query.max);
    const set = zset();
    if (set === undefined) return [];
    const first = query.reverse ? set.lastInLex(range) : set.firstInLex(range);
    return collect(set, first, query, (node) => (query.reverse ? lexGteMin(node.member, range) : lexLteMax(node.member, range)));
  };

  const rangeCommand = (client: RespClient, argv: Buffer[], presetType?: RangeType, presetReverse?: boolean): void => {
    const query = parseRange(argv, 1, false, presetType, presetReverse);
    const entries = selectRange(query, () => readZset(client, argv[1]));
    replyEntries(client, entries, query.withScores);
  };

  resp.command(
    'zrange',
    { arity: -4, ...readSlow, summary: 'Returns members in a sorted set within a range of indexes, scores or names.' },
    (client, argv) => rangeCommand(client, argv),
  );
  resp.command(
    'zrevrange',
    { arity: -4, ...readSlow, summary: 'Returns members in a sorted set within a range of indexes, highest scores first.' },
    (client, argv) => rangeCommand(client, argv, 'rank', true),
  );
  resp.command(
    'zrangebyscore',
    { arity: -4, ...readSlow, summary: 'Returns members in a sorted set within a range of scores.' },
    (client, argv) => rangeCommand(client, argv, 'score', false),
  );
  resp.command(
    'zrevrangebyscore',
    { arity: -4, ...readSlow, summary: 'Returns members in a sorted set within a range of scores, highest first.' },
    (client, argv) => rangeCommand(client, argv, 'score', true),
  );
  resp.command(
    'zrangebylex',
    { arity: -4, ...readSlow, summary: 'Returns members in a sorted set within a lexicographical range.' },
    (client, argv) => rangeCommand(client, argv, 'lex', false),
  );
  resp.command(
    'zrevrangebylex',
    { arity: -4, ...readSlow, summary: 'Returns members in a sorted set within a lexicographical range, in reverse order.' },
    (client, argv) => rangeCommand(client, argv, 'lex', true),
  );

  resp.command(
    'zrangestore',
    {
      arity: -5,
      flags: ['write'],
      keySpecs: [
        { flags: ['OW', 'update'], begin: 1 },
        { flags: ['RO', 'access'], begin: 2 },
      ],
      group,
      summary: 'Stores a range of members from a sorted set in a key.',
    },
    (client, argv) => {
      const query = parseRange(argv, 2, true);
      const db = keyspace.db(client.db);
      const entries = selectRange(query, () => db.read(keyOf(argv[2]), 'zset'));
      return store(client, db, keyOf(argv[1]), entries);
    },
  );

  /** ZRANGESTORE, ZUNIONSTORE…: replace `key` with the entries (an empty result deletes it). */
  const store = (client: RespClient, db: Database, key: string, entries: Iterable<Entry>): number => {
    const zset = new SortedSet();
    for (const [member, score] of entries) zset.set(member, score);
    const existed = db.get(key) !== undefined;
    if (zset.size > 0) {
      db.set(key, { type: 'zset', data: zset });
      resp.touch(client.db, key);
      blocked.signal(client.db, key);
    } else if (existed) {
      db.delete(key);
      resp.touch(client.db, key);
    }
    return zset.size;
  };

  // ---- ZREMRANGEBY* -----------------------------------------------------------------------------

  for (const type of ['rank', 'score', 'lex'] as const) {
    resp.command(
      `zremrangeby${type}`,
      { arity: 4, ...writeSlow, summary: `Removes members in a sorted set within a ${type} range.` },
      (client, argv) => {
        const query: RangeQuery = {
          type,
          reverse: false,
          withScores: false,
          offset: 0,
          limit: -1,
          min: argv[2] as Buffer,
          max: argv[3] as Buffer,
        };
        const key = keyOf(argv[1]);
        const db = keyspace.db(client.db);
        let zset: SortedSet | undefined;
        const entries = selectRange(query, () => {
          zset = db.read(key, 'zset');
          return zset;
        });
        if (zset === undefined || entries.length === 0) return 0;
        for (const [member] of entries) zset.delete(member);
        written(client, key, zset);
        return entries.length;
      },
    );
  }

  // ---- ZPOPMIN, ZPOPMAX, BZPOPMIN, BZPOPMAX ----------------------------------------------------------

  /** Take `count` members from the low (min) or high end. */
  const pop = (zset: SortedSet, max: boolean, count: number): Entry[] => {
    const popped: Entry[] = [];
    while (popped.length < count && zset.size > 0) {
      const node = (max ? zset.last : zset.first) as SkipNode;
      zset.delete(node.member);
      popped.push([node.member, node.score]);
    }
    return popped;
  };

  for (const [name, max] of [
    ['zpopmin', false],
    ['zpopmax', true],
  ] as const) {
    resp.command(
      name,
      { arity: -2, ...write, summary: `Returns and removes the members with the ${max ? 'highest' : 'lowest'} scores from a sorted set.` },
      (client, argv) => {
        if (argv.length > 3) throw new RespError(SYNTAX);
        const count = argv.length === 3 ? positiveArg(argv[2]) : undefined;
        const key = keyOf(argv[1]);
        const zset = keyspace.db(client.db).read(key, 'zset');
        if (zset === undefined || count === 0) return [];
        const popped = pop(zset, max, count ?? 1);
        written(client, key, zset);
        // RESP3 with a count: an array of [member, score] pairs; else a flat array.
        replyEntries(client, popped, true, count !== undefined);
        return undefined;
      },
    );
  }

  /** ZMPOP/BZMPOP's reply: `[key, [[member, score], …]]` on both protocols. */
  const replyMpop = (client: RespClient, key: string, popped: readonly Entry[]): void => {
    client.reply.array(2).bulk(bytesOf(key)).array(popped.length);
    for (const [member, score] of popped) {
      client.reply.array(2).bulk(bytesOf(member));
      replyScore(client, score);
    }
  };

  /** BZPOPMIN/BZPOPMAX's reply: `[key, member, score]`. */
  const replyBzpop = (client: RespClient, key: string, [member, score]: Entry): void => {
    client.reply.array(3).bulk(bytesOf(key)).bulk(bytesOf(member));
    replyScore(client, score);
  };

  /**
   * Pop from the first non-empty sorted set of `keys`, or block until a write gives one of them
   * members (as BLPOP does). Inside MULTI, or with nothing to pop for ZMPOP, a null array.
   */
  /** ZMPOP/BZMPOP replay as ZPOPMIN/ZPOPMAX key <how many went>, BZPOPMIN/BZPOPMAX without the count. */
  const zpopReplay = (client: RespClient, key: string, max: boolean, popped: number): Array<Buffer | string> =>
    client.lastCommand.endsWith('mpop')
      ? [max ? 'ZPOPMAX' : 'ZPOPMIN', bytesOf(key), String(popped)]
      : [max ? 'ZPOPMAX' : 'ZPOPMIN', bytesOf(key)];
  const popOrBlock = (
    client: RespClient,
    keys: readonly string[],
    max: boolean,
    count: number,
    timeoutMs: number | undefined,
    reply: (key: string, popped: Entry[]) => void,
  ): Promise<undefined> | undefined => {
    const db = keyspace.db(client.db);
    for (const key of keys) {
      const zset = db.read(key, 'zset');
      if (zset === undefined) continue;
      const popped = pop(zset, max, count);
      written(client, key, zset);
      // ZMPOP, BZMPOP, BZPOPMIN/MAX replay as ZPOPMIN/ZPOPMAX key <how many went> (t_zset.c).
      propagation.rewrite(zpopReplay(client, key, max, popped.length));
      reply(key, popped);
      return undefined;
    }
    if (timeoutMs === undefined || !blocked.mayBlock(client)) {
      client.reply.nullArray();
      return undefined;
    }
    const take = (key: string): [string, Entry[]] | undefined => {
      const value = db.get(key);
      if (value?.type !== 'zset') return undefined;
      const popped = pop(value.data, max, count);
      db.deleteIfEmpty(key, value.data);
      propagation.served(client.db, zpopReplay(client, key, max, popped.length));
      return [key, popped];
    };
    return blocked.waitFor(client, keys, take, timeoutMs).then((served) => {
      if (served !== undefined) reply(...served);
      return undefined;
    });
  };

  for (const [name, max] of [
    ['bzpopmin', false],
    ['bzpopmax', true],
  ] as const) {
    resp.command(
      name,
      {
        arity: -3,
        flags: ['write', 'fast', 'blocking'],
        keySpecs: [{ flags: ['RW', 'access', 'delete'], begin: 1, find: { lastKey: -2, step: 1, limit: 0 } }],
        group,
        summary: `Removes and returns the member with the ${max ? 'highest' : 'lowest'} score from one or more sorted sets, or blocks until one is available.`,
      },
      (client, argv) => {
        const timeoutMs = timeoutArg(argv[argv.length - 1] as Buffer);
        const keys = argv.slice(1, -1).map(keyOf);
        return popOrBlock(client, keys, max, 1, timeoutMs, (key, popped) => replyBzpop(client, key, popped[0] as Entry));
      },
    );
  }

  /** ZMPOP and BZMPOP: `numkeys key… MIN|MAX [COUNT count]` from `index`. */
  const mpop = (client: RespClient, argv: Buffer[], index: number, blocking: boolean): Promise<undefined> | undefined => {
    const NUMKEYS = 'ERR numkeys should be greater than 0';
    const numkeys = int64Arg(argv[index], NUMKEYS);
    if (numkeys < 1n) throw new RespError(NUMKEYS);
    const whereIndex = index + Number(numkeys) + 1;
    if (whereIndex >= argv.length) throw new RespError(SYNTAX);
    const where = upper(argv[whereIndex]);
    if (where !== 'MIN' && where !== 'MAX') throw new RespError(SYNTAX);
    let count: number | undefined;
    for (let j = whereIndex + 1; j < argv.length; j++) {
      if (count === undefined && upper(argv[j]) === 'COUNT' && j < argv.length - 1) {
        const COUNT = 'ERR count should be greater than 0';
        const value = int64Arg(argv[++j], COUNT);
        if (value < 1n) throw new RespError(COUNT);
        count = value > 2n ** 31n ? 2 ** 31 : Number(value);
      } else throw new RespError(SYNTAX);
    }
    const timeoutMs = blocking ? timeoutArg(argv[1] as Buffer) : undefined;
    const keys = argv.slice(index + 1, whereIndex).map(keyOf);
    return popOrBlock(client, keys, where === 'MAX', count ?? 1, timeoutMs, (key, popped) => replyMpop(client, key, popped));
  };

  resp.command(
    'zmpop',
    {
      arity: -4,
      flags: ['write'],
      keySpecs: [{ flags: ['RW', 'access', 'delete'], begin: 1, find: { keynumIndex: 0, firstKey: 1, step: 1 } }],
      group,
      summary: 'Returns and removes the highest- or lowest-scoring members from one or more sorted sets.',
    },
    (client, argv) => mpop(client, argv, 1, false),
  );

  resp.command(
    'bzmpop',
    {
      arity: -5,
      flags: ['write', 'blocking'],
      keySpecs: [{ flags: ['RW', 'access', 'delete'], begin: 2, find: { keynumIndex: 0, firstKey: 1, step: 1 } }],
      group,
      summary: 'Removes and returns members by score from one or more sorted sets, or blocks until one is available.',
    },
    (client, argv) => mpop(client, argv, 2, true),
  );

  // ---- ZRANDMEMBER ------------------------------------------------------------------------------

  resp.command(
    'zrandmember',
    { arity: -2, ...readSlow, summary: 'Returns one or more random members from a sorted set.' },
    (client, argv) => {
      if (argv.length === 2) {
        const zset = readZset(client, argv[1]);
        if (zset === undefined) return null;
        return bytesOf((zset.at(Math.floor(Math.random() * zset.size)) as SkipNode).member);
      }
      const count = int64Arg(argv[2]);
      if (count === INT64_MIN) {
        throw new RespError('ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807');
      }
      if (argv.length > 4 || (argv.length === 4 && upper(argv[3]) !== 'WITHSCORES')) throw new RespError(SYNTAX);
      const withScores = argv.length === 4;
      if (withScores && (count < -(2n ** 62n) || count >= 2n ** 62n)) throw new RespError('ERR value is out of range');
      const zset = readZset(client, argv[1]);
      if (zset === undefined || count === 0n) return [];
      if (count < 0n) {
        // Redis would stream that many replies; refuse what would not fit in memory.
        if (-count > 10_000_000n) throw new RespError('ERR value is out of range');
        const picks: Entry[] = Array.from({ length: Number(-count) }, () => {
          const node = zset.at(Math.floor(Math.random() * zset.size)) as SkipNode;
          return [node.member, node.score];
        });
        replyEntries(client, picks, withScores);
        return undefined;
      }
      const all = [...zset.entries()];
      if (count >= BigInt(all.length)) {
        replyEntries(client, all.reverse(), withScores); // the whole set, highest first, as Redis 7.0 sends it
        return undefined;
      }
      for (let i = 0; i < Number(count); i++) {
        const j = i + Math.floor(Math.random() * (all.length - i)); // a partial Fisher–Yates shuffle
        [all[i], all[j]] = [all[j] as [string, number], all[i] as [string, number]];
      }
      replyEntries(client, all.slice(0, Number(count)), withScores);
      return undefined;
    },
  );

  // ---- ZSCAN ------------------------------------------------------------------------------------

  // Small sorted sets (Redis's listpack encoding: up to 128 members) come back whole, cursor 0,
  // as in Redis. Larger ones page in score order; a cursor remembers the last entry returned, so
  // every member present (with its score) for the whole scan is returned exactly once.
  const scans = new Map<string, { zset: SortedSet; after: Entry }>();
  let lastCursor = 0;
  resp.command('zscan', { arity: -3, ...readSlow, summary: 'Iterates over members and scores of a sorted set.' }, (client, argv) => {
    const cursor = (argv[2] as Buffer).toString('latin1');
    if (!/^([+-]?\d+)?$/.test(cursor) || BigInt(cursor.replace(/^[+-]/, '') || '0') > 2n ** 64n - 1n) {
      throw new RespError('ERR invalid cursor');
    }
    const zset = readZset(client, argv[1]);
    if (zset === undefined) return ['0', []];
    let count = 10;
    let pattern: string | undefined;
    for (let i = 3; i < argv.length; i += 2) {
      const option = upper(argv[i]);
      const value = argv[i + 1];
      if (option === 'COUNT' && value !== undefined) {
        count = intArg(value);
        if (count < 1) throw new RespError(SYNTAX);
      } else if (option === 'MATCH' && value !== undefined) pattern = keyOf(value);
      else throw new RespError(SYNTAX);
    }
    const matches = (member: string): boolean => pattern === undefined || pattern === '*' || globMatch(pattern, member);
    const flat = (entries: Iterable<Entry>): Buffer[] =>
      [...entries].filter(([member]) => matches(member)).flatMap(([member, score]) => [bytesOf(member), Buffer.from(listpackScore(score))]);
    if (zset.size <= 128) return ['0', flat(zset.entries())];
    const scan = scans.get(cursor);
    scans.delete(cursor);
    let node = zset.first;
    if (scan !== undefined && scan.zset === zset) {
      const [member, score] = scan.after;
      node = zset.firstInRange({ min: score, max: Number.POSITIVE_INFINITY, minex: false, maxex: false });
      while (node && node.score === score && node.member <= member) node = node.next;
    }
    const page: Entry[] = [];
    for (; node && page.length < count; node = node.next) page.push([node.member, node.score]);
    if (node === undefined) return ['0', flat(page)];
    const next = String(++lastCursor);
    scans.set(next, { zset, after: page[page.length - 1] as Entry });
    if (scans.size > 1000) scans.delete(scans.keys().next().value as string);
    return [next, flat(page)];
  });

  // ---- ZUNION, ZINTER, ZDIFF and their STORE forms, ZINTERCARD ---------------------------------

  type SetOp = 'union' | 'inter' | 'diff';

  /** Redis's zunionInterDiffGenericCommand: numkeys at `numkeysIndex`, then keys and options. */
  const combine = (
    client: RespClient,
    argv: Buffer[],
    numkeysIndex: number,
    op: SetOp,
    name: string,
    storing: boolean,
    cardinality = false,
  ) => {
    const count = intArg(argv[numkeysIndex]);
    if (count < 1) throw new RespError(`ERR at least 1 input key is needed for '${name}' command`);
    if (count > argv.length - (numkeysIndex + 1)) throw new RespError(SYNTAX);
    const db = keyspace.db(client.db);
    const sources: { entries: Entry[]; has: (member: string) => number | undefined; weight: number }[] = [];
    for (let i = 0; i < count; i++) {
      const value = db.get(keyOf(argv[numkeysIndex + 1 + i]));
      if (value === undefined) sources.push({ entries: [], has: () => undefined, weight: 1 });
      else if (value.type === 'zset') {
        const zset = value.data;
        sources.push({ entries: [...zset.entries()], has: (member) => zset.score(member), weight: 1 });
      } else if (value.type === 'set') {
        const set = value.data;
        sources.push({
          entries: [...set].map((member) => [member, 1] as const),
          has: (member) => (set.has(member) ? 1 : undefined),
          weight: 1,
        });
      } else throw new RespError(WRONGTYPE);
    }
    let aggregate: 'sum' | 'min' | 'max' = 'sum';
    let withScores = false;
    let limit = 0;
    let j = numkeysIndex + 1 + count;
    while (j < argv.length) {
      const remaining = argv.length - j;
      const option = upper(argv[j]);
      if (cardinality && remaining >= 2 && option === 'LIMIT') {
        limit = intArg(argv[j + 1], "ERR LIMIT can't be negative");
        if (limit < 0) throw new RespError("ERR LIMIT can't be negative");
        j += 2;
      } else if (!cardinality && op !== 'diff' && remaining >= count + 1 && option === 'WEIGHTS') {
        j++;
        for (const source of sources) {
          const weight = parseDouble(argv[j++] as Buffer);
          if (weight === undefined) throw new RespError('ERR weight value is not a float');
          source.weight = weight;
        }
      } else if (!cardinality && op !== 'diff' && remaining >= 2 && option === 'AGGREGATE') {
        const kind = upper(argv[j + 1]);
        if (kind === 'SUM' || kind === 'MIN' || kind === 'MAX') aggregate = kind.toLowerCase() as 'sum' | 'min' | 'max';
        else throw new RespError(SYNTAX);
        j += 2;
      } else if (!storing && option === 'WITHSCORES') {
        withScores = true;
        j++;
      } else throw new RespError(SYNTAX);
    }
    const add = (target: number, value: number): number => {
      if (aggregate === 'sum') {
        const sum = target + value;
        return Number.isNaN(sum) ? 0 : sum; // inf + -inf is 0 here, as in Redis
      }
      return aggregate === 'min' ? Math.min(target, value) : Math.max(target, value);
    };
    const weighted = (score: number, weight: number): number => {
      const value = weight * score;
      return Number.isNaN(value) ? 0 : value;
    };
    const result = new Map<string, number>();
    if (op === 'diff') {
      const [first, ...others] = sources;
      for (const [member, score] of first?.entries ?? []) {
        if (others.every((other) => other.has(member) === undefined)) result.set(member, score);
      }
    } else {
      // Smallest inputs first, as Redis sorts them: the order in which scores are added.
      const ordered = [...sources].sort((a, b) => a.entries.length - b.entries.length);
      if (op === 'inter') {
        const [first, ...others] = ordered as [(typeof sources)[number], ...(typeof sources)[number][]];
        for (const [member, score] of first.entries) {
          let total = weighted(score, first.weight);
          let everywhere = true;
          for (const other of others) {
            const found = other.has(member);
            if (found === undefined) {
              everywhere = false;
              break;
            }
            total = add(total, weighted(found, other.weight));
          }
          if (everywhere) result.set(member, total);
        }
      } else {
        for (const source of ordered) {
          for (const [member, score] of source.entries) {
            const value = weighted(score, source.weight);
            const current = result.get(member);
            result.set(member, current === undefined ? value : add(current, value));
          }
        }
      }
    }
    return { result, withScores, db, limit };
  };

  for (const op of ['union', 'inter', 'diff'] as const) {
    resp.command(
      `z${op}`,
      {
        arity: -3,
        flags: ['readonly'],
        keySpecs: [{ flags: ['RO', 'access'], begin: 1, find: { keynumIndex: 0, firstKey: 1, step: 1 } }],
        group,
        summary: `Returns the ${op} of multiple sorted sets.`,
      },
      (client, argv) => {
        const { result, withScores } = combine(client, argv, 1, op, `z${op}`, false);
        replyEntries(client, sorted(result), withScores);
      },
    );
    resp.command(
      `z${op}store`,
      {
        arity: -4,
        flags: ['write'],
        keySpecs: [
          { flags: ['OW', 'update'], begin: 1 },
          { flags: ['RO', 'access'], begin: 2, find: { keynumIndex: 0, firstKey: 1, step: 1 } },
        ],
        group,
        summary: `Stores the ${op} of multiple sorted sets in a key.`,
      },
      (client, argv) => {
        const { result, db } = combine(client, argv, 2, op, `z${op}store`, true);
        return store(client, db, keyOf(argv[1]), result);
      },
    );
  }

  resp.command(
    'zintercard',
    {
      arity: -3,
      flags: ['readonly'],
      keySpecs: [{ flags: ['RO', 'access'], begin: 1, find: { keynumIndex: 0, firstKey: 1, step: 1 } }],
      group,
      summary: 'Returns the number of members of the intersection of multiple sorted sets.',
    },
    (client, argv) => {
      const { result, limit } = combine(client, argv, 1, 'inter', 'zintercard', true, true);
      return limit > 0 ? Math.min(limit, result.size) : result.size;
    },
  );

  // ---- helpers that write replies ---------------------------------------------------------------

  /** A score: a RESP3 double, or on RESP2 a bulk string, as the reported version (7.0: "%.17g") prints it. */
  function replyScore(client: RespClient, score: number): void {
    const reply = client.reply;
    // RESP2 with 7.0's "%.17g": the same bulk string as reply.double, its text from a cache.
    if (reply.protocol === 2 && reply.doubleFormat === '%.17g') reply.bulk(scoreText(score));
    else reply.double(score);
  }

  /**
   * Members, or members with scores: on RESP3 an array of [member, score] pairs (unless `nested`
   * is false: ZPOPMIN without a count), on RESP2 one flat array.
   */
  function replyEntries(client: RespClient, entries: readonly Entry[], withScores: boolean, nested = true): void {
    const reply = client.reply;
    if (!withScores) {
      reply.array(entries.length);
      for (const [member] of entries) replyMember(client, member);
      return;
    }
    const pairs = reply.protocol === 3 && nested;
    reply.array(pairs ? entries.length : entries.length * 2);
    for (const [member, score] of entries) {
      if (pairs) reply.array(2);
      replyMember(client, member);
      replyScore(client, score);
    }
  }

  /** A member as a bulk string: an ASCII one as is (no Buffer round trip), else its latin1 bytes. */
  function replyMember(client: RespClient, member: string): void {
    client.reply.bulk(Buffer.byteLength(member) === member.length ? member : bytesOf(member));
  }
}

// ---- ranges ---------------------------------------------------------------------------------------

const gte = (value: number, range: ScoreRange): boolean => (range.minex ? value > range.min : value >= range.min);
const lte = (value: number, range: ScoreRange): boolean => (range.maxex ? value < range.max : value <= range.max);

/** intArg, with a fast path for the plain decimals (`0`, `-1`, `9`) ZRANGE's indexes nearly always are. */
function indexArg(arg: Buffer): number {
  const length = arg.length;
  const negative = arg[0] === 0x2d;
  let i = negative ? 1 : 0;
  // Up to 15 digits, no leading zero (but "0" itself): exactly what intArg reads the same way.
  if (length <= 15 && i < length && (arg[i] !== 0x30 || length === 1)) {
    let value = 0;
    for (; i < length; i++) {
      const digit = (arg[i] as number) - 0x30;
      if (digit < 0 || digit > 9) break;
      value = value * 10 + digit;
    }
    if (i === length) return negative ? -value : value;
  }
  return intArg(arg);
}

/** ZRANGE by index: negative indexes count from the end, out-of-range ones are clamped. */
function rankRange(zset: SortedSet, start: number, stop: number, reverse: boolean): Entry[] {
  const length = zset.size;
  if (start < 0) start += length;
  if (stop < 0) stop += length;
  if (start < 0) start = 0;
  if (start > stop || start >= length) return [];
  if (stop >= length) stop = length - 1;
  const count = stop - start + 1;
  const entries: Entry[] = new Array(count);
  let node = zset.at(reverse ? length - 1 - start : start);
  for (let i = 0; i < count && node !== undefined; i++) {
    entries[i] = [node.member, node.score];
    node = reverse ? node.backward : node.next;
  }
  return entries;
}

/** From `first`, skip `offset` nodes and take up to `limit` (negative: all) while `within`. */
function collect(
  zset: SortedSet,
  first: SkipNode | undefined,
  { offset, limit, reverse }: { offset: number; limit: number; reverse: boolean },
  within: (node: SkipNode) => boolean,
): Entry[] {
  // As Redis: an offset past the end or a negative one selects nothing.
  if (offset < 0 || (offset > 0 && offset >= zset.size)) return [];
  const entries: Entry[] = [];
  let skip = offset;
  for (const node of zset.walk(first, reverse)) {
    if (skip > 0) {
      skip--;
      continue;
    }
    if (limit >= 0 && entries.length >= limit) break;
    if (!within(node)) break;
    entries.push([node.member, node.score]);
  }
  return entries;
}

/** A score range argument: `1.5`, `(1.5` (exclusive), `-inf`, `+inf`; Redis reads it with strtod. */
function scoreRangeArg(minArg: Buffer | undefined, maxArg: Buffer | undefined): ScoreRange {
  const [min, minex] = scoreEnd(minArg as Buffer);
  const [max, maxex] = scoreEnd(maxArg as Buffer);
  return { min, max, minex, maxex };
}

function scoreEnd(arg: Buffer): [number, boolean] {
  // Redis reads a C string: the argument ends at its first NUL byte.
  const nul = arg.indexOf(0);
  let text = (nul === -1 ? arg : arg.subarray(0, nul)).toString('latin1');
  const exclusive = text.startsWith('(');
  if (exclusive) text = text.slice(1);
  // strtod: leading white space is skipped, an empty string reads as 0, NaN is refused.
  if (text === '') return [0, exclusive];
  const value = parseNumber(text.replace(/^[ \t\n\v\f\r]+/, ''));
  if (value === undefined || Number.isNaN(value)) throw new RespError(NOT_FLOAT_RANGE);
  return [value, exclusive];
}

/** A lex range end: `-`, `+`, `[member` or `(member`. */
function lexEnd(arg: Buffer): LexEnd {
  const text = arg.toString('latin1');
  if (text === '-') return '-';
  if (text === '+') return '+';
  if (text.startsWith('[')) return { value: text.slice(1), exclusive: false };
  if (text.startsWith('(')) return { value: text.slice(1), exclusive: true };
  throw new RespError(NOT_LEX_RANGE);
}

function lexRangeArg(minArg: Buffer | undefined, maxArg: Buffer | undefined): LexRange {
  return { min: lexEnd(minArg as Buffer), max: lexEnd(maxArg as Buffer) };
}

/** Entries of a Map in sorted-set order (score, then member bytes). */
function sorted(result: Map<string, number>): Entry[] {
  return [...result].sort(([a, x], [b, y]) => (x !== y ? x - y : a < b ? -1 : a > b ? 1 : 0));
}

// ---- numbers --------------------------------------------------------------------------------------

/** A count that must be ≥ 0 (ZPOPMIN's). */
function positiveArg(arg: Buffer | undefined): number {
  const value = intArg(arg, POSITIVE);
  if (value < 0) throw new RespError(POSITIVE);
  return value;
}

/** Formatted scores (printf17g costs 1.5–2 µs a score): dropped whole when full. */
const scoreTexts = new Map<number, string>();
const SCORE_TEXTS = 4096;

/**
 * formatScore, faster: a safe integer has at most 16 digits, which "%.17g" prints exactly, as
 * String does; other scores go through a cache.
 */
function scoreText(score: number): string {
  if (score === 0) return formatScore(score); // 0 or -0, one key in a Map
  if (Number.isSafeInteger(score)) return String(score);
  let text = scoreTexts.get(score);
  if (text === undefined) {
    if (scoreTexts.size >= SCORE_TEXTS) scoreTexts.clear();
    text = formatScore(score);
    scoreTexts.set(score, text);
  }
  return text;
}

/** C's printf("%.17g"), as Redis 7.0 prints a score (addReplyDouble). */
export function formatScore(value: number): string {
  return formatDouble(value, '%.17g');
}

/** Redis 7.0's d2string, as a listpack keeps a score (what ZSCAN shows): integers up to 2^62 plainly. */
function listpackScore(value: number): string {
  if (Number.isInteger(value) && Math.abs(value) <= 2 ** 62) return Object.is(value, -0) ? '-0' : value.toFixed(0);
  return formatScore(value);
}

function upper(arg: Buffer | undefined): string {
  return arg === undefined ? '' : arg.toString('latin1').toUpperCase();
}
