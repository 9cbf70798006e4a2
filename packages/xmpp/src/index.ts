export { escapeAttribute, escapeText, XmlElement, type XmlNode, xml } from './element.js';
export { NS_DELAY, NS_ROSTER } from './im.js';
export { Jid } from './jid.js';
export {
  DEFAULT_ITERATIONS,
  type DeriveScramOptions,
  deriveScram,
  LoginThrottle,
  type LoginThrottleOptions,
  type MaybePromise,
  MemoryUserStore,
  type MemoryUserStoreOptions,
  normalizeUsername,
  type ScramCredentials,
  type ScramHash,
  type StoredUser,
  type UserStore,
} from './sasl/index.js';
export {
  type IqHandler,
  type StanzaContext,
  StanzaErrorException,
  type StanzaHook,
  XmppConfigError,
  XmppServer,
  type XmppServerOptions,
  xmppServer,
} from './server.js';
export type { XmppSession } from './session.js';
export { type StanzaErrorCondition, stanzaError } from './stanza-error.js';
export { MemoryOfflineStore, MemoryRosterStore, type OfflineStore, type RosterItem, type RosterStore } from './stores.js';
export { NS_STREAM_ERRORS, NS_STREAMS, StreamError, type StreamErrorCondition, streamErrorConditions } from './stream-error.js';
export { DEFAULT_MAX_DEPTH, DEFAULT_MAX_STANZA_SIZE } from './stream-parser.js';
