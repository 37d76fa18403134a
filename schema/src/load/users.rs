//! `users` and `groups`: the raw declarations (serde + schemars) and each
//! file's rules on them. Names follow Debian's default `NAME_REGEX`
//! (lowercase, digits, `_` and `-`, at most 32 bytes); everything that
//! needs the root (does a named group exist, is a uid taken) is checked at
//! build, against the root.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::error::{LoadError, LoadErrorKind as Kind};
use crate::{EntryPath, GroupSpec, PasswordSpec, UserSpec};

use super::check::Decls;

/// Pattern of a user or group name in the schema; [`valid_name`] is the authority.
pub(crate) const NAME_PATTERN: &str = r"^[a-z_][a-z0-9_-]{0,31}$";

/// A group.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Group")]
pub(crate) struct RawGroup {
    /// The gid. When absent, the group keeps the gid it has on the root, or
    /// sysgen allocates one once and keeps it in every later generation.
    #[serde(default)]
    #[schemars(range(max = 4294967294u32))]
    pub gid: Option<u32>,
    /// A system group: its gid is allocated in the system range
    /// (SYS_GID_MIN..SYS_GID_MAX of the root's login.defs). Default false.
    #[serde(default)]
    pub system: bool,
}

/// How a password is managed.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "Password")]
pub(crate) enum RawPassword {
    /// "locked": no password can log in. Any other word is refused by
    /// `check`, with what to write (an untagged enum's own error says
    /// only that nothing matched).
    Word(#[schemars(with = "RawLocked")] String),
    /// A crypt(3) hash kept in a file outside the configuration.
    HashFile {
        /// A file of mode 0600 holding one crypt(3) hash ("$6$…" or
        /// "$y$…"), relative to this configuration file or absolute.
        hash_file: String,
    },
    /// A crypt(3) hash, the value of a secret declared under `secrets`.
    Secret {
        /// The name of the secret (a file of mode 0600 outside the
        /// configuration's repository, or a command).
        #[schemars(length(min = 1))]
        secret: String,
    },
}

/// The only string a password may be.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawLocked {
    Locked,
}

/// A user.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "User")]
pub(crate) struct RawUser {
    /// The uid. When absent, the user keeps the uid it has on the root, or
    /// sysgen allocates one once and keeps it in every later generation.
    #[serde(default)]
    #[schemars(range(max = 4294967294u32))]
    pub uid: Option<u32>,
    /// Primary group, by name: declared under `groups` or on the root.
    /// Default: a group of the user's own name, which sysgen creates with it.
    #[serde(default)]
    #[schemars(pattern(r"^[a-z_][a-z0-9_-]{0,31}$"))]
    pub group: Option<String>,
    /// Supplementary groups, exactly: the user is removed from any other.
    /// When absent, they are not managed.
    #[serde(default)]
    #[schemars(inner(pattern(r"^[a-z_][a-z0-9_-]{0,31}$")))]
    pub groups: Option<Vec<String>>,
    /// Home directory; default /home/NAME (as useradd makes it).
    #[serde(default)]
    #[schemars(pattern("^/"))]
    pub home: Option<String>,
    /// Login shell, an absolute path; default the root's useradd default.
    #[serde(default)]
    #[schemars(pattern("^/"))]
    pub shell: Option<String>,
    /// The GECOS field (full name).
    #[serde(default)]
    pub comment: Option<String>,
    /// A system user (uid in the system range, no home made). Default false.
    #[serde(default)]
    pub system: bool,
    /// Make the home directory (from /etc/skel) when sysgen creates the
    /// user. Default: true, false for system users.
    #[serde(default)]
    pub create_home: Option<bool>,
    /// "locked", {"secret": NAME} or {"hash_file": PATH}, a crypt(3) hash
    /// either way. When absent, not managed (a user sysgen creates is
    /// locked).
    #[serde(default)]
    pub password: Option<RawPassword>,
}

/// Debian's default NAME_REGEX, with the 32-byte limit of utmp.
pub(crate) fn valid_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
}

/// The largest id; `(uid_t)-1` means "unchanged" to the tools.
const MAX_ID: u32 = u32::MAX - 1;

