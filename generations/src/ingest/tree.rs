//! Expanding a tree: every file, directory and symlink under its source is
//! declared at the matching path with what `cp -a` keeps: permission bits,
//! numeric owner and group (unless the tree overrides them), the file
//! capability, POSIX ACLs, `user.*` attributes when the tree asks, and hard
//! links between its files. Sockets, fifos and device nodes are skipped:
//! they hold no data, and a root's `/dev` is the kernel's.

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;

use rayon::prelude::*;
use std::path::{Path, PathBuf};

use sysgen_schema::{EntryPath, TreeSpec};

use super::{Pending, PendingFile, Src, stat_of};
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

/// Declares every file, directory and symlink under a tree's source at the
/// matching path (see the module docs).
pub(super) fn expand_tree(
    index: u32,
    at: &EntryPath,
    tree: &TreeSpec,
    ids: &Overrides,
    out: &mut BTreeMap<EntryPath, Pending>,
) -> Result<(), Error> {
    let what = format!("{}: trees.{at}", tree.declared_in.display());
    let md = std::fs::symlink_metadata(&tree.source).map_err(io_err(&tree.source))?;
    if !md.is_dir() {
        return Err(Error::Invalid(format!(
            "{what}: source {} is not a directory",
            tree.source.display()
        )));
    }
    let exclude = super::exclude::Exclude::new(tree, &what)?;
    let walk = Walk {
        index,
        at,
        tree,
        ids,
        what: &what,
        exclude: &exclude,
    };
    insert_unique(
        out,
        at.clone(),
        Pending::Ready(walk.dir(&md, walk.read(&tree.source)?)),
        &what,
    )?;
    // Files with more than one name, by inode: those named more than once
    // inside the tree become hard links of the first name.
    let mut inodes: HashMap<(u64, u64), Vec<EntryPath>> = HashMap::new();
    // One level of directories at a time, their listings in parallel (as
    // git's preloaded index stats on several threads): the `statx` and the
    // attribute lookup of each entry are most of an unchanged build. The
    // entries then join the map in the level's order, so that the result
    // and the first error reported do not depend on the threads.
    let mut level: Vec<(PathBuf, EntryPath)> = vec![(tree.source.clone(), at.clone())];
    while !level.is_empty() {
        let listed: Vec<Result<Listing, Error>> = level
            .par_iter()
            .map(|(src_dir, dest)| walk.list(src_dir, dest))
            .collect();
        let mut next = Vec::new();
        for listing in listed {
            let listing = listing?;
            for (key, p) in listing.linked {
                inodes.entry(key).or_default().push(p);
            }
            for (p, entry) in listing.entries {
                insert_unique(out, p, entry, &what)?;
            }
            next.extend(listing.dirs);
        }
        level = next;
    }
    for mut names in inodes.into_values().filter(|n| n.len() > 1) {
        names.sort();
        let first = names[0].clone();
        for p in &names[1..] {
            if let Some(Pending::File(f)) = out.get_mut(p) {
                f.link = Some(Box::new(first.clone()));
            }
        }
    }
    Ok(())
}

/// What the walk of one tree shares between its threads.
struct Walk<'a> {
    index: u32,
    at: &'a EntryPath,
    tree: &'a TreeSpec,
    ids: &'a Overrides,
    what: &'a str,
    exclude: &'a super::exclude::Exclude,
}

/// One directory of a tree's source, listed: its entries, its
/// subdirectories to list next, and its files with more than one name.
struct Listing {
    entries: Vec<(EntryPath, Pending)>,
    dirs: Vec<(PathBuf, EntryPath)>,
    linked: Vec<((u64, u64), EntryPath)>,
}

