import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join as joinPath } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { sqliteStorage } from '../src/index.js';
import { admin, configure, createRoom, join, mucServer, NS_MUC_OWNER, occupant, refusedJoin, SERVICE } from './muc-support.js';

// History on join (XEP-0045 §7.2.14), the room's archive (XEP-0313 on the room JID), room
// destruction, and persistent rooms that survive a restart on the SQLite file.

const ROOM = `lobby@${SERVICE}`;
const mamForm = (fields: Record<string, string>) =>
  `<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>${Object.entries(fields)
    .map(([name, value]) => `<field var='${name}'><value>${value}</value></field>`)
    .join('')}</x>`;

describe('MUC history, archive and persistence', () => {
  it('history on join honours maxstanzas, maxchars, seconds and since, within the room’s history length', async () => {
    let clock = Date.UTC(2026, 10, 28, 8, 0, 0);
    const { port } = await mucServer({ now: () => clock });
    const juliet = await occupant(port, 'juliet');
    await createRoom(juliet, 'lobby', 'Juliet');
    expect(await configure(juliet, 'lobby', { 'muc#roomconfig_historylength': '4' })).toContain("type='result'");
    for (let i = 0; i < 6; i++) {
      clock += 60_000;
      juliet.send(`<message to='${ROOM}' type='groupchat' id='h${i}'><body>line ${i}</body></message>`);
      await juliet.next(new RegExp(`id='h${i}'`));
    }
    const historyOf = async (user: string, inner: string): Promise<string[]> => {
      const raw = await occupant(port, user, `r${Math.random().toString(36).slice(2)}`);
      await join(raw, 'lobby', user, inner);
      await raw.next(/<subject/);
      const lines = raw.take(/<delay /).map((m) => /<body>([^<]*)<\/body>/.exec(m)?.[1] ?? '');
      raw.socket.destroy();
      await juliet.next(new RegExp(`from='${ROOM}/${user}'[^>]*type='unavailable'`));
      return lines;
    };
    // The room keeps 4; asking for more gets 4.
    expect(await historyOf('romeo', "<history maxstanzas='100'/>")).toEqual(['line 2', 'line 3', 'line 4', 'line 5']);
    expect(await historyOf('romeo', "<history maxstanzas='2'/>")).toEqual(['line 4', 'line 5']);
    expect(await historyOf('romeo', "<history maxchars='0'/>")).toEqual([]);
    // maxchars counts each message as stored: room for two and a half.
    const size = `<message from='${ROOM}/Juliet' type='groupchat' id='h5'><body>line 5</body></message>`.length;
    expect(await historyOf('romeo', `<history maxchars='${Math.floor(size * 2.5)}'/>`)).toEqual(['line 4', 'line 5']);
    // The last 150 seconds: lines 4 and 5 (sent 60 and 0 seconds before now), not line 3 (120+60).
    expect(await historyOf('romeo', "<history seconds='90'/>")).toEqual(['line 4', 'line 5']);
    const since = new Date(clock - 60_000).toISOString();
    expect(await historyOf('romeo', `<history since='${since}'/>`)).toEqual(['line 4', 'line 5']);
    // The delay stamp is the time the message was sent.
    const raw = await occupant(port, 'nurse');
    await join(raw, 'lobby', 'Nurse', "<history maxstanzas='1'/>");
    expect(await raw.next(/<delay /)).toContain(`stamp='${new Date(clock).toISOString().replace('.000Z', 'Z')}'`);
  });

  it('answers MAM queries on the room JID with paging, and keeps the archive to members of a members-only room', async () => {
    const { port } = await mucServer();
    const juliet = await occupant(port, 'juliet');
    const romeo = await occupant(port, 'romeo');
    await createRoom(juliet, 'lobby', 'Juliet');
    await join(romeo, 'lobby', 'Romeo');
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const sender = i % 2 === 0 ? juliet : romeo;
      sender.send(`<message to='${ROOM}' type='groupchat' id='a${i}'><body>msg ${i}</body></message>`);
      const got = await juliet.next(new RegExp(`id='a${i}'`));
      ids.push(/<stanza-id xmlns='urn:xmpp:sid:0' by='lobby@conference.localhost' id='([^']+)'/.exec(got)?.[1] as string);
    }
    const nurse = await occupant(port, 'nurse');
    nurse.send(
      `<iq type='set' id='q1' to='${ROOM}'><query xmlns='urn:xmpp:mam:2' queryid='one'><set xmlns='http://jabber.org/protocol/rsm'><max>3</max></set></query></iq>`,
    );
    const fin = await nurse.next(/^<iq[^>]*id='q1'/);
    expect(fin).toContain("<fin xmlns='urn:xmpp:mam:2' queryid='one'>");
    expect(fin).toContain('<count>5</count>');
    const page = nurse.take(/<result xmlns='urn:xmpp:mam:2' queryid='one'/);
    expect(page.map((m) => /<body>([^<]*)</.exec(m)?.[1])).toEqual(['msg 0', 'msg 1', 'msg 2']);
    expect(page.map((m) => /<result [^>]* id='([^']+)'/.exec(m)?.[1])).toEqual(ids.slice(0, 3));
    expect(page[1]).toContain(`from='${ROOM}'`);
    expect(page[1]).toContain(`<message xmlns='jabber:client' from='${ROOM}/Romeo' type='groupchat' id='a1'>`);
    expect(page[1]).toMatch(/<forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' stamp='[^']+'\/>/);
    // The next page, after the last id; `with` an occupant JID.
    const last = /<last>([^<]+)<\/last>/.exec(fin)?.[1] as string;
    nurse.send(
      `<iq type='set' id='q2' to='${ROOM}'><query xmlns='urn:xmpp:mam:2' queryid='two'><set xmlns='http://jabber.org/protocol/rsm'><after>${last}</after></set></query></iq>`,
    );
    expect(await nurse.next(/^<iq[^>]*id='q2'/)).toContain("complete='true'");
    expect(nurse.take(/queryid='two'/).map((m) => /<body>([^<]*)</.exec(m)?.[1])).toEqual(['msg 3', 'msg 4']);
    nurse.send(
      `<iq type='set' id='q3' to='${ROOM}'><query xmlns='urn:xmpp:mam:2' queryid='three'>${mamForm({ with: `${ROOM}/Romeo` })}</query></iq>`,
    );
    await nurse.next(/^<iq[^>]*id='q3'/);
    expect(nurse.take(/queryid='three'/).map((m) => /<body>([^<]*)</.exec(m)?.[1])).toEqual(['msg 1', 'msg 3']);
    // A bad form: bad-request; an unknown field: feature-not-implemented.
    const bad = await nurse.iq('q4', `<query xmlns='urn:xmpp:mam:2'>${mamForm({ start: 'yesterday' })}</query>`, `type='set' to='${ROOM}'`);
    expect(bad).toContain('<bad-request');
    const unknown = await nurse.iq('q5', `<query xmlns='urn:xmpp:mam:2'>${mamForm({ color: 'red' })}</query>`, `type='set' to='${ROOM}'`);
    expect(unknown).toContain('<feature-not-implemented');
    // Members-only: the nurse (no member) may not read it; romeo (made a member) may.
    await configure(juliet, 'lobby', { 'muc#roomconfig_membersonly': '1' });
    const denied = await nurse.iq('q6', "<query xmlns='urn:xmpp:mam:2'/>", `type='set' to='${ROOM}'`);
    expect(denied).toContain('<forbidden');
    await admin(juliet, 'lobby', "<item affiliation='member' jid='romeo@localhost'/>");
    expect(await romeo.iq('q7', "<query xmlns='urn:xmpp:mam:2' queryid='r'/>", `type='set' to='${ROOM}'`)).toContain('<count>5</count>');
  });

  it('a room that does not archive sends no stanza id (nothing a MAM query could find) and refuses MAM', async () => {
    const { port } = await mucServer();
    const juliet = await occupant(port, 'juliet');
    await createRoom(juliet, 'quiet', 'Juliet');
    const result = await configure(juliet, 'quiet', { 'muc#roomconfig_enablelogging': '0' });
    expect(result).toContain("type='result'");
    juliet.send(`<message to='quiet@${SERVICE}' type='groupchat' id='q1'><body>off the record</body></message>`);
    const got = await juliet.next(/^<message[^>]*id='q1'/);
    expect(got).toContain('<body>off the record</body>');
    expect(got).not.toContain('stanza-id');
    const mam = await juliet.iq('m', "<query xmlns='urn:xmpp:mam:2'/>", `type='set' to='quiet@${SERVICE}'`);
    expect(mam).toContain('<feature-not-implemented');
  });

  it('destroys a room (§10.9): occupants get unavailable with <destroy/>, the room and its archive are gone', async () => {
    const { port, muc } = await mucServer();
    const juliet = await occupant(port, 'juliet');
    const romeo = await occupant(port, 'romeo');
    await createRoom(juliet, 'lobby', 'Juliet');
    await join(romeo, 'lobby', 'Romeo');
    romeo.send(`<message to='${ROOM}' type='groupchat' id='x'><body>archived</body></message>`);
    await juliet.next(/id='x'/);
    expect(await juliet.iq('m0', "<query xmlns='urn:xmpp:mam:2'/>", `type='set' to='${ROOM}'`)).toContain('<count>1</count>');
    expect(await romeo.iq('d0', `<query xmlns='${NS_MUC_OWNER}'><destroy/></query>`, `type='set' to='${ROOM}'`)).toContain('<forbidden');
    const destroyed = await juliet.iq(
      'd',
      `<query xmlns='${NS_MUC_OWNER}'><destroy jid='other@${SERVICE}'><reason>moving</reason></destroy></query>`,
      `type='set' to='${ROOM}'`,
    );
    expect(destroyed).toContain("type='result'");
    const notice = await romeo.next(/<destroy /);
    expect(notice).toContain(`<destroy jid='other@${SERVICE}'><reason>moving</reason></destroy>`);
    expect(notice).toContain("type='unavailable'");
    await vi.waitFor(() => expect(muc.rooms()).toEqual([]));
    const gone = await romeo.iq('g', "<query xmlns='http://jabber.org/protocol/disco#info'/>", `type='get' to='${ROOM}'`);
    expect(gone).toContain('<item-not-found');
    // Created again: a new room with an empty archive.
    await createRoom(juliet, 'lobby', 'Juliet');
    expect(await juliet.iq('m', "<query xmlns='urn:xmpp:mam:2'/>", `type='set' to='${ROOM}'`)).toContain('<count>0</count>');
    await juliet.iq('d2', `<query xmlns='${NS_MUC_OWNER}'><destroy/></query>`, `type='set' to='${ROOM}'`);
    // A temporary room is gone once its last occupant leaves.
    await createRoom(juliet, 'brief', 'Juliet');
    expect(muc.rooms()).toEqual(['brief']);
    juliet.send(`<presence to='brief@${SERVICE}/Juliet' type='unavailable'/>`);
    await juliet.next(/type='unavailable'/);
    await vi.waitFor(() => expect(muc.rooms()).toEqual([]));
  });

  it('a persistent room keeps its configuration, affiliations, subject and history across a restart on SQLite', async () => {
    const dir = await mkdtemp(joinPath(tmpdir(), 'portbind-muc-'));
    try {
      const file = joinPath(dir, 'xmpp.sqlite');
      const first = await mucServer({}, { storage: sqliteStorage({ file }) });
      const juliet = await occupant(first.port, 'juliet');
      await createRoom(juliet, 'lobby', 'Juliet');
      expect(
        await configure(juliet, 'lobby', {
          'muc#roomconfig_persistentroom': '1',
          'muc#roomconfig_roomname': 'The Lobby',
          'muc#roomconfig_membersonly': '1',
        }),
      ).toContain("type='result'");
      await admin(
        juliet,
        'lobby',
        "<item affiliation='member' jid='romeo@localhost'/><item affiliation='outcast' jid='tybalt@localhost'/>",
      );
      juliet.send(`<message to='${ROOM}' type='groupchat' id='t'><subject>Before the restart</subject></message>`);
      await juliet.next(/id='t'/);
      for (const body of ['one', 'two']) {
        juliet.send(`<message to='${ROOM}' type='groupchat' id='${body}'><body>${body}</body></message>`);
        await juliet.next(new RegExp(`id='${body}'`));
      }
      await juliet.sync();
      await first.service.stop();

      const second = await mucServer({}, { storage: sqliteStorage({ file }) });
      const romeo = await occupant(second.port, 'romeo');
      const info = await romeo.iq('i', "<query xmlns='http://jabber.org/protocol/disco#info'/>", `type='get' to='${ROOM}'`);
      expect(info).toContain("name='The Lobby'");
      expect(info).toContain("<feature var='muc_persistent'/>");
      expect(info).toContain("<feature var='muc_membersonly'/>");
      // Romeo is a member: in, with the history and the subject; not created anew (no 201).
      const self = await join(romeo, 'lobby', 'Romeo');
      expect(self).not.toContain("code='201'");
      expect(self).toContain("affiliation='member'");
      expect(second.muc.rooms()).toEqual(['lobby']);
      const history = [await romeo.next(/<body>one/), await romeo.next(/<body>two/)];
      for (const message of history) expect(message).toContain(`from='${ROOM}/Juliet'`);
      expect(await romeo.next(/<subject>/)).toContain('<subject>Before the restart</subject>');
      const tybalt = await occupant(second.port, 'tybalt');
      expect(await refusedJoin(tybalt, 'lobby', 'Tybalt')).toContain('<forbidden');
      const nurse = await occupant(second.port, 'nurse');
      expect(await refusedJoin(nurse, 'lobby', 'Nurse')).toContain('<registration-required');
      // The owner is still the owner; the archive is there.
      const juliet2 = await occupant(second.port, 'juliet');
      const form = await juliet2.iq('f', `<query xmlns='${NS_MUC_OWNER}'/>`, `type='get' to='${ROOM}'`);
      expect(form).toContain("<field var='muc#roomconfig_roomname' type='text-single' label='Title'><value>The Lobby</value>");
      expect(await juliet2.iq('m', "<query xmlns='urn:xmpp:mam:2'/>", `type='set' to='${ROOM}'`)).toContain('<count>2</count>');
      await second.service.stop();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
