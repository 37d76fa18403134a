//! Generations: build a configuration into an immutable, content-addressed
//! generation, and switch a root between generations exactly.
//!
//! Data flow: `sysgen_schema::load` gives a `HostSpec`; [`ingest::build`]
//! hashes and stores its contents and records a Merkle [`manifest`];
//! [`switch::switch_to`] diffs the active manifest against the target
//! ([`manifest::diff`]), inspects the live root ([`precheck`]), turns both
//! into a [`plan::Plan`] (pure), journals it ([`journal`]) and runs it
//! through [`apply`], whose only way to touch the root is [`rootfs`].
//!
//! The library never prints, reads the environment or the clock: the
//! binary passes the time, the fault point and a [`Progress`] sink in.

pub mod apply;
pub mod compare;
pub mod datasets;
pub mod db;
pub mod files;
pub mod gc;
pub mod ingest;
pub mod journal;
pub mod kind;
pub mod kinds;
pub mod manifest;
#[cfg(test)]
mod model_tests;
pub mod packages;
pub mod pipeline;
pub mod plan;
pub mod recover;
pub mod rootfs;
pub mod services;
pub mod state;
pub mod switch;
pub mod text;
pub mod verify;

use std::path::PathBuf;

pub use manifest::{Entry, GenerationId};
pub use state::State;

/// Where long operations report how far they are. The binary draws a
/// progress bar on a terminal; tests and pipes pass [`NoProgress`].
pub trait Progress: Sync {
    fn start(&self, what: &str, total: u64);
    fn advance(&self, n: u64);
    fn finish(&self);
}

pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}

/// A managed path whose live state differs from what sysgen wrote.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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
    #[error("state database: {0}")]
    Db(String),
    #[error(transparent)]
    Root(#[from] rootfs::RootError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the state database lacks manifest node {0:?}; run `sysgen verify --store`")]
    MissingNode(manifest::NodeId),
    #[error("corrupt manifest: {0}")]
    CorruptManifest(String),
    #[error("{}", locked_message(.pid, .path))]
    Locked { pid: Option<u32>, path: PathBuf },
    #[error(
        "a switch to generation {to} was interrupted; run `sysgen recover` to finish it, or `sysgen recover --rollback` to go back to {}",
        from.map_or("the state before it".to_owned(), |n| format!("generation {n}"))
    )]
    Interrupted { to: u64, from: Option<u64> },
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
    #[error("{0}")]
    NoSuchGeneration(String),
    #[error("generation {0} was deleted by gc; `sysgen list` shows the generations that remain")]
    Collected(u64),
    #[error(transparent)]
    Service(#[from] services::ServiceError),
    /// A package manager refused or failed.
    #[error("{0}")]
    Package(PackageError),
    /// A dataset tool (btrfs, zfs) failed, with its stderr.
    #[error("{0}")]
    Dataset(String),
    /// A file to keep changed between the plan and the moment it was saved.
    #[error(
        "{path} changed while sysgen was saving it in the store; nothing was changed on the root; run the command again"
    )]
    ChangedWhileSaving { path: String },
    /// A bug in sysgen: never the user's input.
    #[error("internal error (a bug in sysgen; please report it): {0}")]
    Internal(String),
}

/// A failure of the package manager: what went wrong (with the tool's own
/// last lines), the package at fault when known, and what to do.
#[derive(Debug)]
pub struct PackageError {
    pub package: Option<String>,
    pub what: String,
    pub hint: String,
}

impl std::fmt::Display for PackageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}
{}",
            self.what, self.hint
        )
    }
}

/// Each key of `old` or `new` whose value is not the same in both, in key
/// order: the key, "added", "removed" or "changed", and the two values.
/// What `diff` reports of datasets and of services.
pub(crate) fn keyed_changes<'a, K: Ord, V: PartialEq>(
    old: &'a std::collections::BTreeMap<K, V>,
    new: &'a std::collections::BTreeMap<K, V>,
) -> impl Iterator<Item = (&'a K, &'static str, Option<&'a V>, Option<&'a V>)> {
    let keys: std::collections::BTreeSet<&K> = old.keys().chain(new.keys()).collect();
    keys.into_iter().filter_map(|k| {
        let (o, n) = (old.get(k), new.get(k));
        let change = match (o, n) {
            (None, Some(_)) => "added",
            (Some(_), None) => "removed",
            (Some(a), Some(b)) if a != b => "changed",
            _ => return None,
        };
        Some((k, change, o, n))
    })
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
        "{} managed path{} changed on the root since generation {since} wrote {}:",
        paths.len(),
        if paths.len() == 1 { "" } else { "s" },
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

impl Error {
    /// True when the fault is in the configuration or the command line:
    /// the CLI exits with status 2 for these, 1 for the rest.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            Error::Config(_) | Error::Invalid(_) | Error::NoSuchGeneration(_)
        )
    }
}

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
