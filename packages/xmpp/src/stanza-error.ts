import { type XmlElement, xml } from './element.js';
import { NS_STANZAS } from './namespaces.js';

/** Every stanza error condition of RFC 6120 §8.3.3, with its usual type. */
export const stanzaErrorTypes = {
  'bad-request': 'modify',
  conflict: 'cancel',
  'feature-not-implemented': 'cancel',
  forbidden: 'auth',
  gone: 'cancel',
  'internal-server-error': 'cancel',
  'item-not-found': 'cancel',
  'jid-malformed': 'modify',
  'not-acceptable': 'modify',
  'not-allowed': 'cancel',
  'not-authorized': 'auth',
  'policy-violation': 'modify',
  'recipient-unavailable': 'wait',
  redirect: 'modify',
  'registration-required': 'auth',
  'remote-server-not-found': 'cancel',
  'remote-server-timeout': 'wait',
  'resource-constraint': 'wait',
  'service-unavailable': 'cancel',
  'subscription-required': 'auth',
  'undefined-condition': 'cancel',
  'unexpected-request': 'wait',
} as const;

export type StanzaErrorCondition = keyof typeof stanzaErrorTypes;
export type StanzaErrorType = 'auth' | 'cancel' | 'continue' | 'modify' | 'wait';

/** Every stanza error condition of RFC 6120 §8.3.3. */
export const stanzaErrorConditions = Object.keys(stanzaErrorTypes) as StanzaErrorCondition[];

/**
 * The error reply to a stanza (RFC 6120 §8.3): same name and id, addresses swapped, type='error',
 * with an application-specific condition element (e.g. XEP-0191's `<blocked/>`) when given.
 */
export function stanzaError(
  stanza: XmlElement,
  condition: StanzaErrorCondition,
  text?: string,
  extra?: XmlElement,
  type: StanzaErrorType = stanzaErrorTypes[condition],
): XmlElement {
  const reply = xml(stanza.name, { type: 'error', id: stanza.attr('id'), from: stanza.attr('to'), to: stanza.attr('from') });
  // The original payload may be included; it is left out (it could be large).
  return reply.append(
    xml(
      'error',
      { type },
      xml(condition, { xmlns: NS_STANZAS }),
      text === undefined ? undefined : xml('text', { xmlns: NS_STANZAS, 'xml:lang': 'en' }, text),
      extra,
    ),
  );
}

/** Throw from a hook or IQ handler to answer with a stanza error. */
export class StanzaErrorException extends Error {
  readonly condition: StanzaErrorCondition;
  /** An application-specific condition element, sent beside the defined one. */
  readonly extra: XmlElement | undefined;
  readonly type: StanzaErrorType;

  constructor(condition: StanzaErrorCondition, text?: string, extra?: XmlElement, type?: StanzaErrorType) {
    super(text ?? condition);
    this.condition = condition;
    this.extra = extra;
    this.type = type ?? stanzaErrorTypes[condition];
  }

  /** The error reply to this stanza. */
  reply(stanza: XmlElement): XmlElement {
    return stanzaError(stanza, this.condition, this.message === this.condition ? undefined : this.message, this.extra, this.type);
  }
}
