//! `has` on S3: which of a batch of keys the bucket holds.
//!
//! Two ways to ask, measured on Garage over loopback (docs/remote.md,
//! "Measurements"): a HEAD per key (in parallel, [`HEADS_IN_FLIGHT`] at a
//! time) costs about 0.3 to 0.6 ms a key; a LIST of the keys' directory
//! costs about 0.06 ms per key *listed*, asked about or not, 1,000 to a
//! page. So a LIST pays when the directory holds fewer than about eight
//! keys per key asked (a first push to a new or small remote), and HEADs
//! pay when the remote is large and the batch small (every incremental
//! push: sync asks only about the subtrees that changed).
//!
//! So: for a batch of at least [`LIST_FROM`] keys (by default) in one directory, list
//! that directory, reading at most [`LISTED_PER_ASKED`] keys per key asked.
//! S3 lists in byte order, so even a listing cut short answers every key
//! up to the last one listed (listed: present; not listed: absent); HEADs
//! answer the rest. Were a store to list out of order, a key would be
//! wrongly thought absent and sent again (puts are idempotent), never
//! wrongly thought present: only a key seen in a listing counts as there.

use std::collections::{BTreeMap, HashSet};

use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use super::S3Transport;
use crate::Error;

/// How many HEAD requests are in flight by default.
pub const HEADS_IN_FLIGHT: usize = 32;

/// The smallest batch (in one directory) worth a LIST.
pub const LIST_FROM: usize = 256;

/// How many keys a LIST may read per key asked (time: 0.06 ms against
/// 0.3 to 0.6 ms, with room for a page's latency).
pub const LISTED_PER_ASKED: usize = 8;

impl S3Transport {
    pub(super) fn has_keys(&self, keys: &[String]) -> Result<Vec<bool>, Error> {
        let mut answer: Vec<Option<bool>> = vec![None; keys.len()];
        let mut by_dir: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, k) in keys.iter().enumerate() {
            super::check_key(k).map_err(|m| self.err(k, m))?;
            let dir = k.rfind('/').map_or("", |j| &k[..=j]);
            by_dir.entry(dir).or_default().push(i);
        }
        for (dir, idx) in by_dir {
            if idx.len() < self.list_from {
                continue;
            }
            let (listed, last) = self.list_some(dir, idx.len() * LISTED_PER_ASKED)?;
            for i in idx {
                let k = keys[i].as_str();
                if listed.contains(k) {
                    answer[i] = Some(true);
                } else if last.as_deref().is_none_or(|l| k <= l) {
                    // `None`: the whole directory was listed.
                    answer[i] = Some(false);
                }
            }
        }
        let rest: Vec<usize> = (0..keys.len()).filter(|i| answer[*i].is_none()).collect();
        let headed = self.heads(keys, &rest)?;
        for (i, found) in rest.into_iter().zip(headed) {
            answer[i] = Some(found);
        }
        Ok(answer.into_iter().map(|a| a == Some(true)).collect())
    }

    /// The keys under `dir` (a prefix ending in `/`, or empty), reading at
    /// most `budget`; and the last key read when it stopped short (`None`:
    /// it read them all).
    fn list_some(
        &self,
        dir: &str,
        budget: usize,
    ) -> Result<(HashSet<String>, Option<String>), Error> {
        let full = format!("{}{dir}", self.prefix);
        let full = full.trim_end_matches('/');
        let base = if full.is_empty() {
            None
        } else {
            Some(Path::parse(full).map_err(|e| self.err(dir, e))?)
        };
        self.rt.block_on(async {
            let mut stream = self.store.list(base.as_ref());
            let mut listed = HashSet::new();
            let mut last = None;
            while let Some(meta) = stream.next().await {
                let meta = meta.map_err(|e| self.err(dir, e))?;
                let Some(key) = meta.location.as_ref().strip_prefix(self.prefix.as_str()) else {
                    continue;
                };
                if listed.len() >= budget {
                    // Stop at a page's end would be cheaper still; the
                    // stream hides pages, so stop at the budget.
                    return Ok((listed, last));
                }
                last = Some(key.to_owned());
                listed.insert(key.to_owned());
            }
            Ok((listed, None))
        })
    }

    /// HEADs of `keys[i]` for each `i` in `which`, in flight at once up to
    /// the limit; answered in `which`'s order.
    fn heads(&self, keys: &[String], which: &[usize]) -> Result<Vec<bool>, Error> {
        let paths = which
            .iter()
            .map(|i| self.path(&keys[*i]))
            .collect::<Result<Vec<_>, _>>()?;
        self.rt.block_on(async {
            let mut found = vec![false; which.len()];
            let mut tasks = tokio::task::JoinSet::new();
            let mut next = paths.into_iter().enumerate();
            loop {
                while tasks.len() < self.heads_in_flight {
                    let Some((j, path)) = next.next() else { break };
                    let store = self.store.clone();
                    tasks.spawn(async move { (j, store.head(&path).await) });
                }
                let Some(done) = tasks.join_next().await else {
                    break;
                };
                let (j, r) = done.map_err(|e| self.err("", e))?;
                match r {
                    Ok(_) => found[j] = true,
                    Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(self.err(&keys[which[j]], e)),
                }
            }
            Ok(found)
        })
    }
}
