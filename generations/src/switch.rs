//! Switch: the one orchestrator that makes a generation active.
//!
//! 1. refuse while an earlier switch is interrupted;
//! 2. diff the active manifest against the target (Merkle: only what changed);
//! 3. precheck the live root (drift, what is already there) — refuse with
//!    every offending path named before anything changes;
//! 4. plan (pure); with `--dry-run`, stop here and return the plan;
//! 5. write the journal durably;
//! 6. apply the steps, the last of which syncs and commits the activation;
//! 7. remove the journal.
//!
//! Rollback is the same switch to an older generation: history is
//! append-only, so it adds an activation record and never a number.

use std::io::Read;

use serde::Serialize;
use sysgen_schema::EntryPath;

use crate::apply::{ApplyOptions, ApplyOutcome, apply};
use crate::db::Saved;
use crate::journal::Journal;
use crate::manifest::{Change, GenerationId, diff};
use crate::plan::{Plan, plan};
use crate::precheck::precheck;
use crate::recover::{RecoverOptions, recover};
use crate::rootfs::Live;
use crate::services::{self, ServiceError, ServiceOptions};
use crate::{Error, Progress, State};

pub struct SwitchOptions<'a> {
    pub force: bool,
    pub dry_run: bool,
    pub now: i64,
    pub fault_after: Option<u64>,
    /// "switch" or "rollback", recorded in the history.
    pub how: &'a str,
    pub progress: &'a dyn Progress,
    pub services: crate::services::ServiceOptions,
    /// Dataset tools and `--with-data`.
    pub datasets: crate::datasets::DatasetOptions,
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
        Error::NoSuchGeneration(format!(
            "no generation has id {id}; `sysgen list` shows them"
        ))
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
    if active.as_ref().is_some_and(|a| a.id == id) {
        return Ok(SwitchOutcome {
            from,
            number,
            id,
            unchanged: true,
            dry_run: opts.dry_run,
            plan: Plan {
                steps: Vec::new(),
                ledger_add: Vec::new(),
                ledger_remove: Vec::new(),
            },
            applied: ApplyOutcome::default(),
            saved: Vec::new(),
            forced: Vec::new(),
            added: 0,
            removed: 0,
            changed: 0,
        });
    }
    if let (Some(want), false) = (&target.host, opts.force) {
        check_host(state, want)?;
    }
    let old = match &active {
        Some(a) => Some(
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
        ),
        None => None,
    };
    let old_root = old.as_ref().map(|m| m.root);
    let old_services = old.map(|m| m.services).unwrap_or_default();
    let changes = state
        .db
        .reading(|db| diff(db, old_root, Some(target.root)))?;
    let keep = (!opts.dry_run).then_some(&state.store);
    let ledger = state.db.ledger()?;
    let mut changes = changes;
    let dp = plan_datasets(
        state,
        active.as_ref().map(|a| (a.number, a.id)),
        &target,
        number,
        &changes,
        &ledger,
        opts,
    )?;
    // Counted before the dataset steps take over some removals.
    let (added, removed, changed) = count(&changes);
    crate::datasets::filter_changes(&mut changes, &dp.0);
    let pre = precheck(&state.root, keep, &changes, &ledger, opts.force)?;
    let mut conflicts = pre.conflicts;
    conflicts.extend(dp.1);
    if !conflicts.is_empty() {
        return Err(Error::Conflict(conflicts));
    }
    let dp = dp.0;
    if !pre.drift.is_empty() && !opts.force {
        return Err(Error::Drift {
            since: from.unwrap_or(0),
            paths: pre.drift,
        });
    }
    let mut plan = plan(&changes, &ledger, &pre.facts, number, id);
    let old_packages = match &active {
        Some(a) => state
            .db
            .manifest(&a.id)?
            .map(|(m, _)| m.packages)
            .unwrap_or_default(),
        None => Default::default(),
    };
    let pk = crate::packages::plan(state, &old_packages, &target.packages, keep)?;
    let mut saved = pre.saved;
    saved.extend(pk.saved.iter().cloned());
    crate::packages::insert_steps(&mut plan, pk);
    // What each unit goes back to when it leaves: recorded for the units
    // sysgen manages, read from the root for those it starts to manage.
    let mut origins = state.db.unit_origins()?;
    origins.extend(services::origins_on_root(
        &opts.services,
        state.root.path(),
        &old_services,
        &target.services,
    )?);
    services::insert(
        &mut plan,
        services::plan(
            &old_services,
            &target.services,
            &changes,
            &origins,
            opts.services.runtime,
        ),
    );
    // The diff holds an entry per changed path, as many as the plan's
    // steps: done with, so it goes before the journal is written.
    drop(changes);
    // After the package and service steps are in: the dataset steps go
    // around the file steps (datasets::splice).
    crate::datasets::splice(&mut plan.steps, dp);
    let mut outcome = SwitchOutcome {
        from,
        number,
        id,
        unchanged: false,
        dry_run: opts.dry_run,
        plan,
        applied: ApplyOutcome::default(),
        saved,
        forced: pre.drift,
        added,
        removed,
        changed,
    };
    if opts.dry_run {
        return Ok(outcome);
    }
    // Package files go into the store before the journal: a download that
    // fails changes nothing, and the journal's plan then runs offline.
    crate::packages::fetch(state, &mut outcome.plan)?;
    // The saved copies are already durable in the store; record them before
    // any change, so nothing the admin wrote is ever unaccounted for.
    state.db.insert_saved(&outcome.saved, opts.now)?;
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
            fault_after: opts.fault_after,
            progress: opts.progress,
            services: &opts.services,
            tools: &opts.datasets.tools,
        },
    );
    outcome.applied = match applied {
        // A unit did not come up: undo the switch as `recover --rollback`
        // would (the journal is still there), then report the unit.
        Err(Error::Service(ServiceError::Failed {
            failure,
            rolled_back: None,
        })) => return Err(roll_back_after(state, failure, opts)),
        other => other?,
    };
    Journal::remove(&state.journal_path())?;
    outcome.plan = journal.plan;
    Ok(outcome)
}

