// A small XMPP client for the browser: XMPP over WebSocket (RFC 7395), SCRAM-SHA-1/256 (RFC 5802,
// RFC 7677) with WebCrypto, resource binding, and stream management (XEP-0198) with resumption.
// No dependencies. chat.js builds the chat on it; copy both.
//
//   const xmpp = new Xmpp({ url: 'wss://example.org/xmpp-websocket', domain: 'example.org' });
//   xmpp.on('stanza', (el) => …); xmpp.on('status', (status, detail) => …);
//   await xmpp.login('juliet', 'balcony');      // rejects with XmppError('not-authorized') on a wrong password
//   xmpp.send(x('message', { to, type: 'chat' }, x('body', {}, 'hi')));
//   const result = await xmpp.iq('get', undefined, x('query', { xmlns: 'jabber:iq:roster' }));

export const NS = {
  client: 'jabber:client',
  framing: 'urn:ietf:params:xml:ns:xmpp-framing',
  streams: 'http://etherx.jabber.org/streams',
  sasl: 'urn:ietf:params:xml:ns:xmpp-sasl',
  bind: 'urn:ietf:params:xml:ns:xmpp-bind',
  sm: 'urn:xmpp:sm:3',
  stanzas: 'urn:ietf:params:xml:ns:xmpp-stanzas',
  streamErrors: 'urn:ietf:params:xml:ns:xmpp-streams',
};

/** An element to send: `x('message', { to }, x('body', {}, 'text'))`. Text and attributes are escaped when serialized. */
export function x(name, attrs = {}, ...children) {
  return { name, attrs, children: children.flat().filter((child) => child !== undefined && child !== null && child !== false) };
}

