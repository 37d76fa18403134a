//! Applying the tree's steps: each converges its path through the one
//! writer ([`RootDir`]), whatever it finds there. Runs of files and
//! symlinks are written in parallel, on every core.

use std::fs::File;
use std::io;
use std::io::Write;

use rayon::prelude::*;
use sysgen_schema::EntryPath;
use sysgen_store::{Area, Hash, Store, fault};

use super::FileStep;
use crate::Error;
use crate::kind::ApplyCx;
use crate::rootfs::xattr::{ACL_ACCESS, ACL_DEFAULT};
use crate::rootfs::{Live, Owner, ParentDir, Removed, RootDir, WantFile, Xattrs};

/// Runs the first of `steps`, and the run of file and symlink writes that
/// starts with it, if any. Returns how many steps ran.
pub(super) fn apply_from<'s>(
    steps: &mut dyn Iterator<Item = &'s FileStep>,
    cx: &mut ApplyCx<'_>,
) -> Result<usize, Error> {
    let Some(first) = steps.next() else {
        return Ok(0);
    };
    let Some(put) = Put::of(first) else {
        run(cx, first)?;
        (cx.step_done)(0);
        return Ok(1);
    };
    // A run is taken a batch at a time: a first switch is one run of a
    // write per file, and its whole list of writes beside the plan held
    // another 70 bytes a file.
    let mut puts: Vec<Put<'s>> = Vec::with_capacity(PUT_BATCH);
    puts.push(put);
    puts.extend((&mut *steps).take(PUT_BATCH - 1).map_while(Put::of));
    if puts.len() == 1 {
        run(cx, first)?;
        (cx.step_done)(0);
        return Ok(1);
    }
    let mut ran = 0;
    loop {
        // A full batch may be followed by more of the run.
        let more = puts.len() == PUT_BATCH;
        put_run(cx, &puts, ran)?;
        ran += puts.len();
        puts.clear();
        if !more {
            return Ok(ran);
        }
        puts.extend((&mut *steps).take(PUT_BATCH).map_while(Put::of));
        if puts.is_empty() {
            return Ok(ran);
        }
    }
}

