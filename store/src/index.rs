//! The in-memory index of an area's packs: every packed object, sorted by
//! hash, found through a fan-out table on the hash's leading bits (as
//! git's `.idx` does with its first byte).
//!
//! A `HashMap<Hash, Loc>` took about 100 bytes per object at a million
//! (49-byte buckets, a power of two of them at most 7/8 full): 95 MiB of
//! the 300 MiB a command may use at a million files. A sorted vector takes
//! 48 bytes per object and the fan-out table 2 to 4 more. Hashes are
//! uniform, so with about one bucket per object a lookup reads one or two
//! entries, as a hash table does.
//!
//! The index is built once when the packs are loaded and never changed:
//! whatever adds or removes packs (a batch, gc) drops it, and the next
//! reader loads it again (see `Store::with_packs`).

use crate::pack::Loc;
use crate::{Hash, StoreError};

/// One packed object: its hash and where it is. 48 bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slot {
    pub(crate) hash: Hash,
    pub(crate) offset: u64,
    pub(crate) pack: u32,
    pub(crate) len: u32,
}

impl Slot {
    fn loc(&self) -> Loc {
        Loc {
            pack: self.pack,
            offset: self.offset,
            len: self.len,
        }
    }
}

/// Every packed object of an area, by hash.
#[derive(Debug, Default)]
pub(crate) struct Index {
    /// Sorted by hash, no hash twice.
    slots: Vec<Slot>,
    /// `fan[b]..fan[b + 1]`: the slots whose hash's leading `bits` bits are `b`.
    fan: Vec<u32>,
    bits: u32,
}

/// The leading `bits` bits of `hash` (0 < bits < 64).
fn bucket(hash: &Hash, bits: u32) -> usize {
    let mut lead = [0u8; 8];
    lead.copy_from_slice(&hash.as_bytes()[..8]);
    (u64::from_be_bytes(lead) >> (64 - bits)) as usize
}

impl Index {
    /// The index of `slots`, which the caller appended pack by pack, each
    /// pack's in the order of the set. An object in several packs (a copy
    /// or a merge cut short) is found in the first of them; the others are
    /// returned, as (pack, hash), for gc to drop.
    pub(crate) fn build(mut slots: Vec<Slot>) -> Result<(Index, Vec<(u32, Hash)>), StoreError> {
        // In place (no second buffer of the size of the index): ties go to
        // the earlier pack, which is what is kept.
        if !slots.is_sorted_by_key(|s| s.hash) {
            slots.sort_unstable_by_key(|s| (s.hash, s.pack));
        }
        let mut shadowed = Vec::new();
        slots.dedup_by(|later, first| {
            let same = later.hash == first.hash;
            if same {
                shadowed.push((later.pack, later.hash));
            }
            same
        });
        slots.shrink_to_fit();
        let Ok(count) = u32::try_from(slots.len()) else {
            return Err(StoreError::TooManyPacked {
                count: slots.len() as u64,
            });
        };
        // About one bucket per object: floor(log2(count)), at least 8 bits.
        let bits = (u32::BITS - count.leading_zeros()).saturating_sub(1).max(8);
        let buckets = 1usize << bits;
        let mut fan = Vec::with_capacity(buckets + 1);
        let mut at = 0usize;
        for b in 0..buckets {
            while at < slots.len() && bucket(&slots[at].hash, bits) < b {
                at += 1;
            }
            // `at` <= count, which fits in a u32 (checked above).
            fan.push(at as u32);
        }
        fan.push(count);
        Ok((Index { slots, fan, bits }, shadowed))
    }

    /// Where `hash` is, if it is packed.
    pub(crate) fn get(&self, hash: &Hash) -> Option<Loc> {
        if self.slots.is_empty() {
            return None;
        }
        let b = bucket(hash, self.bits);
        let range = &self.slots[self.fan[b] as usize..self.fan[b + 1] as usize];
        // A bucket holds one or two slots on average: a scan, no search.
        range.iter().find(|s| s.hash == *hash).map(Slot::loc)
    }

    pub(crate) fn contains(&self, hash: &Hash) -> bool {
        self.get(hash).is_some()
    }

    /// Every packed hash, in order, with its frame's length.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Hash, u32)> {
        self.slots.iter().map(|s| (&s.hash, s.len))
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(n: u64, pack: u32) -> Slot {
        Slot {
            hash: Hash::of(&n.to_le_bytes()),
            offset: n * 10,
            pack,
            len: 7,
        }
    }

    #[test]
    fn every_object_is_found_and_no_other() {
        for count in [0u64, 1, 2, 255, 256, 257, 5000] {
            let slots: Vec<Slot> = (0..count).map(|n| slot(n, 0)).collect();
            let (index, shadowed) = Index::build(slots).unwrap();
            assert!(shadowed.is_empty());
            assert_eq!(index.len() as u64, count);
            for n in 0..count {
                let loc = index.get(&Hash::of(&n.to_le_bytes())).unwrap();
                assert_eq!((loc.pack, loc.offset, loc.len), (0, n * 10, 7));
            }
            for n in count..count + 100 {
                assert!(!index.contains(&Hash::of(&n.to_le_bytes())));
            }
            let hashes: Vec<&Hash> = index.iter().map(|(h, _)| h).collect();
            assert!(hashes.is_sorted());
        }
    }

    #[test]
    fn an_object_in_two_packs_is_read_from_the_first_and_the_second_is_shadowed() {
        let mut slots: Vec<Slot> = (0..100).map(|n| slot(n, 0)).collect();
        slots.extend((50..150).map(|n| slot(n, 1)));
        let (index, mut shadowed) = Index::build(slots).unwrap();
        assert_eq!(index.len(), 150);
        for n in 0..150u64 {
            let loc = index.get(&Hash::of(&n.to_le_bytes())).unwrap();
            assert_eq!(loc.pack, u32::from(n >= 100));
        }
        shadowed.sort_unstable();
        let mut want: Vec<(u32, Hash)> = (50..100u64)
            .map(|n| (1, Hash::of(&n.to_le_bytes())))
            .collect();
        want.sort_unstable();
        assert_eq!(shadowed, want);
    }
}
