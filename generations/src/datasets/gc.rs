//! What gc destroys of datasets: the detached data and the snapshots of
//! datasets that no kept generation has; of the others, the snapshots no
//! kept generation needs (see [`doomed_snapshot`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sysgen_schema::EntryPath;

use super::records::{Recorder, SnapshotRow, known, newest, of_generation, snapshot_rows};
use super::{Kind, Tools, backend};
use crate::{Error, GenerationId};

/// How long gc keeps a snapshot that no kept generation needs but that
/// holds data someone may still want by hand: a `pre-rollback` or `undone`
/// snapshot (the contents a rollback or its undo replaced), or a `gen-N.k`
/// superseded by a newer snapshot of the same kept generation. Counted
/// from the snapshot's `taken_at` to gc's clock: 7 days.
pub const SNAPSHOT_GRACE_SECS: i64 = 7 * 24 * 60 * 60;

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
/// has, and the snapshots of the others that no kept generation needs
/// (as of `now`); destroys them unless `dry_run`. Called after gc committed
/// the deletion of the other generations: a crash leaves the records, so
/// the next gc finishes the work.
pub fn gc_datasets(
    state: &crate::State,
    tools: &Tools,
    kept: &[GenerationId],
    now: i64,
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
            out.push(snapshot_gone(state, tools, p, kind, s)?);
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
    let kept_numbers: BTreeSet<u64> = db
        .generations()?
        .into_iter()
        .filter(|g| g.collected_at.is_none() && kept.contains(&g.id))
        .map(|g| g.number)
        .collect();
    for (p, rows) in &snaps {
        let needed = needed(rows, &kept_numbers);
        for (kind, s) in rows {
            // Those of a dataset no kept generation has went above.
            if !live.contains(&(p.clone(), kind.clone()))
                || !doomed_snapshot(
                    s,
                    needed.contains(&(kind, s.generation, &*s.name)),
                    &kept_numbers,
                    now,
                )
            {
                continue;
            }
            out.push(snapshot_gone(state, tools, p, kind, s)?);
        }
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

/// A snapshot gc destroys, with what it frees.
fn snapshot_gone(
    state: &crate::State,
    tools: &Tools,
    p: &EntryPath,
    kind: &Kind,
    s: &SnapshotRow,
) -> Result<GcDataset, Error> {
    Ok(GcDataset {
        path: p.clone(),
        kind: kind.clone(),
        what: "snapshot",
        location: s.location.clone(),
        bytes: backend::of(kind, tools).snapshot_bytes(&state.root, p, &s.name)?,
        snapshot: Some(s.name.clone()),
    })
}

/// Per kind, the snapshot each kept generation's `rollback --with-data`
/// restores (the newest taken when it was left): (kind, generation, name).
fn needed<'a>(
    rows: &'a [(Kind, SnapshotRow)],
    kept: &BTreeSet<u64>,
) -> BTreeSet<(&'a Kind, u64, &'a str)> {
    let mut best: BTreeMap<(&Kind, u64), &SnapshotRow> = BTreeMap::new();
    for (k, s) in rows {
        if s.why != "switch" || !kept.contains(&s.generation) {
            continue;
        }
        let b = best.entry((k, s.generation)).or_insert(s);
        if newest(s) > newest(b) {
            *b = s;
        }
    }
    best.into_iter()
        .map(|((k, n), s)| (k, n, s.name.as_str()))
        .collect()
}

/// Whether gc destroys snapshot `s` of a dataset that kept generations
/// still have. A `gen-N` belongs to generation N (it is what `rollback
/// --with-data` to N restores): it goes with N, and never while N is kept
/// and it is N's newest (`needed`). What no generation restores (an older
/// `gen-N.k` of a kept N, `pre-rollback`, `undone`) goes after the grace.
/// A snapshot of a reason sysgen does not know is kept.
fn doomed_snapshot(s: &SnapshotRow, needed: bool, kept: &BTreeSet<u64>, now: i64) -> bool {
    let expired = now.saturating_sub(s.taken_at) >= SNAPSHOT_GRACE_SECS;
    match s.why.as_str() {
        "switch" => !kept.contains(&s.generation) || (!needed && expired),
        "pre-rollback" | "undone restore" => expired,
        _ => false,
    }
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
        fault: state.store.fault_point(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, generation: u64, why: &str, taken_at: i64) -> (Kind, SnapshotRow) {
        (
            Kind::Directory,
            SnapshotRow {
                name: name.into(),
                generation,
                why: why.into(),
                taken_at,
                location: String::new(),
            },
        )
    }

    /// Which of `rows` gc destroys at `now` while generations `kept` stay.
    fn doomed(rows: &[(Kind, SnapshotRow)], kept: &[u64], now: i64) -> Vec<String> {
        let kept: BTreeSet<u64> = kept.iter().copied().collect();
        let needed = needed(rows, &kept);
        rows.iter()
            .filter(|(k, s)| {
                doomed_snapshot(s, needed.contains(&(k, s.generation, &*s.name)), &kept, now)
            })
            .map(|(_, s)| s.name.clone())
            .collect()
    }

    #[test]
    fn a_generation_snapshot_goes_with_its_generation() {
        let rows = [
            row("gen-1", 1, "switch", 100),
            row("gen-2", 2, "switch", 200),
            row("gen-3", 3, "switch", 300),
        ];
        assert_eq!(doomed(&rows, &[2, 3, 4], 301), ["gen-1"]);
        assert!(doomed(&rows, &[1, 2, 3], 301 + SNAPSHOT_GRACE_SECS).is_empty());
    }

    #[test]
    fn only_the_newest_snapshot_of_a_kept_generation_is_needed() {
        let rows = [
            row("gen-1", 1, "switch", 100),
            row("gen-1.2", 1, "switch", 100),
            row("gen-1.10", 1, "switch", 100),
            row("gen-1.9", 1, "switch", 100),
        ];
        assert!(doomed(&rows, &[1], 100 + SNAPSHOT_GRACE_SECS - 1).is_empty());
        assert_eq!(
            doomed(&rows, &[1], 100 + SNAPSHOT_GRACE_SECS),
            ["gen-1", "gen-1.2", "gen-1.9"]
        );
    }

    #[test]
    fn rollback_leftovers_go_after_the_grace() {
        let rows = [
            row("pre-rollback-2-100", 2, "pre-rollback", 100),
            row("undone-1-200", 1, "undone restore", 200),
            row("mystery", 9, "something newer", 0),
        ];
        assert!(doomed(&rows, &[1, 2], 100 + SNAPSHOT_GRACE_SECS - 1).is_empty());
        assert_eq!(
            doomed(&rows, &[1, 2], 100 + SNAPSHOT_GRACE_SECS),
            ["pre-rollback-2-100"]
        );
        assert_eq!(
            doomed(&rows, &[], 200 + SNAPSHOT_GRACE_SECS),
            ["pre-rollback-2-100", "undone-1-200"]
        );
    }
}
