//! What gc does for packages: a package sysgen removed keeps its
//! configuration and data on the root (dpkg's `rc` state) while a
//! generation that has it remains, so a rollback finds them where they
//! were. When gc collects the last such generation, it purges the package:
//! its conffiles and its state go. A dry run lists what that destroys.

use std::collections::BTreeSet;

use serde::Serialize;
use sysgen_schema::EntryPath;

use super::PackageManager;
use super::apt::Apt;
use super::plan::destroys;
use super::reconcile::owned_now;
use super::records::{own, owned};
use crate::Error;
use crate::kind::{Collect, Report, to_json};

/// One package gc purges (or would purge).
#[derive(Debug, Clone, Serialize)]
pub struct Purged {
    pub name: String,
    pub version: String,
    /// Its conffiles and its state directory, as far as sysgen can tell
    /// (its postrm script may delete more).
    pub destroys: Vec<EntryPath>,
}

/// Purges the packages sysgen removed that no kept generation has.
pub(super) fn purge_unkept(cx: &Collect<'_>) -> Result<Option<Report>, Error> {
    let state = cx.state;
    if owned(&state.db, "apt")?.is_empty() {
        return Ok(None);
    }
    let apt = Apt::for_root(&state.root)?.with_timeout(cx.opts.package_timeout);
    // Only what is still sysgen's, as dpkg has it now.
    let owned = owned_now(&apt, &state.db, &state.root)?;
    let leftovers = apt.leftovers()?;
    let mut kept = BTreeSet::new();
    for id in cx.kept {
        if let Some((m, _)) = state.db.manifest(id)? {
            kept.extend(m.packages.apt.into_keys());
        }
    }
    let mut doomed = Vec::new();
    for (name, version) in &leftovers {
        if owned.contains(name) && !kept.contains(name) {
            doomed.push(Purged {
                name: name.clone(),
                version: version.clone(),
                destroys: destroys(&apt, &state.root, name)?,
            });
        }
    }
    if doomed.is_empty() {
        return Ok(None);
    }
    if !cx.dry_run {
        let names: Vec<String> = doomed.iter().map(|p| p.name.clone()).collect();
        apt.purge_leftovers(&names)?;
        for n in &names {
            own(&state.db, apt.name(), n, false)?;
        }
    }
    let verb = if cx.dry_run { "would purge" } else { "purged" };
    let lines = doomed
        .iter()
        .map(|p| {
            let what: Vec<&str> = p.destroys.iter().map(EntryPath::as_str).collect();
            let what = if what.is_empty() {
                "dpkg's record of it".to_owned()
            } else {
                what.join(", ")
            };
            format!(
                "{verb} package {} {}, removed and in no remaining generation: destroys {what}",
                p.name, p.version
            )
        })
        .collect();
    Ok(Some(Report {
        kind: "packages",
        lines,
        json: to_json("packages", serde_json::json!({ "purged": &doomed }))?,
    }))
}
