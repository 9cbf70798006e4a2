import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { readUntil } from '../../../test/support/net.js';
import { defaultModules, memoryStorage, type XmppModule } from '../src/index.js';
import type { PresenceSubscription } from '../src/modules/blocking.js';
import { lastActivity } from '../src/modules/last.js';
import { formatOffset, formatUtc, time } from '../src/modules/time.js';
import { version } from '../src/modules/version.js';
import { rawLogin, start } from './support.js';

// The small server queries over raw streams: software version (XEP-0092), entity time (XEP-0202),
// last activity and uptime (XEP-0012).

const STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';
const packageVersion = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** Send an IQ on a quiet raw stream and read its answer. */
async function ask(socket: Socket, id: string, attrs: string, body: string): Promise<string> {
  socket.write(`<iq id='${id}' ${attrs}>${body}</iq>`);
  const text = await readUntil(socket, new RegExp(`<iq[^>]* id='${id}'[^>]*(/>|>[\\s\\S]*</iq>)`));
  return text.slice(text.indexOf('<iq'));
}

async function server(modules: XmppModule[], accounts: Record<string, string> = {}) {
  return start({
    server: {
      storage: memoryStorage(),
      modules: [...defaultModules().filter((module) => !modules.some((mine) => mine.name === module.name)), ...modules],
    },
    accounts,
  });
}

describe('software version (XEP-0092)', () => {
  it("answers portbind and @portbind/xmpp's version, without the OS unless asked; it is in disco#info", async () => {
    const { port } = await server([version()]);
    const juliet = await rawLogin(port, 'juliet', 'balcony');
    const reply = await ask(juliet, 'v', "type='get' to='localhost'", "<query xmlns='jabber:iq:version'/>");
    expect(reply).toContain("type='result'");
    expect(reply).toContain(`<query xmlns='jabber:iq:version'><name>portbind</name><version>${packageVersion}</version></query>`);
    const disco = await ask(juliet, 'd', "type='get' to='localhost'", "<query xmlns='http://jabber.org/protocol/disco#info'/>");
    expect(disco).toContain("<feature var='jabber:iq:version'/>");
    const set = await ask(juliet, 's', "type='set' to='localhost'", "<query xmlns='jabber:iq:version'/>");
    expect(set).toContain("type='error'");
    juliet.destroy();
  });

  it('names the OS when configured to', async () => {
    const { port } = await server([version({ os: 'Plan 9', name: 'chat', version: '1.2.3' })]);
    const juliet = await rawLogin(port, 'juliet', 'balcony');
    const reply = await ask(juliet, 'v', "type='get' to='localhost'", "<query xmlns='jabber:iq:version'/>");
    expect(reply).toContain('<name>chat</name><version>1.2.3</version><os>Plan 9</os>');
    juliet.destroy();
  });
});

describe('entity time (XEP-0202)', () => {
  it('answers the UTC time and the offset', async () => {
    const { port } = await server([time()]);
    const juliet = await rawLogin(port, 'juliet', 'balcony');
    const before = Math.floor(Date.now() / 1000) * 1000;
    const reply = await ask(juliet, 't', "type='get' to='localhost'", "<time xmlns='urn:xmpp:time'/>");
    const after = Date.now();
    const match = /<time xmlns='urn:xmpp:time'><tzo>([+-]\d\d:\d\d)<\/tzo><utc>(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)<\/utc><\/time>/.exec(
      reply,
    );
    expect(match, reply).not.toBeNull();
    const utc = Date.parse(match?.[2] ?? '');
    expect(utc).toBeGreaterThanOrEqual(before);
    expect(utc).toBeLessThanOrEqual(after);
    expect(match?.[1]).toBe(formatOffset(-new Date(utc).getTimezoneOffset()));
    const disco = await ask(juliet, 'd', "type='get' to='localhost'", "<query xmlns='http://jabber.org/protocol/disco#info'/>");
    expect(disco).toContain("<feature var='urn:xmpp:time'/>");
    juliet.destroy();
  });

  it('writes XEP-0082 times and offsets', async () => {
    const { port } = await server([time({ now: () => new Date(Date.UTC(2026, 10, 28, 4, 42, 46, 789)), timezone: 'utc' })]);
    const juliet = await rawLogin(port, 'juliet', 'balcony');
    const reply = await ask(juliet, 't', "type='get' to='localhost'", "<time xmlns='urn:xmpp:time'/>");
    expect(reply).toContain('<tzo>+00:00</tzo><utc>2026-11-28T04:42:46Z</utc>');
    expect([formatOffset(0), formatOffset(60), formatOffset(-330), formatOffset(345)]).toEqual(['+00:00', '+01:00', '-05:30', '+05:45']);
    expect(formatUtc(new Date(0))).toBe('1970-01-01T00:00:00Z');
    juliet.destroy();
  });
});

