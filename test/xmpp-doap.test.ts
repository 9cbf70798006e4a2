import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';

// The xmpp README's "Supported specifications" table and its XEP-0453 DOAP file say the same thing.

const readme = await readFile(new URL('../packages/xmpp/README.md', import.meta.url), 'utf8');
const doap = await readFile(new URL('../packages/xmpp/portbind-xmpp.doap', import.meta.url), 'utf8');

describe('@portbind/xmpp supported specifications', () => {
  it('lists the same XEPs with the same versions in the README table and the DOAP file', () => {
    const table = [...readme.matchAll(/^\| XEP-(\d{4}) [^|]*\| ([^|]+?) \|/gm)].map((m) => `${m[1]} ${m[2]}`);
    const listed = [...doap.matchAll(/xep-(\d{4})\.html"\/>\s*<xmpp:status>[a-z]+<\/xmpp:status>\s*<xmpp:version>([^<]+)</g)].map(
      (m) => `${m[1]} ${m[2]}`,
    );
    expect(table.length).toBeGreaterThan(30);
    expect(listed).toEqual(table);
    const rfcs = [...readme.matchAll(/^\| RFC (\d+) /gm)].map((m) => m[1]);
    expect([...doap.matchAll(/rfc-editor\.org\/info\/rfc(\d+)"/g)].map((m) => m[1])).toEqual(rfcs);
  });
});
