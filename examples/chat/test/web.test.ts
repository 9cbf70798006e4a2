import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { xml } from '@xmpp/client';
import type { Browser, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  addUsers,
  cuttableProxy,
  isMessage,
  launchBrowser,
  logIn,
  messagesShown,
  messageTexts,
  openPage as openPageIn,
  peer as peerOn,
  type RunningChat,
  runAfterEach,
  startChat,
  wait,
} from './web-support.js';

// The chat's web page in real headless Chromium (Debian's), against the chat app in its own process,
// with @xmpp/client peers over TCP (STARTTLS). Every wait is for something on the page or on the wire.

let chat: RunningChat;
let browser: Browser;

beforeAll(async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'portbind-web-'));
  await addUsers(dataDir, [
    ['juliet', 'balcony'],
    ['romeo', 'r0meo!'],
    ['nurse', 'angelica'],
    ['benvolio', 'peace'],
    ['mercutio', 'queenmab'],
    ['tybalt', 'prince0fcats'],
    ['paris', 'county'],
  ]);
  chat = await startChat(dataDir);
  browser = await launchBrowser();
}, 120_000);

afterEach(async () => {
  expect(await runAfterEach()).toEqual([]); // no uncaught error in any page
});

afterAll(async () => {
  await browser?.close();
  chat?.child.kill('SIGKILL');
});

const openPage = (url = `http://127.0.0.1:${chat.httpPort}/`): Promise<Page> => openPageIn(browser, url);
const peer = (user: string, password: string) => peerOn(chat.xmppPort, user, password);

/** A 1×1 PNG. */
const png = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==', 'base64');
/** The page's document, as functions run in the page see it (this file is type-checked without the DOM library). */
declare const document: {
  getElementById(id: string): { textContent: string | null } | null;
  querySelectorAll(selector: string): ArrayLike<{ textContent: string | null }>;
  querySelector(selector: string): { complete: boolean; naturalWidth: number } | null;
};

