// Helpers of the upload module (upload.ts) shared with its HTTP side (upload-http.ts): slot
// records, signed slot tokens, file names.

import { createHmac, timingSafeEqual } from 'node:crypto';
import { parseXml } from '../parse.js';
import type { ArchiveItem } from '../stores/types.js';

/** One slot handed out, as kept in the 'upload' archive (owner ''). */
export interface UploadRecord {
  id: string;
  /** Bare JID of the uploader. */
  owner: string;
  /** When the slot was handed out (ms). */
  when: number;
  /** The file name the client asked for. */
  name: string;
  size: number;
  /** The declared content type (from the slot request, else the PUT's `Content-Type`). */
  type: string | undefined;
}

/** Signed slot: what the Authorization token carries. */
export interface SlotClaims {
  /** Slot id. */
  s: string;
  /** Size in bytes. */
  n: number;
  /** Declared content type, or null. */
  t: string | null;
  /** PUT valid until (ms). */
  e: number;
  /** Owner (bare JID). */
  o: string;
}

/** Sign slot claims: `<base64url JSON>.<base64url HMAC-SHA256>`. */
export function signToken(key: Buffer, claims: SlotClaims): string {
  const body = Buffer.from(JSON.stringify(claims)).toString('base64url');
  return `${body}.${createHmac('sha256', key).update(body).digest('base64url')}`;
}

/** The claims of a token signed with `key`, or undefined when it is malformed or forged. */
export function verifyToken(key: Buffer, token: string): SlotClaims | undefined {
  if (token.length > 2048) return undefined;
  const dot = token.indexOf('.');
  if (dot < 1) return undefined;
  const body = token.slice(0, dot);
  const given = Buffer.from(token.slice(dot + 1), 'base64url');
  const expected = createHmac('sha256', key).update(body).digest();
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
  try {
    const claims = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as Partial<SlotClaims>;
    if (
      typeof claims.s !== 'string' ||
      typeof claims.n !== 'number' ||
      typeof claims.e !== 'number' ||
      typeof claims.o !== 'string' ||
      (claims.t !== null && typeof claims.t !== 'string')
    ) {
      return undefined;
    }
    return claims as SlotClaims;
  } catch {
    return undefined;
  }
}

// RFC 9110 §8.3.1 media-type: type "/" subtype *( OWS ";" OWS parameter ).
const TOKEN = "[!#$%&'*+.^_`|~0-9A-Za-z-]+";
const MEDIA_TYPE = new RegExp(`^${TOKEN}/${TOKEN}(?:[ \\t]*;[ \\t]*${TOKEN}=(?:${TOKEN}|"[^"\\\\\\x00-\\x1f\\x7f]*"))*$`);

/** A media type (RFC 9110 §8.3.1) of at most 255 characters: what may become a Content-Type header. */
export function validContentType(type: string): boolean {
  return type.length <= 255 && MEDIA_TYPE.test(type);
}

/**
 * A file name a client may ask for: 1–255 bytes of UTF-8, no `/` or `\`, no control characters
 * (NUL included), not `.` or `..`. (As Prosody, a `/` is refused rather than cut away.)
 */
export function validFilename(name: string): boolean {
  if (name === '' || name === '.' || name === '..' || Buffer.byteLength(name) > 255) return false;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused.
  return !/[/\\\u0000-\u001f\u007f]/.test(name) && !/\p{Cs}/u.test(name);
}

/**
 * The name a file gets on disk: letters, digits, `.`, `-`, `_` and spaces of the client's name,
 * anything else `_`, no leading dot, at most 120 bytes (the extension kept), never empty.
 */
export function diskName(name: string): string {
  let safe = name
    .normalize('NFC')
    .replace(/[^\p{L}\p{N}._ -]/gu, '_')
    .replace(/^[. ]+/, '')
    .replace(/[. ]+$/, '');
  if (safe === '') safe = 'file';
  if (Buffer.byteLength(safe) > 120) {
    const dot = safe.lastIndexOf('.');
    const extension = dot > 0 && safe.length - dot <= 16 ? safe.slice(dot) : '';
    let stem = safe.slice(0, safe.length - extension.length);
    while (Buffer.byteLength(stem + extension) > 120) stem = [...stem].slice(0, -1).join('');
    safe = stem + extension;
  }
  return safe;
}

export function parseRecord(item: ArchiveItem): UploadRecord | undefined {
  const element = parseXml(item.xml);
  if (element === undefined) return undefined;
  const size = Number(element.attr('size'));
  const name = element.attr('name');
  if (name === undefined || !Number.isSafeInteger(size)) return undefined;
  return { id: item.id, owner: item.with, when: item.when, name, size, type: element.attr('type') };
}
