import type { IncomingMessage } from 'node:http';
import { isIP, isIPv4 } from 'node:net';
import { ConfigError, type Connection, compileTrustList, type TrustCheck } from '@portbind/core';

/** Who sent a request, as a handler should see it: the client behind trusted proxies. */
export interface ClientInfo {
  /**
   * The client's address. Without `trustProxy`, or when the TCP peer is not trusted, the peer's
   * address (after a PROXY protocol header, if the binding reads them): `connection.remoteAddress`.
   * From a trusted proxy, the address its `Forwarded` or `X-Forwarded-For` header names.
   * `undefined` on a Unix socket peer that forwarded nothing.
   */
  readonly remoteAddress: string | undefined;
  /** The client's port, when known: the peer's own, or a `Forwarded` `for="…:port"`. */
  readonly remotePort?: number;
  /** True when the client used HTTPS: TLS on this connection, or `proto=https` / `X-Forwarded-Proto: https` from a trusted proxy. */
  readonly secure: boolean;
  /** True when the address (or scheme) came from a trusted proxy's forwarding header. */
  readonly forwarded: boolean;
  /** The portbind connection that carries the request (its `context` is free for handlers). */
  readonly connection: Connection;
}

/** Express's named address sets, accepted in `trustProxy` as in Express's `trust proxy` and Fastify's `trustProxy`. */
const presets: ReadonlyMap<string, readonly string[]> = new Map([
  ['loopback', ['127.0.0.1/8', '::1/128']],
  ['linklocal', ['169.254.0.0/16', 'fe80::/10']],
  ['uniquelocal', ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7']],
]);

/** Validate option `trustProxy` (PB_ERR_CONFIG naming the bad entry) and compile it. */
export function compileTrustProxy(option: unknown): TrustCheck | undefined {
  if (option === undefined || option === false) return undefined;
  let entries: unknown[];
  if (typeof option === 'string') entries = option.split(',').map((s) => s.trim());
  else if (Array.isArray(option)) entries = option as unknown[];
  else {
    throw new ConfigError(
      'trustProxy',
      option,
      "a list of the proxies' addresses or CIDR ranges, e.g. ['127.0.0.1', '10.0.0.0/8'] (or 'loopback', 'linklocal', 'uniquelocal')",
    );
  }
  if (entries.length === 0) throw new ConfigError('trustProxy', option, "a non-empty list of addresses, e.g. ['127.0.0.1']");
  return compileTrustList(
    'trustProxy',
    entries.flatMap((entry): readonly unknown[] => (typeof entry === 'string' ? (presets.get(entry) ?? [entry]) : [entry])),
  );
}

/**
 * Which forwarding header the proxies write: `x-forwarded-for` (default, what HAProxy's
 * `option forwardfor`, nginx and AWS ALB write, and all Express and Fastify read) or `forwarded`
 * read only that one; `auto` reads `Forwarded` when a request has one, else `X-Forwarded-For` — only
 * behind proxies that strip or rewrite a client's own `Forwarded`.
 */
export type ProxyHeaderName = 'auto' | 'forwarded' | 'x-forwarded-for';

/** Validate option `proxyHeader`. */
export function checkProxyHeader(option: unknown): ProxyHeaderName {
  // Not 'auto': behind a proxy that writes only X-Forwarded-For, a client's own Forwarded header
  // passes through and 'auto' would let the client name its own address.
  if (option === undefined) return 'x-forwarded-for';
  if (option === 'auto' || option === 'forwarded' || option === 'x-forwarded-for') return option;
  throw new ConfigError('proxyHeader', option, "'auto', 'forwarded' or 'x-forwarded-for': the header your proxy writes");
}

/** One hop named by a forwarding header. `address` is undefined for `unknown`, obfuscated or unparsable identifiers. */
interface Hop {
  readonly address: string | undefined;
  readonly port?: number;
  /** `http` or `https`, when the header says. */
  readonly proto?: 'http' | 'https';
}

/**
 * The client of a request. With `trusts` and a trusted TCP peer: the `Forwarded` header (RFC 7239)
 * if present, else `X-Forwarded-For` (+ `X-Forwarded-Proto`) — or only the one `header` names — walked from the right (the hop the
 * peer added) past trusted proxies: the first untrusted address is the client, or the leftmost if
 * all are trusted. An `unknown` or obfuscated identifier ends the walk at the last known address.
 * A malformed header is ignored (the peer is the client). Never throws.
 */
export function resolveClient(
  req: IncomingMessage,
  connection: Connection,
  trusts: TrustCheck | undefined,
  header: ProxyHeaderName = 'auto',
): ClientInfo {
  const peer: ClientInfo = {
    remoteAddress: connection.remoteAddress,
    ...(connection.remotePort === undefined ? {} : { remotePort: connection.remotePort }),
    secure: connection.secure,
    forwarded: false,
    connection,
  };
  if (trusts === undefined || !trusts(connection.remoteAddress)) return peer;
  const hops = hopsOf(req, header);
  if (hops === undefined || hops.length === 0) return peer;
  let chosen: Hop | undefined;
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i] as Hop;
    if (hop.address === undefined) break;
    chosen = hop;
    if (!trusts(hop.address)) break;
  }
  if (chosen === undefined) return peer;
  return {
    remoteAddress: chosen.address,
    ...(chosen.port === undefined ? {} : { remotePort: chosen.port }),
    secure: chosen.proto === undefined ? connection.secure : chosen.proto === 'https',
    forwarded: true,
    connection,
  };
}

