//! Expanding a tree: every file, directory and symlink under its source is
//! declared at the matching path with what `cp -a` keeps: permission bits,
//! numeric owner and group (unless the tree overrides them), the file
//! capability, POSIX ACLs, `user.*` attributes when the tree asks, and hard
//! links between its files. Sockets, fifos and device nodes are skipped:
//! they hold no data, and a root's `/dev` is the kernel's.

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;

use std::path::{Path, PathBuf};

use sysgen_schema::PathError;
use sysgen_schema::{EntryPath, TreeSpec};

use super::hash::{Stat, stat_of};
use crate::manifest::Entry;
use crate::rootfs::Xattrs;
use crate::rootfs::xattr::{any_at, read_path, recorded};
use crate::{Error, io_err};
use rustix::fs::{Mode, OFlags};

/// What a tree gives every entry instead of the source's own ids.
pub(super) struct Overrides {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// What the walk of one tree shares between its threads.
pub(super) struct Walk<'a> {
    pub(super) index: u32,
    pub(super) at: &'a EntryPath,
    pub(super) tree: &'a TreeSpec,
    ids: Overrides,
    pub(super) what: String,
    exclude: super::exclude::Exclude,
}

/// One entry of a tree's source directory, listed.
pub(super) struct Listed {
    pub(super) name: String,
    pub(super) kind: ListedKind,
}

pub(super) enum ListedKind {
    /// A subdirectory: its entry, listed next.
    Dir(Entry),
    Symlink(Entry),
    File(ListedFile),
}

/// A tree's file, before hashing.
pub(super) struct ListedFile {
    pub(super) stat: Stat,
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) xattrs: Xattrs,
    /// More than one name: possibly a hard link of another file of the
    /// tree, decided once the whole tree is seen.
    pub(super) linked: bool,
}

