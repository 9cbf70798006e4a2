import { once } from 'node:events';
import { connect } from 'node:net';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { askEach, infoField, RawClient, redisAndMiniForFile, show, spawnRedisServer, tempDirs, until } from './support.js';

// Replication, master side: a real redis-server 7.0.15 started with --replicaof mini-redis syncs
// (PSYNC, an RDB of the dataset) and then follows every write; INFO replication, ROLE and WAIT see
// it; the replica output buffer limit drops a replica that does not read; bad input gets Redis's
// errors, byte for byte, and the server lives on.

const servers = redisAndMiniForFile();
const tempDir = tempDirs('mini-redis-replica-');

describe('a real redis-server replica', () => {
  it('syncs the dataset, then follows writes in every database; INFO replication, ROLE and WAIT see it', async () => {
    const master = new Redis({ port: servers.mini.port, host: '127.0.0.1', lazyConnect: true });
    await master.connect();
    await master.set('before', 'sync');
    await master.hset('h', 'f', 'v');
    await master.zadd('z', '1', 'a', '2', 'b');
    await master.rpush('l', 'x', 'y');
    await master.set('ttl', 'v', 'EX', 1000);

    const replicaServer = await spawnRedisServer(['--replicaof', '127.0.0.1', String(servers.mini.port), '--dir', tempDir()]);
    const { port } = replicaServer;
    const replica = new Redis({ port, host: '127.0.0.1' });
    try {
      await until(async () => infoField(await replica.info('replication'), 'master_link_status') === 'up', 'the replica to sync');
      expect(await replica.get('before')).toBe('sync');
      expect(await replica.hgetall('h')).toEqual({ f: 'v' });
      expect(await replica.zrange('z', '0', '-1', 'WITHSCORES')).toEqual(['a', '1', 'b', '2']);
      expect(await replica.lrange('l', 0, -1)).toEqual(['x', 'y']);
      expect(await replica.ttl('ttl')).toBeGreaterThan(900);

      // Writes after the sync, in another database, through a transaction, with TTLs.
      await master.set('after', '1', 'EX', 500);
      await master.multi().incr('n').incr('n').exec();
      await master.select(3);
      await master.lpush('in3', 'a', 'b');
      await master.select(0);
      await master.del('before');
      expect(await master.wait(1, 5000)).toBe(1);
      await until(async () => (await replica.exists('before')) === 0, 'the DEL to reach the replica');
      expect(await replica.get('n')).toBe('2');
      expect(await replica.ttl('after')).toBeGreaterThan(400);
      await replica.select(3);
      expect(await replica.lrange('in3', 0, -1)).toEqual(['b', 'a']);

      const info = await master.info('replication');
      expect(infoField(info, 'role')).toBe('master');
      expect(infoField(info, 'connected_slaves')).toBe('1');
      expect(infoField(info, 'slave0')).toMatch(new RegExp(`^ip=127\\.0\\.0\\.1,port=${port},state=online,offset=\\d+,lag=\\d+$`));
      const role = (await master.call('ROLE')) as [string, number, Array<[string, string, string]>];
      expect(role[0]).toBe('master');
      expect(role[2][0]?.slice(0, 2)).toEqual(['127.0.0.1', String(port)]);
      expect(Number(infoField(info, 'master_repl_offset'))).toBe(role[1]);
    } finally {
      replica.disconnect();
      master.disconnect();
      await replicaServer.stop('SIGKILL');
    }
  });

  it('gets the function libraries with the full sync (FUNCTION LOAD before it connected), as from Redis', async () => {
    const code =
      "#!lua name=synclib\nredis.register_function{function_name='syncf', callback=function() return 'from the master' end, flags={'no-writes'}}";
    const master = new Redis({ port: servers.mini.port, host: '127.0.0.1' });
    const replicaServer = await spawnRedisServer(['--dir', tempDir()]);
    const replica = new Redis({ port: replicaServer.port, host: '127.0.0.1' });
    try {
      await master.call('FUNCTION', 'FLUSH');
      await master.call('FUNCTION', 'LOAD', code);
      await replica.call('REPLICAOF', '127.0.0.1', String(servers.mini.port));
      await until(async () => infoField(await replica.info('replication'), 'master_link_status') === 'up', 'the replica to sync');
      // Loaded from the RDB (opcode FUNCTION2): listed, and callable read-only on the replica.
      expect(JSON.stringify(await replica.call('FUNCTION', 'LIST'))).toContain('"synclib"');
      expect(await replica.call('FCALL_RO', 'syncf', '0')).toBe('from the master');
    } finally {
      await master.call('FUNCTION', 'FLUSH').catch(() => undefined);
      replica.disconnect();
      master.disconnect();
      await replicaServer.stop('SIGKILL');
    }
  });
});

