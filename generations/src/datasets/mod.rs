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

pub mod backend;
pub(crate) mod kind;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sysgen_schema::EntryPath;

use crate::Error;
use crate::db::Origin;
use crate::manifest::Change;
use crate::rootfs::RootDir;

pub use backend::{DatasetReport, GcDataset, apply_step, gc_datasets, report};
pub use kind::DatasetKind;

/// What backs a dataset.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Kind {
    /// A plain directory: works on every filesystem.
    Directory,
    /// A btrfs subvolume.
    Btrfs,
    /// A zfs dataset, mounted at the path.
    Zfs { name: String },
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Directory => write!(f, "directory"),
            Kind::Btrfs => write!(f, "btrfs subvolume"),
            Kind::Zfs { name } => write!(f, "zfs dataset {name}"),
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One dataset of a generation. Its mode and owner live in the tree, as
/// the directory at its path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    pub kind: Kind,
    /// Take a read-only snapshot whenever a switch leaves a generation that has it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub snapshot: bool,
}

/// A generation's datasets, by path. Empty for generations without any, so
/// their manifests (and ids) are those of a sysgen without datasets.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Datasets(pub BTreeMap<EntryPath, Dataset>);

impl Datasets {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Where the external tools are; `None`: not installed. The CLI finds them
/// (the library never reads `PATH`).
#[derive(Clone, Debug, Default)]
pub struct Tools {
    pub btrfs: Option<PathBuf>,
    pub zfs: Option<PathBuf>,
}

/// What a switch needs to know about datasets beyond the two generations.
#[derive(Clone, Debug, Default)]
pub struct DatasetOptions {
    pub tools: Tools,
    /// `rollback --with-data`: restore the target generation's snapshots.
    pub with_data: bool,
}

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
            DatasetStep::Attach { path, kind, how } => match how {
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
    crate::keyed_changes(&old.0, &new.0)
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
        .map_err(|e| Error::Invalid(format!("{p}: {e}")))
}

pub(crate) fn keep_path(p: &EntryPath, rel: &[&str]) -> Result<EntryPath, Error> {
    let mut out = keep_dir(p)?;
    for c in rel {
        out = out
            .join(c)
            .map_err(|e| Error::Invalid(format!("{p}: {e}")))?;
    }
    Ok(out)
}

/// The zfs name a detached dataset has.
pub fn detached_zfs_name(name: &str) -> String {
    format!("{name}-sysgen-detached")
}

fn snapshot_location(p: &EntryPath, kind: &Kind, snap: &str) -> String {
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

// ---- precheck ----

/// What the precheck learned, for the plan.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// How each dataset the target has comes about (absent: it is in both
    /// generations already).
    pub how: BTreeMap<EntryPath, How>,
    /// Datasets of the active generation that are not on the root: nothing
    /// to snapshot.
    pub missing: BTreeSet<EntryPath>,
}

/// The datasets a switch from `old` to `new` adds (or re-types) and those it drops.
fn arriving<'a>(old: &'a Datasets, new: &'a Datasets) -> Vec<(&'a EntryPath, &'a Dataset)> {
    new.0
        .iter()
        .filter(|(p, d)| old.0.get(*p).is_none_or(|o| o.kind != d.kind))
        .collect()
}

fn leaving<'a>(old: &'a Datasets, new: &'a Datasets) -> Vec<(&'a EntryPath, &'a Dataset)> {
    old.0
        .iter()
        .filter(|(p, d)| new.0.get(*p).is_none_or(|n| n.kind != d.kind))
        .collect()
}

/// A dataset that leaves stays in place (released) when sysgen did not
/// create it (the ledger records what was there) or when the target still
/// has a directory at its path; otherwise it is detached.
fn released(p: &EntryPath, changes: &[Change], ledger: &BTreeMap<EntryPath, Origin>) -> bool {
    ledger.contains_key(p)
        || !changes
            .iter()
            .any(|c| matches!(c, Change::Removed(q, _) if q == p))
}

pub(crate) fn need_tool<'a>(
    tools: &'a Tools,
    kind: &Kind,
    p: &EntryPath,
) -> Result<Option<&'a std::path::Path>, String> {
    match kind {
        Kind::Directory => Ok(None),
        Kind::Btrfs => tools.btrfs.as_deref().map(Some).ok_or_else(|| {
            format!("{p}: btrfs datasets need the `btrfs` command, which is not installed; install btrfs-progs (or pass --btrfs PATH)")
        }),
        Kind::Zfs { .. } => tools.zfs.as_deref().map(Some).ok_or_else(|| {
            format!("{p}: zfs datasets need the `zfs` command, which is not installed; install zfsutils-linux (or pass --zfs PATH)")
        }),
    }
}

