//! The journal through its public API: a durable round trip, and a torn,
//! foreign or garbage journal is an error that names the file, never a
//! panic and never a journal taken for what it is not.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sysgen_generations::db::Origin;
use sysgen_generations::journal::Journal;
use sysgen_generations::manifest::GenerationId;
use sysgen_generations::plan::Plan;
use sysgen_schema::EntryPath;
use sysgen_store::Hash;

fn journal() -> Journal {
    let plan = Plan {
        ledger_add: vec![(
            EntryPath::parse("/etc/motd").expect("path"),
            Origin::File {
                hash: Hash::of(b"motd"),
                mode: 0o644,
                uid: 0,
                gid: 0,
                xattrs: Default::default(),
            },
        )],
        ledger_remove: vec![(
            EntryPath::parse("/srv").expect("path"),
            Origin::Dir {
                mode: 0o755,
                uid: 0,
                gid: 0,
            },
        )],
        ..Plan::default()
    };
    Journal::new(
        "rollback",
        Some((3, GenerationId(Hash::of(b"from")))),
        4,
        GenerationId(Hash::of(b"to")),
        1_700_000_000,
        plan,
    )
}

fn value(j: &Journal) -> serde_json::Value {
    serde_json::to_value(j).expect("a journal serializes")
}

struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("journal.json")
    }

    fn names(&self) -> Vec<String> {
        let mut n: Vec<String> = std::fs::read_dir(self.dir.path())
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    }
}

/// Reading `bytes` as a journal must fail with an error naming the file.
#[track_caller]
fn refused(path: &Path, bytes: &[u8]) -> String {
    std::fs::write(path, bytes).expect("write");
    match Journal::read(path) {
        Ok(j) => panic!(
            "{:?} read as a journal: {j:?}",
            String::from_utf8_lossy(bytes)
        ),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.starts_with(&path.display().to_string()), "{msg}");
            msg
        }
    }
}

#[test]
fn a_written_journal_reads_back_the_same_and_is_root_only() {
    let s = Scratch::new();
    let j = journal();
    j.write(&s.path()).expect("write");
    let back = Journal::read(&s.path()).expect("read").expect("present");
    assert_eq!(value(&back), value(&j));
    let mode = std::fs::metadata(s.path())
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "it holds hashes of secret files");
    assert_eq!(s.names(), ["journal.json"], "no temporary file is left");

    // Written again (recover rewrites nothing, but a new switch may).
    let mut j2 = journal();
    j2.to_number = 5;
    j2.write(&s.path()).expect("write again");
    let back = Journal::read(&s.path()).expect("read").expect("present");
    assert_eq!(back.to_number, 5);

    Journal::remove(&s.path()).expect("remove");
    assert!(Journal::read(&s.path()).expect("read").is_none());
    Journal::remove(&s.path()).expect("removing an absent journal is fine");
    assert!(s.names().is_empty());
}

#[test]
fn every_torn_prefix_of_a_journal_is_an_error() {
    let s = Scratch::new();
    journal().write(&s.path()).expect("write");
    let whole = std::fs::read(s.path()).expect("read");
    for n in 0..whole.len() {
        let msg = refused(&s.path(), &whole[..n]);
        assert!(msg.contains("unreadable journal"), "prefix {n}: {msg}");
    }
}

#[test]
fn garbage_a_foreign_version_and_unknown_fields_are_errors() {
    let s = Scratch::new();
    let path = s.path();
    for bytes in [
        &b"\0\0\0\0"[..],
        b"\xff\xfe{}",
        b"null",
        b"[]",
        b"{}",
        b"{\"version\": 1}",
        b"\"journal\"",
    ] {
        refused(&path, bytes);
    }
    // A journal another sysgen wrote is named by its version, whatever the
    // rest of it looks like.
    let msg = refused(&path, b"{\"version\": 1, \"plan\": \"old\"}");
    assert!(msg.contains("journal version 1 is not 2"), "{msg}");
    let mut v = value(&journal());
    v["version"] = 3.into();
    let msg = refused(&path, v.to_string().as_bytes());
    assert!(msg.contains("journal version 3 is not 2"), "{msg}");
    let mut v = value(&journal());
    v["extra"] = true.into();
    let msg = refused(&path, v.to_string().as_bytes());
    assert!(msg.contains("unknown field"), "{msg}");
    let mut v = value(&journal());
    v["to"] = "not a hash".into();
    refused(&path, v.to_string().as_bytes());
    let mut v = value(&journal());
    v["plan"]["ledger_add"][0][0] = "relative/path".into();
    refused(&path, v.to_string().as_bytes());
}

#[test]
fn a_journal_that_is_a_directory_is_an_error() {
    let s = Scratch::new();
    std::fs::create_dir(s.path()).expect("mkdir");
    let e = Journal::read(&s.path()).expect_err("a directory is no journal");
    assert!(
        e.to_string().starts_with(&s.path().display().to_string()),
        "{e}"
    );
}
