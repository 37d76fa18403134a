//! A clean directory's node, reused (issue 14, session 11;
//! generations/src/ingest/walk/clean.rs): a build takes an earlier build's
//! node of a tree's directory that lists as it did, without looking its
//! files up or encoding it again. Each test makes the records (two builds
//! of a tree whose files are older than the stat index), changes one
//! thing deep in the tree or in the configuration, and checks that the
//! build gives the generation a fresh state's build gives.

#![allow(
    clippy::unwrap_used,
    reason = "helpers of tests: a panic is a failed test with its message"
)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use sysgen_generations::db::{Db, Put};
use sysgen_tests::{TestEnv, s};

const FILES: &[&str] = &[
    "a/top.txt",
    "a/b/c/deep.txt",
    "a/b/c/other.txt",
    "a/b/sib/s.txt",
    "z/y.txt",
];

fn build(env: &TestEnv, cfg: &Path) -> Value {
    env.run(&["--json", "build", s(cfg)]).ok().json()["id"].clone()
}

/// The id a build in a state of its own gives (no stat index, no records).
fn fresh(env: &TestEnv, cfg: &Path) -> Value {
    static N: AtomicUsize = AtomicUsize::new(0);
    let state = env
        .dir
        .path()
        .join(format!("fresh-{}", N.fetch_add(1, Ordering::Relaxed)));
    env.run(&["--json", "--state-dir", s(&state), "build", s(cfg)])
        .ok()
        .json()["id"]
        .clone()
}

fn records(env: &TestEnv) -> usize {
    Db::open(&env.state().join("sysgen.db"))
        .unwrap()
        .dir_records()
        .unwrap()
        .len()
}

fn config(env: &TestEnv, tree: Value) -> PathBuf {
    env.config("c.json", json!({ "trees": { "/srv/t": tree } }))
}

/// The source, its configuration, and the records of its directories.
fn settled(env: &TestEnv) -> (PathBuf, PathBuf) {
    let src = env.cfg().join("src");
    for f in FILES {
        let p = src.join(f);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, format!("content of {f}\n")).unwrap();
    }
    std::os::unix::fs::symlink("deep.txt", src.join("a/b/c/link")).unwrap();
    let cfg = config(env, json!({ "source": "src", "xattrs": true }));
    // The files' mtimes and ctimes must be in a second before the stat
    // index's, for their directories to get records.
    std::thread::sleep(Duration::from_millis(1100));
    let first = build(env, &cfg);
    // Without an index, only the directories that hold no file (the
    // top, a/b) may have records: nothing in their listings is racy.
    assert_eq!(records(env), 2, "the first build has no index to go by");
    assert_eq!(build(env, &cfg), first);
    // The tree's top, a, a/b, a/b/c, a/b/sib, z.
    assert_eq!(records(env), 6, "the second build records every directory");
    assert_eq!(build(env, &cfg), first, "the recorded nodes are the same");
    (src, cfg)
}

/// Changes one thing, then checks the build against a fresh state's.
fn changed(env: &TestEnv, cfg: &Path, change: impl FnOnce()) {
    let before = build(env, cfg);
    let after = after(env, cfg, change);
    assert_ne!(before, after, "the change is not in the generation");
}

/// The id after `change`: what a fresh state builds, twice (the second
/// time with what the first recorded).
fn after(env: &TestEnv, cfg: &Path, change: impl FnOnce()) -> Value {
    change();
    let after = build(env, cfg);
    assert_eq!(after, fresh(env, cfg), "not what a fresh state builds");
    assert_eq!(build(env, cfg), after);
    after
}

/// Proof that the records are used (else the other tests prove nothing):
/// a record pointed at another directory's node puts that node in the
/// generation.
#[test]
fn a_recorded_node_is_taken_as_it_is() {
    let env = TestEnv::new();
    let (src, cfg) = settled(&env);
    let before = build(&env, &cfg);
    let mut db = Db::open(&env.state().join("sysgen.db")).unwrap();
    let all = db.dir_records().unwrap();
    let key = |p: &str| src.join(p).into_os_string().into_encoded_bytes();
    let mut z = all[&key("z")];
    z.node = all[&key("a/b/sib")].node;
    db.insert_built(|put| put(Put::Dir(key("z"), z))).unwrap();
    drop(db);
    assert_ne!(build(&env, &cfg), before);
}

