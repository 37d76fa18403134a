//! The state database through its public API, on real SQLite files: opening
//! and migrating, manifests and nodes, generations and the append-only
//! activation history, the ledger, saved copies, the stat cache and gc's
//! `collect`. A damaged database is an error, never a panic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::json;
use sysgen_generations::db::{Activation, CacheRow, Db, ManifestInfo, Origin, Saved};
use sysgen_generations::manifest::{
    Entry, GenerationId, Manifest, Node, NodeEntry, NodeId, NodeSource,
};
use sysgen_schema::EntryPath;
use sysgen_store::{Hash, HashKeySet};

fn p(s: &str) -> EntryPath {
    EntryPath::parse(s).expect("a valid test path")
}

struct Scratch {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn scratch() -> Scratch {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sysgen.db");
    Scratch { _dir: dir, path }
}

fn user_version(path: &Path) -> i64 {
    rusqlite::Connection::open(path)
        .and_then(|c| c.query_row("PRAGMA user_version", [], |r| r.get(0)))
        .expect("read user_version")
}

fn tables(path: &Path) -> Vec<String> {
    let c = rusqlite::Connection::open(path).expect("open");
    let mut st = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .expect("prepare");
    st.query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

/// A manifest whose root is `root`, read the way the database reads one
/// (so new optional sections do not change this test).
fn manifest(root: NodeId, host: &str) -> Manifest {
    serde_json::from_value(json!({ "sysgen": 1, "host": host, "root": root })).expect("a manifest")
}

fn info(config: &str) -> ManifestInfo {
    ManifestInfo {
        config: Some(config.into()),
        entries: 3,
        bytes: 42,
        built_at: 1_000,
    }
}

/// A node with one file, `name`, and its encoding.
fn node(name: &str) -> (NodeId, Node, Vec<u8>) {
    let node = Node {
        entries: vec![NodeEntry {
            name: name.into(),
            entry: Entry::File {
                hash: Hash::of(name.as_bytes()),
                size: name.len() as u64,
                mode: 0o644,
                uid: None,
                gid: None,
                secret: false,
                xattrs: Default::default(),
                link: None,
            },
            tree: None,
        }],
    };
    let body = node.encode().expect("encodes");
    (Node::id_of(&body), node, body)
}

fn insert(db: &mut Db, nodes: &[&(NodeId, Node, Vec<u8>)]) {
    db.insert_nodes(|put| {
        for (id, _, body) in nodes {
            put(*id, body.clone())?;
        }
        Ok(())
    })
    .expect("insert nodes");
}

fn activate(db: &mut Db, target: Option<(u64, GenerationId)>, at: i64, how: &str) {
    db.activate(&Activation {
        target,
        at,
        how,
        ledger_add: &[],
        ledger_remove: &[],
    })
    .expect("activate");
}

#[test]
fn a_new_file_and_an_empty_file_are_migrated_to_the_full_schema_once() {
    let s = scratch();
    drop(Db::open(&s.path).expect("open a new database"));
    let version = user_version(&s.path);
    assert!(version >= 5, "every migration ran: {version}");
    let want = [
        "activations",
        "dataset_snapshots",
        "datasets",
        "generations",
        "ledger",
        "manifests",
        "nodes",
        "package_files",
        "package_owned",
        "saved",
        "stat_cache",
        "unit_origins",
    ];
    let got = tables(&s.path);
    for t in want {
        assert!(got.iter().any(|g| g == t), "{t} missing from {got:?}");
    }
    // Opening again runs nothing twice (a re-run migration would fail on
    // CREATE TABLE).
    drop(Db::open(&s.path).expect("reopen"));
    assert_eq!(user_version(&s.path), version);

    // State::open creates sysgen.db empty before the first Db::open.
    let e = scratch();
    std::fs::write(&e.path, b"").expect("empty file");
    drop(Db::open(&e.path).expect("open an empty file"));
    assert_eq!(user_version(&e.path), version);
    assert_eq!(tables(&e.path), got);
}

#[test]
fn a_newer_schema_and_a_file_that_is_not_sqlite_are_errors() {
    let s = scratch();
    drop(Db::open(&s.path).expect("open"));
    let newer = user_version(&s.path) + 1;
    rusqlite::Connection::open(&s.path)
        .and_then(|c| c.execute_batch(&format!("PRAGMA user_version = {newer}")))
        .expect("set a newer version");
    let e = Db::open(&s.path).err().expect("a newer schema is refused");
    assert!(
        e.to_string().contains("newer than this sysgen knows"),
        "{e}"
    );

    let g = scratch();
    std::fs::write(&g.path, vec![0x5a; 8192]).expect("garbage");
    assert!(Db::open(&g.path).is_err(), "garbage is an error");
}

#[test]
fn manifests_and_nodes_round_trip_and_are_checked_against_their_ids() {
    let s = scratch();
    let mut db = Db::open(&s.path).expect("open");
    let a = node("a");
    let b = node("b");
    insert(&mut db, &[&a, &b, &a]);
    assert_eq!(db.node(&a.0).expect("node a"), a.1);
    assert_eq!(db.node(&b.0).expect("node b"), b.1);
    let missing = node("missing").0;
    assert!(matches!(
        db.node(&missing),
        Err(sysgen_generations::Error::MissingNode(id)) if id == missing.0
    ));

    let m1 = manifest(a.0, "one");
    let m2 = manifest(b.0, "two");
    let id1 = db.put_manifest(&m1, &info("/cfg/one.json")).expect("put");
    let id2 = db.put_manifest(&m2, &info("/cfg/two.json")).expect("put");
    assert_eq!(id1, m1.id().expect("an id"));
    // The same manifest again is the same row.
    assert_eq!(
        db.put_manifest(&m1, &info("/other.json")).expect("again"),
        id1
    );
    let (got, got_info) = db.manifest(&id1).expect("read").expect("present");
    assert_eq!((got, got_info), (m1, info("/cfg/one.json")));
    assert!(
        db.manifest(&GenerationId(Hash::of(b"none")))
            .expect("read")
            .is_none()
    );
    let mut all = db.all_manifest_ids().expect("ids");
    all.sort();
    let mut want = vec![id1, id2];
    want.sort();
    assert_eq!(all, want);
    let prefix = &id2.0.to_hex()[..10];
    assert_eq!(db.manifests_with_prefix(prefix).expect("prefix"), vec![id2]);
    drop(db);

    // Tampered rows are reported, not trusted.
    let c = rusqlite::Connection::open(&s.path).expect("open");
    c.execute(
        "UPDATE nodes SET body = ?1 WHERE id = ?2",
        rusqlite::params![
            b.2.clone().into_iter().rev().collect::<Vec<u8>>(),
            a.0.0.as_bytes().as_slice()
        ],
    )
    .expect("tamper with a node");
    c.execute(
        "UPDATE manifests SET body = ?1 WHERE id = ?2",
        rusqlite::params![m2.encode().expect("encodes"), id1.0.as_bytes().as_slice()],
    )
    .expect("swap a manifest body");
    c.execute(
        "UPDATE manifests SET body = ?1 WHERE id = ?2",
        rusqlite::params![b"{not json".to_vec(), id2.0.as_bytes().as_slice()],
    )
    .expect("break a manifest body");
    drop(c);
    let db = Db::open(&s.path).expect("open");
    let e = db
        .node(&a.0)
        .expect_err("a node that does not match its id");
    assert!(e.to_string().contains("does not match its id"), "{e}");
    let e = db
        .manifest(&id1)
        .expect_err("a manifest that does not match its id");
    assert!(e.to_string().contains("does not match its id"), "{e}");
    let e = db.manifest(&id2).expect_err("an unreadable manifest");
    assert!(e.to_string().contains(&format!("manifest {id2}")), "{e}");
}

#[test]
fn activations_are_an_append_only_history() {
    let s = scratch();
    let mut db = Db::open(&s.path).expect("open");
    let g1 = GenerationId(Hash::of(b"g1"));
    let g2 = GenerationId(Hash::of(b"g2"));
    assert_eq!(db.next_number().unwrap(), 1);
    assert!(db.active().unwrap().is_none());
    assert_eq!(db.previous().unwrap(), None);

    activate(&mut db, Some((1, g1)), 100, "switch");
    activate(&mut db, Some((2, g2)), 200, "switch");
    assert_eq!(db.next_number().unwrap(), 3);
    assert_eq!(db.active().unwrap().map(|g| g.number), Some(2));
    assert_eq!(db.active_since().unwrap(), Some(200));
    assert_eq!(db.previous().unwrap(), Some(1));
    // A rollback adds an activation; the generation row keeps its date.
    activate(&mut db, Some((1, g1)), 300, "rollback");
    let row = db.active().unwrap().expect("active");
    assert_eq!((row.number, row.id, row.created_at), (1, g1, 100));
    assert_eq!(db.active_since().unwrap(), Some(300));
    assert_eq!(db.previous().unwrap(), Some(2));
    assert_eq!(db.generation_of(&g2).unwrap().map(|g| g.number), Some(2));
    assert_eq!(db.generation(2).unwrap().map(|g| g.id), Some(g2));
    assert!(db.generation(3).unwrap().is_none());

    db.set_pinned(2, true).unwrap();
    let rows = db.generations().unwrap();
    let summary: Vec<_> = rows
        .iter()
        .map(|g| (g.number, g.pinned, g.collected_at))
        .collect();
    assert_eq!(summary, [(1, false, None), (2, true, None)]);

    // Undoing the first switch: nothing active, and 0 is never "previous".
    activate(&mut db, None, 400, "recover");
    assert!(db.active().unwrap().is_none());
    assert_eq!(db.previous().unwrap(), Some(1));
    assert_eq!(db.next_number().unwrap(), 3);
    let c = rusqlite::Connection::open(&s.path).unwrap();
    let history: Vec<(i64, i64, String)> = c
        .prepare("SELECT number, at, how FROM activations ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        history,
        [
            (1, 100, "switch".to_owned()),
            (2, 200, "switch".to_owned()),
            (1, 300, "rollback".to_owned()),
            (0, 400, "recover".to_owned()),
        ]
    );
}

#[test]
fn the_ledger_changes_only_with_an_activation() {
    let s = scratch();
    let mut db = Db::open(&s.path).expect("open");
    let g = GenerationId(Hash::of(b"g"));
    let motd = Origin::File {
        hash: Hash::of(b"admin's motd"),
        mode: 0o644,
        uid: 0,
        gid: 0,
        xattrs: Default::default(),
    };
    let link = Origin::Symlink {
        target: "/usr/share/x".into(),
        uid: 0,
        gid: 0,
    };
    let dir = Origin::Dir {
        mode: 0o700,
        uid: 1,
        gid: 1,
    };
    let add = [
        (p("/etc/motd"), motd.clone()),
        (p("/etc/x"), link),
        (p("/srv"), dir.clone()),
    ];
    db.activate(&Activation {
        target: Some((1, g)),
        at: 1,
        how: "switch",
        ledger_add: &add,
        ledger_remove: &[],
    })
    .unwrap();
    assert_eq!(
        db.ledger().unwrap(),
        add.iter().cloned().collect::<BTreeMap<_, _>>()
    );
    db.activate(&Activation {
        target: Some((1, g)),
        at: 2,
        how: "switch",
        ledger_add: &[],
        ledger_remove: &add[1..2],
    })
    .unwrap();
    let want: BTreeMap<_, _> = [(p("/etc/motd"), motd), (p("/srv"), dir)].into();
    assert_eq!(db.ledger().unwrap(), want);

    // A record sysgen cannot read is an error naming the table and path.
    let c = rusqlite::Connection::open(&s.path).unwrap();
    c.execute(
        "UPDATE ledger SET origin = '{\"was\":\"fifo\"}' WHERE path = '/srv'",
        [],
    )
    .unwrap();
    drop(c);
    let e = db.ledger().expect_err("an unknown origin");
    assert!(e.to_string().contains("ledger entry /srv"), "{e}");
}

#[test]
fn saved_copies_and_the_stat_cache_round_trip() {
    let s = scratch();
    let mut db = Db::open(&s.path).expect("open");
    let saved = [
        Saved {
            path: p("/etc/a"),
            hash: Hash::of(b"a"),
            why: "changed since generation 1".into(),
            secret: false,
        },
        Saved {
            path: p("/etc/b"),
            hash: Hash::of(b"b"),
            why: "was there before".into(),
            secret: true,
        },
    ];
    db.insert_saved(&saved, 10).unwrap();
    db.insert_saved(&[], 11).unwrap();
    let mut hashes = db.saved_hashes().unwrap();
    hashes.sort();
    let mut want = vec![Hash::of(b"a"), Hash::of(b"b")];
    want.sort();
    assert_eq!(hashes, want);

    let row = |n: u64| CacheRow {
        dev: n,
        ino: n + 1,
        size: n + 2,
        mtime_ns: -(n as i64),
        ctime_ns: n as i64 * 1_000_000_007,
        hash: Hash::of(&n.to_le_bytes()),
    };
    db.update_stat_cache(Vec::new()).unwrap();
    assert!(db.stat_cache().unwrap().is_empty());
    db.update_stat_cache([("/src/a".to_owned(), row(1)), ("/src/b".to_owned(), row(2))])
        .unwrap();
    // A later row for the same source replaces the earlier one.
    db.update_stat_cache([("/src/a".to_owned(), row(3))])
        .unwrap();
    let cache = db.stat_cache().unwrap();
    let want: std::collections::HashMap<_, _> =
        [("/src/a".to_owned(), row(3)), ("/src/b".to_owned(), row(2))].into();
    assert_eq!(cache, want);
}

#[test]
fn collect_keeps_what_kept_generations_reach_and_a_rebuild_revives_a_number() {
    let s = scratch();
    let mut db = Db::open(&s.path).expect("open");
    let (a, b, c) = (node("a"), node("b"), node("c"));
    insert(&mut db, &[&a, &b, &c]);
    let m1 = db.put_manifest(&manifest(a.0, "h"), &info("1")).unwrap();
    let m2 = db.put_manifest(&manifest(b.0, "h"), &info("2")).unwrap();
    // Built, never switched to.
    let m3 = db.put_manifest(&manifest(c.0, "h"), &info("3")).unwrap();
    activate(&mut db, Some((1, m1)), 10, "switch");
    activate(&mut db, Some((2, m2)), 20, "switch");

    let live: HashKeySet<NodeId> = [b.0].into_iter().collect();
    let (manifests, nodes) = db.collect(&[1], 30, &live, &[m2]).unwrap();
    assert_eq!((manifests, nodes), (2, 2));
    assert_eq!(db.all_manifest_ids().unwrap(), vec![m2]);
    assert!(db.manifest(&m3).unwrap().is_none());
    assert!(db.node(&a.0).is_err() && db.node(&c.0).is_err());
    assert_eq!(db.node(&b.0).unwrap(), b.1);
    let g1 = db.generation(1).unwrap().expect("the row stays");
    assert_eq!(g1.collected_at, Some(30));

    // Switching to the same id again revives number 1, dated anew.
    activate(&mut db, Some((1, m1)), 40, "switch");
    let g1 = db.generation(1).unwrap().expect("row");
    assert_eq!((g1.collected_at, g1.created_at), (None, 40));
}

#[test]
fn reading_gives_one_snapshot_and_nests() {
    let s = scratch();
    let mut db = Db::open(&s.path).expect("open");
    activate(
        &mut db,
        Some((1, GenerationId(Hash::of(b"g")))),
        1,
        "switch",
    );
    let n = db
        .reading(|db| db.reading(|db| Ok(db.generations()?.len())))
        .unwrap();
    assert_eq!(n, 1);
    let e = db
        .reading(|_| -> Result<(), _> { Err(sysgen_generations::Error::Internal("inner".into())) })
        .expect_err("the inner error comes out");
    assert!(e.to_string().ends_with(": inner"), "{e}");
    // The read transaction ended: a write works.
    db.set_pinned(1, true).unwrap();
}
