//! Packages as a kind of resource: the one apt transaction before the
//! files, the purge after them, verify against dpkg, and the `.deb` files
//! gc keeps for the generations that stay.

use super::apply::apply as run_step;
use super::apt::Apt;
use super::fetch::fetch;
use super::gc::purge_unkept;
use super::plan::{PackagePlan, plan_full};
use super::reconcile::owned_now;
use super::records::{forget_files, mark_files, owned};
use super::{PackageManager, PackageSet, PackageStep, diff, drift, resolve};
use crate::host::Options;
use crate::kind::{
    ApplyCx, BuildCx, Claims, Collect, Inspection, Kind, KindStepOps, Marks, Planned, Report,
    Transition, Verified, to_json,
};
use crate::kind::{Mode, Phase};
use crate::manifest::Manifest;
use crate::{Error, Progress, State};

/// The kind of `packages`.
pub struct Packages;

impl Kind for Packages {
    type Step = PackageStep;

    fn name(&self) -> &'static str {
        "packages"
    }

    /// The exact versions the declared packages mean on this root (a
    /// simulation; see `resolve`).
    fn build(&self, cx: &mut BuildCx<'_>) -> Result<(), Error> {
        cx.sections.packages = resolve(cx.state, &cx.spec.packages)?;
        Ok(())
    }

    fn inspect<'a>(
        &self,
        t: &'a Transition<'a>,
        _claims: &'a Claims,
        undone: &[&PackageStep],
    ) -> Result<Inspection<'a, PackageStep>, Error> {
        let old = t.from.map_or(PackageSet::none(), |g| &g.manifest.packages);
        let new = t.to.map_or(PackageSet::none(), |g| &g.manifest.packages);
        if old.is_empty() && new.is_empty() {
            return Ok(Inspection::planning(Planned::default));
        }
        let state = t.state;
        let apt = Apt::for_root(&state.root)?.with_timeout(t.opts.package_timeout);
        // An undo goes back by the records the interrupted switch wrote; a
        // switch first sees what dpkg says became of them.
        let owned = if t.mode == Mode::Undo {
            owned(&state.db, apt.name())?
        } else {
            owned_now(&apt, &state.db, &state.root)?
        };
        let mut pk = plan_full(
            &apt,
            &state.root,
            &state.db,
            &state.store,
            old,
            new,
            !t.is_dry_run(),
            &owned,
            undone,
        )?;
        let saved = std::mem::take(&mut pk.saved);
        let mut look = Inspection::planning(move || Planned::steps(steps(pk)));
        look.saved = saved;
        Ok(look)
    }

    fn diff(
        &self,
        _state: &State,
        old: Option<&Manifest>,
        new: &Manifest,
    ) -> Result<Report, Error> {
        let changes = diff(
            old.map_or(PackageSet::none(), |m| &m.packages),
            &new.packages,
        );
        Ok(Report {
            kind: "packages",
            lines: changes.iter().map(ToString::to_string).collect(),
            json: to_json("packages", &changes)?,
        })
    }

    fn news(&self) -> bool {
        true
    }

    fn prepare(&self, state: &mut State, steps: &mut [&mut PackageStep]) -> Result<(), Error> {
        fetch(state, steps)
    }

    fn verify(
        &self,
        state: &State,
        generation: &Manifest,
        opts: &Options,
        _progress: &dyn Progress,
    ) -> Result<Verified, Error> {
        Ok(Verified {
            entries: generation.packages.apt.len() as u64,
            drift: drift(state, &generation.packages, opts.package_timeout)?,
        })
    }

    fn mark(&self, state: &State, kept: &[Manifest], marks: &mut Marks) -> Result<(), Error> {
        mark_files(
            &state.db,
            kept.iter().map(|m| &m.packages),
            &mut marks.public,
        )
    }

    fn collect(&self, cx: &Collect<'_>) -> Result<Option<Report>, Error> {
        if !cx.dry_run {
            // Rows before objects, as everywhere in gc.
            forget_files(&cx.state.db, cx.gone_public)?;
        }
        purge_unkept(cx)
    }
}

/// The package steps with their phases: the transaction before the
/// files, the keep notes and the purge after them.
pub(crate) fn steps(pk: PackagePlan) -> Vec<(Phase, PackageStep)> {
    let install = pk
        .abandon
        .into_iter()
        .chain(pk.install)
        .map(|s| (Phase::Install, s));
    let remove = pk.remove.into_iter().map(|s| (Phase::Purge, s));
    install.chain(remove).collect()
}

impl KindStepOps for PackageStep {
    fn path(&self) -> Option<&sysgen_schema::EntryPath> {
        None
    }

    /// The package files of a transaction (fetched by `prepare`).
    fn reads(&self) -> Vec<(sysgen_store::Hash, sysgen_store::Area)> {
        match self {
            PackageStep::Install { changes, .. } => changes
                .iter()
                .filter_map(|c| c.deb)
                .map(|h| (h, sysgen_store::Area::Public))
                .collect(),
            _ => Vec::new(),
        }
    }

    fn apply(&self, cx: &mut ApplyCx<'_>) -> Result<(), Error> {
        run_step(
            cx.root,
            cx.store,
            cx.db,
            cx.opts.package_timeout,
            self,
            cx.opts.tool_output.as_ref(),
        )
    }
}
