export { type MemoryStorageOptions, memoryStorage } from './memory.js';
export { SCHEMA_VERSION } from './migrations.js';
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
