//! Content-addressed blob store: the place where sysgen keeps every file's
//! content, once, whatever path or generation refers to it.
//!
//! # Invariants
//!
//! - An object's key is the BLAKE3-256 of its raw content, never of the
//!   compressed form, so the key survives any change of codec or level.
//! - Objects are zstd frames (level 3) of the raw bytes.
//! - An object appears under its final name only complete and durable: it is
//!   written to a temp file, synced, renamed into place, and the directory is
//!   synced ([`Store::put_bytes`], [`Store::put_file`]); [`Batch`] does the same
//!   with one `syncfs` before and one after all its renames.
//! - A [`Batch`] appends its small objects to one pack file with an index
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
//! <dir>/objects/<2 hex>/<62 hex>   public objects: dirs 0755, files 0444
//! <dir>/objects/pack/<name>.{pack,idx}   public small objects of a batch
//! <dir>/secret/<2 hex>/<62 hex>    secrets and backups of host files: dirs 0700, files 0600
//! <dir>/secret/pack/<name>.{pack,idx}    secret small objects of a batch
//! <dir>/tmp/<pid>-<n>-<tag>        temp files of puts in progress: dir 0700, files 0600
//! ```
//!
//! The fan-out directories are created lazily, on the first object that needs
//! them. The two areas are independent: the same content may be in both.
//! Anything in `tmp/` is a leftover of an interrupted put and is removed by
//! [`Store::clean_temp`].

mod batch;
mod error;
mod hash;
mod pack;

use std::cell::Cell;
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};

pub use batch::{Batch, BatchOutcome};
pub use error::StoreError;
pub use hash::{Hash, HashKeySet, KeyHasher, hash_file};

use hash::STREAM_BUF;

/// zstd level for objects at rest: level 3 (zstd's default) compresses text well
/// at several hundred MB/s, which keeps ingest I/O bound rather than CPU bound.
const ZSTD_LEVEL: i32 = 3;

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
}

/// A compressed object written to `tmp/`, not yet in its final place.
pub(crate) struct Staged {
    pub(crate) temp: TempFile,
    pub(crate) stored_len: u64,
}

/// A temp file that removes itself unless [`TempFile::keep`] is called, so an
/// error on any path leaves no leftover behind.
pub(crate) struct TempFile {
    path: Option<PathBuf>,
}

impl TempFile {
    pub(crate) fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }

    /// Stops the file from being removed on drop: it has been renamed away.
    pub(crate) fn keep(mut self) {
        self.path = None;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            // Best effort: this runs on error paths that already report an
            // error, and clean_temp removes whatever is left.
            let _ = fs::remove_file(path);
        }
    }
}

/// What a file turned out to be once opened: small files are already in memory.
pub(crate) enum Prepared {
    Small(Vec<u8>),
    Large { file: File, hash: Hash, size: u64 },
}

