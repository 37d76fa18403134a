//! The stat index's new records, spilled to a temporary file as a build
//! makes them, instead of held (a record and a path per file hashed, about
//! 250 bytes each with their allocations: 250 MiB at a million files).
//!
//! The walk finishes directories in any order, so the file holds *runs*:
//! each directory's files, in name order, under the directory's source
//! path written once. A run is sorted, so the records of the whole build
//! come out in path order by a merge of the runs (a heap of one cursor per
//! run, read through a memory map): the build holds a cursor per
//! directory, not a record per file.
//!
//! ```text
//! a run:    prefix length u32, count u32, bytes of the records u64, prefix
//! a record: name length u32, dev u64, ino u64, size u64, mtime_ns i64,
//!           ctime_ns i64, hash[32], name            (little-endian)
//! ```
//!
//! A record's key is the prefix followed by its name. The file is created
//! in the state directory and unlinked at once: it goes away with the
//! process, whatever happens to the build.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use memmap2::UncheckedAdvice;
use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::Mode;
use nix::unistd::{UnlinkatFlags, unlinkat};
use sysgen_store::Hash;
use sysgen_store::trust::{self, Expect};

use super::{Key, RELEASE_EVERY, cmp_pieces};
use crate::db::CacheRow;
use crate::{Error, io_err};

const SPILL_NAME: &str = "stat-index.new";
const RUN_HEADER: usize = 4 + 4 + 8;
/// A record's bytes before its name.
const FIXED: usize = 4 + 5 * 8 + 32;

/// Where the walk's threads append their runs; the file is made with the
/// first run, so a build that hashes nothing never touches the state
/// directory.
pub(crate) struct Spill {
    state_dir: PathBuf,
    out: Mutex<Option<BufWriter<File>>>,
}

impl Spill {
    pub(crate) fn new(state_dir: &Path) -> Spill {
        Spill {
            state_dir: state_dir.to_owned(),
            out: Mutex::new(None),
        }
    }

    fn path(&self) -> PathBuf {
        self.state_dir.join(SPILL_NAME)
    }

    /// Creates the file, and unlinks it at once: only its handle is kept.
    fn create(&self) -> Result<File, Error> {
        let dir = trust::open(&self.state_dir, Expect::Dir, false)?;
        // A leftover of a process killed between the two calls below (the
        // caller holds the state's lock).
        match unlinkat(&dir, SPILL_NAME, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(io_err(self.path())(e.into())),
        }
        let fd = openat(
            &dir,
            SPILL_NAME,
            OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| io_err(self.path())(e.into()))?;
        unlinkat(&dir, SPILL_NAME, UnlinkatFlags::NoRemoveDir)
            .map_err(|e| io_err(self.path())(e.into()))?;
        Ok(File::from(fd))
    }

    /// Appends a run: the records of the keys `prefix` + each name. A name
    /// given twice keeps its last record.
    pub(crate) fn run(
        &self,
        prefix: &[&[u8]],
        mut rows: Vec<(&[u8], CacheRow)>,
    ) -> Result<(), Error> {
        if rows.is_empty() {
            return Ok(());
        }
        // Stable: of equal names, the last given is last; the dedup keeps
        // the first of equals, so reversed first.
        rows.reverse();
        rows.sort_by(|a, b| a.0.cmp(b.0));
        rows.dedup_by(|a, b| a.0 == b.0);
        let prefix_len: usize = prefix.iter().map(|p| p.len()).sum();
        let body: usize = rows.iter().map(|(n, _)| FIXED + n.len()).sum();
        let (Ok(plen), Ok(count)) = (u32::try_from(prefix_len), u32::try_from(rows.len())) else {
            return Err(Error::Internal("a stat-index run over 4 GiB".into()));
        };
        let mut guard = self.out.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            *guard = Some(BufWriter::with_capacity(1 << 16, self.create()?));
        }
        let Some(out) = guard.as_mut() else {
            return Err(Error::Internal(
                "the stat index's spill went missing".into(),
            ));
        };
        let write = |out: &mut BufWriter<File>| -> std::io::Result<()> {
            out.write_all(&plen.to_le_bytes())?;
            out.write_all(&count.to_le_bytes())?;
            out.write_all(&(body as u64).to_le_bytes())?;
            for p in prefix {
                out.write_all(p)?;
            }
            for (name, r) in &rows {
                let Ok(nlen) = u32::try_from(name.len()) else {
                    return Err(std::io::Error::other("a name over 4 GiB"));
                };
                out.write_all(&nlen.to_le_bytes())?;
                for v in [r.dev, r.ino, r.size, r.mtime_ns as u64, r.ctime_ns as u64] {
                    out.write_all(&v.to_le_bytes())?;
                }
                out.write_all(r.hash.as_bytes())?;
                out.write_all(name)?;
            }
            Ok(())
        };
        write(out).map_err(io_err(self.path()))
    }

    /// The runs written, to be merged; `None` if there were none.
    pub(crate) fn finish(self) -> Result<Option<Runs>, Error> {
        let path = self.path();
        let Some(out) = self.out.into_inner().unwrap_or_else(|e| e.into_inner()) else {
            return Ok(None);
        };
        let file = out
            .into_inner()
            .map_err(|e| io_err(&path)(e.into_error()))?;
        // SAFETY: the file is this process's own, unlinked, and no longer
        // written: nothing changes the mapped bytes.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_err(&path))?;
        let mut starts = Vec::new();
        let mut at = 0;
        while at < map.len() {
            let (plen, _, body) = run_header(&map, at).ok_or_else(|| damaged(at))?;
            starts.push(at);
            at = (at + RUN_HEADER)
                .checked_add(plen)
                .and_then(|a| a.checked_add(body))
                .ok_or_else(|| damaged(at))?;
        }
        if at != map.len() {
            return Err(damaged(at));
        }
        Ok(Some(Runs { map, starts }))
    }
}

