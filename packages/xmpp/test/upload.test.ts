import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { PortService } from '@portbind/core';
import { httpAdapter } from '@portbind/http';
import { chromium } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { portOf, rawConnect, readUntilClose, sleep } from '../../../test/support/net.js';
import {
  defaultModules,
  MemoryUserStore,
  memoryStorage,
  sqliteStorage,
  type UploadModule,
  type UploadOptions,
  upload,
  XmppConfigError,
  type XmppStorage,
  xmppServer,
} from '../src/index.js';
import { Raw } from './raw-stream.js';
import { capturingLogger, stopAfterTest, testCert } from './support.js';

// XEP-0363 HTTP File Upload: slots over XMPP, the file over HTTP on the same process; real curl
// and slixmpp's xep_0363, and each bad input over a raw socket.

const run = promisify(execFile);
const NS = 'urn:xmpp:http:upload:0';

let lastLogger: ReturnType<typeof capturingLogger> | undefined;

interface Started {
  uploads: UploadModule;
  xmppPort: number;
  httpPort: number;
  base: string;
  dir: string;
  service: PortService;
  logger: ReturnType<typeof capturingLogger>;
}

/** A server for localhost with the upload module, XMPP on one port, HTTP (the upload endpoint) on another. */
async function startUpload(options: Partial<UploadOptions> = {}, storage: XmppStorage = memoryStorage()): Promise<Started> {
  const users = new MemoryUserStore({ iterations: 4096 });
  await users.create('juliet', 'balcony');
  await users.create('romeo', 'r0meo!');
  const logger = capturingLogger();
  lastLogger = logger;
  let base = 'http://127.0.0.1:1/upload/';
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), 'pb-upload-')));
  const uploads = upload({ baseUrl: () => base, maxFileSize: 1024 * 1024, ...options, dir });
  const server = xmppServer({ domain: 'localhost', storage, users, modules: [...defaultModules(), uploads] });
  const service = stopAfterTest(new PortService({ env: {}, gracePeriodMs: 2000, logger }));
  const xmppBinding = service.bind(server.c2s(), { port: 0, host: '127.0.0.1', tls: testCert() });
  const httpBinding = service.bind(
    httpAdapter({
      bodyLimit: uploads.maxFileSize,
      fetch: (request) => uploads.fetch(request) ?? new Response('the app\n', { status: 404 }),
    }),
    { port: 0, host: '127.0.0.1', name: 'http' },
  );
  await service.start();
  const httpPort = portOf(httpBinding);
  base = `http://127.0.0.1:${httpPort}/upload/`;
  return { uploads, xmppPort: portOf(xmppBinding), httpPort, base, dir, service, logger };
}

const unescapeXml = (text: string): string =>
  text
    .replace(/&apos;/g, "'")
    .replace(/&quot;/g, '"')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');

interface Slot {
  put: string;
  get: string;
  authorization: string;
}

function parseSlot(answer: string): Slot {
  const put = /<put url='([^']*)'/.exec(answer)?.[1];
  const get = /<get url='([^']*)'/.exec(answer)?.[1];
  const authorization = /<header name='Authorization'>([^<]*)<\/header>/.exec(answer)?.[1];
  if (put === undefined || get === undefined || authorization === undefined)
    throw new Error(`no slot in ${answer} ${JSON.stringify(lastLogger?.lines.filter((l) => l.level === 'error'))}`);
  return { put: unescapeXml(put), get: unescapeXml(get), authorization: unescapeXml(authorization) };
}

let ids = 0;
/** Ask for a slot; the whole answer. */
function requestSlot(raw: Raw, filename: string, size: number | string, contentType?: string): Promise<string> {
  const id = `s${++ids}`;
  const type = contentType === undefined ? '' : ` content-type='${contentType}'`;
  return raw.iq(id, `<request xmlns='${NS}' filename='${filename}' size='${size}'${type}/>`, "type='get' to='upload.localhost'");
}

async function slotFor(raw: Raw, filename: string, size: number, contentType?: string): Promise<Slot> {
  return parseSlot(await requestSlot(raw, filename, size, contentType));
}

/** One raw HTTP/1.1 exchange: the request text (and body) as given, the response until the server closes or answers whole. */
async function rawHttp(port: number, head: string, body: Buffer | string = ''): Promise<{ status: number; head: string; body: string }> {
  const socket = await rawConnect(port);
  const reply = readUntilClose(socket, 15_000);
  socket.write(head.replace(/\n/g, '\r\n'));
  if (body.length > 0) socket.write(body);
  // Ask the server to close after its answer, so the whole reply is read.
  const { data } = await reply;
  socket.destroy();
  return parseResponse(data);
}

function parseResponse(data: string): { status: number; head: string; body: string } {
  const end = data.indexOf('\r\n\r\n');
  const head = end === -1 ? data : data.slice(0, end);
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
  return { status, head, body: end === -1 ? '' : data.slice(end + 4) };
}

/** Files under `dir`, recursively (relative paths), the temporary folder included. */
async function filesUnder(dir: string): Promise<string[]> {
  for (;;) {
    try {
      const entries = await readdir(dir, { recursive: true, withFileTypes: true });
      return entries.filter((entry) => entry.isFile()).map((entry) => join(entry.parentPath, entry.name).slice(dir.length + 1));
    } catch (error) {
      // The server's sweep removed a folder while the walk was in it: walk again.
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT' || (error as NodeJS.ErrnoException).path === dir) throw error;
    }
  }
}

const pathOf = (url: string): string => new URL(url).pathname;

