//! What a switch's datasets find on the live root, before anything changes.

use std::collections::BTreeMap;

use sysgen_schema::EntryPath;

use super::backend::{self, Mounts};
use super::plan::undo_expect;
use super::plan::{arriving, leaving, released};
use super::{Context, DatasetStep, Datasets, Facts, How};
use crate::Error;
use crate::rootfs::{Live, RootDir};

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
    let tools = &cx.opts.tools;
    let mut facts = Facts::default();
    let mut conflicts = Vec::new();
    let mounts = Mounts::read();
    for (p, d) in arriving(old, new) {
        if let Some(o) = old.0.get(p) {
            conflicts.push(format!(
                "{p}: the dataset changes from a {} to a {}; sysgen does not convert datasets: declare the new one at another path and move the data yourself",
                o.kind, d.kind
            ));
            continue;
        }
        let b = backend::of(&d.kind, tools);
        if let Err(e) = b.check_tool(p) {
            conflicts.push(e);
            continue;
        }
        // Nothing of a dataset is made through a symlink, which a tool
        // would follow (perhaps out of the root), or under a file. The
        // backend is still asked: `recover --rollback` plans with its
        // answer and ignores the conflicts.
        if let Live::Blocked { at, what } = root.inspect(p)? {
            conflicts.push(format!(
                "{p}: {at} is a {what} on the root, where the dataset ({}) needs a directory (name clash); move it away first",
                d.kind
            ));
        }
        match b.arrival(root, p, cx.known.get(p))? {
            Ok(how) => {
                let id = match how {
                    How::Adopt => b.identity(root, p)?,
                    How::Reattach => b.detached_identity(root, p)?,
                    How::Create => None,
                };
                // What a switch would adopt or bring back must be the
                // dataset (zfs: a dataset of the name made while the
                // detached one is kept is not).
                if let Some(why) = b.stranger(root, p, id.as_deref())? {
                    conflicts.push(why);
                }
                if let Some(id) = id {
                    facts.expect.insert(p.clone(), id);
                }
                facts.how.insert(p.clone(), how);
            }
            Err(why) => conflicts.push(why),
        }
    }
    // A dataset of the active generation whose path holds a stranger
    // while its data is kept aside: snapshotting, detaching or keeping
    // it would take the stranger for it (a btrfs snapshot of a plain
    // directory fails halfway).
    for (p, d) in &old.0 {
        let b = backend::of(&d.kind, tools);
        if b.check_tool(p).is_ok()
            && let Some(why) = b.stranger(root, p, None)?
        {
            conflicts.push(why);
        }
    }
    for (p, d) in leaving(old, new) {
        if released(p, cx.changes, cx.ledger) {
            continue;
        }
        let b = backend::of(&d.kind, tools);
        if let Err(e) = b.check_tool(p) {
            conflicts.push(e);
            continue;
        }
        if let Some(id) = b.identity(root, p)? {
            facts.ids.insert(p.clone(), id);
        }
        if b.busy(root, &mounts, p) {
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
        let b = backend::of(&d.kind, tools);
        if let Err(e) = b.check_tool(p) {
            conflicts.push(e);
            continue;
        }
        if !b.present(root, p)? {
            facts.missing.insert(p.clone());
        }
    }
    if cx.opts.with_data {
        for (p, d) in &new.0 {
            if let Some(snap) = restores.get(p) {
                conflicts
                    .extend(backend::of(&d.kind, tools).check_restore(root, &mounts, p, snap)?);
            }
        }
    }
    Ok((facts, conflicts))
}

/// For `recover --rollback`: every dataset the undo brings back whose path
/// holds something that is not that dataset. The undo is refused with
/// these, before anything changes: taking a stranger for the dataset would
/// leave the real one orphaned in its retention area.
pub fn strangers(
    root: &RootDir,
    old: &Datasets,
    new: &Datasets,
    facts: &Facts,
    undone: &[DatasetStep],
    cx: &Context<'_>,
) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    for (p, d) in arriving(old, new) {
        let b = backend::of(&d.kind, &cx.opts.tools);
        if b.check_tool(p).is_err() {
            continue;
        }
        let expect = undo_expect(undone, p, facts);
        out.extend(b.stranger(root, p, expect.as_deref())?);
    }
    Ok(out)
}
