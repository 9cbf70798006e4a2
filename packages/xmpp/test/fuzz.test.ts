import { connect } from 'node:net';
import { PortService } from '@portbind/core';
import { xml as clientXml, type Element, client as xmppClient } from '@xmpp/client';
import { describe, expect, it } from 'vitest';
import { prng } from '../../../test/support/prng.js';
import { LoginThrottle, MemoryUserStore, memoryStorage, xmppServer } from '../src/index.js';
import { capturingLogger, clients, OPEN, stopAfterTest } from './support.js';

// Fuzzing the XMPP port: mutations of captured valid traffic (stream headers, STARTTLS, SASL,
// bind, stanzas) and of known-hostile shapes (deep nesting, entities, PIs, DTDs, truncated XML,
// bad UTF-8), one connection each. Seeded, so a failure replays. The server must live, log
// nothing at error level for peer input, and keep serving a well-behaved client throughout.

const SEED = 0x7a11ce;
const INPUTS = 2500;
const CONCURRENCY = 12;
const PER_INPUT_MS = 100;

const plain = Buffer.from('\u0000juliet\u0000balcony').toString('base64');
const scramFirst = Buffer.from('n,,n=juliet,r=fyko+d2lbbFgONRv9qkxdawL').toString('base64');
const bind = "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>fuzz</resource></bind></iq>";
const auth = `${OPEN}<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${plain}</auth>`;
/** A client waits for <success/> before it restarts the stream: the exchange does too, after this prefix. */
const authPrefix = Buffer.from(auth);
const loggedIn = `${auth}${OPEN}${bind}`;
const gates = [
  { prefix: authPrefix, until: '<success' },
  { prefix: Buffer.from(loggedIn), until: '</iq>' },
];

/** Captured valid traffic, and hostile shapes, to mutate. */
const seeds: Buffer[] = [
  OPEN,
  `${OPEN}<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`,
  `${OPEN}<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>${scramFirst}</auth>`,
  `${OPEN}<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>${scramFirst}</auth><response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>Yml3cw==</response>`,
  `${OPEN}<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${plain}</auth>`,
  `${OPEN}<iq type='get' id='r'><query xmlns='jabber:iq:register'/></iq>`,
  `${loggedIn}<presence><priority>5</priority><status>here</status></presence>`,
  `${loggedIn}<message to='romeo@localhost' type='chat' id='m1'><body>Wherefore art thou &amp; &#x41; &lt;3</body></message>`,
  `${loggedIn}<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq><iq type='set' id='r2'><query xmlns='jabber:iq:roster'><item jid='romeo@localhost' name='R'><group>G</group></item></query></iq>`,
  `${loggedIn}<presence to='romeo@localhost' type='subscribe'/><presence to='romeo@localhost' type='subscribed'/>`,
  `${loggedIn}<iq type='set' id='v'><vCard xmlns='vcard-temp'><FN>Juliet</FN><NICKNAME>J</NICKNAME></vCard></iq><iq type='get' id='v2' to='romeo@localhost'><vCard xmlns='vcard-temp'/></iq>`,
  `${loggedIn}<iq type='set' id='c'><enable xmlns='urn:xmpp:carbons:2'/></iq><iq type='get' id='d' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq><iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`,
  `${loggedIn}<message to='juliet@localhost'><body>${'<b>'.repeat(200)}deep${'</b>'.repeat(200)}</body></message>`,
  `${loggedIn}<message><body>&unknown;</body></message>`,
  `${loggedIn}<message><![CDATA[<not>markup</not>]]></message></stream:stream>`,
  `${OPEN}<?xml-stylesheet href='x'?><!-- comment -->`,
  `<?xml version='1.0'?><!DOCTYPE s [<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;&a;&a;'>]>${OPEN}<message><body>&b;</body></message>`,
  `${OPEN}<message><body>truncated`,
  `${OPEN.replace("to='localhost'", "to='example.org'")}`,
  `${OPEN.replace('jabber:client', 'jabber:server')}`,
  `${loggedIn}<message>${'<x>'.repeat(5000)}`,
].map((text) => Buffer.from(text));
const login = Buffer.from(loggedIn);
seeds.push(
  Buffer.concat([
    Buffer.from(`${loggedIn}<message><body>`),
    Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0xe2, 0x82]),
    Buffer.from('</body></message>'),
  ]),
);
seeds.push(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(OPEN)]));
seeds.push(Buffer.concat([Buffer.from([0xfe, 0xff]), Buffer.from(OPEN)]));