describe('XEP-0363 HTTP File Upload', () => {
  it('is found through disco#items, and its disco#info has the identity, the feature and max-file-size', async () => {
    const { xmppPort } = await startUpload({ maxFileSize: 5 * 1024 * 1024 });
    const raw = await Raw.login(xmppPort, 'juliet', 'balcony', 'disco');
    const items = await raw.iq('i', "<query xmlns='http://jabber.org/protocol/disco#items'/>", "type='get' to='localhost'");
    expect(items).toContain("<item jid='upload.localhost' name='HTTP File Upload'/>");
    const info = await raw.iq('n', "<query xmlns='http://jabber.org/protocol/disco#info'/>", "type='get' to='upload.localhost'");
    expect(info).toContain("from='upload.localhost'");
    expect(info).toContain("<identity category='store' type='file' name='HTTP File Upload'/>");
    expect(info).toContain(`<feature var='${NS}'/>`);
    expect(info).toMatch(
      /<x xmlns='jabber:x:data' type='result'>.*<field var='FORM_TYPE' type='hidden'><value>urn:xmpp:http:upload:0<\/value><\/field>/,
    );
    expect(info).toContain("<field var='max-file-size'><value>5242880</value></field>");
    // A message to the service bounces; an unknown IQ gets service-unavailable.
    const unknown = await raw.iq('u', "<query xmlns='jabber:iq:version'/>", "type='get' to='upload.localhost'");
    expect(unknown).toContain('<service-unavailable');
  });

  it('hands out a slot; curl uploads through it and downloads the same bytes with the declared type', async () => {
    const { xmppPort, base, dir } = await startUpload();
    const raw = await Raw.login(xmppPort, 'juliet', 'balcony', 'curl');
    const bytes = Buffer.alloc(300_000);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7 + (i >> 8)) & 0xff;
    const local = join(await mkdtemp(join(tmpdir(), 'pb-upload-src-')), 'très cool.png');
    await writeFile(local, bytes);
    const answer = await requestSlot(raw, 'très cool.png', bytes.length, 'image/png');
    expect(answer).toContain("type='result'");
    expect(answer).toContain("from='upload.localhost'");
    const slot = parseSlot(answer);
    expect(slot.put).toBe(slot.get);
    expect(slot.get.startsWith(base)).toBe(true);
    expect(slot.get).toMatch(/\/upload\/[A-Za-z0-9_-]{22}\/tr%C3%A8s%20cool\.png$/);
    expect(slot.authorization).toMatch(/^Bearer [A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);

    // Not there before the upload.
    const before = await run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', slot.get]);
    expect(before.stdout).toBe('404');

    const put = await run('curl', [
      '-s',
      '-w',
      '%{http_code}',
      '-T',
      local,
      '-H',
      `Authorization: ${slot.authorization}`,
      '-H',
      'Content-Type: image/png',
      slot.put,
    ]);
    expect(put.stdout.trim()).toBe('201');

    const out = join(await mkdtemp(join(tmpdir(), 'pb-upload-dst-')), 'got');
    const got = await run('curl', ['-s', '-D', '-', '-o', out, slot.get]);
    const headers = got.stdout.toLowerCase();
    expect(headers).toMatch(/^http\/1\.1 200/);
    expect(headers).toContain('content-type: image/png');
    expect(headers).toContain(`content-length: ${bytes.length}`);
    expect(headers).toContain("content-disposition: inline; filename*=utf-8''tr%c3%a8s%20cool.png");
    expect(headers).toContain('x-content-type-options: nosniff');
    expect(headers).toMatch(/content-security-policy: default-src 'none';.*sandbox/);
    expect(headers).toMatch(/cache-control: public, max-age=\d+, immutable/);
    expect(headers).toContain('access-control-allow-origin: *');
    expect(headers).toMatch(/etag: "[a-z0-9_-]{22}"/);
    const downloaded = await readFile(out);
    expect(createHash('sha256').update(downloaded).digest('hex')).toBe(createHash('sha256').update(bytes).digest('hex'));

    // On disk: <slot id>/<sanitized name>, nothing left in the temporary folder.
    const files = await filesUnder(dir);
    expect(files).toEqual([`${pathOf(slot.get).split('/')[2]}/très cool.png`]);

    // HEAD, a range, a conditional GET, the CORS preflight.
    const head = await run('curl', ['-s', '-I', slot.get]);
    expect(head.stdout.toLowerCase()).toContain(`content-length: ${bytes.length}`);
    const range = await run('curl', ['-s', '-D', '-', '-o', join(out, '..', 'part'), '-r', '100-199', slot.get]);
    expect(range.stdout.toLowerCase()).toMatch(/^http\/1\.1 206/);
    expect(range.stdout.toLowerCase()).toContain(`content-range: bytes 100-199/${bytes.length}`);
    expect(await readFile(join(out, '..', 'part'))).toEqual(bytes.subarray(100, 200));
    const etag = /etag: ("[^"]+")/i.exec(got.stdout)?.[1] as string;
    const cached = await run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '-H', `If-None-Match: ${etag}`, slot.get]);
    expect(cached.stdout).toBe('304');
    const preflight = await run('curl', [
      '-s',
      '-D',
      '-',
      '-o',
      '/dev/null',
      '-X',
      'OPTIONS',
      '-H',
      'Origin: https://web.example',
      '-H',
      'Access-Control-Request-Method: PUT',
      '-H',
      'Access-Control-Request-Headers: authorization, content-type',
      slot.put,
    ]);
    const cors = preflight.stdout.toLowerCase();
    expect(cors).toMatch(/^http\/1\.1 204/);
    expect(cors).toContain('access-control-allow-origin: *');
    expect(cors).toContain('access-control-allow-methods: options, head, get, put');
    expect(cors).toContain('access-control-allow-headers: authorization, content-type');
  });

  it('serves HTML as an attachment with the sandbox CSP, and a slot without a type as application/octet-stream', async () => {
    const { xmppPort, httpPort } = await startUpload();
    const raw = await Raw.login(xmppPort, 'juliet', 'balcony', 'html');
    const html = '<script>alert(document.cookie)</script>';
    const slot = await slotFor(raw, 'page.html', html.length, 'text/html');
    const put = await rawHttp(
      httpPort,
      `PUT ${pathOf(slot.put)} HTTP/1.1\nHost: 127.0.0.1\nAuthorization: ${slot.authorization}\nContent-Type: text/html\nContent-Length: ${html.length}\nConnection: close\n\n`,
      html,
    );
    expect(put.status).toBe(201);
    const get = await rawHttp(httpPort, `GET ${pathOf(slot.get)} HTTP/1.1\nHost: 127.0.0.1\nConnection: close\n\n`);
    expect(get.status).toBe(200);
    expect(get.head.toLowerCase()).toContain('content-type: text/html');
    expect(get.head.toLowerCase()).toContain("content-disposition: attachment; filename*=utf-8''page.html");
    expect(get.head.toLowerCase()).toMatch(/content-security-policy: [^\r]*sandbox/);
    expect(get.body).toBe(html);

    const untyped = await slotFor(raw, 'blob.bin', 3);
    expect(
      (
        await rawHttp(
          httpPort,
          `PUT ${pathOf(untyped.put)} HTTP/1.1\nHost: x\nAuthorization: ${untyped.authorization}\nContent-Length: 3\nConnection: close\n\n`,
          'abc',
        )
      ).status,
    ).toBe(201);
    const blob = await rawHttp(httpPort, `GET ${pathOf(untyped.get)} HTTP/1.1\nHost: x\nConnection: close\n\n`);
    expect(blob.head.toLowerCase()).toContain('content-type: application/octet-stream');
    expect(blob.head.toLowerCase()).toContain('content-disposition: attachment');
    // A slot without a type takes the PUT's Content-Type.
    const typedLater = await slotFor(raw, 'later.txt', 2);
    const putLater = await rawHttp(
      httpPort,
      `PUT ${pathOf(typedLater.put)} HTTP/1.1\nHost: x\nAuthorization: ${typedLater.authorization}\nContent-Type: text/plain\nContent-Length: 2\nConnection: close\n\n`,
      'hi',
    );
    expect(putLater.status).toBe(201);
    const later = await rawHttp(httpPort, `GET ${pathOf(typedLater.get)} HTTP/1.1\nHost: x\nConnection: close\n\n`);
    expect(later.head.toLowerCase()).toContain('content-type: text/plain');
    expect(later.head.toLowerCase()).toContain('content-disposition: inline');
  });

  it('refuses a slot for 2 GB with <file-too-large/> and the maximum, and bad sizes and names with bad-request', async () => {
    const { xmppPort } = await startUpload({ maxFileSize: 10 * 1024 * 1024 });
    const raw = await Raw.login(xmppPort, 'juliet', 'balcony', 'big');
    const big = await requestSlot(raw, 'movie.mkv', 2 * 1024 * 1024 * 1024, 'video/x-matroska');
    expect(big).toContain("type='error'");
    expect(big).toContain("<error type='modify'><not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>");
    expect(big).toContain(`<file-too-large xmlns='${NS}'><max-file-size>10485760</max-file-size></file-too-large>`);
    for (const size of ['-1', '1.5', 'abc', '', '99999999999999999999']) {
      const answer = await requestSlot(raw, 'a.txt', size, 'text/plain');
      expect(answer).toContain('<bad-request');
    }
    // Traversal and control characters in the name are refused (as Prosody refuses '/').
    for (const name of ['../../etc/passwd', '..', 'a/b', '..\\..\\x', 'tab&#9;name', 'nl&#10;name', 'x'.repeat(256)]) {
      const answer = await requestSlot(raw, name, 1, 'text/plain');
      expect(answer, name).toContain('<bad-request');
      expect(answer).toContain('Invalid filename');
    }
    expect(await requestSlot(raw, 'a.txt', 1, 'text/plain\r\nX-Evil: 1')).toContain('<bad-request');
    expect(await requestSlot(raw, 'a.txt', 1, 'no-slash')).toContain('<bad-request');
    expect(await requestSlot(raw, 'a.txt', 1, `text/${'x'.repeat(300)}`)).toContain('<bad-request');
    // A set is not a slot request.
    const set = await raw.iq('set', `<request xmlns='${NS}' filename='a' size='1'/>`, "type='set' to='upload.localhost'");
    expect(set).toContain('<bad-request');
    // The service still works.
    expect(await requestSlot(raw, 'ok.txt', 10, 'text/plain')).toContain('<slot');
  });

  it('refuses a slot over the daily quota with resource-constraint and <retry stamp/>, counted across restarts of the module', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pb-upload-'));
    const storage = memoryStorage();
    let clock = Date.parse('2026-11-28T08:00:00Z');
    const first = await startUpload({ dir, dailyQuota: 1000, now: () => clock }, storage);
    const raw = await Raw.login(first.xmppPort, 'juliet', 'balcony', 'quota');
    expect(await requestSlot(raw, 'a.txt', 600, 'text/plain')).toContain('<slot');
    clock += 3_600_000;
    expect(await requestSlot(raw, 'b.txt', 300, 'text/plain')).toContain('<slot');
    clock += 60_000;
    const over = await requestSlot(raw, 'c.txt', 200, 'text/plain');
    expect(over).toContain("<error type='wait'><resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>");
    // The first slot (600 bytes at 08:00) leaves the 24-hour window at 08:00 the next day.
    expect(over).toContain(`<retry xmlns='${NS}' stamp='2026-11-29T08:00:00Z'/>`);
    // Romeo has his own quota.
    const romeo = await Raw.login(first.xmppPort, 'romeo', 'r0meo!', 'quota');
    expect(await requestSlot(romeo, 'r.txt', 900, 'text/plain')).toContain('<slot');

    // The count lives in the storage: a new server on it refuses too.
    await first.service.stop();
    const second = await startUpload({ dir, dailyQuota: 1000, now: () => clock }, storage);
    const again = await Raw.login(second.xmppPort, 'juliet', 'balcony', 'quota2');
    expect(await requestSlot(again, 'c.txt', 200, 'text/plain')).toContain('<resource-constraint');
    expect(await requestSlot(again, 'd.txt', 100, 'text/plain')).toContain('<slot');
    clock += 86_400_000;
    expect(await requestSlot(again, 'e.txt', 900, 'text/plain')).toContain('<slot');
  });

  it('caps slots per day and bytes in total', async () => {
    const { xmppPort } = await startUpload({ dailySlots: 3, totalQuota: 50 });
    const raw = await Raw.login(xmppPort, 'juliet', 'balcony', 'slots');
    for (let i = 0; i < 3; i++) expect(await requestSlot(raw, `${i}.txt`, 0, 'text/plain')).toContain('<slot');
    const fourth = await requestSlot(raw, '4.txt', 0, 'text/plain');
    expect(fourth).toContain('<resource-constraint');
    expect(fourth).toMatch(/<retry xmlns='urn:xmpp:http:upload:0' stamp='\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ'\/>/);
    const romeo = await Raw.login(xmppPort, 'romeo', 'r0meo!', 'total');
    expect(await requestSlot(romeo, 'a.txt', 40, 'text/plain')).toContain('<slot');
    const full = await requestSlot(romeo, 'b.txt', 20, 'text/plain');
    expect(full).toContain('<resource-constraint');
    expect(full).toContain('no room');
  });

  it('answers a PUT without, with a wrong, a forged, another slot’s or an expired token with 401/403, and keeps nothing', async () => {
    let clock = Date.now();
    const { xmppPort, httpPort, dir, logger } = await startUpload({ slotLifetimeMs: 60_000, now: () => clock });
    const raw = await Raw.login(xmppPort, 'juliet', 'balcony', 'token');
    const slot = await slotFor(raw, 'a.txt', 5, 'text/plain');
    const other = await slotFor(raw, 'b.txt', 5, 'text/plain');
    const putWith = (authorization: string | undefined, path = pathOf(slot.put)) =>
      rawHttp(
        httpPort,
        `PUT ${path} HTTP/1.1\nHost: 127.0.0.1\n${authorization === undefined ? '' : `Authorization: ${authorization}\n`}Content-Type: text/plain\nContent-Length: 5\nConnection: close\n\n`,
        'hello',
      );
    const missing = await putWith(undefined);
    expect(missing.status).toBe(401);
    expect(missing.head.toLowerCase()).toContain('www-authenticate: bearer');
    expect((await putWith('Basic anVsaWV0OmJhbGNvbnk=')).status).toBe(401);
    expect((await putWith('Bearer nonsense.nonsense')).status).toBe(403);
    // A token whose claims were changed (size) without the key.
    const [body, signature] = slot.authorization.slice('Bearer '.length).split('.') as [string, string];
    const claims = JSON.parse(Buffer.from(body, 'base64url').toString()) as Record<string, unknown>;
    const forged = Buffer.from(JSON.stringify({ ...claims, n: 5_000_000 })).toString('base64url');
    expect((await putWith(`Bearer ${forged}.${signature}`)).status).toBe(403);
    // The other slot's token on this slot's URL.
    expect((await putWith(other.authorization)).status).toBe(403);
    // Expired: the clock moves past the slot's lifetime.
    clock += 61_000;
    const expired = await putWith(slot.authorization);
    expect(expired.status).toBe(403);
    expect(expired.body).toContain('expired');
    expect(await filesUnder(dir)).toEqual([]);
    expect(logger.lines.filter((line) => line.level === 'error')).toEqual([]);
  });

  it('answers a PUT larger than the slot with 413 (by Content-Length, and by streamed bytes) and keeps nothing', async () => {
    const { xmppPort, httpPort, dir, base, logger } = await startUpload();
    const raw = await Raw.login(xmppPort, 'juliet', 'balcony', 'large');
    const slot = await slotFor(raw, 'a.bin', 1000, 'application/octet-stream');
    const declared = await rawHttp(
      httpPort,
      `PUT ${pathOf(slot.put)} HTTP/1.1\nHost: 127.0.0.1\nAuthorization: ${slot.authorization}\nContent-Length: 1001\n\n`,
      Buffer.alloc(1001),
    );
    expect(declared.status).toBe(413);
    // Chunked: the server counts the bytes and stops at the 1001st.
    const socket = await rawConnect(httpPort);
    socket.write(
      `PUT ${pathOf(slot.put)} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${slot.authorization}\r\nTransfer-Encoding: chunked\r\n\r\n`,
    );
    const reply = readUntilClose(socket, 15_000);
    socket.write(`258\r\n${'x'.repeat(600)}\r\n`);
    await sleep(50);
    socket.write(`258\r\n${'x'.repeat(600)}\r\n`);
    const chunked = parseResponse((await reply).data);
    socket.destroy();
    expect(chunked.status).toBe(413);
    expect(await filesUnder(dir)).toEqual([]);
    // A shorter body is refused too (XEP-0363 §6: the size must match), and still nothing kept.
    const short = await rawHttp(
      httpPort,
      `PUT ${pathOf(slot.put)} HTTP/1.1\nHost: 127.0.0.1\nAuthorization: ${slot.authorization}\nTransfer-Encoding: chunked\n\n`,
      '3\r\nabc\r\n0\r\n\r\n',
    );
    expect(short.status).toBe(400);
    expect(await filesUnder(dir)).toEqual([]);
    // The slot is still usable with the right size.
    const ok = await rawHttp(
      httpPort,
      `PUT ${pathOf(slot.put)} HTTP/1.1\nHost: 127.0.0.1\nAuthorization: ${slot.authorization}\nContent-Length: 1000\nConnection: close\n\n`,
      Buffer.alloc(1000, 1),
    );
    expect(ok.status).toBe(201);
    expect(base).toContain(String(httpPort));
    expect(logger.lines.filter((line) => line.level === 'error')).toEqual([]);
  });

  it('answers a PUT with another Content-Type than the slot with 400, and a second PUT to a slot with 409', async () => {
    const { xmppPort, httpPort, dir, logger } = await startUpload();
    const raw = await Raw.login(xmppPort, 'juliet', 'balcony', 'type');
    const slot = await slotFor(raw, 'photo.jpg', 4, 'image/jpeg');
    const putAs = (type: string) =>
      rawHttp(
        httpPort,
        `PUT ${pathOf(slot.put)} HTTP/1.1\nHost: 127.0.0.1\nAuthorization: ${slot.authorization}\nContent-Type: ${type}\nContent-Length: 4\nConnection: close\n\n`,
        'jpeg',
      );
    const wrong = await putAs('text/html');
    expect(wrong.status).toBe(400);
    expect(wrong.body).toContain('Content-Type');
    expect(await filesUnder(dir)).toEqual([]);
    expect((await putAs('IMAGE/JPEG; foo=bar')).status).toBe(201);
    const second = await putAs('image/jpeg');
    expect(second.status).toBe(409);
    const get = await rawHttp(httpPort, `GET ${pathOf(slot.get)} HTTP/1.1\nHost: 127.0.0.1\nConnection: close\n\n`);
    expect(get.body).toBe('jpeg');
    expect(logger.lines.filter((line) => line.level === 'error')).toEqual([]);
  });

  it('never leaves dir for traversal in the path or the name (.., %2e%2e, %2f, NUL)', async () => {
    const { xmppPort, httpPort, dir, logger } = await startUpload();
    const raw = await Raw.login(xmppPort, 'juliet', 'balcony', 'trav');
    // A name that looks like traversal once decoded is only a name: stored inside its slot folder.
    const slot = await slotFor(raw, '%2e%2e%2f%2e%2e%2fpasswd', 2, 'text/plain');
    expect(slot.put).toContain('/%252e%252e%252f%252e%252e%252fpasswd');
    const put = await rawHttp(
      httpPort,
      `PUT ${pathOf(slot.put)} HTTP/1.1\nHost: 127.0.0.1\nAuthorization: ${slot.authorization}\nContent-Length: 2\nConnection: close\n\n`,
      'hi',
    );
    expect(put.status).toBe(201);
    const files = await filesUnder(dir);
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(/^[A-Za-z0-9_-]{22}\/_2e_2e_2f_2e_2e_2fpasswd$/);
    expect((await rawHttp(httpPort, `GET ${pathOf(slot.get)} HTTP/1.1\nHost: x\nConnection: close\n\n`)).body).toBe('hi');

    const id = pathOf(slot.get).split('/')[2] as string;
    for (const path of [
      '/upload/../../../../etc/passwd',
      '/upload/%2e%2e/%2e%2e/%2e%2e/etc/passwd',
      '/upload/..%2f..%2f..%2fetc%2fpasswd',
      `/upload/${id}/..%2f..%2f..%2f..%2fetc%2fpasswd`,
      `/upload/${id}/%00`,
      `/upload/${id}/x%00.txt`,
      '/upload/%00/passwd',
      `/upload/${id}`,
      '/upload/.tmp/x',
      `/upload/${id}/%E0%A4%A`,
    ]) {
      const get = await rawHttp(httpPort, `GET ${path} HTTP/1.1\nHost: x\nConnection: close\n\n`);
      expect([400, 404], path).toContain(get.status);
      expect(get.body).not.toContain('root:');
      const write = await rawHttp(
        httpPort,
        `PUT ${path} HTTP/1.1\nHost: x\nAuthorization: ${slot.authorization}\nContent-Length: 2\nConnection: close\n\n`,
        'no',
      );
      expect([400, 403, 404, 409], path).toContain(write.status);
    }
    expect(await filesUnder(dir)).toEqual(files);
    expect(logger.lines.filter((line) => line.level === 'error')).toEqual([]);
  });

  it('answers GET of an unknown or expired file with 404, and deletes expired files at start and on the timer', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pb-upload-'));
    // Each server opens the database anew (a server closes its storage when it stops).
    const file = join(await mkdtemp(join(tmpdir(), 'pb-upload-db-')), 'xmpp.sqlite');
    const storage = (): XmppStorage => sqliteStorage({ file });
    let clock = Date.now();
    const first = await startUpload({ dir, expiresAfterDays: 2, now: () => clock }, storage());
    const raw = await Raw.login(first.xmppPort, 'juliet', 'balcony', 'exp');
    const slot = await slotFor(raw, 'note.txt', 5, 'text/plain');
    const unknown = await rawHttp(first.httpPort, 'GET /upload/AAAAAAAAAAAAAAAAAAAAAA/note.txt HTTP/1.1\nHost: x\nConnection: close\n\n');
    expect(unknown.status).toBe(404);
    const wrongName = `${pathOf(slot.get).split('/').slice(0, 3).join('/')}/other.txt`;
    expect((await rawHttp(first.httpPort, `GET ${wrongName} HTTP/1.1\nHost: x\nConnection: close\n\n`)).status).toBe(404);
    const put = await rawHttp(
      first.httpPort,
      `PUT ${pathOf(slot.put)} HTTP/1.1\nHost: x\nAuthorization: ${slot.authorization}\nContent-Length: 5\nConnection: close\n\n`,
      'hello',
    );
    expect(put.status).toBe(201);
    // A restart keeps the file and its metadata (the key and the records are in the storage).
    await first.service.stop();
    const second = await startUpload({ dir, expiresAfterDays: 2, now: () => clock }, storage());
    const getPath = `GET ${pathOf(slot.get)} HTTP/1.1\nHost: x\nConnection: close\n\n`;
    expect((await rawHttp(second.httpPort, getPath)).body).toBe('hello');
    // Past its expiry it is 404 at once, and the next sweep deletes it from disk.
    clock += 2 * 86_400_000 + 1000;
    expect((await rawHttp(second.httpPort, getPath)).status).toBe(404);
    expect(await filesUnder(dir)).toHaveLength(1);
    expect(await second.uploads.sweep()).toBe(1);
    expect(await filesUnder(dir)).toEqual([]);

    // The sweep at start: a file uploaded, then a server started after its expiry.
    const slot2 = await slotFor(await Raw.login(second.xmppPort, 'juliet', 'balcony', 'exp2'), 'b.txt', 1, 'text/plain');
    const put2 = await rawHttp(
      second.httpPort,
      `PUT ${pathOf(slot2.put)} HTTP/1.1\nHost: x\nAuthorization: ${slot2.authorization}\nContent-Length: 1\nConnection: close\n\n`,
      'b',
    );
    expect(put2.status).toBe(201);
    await second.service.stop();
    clock += 3 * 86_400_000;
    await startUpload({ dir, expiresAfterDays: 2, now: () => clock }, storage());
    for (let i = 0; i < 200 && (await filesUnder(dir)).length > 0; i++) await sleep(50);
    expect(await filesUnder(dir)).toEqual([]);
  });

  it('keeps a slot valid across a restart: the token is signed with a key kept in the storage', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pb-upload-'));
    const file = join(await mkdtemp(join(tmpdir(), 'pb-upload-db-')), 'xmpp.sqlite');
    const first = await startUpload({ dir }, sqliteStorage({ file }));
    const slot = await slotFor(await Raw.login(first.xmppPort, 'juliet', 'balcony', 'r'), 'r.txt', 2, 'text/plain');
    await first.service.stop();
    const second = await startUpload({ dir }, sqliteStorage({ file }));
    const put = await rawHttp(
      second.httpPort,
      `PUT ${pathOf(slot.put)} HTTP/1.1\nHost: x\nAuthorization: ${slot.authorization}\nContent-Length: 2\nConnection: close\n\n`,
      'ok',
    );
    expect(put.status, JSON.stringify(second.logger.lines.filter((l) => l.level === 'error'))).toBe(201);
  });

  it('gives a PUT that stalls a time limit: 408, nothing kept, the server serves on', async () => {
    const { xmppPort, httpPort, dir, logger } = await startUpload({ idleTimeoutMs: 300 });
    const raw = await Raw.login(xmppPort, 'juliet', 'balcony', 'slow');
    const slot = await slotFor(raw, 'slow.bin', 100, 'application/octet-stream');
    const socket: Socket = await rawConnect(httpPort);
    const reply = readUntilClose(socket, 15_000);
    socket.write(`PUT ${pathOf(slot.put)} HTTP/1.1\r\nHost: x\r\nAuthorization: ${slot.authorization}\r\nContent-Length: 100\r\n\r\n`);
    socket.write('x'.repeat(10));
    const slow = parseResponse((await reply).data);
    socket.destroy();
    expect(slow.status).toBe(408);
    expect((await filesUnder(dir)).filter((f) => !f.startsWith('.tmp'))).toEqual([]);
    expect(await filesUnder(dir)).toEqual([]);
    // The slot can be used again at once.
    const ok = await rawHttp(
      httpPort,
      `PUT ${pathOf(slot.put)} HTTP/1.1\nHost: x\nAuthorization: ${slot.authorization}\nContent-Length: 100\nConnection: close\n\n`,
      'y'.repeat(100),
    );
    expect(ok.status).toBe(201);
    expect(logger.lines.filter((line) => line.level === 'error')).toEqual([]);
  });

  it('answers a PUT to a slot being written with 409, and keeps nothing of a PUT whose client leaves mid-body', async () => {
    const { xmppPort, httpPort, dir, logger } = await startUpload();
    const raw = await Raw.login(xmppPort, 'juliet', 'balcony', 'busy');
    const slot = await slotFor(raw, 'busy.bin', 100, 'application/octet-stream');
    const head = `PUT ${pathOf(slot.put)} HTTP/1.1\nHost: x\nAuthorization: ${slot.authorization}\nContent-Length: 100\n`;
    const first = await rawConnect(httpPort);
    first.on('error', () => {});
    first.write(`${head}\n`.replace(/\n/g, '\r\n'));
    first.write('x'.repeat(50));
    // The first PUT is receiving: its temporary file exists.
    for (let i = 0; i < 200 && (await filesUnder(dir)).length === 0; i++) await sleep(25);
    expect((await filesUnder(dir))[0]).toMatch(/^\.tmp\//);
    const second = await rawHttp(httpPort, `${head}Connection: close\n\n`, 'y'.repeat(100));
    expect(second.status).toBe(409);
    // The first client leaves: its half file goes.
    first.destroy();
    for (let i = 0; i < 200 && (await filesUnder(dir)).length > 0; i++) await sleep(25);
    expect(await filesUnder(dir)).toEqual([]);
    // And the slot takes a whole upload afterwards.
    const ok = await rawHttp(httpPort, `${head}Connection: close\n\n`, 'z'.repeat(100));
    expect(ok.status).toBe(201);
    const get = await rawHttp(httpPort, `GET ${pathOf(slot.get)} HTTP/1.1\nHost: x\nConnection: close\n\n`);
    expect(get.body).toBe('z'.repeat(100));
    // Two whole PUTs to a fresh slot at the same moment: exactly one is kept.
    const race = await slotFor(raw, 'race.bin', 1000, 'application/octet-stream');
    const raceHead = `PUT ${pathOf(race.put)} HTTP/1.1\nHost: x\nAuthorization: ${race.authorization}\nContent-Length: 1000\nConnection: close\n\n`;
    const both = await Promise.all([rawHttp(httpPort, raceHead, 'a'.repeat(1000)), rawHttp(httpPort, raceHead, 'b'.repeat(1000))]);
    expect(both.map((answer) => answer.status).sort()).toEqual([201, 409]);
    const kept = await rawHttp(httpPort, `GET ${pathOf(race.get)} HTTP/1.1\nHost: x\nConnection: close\n\n`);
    expect(kept.body).toBe((both[0]?.status === 201 ? 'a' : 'b').repeat(1000));
    expect(logger.lines.filter((line) => line.level === 'error')).toEqual([]);
  });

  it('leaves other paths to the app, and answers other methods with 405', async () => {
    const { httpPort } = await startUpload();
    const page = await rawHttp(httpPort, 'GET / HTTP/1.1\nHost: x\nConnection: close\n\n');
    expect(page.body).toBe('the app\n');
    const del = await rawHttp(httpPort, 'DELETE /upload/AAAAAAAAAAAAAAAAAAAAAA/a HTTP/1.1\nHost: x\nConnection: close\n\n');
    expect(del.status).toBe(405);
    expect(del.head.toLowerCase()).toContain('allow: options, head, get, put');
  });

  it('deletes an account’s files with the account', async () => {
    const { xmppPort, httpPort, dir } = await startUpload();
    const raw = await Raw.login(xmppPort, 'romeo', 'r0meo!', 'gone');
    const slot = await slotFor(raw, 'r.txt', 2, 'text/plain');
    await rawHttp(
      httpPort,
      `PUT ${pathOf(slot.put)} HTTP/1.1\nHost: x\nAuthorization: ${slot.authorization}\nContent-Length: 2\nConnection: close\n\n`,
      'ok',
    );
    expect(await filesUnder(dir)).toHaveLength(1);
    // XEP-0077 account removal.
    await raw.iq('del', "<query xmlns='jabber:iq:register'><remove/></query>", "type='set'");
    for (let i = 0; i < 100 && (await filesUnder(dir)).length > 0; i++) await sleep(50);
    expect(await filesUnder(dir)).toEqual([]);
  });

  it('refuses a bad baseUrl, dir or number at configuration time', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pb-upload-'));
    const code = (make: () => unknown): string | undefined => {
      try {
        make();
      } catch (error) {
        expect(error).toBeInstanceOf(XmppConfigError);
        return (error as XmppConfigError).code;
      }
      return undefined;
    };
    expect(code(() => upload({ baseUrl: 'not a url', dir }))).toBe('PB_ERR_XMPP_UPLOAD_URL');
    expect(code(() => upload({ baseUrl: 'http://chat.example.com/upload/', dir }))).toBe('PB_ERR_XMPP_UPLOAD_URL');
    expect(code(() => upload({ baseUrl: 'ftp://chat.example.com/upload/', dir }))).toBe('PB_ERR_XMPP_UPLOAD_URL');
    expect(code(() => upload({ baseUrl: 'https://chat.example.com/upload/?a=1', dir }))).toBe('PB_ERR_XMPP_UPLOAD_URL');
    expect(code(() => upload({ baseUrl: 'https://u:p@chat.example.com/upload/', dir }))).toBe('PB_ERR_XMPP_UPLOAD_URL');
    expect(code(() => upload({ baseUrl: 'https://chat.example.com/upload', dir }))).toBeUndefined();
    expect(code(() => upload({ baseUrl: 'http://localhost:5000/upload/', dir }))).toBeUndefined();
    const file = join(dir, 'a-file');
    await writeFile(file, 'x');
    expect(code(() => upload({ baseUrl: 'https://chat.example.com/upload/', dir: file }))).toBe('PB_ERR_XMPP_UPLOAD_DIR');
    expect(code(() => upload({ baseUrl: 'https://chat.example.com/upload/', dir, maxFileSize: 0 }))).toBe('PB_ERR_XMPP_OPTION');
    expect(code(() => upload({ baseUrl: 'https://chat.example.com/upload/', dir, secret: 'short' }))).toBe('PB_ERR_XMPP_OPTION');
  });
});

