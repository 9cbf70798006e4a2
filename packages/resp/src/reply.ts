// The reply side of RESP. Handler code is the same whatever the client negotiated: on RESP2 a map
// becomes a flat array, a set an array, a double or big number a bulk string, a boolean an
// integer, a null a null bulk ($-1), a push an array, and attributes are left out — as Redis's
// addReply* helpers do (networking.c).

/** A reply value a handler can return instead of writing through the {@link ReplyWriter}. */
export type ReplyValue =
  | string
  | Buffer
  | number
  | bigint
  | boolean
  | null
  | SimpleString
  | RespError
  | readonly ReplyValue[]
  | ReadonlyMap<ReplyValue, ReplyValue>
  | ReadonlySet<ReplyValue>;

/** A simple string (`+OK`), as opposed to a bulk string. */
export class SimpleString {
  constructor(readonly value: string) {}
}

/** `+OK`. */
export const OK = new SimpleString('OK');

/** Shorthand for a simple-string reply value. */
export function simple(value: string): SimpleString {
  return new SimpleString(value);
}

/**
 * An error reply. The message starts with its code, as Redis's do: `ERR …`, `WRONGTYPE …`,
 * `NOAUTH …`. Throw it from a handler (or return it) to answer with it; the connection lives on.
 */
export class RespError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RespError';
  }

  /** The error code: the first word of the message. */
  get code(): string {
    const space = this.message.indexOf(' ');
    return space === -1 ? this.message : this.message.slice(0, space);
  }
}

const CRLF = '\r\n';

/**
 * Writes replies into a connection's output, in the protocol version the client negotiated.
 * Writes are collected and flushed in one socket write per batch of commands.
 */
/** The chunks of a writer holding none: shared, never pushed to (a writer makes its own on its first chunk). */
const NO_CHUNKS: Buffer[] = [];

export class ReplyWriter {
  /** 2 or 3: the protocol the client negotiated with HELLO. */
  protocol: 2 | 3 = 2;
  /** How doubles are printed: the adapter sets it from its serverVersion (7.0: `%.17g`). */
  doubleFormat: DoubleFormat = 'shortest';
  #text = '';
  /** False once #text holds a non-ASCII character: then it must go out as UTF-8. */
  #latin1 = true;
  #chunks: Buffer[] = NO_CHUNKS;
  #length = 0;

  /** Bytes written and not yet flushed. */
  get pending(): number {
    return this.#length + this.#text.length;
  }

  /** `+OK` */
  simple(value: string): this {
    return this.#text8(`+${clean(value)}${CRLF}`);
  }

  /** `+OK` */
  ok(): this {
    return this.#raw(`+OK${CRLF}`);
  }

  /** `-ERR message`: the message starts with its code (`ERR`, `WRONGTYPE`, …). */
  error(message: string): this {
    return this.#text8(`-${clean(message)}${CRLF}`);
  }

  /** `:42` */
  integer(value: number | bigint): this {
    return this.#raw(`:${typeof value === 'number' ? Math.trunc(value) : value}${CRLF}`);
  }

  /** `$3\r\nfoo` — or a null bulk for `null`. */
  bulk(value: string | Buffer | null): this {
    if (value === null) return this.null();
    if (typeof value === 'string') {
      const length = Buffer.byteLength(value);
      if (length !== value.length) this.#latin1 = false;
      return this.#raw(`$${length}${CRLF}${value}${CRLF}`);
    }
    this.#raw(`$${value.length}${CRLF}`);
    this.#buffer(value);
    return this.#raw(CRLF);
  }

  /** RESP3 `_`, RESP2 `$-1`. */
  null(): this {
    return this.#raw(this.protocol === 3 ? `_${CRLF}` : `$-1${CRLF}`);
  }

  /** RESP3 `_`, RESP2 `*-1` (an aborted EXEC, a blocking pop that timed out). */
  nullArray(): this {
    return this.#raw(this.protocol === 3 ? `_${CRLF}` : `*-1${CRLF}`);
  }

