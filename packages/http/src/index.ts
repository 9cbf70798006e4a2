export { connectionOf, type HealthOptions, HttpAdapter, type HttpOptions, httpAdapter, httpDefaults, requestPath } from './adapter.js';
export { type FetchHandler, sendResponse, toRequest } from './fetch.js';
export { rejectUpgrade, UpgradeError, type UpgradeHandler } from './upgrade.js';
