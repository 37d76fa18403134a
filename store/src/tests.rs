use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rayon::prelude::*;

use super::*;

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    (dir, store)
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

fn tmp_entries(store: &Store) -> usize {
    fs::read_dir(store.dir().join("tmp")).unwrap().count()
}

/// Deterministic, poorly compressible bytes, so sizes are realistic.
fn noise(len: usize, seed: u64) -> Vec<u8> {
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

/// Flips one byte of the stored (compressed) object.
fn corrupt(store: &Store, hash: &Hash, area: Area, at: usize) {
    let path = store.object_path(hash, area);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    let mut bytes = fs::read(&path).unwrap();
    let i = at.min(bytes.len() - 1);
    bytes[i] ^= 0x55;
    fs::write(&path, bytes).unwrap();
}

#[test]
fn hash_hex_round_trip_and_formats() {
    let h = Hash::of(b"hello");
    assert_eq!(h.to_hex(), blake3::hash(b"hello").to_hex().as_str());
    assert_eq!(h.to_hex().len(), 64);
    assert_eq!(Hash::from_hex(&h.to_hex()).unwrap(), h);
    assert_eq!(Hash::from_hex(&h.to_hex().to_uppercase()).unwrap(), h);
    assert_eq!(h.to_string(), h.to_hex());
    assert_eq!(format!("{h:?}"), format!("Hash({})", &h.to_hex()[..12]));
    assert_eq!(Hash::from_bytes(*h.as_bytes()), h);

    let json = serde_json::to_string(&h).unwrap();
    assert_eq!(json, format!("\"{h}\""));
    assert_eq!(serde_json::from_str::<Hash>(&json).unwrap(), h);
    assert!(serde_json::from_str::<Hash>("\"abc\"").is_err());
}

#[test]
fn from_hex_rejects_bad_input() {
    let good = Hash::of(b"x").to_hex();
    let cases = [
        String::new(),
        good[..63].to_owned(),
        format!("{good}0"),
        format!("{}g", &good[..63]),
        format!("{}é", &good[..62]),
        " ".repeat(64),
    ];
    for text in cases {
        match Hash::from_hex(&text) {
            Err(StoreError::BadHash { text: t }) => assert_eq!(t, text),
            other => panic!("{text:?}: expected BadHash, got {other:?}"),
        }
    }
}

#[test]
fn hash_file_streams() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let data = noise(200_000, 1);
    fs::write(&path, &data).unwrap();
    assert_eq!(hash_file(&path).unwrap(), (Hash::of(&data), 200_000));
}

