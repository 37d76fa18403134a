//! The tree's plan (pure): from the diff of two generations' trees, the
//! ledger of what was on the root before sysgen, and what the inspection
//! found, the file steps of a switch. Removals run in [`Phase::Remove`],
//! deepest path first (a directory is emptied before it is removed);
//! creations and changes in [`Phase::Create`], parents before children.

use std::collections::BTreeMap;

use sysgen_schema::EntryPath;

use super::{Facts, FileStep, Why};
use crate::db::Origin;
use crate::kind::{Phase, Planned};
use crate::manifest::{Change, Entry};
use crate::rootfs::Xattrs;

/// Plans the file steps of `changes` (old → new), taking each: its path
/// and attributes move into its step. `ledger` holds the records of paths
/// the old generation manages; `facts` those of paths the new one adds.
pub fn plan(
    changes: impl Iterator<Item = Change>,
    ledger: &BTreeMap<EntryPath, Origin>,
    facts: &Facts,
) -> Planned<FileStep> {
    // Each step is made with its phase, so that the plan is these very
    // vectors: a pair made later is a larger value, and a second copy.
    let mut removals: Vec<(Phase, FileStep)> = Vec::new();
    // Each change makes at most one creation, and a first switch makes one
    // per file: sized once, and the steps are then made around it in place,
    // so they are never held twice.
    // (One more: the activation ends the plan, in the same buffer.)
    let most = changes.size_hint().1.unwrap_or(0);
    let mut creations: Vec<(Phase, FileStep)> = Vec::with_capacity(most + 1);
    let mut ledger_remove = Vec::new();

    for c in changes {
        match c {
            Change::Removed(p, old) => {
                match ledger.get(&p) {
                    // A directory that was there before, which a later generation
                    // turned into a file or symlink: that goes, the directory comes back.
                    Some(origin @ Origin::Dir { mode, uid, gid }) if !old.is_dir() => {
                        ledger_remove.push((p.clone(), origin.clone()));
                        removals.push((
                            Phase::Remove,
                            FileStep::Remove {
                                path: p.clone(),
                                why: Why::Remove,
                                kind: old.kind().into(),
                            },
                        ));
                        creations.push((
                            Phase::Create,
                            FileStep::MakeDir {
                                path: p,
                                why: Why::Restore,
                                mode: Some(*mode),
                                uid: Some(*uid),
                                gid: Some(*gid),
                                xattrs: Xattrs::default(),
                            },
                        ));
                    }
                    Some(origin) => {
                        ledger_remove.push((p.clone(), origin.clone()));
                        if let Some(s) = restore(p, &old, origin) {
                            removals.push((Phase::Remove, s));
                        }
                    }
                    // sysgen created it; an implicit directory it did not create has a record.
                    None => removals.push((
                        Phase::Remove,
                        FileStep::Remove {
                            path: p,
                            why: Why::Remove,
                            kind: old.kind().into(),
                        },
                    )),
                }
            }
            Change::Changed(p, old, new) => {
                let retype = old.is_dir() != new.is_dir();
                if retype {
                    removals.push((
                        Phase::Remove,
                        FileStep::Remove {
                            path: p.clone(),
                            why: Why::Change,
                            kind: old.kind().into(),
                        },
                    ));
                }
                let origin = ledger.get(&p);
                if let Some(s) = change(p, &old, *new, retype, origin) {
                    creations.push((Phase::Create, s));
                }
            }
            Change::Added(p, new) => {
                if facts.in_the_way.contains(&p) {
                    let kind = match facts.origins.get(&p) {
                        Some(Origin::Symlink { .. }) => "symlink",
                        _ => "file",
                    };
                    removals.push((
                        Phase::Remove,
                        FileStep::Remove {
                            path: p.clone(),
                            why: Why::Replace,
                            kind: kind.into(),
                        },
                    ));
                }
                // Replacing an unmanaged file or symlink that was saved first.
                let why = match facts.origins.get(&p) {
                    Some(Origin::File { .. } | Origin::Symlink { .. }) => Why::Replace,
                    _ => Why::Add,
                };
                let origin = facts.origins.get(&p).or_else(|| ledger.get(&p));
                let step = if facts.provided.contains(&p) && is_implicit_dir(&new) {
                    // Another kind made it: its mode is that kind's.
                    create(p, new, why)
                } else {
                    create_or_make(p, new, why, origin)
                };
                creations.push((Phase::Create, step));
            }
        }
    }
    // Deepest first, and among equals by path, so the order is deterministic.
    // (No two steps of a list share a path, so an unstable sort gives the
    // one order, and needs no buffer beside a list of a step per file.)
    removals.sort_unstable_by(|(_, a), (_, b)| {
        let (pa, pb) = (a.path(), b.path());
        pb.depth().cmp(&pa.depth()).then(pb.cmp(pa))
    });
    // Path order puts every directory before what it contains. The
    // changes come in path order, so this is nearly always sorted already.
    if !creations.is_sorted_by(|(_, a), (_, b)| a.path() <= b.path()) {
        creations.sort_unstable_by(|(_, a), (_, b)| a.path().cmp(b.path()));
    }
    // A first switch has a step per file, and its creations alone: they
    // are the plan. Removals go in front, moving the creations once within
    // one growing buffer.
    let steps = if removals.is_empty() {
        creations
    } else {
        removals.reserve_exact(creations.len());
        removals.append(&mut creations);
        removals
    };
    Planned {
        steps,
        ledger_remove,
    }
}

