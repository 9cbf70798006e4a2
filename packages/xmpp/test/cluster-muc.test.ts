import { type MemoryBus, memoryBus } from '@portbind/core';
import { describe, expect, it, vi } from 'vitest';
import { defaultModules, memoryStorage, type XmppServer, type XmppStorage } from '../src/index.js';
import { type MucOptions, muc } from '../src/modules/muc/index.js';
import { dropAndResume, bound as smBound, enable as smEnable } from './cluster-smacks-support.js';
import { configure, createRoom, esc, join, NS_MUC, occupant, refusedJoin, SERVICE } from './muc-support.js';
import type { Raw } from './raw-stream.js';
import { start } from './support.js';

// One MUC service on two processes (issue 12): two servers sharing a memoryBus (`bus.peer()` is the
// other "process") and one store, each with the MUC module. A room is one room for the whole
// service: users on A and B sit in it together, whichever process holds it; it survives its
// holder's death with the occupants that are still there.

const ROOM = `lobby@${SERVICE}`;
const TTL_MS = 1000;

async function node(bus: MemoryBus, storage: XmppStorage, options: MucOptions = {}) {
  const module = muc(options);
  const started = await start({
    server: { bus, storage, cluster: { sessionTtlMs: TTL_MS }, modules: [...defaultModules(), module] },
    accounts: { nurse: 'n', tybalt: 't' },
  });
  await started.server.cluster?.ready;
  return { ...started, muc: module, bus };
}

async function cluster(options: MucOptions = {}) {
  const bus = memoryBus();
  const storage = memoryStorage();
  const a = await node(bus, storage, options);
  const b = await node(bus.peer(), storage, options);
  return { a, b, storage };
}

async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Wait until `server` mirrors `full` (the directory spreads asynchronously, as on Redis). */
function sees(server: XmppServer, full: string): Promise<void> {
  return until(() => server.cluster?.remotePresence(full)?.available === true, `${full} in the directory`);
}

const presenceFrom = (nick: string, type?: string): RegExp =>
  type === undefined
    ? new RegExp(`^<presence(?![^>]* type=)[^>]* from='${esc(`${ROOM}/${nick}`)}'`)
    : new RegExp(`^<presence(?=[^>]* type='${type}')(?=[^>]* from='${esc(`${ROOM}/${nick}`)}')`);

const groupchat = (raw: Raw, body: string, id = body.replace(/\W/g, '')): void =>
  raw.send(`<message to='${ROOM}' type='groupchat' id='${id}'><body>${body}</body></message>`);

const bodyFrom = (nick: string, body: string): RegExp =>
  new RegExp(`^<message[^>]* from='${esc(`${ROOM}/${nick}`)}'[^>]*>(?:(?!</message>)[\\s\\S])*<body>${esc(body)}</body>`);

/** juliet on A creates the room (A holds it: the first process to get a stanza for it); romeo on B joins it. */
async function juliettAndRomeo(a: Awaited<ReturnType<typeof node>>, b: Awaited<ReturnType<typeof node>>, fields?: Record<string, string>) {
  const juliet = await occupant(a.port, 'juliet');
  const romeo = await occupant(b.port, 'romeo');
  await sees(a.server, 'romeo@localhost/raw');
  await sees(b.server, 'juliet@localhost/raw');
  await createRoom(juliet, 'lobby', 'Juliet');
  if (fields !== undefined) expect(await configure(juliet, 'lobby', fields)).toContain("type='result'");
  for (const body of ['two households', 'both alike']) {
    groupchat(juliet, body);
    await juliet.next(bodyFrom('Juliet', body));
  }
  const self = await join(romeo, 'lobby', 'Romeo');
  return { juliet, romeo, self };
}

