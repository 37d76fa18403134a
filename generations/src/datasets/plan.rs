//! The dataset steps of a switch, planned from the two generations and
//! what the precheck found. Pure: nothing here reads the root or the
//! database.

use std::collections::{BTreeMap, BTreeSet};

use sysgen_schema::EntryPath;

use super::{Dataset, DatasetOptions, DatasetStep, Datasets, How, Kind};
use crate::db::Origin;
use crate::manifest::Change;

/// What the precheck learned, for the plan.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// How each dataset the target has comes about (absent: it is in both
    /// generations already).
    pub how: BTreeMap<EntryPath, How>,
    /// Datasets of the active generation that are not on the root: nothing
    /// to snapshot.
    pub missing: BTreeSet<EntryPath>,
    /// The identity of what each arriving dataset's attach must find: what
    /// is adopted, or the detached data re-attached.
    pub expect: BTreeMap<EntryPath, String>,
    /// The identity of each leaving dataset, recorded in its detach.
    pub ids: BTreeMap<EntryPath, String>,
}

/// The datasets a switch from `old` to `new` adds (or re-types) and those it drops.
pub(super) fn arriving<'a>(
    old: &'a Datasets,
    new: &'a Datasets,
) -> Vec<(&'a EntryPath, &'a Dataset)> {
    new.0
        .iter()
        .filter(|(p, d)| old.0.get(*p).is_none_or(|o| o.kind != d.kind))
        .collect()
}

pub(super) fn leaving<'a>(
    old: &'a Datasets,
    new: &'a Datasets,
) -> Vec<(&'a EntryPath, &'a Dataset)> {
    // What leaves old → new is what arrives new → old.
    arriving(new, old)
}

/// A dataset that leaves stays in place (released) when sysgen did not
/// create it (the ledger records what was there) or when the target still
/// has a directory at its path; otherwise it is detached.
pub(super) fn released(
    p: &EntryPath,
    changes: &[Change],
    ledger: &BTreeMap<EntryPath, Origin>,
) -> bool {
    ledger.contains_key(p)
        || !changes
            .iter()
            .any(|c| matches!(c, Change::Removed(q, _) if q == p))
}

/// Inputs of [`precheck`](super::precheck) and [`plan`] besides the two generations.
pub struct Context<'a> {
    pub changes: &'a [Change],
    pub ledger: &'a BTreeMap<EntryPath, Origin>,
    /// The kind each dataset sysgen knows had (it may be detached now).
    pub known: &'a BTreeMap<EntryPath, Kind>,
    pub opts: &'a DatasetOptions,
}

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
            expect: facts.expect.get(p).cloned(),
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
                id: facts.ids.get(p).cloned(),
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
            expect: undo_expect(switch_steps, p, facts),
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
                id: facts.ids.get(p).cloned(),
            });
        }
    }
    out
}

/// What the undo's attach of `p` must find: the dataset the undone switch
/// detached (its identity when that switch was planned), or else what the
/// inspection of the undo found kept aside.
pub(super) fn undo_expect(
    switch_steps: &[DatasetStep],
    p: &EntryPath,
    facts: &Facts,
) -> Option<String> {
    switch_steps
        .iter()
        .find_map(|s| match s {
            DatasetStep::Detach {
                path, id: Some(id), ..
            } if path == p => Some(id.clone()),
            _ => None,
        })
        .or_else(|| facts.expect.get(p).cloned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> EntryPath {
        EntryPath::parse(s).unwrap()
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
            xattrs: Default::default(),
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
                    xattrs: Default::default(),
                },
            ),
            Change::Removed(
                p("/srv/a"),
                crate::manifest::Entry::Dir {
                    mode: None,
                    uid: None,
                    gid: None,
                    xattrs: Default::default(),
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
