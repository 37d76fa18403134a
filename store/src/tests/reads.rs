//! Reads and writes: concurrency, streaming, corruption, missing objects.

use super::*;

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
        match store.stage_file(&stale, size, &file, &path, Area::Public, false) {
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

#[test]
fn a_stale_expected_size_only_changes_how_a_file_is_read() {
    // The caller's stat may be older than the file: one that grew past the
    // small-file limit is streamed, one that shrank is read whole, and
    // either way what is stored is what was read.
    let (dir, store) = store();
    let big = noise(SMALL_FILE_LIMIT as usize + 4096, 21);
    let small = noise(5000, 22);
    let (grew, shrank) = (dir.path().join("grew"), dir.path().join("shrank"));
    fs::write(&grew, &big).unwrap();
    fs::write(&shrank, &small).unwrap();
    let batch = store.batch();
    let (hash, size, after) = batch.put_file_stat(&grew, Area::Public, 10).unwrap();
    assert_eq!((hash, size), (Hash::of(&big), big.len() as u64));
    assert_eq!(after.len(), size);
    let stale = 3 * SMALL_FILE_LIMIT;
    let (hash, size, after) = batch.put_file_stat(&shrank, Area::Public, stale).unwrap();
    assert_eq!((hash, size), (Hash::of(&small), small.len() as u64));
    assert_eq!(after.len(), size);
    assert_eq!(batch.commit().unwrap().objects_written, 2);
    assert!(store.read(&Hash::of(&big), Area::Public).unwrap() == big);
    assert_eq!(store.read(&Hash::of(&small), Area::Public).unwrap(), small);
    assert_eq!(tmp_entries(&store), 0);
}

#[test]
fn a_large_file_already_stored_is_read_once_and_not_kept() {
    // Hashed while it is compressed: content found stored once hashed
    // leaves neither a temp file nor a second object.
    let (dir, store) = store();
    let data = noise(2 * SMALL_FILE_LIMIT as usize, 23);
    let path = dir.path().join("large");
    fs::write(&path, &data).unwrap();
    let (hash, size) = store.put_file(&path, Area::Public).unwrap();
    let batch = store.batch();
    assert_eq!(batch.put_file(&path, Area::Public).unwrap(), (hash, size));
    assert_eq!(tmp_entries(&store), 0);
    // Twice into the other area in one batch: the second copy is dropped.
    assert_eq!(batch.put_file(&path, Area::Secret).unwrap(), (hash, size));
    assert_eq!(batch.put_file(&path, Area::Secret).unwrap(), (hash, size));
    assert_eq!(tmp_entries(&store), 1);
    let outcome = batch.commit().unwrap();
    assert_eq!((outcome.objects_written, outcome.bytes_in), (1, size));
    assert_eq!(tmp_entries(&store), 0);
    assert!(store.read(&hash, Area::Secret).unwrap() == data);
}

#[test]
fn a_fanout_made_after_the_batch_looked_costs_a_second_copy_only() {
    // A batch lists the fan-out directories once: an object stored as a
    // file of its own since, by a one-off put, is not looked up, and the
    // batch packs it again. Readers see one object, as after a crash
    // that left an object both packed and loose.
    let (_dir, store) = store();
    let batch = store.batch();
    batch.put_bytes(b"first", Area::Public).unwrap();
    let data = noise(3000, 24);
    let hash = store.put_bytes(&data, Area::Public).unwrap();
    assert!(store.object_path(&hash, Area::Public).exists());
    assert_eq!(batch.put_bytes(&data, Area::Public).unwrap(), hash);
    assert_eq!(batch.commit().unwrap().objects_written, 2);
    let listed = store.list(Area::Public).unwrap();
    assert_eq!(listed.iter().filter(|h| **h == hash).count(), 1);
    assert_eq!(store.read(&hash, Area::Public).unwrap(), data);
    assert!(store.check(&hash, Area::Public).unwrap());
    // A later batch, which finds the fan-out directory, sees it loose.
    let batch = store.batch();
    assert_eq!(batch.put_bytes(&data, Area::Public).unwrap(), hash);
    assert_eq!(batch.commit().unwrap().objects_written, 0);
}

#[test]
fn fanouts_are_the_names_of_two_lowercase_hex_digits() {
    let (_dir, store) = store();
    let objects = store.dir().join("objects");
    for d in ["0a", "ff", "AB", "g0", "abc"] {
        fs::create_dir(objects.join(d)).unwrap();
    }
    // Any such name counts, whatever it is: looking it up refuses it.
    fs::write(objects.join("7e"), b"").unwrap();
    let found = store.fanouts(Area::Public).unwrap();
    let first = |b: u8| {
        let mut bytes = [0u8; 32];
        bytes[0] = b;
        Hash::from_bytes(bytes)
    };
    let have: Vec<u8> = (0..=255u8).filter(|b| found.has(&first(*b))).collect();
    assert_eq!(have, [0x0a, 0x7e, 0xff]);
    assert!(!store.fanouts(Area::Secret).unwrap().has(&first(0x0a)));
}

#[test]
fn a_file_written_between_two_stats_is_changed() {
    // A large file is read once: its stats before and after the read are
    // what tells that it changed meanwhile.
    let (dir, _store) = store();
    let path = dir.path().join("f");
    fs::write(&path, b"one").unwrap();
    let before = fs::metadata(&path).unwrap();
    assert!(unchanged(&before, &fs::metadata(&path).unwrap()));
    let file = fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(std::time::SystemTime::UNIX_EPOCH)
        .unwrap();
    assert!(!unchanged(&before, &fs::metadata(&path).unwrap()));
}
