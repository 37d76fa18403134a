//! The state directory of a root: its database, its store, its lock and its
//! journal, opened together.
//!
//! ```text
//! <state>/sysgen.db      SQLite: manifests, nodes, generations, activations, ledger, saved, stat cache
//! <state>/store/         content-addressed objects (see sysgen-store)
//! <state>/lock           flock(2) held by the one mutating command; holds its pid
//! <state>/journal.json   present only while a switch is under way or interrupted
//! ```

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use sysgen_schema::EntryPath;
use sysgen_store::Store;

use crate::db::Db;
use crate::journal::Journal;
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
    /// Opens the state of `root` kept in `state_dir`, creating it if needed.
    /// `Access::Write` takes the exclusive lock first and fails at once,
    /// naming the holder's pid, when another command holds it.
    pub fn open(root: &Path, state_dir: &Path, access: Access) -> Result<State, Error> {
        let root_dir = RootDir::open(root).map_err(io_err(root))?;
        ensure_state_dir(&root_dir, root, state_dir)?;
        let lock = match access {
            Access::Read => None,
            Access::Write => Some(take_lock(state_dir)?),
        };
        let store = Store::open(&state_dir.join("store"))?;
        let db_path = state_dir.join("sysgen.db");
        // The database holds hashes of secret files: root only, from the first byte.
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&db_path)
            .and_then(|f| f.set_permissions(std::fs::Permissions::from_mode(0o600)))
            .map_err(io_err(&db_path))?;
        let db = Db::open(&db_path)?;
        if lock.is_some() {
            // With the lock held, anything in the store's temp area is a leftover.
            store.clean_temp()?;
        }
        Ok(State {
            root: root_dir,
            dir: state_dir.to_owned(),
            db,
            store,
            _lock: lock,
        })
    }

    pub fn journal_path(&self) -> PathBuf {
        self.dir.join("journal.json")
    }

    /// The journal of a switch that was interrupted, if any.
    pub fn journal(&self) -> Result<Option<Journal>, Error> {
        Journal::read(&self.journal_path())
    }

    /// Fails when a switch was interrupted: every mutating command but
    /// `recover` must refuse until it is finished or undone.
    pub fn refuse_if_interrupted(&self) -> Result<(), Error> {
        match self.journal()? {
            Some(j) => Err(Error::Interrupted {
                to: j.to_number,
                from: j.from.map(|f| f.0),
            }),
            None => Ok(()),
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

/// Creates the state directory (mode 0700: it holds hashes of secrets).
/// Inside the root, it is made through the root's handle one component at
/// a time, so a symlink planted at `/var` or `/var/lib` is refused rather
/// than followed out of the root.
fn ensure_state_dir(root: &RootDir, root_path: &Path, state_dir: &Path) -> Result<(), Error> {
    match state_dir.strip_prefix(root_path) {
        Ok(rel) => {
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
                .map_err(|e| {
                    Error::Invalid(format!("{}: {e}; use --state-dir", state_dir.display()))
                })?;
                match root.inspect(&p)? {
                    Live::Dir(_) => {}
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
        }
        Err(_) => std::fs::create_dir_all(state_dir).map_err(io_err(state_dir))?,
    }
    std::fs::set_permissions(state_dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io_err(state_dir))
}

fn take_lock(state_dir: &Path) -> Result<Flock<File>, Error> {
    let path = state_dir.join("lock");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        // Like everything in the state directory: root's alone.
        .mode(0o600)
        .open(&path)
        .map_err(io_err(&path))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut lock) => {
            // The pid is for the message another command prints when refused.
            lock.set_len(0).map_err(io_err(&path))?;
            lock.rewind().map_err(io_err(&path))?;
            write!(lock, "{}", std::process::id()).map_err(io_err(&path))?;
            Ok(lock)
        }
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut s = String::new();
            let pid = file
                .read_to_string(&mut s)
                .ok()
                .and_then(|_| s.trim().parse().ok());
            Err(Error::Locked {
                pid,
                path: state_dir.to_owned(),
            })
        }
        Err((_, e)) => Err(Error::Io {
            path,
            source: e.into(),
        }),
    }
}
