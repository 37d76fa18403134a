//! The one writer: every read of and change to a managed root goes through
//! [`RootDir`], which works from a directory handle on the root and never
//! follows a symlink, so a symlink planted inside the root can never lead a
//! write, chmod, chown or delete outside it.
//!
//! Parent directories are opened with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)`: the kernel refuses any symlink on the way and any
//! escape from the root, in one call. The last component is then handled
//! with the `*at` calls and `O_NOFOLLOW` / `AT_SYMLINK_NOFOLLOW`.
//!
//! Files and symlinks are replaced atomically: written under a temporary
//! name in the same directory, then `renameat` over the final name; readers
//! see the old or the new entry, never a half-written one. Durability is
//! batched: instead of one fsync per file, [`RootDir::sync`] runs `syncfs`
//! once on every filesystem this handle touched. The switch protocol calls it
//! before it marks a generation active, and `recover` rewrites every file of
//! an interrupted plan, so a power cut before that point loses nothing.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2, readlinkat, renameat};
use nix::sys::stat::{FileStat, Mode as NixMode, SFlag, fchmod, fstat, fstatat, mkdirat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchownat, symlinkat, syncfs, unlinkat};
use sysgen_schema::EntryPath;

/// What is on the root at a path, read without following symlinks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Live {
    Absent,
    File(Meta),
    Dir(Meta),
    Symlink {
        target: String,
        uid: u32,
        gid: u32,
    },
    /// A socket, fifo or device node: sysgen never manages or replaces these.
    Special(&'static str),
    /// An ancestor is not a directory (a symlink or a file), so nothing
    /// below it can be reached without following or replacing it.
    Blocked {
        at: EntryPath,
        what: &'static str,
    },
}

