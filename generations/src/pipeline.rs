//! The one plan pipeline. `switch`, `rollback`, `recover --rollback` and
//! the automatic rollback after a failed activation check all make their
//! plan here, and differ only in the [`Transition`] they describe:
//!
//! 1. claims: the paths whose removal a kind takes over (pure);
//! 2. inspect: every kind reads the live root (nothing is written);
//! 3. refuse: conflicts, and drift unless `--force`, every path named;
//! 4. plan: every kind's pure planner; one stable sort by phase;
//! 5. [`prepare`] (not for a dry run): what must be in the store before the
//!    journal is written (saved copies, package files), then recorded.
//!
//! A dry run stops after 4, having written nothing anywhere.

use std::io::Read;

use sysgen_store::{Area, Hash};

use crate::db::Origin;
use crate::error::Refusal;
use crate::kind::{Claims, Mode, Transition};
use crate::kinds::{self, KindStep};
use crate::plan::{Action, Plan, Step};
use crate::rootfs::Live;
use crate::text::human_bytes;
use crate::{Drift, Error, State, io_err};

/// A plan and what its inspection found.
pub struct Planned {
    pub plan: Plan,
    /// Drifted paths that `--force` overwrites (saved first).
    pub forced: Vec<Drift>,
}

/// Plans `t`, ending with `last` (the activation). Reads the root and the
/// state; writes nothing. `undone`: in an undo, the plan of the switch
/// being undone (each kind gets its own steps of it).
pub fn plan(t: &Transition<'_>, undone: &[Step], last: Action) -> Result<Planned, Error> {
    let kinds = kinds::all();
    let undone: Vec<&KindStep> = undone.iter().filter_map(Step::kind_step).collect();
    let mut claims = Claims::new();
    for k in kinds {
        claims.extend(k.claims(t, &undone)?);
    }
    let mut looks = Vec::with_capacity(kinds.len());
    for k in kinds {
        looks.push(k.inspect(t, &claims, &undone)?);
    }
    let mut plan = Plan::default();
    let mut conflicts = Vec::new();
    let mut drift = Vec::new();
    for l in &mut looks {
        conflicts.append(&mut l.conflicts);
        drift.append(&mut l.drift);
        plan.saved.append(&mut l.saved);
        plan.ledger_add.append(&mut l.ledger_add);
    }
    if let Mode::Switch { force, .. } = t.mode {
        if !conflicts.is_empty() {
            return Err(Refusal::Conflict(conflicts).into());
        }
        if !drift.is_empty() && !force {
            return Err(Refusal::Drift {
                since: t.from.map_or(0, |g| g.number),
                paths: drift,
            }
            .into());
        }
    }
    // The planners are asked last kind first: the tree's, first in the
    // list, takes the changes the others may still read (`Changes::take`).
    // Their steps and records are then put together in the list's order.
    let mut planned: Vec<_> = looks.into_iter().rev().map(|l| (l.planner)()).collect();
    planned.reverse();
    let mut steps = Vec::new();
    for p in planned {
        // The tree's steps come first and are most of a first switch: one
        // allocation for them, never two.
        let mine = p.steps.into_iter().map(|(phase, k)| Step {
            phase,
            action: Action::Kind(k),
        });
        if steps.is_empty() {
            steps = mine.collect();
        } else {
            steps.extend(mine);
        }
        plan.ledger_remove.extend(p.ledger_remove);
    }
    plan.steps = Plan::order(steps, last);
    Ok(Planned {
        plan,
        forced: drift,
    })
}

// A first switch's plan is a step per file. Its last conversion (a kind's
// `(phase, step)` into a `Step`) is collected in place while the two are of
// one size; the kinds' wrapping before it goes through
// [`crate::plan::map_shrinking`].
const _: () =
    assert!(std::mem::size_of::<(crate::kind::Phase, KindStep)>() == std::mem::size_of::<Step>());

/// Headroom over what the plan writes: a tenth more, and a few MiB for
/// the database, the journal and the temporary names of the writes.
const SPACE_SLACK: u64 = 4 << 20;
/// Headroom over the entries the plan creates.
const INODE_SLACK: u64 = 64;

/// Refuses a plan whose writes do not fit on the root's filesystem, with
/// headroom, before anything is written (the journal included): a disk that
/// fills halfway leaves the root between two generations. Only what the
/// plan writes is counted, not what it frees (its removals may run after
/// its writes), and only on the root's own filesystem.
pub fn check_space(state: &State, plan: &Plan) -> Result<(), Error> {
    let free = state.root.free_space().map_err(io_err(state.root.path()))?;
    let (mut bytes, mut blocks, mut entries) = (0u64, 0u64, 0u64);
    for k in plan.steps.iter().filter_map(Step::kind_step) {
        let n = k.needs();
        bytes = bytes.saturating_add(n.bytes);
        blocks = blocks.saturating_add(n.bytes.div_ceil(free.block));
        entries = entries.saturating_add(n.entries);
    }
    let root = state.root.path().display().to_string();
    // Anything but the activation writes to the root (a purge, a unit
    // enabled): a read-only root takes none of it.
    if free.read_only && plan.steps.iter().any(|s| s.kind_step().is_some()) {
        return Err(Refusal::ReadOnly { root }.into());
    }
    if let Some(have) = free.bytes
        && bytes > 0
    {
        let used = blocks.saturating_mul(free.block);
        let need = used.saturating_add(used / 10).saturating_add(SPACE_SLACK);
        if have < need {
            return Err(Refusal::NoSpace {
                root,
                what: "space",
                plan: format!("writes {}", human_bytes(bytes)),
                free: human_bytes(have),
                need: human_bytes(need),
            }
            .into());
        }
    }
    if let Some(have) = free.inodes
        && entries > 0
    {
        let need = entries
            .saturating_add(entries / 10)
            .saturating_add(INODE_SLACK);
        if have < need {
            return Err(Refusal::NoSpace {
                root,
                what: "inodes",
                plan: format!("creates {entries} new entries"),
                free: format!("{have} inodes"),
                need: format!("{need} inodes"),
            }
            .into());
        }
    }
    Ok(())
}

