//! Datasets: volumes of mutable data (a database, uploads, a home) whose
//! existence, place and attributes a generation declares, while their
//! contents belong to the host.
//!
//! A generation records its datasets in the [`Manifest`](crate::manifest::Manifest)
//! (path, type, zfs name, `snapshot`), and its tree holds the dataset's path
//! as a directory with the declared mode and owner, so the file steps apply
//! and `verify` checks those attributes like any directory's. This module
//! adds what only a dataset needs, as [`DatasetStep`]s at their places in the
//! plan (SPEC §4 "Order"): read-only snapshots before anything changes;
//! create / adopt / re-attach before the files inside; detach after them.
//!
//! Nothing here ever deletes a dataset's contents. A dataset that leaves the
//! configuration is moved aside on its own filesystem (btrfs and directory:
//! into `<parent>/.sysgen-data/<name>/detached`; zfs: renamed to
//! `<name>-sysgen-detached` and unmounted), and re-attached whole when a
//! generation that has it comes back. Only gc destroys it, and its
//! snapshots, once no remaining generation has it.
//!
//! Layout of the retention area of a btrfs or directory dataset `/p/name`
//! (on the same filesystem as the dataset, so every move is a rename):
//!
//! ```text
//! /p/.sysgen-data/name/detached              the dataset while no active generation has it
//! /p/.sysgen-data/name/snapshots/gen-N       taken when generation N was left
//! /p/.sysgen-data/name/snapshots/pre-rollback-N-T   its contents before `rollback --with-data`
//! /p/.sysgen-data/name/staging               a restore under way
//! ```

//! The code is split by what it does: [`plan`](self::plan) (pure),
//! [`precheck`](self::precheck) (reads the root), `apply` (runs one step),
//! `records` (the database tables), `gc`; and by kind of dataset:
//! [`backend`] has one type per kind behind one trait, so nothing else
//! asks which kind a dataset is. `kind` is the [`crate::kind::Kind`].

mod apply;
pub mod backend;
mod gc;
pub(crate) mod kind;
mod plan;
mod precheck;
mod records;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sysgen_schema::EntryPath;

use crate::Error;
pub use crate::host::{DatasetOptions, Tools};
pub use crate::sections::{Dataset, DatasetType as Kind, Datasets};

pub use apply::apply_step;
pub use gc::{GcDataset, gc_datasets};
pub use kind::DatasetKind;
pub use plan::{Context, DatasetPlan, Facts, Names, plan, undo};
pub use precheck::{precheck, strangers};
pub use records::{DatasetReport, SnapshotRow, report};

/// How a dataset that the target has and the root lacks at its path comes about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum How {
    /// Nothing there: create it.
    Create,
    /// It is there already: keep it and its contents as they are.
    Adopt,
    /// sysgen detached it when it left the configuration: move it back.
    Reattach,
}

