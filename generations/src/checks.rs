//! Checks as a kind of resource: `files.<path>.validate`, run on a staged
//! copy of each new content before the journal is written (a failure
//! changes nothing), and the generation's `checks`, run in the root after
//! everything else of a switch (a failure rolls the switch back, as a
//! failed unit does). Both run through [`crate::validate`].
//!
//! A validation is a step of the plan so that `--dry-run` shows it, but it
//! runs in [`Kind::prepare`], before the journal exists; applying the step
//! does nothing. An undo validates nothing: it goes back to what was there.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sysgen_schema::EntryPath;
use sysgen_store::{Area, Hash};

use crate::blocks::{Block, Blocks, read_text, text};
use crate::kind::{
    ApplyCx, Claims, Failure, Inspection, Kind, KindStepOps, Mode, Phase, Planned, Report,
    Transition, to_json,
};
use crate::manifest::{Change, Entry, Manifest};
use crate::rootfs::Live;
use crate::rootfs::Owner;
use crate::sections::{Check, Checks as CheckList, Validations};
use crate::validate::{Content, Staged, run_in_root, validate};
use crate::{Error, State, error::ServiceError};

/// The kind of `checks` and `files.<path>.validate`.
pub struct Checks;

/// A step of the checks kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "check", rename_all = "snake_case", deny_unknown_fields)]
pub enum CheckStep {
    /// `command` was run on a staged copy of `path`'s new content before
    /// the journal was written.
    Validate {
        path: EntryPath,
        command: String,
        hash: Hash,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        secret: bool,
        mode: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uid: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gid: Option<u32>,
    },
    /// A generation check, run in the root after the switch's other steps.
    Run { command: String, timeout_secs: u64 },
    /// `command` was run on a staged copy of `path` with its blocks
    /// written (`put`) and removed (`drop`), before the journal was written.
    ValidateBlocks {
        path: EntryPath,
        command: String,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        put: BTreeMap<String, Block>,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        drop: BTreeMap<String, String>,
    },
}

impl fmt::Display for CheckStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckStep::Validate { path, command, .. }
            | CheckStep::ValidateBlocks { path, command, .. } => write!(
                f,
                "validate {path} with `{command}` (before anything changes)"
            ),
            CheckStep::Run {
                command,
                timeout_secs,
            } => write!(f, "check `{command}` (timeout {timeout_secs}s)"),
        }
    }
}

impl KindStepOps for CheckStep {
    fn path(&self) -> Option<&EntryPath> {
        None
    }

    fn reads(&self) -> Vec<(Hash, Area)> {
        match self {
            CheckStep::Validate { hash, secret, .. } => {
                vec![(*hash, if *secret { Area::Secret } else { Area::Public })]
            }
            CheckStep::Run { .. } | CheckStep::ValidateBlocks { .. } => Vec::new(),
        }
    }

    fn apply(&self, cx: &mut ApplyCx<'_>) -> Result<(), Error> {
        let CheckStep::Run {
            command,
            timeout_secs,
        } = self
        else {
            // Done in `prepare`, before the journal.
            return Ok(());
        };
        let timeout = Duration::from_secs(*timeout_secs);
        let ran = run_in_root(cx.root.path(), command, timeout);
        let failure = match ran {
            Ok(r) if r.ok() => return Ok(()),
            Ok(r) => Failure {
                unit: "generation check".into(),
                what: format!("`{command}` {}", r.verdict(timeout)),
                log: r.output,
            },
            Err(e) => Failure {
                unit: "generation check".into(),
                what: format!("`{command}` could not run in the root: {e}"),
                log: Vec::new(),
            },
        };
        if cx.opts.rollback_on_failure {
            return Err(Error::Service(ServiceError::Failed {
                failure,
                rolled_back: None,
            }));
        }
        cx.failed.push(failure);
        Ok(())
    }
}

/// The validations of the files `changes` writes that `validate` names.
fn validations(changes: &[Change], validate: &Validations) -> Vec<CheckStep> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::Added(p, e) => Some((p, e)),
            Change::Changed(p, _, e) => Some((p, &**e)),
            Change::Removed(..) => None,
        })
        .filter_map(|(p, e)| {
            let command = validate.0.get(p)?;
            let Entry::File {
                hash,
                mode,
                uid,
                gid,
                secret,
                ..
            } = e
            else {
                return None;
            };
            Some(CheckStep::Validate {
                path: p.clone(),
                command: command.clone(),
                hash: *hash,
                secret: *secret,
                mode: *mode,
                uid: *uid,
                gid: *gid,
            })
        })
        .collect()
}

/// The validations of the block files that `old` → `new` writes, where a
/// block of the file in `new` names a command.
fn block_validations(old: &Blocks, new: &Blocks) -> Vec<CheckStep> {
    crate::blocks::plan(old, new)
        .into_iter()
        .filter(|s| !s.put.is_empty())
        .filter_map(|s| {
            let command = new
                .0
                .get(&s.path)?
                .values()
                .find_map(|b| b.validate.clone())?;
            Some(CheckStep::ValidateBlocks {
                path: s.path,
                command,
                put: s.put,
                drop: s.drop,
            })
        })
        .collect()
}

