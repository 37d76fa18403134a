//! The interface every kind of resource implements, in the spirit of
//! Consfigurator's properties: a check against reality ([`Kind::inspect`],
//! reading only), a pure plan (the planner it hands back), apply and
//! unapply (its steps, run by `apply`; the undo is the same planner asked
//! for the way back, [`Mode::Undo`]), verify, what it keeps alive for gc,
//! and how its changes read in `diff`.
//!
//! The kinds are listed once, in [`crate::kinds`]. Nothing in `switch`,
//! `recover`, `pipeline`, `apply`, `verify` or `gc` names one: they ask
//! every kind in that list the same questions.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;
use sysgen_schema::EntryPath;
use sysgen_store::{Area, Hash, HashKeySet, Store};

use crate::db::{Db, Origin, Saved};
use crate::journal::Journal;
use crate::kinds::Options;
use crate::manifest::{Change, GenerationId, Manifest, NodeId};
use crate::plan::Step;
use crate::rootfs::RootDir;
use crate::{Drift, Error, Progress, State};

/// A generation at one end of a transition.
#[derive(Clone, Copy)]
pub struct Gen<'a> {
    pub number: u64,
    pub id: GenerationId,
    pub manifest: &'a Manifest,
}

/// Why a plan is made.
#[derive(Clone, Copy)]
pub enum Mode<'a> {
    /// A switch (or rollback) from the active generation; `force`
    /// overwrites drift after saving it.
    Switch { force: bool, dry_run: bool },
    /// `recover --rollback`: the way back from the interrupted switch in
    /// `journal`, from wherever it stopped. Nothing is refused: the undo
    /// converges from any state the switch could have left.
    Undo { journal: &'a Journal },
}

/// Everything a kind may read to plan one transition of the root.
pub struct Transition<'a> {
    pub state: &'a State,
    /// The generation the root leaves (`None`: the state before sysgen).
    pub from: Option<Gen<'a>>,
    /// The generation the root reaches (`None`: back to before sysgen).
    pub to: Option<Gen<'a>>,
    /// The target's number when `to` is `None` is 0; the number new
    /// records (snapshot names) are made for.
    pub to_number: u64,
    /// What changes in the tree of paths, `from` → `to` (the Merkle diff;
    /// several kinds watch paths: units restart on them, datasets live at them).
    pub changes: &'a [Change],
    /// What was on the root before sysgen managed each path.
    pub ledger: &'a BTreeMap<EntryPath, Origin>,
    pub mode: Mode<'a>,
    pub opts: &'a Options,
    pub now: i64,
}

impl Transition<'_> {
    pub fn is_dry_run(&self) -> bool {
        matches!(self.mode, Mode::Switch { dry_run: true, .. })
    }
}

/// What a kind found on the live root, and its plan, still to be made.
pub struct Inspection<'a> {
    /// What stands in the way; the switch is refused with every one named.
    pub conflicts: Vec<String>,
    /// Managed state changed on the root since sysgen wrote it; refused
    /// unless `--force` (then saved first, in `saved`).
    pub drift: Vec<Drift>,
    /// What must be kept in the store before the journal is written.
    pub saved: Vec<Saved>,
    /// Ledger records the activation adds (what was there before sysgen).
    pub ledger_add: Vec<(EntryPath, Origin)>,
    /// The pure planner, called once the switch is allowed.
    pub planner: Planner<'a>,
}

pub type Planner<'a> = Box<dyn FnOnce() -> Planned + 'a>;

/// Paths whose removal a kind takes over from the tree of files (a
/// detached dataset's directory moves away; an `rmdir` would delete an
/// empty btrfs subvolume).
pub type Claims = BTreeSet<EntryPath>;

/// A kind's part of a plan.
#[derive(Default)]
pub struct Planned {
    pub steps: Vec<Step>,
    /// Ledger records the activation drops (kept whole for an undo).
    pub ledger_remove: Vec<(EntryPath, Origin)>,
}

impl<'a> Inspection<'a> {
    /// An inspection that found nothing, with its planner.
    pub fn planning(planner: impl FnOnce() -> Planned + 'a) -> Inspection<'a> {
        Inspection {
            conflicts: Vec::new(),
            drift: Vec::new(),
            saved: Vec::new(),
            ledger_add: Vec::new(),
            planner: Box::new(planner),
        }
    }
}

/// What the store and gc must keep for the generations that stay.
#[derive(Default)]
pub struct Marks {
    pub nodes: HashKeySet<NodeId>,
    pub public: HashKeySet<Hash>,
    pub secret: HashKeySet<Hash>,
}

impl Marks {
    pub fn object(&mut self, hash: Hash, area: Area) {
        match area {
            Area::Public => self.public.insert(hash),
            Area::Secret => self.secret.insert(hash),
        };
    }
}

/// gc's view, after its database commit, for what a kind destroys itself.
pub struct Collect<'a> {
    pub state: &'a State,
    pub kept: &'a [GenerationId],
    pub dry_run: bool,
    /// Store objects of the public area that gc is about to delete.
    pub gone_public: &'a [Hash],
    pub opts: &'a Options,
}

