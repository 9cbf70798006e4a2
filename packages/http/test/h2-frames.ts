import { once } from 'node:events';
import { connect, type Socket } from 'node:net';

/** Hand-written HTTP/2 frames (RFC 9113 §4, §6) for tests that must send what a real client never would. */

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export const FrameType = {
  DATA: 0,
  HEADERS: 1,
  RST_STREAM: 3,
  SETTINGS: 4,
  PING: 6,
  GOAWAY: 7,
  WINDOW_UPDATE: 8,
  CONTINUATION: 9,
} as const;

export const ErrorCode = {
  NO_ERROR: 0,
  PROTOCOL_ERROR: 1,
  INTERNAL_ERROR: 2,
  SETTINGS_TIMEOUT: 4,
  REFUSED_STREAM: 7,
  CANCEL: 8,
  ENHANCE_YOUR_CALM: 11,
} as const;

const END_STREAM = 0x1;
const END_HEADERS = 0x4;
const ACK = 0x1;

export function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

export function settings(values: Record<number, number> = {}): Buffer {
  const entries = Object.entries(values);
  const payload = Buffer.alloc(entries.length * 6);
  entries.forEach(([id, value], i) => {
    payload.writeUInt16BE(Number(id), i * 6);
    payload.writeUInt32BE(value, i * 6 + 2);
  });
  return frame(FrameType.SETTINGS, 0, 0, payload);
}

export const settingsAck = (): Buffer => frame(FrameType.SETTINGS, ACK, 0);

/** HPACK length prefix with an N-bit prefix (RFC 7541 §5.1), no Huffman. */
function integer(value: number, prefixBits: number, firstByte: number): number[] {
  const max = (1 << prefixBits) - 1;
  if (value < max) return [firstByte | value];
  const out = [firstByte | max];
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest % 128) + 128);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
  return out;
}

function literal(name: string, value: string): Buffer {
  // Literal header field without indexing, new name (RFC 7541 §6.2.2).
  const n = Buffer.from(name, 'latin1');
  const v = Buffer.from(value, 'latin1');
  return Buffer.concat([Buffer.from([0x00]), Buffer.from(integer(n.length, 7, 0)), n, Buffer.from(integer(v.length, 7, 0)), v]);
}

/** A header block for `GET path` (or another method) plus extra headers. */
type Fields = Record<string, string> | ReadonlyArray<readonly [string, string]>;

export function headerBlock(path: string, extra: Fields = {}, method = 'GET'): Buffer {
  const parts = [literal(':method', method), literal(':scheme', 'http'), literal(':authority', 'localhost'), literal(':path', path)];
  for (const [name, value] of Array.isArray(extra) ? extra : Object.entries(extra)) parts.push(literal(name, value));
  return Buffer.concat(parts);
}

/** HEADERS (and CONTINUATION frames past 16 384 bytes, the default SETTINGS_MAX_FRAME_SIZE) opening a stream. */
export function headers(streamId: number, path: string, options: { endStream?: boolean; extra?: Fields; method?: string } = {}): Buffer {
  const block = headerBlock(path, options.extra, options.method);
  const end = options.endStream === false ? 0 : END_STREAM;
  const size = 16_384;
  if (block.length <= size) return frame(FrameType.HEADERS, END_HEADERS | end, streamId, block);
  const frames = [frame(FrameType.HEADERS, end, streamId, block.subarray(0, size))];
  for (let at = size; at < block.length; at += size) {
    const last = at + size >= block.length;
    frames.push(frame(FrameType.CONTINUATION, last ? END_HEADERS : 0, streamId, block.subarray(at, at + size)));
  }
  return Buffer.concat(frames);
}

export function rstStream(streamId: number, code: number): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt32BE(code);
  return frame(FrameType.RST_STREAM, 0, streamId, payload);
}

export interface Frame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

export interface Goaway {
  lastStreamId: number;
  code: number;
}

export function goawayOf(f: Frame): Goaway {
  return { lastStreamId: f.payload.readUInt32BE(0) & 0x7fffffff, code: f.payload.readUInt32BE(4) };
}

/** A raw HTTP/2 connection: sends the preface and empty SETTINGS, ACKs the server's, collects every frame. */
export class RawH2 {
  readonly frames: Frame[] = [];
  closed = false;
  readonly socket: Socket;
  #buffer = Buffer.alloc(0);
  #waiters: Array<() => void> = [];

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => this.#receive(chunk));
    socket.on('error', () => {});
    socket.once('close', () => {
      this.closed = true;
      this.#wake();
    });
  }

  static async open(port: number, options: { preface?: boolean; ack?: boolean } = {}): Promise<RawH2> {
    const socket = connect(port, '127.0.0.1');
    await once(socket, 'connect');
    const raw = new RawH2(socket);
    raw.ackSettings = options.ack ?? true;
    if (options.preface ?? true) socket.write(Buffer.concat([PREFACE, settings()]));
    return raw;
  }

  ackSettings = true;
  ackPings = true;

  write(bytes: Buffer): void {
    if (!this.socket.destroyed) this.socket.write(bytes);
  }

  /** Resolves once a frame matches (or the connection closed: then undefined). */
  async until(match: (f: Frame) => boolean, timeoutMs = 10_000): Promise<Frame | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.frames.find(match);
      if (found !== undefined) return found;
      if (this.closed) return undefined;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no matching frame within ${timeoutMs} ms; got ${this.describe()}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  async untilClosed(timeoutMs = 10_000): Promise<void> {
    await this.until(() => false, timeoutMs);
  }

  goaways(): Goaway[] {
    return this.frames.filter((f) => f.type === FrameType.GOAWAY).map(goawayOf);
  }

  resets(): Array<{ streamId: number; code: number }> {
    return this.frames
      .filter((f) => f.type === FrameType.RST_STREAM)
      .map((f) => ({ streamId: f.streamId, code: f.payload.readUInt32BE(0) }));
  }

  /** DATA bytes received on a stream, as text. */
  body(streamId: number): string {
    return Buffer.concat(this.frames.filter((f) => f.type === FrameType.DATA && f.streamId === streamId).map((f) => f.payload)).toString();
  }

  ended(streamId: number): boolean {
    return this.frames.some(
      (f) => f.streamId === streamId && (f.type === FrameType.DATA || f.type === FrameType.HEADERS) && (f.flags & END_STREAM) !== 0,
    );
  }

  describe(): string {
    return JSON.stringify(this.frames.map((f) => ({ type: f.type, flags: f.flags, stream: f.streamId, length: f.payload.length })));
  }

  close(): void {
    this.socket.destroy();
  }

  #receive(chunk: Buffer): void {
    this.#buffer = Buffer.concat([this.#buffer, chunk]);
    while (this.#buffer.length >= 9) {
      const length = this.#buffer.readUIntBE(0, 3);
      if (this.#buffer.length < 9 + length) break;
      const f: Frame = {
        type: this.#buffer[3] as number,
        flags: this.#buffer[4] as number,
        streamId: this.#buffer.readUInt32BE(5) & 0x7fffffff,
        payload: Buffer.from(this.#buffer.subarray(9, 9 + length)),
      };
      this.#buffer = this.#buffer.subarray(9 + length);
      this.frames.push(f);
      if (f.type === FrameType.SETTINGS && (f.flags & ACK) === 0 && this.ackSettings) this.write(settingsAck());
      if (f.type === FrameType.PING && (f.flags & ACK) === 0 && this.ackPings) this.write(frame(FrameType.PING, ACK, 0, f.payload));
    }
    this.#wake();
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }
}
