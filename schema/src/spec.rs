//! The validated configuration: what `load` returns. Every value here has
//! passed every rule of SPEC §2, so code below never re-checks it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use crate::EntryPath;

/// Permission bits, at most `0o7777`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mode(u32);

impl Mode {
    /// `None` when `bits` has anything above `0o7777`.
    pub fn new(bits: u32) -> Option<Mode> {
        (bits <= 0o7777).then_some(Mode(bits))
    }
    pub fn bits(self) -> u32 {
        self.0
    }
}

impl fmt::Debug for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

/// An owner or group as written: a name to resolve in the target root's
/// `/etc/passwd` / `/etc/group`, or a number.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Principal {
    Name(String),
    Id(u32),
}

/// Where a file's content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileContent {
    /// `content`: inline text.
    Inline(String),
    /// `source`: a file, already resolved to an absolute path on the build host.
    Source(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    pub content: FileContent,
    pub mode: Mode,
    pub owner: Option<Principal>,
    pub group: Option<Principal>,
    pub secret: bool,
    /// The configuration file that declared this entry (after overrides).
    pub declared_in: PathBuf,
    /// File capabilities, in libcap's text form (parsed at build).
    pub caps: Option<String>,
    /// Extended attributes, name to value.
    pub xattrs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirSpec {
    pub mode: Mode,
    pub owner: Option<Principal>,
    pub group: Option<Principal>,
    pub declared_in: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymlinkSpec {
    /// The link target, verbatim.
    pub target: String,
    pub declared_in: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeSpec {
    /// The source directory, resolved to an absolute path on the build host.
    pub source: PathBuf,
    /// Overrides the mode of every regular file of the tree.
    pub mode: Option<Mode>,
    pub declared_in: PathBuf,
    /// Overrides the owner and group of every entry; by default each
    /// keeps its source's numeric ids.
    pub owner: Option<Principal>,
    pub group: Option<Principal>,
    /// Keep the sources' `user.*` extended attributes too.
    pub xattrs: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AptPackage {
    pub name: String,
    /// `name=version`: the exact version asked for.
    pub version: Option<String>,
    /// The configuration file whose declaration won.
    pub declared_in: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Packages {
    /// Keyed by package name.
    pub apt: BTreeMap<String, AptPackage>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatasetKind {
    Directory,
    Btrfs,
    Zfs { name: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetSpec {
    pub kind: DatasetKind,
    pub snapshot: bool,
    pub mode: Option<Mode>,
    pub owner: Option<Principal>,
    pub group: Option<Principal>,
    pub declared_in: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    pub enable: bool,
    pub restart_on: Vec<EntryPath>,
    pub reload_on: Vec<EntryPath>,
    pub check: Option<Check>,
    pub declared_in: PathBuf,
}

/// An activation check: a shell command that must exit 0 within `timeout_secs`
/// after its unit started or restarted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub command: String,
    pub timeout_secs: u64,
}

/// How long a check may run when `check_timeout` is not given.
pub const DEFAULT_CHECK_TIMEOUT_SECS: u64 = 30;

/// A whole host configuration, includes merged, every rule checked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostSpec {
    /// The top-level configuration file, canonicalized.
    pub config: PathBuf,
    pub host: Option<String>,
    pub files: BTreeMap<EntryPath, FileSpec>,
    pub directories: BTreeMap<EntryPath, DirSpec>,
    pub symlinks: BTreeMap<EntryPath, SymlinkSpec>,
    pub trees: BTreeMap<EntryPath, TreeSpec>,
    pub packages: Packages,
    pub datasets: BTreeMap<EntryPath, DatasetSpec>,
    pub services: BTreeMap<String, ServiceSpec>,
}
