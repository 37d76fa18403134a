//! The errors of sysgen's library: one enum for every operation's causes,
//! with the failures particular to an operation grouped in their own types
//! ([`StateError`] opening the state, [`Refusal`] a switch that will not
//! start, [`Halfway`] one that failed after its journal was written,
//! [`GenerationError`] naming a generation, [`ServiceError`] units,
//! [`PackageError`] the package manager, [`DatasetError`] the dataset
//! tools). Causes keep their source (`#[source]`), and only the
//! configuration, the command line and a generation that does not exist
//! are the user's input (exit 2); an internal failure never is.
//!
//! This module sits below every other: it names no module of the crate
//! but the one writer's [`RootError`].

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::rootfs::RootError;

/// A managed path whose live state differs from what sysgen wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    pub path: String,
    /// What differs, e.g. "content changed", "mode 0644, expected 0600".
    pub what: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] sysgen_schema::LoadError),
    /// The configuration is valid on its own but not against this root or
    /// its sources (unknown owner, a tree that collides with a file…).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] sysgen_store::StoreError),
    /// The state database failed: what sysgen asked of it, and why.
    #[error("state database: {what}: {source}")]
    Db {
        what: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error(transparent)]
    Root(#[from] RootError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A manifest or node in the database is damaged or missing.
    #[error("corrupt manifest: {0}")]
    CorruptManifest(String),
    /// Another record sysgen keeps is damaged.
    #[error("{0}; run `sysgen verify --store`")]
    Corrupt(String),
    #[error("the state database lacks manifest node {0}; run `sysgen verify --store`")]
    MissingNode(sysgen_store::Hash),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Generation(#[from] GenerationError),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error(transparent)]
    Package(#[from] PackageError),
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// A switch (or a recover) failed after its journal was written: the
    /// root is between two generations. The whole text is in `Display`
    /// (the CLI prints `error: {e}` and nothing else).
    #[error(transparent)]
    Halfway(Box<Halfway>),
    /// A file to keep changed between the plan and the moment it was saved.
    #[error(
        "{path} changed while sysgen was saving it in the store; nothing was changed on the root; run the command again"
    )]
    ChangedWhileSaving { path: String },
    /// A bug in sysgen: never the user's input.
    #[error("internal error (a bug in sysgen; please report it): {0}")]
    Internal(String),
    /// A download (`files.<path>.url`) failed or did not match its digest;
    /// nothing was stored or changed.
    #[error("{0}")]
    Download(String),
    /// A shadow tool (useradd, usermod…) failed.
    #[error(transparent)]
    Users(#[from] crate::users::UsersError),
    /// A remote (push, pull, copy) failed; the message names the remote
    /// and the key.
    #[error("{0}")]
    Remote(String),
}

impl Error {
    /// True when the fault is in the configuration or the command line:
    /// the CLI exits with status 2 for these, 1 for the rest.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            Error::Config(_) | Error::Invalid(_) | Error::Generation(GenerationError::NoSuch(_))
        )
    }
}

/// A failed query of the state database, with rusqlite's error as its
/// source and, for a full or failing disk, what that means.
pub(crate) fn sql(e: rusqlite::Error) -> Error {
    let what = match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DiskFull) => {
            "no space left on the state directory's disk; free some, then run the command again"
        }
        Some(rusqlite::ErrorCode::SystemIoFailure) => {
            "it could not write (is the state directory's disk full, or failing?)"
        }
        _ => "query",
    };
    Error::Db {
        what: what.into(),
        source: e,
    }
}

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}

/// Opening the state directory for a mutating command.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{}", locked_message(.pid, .path))]
    Locked { pid: Option<u32>, path: PathBuf },
    #[error(
        "a switch to generation {to} was interrupted; run `sysgen recover` to finish it, or `sysgen recover --rollback` to go back to {}",
        from.map_or("the state before it".to_owned(), |n| format!("generation {n}"))
    )]
    Interrupted { to: u64, from: Option<u64> },
}

/// Where a switch or a recover stopped, between generation `from` (none:
/// the state before sysgen) and generation `to`.
#[derive(Debug, thiserror::Error)]
#[error("{}", halfway_message(self))]
pub struct Halfway {
    /// "switch", "rollback" (the command that was running), or
    /// "recover" / "recover --rollback".
    pub what: String,
    pub from: Option<u64>,
    pub to: u64,
    /// The step that failed, when one did (a recover may fail while it plans).
    pub step: Option<FailedStep>,
    #[source]
    pub cause: Error,
}

/// A step of a plan that failed: its number (from 1), how many the plan
/// has, and its plan line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedStep {
    pub number: usize,
    pub of: usize,
    pub line: String,
}

fn halfway_message(h: &Halfway) -> String {
    let from = h.from.map_or("the state before sysgen".to_owned(), |n| {
        format!("generation {n}")
    });
    let back = h.from.map_or(
        "puts the root back as it was before sysgen".to_owned(),
        |n| format!("puts the root back on generation {n}"),
    );
    let mut s = match &h.step {
        Some(st) => format!(
            "{} failed at step {} of {}: {}\n  {}",
            h.what, st.number, st.of, st.line, h.cause
        ),
        None => format!("{} failed: {}", h.what, h.cause),
    };
    s.push_str(&format!(
        "\nthe root is now between {from} and generation {to}: some steps ran, others did not\n\
         `sysgen recover` runs the switch again from its first step and finishes it on generation {to} (remove the cause first)\n\
         `sysgen recover --rollback` undoes it and {back}",
        to = h.to
    ));
    s
}