describe('PSYNC', () => {
  /** Connect, send `command`, collect bytes until `done(bytes)` holds. */
  async function collect(
    command: string,
    done: (bytes: Buffer) => boolean,
  ): Promise<{ socket: ReturnType<typeof connect>; bytes: () => Buffer }> {
    const socket = connect(servers.mini.port, '127.0.0.1');
    let bytes = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      bytes = Buffer.concat([bytes, chunk]);
    });
    socket.write(command);
    await until(() => done(bytes), `an answer to ${command.trim()}`);
    return { socket, bytes: () => bytes };
  }

  it('a replica that reconnects with its replid and offset continues from the backlog (+CONTINUE), else a full resync', async () => {
    const client = new RawClient(servers.mini.port);
    try {
      await client.send([['CONFIG', 'SET', 'repl-ping-replica-period', '3600']]);
      // Full resync: +FULLRESYNC <replid> <offset>, then $<len> and the RDB.
      const first = await collect('PSYNC ? -1\r\n', (bytes) => {
        const match = /^\+FULLRESYNC [0-9a-f]{40} \d+\r\n\$(\d+)\r\n/.exec(bytes.toString('latin1'));
        return match !== null && bytes.length >= match[0].length + Number(match[1]);
      });
      const head = /^\+FULLRESYNC ([0-9a-f]{40}) (\d+)\r\n\$(\d+)\r\n/.exec(first.bytes().toString('latin1')) as RegExpExecArray;
      const [replid, start, rdbLength] = [head[1] as string, Number(head[2]), Number(head[3])];
      const streamStart = head[0].length + rdbLength;
      await client.send([['SET', 'psync-a', '1']]);
      await until(() => first.bytes().includes('psync-a'), 'the first write');
      const received = first.bytes().length - streamStart;
      first.socket.destroy();
      // Written while the replica is away: in the backlog.
      await client.send([['SET', 'psync-b', '2']]);
      const offset = Number(infoField((await client.send(['INFO replication']))[0]?.toString() ?? '', 'master_repl_offset'));
      const again = await collect(`PSYNC ${replid} ${start + received + 1}\r\n`, (bytes) => bytes.includes('psync-b'));
      expect(show(again.bytes())).toBe(`+CONTINUE ${replid}⏎*3⏎$3⏎SET⏎$7⏎psync-b⏎$1⏎2⏎`);
      expect(start + received + again.bytes().length - `+CONTINUE ${replid}\r\n`.length).toBe(offset);
      again.socket.destroy();
      // Another replid, or an offset the backlog no longer (or never) held: a full resync.
      for (const psync of [`PSYNC ${'0'.repeat(40)} ${offset}\r\n`, `PSYNC ${replid} ${offset + 1000}\r\n`]) {
        const other = await collect(psync, (bytes) => bytes.includes('\r\n'));
        expect(other.bytes().toString('latin1')).toMatch(new RegExp(`^\\+FULLRESYNC ${replid} ${offset}\r\n`));
        other.socket.destroy();
      }
    } finally {
      await client.send([['CONFIG', 'SET', 'repl-ping-replica-period', '10'], 'DEL psync-a psync-b']);
      client.close();
    }
  });
});

describe('the replica output buffer limit', () => {
  it('drops a replica that does not read once its output passes the hard limit, as Redis', async () => {
    const client = new RawClient(servers.mini.port);
    try {
      await client.send([['CONFIG', 'SET', 'client-output-buffer-limit', 'replica 1mb 0 0']]);
      // A replica that never reads.
      const stalled = connect(servers.mini.port, '127.0.0.1');
      stalled.write('SYNC\r\n');
      stalled.pause();
      const closed = once(stalled, 'close');
      await until(
        async () => infoField((await client.send(['INFO replication']))[0]?.toString() ?? '', 'connected_slaves') === '1',
        'the replica',
      );
      const big = Buffer.alloc(256 * 1024, 'x');
      for (let i = 0; i < 200 && !stalled.destroyed; i++) {
        await client.send([['SET', `big${i % 4}`, big]]);
        const info = (await client.send(['INFO replication']))[0]?.toString() ?? '';
        if (infoField(info, 'connected_slaves') === '0') break;
      }
      stalled.resume(); // read what was sent, then see the close
      await closed;
      const info = (await client.send(['INFO replication']))[0]?.toString() ?? '';
      expect(infoField(info, 'connected_slaves')).toBe('0');
      expect(show((await client.send(['PING']))[0] as Buffer)).toBe('+PONG⏎');
    } finally {
      await client.send([['CONFIG', 'SET', 'client-output-buffer-limit', 'replica 256mb 64mb 60'], 'DEL big0 big1 big2 big3']);
      client.close();
    }
  });
});

