//! The accounts section of a generation's manifest, as data: the users and
//! groups it declares, each with the id it was given once and keeps. The
//! users kind (`users/`) owns what is done with them; the data lives here,
//! below the manifest, so the manifest does not import a kind.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sysgen_store::Hash;

fn is_false(b: &bool) -> bool {
    !*b
}

/// A generation's users and groups, by name. Empty for generations without
/// any, so their manifests (and ids) are those of a sysgen without users.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Accounts {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub groups: BTreeMap<String, Group>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub users: BTreeMap<String, User>,
}

static NO_ACCOUNTS: Accounts = Accounts {
    groups: BTreeMap::new(),
    users: BTreeMap::new(),
};

impl Accounts {
    /// What a side with no generation has.
    pub fn none() -> &'static Accounts {
        &NO_ACCOUNTS
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.users.is_empty()
    }
}

/// One group, with its gid (declared, found on the root, or allocated once).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub gid: u32,
    #[serde(default, skip_serializing_if = "is_false")]
    pub system: bool,
}

/// One user. `None` leaves an attribute as the root has it (a user sysgen
/// creates gets the shadow tools' default).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub uid: u32,
    /// Primary group, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Supplementary groups, exactly, sorted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub system: bool,
    /// Make the home when sysgen creates the user; detach it (kept until
    /// gc) when the user leaves.
    #[serde(default, skip_serializing_if = "is_false")]
    pub create_home: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Password>,
}

/// A managed password.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Password {
    /// `!`: no password logs in.
    Locked,
    /// A crypt(3) hash, kept in the store's secret area under this object:
    /// the manifest holds only the object's name, never the hash itself.
    Hash(Hash),
}
