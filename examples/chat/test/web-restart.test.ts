import { once } from 'node:events';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { xml } from '@xmpp/client';
import type { Browser } from 'playwright-core';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import {
  addUsers,
  cuttableProxy,
  isMessage,
  launchBrowser,
  logIn,
  messagesShown,
  messageTexts,
  openPage,
  peer,
  type RunningChat,
  runAfterEach,
  startChat,
  wait,
} from './web-support.js';

// The chat page when the server itself restarts: the session cannot be resumed (the new process
// does not know it), so the page starts a new one by itself, sends again what the old one never
// acknowledged, and fills the conversation from the archive without duplicates.

let browser: Browser | undefined;
const chats: RunningChat[] = [];

afterEach(async () => {
  expect(await runAfterEach()).toEqual([]); // no uncaught error in the page
});

afterAll(async () => {
  await browser?.close();
  for (const chat of chats) chat.child.kill('SIGKILL');
});

describe('the chat page across a server restart', () => {
  it('reconnects by itself with a new session when resumption fails, sends what was not acknowledged, and keeps the history', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'portbind-web-restart-'));
    await addUsers(dataDir, [
      ['juliet', 'balcony'],
      ['romeo', 'r0meo!'],
    ]);
    let chat = await startChat(dataDir);
    chats.push(chat);
    const proxy = await cuttableProxy(() => chat.httpPort);
    browser = await launchBrowser();

    const romeo = await peer(chat.xmppPort, 'romeo', 'r0meo!');
    await romeo.send(xml('presence'));
    const page = await openPage(browser, `http://127.0.0.1:${proxy.port}/`);
    await logIn(page, 'juliet', 'balcony');
    await romeo.send(xml('message', { to: 'juliet@localhost', type: 'chat', id: 'm1' }, xml('body', {}, 'Before the restart')));
    await page.click('#contacts li[data-jid="romeo@localhost"]', wait);
    await messagesShown(page, 1);

    // The server stops (SIGTERM: <system-shutdown/> to every client); the page keeps trying.
    proxy.state.refusing = true;
    chat.child.kill('SIGTERM');
    await once(chat.child, 'exit');
    await page.waitForSelector('#status[data-state="reconnecting"]', wait);
    await page.fill('#body', 'Written while the server was down');
    await page.click('#composer button:not([type])');

    chat = await startChat(dataDir);
    chats.push(chat);
    const romeoAgain = await peer(chat.xmppPort, 'romeo', 'r0meo!');
    await romeoAgain.send(xml('presence'));
    proxy.state.refusing = false;

    // A new session (not "resumed"), the queued message sent on it, the history from the archive, once each.
    await page.waitForSelector('#status[data-state="online"]', { timeout: 90_000 });
    expect(await page.textContent('#status')).toBe('Online');
    const resent = await romeoAgain.next(isMessage('Written while the server was down'));
    expect(resent.attrs.from).toMatch(/^juliet@localhost\/web-/);
    await romeoAgain.send(xml('message', { to: 'juliet@localhost', type: 'chat', id: 'm2' }, xml('body', {}, 'After the restart')));
    await messagesShown(page, 3);
    expect(await messageTexts(page)).toEqual(['Before the restart', 'Written while the server was down', 'After the restart']);
    // The new session's archive query was answered, and its copies recognised: nothing shows twice.
    await page.waitForSelector('body[data-archive-loads="2"]', { ...wait, state: 'attached' });
    expect(await messageTexts(page)).toEqual(['Before the restart', 'Written while the server was down', 'After the restart']);
  }, 180_000);
});
