//! The plan: the ordered steps that take a root from one generation to
//! another. Planning is pure: it reads the diff of the two manifests, the
//! ledger of what was on the root before sysgen, and the facts the precheck
//! gathered, and touches nothing. `--dry-run` prints exactly this value, and
//! the journal records exactly this value before `apply` runs it.
//!
//! Order: removals first, deepest path first (so a directory is emptied
//! before it is removed); then creations and changes, parents before
//! children (directories before the files inside them); the activation last.
//!
//! Every step converges a path to a state rather than assuming the state it
//! starts from, so running a plan again from its first step after a crash
//! reaches the same end (this is what `recover` does).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use sysgen_schema::EntryPath;
use sysgen_store::Hash;

use crate::db::Origin;
use crate::manifest::{Change, Entry, GenerationId};

/// Why a step is there, for people reading the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Why {
    /// The path is new in the target generation.
    Add,
    /// The path is in both generations, with different content or attributes.
    Change,
    /// The path leaves the configuration.
    Remove,
    /// The path leaves the configuration; what was there before sysgen comes back.
    Restore,
    /// Something unmanaged of another type is in the way; it was saved first.
    Replace,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Remove a file or symlink, or a directory if it is empty.
    Remove {
        path: EntryPath,
        why: Why,
        kind: String,
    },
    /// Write a file from the store (atomically: temp, then rename).
    PutFile {
        path: EntryPath,
        why: Why,
        hash: Hash,
        size: u64,
        mode: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uid: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gid: Option<u32>,
        /// The content is in the secret area and is never shown.
        secret: bool,
    },
    PutSymlink {
        path: EntryPath,
        why: Why,
        target: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uid: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gid: Option<u32>,
    },
    /// Create a directory if it is absent; `mode: None` leaves an existing
    /// directory's attributes alone.
    MakeDir {
        path: EntryPath,
        why: Why,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uid: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gid: Option<u32>,
    },
    SetMeta {
        path: EntryPath,
        why: Why,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uid: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gid: Option<u32>,
    },
    /// Enable, disable, stop, start, restart, reload or check a unit.
    Service(crate::services::ServiceStep),
    /// Install, upgrade, downgrade or remove packages (`packages` module).
    Package(crate::packages::PackageStep),
    /// Make every change durable, then record the generation as active.
    Activate { number: u64, id: GenerationId },
    /// A dataset's snapshot, creation, adoption, re-attachment, restore or
    /// detachment (`datasets`).
    Dataset(crate::datasets::DatasetStep),
    /// Make every change durable, then record that no generation is active
    /// (undoing the first switch: the root is as it was before sysgen).
    Deactivate,
}

impl Step {
    pub fn path(&self) -> Option<&EntryPath> {
        match self {
            Step::Remove { path, .. }
            | Step::PutFile { path, .. }
            | Step::PutSymlink { path, .. }
            | Step::MakeDir { path, .. }
            | Step::SetMeta { path, .. } => Some(path),
            Step::Dataset(d) => Some(d.path()),
            Step::Activate { .. } | Step::Deactivate | Step::Service(_) | Step::Package(_) => None,
        }
    }
}

fn meta_text(mode: Option<u32>, uid: Option<u32>, gid: Option<u32>) -> String {
    let mut parts = Vec::new();
    if let Some(m) = mode {
        parts.push(format!("mode {m:04o}"));
    }
    if let Some(u) = uid {
        parts.push(format!("owner {u}"));
    }
    if let Some(g) = gid {
        parts.push(format!("group {g}"));
    }
    parts.join(", ")
}

