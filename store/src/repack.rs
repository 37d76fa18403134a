//! gc's side of packs: giving back the space of dead objects.
//!
//! A dead frame between live ones frees nothing by itself: a hole can only
//! be punched over whole blocks, and most frames are smaller than one. So
//! gc decides per pack that lost objects (see [`remove`]):
//!
//! - nothing live: the pack and its index go;
//! - less than half live: the live frames are copied into a new pack (a
//!   repack), and the old one goes;
//! - otherwise the pack stays, and each dead frame's blocks are freed
//!   whole: the few small live frames that share those blocks with it (at
//!   most [`RELOCATE_MAX`] each) are first copied out. A live frame larger
//!   than that keeps its blocks, and only the blocks between are freed.
//!
//! Copies made by one gc, from every pack of an area, go into one new pack:
//! survivors of the same age, which die together more often than with the
//! young objects of a build. The cost stays with the dead objects (a few
//! blocks copied for each), never with the size of the pack they are in.
//!
//! The order keeps every index pointing at whole frames: the new pack is
//! written and installed durably first (its objects are then in two packs,
//! which loading allows); then each old pack gets its new index (temp,
//! fsync, rename, fsync dir); only then are holes punched.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::fault;
use crate::pack::{self, IdxEntry, Pack, PackWriter};
use crate::{Area, Hash, HashKeySet, Store, StoreError};

/// The largest live frame gc copies out of a block it wants to free: past
/// this, a copy costs more than any partial block it could give back.
pub(crate) const RELOCATE_MAX: u32 = 64 * 1024;

/// One pack that keeps live objects after this gc, and what to do to it.
struct Punch<'a> {
    pack: &'a Pack,
    live: Vec<IdxEntry>,
    holes: Vec<(u64, u64)>,
}

/// Removes `dead[i]` from `packs[i]` for every pack, in `dir`.
pub(crate) fn remove(
    store: &Store,
    dir: &Path,
    area: Area,
    packs: &[Pack],
    dead: &[HashKeySet<Hash>],
) -> Result<(), StoreError> {
    let mut copies: Option<PackWriter> = None;
    let mut punches = Vec::new();
    let mut emptied = Vec::new();
    let mut repacks = Vec::new();
    let mut frame = Vec::new();
    for (p, dead) in packs.iter().zip(dead).filter(|(_, d)| !d.is_empty()) {
        // The live ones stay in the vector read (a pack of a million
        // objects: 48 MiB, not twice that); the dead are few.
        let mut live = pack::read_idx(&p.idx())?;
        let gone: Vec<IdxEntry> = live
            .iter()
            .filter(|e| dead.contains(&e.hash))
            .copied()
            .collect();
        if gone.is_empty() {
            continue;
        }
        live.retain(|e| !dead.contains(&e.hash));
        if live.is_empty() {
            emptied.push(p);
            continue;
        }
        let live_bytes: u64 = live.iter().map(|e| u64::from(e.len)).sum();
        if live_bytes * 2 < p.len {
            repacks.push((p, live));
            continue;
        }
        live.sort_unstable_by_key(|e| e.offset);
        let (holes, moved) = plan(&live, &gone, p.len, block_size(p)?);
        let mut kept = Vec::with_capacity(live.len());
        for (e, m) in live.into_iter().zip(moved) {
            if m {
                pack::read_frame(p, e.offset, e.len, &mut frame)?;
                let w = match &mut copies {
                    Some(w) => w,
                    slot => slot.insert(PackWriter::create(store)?),
                };
                w.append(e.hash, &frame)?;
            } else {
                kept.push(e);
            }
        }
        if kept.is_empty() {
            emptied.push(p);
        } else {
            punches.push(Punch {
                pack: p,
                live: kept,
                holes,
            });
        }
    }
    // Packs with nothing live go before any pack is written: a pack is
    // named by its content, so a new pack of copies can bear the very name
    // of an emptied one (a second copy left by a relocation cut short holds
    // exactly what the relocation copies again), and removing the emptied
    // pack afterwards would remove the copies. What they hold is dead, or a
    // second copy whose first stays where it is until the steps below.
    for p in emptied {
        // The index first: a pack without one is a leftover, never a hole.
        crate::remove_if_present(&p.idx())?;
        store.fault.hit(fault::GC_DROP_INDEX_REMOVED);
        crate::remove_if_present(&p.path)?;
    }
    for (p, live) in repacks {
        repack(store, dir, p, &live, area)?;
    }
    if let Some(w) = copies {
        w.finish(store, area, true, fault::GC_RELOCATE_WRITTEN)?
            .install(store, dir, area, fault::GC_RELOCATE_PACK_RENAMED)?;
        crate::sync_dir(dir)?;
        store.fault.hit(fault::GC_RELOCATE_INSTALLED);
    }
    if punches.is_empty() {
        return Ok(());
    }
    for p in &mut punches {
        let (_, temp) = pack::write_idx(store, &mut p.live, area, true)?;
        store.fault.hit(fault::GC_INDEX_WRITTEN);
        let idx = p.pack.idx();
        std::fs::rename(temp.path(), &idx).map_err(StoreError::io(&idx))?;
        temp.keep();
        store.fault.hit(fault::GC_INDEX_RENAMED);
    }
    crate::sync_dir(dir)?;
    for p in &punches {
        punch(&p.pack.path, &p.holes, store)?;
    }
    Ok(())
}

