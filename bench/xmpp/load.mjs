// XMPP load generator for bench/xmpp.mjs, on raw TCP sockets (a full client library is too heavy
// for 10 000 sessions). Every session logs in the way a modern client does: stream to 'localhost',
// SASL PLAIN, stream restart, resource binding, then — when the server offers them and the options
// allow — stream management (`<enable xmlns='urn:xmpp:sm:3' resume='true'/>`, XEP-0198) and
// message carbons (XEP-0280), then initial presence. A session with stream management counts the
// stanzas it receives and answers every `<r/>` with `<a h='N'/>`, and asks the server for an ack
// itself after every ACK_EVERY stanzas it sent, checking the `h` it gets back.
//
//   node load.mjs probe --port P
//     One session (user0/probe) that reports, as one JSON line, what the server really offers:
//     its stream features after authentication (stream management), its disco#info (carbons,
//     offline messages) and the account's disco#info (MAM), and the size of user0's archive.
//
//   node load.mjs throughput --port P [--clients 50] [--window 10] [--seconds 10] [--warmup 2]
//                            [--sm on|off] [--carbons on|off] [--ack-every 10]
//     Clients user0..user{N-1} in pairs (user0<->user1, …). Each starts with WINDOW chat messages
//     to its partner's full JID and answers every message it receives with a new one, so each
//     client has WINDOW messages in flight at all times (a closed loop). The body carries the send
//     time; delivered messages and their latency (receive time - send time, same process clock)
//     are counted over SECONDS after WARMUP. A delivered message that carries a `<stanza-id/>`
//     (XEP-0359) by the recipient's bare JID was archived (MAM) for the recipient. When the window
//     closes, every client waits for its last messages and (with stream management) asks for a
//     final ack, which must count every stanza it sent. Prints "measure-start" and "measure-end"
//     lines, then one JSON line with the results.
//     --rate R (> 0): an open loop instead (fixed rate): R chat messages a second in all, from the
//     senders in turn, whether or not earlier ones have arrived (latency then shows queueing at
//     that offered load, not the loop's own in-flight); every message sent must arrive (within 10 s
//     after the window). --pairing index|cross|same: who talks to whom. `index` (the default) is
//     user0<->user1, …; `cross` and `same` first ask every session which process holds it (an IQ
//     only bench/servers/xmpp-scale.mjs answers: <process xmlns='urn:portbind:bench:process'/>) and
//     pair users on different processes (`cross`) or on the same one (`same`); a user left without
//     a partner stays logged in and sends nothing. The JSON line says how the pairs fell.
//
//   node load.mjs room --port P [--occupants 50] [--senders 10] [--window 2] [--rate 0] [--seconds 10]
//                      [--warmup 2] [--logging on|off] [--history 20] [--sm on|off]
//     Group chat (XEP-0045): user0..user{N-1} in room@conference.localhost, messages fanned out to
//     every occupant; see room() below.
//
//   node load.mjs idle --port P --from A --count C [--concurrency 200] [--sm on|off]
//     Logs in sessions idleA..idle{A+C-1} (resource 'idle') and keeps them open and reading,
//     answering ack requests. Prints one JSON line when all have logged in (or failed); then, on
//     "status" on stdin, one JSON line with how many are still open; exits when stdin closes.
import { connect } from 'node:net';
import { createInterface } from 'node:readline';

const [mode, ...rest] = process.argv.slice(2);
const option = (name, fallback) => {
  const index = rest.indexOf(`--${name}`);
  return index === -1 ? fallback : rest[index + 1];
};
const port = Number(option('port'));
const host = '127.0.0.1';
const domain = 'localhost';
const password = option('password', 'secret');
const loginTimeoutMs = Number(option('login-timeout', 60_000));
const useSm = option('sm', 'on') === 'on';
const useCarbons = option('carbons', 'on') === 'on';
const ackEvery = Number(option('ack-every', 10));

