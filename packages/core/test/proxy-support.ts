import { isIPv4 } from 'node:net';

export const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

function ipv6Bytes(address: string): Buffer {
  // Test inputs only: full or `::`-compressed hex groups, no embedded IPv4.
  const [left = '', right = ''] = address.split('::');
  const l = left === '' ? [] : left.split(':');
  const r = right === '' ? [] : right.split(':');
  const groups = address.includes('::') ? [...l, ...new Array<string>(8 - l.length - r.length).fill('0'), ...r] : l;
  const bytes = Buffer.alloc(16);
  groups.forEach((g, i) => {
    bytes.writeUInt16BE(Number.parseInt(g, 16), i * 2);
  });
  return bytes;
}

/** A PROXY v2 header: `command` 0 LOCAL / 1 PROXY; `family` byte (0x11 TCP4, 0x21 TCP6, 0x31 UNIX, 0x00 UNSPEC). */
export function v2Header(options: {
  command?: number;
  family?: number;
  source?: [string, number];
  destination?: [string, number];
  tlvs?: Array<[number, Buffer]>;
  version?: number;
  lengthDelta?: number;
}): Buffer {
  const command = options.command ?? 1;
  const family = options.family ?? 0x11;
  const [srcAddress, srcPort] = options.source ?? ['192.0.2.1', 40000];
  const [dstAddress, dstPort] = options.destination ?? ['192.0.2.2', 443];
  let addresses: Buffer;
  if (family >> 4 === 1) {
    addresses = Buffer.alloc(12);
    Buffer.from(srcAddress.split('.').map(Number)).copy(addresses, 0);
    Buffer.from(dstAddress.split('.').map(Number)).copy(addresses, 4);
    addresses.writeUInt16BE(srcPort, 8);
    addresses.writeUInt16BE(dstPort, 10);
  } else if (family >> 4 === 2) {
    addresses = Buffer.alloc(36);
    ipv6Bytes(srcAddress).copy(addresses, 0);
    ipv6Bytes(dstAddress).copy(addresses, 16);
    addresses.writeUInt16BE(srcPort, 32);
    addresses.writeUInt16BE(dstPort, 34);
  } else if (family >> 4 === 3) {
    addresses = Buffer.alloc(216);
    addresses.write('/run/client.sock', 0);
    addresses.write('/run/haproxy.sock', 108);
  } else {
    addresses = Buffer.alloc(0);
  }
  const tlvs = (options.tlvs ?? []).map(([type, value]) => {
    const head = Buffer.alloc(3);
    head[0] = type;
    head.writeUInt16BE(value.length, 1);
    return Buffer.concat([head, value]);
  });
  const body = Buffer.concat([addresses, ...tlvs]);
  const fixed = Buffer.alloc(4);
  fixed[0] = ((options.version ?? 2) << 4) | command;
  fixed[1] = family;
  fixed.writeUInt16BE(body.length + (options.lengthDelta ?? 0), 2);
  return Buffer.concat([V2_SIGNATURE, fixed, body]);
}

/** A PROXY v1 line for a TCP client. */
export function v1Header(source: [string, number], destination: [string, number] = ['192.0.2.2', 443]): string {
  const proto = isIPv4(source[0]) ? 'TCP4' : 'TCP6';
  return `PROXY ${proto} ${source[0]} ${destination[0]} ${source[1]} ${destination[1]}\r\n`;
}
