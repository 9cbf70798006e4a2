import type { Socket } from 'node:net';
import { capsVerification, type DiscoInfo } from '../src/modules/caps.js';
import { rawLogin } from './support.js';

// A raw XMPP client for the PEP, caps and bookmarks tests: everything received is buffered and
// read by pattern (nothing lost between reads), IQs answered by id, and disco#info queries from
// the server answered with the features this client claims in its caps.

let nextId = 1;

export class RawClient {
  readonly socket: Socket;
  readonly jid: string;
  #buffer = '';
  #waiters: Array<() => void> = [];
  /** disco#info queries this client received (from the server, resolving its caps). */
  discoQueries = 0;
  #disco: DiscoInfo | undefined;

  constructor(socket: Socket, jid: string) {
    this.socket = socket;
    this.jid = jid;
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      this.#buffer += chunk;
      this.#answerDisco();
      for (const wake of this.#waiters.splice(0)) wake();
    });
    socket.on('error', () => {});
    socket.resume();
  }

  static async login(port: number, user: string, password: string, resource = 'raw'): Promise<RawClient> {
    const socket = await rawLogin(port, user, password, resource);
    return new RawClient(socket, `${user}@localhost/${resource}`);
  }

  send(text: string): void {
    this.socket.write(text);
  }

  /** The first complete top-level element matching `pattern` (its text), removed from the buffer. */
  async next(pattern: RegExp, timeoutMs = 10_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (const element of this.#elements()) {
        if (pattern.test(element.text)) {
          this.#buffer = this.#buffer.slice(0, element.start) + this.#buffer.slice(element.end);
          return element.text;
        }
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${pattern}; buffered: ${this.#buffer.slice(0, 2000)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Send an IQ and wait for its answer (result or error). */
  async iq(type: 'get' | 'set', payload: string, to?: string): Promise<string> {
    const id = `q${nextId++}`;
    this.send(`<iq type='${type}' id='${id}'${to === undefined ? '' : ` to='${to}'`}>${payload}</iq>`);
    return this.next(new RegExp(`^<iq[^>]* id='${id}'`));
  }

  /** Available presence with caps for these features (answered when the server asks); `ver` to claim another verification string. */
  presence(features: string[], ver?: string): void {
    this.#disco = {
      identities: [{ category: 'client', type: 'pc', name: 'raw' }],
      features: ['http://jabber.org/protocol/caps', ...features],
    };
    const claimed = ver ?? (capsVerification(this.#disco) as string);
    this.send(`<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='urn:test:raw' ver='${claimed}'/></presence>`);
  }

  /**
   * Available presence with caps, and wait until the server knows the features: it asks once per
   * verification string (`query`: this client answers, then a ping makes sure the answer was
   * read), or knows them already (`cached`: the ping alone orders it).
   */
  async announce(features: string[], resolved: 'query' | 'cached' = 'query', ver?: string): Promise<void> {
    const before = this.discoQueries;
    this.presence(features, ver);
    if (resolved === 'query') {
      while (this.discoQueries === before) await this.#wait(10_000);
    }
    await this.iq('get', "<ping xmlns='urn:xmpp:ping'/>");
  }

  #wait(timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('timed out waiting for data')), timeoutMs);
      this.#waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  close(): void {
    this.socket.destroy();
  }

  /** Complete top-level elements in the buffer (a small scanner: the server's own output is well-formed). */
  #elements(): Array<{ text: string; start: number; end: number }> {
    const found: Array<{ text: string; start: number; end: number }> = [];
    const buffer = this.#buffer;
    let depth = 0;
    let start = -1;
    let i = 0;
    while (i < buffer.length) {
      const open = buffer.indexOf('<', i);
      if (open === -1) break;
      const close = buffer.indexOf('>', open);
      if (close === -1) break;
      const tag = buffer.slice(open, close + 1);
      i = close + 1;
      if (tag.startsWith('<?') || tag.startsWith('<stream:stream') || tag.startsWith('</stream:stream')) continue;
      if (tag.startsWith('</')) {
        depth--;
        if (depth === 0 && start !== -1) {
          found.push({ text: buffer.slice(start, i), start, end: i });
          start = -1;
        }
      } else if (tag.endsWith('/>')) {
        if (depth === 0) found.push({ text: tag, start: open, end: i });
      } else {
        if (depth === 0) start = open;
        depth++;
      }
    }
    return found;
  }

  #answerDisco(): void {
    for (;;) {
      const element = this.#elements().find(
        (e) => /^<iq[^>]* type='get'/.test(e.text) && e.text.includes('http://jabber.org/protocol/disco#info'),
      );
      if (element === undefined) return;
      this.#buffer = this.#buffer.slice(0, element.start) + this.#buffer.slice(element.end);
      this.discoQueries++;
      const id = /id='([^']*)'/.exec(element.text)?.[1] ?? '';
      const from = /from='([^']*)'/.exec(element.text)?.[1] ?? '';
      const node = /node='([^']*)'/.exec(element.text)?.[1];
      const info = this.#disco ?? { identities: [], features: [] };
      this.send(
        `<iq type='result' id='${id}' to='${from}'><query xmlns='http://jabber.org/protocol/disco#info'${node === undefined ? '' : ` node='${node}'`}>` +
          info.identities
            .map((identity) => `<identity category='${identity.category}' type='${identity.type}' name='${identity.name ?? ''}'/>`)
            .join('') +
          info.features.map((feature) => `<feature var='${feature}'/>`).join('') +
          '</query></iq>',
      );
    }
  }
}

/** Make two accounts mutual contacts (subscription both) through the protocol. */
export async function befriend(a: RawClient, b: RawClient, options: { available?: boolean } = {}): Promise<void> {
  const bareA = a.jid.split('/')[0] as string;
  const bareB = b.jid.split('/')[0] as string;
  await a.iq('get', "<query xmlns='jabber:iq:roster'/>");
  await b.iq('get', "<query xmlns='jabber:iq:roster'/>");
  // Available (subscription requests wait for an available resource).
  if (options.available !== true) {
    a.send('<presence/>');
    b.send('<presence/>');
  }
  a.send(`<presence to='${bareB}' type='subscribe'/>`);
  await b.next(/^<presence[^>]* type='subscribe'/);
  b.send(`<presence to='${bareA}' type='subscribed'/>`);
  b.send(`<presence to='${bareA}' type='subscribe'/>`);
  await a.next(/^<presence[^>]* type='subscribe'/);
  a.send(`<presence to='${bareB}' type='subscribed'/>`);
  // Both rosters say both.
  await a.next(new RegExp(`<item[^>]*jid='${bareB}'[^>]*subscription='both'|<item[^>]*subscription='both'[^>]*jid='${bareB}'`));
  await b.next(new RegExp(`<item[^>]*jid='${bareA}'[^>]*subscription='both'|<item[^>]*subscription='both'[^>]*jid='${bareA}'`));
}
