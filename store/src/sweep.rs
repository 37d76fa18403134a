//! Listing an area's objects, and gc's sweep of them against its marks.

use std::fs;
use std::io;

use crate::{Area, Hash, Store, StoreError};

/// Which of an area's 256 fan-out directories exist: a bit each, by the
/// hash's first byte.
pub(crate) struct Fanouts([u64; 4]);

impl Fanouts {
    /// True if the fan-out directory of `hash` was there.
    pub(crate) fn has(&self, hash: &Hash) -> bool {
        let b = usize::from(hash.as_bytes()[0]);
        self.0[b / 64] & (1 << (b % 64)) != 0
    }
}

impl Store {
    /// The fan-out directories of `area`, by one listing of it. Every name
    /// of two lowercase hex digits counts, whatever it is: a name that is
    /// not a directory of ours is refused when an object is looked up or
    /// stored there, as before.
    pub(crate) fn fanouts(&self, area: Area) -> Result<Fanouts, StoreError> {
        let area_dir = self.area_dir(area);
        let mut bits = [0u64; 4];
        for entry in fs::read_dir(area_dir).map_err(StoreError::io(area_dir))? {
            let name = entry.map_err(StoreError::io(area_dir))?.file_name();
            if let [hi, lo] = name.as_encoded_bytes()
                && let (Some(hi), Some(lo)) = (hex_digit(*hi), hex_digit(*lo))
            {
                let b = usize::from(hi * 16 + lo);
                bits[b / 64] |= 1 << (b % 64);
            }
        }
        Ok(Fanouts(bits))
    }

    /// The objects of `area` that are files of their own (not packed),
    /// sorted.
    pub(crate) fn list_loose(&self, area: Area) -> Result<Vec<Hash>, StoreError> {
        let area_dir = self.area_dir(area);
        let mut out = Vec::new();
        let fans = match fs::read_dir(area_dir) {
            Ok(rd) => Some(rd),
            // A store opened for reading whose area is gone holds nothing there.
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(StoreError::io(area_dir)(e)),
        };
        for fan in fans.into_iter().flatten() {
            let fan = fan.map_err(StoreError::io(area_dir))?;
            let Some(prefix) = fan.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if prefix.len() != 2 || !fan.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let fan_path = fan.path();
            for entry in fs::read_dir(&fan_path).map_err(StoreError::io(&fan_path))? {
                let entry = entry.map_err(StoreError::io(&fan_path))?;
                let Some(rest) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                let text = format!("{prefix}{rest}");
                // Only canonical (lowercase) names: anything else would not be
                // found again by object_path.
                if let Ok(hash) = Hash::from_hex(&text)
                    && hash.to_hex() == text
                {
                    out.push(hash);
                }
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// gc's sweep: every object of `area` that `live` (sorted, without
    /// repeats) does not name, with the bytes it takes on disk. The packed
    /// objects are walked in the index's order beside `live`, never listed
    /// whole: at a million objects a list took 32 MiB, and a lookup per
    /// object for its size as long again as the walk. `seen` gets how many
    /// packed objects were looked at, as it goes.
    pub fn sweep(
        &self,
        area: Area,
        live: &[Hash],
        seen: &mut dyn FnMut(u64),
    ) -> Result<Vec<(Hash, u64)>, StoreError> {
        debug_assert!(live.is_sorted());
        let loose = self.list_loose(area)?;
        let mut out = Vec::new();
        self.with_packs(area, |set| {
            let mut live = live.iter().peekable();
            let mut n = 0u64;
            for (hash, len) in set.index.iter() {
                while live.next_if(|l| *l < hash).is_some() {}
                if live.peek() != Some(&hash) {
                    out.push((*hash, u64::from(len)));
                }
                n += 1;
                // In blocks: a call per object would cost more than the walk.
                if n.is_multiple_of(4096) {
                    seen(4096);
                }
            }
            seen(n % 4096);
        })?;
        for hash in loose {
            // One both packed and loose (a crash) was counted with its pack.
            let packed = self.with_packs(area, |set| set.index.contains(&hash))?;
            if !packed && live.binary_search(&hash).is_err() {
                out.push((hash, self.disk_size(&hash, area)?));
            }
        }
        Ok(out)
    }

    /// How many packed objects `area` holds: what [`Store::sweep`] counts
    /// (the files of their own are few, and found only by listing them).
    pub fn packed_count(&self, area: Area) -> Result<u64, StoreError> {
        self.with_packs(area, |set| set.index.len() as u64)
    }
}

/// The value of a lowercase hex digit (the names `Hash::to_hex` makes).
fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}
