//! Objects zstd cannot shrink are stored as raw-block frames (the `raw`
//! module): put through every write path, read back through every read path.

use std::fs;

use super::*;

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

fn text(len: usize) -> Vec<u8> {
    b"key = value # a line of configuration\n"
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

/// Each case: content, and whether it must be stored raw.
fn cases() -> Vec<(&'static str, Vec<u8>, bool)> {
    let mut header_then_noise = text(512);
    header_then_noise.extend(noise(3 << 20, 7));
    let mut noise_then_text = noise(1 << 20, 8);
    noise_then_text.extend(text(2 << 20));
    vec![
        ("empty", Vec::new(), true),
        ("tiny", b"x".to_vec(), true),
        ("small noise", noise(3000, 1), true),
        ("small text", text(3000), false),
        ("packed noise", noise(700_000, 2), true),
        ("packed text", text(700_000), false),
        ("large noise", noise(2_500_000, 3), true),
        ("large text", text(2_500_000), false),
        // The samples at the middle and the end see what the start hides.
        ("a short text header, then noise", header_then_noise, true),
        ("noise, then text", noise_then_text, false),
    ]
}

#[test]
fn incompressible_objects_are_stored_raw_and_read_back_whole() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("store")).expect("store");
    let batch = store.batch();
    let mut hashes = Vec::new();
    for (i, (what, data, _)) in cases().into_iter().enumerate() {
        let path = dir.path().join(format!("f{i}"));
        fs::write(&path, &data).expect("source");
        let (hash, size) = batch.put_file(&path, Area::Public).expect(what);
        assert_eq!((hash, size), (Hash::of(&data), data.len() as u64), "{what}");
        // The one-off put takes the other write path, into the other area.
        assert_eq!(store.put_file(&path, Area::Secret).expect(what).0, hash);
        hashes.push(hash);
    }
    batch.commit().expect("commit");
    let store = Store::open(store.dir()).expect("reopen");
    for ((what, data, raw), hash) in cases().into_iter().zip(hashes) {
        for area in [Area::Public, Area::Secret] {
            let stored = store.disk_size(&hash, area).expect(what);
            let raw_len = raw::frame_len(data.len()) as u64;
            if raw {
                assert_eq!(stored, raw_len, "{what} in {area:?}");
            } else {
                assert!(stored < raw_len / 2, "{what} in {area:?}: {stored}");
            }
            assert!(store.read(&hash, area).expect(what) == data, "{what}");
            let mut out = Vec::new();
            store.copy_to(&hash, area, &mut out).expect(what);
            assert!(out == data, "{what}");
            assert!(store.check(&hash, area).expect(what), "{what}");
        }
    }
}

#[test]
fn a_flipped_byte_in_a_raw_object_is_corruption() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("store")).expect("store");
    let data = noise(2_000_000, 9);
    let hash = store.put_bytes(&data, Area::Public).expect("put");
    let path = store.object_path(&hash, Area::Public);
    let mut bytes = fs::read(&path).expect("object");
    bytes[1_000_000] ^= 0x55;
    fs::remove_file(&path).expect("remove");
    fs::write(&path, bytes).expect("write back");
    assert!(!store.check(&hash, Area::Public).expect("check"));
    assert!(matches!(
        store.read(&hash, Area::Public),
        Err(StoreError::Corrupt { .. })
    ));
}