/// Like [`create`], but a parent directory that was not on the root before
/// (sysgen creates it) gets an explicit 0755: a re-run after a crash between
/// mkdir and chmod then still converges.
fn create_or_make(p: EntryPath, new: Entry, why: Why, origin: Option<&Origin>) -> FileStep {
    match origin {
        None | Some(Origin::File { .. } | Origin::Symlink { .. }) if is_implicit_dir(&new) => {
            FileStep::MakeDir {
                path: p,
                why,
                mode: Some(0o755),
                uid: None,
                gid: None,
                xattrs: Xattrs::default(),
            }
        }
        _ => create(p, new, why),
    }
}

/// A directory the configuration does not declare: a parent of what it does.
fn is_implicit_dir(e: &Entry) -> bool {
    matches!(
        e,
        Entry::Dir {
            mode: None,
            uid: None,
            gid: None,
            ..
        }
    )
}

fn create(p: EntryPath, new: Entry, why: Why) -> FileStep {
    match new {
        Entry::File { link: Some(to), .. } => FileStep::Link { path: p, why, to },
        Entry::File {
            hash,
            size,
            mode,
            uid,
            gid,
            secret,
            xattrs,
            link: None,
        } => FileStep::PutFile {
            path: p,
            why,
            hash,
            size,
            mode,
            uid,
            gid,
            secret,
            xattrs,
        },
        Entry::Dir {
            mode,
            uid,
            gid,
            xattrs,
        } => FileStep::MakeDir {
            path: p,
            why,
            mode,
            uid,
            gid,
            xattrs,
        },
        Entry::Symlink { target, uid, gid } => FileStep::PutSymlink {
            path: p,
            why,
            target,
            uid,
            gid,
        },
    }
}

/// The attributes an entry has when sysgen does not manage them: what was
/// there before sysgen (`origin`), or what sysgen gives what it creates
/// (0755, root). A switch that stops managing an attribute resets it to
/// this, so the root does not depend on the generations it went through.
fn unmanaged_attrs(origin: Option<&Origin>) -> (u32, u32, u32) {
    match origin {
        Some(Origin::Dir { mode, uid, gid }) => (*mode, *uid, *gid),
        _ => (0o755, 0, 0),
    }
}

