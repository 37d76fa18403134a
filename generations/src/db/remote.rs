//! The tables of remotes (migration 10): keys a remote keeps in this state
//! when the state is served as one, the refs this host accepted, and the
//! keys it trusts. The `remote` crate owns their meaning; this is storage.

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{Db, hash_col};
use crate::Error;
use crate::error::sql;
use crate::manifest::{GenerationId, NodeId};

/// The newest version of a ref this host accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcceptedRef {
    pub seq: u64,
    pub generation: GenerationId,
    pub at: i64,
}

/// A public key whose signatures this host accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedKey {
    pub key: String,
    pub comment: Option<String>,
    pub added_at: i64,
}

impl Db {
    /// The value of a remote key kept in this state.
    pub fn remote_key(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        self.conn
            .query_row(
                "SELECT value FROM remote_keys WHERE key = ?1",
                params![key],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)
    }

    /// The remote keys starting with `prefix`, sorted.
    pub fn remote_keys(&self, prefix: &str) -> Result<Vec<String>, Error> {
        let mut st = self
            .conn
            .prepare_cached("SELECT key FROM remote_keys WHERE key >= ?1 ORDER BY key")
            .map_err(sql)?;
        let keys = st
            .query_map(params![prefix], |r| r.get::<_, String>(0))
            .map_err(sql)?;
        let mut out = Vec::new();
        for k in keys {
            let k = k.map_err(sql)?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push(k);
        }
        Ok(out)
    }

    /// Replaces `key` if it holds `expected` (`None`: absent), in one
    /// immediate transaction, so two writers cannot both win. `Ok(None)`:
    /// done; `Ok(Some(now))`: lost, nothing written, `now` is what it holds.
    pub fn swap_remote_key(
        &mut self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<Option<Option<Vec<u8>>>, Error> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let now: Option<Vec<u8>> = tx
            .query_row(
                "SELECT value FROM remote_keys WHERE key = ?1",
                params![key],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)?;
        if now.as_deref() != expected {
            return Ok(Some(now));
        }
        tx.execute(
            "INSERT OR REPLACE INTO remote_keys (key, value) VALUES (?1, ?2)",
            params![key, new],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(None)
    }

    pub fn has_node(&self, id: &NodeId) -> Result<bool, Error> {
        self.conn
            .query_row(
                "SELECT 1 FROM nodes WHERE id = ?1",
                params![id.0.as_bytes().as_slice()],
                |_| Ok(()),
            )
            .optional()
            .map(|o| o.is_some())
            .map_err(sql)
    }

    pub fn has_manifest(&self, id: &GenerationId) -> Result<bool, Error> {
        self.conn
            .query_row(
                "SELECT 1 FROM manifests WHERE id = ?1",
                params![id.0.as_bytes().as_slice()],
                |_| Ok(()),
            )
            .optional()
            .map(|o| o.is_some())
            .map_err(sql)
    }

    pub fn accepted_ref(&self, name: &str) -> Result<Option<AcceptedRef>, Error> {
        self.conn
            .query_row(
                "SELECT seq, generation, at FROM remote_accepted WHERE name = ?1",
                params![name],
                |r| {
                    Ok(AcceptedRef {
                        seq: r.get::<_, i64>(0)? as u64,
                        generation: GenerationId(hash_col(r, 1)?),
                        at: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(sql)
    }

    /// Records that this host accepted version `seq` of `name`.
    pub fn accept_ref(&mut self, name: &str, a: &AcceptedRef) -> Result<(), Error> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO remote_accepted (name, seq, generation, at) VALUES (?1, ?2, ?3, ?4)",
                params![name, a.seq as i64, a.generation.0.as_bytes().as_slice(), a.at],
            )
            .map(drop)
            .map_err(sql)
    }

    pub fn trusted_keys(&self) -> Result<Vec<TrustedKey>, Error> {
        let mut st = self
            .conn
            .prepare_cached("SELECT key, comment, added_at FROM trusted_keys ORDER BY key")
            .map_err(sql)?;
        st.query_map([], |r| {
            Ok(TrustedKey {
                key: r.get(0)?,
                comment: r.get(1)?,
                added_at: r.get(2)?,
            })
        })
        .map_err(sql)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql)
    }

    /// Trusts `key`; true when it was not trusted before.
    pub fn trust_key(&mut self, key: &str, comment: Option<&str>, at: i64) -> Result<bool, Error> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO trusted_keys (key, comment, added_at) VALUES (?1, ?2, ?3)",
                params![key, comment, at],
            )
            .map(|n| n > 0)
            .map_err(sql)
    }
}

impl Db {
    /// The `.deb` object recorded for a package version (see
    /// `packages::records`), for publishing it with a generation.
    pub fn package_file(
        &self,
        manager: &str,
        name: &str,
        version: &str,
        arch: &str,
    ) -> Result<Option<sysgen_store::Hash>, Error> {
        let b: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT hash FROM package_files WHERE manager = ?1 AND name = ?2 AND version = ?3 AND arch = ?4",
                params![manager, name, version, arch],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)?;
        Ok(b.and_then(|b| <[u8; 32]>::try_from(b).ok())
            .map(sysgen_store::Hash::from_bytes))
    }

    /// Records the `.deb` object of a package version that arrived from a
    /// remote (its object is in the store already), so that a switch to
    /// the pulled generation, and its rollback, install it offline.
    pub fn record_package_file(
        &mut self,
        manager: &str,
        name: &str,
        version: &str,
        arch: &str,
        hash: &sysgen_store::Hash,
    ) -> Result<(), Error> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO package_files (manager, name, version, arch, hash) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![manager, name, version, arch, hash.as_bytes().as_slice()],
            )
            .map(drop)
            .map_err(sql)
    }
}
