//! What gc destroys of datasets: the detached data and the snapshots of
//! datasets that no kept generation has.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sysgen_schema::EntryPath;

use super::records::{Recorder, known, of_generation, snapshot_rows};
use super::{Kind, Tools, backend};
use crate::{Error, GenerationId};

/// Something gc destroys (or, with `--dry-run`, would destroy).
#[derive(Debug, Clone, Serialize)]
pub struct GcDataset {
    pub path: EntryPath,
    pub kind: Kind,
    /// "dataset" (its detached data) or "snapshot".
    pub what: &'static str,
    /// A path on the root, or a zfs name.
    pub location: String,
    pub bytes: u64,
    #[serde(skip)]
    snapshot: Option<String>,
}

/// The datasets (detached data and snapshots) that no generation in `kept`
/// has; destroys them unless `dry_run`. Called after gc committed the
/// deletion of the other generations: a crash leaves the records, so the
/// next gc finishes the work.
pub fn gc_datasets(
    state: &crate::State,
    tools: &Tools,
    kept: &[GenerationId],
    dry_run: bool,
) -> Result<Vec<GcDataset>, Error> {
    let db = &state.db;
    let mut live: BTreeSet<(EntryPath, Kind)> = BTreeSet::new();
    for id in kept {
        for (p, d) in of_generation(db, id)?.0 {
            live.insert((p, d.kind));
        }
    }
    let snaps = snapshot_rows(db)?;
    let mut doomed: BTreeMap<(EntryPath, Kind), bool> = BTreeMap::new();
    for (p, k) in known(db)? {
        if !live.contains(&(p.clone(), k.clone())) {
            doomed.insert((p, k), true);
        }
    }
    for (p, rows) in &snaps {
        for (k, _) in rows {
            if !live.contains(&(p.clone(), k.clone())) {
                doomed.entry((p.clone(), k.clone())).or_insert(false);
            }
        }
    }
    let mut out = Vec::new();
    for ((p, kind), has_row) in &doomed {
        let b = backend::of(kind, tools);
        for (k, s) in snaps.get(p).into_iter().flatten() {
            if k != kind {
                continue;
            }
            out.push(GcDataset {
                path: p.clone(),
                kind: kind.clone(),
                what: "snapshot",
                location: s.location.clone(),
                bytes: b.snapshot_bytes(&state.root, p, &s.name)?,
                snapshot: Some(s.name.clone()),
            });
        }
        if !has_row {
            continue;
        }
        let detached = b.detached(&state.root, p, true)?;
        // A released dataset (left in place) is never destroyed: only what
        // sysgen keeps in its retention area.
        out.push(GcDataset {
            path: p.clone(),
            kind: kind.clone(),
            what: "dataset",
            location: detached.as_ref().map_or_else(String::new, |d| d.0.clone()),
            bytes: detached.as_ref().map_or(0, |d| d.1),
            snapshot: None,
        });
    }
    if dry_run {
        out.retain(|g| !g.location.is_empty());
        return Ok(out);
    }
    for g in &out {
        gc_one(state, tools, g)?;
    }
    out.retain(|g| !g.location.is_empty());
    Ok(out)
}

/// Destroys one item, then drops its record: a crash in between leaves
/// the record, and the next gc finds the item gone and drops it.
fn gc_one(state: &crate::State, tools: &Tools, g: &GcDataset) -> Result<(), Error> {
    let b = backend::of(&g.kind, tools);
    let rec = Recorder {
        db: &state.db,
        path: &g.path,
        kind: &g.kind,
        of: 0,
        now: 0,
    };
    match &g.snapshot {
        Some(name) => {
            b.destroy_snapshot(&state.root, &g.path, name)?;
            rec.snapshot_gone(name)
        }
        None => {
            b.destroy_detached(&state.root, &g.path, &g.location)?;
            rec.dataset_gone()
        }
    }
}
