import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type Socket, connect as tcpConnect } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Client, type Element, client as xmppClient } from '@xmpp/client';
import { type Browser, chromium, type Page } from 'playwright-core';

// What the web page tests share: the chat app in its own process, headless Chromium (Debian's),
// @xmpp/client peers over TCP, and a TCP proxy that can cut the page's connection.
process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0'; // the example makes a self-signed certificate

const main = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'main.js');
export const wait = { timeout: 30_000 };

/** Closed after each test (pages, peers, proxies). */
export const cleanups: Array<() => Promise<unknown>> = [];
/** Uncaught errors in any page: the tests expect none. */
export const pageErrors: string[] = [];

export async function runAfterEach(): Promise<string[]> {
  await Promise.all(cleanups.splice(0).map((cleanup) => cleanup().catch(() => {})));
  return pageErrors.splice(0);
}

export function chatEnv(dataDir: string): Record<string, string> {
  return { DATA_DIR: dataDir, PORT: '0', HTTPS_PORT: '0', XMPP_PORT: '0', XMPPS_PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info' };
}

/** `user add NAME PASSWORD` for each, as a user runs it; throws unless each exits 0. */
export async function addUsers(dataDir: string, users: Array<[string, string]>): Promise<void> {
  for (const [user, password] of users) {
    const child = spawn(process.execPath, [main, 'user', 'add', user, password], {
      env: { ...process.env, ...chatEnv(dataDir) },
      stdio: 'ignore',
    });
    const [code] = (await once(child, 'exit')) as [number | null];
    if (code !== 0) throw new Error(`user add ${user} exited ${code}`);
  }
}

export interface RunningChat {
  child: ChildProcess;
  httpPort: number;
  httpsPort: number;
  xmppPort: number;
}

/** The chat (`node dist/main.js`) on ephemeral ports, once it listens on all of them. */
export async function startChat(dataDir: string): Promise<RunningChat> {
  const child = spawn(process.execPath, [main], { env: { ...process.env, ...chatEnv(dataDir) }, stdio: ['ignore', 'pipe', 'pipe'] });
  let logs = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    logs += chunk.toString();
  });
  const deadline = Date.now() + 30_000;
  while (!/listening on https:/.test(logs) || !/listening on xmpps:/.test(logs)) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`chat did not start:\n${logs}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    child,
    httpPort: Number(/listening on http:\/\/127\.0\.0\.1:(\d+)\//.exec(logs)?.[1]),
    httpsPort: Number(/listening on https:\/\/127\.0\.0\.1:(\d+)\//.exec(logs)?.[1]),
    xmppPort: Number(/listening on xmpp:\/\/127\.0\.0\.1:(\d+)/.exec(logs)?.[1]),
  };
}

export function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
}

/** A fresh browser context (its own storage) on `url`; its uncaught errors go to {@link pageErrors}. */
export async function openPage(browser: Browser, url: string): Promise<Page> {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  cleanups.push(() => context.close());
  const page = await context.newPage();
  page.on('pageerror', (error) => pageErrors.push(String(error)));
  await page.goto(url);
  return page;
}

export async function logIn(page: Page, user: string, password: string): Promise<void> {
  await page.fill('#user', user);
  await page.fill('#password', password);
  await page.click('#login button');
  await page.waitForSelector('#status[data-state="online"]', wait);
}

/** An XMPP client over TCP, its stanzas collected; `next(match)` waits (30 s at most) for one. */
export async function peer(port: number, user: string, password: string) {
  const client: Client = xmppClient({
    timeout: 8000,
    service: `xmpp://127.0.0.1:${port}`,
    domain: 'localhost',
    username: user,
    password,
    resource: 'tcp',
  });
  client.on('error', () => {});
  const seen: Element[] = [];
  const waiters: Array<{ match: (s: Element) => boolean; resolve: (s: Element) => void }> = [];
  client.on('stanza', (stanza: Element) => {
    const index = waiters.findIndex((w) => w.match(stanza));
    if (index === -1) seen.push(stanza);
    else waiters.splice(index, 1)[0]?.resolve(stanza);
  });
  const jid = String(await client.start());
  cleanups.push(() => client.stop());
  const next = (match: (s: Element) => boolean): Promise<Element> => {
    const index = seen.findIndex(match);
    if (index !== -1) return Promise.resolve(seen.splice(index, 1)[0] as Element);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${user} waited 30 s for ${match} in vain`)), 30_000);
      waiters.push({
        match,
        resolve: (stanza) => {
          clearTimeout(timer);
          resolve(stanza);
        },
      });
    });
  };
  return { client, jid, next, send: (stanza: Element) => client.send(stanza) };
}

/**
 * A TCP proxy to `target()` (asked at each connection): `cut()` drops every connection through it,
 * and while `refusing` new ones are closed at once.
 */
export async function cuttableProxy(target: () => number) {
  const sockets = new Set<Socket>();
  const state = { refusing: false };
  const proxy = createServer((socket) => {
    if (state.refusing) {
      socket.destroy();
      return;
    }
    const upstream = tcpConnect(target(), '127.0.0.1');
    sockets.add(socket).add(upstream);
    socket.pipe(upstream).pipe(socket);
    const drop = () => {
      socket.destroy();
      upstream.destroy();
      sockets.delete(socket);
      sockets.delete(upstream);
    };
    socket.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
  });
  proxy.listen(0, '127.0.0.1');
  await once(proxy, 'listening');
  const cut = () => {
    for (const socket of sockets) socket.destroy();
  };
  cleanups.push(async () => {
    cut();
    proxy.close();
  });
  return { port: (proxy.address() as { port: number }).port, cut, state };
}

export const isMessage = (body: string) => (s: Element) => s.is('message') && s.getChildText('body') === body;

/** The page's document, as functions run in the page see it (tests are type-checked without the DOM library). */
declare const document: {
  querySelectorAll(selector: string): ArrayLike<{ textContent: string | null }>;
};

/** Wait until the open conversation shows `count` messages (notices not counted). */
export const messagesShown = (page: Page, count: number) =>
  page.waitForFunction((n) => document.querySelectorAll('#messages li.message:not(.notice)').length === n, count, wait);
/** The texts of the open conversation's messages, in order (notices left out). */
export const messageTexts = (page: Page) =>
  page.$$eval('#messages li.message:not(.notice) .body', (items) => items.map((item) => item.textContent));
