//! The record of the files that sysgen created for their blocks
//! (`block_files`, migration 6): only those are removed once their last
//! block leaves and nothing else is in them. A file that was there before
//! stays, even empty.

use rusqlite::{OptionalExtension, params};
use sysgen_schema::EntryPath;

use crate::Error;
use crate::db::Db;
use crate::error::sql;

pub(super) fn created(db: &Db, p: &EntryPath) -> Result<(), Error> {
    db.conn()
        .execute(
            "INSERT OR IGNORE INTO block_files (path) VALUES (?1)",
            params![p.as_str()],
        )
        .map_err(sql)?;
    Ok(())
}

pub(super) fn was_created(db: &Db, p: &EntryPath) -> Result<bool, Error> {
    db.conn()
        .query_row(
            "SELECT 1 FROM block_files WHERE path = ?1",
            params![p.as_str()],
            |_| Ok(()),
        )
        .optional()
        .map(|r| r.is_some())
        .map_err(sql)
}

pub(super) fn forget(db: &Db, p: &EntryPath) -> Result<(), Error> {
    db.conn()
        .execute(
            "DELETE FROM block_files WHERE path = ?1",
            params![p.as_str()],
        )
        .map_err(sql)?;
    Ok(())
}
