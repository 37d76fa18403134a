//! Repair: puts every managed path of the active generation that changed on
//! the root back as the generation has it, after saving what is there in
//! the store (as `--force` does). The generation stays the same; what runs
//! is an ordinary plan through the one [`pipeline`], journalled and applied
//! like a switch, so a crash halfway is finished or undone by `recover`.
//!
//! The plan is made from a tree diff "as the root is now → the generation":
//! each drifted path becomes a change from its live state (file content,
//! mode, owner; a symlink's target; a directory's attributes) to its entry,
//! or an addition when it is missing. The kinds then plan it as any switch
//! (units that restart on a path restart when it is put back).

use serde::Serialize;
use sysgen_schema::EntryPath;

use crate::apply::{ApplyOptions, ApplyOutcome, apply};
use crate::db::Saved;
use crate::error::{GenerationError, Halfway};
use crate::files::drift_of;
use crate::host::Options;
use crate::journal::Journal;
use crate::kind::{Changes, Gen, Mode, Transition};
use crate::manifest::{Change, Entry, diff};
use crate::plan::{Action, Plan};
use crate::rootfs::Live;
use crate::{Drift, Error, Progress, State, pipeline};

pub struct RepairOptions<'a> {
    pub dry_run: bool,
    pub now: i64,
    pub fault_after: Option<u64>,
    pub progress: &'a dyn Progress,
    pub kinds: &'a Options,
}

#[derive(Debug, Serialize)]
pub struct RepairOutcome {
    /// The active generation (`None`: there is none, nothing to repair).
    pub number: Option<u64>,
    /// Each path put back (or, in a dry run, to be), and how it had changed.
    pub repaired: Vec<Drift>,
    /// Drift repair cannot undo (a directory where a file was): moved
    /// away by hand first.
    pub refused: Vec<Drift>,
    /// Copies of what was there, kept in the store before it was replaced
    /// (not serialized: a copy may be of a secret, and not even its hash
    /// leaves the store).
    #[serde(skip)]
    pub saved: Vec<Saved>,
    pub dry_run: bool,
    #[serde(skip)]
    pub plan: Plan,
    pub applied: ApplyOutcome,
}

pub fn repair(state: &mut State, opts: &RepairOptions<'_>) -> Result<RepairOutcome, Error> {
    state.refuse_if_interrupted()?;
    let mut out = RepairOutcome {
        number: None,
        repaired: Vec::new(),
        refused: Vec::new(),
        saved: Vec::new(),
        dry_run: opts.dry_run,
        plan: Plan::default(),
        applied: ApplyOutcome::default(),
    };
    let Some(active) = state.db.active()? else {
        return Ok(out);
    };
    out.number = Some(active.number);
    let (m, _) = state.db.manifest(&active.id)?.ok_or_else(|| {
        Error::Generation(GenerationError::NoSuch(format!(
            "the active generation {}'s manifest is missing",
            active.number
        )))
    })?;
    let entries = state.db.reading(|db| diff(db, None, Some(m.root)))?;
    let mut changes = Vec::new();
    for c in entries {
        let Change::Added(p, want) = c else { continue };
        let live = state.root.inspect(&p)?;
        let Some(what) = drift_of(&state.root, &p, &want, &live)? else {
            continue;
        };
        let drift = Drift {
            path: p.to_string(),
            what,
        };
        match as_entry(state, &p, &live)? {
            Some(now) => {
                // A copy of what differs in content goes to the store first.
                if !now.is_dir() && content_differs(&now, &want) {
                    out.saved.push(Saved {
                        path: p.clone(),
                        hash: content_hash(&now),
                        why: format!("{}; saved before repair put it back", drift.what),
                        secret: want.is_secret(),
                    });
                }
                changes.push(Change::changed(p, now, want));
            }
            None if matches!(live, Live::Absent) => changes.push(Change::Added(p, want)),
            None => {
                out.refused.push(drift);
                continue;
            }
        }
        out.repaired.push(drift);
    }
    if changes.is_empty() {
        return Ok(out);
    }
    let ledger = state.db.ledger()?;
    let here = Gen {
        number: active.number,
        id: active.id,
        manifest: &m,
    };
    let planned = pipeline::plan(
        &Transition {
            state,
            from: Some(here),
            to: Some(here),
            to_number: active.number,
            changes: Changes::new(changes),
            ledger: &ledger,
            mode: Mode::Switch {
                force: true,
                dry_run: opts.dry_run,
            },
            opts: opts.kinds,
            now: opts.now,
        },
        &[],
        Action::Activate {
            number: active.number,
            id: active.id,
        },
    )?;
    out.plan = planned.plan;
    out.plan.saved.extend(out.saved.iter().cloned());
    pipeline::check_space(state, &out.plan)?;
    if opts.dry_run {
        return Ok(out);
    }
    pipeline::prepare(state, &mut out.plan, opts.now)?;
    let journal = Journal::new(
        "repair",
        Some((active.number, active.id)),
        active.number,
        active.id,
        opts.now,
        std::mem::take(&mut out.plan),
    );
    journal.write(&state.journal_path())?;
    out.applied = apply(
        &state.root,
        &state.store,
        &mut state.db,
        &journal,
        &ApplyOptions {
            now: opts.now,
            kinds: opts.kinds,
            fault_after: opts.fault_after,
            progress: opts.progress,
            how: None,
        },
    )
    .map_err(|f| {
        Error::Halfway(Box::new(Halfway {
            what: "repair".into(),
            from: Some(active.number),
            to: active.number,
            step: Some(f.step),
            cause: f.cause,
        }))
    })?;
    Journal::remove(&state.journal_path())?;
    out.plan = journal.plan;
    Ok(out)
}

