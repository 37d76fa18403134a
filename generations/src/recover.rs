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
use crate::journal::Journal;
use crate::manifest::diff;
use crate::plan::{Facts, plan};
use crate::switch::{SwitchOptions, switch_to};
use crate::{Error, Progress, State};

pub struct RecoverOptions<'a> {
    pub rollback: bool,
    pub now: i64,
    pub fault_after: Option<u64>,
    pub progress: &'a dyn Progress,
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
}

pub fn recover(state: &mut State, opts: &RecoverOptions<'_>) -> Result<RecoverOutcome, Error> {
    let Some(journal) = state.journal()? else {
        return Ok(RecoverOutcome {
            interrupted: false,
            active: state.db.active()?.map(|a| a.number),
            direction: "none",
            steps: 0,
        });
    };
    clean_temps(state, &journal)?;
    let committed = state.db.active()?.is_some_and(|a| a.id == journal.to);
    let apply_opts = ApplyOptions {
        now: opts.now,
        fault_after: opts.fault_after,
        progress: opts.progress,
    };

    if !opts.rollback {
        let out = apply(
            &state.root,
            &state.store,
            &mut state.db,
            &journal,
            &apply_opts,
        )?;
        Journal::remove(&state.journal_path())?;
        return Ok(RecoverOutcome {
            interrupted: true,
            active: Some(journal.to_number),
            direction: "forward",
            steps: out.steps,
        });
    }

    if committed {
        // The switch took effect before the crash; undoing it is a rollback.
        Journal::remove(&state.journal_path())?;
        let Some((from, from_id)) = journal.from else {
            return Err(Error::NoSuchGeneration(
                "the interrupted switch was the first one, and it completed; there is no generation to go back to".into(),
            ));
        };
        let out = switch_to(
            state,
            from_id,
            &SwitchOptions {
                force: true,
                dry_run: false,
                now: opts.now,
                fault_after: opts.fault_after,
                how: "rollback",
                progress: opts.progress,
            },
        )?;
        return Ok(RecoverOutcome {
            interrupted: true,
            active: Some(from),
            direction: "rollback",
            steps: out.applied.steps,
        });
    }

    let (to, _) = state.db.manifest(&journal.to)?.ok_or_else(|| {
        Error::CorruptManifest(format!(
            "the manifest of generation {} is missing",
            journal.to_number
        ))
    })?;
    let from_root = match &journal.from {
        Some((_, id)) => Some(
            state
                .db
                .manifest(id)?
                .ok_or_else(|| {
                    Error::CorruptManifest(format!("the manifest of generation {id} is missing"))
                })?
                .0
                .root,
        ),
        None => None,
    };
    let changes = diff(&state.db, Some(to.root), from_root)?;
    let mut ledger = state.db.ledger()?;
    ledger.extend(journal.plan.ledger_add.iter().cloned());
    let (number, id) = journal.from.unwrap_or((0, journal.to));
    let mut back = plan(&changes, &ledger, &Facts::default(), number, id);
    if journal.from.is_none() {
        // Back to the state before sysgen: there is no generation to activate.
        back.steps
            .retain(|s| !matches!(s, crate::plan::Step::Activate { .. }));
    }
    // Undoing commits nothing to the ledger: the switch never did.
    back.ledger_add.clear();
    back.ledger_remove.clear();
    let undo = Journal::new("rollback", journal.from, number, id, opts.now, back);
    let out = apply(&state.root, &state.store, &mut state.db, &undo, &apply_opts)?;
    state.root.sync().map_err(|e| Error::Io {
        path: state.root.path().to_owned(),
        source: e,
    })?;
    Journal::remove(&state.journal_path())?;
    Ok(RecoverOutcome {
        interrupted: true,
        active: journal.from.map(|f| f.0),
        direction: "rollback",
        steps: out.steps,
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
