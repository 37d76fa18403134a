//! Hashing a build's files: a declared file, or a tree's file found
//! unchanged in the stat index (`index.rs`) or hashed into the store.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sysgen_store::{Area, Hash};

use super::index::StatIndex;
use crate::db::CacheRow;
use crate::manifest::Entry;
use crate::rootfs::Xattrs;
use crate::{Error, io_err};

/// Where a file's bytes come from, before hashing.
pub(super) enum Src {
    Inline(Vec<u8>),
    /// A declared file on the build host.
    Path(PathBuf),
    /// Already in the store, hash and size set (a download).
    Stored,
}

/// What identifies a file's content on the build host, for the stat cache.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct Stat {
    pub(super) dev: u64,
    pub(super) ino: u64,
    pub(super) size: u64,
    pub(super) mtime_ns: i64,
    pub(super) ctime_ns: i64,
}

pub(super) struct PendingFile {
    pub(super) src: Src,
    /// The source's stat: taken by the tree walk (so it is not taken twice),
    /// or else by hashing.
    pub(super) stat: Option<Stat>,
    pub(super) mode: u32,
    pub(super) uid: Option<u32>,
    pub(super) gid: Option<u32>,
    pub(super) secret: bool,
    /// Boxed: most files have none.
    pub(super) xattrs: Option<Box<Xattrs>>,
    /// Set by hashing, in place (no second map of 100k entries).
    pub(super) hash: Hash,
    pub(super) size: u64,
    /// Whether the stat cache may record `stat` for `hash`: the file did not
    /// change while it was read.
    pub(super) cache: bool,
}

impl PendingFile {
    pub(super) fn new(src: Src, stat: Option<Stat>, mode: u32) -> PendingFile {
        PendingFile {
            src,
            stat,
            mode,
            uid: None,
            gid: None,
            secret: false,
            xattrs: None,
            hash: Hash::from_bytes([0; 32]),
            size: 0,
            cache: false,
        }
    }

    /// The entry, once hashed.
    pub(super) fn entry(&self) -> Entry {
        Entry::File {
            hash: self.hash,
            size: self.size,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            secret: self.secret,
            xattrs: self.xattrs.as_deref().cloned().unwrap_or_default(),
            link: None,
        }
    }
}

/// Hashes and stores one declared file, or takes its hash from the stat
/// cache; the result goes into `f`.
pub(super) fn hash_file(
    f: &mut PendingFile,
    cache: &StatIndex,
    store: &sysgen_store::Store,
    batch: &sysgen_store::Batch<'_>,
    cached: &std::sync::atomic::AtomicU64,
) -> Result<(), Error> {
    let area = if f.secret { Area::Secret } else { Area::Public };
    let path = match &f.src {
        Src::Stored => return Ok(()),
        Src::Inline(bytes) => {
            f.hash = batch.put_bytes(bytes, area)?;
            f.size = bytes.len() as u64;
            return Ok(());
        }
        Src::Path(path) => path,
    };
    let stat = match f.stat {
        Some(stat) => stat,
        None => stat_of(&std::fs::metadata(path).map_err(io_err(path))?),
    };
    f.stat = Some(stat);
    let got = hash_source(path, stat, area, cache, store, batch)?;
    if got.cached {
        cached.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    f.hash = got.hash;
    f.size = got.size;
    f.cache = got.record;
    Ok(())
}

/// A source's content, hashed or found in the stat index.
pub(super) struct Hashed {
    pub(super) hash: Hash,
    pub(super) size: u64,
    /// Found in the stat index (and the store).
    pub(super) cached: bool,
    /// Hashed, and the stat index may record `stat` for it: the file did
    /// not change while it was read.
    pub(super) record: bool,
}

/// Hashes and stores the file at `path`, whose stat the caller took,
/// unless the stat index knows it unchanged and the store has it.
pub(super) fn hash_source(
    path: &Path,
    stat: Stat,
    area: Area,
    cache: &StatIndex,
    store: &sysgen_store::Store,
    batch: &sysgen_store::Batch<'_>,
) -> Result<Hashed, Error> {
    let hit = match cache.get(path.as_os_str().as_bytes()) {
        Some(c) if same_file(&c, &stat) => store.contains(&c.hash, area)?.then_some(c),
        _ => None,
    };
    if let Some(c) = hit {
        return Ok(Hashed {
            hash: c.hash,
            size: c.size,
            cached: true,
            record: false,
        });
    }
    // The size of the stat just taken: the store need not ask it again.
    let (hash, size, after) = batch.put_file_stat(path, area, stat.size)?;
    // Recorded only if the file did not change while we read it: its
    // handle's stat once read is the one taken before (the same inode,
    // so the path named that content; a path replaced since names an inode
    // the record does not match, and is hashed again next time).
    let after = stat_of(&after);
    let record = after == stat && after.size == size;
    Ok(Hashed {
        hash,
        size,
        cached: false,
        record,
    })
}

pub(super) fn stat_of(md: &std::fs::Metadata) -> Stat {
    Stat {
        dev: md.dev(),
        ino: md.ino(),
        size: md.size(),
        mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
        ctime_ns: md.ctime() * 1_000_000_000 + md.ctime_nsec(),
    }
}

pub(super) fn cache_row(s: &Stat, hash: Hash) -> CacheRow {
    CacheRow {
        dev: s.dev,
        ino: s.ino,
        size: s.size,
        mtime_ns: s.mtime_ns,
        ctime_ns: s.ctime_ns,
        hash,
    }
}

pub(super) fn same_file(c: &CacheRow, s: &Stat) -> bool {
    c.dev == s.dev
        && c.ino == s.ino
        && c.size == s.size
        && c.mtime_ns == s.mtime_ns
        && c.ctime_ns == s.ctime_ns
}
