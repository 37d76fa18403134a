//! Runs one dataset step: the backend of its kind does the work, and the
//! records follow each change (see [`Recorder`]).

use sysgen_store::fault;

use super::records::Recorder;
use super::{DatasetStep, Tools, backend};
use crate::Error;
use crate::db::Db;
use crate::rootfs::RootDir;

/// Runs one dataset step; converges whatever it finds.
pub fn apply_step(
    root: &RootDir,
    db: &Db,
    tools: &Tools,
    step: &DatasetStep,
    now: i64,
    fault: sysgen_store::FaultPoint,
) -> Result<(), Error> {
    let (path, kind, of) = match step {
        DatasetStep::Release { .. } | DatasetStep::NoSnapshot { .. } => return Ok(()),
        DatasetStep::Attach { path, kind, .. } | DatasetStep::Detach { path, kind, .. } => {
            (path, kind, 0)
        }
        DatasetStep::Snapshot { path, kind, of, .. }
        | DatasetStep::Restore { path, kind, of, .. }
        | DatasetStep::Unrestore { path, kind, of, .. } => (path, kind, *of),
    };
    let b = backend::of(kind, tools);
    // Every step of a kind that has a tool needs it: say so before
    // anything, whatever the step finds.
    b.check_tool(path)
        .map_err(|m| Error::Dataset(crate::error::DatasetError(m)))?;
    let rec = Recorder {
        db,
        path,
        kind,
        of,
        now,
        fault,
    };
    match step {
        DatasetStep::Snapshot { snap, .. } => {
            b.snapshot(root, path, snap)?;
            rec.hit(fault::DATASET_SNAPSHOT_TAKEN);
            rec.snapshot_taken(snap, "switch")
        }
        DatasetStep::Attach { expect, .. } => {
            b.attach(root, path, expect.as_deref(), &token(path, now))?;
            rec.hit(fault::DATASET_ATTACH_ATTACHED);
            rec.attached()
        }
        DatasetStep::Restore { snap, pre, .. } => b.restore(root, &rec, path, snap, pre),
        DatasetStep::Unrestore { pre, aside, .. } => b.unrestore(root, &rec, path, pre, aside),
        DatasetStep::Detach {
            discard_if_empty, ..
        } => b.detach(root, &rec, path, *discard_if_empty, &token(path, now)),
        DatasetStep::Release { .. } | DatasetStep::NoSnapshot { .. } => Ok(()),
    }
}

/// The identity given to a dataset that has none of its own (a plain
/// directory): unique enough that a directory made elsewhere never has it.
fn token(path: &sysgen_schema::EntryPath, now: i64) -> String {
    let mut h = blake3::Hasher::new();
    h.update(path.as_str().as_bytes());
    h.update(&now.to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    h.finalize().to_hex()[..16].to_owned()
}