#[test]
fn a_file_changed_deep_down_is_seen() {
    let env = TestEnv::new();
    let (src, cfg) = settled(&env);
    // The same size: only the stat tells.
    changed(&env, &cfg, || {
        fs::write(src.join("a/b/c/deep.txt"), "CONTENT of a/b/c/deep.txt\n").unwrap()
    });
}

#[test]
fn names_added_removed_and_renamed_deep_down_are_seen() {
    let env = TestEnv::new();
    let (src, cfg) = settled(&env);
    changed(&env, &cfg, || {
        fs::write(src.join("a/b/c/new.txt"), "new\n").unwrap()
    });
    changed(&env, &cfg, || {
        fs::remove_file(src.join("a/b/c/other.txt")).unwrap()
    });
    changed(&env, &cfg, || {
        fs::rename(src.join("a/b/sib/s.txt"), src.join("a/b/sib/t.txt")).unwrap()
    });
    changed(&env, &cfg, || {
        fs::create_dir(src.join("a/b/c/empty")).unwrap()
    });
}

#[test]
fn a_kind_changed_deep_down_is_seen() {
    let env = TestEnv::new();
    let (src, cfg) = settled(&env);
    let deep = src.join("a/b/c/deep.txt");
    changed(&env, &cfg, || {
        fs::remove_file(&deep).unwrap();
        std::os::unix::fs::symlink("other.txt", &deep).unwrap();
    });
    changed(&env, &cfg, || {
        fs::remove_file(&deep).unwrap();
        fs::create_dir(&deep).unwrap();
    });
}

#[test]
fn modes_owners_and_attributes_deep_down_are_seen() {
    let env = TestEnv::new();
    let (src, cfg) = settled(&env);
    let mode = |p: &str, m: u32| fs::set_permissions(src.join(p), fs::Permissions::from_mode(m));
    changed(&env, &cfg, || mode("a/b/c/deep.txt", 0o600).unwrap());
    // A directory's own metadata is in its parent's listing.
    changed(&env, &cfg, || mode("a/b/c", 0o700).unwrap());
    changed(&env, &cfg, || {
        std::os::unix::fs::chown(src.join("a/b/c/other.txt"), Some(33), None).unwrap()
    });
    changed(&env, &cfg, || {
        std::os::unix::fs::chown(src.join("a/b/sib"), None, Some(33)).unwrap()
    });
    let set = |p: &Path, v: &[u8]| {
        rustix::fs::lsetxattr(p, "user.note", v, rustix::fs::XattrFlags::empty())
    };
    let probe = env.cfg().join("probe");
    fs::write(&probe, "").unwrap();
    if set(&probe, b"?").is_err() {
        // No user attributes on this file system: nothing more to see.
        return;
    }
    let deep = src.join("a/b/c/deep.txt");
    changed(&env, &cfg, || set(&deep, b"one").unwrap());
    changed(&env, &cfg, || set(&deep, b"two").unwrap());
    changed(&env, &cfg, || set(&src.join("a/b/sib"), b"dir").unwrap());
}

#[test]
fn a_symlink_retargeted_deep_down_is_seen() {
    let env = TestEnv::new();
    let (src, cfg) = settled(&env);
    let link = src.join("a/b/c/link");
    changed(&env, &cfg, || {
        fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink("other.txt", &link).unwrap();
    });
}

