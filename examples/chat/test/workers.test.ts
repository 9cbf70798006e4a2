import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readdir, readlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type Element, xml, client as xmppClient } from '@xmpp/client';
import { afterEach, describe, expect, it } from 'vitest';
import { type Server, startRedis } from '../../../test/support/redis-server.js';

// The chat example with WORKERS=2 and BUS_URL on a real redis-server: the primary only supervises.
// It opens no database (no descriptor on DATA_DIR/xmpp.sqlite in /proc/<pid>/fd) and connects no bus
// (Redis's CLIENT LIST names two buses, the workers'), while users logged in through it chat.
process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0'; // the example makes a self-signed certificate

const here = dirname(fileURLToPath(import.meta.url));
const main = join(here, '..', 'dist', 'main.js');
const run = promisify(execFile);
const children: ChildProcess[] = [];
const clients: Array<ReturnType<typeof xmppClient>> = [];
const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.stop().catch(() => {})));
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await Promise.all(servers.splice(0).map((server) => server.stop()));
});

interface LogLine {
  msg?: string;
  url?: string;
  workerPid?: number;
}

/** The files a process has open (its /proc/<pid>/fd links). */
async function openFiles(pid: number): Promise<string[]> {
  const dir = `/proc/${pid}/fd`;
  const links = await Promise.all((await readdir(dir)).map((fd) => readlink(join(dir, fd)).catch(() => '')));
  return links.filter((link) => link !== '');
}

/** The bus instances connected to Redis: CLIENT LIST names each connection `portbind-bus-<id>-<role>`. */
async function busesOn(port: number): Promise<Set<string>> {
  const { stdout } = await run('redis-cli', ['-p', String(port), 'CLIENT', 'LIST']);
  const ids = new Set<string>();
  for (const match of stdout.matchAll(/ name=portbind-bus-([0-9a-f]+)-\w+ /g)) ids.add(match[1] as string);
  return ids;
}

describe('chat with WORKERS=2: the primary opens no database and connects no bus', () => {
  it('two buses and two databases open, the workers’; users on them chat; SIGTERM exits 0', async () => {
    const redis = await startRedis();
    servers.push(redis);
    const dataDir = await mkdtemp(join(tmpdir(), 'portbind-chat-workers-'));
    const { WORKERS: _workers, ...parent } = process.env;
    const env = {
      ...parent,
      DATA_DIR: dataDir,
      PORT: '0',
      XMPP_PORT: '0',
      XMPPS_PORT: '0',
      HOST: '127.0.0.1',
      LOG_LEVEL: 'debug',
      BUS_URL: `redis://127.0.0.1:${redis.port}`,
    };
    for (const [user, password] of [
      ['juliet', 'balcony'],
      ['romeo', 'r0meo!'],
    ] as const)
      await run(process.execPath, [main, 'user', 'add', user, password], { env });

    const child = spawn(process.execPath, [main], { env: { ...env, WORKERS: '2' }, stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(child);
    const lines: LogLine[] = [];
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (text) => {
      try {
        lines.push(JSON.parse(text) as LogLine);
      } catch {
        lines.push({ msg: text });
      }
    });
    const deadline = Date.now() + 60_000;
    const listening = () => lines.filter((l) => l.msg?.startsWith('listening on') === true);
    while (listening().length < 4) {
      if (Date.now() > deadline || child.exitCode !== null)
        throw new Error(`chat did not start:\n${lines.map((l) => JSON.stringify(l)).join('\n')}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const primary = child.pid as number;
    const workers = lines.filter((l) => l.msg === 'worker ready').map((l) => l.workerPid as number);
    expect(workers).toHaveLength(2);

    // Two buses on Redis (each worker's), none the primary's; the database open in the workers only.
    expect((await busesOn(redis.port)).size).toBe(2);
    const database = join(dataDir, 'xmpp.sqlite');
    expect((await openFiles(primary)).filter((file) => file.startsWith(database))).toEqual([]);
    // Each worker's storage thread opens the file once that thread has started, which may come after the
    // worker listens: waited for (10 s at most), then checked.
    for (const worker of workers) {
      const until = Date.now() + 10_000;
      while (!(await openFiles(worker)).includes(database) && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 50));
      expect(await openFiles(worker)).toContain(database);
    }

    // It serves: juliet and romeo (on whichever workers the primary hands them to) chat.
    const xmppUrl = listening().find((l) => l.url?.startsWith('xmpp://'))?.url as string;
    const login = async (username: string, password: string) => {
      const client = xmppClient({ timeout: 8000, service: xmppUrl, domain: 'localhost', username, password, resource: 'workers' });
      client.on('error', () => {});
      clients.push(client);
      await client.start();
      return client;
    };
    const juliet = await login('juliet', 'balcony');
    const romeo = await login('romeo', 'r0meo!');
    const got = new Promise<Element>((resolve) => juliet.on('stanza', (stanza: Element) => stanza.is('message') && resolve(stanza)));
    await romeo.send(xml('message', { to: 'juliet@localhost/workers', type: 'chat' }, xml('body', {}, 'two workers, one service')));
    expect((await got).getChildText('body')).toBe('two workers, one service');
    // Still two buses: nothing was connected meanwhile.
    expect((await busesOn(redis.port)).size).toBe(2);

    await Promise.all(clients.splice(0).map((client) => client.stop().catch(() => {})));
    child.kill('SIGTERM');
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(code).toBe(0);
  }, 120_000);
});