fn damaged(at: usize) -> Error {
    Error::Internal(format!(
        "the stat index's new records are damaged at byte {at}"
    ))
}

fn u32_at(b: &[u8], at: usize) -> Option<usize> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?) as usize)
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// A run's prefix length, record count and bytes of records.
fn run_header(b: &[u8], at: usize) -> Option<(usize, usize, usize)> {
    Some((
        u32_at(b, at)?,
        u32_at(b, at + 4)?,
        usize::try_from(u64_at(b, at + 8)?).ok()?,
    ))
}

/// The runs of a build, mapped.
pub(crate) struct Runs {
    map: memmap2::Mmap,
    starts: Vec<usize>,
}

/// A run's next record.
struct Head<'m> {
    prefix: &'m [u8],
    name: &'m [u8],
    row: CacheRow,
    /// The run's number: of equal keys, the later run's record is kept.
    run: usize,
    /// Where the run's next record starts, and how many are left.
    next: usize,
    left: usize,
}

impl Head<'_> {
    fn cmp_key(&self, other: &Head<'_>) -> Ordering {
        cmp_pieces(&[self.prefix, self.name], &[other.prefix, other.name])
    }
}

impl PartialEq for Head<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Head<'_> {}

impl PartialOrd for Head<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Head<'_> {
    /// Reversed, for `BinaryHeap`'s max first: the least key first, and
    /// of equal keys the latest run.
    fn cmp(&self, other: &Self) -> Ordering {
        other.cmp_key(self).then_with(|| self.run.cmp(&other.run))
    }
}

impl Runs {
    /// The record at `at` of a run with `prefix`: its head, `left` after it.
    fn head<'m>(
        &'m self,
        prefix: &'m [u8],
        run: usize,
        at: usize,
        left: usize,
    ) -> Result<Head<'m>, Error> {
        let b = &self.map[..];
        let read = || -> Option<Head<'m>> {
            let nlen = u32_at(b, at)?;
            let u = |i: usize| u64_at(b, at + 4 + 8 * i);
            let hash: [u8; 32] = b.get(at + 44..at + FIXED)?.try_into().ok()?;
            let end = (at + FIXED).checked_add(nlen)?;
            Some(Head {
                prefix,
                name: b.get(at + FIXED..end)?,
                row: CacheRow {
                    dev: u(0)?,
                    ino: u(1)?,
                    size: u(2)?,
                    mtime_ns: u(3)? as i64,
                    ctime_ns: u(4)? as i64,
                    hash: Hash::from_bytes(hash),
                },
                run,
                next: end,
                left,
            })
        };
        read().ok_or_else(|| damaged(at))
    }

    /// Every record, in key order, each key once (see [`Head`]'s order).
    pub(crate) fn merged(&self) -> Result<Merge<'_>, Error> {
        let mut heap = BinaryHeap::with_capacity(self.starts.len());
        for (run, &at) in self.starts.iter().enumerate() {
            let (plen, count, _) = run_header(&self.map, at).ok_or_else(|| damaged(at))?;
            let body = at + RUN_HEADER + plen;
            let prefix = self
                .map
                .get(at + RUN_HEADER..body)
                .ok_or_else(|| damaged(at))?;
            if count > 0 {
                heap.push(self.head(prefix, run, body, count - 1)?);
            }
        }
        Ok(Merge {
            runs: self,
            heap,
            read: 0,
        })
    }

    /// Drops the map's pages from the resident set, as
    /// `StatIndex::release` does (the file is read from the page cache
    /// again when needed): a million files' runs are about 90 MiB.
    fn release(&self) {
        // SAFETY: the file is never written again (see `Spill::finish`):
        // the pages read again hold the same bytes.
        let _ = unsafe { self.map.unchecked_advise(UncheckedAdvice::DontNeed) };
    }
}

/// The merge of the runs: each key once, with its record.
pub(crate) struct Merge<'m> {
    runs: &'m Runs,
    heap: BinaryHeap<Head<'m>>,
    read: usize,
}

impl<'m> Merge<'m> {
    /// Moves `h`'s run on to its next record.
    fn advance(&mut self, h: &Head<'m>) -> Result<(), Error> {
        self.read += 1;
        if self.read.is_multiple_of(RELEASE_EVERY) {
            self.runs.release();
        }
        if h.left > 0 {
            let next = self.runs.head(h.prefix, h.run, h.next, h.left - 1)?;
            self.heap.push(next);
        }
        Ok(())
    }

    /// The next key and its record.
    pub(crate) fn next_row(&mut self) -> Result<Option<(Key<'m>, CacheRow)>, Error> {
        let Some(h) = self.heap.pop() else {
            return Ok(None);
        };
        self.advance(&h)?;
        // The same key in earlier runs: theirs are replaced.
        while self
            .heap
            .peek()
            .is_some_and(|o| o.cmp_key(&h) == Ordering::Equal)
        {
            if let Some(o) = self.heap.pop() {
                self.advance(&o)?;
            }
        }
        Ok(Some(([h.prefix, h.name, &[]], h.row)))
    }
}
