//! The configuration file exactly as written (SPEC §2), for serde and
//! schemars. Checks that need only one value (a mode, an owner) happen while
//! deserializing, so their errors carry a line and column; checks that need
//! the key, other fields or the file system happen in `load`.
//!
//! `json_schema()` is derived from these types, so the schema editors see is
//! the format `load` accepts. Doc comments become schema descriptions.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};

use crate::{Mode, Principal};

/// Pattern of a mode string in the schema; `parse_mode` is the authority.
pub(crate) const MODE_PATTERN: &str = "^[0-7]{3,4}$";

/// A sysgen host configuration file (format version 1).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "sysgen configuration")]
pub(crate) struct RawConfig {
    /// Format version. Optional; the only accepted value is 1.
    #[serde(default)]
    #[schemars(range(min = 1, max = 1))]
    pub sysgen: Option<i64>,

    /// Host name. When set, switch refuses (unless --force) if the target
    /// root's /etc/hostname names another host.
    #[serde(default)]
    #[schemars(pattern(
        r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$"
    ))]
    pub host: Option<String>,

    /// Other configuration files (.json or .toml), relative to this one or
    /// absolute. A declaration here overrides the same key declared in an
    /// included file.
    #[serde(default)]
    pub include: Vec<String>,

    /// Regular files, keyed by absolute path.
    #[serde(default, deserialize_with = "unique_map")]
    #[schemars(extend("propertyNames" = { "pattern": "^/" }))]
    pub files: BTreeMap<String, RawFile>,

    /// Directories, keyed by absolute path.
    #[serde(default, deserialize_with = "unique_map")]
    #[schemars(extend("propertyNames" = { "pattern": "^/" }))]
    pub directories: BTreeMap<String, RawDirectory>,

    /// Symbolic links: absolute path of the link to its target, verbatim.
    #[serde(default, deserialize_with = "unique_map")]
    #[schemars(extend("propertyNames" = { "pattern": "^/" }))]
    #[schemars(inner(length(min = 1)))]
    pub symlinks: BTreeMap<String, String>,

    /// Directory trees copied from a source directory, keyed by absolute path.
    #[serde(default, deserialize_with = "unique_map")]
    #[schemars(extend("propertyNames" = { "pattern": "^/" }))]
    pub trees: BTreeMap<String, RawTree>,

    /// Packages to install.
    #[serde(default)]
    pub packages: RawPackages,

    /// Directories, btrfs subvolumes or zfs datasets, keyed by absolute path.
    #[serde(default, deserialize_with = "unique_map")]
    #[schemars(extend("propertyNames" = { "pattern": "^/" }))]
    pub datasets: BTreeMap<String, RawDataset>,

    /// systemd units, keyed by unit name (for example nginx.service).
    #[serde(default, deserialize_with = "unique_map")]
    #[schemars(extend("propertyNames" = {
        "pattern": r"^[A-Za-z0-9:_.\\@-]+\.(service|socket|timer|target|path|mount)$"
    }))]
    pub services: BTreeMap<String, RawService>,

    /// Variables for templates (`files.<path>.template`), by name: any JSON
    /// value. A declaration here overrides the same name declared in an
    /// included file.
    #[serde(default, deserialize_with = "unique_map")]
    #[schemars(extend("propertyNames" = { "pattern": crate::load::vars::NAME_PATTERN }))]
    pub vars: BTreeMap<String, serde_json::Value>,

    /// Secrets for templates, by name: read at build from a file outside
    /// the configuration repository (mode 0600) or from a command's output.
    #[serde(default, deserialize_with = "unique_map")]
    #[schemars(extend("propertyNames" = { "pattern": crate::load::vars::NAME_PATTERN }))]
    pub secrets: BTreeMap<String, RawSecret>,
    /// Managed blocks in files sysgen does not own (/etc/hosts, /etc/fstab,
    /// /etc/sudoers.d/…), keyed by absolute path, then by block name. Each
    /// block sits between `# BEGIN sysgen NAME` and `# END sysgen NAME`;
    /// everything outside the blocks is the admin's or a package's.
    #[serde(default, deserialize_with = "unique_map")]
    #[schemars(extend("propertyNames" = { "pattern": "^/" }))]
    pub blocks: BTreeMap<String, BTreeMap<String, RawBlock>>,

    /// Commands run in the root after every switch to this generation (in
    /// a chroot when the root is not /); if one fails, the switch is rolled
    /// back, as for a failed unit.
    #[serde(default)]
    pub checks: Vec<RawCheck>,
    /// The JSON Schema an editor checks this file against (`sysgen
    /// schema` writes it); sysgen itself ignores it.
    #[serde(default, rename = "$schema")]
    #[allow(
        dead_code,
        reason = "serde and schemars read it; sysgen has no use for it"
    )]
    pub schema: Option<String>,
    /// Groups, keyed by name: created when missing, removed when they leave
    /// (unless they were there before sysgen).
    #[serde(default, deserialize_with = "unique_map")]
    #[schemars(extend("propertyNames" = { "pattern": crate::load::users::NAME_PATTERN }))]
    pub groups: BTreeMap<String, crate::load::users::RawGroup>,

    /// Users, keyed by name: created when missing, removed when they leave
    /// (their home kept until gc), put back as they were if they were there
    /// before sysgen.
    #[serde(default, deserialize_with = "unique_map")]
    #[schemars(extend("propertyNames" = { "pattern": crate::load::users::NAME_PATTERN }))]
    pub users: BTreeMap<String, crate::load::users::RawUser>,
}

