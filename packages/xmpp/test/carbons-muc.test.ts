import { describe, expect, it } from 'vitest';
import { createRoom, join, mucServer, NS_MUC_USER, occupant, SERVICE } from './muc-support.js';

// Message Carbons (XEP-0280 §6) and room private messages: a PM reaches the one resource that is in
// the room (it is addressed to that full JID); the account's other resources are not occupants and
// could not answer in the room, so they get no carbon of it (Prosody's mod_carbons does the same).
// A 1:1 chat message to the same resource still gets its carbon.

const enableCarbons = "<enable xmlns='urn:xmpp:carbons:2'/>";
const RECEIVED = /<received xmlns='urn:xmpp:carbons:2'/;

describe('carbons and room private messages', () => {
  it('copies a 1:1 chat to the other resource, but not a room PM delivered to the joined one', async () => {
    const { port } = await mucServer();
    const inRoom = await occupant(port, 'juliet', 'laptop');
    const phone = await occupant(port, 'juliet', 'phone');
    const nurse = await occupant(port, 'nurse');
    expect(await inRoom.iq('c1', enableCarbons)).toMatch(/type='result'/);
    expect(await phone.iq('c2', enableCarbons)).toMatch(/type='result'/);
    await createRoom(nurse, 'hall', 'Nurse');
    await join(inRoom, 'hall', 'Juliet');

    nurse.send(`<message to='hall@${SERVICE}/Juliet' type='chat' id='pm'><body>psst</body><x xmlns='${NS_MUC_USER}'/></message>`);
    const pm = await inRoom.next(/^<message[^>]* id='pm'/);
    expect(pm).toContain(`from='hall@${SERVICE}/Nurse'`);
    // Control: a direct chat to the same full JID is copied to the phone.
    nurse.send("<message to='juliet@localhost/laptop' type='chat' id='direct'><body>hello</body></message>");
    const copy = await phone.next(RECEIVED);
    expect(copy).toContain("id='direct'");
    await phone.sync();
    expect(phone.queued().filter((element) => element.includes("id='pm'"))).toEqual([]);
  });
});
