//! The state database: one SQLite file (`<state>/sysgen.db`).
//!
//! It records manifests and their Merkle nodes, the numbered generations,
//! the append-only activation history (rollback adds a row, never rewrites
//! one), the ledger of what was on the root before sysgen managed a path,
//! copies of files saved before `--force` overwrote them, and the stat cache
//! of build sources. The schema is versioned with `PRAGMA user_version`; each
//! migration runs once, in a transaction.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sysgen_schema::EntryPath;
use sysgen_store::Hash;

use crate::Error;
use crate::error::sql;
use crate::manifest::{GenerationId, Manifest, Node, NodeId, NodeSource};

mod convert;
mod dirs;
pub mod history;
mod migrations;
mod records;
mod remote;
pub use dirs::{DirRecord, Put};
pub use remote::{AcceptedRef, TrustedKey};

use migrations::MIGRATIONS;

/// What was on the root at a path before sysgen first managed it. A path
/// that has no record was absent: sysgen created it and removes it again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "was", rename_all = "lowercase", deny_unknown_fields)]
pub enum Origin {
    /// A file, saved in the secret area of the store (it may be anything,
    /// `/etc/shadow` included, so only root may read the copy).
    File {
        hash: Hash,
        mode: u32,
        uid: u32,
        gid: u32,
        /// Its capability, ACL and `user.*` attributes, put back with it
        /// (a binary restored without its capability would not work).
        #[serde(default, skip_serializing_if = "crate::rootfs::Xattrs::is_empty")]
        xattrs: crate::rootfs::Xattrs,
    },
    Symlink {
        target: String,
        uid: u32,
        gid: u32,
    },
    /// A directory: never removed by sysgen; its attributes are put back.
    Dir {
        mode: u32,
        uid: u32,
        gid: u32,
    },
}

/// A numbered generation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GenRow {
    pub number: u64,
    pub id: GenerationId,
    pub created_at: i64,
    pub pinned: bool,
    /// Set once gc deleted it; the row stays so messages can say so.
    pub collected_at: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ManifestInfo {
    pub config: Option<String>,
    pub entries: u64,
    pub bytes: u64,
    pub built_at: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheRow {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub hash: Hash,
}

/// A file saved in the store before sysgen overwrote or removed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    pub path: EntryPath,
    pub hash: Hash,
    pub why: String,
    /// The path holds a secret: its hash is never shown.
    #[serde(default)]
    pub secret: bool,
}

/// Everything an activation changes, committed in one transaction.
pub struct Activation<'a> {
    /// `None`: no generation is active any more (the first switch was undone).
    pub target: Option<(u64, GenerationId)>,
    pub at: i64,
    pub how: &'a str,
    pub ledger_add: &'a [(EntryPath, Origin)],
    pub ledger_remove: &'a [(EntryPath, Origin)],
}

pub struct Db {
    conn: Connection,
}

fn hash_col(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Hash> {
    let b: Vec<u8> = row.get(i)?;
    let arr: [u8; 32] = b.try_into().map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Blob,
            "hash is not 32 bytes".into(),
        )
    })?;
    Ok(Hash::from_bytes(arr))
}

/// Whether the database is in incremental auto-vacuum mode (2), where
/// `PRAGMA incremental_vacuum` gives free pages back.
fn auto_vacuum_incremental(conn: &Connection) -> Result<bool, Error> {
    let mode: i64 = conn
        .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
        .map_err(sql)?;
    Ok(mode == 2)
}

/// Moves every free page to the end of the file (truncated there at the
/// next checkpoint). The pragma frees one page per step of its statement:
/// stepped to the end, not run once. Inside a transaction it is part of
/// that transaction's commit.
fn vacuum_free_pages(conn: &Connection) -> Result<(), Error> {
    let mut st = conn.prepare("PRAGMA incremental_vacuum").map_err(sql)?;
    let mut rows = st.query([]).map_err(sql)?;
    while rows.next().map_err(sql)?.is_some() {}
    Ok(())
}

fn gen_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<GenRow> {
    Ok(GenRow {
        number: row.get::<_, i64>(0)? as u64,
        id: GenerationId(hash_col(row, 1)?),
        created_at: row.get(2)?,
        pinned: row.get::<_, i64>(3)? != 0,
        collected_at: row.get(4)?,
    })
}

