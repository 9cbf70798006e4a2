import { TextDecoder } from 'node:util';
import { type SaxesAttributeNS, SaxesParser, type SaxesTagNS } from 'saxes';
import { XmlElement } from './element.js';
import { StreamError } from './stream-error.js';

// The XML stream of RFC 6120 §4 as a pure codec: bytes in, events out. saxes (the strict,
// namespace-aware parser jsdom uses) checks well-formedness; this layer adds what XMPP requires
// on top: restricted XML (§11.1), UTF-8 only (§11.6), one open root with stanzas as its
// children, stream restarts, and a stanza size limit that holds however the bytes arrive.

export interface StreamParserOptions {
  /**
   * Largest stanza (RFC 6120 §13.12: at least 10 000), counted in characters as decoded — bytes,
   * for ASCII. Default 256 KiB. Past it: `<policy-violation/>`.
   */
  maxStanzaSize?: number;
  /**
   * Deepest nesting of elements inside a stanza (the stanza itself is depth 1). Default 64: real
   * stanzas nest a handful of levels (a forwarded carbon of a message with a form, about 8), and
   * deeper trees only cost stack and time. Past it: `<policy-violation/>`.
   */
  maxDepth?: number;
}

export const DEFAULT_MAX_DEPTH = 64;

export type StreamEvent =
  /** `<stream:stream …>`: the root opened; `attrs` as sent (to, from, version, xml:lang, …). */
  | { type: 'open'; name: string; xmlns: string; attrs: Record<string, string> }
  /** A complete child of the root: a stanza or a negotiation element. */
  | { type: 'element'; element: XmlElement }
  /** `</stream:stream>` */
  | { type: 'close' };

export const DEFAULT_MAX_STANZA_SIZE = 256 * 1024;

/**
 * Feed bytes with `write()`; events arrive through the callback. A violation throws a
 * {@link StreamError} with the RFC 6120 condition to answer (`restricted-xml`, `not-well-formed`,
 * `unsupported-encoding`, `policy-violation`, `bad-format`); the parser is then done.
 * Call `restart()` where the protocol restarts the stream (after STARTTLS and after SASL).
 */
export class StreamParser {
  #maxStanzaSize: number;
  readonly maxDepth: number;
  readonly #onEvent: (event: StreamEvent) => void;
  #parser!: SaxesParser<{ xmlns: true }>;
  #decoder!: TextDecoder;
  #stack: XmlElement[] = [];
  #rootOpen = false;
  #first = true;
  /** Characters fed to the XML parser in this document. */
  #fed = 0;
  /** Position of the last point between stanzas (root opened, stanza ended). */
  #mark = 0;
  #error: StreamError | undefined;

  constructor(onEvent: (event: StreamEvent) => void, options: StreamParserOptions = {}) {
    this.#maxStanzaSize = Math.max(10_000, options.maxStanzaSize ?? DEFAULT_MAX_STANZA_SIZE);
    this.maxDepth = Math.max(2, options.maxDepth ?? DEFAULT_MAX_DEPTH);
    this.#onEvent = onEvent;
    this.restart();
  }

  /** The stanza size limit in force (never below 10 000); a session raises it after authentication. */
  get maxStanzaSize(): number {
    return this.#maxStanzaSize;
  }

  set maxStanzaSize(value: number) {
    this.#maxStanzaSize = Math.max(10_000, value);
  }

