import { describe, expect, it, vi } from 'vitest';
import { defaultModules, memoryStorage, XmlElement, type XmppModule } from '../src/index.js';
import { muc } from '../src/modules/muc/index.js';
import { createRoom, join, mucServer, NS_MUC_OWNER, occupant, refusedJoin, SERVICE } from './muc-support.js';
import { Raw } from './raw-stream.js';
import { start } from './support.js';

// Bad input and limits over raw sockets: each gets the error XEP-0045 (or the stream) names, and the
// room and its other occupants live on.

const ROOM = `lobby@${SERVICE}`;

describe('MUC limits and bad input', () => {
  it('a 1 MB message to a room ends the sender’s stream with policy-violation; the room sees it leave and goes on', async () => {
    const { port } = await mucServer({ lockNewRooms: false });
    const juliet = await occupant(port, 'juliet');
    const romeo = await occupant(port, 'romeo');
    await join(juliet, 'lobby', 'Juliet');
    await join(romeo, 'lobby', 'Romeo');
    romeo.send(`<message to='${ROOM}' type='groupchat' id='big'><body>${'x'.repeat(1024 * 1024)}</body></message>`);
    const error = await romeo.next(/^<stream:error>/);
    expect(error).toContain('<policy-violation');
    await vi.waitFor(() => expect(romeo.closed).toBe(true), { timeout: 10_000 });
    // The server ended romeo's session: he left the room.
    const left = await juliet.next(new RegExp(`^<presence[^>]*from='${ROOM}/Romeo'[^>]*type='unavailable'`));
    expect(left).toContain("role='none'");
    expect(juliet.queued().some((e) => e.includes("id='big'"))).toBe(false);
    juliet.send(`<message to='${ROOM}' type='groupchat' id='after'><body>still here</body></message>`);
    expect(await juliet.next(/id='after'/)).toContain('<body>still here</body>');
  });

  it('10,000 join attempts from one user: 100 rooms at most, the rest policy-violation, the server answers on', async () => {
    const { port, muc: module } = await mucServer();
    const tybalt = await occupant(port, 'tybalt');
    const batch = 500;
    let created = 0;
    let refused = 0;
    for (let start = 0; start < 10_000; start += batch) {
      let text = '';
      for (let i = start; i < start + batch; i++)
        text += `<presence to='r${i}@${SERVICE}/Tybalt'><x xmlns='http://jabber.org/protocol/muc'/></presence>`;
      tybalt.send(text);
      await tybalt.sync();
      created += tybalt.take(/code='201'/).length;
      const errors = tybalt.take(/^<presence(?=[^>]* type='error')/);
      for (const e of errors) expect(e).toContain('<policy-violation');
      refused += errors.length;
      tybalt.take(/<subject\/>/);
    }
    expect(created).toBe(100);
    expect(refused).toBe(9_900);
    expect(module.rooms().length).toBe(100);
    // Locked rooms are not listed; once open, the list pages with RSM.
    for (const name of ['r0', 'r1', 'r2']) {
      await tybalt.iq(
        `open-${name}`,
        "<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query>",
        `type='set' to='${name}@${SERVICE}'`,
      );
    }
    const first = await tybalt.iq(
      'l1',
      "<query xmlns='http://jabber.org/protocol/disco#items'><set xmlns='http://jabber.org/protocol/rsm'><max>2</max></set></query>",
      `type='get' to='${SERVICE}'`,
    );
    expect(first.match(/<item /g)?.length).toBe(2);
    expect(first).toContain(`<first index='0'>r0@${SERVICE}</first><last>r1@${SERVICE}</last><count>3</count>`);
    const second = await tybalt.iq(
      'l2',
      `<query xmlns='http://jabber.org/protocol/disco#items'><set xmlns='http://jabber.org/protocol/rsm'><max>2</max><after>r1@${SERVICE}</after></set></query>`,
      `type='get' to='${SERVICE}'`,
    );
    expect(second).toContain(`<item jid='r2@${SERVICE}' name='r2'/>`);
    expect(second.match(/<item /g)?.length).toBe(1);
    // The same user joining one of its rooms under another nick is a nick change, not a new seat.
    tybalt.send(`<presence to='r0@${SERVICE}/Other'/>`);
    expect(await tybalt.next(/code='303'/)).toContain("nick='Other'");
    // Others are unaffected.
    const juliet = await occupant(port, 'juliet');
    await createRoom(juliet, 'lobby', 'Juliet');
    const ping = await juliet.iq('p', "<ping xmlns='urn:xmpp:ping'/>", `type='get' to='${ROOM}/Juliet'`);
    expect(ping).toContain("type='result'");
  }, 120_000);

  it('nick and subject length, rooms per service, a malformed join and unknown rooms get their errors', async () => {
    const { port } = await mucServer({ maxRooms: 2, maxNickLength: 16, maxSubjectLength: 32 });
    const juliet = await occupant(port, 'juliet');
    expect(await refusedJoin(juliet, 'lobby', 'n'.repeat(17))).toContain('<not-acceptable');
    await createRoom(juliet, 'lobby', 'Juliet');
    juliet.send(`<message to='${ROOM}' type='groupchat' id='s'><subject>${'s'.repeat(33)}</subject></message>`);
    expect(await juliet.next(/id='s'/)).toContain('<not-acceptable');
    await createRoom(juliet, 'second', 'Juliet');
    const full = await refusedJoin(juliet, 'third', 'Juliet');
    expect(full).toMatch(/<error type='wait' by='[^']+'><resource-constraint /);
    // A presence of 20,000 characters (the cap is 16,384): refused, the occupant keeps its old one.
    juliet.send(`<presence to='${ROOM}/Juliet'><status>${'z'.repeat(20_000)}</status></presence>`);
    expect(await juliet.next(/^<presence(?=[^>]* type='error')/)).toContain('<policy-violation');
    // A join without a nick (§7.2.1): jid-malformed.
    juliet.send(`<presence to='${ROOM}'><x xmlns='http://jabber.org/protocol/muc'/></presence>`);
    expect(await juliet.next(/^<presence(?=[^>]* type='error')/)).toContain('<jid-malformed');
    // A room that does not exist: item-not-found.
    const missing = await juliet.iq('m', "<query xmlns='http://jabber.org/protocol/disco#info'/>", `type='get' to='nowhere@${SERVICE}'`);
    expect(missing).toContain('<item-not-found');
    juliet.send(`<message to='nowhere@${SERVICE}' type='groupchat' id='nw'><body>x</body></message>`);
    expect(await juliet.next(/id='nw'/)).toContain('<item-not-found');
    // A bad configuration value: not-acceptable; a malformed form: bad-request.
    const bad = await juliet.iq(
      'cfg',
      `<query xmlns='${NS_MUC_OWNER}'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_maxusers'><value>99999999</value></field></x></query>`,
      `type='set' to='${ROOM}'`,
    );
    expect(bad).toContain('<not-acceptable');
    const malformed = await juliet.iq(
      'cfg2',
      `<query xmlns='${NS_MUC_OWNER}'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_moderatedroom' type='boolean'><value>maybe</value></field></x></query>`,
      `type='set' to='${ROOM}'`,
    );
    expect(malformed).toContain('<bad-request');
  });

  it('bounds a room’s history in characters as well as in messages (maxHistoryChars)', async () => {
    const { port } = await mucServer({ lockNewRooms: false, maxHistoryChars: 1000 });
    const juliet = await occupant(port, 'juliet');
    await join(juliet, 'lobby', 'Juliet');
    for (let i = 0; i < 5; i++) {
      juliet.send(`<message to='${ROOM}' type='groupchat' id='h${i}'><body>${String(i).repeat(300)}</body></message>`);
      await juliet.next(new RegExp(`id='h${i}'`));
    }
    const romeo = await occupant(port, 'romeo');
    await join(romeo, 'lobby', 'Romeo', "<history maxstanzas='20'/>");
    await romeo.next(/<subject/);
    // About 400 characters each: two fit in 1000.
    expect(romeo.take(/<delay /).map((m) => /id='(h\d)'/.exec(m)?.[1])).toEqual(['h3', 'h4']);
  });

  it('serialises a message to 200 occupants once, and every one of them receives it', async () => {
    const accounts: Record<string, string> = {};
    for (let i = 0; i < 200; i++) accounts[`u${i}`] = 'pw';
    const module = muc({ lockNewRooms: false });
    // An in-process count: every copy of the message written to a session.
    const written: XmlElement[] = [];
    const counter: XmppModule = {
      name: 'count',
      setup(api) {
        api.outbound((stanza) => {
          if (stanza.name === 'message' && stanza.attr('id') === 'fan') written.push(stanza);
          return stanza;
        });
      },
    };
    const { port } = await start({
      server: { storage: memoryStorage(), modules: [...defaultModules(), module, counter] },
      accounts,
    });
    const raws: Raw[] = [];
    for (let i = 0; i < 200; i += 20) {
      const group = await Promise.all(
        Array.from({ length: 20 }, async (_, k) => {
          const raw = await Raw.login(port, `u${i + k}`, 'pw', 'r');
          raw.send('<presence/>');
          return raw;
        }),
      );
      raws.push(...group);
    }
    for (const [i, raw] of raws.entries()) {
      raw.send(`<presence to='${ROOM}/u${i}'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>`);
    }
    await Promise.all(raws.map((raw, i) => raw.next(new RegExp(`from='${ROOM}/u${i}'[\\s\\S]*code='110'`), 60_000)));
    expect(module.occupants('lobby')).toBe(200);
    const share = vi.spyOn(XmlElement.prototype, 'shareSerialization');
    (raws[0] as Raw).send(`<message to='${ROOM}' type='groupchat' id='fan'><body>${'to all '.repeat(100)}</body></message>`);
    const got = await Promise.all(raws.map((raw) => raw.next(/id='fan'/, 60_000)));
    for (const message of got) {
      expect(message).toContain(`from='${ROOM}/u0'`);
      expect(message).toContain('to all to all');
    }
    // 200 copies, all sharing one children array serialized once.
    expect(written.length).toBe(200);
    expect(new Set(written.map((m) => m.children)).size).toBe(1);
    expect(share.mock.contexts.filter((el) => (el as XmlElement).attr('id') === 'fan').length).toBe(1);
    share.mockRestore();
  }, 120_000);
});
