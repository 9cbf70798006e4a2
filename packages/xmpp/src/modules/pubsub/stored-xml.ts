// Stored payloads are XML text (stores/types.ts); this reads one back into an element with the
// stream parser (the same strict, restricted XML the streams use).

import type { XmlElement } from '../../element.js';
import { StreamParser } from '../../stream-parser.js';

/** Parse one element serialized by `XmlElement.toString()`; undefined when the text is not one. */
export function parseStoredXml(text: string): XmlElement | undefined {
  let element: XmlElement | undefined;
  const parser = new StreamParser(
    (event) => {
      if (event.type === 'element' && element === undefined) element = event.element;
    },
    { maxStanzaSize: text.length + 64 },
  );
  try {
    parser.write(Buffer.from(`<stored xmlns='jabber:client'>${text}</stored>`, 'utf8'));
  } catch {
    return undefined;
  }
  return element;
}
