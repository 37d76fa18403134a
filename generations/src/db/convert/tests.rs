use std::collections::BTreeMap;

use rusqlite::{Connection, params};
use sysgen_schema::EntryPath;
use sysgen_store::Hash;

use super::super::migrations::BINARY_NODES;
use crate::db::Db;
use crate::manifest::{Entry, GenerationId, Manifest, Node, NodeId, NodeSource, walk};

fn file(c: &str, mode: u32) -> Entry {
    Entry::File {
        hash: Hash::of(c.as_bytes()),
        size: c.len() as u64,
        mode,
        uid: Some(0),
        gid: None,
        secret: c.starts_with("secret"),
        xattrs: Default::default(),
        link: None,
    }
}

fn dir() -> Entry {
    Entry::Dir {
        mode: Some(0o755),
        uid: None,
        gid: None,
        xattrs: Default::default(),
    }
}

fn entries(files: &[(&str, Entry)]) -> BTreeMap<EntryPath, Entry> {
    files
        .iter()
        .map(|(p, e)| (EntryPath::parse(p).expect("a path"), e.clone()))
        .collect()
}

/// Writes `tree`'s nodes as format 1 (JSON) did, and returns its root.
fn json_tree(conn: &Connection, tree: &BTreeMap<EntryPath, Entry>) -> NodeId {
    // Built with the binary encoding, then every node rewritten as JSON
    // under its JSON id, children first, as the old build made them.
    let mut nodes: BTreeMap<NodeId, Node> = BTreeMap::new();
    let root = crate::manifest::build_tree::<_, crate::Error>(tree, &Entry::clone, &mut |id, b| {
        nodes.insert(id, Node::decode(&b).expect("decodes"));
        Ok(())
    })
    .expect("builds");
    fn to_json(conn: &Connection, nodes: &BTreeMap<NodeId, Node>, id: NodeId) -> NodeId {
        let mut n = nodes[&id].clone();
        for e in &mut n.entries {
            e.tree = e.tree.map(|t| to_json(conn, nodes, t));
        }
        let body = serde_json::to_vec(&n).expect("JSON");
        let jid = Node::id_of(&body);
        conn.execute(
            "INSERT OR IGNORE INTO nodes (id, body) VALUES (?1, ?2)",
            params![jid.0.as_bytes().as_slice(), body],
        )
        .expect("insert");
        jid
    }
    to_json(conn, &nodes, root)
}

fn manifest(root: NodeId, host: &str) -> Manifest {
    serde_json::from_value(serde_json::json!({"sysgen": 1, "host": host, "root": root}))
        .expect("a manifest")
}

#[test]
fn a_json_node_database_is_converted_and_keeps_its_generations() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("sysgen.db");
    let conn = crate::db::tests::at_version(&path, BINARY_NODES - 1);
    let t1 = entries(&[
        ("/etc", dir()),
        ("/etc/a", file("a", 0o644)),
        ("/etc/sub", dir()),
        ("/etc/sub/b", file("b", 0o600)),
        ("/etc/secret", file("secret", 0o600)),
    ]);
    let mut t2 = t1.clone();
    t2.insert(EntryPath::parse("/etc/a").expect("p"), file("a2", 0o644));
    let mut old = Vec::new();
    for (n, t) in [(1, &t1), (2, &t2)] {
        let root = json_tree(&conn, t);
        let m = manifest(root, "h");
        let body = serde_json::to_vec(&m).expect("JSON");
        let id = GenerationId(Hash::of(&body));
        conn.execute(
            "INSERT INTO manifests (id, body, config, entries, bytes, built_at) VALUES (?1, ?2, NULL, 5, 9, 7)",
            params![id.0.as_bytes().as_slice(), body],
        )
        .expect("manifest");
        conn.execute(
            "INSERT INTO generations (number, id, created_at) VALUES (?1, ?2, 7)",
            params![n, id.0.as_bytes().as_slice()],
        )
        .expect("generation");
        old.push(id);
    }
    // A node no manifest reaches (a build cut short): converted too.
    let orphan = json_tree(&conn, &entries(&[("/o", file("o", 0o644))]));
    drop(conn);

    let db = Db::open(&path).expect("migrates");
    let version: usize = db
        .conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert!(version >= BINARY_NODES);
    for (i, (t, old_id)) in [(&t1, old[0]), (&t2, old[1])].into_iter().enumerate() {
        let g = db
            .generation(i as u64 + 1)
            .expect("reads")
            .expect("kept its number");
        assert_ne!(g.id, old_id, "a new id for new nodes");
        assert_eq!(db.renamed(&old_id).expect("reads"), g.id);
        let (m, info) = db.manifest(&g.id).expect("reads").expect("kept");
        assert_eq!(m.sysgen, crate::manifest::FORMAT);
        assert_eq!(m.host.as_deref(), Some("h"));
        assert_eq!((info.entries, info.bytes, info.built_at), (5, 9, 7));
        // The whole tree, as it was.
        let got: BTreeMap<EntryPath, Entry> =
            walk(&db, m.root).expect("walks").into_iter().collect();
        assert_eq!(&got, t);
        // The same tree built now has the same root: one encoding.
        let mut rebuilt = BTreeMap::new();
        let root =
            crate::manifest::build_tree::<_, crate::Error>(t, &Entry::clone, &mut |id, b| {
                rebuilt.insert(id, b);
                Ok(())
            })
            .expect("builds");
        assert_eq!(root, m.root);
    }
    // Every node is binary now and checks against its id.
    let ids: Vec<Vec<u8>> = {
        let mut st = db.conn.prepare("SELECT id FROM nodes").expect("prepare");
        st.query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    // Shared subtrees stored once: /etc/sub in both, and each generation's
    // root and /etc, and the orphan's root.
    assert_eq!(ids.len(), 6);
    for id in ids {
        let id = NodeId(Hash::from_bytes(id.try_into().expect("32 bytes")));
        let raw = db.raw(&id).expect("checks against its id");
        assert!(raw.starts_with(crate::manifest::binary::MAGIC));
    }
    assert_eq!(
        db.renamed(&GenerationId(orphan.0)).expect("reads").0,
        orphan.0
    );
}

#[test]
fn a_missing_node_under_a_manifest_fails_the_migration_and_changes_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("sysgen.db");
    let conn = crate::db::tests::at_version(&path, BINARY_NODES - 1);
    let root = json_tree(
        &conn,
        &entries(&[("/d", dir()), ("/d/f", file("f", 0o644))]),
    );
    let body = serde_json::to_vec(&manifest(root, "h")).expect("JSON");
    conn.execute(
        "INSERT INTO manifests (id, body, entries, bytes, built_at) VALUES (?1, ?2, 2, 1, 7)",
        params![Hash::of(&body).as_bytes().as_slice(), body],
    )
    .expect("manifest");
    // Damage: the subtree of /d is gone.
    conn.execute(
        "DELETE FROM nodes WHERE id != ?1",
        params![root.0.as_bytes().as_slice()],
    )
    .expect("delete");
    drop(conn);
    let err = Db::open(&path).err().expect("refused");
    assert!(
        err.to_string().contains("migration 9") && err.to_string().contains("missing"),
        "{err}"
    );
    let conn = Connection::open(&path).expect("open");
    let version: usize = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, BINARY_NODES - 1, "the transaction rolled back");
    let body: Vec<u8> = conn
        .query_row("SELECT body FROM nodes", [], |r| r.get(0))
        .expect("the JSON node is still there");
    assert_eq!(body.first(), Some(&b'['));
}
