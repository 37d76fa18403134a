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
        assert!(store.contains(&hash, area));
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
    assert!(!store.contains(&hash, Area::Public));
    assert!(matches!(
        store.read(&hash, Area::Public),
        Err(StoreError::NotFound { hash: h }) if h == hash
    ));
    store.put_bytes(b"secret", Area::Public).unwrap();
    store.remove(&hash, Area::Secret).unwrap();
    assert!(store.contains(&hash, Area::Public));
    assert!(!store.contains(&hash, Area::Secret));
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
    assert_eq!(mode(&store.object_path(&b_pub, Area::Public)), 0o444);
    assert_eq!(mode(&store.object_path(&b_sec, Area::Secret)), 0o600);
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
    // One temp per distinct (content, area).
    assert_eq!(tmp_entries(&store), 2);
    let outcome = batch.commit().unwrap();
    assert_eq!(outcome.objects_written, 2);
    assert_eq!(outcome.bytes_in, 2);

    let batch = store.batch();
    batch.put_bytes(b"a", Area::Public).unwrap();
    batch.put_bytes(b"a", Area::Secret).unwrap();
    assert_eq!(tmp_entries(&store), 0);
    assert_eq!(batch.commit().unwrap(), BatchOutcome::default());

    // A durable put of present content leaves the object untouched.
    let path = store.object_path(&a, Area::Public);
    let before = fs::metadata(&path).unwrap().modified().unwrap();
    store.put_bytes(b"a", Area::Public).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), before);
}

#[test]
fn batch_commit_then_list() {
    let (_dir, store) = store();
    let batch = store.batch();
    let mut expected: Vec<Hash> = (0..50u32)
        .map(|i| batch.put_bytes(&i.to_le_bytes(), Area::Public).unwrap())
        .collect();
    // Not visible before commit.
    assert!(!store.contains(&expected[0], Area::Public));
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
    assert!(!store.contains(&h, Area::Secret));
    assert!(!store.contains(&big_hash, Area::Public));
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
            store.remove(&hash, area).unwrap();
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
    assert!(!store.contains(&h, Area::Public));
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
    store.remove(&h, Area::Public).unwrap();
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
