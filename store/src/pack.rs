//! Packs: the small objects of one batch appended to one file, and found
//! again through that file's index.
//!
//! One file per object costs a file creation (inode, directory entry,
//! rename) when a build stores it and an open when a switch reads it; for
//! 100k small configuration files that alone is as slow as `cp -a` of the
//! whole tree. A [`crate::Batch`] therefore appends the zstd frames of its
//! small objects to one pack and writes one index beside it.
//!
//! # Files
//!
//! ```text
//! <area>/pack/<name>.pack   "SGPACK1\n", then zstd frames back to back
//! <area>/pack/<name>.idx    "SGIDX01\n", count (u64), count entries of
//!                           hash (32 bytes), offset (u64), length (u32),
//!                           sorted by hash, then the BLAKE3 of all of that
//! ```
//!
//! Integers are little-endian. `<name>` is 32 hex digits of the BLAKE3 of
//! the first index written for the pack; it stays when gc rewrites the
//! index. The pack and its index have the area's file mode.
//!
//! # What is stored
//!
//! An object is in a pack exactly when a pack's index names it: a batch
//! renames the pack into place, then its index, between two `syncfs`
//! barriers ([`crate::Batch::commit`]). A pack without an index (a commit
//! or a repack cut short) or an index without a pack (a removal cut short)
//! is a leftover, removed by [`crate::Store::clean_temp`].
//!
//! gc ([`crate::Store::remove_all`]) never rewrites pack bytes in place. It
//! writes a new index without the dead objects (temp, fsync, rename, fsync
//! dir) and only then punches holes over their bytes, so no index ever
//! names a hole. Which holes, and when a pack is copied instead, is the
//! `repack` module's policy.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::index::{Index, Slot};
use crate::trust::{self, Expect};
use crate::{Area, Hash, Store, StoreError, TempFile};

const PACK_MAGIC: &[u8; 8] = b"SGPACK1\n";
const IDX_MAGIC: &[u8; 8] = b"SGIDX01\n";
const ENTRY_LEN: usize = 32 + 8 + 4;
/// A write buffer this large turns 100k appends of small frames into a few
/// hundred `write` calls.
const WRITE_BUF: usize = 1 << 20;

/// One object of a pack: where its frame starts and how long it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IdxEntry {
    pub(crate) hash: Hash,
    pub(crate) offset: u64,
    pub(crate) len: u32,
}

impl IdxEntry {
    /// This entry in the area's index, as an object of pack number `pack`.
    fn slot(self, pack: u32) -> Slot {
        Slot {
            hash: self.hash,
            offset: self.offset,
            pack,
            len: self.len,
        }
    }
}

/// Where a packed object is: which pack of the area's [`PackSet`], and where in it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Loc {
    pub(crate) pack: u32,
    pub(crate) offset: u64,
    pub(crate) len: u32,
}

/// One pack, open for reading.
#[derive(Debug)]
pub(crate) struct Pack {
    /// The pack file; its index is beside it ([`Pack::idx`]).
    pub(crate) path: PathBuf,
    pub(crate) file: File,
    /// Bytes of the pack file, magic included: with the live bytes, what
    /// tells gc that a pack is mostly dead.
    pub(crate) len: u64,
}

impl Pack {
    pub(crate) fn idx(&self) -> PathBuf {
        self.path.with_extension("idx")
    }
}

/// Every pack of one area and every object in them.
#[derive(Debug, Default)]
pub(crate) struct PackSet {
    pub(crate) packs: Vec<Pack>,
    /// Every object in them, by hash.
    pub(crate) index: Index,
    /// Packs left out because their index or their data is damaged: what
    /// they hold is unknown, and only those objects are lost (the others
    /// load and read as usual).
    pub(crate) damaged: Vec<DamagedPack>,
    /// Objects a later pack holds again (a copy or a merge cut short):
    /// which pack, and the object. Reads use the first; gc drops these.
    pub(crate) shadowed: Vec<(u32, Hash)>,
}

/// A pack that could not be loaded, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DamagedPack {
    /// The pack's name (32 hex digits), the stem of its two files.
    pub name: String,
    pub area: Area,
    /// The pack file (its index is beside it, `.idx`).
    pub path: PathBuf,
    pub why: String,
}

