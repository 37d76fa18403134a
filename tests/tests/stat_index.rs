//! The stat index through the binary: sources found unchanged are not
//! hashed again, a build that hashed nothing leaves the index as it was,
//! and git's racy-clean rule: a source whose mtime is not before the
//! index's own second is hashed again at every build, and its content is
//! what the generation gets.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde_json::json;
use sysgen_tests::{TestEnv, s};

/// Sets a file's mtime (and atime) to `secs` since the epoch.
fn set_mtime(p: &Path, secs: i64) {
    let t = nix::sys::time::TimeSpec::new(secs, 0);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        p,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .expect("utimensat");
}

fn counts(env: &TestEnv, cfg: &Path) -> (u64, u64) {
    let j = env.run(&["--json", "build", s(cfg)]).ok().json();
    let b = &j["build"];
    (
        b["files_hashed"].as_u64().expect("files_hashed"),
        b["files_cached"].as_u64().expect("files_cached"),
    )
}

#[test]
fn unchanged_sources_are_not_hashed_and_racily_clean_ones_always_are() {
    let env = TestEnv::new();
    let old = env.write_cfg("site/old.txt", "old content\n");
    set_mtime(&old, 1_600_000_000);
    let cfg = env.config(
        "c.json",
        json!({ "trees": { "/srv/www": { "source": "site" } } }),
    );
    assert_eq!(counts(&env, &cfg), (1, 0));
    let index = env.state().join("stat-index");
    let before = fs::metadata(&index).expect("the build wrote the index");
    assert_eq!(counts(&env, &cfg), (0, 1));
    let after = fs::metadata(&index).expect("still there");
    assert_eq!(
        (before.ino(), before.mtime(), before.mtime_nsec()),
        (after.ino(), after.mtime(), after.mtime_nsec()),
        "a build that hashed nothing rewrote the index"
    );

    // A source modified "now" (here: an hour ahead, so that it is at or
    // after the second of any index written during this test).
    let racy = env.write_cfg("site/racy.txt", "version 1\n");
    let ahead = after.mtime() + 3600;
    set_mtime(&racy, ahead);
    assert_eq!(counts(&env, &cfg), (1, 1));
    assert_eq!(
        counts(&env, &cfg),
        (1, 1),
        "a racily clean source was trusted"
    );
    // The same size and the same mtime: what a write in the same tick
    // leaves. It is hashed again, so the generation has the new bytes.
    fs::write(&racy, "version 2\n").expect("write");
    set_mtime(&racy, ahead);
    assert_eq!(counts(&env, &cfg), (1, 1));
    env.switch(&cfg);
    assert_eq!(
        fs::read_to_string(env.at("/srv/www/racy.txt")).expect("read"),
        "version 2\n"
    );
    assert_eq!(
        fs::read_to_string(env.at("/srv/www/old.txt")).expect("read"),
        "old content\n"
    );
}
