import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fromTree, toTree } from '../src/element.js';
import { StreamError, xml } from '../src/index.js';
import { type StreamEvent, StreamParser } from '../src/stream-parser.js';

const OPEN =
  "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

/** Parse input (split into chunks) and return the events and the error condition, if any. */
function parse(input: string | Buffer, options: { chunk?: number; maxStanzaSize?: number } = {}) {
  const events: StreamEvent[] = [];
  const parser = new StreamParser((event) => events.push(event), { maxStanzaSize: options.maxStanzaSize });
  const bytes = typeof input === 'string' ? Buffer.from(input) : input;
  const size = options.chunk ?? bytes.length;
  let error: string | undefined;
  try {
    for (let at = 0; at < bytes.length; at += size) parser.write(bytes.subarray(at, at + size));
  } catch (caught) {
    if (!(caught instanceof StreamError)) throw caught;
    error = caught.condition;
  }
  return { events, error, summary: events.map((e) => (e.type === 'element' ? e.element.toString() : e.type)) };
}

describe('StreamParser', () => {
  it('allows maxDepth levels of nesting in a stanza (the stanza is 1) and answers one more with policy-violation, however it arrives', () => {
    const nest = (depth: number): string => `${'<x>'.repeat(depth - 1)}${'</x>'.repeat(depth - 1)}`;
    const ok = parse(`${OPEN}<message>${nest(64)}</message>`, { chunk: 7 });
    expect(ok.error).toBeUndefined();
    expect(ok.events.filter((e) => e.type === 'element')).toHaveLength(1);
    const deep = parse(`${OPEN}<message>${nest(65)}</message><presence/>`, { chunk: 7 });
    expect(deep.error).toBe('policy-violation');
    expect(deep.events.filter((e) => e.type === 'element')).toHaveLength(0);
    const custom = new StreamParser(() => {}, { maxDepth: 3 });
    expect(() => custom.write(Buffer.from(`${OPEN}<a><b><c><d/></c></b></a>`))).toThrow(/nested deeper than 3 levels/);
  });

  it('takes a new stanza size limit on the fly, never below 10 000', () => {
    const events: StreamEvent[] = [];
    const parser = new StreamParser((event) => events.push(event), { maxStanzaSize: 10_000 });
    parser.write(Buffer.from(OPEN));
    parser.maxStanzaSize = 50_000;
    parser.write(Buffer.from(`<message><body>${'x'.repeat(20_000)}</body></message>`));
    expect(events.map((e) => e.type)).toEqual(['open', 'element']);
    parser.maxStanzaSize = 5;
    expect(parser.maxStanzaSize).toBe(10_000);
    expect(() => parser.write(Buffer.from(`<message><body>${'x'.repeat(20_000)}</body></message>`))).toThrow(/larger than 10000/);
  });

  it('reports the stream header and each top-level element, with namespaces', () => {
    const { events, error } = parse(
      `${OPEN}<message to='a@b' type='chat'><body>hi &amp; &lt;3 &#x263A;</body></message><iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq></stream:stream>`,
    );
    expect(error).toBeUndefined();
    expect(events[0]).toEqual({
      type: 'open',
      name: 'stream:stream',
      xmlns: 'http://etherx.jabber.org/streams',
      attrs: { xmlns: 'jabber:client', 'xmlns:stream': 'http://etherx.jabber.org/streams', to: 'localhost', version: '1.0' },
    });
    const message = events[1];
    if (message?.type !== 'element') throw new Error('no element');
    expect(message.element.local).toBe('message');
    expect(message.element.xmlns).toBe('jabber:client');
    expect(message.element.getChildText('body')).toBe('hi & <3 ☺');
    const iq = events[2];
    if (iq?.type !== 'element') throw new Error('no element');
    expect(iq.element.getChild('ping', 'urn:xmpp:ping')).toBeDefined();
    expect(events[3]).toEqual({ type: 'close' });
  });

  it('parses the same whatever the chunking, down to single bytes (multi-byte UTF-8 split too)', () => {
    const input = `${OPEN}<message><body>héllo wörld ☺ 𝄞</body></message> <presence/>`;
    const whole = parse(input).summary;
    expect(parse(input, { chunk: 1 }).summary).toEqual(whole);
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 40 }), (chunk) => {
        expect(parse(input, { chunk }).summary).toEqual(whole);
      }),
      { numRuns: 40 },
    );
  });

  it('ignores whitespace keepalives between stanzas', () => {
    expect(parse(`${OPEN} \n\t <presence/>\n`).summary).toEqual(['open', '<presence/>']);
  });

  it('restarts with a new document after STARTTLS or SASL', () => {
    const events: StreamEvent[] = [];
    const parser = new StreamParser((event) => events.push(event));
    parser.write(Buffer.from(`${OPEN}<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`));
    parser.restart();
    parser.write(Buffer.from(`${OPEN}<auth/>`));
    expect(events.map((e) => e.type)).toEqual(['open', 'element', 'open', 'element']);
  });

  it.each([
    ['a comment', `${OPEN}<!-- hi -->`, 'restricted-xml'],
    ['a processing instruction', `${OPEN}<?php echo 1 ?>`, 'restricted-xml'],
    [
      'a DTD',
      "<?xml version='1.0'?><!DOCTYPE stream [<!ENTITY a 'b'>]><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>",
      'restricted-xml',
    ],
    [
      'billion laughs',
      `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>&lol3;`,
      'restricted-xml',
    ],
    ['an undefined entity', `${OPEN}<message><body>&nbsp;</body></message>`, 'restricted-xml'],
    ['a mismatched close tag', `${OPEN}<message><body></message>`, 'not-well-formed'],
    ['a duplicate attribute', `${OPEN}<message to='a' to='b'/>`, 'not-well-formed'],
    ['an unbound prefix', `${OPEN}<foo:bar/>`, 'bad-namespace-prefix'],
    ['a control character', `${OPEN}<message><body>\u0001</body></message>`, 'not-well-formed'],
    ['text between stanzas', `${OPEN}hello<presence/>`, 'bad-format'],
    [
      'a Latin-1 declaration',
      "<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>",
      'unsupported-encoding',
    ],
  ])('answers %s with <%s/>', (_name, input, condition) => {
    expect(parse(input).error).toBe(condition);
  });

  it('answers invalid UTF-8 with <not-well-formed/> and UTF-16 with <unsupported-encoding/>', () => {
    expect(
      parse(Buffer.concat([Buffer.from(`${OPEN}<message><body>`), Buffer.from([0xc3, 0x28]), Buffer.from('</body></message>')])).error,
    ).toBe('not-well-formed');
    expect(parse(Buffer.concat([Buffer.from([0xfe, 0xff]), Buffer.from(OPEN, 'utf16le')])).error).toBe('unsupported-encoding');
  });

  it('refuses a stanza over the limit with <policy-violation/>, however it arrives', () => {
    const big = `${OPEN}<message><body>${'x'.repeat(20_000)}</body></message>`;
    expect(parse(big, { maxStanzaSize: 10_000 }).error).toBe('policy-violation');
    expect(parse(big, { maxStanzaSize: 10_000, chunk: 1000 }).error).toBe('policy-violation');
    expect(parse(big, { maxStanzaSize: 30_000 }).error).toBeUndefined();
    // Many small stanzas in one chunk are fine: the limit is per stanza.
    const many = `${OPEN}${'<presence/>'.repeat(5000)}`;
    expect(parse(many, { maxStanzaSize: 10_000 })).toMatchObject({ error: undefined });
  });

  it('stops a never-ending attribute value within one chunk of the limit', () => {
    const events: StreamEvent[] = [];
    const parser = new StreamParser((event) => events.push(event), { maxStanzaSize: 10_000 });
    parser.write(Buffer.from(`${OPEN}<message to='`));
    let fed = 0;
    let condition: string | undefined;
    while (fed < 1_000_000) {
      try {
        parser.write(Buffer.alloc(1000, 'a'));
        fed += 1000;
      } catch (error) {
        condition = (error as StreamError).condition;
        break;
      }
    }
    expect(condition).toBe('policy-violation');
    expect(fed).toBeLessThanOrEqual(11_000);
  });

  it('never goes below the 10 000-byte minimum of RFC 6120 §13.12', () => {
    expect(new StreamParser(() => {}, { maxStanzaSize: 10 }).maxStanzaSize).toBe(10_000);
  });

  it('random bytes after the header give a StreamError or nothing, never another exception', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const parser = new StreamParser(() => {});
        try {
          parser.write(Buffer.from(OPEN));
          parser.write(Buffer.from(bytes));
        } catch (error) {
          expect(error).toBeInstanceOf(StreamError);
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe('XmlElement', () => {
  it('builds and escapes', () => {
    const element = xml('message', { to: "a'b@c", type: 'chat', id: undefined }, xml('body', {}, '<hi> & bye'));
    expect(element.toString()).toBe("<message to='a&apos;b@c' type='chat'><body>&lt;hi&gt; &amp; bye</body></message>");
  });

  it('round-trips what the parser built', () => {
    const { events } = parse(`${OPEN}<message xml:lang='en'><body>a&amp;b</body><x xmlns='jabber:x:data'/></message>`);
    const element = events[1];
    if (element?.type !== 'element') throw new Error('no element');
    expect(element.element.toString()).toBe("<message xml:lang='en'><body>a&amp;b</body><x xmlns='jabber:x:data'/></message>");
  });

  it('crosses the bus as JSON (toTree/fromTree) unchanged, namespaces included; refuses what is not a tree', () => {
    const { events } = parse(
      `${OPEN}<message to='b@c' xml:lang='en'><body>a&amp;b &lt;x&gt;</body><x xmlns='jabber:x:data' type='form'><field var='v'><value>1</value></field></x>text</message>`,
    );
    const element = events[1];
    if (element?.type !== 'element') throw new Error('no element');
    const tree = toTree(element.element);
    const back = fromTree(JSON.parse(JSON.stringify(tree)));
    expect(back?.toString()).toBe(element.element.toString());
    expect(back?.getChild('x', 'jabber:x:data')?.getChild('field')?.xmlns).toBe('jabber:x:data');
    expect(back?.xmlns).toBe(element.element.xmlns);
    for (const bad of [null, 'x', [], ['m', {}], ['m', { a: 1 }, ''], ['', {}, ''], ['m', {}, '', 5], ['m', [], '']])
      expect(fromTree(bad)).toBeUndefined();
    // Deeper than the limit: no tree (the XML goes instead), and none is rebuilt.
    let deep = xml('a');
    for (let i = 0; i < 70; i++) deep = xml('a', {}, deep);
    expect(toTree(deep)).toBeUndefined();
    expect(fromTree(toTree(deep, 100))).toBeUndefined();
  });

  it('renders stream errors in RFC 6120 form', () => {
    expect(new StreamError('policy-violation', 'too big').toElement().toString()).toBe(
      "<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>too big</text></stream:error>",
    );
  });
});
