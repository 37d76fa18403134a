//! What `adopt` reads of the root: every entry under the adopted paths,
//! through the root's directory handle (never following a symlink, in the
//! root or out of it), and each regular file's content copied into the
//! source directory.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sysgen_generations::Error;
use sysgen_generations::rootfs::{Live, Meta, RootDir};
use sysgen_schema::EntryPath;

/// A regular file as found: its metadata and where its copy was written,
/// relative to the configuration.
pub struct FileFound {
    pub meta: Meta,
    pub source: String,
    /// Not readable by others on the root: declared secret, so its content
    /// stays out of every output and out of the public store.
    pub secret: bool,
}

/// An entry (a path, or a unit) the configuration cannot declare, and why.
#[derive(Serialize)]
pub struct Skipped {
    pub entry: String,
    pub why: String,
}

#[derive(Default)]
pub struct Found {
    pub files: BTreeMap<EntryPath, FileFound>,
    pub dirs: BTreeMap<EntryPath, Meta>,
    pub symlinks: BTreeMap<EntryPath, String>,
    pub skipped: Vec<Skipped>,
    /// Files with more than one link: each becomes a file of its own.
    pub hard_links: usize,
}

/// Where the copies go: `<into>/files/<path>`.
pub const SOURCES: &str = "files";

pub struct Walker<'a> {
    pub root: &'a RootDir,
    pub into: &'a Path,
    /// sysgen's state directory, when it lies in the root: never adopted.
    pub state_dir: Option<&'a EntryPath>,
    pub found: Found,
}

impl Walker<'_> {
    /// Adopts `p` and, for a directory, everything under it.
    pub fn adopt(&mut self, p: &EntryPath) -> Result<(), Error> {
        let mut stack = vec![p.clone()];
        while let Some(p) = stack.pop() {
            if self.state_dir.is_some_and(|s| p == *s || p.is_under(s)) {
                self.skip(&p, "sysgen's own state directory");
                continue;
            }
            match self.root.inspect(&p)? {
                Live::File(meta) => self.file(&p, meta)?,
                Live::Dir(meta) => {
                    self.found.dirs.insert(p.clone(), meta);
                    let mut names = self.root.list_dir(&p)?;
                    // Reversed: the stack then visits them in order.
                    names.sort_by(|a, b| b.cmp(a));
                    for name in names {
                        match name.to_str().map(|n| (n, p.join(n))) {
                            Some((_, Err(e))) => {
                                self.skip_name(&p, &name, &e.to_string());
                            }
                            Some((n, Ok(child))) => {
                                if let Some(why) = unsayable_name(n) {
                                    self.skip(&child, why);
                                } else {
                                    stack.push(child);
                                }
                            }
                            None => self.skip_name(
                                &p,
                                &name,
                                "the name is not UTF-8, which a configuration cannot hold",
                            ),
                        }
                    }
                }
                Live::Symlink { target, .. } => {
                    if target.contains(char::is_control) {
                        self.skip(&p, "the symlink's target holds a control character");
                    } else {
                        self.found.symlinks.insert(p.clone(), target);
                    }
                }
                Live::Special(what) => {
                    self.skip(
                        &p,
                        &format!("a {what}: sysgen manages files, directories and symlinks"),
                    );
                }
                // Gone or replaced while being read (a path named on the
                // command line was checked before).
                Live::Absent | Live::Blocked { .. } => {
                    self.skip(&p, "it disappeared while being read");
                }
            }
        }
        Ok(())
    }

    fn file(&mut self, p: &EntryPath, meta: Meta) -> Result<(), Error> {
        let secret = meta.mode & 0o004 == 0;
        let rel = format!("{SOURCES}{p}");
        let dest = self.into.join(&rel);
        let shown = self.root.display(p);
        let f = self.root.open_file(p)?;
        // From the open handle: the file that is copied.
        let links = f.metadata().map_err(|source| Error::Io {
            path: PathBuf::from(&shown),
            source,
        })?;
        if std::os::unix::fs::MetadataExt::nlink(&links) > 1 {
            self.found.hard_links += 1;
        }
        copy_out(f, &dest, secret, &shown)?;
        self.found.files.insert(
            p.clone(),
            FileFound {
                meta,
                source: rel,
                secret,
            },
        );
        Ok(())
    }

    fn skip(&mut self, p: &EntryPath, why: &str) {
        self.found.skipped.push(Skipped {
            entry: p.to_string(),
            why: why.to_owned(),
        });
    }

    fn skip_name(&mut self, dir: &EntryPath, name: &std::ffi::OsStr, why: &str) {
        self.found.skipped.push(Skipped {
            entry: format!("{dir}/{}", name.to_string_lossy()),
            why: why.to_owned(),
        });
    }
}

/// Refuses a path with nothing at it, or one reached only through a
/// symlink or a file, before anything is written.
pub fn check_reachable(root: &RootDir, p: &EntryPath) -> Result<(), Error> {
    match root.inspect(p)? {
        Live::Absent => Err(Error::Invalid(format!(
            "adopt {p}: nothing is at {}; name paths that exist on the root",
            root.display(p)
        ))),
        Live::Blocked { at, what } => Err(Error::Invalid(format!(
            "adopt {p}: {at} is a {what}, which sysgen does not follow; adopt the path it leads to instead"
        ))),
        _ => Ok(()),
    }
}

/// Why a name, valid as a path component, is still left out: the loader
/// refuses control characters, and sysgen's own temporary and retention
/// names are not the host's.
fn unsayable_name(n: &str) -> Option<&'static str> {
    if n.contains(char::is_control) {
        Some("the name holds a control character, which a configuration cannot declare")
    } else if n.starts_with(".sysgen-") {
        Some("sysgen's own temporary or retention entry")
    } else {
        None
    }
}

/// Writes what `from` holds to a new file `dest` (its parents made), 0600
/// for a secret, 0644 otherwise.
fn copy_out(mut from: File, dest: &Path, secret: bool, shown: &str) -> Result<(), Error> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io { path, source }
    };
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let mut to = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(dest)
        .map_err(io(dest))?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(Error::Io {
                    path: PathBuf::from(shown),
                    source,
                });
            }
        };
        std::io::Write::write_all(&mut to, &buf[..n]).map_err(io(dest))?;
    }
    to.sync_all().map_err(io(dest))
}

/// Ids to names, from the root's `/etc/passwd` or `/etc/group` (the first
/// name of an id wins, as for `ls`); missing file: no names.
pub fn id_names(root: &RootDir, file: &str) -> Result<HashMap<u32, String>, Error> {
    let p = EntryPath::parse(file).map_err(|e| Error::Internal(format!("{file}: {e}")))?;
    let mut text = String::new();
    if let Live::File(_) = root.inspect(&p)? {
        root.open_file(&p)?
            .read_to_string(&mut text)
            .map_err(|source| Error::Io {
                path: PathBuf::from(root.display(&p)),
                source,
            })?;
    }
    let mut names = HashMap::new();
    for line in text.lines() {
        let mut f = line.split(':');
        if let (Some(name), Some(id)) = (f.next(), f.nth(1).and_then(|i| i.parse().ok())) {
            names.entry(id).or_insert_with(|| name.to_owned());
        }
    }
    Ok(names)
}
