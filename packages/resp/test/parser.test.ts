import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ProtocolError } from '../src/errors.js';
import { type Command, RequestParser } from '../src/parser.js';

/** Parse a whole input; returns the commands (as strings) and the error reply, if any. */
function parseAll(input: string | Buffer, options: { authRequired?: boolean; chunks?: number[] } = {}) {
  const bytes = typeof input === 'string' ? Buffer.from(input, 'latin1') : input;
  const parser = new RequestParser();
  const commands: string[][] = [];
  let error: string | undefined;
  const pieces = split(bytes, options.chunks ?? [bytes.length]);
  try {
    for (const piece of pieces) {
      parser.push(piece);
      for (let command = parser.next(options.authRequired); command; command = parser.next(options.authRequired)) {
        commands.push(command.map((arg) => arg.toString('latin1')));
      }
    }
  } catch (caught) {
    if (!(caught instanceof ProtocolError)) throw caught;
    error = caught.reply.toString();
  }
  return { commands, error };
}

function split(bytes: Buffer, sizes: number[]): Buffer[] {
  const pieces: Buffer[] = [];
  let at = 0;
  for (const size of sizes) {
    if (at >= bytes.length) break;
    pieces.push(bytes.subarray(at, at + Math.max(1, size)));
    at += Math.max(1, size);
  }
  if (at < bytes.length) pieces.push(bytes.subarray(at));
  return pieces;
}

