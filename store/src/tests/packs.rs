//! Packs: space freed by removal, damage reported, interrupted installs,
//! batches, listing, temp files.

use super::*;

/// Blocks the file takes on disk.
fn blocks(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).unwrap().blocks()
}

#[test]
fn removing_packed_objects_frees_their_space() {
    let (_dir, store) = store();
    let batch = store.batch();
    // Poorly compressible and several blocks each, so punched holes show.
    let objects: Vec<(Hash, Vec<u8>)> = (0..10u64)
        .map(|i| {
            let bytes = noise(40_000, 100 + i);
            (batch.put_bytes(&bytes, Area::Secret).unwrap(), bytes)
        })
        .collect();
    batch.commit().unwrap();
    let files = pack_files(&store, Area::Secret);
    let pack = files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "pack"))
        .unwrap()
        .clone();
    let full = blocks(&pack);

    // A few dead: a new index, and holes where they were.
    let dead: Vec<(Hash, Area)> = objects[2..5]
        .iter()
        .map(|(h, _)| (*h, Area::Secret))
        .collect();
    store.remove_all(&dead).unwrap();
    // The pack keeps its name; the live neighbours copied out of the freed
    // blocks (see the `repack` module) are in one new pack.
    let now = pack_files(&store, Area::Secret);
    assert!(
        files.iter().all(|f| now.contains(f)),
        "same pack, same names"
    );
    assert!(now.len() <= files.len() + 2, "{now:?}");
    assert!(
        blocks(&pack) < full * 8 / 10,
        "{} of {full} blocks",
        blocks(&pack)
    );
    for (i, (h, bytes)) in objects.iter().enumerate() {
        let gone = (2..5).contains(&i);
        assert_eq!(
            store.contains(h, Area::Secret).unwrap(),
            !gone,
            "object {i}"
        );
        if !gone {
            assert_eq!(&store.read(h, Area::Secret).unwrap(), bytes);
        }
    }
    // The same removal again changes nothing.
    store.remove_all(&dead).unwrap();
    assert_eq!(store.list(Area::Secret).unwrap().len(), 7);

    // Mostly dead: the live rest is copied into a new pack, the old one goes.
    let dead: Vec<(Hash, Area)> = objects[5..]
        .iter()
        .map(|(h, _)| (*h, Area::Secret))
        .collect();
    store.remove_all(&dead).unwrap();
    let repacked = pack_files(&store, Area::Secret);
    assert_eq!(repacked.len(), now.len());
    assert!(!repacked.contains(&pack));
    for f in &repacked {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    assert_eq!(store.list(Area::Secret).unwrap().len(), 2);
    for (h, bytes) in &objects[..2] {
        assert_eq!(&store.read(h, Area::Secret).unwrap(), bytes);
    }

    // All dead: nothing is left.
    let dead: Vec<(Hash, Area)> = objects[..2]
        .iter()
        .map(|(h, _)| (*h, Area::Secret))
        .collect();
    store.remove_all(&dead).unwrap();
    assert!(pack_files(&store, Area::Secret).is_empty());
    assert!(store.list(Area::Secret).unwrap().is_empty());
    assert_eq!(tmp_entries(&store), 0);
}