#[test]
fn open_creates_layout_with_modes() {
    let (_dir, store) = store();
    assert_eq!(mode(&store.dir().join("objects")), 0o755);
    assert_eq!(mode(&store.dir().join("secret")), 0o700);
    assert_eq!(mode(&store.dir().join("tmp")), 0o700);
    // Reopening an existing store works and re-tightens loosened private dirs.
    fs::set_permissions(
        store.dir().join("secret"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let again = Store::open(store.dir()).unwrap();
    assert_eq!(mode(&again.dir().join("secret")), 0o700);
}

#[test]
fn put_read_round_trip_in_both_areas() {
    let (_dir, store) = store();
    for area in [Area::Public, Area::Secret] {
        let data = b"some content\n".repeat(100);
        let hash = store.put_bytes(&data, area).unwrap();
        assert_eq!(hash, Hash::of(&data));
        assert!(store.contains(&hash, area).unwrap());
        assert_eq!(store.read(&hash, area).unwrap(), data);
        let mut out = Vec::new();
        assert_eq!(
            store.copy_to(&hash, area, &mut out).unwrap(),
            data.len() as u64
        );
        assert_eq!(out, data);
        assert!(store.check(&hash, area).unwrap());
        // Compressed at rest: repetitive content takes far less space.
        assert!(store.disk_size(&hash, area).unwrap() < data.len() as u64 / 4);
    }
    assert_eq!(tmp_entries(&store), 0);
}

#[test]
fn areas_are_independent() {
    let (_dir, store) = store();
    let hash = store.put_bytes(b"secret", Area::Secret).unwrap();
    assert!(!store.contains(&hash, Area::Public).unwrap());
    assert!(matches!(
        store.read(&hash, Area::Public),
        Err(StoreError::NotFound { hash: h }) if h == hash
    ));
    store.put_bytes(b"secret", Area::Public).unwrap();
    store.remove_all(&[(hash, Area::Secret)]).unwrap();
    assert!(store.contains(&hash, Area::Public).unwrap());
    assert!(!store.contains(&hash, Area::Secret).unwrap());
}

#[test]
fn modes_of_objects_and_fanout_dirs() {
    let (_dir, store) = store();
    let public = store.put_bytes(b"public", Area::Public).unwrap();
    let secret = store.put_bytes(b"secret", Area::Secret).unwrap();
    let (file_hash, _) = {
        let path = store.dir().join("../input");
        fs::write(&path, b"from a file").unwrap();
        store.put_file(&path, Area::Secret).unwrap()
    };
    let pub_path = store.object_path(&public, Area::Public);
    assert_eq!(mode(&pub_path), 0o444);
    assert_eq!(mode(pub_path.parent().unwrap()), 0o755);
    for h in [secret, file_hash] {
        let path = store.object_path(&h, Area::Secret);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
    }
    let batch = store.batch();
    let b_pub = batch.put_bytes(b"batch public", Area::Public).unwrap();
    let b_sec = batch.put_bytes(b"batch secret", Area::Secret).unwrap();
    batch.commit().unwrap();
    // A batch packs small objects: the packs and their indexes have the
    // area's modes, and so do the pack directories.
    for (area, dir_mode, file_mode) in [(Area::Public, 0o755, 0o444), (Area::Secret, 0o700, 0o600)]
    {
        let dir = store.pack_dir(area);
        assert_eq!(mode(&dir), dir_mode);
        let files = pack_files(&store, area);
        assert_eq!(files.len(), 2, "{files:?}");
        for f in files {
            assert_eq!(mode(&f), file_mode, "{}", f.display());
        }
    }
    assert!(store.contains(&b_pub, Area::Public).unwrap());
    assert!(store.contains(&b_sec, Area::Secret).unwrap());
    assert!(!store.object_path(&b_pub, Area::Public).exists());
}

/// The files in an area's pack directory, sorted.
fn pack_files(store: &Store, area: Area) -> Vec<std::path::PathBuf> {
    let dir = store.pack_dir(area);
    let mut out: Vec<_> = match fs::read_dir(&dir) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

#[test]
fn empty_content() {
    let (_dir, store) = store();
    let hash = store.put_bytes(b"", Area::Public).unwrap();
    assert_eq!(hash, Hash::of(b""));
    assert_eq!(store.read(&hash, Area::Public).unwrap(), b"");
    assert!(store.check(&hash, Area::Public).unwrap());

    let batch = store.batch();
    assert_eq!(batch.put_bytes(b"", Area::Secret).unwrap(), hash);
    assert_eq!(batch.commit().unwrap().objects_written, 1);
    assert_eq!(store.read(&hash, Area::Secret).unwrap(), b"");
}

#[test]
fn dedup_writes_nothing_twice() {
    let (_dir, store) = store();
    let batch = store.batch();
    let a = batch.put_bytes(b"a", Area::Public).unwrap();
    assert_eq!(batch.put_bytes(b"a", Area::Public).unwrap(), a);
    batch.put_bytes(b"a", Area::Secret).unwrap();
    // One pack per area, each holding its content once.
    assert_eq!(tmp_entries(&store), 2);
    let outcome = batch.commit().unwrap();
    assert_eq!(outcome.objects_written, 2);
    assert_eq!(outcome.bytes_in, 2);

    let batch = store.batch();
    batch.put_bytes(b"a", Area::Public).unwrap();
    batch.put_bytes(b"a", Area::Secret).unwrap();
    assert_eq!(tmp_entries(&store), 0);
    assert_eq!(batch.commit().unwrap(), BatchOutcome::default());

    // A durable put of content already packed writes nothing.
    let before = dump(store.dir());
    store.put_bytes(b"a", Area::Public).unwrap();
    assert_eq!(dump(store.dir()), before);
    assert!(!store.object_path(&a, Area::Public).exists());
}

/// Every file under `dir` with its size and mtime, for "nothing changed" checks.
fn dump(dir: &Path) -> Vec<(std::path::PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let md = e.metadata().unwrap();
            if md.is_dir() {
                stack.push(e.path());
            }
            out.push((e.path(), md.len(), md.modified().unwrap()));
        }
    }
    out.sort();
    out
}

#[test]
fn packed_objects_survive_reopen_and_large_ones_stay_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let batch = store.batch();
    let mut small: Vec<(Hash, Vec<u8>)> = (0..300u64)
        .map(|i| {
            let bytes = noise(100 + (i as usize * 37) % 3000, i);
            (batch.put_bytes(&bytes, Area::Public).unwrap(), bytes)
        })
        .collect();
    let big = noise(SMALL_FILE_LIMIT as usize + 10, 7);
    let big_hash = batch.put_bytes(&big, Area::Public).unwrap();
    assert_eq!(batch.commit().unwrap().objects_written, 301);
    assert_eq!(pack_files(&store, Area::Public).len(), 2);
    assert!(store.object_path(&big_hash, Area::Public).is_file());
    assert!(!store.object_path(&small[0].0, Area::Public).exists());
    drop(store);

    let store = Store::open(&dir.path().join("store")).unwrap();
    small.push((big_hash, big));
    for (h, bytes) in &small {
        assert_eq!(&store.read(h, Area::Public).unwrap(), bytes);
        assert!(store.disk_size(h, Area::Public).unwrap() > 0);
    }
    let mut expected: Vec<Hash> = small.iter().map(|(h, _)| *h).collect();
    expected.sort();
    assert_eq!(store.list(Area::Public).unwrap(), expected);

    // A second batch adds a second pack; both are read.
    let batch = store.batch();
    let more = batch.put_bytes(b"second batch", Area::Public).unwrap();
    batch.commit().unwrap();
    assert_eq!(pack_files(&store, Area::Public).len(), 4);
    assert_eq!(store.read(&more, Area::Public).unwrap(), b"second batch");
    assert_eq!(store.read(&small[5].0, Area::Public).unwrap(), small[5].1);
}

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
        .with_packs(Area::Public, |set| set.map.get(h).map(|l| l.offset))
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
fn concurrent_puts_from_rayon() {
    let (_dir, store) = store();
    let batch = store.batch();
    // 400 puts of 100 distinct contents, racing on the same keys.
    let hashes: Vec<Hash> = (0..400u32)
        .into_par_iter()
        .map(|i| {
            let area = if i % 2 == 0 {
                Area::Public
            } else {
                Area::Secret
            };
            batch
                .put_bytes(&noise(1000, u64::from(i % 100)), area)
                .unwrap()
        })
        .collect();
    let outcome = batch.commit().unwrap();
    // Each content i%100 lands in the area given by i's parity; i%100 and i
    // share parity, so each content is in exactly one area.
    assert_eq!(outcome.objects_written, 100);
    assert_eq!(outcome.bytes_in, 100_000);
    assert_eq!(tmp_entries(&store), 0);
    for (i, h) in hashes.iter().enumerate() {
        let area = if i % 2 == 0 {
            Area::Public
        } else {
            Area::Secret
        };
        assert_eq!(store.read(h, area).unwrap(), noise(1000, (i % 100) as u64));
    }

    // Durable puts concurrently too, from one shared store.
    (0..50u64).into_par_iter().for_each(|i| {
        store
            .put_bytes(&noise(100, 1000 + i % 10), Area::Public)
            .unwrap();
    });
    assert_eq!(store.list(Area::Public).unwrap().len(), 50 + 10);
}

