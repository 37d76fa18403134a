//! The interface every kind of resource implements, in the spirit of
//! Consfigurator's properties: a check against reality ([`Kind::inspect`],
//! reading only), a pure plan (the planner it hands back), apply and
//! unapply (its steps, run by `apply`; the undo is the same planner asked
//! for the way back, [`Mode::Undo`]), verify, what it keeps alive for gc,
//! and what it reports.
//!
//! The kinds are listed once, in [`crate::kinds`]. Nothing in `switch`,
//! `recover`, `pipeline`, `apply`, `verify` or `gc` names one: they ask
//! every kind in that list the same questions.

use std::cell::{Ref, RefCell};
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use sysgen_schema::EntryPath;
use sysgen_store::{Area, Hash, HashKeySet, Store};

mod changes;
pub use changes::FileChange;

use crate::db::{Db, Origin, Saved};
pub use crate::error::Failure;
use crate::host::Options;
use crate::manifest::{Change, GenerationId, Manifest, NodeId};
use crate::rootfs::RootDir;
use crate::sections::Sections;
use crate::{Drift, Error, Progress, State};

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
    /// Managed blocks removed from files sysgen does not own, before the
    /// tree's removals (an empty parent sysgen made can then go).
    Unblock,
    /// Groups and users created or changed, before the files they own;
    /// after the packages (which may make the groups they name) and the
    /// datasets (a home may lie in one).
    AddUsers,
    /// Paths removed (or put back as they were before sysgen), deepest first.
    Remove,
    /// Paths created or changed, parents first.
    Create,
    /// Managed blocks written, after the tree's creations (their parent
    /// directories exist).
    Block,
    /// Datasets detached, after the files inside them went.
    Detach,
    /// Users and groups removed (homes kept) or put back as they were,
    /// after the files they owned went.
    RemoveUsers,
    /// Packages removed, after the files that needed them.
    Purge,
    /// Units enabled, reloaded, started, restarted, checked.
    Start,
    /// The generation recorded as active (always last).
    Activate,
}

/// A generation at one end of a transition.
#[derive(Clone, Copy)]
pub struct Gen<'a> {
    pub number: u64,
    pub id: GenerationId,
    pub manifest: &'a Manifest,
}

/// Why a plan is made.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A switch (or rollback) from the active generation; `force`
    /// overwrites drift after saving it.
    Switch { force: bool, dry_run: bool },
    /// `recover --rollback`: the way back from an interrupted switch, from
    /// wherever it stopped (each kind is handed the steps of its own that
    /// the switch planned). Nothing is refused: the undo converges from any
    /// state the switch could have left.
    Undo,
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
    pub changes: Changes,
    /// What was on the root before sysgen managed each path.
    pub ledger: &'a BTreeMap<EntryPath, Origin>,
    pub mode: Mode,
    pub opts: &'a Options,
    pub now: i64,
}

/// The tree's changes of a transition, sorted by path. Every kind may read
/// them while it inspects and plans; the tree's planner, which the
/// pipeline asks last, then takes them and frees each as its step is made:
/// a first switch has a change per file, and holding them beside the
/// steps made for them held every file twice.
pub struct Changes(RefCell<Vec<Change>>);

impl Changes {
    pub fn new(list: Vec<Change>) -> Changes {
        Changes(RefCell::new(list))
    }

    /// Every change (none once the tree's planner took them).
    pub fn list(&self) -> Ref<'_, [Change]> {
        Ref::map(self.0.borrow(), Vec::as_slice)
    }

    /// Hands the changes over to the tree's planner, the last to need
    /// them. No list is held then: every kind reads them within its own
    /// inspection or planner, and the pipeline asks the tree's last.
    pub(crate) fn take(&self) -> Vec<Change> {
        self.0.take()
    }
}

impl Transition<'_> {
    pub fn is_dry_run(&self) -> bool {
        matches!(self.mode, Mode::Switch { dry_run: true, .. })
    }
}

/// What a kind found on the live root, and its plan, still to be made.
pub struct Inspection<'a, S> {
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
    pub planner: Planner<'a, S>,
}

pub type Planner<'a, S> = Box<dyn FnOnce() -> Planned<S> + 'a>;

/// Paths whose removal a kind takes over from the tree of files (a
/// detached dataset's directory moves away; an `rmdir` would delete an
/// empty btrfs subvolume).
pub type Claims = BTreeSet<EntryPath>;

/// A kind's part of a plan: its steps, each with the phase it runs in.
pub struct Planned<S> {
    pub steps: Vec<(Phase, S)>,
    /// Ledger records the activation drops (kept whole for an undo).
    pub ledger_remove: Vec<(EntryPath, Origin)>,
}

impl<S> Default for Planned<S> {
    fn default() -> Self {
        Planned {
            steps: Vec::new(),
            ledger_remove: Vec::new(),
        }
    }
}

impl<S> Planned<S> {
    /// Steps alone, in their phases.
    pub fn steps(steps: Vec<(Phase, S)>) -> Planned<S> {
        Planned {
            steps,
            ledger_remove: Vec::new(),
        }
    }
}