const GEN_COLS: &str = "number, id, created_at, pinned, collected_at";

impl Db {
    pub fn open(path: &Path) -> Result<Db, Error> {
        // Never through a symlink (the caller checks the file; this closes
        // the gap to SQLite's own open).
        let flags = rusqlite::OpenFlags::default() | rusqlite::OpenFlags::SQLITE_OPEN_NOFOLLOW;
        let conn = Connection::open_with_flags(path, flags).map_err(sql)?;
        // WAL for concurrent readers; FULL so a commit is on disk when it returns.
        // Incremental auto-vacuum, so that gc can give the pages of deleted
        // rows back (`reclaim`). Set on a new database only: it takes effect
        // only before the first table (one made before is converted by its
        // first gc), and setting it again would write the header, so that a
        // command that only reads would change the file.
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(sql)?;
        if tables == 0 {
            conn.execute_batch("PRAGMA auto_vacuum=INCREMENTAL;")
                .map_err(sql)?;
        }
        // Reads through a memory map, not one pread per page: a diff or gc
        // reads thousands of small node rows.
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;
             PRAGMA mmap_size=1073741824;",
        )
        .map_err(sql)?;
        let mut db = Db { conn };
        db.migrate()?;
        Ok(db)
    }

    fn migrate(&mut self) -> Result<(), Error> {
        let version: usize = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(sql)?;
        if version > MIGRATIONS.len() {
            return Err(Error::Corrupt(format!(
                "the state database has schema version {version}, newer than this sysgen knows ({}); use a newer sysgen",
                MIGRATIONS.len()
            )));
        }
        for (i, m) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = self.conn.transaction().map_err(sql)?;
            tx.execute_batch(m).map_err(sql)?;
            // Migrations that SQL alone cannot do run in the same transaction.
            if i + 1 == migrations::BINARY_NODES {
                convert::nodes_to_binary(&tx)?;
            }
            tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))
                .map_err(sql)?;
            tx.commit().map_err(sql)?;
        }
        Ok(())
    }

    /// Reads pages with `pread` into SQLite's own bounded cache instead of
    /// the memory map, for gc: it reads every node of the kept generations
    /// once, and each mapped page it touched stayed in its resident set
    /// (about 100 bytes a file), where a page read once is all it needs.
    pub fn unmap(&self) -> Result<(), Error> {
        self.conn.execute_batch("PRAGMA mmap_size=0;").map_err(sql)
    }

    /// Gives the pages of deleted rows back to the filesystem, so that gc
    /// frees the database's share of what it collected (`du` of the state
    /// directory is what the admin sees). In incremental auto-vacuum mode
    /// gc's own transaction has already moved its free pages
    /// ([`Db::collect`], one commit and its syncs instead of two); a
    /// database made before that mode is rewritten once here (`VACUUM`,
    /// transactional: a crash leaves the old file whole). The checkpoint
    /// then truncates the database file to its pages and the write-ahead
    /// log that the moved pages went through.
    pub fn reclaim(&mut self) -> Result<(), Error> {
        let free: i64 = self
            .conn
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))
            .map_err(sql)?;
        if free > 0 {
            if auto_vacuum_incremental(&self.conn)? {
                vacuum_free_pages(&self.conn)?;
            } else {
                self.conn
                    .execute_batch("PRAGMA auto_vacuum=INCREMENTAL; VACUUM;")
                    .map_err(sql)?;
            }
        }
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(sql)
    }

    /// For the packages and datasets modules, which keep their own tables.
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    // ---- manifests and nodes ----

    /// Runs `produce` in one transaction, inserting each node it hands to
    /// its argument as it comes (so the caller need not collect them all).
    pub fn insert_nodes<T>(
        &mut self,
        produce: impl FnOnce(&mut dyn FnMut(NodeId, Vec<u8>) -> Result<(), Error>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.insert_built(|put| produce(&mut |id, body| put(Put::Node(id, body))))
    }

    pub fn put_manifest(
        &mut self,
        m: &Manifest,
        info: &ManifestInfo,
    ) -> Result<GenerationId, Error> {
        let body = m.encode()?;
        let id = GenerationId(Hash::of(&body));
        self.conn
            .execute(
                "INSERT OR IGNORE INTO manifests (id, body, config, entries, bytes, built_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    id.0.as_bytes().as_slice(),
                    body,
                    info.config,
                    info.entries as i64,
                    info.bytes as i64,
                    info.built_at
                ],
            )
            .map_err(sql)?;
        Ok(id)
    }

    pub fn manifest(&self, id: &GenerationId) -> Result<Option<(Manifest, ManifestInfo)>, Error> {
        let row = self
            .conn
            .query_row(
                "SELECT body, config, entries, bytes, built_at FROM manifests WHERE id = ?1",
                params![id.0.as_bytes().as_slice()],
                |r| {
                    Ok((
                        r.get::<_, Vec<u8>>(0)?,
                        ManifestInfo {
                            config: r.get(1)?,
                            entries: r.get::<_, i64>(2)? as u64,
                            bytes: r.get::<_, i64>(3)? as u64,
                            built_at: r.get(4)?,
                        },
                    ))
                },
            )
            .optional()
            .map_err(sql)?;
        match row {
            None => Ok(None),
            Some((body, info)) => {
                let m: Manifest = serde_json::from_slice(&body)
                    .map_err(|e| Error::CorruptManifest(format!("manifest {id}: {e}")))?;
                if m.id()? != *id {
                    return Err(Error::CorruptManifest(format!(
                        "manifest {id} does not match its id"
                    )));
                }
                Ok(Some((m, info)))
            }
        }
    }

    /// The id generation `id` has now: itself, or the id migration 9 gave
    /// it when its nodes became binary.
    pub fn renamed(&self, id: &GenerationId) -> Result<GenerationId, Error> {
        let new: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT new FROM generation_renames WHERE old = ?1",
                params![id.0.as_bytes().as_slice()],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)?;
        Ok(match new.and_then(|b| <[u8; 32]>::try_from(b).ok()) {
            Some(b) => GenerationId(Hash::from_bytes(b)),
            None => *id,
        })
    }

    /// Manifest ids whose hex starts with `prefix`.
    pub fn manifests_with_prefix(&self, prefix: &str) -> Result<Vec<GenerationId>, Error> {
        let mut st = self
            .conn
            .prepare_cached("SELECT id FROM manifests")
            .map_err(sql)?;
        let ids = st
            .query_map([], |r| hash_col(r, 0))
            .map_err(sql)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sql)?;
        Ok(ids
            .into_iter()
            .filter(|h| h.to_hex().starts_with(prefix))
            .map(GenerationId)
            .collect())
    }

    pub fn all_manifest_ids(&self) -> Result<Vec<GenerationId>, Error> {
        self.manifests_with_prefix("")
    }

    // ---- generations and activations ----

    pub fn generations(&self) -> Result<Vec<GenRow>, Error> {
        let mut st = self
            .conn
            .prepare_cached(&format!(
                "SELECT {GEN_COLS} FROM generations ORDER BY number"
            ))
            .map_err(sql)?;
        st.query_map([], gen_row)
            .map_err(sql)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sql)
    }

    pub fn generation(&self, number: u64) -> Result<Option<GenRow>, Error> {
        self.conn
            .query_row(
                &format!("SELECT {GEN_COLS} FROM generations WHERE number = ?1"),
                params![number as i64],
                gen_row,
            )
            .optional()
            .map_err(sql)
    }

    pub fn generation_of(&self, id: &GenerationId) -> Result<Option<GenRow>, Error> {
        self.conn
            .query_row(
                &format!("SELECT {GEN_COLS} FROM generations WHERE id = ?1"),
                params![id.0.as_bytes().as_slice()],
                gen_row,
            )
            .optional()
            .map_err(sql)
    }

    pub fn next_number(&self) -> Result<u64, Error> {
        let n: i64 = self
            .conn
            .query_row(
                "SELECT COALESCE(MAX(number), 0) FROM generations",
                [],
                |r| r.get(0),
            )
            .map_err(sql)?;
        Ok(n as u64 + 1)
    }

    /// The active generation: the one of the newest activation.
    pub fn active(&self) -> Result<Option<GenRow>, Error> {
        self.conn
            .query_row(
                &format!(
                    "SELECT {GEN_COLS} FROM generations WHERE number = (SELECT number FROM activations ORDER BY seq DESC LIMIT 1)"
                ),
                [],
                gen_row,
            )
            .optional()
            .map_err(sql)
    }

    /// When the active generation became active (its latest activation).
    pub fn active_since(&self) -> Result<Option<i64>, Error> {
        self.conn
            .query_row(
                "SELECT at FROM activations ORDER BY seq DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)
    }

    /// The generation that was active before the current one.
    pub fn previous(&self) -> Result<Option<u64>, Error> {
        let mut st = self
            .conn
            .prepare_cached("SELECT number FROM activations ORDER BY seq DESC")
            .map_err(sql)?;
        let numbers = st.query_map([], |r| r.get::<_, i64>(0)).map_err(sql)?;
        let mut current = None;
        for n in numbers {
            let n = n.map_err(sql)? as u64;
            match current {
                None => current = Some(n),
                // 0 records that nothing was active: never a target.
                Some(c) if c != n && n != 0 => return Ok(Some(n)),
                Some(_) => {}
            }
        }
        Ok(None)
    }
}

