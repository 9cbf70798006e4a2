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

      -- Archives: seq (the rowid) is archive order. Appending an item whose (store, owner, id) exists deletes
      -- the old row first (archive_replace), so the new one gets the next seq: "replace and move to the end".
      CREATE TABLE archive (
        seq INTEGER PRIMARY KEY,
        store TEXT NOT NULL,
        owner TEXT NOT NULL,
        id TEXT NOT NULL,
        "when" INTEGER NOT NULL,
        "with" TEXT NOT NULL,
        xml TEXT NOT NULL
      );
      -- RSM cursors, the ids filter, replacement.
      CREATE UNIQUE INDEX archive_id ON archive (store, owner, id);
      -- An owner's items in archive order, with the time to filter on: pages without \`with\`.
      CREATE INDEX archive_owner ON archive (store, owner, seq, "when");
      -- One conversation (or PubSub node) in archive order: MAM pages with \`with\`, trim.
      CREATE INDEX archive_with ON archive (store, owner, "with", seq, "when");
      -- An owner's items by time: a \`start\`/\`end\` range, and its count; expire, owner by owner.
      CREATE INDEX archive_time ON archive (store, owner, "when");

      -- Items per owner, so that an unfiltered query's count costs a lookup, not a scan; and the list of
      -- owners expire walks.
      CREATE TABLE archive_counts (
        store TEXT NOT NULL,
        owner TEXT NOT NULL,
        items INTEGER NOT NULL,
        PRIMARY KEY (store, owner)
      ) WITHOUT ROWID;
      CREATE TRIGGER archive_replace BEFORE INSERT ON archive BEGIN
        DELETE FROM archive WHERE store = new.store AND owner = new.owner AND id = new.id;
      END;
      CREATE TRIGGER archive_inserted AFTER INSERT ON archive BEGIN
        INSERT INTO archive_counts (store, owner, items) VALUES (new.store, new.owner, 1)
          ON CONFLICT (store, owner) DO UPDATE SET items = items + 1;
      END;
      CREATE TRIGGER archive_deleted AFTER DELETE ON archive BEGIN
        UPDATE archive_counts SET items = items - 1 WHERE store = old.store AND owner = old.owner;
      END;
    `,
  },
  {
    version: 2,
    description: 'archive appends without triggers: replace and count in the code, per transaction',
    sql: `
      -- An append with a fresh id (what MAM and offline messages append) no longer runs a DELETE first; the
      -- code replaces an existing id itself (INSERT … ON CONFLICT DO NOTHING, then DELETE and INSERT).
      DROP TRIGGER archive_replace;
      -- Items per owner are added once per owner and transaction by the code, not once per row. Deletes
      -- still count themselves (archive_deleted).
      DROP TRIGGER archive_inserted;
    `,
  },
  {
    version: 3,
    description: 'archive rows name their owner by an integer id (archive_owners, which also counts items); smaller indexes',
    sql: `
      -- Each (store, owner) once, with its integer id and its item count (archive_counts before).
      CREATE TABLE archive_owners (
        oid INTEGER PRIMARY KEY,
        store TEXT NOT NULL,
        owner TEXT NOT NULL,
        items INTEGER NOT NULL DEFAULT 0,
        UNIQUE (store, owner)
      );
      -- Counted from the rows themselves, whatever archive_counts said.
      INSERT INTO archive_owners (store, owner, items)
        SELECT store, owner, count(*) FROM archive GROUP BY store, owner ORDER BY store, owner;

      -- The same rows (same seq: archive order and cursors unchanged), by owner id.
      CREATE TABLE archive_v3 (
        seq INTEGER PRIMARY KEY,
        oid INTEGER NOT NULL,
        id TEXT NOT NULL,
        "when" INTEGER NOT NULL,
        "with" TEXT NOT NULL,
        xml TEXT NOT NULL
      );
      INSERT INTO archive_v3 (seq, oid, id, "when", "with", xml)
        SELECT a.seq, o.oid, a.id, a."when", a."with", a.xml
        FROM archive AS a JOIN archive_owners AS o ON o.store = a.store AND o.owner = a.owner
        ORDER BY a.seq;
      -- With the old table go its indexes and its archive_deleted trigger.
      DROP TABLE archive;
      DROP TABLE archive_counts;
      ALTER TABLE archive_v3 RENAME TO archive;

      -- Every index ends with the rowid (seq): archive order within each prefix, at no cost.
      -- RSM cursors, the ids filter, replacement.
      CREATE UNIQUE INDEX archive_id ON archive (oid, id);
      -- An owner's items in archive order: pages without \`with\`.
      CREATE INDEX archive_owner ON archive (oid);
      -- One conversation (or PubSub node) in archive order: MAM pages with \`with\`, trim.
      CREATE INDEX archive_with ON archive (oid, "with");
      -- An owner's items by time: a \`start\`/\`end\` range, and its count; expire, owner by owner.
      CREATE INDEX archive_time ON archive (oid, "when");
      CREATE TRIGGER archive_deleted AFTER DELETE ON archive BEGIN
        UPDATE archive_owners SET items = items - 1 WHERE oid = old.oid;
      END;
    `,
  },
];

/** The schema version this code writes: the last migration's. */
export const SCHEMA_VERSION: number = migrations[migrations.length - 1]?.version ?? 0;
