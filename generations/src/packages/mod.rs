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
//! Database (`db.rs`, migration 2): `package_owned` (what sysgen
//! installed) and `package_files` (`name, version, arch -> .deb` in the
//! store's public area; collected by gc with the generations that use it).

pub mod apt;
pub mod version;

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Read;
use std::path::PathBuf;

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sysgen_schema::EntryPath;
use sysgen_store::{Area, Hash, Store};

use crate::db::{Db, Saved};
use crate::plan::{Plan, Step};
use crate::rootfs::{Owner, RootDir};
use crate::{Error, PackageError, State};

use apt::Apt;

fn is_false(b: &bool) -> bool {
    !*b
}

/// The packages of a generation, by manager (only apt today).
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageSet {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub apt: BTreeMap<String, Pin>,
}

impl PackageSet {
    pub fn is_empty(&self) -> bool {
        self.apt.is_empty()
    }
}

/// One package at an exact version.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    pub version: String,
    pub arch: String,
    /// Pulled in for a declared package rather than declared itself.
    #[serde(default, skip_serializing_if = "is_false")]
    pub dependency: bool,
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
    /// Every package name the hard dependencies of `names` can reach.
    fn closure(&self, names: &[String]) -> Result<BTreeSet<String>, Error>;
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
    /// Removes the packages with their configuration.
    fn purge(&self, names: &[String]) -> Result<(), Error>;
    /// The lock file and pid of another program holding the manager's lock.
    fn lock_holder(&self, root: &RootDir) -> Result<Option<(String, u32)>, Error>;
}

// ------------------------------------------------------------------ build

/// The exact packages a configuration means on this root (see the module
/// doc). Runs only simulations and queries: nothing on the root changes.
pub fn resolve(state: &State, spec: &sysgen_schema::Packages) -> Result<PackageSet, Error> {
    let Some(first) = spec.apt.values().next() else {
        return Ok(PackageSet::default());
    };
    // A root without apt is a fault of this configuration on this root:
    // name the file that declares packages.
    let apt = Apt::for_root(&state.root).map_err(|e| match e {
        Error::Invalid(m) => Error::Invalid(format!("{}: {m}", first.declared_in.display())),
        e => e,
    })?;
    let wanted: Vec<Want> = spec
        .apt
        .values()
        .map(|p| Want {
            name: p.name.clone(),
            version: p.version.clone(),
            declared_in: p.declared_in.clone(),
        })
        .collect();
    Ok(PackageSet {
        apt: resolve_with(&apt, &state.db, &wanted)?,
    })
}

fn resolve_with(
    pm: &dyn PackageManager,
    db: &Db,
    wanted: &[Want],
) -> Result<BTreeMap<String, Pin>, Error> {
    let installed = pm.installed()?;
    let res = pm.resolve(wanted)?;
    if !res.removes.is_empty() {
        let names: Vec<&str> = wanted.iter().map(|w| w.name.as_str()).collect();
        return Err(Error::Package(PackageError {
            package: res.removes.first().cloned(),
            what: format!(
                "installing {} would remove {}, which is installed on the root {} (a dependency conflict)",
                names.join(", "),
                res.removes.join(", "),
                pm.root_display()
            ),
            hint: "declare packages that can be installed together, or remove the conflicting package from the root yourself first; nothing was changed".into(),
        }));
    }
    let mut set = BTreeMap::new();
    for w in wanted {
        let (version, arch) = match (res.installs.get(&w.name), installed.get(&w.name)) {
            (Some((v, a)), _) => (v.clone(), a.clone()),
            (None, Some(i)) => (i.version.clone(), i.arch.clone()),
            (None, None) => {
                return Err(Error::Package(PackageError {
                    package: Some(w.name.clone()),
                    what: format!(
                        "{} neither installs {} nor has it installed",
                        pm.name(),
                        w.name
                    ),
                    hint: format!("check `apt-cache policy {}` in the root", w.name),
                }));
            }
        };
        set.insert(
            w.name.clone(),
            Pin {
                version,
                arch,
                dependency: false,
            },
        );
    }
    for (name, (version, arch)) in &res.installs {
        set.entry(name.clone()).or_insert_with(|| Pin {
            version: version.clone(),
            arch: arch.clone(),
            dependency: true,
        });
    }
    // Dependencies sysgen installed for an earlier generation that the
    // declared packages still need stay recorded (and so stay installed).
    let owned = owned(db, pm.name())?;
    if !owned.is_empty() {
        let names: Vec<String> = wanted.iter().map(|w| w.name.clone()).collect();
        for name in pm.closure(&names)? {
            if let (Some(i), true, false) = (
                installed.get(&name),
                owned.contains(&name),
                set.contains_key(&name),
            ) {
                set.insert(
                    name,
                    Pin {
                        version: i.version.clone(),
                        arch: i.arch.clone(),
                        dependency: true,
                    },
                );
            }
        }
    }
    Ok(set)
}

