//! Ownership follows reality: before each switch, the record of what
//! sysgen installed (`package_owned`) is checked against dpkg.
//!
//! - A package dpkg no longer knows at all (purged outside sysgen) is no
//!   longer sysgen's.
//! - A package whose installed copy is not the one sysgen installed (the
//!   admin purged it and installed it again by hand, or reinstalled it) is
//!   the admin's: sysgen never removes it.
//! - A package sysgen removed (dpkg's `rc`: its configuration is left)
//!   stays sysgen's, for gc to purge.
//!
//! A copy is told by the inode and ctime of dpkg's file list of the package
//! (`/var/lib/dpkg/info/<name>.list`), which dpkg writes anew whenever it
//! unpacks the package; sysgen records it after its own transaction.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::params;
use sysgen_schema::EntryPath;

use super::{Installed, PackageManager};
use crate::Error;
use crate::db::Db;
use crate::error::sql;
use crate::rootfs::{Live, RootDir};

/// The owned packages with the copy sysgen installed (`None`: not known,
/// recorded before sysgen kept copies or before its transaction ran).
pub(super) fn owned_copies(
    db: &Db,
    manager: &str,
) -> Result<BTreeMap<String, Option<String>>, Error> {
    let mut st = db
        .conn()
        .prepare_cached("SELECT name, copy FROM package_owned WHERE manager = ?1")
        .map_err(sql)?;
    st.query_map(params![manager], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
    })
    .map_err(sql)?
    .collect::<Result<_, _>>()
    .map_err(sql)
}

/// Records the copy of `name` now installed as the one sysgen installed.
pub(super) fn record_copy(
    db: &Db,
    root: &RootDir,
    manager: &str,
    name: &str,
    arch: &str,
) -> Result<(), Error> {
    let copy = copy_of(root, name, arch)?;
    db.conn()
        .execute(
            "UPDATE package_owned SET copy = ?3 WHERE manager = ?1 AND name = ?2",
            params![manager, name, copy],
        )
        .map_err(sql)
        .map(|_| ())
}

/// The installed copy of a package: its dpkg file list's inode and ctime.
fn copy_of(root: &RootDir, name: &str, arch: &str) -> Result<Option<String>, Error> {
    for file in [format!("{name}.list"), format!("{name}:{arch}.list")] {
        let p = EntryPath::parse(&format!("/var/lib/dpkg/info/{file}"))
            .map_err(|e| Error::Internal(format!("dpkg's file list of {name}: {e}")))?;
        if let Live::File(m) = root.inspect(&p)? {
            return Ok(Some(format!("{}:{}", m.ino, m.ctime_ns)));
        }
    }
    Ok(None)
}

/// What sysgen owns, as dpkg has it now: the rows of packages purged
/// outside sysgen, or installed again by hand, are left out. Reads only.
fn reconciled(
    db: &Db,
    root: &RootDir,
    manager: &str,
    installed: &BTreeMap<String, Installed>,
    leftovers: &BTreeMap<String, String>,
) -> Result<(BTreeSet<String>, Vec<String>), Error> {
    let mut owned = BTreeSet::new();
    let mut lost = Vec::new();
    for (name, copy) in owned_copies(db, manager)? {
        let ours = match (installed.get(&name), copy) {
            (Some(i), Some(c)) => copy_of(root, &name, &i.arch)?.is_none_or(|now| now == c),
            (Some(_), None) => true,
            (None, _) => leftovers.contains_key(&name),
        };
        if ours {
            owned.insert(name);
        } else {
            lost.push(name);
        }
    }
    Ok((owned, lost))
}

/// What sysgen owns on the root now, as [`reconciled`] tells it (no rows,
/// no question asked of dpkg).
pub(super) fn owned_now(
    pm: &dyn PackageManager,
    db: &Db,
    root: &RootDir,
) -> Result<BTreeSet<String>, Error> {
    if super::records::owned(db, pm.name())?.is_empty() {
        return Ok(BTreeSet::new());
    }
    let (owned, _) = reconciled(db, root, pm.name(), &pm.installed()?, &pm.leftovers()?)?;
    Ok(owned)
}
