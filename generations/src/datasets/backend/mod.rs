//! One type per kind of dataset, behind [`Backend`]: [`directory`] and
//! [`btrfs`] (both live in the root's tree and share the retention area,
//! `area.rs`) and [`zfs`]. The rest of the datasets module asks a backend
//! what to do and never which kind a dataset is; [`of`] is the one place
//! that maps a [`Kind`] to its backend.
//!
//! Child tools never get a path made of the root's name and the entry's
//! path: the tool would resolve it again, component by component, and
//! follow a symlink planted after sysgen checked the place. They get a
//! [`HandlePath`] instead, which names a directory this process opened
//! through the root handle. zfs is the exception it cannot cover: its
//! `mountpoint` property is a path that zfs keeps and mounts at later (see
//! `zfs.rs`).

mod area;
mod btrfs;
mod directory;
mod zfs;

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use sysgen_schema::EntryPath;

use super::records::Recorder;
use super::{How, Kind, Tools};
use crate::Error;
use crate::error::DatasetError;
use crate::rootfs::{Live, RootDir, RootError};

/// What one kind of dataset does: the read-only questions of the precheck,
/// the work of each [`DatasetStep`](super::DatasetStep), and what gc
/// measures and destroys. Every step converges whatever it finds, so a
/// plan cut short can run again from its first step.
pub(crate) trait Backend {
    /// Whether the tool this kind needs is installed; otherwise a conflict
    /// naming `p` and what to install.
    fn check_tool(&self, p: &EntryPath) -> Result<(), String>;

    /// How the dataset the target newly has at `p` would come about, or
    /// why it cannot (a conflict naming `p` and what to do). `known`: the
    /// kind sysgen last recorded at `p`.
    fn arrival(
        &self,
        root: &RootDir,
        p: &EntryPath,
        known: Option<&Kind>,
    ) -> Result<Result<How, String>, Error>;

    /// Whether the dataset is there now.
    fn present(&self, root: &RootDir, p: &EntryPath) -> Result<bool, Error>;

    /// Whether something mounted at `p` keeps the dataset from being moved
    /// aside as a whole.
    fn busy(&self, root: &RootDir, mounts: &Mounts, p: &EntryPath) -> bool;

    /// The conflicts of a `rollback --with-data` from snapshot `snap`.
    fn check_restore(
        &self,
        root: &RootDir,
        mounts: &Mounts,
        p: &EntryPath,
        snap: &str,
    ) -> Result<Vec<String>, Error>;

    /// Takes the read-only snapshot `snap` (unless taken, or nothing is there).
    fn snapshot(&self, root: &RootDir, p: &EntryPath, snap: &str) -> Result<(), Error>;

    /// Creates the dataset, or re-attaches its detached data, or keeps
    /// what is there (adopted, or done by an earlier run). What is there
    /// must be the dataset (`expect`: its identity, when known); a stranger
    /// is an error, never adopted. `token` marks a dataset that has no
    /// identity of its own (a plain directory).
    fn attach(
        &self,
        root: &RootDir,
        p: &EntryPath,
        expect: Option<&str>,
        token: &str,
    ) -> Result<(), Error>;

    /// The identity of the dataset at `p` (a btrfs subvolume's UUID, a
    /// zfs dataset's guid, a directory dataset's marker); `None` when what
    /// is there has none (nothing, or not a dataset of this kind).
    fn identity(&self, root: &RootDir, p: &EntryPath) -> Result<Option<String>, Error>;

    /// The identity of the dataset's detached data, if it has some.
    fn detached_identity(&self, root: &RootDir, p: &EntryPath) -> Result<Option<String>, Error>;

    /// Why what is at `p` must not be taken for the dataset (identity
    /// `expect`, when known) that sysgen detached: a conflict naming both
    /// places and the way out; `None` when nothing is in the way.
    fn stranger(
        &self,
        root: &RootDir,
        p: &EntryPath,
        expect: Option<&str>,
    ) -> Result<Option<String>, Error>;

    /// Keeps the current contents as snapshot `pre` (recorded through
    /// `rec` as soon as they are), then makes the dataset from `snap`.
    fn restore(
        &self,
        root: &RootDir,
        rec: &Recorder<'_>,
        p: &EntryPath,
        snap: &str,
        pre: &str,
    ) -> Result<(), Error>;

    /// Undoes [`Backend::restore`]: the restored contents become snapshot
    /// `aside`, those of `pre` come back.
    fn unrestore(
        &self,
        root: &RootDir,
        rec: &Recorder<'_>,
        p: &EntryPath,
        pre: &str,
        aside: &str,
    ) -> Result<(), Error>;

    /// Moves the dataset away from `p`, whole; with `discard_if_empty`, an
    /// empty one is destroyed (and its record dropped) instead.
    /// `token` marks a dataset that has no identity of its own, before it
    /// moves, so that re-attaching it later can tell it from a stranger.
    fn detach(
        &self,
        root: &RootDir,
        rec: &Recorder<'_>,
        p: &EntryPath,
        discard_if_empty: bool,
        token: &str,
    ) -> Result<(), Error>;

    /// Where the detached data of the dataset at `p` is kept, if anywhere,
    /// and (with `measure`) its size in bytes.
    fn detached(
        &self,
        root: &RootDir,
        p: &EntryPath,
        measure: bool,
    ) -> Result<Option<(String, u64)>, Error>;

    /// The size of snapshot `snap`; 0 when it is gone or cannot be asked.
    fn snapshot_bytes(&self, root: &RootDir, p: &EntryPath, snap: &str) -> Result<u64, Error>;

    /// gc: destroys snapshot `snap`.
    fn destroy_snapshot(&self, root: &RootDir, p: &EntryPath, snap: &str) -> Result<(), Error>;

