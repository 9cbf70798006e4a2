import { PortService } from '@portbind/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { portOf, rawConnect, readUntil } from '../../../test/support/net.js';
import { floatArg, int64Arg, parseDouble, parseInt64, respAdapter } from '../src/index.js';
import { type Server, startRedis } from './real-redis.js';

// Integer and float arguments as Redis reads them (string2ll, string2d): SELECT and a ZADD that
// parses its score with floatArg must accept and refuse the same texts as redis-server 7.0.15.

let real: Server | undefined;
let adapter: Server | undefined;

beforeAll(async () => {
  const resp = respAdapter({ serverVersion: '7.0.15' });
  resp.command('zadd', { arity: 4, flags: ['write', 'denyoom'] }, (_client, argv) => {
    floatArg(argv[2]);
    return 1;
  });
  const service = new PortService({ env: {} });
  const binding = service.bind(resp, { port: 0, host: '127.0.0.1' });
  await service.start();
  adapter = { port: portOf(binding), stop: () => service.stop().then(() => undefined) };
  real = await startRedis();
});

afterAll(async () => {
  await Promise.all([real?.stop(), adapter?.stop()]);
});

/** One command per argument, a fresh key each time; the replies in order. */
async function replies(port: number, command: (arg: string, i: number) => string[], args: string[]): Promise<string[]> {
  const socket = await rawConnect(port);
  try {
    const out: string[] = [];
    for (const [i, arg] of args.entries()) {
      const parts = command(arg, i);
      socket.write(`*${parts.length}\r\n${parts.map((part) => `$${Buffer.byteLength(part)}\r\n${part}\r\n`).join('')}`);
      out.push(`${arg} → ${await readUntil(socket, /\r\n$/, 5000)}`);
    }
    return out;
  } finally {
    socket.destroy();
  }
}

const INTEGERS = ['0', '-0', '01', '+1', ' 1', '1 ', '1.0', '', '-1', '15', '16', '2147483648', '-2147483649'];
const INTEGERS_64 = ['9223372036854775807', '9223372036854775808', '-9223372036854775808', '99999999999999999999'];
const FLOATS = ['1', '-1.5', '1e3', 'inf', '-inf', '+inf', 'Infinity', 'nan', '-nan', ' 1', '1 ', '', '0x10', '0x1p3', '1e400'];
const FLOATS_MORE = ['1e-400', '-1e-400', '0e5', 'abc', '.5', '5.', '-0', '1e', '1.7976931348623157e308', '4.9e-324', '1\u00002'];

describe('integer and float arguments, as redis-server 7.0.15 reads them', () => {
  it('SELECT: string2ll, then a C int, then the database range', async () => {
    const args = [...INTEGERS, ...INTEGERS_64];
    const select = (arg: string): string[] => ['SELECT', arg];
    expect(await replies((adapter as Server).port, select, args)).toEqual(await replies((real as Server).port, select, args));
  });

  it('scores (ZADD): string2d — hex, inf, no NaN, no overflow or underflow, no spaces', async () => {
    const args = [...FLOATS, ...FLOATS_MORE];
    const zadd = (arg: string, i: number): string[] => ['ZADD', `score:${i}`, arg, 'm'];
    expect(await replies((adapter as Server).port, zadd, args)).toEqual(await replies((real as Server).port, zadd, args));
  });

  it('the parsers directly: full 64-bit range as bigint, custom messages', () => {
    expect(parseInt64(Buffer.from('-9223372036854775808'))).toBe(-(2n ** 63n));
    expect(parseInt64(Buffer.from('9223372036854775808'))).toBeUndefined();
    expect(parseInt64(Buffer.from('-0'))).toBeUndefined();
    expect(() => int64Arg(Buffer.from('x'), 'ERR timeout is not an integer or out of range')).toThrow(
      'ERR timeout is not an integer or out of range',
    );
    expect(parseDouble(Buffer.from('0x1p3'))).toBe(8);
    expect(parseDouble(Buffer.from('nan'))).toBeUndefined();
    expect(() => floatArg(undefined)).toThrow('ERR value is not a valid float');
  });
});
