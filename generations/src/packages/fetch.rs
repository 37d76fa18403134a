//! Before the journal: the package files a switch needs, in the store.
//!
//! - Every package the transaction installs: downloaded now if the store
//!   lacks it, or the switch is refused (nothing changed). The transaction
//!   then runs from the store alone (`--no-download`), so the plan can run
//!   offline: `recover` and the undo never need the network.
//! - The version each change replaces: kept too, so the rollback of this
//!   very switch needs no archive either. The archive may no longer serve
//!   an old version; the step then says which could not be kept.

use std::io::Read;

use sysgen_store::Area;

use super::PackageManager;
use super::apt::Apt;
use super::records::{deb_in_store, record_file};
use super::step::PackageStep;
use crate::{Error, State};

/// Fills in the `.deb` of every package the plan's transaction installs,
/// and keeps the versions it replaces (see the module doc).
pub(super) fn fetch(state: &mut State, steps: &mut [&mut PackageStep]) -> Result<(), Error> {
    let Some((changes, unkept)) = steps.iter_mut().find_map(|s| match s {
        PackageStep::Install {
            changes, unkept, ..
        } => Some((changes, unkept)),
        _ => None,
    }) else {
        return Ok(());
    };
    let apt = Apt::for_root(&state.root)?;
    let missing: Vec<(String, String, String)> = changes
        .iter()
        .filter(|c| c.deb.is_none())
        .map(|c| (c.name.clone(), c.to.clone(), c.arch.clone()))
        .collect();
    if !missing.is_empty() {
        for (pkg, hash) in missing.iter().zip(keep(state, &apt, &missing)?) {
            if let Some(c) = changes.iter_mut().find(|c| c.name == pkg.0) {
                c.deb = Some(hash);
            }
        }
    }
    for c in changes.iter() {
        let Some(from) = &c.from else { continue };
        if from == &c.to
            || deb_in_store(&state.db, &state.store, apt.name(), &c.name, from, &c.arch)?.is_some()
        {
            continue;
        }
        let old = [(c.name.clone(), from.clone(), c.arch.clone())];
        // One at a time: apt downloads all or nothing.
        if keep(state, &apt, &old).is_err() {
            unkept.push(format!("{} {from}", c.name));
        }
    }
    Ok(())
}

/// Downloads (name, version, arch) package files with the root's apt,
/// puts each into the store's public area, records it, and removes it
/// from apt's cache again (not sysgen's to fill).
fn keep(
    state: &mut State,
    apt: &Apt,
    pkgs: &[(String, String, String)],
) -> Result<Vec<sysgen_store::Hash>, Error> {
    let files = apt.download(pkgs)?;
    let mut out = Vec::with_capacity(files.len());
    for ((name, version, arch), path) in pkgs.iter().zip(&files) {
        let mut bytes = Vec::new();
        state
            .root
            .open_file(path)?
            .read_to_end(&mut bytes)
            .map_err(crate::io_err(state.root.display(path)))?;
        let hash = state.store.put_bytes(&bytes, Area::Public)?;
        record_file(&state.db, apt.name(), name, version, arch, &hash)?;
        state.root.remove(path)?;
        out.push(hash);
    }
    Ok(out)
}