impl<'a, S> Inspection<'a, S> {
    /// An inspection that found nothing, with its planner.
    pub fn planning(planner: impl FnOnce() -> Planned<S> + 'a) -> Inspection<'a, S> {
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
///
/// Nodes (directories, a few per hundred files) are a set, as the walk
/// asks of each whether it was seen. Objects are only gathered, then
/// sorted once ([`MarkSet::finish`]) and swept beside the store's sorted
/// index: 32 bytes per object where a `HashSet` took 37 to 75.
#[derive(Default)]
pub struct Marks {
    pub nodes: HashKeySet<NodeId>,
    pub public: MarkSet,
    pub secret: MarkSet,
}

impl Marks {
    pub fn object(&mut self, hash: Hash, area: Area) {
        match area {
            Area::Public => self.public.insert(hash),
            Area::Secret => self.secret.insert(hash),
        };
    }
}

/// Object hashes gathered with repeats (generations share most objects),
/// kept within twice the distinct ones by sorting away the repeats
/// whenever the vector is about to grow.
#[derive(Default)]
pub struct MarkSet {
    hashes: Vec<Hash>,
    /// How many hashes the last sort left (its prefix has no repeats).
    distinct: usize,
}

impl MarkSet {
    pub fn insert(&mut self, hash: Hash) {
        // Full, and as many pushed since the last sort as it left: sort
        // (repeats go) rather than double while half may be repeats.
        if self.hashes.len() == self.hashes.capacity()
            && self.hashes.len() >= 2 * self.distinct.max(1024)
        {
            self.compact();
        }
        self.hashes.push(hash);
    }

    fn compact(&mut self) {
        self.hashes.sort_unstable();
        self.hashes.dedup();
        self.distinct = self.hashes.len();
    }

    /// Every hash inserted, sorted, each once.
    pub fn finish(&mut self) -> &[Hash] {
        self.compact();
        self.hashes.shrink_to_fit();
        &self.hashes
    }
}

impl Extend<Hash> for MarkSet {
    fn extend<I: IntoIterator<Item = Hash>>(&mut self, iter: I) {
        for h in iter {
            self.insert(h);
        }
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
    /// gc's clock: what a kind keeps for a grace period is counted from it.
    pub now: i64,
}

/// What `apply` lends a step.
pub struct ApplyCx<'a> {
    pub root: &'a RootDir,
    pub store: &'a Store,
    pub db: &'a mut Db,
    pub opts: &'a Options,
    pub now: i64,
    /// Called after each finished step (the fault point counts them), with
    /// its place among the steps `apply_from` was handed (0: the first),
    /// so the step's line can be shown as it finishes.
    pub step_done: &'a (dyn Fn(usize) + Sync),
    /// Directories that left the configuration but still hold unmanaged files.
    pub kept: &'a mut Vec<String>,
    /// What did not come up (when the switch goes on regardless).
    pub failed: &'a mut Vec<Failure>,
    /// When a kind that ran several steps at once returns an error: which
    /// of them failed (0: the first), so the error names that step.
    pub failed_at: usize,
}

/// What one kind has to say in a command's output: lines for people, and
/// its value under its name in the `--json` document.
#[derive(Debug, Clone)]
pub struct Report {
    pub kind: &'static str,
    pub lines: Vec<String>,
    pub json: Json,
}

/// A report's value under its kind's name in the `--json` document.
#[derive(Debug, Clone)]
pub enum Json {
    Value(serde_json::Value),
    /// The tree's changes (`diff`'s main list), kept typed: `--json`
    /// writes them as they are, and the CLI words their lines for people
    /// from them, so the report's own `lines` are empty. A value and a
    /// line made per change, for one of the two outputs, were a fifth of a
    /// large diff's time.
    Changes(Vec<FileChange>),
}

impl Serialize for Json {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Value(v) => v.serialize(s),
            Json::Changes(c) => c.serialize(s),
        }
    }
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
pub fn to_json(kind: &'static str, v: impl Serialize) -> Result<Json, Error> {
    serde_json::to_value(v)
        .map(Json::Value)
        .map_err(|e| Error::Internal(format!("the {kind} report: {e}")))
}

/// What a build lends a kind to make its section of a generation.
pub struct BuildCx<'a> {
    pub state: &'a State,
    pub spec: &'a sysgen_schema::HostSpec,
    /// The sections being made; each kind sets its own.
    pub sections: &'a mut Sections,
    /// Directories a kind needs in the tree, with their attributes (a
    /// dataset's own directory: the file steps set its mode and owner, and
    /// `verify` checks them).
    pub dirs: &'a mut Vec<(EntryPath, crate::manifest::Entry)>,
    /// Owner and group of a declaration, resolved against the root's
    /// `/etc/passwd` and `/etc/group`.
    pub ids: &'a ResolveIds<'a>,
}

/// Resolves an owner and a group; the `&str` names the declaration for
/// the error.
pub type ResolveIds<'a> = dyn Fn(
        &Option<sysgen_schema::Principal>,
        &Option<sysgen_schema::Principal>,
        &str,
    ) -> Result<(Option<u32>, Option<u32>), Error>
    + 'a;

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
    /// Its steps: what `apply` runs and the journal records.
    type Step: KindStepOps + Serialize + 'static;

    /// Its name, and its key in `--json` documents.
    fn name(&self) -> &'static str;

    /// Its section of a generation, from the configuration, validated
    /// against the host (reading the root: owners, the package manager's
    /// versions), writing nothing. The tree of files is built by `ingest`
    /// itself (it hashes and stores the contents).
    fn build(&self, _cx: &mut BuildCx<'_>) -> Result<(), Error> {
        Ok(())
    }

    /// The paths whose removal this kind takes over (pure). `undone`: in
    /// an undo, this kind's steps of the switch being undone.
    fn claims(&self, _t: &Transition<'_>, _undone: &[&Self::Step]) -> Result<Claims, Error> {
        Ok(Claims::new())
    }

    /// Reads the live root (never writes anything, anywhere) and returns
    /// what it found with the pure planner of its steps. `claims`: the
    /// paths whose removal some kind takes over; `undone` as for `claims`.
    fn inspect<'a>(
        &self,
        t: &'a Transition<'a>,
        claims: &'a Claims,
        undone: &[&Self::Step],
    ) -> Result<Inspection<'a, Self::Step>, Error>;

    /// What must reach the store before the journal is written (the
    /// packages a transaction installs), for its steps of the plan. A real
    /// switch only; a dry run never calls it.
    fn prepare(&self, _state: &mut State, _steps: &mut [&mut Self::Step]) -> Result<(), Error> {
        Ok(())
    }

    /// How its part of the root differs from generation `generation`.
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

    /// Its changes from `old` (none: from nothing) to `new`, for `diff`:
    /// reads the database, never the root.
    fn diff(&self, state: &State, old: Option<&Manifest>, new: &Manifest) -> Result<Report, Error>;

    /// How many of its entries `old` → `new` adds, removes and changes: the
    /// `+`, `-` and `~` lines of [`Kind::diff`]. A kind whose report can be
    /// long (the tree: a line per file) counts without making it.
    fn counts(
        &self,
        state: &State,
        old: Option<&Manifest>,
        new: &Manifest,
    ) -> Result<(u64, u64, u64), Error> {
        let mut n = (0, 0, 0);
        for l in self.diff(state, old, new)?.lines {
            match l.as_bytes().first() {
                Some(b'+') => n.0 += 1,
                Some(b'-') => n.1 += 1,
                Some(b'~') => n.2 += 1,
                _ => {}
            }
        }
        Ok(n)
    }

    /// Whether a switch's outcome lists its steps (a line each without
    /// `-v`, and under its name in `--json`): a package transaction is
    /// news, a file write is not.
    fn news(&self) -> bool {
        false
    }

    /// The line that says `n` of its steps were planned but not run.
    fn skipped_note(&self, n: usize) -> String {
        format!("skipped {}", crate::text::plural(n, "step"))
    }
}

