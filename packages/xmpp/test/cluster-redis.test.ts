import { spawn } from 'node:child_process';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { xml as clientXml } from '@xmpp/client';
import { afterEach, describe, expect, it } from 'vitest';
import { sleep } from '../../../test/support/net.js';
import { freePort, startRedis } from '../../../test/support/redis-server.js';
import { behindHaproxy, cleanup, fixtures, Lines, PYTHON, redisOn, romeo, run, twoNodes, until } from './cluster-support.js';

afterEach(cleanup);

// The real thing (issue 12): two processes of an XMPP service on a real redis-server, sharing one
// SQLite file. A slixmpp user on process 1 and an @xmpp/client user on process 2 chat; process 2 is
// killed with SIGKILL while messages are on their way to it; its user reconnects to process 1 and
// gets every one of them.

describe('XMPP on two processes over a real redis-server', () => {
  it('slixmpp on process 1 and @xmpp/client on process 2 chat; process 2 is killed; nothing sent meanwhile is lost', async () => {
    run.redis = await startRedis();
    const [one, two] = await twoNodes(run.redis.port);
    expect(one.node).not.toBe(two.node);

    const slix = spawn(PYTHON, [join(fixtures, 'slix_user.py'), '127.0.0.1', String(one.port)], { stdio: ['pipe', 'pipe', 'pipe'] });
    run.children.push(slix);
    const juliet = new Lines(slix.stdout as Readable);
    const say = (to: string, body: string): void => {
      slix.stdin?.write(`${JSON.stringify({ to, body })}\n`);
    };
    expect((await juliet.next<{ ready: string }>((line) => 'ready' in line, 'slixmpp to log in')).ready).toBe('juliet@localhost/slix');

    const first = await romeo(two.port, 'web');
    // To juliet's bare JID on process 1; her answer to romeo's full JID on process 2.
    await first.xmpp.send(clientXml('message', { to: 'juliet@localhost', type: 'chat' }, clientXml('body', {}, 'ping 1')));
    const ping = await juliet.next<{ from: string; body: string }>((line) => line.body === 'ping 1', 'the ping on process 1');
    expect(ping.from).toBe('romeo@localhost/web');
    await until(() => first.bodies.includes('pong 1'), 'the pong on process 2');
    say('romeo@localhost', 'hello from slixmpp');
    await until(() => first.bodies.includes('hello from slixmpp'), 'the message to the bare JID on process 2');

    // Process 2 dies; juliet writes on, to romeo's bare JID and to the full JID he had.
    two.child.kill('SIGKILL');
    const meanwhile = ['meanwhile 1', 'meanwhile 2', 'meanwhile 3'];
    say('romeo@localhost', meanwhile[0] as string);
    say('romeo@localhost/web', meanwhile[1] as string);
    say('romeo@localhost', meanwhile[2] as string);
    for (const body of meanwhile) await juliet.next((line) => line.sent === body, `juliet to send ${body}`);
    // Its client gives up on process 2 (stopped after the test: its reconnection attempts find nobody).
    void first.xmpp.stop().catch(() => undefined);
    // romeo's client reconnects, to process 1 (the routing layer would send it there).
    const second = await romeo(one.port, 'web');
    await until(
      () => meanwhile.every((body) => second.bodies.includes(body)),
      `every message sent meanwhile (got ${JSON.stringify(second.bodies)})`,
    );
    expect(second.bodies.filter((body) => body.startsWith('meanwhile'))).toEqual(meanwhile);

    // And the chat goes on, both ways, on process 1.
    await second.xmpp.send(clientXml('message', { to: 'juliet@localhost', type: 'chat' }, clientXml('body', {}, 'ping 2')));
    await juliet.next((line) => line.body === 'ping 2', 'the ping on process 1');
    await until(() => second.bodies.includes('pong 2'), 'the pong');
    slix.stdin?.end();
    expect(one.stderr()).not.toMatch(/Error/);
  }, 180_000);

  it('juliet edits her roster on both processes at once (two devices): every contact is kept, none lost to the other process', async () => {
    run.redis = await startRedis();
    const [one, two] = await twoNodes(run.redis.port);
    const desk = await romeo(one.port, 'desk', { username: 'juliet', password: 'balcony' });
    const phone = await romeo(two.port, 'phone', { username: 'juliet', password: 'balcony' });
    // Each device adds 25 contacts, its roster sets sent without waiting for the answers; both devices at once.
    const add = async (client: typeof desk, prefix: string): Promise<void> => {
      await Promise.all(
        Array.from({ length: 25 }, (_, i) =>
          client.xmpp.iqCaller.set(
            clientXml(
              'query',
              { xmlns: 'jabber:iq:roster' },
              clientXml('item', { jid: `${prefix}${i}@example.org`, name: `${prefix} ${i}` }),
            ),
          ),
        ),
      );
    };
    await Promise.all([add(desk, 'desk'), add(phone, 'phone')]);
    // Read back on either process, as a new login would: all 50.
    for (const client of [desk, phone]) {
      const roster = await client.xmpp.iqCaller.get(clientXml('query', { xmlns: 'jabber:iq:roster' }));
      const jids = roster.children.flatMap((item) => (typeof item === 'string' ? [] : [String(item.attrs.jid)]));
      expect(jids).toHaveLength(50);
      expect(new Set(jids).size).toBe(50);
    }
    expect(one.stderr()).not.toMatch(/Error/);
    expect(two.stderr()).not.toMatch(/Error/);
  }, 120_000);

  it('goes on after redis-server restarts empty: the directory is rebuilt, and what was sent meanwhile arrives', async () => {
    const port = await freePort();
    let server = await redisOn(port);
    const [one, two] = await twoNodes(port);
    const juliet = await romeo(one.port, 'phone', { username: 'juliet', password: 'balcony' });
    const him = await romeo(two.port, 'web');
    const chat = async (from: typeof juliet, to: string, body: string, at: typeof juliet): Promise<void> => {
      await from.xmpp.send(clientXml('message', { to, type: 'chat' }, clientXml('body', {}, body)));
      await until(() => at.bodies.includes(body), `${body} to arrive (got ${JSON.stringify(at.bodies)})`);
    };
    await chat(juliet, 'romeo@localhost', 'before', him);
    await chat(him, 'juliet@localhost', 'before too', juliet);

    // Redis dies and comes back empty: no sessions, no streams, no groups.
    server.kill('SIGKILL');
    await new Promise((resolve) => server.once('exit', resolve));
    await juliet.xmpp.send(clientXml('message', { to: 'romeo@localhost', type: 'chat' }, clientXml('body', {}, 'during')));
    await sleep(500);
    server = await redisOn(port);
    await until(() => him.bodies.includes('during'), `the message sent while Redis was down (got ${JSON.stringify(him.bodies)})`);
    // And it goes on both ways, with nobody logging in again.
    await chat(juliet, 'romeo@localhost', 'after', him);
    await chat(him, 'juliet@localhost', 'after too', juliet);
    // At least once: an append the restart interrupted may or may not have run (the bus says so), and the
    // message then goes to offline storage too; a second copy is possible, a loss is not.
    expect([...new Set(him.bodies.filter((body) => body === 'during' || body === 'after'))]).toEqual(['during', 'after']);
    expect(one.stderr()).not.toMatch(/Error/);
    expect(two.stderr()).not.toMatch(/Error/);
  }, 180_000);
  it('behind HAProxy: users land on both processes and chat; the user of a killed process resumes his session on the other through HAProxy, and gets what was sent meanwhile once', async () => {
    const redisPort = await freePort();
    let server = await redisOn(redisPort);
    const [one, two] = await twoNodes(redisPort);
    const { front, proxy } = await behindHaproxy(one.port, two.port);
    // Through HAProxy only, one after the other: round-robin puts them on different processes.
    const her = await romeo(front, 'phone', { username: 'juliet', password: 'balcony' });
    const him = await romeo(front, 'web');
    const states = await proxy.servers();
    expect([states['xmpp/one']?.current, states['xmpp/two']?.current]).toEqual([1, 1]);
    await her.xmpp.send(clientXml('message', { to: 'romeo@localhost', type: 'chat' }, clientXml('body', {}, 'across')));
    await until(() => him.bodies.includes('across'), 'the message across processes');
    await him.xmpp.send(clientXml('message', { to: 'juliet@localhost', type: 'chat' }, clientXml('body', {}, 'back')));
    await until(() => her.bodies.includes('back'), 'the answer');

    // Redis restarts empty first: every process writes its directory entries and its sessions' journals again.
    server.kill('SIGKILL');
    await new Promise((resolve) => server.once('exit', resolve));
    server = await redisOn(redisPort);
    await her.xmpp.send(clientXml('message', { to: 'romeo@localhost', type: 'chat' }, clientXml('body', {}, 'after redis')));
    await until(() => him.bodies.includes('after redis'), 'the chat after the Redis restart');

    // The process romeo landed on (the second connection: `two`) dies; juliet writes on meanwhile. His client
    // reconnects by itself (@xmpp/client's reconnect), through the same HAProxy address: only process one is
    // left — and resumes his stream-management session there (XEP-0198: no new login, no new presence),
    // from the journal process two kept on Redis. What was sent meanwhile arrives, once.
    let resumed = 0;
    let online = 0;
    const sm = (him.xmpp as unknown as { streamManagement: { on(event: 'resumed', listener: () => void): void } }).streamManagement;
    sm.on('resumed', () => {
      resumed++;
    });
    him.xmpp.on('online', () => {
      online++;
    });
    two.child.kill('SIGKILL');
    const meanwhile = ['while down 1', 'while down 2', 'while down 3'];
    for (const body of meanwhile)
      await her.xmpp.send(clientXml('message', { to: 'romeo@localhost', type: 'chat' }, clientXml('body', {}, body)));
    await until(() => resumed > 0, 'romeo resumed through HAProxy');
    expect(online).toBe(0);
    await until(() => meanwhile.every((body) => him.bodies.includes(body)), `what was sent meanwhile (got ${JSON.stringify(him.bodies)})`);
    expect(him.bodies.filter((body) => body.startsWith('while down'))).toEqual(meanwhile);
    // The resumed session is romeo's on process one now: the chat goes on both ways.
    await him.xmpp.send(clientXml('message', { to: 'juliet@localhost', type: 'chat' }, clientXml('body', {}, 'resumed')));
    await until(() => her.bodies.includes('resumed'), 'a message from the resumed session');
    await her.xmpp.send(clientXml('message', { to: 'romeo@localhost', type: 'chat' }, clientXml('body', {}, 'to the resumed')));
    await until(() => him.bodies.includes('to the resumed'), 'a message to the resumed session');
    expect(him.bodies.filter((body) => body === 'to the resumed')).toHaveLength(1);
    await proxy.waitFor('two DOWN', (now) => now['xmpp/two']?.status === 'DOWN');
    expect((await proxy.servers())['xmpp/one']?.current).toBe(2);
    expect(one.stderr()).not.toMatch(/Error/);
  }, 180_000);

  it('behind HAProxy: slixmpp (stream management on) resumes on the other process after its own is killed', async () => {
    run.redis = await startRedis();
    const [one, two] = await twoNodes(run.redis.port);
    const { front, proxy } = await behindHaproxy(one.port, two.port);
    // slixmpp first (round robin: process one), romeo second (process two).
    const slix = spawn(PYTHON, [join(fixtures, 'slix_user.py'), '127.0.0.1', String(front), '--sm'], { stdio: ['pipe', 'pipe', 'pipe'] });
    run.children.push(slix);
    const juliet = new Lines(slix.stdout as Readable);
    await juliet.next((line) => 'ready' in line, 'slixmpp to log in');
    await juliet.next((line) => line.sm === true, 'stream management enabled');
    const him = await romeo(front, 'web');
    expect([(await proxy.servers())?.['xmpp/one']?.current, (await proxy.servers())?.['xmpp/two']?.current]).toEqual([1, 1]);
    await him.xmpp.send(clientXml('message', { to: 'juliet@localhost/slix', type: 'chat' }, clientXml('body', {}, 'ping 1')));
    await until(() => him.bodies.includes('pong 1'), 'the pong from slixmpp');

    one.child.kill('SIGKILL');
    await juliet.next((line) => line.disconnected === true, 'slixmpp to lose its link');
    const meanwhile = ['meanwhile 1', 'meanwhile 2'];
    for (const body of meanwhile)
      await him.xmpp.send(clientXml('message', { to: 'juliet@localhost/slix', type: 'chat' }, clientXml('body', {}, body)));
    await juliet.next((line) => line.resumed === true, 'slixmpp to resume on process two', 90_000);
    for (const body of meanwhile) await juliet.next((line) => line.body === body, body);
    // Resumed, not a new login; and each message once.
    await him.xmpp.send(clientXml('message', { to: 'juliet@localhost/slix', type: 'chat' }, clientXml('body', {}, 'ping 2')));
    await until(() => him.bodies.includes('pong 2'), 'the pong from the resumed session');
    await expect(
      juliet.next((line) => 'ready' in line || meanwhile.includes(String(line.body)), 'a second login or copy', 1000),
    ).rejects.toThrow(/timed out/);
    slix.stdin?.end();
    expect(two.stderr()).not.toMatch(/Error/);
  }, 180_000);
});
