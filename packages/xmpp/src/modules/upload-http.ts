// The HTTP side of XEP-0363 (see upload.ts): PUT into a slot with its Authorization token, GET and
// HEAD of uploaded files, OPTIONS for browsers' CORS preflight. Fetch-style (Request in, Response
// out), for `httpAdapter({ fetch })`.

import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { type FileHandle, mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { join, relative, resolve, sep } from 'node:path';
import { Readable } from 'node:stream';
import type { Logger } from '@portbind/core';
import { diskName, type UploadRecord, validContentType, verifyToken } from './upload-util.js';

/** What the HTTP endpoint needs from the module. */
export interface UploadHttpContext {
  readonly dir: string;
  readonly now: () => number;
  readonly maxFileSize: number;
  readonly expiresAfterMs: number;
  readonly putTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly logger: Logger;
  key(): Promise<Buffer>;
  record(id: string): Promise<UploadRecord | undefined>;
  /** A PUT completed: the record learns the content type when the slot named none. */
  completed(record: UploadRecord, type: string | undefined): Promise<void>;
  sweep(): Promise<number>;
}

const SLOT_ID = /^[A-Za-z0-9_-]{22}$/;
const CORS = {
  'access-control-allow-origin': '*',
  'access-control-expose-headers': 'Content-Disposition, Content-Range, ETag',
};
// What a downloaded file may do when a browser opens it: nothing active (XEP-0363 §9.1, and the
// `sandbox` directive: no scripts, no forms, a unique origin even if the type were HTML).
const DOWNLOAD_CSP = "default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'; sandbox";
/** Types shown in the browser (`inline`); everything else is `attachment` (HTML, SVG, XML, scripts, PDF…). */
const INLINE =
  /^(?:image\/(?:png|jpeg|gif|webp|avif|bmp|heic|heif)|video\/[!#$%&'*+.^_`|~0-9a-z-]+|audio\/[!#$%&'*+.^_`|~0-9a-z-]+|text\/plain)$/;

/** Slots being written now: a second PUT to one of them is a conflict. */
const writing = new Set<string>();

export function uploadFetch(context: UploadHttpContext, request: Request, rest: string): Promise<Response> {
  return handle(context, request, rest).catch((error: unknown) => {
    context.logger.error({ err: error, method: request.method }, 'upload: request failed');
    return text(500, 'Internal Server Error');
  });
}

async function handle(context: UploadHttpContext, request: Request, rest: string): Promise<Response> {
  switch (request.method) {
    case 'OPTIONS':
      return new Response(null, {
        status: 204,
        headers: {
          ...CORS,
          'access-control-allow-methods': 'OPTIONS, HEAD, GET, PUT',
          'access-control-allow-headers': 'Authorization, Content-Type',
          'access-control-max-age': '86400',
        },
      });
    case 'PUT':
      return put(context, request, rest);
    case 'GET':
    case 'HEAD':
      return get(context, request, rest);
    default:
      return text(405, 'Method Not Allowed', { allow: 'OPTIONS, HEAD, GET, PUT' });
  }
}

/** `<slot id>/<file name>` of a request path (after the base path), or undefined. */
function slotPath(rest: string): { id: string; name: string } | undefined {
  const slash = rest.indexOf('/');
  if (slash === -1) return undefined;
  const id = rest.slice(0, slash);
  if (!SLOT_ID.test(id)) return undefined;
  let name: string;
  try {
    name = decodeURIComponent(rest.slice(slash + 1));
  } catch {
    return undefined;
  }
  return { id, name };
}

/** The file of a slot, checked to lie inside `dir`. */
function fileOf(dir: string, record: UploadRecord): string {
  const file = resolve(dir, record.id, diskName(record.name));
  const inside = relative(dir, file);
  if (inside.startsWith('..') || inside.startsWith(sep) || !inside.includes(sep)) throw new Error(`upload path outside ${dir}: ${file}`);
  return file;
}

async function put(context: UploadHttpContext, request: Request, rest: string): Promise<Response> {
  const path = slotPath(rest);
  if (path === undefined) return text(404, 'Not Found');
  const authorization = request.headers.get('authorization') ?? '';
  const token = /^Bearer ([A-Za-z0-9_.-]+)$/.exec(authorization.trim())?.[1];
  if (token === undefined) return text(401, 'Missing or malformed Authorization header', { 'www-authenticate': 'Bearer' });
  const claims = verifyToken(await context.key(), token);
  if (claims === undefined || claims.s !== path.id) return text(403, 'Unauthorized or invalid token');
  if (claims.e <= context.now()) return text(403, 'The upload slot has expired');
  const record = await context.record(path.id);
  if (record === undefined || record.name !== path.name) return text(403, 'No such upload slot');
  const size = claims.n;

  // XEP-0363 §6: the body must be the slot's size and type.
  const declared = request.headers.get('content-length');
  if (declared !== null) {
    const length = /^\d{1,16}$/.test(declared) ? Number(declared) : Number.NaN;
    if (!Number.isSafeInteger(length)) return text(400, 'Invalid Content-Length', { connection: 'close' });
    if (length > size) return text(413, `The slot is for ${size} bytes, not ${length}`, { connection: 'close' });
    if (length < size) return text(400, `The slot is for ${size} bytes, not ${length}`, { connection: 'close' });
  }
  const contentType = request.headers.get('content-type') ?? undefined;
  if (claims.t !== null && contentType !== undefined && essence(contentType) !== essence(claims.t)) {
    return text(400, `The slot is for Content-Type ${claims.t}, not ${contentType}`, { connection: 'close' });
  }
  const file = fileOf(context.dir, record);
  // Claimed before any await: two PUTs arriving together cannot both pass.
  if (writing.has(path.id)) return text(409, 'An upload to this slot is in progress', { connection: 'close' });
  writing.add(path.id);
  try {
    if (await exists(file)) return text(409, 'Upload already completed', { connection: 'close' });
    return await receive(context, request, record, size, file, claims.t === null ? contentType : undefined);
  } finally {
    writing.delete(path.id);
  }
}

/** Stream the body into a temporary file, then rename it into place: no half file is ever served. */
async function receive(
  context: UploadHttpContext,
  request: Request,
  record: UploadRecord,
  size: number,
  file: string,
  newType: string | undefined,
): Promise<Response> {
  const tmp = join(context.dir, '.tmp', `${record.id}.${randomBytes(6).toString('hex')}`);
  await mkdir(join(context.dir, '.tmp'), { recursive: true, mode: 0o700 });
  const handle: FileHandle = await open(tmp, 'wx', 0o600);
  let kept = false;
  const reader = request.body?.getReader();
  const deadline = Date.now() + context.putTimeoutMs;
  try {
    let received = 0;
    if (reader !== undefined) {
      for (;;) {
        const next = await readWithin(reader, Math.min(context.idleTimeoutMs, deadline - Date.now()));
        if (next === 'timeout') {
          context.logger.debug({ slot: record.id, received }, 'upload: PUT too slow');
          return text(408, 'The upload took too long', { connection: 'close' });
        }
        if (next.done) break;
        received += next.value.byteLength;
        if (received > size) return text(413, `The slot is for ${size} bytes`, { connection: 'close' });
        await handle.write(next.value);
      }
    }
    if (received !== size) return text(400, `The slot is for ${size} bytes, ${received} arrived`, { connection: 'close' });
    await handle.sync();
    await handle.close();
    await mkdir(join(context.dir, record.id), { mode: 0o700 }).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'EEXIST') throw error;
    });
    await rename(tmp, file);
    kept = true;
    // A slot without a type takes the PUT's, if it is a media type (else application/octet-stream).
    const type = newType?.trim();
    await context.completed(record, type !== undefined && validContentType(type) ? type : undefined);
    context.logger.debug({ slot: record.id, size }, 'upload: file stored');
    return new Response(null, { status: 201, headers: { ...CORS } });
  } catch (error) {
    // The client went away mid-body: nothing to answer, nothing kept.
    if (!kept && request.signal.aborted) return text(400, 'The upload was cut short', { connection: 'close' });
    throw error;
  } finally {
    if (!kept) {
      reader?.releaseLock();
      await handle.close().catch(() => {});
      await rm(tmp, { force: true });
    }
  }
}