const multibulk = (...args: string[]): string =>
  `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a, 'latin1')}\r\n${a}\r\n`).join('')}`;

describe('multibulk requests', () => {
  it('parses commands, pipelined, binary-safe', () => {
    const input = multibulk('SET', 'k', 'a\r\nb\0c') + multibulk('GET', 'k');
    expect(parseAll(input).commands).toEqual([
      ['SET', 'k', 'a\r\nb\0c'],
      ['GET', 'k'],
    ]);
  });

  it('ignores *0 and negative counts, as Redis does', () => {
    expect(parseAll(`*0\r\n*-1\r\n*-10\r\n${multibulk('PING')}`)).toEqual({ commands: [['PING']], error: undefined });
  });

  it('accepts empty arguments', () => {
    expect(parseAll('*2\r\n$4\r\nECHO\r\n$0\r\n\r\n').commands).toEqual([['ECHO', '']]);
  });

  it.each([
    ['*abc\r\n', 'invalid multibulk length'],
    ['*+1\r\n', 'invalid multibulk length'],
    ['* 1\r\n', 'invalid multibulk length'],
    ['*01\r\n', 'invalid multibulk length'],
    ['*3000000000\r\n', 'invalid multibulk length'],
    ['*\r\n', 'invalid multibulk length'],
    ['*1\r\nfoo\r\n', "expected '$', got 'f'"],
    ['*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n', "expected '$', got 'f'"],
    ['*1\r\n\r\n', "expected '$', got ' '"],
    ['*1\r\n$-1\r\n', 'invalid bulk length'],
    ['*1\r\n$blabla\r\n', 'invalid bulk length'],
    ['*1\r\n$01\r\n', 'invalid bulk length'],
    ['*1\r\n$2000000000\r\n', 'invalid bulk length'],
  ])('answers %j with -ERR Protocol error: %s', (input, detail) => {
    expect(parseAll(input).error).toBe(`-ERR Protocol error: ${detail}\r\n`);
  });

  it('accepts *20000000 (Redis 7 allows up to INT_MAX) and waits for the arguments', () => {
    expect(parseAll('*20000000\r\n')).toEqual({ commands: [], error: undefined });
  });

  it('runs the commands before a bad frame, and nothing after it', () => {
    expect(parseAll(`${multibulk('PING')}*1\r\nfoo\r\n${multibulk('PING')}`)).toEqual({
      commands: [['PING']],
      error: "-ERR Protocol error: expected '$', got 'f'\r\n",
    });
  });

  it('caps header lines at 64 KiB without a CR', () => {
    expect(parseAll(`*${'1'.repeat(70_000)}`).error).toBe('-ERR Protocol error: too big mbulk count string\r\n');
    expect(parseAll(`*1\r\n$${'1'.repeat(70_000)}`).error).toBe('-ERR Protocol error: too big bulk count string\r\n');
  });

  it('applies the unauthenticated limits only when auth is required', () => {
    const many = multibulk(...Array.from({ length: 11 }, () => 'x'));
    expect(parseAll(many, { authRequired: true }).error).toBe('-ERR Protocol error: unauthenticated multibulk length\r\n');
    expect(parseAll(many).commands).toHaveLength(1);
    const big = multibulk('SET', 'k', 'v'.repeat(16_385));
    expect(parseAll(big, { authRequired: true }).error).toBe('-ERR Protocol error: unauthenticated bulk length\r\n');
    expect(parseAll(multibulk('SET', 'k', 'v'.repeat(16_384)), { authRequired: true }).commands).toHaveLength(1);
  });

  it('honours a configured maxBulkLength', () => {
    const parser = new RequestParser({ maxBulkLength: 10 });
    parser.push(Buffer.from('*1\r\n$11\r\n'));
    expect(() => parser.next()).toThrow('Protocol error: invalid bulk length');
    expect(parser.next()).toBeUndefined();
  });

  it('waits forever on a NUL before the line end, then fails at 64 KiB (protocol desync guard)', () => {
    for (const prefix of ['\0', '*\0', '$\0', '*1\r\n$\0']) {
      const waiting = parseAll(`${prefix}\r\n`);
      expect(waiting.error).toBeUndefined();
      expect(waiting.commands).toEqual([]);
      expect(parseAll(`${prefix}${'A'.repeat(70_000)}`).error).toMatch(
        /^-ERR Protocol error: too big (inline request|mbulk count string|bulk count string)\r\n$/,
      );
    }
  });
});

describe('inline requests', () => {
  it('splits on whitespace and accepts \\n alone', () => {
    expect(parseAll('SET k v\r\nGET   k\nPING\r\r\n').commands).toEqual([['SET', 'k', 'v'], ['GET', 'k'], ['PING']]);
  });

  it('skips empty lines', () => {
    expect(parseAll('\r\n\n   \r\nPING\r\n').commands).toEqual([['PING']]);
  });

  it('follows redis-cli quoting', () => {
    expect(parseAll('SET "a b" \'c d\'\r\n').commands).toEqual([['SET', 'a b', 'c d']]);
    expect(parseAll('ECHO "\\x41\\x00\\n\\t\\"q\\\\"\r\n').commands).toEqual([['ECHO', 'A\0\n\t"q\\']]);
    expect(parseAll("ECHO 'it\\'s \\n raw'\r\n").commands).toEqual([['ECHO', "it's \\n raw"]]);
    expect(parseAll('ECHO foo"bar baz"\r\n').commands).toEqual([['ECHO', 'foobar baz']]);
    expect(parseAll('ECHO "" \'\'\r\n').commands).toEqual([['ECHO', '', '']]);
    expect(parseAll('ECHO "\\xZZ"\r\n').commands).toEqual([['ECHO', 'xZZ']]);
  });

  it.each([["set foo 'b'a'r\r\n"], ['set foo "b"a"r\r\n'], ['ECHO "open\r\n'], ["ECHO 'open\r\n"], ['ECHO "trailing\\\r\n']])(
    'answers unbalanced quotes in %j',
    (input) => {
      expect(parseAll(input).error).toBe('-ERR Protocol error: unbalanced quotes in request\r\n');
    },
  );

  it('caps an inline request at 64 KiB without a newline', () => {
    expect(parseAll('A'.repeat(70_000)).error).toBe('-ERR Protocol error: too big inline request\r\n');
    expect(parseAll('A'.repeat(60_000)).error).toBeUndefined();
  });
});

describe('incremental parsing', () => {
  it('gives the same commands byte by byte', () => {
    const input = `${multibulk('SET', 'key', 'value')}GET key\r\n${multibulk('DEL', 'key')}`;
    expect(parseAll(input, { chunks: Array(input.length).fill(1) }).commands).toEqual(parseAll(input).commands);
  });

  it('keeps a large bulk that arrives in many chunks intact', () => {
    const value = Buffer.alloc(3 * 1024 * 1024, 7);
    const head = Buffer.from(`*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$${value.length}\r\n`);
    const parser = new RequestParser();
    const whole = Buffer.concat([head, value, Buffer.from('\r\n')]);
    let command: Command | undefined;
    for (let at = 0; at < whole.length; at += 1000) {
      parser.push(whole.subarray(at, at + 1000));
      command = parser.next() ?? command;
    }
    expect(command?.[2]?.equals(value)).toBe(true);
    expect(parser.buffered).toBe(0);
  });

  it('a command spread over many reads: short arguments copied aside, long ones kept, every byte intact, the cost counted', () => {
    const args = [Buffer.from('MSET')];
    for (let i = 0; i < 400; i++) args.push(Buffer.alloc(i % 7 === 0 ? 1500 + i : i % 50, i));
    const whole = encode(args);
    for (const size of [1, 7, 100, 1023, 4096]) {
      const parser = new RequestParser();
      let command: Command | undefined;
      let maxCost = 0;
      for (let at = 0; at < whole.length; at += size) {
        parser.push(whole.subarray(at, at + size));
        command = parser.next() ?? command;
        if (command === undefined) {
          maxCost = Math.max(maxCost, parser.cost);
          expect(parser.partialArgvBytes).toBeLessThanOrEqual(whole.length);
        }
      }
      expect(command?.length).toBe(args.length);
      expect(command?.every((arg, i) => arg.equals(args[i] as Buffer))).toBe(true);
      // What the parser held was counted: at least the bytes of the arguments received.
      expect(maxCost).toBeGreaterThanOrEqual(whole.length - 4096 - 1600);
      expect(parser.cost).toBe(0);
      expect(parser.partialArgvBytes).toBe(0);
      expect(parser.next()).toBeUndefined();
    }
  });

  it('a command of 40 000 arguments (1.7 MB) over 1 000-byte reads: every argument intact across the spill blocks', () => {
    const args = [Buffer.from('RPUSH')];
    for (let i = 0; i < 40_000; i++) {
      const length = i % 997 === 0 ? 1024 + (i % 5) : (i * 7919) % 83;
      args.push(Buffer.alloc(length, i % 251));
    }
    const whole = encode(args);
    const parser = new RequestParser();
    let command: Command | undefined;
    for (let at = 0; at < whole.length; at += 1000) {
      parser.push(whole.subarray(at, at + 1000));
      command = parser.next() ?? command;
    }
    expect(command?.length).toBe(args.length);
    expect(command?.every((arg, i) => arg.equals(args[i] as Buffer))).toBe(true);
    expect(parser.cost).toBe(0);
  });

  it('two commands pipelined in chunks that cut both: each gets its own arguments', () => {
    const first = encode([Buffer.from('SET'), Buffer.from('a'), Buffer.alloc(2000, 1)]);
    const second = encode([Buffer.from('RPUSH'), Buffer.from('l'), Buffer.from('x'), Buffer.from('y')]);
    const stream = Buffer.concat([first, second, first]);
    const { commands } = parseAll(stream, { chunks: Array(Math.ceil(stream.length / 5)).fill(5) });
    expect(commands).toEqual([
      ['SET', 'a', '\x01'.repeat(2000)],
      ['RPUSH', 'l', 'x', 'y'],
      ['SET', 'a', '\x01'.repeat(2000)],
    ]);
  });
});

// Property tests: any split of a valid stream parses the same; random bytes never crash or hang.
const arg = fc.uint8Array({ maxLength: 40 }).map((bytes) => Buffer.from(bytes));
const commandArb = fc.array(arg, { minLength: 1, maxLength: 6 });
const encode = (command: Buffer[]): Buffer =>
  Buffer.concat([
    Buffer.from(`*${command.length}\r\n`),
    ...command.flatMap((a) => [Buffer.from(`$${a.length}\r\n`), a, Buffer.from('\r\n')]),
  ]);

describe('properties', () => {
  it('any split of a valid stream yields the same commands', () => {
    fc.assert(
      fc.property(
        fc.array(commandArb, { minLength: 1, maxLength: 8 }),
        fc.array(fc.integer({ min: 1, max: 64 }), { maxLength: 40 }),
        (commands, sizes) => {
          const stream = Buffer.concat(commands.map(encode));
          const { commands: parsed, error } = parseAll(stream, { chunks: sizes });
          expect(error).toBeUndefined();
          expect(parsed).toEqual(commands.map((c) => c.map((a) => a.toString('latin1'))));
        },
      ),
      { numRuns: 300, endOnFailure: true },
    );
  });

  it('random bytes never throw anything but a ProtocolError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), fc.array(fc.integer({ min: 1, max: 300 }), { maxLength: 20 }), (bytes, sizes) => {
        const parser = new RequestParser({ maxBulkLength: 4096, maxInlineLength: 512 });
        try {
          for (const piece of split(Buffer.from(bytes), sizes)) {
            parser.push(piece);
            while (parser.next() !== undefined) {
              /* drain */
            }
          }
        } catch (error) {
          expect(error).toBeInstanceOf(ProtocolError);
        }
      }),
      { numRuns: 500, endOnFailure: true },
    );
  });

  it('a line that never ends is refused once it passes the inline limit, however it is split', () => {
    const noLineEnd = fc
      .uint8Array({ minLength: 600, maxLength: 3000 })
      .map((bytes) => Buffer.from(bytes.map((b) => (b === 0x0a || b === 0x0d ? 0x20 : b))));
    fc.assert(
      fc.property(noLineEnd, fc.array(fc.integer({ min: 1, max: 300 }), { maxLength: 20 }), (bytes, sizes) => {
        const parser = new RequestParser({ maxInlineLength: 512 });
        let fed = 0;
        let before = -1;
        for (const piece of split(bytes, sizes)) {
          parser.push(piece);
          try {
            parser.next();
          } catch (error) {
            expect(error).toBeInstanceOf(ProtocolError);
            before = fed;
            fed += piece.length;
            break;
          }
          fed += piece.length;
        }
        // Refused by the first read that takes it past the limit, not earlier and not later.
        expect(fed).toBeGreaterThan(512);
        expect(before).toBeGreaterThanOrEqual(0);
        expect(before).toBeLessThanOrEqual(512);
      }),
      { numRuns: 300, endOnFailure: true },
    );
  });
});
