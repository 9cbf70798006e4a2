import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import { createClient, defineScript } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Crc64 } from '../src/crc64.js';
import { type CommandLine, RawClient, type Started, show, startMiniRedis, startRedisServer } from './support.js';

// EVAL & co. against a real redis-server 7.0.15: the same scripts over raw TCP, the same reply
// bytes — Lua ↔ RESP conversions, errors with their `script: <sha>, on @user_script:N.` suffix,
// the sandbox, SCRIPT's subcommands.

let real: Started | undefined;
let mini: Started | undefined;

beforeAll(async () => {
  [real, mini] = await Promise.all([startRedisServer(), startMiniRedis()]);
}, 30_000);

afterAll(async () => {
  await Promise.all([real?.stop(), mini?.stop()]);
});

const e = (script: string, ...rest: string[]): CommandLine => ['EVAL', script, ...(rest.length === 0 ? ['0'] : rest)];

async function run(port: number, script: readonly CommandLine[], resp3: boolean): Promise<string[]> {
  const client = new RawClient(port);
  try {
    await client.send(resp3 ? ['FLUSHALL', 'SCRIPT FLUSH', 'HELLO 3'] : ['FLUSHALL', 'SCRIPT FLUSH']);
    return (await client.send(script)).map(show);
  } finally {
    client.close();
  }
}

async function same(script: readonly CommandLine[], resp3 = false): Promise<void> {
  const [expected, actual] = await Promise.all([run((real as Started).port, script, resp3), run((mini as Started).port, script, resp3)]);
  const label = (command: CommandLine): string => (typeof command === 'string' ? command : command.join(' '));
  expect(actual.map((reply, i) => `${label(script[i] as CommandLine)} → ${reply}`)).toEqual(
    expected.map((reply, i) => `${label(script[i] as CommandLine)} → ${reply}`),
  );
}

describe('EVAL: Lua → RESP conversions, as redis-server 7.0.15', () => {
  it('strings, integers (truncated), booleans, nil, status and error tables', async () => {
    await same([
      e('return 1'),
      e('return 3.99'),
      e('return -3.99'),
      e("return 'hello'"),
      e('return true'),
      e('return false'),
      e('return nil'),
      e("return {ok='fine'}"),
      e("return {err='My Error'}"),
      e("return redis.status_reply('PONG')"),
      e("return redis.error_reply('MYERR custom')"),
      e("return redis.error_reply('no code')"),
      e("return {1, 2, 3, 'x', nil, 4}"),
      e("return {1, {2, {3, 'deep'}}, false, true}"),
      e("return {k='v'}"),
      e('return {}'),
      e('return 1e20'),
      e('return 0/0'),
      e('return {1.5, 2.5}'),
      e("return string.rep('x', 3) .. 'y'"),
    ]);
  });

  it('KEYS and ARGV, numkeys errors', async () => {
    await same([
      e('return {KEYS[1], KEYS[2], ARGV[1], ARGV[2]}', '2', 'k1', 'k2', 'a1', 'a2'),
      e('return #KEYS + #ARGV', '0'),
      e('return 1', '3', 'a'),
      e('return 1', '-1'),
      e('return 1', 'x'),
      e('return 1', '99999999999999999999'),
      ['EVAL', 'return 1'],
      e('return 1', '0'),
    ]);
  });

  it('redis.call replies → Lua, and back', async () => {
    await same([
      'SET counter 10',
      'RPUSH list a b c',
      'HSET h f v',
      e("return redis.call('GET', KEYS[1])", '1', 'counter'),
      e("return redis.call('INCR', KEYS[1])", '1', 'counter'),
      e("return redis.call('SET', 'x', 'y')"),
      e("return redis.call('GET', 'missing')"),
      e("return type(redis.call('GET', 'missing'))"),
      e("return redis.call('LRANGE', 'list', 0, -1)"),
      e("return redis.call('HGETALL', 'h')"),
      e("local r = redis.call('SET', 'x', 'y') return r.ok"),
      e("return redis.call('PING')"),
      e("return redis.call('SET', 'n', 3.5)"),
      e("return redis.call('GET', 'n')"),
      e("redis.call('SET', 'n', 100) return redis.call('GET', 'n')"),
      e("return redis.call('EXISTS', 'nope', 'x')"),
      e("return redis.pcall('INCR', 'list')"),
      e("local r = redis.pcall('INCR', 'list') return r.err"),
      e("return redis.call('ZADD', 'z', 1, 'a', 2.5, 'b')"),
      e("return redis.call('ZRANGE', 'z', 0, -1, 'WITHSCORES')"),
    ]);
  });

  it('RESP3 under redis.setresp(3), on a RESP2 and a RESP3 connection', async () => {
    const script: CommandLine[] = [
      'HSET h a 1',
      'ZADD z 1.5 m',
      e("redis.setresp(3) return redis.call('HGETALL', 'h')"),
      e("redis.setresp(3) local r = redis.call('HGETALL', 'h') return r.map.a"),
      e("redis.setresp(3) return redis.call('ZSCORE', 'z', 'm')"),
      e("redis.setresp(3) return redis.call('ZSCORE', 'z', 'm').double"),
      e("redis.setresp(3) return redis.call('GET', 'missing')"),
      e("redis.setresp(3) return type(redis.call('GET', 'missing'))"),
      e("redis.setresp(3) return redis.call('SMEMBERS', 'nothing')"),
      e('redis.setresp(3) return true'),
      e('redis.setresp(3) return false'),
      e('return {double=3.14}'),
      e("return {big_number='123456789012345678901234567890'}"),
      e('return {map={a=1}}'),
      e('return {set={x=true}}'),
      e("return {verbatim_string={format='txt', string='hello'}}"),
      e('redis.setresp(4)'),
      e('redis.setresp()'),
    ];
    await same(script, false);
    await same(script, true);
  });
});