/// What `apply` lends a step.
pub struct ApplyCx<'a> {
    pub root: &'a RootDir,
    pub store: &'a Store,
    pub db: &'a mut Db,
    pub opts: &'a Options,
    pub now: i64,
    /// Called after each finished step (the fault point counts them).
    pub step_done: &'a (dyn Fn() + Sync),
    /// Directories that left the configuration but still hold unmanaged files.
    pub kept: &'a mut Vec<String>,
    /// Units that did not come up (when the switch goes on regardless).
    pub failed: &'a mut Vec<crate::services::Failure>,
}

/// What one kind has to say in a command's output: lines for people, and
/// its value under its name in the `--json` document.
#[derive(Debug, Clone)]
pub struct Report {
    pub kind: &'static str,
    pub lines: Vec<String>,
    pub json: serde_json::Value,
}

/// Several kinds' reports; `--json` shows each under its kind's name.
#[derive(Debug, Clone, Default)]
pub struct Reports(pub Vec<Report>);

impl Serialize for Reports {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for r in &self.0 {
            m.serialize_entry(r.kind, &r.json)?;
        }
        m.end()
    }
}

impl Reports {
    /// Every line of every report, in order.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .flat_map(|r| r.lines.iter().map(String::as_str))
    }
}

/// A report's JSON value, made from a serializable value.
pub fn to_json(kind: &'static str, v: impl Serialize) -> Result<serde_json::Value, Error> {
    serde_json::to_value(v).map_err(|e| Error::Internal(format!("the {kind} report: {e}")))
}

/// What a kind's verify found.
#[derive(Default)]
pub struct Verified {
    /// Entries compared with the root.
    pub entries: u64,
    pub drift: Vec<Drift>,
}

/// A kind of resource. Every method has one meaning for every kind; a
/// kind that has nothing to say keeps the default.
pub trait Kind: Sync {
    /// Its name, and its key in `--json` documents.
    fn name(&self) -> &'static str;

    /// The paths whose removal this kind takes over (pure).
    fn claims(&self, _t: &Transition<'_>) -> Result<Claims, Error> {
        Ok(Claims::new())
    }

    /// Reads the live root (never writes anything, anywhere) and returns
    /// what it found with the pure planner of its steps. `claims`: the
    /// paths whose removal some kind takes over.
    fn inspect<'a>(
        &self,
        t: &'a Transition<'a>,
        claims: &'a Claims,
    ) -> Result<Inspection<'a>, Error>;

    /// What must reach the store before the journal is written (the
    /// packages a transaction installs). A real switch only; a dry run
    /// never calls it.
    fn prepare(&self, _state: &mut State, _steps: &mut [Step]) -> Result<(), Error> {
        Ok(())
    }

    /// How its part of the root differs from generation `gen`.
    fn verify(
        &self,
        _state: &State,
        _generation: &Manifest,
        _opts: &Options,
        _progress: &dyn Progress,
    ) -> Result<Verified, Error> {
        Ok(Verified::default())
    }

    /// Marks what the kept generations need from the store.
    fn mark(&self, _state: &State, _kept: &[Manifest], _marks: &mut Marks) -> Result<(), Error> {
        Ok(())
    }

    /// After gc's commit (or in its dry run): destroys what only the
    /// collected generations had, and says what.
    fn collect(&self, _cx: &Collect<'_>) -> Result<Option<Report>, Error> {
        Ok(None)
    }

    /// What it keeps beyond the generations (detached datasets and their
    /// snapshots), for `list` and `status`.
    fn report(&self, _state: &State, _opts: &Options) -> Result<Option<Report>, Error> {
        Ok(None)
    }
}

/// What every kind's step answers. `apply` runs steps only through this.
pub trait KindStepOps: fmt::Display {
    /// The path the step changes, if it changes one path.
    fn path(&self) -> Option<&EntryPath>;

    /// Planned but not run: it needs what the root lacks (a running
    /// systemd). Reported, never silently dropped.
    fn is_skipped(&self) -> bool {
        false
    }

    /// Worth a line after a switch even without `-v` (a package
    /// transaction is news; a file write is not).
    fn is_news(&self) -> bool {
        false
    }

    /// Runs `steps[0]` (a step of this kind), and may run more of the
    /// following steps at once (files write runs of files in parallel).
    /// Returns how many steps it ran, each reported to `cx.step_done`.
    fn apply_from(steps: &[Step], cx: &mut ApplyCx<'_>) -> Result<usize, Error>
    where
        Self: Sized;
}