fn change(
    p: EntryPath,
    old: &Entry,
    new: Entry,
    retype: bool,
    origin: Option<&Origin>,
) -> Option<FileStep> {
    if retype {
        return Some(create_or_make(p, new, Why::Change, origin));
    }
    match (old, &new) {
        // A hard link is made again whenever anything of it changes.
        (_, Entry::File { link: Some(to), .. }) => Some(FileStep::Link {
            path: p,
            why: Why::Change,
            to: to.clone(),
        }),
        (
            Entry::File {
                hash: h1,
                uid: u1,
                gid: g1,
                xattrs: x1,
                link: None,
                ..
            },
            Entry::File {
                hash: h2,
                mode,
                uid,
                gid,
                secret: s2,
                xattrs,
                ..
            },
        ) if h1 == h2 && old.is_secret() == *s2 => Some(FileStep::SetMeta {
            path: p,
            why: Why::Change,
            mode: Some(*mode),
            // An owner no longer managed goes back to the one a fresh write gives.
            uid: uid.or(u1.map(|_| 0)),
            gid: gid.or(g1.map(|_| 0)),
            xattrs: xattrs.clone(),
            drop: dropped(x1, xattrs),
        }),
        (
            Entry::Dir {
                mode: m1,
                uid: u1,
                gid: g1,
                xattrs: x1,
            },
            Entry::Dir {
                mode: m2,
                uid: u2,
                gid: g2,
                xattrs: x2,
            },
        ) => {
            let (dm, du, dg) = unmanaged_attrs(origin);
            let mode = m2.or(m1.map(|_| dm));
            let uid = u2.or(u1.map(|_| du));
            let gid = g2.or(g1.map(|_| dg));
            let drop = dropped(x1, x2);
            if mode.is_none() && uid.is_none() && gid.is_none() && x2.is_empty() && drop.is_empty()
            {
                return None;
            }
            let managed = m2.is_some() || u2.is_some() || g2.is_some() || !x2.is_empty();
            Some(FileStep::SetMeta {
                path: p,
                why: if managed { Why::Change } else { Why::Restore },
                mode,
                uid,
                gid,
                xattrs: x2.clone(),
                drop,
            })
        }
        _ => Some(create(p, new, Why::Change)),
    }
}

/// The attributes `old` recorded that `new` does not: removed in place.
fn dropped(old: &Xattrs, new: &Xattrs) -> Vec<String> {
    old.0
        .keys()
        .filter(|k| !new.0.contains_key(*k))
        .cloned()
        .collect()
}

