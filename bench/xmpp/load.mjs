// XMPP load generator for bench/xmpp.mjs, on raw TCP sockets (a full client library is too heavy
// for 10 000 sessions). Every session logs in the same way: stream to 'localhost', SASL PLAIN,
// stream restart, resource binding, initial presence.
//
//   node load.mjs throughput --port P [--clients 50] [--window 10] [--seconds 10] [--warmup 2]
//     Clients user0..user{N-1} in pairs (user0<->user1, …). Each starts with WINDOW chat messages
//     to its partner's full JID and answers every message it receives with a new one, so each
//     client has WINDOW messages in flight at all times (a closed loop). The body carries the send
//     time; delivered messages and their latency (receive time - send time, same process clock)
//     are counted over SECONDS after WARMUP. Prints "measure-start" and "measure-end" lines when
//     the measured window opens and closes, then one JSON line with the results.
//
//   node load.mjs idle --port P --from A --count C [--concurrency 200]
//     Logs in sessions idleA..idle{A+C-1} (resource 'idle') and keeps them open and reading.
//     Prints one JSON line when all have logged in (or failed); then, on "status" on stdin, one
//     JSON line with how many are still open; exits when stdin closes.
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

const NS_SASL = 'urn:ietf:params:xml:ns:xmpp-sasl';
const header = `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='${domain}' version='1.0'>`;
const FEATURES_END = /<\/(?:stream:)?features>/;
const escapeXml = (text) => text.replace(/[&<>'"]/g, (c) => `&#${c.charCodeAt(0)};`);

/** One client-to-server session: log in with `login()`, then stanzas go to `onStanzaData`. */
class Session {
  constructor(user, resource) {
    this.user = user;
    this.resource = resource;
    this.buffer = '';
    this.loggedIn = false;
    this.closed = false;
    this.closedEarly = false; // closed by the server (or the network), not by us
    this.streamError = undefined;
    this.waiter = undefined;
    this.onStanzaData = undefined;
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
        if (this.onStanzaData !== undefined) return this.onStanzaData();
        this.#check();
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

  /** Resolves with the buffered text up to and including the first match of `pattern`. */
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

  async #steps() {
    const s = this.socket;
    s.write(header);
    const features = await this.#until(FEATURES_END);
    if (!/<mechanism>PLAIN<\/mechanism>/.test(features)) throw new Error(`PLAIN not offered: ${features}`);
    const payload = Buffer.from(`\0${this.user}\0${password}`).toString('base64');
    s.write(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${payload}</auth>`);
    const outcome = await this.#until(/<success[^>]*\/>|<\/success>|<\/failure>|<failure[^>]*\/>/);
    if (!/<success/.test(outcome)) throw new Error(`authentication failed: ${outcome}`);
    s.write(header);
    const bindFeatures = await this.#until(FEATURES_END);
    if (!/urn:ietf:params:xml:ns:xmpp-bind/.test(bindFeatures)) throw new Error(`no resource binding offered: ${bindFeatures}`);
    s.write(
      `<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>${escapeXml(this.resource)}</resource></bind></iq>`,
    );
    const bound = await this.#until(/<\/iq>|<iq[^>]*\/>/);
    const jid = /<jid>([^<]+)<\/jid>/.exec(bound)?.[1];
    if (jid === undefined) throw new Error(`bind failed: ${bound}`);
    this.jid = jid;
    s.write('<presence/>');
    this.loggedIn = true;
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

async function throughput() {
  const clients = Number(option('clients', 50));
  const window = Number(option('window', 10));
  const seconds = Number(option('seconds', 10));
  const warmup = Number(option('warmup', 2));
  if (clients < 2 || clients % 2 !== 0) throw new Error('--clients must be even (clients talk in pairs)');
  const loginStarted = performance.now();
  const results = await pool(clients, 50, (i) => new Session(`user${i}`, 'bench').login());
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
  await new Promise((resolve) => setTimeout(resolve, 300));

  let phase = 'warmup'; // 'warmup' → 'measure' → 'done'
  let delivered = 0;
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
  const disconnects = { warmup: 0, measure: 0 };
  const filler = 'Hello from the XMPP benchmark, how are you?';

  sessions.forEach((session, i) => {
    const partner = `user${i ^ 1}@${domain}/bench`;
    let id = 0;
    const send = () => {
      sent++;
      session.socket.write(
        `<message to='${partner}' type='chat' id='m${++id}'><body>${performance.now().toFixed(3)} ${filler}</body></message>`,
      );
    };
    session.send = send;
    session.onStanzaData = () => {
      if (phase === 'measure') reads++;
      let buffer = session.buffer;
      let end = buffer.indexOf('</message>');
      if (end === -1) return;
      const now = performance.now();
      session.socket.cork();
      while (end !== -1) {
        const stanza = buffer.slice(buffer.lastIndexOf('<message', end), end);
        buffer = buffer.slice(end + 10);
        end = buffer.indexOf('</message>');
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
          else if (phase === 'measure') {
            delivered++;
            bucket++;
            latencies.push(now - sentAt);
          }
        }
        // Closed loop: every message received (or bounced) is replaced by a new one.
        if (phase !== 'done') send();
      }
      session.socket.uncork();
      session.buffer = buffer;
    };
    session.onClose = () => {
      if (phase !== 'done') phase === 'measure' ? disconnects.measure++ : disconnects.warmup++;
    };
  });
  for (const session of sessions) {
    session.socket.cork();
    for (let k = 0; k < window; k++) session.send();
    session.socket.uncork();
  }
  await new Promise((resolve) => setTimeout(resolve, warmup * 1000));
  phase = 'measure';
  console.log('measure-start');
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  const ticker = setInterval(() => {
    perSecond.push(bucket);
    bucket = 0;
  }, 1000);
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  phase = 'done';
  if (bucket > 0) perSecond.push(bucket); // the last, partial second
  const elapsed = (performance.now() - started) / 1000;
  clearInterval(ticker);
  const cpu = process.cpuUsage(cpuBefore);
  console.log('measure-end');
  const stillOpen = sessions.filter((s) => !s.closed).length;
  // Every client has exactly WINDOW messages in flight when the window closes: wait for them all,
  // so that a lost message shows.
  const inFlight = clients * window;
  for (let waited = 0; afterEnd < inFlight && waited < 5000; waited += 50) await new Promise((resolve) => setTimeout(resolve, 50));
  for (const session of sessions) session.close();

  latencies.sort((a, b) => a - b);
  const quantile = (q) =>
    latencies.length === 0 ? Number.NaN : latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))];
  const streamErrors = tally(sessions.filter((s) => s.streamError).map((s) => s.streamError));
  console.log(
    JSON.stringify({
      clients,
      window,
      seconds: elapsed,
      loginMs,
      delivered,
      messagesPerSecond: delivered / elapsed,
      perSecond,
      p50: quantile(0.5),
      p99: quantile(0.99),
      max: latencies.at(-1),
      sent,
      errors,
      errorSamples,
      malformed,
      misrouted,
      lost: inFlight - afterEnd,
      disconnects,
      streamErrors,
      stillOpen,
      loadCpu: (cpu.user + cpu.system) / 1e6 / elapsed,
      messagesPerRead: delivered / Math.max(1, reads),
    }),
  );
}

async function idle() {
  const from = Number(option('from', 0));
  const count = Number(option('count', 1000));
  const concurrency = Number(option('concurrency', 200));
  const started = performance.now();
  const results = await pool(count, concurrency, async (i) => {
    const session = new Session(`idle${from + i}`, 'idle');
    await session.login();
    // Keep reading whatever the server sends (its answer to the initial presence), drop it.
    session.onStanzaData = () => {
      session.buffer = '';
    };
    return session;
  });
  const sessions = results.filter((r) => r.value).map((r) => r.value);
  const failed = results.filter((r) => r.error).map((r) => r.error);
  console.log(
    JSON.stringify({ loggedIn: sessions.length, failed: failed.length, failures: tally(failed), loginMs: performance.now() - started }),
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

if (mode === 'throughput') await throughput();
else if (mode === 'idle') await idle();
else {
  console.error('usage: node load.mjs throughput|idle --port P [options]');
  process.exit(2);
}
