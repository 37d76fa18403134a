//! Bulk writes with one durability barrier for the whole batch.

use std::collections::HashMap;
use std::fs::Metadata;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use hashbrown::HashTable;

use crate::fault;
use crate::pack::PackWriter;
use crate::sweep::Fanouts;
use crate::{
    Area, Format, Hash, Prepared, SMALL_FILE_LIMIT, Staged, Store, StoreError, prepare_file,
    unchanged,
};

/// Bulk writes with batched durability.
///
/// `put_*` append small objects (up to [`SMALL_FILE_LIMIT`]) to one pack
/// per area and write each larger one to a temp file of its own, without
/// syncing. [`Batch::commit`] makes them durable with one `syncfs`, renames
/// every temp file and pack (index last) into its final place, then calls
/// `syncfs` again: the same "temp, fsync, rename, fsync dir" as a single
/// put, batched, because fsyncing each of 100k objects is far too slow.
///
/// Objects become visible (to [`Store::contains`], [`Store::read`]) only at
/// commit. Dropping a batch without committing removes its temp files.
///
/// `put_*` take `&self` so rayon workers can share one batch. Content already
/// in the store, or already put in this batch, is not written again.
pub struct Batch<'a> {
    store: &'a Store,
    state: Mutex<State>,
    /// Per area, the fan-out directories there were when the batch first
    /// looked for an object of its own (see [`Batch::known`]).
    fanouts: [OnceLock<Fanouts>; 2],
}

#[derive(Default)]
struct State {
    /// Objects in temp files of their own (large ones, or every object of
    /// a plain store): a few, against the packed ones.
    pending: HashMap<(Hash, Area), Pending>,
    /// The pack of each area's small objects, created with the first one.
    packs: [Option<Packed>; 2],
}

struct Pending {
    // Dropping it removes the temp file: that is how an uncommitted or failed
    // batch cleans up after itself.
    temp: crate::TempFile,
    raw_len: u64,
    stored_len: u64,
}

/// One area's small objects: appended to its pack, and found again (each
/// is put once) through a table of their places among the pack's index
/// entries, which already hold their hashes. A first build puts an object
/// per file: a map from hash to a pending record took about 80 bytes an
/// object in a table at most 7/8 full, a place 4 (docs/decisions.md,
/// "Issue 14, session 11").
struct Packed {
    writer: PackWriter,
    /// Places in `writer`'s entries, hashed by [`table_hash`].
    seen: HashTable<u32>,
    raw_len: u64,
    stored_len: u64,
}

/// A content hash's first 8 bytes: BLAKE3 is uniform, so they hash it.
fn table_hash(hash: &Hash) -> u64 {
    let mut lead = [0u8; 8];
    lead.copy_from_slice(&hash.as_bytes()[..8]);
    u64::from_le_bytes(lead)
}

impl Packed {
    fn create(store: &Store) -> Result<Packed, StoreError> {
        Ok(Packed {
            writer: PackWriter::create(store)?,
            seen: HashTable::new(),
            raw_len: 0,
            stored_len: 0,
        })
    }

    fn contains(&self, hash: &Hash) -> bool {
        self.seen
            .find(table_hash(hash), |&i| self.writer.hash_at(i) == Some(hash))
            .is_some()
    }

    /// Appends the frame of an object not in the pack yet.
    fn append(&mut self, hash: Hash, raw_len: u64, frame: &[u8]) -> Result<(), StoreError> {
        let place = u32::try_from(self.writer.count()).map_err(|_| StoreError::Io {
            path: self.writer.path().into(),
            source: std::io::Error::other("more than 2^32 objects in one pack"),
        })?;
        self.writer.append(hash, frame)?;
        let writer = &self.writer;
        self.seen.insert_unique(table_hash(&hash), place, |&i| {
            writer.hash_at(i).map_or(0, table_hash)
        });
        self.raw_len += raw_len;
        self.stored_len += frame.len() as u64;
        Ok(())
    }
}

