//! The difference between two Merkle trees.
//!
//! Two subtrees with the same node id are skipped without being read, and
//! inside a node that differs, two entries whose encoded records are the
//! same bytes are skipped without being decoded (the encoding is one per
//! entry, see [`super::binary`]). A diff then reads the nodes along the
//! changed paths only and decodes only the changed entries: its cost grows
//! with the number of changes times their depth, not with the tree.

use std::cmp::Ordering;

use sysgen_schema::EntryPath;

use super::binary::{RawEntry, entries, not_utf8};
use super::{Entry, NodeId, NodeSource};

/// One difference between two generations.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Change {
    Added(EntryPath, Entry),
    Removed(EntryPath, Entry),
    /// Boxed: a first switch holds a change per file, nearly all of them
    /// `Added`, and two entries inline made every change 248 bytes, not 144.
    Changed(EntryPath, Box<Entry>, Box<Entry>),
}

impl Change {
    pub fn changed(p: EntryPath, old: Entry, new: Entry) -> Change {
        Change::Changed(p, Box::new(old), Box::new(new))
    }

    /// The entry before the change (none for an addition).
    pub fn before(&self) -> Option<&Entry> {
        match self {
            Change::Added(..) => None,
            Change::Removed(_, e) => Some(e),
            Change::Changed(_, e, _) => Some(e),
        }
    }

    pub fn path(&self) -> &EntryPath {
        match self {
            Change::Added(p, _) | Change::Removed(p, _) | Change::Changed(p, _, _) => p,
        }
    }
}

/// Every difference from tree `a` to tree `b` (`None`: the empty tree),
/// sorted by path. Equal subtrees are skipped without being read.
pub fn diff(
    src: &dyn NodeSource,
    a: Option<NodeId>,
    b: Option<NodeId>,
) -> Result<Vec<Change>, crate::Error> {
    let mut out = Vec::new();
    diff_dir(src, None, a, b, &mut |c| {
        out.push(c);
        Ok(())
    })?;
    // The walk's order is path order but where a name sorts below '/'
    // ("a-b" before "a/x"). A path is in a diff once, so an unstable sort
    // gives the one order, with no buffer beside a list of a change per
    // file (a stable sort takes half the list's size again).
    if !out.is_sorted_by(|x, y| x.path() <= y.path()) {
        out.sort_unstable_by(|x, y| x.path().cmp(y.path()));
    }
    Ok(out)
}

/// Calls `f` with every difference from tree `a` to tree `b`, as [`diff`]
/// finds them but unsorted and never held together: what counts the
/// changes of a first generation (a change per file) holds none of them.
pub fn diff_each(
    src: &dyn NodeSource,
    a: Option<NodeId>,
    b: Option<NodeId>,
    f: &mut dyn FnMut(Change) -> Result<(), crate::Error>,
) -> Result<(), crate::Error> {
    diff_dir(src, None, a, b, f)
}

/// Every entry of a tree, sorted by path.
pub fn walk(src: &dyn NodeSource, root: NodeId) -> Result<Vec<(EntryPath, Entry)>, crate::Error> {
    Ok(diff(src, None, Some(root))?
        .into_iter()
        .filter_map(|c| match c {
            Change::Added(p, e) => Some((p, e)),
            _ => None,
        })
        .collect())
}

/// Calls `f` with every entry of a tree, one directory's node at a time:
/// only the nodes along the current path are held, never the whole tree
/// (a million-file `verify` or `show` would hold a million entries).
/// The order is depth first by name ("a", "a/x", "a-b"), not path order
/// ("a", "a-b", "a/x"): callers that report paths sort what they report.
pub fn walk_each(
    src: &dyn NodeSource,
    root: NodeId,
    f: &mut dyn FnMut(EntryPath, Entry) -> Result<(), crate::Error>,
) -> Result<(), crate::Error> {
    walk_dir(src, None, root, f)
}

fn walk_dir(
    src: &dyn NodeSource,
    dir: Option<&EntryPath>,
    id: NodeId,
    f: &mut dyn FnMut(EntryPath, Entry) -> Result<(), crate::Error>,
) -> Result<(), crate::Error> {
    let bytes = read(src, Some(id))?;
    for x in split(Some(id), &bytes)? {
        let p = child_path(dir, x.name)?;
        let e = entry(&p, &x)?;
        match x.tree {
            Some(t) => {
                f(p.clone(), e)?;
                walk_dir(src, Some(&p), t, f)?;
            }
            None => f(p, e)?,
        }
    }
    Ok(())
}