/// Inputs of [`precheck`] and [`plan`] besides the two generations.
pub struct Context<'a> {
    pub changes: &'a [Change],
    pub ledger: &'a BTreeMap<EntryPath, Origin>,
    /// The kind each dataset sysgen knows had (it may be detached now).
    pub known: &'a BTreeMap<EntryPath, Kind>,
    pub opts: &'a DatasetOptions,
}

/// Reads the live root (and asks the tools, read-only) about every dataset
/// the switch touches. Returns what the plan needs, and every reason not to
/// switch, each naming the path and what to do.
pub fn precheck(
    root: &RootDir,
    old: &Datasets,
    new: &Datasets,
    restores: &BTreeMap<EntryPath, String>,
    cx: &Context<'_>,
) -> Result<(Facts, Vec<String>), Error> {
    let mut facts = Facts::default();
    let mut conflicts = Vec::new();
    let mounts = backend::mount_points();
    for (p, d) in arriving(old, new) {
        if let Some(o) = old.0.get(p) {
            conflicts.push(format!(
                "{p}: the dataset changes from a {} to a {}; sysgen does not convert datasets: declare the new one at another path and move the data yourself",
                o.kind, d.kind
            ));
            continue;
        }
        let tool = match need_tool(&cx.opts.tools, &d.kind, p) {
            Ok(t) => t,
            Err(e) => {
                conflicts.push(e);
                continue;
            }
        };
        match backend::arrival(root, p, &d.kind, tool, cx.known.get(p))? {
            Ok(how) => {
                facts.how.insert(p.clone(), how);
            }
            Err(why) => conflicts.push(why),
        }
    }
    for (p, d) in leaving(old, new) {
        if released(p, cx.changes, cx.ledger) {
            continue;
        }
        if let Err(e) = need_tool(&cx.opts.tools, &d.kind, p) {
            conflicts.push(e);
            continue;
        }
        if !matches!(d.kind, Kind::Zfs { .. }) && backend::is_mount_point(root, &mounts, p) {
            conflicts.push(format!(
                "{p}: something is mounted there, so the dataset cannot be moved aside (busy mount); unmount it first, then switch again"
            ));
        }
    }
    for (p, d) in &old.0 {
        let snap = d.snapshot || new.0.get(p).is_some_and(|n| n.snapshot && n.kind == d.kind);
        if !snap {
            continue;
        }
        if let Err(e) = need_tool(&cx.opts.tools, &d.kind, p) {
            conflicts.push(e);
            continue;
        }
        if !backend::present(root, p, &d.kind, &cx.opts.tools)? {
            facts.missing.insert(p.clone());
        }
    }
    if cx.opts.with_data {
        for (p, d) in &new.0 {
            let Some(snap_name) = restores.get(p) else {
                continue;
            };
            match &d.kind {
                Kind::Zfs { name } => match need_tool(&cx.opts.tools, &d.kind, p) {
                    Err(e) => conflicts.push(e),
                    Ok(tool) => {
                        // A detached dataset's snapshots went with it.
                        if let Some(zfs) = tool
                            && !backend::zfs_has_snapshot(zfs, name, snap_name)?
                            && !backend::zfs_has_snapshot(zfs, &detached_zfs_name(name), snap_name)?
                        {
                            conflicts.push(format!(
                                "{p}: its snapshot {name}@sysgen-{snap_name} is recorded but missing; roll back without --with-data"
                            ));
                        }
                    }
                },
                _ if backend::is_mount_point(root, &mounts, p) => conflicts.push(format!(
                    "{p}: something is mounted there, so its contents cannot be swapped for the snapshot (busy mount); unmount it first"
                )),
                _ => {
                    if let Err(e) = need_tool(&cx.opts.tools, &d.kind, p) {
                        conflicts.push(e);
                    }
                    let snap = keep_path(p, &["snapshots", snap_name])?;
                    if !matches!(root.inspect(&snap)?, crate::rootfs::Live::Dir(_)) {
                        conflicts.push(format!(
                            "{p}: its snapshot {snap} is recorded but missing on the root; roll back without --with-data"
                        ));
                    }
                }
            }
        }
    }
    Ok((facts, conflicts))
}

// ---- plan ----

/// The dataset steps of a switch, by their places in the plan.
#[derive(Clone, Debug, Default)]
pub struct DatasetPlan {
    /// Position 1: snapshots, before anything changes.
    pub snapshots: Vec<DatasetStep>,
    /// Position 4: create / adopt / re-attach (and restores), before the files.
    pub attach: Vec<DatasetStep>,
    /// Position 6: detach or release, after the files.
    pub detach: Vec<DatasetStep>,
    /// Paths whose removal the file steps must not plan: the dataset's
    /// detach moves the directory away instead (an `rmdir` of an empty
    /// btrfs subvolume would delete it).
    pub not_removed: BTreeSet<EntryPath>,
}

