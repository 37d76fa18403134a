//! The plan: the ordered steps that take a root from one generation to
//! another. Every kind of resource plans its own steps (pure), each step
//! carrying the [`Phase`] it runs in; [`Plan::new`] puts them in order with
//! one stable sort by phase, so the order of a plan never depends on the
//! order in which the kinds were asked. `--dry-run` prints exactly this
//! value, and the journal records exactly this value before `apply` runs it.
//!
//! Every step converges to a state rather than assuming the state it starts
//! from, so running a plan again from its first step after a crash reaches
//! the same end (this is what `recover` does).

use std::fmt;

use serde::{Deserialize, Serialize};
use sysgen_schema::EntryPath;

use crate::db::{Origin, Saved};
use crate::kinds::KindStep;
use crate::manifest::GenerationId;

/// When a step runs. SPEC §4 "Order": datasets and directories before the
/// files inside them; packages before the files and services that need
/// them; services stopped before their unit files go, and started after the
/// files they watch changed; removals deepest path first. Within a phase,
/// steps keep the order their kind planned them in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Snapshots of what is there, before anything changes.
    Snapshot,
    /// Units stopped and disabled, before their files or packages go.
    Stop,
    /// Packages installed, upgraded or downgraded (one transaction).
    Install,
    /// Datasets created, adopted, re-attached or restored, before the files
    /// inside them.
    Attach,
    /// Paths removed (or put back as they were before sysgen), deepest first.
    Remove,
    /// Paths created or changed, parents first.
    Create,
    /// Datasets detached, after the files inside them went.
    Detach,
    /// Packages removed, after the files that needed them.
    Purge,
    /// Units enabled, reloaded, started, restarted, checked.
    Start,
    /// The generation recorded as active (always last).
    Activate,
}

/// One step of a plan: the phase it runs in and what it does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub phase: Phase,
    pub action: Action,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A step of one kind of resource (files, packages, datasets, units…).
    Kind(KindStep),
    /// Make every change durable, then record the generation as active.
    Activate { number: u64, id: GenerationId },
    /// Make every change durable, then record that no generation is active
    /// (undoing the first switch: the root is as it was before sysgen).
    Deactivate,
}

impl Step {
    pub fn new(phase: Phase, step: impl Into<KindStep>) -> Step {
        Step {
            phase,
            action: Action::Kind(step.into()),
        }
    }

    /// The path the step changes, if it changes one path.
    pub fn path(&self) -> Option<&EntryPath> {
        match &self.action {
            Action::Kind(k) => k.path(),
            Action::Activate { .. } | Action::Deactivate => None,
        }
    }

    pub fn kind_step(&self) -> Option<&KindStep> {
        match &self.action {
            Action::Kind(k) => Some(k),
            _ => None,
        }
    }
}

impl fmt::Display for Step {
    /// One line per step. A secret file shows neither content nor hash.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.action {
            Action::Kind(k) => k.fmt(f),
            Action::Activate { number, id } => {
                write!(f, "activate generation {number} ({})", id.short())
            }
            Action::Deactivate => write!(f, "record that no generation is active"),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// Ledger records to add when the activation commits.
    pub ledger_add: Vec<(EntryPath, Origin)>,
    /// Ledger records to drop when the activation commits (kept whole, so
    /// that undoing the switch can put them back).
    pub ledger_remove: Vec<(EntryPath, Origin)>,
    /// What the plan keeps in the store before the journal is written:
    /// changed files `--force` overwrites, conffiles of packages that go.
    /// (Not journalled: they are saved and recorded before it exists.)
    #[serde(skip)]
    pub saved: Vec<Saved>,
}

impl Plan {
    /// Orders `steps` by phase (stable: each kind's own order stays) and
    /// ends the plan with `last`, the activation.
    pub fn order(mut steps: Vec<Step>, last: Action) -> Vec<Step> {
        // A first switch holds only file steps, already in order.
        if !steps.is_sorted_by_key(|s| s.phase) {
            steps.sort_by_key(|s| s.phase);
        }
        steps.push(Step {
            phase: Phase::Activate,
            action: last,
        });
        steps
    }
}
