import { describe, expect, it } from 'vitest';
import { prng } from '../../../test/support/prng.js';
import {
  type CommandLine,
  differential,
  keyspaceMessage,
  notifications,
  onEach,
  RawClient,
  redisAndMiniForFile,
  replicationStream,
  show,
  until,
} from './support.js';

// GEOADD, GEODIST, GEOHASH, GEOPOS, GEOSEARCH, GEOSEARCHSTORE and the GEORADIUS family against a
// real redis-server 7.0.15 over real sockets: the same scripts on both, the replies compared byte
// for byte, the stored results (ZRANGE WITHSCORES), errors and the order in which arguments are
// checked, keyspace notifications, and what replicas are sent. Cases from Redis's
// tests/unit/geo.tcl, and random points and searches from a seeded generator (the edge members
// decided by the neighbor-cell logic).

const servers = redisAndMiniForFile();
const { run, same, sameOnBoth } = differential(servers, tokens);
const random = prng;

/** A line's words, `"two words"` (or `""`) being one. */
function tokens(command: CommandLine): CommandLine {
  if (typeof command !== 'string' || !command.includes('"')) return command;
  return [...command.matchAll(/"([^"]*)"|(\S+)/g)].map((match) => match[1] ?? (match[2] as string));
}

const SICILY = 'GEOADD Sicily 13.361389 38.115556 Palermo 15.087269 37.502669 Catania';
const NYC_LINES: CommandLine[] = [
  ['GEOADD', 'nyc', '-73.9454966', '40.7475688', 'lic market'],
  ['GEOADD', 'nyc', '-73.9733487', '40.7648057', 'central park n/q/r', '-73.9903085', '40.7362513', 'union square'],
  ['GEOADD', 'nyc', '-74.0131604', '40.7126674', 'wtc one', '-73.7858139', '40.6428986', 'jfk'],
  ['GEOADD', 'nyc', '-73.9375699', '40.7498929', 'q4', '-73.9564142', '40.7480973', '4545'],
];

describe('GEOADD', () => {
  it('adds, updates and counts as ZADD does (NX, XX, CH), with the geohash as the score', async () => {
    await same([
      SICILY,
      'ZRANGE Sicily 0 -1 WITHSCORES',
      'GEOADD Sicily 13.361389 38.115556 Palermo',
      'GEOADD Sicily CH 13.361390 38.115556 Palermo 15 37 Catania 12 36 New',
      'GEOADD Sicily NX 1 1 Palermo 2 2 Other',
      'GEOADD Sicily XX CH 3 3 Palermo 4 4 Absent',
      'GEOADD Sicily XX NX 1 1 a',
      'GEOADD Sicily CH NX XX 1 1 a',
      'GEOADD Sicily nx ch 5 5 Palermo 6 6 Fresh',
      'GEOADD Sicily 1 1',
      'GEOADD Sicily 1 1 a 2',
      'GEOADD Sicily GT 1 1 a',
      'GEOADD Sicily CH',
      'ZRANGE Sicily 0 -1 WITHSCORES',
      'GEOADD created XX 1 1 a',
      'EXISTS created',
      'GEOADD k 180 85.05112878 top -180 -85.05112878 bottom 0 0 zero -0 -0 negzero 179.99999 0 east',
      'ZRANGE k 0 -1 WITHSCORES',
      'GEOPOS k top bottom zero negzero east missing',
      'GEOHASH k top bottom zero negzero east missing',
    ]);
  });

  it('refuses invalid coordinates (checked before the type of the key), and floats Redis refuses', async () => {
    await same([
      'GEOADD k 181 0 a',
      'GEOADD k -180.0000001 0 a',
      'GEOADD k 0 85.05112879 a',
      'GEOADD k 0 -85.06 a',
      'GEOADD k 0 90 a',
      'GEOADD k 200.0078125 1e10 a',
      'GEOADD k inf 0 a',
      'GEOADD k 0 -inf a',
      'GEOADD k 1e300 1 a',
      'GEOADD k nan 0 a',
      'GEOADD k abc 0 a',
      'GEOADD k 0 "" a',
      'GEOADD k 1 1 a 2 x b',
      'EXISTS k',
      'SET str x',
      'GEOADD str 1 1 a',
      'GEOADD str 1 500 a',
      'GEOADD str 1 1',
    ]);
  });
});

