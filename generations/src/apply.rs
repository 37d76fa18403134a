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
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use sysgen_schema::EntryPath;
use sysgen_store::{Area, Hash, Store};

use crate::db::{Activation, Db};
use crate::journal::Journal;
use crate::plan::Step;
use crate::rootfs::{Live, Owner, ParentDir, Removed, RootDir};
use crate::{Error, Progress};

pub struct ApplyOptions<'a> {
    pub now: i64,
    pub services: &'a crate::services::ServiceOptions,
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
    /// Units that did not come up (only when the switch does not roll back
    /// on a failure).
    pub failed: Vec<crate::services::Failure>,
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
    let steps = &journal.plan.steps;
    opts.progress.start("applying", steps.len() as u64);
    let done = AtomicU64::new(0);
    let step_done = || {
        let n = done.fetch_add(1, Ordering::SeqCst) + 1;
        opts.progress.advance(1);
        if opts.fault_after == Some(n) {
            // A simulated power cut: no unwinding, no cleanup, no flush.
            std::process::abort();
        }
    };
    let mut i = 0;
    while i < steps.len() {
        let puts: Vec<Put<'_>> = steps[i..].iter().map_while(Put::of).collect();
        if puts.len() > 1 {
            // Writing files is most of a large switch; the steps of such a
            // run write distinct paths whose parents earlier steps made, so
            // they can run in any order, on every core.
            // Entries of one directory go together, through one handle on it.
            let groups: Vec<&[Put<'_>]> = puts
                .chunk_by(|a, b| a.path().parent() == b.path().parent())
                .flat_map(|g| g.chunks(PUT_GROUP))
                .collect();
            groups.par_iter().try_for_each(|g| -> Result<(), Error> {
                let parent = root.open_parent(g[0].path())?;
                let mut result = Ok(());
                for p in *g {
                    result = p.run_in(root, Some(&parent), store);
                    if result.is_err() {
                        break;
                    }
                    step_done();
                }
                // Even after an error: what was written must reach the disk.
                root.touched(&parent);
                result
            })?;
            i += puts.len();
        } else {
            run(root, store, db, journal, &steps[i], opts, &mut out)?;
            step_done();
            i += 1;
        }
    }
    out.steps = done.into_inner();
    opts.progress.finish();
    Ok(out)
}

/// The most entries of one directory written by one task: a directory of
/// thousands of files still spreads over every core.
const PUT_GROUP: usize = 64;

/// A step that writes one file or symlink, touching no other path.
enum Put<'a> {
    File {
        path: &'a EntryPath,
        hash: &'a Hash,
        mode: u32,
        owner: Owner,
        area: Area,
    },
    Symlink {
        path: &'a EntryPath,
        target: &'a str,
        owner: Owner,
    },
}

impl<'a> Put<'a> {
    fn of(step: &'a Step) -> Option<Put<'a>> {
        match step {
            Step::PutFile {
                path,
                hash,
                mode,
                uid,
                gid,
                secret,
                ..
            } => Some(Put::File {
                path,
                hash,
                mode: *mode,
                owner: owner(*uid, *gid),
                area: if *secret { Area::Secret } else { Area::Public },
            }),
            Step::PutSymlink {
                path,
                target,
                uid,
                gid,
                ..
            } => Some(Put::Symlink {
                path,
                target,
                owner: owner(*uid, *gid),
            }),
            _ => None,
        }
    }

    fn path(&self) -> &'a EntryPath {
        match self {
            Put::File { path, .. } | Put::Symlink { path, .. } => path,
        }
    }

    /// Runs the step through `parent`, or through a handle of its own.
    fn run_in(
        &self,
        root: &RootDir,
        parent: Option<&ParentDir>,
        store: &Store,
    ) -> Result<(), Error> {
        match *self {
            // The store verifies the content against its hash while it is
            // copied; on a mismatch the temp file is discarded, never renamed.
            Put::File {
                path,
                hash,
                mode,
                owner,
                area,
            } => {
                let fill = &mut |w: &mut dyn io::Write| {
                    store
                        .copy_to(hash, area, w)
                        .map(|_| ())
                        .map_err(io::Error::other)
                };
                match parent {
                    Some(d) => root.put_file_in(d, path, mode, owner, fill)?,
                    None => root.put_file(path, mode, owner, fill)?,
                }
            }
            Put::Symlink {
                path,
                target,
                owner,
            } => match parent {
                Some(d) => root.put_symlink_in(d, path, target, owner)?,
                None => root.put_symlink(path, target, owner)?,
            },
        }
        Ok(())
    }
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
        // A lone file or symlink; runs of them are written in parallel by `apply`.
        Step::PutFile { .. } | Step::PutSymlink { .. } => {
            if let Some(p) = Put::of(step) {
                p.run_in(root, None, store)?;
            }
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
        Step::Service(s) => {
            crate::services::apply_step(root.path(), db, opts.services, s, &mut out.failed)?;
        }
        Step::Package(s) => crate::packages::apply(root, store, db, s)?,
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
