import type { Socket } from 'node:net';
import { PortService } from '@portbind/core';
import { afterEach, describe, expect, it } from 'vitest';
import { portOf, rawConnect, readUntil } from '../../../test/support/net.js';
import { OK, type RespOptions, respAdapter } from '../src/index.js';

// CLIENT LIST / CLIENT INFO, INFO's counters and MONITOR over real sockets (the differential
// test in examples/mini-redis compares the MONITOR line format with a real redis-server).

const services: PortService[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  await Promise.all(services.splice(0).map((s) => s.stop()));
});

async function start(options: RespOptions = {}, host = '127.0.0.1') {
  const resp = respAdapter(options);
  const store = new Map<string, string>();
  resp.command('set', { arity: 3, flags: ['write'] }, (_client, [, key, value]) => {
    store.set(String(key), String(value));
    return OK;
  });
  resp.command('get', { arity: 2, flags: ['readonly'] }, (_client, [, key]) => store.get(String(key)) ?? null);
  const service = new PortService({ env: {} });
  services.push(service);
  const binding = service.bind(resp, { port: 0, host });
  await service.start();
  return { resp, port: portOf(binding) };
}

async function connect(port: number): Promise<Socket> {
  const socket = await rawConnect(port);
  sockets.push(socket);
  return socket;
}

/** Send, and read until the reply text matches. */
async function ask(socket: Socket, bytes: string, until: RegExp = /\r\n$/): Promise<string> {
  socket.write(bytes);
  return readUntil(socket, until);
}

/** A verbatim CLIENT LIST / CLIENT INFO reply: its lines as field maps. */
function parseClients(reply: string): Array<Map<string, string>> {
  // `$N\r\n…\r\n` in RESP2, `=N\r\ntxt:…\r\n` in RESP3.
  const body = reply.slice(reply.indexOf('\r\n') + 2 + (reply.startsWith('=') ? 4 : 0), -2);
  return body
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => new Map(line.split(' ').map((field) => [field.slice(0, field.indexOf('=')), field.slice(field.indexOf('=') + 1)])));
}

const FIELDS_72 =
  'id addr laddr fd name age idle flags db sub psub ssub multi qbuf qbuf-free argv-mem multi-mem rbs rbp obl oll omem tot-mem events cmd user redir resp lib-name lib-ver';

