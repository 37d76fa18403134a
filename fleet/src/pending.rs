//! The dead-man's record: a switch made with `--confirm-within` that
//! nobody has confirmed yet, kept in the state directory as
//! `confirm.json`.
//!
//! It is written (durably) before the switch starts, so whatever happens
//! next (the connection drops, the switch breaks the network, the host
//! reboots) the host still knows that it must go back to `from` unless
//! `sysgen confirm` clears the record by `deadline`. After an automatic
//! rollback the record stays, marked `rolled_back`, so that a confirmation
//! arriving too late is told so instead of being taken for a success.
//!
//! Like every file of the state directory it is opened without following
//! a symlink and checked to be a regular file of ours
//! (`sysgen_store::trust`); callers hold the state lock.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sysgen_generations::Error;
use sysgen_generations::manifest::GenerationId;
use sysgen_store::trust::{self, Expect};

/// The record's name in the state directory.
pub const FILE: &str = "confirm.json";
/// The temp name it is written under, then renamed from.
const TEMP: &str = "confirm.json.tmp";
/// 1: the first format.
const VERSION: u32 = 1;

/// How the host waits for the deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Watcher {
    /// A detached process (its own session, so the end of the ssh
    /// session that started it does not end it).
    Process { pid: u32 },
    /// A transient systemd timer (`systemd-run --on-active`), where
    /// systemd is PID 1 on the root.
    Systemd { unit: String },
}

/// A switch waiting for its confirmation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pending {
    pub version: u32,
    /// The generation to go back to: the one active before the switch
    /// (the last confirmed one, when switches are chained unconfirmed).
    pub from: u64,
    pub from_id: GenerationId,
    /// The generation switched to.
    pub to_id: GenerationId,
    /// When the record was written and when it expires (seconds since the
    /// epoch, by the host's clock).
    pub since: i64,
    pub deadline: i64,
    pub watcher: Option<Watcher>,
    /// Set once the host went back to `from`: when, and why.
    pub rolled_back: Option<RolledBack>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolledBack {
    pub at: i64,
}

impl Pending {
    pub fn new(
        from: u64,
        from_id: GenerationId,
        to_id: GenerationId,
        since: i64,
        within: i64,
    ) -> Pending {
        Pending {
            version: VERSION,
            from,
            from_id,
            to_id,
            since,
            deadline: since.saturating_add(within),
            watcher: None,
            rolled_back: None,
        }
    }

    /// Whether the confirmation is still awaited (not expired, not rolled back).
    pub fn awaited(&self, now: i64) -> bool {
        self.rolled_back.is_none() && now < self.deadline
    }
}

fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

/// The record, if there is one.
pub fn read(state_dir: &Path) -> Result<Option<Pending>, Error> {
    let p = path(state_dir);
    let mut f = match trust::open(&p, Expect::File, false) {
        Ok(f) => f,
        Err(sysgen_store::StoreError::Io { source, .. })
            if source.kind() == ErrorKind::NotFound =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).map_err(|e| io(&p, e))?;
    let pending: Pending = serde_json::from_slice(&bytes).map_err(|e| {
        Error::Corrupt(format!(
            "{}: unreadable pending confirmation ({e}); remove it once the host is on the generation it should be on",
            p.display()
        ))
    })?;
    if pending.version != VERSION {
        return Err(Error::Corrupt(format!(
            "{}: pending confirmation version {} is not {VERSION}; use the sysgen that wrote it",
            p.display(),
            pending.version
        )));
    }
    Ok(Some(pending))
}

/// Writes the record atomically and durably: temp, fsync, rename, fsync
/// the directory. The temp is created new and never followed; a leftover
/// one (an interrupted write) is removed first.
pub fn write(state_dir: &Path, pending: &Pending) -> Result<(), Error> {
    let p = path(state_dir);
    let tmp = state_dir.join(TEMP);
    let dir = trust::open(state_dir, Expect::Dir, false)?;
    remove_name(&dir, state_dir, TEMP)?;
    let bytes = serde_json::to_vec_pretty(pending)
        .map_err(|e| Error::Internal(format!("encoding the pending confirmation: {e}")))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io(&tmp, e))?;
    f.write_all(&bytes).map_err(|e| io(&tmp, e))?;
    f.sync_all().map_err(|e| io(&tmp, e))?;
    drop(f);
    nix::fcntl::renameat(&dir, TEMP, &dir, FILE).map_err(|e| io(&p, e.into()))?;
    dir.sync_all().map_err(|e| io(state_dir, e))
}

/// Removes the record durably (confirmed, or nothing left to watch).
pub fn remove(state_dir: &Path) -> Result<(), Error> {
    let dir = trust::open(state_dir, Expect::Dir, false)?;
    remove_name(&dir, state_dir, FILE)?;
    dir.sync_all().map_err(|e| io(state_dir, e))
}

/// Unlinks `name` in `dir` (never following it); absent is fine.
fn remove_name(dir: &File, state_dir: &Path, name: &str) -> Result<(), Error> {
    match nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(io(&state_dir.join(name), e.into())),
    }
}

fn io(p: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: p.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> GenerationId {
        GenerationId(sysgen_store::Hash::of(&[b]))
    }

    #[test]
    fn written_read_back_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        let mut p = Pending::new(3, id(1), id(2), 100, 60);
        p.watcher = Some(Watcher::Process { pid: 42 });
        write(dir.path(), &p).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(p.clone()));
        assert!(p.awaited(159));
        assert!(!p.awaited(160));
        remove(dir.path()).unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
    }

    #[test]
    fn a_planted_symlink_is_refused_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::write(&outside, b"{}").unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        std::os::unix::fs::symlink(&outside, state.join(FILE)).unwrap();
        let e = read(&state).unwrap_err().to_string();
        assert!(e.contains("is a symlink"), "{e}");
    }
}