#[test]
fn hard_links_made_and_undone_across_directories_are_seen() {
    let env = TestEnv::new();
    let (src, cfg) = settled(&env);
    changed(&env, &cfg, || {
        fs::hard_link(src.join("a/b/c/deep.txt"), src.join("z/deep-link")).unwrap()
    });
    // The other name goes: the file has one name again.
    changed(&env, &cfg, || {
        fs::remove_file(src.join("z/deep-link")).unwrap()
    });
    // A second name outside the tree: the generation is the same (the
    // tree has one name of it), and the file's directory is built in full
    // while it has two.
    let before = build(&env, &cfg);
    let same = after(&env, &cfg, || {
        fs::hard_link(src.join("a/b/c/other.txt"), env.cfg().join("outside")).unwrap()
    });
    assert_eq!(before, same);
    changed(&env, &cfg, || {
        fs::hard_link(src.join("a/b/c/other.txt"), src.join("a/b/sib/other")).unwrap()
    });
}

#[test]
fn what_the_configuration_changes_in_a_tree_is_seen() {
    let env = TestEnv::new();
    let (_, cfg) = settled(&env);
    // A declaration deep inside the tree.
    changed(&env, &cfg, || {
        env.config(
            "c.json",
            json!({
                "trees": { "/srv/t": { "source": "src", "xattrs": true } },
                "files": { "/srv/t/a/b/c/declared.conf": { "content": "declared\n" } }
            }),
        );
    });
    // Below a directory the tree lacks.
    changed(&env, &cfg, || {
        env.config(
            "c.json",
            json!({
                "trees": { "/srv/t": { "source": "src", "xattrs": true } },
                "files": { "/srv/t/a/b/sib/new/f.conf": { "content": "declared\n" } }
            }),
        );
    });
    changed(&env, &cfg, || {
        config(
            &env,
            json!({ "source": "src", "xattrs": true, "exclude": ["sib/"] }),
        );
    });
    changed(&env, &cfg, || {
        config(
            &env,
            json!({ "source": "src", "xattrs": true, "owner": 33 }),
        );
    });
    changed(&env, &cfg, || {
        config(
            &env,
            json!({ "source": "src", "xattrs": true, "mode": "0600" }),
        );
    });
}

/// The state directory inside the root is checked in every listing,
/// recorded or not: a tree that comes to hold it is refused.
#[test]
fn a_tree_that_comes_to_hold_the_state_directory_is_refused() {
    let env = TestEnv::new();
    let src = env.cfg().join("var");
    fs::create_dir_all(src.join("lib/other")).unwrap();
    fs::write(src.join("lib/other/f"), "f\n").unwrap();
    let cfg = env.config(
        "c.json",
        json!({ "trees": { "/var": { "source": "var" } } }),
    );
    std::thread::sleep(Duration::from_millis(1100));
    build(&env, &cfg);
    build(&env, &cfg);
    assert!(records(&env) > 0);
    fs::create_dir_all(src.join("lib/sysgen")).unwrap();
    let r = env.run(&["build", s(&cfg)]).expect(2);
    assert!(r.stderr.contains("state directory"), "{}", r.stderr);
}

/// gc that sets a damaged pack aside drops every record (objects may be
/// lost with it), so that the next build looks each file up in the store
/// and stores again what the sources have; a gc that deletes nothing
/// keeps them.
#[test]
fn a_damaged_pack_set_aside_drops_the_records() {
    let env = TestEnv::new();
    let (src, cfg) = settled(&env);
    env.switch(&cfg);
    let id = build(&env, &cfg);
    env.run(&["gc"]).ok();
    assert_eq!(records(&env), 6, "a gc that sets nothing aside keeps them");
    let idx = sysgen_tests::entries_under(&env.state().join("store"))
        .into_iter()
        .map(|(p, _)| p)
        .find(|p| p.extension().is_some_and(|e| e == "idx"))
        .expect("a pack index");
    let mut bytes = fs::read(&idx).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    fs::set_permissions(&idx, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(&idx, &bytes).unwrap();
    let g = env.run(&["gc"]).ok();
    assert!(
        g.stdout.contains("moved the damaged store pack"),
        "{}",
        g.stdout
    );
    assert_eq!(records(&env), 0);
    assert_eq!(build(&env, &cfg), id);
    let content = fs::read(src.join("a/b/c/deep.txt")).unwrap();
    assert!(sysgen_tests::store_holds(
        &env.state().join("store"),
        &content,
        false
    ));
}
