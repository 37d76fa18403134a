//! Services: the systemd units a generation declares, and the steps that
//! take a root's units from one generation to another.
//!
//! A generation records each declared unit ([`Services`]): whether it is
//! enabled, which paths restart or reload it, and its activation check.
//! [`plan`] is pure, like the file plan: it turns the two generations'
//! units, the file changes of the switch and what sysgen recorded about
//! each unit before it first managed it into two lists of [`ServiceStep`]s:
//! `down` (stop, disable: before packages and files change, so a unit is
//! stopped while its unit file still exists) and `up` (enable,
//! daemon-reload, start, restart, reload, check: after the files they
//! watch changed). [`systemd`] runs them.
//!
//! Enablement is offline (`systemctl --root=ROOT enable/disable`), so it
//! works on a chroot or an image. Everything else needs a running systemd
//! on the root: when there is none, those steps are planned as skipped and
//! reported, never silently dropped.
//!
//! sysgen never disables a unit it did not enable: the first step that
//! manages a unit records whether it was enabled then (its "origin"), and a
//! unit that leaves the configuration goes back to exactly that.

pub(crate) mod kind;
mod systemd;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use sysgen_schema::{EntryPath, HostSpec};

use crate::manifest::Change;
pub use crate::sections::{Check, Services, Unit};

pub use kind::ServiceKind;
pub use systemd::{
    Failure, ServiceError, ServiceOptions, apply_step, enablement_drift, origins_on_root,
};

impl Services {
    pub fn from_spec(spec: &HostSpec) -> Services {
        Services(
            spec.services
                .iter()
                .map(|(name, s)| {
                    let unit = Unit {
                        enable: s.enable,
                        restart_on: s.restart_on.clone(),
                        reload_on: s.reload_on.clone(),
                        check: s.check.as_ref().map(|c| Check {
                            command: c.command.clone(),
                            timeout_secs: c.timeout_secs,
                        }),
                    };
                    (name.clone(), unit)
                })
                .collect(),
        )
    }
}

/// A step of the plan that concerns a unit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "service", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServiceStep {
    /// `systemctl --root=ROOT enable UNIT`. `adopt` is set on the first
    /// step that manages the unit: whether it was enabled before, recorded
    /// so that the unit goes back to that when it leaves the configuration.
    Enable {
        unit: String,
        why: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        adopt: Option<bool>,
    },
    /// `systemctl --root=ROOT disable UNIT`; `adopt` as for `Enable`.
    Disable {
        unit: String,
        why: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        adopt: Option<bool>,
    },
    /// A step that needs a running systemd. `skipped` when there is none
    /// on the root: it is in the plan (so the user sees what did not
    /// happen) and does nothing.
    Runtime {
        action: Action,
        why: String,
        skipped: bool,
    },
}

/// What a runtime step asks of the running systemd.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    DaemonReload,
    Stop {
        unit: String,
    },
    Start {
        unit: String,
    },
    /// `if_running`: a unit declared with `enable: false` is restarted only
    /// if it runs (`try-restart`), never started by a restart.
    Restart {
        unit: String,
        if_running: bool,
    },
    Reload {
        unit: String,
        if_running: bool,
    },
    Check {
        unit: String,
        command: String,
        timeout_secs: u64,
    },
}

impl ServiceStep {
    pub fn is_skipped(&self) -> bool {
        matches!(self, ServiceStep::Runtime { skipped: true, .. })
    }

