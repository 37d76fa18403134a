//! Datasets as a kind of resource: snapshots before anything changes,
//! create / adopt / re-attach / restore before the files inside them,
//! detach after them; the detached data and snapshots gc destroys.

use std::collections::BTreeMap;

use super::records::{known, restores, taken};
use super::{Context, DatasetOptions, DatasetPlan, DatasetStep, Datasets, Names};
use super::{
    DatasetReport, apply_step, diff, from_spec, gc_datasets, plan, precheck, report, strangers,
    undo,
};
use crate::host::Options;
use crate::kind::{
    ApplyCx, BuildCx, Claims, Collect, Inspection, Kind as KindTrait, KindStepOps, Mode, Phase,
    Planned, Report, Transition, Verified, to_json,
};
use crate::rootfs::Live;
use crate::text::{generation_list, human_bytes, plural, utc};
use crate::{Error, State};

/// The kind of `datasets`.
pub struct DatasetKind;

/// What planning the datasets of a transition reads from the state.
struct Inputs {
    old: Datasets,
    new: Datasets,
    known: BTreeMap<sysgen_schema::EntryPath, super::Kind>,
    taken: BTreeMap<sysgen_schema::EntryPath, std::collections::BTreeSet<String>>,
    restores: BTreeMap<sysgen_schema::EntryPath, String>,
    opts: DatasetOptions,
}

impl Inputs {
    fn read(t: &Transition<'_>) -> Result<Option<Inputs>, Error> {
        let db = &t.state.db;
        // The transition holds both manifests: no need to read them again.
        let old = t
            .from
            .map_or_else(Datasets::default, |g| g.manifest.datasets.clone());
        let new =
            t.to.map_or_else(Datasets::default, |g| g.manifest.datasets.clone());
        if old.is_empty() && new.is_empty() {
            return Ok(None);
        }
        // An undo puts back what the switch did; it never restores data.
        let with_data = matches!(t.mode, Mode::Switch { .. }) && t.opts.with_data;
        let restores = if with_data {
            restores(db, t.to_number, &new)?
        } else {
            BTreeMap::new()
        };
        Ok(Some(Inputs {
            old,
            new,
            known: known(db)?,
            taken: taken(db)?,
            restores,
            opts: DatasetOptions {
                tools: t.opts.tools.clone(),
                with_data,
            },
        }))
    }

    /// `changes`: the transition's (see [`crate::kind::Changes::list`]).
    fn context<'a>(
        &'a self,
        t: &'a Transition<'a>,
        changes: &'a [crate::manifest::Change],
    ) -> Context<'a> {
        Context {
            changes,
            ledger: t.ledger,
            known: &self.known,
            opts: &self.opts,
        }
    }

    fn names<'a>(&'a self, t: &Transition<'_>) -> Names<'a> {
        Names {
            from: t.from.map(|g| g.number),
            to: t.to_number,
            taken: &self.taken,
            restores: &self.restores,
            now: t.now,
        }
    }

    /// The dataset plan, from what the precheck found; `undone`: the
    /// dataset steps of the switch an undo undoes.
    fn plan(
        &self,
        t: &Transition<'_>,
        facts: &super::Facts,
        undone: &[DatasetStep],
    ) -> DatasetPlan {
        let changes = t.changes.list();
        let cx = self.context(t, &changes);
        let names = self.names(t);
        match t.mode {
            Mode::Switch { .. } => plan(&self.old, &self.new, facts, &cx, &names),
            Mode::Undo => undo(undone, &self.old, &self.new, facts, &cx, &names),
        }
    }
}

impl KindTrait for DatasetKind {
    type Step = DatasetStep;