describe('GEOPOS, GEOHASH, GEODIST', () => {
  it('positions (cell centers), geohashes and distances as Redis prints them', async () => {
    await same([
      SICILY,
      'GEOPOS Sicily Palermo Catania NonExisting',
      'GEOPOS missing a b',
      'GEOPOS Sicily',
      'GEOHASH Sicily Palermo Catania NonExisting',
      'GEOHASH missing a',
      'GEOHASH Sicily',
      'GEODIST Sicily Palermo Catania',
      'GEODIST Sicily Palermo Catania m',
      'GEODIST Sicily Palermo Catania KM',
      'GEODIST Sicily Palermo Catania mi',
      'GEODIST Sicily Palermo Catania Ft',
      'GEODIST Sicily Palermo Palermo',
      'GEODIST Sicily Palermo Missing',
      'GEODIST missing a b',
      'GEODIST missing a b yards',
      'GEODIST Sicily Palermo Catania yards',
      'GEODIST Sicily Palermo Catania km extra',
      'GEOADD points -122.407107 37.794300 1 -122.227336 37.794300 2',
      'GEOPOS points 1 2',
      'GEODIST points 1 2 km',
      'GEOADD lat 10 10 a 10 20 b 10 -60 c', // same longitude: the latitude-only distance
      'GEODIST lat a b',
      'GEODIST lat a c mi',
      'ZADD raw 0 zero 1.5 frac -1 neg 4503599627370496 big 9007199254740992 huge',
      'GEOPOS raw zero frac neg big huge',
      'GEOHASH raw zero frac neg big huge',
      'GEODIST raw zero big',
      'GEOADD small 0.0000001 0.0000001 a -0.0000001 -0.0000001 b',
      'GEOPOS small a b',
      'GEODIST small a b',
      'SET str x',
      'GEOPOS str a',
      'GEOHASH str a',
      'GEODIST str a b',
      'GEODIST str a b parsec',
    ]);
  });

  it('random points: positions, geohashes and distances in every unit', async () => {
    const next = random(7);
    const script: CommandLine[] = [];
    for (let i = 0; i < 200; i++) {
      const lon = (next() * 360 - 180).toFixed(6);
      const lat = (next() * 170.1 - 85.05).toFixed(6);
      script.push(['GEOADD', 'r', lon, lat, `p${i}`]);
    }
    for (let i = 0; i < 200; i += 20) {
      script.push(['GEOPOS', 'r', ...Array.from({ length: 20 }, (_, j) => `p${i + j}`)]);
      script.push(['GEOHASH', 'r', ...Array.from({ length: 20 }, (_, j) => `p${i + j}`)]);
    }
    for (let i = 0; i < 100; i++) {
      const unit = ['m', 'km', 'mi', 'ft'][i % 4] as string;
      script.push(['GEODIST', 'r', `p${i}`, `p${199 - i}`, unit]);
    }
    await same(script);
  });
});

