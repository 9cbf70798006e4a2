import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { miniRedisForFile } from './support.js';

// The rest of the client matrix (ioredis, node-redis, redis-py, redis-cli -3/--stat/monitor are in
// clients.test.ts and differential.test.ts): Ruby's redis gem (Debian's ruby-redis) and
// redis-cli --pipe, the mass-insertion mode that reads raw RESP from stdin.

const server = miniRedisForFile();
const run = promisify(execFile);
let redis: Redis;

beforeAll(async () => {
  redis = new Redis({ host: '127.0.0.1', port: server.port, lazyConnect: true });
  await redis.connect();
});
afterAll(() => redis.disconnect());

describe('ruby-redis (Debian ruby-redis, the redis gem 4.x)', () => {
  it('strings, lists, hashes, sorted sets, pipelines, MULTI and pub/sub as with Redis', async () => {
    expect(existsSync('/usr/bin/ruby'), 'ruby not found: apt-get install ruby-redis (bash .ci/run does)').toBe(true);
    const script = `
      require 'redis'
      r = Redis.new(host: '127.0.0.1', port: Integer(ARGV[0]))
      out = []
      out << r.set('rb:s', 'v')
      out << r.get('rb:s')
      out << r.incrby('rb:n', 5)
      out << r.rpush('rb:l', %w[a b c])
      out << r.lrange('rb:l', 0, -1).join(',')
      out << r.hset('rb:h', 'f', '1')
      out << r.hgetall('rb:h').to_a.flatten.join(',')
      out << r.zadd('rb:z', [[2, 'two'], [1, 'one']])
      out << r.zrange('rb:z', 0, -1, with_scores: true).map { |m, s| "#{m}=#{s}" }.join(',')
      out << r.pipelined { |p| p.set('rb:p', '1'); p.incr('rb:p') }.join(',')
      out << r.multi { |m| m.incr('rb:m'); m.incr('rb:m') }.join(',')
      begin
        r.lpush('rb:s', 'x')
      rescue Redis::CommandError => e
        out << e.message
      end
      got = nil
      sub = Redis.new(host: '127.0.0.1', port: Integer(ARGV[0]))
      t = Thread.new do
        sub.subscribe('rb:ch') do |on|
          on.subscribe { r.publish('rb:ch', 'hi') }
          on.message { |_c, msg| got = msg; sub.unsubscribe }
        end
      end
      t.join(10)
      out << got
      out << r.info('server')['redis_version']
      puts out.map(&:to_s).join("\\n")
    `;
    const { stdout } = await run('/usr/bin/ruby', ['-e', script, String(server.port)], { timeout: 30_000 });
    expect(stdout.trim().split('\n')).toEqual([
      'OK',
      'v',
      '5',
      '3',
      'a,b,c',
      '1', // HSET: the number of fields added
      'f,1',
      '2',
      'one=1.0,two=2.0',
      'OK,2',
      '1,2',
      'WRONGTYPE Operation against a key holding the wrong kind of value',
      'hi',
      '7.0.15',
    ]);
  });
});

describe('redis-cli --pipe', () => {
  it('mass-inserts 20,000 commands of raw RESP and reports the replies and errors', async () => {
    const lines: string[] = [];
    for (let i = 0; i < 20_000; i++) {
      const key = `pipe:${i}`;
      const value = `v${i}`;
      lines.push(`*3\r\n$3\r\nSET\r\n$${key.length}\r\n${key}\r\n$${value.length}\r\n${value}\r\n`);
    }
    lines.push('*2\r\n$5\r\nLPUSH\r\n$6\r\npipe:0\r\n'); // wrong arity: one error among the replies
    const cli = spawn('/usr/bin/redis-cli', ['-h', '127.0.0.1', '-p', String(server.port), '--pipe'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    cli.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    cli.stderr.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    cli.stdin.end(lines.join(''));
    const [code] = (await once(cli, 'exit')) as [number];
    // redis-cli ends the stream with an ECHO of a random marker and waits for it (redis-cli.c, pipeMode).
    expect(output).toContain("ERR wrong number of arguments for 'lpush' command");
    expect(output).toContain('errors: 1, replies: 20001');
    expect(code).toBe(1); // redis-cli --pipe exits 1 when any reply was an error
    expect(await redis.dbsize()).toBeGreaterThanOrEqual(20_000);
    expect(await redis.get('pipe:19999')).toBe('v19999');
  });
});
