//! Switch: the one orchestrator that makes a generation active.
//!
//! 1. refuse while an earlier switch is interrupted;
//! 2. diff the active manifest against the target (Merkle: only what changed);
//! 3. precheck the live root (drift, what is already there) — refuse with
//!    every offending path named before anything changes;
//! 4. plan (pure); refuse a plan whose writes do not fit on the root's
//!    filesystem; with `--dry-run`, stop here and return the plan;
//! 5. write the journal durably;
//! 6. apply the steps, the last of which syncs and commits the activation
//!    (a step that fails leaves the root between the two generations: the
//!    error says so, [`crate::error::Halfway`]);
//! 7. remove the journal.
//!
//! Rollback is the same switch to an older generation: history is
//! append-only, so it adds an activation record and never a number.

use std::io::Read;

use serde::Serialize;
use sysgen_schema::EntryPath;

use crate::apply::{ApplyOptions, ApplyOutcome, StepFailed, apply};
use crate::db::Saved;
use crate::error::{GenerationError, Halfway, Refusal, ServiceError};
use crate::host::Options;
use crate::journal::Journal;
use crate::kind::Failure;
use crate::kind::{Changes, Gen, Mode, Transition};
use crate::manifest::{GenerationId, diff};
use crate::plan::{Action, Plan};
use crate::recover::{RecoverOptions, recover};
use crate::rootfs::Live;
use crate::{Error, Progress, State, pipeline};

pub struct SwitchOptions<'a> {
    pub force: bool,
    pub dry_run: bool,
    pub now: i64,
    pub fault_after: Option<u64>,
    /// "switch" or "rollback", recorded in the history.
    pub how: &'a str,
    pub progress: &'a dyn Progress,
    /// What the kinds need from the host (tools, systemd, `--with-data`).
    pub kinds: &'a Options,
}

#[derive(Debug, Clone, Serialize)]
pub struct SwitchOutcome {
    pub from: Option<u64>,
    pub number: u64,
    pub id: GenerationId,
    /// True when the target was already active: nothing was done.
    pub unchanged: bool,
    pub dry_run: bool,
    pub plan: Plan,
    pub applied: ApplyOutcome,
    pub saved: Vec<Saved>,
    /// Drifted paths that `--force` overwrote.
    pub forced: Vec<crate::Drift>,
    pub added: u64,
    pub removed: u64,
    pub changed: u64,
}

/// Makes the generation `id` (already built) the active one.
pub fn switch_to(
    state: &mut State,
    id: GenerationId,
    opts: &SwitchOptions<'_>,
) -> Result<SwitchOutcome, Error> {
    state.refuse_if_interrupted()?;
    let (target, _) = state.db.manifest(&id)?.ok_or_else(|| {
        Error::Generation(GenerationError::NoSuch(format!(
            "no generation has id {id}; `sysgen list` shows them"
        )))
    })?;
    // A generation gc deleted whose manifest is here again (its configuration
    // was built anew) comes back under its number: one content, one generation.
    let existing = state.db.generation_of(&id)?;
    let active = state.db.active()?;
    let number = match &existing {
        Some(g) => g.number,
        None => state.db.next_number()?,
    };
    let from = active.as_ref().map(|a| a.number);
    let mut outcome = SwitchOutcome {
        from,
        number,
        id,
        unchanged: false,
        dry_run: opts.dry_run,
        plan: Plan::default(),
        applied: ApplyOutcome::default(),
        saved: Vec::new(),
        forced: Vec::new(),
        added: 0,
        removed: 0,
        changed: 0,
    };
    if active.as_ref().is_some_and(|a| a.id == id) {
        outcome.unchanged = true;
        return Ok(outcome);
    }
    if let (Some(want), false) = (&target.host, opts.force) {
        check_host(state, want)?;
    }
    let old = match &active {
        Some(a) => Some((
            a,
            state
                .db
                .manifest(&a.id)?
                .ok_or_else(|| {
                    Error::CorruptManifest(format!(
                        "the active generation {}'s manifest is missing",
                        a.number
                    ))
                })?
                .0,
        )),
        None => None,
    };
    if old.is_none() {
        // A first switch's diff reads every node of the tree, once: through
        // SQLite's bounded cache, not the memory map, whose every page
        // touched stayed resident to the end (gc does the same).
        state.db.unmap()?;
    }
    let changes = state
        .db
        .reading(|db| diff(db, old.as_ref().map(|(_, m)| m.root), Some(target.root)))?;
    (outcome.added, outcome.removed, outcome.changed) = pipeline::count(&changes);
    let ledger = state.db.ledger()?;
    let planned = pipeline::plan(
        &Transition {
            state,
            from: old.as_ref().map(|(a, m)| Gen {
                number: a.number,
                id: a.id,
                manifest: m,
            }),
            to: Some(Gen {
                number,
                id,
                manifest: &target,
            }),
            to_number: number,
            changes: Changes::new(changes),
            ledger: &ledger,
            mode: Mode::Switch {
                force: opts.force,
                dry_run: opts.dry_run,
            },
            opts: opts.kinds,
            now: opts.now,
        },
        &[],
        Action::Activate { number, id },
    )?;
    outcome.plan = planned.plan;
    outcome.forced = planned.forced;
    // A dry run refuses too, as it does conflicts: it tells whether the
    // switch would go.
    pipeline::check_space(state, &outcome.plan)?;
    if opts.dry_run {
        outcome.saved = outcome.plan.saved.clone();
        return Ok(outcome);
    }
    // What the plan keeps and fetches goes into the store before the
    // journal: a failure here changes nothing, and the journal's plan then
    // runs offline.
    pipeline::prepare(state, &mut outcome.plan, opts.now)?;
    outcome.saved = std::mem::take(&mut outcome.plan.saved);
    // The journal holds the plan while it runs, and hands it back for the
    // outcome: a copy would double a first switch's step per file.
    let journal = Journal::new(
        opts.how,
        active.as_ref().map(|a| (a.number, a.id)),
        number,
        id,
        opts.now,
        std::mem::take(&mut outcome.plan),
    );
    journal.write(&state.journal_path())?;
    let applied = apply(
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
    );
    outcome.applied = match applied {
        Ok(a) => a,
        // A unit did not come up: undo the switch as `recover --rollback`
        // would (the journal is still there), then report the unit.
        Err(f) => match *f {
            StepFailed {
                cause:
                    Error::Service(ServiceError::Failed {
                        failure,
                        rolled_back: None,
                    }),
                ..
            } => return Err(roll_back_after(state, failure, opts)),
            // Anything else leaves the root between the two generations:
            // say so, and what each way out does.
            f => {
                return Err(Error::Halfway(Box::new(Halfway {
                    what: opts.how.to_owned(),
                    from,
                    to: number,
                    step: Some(f.step),
                    cause: f.cause,
                })));
            }
        },
    };
    Journal::remove(&state.journal_path())?;
    outcome.plan = journal.plan;
    Ok(outcome)
}

