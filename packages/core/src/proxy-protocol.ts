import { isIPv4, isIPv6, type Socket } from 'node:net';
import { ConfigError } from './errors.js';

/**
 * The PROXY protocol, versions 1 (text) and 2 (binary), receiver side, as HAProxy specifies it
 * (haproxy.org/download/2.9/doc/proxy-protocol.txt, "the spec" below). A proxy in front (HAProxy,
 * AWS NLB, …) sends one header first on each connection, naming the client it speaks for.
 */

/** Bind option `proxyProtocol`: read a PROXY header (v1 or v2) from trusted proxies on every connection. */
export interface ProxyProtocolOptions {
  /**
   * Addresses allowed to send a PROXY header: single addresses (`127.0.0.1`, `::1`) and CIDR
   * ranges (`10.0.0.0/8`, `fd00::/8`), IPv4 or IPv6 (an IPv4 entry also matches its IPv4-mapped
   * IPv6 form `::ffff:a.b.c.d`), and `unix` for peers on a Unix socket binding. A connection from
   * a trusted address must start with a valid header; one from elsewhere is served as a direct
   * client, and refused if it sends a PROXY header.
   */
  trusted: readonly string[];
  /** How long the header may take to arrive, in ms. Default: the binding's `handshakeTimeoutMs` (10 s). */
  timeoutMs?: number;
}

/** One TLV of a v2 header (spec §2.2.7): `type` and raw `value`, e.g. 0x01 ALPN, 0x02 authority. */
export interface ProxyTlv {
  readonly type: number;
  readonly value: Buffer;
}

/** What the proxy said about a connection. */
export interface ProxyHeader {
  readonly version: 1 | 2;
  /**
   * `proxy`: the connection is relayed for a client, whose address is in `source`. `local`: the proxy
   * speaks for itself (v2 LOCAL, e.g. a health check; v1 `UNKNOWN`): the socket's own address is kept.
   */
  readonly command: 'proxy' | 'local';
  /** The original client, when the header names one over TCP/IP (v1 TCP4/TCP6, v2 AF_INET/AF_INET6). */
  readonly source?: { readonly address: string; readonly port: number; readonly family: 'IPv4' | 'IPv6' };
  /** The address the client connected to, at the proxy. */
  readonly destination?: { readonly address: string; readonly port: number; readonly family: 'IPv4' | 'IPv6' };
  /** v2 TLVs, in order (CRC32C is not checked). Empty for v1. */
  readonly tlvs: readonly ProxyTlv[];
  /** The proxy's own address and port: the socket's peer. */
  readonly proxyAddress: string | undefined;
  readonly proxyPort: number | undefined;
}

type ParsedHeader = Omit<ProxyHeader, 'proxyAddress' | 'proxyPort'>;

export type ParseResult =
  /** Every byte so far could start a header: read at least `need` bytes in total, then parse again. */
  | { readonly kind: 'incomplete'; readonly need: number }
  /** The bytes cannot start a PROXY header (first bytes of some other protocol). */
  | { readonly kind: 'absent' }
  /** The bytes start a PROXY header that is malformed: `reason` says how. */
  | { readonly kind: 'invalid'; readonly reason: string }
  /** A whole header of `length` bytes; what follows belongs to the proxied stream. */
  | { readonly kind: 'header'; readonly header: ParsedHeader; readonly length: number };

const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
/** Spec §2.1: a v1 header is at most 107 bytes, CRLF included. */
export const V1_MAX_LENGTH = 107;
/** Spec §2.2: `\r\n\r\n\0\r\nQUIT\n`. */
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
/** 12 signature bytes, version/command, family, 2 length bytes. */
const V2_FIXED = 16;

/** True when `bytes` is a prefix of `of` (or the other way round): nothing seen yet rules it out. */
function agrees(bytes: Buffer, of: Buffer): boolean {
  const n = Math.min(bytes.length, of.length);
  return bytes.subarray(0, n).equals(of.subarray(0, n));
}

/**
 * Parse a PROXY header at the start of `bytes`. Pure: call again with more bytes while the answer
 * is `incomplete`. Strict, as the spec asks of receivers: no guessing on a bad header.
 */
export function parseProxyHeader(bytes: Buffer): ParseResult {
  if (bytes.length === 0) return { kind: 'incomplete', need: 1 };
  if (agrees(bytes, V1_PREFIX)) return parseV1(bytes);
  if (agrees(bytes, V2_SIGNATURE)) return parseV2(bytes);
  return { kind: 'absent' };
}