/// A regular file: exactly one of `content` or `source`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "File")]
#[schemars(extend("oneOf" = [{ "required": ["content"] }, { "required": ["source"] }, { "required": ["url"] }]))]
pub(crate) struct RawFile {
    /// The file's content, as text.
    #[serde(default)]
    pub content: Option<String>,
    /// A file whose content to copy, relative to this configuration file or
    /// absolute. It must exist when the configuration is loaded.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub source: Option<String>,
    /// Octal permission bits; default "0644", or "0600" when secret.
    #[serde(default)]
    pub mode: Option<RawMode>,
    /// Owner: a user name or a uid. When absent, ownership is not managed.
    #[serde(default)]
    pub owner: Option<RawPrincipal>,
    /// Group: a group name or a gid. When absent, ownership is not managed.
    #[serde(default)]
    pub group: Option<RawPrincipal>,
    /// The content is never printed and is stored where only root can read it.
    #[serde(default)]
    pub secret: bool,
    /// Render `content` or `source` as a minijinja template with `vars`,
    /// host facts (`host.name`, `host.release`, `host.codename`,
    /// `host.arch`) and `secrets`. A file that uses a secret is secret.
    #[serde(default)]
    pub template: bool,
    /// Download the content from this http:// or https:// URL at build;
    /// needs `sha256` or `blake3`.
    #[serde(default)]
    #[schemars(pattern("^https?://"))]
    pub url: Option<String>,
    /// The SHA-256 of the downloaded content, 64 hex digits.
    #[serde(default)]
    #[schemars(pattern("^[0-9a-fA-F]{64}$"))]
    pub sha256: Option<String>,
    /// The BLAKE3 of the downloaded content, 64 hex digits.
    #[serde(default)]
    #[schemars(pattern("^[0-9a-fA-F]{64}$"))]
    pub blake3: Option<String>,
    /// A command that checks the new content before anything changes, `%s`
    /// standing for a staged copy of it, e.g. "visudo -cf %s". It runs in
    /// the root (in a chroot when the root is not /); if it fails, the
    /// switch changes nothing.
    #[serde(default)]
    #[schemars(length(min = 1), pattern("%s"))]
    pub validate: Option<String>,
    /// File capabilities in libcap's text form, as `setcap` takes them
    /// (e.g. "cap_net_raw=ep").
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub caps: Option<String>,
    /// Extended attributes to set, name to text value; names in the
    /// `user.`, `trusted.` or `security.` namespace (a capability goes in
    /// `caps`).
    #[serde(default)]
    pub xattrs: BTreeMap<String, String>,
}

