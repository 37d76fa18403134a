//! The package steps of a plan, and how they read.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};
use sysgen_schema::EntryPath;
use sysgen_store::Hash;

use super::{is_false, version};

/// A package step of the plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum PackageStep {
    /// One transaction: install, upgrade and downgrade these packages.
    Install {
        manager: String,
        changes: Vec<PkgChange>,
        /// Packages sysgen owns, already at their version, that go from
        /// declared to dependency or back: only their apt mark changes (so
        /// that a dependency is purged once nothing needs it).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        remark: Vec<Remark>,
        /// Versions this transaction replaces whose package files the
        /// store could not keep (the archive no longer serves them): going
        /// back to them needs the archive. Filled before the journal.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        unkept: Vec<String>,
    },
    /// Remove these packages (all installed by sysgen), in one
    /// transaction. Their conffiles and data stay on the root, as a
    /// detached dataset's do, until gc collects the last generation that
    /// has them. Those marked `purge` (the configuration asks for it) are
    /// purged right after, their changed conffiles saved first (before the
    /// journal).
    Remove {
        manager: String,
        packages: Vec<PkgGone>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        conffiles: Vec<EntryPath>,
    },
    /// A package that leaves the configuration but that sysgen did not
    /// install: it stays. Nothing to run; the plan says so.
    Keep {
        manager: String,
        name: String,
        version: String,
    },
    /// Undoing a switch cut short inside a maintainer script: the packages
    /// it left half-installed are taken out with dpkg directly, so the
    /// script being undone never runs again. `purge`: installed fresh by
    /// that switch (nothing of them stays); `remove`: upgraded or
    /// downgraded by it (the undo's transaction puts the old version back
    /// over their kept configuration).
    Abandon {
        manager: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        purge: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        remove: Vec<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PkgChange {
    pub name: String,
    pub arch: String,
    /// The version on the root when planned (none: not installed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub to: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub dependency: bool,
    /// Sysgen installs it, so sysgen owns it (and may remove it later).
    #[serde(default, skip_serializing_if = "is_false")]
    pub owned: bool,
    /// The package file in the store (filled before the journal is written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deb: Option<Hash>,
    /// Sysgen removed it earlier and its configuration and data stayed:
    /// undoing this install removes it again, keeping them (a package
    /// installed afresh is purged by the undo instead).
    #[serde(default, skip_serializing_if = "is_false")]
    pub kept_config: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Remark {
    pub name: String,
    pub dependency: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PkgGone {
    pub name: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub dependency: bool,
    /// Purged, not only removed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub purge: bool,
    /// What purging it destroys (its conffiles, its state directory): said
    /// in the plan. Empty for a removal, which destroys nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destroys: Vec<EntryPath>,
}

impl PkgChange {
    fn verb(&self) -> &'static str {
        match &self.from {
            None => "install",
            Some(f) => match version::compare(f, &self.to) {
                Ordering::Less => "upgrade",
                Ordering::Greater => "downgrade",
                Ordering::Equal => "repair",
            },
        }
    }
}

impl fmt::Display for PackageStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PackageStep::Install {
                manager,
                changes,
                remark,
                unkept,
            } => {
                let mut parts: Vec<String> = changes
                    .iter()
                    .map(|c| {
                        let dep = if c.dependency { " (dependency)" } else { "" };
                        match (&c.from, c.verb()) {
                            (Some(from), "upgrade" | "downgrade") => {
                                format!("{} {} {from} -> {}{dep}", c.verb(), c.name, c.to)
                            }
                            _ => format!("{} {} {}{dep}", c.verb(), c.name, c.to),
                        }
                    })
                    .collect();
                parts.extend(remark.iter().map(|r| {
                    if r.dependency {
                        format!("mark {} as a dependency", r.name)
                    } else {
                        format!("mark {} as declared", r.name)
                    }
                }));
                write!(f, "{manager} transaction: {}", parts.join(", "))?;
                if !unkept.is_empty() {
                    write!(
                        f,
                        " (the archive no longer serves {}: going back to it needs the archive)",
                        unkept.join(", ")
                    )?;
                }
                Ok(())
            }
            PackageStep::Remove {
                manager,
                packages,
                conffiles,
            } => {
                let part = |p: &PkgGone| {
                    let dep = if p.dependency {
                        " (dependency, if nothing else needs it)"
                    } else {
                        ""
                    };
                    let gone = if p.destroys.is_empty() {
                        String::new()
                    } else {
                        let d: Vec<&str> = p.destroys.iter().map(|d| d.as_str()).collect();
                        format!(" (destroys {})", d.join(", "))
                    };
                    format!("{} {}{dep}{gone}", p.name, p.version)
                };
                let removed: Vec<String> = packages.iter().filter(|p| !p.purge).map(part).collect();
                let purged: Vec<String> = packages.iter().filter(|p| p.purge).map(part).collect();
                write!(f, "{manager} ")?;
                if !removed.is_empty() {
                    write!(
                        f,
                        "remove: {}; their configuration and data stay until gc collects the last generation that has them",
                        removed.join(", ")
                    )?;
                    if !purged.is_empty() {
                        write!(f, "; ")?;
                    }
                }
                if !purged.is_empty() {
                    write!(f, "purge: {}", purged.join(", "))?;
                }
                if !conffiles.is_empty() {
                    let c: Vec<String> = conffiles.iter().map(|p| p.to_string()).collect();
                    write!(
                        f,
                        " (changed conffiles saved in the store first: {})",
                        c.join(", ")
                    )?;
                }
                Ok(())
            }
            PackageStep::Abandon {
                manager,
                purge,
                remove,
            } => {
                let all: Vec<&str> = purge.iter().chain(remove).map(String::as_str).collect();
                write!(
                    f,
                    "{manager}: take out {} with dpkg, left half-installed by the switch being undone (its maintainer scripts are not run again)",
                    all.join(", ")
                )
            }
            PackageStep::Keep {
                manager,
                name,
                version,
            } => write!(
                f,
                "{manager}: keep {name} {version}: sysgen did not install it (it was there before, or installed by hand)"
            ),
        }
    }
}
