//! Datasets attach only what they detached (issue 16, item 2). A switch
//! crashes right after "detach dataset /srv/db"; an app (or tmpfiles) then
//! makes `/srv/db` again as a plain directory. `recover --rollback` must
//! refuse, naming the stranger and the way out, and change nothing: the
//! real dataset stays whole in its retention area. Once the stranger is
//! moved away, `recover --rollback` brings the dataset back, its data
//! intact. Forward `recover` leaves the stranger alone. `verify` reports a
//! stranger at an attached dataset's path. On a real btrfs on a loop device
//! (subvolume UUIDs), on plain directories (sysgen's marker), and on zfs
//! through the stand-in (guids).

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is a failed test with its message"
)]

use std::fs;
use std::process::Command;

use serde_json::json;
use sysgen_tests::datasets::{Backing, is_subvolume, zfs_stand_in};
use sysgen_tests::{Run, TestEnv, s};

/// The two configurations: with the dataset, and without it.
fn configs(env: &TestEnv, ty: &str) -> (String, String) {
    let mut ds = json!({ "type": ty });
    if ty == "zfs" {
        ds["name"] = json!("tank/db");
    }
    let with = env.config(
        "with.json",
        json!({
            "datasets": { "/srv/db": ds },
            "files": { "/etc/motd": { "content": "1\n" } }
        }),
    );
    let without = env.config(
        "without.json",
        json!({ "files": { "/etc/motd": { "content": "2\n" } } }),
    );
    (s(&with).to_owned(), s(&without).to_owned())
}

