/**
 * Port unification: what protocol a new connection speaks, from its first bytes. Pure functions,
 * called again with more bytes while the answer is `more`.
 */

/** The protocols core recognises by their first bytes. */
export type KnownProtocol = 'http' | 'h2c' | 'resp' | 'xmpp';

/** What the first bytes of a connection say. */
export type Sniffed =
  /** Every byte so far could start more than one thing (or a TLS ClientHello is incomplete): read more. */
  | { readonly kind: 'more' }
  /** A whole TLS ClientHello: its SNI host name and ALPN list (RFC 6066 §3, RFC 7301). */
  | { readonly kind: 'tls'; readonly serverName: string | undefined; readonly alpn: readonly string[] }
  /** A plaintext protocol core knows. */
  | { readonly kind: 'protocol'; readonly protocol: KnownProtocol }
  /** None of the above: `reason` says why. */
  | { readonly kind: 'unknown'; readonly reason: string };

const MORE: Sniffed = { kind: 'more' };

/** ALPN protocol ids (IANA registry) of the protocols core knows; a custom protocol's id is its name. */
export const alpnIds: Readonly<Record<string, readonly string[]>> = {
  http: ['http/1.1'],
  h2: ['h2'],
  // Cleartext only (RFC 9113 §3.1): never negotiated over TLS.
  h2c: [],
  xmpp: ['xmpp-client'],
  // Not registered with IANA; accepted when a client offers it.
  resp: ['redis'],
};

const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
/** Enough of the preface to be sure: `PRI * HTTP/2.0\r\n`. */
const H2_DECISIVE = 16;
const XML_DECL = Buffer.from('<?xml', 'latin1');
const STREAM_OPEN = Buffer.from('<stream:stream', 'latin1');
const HTTP_VERSION = Buffer.from('HTTP/1.', 'latin1');
const MAX_METHOD = 24;

/** Largest TLS handshake message core reads before deciding (a ClientHello with post-quantum key shares is ~2 KB). */
export const MAX_CLIENT_HELLO = 16_384;

/**
 * Classify the first bytes of a connection. TLS: a handshake record holding a ClientHello (read
 * whole, however it is split into segments or records). HTTP/1.x: a method, a target and
 * ` HTTP/1.` on the first line. h2c: the prior-knowledge preface `PRI * HTTP/2.0`. RESP: `*`, or a
 * complete inline command line (printable, starting with a letter) that is not HTTP. XMPP:
 * `<?xml` or `<stream:stream`.
 */
export function sniff(bytes: Buffer): Sniffed {
  if (bytes.length === 0) return MORE;
  const first = bytes[0] as number;
  if (first === 0x16) return sniffTls(bytes);
  if (first === 0x2a /* * */) return { kind: 'protocol', protocol: 'resp' };
  if (first === 0x3c /* < */) {
    if (startsWith(bytes, XML_DECL) || startsWith(bytes, STREAM_OPEN)) return { kind: 'protocol', protocol: 'xmpp' };
    if (agrees(bytes, XML_DECL) || agrees(bytes, STREAM_OPEN)) return MORE;
    return { kind: 'unknown', reason: 'a "<" that starts neither <?xml nor <stream:stream' };
  }
  if (agrees(bytes, H2_PREFACE)) {
    return bytes.length >= H2_DECISIVE ? { kind: 'protocol', protocol: 'h2c' } : MORE;
  }
  const http = httpRequestLine(bytes);
  if (http === 'yes') return { kind: 'protocol', protocol: 'http' };
  const inline = inlineCommand(bytes);
  if (inline === 'yes' && http === 'no') return { kind: 'protocol', protocol: 'resp' };
  if (http === 'no' && inline === 'no') return { kind: 'unknown', reason: 'neither TLS, HTTP, h2c, RESP nor XMPP' };
  return MORE;
}

type Maybe = 'yes' | 'no' | 'maybe';

/** `METHOD SP target SP HTTP/1.` — methods are case-sensitive upper-case tokens (RFC 9110 §9.1). */
function httpRequestLine(bytes: Buffer): Maybe {
  let i = 0;
  const n = bytes.length;
  while (i < n) {
    const c = bytes[i] as number;
    if ((c >= 0x41 && c <= 0x5a) || c === 0x2d || c === 0x5f) {
      if (++i > MAX_METHOD) return 'no';
      continue;
    }
    if (c === 0x20 && i > 0) break;
    return 'no';
  }
  if (i >= n) return 'maybe';
  const targetStart = ++i;
  while (i < n) {
    const c = bytes[i] as number;
    if (c === 0x20 && i > targetStart) break;
    if (c <= 0x20 || c === 0x7f) return 'no';
    i++;
  }
  if (i >= n) return 'maybe';
  const start = i + 1;
  if (startsWith(bytes, HTTP_VERSION, start)) return 'yes';
  return agrees(bytes, HTTP_VERSION, start) ? 'maybe' : 'no';
}