const NS_SASL = 'urn:ietf:params:xml:ns:xmpp-sasl';
const NS_SM = 'urn:xmpp:sm:3';
const NS_MAM = 'urn:xmpp:mam:2';
const NS_CARBONS = 'urn:xmpp:carbons:2';
const NS_DISCO_INFO = 'http://jabber.org/protocol/disco#info';
const header = `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='${domain}' version='1.0'>`;
const FEATURES_END = /<\/(?:stream:)?features>/;
const IQ_END = /<\/iq>|<iq\b[^>]*\/>/;
const escapeXml = (text) => text.replace(/[&<>'"]/g, (c) => `&#${c.charCodeAt(0)};`);
const attr = (tag, name) =>
  new RegExp(`\\s${name}=(?:'([^']*)'|"([^"]*)")`)
    .exec(tag)
    ?.slice(1)
    .find((v) => v !== undefined);
const features = (text) => [...text.matchAll(/<feature\s+var=(?:'([^']*)'|"([^"]*)")/g)].map((m) => m[1] ?? m[2]);

/**
 * Cuts the next top-level element out of `buffer` at `start` (after the stream header): returns
 * `[element, end]`, or undefined when the buffer does not hold a whole one yet. `['', -1]` is the
 * stream's end tag. Good enough for what servers write: no CDATA, and `>` in attribute values escaped.
 */
function nextElement(buffer, start) {
  let depth = 0;
  let pos = start;
  let first = -1;
  for (;;) {
    const lt = buffer.indexOf('<', pos);
    if (lt === -1) return undefined;
    const gt = buffer.indexOf('>', lt);
    if (gt === -1) return undefined;
    const kind = buffer.charCodeAt(lt + 1);
    pos = gt + 1;
    if (kind === 63 /* ? */ || kind === 33 /* ! */) continue;
    if (first === -1) first = lt;
    if (kind === 47 /* / */) {
      depth--;
      if (depth === 0) return [buffer.slice(first, pos), pos];
      if (depth < 0) return ['', -1];
    } else if (buffer.charCodeAt(gt - 1) === 47 /* / */) {
      if (depth === 0) return [buffer.slice(first, pos), pos];
    } else depth++;
  }
}

/** The element's qualified name: `message`, `r`, `stream:error`, …. */
const nameOf = (element) => {
  let end = 1;
  while (end < element.length) {
    const c = element.charCodeAt(end);
    if (c === 32 || c === 62 || c === 47 || c === 9 || c === 10 || c === 13) break;
    end++;
  }
  return element.slice(1, end);
};

/** One client-to-server session: log in with `login()`, then top-level elements go to `onElement`. */
class Session {
  constructor(user, resource, { sm = useSm, carbons = false } = {}) {
    this.user = user;
    this.resource = resource;
    this.wantSm = sm;
    this.wantCarbons = carbons;
    this.buffer = '';
    this.loggedIn = false;
    this.closed = false;
    this.closedEarly = false; // closed by the server (or the network), not by us
    this.streamError = undefined;
    this.waiter = undefined;
    this.onElement = undefined;
    // Stream management (XEP-0198).
    this.sm = false; // enabled
    this.smOffered = false;
    this.inbound = 0; // stanzas received since <enabled/>: the `h` we report
    this.outbound = 0; // stanzas sent since <enable/>
    this.acksAnswered = 0; // <r/> from the server, answered
    this.acksRequested = 0; // <r/> we sent
    this.acksReceived = 0; // <a/> we got
    this.ackTooHigh = 0; // an <a h/> above what we had sent
    this.lastAckH = 0;
    this.ackWaiters = [];
    this.unknown = 0; // top-level elements that are none of the above
    this.unknownSamples = [];
  }

  login() {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => fail(new Error(`login timeout after ${loginTimeoutMs} ms`)), loginTimeoutMs);
      const fail = (error) => {
        clearTimeout(timer);
        this.socket?.destroy();
        reject(error);
      };
      const socket = connect({ port, host });
      this.socket = socket;
      socket.setNoDelay(true);
      socket.setEncoding('utf8');
      socket.on('error', (error) => {
        this.socketError = error.code ?? error.message;
        if (!this.loggedIn) fail(new Error(`socket error ${this.socketError}`));
      });
      socket.on('close', () => {
        if (!this.closed) this.closedEarly = true;
        this.closed = true;
        this.streamError ??= /<stream:error>([\s\S]*?)<\/stream:error>/.exec(this.buffer)?.[1];
        if (!this.loggedIn) fail(new Error(`closed during login${this.streamError ? `: ${this.streamError}` : ''}`));
        this.onClose?.();
      });
      socket.on('data', (chunk) => {
        this.buffer += chunk;
        if (this.loggedIn) this.#drain();
        else this.#check();
      });
      this.#steps().then(
        () => {
          clearTimeout(timer);
          resolve(this);
        },
        (error) => fail(error),
      );
    });
  }

  /** Hands every whole top-level element in the buffer to the session's handlers. */
  #drain() {
    let buffer = this.buffer;
    let pos = 0;
    let next = nextElement(buffer, 0);
    if (next === undefined) return;
    this.socket.cork();
    while (next !== undefined) {
      const [element, end] = next;
      if (end === -1) {
        pos = buffer.length;
        break;
      }
      pos = end;
      this.#element(element);
      next = nextElement(buffer, pos);
    }
    this.socket.uncork();
    buffer = this.buffer; // handlers may not touch it, but be safe
    this.buffer = buffer.slice(pos);
  }

  #element(element) {
    const name = nameOf(element);
    if (name === 'message' || name === 'presence' || name === 'iq') {
      if (this.sm) this.inbound++;
      if (this.waiter?.stanza) return this.#resolveWaiter(element);
      this.onElement?.(name, element);
    } else if (name === 'r' && this.sm) {
      this.acksAnswered++;
      this.socket.write(`<a xmlns='${NS_SM}' h='${this.inbound}'/>`);
    } else if (name === 'a' && this.sm) {
      const h = Number(attr(element, 'h'));
      this.acksReceived++;
      if (!(h <= this.outbound)) this.ackTooHigh++;
      this.lastAckH = h;
      // An ack() waits for an <a/> that counts what had been sent when it asked: the first <a/> after
      // its <r/> may answer an earlier one (the server answers each once what it handled is committed).
      const waiters = this.ackWaiters;
      this.ackWaiters = waiters.filter((waiter) => h < waiter.target);
      for (const waiter of waiters) if (h >= waiter.target) waiter.done(h);
    } else if (name === 'stream:error') {
      this.streamError ??= element;
    } else {
      this.unknown++;
      if (this.unknownSamples.length < 3) this.unknownSamples.push(element.slice(0, 300));
    }
  }

  #resolveWaiter(element) {
    const waiter = this.waiter;
    if (!waiter.pattern.test(element)) {
      waiter.seen.push(element);
      return;
    }
    this.waiter = undefined;
    waiter.resolve([...waiter.seen, element].join(''));
  }

  /** Resolves with the buffered text up to and including the first match of `pattern` (during login). */
  #until(pattern) {
    return new Promise((resolve, reject) => {
      this.waiter = { pattern, resolve, reject };
      this.#check();
    });
  }

  #check() {
    const waiter = this.waiter;
    if (waiter === undefined) return;
    const error = /<stream:error>[\s\S]*?<\/stream:error>/.exec(this.buffer);
    if (error) {
      this.waiter = undefined;
      return waiter.reject(new Error(`stream error: ${error[0]}`));
    }
    const match = waiter.pattern.exec(this.buffer);
    if (!match) return;
    const end = match.index + match[0].length;
    const text = this.buffer.slice(0, end);
    this.buffer = this.buffer.slice(end);
    this.waiter = undefined;
    waiter.resolve(text);
  }

  /** Sends a stanza (counted for stream management; an ack request every ACK_EVERY stanzas). */
  send(stanza) {
    this.socket.write(stanza);
    if (!this.sm) return;
    this.outbound++;
    if (ackEvery > 0 && this.outbound % ackEvery === 0) {
      this.acksRequested++;
      this.socket.write(`<r xmlns='${NS_SM}'/>`);
    }
  }

  /** After login: sends a stanza and resolves with the stanzas received up to the first matching `pattern`. */
  request(stanza, pattern, timeoutMs = 10_000) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new Error(`no answer to ${stanza.slice(0, 120)} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiter = {
        pattern,
        stanza: true,
        seen: [],
        resolve: (text) => {
          clearTimeout(timer);
          resolve(text);
        },
      };
      this.send(stanza);
    });
  }

  /**
   * Asks for an ack and resolves with the `h` of the first `<a/>` that counts every stanza sent so far;
   * after the timeout, with the last `h` heard (short: the server did not count them all). Undefined
   * without stream management.
   */
  ack(timeoutMs = 5000) {
    if (!this.sm || this.closed) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const waiter = {
        target: this.outbound,
        done: (h) => {
          clearTimeout(timer);
          resolve(h);
        },
      };
      const timer = setTimeout(() => {
        this.ackWaiters = this.ackWaiters.filter((w) => w !== waiter);
        resolve(this.acksReceived > 0 ? this.lastAckH : undefined);
      }, timeoutMs);
      this.ackWaiters.push(waiter);
      this.acksRequested++;
      this.socket.write(`<r xmlns='${NS_SM}'/>`);
    });
  }

  async #steps() {
    const s = this.socket;
    s.write(header);
    const saslFeatures = await this.#until(FEATURES_END);
    if (!/<mechanism>PLAIN<\/mechanism>/.test(saslFeatures)) throw new Error(`PLAIN not offered: ${saslFeatures}`);
    const payload = Buffer.from(`\0${this.user}\0${password}`).toString('base64');
    s.write(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${payload}</auth>`);
    const outcome = await this.#until(/<success[^>]*\/>|<\/success>|<\/failure>|<failure[^>]*\/>/);
    if (!/<success/.test(outcome)) throw new Error(`authentication failed: ${outcome}`);
    s.write(header);
    const bindFeatures = await this.#until(FEATURES_END);
    this.bindFeatures = bindFeatures.slice(bindFeatures.search(/<(?:stream:)?features/));
    if (!/urn:ietf:params:xml:ns:xmpp-bind/.test(bindFeatures)) throw new Error(`no resource binding offered: ${bindFeatures}`);
    this.smOffered = new RegExp(`<sm\\s[^>]*xmlns=['"]${NS_SM}['"]`).test(bindFeatures);
    s.write(
      `<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>${escapeXml(this.resource)}</resource></bind></iq>`,
    );
    const bound = await this.#until(IQ_END);
    const jid = /<jid>([^<]+)<\/jid>/.exec(bound)?.[1];
    if (jid === undefined) throw new Error(`bind failed: ${bound}`);
    this.jid = jid;
    if (this.wantSm && this.smOffered) {
      s.write(`<enable xmlns='${NS_SM}' resume='true'/>`);
      const answer = await this.#until(/<enabled\b[^>]*\/>|<\/enabled>|<failed\b[^>]*\/>|<\/failed>/);
      if (!/<enabled/.test(answer)) throw new Error(`stream management refused: ${answer}`);
      this.sm = true;
      this.smId = attr(answer.slice(answer.lastIndexOf('<enabled')), 'id');
    }
    if (this.wantCarbons) {
      this.outbound += this.sm ? 1 : 0;
      s.write(`<iq type='set' id='carbons1'><enable xmlns='${NS_CARBONS}'/></iq>`);
      const answer = await this.#until(IQ_END);
      if (this.sm) this.inbound++;
      if (!/type=['"]result['"]/.test(answer)) throw new Error(`carbons refused: ${answer}`);
    }
    this.loggedIn = true;
    this.send('<presence/>');
    // Anything that arrived with the last login answer.
    if (this.buffer.length > 0) this.#drain();
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    this.socket.end('</stream:stream>');
    setTimeout(() => this.socket.destroy(), 500).unref();
  }
}

