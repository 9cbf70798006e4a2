import { type ChildProcess, spawn } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { push } from '../src/modules/push.js';
import { startWithComponents } from './component-support.js';
import { Raw } from './raw-stream.js';

// The proof with a real external component: slixmpp's ComponentXMPP (Debian's python3-slixmpp)
// as an XEP-0357 app server on push.localhost. It logs in with its secret, receives the push
// publish for a message to an offline user and answers it; with a wrong secret it gets
// <not-authorized/>.

const SCRIPT = new URL('./slixmpp/component_push.py', import.meta.url).pathname;
const PUSH = 'urn:xmpp:push:0';
const children: ChildProcess[] = [];
afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill();
});

/** Run the component; resolves `ready` at its READY line and `result` with its last JSON line. */
function component(port: number, secret: string, mode: 'answer' | 'reject' | 'wrong') {
  const child = spawn('/usr/bin/python3', [SCRIPT, '127.0.0.1', String(port), 'push.localhost', secret, mode], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let out = '';
  let err = '';
  let onReady: () => void = () => {};
  const ready = new Promise<void>((resolve) => {
    onReady = resolve;
  });
  child.stdout.on('data', (chunk: Buffer) => {
    out += chunk.toString();
    if (out.includes('READY\n')) onReady();
  });
  child.stderr.on('data', (chunk: Buffer) => {
    err += chunk.toString();
  });
  const result = new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`component timed out; stdout ${out} stderr ${err}`)), 60_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      const last = out.trim().split('\n').pop() ?? '';
      try {
        resolve(JSON.parse(last) as Record<string, unknown>);
      } catch {
        reject(new Error(`component exited ${code}; stdout ${out} stderr ${err}`));
      }
    });
  });
  return { ready: Promise.race([ready, result.then(() => undefined)]), result };
}

async function offlineJulietWithPush(port: number, server: { sessionsOf(bare: string): unknown[] }, node: string): Promise<void> {
  const juliet = await Raw.login(port, 'juliet', 'balcony', 'phone');
  const form =
    "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var='secret'><value>device-secret</value></field></x>";
  expect(await juliet.iq('e', `<enable xmlns='${PUSH}' jid='push.localhost' node='${node}'>${form}</enable>`)).toMatch(/type='result'/);
  juliet.send('</stream:stream>');
  const deadline = Date.now() + 10_000;
  while (server.sessionsOf('juliet@localhost').length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
}

describe('slixmpp ComponentXMPP as a push app server (XEP-0114 + XEP-0357)', () => {
  it('logs in with its secret, receives the publish for an offline user’s message and answers it', async () => {
    const { port, componentPort, server, module } = await startWithComponents({
      modules: (base) => [...base, push({ minIntervalMs: 0, includeSender: true })],
    });
    const app = component(componentPort, 'pushsecret', 'answer');
    await app.ready;
    expect(module.connected()).toEqual(['push.localhost']);
    await offlineJulietWithPush(port, server, 'device-1');
    const romeo = await Raw.login(port, 'romeo', 'r0meo!', 'garden');
    romeo.send("<message to='juliet@localhost' type='chat'><body>O Juliet</body></message>");
    const result = await app.result;
    expect(result).toEqual({
      from: 'localhost',
      to: 'push.localhost',
      node: 'device-1',
      summary: {
        FORM_TYPE: 'urn:xmpp:push:summary',
        'message-count': '1',
        'last-message-sender': 'romeo@localhost',
        'last-message-body': 'New Message!',
      },
      publishOptions: { FORM_TYPE: 'http://jabber.org/protocol/pubsub#publish-options', secret: 'device-secret' },
    });
    // Answered with a result: the registration stays.
    expect(await server.storage.keyValue('push').keys('juliet')).toEqual(['push.localhost<device-1']);
  });

  it('an app server that answers <item-not-found/> disables the registration', async () => {
    const { port, componentPort, server } = await startWithComponents({ modules: (base) => [...base, push({ minIntervalMs: 0 })] });
    const app = component(componentPort, 'pushsecret', 'reject');
    await app.ready;
    await offlineJulietWithPush(port, server, 'device-2');
    const romeo = await Raw.login(port, 'romeo', 'r0meo!', 'garden');
    romeo.send("<message to='juliet@localhost' type='chat'><body>anyone?</body></message>");
    expect((await app.result).node).toBe('device-2');
    const keys = server.storage.keyValue('push');
    const deadline = Date.now() + 10_000;
    while ((await keys.keys('juliet')).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(await keys.keys('juliet')).toEqual([]);
  });

  it('a wrong secret gets <not-authorized/>', async () => {
    const { componentPort, module } = await startWithComponents();
    const result = await component(componentPort, 'not-the-secret', 'wrong').result;
    expect(result).toEqual({ streamError: 'not-authorized', started: false });
    expect(module.connected()).toEqual([]);
  });
});
