export { rejectUpgrade, UpgradeError } from '@portbind/http';
export { WsEndpoint, type WsHandlers, type WsOptions, wsDefaults, wsEndpoint } from './adapter.js';
export { WsConnection, type WsData } from './connection.js';
