// HTTP File Upload (XEP-0363 v1.2.0, urn:xmpp:http:upload:0), as Prosody's mod_http_file_share
// does it: an upload service on a domain of its own (upload.DOMAIN) hands out slots — a PUT URL
// with an Authorization header, and the GET URL the file will be served from — and the same
// process serves those URLs on its HTTP binding (`upload.fetch`, mounted next to the XMPP
// WebSocket). The Authorization token is an HMAC over the slot (id, size, content type, expiry,
// owner), so it needs no state and survives restarts; what was handed out is kept in the
// 'upload' archive store (owner '', `with` the uploader), which the per-user daily quota and the
// expiry read. Files live under `dir` as `<random slot id>/<sanitized file name>`, written to a
// temporary file and renamed when complete.

import { randomBytes } from 'node:crypto';
import { accessSync, constants, mkdirSync, statSync } from 'node:fs';
import { readdir, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { XmppConfigError } from '../config-error.js';
import { type XmlElement, xml } from '../element.js';
import type { Jid } from '../jid.js';
import type { ModuleApi, StanzaEvent, XmppModule } from '../module.js';
import { NS_DISCO_INFO, NS_DISCO_ITEMS, NS_HTTP_UPLOAD } from '../namespaces.js';
import { StanzaErrorException } from '../stanza-error.js';
import type { ArchiveItem, ArchiveStore } from '../stores/types.js';
import { buildDataForm } from './data-form.js';
import { type UploadHttpContext, uploadFetch } from './upload-http.js';
import { parseRecord, type SlotClaims, signToken, type UploadRecord, validContentType, validFilename } from './upload-util.js';

const MiB = 1024 * 1024;
const DAY_MS = 86_400_000;

export interface UploadOptions {
  /**
   * The public URL prefix of the upload endpoint, as clients reach it: `https://chat.example.com/upload/`.
   * Slots are `<baseUrl><slot id>/<file name>`, and `upload.fetch` answers requests under its path
   * (`/upload/`). It must be `https:` (XEP-0363 §4: the host MUST provide TLS) — `http:` only on a
   * loopback host (`localhost`, `127.0.0.1`, `[::1]`), for development. No default: the server cannot
   * know the address a reverse proxy or a port mapping gives it. A function is asked at each slot
   * (for a port only known once bound); its answer is checked then.
   */
  baseUrl: string | (() => string);
  /** The service's domain. Default `upload.` + the server's domain. */
  domain?: string;
  /** The service's name in disco#items and its disco#info identity. Default 'HTTP File Upload'. */
  name?: string;
  /** Where files are kept. Default `DATA_DIR/uploads` (DATA_DIR defaults to ./data); created 0700. */
  dir?: string;
  /** The largest file, in bytes, announced in disco#info (XEP-0128). Default 100 MiB. */
  maxFileSize?: number;
  /** Bytes one account may be handed slots for within 24 hours. Default 10 × maxFileSize. */
  dailyQuota?: number;
  /** Slots one account may be handed within 24 hours (0-byte files count too). Default 1000. */
  dailySlots?: number;
  /** Bytes of all live files together (slots handed out and not yet expired). Default no limit. */
  totalQuota?: number;
  /** Days a file is kept (from its slot request); `null` keeps files forever. Default 7, as Prosody. */
  expiresAfterDays?: number | null;
  /** How often expired files are deleted, in ms; the first pass runs at start. Default one hour. */
  expireIntervalMs?: number;
  /** How long a slot's PUT URL is valid, in ms (XEP-0363 §7 recommends about 300 s). Default 300 000. */
  slotLifetimeMs?: number;
  /** The longest a PUT may take, body included, in ms: then 408 and nothing is kept. Default 600 000. */
  putTimeoutMs?: number;
  /** The longest a PUT's body may stall without a byte, in ms: then 408. Default 30 000. */
  idleTimeoutMs?: number;
  /**
   * The key tokens are signed with (at least 32 characters). Default: a random key made once and
   * kept in the 'upload' key-value store, so slots stay valid across restarts.
   */
  secret?: string;
  /** The clock (ms since the epoch), for tests. Default `Date.now`. */
  now?: () => number;
}

/** The upload module: an {@link XmppModule} and the HTTP endpoint to mount. */
export interface UploadModule extends XmppModule {
  /** The service's domain (known once the module is set up; until then the default's form `upload.*`). */
  readonly domain: string;
  /** The largest file, in bytes: give the HTTP binding at least this `bodyLimit`. */
  readonly maxFileSize: number;
  /** The directory files are kept in (absolute). */
  readonly dir: string;
  /**
   * The HTTP endpoint, a fetch-style handler for `httpAdapter({ fetch })`: a request under the
   * path of `baseUrl` gets its answer (PUT, GET, HEAD, OPTIONS); any other request `undefined`,
   * for the app's own routes.
   */
  fetch(request: Request): Promise<Response> | undefined;
  /** Delete expired files now (also done at start and every `expireIntervalMs`); returns how many. */
  sweep(): Promise<number>;
}

const SLOT_ID = /^[A-Za-z0-9_-]{22}$/;
/**
 * XEP-0363 HTTP File Upload: `upload({ baseUrl })` serves `upload.DOMAIN`; mount `fetch` on the
 * HTTP binding. Throws `XmppConfigError` `PB_ERR_XMPP_UPLOAD_URL` for a bad `baseUrl`,
 * `PB_ERR_XMPP_UPLOAD_DIR` for a directory it cannot write, `PB_ERR_XMPP_OPTION` for a bad number.
 */
export function upload(options: UploadOptions): UploadModule {
  if (options === undefined || options === null || typeof options !== 'object') {
    throw new XmppConfigError(
      'PB_ERR_XMPP_UPLOAD_URL',
      'upload: give options with baseUrl, e.g. upload({ baseUrl: "https://chat.example.com/upload/" })',
    );
  }
  const maxFileSize = whole('maxFileSize', options.maxFileSize ?? 100 * MiB, 1);
  const dailyQuota = whole('dailyQuota', options.dailyQuota ?? 10 * maxFileSize, 0, true);
  const dailySlots = whole('dailySlots', options.dailySlots ?? 1000, 0, true);
  const totalQuota = whole('totalQuota', options.totalQuota ?? Number.POSITIVE_INFINITY, 0, true);
  const expiresAfterMs =
    options.expiresAfterDays === null ? Number.POSITIVE_INFINITY : positive('expiresAfterDays', options.expiresAfterDays ?? 7) * DAY_MS;
  const expireIntervalMs = positive('expireIntervalMs', options.expireIntervalMs ?? 3_600_000);
  const slotLifetimeMs = positive('slotLifetimeMs', options.slotLifetimeMs ?? 300_000);
  const putTimeoutMs = positive('putTimeoutMs', options.putTimeoutMs ?? 600_000);
  const idleTimeoutMs = positive('idleTimeoutMs', options.idleTimeoutMs ?? 30_000);
  if (options.secret !== undefined && (typeof options.secret !== 'string' || options.secret.length < 32)) {
    throw new XmppConfigError('PB_ERR_XMPP_OPTION', 'upload: secret must be a string of at least 32 characters');
  }
  const now = options.now ?? Date.now;
  const serviceName = options.name ?? 'HTTP File Upload';
  // A fixed baseUrl is checked now; a function's answer when it changes (each slot, each request).
  const fixedBase = typeof options.baseUrl === 'function' ? undefined : checkBaseUrl(options.baseUrl);
  let lastBase: { text: string; url: URL } | undefined;
  const baseUrl = (): URL => {
    if (fixedBase !== undefined) return fixedBase;
    const text = (options.baseUrl as () => string)();
    if (lastBase?.text !== text) lastBase = { text, url: checkBaseUrl(text) };
    return lastBase.url;
  };
  const dir = resolve(options.dir ?? join(process.env.DATA_DIR ?? 'data', 'uploads'));
  prepareDir(dir);

  let context: UploadHttpContext | undefined;
  let domain = options.domain ?? 'upload.*';

  const module: UploadModule = {
    name: 'upload',
    get domain() {
      return domain;
    },
    maxFileSize,
    dir,
    fetch(request) {
      let base: URL;
      try {
        base = baseUrl();
      } catch {
        return undefined;
      }
      const path = new URL(request.url).pathname;
      if (!path.startsWith(base.pathname)) return undefined;
      if (context === undefined) return Promise.resolve(new Response('Service Unavailable\n', { status: 503 }));
      return uploadFetch(context, request, path.slice(base.pathname.length));
    },
    async sweep() {
      return context === undefined ? 0 : context.sweep();
    },
    setup(api) {
      domain = options.domain ?? `upload.${api.domain}`;
      const files = api.archive('upload');
      const settings = api.keyValue('upload');
      let secret: Promise<Buffer> | undefined;
      const key = (): Promise<Buffer> => {
        secret ??= loadSecret(settings, options.secret).catch((error: unknown) => {
          secret = undefined;
          throw error;
        });
        return secret;
      };
      // Recently used records, for downloads (a record changes only here).
      const records = new Map<string, UploadRecord | null>();
      const remember = (id: string, record: UploadRecord | null): void => {
        records.delete(id);
        records.set(id, record);
        if (records.size > 1000) records.delete(records.keys().next().value as string);
      };
      // Bytes of all live slots: counted at start when there is a total quota.
      let total: Promise<number> | undefined;
      const totalBytes = (): Promise<number> => {
        total ??= sumAll(files).catch((error: unknown) => {
          total = undefined;
          throw error;
        });
        return total;
      };
      const adjustTotal = (delta: number): void => {
        if (total !== undefined) total = total.then((bytes) => Math.max(0, bytes + delta));
      };
      // One slot request per account at a time, so two at once cannot both pass the quota.
      const queues = new Map<string, Promise<unknown>>();

      async function record(id: string): Promise<UploadRecord | undefined> {
        const cached = records.get(id);
        if (cached !== undefined) return cached ?? undefined;
        const { items } = await files.query('', { ids: [id] });
        const found = items[0] === undefined ? undefined : parseRecord(items[0]);
        remember(id, found ?? null);
        return found;
      }

      async function removeFiles(items: readonly ArchiveItem[]): Promise<string[]> {
        const removed: string[] = [];
        for (const item of items) {
          if (!SLOT_ID.test(item.id)) continue;
          try {
            await rm(join(dir, item.id), { recursive: true, force: true });
            removed.push(item.id);
            remember(item.id, null);
            const size = parseRecord(item)?.size ?? 0;
            adjustTotal(-size);
          } catch (error) {
            api.logger.error({ err: error, slot: item.id }, 'upload: could not delete an expired file');
          }
        }
        return removed;
      }

      async function sweep(): Promise<number> {
        let deleted = 0;
        if (expiresAfterMs !== Number.POSITIVE_INFINITY) {
          const boundary = now() - expiresAfterMs;
          for (;;) {
            const { items } = await files.query('', { end: boundary, max: 200 });
            if (items.length === 0) break;
            const removed = await removeFiles(items);
            deleted += removed.length;
            await files.delete('', { ids: removed });
            if (removed.length < items.length) break; // Some could not be deleted: try again next time.
          }
          if (deleted > 0) api.logger.info({ files: deleted }, 'upload: expired files deleted');
        }
        await sweepTemporary();
        return deleted;
      }

      // Temporary files of PUTs that never finished (a crash, a stop): older than any PUT may take.
      async function sweepTemporary(): Promise<void> {
        const tmp = join(dir, '.tmp');
        let names: string[];
        try {
          names = await readdir(tmp);
        } catch {
          return;
        }
        const limit = Date.now() - putTimeoutMs - 60_000;
        for (const name of names) {
          const file = join(tmp, name);
          try {
            if ((await stat(file)).mtimeMs < limit) await rm(file, { force: true });
          } catch {
            // Gone meanwhile.
          }
        }
      }

      context = {
        dir,
        now,
        maxFileSize,
        expiresAfterMs,
        putTimeoutMs,
        idleTimeoutMs,
        logger: api.logger,
        key,
        record,
        async completed(rec, type) {
          if (rec.type === undefined && type !== undefined) {
            const updated = { ...rec, type };
            await files.append('', toItem(updated));
            remember(rec.id, updated);
          }
        },
        sweep,
      };

      const service = api.domainService(domain, {
        name: serviceName,
        async stanza(event, kind) {
          if (kind === 'presence') return;
          const type = event.stanza.attr('type');
          if (kind === 'message') {
            if (type !== 'error') throw new StanzaErrorException('service-unavailable', 'The upload service takes no messages');
            return;
          }
          if (type === 'result' || type === 'error') return;
          const payload = event.stanza.getChildren()[0];
          if (payload === undefined || event.to.local !== '' || event.to.resource !== '') {
            throw new StanzaErrorException('service-unavailable');
          }
          let answer: XmlElement | undefined;
          if (payload.xmlns === NS_DISCO_INFO && payload.local === 'query' && type === 'get') answer = discoInfo(payload);
          else if (payload.xmlns === NS_DISCO_ITEMS && payload.local === 'query' && type === 'get') {
            if (payload.attr('node') !== undefined) throw new StanzaErrorException('item-not-found');
            answer = xml('query', { xmlns: NS_DISCO_ITEMS });
          } else if (payload.xmlns === NS_HTTP_UPLOAD && payload.local === 'request') {
            if (type !== 'get') throw new StanzaErrorException('bad-request', 'A slot request is an IQ of type get');
            answer = await serialized(event.from.bare, () => slot(event, payload));
          } else if (payload.xmlns === 'urn:xmpp:ping' && payload.local === 'ping' && type === 'get') answer = undefined;
          else throw new StanzaErrorException('service-unavailable');
          await api.route(
            xml(
              'iq',
              { type: 'result', id: event.stanza.attr('id'), from: domain, to: event.from.toString() },
              ...(answer ? [answer] : []),
            ),
          );
        },
      });

      function discoInfo(query: XmlElement): XmlElement {
        if (query.attr('node') !== undefined) throw new StanzaErrorException('item-not-found');
        return xml(
          'query',
          { xmlns: NS_DISCO_INFO },
          xml('identity', { category: 'store', type: 'file', name: serviceName }),
          xml('feature', { var: NS_DISCO_INFO }),
          xml('feature', { var: NS_HTTP_UPLOAD }),
          buildDataForm({
            type: 'result',
            formType: NS_HTTP_UPLOAD,
            fields: [{ var: 'max-file-size', values: [String(maxFileSize)] }],
          }),
        );
      }

      function serialized<T>(owner: string, work: () => Promise<T>): Promise<T> {
        const previous = queues.get(owner) ?? Promise.resolve();
        const next = previous.then(work, work);
        const tail = next.catch(() => {});
        queues.set(owner, tail);
        void tail.then(() => {
          if (queues.get(owner) === tail) queues.delete(owner);
        });
        return next;
      }

      async function slot(event: StanzaEvent, request: XmlElement): Promise<XmlElement> {
        const from: Jid = event.from;
        if (from.local === '' || from.domain !== api.domain) {
          throw new StanzaErrorException('forbidden', 'Only accounts of this server may upload');
        }
        const filename = request.attr('filename');
        if (filename === undefined || !validFilename(filename)) throw new StanzaErrorException('bad-request', 'Invalid filename');
        const sizeText = request.attr('size') ?? '';
        const size = /^\d{1,16}$/.test(sizeText) ? Number(sizeText) : Number.NaN;
        if (!Number.isSafeInteger(size)) throw new StanzaErrorException('bad-request', 'File size must be a whole number of bytes');
        if (size > maxFileSize) {
          throw new StanzaErrorException(
            'not-acceptable',
            `File too large. The maximum file size is ${maxFileSize} bytes`,
            xml('file-too-large', { xmlns: NS_HTTP_UPLOAD }, xml('max-file-size', {}, String(maxFileSize))),
          );
        }
        const declared = request.attr('content-type');
        const contentType = declared === undefined || declared === '' ? undefined : declared.trim();
        if (contentType !== undefined && !validContentType(contentType)) {
          throw new StanzaErrorException('bad-request', 'Invalid content type');
        }
        let base: URL;
        try {
          base = baseUrl();
        } catch (error) {
          api.logger.error({ err: error }, 'upload: baseUrl');
          throw new StanzaErrorException('internal-server-error');
        }
        const owner = from.bare;
        const at = now();
        if (totalQuota !== Number.POSITIVE_INFINITY && (await totalBytes()) + size > totalQuota) {
          api.logger.warn({ totalQuota }, 'upload: the total quota is reached');
          throw new StanzaErrorException('resource-constraint', 'The server has no room for more files now');
        }
        const { items } = await files.query('', { with: owner, start: at - DAY_MS + 1 });
        let used = 0;
        for (const item of items) used += parseRecord(item)?.size ?? 0;
        if (used + size > dailyQuota || items.length + 1 > dailySlots) {
          // The earliest moment enough of the last day's slots have aged out of the window.
          let freedBytes = 0;
          let freedSlots = 0;
          let retry = at + DAY_MS;
          for (const item of items) {
            freedBytes += parseRecord(item)?.size ?? 0;
            freedSlots++;
            if (used - freedBytes + size <= dailyQuota && items.length - freedSlots + 1 <= dailySlots) {
              retry = item.when + DAY_MS;
              break;
            }
          }
          const bytesOver = used + size > dailyQuota;
          throw new StanzaErrorException(
            'resource-constraint',
            bytesOver ? `Quota reached: ${dailyQuota} bytes of uploads a day, ${used} used` : `Quota reached: ${dailySlots} uploads a day`,
            xml('retry', {
              xmlns: NS_HTTP_UPLOAD,
              stamp: new Date(size > dailyQuota ? at + DAY_MS : retry).toISOString().replace(/\.\d{3}Z$/, 'Z'),
            }),
          );
        }
        const id = randomBytes(16).toString('base64url');
        const rec: UploadRecord = { id, owner, when: at, name: filename.normalize('NFC'), size, type: contentType };
        await files.append('', toItem(rec));
        adjustTotal(size);
        remember(id, rec);
        const claims: SlotClaims = { s: id, n: size, t: contentType ?? null, e: at + slotLifetimeMs, o: owner };
        const token = signToken(await key(), claims);
        const url = new URL(`${id}/${encodeURIComponent(rec.name)}`, base).toString();
        api.logger.debug({ owner, size, slot: id }, 'upload: slot handed out');
        return xml(
          'slot',
          { xmlns: NS_HTTP_UPLOAD },
          xml('put', { url }, xml('header', { name: 'Authorization' }, `Bearer ${token}`)),
          xml('get', { url }),
        );
      }

      // An account's files go with it.
      api.hook('account/deleted', async ({ user }) => {
        const owner = `${user}@${api.domain}`;
        for (;;) {
          const { items } = await files.query('', { with: owner, max: 200 });
          if (items.length === 0) break;
          const removed = await removeFiles(items);
          await files.delete('', { ids: removed });
          if (removed.length < items.length) break;
        }
      });

      // Expiry: at start, then every expireIntervalMs.
      let timer: NodeJS.Timeout | undefined;
      let stopped = false;
      const run = (): void => {
        sweep()
          .catch((error: unknown) => api.logger.error({ err: error }, 'upload: expiry failed'))
          .finally(() => {
            if (stopped) return;
            timer = setTimeout(run, expireIntervalMs);
            timer.unref();
          });
      };
      timer = setTimeout(run, 0);
      timer.unref();
      api.onStop(() => {
        stopped = true;
        clearTimeout(timer);
        service.close();
      });
    },
  };
  return module;
}

function toItem(rec: UploadRecord): ArchiveItem {
  return {
    id: rec.id,
    when: rec.when,
    with: rec.owner,
    xml: xml('file', { xmlns: NS_HTTP_UPLOAD, name: rec.name, size: String(rec.size), type: rec.type }).toString(),
  };
}

async function sumAll(files: ArchiveStore): Promise<number> {
  let sum = 0;
  let after: string | undefined;
  for (;;) {
    const { items, complete } = await files.query('', { max: 500, after });
    for (const item of items) sum += parseRecord(item)?.size ?? 0;
    if (complete || items.length === 0) return sum;
    after = (items[items.length - 1] as ArchiveItem).id;
  }
}

async function loadSecret(settings: ReturnType<ModuleApi['keyValue']>, given: string | undefined): Promise<Buffer> {
  if (given !== undefined) return Buffer.from(given, 'utf8');
  const stored = await settings.get('', 'secret');
  if (typeof stored === 'string' && stored.length >= 43) return Buffer.from(stored, 'base64url');
  const made = randomBytes(32).toString('base64url');
  await settings.set('', 'secret', made);
  return Buffer.from(made, 'base64url');
}

const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]']);

