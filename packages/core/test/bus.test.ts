import { describe, expect, it } from 'vitest';
import { type BusEntry, type BusMessage, consumeStream, globMatch, memoryBus } from '../src/index.js';

function collector(): { messages: BusMessage[]; listener: (message: BusMessage) => void; next(n: number): Promise<void> } {
  const messages: BusMessage[] = [];
  const waiters: Array<() => void> = [];
  return {
    messages,
    listener: (message) => {
      messages.push(message);
      for (const wake of waiters.splice(0)) wake();
    },
    async next(n) {
      while (messages.length < n) await new Promise<void>((resolve) => waiters.push(resolve));
    },
  };
}

describe('memoryBus pub/sub', () => {
  it('delivers to channel and pattern listeners of every peer, never inside publish(), and counts receiving buses', async () => {
    const a = memoryBus();
    const b = a.peer();
    const onA = collector();
    const onB = collector();
    await a.subscribe('news', onA.listener);
    await b.psubscribe('n?ws*', onB.listener);
    await b.psubscribe('other.*', onB.listener);
    const receivers = await b.publish('news', 'hello');
    expect(receivers).toBe(2);
    expect(onA.messages).toEqual([]); // asynchronous, as from another process
    await Promise.all([onA.next(1), onB.next(1)]);
    expect(onA.messages[0]).toMatchObject({ channel: 'news', pattern: undefined });
    expect(onA.messages[0]?.data.toString()).toBe('hello');
    expect(onB.messages).toHaveLength(1);
    expect(onB.messages[0]).toMatchObject({ channel: 'news', pattern: 'n?ws*' });
    expect(await a.publish('nothing', 'x')).toBe(0);
    await a.close();
    await b.close();
  });

  it('stops a listener on unsubscribe, and a killed peer receives nothing', async () => {
    const a = memoryBus();
    const b = a.peer();
    const onA = collector();
    const onB = collector();
    const sub = await a.subscribe('c', onA.listener);
    await b.subscribe('c', onB.listener);
    await sub.unsubscribe();
    await sub.unsubscribe();
    expect(await a.publish('c', 'one')).toBe(1);
    await onB.next(1);
    b.kill();
    expect(b.connected).toBe(false);
    expect(await a.publish('c', 'two')).toBe(0);
    await expect(b.publish('c', 'x')).rejects.toThrow('bus closed');
    expect(onA.messages).toEqual([]);
    expect(onB.messages).toHaveLength(1);
  });

  it("matches patterns as Redis's stringmatchlen", () => {
    expect(globMatch('h[ae]llo', 'hallo')).toBe(true);
    expect(globMatch('h[^e]llo', 'hello')).toBe(false);
    expect(globMatch('h[a-b]llo', 'hbllo')).toBe(true);
    expect(globMatch('h\\*llo', 'h*llo')).toBe(true);
    expect(globMatch('h\\*llo', 'hallo')).toBe(false);
    expect(globMatch('*a*b*c', 'xxaxxbxxc')).toBe(true);
    expect(globMatch('a?c', 'abbc')).toBe(false);
  });
});

describe('memoryBus streams', () => {
  it('delivers each entry once per group; what a dead reader left unacknowledged is claimed by the next', async () => {
    const a = memoryBus();
    const b = a.peer();
    const streamA = a.stream('inbox');
    const streamB = b.stream('inbox');
    await streamA.createGroup('g', 'start');
    const ids = [await streamB.append('m1'), await streamB.append('m2'), await streamB.append('m3')];
    const first = await streamA.read('g', 'reader-a', { count: 2 });
    expect(first.map((entry) => entry.data.toString())).toEqual(['m1', 'm2']);
    expect(await streamA.ack('g', [first[0]?.id ?? ''])).toBe(1);
    a.kill(); // m2 stays pending for reader-a
    expect(await streamB.claim('g', 'reader-b', 60_000)).toEqual([]); // not idle long enough yet
    await new Promise((resolve) => setTimeout(resolve, 30));
    const next = await streamB.read('g', 'reader-b');
    expect(next.map((entry) => entry.data.toString())).toEqual(['m3']);
    const claimed = await streamB.claim('g', 'reader-b', 20);
    expect(claimed.map((entry) => [entry.id, entry.data.toString(), entry.redelivered])).toEqual([[ids[1], 'm2', true]]);
    expect(await streamB.pending('g')).toBe(2);
    expect(await streamB.ack('g', [ids[1] as string, ids[2] as string])).toBe(2);
    expect(await streamB.pending('g')).toBe(0);
    expect(await streamB.length()).toBe(3);
    await b.close();
  });

  it('a blocked read wakes on append; a group created at the end sees only new entries', async () => {
    const bus = memoryBus();
    const stream = bus.stream('s');
    await stream.append('old');
    await stream.createGroup('late', 'end');
    const reading = stream.read('late', 'c', { blockMs: 10_000 });
    await stream.append('new');
    expect((await reading).map((entry) => entry.data.toString())).toEqual(['new']);
    await bus.close();
  });

  it('consumeStream acknowledges what its handler took and re-delivers what a crashed consumer left', async () => {
    const a = memoryBus();
    const b = a.peer();
    await a.stream('jobs').createGroup('workers', 'start');
    const crashed = await a.stream('jobs').append('lost-with-a');
    await a.stream('jobs').read('workers', 'a'); // a takes it, then dies without ack
    a.kill();
    const seen: BusEntry[] = [];
    let done: () => void = () => {};
    const finished = new Promise<void>((resolve) => {
      done = resolve;
    });
    const consumer = consumeStream(b.stream('jobs'), {
      group: 'workers',
      consumer: 'b',
      claimIdleMs: 50,
      blockMs: 20,
      handler: (entry) => {
        seen.push(entry);
        if (seen.length === 2) done();
      },
    });
    await b.stream('jobs').append('fresh');
    await finished;
    await consumer.stop();
    expect(seen.map((entry) => [entry.data.toString(), entry.redelivered]).sort()).toEqual([
      ['fresh', false],
      ['lost-with-a', true],
    ]);
    expect(seen.find((entry) => entry.redelivered)?.id).toBe(crashed);
    expect(await b.stream('jobs').pending('workers')).toBe(0);
    await b.close();
  });
});