/// A secret: exactly one of `file` or `command`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Secret")]
#[schemars(extend("oneOf" = [{ "required": ["file"] }, { "required": ["command"] }]))]
pub(crate) struct RawSecret {
    /// An absolute path outside the configuration repository, mode 0600
    /// (no group or other bits), owned by the user sysgen runs as. One
    /// trailing newline is dropped.
    #[serde(default)]
    #[schemars(pattern("^/"))]
    pub file: Option<String>,
    /// A shell command (`sh -c`) whose standard output is the value; it
    /// must exit 0. One trailing newline is dropped.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub command: Option<String>,
}

/// A directory.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Directory")]
pub(crate) struct RawDirectory {
    /// Octal permission bits; default "0755".
    #[serde(default)]
    pub mode: Option<RawMode>,
    /// Owner: a user name or a uid. When absent, ownership is not managed.
    #[serde(default)]
    pub owner: Option<RawPrincipal>,
    /// Group: a group name or a gid. When absent, ownership is not managed.
    #[serde(default)]
    pub group: Option<RawPrincipal>,
}

/// A tree: every file, directory and symlink under `source` is declared at
/// the matching path, with the source's permission bits.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Tree")]
pub(crate) struct RawTree {
    /// A directory, relative to this configuration file or absolute. It must
    /// exist when the configuration is loaded.
    #[schemars(length(min = 1))]
    pub source: String,
    /// Overrides the mode of every regular file of the tree.
    #[serde(default)]
    pub mode: Option<RawMode>,
    /// Globs of what to leave out: a glob without `/` (`*.swp`, `*~`)
    /// matches a name at any depth, one with `/` the path from the tree's
    /// top (`cache/**`); a trailing `/` matches directories only. An
    /// excluded directory is left out with everything under it.
    #[serde(default)]
    #[schemars(inner(length(min = 1)))]
    pub exclude: Vec<String>,
    /// Also deploy version-control directories (`.git`, `.hg`, `.svn`,
    /// `.bzr`, `_darcs`, `CVS`), which are left out by default.
    #[serde(default)]
    pub vcs: bool,
    /// Owner of every entry: a user name or a uid. By default each keeps
    /// its source's numeric owner.
    #[serde(default)]
    pub owner: Option<RawPrincipal>,
    /// Group of every entry: a group name or a gid. By default each keeps
    /// its source's numeric group.
    #[serde(default)]
    pub group: Option<RawPrincipal>,
    /// Also keep the sources' `user.*` extended attributes (capabilities
    /// and POSIX ACLs are always kept).
    #[serde(default)]
    pub xattrs: bool,
}

/// Packages, by package manager.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Packages")]
pub(crate) struct RawPackages {
    /// Debian package names, each optionally `name=version`.
    #[serde(default)]
    #[schemars(inner(pattern(r"^[a-z0-9][a-z0-9+.-]+(=[0-9A-Za-z.+~:-]+)?$")))]
    pub apt: Vec<String>,
    /// Debian package names to purge when they leave the configuration (or
    /// now, if sysgen removed them earlier): their configuration and data
    /// go at once instead of when gc collects the last generation with them.
    #[serde(default)]
    #[schemars(inner(pattern(r"^[a-z0-9][a-z0-9+.-]+$")))]
    pub purge: Vec<String>,
}

/// The kind of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(rename = "DatasetType")]
pub(crate) enum RawDatasetType {
    /// A plain directory.
    Directory,
    /// A btrfs subvolume.
    Btrfs,
    /// A zfs dataset; needs `name`.
    Zfs,
}

/// A dataset: a directory, btrfs subvolume or zfs dataset.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Dataset")]
pub(crate) struct RawDataset {
    /// What to create at the path.
    #[serde(rename = "type")]
    pub kind: RawDatasetType,
    /// The zfs dataset name, "pool/dataset"; only with type zfs.
    #[serde(default)]
    #[schemars(pattern(r"^[A-Za-z0-9_.:-]+(/[A-Za-z0-9_.:-]+)+$"))]
    pub name: Option<String>,
    /// Take a read-only snapshot at every switch. Default false.
    #[serde(default)]
    pub snapshot: bool,
    /// Octal permission bits of the dataset's top directory.
    #[serde(default)]
    pub mode: Option<RawMode>,
    /// Owner: a user name or a uid.
    #[serde(default)]
    pub owner: Option<RawPrincipal>,
    /// Group: a group name or a gid.
    #[serde(default)]
    pub group: Option<RawPrincipal>,
}