/// What a committed batch wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Objects newly written (content already present is not counted).
    pub objects_written: u64,
    /// Raw (uncompressed) bytes of the objects newly written.
    pub bytes_in: u64,
    /// Compressed bytes the newly written objects take on disk.
    pub bytes_stored: u64,
}

impl State {
    /// True if this batch already holds `hash` in `area`.
    fn has(&self, hash: &Hash, area: Area) -> bool {
        self.pending.contains_key(&(*hash, area))
            || self.packs[area.slot()]
                .as_ref()
                .is_some_and(|p| p.contains(hash))
    }
}

impl<'a> Batch<'a> {
    pub(crate) fn new(store: &'a Store) -> Batch<'a> {
        Batch {
            store,
            state: Mutex::new(State::default()),
            fanouts: [OnceLock::new(), OnceLock::new()],
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic in another worker cannot leave the map half-updated (each
        // update is one insert), so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// True if `hash` needs no write: already stored or already in this batch.
    ///
    /// An object of its own lies in a fan-out directory: where that
    /// directory was absent when the batch first looked, it is not looked
    /// up, so a build into an empty store makes no failing lookup per
    /// object. A directory made since (by another writer: sysgen's lock
    /// keeps them out of a build) can only make the batch store again
    /// content it already holds: the same bytes renamed over the same name,
    /// or a packed copy of an object also loose, which a crash can leave
    /// too and every reader and gc take (docs/decisions.md, "Issue 14,
    /// session 12").
    fn known(&self, hash: &Hash, area: Area) -> Result<bool, StoreError> {
        if self.state().has(hash, area) || self.store.contains_packed(hash, area)? {
            return Ok(true);
        }
        Ok(self.fanouts(area)?.has(hash) && self.store.contains_loose(hash, area))
    }

    /// The fan-out directories of `area` when first asked.
    fn fanouts(&self, area: Area) -> Result<&Fanouts, StoreError> {
        let cell = &self.fanouts[area.slot()];
        if let Some(f) = cell.get() {
            return Ok(f);
        }
        // Two workers may both list it; either listing will do.
        let found = self.store.fanouts(area)?;
        Ok(cell.get_or_init(|| found))
    }

    /// Records a staged object; if another worker staged the same content
    /// meanwhile, this copy is dropped (and its temp file removed).
    fn record(&self, hash: Hash, area: Area, raw_len: u64, staged: Staged) {
        self.state().pending.entry((hash, area)).or_insert(Pending {
            temp: staged.temp,
            raw_len,
            stored_len: staged.stored_len,
        });
    }

    pub fn put_bytes(&self, bytes: &[u8], area: Area) -> Result<Hash, StoreError> {
        let hash = Hash::of(bytes);
        if self.known(&hash, area)? {
            return Ok(hash);
        }
        // A plain store has no packs: each object is a file to clone.
        if bytes.len() as u64 > SMALL_FILE_LIMIT || self.store.format() == Format::Plain {
            let staged = self.store.stage_bytes(&hash, bytes, area, false)?;
            self.record(hash, area, bytes.len() as u64, staged);
            return Ok(hash);
        }
        // Compressed outside the lock, so workers compress in parallel and
        // only take turns to append.
        let frame = crate::encode(bytes).map_err(StoreError::io(self.store.dir()))?;
        let mut state = self.state();
        if state.has(&hash, area) {
            return Ok(hash);
        }
        let packed = match &mut state.packs[area.slot()] {
            Some(p) => p,
            slot => slot.insert(Packed::create(self.store)?),
        };
        packed.append(hash, bytes.len() as u64, &frame)?;
        Ok(hash)
    }

    /// Stores the content of the regular file at `path`. A small file (up to
    /// [`crate::SMALL_FILE_LIMIT`]) is read once: hashed, checked for presence
    /// and compressed from memory. A larger one is streamed once, hashed as
    /// it is compressed into a temp file, so memory does not grow with file
    /// size; if its content turns out to be stored already, the temp file
    /// is dropped (docs/decisions.md, "Issue 14, session 12").
    pub fn put_file(&self, path: &Path, area: Area) -> Result<(Hash, u64), StoreError> {
        let (hash, size, _) = self.put_prepared(path, area, prepare_file(path, None)?)?;
        Ok((hash, size))
    }

    /// [`Batch::put_file`] of a file whose size the caller's stat gave as
    /// `expected` (it is not asked again: the file is read to its end
    /// whatever it holds), with the metadata of the file it read, taken
    /// through its handle once read: a caller that compares it with the
    /// stat taken before knows whether the file changed while it was read,
    /// without looking its path up again.
    pub fn put_file_stat(
        &self,
        path: &Path,
        area: Area,
        expected: u64,
    ) -> Result<(Hash, u64, Metadata), StoreError> {
        self.put_prepared(path, area, prepare_file(path, Some(expected))?)
    }

    fn put_prepared(
        &self,
        path: &Path,
        area: Area,
        prepared: Prepared,
    ) -> Result<(Hash, u64, Metadata), StoreError> {
        match prepared {
            Prepared::Small(bytes, file) => {
                let after = file.metadata().map_err(StoreError::io(path))?;
                drop(file);
                let hash = self.put_bytes(&bytes, area)?;
                Ok((hash, bytes.len() as u64, after))
            }
            Prepared::Large { file, before } => {
                let size = before.len();
                let (hash, staged) = self.store.stage_stream(&file, size, path, area, false)?;
                let after = file.metadata().map_err(StoreError::io(path))?;
                // As when it was read twice and the two reads disagreed:
                // content that changed while read is refused, not stored
                // torn (a small file is stored as its one read found it).
                if !unchanged(&before, &after) {
                    return Err(StoreError::Changed { path: path.into() });
                }
                if !self.known(&hash, area)? {
                    self.record(hash, area, size, staged);
                }
                Ok((hash, size, after))
            }
        }
    }

    /// Makes every object of the batch durable and visible.
    ///
    /// If it fails midway, objects already renamed stay (they are complete
    /// and synced) and the remaining temp files are removed.
    pub fn commit(self) -> Result<BatchOutcome, StoreError> {
        let mut state = self
            .state
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        let mut outcome = BatchOutcome::default();
        if state.pending.is_empty() && state.packs.iter().all(Option::is_none) {
            return Ok(outcome);
        }
        let mut packs = Vec::new();
        for area in [Area::Public, Area::Secret] {
            if let Some(p) = state.packs[area.slot()].take() {
                // The table goes before the index is written.
                let Packed {
                    writer,
                    seen,
                    raw_len,
                    stored_len,
                } = p;
                drop(seen);
                outcome.objects_written += writer.count() as u64;
                outcome.bytes_in += raw_len;
                outcome.bytes_stored += stored_len;
                let finished = writer.finish(self.store, area, false, fault::BATCH_AFTER_PACK)?;
                packs.push((area, finished));
            }
        }
        self.store.fault.hit(fault::BATCH_AFTER_INDEX);
        // First barrier: every temp file's content is on disk before any of
        // them gets its final name, so no name ever points at unwritten data.
        self.store.syncfs()?;
        self.store.fault.hit(fault::BATCH_BETWEEN_BARRIERS);
        let mut keys: Vec<(Hash, Area)> = state.pending.keys().copied().collect();
        // Fan-out order: each fan-out directory is looked up in a run.
        keys.sort_unstable_by_key(|(hash, area)| (*hash, *area == Area::Secret));
        for key in keys {
            let Some(p) = state.pending.remove(&key) else {
                continue;
            };
            self.store.install(p.temp, &key.0, key.1, false)?;
            outcome.objects_written += 1;
            outcome.bytes_in += p.raw_len;
            outcome.bytes_stored += p.stored_len;
        }
        for (area, pack) in packs {
            let installed = pack.install(
                self.store,
                &self.store.pack_dir(area),
                area,
                fault::BATCH_PACK_RENAMED,
            );
            // Even a failed install may have put the pack in place.
            self.store.forget_packs(area);
            installed?;
        }
        self.store.fault.hit(fault::BATCH_AFTER_RENAMES);
        // Second barrier: the renames (and new fan-out and pack directories)
        // are durable.
        self.store.syncfs()?;
        Ok(outcome)
    }
}