describe('EVAL: errors as redis-server 7.0.15', () => {
  it('runtime errors, redis.call errors, compile errors', async () => {
    await same([
      'SET str x',
      e("return redis.call('INCR', 'str')"),
      e("redis.call('LPUSH', 'str', 'v')"),
      e("return redis.call('nosuchcommand')"),
      e("return redis.call('GET', 'a', 'b')"),
      e('return redis.call()'),
      e('return redis.pcall()'),
      e("return redis.call('SET', 'k', {})"),
      e("error('boom')"),
      e("error({err='CUSTOM thing'})"),
      e("error('x', 0)"),
      e('return a'),
      e('a = 10'),
      e('return print'),
      e('return loadfile'),
      e('return dofile'),
      e('return os'),
      e('return io'),
      e('return require'),
      e("return redis.call('MULTI')"),
      e("return redis.call('EVAL', 'return 1', 0)"),
      e("return redis.call('SUBSCRIBE', 'c')"),
      e("return redis.pcall('BLPOP', 'x', 0)"),
      e("return redis.pcall('XREAD', 'BLOCK', 0, 'STREAMS', 's', '$')"),
      e("return redis.pcall('xreadgroup', 'GROUP', 'g', 'c', 'BLOCK', 0, 'STREAMS', 's', '>')"),
      e("return redis.pcall('XREAD', 'STREAMS', 's', '0')"),
      e("return redis.call('CLIENT', 'ID')"),
      e("return redis.call('CONFIG', 'GET', 'maxmemory')"),
      e("redis.call('GET', 'x') redis.call('SET', 'k', 'v') error('after')"),
      e("return pcall(function() redis.call('INCR', 'str') end)"),
      e("local ok, err = pcall(function() redis.call('INCR', 'str') end) return err"),
      e("local ok, err = pcall(error, 'plain') return err"),
      e("redis.log(redis.LOG_WARNING, 'from a test')"),
      e('redis.log(99, 1)'),
      e("redis.log('x')"),
      e('return redis.sha1hex()'),
      e("return redis.sha1hex('')"),
      e('return redis.set_repl(redis.REPL_ALL)'),
      e('return redis.set_repl(99)'),
      e('return {redis.REPL_NONE, redis.REPL_AOF, redis.REPL_REPLICA, redis.REPL_SLAVE, redis.REPL_ALL}'),
      e('return {redis.LOG_DEBUG, redis.LOG_VERBOSE, redis.LOG_NOTICE, redis.LOG_WARNING}'),
      e('return redis.breakpoint'),
      e('return redis.debug'),
      e('redis.call = function() end'),
      e('string.foo = 1'),
      e('setmetatable(_G, nil)'),
      e('local g = getmetatable(_G) g.__index = {}'),
      e("local t = getmetatable('') t.__index = {}"),
      e('return redis.error_reply(1)'),
      e('return redis.status_reply()'),
    ]);
  });

  it('Lua 5.4 words some errors of its own (Redis embeds 5.1): the same frame around them', async () => {
    const script = [e('return 1 +'), e('local t = {} t.x.y = 1')];
    const [expected, actual] = await Promise.all([run((real as Started).port, script, false), run((mini as Started).port, script, false)]);
    expect(expected).toEqual([
      "-ERR Error compiling script (new function): user_script:1: unexpected symbol near '<eof>'⏎",
      "-ERR user_script:1: attempt to index field 'x' (a nil value) script: a3e688812e3164b24d5a4a070bf45fd27d50fc57, on @user_script:1.⏎",
    ]);
    expect(actual).toEqual([
      '-ERR Error compiling script (new function): user_script:1: unexpected symbol near <eof>⏎',
      "-ERR user_script:1: attempt to index a nil value (field 'x') script: a3e688812e3164b24d5a4a070bf45fd27d50fc57, on @user_script:1.⏎",
    ]);
  });

  it('EVAL_RO refuses writes; shebang flags', async () => {
    await same([
      'SET k v',
      ['EVAL_RO', "return redis.call('GET', KEYS[1])", '1', 'k'],
      ['EVAL_RO', "return redis.call('SET', KEYS[1], 'w')", '1', 'k'],
      ['EVAL_RO', "return redis.call('DEL', KEYS[1])", '1', 'k'],
      ['EVAL_RO', "return redis.pcall('PUBLISH', 'c', 'm')", '0'],
      ['EVAL', "#!lua flags=no-writes\nreturn redis.call('SET', 'k', 'w')", '0'],
      ['EVAL', "#!lua flags=no-writes\nreturn redis.call('GET', 'k')", '0'],
      ['EVAL_RO', "#!lua\nreturn redis.call('GET', 'k')", '0'],
      ['EVAL', '#!lua flags=bogus\nreturn 1', '0'],
      ['EVAL', '#!python\nreturn 1', '0'],
      ['EVAL', '#!lua foo=bar\nreturn 1', '0'],
      ['EVAL', '#!lua', '0'],
      ['EVAL', "#!lua\nerror('line two')", '0'],
    ]);
  });
});

