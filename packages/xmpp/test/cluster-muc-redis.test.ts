import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { xml as clientXml, type Element, client as xmppClient } from '@xmpp/client';
import { afterEach, describe, expect, it } from 'vitest';
import { type Server, startRedis } from '../../../test/support/redis-server.js';
import { sqliteStorage } from '../src/index.js';
import { clients, testCert } from './support.js';

// One room across two real processes (issue 12): two processes of an XMPP service with the MUC
// module on a real redis-server, sharing one SQLite file. A slixmpp user (xep_0045) on process 1 and
// an @xmpp/client user on process 2 sit in one room and talk; the process holding the room is killed
// with SIGKILL and the room comes back on the other; a claim lost while the bus was away (its key
// gone, another process took the room) hands the room over without a word to its occupants.
//
// Runs the builds (dist/): `npx tsc -b packages/xmpp packages/bus-redis` before running it alone.

const run = promisify(execFile);
const packages = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const PYTHON = '/usr/bin/python3';
const ROOM = 'lobby@conference.localhost';
const children: ChildProcess[] = [];
let redis: Server | undefined;
let dir: string | undefined;

afterEach(async () => {
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await redis?.stop();
  redis = undefined;
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

// One process of the service: fixtures/cluster/node.mjs's set-up with the MUC module (rooms open at
// once: no locked instant room to configure first). Written to the test's directory (not run with
// --eval: the SQLite store's worker thread would inherit --input-type).
const dist = (path: string): string => pathToFileURL(join(packages, path, 'dist', 'index.js')).href;
const NODE = `
import { join } from 'node:path';
import { createLogger, PortService } from '${dist('core')}';
import { redisBus } from '${dist('bus-redis')}';
import { defaultModules, muc, sqliteStorage, xmppServer } from '${dist('xmpp')}';
const env = process.env;
const ttl = Number(env.SESSION_TTL_MS);
const bus = await redisBus({ url: env.BUS_URL });
const server = xmppServer({
  domain: 'localhost',
  storage: sqliteStorage({ file: join(env.DATA_DIR, 'xmpp.sqlite') }),
  bus,
  cluster: { sessionTtlMs: ttl },
  modules: [...defaultModules(), muc({ lockNewRooms: false })],
});
// TEMPORARY until XmppClusterView has bus and sessionTtlMs (api-requests.md).
if (!('bus' in server.cluster)) Object.defineProperties(server.cluster, { bus: { value: bus }, sessionTtlMs: { value: ttl } });
const service = new PortService({ env: {}, gracePeriodMs: 2000, logger: createLogger({ LOG_LEVEL: env.LOG_LEVEL ?? 'warn' }) });
const binding = service.bind(server.c2s(), { port: 0, host: '127.0.0.1', tls: { cert: env.TLS_CERT, key: env.TLS_KEY } });
await service.start();
await server.cluster.ready;
process.stdout.write(JSON.stringify({ port: binding.address.port, node: server.cluster.nodeId }) + '\\n');
`;

// juliet with slixmpp's xep_0045: joins the room, prints one JSON line per event; each stdin line
// {"say": text} is said in the room.
const SLIX = `
import asyncio, json, ssl, sys
import slixmpp
HOST, PORT, ROOM = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def emit(event):
    print(json.dumps(event), flush=True)
class User(slixmpp.ClientXMPP):
    def __init__(self):
        super().__init__('juliet@localhost/slix', 'balcony')
        self.ssl_context = ssl.create_default_context()
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.register_plugin('xep_0045')
        self.register_plugin('xep_0203')
        self.add_event_handler('session_start', self.on_start)
        self.add_event_handler('groupchat_message', self.on_groupchat)
        self.add_event_handler('muc::%s::presence' % ROOM, self.on_presence)
    async def on_start(self, _event):
        self.send_presence()
        pres, _subject, occupants, history = await self['xep_0045'].join_muc_wait(ROOM, 'Juliet', maxstanzas=10, timeout=20)
        emit({'joined': pres['muc']['role'], 'occupants': sorted(p['from'].resource for p in occupants), 'history': [m['body'] for m in history]})
    def on_groupchat(self, msg):
        if msg['body']:
            emit({'from': str(msg['from']), 'body': msg['body'], 'delayed': msg.get_plugin('delay', check=True) is not None})
    def on_presence(self, pres):
        emit({'presence': pres['from'].resource, 'type': pres['type']})
async def main():
    user = User()
    user.connect(address=(HOST, PORT), force_starttls=True)
    loop = asyncio.get_event_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            break
        user.send_message(mto=ROOM, mbody=json.loads(line)['say'], mtype='groupchat')
    user.disconnect()
    await asyncio.sleep(0.2)
asyncio.run(main())
`;

/** JSON lines of a child's stdout, waited for one by one. */
class Lines {
  readonly #lines: Array<Record<string, unknown>> = [];
  #wake: (() => void) | undefined;

  constructor(stream: Readable) {
    let buffer = '';
    stream.on('data', (chunk: Buffer) => {
      buffer += chunk.toString();
      for (let end = buffer.indexOf('\n'); end !== -1; end = buffer.indexOf('\n')) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + 1);
        try {
          this.#lines.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          // A log line.
        }
      }
      this.#wake?.();
    });
  }

  async next(match: (line: Record<string, unknown>) => boolean, what: string, timeoutMs = 60_000): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const index = this.#lines.findIndex(match);
      if (index !== -1) return this.#lines.splice(index, 1)[0] as Record<string, unknown>;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; got ${JSON.stringify(this.#lines)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 200));
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }
}

