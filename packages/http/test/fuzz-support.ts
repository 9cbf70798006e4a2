import { connect } from 'node:net';
import { capturingLogger, type LogLine } from '../../../test/support/log.js';
import { prng } from '../../../test/support/prng.js';

export { capturingLogger, type LogLine, prng };

/** Tokens that tend to matter to parsers, spliced into inputs. */
const tokens = [
  '\r\n',
  '\n',
  '\r',
  '\r\n\r\n',
  ':',
  ' ',
  '\t',
  '\\',
  '%',
  '%00',
  '\0',
  '0',
  '-1',
  '99999999999999999999',
  '4294967296',
  'ffffffffffffffff',
  'chunked',
  'Transfer-Encoding: chunked\r\n',
  'Content-Length: 5\r\n',
  'Content-Length: 999999999\r\n',
  'Host:\r\n',
  'Host: [::1\r\n',
  'Connection: Upgrade\r\n',
  'Upgrade: websocket\r\n',
  'Expect: 100-continue\r\n',
  'HTTP/1.0',
  'HTTP/2.0',
  'http://',
  '//',
  '../',
  '\u00ff\u00fe',
  '\x80',
];

/** Mutations of captured valid traffic: bit flips, byte edits, splices, tokens, truncation, repetition. */
export class Mutator {
  readonly random: () => number;

  constructor(seed: number) {
    this.random = prng(seed);
  }

  int(max: number): number {
    return Math.floor(this.random() * max);
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)] as T;
  }

  /** One to four mutations of `input`, sometimes spliced with another corpus entry. */
  mutate(input: Buffer, corpus: readonly Buffer[]): Buffer {
    let out: Buffer = Buffer.from(input);
    const rounds = 1 + this.int(4);
    for (let i = 0; i < rounds; i++) out = this.#once(out, corpus);
    return out;
  }

  #once(input: Buffer, corpus: readonly Buffer[]): Buffer {
    const at = this.int(input.length + 1);
    switch (this.int(9)) {
      case 0: {
        // Flip a bit.
        if (input.length === 0) return input;
        const out = Buffer.from(input);
        const index = Math.min(at, out.length - 1);
        out[index] = (out[index] as number) ^ (1 << this.int(8));
        return out;
      }
      case 1: {
        // Set a random byte.
        if (input.length === 0) return input;
        const out = Buffer.from(input);
        out[Math.min(at, out.length - 1)] = this.int(256);
        return out;
      }
      case 2: {
        // Delete a range.
        const length = 1 + this.int(16);
        return Buffer.concat([input.subarray(0, at), input.subarray(at + length)]);
      }
      case 3: {
        // Insert random bytes.
        const bytes = Buffer.alloc(1 + this.int(8));
        for (let i = 0; i < bytes.length; i++) bytes[i] = this.int(256);
        return Buffer.concat([input.subarray(0, at), bytes, input.subarray(at)]);
      }
      case 4:
        // Insert a token.
        return Buffer.concat([input.subarray(0, at), Buffer.from(this.pick(tokens), 'latin1'), input.subarray(at)]);
      case 5: {
        // Duplicate a range, sometimes many times.
        const length = 1 + this.int(32);
        const piece = input.subarray(at, at + length);
        const times = this.random() < 0.2 ? 50 + this.int(200) : 1 + this.int(3);
        return Buffer.concat([input.subarray(0, at), ...new Array<Buffer>(times).fill(piece), input.subarray(at)]);
      }
      case 6:
        // Truncate.
        return input.subarray(0, at);
      case 7: {
        // Splice with another valid input.
        const other = this.pick(corpus);
        const from = this.int(other.length + 1);
        return Buffer.concat([input.subarray(0, at), other.subarray(from)]);
      }
      default: {
        // Replace a number with another number.
        const text = input.toString('latin1');
        const numbers = [...text.matchAll(/\d+/g)];
        if (numbers.length === 0) return input;
        const match = this.pick(numbers);
        const replacement = this.pick(['0', '1', '-1', '65535', '65536', '2147483648', '99999999999999999999', '1e3', '0x10', '']);
        const index = match.index ?? 0;
        return Buffer.from(text.slice(0, index) + replacement + text.slice(index + match[0].length), 'latin1');
      }
    }
  }
}

/** Send `bytes` on a fresh connection (in 1–3 writes) and wait until the server closes it or `timeoutMs` passes. */
export function exchange(
  port: number,
  bytes: Buffer,
  random: () => number,
  timeoutMs: number,
): Promise<{ received: number; closed: boolean; status: string | undefined }> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let received = 0;
    let settled = false;
    const done = (closed: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      const head = Buffer.concat(chunks).subarray(0, 16).toString('latin1');
      resolve({ received, closed, status: /^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] });
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (chunks.length < 4) chunks.push(chunk);
    });
    socket.once('close', () => done(true));
    socket.once('connect', () => {
      const cuts = [0, ...[random(), random()].map((r) => Math.floor(r * bytes.length)).sort((a, b) => a - b), bytes.length];
      const pieces = random() < 0.5 ? [bytes] : cuts.slice(1).map((end, i) => bytes.subarray(cuts[i], end));
      for (const piece of pieces) if (piece.length > 0 && !socket.destroyed) socket.write(piece);
    });
  });
}

/** Run `task` over `items` with at most `concurrency` at once. */
export async function pool<T>(items: readonly T[], concurrency: number, task: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      await task(items[index] as T, index);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}
