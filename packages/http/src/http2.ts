import {
  constants,
  createServer,
  type Http2Server,
  type Http2ServerRequest,
  type Http2ServerResponse,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from 'node:http2';
import type { Socket } from 'node:net';
import type { BindingContext } from '@portbind/core';
import { ConfigError } from '@portbind/core';

/** Option `http2` of `httpAdapter`: HTTP/2 beside HTTP/1.1 on the same port. */
export interface Http2Options {
  /**
   * Streams a client may have open at once (`SETTINGS_MAX_CONCURRENT_STREAMS`); a stream over it is
   * refused with `RST_STREAM REFUSED_STREAM`. Default 100.
   */
  maxConcurrentStreams?: number;
  /**
   * Largest request header list in bytes (`SETTINGS_MAX_HEADER_LIST_SIZE`, names and values plus 32
   * per field). Default: the adapter's `maxHeaderSize` (16 384), as for HTTP/1.1.
   */
  maxHeaderListSize?: number;
  /**
   * How long a client has to acknowledge the server's SETTINGS (RFC 9113 §6.5.3), in ms: a client
   * that sent the preface and then nothing gets `GOAWAY SETTINGS_TIMEOUT` and is closed. Default:
   * the adapter's `headersTimeoutMs` (10 000).
   */
  settingsTimeoutMs?: number;
  /**
   * Rapid reset guard (CVE-2023-44487): a client that resets more than `maxResets` streams within
   * `resetWindowMs` gets `GOAWAY ENHANCE_YOUR_CALM` and its connection is closed. Default 100 resets
   * per 1000 ms — far above what a browser cancels, far below a flood.
   */
  maxResets?: number;
  /** The window of `maxResets`, in ms. Default 1000. */
  resetWindowMs?: number;
}

export const http2Defaults = { maxConcurrentStreams: 100, maxResets: 100, resetWindowMs: 1000 } as const;

/** HTTP/2's largest stream id (RFC 9113 §5.1.1): a GOAWAY with it announces a shutdown (§6.8). */
const MAX_STREAM_ID = 2 ** 31 - 1;

type Listener = (req: Http2ServerRequest, res: Http2ServerResponse) => void;

interface Settings {
  readonly maxConcurrentStreams: number;
  readonly maxHeaderListSize: number;
  readonly settingsTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly maxResets: number;
  readonly resetWindowMs: number;
}

/** Check option `http2` (`ConfigError` for a bad value); undefined when HTTP/2 is off. */
export function http2Settings(
  option: boolean | Http2Options | undefined,
  http1: { maxHeaderSize: number; headersTimeoutMs: number; keepAliveTimeoutMs: number },
): Settings | undefined {
  if (option === undefined || option === false) return undefined;
  if (option !== true && (typeof option !== 'object' || option === null)) {
    throw new ConfigError('http2', option, 'true, false, or an object of HTTP/2 options');
  }
  const given: Http2Options = option === true ? {} : option;
  const settings: Settings = {
    maxConcurrentStreams: given.maxConcurrentStreams ?? http2Defaults.maxConcurrentStreams,
    maxHeaderListSize: given.maxHeaderListSize ?? http1.maxHeaderSize,
    settingsTimeoutMs: given.settingsTimeoutMs ?? http1.headersTimeoutMs,
    idleTimeoutMs: http1.keepAliveTimeoutMs,
    maxResets: given.maxResets ?? http2Defaults.maxResets,
    resetWindowMs: given.resetWindowMs ?? http2Defaults.resetWindowMs,
  };
  for (const [key, value] of Object.entries(settings)) {
    if (!(typeof value === 'number' && Number.isInteger(value) && value >= 1)) {
      throw new ConfigError(`http2.${key}`, value, 'an integer ≥ 1');
    }
  }
  if (settings.maxConcurrentStreams > MAX_STREAM_ID)
    throw new ConfigError('http2.maxConcurrentStreams', settings.maxConcurrentStreams, 'at most 2^31 - 1');
  return settings;
}

interface SessionState {
  /** Streams open now. */
  open: number;
  /** Since when no stream has been open (ms since the epoch). */
  idleSince: number;
  /** Streams the client reset in the current window, and when the window began. */
  resets: number;
  windowStart: number;
  draining: boolean;
  readonly socket: Socket | undefined;
}

/**
 * HTTP/2 sessions of one HTTP binding: a `node:http2` server that never listens and is handed
 * sockets (h2 by ALPN, or h2c after its preface was seen), with the limits and the drain that
 * node:http2 lacks.
 */
export class Http2Front {
  readonly server: Http2Server;
  readonly #settings: Settings;
  readonly #binding: BindingContext;
  readonly #sessions = new Map<ServerHttp2Session, SessionState>();
  #pending: { socket: Socket; onSession: (session: ServerHttp2Session) => void } | undefined;
  #draining = false;
  #sweep: NodeJS.Timeout | undefined;
  #calmLogged = false;

  constructor(settings: Settings, binding: BindingContext, listener: Listener) {
    this.#settings = settings;
    this.#binding = binding;
    this.server = createServer(
      {
        settings: {
          maxConcurrentStreams: settings.maxConcurrentStreams,
          maxHeaderListSize: settings.maxHeaderListSize,
          enablePush: false,
        },
        maxHeaderListPairs: 256,
      },
      this.#counted(limitHeaders(settings.maxHeaderListSize, listener)),
    );
    this.server.on('session', (session: ServerHttp2Session) => this.#session(session));
    // Errors of a session are the peer's business (logged at debug): never an uncaught exception.
    this.server.on('sessionError', (error: Error) => binding.logger.debug({ err: error }, 'http2 session error'));
  }

  /** Serve HTTP/2 on `socket` (its preface, if already read, put back). `onSession` sees the new session first. */
  serve(socket: Socket, onSession: (session: ServerHttp2Session) => void): void {
    this.#pending = { socket, onSession };
    try {
      this.server.emit('connection', socket);
    } finally {
      this.#pending = undefined;
    }
  }

  /**
   * Drain as h2o does: a GOAWAY announcing the end (last stream id 2^31-1), a PING round trip for
   * the requests already on the wire, then the final GOAWAY with the last stream processed; the
   * streams in flight finish and the session closes. No accepted stream is reset.
   */
  drain(): void {
    this.#draining = true;
    for (const session of this.#sessions.keys()) this.#drainSession(session);
  }

  get sessions(): number {
    return this.#sessions.size;
  }

  #session(session: ServerHttp2Session): void {
    const pending = this.#pending;
    const state: SessionState = { open: 0, idleSince: Date.now(), resets: 0, windowStart: 0, draining: false, socket: pending?.socket };
    this.#sessions.set(session, state);
    this.#startSweep();
    pending?.onSession(session);
    const logger = this.#binding.logger;
    session.on('error', (error: Error) => logger.debug({ err: error }, 'http2 session error'));
    // The client must acknowledge our SETTINGS in time (RFC 9113 §6.5.3): a peer that sent the
    // preface and went silent is closed with SETTINGS_TIMEOUT.
    const settingsTimer = setTimeout(() => {
      logger.debug({ settingsTimeoutMs: this.#settings.settingsTimeoutMs }, 'http2: SETTINGS not acknowledged in time');
      session.destroy(new Error('http2: SETTINGS not acknowledged in time'), constants.NGHTTP2_SETTINGS_TIMEOUT);
    }, this.#settings.settingsTimeoutMs);
    session.once('localSettings', () => clearTimeout(settingsTimer));
    session.once('close', () => {
      clearTimeout(settingsTimer);
      this.#sessions.delete(session);
      const socket = state.socket;
      if (socket !== undefined && !socket.destroyed) this.#binding.closeSoon(socket);
    });
    if (this.#draining) this.#drainSession(session);
  }

  /**
   * Idle sessions, as HTTP/1.1's keep-alive timeout: no stream open for `keepAliveTimeoutMs` →
   * GOAWAY and close. One sweep for all sessions (a per-session timer would be refreshed on every
   * frame); it also closes a session node:http2 stopped reading after a connection error.
   */
  #startSweep(): void {
    if (this.#sweep !== undefined) return;
    const idleMs = this.#settings.idleTimeoutMs;
    this.#sweep = setInterval(
      () => {
        const now = Date.now();
        for (const [session, state] of this.#sessions) {
          if (state.open > 0 || now - state.idleSince < idleMs) continue;
          if (!session.closed && !session.destroyed) session.close();
          if (state.socket !== undefined) this.#binding.closeSoon(state.socket);
        }
        if (this.#sessions.size === 0) {
          clearInterval(this.#sweep);
          this.#sweep = undefined;
        }
      },
      Math.max(10, Math.min(1000, Math.floor(idleMs / 4))),
    );
    this.#sweep.unref();
  }

  /**
   * Count each stream of a session (open streams, resets by the client) in the request listener
   * itself: a second 'stream' listener would cost every request an event dispatch.
   */
  #counted(listener: Listener): Listener {
    const sessions = this.#sessions;
    return (req, res) => {
      const stream = req.stream as ServerHttp2Stream;
      const session = stream.session as ServerHttp2Session | undefined;
      const state = session === undefined ? undefined : sessions.get(session);
      if (state !== undefined) {
        state.open++;
        stream.on('close', () => {
          if (--state.open === 0) state.idleSince = Date.now();
          if (stream.rstCode !== constants.NGHTTP2_NO_ERROR) this.#clientReset(session as ServerHttp2Session, state);
        });
      }
      listener(req, res);
    };
  }

  /** A stream the client reset: over `maxResets` in `resetWindowMs`, GOAWAY ENHANCE_YOUR_CALM and close. */
  #clientReset(session: ServerHttp2Session, state: SessionState): void {
    const now = Date.now();
    if (now - state.windowStart >= this.#settings.resetWindowMs) {
      state.windowStart = now;
      state.resets = 0;
    }
    if (++state.resets <= this.#settings.maxResets || session.destroyed) return;
    const fields = {
      remoteAddress: state.socket?.remoteAddress,
      maxResets: this.#settings.maxResets,
      resetWindowMs: this.#settings.resetWindowMs,
    };
    if (this.#calmLogged) this.#binding.logger.debug(fields, 'http2: rapid reset flood, session closed (ENHANCE_YOUR_CALM)');
    else {
      this.#calmLogged = true;
      this.#binding.logger.warn(
        fields,
        'http2: a client reset streams faster than maxResets per resetWindowMs (rapid reset, CVE-2023-44487): its session is closed with ENHANCE_YOUR_CALM; more are logged at debug level',
      );
    }
    session.destroy(new Error('http2: rapid reset flood'), constants.NGHTTP2_ENHANCE_YOUR_CALM);
  }

  #drainSession(session: ServerHttp2Session): void {
    const state = this.#sessions.get(session);
    if (state === undefined || state.draining || session.closed || session.destroyed) return;
    state.draining = true;
    session.goaway(constants.NGHTTP2_NO_ERROR, MAX_STREAM_ID);
    let done = false;
    const final = (): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      // The final GOAWAY names the last stream processed; open streams finish, then the session closes.
      if (!session.closed && !session.destroyed) session.close();
    };
    // One round trip lets requests the client sent before it saw the first GOAWAY arrive.
    const timer = setTimeout(final, Math.min(1000, this.#binding.closeWaitMs));
    timer.unref();
    try {
      if (!session.ping(() => final())) final();
    } catch {
      final();
    }
  }
}

/**
 * A client may send a stream before it has acknowledged our SETTINGS, when node:http2 still
 * applies its own 64 KiB header limit (after the ACK it resets a larger stream with
 * ENHANCE_YOUR_CALM): such a request over `maxHeaderListSize` gets 431, as over HTTP/1.1.
 */
function limitHeaders(limit: number, listener: Listener): Listener {
  return (req, res) => {
    const raw = req.rawHeaders;
    // RFC 9113 §6.5.2: the size of a field is its name and value in octets plus 32.
    // (A second Host header never gets here: nghttp2 resets such a stream with PROTOCOL_ERROR.)
    let size = 0;
    for (let i = 0; i < raw.length; i += 2) size += (raw[i] as string).length + (raw[i + 1] as string).length + 32;
    if (size > limit) return refuse(res, 431, 'Request Header Fields Too Large');
    listener(req, res);
  };
}

function refuse(res: Http2ServerResponse, status: number, text: string): void {
  res.statusCode = status;
  res.setHeader('content-type', 'text/plain; charset=utf-8');
  res.end(`${text}\n`);
}

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/**
 * Read a plaintext connection's first bytes: h2c with prior knowledge (`PRI * HTTP/2.0…`) or not.
 * Every byte read is put back. A peer silent for `timeoutMs` is closed.
 */
export function sniffPreface(socket: Socket, timeoutMs: number, done: (h2c: boolean) => void): void {
  let chunks: Buffer[] = [];
  let total = 0;
  let finished = false;
  const finish = (h2c: boolean | undefined): void => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    socket.off('readable', onReadable);
    socket.off('close', onClose);
    if (total > 0) socket.unshift(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, total));
    chunks = [];
    if (h2c !== undefined) done(h2c);
  };
  const onClose = (): void => finish(undefined);
  const onReadable = (): void => {
    let chunk: Buffer | null;
    // biome-ignore lint/suspicious/noAssignInExpressions: the usual stream read loop
    while (!finished && (chunk = socket.read() as Buffer | null) !== null) {
      chunks.push(chunk);
      total += chunk.length;
    }
    if (finished || total === 0) return;
    const head = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, total);
    chunks = [head];
    const n = Math.min(head.length, PREFACE.length);
    if (head.compare(PREFACE, 0, n, 0, n) !== 0) finish(false);
    else if (n === PREFACE.length) finish(true);
  };
  const timer = setTimeout(() => {
    finish(undefined);
    socket.destroy();
  }, timeoutMs);
  socket.on('readable', onReadable);
  socket.once('close', onClose);
}
