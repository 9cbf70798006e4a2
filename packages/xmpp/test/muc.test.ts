import { describe, expect, it, vi } from 'vitest';
import { admin, configure, createRoom, join, mucServer, NS_MUC_OWNER, occupant, refusedJoin, SERVICE } from './muc-support.js';

// Multi-User Chat (XEP-0045) over raw sockets: the exact presences, messages and errors the room
// sends, as the XEP's examples show them.

const ROOM = `lobby@${SERVICE}`;

describe('MUC: rooms, joins and messages', () => {
  it('lists the service, creates a locked room on join (201, owner), opens it with an empty form, and lets others in', async () => {
    const { port } = await mucServer();
    const juliet = await occupant(port, 'juliet');
    const items = await juliet.iq('items', "<query xmlns='http://jabber.org/protocol/disco#items'/>", "type='get' to='localhost'");
    expect(items).toContain(`<item jid='${SERVICE}' name='Chatrooms'/>`);
    const info = await juliet.iq('info', "<query xmlns='http://jabber.org/protocol/disco#info'/>", `type='get' to='${SERVICE}'`);
    expect(info).toContain("<identity category='conference' type='text' name='Chatrooms'/>");
    expect(info).toContain("<feature var='http://jabber.org/protocol/muc'/>");

    const self = await join(juliet, 'lobby', 'Juliet');
    expect(self).toContain(`from='${ROOM}/Juliet'`);
    expect(self).toContain("<item affiliation='owner' role='moderator' jid='juliet@localhost/raw'/>");
    expect(self).toMatch(/code='110'[\s\S]*code='170'[\s\S]*code='201'/);
    // The subject (empty) closes the join.
    const subject = await juliet.next(/^<message[^>]*type='groupchat'[\s\S]*<subject\/>/);
    expect(subject).toContain(`from='${ROOM}'`);

    // Locked: romeo may not enter until juliet configures it (§10.1.1).
    const romeo = await occupant(port, 'romeo');
    const locked = await refusedJoin(romeo, 'lobby', 'Romeo');
    expect(locked).toContain('<item-not-found');
    // Not listed while locked.
    const none = await romeo.iq('i2', "<query xmlns='http://jabber.org/protocol/disco#items'/>", `type='get' to='${SERVICE}'`);
    expect(none).not.toContain(ROOM);

    const form = await juliet.iq('form', `<query xmlns='${NS_MUC_OWNER}'/>`, `type='get' to='${ROOM}'`);
    expect(form).toContain("var='muc#roomconfig_membersonly'");
    expect(form).toContain("var='muc#roomconfig_historylength'");
    const instant = await juliet.iq(
      'inst',
      `<query xmlns='${NS_MUC_OWNER}'><x xmlns='jabber:x:data' type='submit'/></query>`,
      `type='set' to='${ROOM}'`,
    );
    expect(instant).toContain("type='result'");

    const romeoSelf = await join(romeo, 'lobby', 'Romeo');
    expect(romeoSelf).toContain("<item affiliation='none' role='participant' jid='romeo@localhost/raw'/>");
    expect(romeoSelf).not.toContain("code='201'");
    // Romeo saw juliet first (no real JID: semi-anonymous), juliet (a moderator) sees romeo's JID.
    expect(romeo.take(new RegExp(`^<presence[^>]*from='${ROOM}/Juliet'`))[0]).toContain("<item affiliation='owner' role='moderator'/>");
    const seen = await juliet.next(new RegExp(`^<presence[^>]*from='${ROOM}/Romeo'`));
    expect(seen).toContain("jid='romeo@localhost/raw'");

    const listed = await romeo.iq('i3', "<query xmlns='http://jabber.org/protocol/disco#items'/>", `type='get' to='${SERVICE}'`);
    expect(listed).toContain(`<item jid='${ROOM}' name='lobby'/>`);
    const roomInfo = await romeo.iq('i4', "<query xmlns='http://jabber.org/protocol/disco#info'/>", `type='get' to='${ROOM}'`);
    for (const feature of [
      'muc_public',
      'muc_temporary',
      'muc_open',
      'muc_unmoderated',
      'muc_unsecured',
      'muc_semianonymous',
      'urn:xmpp:mam:2',
    ])
      expect(roomInfo).toContain(`<feature var='${feature}'/>`);
    expect(roomInfo).toContain("var='muc#roominfo_occupants'");

    // A message goes to everyone, from the sender's room JID, with the room's stanza id.
    romeo.send(`<message to='${ROOM}' type='groupchat' id='g1'><body>hello &amp; welcome</body></message>`);
    for (const raw of [juliet, romeo]) {
      const got = await raw.next(/^<message[^>]*id='g1'/);
      expect(got).toContain(`from='${ROOM}/Romeo'`);
      expect(got).toContain('<body>hello &amp; welcome</body>');
      expect(got).toMatch(new RegExp(`<stanza-id xmlns='urn:xmpp:sid:0' by='${ROOM}' id='[^']+'/>`));
    }

    // Subject: the owner (a moderator) may change it; a participant may not (changesubject off).
    romeo.send(`<message to='${ROOM}' type='groupchat' id='s1'><subject>mine</subject></message>`);
    const denied = await romeo.next(/^<message[^>]*id='s1'[^>]*type='error'|^<message[^>]*type='error'[^>]*id='s1'/);
    expect(denied).toContain('<forbidden');
    juliet.send(`<message to='${ROOM}' type='groupchat' id='s2'><subject>Verona</subject></message>`);
    const changed = await romeo.next(/^<message[^>]*id='s2'/);
    expect(changed).toContain('<subject>Verona</subject>');
    expect(changed).toContain(`from='${ROOM}/Juliet'`);

    // A third occupant gets the history with delays, then the subject.
    const nurse = await occupant(port, 'nurse');
    await join(nurse, 'lobby', 'Nurse');
    const history = await nurse.next(/^<message[^>]*id='g1'/);
    expect(history).toContain(`<delay xmlns='urn:xmpp:delay' from='${ROOM}' stamp='`);
    const nurseSubject = await nurse.next(/<subject>/);
    expect(nurseSubject).toContain('<subject>Verona</subject>');
    expect(nurseSubject).toContain(`from='${ROOM}/Juliet'`);

    // maxstanzas='0': no history at all.
    const tybalt = await occupant(port, 'tybalt');
    await join(tybalt, 'lobby', 'Tybalt', "<history maxstanzas='0'/>");
    await tybalt.next(/<subject>Verona/);
    expect(tybalt.queued().filter((e) => e.includes("id='g1'"))).toEqual([]);
  });

  it('answers a taken nick with 409, a nick change with 303, private messages between occupants, and leaving with unavailable', async () => {
    const { port } = await mucServer({ lockNewRooms: false });
    const juliet = await occupant(port, 'juliet');
    const romeo = await occupant(port, 'romeo');
    const self = await join(juliet, 'lobby', 'Juliet');
    expect(self).toContain("code='201'");
    await join(romeo, 'lobby', 'Romeo');

    const nurse = await occupant(port, 'nurse');
    const taken = await refusedJoin(nurse, 'lobby', 'Romeo');
    expect(taken).toMatch(/<error type='cancel' by='[^']+'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'\/>/);
    // §7.2 Example 23: <x xmlns='…muc'/> beside the error, which names the room.
    expect(taken).toMatch(
      /^<presence [^>]*><x xmlns='http:\/\/jabber.org\/protocol\/muc'\/><error type='cancel' by='lobby@conference.localhost'>/,
    );
    // The nurse is not in the room: she may neither speak nor ping herself there.
    nurse.send(`<message to='${ROOM}' type='groupchat' id='n1'><body>hi</body></message>`);
    expect(await nurse.next(/id='n1'/)).toContain('<not-acceptable');
    const ping = await nurse.iq('p', "<ping xmlns='urn:xmpp:ping'/>", `type='get' to='${ROOM}/Romeo'`);
    expect(ping).toContain(`<error type='modify' by='${ROOM}'><not-acceptable`);

    // XEP-0410 self-ping: answered by the room while joined.
    const selfPing = await romeo.iq('sp', "<ping xmlns='urn:xmpp:ping'/>", `type='get' to='${ROOM}/Romeo'`);
    expect(selfPing).toContain("type='result'");
    expect(selfPing).toContain(`from='${ROOM}/Romeo'`);

    // Private message: from the sender's room JID, with <x xmlns='muc#user'/>.
    romeo.send(`<message to='${ROOM}/Juliet' type='chat' id='pm1'><body>psst</body></message>`);
    const pm = await juliet.next(/id='pm1'/);
    expect(pm).toContain(`from='${ROOM}/Romeo'`);
    expect(pm).toContain('<body>psst</body>');
    expect(pm).toContain("<x xmlns='http://jabber.org/protocol/muc#user'/>");
    romeo.send(`<message to='${ROOM}/Nobody' type='chat' id='pm2'><body>?</body></message>`);
    expect(await romeo.next(/id='pm2'/)).toContain('<item-not-found');
    romeo.send(`<message to='${ROOM}/Juliet' type='groupchat' id='pm3'><body>?</body></message>`);
    expect(await romeo.next(/id='pm3'/)).toContain('<bad-request');

    // Nick change (§7.6): unavailable with 303 and the new nick, then available from the new nick.
    romeo.send(`<presence to='${ROOM}/Romeo2'/>`);
    const gone = await juliet.next(new RegExp(`^<presence[^>]*from='${ROOM}/Romeo'[^>]*type='unavailable'`));
    expect(gone).toContain("nick='Romeo2'");
    expect(gone).toContain("code='303'");
    const back = await juliet.next(new RegExp(`^<presence[^>]*from='${ROOM}/Romeo2'`));
    expect(back).toContain("role='participant'");
    const ownGone = await romeo.next(new RegExp(`^<presence[^>]*from='${ROOM}/Romeo'[^>]*type='unavailable'`));
    expect(ownGone).toMatch(/code='303'[\s\S]*code='110'/);
    // Changing to a taken nick: 409, and romeo stays Romeo2.
    romeo.send(`<presence to='${ROOM}/Juliet'/>`);
    expect(await romeo.next(/type='error'[\s\S]*conflict|conflict[\s\S]*type='error'/)).toContain('<conflict');

    // Leaving: unavailable to everyone (110 to self); closing the stream leaves too.
    romeo.send(`<presence to='${ROOM}/Romeo2' type='unavailable'><status>bye</status></presence>`);
    const left = await juliet.next(new RegExp(`^<presence[^>]*from='${ROOM}/Romeo2'[^>]*type='unavailable'`));
    expect(left).toContain('<status>bye</status>');
    expect(left).toContain("role='none'");
    expect(await romeo.next(/type='unavailable'[\s\S]*code='110'/)).toContain(`${ROOM}/Romeo2`);

    await join(nurse, 'lobby', 'Nurse');
    nurse.socket.destroy();
    const closed = await juliet.next(new RegExp(`^<presence[^>]*from='${ROOM}/Nurse'[^>]*type='unavailable'`));
    expect(closed).toContain("role='none'");
    const ping2 = await romeo.iq('p2', "<ping xmlns='urn:xmpp:ping'/>", `type='get' to='${ROOM}/Romeo2'`);
    expect(ping2).toContain('<not-acceptable');
  });

  it('kicks (307), bans (301, then 403 on join), takes and grants voice in a moderated room, and keeps config to owners', async () => {
    const { port } = await mucServer();
    const juliet = await occupant(port, 'juliet');
    const romeo = await occupant(port, 'romeo');
    const tybalt = await occupant(port, 'tybalt');
    await createRoom(juliet, 'lobby', 'Juliet');
    expect(await configure(juliet, 'lobby', { 'muc#roomconfig_moderatedroom': '1' })).toContain("type='result'");
    expect(await juliet.next(/code='104'/)).toContain(`from='${ROOM}'`);

    // A visitor in a moderated room (§7.2, role visitor) may not speak: forbidden.
    const visitor = await join(romeo, 'lobby', 'Romeo');
    expect(visitor).toContain("role='visitor'");
    romeo.send(`<message to='${ROOM}' type='groupchat' id='v1'><body>may I?</body></message>`);
    const silenced = await romeo.next(/id='v1'/);
    expect(silenced).toContain("type='error'");
    expect(silenced).toContain('<forbidden');
    // A non-owner may neither read nor change the configuration; a participant cannot kick.
    const notOwner = await configure(romeo, 'lobby', { 'muc#roomconfig_moderatedroom': '0' }, 'c1');
    expect(notOwner).toContain('<forbidden');
    const notOwnerGet = await romeo.iq('c2', `<query xmlns='${NS_MUC_OWNER}'/>`, `type='get' to='${ROOM}'`);
    expect(notOwnerGet).toContain('<forbidden');

    // Voice granted (§8.3): presence with role participant; now romeo speaks.
    expect(await admin(juliet, 'lobby', "<item nick='Romeo' role='participant'/>")).toContain("type='result'");
    expect(await romeo.next(/role='participant'[\s\S]*code='110'/)).toContain(`${ROOM}/Romeo`);
    romeo.send(`<message to='${ROOM}' type='groupchat' id='v2'><body>thanks</body></message>`);
    expect(await juliet.next(/id='v2'/)).toContain('<body>thanks</body>');
    expect(await admin(romeo, 'lobby', "<item nick='Juliet' role='none'/>")).toContain('<forbidden');

    await join(tybalt, 'lobby', 'Tybalt');
    // An owner cannot be kicked (§8.2: not-allowed), even by another moderator.
    expect(await admin(juliet, 'lobby', "<item affiliation='admin' jid='romeo@localhost'/>")).toContain("type='result'");
    expect(await admin(romeo, 'lobby', "<item nick='Juliet' role='none'/>")).toContain('<not-allowed');

    // Kick (§8.2): unavailable with 307, the actor and the reason.
    expect(await admin(romeo, 'lobby', "<item nick='Tybalt' role='none'><reason>brawling</reason></item>")).toContain("type='result'");
    const kicked = await tybalt.next(/type='unavailable'[\s\S]*code='307'/);
    expect(kicked).toContain("<actor nick='Romeo'/>");
    expect(kicked).toContain('<reason>brawling</reason>');
    expect(kicked).toContain("code='110'");
    expect(await juliet.next(new RegExp(`from='${ROOM}/Tybalt'[^>]*type='unavailable'[\\s\\S]*code='307'`))).toContain("role='none'");

    // Ban (§9.1): outcast; a banned user joining gets 403.
    await join(tybalt, 'lobby', 'Tybalt');
    expect(await admin(juliet, 'lobby', "<item affiliation='outcast' jid='tybalt@localhost'><reason>again</reason></item>")).toContain(
      "type='result'",
    );
    const banned = await tybalt.next(/type='unavailable'[\s\S]*code='301'/);
    expect(banned).toContain("affiliation='outcast'");
    const refused = await refusedJoin(tybalt, 'lobby', 'Tybalt');
    expect(refused).toMatch(/<error type='auth' by='[^']+'><forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'\/>/);
    // An admin cannot make an owner, nor take the last owner away.
    expect(await admin(romeo, 'lobby', "<item affiliation='owner' jid='romeo@localhost'/>")).toContain('<forbidden');
    expect(await admin(juliet, 'lobby', "<item affiliation='member' jid='juliet@localhost'/>")).toContain('<conflict');
    const outcasts = await juliet.iq(
      'out',
      "<query xmlns='http://jabber.org/protocol/muc#admin'><item affiliation='outcast'/></query>",
      `type='get' to='${ROOM}'`,
    );
    expect(outcasts).toContain("<item affiliation='outcast' jid='tybalt@localhost'/>");
  });

  it('refuses joins: password (401), members-only (407), full room (503); invitations through the room make members', async () => {
    const { port } = await mucServer();
    const juliet = await occupant(port, 'juliet');
    const romeo = await occupant(port, 'romeo');
    const nurse = await occupant(port, 'nurse');
    await createRoom(juliet, 'lobby', 'Juliet');
    await configure(juliet, 'lobby', { 'muc#roomconfig_passwordprotectedroom': '1', 'muc#roomconfig_roomsecret': 'cauldron' });
    expect(await refusedJoin(romeo, 'lobby', 'Romeo')).toMatch(/<error type='auth' by='[^']+'><not-authorized /);
    expect(await refusedJoin(romeo, 'lobby', 'Romeo', '<password>wrong</password>')).toContain('<not-authorized');
    await join(romeo, 'lobby', 'Romeo', '<password>cauldron</password>');

    await configure(juliet, 'lobby', {
      'muc#roomconfig_passwordprotectedroom': '0',
      'muc#roomconfig_membersonly': '1',
      'muc#roomconfig_maxusers': '2',
    });
    // Romeo is no member: removed with 322 when the room became members-only.
    expect(await romeo.next(/type='unavailable'[\s\S]*code='322'/)).toContain(`${ROOM}/Romeo`);
    expect(await refusedJoin(nurse, 'lobby', 'Nurse')).toMatch(/<error type='auth' by='[^']+'><registration-required /);

    // A mediated invitation (§7.8.2): sent by the room on juliet's behalf; romeo becomes a member.
    juliet.send(
      `<message to='${ROOM}' id='inv'><x xmlns='http://jabber.org/protocol/muc#user'><invite to='romeo@localhost'><reason>come back</reason></invite></x></message>`,
    );
    const invitation = await romeo.next(/<invite /);
    expect(invitation).toContain(`from='${ROOM}'`);
    expect(invitation).toContain("<invite from='juliet@localhost/raw'><reason>come back</reason></invite>");
    expect(invitation).toContain(`<x xmlns='jabber:x:conference' jid='${ROOM}' reason='come back'/>`);
    await join(romeo, 'lobby', 'Romeo');
    // Declined: passed back to the inviter.
    nurse.send(
      `<message to='${ROOM}'><x xmlns='http://jabber.org/protocol/muc#user'><decline to='juliet@localhost'><reason>busy</reason></decline></x></message>`,
    );
    expect(await juliet.next(/<decline /)).toContain("<decline from='nurse@localhost'><reason>busy</reason></decline>");

    // Full (maxusers 2): a third member gets 503; the owner still gets in from another session.
    expect(await admin(juliet, 'lobby', "<item affiliation='member' jid='nurse@localhost'/>")).toContain("type='result'");
    expect(await refusedJoin(nurse, 'lobby', 'Nurse')).toMatch(/<error type='cancel' by='[^']+'><service-unavailable /);

    // XEP-0249 direct invitation: from account to account, untouched.
    juliet.send(`<message to='nurse@localhost' id='direct'><x xmlns='jabber:x:conference' jid='${ROOM}' reason='hi'/></message>`);
    expect(await nurse.next(/id='direct'/)).toContain(`<x xmlns='jabber:x:conference' jid='${ROOM}' reason='hi'/>`);

    // Membership taken away in a members-only room (§9.5): removed with 321.
    expect(await admin(juliet, 'lobby', "<item affiliation='none' jid='romeo@localhost'/>")).toContain("type='result'");
    const removed = await romeo.next(/type='unavailable'[\s\S]*code='321'/);
    expect(removed).toContain("affiliation='none' role='none'");
    expect(await juliet.next(new RegExp(`from='${ROOM}/Romeo'[^>]*type='unavailable'[\\s\\S]*code='321'`))).toBeTruthy();
  });

  it('forwards IQs between occupants (vCard to the account, others to the client), announces non-anonymity (100, 172), and lets sessions share a nick', async () => {
    const { port } = await mucServer({ lockNewRooms: false });
    const juliet = await occupant(port, 'juliet');
    const romeo = await occupant(port, 'romeo');
    expect(await romeo.iq('vc', "<vCard xmlns='vcard-temp'><FN>Romeo Montague</FN></vCard>")).toContain("type='result'");
    await join(juliet, 'lobby', 'Juliet');
    await join(romeo, 'lobby', 'Romeo');

    // vCard: answered by romeo's server for his account, from his room JID.
    const card = await juliet.iq('card', "<vCard xmlns='vcard-temp'/>", `type='get' to='${ROOM}/Romeo'`);
    expect(card).toContain(`from='${ROOM}/Romeo'`);
    expect(card).toContain('<FN>Romeo Montague</FN>');
    // Any other IQ goes to romeo's client, from juliet's room JID; his answer comes back under juliet's id.
    juliet.send(`<iq type='get' id='ver' to='${ROOM}/Romeo'><query xmlns='jabber:iq:version'/></iq>`);
    const asked = await romeo.next(/jabber:iq:version/);
    expect(asked).toContain(`from='${ROOM}/Juliet'`);
    const forwardedId = /id='([^']+)'/.exec(asked)?.[1] as string;
    expect(forwardedId).not.toBe('ver');
    romeo.send(`<iq type='result' id='${forwardedId}' to='${ROOM}/Juliet'><query xmlns='jabber:iq:version'><name>raw</name></query></iq>`);
    const answer = await juliet.next(/^<iq[^>]*id='ver'/);
    expect(answer).toContain(`from='${ROOM}/Romeo'`);
    expect(answer).toContain('<name>raw</name>');

    // Whois anyone: 172 to everyone, then everyone sees real JIDs; a newcomer gets 100.
    await configure(juliet, 'lobby', { 'muc#roomconfig_whois': 'anyone' });
    expect(await romeo.next(/code='104'/)).toContain("code='172'");
    expect(await romeo.next(new RegExp(`^<presence[^>]*from='${ROOM}/Juliet'[^>]*>[\\s\\S]*jid='juliet@localhost/raw'`))).toBeTruthy();
    const nurse = await occupant(port, 'nurse');
    const nurseSelf = await join(nurse, 'lobby', 'Nurse');
    expect(nurseSelf).toContain("code='100'");

    // A second session of romeo joins under the same nick: one occupant, both sessions get the messages.
    const romeo2 = await occupant(port, 'romeo', 'phone');
    await join(romeo2, 'lobby', 'Romeo');
    juliet.send(`<message to='${ROOM}' type='groupchat' id='both'><body>to both</body></message>`);
    expect(await romeo.next(/id='both'/)).toContain("to='romeo@localhost/raw'");
    expect(await romeo2.next(/id='both'/)).toContain("to='romeo@localhost/phone'");
    // One session leaves: the nick stays in the room.
    romeo2.send(`<presence to='${ROOM}/Romeo' type='unavailable'/>`);
    await romeo2.next(/type='unavailable'[\s\S]*code='110'/);
    juliet.send(`<message to='${ROOM}' type='groupchat' id='still'><body>still there?</body></message>`);
    expect(await romeo.next(/id='still'/)).toContain('still there?');

    // An unavailable presence to everyone (no 'to') leaves every room (RFC 6121 §4.6.3).
    romeo.send("<presence type='unavailable'/>");
    expect(await juliet.next(new RegExp(`from='${ROOM}/Romeo'[^>]*type='unavailable'`))).toContain("role='none'");
  });

  it('destroys a new room its owner cancels (§10.1.3) or leaves unconfigured past the lock timeout', async () => {
    const { port, muc } = await mucServer({ lockTimeoutMs: 300 });
    const juliet = await occupant(port, 'juliet');
    await join(juliet, 'lobby', 'Juliet');
    const cancelled = await juliet.iq(
      'c',
      `<query xmlns='${NS_MUC_OWNER}'><x xmlns='jabber:x:data' type='cancel'/></query>`,
      `type='set' to='${ROOM}'`,
    );
    expect(cancelled).toContain("type='result'");
    expect(await juliet.next(/<destroy/)).toContain("type='unavailable'");
    await vi.waitFor(() => expect(muc.rooms()).toEqual([]));
    // Not configured in time: destroyed, the owner told so.
    await join(juliet, 'slow', 'Juliet');
    const timedOut = await juliet.next(/<destroy/);
    expect(timedOut).toContain(`from='slow@${SERVICE}/Juliet'`);
    expect(timedOut).toContain('<reason>The room was not configured in time</reason>');
    await vi.waitFor(() => expect(muc.rooms()).toEqual([]));
  });
});
