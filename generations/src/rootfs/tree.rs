//! Whole-tree operations (copy, replace, remove, size), temp cleanup and
//! the batched sync.

use super::*;

impl RootDir {
    /// Removes temporary files that an interrupted write left in the
    /// directory `p` (or the root itself for `None`).
    pub fn clean_temps(&self, p: Option<&EntryPath>) -> Result<()> {
        let fd = match self.open_dir(p) {
            Ok(fd) => fd,
            Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => return Ok(()),
            Err(e) => {
                return Err(RootError {
                    path: p.map_or("/".into(), |p| p.to_string()),
                    op: "open",
                    source: e.into(),
                });
            }
        };
        let dup = nix::unistd::dup(fd.as_fd()).map_err(|e| RootError {
            path: "/".into(),
            op: "dup",
            source: e.into(),
        })?;
        let mut dir = nix::dir::Dir::from_fd(dup).map_err(|e| RootError {
            path: p.map_or("/".into(), |p| p.to_string()),
            op: "read directory",
            source: e.into(),
        })?;
        let names: Vec<Vec<u8>> = dir
            .iter()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_bytes().to_vec())
            .filter(|n| n.starts_with(TMP_PREFIX.as_bytes()))
            .collect();
        for n in names {
            let name = OsString::from_vec(n);
            match unlinkat(fd.as_fd(), name.as_os_str(), UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => {
                    return Err(RootError {
                        path: format!(
                            "{}/{}",
                            p.map_or("", |p| p.as_str()),
                            name.to_string_lossy()
                        ),
                        op: "remove temporary file",
                        source: e.into(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Renames `from` to `to` (both below the root, parents opened without
    /// following symlinks). Used for datasets, which move whole: a
    /// directory or a btrfs subvolume keeps its contents and its inode.
    /// Fails if `to` exists and is not an empty directory.
    pub fn rename(&self, from: &EntryPath, to: &EntryPath) -> Result<()> {
        let pf = self.parent(from).map_err(|e| err(from, "open parent", e))?;
        let pt = self.parent(to).map_err(|e| err(to, "open parent", e))?;
        renameat(pf.as_fd(), from.file_name(), pt.as_fd(), to.file_name())
            .map_err(|e| err(from, "rename", e))?;
        self.touch(&pf);
        self.touch(&pt);
        Ok(())
    }

    /// Creates `p` and every missing ancestor (mode 0755), like `mkdir -p`.
    pub fn make_dirs(&self, p: &EntryPath) -> Result<()> {
        let mut all = p.ancestors();
        all.push(p.clone());
        for a in all {
            if !matches!(self.inspect(&a)?, Live::Dir(_)) {
                self.make_dir(&a, None, Owner::default())?;
            }
        }
        Ok(())
    }

    /// Copies the directory `src` to the new directory `dst` (which must not
    /// exist), with every file's content, mode and owner, never following a
    /// symlink. Sockets, fifos and device nodes are skipped: they hold no
    /// data. This is a directory dataset's snapshot.
    pub fn copy_tree(&self, src: &EntryPath, dst: &EntryPath) -> Result<()> {
        let from = self
            .open_dir(Some(src))
            .map_err(|e| err(src, "open directory", e))?;
        let st = fstat(from.as_fd()).map_err(|e| err(src, "stat", e))?;
        let parent = self.parent(dst).map_err(|e| err(dst, "open parent", e))?;
        mkdirat(
            parent.as_fd(),
            dst.file_name(),
            NixMode::from_bits_truncate(0o700),
        )
        .map_err(|e| err(dst, "create directory", e))?;
        let to = self
            .open_dir(Some(dst))
            .map_err(|e| err(dst, "open directory", e))?;
        copy_dir(&from, &to).map_err(|e| err(src, "copy", e))?;
        set_attrs(&to, &st).map_err(|e| err(dst, "chmod", e))?;
        self.touch(&parent);
        Ok(())
    }

    /// Makes the contents of the directory `dir` those of the directory
    /// `from`: every entry of `dir` but `spare` is removed, then `from`'s
    /// entries are copied in (as [`RootDir::copy_tree`] copies). For a zfs
    /// dataset's restore from `<mountpoint>/.zfs/snapshot/<name>`; the
    /// caller has kept the old contents in a snapshot first.
    pub fn replace_contents(&self, dir: &EntryPath, from: &EntryPath, spare: &str) -> Result<()> {
        let to = self
            .open_dir(Some(dir))
            .map_err(|e| err(dir, "open directory", e))?;
        for name in names(&to).map_err(|e| err(dir, "read directory", e))? {
            if name != spare {
                remove_all(&to, &name).map_err(|e| err(dir, "remove", e))?;
            }
        }
        let src = self
            .open_dir(Some(from))
            .map_err(|e| err(from, "open directory", e))?;
        copy_dir(&src, &to).map_err(|e| err(from, "copy", e))?;
        self.touch(&to);
        Ok(())
    }

    /// Removes the directory `p` and everything in it, never following a
    /// symlink. Only for sysgen's own dataset areas (snapshots, detached
    /// copies that gc destroys, staging copies), never for managed paths.
    pub fn remove_tree(&self, p: &EntryPath) -> Result<()> {
        let parent = match self.parent(p) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(err(p, "open parent", e)),
        };
        remove_all(&parent, std::ffi::OsStr::new(p.file_name()))
            .map_err(|e| err(p, "remove", e))?;
        self.touch(&parent);
        Ok(())
    }

    /// The apparent size (sum of file sizes) of everything below the
    /// directory `p`; 0 when it is absent.
    pub fn tree_size(&self, p: &EntryPath) -> Result<u64> {
        let fd = match self.open_dir(Some(p)) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(0),
            Err(e) => return Err(err(p, "open directory", e)),
        };
        dir_size(&fd).map_err(|e| err(p, "measure", e))
    }

    /// The filesystem type (`statfs` magic) of the nearest existing
    /// ancestor of `p` (or `p` itself), and that ancestor.
    pub fn fs_type_at(&self, p: &EntryPath) -> Result<(i64, Option<EntryPath>)> {
        let mut at = Some(p.clone());
        loop {
            match self.open_dir(at.as_ref()) {
                Ok(fd) => {
                    let sf =
                        nix::sys::statfs::fstatfs(fd.as_fd()).map_err(|e| err(p, "statfs", e))?;
                    return Ok((sf.filesystem_type().0 as i64, at));
                }
                Err(Errno::ENOENT) => at = at.and_then(|a| a.parent()),
                Err(e) => return Err(err(p, "open directory", e)),
            }
        }
    }

    /// Free space and inodes on the root's own filesystem, as root may use
    /// them (blocks reserved for root count when sysgen runs as root).
    pub fn free_space(&self) -> io::Result<FreeSpace> {
        let sv = nix::sys::statvfs::fstatvfs(self.fd.as_fd())?;
        let root = nix::unistd::geteuid().is_root();
        let unit = sv.fragment_size() as u64;
        let (blocks, files) = if root {
            (sv.blocks_free() as u64, sv.files_free() as u64)
        } else {
            (sv.blocks_available() as u64, sv.files_available() as u64)
        };
        Ok(FreeSpace {
            // A filesystem that reports no blocks or no inodes at all (btrfs
            // has no inode table) sets no limit there.
            bytes: (sv.blocks() != 0).then(|| blocks.saturating_mul(unit)),
            inodes: (sv.files() != 0).then_some(files),
            block: unit.max(1),
            read_only: sv.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY),
        })
    }

    /// The inode number of the directory `p`, `None` when absent.
    pub fn dir_ino(&self, p: &EntryPath) -> Result<Option<u64>> {
        Ok(match self.inspect(p)? {
            Live::Dir(m) => Some(m.ino),
            _ => None,
        })
    }

    /// Makes everything written through this handle durable: one `syncfs`
    /// per filesystem touched.
    pub fn sync(&self) -> io::Result<()> {
        // The root's own filesystem always: a re-run after a crash may find
        // its changes already made, and must still make them durable.
        syncfs(self.fd.as_fd())?;
        let t = self.touched.lock().unwrap_or_else(|p| p.into_inner());
        for fd in t.values() {
            syncfs(fd.as_fd())?;
        }
        if self.untracked.load(Ordering::Relaxed) {
            nix::unistd::sync();
        }
        Ok(())
    }
}

/// Sets a copy's owner and mode from the original's stat (chown first: it
/// clears set-id bits).
pub(super) fn set_attrs(fd: &OwnedFd, st: &FileStat) -> io::Result<()> {
    nix::unistd::fchown(
        fd.as_fd(),
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
    )?;
    fchmod(fd.as_fd(), NixMode::from_bits_truncate(st.st_mode & 0o7777))?;
    Ok(())
}

pub(super) fn names(dir: &OwnedFd) -> io::Result<Vec<OsString>> {
    let dup = nix::unistd::dup(dir.as_fd())?;
    let mut d = nix::dir::Dir::from_fd(dup)?;
    let mut out = Vec::new();
    for ent in d.iter() {
        let name = ent?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            out.push(OsString::from_vec(name));
        }
    }
    Ok(out)
}

pub(super) fn open_child_dir(dir: &OwnedFd, name: &std::ffi::OsStr) -> io::Result<OwnedFd> {
    Ok(openat(
        dir.as_fd(),
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        NixMode::empty(),
    )?)
}

pub(super) fn kind_of(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

pub(super) fn copy_dir(from: &OwnedFd, to: &OwnedFd) -> io::Result<()> {
    for name in names(from)? {
        let st = fstatat(from.as_fd(), name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)?;
        match kind_of(&st) {
            SFlag::S_IFDIR => {
                mkdirat(
                    to.as_fd(),
                    name.as_os_str(),
                    NixMode::from_bits_truncate(0o700),
                )?;
                let (f, t) = (open_child_dir(from, &name)?, open_child_dir(to, &name)?);
                copy_dir(&f, &t)?;
                set_attrs(&t, &st)?;
            }
            SFlag::S_IFREG => {
                let src = openat(
                    from.as_fd(),
                    name.as_os_str(),
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    NixMode::empty(),
                )?;
                let dst = openat(
                    to.as_fd(),
                    name.as_os_str(),
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    NixMode::from_bits_truncate(0o600),
                )?;
                let (mut src, mut dst) = (File::from(src), File::from(dst));
                io::copy(&mut src, &mut dst)?;
                let dst = OwnedFd::from(dst);
                set_attrs(&dst, &st)?;
            }
            SFlag::S_IFLNK => {
                let target = readlinkat(from.as_fd(), name.as_os_str())?;
                symlinkat(target.as_os_str(), to.as_fd(), name.as_os_str())?;
                fchownat(
                    to.as_fd(),
                    name.as_os_str(),
                    Some(Uid::from_raw(st.st_uid)),
                    Some(Gid::from_raw(st.st_gid)),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )?;
            }
            // Sockets, fifos and device nodes hold no data to keep.
            _ => {}
        }
    }
    Ok(())
}

pub(super) fn remove_all(parent: &OwnedFd, name: &std::ffi::OsStr) -> io::Result<()> {
    let st = match fstatat(parent.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if kind_of(&st) == SFlag::S_IFDIR {
        let dir = open_child_dir(parent, name)?;
        for child in names(&dir)? {
            remove_all(&dir, &child)?;
        }
        unlinkat(parent.as_fd(), name, UnlinkatFlags::RemoveDir)?;
    } else {
        unlinkat(parent.as_fd(), name, UnlinkatFlags::NoRemoveDir)?;
    }
    Ok(())
}

pub(super) fn dir_size(dir: &OwnedFd) -> io::Result<u64> {
    let mut n = 0;
    for name in names(dir)? {
        let st = fstatat(dir.as_fd(), name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)?;
        n += match kind_of(&st) {
            SFlag::S_IFDIR => dir_size(&open_child_dir(dir, &name)?)?,
            SFlag::S_IFREG => st.st_size as u64,
            _ => 0,
        };
    }
    Ok(n)
}