fn pack_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.pack"))
}

fn idx_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.idx"))
}

/// The name stem of a pack's or index's file name, if it is one of ours.
pub(crate) fn stem<'a>(file_name: &'a str, ext: &str) -> Option<&'a str> {
    let stem = file_name.strip_suffix(ext)?.strip_suffix('.')?;
    (stem.len() == 32 && stem.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then_some(stem)
}

/// The entries of `dir`; `None` if it does not exist (an area that never
/// had a pack has no pack directory).
pub(crate) fn read_dir_if_present(dir: &Path) -> Result<Option<fs::ReadDir>, StoreError> {
    trust::check_entry(dir, Expect::Dir)?;
    match fs::read_dir(dir) {
        Ok(rd) => Ok(Some(rd)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::Io {
            path: dir.into(),
            source: e,
        }),
    }
}

/// Reads every index in `dir` (absent: no packs) and opens its pack. A
/// damaged index, or one that points past the end of its pack, leaves that
/// pack out and records it; anything untrusted still refuses the whole set.
pub(crate) fn load(dir: &Path, area: Area) -> Result<PackSet, StoreError> {
    let mut set = PackSet::default();
    let Some(rd) = read_dir_if_present(dir)? else {
        return Ok(set);
    };
    let mut names = Vec::new();
    for entry in rd {
        let entry = entry.map_err(StoreError::io(dir))?;
        if let Some(name) = entry.file_name().to_str().and_then(|n| stem(n, "idx")) {
            names.push(name.to_owned());
        }
    }
    // A fixed order, so that an object found in two packs (after a crash in
    // a repack) is always read from the same one.
    names.sort_unstable();
    // Every pack opened and every index measured first, so that the slots
    // are allocated once at their size: growing by doubling would hold up
    // to twice the index for a moment.
    let mut found = Vec::with_capacity(names.len());
    let mut capacity = 0usize;
    for name in names {
        let path = pack_path(dir, &name);
        let (file, meta) = match trust::open_meta(&path, Expect::File, false) {
            Ok(f) => f,
            // An index whose pack is gone: a removal cut short; clean_temp
            // removes it.
            Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                continue;
            }
            Err(e) => return Err(e),
        };
        let idx = trust::open_meta(&idx_path(dir, &name), Expect::File, false)?;
        capacity += entries_in(idx.1.len()).unwrap_or(0);
        found.push((name, path, file, meta.len(), idx));
    }
    let mut slots = Vec::with_capacity(capacity);
    for (name, path, file, len, (idx, idx_meta)) in found {
        let pack = u32::try_from(set.packs.len()).unwrap_or(u32::MAX);
        let before = slots.len();
        let read = match read_slots(&idx_path(dir, &name), idx, idx_meta.len(), pack, &mut slots) {
            Ok(()) => within(&slots[before..], len),
            Err(StoreError::BadPack { why, .. }) => Err(why),
            Err(e) => return Err(e),
        };
        match read {
            Ok(()) => set.packs.push(Pack { path, file, len }),
            Err(why) => {
                slots.truncate(before);
                set.damaged.push(DamagedPack {
                    name,
                    area,
                    path,
                    why,
                });
            }
        }
    }
    let (index, shadowed) = Index::build(slots)?;
    set.index = index;
    set.shadowed = shadowed;
    Ok(set)
}

/// How many entries an index of `len` bytes holds, if that is a whole number.
fn entries_in(len: u64) -> Option<usize> {
    let table = usize::try_from(len).ok()?.checked_sub(16 + 32)?;
    (table % ENTRY_LEN == 0).then_some(table / ENTRY_LEN)
}

/// Ok if every frame of `slots` lies inside a pack of `len` bytes (a
/// truncated pack is damaged as a whole).
fn within(slots: &[Slot], len: u64) -> Result<(), String> {
    let inside = |s: &Slot| {
        s.offset >= PACK_MAGIC.len() as u64
            && s.offset
                .checked_add(u64::from(s.len))
                .is_some_and(|end| end <= len)
    };
    if slots.iter().all(inside) {
        Ok(())
    } else {
        Err("the pack is shorter than its index says (truncated)".into())
    }
}