/// Stages the file at `path` as the blocks step will leave it (same mode
/// and owner; a new file with its blocks' mode) and runs `command` on it.
fn validate_blocks(
    state: &State,
    path: &EntryPath,
    command: &str,
    put: &BTreeMap<String, Block>,
    drop: &BTreeMap<String, String>,
) -> Result<(), Error> {
    let label = format!("blocks.{path}");
    let found = read_text(&state.root, path)?;
    let old = found.as_ref().map_or("", |(t, _)| t.as_str());
    let new =
        text::edit(old, put, drop).map_err(|why| Error::Invalid(format!("{label}: {why}")))?;
    let (mode, owner) = match found {
        Some((_, Live::File(m))) => (
            m.mode,
            Owner {
                uid: Some(m.uid),
                gid: Some(m.gid),
            },
        ),
        _ => (
            put.values()
                .find_map(|b| b.mode)
                .unwrap_or(crate::blocks::CREATE_MODE),
            Owner::default(),
        ),
    };
    validate(
        state,
        &Staged {
            label,
            path,
            command,
            content: Content::Bytes(new.into_bytes()),
            mode,
            owner,
        },
    )
}

impl Kind for Checks {
    type Step = CheckStep;

    fn name(&self) -> &'static str {
        "checks"
    }

    fn build(&self, cx: &mut crate::kind::BuildCx<'_>) -> Result<(), Error> {
        cx.sections.checks = CheckList(
            cx.spec
                .checks
                .iter()
                .map(|c| Check {
                    command: c.command.clone(),
                    timeout_secs: c.timeout_secs,
                })
                .collect(),
        );
        cx.sections.validate = Validations(
            cx.spec
                .files
                .iter()
                .filter_map(|(p, f)| Some((p.clone(), f.validate.clone()?)))
                .collect(),
        );
        Ok(())
    }

    fn inspect<'a>(
        &self,
        t: &'a Transition<'a>,
        _claims: &'a Claims,
        _undone: &[&CheckStep],
    ) -> Result<Inspection<'a, CheckStep>, Error> {
        let Some(to) = t.to else {
            return Ok(Inspection::planning(Planned::default));
        };
        let mut steps: Vec<(Phase, CheckStep)> = Vec::new();
        if matches!(t.mode, Mode::Switch { .. }) {
            steps.extend(
                validations(&t.changes.list(), &to.manifest.validate)
                    .into_iter()
                    .map(|s| (Phase::Snapshot, s)),
            );
            let old = t.from.map_or(Blocks::none(), |g| &g.manifest.blocks);
            steps.extend(
                block_validations(old, &to.manifest.blocks)
                    .into_iter()
                    .map(|s| (Phase::Snapshot, s)),
            );
        }
        // The generation reached is checked, also when an undo reaches it
        // (then a failure is reported, not undone again).
        steps.extend(to.manifest.checks.0.iter().map(|c| {
            (
                Phase::Start,
                CheckStep::Run {
                    command: c.command.clone(),
                    timeout_secs: c.timeout_secs,
                },
            )
        }));
        Ok(Inspection::planning(move || Planned::steps(steps)))
    }

    fn prepare(&self, state: &mut State, steps: &mut [&mut CheckStep]) -> Result<(), Error> {
        for s in steps.iter() {
            if let CheckStep::ValidateBlocks {
                path,
                command,
                put,
                drop,
            } = &**s
            {
                validate_blocks(state, path, command, put, drop)?;
            }
            if let CheckStep::Validate {
                path,
                command,
                hash,
                secret,
                mode,
                uid,
                gid,
            } = &**s
            {
                validate(
                    state,
                    &Staged {
                        label: format!("files.{path}"),
                        path,
                        command,
                        content: Content::Stored {
                            hash: *hash,
                            area: if *secret { Area::Secret } else { Area::Public },
                        },
                        mode: *mode,
                        owner: Owner {
                            uid: *uid,
                            gid: *gid,
                        },
                    },
                )?;
            }
        }
        Ok(())
    }

    fn diff(
        &self,
        _state: &State,
        old: Option<&Manifest>,
        new: &Manifest,
    ) -> Result<Report, Error> {
        let none = CheckList::default();
        let old = old.map_or(&none, |m| &m.checks);
        let mut lines = Vec::new();
        let mut json = Vec::new();
        for c in &old.0 {
            if !new.checks.0.contains(c) {
                lines.push(format!("- check `{}`", c.command));
                json.push(serde_json::json!({ "command": c.command, "change": "removed" }));
            }
        }
        for c in &new.checks.0 {
            if !old.0.contains(c) {
                lines.push(format!("+ check `{}`", c.command));
                json.push(serde_json::json!({ "command": c.command, "change": "added" }));
            }
        }
        Ok(Report {
            kind: "checks",
            lines,
            json: to_json("checks", &json)?,
        })
    }
}