/// The step that puts back what was on the root before sysgen managed `p`.
fn restore(p: EntryPath, old: &Entry, origin: &Origin) -> Option<FileStep> {
    match origin {
        Origin::File {
            hash,
            mode,
            uid,
            gid,
            xattrs,
        } => Some(FileStep::PutFile {
            path: p,
            why: Why::Restore,
            hash: *hash,
            size: 0,
            mode: *mode,
            uid: Some(*uid),
            gid: Some(*gid),
            // Backups live in the secret area: they may be anything.
            secret: true,
            xattrs: xattrs.clone(),
        }),
        Origin::Symlink { target, uid, gid } => Some(FileStep::PutSymlink {
            path: p,
            why: Why::Restore,
            target: target.clone(),
            uid: Some(*uid),
            gid: Some(*gid),
        }),
        // A directory that was there before stays; attributes sysgen set are put back.
        Origin::Dir { mode, uid, gid } => match old {
            Entry::Dir {
                mode: None,
                uid: None,
                gid: None,
                ..
            } => None,
            _ => Some(FileStep::SetMeta {
                path: p,
                why: Why::Restore,
                mode: Some(*mode),
                uid: Some(*uid),
                gid: Some(*gid),
                xattrs: Xattrs::default(),
                drop: match old {
                    Entry::Dir { xattrs, .. } => xattrs.0.keys().cloned().collect(),
                    _ => Vec::new(),
                },
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sysgen_store::Hash;

    fn p(s: &str) -> EntryPath {
        EntryPath::parse(s).unwrap()
    }
    fn file(c: &str, mode: u32) -> Entry {
        Entry::File {
            hash: Hash::of(c.as_bytes()),
            size: c.len() as u64,
            mode,
            uid: None,
            gid: None,
            secret: false,
            xattrs: Xattrs::default(),
            link: None,
        }
    }
    fn dir() -> Entry {
        Entry::Dir {
            mode: None,
            uid: None,
            gid: None,
            xattrs: Xattrs::default(),
        }
    }
    fn ops(plan: &Planned<FileStep>) -> Vec<String> {
        plan.steps.iter().map(|(_, s)| s.to_string()).collect()
    }

    #[test]
    fn removals_deepest_first_then_creations_parents_first() {
        let changes = [
            Change::Removed(p("/a"), dir()),
            Change::Removed(p("/a/b"), dir()),
            Change::Removed(p("/a/b/c"), file("x", 0o644)),
            Change::Added(p("/d"), dir()),
            Change::Added(p("/d/e"), file("y", 0o600)),
        ];
        let plan = plan(changes.into_iter(), &BTreeMap::new(), &Facts::default());
        let got = ops(&plan);
        assert_eq!(got[0], "remove file /a/b/c");
        assert_eq!(got[1], "remove directory /a/b if empty");
        assert_eq!(got[2], "remove directory /a if empty");
        assert_eq!(got[3], "create directory /d (mode 0755)");
        assert!(
            got[4].starts_with("create file /d/e (1 bytes"),
            "{}",
            got[4]
        );
        assert_eq!(got.len(), 5);
        assert_eq!(
            plan.steps.iter().map(|s| s.0).collect::<Vec<_>>(),
            [
                Phase::Remove,
                Phase::Remove,
                Phase::Remove,
                Phase::Create,
                Phase::Create
            ]
        );
    }

    #[test]
    fn leaving_path_with_origin_is_restored_not_removed() {
        let mut ledger = BTreeMap::new();
        ledger.insert(
            p("/etc/hosts"),
            Origin::File {
                hash: Hash::of(b"old"),
                mode: 0o640,
                uid: 0,
                gid: 4,
                xattrs: Xattrs::default(),
            },
        );
        let changes = [Change::Removed(p("/etc/hosts"), file("new", 0o644))];
        let plan = plan(changes.into_iter(), &ledger, &Facts::default());
        assert!(
            ops(&plan)[0]
                .starts_with("restore file /etc/hosts (the copy saved when sysgen took the path over, mode 0640, owner 0, group 4)")
        );
        assert_eq!(plan.ledger_remove[0].0, p("/etc/hosts"));
    }

    #[test]
    fn mode_only_change_does_not_rewrite() {
        let changes = [Change::changed(p("/f"), file("x", 0o644), file("x", 0o600))];
        let plan = plan(changes.into_iter(), &BTreeMap::new(), &Facts::default());
        assert_eq!(ops(&plan)[0], "set mode 0600 of /f");
    }

    #[test]
    fn retype_removes_before_creating() {
        let changes = [Change::changed(p("/x"), file("x", 0o644), dir())];
        let plan = plan(changes.into_iter(), &BTreeMap::new(), &Facts::default());
        assert_eq!(
            ops(&plan)[..2],
            [
                "remove file /x".to_owned(),
                "create directory /x (mode 0755)".to_owned()
            ]
        );
    }

    #[test]
    fn a_hard_link_is_linked_after_its_file_and_again_when_it_changes() {
        let linked = |to: &str| match file("x", 0o755) {
            Entry::File {
                hash,
                size,
                mode,
                uid,
                gid,
                secret,
                xattrs,
                ..
            } => Entry::File {
                hash,
                size,
                mode,
                uid,
                gid,
                secret,
                xattrs,
                link: Some(p(to)),
            },
            other => other,
        };
        let changes = [
            Change::Added(p("/b"), linked("/a")),
            Change::Added(p("/a"), file("x", 0o755)),
            Change::changed(p("/c"), file("y", 0o755), linked("/a")),
        ];
        let got = ops(&plan(
            changes.into_iter(),
            &BTreeMap::new(),
            &Facts::default(),
        ));
        assert!(got[0].starts_with("create file /a (1 bytes"), "{got:?}");
        assert_eq!(
            got[1..],
            [
                "hard-link file /b to /a".to_owned(),
                "hard-link file /c to /a".to_owned()
            ]
        );
    }

    #[test]
    fn secret_content_never_shown() {
        let e = Entry::File {
            hash: Hash::of(b"hunter2"),
            size: 7,
            mode: 0o600,
            uid: None,
            gid: None,
            secret: true,
            xattrs: Xattrs::default(),
            link: None,
        };
        let plan = plan(
            [Change::Added(p("/s"), e)].into_iter(),
            &BTreeMap::new(),
            &Facts::default(),
        );
        let text = ops(&plan).join("\n");
        assert!(!text.contains(&Hash::of(b"hunter2").to_hex()[..12]));
        assert!(text.contains("secret"));
    }
}
