import { execFile, spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { xml as clientXml, type Element } from '@xmpp/client';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort, startRedis } from '../../../test/support/redis-server.js';
import { behindHaproxy, cleanup, Lines, PYTHON, redisOn, run, twoNodes, until, romeo as xmppUser } from './cluster-support.js';

// One room across two real processes (issue 12): two processes of an XMPP service with the MUC
// module on a real redis-server, sharing one SQLite file. A slixmpp user (xep_0045) on process 1 and
// an @xmpp/client user on process 2 sit in one room and talk; the process holding the room is killed
// with SIGKILL and the room comes back on the other; a claim lost while the bus was away (its key
// gone, another process took the room) hands the room over without a word to its occupants.
//
// Runs the builds (dist/): `npx tsc -b packages/xmpp packages/bus-redis` before running it alone.

const redisCli = promisify(execFile);
const ROOM = 'lobby@conference.localhost';

afterEach(cleanup);

// juliet with slixmpp's xep_0045: joins the room (a room she creates is locked until configured:
// she accepts the defaults, an instant room), prints one JSON line per event; each stdin line
// {"say": text} is said in the room.
const SLIX = `
import asyncio, json, ssl, sys
import xml.etree.ElementTree as ET
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
        codes = [s.get('code') for s in pres.xml.iter('{http://jabber.org/protocol/muc#user}status')]
        if '201' in codes:
            iq = self.make_iq_set(ito=ROOM)
            iq.append(ET.fromstring("<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query>"))
            await iq.send()
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

/** juliet in the room with slixmpp, on this port. */
async function slixJuliet(port: number): Promise<{ lines: Lines; say: (body: string) => void }> {
  const slix = spawn(PYTHON, ['-c', SLIX, '127.0.0.1', String(port), ROOM], { stdio: ['pipe', 'pipe', 'pipe'] });
  run.children.push(slix);
  const lines = new Lines(slix.stdout as Readable);
  slix.stderr?.on('data', (chunk: Buffer) => {
    if (process.env.SLIX_DEBUG) process.stderr.write(chunk);
  });
  return { lines, say: (body) => slix.stdin?.write(`${JSON.stringify({ say: body })}\n`) };
}

/** romeo in the room with @xmpp/client, on this port: the groupchat he hears, the occupants he sees come and go. */
async function xmppRomeo(port: number) {
  const { xmpp } = await xmppUser(port, 'web');
  const heard: Array<{ nick: string; body: string }> = [];
  const presences: Array<{ nick: string; type: string; codes: string[] }> = [];
  const archived: string[] = [];
  xmpp.on('stanza', (stanza: Element) => {
    const from = String(stanza.attrs.from ?? '');
    // The room's archive (XEP-0313), one result per message.
    const body = stanza.getChild('result', 'urn:xmpp:mam:2')?.getChild('forwarded')?.getChild('message')?.getChildText('body');
    if (from === ROOM && typeof body === 'string') archived.push(body);
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
  await xmpp.send(clientXml('presence', { to: `${ROOM}/Romeo` }, clientXml('x', { xmlns: 'http://jabber.org/protocol/muc' })));
  const say = (body: string) => xmpp.send(clientXml('message', { to: ROOM, type: 'groupchat' }, clientXml('body', {}, body)));
  /** The room's archived messages now (the holder archives without making occupants wait for the commit). */
  const archive = async (): Promise<string[]> => {
    archived.length = 0;
    await xmpp.iqCaller.request(clientXml('iq', { type: 'set', to: ROOM }, clientXml('query', { xmlns: 'urn:xmpp:mam:2' })));
    return [...archived];
  };
  return { xmpp, heard, presences, say, archive };
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
    run.redis = await startRedis();
    const [one, two] = await twoNodes(run.redis.port, { MUC: '1' });
    const { romeo } = await sharedRoom(one, two);
    // What was said is committed to the shared store (the room archives after broadcasting: what the last
    // moment before a crash had not committed is missing from the history the next holder offers).
    for (let i = 0; (await romeo.archive()).length < 2; i++) {
      if (i > 100) throw new Error('the messages never reached the archive');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
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

  it('behind HAProxy: romeo resumes on the other process after his own (the room’s holder) is killed, and is still in the room for its next holder', async () => {
    run.redis = await startRedis();
    const [one, two] = await twoNodes(run.redis.port, { MUC: '1' });
    const { front } = await behindHaproxy(one.port, two.port);
    // Round robin: romeo (@xmpp/client, stream management on) lands on process one and creates the room
    // there; juliet, the second connection, lands on two.
    const romeo = await xmppRomeo(front);
    await until(() => romeo.presences.some((p) => p.nick === 'Romeo' && p.codes.includes('110')), 'romeo in the room');
    // He created it: an instant room (the defaults), so that others may enter (XEP-0045 §10.1.2).
    await romeo.xmpp.iqCaller.set(
      clientXml('query', { xmlns: 'http://jabber.org/protocol/muc#owner' }, clientXml('x', { xmlns: 'jabber:x:data', type: 'submit' })),
      ROOM,
    );
    const juliet = await xmppUser(front, 'phone', { username: 'juliet', password: 'balcony' });
    const heardByJuliet: string[] = [];
    const leftSeenByJuliet: string[] = [];
    juliet.xmpp.on('stanza', (stanza: Element) => {
      const from = String(stanza.attrs.from ?? '');
      if (!from.startsWith(`${ROOM}/`)) return;
      if (stanza.is('message') && typeof stanza.getChildText('body') === 'string') heardByJuliet.push(String(stanza.getChildText('body')));
      if (stanza.is('presence') && stanza.attrs.type === 'unavailable') leftSeenByJuliet.push(from.slice(ROOM.length + 1));
    });
    await juliet.xmpp.send(clientXml('presence', { to: `${ROOM}/Juliet` }, clientXml('x', { xmlns: 'http://jabber.org/protocol/muc' })));
    await until(() => romeo.presences.some((p) => p.nick === 'Juliet' && p.type === 'available'), 'romeo to see juliet come in');
    await romeo.say('before');
    await until(() => heardByJuliet.includes('before'), 'juliet to hear romeo');

    let resumed = 0;
    const sm = (romeo.xmpp as unknown as { streamManagement: { on(event: 'resumed', listener: () => void): void } }).streamManagement;
    sm.on('resumed', () => {
      resumed++;
    });
    // Process one dies with the room and romeo's session. His client reconnects through HAProxy (only two is
    // left) and resumes there.
    one.child.kill('SIGKILL');
    await until(() => resumed > 0, 'romeo to resume on process two');
    // Long enough for everything process one kept on the bus to expire (SESSION_TTL_MS 2000).
    await new Promise((resolve) => setTimeout(resolve, 5000));
    // The room's next holder (two, at juliet's next message) finds romeo among its occupants: he hears her,
    // and nobody saw him leave.
    await juliet.xmpp.send(clientXml('message', { to: ROOM, type: 'groupchat' }, clientXml('body', {}, 'after the fall')));
    await until(() => heardByJuliet.includes('after the fall'), 'the room back on process two');
    await until(() => romeo.heard.some((m) => m.nick === 'Juliet' && m.body === 'after the fall'), 'romeo to hear juliet after his resume');
    expect(leftSeenByJuliet).not.toContain('Romeo');
    await romeo.say('still here');
    await until(() => heardByJuliet.includes('still here'), 'juliet to hear the resumed romeo');
    expect(two.stderr()).not.toMatch(/Error/);
  }, 180_000);

  it('a claim lost while the bus was away: the other process serves the room, the first forwards to it, nobody notices', async () => {
    run.redis = await startRedis();
    const [one, two] = await twoNodes(run.redis.port, { MUC: '1' });
    const { juliet, romeo } = await sharedRoom(one, two);
    // The claim of process 1 vanishes from Redis (as when it expired while process 1 could not reach it).
    const cli = (...args: string[]) => redisCli('redis-cli', ['-p', String(run.redis?.port), ...args]);
    const key = `xmpp:claim:localhost:muc:${ROOM}`;
    expect((await cli('GET', key)).stdout.trim()).toBe(one.node);
    const listing = `xmpp:muc:d:conference.localhost:lobby:${one.node}`;
    expect((await cli('EXISTS', listing)).stdout.trim()).toBe('1');
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
    // Process 1's heartbeat finds the claim another's: it lets go of the room (takes its listing off the bus) …
    for (let i = 0; (await cli('EXISTS', listing)).stdout.trim() !== '0'; i++) {
      if (i > 300) throw new Error('process 1 never let go of the room');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
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

  it('redis-server restarts empty under a room: its holder writes again what the next holder reads, which then takes it over', async () => {
    const port = await freePort();
    let server = await redisOn(port);
    const [one, two] = await twoNodes(port, { MUC: '1' });
    const { romeo } = await sharedRoom(one, two);
    const cli = (...args: string[]) => redisCli('redis-cli', ['-p', String(port), ...args]);
    const snapshot = 'xmpp:muc:r:conference.localhost:lobby';
    const members = 'xmpp:muc:m:conference.localhost:lobby';
    expect((await cli('EXISTS', snapshot, members)).stdout.trim()).toBe('2');

    // Redis dies and comes back empty (a key of the test's own is gone too): no claims, no occupants, no snapshots.
    await cli('SET', 'portbind-test-marker', '1');
    server.kill('SIGKILL');
    await new Promise((resolve) => server.once('exit', resolve));
    server = await redisOn(port);
    expect((await cli('EXISTS', 'portbind-test-marker')).stdout.trim()).toBe('0');
    // Process 1 (the holder) writes its claim, the room's snapshot and who sits in it again; the
    // occupants' processes their entries.
    for (let i = 0; (await cli('EXISTS', snapshot, members, `xmpp:claim:localhost:muc:${ROOM}`)).stdout.trim() !== '3'; i++) {
      if (i > 300) throw new Error('the room never came back on Redis');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await romeo.say('after the storm');
    await until(() => romeo.heard.some((m) => m.nick === 'Romeo' && m.body === 'after the storm'), 'the room after the restart');

    // And the holder dying now still hands the room over: process 2 takes it with romeo in it.
    one.child.kill('SIGKILL');
    await romeo.say('after the fall');
    await until(() => romeo.heard.some((m) => m.nick === 'Romeo' && m.body === 'after the fall'), 'the room back on process 2');
    await until(() => romeo.presences.some((p) => p.nick === 'Juliet' && p.type === 'unavailable'), 'juliet gone with process 1');
    expect(romeo.presences.filter((p) => p.nick === 'Romeo' && p.type === 'unavailable')).toEqual([]);
    expect(two.stderr()).not.toMatch(/Error/);
  }, 180_000);
});
