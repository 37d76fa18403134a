//! What the database remembers for people: the history of activations and
//! the copies saved before sysgen overwrote a file (`sysgen log`, `sysgen
//! saved`). Reading only.

use serde::Serialize;
use sysgen_schema::EntryPath;
use sysgen_store::Hash;

use super::{Db, hash_col};
use crate::Error;
use crate::error::sql;

/// One activation: generation `number` (0: none) became active at `at`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ActivationRow {
    pub seq: u64,
    pub number: u64,
    pub at: i64,
    /// "switch", "rollback", "recover", "recover --rollback", "automatic rollback".
    pub how: String,
}

/// A copy kept in the store (the secret area) before sysgen overwrote or
/// removed what an admin had changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedRow {
    pub seq: u64,
    pub path: EntryPath,
    pub hash: Hash,
    pub at: i64,
    pub why: String,
}

impl Db {
    /// Every activation, oldest first.
    pub fn activations(&self) -> Result<Vec<ActivationRow>, Error> {
        let mut st = self
            .conn
            .prepare_cached("SELECT seq, number, at, how FROM activations ORDER BY seq")
            .map_err(sql)?;
        st.query_map([], |r| {
            Ok(ActivationRow {
                seq: r.get::<_, i64>(0)? as u64,
                number: r.get::<_, i64>(1)? as u64,
                at: r.get(2)?,
                how: r.get(3)?,
            })
        })
        .map_err(sql)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql)
    }

    /// Every saved copy, oldest first.
    pub fn saved(&self) -> Result<Vec<SavedRow>, Error> {
        let mut st = self
            .conn
            .prepare_cached("SELECT seq, path, hash, at, why FROM saved ORDER BY seq")
            .map_err(sql)?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, String>(1)?,
                    hash_col(r, 2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })
            .map_err(sql)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sql)?;
        rows.into_iter()
            .map(|(seq, path, hash, at, why)| {
                Ok(SavedRow {
                    seq,
                    path: EntryPath::parse(&path)
                        .map_err(|e| Error::Corrupt(format!("saved copy {seq}: {path}: {e}")))?,
                    hash,
                    at,
                    why,
                })
            })
            .collect()
    }
}