impl Walk<'_> {
    fn read(&self, p: &Path) -> Result<Xattrs, Error> {
        read_path(p, &|n| recorded(n, self.tree.xattrs)).map_err(io_err(p))
    }

    /// Most files have no attributes: one listing call of the entry,
    /// relative to its directory's handle, says so.
    fn xattrs_at(&self, dir: BorrowedFd<'_>, name: &str, p: &Path) -> Result<Xattrs, Error> {
        let c = CString::new(name).map_err(|_| {
            Error::Invalid(format!(
                "{}: {} has a NUL in its name",
                self.what,
                p.display()
            ))
        })?;
        if any_at(dir, &c, p).map_err(io_err(p))? {
            self.read(p)
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

    /// Lists `src_dir`, the source of `dest`.
    fn list(&self, src_dir: &Path, dest: &EntryPath) -> Result<Listing, Error> {
        let what = self.what;
        let mut out = Listing {
            entries: Vec::new(),
            dirs: Vec::new(),
            linked: Vec::new(),
        };
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
            let src = ent.path();
            let name = ent.file_name();
            let name = name.to_str().ok_or_else(|| {
                Error::Invalid(format!(
                    "{what}: {} has a name that is not UTF-8; rename it",
                    src.display()
                ))
            })?;
            // Before any check of the name: what is left out is not read,
            // and no hard link can point at it.
            let is_dir = ent.file_type().map_err(io_err(&src))?.is_dir();
            if self
                .exclude
                .excludes(&super::exclude::relative(self.at, dest, name), name, is_dir)
            {
                continue;
            }
            // As for declared paths: a control character would forge lines
            // in the plan or reach the terminal.
            if name.contains(char::is_control) {
                return Err(Error::Invalid(format!(
                    "{what}: {} has a name with a control character; rename it",
                    src.display().to_string().escape_debug()
                )));
            }
            let p = dest
                .join(name)
                .map_err(|e| Error::Invalid(format!("{what}: {}: {e}", src.display())))?;
            // Relative to the open directory (no symlink followed), not a
            // walk of the whole path again for each of 100k entries.
            let md = ent.metadata().map_err(io_err(&src))?;
            let ft = md.file_type();
            let entry = if ft.is_dir() {
                let x = self.xattrs_at(handle.as_fd(), name, &src)?;
                out.dirs.push((src, p.clone()));
                Pending::Ready(self.dir(&md, x))
            } else if ft.is_symlink() {
                let target = std::fs::read_link(&src).map_err(io_err(&src))?;
                let target = target.to_str().ok_or_else(|| {
                    Error::Invalid(format!(
                        "{what}: symlink {} has a target that is not UTF-8",
                        src.display()
                    ))
                })?;
                if target.contains(char::is_control) {
                    return Err(Error::Invalid(format!(
                        "{what}: symlink {} has a target with a control character; change it",
                        src.display()
                    )));
                }
                Pending::Ready(Entry::Symlink {
                    target: target.to_owned(),
                    uid: Some(self.ids.uid.unwrap_or(md.uid())),
                    gid: Some(self.ids.gid.unwrap_or(md.gid())),
                })
            } else if ft.is_file() {
                if md.nlink() > 1 {
                    out.linked.push(((md.dev(), md.ino()), p.clone()));
                }
                Pending::File(PendingFile {
                    uid: Some(self.ids.uid.unwrap_or(md.uid())),
                    gid: Some(self.ids.gid.unwrap_or(md.gid())),
                    xattrs: super::boxed(self.xattrs_at(handle.as_fd(), name, &src)?),
                    ..PendingFile::new(
                        Src::Tree(self.index),
                        Some(stat_of(&md)),
                        self.tree.mode.map_or(md.mode() & 0o7777, |m| m.bits()),
                    )
                })
            } else {
                // A socket, fifo or device node: nothing to keep.
                continue;
            };
            out.entries.push((p, entry));
        }
        Ok(out)
    }
}

fn insert_unique(
    out: &mut BTreeMap<EntryPath, Pending>,
    p: EntryPath,
    e: Pending,
    what: &str,
) -> Result<(), Error> {
    if out.contains_key(&p) {
        return Err(Error::Invalid(format!(
            "{what}: the tree provides {p}, which the configuration also declares; declare it in one place only"
        )));
    }
    out.insert(p, e);
    Ok(())
}
