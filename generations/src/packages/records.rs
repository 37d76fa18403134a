//! The two package tables: what sysgen installed (`package_owned`) and
//! the `.deb` objects in the store (`package_files`).

use std::collections::BTreeSet;

use rusqlite::{OptionalExtension, params};
use sysgen_store::{Area, Hash, Store};

use super::PackageSet;
use crate::Error;
use crate::db::Db;
use crate::error::sql;

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

pub(super) fn own(db: &Db, manager: &str, name: &str, yes: bool) -> Result<(), Error> {
    // Owned anew, the copy is not known until the transaction ran (see
    // `reconcile`): unknown counts as sysgen's.
    let q = if yes {
        "INSERT INTO package_owned (manager, name) VALUES (?1, ?2) ON CONFLICT (manager, name) DO UPDATE SET copy = NULL"
    } else {
        "DELETE FROM package_owned WHERE manager = ?1 AND name = ?2"
    };
    db.conn()
        .execute(q, params![manager, name])
        .map_err(sql)
        .map(|_| ())
}

pub(super) fn record_file(
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
pub(super) fn deb_in_store(
    db: &Db,
    store: &Store,
    manager: &str,
    name: &str,
    version: &str,
    arch: &str,
) -> Result<Option<Hash>, Error> {
    let Some(hash) = file_of(db, manager, name, version, arch)? else {
        return Ok(None);
    };
    Ok(store.contains(&hash, Area::Public)?.then_some(hash))
}

/// For gc: the `.deb` objects the packages of `sets` use.
pub fn mark_files<'a>(
    db: &Db,
    sets: impl Iterator<Item = &'a PackageSet>,
    live: &mut crate::kind::MarkSet,
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
