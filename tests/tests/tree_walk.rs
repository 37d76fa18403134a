//! A build goes one directory at a time, bottom-up (issue 14): what it
//! makes of a tree is what it made when it held every entry at once. A
//! tree with declarations inside it (at a name the tree lacks, in a
//! directory it lacks), hard links across directories and excludes is
//! deployed whole; a clash with the tree is refused; and after one change
//! deep down, a build gives the generation a fresh state's build gives.

#![allow(
    clippy::unwrap_used,
    reason = "helpers of tests: a panic is a failed test with its message"
)]

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde_json::{Value, json};
use sysgen_tests::{TestEnv, dump_tree, s};

const KEPT: &[&str] = &[
    "a/top.txt",
    "a/b/c/deep.txt",
    "a/b/c/other.txt",
    "a-b/x.txt",
    "z/y.txt",
];
const LEFT_OUT: &[&str] = &["skip/me.txt", "a/b/junk.tmp"];

fn write_all(dir: &Path, files: &[&str]) {
    for f in files {
        let p = dir.join(f);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, format!("content of {f}\n")).unwrap();
    }
}

/// The source: `KEPT`, `LEFT_OUT`, and one file with two names in two
/// directories, `a/shared` and `a-b/shared`: `a-b/shared` is first in path
/// order (`-` sorts before `/`), though the walk meets `a` first.
fn source(env: &TestEnv) -> std::path::PathBuf {
    let src = env.cfg().join("src");
    write_all(&src, KEPT);
    write_all(&src, LEFT_OUT);
    fs::write(src.join("a/shared"), "one file, two names\n").unwrap();
    fs::hard_link(src.join("a/shared"), src.join("a-b/shared")).unwrap();
    src
}

fn config(env: &TestEnv) -> std::path::PathBuf {
    env.config(
        "c.json",
        json!({
            "trees": { "/srv/t": { "source": "src", "exclude": ["skip/", "*.tmp"] } },
            "files": {
                "/srv/t/a/b/declared.conf": { "content": "declared in a tree's directory\n" },
                "/srv/t/new/deeper/f.conf": { "content": "below directories the tree lacks\n" }
            }
        }),
    )
}

fn build(env: &TestEnv, args: &[&str]) -> Value {
    env.run(&[&["--json"], args].concat()).ok().json()
}

#[test]
fn declarations_links_and_excludes_in_a_tree_come_out_whole() {
    let env = TestEnv::new();
    let src = source(&env);
    let cfg = config(&env);
    env.switch(&cfg);

    // The expected tree: the source less what is left out, plus the
    // declared files and the directories they need (0755, as sysgen
    // makes a parent it only makes sure exists).
    let want = env.dir.path().join("want");
    for f in KEPT.iter().chain(&["a/shared", "a-b/shared"]) {
        let to = want.join(f);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(src.join(f), &to).unwrap();
    }
    fs::write(
        want.join("a/b/declared.conf"),
        "declared in a tree's directory\n",
    )
    .unwrap();
    fs::create_dir_all(want.join("new/deeper")).unwrap();
    fs::write(
        want.join("new/deeper/f.conf"),
        "below directories the tree lacks\n",
    )
    .unwrap();
    let mode = |p: &Path, m: u32| {
        fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(m)).unwrap()
    };
    for d in ["", "a", "a/b", "a/b/c", "a-b", "z"] {
        mode(
            &want.join(d),
            fs::metadata(src.join(d)).unwrap().mode() & 0o7777,
        );
    }
    mode(&want.join("new"), 0o755);
    mode(&want.join("new/deeper"), 0o755);
    for f in ["a/b/declared.conf", "new/deeper/f.conf"] {
        mode(&want.join(f), 0o644);
    }
    assert_eq!(dump_tree(&env.at("/srv/t"), &[]), dump_tree(&want, &[]));
    let ino = |p: &str| fs::metadata(env.at(p)).unwrap().ino();
    assert_eq!(ino("/srv/t/a/shared"), ino("/srv/t/a-b/shared"));
    assert_ne!(ino("/srv/t/a/shared"), ino("/srv/t/a/top.txt"));

    // The generation makes the first name in path order the file and the
    // other its link: verify names them so once they are apart.
    env.run(&["verify"]).ok();
    let shared = env.at("/srv/t/a/shared");
    let copy = env.at("/srv/t/a/shared.copy");
    fs::copy(&shared, &copy).unwrap();
    fs::rename(&copy, &shared).unwrap();
    let r = env.run(&["verify"]).expect(1);
    let want = "/srv/t/a/shared: is no longer a hard link of /srv/t/a-b/shared";
    assert!(r.stdout.contains(want), "no {want:?} in:\n{}", r.stdout);
    fs::remove_file(&shared).unwrap();
    fs::hard_link(env.at("/srv/t/a-b/shared"), &shared).unwrap();

    // Unchanged: the same generation (what is hashed again depends on
    // the racy-clean rule: tests/stat_index.rs).
    let first = build(&env, &["build", s(&cfg)]);
    let again = build(&env, &["build", s(&cfg)]);
    assert_eq!(first["id"], again["id"]);
}

#[test]
fn one_change_deep_down_gives_what_a_fresh_state_gives() {
    let env = TestEnv::new();
    let src = source(&env);
    let cfg = config(&env);
    let before = build(&env, &["build", s(&cfg)]);
    fs::write(src.join("a/b/c/deep.txt"), "changed deep down\n").unwrap();
    let after = build(&env, &["build", s(&cfg)]);
    assert_ne!(before["id"], after["id"]);

    let fresh = env.dir.path().join("fresh-state");
    let from_scratch = build(&env, &["--state-dir", s(&fresh), "build", s(&cfg)]);
    assert_eq!(after["id"], from_scratch["id"]);
}

#[test]
fn a_clash_with_the_tree_is_refused() {
    let env = TestEnv::new();
    source(&env);
    let same = env.config(
        "same.json",
        json!({
            "trees": { "/srv/t": { "source": "src" } },
            "files": { "/srv/t/a/top.txt": { "content": "again\n" } }
        }),
    );
    let r = env.run(&["build", s(&same)]).expect(2);
    assert!(
        r.stderr.contains("/srv/t/a/top.txt") && r.stderr.contains("declare it in one place only"),
        "{}",
        r.stderr
    );
    let below = env.config(
        "below.json",
        json!({
            "trees": { "/srv/t": { "source": "src" } },
            "files": { "/srv/t/a/top.txt/inside": { "content": "below a file\n" } }
        }),
    );
    let r = env.run(&["build", s(&below)]).expect(2);
    assert!(r.stderr.contains("/srv/t/a/top.txt"), "{}", r.stderr);
}