/** The hops of the request's forwarding header, left (farthest) to right (nearest); undefined if none or malformed. */
function hopsOf(req: IncomingMessage, header: ProxyHeaderName): Hop[] | undefined {
  if (header !== 'x-forwarded-for') {
    const forwarded = req.headers.forwarded;
    if (typeof forwarded === 'string') return parseForwarded(forwarded);
    if (header === 'forwarded') return undefined;
  }
  const xff = req.headers['x-forwarded-for'];
  if (typeof xff !== 'string') return undefined;
  const addresses = xff.split(',').map((s) => s.trim());
  const protoHeader = req.headers['x-forwarded-proto'];
  const protos = typeof protoHeader === 'string' ? protoHeader.split(',').map((s) => protoOf(s.trim())) : [];
  // One proto per address: each belongs to its hop. Otherwise the nearest proxy's (rightmost) value holds.
  const aligned = protos.length === addresses.length;
  return addresses.map((text, i) => {
    const proto = aligned ? protos[i] : protos[protos.length - 1];
    return { address: xffAddress(text), ...(proto === undefined ? {} : { proto }) };
  });
}

function protoOf(text: string): 'http' | 'https' | undefined {
  const lower = text.toLowerCase();
  return lower === 'http' || lower === 'https' ? lower : undefined;
}

/** An `X-Forwarded-For` entry: an IP address, also as `a.b.c.d:port` or `[v6]:port` as some proxies write it. */
function xffAddress(text: string): string | undefined {
  if (isIP(text) !== 0) return text;
  const v4 = /^(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$/.exec(text);
  if (v4 !== null && isIPv4(v4[1] as string)) return v4[1];
  const v6 = /^\[([0-9A-Fa-f:.]+)\](?::\d{1,5})?$/.exec(text);
  if (v6 !== null && isIP(v6[1] as string) === 6) return v6[1];
  return undefined;
}

const tchar = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/;

/**
 * RFC 7239 §4: `Forwarded: for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8:cafe::17]:4711"`.
 * Elements are comma-separated, pairs semicolon-separated, values tokens or quoted strings.
 * Returns one hop per element, or undefined when the header does not follow the grammar.
 */
export function parseForwarded(header: string): Hop[] | undefined {
  const hops: Hop[] = [];
  let pairs = new Map<string, string>();
  let i = 0;
  const n = header.length;
  const skipOws = (): void => {
    while (i < n && (header[i] === ' ' || header[i] === '\t')) i++;
  };
  const endElement = (): void => {
    hops.push(hopOf(pairs));
    pairs = new Map();
  };
  for (;;) {
    skipOws();
    if (i < n && header[i] !== ',' && header[i] !== ';') {
      let name = '';
      while (i < n && tchar.test(header[i] as string)) name += header[i++];
      if (name === '' || header[i] !== '=') return undefined;
      i++;
      let value = '';
      if (header[i] === '"') {
        i++;
        for (;;) {
          if (i >= n) return undefined;
          const c = header[i++] as string;
          if (c === '"') break;
          if (c === '\\') {
            if (i >= n) return undefined;
            value += header[i++];
          } else value += c;
        }
      } else {
        while (i < n && tchar.test(header[i] as string)) value += header[i++];
        if (value === '') return undefined;
      }
      const key = name.toLowerCase();
      // A parameter twice in one element is malformed (§4).
      if (pairs.has(key)) return undefined;
      pairs.set(key, value);
      skipOws();
    }
    if (i >= n) {
      endElement();
      return hops;
    }
    const sep = header[i++];
    if (sep === ',') endElement();
    else if (sep !== ';') return undefined;
  }
}

function hopOf(pairs: Map<string, string>): Hop {
  const node = pairs.get('for');
  const proto = protoOf(pairs.get('proto') ?? '');
  const withProto = proto === undefined ? {} : { proto };
  if (node === undefined) return { address: undefined, ...withProto };
  // node = nodename [ ":" node-port ]; nodename = IPv4 / "[" IPv6 "]" / "unknown" / obfnode.
  let name = node;
  let portText: string | undefined;
  if (node.startsWith('[')) {
    const close = node.indexOf(']');
    if (close === -1) return { address: undefined, ...withProto };
    name = node.slice(1, close);
    const rest = node.slice(close + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) return { address: undefined, ...withProto };
      portText = rest.slice(1);
    }
    if (isIP(name) !== 6) return { address: undefined, ...withProto };
  } else {
    const colon = node.indexOf(':');
    if (colon !== -1) {
      name = node.slice(0, colon);
      portText = node.slice(colon + 1);
    }
    if (!isIPv4(name)) return { address: undefined, ...withProto };
  }
  // node-port = 1*5DIGIT / obfport: an obfuscated port is ignored, the address kept.
  const port = portText !== undefined && /^\d{1,5}$/.test(portText) && Number(portText) <= 65535 ? Number(portText) : undefined;
  return { address: name, ...(port === undefined ? {} : { port }), ...withProto };
}
