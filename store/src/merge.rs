//! gc's merge of small packs, oldest first.
//!
//! Every build adds a pack (a generation's new objects), and every gc that
//! copies live neighbours out of freed blocks adds one more (see the
//! `repack` module). Each is opened and its index read by every command
//! that reads the store, so their number must not grow with the number of
//! builds. When an area has more than [`MAX_SMALL`] packs under
//! [`SMALL`] bytes, gc copies the live frames of the oldest of them into
//! one pack (packs of neighbouring age, whose objects are the survivors of
//! neighbouring builds and tend to die together), until [`MAX_SMALL`] / 2
//! small ones are left. The young ones stay as they are: they hold the
//! objects most likely to die soon, with their generation.
//!
//! Crash order: the merged pack is written and installed durably first
//! (its objects are then in two packs, which loading allows); then each old
//! pack goes, its index before its pack.

use std::path::Path;
use std::time::SystemTime;

use crate::fault;
use crate::pack::{self, Pack, PackWriter};
use crate::{Area, HashKeySet, Store, StoreError};

/// A pack under this many bytes counts as small.
pub(crate) const SMALL: u64 = 4 << 20;

/// More small packs than this in one area start a merge.
pub(crate) const MAX_SMALL: usize = 16;

/// Whether [`merge_small`] may find too many small packs in `dir`, from
/// the pack files' names and sizes alone: most gcs merge nothing, and
/// loading the packs again for it read and sorted every index a second
/// time. It counts every pack file, so it never says no where the loaded
/// set (the packs with a readable index) has too many.
pub(crate) fn may_merge(dir: &Path) -> Result<bool, StoreError> {
    let Some(rd) = pack::read_dir_if_present(dir)? else {
        return Ok(false);
    };
    let mut small = 0usize;
    for entry in rd {
        let entry = entry.map_err(StoreError::io(dir))?;
        if entry
            .file_name()
            .to_str()
            .and_then(|n| pack::stem(n, "pack"))
            .is_none()
        {
            continue;
        }
        // Not followed: a symlink's own size is small, so it counts.
        let len = match entry.metadata() {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(StoreError::io(&entry.path())(e)),
        };
        if len < SMALL {
            small += 1;
        }
    }
    Ok(small > MAX_SMALL)
}

/// Merges the oldest small packs of `packs` (an area's, in `dir`) if there
/// are too many. Returns whether it changed anything.
pub(crate) fn merge_small(
    store: &Store,
    dir: &Path,
    area: Area,
    packs: &[Pack],
) -> Result<bool, StoreError> {
    let mut small: Vec<(SystemTime, &Pack)> = Vec::new();
    for p in packs.iter().filter(|p| p.len < SMALL) {
        let meta = p.file.metadata().map_err(StoreError::io(&p.path))?;
        small.push((meta.modified().map_err(StoreError::io(&p.path))?, p));
    }
    if small.len() <= MAX_SMALL {
        return Ok(false);
    }
    // Oldest first; the name breaks ties so that the choice is stable.
    small.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.path.cmp(&b.1.path)));
    let old = &small[..small.len() - MAX_SMALL / 2];
    let mut w = PackWriter::create(store)?;
    let mut seen = HashKeySet::default();
    let mut frame = Vec::new();
    for (_, p) in old {
        let mut entries = pack::read_idx(&p.idx())?;
        // In file order, so each old pack is read front to back.
        entries.sort_unstable_by_key(|e| e.offset);
        for e in entries {
            // After a crash in a copy, an object may be in two of them.
            if seen.insert(e.hash) {
                pack::read_frame(p, e.offset, e.len, &mut frame)?;
                w.append(e.hash, &frame)?;
            }
        }
    }
    let merged = w
        .finish(store, area, true, fault::GC_MERGE_WRITTEN)?
        .install(store, dir, area, fault::GC_MERGE_PACK_RENAMED)?;
    crate::sync_dir(dir)?;
    store.fault.hit(fault::GC_MERGE_INSTALLED);
    // An old pack whose content the merge made again (its twin left by a
    // crash dropped as a second copy) is now the merged pack: it stays.
    for (_, p) in old.iter().filter(|(_, p)| p.path != merged) {
        // The index first: a pack without one is a leftover, never a hole.
        crate::remove_if_present(&p.idx())?;
        crate::remove_if_present(&p.path)?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::Hash;

    fn bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn packs(store: &Store) -> Vec<std::path::PathBuf> {
        let mut out: Vec<_> = fs::read_dir(store.dir().join("objects/pack"))
            .expect("pack dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "pack"))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn the_oldest_small_packs_are_merged_and_a_large_one_stays() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("store")).expect("store");
        // One large pack first (the oldest), then one small pack per build.
        let batch = store.batch();
        let large: Vec<Hash> = (0..5)
            .map(|i| {
                batch
                    .put_bytes(&bytes(i, 900_000), Area::Public)
                    .expect("put")
            })
            .collect();
        batch.commit().expect("commit");
        let large_pack = packs(&store);
        let mut small = Vec::new();
        for i in 0..(MAX_SMALL as u64 + 4) {
            let batch = store.batch();
            small.push(
                batch
                    .put_bytes(&bytes(100 + i, 3000), Area::Public)
                    .expect("put"),
            );
            batch.commit().expect("commit");
        }
        assert_eq!(packs(&store).len(), MAX_SMALL + 5);
        let pack_dir = store.dir().join("objects/pack");
        assert!(may_merge(&pack_dir).expect("list"));

        store.remove_all(&[]).expect("gc");
        let now = packs(&store);
        // The young half stays, the old ones are one pack, the large one stays.
        assert_eq!(now.len(), MAX_SMALL / 2 + 2, "{now:?}");
        assert!(now.contains(&large_pack[0]));
        for h in large.iter().chain(&small) {
            assert!(store.check(h, Area::Public).expect("check"), "{h:?}");
        }
        assert_eq!(
            fs::read_dir(store.dir().join("tmp")).expect("tmp").count(),
            0
        );
        // Under the limit now: the next gc merges nothing.
        assert!(!may_merge(&pack_dir).expect("list"));
        store.remove_all(&[]).expect("gc");
        assert_eq!(packs(&store), now);
    }

    #[test]
    fn a_second_copy_left_by_a_crash_goes_at_the_next_gc() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("store")).expect("store");
        let batch = store.batch();
        let hashes: Vec<Hash> = (0..3)
            .map(|i| {
                batch
                    .put_bytes(&bytes(200 + i, 5000), Area::Public)
                    .expect("put")
            })
            .collect();
        batch.commit().expect("commit");
        // As a copy cut short leaves it: the same objects in a second pack.
        let first = packs(&store).remove(0);
        let pack_dir = store.dir().join("objects/pack");
        for ext in ["pack", "idx"] {
            fs::copy(
                first.with_extension(ext),
                pack_dir.join(format!("{}.{ext}", "f".repeat(32))),
            )
            .expect("copy");
        }
        let store = Store::open(store.dir()).expect("reopen");
        assert_eq!(packs(&store).len(), 2);
        store.remove_all(&[]).expect("gc");
        assert_eq!(packs(&store), vec![first]);
        assert_eq!(store.list(Area::Public).expect("list").len(), 3);
        for h in &hashes {
            assert!(store.check(h, Area::Public).expect("check"));
        }
    }
}
