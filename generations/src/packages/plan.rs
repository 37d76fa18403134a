//! Planning the packages of a switch (pure).

use sysgen_schema::EntryPath;
use sysgen_store::{Hash, Store};

use super::records::deb_in_store;
#[cfg(test)]
use super::records::owned;
use super::{PackageManager, PackageSet, PackageStep, PkgChange, PkgGone, Remark};
use crate::db::{Db, Saved};
use crate::rootfs::RootDir;
use crate::{Error, PackageError};

/// The package part of a switch's plan.
#[derive(Default)]
pub(crate) struct PackagePlan {
    /// In an undo: packages the undone switch left half-installed, taken
    /// out with dpkg directly before anything else (their maintainer
    /// scripts are not run again).
    pub abandon: Option<PackageStep>,
    pub install: Option<PackageStep>,
    /// Keep notes and the purge, in that order.
    pub remove: Vec<PackageStep>,
    /// Changed conffiles of packages that go, to be saved in the store
    /// before the journal is written.
    pub saved: Vec<Saved>,
}

/// Plans the packages of a switch from `old` to `new`, reading the root
/// and the store and writing nothing. With `real` (not a dry run) it
/// refuses at once when another program holds the dpkg lock, or when a
/// purge would take a package sysgen did not install with it: before any
/// change.
#[cfg(test)]
pub(crate) fn plan_with(
    pm: &dyn PackageManager,
    root: &RootDir,
    db: &Db,
    store: &Store,
    old: &PackageSet,
    new: &PackageSet,
    real: bool,
) -> Result<PackagePlan, Error> {
    let owned = owned(db, pm.name())?;
    plan_full(pm, root, db, store, old, new, real, &owned, &[])
}

/// [`plan_with`], with what sysgen owns given (reconciled with dpkg for a
/// switch, as recorded for an undo), for an undo too: `undone` holds the
/// package steps of the switch being undone. What it installed fresh is purged (the undo leaves
/// no trace of it), and what it left half-installed (a maintainer script
/// cut short: a crash, a timeout, a signal) is taken out with dpkg first,
/// never configured again.
#[allow(clippy::too_many_arguments)]
pub(crate) fn plan_full(
    pm: &dyn PackageManager,
    root: &RootDir,
    db: &Db,
    store: &Store,
    old: &PackageSet,
    new: &PackageSet,
    real: bool,
    owned: &std::collections::BTreeSet<String>,
    undone: &[&PackageStep],
) -> Result<PackagePlan, Error> {
    let installed = pm.installed()?;
    let undone_changes: Vec<&PkgChange> = undone
        .iter()
        .filter_map(|s| match s {
            PackageStep::Install { changes, .. } => Some(changes),
            _ => None,
        })
        .flatten()
        .collect();
    let fresh: std::collections::BTreeSet<&str> = undone_changes
        .iter()
        .filter(|c| c.from.is_none() && !c.kept_config)
        .map(|c| c.name.as_str())
        .collect();
    let mut abandon: Vec<PkgGone> = undone_changes
        .iter()
        .filter(|c| installed.get(&c.name).is_some_and(|i| !i.healthy))
        .map(|c| PkgGone {
            name: c.name.clone(),
            version: c.to.clone(),
            dependency: c.dependency,
            purge: false,
            destroys: Vec::new(),
        })
        .collect();
    abandon.dedup_by(|a, b| a.name == b.name);
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
            deb: deb_in_store(db, store, pm.name(), name, &pin.version, &pin.arch)?,
            kept_config: live.is_none() && owned.contains(name),
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
                purge: false,
                destroys: Vec::new(),
            });
        } else if !pin.dependency {
            out.remove.push(PackageStep::Keep {
                manager: pm.name().into(),
                name: name.clone(),
                version: live.version.clone(),
            });
        }
    }
    // What the configuration asks to purge: leaving now, or left over from
    // an earlier removal (only what sysgen installed, never the admin's).
    let (mut purged, removed): (Vec<PkgGone>, Vec<PkgGone>) = gone
        .into_iter()
        .partition(|g| new.purge.contains(&g.name) || fresh.contains(g.name.as_str()));
    let leftovers = if new.purge.is_empty() {
        Default::default()
    } else {
        pm.leftovers()?
    };
    for name in &new.purge {
        if let (Some(version), true, false) = (
            leftovers.get(name),
            owned.contains(name),
            new.apt.contains_key(name),
        ) {
            purged.push(PkgGone {
                name: name.clone(),
                version: version.clone(),
                dependency: false,
                purge: true,
                destroys: Vec::new(),
            });
        }
    }
    let mut conffiles = Vec::new();
    for g in &mut purged {
        g.destroys = destroys(pm, root, &g.name)?;
        if !installed.contains_key(&g.name) {
            // Left over: dpkg no longer checks its conffiles.
            continue;
        }
        for p in pm.changed_conffiles(&g.name)? {
            // Kept in the store's root-only area before the journal is
            // written (a conffile may hold anything: passwords).
            let (hash, _) = root.hash_file(&p)?;
            out.saved.push(Saved {
                path: p.clone(),
                hash: Hash::from_bytes(*hash.as_bytes()),
                why: format!(
                    "conffile of {} {}, changed since it was installed; saved before the purge",
                    g.name, g.version
                ),
                secret: false,
            });
            conffiles.push(p);
        }
    }
    let gone: Vec<PkgGone> = removed
        .iter()
        .chain(purged.iter().filter(|g| installed.contains_key(&g.name)))
        .cloned()
        .collect();
    if real && (!changes.is_empty() || !gone.is_empty()) {
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
            unkept: Vec::new(),
        });
    }
    if !abandon.is_empty() {
        out.abandon = Some(PackageStep::Abandon {
            manager: pm.name().into(),
            purge: abandon
                .iter()
                .filter(|a| fresh.contains(a.name.as_str()))
                .map(|a| a.name.clone())
                .collect(),
            remove: abandon
                .iter()
                .filter(|a| !fresh.contains(a.name.as_str()))
                .map(|a| a.name.clone())
                .collect(),
        });
    }
    let packages: Vec<PkgGone> = removed
        .into_iter()
        .chain(purged.into_iter().map(|g| PkgGone { purge: true, ..g }))
        .collect();
    if !packages.is_empty() {
        out.remove.push(PackageStep::Remove {
            manager: pm.name().into(),
            packages,
            conffiles,
        });
    }
    Ok(out)
}

/// What purging `name` destroys: its conffiles, and its state directory
/// (`/var/lib/<name>`, Debian policy's place for it) when there is one.
pub(crate) fn destroys(
    pm: &dyn PackageManager,
    root: &RootDir,
    name: &str,
) -> Result<Vec<EntryPath>, Error> {
    let mut out = pm.conffiles(name)?;
    let state = EntryPath::parse(&format!("/var/lib/{name}"))
        .map_err(|e| Error::Internal(format!("the state directory of {name}: {e}")))?;
    if matches!(root.inspect(&state)?, crate::rootfs::Live::Dir(_)) {
        out.push(state);
    }
    Ok(out)
}

/// Which of `gone` (packages sysgen installed, present on the root) to
/// purge: every declared one, and each dependency that nothing left on
/// the root needs once they are gone (a package installed by hand may
/// need it, or the admin marked it as installed on purpose: then it
/// stays). Refuses when the purge would take a package sysgen did not
/// install with it.
pub(crate) fn purge_set(pm: &dyn PackageManager, gone: &[PkgGone]) -> Result<Vec<String>, Error> {
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
            "removing {} would also remove {}, which sysgen did not install",
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