const tokens = [
  '<',
  '>',
  '/>',
  '</stream:stream>',
  "'",
  '"',
  '&',
  '&amp;',
  '&#0;',
  '&#xD800;',
  '<x>'.repeat(100),
  ']]>',
  '<!--',
  '<?pi?>',
  '<!DOCTYPE x>',
  'xmlns:a="b"',
  ' xmlns="" ',
  'a:b',
  '\u0000',
  '\u{1F600}',
  OPEN,
  bind,
  '<stream:features/>',
  "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>=</auth>",
].map((text) => Buffer.from(text));

function mutate(random: () => number): Buffer {
  const pick = <T>(list: T[]): T => list[Math.floor(random() * list.length)] as T;
  let input = Buffer.from(pick(seeds));
  // Most inputs that log in keep their login intact, so the fuzzer reaches binding and stanzas too.
  const floor = input.subarray(0, login.length).equals(login) && random() < 0.7 ? login.length : 0;
  const rounds = 1 + Math.floor(random() * 4);
  for (let round = 0; round < rounds; round++) {
    const at = floor + Math.floor(random() * (input.length - floor + 1));
    switch (Math.floor(random() * 8)) {
      case 0: {
        // flip a byte
        if (input.length === 0) break;
        const i = Math.min(at, input.length - 1);
        input[i] = (input[i] as number) ^ (1 << Math.floor(random() * 8));
        break;
      }
      case 1: // insert random bytes
        input = Buffer.concat([
          input.subarray(0, at),
          Buffer.from(Array.from({ length: 1 + Math.floor(random() * 8) }, () => Math.floor(random() * 256))),
          input.subarray(at),
        ]);
        break;
      case 2: {
        // delete a range
        const end = Math.min(input.length, at + Math.floor(random() * 40));
        input = Buffer.concat([input.subarray(0, at), input.subarray(end)]);
        break;
      }
      case 3: {
        // duplicate a range
        const end = Math.min(input.length, at + Math.floor(random() * 200));
        input = Buffer.concat([input.subarray(0, end), input.subarray(at, end), input.subarray(end)]);
        break;
      }
      case 4: // truncate
        input = input.subarray(0, at);
        break;
      case 5: // splice another seed in
        input = Buffer.concat([input.subarray(0, at), pick(seeds).subarray(Math.floor(random() * 100)), input.subarray(at)]);
        break;
      default: // insert a token
        input = Buffer.concat([input.subarray(0, at), pick(tokens), input.subarray(at)]);
    }
  }
  return input;
}

/** Where to cut an input into the chunks it is written in. */
function cuts(input: Buffer, random: () => number): number[] {
  const inner = Array.from({ length: Math.floor(random() * 3) }, () => Math.floor(random() * input.length));
  return [0, ...inner, input.length].sort((a, b) => a - b);
}

/**
 * Send one input on its own connection, in chunks (and, after an intact login, only once the
 * server said <success/>, as a client does); how the connection ended.
 */
function exchange(port: number, input: Buffer, at: number[]): Promise<{ closedByServer: boolean; reply: string }> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (closedByServer: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ closedByServer, reply: Buffer.concat(chunks).toString('latin1') });
    };
    let timer: NodeJS.Timeout | undefined;
    // Gates: after an intact login prefix, wait for the server's answer before the next part.
    const parts: Array<{ bytes: Buffer; until?: string }> = [];
    let offset = 0;
    for (const gate of gates) {
      if (!input.subarray(offset, gate.prefix.length).equals(gate.prefix.subarray(offset))) break;
      parts.push({ bytes: input.subarray(offset, gate.prefix.length), until: gate.until });
      offset = gate.prefix.length;
    }
    const send = (): void => {
      while (parts.length > 0) {
        const part = parts[0] as { bytes: Buffer; until?: string };
        if (part.until !== undefined && part.bytes.length === 0) {
          if (!Buffer.concat(chunks).includes(part.until)) return;
          parts.shift();
          continue;
        }
        socket.write(part.bytes);
        part.bytes = Buffer.alloc(0);
        if (part.until === undefined) parts.shift();
      }
    };
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      send();
    });
    socket.on('error', () => finish(true));
    socket.on('end', () => finish(true));
    socket.on('close', () => finish(true));
    socket.once('connect', () => {
      timer = setTimeout(() => finish(false), PER_INPUT_MS);
      if (offset > 0) {
        parts.push({ bytes: input.subarray(offset) });
        send();
        return;
      }
      for (let i = 1; i < at.length; i++) socket.write(input.subarray(at[i - 1], at[i]));
    });
  });
}