async function startNode(
  env: Record<string, string>,
): Promise<{ child: ChildProcess; port: number; node: string; lines: Lines; stderr: () => string }> {
  const child = spawn(process.execPath, [join(env.DATA_DIR as string, 'node.mjs')], { env: { ...process.env, ...env } });
  children.push(child);
  let errors = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    errors += chunk.toString();
  });
  // Its stdout: the line saying where it listens, then its log (pino's JSON lines).
  const lines = new Lines(child.stdout as Readable);
  const ready = await lines.next((line) => typeof line.port === 'number', 'the node to listen', 30_000);
  return { child, port: ready.port as number, node: ready.node as string, lines, stderr: () => errors };
}

async function twoNodes(redisPort: number) {
  dir = await mkdtemp(join(tmpdir(), 'portbind-xmpp-muc-cluster-'));
  const storage = sqliteStorage({ file: join(dir, 'xmpp.sqlite') });
  await storage.users.create('juliet', 'balcony');
  await storage.users.create('romeo', 'r0meo!');
  await storage.close();
  await writeFile(join(dir, 'node.mjs'), NODE);
  const { cert, key } = testCert();
  const env = { BUS_URL: `redis://127.0.0.1:${redisPort}`, DATA_DIR: dir, TLS_CERT: cert, TLS_KEY: key, SESSION_TTL_MS: '2000' };
  return Promise.all([startNode(env), startNode(env)]);
}

/** juliet in the room with slixmpp, on this port. */
async function slixJuliet(port: number): Promise<{ lines: Lines; say: (body: string) => void }> {
  const slix = spawn(PYTHON, ['-c', SLIX, '127.0.0.1', String(port), ROOM], { stdio: ['pipe', 'pipe', 'pipe'] });
  children.push(slix);
  const lines = new Lines(slix.stdout as Readable);
  slix.stderr?.on('data', (chunk: Buffer) => {
    if (process.env.SLIX_DEBUG) process.stderr.write(chunk);
  });
  return { lines, say: (body) => slix.stdin?.write(`${JSON.stringify({ say: body })}\n`) };
}

/** romeo in the room with @xmpp/client, on this port: the groupchat he hears, the occupants he sees come and go. */
async function xmppRomeo(port: number) {
  const xmpp = xmppClient({
    timeout: 20_000,
    service: `xmpp://127.0.0.1:${port}`,
    domain: 'localhost',
    username: 'romeo',
    password: 'r0meo!',
    resource: 'web',
  });
  xmpp.on('error', () => {});
  clients.push(xmpp);
  const heard: Array<{ nick: string; body: string }> = [];
  const presences: Array<{ nick: string; type: string; codes: string[] }> = [];
  xmpp.on('stanza', (stanza: Element) => {
    const from = String(stanza.attrs.from ?? '');
    if (!from.startsWith(`${ROOM}/`)) return;
    const nick = from.slice(ROOM.length + 1);
    if (stanza.is('message') && stanza.attrs.type === 'groupchat') {
      const body = stanza.getChildText('body');
      if (typeof body === 'string') heard.push({ nick, body });
    } else if (stanza.is('presence')) {
      const x = stanza.getChild('x', 'http://jabber.org/protocol/muc#user');
      const codes = (x?.children ?? [])
        .filter((child): child is Element => typeof child !== 'string' && child.name === 'status')
        .map((status) => String(status.attrs.code));
      presences.push({ nick, type: String(stanza.attrs.type ?? 'available'), codes });
    }
  });
  await xmpp.start();
  await xmpp.send(clientXml('presence', {}));
  await xmpp.send(clientXml('presence', { to: `${ROOM}/Romeo` }, clientXml('x', { xmlns: 'http://jabber.org/protocol/muc' })));
  const say = (body: string) => xmpp.send(clientXml('message', { to: ROOM, type: 'groupchat' }, clientXml('body', {}, body)));
  return { xmpp, heard, presences, say };
}

