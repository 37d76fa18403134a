//! How a manifest [`Entry`] is decoded (see [`FlatEntry`]).

use serde::Deserialize;
use sysgen_schema::EntryPath;
use sysgen_store::Hash;

use super::Entry;
use crate::rootfs::Xattrs;

/// How an [`Entry`] is read: every kind's fields in one flat struct. serde's
/// internally tagged enums buffer each entry before they look at its tag,
/// which made decoding nodes most of the cost of a diff.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FlatEntry {
    #[serde(rename = "type")]
    kind: FlatKind,
    hash: Option<Hash>,
    size: Option<u64>,
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    secret: Option<bool>,
    target: Option<String>,
    xattrs: Option<Xattrs>,
    link: Option<EntryPath>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum FlatKind {
    File,
    Dir,
    Symlink,
}

impl TryFrom<FlatEntry> for Entry {
    type Error = String;

    fn try_from(f: FlatEntry) -> Result<Entry, String> {
        let stray = |what: &str| {
            Err(format!(
                "unknown field `{what}` in a {} entry",
                f.kind_name()
            ))
        };
        match f.kind {
            FlatKind::File => match (f.hash, f.size, f.mode, &f.target) {
                (Some(hash), Some(size), Some(mode), None) => Ok(Entry::File {
                    hash,
                    size,
                    mode,
                    uid: f.uid,
                    gid: f.gid,
                    secret: f.secret.unwrap_or(false),
                    xattrs: f.xattrs.unwrap_or_default(),
                    link: f.link,
                }),
                (_, _, _, Some(_)) => stray("target"),
                _ => Err("a file entry needs `hash`, `size` and `mode`".into()),
            },
            FlatKind::Dir => match (f.hash, f.size, f.secret, &f.target) {
                _ if f.link.is_some() => stray("link"),
                (None, None, None, None) => Ok(Entry::Dir {
                    mode: f.mode,
                    uid: f.uid,
                    gid: f.gid,
                    xattrs: f.xattrs.unwrap_or_default(),
                }),
                (Some(_), ..) => stray("hash"),
                (_, Some(_), ..) => stray("size"),
                (_, _, Some(_), _) => stray("secret"),
                _ => stray("target"),
            },
            FlatKind::Symlink => match (f.hash, f.size, f.mode, f.secret) {
                _ if f.xattrs.is_some() || f.link.is_some() => {
                    Err("a symlink entry has only `target`, `uid` and `gid`".into())
                }
                (None, None, None, None) => Ok(Entry::Symlink {
                    target: f.target.ok_or("a symlink entry needs `target`")?,
                    uid: f.uid,
                    gid: f.gid,
                }),
                _ => Err("a symlink entry has only `target`, `uid` and `gid`".into()),
            },
        }
    }
}

impl FlatEntry {
    fn kind_name(&self) -> &'static str {
        match self.kind {
            FlatKind::File => "file",
            FlatKind::Dir => "dir",
            FlatKind::Symlink => "symlink",
        }
    }
}
