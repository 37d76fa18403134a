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
    /// `url`: downloaded at build, checked against its digest.
    Url(Download),
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
    /// `template: true`: the content (inline or source) is a minijinja
    /// template, rendered at build.
    pub template: bool,
    /// A template's `mode` was written: if it reads a secret, it keeps that
    /// mode (if not world-readable) instead of getting 0600. Always false
    /// for other files.
    pub mode_given: bool,
    /// A command that checks a staged copy of the new content (`%s`)
    /// before anything changes.
    pub validate: Option<String>,
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
    /// Globs of what to leave out, as written (checked to compile).
    pub exclude: Vec<String>,
    /// Deploy version-control directories too (left out by default).
    pub vcs: bool,
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
    /// Packages to purge, not just remove, when they leave (every file's
    /// list, together).
    pub purge: std::collections::BTreeSet<String>,
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

/// A file to download (`url`), with the digest its content must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    pub url: String,
    pub digest: Digest,
}

/// An expected digest, as 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Digest {
    Sha256(String),
    Blake3(String),
}

/// A template variable: any JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarSpec {
    pub value: serde_json::Value,
    pub declared_in: PathBuf,
}

/// Where a secret's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// An absolute path on the build host.
    File(PathBuf),
    /// A shell command whose standard output is the value.
    Command(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSpec {
    pub source: SecretSource,
    pub declared_in: PathBuf,
}

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
    /// Template variables, by name, overrides applied.
    pub vars: BTreeMap<String, VarSpec>,
    /// Secrets, by name (read only when a template uses them).
    pub secrets: BTreeMap<String, SecretSpec>,
    /// Managed blocks, by file, then by block name.
    pub blocks: BTreeMap<EntryPath, BTreeMap<String, BlockSpec>>,
    /// Commands run after every switch; a failure rolls the switch back.
    pub checks: Vec<Check>,
    pub groups: BTreeMap<String, GroupSpec>,
    pub users: BTreeMap<String, UserSpec>,
}

/// A group of `groups`: what the configuration says; the gid, when not
/// given, is allocated once at build and then kept (generations' users kind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpec {
    pub gid: Option<u32>,
    /// A system group (gid allocated in the root's system range).
    pub system: bool,
    pub declared_in: PathBuf,
}

/// How a user's password is managed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSpec {
    /// No password can log in (`!` in `/etc/shadow`).
    Locked,
    /// A crypt(3) hash, read from a file that only root can read (mode
    /// 0600), outside the configuration.
    HashFile(PathBuf),
    /// A crypt(3) hash: the value of the named secret (`secrets.<name>`).
    Secret(String),
}

/// A user of `users`. `None` leaves an attribute to the root (the shadow
/// tools' default for a user sysgen creates; unchanged for a user that was
/// there before).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSpec {
    pub uid: Option<u32>,
    /// Primary group, by name. When absent, a user sysgen creates gets a
    /// group of its own name.
    pub group: Option<String>,
    /// Supplementary groups, exactly (sorted, once each).
    pub groups: Option<Vec<String>>,
    pub home: Option<EntryPath>,
    pub shell: Option<String>,
    pub comment: Option<String>,
    pub system: bool,
    /// Create the home directory when sysgen creates the user; default:
    /// not for system users.
    pub create_home: Option<bool>,
    pub password: Option<PasswordSpec>,
    pub declared_in: PathBuf,
}

/// A managed block in a file sysgen does not own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockSpec {
    /// The text between the markers, ending with a newline (or empty).
    pub text: String,
    /// What starts a comment in the file: the markers are
    /// `{comment} BEGIN sysgen {name}` and `{comment} END sysgen {name}`.
    pub comment: String,
    /// The file's mode when sysgen creates it.
    pub mode: Option<Mode>,
    pub declared_in: PathBuf,
    /// A command that checks a staged copy of the whole file (`%s`) with
    /// its new blocks before anything changes.
    pub validate: Option<String>,
}

/// The marker comment when none is given.
pub const DEFAULT_BLOCK_COMMENT: &str = "#";