impl fmt::Display for Step {
    /// One line per step. A secret file shows neither content nor hash.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Remove { path, why, kind } => match why {
                Why::Replace => write!(
                    f,
                    "remove {kind} {path} (saved in the store; it is in the way)"
                ),
                _ if kind == "directory" => write!(f, "remove directory {path} if empty"),
                _ => write!(f, "remove {kind} {path}"),
            },
            Step::PutFile {
                path,
                why,
                size,
                mode,
                uid,
                gid,
                secret,
                hash,
            } => {
                let verb = match why {
                    Why::Add => "create",
                    Why::Change | Why::Remove | Why::Replace => "replace",
                    Why::Restore => "restore",
                };
                let content = if *why == Why::Restore {
                    "the copy saved when sysgen took the path over".to_owned()
                } else if *secret {
                    "secret".to_owned()
                } else {
                    format!("{size} bytes, {}", &hash.to_hex()[..12])
                };
                write!(
                    f,
                    "{verb} file {path} ({content}, {})",
                    meta_text(Some(*mode), *uid, *gid)
                )?;
                if *why == Why::Replace {
                    write!(f, "; what was there is saved in the store")?;
                }
                Ok(())
            }
            Step::PutSymlink {
                path, why, target, ..
            } => {
                let verb = if *why == Why::Restore {
                    "restore"
                } else {
                    "link"
                };
                write!(f, "{verb} symlink {path} -> {target}")?;
                if *why == Why::Replace {
                    write!(f, "; what was there is saved in the store")?;
                }
                Ok(())
            }
            Step::MakeDir {
                path,
                mode,
                uid,
                gid,
                ..
            } => {
                if mode.is_none() && uid.is_none() && gid.is_none() {
                    write!(f, "ensure directory {path}")
                } else {
                    write!(
                        f,
                        "create directory {path} ({})",
                        meta_text(*mode, *uid, *gid)
                    )
                }
            }
            Step::SetMeta {
                path,
                why,
                mode,
                uid,
                gid,
            } => {
                let verb = if *why == Why::Restore {
                    "restore"
                } else {
                    "set"
                };
                write!(f, "{verb} {} of {path}", meta_text(*mode, *uid, *gid))
            }
            Step::Activate { number, id } => {
                write!(f, "activate generation {number} ({})", id.short())
            }
            Step::Dataset(d) => d.fmt(f),
            Step::Deactivate => write!(f, "record that no generation is active"),
            Step::Service(s) => write!(f, "{s}"),
            Step::Package(s) => write!(f, "{s}"),
        }
    }
}

/// What the precheck learned about paths the target generation newly
/// manages, that the plan needs.
#[derive(Debug, Default, Clone)]
pub struct Facts {
    /// What was on the root before (saved in the store where needed).
    pub origins: BTreeMap<EntryPath, Origin>,
    /// Newly managed paths where an unmanaged entry of another type must be
    /// removed first (it was saved in `origins`).
    pub in_the_way: BTreeSet<EntryPath>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// Ledger records to add when the activation commits.
    pub ledger_add: Vec<(EntryPath, Origin)>,
    /// Ledger records to drop when the activation commits (kept whole, so
    /// that undoing the switch can put them back).
    pub ledger_remove: Vec<(EntryPath, Origin)>,
}

