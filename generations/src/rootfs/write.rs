//! Writes: files, symlinks, directories, metadata and removals, each
//! through a handle on its parent directory.

use super::hash_open;
use super::tree::kind_of;
use super::*;

/// What a file must be for [`RootDir::file_is_in`].
#[derive(Clone, Copy)]
pub struct WantFile<'a> {
    pub size: u64,
    pub hash: &'a [u8; 32],
    pub mode: u32,
    pub owner: Owner,
    pub xattrs: &'a Xattrs,
}

impl RootDir {
    pub(super) fn touch(&self, dir: &OwnedFd) {
        let dev = match fstat(dir.as_fd()) {
            Ok(st) => st.st_dev,
            Err(_) => {
                // Cannot tell which filesystem: `sync` will flush them all.
                self.untracked.store(true, Ordering::Relaxed);
                return;
            }
        };
        let mut t = self.touched.lock().unwrap_or_else(|p| p.into_inner());
        if let std::collections::btree_map::Entry::Vacant(slot) = t.entry(dev) {
            match nix::unistd::dup(dir.as_fd()) {
                Ok(fd) => {
                    slot.insert(fd);
                }
                Err(_) => self.untracked.store(true, Ordering::Relaxed),
            }
        }
    }

    /// A temporary name in `p`'s directory. Only the start of `p`'s name
    /// is kept (it is there for a human who finds a leftover), so the temp
    /// name stays short whatever the name: a 255-byte name must work.
    pub(super) fn tmp_name(&self, p: &EntryPath) -> String {
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let name = p.file_name();
        let mut keep = name.len().min(TMP_NAME_HINT);
        while !name.is_char_boundary(keep) {
            keep -= 1;
        }
        format!("{TMP_PREFIX}{}.{}.{}", std::process::id(), n, &name[..keep])
    }

    /// Replaces whatever file or symlink is at `p` with a regular file whose
    /// content `fill` writes, with exactly `mode` and `owner`. An empty
    /// directory at `p` is replaced; one with entries is an error (the plan
    /// removes it first).
    ///
    /// `fill` should write in large chunks: the file is not buffered.
    pub fn put_file(
        &self,
        p: &EntryPath,
        mode: u32,
        owner: Owner,
        fill: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
    ) -> Result<()> {
        let parent = self.open_parent(p)?;
        self.put_file_in(&parent, p, mode, owner, fill)?;
        self.touch(&parent.fd);
        Ok(())
    }

    /// Opens the parent directory of `p`, for several `*_in` calls on
    /// entries of that one directory. The caller calls [`RootDir::touched`]
    /// after writing through it.
    pub fn open_parent(&self, p: &EntryPath) -> Result<ParentDir> {
        Ok(ParentDir::new(
            self.parent(p).map_err(|e| err(p, "open parent", e))?,
            p.parent(),
        ))
    }

    /// Records that entries were written through `parent`, for [`RootDir::sync`].
    pub fn touched(&self, parent: &ParentDir) {
        self.touch(&parent.fd);
    }

    pub(super) fn check_parent(parent: &ParentDir, p: &EntryPath) -> Result<()> {
        if parent.path != p.parent() {
            return Err(err(
                p,
                "open parent",
                io::Error::new(io::ErrorKind::InvalidInput, "wrong parent directory handle"),
            ));
        }
        Ok(())
    }

    /// [`RootDir::put_file`] through a parent handle from [`RootDir::open_parent`].
    pub fn put_file_in(
        &self,
        parent: &ParentDir,
        p: &EntryPath,
        mode: u32,
        owner: Owner,
        fill: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
    ) -> Result<()> {
        self.put_file_x_in(parent, p, mode, owner, &Xattrs::default(), &mut |f| fill(f))
    }

    /// [`RootDir::put_file_in`], with the extended attributes `xattrs`.
    pub fn put_file_x_in(
        &self,
        parent: &ParentDir,
        p: &EntryPath,
        mode: u32,
        owner: Owner,
        xattrs: &Xattrs,
        fill: &mut dyn FnMut(&mut File) -> io::Result<()>,
    ) -> Result<()> {
        Self::check_parent(parent, p)?;
        let parent = &parent.fd;
        let tmp = self.tmp_name(p);
        let fd = openat(
            parent.as_fd(),
            tmp.as_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            NixMode::from_bits_truncate(0o600),
        )
        .map_err(|e| err(p, "create temporary file", e))?;
        let mut f = File::from(fd);
        if let Err(e) = seal(&mut f, mode, owner, xattrs, None, fill) {
            let _ = unlinkat(parent.as_fd(), tmp.as_str(), UnlinkatFlags::NoRemoveDir);
            return Err(err(p, "write", e));
        }
        drop(f);
        if let Err(e) = self.rename_into_place(parent, &tmp, p) {
            let _ = unlinkat(parent.as_fd(), tmp.as_str(), UnlinkatFlags::NoRemoveDir);
            return Err(err(p, "rename into place", e));
        }
        Ok(())
    }