#[test]
fn large_file_streamed_round_trip() {
    let (dir, store) = store();
    // Half noise, half zeros: over the small-file limit, partly compressible.
    let mut data = noise(1_500_000, 3);
    data.extend(std::iter::repeat_n(0u8, 1_500_000));
    let path = dir.path().join("large");
    fs::write(&path, &data).unwrap();

    let batch = store.batch();
    let (hash, size) = batch.put_file(&path, Area::Public).unwrap();
    assert_eq!((hash, size), (Hash::of(&data), data.len() as u64));
    let outcome = batch.commit().unwrap();
    assert_eq!(outcome.bytes_in, data.len() as u64);
    assert!(outcome.bytes_stored < data.len() as u64 * 3 / 4);
    assert_eq!(
        store.disk_size(&hash, Area::Public).unwrap(),
        outcome.bytes_stored
    );
    let mut out = Vec::new();
    store.copy_to(&hash, Area::Public, &mut out).unwrap();
    assert!(out == data);

    // The durable path streams as well.
    assert_eq!(store.put_file(&path, Area::Secret).unwrap(), (hash, size));
    assert!(store.read(&hash, Area::Secret).unwrap() == data);
}

#[test]
fn small_file_round_trip() {
    let (dir, store) = store();
    let path = dir.path().join("small");
    fs::write(&path, b"small file").unwrap();
    let batch = store.batch();
    assert_eq!(
        batch.put_file(&path, Area::Public).unwrap(),
        (Hash::of(b"small file"), 10)
    );
    batch.commit().unwrap();
    assert_eq!(
        store.read(&Hash::of(b"small file"), Area::Public).unwrap(),
        b"small file"
    );
}

