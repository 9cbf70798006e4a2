import { int64Arg, parseDouble, type RespClient, RespError } from '@portbind/resp';
import type { MiniRedis } from '../app.js';
import {
  areasByShape,
  decodeScore,
  distance,
  distanceText,
  fixed,
  type GeoHash,
  humanText,
  LAT_MAX,
  LAT_MIN,
  LONG_MAX,
  LONG_MIN,
  type Shape,
  scoreOf,
  scoresOfBox,
  standardGeohash,
  withinShape,
} from '../geohash.js';
import { SortedSet } from '../sorted-set.js';
import { bytesOf, keyOf } from '../store.js';

// The GEO commands of Redis 7.0 (geo.c): a geo set is a sorted set whose scores are 52-bit
// geohashes. GEOADD is ZADD with those scores (and replicates as ZADD); the searches look in the
// cell around the center and its neighbors, then keep the points within the shape.

const group = 'geo';
const SYNTAX = 'ERR syntax error';
const NOT_FLOAT = 'ERR value is not a valid float';

/** A match: member, distance in meters (then in the unit), score, decoded position. */
interface Point {
  member: string;
  dist: number;
  score: number;
  x: number;
  y: number;
}

const upper = (arg: Buffer | undefined): string => (arg === undefined ? '' : arg.toString('latin1').toUpperCase());

function doubleArg(arg: Buffer | undefined, message = NOT_FLOAT): number {
  const value = arg === undefined ? undefined : parseDouble(arg);
  if (value === undefined) throw new RespError(message);
  return value;
}

/** extractLongLatOrReply. */
function lonLatArg(argv: Buffer[], index: number): [number, number] {
  const x = doubleArg(argv[index]);
  const y = doubleArg(argv[index + 1]);
  if (x < LONG_MIN || x > LONG_MAX || y < LAT_MIN || y > LAT_MAX) {
    throw new RespError(`ERR invalid longitude,latitude pair ${fixed(x, 6)},${fixed(y, 6)}`);
  }
  return [x, y];
}

/** extractUnitOrReply: meters per unit. */
function unitArg(arg: Buffer | undefined): number {
  const unit = (arg ?? Buffer.alloc(0)).toString('latin1').toLowerCase();
  if (unit === 'm') return 1;
  if (unit === 'km') return 1000;
  if (unit === 'ft') return 0.3048;
  if (unit === 'mi') return 1609.34;
  throw new RespError('ERR unsupported unit provided. please use M, KM, FT, MI');
}

/** extractDistanceOrReply: [radius, conversion]. */
function radiusArg(argv: Buffer[], index: number): [number, number] {
  const radius = doubleArg(argv[index], 'ERR need numeric radius');
  if (radius < 0) throw new RespError('ERR radius cannot be negative');
  return [radius, unitArg(argv[index + 1])];
}

/** extractBoxOrReply: [width, height, conversion]. */
function boxArg(argv: Buffer[], index: number): [number, number, number] {
  const width = doubleArg(argv[index], 'ERR need numeric width');
  const height = doubleArg(argv[index + 1], 'ERR need numeric height');
  if (height < 0 || width < 0) throw new RespError('ERR height or width cannot be negative');
  return [width, height, unitArg(argv[index + 2])];
}

/** The members of a cell within the shape (geoGetPointsInRange over [min, max)), appended to `found`. */
function membersOfBox(zset: SortedSet, hash: GeoHash, shape: Shape, found: Point[], limit: number): void {
  const [min, max] = scoresOfBox(hash);
  let node = zset.firstInRange({ min, max, minex: false, maxex: true });
  while (node !== undefined) {
    if (!(node.score < max)) break;
    const [x, y] = decodeScore(node.score);
    const dist = withinShape(shape, x, y);
    if (dist !== undefined) found.push({ member: node.member, dist, score: node.score, x, y });
    if (found.length > 0 && limit > 0 && found.length >= limit) break;
    node = node.next;
  }
}

