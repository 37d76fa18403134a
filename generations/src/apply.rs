//! Apply: run a journalled plan on the root, step by step, through the one
//! writer ([`RootDir`]). Each step converges its path to the state it
//! names whatever it finds there, so a plan interrupted anywhere can be run
//! again from its first step (`recover`).
//!
//! Fault injection: with `fault_after = Some(k)`, the process aborts right
//! after the k-th applied step, with no cleanup, as a power cut would. The
//! CLI sets it from `SYSGEN_FAULT_AFTER_STEPS`; it is part of release
//! builds so crash tests exercise the real binary.

use std::io;

use sysgen_store::{Area, Store};

use crate::db::{Activation, Db};
use crate::journal::Journal;
use crate::plan::Step;
use crate::rootfs::{Live, Owner, Removed, RootDir};
use crate::{Error, Progress};

pub struct ApplyOptions<'a> {
    pub now: i64,
    pub fault_after: Option<u64>,
    pub progress: &'a dyn Progress,
    /// Where btrfs and zfs are, for dataset steps.
    pub tools: &'a crate::datasets::Tools,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ApplyOutcome {
    pub steps: u64,
    /// Directories that left the configuration but still hold unmanaged files.
    pub kept: Vec<String>,
}

/// Runs every step of the journal's plan, the activation included.
pub fn apply(
    root: &RootDir,
    store: &Store,
    db: &mut Db,
    journal: &Journal,
    opts: &ApplyOptions<'_>,
) -> Result<ApplyOutcome, Error> {
    let mut out = ApplyOutcome::default();
    opts.progress
        .start("applying", journal.plan.steps.len() as u64);
    for step in &journal.plan.steps {
        run(root, store, db, journal, step, opts, &mut out)?;
        out.steps += 1;
        opts.progress.advance(1);
        if opts.fault_after == Some(out.steps) {
            // A simulated power cut: no unwinding, no cleanup, no flush.
            std::process::abort();
        }
    }
    opts.progress.finish();
    Ok(out)
}

fn owner(uid: Option<u32>, gid: Option<u32>) -> Owner {
    Owner { uid, gid }
}

fn run(
    root: &RootDir,
    store: &Store,
    db: &mut Db,
    journal: &Journal,
    step: &Step,
    opts: &ApplyOptions<'_>,
    out: &mut ApplyOutcome,
) -> Result<(), Error> {
    let now = opts.now;
    match step {
        Step::Remove { path, .. } => {
            if root.remove(path)? == Removed::KeptNotEmpty {
                out.kept.push(path.to_string());
            }
        }
        Step::PutFile {
            path,
            hash,
            mode,
            uid,
            gid,
            secret,
            ..
        } => {
            clear_dir(root, path)?;
            let area = if *secret { Area::Secret } else { Area::Public };
            // The store verifies the content against its hash while it is
            // copied; on a mismatch the temp file is discarded, never renamed.
            root.put_file(path, *mode, owner(*uid, *gid), &mut |w| {
                store
                    .copy_to(hash, area, w)
                    .map(|_| ())
                    .map_err(io::Error::other)
            })?;
        }
        Step::PutSymlink {
            path,
            target,
            uid,
            gid,
            ..
        } => {
            clear_dir(root, path)?;
            root.put_symlink(path, target, owner(*uid, *gid))?;
        }
        Step::MakeDir {
            path,
            mode,
            uid,
            gid,
            ..
        } => {
            // Converge: a file or symlink left here by an interrupted plan goes first.
            if matches!(root.inspect(path)?, Live::File(_) | Live::Symlink { .. }) {
                root.remove(path)?;
            }
            root.make_dir(path, *mode, owner(*uid, *gid))?;
        }
        Step::SetMeta {
            path,
            mode,
            uid,
            gid,
            ..
        } => {
            if matches!(
                root.inspect(path)?,
                Live::File(_) | Live::Dir(_) | Live::Symlink { .. }
            ) {
                root.set_meta(path, *mode, owner(*uid, *gid))?;
            }
        }
        Step::Dataset(d) => crate::datasets::apply_step(root, db, opts.tools, d, now)?,
        Step::Activate { number, id } => {
            root.sync().map_err(|e| Error::Io {
                path: root.path().to_owned(),
                source: e,
            })?;
            activate(db, journal, Some((*number, *id)), now)?;
        }
        Step::Deactivate => {
            root.sync().map_err(|e| Error::Io {
                path: root.path().to_owned(),
                source: e,
            })?;
            activate(db, journal, None, now)?;
        }
    }
    Ok(())
}

/// Commits the activation unless the target is active already: a re-run
/// by `recover`, or the undoing of a switch that never committed, which
/// has nothing to record.
fn activate(
    db: &mut Db,
    journal: &Journal,
    target: Option<(u64, crate::GenerationId)>,
    now: i64,
) -> Result<(), Error> {
    if db.active()?.map(|a| a.id) == target.map(|t| t.1) {
        return Ok(());
    }
    db.activate(&Activation {
        target,
        at: now,
        how: &journal.how,
        ledger_add: &journal.plan.ledger_add,
        ledger_remove: &journal.plan.ledger_remove,
    })
}

/// An empty directory where a file or symlink must go (left by an
/// interrupted plan) is removed; one with contents is an error, reported by
/// the rename that follows.
fn clear_dir(root: &RootDir, path: &sysgen_schema::EntryPath) -> Result<(), Error> {
    if let Live::Dir(_) = root.inspect(path)? {
        root.remove(path)?;
    }
    Ok(())
}
