use std::fs::{self, File};
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rayon::prelude::*;

use super::*;

mod packs;
mod plain;
mod reads;

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
fn every_byte_value_is_written_as_blake3_writes_it() {
    // The digits come from a table: each of the 256 byte values once,
    // against blake3's own encoder, in every format that writes them.
    for chunk in (0u8..=255).collect::<Vec<_>>().chunks_exact(32) {
        let bytes: [u8; 32] = chunk.try_into().unwrap();
        let h = Hash::from_bytes(bytes);
        let want = blake3::Hash::from_bytes(bytes).to_hex();
        assert_eq!(h.to_hex(), want.as_str());
        assert_eq!(h.to_string(), want.as_str());
        assert_eq!(serde_json::to_string(&h).unwrap(), format!("\"{want}\""));
        assert_eq!(Hash::from_hex(want.as_str()).unwrap(), h);
    }
}

#[test]
fn hashes_order_as_their_bytes() {
    // The pack index on disk and gc's merge-walk rely on byte order: hashes
    // that share leading words, and differ in each word in turn.
    let mut bytes: Vec<[u8; 32]> = (0u8..64).map(|i| *Hash::of(&[i]).as_bytes()).collect();
    for word in 0..4 {
        for (lo, hi) in [(0x00, 0xff), (0x7f, 0x80), (0x01, 0x00)] {
            let mut b = [0x42u8; 32];
            b[word * 8 + 7] = lo;
            bytes.push(b);
            b[word * 8 + 7] = hi;
            bytes.push(b);
            b[word * 8] = hi;
            bytes.push(b);
        }
    }
    for a in &bytes {
        for b in &bytes {
            let (ha, hb) = (Hash::from_bytes(*a), Hash::from_bytes(*b));
            assert_eq!(ha.cmp(&hb), a.cmp(b), "{ha:?} {hb:?}");
            assert_eq!(ha.partial_cmp(&hb), Some(a.cmp(b)));
        }
    }
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

/// A batch of many small objects, some put twice and some in both areas:
/// each is packed once per area, the outcome counts each once, and every
/// pack is named by the BLAKE3 of its index's bytes (as the index was when
/// written whole, before it was streamed).
#[test]
fn a_large_batch_packs_each_object_once_and_names_packs_by_their_index() {
    let (_dir, store) = store();
    let batch = store.batch();
    let mut raw = 0;
    for i in 0..5000u64 {
        let bytes = format!("object {i}: some configuration-like line\n").into_bytes();
        raw += bytes.len() as u64;
        batch.put_bytes(&bytes, Area::Public).unwrap();
        // Every tenth again, and in the other area.
        if i % 10 == 0 {
            batch.put_bytes(&bytes, Area::Public).unwrap();
            batch.put_bytes(&bytes, Area::Secret).unwrap();
            raw += bytes.len() as u64;
        }
    }
    let outcome = batch.commit().unwrap();
    assert_eq!(outcome.objects_written, 5500);
    assert_eq!(outcome.bytes_in, raw);
    let mut stored = 0;
    for area in [Area::Public, Area::Secret] {
        for path in pack_files(&store, area) {
            let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
            let bytes = fs::read(&path).unwrap();
            if path.extension().is_some_and(|e| e == "idx") {
                assert_eq!(blake3::hash(&bytes).to_hex()[..32], stem);
            } else {
                stored += bytes.len() as u64 - 8;
            }
        }
    }
    assert_eq!(outcome.bytes_stored, stored);
    assert_eq!(store.list(Area::Public).unwrap().len(), 5000);
    assert_eq!(store.list(Area::Secret).unwrap().len(), 500);
    let probe = b"object 4321: some configuration-like line\n";
    assert_eq!(store.read(&Hash::of(probe), Area::Public).unwrap(), probe);
}