async function until(check: () => boolean, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** juliet (slixmpp) on process 1 creates and holds the room; romeo (@xmpp/client) on process 2 joins; they talk both ways. */
async function sharedRoom(one: { port: number }, two: { port: number }) {
  const juliet = await slixJuliet(one.port);
  expect(await juliet.lines.next((line) => 'joined' in line, 'juliet in the room')).toEqual({
    joined: 'moderator',
    occupants: ['Juliet'],
    history: [],
  });
  const romeo = await xmppRomeo(two.port);
  await until(() => romeo.presences.some((p) => p.nick === 'Romeo' && p.codes.includes('110')), 'romeo in the room');
  expect(romeo.presences.find((p) => p.nick === 'Juliet')?.type).toBe('available');
  await juliet.lines.next((line) => line.presence === 'Romeo' && line.type === 'available', 'juliet to see romeo come in');
  juliet.say('two households');
  await until(() => romeo.heard.some((m) => m.nick === 'Juliet' && m.body === 'two households'), 'slixmpp → @xmpp/client');
  await romeo.say('both alike in dignity');
  const heard = await juliet.lines.next((line) => line.body === 'both alike in dignity', '@xmpp/client → slixmpp');
  expect(heard).toEqual({ from: `${ROOM}/Romeo`, body: 'both alike in dignity', delayed: false });
  return { juliet, romeo };
}

describe('MUC on two processes over a real redis-server', () => {
  it('slixmpp on process 1 and @xmpp/client on process 2 share a room; the holder is killed; the room goes on on process 2', async () => {
    redis = await startRedis();
    const [one, two] = await twoNodes(redis.port);
    const { romeo } = await sharedRoom(one, two);
    // Process 1 (the room's holder: juliet created it there) dies.
    one.child.kill('SIGKILL');
    await romeo.say('after the fall');
    await until(() => romeo.heard.some((m) => m.nick === 'Romeo' && m.body === 'after the fall'), 'the room back on process 2');
    // romeo is still in it (nobody told him anything); juliet's session died with process 1: she left.
    await until(() => romeo.presences.some((p) => p.nick === 'Juliet' && p.type === 'unavailable'), 'juliet gone with process 1');
    expect(romeo.presences.filter((p) => p.nick === 'Romeo' && p.type === 'unavailable')).toEqual([]);
    // juliet comes back with slixmpp, on process 2: the room's owner again, with romeo in it and the history.
    const back = await slixJuliet(two.port);
    expect(await back.lines.next((line) => 'joined' in line, 'juliet back in the room')).toEqual({
      joined: 'moderator',
      occupants: ['Juliet', 'Romeo'],
      history: ['two households', 'both alike in dignity', 'after the fall'],
    });
    await until(() => romeo.presences.filter((p) => p.nick === 'Juliet' && p.type === 'available').length === 2, 'romeo sees her back');
    back.say('it is the east');
    await until(() => romeo.heard.some((m) => m.nick === 'Juliet' && m.body === 'it is the east'), 'her words through process 2');
    expect(two.stderr()).not.toMatch(/Error/);
  }, 180_000);

  it('a claim lost while the bus was away: the other process serves the room, the first forwards to it, nobody notices', async () => {
    redis = await startRedis();
    const [one, two] = await twoNodes(redis.port);
    const { juliet, romeo } = await sharedRoom(one, two);
    // The claim of process 1 vanishes from Redis (as when it expired while process 1 could not reach it).
    const cli = (...args: string[]) => run('redis-cli', ['-p', String(redis?.port), ...args]);
    const key = `xmpp:claim:localhost:muc:${ROOM}`;
    expect((await cli('GET', key)).stdout.trim()).toBe(one.node);
    // Process 2 asks the bus who holds the room again once its 5 s memory of the holder is over; then
    // the claim vanishes and romeo talks at once: process 2 claims the room before process 1's
    // heartbeat (every TTL/3) writes its claim again (tried again in the rare case it does not).
    for (let attempt = 0; (await cli('GET', key)).stdout.trim() !== two.node; attempt++) {
      if (attempt === 5) throw new Error('process 2 never took the room');
      await new Promise((resolve) => setTimeout(resolve, 5500));
      await cli('DEL', key);
      await romeo.say(`knock ${attempt}`);
      await until(() => romeo.heard.some((m) => m.body === `knock ${attempt}`), 'the knock');
    }
    // Process 1's heartbeat finds the claim another's: it lets go of the room (it says so in its log) …
    await one.lines.next(
      (line) => line.msg === 'XMPP MUC: another process holds this room now: its stanzas go there',
      'process 1 to let go',
    );
    // … and forwards juliet's words to process 2's room.
    juliet.say('who is there?');
    await until(() => romeo.heard.some((m) => m.nick === 'Juliet' && m.body === 'who is there?'), 'juliet heard through the new holder');
    await romeo.say('only I');
    await juliet.lines.next((line) => line.body === 'only I', 'romeo heard by juliet');
    // Nobody left or came in, as far as the occupants can tell.
    expect(romeo.presences.filter((p) => p.type === 'unavailable')).toEqual([]);
    expect((await cli('GET', key)).stdout.trim()).toBe(two.node);
    expect(one.stderr()).not.toMatch(/Error/);
    expect(two.stderr()).not.toMatch(/Error/);
  }, 180_000);
});
