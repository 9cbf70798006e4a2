import { once } from 'node:events';
import { connect } from 'node:net';
import { PortService } from '@portbind/core';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { portOf, sleep } from '../../../test/support/net.js';
import { prng } from '../../../test/support/prng.js';
import { OK, respAdapter } from '../src/index.js';

// Fuzzing the RESP port: mutations of captured valid traffic (multibulk, inline, RESP3 HELLO,
// pipelines, transactions, pub/sub), with lengths made big, negative or garbage and CRLFs taken
// away. One connection per input. Every answer must be well-formed RESP (or nothing) followed by
// a close, the process lives, and a well-behaved ioredis client is served all along.

const INPUTS = 3000;
const CONCURRENCY = 16;
const SEED = 0x5eed_7e5f;

const multibulk = (...args: string[]): string =>
  `*${args.length}\r\n${args.map((arg) => `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`).join('')}`;

/** Traffic as clients send it (redis-cli, ioredis, node-redis, redis-benchmark). */
const corpus: string[] = [
  multibulk('SET', 'k', 'v1'),
  multibulk('GET', 'k'),
  multibulk('SET', 'key:1', 'x'.repeat(300)) + multibulk('GET', 'key:1') + multibulk('DEL', 'key:1'),
  'PING\r\n',
  'ECHO "a b\\x41\\n"\r\n',
  "SET k 'it''s'\r\n",
  'GET k\r\nPING\r\nECHO hi\r\n',
  multibulk('HELLO', '3') + multibulk('PING'),
  multibulk('HELLO', '3', 'SETNAME', 'fuzz') + multibulk('CLIENT', 'INFO'),
  'HELLO 2\r\nCLIENT SETNAME x\r\nCLIENT GETNAME\r\n',
  multibulk('MULTI') + multibulk('SET', 'a', '1') + multibulk('GET', 'a') + multibulk('EXEC'),
  multibulk('WATCH', 'a') + multibulk('MULTI') + multibulk('DISCARD'),
  multibulk('SUBSCRIBE', 'c1', 'c2') + multibulk('PING') + multibulk('UNSUBSCRIBE'),
  multibulk('PSUBSCRIBE', 'c*') + multibulk('PUNSUBSCRIBE', 'c*'),
  multibulk('PUBLISH', 'c1', 'hello') + multibulk('PUBSUB', 'CHANNELS'),
  multibulk('COMMAND', 'DOCS', 'get') + multibulk('COMMAND', 'COUNT'),
  multibulk('SELECT', '3') + multibulk('INFO', 'server'),
  multibulk('CLIENT', 'SETINFO', 'LIB-NAME', 'fuzz') + multibulk('CLIENT', 'ID'),
  multibulk('RESET') + multibulk('QUIT'),
  multibulk('AUTH', 'nobody', 'wrong'),
  '*0\r\n*-1\r\n\r\n\n' + multibulk('PING'),
  multibulk('SET', 'bin', '\u0000\r\n\u00ff'),
];

const edges = [
  '-1',
  '0',
  '-2147483648',
  '2147483648',
  '9223372036854775808',
  '99999999999999999999',
  '1x',
  '',
  ' 3',
  '+3',
  '03',
  '2147483647',
  '536870913',
];

