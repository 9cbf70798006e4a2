import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
// @ts-expect-error: a plain .mjs script, no types
import { doap } from '../packages/xmpp/scripts/doap.mjs';

// The xmpp README's "Supported specifications" table and its XEP-0453 DOAP file say the same thing.

const readme = await readFile(new URL('../packages/xmpp/README.md', import.meta.url), 'utf8');
const file = await readFile(new URL('../packages/xmpp/portbind-xmpp.doap', import.meta.url), 'utf8');

describe('@portbind/xmpp supported specifications', () => {
  it('the DOAP file is the README table (regenerate with node packages/xmpp/scripts/doap.mjs)', () => {
    expect(file).toBe((doap as () => string)());
    const table = [...readme.matchAll(/^\| XEP-(\d{4}) [^|]*\| ([^|]+?) \|/gm)].map((m) => `${m[1]} ${m[2]}`);
    const listed = [...file.matchAll(/xep-(\d{4})\.html"\/>\s*<xmpp:status>[a-z]+<\/xmpp:status>\s*<xmpp:version>([^<]+)</g)].map(
      (m) => `${m[1]} ${m[2]}`,
    );
    expect(table.length).toBeGreaterThan(30);
    expect(listed).toEqual(table);
  });
});