/// The file system's block size for `pack`: holes are punched in whole blocks.
fn block_size(pack: &Pack) -> Result<u64, StoreError> {
    nix::sys::stat::fstat(&pack.file)
        .map(|st| u64::try_from(st.st_blksize).unwrap_or(4096).max(512))
        .map_err(|e| StoreError::Io {
            path: pack.path.clone(),
            source: e.into(),
        })
}

/// How many blocks past a dead frame's own gc looks for a better edge.
const REACH: u64 = 32;

/// A byte copied counts as this fraction of a byte left unfreed: copies are
/// cheap, but not free, and a far edge copies many frames.
const COPY_WEIGHT: u64 = 256;

fn copied(frames: &[IdxEntry]) -> u64 {
    frames.iter().map(|e| u64::from(e.len)).sum()
}

/// The holes (whole blocks, sorted, disjoint) that free the `gone` frames of
/// a pack of `len` bytes, and which of the `live` frames (sorted by offset)
/// must be copied out first because they share a block with one. Each hole
/// also takes whatever lies between the live frames around its gone frame
/// (space left by an earlier gc cut short). Block 0 holds the pack's magic
/// and is never punched.
///
/// The edges of a hole are the pair of block boundaries, within [`REACH`]
/// blocks, that loses least: a boundary inside a live frame copies that whole frame and
/// frees only its part inside the hole; one inside the dead space leaves
/// the dead bytes before it; and every byte copied weighs a little
/// ([`COPY_WEIGHT`]). Frames larger than [`RELOCATE_MAX`] are never
/// copied, so an edge never crosses one. When every pair loses more than
/// the dead bytes themselves, the frame waits for its neighbours to die.
fn plan(
    live: &[IdxEntry],
    gone: &[IdxEntry],
    len: u64,
    block: u64,
) -> (Vec<(u64, u64)>, Vec<bool>) {
    let end_of = |e: &IdxEntry| e.offset + u64::from(e.len);
    let mut moved = vec![false; live.len()];
    let mut holes = Vec::new();
    for g in gone {
        let after = live.partition_point(|e| e.offset < g.offset);
        let gap_start = after.checked_sub(1).map_or(0, |i| end_of(&live[i]));
        let gap_end = live.get(after).map_or(len, |e| e.offset);
        // Left edges: the boundary at or after the gap's start costs the
        // dead bytes it leaves; each one before costs the part of the frame
        // it cuts (0 when it falls between frames). (edge, loss, first frame
        // copied.)
        let up = gap_start.div_ceil(block) * block;
        let mut lefts = vec![(up.max(block), up.max(block) - gap_start, after)];
        let mut first = after;
        for k in 0..=REACH {
            let Some(at) = (gap_start / block).checked_sub(k).map(|b| b * block) else {
                break;
            };
            if at < block || at >= up {
                continue;
            }
            while first > 0 && end_of(&live[first - 1]) > at {
                first -= 1;
            }
            if live[first..after].iter().any(|e| e.len > RELOCATE_MAX) {
                break;
            }
            let loss = live[first..after]
                .first()
                .map_or(0, |e| at.saturating_sub(e.offset))
                + copied(&live[first..after]) / COPY_WEIGHT;
            lefts.push((at, loss, first));
        }
        // Right edges, the same way round (edge, loss, frame after the
        // last one copied).
        let down = gap_end / block * block;
        let mut rights = vec![(down, gap_end - down, after)];
        let mut last = after;
        for k in 0..=REACH {
            let at = (gap_end.div_ceil(block) + k) * block;
            if at <= down {
                continue;
            }
            while last < live.len() && live[last].offset < at {
                last += 1;
            }
            if live[after..last].iter().any(|e| e.len > RELOCATE_MAX) {
                break;
            }
            let loss = live[after..last]
                .last()
                .map_or(0, |e| end_of(e).saturating_sub(at))
                + copied(&live[after..last]) / COPY_WEIGHT;
            rights.push((at, loss, last));
            if at >= len {
                break;
            }
        }
        // Both edges together: a gap inside one block frees nothing unless
        // both of its edges move out. Freeing nothing loses the whole gap.
        let mut best = None;
        let mut least = gap_end - gap_start;
        for l in &lefts {
            for r in rights.iter().filter(|r| r.0 > l.0) {
                let loss = if l.0 >= gap_end || r.0 <= gap_start {
                    continue;
                } else {
                    l.1 + r.1
                };
                if loss < least {
                    least = loss;
                    best = Some((*l, *r));
                }
            }
        }
        let Some((start, end)) = best else {
            continue;
        };
        for m in &mut moved[start.2..after] {
            *m = true;
        }
        for m in &mut moved[after..end.2] {
            *m = true;
        }
        holes.push((start.0, end.0));
    }
    holes.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(holes.len());
    for (s, e) in holes {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    // Whatever the walk above decided, no hole may touch a block that a
    // frame staying in this pack uses.
    let kept: Vec<(u64, u64)> = live
        .iter()
        .zip(&moved)
        .filter(|(_, m)| !**m)
        .map(|(e, _)| (e.offset / block * block, end_of(e).div_ceil(block) * block))
        .collect();
    let mut out = Vec::with_capacity(merged.len());
    for (hs, he) in merged {
        let mut s = hs;
        for &(ks, ke) in &kept[kept.partition_point(|k| k.1 <= s)..] {
            if ks >= he {
                break;
            }
            if ks > s {
                out.push((s, ks));
            }
            s = s.max(ke);
        }
        if s < he {
            out.push((s, he));
        }
    }
    (out, moved)
}

/// Copies the `live` frames of `pack` into a new pack, installs it durably,
/// then removes the old one.
fn repack(
    store: &Store,
    dir: &Path,
    pack: &Pack,
    live: &[IdxEntry],
    area: Area,
) -> Result<(), StoreError> {
    let mut w = PackWriter::create(store)?;
    let mut frame = Vec::new();
    // In file order, so the old pack is read front to back.
    let mut order = live.to_vec();
    order.sort_unstable_by_key(|e| e.offset);
    for e in order {
        pack::read_frame(pack, e.offset, e.len, &mut frame)?;
        w.append(e.hash, &frame)?;
    }
    w.finish(store, area, true, fault::GC_REPACK_WRITTEN)?
        .install(store, dir, area, fault::GC_REPACK_PACK_RENAMED)?;
    crate::sync_dir(dir)?;
    store.fault.hit(fault::GC_REPACK_INSTALLED);
    crate::remove_if_present(&pack.idx())?;
    store.fault.hit(fault::GC_REPACK_OLD_INDEX_REMOVED);
    crate::remove_if_present(&pack.path)
}

/// Gives the file system back the `holes` of the pack at `path`. A file
/// system that cannot punch holes keeps the bytes until the pack is
/// repacked.
fn punch(path: &Path, holes: &[(u64, u64)], store: &Store) -> Result<(), StoreError> {
    use nix::fcntl::{FallocateFlags, fallocate};
    // Root may open a 0444 pack for writing; a hole changes no live byte.
    let file = OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(StoreError::io(path))?;
    let flags = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
    store.fault.hit(fault::GC_BEFORE_PUNCH);
    for &(start, end) in holes {
        let (Ok(off), Ok(n)) = (i64::try_from(start), i64::try_from(end - start)) else {
            continue;
        };
        match fallocate(&file, flags, off, n) {
            Ok(()) => {}
            Err(nix::errno::Errno::EOPNOTSUPP) => break,
            Err(e) => {
                return Err(StoreError::Io {
                    path: path.into(),
                    source: e.into(),
                });
            }
        }
    }
    store.fault.hit(fault::GC_AFTER_PUNCH);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(offset: u64, len: u32) -> IdxEntry {
        IdxEntry {
            hash: Hash::of(&offset.to_le_bytes()),
            offset,
            len,
        }
    }

    /// A frame too large to be copied.
    const BIG: u32 = RELOCATE_MAX + 1;

    #[test]
    fn a_small_neighbour_moves_when_that_frees_more_than_it_copies() {
        // [8, 4000) stays in block 0; [4000, 4600) is copied so that block
        // 4096..8192 goes whole; the large frame at 9000 keeps its blocks.
        let live = [e(8, 3992), e(4000, 600), e(9000, BIG)];
        let (holes, moved) = plan(&live, &[e(4600, 4400)], 9000 + u64::from(BIG), 4096);
        assert_eq!(holes, vec![(4096, 8192)]);
        assert_eq!(moved, vec![false, true, false]);
        // Copying a frame of 4992 bytes to free 904 of them is not worth it.
        let live = [e(8, 4992), e(9000, BIG)];
        let (holes, moved) = plan(&live, &[e(5000, 4000)], 9000 + u64::from(BIG), 4096);
        assert_eq!((holes, moved), (vec![], vec![false, false]));
    }

    #[test]
    fn nothing_moves_when_no_whole_block_would_be_freed() {
        let live = [e(8, 19_992), e(21_000, 100), e(21_100, BIG)];
        let (holes, moved) = plan(&live, &[e(20_000, 1000)], 100_000, 4096);
        assert_eq!((holes, moved), (vec![], vec![false; 3]));
    }

    #[test]
    fn each_edge_is_where_least_is_lost() {
        let live = [
            e(8, 8_500),
            e(8_508, 40),
            e(8_548, 50),
            e(9_400, 10),
            e(9_410, BIG),
        ];
        let (holes, moved) = plan(&live, &[e(8_598, 802)], 200_000, 512);
        // Left: from 8704 leaves 106 dead bytes; cutting the 8500-byte
        // frame would lose more of it. Right: ending at 9216 leaves 184
        // dead bytes, and the large frame after cannot be copied.
        assert_eq!(holes, vec![(8_704, 9_216)]);
        assert_eq!(moved, vec![false; 5]);
        // Frames that end on a block boundary cost nothing to cut at.
        let live = [e(8, 1016), e(1024, 100), e(1124, 376), e(2048, 300)];
        let (holes, moved) = plan(&live, &[e(1500, 548)], 2348, 512);
        assert_eq!(holes, vec![(1024, 2048)]);
        assert_eq!(moved, vec![false, true, true, false]);
    }

    #[test]
    fn the_first_block_stays_and_the_last_one_goes() {
        let live = [e(300, 10)];
        let (holes, moved) = plan(&live, &[e(8, 292), e(310, 1000)], 1310, 512);
        assert_eq!(holes, vec![(512, 1536)]);
        assert_eq!(moved, vec![false]);
    }

    #[test]
    fn adjacent_dead_frames_never_free_a_kept_frame_block() {
        // Frames of 3000 bytes, every other one dead, one in ten live ones large.
        let mut live = Vec::new();
        let mut gone = Vec::new();
        let mut at = 8u64;
        for k in 0..200u64 {
            let len = if k % 20 == 1 { BIG } else { 3000 };
            if k % 2 == 0 {
                gone.push(e(at, len));
            } else {
                live.push(e(at, len));
            }
            at += u64::from(len);
        }
        let (holes, moved) = plan(&live, &gone, at, 4096);
        for (l, m) in live.iter().zip(&moved) {
            let (s, end) = (l.offset, l.offset + u64::from(l.len));
            let touched = holes
                .iter()
                .any(|&(hs, he)| hs < end.div_ceil(4096) * 4096 && he > s / 4096 * 4096);
            assert!(*m || !touched, "{l:?} kept but punched");
        }
        assert!(holes.windows(2).all(|w| w[0].1 < w[1].0));
        assert!(!holes.is_empty());
    }
}