/** One mutation of a corpus entry (sometimes two entries spliced, sometimes several mutations). */
function mutate(random: () => number): Buffer {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
  let bytes = Buffer.from(pick(corpus), 'latin1');
  const rounds = 1 + Math.floor(random() * 3);
  for (let round = 0; round < rounds; round++) {
    const at = Math.floor(random() * (bytes.length + 1));
    const kind = Math.floor(random() * 10);
    if (kind === 0) {
      // flip a byte
      const copy = Buffer.from(bytes);
      if (copy.length > 0) copy[Math.min(at, copy.length - 1)] = Math.floor(random() * 256);
      bytes = copy;
    } else if (kind === 1) {
      // insert random bytes
      const noise = Buffer.from(Array.from({ length: 1 + Math.floor(random() * 8) }, () => Math.floor(random() * 256)));
      bytes = Buffer.concat([bytes.subarray(0, at), noise, bytes.subarray(at)]);
    } else if (kind === 2) {
      // delete a range
      bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + 1 + Math.floor(random() * 6))]);
    } else if (kind === 3) {
      // truncate
      bytes = bytes.subarray(0, at);
    } else if (kind === 4 || kind === 5) {
      // a length made big, negative or garbage
      const text = bytes.toString('latin1');
      const headers = [...text.matchAll(/[*$](-?\d+)\r\n/g)];
      if (headers.length > 0) {
        const header = pick(headers);
        const start = (header.index ?? 0) + 1;
        bytes = Buffer.from(text.slice(0, start) + pick(edges) + text.slice(start + (header[1] ?? '').length), 'latin1');
      }
    } else if (kind === 6) {
      // a CRLF taken away (or half of it)
      const text = bytes.toString('latin1');
      const crlf = text.indexOf('\r\n', at);
      if (crlf !== -1)
        bytes = Buffer.from(text.slice(0, crlf) + (random() < 0.5 ? '' : random() < 0.5 ? '\r' : '\n') + text.slice(crlf + 2), 'latin1');
    } else if (kind === 7) {
      // splice another entry in
      const other = Buffer.from(pick(corpus), 'latin1');
      bytes = Buffer.concat([bytes.subarray(0, at), other.subarray(Math.floor(random() * other.length))]);
    } else if (kind === 8) {
      // duplicate a range (a deeper pipeline)
      const end = Math.min(bytes.length, at + Math.floor(random() * 64));
      bytes = Buffer.concat([bytes.subarray(0, end), bytes.subarray(at, end), bytes.subarray(end)]);
    } else {
      // a special byte where it hurts: NUL, quote, backslash, '*' or '$'
      bytes = Buffer.concat([
        bytes.subarray(0, at),
        Buffer.from([pick([0x00, 0x22, 0x27, 0x5c, 0x2a, 0x24, 0x0d, 0x0a])]),
        bytes.subarray(at),
      ]);
    }
  }
  return bytes;
}

/** Where the strict RESP2/RESP3 reply starting at `start` ends; -1 if incomplete; throws if malformed. */
function replyEnd(buffer: Buffer, start: number): number {
  const lineEnd = buffer.indexOf('\r\n', start);
  if (lineEnd === -1) return -1;
  const type = String.fromCharCode(buffer[start] as number);
  const header = buffer.toString('latin1', start + 1, lineEnd);
  if (header.includes('\n') || header.includes('\r')) throw new Error(`a line break inside a ${type} line`);
  let next = lineEnd + 2;
  if ('+-'.includes(type)) return next;
  if (type === ':' || type === '(') {
    if (!/^-?\d+$/.test(header)) throw new Error(`bad integer ${JSON.stringify(header)}`);
    return next;
  }
  if (type === '_') {
    if (header !== '') throw new Error('bad null');
    return next;
  }
  if (type === '#') {
    if (header !== 't' && header !== 'f') throw new Error('bad boolean');
    return next;
  }
  if (type === ',') return next;
  if (!/^(-1|0|[1-9]\d*)$/.test(header)) throw new Error(`bad length ${JSON.stringify(header)} for ${type}`);
  const length = Number(header);
  if ('$=!'.includes(type)) {
    if (length < 0) return next;
    if (buffer.length < next + length + 2) return -1;
    if (buffer.toString('latin1', next + length, next + length + 2) !== '\r\n') throw new Error('bulk not ended by CRLF');
    return next + length + 2;
  }
  if ('*~>%|'.includes(type)) {
    const items = length < 0 ? 0 : type === '%' || type === '|' ? length * 2 : length;
    for (let i = 0; i < items; i++) {
      if (next >= buffer.length) return -1;
      next = replyEnd(buffer, next);
      if (next === -1) return -1;
    }
    return type === '|' ? (next >= buffer.length ? -1 : replyEnd(buffer, next)) : next;
  }
  throw new Error(`unknown reply type ${JSON.stringify(type)}`);
}