describe('MUC on several processes (a shared bus)', () => {
  it('one room for users on A and B: presences, history on join, groupchat both ways, private messages, a leave by disconnection', async () => {
    const { a, b } = await cluster();
    const { juliet, romeo, self } = await juliettAndRomeo(a, b);
    // Held by A alone: B forwarded romeo's join to it.
    expect(a.muc.rooms()).toEqual(['lobby']);
    expect(b.muc.rooms()).toEqual([]);
    expect(self).toContain("<item affiliation='none' role='participant' jid='romeo@localhost/raw'/>");
    // romeo saw juliet first, then himself, then the history (delayed, from the room) and the subject.
    expect(romeo.take(presenceFrom('Juliet'))[0]).toContain("<item affiliation='owner' role='moderator'/>");
    const history = [await romeo.next(bodyFrom('Juliet', 'two households')), await romeo.next(bodyFrom('Juliet', 'both alike'))];
    for (const message of history) expect(message).toMatch(new RegExp(`<delay xmlns='urn:xmpp:delay' from='${esc(ROOM)}' stamp='`));
    await romeo.next(/^<message[^>]*type='groupchat'[\s\S]*<subject\/>/);
    // juliet (a moderator) sees romeo come in with his real JID.
    expect(await juliet.next(presenceFrom('Romeo'))).toContain("jid='romeo@localhost/raw'");
    expect(a.muc.occupants('lobby')).toBe(2);

    // Groupchat from B reaches both; from A too.
    groupchat(romeo, 'in fair Verona');
    expect(await juliet.next(bodyFrom('Romeo', 'in fair Verona'))).toContain("to='juliet@localhost/raw'");
    expect(await romeo.next(bodyFrom('Romeo', 'in fair Verona'))).toContain("to='romeo@localhost/raw'");
    groupchat(juliet, 'where we lay our scene');
    await romeo.next(bodyFrom('Juliet', 'where we lay our scene'));
    await juliet.next(bodyFrom('Juliet', 'where we lay our scene'));

    // A private message from B to the occupant on A, and the answer.
    romeo.send(`<message to='${ROOM}/Juliet' type='chat' id='pm1'><body>a word alone</body></message>`);
    const pm = await juliet.next(/^<message[^>]* id='pm1'/);
    expect(pm).toContain(`from='${ROOM}/Romeo'`);
    expect(pm).toContain('a word alone');
    juliet.send(`<message to='${ROOM}/Romeo' type='chat' id='pm2'><body>speak</body></message>`);
    expect(await romeo.next(/^<message[^>]* id='pm2'/)).toContain(`from='${ROOM}/Juliet'`);

    // A new presence from B is broadcast by the room.
    romeo.send(`<presence to='${ROOM}/Romeo'><show>away</show></presence>`);
    expect(await juliet.next(presenceFrom('Romeo'))).toContain('<show>away</show>');

    // romeo's connection drops (no unavailable from him): B tells the room on A, juliet sees him leave.
    romeo.socket.destroy();
    const left = await juliet.next(presenceFrom('Romeo', 'unavailable'));
    expect(left).toContain("role='none'");
    await until(() => a.muc.occupants('lobby') === 1, 'romeo out of the room');
    // And nobody on B holds anything of it.
    expect(b.muc.rooms()).toEqual([]);
  });

  it('a room created on B by a user of B is held by B; a user of A joins it and leaves with an unavailable presence', async () => {
    const { a, b } = await cluster();
    const nurse = await occupant(b.port, 'nurse');
    const tybalt = await occupant(a.port, 'tybalt');
    await sees(a.server, 'nurse@localhost/raw');
    await sees(b.server, 'tybalt@localhost/raw');
    await createRoom(nurse, 'kitchen', 'Nurse');
    await join(tybalt, 'kitchen', 'Tybalt');
    expect(b.muc.rooms()).toEqual(['kitchen']);
    expect(a.muc.rooms()).toEqual([]);
    await nurse.next(/^<presence[^>]* from='kitchen@conference\.localhost\/Tybalt'/);
    // Disco on A: the room's info (forwarded to B), and the service lists it (B lists it on the bus).
    const info = await tybalt.iq('ri', "<query xmlns='http://jabber.org/protocol/disco#info'/>", `type='get' to='kitchen@${SERVICE}'`);
    expect(info).toContain("<identity category='conference' type='text' name='kitchen'/>");
    expect(info).toContain("<field var='muc#roominfo_occupants' label='Number of occupants'><value>2</value></field>");
    const items = await tybalt.iq('si', "<query xmlns='http://jabber.org/protocol/disco#items'/>", `type='get' to='${SERVICE}'`);
    expect(items).toContain(`<item jid='kitchen@${SERVICE}' name='kitchen'/>`);
    // A nick already taken in the room (by B's user) is refused to A's user, by the room on B.
    const juliet = await occupant(a.port, 'juliet');
    juliet.send(`<presence to='kitchen@${SERVICE}/Nurse'><x xmlns='${NS_MUC}'/></presence>`);
    const refused = await juliet.next(/^<presence[^>]* type='error'/);
    expect(refused).toContain('<conflict');
    expect(refused).toContain(`by='kitchen@${SERVICE}'`);

    tybalt.send(`<presence to='kitchen@${SERVICE}/Tybalt' type='unavailable'><status>away to Mantua</status></presence>`);
    expect(await tybalt.next(/^<presence[^>]* type='unavailable'/)).toContain("code='110'");
    expect(await nurse.next(/^<presence(?=[^>]* type='unavailable')[^>]* from='kitchen@conference\.localhost\/Tybalt'/)).toContain(
      'away to Mantua',
    );
    await until(() => b.muc.occupants('kitchen') === 1, 'tybalt out of the room');
  });

  it('maxJoinedRoomsPerUser counts the rooms held by every process: the third join is refused wherever the room is held', async () => {
    const { a, b } = await cluster({ maxJoinedRoomsPerUser: 2 });
    const juliet = await occupant(a.port, 'juliet');
    const nurse = await occupant(b.port, 'nurse');
    await sees(b.server, 'juliet@localhost/raw');
    // Rooms held by A (juliet's process) and by B (the nurse's).
    await createRoom(juliet, 'balcony', 'Juliet');
    await createRoom(nurse, 'kitchen', 'Nurse');
    await createRoom(nurse, 'chapel', 'Nurse');
    expect(a.muc.rooms()).toEqual(['balcony']);
    expect(b.muc.rooms().sort()).toEqual(['chapel', 'kitchen']);
    await join(juliet, 'kitchen', 'Juliet');
    // B holds one of her two rooms; the other is on A, which B reads in her directory record.
    const refused = await refusedJoin(juliet, 'chapel', 'Juliet');
    expect(refused).toContain('<policy-violation');
    expect(refused).toContain('you are in 2 rooms already');
    // Leaving one (on A) makes room for another (on B), once B's mirror of her record says so.
    juliet.send(`<presence to='balcony@${SERVICE}/Juliet' type='unavailable'/>`);
    await juliet.next(/^<presence(?=[^>]* type='unavailable')[^>]* from='balcony@/);
    await until(async () => {
      juliet.send(`<presence to='chapel@${SERVICE}/Juliet'><x xmlns='${NS_MUC}'/></presence>`);
      const answer = await juliet.next(/^<presence[^>]* from='chapel@conference\.localhost\/Juliet'/);
      return !answer.includes("type='error'");
    }, 'the join to chapel once she left balcony');
    expect(b.muc.occupants('chapel')).toBe(2);
  });

  it('maxRoomsPerUser and maxRooms count the rooms every process holds: the third room is refused on the other process', async () => {
    const { a, b } = await cluster({ maxRoomsPerUser: 2, maxRooms: 3 });
    const onA = await occupant(a.port, 'juliet', 'phone');
    const onB = await occupant(b.port, 'juliet', 'laptop');
    await createRoom(onA, 'balcony', 'Juliet');
    await createRoom(onB, 'orchard', 'Juliet');
    expect(a.muc.rooms()).toEqual(['balcony']);
    expect(b.muc.rooms()).toEqual(['orchard']);
    // A reads the service's rooms at most once a second: past that, it sees B's.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const mine = await refusedJoin(onA, 'tomb', 'Juliet');
    expect(mine).toContain('<policy-violation');
    expect(mine).toContain('you created 2 rooms already');
    expect(a.muc.rooms()).toEqual(['balcony']);
    // The service's third room (the nurse's, on B); then none more, wherever it would be held.
    const nurse = await occupant(b.port, 'nurse');
    await createRoom(nurse, 'kitchen', 'Nurse');
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const romeo = await occupant(a.port, 'romeo');
    const full = await refusedJoin(romeo, 'garden', 'Romeo');
    expect(full).toContain('<resource-constraint');
    expect(full).toContain('this service holds no more rooms');
    // One room destroyed (on B) makes room for one more (on A).
    const destroyed = await nurse.iq(
      'destroy',
      "<query xmlns='http://jabber.org/protocol/muc#owner'><destroy/></query>",
      `type='set' to='kitchen@${SERVICE}'`,
    );
    expect(destroyed).toContain("type='result'");
    await until(async () => {
      romeo.send(`<presence to='garden@${SERVICE}/Romeo'><x xmlns='${NS_MUC}'/></presence>`);
      const answer = await romeo.next(/^<presence[^>]* from='garden@conference\.localhost\/Romeo'/);
      return !answer.includes("type='error'");
    }, 'a room for romeo once the kitchen is gone');
    expect(a.muc.rooms().sort()).toEqual(['balcony', 'garden']);
  });

  it('maxRoomsPerUser counts a persistent room nobody holds (its holder died): read from the store', async () => {
    const { a, b } = await cluster({ maxRoomsPerUser: 1 });
    const onA = await occupant(a.port, 'juliet', 'phone');
    await createRoom(onA, 'crypt', 'Juliet');
    expect(await configure(onA, 'crypt', { 'muc#roomconfig_persistentroom': '1' })).toContain("type='result'");
    a.bus.kill();
    onA.socket.destroy();
    await a.service.stop();
    const onB = await occupant(b.port, 'juliet', 'laptop');
    // A's directory entry for the room expires (TTL_MS without A's heartbeat): the room is then only in the store.
    await new Promise((resolve) => setTimeout(resolve, 2.5 * TTL_MS));
    expect(b.muc.rooms()).toEqual([]);
    const refused = await refusedJoin(onB, 'chapel', 'Juliet');
    expect(refused).toContain('<policy-violation');
    expect(refused).toContain('you created 1 rooms already');
    expect(b.muc.rooms()).toEqual([]);
  });

  it('a session resumed on B while A lives (A holds the room) is still in the room when A dies later and B takes it over', async () => {
    const { a, b } = await cluster();
    // juliet on A, stream management with resumption, creates the room there; the nurse on B joins.
    const juliet = await smBound(a.port, 'juliet', 'balcony', 'phone');
    const id = await smEnable(juliet);
    juliet.write(`<presence/><presence to='${ROOM}/Juliet'><x xmlns='${NS_MUC}'/></presence>`);
    await juliet.until(/code='110'/);
    juliet.write(
      `<iq type='set' id='create' to='${ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>`,
    );
    await juliet.until(/<iq[^>]* id='create'/);
    const nurse = await occupant(b.port, 'nurse');
    await sees(b.server, 'juliet@localhost/phone');
    await join(nurse, 'lobby', 'Nurse');
    await juliet.until(/from='lobby@conference\.localhost\/Nurse'/);
    expect(a.muc.rooms()).toEqual(['lobby']);
    // Her link to A drops (A lives, keeps the session hibernating); she resumes on B.
    const back = await dropAndResume(juliet, id, b.port);
    groupchat(nurse, 'while A lives');
    await back.until(/<body>while A lives<\/body>/);
    // Then A dies: B takes the room over, and she is among its occupants.
    a.bus.kill();
    await a.service.stop();
    groupchat(nurse, 'after the fall');
    await nurse.next(bodyFrom('Nurse', 'after the fall'), 20_000);
    expect(b.muc.rooms()).toEqual(['lobby']);
    await back.until(/<body>after the fall<\/body>/);
    expect(b.muc.occupants('lobby')).toBe(2);
    expect(nurse.take(presenceFrom('Juliet', 'unavailable'))).toEqual([]);
  });

  it('a session that moved from A to B (A lives) and leaves a room there is not an occupant when the room is rebuilt elsewhere', async () => {
    // Three processes: C holds the room (the nurse creates it there), juliet joins from A, romeo from B.
    const { a, b, storage } = await cluster();
    const c = await node(b.bus.peer(), storage);
    const nurse = await occupant(c.port, 'nurse');
    await createRoom(nurse, 'lobby', 'Nurse');
    const juliet = await smBound(a.port, 'juliet', 'balcony', 'phone');
    const id = await smEnable(juliet);
    juliet.write(`<presence/><presence to='${ROOM}/Juliet'><x xmlns='${NS_MUC}'/></presence>`);
    await juliet.until(/code='110'/);
    await nurse.next(presenceFrom('Juliet'));
    const romeo = await occupant(b.port, 'romeo');
    await join(romeo, 'lobby', 'Romeo');
    expect(c.muc.rooms()).toEqual(['lobby']);
    // Her link to A drops (A lives on); she resumes on B, then leaves the room from there.
    const back = await dropAndResume(juliet, id, b.port);
    back.write(`<presence to='${ROOM}/Juliet' type='unavailable'/>`);
    await romeo.next(presenceFrom('Juliet', 'unavailable'));
    // C dies: A or B takes the room over from what the bus says of its occupants. Juliet's session lives
    // (on B), so an entry of hers that A kept refreshing would count her in again.
    c.bus.kill();
    await c.service.stop();
    groupchat(romeo, 'after the fall');
    await romeo.next(bodyFrom('Romeo', 'after the fall'), 20_000);
    const holder = [a, b].find((node) => node.muc.rooms().includes('lobby'));
    expect(holder).toBeDefined();
    expect(holder?.muc.occupants('lobby')).toBe(1);
    // And what she still does on B is hers to keep there: she joins again and is counted once.
    back.write(`<presence to='${ROOM}/Juliet'><x xmlns='${NS_MUC}'/></presence>`);
    await until(() => holder?.muc.occupants('lobby') === 2, 'juliet in the room again');
    back.write(`<presence to='${ROOM}/Juliet' type='unavailable'/>`);
    await until(() => holder?.muc.occupants('lobby') === 1, 'juliet out of the room again');
  });

  it('the occupants of a process that dies leave the room its holder keeps', async () => {
    const { a, b } = await cluster();
    const { juliet } = await juliettAndRomeo(a, b);
    await juliet.next(presenceFrom('Romeo'));
    // B dies (its bus stops: no heartbeats, no unavailable presence from it).
    b.bus.kill();
    const left = await juliet.next(presenceFrom('Romeo', 'unavailable'), 15_000);
    expect(left).toContain("role='none'");
    expect(a.muc.occupants('lobby')).toBe(1);
    await b.service.stop();
  });

  it('the holder dies: the room comes back on the other process with its surviving occupant, its history, and takes new joins', async () => {
    const { a, b } = await cluster();
    // A room that does not archive: its history comes from the bus; temporary: its configuration too.
    const { juliet, romeo } = await juliettAndRomeo(a, b, { 'muc#roomconfig_enablelogging': '0', 'muc#roomconfig_roomname': 'The Lobby' });
    await juliet.next(presenceFrom('Romeo'));
    expect(a.muc.rooms()).toEqual(['lobby']);
    groupchat(romeo, 'before the fall');
    await romeo.next(bodyFrom('Romeo', 'before the fall'));

    // A crashes: its bus stops, its server goes without a clean shutdown (its sockets just close).
    a.bus.kill();
    juliet.socket.destroy();
    await a.service.stop();

    // romeo talks on: B claims the room once A's claim expired, loads it, and serves it.
    groupchat(romeo, 'after the fall');
    expect(await romeo.next(bodyFrom('Romeo', 'after the fall'), 20_000)).toContain("to='romeo@localhost/raw'");
    expect(b.muc.rooms()).toEqual(['lobby']);
    // juliet's session died with A: she is not in the room B rebuilt (romeo sees her leave); romeo is.
    expect(await romeo.next(presenceFrom('Juliet', 'unavailable'))).toContain("<item affiliation='owner' role='none'/>");
    expect(b.muc.occupants('lobby')).toBe(1);

    // A new join on B: sees romeo (not juliet), the history from before the fall, and its name.
    const nurse = await occupant(b.port, 'nurse');
    nurse.send(`<presence to='${ROOM}/Nurse'><x xmlns='${NS_MUC}'><history maxstanzas='10'/></x></presence>`);
    const nurseSelf = await nurse.next(new RegExp(`^<presence[^>]* from='${esc(ROOM)}/Nurse'[\\s\\S]*code='110'`));
    expect(nurseSelf).toContain("role='participant'");
    expect(nurse.take(presenceFrom('Romeo')).length).toBe(1);
    expect(nurse.take(presenceFrom('Juliet')).length).toBe(0);
    const bodies: string[] = [];
    for (;;) {
      const next = await nurse.next(/^<message[^>]*type='groupchat'/);
      if (next.includes('<subject')) break;
      bodies.push(/<body>([^<]*)<\/body>/.exec(next)?.[1] ?? '');
    }
    expect(bodies).toEqual(['two households', 'both alike', 'before the fall', 'after the fall']);
    await romeo.next(presenceFrom('Nurse'));
    const info = await nurse.iq('ri', "<query xmlns='http://jabber.org/protocol/disco#info'/>", `type='get' to='${ROOM}'`);
    expect(info).toContain("name='The Lobby'");
    expect(info).toContain("<feature var='muc_temporary'/>");

    // The owner (juliet) comes back on B: still the owner (the affiliations came along).
    const back = await occupant(b.port, 'juliet', 'again');
    expect(await join(back, 'lobby', 'Juliet')).toContain("affiliation='owner' role='moderator'");
    groupchat(nurse, 'the end');
    await back.next(bodyFrom('Nurse', 'the end'));
    await romeo.next(bodyFrom('Nurse', 'the end'));
  });

  it('a persistent, archived room whose holder died is loaded from the store by the next one, history from the archive', async () => {
    const { a, b } = await cluster();
    const { juliet, romeo } = await juliettAndRomeo(a, b, { 'muc#roomconfig_persistentroom': '1', 'muc#roomconfig_historylength': '2' });
    await juliet.next(presenceFrom('Romeo'));
    groupchat(juliet, 'parting is such sweet sorrow');
    await romeo.next(bodyFrom('Juliet', 'parting is such sweet sorrow'));
    a.bus.kill();
    juliet.socket.destroy();
    await a.service.stop();

    // The next stanza for the room (an IQ from B) makes B take it over.
    const info = await romeo.iq('ri', "<query xmlns='http://jabber.org/protocol/disco#info'/>", `type='get' to='${ROOM}'`);
    expect(info).toContain("<feature var='muc_persistent'/>");
    expect(info).toContain("<field var='muc#roominfo_occupants' label='Number of occupants'><value>1</value></field>");
    expect(b.muc.rooms()).toEqual(['lobby']);
    await romeo.next(presenceFrom('Juliet', 'unavailable'));
    const nurse = await occupant(b.port, 'nurse');
    await join(nurse, 'lobby', 'Nurse');
    const history: string[] = [];
    for (;;) {
      const next = await nurse.next(/^<message[^>]*type='groupchat'/);
      if (next.includes('<subject')) break;
      expect(next).toContain(`<stanza-id xmlns='urn:xmpp:sid:0' by='${ROOM}'`);
      history.push(/<body>([^<]*)<\/body>/.exec(next)?.[1] ?? '');
    }
    // The newest two (the room's history length), from the shared archive.
    expect(history).toEqual(['both alike', 'parting is such sweet sorrow']);
  });

  it('errors across processes: no such room (nothing held after), a room that cannot be reached while the bus is away', async () => {
    const { a, b } = await cluster();
    const { juliet, romeo } = await juliettAndRomeo(a, b);
    await juliet.next(presenceFrom('Romeo'));
    // A message to a room nobody has: item-not-found from the room, as on one process; B holds nothing after it.
    romeo.send(`<message to='nowhere@${SERVICE}' type='groupchat' id='nw'><body>anyone?</body></message>`);
    const none = await romeo.next(/^<message[^>]* id='nw'/);
    expect(none).toContain("type='error'");
    expect(none).toContain('<item-not-found');
    expect(b.muc.rooms()).toEqual([]);
    // … so that A may create it at once (B let go of its claim).
    await createRoom(juliet, 'nowhere', 'Juliet');
    expect(a.muc.rooms().sort()).toEqual(['lobby', 'nowhere']);

    // Stanzas to a room that does not exist cost the bus a claim and a load once a second per name, not each.
    const view = b.server.cluster;
    if (view === undefined) throw new Error('no cluster');
    const claims = vi.spyOn(view, 'claim');
    for (let i = 0; i < 30; i++) romeo.send(`<message to='ghost@${SERVICE}' type='groupchat' id='g${i}'><body>boo</body></message>`);
    for (let i = 0; i < 30; i++) expect(await romeo.next(new RegExp(`^<message[^>]* id='g${i}'`))).toContain('<item-not-found');
    // (One; a few if this box is so slow that the thirty take more than a second.)
    expect(claims.mock.calls.filter(([name]) => name === `muc:ghost@${SERVICE}`).length).toBeLessThanOrEqual(3);
    // A join creates it all the same, at once.
    const tybalt = await occupant(b.port, 'tybalt');
    expect(await join(tybalt, 'ghost', 'Tybalt')).toContain("code='201'");
    expect(b.muc.rooms()).toEqual(['ghost']);
    claims.mockRestore();

    // B loses its bus (its process can no longer reach Redis): a stanza from B for A's room is answered
    // recipient-unavailable by the room, never dropped; A's room goes on for A's users.
    b.bus.kill();
    groupchat(romeo, 'can you hear me', 'lost');
    const lost = await romeo.next(/^<message[^>]* id='lost'/);
    expect(lost).toContain("type='error'");
    expect(lost).toContain('<recipient-unavailable');
    expect(lost).toContain(`by='${ROOM}'`);
    groupchat(juliet, 'still here');
    await juliet.next(bodyFrom('Juliet', 'still here'));
    await b.service.stop();
  });
});