/// A systemd unit.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Service")]
pub(crate) struct RawService {
    /// Enable the unit (and start it); default true. false disables it.
    #[serde(default = "yes")]
    pub enable: bool,
    /// Absolute paths whose change in a switch restarts the unit.
    #[serde(default)]
    #[schemars(inner(pattern("^/")))]
    pub restart_on: Vec<String>,
    /// Absolute paths whose change in a switch reloads the unit.
    #[serde(default)]
    #[schemars(inner(pattern("^/")))]
    pub reload_on: Vec<String>,
    /// A shell command that must succeed after the unit (re)starts, or the
    /// switch is rolled back.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub check: Option<String>,
    /// Seconds the check may run before it counts as failed; default 30.
    /// Only with `check`.
    #[serde(default)]
    #[schemars(range(min = 1, max = 3600))]
    pub check_timeout: Option<u64>,
}

/// A managed block: its text, or the text with options.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "Block")]
pub(crate) enum RawBlock {
    /// The block's text (a final newline is added when missing).
    Text(String),
    Full(RawBlockOptions),
}

/// A managed block with options.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "BlockOptions")]
pub(crate) struct RawBlockOptions {
    /// The block's text (a final newline is added when missing).
    pub content: String,
    /// What starts a comment in this file, for the markers; default "#".
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub comment: Option<String>,
    /// Mode of the file when sysgen creates it (it does not exist); default
    /// "0644". Blocks of one file that set it must agree.
    #[serde(default)]
    pub mode: Option<RawMode>,
    /// A command that checks the whole file with its new blocks before
    /// anything changes, `%s` standing for a staged copy (e.g. "visudo -cf
    /// %s"). Blocks of one file that set it must agree.
    #[serde(default)]
    #[schemars(length(min = 1), pattern("%s"))]
    pub validate: Option<String>,
}

/// A generation check: a shell command, or one with its timeout.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "GenerationCheck")]
pub(crate) enum RawCheck {
    Command(#[schemars(length(min = 1))] String),
    Full(RawCheckOptions),
}

/// A generation check with its timeout.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "GenerationCheckOptions")]
pub(crate) struct RawCheckOptions {
    /// A shell command that must exit 0.
    #[schemars(length(min = 1))]
    pub command: String,
    /// Seconds it may run before it counts as failed; default 30.
    #[serde(default)]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout: Option<u64>,
}

fn yes() -> bool {
    true
}

/// Only to find the format version before the full parse, so a file of a
/// newer format gets "unsupported version" rather than "unknown field".
#[derive(Deserialize)]
pub(crate) struct VersionProbe {
    #[serde(default)]
    pub sysgen: Option<i64>,
}

/// A mode string, checked while deserializing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawMode(pub Mode);

/// `"644"`, `"0644"`, `"2755"`: three or four octal digits.
pub(crate) fn parse_mode(s: &str) -> Option<Mode> {
    if !(3..=4).contains(&s.len()) || !s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    Mode::new(u32::from_str_radix(s, 8).ok()?)
}

impl<'de> Deserialize<'de> for RawMode {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawMode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an octal mode string such as \"0644\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RawMode, E> {
                parse_mode(s).map(RawMode).ok_or_else(|| {
                    E::custom(format!(
                        "invalid mode {s:?}: write 3 or 4 octal digits as a string, such as \"0644\""
                    ))
                })
            }
            // TOML's octal integers (`mode = 0o644`); that the number was
            // written in octal, not decimal, is checked on the text
            // (`locate::number_modes`), which alone still knows.
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<RawMode, E> {
                u32::try_from(n)
                    .ok()
                    .and_then(Mode::new)
                    .map(RawMode)
                    .ok_or_else(|| {
                        E::custom(format!("invalid mode 0o{n:o}: a mode is at most 0o7777"))
                    })
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<RawMode, E> {
                u64::try_from(n)
                    .map_err(|_| E::custom(format!("invalid mode {n}: a mode is not negative")))
                    .and_then(|n| self.visit_u64(n))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for RawMode {
    fn schema_name() -> Cow<'static, str> {
        "Mode".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Octal permission bits as a string of 3 or 4 digits, such as \"0644\" or \"2755\"; in TOML also an octal integer, such as 0o644 (a decimal integer is refused).",
            "oneOf": [
                { "type": "string", "pattern": MODE_PATTERN },
                { "type": "integer", "minimum": 0, "maximum": 0o7777 }
            ]
        })
    }
}

