//! What a build made of each tree's source directory (migration 11), so
//! that the next build, finding the directory as it was, takes its node
//! without hashing, looking up or encoding anything below it. When a
//! record may be made and when it is trusted: `ingest/walk/clean.rs`.

use std::collections::HashMap;

use rusqlite::params;
use sysgen_store::Hash;

use super::Db;
use crate::Error;
use crate::error::sql;
use crate::manifest::NodeId;

/// What a build made of a source directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirRecord {
    /// The fingerprint of its listing: every name, kind, file stat and
    /// attribute that goes into its node, apart from the subdirectories'
    /// nodes.
    pub listing: Hash,
    /// The fingerprint of the listing with its subdirectories' node ids:
    /// everything its node was made from.
    pub made: Hash,
    pub node: NodeId,
}

/// What a build hands the database: a node, or the record of the source
/// directory it made a node of.
pub enum Put {
    Node(NodeId, Vec<u8>),
    Dir(Vec<u8>, DirRecord),
}

fn hash_of(b: &[u8]) -> rusqlite::Result<Hash> {
    <[u8; 32]>::try_from(b).map(Hash::from_bytes).map_err(|_| {
        rusqlite::Error::InvalidColumnType(0, "hash".into(), rusqlite::types::Type::Blob)
    })
}

impl Db {
    /// The records whose node the database still holds, by source path.
    /// gc deletes nodes no kept generation has: a record of one of them
    /// names a node that may come back only with a build that makes it.
    pub fn dir_records(&self) -> Result<HashMap<Vec<u8>, DirRecord>, Error> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT d.src, d.listing, d.made, d.node FROM dir_nodes d
                 WHERE EXISTS (SELECT 1 FROM nodes n WHERE n.id = d.node)",
            )
            .map_err(sql)?;
        let rows = st
            .query_map([], |r| {
                let src: Vec<u8> = r.get(0)?;
                let listing = hash_of(r.get_ref(1)?.as_blob()?)?;
                let made = hash_of(r.get_ref(2)?.as_blob()?)?;
                let node = NodeId(hash_of(r.get_ref(3)?.as_blob()?)?);
                Ok((
                    src,
                    DirRecord {
                        listing,
                        made,
                        node,
                    },
                ))
            })
            .map_err(sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)
    }

    /// Drops every record: the next build looks every file up again.
    pub fn forget_dir_records(&self) -> Result<(), Error> {
        self.conn
            .execute("DELETE FROM dir_nodes", [])
            .map(drop)
            .map_err(sql)
    }

    /// Runs `produce` in one transaction, inserting each node and record it
    /// hands to its argument as it comes. A record replaces the one of the
    /// same source directory.
    pub fn insert_built<T>(
        &mut self,
        produce: impl FnOnce(&mut dyn FnMut(Put) -> Result<(), Error>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let tx = self.conn.transaction().map_err(sql)?;
        let value = {
            let mut node = tx
                .prepare_cached("INSERT OR IGNORE INTO nodes (id, body) VALUES (?1, ?2)")
                .map_err(sql)?;
            let mut dir = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO dir_nodes (src, listing, made, node) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(sql)?;
            produce(&mut |put| {
                match put {
                    Put::Node(id, body) => node.execute(params![id.0.as_bytes().as_slice(), body]),
                    Put::Dir(src, r) => dir.execute(params![
                        src,
                        r.listing.as_bytes().as_slice(),
                        r.made.as_bytes().as_slice(),
                        r.node.0.as_bytes().as_slice()
                    ]),
                }
                .map(drop)
                .map_err(sql)
            })?
        };
        tx.commit().map_err(sql)?;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Node, NodeSource};

    const DIR_NODES: usize = 11;

    fn record(i: u8, node: NodeId) -> DirRecord {
        DirRecord {
            listing: Hash::from_bytes([i; 32]),
            made: Hash::from_bytes([i + 1; 32]),
            node,
        }
    }

    /// A database of the version before migration 11, with a node, opens
    /// migrated: the table is there and empty, the node kept, and records
    /// go in and come back.
    #[test]
    fn migration_11_adds_the_directory_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sysgen.db");
        let id = super::super::tests::at_version_with_a_node(&path, DIR_NODES - 1);

        let mut db = Db::open(&path).unwrap();
        let version: usize = db
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, DIR_NODES);
        assert!(db.dir_records().unwrap().is_empty());
        assert_eq!(db.node(&id).unwrap(), Node::default());
        db.insert_built(|put| {
            put(Put::Dir(b"/src/a".to_vec(), record(1, id)))?;
            put(Put::Dir(b"/src/a".to_vec(), record(3, id)))
        })
        .unwrap();
        let got = db.dir_records().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[b"/src/a".as_slice()], record(3, id), "replaced");
    }

    /// A record whose node is not in the database (gc deleted it) is not
    /// returned: its node id would name nothing.
    #[test]
    fn a_record_of_a_missing_node_is_not_returned() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open(&dir.path().join("sysgen.db")).unwrap();
        let body = Node::default().encode().expect("encodes");
        let id = Node::id_of(&body);
        let gone = NodeId(Hash::from_bytes([9; 32]));
        db.insert_built(|put| {
            put(Put::Node(id, body))?;
            put(Put::Dir(b"/kept".to_vec(), record(1, id)))?;
            put(Put::Dir(b"/gone".to_vec(), record(2, gone)))
        })
        .unwrap();
        let got = db.dir_records().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[b"/kept".as_slice()].node, id);
    }

    /// gc's collect deletes the records of the nodes it deletes, and
    /// keeps those of the nodes it keeps.
    #[test]
    fn gc_drops_the_records_of_the_nodes_it_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open(&dir.path().join("sysgen.db")).unwrap();
        let kept = Node::default().encode().expect("encodes");
        let kept_id = Node::id_of(&kept);
        let gone = b"not a node, never read".to_vec();
        let gone_id = NodeId(Hash::of(&gone));
        db.insert_built(|put| {
            put(Put::Node(kept_id, kept))?;
            put(Put::Node(gone_id, gone))?;
            put(Put::Dir(b"/kept".to_vec(), record(1, kept_id)))?;
            put(Put::Dir(b"/gone".to_vec(), record(2, gone_id)))
        })
        .unwrap();
        let live: sysgen_store::HashKeySet<NodeId> = [kept_id].into_iter().collect();
        db.collect(&[], 0, &live, &[]).unwrap();
        let left: i64 = db
            .conn
            .query_row("SELECT count(*) FROM dir_nodes", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 1);
        assert!(db.dir_records().unwrap().contains_key(b"/kept".as_slice()));
    }
}
