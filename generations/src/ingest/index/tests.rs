use std::path::Path;

use sysgen_store::Hash;

use super::spill::Spill;
use super::{FILE_NAME, StatIndex};
use crate::db::CacheRow;

fn row(n: u64, mtime_ns: i64) -> CacheRow {
    CacheRow {
        dev: n,
        ino: n + 1,
        size: n + 2,
        mtime_ns,
        ctime_ns: mtime_ns + 5,
        hash: Hash::of(&n.to_le_bytes()),
    }
}

/// Sets the index file's mtime: when its stats were taken.
fn stamp(dir: &Path, secs: i64) {
    let t = nix::sys::time::TimeSpec::new(secs, 0);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        &dir.join(FILE_NAME),
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .expect("utimensat");
}

const SEC: i64 = 1_000_000_000;

/// Writes rows given whole, as one run (a build gives a run per
/// directory: see `spill_runs_merge_in_path_order_and_later_runs_win`).
fn write(dir: &Path, old: &StatIndex, rows: Vec<(Vec<u8>, CacheRow)>) -> Result<(), crate::Error> {
    let spill = Spill::new(dir);
    spill.run(&[], rows.iter().map(|(p, r)| (p.as_slice(), *r)).collect())?;
    let runs = spill.finish()?.expect("a run was written");
    super::write(dir, old, &runs)
}

#[test]
fn keys_in_pieces_compare_as_their_concatenation() {
    use std::cmp::Ordering::*;
    type Pieces<'a> = &'a [&'a [u8]];
    let cases: [(Pieces<'_>, Pieces<'_>, std::cmp::Ordering); 7] = [
        (&[b"/a", b"/", b"b"], &[b"/a/b", b"", b""], Equal),
        (&[b"", b"", b""], &[b"", b"", b""], Equal),
        (&[b"/a", b"/", b"b"], &[b"/a/", b"c", b""], Less),
        (&[b"/a", b"", b""], &[b"/a", b"/", b""], Less),
        (&[b"/ab", b"", b""], &[b"/a", b"/", b"b"], Greater),
        (&[b"/src", b"/", b"x-y"], &[b"/src", b"/", b"x/y"], Less),
        (&[b"", b"", b"z"], &[b"y", b"", b""], Greater),
    ];
    for (a, b, want) in cases {
        assert_eq!(super::cmp_pieces(a, b), want, "{a:?} {b:?}");
        assert_eq!(super::cmp_pieces(b, a), want.reverse(), "{b:?} {a:?}");
    }
}

#[test]
fn records_round_trip_and_new_ones_replace_old_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    assert_eq!(StatIndex::load(d).expect("absent is empty").len(), 0);
    let rows: Vec<(Vec<u8>, CacheRow)> = (0..1000u64)
        .rev()
        .map(|n| (format!("/src/{n:05}").into_bytes(), row(n, 100 * SEC)))
        .collect();
    write(d, &StatIndex::empty(), rows).expect("writes");
    stamp(d, 1_000);
    let idx = StatIndex::load(d).expect("loads");
    assert_eq!(idx.len(), 1000);
    // The header, 1000 records, 1000 paths of 10 bytes: nothing else.
    let size = std::fs::metadata(d.join(FILE_NAME)).expect("stat").len();
    assert_eq!(size, 48 + 1000 * 80 + 1000 * 10);
    for n in [0u64, 1, 500, 998, 999] {
        assert_eq!(
            idx.get(format!("/src/{n:05}").as_bytes()),
            Some(row(n, 100 * SEC))
        );
    }
    assert_eq!(idx.get(b"/src/01000"), None);
    assert_eq!(idx.get(b"/src"), None);
    assert_eq!(idx.get(b""), None);
    // A second build: one record replaced, one added (given twice: the
    // last wins), every other one kept.
    let new = vec![
        (b"/src/00007".to_vec(), row(70, 200 * SEC)),
        (b"/a".to_vec(), row(1, 300 * SEC)),
        (b"/a".to_vec(), row(2, 300 * SEC)),
    ];
    write(d, &idx, new).expect("writes");
    drop(idx);
    stamp(d, 1_000);
    let idx = StatIndex::load(d).expect("loads");
    assert_eq!(idx.len(), 1001);
    assert_eq!(idx.get(b"/src/00007"), Some(row(70, 200 * SEC)));
    assert_eq!(idx.get(b"/a"), Some(row(2, 300 * SEC)));
    assert_eq!(idx.get(b"/src/00008"), Some(row(8, 100 * SEC)));
    assert!(!d.join("stat-index.tmp").exists());
}