/// The steps only datasets have. Each converges whatever it finds, so a
/// plan cut short anywhere can be run again from its first step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case", deny_unknown_fields)]
pub enum DatasetStep {
    /// A read-only snapshot `snap`, taken as generation `of` is left.
    Snapshot {
        path: EntryPath,
        kind: Kind,
        snap: String,
        of: u64,
    },
    Attach {
        path: EntryPath,
        kind: Kind,
        how: How,
        /// The identity of the dataset it brings back or adopts, when known:
        /// anything else found at the path is a stranger, never adopted.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expect: Option<String>,
    },
    /// `rollback --with-data`: the current contents become snapshot `pre`,
    /// then the dataset is made from snapshot `snap`.
    Restore {
        path: EntryPath,
        kind: Kind,
        snap: String,
        pre: String,
        of: u64,
    },
    /// Undoes an interrupted [`DatasetStep::Restore`] (`recover --rollback`):
    /// the restored contents become snapshot `aside`, `pre` comes back.
    Unrestore {
        path: EntryPath,
        kind: Kind,
        pre: String,
        aside: String,
        of: u64,
    },
    /// Moves the dataset away from its path, whole; `discard_if_empty`
    /// (undoing the switch that created it) removes it instead when it
    /// holds nothing.
    Detach {
        path: EntryPath,
        kind: Kind,
        discard_if_empty: bool,
        /// The identity of the dataset when the switch was planned, for the
        /// undo that brings it back.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// The dataset leaves the configuration but stays where it is: it was
    /// there before sysgen, or the target still has a directory there.
    Release { path: EntryPath, kind: Kind },
    /// `--with-data`, but no snapshot of the target generation exists.
    NoSnapshot { path: EntryPath, of: u64 },
}

impl DatasetStep {
    pub fn path(&self) -> &EntryPath {
        match self {
            DatasetStep::Snapshot { path, .. }
            | DatasetStep::Attach { path, .. }
            | DatasetStep::Restore { path, .. }
            | DatasetStep::Unrestore { path, .. }
            | DatasetStep::Detach { path, .. }
            | DatasetStep::Release { path, .. }
            | DatasetStep::NoSnapshot { path, .. } => path,
        }
    }
}

impl fmt::Display for DatasetStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatasetStep::Snapshot {
                path,
                kind,
                snap,
                of,
            } => write!(
                f,
                "snapshot dataset {path} ({kind}) as {}{} (leaving generation {of})",
                snapshot_location(path, kind, snap),
                // A directory has no snapshots of its own: sysgen copies it.
                if *kind == Kind::Directory {
                    ", a copy"
                } else {
                    ", read-only"
                }
            ),
            DatasetStep::Attach {
                path, kind, how, ..
            } => match how {
                How::Create => write!(f, "create dataset {path} ({kind})"),
                How::Adopt => write!(
                    f,
                    "adopt dataset {path} ({kind} already there; its contents are kept)"
                ),
                How::Reattach => write!(
                    f,
                    "re-attach dataset {path} ({kind}) from {}, contents intact",
                    detached_location(path, kind)
                ),
            },
            DatasetStep::Restore {
                path,
                kind,
                snap,
                pre,
                ..
            } => write!(
                f,
                "restore dataset {path} ({kind}) from snapshot {}; its current contents are kept as {}",
                snapshot_location(path, kind, snap),
                snapshot_location(path, kind, pre)
            ),
            DatasetStep::Unrestore {
                path,
                kind,
                pre,
                aside,
                ..
            } => write!(
                f,
                "put back dataset {path} ({kind}) from {}; the restored contents are kept as {}",
                snapshot_location(path, kind, pre),
                snapshot_location(path, kind, aside)
            ),
            DatasetStep::Detach {
                path,
                kind,
                discard_if_empty,
                ..
            } => {
                write!(
                    f,
                    "detach dataset {path} ({kind}) to {}, kept until gc deletes the last generation that has it",
                    detached_location(path, kind)
                )?;
                if *discard_if_empty {
                    write!(f, " (removed instead if still empty)")?;
                }
                Ok(())
            }
            DatasetStep::Release { path, kind } => write!(
                f,
                "stop managing dataset {path} ({kind}); it stays in place with its contents"
            ),
            DatasetStep::NoSnapshot { path, of } => write!(
                f,
                "keep the contents of dataset {path}: it has no snapshot of generation {of}"
            ),
        }
    }
}

/// The datasets of a configuration, checked: no dataset inside another
/// (their retention areas and moves would tangle), no zfs name twice.
/// `each` adds the dataset's directory to the tree.
pub fn from_spec(
    spec: &sysgen_schema::HostSpec,
    each: &mut dyn FnMut(&EntryPath, &sysgen_schema::DatasetSpec) -> Result<(), Error>,
) -> Result<Datasets, Error> {
    let mut out = BTreeMap::new();
    let mut names: BTreeMap<&str, &EntryPath> = BTreeMap::new();
    for (p, d) in &spec.datasets {
        let what = format!("{}: datasets.{p}", d.declared_in.display());
        if let Some(outer) = spec.datasets.keys().find(|q| p.is_under(q)) {
            return Err(Error::Invalid(format!(
                "{what}: lies inside the dataset {outer}; datasets may not nest, declare it elsewhere or as a directory"
            )));
        }
        let kind = match &d.kind {
            sysgen_schema::DatasetKind::Directory => Kind::Directory,
            sysgen_schema::DatasetKind::Btrfs => Kind::Btrfs,
            sysgen_schema::DatasetKind::Zfs { name } => {
                if let Some(other) = names.insert(name, p) {
                    return Err(Error::Invalid(format!(
                        "{what}: the zfs dataset {name} is also declared at {other}; give each path its own dataset"
                    )));
                }
                Kind::Zfs { name: name.clone() }
            }
        };
        each(p, d)?;
        out.insert(
            p.clone(),
            Dataset {
                kind,
                snapshot: d.snapshot,
            },
        );
    }
    Ok(Datasets(out))
}