/// Inputs that name things: generations and existing snapshot names.
pub struct Names<'a> {
    /// The generation being left (`None`: the first switch).
    pub from: Option<u64>,
    /// The target generation.
    pub to: u64,
    /// Snapshot names already taken, per path.
    pub taken: &'a BTreeMap<EntryPath, BTreeSet<String>>,
    /// For `--with-data`: per path, the snapshot of the target generation.
    pub restores: &'a BTreeMap<EntryPath, String>,
    pub now: i64,
}

/// Plans the dataset steps of a switch from `old` to `new`. Pure.
pub fn plan(
    old: &Datasets,
    new: &Datasets,
    facts: &Facts,
    cx: &Context<'_>,
    names: &Names<'_>,
) -> DatasetPlan {
    let mut out = DatasetPlan::default();
    if let Some(from) = names.from {
        for (p, d) in &old.0 {
            let snap = d.snapshot || new.0.get(p).is_some_and(|n| n.snapshot && n.kind == d.kind);
            if !snap || facts.missing.contains(p) {
                continue;
            }
            out.snapshots.push(DatasetStep::Snapshot {
                path: p.clone(),
                kind: d.kind.clone(),
                snap: unique(names.taken.get(p), &format!("gen-{from}")),
                of: from,
            });
        }
    }
    for (p, d) in arriving(old, new) {
        out.attach.push(DatasetStep::Attach {
            path: p.clone(),
            kind: d.kind.clone(),
            how: facts.how.get(p).copied().unwrap_or(How::Create),
        });
    }
    if cx.opts.with_data {
        for (p, d) in &new.0 {
            match names.restores.get(p) {
                Some(snap) => out.attach.push(DatasetStep::Restore {
                    path: p.clone(),
                    kind: d.kind.clone(),
                    snap: snap.clone(),
                    pre: unique(
                        names.taken.get(p),
                        &format!("pre-rollback-{}-{}", names.from.unwrap_or(0), names.now),
                    ),
                    of: names.from.unwrap_or(0),
                }),
                None => out.attach.push(DatasetStep::NoSnapshot {
                    path: p.clone(),
                    of: names.to,
                }),
            }
        }
    }
    for (p, d) in leaving(old, new) {
        if released(p, cx.changes, cx.ledger) {
            out.detach.push(DatasetStep::Release {
                path: p.clone(),
                kind: d.kind.clone(),
            });
        } else {
            not_removed(&mut out, p, cx.ledger);
            out.detach.push(DatasetStep::Detach {
                path: p.clone(),
                kind: d.kind.clone(),
                discard_if_empty: false,
            });
        }
    }
    out
}

/// A detached dataset's path is not removed by the file steps, and
/// neither are the directories sysgen created above it: its retention area
/// lives in its parent, so they stay (an `rmdir` would only fail and
/// report them as kept).
fn not_removed(out: &mut DatasetPlan, p: &EntryPath, ledger: &BTreeMap<EntryPath, Origin>) {
    out.not_removed.insert(p.clone());
    for a in p.ancestors() {
        if !ledger.contains_key(&a) {
            out.not_removed.insert(a);
        }
    }
}

/// `base`, or `base.2`, `base.3`… when a snapshot of that name exists.
fn unique(taken: Option<&BTreeSet<String>>, base: &str) -> String {
    let Some(taken) = taken else {
        return base.to_owned();
    };
    if !taken.contains(base) {
        return base.to_owned();
    }
    (2..)
        .map(|i| format!("{base}.{i}"))
        .find(|n| !taken.contains(n))
        .unwrap_or_else(|| base.to_owned())
}

