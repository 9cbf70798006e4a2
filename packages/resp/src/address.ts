import type { Connection } from '@portbind/core';

/** A peer's address as Redis writes it: `ip:port`, `[ipv6]:port`, or `unix:0` for a Unix socket (Redis: `path:0`). */
export function clientAddress(conn: Connection): string {
  const ip = conn.remoteAddress;
  if (ip === undefined) return 'unix:0';
  return ip.includes(':') ? `[${ip}]:${conn.remotePort ?? 0}` : `${ip}:${conn.remotePort ?? 0}`;
}

/** The local end as Redis writes it (`laddr`). */
export function localAddress(conn: Connection): string {
  const socket = conn.socket;
  const ip = socket.localAddress;
  if (conn.remoteAddress === undefined || ip === undefined) return 'unix:0';
  return ip.includes(':') ? `[${ip}]:${socket.localPort ?? 0}` : `${ip}:${socket.localPort ?? 0}`;
}