/// What must happen before the journal is written: every kind's
/// preparation (package files fetched into the store), then every copy the
/// plan keeps (what was at a newly managed path, a drifted file `--force`
/// overwrites, a changed conffile) saved in the store and recorded. A
/// failure here changes nothing on the root.
pub fn prepare(state: &mut State, plan: &mut Plan, now: i64) -> Result<(), Error> {
    let mut steps: Vec<&mut KindStep> = plan
        .steps
        .iter_mut()
        .filter_map(|s| match &mut s.action {
            Action::Kind(k) => Some(k),
            _ => None,
        })
        .collect();
    for k in kinds::all() {
        k.prepare(state, &mut steps)?;
    }
    for (p, o) in &plan.ledger_add {
        if let Origin::File { hash, .. } = o {
            keep(state, p, hash)?;
        }
    }
    for s in &plan.saved {
        keep(state, &s.path, &s.hash)?;
    }
    check_reads(state, &plan.steps)?;
    state.db.insert_saved(&plan.saved, now)
}

/// Refuses the plan, before anything changes, if the store cannot give an
/// object one of its steps reads (missing, or lost with a damaged pack).
/// An object whose content is still on the root at the step's path is put
/// back first. Only what the store does not hold is read through (to say
/// why): reading every object twice would double a first switch, and a
/// stored object whose bytes rotted is caught as it is copied (the copy is
/// checked against its hash and never renamed into place).
fn check_reads(state: &State, steps: &[Step]) -> Result<(), Error> {
    use rayon::prelude::*;
    // Every read is looked up where it stands, in parallel, and only what
    // the store lacks is kept: a list of every read of a first switch (and
    // a set to skip repeated contents) held about 100 bytes a file. A
    // content several steps read is looked up once per step; a lookup is
    // an index probe or a `stat`.
    let store = &state.store;
    let missing: Vec<(&KindStep, Hash, Area)> = steps
        .par_iter()
        .filter_map(Step::kind_step)
        .flat_map_iter(|k| {
            k.reads()
                .into_iter()
                .map(move |(hash, area)| (k, hash, area))
        })
        .filter_map(|(k, hash, area)| match store.contains(&hash, area) {
            Ok(true) => None,
            Ok(false) => Some(Ok((k, hash, area))),
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<_, _>>()?;
    // The first step that reads a missing content names it, as before.
    let mut seen = sysgen_store::HashKeySet::default();
    let reads: Vec<_> = missing
        .into_iter()
        .filter(|(_, hash, area)| seen.insert((*hash, *area)))
        .collect();
    let health: Vec<_> = reads
        .par_iter()
        .map(|(_, hash, area)| store.health(hash, *area))
        .collect();
    let mut bad = Vec::new();
    for ((k, hash, area), health) in reads.iter().zip(health) {
        let Some(what) = crate::storecheck::problem(&health?) else {
            continue;
        };
        if let Some(p) = k.path()
            && crate::storecheck::put_back(state, p, hash, *area)?
        {
            continue;
        }
        bad.push(match (k.path(), area) {
            (Some(p), Area::Public) => {
                format!("{}: its content {hash} is {what}", state.root.display(p))
            }
            (Some(p), Area::Secret) => {
                format!("{}: its content (secret) is {what}", state.root.display(p))
            }
            (None, _) => format!("{k}: a package file it installs ({hash}) is {what}"),
        });
    }
    if bad.is_empty() {
        Ok(())
    } else {
        bad.sort();
        Err(Refusal::Unreadable(bad).into())
    }
}

/// Puts what is at `p` on the root (a file's bytes, a symlink's target)
/// into the secret area, and checks it is what the inspection hashed.
fn keep(state: &State, p: &sysgen_schema::EntryPath, want: &Hash) -> Result<(), Error> {
    let root = &state.root;
    let bytes = match root.inspect(p)? {
        Live::Symlink { target, .. } => target.into_bytes(),
        _ => {
            let mut bytes = Vec::new();
            root.open_file(p)?
                .read_to_end(&mut bytes)
                .map_err(io_err(root.display(p)))?;
            bytes
        }
    };
    // Backups and admin copies may hold anything: root-only area.
    let got = state.store.put_bytes(&bytes, Area::Secret)?;
    if &got != want {
        return Err(Error::ChangedWhileSaving {
            path: root.display(p),
        });
    }
    Ok(())
}

/// Counts of a tree diff: added, removed, changed.
pub fn count(changes: &[crate::manifest::Change]) -> (u64, u64, u64) {
    use crate::manifest::Change;
    let mut n = (0, 0, 0);
    for c in changes {
        match c {
            Change::Added(..) => n.0 += 1,
            Change::Removed(..) => n.1 += 1,
            Change::Changed(..) => n.2 += 1,
        }
    }
    n
}