    /// Creates `p`, which must not exist, in place: `O_CREAT|O_EXCL` on
    /// its own name, no temp file, no rename (issue 14: a first switch
    /// writes most of its files this way). Returns `false`, having changed
    /// nothing, when `p` exists in any form (even a dangling symlink); the
    /// caller then replaces it with [`RootDir::put_file_x_in`].
    ///
    /// Until the content is written the file is visible half-written under
    /// its final name. That name was free when the switch began, so nothing
    /// read it before; a crash leaves the step to redo or undo, and both
    /// converge (redo finds it and replaces it, undo removes it), as the
    /// journal records the step as not done.
    pub fn create_file_x_in(
        &self,
        parent: &ParentDir,
        p: &EntryPath,
        mode: u32,
        owner: Owner,
        xattrs: &Xattrs,
        fill: &mut dyn FnMut(&mut File) -> io::Result<()>,
    ) -> Result<bool> {
        Self::check_parent(parent, p)?;
        let gives = parent
            .gives()
            .map_err(|e| err(p, "read the parent's defaults", e))?;
        let parent = &parent.fd;
        // Created with its final mode where that is what the kernel gives
        // it: then no fchmod follows (a call per file of a first switch).
        let exact = created_exact(mode, owner, gives);
        let fd = match openat(
            parent.as_fd(),
            p.file_name(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            NixMode::from_bits_truncate(if exact { mode } else { 0o600 }),
        ) {
            Ok(fd) => fd,
            Err(Errno::EEXIST) => return Ok(false),
            Err(e) => return Err(err(p, "create", e)),
        };
        let mut f = File::from(fd);
        let fresh = Fresh { gives, exact };
        if let Err(e) = seal(&mut f, mode, owner, xattrs, Some(fresh), fill) {
            // Ours since the O_EXCL: nobody else's file goes.
            let _ = unlinkat(parent.as_fd(), p.file_name(), UnlinkatFlags::NoRemoveDir);
            return Err(err(p, "write", e));
        }
        Ok(true)
    }

    /// True when `p`, an entry of `parent`, is already what
    /// [`RootDir::put_file_in`] would make of it: a regular file with no
    /// other name, of `size` bytes whose BLAKE3 is `hash`, with exactly
    /// `mode`, owned as `owner` says (an id left `None` as a write would
    /// leave it: sysgen's own), and with the attributes `xattrs` records.
    /// Writing it again would change nothing but use space, which an undo
    /// after a full disk lacks.
    pub fn file_is_in(&self, parent: &ParentDir, p: &EntryPath, want: &WantFile) -> Result<bool> {
        let WantFile {
            size,
            hash,
            mode,
            owner,
            xattrs,
        } = *want;
        Self::check_parent(parent, p)?;
        let st = match fstatat(
            parent.fd.as_fd(),
            p.file_name(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(false),
            Err(e) => return Err(err(p, "stat", e)),
        };
        let uid = owner.uid.unwrap_or_else(|| nix::unistd::geteuid().as_raw());
        let gid = owner.gid.unwrap_or_else(|| nix::unistd::getegid().as_raw());
        let same_meta = |st: &FileStat| {
            st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFREG.bits()
                && st.st_nlink == 1
                && st.st_mode & 0o7777 == mode
                && st.st_uid == uid
                && st.st_gid == gid
                && st.st_size as u64 == size
        };
        if !same_meta(&st) {
            return Ok(false);
        }
        let fd = openat(
            parent.fd.as_fd(),
            p.file_name(),
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            NixMode::empty(),
        )
        .map_err(|e| err(p, "open", e))?;
        let f = File::from(fd);
        // The file hashed must be the one looked at, not one renamed there since.
        let now = fstat(f.as_fd()).map_err(|e| err(p, "stat", e))?;
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) || !same_meta(&now) {
            return Ok(false);
        }
        let same_xattrs = super::xattr::matches_fd(f.as_fd(), xattrs)
            .map_err(|e| err(p, "read xattrs", e))?
            .is_none();
        let (h, n) = hash_open(f, p)?;
        Ok(same_xattrs && n == size && h.as_bytes() == hash)
    }

    /// Makes `p` another name of the regular file `to` (both below the
    /// root, never through a symlink): linked under a temporary name, then
    /// renamed over whatever file or symlink is at `p`. Nothing is done
    /// when `p` is that file already.
    pub fn hard_link(&self, p: &EntryPath, to: &EntryPath) -> Result<()> {
        let from_dir = self.parent(to).map_err(|e| err(to, "open parent", e))?;
        let st = fstatat(
            from_dir.as_fd(),
            to.file_name(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| err(to, "stat", e))?;
        if kind_of(&st) != SFlag::S_IFREG {
            return Err(err(
                p,
                "hard link",
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{to}, which it must be another name of, is not a regular file"),
                ),
            ));
        }
        let dir = self.parent(p).map_err(|e| err(p, "open parent", e))?;
        match fstatat(dir.as_fd(), p.file_name(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(now) if (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino) => return Ok(()),
            _ => {}
        }
        let tmp = self.tmp_name(p);
        rustix::fs::linkat(
            &from_dir,
            to.file_name(),
            &dir,
            tmp.as_str(),
            rustix::fs::AtFlags::empty(),
        )
        .map_err(|e| err(p, "hard link", io::Error::from(e)))?;
        if let Err(e) = self.rename_into_place(&dir, &tmp, p) {
            let _ = unlinkat(dir.as_fd(), tmp.as_str(), UnlinkatFlags::NoRemoveDir);
            return Err(err(p, "rename into place", e));
        }
        self.touch(&dir);
        Ok(())
    }

    /// Renames the temp entry `tmp` over `p`. An empty directory at `p` (left
    /// by an interrupted plan that was replacing a directory with a file)
    /// is removed first; one that holds entries stays, and the rename fails.
    /// Checked on failure rather than before: nearly always there is none.
    pub(super) fn rename_into_place(
        &self,
        parent: &OwnedFd,
        tmp: &str,
        p: &EntryPath,
    ) -> std::result::Result<(), Errno> {
        match renameat(parent.as_fd(), tmp, parent.as_fd(), p.file_name()) {
            Err(Errno::EISDIR) => {
                unlinkat(parent.as_fd(), p.file_name(), UnlinkatFlags::RemoveDir)?;
                renameat(parent.as_fd(), tmp, parent.as_fd(), p.file_name())
            }
            other => other,
        }
    }

    /// Replaces whatever file or symlink is at `p` with a symlink to `target`.
    pub fn put_symlink(&self, p: &EntryPath, target: &str, owner: Owner) -> Result<()> {
        let parent = self.open_parent(p)?;
        self.put_symlink_in(&parent, p, target, owner)?;
        self.touch(&parent.fd);
        Ok(())
    }

    /// [`RootDir::put_symlink`] through a parent handle from [`RootDir::open_parent`].
    pub fn put_symlink_in(
        &self,
        parent: &ParentDir,
        p: &EntryPath,
        target: &str,
        owner: Owner,
    ) -> Result<()> {
        Self::check_parent(parent, p)?;
        let parent = &parent.fd;
        let tmp = self.tmp_name(p);
        symlinkat(target, parent.as_fd(), tmp.as_str()).map_err(|e| err(p, "create symlink", e))?;
        if (owner.uid.is_some() || owner.gid.is_some())
            && let Err(e) = fchownat(
                parent.as_fd(),
                tmp.as_str(),
                owner.uid.map(Uid::from_raw),
                owner.gid.map(Gid::from_raw),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
        {
            let _ = unlinkat(parent.as_fd(), tmp.as_str(), UnlinkatFlags::NoRemoveDir);
            return Err(err(p, "chown symlink", e));
        }
        if let Err(e) = self.rename_into_place(parent, &tmp, p) {
            let _ = unlinkat(parent.as_fd(), tmp.as_str(), UnlinkatFlags::NoRemoveDir);
            return Err(err(p, "rename into place", e));
        }
        Ok(())
    }

    /// Creates the directory `p` if it is absent. Returns true if it created
    /// it. Sets `mode`/`owner` when given (on an existing directory too).
    pub fn make_dir(&self, p: &EntryPath, mode: Option<u32>, owner: Owner) -> Result<bool> {
        let parent = self.parent(p).map_err(|e| err(p, "open parent", e))?;
        let created = match mkdirat(
            parent.as_fd(),
            p.file_name(),
            NixMode::from_bits_truncate(0o700),
        ) {
            Ok(()) => true,
            Err(Errno::EEXIST) => false,
            Err(e) => return Err(err(p, "create directory", e)),
        };
        self.touch(&parent);
        // A new directory without a declared mode gets 0755 whatever the umask.
        let mode = mode.or(created.then_some(0o755));
        self.set_meta_in(&parent, p, mode, owner)?;
        Ok(created)
    }

    /// Sets permission bits and/or ownership of the file or directory at `p`
    /// (ownership only, for a symlink), never following a symlink.
    pub fn set_meta(&self, p: &EntryPath, mode: Option<u32>, owner: Owner) -> Result<()> {
        let parent = self.parent(p).map_err(|e| err(p, "open parent", e))?;
        self.set_meta_in(&parent, p, mode, owner)?;
        self.touch(&parent);
        Ok(())
    }

    pub(super) fn set_meta_in(
        &self,
        parent: &OwnedFd,
        p: &EntryPath,
        mode: Option<u32>,
        owner: Owner,
    ) -> Result<()> {
        if mode.is_none() && owner.uid.is_none() && owner.gid.is_none() {
            return Ok(());
        }
        // A regular file with other links shares its inode with names that
        // may lie outside the root (a dedup tool, a `cp -al` farm): changing
        // it in place would change them too, so it gets an inode of its own.
        if let Ok(st) = fstatat(parent.as_fd(), p.file_name(), AtFlags::AT_SYMLINK_NOFOLLOW)
            && kind_of(&st) == SFlag::S_IFREG
            && st.st_nlink > 1
        {
            return self.rewrite_with_meta(parent, p, &st, mode, owner);
        }
        if owner.uid.is_some() || owner.gid.is_some() {
            fchownat(
                parent.as_fd(),
                p.file_name(),
                owner.uid.map(Uid::from_raw),
                owner.gid.map(Gid::from_raw),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| err(p, "chown", e))?;
        }
        if let Some(mode) = mode {
            // chmod through an fd opened with O_NOFOLLOW: fchmodat would follow a symlink.
            let fd = match openat(
                parent.as_fd(),
                p.file_name(),
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
                NixMode::empty(),
            ) {
                Ok(fd) => fd,
                // A symlink has no mode of its own.
                Err(Errno::ELOOP) => return Ok(()),
                Err(e) => return Err(err(p, "open for chmod", e)),
            };
            fchmod(fd.as_fd(), NixMode::from_bits_truncate(mode))
                .map_err(|e| err(p, "chmod", e))?;
        }
        Ok(())
    }

    /// Replaces the regular file at `p` (described by `st`) with a copy of
    /// itself that has `mode` and `owner` (the rest as before), through a
    /// temp file and a rename: the old inode, and its other links, keep
    /// their content, mode and owner.
    fn rewrite_with_meta(
        &self,
        parent: &OwnedFd,
        p: &EntryPath,
        st: &FileStat,
        mode: Option<u32>,
        owner: Owner,
    ) -> Result<()> {
        let src = openat(
            parent.as_fd(),
            p.file_name(),
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            NixMode::empty(),
        )
        .map_err(|e| err(p, "open to copy", e))?;
        let mut src = File::from(src);
        let owner = Owner {
            uid: Some(owner.uid.unwrap_or(st.st_uid)),
            gid: Some(owner.gid.unwrap_or(st.st_gid)),
        };
        let mode = mode.unwrap_or(st.st_mode & 0o7777);
        let wrapper = ParentDir::new(
            parent.try_clone().map_err(|e| err(p, "open parent", e))?,
            p.parent(),
        );
        self.put_file_in(&wrapper, p, mode, owner, &mut |out| {
            io::copy(&mut src, out).map(drop)
        })
    }

    /// Removes the file, symlink or empty directory at `p`. A directory that
    /// still holds entries is kept.
    pub fn remove(&self, p: &EntryPath) -> Result<Removed> {
        let parent = match self.parent(p) {
            Ok(fd) => fd,
            // No directory chain leads to `p` inside the root (an ancestor is
            // absent, a file, or a symlink that is never followed): nothing
            // there to remove. Converging after a crash relies on this.
            Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP | Errno::EXDEV) => {
                return Ok(Removed::WasAbsent);
            }
            Err(e) => return Err(err(p, "open parent", e)),
        };
        let is_dir = match fstatat(parent.as_fd(), p.file_name(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFDIR.bits(),
            Err(Errno::ENOENT) => {
                // Gone already (perhaps by the run a crash cut short): make sure
                // that removal reaches the disk with this run's.
                self.touch(&parent);
                return Ok(Removed::WasAbsent);
            }
            Err(e) => return Err(err(p, "stat", e)),
        };
        let flag = if is_dir {
            UnlinkatFlags::RemoveDir
        } else {
            UnlinkatFlags::NoRemoveDir
        };
        let out = match unlinkat(parent.as_fd(), p.file_name(), flag) {
            Ok(()) => Removed::Gone,
            Err(Errno::ENOENT) => Removed::WasAbsent,
            Err(Errno::ENOTEMPTY | Errno::EEXIST) => Removed::KeptNotEmpty,
            Err(e) => return Err(err(p, "remove", e)),
        };
        self.touch(&parent);
        Ok(out)
    }
}

/// The effective ids a file this process creates gets (unless its
/// directory gives its own group): read once, they do not change in a run.
fn creator() -> (u32, u32) {
    static IDS: std::sync::OnceLock<(u32, u32)> = std::sync::OnceLock::new();
    *IDS.get_or_init(|| {
        (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    })
}

/// The process's umask, read once from `/proc/self/status`: `umask(2)`
/// can only be read by setting it, which would change it for a moment for
/// every thread. `None` (no such line, no `/proc`): not known, so no file
/// is created with its final mode.
fn umask() -> Option<u32> {
    static MASK: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    *MASK.get_or_init(|| {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
        u32::from_str_radix(line.trim(), 8).ok()
    })
}

/// Whether a file created with `mode` in a directory that gives `gives`
/// has exactly `mode` at once: the umask takes nothing from it, no default
/// ACL replaces the umask, it has no set-id or sticky bit (the kernel may
/// drop set-gid at creation, and a chown drops set-id bits after it), and
/// no chown follows.
fn created_exact(mode: u32, owner: Owner, gives: Gives) -> bool {
    !gives.acl
        && mode & 0o7000 == 0
        && umask().is_some_and(|m| mode & m == 0)
        && !chown_needed(owner, Some(gives))
}

/// Whether a file needs an `fchown` to be owned as `owner` says; `fresh`:
/// it was just created in a directory that gives that, so it has the
/// creator's ids (or the directory's group).
fn chown_needed(owner: Owner, fresh: Option<Gives>) -> bool {
    match fresh {
        None => owner.uid.is_some() || owner.gid.is_some(),
        Some(g) => {
            let (uid, gid) = creator();
            owner.uid.is_some_and(|u| u != uid)
                || owner.gid.is_some_and(|w| w != g.group.unwrap_or(gid))
        }
    }
}

/// A file just created by this process with `O_EXCL`: what its directory
/// gives it, and whether it was created with its final mode
/// ([`created_exact`]).
#[derive(Clone, Copy)]
struct Fresh {
    gives: Gives,
    exact: bool,
}

/// Fills `f` and gives it exactly `mode`, `owner` and `xattrs`, in the
/// order that leaves each one as the generation says. With `fresh` (see
/// [`Fresh`]) it has no capability (none is inherited), an access ACL only
/// from a default ACL, and the creator's ids, so the calls that would
/// change nothing are not made.
fn seal(
    f: &mut File,
    mode: u32,
    owner: Owner,
    xattrs: &Xattrs,
    fresh: Option<Fresh>,
    fill: &mut dyn FnMut(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    fill(f)?;
    if chown_needed(owner, fresh.map(|f| f.gives)) {
        nix::unistd::fchown(
            f.as_fd(),
            owner.uid.map(Uid::from_raw),
            owner.gid.map(Gid::from_raw),
        )?;
    }
    // After chown: chown clears set-id bits, and the umask must not matter.
    if !fresh.is_some_and(|f| f.exact) {
        fchmod(f.as_fd(), NixMode::from_bits_truncate(mode))?;
    }
    // Last: chown clears a capability, chmod rewrites an ACL's mask.
    // An ACL the new file inherited from its directory's default ACL goes:
    // the file is exactly what the generation records.
    match fresh {
        None => super::xattr::apply_fd(f.as_fd(), xattrs, &[super::xattr::ACL_ACCESS.to_owned()])?,
        Some(g) => super::xattr::apply_new_fd(f.as_fd(), xattrs, g.gives.acl)?,
    }
    Ok(())
}
