//! Putting an object into a file of the root by cloning it (`FICLONE`):
//! the file then shares the store's extents, so a switch writes no data.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;

use crate::trust::{self, Expect};
use crate::{Area, Format, Hash, Store, StoreError};

/// Objects up to this size are written, not cloned. btrfs keeps files this
/// small inline in its metadata (`max_inline`, 2 KiB by default), where a
/// clone cannot share them and costs an ioctl more than the write; a clone
/// of a few bytes would also take a whole block of its own on xfs.
pub const CLONE_MIN: u64 = 2048;

impl Store {
    /// Puts the object into `dest`, a file the caller just created (empty,
    /// open for writing), and returns its size.
    ///
    /// In a plain store the object is verified first (BLAKE3 of its bytes
    /// against `hash`: a damaged object is refused with
    /// [`StoreError::Corrupt`] and `dest` is left untouched), then cloned;
    /// where the filesystem cannot clone it (another filesystem, no
    /// reflinks: `EXDEV`, `EOPNOTSUPP`, `EINVAL`) it is copied instead.
    /// Small objects ([`CLONE_MIN`]) and zstd stores are copied as
    /// [`Store::copy_to`] does.
    pub fn clone_into(&self, hash: &Hash, area: Area, dest: &mut File) -> Result<u64, StoreError> {
        if self.format() != Format::Plain {
            return self.copy_to(hash, area, dest);
        }
        let path = self.object_path(hash, area);
        let (mut src, meta) = match trust::open_meta(&path, Expect::File, false) {
            Ok(f) => f,
            // Missing: the ordinary read says so, naming the object.
            Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return self.copy_to(hash, area, dest);
            }
            Err(e) => return Err(e),
        };
        if meta.len() <= CLONE_MIN {
            // Written from the handle just opened and checked, not opened
            // again by name (most files of a tree are this small).
            return crate::read::stream_plain(&path, &mut src, meta.len(), hash, &mut |c| {
                dest.write_all(c)
            });
        }
        let size = crate::read::pump(&mut src, hash, &mut |_| Ok(()), &|e| {
            StoreError::io(&path)(e)
        })?;
        match rustix::fs::ioctl_ficlone(dest.as_fd(), src.as_fd()) {
            Ok(()) => Ok(size),
            Err(e)
                if e == rustix::io::Errno::XDEV
                    || e == rustix::io::Errno::OPNOTSUPP
                    || e == rustix::io::Errno::INVAL
                    || e == rustix::io::Errno::NOTTY =>
            {
                // A failed clone changed nothing in `dest`: copy instead,
                // verified again as it streams.
                self.copy_to(hash, area, dest)
            }
            Err(e) => Err(StoreError::Output {
                hash: *hash,
                source: e.into(),
            }),
        }
    }
}
