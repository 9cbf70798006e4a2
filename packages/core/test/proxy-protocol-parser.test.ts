import { describe, expect, it } from 'vitest';
import { compileProxyProtocol, parseProxyHeader, V1_MAX_LENGTH } from '../src/proxy-protocol.js';
import { v1Header, v2Header } from './proxy-support.js';

/** Feed `bytes` one byte at a time, as a slow peer would, until the parser decides. */
function parseBytewise(bytes: Buffer): ReturnType<typeof parseProxyHeader> {
  for (let n = 1; n <= bytes.length; n++) {
    const result = parseProxyHeader(bytes.subarray(0, n));
    if (result.kind !== 'incomplete') return result;
  }
  return parseProxyHeader(bytes);
}

describe('PROXY v1', () => {
  it('TCP4: source and destination, and the header length', () => {
    const line = v1Header(['203.0.113.7', 51000], ['192.0.2.2', 6379]);
    const result = parseProxyHeader(Buffer.from(`${line}PING\r\n`));
    expect(result).toEqual({
      kind: 'header',
      length: line.length,
      header: {
        version: 1,
        command: 'proxy',
        source: { address: '203.0.113.7', port: 51000, family: 'IPv4' },
        destination: { address: '192.0.2.2', port: 6379, family: 'IPv4' },
        tlvs: [],
      },
    });
  });

  it('TCP6: addresses in the form Node reports (compressed, lowercase, IPv4-mapped)', () => {
    const result = parseProxyHeader(Buffer.from('PROXY TCP6 2001:DB8:0:0:0:0:0:1 ::FFFF:10.1.2.3 1 65535\r\n'));
    expect(result.kind === 'header' && result.header.source).toEqual({ address: '2001:db8::1', port: 1, family: 'IPv6' });
    expect(result.kind === 'header' && result.header.destination).toEqual({ address: '::ffff:10.1.2.3', port: 65535, family: 'IPv6' });
  });

  it('UNKNOWN keeps the real address, whatever follows it', () => {
    for (const line of ['PROXY UNKNOWN\r\n', 'PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n']) {
      const result = parseProxyHeader(Buffer.from(line));
      expect(result).toEqual({ kind: 'header', length: line.length, header: { version: 1, command: 'local', tlvs: [] } });
    }
  });

  it('split into 1-byte chunks: incomplete until the CRLF, then the same header', () => {
    const line = Buffer.from(v1Header(['198.51.100.9', 1234]));
    for (let n = 1; n < line.length; n++) expect(parseProxyHeader(line.subarray(0, n)).kind).toBe('incomplete');
    expect(parseBytewise(line)).toEqual(parseProxyHeader(line));
  });

  it.each([
    ['bad protocol', 'PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n'],
    ['TCP4 with an IPv6 address', 'PROXY TCP4 ::1 5.6.7.8 1 2\r\n'],
    ['TCP6 with an IPv4 address', 'PROXY TCP6 1.2.3.4 ::1 1 2\r\n'],
    ['a port over 65535', 'PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n'],
    ['a port with a leading zero', 'PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n'],
    ['a missing field', 'PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n'],
    ['two spaces', 'PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n'],
    ['LF without CR', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n'],
    ['a control byte', 'PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n'],
    ['an address with a leading zero', 'PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n'],
  ])('rejects %s', (_what, line) => {
    expect(parseProxyHeader(Buffer.from(line)).kind).toBe('invalid');
  });

  it(`rejects a line with no CRLF within ${V1_MAX_LENGTH} bytes, and accepts one of exactly ${V1_MAX_LENGTH}`, () => {
    expect(parseProxyHeader(Buffer.from(`PROXY UNKNOWN ${'x'.repeat(200)}`)).kind).toBe('invalid');
    const longest = `PROXY UNKNOWN ${'x'.repeat(V1_MAX_LENGTH - 'PROXY UNKNOWN '.length - 2)}\r\n`;
    expect(longest.length).toBe(V1_MAX_LENGTH);
    expect(parseProxyHeader(Buffer.from(longest)).kind).toBe('header');
    expect(parseProxyHeader(Buffer.from(`PROXY UNKNOWN ${'x'.repeat(V1_MAX_LENGTH - 'PROXY UNKNOWN '.length - 1)}\r\n`)).kind).toBe(
      'invalid',
    );
  });
});

describe('PROXY v2', () => {
  it('TCP4 PROXY with TLVs (kept, in order) and the stream after it', () => {
    const header = v2Header({
      source: ['203.0.113.7', 51000],
      destination: ['192.0.2.2', 6379],
      tlvs: [
        [0x01, Buffer.from('h2')],
        [0x04, Buffer.alloc(0)],
        [0xea, Buffer.from('vpce-123')],
      ],
    });
    const result = parseProxyHeader(Buffer.concat([header, Buffer.from('*1\r\n$4\r\nPING\r\n')]));
    expect(result.kind).toBe('header');
    if (result.kind !== 'header') return;
    expect(result.length).toBe(header.length);
    expect(result.header.source).toEqual({ address: '203.0.113.7', port: 51000, family: 'IPv4' });
    expect(result.header.destination).toEqual({ address: '192.0.2.2', port: 6379, family: 'IPv4' });
    expect(result.header.tlvs.map((t) => [t.type, t.value.toString()])).toEqual([
      [1, 'h2'],
      [4, ''],
      [0xea, 'vpce-123'],
    ]);
  });

  it('TCP6 PROXY', () => {
    const result = parseProxyHeader(v2Header({ family: 0x21, source: ['2001:db8::7', 443], destination: ['::1', 80] }));
    expect(result.kind === 'header' && result.header.source).toEqual({ address: '2001:db8::7', port: 443, family: 'IPv6' });
    expect(result.kind === 'header' && result.header.destination).toEqual({ address: '::1', port: 80, family: 'IPv6' });
  });

  it.each([
    ['LOCAL (a health check)', { command: 0, family: 0x11 }],
    ['LOCAL with UNSPEC and no addresses', { command: 0, family: 0x00 }],
    ['PROXY with UNSPEC', { command: 1, family: 0x00 }],
    ['PROXY over a Unix socket', { command: 1, family: 0x31 }],
    ['PROXY over UDP', { command: 1, family: 0x12 }],
  ])('%s keeps the real address', (_what, options) => {
    const header = v2Header(options);
    const result = parseProxyHeader(header);
    expect(result.kind).toBe('header');
    expect(result.kind === 'header' && result.header.command).toBe('local');
    expect(result.kind === 'header' && result.header.source).toBeUndefined();
    expect(result.kind === 'header' && result.length).toBe(header.length);
  });

  it('split into 1-byte chunks: incomplete until the last byte, then the same header', () => {
    const header = v2Header({ family: 0x21, source: ['2001:db8::7', 443], tlvs: [[0x02, Buffer.from('example.com')]] });
    for (let n = 1; n < header.length; n++) expect(parseProxyHeader(header.subarray(0, n)).kind).toBe('incomplete');
    expect(parseBytewise(header)).toEqual(parseProxyHeader(header));
  });

  it.each([
    ['version 1 in the binary header', v2Header({ version: 1 })],
    ['version 3', v2Header({ version: 3 })],
    ['command 2', v2Header({ command: 2 })],
    ['family 4', v2Header({ family: 0x41 })],
    ['transport 3', v2Header({ family: 0x13 })],
    ['a length too short for IPv4 addresses', v2Header({ lengthDelta: -1 })],
    ['a length too short for IPv6 addresses', v2Header({ family: 0x21, lengthDelta: -4 })],
    ['a TLV that overruns', v2Header({ tlvs: [[1, Buffer.from('abc')]], lengthDelta: -1 })],
  ])('rejects %s', (_what, header) => {
    expect(parseProxyHeader(header).kind).toBe('invalid');
  });

  it('a truncated header stays incomplete (the time limit ends it)', () => {
    const header = v2Header({ family: 0x21 });
    expect(parseProxyHeader(header.subarray(0, header.length - 1))).toEqual({ kind: 'incomplete', need: header.length });
  });

  it('a bad signature is not a PROXY header', () => {
    const header = v2Header({});
    header[11] = 0x0b;
    expect(parseProxyHeader(header).kind).toBe('absent');
  });
});

describe('other first bytes', () => {
  it.each(['GET / HTTP/1.1\r\n', '*1\r\n$4\r\nPING\r\n', "<?xml version='1.0'?>", 'PUT /x HTTP/1.1\r\n', '\x16\x03\x01', 'PROXZ'])(
    '%j is absent',
    (text) => {
      expect(parseProxyHeader(Buffer.from(text, 'latin1')).kind).toBe('absent');
    },
  );

  it('a prefix of either signature is incomplete', () => {
    expect(parseProxyHeader(Buffer.from('PROX')).kind).toBe('incomplete');
    expect(parseProxyHeader(Buffer.from('\r\n\r\n')).kind).toBe('incomplete');
  });
});

describe('trusted list', () => {
  const { trusts } = compileProxyProtocol({ trusted: ['127.0.0.1', '10.0.0.0/8', '::1', 'fd00::/8', '192.0.2.128/25', 'unix'] });

  it.each([
    ['127.0.0.1', true],
    ['::ffff:127.0.0.1', true],
    ['127.0.0.2', false],
    ['10.200.3.4', true],
    ['::ffff:10.200.3.4', true],
    ['11.0.0.1', false],
    ['::1', true],
    ['0:0:0:0:0:0:0:1', true],
    ['::2', false],
    ['fd12:3456::1', true],
    ['fe80::1', false],
    ['192.0.2.200', true],
    ['192.0.2.100', false],
    [undefined, true],
  ])('%s → %s', (address, expected) => {
    expect(trusts(address)).toBe(expected);
  });

  it('an IPv4-mapped IPv6 entry matches the plain IPv4 peer', () => {
    expect(compileProxyProtocol({ trusted: ['::ffff:10.0.0.0/104'] }).trusts('10.9.9.9')).toBe(true);
  });

  it('without "unix", a Unix socket peer is not trusted', () => {
    expect(compileProxyProtocol({ trusted: ['127.0.0.1'] }).trusts(undefined)).toBe(false);
  });

  it.each([
    ['not an object', '127.0.0.1', 'proxyProtocol'],
    ['a list', ['127.0.0.1'], 'proxyProtocol'],
    ['trusted not a list', { trusted: '127.0.0.1' }, 'proxyProtocol.trusted'],
    ['trusted empty', { trusted: [] }, 'proxyProtocol.trusted'],
    ['a bad address', { trusted: ['127.0.0.256'] }, 'proxyProtocol.trusted'],
    ['a host name', { trusted: ['localhost'] }, 'proxyProtocol.trusted'],
    ['a prefix over 32', { trusted: ['10.0.0.0/33'] }, 'proxyProtocol.trusted'],
    ['a prefix over 128', { trusted: ['fd00::/129'] }, 'proxyProtocol.trusted'],
    ['an empty prefix', { trusted: ['10.0.0.0/'] }, 'proxyProtocol.trusted'],
    ['a number', { trusted: [127] }, 'proxyProtocol.trusted'],
    ['a zero timeout', { trusted: ['::1'], timeoutMs: 0 }, 'proxyProtocol.timeoutMs'],
  ])('%s is a ConfigError', (_what, options, variable) => {
    expect(() => compileProxyProtocol(options)).toThrow(expect.objectContaining({ code: 'PB_ERR_CONFIG', variable }));
  });
});
