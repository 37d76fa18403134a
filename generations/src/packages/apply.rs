//! Running one package step.

use std::time::Duration;

use sysgen_schema::EntryPath;
use sysgen_store::{Area, Store};

use super::apt::{self, Apt};
use super::plan::purge_set;
use super::reconcile::record_copy;
use super::records::own;
use super::{PackageManager, PackageStep, PkgGone};
use crate::db::Db;
use crate::host::ToolOutput;
use crate::rootfs::{Owner, RootDir};
use crate::{Error, PackageError};

/// Runs one package step. Converges: what is already as the step wants it
/// is left alone, so `recover` can run it again.
pub fn apply(
    root: &RootDir,
    store: &Store,
    db: &mut Db,
    timeout: Duration,
    step: &PackageStep,
    shown: Option<&ToolOutput>,
) -> Result<(), Error> {
    match step {
        PackageStep::Keep { .. } => Ok(()),
        PackageStep::Abandon { purge, remove, .. } => {
            let apt = Apt::for_root(root)?.with_timeout(timeout);
            let installed = apt.installed()?;
            for (names, purge) in [(purge, true), (remove, false)] {
                let here: Vec<String> = names
                    .iter()
                    .filter(|n| installed.contains_key(*n))
                    .cloned()
                    .collect();
                if !here.is_empty() {
                    apt.abandon(&here, purge)?;
                }
            }
            Ok(())
        }
        PackageStep::Install {
            manager,
            changes,
            remark,
            ..
        } => {
            let apt = Apt::for_root(root)?.with_timeout(timeout).showing(shown);
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
                    .map_err(|e| {
                        Error::Internal(format!("the package file of {} {}: {e}", c.name, c.to))
                    })?;
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
            result?;
            // The copies now installed are sysgen's; a package it changed
            // but does not own keeps no record (it is the admin's).
            for c in changes {
                if c.owned {
                    record_copy(db, root, manager, &c.name, &c.arch)?;
                } else {
                    own(db, manager, &c.name, false)?;
                }
            }
            Ok(())
        }
        PackageStep::Remove {
            manager, packages, ..
        } => {
            let apt = Apt::for_root(root)?.with_timeout(timeout).showing(shown);
            let installed = apt.installed()?;
            let present: Vec<PkgGone> = packages
                .iter()
                .filter(|p| installed.contains_key(&p.name))
                .cloned()
                .collect();
            // One removal for all (one may need another), then the purge of
            // those asked for, of which only the configuration is left.
            let names = purge_set(&apt, &present)?;
            if !names.is_empty() {
                apt.remove(&names, false)?;
            }
            let purge: Vec<&PkgGone> = packages.iter().filter(|p| p.purge).collect();
            if !purge.is_empty() {
                let leftovers = apt.leftovers()?;
                let left: Vec<String> = purge
                    .iter()
                    .filter(|p| leftovers.contains_key(&p.name))
                    .map(|p| p.name.clone())
                    .collect();
                if !left.is_empty() {
                    apt.purge_leftovers(&left)?;
                }
                // Purged: nothing of it is left for sysgen to answer for.
                let known = apt.leftovers()?;
                let now = apt.installed()?;
                for p in purge {
                    if !now.contains_key(&p.name) && !known.contains_key(&p.name) {
                        own(db, manager, &p.name, false)?;
                    }
                }
            }
            // A removed package stays sysgen's: its configuration and data
            // are purged when gc collects the last generation that has it.
            // A dependency that stays (something else needs it) stays
            // sysgen's too: a later generation that drops it may remove it.
            Ok(())
        }
    }
}