/** Split a byte stream into replies; throws if any is malformed or the last one is cut. */
function replies(data: Buffer): string[] {
  const out: string[] = [];
  let offset = 0;
  while (offset < data.length) {
    const end = replyEnd(data, offset);
    if (end === -1) throw new Error(`incomplete reply at ${offset}: ${JSON.stringify(data.toString('latin1', offset, offset + 60))}`);
    out.push(data.toString('latin1', offset, end));
    offset = end;
  }
  return out;
}

/** Send one input on its own connection, end our side, collect until the server closes. */
async function exchange(port: number, input: Buffer): Promise<{ data: Buffer; closed: boolean }> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {});
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  await once(socket, 'connect');
  const closed = new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), 3000);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
  socket.end(input);
  const wasClosed = await closed;
  socket.destroy();
  return { data: Buffer.concat(chunks), closed: wasClosed };
}

describe('fuzzing the RESP port', () => {
  let service: PortService;
  let port = 0;
  const resp = respAdapter({ queryBufferLimit: 4 * 1024 * 1024 });
  const store = new Map<string, Buffer>();

  beforeAll(async () => {
    resp.command('set', { arity: 3, flags: ['write'] }, (client, [, key, value]) => {
      store.set(String(key), Buffer.from(value as Buffer));
      resp.touch(client.db, String(key));
      return OK;
    });
    resp.command('get', { arity: 2, flags: ['readonly'] }, (_client, [, key]) => store.get(String(key)) ?? null);
    resp.command(
      'del',
      { arity: -2, flags: ['write'] },
      (_client, argv) => argv.slice(1).filter((key) => store.delete(String(key))).length,
    );
    service = new PortService({ env: {}, gracePeriodMs: 5000 });
    const binding = service.bind(resp, { port: 0, host: '127.0.0.1', closeWaitMs: 500 });
    await service.start();
    port = portOf(binding);
  });

  afterAll(async () => {
    await service.stop();
  });

  it(`${INPUTS} mutated inputs, one connection each: well-formed answers, the process lives, a well-behaved client is served throughout`, async () => {
    const random = prng(SEED);
    const inputs = Array.from({ length: INPUTS }, () => mutate(random));
    const redis = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    await redis.connect();
    let served = 0;
    const failures: string[] = [];
    let fuzzing = true;
    const wellBehaved = (async () => {
      for (let i = 0; fuzzing; i++) {
        try {
          const value = `value-${i}`;
          if ((await redis.set(`good:${i % 10}`, value)) !== 'OK') failures.push(`SET ${i}`);
          if ((await redis.get(`good:${i % 10}`)) !== value) failures.push(`GET ${i}`);
          served++;
        } catch (error) {
          failures.push(String(error));
          return;
        }
        await sleep(10);
      }
    })();

    const counts = { inputs: 0, closedByServer: 0, protocolErrors: 0, replies: 0, silentCloses: 0 };
    const malformed: string[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < inputs.length) {
          const index = next++;
          const input = inputs[index] as Buffer;
          const { data, closed } = await exchange(port, input);
          counts.inputs++;
          if (closed) counts.closedByServer++;
          try {
            const answers = replies(data);
            counts.replies += answers.length;
            if (answers.length === 0) counts.silentCloses++;
            if (answers.some((answer) => answer.startsWith('-ERR Protocol error'))) counts.protocolErrors++;
          } catch (error) {
            malformed.push(`input #${index} ${JSON.stringify(input.toString('latin1'))}: ${(error as Error).message}`);
          }
        }
      }),
    );
    fuzzing = false;
    await wellBehaved;
    console.log(`resp fuzz: ${JSON.stringify({ ...counts, wellBehavedRoundTrips: served })}`);

    expect(malformed).toEqual([]);
    expect(counts.inputs).toBe(INPUTS);
    expect(counts.closedByServer).toBe(INPUTS);
    expect(counts.protocolErrors).toBeGreaterThan(100);
    expect(failures).toEqual([]);
    expect(served).toBeGreaterThan(10);
    // Still serving, nothing left behind.
    expect(await redis.ping()).toBe('PONG');
    const deadline = Date.now() + 5000;
    while (resp.clients.size > 1 && Date.now() < deadline) await sleep(20);
    expect(resp.clients.size).toBe(1);
    expect(resp.queryBytes).toBe(0);
    redis.disconnect();
  }, 60_000);
});