    /// The origin this step records, if it is the first to manage its unit.
    pub fn adopts(&self) -> Option<(&str, bool)> {
        match self {
            ServiceStep::Enable {
                unit,
                adopt: Some(was),
                ..
            }
            | ServiceStep::Disable {
                unit,
                adopt: Some(was),
                ..
            } => Some((unit, *was)),
            _ => None,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::DaemonReload => write!(f, "daemon-reload"),
            Action::Stop { unit } => write!(f, "stop {unit}"),
            Action::Start { unit } => write!(f, "start {unit}"),
            Action::Restart {
                unit,
                if_running: false,
            } => write!(f, "restart {unit}"),
            Action::Restart {
                unit,
                if_running: true,
            } => write!(f, "restart {unit} if it is running"),
            Action::Reload {
                unit,
                if_running: false,
            } => write!(f, "reload {unit}"),
            Action::Reload {
                unit,
                if_running: true,
            } => write!(f, "reload {unit} if it is running"),
            Action::Check {
                unit,
                command,
                timeout_secs,
            } => write!(f, "check {unit} with `{command}` (timeout {timeout_secs}s)"),
        }
    }
}

impl fmt::Display for ServiceStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceStep::Enable { unit, why, .. } => write!(f, "enable {unit}: {why}"),
            ServiceStep::Disable { unit, why, .. } => write!(f, "disable {unit}: {why}"),
            ServiceStep::Runtime {
                action,
                why,
                skipped: false,
            } => write!(f, "{action}: {why}"),
            ServiceStep::Runtime {
                action,
                why,
                skipped: true,
            } => write!(
                f,
                "skip {action}: {why} (systemd is not running on this root)"
            ),
        }
    }
}

/// How a unit differs between two generations (for `sysgen diff`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnitChange {
    pub unit: String,
    /// "added", "removed" or "changed".
    pub change: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<Unit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<Unit>,
}

impl UnitChange {
    /// "enable true -> false, restart_on, check": what changed.
    pub fn what(&self) -> String {
        let (Some(o), Some(n)) = (&self.old, &self.new) else {
            let u = self.new.as_ref().or(self.old.as_ref());
            return if u.is_some_and(|u| u.enable) {
                "enabled".into()
            } else {
                "disabled".into()
            };
        };
        let mut w = Vec::new();
        if o.enable != n.enable {
            w.push(format!("enable {} -> {}", o.enable, n.enable));
        }
        if o.restart_on != n.restart_on {
            w.push("restart_on".into());
        }
        if o.reload_on != n.reload_on {
            w.push("reload_on".into());
        }
        if o.check != n.check {
            w.push("check".into());
        }
        w.join(", ")
    }
}

/// Every unit that differs from `a` to `b`, by name.
pub fn diff(a: &Services, b: &Services) -> Vec<UnitChange> {
    crate::sections::keyed_changes(&a.0, &b.0)
        .map(|(u, change, old, new)| UnitChange {
            unit: u.clone(),
            change,
            old: old.cloned(),
            new: new.cloned(),
        })
        .collect()
}

/// The directories systemd reads unit files from, most specific first.
const UNIT_DIRS: [&str; 5] = [
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

const UNIT_SUFFIXES: [&str; 6] = [
    ".service", ".socket", ".timer", ".target", ".path", ".mount",
];

fn is_unit_name(s: &str) -> bool {
    UNIT_SUFFIXES
        .iter()
        .any(|x| s.len() > x.len() && s.ends_with(x))
}

/// The unit whose unit file (`false`) or drop-in (`true`) `p` is, if any.
/// Enablement links (`*.wants/`, `*.requires/`) are not unit files.
fn unit_file(p: &EntryPath) -> Option<(String, bool)> {
    let s = p.as_str();
    UNIT_DIRS.iter().find_map(|d| {
        let rest = s.strip_prefix(d)?.strip_prefix('/')?;
        let (first, below) = match rest.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (rest, None),
        };
        match below {
            None if is_unit_name(first) => Some((first.to_owned(), false)),
            Some(_) => first
                .strip_suffix(".d")
                .filter(|u| is_unit_name(u))
                .map(|u| (u.to_owned(), true)),
            None => None,
        }
    })
}

/// `getty@tty1.service` -> `getty@.service`: the template whose file and
/// drop-ins also configure an instance.
fn template_of(unit: &str) -> Option<String> {
    let (name, suffix) = unit.rsplit_once('.')?;
    let (base, instance) = name.split_once('@')?;
    (!instance.is_empty()).then(|| format!("{base}@.{suffix}"))
}

