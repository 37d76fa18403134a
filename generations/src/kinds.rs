//! The one list of kinds of resource. Adding a kind means writing its
//! module (a [`Kind`] and a step type with [`KindStepOps`]) and adding one
//! line to the list below; the rest of the crate asks every kind in it.
//!
//! The list's order is the order in which kinds are asked, and the order of
//! their steps within one phase (a plan is sorted by phase, stably).

use serde::{Deserialize, Serialize};
use sysgen_schema::EntryPath;

use crate::Error;
use crate::kind::{ApplyCx, Kind, KindStepOps};
use crate::plan::Step;

/// Declares the kinds: the step enum that holds one step of any kind, the
/// list of kinds, and the dispatch from a step to its kind.
macro_rules! kinds {
    ($($variant:ident($step:ty) => $kind:expr),* $(,)?) => {
        /// A step of one kind of resource.
        #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum KindStep {
            $($variant($step)),*
        }

        $(impl From<$step> for KindStep {
            fn from(s: $step) -> KindStep {
                KindStep::$variant(s)
            }
        })*

        /// Every kind, in the order they are asked.
        pub fn all() -> &'static [&'static dyn Kind] {
            &[$(&$kind),*]
        }

        impl KindStep {
            pub fn path(&self) -> Option<&EntryPath> {
                match self {
                    $(KindStep::$variant(s) => KindStepOps::path(s)),*
                }
            }

            pub fn is_skipped(&self) -> bool {
                match self {
                    $(KindStep::$variant(s) => s.is_skipped()),*
                }
            }

            pub fn is_news(&self) -> bool {
                match self {
                    $(KindStep::$variant(s) => s.is_news()),*
                }
            }

            pub fn kind(&self) -> &'static dyn Kind {
                match self {
                    $(KindStep::$variant(_) => &$kind),*
                }
            }

            /// Runs `steps[0]`, whose action is this step, and maybe more
            /// of its kind after it; returns how many ran.
            pub(crate) fn apply_from(&self, steps: &[Step], cx: &mut ApplyCx<'_>) -> Result<usize, Error> {
                match self {
                    $(KindStep::$variant(_) => <$step>::apply_from(steps, cx)),*
                }
            }
        }

        impl std::fmt::Display for KindStep {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match self {
                    $(KindStep::$variant(s) => s.fmt(f)),*
                }
            }
        }
    };
}

kinds! {
    Files(crate::files::FileStep) => crate::files::Files,
    Packages(crate::packages::PackageStep) => crate::packages::Packages,
    Datasets(crate::datasets::DatasetStep) => crate::datasets::DatasetKind,
    Services(crate::services::ServiceStep) => crate::services::ServiceKind,
}

/// What the binary tells the kinds about the host: which tools to run and
/// whether systemd is up. One value for every kind, passed through
/// unopened by switch, recover, verify and gc.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub services: crate::services::ServiceOptions,
    pub datasets: crate::datasets::DatasetOptions,
}