type ReadResult = { done: true; value?: undefined } | { done: false; value: Uint8Array } | 'timeout';

function readWithin(reader: ReadableStreamDefaultReader<Uint8Array>, ms: number): Promise<ReadResult> {
  if (ms <= 0) return Promise.resolve('timeout');
  return new Promise<ReadResult>((resolvePromise, reject) => {
    const timer = setTimeout(() => resolvePromise('timeout'), ms);
    reader.read().then(
      (result) => {
        clearTimeout(timer);
        resolvePromise(result.done ? { done: true } : { done: false, value: result.value });
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

async function get(context: UploadHttpContext, request: Request, rest: string): Promise<Response> {
  const path = slotPath(rest);
  if (path === undefined) return text(404, 'Not Found');
  const record = await context.record(path.id);
  if (record === undefined || record.name !== path.name) return text(404, 'Not Found');
  const expires = record.when + context.expiresAfterMs;
  const now = context.now();
  if (expires <= now) return text(404, 'Not Found');
  const file = fileOf(context.dir, record);
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(file);
  } catch {
    return text(404, 'Not Found');
  }
  const type = record.type ?? 'application/octet-stream';
  const etag = `"${record.id}"`;
  const maxAge = Number.isFinite(expires) ? Math.max(0, Math.floor((expires - now) / 1000)) : 31_536_000;
  const headers: Record<string, string> = {
    ...CORS,
    'content-type': type,
    'content-disposition': `${INLINE.test(essence(type)) ? 'inline' : 'attachment'}; filename*=UTF-8''${encodeRfc5987(record.name)}`,
    'x-content-type-options': 'nosniff',
    'content-security-policy': DOWNLOAD_CSP,
    'referrer-policy': 'no-referrer',
    'cross-origin-resource-policy': 'cross-origin',
    'cache-control': `public, max-age=${Math.min(maxAge, 31_536_000)}, immutable`,
    etag,
    'last-modified': new Date(info.mtimeMs).toUTCString(),
    'accept-ranges': 'bytes',
  };
  const match = request.headers.get('if-none-match');
  if (match?.split(',').some((tag) => tag.trim().replace(/^W\//, '') === etag || tag.trim() === '*')) {
    return new Response(null, { status: 304, headers: pick(headers, ['etag', 'cache-control', 'last-modified', ...Object.keys(CORS)]) });
  }
  const total = info.size;
  let start = 0;
  let end = total - 1;
  let status = 200;
  const range = request.headers.get('range');
  if (range !== null && (request.headers.get('if-range') === null || request.headers.get('if-range') === etag)) {
    const parsed = /^bytes=(\d{0,16})-(\d{0,16})$/.exec(range.trim());
    if (parsed !== null && (parsed[1] !== '' || parsed[2] !== '')) {
      if (parsed[1] === '') {
        start = Math.max(0, total - Number(parsed[2]));
      } else {
        start = Number(parsed[1]);
        if (parsed[2] !== '') end = Math.min(end, Number(parsed[2]));
      }
      if (start >= total || start > end || (parsed[1] === '' && Number(parsed[2]) === 0)) {
        return text(416, 'Range Not Satisfiable', { ...CORS, 'content-range': `bytes */${total}` });
      }
      status = 206;
      headers['content-range'] = `bytes ${start}-${end}/${total}`;
    }
    // Several ranges, or another unit: the whole file (RFC 9110 §14.2 lets a server ignore Range).
  }
  headers['content-length'] = String(total === 0 ? 0 : end - start + 1);
  if (request.method === 'HEAD' || total === 0) return new Response(null, { status, headers });
  const stream = createReadStream(file, { start, end });
  return new Response(Readable.toWeb(stream) as ReadableStream<Uint8Array>, { status, headers });
}

function pick(headers: Record<string, string>, names: readonly string[]): Record<string, string> {
  const picked: Record<string, string> = {};
  for (const name of names) if (headers[name] !== undefined) picked[name] = headers[name];
  return picked;
}

/** `type/subtype` of a media type, lowercase, without parameters. */
function essence(type: string): string {
  return (type.split(';')[0] ?? '').trim().toLowerCase();
}

function encodeRfc5987(value: string): string {
  return encodeURIComponent(value).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch {
    return false;
  }
}

function text(status: number, body: string, headers: Record<string, string> = {}): Response {
  return new Response(`${body}\n`, {
    status,
    headers: { ...CORS, 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', ...headers },
  });
}
