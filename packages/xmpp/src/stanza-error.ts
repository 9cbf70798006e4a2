import { type XmlElement, xml } from './element.js';
import { NS_STANZAS } from './namespaces.js';

/** Stanza error conditions of RFC 6120 §8.3.3 that the server uses, with their default types. */
const types = {
  'bad-request': 'modify',
  'feature-not-implemented': 'cancel',
  'internal-server-error': 'cancel',
  'item-not-found': 'cancel',
  'not-allowed': 'cancel',
  'not-authorized': 'auth',
  'policy-violation': 'modify',
  'recipient-unavailable': 'wait',
  'resource-constraint': 'wait',
  'service-unavailable': 'cancel',
} as const;

export type StanzaErrorCondition = keyof typeof types;

/** The error reply to a stanza (RFC 6120 §8.3): same name and id, addresses swapped, type='error'. */
export function stanzaError(stanza: XmlElement, condition: StanzaErrorCondition, text?: string): XmlElement {
  const reply = xml(stanza.name, { type: 'error', id: stanza.attr('id'), from: stanza.attr('to'), to: stanza.attr('from') });
  // The original payload may be included; it is left out (it could be large).
  return reply.append(
    xml(
      'error',
      { type: types[condition] },
      xml(condition, { xmlns: NS_STANZAS }),
      text === undefined ? undefined : xml('text', { xmlns: NS_STANZAS, 'xml:lang': 'en' }, text),
    ),
  );
}
