//! Extended attributes of root entries, read and written through an
//! `O_NOFOLLOW` descriptor (never a path the kernel would resolve again):
//! the ones a generation records (file capabilities, POSIX ACLs, `user.*`
//! when a tree asks) and sysgen's own marker on a directory dataset.

use std::collections::BTreeMap;
use std::fmt;
use std::os::fd::BorrowedFd;

use rustix::fs::XattrFlags;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::*;

/// The file capability of an executable (`setcap`).
pub const CAPABILITY: &str = "security.capability";
/// POSIX ACLs: a file's or directory's, and a directory's default one.
pub const ACL_ACCESS: &str = "system.posix_acl_access";
pub const ACL_DEFAULT: &str = "system.posix_acl_default";

/// The attributes a tree always records from its source. Of these, a
/// capability is managed on every file sysgen writes (one not recorded is
/// removed, and is drift: no binary keeps one nobody declared); ACLs and
/// `user.*` are set when recorded and removed when a generation stops
/// recording them. `security.selinux` and the like belong to the host.
pub const MANAGED: [&str; 3] = [CAPABILITY, ACL_ACCESS, ACL_DEFAULT];

/// Whether a tree records `name` from its source: the managed ones always,
/// `user.*` when the tree asks for them.
pub fn recorded(name: &str, user: bool) -> bool {
    MANAGED.contains(&name) || (user && name.starts_with("user."))
}

/// Extended attributes by name; the values are bytes, written as hex in
/// the manifest (a capability and an ACL are binary).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Xattrs(pub BTreeMap<String, Vec<u8>>);

impl Xattrs {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Xattrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| (k, hex::encode(v))))
            .finish()
    }
}

impl Serialize for Xattrs {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, hex::encode(v))))
    }
}

impl<'de> Deserialize<'de> for Xattrs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let m = BTreeMap::<String, String>::deserialize(d)?;
        m.into_iter()
            .map(|(k, v)| {
                hex::decode(&v)
                    .map(|b| (k.clone(), b))
                    .map_err(|e| serde::de::Error::custom(format!("xattr {k}: {e}")))
            })
            .collect::<std::result::Result<_, _>>()
            .map(Xattrs)
    }
}

/// Names in a `listxattr` buffer.
fn names(buf: &[u8]) -> impl Iterator<Item = String> + '_ {
    buf.split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8_lossy(n).into_owned())
}

/// Every attribute of the open file `fd` that `keep` selects.
pub fn read_fd(fd: BorrowedFd<'_>, keep: &dyn Fn(&str) -> bool) -> io::Result<Xattrs> {
    let mut out = BTreeMap::new();
    let len = match rustix::fs::flistxattr_query(fd) {
        Ok(n) => n,
        // A filesystem without xattrs has none to keep.
        Err(rustix::io::Errno::OPNOTSUPP) => return Ok(Xattrs::default()),
        Err(e) => return Err(e.into()),
    };
    let mut list = vec![0u8; len];
    let n = rustix::fs::flistxattr(fd, &mut list[..])?;
    for name in names(&list[..n]).filter(|n| keep(n)) {
        if let Some(v) = get_fd(fd, &name)? {
            out.insert(name, v);
        }
    }
    Ok(Xattrs(out))
}

