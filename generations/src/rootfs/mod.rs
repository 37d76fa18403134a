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

mod tree;
mod write;
pub mod xattr;

pub use write::WantFile;
pub use xattr::Xattrs;

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

/// What the root's filesystem has free ([`RootDir::free_space`]); `None`
/// where it sets no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreeSpace {
    pub bytes: Option<u64>,
    pub inodes: Option<u64>,
    /// Its allocation unit: a file takes whole blocks.
    pub block: u64,
    /// Mounted read-only: nothing can be written at all.
    pub read_only: bool,
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
    /// What the directory gives a file created in it, read on first need.
    gives: std::sync::OnceLock<Gives>,
}

/// What a directory gives a file created in it besides what the creator
/// asks for: an access ACL from its default ACL, and its own group when
/// it is set-group-id. A file created where it gives neither needs no
/// `fchown` to the creator's ids and no ACL removed (issue 14: a first
/// switch saves three calls per file).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gives {
    pub acl: bool,
    pub group: Option<u32>,
}

impl ParentDir {
    fn new(fd: OwnedFd, path: Option<EntryPath>) -> ParentDir {
        ParentDir {
            fd,
            path,
            gives: std::sync::OnceLock::new(),
        }
    }

    /// [`Gives`] of this directory, asked of the kernel once.
    pub(crate) fn gives(&self) -> io::Result<Gives> {
        if let Some(g) = self.gives.get() {
            return Ok(*g);
        }
        let st = nix::sys::stat::fstat(self.fd.as_fd())?;
        let acl =
            match rustix::fs::fgetxattr(self.fd.as_fd(), xattr::ACL_DEFAULT, &mut [0u8; 0][..]) {
                Ok(_) => true,
                Err(rustix::io::Errno::NODATA | rustix::io::Errno::OPNOTSUPP) => false,
                // A default ACL too large for an empty buffer is still one.
                Err(rustix::io::Errno::RANGE) => true,
                Err(e) => return Err(e.into()),
            };
        let g = Gives {
            acl,
            group: (st.st_mode & libc::S_ISGID != 0).then_some(st.st_gid),
        };
        Ok(*self.gives.get_or_init(|| g))
    }
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
/// How much of the final name a temporary name keeps (see `tmp_name`).
const TMP_NAME_HINT: usize = 32;

thread_local! {
    // verify and precheck hash every managed file: one buffer per thread,
    // not one allocated and zeroed per file.
    static HASH_BUF: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0u8; 64 * 1024].into_boxed_slice());
}

impl RootDir {
    /// The root's directory handle, for what must happen on its filesystem
    /// (the store's clone probe).
    pub fn dir_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }

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
        hash_open(self.open_file(p)?, p)
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
}

/// BLAKE3 and size of what `f` (the file at `p`) holds from where it stands.
fn hash_open(mut f: File, p: &EntryPath) -> Result<(blake3::Hash, u64)> {
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
