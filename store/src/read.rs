//! Reading objects: from a pack or a file of their own, verified against
//! their key as they stream.

use std::cell::Cell;
use std::io::{self, Read, Seek};
use std::path::Path;

use crate::hash::STREAM_BUF;
use crate::trust::{self, Expect};
use crate::{Area, Format, Hash, SMALL_FILE_LIMIT, Store, StoreError, pack};

impl Store {
    /// Decompresses the object, passing each chunk to `sink` and hashing it.
    pub(crate) fn stream(
        &self,
        hash: &Hash,
        area: Area,
        sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<u64, StoreError> {
        let (packed, damaged) = self.with_packs(area, |set| {
            let damaged = set.damaged.first().cloned();
            let Some(loc) = set.index.get(hash) else {
                return (None, damaged);
            };
            let pack = &set.packs[loc.pack as usize];
            let mut fill = |buf: &mut Vec<u8>| pack::read_frame(pack, loc.offset, loc.len, buf);
            // Only small objects are packed, so one always fits in memory.
            let read = stream_small(&pack.path, &mut fill, hash, sink).and_then(|n| {
                n.ok_or_else(|| StoreError::CorruptInPack {
                    hash: *hash,
                    pack: pack.path.clone(),
                })
            });
            let read = read.map_err(|e| match e {
                StoreError::Corrupt { hash } => StoreError::CorruptInPack {
                    hash,
                    pack: pack.path.clone(),
                },
                e => e,
            });
            (Some(read), damaged)
        })?;
        // A corrupt packed frame may have a good copy of its own beside the
        // pack (put back by a repair): that one is read instead.
        let packed = match packed {
            Some(Err(e @ StoreError::CorruptInPack { .. })) => Some(e),
            Some(result) => return result,
            None => None,
        };
        let path = self.object_path(hash, area);
        let (mut file, meta) = match trust::open_meta(&path, Expect::File, false) {
            Ok(f) => f,
            Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Err(match (packed, damaged) {
                    (Some(e), _) => e,
                    (None, Some(d)) => StoreError::InDamagedPack {
                        hash: *hash,
                        pack: d.path,
                        why: d.why,
                    },
                    (None, None) => StoreError::NotFound { hash: *hash },
                });
            }
            Err(e) => return Err(e),
        };
        let stored_len = meta.len();
        if self.format() == Format::Plain {
            return stream_plain(&path, &mut file, stored_len, hash, sink);
        }
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
        pump(&mut decoder, hash, sink, &|e| {
            if read_failed.get() {
                StoreError::Io {
                    path: path.clone(),
                    source: e,
                }
            } else {
                StoreError::Corrupt { hash: *hash }
            }
        })
    }
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

/// [`Store::stream`] for an object of a plain store: its file holds the
/// raw bytes, passed on as read and hashed. A small object is checked
/// whole before any of it is passed on, as a small zstd object is.
pub(crate) fn stream_plain(
    path: &Path,
    file: &mut std::fs::File,
    stored_len: u64,
    hash: &Hash,
    sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> Result<u64, StoreError> {
    if stored_len <= SMALL_FILE_LIMIT {
        let mut bytes = Vec::with_capacity(stored_len as usize);
        file.take(SMALL_FILE_LIMIT + 1)
            .read_to_end(&mut bytes)
            .map_err(StoreError::io(path))?;
        if Hash::of(&bytes) != *hash {
            return Err(StoreError::Corrupt { hash: *hash });
        }
        sink(&bytes).map_err(|source| StoreError::Output {
            hash: *hash,
            source,
        })?;
        return Ok(bytes.len() as u64);
    }
    pump(file, hash, sink, &|e| StoreError::io(path)(e))
}

/// Passes what `r` reads on to `sink` as it comes, hashing it, and fails
/// at the end unless it hashed to `hash` (a damaged object's first bytes
/// may have been passed on: callers write into what they then discard).
/// `read_err` names a failed read (a disk error, or zstd's word for a
/// damaged frame).
pub(crate) fn pump(
    r: &mut dyn Read,
    hash: &Hash,
    sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    read_err: &dyn Fn(io::Error) -> StoreError,
) -> Result<u64, StoreError> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; STREAM_BUF];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_err(e)),
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