/// One attribute of `fd`; `None` when it has none of that name.
pub fn get_fd(fd: BorrowedFd<'_>, name: &str) -> io::Result<Option<Vec<u8>>> {
    let len = match rustix::fs::fgetxattr_query(fd, name) {
        Ok(n) => n,
        Err(rustix::io::Errno::NODATA | rustix::io::Errno::OPNOTSUPP) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut v = vec![0u8; len];
    let n = rustix::fs::fgetxattr(fd, name, &mut v[..])?;
    v.truncate(n);
    Ok(Some(v))
}

/// Sets the attributes `want` records on `fd`, removes a capability it
/// does not record (no binary keeps one nobody declared) and those named
/// in `drop` (recorded by the generation left, not by this one). Runs
/// after chown and chmod: chown clears a capability, and chmod would
/// rewrite an ACL's mask.
pub fn apply_fd(fd: BorrowedFd<'_>, want: &Xattrs, drop: &[String]) -> io::Result<()> {
    let gone = std::iter::once(CAPABILITY).chain(drop.iter().map(String::as_str));
    for name in gone.filter(|n| !want.0.contains_key(*n)) {
        match rustix::fs::fremovexattr(fd, name) {
            Ok(()) | Err(rustix::io::Errno::NODATA | rustix::io::Errno::OPNOTSUPP) => {}
            Err(e) => return Err(e.into()),
        }
    }
    for (name, value) in &want.0 {
        rustix::fs::fsetxattr(fd, name.as_str(), value, XattrFlags::empty())?;
    }
    Ok(())
}

/// [`apply_fd`] for a file this process just created: it has no
/// capability, and an access ACL only when `inherited_acl` (its directory
/// has a default ACL), so only that one can need removing.
pub fn apply_new_fd(fd: BorrowedFd<'_>, want: &Xattrs, inherited_acl: bool) -> io::Result<()> {
    if inherited_acl && !want.0.contains_key(ACL_ACCESS) {
        match rustix::fs::fremovexattr(fd, ACL_ACCESS) {
            Ok(()) | Err(rustix::io::Errno::NODATA | rustix::io::Errno::OPNOTSUPP) => {}
            Err(e) => return Err(e.into()),
        }
    }
    for (name, value) in &want.0 {
        rustix::fs::fsetxattr(fd, name.as_str(), value, XattrFlags::empty())?;
    }
    Ok(())
}

/// Whether `fd` has exactly the capability `want` records (or none) and
/// every other attribute it records: what `verify` checks. Attributes it
/// does not record, but a capability, are not sysgen's.
pub fn matches_fd(fd: BorrowedFd<'_>, want: &Xattrs) -> io::Result<Option<String>> {
    let live = read_fd(fd, &|n| n == CAPABILITY || want.0.contains_key(n))?;
    if live == *want {
        return Ok(None);
    }
    let mut names: Vec<&String> = want.0.keys().chain(live.0.keys()).collect();
    names.sort();
    names.dedup();
    let differ: Vec<String> = names
        .into_iter()
        .filter(|n| want.0.get(*n) != live.0.get(*n))
        .map(|n| match (want.0.contains_key(n), live.0.contains_key(n)) {
            (true, false) => format!("{n} missing"),
            (false, true) => format!("{n} not declared"),
            _ => format!("{n} changed"),
        })
        .collect();
    Ok(Some(differ.join(", ")))
}

impl RootDir {
    /// Opens the file or directory `p` (never a symlink) for its attributes;
    /// `None` when it is absent or a symlink (a symlink carries none sysgen manages).
    fn open_meta(&self, p: &EntryPath) -> Result<Option<OwnedFd>> {
        let parent = self.parent(p).map_err(|e| err(p, "open parent", e))?;
        match openat(
            parent.as_fd(),
            p.file_name(),
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            NixMode::empty(),
        ) {
            Ok(fd) => Ok(Some(fd)),
            Err(Errno::ENOENT | Errno::ELOOP) => Ok(None),
            Err(e) => Err(err(p, "open", e)),
        }
    }

    /// The attributes of `p` that `keep` selects (none for a symlink).
    pub fn xattrs(&self, p: &EntryPath, keep: &dyn Fn(&str) -> bool) -> Result<Xattrs> {
        match self.open_meta(p)? {
            Some(fd) => read_fd(fd.as_fd(), keep).map_err(|e| err(p, "read xattrs", e)),
            None => Ok(Xattrs::default()),
        }
    }

    /// One attribute of `p`; `None` when absent (or `p` is).
    pub fn get_xattr(&self, p: &EntryPath, name: &str) -> Result<Option<Vec<u8>>> {
        match self.open_meta(p)? {
            Some(fd) => get_fd(fd.as_fd(), name).map_err(|e| err(p, "read xattr", e)),
            None => Ok(None),
        }
    }

    /// Sets one attribute of the file or directory `p`.
    pub fn set_xattr(&self, p: &EntryPath, name: &str, value: &[u8]) -> Result<()> {
        let fd = self.open_meta(p)?.ok_or_else(|| {
            err(
                p,
                "set xattr",
                io::Error::new(io::ErrorKind::NotFound, "no file or directory there"),
            )
        })?;
        rustix::fs::fsetxattr(fd.as_fd(), name, value, XattrFlags::empty())
            .map_err(|e| err(p, "set xattr", io::Error::from(e)))
    }

    /// [`apply_fd`] on the file or directory `p`.
    pub fn apply_xattrs(&self, p: &EntryPath, want: &Xattrs, drop: &[String]) -> Result<()> {
        match self.open_meta(p)? {
            Some(fd) => apply_fd(fd.as_fd(), want, drop).map_err(|e| err(p, "set xattrs", e)),
            None => Ok(()),
        }
    }

    /// The BLAKE3 and size of the file `p`, and how its attributes differ
    /// from `want` ([`matches_fd`]): one open for both, as `verify` reads
    /// every managed file.
    pub fn hash_file_and_xattrs(
        &self,
        p: &EntryPath,
        want: &Xattrs,
    ) -> Result<((blake3::Hash, u64), Option<String>)> {
        let f = self.open_file(p)?;
        let differ = matches_fd(f.as_fd(), want).map_err(|e| err(p, "read xattrs", e))?;
        Ok((super::hash_open(f, p)?, differ))
    }

    /// [`matches_fd`] on the file or directory `p`.
    pub fn xattr_drift(&self, p: &EntryPath, want: &Xattrs) -> Result<Option<String>> {
        match self.open_meta(p)? {
            Some(fd) => matches_fd(fd.as_fd(), want).map_err(|e| err(p, "read xattrs", e)),
            None => Ok(None),
        }
    }
}

/// Attributes of a file on the build host (a tree's source), by path,
/// without following a symlink at its end.
pub fn read_path(path: &Path, keep: &dyn Fn(&str) -> bool) -> io::Result<Xattrs> {
    let len = match rustix::fs::llistxattr_query(path) {
        Ok(n) => n,
        Err(rustix::io::Errno::OPNOTSUPP) => return Ok(Xattrs::default()),
        Err(e) => return Err(e.into()),
    };
    let mut list = vec![0u8; len];
    let n = rustix::fs::llistxattr(path, &mut list[..])?;
    let mut out = BTreeMap::new();
    for name in names(&list[..n]).filter(|n| keep(n)) {
        let len = match rustix::fs::lgetxattr_query(path, name.as_str()) {
            Ok(n) => n,
            Err(rustix::io::Errno::NODATA) => continue,
            Err(e) => return Err(e.into()),
        };
        let mut v = vec![0u8; len];
        let k = rustix::fs::lgetxattr(path, name.as_str(), &mut v[..])?;
        v.truncate(k);
        out.insert(name, v);
    }
    Ok(Xattrs(out))
}

/// `listxattrat(2)` (Linux 6.13): the same number on every architecture
/// Rust targets, the syscall tables having been unified from 424 on; the
/// libc crate names it for m68k only.
const SYS_LISTXATTRAT: libc::c_long = 465;

/// Set once a kernel has answered `ENOSYS`, so that an older kernel pays
/// the failed call once, not once per file.
static NO_LISTXATTRAT: AtomicBool = AtomicBool::new(false);

/// Whether the entry `name` of the open directory `dir` has any extended
/// attribute, without following a symlink at `name`. `full` is the same
/// entry's whole path, made only for a kernel without `listxattrat`.
///
/// Why not `llistxattr(full)`: the kernel then walks every component of the
/// path again for each of a tree's files; at 100k files that walk was a
/// fifth of an unchanged build's time. Relative to the directory's handle
/// it looks up one name.
pub fn any_at(
    dir: BorrowedFd<'_>,
    name: &std::ffi::CStr,
    full: &dyn Fn() -> std::path::PathBuf,
) -> io::Result<bool> {
    if !NO_LISTXATTRAT.load(Ordering::Relaxed) {
        // SAFETY: `dir` is an open descriptor for the call's duration,
        // `name` is NUL-terminated, and a null list of size 0 only asks
        // for the length (the kernel writes nothing).
        let n = unsafe {
            libc::syscall(
                SYS_LISTXATTRAT,
                std::os::fd::AsRawFd::as_raw_fd(&dir),
                name.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW as libc::c_uint,
                std::ptr::null_mut::<libc::c_char>(),
                0usize,
            )
        };
        if n >= 0 {
            return Ok(n > 0);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EOPNOTSUPP) => return Ok(false),
            // Seccomp filters of container runtimes answer EPERM for
            // syscalls they do not know.
            Some(libc::ENOSYS) | Some(libc::EPERM) => NO_LISTXATTRAT.store(true, Ordering::Relaxed),
            _ => return Err(e),
        }
    }
    match rustix::fs::llistxattr_query(full()) {
        Ok(n) => Ok(n > 0),
        Err(rustix::io::Errno::OPNOTSUPP) => Ok(false),
        Err(e) => Err(e.into()),
    }
}
