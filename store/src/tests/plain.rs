//! The plain format: raw objects, no packs, chosen once and kept.

use super::*;

/// A plain store, as a store made on a filesystem that clones would be: the
/// format file is there before the store is first opened.
fn plain_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let at = dir.path().join("store");
    fs::create_dir_all(at.join("tmp")).unwrap();
    format::write(&at, &at.join("tmp"), Format::Plain).unwrap();
    let store = Store::open(&at).unwrap();
    assert_eq!(store.format(), Format::Plain);
    (dir, store)
}

fn loose_files(store: &Store, area: Area) -> usize {
    let dir = store.area_dir(area);
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != "pack")
        .map(|e| fs::read_dir(e.path()).unwrap().count())
        .sum()
}

#[test]
fn a_plain_store_keeps_every_object_raw_in_a_file_of_its_own() {
    let (_d, store) = plain_store();
    let one = store.put_bytes(b"one-off", Area::Public).unwrap();
    let big = noise(3 * SMALL_FILE_LIMIT as usize, 7);
    let batch = store.batch();
    let small: Vec<Vec<u8>> = (0..50u64).map(|i| noise(100 + i as usize, i)).collect();
    let mut hashes: Vec<Hash> = small
        .par_iter()
        .map(|b| batch.put_bytes(b, Area::Public).unwrap())
        .collect();
    hashes.push(batch.put_bytes(&big, Area::Public).unwrap());
    let secret = batch.put_bytes(b"a secret", Area::Secret).unwrap();
    batch.commit().unwrap();
    // No packs: each object is its file, holding exactly its bytes.
    assert!(
        fs::read_dir(store.pack_dir(Area::Public)).is_err()
            || fs::read_dir(store.pack_dir(Area::Public)).unwrap().count() == 0
    );
    assert_eq!(loose_files(&store, Area::Public), 52);
    for (h, b) in hashes.iter().zip(small.iter().chain([&big])) {
        assert_eq!(&fs::read(store.object_path(h, Area::Public)).unwrap(), b);
        assert_eq!(&store.read(h, Area::Public).unwrap(), b);
        assert!(store.check(h, Area::Public).unwrap());
        assert_eq!(store.disk_size(h, Area::Public).unwrap(), b.len() as u64);
    }
    assert_eq!(
        fs::read(store.object_path(&one, Area::Public)).unwrap(),
        b"one-off"
    );
    assert_eq!(mode(&store.object_path(&secret, Area::Secret)), 0o600);
    assert_eq!(mode(&store.object_path(&one, Area::Public)), 0o444);
    let mut all = hashes.clone();
    all.push(one);
    all.sort_unstable();
    assert_eq!(store.list(Area::Public).unwrap(), all);
    // Reopened: still plain; gc removes objects.
    let store = Store::open(store.dir()).unwrap();
    assert_eq!(store.format(), Format::Plain);
    store.remove_all(&[(one, Area::Public)]).unwrap();
    assert!(!store.contains(&one, Area::Public).unwrap());
    assert_eq!(loose_files(&store, Area::Public), 51);
}

#[test]
fn a_stored_large_file_is_raw_in_a_plain_store() {
    let (d, store) = plain_store();
    let content = noise(2 * SMALL_FILE_LIMIT as usize + 3, 3);
    let src = d.path().join("src");
    fs::write(&src, &content).unwrap();
    let (h, size) = store.put_file(&src, Area::Public).unwrap();
    assert_eq!(size, content.len() as u64);
    assert_eq!(
        fs::read(store.object_path(&h, Area::Public)).unwrap(),
        content
    );
}

#[test]
fn clone_into_copies_where_the_filesystem_cannot_clone_and_refuses_damage() {
    let (d, store) = plain_store();
    for len in [
        10,
        CLONE_MIN as usize + 1,
        200_000,
        2 * SMALL_FILE_LIMIT as usize,
    ] {
        let content = noise(len, len as u64);
        let h = store.put_bytes(&content, Area::Public).unwrap();
        let dest_path = d.path().join(format!("dest-{len}"));
        let mut dest = File::create(&dest_path).unwrap();
        assert_eq!(
            store.clone_into(&h, Area::Public, &mut dest).unwrap(),
            len as u64
        );
        drop(dest);
        assert_eq!(fs::read(&dest_path).unwrap(), content, "{len}");

        corrupt(&store, &h, Area::Public, len / 2);
        assert!(!store.check(&h, Area::Public).unwrap());
        let bad_path = d.path().join(format!("bad-{len}"));
        let mut bad = File::create(&bad_path).unwrap();
        assert!(matches!(
            store.clone_into(&h, Area::Public, &mut bad),
            Err(StoreError::Corrupt { .. })
        ));
        // Refused before a byte was written.
        assert_eq!(fs::metadata(&bad_path).unwrap().len(), 0, "{len}");
    }
    let mut dest = File::create(d.path().join("missing")).unwrap();
    assert!(matches!(
        store.clone_into(&Hash::of(b"absent"), Area::Public, &mut dest),
        Err(StoreError::NotFound { .. })
    ));
}

#[test]
fn a_store_that_cannot_clone_onto_the_root_is_zstd_and_never_changes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir(&root).unwrap();
    let root_fd = File::open(&root).unwrap();
    // A scratch directory on an ordinary filesystem (ext4, tmpfs): no clone.
    let at = dir.path().join("store");
    let store = Store::open_for_root(&at, root_fd.as_fd()).unwrap();
    if store.format() == Format::Plain {
        eprintln!("the scratch directory clones: nothing to check here");
        return;
    }
    assert!(!at.join(format::FILE).exists());
    assert_eq!(tmp_entries(&store), 0, "the probe left its file");
    // A zstd store with objects stays zstd, and so does one without.
    store.put_bytes(b"x", Area::Public).unwrap();
    let store = Store::open_for_root(&at, root_fd.as_fd()).unwrap();
    assert_eq!(store.format(), Format::Zstd);
    assert!(!at.join(format::FILE).exists());
}

#[test]
fn an_unknown_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let at = dir.path().join("store");
    fs::create_dir_all(&at).unwrap();
    fs::write(at.join(format::FILE), "lz4\n").unwrap();
    assert!(matches!(
        Store::open(&at),
        Err(StoreError::Untrusted { .. })
    ));
    assert!(matches!(
        Store::open_existing(&at),
        Err(StoreError::Untrusted { .. })
    ));
}
