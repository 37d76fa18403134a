//! Content-addressed blob store: the place where sysgen keeps every file's
//! content, once, whatever path or generation refers to it.
//!
//! # Invariants
//!
//! - An object's key is the BLAKE3-256 of its raw content, never of the
//!   compressed form, so the key survives any change of codec or level.
//! - Objects are zstd frames (level 1) of the raw bytes; content zstd cannot
//!   shrink is framed in raw blocks, uncompressed (see the `raw` module).
//!   A store in the plain format keeps every object as a file of exactly
//!   its raw bytes instead, to be cloned into a root (see the `format`
//!   module); the format is chosen once, when the store is made.
//! - An object appears under its final name only complete and durable: it is
//!   written to a temp file, synced, renamed into place, and the directory is
//!   synced ([`Store::put_bytes`], [`Store::put_file`]); [`Batch`] does the same
//!   with one `syncfs` before and one after all its renames.
//! - A [`Batch`] of a zstd store appends its small objects to one pack file with an index
//!   (see the `pack` module); an object is in a pack exactly when an index
//!   names it. Large objects, and one-off puts, are files of their own.
//! - Every read is verified against the key ([`StoreError::Corrupt`] otherwise).
//! - Content is never written twice: a put of content already present is a no-op.
//! - Permissions are set with `fchmod`/`chmod`, so they never depend on the umask.
//!
//! The store knows nothing of paths in a managed root; callers map paths to
//! hashes. The library never prints, reads the environment or the clock.
//!
//! # Layout on disk
//!
//! ```text
//! <dir>/format                     `plain`, or absent: zstd (see `format`)
//! <dir>/objects/<2 hex>/<62 hex>   public objects: dirs 0755, files 0444
//! <dir>/objects/pack/<name>.{pack,idx}   public small objects of a batch
//! <dir>/secret/<2 hex>/<62 hex>    secrets and backups of host files: dirs 0700, files 0600
//! <dir>/secret/pack/<name>.{pack,idx}    secret small objects of a batch
//! <dir>/tmp/<pid>-<n>-<tag>        temp files of puts in progress: dir 0700, files 0600
//! <dir>/damaged/<area>-<name>.{pack,idx}  damaged packs moved aside (see `damaged`)
//! ```
//!
//! The fan-out directories are created lazily, on the first object that needs
//! them. The two areas are independent: the same content may be in both.
//! Anything in `tmp/` is a leftover of an interrupted put and is removed by
//! [`Store::clean_temp`].

mod batch;
mod clone;
mod damaged;
mod error;
pub mod fault;
mod format;
mod hash;
mod index;
mod merge;
mod pack;
mod raw;
mod read;
mod repack;
mod sweep;
pub mod trust;
mod write;

use std::fs::{self, DirBuilder, File, Permissions};
use std::io::{self, Write};
use std::os::fd::BorrowedFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{PoisonError, RwLock};

pub use batch::{Batch, BatchOutcome};
pub use clone::CLONE_MIN;
pub use damaged::{Health, SetAside};
pub use error::StoreError;
pub use fault::FaultPoint;
pub use format::Format;
pub use hash::{Hash, HashKeySet, KeyHasher, hash_file};
pub use pack::DamagedPack;
pub(crate) use write::{Prepared, Staged, TempFile, encode, finish_temp, prepare_file, unchanged};

/// zstd level for objects at rest: -3, one of zstd's fast levels (its
/// `--fast=3`), which also leaves literals without Huffman coding. zstd
/// is the largest part of a first build's CPU (39% at 10k files, level 1);
/// at -3 it takes about half of level 1's time for a store about a fifth
/// larger on text (docs/decisions.md, "Issue 14, session 11"). Level 1 had
/// replaced zstd's default 3 for the same reason. Readers do not care: a
/// fast level's frame is an ordinary frame, and the level is not recorded.
const ZSTD_LEVEL: i32 = -3;

/// The frame in which the store keeps `content` (packed or in a file of its
/// own): what to look for in its files.
pub fn frame_of(content: &[u8]) -> io::Result<Vec<u8>> {
    encode(content)
}