fn configures(file_unit: &str, unit: &str) -> bool {
    file_unit == unit || template_of(unit).as_deref() == Some(file_unit)
}

/// "a changed", "a, b changed", "a, b, c and 2 more changed".
fn changed_text(paths: &[String]) -> String {
    let shown = paths.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
    if paths.len() > 3 {
        format!("{shown} and {} more changed", paths.len() - 3)
    } else {
        format!("{shown} changed")
    }
}

/// The service steps of a switch, at their two positions in the plan.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Planned {
    /// Stop and disable: before packages and files change.
    pub down: Vec<ServiceStep>,
    /// Enable, daemon-reload, start, restart, reload, check: after them.
    pub up: Vec<ServiceStep>,
}

/// Plans the units' side of a switch from `old` to `new`, given the file
/// changes of the same switch. `origins` says, for each unit that `new`
/// adds or `old` has and `new` lacks, whether it was enabled before sysgen
/// first managed it (for a unit new to sysgen: whether it is enabled on the
/// root now). `runtime`: systemd is running on the root.
pub fn plan(
    old: &Services,
    new: &Services,
    changes: &[Change],
    origins: &BTreeMap<String, bool>,
    runtime: bool,
) -> Planned {
    let rt = |action: Action, why: String| ServiceStep::Runtime {
        action,
        why,
        skipped: !runtime,
    };
    let mut stops: BTreeMap<String, String> = BTreeMap::new();
    let mut disables = Vec::new();
    let mut enables = Vec::new();
    let mut starts: BTreeMap<String, String> = BTreeMap::new();

    let units: BTreeSet<&String> = old.0.keys().chain(new.0.keys()).collect();
    for unit in units {
        let u = unit.clone();
        match (old.0.get(unit), new.0.get(unit)) {
            (None, Some(n)) => {
                let was = origins.get(unit).copied().unwrap_or(false);
                if n.enable {
                    enables.push(ServiceStep::Enable {
                        unit: u.clone(),
                        why: "newly declared".into(),
                        adopt: Some(was),
                    });
                    starts.insert(u, "newly enabled".into());
                } else {
                    stops.insert(u.clone(), "declared with enable: false".into());
                    disables.push(ServiceStep::Disable {
                        unit: u,
                        why: "declared with enable: false".into(),
                        adopt: Some(was),
                    });
                }
            }
            (Some(o), None) => {
                // Unknown origin: leave the unit as it is rather than
                // disable something sysgen may not have enabled.
                let was = origins.get(unit).copied().unwrap_or(true);
                if was && !o.enable {
                    enables.push(ServiceStep::Enable {
                        unit: u.clone(),
                        why: "left the configuration; it was enabled before sysgen".into(),
                        adopt: None,
                    });
                    starts.insert(u, "it was enabled before sysgen".into());
                } else if !was && o.enable {
                    stops.insert(u.clone(), "left the configuration".into());
                    disables.push(ServiceStep::Disable {
                        unit: u,
                        why: "left the configuration; sysgen enabled it".into(),
                        adopt: None,
                    });
                }
            }
            (Some(o), Some(n)) if o.enable != n.enable => {
                if n.enable {
                    enables.push(ServiceStep::Enable {
                        unit: u.clone(),
                        why: "enable changed to true".into(),
                        adopt: None,
                    });
                    starts.insert(u, "newly enabled".into());
                } else {
                    stops.insert(u.clone(), "enable changed to false".into());
                    disables.push(ServiceStep::Disable {
                        unit: u,
                        why: "enable changed to false".into(),
                        adopt: None,
                    });
                }
            }
            _ => {}
        }
    }

    // Unit files and drop-ins that this switch writes or removes.
    let mut unit_files_changed = false;
    let mut unit_changes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in changes {
        let (old_e, new_e) = match c {
            Change::Added(_, e) => (None, Some(e)),
            Change::Removed(_, e) => (Some(e), None),
            Change::Changed(_, a, b) => (Some(&**a), Some(&**b)),
        };
        // A directory's own attributes configure nothing.
        if old_e.is_none_or(|e| e.is_dir()) && new_e.is_none_or(|e| e.is_dir()) {
            continue;
        }
        let Some((file_unit, dropin)) = unit_file(c.path()) else {
            continue;
        };
        unit_files_changed = true;
        unit_changes
            .entry(file_unit.clone())
            .or_default()
            .push(c.path().to_string());
        // Stop a unit before its unit file goes: afterwards systemd could
        // no longer be told how to stop it.
        if new_e.is_none() && !dropin {
            if file_unit.contains("@.") {
                for declared in old.0.keys().filter(|d| configures(&file_unit, d)) {
                    stops
                        .entry(declared.clone())
                        .or_insert_with(|| format!("its unit file {} is removed", c.path()));
                }
            } else {
                stops
                    .entry(file_unit.clone())
                    .or_insert_with(|| format!("its unit file {} is removed", c.path()));
            }
        }
    }

    let changed_under = |watched: &[EntryPath]| -> Vec<String> {
        changes
            .iter()
            .map(Change::path)
            .filter(|p| {
                watched
                    .iter()
                    .any(|w| *p == w || p.ancestors().iter().any(|a| a == w))
            })
            .map(ToString::to_string)
            .collect()
    };
    let mut restarts = Vec::new();
    let mut reloads = Vec::new();
    let mut checks = Vec::new();
    for (unit, n) in &new.0 {
        if stops.contains_key(unit) {
            continue;
        }
        let started = starts.contains_key(unit);
        let mut why: Vec<String> = unit_changes
            .iter()
            .filter(|(f, _)| configures(f, unit))
            .flat_map(|(_, ps)| ps.iter().cloned())
            .collect();
        why.extend(changed_under(&n.restart_on));
        let restarted = !started && !why.is_empty();
        if restarted {
            restarts.push(rt(
                Action::Restart {
                    unit: unit.clone(),
                    if_running: !n.enable,
                },
                changed_text(&why),
            ));
        } else if !started {
            let why = changed_under(&n.reload_on);
            if !why.is_empty() {
                reloads.push(rt(
                    Action::Reload {
                        unit: unit.clone(),
                        if_running: !n.enable,
                    },
                    changed_text(&why),
                ));
            }
        }
        if let Some(c) = &n.check
            && n.enable
            && (started || restarted)
        {
            checks.push(rt(
                Action::Check {
                    unit: unit.clone(),
                    command: c.command.clone(),
                    timeout_secs: c.timeout_secs,
                },
                format!("it was {}", if started { "started" } else { "restarted" }),
            ));
        }
    }

    let mut down: Vec<ServiceStep> = stops
        .into_iter()
        .map(|(unit, why)| rt(Action::Stop { unit }, why))
        .collect();
    let enablement_changed = !enables.is_empty() || !disables.is_empty();
    down.extend(disables);
    let mut up = enables;
    if unit_files_changed || enablement_changed {
        let why = if unit_files_changed {
            "unit files changed"
        } else {
            "enablement changed"
        };
        up.push(rt(Action::DaemonReload, why.into()));
    }
    up.extend(
        starts
            .into_iter()
            .map(|(unit, why)| rt(Action::Start { unit }, why)),
    );
    up.extend(restarts);
    up.extend(reloads);
    up.extend(checks);
    Planned { down, up }
}

/// The origins an undo needs: those recorded in the database, overridden
/// by those the interrupted switch's steps (`undone`) adopted (they may
/// not have reached the database).
pub fn undo_origins(
    recorded: BTreeMap<String, bool>,
    undone: &[&ServiceStep],
) -> BTreeMap<String, bool> {
    let mut out = recorded;
    for s in undone {
        if let Some((unit, was)) = s.adopts() {
            out.insert(unit.to_owned(), was);
        }
    }
    out
}

#[cfg(test)]
mod tests;