function parseV1(bytes: Buffer): ParseResult {
  if (bytes.length < V1_PREFIX.length) return { kind: 'incomplete', need: V1_PREFIX.length };
  const window = bytes.subarray(0, V1_MAX_LENGTH);
  const lf = window.indexOf(0x0a);
  if (lf === -1) {
    if (bytes.length >= V1_MAX_LENGTH) return { kind: 'invalid', reason: `v1 header longer than ${V1_MAX_LENGTH} bytes` };
    return { kind: 'incomplete', need: bytes.length + 1 };
  }
  if (lf === 0 || window[lf - 1] !== 0x0d) return { kind: 'invalid', reason: 'v1 header line does not end with CRLF' };
  const line = window.subarray(0, lf - 1);
  for (const byte of line) {
    if (byte < 0x20 || byte > 0x7e) return { kind: 'invalid', reason: 'v1 header holds a non-printable byte' };
  }
  const tokens = line.toString('latin1').split(' ');
  const length = lf + 1;
  // Spec §2.1: "UNKNOWN" — the receiver must ignore anything after it and keep the real addresses.
  if (tokens[1] === 'UNKNOWN') return { kind: 'header', header: { version: 1, command: 'local', tlvs: [] }, length };
  if (tokens[1] !== 'TCP4' && tokens[1] !== 'TCP6') return { kind: 'invalid', reason: 'v1 protocol is not TCP4, TCP6 or UNKNOWN' };
  if (tokens.length !== 6) return { kind: 'invalid', reason: 'v1 header does not have 6 fields separated by single spaces' };
  const family = tokens[1] === 'TCP4' ? 'IPv4' : 'IPv6';
  const [, , sourceText = '', destinationText = '', sourcePortText = '', destinationPortText = ''] = tokens;
  const sourceAddress = family === 'IPv4' ? (isIPv4(sourceText) ? sourceText : undefined) : canonicalIPv6(sourceText);
  const destinationAddress = family === 'IPv4' ? (isIPv4(destinationText) ? destinationText : undefined) : canonicalIPv6(destinationText);
  if (sourceAddress === undefined || destinationAddress === undefined) {
    return { kind: 'invalid', reason: `v1 address is not a valid ${family} address` };
  }
  const sourcePort = parsePortToken(sourcePortText);
  const destinationPort = parsePortToken(destinationPortText);
  if (sourcePort === undefined || destinationPort === undefined) return { kind: 'invalid', reason: 'v1 port is not 0-65535' };
  return {
    kind: 'header',
    header: {
      version: 1,
      command: 'proxy',
      source: { address: sourceAddress, port: sourcePort, family },
      destination: { address: destinationAddress, port: destinationPort, family },
      tlvs: [],
    },
    length,
  };
}

/** A decimal port as the spec writes it: no sign, no leading zero. */
function parsePortToken(text: string): number | undefined {
  if (!/^(0|[1-9][0-9]{0,4})$/.test(text)) return undefined;
  const port = Number(text);
  return port <= 65535 ? port : undefined;
}

