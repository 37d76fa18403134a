//! Named fault points: places in the store's multi-step writes, and in the
//! dataset steps of a switch (which reach them through the store they are
//! handed), where a crash test makes the process abort, as a power cut
//! would (rpm-ostree's failpoints are the model).
//!
//! They are compiled into release builds, so the crash tests exercise the
//! binary that ships. The store never reads the environment: the CLI reads
//! `SYSGEN_FAULT_POINT` and hands the name to [`crate::Store::set_fault_point`].

/// Build's batch commit: the pack is written in `tmp/`, its index not yet.
pub const BATCH_AFTER_PACK: &str = "store.batch.after-pack";
/// Build's batch commit: the pack and its index are written in `tmp/`.
pub const BATCH_AFTER_INDEX: &str = "store.batch.after-index";
/// Build's batch commit: after the first `syncfs`, before any rename.
pub const BATCH_BETWEEN_BARRIERS: &str = "store.batch.between-barriers";
/// Build's batch commit: a pack is in place, its index not yet.
pub const BATCH_PACK_RENAMED: &str = "store.batch.pack-renamed";
/// Build's batch commit: every rename done, before the second `syncfs`.
pub const BATCH_AFTER_RENAMES: &str = "store.batch.after-renames";
/// gc's index rewrite: the new index is written (temp, fsync), not renamed.
pub const GC_INDEX_WRITTEN: &str = "store.gc.index-written";
/// gc's index rewrite: the new index has replaced the old one.
pub const GC_INDEX_RENAMED: &str = "store.gc.index-renamed";
/// gc's hole punching: before the first hole.
pub const GC_BEFORE_PUNCH: &str = "store.gc.before-punch";
/// gc's hole punching: after the last hole.
pub const GC_AFTER_PUNCH: &str = "store.gc.after-punch";
/// gc's repack: the new pack is written in `tmp/`, its index not yet.
pub const GC_REPACK_WRITTEN: &str = "store.gc.repack.written";
/// gc's repack: the new pack is in place, its index not yet.
pub const GC_REPACK_PACK_RENAMED: &str = "store.gc.repack.pack-renamed";
/// gc's repack: the new pack is installed, the old one still there.
pub const GC_REPACK_INSTALLED: &str = "store.gc.repack.installed";
/// gc's repack: the old pack's index is removed, its pack not yet.
pub const GC_REPACK_OLD_INDEX_REMOVED: &str = "store.gc.repack.old-index-removed";
/// gc's removal of a pack with nothing live: its index is gone, not the pack.
pub const GC_DROP_INDEX_REMOVED: &str = "store.gc.drop.index-removed";
/// gc's copy of small live frames out of blocks it frees: the new pack is
/// written in `tmp/`, its index not yet.
pub const GC_RELOCATE_WRITTEN: &str = "store.gc.relocate.written";
/// gc's copy: the new pack is in place, its index not yet.
pub const GC_RELOCATE_PACK_RENAMED: &str = "store.gc.relocate.pack-renamed";
/// gc's copy: the new pack is installed; the old packs' indexes still name
/// the copied objects too.
pub const GC_RELOCATE_INSTALLED: &str = "store.gc.relocate.installed";
/// gc's merge of small packs: the merged pack is written in `tmp/`, its
/// index not yet.
pub const GC_MERGE_WRITTEN: &str = "store.gc.merge.written";
/// gc's merge: the merged pack is in place, its index not yet.
pub const GC_MERGE_PACK_RENAMED: &str = "store.gc.merge.pack-renamed";
/// gc's merge: the merged pack is installed, the old ones still there.
pub const GC_MERGE_INSTALLED: &str = "store.gc.merge.installed";

/// A dataset step: the snapshot is taken, not yet recorded.
pub const DATASET_SNAPSHOT_TAKEN: &str = "datasets.snapshot.taken";
/// A dataset step: the dataset is attached (created or moved back), not
/// yet recorded.
pub const DATASET_ATTACH_ATTACHED: &str = "datasets.attach.attached";
/// A dataset step: its retention area exists, the dataset not yet moved in.
pub const DATASET_DETACH_AREA_MADE: &str = "datasets.detach.area-made";
/// A `--with-data` restore: the snapshot's copy is staged, the dataset's
/// current contents not yet set aside.
pub const DATASET_RESTORE_STAGED: &str = "datasets.restore.staged";
/// A `--with-data` restore: the current contents are set aside as the
/// pre-rollback snapshot, the copy not yet in their place.
pub const DATASET_RESTORE_SET_ASIDE: &str = "datasets.restore.set-aside";
/// A switch creating a new file in place: half its content is written and
/// on disk, then the crash.
pub const FILES_PUT_PARTIAL: &str = "files.put.partial";

/// Every fault point, so that tests can crash at each one in turn.
pub const POINTS: &[&str] = &[
    BATCH_AFTER_PACK,
    BATCH_AFTER_INDEX,
    BATCH_BETWEEN_BARRIERS,
    BATCH_PACK_RENAMED,
    BATCH_AFTER_RENAMES,
    GC_INDEX_WRITTEN,
    GC_INDEX_RENAMED,
    GC_BEFORE_PUNCH,
    GC_AFTER_PUNCH,
    GC_REPACK_WRITTEN,
    GC_REPACK_PACK_RENAMED,
    GC_REPACK_INSTALLED,
    GC_REPACK_OLD_INDEX_REMOVED,
    GC_DROP_INDEX_REMOVED,
    DATASET_SNAPSHOT_TAKEN,
    DATASET_ATTACH_ATTACHED,
    DATASET_DETACH_AREA_MADE,
    DATASET_RESTORE_STAGED,
    DATASET_RESTORE_SET_ASIDE,
    GC_RELOCATE_WRITTEN,
    GC_RELOCATE_PACK_RENAMED,
    GC_RELOCATE_INSTALLED,
    GC_MERGE_WRITTEN,
    GC_MERGE_PACK_RENAMED,
    GC_MERGE_INSTALLED,
    FILES_PUT_PARTIAL,
];

/// The one point, if any, at which this process aborts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultPoint(Option<&'static str>);

impl FaultPoint {
    /// The point called `name`; `None` if no point has that name.
    pub fn named(name: &str) -> Option<FaultPoint> {
        POINTS
            .iter()
            .find(|p| **p == name)
            .map(|p| FaultPoint(Some(p)))
    }

    /// Whether `point` is the one set, for a point whose crash needs more
    /// than an abort (a half-written file).
    pub fn is(self, point: &'static str) -> bool {
        self.0 == Some(point)
    }

    /// Aborts the process if `point` is the one set: no destructor, no
    /// cleanup, as a crash.
    pub fn hit(self, point: &'static str) {
        if self.0 == Some(point) {
            std::process::abort();
        }
    }
}
