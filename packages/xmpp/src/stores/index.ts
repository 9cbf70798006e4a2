export { type MemoryStorageOptions, memoryStorage } from './memory.js';
export { SCHEMA_VERSION } from './migrations.js';
export { type PostgresStorage, type PostgresStorageOptions, postgresStorage, StorageUnavailableError } from './postgres.js';
export { POSTGRES_SCHEMA_VERSION } from './postgres-migrations.js';
export { type SqliteStorageOptions, sqliteStorage } from './sqlite.js';
export type {
  ArchiveItem,
  ArchiveQuery,
  ArchiveResult,
  ArchiveStore,
  JsonValue,
  KeyValueStore,
  XmppStorage,
} from './types.js';
export { StorageConflictError, updateValue } from './update.js';
