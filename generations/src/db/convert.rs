//! Migration 9: every node re-encoded from JSON (format 1) to the binary
//! encoding (format 2, `manifest/binary.rs`).
//!
//! A node's id is the hash of its encoding, so every node gets a new id,
//! every directory entry that names a subtree is rewritten to the new id
//! (children first), and every manifest gets its new root and so a new
//! generation id. The generation keeps its number; the old id is kept in
//! `generation_renames` so that a journal written before the upgrade (a
//! switch interrupted under the old version) still finds its generations.
//! It all runs in the migration's one transaction: a crash leaves the
//! database as it was, at version 8.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, Transaction, params};
use sysgen_store::Hash;

use crate::Error;
use crate::error::sql;
use crate::manifest::{FORMAT, GenerationId, Manifest, Node, NodeId};

/// Converts every node reachable from a manifest (an error if one is
/// missing or damaged: the generation could not be read after), then every
/// other node that converts (the rest is garbage that gc would drop).
pub(super) fn nodes_to_binary(tx: &Transaction<'_>) -> Result<(), Error> {
    tx.execute_batch("CREATE TABLE nodes_v2 (id BLOB PRIMARY KEY NOT NULL, body BLOB NOT NULL);")
        .map_err(sql)?;
    let mut done: HashMap<NodeId, NodeId> = HashMap::new();
    let manifests: Vec<(Vec<u8>, Vec<u8>)> = {
        let mut st = tx.prepare("SELECT id, body FROM manifests").map_err(sql)?;
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql)?
            .collect::<Result<_, _>>()
            .map_err(sql)?
    };
    for (old, body) in manifests {
        let old_id = hex::encode(&old);
        let mut m: Manifest = serde_json::from_slice(&body)
            .map_err(|e| Error::CorruptManifest(format!("migration 9: manifest {old_id}: {e}")))?;
        m.root = convert(tx, m.root, &mut done)
            .map_err(|e| Error::CorruptManifest(format!("migration 9: manifest {old_id}: {e}")))?;
        m.sysgen = FORMAT;
        let body = m.encode()?;
        let new = GenerationId(Hash::of(&body));
        let new = new.0.as_bytes().as_slice();
        tx.execute(
            "UPDATE manifests SET id = ?1, body = ?2 WHERE id = ?3",
            params![new, body, old],
        )
        .map_err(sql)?;
        tx.execute(
            "UPDATE generations SET id = ?1 WHERE id = ?2",
            params![new, old],
        )
        .map_err(sql)?;
        tx.execute(
            "INSERT OR REPLACE INTO generation_renames (old, new) VALUES (?1, ?2)",
            params![old, new],
        )
        .map_err(sql)?;
    }
    let all: Vec<Vec<u8>> = {
        let mut st = tx.prepare("SELECT id FROM nodes").map_err(sql)?;
        st.query_map([], |r| r.get(0))
            .map_err(sql)?
            .collect::<Result<_, _>>()
            .map_err(sql)?
    };
    for id in all {
        if let Ok(arr) = <[u8; 32]>::try_from(id.as_slice()) {
            // Unreachable: a node that does not convert is dropped with the rest.
            let _ = convert(tx, NodeId(Hash::from_bytes(arr)), &mut done);
        }
    }
    tx.execute_batch("DROP TABLE nodes; ALTER TABLE nodes_v2 RENAME TO nodes;")
        .map_err(sql)?;
    Ok(())
}

/// The new id of node `old`, its subtrees converted first.
fn convert(
    tx: &Transaction<'_>,
    old: NodeId,
    done: &mut HashMap<NodeId, NodeId>,
) -> Result<NodeId, String> {
    if let Some(new) = done.get(&old) {
        return Ok(*new);
    }
    let body: Vec<u8> = tx
        .prepare_cached("SELECT body FROM nodes WHERE id = ?1")
        .and_then(|mut st| {
            st.query_row(params![old.0.as_bytes().as_slice()], |r| r.get(0))
                .optional()
        })
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("node {old:?} is missing"))?;
    if Node::id_of(&body) != old {
        return Err(format!("node {old:?} does not match its id"));
    }
    let mut node = Node::decode(&body).map_err(|e| format!("node {old:?}: {e}"))?;
    for e in &mut node.entries {
        if let Some(t) = e.tree {
            e.tree = Some(convert(tx, t, done)?);
        }
    }
    let bytes = node.encode().map_err(|e| e.to_string())?;
    let new = Node::id_of(&bytes);
    tx.prepare_cached("INSERT OR IGNORE INTO nodes_v2 (id, body) VALUES (?1, ?2)")
        .and_then(|mut st| st.execute(params![new.0.as_bytes().as_slice(), bytes]))
        .map_err(|e| e.to_string())?;
    done.insert(old, new);
    Ok(new)
}

#[cfg(test)]
mod tests;
