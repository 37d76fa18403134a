//! Recover: finish an interrupted switch (roll forward), or undo it
//! (`--rollback`), so the root lands exactly on one generation.
//!
//! Forward runs the journalled plan again from its first step: every step
//! converges its path, so steps that already ran are harmless. Backward
//! plans the way from the target to the generation the switch started
//! from, with the ledger as it was plus the records the switch would have
//! added (what it found on the root and saved), and runs that plan; the
//! root is then exactly the old generation, with what the switch displaced
//! put back.

use serde::Serialize;

use crate::apply::{ApplyOptions, apply};
use crate::error::{FailedStep, Halfway};
use crate::host::Options;
use crate::journal::Journal;
use crate::kind::{Changes, Gen, Mode, Transition};
use crate::manifest::diff;
use crate::plan::Action;
use crate::{Error, Progress, State, pipeline};

pub struct RecoverOptions<'a> {
    pub rollback: bool,
    pub now: i64,
    pub fault_after: Option<u64>,
    pub progress: &'a dyn Progress,
    /// What the kinds need from the host (tools, systemd).
    pub kinds: &'a Options,
    /// The undo of a switch whose unit failed, which the history records
    /// as an automatic rollback (else `recover --rollback`).
    pub automatic: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecoverOutcome {
    /// False when no switch was interrupted.
    pub interrupted: bool,
    /// The generation the root is on now (none: the state before sysgen).
    pub active: Option<u64>,
    /// "forward" or "rollback".
    pub direction: &'static str,
    pub steps: u64,
    /// What did not come up while recovering.
    pub failed: Vec<crate::kind::Failure>,
}

pub fn recover(state: &mut State, opts: &RecoverOptions<'_>) -> Result<RecoverOutcome, Error> {
    let Some(journal) = state.journal()? else {
        return Ok(RecoverOutcome {
            interrupted: false,
            active: state.db.active()?.map(|a| a.number),
            direction: "none",
            steps: 0,
            failed: Vec::new(),
        });
    };
    // Until it is done, the root is still between the journal's two
    // generations, and a failure says so like the switch's own.
    recover_journal(state, opts, &journal).map_err(|e| match e {
        e @ Error::Halfway(_) => e,
        cause => halfway(&journal, opts, None, cause),
    })
}

fn halfway(
    journal: &Journal,
    opts: &RecoverOptions<'_>,
    step: Option<FailedStep>,
    cause: Error,
) -> Error {
    Error::Halfway(Box::new(Halfway {
        what: if opts.rollback {
            "recover --rollback"
        } else {
            "recover"
        }
        .to_owned(),
        from: journal.from.map(|f| f.0),
        to: journal.to_number,
        step,
        cause,
    }))
}

fn recover_journal(
    state: &mut State,
    opts: &RecoverOptions<'_>,
    journal: &Journal,
) -> Result<RecoverOutcome, Error> {
    clean_temps(state, journal)?;
    let committed = state.db.active()?.is_some_and(|a| a.id == journal.to);
    // Recovering goes to its end: a unit that fails is reported, and the
    // root still lands on one generation.
    let mut kinds = opts.kinds.clone();
    kinds.rollback_on_failure = false;
    let apply_opts = ApplyOptions {
        now: opts.now,
        kinds: &kinds,
        fault_after: opts.fault_after,
        progress: opts.progress,
        how: Some(if opts.rollback {
            if opts.automatic {
                crate::apply::AUTOMATIC_ROLLBACK
            } else {
                "recover --rollback"
            }
        } else {
            "recover"
        }),
    };

    if !opts.rollback {
        let out = apply(
            &state.root,
            &state.store,
            &mut state.db,
            journal,
            &apply_opts,
        )
        .map_err(|f| halfway(journal, opts, Some(f.step), f.cause))?;
        Journal::remove(&state.journal_path())?;
        return Ok(RecoverOutcome {
            interrupted: true,
            active: Some(journal.to_number),
            direction: "forward",
            steps: out.steps,
            failed: out.failed,
        });
    }

    // Undo: plan from the target back to the generation the switch left,
    // knowing every ledger record involved: those in the database, those
    // the switch would add (what it found on the root and saved), and those
    // it dropped (already gone from the database if it committed).
    let (to, _) = state.db.manifest(&journal.to)?.ok_or_else(|| {
        Error::CorruptManifest(format!(
            "the manifest of generation {} is missing",
            journal.to_number
        ))
    })?;
    let from = match &journal.from {
        Some((_, id)) => Some(
            state
                .db
                .manifest(id)?
                .ok_or_else(|| {
                    Error::CorruptManifest(format!("the manifest of generation {id} is missing"))
                })?
                .0,
        ),
        None => None,
    };
    let changes = state
        .db
        .reading(|db| diff(db, Some(to.root), from.as_ref().map(|m| m.root)))?;
    let mut ledger = state.db.ledger()?;
    ledger.extend(journal.plan.ledger_add.iter().cloned());
    ledger.extend(journal.plan.ledger_remove.iter().cloned());
    let (number, id) = journal.from.unwrap_or((0, journal.to));
    // Back to the state before sysgen: no generation is active.
    let last = match journal.from {
        Some(_) => Action::Activate { number, id },
        None => Action::Deactivate,
    };
    let mut back = pipeline::plan(
        &Transition {
            state,
            from: Some(Gen {
                number: journal.to_number,
                id: journal.to,
                manifest: &to,
            }),
            to: match (journal.from, &from) {
                (Some((number, id)), Some(manifest)) => Some(Gen {
                    number,
                    id,
                    manifest,
                }),
                _ => None,
            },
            to_number: number,
            changes: Changes::new(changes),
            ledger: &ledger,
            mode: Mode::Undo,
            opts: &kinds,
            now: opts.now,
        },
        &journal.plan.steps,
        last,
    )?
    .plan;
    pipeline::prepare(state, &mut back, opts.now)?;
    // If the switch committed, its ledger changes are reversed with the
    // activation of the old generation; if not, there is nothing to reverse.
    (back.ledger_add, back.ledger_remove) = if committed {
        (
            journal.plan.ledger_remove.clone(),
            journal.plan.ledger_add.clone(),
        )
    } else {
        (Vec::new(), Vec::new())
    };
    // The journal stays the original switch's until the undo is complete, so
    // a crash during the undo is recovered either way, like the switch.
    let undo = Journal::new("rollback", journal.from, number, id, opts.now, back);
    let out = apply(&state.root, &state.store, &mut state.db, &undo, &apply_opts)
        .map_err(|f| halfway(journal, opts, Some(f.step), f.cause))?;
    Journal::remove(&state.journal_path())?;
    Ok(RecoverOutcome {
        interrupted: true,
        active: journal.from.map(|f| f.0),
        direction: "rollback",
        steps: out.steps,
        failed: out.failed,
    })
}

/// Removes the temporary files an interrupted write may have left next to
/// any path of the plan.
fn clean_temps(state: &State, journal: &Journal) -> Result<(), Error> {
    let mut dirs = std::collections::BTreeSet::new();
    for s in &journal.plan.steps {
        if let Some(p) = s.path() {
            dirs.insert(p.parent());
        }
    }
    for d in dirs {
        state.root.clean_temps(d.as_ref())?;
    }
    Ok(())
}
