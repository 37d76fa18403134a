use super::*;

#[test]
fn nodes_survive_the_move_to_a_rowid_table() {
    // A database as the version before the move (migration 5) left it:
    // a node, still JSON then, in the WITHOUT ROWID table.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sysgen.db");
    let before_move = MIGRATIONS
        .iter()
        .position(|m| m.contains("nodes_by_rowid"))
        .expect("the move is a migration");
    {
        let conn = at_version(&path, before_move);
        let json = serde_json::to_vec(&Node::default()).unwrap();
        conn.execute(
            "INSERT INTO nodes (id, body) VALUES (?1, ?2)",
            params![Node::id_of(&json).0.as_bytes().as_slice(), json],
        )
        .unwrap();
        let sql = nodes_schema(&conn);
        assert!(sql.contains("WITHOUT ROWID"), "{sql}");
    }
    let db = Db::open(&path).unwrap();
    // Moved, then re-encoded by migration 9 under its binary id.
    let id = Node::id_of(&Node::default().encode().expect("encodes"));
    assert_eq!(db.node(&id).unwrap(), Node::default());
    let sql = nodes_schema(&db.conn);
    assert!(!sql.contains("WITHOUT ROWID"), "{sql}");
    let version: usize = db
        .conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, MIGRATIONS.len());
}

/// The `CREATE TABLE` statement of the nodes table.
fn nodes_schema(conn: &Connection) -> String {
    conn.query_row(
        "SELECT sql FROM sqlite_master WHERE name = 'nodes'",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

/// A node whose body no longer matches its id: what acts on nodes
/// refuses it, what only shows them reads it as stored.
#[test]
fn a_damaged_node_is_refused_by_the_checked_reads_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(&dir.path().join("sysgen.db")).unwrap();
    let body = Node::default().encode().expect("encodes");
    let id = Node::id_of(&body);
    db.insert_nodes(|sink| sink(id, body.clone())).unwrap();
    let mut damaged = body.clone();
    damaged.push(0);
    db.conn
        .execute(
            "UPDATE nodes SET body = ?2 WHERE id = ?1",
            params![id.0.as_bytes().as_slice(), damaged],
        )
        .unwrap();
    assert!(
        matches!(db.raw(&id), Err(Error::CorruptManifest(_))),
        "the checked read refuses it"
    );
    assert_eq!(db.shown().unwrap().raw(&id).unwrap(), damaged);
}

/// Bytes of the database and its write-ahead log, as `du` counts them.
fn on_disk(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let wal = path.with_extension("db-wal");
    [path, wal.as_path()]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.blocks() * 512)
        .sum()
}

/// A database as version `v` of the schema left it: migrations 1 to `v`,
/// not opened through [`Db`].
pub(super) fn at_version(path: &Path, v: usize) -> Connection {
    let conn = Connection::open(path).unwrap();
    for m in &MIGRATIONS[..v] {
        conn.execute_batch(m).unwrap();
    }
    conn.execute_batch(&format!("PRAGMA user_version = {v}"))
        .unwrap();
    conn
}

/// A database as version `v` of the schema left it (see [`at_version`]), holding the empty node in its
/// binary encoding: the id of that node.
pub(super) fn at_version_with_a_node(path: &Path, v: usize) -> NodeId {
    let conn = at_version(path, v);
    let body = Node::default().encode().expect("encodes");
    let id = Node::id_of(&body);
    conn.execute(
        "INSERT INTO nodes (id, body) VALUES (?1, ?2)",
        params![id.0.as_bytes().as_slice(), body],
    )
    .unwrap();
    id
}

/// Fills the nodes table with `n` rows of 2 KiB and deletes them all.
fn fill_and_empty(db: &mut Db, n: u32) {
    fill(db, n);
    db.conn.execute("DELETE FROM nodes", []).unwrap();
}

/// Fills the nodes table with `n` rows of 2 KiB, checkpointed into the
/// database file.
fn fill(db: &mut Db, n: u32) {
    let tx = db.conn.transaction().unwrap();
    for i in 0..n {
        let id = blake3::hash(&i.to_le_bytes());
        tx.execute(
            "INSERT INTO nodes (id, body) VALUES (?1, ?2)",
            params![id.as_bytes().as_slice(), vec![i as u8; 2048]],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    db.conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
}

#[test]
fn collect_gives_the_pages_of_the_rows_it_deletes_back_in_its_own_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sysgen.db");
    let mut db = Db::open(&path).unwrap();
    fill(&mut db, 4000);
    let full = on_disk(&path);
    let (_, nodes) = db
        .collect(&[], 0, &sysgen_store::HashKeySet::default(), &[])
        .unwrap();
    assert_eq!(nodes, 4000);
    let free: i64 = db
        .conn
        .query_row("PRAGMA freelist_count", [], |r| r.get(0))
        .unwrap();
    assert_eq!(free, 0, "no free page left for a second commit");
    db.reclaim().unwrap();
    let after = on_disk(&path);
    assert!(after * 10 < full, "{full} -> {after} bytes");
}

#[test]
fn reclaim_gives_deleted_rows_pages_back_in_both_database_modes() {
    for made_before_auto_vacuum in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sysgen.db");
        let mut db = Db::open(&path).unwrap();
        if made_before_auto_vacuum {
            db.conn
                .execute_batch("PRAGMA auto_vacuum=NONE; VACUUM;")
                .unwrap();
        }
        fill_and_empty(&mut db, 4000);
        let full = on_disk(&path);
        db.reclaim().unwrap();
        let after = on_disk(&path);
        assert!(
            after * 10 < full,
            "made before auto-vacuum: {made_before_auto_vacuum}; {full} -> {after} bytes"
        );
        let mode: i64 = db
            .conn
            .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, 2, "incremental after the first reclaim");
    }
}
