//! Apply: run a journalled plan on the root, step by step. Each step is
//! run by its kind ([`crate::kind::KindStepOps`]); the kinds change the
//! root only through the one writer ([`RootDir`]). Each step converges to
//! the state it names whatever it finds, so a plan interrupted anywhere can
//! be run again from its first step (`recover`).
//!
//! Fault injection: with `fault_after = Some(k)`, the process aborts right
//! after the k-th applied step, with no cleanup, as a power cut would. The
//! CLI sets it from `SYSGEN_FAULT_AFTER_STEPS`; it is part of release
//! builds so crash tests exercise the real binary.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use sysgen_store::Store;

use crate::db::{Activation, Db};
use crate::error::FailedStep;
use crate::host::Options;
use crate::journal::Journal;
use crate::kind::ApplyCx;
use crate::plan::{Action, Step};
use crate::rootfs::RootDir;
use crate::{Error, Progress};

/// How the history records the undoing of a switch whose units or checks
/// failed.
pub const AUTOMATIC_ROLLBACK: &str = "automatic rollback";

pub struct ApplyOptions<'a> {
    pub now: i64,
    pub kinds: &'a Options,
    pub fault_after: Option<u64>,
    pub progress: &'a dyn Progress,
    /// How the activation is recorded in the history when not as the
    /// journal's switch was ("recover": a switch finished by `recover`).
    pub how: Option<&'a str>,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ApplyOutcome {
    pub steps: u64,
    /// Directories that left the configuration but still hold unmanaged files.
    pub kept: Vec<String>,
    /// What did not come up (only when the switch does not roll back on a
    /// failure).
    pub failed: Vec<crate::kind::Failure>,
}

/// A step of the plan failed: which, and why. The steps before it ran.
#[derive(Debug)]
pub struct StepFailed {
    pub step: FailedStep,
    pub cause: Error,
}

/// Runs every step of the journal's plan, the activation included.
pub fn apply(
    root: &RootDir,
    store: &Store,
    db: &mut Db,
    journal: &Journal,
    opts: &ApplyOptions<'_>,
) -> Result<ApplyOutcome, Box<StepFailed>> {
    let mut out = ApplyOutcome::default();
    let steps = &journal.plan.steps;
    opts.progress.start("applying", steps.len() as u64);
    let done = AtomicU64::new(0);
    // Where the run of steps a kind is handed starts in the plan.
    let base = AtomicUsize::new(0);
    let step_done = |k: usize| {
        let n = done.fetch_add(1, Ordering::SeqCst) + 1;
        opts.progress.advance(1);
        if let Some(s) = steps.get(base.load(Ordering::SeqCst) + k) {
            opts.progress.step(&s.to_string());
        }
        if opts.fault_after == Some(n) {
            // A simulated power cut: no unwinding, no cleanup, no flush.
            std::process::abort();
        }
    };
    // Names the step at `at` (from 0) as the one that failed.
    let failed = |at: usize, cause: Error| {
        Box::new(StepFailed {
            step: FailedStep {
                number: at + 1,
                of: steps.len(),
                line: steps.get(at).map(ToString::to_string).unwrap_or_default(),
            },
            cause,
        })
    };
    let mut i = 0;
    while i < steps.len() {
        let target = match &steps[i].action {
            Action::Kind(k) => {
                base.store(i, Ordering::SeqCst);
                let mut cx = ApplyCx {
                    root,
                    store,
                    db: &mut *db,
                    opts: opts.kinds,
                    now: opts.now,
                    step_done: &step_done,
                    kept: &mut out.kept,
                    failed: &mut out.failed,
                    failed_at: 0,
                };
                // A kind may run a run of its steps at once (files in parallel).
                let mut rest = steps[i + 1..].iter().map_while(Step::kind_step);
                let ran = match k.apply_from(&mut rest, &mut cx) {
                    Ok(ran) => ran,
                    Err(e) => return Err(failed(i + cx.failed_at, e)),
                };
                if ran == 0 {
                    return Err(failed(i, Error::Internal(format!("step did not run: {k}"))));
                }
                i += ran;
                continue;
            }
            Action::Activate { number, id } => Some((*number, *id)),
            Action::Deactivate => None,
        };
        let activated = root
            .sync()
            .map_err(|e| Error::Io {
                path: root.path().to_owned(),
                source: e,
            })
            .and_then(|()| activate(db, journal, target, opts));
        if let Err(e) = activated {
            return Err(failed(i, e));
        }
        base.store(i, Ordering::SeqCst);
        step_done(0);
        i += 1;
    }
    out.steps = done.into_inner();
    opts.progress.finish();
    Ok(out)
}

/// Commits the activation unless the target is active already: a re-run
/// by `recover`, or the undoing of a switch that never committed, which
/// has nothing to record. An automatic rollback is recorded even then:
/// the history tells that a switch was tried, failed and was undone, and
/// which generation stayed active.
fn activate(
    db: &mut Db,
    journal: &Journal,
    target: Option<(u64, crate::GenerationId)>,
    opts: &ApplyOptions<'_>,
) -> Result<(), Error> {
    let automatic = opts.how == Some(AUTOMATIC_ROLLBACK);
    if db.active()?.map(|a| a.id) == target.map(|t| t.1) && !automatic {
        return Ok(());
    }
    db.activate(&Activation {
        target,
        at: opts.now,
        how: opts.how.unwrap_or(&journal.how),
        ledger_add: &journal.plan.ledger_add,
        ledger_remove: &journal.plan.ledger_remove,
    })
}
