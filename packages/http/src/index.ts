export {
  clientAddress,
  clientInfo,
  connectionOf,
  type FetchHandler,
  type HealthOptions,
  HttpAdapter,
  type HttpOptions,
  httpAdapter,
  httpDefaults,
  requestPath,
} from './adapter.js';
export type { ClientInfo, ProxyHeaderName } from './forwarded.js';
export { type Http2Options, http2Defaults } from './http2.js';
export { rejectUpgrade, UpgradeError, type UpgradeHandler } from './upgrade.js';