/// Files up to this size are read whole (one read, hash and compress from
/// memory); larger ones are streamed so memory does not grow with file size.
pub const SMALL_FILE_LIMIT: u64 = 1024 * 1024;

const PUBLIC_DIR_MODE: u32 = 0o755;
const PUBLIC_FILE_MODE: u32 = 0o444;
const PRIVATE_DIR_MODE: u32 = 0o700;
const PRIVATE_FILE_MODE: u32 = 0o600;

/// Makes temp names unique across every `Store` and `Batch` in this process;
/// the pid makes them unique across processes.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Which half of the store an object lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Area {
    /// Objects anyone may read (files 0444).
    Public,
    /// Secrets, and backups of files sysgen found on the host: only root may
    /// read them (directories 0700, files 0600).
    Secret,
}

impl Area {
    fn slot(self) -> usize {
        match self {
            Area::Public => 0,
            Area::Secret => 1,
        }
    }

    fn dir_mode(self) -> u32 {
        match self {
            Area::Public => PUBLIC_DIR_MODE,
            Area::Secret => PRIVATE_DIR_MODE,
        }
    }

    fn file_mode(self) -> u32 {
        match self {
            Area::Public => PUBLIC_FILE_MODE,
            Area::Secret => PRIVATE_FILE_MODE,
        }
    }
}

/// A content-addressed store rooted at one directory. `Send + Sync`: share it
/// by reference between threads.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    objects: PathBuf,
    secret: PathBuf,
    tmp: PathBuf,
    /// Fan-out directories known to exist (256 per area), so that a batch of
    /// 100k objects does not try 100k mkdirs. The store never removes them.
    fanout_ready: Vec<std::sync::atomic::AtomicBool>,
    /// Open fan-out directories, for [`Store::contains`]: a lookup relative
    /// to one is a single name, not the whole path to the store again.
    fanout_fds: Vec<std::sync::OnceLock<File>>,
    /// Each area's packs, read on first use ([`pack::load`]) and dropped
    /// when a batch or gc changes them.
    packs: [RwLock<Option<pack::PackSet>>; 2],
    /// Where a crash test makes this process abort (none by default).
    fault: FaultPoint,
    /// How objects are kept (see the `format` module); fixed at creation.
    format: Format,
}