impl Db {
    /// Runs `f`, which only reads, inside one read transaction: one lock
    /// and one consistent snapshot for the thousands of node reads of a
    /// diff, walk or gc mark, instead of one of each per query. Inside a
    /// transaction already, `f` simply runs in it.
    pub fn reading<T>(&self, f: impl FnOnce(&Db) -> Result<T, Error>) -> Result<T, Error> {
        if !self.conn.is_autocommit() {
            return f(self);
        }
        self.conn.execute_batch("BEGIN").map_err(sql)?;
        let result = f(self);
        // A read transaction has nothing to keep: ending it cannot lose work.
        let end = self.conn.execute_batch("COMMIT").map_err(sql);
        let value = result?;
        end?;
        Ok(value)
    }
}

/// The query of one node's body by its id.
const NODE_BODY: &str = "SELECT body FROM nodes WHERE id = ?1";

/// The node `id`'s body as stored, not checked against its id.
fn stored_node(st: &mut rusqlite::Statement<'_>, id: &NodeId) -> Result<Vec<u8>, Error> {
    let body: Option<Vec<u8>> = st
        .query_row(params![id.0.as_bytes().as_slice()], |r| r.get(0))
        .optional()
        .map_err(sql)?;
    body.ok_or(Error::MissingNode(id.0))
}