function parseV2(bytes: Buffer): ParseResult {
  if (bytes.length < V2_FIXED) return { kind: 'incomplete', need: V2_FIXED };
  const versionCommand = bytes[12] ?? 0;
  if (versionCommand >> 4 !== 2) return { kind: 'invalid', reason: `v2 version ${versionCommand >> 4} is not 2` };
  const command = versionCommand & 0x0f;
  if (command > 1) return { kind: 'invalid', reason: `v2 command ${command} is neither LOCAL (0) nor PROXY (1)` };
  const familyByte = bytes[13] ?? 0;
  if (familyByte >> 4 > 3 || (familyByte & 0x0f) > 2) {
    return { kind: 'invalid', reason: `v2 address family/transport 0x${familyByte.toString(16)} is not defined` };
  }
  const length = V2_FIXED + bytes.readUInt16BE(14);
  if (bytes.length < length) return { kind: 'incomplete', need: length };
  const body = bytes.subarray(V2_FIXED, length);
  // Spec §2.2: with LOCAL, the receiver must ignore the address block and keep the real endpoints.
  if (command === 0) return { kind: 'header', header: { version: 2, command: 'local', tlvs: [] }, length };

  let addressLength = 0;
  let source: ProxyHeader['source'];
  let destination: ProxyHeader['destination'];
  if (familyByte === 0x11) {
    // TCP over IPv4: 4 + 4 address bytes, 2 + 2 port bytes.
    addressLength = 12;
    if (body.length < addressLength) return { kind: 'invalid', reason: 'v2 length too short for IPv4 addresses' };
    source = { address: formatIPv4(body.subarray(0, 4)), port: body.readUInt16BE(8), family: 'IPv4' };
    destination = { address: formatIPv4(body.subarray(4, 8)), port: body.readUInt16BE(10), family: 'IPv4' };
  } else if (familyByte === 0x21) {
    // TCP over IPv6: 16 + 16 address bytes, 2 + 2 port bytes.
    addressLength = 36;
    if (body.length < addressLength) return { kind: 'invalid', reason: 'v2 length too short for IPv6 addresses' };
    source = { address: formatIPv6(body.subarray(0, 16)), port: body.readUInt16BE(32), family: 'IPv6' };
    destination = { address: formatIPv6(body.subarray(16, 32)), port: body.readUInt16BE(34), family: 'IPv6' };
  } else if (familyByte >> 4 === 3) {
    addressLength = 216; // AF_UNIX: two 108-byte paths
    if (body.length < addressLength) return { kind: 'invalid', reason: 'v2 length too short for Unix addresses' };
  } else {
    // AF_UNSPEC, or UDP: nothing a stream server can use; keep the real endpoints, as HAProxy does.
    return { kind: 'header', header: { version: 2, command: 'local', tlvs: [] }, length };
  }
  const tlvs = parseTlvs(body.subarray(addressLength));
  if (tlvs === undefined) return { kind: 'invalid', reason: 'v2 TLV overruns the header' };
  // A Unix-socket client of the proxy has no address here: the socket's own (the proxy's) is kept.
  if (source === undefined) return { kind: 'header', header: { version: 2, command: 'local', tlvs }, length };
  return { kind: 'header', header: { version: 2, command: 'proxy', source, destination, tlvs }, length };
}

/** Spec §2.2.7: type (1 byte), length (2 bytes), value; they fill the rest of the header exactly. */
function parseTlvs(bytes: Buffer): ProxyTlv[] | undefined {
  const tlvs: ProxyTlv[] = [];
  let offset = 0;
  while (offset < bytes.length) {
    if (offset + 3 > bytes.length) return undefined;
    const type = bytes[offset] ?? 0;
    const length = bytes.readUInt16BE(offset + 1);
    const end = offset + 3 + length;
    if (end > bytes.length) return undefined;
    tlvs.push({ type, value: Buffer.from(bytes.subarray(offset + 3, end)) });
    offset = end;
  }
  return tlvs;
}

function formatIPv4(bytes: Buffer): string {
  return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
}

/** As Node writes IPv6 peers: lowercase, longest zero run as `::`, IPv4-mapped as `::ffff:a.b.c.d`. */
function formatIPv6(bytes: Buffer): string {
  if (bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) {
    return `::ffff:${formatIPv4(bytes.subarray(12, 16))}`;
  }
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i));
  let bestStart = -1;
  let bestLength = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength && j - i >= 2) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart === -1) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}

/** 16 bytes of an IPv6 address in text form (with `::` and a trailing dotted IPv4), or undefined. */
function ipv6Bytes(text: string): Buffer | undefined {
  if (!isIPv6(text) || text.includes('%')) return undefined;
  let head = text;
  const tail: number[] = [];
  const lastColon = text.lastIndexOf(':');
  const last = text.slice(lastColon + 1);
  if (last.includes('.')) {
    for (const part of last.split('.')) tail.push(Number(part));
    head = text.slice(0, lastColon + 1);
    if (head.endsWith(':') && !head.endsWith('::')) head = head.slice(0, -1);
  }
  const [left = '', right] = head.split('::');
  const toGroups = (s: string): number[] => (s === '' ? [] : s.split(':').map((g) => Number.parseInt(g, 16)));
  const leftGroups = toGroups(left);
  const rightGroups = right === undefined ? [] : toGroups(right);
  const groupCount = 8 - tail.length / 2;
  const zeros = right === undefined ? 0 : groupCount - leftGroups.length - rightGroups.length;
  const groups = [...leftGroups, ...new Array<number>(Math.max(0, zeros)).fill(0), ...rightGroups];
  if (groups.length !== groupCount) return undefined;
  const bytes = Buffer.alloc(16);
  groups.forEach((g, i) => {
    bytes.writeUInt16BE(g, i * 2);
  });
  tail.forEach((b, i) => {
    bytes[12 + i] = b;
  });
  return bytes;
}

