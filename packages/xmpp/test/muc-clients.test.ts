import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { PortService } from '@portbind/core';
import { httpAdapter } from '@portbind/http';
import { type Element, xml, client as xmppClient } from '@xmpp/client';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { WebSocket } from 'ws';
import { portOf, selfSignedCert } from '../../../test/support/net.js';
import { defaultModules, MemoryUserStore, memoryStorage, xmppServer } from '../src/index.js';
import { muc } from '../src/modules/muc/index.js';
import { admin, createRoom, join, mucServer, occupant, SERVICE } from './muc-support.js';
import { Raw } from './raw-stream.js';
import { clients } from './support.js';

// Real clients in one room: two slixmpp clients (xep_0045) with a raw stream, and @xmpp/client over
// WebSocket with a raw TCP stream.

const run = promisify(execFile);
const ROOM = `lobby@${SERVICE}`;
(globalThis as { WebSocket?: unknown }).WebSocket ??= WebSocket;

const services: PortService[] = [];
afterEach(async () => {
  await Promise.all(services.splice(0).map((s) => s.stop()));
});

describe('MUC with real clients', () => {
  it('slixmpp (xep_0045) ×2 and a raw stream: join with history, 409, talk, configure, kick, MAM on the room, leave', async () => {
    const { port } = await mucServer();
    const juliet = await occupant(port, 'juliet');
    await createRoom(juliet, 'lobby', 'Juliet');
    expect(await admin(juliet, 'lobby', "<item affiliation='owner' jid='romeo@localhost'/>")).toContain("type='result'");
    juliet.send(`<message to='${ROOM}' type='groupchat' id='s'><subject>Two households</subject></message>`);
    await juliet.next(/id='s'/);
    for (const body of ['both alike', 'in dignity']) {
      juliet.send(`<message to='${ROOM}' type='groupchat' id='${body.replace(' ', '-')}'><body>${body}</body></message>`);
      await juliet.next(new RegExp(`<body>${body}</body>`));
    }

    const script = new URL('./slixmpp/muc_room.py', import.meta.url).pathname;
    const { stdout } = await run('/usr/bin/python3', [script, '127.0.0.1', String(port), ROOM], { timeout: 90_000 });
    const result = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as {
      romeo_join: { codes: number[]; affiliation: string; role: string; subject: string; occupants: string[]; history: string[] };
      nurse_conflict: string | null;
      nurse_join: { role: string; occupants: string[]; history: number };
      heard: { from: string; stanza_id_by: string };
      form_fields: string[];
      features: string[];
      identity: string[][];
      kicked: { codes: number[]; reason: string | null };
      mam: Array<{ body: string; from: string }>;
      left_codes: number[];
    };
    expect(result.romeo_join).toEqual({
      codes: [110, 170],
      affiliation: 'owner',
      role: 'moderator',
      subject: 'Two households',
      // slixmpp counts its own presence among the occupants.
      occupants: ['Juliet', 'Romeo'],
      history: ['both alike', 'in dignity'],
    });
    expect(result.nurse_conflict).toBe('conflict');
    expect(result.nurse_join).toEqual({ role: 'participant', occupants: ['Juliet', 'Nurse', 'Romeo'], history: 0 });
    expect(result.heard).toEqual({ from: `${ROOM}/Nurse`, stanza_id_by: ROOM });
    expect(result.form_fields).toEqual(
      expect.arrayContaining([
        'muc#roomconfig_roomname',
        'muc#roomconfig_moderatedroom',
        'muc#roomconfig_membersonly',
        'muc#roomconfig_whois',
      ]),
    );
    expect(result.features).toEqual(
      expect.arrayContaining(['http://jabber.org/protocol/muc', 'muc_moderated', 'muc_persistent', 'urn:xmpp:mam:2']),
    );
    expect(result.identity[0]?.slice(0, 3)).toEqual(['conference', 'text', null]);
    expect(result.kicked).toEqual({ codes: [110, 307], reason: 'too talkative' });
    expect(result.mam.map((m) => m.body)).toEqual(['both alike', 'in dignity', 'Anon, good nurse!']);
    expect(result.mam[2]?.from).toBe(`${ROOM}/Nurse`);
    expect(result.left_codes).toEqual([110]);

    // What the raw stream saw of it: both joins, the message, the configuration change, the kick, the leave.
    expect(await juliet.next(new RegExp(`^<presence[^>]*from='${ROOM}/Romeo'`))).toContain("jid='romeo@localhost/slix'");
    expect(await juliet.next(new RegExp(`^<presence[^>]*from='${ROOM}/Nurse'`))).toContain("role='participant'");
    expect(await juliet.next(/Anon, good nurse!/)).toContain(`from='${ROOM}/Nurse'`);
    expect(await juliet.next(/code='104'/)).toContain(`from='${ROOM}'`);
    expect(await juliet.next(/code='307'/)).toContain('<reason>too talkative</reason>');
    expect(await juliet.next(new RegExp(`from='${ROOM}/Romeo'[^>]*type='unavailable'`))).toContain('<status>farewell</status>');
  }, 120_000);

  it('@xmpp/client over WebSocket and a raw TCP stream share a room: presence, messages both ways, self-ping, a private message', async () => {
    const users = new MemoryUserStore({ iterations: 4096 });
    await users.create('juliet', 'balcony');
    await users.create('romeo', 'r0meo!');
    const server = xmppServer({
      domain: 'localhost',
      storage: memoryStorage(),
      users,
      allowPlaintext: true,
      modules: [...defaultModules(), muc({ lockNewRooms: false })],
    });
    const service = new PortService({ env: {}, gracePeriodMs: 2000 });
    services.push(service);
    const http = service.bind(httpAdapter({ upgrades: { '/xmpp-websocket': server.websocket() } }), { port: 0, host: '127.0.0.1' });
    const tcp = service.bind(server.c2s(), { port: 0, host: '127.0.0.1', tls: await selfSignedCert() });
    await service.start();

    const juliet = await Raw.login(portOf(tcp), 'juliet', 'balcony', 'tcp');
    juliet.send('<presence/>');
    await join(juliet, 'lobby', 'Juliet');
    juliet.send(`<message to='${ROOM}' type='groupchat' id='before'><body>before you came</body></message>`);
    await juliet.next(/id='before'/);

    const romeo = xmppClient({
      timeout: 8000,
      service: `ws://127.0.0.1:${portOf(http)}/xmpp-websocket`,
      domain: 'localhost',
      username: 'romeo',
      password: 'r0meo!',
      resource: 'ws',
    });
    romeo.on('error', () => {});
    clients.push(romeo);
    const stanzas: Element[] = [];
    const waiters: Array<() => void> = [];
    romeo.on('stanza', (stanza: Element) => {
      stanzas.push(stanza);
      for (const wake of waiters.splice(0)) wake();
    });
    const next = async (test: (stanza: Element) => boolean): Promise<Element> => {
      const deadline = Date.now() + 15_000;
      for (;;) {
        const index = stanzas.findIndex(test);
        if (index !== -1) return stanzas.splice(index, 1)[0] as Element;
        if (Date.now() > deadline) throw new Error(`timed out; received: ${stanzas.map(String).join('\n')}`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 1000);
          waiters.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
    };
    await romeo.start();
    // @xmpp/client 0.14 zeroes its inbound count when its enable procedure resolves, some ticks
    // after <enabled/> arrived: stanzas that came in between (a room's join burst) are counted and
    // then forgotten, so its next <a/> goes backwards and the server ends the stream
    // (handled-count-too-high). Join once stream management is enabled on the client's side.
    const sm = (romeo as unknown as { streamManagement: { enabled: boolean } }).streamManagement;
    await vi.waitFor(() => expect(sm.enabled).toBe(true), { timeout: 10_000 });
    await romeo.send(xml('presence', {}));
    await romeo.send(xml('presence', { to: `${ROOM}/Romeo` }, xml('x', { xmlns: 'http://jabber.org/protocol/muc' })));
    const self = await next(
      (s) =>
        s.is('presence') &&
        s.attrs.from === `${ROOM}/Romeo` &&
        s.getChild('x', 'http://jabber.org/protocol/muc#user')?.getChild('status') !== undefined,
    );
    expect(self.toString()).toContain('<status code="110"/>');
    const history = await next((s) => s.is('message') && s.getChild('delay', 'urn:xmpp:delay') !== undefined);
    expect(history.getChildText('body')).toBe('before you came');
    await next((s) => s.is('message') && s.getChild('subject') !== undefined);
    expect(await juliet.next(new RegExp(`^<presence[^>]*from='${ROOM}/Romeo'`))).toContain("jid='romeo@localhost/ws'");

    // Both ways.
    await romeo.send(xml('message', { to: ROOM, type: 'groupchat', id: 'ws1' }, xml('body', {}, 'from the web')));
    expect(await juliet.next(/id='ws1'/)).toContain(`from='${ROOM}/Romeo'`);
    juliet.send(`<message to='${ROOM}' type='groupchat' id='tcp1'><body>from tcp</body></message>`);
    const heard = await next((s) => s.is('message') && s.attrs.id === 'tcp1');
    expect(heard.attrs.from).toBe(`${ROOM}/Juliet`);
    expect(heard.getChildText('body')).toBe('from tcp');

    // XEP-0410 self-ping through @xmpp/client's IQ caller.
    const caller = (romeo as unknown as { iqCaller: { request(stanza: Element, timeout?: number): Promise<Element> } }).iqCaller;
    const pong = await caller.request(xml('iq', { type: 'get', to: `${ROOM}/Romeo` }, xml('ping', { xmlns: 'urn:xmpp:ping' })), 10_000);
    expect(pong.attrs.type).toBe('result');

    // A private message from the TCP occupant to the WebSocket one.
    juliet.send(`<message to='${ROOM}/Romeo' type='chat' id='pm'><body>just you</body></message>`);
    const pm = await next((s) => s.is('message') && s.attrs.id === 'pm');
    expect(pm.attrs.from).toBe(`${ROOM}/Juliet`);
    expect(pm.getChildText('body')).toBe('just you');

    // The WebSocket closes: romeo leaves the room.
    await romeo.stop();
    expect(await juliet.next(new RegExp(`from='${ROOM}/Romeo'[^>]*type='unavailable'`))).toContain("role='none'");
  }, 60_000);
});