impl Live {
    pub fn kind(&self) -> &'static str {
        match self {
            Live::Absent => "nothing",
            Live::File(_) => "file",
            Live::Dir(_) => "directory",
            Live::Symlink { .. } => "symlink",
            Live::Special(what) => what,
            Live::Blocked { .. } => "unreachable path",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits only (`0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub ino: u64,
    pub dev: u64,
}

impl Meta {
    fn from_stat(st: &FileStat) -> Meta {
        Meta {
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            size: st.st_size as u64,
            mtime_ns: st.st_mtime * 1_000_000_000 + st.st_mtime_nsec,
            ctime_ns: st.st_ctime * 1_000_000_000 + st.st_ctime_nsec,
            ino: st.st_ino,
            dev: st.st_dev,
        }
    }
}

/// What [`RootDir::remove`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removed {
    Gone,
    WasAbsent,
    /// A directory that still holds entries: kept, never emptied by force.
    KeptNotEmpty,
}

/// A failed operation on the root, naming the path.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {op}: {source}")]
pub struct RootError {
    pub path: String,
    pub op: &'static str,
    #[source]
    pub source: io::Error,
}

type Result<T> = std::result::Result<T, RootError>;

fn err(path: &EntryPath, op: &'static str, e: impl Into<io::Error>) -> RootError {
    RootError {
        path: path.to_string(),
        op,
        source: e.into(),
    }
}

/// Owner and group to set; `None` leaves that id alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Owner {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// An open directory of the root, for writing several of its entries
/// without resolving its path again for each ([`RootDir::open_parent`]).
pub struct ParentDir {
    fd: OwnedFd,
    /// The directory's path (`None`: the root), checked against each entry.
    path: Option<EntryPath>,
}

impl AsFd for ParentDir {
    /// For a child tool that must name an entry of this directory
    /// (`/proc/self/fd/N/name`): the tool then resolves only the last
    /// component, never the path from the root again.
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A handle on a root directory; the only way sysgen touches a root.
pub struct RootDir {
    fd: OwnedFd,
    path: PathBuf,
    /// One open directory per filesystem that was written to, for `sync`.
    touched: Mutex<BTreeMap<u64, OwnedFd>>,
    /// A written directory whose filesystem could not be told (its fstat or
    /// dup failed): `sync` then flushes every filesystem.
    untracked: AtomicBool,
    tmp_counter: AtomicU64,
}

const TMP_PREFIX: &str = ".sysgen-tmp.";

thread_local! {
    // verify and precheck hash every managed file: one buffer per thread,
    // not one allocated and zeroed per file.
    static HASH_BUF: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0u8; 64 * 1024].into_boxed_slice());
}

impl RootDir {
    pub fn open(path: &Path) -> io::Result<RootDir> {
        let fd = openat(
            nix::fcntl::AT_FDCWD,
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            NixMode::empty(),
        )
        .map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("{}: {e}", path.display()),
            )
        })?;
        Ok(RootDir {
            fd,
            path: path.to_owned(),
            touched: Mutex::new(BTreeMap::new()),
            untracked: AtomicBool::new(false),
            tmp_counter: AtomicU64::new(0),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The host path of an entry, for messages only: never open it.
    pub fn display(&self, p: &EntryPath) -> String {
        format!(
            "{}{}",
            self.path.display().to_string().trim_end_matches('/'),
            p
        )
    }

    /// Opens the directory `p` (a path below the root, or the root itself
    /// for `None`) without following any symlink.
    fn open_dir(&self, p: Option<&EntryPath>) -> std::result::Result<OwnedFd, Errno> {
        match p {
            None => nix::unistd::dup(self.fd.as_fd()),
            Some(p) => openat2(
                self.fd.as_fd(),
                &p.as_str()[1..],
                OpenHow::new()
                    .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
                    .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS),
            ),
        }
    }

    fn parent(&self, p: &EntryPath) -> std::result::Result<OwnedFd, Errno> {
        self.open_dir(p.parent().as_ref())
    }

    /// Why the parent of `p` cannot be opened: the first ancestor that is
    /// not a directory, or `None` when an ancestor is simply absent.
    fn blocker(&self, p: &EntryPath) -> Result<Option<Live>> {
        for a in p.ancestors() {
            let parent = match self.parent(&a) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => return Ok(None),
                Err(e) => return Err(err(&a, "open", e)),
            };
            match fstatat(parent.as_fd(), a.file_name(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => {
                    let what = match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
                        SFlag::S_IFDIR => continue,
                        SFlag::S_IFLNK => "symlink",
                        SFlag::S_IFREG => "file",
                        _ => "special file",
                    };
                    return Ok(Some(Live::Blocked { at: a, what }));
                }
                Err(Errno::ENOENT) => return Ok(None),
                Err(e) => return Err(err(&a, "stat", e)),
            }
        }
        Ok(None)
    }

    /// What is at `p`, without following symlinks anywhere.
    pub fn inspect(&self, p: &EntryPath) -> Result<Live> {
        let parent = match self.parent(p) {
            Ok(fd) => fd,
            Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP | Errno::EXDEV) => {
                return Ok(self.blocker(p)?.unwrap_or(Live::Absent));
            }
            Err(e) => return Err(err(p, "open parent", e)),
        };
        let st = match fstatat(parent.as_fd(), p.file_name(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(Live::Absent),
            Err(e) => return Err(err(p, "stat", e)),
        };
        let meta = Meta::from_stat(&st);
        Ok(
            match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
                SFlag::S_IFREG => Live::File(meta),
                SFlag::S_IFDIR => Live::Dir(meta),
                SFlag::S_IFLNK => {
                    let target = readlinkat(parent.as_fd(), p.file_name())
                        .map_err(|e| err(p, "readlink", e))?;
                    Live::Symlink {
                        target: target.into_string().map_err(|_| {
                            err(
                                p,
                                "readlink",
                                io::Error::new(io::ErrorKind::InvalidData, "target is not UTF-8"),
                            )
                        })?,
                        uid: meta.uid,
                        gid: meta.gid,
                    }
                }
                SFlag::S_IFIFO => Live::Special("fifo"),
                SFlag::S_IFSOCK => Live::Special("socket"),
                SFlag::S_IFCHR | SFlag::S_IFBLK => Live::Special("device node"),
                _ => Live::Special("unknown file type"),
            },
        )
    }

    /// Opens the regular file at `p` for reading, refusing symlinks.
    pub fn open_file(&self, p: &EntryPath) -> Result<File> {
        let parent = self.parent(p).map_err(|e| err(p, "open parent", e))?;
        let fd = openat(
            parent.as_fd(),
            p.file_name(),
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            NixMode::empty(),
        )
        .map_err(|e| err(p, "open", e))?;
        let f = File::from(fd);
        let st = fstat(f.as_fd()).map_err(|e| err(p, "stat", e))?;
        if st.st_mode & SFlag::S_IFMT.bits() != SFlag::S_IFREG.bits() {
            return Err(err(
                p,
                "open",
                io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
            ));
        }
        Ok(f)
    }

    /// BLAKE3 of the file at `p` and its size.
    pub fn hash_file(&self, p: &EntryPath) -> Result<(blake3::Hash, u64)> {
        let mut f = self.open_file(p)?;
        let mut h = blake3::Hasher::new();
        let mut n = 0u64;
        HASH_BUF.with(|cell| {
            let mut buf = cell.borrow_mut();
            loop {
                let k = match f.read(&mut buf[..]) {
                    Ok(0) => break,
                    Ok(k) => k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(err(p, "read", e)),
                };
                n += k as u64;
                h.update(&buf[..k]);
            }
            Ok((h.finalize(), n))
        })
    }

    /// Names in the directory `p`, excluding `.` and `..`.
    pub fn list_dir(&self, p: &EntryPath) -> Result<Vec<OsString>> {
        let fd = self
            .open_dir(Some(p))
            .map_err(|e| err(p, "open directory", e))?;
        let mut dir = nix::dir::Dir::from_fd(fd).map_err(|e| err(p, "read directory", e))?;
        let mut out = Vec::new();
        for ent in dir.iter() {
            let ent = ent.map_err(|e| err(p, "read directory", e))?;
            let name = ent.file_name().to_bytes();
            if name != b"." && name != b".." {
                out.push(OsString::from_vec(name.to_vec()));
            }
        }
        Ok(out)
    }

    fn touch(&self, dir: &OwnedFd) {
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

    fn tmp_name(&self, p: &EntryPath) -> String {
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        format!("{TMP_PREFIX}{}.{}.{}", std::process::id(), n, p.file_name())
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
        Ok(ParentDir {
            fd: self.parent(p).map_err(|e| err(p, "open parent", e))?,
            path: p.parent(),
        })
    }

    /// Records that entries were written through `parent`, for [`RootDir::sync`].
    pub fn touched(&self, parent: &ParentDir) {
        self.touch(&parent.fd);
    }

    fn check_parent(parent: &ParentDir, p: &EntryPath) -> Result<()> {
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
        let written = (|| -> io::Result<()> {
            fill(&mut f)?;
            if owner.uid.is_some() || owner.gid.is_some() {
                nix::unistd::fchown(
                    f.as_fd(),
                    owner.uid.map(Uid::from_raw),
                    owner.gid.map(Gid::from_raw),
                )?;
            }
            // After chown: chown clears set-id bits, and the umask must not matter.
            fchmod(f.as_fd(), NixMode::from_bits_truncate(mode))?;
            Ok(())
        })();
        if let Err(e) = written {
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

    /// Renames the temp entry `tmp` over `p`. An empty directory at `p` (left
    /// by an interrupted plan that was replacing a directory with a file)
    /// is removed first; one that holds entries stays, and the rename fails.
    /// Checked on failure rather than before: nearly always there is none.
    fn rename_into_place(
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

    fn set_meta_in(
        &self,
        parent: &OwnedFd,
        p: &EntryPath,
        mode: Option<u32>,
        owner: Owner,
    ) -> Result<()> {
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
fn set_attrs(fd: &OwnedFd, st: &FileStat) -> io::Result<()> {
    nix::unistd::fchown(
        fd.as_fd(),
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
    )?;
    fchmod(fd.as_fd(), NixMode::from_bits_truncate(st.st_mode & 0o7777))?;
    Ok(())
}

fn names(dir: &OwnedFd) -> io::Result<Vec<OsString>> {
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

fn open_child_dir(dir: &OwnedFd, name: &std::ffi::OsStr) -> io::Result<OwnedFd> {
    Ok(openat(
        dir.as_fd(),
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        NixMode::empty(),
    )?)
}

fn kind_of(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

fn copy_dir(from: &OwnedFd, to: &OwnedFd) -> io::Result<()> {
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

fn remove_all(parent: &OwnedFd, name: &std::ffi::OsStr) -> io::Result<()> {
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

fn dir_size(dir: &OwnedFd) -> io::Result<u64> {
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
