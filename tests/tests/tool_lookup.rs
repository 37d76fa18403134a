//! The dataset tools (`--zfs`, `--btrfs`) are found as a shell finds a
//! command (issue 12, the `which` crate): a file in `PATH` that is not
//! executable is passed over, and a path given that is not executable is
//! no tool. Driven with the zfs stand-in, copied with and without its
//! executable bit.

#![allow(
    clippy::unwrap_used,
    reason = "helpers of tests: a panic is a failed test with its message"
)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::json;
use sysgen_tests::datasets::zfs_stand_in;
use sysgen_tests::{Run, TestEnv, s};

/// The stand-in copied to `dir/zfs` with `mode`.
fn zfs_in(dir: &Path, mode: u32) {
    fs::create_dir_all(dir).unwrap();
    let to = dir.join("zfs");
    fs::copy(zfs_stand_in(), &to).unwrap();
    fs::set_permissions(&to, fs::Permissions::from_mode(mode)).unwrap();
}

fn switch(env: &TestEnv, cfg: &Path, path: &str, zfs: Option<&str>) -> Run {
    let mut args = Vec::new();
    if let Some(z) = zfs {
        args.extend(["--zfs", z]);
    }
    args.extend(["switch", s(cfg)]);
    Run::from(
        env.cmd(&args)
            .env("PATH", path)
            .env("ZFS_STAND_IN_DIR", env.dir.path().join("zfs-state"))
            .output()
            .unwrap(),
    )
}

#[test]
fn a_tool_that_is_not_executable_is_passed_over() {
    let env = TestEnv::new();
    let plain = env.dir.path().join("plain");
    let exec = env.dir.path().join("exec");
    zfs_in(&plain, 0o644);
    zfs_in(&exec, 0o755);
    let cfg = env.config(
        "c.json",
        json!({ "datasets": { "/srv/db": { "type": "zfs", "name": "tank/db" } } }),
    );
    let not_installed = "zfs datasets need the `zfs` command, which is not installed";

    // Only a non-executable zfs in PATH: none is installed.
    let r = switch(&env, &cfg, s(&plain), None);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains(not_installed), "{}", r.stderr);
    // A path to it, given: the same.
    let given = plain.join("zfs");
    let r = switch(&env, &cfg, s(&exec), Some(s(&given)));
    assert!(r.stderr.contains(not_installed), "{}", r.stderr);
    assert!(!env.at("/srv/db").exists());

    // The non-executable one first in PATH, an executable one after it:
    // the executable one is used.
    let path = format!("{}:{}", s(&plain), s(&exec));
    let r = switch(&env, &cfg, &path, None);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(env.at("/srv/db").is_dir());
}