describe('CLIENT LIST and CLIENT INFO', () => {
  it("have Redis 7.2's fields in its order, with cmd=client|list and real values", async () => {
    const { port } = await start();
    const a = await connect(port);
    const b = await connect(port);
    await ask(b, 'CLIENT SETNAME bee\r\nSUBSCRIBE ch\r\n', /:1\r\n$/);
    await ask(a, 'MULTI\r\nSET k v\r\n', /QUEUED\r\n$/);
    a.write('DISCARD\r\n');
    await readUntil(a, /OK\r\n$/);
    // A half-sent command: its bytes are qbuf.
    a.write('ECHO abc\r\n*2\r\n$4\r\nECHO\r\n$5\r\nhel');
    await readUntil(a, /abc\r\n$/);
    const c = await connect(port);
    const list = parseClients(await ask(c, 'CLIENT LIST\r\n', /\n\r\n$/));
    expect(list).toHaveLength(3);
    for (const client of list) expect([...client.keys()].join(' ')).toBe(FIELDS_72);
    const [first, second, third] = list as [Map<string, string>, Map<string, string>, Map<string, string>];
    expect(first.get('cmd')).toBe('echo');
    // As Redis: the parsed argument (ECHO) is argv-mem, the bytes of the one still arriving qbuf.
    expect(first.get('qbuf')).toBe('3');
    expect(first.get('argv-mem')).toBe('4');
    expect(first.get('flags')).toBe('N');
    expect(second.get('name')).toBe('bee');
    expect(second.get('flags')).toBe('P');
    expect(second.get('sub')).toBe('1');
    expect(second.get('cmd')).toBe('subscribe');
    expect(third.get('cmd')).toBe('client|list');
    expect(third.get('argv-mem')).toBe(String('CLIENTLIST'.length));
    expect(third.get('addr')).toBe(`127.0.0.1:${c.localPort}`);
    expect(third.get('laddr')).toBe(`127.0.0.1:${port}`);
    expect(Number(third.get('fd'))).toBeGreaterThan(0);
    expect(third.get('events')).toBe('r');
    expect(third.get('user')).toBe('default');
    expect(third.get('redir')).toBe('-1');
    // MULTI: flags x, the queue's length and memory.
    expect(await ask(a, 'lo\r\n', /hello\r\n$/)).toBe('$5\r\nhello\r\n');
    const idA = await idOf(a);
    await ask(a, 'MULTI\r\nSET k 12345\r\n', /QUEUED\r\n$/);
    const [duringMulti] = parseClients(await ask(c, `CLIENT LIST ID ${idA}\r\n`, /\n\r\n$/));
    expect(duringMulti?.get('flags')).toBe('x');
    expect(duringMulti?.get('multi')).toBe('1');
    expect(Number(duringMulti?.get('multi-mem'))).toBeGreaterThanOrEqual('SETk12345'.length);
    expect(Number(duringMulti?.get('tot-mem'))).toBeGreaterThanOrEqual(Number(duringMulti?.get('multi-mem')));
  });

  it("the caller's qbuf is its query buffer while the command runs, as redis-server 7.0.15's", async () => {
    // Measured on redis-server 7.0.15: qbuf=26, 13, and 25 (the whole read, the PINGs around it included).
    const { port } = await start();
    const a = await connect(port);
    const [multibulk] = parseClients(await ask(a, '*2\r\n$6\r\nclient\r\n$4\r\nlist\r\n', /\n\r\n$/));
    expect(multibulk?.get('qbuf')).toBe('26');
    const [inline] = parseClients(await ask(a, 'CLIENT LIST\r\n', /\n\r\n$/));
    expect(inline?.get('qbuf')).toBe('13');
    const reply = await ask(a, 'PING\r\nCLIENT INFO\r\nPING\r\n', /\n\r\n\+PONG\r\n$/);
    const [pipelined] = parseClients(reply.slice('+PONG\r\n'.length, -'+PONG\r\n'.length));
    expect(pipelined?.get('qbuf')).toBe('25');
    expect(pipelined?.get('cmd')).toBe('client|info');
  });

  it('CLIENT INFO: the caller alone, as a verbatim string', async () => {
    const { port } = await start();
    const a = await connect(port);
    const reply = await ask(a, 'HELLO 3\r\nCLIENT SETINFO LIB-NAME mylib\r\nCLIENT INFO\r\n', /\n\r\n$/);
    const info = reply.slice(reply.indexOf('+OK\r\n') + 5);
    const [client] = parseClients(info);
    expect(client?.get('cmd')).toBe('client|info');
    expect(client?.get('resp')).toBe('3');
    expect(client?.get('lib-name')).toBe('mylib');
    expect([...(client?.keys() ?? [])].join(' ')).toBe(FIELDS_72);
  });

  it('an IPv4 client of a dual-stack listener (::) shows as Redis shows it, 127.0.0.1:port, and CLIENT KILL ADDR finds it so', async () => {
    const { port } = await start({}, '::');
    const a = await connect(port);
    const b = await connect(port);
    const [client] = parseClients(await ask(a, 'CLIENT INFO\r\n', /\n\r\n$/));
    expect(client?.get('addr')).toBe(`127.0.0.1:${a.localPort}`);
    expect(client?.get('laddr')).toBe(`127.0.0.1:${port}`);
    expect(await ask(a, `CLIENT KILL ADDR 127.0.0.1:${b.localPort}\r\n`)).toBe(':1\r\n');
    expect(await ask(a, `CLIENT KILL ADDR [::ffff:127.0.0.1]:${a.localPort}\r\n`)).toBe(':0\r\n');
  });

  it('filters by ID and TYPE, with Redis’s errors', async () => {
    const { port } = await start();
    const a = await connect(port);
    const b = await connect(port);
    await ask(b, 'SUBSCRIBE ch\r\n', /:1\r\n$/);
    const idA = await idOf(a);
    const idB = (await ask(a, `CLIENT LIST TYPE pubsub\r\n`, /\n\r\n$/)).match(/id=(\d+)/)?.[1];
    expect(Number(idB)).not.toBe(idA);
    expect(parseClients(await ask(a, 'CLIENT LIST TYPE PUBSUB\r\n', /\n\r\n$/)).map((c) => c.get('id'))).toEqual([idB]);
    expect(parseClients(await ask(a, 'CLIENT LIST TYPE normal\r\n', /\n\r\n$/)).map((c) => c.get('id'))).toEqual([String(idA)]);
    expect(await ask(a, 'CLIENT LIST TYPE replica\r\nCLIENT LIST TYPE master\r\n', /\$0\r\n\r\n\$0\r\n\r\n$/)).toBe('$0\r\n\r\n$0\r\n\r\n');
    expect(parseClients(await ask(a, `CLIENT LIST ID ${idB} 999999 ${idA}\r\n`, /\n\r\n$/)).map((c) => c.get('id'))).toEqual([
      idB,
      String(idA),
    ]);
    const errors = await ask(
      a,
      'CLIENT LIST TYPE bogus\r\nCLIENT LIST ID 1 x\r\nCLIENT LIST ID\r\nCLIENT LIST TYPE\r\nCLIENT LIST TYPE normal extra\r\nCLIENT LIST foo bar\r\nPING\r\n',
      /PONG\r\n$/,
    );
    expect(errors).toBe(
      "-ERR Unknown client type 'bogus'\r\n-ERR Invalid client ID\r\n-ERR syntax error\r\n-ERR syntax error\r\n-ERR syntax error\r\n-ERR syntax error\r\n+PONG\r\n",
    );
  });
});