/** A usable base URL, ending in '/', or `PB_ERR_XMPP_UPLOAD_URL`. */
function checkBaseUrl(text: unknown): URL {
  const fail = (why: string): never => {
    throw new XmppConfigError(
      'PB_ERR_XMPP_UPLOAD_URL',
      `upload: baseUrl ${JSON.stringify(text)} ${why}; give the public URL prefix of the upload endpoint, e.g. "https://chat.example.com/upload/"`,
    );
  };
  if (typeof text !== 'string' || !URL.canParse(text)) return fail('is not a URL');
  const url = new URL(text);
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && (LOOPBACK.has(url.hostname) || url.hostname.startsWith('127.')))) {
    return fail('must be https: (http: only on a loopback host, for development)');
  }
  if (url.username !== '' || url.password !== '') return fail('must not carry credentials');
  if (url.search !== '' || url.hash !== '') return fail('must have no query or fragment');
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  return url;
}

function prepareDir(dir: string): void {
  try {
    mkdirSync(join(dir, '.tmp'), { recursive: true, mode: 0o700 });
    if (!statSync(dir).isDirectory()) throw new Error('not a directory');
    accessSync(dir, constants.W_OK | constants.X_OK);
  } catch (error) {
    throw new XmppConfigError('PB_ERR_XMPP_UPLOAD_DIR', `upload: cannot keep files in ${dir}: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

function whole(name: string, value: unknown, min: number, infinite = false): number {
  if (typeof value === 'number' && ((Number.isSafeInteger(value) && value >= min) || (infinite && value === Number.POSITIVE_INFINITY))) {
    return value;
  }
  throw new XmppConfigError('PB_ERR_XMPP_OPTION', `upload: ${name} must be a whole number ≥ ${min}, not ${String(value)}`);
}

function positive(name: string, value: unknown): number {
  if (typeof value === 'number' && value > 0 && Number.isFinite(value)) return value;
  throw new XmppConfigError('PB_ERR_XMPP_OPTION', `upload: ${name} must be a number > 0, not ${String(value)}`);
}