#[test]
fn missing_input_file_names_its_path() {
    let (dir, store) = store();
    let path = dir.path().join("absent");
    match store.batch().put_file(&path, Area::Public) {
        Err(StoreError::Io { path: p, .. }) => assert_eq!(p, path),
        other => panic!("expected Io, got {other:?}"),
    }
}

#[test]
fn corrupt_object_is_detected() {
    let (_dir, store) = store();
    let data = noise(5000, 9);
    for area in [Area::Public, Area::Secret] {
        // Damage the frame header, the middle and the end (checksum-free
        // payload): each must be caught by every reader.
        for at in [0, 2500, usize::MAX] {
            let hash = store.put_bytes(&data, area).unwrap();
            corrupt(&store, &hash, area, at);
            assert!(
                matches!(store.read(&hash, area), Err(StoreError::Corrupt { hash: h }) if h == hash)
            );
            let mut out = Vec::new();
            assert!(matches!(
                store.copy_to(&hash, area, &mut out),
                Err(StoreError::Corrupt { .. })
            ));
            assert!(!store.check(&hash, area).unwrap());
            store.remove_all(&[(hash, area)]).unwrap();
        }
    }
}

#[test]
fn valid_frame_of_other_content_is_corrupt() {
    // Bytes that decompress fine but to something else: only the hash catches it.
    let (_dir, store) = store();
    let hash = store.put_bytes(b"original", Area::Public).unwrap();
    let path = store.object_path(&hash, Area::Public);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(&path, zstd::bulk::compress(b"replaced", 3).unwrap()).unwrap();
    assert!(!store.check(&hash, Area::Public).unwrap());
    let err = store.read(&hash, Area::Public).unwrap_err();
    assert!(err.to_string().contains(&hash.to_hex()));
    assert!(err.to_string().contains("sysgen verify --store"));
}

#[test]
fn missing_object_errors() {
    let (_dir, store) = store();
    let h = Hash::of(b"nope");
    assert!(!store.contains(&h, Area::Public).unwrap());
    assert!(matches!(
        store.read(&h, Area::Public),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.check(&h, Area::Public),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.disk_size(&h, Area::Public),
        Err(StoreError::NotFound { .. })
    ));
    store.remove_all(&[(h, Area::Public)]).unwrap();
}

#[test]
fn store_and_batch_are_send_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
    assert_send_sync::<Batch<'_>>();
    assert_send_sync::<StoreError>();
}

#[test]
fn content_changed_between_passes_is_refused() {
    // The compress pass rehashes; a mismatch with the first pass means the
    // file changed, and nothing may be stored under the stale hash.
    let (dir, store) = store();
    let path = dir.path().join("moving");
    fs::write(&path, noise(10_000, 5)).unwrap();
    let stale = Hash::of(b"what the first pass saw");
    for size in [10_000, 9_000, 11_000] {
        let file = fs::File::open(&path).unwrap();
        match store.stage_file(&stale, size, file, &path, Area::Public, false) {
            Err(StoreError::Changed { path: p }) => assert_eq!(p, path),
            Err(other) => panic!("expected Changed, got {other:?}"),
            Ok(_) => panic!("expected Changed, got Ok"),
        }
    }
    assert_eq!(tmp_entries(&store), 0);
}

#[test]
fn small_frame_of_large_content_is_streamed() {
    // 9 MiB of one byte compresses to a frame of a few hundred bytes: the
    // in-memory fast path must hand it to the streaming reader, not refuse it.
    let (_dir, store) = store();
    let data = vec![7u8; 9 * 1024 * 1024];
    let hash = store.put_bytes(&data, Area::Public).unwrap();
    let stored = fs::metadata(store.object_path(&hash, Area::Public))
        .unwrap()
        .len();
    assert!(
        stored < 4096,
        "the frame should be small, it is {stored} bytes"
    );
    assert!(store.read(&hash, Area::Public).unwrap() == data);
    assert!(store.check(&hash, Area::Public).unwrap());
}

#[test]
fn frame_without_content_size_is_read() {
    // A frame whose header does not record the size (a streaming encoder
    // without a pledged size) is valid zstd and must still be readable.
    let (_dir, store) = store();
    let data = noise(3000, 4);
    let hash = store.put_bytes(&data, Area::Public).unwrap();
    let path = store.object_path(&hash, Area::Public);
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    enc.include_contentsize(false).unwrap();
    enc.write_all(&data).unwrap();
    let frame = enc.finish().unwrap();
    assert_eq!(
        zstd::zstd_safe::get_frame_content_size(&frame).unwrap(),
        None
    );
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(&path, frame).unwrap();
    assert_eq!(store.read(&hash, Area::Public).unwrap(), data);
}
