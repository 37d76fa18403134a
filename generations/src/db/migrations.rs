//! The schema of the state database, one migration per version.

/// Each entry upgrades the schema by one version. Never edit a released one.
/// The version after which `convert::nodes_to_binary` runs (in the same
/// transaction): migration 9.
pub(super) const BINARY_NODES: usize = 9;

pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE manifests (
    id BLOB PRIMARY KEY,
    body BLOB NOT NULL,
    config TEXT,
    entries INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    built_at INTEGER NOT NULL
);
CREATE TABLE nodes (id BLOB PRIMARY KEY, body BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE generations (
    number INTEGER PRIMARY KEY,
    id BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    pinned INTEGER NOT NULL DEFAULT 0,
    collected_at INTEGER
);
CREATE TABLE activations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    number INTEGER NOT NULL,
    at INTEGER NOT NULL,
    how TEXT NOT NULL
);
CREATE TABLE ledger (path TEXT PRIMARY KEY, origin TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE saved (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL,
    hash BLOB NOT NULL,
    at INTEGER NOT NULL,
    why TEXT NOT NULL
);
CREATE TABLE stat_cache (
    path TEXT PRIMARY KEY,
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    hash BLOB NOT NULL
) WITHOUT ROWID;
"#,
    // Whether each unit sysgen manages was enabled before sysgen first managed
    // it: what the unit goes back to when it leaves the configuration.
    r#"
CREATE TABLE unit_origins (unit TEXT PRIMARY KEY, enabled INTEGER NOT NULL) WITHOUT ROWID;
"#,
    // Which packages sysgen installed (and so may remove), and the .deb
    // files it keeps in the store for exact, offline rollback.
    r#"
CREATE TABLE package_owned (
    manager TEXT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (manager, name)
) WITHOUT ROWID;
CREATE TABLE package_files (
    manager TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    arch TEXT NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (manager, name, version, arch)
) WITHOUT ROWID;
"#,
    r#"
-- Datasets sysgen attached (created, adopted or re-attached) at some point,
-- whatever their state now; gc destroys what no remaining generation has.
CREATE TABLE datasets (
    path TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    since INTEGER NOT NULL
) WITHOUT ROWID;
-- Snapshots sysgen took of them, recorded as soon as they exist.
CREATE TABLE dataset_snapshots (
    path TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    generation INTEGER NOT NULL,
    why TEXT NOT NULL,
    taken_at INTEGER NOT NULL,
    PRIMARY KEY (path, name)
) WITHOUT ROWID;
"#,
    // Node bodies are kilobytes: in a WITHOUT ROWID table every seek walks
    // (and copies) them, so a diff of 100k entries spent a third of its
    // time inside the b-tree. A rowid table keeps bodies out of the index.
    r#"
CREATE TABLE nodes_by_rowid (id BLOB PRIMARY KEY NOT NULL, body BLOB NOT NULL);
INSERT INTO nodes_by_rowid (id, body) SELECT id, body FROM nodes;
DROP TABLE nodes;
ALTER TABLE nodes_by_rowid RENAME TO nodes;
"#,
    // Files sysgen created to hold its managed blocks: removed again once
    // their last block leaves and they hold nothing else.
    r#"
CREATE TABLE block_files (path TEXT PRIMARY KEY) WITHOUT ROWID;
"#,
    // Which copy of each owned package sysgen installed (its dpkg file
    // list's inode and ctime): one the admin purged and reinstalled by hand
    // is another copy, and the admin's.
    r#"
ALTER TABLE package_owned ADD COLUMN copy TEXT;
"#,
    // Users and groups (users/records.rs): the id each was given once (kept
    // for good, so a name gets its id back), what a pre-existing account was
    // before sysgen first changed it, and the homes of removed users, kept
    // until gc.
    r#"
CREATE TABLE account_ids (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    id INTEGER NOT NULL,
    PRIMARY KEY (kind, name)
) WITHOUT ROWID;
CREATE TABLE account_origins (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    origin TEXT NOT NULL,
    PRIMARY KEY (kind, name)
) WITHOUT ROWID;
CREATE TABLE account_homes (
    name TEXT PRIMARY KEY,
    home TEXT NOT NULL,
    kept TEXT NOT NULL
) WITHOUT ROWID;
"#,
    // Migration 9: nodes become binary (the conversion itself is Rust code,
    // db/convert.rs, run after this in the same transaction); the ids of
    // generations change with them, and the old ones are kept here so
    // that a journal written before the upgrade still finds its own.
    r#"
CREATE TABLE generation_renames (old BLOB PRIMARY KEY NOT NULL, new BLOB NOT NULL) WITHOUT ROWID;
"#,
    // Migration 10, remotes (issue 15, remote/): the keys a remote keeps in
    // this state when it is served as one (refs, signatures, reports), the
    // newest version of each ref this host accepted (a replayed older one
    // is refused), and the public keys whose signatures pull accepts.
    r#"
CREATE TABLE remote_keys (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE remote_accepted (
    name TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    generation BLOB NOT NULL,
    at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE trusted_keys (
    key TEXT PRIMARY KEY,
    comment TEXT,
    added_at INTEGER NOT NULL
) WITHOUT ROWID;
"#,
    // Migration 11 (issue 14, session 11): the node a build made of each
    // tree's source directory, and fingerprints of what it was made from
    // (ingest/walk/clean.rs), so that a build finding the same may take the
    // node without hashing, looking up or encoding anything. Keyed by the
    // source directory's path: one row each, replaced when it changes.
    r#"
CREATE TABLE dir_nodes (
    src BLOB PRIMARY KEY NOT NULL,
    listing BLOB NOT NULL,
    made BLOB NOT NULL,
    node BLOB NOT NULL
) WITHOUT ROWID;
"#,
];
