//! The database records of users and groups (migration 8):
//! - `account_ids`: the id each name was given, once, kept for good (a
//!   user removed and declared again gets its uid back, and with it the
//!   files of its kept home);
//! - `account_origins`: what a pre-existing account was before sysgen
//!   first changed it, written by the step that first changes it, dropped
//!   by the step that puts it back;
//! - `account_homes`: the homes of removed users, kept until gc collects
//!   the last generation that has the user.

use std::collections::BTreeMap;

use rusqlite::params;

use crate::Error;
use crate::db::Db;
use crate::error::sql;

/// `"user"` or `"group"`: the kind column.
pub(crate) const USER: &str = "user";
pub(crate) const GROUP: &str = "group";

/// The ids given to names of `kind`.
pub(crate) fn ids(db: &Db, kind: &str) -> Result<BTreeMap<String, u32>, Error> {
    let mut st = db
        .conn()
        .prepare_cached("SELECT name, id FROM account_ids WHERE kind = ?1")
        .map_err(sql)?;
    let rows = st
        .query_map([kind], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(sql)?
        .collect::<Result<_, _>>()
        .map_err(sql)?;
    Ok(rows)
}

/// Records the id given to a name; a name keeps the first id it got.
pub(crate) fn set_id(db: &Db, kind: &str, name: &str, id: u32) -> Result<(), Error> {
    db.conn()
        .execute(
            "INSERT OR IGNORE INTO account_ids (kind, name, id) VALUES (?1, ?2, ?3)",
            params![kind, name, id],
        )
        .map_err(sql)?;
    Ok(())
}

/// The recorded origins of pre-existing accounts of `kind`, decoded.
pub(crate) fn origins<T: serde::de::DeserializeOwned>(
    db: &Db,
    kind: &str,
) -> Result<BTreeMap<String, T>, Error> {
    let mut st = db
        .conn()
        .prepare_cached("SELECT name, origin FROM account_origins WHERE kind = ?1")
        .map_err(sql)?;
    let rows: Vec<(String, String)> = st
        .query_map([kind], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(sql)?
        .collect::<Result<_, _>>()
        .map_err(sql)?;
    rows.into_iter()
        .map(|(n, o)| {
            let v = serde_json::from_str(&o)
                .map_err(|e| Error::Corrupt(format!("the origin of {kind} {n}: {e}")))?;
            Ok((n, v))
        })
        .collect()
}

/// Records what a pre-existing account was; the first record stays (a
/// re-run after a crash must not record what sysgen already changed).
pub(crate) fn set_origin<T: serde::Serialize>(
    db: &Db,
    kind: &str,
    name: &str,
    origin: &T,
) -> Result<(), Error> {
    let text = serde_json::to_string(origin)
        .map_err(|e| Error::Internal(format!("encoding the origin of {kind} {name}: {e}")))?;
    db.conn()
        .execute(
            "INSERT OR IGNORE INTO account_origins (kind, name, origin) VALUES (?1, ?2, ?3)",
            params![kind, name, text],
        )
        .map_err(sql)?;
    Ok(())
}

pub(crate) fn drop_origin(db: &Db, kind: &str, name: &str) -> Result<(), Error> {
    db.conn()
        .execute(
            "DELETE FROM account_origins WHERE kind = ?1 AND name = ?2",
            params![kind, name],
        )
        .map_err(sql)?;
    Ok(())
}

/// A removed user's home, kept.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeptHome {
    pub user: String,
    /// Where the home was.
    pub home: String,
    /// Where it is kept.
    pub kept: String,
}

pub(crate) fn kept_homes(db: &Db) -> Result<Vec<KeptHome>, Error> {
    let mut st = db
        .conn()
        .prepare_cached("SELECT name, home, kept FROM account_homes ORDER BY name")
        .map_err(sql)?;
    let rows = st
        .query_map([], |r| {
            Ok(KeptHome {
                user: r.get(0)?,
                home: r.get(1)?,
                kept: r.get(2)?,
            })
        })
        .map_err(sql)?
        .collect::<Result<_, _>>()
        .map_err(sql)?;
    Ok(rows)
}

/// Recorded before the home moves, so a crash never leaves a kept home
/// that nothing knows of.
pub(crate) fn set_kept_home(db: &Db, user: &str, home: &str, kept: &str) -> Result<(), Error> {
    db.conn()
        .execute(
            "INSERT OR REPLACE INTO account_homes (name, home, kept) VALUES (?1, ?2, ?3)",
            params![user, home, kept],
        )
        .map_err(sql)?;
    Ok(())
}

pub(crate) fn drop_kept_home(db: &Db, user: &str) -> Result<(), Error> {
    db.conn()
        .execute("DELETE FROM account_homes WHERE name = ?1", [user])
        .map_err(sql)?;
    Ok(())
}
