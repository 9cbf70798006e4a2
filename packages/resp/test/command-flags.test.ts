import type { Socket } from 'node:net';
import { PortService } from '@portbind/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { portOf, rawConnect, readUntil } from '../../../test/support/net.js';
import { OK, type RespAdapter, respAdapter } from '../src/index.js';
import { type Server, startRedis } from './real-redis.js';

// Flags that change dispatch, over raw sockets: `no_multi` (Redis's CMD_NO_MULTI: refused inside
// MULTI, compared byte for byte with a real redis-server 7.0.15's SAVE) and `skip_monitor` / `admin`
// (not shown to MONITOR), on commands and on subcommands.

let real: Server;
let service: PortService;
let resp: RespAdapter;
let port: number;
const sockets: Socket[] = [];
const store = new Map<string, string>();
let saves = 0;

beforeAll(async () => {
  real = await startRedis();
  resp = respAdapter();
  resp.command('set', { arity: 3, flags: ['write', 'denyoom'], keys: [1, 1, 1] }, (_client, [, key, value]) => {
    store.set(String(key), String(value));
    return OK;
  });
  resp.command('exists', { arity: -2, flags: ['readonly', 'fast'], keys: [1, -1, 1] }, (_client, argv) =>
    argv.slice(1).reduce((count, key) => count + (store.has(String(key)) ? 1 : 0), 0),
  );
  // SAVE as Redis 7.0.15 declares it.
  resp.command('save', { arity: 1, flags: ['admin', 'noscript', 'no_async_loading', 'no_multi'], group: 'server' }, () => {
    saves++;
    return OK;
  });
  // A script runner prints itself to MONITOR (as Redis's EVAL): skip_monitor keeps dispatch from printing it again.
  resp.command('myeval', { arity: -2, flags: ['noscript', 'skip_monitor'] }, () => OK);
  resp.command('secret', { arity: 1, flags: ['admin'] }, () => OK);
  resp.command(
    'ctl',
    {
      arity: -2,
      subcommands: {
        show: { arity: 2, flags: ['loading', 'stale'] },
        reveal: { arity: 2, flags: ['admin'] },
        quiet: ['skip_monitor'],
      },
    },
    () => OK,
  );
  service = new PortService({ env: {} });
  const binding = service.bind(resp, { port: 0, host: '127.0.0.1' });
  await service.start();
  port = portOf(binding);
});

afterAll(async () => {
  for (const socket of sockets) socket.destroy();
  await service.stop();
  await real.stop();
});

function encode(args: readonly string[]): string {
  return `*${args.length}\r\n${args.map((arg) => `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`).join('')}`;
}

async function connect(to: number): Promise<Socket> {
  const socket = await rawConnect(to);
  sockets.push(socket);
  return socket;
}

/** Send the commands pipelined and read one reply line each (simple replies; or until `until` matches). */
async function send(to: number, commands: ReadonlyArray<readonly string[]>, until?: RegExp): Promise<string[]> {
  const socket = await connect(to);
  socket.write(commands.map(encode).join(''));
  const text = await readUntil(socket, until ?? new RegExp(`^(?:[^\\n]*\\n){${commands.length}}$`));
  return text.split('\r\n').slice(0, commands.length);
}