  /** Start a new XML document on the same connection (RFC 6120 §4.3.3). */
  restart(): void {
    this.#decoder = new TextDecoder('utf-8', { fatal: true });
    this.#stack = [];
    this.#rootOpen = false;
    this.#first = true;
    this.#fed = 0;
    this.#mark = 0;
    const parser = new SaxesParser({ xmlns: true });
    parser.on('error', (error) => this.#fail(mapError(error)));
    parser.on('doctype', () => this.#fail(new StreamError('restricted-xml', 'DTDs are not allowed')));
    parser.on('comment', () => this.#fail(new StreamError('restricted-xml', 'comments are not allowed')));
    parser.on('processinginstruction', () => this.#fail(new StreamError('restricted-xml', 'processing instructions are not allowed')));
    parser.on('xmldecl', (decl) => {
      if (decl.encoding !== undefined && decl.encoding.toUpperCase() !== 'UTF-8') {
        this.#fail(new StreamError('unsupported-encoding', `only UTF-8 is supported, not ${decl.encoding}`));
      }
    });
    parser.on('opentag', (tag) => this.#open(tag));
    parser.on('closetag', (tag) => this.#close(tag));
    parser.on('text', (text) => this.#text(text));
    parser.on('cdata', (text) => this.#text(text));
    this.#parser = parser;
  }

  /** Feed received bytes. Throws the first {@link StreamError}; after one, nothing more is parsed. */
  write(chunk: Buffer): void {
    if (this.#error) throw this.#error;
    let bytes = chunk;
    if (this.#first && bytes.length > 0) {
      this.#first = false;
      // A UTF-16 byte order mark: the stream is not UTF-8 (RFC 6120 §11.6).
      if (bytes.length >= 2 && ((bytes[0] === 0xfe && bytes[1] === 0xff) || (bytes[0] === 0xff && bytes[1] === 0xfe))) {
        this.#fail(new StreamError('unsupported-encoding', 'only UTF-8 is supported'));
        throw this.#error;
      }
      // A UTF-8 byte order mark is allowed and dropped.
      if (bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) bytes = bytes.subarray(3);
    }
    let text: string;
    try {
      text = this.#decoder.decode(bytes, { stream: true });
    } catch {
      this.#fail(new StreamError('not-well-formed', 'invalid UTF-8'));
      throw this.#error;
    }
    this.#fed += text.length;
    this.#parser.write(text);
    if (this.#error) throw this.#error;
    // A stanza still open past the limit (say, an attribute value that never ends), or a prolog
    // or run of whitespace that never ends: stop here, having held at most one chunk more.
    if (this.#fed - this.#mark > this.maxStanzaSize) {
      this.#fail(new StreamError('policy-violation', `stanza larger than ${this.maxStanzaSize} bytes`));
      throw this.#error;
    }
  }

  #fail(error: StreamError): void {
    this.#error ??= error;
  }

  #open(tag: SaxesTagNS): void {
    if (this.#error) return;
    const attrs: Record<string, string> = {};
    for (const [name, attribute] of Object.entries(tag.attributes as Record<string, SaxesAttributeNS>)) attrs[name] = attribute.value;
    if (!this.#rootOpen) {
      this.#rootOpen = true;
      this.#mark = this.#parser.position;
      this.#onEvent({ type: 'open', name: tag.name, xmlns: tag.uri ?? '', attrs });
      return;
    }
    if (this.#stack.length >= this.maxDepth) {
      this.#fail(new StreamError('policy-violation', `elements nested deeper than ${this.maxDepth} levels`));
      return;
    }
    const element = new XmlElement(tag.name, attrs, [], tag.uri ?? '');
    const parent = this.#stack[this.#stack.length - 1];
    parent?.children.push(element);
    this.#stack.push(element);
  }

  #close(tag: SaxesTagNS): void {
    if (this.#error) return;
    const element = this.#stack.pop();
    if (element === undefined) {
      // The root closed: </stream:stream>.
      if (tag.name !== '' && this.#rootOpen) this.#onEvent({ type: 'close' });
      return;
    }
    if (this.#stack.length === 0) {
      // A complete top-level element: measured from the last point between stanzas.
      const position = this.#parser.position;
      if (position - this.#mark > this.maxStanzaSize) {
        this.#fail(new StreamError('policy-violation', `stanza larger than ${this.maxStanzaSize} bytes`));
        return;
      }
      this.#mark = position;
      this.#onEvent({ type: 'element', element });
    }
  }

  #text(text: string): void {
    if (this.#error) return;
    const parent = this.#stack[this.#stack.length - 1];
    if (parent !== undefined) {
      const last = parent.children[parent.children.length - 1];
      if (typeof last === 'string') parent.children[parent.children.length - 1] = last + text;
      else parent.children.push(text);
      return;
    }
    // Between stanzas only whitespace is allowed (whitespace keepalives).
    if (/^\s*$/.test(text)) return;
    this.#fail(new StreamError('bad-format', 'text between stanzas'));
  }
}

/** saxes errors in RFC 6120 terms. */
function mapError(error: Error): StreamError {
  const message = error.message.replace(/^\d+:\d+: /, '');
  if (/entity/i.test(message))
    return new StreamError('restricted-xml', `entity references other than the predefined ones are not allowed (${message})`);
  if (/namespace prefix/i.test(message)) return new StreamError('bad-namespace-prefix', message);
  return new StreamError('not-well-formed', message);
}
