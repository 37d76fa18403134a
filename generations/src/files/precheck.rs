//! The precheck: before a switch changes anything, read the live root at
//! every path the switch touches.
//!
//! It reads only: what must be kept is hashed here and named in the plan,
//! and the pipeline puts it into the store before the journal is written
//! (a dry run keeps nothing).
//!
//! - A managed path whose live state differs from what the active
//!   generation wrote (drift) stops the switch, unless `--force`, which
//!   first saves the changed file in the store.
//! - A path the target newly manages that already holds a file or symlink
//!   is saved in the store, to be put back when the path leaves the
//!   configuration; a directory there is recorded and never removed.
//! - Anything the switch cannot handle without losing data (a directory
//!   with unmanaged files where a file must go, a socket, a path reached
//!   only through a symlink) stops the switch with every such path named.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use sysgen_schema::EntryPath;
use sysgen_store::Hash;

use super::Facts;
use crate::db::{Origin, Saved};
use crate::manifest::{Change, Entry};
use crate::rootfs::xattr::recorded;
use crate::rootfs::{Live, RootDir};
use crate::{Drift, Error};

#[derive(Debug, Default)]
pub struct Precheck {
    pub facts: Facts,
    pub drift: Vec<Drift>,
    pub conflicts: Vec<String>,
    /// Changed files saved before `--force` overwrites or removes them.
    pub saved: Vec<Saved>,
}

/// Compares one live path with the entry sysgen wrote there; `None` if equal.
pub fn drift_of(
    root: &RootDir,
    p: &EntryPath,
    want: &Entry,
    live: &Live,
) -> Result<Option<String>, Error> {
    Ok(match (want, live) {
        (_, Live::Absent) => Some("missing".into()),
        (
            Entry::File {
                hash,
                size,
                mode,
                uid,
                gid,
                xattrs,
                link,
                ..
            },
            Live::File(m),
        ) => {
            if m.mode != *mode {
                Some(format!("mode {:04o}, expected {mode:04o}", m.mode))
            } else if let Some(d) = owner_drift(*uid, *gid, m) {
                Some(d)
            } else if m.size != *size {
                // Another size is another content: no need to read it.
                Some("content changed".into())
            } else {
                let ((h, _), attrs) = root.hash_file_and_xattrs(p, xattrs)?;
                if let Some(d) = attrs {
                    Some(format!("extended attributes differ: {d}"))
                } else if let Some(d) = link_drift(root, link.as_ref(), m)? {
                    Some(d)
                } else {
                    (Hash::from_bytes(*h.as_bytes()) != *hash).then(|| "content changed".into())
                }
            }
        }
        (
            Entry::Symlink { target, uid, gid },
            Live::Symlink {
                target: t,
                uid: u,
                gid: g,
            },
        ) => {
            if t != target {
                Some(format!("symlink points to {t}, expected {target}"))
            } else {
                (uid.is_some_and(|x| x != *u) || gid.is_some_and(|x| x != *g))
                    .then(|| format!("owner {u}:{g}, expected {}:{}", show(uid), show(gid)))
            }
        }
        (
            Entry::Dir {
                mode,
                uid,
                gid,
                xattrs,
            },
            Live::Dir(m),
        ) => {
            if mode.is_some_and(|x| x != m.mode) {
                Some(format!(
                    "mode {:04o}, expected {:04o}",
                    m.mode,
                    mode.unwrap_or_default()
                ))
            } else if let Some(d) = owner_drift(*uid, *gid, m) {
                Some(d)
            } else if xattrs.is_empty() {
                // A directory has no capability; other attributes are
                // managed only where the generation records some.
                None
            } else {
                root.xattr_drift(p, xattrs)?
                    .map(|d| format!("extended attributes differ: {d}"))
            }
        }
        (want, live) => Some(format!("is a {}, expected a {}", live.kind(), want.kind())),
    })
}

/// A file that must be another name of `link` (a tree's hard link) and
/// is a file of its own.
fn link_drift(
    root: &RootDir,
    link: Option<&EntryPath>,
    m: &crate::rootfs::Meta,
) -> Result<Option<String>, Error> {
    let Some(to) = link else {
        return Ok(None);
    };
    Ok(match root.inspect(to)? {
        Live::File(t) if (t.dev, t.ino) == (m.dev, m.ino) => None,
        _ => Some(format!("is no longer a hard link of {to}")),
    })
}

/// The owner or group differs from the one declared (an undeclared one
/// is not managed, so it never drifts).
fn owner_drift(uid: Option<u32>, gid: Option<u32>, m: &crate::rootfs::Meta) -> Option<String> {
    (uid.is_some_and(|u| u != m.uid) || gid.is_some_and(|g| g != m.gid)).then(|| {
        format!(
            "owner {}:{}, expected {}:{}",
            m.uid,
            m.gid,
            show(&uid),
            show(&gid)
        )
    })
}

fn show(id: &Option<u32>) -> String {
    id.map_or("*".into(), |i| i.to_string())
}

