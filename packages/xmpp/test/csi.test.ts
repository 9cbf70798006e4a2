import { execFile } from 'node:child_process';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { csi } from '../src/modules/csi.js';
import { defaultModules } from '../src/modules/index.js';
import { smacks } from '../src/modules/smacks.js';
import { memoryStorage } from '../src/stores/memory.js';
import { RawTranscript } from './raw-stream.js';
import { OPEN, rawLogin, rawStartTls, start } from './support.js';

const run = promisify(execFile);

function csiServer() {
  return start({
    server: {
      storage: memoryStorage(),
      modules: [...defaultModules().filter((m) => m.name !== 'smacks' && m.name !== 'csi'), smacks(), csi()],
    },
  });
}

class Raw extends RawTranscript {}

/** Round trip: a ping answered by the server, so everything written before it has been handled. */
async function sync(raw: Raw, id: string): Promise<string> {
  raw.write(`<iq type='get' id='${id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`);
  return raw.until(new RegExp(`<iq [^>]*id='${id}'[^>]*/>`));
}

/** Top-level presence and message stanzas in a transcript, as `kind:from:detail`. */
function stanzas(text: string): string[] {
  return [...text.matchAll(/<(presence|message)\b([^>]*?)(\/>|>(.*?)<\/\1>)/g)].map((m) => {
    const from = /from='([^']+)'/.exec(m[2] ?? '')?.[1] ?? '';
    const detail =
      /<status>([^<]*)<\/status>/.exec(m[4] ?? '')?.[1] ??
      /<body>([^<]*)<\/body>/.exec(m[4] ?? '')?.[1] ??
      /type='(\w+)'/.exec(m[2] ?? '')?.[1] ??
      '';
    return `${m[1]}:${from}:${detail}`;
  });
}

