//! The dataset tools (btrfs, zfs) never follow a symlink out of the root:
//! - a symlink planted at a dataset's parent before the switch is refused
//!   before any change, for every kind (zfs would mount through it);
//! - a directory swapped for a symlink out of the root AFTER sysgen checked
//!   it, right before `btrfs` runs (a wrapper plays the attacker who wins
//!   that race), changes nothing outside: btrfs is given
//!   `/proc/self/fd/N/...` paths, so it works on the directory sysgen opened
//!   through the root handle, never on what the path names by then. A real
//!   btrfs on a loop device, with a directory of it outside the root.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is a failed test with its message"
)]

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use sysgen_tests::datasets::{LoopBtrfs, make_subvolume, zfs_stand_in};
use sysgen_tests::{Run, TestEnv, s};

fn run(cmd: &mut Command) -> Run {
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        killed: false,
    }
}

#[test]
fn a_symlinked_parent_is_refused_for_every_kind_before_any_change() {
    for (ty, ds) in [
        ("directory", json!({ "type": "directory" })),
        ("zfs", json!({ "type": "zfs", "name": "tank/db" })),
    ] {
        let env = TestEnv::new();
        let outside = env.dir.path().join("outside");
        fs::create_dir_all(&outside).unwrap();
        symlink(&outside, env.at("/srv")).unwrap();
        let c = env.config("c.json", json!({ "datasets": { "/srv/db": ds } }));
        let zdir = env.dir.path().join("zfs");
        // The state directory and its parents exist before the tree is
        // taken: a first switch makes them, refused or not.
        fs::create_dir_all(env.state()).unwrap();
        let before = env.tree();
        let r = run(env
            .cmd(&["--zfs", s(&zfs_stand_in()), "switch", s(&c)])
            .env("ZFS_STAND_IN_DIR", &zdir))
        .expect(1);
        assert!(
            r.stderr
                .contains("/srv/db: /srv is a symlink on the root, where the dataset"),
            "{ty}: {}",
            r.stderr
        );
        assert_eq!(env.tree(), before, "{ty}");
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0, "{ty}");
        let calls = fs::read_to_string(zdir.join("calls.log")).unwrap_or_default();
        assert!(
            calls
                .lines()
                .all(|l| l.starts_with("zfs list ") || l.starts_with("zfs get ")),
            "{ty}: {calls}"
        );
    }
}

/// A bind mount, unmounted on drop (before the filesystem it shows).
struct Bind(PathBuf);

impl Bind {
    fn new(from: &Path, at: &Path) -> Bind {
        let o = Command::new("mount")
            .arg("--bind")
            .arg(from)
            .arg(at)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        Bind(at.to_owned())
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Runs the real btrfs; first, the first time it is called for the
/// subcommand `$ATTACK`, moves the retention area's `snapshots` directory
/// aside (inside the root) and puts a symlink to `$OUTSIDE` in its place.
const WRAPPER: &str = r#"#!/bin/sh
echo "$*" >> "$LOG"
snaps="$ROOT/srv/.sysgen-data/data/snapshots"
if [ "$1 $2" = "subvolume $ATTACK" ] && [ -d "$snaps" ] && [ ! -L "$snaps" ]; then
    mv "$snaps" "$ROOT/srv/moved-$ATTACK"
    ln -s "$OUTSIDE" "$snaps"
fi
exec btrfs "$@"
"#;

#[test]
fn btrfs_works_on_the_checked_directory_when_a_symlink_is_planted_after_the_check() {
    let env = TestEnv::new();
    let Some(fs) = LoopBtrfs::mount(
        &env.dir.path().join("btrfs.img"),
        &env.dir.path().join("btrfs"),
    ) else {
        // Only with SYSGEN_TEST_ALLOW_SKIP=1 (`mount` fails the test otherwise).
        return;
    };
    // The root's /srv is a directory of the btrfs, bound in; `outside` is
    // on the same filesystem (so a snapshot could land there) but outside
    // the root.
    let outside = fs.mnt.join("outside");
    fs::create_dir_all(fs.mnt.join("srv")).unwrap();
    fs::create_dir_all(&outside).unwrap();
    fs::create_dir_all(env.at("/srv")).unwrap();
    let _bind = Bind::new(&fs.mnt.join("srv"), &env.at("/srv"));
    let wrapper = env.dir.path().join("btrfs-wrapper");
    fs::write(&wrapper, WRAPPER).unwrap();
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    let log = env.dir.path().join("btrfs.log");
    let sysgen = |attack: &str, args: &[&str]| {
        let mut all = vec!["--btrfs", s(&wrapper)];
        all.extend(args);
        run(env
            .cmd(&all)
            .env("ROOT", env.root())
            .env("OUTSIDE", &outside)
            .env("LOG", &log)
            .env("ATTACK", attack))
        .ok()
    };
    let data = json!({ "type": "btrfs", "snapshot": true });
    let c1 = env.config("c1.json", json!({ "datasets": { "/srv/data": data } }));
    let c1b = env.config(
        "c1b.json",
        json!({ "datasets": { "/srv/data": data }, "files": { "/etc/motd": { "content": "b\n" } } }),
    );
    let c2 = env.config(
        "c2.json",
        json!({ "files": { "/etc/motd": { "content": "2\n" } } }),
    );
    sysgen("none", &["switch", s(&c1)]);
    env.write_root("/srv/data/db", "v1\n");

    // The snapshot lands in the directory sysgen made and opened, wherever
    // it was moved, never behind the symlink.
    sysgen("snapshot", &["switch", s(&c1b)]);
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
    assert_eq!(
        fs::read_to_string(env.at("/srv/moved-snapshot/gen-1/db")).unwrap(),
        "v1\n"
    );
    // Undo the attack: the snapshot back where sysgen recorded it.
    let snaps = env.at("/srv/.sysgen-data/data/snapshots");
    fs::remove_file(&snaps).unwrap();
    fs::rename(env.at("/srv/moved-snapshot"), &snaps).unwrap();

    // gc deletes the checked snapshot, not a subvolume of the same name
    // behind the symlink.
    make_subvolume(&outside.join("gen-1"));
    fs::write(outside.join("gen-1/victim"), "mine\n").unwrap();
    sysgen("none", &["switch", s(&c2)]);
    sysgen("delete", &["gc", "--keep", "1"]);
    assert_eq!(
        fs::read_to_string(outside.join("gen-1/victim")).unwrap(),
        "mine\n"
    );
    assert!(
        !env.at("/srv/moved-delete/gen-1").exists(),
        "{}",
        env.tree()
    );

    // Every path btrfs got names a descriptor sysgen opened.
    let calls = fs::read_to_string(&log).unwrap();
    let root = env.root().to_string_lossy().into_owned();
    for call in calls.lines() {
        assert!(!call.contains(&root), "{call}");
        for arg in call.split(' ').filter(|a| a.starts_with('/')) {
            assert!(arg.starts_with("/proc/self/fd/"), "{call}");
        }
    }
    for verb in ["create", "snapshot -r", "delete"] {
        assert!(
            calls
                .lines()
                .any(|c| c.starts_with(&format!("subvolume {verb} "))),
            "{calls}"
        );
    }
}