describe('INFO', () => {
  /** INFO's fields as a map. */
  async function info(socket: Socket, section = ''): Promise<Map<string, string>> {
    const reply = await ask(socket, `INFO ${section}\r\n`, /\r\n\r\n$/);
    return new Map(
      reply
        .split('\r\n')
        .filter((line) => line.includes(':'))
        .map((line) => [line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 1)]),
    );
  }

  it('counts connections, commands and bytes; memory is real; the application adds keyspace and overrides fields', async () => {
    const { resp, port } = await start();
    resp.infoSection('keyspace', () => [['db0', 'keys=7,expires=0,avg_ttl=0']]);
    resp.infoSection('persistence', () => [['loading', 1]]);
    const a = await connect(port);
    const before = await info(a);
    await ask(a, 'SET k v\r\nGET k\r\nNOSUCH\r\n', /NOSUCH.*\r\n$/);
    await connect(port);
    const after = await info(a);
    expect(Number(after.get('total_commands_processed'))).toBe(Number(before.get('total_commands_processed')) + 3); // SET, GET, INFO
    expect(Number(after.get('total_connections_received'))).toBe(Number(before.get('total_connections_received')) + 1);
    expect(Number(after.get('total_net_input_bytes'))).toBeGreaterThan(Number(before.get('total_net_input_bytes')));
    expect(Number(after.get('total_net_output_bytes'))).toBeGreaterThan(Number(before.get('total_net_output_bytes')));
    expect(Number(after.get('used_memory'))).toBeGreaterThan(1_000_000);
    expect(after.get('connected_clients')).toBe('2');
    expect(after.get('rejected_connections')).toBe('0');
    expect(after.get('db0')).toBe('keys=7,expires=0,avg_ttl=0');
    expect(after.get('loading')).toBe('1');
    for (const value of after.values()) expect(value).not.toMatch(/^-|NaN|undefined/);
    const keyspaceOnly = await info(a, 'keyspace');
    expect([...keyspaceOnly.keys()]).toEqual(['db0']);
    expect([...(resp.infoFields('stats') ?? []).map(([key]) => key)]).toContain('total_commands_processed');
  });

  it('commandstats: calls, time, rejected and failed calls per command (client|list for a subcommand); in INFO all, not default', async () => {
    const { resp, port } = await start();
    resp.command('boom', { arity: 1 }, () => {
      throw new Error('no');
    });
    const a = await connect(port);
    await ask(a, 'SET k v\r\nSET k w\r\nGET k\r\nGET\r\nBOOM\r\nCLIENT LIST\r\n', /\n\r\n$/);
    const stats = await info(a, 'commandstats');
    expect(stats.get('cmdstat_set')).toMatch(/^calls=2,usec=\d+,usec_per_call=\d+\.\d\d,rejected_calls=0,failed_calls=0$/);
    expect(stats.get('cmdstat_get')).toMatch(/^calls=1,usec=\d+,usec_per_call=\d+\.\d\d,rejected_calls=1,failed_calls=0$/);
    expect(stats.get('cmdstat_boom')).toMatch(/^calls=1,.*,rejected_calls=0,failed_calls=1$/);
    expect(stats.get('cmdstat_client|list')).toMatch(/^calls=1,/);
    expect(stats.has('cmdstat_ping')).toBe(false);
    const usual = await info(a);
    expect(usual.has('cmdstat_set')).toBe(false);
    expect(usual.get('used_cpu_user_children')).toBe('0.000000');
    expect(usual.get('master_repl_offset')).toBe('0');
    const all = await info(a, 'all');
    expect(all.has('cmdstat_set')).toBe(true);
    const cpuAndAll = await info(a, 'cpu all');
    expect(cpuAndAll.has('cmdstat_set')).toBe(true);
    expect(cpuAndAll.has('used_memory')).toBe(true);
  });

  it('CLIENT LIST follows the reported version: 7.0 has no lib-name and lib-ver', async () => {
    const { port } = await start({ serverVersion: '7.0.15' });
    const a = await connect(port);
    const [client] = parseClients(await ask(a, 'CLIENT INFO\r\n', /\n\r\n$/));
    expect([...(client?.keys() ?? [])].join(' ')).toBe(FIELDS_72.replace(' lib-name lib-ver', ''));
  });
});

