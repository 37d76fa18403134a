//! The stat index: what each build source's content was when it was last
//! hashed, keyed by its path, like git's index.
//!
//! One file, `<state>/stat-index`, read through a memory map and searched
//! in place (no map of 100k path strings built at every build):
//!
//! ```text
//! "SGSTATX1"  count: u64 LE  blake3[32] of everything after it
//! count records of 80 bytes, sorted by path bytes:
//!     path offset u32, path length u32, dev u64, ino u64, size u64,
//!     mtime_ns i64, ctime_ns i64, hash[32]        (little-endian)
//! the paths, one after another
//! ```
//!
//! It is a cache: a missing, torn or damaged index (the checksum, the
//! bounds) is read as empty and every file is hashed again. It is written
//! to a temporary name and renamed over the old one (never rewritten in
//! place, so a map of the old one stays valid), without fsync: a crash
//! loses it, or leaves bytes the checksum refuses.
//!
//! **Racy-clean rule** (git's): the index file's own mtime is when the
//! stats in it were taken, on the file system's clock. A file whose mtime
//! is in the same second as that, or later, may have changed again after
//! it was hashed without its stat changing (timestamps are coarse), so it
//! is hashed again rather than trusted; the next index, written later,
//! trusts it.

use std::cmp::Ordering;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};

use memmap2::UncheckedAdvice;
use nix::errno::Errno;
use nix::fcntl::{OFlag, openat, renameat};
use nix::sys::stat::Mode;
use nix::unistd::{UnlinkatFlags, unlinkat};
use sysgen_store::Hash;
use sysgen_store::trust::{self, Expect};

use spill::Runs;

use crate::db::CacheRow;
use crate::{Error, io_err};

pub(crate) const FILE_NAME: &str = "stat-index";
const TEMP_NAME: &str = "stat-index.tmp";
const MAGIC: &[u8; 8] = b"SGSTATX1";
const HEADER: usize = 8 + 8 + 32;
const RECORD: usize = 80;
/// Lookups (or records read in order) between two releases of the map's
/// pages (see [`StatIndex::release`]): the pages a build touches in
/// between, a few MiB, are all the index adds to its resident set.
const RELEASE_EVERY: usize = 8192;

pub(crate) struct StatIndex {
    map: Option<memmap2::Mmap>,
    count: usize,
    /// Entries whose mtime is at or after this (ns) are racily clean.
    racy_from_ns: i64,
    /// Lookups so far, to release the map's pages every `RELEASE_EVERY`.
    lookups: AtomicUsize,
}

impl StatIndex {
    pub(crate) fn empty() -> StatIndex {
        StatIndex {
            map: None,
            count: 0,
            racy_from_ns: i64::MIN,
            lookups: AtomicUsize::new(0),
        }
    }

    /// Loads the index of the state directory `state_dir`; empty when
    /// absent or damaged. A planted symlink or a file of another owner is
    /// refused, as everywhere in the state directory.
    pub(crate) fn load(state_dir: &Path) -> Result<StatIndex, Error> {
        let path = state_dir.join(FILE_NAME);
        let (file, meta) = match trust::open_meta(&path, Expect::File, false) {
            Ok(f) => f,
            Err(sysgen_store::StoreError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Ok(StatIndex::empty());
            }
            Err(e) => return Err(e.into()),
        };
        if meta.len() < HEADER as u64 {
            return Ok(StatIndex::empty());
        }
        // SAFETY: the file is ours (checked above), in the state directory
        // that only the lock holder writes, and it is replaced by rename,
        // never truncated or written in place: the mapped bytes stay.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_err(&path))?;
        let racy_from_ns = (meta.mtime()).saturating_mul(1_000_000_000);
        Ok(StatIndex::parse(map, racy_from_ns).unwrap_or_else(StatIndex::empty))
    }

    fn parse(map: memmap2::Mmap, racy_from_ns: i64) -> Option<StatIndex> {
        if map.get(..8)? != MAGIC {
            return None;
        }
        let count = usize::try_from(u64::from_le_bytes(map.get(8..16)?.try_into().ok()?)).ok()?;
        let table = count.checked_mul(RECORD)?.checked_add(HEADER)?;
        if table > map.len() || blake3::hash(&map[HEADER..]).as_bytes() != &map[16..48] {
            return None;
        }
        let index = StatIndex {
            count,
            racy_from_ns,
            map: Some(map),
            lookups: AtomicUsize::new(0),
        };
        // Every path in bounds and the paths sorted: checked once here, so
        // that a search never reads out of bounds or goes astray.
        let sorted = (0..count).try_fold(None::<&[u8]>, |prev, i| {
            let p = index.path(i)?;
            prev.is_none_or(|q| q < p).then_some(Some(p))
        });
        // The checks above read every page of the map.
        index.release();
        sorted.is_some().then_some(index)
    }

