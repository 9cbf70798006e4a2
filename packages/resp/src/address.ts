import type { Connection } from '@portbind/core';

/**
 * `ip:port` or `[ipv6]:port`. An IPv4 peer of a dual-stack listener (`::`, Node's default), which Node names
 * `::ffff:a.b.c.d`, is written `a.b.c.d`: Redis listens on IPv4 and IPv6 with separate sockets, so its IPv4 clients
 * show (and are killed by `CLIENT KILL ADDR`) as `127.0.0.1:port`, and tools expect that.
 */
function hostPort(ip: string, port: number | undefined): string {
  const plain = ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;
  return plain.includes(':') ? `[${plain}]:${port ?? 0}` : `${plain}:${port ?? 0}`;
}

/** A peer's address as Redis writes it: `ip:port`, `[ipv6]:port`, or `unix:0` for a Unix socket (Redis: `path:0`). */
export function clientAddress(conn: Connection): string {
  const ip = conn.remoteAddress;
  if (ip === undefined) return 'unix:0';
  return hostPort(ip, conn.remotePort);
}

/** The local end as Redis writes it (`laddr`). */
export function localAddress(conn: Connection): string {
  const socket = conn.socket;
  const ip = socket.localAddress;
  if (conn.remoteAddress === undefined || ip === undefined) return 'unix:0';
  return hostPort(ip, socket.localPort);
}
