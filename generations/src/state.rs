//! The state directory of a root: its database, its store, its lock and its
//! journal, opened together.
//!
//! ```text
//! <state>/sysgen.db      SQLite: manifests, nodes, generations, activations, ledger, saved, stat cache
//! <state>/store/         content-addressed objects (see sysgen-store)
//! <state>/lock           flock(2) held by the one mutating command; holds its pid
//! <state>/journal.json   present only while a switch is under way or interrupted
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag, openat};
use nix::sys::stat::Mode as NixMode;
use nix::unistd::{UnlinkatFlags, unlinkat};
use sysgen_schema::EntryPath;
use sysgen_store::Store;
use sysgen_store::trust::{self, Expect};

use crate::db::Db;
use crate::rootfs::{Live, Owner, RootDir};
use crate::{Error, io_err};

pub struct State {
    pub root: RootDir,
    pub dir: PathBuf,
    pub db: Db,
    pub store: Store,
    _lock: Option<Flock<File>>,
}

/// Whether a command changes state (and so takes the lock).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Access {
    Read,
    Write,
}

impl State {
    /// Opens the state of `root` kept in `state_dir`. `Access::Write`
    /// creates it if needed, then takes the exclusive lock and fails at once,
    /// naming the holder's pid, when another command holds it.
    /// `Access::Read` creates and changes nothing: with no state there, it
    /// fails with a NotFound I/O error on `state_dir`.
    ///
    /// Every entry of the state directory is opened without following a
    /// symlink and checked to be of the right type and ours (see
    /// `sysgen_store::trust`); anything else is refused, naming it.
    pub fn open(root: &Path, state_dir: &Path, access: Access) -> Result<State, Error> {
        let root_dir = RootDir::open(root).map_err(io_err(root))?;
        let write = access == Access::Write;
        if !walk_state_dir(&root_dir, root, state_dir, write)? {
            return Err(no_state(state_dir));
        }
        let dir = trust::open(state_dir, Expect::Dir, false)?;
        if write {
            // Mode 0700: the state holds hashes of secrets.
            nix::sys::stat::fchmod(&dir, NixMode::from_bits_truncate(0o700))
                .map_err(|e| io_err(state_dir)(e.into()))?;
        }
        let lock = if write {
            Some(take_lock(&dir, state_dir)?)
        } else {
            None
        };
        let db_path = state_dir.join(DB_FILE);
        // The database holds hashes of secret files: root only, from the
        // first byte. SQLite opens its -wal and -shm by name: they are
        // checked here, as the database is.
        if !open_db_file(&dir, &db_path, write)? {
            return Err(no_state(state_dir));
        }
        for suffix in ["-wal", "-shm"] {
            let mut name = db_path.clone().into_os_string();
            name.push(suffix);
            trust::check_entry(Path::new(&name), Expect::File)?;
        }
        trust::check_entry(&state_dir.join(JOURNAL_FILE), Expect::File)?;
        let store_dir = state_dir.join("store");
        let store = if write {
            // A new store is plain when it can clone onto the root's
            // filesystem, so a switch clones rather than writes.
            Store::open_for_root(&store_dir, root_dir.dir_fd())?
        } else {
            Store::open_existing(&store_dir)?
        };
        let db = Db::open(&db_path)?;
        if lock.is_some() {
            // With the lock held, anything in the store's temp area is a
            // leftover, and so is a journal temp file (removed, never
            // followed: the journal writer opens it by name).
            store.clean_temp()?;
            remove_leftover(&dir, state_dir, JOURNAL_TEMP)?;
        }
        Ok(State {
            root: root_dir,
            dir: state_dir.to_owned(),
            db,
            store,
            _lock: lock,
        })
    }