fn roll_back_after(state: &mut State, failure: Failure, opts: &SwitchOptions<'_>) -> Error {
    // The old generation's units are started as well as they can be; one
    // that fails there too is reported, not undone again.
    let mut kinds = opts.kinds.clone();
    kinds.rollback_on_failure = false;
    let undo = recover(
        state,
        &RecoverOptions {
            rollback: true,
            now: opts.now,
            fault_after: None,
            progress: opts.progress,
            kinds: &kinds,
            automatic: true,
        },
    );
    match undo {
        Ok(r) => Error::Service(ServiceError::Failed {
            failure,
            rolled_back: Some(r.active),
        }),
        Err(e) => Error::Service(ServiceError::RollbackFailed {
            failure,
            why: e.to_string(),
        }),
    }
}

fn check_host(state: &State, want: &str) -> Result<(), Error> {
    let p = EntryPath::parse("/etc/hostname")
        .map_err(|e| Error::Internal(format!("/etc/hostname: {e}")))?;
    if !matches!(state.root.inspect(&p)?, Live::File(_)) {
        return Ok(());
    }
    let mut have = String::new();
    state
        .root
        .open_file(&p)?
        .read_to_string(&mut have)
        .map_err(crate::io_err(state.root.display(&p)))?;
    let have = have.trim();
    if !have.is_empty() && have != want {
        return Err(Refusal::HostMismatch {
            want: want.to_owned(),
            have: have.to_owned(),
            root: state
                .root
                .path()
                .display()
                .to_string()
                .trim_end_matches('/')
                .to_owned(),
        }
        .into());
    }
    Ok(())
}

/// Resolves a generation given as a number, an id or an id prefix.
pub fn resolve(state: &State, what: &str) -> Result<GenerationId, Error> {
    if let Ok(n) = what.parse::<u64>()
        && what.len() < 12
    {
        return match state.db.generation(n)? {
            Some(g) if g.collected_at.is_some() => Err(GenerationError::Collected(n).into()),
            Some(g) => Ok(g.id),
            None => Err(Error::Generation(GenerationError::NoSuch(format!(
                "there is no generation {n}; `sysgen list` shows them"
            )))),
        };
    }
    let hex = what.to_ascii_lowercase();
    if hex.len() < 4 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::Generation(GenerationError::NoSuch(format!(
            "{what:?} is neither a generation number nor an id (at least 4 hex digits); `sysgen list` shows them"
        ))));
    }
    let found = state.db.manifests_with_prefix(&hex)?;
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(Error::Generation(GenerationError::NoSuch(format!(
            "no generation id starts with {hex}; `sysgen list` shows them"
        )))),
        many => Err(Error::Generation(GenerationError::NoSuch(format!(
            "{hex} is ambiguous: {} ids start with it; give more digits",
            many.len()
        )))),
    }
}