#[test]
fn a_file_changed_in_the_same_second_as_the_index_is_not_trusted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    // Stats taken at second 500 (and later): the index written in 500.
    let rows = vec![
        (b"/before".to_vec(), row(1, 499 * SEC + SEC - 1)),
        (b"/same".to_vec(), row(2, 500 * SEC)),
        (b"/same-late".to_vec(), row(3, 500 * SEC + SEC - 1)),
        (b"/after".to_vec(), row(4, 501 * SEC)),
    ];
    write(d, &StatIndex::empty(), rows).expect("writes");
    stamp(d, 500);
    let idx = StatIndex::load(d).expect("loads");
    assert_eq!(idx.get(b"/before"), Some(row(1, 499 * SEC + SEC - 1)));
    // Racily clean: a write later in that second keeps the stat (coarse
    // timestamps), so these are hashed again.
    assert_eq!(idx.get(b"/same"), None);
    assert_eq!(idx.get(b"/same-late"), None);
    assert_eq!(idx.get(b"/after"), None);
    drop(idx);
    // The same records in an index written a second later are trusted.
    stamp(d, 501);
    let idx = StatIndex::load(d).expect("loads");
    assert_eq!(idx.get(b"/same"), Some(row(2, 500 * SEC)));
    assert_eq!(idx.get(b"/same-late"), Some(row(3, 500 * SEC + SEC - 1)));
    assert_eq!(idx.get(b"/after"), None);
}

#[test]
fn a_damaged_index_is_read_as_empty_and_a_symlink_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let rows = vec![(b"/x".to_vec(), row(1, SEC)), (b"/y".to_vec(), row(2, SEC))];
    write(d, &StatIndex::empty(), rows).expect("writes");
    let good = std::fs::read(d.join(FILE_NAME)).expect("read");
    let mut cases = Vec::new();
    for at in [0, 9, 20, 60, good.len() - 1] {
        let mut b = good.clone();
        b[at] ^= 0x40;
        cases.push(b);
    }
    cases.push(good[..good.len() - 1].to_vec());
    cases.push(Vec::new());
    for b in cases {
        std::fs::write(d.join(FILE_NAME), &b).expect("write");
        stamp(d, 100);
        assert_eq!(StatIndex::load(d).expect("loads").len(), 0, "{b:?}");
    }
    std::fs::write(d.join(FILE_NAME), &good).expect("write");
    stamp(d, 100);
    assert_eq!(StatIndex::load(d).expect("loads").len(), 2);
    std::fs::remove_file(d.join(FILE_NAME)).expect("rm");
    std::os::unix::fs::symlink("/etc/passwd", d.join(FILE_NAME)).expect("symlink");
    let err = StatIndex::load(d).err().expect("refused");
    assert!(err.to_string().contains("symlink"), "{err}");
}

#[test]
fn spill_runs_merge_in_path_order_and_later_runs_win() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let spill = Spill::new(d);
    // Nothing spilled: no file, no runs.
    assert!(Spill::new(d).finish().expect("finishes").is_none());
    // Directories finish in any order: `/s/a-b` before `/s/a/` in path
    // order though its run is written after; `/s/a/x` twice (two trees
    // of one source), the later run's record kept; a name given twice in
    // one run keeps its last record.
    let rows = |v: &[(&'static str, u64)]| -> Vec<(&'static [u8], CacheRow)> {
        v.iter()
            .map(|(n, r)| (n.as_bytes(), row(*r, SEC)))
            .collect()
    };
    spill
        .run(
            &["/s/a".as_bytes(), b"/"],
            rows(&[("y", 1), ("x", 2), ("y", 3)]),
        )
        .expect("run");
    spill
        .run(&["/s/".as_bytes(), b""], rows(&[("a-b", 4), ("b", 5)]))
        .expect("run");
    spill
        .run(&["/s/a/".as_bytes()], rows(&[("x", 6)]))
        .expect("run");
    spill
        .run(&["/s/a".as_bytes(), b"/"], Vec::new())
        .expect("an empty run");
    // An empty run writes nothing; the file is unlinked as soon as made.
    assert!(!d.join("stat-index.new").exists());
    let runs = spill.finish().expect("finishes").expect("runs");
    let mut merge = runs.merged().expect("merges");
    let mut got = Vec::new();
    while let Some((k, r)) = merge.next_row().expect("reads") {
        got.push((k.concat(), r));
    }
    let want: Vec<(Vec<u8>, CacheRow)> = [("/s/a-b", 4), ("/s/a/x", 6), ("/s/a/y", 3), ("/s/b", 5)]
        .into_iter()
        .map(|(p, r)| (p.as_bytes().to_vec(), row(r, SEC)))
        .collect();
    assert_eq!(got, want);
    // Merged over an old index: its other records kept, its equal ones
    // replaced.
    write(
        d,
        &StatIndex::empty(),
        vec![
            (b"/s/a/x".to_vec(), row(9, SEC)),
            (b"/s/c".to_vec(), row(8, SEC)),
        ],
    )
    .expect("writes");
    stamp(d, 100);
    let old = StatIndex::load(d).expect("loads");
    super::write(d, &old, &runs).expect("writes");
    drop(old);
    stamp(d, 100);
    let idx = StatIndex::load(d).expect("loads");
    assert_eq!(idx.len(), 5);
    assert_eq!(idx.get(b"/s/a/x"), Some(row(6, SEC)));
    assert_eq!(idx.get(b"/s/c"), Some(row(8, SEC)));
    assert_eq!(idx.get(b"/s/a-b"), Some(row(4, SEC)));
}
