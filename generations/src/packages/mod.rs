//! Packages: the Debian packages a generation records, and the steps that
//! install and remove exactly the difference between two generations.
//!
//! - **Build** ([`resolve`]) asks the root's package manager what
//!   installing the declared packages means, without changing anything:
//!   the exact version of each declared package and of every dependency it
//!   pulls in (and of the dependencies sysgen installed earlier that they
//!   still need). That set is part of the manifest, so the generation id
//!   changes with any version.
//! - **Plan** ([`plan`]) compares the target's set with what is installed
//!   and with what sysgen owns: one transaction installs, upgrades and
//!   downgrades (before the files); one purge removes what leaves (after
//!   the files). A package sysgen did not install is never removed. A
//!   conffile the admin changed is saved in the store before the purge.
//! - **Fetch** ([`fetch`]) puts the `.deb` of everything the transaction
//!   installs into the store before the journal is written, so the
//!   transaction itself, `recover` and every later rollback run from the
//!   store, offline, with exactly the recorded versions.
//! - **Apply** ([`apply`]) runs one step; each converges (a re-run after a
//!   crash installs or purges only what is still missing or present).
//!
//! The package manager is behind [`PackageManager`], so a second one (dnf,
//! pacman) adds an implementation and a section of [`PackageSet`].
//!
//! Files: [`resolve`] (build), [`step`] (the steps and how they read),
//! [`plan`] (plan and fetch), [`apply`], [`records`] (the two tables),
//! [`kind`] (the [`crate::kind::Kind`] of packages).
//!
//! Database (`db.rs`, migration 3): `package_owned` (what sysgen
//! installed) and `package_files` (`name, version, arch -> .deb` in the
//! store's public area; collected by gc with the generations that use it).

mod apply;
pub mod apt;
pub mod closure;
mod fetch;
mod gc;
pub(crate) mod kind;
pub(crate) mod plan;
mod reconcile;
mod records;
mod resolve;
mod step;
#[cfg(test)]
mod tests;
pub mod version;

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

use serde::Serialize;
use sysgen_schema::EntryPath;

use crate::rootfs::RootDir;
use crate::{Error, State};

pub use self::kind::Packages;
pub use self::records::{forget_files, mark_files, owned};
pub use self::resolve::resolve;
pub use self::step::{PackageStep, PkgChange, PkgGone, Remark};
pub use crate::sections::{PackageSet, Pin};
use apt::Apt;

fn is_false(b: &bool) -> bool {
    !*b
}

/// A declared package, as the package manager is asked for it.
pub struct Want {
    pub name: String,
    pub version: Option<String>,
    pub declared_in: PathBuf,
}

/// A package present on the root.
pub struct Installed {
    pub version: String,
    pub arch: String,
    /// Fully installed and configured (not left half-done by a failure).
    pub healthy: bool,
}

/// What installing the wanted packages would do.
#[derive(Default)]
pub struct Resolved {
    /// name -> (version, arch) of every package installed or changed.
    pub installs: BTreeMap<String, (String, String)>,
    /// Packages the transaction would remove (a conflict).
    pub removes: Vec<String>,
}