describe('fuzzing the XMPP port', () => {
  it(`${INPUTS} mutated inputs, one connection each: the server lives, logs no errors, and keeps serving a good client`, async () => {
    const logger = capturingLogger();
    // One PBKDF2 round: thousands of logins, and what is under test is the parser and the router.
    const users = new MemoryUserStore({ iterations: 1 });
    await users.create('juliet', 'balcony');
    await users.create('romeo', 'r0meo!');
    await users.create('watcher', 'keeps-watching');
    // No TLS and PLAIN for loopback peers, so static inputs reach SASL, binding and stanzas.
    // Throttling would lock juliet out after 5 mutated passwords and hide everything after SASL from the fuzzer.
    const server = xmppServer({
      domain: 'localhost',
      storage: memoryStorage(),
      users,
      allowPlaintext: 'loopback',
      rateLimit: { bytesPerSecond: 0 },
      throttle: new LoginThrottle({ maxFailures: 1e9, maxAccountFailures: 1e9 }),
    });
    const service = stopAfterTest(new PortService({ env: {}, logger, gracePeriodMs: 2000 }));
    const binding = service.bind(server.c2s(), { port: 0, host: '127.0.0.1', closeWaitMs: 200 });
    await service.start();
    const port = (binding.address as import('node:net').AddressInfo).port;

    const crashes: unknown[] = [];
    const onCrash = (error: unknown): void => {
      crashes.push(error);
    };
    process.on('uncaughtException', onCrash);
    process.on('unhandledRejection', onCrash);

    // The well-behaved client, logged in for the whole run.
    const watcher = xmppClient({
      timeout: 8000,
      service: `xmpp://127.0.0.1:${port}`,
      domain: 'localhost',
      username: 'watcher',
      password: 'keeps-watching',
    });
    watcher.on('error', () => {});
    clients.push(watcher);
    const jid = String(await watcher.start());
    await watcher.send(clientXml('presence'));
    let echoes = 0;
    watcher.on('stanza', (stanza: Element) => {
      if (stanza.is('message') && stanza.getChildText('body')?.startsWith('echo ')) echoes++;
    });
    let served = 0;
    const serve = async (round: number): Promise<void> => {
      const pong = await watcher.iqCaller.request(
        clientXml('iq', { type: 'get', to: 'localhost' }, clientXml('ping', { xmlns: 'urn:xmpp:ping' })),
      );
      expect(pong.attrs.type).toBe('result');
      await watcher.send(clientXml('message', { to: jid, type: 'chat' }, clientXml('body', {}, `echo ${round}`)));
      served++;
    };

    // Every input made up front from the seed: the same run whatever the workers' timing.
    const random = prng(SEED);
    const inputs = Array.from({ length: INPUTS }, () => {
      const input = mutate(random);
      return { input, at: cuts(input, random) };
    });
    const outcomes = { closedByServer: 0, heldOpen: 0, authenticated: 0, bound: 0, streamErrors: new Map<string, number>() };
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < INPUTS) {
        const index = next++;
        const { input, at } = inputs[index] as { input: Buffer; at: number[] };
        const { closedByServer, reply } = await exchange(port, input, at);
        if (closedByServer) outcomes.closedByServer++;
        else outcomes.heldOpen++;
        if (reply.includes('<success')) outcomes.authenticated++;
        if (reply.includes('<jid>')) outcomes.bound++;
        const condition = /<stream:error><([a-z-]+) /.exec(reply)?.[1];
        if (condition !== undefined) outcomes.streamErrors.set(condition, (outcomes.streamErrors.get(condition) ?? 0) + 1);
        if (index % 100 === 0) await serve(index);
      }
    };
    const started = Date.now();
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    await serve(INPUTS);
    process.off('uncaughtException', onCrash);
    process.off('unhandledRejection', onCrash);

    console.log(
      `xmpp fuzz: ${INPUTS} inputs in ${Date.now() - started} ms; closed by the server ${outcomes.closedByServer}, held open until the ${PER_INPUT_MS} ms timeout ${outcomes.heldOpen}; authenticated ${outcomes.authenticated}, bound a resource ${outcomes.bound}; good client served ${served} times; stream errors ${JSON.stringify(Object.fromEntries([...outcomes.streamErrors].sort((a, b) => b[1] - a[1])))}`,
    );
    expect(crashes).toEqual([]);
    expect(logger.lines.filter((line) => line.level === 'error')).toEqual([]);
    expect(served).toBe(INPUTS / 100 + 1);
    // Every echo came back (the last one may still be on its way: wait for it).
    for (let i = 0; i < 100 && echoes < served; i++) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(echoes).toBe(served);
    expect(outcomes.closedByServer + outcomes.heldOpen).toBe(INPUTS);
    expect(outcomes.streamErrors.size).toBeGreaterThan(5);
  }, 60_000);
});