/// One difference between two generations' datasets, for `sysgen diff`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DatasetChange {
    pub path: EntryPath,
    /// "added", "removed" or "changed".
    pub change: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<Dataset>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<Dataset>,
}

impl fmt::Display for DatasetChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |d: &Dataset| {
            format!(
                "dataset ({}{})",
                d.kind,
                if d.snapshot { ", snapshot" } else { "" }
            )
        };
        match (&self.old, &self.new) {
            (None, Some(n)) => write!(f, "+ {}  {}", self.path, show(n)),
            (Some(o), None) => write!(f, "- {}  {}", self.path, show(o)),
            (Some(o), Some(n)) => write!(f, "~ {}  {} -> {}", self.path, show(o), show(n)),
            (None, None) => write!(f, "  {}", self.path),
        }
    }
}

/// What differs between the datasets of two generations.
pub fn diff(old: &Datasets, new: &Datasets) -> Vec<DatasetChange> {
    crate::sections::keyed_changes(&old.0, &new.0)
        .map(|(p, change, o, n)| DatasetChange {
            path: p.clone(),
            change,
            old: o.cloned(),
            new: n.cloned(),
        })
        .collect()
}

// ---- names and places ----

const AREA: &str = ".sysgen-data";

/// The retention area of a btrfs or directory dataset: next to it, on the
/// same filesystem, so detaching and restoring are renames.
pub fn keep_dir(p: &EntryPath) -> Result<EntryPath, Error> {
    let area = match p.parent() {
        Some(parent) => parent.join(AREA),
        None => EntryPath::top(AREA),
    };
    area.and_then(|a| a.join(p.file_name()))
        .map_err(|e| Error::Internal(format!("{p}: its retention area: {e}")))
}

pub(crate) fn keep_path(p: &EntryPath, rel: &[&str]) -> Result<EntryPath, Error> {
    let mut out = keep_dir(p)?;
    for c in rel {
        out = out
            .join(c)
            .map_err(|e| Error::Internal(format!("{p}: its retention area: {e}")))?;
    }
    Ok(out)
}

/// The zfs name a detached dataset has.
pub fn detached_zfs_name(name: &str) -> String {
    format!("{name}-sysgen-detached")
}

pub(super) fn snapshot_location(p: &EntryPath, kind: &Kind, snap: &str) -> String {
    match kind {
        Kind::Zfs { name } => format!("{name}@sysgen-{snap}"),
        _ => keep_path(p, &["snapshots", snap]).map_or_else(|_| snap.to_owned(), |s| s.to_string()),
    }
}

fn detached_location(p: &EntryPath, kind: &Kind) -> String {
    match kind {
        Kind::Zfs { name } => format!("{} (unmounted)", detached_zfs_name(name)),
        _ => keep_path(p, &["detached"])
            .map_or_else(|_| "its retention area".into(), |s| s.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> EntryPath {
        EntryPath::parse(s).unwrap()
    }

    #[test]
    fn keep_area_is_next_to_the_dataset() {
        assert_eq!(
            keep_path(&p("/srv/data"), &["detached"]).unwrap(),
            p("/srv/.sysgen-data/data/detached")
        );
        assert_eq!(keep_dir(&p("/data")).unwrap(), p("/.sysgen-data/data"));
    }
}