/// An owner or group: a name, a number, or a string of digits (a number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawPrincipal(pub Principal);

/// The largest id: `(uid_t)-1` (4294967295) is no id, chown reads it as
/// "leave unchanged", so sysgen could never set it and would report drift.
const MAX_ID: u32 = u32::MAX - 1;

fn id_from_u64(n: u64) -> Result<Principal, String> {
    u32::try_from(n)
        .ok()
        .filter(|&n| n <= MAX_ID)
        .map(Principal::Id)
        .ok_or_else(|| {
            format!("invalid id {n}: an id must be at most {MAX_ID} (4294967295 means \"unchanged\" to chown)")
        })
}

fn principal_from_str(s: &str) -> Result<Principal, String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 is too large too.
        return id_from_u64(s.parse::<u64>().unwrap_or(u64::MAX));
    }
    let bad = |c: char| c == ':' || c == '/' || c.is_control() || c.is_whitespace();
    if s.is_empty() || s.chars().any(bad) {
        return Err(format!(
            "invalid user or group name {s:?}: write a name without ':', '/' or whitespace, or a number"
        ));
    }
    Ok(Principal::Name(s.to_owned()))
}

impl<'de> Deserialize<'de> for RawPrincipal {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawPrincipal;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a user or group name, or a number")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RawPrincipal, E> {
                principal_from_str(s).map(RawPrincipal).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<RawPrincipal, E> {
                id_from_u64(n).map(RawPrincipal).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<RawPrincipal, E> {
                u64::try_from(n)
                    .map_err(|_| E::custom(format!("invalid id {n}: an id must not be negative")))
                    .and_then(|n| self.visit_u64(n))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for RawPrincipal {
    fn schema_name() -> Cow<'static, str> {
        "Principal".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A user or group name (resolved in the target root's /etc/passwd or /etc/group), or a numeric id.",
            "oneOf": [
                { "type": "string", "minLength": 1, "pattern": "^[^:/\\s]+$" },
                { "type": "integer", "minimum": 0, "maximum": MAX_ID }
            ]
        })
    }
}

/// A map that rejects a key written twice: serde_json would silently keep
/// the last one, which hides a mistake. (TOML rejects duplicates itself.)
fn unique_map<'de, D, V>(d: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: de::Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct M<V>(PhantomData<V>);
    impl<'de, V: Deserialize<'de>> Visitor<'de> for M<V> {
        type Value = BTreeMap<String, V>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(k) = a.next_key::<String>()? {
                if out.contains_key(&k) {
                    return Err(de::Error::custom(format!(
                        "duplicate key {k:?}: declare it once"
                    )));
                }
                let v = a.next_value()?;
                out.insert(k, v);
            }
            Ok(out)
        }
    }
    d.deserialize_map(M(PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        for (s, bits) in [
            ("644", 0o644),
            ("0644", 0o644),
            ("2755", 0o2755),
            ("0000", 0),
        ] {
            assert_eq!(parse_mode(s).map(Mode::bits), Some(bits), "{s}");
        }
        for s in ["0999", "rw-", "64", "06444", "", "+644", "0x1f"] {
            assert_eq!(parse_mode(s), None, "{s}");
        }
    }

    #[test]
    fn principals() {
        assert_eq!(
            principal_from_str("root"),
            Ok(Principal::Name("root".into()))
        );
        assert_eq!(principal_from_str("33"), Ok(Principal::Id(33)));
        assert!(principal_from_str("").is_err());
        assert!(principal_from_str("a:b").is_err());
        assert!(principal_from_str("99999999999").is_err());
    }
}