/// What is at `p` on the root as a tree entry, for the diff a repair
/// plans from; `None` for nothing, or for what sysgen never replaces.
fn as_entry(state: &State, p: &EntryPath, live: &Live) -> Result<Option<Entry>, Error> {
    Ok(match live {
        Live::File(meta) => {
            let (h, size) = state.root.hash_file(p)?;
            Some(Entry::File {
                hash: sysgen_store::Hash::from_bytes(*h.as_bytes()),
                size,
                mode: meta.mode,
                uid: Some(meta.uid),
                gid: Some(meta.gid),
                secret: false,
                xattrs: managed_xattrs(state, p)?,
                // A hard link is put back as the file it names.
                link: None,
            })
        }
        Live::Dir(meta) => Some(Entry::Dir {
            mode: Some(meta.mode),
            uid: Some(meta.uid),
            gid: Some(meta.gid),
            xattrs: managed_xattrs(state, p)?,
        }),
        Live::Symlink { target, uid, gid } => Some(Entry::Symlink {
            target: target.clone(),
            uid: Some(*uid),
            gid: Some(*gid),
        }),
        _ => None,
    })
}

/// The attributes sysgen always manages (a capability, ACLs) of what is
/// at `p`: `user.*` ones the generation does not record are not drift.
fn managed_xattrs(state: &State, p: &EntryPath) -> Result<crate::rootfs::Xattrs, Error> {
    Ok(state
        .root
        .xattrs(p, &|n| crate::rootfs::xattr::recorded(n, false))?)
}

/// Whether putting `want` back replaces content (not only attributes).
fn content_differs(now: &Entry, want: &Entry) -> bool {
    match (now, want) {
        (Entry::File { hash: a, .. }, Entry::File { hash: b, .. }) => a != b,
        (Entry::Symlink { target: a, .. }, Entry::Symlink { target: b, .. }) => a != b,
        _ => true,
    }
}

/// The hash a saved copy of `e` is kept under: a file's content, a
/// symlink's target.
fn content_hash(e: &Entry) -> sysgen_store::Hash {
    match e {
        Entry::File { hash, .. } => *hash,
        Entry::Symlink { target, .. } => sysgen_store::Hash::of(target.as_bytes()),
        Entry::Dir { .. } => sysgen_store::Hash::of(b""),
    }
}