/// Plans the switch described by `changes` (old → new) to generation
/// `number`/`id`. `ledger` holds the records of paths the old generation
/// manages; `facts` those of paths the new one adds.
pub fn plan(
    changes: &[Change],
    ledger: &BTreeMap<EntryPath, Origin>,
    facts: &Facts,
    number: u64,
    id: GenerationId,
) -> Plan {
    let mut removals: Vec<Step> = Vec::new();
    // Each change makes at most one creation, and a first switch makes one
    // per file: sized once, and the steps are then made around it in place,
    // so they are never held twice.
    let mut creations: Vec<Step> = Vec::with_capacity(changes.len() + 1);
    let mut ledger_remove = Vec::new();

    for c in changes {
        match c {
            Change::Removed(p, old) => {
                match ledger.get(p) {
                    // A directory that was there before, which a later generation
                    // turned into a file or symlink: that goes, the directory comes back.
                    Some(origin @ Origin::Dir { mode, uid, gid }) if !old.is_dir() => {
                        ledger_remove.push((p.clone(), origin.clone()));
                        removals.push(Step::Remove {
                            path: p.clone(),
                            why: Why::Remove,
                            kind: old.kind().into(),
                        });
                        creations.push(Step::MakeDir {
                            path: p.clone(),
                            why: Why::Restore,
                            mode: Some(*mode),
                            uid: Some(*uid),
                            gid: Some(*gid),
                        });
                    }
                    Some(origin) => {
                        ledger_remove.push((p.clone(), origin.clone()));
                        if let Some(s) = restore(p, old, origin) {
                            removals.push(s);
                        }
                    }
                    // sysgen created it; an implicit directory it did not create has a record.
                    None => removals.push(Step::Remove {
                        path: p.clone(),
                        why: Why::Remove,
                        kind: old.kind().into(),
                    }),
                }
            }
            Change::Changed(p, old, new) => {
                let retype = old.is_dir() != new.is_dir();
                if retype {
                    removals.push(Step::Remove {
                        path: p.clone(),
                        why: Why::Change,
                        kind: old.kind().into(),
                    });
                }
                if let Some(s) = change(p, old, new, retype, ledger.get(p)) {
                    creations.push(s);
                }
            }
            Change::Added(p, new) => {
                if facts.in_the_way.contains(p) {
                    let kind = match facts.origins.get(p) {
                        Some(Origin::Symlink { .. }) => "symlink",
                        _ => "file",
                    };
                    removals.push(Step::Remove {
                        path: p.clone(),
                        why: Why::Replace,
                        kind: kind.into(),
                    });
                }
                // Replacing an unmanaged file or symlink that was saved first.
                let why = match facts.origins.get(p) {
                    Some(Origin::File { .. } | Origin::Symlink { .. }) => Why::Replace,
                    _ => Why::Add,
                };
                let step =
                    create_or_make(p, new, why, facts.origins.get(p).or_else(|| ledger.get(p)));
                creations.push(step);
            }
        }
    }
    // Deepest first, and among equals by path, so the order is deterministic.
    removals.sort_by(|a, b| {
        let (pa, pb) = (a.path(), b.path());
        pb.map(EntryPath::depth)
            .cmp(&pa.map(EntryPath::depth))
            .then(pb.cmp(&pa))
    });
    // Path order puts every directory before what it contains.
    creations.sort_by(|a, b| a.path().cmp(&b.path()));
    let mut steps = creations;
    steps.reserve_exact(removals.len() + 1);
    steps.splice(0..0, removals);
    steps.push(Step::Activate { number, id });
    Plan {
        steps,
        ledger_add: facts
            .origins
            .iter()
            .map(|(p, o)| (p.clone(), o.clone()))
            .collect(),
        ledger_remove,
    }
}

/// Like [`create`], but a parent directory that was not on the root before
/// (sysgen creates it) gets an explicit 0755: a re-run after a crash between
/// mkdir and chmod then still converges.
fn create_or_make(p: &EntryPath, new: &Entry, why: Why, origin: Option<&Origin>) -> Step {
    match (new, origin) {
        (
            Entry::Dir {
                mode: None,
                uid: None,
                gid: None,
            },
            None | Some(Origin::File { .. } | Origin::Symlink { .. }),
        ) => Step::MakeDir {
            path: p.clone(),
            why,
            mode: Some(0o755),
            uid: None,
            gid: None,
        },
        _ => create(p, new, why),
    }
}

