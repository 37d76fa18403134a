//! The database records of datasets (migration 4): `datasets`, every
//! dataset sysgen attached, with its kind; `dataset_snapshots`, every
//! snapshot taken. Read for the plan (names taken, snapshots to restore),
//! `status` and gc; written by the steps as they go ([`Recorder`]).

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::params;
use serde::Serialize;
use sysgen_schema::EntryPath;

use super::{Datasets, Kind, Tools, backend};
use crate::db::Db;
use crate::error::sql;
use crate::{Error, GenerationId};

/// A kind as its column holds it (what `known` reads back).
fn kind_json(kind: &Kind) -> Result<String, Error> {
    serde_json::to_string(kind).map_err(|e| Error::Internal(format!("encoding {kind}: {e}")))
}

/// What one dataset step records as it goes, each change right after the
/// change on the root it stands for.
pub(crate) struct Recorder<'a> {
    pub db: &'a Db,
    pub path: &'a EntryPath,
    pub kind: &'a Kind,
    /// The generation a snapshot is recorded for.
    pub of: u64,
    pub now: i64,
    /// Where a crash test aborts (`sysgen_store::fault`).
    pub fault: sysgen_store::FaultPoint,
}

impl Recorder<'_> {
    /// Aborts here if `point` is the fault point set.
    pub(crate) fn hit(&self, point: &'static str) {
        self.fault.hit(point);
    }

    pub(crate) fn snapshot_taken(&self, name: &str, why: &str) -> Result<(), Error> {
        self.db
            .conn()
            .execute(
                "INSERT OR IGNORE INTO dataset_snapshots (path, name, kind, generation, why, taken_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![self.path.as_str(), name, kind_json(self.kind)?, self.of as i64, why, self.now],
            )
            .map_err(sql)?;
        Ok(())
    }

    pub(crate) fn snapshot_gone(&self, name: &str) -> Result<(), Error> {
        self.db
            .conn()
            .execute(
                "DELETE FROM dataset_snapshots WHERE path = ?1 AND name = ?2",
                params![self.path.as_str(), name],
            )
            .map_err(sql)?;
        Ok(())
    }

    pub(crate) fn attached(&self) -> Result<(), Error> {
        self.db
            .conn()
            .execute(
                "INSERT OR REPLACE INTO datasets (path, kind, since) VALUES (?1, ?2, COALESCE((SELECT since FROM datasets WHERE path = ?1), ?3))",
                params![self.path.as_str(), kind_json(self.kind)?, self.now],
            )
            .map_err(sql)?;
        Ok(())
    }

    pub(crate) fn dataset_gone(&self) -> Result<(), Error> {
        self.db
            .conn()
            .execute(
                "DELETE FROM datasets WHERE path = ?1",
                params![self.path.as_str()],
            )
            .map_err(sql)?;
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SnapshotRow {
    pub name: String,
    /// The generation that was being left when it was taken.
    pub generation: u64,
    /// "switch", "pre-rollback" or "undone restore".
    pub why: String,
    pub taken_at: i64,
    /// Where it is: a path on the root, or a zfs snapshot name.
    pub location: String,
}

pub(super) fn snapshot_rows(
    db: &Db,
) -> Result<BTreeMap<EntryPath, Vec<(Kind, SnapshotRow)>>, Error> {
    let mut st = db
        .conn()
        .prepare_cached("SELECT path, name, kind, generation, why, taken_at FROM dataset_snapshots ORDER BY taken_at, name")
        .map_err(sql)?;
    let rows = st
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })
        .map_err(sql)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql)?;
    let mut out: BTreeMap<EntryPath, Vec<(Kind, SnapshotRow)>> = BTreeMap::new();
    for (p, name, kind, generation, why, taken_at) in rows {
        let path = EntryPath::parse(&p)
            .map_err(|e| Error::Corrupt(format!("dataset snapshot path {p:?}: {e}")))?;
        let kind: Kind = serde_json::from_str(&kind)
            .map_err(|e| Error::Corrupt(format!("dataset snapshot {p}: {e}")))?;
        let location = super::snapshot_location(&path, &kind, &name);
        out.entry(path).or_default().push((
            kind,
            SnapshotRow {
                name,
                generation: generation as u64,
                why,
                taken_at,
                location,
            },
        ));
    }
    Ok(out)
}