/// A switch that will not start: nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{}", drift_message(.since, .paths))]
    Drift { since: u64, paths: Vec<Drift> },
    #[error("cannot switch:\n{}", .0.iter().map(|c| format!("  {c}")).collect::<Vec<_>>().join("\n"))]
    Conflict(Vec<String>),
    #[error(
        "the configuration is for host {want:?} but {root}/etc/hostname says {have:?}; rerun with --force if this is the right root"
    )]
    HostMismatch {
        want: String,
        have: String,
        root: String,
    },
    /// Store objects the plan reads are missing or damaged: found before
    /// the journal is written, so nothing changed.
    #[error(
        "the store cannot give what this plan writes, so nothing was changed on the root:\n{}\nrun `sysgen verify --store` to see what else needs them; `sysgen gc` moves a damaged store pack aside (salvaging what it still holds); building the configuration again stores its files again",
        .0.iter().map(|c| format!("  {c}")).collect::<Vec<_>>().join("\n")
    )]
    Unreadable(Vec<String>),
    /// The root's filesystem lacks the space or the inodes the plan needs
    /// (with headroom), e.g. "not enough space on /: the plan writes
    /// 20.0 MiB, 8.0 MiB free (it needs 26.0 MiB with headroom)".
    #[error(
        "not enough {what} on {root}: the plan {plan}, {free} free (it needs {need} with headroom); nothing was changed"
    )]
    NoSpace {
        root: String,
        /// "space" or "inodes".
        what: &'static str,
        /// What the plan does: "writes 20.0 MiB", "creates 5000 entries".
        plan: String,
        free: String,
        need: String,
    },
    /// The root's filesystem is mounted read-only.
    #[error(
        "{root} is on a read-only filesystem, and the plan changes it; nothing was changed; remount it read-write (or name another --root)"
    )]
    ReadOnly { root: String },
}

/// A generation named on the command line.
#[derive(Debug, thiserror::Error)]
pub enum GenerationError {
    /// No such generation, id or prefix (the user's input: exit 2).
    #[error("{0}")]
    NoSuch(String),
    #[error("generation {0} was deleted by gc; `sysgen list` shows the generations that remain")]
    Collected(u64),
}

/// A dataset tool (btrfs, zfs) failed, or a dataset is not where its
/// record says: what, with the tool's stderr.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DatasetError(pub String);

/// A failure of the package manager: what went wrong (with the tool's own
/// last lines), the package at fault when known, and what to do.
#[derive(Debug, thiserror::Error)]
#[error("{what}\n{hint}")]
pub struct PackageError {
    pub package: Option<String>,
    pub what: String,
    pub hint: String,
}

/// Something that did not come up after its change: a unit that failed to
/// start or stop, to be enabled or disabled, or whose check failed
/// (`unit` is "systemd" when `daemon-reload` failed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub unit: String,
    /// What failed, e.g. "its check `curl -f localhost` exited with status 7".
    pub what: String,
    /// The unit's last log lines (`systemctl status`), and the check's output.
    pub log: Vec<String>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}", self.unit, self.what)?;
        if !self.log.is_empty() {
            write!(f, "\nlast log lines of {}:", self.unit)?;
            for l in &self.log {
                write!(f, "\n  {l}")?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// `systemctl` could not be run at all.
    #[error("`{command}` failed: {why}")]
    Tool { command: String, why: String },
    /// A unit failed; `rolled_back` says where the automatic rollback
    /// landed (`Some(None)`: the root as it was before sysgen).
    #[error("{failure}\n{}", rolled_back_text(.rolled_back))]
    Failed {
        failure: Failure,
        rolled_back: Option<Option<u64>>,
    },
    #[error(
        "{failure}\nrolling the switch back failed too: {why}\nrun `sysgen recover --rollback` to go back to the previous generation"
    )]
    RollbackFailed { failure: Failure, why: String },
}

fn rolled_back_text(r: &Option<Option<u64>>) -> String {
    match r {
        Some(Some(n)) => format!("the switch was rolled back: generation {n} is active again"),
        Some(None) => "the switch was rolled back: the root is as it was before sysgen".into(),
        None => "the switch stopped there; run `sysgen recover --rollback` to go back, or fix the unit and run `sysgen recover`".into(),
    }
}

fn locked_message(pid: &Option<u32>, path: &std::path::Path) -> String {
    match pid {
        Some(pid) => format!(
            "another sysgen (pid {pid}) holds the lock on {}; wait for it to finish",
            path.display()
        ),
        None => format!(
            "another sysgen holds the lock on {}; wait for it to finish",
            path.display()
        ),
    }
}

fn drift_message(since: &u64, paths: &[Drift]) -> String {
    let mut s = format!(
        "{} changed on the root since generation {since} wrote {}:",
        crate::text::plural(paths.len(), "managed path"),
        if paths.len() == 1 { "it" } else { "them" }
    );
    for d in paths.iter().take(20) {
        s.push_str(&format!("\n  {}: {}", d.path, d.what));
    }
    if paths.len() > 20 {
        s.push_str(&format!("\n  … and {} more", paths.len() - 20));
    }
    s.push_str("\nnothing was changed; rerun with --force to overwrite them (each changed file is kept in the store first)");
    s
}
