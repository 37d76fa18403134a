//! How a store keeps its objects: chosen once, when the store is made, and
//! recorded in `<dir>/format` (absent: [`Format::Zstd`], every store made
//! before the file existed).
//!
//! A `plain` store keeps each object as a file of its own holding exactly
//! the raw bytes, so that a switch can clone it into the root (`FICLONE`)
//! instead of writing it: no zstd frame (a clone shares bytes as they are
//! stored) and no packs (a clone takes a whole file). It is chosen only
//! when a real clone from the store onto the root's filesystem succeeds
//! (btrfs, xfs with reflinks, the store on the same filesystem as the
//! root); compression is then left to the filesystem.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::trust::{self, Expect};
use crate::{Store, StoreError, sync_dir};

/// The name of the file that records the format, in the store's directory.
pub(crate) const FILE: &str = "format";

/// How the objects of a store are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// zstd frames, small objects of a batch in packs (see the `pack` module).
    Zstd,
    /// Each object a file of its own of exactly its raw bytes, to be cloned.
    Plain,
}

impl Format {
    fn text(self) -> &'static str {
        match self {
            Format::Zstd => "zstd",
            Format::Plain => "plain",
        }
    }
}

/// The format recorded in the store at `dir`, if one is.
pub(crate) fn read(dir: &Path) -> Result<Option<Format>, StoreError> {
    let path = dir.join(FILE);
    let mut file = match trust::open(&path, Expect::File, false) {
        Ok(f) => f,
        Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let mut text = String::new();
    // A few bytes are expected; more is not a format file of ours.
    (&mut file)
        .take(64)
        .read_to_string(&mut text)
        .map_err(StoreError::io(&path))?;
    match text.trim_end() {
        "zstd" => Ok(Some(Format::Zstd)),
        "plain" => Ok(Some(Format::Plain)),
        other => Err(StoreError::Untrusted {
            path,
            why: format!("names the store format `{other}`, which is neither `zstd` nor `plain`"),
        }),
    }
}

/// Records `format` durably (temp file, fsync, rename, fsync of `dir`).
pub(crate) fn write(dir: &Path, tmp: &Path, format: Format) -> Result<(), StoreError> {
    let temp = tmp.join(format!("{}-format", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&temp)?;
        writeln!(f, "{}", format.text())?;
        f.sync_all()
    })();
    result.map_err(StoreError::io(&temp))?;
    let path = dir.join(FILE);
    fs::rename(&temp, &path).map_err(StoreError::io(&path))?;
    sync_dir(dir)
}

/// Bytes of the probe file: more than btrfs inlines in its metadata (an
/// inline extent is not cloned the same way), block-aligned.
const PROBE_LEN: usize = 64 * 1024;

impl Store {
    /// The format of the store being opened: the one recorded; zstd for a
    /// store made before formats were recorded (it has `objects/`); for a
    /// new store, plain if [`Store::clone_probe`] onto `root` succeeds,
    /// recorded before the first object can be written.
    pub(crate) fn choose_format(&self, root: Option<BorrowedFd<'_>>) -> Result<Format, StoreError> {
        if let Some(f) = read(&self.dir)? {
            return Ok(f);
        }
        // An existing store never changes format.
        if fs::symlink_metadata(&self.objects).is_ok() {
            return Ok(Format::Zstd);
        }
        let plain = match root {
            Some(fd) => self.clone_probe(fd)?,
            None => false,
        };
        if !plain {
            // Absent means zstd: nothing to record.
            return Ok(Format::Zstd);
        }
        write(&self.dir, &self.tmp, Format::Plain)?;
        Ok(Format::Plain)
    }

    /// True if a file of this store can be cloned onto a file made in the
    /// directory `target` (the root): makes a probe file in `tmp/`, an
    /// unnamed file (`O_TMPFILE`) in `target`, and clones the one onto the
    /// other. Any failure means no: the store is then kept in zstd.
    pub(crate) fn clone_probe(&self, target: BorrowedFd<'_>) -> Result<bool, StoreError> {
        let (mut probe, temp) = self.create_temp("clone-probe")?;
        probe
            .write_all(&[0x5a; PROBE_LEN])
            .map_err(StoreError::io(temp.path()))?;
        // A clone reads its source: the temp file was made write-only.
        let probe = File::open(temp.path()).map_err(StoreError::io(temp.path()))?;
        // Unnamed: a crash leaves nothing in the root, and no name there is taken.
        let dest = match rustix::fs::openat(
            target,
            ".",
            rustix::fs::OFlags::TMPFILE | rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::from_raw_mode(0o600),
        ) {
            Ok(fd) => File::from(fd),
            // No O_TMPFILE there (or no right to write): no clone either way.
            Err(_) => return Ok(false),
        };
        Ok(rustix::fs::ioctl_ficlone(dest.as_fd(), probe.as_fd()).is_ok())
    }
}