impl Store {
    /// Opens the store at `dir`, creating `dir` and its layout if missing.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        DirBuilder::new()
            .recursive(true)
            .mode(PUBLIC_DIR_MODE)
            .create(dir)
            .map_err(StoreError::io(dir))?;
        let store = Store {
            dir: dir.to_owned(),
            objects: dir.join("objects"),
            secret: dir.join("secret"),
            tmp: dir.join("tmp"),
            fanout_ready: (0..512)
                .map(|_| std::sync::atomic::AtomicBool::new(false))
                .collect(),
            fanout_fds: (0..512).map(|_| std::sync::OnceLock::new()).collect(),
            packs: [RwLock::new(None), RwLock::new(None)],
        };
        ensure_dir(&store.objects, PUBLIC_DIR_MODE, false)?;
        // These two hold content only root may read, so their mode is enforced
        // even when they already exist.
        ensure_dir(&store.secret, PRIVATE_DIR_MODE, true)?;
        ensure_dir(&store.tmp, PRIVATE_DIR_MODE, true)?;
        Ok(store)
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
        if self.with_packs(area, |set| set.map.contains_key(hash))? {
            return Ok(true);
        }
        Ok(self.contains_loose(hash, area))
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
                // Only an open directory is kept: one absent now may be made later.
                match File::open(fan) {
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
        let (hash, size, staged) = match prepare_file(path)? {
            Prepared::Small(bytes) => {
                let hash = Hash::of(&bytes);
                if self.contains(&hash, area)? {
                    return Ok((hash, bytes.len() as u64));
                }
                let staged = self.stage_bytes(&hash, &bytes, area, true)?;
                (hash, bytes.len() as u64, staged)
            }
            Prepared::Large { file, hash, size } => {
                if self.contains(&hash, area)? {
                    return Ok((hash, size));
                }
                let staged = self.stage_file(&hash, size, file, path, area, true)?;
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

    /// Removes objects; those already absent are skipped.
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
                    match set.map.get(hash) {
                        Some(loc) => {
                            dead[loc.pack as usize].insert(*hash);
                        }
                        None => loose.push(*hash),
                    }
                }
                for (p, d) in set.packs.iter().zip(&dead).filter(|(_, d)| !d.is_empty()) {
                    changed = true;
                    pack::remove_from(self, &dir, p, d, area)?;
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
        }
        Ok(())
    }

    /// Every object hash in `area`, sorted. Names that are not object names
    /// are ignored.
    pub fn list(&self, area: Area) -> Result<Vec<Hash>, StoreError> {
        let area_dir = self.area_dir(area);
        let mut out = Vec::new();
        for fan in fs::read_dir(area_dir).map_err(StoreError::io(area_dir))? {
            let fan = fan.map_err(StoreError::io(area_dir))?;
            let Some(prefix) = fan.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if prefix.len() != 2 || !fan.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let fan_path = fan.path();
            for entry in fs::read_dir(&fan_path).map_err(StoreError::io(&fan_path))? {
                let entry = entry.map_err(StoreError::io(&fan_path))?;
                let Some(rest) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                let text = format!("{prefix}{rest}");
                // Only canonical (lowercase) names: anything else would not be
                // found again by object_path.
                if let Ok(hash) = Hash::from_hex(&text)
                    && hash.to_hex() == text
                {
                    out.push(hash);
                }
            }
        }
        self.with_packs(area, |set| out.extend(set.map.keys().copied()))?;
        out.sort_unstable();
        // An object may be both packed and loose after a crash.
        out.dedup();
        Ok(out)
    }

    /// Bytes the object takes on disk (compressed).
    pub fn disk_size(&self, hash: &Hash, area: Area) -> Result<u64, StoreError> {
        if let Some(loc) = self.with_packs(area, |set| set.map.get(hash).copied())? {
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
            Err(StoreError::Corrupt { .. }) => Ok(false),
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
            None => slot.insert(pack::load(&self.pack_dir(area))?),
        };
        Ok(f(set))
    }

    /// Drops what is known of the area's packs: they changed on disk.
    fn forget_packs(&self, area: Area) {
        *self.packs[area.slot()]
            .write()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Decompresses the object, passing each chunk to `sink` and hashing it.
    fn stream(
        &self,
        hash: &Hash,
        area: Area,
        sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<u64, StoreError> {
        let packed = self.with_packs(area, |set| {
            let loc = set.map.get(hash)?;
            let pack = &set.packs[loc.pack as usize];
            let mut fill = |buf: &mut Vec<u8>| pack::read_frame(pack, loc.offset, loc.len, buf);
            // Only small objects are packed, so one always fits in memory.
            Some(
                stream_small(&pack.path, &mut fill, hash, sink)
                    .and_then(|n| n.ok_or(StoreError::Corrupt { hash: *hash })),
            )
        })?;
        if let Some(result) = packed {
            return result;
        }
        let path = self.object_path(hash, area);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound { hash: *hash });
            }
            Err(e) => return Err(StoreError::Io { path, source: e }),
        };
        let stored_len = file.metadata().map_err(StoreError::io(&path))?.len();
        if stored_len <= SMALL_FILE_LIMIT {
            let mut fill = |buf: &mut Vec<u8>| {
                buf.clear();
                buf.reserve(stored_len as usize);
                // Through `Read for &mut File` wrapped in `take`:
                // `File::read_to_end` would ask the kernel for the size and
                // position again (a `statx` and an `lseek` per object) to
                // size a buffer already sized.
                (&mut file)
                    .take(SMALL_FILE_LIMIT + 1)
                    .read_to_end(buf)
                    .map(drop)
                    .map_err(StoreError::io(&path))
            };
            if let Some(n) = stream_small(&path, &mut fill, hash, sink)? {
                return Ok(n);
            }
            file.rewind().map_err(StoreError::io(&path))?;
        }
        // zstd reports a damaged frame and a failed read alike as io::Error;
        // this flag tells them apart so a disk error is not called corruption.
        let read_failed = Cell::new(false);
        let source = TrackedReader {
            inner: file,
            failed: &read_failed,
        };
        let mut decoder =
            zstd::stream::read::Decoder::new(source).map_err(StoreError::io(&path))?;
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; STREAM_BUF];
        let mut total = 0u64;
        loop {
            let n = match decoder.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if read_failed.get() => return Err(StoreError::Io { path, source: e }),
                Err(_) => return Err(StoreError::Corrupt { hash: *hash }),
            };
            hasher.update(&buf[..n]);
            sink(&buf[..n]).map_err(|source| StoreError::Output {
                hash: *hash,
                source,
            })?;
            total += n as u64;
        }
        if Hash::from(hasher.finalize()) != *hash {
            return Err(StoreError::Corrupt { hash: *hash });
        }
        Ok(total)
    }

    /// Creates a new, uniquely named temp file (0600) in `tmp/`; `tag`
    /// ends its name, to tell what it is.
    fn create_temp(&self, tag: &str) -> Result<(File, TempFile), StoreError> {
        let pid = std::process::id();
        loop {
            let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = self.tmp.join(format!("{pid}-{n}-{tag}"));
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(PRIVATE_FILE_MODE)
                .open(&path)
            {
                Ok(file) => return Ok((file, TempFile { path: Some(path) })),
                // A leftover of an earlier process that had the same pid:
                // take the next number.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(StoreError::Io { path, source: e }),
            }
        }
    }

    /// Compresses `bytes` into a temp file with the final mode of `area`;
    /// fsyncs it if `sync`.
    pub(crate) fn stage_bytes(
        &self,
        hash: &Hash,
        bytes: &[u8],
        area: Area,
        sync: bool,
    ) -> Result<Staged, StoreError> {
        let compressed = compress(bytes).map_err(StoreError::io(&self.tmp))?;
        let (mut file, temp) = self.create_temp(&hash.to_hex()[..16])?;
        let io_err = StoreError::io(temp.path());
        let result = (|| {
            file.write_all(&compressed)?;
            finish_temp(&file, area, sync)
        })();
        result.map_err(io_err)?;
        Ok(Staged {
            temp,
            stored_len: compressed.len() as u64,
        })
    }

    /// Compresses the open file `file` (from its start) into a temp file,
    /// hashing again as it reads: if the content is not the `hash`/`size`
    /// found by the first pass, the file changed in between and nothing is
    /// stored.
    pub(crate) fn stage_file(
        &self,
        hash: &Hash,
        size: u64,
        mut file: File,
        path: &Path,
        area: Area,
        sync: bool,
    ) -> Result<Staged, StoreError> {
        file.rewind().map_err(StoreError::io(path))?;
        let (out, temp) = self.create_temp(&hash.to_hex()[..16])?;
        let mut source = HashingReader {
            inner: file,
            hasher: blake3::Hasher::new(),
            size: 0,
            failed: false,
        };
        let temp_err = StoreError::io(temp.path());
        let copied = (|| {
            let mut encoder = zstd::stream::write::Encoder::new(out, ZSTD_LEVEL)?;
            encoder.set_pledged_src_size(Some(size))?;
            io::copy(&mut source, &mut encoder)?;
            encoder.finish()
        })();
        let out = match copied {
            Ok(out) => out,
            // Read errors belong to the source file, the rest to the temp file;
            // a size different from the pledged one means the file changed.
            Err(e) if source.failed => {
                return Err(StoreError::Io {
                    path: path.into(),
                    source: e,
                });
            }
            Err(_) if source.size != size => return Err(StoreError::Changed { path: path.into() }),
            Err(e) => return Err(temp_err(e)),
        };
        if source.size != size || Hash::from(source.hasher.finalize()) != *hash {
            return Err(StoreError::Changed { path: path.into() });
        }
        let stored_len = out.metadata().map_err(StoreError::io(temp.path()))?.len();
        finish_temp(&out, area, sync).map_err(StoreError::io(temp.path()))?;
        Ok(Staged { temp, stored_len })
    }

    /// Renames a staged temp file to its final name, creating the fan-out
    /// directory if needed; if `durable`, fsyncs the directories the rename
    /// (and a new fan-out directory) changed.
    pub(crate) fn install(
        &self,
        temp: TempFile,
        hash: &Hash,
        area: Area,
        durable: bool,
    ) -> Result<(), StoreError> {
        let dest = self.object_path(hash, area);
        let fan_dir = dest.parent().unwrap_or(&self.dir).to_owned();
        let slot = fanout_slot(hash, area);
        let created = if self.fanout_ready[slot].load(Ordering::Relaxed) {
            false
        } else {
            let created = ensure_dir(&fan_dir, area.dir_mode(), false)?;
            self.fanout_ready[slot].store(true, Ordering::Relaxed);
            created
        };
        fs::rename(temp.path(), &dest).map_err(StoreError::io(&dest))?;
        temp.keep();
        if durable {
            sync_dir(&fan_dir)?;
            if created {
                sync_dir(self.area_dir(area))?;
            }
        }
        Ok(())
    }

    /// Flushes everything written to the store's filesystem (one syscall for
    /// any number of files).
    pub(crate) fn syncfs(&self) -> Result<(), StoreError> {
        let dir = File::open(&self.dir).map_err(StoreError::io(&self.dir))?;
        nix::unistd::syncfs(&dir).map_err(|e| StoreError::Io {
            path: self.dir.clone(),
            source: e.into(),
        })
    }
}