/// The plan that undoes an interrupted switch's dataset steps, for
/// `recover --rollback`: datasets it attached are detached again (removed
/// if it created them and they are still empty), datasets it detached come
/// back, restores are put back. Snapshots it took stay: they lose nothing.
pub fn undo(
    switch_steps: &[DatasetStep],
    old: &Datasets,
    new: &Datasets,
    facts: &Facts,
    cx: &Context<'_>,
    names: &Names<'_>,
) -> DatasetPlan {
    let mut out = DatasetPlan::default();
    let created: BTreeSet<&EntryPath> = switch_steps
        .iter()
        .filter_map(|s| match s {
            DatasetStep::Attach {
                path,
                how: How::Create,
                ..
            } => Some(path),
            _ => None,
        })
        .collect();
    // `old` is the interrupted switch's target, `new` the generation it left.
    for (p, d) in arriving(old, new) {
        out.attach.push(DatasetStep::Attach {
            path: p.clone(),
            kind: d.kind.clone(),
            // Detached by the switch, or still in place (released, or the
            // switch stopped before its detach).
            how: facts.how.get(p).copied().unwrap_or(How::Reattach),
        });
    }
    for s in switch_steps {
        if let DatasetStep::Restore {
            path,
            kind,
            pre,
            of,
            ..
        } = s
        {
            out.attach.push(DatasetStep::Unrestore {
                path: path.clone(),
                kind: kind.clone(),
                pre: pre.clone(),
                aside: unique(
                    names.taken.get(path),
                    &format!("undone-{}-{}", of, names.now),
                ),
                of: *of,
            });
        }
    }
    for (p, d) in leaving(old, new) {
        if released(p, cx.changes, cx.ledger) {
            out.detach.push(DatasetStep::Release {
                path: p.clone(),
                kind: d.kind.clone(),
            });
        } else {
            // A dataset the undone switch created may go entirely, and the
            // directories created for it with it.
            if created.contains(p) {
                out.not_removed.insert(p.clone());
            } else {
                not_removed(&mut out, p, cx.ledger);
            }
            out.detach.push(DatasetStep::Detach {
                path: p.clone(),
                kind: d.kind.clone(),
                discard_if_empty: created.contains(p),
            });
        }
    }
    out
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

    #[test]
    fn snapshot_names_never_collide() {
        let taken: BTreeSet<String> = ["gen-1".to_owned(), "gen-1.2".to_owned()].into();
        assert_eq!(unique(Some(&taken), "gen-1"), "gen-1.3");
        assert_eq!(unique(Some(&taken), "gen-2"), "gen-2");
        assert_eq!(unique(None, "gen-1"), "gen-1");
    }

    #[test]
    fn a_dataset_that_leaves_is_detached_unless_sysgen_did_not_create_it() {
        let ds = |snapshot| Dataset {
            kind: Kind::Btrfs,
            snapshot,
        };
        let old = Datasets([(p("/a"), ds(true)), (p("/b"), ds(false))].into());
        let new = Datasets::default();
        let dir = crate::manifest::Entry::Dir {
            mode: None,
            uid: None,
            gid: None,
        };
        let changes = vec![
            Change::Removed(p("/a"), dir.clone()),
            Change::Removed(p("/b"), dir),
        ];
        let mut ledger = BTreeMap::new();
        ledger.insert(
            p("/b"),
            Origin::Dir {
                mode: 0o755,
                uid: 0,
                gid: 0,
            },
        );
        let opts = DatasetOptions::default();
        let known = BTreeMap::new();
        let cx = Context {
            changes: &changes,
            ledger: &ledger,
            known: &known,
            opts: &opts,
        };
        let taken = BTreeMap::new();
        let restores = BTreeMap::new();
        let names = Names {
            from: Some(4),
            to: 5,
            taken: &taken,
            restores: &restores,
            now: 0,
        };
        let dp = plan(&old, &new, &Facts::default(), &cx, &names);
        let shown: Vec<String> = dp
            .snapshots
            .iter()
            .chain(&dp.detach)
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            shown,
            [
                "snapshot dataset /a (btrfs subvolume) as /.sysgen-data/a/snapshots/gen-4, read-only (leaving generation 4)",
                "detach dataset /a (btrfs subvolume) to /.sysgen-data/a/detached, kept until gc deletes the last generation that has it",
                "stop managing dataset /b (btrfs subvolume); it stays in place with its contents",
            ]
        );
        assert_eq!(dp.not_removed, [p("/a")].into());
        // A directory sysgen created above a detached dataset stays: the
        // retention area is in it.
        let deep = Datasets([(p("/srv/a"), ds(false))].into());
        let cx = Context {
            changes: &[],
            ledger: &BTreeMap::new(),
            known: &known,
            opts: &opts,
        };
        let changes = vec![
            Change::Removed(
                p("/srv"),
                crate::manifest::Entry::Dir {
                    mode: None,
                    uid: None,
                    gid: None,
                },
            ),
            Change::Removed(
                p("/srv/a"),
                crate::manifest::Entry::Dir {
                    mode: None,
                    uid: None,
                    gid: None,
                },
            ),
        ];
        let cx = Context {
            changes: &changes,
            ..cx
        };
        let dp = plan(&deep, &new, &Facts::default(), &cx, &names);
        assert_eq!(dp.not_removed, [p("/srv"), p("/srv/a")].into());
    }
}