/// The path of the entry `name` in `dir`: where a name read from a node
/// is first checked (UTF-8, then a valid component), since only the names
/// a diff or walk reports become paths (see [`RawEntry::name`]).
fn child_path(dir: Option<&EntryPath>, name: &[u8]) -> Result<EntryPath, crate::Error> {
    let name = std::str::from_utf8(name)
        .map_err(|_| crate::Error::CorruptManifest(format!("{} in a node", not_utf8(name))))?;
    match dir {
        None => EntryPath::top(name),
        Some(d) => d.child(name),
    }
    .map_err(|e| crate::Error::CorruptManifest(format!("bad name {name:?} in a node: {e}")))
}

/// The encoded node `id` (empty for `None`), read once per visit.
fn read(src: &dyn NodeSource, id: Option<NodeId>) -> Result<Vec<u8>, crate::Error> {
    match id {
        None => Ok(Vec::new()),
        Some(id) => src.raw(&id),
    }
}

fn split<'a>(id: Option<NodeId>, bytes: &'a [u8]) -> Result<Vec<RawEntry<'a>>, crate::Error> {
    match id {
        None => Ok(Vec::new()),
        Some(id) => {
            entries(bytes).map_err(|e| crate::Error::CorruptManifest(format!("node {id:?}: {e}")))
        }
    }
}

fn entry(dir: &EntryPath, e: &RawEntry<'_>) -> Result<Entry, crate::Error> {
    e.entry()
        .map_err(|m| crate::Error::CorruptManifest(format!("entry {dir}: {m}")))
}

fn diff_dir(
    src: &dyn NodeSource,
    dir: Option<&EntryPath>,
    a: Option<NodeId>,
    b: Option<NodeId>,
    out: &mut dyn FnMut(Change) -> Result<(), crate::Error>,
) -> Result<(), crate::Error> {
    if a == b {
        return Ok(());
    }
    let (ba, bb) = (read(src, a)?, read(src, b)?);
    let (na, nb) = (split(a, &ba)?, split(b, &bb)?);
    let (mut i, mut j) = (0, 0);
    while i < na.len() || j < nb.len() {
        let (ea, eb) = (na.get(i), nb.get(j));
        let ord = match (ea, eb) {
            (Some(x), Some(y)) => x.name.cmp(y.name),
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        match (ord, ea, eb) {
            (Ordering::Less, Some(x), _) => {
                let p = child_path(dir, x.name)?;
                diff_dir(src, Some(&p), x.tree, None, out)?;
                let e = entry(&p, x)?;
                out(Change::Removed(p, e))?;
                i += 1;
            }
            (Ordering::Greater, _, Some(y)) => {
                let p = child_path(dir, y.name)?;
                let e = entry(&p, y)?;
                out(Change::Added(p.clone(), e))?;
                diff_dir(src, Some(&p), None, y.tree, out)?;
                j += 1;
            }
            (_, Some(x), Some(y)) => {
                // The same record and the same subtree: nothing to read,
                // nothing to decode, not even the name checked.
                if x.rec != y.rec || x.tree != y.tree {
                    let p = child_path(dir, x.name)?;
                    same_name(src, p, x, y, out)?;
                }
                i += 1;
                j += 1;
            }
            _ => break,
        }
    }
    Ok(())
}

/// Two entries of the same name that differ in their record or subtree.
fn same_name(
    src: &dyn NodeSource,
    p: EntryPath,
    x: &RawEntry<'_>,
    y: &RawEntry<'_>,
    out: &mut dyn FnMut(Change) -> Result<(), crate::Error>,
) -> Result<(), crate::Error> {
    let changed = x.rec != y.rec;
    if x.is_dir() && y.is_dir() {
        if changed {
            out(Change::changed(p.clone(), entry(&p, x)?, entry(&p, y)?))?;
        }
        diff_dir(src, Some(&p), x.tree, y.tree, out)
    } else if x.is_dir() || y.is_dir() {
        // A change of type: everything below the old directory goes.
        diff_dir(src, Some(&p), x.tree, None, out)?;
        diff_dir(src, Some(&p), None, y.tree, out)?;
        out(Change::changed(p.clone(), entry(&p, x)?, entry(&p, y)?))?;
        Ok(())
    } else {
        if changed {
            out(Change::changed(p.clone(), entry(&p, x)?, entry(&p, y)?))?;
        }
        // A non-directory's subtree (only a forged node has one) is
        // compared like the old diff did: not at all.
        Ok(())
    }
}