#[test]
fn corrupt_packed_object_and_damaged_index_are_reported() {
    let (_dir, store) = store();
    let batch = store.batch();
    let a = batch.put_bytes(&noise(3000, 1), Area::Public).unwrap();
    let b = batch.put_bytes(&noise(3000, 2), Area::Public).unwrap();
    batch.commit().unwrap();
    let files = pack_files(&store, Area::Public);
    let (idx, pack) = (&files[0], &files[1]);
    assert!(idx.extension().is_some_and(|e| e == "idx"), "{files:?}");
    // Damage the first object's frame (the one at the lower offset).
    let first = if read_offset(&store, &a) < read_offset(&store, &b) {
        a
    } else {
        b
    };
    let other = if first == a { b } else { a };
    let mut bytes = fs::read(pack).unwrap();
    bytes[8 + 1500] ^= 0x55;
    fs::set_permissions(pack, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(pack, &bytes).unwrap();
    // The error names the object and its pack.
    assert!(
        matches!(store.read(&first, Area::Public), Err(StoreError::CorruptInPack { hash, pack: p }) if hash == first && &p == pack)
    );
    assert!(!store.check(&first, Area::Public).unwrap());
    assert!(store.check(&other, Area::Public).unwrap());

    // A damaged index leaves its pack out, named; the rest of the store
    // still answers, and a read of what the pack may hold names it.
    let mut bytes = fs::read(idx).unwrap();
    bytes[20] ^= 1;
    fs::set_permissions(idx, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(idx, &bytes).unwrap();
    let store = Store::open(store.dir()).unwrap();
    let loose = store.put_bytes(b"a loose object", Area::Public).unwrap();
    let err = store.read(&other, Area::Public).unwrap_err();
    assert!(
        matches!(&err, StoreError::InDamagedPack { hash, pack: p, .. } if *hash == other && p == pack),
        "{err}"
    );
    assert!(
        err.to_string().contains(&pack.display().to_string()),
        "{err}"
    );
    assert!(!store.contains(&other, Area::Public).unwrap());
    assert_eq!(store.list(Area::Public).unwrap(), vec![loose]);
    assert_eq!(store.read(&loose, Area::Public).unwrap(), b"a loose object");
    let damaged = store.damaged_packs().unwrap();
    assert_eq!(damaged.len(), 1);
    assert_eq!(&damaged[0].path, pack);
    assert!(damaged[0].why.contains("checksum"), "{}", damaged[0].why);

    // Set aside: what still decompresses is salvaged, the rest is missing,
    // and a copy of its content puts it back.
    let aside = store.set_aside(&damaged[0]).unwrap();
    assert!(aside.salvaged >= 1);
    assert!(!pack.exists() && !idx.exists());
    assert!(store.dir().join("damaged").read_dir().unwrap().count() == 2);
    assert!(store.damaged_packs().unwrap().is_empty());
    assert!(store.check(&other, Area::Public).unwrap());
    assert_eq!(
        store.health(&first, Area::Public).unwrap(),
        crate::Health::Missing
    );
    let content = if first == a {
        noise(3000, 1)
    } else {
        noise(3000, 2)
    };
    assert_eq!(
        store.restore(&content, Area::Public).unwrap(),
        (first, true)
    );
    assert!(store.check(&first, Area::Public).unwrap());
}

fn read_offset(store: &Store, h: &Hash) -> u64 {
    store
        .with_packs(Area::Public, |set| set.index.get(h).map(|l| l.offset))
        .unwrap()
        .unwrap()
}

#[test]
fn interrupted_pack_installs_are_invisible_and_cleaned() {
    let (_dir, store) = store();
    let batch = store.batch();
    let a = batch.put_bytes(b"kept", Area::Public).unwrap();
    batch.commit().unwrap();
    let batch = store.batch();
    let b = batch
        .put_bytes(b"in a pack whose index never landed", Area::Public)
        .unwrap();
    batch.commit().unwrap();
    // Take away the second pack's index: as if the crash came between the
    // two renames. And an index whose pack is gone: a removal cut short.
    let files = pack_files(&store, Area::Public);
    let b_pack = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "pack"))
        .find(|p| fs::read(p).unwrap().len() > 8 + 20)
        .unwrap()
        .clone();
    fs::remove_file(b_pack.with_extension("idx")).unwrap();
    let orphan_idx = store
        .area_dir(Area::Public)
        .join("pack")
        .join(format!("{}.idx", "0".repeat(32)));
    fs::copy(
        files
            .iter()
            .find(|p| p.extension().is_some_and(|e| e == "idx") && p.exists())
            .unwrap(),
        &orphan_idx,
    )
    .unwrap();

    let store = Store::open(store.dir()).unwrap();
    assert!(!store.contains(&b, Area::Public).unwrap());
    assert!(store.contains(&a, Area::Public).unwrap());
    store.clean_temp().unwrap();
    assert_eq!(pack_files(&store, Area::Public).len(), 2);
    assert!(!b_pack.exists());
    assert!(!orphan_idx.exists());
    assert_eq!(store.read(&a, Area::Public).unwrap(), b"kept");
}

