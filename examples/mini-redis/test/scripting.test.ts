import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
