//! Managed blocks in files sysgen does not own (`blocks.<path>.<name>`):
//! `/etc/hosts`, `/etc/fstab`, `/etc/sudoers.d/…` belong to the admin or a
//! package; sysgen owns only the lines between its markers
//! (`# BEGIN sysgen NAME` … `# END sysgen NAME`).
//!
//! - A generation records each file's blocks ([`Blocks`]), text and all.
//! - One step per file ([`BlockStep`]) rewrites it once (temp + rename,
//!   keeping its mode and owner): the blocks that change are written, those
//!   that leave are removed; every byte outside them stays ([`text::edit`]).
//!   A step that only removes runs before the tree's removals (so an empty
//!   parent sysgen made can go), one that writes after the tree's creations
//!   (so the parent exists).
//! - A block in a file that does not exist creates the file; sysgen records
//!   that it did ([`records`]) and removes the file once its last block
//!   leaves and it holds nothing else.
//! - A block changed or removed by hand is drift: a switch that would
//!   touch it refuses unless `--force` (which saves the file first);
//!   `verify` reports it.

mod kind;
mod records;
pub mod text;

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};
use sysgen_schema::EntryPath;

use crate::kind::{ApplyCx, KindStepOps, Needs};
use crate::rootfs::{Live, Owner, RootDir, RootError};
pub use crate::sections::{Block, Blocks};
use crate::{Error, io_err};
pub use kind::BlockKind;
pub(crate) use kind::plan;

/// The mode of a file a block creates, when no block of it gives one.
pub(crate) const CREATE_MODE: u32 = 0o644;
/// The largest file sysgen edits blocks in: these are configuration files.
const MAX_SIZE: u64 = 16 << 20;

/// The one step of a file with blocks: write `put`, remove `drop`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockStep {
    pub path: EntryPath,
    /// Blocks written (replaced where they are, added at the end otherwise).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub put: BTreeMap<String, Block>,
    /// Blocks removed: name → the comment leader of their markers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub drop: BTreeMap<String, String>,
}

impl fmt::Display for BlockStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "edit blocks of {}:", self.path)?;
        if !self.put.is_empty() {
            let names: Vec<&str> = self.put.keys().map(String::as_str).collect();
            write!(f, " write {}", names.join(", "))?;
        }
        if !self.drop.is_empty() {
            let names: Vec<&str> = self.drop.keys().map(String::as_str).collect();
            let sep = if self.put.is_empty() { "" } else { ";" };
            write!(f, "{sep} remove {}", names.join(", "))?;
        }
        Ok(())
    }
}

fn failed(p: &EntryPath, op: &'static str, why: String) -> Error {
    Error::Root(RootError {
        path: p.to_string(),
        op,
        source: io::Error::other(why),
    })
}

/// The text of the regular file at `p` (`None`: nothing there). Anything
/// else at `p`, a file too large or not UTF-8, is an error that says so.
pub(crate) fn read_text(root: &RootDir, p: &EntryPath) -> Result<Option<(String, Live)>, Error> {
    let live = root.inspect(p)?;
    match &live {
        Live::Absent => return Ok(None),
        Live::File(m) if m.size > MAX_SIZE => {
            return Err(failed(
                p,
                "read",
                format!(
                    "{} bytes: too large for sysgen's blocks (at most {MAX_SIZE})",
                    m.size
                ),
            ));
        }
        Live::File(_) => {}
        Live::Blocked { at, what } => {
            return Err(failed(
                p,
                "read",
                format!("{at} is a {what}, not a directory; sysgen never follows it"),
            ));
        }
        other => {
            return Err(failed(
                p,
                "read",
                format!(
                    "a {} is there; blocks go only in regular files",
                    other.kind()
                ),
            ));
        }
    }
    let mut bytes = Vec::new();
    root.open_file(p)?
        .read_to_end(&mut bytes)
        .map_err(io_err(root.display(p)))?;
    let text = String::from_utf8(bytes).map_err(|_| {
        failed(
            p,
            "read",
            "not UTF-8 text; sysgen edits blocks only in text files".into(),
        )
    })?;
    Ok(Some((text, live)))
}

/// The files whose blocks `old` → `new` writes or removes, each as a change
/// of a file of the tree (for what watches paths: a unit's `restart_on`,
/// its drop-ins). The entries stand for "a file that changed", nothing more.
pub(crate) fn as_changes(old: &Blocks, new: &Blocks) -> Vec<crate::manifest::Change> {
    let file = crate::manifest::Entry::File {
        hash: sysgen_store::Hash::of(b""),
        size: 0,
        mode: CREATE_MODE,
        uid: None,
        gid: None,
        secret: false,
        xattrs: Default::default(),
        link: None,
    };
    plan(old, new)
        .into_iter()
        .map(|s| crate::manifest::Change::changed(s.path, file.clone(), file.clone()))
        .collect()
}

impl KindStepOps for BlockStep {
    fn path(&self) -> Option<&EntryPath> {
        Some(&self.path)
    }

    fn needs(&self) -> Needs {
        let bytes: usize = self.put.values().map(|b| b.text.len() + 128).sum();
        Needs {
            bytes: bytes as u64,
            entries: 1,
        }
    }

    /// Converges: the blocks of `put` hold their text and those of `drop`
    /// are gone, whatever the file held (a re-run after a crash finds its
    /// own work done and writes nothing).
    fn apply(&self, cx: &mut ApplyCx<'_>) -> Result<(), Error> {
        let p = &self.path;
        let found = read_text(cx.root, p)?;
        let old = found.as_ref().map_or("", |(t, _)| t.as_str());
        let new = text::edit(old, &self.put, &self.drop).map_err(|why| {
            failed(
                p,
                "edit blocks",
                format!("{why}; then run `sysgen recover`"),
            )
        })?;
        let write = |mode: u32, owner: Owner| {
            cx.root
                .put_file(p, mode, owner, &mut |out: &mut dyn Write| {
                    out.write_all(new.as_bytes())
                })
        };
        match found {
            None if self.put.is_empty() => records::forget(cx.db, p)?,
            None => {
                // Recorded first: a crash right after the file appears
                // still leaves sysgen knowing it made it.
                records::created(cx.db, p)?;
                let mode = self.put.values().find_map(|b| b.mode);
                write(mode.unwrap_or(CREATE_MODE), Owner::default())?;
            }
            Some((_, Live::File(m))) => {
                if new.is_empty() && self.put.is_empty() && records::was_created(cx.db, p)? {
                    cx.root.remove(p)?;
                    records::forget(cx.db, p)?;
                } else if new != old {
                    write(
                        m.mode,
                        Owner {
                            uid: Some(m.uid),
                            gid: Some(m.gid),
                        },
                    )?;
                }
            }
            Some((_, other)) => {
                return Err(failed(
                    p,
                    "edit blocks",
                    format!("a {} is there", other.kind()),
                ));
            }
        }
        Ok(())
    }
}