// ------------------------------------------------------------------ steps

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
pub fn drift(state: &State, set: &PackageSet) -> Result<Vec<crate::Drift>, Error> {
    if set.is_empty() {
        return Ok(Vec::new());
    }
    let installed = Apt::for_root(&state.root)?.installed()?;
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

// ------------------------------------------------------------------ plan

/// The package part of a switch's plan.
#[derive(Default)]
pub struct PackagePlan {
    pub install: Option<PackageStep>,
    /// Keep notes and the purge, in that order.
    pub remove: Vec<PackageStep>,
    /// Changed conffiles saved in the store (when `keep` was given).
    pub saved: Vec<Saved>,
}

/// Plans the packages of a switch from `old` to `new`. With `keep` (a real
/// switch, not a dry run) it saves the conffiles the admin changed of
/// packages it will purge, and refuses at once when another program holds
/// the dpkg lock or a purge would take a package sysgen did not install
/// with it: before any change.
pub fn plan(
    state: &State,
    old: &PackageSet,
    new: &PackageSet,
    keep: Option<&Store>,
) -> Result<PackagePlan, Error> {
    if old.is_empty() && new.is_empty() {
        return Ok(PackagePlan::default());
    }
    let apt = Apt::for_root(&state.root)?;
    plan_with(&apt, &state.root, &state.db, old, new, keep)
}

fn plan_with(
    pm: &dyn PackageManager,
    root: &RootDir,
    db: &Db,
    old: &PackageSet,
    new: &PackageSet,
    keep: Option<&Store>,
) -> Result<PackagePlan, Error> {
    let installed = pm.installed()?;
    let owned = owned(db, pm.name())?;
    let mut changes = Vec::new();
    for (name, pin) in &new.apt {
        let live = installed.get(name);
        if live.is_some_and(|i| i.version == pin.version && i.healthy) {
            continue;
        }
        changes.push(PkgChange {
            name: name.clone(),
            arch: pin.arch.clone(),
            from: live.map(|i| i.version.clone()),
            to: pin.version.clone(),
            dependency: pin.dependency,
            owned: live.is_none() || owned.contains(name),
            deb: deb_in_store(db, keep, pm.name(), name, &pin.version, &pin.arch)?,
        });
    }
    let mut out = PackagePlan::default();
    let mut gone = Vec::new();
    for (name, pin) in &old.apt {
        if new.apt.contains_key(name) {
            continue;
        }
        let Some(live) = installed.get(name) else {
            continue;
        };
        if owned.contains(name) {
            gone.push(PkgGone {
                name: name.clone(),
                version: live.version.clone(),
                dependency: pin.dependency,
            });
        } else if !pin.dependency {
            out.remove.push(PackageStep::Keep {
                manager: pm.name().into(),
                name: name.clone(),
                version: live.version.clone(),
            });
        }
    }
    let mut conffiles = Vec::new();
    for g in &gone {
        for p in pm.changed_conffiles(&g.name)? {
            if let Some(store) = keep {
                let mut bytes = Vec::new();
                root.open_file(&p)?
                    .read_to_end(&mut bytes)
                    .map_err(crate::io_err(root.display(&p)))?;
                // A conffile may hold anything (passwords): root-only area.
                let hash = store.put_bytes(&bytes, Area::Secret)?;
                out.saved.push(Saved {
                    path: p.clone(),
                    hash,
                    why: format!(
                        "conffile of {} {}, changed since it was installed; saved before the purge",
                        g.name, g.version
                    ),
                    secret: false,
                });
            }
            conffiles.push(p);
        }
    }
    if keep.is_some() && (!changes.is_empty() || !gone.is_empty()) {
        if let Some((lock, pid)) = pm.lock_holder(root)? {
            return Err(Error::Package(PackageError {
                package: None,
                what: format!(
                    "another program (pid {pid}) holds the dpkg lock {lock} of the root {}",
                    pm.root_display()
                ),
                hint: "wait for that apt or dpkg to finish (or stop it), then run the command again; nothing was changed".into(),
            }));
        }
        // With nothing installed first, the root is already as the purge
        // will find it: check now, before any file changes.
        if changes.is_empty() {
            purge_set(pm, &gone)?;
        }
    }
    let remark: Vec<Remark> = new
        .apt
        .iter()
        .filter(|(name, pin)| {
            owned.contains(*name)
                && !changes.iter().any(|c| &c.name == *name)
                && old
                    .apt
                    .get(*name)
                    .is_some_and(|o| o.dependency != pin.dependency)
        })
        .map(|(name, pin)| Remark {
            name: name.clone(),
            dependency: pin.dependency,
        })
        .collect();
    if !changes.is_empty() || !remark.is_empty() {
        out.install = Some(PackageStep::Install {
            manager: pm.name().into(),
            changes,
            remark,
        });
    }
    if !gone.is_empty() {
        out.remove.push(PackageStep::Remove {
            manager: pm.name().into(),
            packages: gone,
            conffiles,
        });
    }
    Ok(out)
}

/// Puts the package steps at their places in a plan: the transaction
/// before the first file step, the purge and the notes just before the
/// activation (after the files; SPEC §4 "Order").
pub fn insert_steps(plan: &mut Plan, pk: PackagePlan) {
    let before_files = plan
        .steps
        .iter()
        .position(|s| s.path().is_some() || matches!(s, Step::Activate { .. } | Step::Deactivate))
        .unwrap_or(plan.steps.len());
    if let Some(i) = pk.install {
        plan.steps.insert(before_files, Step::Package(i));
    }
    let last = plan
        .steps
        .iter()
        .rposition(|s| matches!(s, Step::Activate { .. } | Step::Deactivate))
        .unwrap_or(plan.steps.len());
    for (k, s) in pk.remove.into_iter().enumerate() {
        plan.steps.insert(last + k, Step::Package(s));
    }
}

/// Which of `gone` (packages sysgen installed, present on the root) to
/// purge: every declared one, and each dependency that nothing left on
/// the root needs once they are gone (a package installed by hand may
/// need it, or the admin marked it as installed on purpose: then it
/// stays). Refuses when the purge would take a package sysgen did not
/// install with it.
fn purge_set(pm: &dyn PackageManager, gone: &[PkgGone]) -> Result<Vec<String>, Error> {
    let declared: Vec<String> = gone
        .iter()
        .filter(|g| !g.dependency)
        .map(|g| g.name.clone())
        .collect();
    let deps: Vec<&PkgGone> = gone.iter().filter(|g| g.dependency).collect();
    let mut names = declared.clone();
    if !deps.is_empty() {
        let unneeded = pm.unneeded_after(&declared)?;
        names.extend(
            deps.iter()
                .filter(|d| unneeded.contains(&d.name))
                .map(|d| d.name.clone()),
        );
    }
    if !names.is_empty() {
        refuse_extras(pm, &names)?;
    }
    Ok(names)
}

fn refuse_extras(pm: &dyn PackageManager, names: &[String]) -> Result<(), Error> {
    let extras = pm.removal_extras(names)?;
    if extras.is_empty() {
        return Ok(());
    }
    Err(Error::Package(PackageError {
        package: names.first().cloned(),
        what: format!(
            "purging {} would also remove {}, which sysgen did not install",
            names.join(", "),
            extras.join(", ")
        ),
        hint: format!(
            "keep {} in the configuration while {} needs it, or remove {} yourself first",
            names.join(", "),
            extras.join(", "),
            extras.join(", ")
        ),
    }))
}

// ------------------------------------------------------------------ fetch

/// Fills in the `.deb` of every package the plan's transaction installs
/// that the store does not have yet: downloads it with the root's package
/// manager, keeps it in the store, and records it. Runs before the journal
/// is written: a failure here changes nothing.
pub fn fetch(state: &mut State, plan: &mut Plan) -> Result<(), Error> {
    let Some(Step::Package(PackageStep::Install { changes, .. })) = plan
        .steps
        .iter_mut()
        .find(|s| matches!(s, Step::Package(PackageStep::Install { .. })))
    else {
        return Ok(());
    };
    let missing: Vec<(String, String, String)> = changes
        .iter()
        .filter(|c| c.deb.is_none())
        .map(|c| (c.name.clone(), c.to.clone(), c.arch.clone()))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let apt = Apt::for_root(&state.root)?;
    let files = apt.download(&missing)?;
    for ((name, version, arch), path) in missing.iter().zip(&files) {
        let mut bytes = Vec::new();
        state
            .root
            .open_file(path)?
            .read_to_end(&mut bytes)
            .map_err(crate::io_err(state.root.display(path)))?;
        let hash = state.store.put_bytes(&bytes, Area::Public)?;
        record_file(&state.db, apt.name(), name, version, arch, &hash)?;
        // The store has it now; apt's cache is not sysgen's to fill.
        state.root.remove(path)?;
        if let Some(c) = changes.iter_mut().find(|c| &c.name == name) {
            c.deb = Some(hash);
        }
    }
    Ok(())
}

// ------------------------------------------------------------------ apply

/// Runs one package step. Converges: what is already as the step wants it
/// is left alone, so `recover` can run it again.
pub fn apply(root: &RootDir, store: &Store, db: &mut Db, step: &PackageStep) -> Result<(), Error> {
    match step {
        PackageStep::Keep { .. } => Ok(()),
        PackageStep::Install {
            manager,
            changes,
            remark,
        } => {
            let apt = Apt::for_root(root)?;
            // Ownership is recorded before apt runs: if the switch is cut
            // short, undoing it knows these packages are sysgen's to remove.
            for c in changes.iter().filter(|c| c.owned) {
                own(db, manager, &c.name, true)?;
            }
            let installed = apt.installed()?;
            let mut staged = Vec::new();
            let result = (|| {
                for c in changes {
                    if installed
                        .get(&c.name)
                        .is_some_and(|i| i.version == c.to && i.healthy)
                    {
                        continue;
                    }
                    let hash = c.deb.ok_or_else(|| {
                        Error::Package(PackageError {
                            package: Some(c.name.clone()),
                            what: format!("the store has no package file of {} {}", c.name, c.to),
                            hint: "run `sysgen recover --rollback` to undo the switch".into(),
                        })
                    })?;
                    let path = EntryPath::parse(&format!(
                        "{}/{}",
                        apt::ARCHIVES,
                        apt::deb_file_name(&c.name, &c.to, &c.arch)
                    ))
                    .map_err(|e| Error::Invalid(e.to_string()))?;
                    root.put_file(&path, 0o644, Owner::default(), &mut |w| {
                        store
                            .copy_to(&hash, Area::Public, w)
                            .map(|_| ())
                            .map_err(std::io::Error::other)
                    })?;
                    staged.push(path);
                }
                // apt marks every package given as a file as installed by
                // hand: sysgen's dependencies go back to automatic, and so
                // does a package sysgen does not own that was automatic.
                let was_auto = apt.auto_marked()?;
                let mut manual: Vec<String> = changes
                    .iter()
                    .filter(|c| c.owned && !c.dependency)
                    .map(|c| c.name.clone())
                    .collect();
                let mut auto: Vec<String> = changes
                    .iter()
                    .filter(|c| {
                        if c.owned {
                            c.dependency
                        } else {
                            was_auto.contains(&c.name)
                        }
                    })
                    .map(|c| c.name.clone())
                    .collect();
                for r in remark {
                    if r.dependency {
                        auto.push(r.name.clone());
                    } else {
                        manual.push(r.name.clone());
                    }
                }
                apt.install(&staged, &manual, &auto)
            })();
            for p in &staged {
                root.remove(p)?;
            }
            result
        }
        PackageStep::Remove {
            manager, packages, ..
        } => {
            let apt = Apt::for_root(root)?;
            let installed = apt.installed()?;
            let present: Vec<PkgGone> = packages
                .iter()
                .filter(|p| installed.contains_key(&p.name))
                .cloned()
                .collect();
            let names = purge_set(&apt, &present)?;
            if !names.is_empty() {
                apt.purge(&names)?;
            }
            // A dependency that stays (something else needs it) stays
            // sysgen's: a later generation that drops it may remove it.
            for p in packages {
                if !installed.contains_key(&p.name) || names.contains(&p.name) {
                    own(db, manager, &p.name, false)?;
                }
            }
            Ok(())
        }
    }
}

// ------------------------------------------------------------------ database

fn sql(e: rusqlite::Error) -> Error {
    Error::Db(e.to_string())
}

/// The packages sysgen installed (and so may remove).
pub fn owned(db: &Db, manager: &str) -> Result<BTreeSet<String>, Error> {
    let mut st = db
        .conn()
        .prepare_cached("SELECT name FROM package_owned WHERE manager = ?1")
        .map_err(sql)?;
    st.query_map(params![manager], |r| r.get::<_, String>(0))
        .map_err(sql)?
        .collect::<Result<_, _>>()
        .map_err(sql)
}

fn own(db: &Db, manager: &str, name: &str, yes: bool) -> Result<(), Error> {
    let q = if yes {
        "INSERT OR IGNORE INTO package_owned (manager, name) VALUES (?1, ?2)"
    } else {
        "DELETE FROM package_owned WHERE manager = ?1 AND name = ?2"
    };
    db.conn()
        .execute(q, params![manager, name])
        .map_err(sql)
        .map(|_| ())
}

fn record_file(
    db: &Db,
    manager: &str,
    name: &str,
    version: &str,
    arch: &str,
    hash: &Hash,
) -> Result<(), Error> {
    db.conn()
        .execute(
            "INSERT OR REPLACE INTO package_files (manager, name, version, arch, hash) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![manager, name, version, arch, hash.as_bytes().as_slice()],
        )
        .map_err(sql)
        .map(|_| ())
}

fn file_of(
    db: &Db,
    manager: &str,
    name: &str,
    version: &str,
    arch: &str,
) -> Result<Option<Hash>, Error> {
    let b: Option<Vec<u8>> = db
        .conn()
        .query_row(
            "SELECT hash FROM package_files WHERE manager = ?1 AND name = ?2 AND version = ?3 AND arch = ?4",
            params![manager, name, version, arch],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql)?;
    Ok(b.and_then(|b| <[u8; 32]>::try_from(b).ok())
        .map(Hash::from_bytes))
}

/// The stored `.deb` of a package version, if the store still has it.
/// Without a store (a dry run) the record alone counts.
fn deb_in_store(
    db: &Db,
    store: Option<&Store>,
    manager: &str,
    name: &str,
    version: &str,
    arch: &str,
) -> Result<Option<Hash>, Error> {
    let Some(hash) = file_of(db, manager, name, version, arch)? else {
        return Ok(None);
    };
    let present = match store {
        Some(s) => s.contains(&hash, Area::Public)?,
        None => true,
    };
    Ok(present.then_some(hash))
}

/// For gc: the `.deb` objects the packages of `sets` use.
pub fn mark_files<'a>(
    db: &Db,
    sets: impl Iterator<Item = &'a PackageSet>,
    live: &mut sysgen_store::HashKeySet<Hash>,
) -> Result<(), Error> {
    for set in sets {
        for (name, pin) in &set.apt {
            if let Some(h) = file_of(db, "apt", name, &pin.version, &pin.arch)? {
                live.insert(h);
            }
        }
    }
    Ok(())
}