describe('client state indication (XEP-0352)', () => {
  it('offers <csi xmlns="urn:xmpp:csi:0"/> after SASL', async () => {
    const { port } = await csiServer();
    const raw = new Raw(await rawStartTls(port));
    const plain = Buffer.from('\u0000juliet\u0000balcony').toString('base64');
    raw.write(`${OPEN}<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${plain}</auth>`);
    await raw.until(/<success[^>]*>/);
    raw.write(OPEN);
    expect(await raw.until(/<\/stream:features>/)).toContain("<csi xmlns='urn:xmpp:csi:0'/>");
    raw.socket.destroy();
  });

  it('holds presence updates while inactive (the latest per contact) and writes them before the next message, in order', async () => {
    const { port } = await csiServer();
    const juliet = new Raw(await rawLogin(port, 'juliet', 'balcony', 'phone'));
    const romeo = new Raw(await rawLogin(port, 'romeo', 'r0meo!', 'desk'));
    const nurse = new Raw(await rawLogin(port, 'romeo', 'r0meo!', 'garden'));
    juliet.write(`<inactive xmlns='urn:xmpp:csi:0'/>`);
    await sync(juliet, 'i1');
    // Directed presence to juliet's phone: three updates from one resource, one from another.
    romeo.write(`<presence to='juliet@localhost/phone'><status>one</status></presence>`);
    romeo.write(`<presence to='juliet@localhost/phone'><status>two</status></presence>`);
    nurse.write(`<presence to='juliet@localhost/phone'><status>garden</status></presence>`);
    romeo.write(`<presence to='juliet@localhost/phone'><status>three</status></presence>`);
    await sync(romeo, 'r1');
    await sync(nurse, 'n1');
    // Routed (the senders' round trips are done), not written: nothing reached juliet. (No ping to
    // juliet here: an IQ result goes out at once and writes what is held before it.)
    expect(stanzas(juliet.rest)).toEqual([]);
    // A message flushes what is held, just before it.
    romeo.write(`<message to='juliet@localhost/phone' type='chat'><body>wake up</body></message>`);
    const flushed = await juliet.until(/<body>wake up<\/body>.*?<\/message>/);
    expect(stanzas(flushed)).toEqual([
      'presence:romeo@localhost/garden:garden',
      'presence:romeo@localhost/desk:three',
      'message:romeo@localhost/desk:wake up',
    ]);
    for (const raw of [juliet, romeo, nurse]) raw.socket.destroy();
  });

  it('<active/> writes what is held at once; afterwards presence passes straight through', async () => {
    const { port } = await csiServer();
    const juliet = new Raw(await rawLogin(port, 'juliet', 'balcony', 'phone'));
    const romeo = new Raw(await rawLogin(port, 'romeo', 'r0meo!', 'desk'));
    // Available (subscription requests go to available resources).
    juliet.write(`<presence/><inactive xmlns='urn:xmpp:csi:0'/>`);
    await sync(juliet, 'i1');
    romeo.write(`<presence to='juliet@localhost/phone'><status>away</status></presence>`);
    romeo.write(`<presence to='juliet@localhost/phone' type='unavailable'/>`);
    await sync(romeo, 'r1');
    // Subscription requests are not held (not a presence update).
    romeo.write(`<presence to='juliet@localhost' type='subscribe'/>`);
    const request = await juliet.until(/type='subscribe'[^>]*\/>/);
    // It went out at once, after the latest update held (the unavailable one; 'away' was superseded).
    expect(stanzas(request)).toEqual(['presence:romeo@localhost/desk:unavailable', 'presence:romeo@localhost:subscribe']);
    romeo.write(`<presence to='juliet@localhost/phone'><status>back</status></presence>`);
    await sync(romeo, 'r2');
    juliet.write(`<active xmlns='urn:xmpp:csi:0'/>`);
    // Written before the answer to the ping that follows <active/> (XEP-0352 §5.1).
    const active = await sync(juliet, 'a1');
    expect(stanzas(active)).toEqual(['presence:romeo@localhost/desk:back']);
    romeo.write(`<presence to='juliet@localhost/phone'><status>live</status></presence>`);
    expect(stanzas(await juliet.until(/<status>live<\/status><\/presence>/))).toEqual(['presence:romeo@localhost/desk:live']);
    for (const raw of [juliet, romeo]) raw.socket.destroy();
  });

  it('held presence is counted by stream management only when written: acks stay consistent', async () => {
    const { port } = await csiServer();
    const juliet = new Raw(await rawLogin(port, 'juliet', 'balcony', 'phone'));
    const romeo = new Raw(await rawLogin(port, 'romeo', 'r0meo!', 'desk'));
    juliet.write(`<enable xmlns='urn:xmpp:sm:3'/>`);
    await juliet.until(/<enabled [^>]*\/>/);
    juliet.write(`<inactive xmlns='urn:xmpp:csi:0'/>`);
    await sync(juliet, 'i1');
    for (const status of ['a', 'b', 'c']) romeo.write(`<presence to='juliet@localhost/phone'><status>${status}</status></presence>`);
    await sync(romeo, 'r1');
    juliet.write(`<active xmlns='urn:xmpp:csi:0'/>`);
    const got = await sync(juliet, 'a1');
    expect(stanzas(got)).toEqual(['presence:romeo@localhost/desk:c']);
    // Three stanzas reached juliet since <enabled/>: a pong, the held presence, a pong. h=3 is right; h=4 would not be.
    juliet.write(`<a xmlns='urn:xmpp:sm:3' h='3'/>`);
    juliet.write(`<a xmlns='urn:xmpp:sm:3' h='4'/>`);
    const closed = once(juliet.socket, 'close');
    await juliet.until(/<handled-count-too-high xmlns='urn:xmpp:sm:3' h='4' send-count='3'\/>/);
    await closed;
    romeo.socket.destroy();
  });

  it('stream management asks for acks less often while inactive (maxInactiveUnackedStanzas), and at once on <active/>', async () => {
    const { port } = await start({
      server: {
        storage: memoryStorage(),
        modules: [
          ...defaultModules().filter((m) => m.name !== 'smacks' && m.name !== 'csi'),
          smacks({ maxInactiveUnackedStanzas: 3 }),
          csi(),
        ],
      },
    });
    const juliet = new Raw(await rawLogin(port, 'juliet', 'balcony', 'phone'));
    const romeo = new Raw(await rawLogin(port, 'romeo', 'r0meo!', 'desk'));
    juliet.write(`<enable xmlns='urn:xmpp:sm:3' resume='true'/>`);
    const previd = /id='([^']+)'/.exec(await juliet.until(/<enabled [^>]*\/>/))?.[1];
    const R = /<r xmlns='urn:xmpp:sm:3'\/>/;
    const message = async (body: string): Promise<string> => {
      romeo.write(`<message to='juliet@localhost/phone' type='chat'><body>${body}</body></message>`);
      const got = await juliet.until(new RegExp(`<body>${body}</body>.*?</message>`));
      // Routed and written; what the server adds after the burst (an <r/>) is written in the same turn.
      await sync(romeo, `s-${body}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
      return got;
    };
    // Active: an <r/> after every burst (maxUnackedStanzas 0).
    await message('one');
    await juliet.until(R);
    juliet.write(`<a xmlns='urn:xmpp:sm:3' h='1'/>`);
    juliet.write(`<inactive xmlns='urn:xmpp:csi:0'/>`);
    await sync(romeo, 'after-inactive');
    await new Promise((resolve) => setTimeout(resolve, 100));
    // Inactive: three unacknowledged messages ask for nothing; the fourth does.
    for (const body of ['two', 'three', 'four']) await message(body);
    expect(juliet.text.slice(juliet.text.indexOf('<body>two</body>'))).not.toMatch(R);
    await message('five');
    await juliet.until(R);
    juliet.write(`<a xmlns='urn:xmpp:sm:3' h='5'/>`);
    await sync(romeo, 'acked');
    // One more while inactive: no <r/>; <active/> asks at once.
    await message('six');
    expect(juliet.text.slice(juliet.text.indexOf('<body>six</body>'))).not.toMatch(R);
    juliet.write(`<active xmlns='urn:xmpp:csi:0'/>`);
    await juliet.until(R, 2000);
    // Inactive again, the link lost, the stream resumed: it starts active (XEP-0352 §5.2), an <r/> after a burst.
    juliet.write(`<a xmlns='urn:xmpp:sm:3' h='6'/><inactive xmlns='urn:xmpp:csi:0'/>`);
    await sync(romeo, 'inactive-again');
    juliet.socket.destroy();
    const resumed = new Raw(await rawStartTls(port));
    const plain = Buffer.from('\u0000juliet\u0000balcony').toString('base64');
    resumed.write(`${OPEN}<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${plain}</auth>`);
    await resumed.until(/<success[^>]*>/);
    resumed.write(OPEN);
    await resumed.until(/<\/stream:features>/);
    resumed.write(`<resume xmlns='urn:xmpp:sm:3' previd='${previd}' h='6'/>`);
    await resumed.until(/<resumed [^>]*\/>/);
    romeo.write(`<message to='juliet@localhost/phone' type='chat'><body>seven</body></message>`);
    await resumed.until(/<body>seven<\/body>/);
    await resumed.until(R, 2000);
    for (const raw of [resumed, romeo]) raw.socket.destroy();
  });

  it('while inactive, large stanzas ask for an ack at half of maxQueueChars: the queue limit never closes a client it did not ask', async () => {
    const { port } = await start({
      server: {
        storage: memoryStorage(),
        modules: [...defaultModules().filter((m) => m.name !== 'smacks' && m.name !== 'csi'), smacks({ maxQueueChars: 10_000 }), csi()],
      },
    });
    const juliet = new Raw(await rawLogin(port, 'juliet', 'balcony', 'phone'));
    const romeo = new Raw(await rawLogin(port, 'romeo', 'r0meo!', 'desk'));
    juliet.write(`<enable xmlns='urn:xmpp:sm:3'/><inactive xmlns='urn:xmpp:csi:0'/>`);
    await juliet.until(/<enabled [^>]*\/>/);
    await sync(romeo, 'ready');
    const big = 'x'.repeat(2000);
    let handled = 0;
    // Three messages of 2,000 characters pass half of 10,000 (the default threshold while inactive is 256
    // stanzas): an <r/> comes after the third, twice over; answered, the stream goes on.
    for (const round of [1, 2]) {
      for (let i = 0; i < 3; i++) {
        romeo.write(`<message to='juliet@localhost/phone' type='chat' id='b${round}-${i}'><body>${big}</body></message>`);
        await juliet.until(new RegExp(`id='b${round}-${i}'.*?</message>`));
      }
      await juliet.until(/<r xmlns='urn:xmpp:sm:3'\/>/, 2000);
      handled += 3;
      juliet.write(`<a xmlns='urn:xmpp:sm:3' h='${handled}'/>`);
    }
    expect(await sync(juliet, 'alive')).toContain("id='alive'");
    for (const raw of [juliet, romeo]) raw.socket.destroy();
  });

  it('slixmpp (Debian) goes inactive and active with xep_0352; presence is held and flushed by a message', async () => {
    const { port } = await csiServer();
    const script = new URL('./slixmpp/csi.py', import.meta.url).pathname;
    const { stdout } = await run('/usr/bin/python3', [script, '127.0.0.1', String(port)], { timeout: 90_000 });
    const result = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as { csi: boolean; whileInactive: string[]; afterMessage: string[] };
    expect(result.csi).toBe(true);
    expect(result.whileInactive).toEqual([]);
    expect(result.afterMessage).toEqual(['presence:latest', 'message:hello']);
  });
});
