//! A tree leaves out version-control directories by default (`vcs: true`
//! brings them), and whatever its `exclude` globs match (issue 12). The
//! deployed tree is compared whole with the source less what is left out.

#![allow(
    clippy::unwrap_used,
    reason = "helpers of tests: a panic is a failed test with its message"
)]

use std::fs;
use std::path::Path;

use serde_json::json;
use sysgen_tests::{TestEnv, dump_tree, s};

/// The source of the site: what is deployed, and what is not.
const KEPT: &[&str] = &[
    "index.html",
    "css/site.css",
    "css/.gitignore",
    "docs/a/cache/kept.txt",
    "git/not-vcs.txt",
    "notes.tmp/inside.txt",
];
/// Left out by default: every VCS directory, at any depth, and a `.git`
/// file (a worktree's or submodule's link).
const VCS: &[&str] = &[
    ".git/HEAD",
    ".git/objects/ab/cdef",
    ".hg/store/data",
    "css/.svn/entries",
    "docs/.bzr/branch-format",
    "docs/_darcs/format",
    "docs/CVS/Root",
    "vendor/lib/.git",
];
/// Left out by the globs below.
const GLOBBED: &[&str] = &[
    "index.html~",
    "css/.site.css.swp",
    "cache/page/1.html",
    "build/out.o",
    "docs/build/out.o",
];
const EXCLUDE: [&str; 4] = ["*~", "*.swp", "/cache/**", "build/"];

/// Names ending in `/` are directories.
fn write_all(dir: &Path, files: &[&str]) {
    for f in files {
        let p = dir.join(f);
        if f.ends_with('/') {
            fs::create_dir_all(&p).unwrap();
            continue;
        }
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, format!("content of {f}\n")).unwrap();
    }
}

/// A directory holding `files` only, to compare the deployed tree with.
fn expected(env: &TestEnv, name: &str, files: &[&[&str]]) -> String {
    let dir = env.dir.path().join(name);
    for list in files {
        write_all(&dir, list);
    }
    // The tree's top is the source's: same mode.
    dump_tree(&dir, &[])
}

#[test]
fn vcs_directories_and_globs_are_left_out() {
    let env = TestEnv::new();
    let site = env.cfg().join("site");
    write_all(&site, KEPT);
    write_all(&site, VCS);
    write_all(&site, GLOBBED);
    // A `.git` in a directory the globs exclude is not looked at at all.
    let cfg = env.config(
        "c.json",
        json!({ "trees": { "/srv/www": { "source": "site", "exclude": EXCLUDE } } }),
    );
    env.switch(&cfg);
    // `/cache/**` is what is under cache/; the .git file leaves its
    // directory empty.
    let want = expected(&env, "want-default", &[KEPT, &["cache/", "vendor/lib/"]]);
    assert_eq!(dump_tree(&env.at("/srv/www"), &[]), want);

    // `vcs: true` brings the VCS directories back; the globs still apply.
    let cfg = env.config(
        "vcs.json",
        json!({ "trees": { "/srv/www": { "source": "site", "exclude": EXCLUDE, "vcs": true } } }),
    );
    env.switch(&cfg);
    let want = expected(&env, "want-vcs", &[KEPT, VCS, &["cache/"]]);
    assert_eq!(dump_tree(&env.at("/srv/www"), &[]), want);

    // No globs: only the VCS directories are left out, editor backups are
    // deployed (they are the admin's to exclude).
    let cfg = env.config(
        "plain.json",
        json!({ "trees": { "/srv/www": { "source": "site" } } }),
    );
    let r = env.run(&["switch", s(&cfg)]).ok();
    assert!(r.stderr.is_empty(), "{}", r.stderr);
    let want = expected(&env, "want-plain", &[KEPT, GLOBBED, &["vendor/lib/"]]);
    assert_eq!(dump_tree(&env.at("/srv/www"), &[]), want);
    // Nothing of what was left out reached the store's index of the tree.
    assert!(!env.at("/srv/www/.git").exists());
}

/// A tree without anything to leave out keeps its generation id: the
/// filter changes nothing else.
#[test]
fn a_tree_with_nothing_to_leave_out_keeps_its_id() {
    let env = TestEnv::new();
    write_all(&env.cfg().join("site"), KEPT);
    let plain = env.config(
        "plain.json",
        json!({ "trees": { "/srv/www": { "source": "site" } } }),
    );
    let globbed = env.config(
        "globbed.json",
        json!({ "trees": { "/srv/www": { "source": "site", "exclude": ["*~"], "vcs": false } } }),
    );
    let id = |cfg: &Path| env.run(&["--json", "build", s(cfg)]).ok().json()["id"].clone();
    let a = id(&plain);
    assert!(a.is_string(), "{a}");
    assert_eq!(a, id(&globbed));
}

/// A glob that does not compile is bad input at its line and column.
#[test]
fn a_bad_glob_is_refused_where_it_is_written() {
    let env = TestEnv::new();
    write_all(&env.cfg().join("site"), KEPT);
    let cfg = env.write_cfg(
        "c.toml",
        "[trees.\"/srv/www\"]\nsource = \"site\"\nexclude = [\"*~\", \"a[\"]\n",
    );
    let r = env.run(&["build", s(&cfg)]).expect(2);
    assert!(
        r.stderr
            .contains("c.toml:3:18: trees./srv/www.exclude.a[: invalid glob"),
        "{}",
        r.stderr
    );
    assert!(!env.at("/srv").exists());
}