/// What sysgen needs from a package manager. Every call runs the real
/// tool of the root; none may prompt.
pub trait PackageManager {
    /// The manager's key in configurations and in the database ("apt").
    fn name(&self) -> &'static str;
    fn root_display(&self) -> &str;
    /// Every package present on the root.
    fn installed(&self) -> Result<BTreeMap<String, Installed>, Error>;
    /// The packages marked as installed automatically (as dependencies).
    fn auto_marked(&self) -> Result<BTreeSet<String>, Error>;
    /// Simulates installing `wanted`; changes nothing.
    fn resolve(&self, wanted: &[Want]) -> Result<Resolved, Error>;
    /// The relations of every package present once a transaction
    /// installing `candidates` (name, exact version) ran: those installed
    /// now, with the candidates' own at the versions given.
    fn relations(
        &self,
        candidates: &[(String, String)],
    ) -> Result<BTreeMap<String, closure::Relations>, Error>;
    /// Downloads (name, version, arch) package files into the staging
    /// directory of the root; returns their paths there.
    fn download(&self, pkgs: &[(String, String, String)]) -> Result<Vec<EntryPath>, Error>;
    /// One transaction installing these package files (paths in the root),
    /// then marks `manual` as installed on purpose and `auto` as
    /// dependencies.
    fn install(&self, files: &[EntryPath], manual: &[String], auto: &[String])
    -> Result<(), Error>;
    /// Packages that purging `names` would remove besides them.
    fn removal_extras(&self, names: &[String]) -> Result<Vec<String>, Error>;
    /// Every package that purging `names` leaves unneeded (installed
    /// automatically, nothing installed depends on it), `names` included.
    fn unneeded_after(&self, names: &[String]) -> Result<BTreeSet<String>, Error>;
    /// Conffiles of an installed package that differ from what it shipped.
    fn changed_conffiles(&self, name: &str) -> Result<Vec<EntryPath>, Error>;
    /// Removes the packages; with `purge`, their configuration and data too.
    fn remove(&self, names: &[String], purge: bool) -> Result<(), Error>;
    /// Packages removed with their configuration left (dpkg's `rc`): name
    /// -> version.
    fn leftovers(&self) -> Result<BTreeMap<String, String>, Error>;
    /// The conffiles dpkg records for a package (installed or left over).
    fn conffiles(&self, name: &str) -> Result<Vec<EntryPath>, Error>;
    /// Purges packages of which only the configuration is left.
    fn purge_leftovers(&self, names: &[String]) -> Result<(), Error>;
    /// Takes half-installed packages out directly (no configure step, so
    /// the script that was cut short never runs again); with `purge`,
    /// their configuration too.
    fn abandon(&self, names: &[String], purge: bool) -> Result<(), Error>;
    /// The lock file and pid of another program holding the manager's lock.
    fn lock_holder(&self, root: &RootDir) -> Result<Option<(String, u32)>, Error>;
}

// ------------------------------------------------------------------ diff

/// One package difference between two generations (no live state: what
/// `sysgen diff` shows).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PkgDiff {
    pub manager: &'static str,
    pub name: String,
    /// "install", "upgrade", "downgrade", "remove" or "change".
    pub change: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    pub dependency: bool,
}

impl fmt::Display for PkgDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = match self.change {
            "install" => "+",
            "remove" => "-",
            _ => "~",
        };
        let dep = if self.dependency { " (dependency)" } else { "" };
        let v = match (&self.from, &self.to) {
            (Some(a), Some(b)) => format!("{a} -> {b} ({})", self.change),
            (Some(v), None) | (None, Some(v)) => v.clone(),
            (None, None) => String::new(),
        };
        write!(f, "{sign} package {} {v}{dep}", self.name)
    }
}

/// What switching from `a` to `b` does to packages, by name.
pub fn diff(a: &PackageSet, b: &PackageSet) -> Vec<PkgDiff> {
    let mut out = Vec::new();
    let names: BTreeSet<&String> = a.apt.keys().chain(b.apt.keys()).collect();
    for name in names {
        let (pa, pb) = (a.apt.get(name), b.apt.get(name));
        let change = match (pa, pb) {
            (None, Some(_)) => "install",
            (Some(_), None) => "remove",
            (Some(x), Some(y)) if x == y => continue,
            (Some(x), Some(y)) => match version::compare(&x.version, &y.version) {
                Ordering::Less => "upgrade",
                Ordering::Greater => "downgrade",
                Ordering::Equal => "change",
            },
            (None, None) => continue,
        };
        out.push(PkgDiff {
            manager: "apt",
            name: name.clone(),
            change,
            from: pa.map(|p| p.version.clone()),
            to: pb.map(|p| p.version.clone()),
            dependency: pb.or(pa).is_some_and(|p| p.dependency),
        });
    }
    out
}

// ------------------------------------------------------------------ verify

/// Packages of the generation that are not installed as it records them
/// (removed, another version, or left half-installed), for `verify`.
pub fn drift(
    state: &State,
    set: &PackageSet,
    timeout: std::time::Duration,
) -> Result<Vec<crate::Drift>, Error> {
    if set.apt.is_empty() {
        return Ok(Vec::new());
    }
    let installed = Apt::for_root(&state.root)?
        .with_timeout(timeout)
        .installed()?;
    Ok(set
        .apt
        .iter()
        .filter_map(|(name, pin)| {
            let what = match installed.get(name) {
                None => "not installed".to_owned(),
                Some(i) if i.version != pin.version => format!(
                    "version {} installed, the generation has {}",
                    i.version, pin.version
                ),
                Some(i) if !i.healthy => "not completely installed or configured".to_owned(),
                Some(_) => return None,
            };
            Some(crate::Drift {
                path: format!("package {name}"),
                what,
            })
        })
        .collect())
}