/** membersOfAllNeighbors: the center cell then its neighbors, skipping empty ones and repeats of the previous one. */
function membersOfAllNeighbors(zset: SortedSet, cells: readonly GeoHash[], shape: Shape, limit: number): Point[] {
  const found: Point[] = [];
  let last = 0;
  for (let i = 0; i < cells.length; i++) {
    const cell = cells[i] as GeoHash;
    if (cell.bits === 0n && cell.step === 0) continue;
    const previous = cells[last] as GeoHash;
    if (last > 0 && cell.bits === previous.bits && cell.step === previous.step) continue;
    if (found.length > 0 && limit > 0 && found.length >= limit) break;
    membersOfBox(zset, cell, shape, found, limit);
    last = i;
  }
  return found;
}

const ascending = (a: Point, b: Point): number => (a.dist > b.dist ? 1 : a.dist === b.dist ? 0 : -1);
const descending = (a: Point, b: Point): number => -ascending(a, b);

/**
 * Redis's pqsort (pqsort.c, NetBSD's quicksort that only recurses into the parts holding the
 * elements of ranks lrange…rrange), in element units: the order it leaves equal elements in.
 */
function partialSort<T>(items: T[], cmp: (a: T, b: T) => number, lrange: number, rrange: number): void {
  const swap = (i: number, j: number): void => {
    const t = items[i] as T;
    items[i] = items[j] as T;
    items[j] = t;
  };
  const vecswap = (i: number, j: number, n: number): void => {
    for (let k = 0; k < n; k++) swap(i + k, j + k);
  };
  const at = (i: number): T => items[i] as T;
  const med3 = (a: number, b: number, c: number): number =>
    cmp(at(a), at(b)) < 0
      ? cmp(at(b), at(c)) < 0
        ? b
        : cmp(at(a), at(c)) < 0
          ? c
          : a
      : cmp(at(b), at(c)) > 0
        ? b
        : cmp(at(a), at(c)) < 0
          ? a
          : c;
  const wanted = (start: number, end: number): boolean => !(rrange < start || lrange >= end);
  const sort = (start: number, count: number): void => {
    let a = start;
    let n = count;
    for (;;) {
      if (n < 7) {
        for (let pm = a + 1; pm < a + n; pm++) for (let pl = pm; pl > a && cmp(at(pl - 1), at(pl)) > 0; pl--) swap(pl, pl - 1);
        return;
      }
      let pm = a + Math.floor(n / 2);
      if (n > 7) {
        let pl = a;
        let pn = a + n - 1;
        if (n > 40) {
          const d = Math.floor(n / 8);
          pl = med3(pl, pl + d, pl + 2 * d);
          pm = med3(pm - d, pm, pm + d);
          pn = med3(pn - 2 * d, pn - d, pn);
        }
        pm = med3(pl, pm, pn);
      }
      swap(a, pm);
      let pa = a + 1;
      let pb = pa;
      let pc = a + n - 1;
      let pd = pc;
      for (;;) {
        while (pb <= pc) {
          const result = cmp(at(pb), at(a));
          if (result > 0) break;
          if (result === 0) {
            swap(pa, pb);
            pa++;
          }
          pb++;
        }
        while (pb <= pc) {
          const result = cmp(at(pc), at(a));
          if (result < 0) break;
          if (result === 0) {
            swap(pc, pd);
            pd--;
          }
          pc--;
        }
        if (pb > pc) break;
        swap(pb, pc);
        pb++;
        pc--;
      }
      const pn = a + n;
      let r = Math.min(pa - a, pb - pa);
      vecswap(a, pb - r, r);
      r = Math.min(pd - pc, pn - pd - 1);
      vecswap(pb, pn - r, r);
      r = pb - pa;
      if (r > 1 && wanted(a, a + r)) sort(a, r);
      r = pd - pc;
      if (r <= 1) return;
      a = pn - r;
      n = r;
      if (!wanted(a, a + n)) return;
    }
  };
  sort(0, items.length);
}

