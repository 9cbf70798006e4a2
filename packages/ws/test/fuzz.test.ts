import { once } from 'node:events';
import { PortService } from '@portbind/core';
import { httpAdapter } from '@portbind/http';
import { afterAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { portOf } from '../../../test/support/net.js';
import { capturingLogger, exchange, type LogLine, Mutator, pool } from '../../http/test/fuzz-support.js';
import { wsEndpoint } from '../src/index.js';

const SEED = 0x5757;
const INPUTS = 2500;
const CONCURRENCY = 16;
const PER_INPUT_TIMEOUT_MS = 120;
const CHECK_EVERY = 100;
const MAX_PAYLOAD = 64 * 1024;

const upgrade = Buffer.from(
  'GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n' +
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: chat, superchat\r\n\r\n',
  'latin1',
);

/** An RFC 6455 frame as a client sends it (masked unless told otherwise). */
function frame(
  opcode: number,
  payload: Buffer | string,
  options: { fin?: boolean; mask?: boolean; rsv?: number; length?: 'auto' | '16' | '64'; declared?: number } = {},
): Buffer {
  const data = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const { fin = true, mask = true, rsv = 0, length = 'auto' } = options;
  const declared = options.declared ?? data.length;
  const form = length === 'auto' ? (declared < 126 ? '7' : declared < 65536 ? '16' : '64') : length;
  const head = [(fin ? 0x80 : 0) | (rsv << 4) | opcode];
  const maskBit = mask ? 0x80 : 0;
  const extended: number[] = [];
  if (form === '7') head.push(maskBit | declared);
  else if (form === '16') {
    head.push(maskBit | 126);
    extended.push((declared >> 8) & 0xff, declared & 0xff);
  } else {
    head.push(maskBit | 127);
    const big = Buffer.alloc(8);
    big.writeBigUInt64BE(BigInt(declared));
    extended.push(...big);
  }
  const key = Buffer.from([0x12, 0x34, 0x56, 0x78]);
  const body = Buffer.from(data);
  if (mask) for (let i = 0; i < body.length; i++) body[i] = (body[i] as number) ^ (key[i % 4] as number);
  return Buffer.concat([Buffer.from(head), Buffer.from(extended), mask ? key : Buffer.alloc(0), body]);
}

const closePayload = (code: number, reason = ''): Buffer => {
  const out = Buffer.alloc(2 + Buffer.byteLength(reason));
  out.writeUInt16BE(code);
  out.write(reason, 2);
  return out;
};

/** Valid (and a few deliberately invalid) client conversations, as a `ws` client sends them. */
const conversations: Buffer[][] = [
  [frame(1, 'hello')],
  [frame(2, Buffer.alloc(200, 7))],
  [frame(9, 'ping?'), frame(1, 'after ping')],
  [frame(1, 'hel', { fin: false }), frame(0, 'lo')],
  [frame(1, 'frag', { fin: false }), frame(9, 'in between'), frame(0, 'mented')],
  [frame(1, 'x'.repeat(300))],
  [frame(1, 'sixteen', { length: '16' })],
  [frame(2, 'sixty-four', { length: '64' })],
  [frame(8, closePayload(1000, 'bye'))],
  [frame(10, 'unsolicited pong'), frame(1, 'ok')],
  [frame(1, 'a'), frame(1, 'b'), frame(1, 'c'), frame(8, closePayload(1001))],
  [frame(2, Buffer.alloc(MAX_PAYLOAD + 1), { length: '64' })],
  [frame(1, 'not masked', { mask: false })],
  [frame(1, Buffer.from([0xc3, 0x28, 0xa0, 0xa1]))],
  [frame(1, 'rsv', { rsv: 4 })],
  [frame(3, 'reserved opcode')],
  [frame(9, 'p'.repeat(126))],
  [frame(8, closePayload(999))],
  [frame(1, 'claims more', { declared: 2 ** 40 })],
].map((frames) => [upgrade, ...frames]);

const corpus = conversations.map((parts) => Buffer.concat(parts));

const lines: LogLine[] = [];
const service = new PortService({ env: {}, logger: capturingLogger(lines), gracePeriodMs: 2000 });
afterAll(async () => {
  await service.stop();
});

describe('WebSocket fuzz', () => {
  it(`${INPUTS} mutated upgrades and frames, one connection each: the server lives, a good client is served throughout, no error logs`, async () => {
    const endpoint = wsEndpoint({
      protocols: ['chat'],
      maxPayload: MAX_PAYLOAD,
      message: (conn, data, isBinary) => {
        conn.send(isBinary ? (data as Buffer) : data.toString());
      },
    });
    const binding = service.bind(httpAdapter({ upgrades: { '/ws': endpoint }, fetch: () => new Response('http ok') }), {
      port: 0,
      host: '127.0.0.1',
      closeWaitMs: 200,
    });
    await service.start();
    const port = portOf(binding);
    const mutator = new Mutator(SEED);
    const inputs = Array.from({ length: INPUTS }, () => {
      const base = mutator.pick(corpus);
      // Mostly keep the handshake valid so the frames reach the WebSocket parser.
      if (mutator.random() < 0.2) return mutator.mutate(base, corpus);
      const frames = base.subarray(upgrade.length);
      return Buffer.concat([
        upgrade,
        mutator.mutate(
          frames,
          corpus.map((entry) => entry.subarray(upgrade.length)),
        ),
      ]);
    });

    const good = new WebSocket(`ws://127.0.0.1:${port}/ws`, 'chat');
    await once(good, 'open');
    let goodChecks = 0;
    const check = async (): Promise<void> => {
      const text = `check ${goodChecks}`;
      const reply = once(good, 'message') as Promise<[Buffer]>;
      good.send(text);
      expect((await reply)[0].toString()).toBe(text);
      // A new client too, not only the long-lived one.
      const fresh = new WebSocket(`ws://127.0.0.1:${port}/ws`, 'chat');
      await once(fresh, 'open');
      fresh.close(1000);
      await once(fresh, 'close');
      goodChecks++;
    };

    const statuses = new Map<string, number>();
    let closedByServer = 0;
    const started = Date.now();
    await pool(inputs, CONCURRENCY, async (input, index) => {
      const result = await exchange(port, input, mutator.random, PER_INPUT_TIMEOUT_MS);
      const status = result.status ?? (result.received === 0 ? 'none' : 'other');
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
      if (result.closed) closedByServer++;
      if (index % CHECK_EVERY === 0) await check();
    });
    await check();
    const took = Date.now() - started;
    expect(await (await fetch(`http://127.0.0.1:${port}/`)).text()).toBe('http ok');
    good.close(1000);
    await once(good, 'close');

    expect(service.state).toBe('running');
    const errors = lines.filter((line) => line.level === 'error');
    expect([
      ...new Set(errors.map((line) => `${line.message}: ${String((line.fields as { err?: Error }).err?.stack).slice(0, 600)}`)),
    ]).toEqual([]);
    console.log(
      `WebSocket fuzz: seed ${SEED}, ${INPUTS} inputs in ${took} ms, ${closedByServer} closed by the server, ` +
        `handshake statuses ${JSON.stringify(Object.fromEntries([...statuses].sort()))}, ${goodChecks} good-client checks, ` +
        `${errors.length} error lines, ${lines.filter((line) => line.level === 'warn').length} warn lines, ` +
        `${lines.filter((line) => line.message === 'WebSocket error').length} WebSocket protocol errors (debug)`,
    );
    expect(goodChecks).toBe(Math.ceil(INPUTS / CHECK_EVERY) + 1);
    // Most inputs got past the handshake to the frame parser (a typical run: ~2,100 × 101), and
    // the parser rejected plenty (~1,600); the bounds are loose so a slow machine does not flake.
    expect(statuses.get('101') ?? 0).toBeGreaterThan(INPUTS / 4);
    expect(lines.filter((line) => line.message === 'WebSocket error').length).toBeGreaterThan(100);
  }, 60_000);
});