describe('GEORADIUS and GEORADIUSBYMEMBER', () => {
  it('the cases of geo.tcl: sorting, WITH* options, COUNT and ANY', async () => {
    await same([
      ...NYC_LINES,
      'GEORADIUS nyc -73.9798091 40.7598464 3 km asc',
      'GEORADIUS nyc -73.9798091 40.7598464 3 km withdist asc',
      'GEORADIUS nyc -73.9798091 40.7598464 3 km withcoord withdist withhash asc',
      'GEORADIUS nyc -73.9798091 40.7598464 10 km COUNT 3',
      'GEORADIUS nyc -73.9798091 40.7598464 10 km COUNT 2 DESC',
      'GEORADIUS nyc -73.9798091 40.7598464 10 km COUNT 2 ANY',
      'GEORADIUS nyc -73.9798091 40.7598464 10 km COUNT 2 ANY DESC',
      'GEORADIUS nyc -73.9798091 40.7598464 10 km ANY',
      'GEORADIUS nyc -73.9798091 40.7598464 10 km COUNT 0',
      'GEORADIUS nyc -73.9798091 40.7598464 10 km COUNT -1',
      'GEORADIUS nyc -73.9798091 40.7598464 10 km COUNT x',
      'GEORADIUS nyc -73.9798091 40.7598464 10 km COUNT',
      'GEORADIUS nyc -73.9798091 40.7598464 10 km COUNT 9223372036854775807 desc withhash',
      'GEORADIUS nyc -73.9798091 40.7598464 10 mi desc withdist',
      'GEORADIUS nyc -73.9798091 40.7598464 10000 ft withdist',
      'GEORADIUS nyc -73.9798091 40.7598464 0 km',
      'GEORADIUS nyc -73.9798091 40.7598464 -1 km',
      'GEORADIUS nyc -73.9798091 40.7598464 x km',
      'GEORADIUS nyc -73.9798091 40.7598464 1 parsec',
      'GEORADIUS nyc -73.9798091 95 1 km',
      'GEORADIUS nyc -73.9798091 40.7598464 1 km bogus',
      'GEORADIUSBYMEMBER nyc "wtc one" 7 km',
      'GEORADIUSBYMEMBER nyc "wtc one" 7 km withdist withcoord',
      'GEORADIUSBYMEMBER nyc "wtc one" 7 km COUNT 2 withdist',
      'GEORADIUSBYMEMBER nyc nobody 7 km',
      'GEORADIUSBYMEMBER nyc nobody x km',
      'GEORADIUSBYMEMBER nyc "wtc one" x km',
      'GEORADIUSBYMEMBER missing nobody 7 km',
      'GEORADIUSBYMEMBER missing nobody x km',
      'GEORADIUSBYMEMBER missing nobody 7 km bogus',
      'GEORADIUS missing 1 1 7 km',
      'GEORADIUS missing 1 1 7 km COUNT 0',
      'GEORADIUS_RO nyc -73.9798091 40.7598464 3 km withdist asc',
      'GEORADIUS_RO nyc -73.9798091 40.7598464 3 km STORE dst',
      'GEORADIUSBYMEMBER_RO nyc "wtc one" 7 km desc withhash',
      'GEORADIUSBYMEMBER_RO nyc "wtc one" 7 km STOREDIST dst',
      'SET str x',
      'GEORADIUS str 1 1 7 km',
      'GEORADIUS str 1 100 7 km',
      'GEORADIUSBYMEMBER str a 7 km',
      'GEOSEARCH str FROMLONLAT 1 1 BYRADIUS 1 km',
    ]);
  });

  it('STORE and STOREDIST replace the destination (deleting it when nothing matches)', async () => {
    await same([
      ...NYC_LINES,
      'GEORADIUS nyc -73.9798091 40.7598464 3 km STORE dst',
      'ZRANGE dst 0 -1 WITHSCORES',
      'GEORADIUS nyc -73.9798091 40.7598464 10 km COUNT 2 STOREDIST dst',
      'ZRANGE dst 0 -1 WITHSCORES',
      'GEORADIUS nyc -73.9798091 40.7598464 10 mi STOREDIST dst DESC',
      'ZRANGE dst 0 -1 WITHSCORES',
      'GEORADIUSBYMEMBER nyc "wtc one" 7 km STORE dst STOREDIST dst2',
      'ZRANGE dst2 0 -1 WITHSCORES',
      'EXISTS dst',
      'GEORADIUS nyc 10 10 1 km STORE dst2',
      'EXISTS dst2',
      'GEORADIUS missing 10 10 1 km STORE dst',
      'EXISTS dst',
      'GEORADIUS nyc -73.9798091 40.7598464 3 km STORE dst WITHDIST',
      'GEORADIUS nyc -73.9798091 40.7598464 3 km WITHHASH STORE',
      'GEORADIUS nyc -73.9798091 40.7598464 3 km STORE',
      'SET str x',
      'GEORADIUS nyc -73.9798091 40.7598464 3 km STORE str',
      'TYPE str',
      'ZRANGE str 0 -1 WITHSCORES',
    ]);
  });
});