/** A Redis inline command: a line of text starting with a letter, ended by LF (CRLF). */
function inlineCommand(bytes: Buffer): Maybe {
  const first = bytes[0] as number;
  if (!((first >= 0x41 && first <= 0x5a) || (first >= 0x61 && first <= 0x7a))) return 'no';
  const n = bytes.length;
  for (let i = 1; i < n; i++) {
    const c = bytes[i] as number;
    if (c === 0x0a) return 'yes';
    if (c === 0x0d) {
      if (i + 1 === n) return 'maybe';
      if (bytes[i + 1] === 0x0a) return 'yes';
      return 'no';
    }
    // Text: printable ASCII, tab, and UTF-8 (bytes ≥ 0x80); no other control characters.
    if ((c < 0x20 && c !== 0x09) || c === 0x7f) return 'no';
  }
  return 'maybe';
}

/** TLS records (RFC 8446 §5.1) carrying a ClientHello (§4.1.2), possibly over several records. */
function sniffTls(bytes: Buffer): Sniffed {
  const unknown = (reason: string): Sniffed => ({ kind: 'unknown', reason: `TLS: ${reason}` });
  const parts: Buffer[] = [];
  let have = 0;
  let helloLength = -1;
  let offset = 0;
  for (;;) {
    if (bytes.length > offset && bytes[offset] !== 0x16) return unknown('a record that is not a handshake before the ClientHello ended');
    if (bytes.length > offset + 1 && bytes[offset + 1] !== 0x03) return unknown('not TLS (record version)');
    if (bytes.length > offset + 2 && (bytes[offset + 2] as number) > 0x04) return unknown('not TLS (record version)');
    if (bytes.length < offset + 5) return MORE;
    const length = bytes.readUInt16BE(offset + 3);
    if (length === 0 || length > 16_384) return unknown(`a handshake record of ${length} bytes`);
    const available = Math.min(length, bytes.length - offset - 5);
    parts.push(bytes.subarray(offset + 5, offset + 5 + available));
    have += available;
    if (helloLength < 0 && have >= 4) {
      const head = parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, have);
      if (head[0] !== 0x01) return unknown('the first handshake message is not a ClientHello');
      helloLength = 4 + head.readUIntBE(1, 3);
      if (helloLength > MAX_CLIENT_HELLO) return unknown(`a ClientHello of ${helloLength} bytes`);
    }
    if (helloLength >= 0 && have >= helloLength) {
      const message = parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, have);
      return parseClientHello(message.subarray(4, helloLength)) ?? unknown('a malformed ClientHello');
    }
    if (available < length) return MORE;
    offset += 5 + length;
  }
}

/** SNI and ALPN from a ClientHello body; undefined when malformed. */
function parseClientHello(body: Buffer): Sniffed | undefined {
  let p = 0;
  const need = (count: number): boolean => p + count <= body.length;
  if (!need(2 + 32 + 1)) return undefined;
  p += 2 + 32; // legacy_version, random
  const sessionId = body[p] as number;
  if (sessionId > 32) return undefined;
  p += 1 + sessionId;
  if (!need(2)) return undefined;
  const suites = body.readUInt16BE(p);
  if (suites === 0 || suites % 2 !== 0) return undefined;
  p += 2 + suites;
  if (!need(1)) return undefined;
  const compressions = body[p] as number;
  p += 1 + compressions;
  if (p > body.length) return undefined;
  let serverName: string | undefined;
  const alpn: string[] = [];
  if (p === body.length) return { kind: 'tls', serverName, alpn };
  if (!need(2)) return undefined;
  const extensionsEnd = p + 2 + body.readUInt16BE(p);
  p += 2;
  if (extensionsEnd !== body.length) return undefined;
  while (p < extensionsEnd) {
    if (!need(4)) return undefined;
    const type = body.readUInt16BE(p);
    const length = body.readUInt16BE(p + 2);
    const from = p + 4;
    const to = from + length;
    p = to;
    if (to > extensionsEnd) return undefined;
    if (type !== 0x0000 /* server_name */ && type !== 0x0010 /* application_layer_protocol_negotiation */) continue;
    // Both are a 2-byte list length, then entries: SNI `type(1) length(2) name`, ALPN `length(1) id`.
    if (length < 2 || body.readUInt16BE(from) !== length - 2) return undefined;
    let q = from + 2;
    while (q < to) {
      if (type === 0x0000) {
        if (q + 3 > to) return undefined;
        const nameLength = body.readUInt16BE(q + 1);
        if (q + 3 + nameLength > to) return undefined;
        if (body[q] === 0 && serverName === undefined) serverName = body.toString('latin1', q + 3, q + 3 + nameLength).toLowerCase();
        q += 3 + nameLength;
      } else {
        const idLength = body[q] as number;
        if (idLength === 0 || q + 1 + idLength > to) return undefined;
        alpn.push(body.toString('latin1', q + 1, q + 1 + idLength));
        q += 1 + idLength;
      }
    }
  }
  return { kind: 'tls', serverName, alpn };
}

/** True when `bytes` holds `prefix` at `at`. */
function startsWith(bytes: Buffer, prefix: Buffer, at = 0): boolean {
  return bytes.length - at >= prefix.length && agrees(bytes, prefix, at);
}

/** True when the bytes from `at` and `of` agree as far as both go: nothing seen yet rules `of` out. */
function agrees(bytes: Buffer, of: Buffer, at = 0): boolean {
  const n = Math.min(bytes.length - at, of.length);
  for (let i = 0; i < n; i++) if (bytes[at + i] !== of[i]) return false;
  return true;
}

/** A TLS fatal alert record (RFC 8446 §6): e.g. 120 `no_application_protocol`. */
export function tlsAlert(description: number): Buffer {
  return Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, description]);
}