// A 2×1 PNG (red, blue).
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAIAAAABCAIAAAB7QOjdAAAADUlEQVR4nGP4zwAE/wEHAAH/4iOeWQAAAABJRU5ErkJggg==', 'base64');

describe('a web client on another origin (Chromium, playwright-core)', () => {
  it('passes the CORS preflight, PUTs a picture with the slot’s header, and shows it in an <img>', async () => {
    const { xmppPort, logger } = await startUpload();
    const raw = await Raw.login(xmppPort, 'juliet', 'balcony', 'web');
    const slot = await slotFor(raw, 'dot.png', PNG.length, 'image/png');
    // The page comes from another origin (its own server), as a web client hosted elsewhere.
    const pageServer = createServer((_req, res) => {
      res.setHeader('content-type', 'text/html; charset=utf-8');
      res.end('<!doctype html><title>client</title>');
    });
    pageServer.listen(0, '127.0.0.1');
    await once(pageServer, 'listening');
    const pagePort = (pageServer.address() as AddressInfo).port;
    const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu'] });
    try {
      const page = await browser.newPage();
      await page.goto(`http://localhost:${pagePort}/`);
      // The page's script (a string: the tests compile without the DOM library).
      const script = `(async ({ put, get, authorization, png }) => {
        const body = Uint8Array.from(atob(png), (c) => c.charCodeAt(0));
        const uploaded = await fetch(put, { method: 'PUT', headers: { Authorization: authorization, 'Content-Type': 'image/png' }, body });
        const image = new Image();
        const shown = new Promise((resolve, reject) => {
          image.onload = () => resolve({ width: image.naturalWidth, height: image.naturalHeight });
          image.onerror = () => reject(new Error('the image did not load'));
        });
        image.src = get;
        document.body.append(image);
        const size = await shown;
        const read = await fetch(get);
        return {
          put: uploaded.status,
          size,
          status: read.status,
          type: read.headers.get('content-type'),
          disposition: read.headers.get('content-disposition'),
          bytes: (await read.arrayBuffer()).byteLength,
        };
      })(${JSON.stringify({ put: slot.put, get: slot.get, authorization: slot.authorization, png: PNG.toString('base64') })})`;
      const result: unknown = await page.evaluate(script);
      expect(new URL(slot.put).origin).not.toBe(`http://localhost:${pagePort}`);
      expect(result).toEqual({
        put: 201,
        size: { width: 2, height: 1 },
        status: 200,
        type: 'image/png',
        disposition: "inline; filename*=UTF-8''dot.png",
        bytes: PNG.length,
      });
    } finally {
      await browser.close();
      pageServer.close();
    }
    expect(logger.lines.filter((line) => line.level === 'error')).toEqual([]);
  });
});

