// The PostgreSQL schema, as numbered migrations recorded in a `portbind_schema` table (one row per
// migration applied). Never edit a migration that has shipped: append a new one.
//
// Version 1 is the shape SQLite's migrations.ts reaches at its version 3 (accounts, key_values,
// archive_owners, archive with an owner id), written once for PostgreSQL rather than replayed step by step
// (SQLite's versions 1 and 2 only exist to carry old files forward). Where it departs, and why:
// - text compared bytewise (COLLATE "C") where the code ranges over it (key prefixes, ids, owners): the
//   database's default collation (often en_US) would make `key >= prefix` a linguistic comparison the index
//   cannot range over for a literal prefix. The order keys are listed in is still compareKeys' (UTF-16 code
//   units), sorted in the code as SQLite's store does.
// - no item count in archive_owners: several hosts append to one owner's archive at once, and a counter row
//   per owner would be a lock every append of that owner waits for (and a deadlock between two batches that
//   count owners in different orders). A query counts the rows of its filter instead (an index-only scan of
//   archive_owner or archive_with), which is what SQLite does for every filtered query.
// - `seq` is a bigserial (SQLite's rowid); a replacement takes the next value of its sequence ("moves to the
//   end") in the same statement as the insert (INSERT … ON CONFLICT DO UPDATE), not a DELETE then an INSERT.
// - "when" is double precision (ms: what SQLite stores for a number, integer or not, and a JS number read back
//   without conversion), created/updated bigint, keys and salts bytea, JSON values text (not jsonb: a value comes back byte for
//   byte as it was written, key order included).

/** One step of the PostgreSQL schema: SQL run once, when `portbind_schema` has no row for `version`. */
export interface PostgresMigration {
  version: number;
  description: string;
  /** The statements, in order; `${s}` in them stands for the schema prefix (`"name".` or nothing). */
  sql: (s: string) => string;
}

export const postgresMigrations: readonly PostgresMigration[] = [
  {
    version: 1,
    description: 'accounts (SCRAM credentials), key-value stores, archives by owner id (SQLite schema version 3)',
    sql: (s) => `
      CREATE TABLE ${s}accounts (
        username TEXT COLLATE "C" PRIMARY KEY,
        sha1_salt BYTEA NOT NULL,
        sha1_iterations INTEGER NOT NULL,
        sha1_stored_key BYTEA NOT NULL,
        sha1_server_key BYTEA NOT NULL,
        sha256_salt BYTEA NOT NULL,
        sha256_iterations INTEGER NOT NULL,
        sha256_stored_key BYTEA NOT NULL,
        sha256_server_key BYTEA NOT NULL,
        created BIGINT NOT NULL,
        updated BIGINT NOT NULL
      );

      CREATE TABLE ${s}key_values (
        store TEXT COLLATE "C" NOT NULL,
        owner TEXT COLLATE "C" NOT NULL,
        key TEXT COLLATE "C" NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (store, owner, key)
      );

      -- Each (store, owner) once, with its integer id: archive rows name their owner by it.
      CREATE TABLE ${s}archive_owners (
        oid BIGSERIAL PRIMARY KEY,
        store TEXT COLLATE "C" NOT NULL,
        owner TEXT COLLATE "C" NOT NULL,
        UNIQUE (store, owner)
      );

      -- seq is archive order.
      CREATE TABLE ${s}archive (
        seq BIGSERIAL PRIMARY KEY,
        oid BIGINT NOT NULL,
        id TEXT COLLATE "C" NOT NULL,
        "when" DOUBLE PRECISION NOT NULL,
        "with" TEXT COLLATE "C" NOT NULL,
        xml TEXT NOT NULL
      );
      -- RSM cursors, the ids filter, replacement.
      CREATE UNIQUE INDEX archive_id ON ${s}archive (oid, id);
      -- An owner's items in archive order: pages and counts without \`with\`.
      CREATE INDEX archive_owner ON ${s}archive (oid, seq);
      -- One conversation (or PubSub node) in archive order: MAM pages with \`with\`, trim.
      CREATE INDEX archive_with ON ${s}archive (oid, "with", seq);
      -- An owner's items by time: a \`start\`/\`end\` range; expire, owner by owner.
      CREATE INDEX archive_time ON ${s}archive (oid, "when");
    `,
  },
];

/** The PostgreSQL schema version this code writes. */
export const POSTGRES_SCHEMA_VERSION: number = postgresMigrations[postgresMigrations.length - 1]?.version ?? 0;
