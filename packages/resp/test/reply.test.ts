import { describe, expect, it } from 'vitest';
import { formatDouble, OK, ReplyWriter, RespError, simple } from '../src/reply.js';

function written(protocol: 2 | 3, write: (reply: ReplyWriter) => void): string {
  const reply = new ReplyWriter();
  reply.protocol = protocol;
  write(reply);
  const out = reply.take();
  return out === undefined ? '' : typeof out === 'string' ? out : out.toString('latin1');
}

describe('ReplyWriter', () => {
  it.each([
    ['simple string', (r: ReplyWriter) => r.simple('OK'), '+OK\r\n', '+OK\r\n'],
    ['error', (r: ReplyWriter) => r.error('WRONGTYPE bad'), '-WRONGTYPE bad\r\n', '-WRONGTYPE bad\r\n'],
    ['integer', (r: ReplyWriter) => r.integer(-42), ':-42\r\n', ':-42\r\n'],
    ['big integer', (r: ReplyWriter) => r.integer(9223372036854775807n), ':9223372036854775807\r\n', ':9223372036854775807\r\n'],
    ['bulk string', (r: ReplyWriter) => r.bulk('hello'), '$5\r\nhello\r\n', '$5\r\nhello\r\n'],
    ['binary bulk', (r: ReplyWriter) => r.bulk(Buffer.from([0, 255, 13, 10])), '$4\r\n\u0000\u00ff\r\n\r\n', '$4\r\n\u0000\u00ff\r\n\r\n'],
    ['null', (r: ReplyWriter) => r.null(), '$-1\r\n', '_\r\n'],
    ['null array', (r: ReplyWriter) => r.nullArray(), '*-1\r\n', '_\r\n'],
    ['array', (r: ReplyWriter) => r.array(['a', 1, null]), '*3\r\n$1\r\na\r\n:1\r\n$-1\r\n', '*3\r\n$1\r\na\r\n:1\r\n_\r\n'],
    ['map', (r: ReplyWriter) => r.map(new Map([['k', 'v']])), '*2\r\n$1\r\nk\r\n$1\r\nv\r\n', '%1\r\n$1\r\nk\r\n$1\r\nv\r\n'],
    ['set', (r: ReplyWriter) => r.set(new Set(['x'])), '*1\r\n$1\r\nx\r\n', '~1\r\n$1\r\nx\r\n'],
    ['double', (r: ReplyWriter) => r.double(3.25), '$4\r\n3.25\r\n', ',3.25\r\n'],
    ['infinite double', (r: ReplyWriter) => r.double(Number.NEGATIVE_INFINITY), '$4\r\n-inf\r\n', ',-inf\r\n'],
    ['boolean', (r: ReplyWriter) => r.boolean(false), ':0\r\n', '#f\r\n'],
    ['big number', (r: ReplyWriter) => r.bigNumber(12345678901234567890n), '$20\r\n12345678901234567890\r\n', '(12345678901234567890\r\n'],
    ['verbatim', (r: ReplyWriter) => r.verbatim('some text'), '$9\r\nsome text\r\n', '=13\r\ntxt:some text\r\n'],
    ['push', (r: ReplyWriter) => r.push(2).bulk('a').bulk('b'), '*2\r\n$1\r\na\r\n$1\r\nb\r\n', '>2\r\n$1\r\na\r\n$1\r\nb\r\n'],
    [
      'attribute before a reply',
      (r: ReplyWriter) => {
        if (r.attribute(1)) r.bulk('ttl').integer(3);
        r.integer(7);
      },
      ':7\r\n',
      '|1\r\n$3\r\nttl\r\n:3\r\n:7\r\n',
    ],
    [
      'values',
      (r: ReplyWriter) => r.value([OK, simple('QUEUED'), new RespError('ERR no'), true, 1.5]),
      '*5\r\n+OK\r\n+QUEUED\r\n-ERR no\r\n:1\r\n$3\r\n1.5\r\n',
      '*5\r\n+OK\r\n+QUEUED\r\n-ERR no\r\n#t\r\n,1.5\r\n',
    ],
  ] as const)('%s on RESP2 and RESP3', (_name, write, two, three) => {
    expect(written(2, write)).toBe(two);
    expect(written(3, write)).toBe(three);
  });

  it('keeps CR and LF out of simple strings and errors', () => {
    expect(written(2, (r) => r.error('ERR a\r\nb'))).toBe('-ERR a  b\r\n');
  });

  it('sends UTF-8 text as UTF-8 bytes', () => {
    const reply = new ReplyWriter();
    reply.bulk('€');
    const out = reply.take();
    expect(Buffer.isBuffer(out) ? out : Buffer.from(out ?? '', 'latin1')).toEqual(Buffer.from('$3\r\n€\r\n', 'utf8'));
  });

  it('formats doubles as Redis 7.2 does (util.c d2string: integers to 2^62, else fpconv_dtoa)', () => {
    const cases: [number, string][] = [
      [1, '1'],
      [-0, '-0'],
      [0.1, '0.1'],
      [1 / 3, '0.3333333333333333'],
      [-2.5, '-2.5'],
      [1e-5, '0.00001'],
      [0.000001, '0.000001'],
      [1e-7, '1e-7'],
      [-1.5e-7, '-1.5e-7'],
      [1.2345678e-6, '1.2345678e-6'],
      [123.456, '123.456'],
      [1234567890123.5, '1234567890123.5'],
      [1e17, '100000000000000000'],
      [2 ** 62, '4611686018427387904'],
      [6.1e18, '6.1e+18'],
      [1e19, '1e+19'],
      [1e21, '1e+21'],
      [1e300, '1e+300'],
      [5e-324, '5e-324'],
      [1.7976931348623157e308, '1.7976931348623157e+308'],
      [Number.POSITIVE_INFINITY, 'inf'],
      [Number.NEGATIVE_INFINITY, '-inf'],
      [Number.NaN, 'nan'],
    ];
    expect(cases.map(([value]) => formatDouble(value))).toEqual(cases.map(([, text]) => text));
  });

  it('formats doubles as Redis 7.0 does (printf "%.17g"), ties to even', () => {
    const cases: [number, string][] = [
      [1, '1'],
      [-0, '-0'],
      [0.1, '0.10000000000000001'],
      [1 / 3, '0.33333333333333331'],
      [1e-7, '9.9999999999999995e-08'],
      [0.0001, '0.0001'],
      [0.00001, '1.0000000000000001e-05'],
      [1e16, '10000000000000000'],
      [1e17, '1e+17'],
      [1e300, '1.0000000000000001e+300'],
      [-1e-300, '-1e-300'],
      [5e-324, '4.9406564584124654e-324'],
      [1.7976931348623157e308, '1.7976931348623157e+308'],
      [2 ** 62, '4.6116860184273879e+18'],
      [2 ** 51 - 0.25, '2251799813685247.8'],
      [2 ** 50 - 0.75, '1125899906842623.2'],
      [0.25 - 2 ** 51, '-2251799813685247.8'],
      [Number.POSITIVE_INFINITY, 'inf'],
      [Number.NEGATIVE_INFINITY, '-inf'],
      [Number.NaN, 'nan'],
    ];
    expect(cases.map(([value]) => formatDouble(value, '%.17g'))).toEqual(cases.map(([, text]) => text));
  });

  it("writes doubles in the writer's format, RESP3 `,` and RESP2 a bulk string", () => {
    const reply = new ReplyWriter();
    reply.double(0.1).double(1e21);
    reply.protocol = 3;
    reply.double(0.1).double(Number.NEGATIVE_INFINITY);
    reply.doubleFormat = '%.17g';
    reply.double(0.1).double(1e21).double(Number.NEGATIVE_INFINITY);
    reply.protocol = 2;
    reply.double(0.1).double(Number.POSITIVE_INFINITY);
    expect(reply.take()).toBe(
      '$3\r\n0.1\r\n$5\r\n1e+21\r\n,0.1\r\n,-inf\r\n' +
        ',0.10000000000000001\r\n,1e+21\r\n,-inf\r\n$19\r\n0.10000000000000001\r\n$3\r\ninf\r\n',
    );
  });
});
