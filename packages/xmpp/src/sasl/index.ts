export {
  DEFAULT_ITERATIONS,
  type DeriveScramOptions,
  deriveScram,
  type MaybePromise,
  MemoryUserStore,
  type MemoryUserStoreOptions,
  normalizeUsername,
  preparePassword,
  type ScramCredentials,
  type ScramHash,
  type StoredUser,
  scramLookup,
  type UserStore,
} from './credentials.js';
export { isSaslFailure, type SaslFailure, type SaslFailureResult, saslFailures } from './failures.js';
export { type VerifyPlainOptions, type VerifyPlainResult, verifyPlain } from './plain.js';
export { SaslprepError, type SaslprepOptions, saslprep } from './saslprep.js';
export {
  type ChannelBinding,
  type ChannelBindingType,
  offeredScramMechanisms,
  type ScramFinishResult,
  type ScramMechanism,
  ScramServer,
  type ScramServerOptions,
  type ScramStartResult,
  scramHash,
  scramMechanisms,
} from './scram.js';
export { LoginThrottle, type LoginThrottleOptions, networkOf, type ThrottleDecision } from './throttle.js';
export { type CredentialsLookup, decodeBase64, decodeSaslPayload, encodeSaslPayload, type UnknownUserOptions } from './util.js';