  /** An array header `*N`: write N replies after it. Or give the items. */
  array(items: number | readonly ReplyValue[]): this {
    if (typeof items === 'number') return this.#raw(`*${items}${CRLF}`);
    this.#raw(`*${items.length}${CRLF}`);
    for (const item of items) this.value(item);
    return this;
  }

  /** A map header (`%N`, RESP2 `*2N`): write N keys and values after it. Or give the entries. */
  map(entries: number | ReadonlyMap<ReplyValue, ReplyValue> | ReadonlyArray<readonly [ReplyValue, ReplyValue]>): this {
    if (typeof entries === 'number') return this.#raw(this.protocol === 3 ? `%${entries}${CRLF}` : `*${entries * 2}${CRLF}`);
    const list = entries instanceof Map ? [...entries] : (entries as ReadonlyArray<readonly [ReplyValue, ReplyValue]>);
    this.map(list.length);
    for (const [key, value] of list) {
      this.value(key);
      this.value(value);
    }
    return this;
  }

  /** A set header (`~N`, RESP2 `*N`). Or give the members. */
  set(members: number | Iterable<ReplyValue>): this {
    if (typeof members === 'number') return this.#raw(this.protocol === 3 ? `~${members}${CRLF}` : `*${members}${CRLF}`);
    const list = [...members];
    this.set(list.length);
    for (const member of list) this.value(member);
    return this;
  }

  /**
   * RESP3 `,3.14`, RESP2 a bulk string of the same text, as {@link ReplyWriter.doubleFormat} prints it — or as
   * `text` says, where a command prints its doubles its own way (Redis's addReplyHumanLongDouble: `%.17Lf`).
   */
  double(value: number, text: string = formatDouble(value, this.doubleFormat)): this {
    return this.protocol === 3 ? this.#raw(`,${text}${CRLF}`) : this.bulk(text);
  }

  /** RESP3 `#t`/`#f`, RESP2 `:1`/`:0`. */
  boolean(value: boolean): this {
    if (this.protocol === 3) return this.#raw(value ? `#t${CRLF}` : `#f${CRLF}`);
    return this.#raw(value ? `:1${CRLF}` : `:0${CRLF}`);
  }

  /** RESP3 `(12345…`, RESP2 a bulk string of the digits. */
  bigNumber(value: bigint | string): this {
    const text = String(value);
    return this.protocol === 3 ? this.#raw(`(${text}${CRLF}`) : this.bulk(text);
  }

  /** RESP3 `=N\r\ntxt:…`, RESP2 a plain bulk string of the text. */
  verbatim(text: string, format = 'txt'): this {
    if (this.protocol !== 3) return this.bulk(text);
    return this.#text8(`=${Buffer.byteLength(text) + 4}${CRLF}${format.slice(0, 3).padEnd(3)}:${text}${CRLF}`);
  }

  /** RESP3 push header `>N` (out-of-band data such as pub/sub messages), RESP2 `*N`. */
  push(length: number): this {
    return this.#raw(this.protocol === 3 ? `>${length}${CRLF}` : `*${length}${CRLF}`);
  }

  /**
   * RESP3 attributes `|N` before the next reply: write N keys and values after it. Returns
   * false on RESP2, where attributes do not exist: write nothing then.
   */
  attribute(length: number): boolean {
    if (this.protocol !== 3) return false;
    this.#raw(`|${length}${CRLF}`);
    return true;
  }

  /** Write any {@link ReplyValue}: strings and Buffers as bulk, numbers as integers (doubles when fractional or past 64 bits). */
  value(value: ReplyValue): this {
    if (value === OK) return this.#raw(`+OK${CRLF}`);
    if (Buffer.isBuffer(value)) return this.bulk(value);
    if (value === null) return this.null();
    if (typeof value === 'string' || Buffer.isBuffer(value)) return this.bulk(value);
    if (typeof value === 'number') return Number.isInteger(value) && Math.abs(value) < 2 ** 63 ? this.integer(value) : this.double(value);
    if (typeof value === 'bigint') return this.integer(value);
    if (typeof value === 'boolean') return this.boolean(value);
    if (value instanceof SimpleString) return this.simple(value.value);
    if (value instanceof RespError) return this.error(value.message);
    if (value instanceof Map) return this.map(value);
    if (value instanceof Set) return this.set(value);
    return this.array(value as readonly ReplyValue[]);
  }