describe('memoryBus presence', () => {
  it('keeps entries alive by heartbeat, lists them by prefix, and lets a dead process’s entries expire', async () => {
    const a = memoryBus();
    const b = a.peer();
    await a.presence.set('sess:juliet', 'a', { ttlMs: 90 });
    await b.presence.set('sess:romeo', 'b', { ttlMs: 90 });
    await new Promise((resolve) => setTimeout(resolve, 200)); // past the TTL: the heartbeat kept them
    expect(await b.presence.get('sess:juliet')).toBe('a');
    expect([...(await b.presence.list('sess:'))].sort()).toEqual([
      ['sess:juliet', 'a'],
      ['sess:romeo', 'b'],
    ]);
    a.kill();
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(await b.presence.get('sess:juliet')).toBeUndefined();
    await b.close(); // a clean close deletes at once
    const c = memoryBus();
    await c.presence.set('k', 'v', { ttlMs: 60_000 });
    const d = c.peer();
    await c.close();
    expect(await d.presence.get('k')).toBeUndefined();
    await d.close();
  });
});

describe('memoryBus presence: forget', () => {
  it('a forgotten entry expires within its TTL unless another bus set it, and close() leaves it', async () => {
    const a = memoryBus();
    const b = a.peer();
    await a.presence.set('occ:hall:juliet', 'from-a', { ttlMs: 90 });
    await a.presence.set('occ:hall:romeo', 'romeo', { ttlMs: 90 });
    a.presence.forget('occ:hall:juliet');
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(await b.presence.get('occ:hall:juliet')).toBeUndefined();
    expect(await b.presence.get('occ:hall:romeo')).toBe('romeo');
    // Forgotten by a, set by b: b's now; a's close() does not delete it.
    await a.presence.set('occ:porch:juliet', 'from-a', { ttlMs: 90 });
    await b.presence.set('occ:porch:juliet', 'from-b', { ttlMs: 90 });
    a.presence.forget('occ:porch:juliet');
    await a.close();
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(await b.presence.get('occ:porch:juliet')).toBe('from-b');
    expect(await b.presence.get('occ:hall:romeo')).toBeUndefined();
    await b.close();
  });
});

describe('memoryBus claims, values and stream lifetimes', () => {
  it('a claim is held by one process until it dies or releases it; the next claimer gets it then', async () => {
    const a = memoryBus();
    const b = a.peer();
    expect(await a.presence.claim('room:lobby', 'A', { ttlMs: 80 })).toBe('A');
    expect(await b.presence.claim('room:lobby', 'B', { ttlMs: 80 })).toBe('A');
    expect(await a.presence.claim('room:lobby', 'A', { ttlMs: 80 })).toBe('A'); // claiming again: still A's
    await a.presence.delete('room:lobby');
    expect(await b.presence.claim('room:lobby', 'B', { ttlMs: 80 })).toBe('B');
    const c = b.peer();
    b.kill();
    expect(await c.presence.claim('room:lobby', 'C', { ttlMs: 80 })).toBe('B'); // not expired yet
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(await c.presence.claim('room:lobby', 'C', { ttlMs: 80 })).toBe('C');
    await Promise.all([a.close(), c.close()]);
  });

  it('values outlive the process that set them until their TTL', async () => {
    const a = memoryBus();
    const b = a.peer();
    await a.values.set('sm:token', 'state', { ttlMs: 120 });
    a.kill();
    expect(await b.values.get('sm:token')).toBe('state');
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(await b.values.get('sm:token')).toBeUndefined();
    await b.values.set('x', '1', { ttlMs: 10_000 });
    await b.values.delete('x');
    expect(await b.values.get('x')).toBeUndefined();
    await b.close();
  });

  it('entries() reads a stream in order after an id; ttlMs deletes an idle stream; delete() at once', async () => {
    const bus = memoryBus();
    const stream = bus.stream('journal');
    const first = await stream.append('one', { ttlMs: 150 });
    await stream.append('two', { ttlMs: 150 });
    expect((await stream.entries()).map((entry) => entry.data.toString())).toEqual(['one', 'two']);
    expect((await stream.entries({ after: first })).map((entry) => entry.data.toString())).toEqual(['two']);
    expect(await stream.entries({ count: 1 })).toHaveLength(1);
    const third = await stream.append('three', { ttlMs: 150 });
    expect(await stream.trim(third)).toBe(2);
    expect((await stream.entries()).map((entry) => entry.data.toString())).toEqual(['three']);
    await new Promise((resolve) => setTimeout(resolve, 250));
    expect(await stream.length()).toBe(0);
    await stream.append('four');
    await stream.delete();
    expect(await stream.entries()).toEqual([]);
    await bus.close();
  });
});