/// Appends the entries of the index at `path` (open as `file`, `len`
/// bytes) to `out` as slots of pack number `pack`.
/// On an error, `out` may hold some of them: the caller truncates it.
fn read_slots(
    path: &Path,
    file: File,
    len: u64,
    pack: u32,
    out: &mut Vec<Slot>,
) -> Result<(), StoreError> {
    each_entry(path, file, len, &mut |e| out.push(e.slot(pack)))
}

/// Hands `f` every entry of the index at `path` (open as `file`, `len`
/// bytes), read a block at a time rather than the whole file (the index of
/// a million objects is 42 MiB), then checks the checksum: on an error,
/// `f` may have had some entries, which the caller drops.
fn each_entry(
    path: &Path,
    mut file: File,
    len: u64,
    f: &mut dyn FnMut(IdxEntry),
) -> Result<(), StoreError> {
    let mut header = [0u8; 16];
    let count = entries_in(len).filter(|_| file.read_exact(&mut header).is_ok());
    let Some(count) = count.filter(|&c| {
        &header[..8] == IDX_MAGIC && u64::from_le_bytes(header_count(&header)) == c as u64
    }) else {
        // Not the shape of a good index: read whole, which says what is
        // wrong (or reads it, if it changed under us).
        read_whole(path)?.into_iter().for_each(f);
        return Ok(());
    };
    let mut sum = blake3::Hasher::new();
    sum.update(&header);
    /// Entries per read: about 64 KiB.
    const BLOCK: usize = 1489;
    let mut buf = vec![0u8; BLOCK * ENTRY_LEN];
    let mut left = count;
    while left > 0 {
        let n = left.min(BLOCK);
        let block = &mut buf[..n * ENTRY_LEN];
        file.read_exact(block).map_err(StoreError::io(path))?;
        sum.update(block);
        block
            .chunks_exact(ENTRY_LEN)
            .map(parse_entry)
            .for_each(&mut *f);
        left -= n;
    }
    let mut want = [0u8; 32];
    file.read_exact(&mut want).map_err(StoreError::io(path))?;
    if sum.finalize().as_bytes() != &want {
        return Err(StoreError::BadPack {
            path: path.into(),
            why: "its checksum does not match its content".into(),
        });
    }
    Ok(())
}

fn header_count(header: &[u8; 16]) -> [u8; 8] {
    let mut count = [0u8; 8];
    count.copy_from_slice(&header[8..16]);
    count
}

/// One entry of an index's table (`ENTRY_LEN` bytes).
fn parse_entry(e: &[u8]) -> IdxEntry {
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&e[..32]);
    let mut offset = [0u8; 8];
    offset.copy_from_slice(&e[32..40]);
    let mut len = [0u8; 4];
    len.copy_from_slice(&e[40..44]);
    IdxEntry {
        hash: Hash::from_bytes(hash),
        offset: u64::from_le_bytes(offset),
        len: u32::from_le_bytes(len),
    }
}

/// The entries of the index at `path`, checked against its checksum and
/// its length.
pub(crate) fn read_idx(path: &Path) -> Result<Vec<IdxEntry>, StoreError> {
    let (file, meta) = trust::open_meta(path, Expect::File, false)?;
    let mut out = Vec::with_capacity(entries_in(meta.len()).unwrap_or(0));
    each_entry(path, file, meta.len(), &mut |e| out.push(e))?;
    Ok(out)
}

/// [`read_idx`] of the whole file at once: for an index whose length or
/// header is wrong, to say what is wrong with it.
fn read_whole(path: &Path) -> Result<Vec<IdxEntry>, StoreError> {
    let mut bytes = Vec::new();
    trust::open(path, Expect::File, false)?
        .read_to_end(&mut bytes)
        .map_err(StoreError::io(path))?;
    let damaged = |why: &str| StoreError::BadPack {
        path: path.into(),
        why: why.to_owned(),
    };
    if bytes.len() < 16 + 32 || &bytes[..8] != IDX_MAGIC {
        return Err(damaged("not a sysgen pack index"));
    }
    let (body, sum) = bytes.split_at(bytes.len() - 32);
    if blake3::hash(body).as_bytes() != sum {
        return Err(damaged("its checksum does not match its content"));
    }
    let count = u64::from_le_bytes(body[8..16].try_into().unwrap_or_default());
    let table = &body[16..];
    if Some(table.len())
        != usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(ENTRY_LEN))
    {
        return Err(damaged("its entry count does not match its length"));
    }
    Ok(table.chunks_exact(ENTRY_LEN).map(parse_entry).collect())
}