/// The 1-based number of the plan step of `args` (a dry run) that starts with `prefix`.
fn step_number(env: &TestEnv, args: &[&str], prefix: &str) -> u64 {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    a.push("--dry-run");
    let steps = env.run(&a).ok().steps();
    let i = steps
        .iter()
        .position(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no step {prefix:?} in {steps:#?}"));
    i as u64 + 1
}

fn active(env: &TestEnv) -> Option<u64> {
    env.run(&["--json", "list"]).ok().json()["active"].as_u64()
}

/// Switches to the dataset, writes data into it, then crashes the switch
/// that drops it right after the detach, and makes the stranger.
fn crash_after_detach(env: &TestEnv, ty: &str) -> (String, String) {
    fs::create_dir_all(env.at("/var/lib")).unwrap();
    let (with, without) = configs(env, ty);
    env.run(&["switch", &with]).ok();
    env.write_root("/srv/db/data", "v1\n");
    let k = step_number(env, &["switch", &without], "detach dataset /srv/db");
    let r = env.run_with_fault(k, &["switch", &without]);
    assert!(r.killed, "the fault did not fire: {}", r.stderr);
    assert_eq!(
        fs::read_to_string(env.at("/srv/.sysgen-data/db/detached/data")).unwrap(),
        "v1\n"
    );
    // An app starts and makes its directory again.
    env.write_root("/srv/db/fresh", "app\n");
    (with, without)
}

fn stranger_refused_then_rolled_back(ty: &str) {
    let env = TestEnv::new();
    let Some(_fs) = Backing::at_srv(&env, if ty == "btrfs" { "btrfs" } else { "ext4" }) else {
        return;
    };
    crash_after_detach(&env, ty);
    let before = env.tree();

    let r = env.run(&["recover", "--rollback"]).expect(1);
    assert!(
        r.stderr.contains("/srv/db: what is there is")
            && r.stderr.contains("not the dataset sysgen detached")
            && r.stderr
                .contains("kept whole at /srv/.sysgen-data/db/detached")
            && r.stderr.contains("move /srv/db away")
            && r.stderr.contains("nothing was changed"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    // Nothing changed: the stranger, the detached dataset, the journal.
    assert_eq!(env.tree(), before);
    assert!(env.state().join("journal.json").exists());
    let st = env.run(&["status"]);
    assert!(st.stdout.contains("recover"), "{}", st.stdout);

    // The way out: move the stranger away, then undo again.
    fs::rename(env.at("/srv/db"), env.at("/srv/db.app")).unwrap();
    env.run(&["recover", "--rollback"]).ok();
    assert_eq!(active(&env), Some(1));
    assert_eq!(fs::read_to_string(env.at("/srv/db/data")).unwrap(), "v1\n");
    assert!(!env.at("/srv/db/fresh").exists());
    assert_eq!(
        fs::read_to_string(env.at("/srv/db.app/fresh")).unwrap(),
        "app\n"
    );
    assert!(!env.at("/srv/.sysgen-data/db/detached").exists());
    if ty == "btrfs" {
        assert!(is_subvolume(&env.at("/srv/db")));
    }
    env.run(&["verify"]).ok();
    // And the dataset leaves again normally, its data kept.
    let (_, without) = configs(&env, ty);
    env.run(&["switch", &without]).ok();
    assert_eq!(
        fs::read_to_string(env.at("/srv/.sysgen-data/db/detached/data")).unwrap(),
        "v1\n"
    );
}

#[test]
fn btrfs_stranger_after_detach_is_refused_by_recover_rollback() {
    stranger_refused_then_rolled_back("btrfs");
}

#[test]
fn directory_stranger_after_detach_is_refused_by_recover_rollback() {
    stranger_refused_then_rolled_back("directory");
}

/// Forward `recover` finishes the switch that dropped the dataset; the
/// stranger stays where it is, untouched, and the dataset stays detached.
#[test]
fn forward_recover_leaves_the_stranger_and_keeps_the_dataset() {
    let env = TestEnv::new();
    let Some(_fs) = Backing::at_srv(&env, "btrfs") else {
        return;
    };
    crash_after_detach(&env, "btrfs");
    env.run(&["recover"]).ok();
    assert_eq!(active(&env), Some(2));
    assert_eq!(
        fs::read_to_string(env.at("/srv/db/fresh")).unwrap(),
        "app\n"
    );
    assert!(!is_subvolume(&env.at("/srv/db")));
    assert_eq!(
        fs::read_to_string(env.at("/srv/.sysgen-data/db/detached/data")).unwrap(),
        "v1\n"
    );
    // Going back to the dataset is refused while the stranger is there.
    let r = env.run(&["rollback"]).expect(1);
    assert!(r.stderr.contains("/srv/db"), "{}", r.stderr);
    assert_eq!(active(&env), Some(2));
}

/// A plain directory where an attached dataset should be (the subvolume
/// or the marked directory moved away by hand) is drift for `verify`.
#[test]
fn verify_reports_a_stranger_at_an_attached_dataset() {
    for ty in ["btrfs", "directory"] {
        let env = TestEnv::new();
        let Some(_fs) = Backing::at_srv(&env, if ty == "btrfs" { "btrfs" } else { "ext4" }) else {
            return;
        };
        fs::create_dir_all(env.at("/var/lib")).unwrap();
        let (with, _) = configs(&env, ty);
        env.run(&["switch", &with]).ok();
        env.write_root("/srv/db/data", "v1\n");
        env.run(&["verify"]).ok();
        fs::rename(env.at("/srv/db"), env.at("/srv/db.moved")).unwrap();
        fs::create_dir(env.at("/srv/db")).unwrap();
        let r = env.run(&["--json", "verify"]).expect(1);
        let drift = r.json()["verify"]["drift"].to_string();
        assert!(
            drift.contains("/srv/db") && drift.contains("is not the dataset"),
            "{ty}: {drift}"
        );
        let st = env.run(&["status"]);
        assert!(st.stdout.contains("drift: 1 of"), "{ty}: {}", st.stdout);
    }
}

/// After the crash and forward `recover`, then a rollback to the dataset
/// refused because of the stranger, `status` says where the data is.
#[test]
fn status_says_detached_while_a_stranger_holds_the_path() {
    for ty in ["btrfs", "directory"] {
        let env = TestEnv::new();
        let Some(_fs) = Backing::at_srv(&env, if ty == "btrfs" { "btrfs" } else { "ext4" }) else {
            return;
        };
        crash_after_detach(&env, ty);
        // Undo by hand what recover --rollback refuses: the database
        // says generation 1 (with the dataset) is active.
        fs::remove_file(env.state().join("journal.json")).unwrap();
        let st = env.run(&["status"]);
        assert!(
            st.stdout.contains("dataset /srv/db (")
                && st
                    .stdout
                    .contains("): detached at /srv/.sysgen-data/db/detached"),
            "{ty}: {}",
            st.stdout
        );
        let r = env.run(&["verify"]).expect(1);
        assert!(
            r.stdout.contains("/srv/db: is not the dataset"),
            "{ty}: {}",
            r.stdout
        );
        // A switch refuses before any change, not halfway.
        let (_, without) = configs(&env, ty);
        let before = env.tree();
        let r = env.run(&["switch", &without]).expect(1);
        assert!(
            r.stderr.contains("not the dataset sysgen detached") && !r.stderr.contains("step "),
            "{ty}: {}",
            r.stderr
        );
        assert_eq!(env.tree(), before, "{ty}");
    }
}

/// sysgen with the zfs stand-in, whose state is in the test's directory.
fn zfs_run(env: &TestEnv, fault: Option<u64>, args: &[&str]) -> Run {
    let zfs = zfs_stand_in();
    let mut all = vec!["--zfs", zfs.to_str().unwrap()];
    all.extend(args);
    let mut c = env.cmd(&all);
    c.env("ZFS_STAND_IN_DIR", env.dir.path().join("zfs"));
    if let Some(k) = fault {
        c.env("SYSGEN_FAULT_AFTER_STEPS", k.to_string());
    }
    Run::from(c.output().unwrap())
}

/// The admin's own zfs call.
fn zfs(env: &TestEnv, args: &[&str]) {
    let o = Command::new(zfs_stand_in())
        .args(args)
        .env("ZFS_STAND_IN_DIR", env.dir.path().join("zfs"))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "zfs {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// zfs: after the crash right after the detach (`tank/db` renamed to
/// `tank/db-sysgen-detached`), the admin creates a new `tank/db` at the
/// same mountpoint. `recover --rollback` refuses it (another guid) and
/// changes nothing; once it is destroyed, the dataset comes back whole.
#[test]
fn zfs_stranger_of_the_same_name_is_refused_by_recover_rollback() {
    let env = TestEnv::new();
    fs::create_dir_all(env.at("/var/lib")).unwrap();
    fs::create_dir_all(env.at("/srv")).unwrap();
    let (with, without) = configs(&env, "zfs");
    zfs_run(&env, None, &["switch", &with]).ok();
    env.write_root("/srv/db/data", "v1\n");
    let steps = zfs_run(&env, None, &["--json", "switch", &without, "--dry-run"])
        .ok()
        .steps();
    let k = steps
        .iter()
        .position(|l| l.starts_with("detach dataset /srv/db"))
        .unwrap() as u64
        + 1;
    assert!(zfs_run(&env, Some(k), &["switch", &without]).killed);
    let mp = format!("mountpoint={}", env.at("/srv/db").display());
    zfs(&env, &["create", "-o", &mp, "tank/db"]);
    env.write_root("/srv/db/fresh", "app\n");
    let before = env.tree();
    let r = zfs_run(&env, None, &["recover", "--rollback"]).expect(1);
    assert!(
        r.stderr
            .contains("/srv/db: the zfs dataset named tank/db (guid ")
            && r.stderr.contains("is not the one sysgen detached")
            && r.stderr.contains("kept whole as tank/db-sysgen-detached")
            && r.stderr.contains("nothing was changed"),
        "{}",
        r.stderr
    );
    assert_eq!(env.tree(), before);
    zfs(&env, &["destroy", "tank/db"]);
    zfs_run(&env, None, &["recover", "--rollback"]).ok();
    assert_eq!(fs::read_to_string(env.at("/srv/db/data")).unwrap(), "v1\n");
    assert!(!env.at("/srv/db/fresh").exists());
}