  /**
   * Take what was written: a latin1 string when it is plain text (most replies: the socket
   * encodes it without a Buffer allocation here), else one Buffer; undefined when nothing was.
   */
  take(): string | Buffer | undefined {
    if (this.#chunks.length === 0) {
      const text = this.#text;
      if (text === '') return undefined;
      this.#text = '';
      if (this.#latin1) return text;
      this.#latin1 = true;
      return Buffer.from(text, 'utf8');
    }
    this.#flushText();
    const out = this.#chunks.length === 1 ? (this.#chunks[0] as Buffer) : Buffer.concat(this.#chunks, this.#length);
    this.#chunks = NO_CHUNKS;
    this.#length = 0;
    return out;
  }

  /** @internal A point to {@link ReplyWriter.rollback} to: what is written after it can be dropped. */
  checkpoint(): number {
    this.#flushText();
    return this.#chunks.length;
  }

  /** @internal Drop what was written since the checkpoint (CLIENT UNBLOCK … ERROR replaces a reply). */
  rollback(checkpoint: number): void {
    this.#flushText();
    while (this.#chunks.length > checkpoint) this.#length -= (this.#chunks.pop() as Buffer).length;
  }

  /** Text that may hold non-ASCII characters (they go out as UTF-8). */
  #text8(text: string): this {
    if (this.#latin1 && nonAscii.test(text)) this.#latin1 = false;
    return this.#raw(text);
  }

  #raw(text: string): this {
    this.#text += text;
    return this;
  }

  #buffer(buffer: Buffer): void {
    // Small payloads are cheaper copied into the text run than kept as a separate chunk.
    if (buffer.length < 512 && isAscii(buffer)) {
      this.#text += buffer.toString('latin1');
      return;
    }
    this.#flushText();
    this.#chunk(buffer);
  }