describe('bad input gets Redis’s errors over a raw socket, and the server lives on', () => {
  const cases: Array<[string, string[]]> = [
    ['SYNC inside MULTI', ['MULTI', 'SYNC', 'EXEC', 'PING']],
    ['PSYNC with a garbage offset, or too few arguments', ['PSYNC ? abc', 'PSYNC', 'PSYNC ?', 'PING']],
    ['WAIT with bad arguments', ['WAIT x 0', 'WAIT 0 -1', 'WAIT 0 abc', 'WAIT 1', 'WAIT 0 0', 'PING']],
    [
      'REPLCONF with bad arguments',
      ['REPLCONF a', 'REPLCONF foo bar', 'REPLCONF listening-port x', 'REPLCONF listening-port 1234', 'PING'],
    ],
    [
      'CONFIG SET of the replication and AOF parameters with bad values',
      [
        'CONFIG SET appendonly maybe',
        'CONFIG SET appendfsync sometimes',
        'CONFIG SET repl-ping-replica-period 0',
        'CONFIG SET lazyfree-lazy-expire perhaps',
        'CONFIG SET client-output-buffer-limit bogus',
        'CONFIG SET min-replicas-to-write -1',
        'CONFIG SET replica-read-only maybe',
        'PING',
      ],
    ],
    [
      'REPLICAOF: a bad port; as a replica whose master is unreachable, writes get READONLY; NO ONE ends it',
      [
        'REPLICAOF localhost abc',
        'REPLICAOF localhost 70000',
        'REPLICAOF 127.0.0.1 1',
        'REPLICAOF 127.0.0.1 1',
        'SET x 1',
        'CONFIG GET replicaof',
        'REPLICAOF NO ONE',
        'SET x 1',
        'CONFIG SET min-replicas-to-write 1',
        'SET y 1',
        'CONFIG SET min-replicas-to-write 0',
        'DEL x',
      ],
    ],
    [
      'a replica refuses a write while MULTI queues it (READONLY), and EXEC aborts; stale reads with replica-serve-stale-data no',
      [
        'REPLICAOF 127.0.0.1 1',
        'MULTI',
        'SET x 1',
        'GET x',
        'EXEC',
        'CONFIG SET replica-serve-stale-data no',
        'GET x',
        'PING',
        'CONFIG SET replica-serve-stale-data yes',
        'GET x',
        'REPLICAOF NO ONE',
        'MULTI',
        'SET x 1',
        'EXEC',
        'DEL x',
      ],
    ],
  ];
  for (const [name, commands] of cases) {
    it(name, async () => {
      const answers = await askEach([servers.redis.port, servers.mini.port], commands);
      expect(answers[1]).toEqual(answers[0]);
    });
  }

  it('EXEC after min-replicas-to-write or REPLICAOF changed under a transaction: EXECABORT with NOREPLICAS/MASTERDOWN', async () => {
    const answers: string[][] = [];
    for (const port of [servers.redis.port, servers.mini.port]) {
      const [a, b] = [new RawClient(port), new RawClient(port)];
      const seen: string[] = [];
      const run = async (client: RawClient, command: string): Promise<void> => {
        seen.push(...(await client.send([command])).map(show));
      };
      try {
        for (const [client, command] of [
          [a, 'SET xx 1'],
          [a, 'MULTI'],
          [a, 'INCR xx'],
          [b, 'CONFIG SET min-replicas-to-write 2'],
          [a, 'EXEC'],
          [a, 'GET xx'],
          [b, 'CONFIG SET min-replicas-to-write 0'],
          [a, 'CONFIG SET replica-serve-stale-data no'],
          [a, 'MULTI'],
          [a, 'GET xx'],
          [b, 'REPLICAOF localhsot 0'],
          [a, 'EXEC'],
          [b, 'REPLICAOF NO ONE'],
          [a, 'MULTI'],
          [a, 'PING'],
          [b, 'REPLICAOF localhsot 0'],
          [a, 'EXEC'],
          [a, 'MULTI'],
          [b, 'REPLICAOF NO ONE'],
          [a, 'GET xx'],
          [a, 'EXEC'],
          [a, 'CONFIG SET replica-serve-stale-data yes'],
          [a, 'DEL xx'],
        ] as const) {
          await run(client, command);
        }
      } finally {
        a.close();
        b.close();
      }
      answers.push(seen);
    }
    expect(answers[1]).toEqual(answers[0]);
  });

  it('ROLE with no replica', async () => {
    const client = new RawClient(servers.mini.port);
    try {
      expect((await client.send(['ROLE'])).map(show)).toEqual([`*3⏎$6⏎master⏎:${await offset()}⏎*0⏎`]);
    } finally {
      client.close();
    }
  });
});

async function offset(): Promise<number> {
  const client = new RawClient(servers.mini.port);
  try {
    return Number(infoField((await client.send(['INFO replication']))[0]?.toString() ?? '', 'master_repl_offset'));
  } finally {
    client.close();
  }
}