    /// gc: destroys the detached data kept at `location` (from [`Backend::detached`]).
    fn destroy_detached(&self, root: &RootDir, p: &EntryPath, location: &str) -> Result<(), Error>;
}

/// The backend of `kind`. A missing tool is an error only when a step
/// needs it, so gc and `status` still work on what needs none.
pub(crate) fn of<'a>(kind: &'a Kind, tools: &'a Tools) -> Box<dyn Backend + 'a> {
    match kind {
        Kind::Directory => Box::new(area::Area(directory::Directory)),
        Kind::Btrfs => Box::new(area::Area(btrfs::Btrfs {
            tool: tools.btrfs.as_deref(),
        })),
        Kind::Zfs { name } => Box::new(zfs::Zfs {
            name,
            tool: tools.zfs.as_deref(),
        }),
    }
}

/// An installed tool, run with explicit arguments and no stdin.
#[derive(Clone, Copy)]
pub(super) struct Tool<'a>(pub &'a Path);

impl Tool<'_> {
    fn err(&self, args: &[&OsStr], what: &str) -> Error {
        Error::Dataset(DatasetError(format!(
            "`{} {}` failed: {}",
            self.0.display(),
            args.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            what.trim()
        )))
    }

    /// Runs the tool whatever its exit status.
    fn output(&self, args: &[&OsStr]) -> Result<Output, Error> {
        Command::new(self.0)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| self.err(args, &e.to_string()))
    }

    /// Runs the tool; its stdout, or an error naming the command and
    /// carrying its stderr.
    pub(super) fn run(&self, args: &[&OsStr]) -> Result<String, Error> {
        let out = self.output(args)?;
        if !out.status.success() {
            return Err(self.err(args, &String::from_utf8_lossy(&out.stderr)));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// The tool a step needs, or the error that it is not installed.
pub(super) fn need<'a>(
    tool: Option<&'a Path>,
    msg: impl FnOnce() -> String,
) -> Result<Tool<'a>, Error> {
    tool.map(Tool)
        .ok_or_else(|| Error::Dataset(DatasetError(msg())))
}

pub(super) fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// A path for a child tool that names an entry of the root through a
/// directory this process opened via the root handle (without following
/// any symlink): `/proc/self/fd/N/name` or `/proc/self/fd/N`. The tool then
/// resolves at most the last component; a directory moved, or swapped for
/// a symlink, after sysgen opened it changes nothing. The descriptor has
/// no `O_CLOEXEC`, so the child inherits it under the same number; it is
/// closed when this value is dropped, right after the tool ran. (A child
/// that another thread spawns meanwhile would inherit it too; the steps
/// that run tools run one at a time.)
pub(super) struct HandlePath {
    _fd: OwnedFd,
    path: PathBuf,
}

fn root_err(p: &EntryPath, op: &'static str, e: nix::errno::Errno) -> Error {
    Error::Root(RootError {
        path: p.to_string(),
        op,
        source: e.into(),
    })
}

impl HandlePath {
    /// `p` by its name in its parent directory, for a tool that creates or
    /// deletes `p` (btrfs does both through the parent and the name).
    pub(super) fn entry(root: &RootDir, p: &EntryPath) -> Result<HandlePath, Error> {
        let parent = root.open_parent(p)?;
        // dup(2) leaves O_CLOEXEC off the copy.
        let fd = nix::unistd::dup(parent.as_fd()).map_err(|e| root_err(p, "dup", e))?;
        let path = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())).join(p.file_name());
        Ok(HandlePath { _fd: fd, path })
    }

    /// The directory `p` itself, opened without following a symlink, for a
    /// tool that reads or changes it (a snapshot's source, a property).
    pub(super) fn dir(root: &RootDir, p: &EntryPath) -> Result<HandlePath, Error> {
        let parent = root.open_parent(p)?;
        // No O_CLOEXEC: the child inherits it.
        let fd = nix::fcntl::openat(
            parent.as_fd(),
            p.file_name(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )
        .map_err(|e| root_err(p, "open directory", e))?;
        let path = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        Ok(HandlePath { _fd: fd, path })
    }

    pub(super) fn as_os_str(&self) -> &OsStr {
        self.path.as_os_str()
    }
}

/// The host path of `p`, absolute and with the root's own symlinks
/// resolved, as mountinfo and zfs show paths. Never opened: for
/// messages, comparisons and zfs's `mountpoint` only.
pub(crate) fn host(root: &RootDir, p: &EntryPath) -> PathBuf {
    let base = std::fs::canonicalize(root.path()).unwrap_or_else(|_| root.path().to_owned());
    base.join(&p.as_str()[1..])
}

/// Every mount point of this process's mount namespace.
pub(crate) struct Mounts(HashSet<PathBuf>);

impl Mounts {
    pub(crate) fn read() -> Mounts {
        // Without mountinfo nothing is known to be mounted; the move that
        // a mount would block then fails at apply, naming the path.
        let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
            return Mounts(HashSet::new());
        };
        Mounts(
            text.lines()
                .filter_map(|l| l.split(' ').nth(4))
                .map(|m| PathBuf::from(unescape(m)))
                .collect(),
        )
    }

    pub(super) fn contains(&self, root: &RootDir, p: &EntryPath) -> bool {
        self.0.contains(&host(root, p))
    }
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> OsString {
    use std::os::unix::ffi::OsStringExt;
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && let Some(oct) = s.get(i + 1..i + 4)
            && let Ok(v) = u8::from_str_radix(oct, 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    OsString::from_vec(out)
}

pub(super) fn is_dir(root: &RootDir, p: &EntryPath) -> Result<bool, Error> {
    Ok(matches!(root.inspect(p)?, Live::Dir(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape(r"/mnt/a\040b"), "/mnt/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