#[test]
fn batch_commit_then_list() {
    let (_dir, store) = store();
    let batch = store.batch();
    let mut expected: Vec<Hash> = (0..50u32)
        .map(|i| batch.put_bytes(&i.to_le_bytes(), Area::Public).unwrap())
        .collect();
    // Not visible before commit.
    assert!(!store.contains(&expected[0], Area::Public).unwrap());
    assert!(store.list(Area::Public).unwrap().is_empty());
    let outcome = batch.commit().unwrap();
    assert_eq!(outcome.objects_written, 50);
    assert_eq!(outcome.bytes_in, 200);
    assert!(outcome.bytes_stored > 0);
    expected.sort();
    assert_eq!(store.list(Area::Public).unwrap(), expected);
    assert!(store.list(Area::Secret).unwrap().is_empty());
    assert_eq!(tmp_entries(&store), 0);
    for h in &expected {
        assert!(store.check(h, Area::Public).unwrap());
    }
}

#[test]
fn list_ignores_foreign_names() {
    let (_dir, store) = store();
    let h = store.put_bytes(b"x", Area::Public).unwrap();
    let objects = store.dir().join("objects");
    fs::write(objects.join("README"), b"").unwrap();
    fs::create_dir(objects.join("zz")).unwrap();
    fs::write(objects.join("zz").join("not-a-hash"), b"").unwrap();
    let fan = store.object_path(&h, Area::Public);
    fs::write(fan.parent().unwrap().join("leftover.tmp"), b"").unwrap();
    assert_eq!(store.list(Area::Public).unwrap(), vec![h]);
}

#[test]
fn batch_drop_removes_temps() {
    let (dir, store) = store();
    let big = dir.path().join("big");
    fs::write(&big, noise(1_200_000, 7)).unwrap();
    let batch = store.batch();
    let h = batch.put_bytes(b"never committed", Area::Secret).unwrap();
    let (big_hash, _) = batch.put_file(&big, Area::Public).unwrap();
    assert_eq!(tmp_entries(&store), 2);
    drop(batch);
    assert_eq!(tmp_entries(&store), 0);
    assert!(!store.contains(&h, Area::Secret).unwrap());
    assert!(!store.contains(&big_hash, Area::Public).unwrap());
}

#[test]
fn clean_temp_removes_leftovers() {
    let (_dir, store) = store();
    let batch = store.batch();
    batch.put_bytes(b"interrupted", Area::Public).unwrap();
    // Simulate a crash: the batch never runs its cleanup.
    std::mem::forget(batch);
    fs::write(store.dir().join("tmp").join("stray"), b"").unwrap();
    assert_eq!(tmp_entries(&store), 2);
    store.clean_temp().unwrap();
    assert_eq!(tmp_entries(&store), 0);
}

#[test]
fn sweep_names_exactly_what_is_not_live_packed_or_loose_with_its_size() {
    let (_dir, store) = store();
    // Two packs (two batches) and two files of their own.
    let mut all = Vec::new();
    for round in 0..2u32 {
        let batch = store.batch();
        for i in 0..300u32 {
            let content = format!("object {round} {i}");
            all.push(batch.put_bytes(content.as_bytes(), Area::Public).unwrap());
        }
        batch.commit().unwrap();
    }
    all.push(store.put_bytes(b"a loose one", Area::Public).unwrap());
    all.push(store.put_bytes(b"another loose one", Area::Public).unwrap());
    let loose_dead = all[all.len() - 1];
    // Every third object lives, and one loose one.
    let mut live: Vec<Hash> = all.iter().step_by(3).copied().collect();
    live.push(all[all.len() - 2]);
    live.sort_unstable();
    live.dedup();
    let mut seen = 0;
    let mut dead = store
        .sweep(Area::Public, &live, &mut |n| seen += n)
        .unwrap();
    assert_eq!(seen, store.packed_count(Area::Public).unwrap());
    assert_eq!(seen, 600);
    dead.sort_unstable();
    let mut want: Vec<(Hash, u64)> = all
        .iter()
        .filter(|h| live.binary_search(h).is_err())
        .map(|h| (*h, store.disk_size(h, Area::Public).unwrap()))
        .collect();
    want.sort_unstable();
    assert_eq!(dead, want);
    assert!(dead.iter().any(|(h, _)| *h == loose_dead));
    // Nothing is live in the other area, and it is empty.
    assert!(
        store
            .sweep(Area::Secret, &[], &mut |_| ())
            .unwrap()
            .is_empty()
    );
}