/// What one step writes on the root's filesystem.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    /// Bytes of content (a file takes whole blocks: the check rounds up).
    pub bytes: u64,
    /// New entries (inodes): a file written under a temporary name takes a
    /// new one before the old goes.
    pub entries: u64,
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

    /// The store objects the step reads when it runs, each in its area:
    /// checked before the journal is written ([`crate::pipeline::prepare`]).
    fn reads(&self) -> Vec<(Hash, Area)> {
        Vec::new()
    }

    /// What it writes on the root's filesystem, for the check of free
    /// space before the journal is written. A kind whose writes cannot be
    /// told in advance (a package transaction) says nothing.
    fn needs(&self) -> Needs {
        Needs::default()
    }

    /// Runs this one step; converges whatever it finds.
    fn apply(&self, cx: &mut ApplyCx<'_>) -> Result<(), Error>;

    /// Runs the first of `steps` (its steps that follow in the plan, in
    /// order, as long as they are consecutive), and may run more of them at
    /// once (files write runs of files in parallel). Returns how many it
    /// ran, each reported to `cx.step_done`. By default: the first alone.
    fn apply_from(
        steps: &mut dyn Iterator<Item = &Self>,
        cx: &mut ApplyCx<'_>,
    ) -> Result<usize, Error>
    where
        Self: Sized,
    {
        let Some(s) = steps.next() else {
            return Ok(0);
        };
        s.apply(cx)?;
        (cx.step_done)(0);
        Ok(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_set_finishes_sorted_as_the_hashes_are_without_repeats() {
        let all: Vec<Hash> = (0..5000u32).map(|i| Hash::of(&i.to_le_bytes())).collect();
        let mut set = MarkSet::default();
        // Every hash up to three times, over many compactions.
        for round in 0..3 {
            for h in all.iter().skip(round) {
                set.insert(*h);
            }
        }
        let mut want = all;
        want.sort_unstable();
        assert_eq!(set.finish(), &want[..]);
    }
}
