// Writes portbind-xmpp.doap (XEP-0453) from the README's "Supported specifications" table, so the
// two never disagree: `node packages/xmpp/scripts/doap.mjs` after editing the table
// (test/xmpp-doap.test.ts fails when the file is stale).
import { readFileSync, writeFileSync } from 'node:fs';

const here = new URL('..', import.meta.url);
const readme = readFileSync(new URL('README.md', here), 'utf8');
const xmlText = (text) => text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('`', '');

export function doap() {
  const rows = [...readme.matchAll(/^\| (RFC \d+|XEP-\d{4}) [^|]*?\|\s*([^|]*?)\s*\|\s*[^|]*?\s*\|\s*([^|]*?)\s*\|$/gm)];
  const out = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<!-- XEP-0453 DOAP for @portbind/xmpp, written by scripts/doap.mjs from the README's "Supported specifications" table. -->`,
    '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://usefulinc.com/ns/doap#" xmlns:xmpp="https://linkmauve.fr/ns/xmpp-doap#">',
    '  <Project>',
    '    <name>@portbind/xmpp</name>',
    '    <shortdesc xml:lang="en">XMPP client-to-server for Node.js services that bind their own ports</shortdesc>',
    '    <programming-language>TypeScript</programming-language>',
    '    <license rdf:resource="https://spdx.org/licenses/MIT.html"/>',
    '    <category rdf:resource="https://linkmauve.fr/ns/xmpp-doap#category-server"/>',
    '    <xmpp:compliance>',
    '      <xmpp:ComplianceSuite>',
    '        <xmpp:suite rdf:resource="https://xmpp.org/extensions/xep-0479.html"/>',
    '        <xmpp:level>advanced</xmpp:level>',
    '        <xmpp:categories>core, im, mobile</xmpp:categories>',
    '      </xmpp:ComplianceSuite>',
    '    </xmpp:compliance>',
  ];
  for (const [, spec, version, notes] of rows) {
    if (spec.startsWith('RFC')) {
      out.push(`    <implements rdf:resource="https://www.rfc-editor.org/info/rfc${spec.split(' ')[1]}"/>`);
      continue;
    }
    const partial = ['subset', 'server side', 'through', '1:1'].some((word) => notes.includes(word));
    out.push(
      '    <implements>',
      '      <xmpp:SupportedXep>',
      `        <xmpp:xep rdf:resource="https://xmpp.org/extensions/xep-${spec.split('-')[1]}.html"/>`,
      `        <xmpp:status>${partial ? 'partial' : 'complete'}</xmpp:status>`,
      `        <xmpp:version>${version}</xmpp:version>`,
    );
    if (notes !== '') out.push(`        <xmpp:note xml:lang="en">${xmlText(notes)}</xmpp:note>`);
    out.push('      </xmpp:SupportedXep>', '    </implements>');
  }
  out.push('  </Project>', '</rdf:RDF>', '');
  return out.join('\n');
}

if (process.argv[1] === new URL(import.meta.url).pathname) writeFileSync(new URL('portbind-xmpp.doap', here), doap());