describe('GEOSEARCH and GEOSEARCHSTORE', () => {
  it('FROMMEMBER/FROMLONLAT, BYRADIUS/BYBOX and the options (geo.tcl)', async () => {
    await same([
      ...NYC_LINES,
      'GEOSEARCH nyc FROMLONLAT -73.9798091 40.7598464 BYRADIUS 3 km ASC',
      'GEOSEARCH nyc FROMMEMBER "wtc one" BYRADIUS 7 km WITHDIST WITHHASH WITHCOORD',
      'GEOSEARCH nyc FROMLONLAT -73.9798091 40.7598464 BYBOX 6 6 km ASC',
      'GEOSEARCH nyc FROMLONLAT -73.9798091 40.7598464 BYBOX 6 6 km DESC WITHDIST',
      'GEOSEARCH nyc FROMLONLAT -73.9798091 40.7598464 BYBOX 400 400 km COUNT 3 WITHCOORD',
      'GEOSEARCH nyc FROMLONLAT -73.9798091 40.7598464 BYBOX 400 400 km COUNT 3 ANY',
      'GEOSEARCH nyc FROMMEMBER jfk BYBOX 200 2 mi WITHDIST',
      'GEOSEARCH nyc FROMMEMBER jfk BYBOX 2 200 mi WITHDIST',
      'GEOSEARCH nyc FROMMEMBER jfk BYBOX 0 0 m WITHDIST',
      'GEOSEARCH nyc FROMMEMBER nobody BYRADIUS 1 km',
      'GEOSEARCH missing FROMMEMBER nobody BYRADIUS 1 km',
      'GEOSEARCH missing FROMMEMBER nobody BYRADIUS 1 km STORE x',
      'GEOSEARCH nyc BYRADIUS 3 km',
      'GEOSEARCH nyc FROMLONLAT 1 1',
      'GEOSEARCH nyc FROMLONLAT 1 1 FROMMEMBER jfk BYRADIUS 3 km',
      'GEOSEARCH nyc FROMMEMBER jfk FROMLONLAT 1 1 BYRADIUS 3 km',
      'GEOSEARCH nyc FROMMEMBER jfk BYRADIUS 3 km BYBOX 1 1 km',
      'GEOSEARCH nyc FROMMEMBER jfk BYBOX 1 1 km BYRADIUS 3 km',
      'GEOSEARCH nyc FROMMEMBER jfk BYBOX -1 1 km',
      'GEOSEARCH nyc FROMMEMBER jfk BYBOX x 1 km',
      'GEOSEARCH nyc FROMMEMBER jfk BYBOX 1 x km',
      'GEOSEARCH nyc FROMMEMBER jfk BYBOX 1 1 lightyear',
      'GEOSEARCH nyc FROMMEMBER jfk BYBOX 1 1',
      'GEOSEARCH nyc FROMMEMBER jfk BYRADIUS 1 km ANY',
      'GEOSEARCH nyc FROMMEMBER jfk BYRADIUS 1 km COUNT 0',
      'GEOSEARCH nyc FROMMEMBER jfk BYRADIUS 1 km STOREDIST',
      'GEOSEARCH nyc FROMLONLAT 200 1 BYRADIUS 1 km',
      'GEOSEARCH missing FROMLONLAT 200 1 BYRADIUS 1 km',
      'GEOSEARCH missing FROMLONLAT 1 1 BYRADIUS 1 km',
      'GEOSEARCH missing FROMLONLAT 1 1 BYRADIUS 1 km WITHDIST ANY',
      'GEOSEARCHSTORE dst nyc FROMLONLAT -73.9798091 40.7598464 BYBOX 6 6 km ASC',
      'ZRANGE dst 0 -1 WITHSCORES',
      'GEOSEARCHSTORE dst nyc FROMLONLAT -73.9798091 40.7598464 BYRADIUS 10 km COUNT 3 STOREDIST',
      'ZRANGE dst 0 -1 WITHSCORES',
      'GEOSEARCHSTORE dst nyc FROMLONLAT -73.9798091 40.7598464 BYRADIUS 10 km WITHDIST',
      'GEOSEARCHSTORE dst nyc FROMLONLAT -73.9798091 40.7598464 BYRADIUS 10 km STORE x',
      'GEOSEARCHSTORE dst nyc FROMLONLAT 10 10 BYRADIUS 10 km',
      'EXISTS dst',
      'GEOSEARCHSTORE dst nyc FROMLONLAT -73.9798091 40.7598464 BYRADIUS 10 km',
      'GEOSEARCHSTORE dst missing FROMLONLAT -73.9798091 40.7598464 BYRADIUS 10 km',
      'EXISTS dst',
      'GEOSEARCHSTORE dst missing FROMMEMBER x BYRADIUS 10 km',
      'GEOSEARCHSTORE dst missing FROMMEMBER x',
      'SET str x',
      'GEOSEARCHSTORE dst str FROMLONLAT 1 1 BYRADIUS 10 km',
      'GEOSEARCHSTORE str nyc FROMLONLAT -73.9798091 40.7598464 BYRADIUS 10 km STOREDIST',
      'ZRANGE str 0 -1 WITHSCORES',
    ]);
  });

  it('poles, the antimeridian and huge radii', async () => {
    const script: CommandLine[] = [
      'GEOADD w 179.9 0 e1 -179.9 0 w1 180 0 e2 -180 0 w2 0 85.05 n1 120 85 n2 -60 84.9 n3 0 -85.05 s1 100 -84 s2',
      'GEOADD w 0 0 o 90 0 q -90 0 r 45 45 ne -45 -45 sw',
    ];
    const centers: ReadonlyArray<readonly [string, string]> = [
      ['180', '0'],
      ['-180', '0'],
      ['179.999', '0.001'],
      ['0', '85.05112878'],
      ['0', '-85.05112878'],
      ['60', '84'],
      ['-120', '-70'],
      ['0', '0'],
    ];
    for (const [lon, lat] of centers) {
      for (const radius of ['1', '50', '500', '5000', '20000', '40000']) {
        script.push(['GEOSEARCH', 'w', 'FROMLONLAT', lon, lat, 'BYRADIUS', radius, 'km', 'ASC', 'WITHDIST']);
        script.push(['GEOSEARCH', 'w', 'FROMLONLAT', lon, lat, 'BYBOX', radius, radius, 'km', 'DESC', 'WITHHASH']);
      }
    }
    await same(script);
  });

  it('random points and random searches: the same members at the edges, in the same order', async () => {
    const next = random(2024);
    const script: CommandLine[] = [];
    // A dense cluster (edges cross cells at many steps) and points spread over the world.
    const add: string[] = ['GEOADD', 'g'];
    for (let i = 0; i < 300; i++) {
      const dense = i % 2 === 0;
      const lon = dense ? 2 + next() * 2 : next() * 360 - 180;
      const lat = dense ? 48 + next() * 2 : next() * 170 - 85;
      add.push(lon.toFixed(6), lat.toFixed(6), `m${i}`);
    }
    script.push(add);
    const units = ['m', 'km', 'mi', 'ft'];
    for (let i = 0; i < 300; i++) {
      const dense = i % 3 !== 0;
      const lon = (dense ? 2 + next() * 2 : next() * 360 - 180).toFixed(5);
      const lat = (dense ? 48 + next() * 2 : next() * 170 - 85).toFixed(5);
      const unit = units[i % 4] as string;
      const perMeter = unit === 'km' ? 1000 : unit === 'mi' ? 1609.34 : unit === 'ft' ? 0.3048 : 1;
      const meters = dense ? next() * 150_000 : next() * 3_000_000;
      const size = (meters / perMeter).toFixed(3);
      const order = ['ASC', 'DESC'][i % 2] as string;
      if (i % 5 === 0) script.push(['GEOSEARCH', 'g', 'FROMMEMBER', `m${i}`, 'BYRADIUS', size, unit, order, 'WITHDIST', 'WITHCOORD']);
      script.push(['GEOSEARCH', 'g', 'FROMLONLAT', lon, lat, 'BYRADIUS', size, unit, order, 'WITHDIST']);
      script.push(['GEOSEARCH', 'g', 'FROMLONLAT', lon, lat, 'BYBOX', size, (Number(size) / 2).toFixed(3), unit, order, 'WITHDIST']);
      script.push(['GEORADIUS', 'g', lon, lat, size, unit, 'WITHHASH']); // unsorted: the order of the cells
      script.push(['GEOSEARCH', 'g', 'FROMLONLAT', lon, lat, 'BYRADIUS', size, unit, 'COUNT', '3', 'ANY']);
      script.push(['GEOSEARCH', 'g', 'FROMLONLAT', lon, lat, 'BYRADIUS', size, unit, 'COUNT', '5', order]);
    }
    await same(script);
  });

  it('equal distances: the order of qsort for whole results, of pqsort for the first COUNT', async () => {
    const next = random(99);
    const script: CommandLine[] = [];
    // Several members on each of a few points: many ties, in runs longer than 7 and 40.
    const add: string[] = ['GEOADD', 't'];
    for (let i = 0; i < 150; i++) {
      const spot = Math.floor(next() * 4);
      add.push((10 + spot * 0.01).toFixed(4), (20 + spot * 0.005).toFixed(4), `t${i}`);
    }
    script.push(add);
    for (const order of ['ASC', 'DESC']) {
      script.push(['GEOSEARCH', 't', 'FROMLONLAT', '10', '20', 'BYRADIUS', '100', 'km', order]);
      for (const count of ['1', '3', '7', '8', '30', '41', '60', '149', '150', '151']) {
        script.push(['GEOSEARCH', 't', 'FROMLONLAT', '10', '20', 'BYRADIUS', '100', 'km', order, 'COUNT', count]);
        script.push(['GEORADIUS', 't', '10.015', '20.0075', '100', 'km', order, 'COUNT', count, 'WITHDIST']);
      }
    }
    script.push(['GEOSEARCH', 't', 'FROMLONLAT', '10', '20', 'BYRADIUS', '100', 'km', 'COUNT', '12']);
    script.push(['GEOSEARCHSTORE', 'dst', 't', 'FROMLONLAT', '10', '20', 'BYRADIUS', '100', 'km', 'COUNT', '12', 'STOREDIST']);
    script.push(['ZRANGE', 'dst', '0', '-1', 'WITHSCORES']);
    await same(script);
  });

  it('RESP3: the same shapes of replies (distances and hashes)', async () => {
    await same([
      'HELLO 3',
      ...NYC_LINES,
      'GEOSEARCH nyc FROMMEMBER "wtc one" BYRADIUS 7 km WITHDIST WITHHASH',
      'GEOPOS nyc nobody',
      'GEOHASH nyc jfk nobody',
      'GEODIST nyc jfk q4 km',
      'GEODIST nyc jfk nobody',
      'GEODIST missing jfk nobody',
    ]);
  });
});