describe('the chat page (Chromium)', () => {
  it('logs in, adds a contact and accepts theirs, sees them come online, chats both ways with unread markers, and shows the history after a reload', async () => {
    const romeo = await peer('romeo', 'r0meo!');
    await romeo.send(xml('presence'));
    const page = await openPage();
    await logIn(page, 'juliet', 'balcony');
    expect(await page.textContent('#me')).toMatch(/^juliet@localhost\/web-/);
    expect(await page.isHidden('#login')).toBe(true);

    // Juliet adds Romeo; Romeo approves and asks back; Juliet accepts on the page.
    await page.fill('#add-jid', 'romeo');
    await page.click('#add-contact button');
    const subscribe = await romeo.next((s) => s.is('presence') && s.attrs.type === 'subscribe');
    expect(subscribe.attrs.from).toBe('juliet@localhost');
    await romeo.send(xml('presence', { to: 'juliet@localhost', type: 'subscribed' }));
    await romeo.send(xml('presence', { to: 'juliet@localhost', type: 'subscribe' }));
    await page.click('#requests li[data-jid="romeo@localhost"] button.accept', wait);
    await romeo.next((s) => s.is('presence') && s.attrs.type === 'subscribed' && s.attrs.from === 'juliet@localhost');
    await page.waitForSelector('#contacts li[data-jid="romeo@localhost"][data-show="online"]', wait);

    // Romeo goes away and comes back online.
    await romeo.send(xml('presence', { type: 'unavailable' }));
    await page.waitForSelector('#contacts li[data-jid="romeo@localhost"][data-show="offline"]', wait);
    await romeo.send(xml('presence', {}, xml('status', {}, 'under the balcony')));
    await page.waitForSelector('#contacts li[data-jid="romeo@localhost"][data-show="online"]', wait);
    expect(await page.textContent('#contacts li[data-jid="romeo@localhost"] .presence')).toContain('under the balcony');

    // Romeo writes while Juliet looks elsewhere: an unread marker; opening the conversation clears it.
    await romeo.send(xml('message', { to: 'juliet@localhost', type: 'chat', id: 'r1' }, xml('body', {}, 'But soft, what light')));
    await page.waitForSelector('#contacts li[data-jid="romeo@localhost"] .unread', wait);
    expect(await page.textContent('#contacts li[data-jid="romeo@localhost"] .unread')).toBe('1');
    expect(await page.title()).toBe('(1) portbind chat');
    await page.click('#contacts li[data-jid="romeo@localhost"]');
    expect(await messageTexts(page)).toEqual(['But soft, what light']);
    expect(await page.$('#messages li.divider')).not.toBeNull();
    expect(await page.$('#contacts li[data-jid="romeo@localhost"] .unread')).toBeNull();
    expect(await page.getAttribute('#messages li.message time', 'datetime')).toMatch(/^\d{4}-\d\d-\d\dT/);

    // Juliet answers.
    await page.fill('#body', 'Wherefore art thou');
    await page.click('#composer button:not([type])');
    const answer = await romeo.next(isMessage('Wherefore art thou'));
    expect(answer.attrs.from).toMatch(/^juliet@localhost\/web-/);
    expect(answer.attrs.type).toBe('chat');

    // Peer text is text: markup arrives as characters, not as elements.
    const markup = '<img src=x onerror="document.title=1"><b>bold</b>';
    await romeo.send(xml('message', { to: 'juliet@localhost', type: 'chat', id: 'r2' }, xml('body', {}, markup)));
    await page.waitForFunction(
      (text) => Array.from(document.querySelectorAll('#messages .body')).some((b) => b.textContent === text),
      markup,
      wait,
    );
    expect(await page.$$('#messages img, #messages b')).toEqual([]);

    // Reload: log in again, and the conversation comes back from the archive (XEP-0313), in order.
    await page.reload();
    await logIn(page, 'juliet', 'balcony');
    await page.waitForSelector('#contacts li[data-jid="romeo@localhost"]', wait);
    await page.click('#contacts li[data-jid="romeo@localhost"]');
    await messagesShown(page, 3);
    expect(await messageTexts(page)).toEqual(['But soft, what light', 'Wherefore art thou', markup]);
    expect(await page.$$eval('#messages li.message', (items) => items.map((item) => item.classList.contains('outgoing')))).toEqual([
      false,
      true,
      false,
    ]);
    // History is not unread.
    expect(await page.$('#contacts .unread')).toBeNull();

    // Logging out shows the form again, and Romeo sees Juliet leave.
    await page.click('#logout');
    await page.waitForSelector('#login:not([hidden])', wait);
    await romeo.next((s) => s.is('presence') && s.attrs.type === 'unavailable' && String(s.attrs.from).startsWith('juliet@localhost/'));
  }, 120_000);

  it('shows "Wrong user name or password" for a wrong password, with no uncaught error, and logs in after', async () => {
    const page = await openPage();
    await page.fill('#user', 'nurse');
    await page.fill('#password', 'not-angelica');
    await page.click('#login button');
    await page.waitForFunction(() => document.getElementById('login-error')?.textContent !== '', undefined, wait);
    expect(await page.textContent('#login-error')).toBe('Wrong user name or password.');
    expect(await page.isVisible('#login')).toBe(true);
    expect(await page.isHidden('#app')).toBe(true);
    await logIn(page, 'nurse', 'angelica');
    expect(await page.textContent('#login-error')).toBe('');
  }, 60_000);

  it('shows a bounced message as not delivered, under the message', async () => {
    const page = await openPage();
    await logIn(page, 'benvolio', 'peace');
    await page.fill('#add-jid', 'nobody');
    await page.click('#add-contact button');
    await page.click('#contacts li[data-jid="nobody@localhost"]', wait);
    await page.fill('#body', 'Is anyone there?');
    await page.click('#composer button:not([type])');
    await page.waitForSelector('#messages li.message.failed .error', wait);
    expect(await page.textContent('#messages li.message.failed .body')).toBe('Is anyone there?');
    expect(await page.textContent('#messages li.message.failed .error')).toMatch(/^Not delivered: /);
  }, 60_000);

  it('after a dropped connection reconnects by itself and resumes the stream (XEP-0198): nothing lost either way', async () => {
    // The page goes through a TCP proxy the test can cut.
    const proxy = await cuttableProxy(() => chat.httpPort);
    const tybalt = await peer('tybalt', 'prince0fcats');
    await tybalt.send(xml('presence'));
    const page = await openPage(`http://127.0.0.1:${proxy.port}/`);
    // The first WebSocket's frames, each one element (RFC 7395).
    const frames: Array<{ out: boolean; text: string }> = [];
    let answered: () => void = () => {};
    const firstAnswer = new Promise<void>((resolve) => {
      answered = resolve;
    });
    page.once('websocket', (ws) => {
      ws.on('framereceived', (frame) => frames.push({ out: false, text: String(frame.payload) }));
      ws.on('framesent', (frame) => {
        frames.push({ out: true, text: String(frame.payload) });
        if (String(frame.payload).startsWith('<a ')) answered();
      });
    });
    await logIn(page, 'mercutio', 'queenmab');
    await tybalt.send(xml('message', { to: 'mercutio@localhost', type: 'chat' }, xml('body', {}, 'Where the devil should this Romeo be?')));
    await page.click('#contacts li[data-jid="tybalt@localhost"]', wait);
    await messagesShown(page, 1);

    // Every <r/> of the server got an <a h/> counting every stanza received since <enabled/>, IQ results too.
    await firstAnswer;
    let received = 0;
    let enabled = false;
    let requests = 0;
    const answers: Array<[number, number]> = [];
    let expecting: number | undefined;
    for (const { out, text } of frames) {
      if (!out && text.startsWith('<enabled')) enabled = true;
      else if (!out && enabled && /^<(message|presence|iq)[\s>/]/.test(text)) received++;
      else if (!out && /^<r[\s/>]/.test(text)) {
        requests++;
        expecting = received;
      } else if (out && text.startsWith('<a ') && expecting !== undefined) {
        answers.push([Number(/h=["'](\d+)["']/.exec(text)?.[1]), expecting]);
        expecting = undefined;
      }
    }
    expect(requests).toBeGreaterThan(0);
    expect(answers.length).toBe(requests - (expecting === undefined ? 0 : 1));
    for (const [h, count] of answers) expect(h).toBe(count);
    expect(frames.some(({ out, text }) => !out && text.startsWith('<iq') && text.includes("type='result'"))).toBe(true);

    // Cut the connection and keep it down while both sides write.
    proxy.state.refusing = true;
    proxy.cut();
    await page.waitForSelector('#status[data-state="reconnecting"]', wait);
    expect(await page.textContent('#status')).toMatch(/^Connection lost: reconnecting in \d+ s/);
    await tybalt.send(xml('message', { to: 'mercutio@localhost', type: 'chat' }, xml('body', {}, 'Thou art a villain')));
    await page.fill('#body', 'A plague o’ both your houses');
    await page.click('#composer button:not([type])');

    // Let it back in: the page resumes the session; the server resends what it held, the page what it queued.
    proxy.state.refusing = false;
    await page.waitForSelector('#status[data-state="online"]', { timeout: 60_000 });
    expect(await page.textContent('#status')).toBe('Online again (session resumed)');
    expect((await tybalt.next(isMessage('A plague o’ both your houses'))).attrs.from).toMatch(/^mercutio@localhost\/web-/);
    await messagesShown(page, 3);
    // (The resent message carries its <delay/> stamp, to the second: the order of the last two may go either way.)
    expect((await messageTexts(page)).sort()).toEqual([
      'A plague o’ both your houses',
      'Thou art a villain',
      'Where the devil should this Romeo be?',
    ]);
  }, 120_000);

  it('joins a room (XEP-0045), sees its history and occupants, chats with a TCP client in it; a taken nickname shows an error', async () => {
    const room = 'lobby@conference.localhost';
    const romeo = await peer('romeo', 'r0meo!');
    // Romeo opens the room (join, then the default configuration: an instant room) and says something.
    await romeo.send(xml('presence', { to: `${room}/romeo` }, xml('x', { xmlns: 'http://jabber.org/protocol/muc' })));
    await romeo.next((s) => s.is('presence') && s.attrs.from === `${room}/romeo`);
    await romeo.client.iqCaller.request(
      xml(
        'iq',
        { type: 'set', to: room },
        xml('query', { xmlns: 'http://jabber.org/protocol/muc#owner' }, xml('x', { xmlns: 'jabber:x:data', type: 'submit' })),
      ),
    );
    await romeo.send(xml('message', { to: room, type: 'groupchat', id: 'g1' }, xml('body', {}, 'Who is in the lobby?')));
    await romeo.next(isMessage('Who is in the lobby?'));

    const page = await openPage();
    await logIn(page, 'nurse', 'angelica');
    await page.fill('#room', 'lobby');
    await page.fill('#nick', 'romeo');
    await page.click('#join-room button');
    await page.waitForSelector('#messages li.notice.failed', wait);
    expect(await page.textContent('#messages li.notice.failed .body')).toMatch(
      /^Could not join lobby@conference\.localhost: that nickname is taken/,
    );

    await page.fill('#room', 'lobby');
    await page.fill('#nick', '');
    await page.click('#join-room button');
    await page.waitForSelector(`#rooms li[data-jid="${room}"] .dot.online`, wait);
    await messagesShown(page, 1);
    expect(await messageTexts(page)).toContain('Who is in the lobby?');
    await page.waitForFunction(() => /romeo/.test(document.getElementById('occupants')?.textContent ?? ''), undefined, wait);
    expect(await page.textContent('#occupants')).toMatch(/^In the room: .*nurse/);
    await romeo.next((s) => s.is('presence') && s.attrs.from === `${room}/nurse`);

    await romeo.send(xml('message', { to: room, type: 'groupchat' }, xml('body', {}, 'Good morrow, nurse')));
    await messagesShown(page, 2);
    await page.fill('#body', 'God ye good den, fair gentleman');
    await page.click('#composer button:not([type])');
    const said = await romeo.next(isMessage('God ye good den, fair gentleman'));
    expect(said.attrs).toMatchObject({ from: `${room}/nurse`, type: 'groupchat' });
    // The room reflects it back: no longer pending, and shown once.
    await page.waitForSelector('#messages li.message.outgoing:not(.pending)', wait);
    expect(await messageTexts(page)).toEqual(['Who is in the lobby?', 'Good morrow, nurse', 'God ye good den, fair gentleman']);

    // After a reload the page joins the room again, and its history comes back.
    await page.reload();
    await logIn(page, 'nurse', 'angelica');
    await page.waitForSelector(`#rooms li[data-jid="${room}"] .dot.online`, wait);
    await page.click(`#rooms li[data-jid="${room}"]`);
    await messagesShown(page, 3);
    expect(await messageTexts(page)).toEqual(['Who is in the lobby?', 'Good morrow, nurse', 'God ye good den, fair gentleman']);
  }, 120_000);

  it('shares a picture (XEP-0363 slot, PUT, XEP-0066 link) and shows it inline on both ends', async () => {
    const tybalt = await peer('tybalt', 'prince0fcats');
    await tybalt.send(xml('presence'));
    const page = await openPage();
    await logIn(page, 'benvolio', 'peace');
    await page.fill('#add-jid', 'tybalt');
    await page.click('#add-contact button');
    await page.click('#contacts li[data-jid="tybalt@localhost"]', wait);
    await page.waitForSelector('#attach:not([hidden])', wait);
    await page.setInputFiles('#file', { name: 'balcony.png', mimeType: 'image/png', buffer: png });

    const shared = await tybalt.next((s) => s.is('message') && s.getChild('x', 'jabber:x:oob') !== undefined);
    const url = shared.getChild('x', 'jabber:x:oob')?.getChildText('url') ?? '';
    expect(shared.getChildText('body')).toBe(url);
    expect(url).toMatch(/^https:\/\/localhost:\d+\/upload\/.+\/balcony\.png$/);
    const download = await fetch(url);
    expect(download.headers.get('content-type')).toBe('image/png');
    expect(Buffer.from(await download.arrayBuffer())).toEqual(png);

    // Shown as a picture, loaded; and one sent to the page is too.
    await page.waitForFunction(
      () => {
        const img = document.querySelector('#messages li.message.outgoing img');
        return img?.complete === true && img.naturalWidth === 1;
      },
      undefined,
      wait,
    );
    await tybalt.send(
      xml(
        'message',
        { to: 'benvolio@localhost', type: 'chat' },
        xml('body', {}, url),
        xml('x', { xmlns: 'jabber:x:oob' }, xml('url', {}, url)),
      ),
    );
    await page.waitForSelector('#messages li.message:not(.outgoing) img', wait);
    expect(await page.getAttribute('#messages li.message:not(.outgoing) img', 'src')).toBe(url);
  }, 120_000);

  it('served over https:// talks wss:// to the server', async () => {
    const page = await openPage(`https://127.0.0.1:${chat.httpsPort}/`);
    const sockets: string[] = [];
    page.on('websocket', (ws) => sockets.push(ws.url()));
    await logIn(page, 'paris', 'county');
    expect(sockets).toEqual([`wss://127.0.0.1:${chat.httpsPort}/xmpp-websocket`]);
  }, 60_000);
});