    /// Drops the map's pages from this process's resident set; a later
    /// read maps them again from the page cache. Every page of a
    /// million-file index is read (checksum, lookups in path order, the
    /// merge of a write), and kept resident it would add about 130 bytes
    /// per file to a build's peak: 130 MiB of the 300 MiB a million-file
    /// build may take. Failing to release only costs memory.
    fn release(&self) {
        if let Some(map) = &self.map {
            // SAFETY: the mapping is of a file that is never written in
            // place (replaced by rename, see `load`): the pages read again
            // after MADV_DONTNEED hold the same bytes, so no reference into
            // the map sees its bytes change.
            let _ = unsafe { map.unchecked_advise(UncheckedAdvice::DontNeed) };
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    fn record(&self, i: usize) -> &[u8] {
        let map = self.map.as_deref().unwrap_or_default();
        &map[HEADER + i * RECORD..HEADER + (i + 1) * RECORD]
    }

    fn path(&self, i: usize) -> Option<&[u8]> {
        let r = self.record(i);
        let off = u32::from_le_bytes(r[0..4].try_into().ok()?) as usize;
        let len = u32::from_le_bytes(r[4..8].try_into().ok()?) as usize;
        let map = self.map.as_deref()?;
        map.get(off..off.checked_add(len)?)
    }

    fn row(&self, i: usize) -> CacheRow {
        let r = self.record(i);
        let u = |a: usize| u64::from_le_bytes(r[a..a + 8].try_into().unwrap_or_default());
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&r[48..80]);
        CacheRow {
            dev: u(8),
            ino: u(16),
            size: u(24),
            mtime_ns: u(32) as i64,
            ctime_ns: u(40) as i64,
            hash: Hash::from_bytes(hash),
        }
    }

    fn find(&self, path: &[u8]) -> Option<usize> {
        let (mut lo, mut hi) = (0, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.path(mid)?.cmp(path) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    /// The recorded row of `path`, unless it is racily clean (see the
    /// module docs): then the file must be hashed again.
    pub(crate) fn get(&self, path: &[u8]) -> Option<CacheRow> {
        if self.lookups.fetch_add(1, AtomicOrdering::Relaxed) % RELEASE_EVERY == RELEASE_EVERY - 1 {
            self.release();
        }
        let row = self.row(self.find(path)?);
        (row.mtime_ns < self.racy_from_ns).then_some(row)
    }

    /// Whether a file of these times was last changed before the index
    /// was written (the racy-clean rule's other side): before this build
    /// began, so that any later change gives it another mtime or ctime.
    /// Always false without an index.
    pub(crate) fn settled(&self, mtime_ns: i64, ctime_ns: i64) -> bool {
        mtime_ns < self.racy_from_ns && ctime_ns < self.racy_from_ns
    }

    /// Every record, in path order.
    fn iter(&self) -> impl Iterator<Item = (&[u8], CacheRow)> {
        (0..self.count).filter_map(|i| {
            if i % RELEASE_EVERY == RELEASE_EVERY - 1 {
                self.release();
            }
            Some((self.path(i)?, self.row(i)))
        })
    }
}

/// A new record's path in up to three pieces (a directory's source path
/// and `/`, and a name: see `spill`), compared as their concatenation and
/// never built: a first build merges 100k of them.
pub(crate) type Key<'a> = [&'a [u8]; 3];

/// Compares two keys as the byte strings they stand for.
fn cmp_pieces(a: &[&[u8]], b: &[&[u8]]) -> Ordering {
    let (mut ai, mut ao, mut bi, mut bo) = (0, 0, 0, 0);
    loop {
        while ai < a.len() && ao == a[ai].len() {
            (ai, ao) = (ai + 1, 0);
        }
        while bi < b.len() && bo == b[bi].len() {
            (bi, bo) = (bi + 1, 0);
        }
        let (x, y) = match (a.get(ai), b.get(bi)) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => (&x[ao..], &y[bo..]),
        };
        let n = x.len().min(y.len());
        match x[..n].cmp(&y[..n]) {
            Ordering::Equal => (ao, bo) = (ao + n, bo + n),
            o => return o,
        }
    }
}

/// One record of the merged index: an old one kept, or a new one.
enum Merged<'i> {
    Old(&'i [u8], CacheRow),
    New(Key<'i>, CacheRow),
}

impl Merged<'_> {
    fn key_len(&self) -> usize {
        match self {
            Merged::Old(p, _) => p.len(),
            Merged::New(k, _) => k.iter().map(|s| s.len()).sum(),
        }
    }
}

/// The records of `new` over those of `old`, in path order.
fn merged<'i>(
    old: &'i StatIndex,
    new: &'i Runs,
) -> Result<impl Iterator<Item = Result<Merged<'i>, Error>>, Error> {
    let mut olds = old.iter().peekable();
    let mut news = new.merged()?;
    let mut next_new = news.next_row()?;
    Ok(std::iter::from_fn(move || {
        let take_new = match (olds.peek(), &next_new) {
            (None, None) => return None,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (Some((p, _)), Some((k, _))) => match cmp_pieces(&[p], k) {
                Ordering::Less => false,
                Ordering::Equal => {
                    olds.next();
                    true
                }
                Ordering::Greater => true,
            },
        };
        if take_new {
            let (k, r) = next_new.take()?;
            Some(news.next_row().map(|n| {
                next_new = n;
                Merged::New(k, r)
            }))
        } else {
            olds.next().map(|(p, r)| Ok(Merged::Old(p, r)))
        }
    }))
}