describe('maxmemory, as redis-server 7.0.15', () => {
  it('the first denyoom command of a script is refused past maxmemory, unless the script is allow-oom', async () => {
    await same([
      ['SET', 'big', 'x'.repeat(10_000)],
      'CONFIG SET maxmemory 1',
      e("return redis.call('SET', 'k', 'v')"),
      e("return redis.pcall('SET', 'k', 'v')"),
      e("return redis.call('GET', 'big') ~= false"),
      e("return redis.call('DEL', 'nothing')"),
      ['EVAL', "#!lua flags=allow-oom\nreturn redis.call('SET', 'k', 'v')", '0'],
      ['EVAL', "#!lua\nreturn redis.call('GET', 'k')", '0'],
      ['EVAL', "#!lua flags=no-writes\nreturn redis.call('GET', 'k')", '0'],
      'CONFIG SET maxmemory 0',
      e("return redis.call('SET', 'k', 'w')"),
    ]);
  });
});

describe('EVALSHA and SCRIPT, as redis-server 7.0.15', () => {
  it('SCRIPT LOAD / EXISTS / FLUSH / KILL / HELP, EVALSHA and its NOSCRIPT', async () => {
    await same([
      'SCRIPT LOAD return\\x201',
      ['SCRIPT', 'LOAD', "return 'loaded'"],
      ['EVALSHA', 'b3e8bd1ecf2bd5bad7fbb5e2b1a6b8e1da22a02a', '0'],
      ['EVALSHA', '1cff5b4a6a1a7d62b1b9ed2eb22bc5d1ebc0d8f4', '0'],
      ['EVALSHA', 'short', '0'],
      ['EVALSHA', 'short', 'x'],
      ['SCRIPT', 'EXISTS', 'b3e8bd1ecf2bd5bad7fbb5e2b1a6b8e1da22a02a', 'ffffffffffffffffffffffffffffffffffffffff'],
      ['EVAL', "return 'cached by eval'", '0'],
      ['EVALSHA_RO', 'a2b6f3e5b8f2e9b0f9d70e6e5a3b5a7d0cfe5e5d', '0'],
      'SCRIPT FLUSH',
      'SCRIPT FLUSH ASYNC',
      'SCRIPT FLUSH BOGUS',
      ['SCRIPT', 'EXISTS', 'b3e8bd1ecf2bd5bad7fbb5e2b1a6b8e1da22a02a'],
      'SCRIPT KILL',
      'SCRIPT HELP',
      'SCRIPT BOGUS',
      'SCRIPT LOAD',
      ['SCRIPT', 'LOAD', 'return +'],
      'SCRIPT EXISTS',
    ]);
  });
});

describe('libraries and binary safety, as redis-server 7.0.15', () => {
  it('cjson, bit, unpack, loadstring, math.random, KEYS/ARGV bytes', async () => {
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    await same([
      e("return cjson.encode({1, 2, 'x', {a=true}})"),
      e('return cjson.encode({})'),
      e("return cjson.encode('a/b\"\\n\\1')"),
      e('return cjson.encode(3)'),
      e('return cjson.encode(1.5)'),
      e('return cjson.encode(1/3)'),
      e('return cjson.encode({[1]=1, [2]=2, [4]=4})'),
      e('return cjson.encode(cjson.null)'),
      e('return cjson.encode(function() end)'),
      e('return cjson.encode(0/0)'),
      e(`return cjson.decode('[1,2,{"b":"c"}]')[3].b`),
      e(`return cjson.decode('{"n":12345}').n`),
      e(`return cjson.decode('{"f":1.5}').f * 2`),
      e(`return type(cjson.decode('{"a":null}').a)`),
      e(`return cjson.decode('{"a":null}').a == cjson.null`),
      e(`return cjson.decode('[1,2,3]')`),
      e(`return #cjson.decode('"text"')`),
      e(
        'return {bit.band(0xff, 0x0f), bit.bor(1, 2, 4), bit.bxor(5, 3), bit.bnot(0), bit.lshift(1, 31), bit.rshift(-1, 28), bit.arshift(-256, 4)}',
      ),
      e('return {bit.tohex(65535), bit.tohex(-1, 4), bit.tohex(255, -2), bit.tobit(2^32 + 5), bit.rol(1, 33), bit.bswap(0x12345678)}'),
      e('return {unpack({1, 2, 3})}'),
      e("return loadstring('return 40 + 2')()"),
      e('return {math.random(10), math.random(5, 7), math.random(1000)}'),
      e('return math.floor(math.random() * 1000000)'),
      e('return {string.format("%d %s %5.2f", 7, "x", 3.14159), string.rep("ab", 3, "-"), ("x"):upper()}'),
      e('return {tostring(10 / 2), tostring(2^53), tostring(0.1), 7 % 3, tostring(-0.0), tostring(1e300 * 1e10)}'),
      e('return #ARGV[1]', '0', 'héllo'),
      ['EVAL', 'return ARGV[1]', '0', bytes],
      ['EVAL', 'return {KEYS[1], ARGV[1]}', '1', Buffer.from([0, 13, 10, 255]), Buffer.from('\r\n')],
      ['EVAL', "return redis.call('SET', KEYS[1], ARGV[1])", '1', Buffer.from([0, 255]), bytes],
      ['GET', Buffer.from([0, 255])],
      ['EVAL', 'return redis.sha1hex(ARGV[1])', '0', bytes],
      ['EVAL', 'return "a\\0b"', '0'],
    ]);
  });
});

