//! verify: compare the root with the active generation, every kind its own
//! part (the tree entry by entry, files hashed in parallel; packages
//! against what is installed; units' enablement); with `--store`, also
//! rehash every store object.

use rayon::prelude::*;
use serde::Serialize;
use sysgen_store::Area;

use crate::host::Options;
use crate::kinds;
use crate::{Drift, Error, Progress, State};

#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyOutcome {
    pub active: Option<u64>,
    pub entries: u64,
    pub drift: Vec<Drift>,
    /// With `--store`: objects checked and those whose content no longer matches.
    pub objects_checked: u64,
    pub corrupt_objects: Vec<String>,
    /// Corrupt objects of the secret area: counted, never named (their
    /// names are hashes of secrets).
    pub corrupt_secret_objects: u64,
}

/// Compares the root with the active generation, kind by kind; with
/// `store`, also rehashes every store object.
pub fn verify(
    state: &State,
    store: bool,
    opts: &Options,
    progress: &dyn Progress,
) -> Result<VerifyOutcome, Error> {
    let mut out = VerifyOutcome::default();
    if let Some(active) = state.db.active()? {
        out.active = Some(active.number);
        let (m, _) = state.db.manifest(&active.id)?.ok_or_else(|| {
            Error::CorruptManifest(format!(
                "the manifest of generation {} is missing",
                active.number
            ))
        })?;
        for k in kinds::all() {
            let v = k.verify(state, &m, opts, progress)?;
            out.entries += v.entries;
            out.drift.extend(v.drift);
        }
    }
    if store {
        for area in [Area::Public, Area::Secret] {
            let objects = &state.store;
            let list = objects.list(area)?;
            progress.start("checking store", list.len() as u64);
            let bad: Vec<Result<Option<String>, Error>> = list
                .par_iter()
                .map(|h| {
                    let ok = objects.check(h, area)?;
                    progress.advance(1);
                    Ok((!ok).then(|| h.to_hex()))
                })
                .collect();
            progress.finish();
            out.objects_checked += list.len() as u64;
            for b in bad {
                if let Some(h) = b? {
                    match area {
                        Area::Public => out.corrupt_objects.push(h),
                        Area::Secret => out.corrupt_secret_objects += 1,
                    }
                }
            }
        }
    }
    Ok(out)
}