    fn name(&self) -> &'static str {
        "datasets"
    }

    /// The declared datasets, and their directories in the tree.
    fn build(&self, cx: &mut BuildCx<'_>) -> Result<(), Error> {
        let (ids, dirs) = (cx.ids, &mut *cx.dirs);
        cx.sections.datasets = from_spec(cx.spec, &mut |p, d| {
            let what = format!("{}: datasets.{p}", d.declared_in.display());
            let (uid, gid) = ids(&d.owner, &d.group, &what)?;
            dirs.push((
                p.clone(),
                crate::manifest::Entry::Dir {
                    mode: d.mode.map(|m| m.bits()),
                    uid,
                    gid,
                    xattrs: crate::rootfs::Xattrs::default(),
                },
            ));
            Ok(())
        })?;
        Ok(())
    }

    /// A detached dataset's path (and the directories sysgen made above it)
    /// is not removed by the tree: the detach moves it away. Which paths
    /// those are does not depend on the root, so no precheck is needed.
    fn claims(&self, t: &Transition<'_>, undone: &[&DatasetStep]) -> Result<Claims, Error> {
        let undone: Vec<DatasetStep> = undone.iter().map(|s| (*s).clone()).collect();
        Ok(match Inputs::read(t)? {
            Some(i) => i.plan(t, &super::Facts::default(), &undone).not_removed,
            None => Claims::new(),
        })
    }

    fn inspect<'a>(
        &self,
        t: &'a Transition<'a>,
        _claims: &'a Claims,
        undone: &[&DatasetStep],
    ) -> Result<Inspection<'a, DatasetStep>, Error> {
        let Some(inputs) = Inputs::read(t)? else {
            return Ok(Inspection::planning(Planned::default));
        };
        // Undoing reads the root only to say how each dataset comes back;
        // whatever it would object to, the undo converges from where the
        // switch stopped (the pipeline refuses nothing in an undo).
        let changes = t.changes.list();
        let (facts, conflicts) = precheck(
            &t.state.root,
            &inputs.old,
            &inputs.new,
            &inputs.restores,
            &inputs.context(t, &changes),
        )?;
        let undone: Vec<DatasetStep> = undone.iter().map(|s| (*s).clone()).collect();
        if let Mode::Undo = t.mode {
            let strangers = strangers(
                &t.state.root,
                &inputs.old,
                &inputs.new,
                &facts,
                &undone,
                &inputs.context(t, &changes),
            )?;
            if !strangers.is_empty() {
                return Err(Error::Dataset(crate::error::DatasetError(format!(
                    "cannot undo the interrupted switch, nothing was changed:\n{}",
                    strangers
                        .iter()
                        .map(|s| format!("  {s}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                ))));
            }
        }
        let mut look =
            Inspection::planning(move || Planned::steps(steps(inputs.plan(t, &facts, &undone))));
        look.conflicts = conflicts;
        Ok(look)
    }

    /// Each dataset of the generation is at its path and is the dataset:
    /// a subvolume, a marked directory. A directory that an app or
    /// tmpfiles made there while the dataset was away is not it.
    fn verify(
        &self,
        state: &State,
        generation: &crate::manifest::Manifest,
        opts: &Options,
        _progress: &dyn crate::Progress,
    ) -> Result<Verified, Error> {
        let mut drift = Vec::new();
        for (p, d) in &generation.datasets.0 {
            // A zfs dataset is known by its name (see backend/zfs.rs).
            if matches!(d.kind, super::Kind::Zfs { .. }) {
                continue;
            }
            let b = super::backend::of(&d.kind, &opts.tools);
            if b.check_tool(p).is_err() || !matches!(state.root.inspect(p)?, Live::Dir(_)) {
                // Missing: the tree's own check of the directory says so.
                continue;
            }
            let what = match (
                b.identity(&state.root, p)?,
                b.detached(&state.root, p, false)?,
            ) {
                (_, Some((at, _))) => format!(
                    "is not the dataset ({}): the dataset is detached at {at}; move what is at {p} away, then `sysgen switch` again",
                    d.kind
                ),
                (None, None) => format!(
                    "is not the dataset ({}): a plain directory, which sysgen did not make or adopt as the dataset",
                    d.kind
                ),
                (Some(_), None) => continue,
            };
            drift.push(crate::Drift {
                path: p.to_string(),
                what,
            });
        }
        Ok(Verified {
            // Each dataset's directory is counted as an entry of the tree.
            entries: 0,
            drift,
        })
    }

    fn diff(
        &self,
        _state: &State,
        old: Option<&crate::manifest::Manifest>,
        new: &crate::manifest::Manifest,
    ) -> Result<Report, Error> {
        let changes = diff(old.map_or(Datasets::none(), |m| &m.datasets), &new.datasets);
        Ok(Report {
            kind: "datasets",
            lines: changes.iter().map(ToString::to_string).collect(),
            json: to_json("datasets", &changes)?,
        })
    }

    fn collect(&self, cx: &Collect<'_>) -> Result<Option<Report>, Error> {
        let gone = gc_datasets(cx.state, &cx.opts.tools, cx.kept, cx.now, cx.dry_run)?;
        let verb = if cx.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        let lines = gone
            .iter()
            .map(|d| {
                let what = if d.what == "snapshot" {
                    format!("snapshot {} of dataset {}", d.location, d.path)
                } else {
                    format!("detached dataset {} ({}) at {}", d.path, d.kind, d.location)
                };
                format!("{verb} {what} ({})", human_bytes(d.bytes))
            })
            .collect();
        Ok(Some(Report {
            kind: "datasets",
            lines,
            json: to_json("datasets", &gone)?,
        }))
    }

    fn report(&self, state: &State, opts: &Options) -> Result<Option<Report>, Error> {
        let datasets = report(state, &opts.tools)?;
        Ok(Some(Report {
            kind: "datasets",
            lines: report_lines(&datasets),
            json: to_json("datasets", &datasets)?,
        }))
    }
}

/// The dataset steps with their phases: snapshots before anything
/// changes, attaches before the files inside, detaches after them.
pub(crate) fn steps(dp: DatasetPlan) -> Vec<(Phase, DatasetStep)> {
    let snapshots = dp.snapshots.into_iter().map(|s| (Phase::Snapshot, s));
    let attach = dp.attach.into_iter().map(|s| (Phase::Attach, s));
    let detach = dp.detach.into_iter().map(|s| (Phase::Detach, s));
    snapshots.chain(attach).chain(detach).collect()
}

impl KindStepOps for DatasetStep {
    fn path(&self) -> Option<&sysgen_schema::EntryPath> {
        Some(DatasetStep::path(self))
    }

    fn apply(&self, cx: &mut ApplyCx<'_>) -> Result<(), Error> {
        apply_step(
            cx.root,
            cx.db,
            &cx.opts.tools,
            self,
            cx.now,
            cx.store.fault_point(),
        )
    }
}

/// One line per dataset sysgen knows, then one per snapshot of it.
fn report_lines(datasets: &[DatasetReport]) -> Vec<String> {
    let mut lines = Vec::new();
    for d in datasets {
        let gens = if d.generations.is_empty() {
            "no remaining generation has it".to_owned()
        } else {
            format!("in {}", generation_list(&d.generations))
        };
        lines.push(format!(
            "dataset {} ({}): {} at {}, {gens}, {}",
            d.path,
            d.kind,
            d.state,
            d.location,
            plural(d.snapshots.len(), "snapshot"),
        ));
        for s in &d.snapshots {
            lines.push(format!(
                "  snapshot {} ({}, generation {}, {}): {}",
                s.name,
                s.why,
                s.generation,
                utc(s.taken_at),
                s.location
            ));
        }
    }
    lines
}
