export { escapeAttribute, escapeText, XmlElement, type XmlNode, xml } from './element.js';
export { Jid } from './jid.js';
export * from './sasl/index.js';
export { XmppServer, type XmppServerOptions } from './server.js';
export { Session } from './session.js';
export { type StanzaErrorCondition, stanzaError } from './stanza-error.js';
export { NS_STREAM_ERRORS, NS_STREAMS, StreamError, type StreamErrorCondition, streamErrorConditions } from './stream-error.js';
export { DEFAULT_MAX_STANZA_SIZE, type StreamEvent, StreamParser, type StreamParserOptions } from './stream-parser.js';
