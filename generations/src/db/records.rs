//! Changes to the database: activations, pins, unit origins, the ledger,
//! saved copies, the stat cache, and gc's collection.

use std::collections::{BTreeMap, HashMap};

use rusqlite::params;
use sysgen_schema::EntryPath;
use sysgen_store::Hash;

use crate::Error;
use crate::manifest::{GenerationId, NodeId};

use super::*;

impl Db {
    /// Commits an activation: the generation row (when new), the history
    /// record and the ledger changes, atomically. This is the moment a
    /// switch takes effect.
    pub fn activate(&mut self, a: &Activation<'_>) -> Result<(), Error> {
        let tx = self.conn.transaction().map_err(sql)?;
        // Number 0 in the history means "no generation active".
        let number = a.target.map_or(0, |(n, _)| n as i64);
        if let Some((n, id)) = a.target {
            tx.execute(
                "INSERT OR IGNORE INTO generations (number, id, created_at) VALUES (?1, ?2, ?3)",
                params![n as i64, id.0.as_bytes().as_slice(), a.at],
            )
            .map_err(sql)?;
            // A generation gc had deleted and that was built again is live again.
            // Its age starts again, so `gc --older-than` does not take it at once.
            tx.execute(
                "UPDATE generations SET collected_at = NULL, created_at = ?2 WHERE number = ?1 AND collected_at IS NOT NULL",
                params![n as i64, a.at],
            )
            .map_err(sql)?;
        }
        tx.execute(
            "INSERT INTO activations (number, at, how) VALUES (?1, ?2, ?3)",
            params![number, a.at, a.how],
        )
        .map_err(sql)?;
        {
            let mut del = tx
                .prepare_cached("DELETE FROM ledger WHERE path = ?1")
                .map_err(sql)?;
            for (p, _) in a.ledger_remove {
                del.execute(params![p.as_str()]).map_err(sql)?;
            }
            let mut ins = tx
                .prepare_cached("INSERT OR REPLACE INTO ledger (path, origin) VALUES (?1, ?2)")
                .map_err(sql)?;
            for (p, o) in a.ledger_add {
                let body = serde_json::to_string(o)
                    .map_err(|e| Error::Internal(format!("a ledger record of {p}: {e}")))?;
                ins.execute(params![p.as_str(), body]).map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)
    }

    pub fn set_pinned(&mut self, number: u64, pinned: bool) -> Result<(), Error> {
        self.conn
            .execute(
                "UPDATE generations SET pinned = ?2 WHERE number = ?1",
                params![number as i64, pinned as i64],
            )
            .map_err(sql)?;
        Ok(())
    }

    // ---- units ----

    /// Whether each unit was enabled before sysgen first managed it.
    pub fn unit_origins(&self) -> Result<BTreeMap<String, bool>, Error> {
        let mut st = self
            .conn
            .prepare_cached("SELECT unit, enabled FROM unit_origins")
            .map_err(sql)?;
        st.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? != 0))
        })
        .map_err(sql)?
        .collect::<Result<_, _>>()
        .map_err(sql)
    }

    pub fn set_unit_origin(&mut self, unit: &str, enabled: bool) -> Result<(), Error> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO unit_origins (unit, enabled) VALUES (?1, ?2)",
                params![unit, enabled as i64],
            )
            .map_err(sql)?;
        Ok(())
    }

    // ---- ledger and saved files ----

    pub fn ledger(&self) -> Result<BTreeMap<EntryPath, Origin>, Error> {
        self.json_by_path("SELECT path, origin FROM ledger", "ledger")
    }

    /// Rows of (path, JSON value) read by `query`, as a map; `what` names
    /// the table in errors.
    pub fn json_by_path<T: serde::de::DeserializeOwned>(
        &self,
        query: &str,
        what: &str,
    ) -> Result<BTreeMap<EntryPath, T>, Error> {
        let mut st = self.conn.prepare_cached(query).map_err(sql)?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(sql)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sql)?;
        rows.into_iter()
            .map(|(p, v)| {
                let path = EntryPath::parse(&p)
                    .map_err(|e| Error::Corrupt(format!("{what} path {p:?}: {e}")))?;
                let value = serde_json::from_str(&v)
                    .map_err(|e| Error::Corrupt(format!("{what} entry {p}: {e}")))?;
                Ok((path, value))
            })
            .collect()
    }

    pub fn insert_saved(&mut self, saved: &[Saved], at: i64) -> Result<(), Error> {
        let tx = self.conn.transaction().map_err(sql)?;
        {
            let mut st = tx
                .prepare_cached("INSERT INTO saved (path, hash, at, why) VALUES (?1, ?2, ?3, ?4)")
                .map_err(sql)?;
            for s in saved {
                st.execute(params![
                    s.path.as_str(),
                    s.hash.as_bytes().as_slice(),
                    at,
                    s.why
                ])
                .map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)
    }

    pub fn saved_hashes(&self) -> Result<Vec<Hash>, Error> {
        let mut st = self
            .conn
            .prepare_cached("SELECT hash FROM saved")
            .map_err(sql)?;
        st.query_map([], |r| hash_col(r, 0))
            .map_err(sql)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sql)
    }

    // ---- stat cache ----

    pub fn stat_cache(&self) -> Result<HashMap<String, CacheRow>, Error> {
        let mut st = self
            .conn
            .prepare_cached("SELECT path, dev, ino, size, mtime_ns, ctime_ns, hash FROM stat_cache")
            .map_err(sql)?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    CacheRow {
                        dev: r.get::<_, i64>(1)? as u64,
                        ino: r.get::<_, i64>(2)? as u64,
                        size: r.get::<_, i64>(3)? as u64,
                        mtime_ns: r.get(4)?,
                        ctime_ns: r.get(5)?,
                        hash: hash_col(r, 6)?,
                    },
                ))
            })
            .map_err(sql)?;
        rows.collect::<Result<HashMap<_, _>, _>>().map_err(sql)
    }

    /// Records `rows`, made as they are written rather than collected first
    /// (a first build has one per file).
    pub fn update_stat_cache(
        &mut self,
        rows: impl IntoIterator<Item = (String, CacheRow)>,
    ) -> Result<(), Error> {
        let mut rows = rows.into_iter().peekable();
        if rows.peek().is_none() {
            return Ok(());
        }
        let tx = self.conn.transaction().map_err(sql)?;
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO stat_cache (path, dev, ino, size, mtime_ns, ctime_ns, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(sql)?;
            for (p, c) in rows {
                st.execute(params![
                    p,
                    c.dev as i64,
                    c.ino as i64,
                    c.size as i64,
                    c.mtime_ns,
                    c.ctime_ns,
                    c.hash.as_bytes().as_slice()
                ])
                .map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)
    }

    // ---- gc ----

    /// Marks generations as collected and deletes every manifest that no
    /// remaining generation uses (built but never switched to included),
    /// then every node no remaining manifest reaches. Rows go before
    /// objects: the caller deletes store objects only after this commits.
    pub fn collect(
        &mut self,
        numbers: &[u64],
        at: i64,
        live_nodes: &sysgen_store::HashKeySet<NodeId>,
        keep_manifests: &[GenerationId],
    ) -> Result<(u64, u64), Error> {
        let tx = self.conn.transaction().map_err(sql)?;
        {
            let mut st = tx
                .prepare_cached("UPDATE generations SET collected_at = ?2 WHERE number = ?1")
                .map_err(sql)?;
            for n in numbers {
                st.execute(params![*n as i64, at]).map_err(sql)?;
            }
        }
        let keep: std::collections::HashSet<Vec<u8>> = keep_manifests
            .iter()
            .map(|g| g.0.as_bytes().to_vec())
            .collect();
        let all: Vec<Vec<u8>> = {
            let mut st = tx.prepare_cached("SELECT id FROM manifests").map_err(sql)?;
            st.query_map([], |r| r.get(0))
                .map_err(sql)?
                .collect::<Result<_, _>>()
                .map_err(sql)?
        };
        let mut manifests = 0;
        for id in all.iter().filter(|id| !keep.contains(*id)) {
            manifests += tx
                .execute("DELETE FROM manifests WHERE id = ?1", params![id])
                .map_err(sql)? as u64;
        }
        // Only the dead ids are held (not every node's): the walk reads
        // the ids as they come, the deletes run after it.
        let dead: Vec<Vec<u8>> = {
            let live = |id: &[u8]| {
                <[u8; 32]>::try_from(id)
                    .is_ok_and(|b| live_nodes.contains(&NodeId(Hash::from_bytes(b))))
            };
            let mut st = tx.prepare_cached("SELECT id FROM nodes").map_err(sql)?;
            let mut rows = st.query([]).map_err(sql)?;
            let mut dead = Vec::new();
            while let Some(r) = rows.next().map_err(sql)? {
                let id = r
                    .get_ref(0)
                    .map_err(sql)?
                    .as_blob()
                    .map_err(|e| sql(e.into()))?;
                if !live(id) {
                    dead.push(id.to_vec());
                }
            }
            dead
        };
        let mut removed_nodes = 0;
        {
            let mut del = tx
                .prepare_cached("DELETE FROM nodes WHERE id = ?1")
                .map_err(sql)?;
            for id in &dead {
                removed_nodes += del.execute(params![id]).map_err(sql)? as u64;
            }
        }
        // The builds' records of source directories whose node just went
        // (db/dirs.rs): they would never be used again.
        if removed_nodes > 0 {
            tx.execute(
                "DELETE FROM dir_nodes WHERE node NOT IN (SELECT id FROM nodes)",
                [],
            )
            .map_err(sql)?;
        }
        // The deleted rows' pages go back in this commit: a vacuum of its
        // own (`Db::reclaim`) cost a second commit, and its syncs, per gc.
        if auto_vacuum_incremental(&tx)? {
            vacuum_free_pages(&tx)?;
        }
        tx.commit().map_err(sql)?;
        Ok((manifests, removed_nodes))
    }
}