/// Checks one file's `groups` and `users` into `d`.
pub(super) fn check(
    shown: &Path,
    origin: &Path,
    groups: &BTreeMap<String, RawGroup>,
    users: &BTreeMap<String, RawUser>,
    d: &mut Decls,
) -> Result<(), LoadError> {
    let invalid = |msg: String| LoadError::new(shown, Kind::Invalid, msg);
    let name = |label: &str, n: &str| -> Result<String, LoadError> {
        if valid_name(n) {
            Ok(n.to_owned())
        } else {
            Err(invalid(format!(
                "{label}: invalid name {:?}; a user or group name has 1 to 32 lowercase letters, digits, _ and -, and starts with a letter or _",
                n.escape_debug().to_string()
            )))
        }
    };
    let id = |label: &str, v: Option<u32>| -> Result<Option<u32>, LoadError> {
        match v {
            Some(n) if n > MAX_ID => Err(invalid(format!(
                "{label}: {n} is not an id; give at most {MAX_ID}"
            ))),
            v => Ok(v),
        }
    };
    for (k, g) in groups {
        let n = name(&format!("groups.{k}"), k)?;
        let spec = GroupSpec {
            gid: id(&format!("groups.{k}.gid"), g.gid)?,
            system: g.system,
            declared_in: origin.to_path_buf(),
        };
        d.groups.insert(n, spec);
    }
    let base = shown.parent().unwrap_or(Path::new(""));
    for (k, u) in users {
        let label = format!("users.{k}");
        let n = name(&label, k)?;
        let group = match &u.group {
            Some(g) => Some(name(&format!("{label}.group"), g)?),
            None => None,
        };
        let groups = match &u.groups {
            Some(list) => {
                let mut out = Vec::new();
                for g in list {
                    out.push(name(&format!("{label}.groups"), g)?);
                }
                out.sort();
                out.dedup();
                Some(out)
            }
            None => None,
        };
        let home = match &u.home {
            Some(h) => Some(EntryPath::parse(h).map_err(|e| {
                invalid(format!(
                    "{label}.home: {e}; write an absolute, normalized path"
                ))
            })?),
            None => None,
        };
        if let Some(s) = &u.shell
            && (!s.starts_with('/') || s.contains([':', '\n', '\0']))
        {
            return Err(invalid(format!(
                "{label}.shell: {:?} is not an absolute path; write one such as /bin/bash",
                s.escape_debug().to_string()
            )));
        }
        if let Some(c) = &u.comment
            && c.contains([':', '\n', '\0'])
        {
            return Err(invalid(format!(
                "{label}.comment: a comment may not hold ':' or a newline; remove them"
            )));
        }
        let password = match &u.password {
            None => None,
            Some(RawPassword::Word(w)) if w == "locked" => Some(PasswordSpec::Locked),
            // Not echoed: it may be a password written in the clear.
            Some(RawPassword::Word(_)) => {
                return Err(invalid(format!(
                    "{label}.password: a password is never written in the configuration; write \"locked\", or {{\"hash_file\": PATH}} naming a 0600 file that holds a crypt(3) hash"
                )));
            }
            Some(RawPassword::Secret { secret }) if secret.is_empty() => {
                return Err(invalid(format!(
                    "{label}.password.secret: the name is empty; name a secret declared under secrets"
                )));
            }
            Some(RawPassword::Secret { secret }) => Some(PasswordSpec::Secret(secret.clone())),
            Some(RawPassword::HashFile { hash_file }) => Some(PasswordSpec::HashFile(
                hash_file_path(&format!("{label}.password.hash_file"), base, hash_file)
                    .map_err(invalid)?,
            )),
        };
        let spec = UserSpec {
            uid: id(&format!("{label}.uid"), u.uid)?,
            group,
            groups,
            home,
            shell: u.shell.clone(),
            comment: u.comment.clone(),
            system: u.system,
            create_home: u.create_home,
            password,
            declared_in: origin.to_path_buf(),
        };
        d.users.insert(n, spec);
    }
    Ok(())
}

/// The hash file, canonical: a regular file no one but its owner may read
/// or write (0600 or stricter), so the hash never sat where others read it.
fn hash_file_path(label: &str, base: &Path, s: &str) -> Result<std::path::PathBuf, String> {
    let joined = base.join(s);
    let meta = fs::metadata(&joined).map_err(|e| {
        format!(
            "{label}: {s} ({}): {e}; create it (mode 0600) or fix the path",
            joined.display()
        )
    })?;
    if !meta.is_file() {
        return Err(format!("{label}: {s} is not a regular file; name a file"));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "{label}: {s} has mode {:04o}, readable by others; chmod 0600 it",
            meta.mode() & 0o7777
        ));
    }
    fs::canonicalize(&joined).map_err(|e| format!("{label}: {s}: {e}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn names() {
        for n in ["alice", "_apt", "www-data", "a1", "systemd-network"] {
            assert!(super::valid_name(n), "{n}");
        }
        for n in ["", "Alice", "1a", "a:b", "a b", "-a", &"a".repeat(33)] {
            assert!(!super::valid_name(n), "{n}");
        }
    }
}