/// Every dataset sysgen attached at some point, with the kind it had.
pub fn known(db: &Db) -> Result<BTreeMap<EntryPath, Kind>, Error> {
    db.json_by_path("SELECT path, kind FROM datasets", "dataset")
}

/// Snapshot names taken per path, so new ones never collide.
pub fn taken(db: &Db) -> Result<BTreeMap<EntryPath, BTreeSet<String>>, Error> {
    Ok(snapshot_rows(db)?
        .into_iter()
        .map(|(p, v)| (p, v.into_iter().map(|(_, s)| s.name).collect()))
        .collect())
}

/// Orders the snapshots taken when one generation was left: the greatest
/// is the newest (`gen-N.3` after `gen-N.2` after `gen-N`, also when taken
/// within the same second), the one `rollback --with-data` restores and gc
/// keeps.
pub(super) fn newest(s: &SnapshotRow) -> (i64, usize, &str) {
    (s.taken_at, s.name.len(), &s.name)
}

/// For `rollback --with-data` to generation `to`: per path, the newest
/// snapshot taken when `to` was left, of the kind the target declares.
pub fn restores(db: &Db, to: u64, target: &Datasets) -> Result<BTreeMap<EntryPath, String>, Error> {
    let mut out = BTreeMap::new();
    for (p, rows) in snapshot_rows(db)? {
        let Some(d) = target.0.get(&p) else { continue };
        if let Some((_, s)) = rows
            .iter()
            .filter(|(k, s)| *k == d.kind && s.generation == to && s.why == "switch")
            .max_by_key(|(_, s)| newest(s))
        {
            out.insert(p, s.name.clone());
        }
    }
    Ok(out)
}

/// The datasets of a generation (from its manifest).
pub fn of_generation(db: &Db, id: &GenerationId) -> Result<Datasets, Error> {
    Ok(db
        .manifest(id)?
        .map(|(m, _)| m.datasets)
        .unwrap_or_default())
}

#[derive(Debug, Clone, Serialize)]
pub struct DatasetReport {
    pub path: EntryPath,
    pub kind: Kind,
    /// "attached" (the active generation has it), "detached" (kept in the
    /// retention area), or "released" (left in place, no longer managed).
    pub state: &'static str,
    /// Where its data is now.
    pub location: String,
    /// The remaining generations that have it.
    pub generations: Vec<u64>,
    pub snapshots: Vec<SnapshotRow>,
}

/// Every dataset sysgen knows: those of the active generation and those
/// it keeps for other generations, with their snapshots.
pub fn report(state: &crate::State, tools: &Tools) -> Result<Vec<DatasetReport>, Error> {
    let db = &state.db;
    let active = db.active()?.map(|a| a.id);
    let gens: Vec<_> = db
        .generations()?
        .into_iter()
        .filter(|g| g.collected_at.is_none())
        .collect();
    let mut having: BTreeMap<(EntryPath, Kind), Vec<u64>> = BTreeMap::new();
    let mut attached = BTreeSet::new();
    for g in &gens {
        for (p, d) in of_generation(db, &g.id)?.0 {
            if Some(g.id) == active {
                attached.insert((p.clone(), d.kind.clone()));
            }
            having.entry((p, d.kind)).or_default().push(g.number);
        }
    }
    let mut snaps = snapshot_rows(db)?;
    let mut all: BTreeMap<EntryPath, Kind> = known(db)?;
    for (p, k) in attached.iter().chain(having.keys()) {
        all.entry(p.clone()).or_insert_with(|| k.clone());
    }
    let mut out = Vec::new();
    for (p, kind) in all {
        let key = (p.clone(), kind.clone());
        // Where the data is, not where the database says it should be: a
        // dataset of the active generation whose data is still kept aside
        // (a stranger is at its path; `verify` names it) is detached.
        let detached = backend::of(&kind, tools).detached(&state.root, &p, false)?;
        let (st, location) = match detached {
            Some((d, _)) => ("detached", d),
            None if attached.contains(&key) => (
                "attached",
                backend::host(&state.root, &p).display().to_string(),
            ),
            None => (
                "released",
                backend::host(&state.root, &p).display().to_string(),
            ),
        };
        out.push(DatasetReport {
            snapshots: snaps
                .remove(&p)
                .unwrap_or_default()
                .into_iter()
                .filter(|(k, _)| *k == kind)
                .map(|(_, s)| s)
                .collect(),
            generations: having.remove(&key).unwrap_or_default(),
            path: p,
            kind,
            state: st,
            location,
        });
    }
    Ok(out)
}
