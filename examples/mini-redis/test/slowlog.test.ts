import { describe, expect, it } from 'vitest';
import { type CommandLine, onEach, parseReply, RawClient, redisAndMiniForFile, show } from './support.js';

// SLOWLOG against redis-server 7.0.15 (slowlog.c): with slowlog-log-slower-than 0 every command is an entry.
// The entries' ids, arguments (shortened as Redis shortens them), client name and address are compared; the
// timestamp and the duration are the servers' own (checked for plausibility).

const servers = redisAndMiniForFile();

type Entry = [id: number, time: number, duration: number, args: string[], addr: string, name: string];

/** A script on a fresh connection; its replies as text, and the SLOWLOG GET -1 that ends it, parsed. */
async function logged(port: number, script: readonly CommandLine[]): Promise<{ replies: string[]; entries: Entry[]; port: number }> {
  const client = new RawClient(port);
  try {
    await client.send(['SLOWLOG RESET', 'CONFIG SET slowlog-log-slower-than 0', 'CONFIG SET slowlog-max-len 128', 'SLOWLOG RESET']);
    const replies = (await client.send(script)).map(show);
    const [raw] = await client.send(['SLOWLOG GET -1']);
    const entries = parseReply(raw as Buffer) as Array<[number, number, number, Buffer[], Buffer, Buffer]>;
    return {
      replies,
      entries: entries.map(([id, time, duration, args, addr, name]) => [id, time, duration, args.map(String), String(addr), String(name)]),
      port: client.socket.localPort as number,
    };
  } finally {
    await client.send(['CONFIG SET slowlog-log-slower-than 10000']);
    client.close();
  }
}

/** What both servers must agree on: the replies, and per entry its arguments, name and address (the port is each run's own). */
function comparable(run: { replies: string[]; entries: Entry[]; port: number }): {
  replies: string[];
  entries: Array<[args: string[], addr: string, name: string]>;
} {
  const now = Math.floor(Date.now() / 1000);
  for (const [, time, duration] of run.entries) {
    expect(Math.abs(time - now)).toBeLessThan(60);
    expect(duration).toBeGreaterThanOrEqual(0);
  }
  const ids = run.entries.map(([id]) => id);
  // Newest first, consecutive ids.
  expect(ids).toEqual(ids.map((_, i) => (ids[0] as number) - i));
  return {
    replies: run.replies,
    entries: run.entries.map(([, , , args, addr, name]): [string[], string, string] => [args, addr.replace(`:${run.port}`, ':PORT'), name]),
  };
}

describe('SLOWLOG, as redis-server 7.0.15', () => {
  it('logs each command with its arguments, client address and name; not EXEC (its commands instead); newest first', async () => {
    const script: CommandLine[] = [
      'SET k v',
      'CLIENT SETNAME slowpoke',
      'GET k',
      'MULTI',
      'INCR n',
      'EXEC',
      ['SET', 'long', 'x'.repeat(300)],
      ['RPUSH', 'list', ...Array.from({ length: 40 }, (_, i) => `e${i}`)],
      'SLOWLOG LEN',
    ];
    const [redis, mini] = await onEach([servers.redis.port, servers.mini.port], async (port) => comparable(await logged(port, script)));
    expect(mini).toEqual(redis);
    const args = (redis?.entries ?? []).map(([a]) => a.join(' '));
    expect(args).toContain(`SET long ${'x'.repeat(128)}... (172 more bytes)`);
    expect(args).not.toContain('EXEC');
    // 42 arguments: 31 kept, the last says how many more.
    expect(args).toContain(`RPUSH list ${Array.from({ length: 29 }, (_, i) => `e${i}`).join(' ')} ... (11 more arguments)`);
    expect(redis?.entries.find(([a]) => a[0] === 'GET')?.[2]).toBe('slowpoke');
  });

  it('keeps slowlog-max-len entries; LEN, RESET, GET with a count; errors and HELP in Redis’s words', async () => {
    const script: CommandLine[] = [
      'CONFIG SET slowlog-max-len 3',
      'PING',
      'ECHO a',
      'ECHO b',
      'SLOWLOG LEN',
      'SLOWLOG GET 1 2',
      'SLOWLOG GET x',
      'SLOWLOG GET -2',
      'SLOWLOG LEN 1',
      'SLOWLOG FOO',
      'SLOWLOG',
      'CONFIG SET slowlog-log-slower-than -2',
      'CONFIG SET slowlog-max-len -1',
      'CONFIG GET slowlog-max-len',
      'SLOWLOG HELP',
    ];
    const [redis, mini] = await onEach([servers.redis.port, servers.mini.port], async (port) => comparable(await logged(port, script)));
    expect(mini).toEqual(redis);
    expect(redis?.entries).toHaveLength(3);
  });

  it('is off with a negative threshold: nothing logged', async () => {
    const [redis, mini] = await onEach([servers.redis.port, servers.mini.port], async (port) => {
      const client = new RawClient(port);
      try {
        await client.send(['CONFIG SET slowlog-log-slower-than -1', 'SLOWLOG RESET', 'SET a b', 'GET a']);
        return (await client.send(['SLOWLOG LEN', 'SLOWLOG GET'])).map(show);
      } finally {
        await client.send(['CONFIG SET slowlog-log-slower-than 10000']);
        client.close();
      }
    });
    expect(mini).toEqual(redis);
    expect(redis).toEqual([':0⏎', '*0⏎']);
  });
});