describe('last activity (XEP-0012)', () => {
  function clocked(subscriptions: Record<string, PresenceSubscription> = {}) {
    const clock = { now: 1_000_000_000_000 };
    const module = lastActivity({
      now: () => clock.now,
      subscription: (user, contact) => subscriptions[`${user}:${contact}`] ?? 'none',
    });
    return { clock, module };
  }

  it('to the server: its uptime in seconds, without text', async () => {
    const { clock, module } = clocked();
    const { port } = await server([module]);
    const juliet = await rawLogin(port, 'juliet', 'balcony');
    clock.now += 123_456_789;
    const reply = await ask(juliet, 'u', "type='get' to='localhost'", "<query xmlns='jabber:iq:last'/>");
    expect(reply).toMatch(/<iq [^>]*type='result'[^>]*><query xmlns='jabber:iq:last' seconds='123456'\/><\/iq>/);
    const disco = await ask(juliet, 'd', "type='get' to='localhost'", "<query xmlns='http://jabber.org/protocol/disco#info'/>");
    expect(disco).toContain("<feature var='jabber:iq:last'/>");
    juliet.destroy();
  });

  it('to an account: seconds since its last logout with its last status, to subscribed contacts only; 0 while online', async () => {
    const { clock, module } = clocked({ 'juliet:romeo@localhost': 'from' });
    const { port } = await server([module], { mercutio: 'queen-mab', tybalt: 'prince' });
    const romeo = await rawLogin(port, 'romeo', 'r0meo!');
    const mercutio = await rawLogin(port, 'mercutio', 'queen-mab');
    const query = "<query xmlns='jabber:iq:last'/>";

    // Not subscribed to tybalt: forbidden, whether or not there is anything to tell.
    expect(await ask(romeo, 'n', "type='get' to='tybalt@localhost'", query)).toContain(`<forbidden xmlns='${STANZAS}'/>`);

    const juliet = await rawLogin(port, 'juliet', 'balcony', 'balcony');
    juliet.write('<presence/>');
    expect(await ask(juliet, 'self', "type='get'", query)).toContain("<query xmlns='jabber:iq:last' seconds='0'/>");
    expect(await ask(romeo, 'on', "type='get' to='juliet@localhost'", query)).toContain("<query xmlns='jabber:iq:last' seconds='0'/>");

    // She leaves with a status; 903 seconds later romeo asks.
    // In one packet, as slixmpp and Gajim send it on disconnect.
    juliet.write("<presence type='unavailable'><status>Heading Home</status></presence></stream:stream>");
    await readUntil(juliet, /<\/stream:stream>/);
    juliet.destroy();
    // The logout is stored once the server has closed the session: ask until it has.
    let reply = '';
    for (let attempt = 0; attempt < 500 && !reply.includes('Heading Home'); attempt++) {
      if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 10));
      reply = await ask(romeo, `off${attempt}`, "type='get' to='juliet@localhost'", query);
    }
    expect(reply).toContain("<query xmlns='jabber:iq:last' seconds='0'>Heading Home</query>");
    clock.now += 903_000;
    expect(await ask(romeo, 'later', "type='get' to='juliet@localhost'", query)).toContain(
      "<query xmlns='jabber:iq:last' seconds='903'>Heading Home</query>",
    );

    // mercutio is not subscribed to juliet's presence.
    const forbidden = await ask(mercutio, 'f', "type='get' to='juliet@localhost'", query);
    expect(forbidden).toContain("type='error'");
    expect(forbidden).toContain(`<forbidden xmlns='${STANZAS}'/>`);
    romeo.destroy();
    mercutio.destroy();
  });

  it('an account never seen logging out answers service-unavailable to a subscribed contact', async () => {
    const { module } = clocked({ 'tybalt:romeo@localhost': 'both' });
    const { port } = await server([module], { tybalt: 'prince' });
    const romeo = await rawLogin(port, 'romeo', 'r0meo!');
    const reply = await ask(romeo, 'n', "type='get' to='tybalt@localhost'", "<query xmlns='jabber:iq:last'/>");
    expect(reply).toContain(`<service-unavailable xmlns='${STANZAS}'/>`);
    romeo.destroy();
  });
});