describe('RESP3 coordinates', () => {
  it('GEOPOS and WITHCOORD answer doubles printed as Redis prints them ("%.17Lf", trailing zeros cut)', async () => {
    const script: CommandLine[] = [
      ...NYC_LINES,
      'GEOPOS nyc jfk q4 nobody',
      'GEOSEARCH nyc FROMMEMBER jfk BYRADIUS 50 km WITHCOORD WITHDIST',
    ];
    const [expected, actual] = await onEach([servers.redis.port, servers.mini.port], async (port) =>
      (await run(port, ['HELLO 3', ...script])).map((reply) => show(reply)),
    );
    expect(actual).toEqual(expected);
    expect((expected as string[]).join('')).toContain(',');
  });
});

describe('replication and keyspace notifications', () => {
  it('replays GEOADD as ZADD with the scores, and the store commands as sent when they write', async () => {
    const stream = await sameOnBoth(async (port) => {
      const client = new RawClient(port);
      await client.send([['CONFIG', 'SET', 'repl-ping-replica-period', '3600'], 'FLUSHALL']);
      const stream = await replicationStream(port);
      try {
        await client.send([
          SICILY,
          'GEOADD Sicily 13.361389 38.115556 Palermo', // no change
          'GEOADD Sicily CH XX 13 38 Palermo 1 1 Absent',
          'GEOADD Sicily 500 1 bad',
          'GEOSEARCHSTORE dst Sicily FROMMEMBER Palermo BYRADIUS 200 km STOREDIST',
          'GEOSEARCHSTORE none Sicily FROMLONLAT 0 0 BYRADIUS 1 km', // nothing to delete: not replayed
          'GEOSEARCHSTORE dst Sicily FROMLONLAT 0 0 BYRADIUS 1 km', // deletes dst
          'GEORADIUS Sicily 15 37 200 km STORE dst',
          'GEORADIUS_RO Sicily 15 37 200 km',
          'GEOSEARCH Sicily FROMLONLAT 15 37 BYRADIUS 200 km',
          'SET sentinel done',
        ]);
        await until(() => stream.commands.some((args) => args[1] === 'sentinel'), 'the sentinel replayed');
        return stream.commands.map((args) => args.join(' '));
      } finally {
        stream.close();
        client.close();
      }
    });
    expect(stream).toEqual([
      'SELECT 0',
      'zadd Sicily 3479099956230698 Palermo 3479447370796909 Catania',
      'zadd Sicily CH XX 3479065152021743 Palermo 3377822707026402 Absent',
      'GEOSEARCHSTORE dst Sicily FROMMEMBER Palermo BYRADIUS 200 km STOREDIST',
      'GEOSEARCHSTORE dst Sicily FROMLONLAT 0 0 BYRADIUS 1 km',
      'GEORADIUS Sicily 15 37 200 km STORE dst',
      'SET sentinel done',
    ]);
  });

  it('notifies `zadd` for GEOADD, `geosearchstore`/`georadiusstore` for a stored result, `del` when it deletes', async () => {
    const transcript = await sameOnBoth((port) =>
      notifications(
        port,
        'KEA',
        'PSUBSCRIBE __keyspace@0__:*',
        [
          SICILY,
          'GEOADD Sicily 13.361389 38.115556 Palermo',
          'GEOSEARCHSTORE dst Sicily FROMMEMBER Palermo BYRADIUS 200 km',
          'GEOSEARCHSTORE dst Sicily FROMLONLAT 0 0 BYRADIUS 1 km',
          'GEORADIUS Sicily 15 37 200 km STOREDIST dst',
          'GEORADIUS missing 15 37 200 km STORE dst',
          'GEOSEARCH Sicily FROMLONLAT 15 37 BYRADIUS 200 km',
          'SET sentinel 1',
        ],
        6,
      ),
    );
    const event = keyspaceMessage;
    expect(transcript).toEqual([
      event('Sicily', 'zadd'),
      event('dst', 'geosearchstore'),
      event('dst', 'del'),
      event('dst', 'georadiusstore'),
      event('dst', 'del'),
      event('sentinel', 'set'),
    ]);
  });

  it('WATCH sees GEOADD and GEOSEARCHSTORE, not a GEOADD that changed nothing', async () => {
    await sameOnBoth(async (port) => {
      const client = new RawClient(port);
      const other = new RawClient(port);
      try {
        await client.send(['FLUSHALL', SICILY]);
        const replies: string[] = [];
        for (const write of [
          'GEOADD Sicily 13.361389 38.115556 Palermo',
          'GEOADD Sicily 13 38 Palermo',
          'GEOSEARCHSTORE Sicily Sicily FROMMEMBER Palermo BYRADIUS 1 km',
        ]) {
          await client.send(['WATCH Sicily']);
          await other.send([tokens(write)]);
          replies.push(...(await client.send(['MULTI', 'PING', 'EXEC'])).map(show));
        }
        return replies;
      } finally {
        client.close();
        other.close();
      }
    });
  });
});