/// Writes the index of `entries` (sorted here) to a new temp file with
/// the area's mode, fsynced if `sync`; returns it with the name a new pack
/// of these entries gets (the BLAKE3 of the index's bytes). Streamed
/// through a buffer: a million objects' index (44 MB) is not held whole
/// beside their entries.
pub(crate) fn write_idx(
    store: &Store,
    entries: &mut [IdxEntry],
    area: Area,
    sync: bool,
) -> Result<(String, TempFile), StoreError> {
    entries.sort_unstable_by_key(|e| e.hash);
    let (file, temp) = store.create_temp("idx")?;
    // `body` sums the index's content (its last 32 bytes), `all` the
    // whole file (the name).
    let mut body = blake3::Hasher::new();
    let mut all = blake3::Hasher::new();
    let mut out = BufWriter::with_capacity(WRITE_BUF, file);
    let written = (|| {
        let mut put = |bytes: &[u8]| {
            body.update(bytes);
            all.update(bytes);
            out.write_all(bytes)
        };
        put(IDX_MAGIC)?;
        put(&(entries.len() as u64).to_le_bytes())?;
        for e in entries.iter() {
            let mut row = [0u8; ENTRY_LEN];
            row[..32].copy_from_slice(e.hash.as_bytes());
            row[32..40].copy_from_slice(&e.offset.to_le_bytes());
            row[40..].copy_from_slice(&e.len.to_le_bytes());
            put(&row)?;
        }
        let sum = body.finalize();
        all.update(sum.as_bytes());
        out.write_all(sum.as_bytes())?;
        let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
        crate::finish_temp(&file, area, sync)
    })();
    written.map_err(StoreError::io(temp.path()))?;
    Ok((all.finalize().to_hex()[..32].to_owned(), temp))
}

/// A pack being written in `tmp/`.
pub(crate) struct PackWriter {
    out: BufWriter<File>,
    temp: TempFile,
    len: u64,
    entries: Vec<IdxEntry>,
}

/// A pack and its index, complete in `tmp/`, waiting to be renamed into place.
pub(crate) struct FinishedPack {
    name: String,
    pack: TempFile,
    idx: TempFile,
}

