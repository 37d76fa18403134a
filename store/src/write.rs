//! Writing objects: temp files in `tmp/`, compressed, renamed into place.

use std::borrow::Cow;
use std::cell::Cell;
use std::fs::{self, File, Metadata, OpenOptions, Permissions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use crate::{
    Area, Format, Hash, PRIVATE_FILE_MODE, SMALL_FILE_LIMIT, Store, StoreError, TEMP_COUNTER,
    ZSTD_LEVEL, ensure_dir, fanout_slot, raw, sync_dir,
};

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
    /// The bytes, and the file still open (for a stat of what was read).
    Small(Vec<u8>, File),
    /// Too large to hold: the file, at its start, and its `fstat` then.
    Large { file: File, before: Metadata },
}

impl Store {
    /// Creates a new, uniquely named temp file (0600) in `tmp/`; `tag`
    /// ends its name, to tell what it is.
    pub(crate) fn create_temp(&self, tag: &str) -> Result<(File, TempFile), StoreError> {
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
        // A plain store keeps the bytes as they are (see the `format` module).
        let compressed = match self.format {
            Format::Zstd => Cow::Owned(encode(bytes).map_err(StoreError::io(&self.tmp))?),
            Format::Plain => Cow::Borrowed(bytes),
        };
        let (mut file, temp) = self.create_temp(&hash.to_hex()[..16])?;
        let result = (|| {
            file.write_all(&compressed)?;
            finish_temp(&file, area, sync)
        })();
        result.map_err(|source| StoreError::Write {
            path: temp.path().into(),
            source,
        })?;
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
        mut file: &File,
        path: &Path,
        area: Area,
        sync: bool,
    ) -> Result<Staged, StoreError> {
        file.rewind().map_err(StoreError::io(path))?;
        let (read, staged) = self.stage_stream(file, size, path, area, sync)?;
        if read != *hash {
            // Dropping `staged` removes its temp file.
            return Err(StoreError::Changed { path: path.into() });
        }
        Ok(staged)
    }

    /// Compresses the `size` bytes of the open file `file`, from its
    /// position, into a temp file, hashing them as it reads: the content is
    /// read once. Returns their hash. Content that is not `size` bytes long
    /// means the file changed while read, and nothing is stored.
    pub(crate) fn stage_stream(
        &self,
        file: &File,
        size: u64,
        path: &Path,
        area: Area,
        sync: bool,
    ) -> Result<(Hash, Staged), StoreError> {
        // Samples decide how the whole is stored (see the `raw` module);
        // a plain store keeps every object as it is.
        let as_raw = self.format == Format::Plain
            || sampled_raw(file, size).map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => StoreError::Changed { path: path.into() },
                _ => StoreError::Io {
                    path: path.into(),
                    source: e,
                },
            })?;
        let (out, temp) = self.create_temp("stream")?;
        // At most a byte more than announced is read: enough to tell that
        // the file grew, without following a file that keeps growing.
        let mut source = HashingReader {
            inner: file.take(size.saturating_add(1)),
            hasher: blake3::Hasher::new(),
            size: 0,
            failed: false,
        };
        // zstd reports a failed write and a short source alike: this flag
        // tells a full disk from a file that changed.
        let write_failed = Cell::new(false);
        let sink = TrackedWriter {
            inner: out,
            failed: &write_failed,
        };
        let copied = (|| {
            if self.format == Format::Plain {
                let mut sink = sink;
                pump(&mut source, &mut sink)?;
                return Ok(sink);
            }
            if as_raw {
                let mut frame = raw::FrameWriter::new(sink, size);
                pump(&mut source, &mut frame)?;
                return frame.finish();
            }
            let mut encoder = zstd::stream::write::Encoder::new(sink, ZSTD_LEVEL)?;
            encoder.set_pledged_src_size(Some(size))?;
            pump(&mut source, &mut encoder)?;
            encoder.finish()
        })();
        let out = match copied {
            Ok(sink) => sink.inner,
            Err(e) if write_failed.get() => {
                return Err(StoreError::Write {
                    path: temp.path().into(),
                    source: e,
                });
            }
            // Read errors belong to the source file, the rest to the temp file;
            // a size different from the pledged one means the file changed.
            Err(e) if source.failed => {
                return Err(StoreError::Io {
                    path: path.into(),
                    source: e,
                });
            }
            Err(_) if source.size != size => return Err(StoreError::Changed { path: path.into() }),
            Err(e) => return Err(StoreError::io(temp.path())(e)),
        };
        if source.size != size {
            return Err(StoreError::Changed { path: path.into() });
        }
        let stored_len = out.metadata().map_err(StoreError::io(temp.path()))?.len();
        finish_temp(&out, area, sync).map_err(StoreError::io(temp.path()))?;
        let hash = Hash::from(source.hasher.finalize());
        Ok((hash, Staged { temp, stored_len }))
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

