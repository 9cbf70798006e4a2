import { describe, expect, it } from 'vitest';
import { RawClient, redisAndMiniForFile, show, until } from './support.js';

// What a write held by CLIENT PAUSE WRITE looks like, against redis-server 7.0.15: its client counts
// in INFO's blocked_clients while it waits (BLOCKED_POSTPONE), and when the pause ends the command is
// processed again from the start (processCommand), so the checks see the server as it is then.

const servers = redisAndMiniForFile();

describe("CLIENT PAUSE and INFO's blocked_clients, as redis-server 7.0.15", () => {
  it('a client whose write the pause holds counts as blocked, a reader does not; none once the pause ended', async () => {
    const blockedClients = async (port: number): Promise<string[]> => {
      const observer = new RawClient(port);
      const writer = new RawClient(port);
      const reader = new RawClient(port);
      const counts: string[] = [];
      const count = async (): Promise<string> =>
        /blocked_clients:\d+/.exec(show((await observer.send(['INFO clients']))[0] as Buffer))?.[0] ?? '';
      try {
        counts.push(await count());
        await observer.send(['CLIENT PAUSE 60000 WRITE']);
        const held = writer.send(['SET paused-key v']);
        // The reader's GET runs at once (WRITE holds writes only); the writer's SET has arrived before it answers.
        await reader.send(['GET paused-key']);
        await until(async () => (await count()) !== counts[0], 'the held write counted', 5000).catch(() => undefined);
        counts.push(await count());
        await observer.send(['CLIENT UNPAUSE']);
        counts.push(...(await held).map((reply) => show(reply)));
        counts.push(await count());
        return counts;
      } finally {
        for (const client of [observer, writer, reader]) client.close();
      }
    };
    const redis = await blockedClients(servers.redis.port);
    expect(redis).toEqual(['blocked_clients:0', 'blocked_clients:1', '+OK⏎', 'blocked_clients:0']);
    expect(await blockedClients(servers.mini.port)).toEqual(redis);
  });
});

describe('a write CLIENT PAUSE held, checked again when the pause ends, as redis-server 7.0.15', () => {
  it('maxmemory lowered during the pause: the held SET gets -OOM once it ends (processCommand runs again)', async () => {
    const replies = async (port: number): Promise<string[]> => {
      const observer = new RawClient(port);
      const writer = new RawClient(port);
      const seen: string[] = [];
      try {
        await observer.send(['CONFIG SET maxmemory-policy noeviction', 'CLIENT PAUSE 60000 WRITE']);
        const held = writer.send(['SET oom-key v', 'GET oom-key']);
        await until(async () => /blocked_clients:1\r/.test(String((await observer.send(['INFO clients']))[0])), 'the SET held', 5000);
        seen.push(...(await observer.send(['CONFIG SET maxmemory 1', 'CLIENT UNPAUSE'])).map((reply) => show(reply)));
        seen.push(...(await held).map((reply) => show(reply)));
        return seen;
      } finally {
        await observer.send(['CONFIG SET maxmemory 0']);
        for (const client of [observer, writer]) client.close();
      }
    };
    const redis = await replies(servers.redis.port);
    expect(redis).toEqual(['+OK⏎', '+OK⏎', "-OOM command not allowed when used memory > 'maxmemory'.⏎", '$-1⏎']);
    expect(await replies(servers.mini.port)).toEqual(redis);
  });
});

describe('scripts and functions under CLIENT PAUSE WRITE, as redis-server 7.0.15', () => {
  it('holds those that may write (no shebang, a shebang without no-writes, an unknown SHA or function), runs the others', async () => {
    const library = [
      '#!lua name=pauselib',
      "redis.register_function{function_name='pause_ro', callback=function() return 'ro' end, flags={'no-writes'}}",
      "redis.register_function('pause_rw', function() return 'rw' end)",
    ].join('\n');
    const calls: ReadonlyArray<readonly string[]> = [
      ['EVAL', 'return 1', '0'],
      ['EVAL', '#!lua flags=no-writes\nreturn 2', '0'],
      ['EVAL', '#!lua\nreturn 3', '0'],
      ['EVAL_RO', 'return 4', '0'],
      ['EVALSHA', 'ffffffffffffffffffffffffffffffffffffffff', '0'],
      ['EVALSHA_RO', 'ffffffffffffffffffffffffffffffffffffffff', '0'],
      ['FCALL', 'pause_rw', '0'],
      ['FCALL', 'pause_ro', '0'],
      ['FCALL_RO', 'pause_ro', '0'],
      ['FCALL', 'no_such_function', '0'],
    ];
    const observe = async (port: number): Promise<string[]> => {
      const observer = new RawClient(port);
      const callers = calls.map(() => new RawClient(port));
      const seen: string[] = [];
      try {
        await observer.send([['FUNCTION', 'LOAD', 'REPLACE', library], 'CLIENT PAUSE 60000 WRITE']);
        const answered = calls.map(() => false);
        const replies = calls.map((call, i) =>
          (callers[i] as RawClient).send([call]).then((reply) => {
            answered[i] = true;
            return reply;
          }),
        );
        await new Promise((resolve) => setTimeout(resolve, 500));
        seen.push(answered.map((done) => (done ? 'ran' : 'held')).join(' '));
        await observer.send(['CLIENT UNPAUSE']);
        for (const reply of await Promise.all(replies)) seen.push(show(reply[0] as Buffer));
        return seen;
      } finally {
        await observer.send(['CLIENT UNPAUSE', 'FUNCTION DELETE pauselib']);
        for (const client of [observer, ...callers]) client.close();
      }
    };
    const redis = await observe(servers.redis.port);
    expect(redis[0]).toBe('held ran held ran held ran held ran ran held');
    expect(await observe(servers.mini.port)).toEqual(redis);
  });
});