/** Steps on several raw connections: [connection, commands, replies to read (default: one per command)]. */
type Step = readonly [number, readonly CommandLine[], number?, 'quiet'?];

async function session(port: number, connections: number, steps: readonly Step[]): Promise<string[]> {
  const clients = Array.from({ length: connections }, () => new RawClient(port));
  const transcript: string[] = [];
  try {
    await (clients[0] as RawClient).send(['FLUSHALL', 'SCRIPT FLUSH']);
    for (const [on, commands, replies, quiet] of steps) {
      const client = clients[on] as RawClient;
      if (commands.length > 0) client.socket.write(Buffer.concat(commands.map((command) => encodeOne(command))));
      const read = await client.read(replies ?? commands.length);
      if (quiet === undefined) for (const reply of read) transcript.push(`${on}: ${show(reply)}`);
    }
    return transcript;
  } finally {
    for (const client of clients) client.close();
  }
}

function encodeOne(command: CommandLine): Buffer {
  const words = typeof command === 'string' ? command.split(' ') : [...command];
  const parts: Buffer[] = [Buffer.from(`*${words.length}\r\n`)];
  for (const word of words) {
    const bytes = typeof word === 'string' ? Buffer.from(word) : word;
    parts.push(Buffer.from(`$${bytes.length}\r\n`), bytes, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

async function sameSession(connections: number, steps: readonly Step[], normalize = (line: string): string => line): Promise<string[]> {
  const [expected, actual] = await Promise.all([
    session((real as Started).port, connections, steps),
    session((mini as Started).port, connections, steps),
  ]);
  expect(actual.map(normalize)).toEqual(expected.map(normalize));
  return actual;
}

describe('what a script writes is a write, as redis-server 7.0.15', () => {
  it('dirties WATCH, sends keyspace notifications and client-side caching invalidations', async () => {
    await sameSession(4, [
      [0, ['CONFIG SET notify-keyspace-events KA']],
      [1, ['SUBSCRIBE __keyspace@0__:k']],
      [2, ['HELLO 3'], 1, 'quiet'],
      [2, ['CLIENT TRACKING ON', 'GET k']],
      [0, ['WATCH k']],
      [3, [e("return redis.call('SET', KEYS[1], 'v')", '1', 'k')]],
      [0, ['MULTI', 'PING', 'EXEC']],
      [1, [], 1],
      [2, [], 1],
      [3, [e("return redis.call('GET', KEYS[1])", '1', 'k')]],
      [0, [['CONFIG', 'SET', 'notify-keyspace-events', '']]],
    ]);
  });

  it('EVAL inside MULTI, a script on another database (SELECT), SELECT inside a script', async () => {
    await sameSession(1, [
      [0, ['MULTI', e("return redis.call('SET', 'in-multi', '1')"), 'GET in-multi', 'EXEC']],
      [0, ['SELECT 3', e("redis.call('SET', 'on3', 'x') return redis.call('DBSIZE')"), 'GET on3', 'SELECT 0', 'GET on3']],
      [
        0,
        [
          e("redis.call('SELECT', 5) redis.call('SET', 'on5', 'y') return redis.call('GET', 'on5')"),
          'GET on5',
          'SELECT 5',
          'GET on5',
          'SELECT 0',
        ],
      ],
    ]);
  });

  it('MONITOR shows EVAL, then its commands as [db lua]', async () => {
    const lines = await sameSession(
      2,
      [
        [0, ['MONITOR']],
        [1, [e("redis.call('set', KEYS[1], ARGV[1]) return redis.call('get', KEYS[1])", '1', 'foo', 'bar')]],
        [0, [], 3],
      ],
      (line) =>
        line.replace(
          /^(\d): \+\d+\.\d{6} \[(\d+) (lua|[\d.]+:\d+)\]/,
          (_, on, db, addr) => `${on}: +T [${db} ${addr === 'lua' ? 'lua' : 'ADDR'}]`,
        ),
    );
    expect(lines[2]).toMatch(/"EVAL" "redis\.call/);
    expect(lines[3]).toMatch(/\[0 lua\] "set" "foo" "bar"⏎$/);
  });

  it('INFO commandstats counts the commands a script ran', async () => {
    // What one script adds to each command's counters (mini-redis's CONFIG RESETSTAT does not reset them).
    const counts = async (port: number): Promise<string[]> => {
      const client = new RawClient(port);
      const read = async (): Promise<Map<string, number[]>> => {
        const [info] = await client.send(['INFO commandstats']);
        const stats = new Map<string, number[]>();
        for (const line of String(info).split('\r\n')) {
          const match =
            /^cmdstat_(eval|set|get|incr):calls=(\d+),usec=\d+,usec_per_call=[\d.]+,rejected_calls=(\d+),failed_calls=(\d+)$/.exec(line);
          if (match !== null) stats.set(match[1] as string, [Number(match[2]), Number(match[3]), Number(match[4])]);
        }
        return stats;
      };
      try {
        const before = await read();
        await client.send([e("redis.call('SET', 'a', '1') redis.call('GET', 'a') return redis.pcall('INCR', 'nope', 'x')")]);
        const after = await read();
        return [...after]
          .map(([name, [calls = 0, rejected = 0, failed = 0]]) => {
            const [calls0 = 0, rejected0 = 0, failed0 = 0] = before.get(name) ?? [];
            return `${name}: calls +${calls - calls0}, rejected +${rejected - rejected0}, failed +${failed - failed0}`;
          })
          .sort();
      } finally {
        client.close();
      }
    };
    const [expected, actual] = await Promise.all([counts((real as Started).port), counts((mini as Started).port)]);
    expect(actual).toEqual(expected);
    expect(actual).toEqual([
      'eval: calls +1, rejected +0, failed +1',
      'get: calls +1, rejected +0, failed +0',
      'incr: calls +0, rejected +1, failed +0',
      'set: calls +1, rejected +0, failed +0',
    ]);
  });
});

describe('limits', () => {
  it('past busy-reply-threshold other clients get -BUSY, SCRIPT KILL stops a script that wrote nothing, -UNKILLABLE one that did', async () => {
    const busy = async (port: number): Promise<string[]> => {
      const a = new RawClient(port);
      const b = new RawClient(port);
      const transcript: string[] = [];
      /** Ask until the script is busy: -BUSY for a PING. */
      const untilBusy = async (): Promise<void> => {
        for (let i = 0; i < 500; i++) {
          const [reply] = await b.send(['PING']);
          if (show(reply as Buffer).startsWith('-BUSY')) {
            transcript.push(`b: ${show(reply as Buffer)}`);
            return;
          }
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
        throw new Error('the script never got busy');
      };
      try {
        await a.send(['CONFIG SET busy-reply-threshold 100', 'DEL x']);
        a.socket.write(encodeOne(e('local i = 0 while true do i = i + 1 end')));
        await untilBusy();
        for (const reply of await b.send(['GET x', 'SCRIPT KILL'])) transcript.push(`b: ${show(reply)}`);
        for (const reply of await a.read(1)) transcript.push(`a: ${show(reply)}`);
        for (const reply of await b.send(['PING', 'SCRIPT KILL'])) transcript.push(`b: ${show(reply)}`);
        // pcall cannot catch the kill for long.
        a.socket.write(encodeOne(e('while true do pcall(function() while true do end end) end')));
        await untilBusy();
        for (const reply of await b.send(['SCRIPT KILL'])) transcript.push(`b: ${show(reply)}`);
        for (const reply of await a.read(1)) transcript.push(`a: ${show(reply)}`);
        // A script that wrote cannot be killed: it runs to its end.
        a.socket.write(encodeOne(e("redis.call('SET', 'x', '1') local t = 0 for i = 1, 50000000 do t = t + i end return t")));
        await untilBusy();
        for (const reply of await b.send(['SCRIPT KILL'])) transcript.push(`b: ${show(reply)}`);
        for (const reply of await a.read(1)) transcript.push(`a: ${show(reply)}`);
        for (const reply of await b.send(['GET x', 'CONFIG SET busy-reply-threshold 5000'])) transcript.push(`b: ${show(reply)}`);
        return transcript;
      } finally {
        a.close();
        b.close();
      }
    };
    const [expected, actual] = await Promise.all([busy((real as Started).port), busy((mini as Started).port)]);
    expect(actual).toEqual(expected);
    expect(actual[0]).toBe('b: -BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.⏎');
  }, 60_000);

  it('a transaction meeting a busy script is discarded whole (EXECABORT … BUSY)', async () => {
    const run = async (port: number): Promise<string[]> => {
      const a = new RawClient(port);
      const b = new RawClient(port);
      const transcript: string[] = [];
      try {
        await a.send(['CONFIG SET busy-reply-threshold 50', 'SET xx 1']);
        for (const reply of await b.send(['MULTI', 'INCR xx'])) transcript.push(`b: ${show(reply)}`);
        a.socket.write(encodeOne(e('while true do end')));
        for (let i = 0; i < 500; i++) {
          const [reply] = await b.send(['INCR xx']);
          if (show(reply as Buffer).startsWith('-BUSY')) {
            transcript.push(`b: ${show(reply as Buffer)}`);
            break;
          }
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
        for (const reply of await b.send(['EXEC', 'PING asdf', 'SCRIPT KILL'])) transcript.push(`b: ${show(reply)}`);
        for (const reply of await a.read(1)) transcript.push(`a: ${show(reply).replace(/[0-9a-f]{40}/, '<sha>')}`);
        for (const reply of await b.send(['GET xx', 'CONFIG SET busy-reply-threshold 5000'])) transcript.push(`b: ${show(reply)}`);
        return transcript;
      } finally {
        a.close();
        b.close();
      }
    };
    const [expected, actual] = await Promise.all([run((real as Started).port), run((mini as Started).port)]);
    expect(actual).toEqual(expected);
    expect(actual).toContain(
      'b: -EXECABORT Transaction discarded because of: BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.⏎',
    );
  }, 60_000);

  it('the Lua heap is capped: a script that allocates without end fails, the VM lives on', async () => {
    const client = new RawClient((mini as Started).port);
    try {
      const [reply] = await client.send([e("local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 4096) .. i end")]);
      expect(show(reply as Buffer)).toMatch(/^-ERR Error running script [0-9a-f]{40}, not enough memory⏎$/);
      expect((await client.send([e('local t = {} for i = 1, 1000 do t[i] = i end return #t')])).map(show)).toEqual([':1000⏎']);
    } finally {
      client.close();
    }
  }, 60_000);

  it('the script cache keeps 500 scripts EVAL added (least recently used out first) and every SCRIPT LOAD one', async () => {
    const client = new RawClient((mini as Started).port);
    const sha = (body: string): string => createHash('sha1').update(body).digest('hex');
    try {
      await client.send(['SCRIPT FLUSH']);
      const [loaded] = await client.send([['SCRIPT', 'LOAD', "return 'kept'"]]);
      await client.send(Array.from({ length: 600 }, (_, i) => e(`return ${i}`)));
      const [exists] = await client.send([
        ['SCRIPT', 'EXISTS', sha("return 'kept'"), sha('return 0'), sha('return 99'), sha('return 100'), sha('return 599')],
      ]);
      expect(show(loaded as Buffer)).toBe(`$40⏎${sha("return 'kept'")}⏎`);
      expect(show(exists as Buffer)).toBe('*5⏎:1⏎:0⏎:0⏎:1⏎:1⏎');
    } finally {
      client.close();
    }
  });
});

// A rate limiter as users write it: a sliding window in a sorted set.
const SLIDING_WINDOW = `
local key = KEYS[1]
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, 0, now - window)
local count = redis.call('ZCARD', key)
if count < limit then
  redis.call('ZADD', key, now, ARGV[4])
  redis.call('PEXPIRE', key, window)
  return {1, limit - count - 1}
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return {0, tonumber(oldest[2]) + window - now}
`;

describe('clients: ioredis defineCommand, node-redis defineScript', () => {
  const limiterRun = async (port: number): Promise<unknown[]> => {
    const ioredis = new Redis({ port, host: '127.0.0.1', lazyConnect: true });
    await ioredis.connect();
    ioredis.defineCommand('slidingWindow', { numberOfKeys: 1, lua: SLIDING_WINDOW });
    const results: unknown[] = [];
    try {
      await ioredis.flushall();
      await ioredis.script('FLUSH'); // the first call goes EVALSHA → NOSCRIPT → EVAL
      const call = ioredis as unknown as { slidingWindow(key: string, ...args: Array<string | number>): Promise<unknown> };
      for (let i = 0; i < 5; i++) results.push(await call.slidingWindow('rate:alice', 1000 + i * 10, 1000, 3, `req-${i}`));
      results.push(await call.slidingWindow('rate:alice', 2015, 1000, 3, 'req-late'));
      results.push(await ioredis.zcard('rate:alice'));
    } finally {
      ioredis.disconnect();
    }
    const client = createClient({
      socket: { port, host: '127.0.0.1' },
      scripts: {
        incrCapped: defineScript({
          NUMBER_OF_KEYS: 1,
          SCRIPT:
            "local v = redis.call('INCR', KEYS[1]) if v > tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) return tonumber(ARGV[1]) end return v",
          parseCommand(parser, key: string, cap: number) {
            parser.pushKey(key);
            parser.push(String(cap));
          },
          transformReply: (reply: unknown) => reply as number,
        }),
      },
    });
    await client.connect();
    try {
      await client.scriptFlush();
      for (let i = 0; i < 4; i++) results.push(await client.incrCapped('capped', 2));
    } finally {
      await client.close();
    }
    return results;
  };

  it('the same results from mini-redis and redis-server', async () => {
    const [expected, actual] = await Promise.all([limiterRun((real as Started).port), limiterRun((mini as Started).port)]);
    expect(actual).toEqual(expected);
    expect(actual).toEqual([[1, 2], [1, 1], [1, 0], [0, 970], [0, 960], [1, 1], 2, 1, 2, 2, 2]);
  });
});

describe('cmsgpack and redis.acl_check_cmd, as redis-server 7.0.15', () => {
  it('packs and unpacks as Redis’s lua_cmsgpack', async () => {
    await same([
      e(
        'local t = {} for _, v in ipairs({cmsgpack.pack(0.1), cmsgpack.pack(1.5), cmsgpack.pack(-1099511627776), cmsgpack.pack(3), cmsgpack.pack(-3), cmsgpack.pack(-200), cmsgpack.pack(70000), cmsgpack.pack(2^40)}) do t[#t+1] = v end return t',
      ),
      e("return cmsgpack.pack({1, 2, 'three', true, false}, 'x', string.rep('y', 40), string.rep('z', 300))"),
      e('return cmsgpack.pack({a = 1})'),
      e('return cmsgpack.pack({})'),
      e('local a = {} a[1] = a return cmsgpack.pack(a)'),
      e("return {cmsgpack.unpack(cmsgpack.pack(1, 'two', {3, 4}, -5, 2^40, 1.5))}"),
      e("local t = cmsgpack.unpack(cmsgpack.pack({k = 'v'})) return t.k"),
      e(
        "local p = cmsgpack.pack('a', 'b', 'c') local o1, v1 = cmsgpack.unpack_one(p) local o2, v2 = cmsgpack.unpack_one(p, o1) local o3, v3 = cmsgpack.unpack_one(p, o2) return {o1, v1, o2, v2, o3, v3}",
      ),
      e('local p = cmsgpack.pack(1, 2, 3) return {cmsgpack.unpack_limit(p, 2)}'),
      e('return cmsgpack.unpack(string.char(0xda, 0))'),
      e('return cmsgpack.unpack(string.char(0xc1))'),
      e('return cmsgpack.pack()'),
      e("return cmsgpack.unpack_one('x', -1)"),
      e('cmsgpack.pack = function() end'),
      e("return redis.acl_check_cmd('set', 'k', 'v')"),
      e("return redis.acl_check_cmd('nosuch')"),
      e('return redis.breakpoint()'),
      e('return redis.debug("x")'),
    ]);
  });
});

describe('cjson settings, as redis-server 7.0.15', () => {
  it('encode_max_depth, decode_max_depth, encode_invalid_numbers; numbers decoded print as Lua 5.1', async () => {
    await same([
      e('return table.concat(cjson.decode("[0.0, -5e3, -1, 0.3e-3, 1023.2, 0e10]"), " ")'),
      e('cjson.encode_max_depth(1) local ok, err = pcall(cjson.encode, {a = {1}}) cjson.encode_max_depth(1000) return {tostring(ok), err}'),
      e(
        `cjson.decode_max_depth(1) local ok, err = pcall(cjson.decode, '{"obj": {"array": [1,2,3,4]}}') cjson.decode_max_depth(1000) return {tostring(ok), err}`,
      ),
      e('cjson.encode_invalid_numbers(true) local r = cjson.encode({0/0}) cjson.encode_invalid_numbers(false) return r'),
      e('return {cjson.encode_max_depth(), cjson.decode_max_depth()}'),
    ]);
  });
});

describe('FUNCTION and FCALL, as redis-server 7.0.15', () => {
  const lib = (body: string, name = 'mylib'): string => `#!lua name=${name}\n${body}`;
  it('LOAD, FCALL, FCALL_RO, LIST, DELETE, FLUSH, STATS and their errors', async () => {
    await same([
      'FUNCTION FLUSH',
      ['FUNCTION', 'LOAD', lib("redis.register_function('hello', function(keys, args) return 'hi ' .. args[1] end)")],
      ['FCALL', 'hello', '0', 'you'],
      ['FUNCTION', 'LOAD', lib("redis.register_function('hello', function() return 1 end)")],
      [
        'FUNCTION',
        'LOAD',
        'REPLACE',
        lib(
          "redis.register_function('hello', function(keys, args) return redis.call('SET', keys[1], args[1]) end)\n" +
            "redis.register_function{function_name='peek', callback=function(keys) return redis.call('GET', keys[1]) end, flags={'no-writes'}, description='reads'}",
        ),
      ],
      ['FCALL', 'hello', '1', 'k', 'v'],
      ['FCALL_RO', 'peek', '1', 'k'],
      ['FCALL_RO', 'hello', '1', 'k', 'w'],
      ['FCALL', 'nosuch', '0'],
      ['FCALL', 'hello', 'x'],
      ['FCALL', 'hello', '5', 'k'],
      ['FCALL', 'hello', '-1'],
      [
        'FUNCTION',
        'LOAD',
        lib(
          "redis.register_function{function_name='only', callback=function() return 1 end, flags={'no-writes', 'allow-oom'}, description='one'}",
          'single',
        ),
      ],
      'FUNCTION LIST LIBRARYNAME single',
      'FUNCTION LIST WITHCODE LIBRARYNAME sing*',
      'FUNCTION LIST LIBRARYNAME nope*',
      'FUNCTION LIST LIBRARYNAME',
      'FUNCTION LIST BOGUS',
      ['FUNCTION', 'LOAD', lib("redis.register_function('peek', function() return 2 end)", 'other')],
      ['FUNCTION', 'LOAD', 'return 1'],
      ['FUNCTION', 'LOAD', '#!lua\nreturn 1'],
      ['FUNCTION', 'LOAD', '#!python name=x\nreturn 1'],
      ['FUNCTION', 'LOAD', '#!lua name=x foo=bar\nreturn 1'],
      ['FUNCTION', 'LOAD', '#!lua name=bad-name\nreturn 1'],
      ['FUNCTION', 'LOAD', lib('return 1', 'empty')],
      ['FUNCTION', 'LOAD', lib('return +', 'broken')],
      ['FUNCTION', 'LOAD', lib("redis.call('PING')", 'calls')],
      ['FUNCTION', 'LOAD', lib("redis.register_function('f', 'notafunction')", 'wrong')],
      ['FUNCTION', 'LOAD', lib("redis.register_function{function_name='f', callback=function() end, flags={'bogus'}}", 'flags')],
      ['FUNCTION', 'LOAD', 'BOGUS', lib("redis.register_function('x', function() end)", 'opt')],
      ['FUNCTION', 'LOAD', lib("redis.register_function('boom', function() error('bang') end)", 'errs')],
      ['FCALL', 'boom', '0'],
      'FUNCTION STATS',
      'FUNCTION DELETE nosuch',
      'FUNCTION DELETE errs',
      ['FCALL', 'boom', '0'],
      'FUNCTION KILL',
      'FUNCTION FLUSH',
      'FUNCTION LIST',
      ['FCALL', 'hello', '0'],
    ]);
  });

  it('DUMP and RESTORE (APPEND, REPLACE, FLUSH) and their errors; each server restores the other’s payload', async () => {
    const code = lib(
      "redis.register_function('hello', function(keys, args) return 'hello ' .. (args[1] or 'you') end)\n" +
        "redis.register_function{function_name='peek', callback=function(keys) return redis.call('GET', keys[1]) end, flags={'no-writes'}}",
    );
    // The payload as redis-server makes it (the same bytes are expected from mini-redis below).
    const client = new RawClient((real as Started).port);
    const [dumped] = await client.send(['FUNCTION FLUSH', ['FUNCTION', 'LOAD', code], 'FUNCTION DUMP']).then((replies) => replies.slice(2));
    await client.send(['FUNCTION FLUSH']);
    client.close();
    const raw = dumped as Buffer;
    const payload = raw.subarray(raw.indexOf('\r\n') + 2, raw.length - 2);
    const broken = Buffer.from(payload);
    broken[0] = 0; // the checksum no longer matches
    const body = Buffer.from([0x00, 0x01, 0x61, 10, 0]); // a string key's type, not a function, then RDB version 10
    const notFunction = Buffer.concat([body, new Crc64().update(body).digest()]);
    await same([
      'FUNCTION FLUSH',
      ['FUNCTION', 'LOAD', code],
      'FUNCTION DUMP',
      ['CONFIG', 'SET', 'rdbcompression', 'no'],
      'FUNCTION DUMP',
      ['CONFIG', 'SET', 'rdbcompression', 'yes'],
      ['FUNCTION', 'RESTORE', payload],
      ['FUNCTION', 'RESTORE', payload, 'APPEND'],
      ['FUNCTION', 'RESTORE', payload, 'REPLACE'],
      ['FCALL', 'hello', '0', 'again'],
      ['FUNCTION', 'RESTORE', payload, 'BOGUS'],
      ['FUNCTION', 'RESTORE', payload, 'APPEND', 'x'],
      ['FUNCTION', 'RESTORE', broken],
      ['FUNCTION', 'RESTORE', 'short'],
      ['FUNCTION', 'RESTORE', notFunction],
      'FUNCTION FLUSH',
      ['FUNCTION', 'LOAD', lib("redis.register_function('hello', function() return 2 end)", 'other')],
      ['FUNCTION', 'RESTORE', payload],
      ['FUNCTION', 'RESTORE', payload, 'REPLACE'],
      'FUNCTION LIST LIBRARYNAME other',
      ['FUNCTION', 'RESTORE', payload, 'FLUSH'],
      'FUNCTION STATS', // one library, two functions (FUNCTION LIST's order of them is Redis's hash order)
      ['FCALL', 'hello', '0'],
      ['FCALL_RO', 'peek', '1', 'k'],
      'FUNCTION FLUSH',
      'FUNCTION DUMP',
      'FUNCTION RESTORE',
    ]);
  });
});