fn roll_back_after(
    state: &mut State,
    failure: services::Failure,
    opts: &SwitchOptions<'_>,
) -> Error {
    let undo = recover(
        state,
        &RecoverOptions {
            rollback: true,
            now: opts.now,
            fault_after: None,
            progress: opts.progress,
            // The old generation's units are started as well as they can
            // be; one that fails there too is reported, not undone again.
            services: ServiceOptions {
                rollback_on_failure: false,
                ..opts.services.clone()
            },
            tools: opts.datasets.tools.clone(),
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

/// The dataset part of a switch from `from` to `target`: its precheck (the
/// conflicts come back with the plan) and its steps.
fn plan_datasets(
    state: &State,
    from: Option<(u64, GenerationId)>,
    target: &crate::manifest::Manifest,
    number: u64,
    changes: &[Change],
    ledger: &std::collections::BTreeMap<EntryPath, crate::db::Origin>,
    opts: &SwitchOptions<'_>,
) -> Result<(crate::datasets::DatasetPlan, Vec<String>), Error> {
    use crate::datasets::{self, backend};
    let old = match from {
        Some((_, id)) => backend::of_generation(&state.db, &id)?,
        None => datasets::Datasets::default(),
    };
    let new = &target.datasets;
    if old.is_empty() && new.is_empty() {
        return Ok(Default::default());
    }
    let known = backend::known(&state.db)?;
    let taken = backend::taken(&state.db)?;
    let restores = if opts.datasets.with_data {
        backend::restores(&state.db, number, new)?
    } else {
        Default::default()
    };
    let cx = datasets::Context {
        changes,
        ledger,
        known: &known,
        opts: &opts.datasets,
    };
    let (facts, conflicts) = datasets::precheck(&state.root, &old, new, &restores, &cx)?;
    let names = datasets::Names {
        from: from.map(|f| f.0),
        to: number,
        taken: &taken,
        restores: &restores,
        now: opts.now,
    };
    Ok((datasets::plan(&old, new, &facts, &cx, &names), conflicts))
}

fn count(changes: &[Change]) -> (u64, u64, u64) {
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

fn check_host(state: &State, want: &str) -> Result<(), Error> {
    let p = EntryPath::parse("/etc/hostname").map_err(|e| Error::Invalid(e.to_string()))?;
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
        return Err(Error::HostMismatch {
            want: want.to_owned(),
            have: have.to_owned(),
            root: state
                .root
                .path()
                .display()
                .to_string()
                .trim_end_matches('/')
                .to_owned(),
        });
    }
    Ok(())
}

/// Resolves a generation given as a number, an id or an id prefix.
pub fn resolve(state: &State, what: &str) -> Result<GenerationId, Error> {
    if let Ok(n) = what.parse::<u64>()
        && what.len() < 12
    {
        return match state.db.generation(n)? {
            Some(g) if g.collected_at.is_some() => Err(Error::Collected(n)),
            Some(g) => Ok(g.id),
            None => Err(Error::NoSuchGeneration(format!(
                "there is no generation {n}; `sysgen list` shows them"
            ))),
        };
    }
    let hex = what.to_ascii_lowercase();
    if hex.len() < 4 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::NoSuchGeneration(format!(
            "{what:?} is neither a generation number nor an id (at least 4 hex digits); `sysgen list` shows them"
        )));
    }
    let found = state.db.manifests_with_prefix(&hex)?;
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(Error::NoSuchGeneration(format!(
            "no generation id starts with {hex}; `sysgen list` shows them"
        ))),
        many => Err(Error::NoSuchGeneration(format!(
            "{hex} is ambiguous: {} ids start with it; give more digits",
            many.len()
        ))),
    }
}