impl PackWriter {
    pub(crate) fn create(store: &Store) -> Result<PackWriter, StoreError> {
        let (file, temp) = store.create_temp("pack")?;
        let mut w = PackWriter {
            out: BufWriter::with_capacity(WRITE_BUF, file),
            temp,
            len: 0,
            entries: Vec::new(),
        };
        w.write(PACK_MAGIC)?;
        Ok(w)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.out
            .write_all(bytes)
            .map_err(StoreError::io(self.temp.path()))?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Objects appended so far.
    pub(crate) fn count(&self) -> usize {
        self.entries.len()
    }

    /// The hash of the object appended `i`th (from 0).
    pub(crate) fn hash_at(&self, i: u32) -> Option<&Hash> {
        self.entries.get(i as usize).map(|e| &e.hash)
    }

    /// The pack's temp file.
    pub(crate) fn path(&self) -> &Path {
        self.temp.path()
    }

    /// Appends one object's zstd frame.
    pub(crate) fn append(&mut self, hash: Hash, frame: &[u8]) -> Result<(), StoreError> {
        let Ok(len) = u32::try_from(frame.len()) else {
            // Callers pack only small objects; this keeps the index format honest.
            return Err(StoreError::Io {
                path: self.temp.path().into(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "object too large for a pack"),
            });
        };
        let offset = self.len;
        self.write(frame)?;
        self.entries.push(IdxEntry { hash, offset, len });
        Ok(())
    }

    /// Flushes the pack, gives it the area's mode, writes its index; with
    /// `sync`, fsyncs both (a caller that runs `syncfs` next passes false).
    /// `written` names the fault point between the two.
    pub(crate) fn finish(
        mut self,
        store: &Store,
        area: Area,
        sync: bool,
        written: &'static str,
    ) -> Result<FinishedPack, StoreError> {
        let path = self.temp.path().to_owned();
        let file = self.out.into_inner().map_err(|e| StoreError::Io {
            path: path.clone(),
            source: e.into_error(),
        })?;
        crate::finish_temp(&file, area, sync).map_err(StoreError::io(&path))?;
        store.fault.hit(written);
        let (name, idx) = write_idx(store, &mut self.entries, area, sync)?;
        Ok(FinishedPack {
            name,
            pack: self.temp,
            idx,
        })
    }
}

impl FinishedPack {
    /// Renames the pack, then its index, into `dir` (created if missing).
    /// Durable only once the caller syncs: `syncfs`, or `sync_dir` of `dir`.
    /// `renamed` names the fault point between the two renames. Returns the
    /// pack's path: packs are named by their content, so it may be that of
    /// a pack already there, which must then not be removed as an old one.
    pub(crate) fn install(
        self,
        store: &Store,
        dir: &Path,
        area: Area,
        renamed: &'static str,
    ) -> Result<PathBuf, StoreError> {
        crate::ensure_dir(dir, area.dir_mode(), false)?;
        let pack = pack_path(dir, &self.name);
        fs::rename(self.pack.path(), &pack).map_err(StoreError::io(&pack))?;
        self.pack.keep();
        store.fault.hit(renamed);
        let idx = idx_path(dir, &self.name);
        fs::rename(self.idx.path(), &idx).map_err(StoreError::io(&idx))?;
        self.idx.keep();
        Ok(pack)
    }
}

/// Every object whose frame in the pack at `path` still decompresses to
/// content matching its hash, whatever its index says: the frames are found
/// by walking the pack, and past a damaged one by the next zstd magic.
/// `f` gets each object's content.
pub(crate) fn salvage(
    path: &Path,
    f: &mut dyn FnMut(&[u8]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
    let mut bytes = Vec::new();
    trust::open(path, Expect::File, false)?
        .read_to_end(&mut bytes)
        .map_err(StoreError::io(path))?;
    let next = |from: usize| {
        bytes
            .get(from..)
            .and_then(|rest| rest.windows(4).position(|w| w == ZSTD_MAGIC))
            .map(|i| from + i)
    };
    let mut at = next(PACK_MAGIC.len());
    while let Some(pos) = at {
        let rest = &bytes[pos..];
        let Ok(n) = zstd::zstd_safe::find_frame_compressed_size(rest) else {
            at = next(pos + 1);
            continue;
        };
        let frame = &rest[..n.min(rest.len())];
        // Packed objects are small; a frame claiming more is not one of ours.
        if let Ok(content) = zstd::bulk::decompress(frame, 8 * crate::SMALL_FILE_LIMIT as usize) {
            f(&content)?;
            at = next(pos + n.max(1));
        } else {
            at = next(pos + 1);
        }
    }
    Ok(())
}

/// Reads the frame at `offset`, `len` bytes long, into `buf` (replacing
/// its content).
pub(crate) fn read_frame(
    pack: &Pack,
    offset: u64,
    len: u32,
    buf: &mut Vec<u8>,
) -> Result<(), StoreError> {
    buf.clear();
    buf.resize(len as usize, 0);
    // The path is cloned only on error: this runs once per object a switch reads.
    pack.file
        .read_exact_at(buf, offset)
        .map_err(|source| StoreError::Io {
            path: pack.path.clone(),
            source,
        })
}

/// Removes packs without an index and indexes without a pack from `dir`.
pub(crate) fn clean(dir: &Path) -> Result<(), StoreError> {
    let Some(rd) = read_dir_if_present(dir)? else {
        return Ok(());
    };
    for entry in rd {
        let entry = entry.map_err(StoreError::io(dir))?;
        let Some(file_name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let orphan = match (stem(&file_name, "pack"), stem(&file_name, "idx")) {
            (Some(name), _) => !idx_path(dir, name).exists(),
            (_, Some(name)) => !pack_path(dir, name).exists(),
            _ => false,
        };
        if orphan {
            crate::remove_if_present(&entry.path())?;
        }
    }
    Ok(())
}