impl<'a> Walk<'a> {
    /// The walk of tree number `index`, declared at `at`: its top's entry
    /// comes from [`Walk::top`].
    pub(super) fn new(
        index: u32,
        at: &'a EntryPath,
        tree: &'a TreeSpec,
        ids: Overrides,
    ) -> Result<Walk<'a>, Error> {
        let what = format!("{}: trees.{at}", tree.declared_in.display());
        let exclude = super::exclude::Exclude::new(tree, &what)?;
        Ok(Walk {
            index,
            at,
            tree,
            ids,
            what,
            exclude,
        })
    }

    /// The entry of the tree's top: its source directory's own.
    pub(super) fn top(&self) -> Result<Entry, Error> {
        let src = &self.tree.source;
        let md = std::fs::symlink_metadata(src).map_err(io_err(src))?;
        if !md.is_dir() {
            return Err(Error::Invalid(format!(
                "{}: source {} is not a directory",
                self.what,
                src.display()
            )));
        }
        Ok(self.dir(&md, self.read(src)?))
    }

    fn read(&self, p: &Path) -> Result<Xattrs, Error> {
        read_path(p, &|n| recorded(n, self.tree.xattrs)).map_err(io_err(p))
    }

    /// Most files have no attributes: one listing call of the entry,
    /// relative to its directory's handle, says so.
    /// `src` makes the entry's whole path, only when it is needed (an
    /// error, attributes to read, a kernel without `listxattrat`).
    fn xattrs_at(
        &self,
        dir: BorrowedFd<'_>,
        name: &str,
        src: &dyn Fn() -> PathBuf,
    ) -> Result<Xattrs, Error> {
        let c = CString::new(name).map_err(|_| {
            Error::Invalid(format!(
                "{}: {} has a NUL in its name",
                self.what,
                src().display()
            ))
        })?;
        if any_at(dir, &c, src).map_err(|e| io_err(src())(e))? {
            self.read(&src())
        } else {
            Ok(Xattrs::default())
        }
    }

    fn dir(&self, md: &std::fs::Metadata, x: Xattrs) -> Entry {
        Entry::Dir {
            mode: Some(md.mode() & 0o7777),
            uid: Some(self.ids.uid.unwrap_or(md.uid())),
            gid: Some(self.ids.gid.unwrap_or(md.gid())),
            xattrs: x,
        }
    }

    /// Lists `src_dir`, the source of `dest`, sorted by name. No path is
    /// made for an entry (its name is enough for its node): only one that
    /// is too long is refused, as `EntryPath::join` would.
    pub(super) fn list(&self, src_dir: &Path, dest: &EntryPath) -> Result<Vec<Listed>, Error> {
        let what = &self.what;
        let mut out = Vec::new();
        let rd = std::fs::read_dir(src_dir).map_err(io_err(src_dir))?;
        // A handle on the directory for the attribute lookups of its entries
        // (O_PATH: nothing is read through it; O_NOFOLLOW: the directory
        // just listed, not what a symlink put in its place would name).
        let handle = rustix::fs::open(
            src_dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err(src_dir)(e.into()))?;
        for ent in rd {
            let ent = ent.map_err(io_err(src_dir))?;
            // Made only where needed: most entries need no path.
            let src = || ent.path();
            let name = ent.file_name();
            let name = name.to_str().ok_or_else(|| {
                Error::Invalid(format!(
                    "{what}: {} has a name that is not UTF-8; rename it",
                    src().display()
                ))
            })?;
            // Before any check of the name: what is left out is not read,
            // and no hard link can point at it.
            let is_dir = ent.file_type().map_err(io_err(src()))?.is_dir();
            let rel = if self.exclude.needs_path(is_dir) {
                super::exclude::relative(self.at, dest, name)
            } else {
                String::new()
            };
            if self.exclude.excludes(&rel, name, is_dir) {
                continue;
            }
            // As for declared paths: a control character would forge lines
            // in the plan or reach the terminal.
            if name.contains(char::is_control) {
                return Err(Error::Invalid(format!(
                    "{what}: {} has a name with a control character; rename it",
                    src().display().to_string().escape_debug()
                )));
            }
            let len = dest.as_str().len() + 1 + name.len();
            if len > sysgen_schema::PATH_MAX {
                return Err(Error::Invalid(format!(
                    "{what}: {}: {}",
                    src().display(),
                    PathError::TooLong(len)
                )));
            }
            // Relative to the open directory (no symlink followed), not a
            // walk of the whole path again for each of 100k entries.
            let md = ent.metadata().map_err(io_err(src()))?;
            let ft = md.file_type();
            let kind = if ft.is_dir() {
                ListedKind::Dir(self.dir(&md, self.xattrs_at(handle.as_fd(), name, &src)?))
            } else if ft.is_symlink() {
                let target = std::fs::read_link(src()).map_err(io_err(src()))?;
                let target = target.to_str().ok_or_else(|| {
                    Error::Invalid(format!(
                        "{what}: symlink {} has a target that is not UTF-8",
                        src().display()
                    ))
                })?;
                if target.contains(char::is_control) {
                    return Err(Error::Invalid(format!(
                        "{what}: symlink {} has a target with a control character; change it",
                        src().display()
                    )));
                }
                ListedKind::Symlink(Entry::Symlink {
                    target: target.to_owned(),
                    uid: Some(self.ids.uid.unwrap_or(md.uid())),
                    gid: Some(self.ids.gid.unwrap_or(md.gid())),
                })
            } else if ft.is_file() {
                ListedKind::File(ListedFile {
                    stat: stat_of(&md),
                    mode: self.tree.mode.map_or(md.mode() & 0o7777, |m| m.bits()),
                    uid: self.ids.uid.unwrap_or(md.uid()),
                    gid: self.ids.gid.unwrap_or(md.gid()),
                    xattrs: self.xattrs_at(handle.as_fd(), name, &src)?,
                    linked: md.nlink() > 1,
                })
            } else {
                // A socket, fifo or device node: nothing to keep.
                continue;
            };
            out.push(Listed {
                name: name.to_owned(),
                kind,
            });
        }
        out.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}