    /// Refuses any path of `paths`, whatever produced it (a declaration, a
    /// tree's expansion, a dataset), that lies in this state directory or
    /// would replace it (anything but a directory above it): a tree at
    /// `/var/lib` whose source holds `sysgen/sysgen.db` would otherwise
    /// overwrite the database. The schema refuses declared paths already;
    /// this is the rule for every path, checked before anything is stored.
    pub fn refuse_in_state_dir<T>(
        &self,
        paths: &BTreeMap<EntryPath, T>,
        is_dir: impl Fn(&T) -> bool,
    ) -> Result<(), Error> {
        let Some(r) = reserved_path(self.root.path(), &self.dir) else {
            return Ok(());
        };
        // Paths that start with `r`'s text are one sorted run from `r` (with
        // siblings like `/var/lib/sysgen-old` among them); only `r`'s
        // ancestors can be above it.
        let inside = paths
            .range(&r..)
            .map(|(p, _)| p)
            .take_while(|p| p.as_str().starts_with(r.as_str()))
            .find(|p| **p == r || p.is_under(&r));
        let above = r
            .ancestors()
            .into_iter()
            .find(|a| paths.get(a).is_some_and(|e| !is_dir(e)));
        match inside.or(above.as_ref()) {
            Some(p) => Err(Error::Invalid(format!(
                "{p}: the configuration (a declaration or a tree's content) would put this path in or over sysgen's state directory {r}; keep it out of the tree or declare it elsewhere"
            ))),
            None => Ok(()),
        }
    }

    pub fn journal_path(&self) -> PathBuf {
        self.dir.join("journal.json")
    }

    /// The pid of the command holding the lock now (a switch, recover or
    /// gc under way), if one does: what tells a running switch from an
    /// interrupted one. 0 when the holder has not written its pid yet
    /// (it writes it right after taking the lock). Takes nothing: a shared lock is tried and let go at
    /// once, so a read-only command never holds up a writer for longer
    /// than that.
    pub fn lock_holder(&self) -> Result<Option<u32>, Error> {
        let path = self.dir.join("lock");
        let dir = trust::open(&self.dir, Expect::Dir, false)?;
        let fd = match openat(
            &dir,
            "lock",
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            NixMode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(trust::refused_or_io(&path, Expect::File, e.into()).into()),
        };
        let mut file = File::from(fd);
        trust::check(&file, &path, Expect::File)?;
        let mut s = String::new();
        file.read_to_string(&mut s).map_err(io_err(&path))?;
        match Flock::lock(file, FlockArg::LockSharedNonblock) {
            // Dropping the guard lets go at once.
            Ok(_) => Ok(None),
            Err((_, Errno::EWOULDBLOCK)) => Ok(Some(s.trim().parse().unwrap_or(0))),
            Err((_, e)) => Err(io_err(&path)(e.into())),
        }
    }
}

/// The state directory's path inside the root, when it lies inside it: no
/// configuration may declare a path there.
pub fn reserved_path(root: &Path, state_dir: &Path) -> Option<EntryPath> {
    let root = std::fs::canonicalize(root).ok()?;
    let state = std::fs::canonicalize(state_dir).unwrap_or_else(|_| state_dir.to_owned());
    let rel = state.strip_prefix(&root).ok()?;
    EntryPath::parse(&format!("/{}", rel.to_str()?)).ok()
}

const DB_FILE: &str = "sysgen.db";
const JOURNAL_FILE: &str = "journal.json";
/// The temp name `Journal::write` uses for `journal.json`.
const JOURNAL_TEMP: &str = "journal.json.tmp";

/// What a read-only command says when there is no state to read.
fn no_state(state_dir: &Path) -> Error {
    Error::Io {
        path: state_dir.to_owned(),
        source: io::Error::new(
            io::ErrorKind::NotFound,
            "no sysgen state here (no generation was ever built with it); check --root and --state-dir",
        ),
    }
}