fn create(p: &EntryPath, new: &Entry, why: Why) -> Step {
    match new {
        Entry::File {
            hash,
            size,
            mode,
            uid,
            gid,
            secret,
        } => Step::PutFile {
            path: p.clone(),
            why,
            hash: *hash,
            size: *size,
            mode: *mode,
            uid: *uid,
            gid: *gid,
            secret: *secret,
        },
        Entry::Dir { mode, uid, gid } => Step::MakeDir {
            path: p.clone(),
            why,
            mode: *mode,
            uid: *uid,
            gid: *gid,
        },
        Entry::Symlink { target } => Step::PutSymlink {
            path: p.clone(),
            why,
            target: target.clone(),
            uid: None,
            gid: None,
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
    p: &EntryPath,
    old: &Entry,
    new: &Entry,
    retype: bool,
    origin: Option<&Origin>,
) -> Option<Step> {
    if retype {
        return Some(create_or_make(p, new, Why::Change, origin));
    }
    match (old, new) {
        (
            Entry::File {
                hash: h1,
                uid: u1,
                gid: g1,
                ..
            },
            Entry::File {
                hash: h2,
                mode,
                uid,
                gid,
                secret: s2,
                ..
            },
        ) if h1 == h2 && old.is_secret() == *s2 => Some(Step::SetMeta {
            path: p.clone(),
            why: Why::Change,
            mode: Some(*mode),
            // An owner no longer managed goes back to the one a fresh write gives.
            uid: uid.or(u1.map(|_| 0)),
            gid: gid.or(g1.map(|_| 0)),
        }),
        (
            Entry::Dir {
                mode: m1,
                uid: u1,
                gid: g1,
            },
            Entry::Dir {
                mode: m2,
                uid: u2,
                gid: g2,
            },
        ) => {
            let (dm, du, dg) = unmanaged_attrs(origin);
            let mode = m2.or(m1.map(|_| dm));
            let uid = u2.or(u1.map(|_| du));
            let gid = g2.or(g1.map(|_| dg));
            if mode.is_none() && uid.is_none() && gid.is_none() {
                return None;
            }
            let managed = m2.is_some() || u2.is_some() || g2.is_some();
            Some(Step::SetMeta {
                path: p.clone(),
                why: if managed { Why::Change } else { Why::Restore },
                mode,
                uid,
                gid,
            })
        }
        _ => Some(create(p, new, Why::Change)),
    }
}

/// The step that puts back what was on the root before sysgen managed `p`.
fn restore(p: &EntryPath, old: &Entry, origin: &Origin) -> Option<Step> {
    match origin {
        Origin::File {
            hash,
            mode,
            uid,
            gid,
        } => Some(Step::PutFile {
            path: p.clone(),
            why: Why::Restore,
            hash: *hash,
            size: 0,
            mode: *mode,
            uid: Some(*uid),
            gid: Some(*gid),
            // Backups live in the secret area: they may be anything.
            secret: true,
        }),
        Origin::Symlink { target, uid, gid } => Some(Step::PutSymlink {
            path: p.clone(),
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
            } => None,
            _ => Some(Step::SetMeta {
                path: p.clone(),
                why: Why::Restore,
                mode: Some(*mode),
                uid: Some(*uid),
                gid: Some(*gid),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        }
    }
    fn dir() -> Entry {
        Entry::Dir {
            mode: None,
            uid: None,
            gid: None,
        }
    }
    fn gid() -> GenerationId {
        GenerationId(Hash::of(b"g"))
    }
    fn ops(plan: &Plan) -> Vec<String> {
        plan.steps.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn removals_deepest_first_then_creations_parents_first() {
        let changes = vec![
            Change::Removed(p("/a"), dir()),
            Change::Removed(p("/a/b"), dir()),
            Change::Removed(p("/a/b/c"), file("x", 0o644)),
            Change::Added(p("/d"), dir()),
            Change::Added(p("/d/e"), file("y", 0o600)),
        ];
        let plan = plan(&changes, &BTreeMap::new(), &Facts::default(), 2, gid());
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
        assert!(got[5].starts_with("activate generation 2"));
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
            },
        );
        let changes = vec![Change::Removed(p("/etc/hosts"), file("new", 0o644))];
        let plan = plan(&changes, &ledger, &Facts::default(), 3, gid());
        assert!(
            ops(&plan)[0]
                .starts_with("restore file /etc/hosts (the copy saved when sysgen took the path over, mode 0640, owner 0, group 4)")
        );
        assert_eq!(plan.ledger_remove[0].0, p("/etc/hosts"));
    }

    #[test]
    fn mode_only_change_does_not_rewrite() {
        let changes = vec![Change::Changed(p("/f"), file("x", 0o644), file("x", 0o600))];
        let plan = plan(&changes, &BTreeMap::new(), &Facts::default(), 2, gid());
        assert_eq!(ops(&plan)[0], "set mode 0600 of /f");
    }

    #[test]
    fn retype_removes_before_creating() {
        let changes = vec![Change::Changed(p("/x"), file("x", 0o644), dir())];
        let plan = plan(&changes, &BTreeMap::new(), &Facts::default(), 2, gid());
        assert_eq!(
            ops(&plan)[..2],
            [
                "remove file /x".to_owned(),
                "create directory /x (mode 0755)".to_owned()
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
        };
        let plan = plan(
            &[Change::Added(p("/s"), e)],
            &BTreeMap::new(),
            &Facts::default(),
            2,
            gid(),
        );
        let text = ops(&plan).join("\n");
        assert!(!text.contains(&Hash::of(b"hunter2").to_hex()[..12]));
        assert!(text.contains("secret"));
    }
}