/// For gc: forgets the package files whose objects are about to go.
/// Runs before the objects are deleted (rows first, as everywhere in gc).
pub fn forget_files(db: &Db, gone: &[Hash]) -> Result<(), Error> {
    let mut st = db
        .conn()
        .prepare_cached("DELETE FROM package_files WHERE hash = ?1")
        .map_err(sql)?;
    for h in gone {
        st.execute(params![h.as_bytes().as_slice()]).map_err(sql)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A package manager in memory: what a second backend must provide is
    /// all the planner uses.
    #[derive(Default)]
    struct FakePm {
        installed: BTreeMap<String, (String, bool)>,
        /// What purging the declared packages leaves unneeded.
        unneeded: BTreeSet<String>,
        /// What purging anything would also remove.
        extras: Vec<String>,
        conffiles: BTreeMap<String, Vec<EntryPath>>,
        lock: Option<u32>,
    }

    impl PackageManager for FakePm {
        fn name(&self) -> &'static str {
            "apt"
        }
        fn root_display(&self) -> &str {
            "/fake"
        }
        fn installed(&self) -> Result<BTreeMap<String, Installed>, Error> {
            Ok(self
                .installed
                .iter()
                .map(|(n, (v, healthy))| {
                    (
                        n.clone(),
                        Installed {
                            version: v.clone(),
                            arch: "all".into(),
                            healthy: *healthy,
                        },
                    )
                })
                .collect())
        }
        fn auto_marked(&self) -> Result<BTreeSet<String>, Error> {
            Ok(BTreeSet::new())
        }
        fn resolve(&self, _: &[Want]) -> Result<Resolved, Error> {
            Ok(Resolved::default())
        }
        fn closure(&self, _: &[String]) -> Result<BTreeSet<String>, Error> {
            Ok(BTreeSet::new())
        }
        fn download(&self, _: &[(String, String, String)]) -> Result<Vec<EntryPath>, Error> {
            Ok(Vec::new())
        }
        fn install(&self, _: &[EntryPath], _: &[String], _: &[String]) -> Result<(), Error> {
            Ok(())
        }
        fn removal_extras(&self, _: &[String]) -> Result<Vec<String>, Error> {
            Ok(self.extras.clone())
        }
        fn unneeded_after(&self, _: &[String]) -> Result<BTreeSet<String>, Error> {
            Ok(self.unneeded.clone())
        }
        fn changed_conffiles(&self, name: &str) -> Result<Vec<EntryPath>, Error> {
            Ok(self.conffiles.get(name).cloned().unwrap_or_default())
        }
        fn purge(&self, _: &[String]) -> Result<(), Error> {
            Ok(())
        }
        fn lock_holder(&self, _: &RootDir) -> Result<Option<(String, u32)>, Error> {
            Ok(self.lock.map(|p| ("/var/lib/dpkg/lock-frontend".into(), p)))
        }
    }

    fn set(pins: &[(&str, &str, bool)]) -> PackageSet {
        PackageSet {
            apt: pins
                .iter()
                .map(|(n, v, dep)| {
                    (
                        n.to_string(),
                        Pin {
                            version: v.to_string(),
                            arch: "all".into(),
                            dependency: *dep,
                        },
                    )
                })
                .collect(),
        }
    }

    struct World {
        _dir: tempfile::TempDir,
        root: RootDir,
        db: Db,
        store: Store,
    }

    fn world(owned_names: &[&str]) -> World {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = RootDir::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let db = Db::open(&dir.path().join("db")).unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(&dir.path().join("store")).unwrap_or_else(|e| panic!("{e}"));
        for n in owned_names {
            own(&db, "apt", n, true).unwrap_or_else(|e| panic!("{e}"));
        }
        World {
            _dir: dir,
            root,
            db,
            store,
        }
    }

    fn lines(p: &PackagePlan) -> Vec<String> {
        p.install
            .iter()
            .chain(p.remove.iter())
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn plans_installs_upgrades_downgrades_and_repairs_against_the_live_root() {
        // b was installed by hand: upgrading it does not make it sysgen's.
        let w = world(&["c", "d"]);
        let mut pm = FakePm::default();
        for (n, v, ok) in [("b", "1.0", true), ("c", "2.0", true), ("d", "1.0", false)] {
            pm.installed.insert(n.into(), (v.into(), ok));
        }
        pm.installed.insert("same".into(), ("1.0".into(), true));
        let new = set(&[
            ("a", "1.0", false),
            ("b", "1.1", false),
            ("c", "1.9", true),
            ("d", "1.0", false),
            ("same", "1.0", false),
        ]);
        let p = plan_with(&pm, &w.root, &w.db, &PackageSet::default(), &new, None)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            lines(&p),
            [
                "apt transaction: install a 1.0, upgrade b 1.0 -> 1.1, downgrade c 2.0 -> 1.9 (dependency), repair d 1.0"
            ]
        );
        let Some(PackageStep::Install { changes, .. }) = &p.install else {
            panic!("no install step")
        };
        let owned: Vec<(&str, bool)> = changes.iter().map(|c| (c.name.as_str(), c.owned)).collect();
        assert_eq!(owned, [("a", true), ("b", false), ("c", true), ("d", true)]);
    }

    #[test]
    fn removes_only_what_sysgen_owns_and_saves_changed_conffiles() {
        let w = world(&["mine", "dep"]);
        let mut pm = FakePm::default();
        for n in ["mine", "dep", "theirs"] {
            pm.installed.insert(n.into(), ("1.0".into(), true));
        }
        let conf = EntryPath::parse("/etc/mine.conf").unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir(w.root.path().join("etc")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(w.root.path().join("etc/mine.conf"), "admin's\n")
            .unwrap_or_else(|e| panic!("{e}"));
        pm.conffiles.insert("mine".into(), vec![conf.clone()]);
        pm.unneeded = ["mine", "dep"].iter().map(|s| s.to_string()).collect();
        let old = set(&[
            ("mine", "1.0", false),
            ("dep", "1.0", true),
            ("theirs", "1.0", false),
            ("gone-already", "1.0", false),
        ]);
        // A dry run saves nothing but shows the same plan.
        let dry = plan_with(&pm, &w.root, &w.db, &old, &PackageSet::default(), None)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(dry.saved.is_empty());
        let p = plan_with(
            &pm,
            &w.root,
            &w.db,
            &old,
            &PackageSet::default(),
            Some(&w.store),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(lines(&p), lines(&dry));
        assert_eq!(
            lines(&p),
            [
                "apt: keep theirs 1.0: sysgen did not install it (it was there before, or installed by hand)",
                "apt purge: dep 1.0 (dependency, if nothing else needs it), mine 1.0 (changed conffiles saved in the store first: /etc/mine.conf)",
            ]
        );
        assert_eq!(p.saved.len(), 1);
        assert_eq!(p.saved[0].path, conf);
        assert_eq!(
            w.store
                .read(&p.saved[0].hash, Area::Secret)
                .unwrap_or_else(|e| panic!("{e}")),
            b"admin's\n"
        );
    }

    #[test]
    fn a_dependency_something_else_needs_is_not_purged_and_extras_refuse() {
        let mut pm = FakePm::default();
        for n in ["mine", "dep"] {
            pm.installed.insert(n.into(), ("1.0".into(), true));
        }
        let gone = |n: &str, dep: bool| PkgGone {
            name: n.into(),
            version: "1.0".into(),
            dependency: dep,
        };
        pm.unneeded = ["mine".to_string()].into();
        let names = purge_set(&pm, &[gone("mine", false), gone("dep", true)])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(names, ["mine"]);
        pm.extras = vec!["hand".into()];
        let err = purge_set(&pm, &[gone("mine", false)]).map(|_| ());
        assert!(
            matches!(&err, Err(Error::Package(e)) if e.what.contains("would also remove hand")),
            "{err:?}"
        );
    }

    #[test]
    fn a_held_lock_refuses_a_real_switch_but_not_a_dry_run() {
        let w = world(&[]);
        let pm = FakePm {
            lock: Some(4242),
            ..FakePm::default()
        };
        let new = set(&[("a", "1.0", false)]);
        assert!(plan_with(&pm, &w.root, &w.db, &PackageSet::default(), &new, None).is_ok());
        let err = plan_with(
            &pm,
            &w.root,
            &w.db,
            &PackageSet::default(),
            &new,
            Some(&w.store),
        )
        .map(|_| ());
        assert!(
            matches!(&err, Err(Error::Package(e)) if e.what.contains("pid 4242")),
            "{err:?}"
        );
    }

    #[test]
    fn diff_names_the_direction_of_each_version_change() {
        let a = set(&[("x", "1.0", false), ("y", "2.0", false), ("z", "1", true)]);
        let b = set(&[
            ("x", "1.1", false),
            ("y", "1:0.1", false),
            ("w", "3", false),
        ]);
        let shown: Vec<String> = diff(&a, &b).iter().map(|d| d.to_string()).collect();
        assert_eq!(
            shown,
            [
                "+ package w 3",
                "~ package x 1.0 -> 1.1 (upgrade)",
                "~ package y 2.0 -> 1:0.1 (upgrade)",
                "- package z 1 (dependency)",
            ]
        );
    }

    #[test]
    fn steps_round_trip_through_the_journal_format() {
        let steps = vec![
            Step::Package(PackageStep::Install {
                manager: "apt".into(),
                changes: vec![PkgChange {
                    name: "sg-hello".into(),
                    arch: "all".into(),
                    from: Some("2.0".into()),
                    to: "1.0".into(),
                    dependency: false,
                    owned: true,
                    deb: Some(Hash::of(b"deb")),
                }],
                remark: vec![Remark {
                    name: "sg-libhello".into(),
                    dependency: true,
                }],
            }),
            Step::Package(PackageStep::Remove {
                manager: "apt".into(),
                packages: vec![PkgGone {
                    name: "sg-libhello".into(),
                    version: "1.0".into(),
                    dependency: true,
                }],
                conffiles: vec![EntryPath::parse("/etc/sg.conf").unwrap_or_else(|e| panic!("{e}"))],
            }),
        ];
        let json = serde_json::to_string(&steps).unwrap_or_default();
        let back: Vec<Step> = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
        assert_eq!(back, steps);
        assert_eq!(
            steps[0].to_string(),
            "apt transaction: downgrade sg-hello 2.0 -> 1.0, mark sg-libhello as a dependency"
        );
        assert_eq!(
            steps[1].to_string(),
            "apt purge: sg-libhello 1.0 (dependency, if nothing else needs it) (changed conffiles saved in the store first: /etc/sg.conf)"
        );
    }
}
