//! Datasets: what is refused before any change (wrong filesystem, a
//! missing tool, a name clash, a busy mount, nesting).

use super::*;

// ------------------------------------------------------ errors before any change

/// The switch fails with exit `code` and a message containing `needle`,
/// and changes nothing: same tree, no new generation.
#[track_caller]
fn refused(env: &TestEnv, args: &[&str], code: i32, needle: &str) {
    // The state directory's parents, as a first `list` used to make them:
    // a first switch makes them, refused or not, and they are not at stake.
    fs::create_dir_all(env.state()).unwrap();
    let gens = generations(env);
    let before = env.tree();
    let r = env.run(args).expect(code);
    assert!(
        r.stderr.contains(needle),
        "{needle:?} not in:\n{}",
        r.stderr
    );
    assert_eq!(env.tree(), before, "a refused switch changed the root");
    assert_eq!(generations(env), gens);
}

/// The generations per `list --json`; none before the first switch, when
/// there is no state yet and `list` says so (exit 1).
fn generations(env: &TestEnv) -> serde_json::Value {
    let r = env.run(&["--json", "list"]);
    if r.code == Some(1) && r.stderr.contains("no sysgen state here") {
        return json!([]);
    }
    r.ok().json()["generations"].clone()
}

#[test]
fn btrfs_on_a_filesystem_that_is_not_btrfs_is_refused() {
    let env = TestEnv::new();
    fs::create_dir_all(env.at("/srv")).unwrap();
    let c = env.config(
        "c.json",
        json!({ "datasets": { "/srv/data": { "type": "btrfs" } } }),
    );
    refused(
        &env,
        &["switch", s(&c)],
        1,
        "type btrfs needs a btrfs filesystem, but /srv is on",
    );
}

#[test]
fn a_plain_directory_is_not_adopted_as_a_subvolume() {
    let env = TestEnv::new();
    let Some(_b) = backing(&env, "btrfs") else {
        return;
    };
    fs::create_dir(env.at("/srv/data")).unwrap();
    env.write_root("/srv/data/x", "x\n");
    let c = env.config(
        "c.json",
        json!({ "datasets": { "/srv/data": { "type": "btrfs" } } }),
    );
    refused(
        &env,
        &["switch", s(&c)],
        1,
        "is a plain directory on btrfs, not a btrfs subvolume",
    );
}

#[test]
fn a_missing_tool_is_refused() {
    let env = TestEnv::new();
    let Some(_b) = backing(&env, "btrfs") else {
        return;
    };
    let c = env.config(
        "c.json",
        json!({ "datasets": { "/srv/data": { "type": "btrfs" } } }),
    );
    refused(
        &env,
        &["--btrfs", "/nonexistent/btrfs", "switch", s(&c)],
        1,
        "btrfs datasets need the `btrfs` command, which is not installed",
    );
    let z = env.config(
        "z.json",
        json!({ "datasets": { "/srv/z": { "type": "zfs", "name": "tank/z" } } }),
    );
    refused(
        &env,
        &["--zfs", "/nonexistent/zfs", "switch", s(&z)],
        1,
        "install zfsutils-linux",
    );
}

#[test]
fn a_file_in_the_way_is_a_name_clash() {
    let env = TestEnv::new();
    env.write_root("/srv/data", "a file\n");
    let c = env.config(
        "c.json",
        json!({ "datasets": { "/srv/data": { "type": "directory" } } }),
    );
    refused(
        &env,
        &["switch", s(&c)],
        1,
        "/srv/data: is a file on the root, where a dataset (directory) must go (name clash)",
    );
}

#[test]
fn a_busy_mount_is_refused_before_any_change() {
    let env = TestEnv::new();
    let c = env.config(
        "c.json",
        json!({ "datasets": { "/srv/data": { "type": "directory" } } }),
    );
    let bare = env.config(
        "bare.json",
        json!({ "files": { "/etc/motd": { "content": "m\n" } } }),
    );
    env.run(&["switch", s(&c)]).ok();
    let busy = Tmpfs::mount(&env.at("/srv/data"));
    fs::write(busy.mnt.join("live"), "in use\n").unwrap();
    refused(&env, &["switch", s(&bare)], 1, "busy mount");
    drop(busy);
    env.run(&["switch", s(&bare)]).ok();
}

#[test]
fn nested_datasets_are_invalid() {
    let env = TestEnv::new();
    let c = env.config(
        "c.json",
        json!({ "datasets": { "/srv/a": { "type": "directory" }, "/srv/a/b": { "type": "directory" } } }),
    );
    refused(
        &env,
        &["switch", s(&c)],
        2,
        "datasets.\u{2f}srv/a/b: lies inside the dataset /srv/a",
    );
}
