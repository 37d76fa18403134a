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
use crate::services;
use crate::{Error, Progress, State};

pub struct RecoverOptions<'a> {
    pub rollback: bool,
    pub now: i64,
    pub fault_after: Option<u64>,
    pub progress: &'a dyn Progress,
    pub services: crate::services::ServiceOptions,
    /// Where btrfs and zfs are, for dataset steps.
    pub tools: crate::datasets::Tools,
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
    /// Units that did not come up while recovering.
    pub failed: Vec<services::Failure>,
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
    clean_temps(state, &journal)?;
    let committed = state.db.active()?.is_some_and(|a| a.id == journal.to);
    // Recovering goes to its end: a unit that fails is reported, and the
    // root still lands on one generation.
    let service_opts = services::ServiceOptions {
        rollback_on_failure: false,
        ..opts.services.clone()
    };
    let apply_opts = ApplyOptions {
        now: opts.now,
        fault_after: opts.fault_after,
        progress: opts.progress,
        services: &service_opts,
        tools: &opts.tools,
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
    let from_root = from.as_ref().map(|m| m.root);
    let from_services = from.map(|m| m.services).unwrap_or_default();
    let changes = state.db.reading(|db| diff(db, Some(to.root), from_root))?;
    let mut ledger = state.db.ledger()?;
    ledger.extend(journal.plan.ledger_add.iter().cloned());
    ledger.extend(journal.plan.ledger_remove.iter().cloned());
    let (number, id) = journal.from.unwrap_or((0, journal.to));
    let mut changes = changes;
    let dp = undo_datasets(state, &journal, &to.datasets, &changes, &ledger, opts)?;
    crate::datasets::filter_changes(&mut changes, &dp);
    let mut back = plan(&changes, &ledger, &Facts::default(), number, id);
    let from_packages = match &journal.from {
        Some((_, id)) => state
            .db
            .manifest(id)?
            .map(|(m, _)| m.packages)
            .unwrap_or_default(),
        None => Default::default(),
    };
    let pk = crate::packages::plan(state, &to.packages, &from_packages, Some(&state.store))?;
    state.db.insert_saved(&pk.saved, opts.now)?;
    crate::packages::insert_steps(&mut back, pk);
    crate::packages::fetch(state, &mut back)?;
    let origins = services::undo_origins(state.db.unit_origins()?, &journal.plan);
    services::insert(
        &mut back,
        services::plan(
            &to.services,
            &from_services,
            &changes,
            &origins,
            opts.services.runtime,
        ),
    );
    // After the package and service steps are in: the dataset steps go
    // around the file steps (datasets::splice).
    crate::datasets::splice(&mut back.steps, dp);
    if journal.from.is_none() {
        // Back to the state before sysgen: no generation is active.
        if let Some(last) = back.steps.last_mut() {
            *last = crate::plan::Step::Deactivate;
        }
    }
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
    let out = apply(&state.root, &state.store, &mut state.db, &undo, &apply_opts)?;
    Journal::remove(&state.journal_path())?;
    Ok(RecoverOutcome {
        interrupted: true,
        active: journal.from.map(|f| f.0),
        direction: "rollback",
        steps: out.steps,
        failed: out.failed,
    })
}

/// The dataset steps that undo the journal's (see [`crate::datasets::undo`]).
fn undo_datasets(
    state: &State,
    journal: &Journal,
    to: &crate::datasets::Datasets,
    changes: &[crate::manifest::Change],
    ledger: &std::collections::BTreeMap<sysgen_schema::EntryPath, crate::db::Origin>,
    opts: &RecoverOptions<'_>,
) -> Result<crate::datasets::DatasetPlan, Error> {
    use crate::datasets::{self, backend};
    let from = match &journal.from {
        Some((_, id)) => backend::of_generation(&state.db, id)?,
        None => datasets::Datasets::default(),
    };
    let steps: Vec<datasets::DatasetStep> = journal
        .plan
        .steps
        .iter()
        .filter_map(|s| match s {
            crate::plan::Step::Dataset(d) => Some(d.clone()),
            _ => None,
        })
        .collect();
    let known = backend::known(&state.db)?;
    let taken = backend::taken(&state.db)?;
    let dopts = datasets::DatasetOptions {
        tools: opts.tools.clone(),
        with_data: false,
    };
    let cx = datasets::Context {
        changes,
        ledger,
        known: &known,
        opts: &dopts,
    };
    let restores = Default::default();
    // Read-only: only to say how each dataset comes back; whatever it would
    // object to, the undo converges from where the switch stopped.
    let (facts, _) = datasets::precheck(&state.root, to, &from, &restores, &cx)?;
    let names = datasets::Names {
        from: Some(journal.to_number),
        to: journal.from.map_or(0, |f| f.0),
        taken: &taken,
        restores: &restores,
        now: opts.now,
    };
    Ok(datasets::undo(&steps, to, &from, &facts, &cx, &names))
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