/// Opens `path` and reads it whole if small, or hashes it in a streaming pass
/// if large (keeping it open for the compress pass).
pub(crate) fn prepare_file(path: &Path) -> Result<Prepared, StoreError> {
    let mut file = File::open(path).map_err(StoreError::io(path))?;
    let len = file.metadata().map_err(StoreError::io(path))?.len();
    if len <= SMALL_FILE_LIMIT {
        let mut bytes = Vec::with_capacity(len as usize);
        file.read_to_end(&mut bytes).map_err(StoreError::io(path))?;
        Ok(Prepared::Small(bytes))
    } else {
        let (hash, size) = hash::hash_reader(&mut file).map_err(StoreError::io(path))?;
        Ok(Prepared::Large { file, hash, size })
    }
}

thread_local! {
    // A zstd context costs more to set up than compressing a small file does;
    // ingest stores many small files per thread, so each thread keeps one.
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// The largest content that [`stream_small`] decompresses in memory;
/// small stored frames of highly compressible content can be far larger.
const SMALL_OBJECT_PLAIN_LIMIT: u64 = 8 * SMALL_FILE_LIMIT;

/// Per-thread state for reading small objects: a decompression context and
/// two buffers that keep their capacity from one object to the next.
#[derive(Default)]
struct SmallBufs {
    decompressor: Option<zstd::bulk::Decompressor<'static>>,
    compressed: Vec<u8>,
    plain: Vec<u8>,
}

thread_local! {
    static SMALL_BUFS: std::cell::RefCell<SmallBufs> = std::cell::RefCell::new(SmallBufs::default());
}

/// [`Store::stream`] for a small object: `fill` reads its frame (from a
/// file of its own or a pack, `from`), then one decompression with
/// the thread's reused context. Most objects are small config files, and
/// setting up a streaming decoder (its context and buffers) costs more than
/// decompressing one of them. `None`: the content is too large to hold in
/// memory (a small frame of very compressible data); stream it instead.
fn stream_small(
    from: &Path,
    fill: &mut dyn FnMut(&mut Vec<u8>) -> Result<(), StoreError>,
    hash: &Hash,
    sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> Result<Option<u64>, StoreError> {
    SMALL_BUFS.with(|cell| {
        let mut bufs = cell.borrow_mut();
        let SmallBufs {
            decompressor,
            compressed,
            plain,
        } = &mut *bufs;
        fill(compressed)?;
        // Every object is written with its content size in the frame header
        // (bulk compression records it, streaming pledges it).
        let size = match zstd::zstd_safe::get_frame_content_size(compressed) {
            Ok(Some(n)) if n <= SMALL_OBJECT_PLAIN_LIMIT => n as usize,
            Ok(_) => return Ok(None),
            Err(_) => return Err(StoreError::Corrupt { hash: *hash }),
        };
        let d = match decompressor {
            Some(d) => d,
            None => {
                decompressor.insert(zstd::bulk::Decompressor::new().map_err(StoreError::io(from))?)
            }
        };
        plain.clear();
        plain.reserve(size);
        match d.decompress_to_buffer(compressed.as_slice(), plain) {
            Ok(n) if n == size => {}
            _ => return Err(StoreError::Corrupt { hash: *hash }),
        }
        if Hash::of(plain) != *hash {
            return Err(StoreError::Corrupt { hash: *hash });
        }
        sink(plain).map_err(|source| StoreError::Output {
            hash: *hash,
            source,
        })?;
        let n = plain.len() as u64;
        // Keep the buffers of an ordinary small object, not of the largest one seen.
        plain.shrink_to(SMALL_FILE_LIMIT as usize);
        Ok(Some(n))
    })
}

fn compress(bytes: &[u8]) -> io::Result<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let compressor = match slot.as_mut() {
            Some(c) => c,
            None => slot.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL)?),
        };
        compressor.compress(bytes)
    })
}

/// Sets the final mode (explicitly: the umask must not matter) and syncs if asked.
fn finish_temp(file: &File, area: Area, sync: bool) -> io::Result<()> {
    file.set_permissions(Permissions::from_mode(area.file_mode()))?;
    if sync {
        file.sync_all()?;
    }
    Ok(())
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
    if created || enforce {
        let meta = fs::symlink_metadata(path).map_err(StoreError::io(path))?;
        if !meta.is_dir() {
            return Err(StoreError::Io {
                path: path.into(),
                source: io::Error::new(io::ErrorKind::AlreadyExists, "not a directory"),
            });
        }
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

/// A reader that remembers whether the underlying read failed.
struct TrackedReader<'a, R> {
    inner: R,
    failed: &'a Cell<bool>,
}

impl<R: Read> Read for TrackedReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            if e.kind() != io::ErrorKind::Interrupted {
                self.failed.set(true);
            }
        })
    }
}

/// A reader that hashes and counts what passes through it.
struct HashingReader<R> {
    inner: R,
    hasher: blake3::Hasher,
    size: u64,
    failed: bool,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.hasher.update(&buf[..n]);
                self.size += n as u64;
                Ok(n)
            }
            Err(e) => {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.failed = true;
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests;
