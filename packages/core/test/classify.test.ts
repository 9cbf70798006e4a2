import { once } from 'node:events';
import { createServer, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { describe, expect, it } from 'vitest';
import { sniff } from '../src/index.js';

/** The ClientHello node:tls sends with these options, captured over a real socket. */
async function clientHello(options: { ALPNProtocols?: string[]; servername?: string }): Promise<Buffer> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const client = tlsConnect({ port: address.port, host: '127.0.0.1', ...options });
  client.on('error', () => {});
  const [socket] = await accepted;
  const chunks: Buffer[] = [];
  let hello = Buffer.alloc(0);
  for await (const chunk of socket) {
    chunks.push(chunk as Buffer);
    hello = Buffer.concat(chunks);
    if (hello.length >= 5 && hello.length >= 5 + hello.readUInt16BE(3)) break;
  }
  client.destroy();
  socket.destroy();
  server.close();
  return hello;
}

/** The same handshake message re-cut into TLS records of at most `size` bytes each. */
function recut(hello: Buffer, size: number): Buffer {
  const message = hello.subarray(5);
  const records: Buffer[] = [];
  for (let offset = 0; offset < message.length; offset += size) {
    const part = message.subarray(offset, offset + size);
    records.push(Buffer.from([0x16, 0x03, 0x01, part.length >> 8, part.length & 0xff]), part);
  }
  return Buffer.concat(records);
}

const text = (value: string): Buffer => Buffer.from(value, 'latin1');

describe('sniff: what the first bytes say', () => {
  it('reads a whole ClientHello, however it is split, and gives its SNI and ALPN list', async () => {
    const hello = await clientHello({ ALPNProtocols: ['h2', 'http/1.1'], servername: 'Example.COM' });
    const expected = { kind: 'tls', serverName: 'example.com', alpn: ['h2', 'http/1.1'] };
    expect(sniff(hello)).toEqual(expected);
    for (let length = 1; length < hello.length; length++) expect(sniff(hello.subarray(0, length))).toEqual({ kind: 'more' });
    // The handshake message over many small records (as some clients and middleboxes send it).
    const cut = recut(hello, 7);
    expect(sniff(cut)).toEqual(expected);
    for (const length of [1, 5, 12, 100, cut.length - 1]) expect(sniff(cut.subarray(0, length))).toEqual({ kind: 'more' });
  });

  it('gives an empty ALPN list and no SNI when the client sends none (IP address, no ALPN)', async () => {
    expect(sniff(await clientHello({}))).toEqual({ kind: 'tls', serverName: undefined, alpn: [] });
  });

  it('turns down what only starts like TLS', () => {
    expect(sniff(Buffer.from([0x16, 0x07]))).toMatchObject({ kind: 'unknown' });
    expect(sniff(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 0x02, 0, 0, 1, 0]))).toMatchObject({
      kind: 'unknown',
      reason: 'TLS: the first handshake message is not a ClientHello',
    });
    expect(sniff(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0, 0, 1, 0]))).toMatchObject({
      kind: 'unknown',
      reason: 'TLS: a malformed ClientHello',
    });
    expect(sniff(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0xff, 0, 0, 0]))).toMatchObject({ kind: 'unknown' });
  });

  it('knows HTTP/1.x by method, target and " HTTP/1." — and only then', () => {
    expect(sniff(text('GET / HTTP/1.1\r\n'))).toEqual({ kind: 'protocol', protocol: 'http' });
    expect(sniff(text('OPTIONS * HTTP/1.0'))).toEqual({ kind: 'protocol', protocol: 'http' });
    expect(sniff(text('M-SEARCH * HTTP/1.'))).toEqual({ kind: 'protocol', protocol: 'http' });
    for (const partial of ['G', 'GET', 'GET ', 'GET /index', 'GET / ', 'GET / HTTP/']) {
      expect(sniff(text(partial))).toEqual({ kind: 'more' });
    }
  });

  it('knows h2c prior knowledge by its preface', () => {
    expect(sniff(text('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'))).toEqual({ kind: 'protocol', protocol: 'h2c' });
    expect(sniff(text('PRI * HTTP/2'))).toEqual({ kind: 'more' });
  });

  it('knows RESP by "*", or a whole inline line that is not HTTP', () => {
    expect(sniff(text('*'))).toEqual({ kind: 'protocol', protocol: 'resp' });
    expect(sniff(text('PING\r\n'))).toEqual({ kind: 'protocol', protocol: 'resp' });
    expect(sniff(text('get foo\n'))).toEqual({ kind: 'protocol', protocol: 'resp' });
    expect(sniff(text('SET key café\r\n'))).toEqual({ kind: 'protocol', protocol: 'resp' });
    expect(sniff(text('GET foo\r\n'))).toEqual({ kind: 'protocol', protocol: 'resp' });
    // Until the line ends, an inline command could still be an HTTP request line.
    expect(sniff(text('GET foo'))).toEqual({ kind: 'more' });
    expect(sniff(text('PING'))).toEqual({ kind: 'more' });
    // An inline line that reads as an HTTP request line is HTTP.
    expect(sniff(text('GET / HTTP/1.1\r\n'))).toEqual({ kind: 'protocol', protocol: 'http' });
  });

  it('knows XMPP by "<?xml" or "<stream:stream"', () => {
    expect(sniff(text("<?xml version='1.0'?>"))).toEqual({ kind: 'protocol', protocol: 'xmpp' });
    expect(sniff(text('<stream:stream to="localhost"'))).toEqual({ kind: 'protocol', protocol: 'xmpp' });
    expect(sniff(text('<stre'))).toEqual({ kind: 'more' });
    expect(sniff(text('<html>'))).toMatchObject({ kind: 'unknown' });
  });

  it('turns down binary garbage at its first byte that fits nothing', () => {
    expect(sniff(Buffer.from([0x00, 0x01, 0x02]))).toMatchObject({ kind: 'unknown' });
    expect(sniff(Buffer.from('ab\u0000cd'))).toMatchObject({ kind: 'unknown' });
    expect(sniff(Buffer.alloc(0))).toEqual({ kind: 'more' });
  });
});