const SLIXMPP_UPLOAD = String.raw`
import asyncio, json, ssl, sys
import slixmpp

HOST, PORT, FILE = sys.argv[1], int(sys.argv[2]), sys.argv[3]

class Client(slixmpp.ClientXMPP):
    def __init__(self):
        super().__init__('juliet@localhost/slix', 'balcony')
        self.ssl_context = ssl.create_default_context()
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.done = asyncio.get_event_loop().create_future()
        self.register_plugin('xep_0030')
        self.register_plugin('xep_0363')
        self.add_event_handler('session_start', self.start)
        self.add_event_handler('failed_auth', lambda _: self.done.done() or self.done.set_exception(RuntimeError('auth failed')))

    async def discover(self):
        # What xep_0363's find_upload_service does: slixmpp 1.8's get_info_from_domain passes bare
        # coroutines to asyncio.wait, which Python 3.11 refuses, so the same walk is done here.
        items = await self['xep_0030'].get_items(jid='localhost', timeout=20)
        for jid, _node, _name in items['disco_items']['items']:
            info = await self['xep_0030'].get_info(jid=jid, timeout=20)
            if ('store', 'file') in [(i[0], i[1]) for i in info['disco_info']['identities']] and \
                    'urn:xmpp:http:upload:0' in info['disco_info']['features']:
                for form in info['disco_info'].iterables:
                    values = form['values']
                    if values.get('FORM_TYPE') == ['urn:xmpp:http:upload:0']:
                        self['xep_0363'].max_file_size = int(values['max-file-size'])
                self['xep_0363'].upload_service = info['from']
                return
        raise RuntimeError('no upload service')

    async def start(self, _):
        try:
            await self.discover()
            url = await self['xep_0363'].upload_file(FILE, content_type='image/png', timeout=20)
            try:
                await self['xep_0363'].upload_file(FILE, size=2 * 1024 ** 3, content_type='image/png', timeout=20)
                too_big = None
            except Exception as error:
                too_big = type(error).__name__
            self.done.set_result({'url': url, 'too_big': too_big, 'max': self['xep_0363'].max_file_size})
        except Exception as error:
            self.done.set_exception(error)

async def main():
    client = Client()
    client.connect((HOST, PORT))
    try:
        result = await asyncio.wait_for(client.done, 30)
    finally:
        client.disconnect()
    print(json.dumps(result))

asyncio.run(main())
`;

describe('slixmpp (Debian python3-slixmpp, xep_0363 over aiohttp)', () => {
  it('finds the service, uploads a file end to end, and is told a 2 GB file is too big', async () => {
    const { xmppPort } = await startUpload();
    const work = await mkdtemp(join(tmpdir(), 'pb-upload-slix-'));
    const script = join(work, 'upload.py');
    await writeFile(script, SLIXMPP_UPLOAD);
    const picture = join(work, 'picture.png');
    const bytes = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, ...Array.from({ length: 5000 }, (_, i) => i & 0xff)]);
    await writeFile(picture, bytes);
    const { stdout } = await run('/usr/bin/python3', [script, '127.0.0.1', String(xmppPort), picture], { timeout: 60_000 });
    const result = JSON.parse(stdout.trim().split('\n').pop() as string) as { url: string; too_big: string | null; max: number };
    expect(result.max).toBe(1024 * 1024);
    expect(result.too_big).toBe('FileTooBig');
    expect(result.url).toMatch(/\/upload\/[A-Za-z0-9_-]{22}\/picture\.png$/);
    const response = await fetch(result.url);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('image/png');
    expect(Buffer.from(await response.arrayBuffer())).toEqual(bytes);
  });
});
