//! The journal: a switch's intent, written durably before its first change
//! and removed after the activation commits. While it exists, the switch is
//! under way or was interrupted; `recover` reads it to finish or undo the
//! switch, and every other mutating command refuses.
//!
//! It holds the whole plan (so `recover` needs nothing that could have
//! changed since) and the generation it started from.

use std::fs::File;
use std::io::{BufReader, BufWriter, ErrorKind};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::manifest::GenerationId;
use crate::plan::Plan;
use crate::{Error, State, io_err};

/// 2: steps carry their phase and their kind (the Kind trait's plans).
const VERSION: u32 = 2;

/// The version alone, read first: a journal of another format is named as
/// such rather than as garbage.
#[derive(Deserialize)]
struct Version {
    version: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Journal {
    pub version: u32,
    /// "switch" or "rollback": recorded in the activation history.
    pub how: String,
    /// The generation active when the switch began.
    pub from: Option<(u64, GenerationId)>,
    pub to_number: u64,
    pub to: GenerationId,
    pub started_at: i64,
    pub plan: Plan,
}

impl Journal {
    pub fn new(
        how: &str,
        from: Option<(u64, GenerationId)>,
        to_number: u64,
        to: GenerationId,
        started_at: i64,
        plan: Plan,
    ) -> Journal {
        Journal {
            version: VERSION,
            how: how.into(),
            from,
            to_number,
            to,
            started_at,
            plan,
        }
    }

    pub fn read(path: &Path) -> Result<Option<Journal>, Error> {
        // Read twice, streamed, never whole: a first switch's journal has a
        // step per file, and its text beside the plan it decodes to held
        // both. The first pass reads the version alone (the rest is
        // skipped), so a journal of another format is named as such.
        let open = || match File::open(path) {
            Ok(f) => Ok(Some(BufReader::with_capacity(1 << 16, f))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Io {
                path: path.to_owned(),
                source: e,
            }),
        };
        let unreadable = |e: serde_json::Error| Error::Io {
            path: path.to_owned(),
            source: std::io::Error::new(ErrorKind::InvalidData, format!("unreadable journal: {e}")),
        };
        let Some(r) = open()? else {
            return Ok(None);
        };
        let v: Version = serde_json::from_reader(r).map_err(unreadable)?;
        if v.version != VERSION {
            return Err(Error::Io {
                path: path.to_owned(),
                source: std::io::Error::new(
                    ErrorKind::InvalidData,
                    format!(
                        "journal version {} is not {VERSION}; use the sysgen that wrote it",
                        v.version
                    ),
                ),
            });
        }
        // Removed between the two reads: only by another process, which
        // the state's lock rules out; said as it is.
        let r = open()?.ok_or_else(|| Error::Io {
            path: path.to_owned(),
            source: std::io::Error::new(ErrorKind::NotFound, "the journal went while it was read"),
        })?;
        Ok(Some(serde_json::from_reader(r).map_err(unreadable)?))
    }

    /// Writes the journal atomically and durably: temp, fsync, rename, fsync dir.
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let tmp = path.with_extension("json.tmp");
        // Root only: the plan holds hashes of secret files.
        // A new file, never followed: a leftover temp (or a planted link)
        // was removed under the lock when the state was opened.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        // Streamed: a first switch's plan has a step per file, and its whole
        // text in memory would be the largest thing the switch holds.
        let mut w = BufWriter::with_capacity(1 << 16, f);
        serde_json::to_writer(&mut w, self).map_err(|e| Error::Io {
            path: tmp.clone(),
            source: e.into(),
        })?;
        let f = w.into_inner().map_err(|e| Error::Io {
            path: tmp.clone(),
            source: e.into_error(),
        })?;
        f.sync_all().map_err(io_err(&tmp))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(io_err(path))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))
    }

    /// Removes the journal durably: the switch is over.
    pub fn remove(path: &Path) -> Result<(), Error> {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::Io {
                    path: path.to_owned(),
                    source: e,
                });
            }
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))
    }
}

/// The journal as the state directory holds it. (Here, not in `state`:
/// the state sits below the plan and the journal that records it.)
impl State {
    /// The journal of a switch that was interrupted, if any.
    pub fn journal(&self) -> Result<Option<Journal>, Error> {
        let Some(mut j) = Journal::read(&self.journal_path())? else {
            return Ok(None);
        };
        // Written before migration 9 gave the generations new ids.
        j.to = self.db.renamed(&j.to)?;
        if let Some((_, from)) = &mut j.from {
            *from = self.db.renamed(from)?;
        }
        Ok(Some(j))
    }

    /// Fails when a switch was interrupted: every mutating command but
    /// `recover` must refuse until it is finished or undone.
    pub fn refuse_if_interrupted(&self) -> Result<(), Error> {
        match self.journal()? {
            Some(j) => Err(crate::error::StateError::Interrupted {
                to: j.to_number,
                from: j.from.map(|f| f.0),
            }
            .into()),
            None => Ok(()),
        }
    }
}
