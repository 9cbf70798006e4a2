import { PortbindError } from '@portbind/core';
import { type XmlElement, xml } from './element.js';

export const NS_STREAMS = 'http://etherx.jabber.org/streams';
export const NS_STREAM_ERRORS = 'urn:ietf:params:xml:ns:xmpp-streams';

/** Every stream error condition of RFC 6120 §4.9.3. */
export const streamErrorConditions = [
  'bad-format',
  'bad-namespace-prefix',
  'conflict',
  'connection-timeout',
  'host-gone',
  'host-unknown',
  'improper-addressing',
  'internal-server-error',
  'invalid-from',
  'invalid-namespace',
  'invalid-xml',
  'not-authorized',
  'not-well-formed',
  'policy-violation',
  'remote-connection-failed',
  'reset',
  'resource-constraint',
  'restricted-xml',
  'see-other-host',
  'system-shutdown',
  'undefined-condition',
  'unsupported-encoding',
  'unsupported-feature',
  'unsupported-stanza-type',
  'unsupported-version',
] as const;

export type StreamErrorCondition = (typeof streamErrorConditions)[number];

/**
 * A stream-level error: the stream is answered with `<stream:error>` and closed (RFC 6120 §4.9).
 * Throw it from a handler to end a client's stream with that condition.
 */
export class StreamError extends PortbindError {
  readonly condition: StreamErrorCondition;
  /** Human-readable text sent in `<text/>`. */
  readonly text: string | undefined;

  constructor(condition: StreamErrorCondition, text?: string) {
    super('PB_ERR_XMPP_STREAM', text === undefined ? condition : `${condition}: ${text}`);
    this.condition = condition;
    this.text = text;
  }

  /** The `<stream:error>` element, with the stream prefix in use. */
  toElement(prefix = 'stream'): XmlElement {
    const name = prefix === '' ? 'error' : `${prefix}:error`;
    return xml(
      name,
      prefix === '' ? { xmlns: NS_STREAMS } : {},
      xml(this.condition, { xmlns: NS_STREAM_ERRORS }),
      this.text === undefined ? undefined : xml('text', { xmlns: NS_STREAM_ERRORS, 'xml:lang': 'en' }, this.text),
    );
  }
}
