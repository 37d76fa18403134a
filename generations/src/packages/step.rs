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
    },
    /// Purge these packages (all installed by sysgen), after saving their
    /// changed conffiles (done while planning).
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
                write!(f, "{manager} transaction: {}", parts.join(", "))
            }
            PackageStep::Remove {
                manager,
                packages,
                conffiles,
            } => {
                let parts: Vec<String> = packages
                    .iter()
                    .map(|p| {
                        let dep = if p.dependency {
                            " (dependency, if nothing else needs it)"
                        } else {
                            ""
                        };
                        format!("{} {}{dep}", p.name, p.version)
                    })
                    .collect();
                write!(f, "{manager} purge: {}", parts.join(", "))?;
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