describe('MONITOR', () => {
  const stamp = /^\+(\d+)\.(\d{6}) \[(\d+) ([^\]]+)\] (.*)$/;

  it('feeds every command run, after it ran (async ones when they finish), skipping admin commands and rejected ones', async () => {
    const { resp, port } = await start();
    resp.command('later', { arity: 2 }, async (_client, [, value]) => {
      await new Promise((resolve) => setTimeout(resolve, 20));
      return value as Buffer;
    });
    resp.command('secret', { arity: 1, flags: ['admin'] }, () => OK);
    resp.command('box', { arity: -2, subcommands: { open: [], wipe: ['admin'] } }, () => OK);
    const monitor = await connect(port);
    const other = await connect(port);
    expect(await ask(monitor, 'MONITOR\r\n')).toBe('+OK\r\n');
    expect(resp.monitorCount).toBe(1);
    const before = Date.now() / 1000;
    other.write('LATER 1\r\nSECRET\r\nBOX wipe\r\nBOX OPEN\r\nNOSUCH\r\nECHO\r\nSELECT 2\r\nECHO "x\\x00y"\r\n');
    const text = await readUntil(monitor, /"ECHO" "x\\x00y"\r\n$/);
    const lines = text.split('\r\n').filter((line) => line !== '');
    const parsed = lines.map((line) => line.match(stamp));
    for (const match of parsed) {
      expect(match).not.toBeNull();
      expect(Number(match?.[1])).toBeGreaterThanOrEqual(Math.floor(before));
      expect(match?.[4]).toBe(`127.0.0.1:${other.localPort}`);
    }
    expect(parsed.map((match) => `${match?.[3]} ${match?.[5]}`)).toEqual([
      '0 "LATER" "1"',
      '0 "BOX" "OPEN"',
      '2 "SELECT" "2"',
      '2 "ECHO" "x\\x00y"',
    ]);
    expect(await ask(other, 'CLIENT LIST\r\n', /\n\r\n$/)).toMatch(/flags=O .*cmd=monitor/);
  });

  it("shows a command's `redact` arguments (and AUTH's, HELLO's) as \"(redacted)\"", async () => {
    const { resp, port } = await start({ password: 'pw' });
    // LOGIN user password [TOKEN t]: the password and the token are secrets.
    resp.command('login', { arity: -3, redact: (argv) => (argv.length > 4 ? [2, 4] : [2]) }, () => OK);
    const monitor = await connect(port);
    const other = await connect(port);
    expect(await ask(monitor, 'AUTH pw\r\n')).toBe('+OK\r\n');
    expect(await ask(monitor, 'MONITOR\r\n')).toBe('+OK\r\n');
    other.write('AUTH wrong\r\nAUTH pw\r\nLOGIN ada s3cret\r\nLOGIN ada s3cret TOKEN t0k\r\nECHO done\r\n');
    const text = await readUntil(monitor, /"ECHO" "done"\r\n$/);
    const args = text
      .split('\r\n')
      .filter((line) => line !== '')
      .map((line) => line.match(stamp)?.[5]);
    expect(args).toEqual([
      '"AUTH" "(redacted)"', // a failed AUTH ran (and failed): fed too, as Redis's call() does
      '"AUTH" "(redacted)"',
      '"LOGIN" "ada" "(redacted)"',
      '"LOGIN" "ada" "(redacted)" "TOKEN" "(redacted)"',
      '"ECHO" "done"',
    ]);
    expect(text).not.toMatch(/s3cret|t0k|"pw"/);
  });

  it('the monitor: keyspace commands refused as in Redis, others run and are fed back; RESET and closing end it', async () => {
    const { resp, port } = await start();
    const monitor = await connect(port);
    await ask(monitor, 'MONITOR\r\n');
    const replies = await ask(monitor, 'GET k\r\nSET k v\r\nMONITOR\r\nECHO e\r\n', /"ECHO" "e"\r\n$/);
    expect(replies.replace(/\+\d+\.\d{6} \[[^\]]+\]/, '+<line>')).toBe(
      '-ERR Replica can\'t interact with the keyspace\r\n-ERR Replica can\'t interact with the keyspace\r\n$1\r\ne\r\n+<line> "ECHO" "e"\r\n',
    );
    expect(await ask(monitor, 'RESET\r\nGET k\r\n', /\$-1\r\n$/)).toBe('+RESET\r\n$-1\r\n');
    expect(resp.monitorCount).toBe(0);
    await ask(monitor, 'MONITOR\r\n');
    expect(resp.monitorCount).toBe(1);
    monitor.destroy();
    for (let i = 0; i < 100 && resp.monitorCount > 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(resp.monitorCount).toBe(0);
    // MULTI … EXEC: the queued commands are fed as EXEC runs them, EXEC after them.
    const watcher = await connect(port);
    await ask(watcher, 'MONITOR\r\n');
    const other = await connect(port);
    await ask(other, 'MULTI\r\nSET a 1\r\nGET a\r\nEXEC\r\n', /\*2\r\n\+OK\r\n\$1\r\n1\r\n$/);
    const fed = await readUntil(watcher, /"EXEC"\r\n$/);
    expect(
      fed
        .split('\r\n')
        .filter(Boolean)
        .map((line) => line.replace(/^\+\d+\.\d{6} \[[^\]]+\] /, '')),
    ).toEqual(['"MULTI"', '"SET" "a" "1"', '"GET" "a"', '"EXEC"']);
  });
});

async function idOf(socket: Socket): Promise<number> {
  return Number((await ask(socket, 'CLIENT ID\r\n')).slice(1, -2));
}