/** Runs `task(i)` for i in [0, count) with at most `limit` at once; resolves with the results as settled. */
async function pool(count, limit, task) {
  const results = new Array(count);
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      try {
        results[i] = { value: await task(i) };
      } catch (error) {
        results[i] = { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, count) }, worker));
  return results;
}

const tally = (errors) => {
  const counts = {};
  for (const error of errors) {
    const key = String(error?.message ?? error).slice(0, 200);
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
};

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** MAM: the number of items in the session's own archive (RSM count) and the newest one. */
async function archiveOf(session) {
  const answer = await session.request(
    `<iq type='set' id='mam-count'><query xmlns='${NS_MAM}' queryid='count'><set xmlns='http://jabber.org/protocol/rsm'><max>1</max><before/></set></query></iq>`,
    /^<iq\b/,
  );
  if (!/type=['"]result['"]/.test(answer.slice(answer.lastIndexOf('<iq')))) return { error: answer.slice(-400) };
  const count = /<count>(\d+)<\/count>/.exec(answer)?.[1];
  const body = /<body>([^<]*)<\/body>/.exec(answer)?.[1];
  return { count: count === undefined ? undefined : Number(count), newest: body?.slice(0, 60) };
}

/** What the server offers: stream management, disco#info of the host and of the account. */
async function probe() {
  const session = await new Session('user0', 'probe', { sm: useSm }).login();
  session.onElement = () => {};
  const hostInfo = await session.request(`<iq type='get' id='disco-host' to='${domain}'><query xmlns='${NS_DISCO_INFO}'/></iq>`, IQ_END);
  const accountInfo = await session.request(
    `<iq type='get' id='disco-account' to='user0@${domain}'><query xmlns='${NS_DISCO_INFO}'/></iq>`,
    IQ_END,
  );
  const host = features(hostInfo);
  const account = features(accountInfo);
  const mam = account.includes(NS_MAM) || host.includes(NS_MAM);
  const result = {
    sm: session.smOffered,
    smEnabled: session.sm,
    mam,
    carbons: host.includes(NS_CARBONS),
    offline: host.includes('msgoffline'),
    csi: /urn:xmpp:csi:0/.test(session.bindFeatures),
    hostFeatures: host,
    accountFeatures: account,
    streamFeatures: session.bindFeatures,
    archive: mam ? await archiveOf(session) : undefined,
  };
  const h = await session.ack();
  if (session.sm) result.ack = { h, sent: session.outbound };
  session.close();
  console.log(JSON.stringify(result));
}

async function throughput() {
  const clients = Number(option('clients', 50));
  const window = Number(option('window', 10));
  const seconds = Number(option('seconds', 10));
  const warmup = Number(option('warmup', 2));
  if (clients < 2 || clients % 2 !== 0) throw new Error('--clients must be even (clients talk in pairs)');
  const loginStarted = performance.now();
  const results = await pool(clients, 50, (i) => new Session(`user${i}`, 'bench', { carbons: useCarbons }).login());
  const loginMs = performance.now() - loginStarted;
  const failed = results.filter((r) => r.error).map((r) => r.error);
  if (failed.length > 0) {
    for (const r of results) r.value?.close();
    console.log(JSON.stringify({ error: 'login failed', failed: tally(failed) }));
    process.exitCode = 1;
    return;
  }
  const sessions = results.map((r) => r.value);
  // Let initial presence settle before the load starts.
  await sleep(300);
  const rate = Number(option('rate', 0));
  const pairing = option('pairing', 'index');
  const { partnerOf, pairs } = await pairUp(sessions, pairing);
  const senders = sessions.filter((_, i) => partnerOf[i] !== -1);
  if (senders.length === 0) throw new Error(`--pairing ${pairing}: no pair (${JSON.stringify(pairs)})`);

  let phase = 'warmup'; // 'warmup' → 'measure' → 'done'
  let delivered = 0;
  let archived = 0; // delivered messages with a <stanza-id/> by the recipient (MAM)
  let errors = 0;
  let malformed = 0;
  let misrouted = 0;
  let reads = 0; // 'data' events in the measured window: how the server's writes arrive
  let afterEnd = 0; // messages that arrived after the measured window closed (the last ones in flight)
  const errorSamples = [];
  const latencies = [];
  const perSecond = [];
  let bucket = 0;
  let sent = 0;
  let sentInWindow = 0; // sent while measuring
  let received = 0; // our messages received, every phase (the open loop's loss check)
  const disconnects = { warmup: 0, measure: 0 };
  const filler = 'Hello from the XMPP benchmark, how are you?';

  sessions.forEach((session, i) => {
    if (partnerOf[i] === -1) {
      session.onElement = () => {};
      return;
    }
    const partner = sessions[partnerOf[i]].jid;
    const stanzaIdBy = new RegExp(`<stanza-id\\b[^>]*\\sby=['"]${session.user}@${domain}['"]`);
    let id = 0;
    const send = () => {
      sent++;
      if (phase === 'measure') sentInWindow++;
      session.send(`<message to='${partner}' type='chat' id='m${++id}'><body>${performance.now().toFixed(3)} ${filler}</body></message>`);
    };
    session.sendChat = send;
    session.socket.on('data', () => {
      if (phase === 'measure') reads++;
    });
    session.onElement = (name, stanza) => {
      if (name !== 'message') return;
      const now = performance.now();
      const tagEnd = stanza.indexOf('>');
      if (phase === 'done') afterEnd++;
      if (/type=['"]error['"]/.test(stanza.slice(0, tagEnd))) {
        errors++;
        if (errorSamples.length < 5) errorSamples.push(stanza.slice(0, 500));
      } else {
        const bodyStart = stanza.indexOf('<body>');
        const sentAt = bodyStart === -1 ? Number.NaN : Number.parseFloat(stanza.slice(bodyStart + 6, bodyStart + 30));
        if (!stanza.slice(0, tagEnd).includes(partner)) misrouted++;
        if (Number.isNaN(sentAt)) malformed++;
        else received++;
        if (!Number.isNaN(sentAt) && phase === 'measure') {
          delivered++;
          bucket++;
          latencies.push(now - sentAt);
          if (stanzaIdBy.test(stanza)) archived++;
        }
      }
      // Closed loop: every message received (or bounced) is replaced by a new one.
      if (rate === 0 && phase !== 'done') send();
    };
    session.onClose = () => {
      if (phase !== 'done') phase === 'measure' ? disconnects.measure++ : disconnects.warmup++;
    };
  });
  let pacer;
  if (rate === 0) {
    for (const session of senders) {
      session.socket.cork();
      for (let k = 0; k < window; k++) session.sendChat();
      session.socket.uncork();
    }
  } else {
    // Open loop: every 5 ms, the messages due by now at RATE a second, senders in turn.
    const openStarted = performance.now();
    let due = 0;
    let next = 0;
    pacer = setInterval(() => {
      const target = Math.floor(((performance.now() - openStarted) * rate) / 1000);
      for (; due < target; due++) {
        senders[next].sendChat();
        next = (next + 1) % senders.length;
      }
    }, 5);
  }
  await sleep(warmup * 1000);
  phase = 'measure';
  console.log('measure-start');
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  const ticker = setInterval(() => {
    perSecond.push(bucket);
    bucket = 0;
  }, 1000);
  await sleep(seconds * 1000);
  phase = 'done';
  clearInterval(pacer);
  if (bucket > 0) perSecond.push(bucket); // the last, partial second
  const elapsed = (performance.now() - started) / 1000;
  clearInterval(ticker);
  const cpu = process.cpuUsage(cpuBefore);
  console.log('measure-end');
  const stillOpen = sessions.filter((s) => !s.closed).length;
  // Closed loop: every sender has exactly WINDOW messages in flight when the window closes. Open
  // loop: every message sent must arrive. Wait for them all, so that a lost message shows.
  const inFlight = senders.length * window;
  if (rate === 0) for (let waited = 0; afterEnd < inFlight && waited < 5000; waited += 50) await sleep(50);
  else for (let waited = 0; received < sent && waited < 10_000; waited += 50) await sleep(50);
  // Stream management: a last ack from every session must count every stanza it sent.
  const finalAcks = await Promise.all(sessions.map(async (s) => ({ h: await s.ack(), sent: s.outbound, sm: s.sm })));
  for (const session of sessions) session.close();

  latencies.sort((a, b) => a - b);
  const quantile = (q) =>
    latencies.length === 0 ? Number.NaN : latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))];
  const streamErrors = tally(sessions.filter((s) => s.streamError).map((s) => s.streamError));
  const sum = (key) => sessions.reduce((total, s) => total + s[key], 0);
  const smSessions = sessions.filter((s) => s.sm).length;
  console.log(
    JSON.stringify({
      clients,
      window,
      seconds: elapsed,
      loginMs,
      delivered,
      messagesPerSecond: delivered / elapsed,
      perSecond,
      rate,
      offeredPerSecond: sentInWindow / elapsed,
      pairing,
      pairs,
      p50: quantile(0.5),
      p95: quantile(0.95),
      p99: quantile(0.99),
      max: latencies.at(-1),
      sent,
      archived,
      errors,
      errorSamples,
      malformed,
      misrouted,
      lost: rate === 0 ? inFlight - afterEnd : sent - received,
      disconnects,
      streamErrors,
      stillOpen,
      loadCpu: (cpu.user + cpu.system) / 1e6 / elapsed,
      messagesPerRead: delivered / Math.max(1, reads),
      sm: {
        offered: sessions.filter((s) => s.smOffered).length,
        enabled: smSessions,
        serverRequests: sum('acksAnswered'),
        clientRequests: sum('acksRequested'),
        acksReceived: sum('acksReceived'),
        ackTooHigh: sum('ackTooHigh'),
        // Sessions whose final ack did not count every stanza they sent (or never came).
        finalAckShort: finalAcks.filter((a) => a.sm && a.h !== a.sent).length,
        finalAckSamples: finalAcks.filter((a) => a.sm && a.h !== a.sent).slice(0, 3),
      },
      carbons: useCarbons,
      unknown: sum('unknown'),
      unknownSamples: sessions.flatMap((s) => s.unknownSamples).slice(0, 3),
    }),
  );
}

/**
 * Who talks to whom in the throughput mode: `partnerOf[i]` is the index of session i's partner, -1
 * for none. `index`: user0<->user1, …. `cross`/`same`: by the process holding each session (asked with
 * bench/servers/xmpp-scale.mjs's IQ), users of different processes paired (the two biggest groups
 * first), or users of the same process. `pairs` says how they fell: per process, cross, same, alone.
 */
async function pairUp(sessions, pairing) {
  const partnerOf = sessions.map((_, i) => i ^ 1);
  if (pairing === 'index') return { partnerOf, pairs: { pairs: sessions.length / 2 } };
  if (pairing !== 'cross' && pairing !== 'same') throw new Error(`--pairing index|cross|same, not ${pairing}`);
  const whichProcess = async (session) => {
    const answer = await session.request(
      `<iq type='get' id='which-process' to='${domain}'><process xmlns='urn:portbind:bench:process'/></iq>`,
      IQ_END,
    );
    const element = answer.slice(answer.lastIndexOf('<iq'));
    const worker = /<process\b[^>]*>/.exec(element)?.[0];
    if (!/type=['"]result['"]/.test(element) || worker === undefined) {
      throw new Error(`the server does not say which process holds a session (--pairing ${pairing}): ${element.slice(0, 300)}`);
    }
    session.process = `${attr(worker, 'worker')}/${attr(worker, 'pid')}`;
  };
  for (const session of sessions) await whichProcess(session);
  // Pairs across processes want groups of equal size: a user of the biggest group logs in again
  // (closing its first session) until it lands elsewhere — the primary's round-robin usually sends
  // the next connection to another worker. Gives up after 4 × the sessions.
  const sizes = () => {
    const counts = new Map();
    for (const s of sessions) counts.set(s.process, (counts.get(s.process) ?? 0) + 1);
    return [...counts].sort((a, b) => b[1] - a[1]);
  };
  let relogins = 0;
  for (
    let sized = sizes();
    pairing === 'cross' && sized.length > 1 && sized[0][1] - sized.at(-1)[1] >= 2 && relogins < 4 * sessions.length;
    sized = sizes()
  ) {
    const i = sessions.findIndex((s) => s.process === sized[0][0]);
    const old = sessions[i];
    old.close();
    await new Promise((resolve) => old.socket.once('close', resolve));
    // Another resource: the first one's end is not mistaken for the new one's on any process.
    const fresh = await new Session(old.user, `bench-${relogins + 1}`, { carbons: old.wantCarbons }).login();
    await whichProcess(fresh);
    sessions[i] = fresh;
    relogins++;
  }
  const groups = new Map();
  for (const [i, session] of sessions.entries()) {
    if (!groups.has(session.process)) groups.set(session.process, []);
    groups.get(session.process).push(i);
  }
  partnerOf.fill(-1);
  let cross = 0;
  let same = 0;
  if (pairing === 'cross') {
    for (;;) {
      const [a, b] = [...groups.values()].sort((x, y) => y.length - x.length);
      if (b === undefined || b.length === 0) break;
      const i = a.pop();
      const j = b.pop();
      partnerOf[i] = j;
      partnerOf[j] = i;
      cross++;
    }
  } else {
    for (const members of groups.values()) {
      for (let k = 0; k + 1 < members.length; k += 2) {
        partnerOf[members[k]] = members[k + 1];
        partnerOf[members[k + 1]] = members[k];
        same++;
      }
    }
  }
  const perProcess = Object.fromEntries(
    [...new Set(sessions.map((s) => s.process))].map((key) => [key, sessions.filter((s) => s.process === key).length]),
  );
  // Check: every pair is what was asked for.
  for (const [i, j] of partnerOf.entries()) {
    if (j !== -1 && (sessions[i].process !== sessions[j].process) !== (pairing === 'cross')) throw new Error('pairing went wrong');
  }
  return { partnerOf, pairs: { perProcess, cross, same, alone: partnerOf.filter((j) => j === -1).length, relogins } };
}

async function idle() {
  const from = Number(option('from', 0));
  const count = Number(option('count', 1000));
  const concurrency = Number(option('concurrency', 200));
  const started = performance.now();
  const results = await pool(count, concurrency, async (i) => {
    const session = new Session(`idle${from + i}`, 'idle');
    // Whatever the server sends (its answer to the initial presence) is read and dropped; ack
    // requests are answered.
    session.onElement = () => {};
    await session.login();
    return session;
  });
  const sessions = results.filter((r) => r.value).map((r) => r.value);
  const failed = results.filter((r) => r.error).map((r) => r.error);
  console.log(
    JSON.stringify({
      loggedIn: sessions.length,
      sm: sessions.filter((s) => s.sm).length,
      failed: failed.length,
      failures: tally(failed),
      loginMs: performance.now() - started,
    }),
  );
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    if (line.trim() !== 'status') return;
    const gone = sessions.filter((s) => s.closedEarly);
    console.log(
      JSON.stringify({
        open: sessions.length - gone.length,
        closedByServer: gone.length,
        streamErrors: tally(gone.map((s) => s.streamError ?? s.socketError ?? 'closed')),
      }),
    );
  });
  lines.on('close', () => {
    for (const session of sessions) session.socket.destroy();
    process.exit(0);
  });
}

