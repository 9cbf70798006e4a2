import { memoryBus } from '@portbind/core';
import { describe, expect, it } from 'vitest';
import { memoryStorage, type XmppServer } from '../src/index.js';
import { authenticated, bodies, bound, chat, enable, journaled, julietOnA, SM, seen, smNode, until } from './cluster-smacks-support.js';

// Stream management across processes (issue 12): a session enabled with resumption on process A
// resumes on process B — while A lives (A lets it go) or after A died (B takes the journal A kept
// on the bus) — with every stanza A had not seen acknowledged sent again and nothing twice; a
// session nobody resumes has its unacknowledged messages stored offline by another process when
// its resumption window ends. Two servers sharing a memoryBus (one "process" each) and one store.

/** Two processes; `ownStoreForA`: A writes to a store of its own (what A's lingering server does after its "death" cannot pass for B's work). */
async function pair(ttlMs = 30_000, resumeTimeoutMs = 600_000, ownStoreForA = false) {
  const busA = memoryBus();
  const busB = busA.peer();
  const storage = memoryStorage();
  const a = await smNode(busA, ownStoreForA ? memoryStorage() : storage, ttlMs, resumeTimeoutMs);
  const b = await smNode(busB, storage, ttlMs, resumeTimeoutMs);
  return { busA, busB, storage, a, b };
}

function holder(server: XmppServer, full: string): string | undefined {
  return (server.cluster as unknown as { nodeOf(full: string): string | undefined }).nodeOf(full);
}

