//! verify: compare the root with the active generation, entry by entry
//! (type, content, mode, and ownership where managed), files hashed in
//! parallel; the packages against what is installed; the units' enablement
//! against what systemd says; with `--store`, also rehash every store object.

use rayon::prelude::*;
use serde::Serialize;
use sysgen_store::Area;

use crate::manifest::walk;
use crate::precheck::drift_of;
use crate::services::ServiceOptions;
use crate::{Drift, Error, Progress, State};

#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyOutcome {
    pub active: Option<u64>,
    pub entries: u64,
    /// Paths, packages and units (enablement) that differ from the active
    /// generation.
    pub drift: Vec<Drift>,
    /// With `--store`: objects checked and those whose content no longer matches.
    pub objects_checked: u64,
    pub corrupt_objects: Vec<String>,
    /// Corrupt objects of the secret area: counted, never named (their
    /// names are hashes of secrets).
    pub corrupt_secret_objects: u64,
}

/// `services` says which `systemctl` reads the units' enablement.
pub fn verify(
    state: &State,
    store: bool,
    services: &ServiceOptions,
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
        let entries = state.db.reading(|db| walk(db, m.root))?;
        out.entries = entries.len() as u64;
        progress.start("verifying", entries.len() as u64);
        let root = &state.root;
        let results: Vec<Result<Option<Drift>, Error>> = entries
            .par_iter()
            .map(|(p, e)| {
                let live = root.inspect(p)?;
                let d = drift_of(root, p, e, &live)?;
                progress.advance(1);
                Ok(d.map(|what| Drift {
                    path: p.to_string(),
                    what,
                }))
            })
            .collect();
        progress.finish();
        for r in results {
            if let Some(d) = r? {
                out.drift.push(d);
            }
        }
        out.entries += m.packages.apt.len() as u64;
        out.drift
            .extend(crate::packages::drift(state, &m.packages)?);
        out.drift.extend(crate::services::enablement_drift(
            services,
            root.path(),
            &m.services,
        )?);
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
