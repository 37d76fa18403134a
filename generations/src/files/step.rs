//! The tree's steps: what each does to one path, and how it reads in a plan.

use std::fmt;

use serde::{Deserialize, Serialize};
use sysgen_schema::EntryPath;
use sysgen_store::Hash;

use crate::rootfs::Xattrs;

/// Why a step is there, for people reading the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Why {
    /// The path is new in the target generation.
    Add,
    /// The path is in both generations, with different content or attributes.
    Change,
    /// The path leaves the configuration.
    Remove,
    /// The path leaves the configuration; what was there before sysgen comes back.
    Restore,
    /// Something unmanaged of another type is in the way; it was saved first.
    Replace,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum FileStep {
    /// Remove a file or symlink, or a directory if it is empty.
    Remove {
        path: EntryPath,
        why: Why,
        kind: String,
    },
    /// Write a file from the store (atomically: temp, then rename).
    PutFile {
        path: EntryPath,
        why: Why,
        hash: Hash,
        size: u64,
        mode: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uid: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gid: Option<u32>,
        /// The content is in the secret area and is never shown.
        secret: bool,
        #[serde(default, skip_serializing_if = "Xattrs::is_empty")]
        xattrs: Xattrs,
    },
    PutSymlink {
        path: EntryPath,
        why: Why,
        target: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uid: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gid: Option<u32>,
    },
    /// Create a directory if it is absent; `mode: None` leaves an existing
    /// directory's attributes alone.
    MakeDir {
        path: EntryPath,
        why: Why,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uid: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gid: Option<u32>,
        #[serde(default, skip_serializing_if = "Xattrs::is_empty")]
        xattrs: Xattrs,
    },
    /// Mode and owner in place; then the extended attributes again (a chown
    /// clears a file capability), less those in `drop`.
    SetMeta {
        path: EntryPath,
        why: Why,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uid: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gid: Option<u32>,
        #[serde(default, skip_serializing_if = "Xattrs::is_empty")]
        xattrs: Xattrs,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        drop: Vec<String>,
    },
    /// Make `path` another name of the file at `to` (a hard link of a tree),
    /// which an earlier step of the plan wrote.
    Link {
        path: EntryPath,
        why: Why,
        to: EntryPath,
    },
}

impl FileStep {
    pub fn path(&self) -> &EntryPath {
        match self {
            FileStep::Remove { path, .. }
            | FileStep::PutFile { path, .. }
            | FileStep::PutSymlink { path, .. }
            | FileStep::MakeDir { path, .. }
            | FileStep::SetMeta { path, .. }
            | FileStep::Link { path, .. } => path,
        }
    }
}

fn meta_text(mode: Option<u32>, uid: Option<u32>, gid: Option<u32>, x: &Xattrs) -> String {
    let mut parts = Vec::new();
    if let Some(m) = mode {
        parts.push(format!("mode {m:04o}"));
    }
    if let Some(u) = uid {
        parts.push(format!("owner {u}"));
    }
    if let Some(g) = gid {
        parts.push(format!("group {g}"));
    }
    parts.extend(super::caps::describe(x));
    parts.join(", ")
}

impl fmt::Display for FileStep {
    /// One line per step. A secret file shows neither content nor hash.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileStep::Remove { path, why, kind } => match why {
                Why::Replace => write!(
                    f,
                    "remove {kind} {path} (saved in the store; it is in the way)"
                ),
                _ if kind == "directory" => write!(f, "remove directory {path} if empty"),
                _ => write!(f, "remove {kind} {path}"),
            },
            FileStep::PutFile {
                path,
                why,
                size,
                mode,
                uid,
                gid,
                secret,
                hash,
                xattrs,
            } => {
                let verb = match why {
                    Why::Add => "create",
                    Why::Change | Why::Remove | Why::Replace => "replace",
                    Why::Restore => "restore",
                };
                let content = if *why == Why::Restore {
                    "the copy saved when sysgen took the path over".to_owned()
                } else if *secret {
                    "secret".to_owned()
                } else {
                    format!("{size} bytes, {}", &hash.to_hex()[..12])
                };
                write!(
                    f,
                    "{verb} file {path} ({content}, {})",
                    meta_text(Some(*mode), *uid, *gid, xattrs)
                )?;
                if *why == Why::Replace {
                    write!(f, "; what was there is saved in the store")?;
                }
                Ok(())
            }
            FileStep::PutSymlink {
                path, why, target, ..
            } => {
                let verb = if *why == Why::Restore {
                    "restore"
                } else {
                    "link"
                };
                write!(f, "{verb} symlink {path} -> {target}")?;
                if *why == Why::Replace {
                    write!(f, "; what was there is saved in the store")?;
                }
                Ok(())
            }
            FileStep::MakeDir {
                path,
                mode,
                uid,
                gid,
                xattrs,
                ..
            } => {
                if mode.is_none() && uid.is_none() && gid.is_none() {
                    write!(f, "ensure directory {path}")
                } else {
                    write!(
                        f,
                        "create directory {path} ({})",
                        meta_text(*mode, *uid, *gid, xattrs)
                    )
                }
            }
            FileStep::SetMeta {
                path,
                why,
                mode,
                uid,
                gid,
                xattrs,
                drop,
            } => {
                let verb = if *why == Why::Restore {
                    "restore"
                } else {
                    "set"
                };
                write!(
                    f,
                    "{verb} {} of {path}",
                    meta_text(*mode, *uid, *gid, xattrs)
                )?;
                if !drop.is_empty() {
                    write!(f, "; remove {}", drop.join(", "))?;
                }
                Ok(())
            }
            FileStep::Link { path, why, to } => {
                write!(f, "hard-link file {path} to {to}")?;
                if *why == Why::Replace {
                    write!(f, "; what was there is saved in the store")?;
                }
                Ok(())
            }
        }
    }
}