impl Db {
    fn stored_node(&self, id: &NodeId) -> Result<Vec<u8>, Error> {
        let mut st = self.conn.prepare_cached(NODE_BODY).map_err(sql)?;
        stored_node(&mut st, id)
    }

    /// The nodes as a report shows them: read without hashing each body
    /// against its id (a tenth of a diff's time), as git reads its objects.
    /// Only for what is shown, never acted on: a switch, recover, gc and
    /// verify read through [`Db`] itself, which checks every node, so a
    /// damaged node a report showed is refused before anything uses it.
    /// Its statement is held for as long as it is: a diff or walk reads a
    /// node per directory it enters, each of which took the statement from
    /// the cache and put it back (the query's text hashed both times).
    pub fn shown(&self) -> Result<Shown<'_>, Error> {
        let st = self.conn.prepare_cached(NODE_BODY).map_err(sql)?;
        Ok(Shown(std::cell::RefCell::new(st)))
    }
}

/// See [`Db::shown`].
pub struct Shown<'a>(std::cell::RefCell<rusqlite::CachedStatement<'a>>);

impl NodeSource for Shown<'_> {
    fn node(&self, id: &NodeId) -> Result<Node, Error> {
        let body = self.raw(id)?;
        Node::decode(&body).map_err(|e| Error::CorruptManifest(format!("node {id:?}: {e}")))
    }

    fn raw(&self, id: &NodeId) -> Result<Vec<u8>, Error> {
        // Never borrowed twice: a read returns before the next one starts.
        let mut st = self
            .0
            .try_borrow_mut()
            .map_err(|_| Error::Internal("a node read inside another".into()))?;
        stored_node(&mut st, id)
    }
}

impl NodeSource for Db {
    fn node(&self, id: &NodeId) -> Result<Node, Error> {
        let body = self.raw(id)?;
        Node::decode(&body).map_err(|e| Error::CorruptManifest(format!("node {id:?}: {e}")))
    }

    fn raw(&self, id: &NodeId) -> Result<Vec<u8>, Error> {
        let body = self.stored_node(id)?;
        if Node::id_of(&body) != *id {
            return Err(Error::CorruptManifest(format!(
                "node {:?} does not match its id",
                id
            )));
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests;