const escapes = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' };
const escapeXml = (text) => String(text).replace(/[&<>"']/g, (c) => escapes[c]);

export function serialize(node) {
  if (typeof node === 'string' || typeof node === 'number') return escapeXml(node);
  const attrs = Object.entries(node.attrs)
    .filter(([, value]) => value !== undefined)
    .map(([key, value]) => ` ${key}="${escapeXml(value)}"`)
    .join('');
  if (node.children.length === 0) return `<${node.name}${attrs}/>`;
  return `<${node.name}${attrs}>${node.children.map(serialize).join('')}</${node.name}>`;
}

/** The first child element of `el` named `name` in namespace `ns` (any namespace when omitted). */
export function child(el, name, ns) {
  if (!el) return undefined;
  for (const c of el.children) if (c.localName === name && (ns === undefined || c.namespaceURI === ns)) return c;
  return undefined;
}

export function childText(el, name, ns) {
  return child(el, name, ns)?.textContent ?? undefined;
}

export const bare = (jid) => (jid ?? '').split('/')[0];
export const resourceOf = (jid) => {
  const slash = (jid ?? '').indexOf('/');
  return slash === -1 ? '' : jid.slice(slash + 1);
};

/** A stanza or stream error: `condition` as RFC 6120 names it, `text` when the server gave one. */
export class XmppError extends Error {
  constructor(condition, text, element) {
    super(text ? `${condition}: ${text}` : condition);
    this.condition = condition;
    this.text = text;
    this.element = element;
  }

  /** The error of an `<iq type="error">`, `<message type="error">`, `<presence type="error">`, `<failure>` or `<stream:error>`. */
  static of(el) {
    const error = el.localName === 'error' ? el : (child(el, 'error') ?? el);
    let condition = 'undefined-condition';
    let text;
    for (const c of error.children) {
      if (c.localName === 'text') text = c.textContent;
      else if (c.namespaceURI === NS.stanzas || c.namespaceURI === NS.streamErrors || c.namespaceURI === NS.sasl) condition = c.localName;
    }
    return new XmppError(condition, text, el);
  }
}

const encoder = new TextEncoder();
const utf8 = (text) => encoder.encode(text);
const toBase64 = (bytes) => btoa(String.fromCharCode(...bytes));
const fromBase64 = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
const decodeBase64 = (text) => new TextDecoder().decode(fromBase64(text));
const randomId = () => toBase64(crypto.getRandomValues(new Uint8Array(9))).replace(/[+/]/g, '_');

export class Xmpp {
  #handlers = new Map();
  #ws;
  #queue = [];
  #waiters = [];
  #user;
  #password;
  #pending = new Map();
  #loggingOut = false;
  #retry = 0;
  #retryTimer;
  #pingTimer;
  #awaitingAck = false;
  // Stream management: stanzas received (h), and those sent but not yet acknowledged.
  #sm;

  constructor({ url, domain, resource = `web-${randomId().slice(0, 6)}` }) {
    this.url = url;
    this.domain = domain;
    this.resource = resource;
    this.jid = undefined;
    this.online = false;
  }

  on(event, handler) {
    if (!this.#handlers.has(event)) this.#handlers.set(event, []);
    this.#handlers.get(event).push(handler);
  }

  #emit(event, ...args) {
    for (const handler of this.#handlers.get(event) ?? []) {
      try {
        handler(...args);
      } catch (error) {
        console.error(error);
      }
    }
  }

  /** Connects and authenticates. Resolves with the full JID; rejects with an XmppError (not-authorized, …) or a connection error. */
  async login(user, password) {
    this.#user = user;
    this.#password = password;
    this.#loggingOut = false;
    this.#sm = undefined;
    await this.#connect();
    this.#startPing();
    return this.jid;
  }

  /** Sends a stanza (an `x()` element). While the connection is down it waits in the stream-management queue and goes out on resumption. */
  send(stanza) {
    if (!stanza.attrs.xmlns) stanza.attrs.xmlns = NS.client;
    const text = serialize(stanza);
    if (this.#sm?.enabled) {
      this.#sm.unacked.push(text);
      if (this.online) this.#write(text);
      this.#requestAckSoon();
    } else if (this.online) this.#write(text);
    else throw new XmppError('remote-server-timeout', 'not connected');
  }

  /** Sends an IQ and resolves with the result element; rejects with an XmppError for an error reply. */
  iq(type, to, payload, timeoutMs = 30_000) {
    const id = randomId();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new XmppError('remote-server-timeout', 'no answer'));
      }, timeoutMs);
      this.#pending.set(id, { resolve, reject, timer });
      try {
        this.send(x('iq', { type, to, id }, payload));
      } catch (error) {
        clearTimeout(timer);
        this.#pending.delete(id);
        reject(error);
      }
    });
  }

  id() {
    return randomId();
  }

  /** Ends the session for good: unavailable presence, `<close/>`, no resumption. */
  async logout() {
    this.#loggingOut = true;
    clearTimeout(this.#retryTimer);
    clearInterval(this.#pingTimer);
    const ws = this.#ws;
    if (ws && ws.readyState === WebSocket.OPEN) {
      if (this.online) this.#write(serialize(x('presence', { xmlns: NS.client, type: 'unavailable' })));
      this.#write(serialize(x('close', { xmlns: NS.framing })));
      await new Promise((resolve) => {
        ws.addEventListener('close', resolve);
        setTimeout(resolve, 3000);
      });
      ws.close();
    }
    this.online = false;
    this.#sm = undefined;
    this.#failPending(new XmppError('remote-server-timeout', 'logged out'));
  }

  #write(text) {
    this.#emit('output', text);
    this.#ws.send(text);
  }

  #requestAckSoon() {
    const sm = this.#sm;
    if (!sm || sm.ackTimer || !this.online) return;
    sm.ackTimer = setTimeout(() => {
      sm.ackTimer = undefined;
      // The session may have ended meanwhile (logout, a new session after a failed resumption).
      if (this.online && this.#sm === sm && sm.unacked.length > 0) this.#write(serialize(x('r', { xmlns: NS.sm })));
    }, 250);
  }

  // Every 30 s an `<r/>`: a connection that did not answer the last one within 30 s is dead (a
  // laptop that slept, a proxy that dropped it silently): close it, and reconnect.
  #startPing() {
    clearInterval(this.#pingTimer);
    this.#pingTimer = setInterval(() => {
      if (!this.online) return;
      if (this.#awaitingAck) {
        this.#ws.close();
        return;
      }
      this.#awaitingAck = true;
      this.#write(serialize(x('r', { xmlns: NS.sm })));
    }, 30_000);
  }

  #failPending(error) {
    for (const [id, { reject, timer }] of this.#pending) {
      clearTimeout(timer);
      reject(error);
      this.#pending.delete(id);
    }
  }

  // --- the connection ---------------------------------------------------------------------------

  #connect() {
    return new Promise((resolve, reject) => {
      this.#queue = [];
      const ws = new WebSocket(this.url, 'xmpp');
      this.#ws = ws;
      let ready = false;
      ws.onmessage = (event) => this.#receive(event.data);
      ws.onerror = () => {}; // a close event follows
      ws.onclose = (event) => {
        if (this.#ws !== ws) return;
        const wasOnline = this.online;
        this.online = false;
        for (const waiter of this.#waiters.splice(0)) waiter.reject(new XmppError('connection-lost', `connection closed (${event.code})`));
        if (!ready) reject(new XmppError('remote-connection-failed', 'could not connect to the server'));
        else if (wasOnline) this.#lost();
      };
      ws.onopen = async () => {
        try {
          await this.#negotiate();
          ready = true;
          resolve();
        } catch (error) {
          ready = true; // the error is reported here, not again on close
          ws.close();
          reject(error);
        }
      };
    });
  }

  #receive(data) {
    const doc = new DOMParser().parseFromString(data, 'text/xml');
    const el = doc.documentElement;
    if (!el || el.getElementsByTagName('parsererror').length > 0) return;
    this.#emit('input', data);
    if (this.#waiters.length > 0) this.#waiters.shift().resolve(el);
    else if (!this.online) this.#queue.push(el);
    else this.#dispatch(el);
  }

  #next() {
    if (this.#queue.length > 0) return Promise.resolve(this.#queue.shift());
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  /** The next element that is not a stream-management request or a stream error (those are answered or thrown). */
  async #nextElement() {
    for (;;) {
      const el = await this.#next();
      if (el.localName === 'error' && el.namespaceURI === NS.streams) throw XmppError.of(el);
      if (el.localName === 'close' && el.namespaceURI === NS.framing)
        throw new XmppError('connection-lost', 'the server closed the stream');
      return el;
    }
  }

  async #openStream() {
    this.#write(serialize(x('open', { xmlns: NS.framing, to: this.domain, version: '1.0' })));
    const open = await this.#nextElement();
    if (open.localName !== 'open') throw new XmppError('invalid-xml', `expected <open/>, got <${open.localName}/>`);
    const features = await this.#nextElement();
    if (features.localName !== 'features') throw new XmppError('invalid-xml', `expected stream features, got <${features.localName}/>`);
    return features;
  }

  async #negotiate() {
    let features = await this.#openStream();
    await this.#authenticate(features);
    features = await this.#openStream();
    const canResume = this.#sm?.resumable && child(features, 'sm', NS.sm);
    let unsent = [];
    if (canResume) {
      this.#write(serialize(x('resume', { xmlns: NS.sm, previd: this.#sm.id, h: this.#sm.inbound })));
      const answer = await this.#nextElement();
      if (answer.localName === 'resumed') {
        this.online = true;
        this.#acknowledged(Number(answer.getAttribute('h')));
        for (const text of this.#sm.unacked) this.#write(text);
        this.#requestAckSoon();
        this.#afterOnline();
        this.#emit('status', 'resumed');
        return;
      }
      // <failed/>: the session is gone (timed out, or the server restarted). A new one follows; the
      // messages the server did not acknowledge are sent again on it (IQs and presence are not: the
      // new session asks and announces afresh).
      unsent = this.#sm.unacked.filter((text) => text.startsWith('<message'));
      this.#sm = undefined;
      this.#failPending(new XmppError('connection-lost', 'the session could not be resumed'));
    }
    const bound = await this.#bindIq();
    this.jid = bound;
    if (child(features, 'sm', NS.sm)) {
      this.#write(serialize(x('enable', { xmlns: NS.sm, resume: 'true' })));
      const enabled = await this.#nextElement();
      if (enabled.localName === 'enabled') {
        this.#sm = {
          enabled: true,
          id: enabled.getAttribute('id'),
          resumable: enabled.getAttribute('resume') === 'true' || enabled.getAttribute('resume') === '1',
          inbound: 0,
          outbound: 0,
          unacked: [],
        };
      }
    }
    this.online = true;
    this.#afterOnline();
    this.#emit('status', 'online');
    for (const text of unsent) {
      if (this.#sm) this.#sm.unacked.push(text);
      this.#write(text);
    }
    if (unsent.length > 0) this.#requestAckSoon();
  }

  #afterOnline() {
    this.#retry = 0;
    this.#awaitingAck = false;
    // Anything that arrived with the handshake's last answer.
    for (const el of this.#queue.splice(0)) this.#dispatch(el);
  }

  async #bindIq() {
    const id = randomId();
    this.#write(serialize(x('iq', { xmlns: NS.client, type: 'set', id }, x('bind', { xmlns: NS.bind }, x('resource', {}, this.resource)))));
    const answer = await this.#nextElement();
    if (answer.getAttribute('type') !== 'result') throw XmppError.of(answer);
    return childText(child(answer, 'bind', NS.bind), 'jid');
  }

  async #authenticate(features) {
    const offered = [...(child(features, 'mechanisms', NS.sasl)?.children ?? [])].map((m) => m.textContent);
    const subtle = globalThis.crypto?.subtle;
    if (subtle && offered.includes('SCRAM-SHA-256')) return this.#scram('SHA-256', 256);
    if (subtle && offered.includes('SCRAM-SHA-1')) return this.#scram('SHA-1', 160);
    if (offered.includes('PLAIN')) {
      this.#write(serialize(x('auth', { xmlns: NS.sasl, mechanism: 'PLAIN' }, toBase64(utf8(`\0${this.#user}\0${this.#password}`)))));
      return this.#saslOutcome();
    }
    throw new XmppError('invalid-mechanism', subtle ? 'no mechanism in common' : 'this page needs https:// (WebCrypto) to log in');
  }

  async #saslOutcome() {
    const answer = await this.#nextElement();
    if (answer.localName === 'failure') throw XmppError.of(answer);
    if (answer.localName !== 'success') throw new XmppError('malformed-request', `unexpected <${answer.localName}/>`);
    return answer;
  }

  // SCRAM (RFC 5802) with WebCrypto; the password is prepared with NFKC (most of SASLprep).
  async #scram(hash, bits) {
    const subtle = crypto.subtle;
    const nonce = randomId() + randomId();
    const name = this.#user.replace(/=/g, '=3D').replace(/,/g, '=2C');
    const clientFirstBare = `n=${name},r=${nonce}`;
    this.#write(serialize(x('auth', { xmlns: NS.sasl, mechanism: `SCRAM-${hash}` }, toBase64(utf8(`n,,${clientFirstBare}`)))));
    const challenge = await this.#nextElement();
    if (challenge.localName === 'failure') throw XmppError.of(challenge);
    const serverFirst = decodeBase64(challenge.textContent);
    const fields = Object.fromEntries(serverFirst.split(',').map((f) => [f[0], f.slice(2)]));
    const iterations = Number(fields.i);
    if (!fields.r?.startsWith(nonce) || !fields.s || !(iterations > 0 && iterations <= 1_000_000)) {
      throw new XmppError('malformed-request', 'bad SCRAM challenge from the server');
    }
    const key = await subtle.importKey('raw', utf8(this.#password.normalize('NFKC')), 'PBKDF2', false, ['deriveBits']);
    const salted = new Uint8Array(await subtle.deriveBits({ name: 'PBKDF2', salt: fromBase64(fields.s), iterations, hash }, key, bits));
    const hmac = async (keyBytes, text) => {
      const k = await subtle.importKey('raw', keyBytes, { name: 'HMAC', hash }, false, ['sign']);
      return new Uint8Array(await subtle.sign('HMAC', k, utf8(text)));
    };
    const clientKey = await hmac(salted, 'Client Key');
    const storedKey = new Uint8Array(await subtle.digest(hash, clientKey));
    const withoutProof = `c=${btoa('n,,')},r=${fields.r}`;
    const authMessage = `${clientFirstBare},${serverFirst},${withoutProof}`;
    const signature = await hmac(storedKey, authMessage);
    const proof = clientKey.map((byte, i) => byte ^ signature[i]);
    this.#write(serialize(x('response', { xmlns: NS.sasl }, toBase64(utf8(`${withoutProof},p=${toBase64(proof)}`)))));
    const success = await this.#saslOutcome();
    const serverSignature = toBase64(await hmac(await hmac(salted, 'Server Key'), authMessage));
    if (decodeBase64(success.textContent) !== `v=${serverSignature}`)
      throw new XmppError('not-authorized', 'the server could not prove it knows the password');
  }

  // --- a live session -----------------------------------------------------------------------------

  #dispatch(el) {
    if (el.namespaceURI === NS.sm) {
      if (el.localName === 'r') this.#write(serialize(x('a', { xmlns: NS.sm, h: this.#sm?.inbound ?? 0 })));
      else if (el.localName === 'a') {
        this.#awaitingAck = false;
        this.#acknowledged(Number(el.getAttribute('h')));
      }
      return;
    }
    if (el.namespaceURI === NS.streams && el.localName === 'error') {
      const error = XmppError.of(el);
      this.#emit('status', 'stream-error', error);
      // Replaced by another login with the same resource, or the account was removed: do not reconnect.
      if (error.condition === 'conflict' || error.condition === 'not-authorized') this.#loggingOut = true;
      return;
    }
    if (el.namespaceURI === NS.framing) return; // <close/>: the socket closes next
    // A stanza: counted for stream management, IQ results too (XEP-0198 §4: every stanza).
    if (this.#sm) this.#sm.inbound = (this.#sm.inbound + 1) % 2 ** 32;
    if (el.localName === 'iq') {
      const type = el.getAttribute('type');
      const pending = this.#pending.get(el.getAttribute('id'));
      if ((type === 'result' || type === 'error') && pending) {
        this.#pending.delete(el.getAttribute('id'));
        clearTimeout(pending.timer);
        if (type === 'result') pending.resolve(el);
        else pending.reject(XmppError.of(el));
        return;
      }
    }
    this.#emit('stanza', el);
  }

  #acknowledged(h) {
    if (!this.#sm) return;
    const count = (h - this.#sm.outbound + 2 ** 32) % 2 ** 32;
    this.#sm.unacked.splice(0, count);
    this.#sm.outbound = h;
  }

  #lost() {
    if (this.#loggingOut) {
      this.#emit('status', 'offline');
      return;
    }
    const delay = Math.min(30, 2 ** this.#retry) * 1000;
    this.#retry++;
    this.#emit('status', 'reconnecting', delay);
    this.#retryTimer = setTimeout(async () => {
      try {
        await this.#connect();
      } catch (error) {
        if (error instanceof XmppError && error.condition === 'not-authorized') {
          this.#emit('status', 'offline', error);
          return;
        }
        this.#lost();
      }
    }, delay);
  }
}
