//! The root's account files, read through the root's handle: `/etc/passwd`,
//! `/etc/shadow`, `/etc/group` (and nothing else: `gshadow` follows
//! `group`, the tools keep the two in step). Only read; the shadow tools
//! write them.

use std::collections::BTreeMap;
use std::io::Read;

use serde::{Deserialize, Serialize};
use sysgen_schema::EntryPath;

use crate::rootfs::{Live, RootDir};
use crate::{Error, io_err};

/// A user as the root has it: every attribute sysgen may change, so that
/// a user that was there before sysgen can be put back as it was.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveUser {
    pub uid: u32,
    pub gid: u32,
    pub comment: String,
    pub home: String,
    pub shell: String,
    /// The shadow password field (`!`, `*`, or a hash); `None` without a
    /// shadow line.
    pub password: Option<String>,
    /// The shadow "last change" field, as written (days, or empty).
    pub lastchg: Option<String>,
    /// Groups listing the user as a member, sorted.
    pub groups: Vec<String>,
}

/// A group as the root has it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveGroup {
    pub gid: u32,
}

/// The parsed account files of a root.
#[derive(Default)]
pub struct Etc {
    passwd: BTreeMap<String, Vec<String>>,
    shadow: BTreeMap<String, Vec<String>>,
    group: BTreeMap<String, Vec<String>>,
}

fn read(root: &RootDir, path: &str) -> Result<String, Error> {
    let p = EntryPath::parse(path).map_err(|e| Error::Internal(format!("{path}: {e}")))?;
    let mut text = String::new();
    if let Live::File(_) = root.inspect(&p)? {
        root.open_file(&p)?
            .read_to_string(&mut text)
            .map_err(io_err(root.display(&p)))?;
    }
    Ok(text)
}

/// Each line's fields, by its first field (the name); comments and lines
/// without a name are not accounts (NIS `+` lines are kept as names: they
/// never match a valid declared name).
fn parse(text: &str) -> BTreeMap<String, Vec<String>> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<String> = l.split(':').map(str::to_owned).collect();
            (!f[0].is_empty()).then(|| (f[0].clone(), f))
        })
        .collect()
}

fn field(f: &[String], i: usize) -> &str {
    f.get(i).map_or("", String::as_str)
}

impl Etc {
    /// From the files' texts, for the planner's tests.
    #[cfg(test)]
    pub(crate) fn from_texts(passwd: &str, shadow: &str, group: &str) -> Etc {
        Etc {
            passwd: parse(passwd),
            shadow: parse(shadow),
            group: parse(group),
        }
    }

    pub fn read(root: &RootDir) -> Result<Etc, Error> {
        Ok(Etc {
            passwd: parse(&read(root, "/etc/passwd")?),
            shadow: parse(&read(root, "/etc/shadow")?),
            group: parse(&read(root, "/etc/group")?),
        })
    }

    pub fn user(&self, name: &str) -> Option<LiveUser> {
        let f = self.passwd.get(name)?;
        let s = self.shadow.get(name);
        let mut groups: Vec<String> = self
            .group
            .iter()
            .filter(|(_, g)| field(g, 3).split(',').any(|m| m == name))
            .map(|(n, _)| n.clone())
            .collect();
        groups.sort();
        Some(LiveUser {
            uid: field(f, 2).parse().ok()?,
            gid: field(f, 3).parse().ok()?,
            comment: field(f, 4).to_owned(),
            home: field(f, 5).to_owned(),
            shell: field(f, 6).to_owned(),
            password: s.map(|s| field(s, 1).to_owned()),
            lastchg: s.map(|s| field(s, 2).to_owned()),
            groups,
        })
    }

    pub fn group(&self, name: &str) -> Option<LiveGroup> {
        let f = self.group.get(name)?;
        Some(LiveGroup {
            gid: field(f, 2).parse().ok()?,
        })
    }

    /// The name of the group with `gid`, if any.
    pub fn group_name(&self, gid: u32) -> Option<&str> {
        self.group
            .iter()
            .find(|(_, f)| field(f, 2).parse() == Ok(gid))
            .map(|(n, _)| n.as_str())
    }

    /// The name of the user with `uid`, if any.
    pub fn user_name(&self, uid: u32) -> Option<&str> {
        self.passwd
            .iter()
            .find(|(_, f)| field(f, 2).parse() == Ok(uid))
            .map(|(n, _)| n.as_str())
    }

    /// Every uid and gid in use.
    pub fn uids(&self) -> impl Iterator<Item = u32> + '_ {
        self.passwd
            .values()
            .filter_map(|f| field(f, 2).parse().ok())
    }

    pub fn gids(&self) -> impl Iterator<Item = u32> + '_ {
        self.group.values().filter_map(|f| field(f, 2).parse().ok())
    }
}

/// `KEY VALUE` settings of the root's `/etc/login.defs` that sysgen reads
/// (the id ranges), with the shadow tools' defaults when absent.
pub struct LoginDefs(BTreeMap<String, String>);

impl LoginDefs {
    pub fn read(root: &RootDir) -> Result<LoginDefs, Error> {
        let text = read(root, "/etc/login.defs")?;
        Ok(LoginDefs(
            text.lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .filter_map(|l| {
                    let mut w = l.split_whitespace();
                    Some((w.next()?.to_owned(), w.next()?.to_owned()))
                })
                .collect(),
        ))
    }

    fn get(&self, key: &str, default: u32) -> u32 {
        self.0
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    /// The range ids of `kind` ("UID" or "GID") are allocated in.
    pub fn range(&self, kind: &str, system: bool) -> (u32, u32) {
        if system {
            (
                self.get(&format!("SYS_{kind}_MIN"), 100),
                self.get(&format!("SYS_{kind}_MAX"), 999),
            )
        } else {
            (
                self.get(&format!("{kind}_MIN"), 1000),
                self.get(&format!("{kind}_MAX"), 60000),
            )
        }
    }
}
