//! The state directory's trust rules, applied to every file and directory
//! sysgen opens in it (the store's and the state's own).
//!
//! sysgen runs as root on roots that someone else may have prepared, so
//! nothing in the state directory is trusted for being there: each entry is
//! opened with `O_NOFOLLOW` (a planted symlink is refused, never followed
//! out), and the open handle is checked to be of the expected type and owned
//! by the user sysgen runs as (root). Once the directories are known good,
//! nobody else can change what is in them, so a name checked once stays good
//! for the rest of the command.

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use nix::libc;

use crate::StoreError;

/// What an entry of the state directory must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    Dir,
    File,
}

impl Expect {
    fn name(self) -> &'static str {
        match self {
            Expect::Dir => "a directory",
            Expect::File => "a regular file",
        }
    }
}

/// Opens `path` without following a symlink at its last component, and
/// checks it is what `expect` says and owned by the user sysgen runs as.
/// `write` opens a file for reading and writing (never creating it).
pub fn open(path: &Path, expect: Expect, write: bool) -> Result<File, StoreError> {
    open_meta(path, expect, write).map(|(f, _)| f)
}

/// [`open`], with the metadata it checked (one `fstat` for both).
pub fn open_meta(path: &Path, expect: Expect, write: bool) -> Result<(File, Metadata), StoreError> {
    let mut flags = libc::O_NOFOLLOW | libc::O_CLOEXEC;
    if expect == Expect::Dir {
        flags |= libc::O_DIRECTORY;
    } else {
        // A FIFO must not block the open before its type is seen.
        flags |= libc::O_NONBLOCK;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(write && expect == Expect::File)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| refused_or_io(path, expect, e))?;
    let meta = check(&file, path, expect)?;
    Ok((file, meta))
}

/// Checks an open handle: its type, and that the user sysgen runs as owns it.
pub fn check(file: &File, path: &Path, expect: Expect) -> Result<Metadata, StoreError> {
    let meta = file.metadata().map_err(StoreError::io(path))?;
    let ok_type = match expect {
        Expect::Dir => meta.is_dir(),
        Expect::File => meta.is_file(),
    };
    if !ok_type {
        return Err(untrusted(path, format!("is not {}", expect.name())));
    }
    check_owner(path, meta.uid())?;
    Ok(meta)
}

/// Checks the entry at `path` without opening or following it (for
/// entries that another library opens by name, like SQLite's `-wal`):
/// absent is fine, anything else must be what `expect` says and ours.
pub fn check_entry(path: &Path, expect: Expect) -> Result<(), StoreError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::io(path)(e)),
    };
    let ft = meta.file_type();
    if ft.is_symlink() {
        return Err(untrusted(path, "is a symlink".to_owned()));
    }
    let ok_type = match expect {
        Expect::Dir => ft.is_dir(),
        Expect::File => ft.is_file(),
    };
    if !ok_type {
        return Err(untrusted(path, format!("is not {}", expect.name())));
    }
    check_owner(path, meta.uid())
}

/// The effective uid: read once, it does not change in a run (and a
/// switch checks an object's owner per file).
fn euid() -> u32 {
    static ME: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *ME.get_or_init(|| nix::unistd::geteuid().as_raw())
}

fn check_owner(path: &Path, uid: u32) -> Result<(), StoreError> {
    let me = euid();
    if uid != me {
        return Err(untrusted(
            path,
            format!("is owned by uid {uid}, not by uid {me} that sysgen runs as"),
        ));
    }
    Ok(())
}

/// An open refused by `O_NOFOLLOW` or `O_DIRECTORY` becomes [`StoreError::Untrusted`];
/// other errors stay what they are.
pub fn refused_or_io(path: &Path, expect: Expect, e: io::Error) -> StoreError {
    match e.raw_os_error() {
        Some(libc::ELOOP) => untrusted(path, "is a symlink".to_owned()),
        Some(libc::ENOTDIR) if expect == Expect::Dir => {
            untrusted(path, "is not a directory".to_owned())
        }
        _ => StoreError::Io {
            path: path.into(),
            source: e,
        },
    }
}

fn untrusted(path: &Path, why: String) -> StoreError {
    StoreError::Untrusted {
        path: path.into(),
        why,
    }
}
