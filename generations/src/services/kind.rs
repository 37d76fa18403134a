//! Units as a kind of resource: stop and disable before the files and
//! packages change, enable, start, restart, reload and check after them;
//! verify their enablement.

use std::collections::BTreeMap;

use super::{Planned as UnitSteps, ServiceStep, Services, apply_step, diff, enablement_drift};
use super::{origins_on_root, plan, undo_origins};
use crate::host::Options;
use crate::kind::Phase;
use crate::kind::{
    ApplyCx, BuildCx, Claims, Inspection, Kind, KindStepOps, Mode, Planned, Report, Transition,
    Verified, to_json,
};
use crate::manifest::Manifest;
use crate::{Error, Progress, State};

/// The kind of `services`.
pub struct ServiceKind;

impl Kind for ServiceKind {
    type Step = ServiceStep;

    fn name(&self) -> &'static str {
        "services"
    }

    fn build(&self, cx: &mut BuildCx<'_>) -> Result<(), Error> {
        cx.sections.services = Services::from_spec(cx.spec);
        Ok(())
    }

    fn inspect<'a>(
        &self,
        t: &'a Transition<'a>,
        _claims: &'a Claims,
        undone: &[&ServiceStep],
    ) -> Result<Inspection<'a, ServiceStep>, Error> {
        let old = t.from.map_or(Services::none(), |g| &g.manifest.services);
        let new = t.to.map_or(Services::none(), |g| &g.manifest.services);
        let state = t.state;
        let opts = &t.opts.services;
        // What each unit goes back to when it leaves: recorded for the
        // units sysgen manages; for those it starts to manage, read from
        // the root, or (undoing a switch) taken from the steps that
        // adopted them, which may not have reached the database.
        let origins: BTreeMap<String, bool> = match t.mode {
            Mode::Switch { .. } => {
                let mut o = state.db.unit_origins()?;
                o.extend(origins_on_root(opts, state.root.path(), old, new)?);
                o
            }
            Mode::Undo => undo_origins(state.db.unit_origins()?, undone),
        };
        // A file whose blocks the switch writes or removes changes as a
        // file of the tree does: the units that watch it restart or reload.
        let blocks = crate::blocks::as_changes(
            t.from
                .map_or(crate::blocks::Blocks::none(), |g| &g.manifest.blocks),
            t.to.map_or(crate::blocks::Blocks::none(), |g| &g.manifest.blocks),
        );
        let listed = t.changes.list();
        let changes: std::borrow::Cow<'_, [crate::manifest::Change]> = if blocks.is_empty() {
            std::borrow::Cow::Borrowed(&listed)
        } else {
            std::borrow::Cow::Owned(listed.iter().cloned().chain(blocks).collect())
        };
        let planned = plan(old, new, &changes, &origins, opts.runtime);
        Ok(Inspection::planning(move || Planned::steps(steps(planned))))
    }

    fn diff(
        &self,
        _state: &State,
        old: Option<&Manifest>,
        new: &Manifest,
    ) -> Result<Report, Error> {
        let changes = diff(old.map_or(Services::none(), |m| &m.services), &new.services);
        Ok(Report {
            kind: "services",
            lines: changes.iter().map(ServiceKind::line).collect(),
            json: to_json("services", &changes)?,
        })
    }

    fn skipped_note(&self, n: usize) -> String {
        format!(
            "systemd is not running on this root: skipped {} (`-v` lists them)",
            crate::text::plural(n, "runtime step")
        )
    }

    fn verify(
        &self,
        state: &State,
        generation: &Manifest,
        opts: &Options,
        _progress: &dyn Progress,
    ) -> Result<Verified, Error> {
        Ok(Verified {
            entries: 0,
            drift: enablement_drift(&opts.services, state.root.path(), &generation.services)?,
        })
    }
}

impl ServiceKind {
    /// `+ service a.service  enabled`, one per unit that differs.
    fn line(u: &super::UnitChange) -> String {
        let sign = match u.change {
            "added" => '+',
            "removed" => '-',
            _ => '~',
        };
        format!("{sign} service {}  {}", u.unit, u.what())
    }
}

/// The units' steps with their phases: `down` stops, `up` starts.
pub(crate) fn steps(planned: UnitSteps) -> Vec<(Phase, ServiceStep)> {
    let down = planned.down.into_iter().map(|s| (Phase::Stop, s));
    let up = planned.up.into_iter().map(|s| (Phase::Start, s));
    down.chain(up).collect()
}

impl KindStepOps for ServiceStep {
    fn path(&self) -> Option<&sysgen_schema::EntryPath> {
        None
    }

    fn is_skipped(&self) -> bool {
        ServiceStep::is_skipped(self)
    }

    fn apply(&self, cx: &mut ApplyCx<'_>) -> Result<(), Error> {
        apply_step(
            cx.root.path(),
            cx.db,
            &cx.opts.services,
            self,
            cx.opts.rollback_on_failure,
            cx.failed,
        )
    }
}