describe('stream management across processes (a shared bus)', () => {
  it('resumes on B a session hibernating on A: A lets it go, B sends what was not acknowledged, once, in order', async () => {
    const { a, b, busB } = await pair();
    const { romeo, juliet, id } = await julietOnA(a, b);
    romeo.write(chat('juliet@localhost/phone', 'before'));
    await juliet.until(/<body>before<\/body>/);
    const seenBefore = seen(juliet);
    // The link drops: A keeps the session (hibernating); romeo goes on writing to it.
    juliet.socket.destroy();
    for (const body of ['during-1', 'during-2', 'during-3']) romeo.write(chat('juliet@localhost/phone', body));
    await until(() => journaled(busB, id, 'during-3'), 'A journaled what it queued');

    // The client comes back through the routing layer, to B.
    const raw = await authenticated(b.port);
    raw.write(`<resume xmlns='${SM}' previd='${id}' h='${seenBefore}'/>`);
    const resumed = await raw.until(/<resumed [^>]*\/>/);
    expect(resumed).toContain(`previd='${id}'`);
    expect(resumed).toContain("h='1'"); // the one presence juliet sent on A
    await raw.until(/<body>during-3<\/body>/);
    romeo.write(chat('juliet@localhost/phone', 'after'));
    await raw.until(/<body>after<\/body>/);
    expect(bodies(raw.text)).toEqual(['during-1', 'during-2', 'during-3', 'after']);
    expect(raw.text).toMatch(/<body>during-1<\/body>(?:(?!<\/message>).)*<delay xmlns='urn:xmpp:delay' from='localhost'/);
    // B holds the session now, for A too; A did not end it (romeo saw no unavailable presence from it).
    const nodeB = b.server.cluster?.nodeId;
    await until(() => holder(a.server, 'juliet@localhost/phone') === nodeB, 'A routes juliet to B');
    expect(romeo.text).not.toMatch(/<presence[^>]*type='unavailable'/);
    // It counts on: an ack request covers the resent stanzas and the new one.
    raw.write(`<a xmlns='${SM}' h='${seenBefore + 4}'/><r xmlns='${SM}'/>`);
    expect(await raw.until(/<a xmlns='urn:xmpp:sm:3' h='\d+'\/>/)).toContain("h='1'");
  });

  it('resumes on B after A died: what A had sent and not seen acknowledged, then what was sent meanwhile', async () => {
    const { a, b, busA, busB } = await pair(600);
    const { romeo, juliet, id } = await julietOnA(a, b);
    romeo.write(chat('juliet@localhost/phone', 'seen'));
    await juliet.until(/<body>seen<\/body>/);
    const h = seen(juliet);
    // Written to juliet's socket and never acknowledged: lost with the process unless journaled.
    romeo.write(chat('juliet@localhost/phone', 'unacked'));
    await juliet.until(/<body>unacked<\/body>/);
    await until(() => journaled(busB, id, 'unacked'), 'A journaled it');
    // A's process dies (its bus goes silent; its server is left with nothing to say), the link with it.
    busA.kill();
    juliet.socket.destroy();
    romeo.write(chat('juliet@localhost/phone', 'meanwhile'));

    const raw = await authenticated(b.port);
    raw.write(`<resume xmlns='${SM}' previd='${id}' h='${h}'/>`);
    expect(await raw.until(/<resumed [^>]*\/>/, 20_000)).toContain("h='1'");
    // What was appended to A's stream after it died arrives once A is found dead (sessionTtlMs).
    await raw.until(/<body>meanwhile<\/body>/, 20_000);
    expect(bodies(raw.text)).toEqual(['unacked', 'meanwhile']);
    romeo.write(chat('juliet@localhost', 'after'));
    await raw.until(/<body>after<\/body>/);
    expect(bodies(raw.text)).toEqual(['unacked', 'meanwhile', 'after']);
    // B answers for juliet again in the directory: A is forgotten.
    await until(() => b.server.cluster?.remoteSessions().length === 0, 'A forgotten by B');
    await a.service.stop();
  });

  it('a session nobody resumes after its process died: its unacknowledged messages go offline, delivered at the next login', async () => {
    const { a, b, busA, busB, storage } = await pair(600, 1000, true);
    const { romeo, juliet, id } = await julietOnA(a, b);
    romeo.write(chat('juliet@localhost/phone', 'never-acked'));
    await juliet.until(/<body>never-acked<\/body>/);
    await until(() => journaled(busB, id, 'never-acked'), 'A journaled it');
    busA.kill();
    juliet.socket.destroy();
    // B finds A dead, looks after the session for the rest of its window, then stores the message.
    await until(async () => (await storage.archive('offline').query('juliet', { max: 0 })).count === 1, 'stored offline', 20_000);
    await until(async () => (await busB.stream(`xmpp:sm:localhost:${id}`).length()) === 0, 'the journal deleted');
    // A late resume learns the h the session had (the journal is gone: its SM-ID is remembered).
    const late = await authenticated(b.port);
    late.write(`<resume xmlns='${SM}' previd='${id}' h='0'/>`);
    expect(await late.until(/<failed [^>]*>/)).toContain("h='1'");
    const back = await bound(b.port, 'juliet', 'balcony', 'laptop');
    back.write('<presence/>');
    const message = await back.until(/<body>never-acked<\/body>(?:(?!<\/message>).)*<\/message>/);
    expect(message).toMatch(/<delay xmlns='urn:xmpp:delay'/);
    await a.service.stop();
  });

  it('a client that logs in again with its resource instead of resuming gets at once what the dead process had not seen acknowledged', async () => {
    const { a, b, busA, busB } = await pair(600);
    const { romeo, juliet, id } = await julietOnA(a, b);
    romeo.write(chat('juliet@localhost/phone', 'unacked'));
    await juliet.until(/<body>unacked<\/body>/);
    await until(() => journaled(busB, id, 'unacked'), 'A journaled it');
    busA.kill();
    juliet.socket.destroy();
    await until(() => b.server.cluster?.remoteSessions().length === 0, 'B finds A dead');
    // The resumption window is 10 minutes: only the new bind can make it arrive now.
    const again = await bound(b.port, 'juliet', 'balcony', 'phone');
    again.write('<presence/>');
    expect(await again.until(/<body>unacked<\/body>(?:(?!<\/message>).)*<\/message>/)).toMatch(/<delay xmlns='urn:xmpp:delay'/);
    await until(async () => (await busB.stream(`xmpp:sm:localhost:${id}`).length()) === 0, 'the journal deleted');
    expect(bodies(again.text)).toEqual(['unacked']);
    await a.service.stop();
  });

  it('a stopping process leaves its sessions resumable on the others (a rolling restart)', async () => {
    const { a, b, busB } = await pair(600);
    const { romeo, juliet, id } = await julietOnA(a, b);
    romeo.write(chat('juliet@localhost/phone', 'before-restart'));
    await juliet.until(/<body>before-restart<\/body>/);
    await until(() => journaled(busB, id, 'before-restart'), 'A journaled it');
    await a.service.stop();
    // Its stream was closed for the restart; the client resumes on B with nothing acknowledged.
    const raw = await authenticated(b.port);
    raw.write(`<resume xmlns='${SM}' previd='${id}' h='0'/>`);
    expect(await raw.until(/<resumed [^>]*\/>/)).toContain(`previd='${id}'`);
    await raw.until(/<body>before-restart<\/body>/);
    romeo.write(chat('juliet@localhost/phone', 'after-restart'));
    await raw.until(/<body>after-restart<\/body>/);
    expect(bodies(raw.text)).toEqual(['before-restart', 'after-restart']);
  });

  it('keeps in the journal only what the client has not acknowledged; an <r/> flood writes nothing more', async () => {
    const { a, b, busB } = await pair();
    const { romeo, juliet, id } = await julietOnA(a, b);
    for (let i = 0; i < 150; i++) romeo.write(chat('juliet@localhost/phone', `m${i}`));
    await juliet.until(/<body>m149<\/body>/);
    const journal = busB.stream(`xmpp:sm:localhost:${id}`);
    await until(() => journaled(busB, id, 'm149'), 'all journaled');
    expect(await journaled(busB, id, 'm0')).toBe(true);
    // juliet acknowledges everything she saw: what she has leaves the journal (a checkpoint or two stay).
    const h = seen(juliet);
    juliet.write(`<a xmlns='${SM}' h='${h}'/>`);
    await until(async () => !(await journaled(busB, id, 'm0')) && !(await journaled(busB, id, 'm149')), 'the journal trimmed');
    expect(await journal.length()).toBeLessThanOrEqual(3);
    const answered = (): number => juliet.text.split("<a xmlns='urn:xmpp:sm:3' h='1'/>").length - 1;
    const before = answered();
    for (let i = 0; i < 50; i++) juliet.write(`<r xmlns='${SM}'/>`);
    await until(() => answered() === before + 50, 'fifty answers');
    expect(await journal.length()).toBeLessThanOrEqual(3);
    // Two more she does not acknowledge; her link drops; on B she gets exactly those.
    romeo.write(chat('juliet@localhost/phone', 'late-1'));
    romeo.write(chat('juliet@localhost/phone', 'late-2'));
    await juliet.until(/<body>late-2<\/body>/);
    await until(() => journaled(busB, id, 'late-2'), 'journaled');
    juliet.socket.destroy();
    const raw = await authenticated(b.port);
    raw.write(`<resume xmlns='${SM}' previd='${id}' h='${h}'/>`);
    await raw.until(/<resumed [^>]*\/>/);
    await raw.until(/<body>late-2<\/body>/);
    expect(bodies(raw.text)).toEqual(['late-1', 'late-2']);
    // It counts on from there: acknowledging the two is no more than was sent; the stream goes on.
    raw.write(`<a xmlns='${SM}' h='${h + 2}'/><r xmlns='${SM}'/>`);
    expect(await raw.until(/<a xmlns='urn:xmpp:sm:3' h='\d+'\/>/)).toMatch(/<a xmlns='urn:xmpp:sm:3' h='1'\/>$/);
    romeo.write(chat('juliet@localhost/phone', 'on B'));
    await raw.until(/<body>on B<\/body>/);
    expect(raw.text).not.toContain('handled-count-too-high');
  });

  it('refuses to resume another account’s session from the journal (item-not-found), and keeps it', async () => {
    const { a, b } = await pair();
    const juliet = await bound(a.port, 'juliet', 'balcony', 'phone');
    const id = await enable(juliet);
    const romeo = await authenticated(b.port, 'romeo', 'r0meo!');
    romeo.write(`<resume xmlns='${SM}' previd='${id}' h='0'/>`);
    expect(await romeo.until(/<failed [^>]*>.*?<\/failed>/)).toContain('<item-not-found');
    // juliet's stream on A goes on.
    juliet.write(`<r xmlns='${SM}'/>`);
    expect(await juliet.until(/<a xmlns='urn:xmpp:sm:3' h='\d+'\/>/)).toContain("h='0'");
  });
});