impl Store {
    /// Opens the store at `dir`, creating `dir` and its layout if missing.
    /// A store made here is kept in zstd ([`Format::Zstd`]).
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_inner(dir, None)
    }

    /// [`Store::open`] for the store of a root: a store made here is
    /// [`Format::Plain`] when a file of it can be cloned onto a file made in
    /// the directory `root` (see the `format` module), zstd otherwise. An
    /// existing store keeps its format.
    pub fn open_for_root(dir: &Path, root: BorrowedFd<'_>) -> Result<Store, StoreError> {
        Store::open_inner(dir, Some(root))
    }

    fn open_inner(dir: &Path, root: Option<BorrowedFd<'_>>) -> Result<Store, StoreError> {
        DirBuilder::new()
            .recursive(true)
            .mode(PUBLIC_DIR_MODE)
            .create(dir)
            .map_err(StoreError::io(dir))?;
        // Never through a symlink: `<state>/store` pointing outside would put
        // objects there, and clean_temp would empty the outside `tmp/`.
        trust::open(dir, trust::Expect::Dir, false)?;
        let mut store = Store::unopened(dir);
        // These two hold content only root may read, so their mode is enforced
        // even when they already exist.
        ensure_dir(&store.secret, PRIVATE_DIR_MODE, true)?;
        ensure_dir(&store.tmp, PRIVATE_DIR_MODE, true)?;
        store.format = store.choose_format(root)?;
        ensure_dir(&store.objects, PUBLIC_DIR_MODE, false)?;
        Ok(store)
    }

    /// Opens the store at `dir` for reading only: creates and changes
    /// nothing. Parts of its layout that are gone (a deleted store) read as
    /// empty, so that every object is reported missing one by one rather
    /// than the store refused as a whole; what is there must be trusted.
    pub fn open_existing(dir: &Path) -> Result<Store, StoreError> {
        let mut store = Store::unopened(dir);
        for d in [dir, &store.objects, &store.secret, &store.tmp] {
            match trust::open(d, trust::Expect::Dir, false) {
                Ok(_) => {}
                Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        store.format = format::read(dir)?.unwrap_or(Format::Zstd);
        Ok(store)
    }

    fn unopened(dir: &Path) -> Store {
        Store {
            dir: dir.to_owned(),
            objects: dir.join("objects"),
            secret: dir.join("secret"),
            tmp: dir.join("tmp"),
            fanout_ready: (0..512)
                .map(|_| std::sync::atomic::AtomicBool::new(false))
                .collect(),
            fanout_fds: (0..512).map(|_| std::sync::OnceLock::new()).collect(),
            packs: [RwLock::new(None), RwLock::new(None)],
            fault: FaultPoint::default(),
            format: Format::Zstd,
        }
    }

    /// How this store keeps its objects.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Makes the process abort at `fault` (see the `fault` module).
    pub fn set_fault_point(&mut self, fault: FaultPoint) {
        self.fault = fault;
    }

    /// The fault point set, for the steps outside the store that have some
    /// (the dataset steps).
    pub fn fault_point(&self) -> FaultPoint {
        self.fault
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn area_dir(&self, area: Area) -> &Path {
        match area {
            Area::Public => &self.objects,
            Area::Secret => &self.secret,
        }
    }

    /// Where the object `hash` lives in `area` (whether or not it exists).
    pub fn object_path(&self, hash: &Hash, area: Area) -> PathBuf {
        let hex = hash.to_hex();
        self.area_dir(area).join(&hex[..2]).join(&hex[2..])
    }

    /// True if the object is stored (in a pack or as a file of its own).
    pub fn contains(&self, hash: &Hash, area: Area) -> Result<bool, StoreError> {
        Ok(self.contains_packed(hash, area)? || self.contains_loose(hash, area))
    }

    fn contains_packed(&self, hash: &Hash, area: Area) -> Result<bool, StoreError> {
        self.with_packs(area, |set| set.index.contains(hash))
    }

    fn contains_loose(&self, hash: &Hash, area: Area) -> bool {
        let slot = fanout_slot(hash, area);
        let dir = match self.fanout_fds[slot].get() {
            Some(d) => d,
            None => {
                let path = self.object_path(hash, area);
                let Some(fan) = path.parent() else {
                    return false;
                };
                // Only an open directory is kept: one absent now may be made
                // later. A symlink is not followed: the object counts as
                // absent, and storing it refuses the fan-out (ensure_dir).
                match trust::open(fan, trust::Expect::Dir, false) {
                    Ok(d) => self.fanout_fds[slot].get_or_init(|| d),
                    Err(_) => return false,
                }
            }
        };
        let hex = hash.to_hex();
        nix::sys::stat::fstatat(dir, &hex[2..], nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).is_ok_and(
            |st| {
                st.st_mode & nix::sys::stat::SFlag::S_IFMT.bits()
                    == nix::sys::stat::SFlag::S_IFREG.bits()
            },
        )
    }

    /// Stores `bytes` durably right now (temp, fsync, rename, fsync dir). For
    /// one-offs; use [`Store::batch`] for many objects.
    pub fn put_bytes(&self, bytes: &[u8], area: Area) -> Result<Hash, StoreError> {
        let hash = Hash::of(bytes);
        if !self.contains(&hash, area)? {
            let staged = self.stage_bytes(&hash, bytes, area, true)?;
            self.install(staged.temp, &hash, area, true)?;
        }
        Ok(hash)
    }

    /// Stores the content of the regular file at `path` (read from the host
    /// filesystem) durably right now; returns its hash and size.
    pub fn put_file(&self, path: &Path, area: Area) -> Result<(Hash, u64), StoreError> {
        let (hash, size, staged) = match prepare_file(path, None)? {
            Prepared::Small(bytes, _) => {
                let hash = Hash::of(&bytes);
                if self.contains(&hash, area)? {
                    return Ok((hash, bytes.len() as u64));
                }
                let staged = self.stage_bytes(&hash, &bytes, area, true)?;
                (hash, bytes.len() as u64, staged)
            }
            Prepared::Large { mut file, .. } => {
                // Hashed first: a one-off put of content already stored
                // (a copy saved again) then writes and syncs nothing.
                let (hash, size) = hash::hash_reader(&mut file).map_err(StoreError::io(path))?;
                if self.contains(&hash, area)? {
                    return Ok((hash, size));
                }
                let staged = self.stage_file(&hash, size, &file, path, area, true)?;
                (hash, size, staged)
            }
        };
        self.install(staged.temp, &hash, area, true)?;
        Ok((hash, size))
    }

    /// Starts a batch of bulk writes made durable together by [`Batch::commit`].
    pub fn batch(&self) -> Batch<'_> {
        Batch::new(self)
    }

    /// The whole object, verified against `hash`.
    pub fn read(&self, hash: &Hash, area: Area) -> Result<Vec<u8>, StoreError> {
        let mut out = Vec::new();
        self.stream(hash, area, &mut |chunk| {
            out.extend_from_slice(chunk);
            Ok(())
        })?;
        Ok(out)
    }

    /// Streams the decompressed object into `out`, hashing as it goes; returns
    /// the byte count. A hash mismatch is reported as [`StoreError::Corrupt`]
    /// only after the bytes were written (they cannot be known bad earlier), so
    /// `out` must be a temp file that the caller discards on error.
    pub fn copy_to(&self, hash: &Hash, area: Area, out: &mut dyn Write) -> Result<u64, StoreError> {
        self.stream(hash, area, &mut |chunk| out.write_all(chunk))
    }

    /// Removes objects; those already absent are skipped. Then merges the
    /// oldest small packs if there are too many (see the `merge` module).
    ///
    /// A removed file's directory is not synced: an object that comes back
    /// after a crash is still valid content, and the next gc removes it
    /// again. Packed objects leave their pack's index durably before their
    /// bytes are freed (see the `pack` module).
    pub fn remove_all(&self, objects: &[(Hash, Area)]) -> Result<(), StoreError> {
        for area in [Area::Public, Area::Secret] {
            let dir = self.pack_dir(area);
            let mut changed = false;
            let loose = self.with_packs(area, |set| {
                let mut dead = vec![HashKeySet::default(); set.packs.len()];
                let mut loose = Vec::new();
                for (hash, _) in objects.iter().filter(|(_, a)| *a == area) {
                    match set.index.get(hash) {
                        Some(loc) => {
                            dead[loc.pack as usize].insert(*hash);
                        }
                        None => loose.push(*hash),
                    }
                }
                // Second copies left by a copy or merge cut short: never
                // read, so they go too.
                for (pack, hash) in &set.shadowed {
                    dead[*pack as usize].insert(*hash);
                }
                if dead.iter().any(|d| !d.is_empty()) {
                    changed = true;
                    repack::remove(self, &dir, area, &set.packs, &dead)?;
                }
                Ok::<_, StoreError>(loose)
            });
            // Whatever happened, the packs on disk are not those loaded.
            if changed {
                self.forget_packs(area);
            }
            for hash in loose?? {
                remove_if_present(&self.object_path(&hash, area))?;
            }
            if !merge::may_merge(&dir)? {
                continue;
            }
            let merged =
                self.with_packs(area, |set| merge::merge_small(self, &dir, area, &set.packs));
            // Merged, or failed partway: the packs on disk changed.
            if !matches!(merged, Ok(Ok(false))) {
                self.forget_packs(area);
            }
            merged??;
        }
        Ok(())
    }

    /// Every object hash in `area`, sorted. Names that are not object names
    /// are ignored.
    pub fn list(&self, area: Area) -> Result<Vec<Hash>, StoreError> {
        let mut out = self.list_loose(area)?;
        self.with_packs(area, |set| out.extend(set.index.iter().map(|(h, _)| *h)))?;
        out.sort_unstable();
        // An object may be both packed and loose after a crash.
        out.dedup();
        Ok(out)
    }

    /// Bytes the object takes on disk (compressed).
    pub fn disk_size(&self, hash: &Hash, area: Area) -> Result<u64, StoreError> {
        if let Some(loc) = self.with_packs(area, |set| set.index.get(hash))? {
            return Ok(u64::from(loc.len));
        }
        let path = self.object_path(hash, area);
        match fs::symlink_metadata(&path) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(StoreError::NotFound { hash: *hash })
            }
            Err(e) => Err(StoreError::Io { path, source: e }),
        }
    }

    /// Decompresses and rehashes one object: Ok(false) if it is corrupt.
    pub fn check(&self, hash: &Hash, area: Area) -> Result<bool, StoreError> {
        match self.stream(hash, area, &mut |_| Ok(())) {
            Ok(_) => Ok(true),
            Err(StoreError::Corrupt { .. } | StoreError::CorruptInPack { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes leftovers of interrupted puts and batches from `tmp/`.
    ///
    /// Call it only while no put or batch is in progress on this store, in
    /// this process or another (sysgen holds its lock when it does): it
    /// removes every temp file, including those of live batches.
    pub fn clean_temp(&self) -> Result<(), StoreError> {
        for entry in fs::read_dir(&self.tmp).map_err(StoreError::io(&self.tmp))? {
            let entry = entry.map_err(StoreError::io(&self.tmp))?;
            let path = entry.path();
            let result = if entry.file_type().is_ok_and(|t| t.is_dir()) {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            match result {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::Io { path, source: e }),
            }
        }
        for area in [Area::Public, Area::Secret] {
            pack::clean(&self.pack_dir(area))?;
            self.forget_packs(area);
        }
        Ok(())
    }

    /// The directory of an area's packs.
    fn pack_dir(&self, area: Area) -> PathBuf {
        self.area_dir(area).join("pack")
    }

    /// Runs `f` on the area's packs, reading them first if needed.
    fn with_packs<R>(
        &self,
        area: Area,
        f: impl FnOnce(&pack::PackSet) -> R,
    ) -> Result<R, StoreError> {
        let lock = &self.packs[area.slot()];
        // Nothing can leave a half-built set behind (it is replaced whole),
        // so a poisoned lock still guards a consistent value.
        if let Some(set) = &*lock.read().unwrap_or_else(PoisonError::into_inner) {
            return Ok(f(set));
        }
        let mut slot = lock.write().unwrap_or_else(PoisonError::into_inner);
        let set = match &mut *slot {
            Some(set) => set,
            None => slot.insert(pack::load(&self.pack_dir(area), area)?),
        };
        Ok(f(set))
    }

    /// Drops what is known of the area's packs: they changed on disk.
    fn forget_packs(&self, area: Area) {
        *self.packs[area.slot()]
            .write()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }
}

/// Creates `path` with `mode` if missing (returns whether it did); with
/// `enforce`, also corrects the mode of an existing directory.
fn ensure_dir(path: &Path, mode: u32, enforce: bool) -> Result<bool, StoreError> {
    let created = match DirBuilder::new().mode(mode).create(path) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
        Err(e) => {
            return Err(StoreError::Io {
                path: path.into(),
                source: e,
            });
        }
    };
    // Whether made now or found: a directory of ours, never a symlink.
    trust::check_entry(path, trust::Expect::Dir)?;
    if created || enforce {
        let meta = fs::symlink_metadata(path).map_err(StoreError::io(path))?;
        if meta.permissions().mode() & 0o7777 != mode {
            fs::set_permissions(path, Permissions::from_mode(mode))
                .map_err(StoreError::io(path))?;
        }
    }
    Ok(created)
}

/// The index of the fan-out directory of `hash` in `area`, in the store's
/// per-fan-out tables (256 per area).
fn fanout_slot(hash: &Hash, area: Area) -> usize {
    area.slot() * 256 + usize::from(hash.as_bytes()[0])
}

/// Removes the file at `path`; Ok if it is already gone.
fn remove_if_present(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::Io {
            path: path.into(),
            source: e,
        }),
    }
}

fn sync_dir(path: &Path) -> Result<(), StoreError> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io(path))
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_raw;