const RADIUS_COORDS = 1;
const RADIUS_MEMBER = 2;
const RADIUS_NOSTORE = 4;
const GEOSEARCH = 8;
const GEOSEARCHSTORE = 16;

export function registerGeoCommands({ resp, keyspace, blocked, propagation }: MiniRedis): void {
  const readZset = (client: RespClient, arg: Buffer | undefined): SortedSet | undefined => keyspace.db(client.db).read(keyOf(arg), 'zset');

  /** addReplyHumanLongDouble: "%.17Lf" trimmed, a bulk string on RESP2, a double of that text on RESP3. */
  const replyCoordinate = (client: RespClient, value: number): void => {
    client.reply.double(value, humanText(value));
  };

  const replyMember = (client: RespClient, member: string): void => {
    client.reply.bulk(Buffer.byteLength(member) === member.length ? member : bytesOf(member));
  };

  // ---- GEOADD -----------------------------------------------------------------------------------

  resp.command(
    'geoadd',
    {
      arity: -5,
      flags: ['write'],
      keys: [1, 1, 1],
      group,
      summary: 'Add one or more geospatial items in the geospatial index represented using a sorted set',
    },
    (client, argv) => {
      let [nx, xx, ch] = [false, false, false];
      let index = 2;
      for (; index < argv.length; index++) {
        const option = upper(argv[index]);
        if (option === 'NX') nx = true;
        else if (option === 'XX') xx = true;
        else if (option === 'CH') ch = true;
        else break;
      }
      if ((argv.length - index) % 3 !== 0 || (xx && nx)) throw new RespError(SYNTAX);
      const scores: number[] = [];
      for (let i = index; i < argv.length; i += 3) {
        const [x, y] = lonLatArg(argv, i);
        scores.push(scoreOf(x, y));
      }
      // Replayed as the ZADD Redis turns it into.
      const replay: (Buffer | string)[] = ['zadd', ...argv.slice(1, index)];
      for (let j = 0; j < scores.length; j++) replay.push(String(scores[j]), argv[index + 3 * j + 2] as Buffer);
      propagation.rewrite(replay);

      const key = keyOf(argv[1]);
      const db = keyspace.db(client.db);
      let zset = db.read(key, 'zset');
      let [added, updated] = [0, 0];
      try {
        if (zset === undefined && !xx) zset = db.readOrCreate(key, 'zset');
        for (let j = 0; zset !== undefined && j < scores.length; j++) {
          const member = keyOf(argv[index + 3 * j + 2]);
          const score = scores[j] as number;
          const current = zset.score(member);
          if (current !== undefined) {
            if (nx) continue;
            if (score !== current) {
              zset.setKnown(member, current, score);
              updated++;
            }
          } else {
            if (xx) continue;
            zset.setKnown(member, undefined, score);
            added++;
          }
        }
      } finally {
        if (zset !== undefined) db.deleteIfEmpty(key, zset);
        if (added + updated > 0) {
          resp.touch(client.db, key);
          resp.notifyKeyspaceEvent('zset', 'zadd', key, client.db);
          blocked.signal(client.db, key);
        }
      }
      return ch ? added + updated : added;
    },
  );

  // ---- GEODIST, GEOHASH, GEOPOS -----------------------------------------------------------------

  const read = { flags: ['readonly'], keys: [1, 1, 1], group } as const;

  resp.command(
    'geodist',
    { arity: -4, ...read, summary: 'Returns the distance between two members of a geospatial index' },
    (client, argv) => {
      let toMeter = 1;
      if (argv.length === 5) toMeter = unitArg(argv[4]);
      else if (argv.length > 5) throw new RespError(SYNTAX);
      const zset = readZset(client, argv[1]);
      if (zset === undefined) return null;
      const score1 = zset.score(keyOf(argv[2]));
      const score2 = zset.score(keyOf(argv[3]));
      if (score1 === undefined || score2 === undefined) return null;
      const [x1, y1] = decodeScore(score1);
      const [x2, y2] = decodeScore(score2);
      return distanceText(distance(x1, y1, x2, y2) / toMeter);
    },
  );

  resp.command(
    'geohash',
    { arity: -2, ...read, summary: 'Returns members of a geospatial index as standard geohash strings' },
    (client, argv) => {
      const zset = readZset(client, argv[1]);
      client.reply.array(argv.length - 2);
      for (const member of argv.slice(2)) {
        const score = zset?.score(keyOf(member));
        if (score === undefined) client.reply.null();
        else client.reply.bulk(standardGeohash(score));
      }
    },
  );

  resp.command(
    'geopos',
    { arity: -2, ...read, summary: 'Returns longitude and latitude of members of a geospatial index' },
    (client, argv) => {
      const zset = readZset(client, argv[1]);
      client.reply.array(argv.length - 2);
      for (const member of argv.slice(2)) {
        const score = zset?.score(keyOf(member));
        if (score === undefined) client.reply.nullArray();
        else {
          const [x, y] = decodeScore(score);
          client.reply.array(2);
          replyCoordinate(client, x);
          replyCoordinate(client, y);
        }
      }
    },
  );

  // ---- GEORADIUS & co, GEOSEARCH, GEOSEARCHSTORE ---------------------------------------------------

  /** georadiusGeneric. */
  const search = (client: RespClient, argv: Buffer[], srcIndex: number, flags: number): void => {
    const name = (argv[0] as Buffer).toString('latin1');
    const db = keyspace.db(client.db);
    const zset = db.read(keyOf(argv[srcIndex]), 'zset');
    let storeKey: Buffer | undefined;
    let storeDist = false;
    let center: [number, number] = [0, 0];
    let radius: [number, number] | undefined; // [radius, conversion]
    let box: [number, number, number] | undefined; // [width, height, conversion]
    let baseArgs: number;
    if (flags & RADIUS_COORDS) {
      baseArgs = 6;
      center = lonLatArg(argv, 2);
      radius = radiusArg(argv, 4);
    } else if (flags & RADIUS_MEMBER && zset === undefined) {
      baseArgs = 5;
    } else if (flags & RADIUS_MEMBER) {
      baseArgs = 5;
      const score = zset?.score(keyOf(argv[2]));
      if (score === undefined) throw new RespError('ERR could not decode requested zset member');
      center = decodeScore(score);
      radius = radiusArg(argv, 3);
    } else {
      baseArgs = 2;
      if (flags & GEOSEARCHSTORE) {
        baseArgs = 3;
        storeKey = argv[1];
      }
    }

    let [withDist, withHash, withCoords, fromMember, fromLoc, byRadius, byBox, any] = [
      false,
      false,
      false,
      false,
      false,
      false,
      false,
      false,
    ];
    let sort: 'none' | 'asc' | 'desc' = 'none';
    let count = 0;
    const remaining = argv.length - baseArgs;
    for (let i = 0; i < remaining; i++) {
      const at = baseArgs + i;
      const arg = upper(argv[at]);
      if (arg === 'WITHDIST') withDist = true;
      else if (arg === 'WITHHASH') withHash = true;
      else if (arg === 'WITHCOORD') withCoords = true;
      else if (arg === 'ANY') any = true;
      else if (arg === 'ASC') sort = 'asc';
      else if (arg === 'DESC') sort = 'desc';
      else if (arg === 'COUNT' && i + 1 < remaining) {
        const value = int64Arg(argv[at + 1]);
        if (value <= 0n) throw new RespError('ERR COUNT must be > 0');
        count = Number(value);
        i++;
      } else if ((arg === 'STORE' || arg === 'STOREDIST') && i + 1 < remaining && !(flags & RADIUS_NOSTORE) && !(flags & GEOSEARCH)) {
        storeKey = argv[at + 1];
        storeDist = arg === 'STOREDIST';
        i++;
      } else if (arg === 'STOREDIST' && flags & GEOSEARCH && flags & GEOSEARCHSTORE) {
        storeDist = true;
      } else if (arg === 'FROMMEMBER' && i + 1 < remaining && flags & GEOSEARCH && !fromLoc) {
        if (zset !== undefined) {
          const score = zset.score(keyOf(argv[at + 1]));
          if (score === undefined) throw new RespError('ERR could not decode requested zset member');
          center = decodeScore(score);
        }
        fromMember = true;
        i++;
      } else if (arg === 'FROMLONLAT' && i + 2 < remaining && flags & GEOSEARCH && !fromMember) {
        center = lonLatArg(argv, at + 1);
        fromLoc = true;
        i += 2;
      } else if (arg === 'BYRADIUS' && i + 2 < remaining && flags & GEOSEARCH && !byBox) {
        radius = radiusArg(argv, at + 1);
        byRadius = true;
        i += 2;
      } else if (arg === 'BYBOX' && i + 3 < remaining && flags & GEOSEARCH && !byRadius) {
        box = boxArg(argv, at + 1);
        radius = undefined;
        byBox = true;
        i += 3;
      } else throw new RespError(SYNTAX);
    }

    if (storeKey !== undefined && (withDist || withHash || withCoords)) {
      throw new RespError(
        `ERR ${flags & GEOSEARCHSTORE ? 'GEOSEARCHSTORE' : 'STORE option in GEORADIUS'} is not compatible with WITHDIST, WITHHASH and WITHCOORD options`,
      );
    }
    if (flags & GEOSEARCH && !(fromMember || fromLoc)) {
      throw new RespError(`ERR exactly one of FROMMEMBER or FROMLONLAT can be specified for ${name}`);
    }
    if (flags & GEOSEARCH && !(byRadius || byBox)) {
      throw new RespError(`ERR exactly one of BYRADIUS and BYBOX can be specified for ${name}`);
    }
    if (any && count === 0) throw new RespError('ERR the ANY argument requires COUNT argument');

    if (zset === undefined) {
      if (storeKey !== undefined) {
        const key = keyOf(storeKey);
        if (db.delete(key)) {
          resp.touch(client.db, key);
          resp.notifyKeyspaceEvent('generic', 'del', key, client.db);
        }
        client.reply.integer(0);
      } else client.reply.array(0);
      return;
    }

    if (count !== 0 && sort === 'none' && !any) sort = 'asc';

    const shape: Shape =
      box !== undefined
        ? { type: 'box', x: center[0], y: center[1], width: box[0], height: box[1], conversion: box[2] }
        : {
            type: 'circle',
            x: center[0],
            y: center[1],
            radius: (radius as [number, number])[0],
            conversion: (radius as [number, number])[1],
          };
    const points = membersOfAllNeighbors(zset, areasByShape(shape), shape, any ? count : 0);

    if (points.length === 0 && storeKey === undefined) {
      client.reply.array(0);
      return;
    }
    const returned = count === 0 || points.length < count ? points.length : count;
    if (sort !== 'none') {
      const compare = sort === 'asc' ? ascending : descending;
      // As Redis: glibc's qsort (a stable merge sort) for all, its pqsort for the first `returned`.
      if (returned === points.length) points.sort(compare);
      else partialSort(points, compare, 0, returned - 1);
    }

    if (storeKey === undefined) {
      const options = (withDist ? 1 : 0) + (withCoords ? 1 : 0) + (withHash ? 1 : 0);
      client.reply.array(returned);
      for (let i = 0; i < returned; i++) {
        const point = points[i] as Point;
        const dist = point.dist / shape.conversion;
        if (options > 0) client.reply.array(options + 1);
        replyMember(client, point.member);
        if (withDist) client.reply.bulk(distanceText(dist));
        if (withHash) client.reply.integer(point.score);
        if (withCoords) {
          client.reply.array(2);
          replyCoordinate(client, point.x);
          replyCoordinate(client, point.y);
        }
      }
      return;
    }

    const key = keyOf(storeKey);
    if (returned > 0) {
      const result = new SortedSet();
      for (let i = 0; i < returned; i++) {
        const point = points[i] as Point;
        result.set(point.member, storeDist ? point.dist / shape.conversion : point.score);
      }
      db.set(key, { type: 'zset', data: result });
      resp.touch(client.db, key);
      resp.notifyKeyspaceEvent('zset', flags & GEOSEARCH ? 'geosearchstore' : 'georadiusstore', key, client.db);
      blocked.signal(client.db, key);
    } else if (db.delete(key)) {
      resp.touch(client.db, key);
      resp.notifyKeyspaceEvent('generic', 'del', key, client.db);
    }
    client.reply.integer(returned);
  };

  /** GEORADIUS(BYMEMBER)'s keys: the source, and the destination of a STORE/STOREDIST (georadiusGetKeys). */
  const radiusKeys =
    (base: number) =>
    (argv: readonly Buffer[]): readonly Buffer[] => {
      const keys: Buffer[] = [argv[1] as Buffer];
      let store: Buffer | undefined;
      for (let i = base; i < argv.length; i++) {
        const arg = upper(argv[i]);
        if ((arg === 'STORE' || arg === 'STOREDIST') && i + 1 < argv.length) {
          store = argv[i + 1];
          i++;
        }
      }
      if (store !== undefined) keys.push(store);
      return keys;
    };

  const storeSpecs = (startFrom: number) =>
    [
      { flags: ['RO', 'access'], begin: 1 },
      { flags: ['OW', 'update'], begin: { keyword: 'STORE', startFrom } },
      { flags: ['OW', 'update'], begin: { keyword: 'STOREDIST', startFrom } },
    ] as const;

  resp.command(
    'georadius',
    {
      arity: -6,
      flags: ['write'],
      keySpecs: storeSpecs(6),
      keysOf: radiusKeys(6),
      group,
      summary: 'Query a sorted set representing a geospatial index to fetch members matching a given maximum distance from a point',
    },
    (client, argv) => search(client, argv, 1, RADIUS_COORDS),
  );
  resp.command(
    'georadiusbymember',
    {
      arity: -5,
      flags: ['write'],
      keySpecs: storeSpecs(5),
      keysOf: radiusKeys(5),
      group,
      summary: 'Query a sorted set representing a geospatial index to fetch members matching a given maximum distance from a member',
    },
    (client, argv) => search(client, argv, 1, RADIUS_MEMBER),
  );
  resp.command('georadius_ro', { arity: -6, ...read, summary: 'A read-only variant for GEORADIUS' }, (client, argv) =>
    search(client, argv, 1, RADIUS_COORDS | RADIUS_NOSTORE),
  );
  resp.command('georadiusbymember_ro', { arity: -5, ...read, summary: 'A read-only variant for GEORADIUSBYMEMBER' }, (client, argv) =>
    search(client, argv, 1, RADIUS_MEMBER | RADIUS_NOSTORE),
  );
  resp.command(
    'geosearch',
    {
      arity: -7,
      ...read,
      summary: 'Query a sorted set representing a geospatial index to fetch members inside an area of a box or a circle.',
    },
    (client, argv) => search(client, argv, 1, GEOSEARCH),
  );
  resp.command(
    'geosearchstore',
    {
      arity: -8,
      flags: ['write'],
      keySpecs: [
        { flags: ['OW', 'update'], begin: 1 },
        { flags: ['RO', 'access'], begin: 2 },
      ],
      group,
      summary:
        'Query a sorted set representing a geospatial index to fetch members inside an area of a box or a circle, and store the result in another key.',
    },
    (client, argv) => search(client, argv, 2, GEOSEARCH | GEOSEARCHSTORE),
  );
}