function canonicalIPv6(text: string): string | undefined {
  const bytes = ipv6Bytes(text);
  return bytes === undefined ? undefined : formatIPv6(bytes);
}

/** An address as 16 bytes: IPv4 as IPv4-mapped IPv6, so `10.0.0.0/8` and `::ffff:10.1.2.3` compare. */
function addressBytes(address: string): Buffer | undefined {
  if (isIPv4(address)) return Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...address.split('.').map(Number)]);
  return ipv6Bytes(address);
}

interface Range {
  readonly bytes: Buffer;
  readonly prefix: number;
}

/** The trusted list, checked: `(address) => trusted?`. `undefined` is a Unix socket peer. */
export type TrustCheck = (address: string | undefined) => boolean;

/** Validate bind option `proxyProtocol` (ConfigError, PB_ERR_CONFIG, naming the bad entry) and compile its list. */
export function compileProxyProtocol(options: unknown): { trusts: TrustCheck; timeoutMs: number | undefined } {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new ConfigError('proxyProtocol', options, "an object such as { trusted: ['127.0.0.1', '10.0.0.0/8'] }");
  }
  const { trusted, timeoutMs } = options as { trusted?: unknown; timeoutMs?: unknown };
  if (!Array.isArray(trusted) || trusted.length === 0) {
    throw new ConfigError(
      'proxyProtocol.trusted',
      trusted,
      "a non-empty list of the proxies' addresses or CIDR ranges, e.g. ['127.0.0.1', '10.0.0.0/8', '::1']",
    );
  }
  if (timeoutMs !== undefined && !(typeof timeoutMs === 'number' && Number.isInteger(timeoutMs) && timeoutMs > 0)) {
    throw new ConfigError('proxyProtocol.timeoutMs', timeoutMs, 'an integer > 0 (ms)');
  }
  return { trusts: compileTrustList('proxyProtocol.trusted', trusted), timeoutMs: timeoutMs as number | undefined };
}

/**
 * Compile a list of trusted addresses — single addresses, CIDR ranges (IPv4 or IPv6; an IPv4 entry
 * also matches `::ffff:a.b.c.d`) and `unix` — into a check. A bad entry throws a
 * {@link ConfigError} (PB_ERR_CONFIG) naming `option` and the entry.
 */
export function compileTrustList(option: string, entries: readonly unknown[]): TrustCheck {
  const ranges: Range[] = [];
  let unix = false;
  for (const entry of entries) {
    if (entry === 'unix') {
      unix = true;
      continue;
    }
    const range = typeof entry === 'string' ? parseRange(entry) : undefined;
    if (range === undefined) {
      throw new ConfigError(option, entry, 'each entry is an IPv4 or IPv6 address, a CIDR range (10.0.0.0/8, fd00::/8) or "unix"');
    }
    ranges.push(range);
  }
  return (address) => {
    if (address === undefined) return unix;
    const bytes = addressBytes(address);
    return bytes !== undefined && ranges.some((range) => inRange(bytes, range));
  };
}

function parseRange(entry: string): Range | undefined {
  const slash = entry.indexOf('/');
  const address = slash === -1 ? entry : entry.slice(0, slash);
  const bytes = addressBytes(address);
  if (bytes === undefined) return undefined;
  const max = isIPv4(address) ? 32 : 128;
  let prefix = max;
  if (slash !== -1) {
    const text = entry.slice(slash + 1);
    if (!/^(0|[1-9][0-9]{0,2})$/.test(text) || Number(text) > max) return undefined;
    prefix = Number(text);
  }
  return { bytes, prefix: isIPv4(address) ? prefix + 96 : prefix };
}

function inRange(bytes: Buffer, range: Range): boolean {
  let bits = range.prefix;
  for (let i = 0; i < 16 && bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if (((bytes[i] ?? 0) & mask) !== ((range.bytes[i] ?? 0) & mask)) return false;
  }
  return true;
}

const headers = new WeakMap<Socket, ProxyHeader>();

/** The PROXY header a socket arrived with, if its binding reads them. */
export function proxyHeaderOf(socket: Socket): ProxyHeader | undefined {
  return headers.get(socket);
}

