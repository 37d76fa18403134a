//! The sections of a generation's manifest besides its tree, as data:
//! what the packages, services and datasets kinds record. The kinds own
//! what is done with them; the data lives here, below both the manifest
//! and the kinds, so that neither imports the other.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sysgen_schema::EntryPath;

fn is_false(b: &bool) -> bool {
    !*b
}

/// The sections of one generation, as a build makes them (each kind sets
/// its own).
#[derive(Default)]
pub struct Sections {
    pub packages: PackageSet,
    pub services: Services,
    pub datasets: Datasets,
    pub blocks: Blocks,
    pub checks: Checks,
    pub validate: Validations,
    pub accounts: crate::accounts::Accounts,
}

// ---- packages

/// The packages of a generation, by manager (only apt today).
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageSet {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub apt: BTreeMap<String, Pin>,
    /// Packages the configuration asks to purge when they leave (or, left
    /// over from an earlier removal, now): their configuration and data go
    /// at once rather than when gc collects the last generation with them.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub purge: std::collections::BTreeSet<String>,
}

static NO_PACKAGES: PackageSet = PackageSet {
    apt: BTreeMap::new(),
    purge: std::collections::BTreeSet::new(),
};

impl PackageSet {
    /// What a side with no generation has.
    pub fn none() -> &'static PackageSet {
        &NO_PACKAGES
    }

    pub fn is_empty(&self) -> bool {
        self.apt.is_empty() && self.purge.is_empty()
    }
}

/// One package at an exact version.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    pub version: String,
    pub arch: String,
    /// Pulled in for a declared package rather than declared itself.
    #[serde(default, skip_serializing_if = "is_false")]
    pub dependency: bool,
}

// ---- services

/// The services section of a manifest: the declared units, by name.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Services(pub BTreeMap<String, Unit>);

static NO_SERVICES: Services = Services(BTreeMap::new());

impl Services {
    /// What a side with no generation has.
    pub fn none() -> &'static Services {
        &NO_SERVICES
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One declared unit, as a generation records it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unit {
    pub enable: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restart_on: Vec<EntryPath>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reload_on: Vec<EntryPath>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<Check>,
}

/// A shell command that must exit 0 within `timeout_secs` after the unit
/// started or restarted.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub command: String,
    pub timeout_secs: u64,
}

// ---- datasets

/// What backs a dataset.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum DatasetType {
    /// A plain directory: works on every filesystem.
    Directory,
    /// A btrfs subvolume.
    Btrfs,
    /// A zfs dataset, mounted at the path.
    Zfs { name: String },
}

impl fmt::Display for DatasetType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatasetType::Directory => write!(f, "directory"),
            DatasetType::Btrfs => write!(f, "btrfs subvolume"),
            DatasetType::Zfs { name } => write!(f, "zfs dataset {name}"),
        }
    }
}

/// One dataset of a generation. Its mode and owner live in the tree, as
/// the directory at its path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    pub kind: DatasetType,
    /// Take a read-only snapshot whenever a switch leaves a generation that has it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub snapshot: bool,
}

/// A generation's datasets, by path. Empty for generations without any, so
/// their manifests (and ids) are those of a sysgen without datasets.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Datasets(pub BTreeMap<EntryPath, Dataset>);

static NO_DATASETS: Datasets = Datasets(BTreeMap::new());

impl Datasets {
    /// What a side with no generation has.
    pub fn none() -> &'static Datasets {
        &NO_DATASETS
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

// ---- diffs

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

// ---- templates

/// What each rendered file of a generation was rendered from
/// (`files.<path>.template`), so that `diff` can say which template
/// changed and why. Absent from the manifest when empty.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Templates(pub BTreeMap<EntryPath, TemplateUse>);

static NO_TEMPLATES: Templates = Templates(BTreeMap::new());

impl Templates {
    /// What a side with no generation has.
    pub fn none() -> &'static Templates {
        &NO_TEMPLATES
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One rendered file's inputs. Never a secret's value nor its hash: only
/// the names of the secrets it used.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateUse {
    /// The template's source file, relative to the top-level
    /// configuration's directory when under it; absent for inline content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// BLAKE3 of the template's text.
    pub text: sysgen_store::Hash,
    /// The variables and host facts (`host.arch`) it read, each with the
    /// BLAKE3 of its value's JSON.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, sysgen_store::Hash>,
    /// The secrets it read, by name.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub secrets: std::collections::BTreeSet<String>,
}

// ---- blocks

/// One managed block, as a generation records it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Block {
    /// What starts a comment in the file (the markers' leader).
    pub comment: String,
    /// The text between the markers: empty, or ending with a newline.
    pub text: String,
    /// The file's mode when sysgen creates it (none: 0644).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// The command that checks the whole file (`%s`) before anything changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validate: Option<String>,
}

/// A generation's managed blocks, by file, then by block name. Empty for
/// generations without any, so their ids do not change.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Blocks(pub BTreeMap<EntryPath, BTreeMap<String, Block>>);

static NO_BLOCKS: Blocks = Blocks(BTreeMap::new());

impl Blocks {
    /// What a side with no generation has.
    pub fn none() -> &'static Blocks {
        &NO_BLOCKS
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

// ---- generation checks and validation

/// Commands run in the root after every switch to the generation; a
/// failure rolls the switch back.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Checks(pub Vec<Check>);

impl Checks {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `files.<path>.validate`: the command that checks a staged copy of each
/// file's new content (`%s`) before the journal is written.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Validations(pub BTreeMap<EntryPath, String>);

impl Validations {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
