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