/// Writes the index: the records of `new` (the runs a build spilled, see
/// `spill`) over those of `old` (kept for sources this build did not
/// read: another configuration built in the same state). Streamed to the
/// file in three passes over the merge (the count, the records, the
/// paths), so that nothing is held but a cursor per run.
pub(crate) fn write(state_dir: &Path, old: &StatIndex, new: &Runs) -> Result<(), Error> {
    let mut count = 0usize;
    for m in merged(old, new)? {
        m?;
        count += 1;
    }

    let dir = trust::open(state_dir, Expect::Dir, false)?;
    let temp = state_dir.join(TEMP_NAME);
    // A leftover of a build cut short (the caller holds the lock).
    match unlinkat(&dir, TEMP_NAME, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(io_err(&temp)(e.into())),
    }
    let fd = openat(
        &dir,
        TEMP_NAME,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(|e| io_err(&temp)(e.into()))?;
    let file = File::from(fd);
    let mut out = std::io::BufWriter::with_capacity(1 << 16, &file);
    // Room for the header, written last, once the checksum is known.
    out.write_all(&[0; HEADER]).map_err(io_err(&temp))?;
    let mut sum = blake3::Hasher::new();
    let mut put = |b: &[u8]| {
        sum.update(b);
        out.write_all(b)
    };
    let body = (|| -> Result<(), Error> {
        let mut off = HEADER + count * RECORD;
        for m in merged(old, new)? {
            let m = m?;
            let l = m.key_len();
            let (Ok(o), Ok(l32)) = (u32::try_from(off), u32::try_from(l)) else {
                return Err(Error::Internal("the stat index would be over 4 GiB".into()));
            };
            let (Merged::Old(_, r) | Merged::New(_, r)) = m;
            let mut rec = [0u8; RECORD];
            rec[0..4].copy_from_slice(&o.to_le_bytes());
            rec[4..8].copy_from_slice(&l32.to_le_bytes());
            for (i, v) in [r.dev, r.ino, r.size, r.mtime_ns as u64, r.ctime_ns as u64]
                .into_iter()
                .enumerate()
            {
                rec[8 + 8 * i..16 + 8 * i].copy_from_slice(&v.to_le_bytes());
            }
            rec[48..80].copy_from_slice(r.hash.as_bytes());
            put(&rec).map_err(io_err(&temp))?;
            off += l;
        }
        for m in merged(old, new)? {
            match m? {
                Merged::Old(p, _) => put(p).map_err(io_err(&temp))?,
                Merged::New(k, _) => {
                    for piece in k {
                        put(piece).map_err(io_err(&temp))?;
                    }
                }
            }
        }
        Ok(())
    })();
    body?;
    out.flush().map_err(io_err(&temp))?;
    drop(out);
    let mut header = [0u8; HEADER];
    header[..8].copy_from_slice(MAGIC);
    header[8..16].copy_from_slice(&(count as u64).to_le_bytes());
    header[16..48].copy_from_slice(sum.finalize().as_bytes());
    std::os::unix::fs::FileExt::write_all_at(&file, &header, 0).map_err(io_err(&temp))?;
    drop(file);
    renameat(&dir, TEMP_NAME, &dir, FILE_NAME)
        .map_err(|e| io_err(state_dir.join(FILE_NAME))(e.into()))?;
    Ok(())
}

pub(crate) mod spill;
#[cfg(test)]
mod tests;