const NS_MUC = 'http://jabber.org/protocol/muc';
const NS_MUC_OWNER = 'http://jabber.org/protocol/muc#owner';
const NS_RSM = 'http://jabber.org/protocol/rsm';

/** Sends an IQ and resolves with the answer (the element with the same id), through the session's `iqs` map. */
function iq(session, stanza, id, timeoutMs = 30_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      session.iqs.delete(id);
      reject(new Error(`no answer to iq ${id} within ${timeoutMs} ms`));
    }, timeoutMs);
    session.iqs.set(id, (answer) => {
      clearTimeout(timer);
      resolve(answer);
    });
    session.send(stanza);
  });
}

/** The fields of a data form (`<field var='…'><value>…</value></field>`): var → values joined with ','. */
const formFields = (text) =>
  Object.fromEntries(
    [...text.matchAll(/<field\b([^>]*?)(?:\/>|>([\s\S]*?)<\/field>)/g)].flatMap((m) => {
      const name = attr(m[1], 'var');
      if (name === undefined || name === 'FORM_TYPE') return [];
      const values = [...(m[2] ?? '').matchAll(/<value>([^<]*)<\/value>/g)].map((v) => v[1]);
      return [[name, values.join(',')]];
    }),
  );

/**
 * Group chat (XEP-0045) fan-out. OCCUPANTS sessions user0..user{N-1} join ROOM as nick0..nick{N-1}
 * (presence with <x xmlns='http://jabber.org/protocol/muc'/>; a join is done when the self-presence
 * with status 110 arrives). user0 joins first, creates the room (status 201) and submits the same
 * explicit configuration form to either server (below); then the others join, CONCURRENCY at a
 * time, and everyone waits until it has seen the available presence of all N occupants.
 *
 * Load, a closed loop on complete fan-out: SENDERS occupants spread over the room each keep WINDOW
 * groupchat messages in flight; a message is in flight until *every* occupant (its sender's own
 * reflection included) has received it, and then its sender sends the next. So SENDERS × WINDOW
 * messages (× N deliveries) are in flight at all times, whatever the server's delivery order. The
 * body carries the send time (performance.now(), one process), the sender and a sequence number.
 * With --rate R (> 0) the loop is open instead: R messages a second into the room, from the
 * SENDERS (default: all occupants) in turn, whatever has arrived, so that both servers are
 * measured at the same offered load (latency then shows queueing, not the loop's own in-flight).
 * Counted over SECONDS after WARMUP: deliveries (groupchat messages received by occupants, the
 * sender's reflection included) and their latency. At the end every message sent must have
 * reached every occupant (within 10 s), each occupant must have received every message, and the
 * owner reads the configuration form back, the room's disco#info and the size of its archive.
 */