/// Runs the precheck of `changes` (active → target).
pub fn precheck<'c>(
    root: &RootDir,
    changes: impl Iterator<Item = &'c Change> + Clone,
    ledger: &BTreeMap<EntryPath, Origin>,
    force: bool,
) -> Result<Precheck, Error> {
    let mut out = Precheck::default();
    // Paths this switch puts a directory at, replacing what is there: a
    // blocked path below one of them is fine, the blocker goes first.
    let replaced: BTreeSet<&EntryPath> = changes
        .clone()
        .filter_map(|c| match c {
            Change::Added(p, e) if e.is_dir() => Some(p),
            Change::Changed(p, _, e) if e.is_dir() => Some(p),
            _ => None,
        })
        .collect();
    let removed: BTreeSet<&EntryPath> = changes
        .clone()
        .filter_map(|c| match c {
            Change::Removed(p, _) => Some(p),
            _ => None,
        })
        .collect();

    // Directories found absent: nothing below them can exist either, and
    // a first switch would otherwise probe every level of every path.
    // (Changes come sorted by path, parents first; precheck writes nothing
    // to the root, so an absent directory stays absent.)
    let mut absent_dirs: HashSet<EntryPath> = HashSet::new();
    for c in changes {
        let p = c.path();
        let live = match p.parent() {
            Some(d) if absent_dirs.contains(&d) => Live::Absent,
            _ => root.inspect(p)?,
        };
        let is_dir = match c {
            Change::Added(_, e) | Change::Removed(_, e) => e.is_dir(),
            Change::Changed(_, a, b) => a.is_dir() || b.is_dir(),
        };
        if is_dir && matches!(live, Live::Absent) {
            absent_dirs.insert(p.clone());
        }
        if let Live::Blocked { at, what } = &live {
            if !replaced.contains(at) {
                out.conflicts.push(format!(
                    "{p}: {at} is a {what} on the root, and sysgen never writes through one; move it away, then switch again"
                ));
            }
            continue;
        }
        match (c, c.before()) {
            (Change::Removed(..) | Change::Changed(..), Some(old)) => {
                // A directory's drift loses no data: it is only removed when empty.
                if old.is_dir() && matches!(live, Live::Dir(_)) {
                    // The directory must give way to a file or symlink: the new
                    // entry, or what was there before sysgen and comes back.
                    let replaced = match c {
                        Change::Changed(_, _, new) => !new.is_dir(),
                        _ => matches!(ledger.get(p), Some(Origin::File { .. } | Origin::Symlink { .. })),
                    };
                    if replaced {
                        check_empty_for_retype(root, p, &removed, &mut out)?;
                    }
                    continue;
                }
                if let Some(what) = drift_of(root, p, old, &live)? {
                    if matches!(live, Live::Absent) {
                        // Nothing there to lose: the switch just writes or skips it.
                        continue;
                    }
                    if let Live::Dir(_) = live {
                        out.conflicts.push(format!(
                            "{p}: a directory replaced the managed {} on the root; move it away first",
                            old.kind()
                        ));
                        continue;
                    }
                    if let Live::Special(kind) = live {
                        out.conflicts.push(format!("{p}: a {kind} replaced the managed {} on the root; remove it first", old.kind()));
                        continue;
                    }
                    if force {
                        let kept = match &live {
                            Live::File(_) => Some((hash_of(root, p)?, what.clone())),
                            // A symlink's content is its target: keep that.
                            Live::Symlink { target, .. } => Some((
                                Hash::of(target.as_bytes()),
                                format!("{what}; it pointed to {target}"),
                            )),
                            _ => None,
                        };
                        if let Some((hash, why)) = kept {
                            out.saved.push(Saved {
                                path: p.clone(),
                                hash,
                                secret: old.is_secret(),
                                why: format!("{why}; saved before --force replaced it"),
                            });
                        }
                    }
                    out.drift.push(Drift { path: p.to_string(), what });
                }
            }
            (Change::Added(_, new), _) => match (&live, new) {
                (Live::Absent, _) => {}
                (Live::File(m), _) => {
                    let hash = hash_of(root, p)?;
                    let xattrs = root.xattrs(p, &|n| recorded(n, true))?;
                    out.facts.origins.insert(p.clone(), Origin::File { hash, mode: m.mode, uid: m.uid, gid: m.gid, xattrs });
                    if new.is_dir() {
                        out.facts.in_the_way.insert(p.clone());
                    }
                }
                (Live::Symlink { target, uid, gid }, _) => {
                    out.facts.origins.insert(p.clone(), Origin::Symlink { target: target.clone(), uid: *uid, gid: *gid });
                    if new.is_dir() {
                        out.facts.in_the_way.insert(p.clone());
                    }
                }
                (Live::Dir(m), Entry::Dir { .. }) => {
                    out.facts.origins.insert(p.clone(), Origin::Dir { mode: m.mode, uid: m.uid, gid: m.gid });
                }
                (Live::Dir(_), _) => out.conflicts.push(format!(
                    "{p}: is a directory on the root, but the configuration declares a {} there; move the directory away or declare it as a directory",
                    new.kind()
                )),
                (Live::Special(kind), _) => {
                    out.conflicts.push(format!("{p}: is a {kind} on the root; sysgen does not replace those, remove it first"))
                }
                (Live::Blocked { .. }, _) => {}
            },
            // A removal or a change always has an entry before.
            (_, None) => {}
        }
    }
    Ok(out)
}

/// A directory that becomes a file or symlink must hold nothing but
/// entries this switch removes.
fn check_empty_for_retype(
    root: &RootDir,
    p: &EntryPath,
    removed: &BTreeSet<&EntryPath>,
    out: &mut Precheck,
) -> Result<(), Error> {
    for name in root.list_dir(p)? {
        let child = name.to_str().and_then(|n| p.join(n).ok());
        if !child.as_ref().is_some_and(|c| removed.contains(c)) {
            out.conflicts.push(format!(
                "{p}: the directory holds {} which sysgen does not manage, and a file must take its place; move it away first",
                name.to_string_lossy()
            ));
            return Ok(());
        }
    }
    Ok(())
}

/// The hash of the live file at `p`: what the pipeline keeps in the
/// store before the journal is written (and checks again as it does).
fn hash_of(root: &RootDir, p: &EntryPath) -> Result<Hash, Error> {
    let (h, _) = root.hash_file(p)?;
    Ok(Hash::from_bytes(*h.as_bytes()))
}
