import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { statSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type Element, xml, client as xmppClient } from '@xmpp/client';
import { afterEach, describe, expect, it } from 'vitest';

// The chat example keeps everything in DATA_DIR/xmpp.sqlite: state written by real clients (each
// write acknowledged by the server: an IQ result, or an IQ answered after the stanza on the same
// stream), the process killed with SIGKILL, started again on the same DATA_DIR, and the state read
// back by @xmpp/client and slixmpp (Debian's).
process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0'; // the example makes a self-signed certificate

const here = dirname(fileURLToPath(import.meta.url));
const main = join(here, '..', 'dist', 'main.js');
const run = promisify(execFile);
const children: ChildProcess[] = [];
const clients: Array<ReturnType<typeof xmppClient>> = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.stop().catch(() => {})));
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

function envFor(dataDir: string): NodeJS.ProcessEnv {
  return { ...process.env, DATA_DIR: dataDir, PORT: '0', XMPP_PORT: '0', XMPPS_PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info' };
}

/** `node dist/main.js ARGS…` to its end. */
async function cli(args: string[], dataDir: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [main, ...args], { env: envFor(dataDir), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stdout, stderr };
}

interface Chat {
  child: ChildProcess;
  /** Bound URLs by binding name (`xmpp`, `xmpps`, `http`), from the JSON log lines. */
  urls: Map<string, string>;
  port(binding: string): number;
  /** The log lines so far. */
  logs(): string[];
}

/** The example as a process; resolves once it logged the URL of each of its three bindings. */
async function startChat(dataDir: string): Promise<Chat> {
  const child = spawn(process.execPath, [main], { env: envFor(dataDir), stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  const urls = new Map<string, string>();
  let logs = '';
  let pending = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    logs += chunk.toString();
    pending += chunk.toString();
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) {
      const entry = JSON.parse(line) as { binding?: string; url?: string };
      if (entry.binding !== undefined && entry.url !== undefined && !urls.has(entry.binding)) urls.set(entry.binding, entry.url);
    }
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    logs += chunk.toString();
  });
  const deadline = Date.now() + 20_000;
  while (!(urls.has('xmpp') && urls.has('xmpps') && urls.has('http'))) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`chat did not start:\n${logs}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { child, urls, port: (binding) => Number(new URL(urls.get(binding) as string).port), logs: () => logs.split('\n') };
}

/** Stanza listeners per client, which can be removed (the test typings of @xmpp/client have no removeListener). */
const listeners = new WeakMap<ReturnType<typeof xmppClient>, Set<(stanza: Element) => void>>();

async function login(service: string, username: string, password: string): Promise<ReturnType<typeof xmppClient>> {
  const client = xmppClient({ timeout: 8000, service, domain: 'localhost', username, password, resource: 'restart' });
  client.on('error', () => {});
  const set = new Set<(stanza: Element) => void>();
  listeners.set(client, set);
  client.on('stanza', (stanza) => {
    for (const listener of set) listener(stanza);
  });
  clients.push(client);
  await client.start();
  return client;
}

/** The next stanza matching `test` (listening from now on). */
function next(client: ReturnType<typeof xmppClient>, test: (stanza: Element) => boolean): Promise<Element> {
  const set = listeners.get(client) as Set<(stanza: Element) => void>;
  return new Promise((resolve) => {
    const listener = (stanza: Element): void => {
      if (!test(stanza)) return;
      set.delete(listener);
      resolve(stanza);
    };
    set.add(listener);
  });
}

/** The child elements named `name`. */
function childrenNamed(element: Element | undefined, name: string): Element[] {
  return (element?.children ?? []).filter((child): child is Element => typeof child !== 'string' && child.name === name);
}

function iq(client: ReturnType<typeof xmppClient>, type: 'get' | 'set', payload: Element, to?: string): Promise<Element> {
  return client.iqCaller.request(xml('iq', to === undefined ? { type } : { type, to }, payload));
}

/** An IQ answered after everything the client sent before it on this stream (the server handles a stream's stanzas in order). */
function ping(client: ReturnType<typeof xmppClient>): Promise<Element> {
  return iq(client, 'get', xml('ping', { xmlns: 'urn:xmpp:ping' }));
}

async function rosterOf(
  client: ReturnType<typeof xmppClient>,
): Promise<Record<string, { subscription?: string; ask?: string; name?: string; groups: string[] }>> {
  const result = await iq(client, 'get', xml('query', { xmlns: 'jabber:iq:roster' }));
  const items = childrenNamed(result.getChild('query', 'jabber:iq:roster'), 'item');
  return Object.fromEntries(
    items.map((item) => [
      String(item.attrs.jid),
      {
        subscription: item.attrs.subscription as string | undefined,
        ask: item.attrs.ask as string | undefined,
        name: item.attrs.name as string | undefined,
        groups: childrenNamed(item, 'group').map((group) => group.children.join('')),
      },
    ]),
  );
}

/** Polls a query until `done` holds (state that settles through several stanzas), and returns the last answer. */
async function until<T>(query: () => Promise<T>, done: (value: T) => boolean, what: string): Promise<T> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const value = await query();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`${what}: still ${JSON.stringify(value)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const NICK = 'http://jabber.org/protocol/nick';
const PUBSUB = 'http://jabber.org/protocol/pubsub';

describe('examples/chat keeps its state in DATA_DIR/xmpp.sqlite', () => {
  it('roster, subscriptions (pending too), vCard, offline message, private XML, PEP, block list and archive survive SIGKILL and a restart', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'portbind-chat-restart-'));
    expect(await cli(['user', 'add', 'romeo', 'r0meo!'], dataDir)).toMatchObject({ code: 0, stdout: 'added romeo\n' });
    const first = await startChat(dataDir);

    // romeo over direct TLS (XEP-0368).
    const romeo = await login(first.urls.get('xmpps') as string, 'romeo', 'r0meo!');

    // Accounts added while the server runs and writes: three other processes writing the same SQLite
    // file at once, while romeo keeps the server writing without a pause: notes to himself, 20 at a
    // time, each one archived (XEP-0313) and delivered back to him. (Messages, not IQs: @xmpp/client
    // 0.14 leaves IQ results out of its stream-management count, and the server closes a stream with
    // 500 stanzas unacknowledged.)
    await romeo.send(xml('presence'));
    let adding = true;
    const notesToSelf = (async () => {
      let written = 0;
      while (adding) {
        const back = new Set<string>();
        const all = new Promise<void>((resolve) => {
          const set = listeners.get(romeo) as Set<(stanza: Element) => void>;
          const listener = (stanza: Element): void => {
            if (stanza.is('message') && stanza.attrs.id?.startsWith('note-') === true) back.add(stanza.attrs.id);
            if (back.size < 20) return;
            set.delete(listener);
            resolve();
          };
          set.add(listener);
        });
        for (let i = 0; i < 20; i++) {
          await romeo.send(xml('message', { to: 'romeo@localhost', type: 'chat', id: `note-${written++}` }, xml('body', {}, 'a note')));
        }
        await all;
      }
      return written;
    })();
    const added = await Promise.all(
      [
        ['juliet', 'balcony'],
        ['nurse', 'angelica'],
        ['benvolio', 'peace'],
      ].map(([name, password]) => cli(['user', 'add', name as string, password as string], dataDir)),
    );
    expect(added.map((result) => [result.code, result.stdout])).toEqual([
      [0, 'added juliet\n'],
      [0, 'added nurse\n'],
      [0, 'added benvolio\n'],
    ]);
    adding = false;
    expect(await notesToSelf).toBeGreaterThan(0);

    // juliet over STARTTLS.
    const juliet = await login(first.urls.get('xmpp') as string, 'juliet', 'balcony');
    await juliet.send(xml('presence'));

    // A roster item with a name and a group, then a mutual subscription romeo ⇄ juliet.
    await iq(
      romeo,
      'set',
      xml('query', { xmlns: 'jabber:iq:roster' }, xml('item', { jid: 'juliet@localhost', name: 'Juliet' }, xml('group', {}, 'Capulets'))),
    );
    const julietAsked = next(juliet, (s) => s.is('presence') && s.attrs.type === 'subscribe');
    await romeo.send(xml('presence', { to: 'juliet@localhost', type: 'subscribe' }));
    await julietAsked;
    const romeoAsked = next(romeo, (s) => s.is('presence') && s.attrs.type === 'subscribe');
    await juliet.send(xml('presence', { to: 'romeo@localhost', type: 'subscribed' }));
    await juliet.send(xml('presence', { to: 'romeo@localhost', type: 'subscribe' }));
    await romeoAsked;
    await romeo.send(xml('presence', { to: 'juliet@localhost', type: 'subscribed' }));
    await until(
      () => rosterOf(romeo),
      (r) => r['juliet@localhost']?.subscription === 'both',
      "romeo's roster",
    );
    await until(
      () => rosterOf(juliet),
      (r) => r['romeo@localhost']?.subscription === 'both',
      "juliet's roster",
    );

    // A pending subscription to an account that is offline, and a message for her.
    await romeo.send(xml('presence', { to: 'nurse@localhost', type: 'subscribe' }));
    await romeo.send(
      xml(
        'message',
        { to: 'nurse@localhost', type: 'chat', id: 'for-the-nurse' },
        xml('body', {}, 'Bid her devise some means to come to shrift'),
      ),
    );
    await ping(romeo);
    expect((await rosterOf(romeo))['nurse@localhost']).toMatchObject({ subscription: 'none', ask: 'subscribe' });

    // A message to juliet, online: delivered and archived (MAM) on both sides.
    const delivered = next(juliet, (s) => s.is('message') && s.getChildText('body') !== null);
    await romeo.send(xml('message', { to: 'juliet@localhost', type: 'chat' }, xml('body', {}, 'By yonder blessed moon I swear')));
    expect((await delivered).getChildText('body')).toBe('By yonder blessed moon I swear');
    await ping(romeo);

    // vCard, private XML (XEP-0049), a PEP nickname (XEP-0172), a block list entry (XEP-0191).
    await iq(romeo, 'set', xml('vCard', { xmlns: 'vcard-temp' }, xml('FN', {}, 'Romeo Montague'), xml('NICKNAME', {}, 'romeo')));
    await iq(
      romeo,
      'set',
      xml('query', { xmlns: 'jabber:iq:private' }, xml('notes', { xmlns: 'urn:example:romeo' }, 'the friar, at noon')),
    );
    await iq(
      romeo,
      'set',
      xml(
        'pubsub',
        { xmlns: PUBSUB },
        xml('publish', { node: NICK }, xml('item', { id: 'current' }, xml('nick', { xmlns: NICK }, 'Romeo'))),
      ),
    );
    await iq(romeo, 'set', xml('block', { xmlns: 'urn:xmpp:blocking' }, xml('item', { jid: 'tybalt@localhost' })));

    // An account removed while the server runs.
    expect(await cli(['user', 'del', 'benvolio'], dataDir)).toMatchObject({ code: 0, stdout: 'deleted benvolio\n' });

    // Every write above was acknowledged: now the process dies without any chance to flush.
    first.child.kill('SIGKILL');
    const [, signal] = (await once(first.child, 'exit')) as [number | null, string | null];
    expect(signal).toBe('SIGKILL');
    // What was committed is (at least partly) in the write-ahead log, not yet copied into the file:
    // the next start recovers it from there.
    expect(statSync(join(dataDir, 'xmpp.sqlite-wal')).size).toBeGreaterThan(0);
    await Promise.all(clients.splice(0).map((client) => client.stop().catch(() => {})));

    const second = await startChat(dataDir);
    const romeoAgain = await login(second.urls.get('xmpp') as string, 'romeo', 'r0meo!');
    const roster = await rosterOf(romeoAgain);
    expect(roster['juliet@localhost']).toEqual({ subscription: 'both', ask: undefined, name: 'Juliet', groups: ['Capulets'] });
    expect(roster['nurse@localhost']).toMatchObject({ subscription: 'none', ask: 'subscribe' });

    const vcard = (await iq(romeoAgain, 'get', xml('vCard', { xmlns: 'vcard-temp' }))).getChild('vCard', 'vcard-temp');
    expect(vcard?.getChildText('FN')).toBe('Romeo Montague');
    const notes = await iq(romeoAgain, 'get', xml('query', { xmlns: 'jabber:iq:private' }, xml('notes', { xmlns: 'urn:example:romeo' })));
    expect(notes.getChild('query', 'jabber:iq:private')?.getChildText('notes', 'urn:example:romeo')).toBe('the friar, at noon');
    const nick = await iq(romeoAgain, 'get', xml('pubsub', { xmlns: PUBSUB }, xml('items', { node: NICK })), 'romeo@localhost');
    expect(nick.getChild('pubsub', PUBSUB)?.getChild('items')?.getChild('item')?.getChildText('nick', NICK)).toBe('Romeo');
    const blocked = await iq(romeoAgain, 'get', xml('blocklist', { xmlns: 'urn:xmpp:blocking' }));
    expect(childrenNamed(blocked.getChild('blocklist'), 'item').map((item) => item.attrs.jid)).toEqual(['tybalt@localhost']);

    // romeo's archive, through a MAM query over @xmpp/client.
    const archived: string[] = [];
    const collect = (stanza: Element): void => {
      const forwarded = stanza.getChild('result', 'urn:xmpp:mam:2')?.getChild('forwarded', 'urn:xmpp:forward:0');
      const body = forwarded?.getChild('message')?.getChildText('body');
      if (body !== undefined && body !== null) archived.push(body);
    };
    listeners.get(romeoAgain)?.add(collect);
    const fin = await iq(
      romeoAgain,
      'set',
      xml(
        'query',
        { xmlns: 'urn:xmpp:mam:2', queryid: 'after-restart' },
        xml(
          'x',
          { xmlns: 'jabber:x:data', type: 'submit' },
          xml('field', { var: 'FORM_TYPE', type: 'hidden' }, xml('value', {}, 'urn:xmpp:mam:2')),
          xml('field', { var: 'with' }, xml('value', {}, 'juliet@localhost')),
        ),
      ),
    );
    listeners.get(romeoAgain)?.delete(collect);
    expect(fin.getChild('fin', 'urn:xmpp:mam:2')?.attrs.complete).toBe('true');
    expect(archived).toEqual(['By yonder blessed moon I swear']);

    // The deleted account stays deleted.
    await expect(login(second.urls.get('xmpp') as string, 'benvolio', 'peace')).rejects.toThrow(/not-authorized/);

    // nurse (slixmpp, direct TLS) gets the offline message and romeo's request; juliet (slixmpp) reads her roster and archive.
    const script = join(here, 'slixmpp', 'read_back.py');
    const { stdout } = await run('/usr/bin/python3', [script, '127.0.0.1', String(second.port('xmpp')), String(second.port('xmpps'))], {
      timeout: 60_000,
    });
    const seen = JSON.parse(stdout) as {
      nurse: { messages: Array<{ from: string; body: string; delayed: boolean }>; requests: string[] };
      juliet: { roster: Record<string, { subscription: string; pending_out: boolean }>; archive: string[] };
    };
    expect(seen.nurse.messages).toEqual([{ from: 'romeo@localhost', body: 'Bid her devise some means to come to shrift', delayed: true }]);
    expect(seen.nurse.requests).toEqual(['romeo@localhost']);
    expect(seen.juliet.roster['romeo@localhost']).toEqual({ subscription: 'both', pending_out: false });
    expect(seen.juliet.archive).toEqual(['By yonder blessed moon I swear']);
  }, 120_000);

  it('an old DATA_DIR/users.json is not read: a warning says what to do, and the server starts', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'portbind-chat-users-json-'));
    await writeFile(join(dataDir, 'users.json'), '[]\n');
    const chat = await startChat(dataDir);
    const warning = chat.logs().find((line) => line.includes('users.json'));
    expect(warning).toBeDefined();
    const entry = JSON.parse(warning as string) as { level: number; msg: string };
    expect(entry.level).toBe(40);
    expect(entry.msg).toMatch(/accounts now live in xmpp\.sqlite; add them again with `user add NAME PASSWORD`/);
  });

  it('a damaged database file: the process exits 1 with one PB_ERR_XMPP_STORAGE line, before it listens', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'portbind-chat-corrupt-'));
    await writeFile(join(dataDir, 'xmpp.sqlite'), Buffer.concat([Buffer.from('this is not SQLite\n'), Buffer.alloc(8192, 7)]));
    const result = await cli([], dataDir);
    expect(result.code).toBe(1);
    const lines = result.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const entry = JSON.parse(lines[0] as string) as { msg: string; err: { code: string } };
    expect(entry.err.code).toBe('PB_ERR_XMPP_STORAGE');
    expect(entry.msg).toMatch(/^start failed: storage .*xmpp\.sqlite: not an SQLite database, or damaged/);
    expect(result.stdout).not.toContain('listening on');
    // `user add` says the same on stderr.
    const add = await cli(['user', 'add', 'romeo', 'r0meo!'], dataDir);
    expect(add.code).toBe(1);
    expect(add.stderr).toMatch(/^PB_ERR_XMPP_STORAGE: storage .*xmpp\.sqlite: not an SQLite database/);
  });
});