/// Writes `puts` in parallel; `base` is the place of the first among the
/// steps `apply_from` was handed.
fn put_run(cx: &mut ApplyCx<'_>, puts: &[Put<'_>], base: usize) -> Result<(), Error> {
    // Writing files is most of a large switch; the steps of such a run
    // write distinct paths whose parents earlier steps made, so they can
    // run in any order, on every core. Entries of one directory go
    // together, through one handle on it; each group knows where it
    // starts, so an error names its step.
    let mut groups: Vec<(usize, &[Put<'_>])> = Vec::new();
    let mut at = base;
    for g in puts
        .chunk_by(|a, b| a.path().parent() == b.path().parent())
        .flat_map(|g| g.chunks(PUT_GROUP))
    {
        groups.push((at, g));
        at += g.len();
    }
    let (root, store, step_done) = (cx.root, cx.store, cx.step_done);
    let ran = groups
        .par_iter()
        .try_for_each(|&(at, g)| -> Result<(), Box<(usize, Error)>> {
            let parent = root
                .open_parent(g[0].path())
                .map_err(|e| Box::new((at, e.into())))?;
            let mut result = Ok(());
            for (i, p) in g.iter().enumerate() {
                result = p
                    .run_in(root, Some(&parent), store)
                    .map_err(|e| Box::new((at + i, e)));
                if result.is_err() {
                    break;
                }
                step_done(at + i);
            }
            // Even after an error: what was written must reach the disk.
            root.touched(&parent);
            result
        });
    if let Err(f) = ran {
        let (at, e) = *f;
        cx.failed_at = at;
        return Err(e);
    }
    Ok(())
}

/// Runs one file step.
pub(super) fn run(cx: &mut ApplyCx<'_>, step: &FileStep) -> Result<(), Error> {
    let root = cx.root;
    match step {
        FileStep::Remove { path, .. } => {
            if root.remove(path)? == Removed::KeptNotEmpty {
                cx.kept.push(path.to_string());
            }
        }
        // A lone file or symlink; runs of them are written in parallel.
        FileStep::PutFile { .. } | FileStep::PutSymlink { .. } => {
            if let Some(p) = Put::of(step) {
                p.run_in(root, None, cx.store)?;
            }
        }
        FileStep::MakeDir {
            path,
            mode,
            uid,
            gid,
            xattrs,
            ..
        } => {
            // Converge: a file or symlink left here by an interrupted plan goes first.
            if matches!(root.inspect(path)?, Live::File(_) | Live::Symlink { .. }) {
                root.remove(path)?;
            }
            let created = root.make_dir(path, *mode, owner(*uid, *gid))?;
            // A directory sysgen makes with declared attributes has exactly
            // the ACLs it records, not those inherited from its parent.
            let inherited = [ACL_ACCESS.to_owned(), ACL_DEFAULT.to_owned()];
            let drop: &[String] = if created && mode.is_some() {
                &inherited
            } else {
                &[]
            };
            if !xattrs.is_empty() || !drop.is_empty() {
                root.apply_xattrs(path, xattrs, drop)?;
            }
        }
        FileStep::SetMeta {
            path,
            mode,
            uid,
            gid,
            xattrs,
            drop,
            ..
        } => match root.inspect(path)? {
            Live::Symlink { .. } => root.set_meta(path, *mode, owner(*uid, *gid))?,
            Live::File(_) | Live::Dir(_) => {
                root.set_meta(path, *mode, owner(*uid, *gid))?;
                // Again after the chown, which cleared a capability; a
                // directory has none to lose, nor to remove.
                if !xattrs.is_empty() || !drop.is_empty() || uid.is_some() || gid.is_some() {
                    root.apply_xattrs(path, xattrs, drop)?;
                }
            }
            _ => {}
        },
        FileStep::Link { path, to, .. } => {
            // Converge: an empty directory left by an interrupted plan goes first.
            if matches!(root.inspect(path)?, Live::Dir(_)) {
                root.remove(path)?;
            }
            root.hard_link(path, to)?;
        }
    }
    Ok(())
}

/// The most writes of a run held at once.
const PUT_BATCH: usize = 1 << 16;

/// The most entries of one directory written by one task: a directory of
/// thousands of files still spreads over every core.
const PUT_GROUP: usize = 64;

/// A step that writes one file or symlink, touching no other path.
enum Put<'a> {
    File {
        path: &'a EntryPath,
        hash: &'a Hash,
        mode: u32,
        owner: Owner,
        area: Area,
        size: u64,
        xattrs: &'a Xattrs,
    },
    Symlink {
        path: &'a EntryPath,
        target: &'a str,
        owner: Owner,
    },
}

impl<'a> Put<'a> {
    fn of(step: &'a FileStep) -> Option<Put<'a>> {
        match step {
            FileStep::PutFile {
                path,
                hash,
                mode,
                uid,
                gid,
                secret,
                size,
                xattrs,
                ..
            } => Some(Put::File {
                path,
                hash,
                xattrs,
                size: *size,
                mode: *mode,
                owner: owner(*uid, *gid),
                area: if *secret { Area::Secret } else { Area::Public },
            }),
            FileStep::PutSymlink {
                path,
                target,
                uid,
                gid,
                ..
            } => Some(Put::Symlink {
                path,
                target,
                owner: owner(*uid, *gid),
            }),
            _ => None,
        }
    }

    fn path(&self) -> &'a EntryPath {
        match self {
            Put::File { path, .. } | Put::Symlink { path, .. } => path,
        }
    }

    /// Runs the step through `parent`, or through a handle of its own.
    fn run_in(
        &self,
        root: &RootDir,
        parent: Option<&ParentDir>,
        store: &Store,
    ) -> Result<(), Error> {
        match *self {
            // The store verifies the content against its hash before it
            // clones it, or while it copies it; on a mismatch the file is
            // discarded (a temp file never renamed, or a file made in place
            // removed).
            Put::File {
                path,
                hash,
                mode,
                owner,
                area,
                size,
                xattrs,
            } => {
                let own;
                let dir = match parent {
                    Some(d) => d,
                    None => {
                        own = root.open_parent(path)?;
                        &own
                    }
                };
                let fault = store.fault_point();
                let fill = &mut |f: &mut File| {
                    if fault.is(fault::FILES_PUT_PARTIAL) {
                        crash_half_written(store, hash, area, f);
                    }
                    // A clone when the store is plain (a switch writes no
                    // data), a copy otherwise.
                    store
                        .clone_into(hash, area, f)
                        .map(|_| ())
                        .map_err(io::Error::other)
                };
                // Nearly every file of a first switch is new: made in place.
                let written = match root.create_file_x_in(dir, path, mode, owner, xattrs, fill) {
                    Ok(true) => Ok(()),
                    Ok(false) => {
                        // Already as wanted (an undo putting back what never
                        // changed, a recover re-running a written step):
                        // writing it again would change nothing and needs
                        // free space.
                        let want = WantFile {
                            size,
                            hash: hash.as_bytes(),
                            mode,
                            owner,
                            xattrs,
                        };
                        if root.file_is_in(dir, path, &want)? {
                            return Ok(());
                        }
                        root.put_file_x_in(dir, path, mode, owner, xattrs, fill)
                    }
                    Err(e) => Err(e),
                };
                // A handle of its own: the caller does not know to sync it.
                if parent.is_none() {
                    root.touched(dir);
                }
                written?;
            }
            Put::Symlink {
                path,
                target,
                owner,
            } => match parent {
                Some(d) => root.put_symlink_in(d, path, target, owner)?,
                None => root.put_symlink(path, target, owner)?,
            },
        }
        Ok(())
    }
}

/// The fault point `files.put.partial`: writes the first half of the
/// object, makes it reach the disk, and aborts, as a power cut in the middle
/// of a file would. With a plain store it stands for a clone cut short: a
/// clone is not atomic against a power cut either (the file's size and
/// extents reach the disk separately), and the redo must not trust such a
/// file whichever way it was filled.
fn crash_half_written(store: &Store, hash: &Hash, area: Area, w: &mut File) {
    if let Ok(bytes) = store.read(hash, area) {
        let _ = w.write_all(&bytes[..bytes.len() / 2]);
    }
    nix::unistd::sync();
    std::process::abort();
}

fn owner(uid: Option<u32>, gid: Option<u32>) -> Owner {
    Owner { uid, gid }
}
