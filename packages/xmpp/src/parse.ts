import type { XmlElement } from './element.js';
import { StreamParser } from './stream-parser.js';

/**
 * Parse one element from XML text the server serialized itself (a stored stanza, a vCard, a PubSub
 * item), in the `jabber:client` namespace unless it declares its own. Undefined when the text does
 * not hold a complete element (a corrupt store row): callers log and skip it.
 */
export function parseXml(text: string): XmlElement | undefined {
  let found: XmlElement | undefined;
  const parser = new StreamParser(
    (event) => {
      if (event.type === 'element') found ??= event.element;
    },
    // Stored text passed the size and depth limits when it arrived; these only guard a corrupt row.
    { maxStanzaSize: Math.max(text.length + 1024, 1024), maxDepth: 256 },
  );
  try {
    parser.write(Buffer.from(`<store xmlns='jabber:client'>${text}`));
  } catch {
    return undefined;
  }
  return found;
}
