//! The one list of kinds of resource. Adding a kind means writing its
//! module (a [`Kind`] and its step type with [`KindStepOps`]) and adding
//! one line to the list below; everything above this module (the plan, the
//! journal, apply, the pipeline, switch, recover, verify, gc, the CLI) asks
//! every kind in it the same questions through [`AnyKind`].
//!
//! The list's order is the order in which kinds are asked, and the order of
//! their steps within one phase (a plan is sorted by phase, stably).

use serde::{Deserialize, Serialize};
use sysgen_schema::EntryPath;

pub use crate::host::Options;
use crate::kind::{
    ApplyCx, BuildCx, Claims, Collect, Inspection, Kind, KindStepOps, Marks, Planned, Report,
    Transition, Verified, to_json,
};
use crate::manifest::Manifest;
use crate::{Error, Progress, State};

/// Declares the kinds: the enum that holds one step of any kind, the list
/// of kinds, and the dispatch from a step to its kind.
macro_rules! kinds {
    ($($variant:ident($step:ty) => $kind:ident),* $(,)?) => {
        /// A step of one kind of resource.
        #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum KindStep {
            $($variant($step)),*
        }

        $(impl Registered for $step {
            fn wrap(self) -> KindStep {
                KindStep::$variant(self)
            }
            fn own(k: &KindStep) -> Option<&Self> {
                match k {
                    KindStep::$variant(s) => Some(s),
                    #[allow(unreachable_patterns, reason = "one kind alone has no other")]
                    _ => None,
                }
            }
            fn own_mut(k: &mut KindStep) -> Option<&mut Self> {
                match k {
                    KindStep::$variant(s) => Some(s),
                    #[allow(unreachable_patterns, reason = "one kind alone has no other")]
                    _ => None,
                }
            }
        })*

        /// Every kind, in the order they are asked.
        pub fn all() -> &'static [&'static dyn AnyKind] {
            &[$(&$kind),*]
        }

        impl KindStep {
            fn ops(&self) -> &dyn KindStepOps {
                match self {
                    $(KindStep::$variant(s) => s),*
                }
            }

            /// Runs this step, the first of `rest`'s run, and maybe more of
            /// its kind that follow it; returns how many ran.
            pub(crate) fn apply_from<'s>(
                &'s self,
                rest: &mut dyn Iterator<Item = &'s KindStep>,
                cx: &mut ApplyCx<'_>,
            ) -> Result<usize, Error> {
                match self {
                    $(KindStep::$variant(first) => {
                        let mut run = std::iter::once(first)
                            .chain(rest.map_while(<$step as Registered>::own));
                        <$step as KindStepOps>::apply_from(&mut run, cx)
                    })*
                }
            }
        }
    };
}

kinds! {
    Files(crate::files::FileStep) => Files,
    Packages(crate::packages::PackageStep) => Packages,
    Services(crate::services::ServiceStep) => ServiceKind,
    Datasets(crate::datasets::DatasetStep) => DatasetKind,
    Blocks(crate::blocks::BlockStep) => BlockKind,
    Checks(crate::checks::CheckStep) => Checks,
    Users(crate::users::UserStep) => UserKind,
}

use crate::blocks::BlockKind;
use crate::checks::Checks;
use crate::datasets::DatasetKind;
use crate::files::Files;
use crate::packages::Packages;
use crate::services::ServiceKind;
use crate::users::UserKind;

impl KindStep {
    /// The path the step changes, if it changes one path.
    pub fn path(&self) -> Option<&EntryPath> {
        self.ops().path()
    }

    /// Planned but not run: it needs what the root lacks.
    pub fn is_skipped(&self) -> bool {
        self.ops().is_skipped()
    }

    /// The store objects the step reads when it runs.
    pub fn reads(&self) -> Vec<(sysgen_store::Hash, sysgen_store::Area)> {
        self.ops().reads()
    }

    /// What it writes on the root's filesystem.
    pub fn needs(&self) -> crate::kind::Needs {
        self.ops().needs()
    }
}

impl std::fmt::Display for KindStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.ops().fmt(f)
    }
}

/// A step type of the list, and its place in [`KindStep`].
pub trait Registered: Sized {
    fn wrap(self) -> KindStep;
    fn own(k: &KindStep) -> Option<&Self>;
    fn own_mut(k: &mut KindStep) -> Option<&mut Self>;
}