describe('no_multi', () => {
  it("is refused inside MULTI with Redis's error, flags the transaction (EXECABORT) and never runs, as redis-server's SAVE", async () => {
    const commands = [['MULTI'], ['SET', 'nomulti', '1'], ['SAVE'], ['EXEC'], ['EXISTS', 'nomulti'], ['PING']];
    const before = saves;
    const [ours, theirs] = await Promise.all([send(port, commands), send(real.port, commands)]);
    expect(theirs[2]).toBe('-ERR Command not allowed inside a transaction');
    expect(ours).toEqual(theirs);
    expect(ours[3]).toBe('-EXECABORT Transaction discarded because of previous errors.');
    expect(saves).toBe(before);
  });

  it('checks arity first (a SAVE with an argument inside MULTI is an arity error), and runs outside MULTI', async () => {
    const commands = [['MULTI'], ['SAVE', 'x'], ['DISCARD'], ['PING']];
    const [ours, theirs] = await Promise.all([send(port, commands), send(real.port, commands)]);
    expect(ours).toEqual(theirs);
    expect(ours[1]).toBe("-ERR wrong number of arguments for 'save' command");
    const before = saves;
    expect(await send(port, [['SAVE']])).toEqual(['+OK']);
    expect(saves).toBe(before + 1);
  });

  it('counts the refusal as rejected_calls in INFO commandstats, as redis-server', async () => {
    const line = async (to: number): Promise<string> => {
      const socket = await connect(to);
      socket.write([['MULTI'], ['SAVE'], ['DISCARD'], ['INFO', 'commandstats']].map(encode).join(''));
      const text = await readUntil(socket, /cmdstat_save:[^\r]*\r\n/);
      return /cmdstat_save:[^\r]*/.exec(text)?.[0] ?? '';
    };
    // Counters zeroed first: CONFIG RESETSTAT on redis-server, resetStats() (what an application's CONFIG RESETSTAT calls) here.
    expect(await send(real.port, [['CONFIG', 'RESETSTAT']])).toEqual(['+OK']);
    resp.resetStats();
    const ours = await line(port);
    const theirs = await line(real.port);
    expect(theirs).toBe('cmdstat_save:calls=0,usec=0,usec_per_call=0.00,rejected_calls=1,failed_calls=0');
    expect(ours).toBe(theirs);
  });
});

describe('MONITOR skips skip_monitor and admin commands and subcommands', () => {
  it('shows SET and CTL SHOW, not MYEVAL (skip_monitor), SECRET (admin), CTL REVEAL (admin) or CTL QUIET (skip_monitor)', async () => {
    const monitor = await connect(port);
    monitor.write(encode(['MONITOR']));
    expect(await readUntil(monitor, /\r\n$/)).toBe('+OK\r\n');
    const lines = readUntil(monitor, /"PING"\r\n$/);
    const replies = await send(port, [
      ['SET', 'a', '1'],
      ['MYEVAL', 'return 1'],
      ['SECRET'],
      ['CTL', 'REVEAL'],
      ['CTL', 'QUIET'],
      ['CTL', 'SHOW'],
      ['PING'],
    ]);
    expect(replies).toEqual(['+OK', '+OK', '+OK', '+OK', '+OK', '+OK', '+PONG']);
    const shown = (await lines)
      .split('\r\n')
      .filter((line) => line !== '')
      .map((line) => line.replace(/^\+\d+\.\d{6} \[0 127\.0\.0\.1:\d+\] /, ''));
    expect(shown).toEqual(['"SET" "a" "1"', '"CTL" "SHOW"', '"PING"']);
  });

  it('as redis-server: an admin command (CONFIG GET) and an admin subcommand (CLIENT LIST) are not shown, CLIENT ID is', async () => {
    const monitor = await connect(real.port);
    monitor.write(encode(['MONITOR']));
    expect(await readUntil(monitor, /\r\n$/)).toBe('+OK\r\n');
    const lines = readUntil(monitor, /"PING"\r\n$/);
    await send(real.port, [['CONFIG', 'GET', 'maxmemory'], ['CLIENT', 'LIST'], ['CLIENT', 'ID'], ['PING']], /\+PONG\r\n$/);
    const shown = (await lines)
      .split('\r\n')
      .filter((line) => line !== '')
      .map((line) => line.replace(/^\+\d+\.\d{6} \[0 127\.0\.0\.1:\d+\] /, ''));
    expect(shown).toEqual(['"CLIENT" "ID"', '"PING"']);
    // The same built-in subcommands through packages/resp.
    const ours = await connect(port);
    ours.write(encode(['MONITOR']));
    expect(await readUntil(ours, /\r\n$/)).toBe('+OK\r\n');
    const ourLines = readUntil(ours, /"PING"\r\n$/);
    await send(port, [['CLIENT', 'LIST'], ['CLIENT', 'ID'], ['PING']], /\+PONG\r\n$/);
    const ourShown = (await ourLines)
      .split('\r\n')
      .filter((line) => line !== '')
      .map((line) => line.replace(/^\+\d+\.\d{6} \[0 127\.0\.0\.1:\d+\] /, ''));
    expect(ourShown).toEqual(['"CLIENT" "ID"', '"PING"']);
  });
});