/// Walks to the state directory; with `create`, makes what is missing. Inside the root, it goes through
/// the root's handle one component at a time, so a symlink planted at
/// `/var` or `/var/lib` is refused rather than followed out of the root.
/// Returns false when, without `create`, something is missing.
fn walk_state_dir(
    root: &RootDir,
    root_path: &Path,
    state_dir: &Path,
    create: bool,
) -> Result<bool, Error> {
    let Ok(rel) = state_dir.strip_prefix(root_path) else {
        if !create {
            return Ok(state_dir.exists());
        }
        return std::fs::create_dir_all(state_dir)
            .map(|()| true)
            .map_err(io_err(state_dir));
    };
    let mut cur: Option<EntryPath> = None;
    for comp in rel.components() {
        let name = comp.as_os_str().to_str().ok_or_else(|| {
            Error::Invalid(format!(
                "{}: the state directory's path is not UTF-8; use --state-dir",
                state_dir.display()
            ))
        })?;
        let p = match &cur {
            None => EntryPath::top(name),
            Some(c) => c.join(name),
        }
        .map_err(|e| Error::Invalid(format!("{}: {e}; use --state-dir", state_dir.display())))?;
        match root.inspect(&p)? {
            Live::Dir(_) => {}
            Live::Absent if !create => return Ok(false),
            Live::Absent => {
                root.make_dir(&p, None, Owner::default())?;
            }
            other => {
                return Err(Error::Invalid(format!(
                    "{}: is a {} on the root, and sysgen keeps its state below it; it never follows a symlink out of the root, so remove it or choose --state-dir",
                    root.display(&p),
                    other.kind()
                )));
            }
        }
        cur = Some(p);
    }
    Ok(true)
}

/// Opens `name` in the state directory `dir` without following a symlink,
/// creating it (mode 0600) with `create`, and checks it is a regular file
/// of ours. `None` when it is absent and not created.
fn open_in(dir: &File, state_dir: &Path, name: &str, create: bool) -> Result<Option<File>, Error> {
    let path = state_dir.join(name);
    let mut flags = OFlag::O_RDWR | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
    if create {
        flags |= OFlag::O_CREAT;
    }
    let fd = match openat(dir, name, flags, NixMode::from_bits_truncate(0o600)) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) if !create => return Ok(None),
        Err(e) => return Err(trust::refused_or_io(&path, Expect::File, e.into()).into()),
    };
    let file = File::from(fd);
    trust::check(&file, &path, Expect::File)?;
    Ok(Some(file))
}

/// Checks (and with `create` makes) the database file, mode 0600; false
/// when it is absent and not created.
fn open_db_file(dir: &File, db_path: &Path, create: bool) -> Result<bool, Error> {
    let Some(file) = open_in(
        dir,
        db_path.parent().unwrap_or(Path::new("")),
        DB_FILE,
        create,
    )?
    else {
        return Ok(false);
    };
    if create {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io_err(db_path))?;
    }
    Ok(true)
}

/// Removes the entry `name` of the state directory if present, without
/// following it.
fn remove_leftover(dir: &File, state_dir: &Path, name: &str) -> Result<(), Error> {
    match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(io_err(state_dir.join(name))(e.into())),
    }
}

fn take_lock(dir: &File, state_dir: &Path) -> Result<Flock<File>, Error> {
    let path = state_dir.join("lock");
    // Checked before anything is written: a lock that is a symlink or
    // someone else's file is refused, never truncated.
    let Some(file) = open_in(dir, state_dir, "lock", true)? else {
        return Err(no_state(state_dir));
    };
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut lock) => {
            // The pid is for the message another command prints when refused.
            lock.set_len(0).map_err(io_err(&path))?;
            lock.rewind().map_err(io_err(&path))?;
            write!(lock, "{}", std::process::id()).map_err(io_err(&path))?;
            Ok(lock)
        }
        Err((mut file, Errno::EWOULDBLOCK)) => {
            let mut s = String::new();
            let pid = file
                .read_to_string(&mut s)
                .ok()
                .and_then(|_| s.trim().parse().ok());
            Err(crate::error::StateError::Locked {
                pid,
                path: state_dir.to_owned(),
            }
            .into())
        }
        Err((_, e)) => Err(Error::Io {
            path,
            source: e.into(),
        }),
    }
}