/// A kind as the orchestrators see it: [`Kind`] over [`KindStep`].
pub trait AnyKind: Sync {
    fn name(&self) -> &'static str;
    fn build(&self, cx: &mut BuildCx<'_>) -> Result<(), Error>;
    fn claims(&self, t: &Transition<'_>, undone: &[&KindStep]) -> Result<Claims, Error>;
    fn inspect<'a>(
        &self,
        t: &'a Transition<'a>,
        claims: &'a Claims,
        undone: &[&KindStep],
    ) -> Result<Inspection<'a, KindStep>, Error>;
    fn prepare(&self, state: &mut State, steps: &mut [&mut KindStep]) -> Result<(), Error>;
    fn verify(
        &self,
        state: &State,
        generation: &Manifest,
        opts: &Options,
        progress: &dyn Progress,
    ) -> Result<Verified, Error>;
    fn mark(&self, state: &State, kept: &[Manifest], marks: &mut Marks) -> Result<(), Error>;
    fn collect(&self, cx: &Collect<'_>) -> Result<Option<Report>, Error>;
    fn report(&self, state: &State, opts: &Options) -> Result<Option<Report>, Error>;
    fn diff(&self, state: &State, old: Option<&Manifest>, new: &Manifest) -> Result<Report, Error>;
    fn counts(
        &self,
        state: &State,
        old: Option<&Manifest>,
        new: &Manifest,
    ) -> Result<(u64, u64, u64), Error>;
    /// Its steps of a switch, if the kind's steps are news (lines and JSON).
    fn news(&self, steps: &[&KindStep]) -> Result<Option<Report>, Error>;
    /// The note on its steps of `steps` that were planned but not run.
    fn skipped_note(&self, steps: &[&KindStep]) -> Option<String>;
}

fn own_steps<'k, S: Registered>(steps: &[&'k KindStep]) -> Vec<&'k S> {
    steps.iter().filter_map(|k| S::own(k)).collect()
}

impl<K> AnyKind for K
where
    K: Kind,
    K::Step: Registered,
{
    fn name(&self) -> &'static str {
        Kind::name(self)
    }

    fn build(&self, cx: &mut BuildCx<'_>) -> Result<(), Error> {
        Kind::build(self, cx)
    }

    fn claims(&self, t: &Transition<'_>, undone: &[&KindStep]) -> Result<Claims, Error> {
        Kind::claims(self, t, &own_steps(undone))
    }

    fn inspect<'a>(
        &self,
        t: &'a Transition<'a>,
        claims: &'a Claims,
        undone: &[&KindStep],
    ) -> Result<Inspection<'a, KindStep>, Error> {
        let look = Kind::inspect(self, t, claims, &own_steps(undone))?;
        let planner = look.planner;
        Ok(Inspection {
            conflicts: look.conflicts,
            drift: look.drift,
            saved: look.saved,
            ledger_add: look.ledger_add,
            planner: Box::new(move || {
                let p = planner();
                Planned {
                    // A step per file: wrapped without holding them twice.
                    steps: crate::plan::map_shrinking(p.steps, |(ph, s)| (ph, s.wrap())),
                    ledger_remove: p.ledger_remove,
                }
            }),
        })
    }

    fn prepare(&self, state: &mut State, steps: &mut [&mut KindStep]) -> Result<(), Error> {
        let mut own: Vec<&mut K::Step> = steps
            .iter_mut()
            .filter_map(|k| K::Step::own_mut(k))
            .collect();
        Kind::prepare(self, state, &mut own)
    }

    fn verify(
        &self,
        state: &State,
        generation: &Manifest,
        opts: &Options,
        progress: &dyn Progress,
    ) -> Result<Verified, Error> {
        Kind::verify(self, state, generation, opts, progress)
    }

    fn mark(&self, state: &State, kept: &[Manifest], marks: &mut Marks) -> Result<(), Error> {
        Kind::mark(self, state, kept, marks)
    }

    fn collect(&self, cx: &Collect<'_>) -> Result<Option<Report>, Error> {
        Kind::collect(self, cx)
    }

    fn report(&self, state: &State, opts: &Options) -> Result<Option<Report>, Error> {
        Kind::report(self, state, opts)
    }

    fn diff(&self, state: &State, old: Option<&Manifest>, new: &Manifest) -> Result<Report, Error> {
        Kind::diff(self, state, old, new)
    }

    fn counts(
        &self,
        state: &State,
        old: Option<&Manifest>,
        new: &Manifest,
    ) -> Result<(u64, u64, u64), Error> {
        Kind::counts(self, state, old, new)
    }

    fn news(&self, steps: &[&KindStep]) -> Result<Option<Report>, Error> {
        if !Kind::news(self) {
            return Ok(None);
        }
        let own: Vec<&K::Step> = own_steps(steps);
        Ok(Some(Report {
            kind: Kind::name(self),
            lines: own.iter().map(|s| s.to_string()).collect(),
            json: to_json(Kind::name(self), &own)?,
        }))
    }

    fn skipped_note(&self, steps: &[&KindStep]) -> Option<String> {
        let n = own_steps::<K::Step>(steps)
            .iter()
            .filter(|s| s.is_skipped())
            .count();
        (n > 0).then(|| Kind::skipped_note(self, n))
    }
}

/// What every kind keeps beyond the generations, for `list` and `status`.
pub fn reports(state: &State, opts: &Options) -> Result<crate::kind::Reports, Error> {
    let mut out = crate::kind::Reports::default();
    for k in all() {
        out.0.extend(k.report(state, opts)?);
    }
    Ok(out)
}
