//! A crash after every step of a switch that removes a package holding
//! state, detaches a dataset (a real btrfs subvolume on a loop device) and
//! changes a file (issue #16): `recover` lands exactly on the target and
//! `recover --rollback` exactly on the start, packages and whole tree,
//! with the package's state and the dataset's data intact either way.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is a failed test with its message"
)]

use serde_json::json;
use sysgen_tests::datasets::LoopBtrfs;
use sysgen_tests::packages::{DebEnv, assert_same};

/// A root on generation 1 (sg-db with the host's data in its state, a
/// btrfs dataset /data/db with data in it, /etc/motd), the configuration
/// of generation 2 (none of them, another motd), and the btrfs.
fn scene() -> Option<(DebEnv, LoopBtrfs, String)> {
    let d = DebEnv::new();
    d.build_sg_db();
    d.publish();
    let fs = LoopBtrfs::mount(&d.env.dir.path().join("btrfs.img"), &d.env.at("/data"))?;
    let c1 = d.env.config(
        "one.json",
        json!({
            "packages": { "apt": ["sg-db"] },
            "datasets": { "/data/db": { "type": "btrfs" } },
            "files": { "/etc/motd": { "content": "one\n" } }
        }),
    );
    let c2 = d.env.config(
        "two.json",
        json!({ "files": { "/etc/motd": { "content": "two\n" } } }),
    );
    d.env.run(&["switch", c1.to_str().unwrap()]).ok();
    d.env.write_root("/var/lib/sg-db/data", "the host's rows\n");
    d.env.write_root("/data/db/table", "the dataset's data\n");
    Some((d, fs, c2.to_str().unwrap().to_owned()))
}

#[test]
fn crash_after_every_step_of_a_removal_and_a_detach_recovers_both_ways_keeping_data() {
    let Some((d, fs, c2)) = scene() else {
        return;
    };
    let from = (d.packages(), d.tree());
    let plan = d
        .env
        .run(&["switch", &c2, "--dry-run", "--json"])
        .ok()
        .json();
    let n = plan["steps"].as_array().unwrap().len() as u64;
    d.env.run(&["switch", &c2]).ok();
    let to = (d.packages(), d.tree());
    assert!(
        to.0.contains("sg-db 1.0 rc"),
        "removed, not purged: {}",
        to.0
    );
    assert!(
        to.1.contains("/var/lib/sg-db/data file") && to.1.contains("/data/.sysgen-data/db"),
        "the package's state and the detached dataset stay"
    );
    drop(fs);
    drop(d);

    for k in 1..=n {
        for back in [false, true] {
            let Some((d, _fs, c2)) = scene() else {
                return;
            };
            let crashed = d.env.run_with_fault(k, &["switch", &c2]);
            assert!(crashed.killed, "k={k}: {crashed:?}");
            let (how, want) = if back {
                (vec!["recover", "--rollback"], &from)
            } else {
                (vec!["recover"], &to)
            };
            d.env.run(&how).ok();
            let mut tree = d.tree();
            if back {
                // The undo leaves the empty retention directories behind
                // (as tests/datasets_crash.rs accepts); anything in them
                // would still differ.
                tree = tree
                    .lines()
                    .filter(|l| !(l.starts_with("/data/.sysgen-data") && l.contains(" dir ")))
                    .collect::<Vec<_>>()
                    .join("\n");
            }
            assert_same(
                &(d.packages(), tree),
                want,
                &format!("crash after step {k} of {n}, then {how:?}"),
            );
            let st = d.env.run(&["status", "--json"]).ok().json();
            assert!(st["interrupted"].is_null(), "k={k}: {st}");
            assert_eq!(st["active"]["number"], if back { 1 } else { 2 }, "k={k}");
        }
    }
}
