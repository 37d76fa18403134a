//! Unit tests of the parts that need no state: keys, signatures, the
//! file transport.

use crate::file::FileTransport;
use crate::layout::{self, Key};
use crate::sign::{self, RefBody, SignedRef};
use crate::{Swap, Transport};

fn body(seq: u64) -> RefBody {
    RefBody {
        name: "hosts/web1".into(),
        seq,
        time: 0,
        generation: "00".repeat(32),
        recipient: None,
        packages: None,
        history: Vec::new(),
    }
}

#[test]
fn keys_are_checked() {
    for bad in [
        "", "/a", "a//b", "../a", "a/..", ".tmp", "a/.lock", "a b", "a/\u{e9}",
    ] {
        assert!(layout::check_key(bad).is_err(), "{bad:?} accepted");
    }
    for good in ["hosts/web1", "objects/ab", "reports/h-1.example.com"] {
        layout::check_key(good).unwrap();
    }
    assert!(layout::ref_key("tags/x").is_err());
    assert!(layout::ref_key("hosts/a/b").is_err());
    assert_eq!(layout::ref_key("roles/db").unwrap(), "roles/db");
    assert!(Key::parse("objects/zz").is_err());
    assert!(Key::parse("nodes/ab/cd").is_err());
    assert_eq!(Key::parse("hosts/x").unwrap(), Key::Other);
}

#[test]
fn a_signed_ref_verifies_and_any_change_does_not() {
    let key = sign::Key::generate().unwrap();
    let trusted = vec![key.public()];
    let signed = key.sign_ref(body(3)).unwrap();
    let bytes = signed.encode().unwrap();
    let back = SignedRef::decode("r", "hosts/web1", &bytes).unwrap();
    back.verify("r", "hosts/web1", &trusted).unwrap();

    let mut forged = back.clone();
    forged.body.seq = 4;
    let e = forged.verify("r", "hosts/web1", &trusted).unwrap_err();
    assert!(e.to_string().contains("bad signature"), "{e}");
    assert!(e.is_invalid_input());

    let other = sign::Key::generate().unwrap();
    let e = back
        .verify("r", "hosts/web1", &[other.public()])
        .unwrap_err();
    assert!(e.to_string().contains("does not trust"), "{e}");

    let unsigned = br#"{"name":"hosts/web1","seq":1,"time":0,"generation":"00"}"#;
    let e = SignedRef::decode("r", "hosts/web1", unsigned).unwrap_err();
    assert!(e.to_string().contains("unsigned"), "{e}");
}

#[test]
fn the_file_transport_puts_atomically_and_swaps_only_from_what_it_expects() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}/r", dir.path().display());
    let t = FileTransport::open(&url, &dir.path().join("r"), true).unwrap();
    t.put("objects/ab", b"one").unwrap();
    // Immutable: a second put is a no-op.
    t.put("objects/ab", b"two").unwrap();
    assert_eq!(t.get("objects/ab").unwrap().as_deref(), Some(&b"one"[..]));
    assert_eq!(t.get("objects/cd").unwrap(), None);
    assert_eq!(
        t.has(&["objects/ab".into(), "objects/cd".into(), "nodes/x".into()])
            .unwrap(),
        vec![true, false, false]
    );
    assert_eq!(t.swap("hosts/a", None, b"v1").unwrap(), Swap::Done);
    assert_eq!(
        t.swap("hosts/a", None, b"v2").unwrap(),
        Swap::Lost(Some(b"v1".to_vec()))
    );
    assert_eq!(t.swap("hosts/a", Some(b"v1"), b"v2").unwrap(), Swap::Done);
    assert_eq!(t.list("hosts/").unwrap(), vec!["hosts/a".to_owned()]);
    assert_eq!(
        t.list("").unwrap(),
        vec!["hosts/a".to_owned(), "objects/ab".to_owned()]
    );
    // A lock left by a killed swap is reported, naming it.
    std::fs::write(dir.path().join("r/hosts/.a.lock"), "1\n").unwrap();
    let e = t.swap("hosts/a", Some(b"v2"), b"v3").unwrap_err();
    assert!(e.to_string().contains(".a.lock"), "{e}");
    // A symlink planted in the remote is refused, never followed.
    std::os::unix::fs::symlink(dir.path(), dir.path().join("r/roles")).unwrap();
    assert!(t.get("roles/x").is_err());
    assert!(t.put("roles/x", b"x").is_err());
    assert!(!dir.path().join("x").exists());
}
