import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { statSync } from 'node:fs';
import { mkdtemp, readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { type Element, xml, client as xmppClient } from '@xmpp/client';
import { afterEach, describe, expect, it } from 'vitest';

// The chat example as a user runs it: its own process, accounts made with `user add`, a TCP
// client (@xmpp/client over STARTTLS and direct TLS). The web page: test/web.test.ts.
process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0'; // the example makes a self-signed certificate

const main = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'main.js');
const children: ChildProcess[] = [];
const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  await Promise.all(cleanups.splice(0).map((cleanup) => cleanup().catch(() => {})));
  for (const child of children.splice(0)) child.kill('SIGKILL');
});

async function run(args: string[], env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, [main, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, output };
}

async function startChat(existingDataDir?: string, extraEnv: Record<string, string> = {}) {
  const dataDir = existingDataDir ?? (await mkdtemp(join(tmpdir(), 'portbind-chat-')));
  const env = { DATA_DIR: dataDir, PORT: '0', XMPP_PORT: '0', XMPPS_PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', ...extraEnv };
  if (existingDataDir === undefined) {
    expect(await run(['user', 'add', 'juliet', 'balcony'], env)).toEqual({ code: 0, output: 'added juliet\n' });
    expect(await run(['user', 'add', 'romeo', 'r0meo!'], env)).toEqual({ code: 0, output: 'added romeo\n' });
    expect((await run(['user', 'add', 'romeo', 'again'], env)).code).toBe(1);
  }
  const child = spawn(process.execPath, [main], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let logs = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    logs += chunk.toString();
  });
  const deadline = Date.now() + 20_000;
  while (!/xmpp-websocket/.test(logs) || !/listening on xmpps:/.test(logs)) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`chat did not start:\n${logs}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const httpPort = Number(/listening on http:\/\/127\.0\.0\.1:(\d+)\//.exec(logs)?.[1]);
  const xmppPort = Number(/listening on xmpp:\/\/127\.0\.0\.1:(\d+)/.exec(logs)?.[1]);
  const xmppsPort = Number(/listening on xmpps:\/\/127\.0\.0\.1:(\d+)/.exec(logs)?.[1]);
  const componentPort = Number(/listening on xmpp-component:\/\/127\.0\.0\.1:(\d+)/.exec(logs)?.[1]);
  return { child, httpPort, xmppPort, xmppsPort, componentPort, dataDir, logs: () => logs };
}

/** The certificate the server presents after STARTTLS on its XMPP port. */
async function presentedCertificate(port: number): Promise<X509Certificate> {
  const socket = connect(port, '127.0.0.1');
  socket.write(
    "<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>",
  );
  let got = '';
  let asked = false;
  await new Promise<void>((resolve) => {
    const onData = (chunk: Buffer): void => {
      got += chunk.toString();
      if (!asked && got.includes('</stream:features>')) {
        asked = true;
        socket.write("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
      }
      if (got.includes('<proceed')) {
        socket.off('data', onData);
        resolve();
      }
    };
    socket.on('data', onData);
  });
  const secure = tlsConnect({ socket, rejectUnauthorized: false, servername: 'localhost' });
  await once(secure, 'secureConnect');
  const certificate = secure.getPeerX509Certificate();
  secure.destroy();
  if (certificate === undefined) throw new Error('no certificate presented');
  return certificate;
}

/** A raw TLS connection to the direct-TLS port offering `alpn`: what was negotiated, and the stream features it got. */
async function directTls(port: number, alpn: string[] | undefined): Promise<{ alpnProtocol: string | false | null; features: string }> {
  const secure = tlsConnect({ port, host: '127.0.0.1', servername: 'localhost', rejectUnauthorized: false, ALPNProtocols: alpn });
  await once(secure, 'secureConnect');
  secure.write(
    "<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>",
  );
  let got = '';
  await new Promise<void>((resolve) => {
    secure.on('data', (chunk: Buffer) => {
      got += chunk.toString();
      if (got.includes('</stream:features>')) resolve();
    });
  });
  const alpnProtocol = secure.alpnProtocol;
  secure.destroy();
  return { alpnProtocol, features: got.slice(got.indexOf('<stream:features')) };
}

describe('examples/chat', () => {
  it('keeps its SHA-256 development certificate in DATA_DIR across restarts', async () => {
    const first = await startChat();
    const before = await presentedCertificate(first.xmppPort);
    first.child.kill('SIGTERM');
    expect((await once(first.child, 'exit'))[0]).toBe(0);
    const stored = new X509Certificate(await readFile(join(first.dataDir, 'dev-cert.pem')));
    expect(stored.fingerprint256).toBe(before.fingerprint256);
    expect(before.checkHost('localhost')).toBe('localhost');
    const text = execFileSync('openssl', ['x509', '-noout', '-text'], { input: stored.toString() }).toString();
    expect(text).toMatch(/Signature Algorithm: sha256WithRSAEncryption/);
    expect(statSync(join(first.dataDir, 'dev-key.pem')).mode & 0o077).toBe(0);

    const second = await startChat(first.dataDir);
    const after = await presentedCertificate(second.xmppPort);
    expect(after.fingerprint256).toBe(before.fingerprint256);
  });

  it('binds direct TLS (XEP-0368) on XMPPS_PORT: ALPN xmpp-client negotiated, a client without ALPN served, @xmpp/client over xmpps://', async () => {
    const { xmppPort, xmppsPort } = await startChat();
    expect(xmppsPort).toBeGreaterThan(0);
    expect(xmppsPort).not.toBe(xmppPort);

    // TLS from the first byte: no STARTTLS on offer, SASL at once.
    const withAlpn = await directTls(xmppsPort, ['xmpp-client']);
    expect(withAlpn.alpnProtocol).toBe('xmpp-client');
    expect(withAlpn.features).toContain('<mechanism>SCRAM-SHA-256</mechanism>');
    expect(withAlpn.features).not.toContain('starttls');
    const withoutAlpn = await directTls(xmppsPort, undefined);
    expect(withoutAlpn.alpnProtocol).toBe(false);
    expect(withoutAlpn.features).toContain('<mechanism>SCRAM-SHA-256</mechanism>');
    // A client offering other protocols only gets TLS's no_application_protocol alert (RFC 7301 §3.2).
    const other = tlsConnect({ port: xmppsPort, host: '127.0.0.1', rejectUnauthorized: false, ALPNProtocols: ['h2'] });
    const [error] = (await once(other, 'error')) as [NodeJS.ErrnoException];
    expect(error.code).toBe('ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL');

    const romeo = xmppClient({
      timeout: 8000,
      service: `xmpps://127.0.0.1:${xmppsPort}`,
      domain: 'localhost',
      username: 'romeo',
      password: 'r0meo!',
    });
    romeo.on('error', () => {});
    cleanups.push(() => romeo.stop());
    const romeoJid = String(await romeo.start());
    expect(romeoJid).toMatch(/^romeo@localhost\//);
    const echo = new Promise<Element>((resolve) => romeo.on('stanza', (s: Element) => s.is('message') && resolve(s)));
    await romeo.send(xml('message', { to: romeoJid, type: 'chat' }, xml('body', {}, 'over direct TLS')));
    expect((await echo).getChildText('body')).toBe('over direct TLS');
  });

  it('serves external components (XEP-0114) from XMPP_COMPONENTS on XMPP_COMPONENT_PORT: a bot talks with a user; a wrong secret gets not-authorized', async () => {
    const { componentPort, xmppPort } = await startChat(undefined, { XMPP_COMPONENTS: 'bot.localhost=s3cret', XMPP_COMPONENT_PORT: '0' });
    expect(componentPort).toBeGreaterThan(0);

    /** A component's stream (raw TCP): the handshake with `secret`, then what the server sends. */
    async function component(secret: string) {
      const socket = connect(componentPort, '127.0.0.1');
      cleanups.push(async () => socket.destroy());
      let got = '';
      const until = (pattern: RegExp) =>
        new Promise<string>((resolve, reject) => {
          const check = () => {
            const match = pattern.exec(got);
            if (match === null) return;
            socket.off('data', onData);
            resolve(match[0]);
          };
          const onData = (chunk: Buffer) => {
            got += chunk.toString();
            check();
          };
          socket.on('data', onData);
          socket.once('close', () => reject(new Error(`closed; got ${got}`)));
          check();
        });
      socket.write("<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='bot.localhost'>");
      const id = /id=['"]([^'"]+)['"]/.exec(await until(/<stream:stream[^>]*>/))?.[1] ?? '';
      socket.write(
        `<handshake>${createHash('sha1')
          .update(id + secret)
          .digest('hex')}</handshake>`,
      );
      return { socket, until, transcript: () => got };
    }

    const wrong = await component('guess');
    expect(await wrong.until(/<stream:error>.*<\/stream:error>/s)).toContain('<not-authorized');

    const bot = await component('s3cret');
    await bot.until(/<handshake\/>/);
    const romeo = xmppClient({
      timeout: 8000,
      service: `xmpp://127.0.0.1:${xmppPort}`,
      domain: 'localhost',
      username: 'romeo',
      password: 'r0meo!',
    });
    romeo.on('error', () => {});
    cleanups.push(() => romeo.stop());
    const romeoJid = String(await romeo.start());
    const fromBot = new Promise<Element>((resolve) => romeo.on('stanza', (s: Element) => s.is('message') && resolve(s)));
    bot.socket.write(`<message from='echo@bot.localhost' to='${romeoJid}' type='chat'><body>beep</body></message>`);
    const message = await fromBot;
    expect(message.attrs.from).toBe('echo@bot.localhost');
    expect(message.getChildText('body')).toBe('beep');
    await romeo.send(xml('message', { to: 'echo@bot.localhost', type: 'chat' }, xml('body', {}, 'boop')));
    expect(await bot.until(/<message[^>]*>.*?boop.*?<\/message>/s)).toContain(`from='${romeoJid}'`);
  });

  it('a non-https UPLOAD_URL or a malformed XMPP_COMPONENTS stops the start: one PB_ERR line, exit 1, nothing bound', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'portbind-chat-'));
    const env = { DATA_DIR: dataDir, PORT: '0', XMPP_PORT: '0', XMPPS_PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info' };
    for (const [extra, code] of [
      [{ UPLOAD_URL: 'http://chat.example.com/upload/' }, 'PB_ERR_XMPP_UPLOAD_URL'],
      [{ XMPP_COMPONENTS: 'bot.localhost' }, 'PB_ERR_XMPP_OPTION'],
    ] as const) {
      const result = await run([], { ...env, ...extra });
      expect(result.code).toBe(1);
      const lines = result.output.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(JSON.parse(lines[0] as string)).toMatchObject({ msg: expect.stringMatching(/^start failed: /), err: { code } });
    }
  });
});
