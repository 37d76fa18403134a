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
use crate::kind::Phase;
use crate::kinds::{KindStep, Registered};
use crate::manifest::GenerationId;

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
    pub fn new(phase: Phase, step: impl Registered) -> Step {
        Step {
            phase,
            action: Action::Kind(step.wrap()),
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

/// `v` mapped through `f`, never held twice: a first switch's plan is a
/// step per file, and a map into values of another size cannot reuse the
/// buffer, so a plain `collect` holds the old vector whole until the new
/// one is. Here the old one gives back its memory as it empties (see
/// [`shrinking`]).
pub fn map_shrinking<T, U>(v: Vec<T>, f: impl FnMut(T) -> U) -> Vec<U> {
    if std::mem::size_of::<T>() == std::mem::size_of::<U>()
        && std::mem::align_of::<T>() == std::mem::align_of::<U>()
    {
        // Collected in place by the standard library.
        return v.into_iter().map(f).collect();
    }
    // One more: the activation ends a plan.
    let mut out = Vec::with_capacity(v.len() + 1);
    out.extend(shrinking(v).map(f));
    out
}

/// The elements of `v` in order, by value, `v` giving back its memory as
/// it empties (from its end, after one reversal in place), a batch at a
/// time: what is made of them grows as `v` shrinks, and the two are never
/// held whole at once (a first switch has a change and a step per file).
pub fn shrinking<T>(mut v: Vec<T>) -> Shrinking<T> {
    v.reverse();
    Shrinking(v)
}

/// See [`shrinking`].
pub struct Shrinking<T>(Vec<T>);

impl<T> Iterator for Shrinking<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        /// Elements taken between two shrinks of the buffer.
        const BATCH: usize = 1 << 14;
        let x = self.0.pop()?;
        if self.0.len().is_multiple_of(BATCH) {
            self.0.shrink_to_fit();
        }
        Some(x)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.0.len(), Some(self.0.len()))
    }
}

impl<T> ExactSizeIterator for Shrinking<T> {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code: a panic is a failed test")]

    use sysgen_schema::EntryPath;

    use super::*;
    use crate::datasets::{DatasetStep, How, Kind};
    use crate::files::{FileStep, Why};
    use crate::packages::PackageStep;
    use crate::services::{Action as UnitAction, ServiceStep};

    fn p(s: &str) -> EntryPath {
        EntryPath::parse(s).unwrap()
    }

    #[test]
    fn map_shrinking_keeps_the_order() {
        let v: Vec<u32> = (0..100_000).collect();
        let got = map_shrinking(v, |x| (u64::from(x), x));
        assert_eq!(got.len(), 100_000);
        assert!(
            got.iter()
                .enumerate()
                .all(|(i, &(a, b))| a == i as u64 && b as usize == i)
        );
        let same = map_shrinking(vec![1u32, 2, 3], |x| x + 1);
        assert_eq!(same, [2, 3, 4]);
    }

    /// However the kinds are asked, the phases give SPEC §4's order, and
    /// each kind's own order within a phase stays.
    #[test]
    fn one_sort_by_phase_orders_every_kind() {
        let unit = |unit: &str| ServiceStep::Runtime {
            action: UnitAction::Start { unit: unit.into() },
            why: "test".into(),
            skipped: false,
        };
        let file = |path: &str| FileStep::Remove {
            path: p(path),
            why: Why::Remove,
            kind: "file".into(),
        };
        let keep = PackageStep::Keep {
            manager: "apt".into(),
            name: "hand".into(),
            version: "1".into(),
        };
        let snap = DatasetStep::Snapshot {
            path: p("/d"),
            kind: Kind::Directory,
            snap: "gen-1".into(),
            of: 1,
        };
        let attach = DatasetStep::Attach {
            path: p("/e"),
            kind: Kind::Directory,
            how: How::Create,
            expect: None,
        };
        let detach = DatasetStep::Detach {
            path: p("/d"),
            kind: Kind::Directory,
            discard_if_empty: false,
            id: None,
        };
        // Asked in an order that is none of the phases'.
        let steps = vec![
            Step::new(Phase::Start, unit("late.service")),
            Step::new(Phase::Remove, file("/b/c")),
            Step::new(Phase::Detach, detach.clone()),
            Step::new(Phase::Purge, keep.clone()),
            Step::new(Phase::Remove, file("/b")),
            Step::new(Phase::Attach, attach.clone()),
            Step::new(Phase::Stop, unit("early.service")),
            Step::new(Phase::Snapshot, snap.clone()),
        ];
        let id = crate::GenerationId(sysgen_store::Hash::of(b"g"));
        let got = Plan::order(steps, Action::Activate { number: 2, id });
        let want = [
            Step::new(Phase::Snapshot, snap),
            Step::new(Phase::Stop, unit("early.service")),
            Step::new(Phase::Attach, attach),
            Step::new(Phase::Remove, file("/b/c")),
            Step::new(Phase::Remove, file("/b")),
            Step::new(Phase::Detach, detach),
            Step::new(Phase::Purge, keep),
            Step::new(Phase::Start, unit("late.service")),
            Step {
                phase: Phase::Activate,
                action: Action::Activate { number: 2, id },
            },
        ];
        assert_eq!(got, want);
        // The journal holds the plan: every kind's step survives a round trip.
        let json = serde_json::to_string(&got).unwrap();
        let back: Vec<Step> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, got);
    }
}