/**
 * Make `socket` report the client named by `header` as its peer: `remoteAddress`, `remotePort`,
 * `remoteFamily` become own properties of the instance, so node:http's `req.socket.remoteAddress`,
 * frameworks and adapters all see the client. LOCAL/UNKNOWN headers keep the socket's own address.
 */
export function applyProxyHeader(socket: Socket, header: ProxyHeader): void {
  headers.set(socket, header);
  const source = header.source;
  if (header.command !== 'proxy' || source === undefined) return;
  for (const [name, value] of [
    ['remoteAddress', source.address],
    ['remotePort', source.port],
    ['remoteFamily', source.family],
  ] as const) {
    Object.defineProperty(socket, name, { value, configurable: true, enumerable: true, writable: false });
  }
}

export type HeaderOutcome =
  /** A header was read (`header`), or none was needed (`header` undefined: an untrusted peer's first bytes). */
  | { readonly kind: 'ready'; readonly header: ProxyHeader | undefined }
  | { readonly kind: 'refused'; readonly reason: string; readonly problem: 'untrusted' | 'missing' | 'invalid' | 'timeout' | 'closed' };

/**
 * Read what a connection starts with before anyone else sees it. From a trusted peer: a PROXY
 * header, required. From another: the first bytes, to refuse a PROXY header there (a client must
 * not choose its own address). Bytes after the header are put back (`unshift`) so the next reader
 * — node:tls, node:http, an adapter — sees the stream untouched. Calls `done` once; the returned
 * function cancels (the caller then destroys the socket).
 */
export function readProxyHeader(
  socket: Socket,
  options: { trusted: boolean; timeoutMs: number },
  done: (outcome: HeaderOutcome) => void,
): () => void {
  const proxyAddress = socket.remoteAddress;
  const proxyPort = socket.remotePort;
  const chunks: Buffer[] = [];
  let total = 0;
  let need = 1;
  let finished = false;

  const detach = (): void => {
    finished = true;
    clearTimeout(timer);
    socket.off('readable', onReadable);
    socket.off('end', onEnd);
    socket.off('close', onEnd);
    socket.off('error', onError);
  };
  const finish = (outcome: HeaderOutcome, rest?: Buffer): void => {
    if (finished) return;
    detach();
    if (outcome.kind === 'ready' && rest !== undefined && rest.length > 0) socket.unshift(rest);
    done(outcome);
  };
  const onEnd = (): void => finish({ kind: 'refused', problem: 'closed', reason: 'the peer closed before a PROXY header was complete' });
  const onError = (): void => onEnd();
  const onReadable = (): void => {
    let chunk: Buffer | null;
    // biome-ignore lint/suspicious/noAssignInExpressions: the usual stream read loop
    while (!finished && (chunk = socket.read() as Buffer | null) !== null) {
      chunks.push(chunk);
      total += chunk.length;
      // Parse only once enough bytes are in: a v2 header sent a byte at a time costs one parse.
      if (total < need) continue;
      const bytes = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, total);
      chunks.length = 0;
      chunks.push(bytes);
      decide(bytes);
    }
  };
  const decide = (bytes: Buffer): void => {
    const result = parseProxyHeader(bytes);
    if (result.kind === 'incomplete') {
      need = result.need;
      return;
    }
    if (!options.trusted) {
      if (result.kind === 'absent') finish({ kind: 'ready', header: undefined }, bytes);
      else finish({ kind: 'refused', problem: 'untrusted', reason: 'a PROXY header from an address not in proxyProtocol.trusted' });
      return;
    }
    if (result.kind === 'absent') {
      finish({ kind: 'refused', problem: 'missing', reason: 'no PROXY header from a trusted proxy (the spec forbids guessing)' });
    } else if (result.kind === 'invalid') {
      finish({ kind: 'refused', problem: 'invalid', reason: `malformed PROXY header: ${result.reason}` });
    } else {
      const header: ProxyHeader = { ...result.header, proxyAddress, proxyPort };
      finish({ kind: 'ready', header }, bytes.subarray(result.length));
    }
  };
  const timer = setTimeout(
    () =>
      finish({
        kind: 'refused',
        problem: 'timeout',
        reason: options.trusted
          ? `no complete PROXY header within ${options.timeoutMs} ms`
          : `no first bytes within ${options.timeoutMs} ms`,
      }),
    options.timeoutMs,
  );
  socket.on('readable', onReadable);
  socket.once('end', onEnd);
  socket.once('close', onEnd);
  socket.on('error', onError);
  return detach;
}
