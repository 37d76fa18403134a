//! `file:///path`: a remote that is a directory (a mounted share, a USB
//! disk, a directory a web server publishes).
//!
//! Each key is a file at its path under the directory. Every path is
//! walked one name at a time from the directory's handle (`openat` with
//! `O_NOFOLLOW`), so a symlink planted in the remote is refused, never
//! followed. A put writes a temp file (`.tmp-<pid>-<n>`) in the key's
//! directory, syncs it, renames it over the final name and syncs the
//! directory: a reader sees the whole value or none. A swap (refs) takes
//! a lock file `.<name>.lock` next to the key with `O_CREAT|O_EXCL`, reads
//! and compares the current value, writes the new one as a put does, then
//! removes the lock. A lock left by a killed push makes the next swap of
//! that ref fail, naming the file, until it is removed.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, renameat};
use nix::sys::stat::{Mode, SFlag, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};

use crate::layout::check_key;
use crate::{Error, Swap, Transport};

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

pub struct FileTransport {
    url: String,
    dir: PathBuf,
}

impl FileTransport {
    /// Opens (and with `create`, makes) the directory of `file:///path`.
    pub fn open(url: &str, dir: &Path, create: bool) -> Result<FileTransport, Error> {
        if !dir.is_absolute() {
            return Err(Error::Invalid(format!(
                "{url}: a file remote needs an absolute path (file:///path)"
            )));
        }
        if create {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::remote(url, "", format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let t = FileTransport {
            url: url.to_owned(),
            dir: dir.to_owned(),
        };
        t.top()?;
        Ok(t)
    }

    fn top(&self) -> Result<OwnedFd, Error> {
        nix::fcntl::open(
            self.dir.as_path(),
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            Error::remote(
                &self.url,
                "",
                format!("cannot open {}: {e}", self.dir.display()),
            )
        })
    }

    fn err(&self, key: &str, what: &str, e: impl std::fmt::Display) -> Error {
        Error::remote(&self.url, key, format!("{what}: {e}"))
    }

    /// The directory holding `key` and the key's last name; `None` when a
    /// directory on the way is missing and `create` is false.
    fn parent(&self, key: &str, create: bool) -> Result<Option<(OwnedFd, String)>, Error> {
        check_key(key)?;
        let mut parts: Vec<&str> = key.split('/').collect();
        let last = parts.pop().unwrap_or_default().to_owned();
        let mut dir = self.top()?;
        for p in parts {
            let flags = OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            dir = match openat(&dir, p, flags, Mode::empty()) {
                Ok(d) => d,
                Err(Errno::ENOENT) if create => {
                    match mkdirat(&dir, p, Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(self.err(key, "cannot make a directory", e)),
                    }
                    openat(&dir, p, flags, Mode::empty())
                        .map_err(|e| self.err(key, "cannot open a directory", e))?
                }
                Err(Errno::ENOENT) => return Ok(None),
                Err(Errno::ENOTDIR | Errno::ELOOP) => {
                    return Err(self.err(
                        key,
                        "refused",
                        format!(
                            "{p:?} on the way is not a directory (a symlink is never followed)"
                        ),
                    ));
                }
                Err(e) => return Err(self.err(key, "cannot open a directory", e)),
            };
        }
        Ok(Some((dir, last)))
    }

    fn read_at(&self, dir: &OwnedFd, name: &str, key: &str) -> Result<Option<Vec<u8>>, Error> {
        let fd = match openat(
            dir,
            name,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(Errno::ELOOP) => {
                return Err(self.err(key, "refused", "a symlink (never followed)"));
            }
            Err(e) => return Err(self.err(key, "cannot open", e)),
        };
        let mut f = File::from(fd);
        let meta = f.metadata().map_err(|e| self.err(key, "cannot stat", e))?;
        if !meta.is_file() {
            return Err(self.err(key, "refused", "not a regular file"));
        }
        let mut out = Vec::with_capacity(meta.len() as usize);
        f.read_to_end(&mut out)
            .map_err(|e| self.err(key, "cannot read", e))?;
        Ok(Some(out))
    }

    fn exists_at(&self, dir: &OwnedFd, name: &str) -> bool {
        fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
            .is_ok_and(|st| st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFREG.bits())
    }

    /// Writes `bytes` under `name` in `dir` atomically (temp, sync, rename,
    /// sync the directory).
    fn write_at(&self, dir: &OwnedFd, name: &str, key: &str, bytes: &[u8]) -> Result<(), Error> {
        let temp = format!(
            ".tmp-{}-{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let fd = openat(
            dir,
            temp.as_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .map_err(|e| self.err(key, "cannot create a temp file", e))?;
        let mut f = File::from(fd);
        let written = f.write_all(bytes).and_then(|()| f.sync_all());
        drop(f);
        let renamed = written
            .map_err(|e| self.err(key, "cannot write", e))
            .and_then(|()| {
                renameat(dir, temp.as_str(), dir, name)
                    .map_err(|e| self.err(key, "cannot rename", e))
            });
        if let Err(e) = renamed {
            // The temp file is ours; nothing else refers to it.
            let _ = unlinkat(dir, temp.as_str(), UnlinkatFlags::NoRemoveDir);
            return Err(e);
        }
        nix::unistd::fsync(dir.as_fd()).map_err(|e| self.err(key, "cannot sync the directory", e))
    }

    fn walk(&self, dir: &OwnedFd, prefix: &str, out: &mut Vec<String>) -> Result<(), Error> {
        let d = nix::dir::Dir::from_fd(
            nix::unistd::dup(dir).map_err(|e| self.err(prefix, "cannot list", e))?,
        )
        .map_err(|e| self.err(prefix, "cannot list", e))?;
        let mut names = Vec::new();
        for entry in d {
            let entry = entry.map_err(|e| self.err(prefix, "cannot list", e))?;
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            // Temp files, locks, `.` and `..` all start with a dot.
            if name.starts_with('.') {
                continue;
            }
            names.push(name.to_owned());
        }
        for name in names {
            let key = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            match openat(
                dir,
                name.as_str(),
                OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            ) {
                Ok(sub) => self.walk(&sub, &key, out)?,
                Err(Errno::ENOTDIR) => {
                    if self.exists_at(dir, &name) {
                        out.push(key);
                    }
                }
                // A symlink (ELOOP) is not a key of this remote.
                Err(_) => {}
            }
        }
        Ok(())
    }
}

impl Transport for FileTransport {
    fn describe(&self) -> String {
        self.url.clone()
    }

    fn has(&self, keys: &[String]) -> Result<Vec<bool>, Error> {
        keys.iter()
            .map(|k| {
                Ok(match self.parent(k, false)? {
                    Some((dir, name)) => self.exists_at(&dir, &name),
                    None => false,
                })
            })
            .collect()
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        match self.parent(key, false)? {
            Some((dir, name)) => self.read_at(&dir, &name, key),
            None => Ok(None),
        }
    }

    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), Error> {
        let Some((dir, name)) = self.parent(key, true)? else {
            return Err(self.err(key, "cannot write", "no directory"));
        };
        if self.exists_at(&dir, &name) {
            return Ok(());
        }
        self.write_at(&dir, &name, key, bytes)
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, Error> {
        // The directory part of the prefix is walked; the rest filters.
        let dir_part = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        let dir = if dir_part.is_empty() {
            self.top()?
        } else {
            match self.parent(&format!("{dir_part}/x"), false)? {
                Some((d, _)) => d,
                None => return Ok(Vec::new()),
            }
        };
        let mut out = Vec::new();
        self.walk(&dir, dir_part, &mut out)?;
        out.retain(|k| k.starts_with(prefix));
        out.sort();
        Ok(out)
    }

    fn swap(&self, key: &str, expected: Option<&[u8]>, new: &[u8]) -> Result<Swap, Error> {
        let Some((dir, name)) = self.parent(key, true)? else {
            return Err(self.err(key, "cannot write", "no directory"));
        };
        let lock = format!(".{name}.lock");
        let fd = match openat(
            &dir,
            lock.as_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        ) {
            Ok(fd) => fd,
            Err(Errno::EEXIST) => {
                return Err(self.err(
                    key,
                    "locked",
                    format!(
                        "another push holds the lock {}/{lock} (if none is running, one was killed: remove that file)",
                        key.rsplit_once('/').map_or("", |(d, _)| d)
                    ),
                ));
            }
            Err(e) => return Err(self.err(key, "cannot take the lock", e)),
        };
        let mut lf = File::from(fd);
        // Who holds it, for the person who finds it left behind.
        let _ = writeln!(lf, "{}", std::process::id());
        drop(lf);
        let result = (|| -> Result<Swap, Error> {
            let now = self.read_at(&dir, &name, key)?;
            if now.as_deref() != expected {
                return Ok(Swap::Lost(now));
            }
            self.write_at(&dir, &name, key, new)?;
            Ok(Swap::Done)
        })();
        let unlocked = unlinkat(&dir, lock.as_str(), UnlinkatFlags::NoRemoveDir)
            .map_err(|e| self.err(key, "cannot remove the lock", e));
        let r = result?;
        unlocked?;
        Ok(r)
    }
}
