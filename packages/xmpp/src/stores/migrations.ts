// The SQLite schema, as numbered migrations. The database's `PRAGMA user_version` is the number of
// migrations applied; opening applies the missing ones in order, in one transaction. Never edit a
// migration that has shipped: append a new one (a later version may add tables, indexes, columns).

/** One step of the schema: SQL run once, when the database's version is below `version`. */
export interface Migration {
  version: number;
  /** What it changes, for the log and for readers. */
  description: string;
  sql: string;
}

export const migrations: readonly Migration[] = [
  {
    version: 1,
    description: 'accounts (SCRAM credentials), key-value stores, archives',
    sql: `
      -- Accounts: what SCRAM needs to verify a password (RFC 5802 §3), for SHA-1 and SHA-256; never the password.
      CREATE TABLE accounts (
        username TEXT PRIMARY KEY NOT NULL,
        sha1_salt BLOB NOT NULL,
        sha1_iterations INTEGER NOT NULL,
        sha1_stored_key BLOB NOT NULL,
        sha1_server_key BLOB NOT NULL,
        sha256_salt BLOB NOT NULL,
        sha256_iterations INTEGER NOT NULL,
        sha256_stored_key BLOB NOT NULL,
        sha256_server_key BLOB NOT NULL,
        created INTEGER NOT NULL,
        updated INTEGER NOT NULL
      ) WITHOUT ROWID;

      -- Key-value stores: one JSON document per (store, owner, key).
      CREATE TABLE key_values (
        store TEXT NOT NULL,
        owner TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (store, owner, key)
      ) WITHOUT ROWID;

      -- Archives: seq (the rowid) is archive order; an append with an existing (store, owner, id) replaces
      -- that row with a new seq (INSERT OR REPLACE on archive_id).
      CREATE TABLE archive (
        seq INTEGER PRIMARY KEY,
        store TEXT NOT NULL,
        owner TEXT NOT NULL,
        id TEXT NOT NULL,
        "when" INTEGER NOT NULL,
        "with" TEXT NOT NULL,
        xml TEXT NOT NULL
      );
      CREATE UNIQUE INDEX archive_id ON archive (store, owner, id);
      -- An owner's items in archive order (an index ends with the rowid: seq): pages without a \`with\`.
      CREATE INDEX archive_owner ON archive (store, owner, seq);
      -- One conversation (or PubSub node) by time: MAM queries with \`with\`, trim.
      CREATE INDEX archive_with ON archive (store, owner, "with", "when");
      -- Retention across owners (expire).
      CREATE INDEX archive_when ON archive (store, "when");
    `,
  },
];

/** The schema version this code writes: the last migration's. */
export const SCHEMA_VERSION: number = migrations[migrations.length - 1]?.version ?? 0;
