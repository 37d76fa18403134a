//! Issue 11: a crash at every named fault point inside a dataset step
//! (`datasets.*` of `sysgen_store::fault::POINTS`) loses no data, and
//! `recover` (or `recover --rollback`) then lands exactly on one
//! generation. Directory datasets, whose steps share the retention-area
//! code with btrfs.

#![allow(
    clippy::unwrap_used,
    reason = "helpers of tests: a panic is a failed test with its message"
)]

use std::fs;

use serde_json::json;
use sysgen_tests::{Run, TestEnv, s};

/// The data file of the dataset, and its content on the root.
const DB: &str = "/srv/data/db.txt";

fn config(env: &TestEnv, name: &str, motd: &str, datasets: &[&str]) -> String {
    let mut ds = serde_json::Map::new();
    for d in datasets {
        ds.insert(
            (*d).to_owned(),
            json!({ "type": "directory", "snapshot": true }),
        );
    }
    let c = env.config(
        name,
        json!({ "files": { "/etc/motd": { "content": motd } }, "datasets": ds }),
    );
    s(&c).to_owned()
}

fn crash_at(env: &TestEnv, point: &str, args: &[&str]) {
    let r = Run::from(
        env.cmd(args)
            .env("SYSGEN_FAULT_POINT", point)
            .output()
            .unwrap(),
    );
    assert!(r.killed, "{point}: {args:?} did not abort: {r:?}");
}

fn active(env: &TestEnv) -> Option<u64> {
    env.run(&["--json", "status"]).ok().json()["active"]["number"].as_u64()
}

fn read(env: &TestEnv, p: &str) -> String {
    fs::read_to_string(env.at(p)).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// Generation 1 has the dataset with `v1` in it; generation 2 (switched
/// to when `two` is set) only changes `/etc/motd`, and the data becomes
/// `v2` under it.
fn scene(two: bool) -> TestEnv {
    let env = TestEnv::new();
    let c1 = config(&env, "c1.json", "one\n", &["/srv/data"]);
    env.run(&["switch", &c1]).ok();
    fs::write(env.at(DB), "v1\n").unwrap();
    if two {
        let c2 = config(&env, "c2.json", "two\n", &["/srv/data"]);
        env.run(&["switch", &c2]).ok();
        fs::write(env.at(DB), "v2\n").unwrap();
    }
    env
}

/// After a crash in a switch from generation `from` to `to`: `recover`
/// finishes on `to`, the root verifies, and `check` sees the data where
/// `to` keeps it. Then the same crash, undone: `recover --rollback` lands
/// on `from` with the data where `from` keeps it.
fn both_ways(
    point: &str,
    setup: &dyn Fn() -> TestEnv,
    args: &dyn Fn(&TestEnv) -> Vec<String>,
    to: u64,
    from: u64,
    on_to: &dyn Fn(&TestEnv),
    on_from: &dyn Fn(&TestEnv),
) {
    for (rollback, want, check) in [(false, to, on_to), (true, from, on_from)] {
        let env = setup();
        let a = args(&env);
        crash_at(
            &env,
            point,
            &a.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let mut rec = vec!["recover"];
        if rollback {
            rec.push("--rollback");
        }
        env.run(&rec).ok();
        assert_eq!(active(&env), Some(want), "{point} {rec:?}");
        env.run(&["verify"]).ok();
        env.run(&["verify", "--store"]).ok();
        check(&env);
    }
}

fn crash_in_dataset_step(point: &str) {
    let data_is = |v: &'static str| move |env: &TestEnv| assert_eq!(read(env, DB), v, "{DB}");
    match point {
        // Leaving generation 2 for 3 snapshots the dataset (as generation 2 had it).
        "datasets.snapshot.taken" => both_ways(
            point,
            &|| scene(true),
            &|env| {
                vec![
                    "switch".into(),
                    config(env, "c3.json", "three\n", &["/srv/data"]),
                ]
            },
            3,
            2,
            &|env| {
                assert_eq!(read(env, DB), "v2\n");
                assert_eq!(
                    read(env, "/srv/.sysgen-data/data/snapshots/gen-2/db.txt"),
                    "v2\n"
                );
            },
            &data_is("v2\n"),
        ),
        // A new dataset comes in next to the old one.
        "datasets.attach.attached" => both_ways(
            point,
            &|| scene(false),
            &|env| {
                let c = config(env, "c2.json", "two\n", &["/srv/data", "/srv/new"]);
                vec!["switch".into(), c]
            },
            2,
            1,
            &|env| {
                assert_eq!(read(env, DB), "v1\n");
                assert!(env.at("/srv/new").is_dir());
            },
            &|env| {
                assert_eq!(read(env, DB), "v1\n");
                assert!(!env.at("/srv/new").exists());
            },
        ),
        // The dataset leaves: detached, its data kept.
        "datasets.detach.area-made" => both_ways(
            point,
            &|| scene(false),
            &|env| vec!["switch".into(), config(env, "c2.json", "two\n", &[])],
            2,
            1,
            &|env| {
                assert!(!env.at("/srv/data").exists());
                assert_eq!(read(env, "/srv/.sysgen-data/data/detached/db.txt"), "v1\n");
            },
            &data_is("v1\n"),
        ),
        // `rollback --with-data` to 1 puts generation 1's data back; what
        // was there stays as the pre-rollback snapshot.
        "datasets.restore.staged" | "datasets.restore.set-aside" => both_ways(
            point,
            &|| scene(true),
            &|_| {
                vec![
                    "rollback".into(),
                    "--to".into(),
                    "1".into(),
                    "--with-data".into(),
                ]
            },
            1,
            2,
            &|env| {
                assert_eq!(read(env, DB), "v1\n");
                let snaps = env.at("/srv/.sysgen-data/data/snapshots");
                let pre: Vec<String> = fs::read_dir(&snaps)
                    .unwrap()
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("pre-rollback-"))
                    .collect();
                assert_eq!(pre.len(), 1, "{pre:?}");
                assert_eq!(
                    fs::read_to_string(snaps.join(&pre[0]).join("db.txt")).unwrap(),
                    "v2\n"
                );
            },
            &data_is("v2\n"),
        ),
        _ => panic!("{point}: no crash test knows where this point is; add one"),
    }
}

#[test]
fn a_crash_at_every_dataset_fault_point_loses_no_data_and_recovers_either_way() {
    let points: Vec<&str> = sysgen_store::fault::POINTS
        .iter()
        .copied()
        .filter(|p| p.starts_with("datasets."))
        .collect();
    assert!(!points.is_empty());
    for point in points {
        crash_in_dataset_step(point);
    }
}
