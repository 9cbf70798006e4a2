import { describe, expect, it } from 'vitest';
import { createRoom, join, mucServer, occupant, SERVICE } from './muc-support.js';

// A room occupant's presence reaches each occupant from room@service/nick: it is not a contact's
// directed presence, so PEP (XEP-0163) must not make the room JID a notification recipient of the
// occupant's nodes — else the last items of open nodes (nick, OMEMO device list) would be sent to
// every occupant JID of every room joined, and each new publish after them. (The room JID sends no
// entity capabilities, so no +notify: PEP keeps it from the notifications; this test holds that.)

const PUBSUB = 'http://jabber.org/protocol/pubsub';
const NICK = 'http://jabber.org/protocol/nick';
const EVENT = /http:\/\/jabber\.org\/protocol\/pubsub#event/;

const openNick = (nick: string): string =>
  `<pubsub xmlns='${PUBSUB}'><publish node='${NICK}'><item id='current'><nick xmlns='${NICK}'>${nick}</nick></item></publish>` +
  "<publish-options><x xmlns='jabber:x:data' type='submit'>" +
  "<field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>" +
  "<field var='pubsub#access_model'><value>open</value></field></x></publish-options></pubsub>";

describe('PEP and room presences', () => {
  it('sends no PEP event to an occupant JID, on joining or on a later publish', async () => {
    const { port } = await mucServer();
    const juliet = await occupant(port, 'juliet');
    const nurse = await occupant(port, 'nurse');
    expect(await juliet.iq('nick1', openNick('Jules'))).toMatch(/type='result'/);
    await createRoom(nurse, 'hall', 'Nurse');
    await join(juliet, 'hall', 'Juliet');
    await juliet.sync();
    expect(await juliet.iq('nick2', openNick('Juliet'))).toMatch(/type='result'/);
    // A message the nurse will see after anything the room might have relayed before it.
    juliet.send(`<message to='hall@${SERVICE}' type='groupchat' id='after'><body>done</body></message>`);
    await nurse.next(/^<message[^>]* type='groupchat'[\s\S]*<body>done<\/body>/);
    await nurse.sync();
    expect(nurse.queued().filter((element) => EVENT.test(element))).toEqual([]);
    // Nor did the service bounce PEP events back to juliet as errors.
    await juliet.sync();
    expect(juliet.queued().filter((element) => /type='error'/.test(element) && EVENT.test(element))).toEqual([]);
  });
});
