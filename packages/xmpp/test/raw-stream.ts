import { once } from 'node:events';
import type { Socket } from 'node:net';
import { afterEach } from 'vitest';
import { rawLogin } from './support.js';

// A raw client stream for tests that read the server's exact elements (blocking, MAM, …): logged in
// over STARTTLS with PLAIN, splitting what arrives into top-level elements, closed after each test.

/** A logged-in raw stream that reads whole top-level elements, in order. */
export class Raw {
  #buffer = '';
  #elements: string[] = [];
  #waiters: Array<() => void> = [];
  closed = false;
  readonly socket: Socket;

  constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.#buffer += chunk.toString('utf8');
      this.#split();
    });
    socket.on('close', () => {
      this.closed = true;
      this.#wake();
    });
    socket.on('error', () => {});
    socket.resume();
  }

  static async login(port: number, user: string, password: string, resource: string): Promise<Raw> {
    const raw = new Raw(await rawLogin(port, user, password, resource));
    clientsToClose.push(raw);
    return raw;
  }

  send(text: string): void {
    this.socket.write(text);
  }

  /** The next element matching `pattern` (others before it stay queued). */
  async next(pattern: RegExp, timeoutMs = 10_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const index = this.#elements.findIndex((element) => pattern.test(element));
      if (index !== -1) return this.#elements.splice(index, 1)[0] as string;
      if (this.closed) throw new Error(`stream closed waiting for ${pattern}; queued: ${JSON.stringify(this.#elements)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${pattern}; queued: ${JSON.stringify(this.#elements)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** An IQ's answer (by id); a set unless `attrs` say otherwise. */
  iq(id: string, body: string, attrs = "type='set'"): Promise<string> {
    this.send(`<iq id='${id}' ${attrs}>${body}</iq>`);
    return this.next(new RegExp(`^<iq[^>]* id='${id}'`));
  }

  /** A round trip to the server: everything the server wrote before its answer is queued after this. */
  async sync(): Promise<void> {
    const id = `sync${Math.random().toString(36).slice(2)}`;
    await this.iq(id, "<ping xmlns='urn:xmpp:ping'/>", "type='get' to='localhost'");
  }

  /** Elements received and not yet taken. */
  queued(): string[] {
    return [...this.#elements];
  }

  /** Every element queued so far matching `pattern`, taken. */
  take(pattern: RegExp): string[] {
    const taken = this.#elements.filter((element) => pattern.test(element));
    this.#elements = this.#elements.filter((element) => !pattern.test(element));
    return taken;
  }

  #split(): void {
    const tag = /<(\/?)([\w:.-]+)(?:[^>'"]|'[^']*'|"[^"]*")*?(\/?)>/g;
    let depth = 0;
    let start = -1;
    let consumed = 0;
    for (let match = tag.exec(this.#buffer); match !== null; match = tag.exec(this.#buffer)) {
      const [text, closing, name, selfClosing] = match;
      if (depth === 0 && closing === '' && name !== 'stream:stream') start = match.index;
      if (name === 'stream:stream') {
        consumed = match.index + text.length;
        continue;
      }
      if (closing === '/') depth--;
      else if (selfClosing !== '/') depth++;
      if (depth === 0 && start !== -1) {
        this.#elements.push(this.#buffer.slice(start, match.index + text.length));
        consumed = match.index + text.length;
        start = -1;
      }
    }
    this.#buffer = this.#buffer.slice(consumed);
    this.#wake();
  }

  #wake(): void {
    for (const waiter of this.#waiters.splice(0)) waiter();
  }
}

const clientsToClose: Raw[] = [];

afterEach(() => {
  for (const raw of clientsToClose.splice(0)) raw.socket.destroy();
});

/** A raw stream: everything received, and waits for patterns past what earlier waits consumed. */
export class RawTranscript {
  text = '';
  #pos = 0;
  closed = false;
  readonly #waiters = new Set<() => void>();
  constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.text += chunk.toString('utf8');
      for (const wake of this.#waiters) wake();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closed = true;
      for (const wake of this.#waiters) wake();
    });
    socket.resume();
  }

  write(text: string): void {
    this.socket.write(text);
  }

  /** The text up to and including the next match of `pattern` (after the previous wait's). */
  until(pattern: RegExp, timeoutMs = 10_000): Promise<string> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const rest = this.text.slice(this.#pos);
        const match = new RegExp(pattern.source, pattern.flags.replace('g', '')).exec(rest);
        if (match !== null) {
          const end = this.#pos + match.index + match[0].length;
          const got = this.text.slice(this.#pos, end);
          this.#pos = end;
          done();
          resolve(got);
        } else if (this.closed) {
          done();
          reject(new Error(`closed while waiting for ${pattern}; got ${JSON.stringify(rest)}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out waiting for ${pattern}; got ${JSON.stringify(this.text.slice(this.#pos))}`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        this.#waiters.delete(check);
      };
      this.#waiters.add(check);
      check();
    });
  }

  /** Everything received so far past the last wait. */
  get rest(): string {
    return this.text.slice(this.#pos);
  }

  /** Resolves when the server closed the connection; the whole transcript. */
  async ended(timeoutMs = 10_000): Promise<string> {
    if (!this.closed) {
      await Promise.race([once(this.socket, 'close'), new Promise((resolve) => setTimeout(resolve, timeoutMs))]);
    }
    return this.text;
  }
}
