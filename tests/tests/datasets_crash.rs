//! Crash safety of dataset switches (issue 5): for each transition, on
//! `directory` datasets and on a real btrfs on a loop device, the process is
//! aborted after EVERY step of the plan (`SYSGEN_FAULT_AFTER_STEPS=k`). Then
//! `recover` must land exactly on the target tree (retention areas and
//! snapshots included), and `recover --rollback` exactly on the starting
//! tree outside sysgen's retention areas, with every data file where it was:
//! no data is lost either way. Trees come from roots that never crashed.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is a failed test with its message"
)]

use std::fs;

use serde_json::{Value, json};
use sysgen_tests::TestEnv;
use sysgen_tests::datasets::Backing;

#[derive(Clone, Copy)]
struct Scenario {
    name: &'static str,
    setup: fn(&TestEnv, &str) -> Vec<String>,
    from: Option<u64>,
    to: u64,
    /// Data files (path, content) that must be in place after `recover`.
    after: &'static [(&'static str, &'static str)],
    /// … and after `recover --rollback`.
    before: &'static [(&'static str, &'static str)],
}

fn c1(ty: &str) -> Value {
    json!({
        "datasets": {
            "/srv/data": { "type": ty, "snapshot": true, "mode": "0750" },
            "/srv/keep": { "type": ty }
        },
        "files": { "/srv/data/README": { "content": "managed\n" } }
    })
}

fn c1b(ty: &str) -> Value {
    let mut v = c1(ty);
    v["files"]["/etc/motd"] = json!({ "content": "b\n" });
    v
}

fn c2(ty: &str) -> Value {
    json!({
        "datasets": { "/srv/keep": { "type": ty } },
        "files": { "/etc/motd": { "content": "2\n" } }
    })
}

fn cfgs(env: &TestEnv, ty: &str) -> [String; 3] {
    [
        env.config("c1.json", c1(ty)),
        env.config("c1b.json", c1b(ty)),
        env.config("c2.json", c2(ty)),
    ]
    .map(|p| p.to_str().unwrap().to_owned())
}

fn host(env: &TestEnv) {
    fs::create_dir_all(env.at("/var/lib")).unwrap();
}

fn setup_create(env: &TestEnv, ty: &str) -> Vec<String> {
    host(env);
    let [c1, ..] = cfgs(env, ty);
    vec!["switch".into(), c1]
}

fn setup_leave(env: &TestEnv, ty: &str) -> Vec<String> {
    host(env);
    let [c1, _, c2] = cfgs(env, ty);
    env.run(&["switch", &c1]).ok();
    env.write_root("/srv/data/db", "v1\n");
    env.write_root("/srv/keep/k", "k\n");
    vec!["switch".into(), c2]
}

fn setup_back(env: &TestEnv, ty: &str) -> Vec<String> {
    let cmd = setup_leave(env, ty);
    env.run(&["switch", &cmd[1]]).ok();
    vec!["rollback".into()]
}

fn setup_with_data(env: &TestEnv, ty: &str) -> Vec<String> {
    host(env);
    let [c1, c1b, _] = cfgs(env, ty);
    env.run(&["switch", &c1]).ok();
    env.write_root("/srv/data/db", "v1\n");
    env.run(&["switch", &c1b]).ok();
    env.write_root("/srv/data/db", "v2\n");
    vec!["rollback".into(), "--with-data".into()]
}

const CREATE: Scenario = Scenario {
    name: "first switch creating datasets",
    setup: setup_create,
    from: None,
    to: 1,
    after: &[("/srv/data/README", "managed\n")],
    before: &[],
};

const LEAVE: Scenario = Scenario {
    name: "switch snapshotting and detaching a dataset",
    setup: setup_leave,
    from: Some(1),
    to: 2,
    after: &[
        ("/srv/.sysgen-data/data/detached/db", "v1\n"),
        ("/srv/.sysgen-data/data/snapshots/gen-1/db", "v1\n"),
        ("/srv/keep/k", "k\n"),
    ],
    before: &[("/srv/data/db", "v1\n"), ("/srv/keep/k", "k\n")],
};

const BACK: Scenario = Scenario {
    name: "rollback re-attaching a dataset",
    setup: setup_back,
    from: Some(2),
    to: 1,
    after: &[("/srv/data/db", "v1\n"), ("/srv/keep/k", "k\n")],
    before: &[("/srv/.sysgen-data/data/detached/db", "v1\n")],
};

const WITH_DATA: Scenario = Scenario {
    name: "rollback --with-data",
    setup: setup_with_data,
    from: Some(2),
    to: 1,
    after: &[("/srv/data/db", "v1\n")],
    before: &[("/srv/data/db", "v2\n")],
};

