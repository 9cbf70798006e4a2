export { escapeAttribute, escapeText, XmlElement, type XmlNode, xml } from './element.js';
export { type PresenceState, presenceState, sessionState } from './host.js';
export { Jid } from './jid.js';
export type {
  FeatureStage,
  Hook,
  HookResult,
  IqContext,
  IqSpec,
  IqTarget,
  ModuleApi,
  ModuleIqHandler,
  NonzaHandler,
  OutboundFilter,
  SessionEvent,
  SessionState,
  StanzaEvent,
  StanzaKind,
  XmppEventName,
  XmppEvents,
  XmppModule,
} from './module.js';
export {
  carbons,
  defaultModules,
  disco,
  type ImOptions,
  im,
  legacySession,
  ping,
  type RosterItem,
  type VcardOptions,
  vcard,
} from './modules/index.js';
export * as namespaces from './namespaces.js';
export { parseXml } from './parse.js';
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
  type StanzaHook,
  XmppConfigError,
  XmppServer,
  type XmppServerOptions,
  xmppServer,
} from './server.js';
export type { SessionStage, XmppSession } from './session.js';
export {
  type StanzaErrorCondition,
  StanzaErrorException,
  type StanzaErrorType,
  stanzaError,
  stanzaErrorConditions,
} from './stanza-error.js';
export {
  type ArchiveItem,
  type ArchiveQuery,
  type ArchiveResult,
  type ArchiveStore,
  type JsonValue,
  type KeyValueStore,
  type MemoryStorageOptions,
  memoryStorage,
  type SqliteStorageOptions,
  sqliteStorage,
  type XmppStorage,
} from './stores/index.js';
export { NS_STREAM_ERRORS, NS_STREAMS, StreamError, type StreamErrorCondition, streamErrorConditions } from './stream-error.js';
export { DEFAULT_MAX_DEPTH, DEFAULT_MAX_STANZA_SIZE } from './stream-parser.js';