async function room() {
  const occupants = Number(option('occupants', 50));
  // --rate R > 0: an open loop instead: R messages a second into the room, from the senders in
  // turn (default: every occupant), whether or not earlier ones have arrived.
  const rate = Number(option('rate', 0));
  const senderCount = Math.min(occupants, Number(option('senders', rate > 0 ? occupants : 10)) || occupants);
  const window = Number(option('window', 2));
  const seconds = Number(option('seconds', 10));
  const warmup = Number(option('warmup', 2));
  const roomJid = option('room', `room@conference.${domain}`);
  const history = Number(option('history', 20));
  const logging = option('logging', 'off') === 'on';
  const concurrency = Number(option('concurrency', 20));
  if (occupants < 2) throw new Error('--occupants must be at least 2');

  const loginStarted = performance.now();
  const results = await pool(occupants, 50, (i) => new Session(`user${i}`, 'room', { sm: useSm, carbons: false }).login());
  const loginMs = performance.now() - loginStarted;
  const failed = results.filter((r) => r.error).map((r) => r.error);
  if (failed.length > 0) {
    for (const r of results) r.value?.close();
    console.log(JSON.stringify({ error: 'login failed', failed: tally(failed) }));
    process.exitCode = 1;
    return;
  }
  const sessions = results.map((r) => r.value);
  const roomPrefix = `${roomJid}/`;

  let phase = 'join'; // 'join' → 'warmup' → 'measure' → 'done'
  let delivered = 0; // in the measured window
  let withStanzaId = 0;
  let errors = 0;
  const errorSamples = [];
  let misrouted = 0;
  let malformed = 0;
  let otherMessages = 0; // groupchat messages without our body (subject, history), and anything else
  let unexpectedPresence = 0;
  const latencies = [];
  const perSecond = [];
  let bucket = 0;
  let sent = 0;
  const sentBySender = new Array(senderCount).fill(0);
  const disconnects = { join: 0, warmup: 0, measure: 0 };
  const filler = 'Hello room, this is the XMPP group chat benchmark speaking.';
  const stanzaIdBy = `by='${roomJid}'`;
  const stanzaIdByDq = `by="${roomJid}"`;
  // Senders: occupants spread over the room (nick0, the owner, among them).
  const senders = Array.from({ length: senderCount }, (_, k) => Math.floor((k * occupants) / senderCount));
  /** `${sender} ${seq}` → deliveries still to come. */
  const pending = new Map();
  const sendNext = [];

  sessions.forEach((session, i) => {
    session.nick = `nick${i}`;
    session.iqs = new Map();
    session.present = new Set(); // occupants' nicks seen available
    session.received = 0; // our messages received (all phases)
    session.joined = undefined;
    session.onElement = (name, stanza) => {
      if (name === 'message') {
        const tagEnd = stanza.indexOf('>');
        const tag = stanza.slice(0, tagEnd);
        if (tag.includes("type='error'") || tag.includes('type="error"')) {
          errors++;
          if (errorSamples.length < 5) errorSamples.push(stanza.slice(0, 500));
          return;
        }
        const bodyStart = stanza.indexOf('<body>');
        if (bodyStart === -1 || !(tag.includes("type='groupchat'") || tag.includes('type="groupchat"'))) {
          otherMessages++;
          return;
        }
        const bodyEnd = stanza.indexOf('</body>', bodyStart);
        const [stamp, s, q] = stanza.slice(bodyStart + 6, bodyEnd).split(' ', 3);
        const sentAt = Number.parseFloat(stamp);
        const key = `${s} ${q}`;
        const left = pending.get(key);
        if (Number.isNaN(sentAt) || left === undefined) {
          malformed++;
          return;
        }
        const now = performance.now();
        session.received++;
        if (!tag.includes(`${roomPrefix}nick${senders[Number(s)]}`)) misrouted++;
        if (phase === 'measure') {
          delivered++;
          bucket++;
          latencies.push(now - sentAt);
          if (stanza.includes(stanzaIdBy) || stanza.includes(stanzaIdByDq)) withStanzaId++;
        }
        if (left > 1) pending.set(key, left - 1);
        else {
          pending.delete(key);
          // Closed loop: the message reached every occupant; its sender sends the next.
          if (rate === 0 && (phase === 'warmup' || phase === 'measure')) sendNext[Number(s)]();
        }
      } else if (name === 'presence') {
        const from = attr(stanza.slice(0, stanza.indexOf('>')), 'from') ?? '';
        const type = attr(stanza.slice(0, stanza.indexOf('>')), 'type');
        if (!from.startsWith(roomPrefix)) return; // the server's answer to initial presence, …
        if (type === 'error') {
          session.joined?.reject(new Error(`join refused: ${stanza.slice(0, 400)}`));
          return;
        }
        const nick = from.slice(roomPrefix.length);
        if (type === 'unavailable') session.present.delete(nick);
        else session.present.add(nick);
        if (phase !== 'join') unexpectedPresence++;
        if (/\scode=['"]110['"]/.test(stanza)) session.joined?.resolve(stanza);
      } else if (name === 'iq') {
        const id = attr(stanza.slice(0, stanza.indexOf('>')), 'id');
        const waiter = session.iqs.get(id);
        if (waiter) {
          session.iqs.delete(id);
          waiter(stanza);
        }
      }
    };
    session.onClose = () => {
      if (phase !== 'done') disconnects[phase === 'measure' ? 'measure' : phase === 'warmup' ? 'warmup' : 'join']++;
    };
  });

  const join = (session) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${session.nick}: no self-presence (110) within 60 s`)), 60_000);
      session.joined = {
        resolve: (presence) => {
          clearTimeout(timer);
          resolve(presence);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      session.send(`<presence to='${roomPrefix}${session.nick}'><x xmlns='${NS_MUC}'/></presence>`);
    });

  // The owner creates and configures the room: the same explicit form on both servers. Fields one
  // server does not know are ignored by it (Prosody has no maxusers or passwordprotectedroom
  // field, portbind calls archiving `enablelogging`, Prosody's mod_muc_mam `enablearchiving`).
  const joinStarted = performance.now();
  const owner = sessions[0];
  const created = await join(owner);
  const field = (name, value) => `<field var='${name}'><value>${value}</value></field>`;
  const form = [
    field('FORM_TYPE', 'http://jabber.org/protocol/muc#roomconfig'),
    field('muc#roomconfig_roomname', 'bench'),
    field('muc#roomconfig_persistentroom', '0'),
    field('muc#roomconfig_publicroom', '1'),
    field('muc#roomconfig_membersonly', '0'),
    field('muc#roomconfig_moderatedroom', '0'),
    field('muc#roomconfig_passwordprotectedroom', '0'),
    field('muc#roomconfig_whois', 'moderators'),
    field('muc#roomconfig_historylength', String(history)),
    field('muc#roomconfig_changesubject', '0'),
    field('muc#roomconfig_allowinvites', '0'),
    field('muc#roomconfig_maxusers', String(Math.max(occupants, 50))),
    field('muc#roomconfig_enablelogging', logging ? '1' : '0'),
    field('muc#roomconfig_enablearchiving', logging ? '1' : '0'),
  ].join('');
  const configured = await iq(
    owner,
    `<iq type='set' id='room-config' to='${roomJid}'><query xmlns='${NS_MUC_OWNER}'><x xmlns='jabber:x:data' type='submit'>${form}</x></query></iq>`,
    'room-config',
  );
  if (!/type=['"]result['"]/.test(configured.slice(0, configured.indexOf('>')))) {
    throw new Error(`the room configuration was refused: ${configured.slice(0, 600)}`);
  }
  const joins = await pool(occupants - 1, concurrency, (i) => join(sessions[i + 1]));
  const joinFailed = joins.filter((r) => r.error).map((r) => r.error);
  if (joinFailed.length > 0) {
    for (const s of sessions) s.close();
    console.log(JSON.stringify({ error: 'join failed', failed: tally(joinFailed) }));
    process.exitCode = 1;
    return;
  }
  const joinMs = performance.now() - joinStarted;
  // Everyone sees everyone (the occupant list is complete) before the load starts.
  for (let waited = 0; waited < 60_000 && sessions.some((s) => s.present.size < occupants); waited += 50) await sleep(50);
  const fullLists = sessions.filter((s) => s.present.size === occupants).length;
  const settleMs = performance.now() - joinStarted - joinMs;
  // What the room is: its configuration as the owner reads it back, and its disco#info.
  const configForm = await iq(
    owner,
    `<iq type='get' id='room-config-get' to='${roomJid}'><query xmlns='${NS_MUC_OWNER}'/></iq>`,
    'room-config-get',
  );
  const roomInfo = await iq(owner, `<iq type='get' id='room-info' to='${roomJid}'><query xmlns='${NS_DISCO_INFO}'/></iq>`, 'room-info');
  await sleep(300);

  phase = 'warmup';
  senders.forEach((index, k) => {
    const session = sessions[index];
    let seq = 0;
    sendNext[k] = () => {
      const q = ++seq;
      pending.set(`${k} ${q}`, occupants);
      sent++;
      sentBySender[k]++;
      session.send(
        `<message to='${roomJid}' type='groupchat' id='${session.nick}-${q}'><body>${performance.now().toFixed(3)} ${k} ${q} ${filler}</body></message>`,
      );
    };
  });
  let pacer;
  if (rate === 0) {
    for (const [k, index] of senders.entries()) {
      const socket = sessions[index].socket;
      socket.cork();
      for (let w = 0; w < window; w++) sendNext[k]();
      socket.uncork();
    }
  } else {
    // Open loop: every 5 ms, the messages due by now at RATE a second, senders in turn.
    const openStarted = performance.now();
    let due = 0;
    let next = 0;
    pacer = setInterval(() => {
      const target = Math.floor(((performance.now() - openStarted) * rate) / 1000);
      for (; due < target; due++) {
        sendNext[next]();
        next = (next + 1) % senderCount;
      }
    }, 5);
  }
  await sleep(warmup * 1000);
  phase = 'measure';
  console.log('measure-start');
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  const ticker = setInterval(() => {
    perSecond.push(bucket);
    bucket = 0;
  }, 1000);
  await sleep(seconds * 1000);
  phase = 'done';
  clearInterval(pacer);
  if (bucket > 0) perSecond.push(bucket);
  const elapsed = (performance.now() - started) / 1000;
  clearInterval(ticker);
  const cpu = process.cpuUsage(cpuBefore);
  console.log('measure-end');
  // Every message sent must reach every occupant.
  for (let waited = 0; pending.size > 0 && waited < (rate > 0 ? 30_000 : 10_000); waited += 50) await sleep(50);
  const lostMessages = pending.size;
  let missingDeliveries = 0;
  for (const left of pending.values()) missingDeliveries += left;
  const short = sessions.filter((s) => s.received !== sent).length;
  // The room's archive: its size (RSM count) from a MAM query on the room JID.
  const archiveAnswer = await iq(
    owner,
    `<iq type='set' id='room-mam' to='${roomJid}'><query xmlns='${NS_MAM}' queryid='count'><set xmlns='${NS_RSM}'><max>1</max><before/></set></query></iq>`,
    'room-mam',
  ).catch((error) => `<error>${error.message}</error>`);
  const archiveOk = /type=['"]result['"]/.test(archiveAnswer.slice(0, archiveAnswer.indexOf('>')));
  const archive = archiveOk
    ? { count: Number(/<count>(\d+)<\/count>/.exec(archiveAnswer)?.[1] ?? Number.NaN) }
    : { error: (/<error\b[\s\S]*<\/error>/.exec(archiveAnswer)?.[0] ?? archiveAnswer).slice(0, 300) };
  const stillOpen = sessions.filter((s) => !s.closed).length;
  for (const session of sessions) {
    if (!session.closed) session.socket.write(`<presence to='${roomPrefix}${session.nick}' type='unavailable'/>`);
    session.close();
  }

  latencies.sort((a, b) => a - b);
  const quantile = (q) =>
    latencies.length === 0 ? Number.NaN : latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))];
  const streamErrors = tally(sessions.filter((s) => s.streamError).map((s) => s.streamError));
  console.log(
    JSON.stringify({
      occupants,
      senders: senderCount,
      window,
      rate,
      seconds: elapsed,
      loginMs,
      joinMs,
      settleMs,
      created: /\scode=['"]201['"]/.test(created),
      fullLists,
      config: formFields(configForm),
      roomFeatures: features(roomInfo),
      delivered,
      messagesPerSecond: delivered / elapsed,
      sentPerSecond: delivered / elapsed / occupants,
      perSecond,
      p50: quantile(0.5),
      p99: quantile(0.99),
      max: latencies.at(-1),
      sent,
      sentBySender,
      withStanzaId,
      archive,
      errors,
      errorSamples,
      malformed,
      misrouted,
      otherMessages,
      unexpectedPresence,
      lostMessages,
      missingDeliveries,
      short,
      disconnects,
      streamErrors,
      stillOpen,
      loadCpu: (cpu.user + cpu.system) / 1e6 / elapsed,
      unknown: sessions.reduce((n, s) => n + s.unknown, 0),
      unknownSamples: sessions.flatMap((s) => s.unknownSamples).slice(0, 3),
    }),
  );
}

if (mode === 'probe') await probe();
else if (mode === 'throughput') await throughput();
else if (mode === 'idle') await idle();
else if (mode === 'room') await room();
else {
  console.error('usage: node load.mjs probe|throughput|idle|room --port P [options]');
  process.exit(2);
}