/// Opens `path` and reads it whole if small; a large file is left open at
/// its start, with its metadata, to be streamed. `expected` is the file's
/// size if the caller's stat of it gave it: the file is then not asked
/// again (a `statx` per file). It is read to its end all the same, so a
/// stale size changes only how it is read: one grown past
/// [`SMALL_FILE_LIMIT`] is streamed as a large one.
pub(crate) fn prepare_file(path: &Path, expected: Option<u64>) -> Result<Prepared, StoreError> {
    let mut file = File::open(path).map_err(StoreError::io(path))?;
    let stat = |file: &File| file.metadata().map_err(StoreError::io(path));
    let (len, before) = match expected {
        Some(len) => (len, None),
        None => {
            let before = stat(&file)?;
            (before.len(), Some(before))
        }
    };
    if len <= SMALL_FILE_LIMIT {
        let mut bytes = Vec::with_capacity(len as usize);
        // Through `Take`, which reads to the end as `File` does but without
        // first asking the file its size and position again (a `statx` and
        // an `lseek` per file; `len` is known); and never more than a byte
        // past the limit, so that memory does not follow a file that grew.
        Read::by_ref(&mut file)
            .take(SMALL_FILE_LIMIT + 1)
            .read_to_end(&mut bytes)
            .map_err(StoreError::io(path))?;
        if bytes.len() as u64 <= SMALL_FILE_LIMIT {
            return Ok(Prepared::Small(bytes, file));
        }
        file.rewind().map_err(StoreError::io(path))?;
        let before = stat(&file)?;
        return Ok(Prepared::Large { file, before });
    }
    let before = match before {
        Some(before) => before,
        None => stat(&file)?,
    };
    Ok(Prepared::Large { file, before })
}

/// True if the metadata of a file taken before and after reading it say
/// that it did not change meanwhile: the same size, modification and
/// change times.
pub(crate) fn unchanged(before: &Metadata, after: &Metadata) -> bool {
    (before.size(), before.mtime(), before.mtime_nsec())
        == (after.size(), after.mtime(), after.mtime_nsec())
        && (before.ctime(), before.ctime_nsec()) == (after.ctime(), after.ctime_nsec())
}

/// Copies `source` into `sink` in chunks of [`STREAM_CHUNK`]: `io::copy`'s
/// 8 KiB made a `read` per 8 KiB of a large file, and gave BLAKE3 too
/// little at a time to hash with its wide SIMD.
fn pump(source: &mut impl Read, sink: &mut impl Write) -> io::Result<()> {
    let mut buf = vec![0u8; STREAM_CHUNK];
    loop {
        match source.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => sink.write_all(&buf[..n])?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The chunk in which a large file is read, hashed and compressed: zstd's
/// largest block, small enough to stay in a core's cache between the three.
const STREAM_CHUNK: usize = 128 * 1024;

thread_local! {
    // A zstd context costs more to set up than compressing a small file does;
    // ingest stores many small files per thread, so each thread keeps one.
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// The stored frame of an object held in memory: compressed, or a raw-block
/// frame when zstd cannot shrink it, judged on samples if it is large
/// (see the `raw` module).
pub(crate) fn encode(bytes: &[u8]) -> io::Result<Vec<u8>> {
    if bytes.len() <= raw::PROBE {
        let compressed = compress(bytes)?;
        return Ok(if raw::not_worth_it(bytes.len(), compressed.len()) {
            raw::frame(bytes)
        } else {
            compressed
        });
    }
    let samples = raw::sample_offsets(bytes.len() as u64).map(|at| {
        let at = at as usize;
        &bytes[at..at + raw::SAMPLE]
    });
    if samples_incompressible(&samples)? {
        Ok(raw::frame(bytes))
    } else {
        compress(bytes)
    }
}

/// [`encode`]'s choice for a file too large to hold: true to store it raw.
/// Its samples are read with `pread`, leaving the file's position alone.
fn sampled_raw(file: &File, size: u64) -> io::Result<bool> {
    use std::os::unix::fs::FileExt;
    if size <= raw::PROBE as u64 {
        let mut all = vec![0; size as usize];
        file.read_exact_at(&mut all, 0)?;
        return Ok(raw::not_worth_it(all.len(), compress(&all)?.len()));
    }
    let mut samples = [(); 3].map(|()| vec![0; raw::SAMPLE]);
    for (at, sample) in raw::sample_offsets(size).into_iter().zip(&mut samples) {
        file.read_exact_at(sample, at)?;
    }
    samples_incompressible(&samples.each_ref().map(Vec::as_slice))
}

/// True if zstd cannot shrink any of `samples`: asked only when their bytes
/// look random, since compressing them costs a share of the whole.
fn samples_incompressible(samples: &[&[u8]; 3]) -> io::Result<bool> {
    if !raw::looks_random(samples) {
        return Ok(false);
    }
    for sample in samples {
        if !raw::not_worth_it(sample.len(), compress(sample)?.len()) {
            return Ok(false);
        }
    }
    Ok(true)
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
pub(crate) fn finish_temp(file: &File, area: Area, sync: bool) -> io::Result<()> {
    file.set_permissions(Permissions::from_mode(area.file_mode()))?;
    if sync {
        file.sync_all()?;
    }
    Ok(())
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

/// A writer that remembers whether the underlying write failed.
struct TrackedWriter<'a, W> {
    inner: W,
    failed: &'a Cell<bool>,
}

impl<W: Write> Write for TrackedWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf).inspect_err(|e| {
            if e.kind() != io::ErrorKind::Interrupted {
                self.failed.set(true);
            }
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().inspect_err(|_| self.failed.set(true))
    }
}