/// A pre-rollback snapshot's name holds the time; trees from two runs
/// compare with it masked.
fn norm(tree: &str) -> String {
    tree.lines()
        .map(|l| match l.find("pre-rollback-2-") {
            Some(i) => {
                let rest = &l[i + "pre-rollback-2-".len()..];
                let end = rest
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(rest.len());
                format!("{}pre-rollback-2-T{}", &l[..i], &rest[end..])
            }
            None => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn outside_keep(tree: &str) -> String {
    tree.lines()
        .filter(|l| !l.contains("/.sysgen-data"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn active(env: &TestEnv) -> Option<u64> {
    env.run(&["--json", "list"]).ok().json()["active"].as_u64()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A fresh root (its `/srv` on `what`) in the scenario's starting state.
fn fresh(sc: &Scenario, what: &str) -> Option<(TestEnv, Backing, Vec<String>)> {
    let env = TestEnv::new();
    let backing = Backing::at_srv(&env, what)?;
    let ty = if what == "btrfs" {
        "btrfs"
    } else {
        "directory"
    };
    let cmd = (sc.setup)(&env, ty);
    Some((env, backing, cmd))
}

#[track_caller]
fn assert_files(env: &TestEnv, files: &[(&str, &str)], ctx: &str) {
    for (p, want) in files {
        let got = fs::read_to_string(env.at(p));
        assert!(
            got.as_deref().ok() == Some(*want),
            "{ctx}: {p} should hold {want:?}, has {got:?}\n{}",
            env.tree()
        );
    }
}

fn crash_every_step(sc: Scenario, what: &str) {
    // References, from a root that never crashed.
    let Some((env, _b, cmd)) = fresh(&sc, what) else {
        eprintln!("SKIPPED {}: no loop devices", sc.name);
        return;
    };
    assert_eq!(active(&env), sc.from);
    let from_tree = norm(&env.tree());
    let mut dry = strs(&cmd);
    dry.extend(["--dry-run", "--json"]);
    let n = env.run(&dry).ok().json()["steps"].as_array().unwrap().len() as u64;
    env.run(&strs(&cmd)).ok();
    let to_tree = norm(&env.tree());
    assert_ne!(from_tree, to_tree, "{}: changes nothing", sc.name);
    assert_files(&env, sc.after, sc.name);
    drop(_b);
    drop(env);

    let mut failed = Vec::new();
    for k in 1..=n {
        for rollback in [false, true] {
            let ctx = format!(
                "{} on {what}, crash after step {k} of {n}, recover{}",
                sc.name,
                if rollback { " --rollback" } else { "" }
            );
            let one = std::panic::catch_unwind(|| {
                let (env, _b, cmd) = fresh(&sc, what).unwrap();
                let r = env.run_with_fault(k, &strs(&cmd));
                assert!(r.killed, "{ctx}: not killed: {r:?}");
                let st = env.run(&["--json", "status"]).ok().json();
                assert_eq!(st["interrupted"]["to"], json!(sc.to), "{ctx}: {st}");
                let args: &[&str] = if rollback {
                    &["recover", "--rollback"]
                } else {
                    &["recover"]
                };
                env.run(args).ok();
                let got = norm(&env.tree());
                if rollback {
                    assert_eq!(
                        outside_keep(&got),
                        outside_keep(&from_tree),
                        "{ctx}: not back where it started"
                    );
                    assert_eq!(active(&env), sc.from, "{ctx}");
                    assert_files(&env, sc.before, &ctx);
                } else {
                    assert_eq!(got, to_tree, "{ctx}: not the target");
                    assert_eq!(active(&env), Some(sc.to), "{ctx}");
                    assert_files(&env, sc.after, &ctx);
                }
                let v = env.run(&["verify"]);
                assert_eq!(v.code, Some(0), "{ctx}: verify: {v:?}");
                // Usable again: the next switch works.
                let c1 = env.cfg().join("c1.json");
                env.run(&["switch", c1.to_str().unwrap()]).ok();
            });
            if let Err(e) = one {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                failed.push(msg.lines().take(3).collect::<Vec<_>>().join(" | "));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} crash points fail:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

#[test]
fn directory_create_crash_at_every_step() {
    crash_every_step(CREATE, "ext4");
}

#[test]
fn directory_leave_crash_at_every_step() {
    crash_every_step(LEAVE, "ext4");
}

#[test]
fn directory_back_crash_at_every_step() {
    crash_every_step(BACK, "ext4");
}

#[test]
fn directory_with_data_crash_at_every_step() {
    crash_every_step(WITH_DATA, "ext4");
}

#[test]
fn btrfs_create_crash_at_every_step() {
    crash_every_step(CREATE, "btrfs");
}

#[test]
fn btrfs_leave_crash_at_every_step() {
    crash_every_step(LEAVE, "btrfs");
}

#[test]
fn btrfs_back_crash_at_every_step() {
    crash_every_step(BACK, "btrfs");
}

#[test]
fn btrfs_with_data_crash_at_every_step() {
    crash_every_step(WITH_DATA, "btrfs");
}