  #flushText(): void {
    if (this.#text === '') return;
    const chunk = Buffer.from(this.#text, this.#latin1 ? 'latin1' : 'utf8');
    this.#latin1 = true;
    this.#chunk(chunk);
    this.#text = '';
  }

  #chunk(chunk: Buffer): void {
    if (this.#chunks === NO_CHUNKS) this.#chunks = [chunk];
    else this.#chunks.push(chunk);
    this.#length += chunk.length;
  }
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: the range is every ASCII character, on purpose
const nonAscii = /[^\x00-\x7f]/;

function isAscii(buffer: Buffer): boolean {
  for (let i = 0; i < buffer.length; i++) if ((buffer[i] as number) > 0x7f) return false;
  return true;
}

/** Simple strings and errors cannot hold CR or LF: Redis turns them into spaces. */
function clean(text: string): string {
  return text.includes('\r') || text.includes('\n') ? text.replace(/[\r\n]/g, ' ') : text;
}

/**
 * How a double is printed (networking.c, addReplyDouble): Redis 7.2 and later print the shortest
 * text that reads back as the same double (util.c d2string: integers up to 2^62 plainly, else
 * fpconv_dtoa); Redis 7.0 prints C's printf("%.17g"). The adapter picks one from its serverVersion.
 */
export type DoubleFormat = 'shortest' | '%.17g';

/**
 * A double as the given Redis prints it: `inf`, `-inf`, `nan`, `-0` either way, else
 * {@link DoubleFormat}'s text (`0.1` from 7.2, `0.10000000000000001` from 7.0).
 */
export function formatDouble(value: number, format: DoubleFormat = 'shortest'): string {
  if (Number.isNaN(value)) return 'nan';
  if (value === Number.POSITIVE_INFINITY) return 'inf';
  if (value === Number.NEGATIVE_INFINITY) return '-inf';
  if (value === 0) return Object.is(value, -0) ? '-0' : '0';
  return format === 'shortest' ? shortest(value) : printf17g(value);
}

/** Redis 7.2's d2string: integers within ±2^62 as integers, else fpconv_dtoa's layout of the shortest digits. */
function shortest(value: number): string {
  if (Number.isInteger(value) && Math.abs(value) <= 2 ** 62) return value.toFixed(0);
  // toExponential() without a precision gives the shortest round-trip digits: `d.ddde±x`.
  const [mantissa, exponentText] = value.toExponential().split('e') as [string, string];
  const negative = value < 0;
  const digits = mantissa.replace('-', '').replace('.', '');
  const n = digits.length;
  const K = Number(exponentText) - (n - 1); // value = digits × 10^K (fpconv's K)
  const exp = Math.abs(K + n - 1);
  let text: string;
  if (K >= 0 && exp < n + 7) text = digits + '0'.repeat(K);
  else if (K < 0 && (K > -7 || exp < 4)) {
    const offset = n + K;
    text = offset <= 0 ? `0.${'0'.repeat(-offset)}${digits}` : `${digits.slice(0, offset)}.${digits.slice(offset)}`;
  } else text = `${digits[0]}${n > 1 ? `.${digits.slice(1)}` : ''}e${K + n - 1 < 0 ? '-' : '+'}${exp}`;
  return negative ? `-${text}` : text;
}

/** C's printf("%.17g"), as Redis 7.0 prints a double. */
function printf17g(value: number): string {
  const [mantissa, exponentText] = value.toExponential(16).split('e') as [string, string];
  const exponent = Number(exponentText);
  let digits = mantissa.replace('-', '').replace('.', '');
  // toExponential rounds an exact tie away from zero, printf to even (1125899906842623.25 → …623.2).
  const [longer, longerExponent] = value.toExponential(17).split('e') as [string, string];
  const eighteen = longer.replace('-', '').replace('.', '');
  if (eighteen.endsWith('5') && Number(longerExponent) === exponent && Number(eighteen[16]) % 2 === 0 && exact(value, eighteen, exponent)) {
    digits = eighteen.slice(0, 17);
  }
  let text: string;
  if (exponent < -4 || exponent >= 17) {
    const fraction = digits.slice(1).replace(/0+$/, '');
    const power = `${exponent < 0 ? '-' : '+'}${String(Math.abs(exponent)).padStart(2, '0')}`;
    text = `${digits[0]}${fraction ? `.${fraction}` : ''}e${power}`;
  } else if (exponent >= 0) {
    const whole = digits.slice(0, exponent + 1);
    const fraction = digits.slice(exponent + 1).replace(/0+$/, '');
    text = fraction ? `${whole}.${fraction}` : whole;
  } else {
    text = `0.${'0'.repeat(-exponent - 1)}${digits.replace(/0+$/, '')}`;
  }
  return value < 0 ? `-${text}` : text;
}

/** True when |value| is exactly 0.d₁d₂…dₙ × 10^(exponent+1), the digits `digits` (d.ddd…e±exponent). */
function exact(value: number, digits: string, exponent: number): boolean {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, Math.abs(value));
  const bits = view.getBigUint64(0);
  const biased = Number(bits >> 52n);
  const fraction = bits & ((1n << 52n) - 1n);
  const mantissa = biased === 0 ? fraction : fraction | (1n << 52n);
  const power2 = (biased === 0 ? 1 : biased) - 1075; // |value| = mantissa × 2^power2
  const power10 = exponent - (digits.length - 1); // the text = digits × 10^power10
  const left = BigInt(digits) * (power10 > 0 ? 10n ** BigInt(power10) : 1n) * (power2 < 0 ? 1n << BigInt(-power2) : 1n);
  const right = mantissa * (power2 > 0 ? 1n << BigInt(power2) : 1n) * (power10 < 0 ? 10n ** BigInt(-power10) : 1n);
  return left === right;
}
