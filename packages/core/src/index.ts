export type { Adapter, BindingContext, ConnectionLimits } from './adapter.js';
export { Binding, type BindOptions, describeSpec } from './binding.js';
export {
  type AppendOptions,
  type Bus,
  type BusEntry,
  BusEventEmitter,
  type BusEventName,
  type BusEvents,
  type BusListener,
  type BusMessage,
  type BusPresence,
  type BusStream,
  type BusSubscription,
  type BusValues,
  busBytes,
  type ConsumeOptions,
  consumeStream,
  type MemoryBus,
  memoryBus,
  newBusId,
  type StreamConsumer,
} from './bus.js';
export { type KnownProtocol, type Sniffed, sniff } from './classify.js';
export { type ListenDefaults, type ListenOptions, type ListenSpec, parsePort, resolveListen } from './config.js';
export { Connection } from './connection.js';
export { BindError, ConfigError, PortbindError, SocketPathError, StateError, TlsConfigError, WorkersError } from './errors.js';
export { globMatch } from './glob.js';
export { createLogger, type LogFn, type Logger, silentLogger } from './logger.js';
export { compileTrustList, type ProxyHeader, type ProxyProtocolOptions, type ProxyTlv, type TrustCheck } from './proxy-protocol.js';
export {
  PortService,
  type PortServiceOptions,
  type RunOptions,
  type RunServiceOptions,
  type ServiceState,
  type StopReport,
} from './service.js';
export { loadTls, type TlsOptions } from './tls.js';
export { type PortSharingOptions, protocolsOf } from './unify.js';
export { resolveWorkers, reusePortAvailable, WORKERS_ENV } from './workers.js';
