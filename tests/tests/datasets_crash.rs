//! Crash safety of dataset switches (issue 5): for each transition, on
//! `directory` datasets and on a real btrfs on a loop device, the process is
//! aborted after EVERY step of the plan (`SYSGEN_FAULT_AFTER_STEPS=k`). Then
//! `recover` must land exactly on the target tree (retention areas and
//! snapshots included), and `recover --rollback` exactly on the starting
//! tree outside sysgen's retention areas, with every data file where it was:
//! no data is lost either way. Trees come from roots that never crashed.
//! The zfs variants run against the zfs STAND-IN, which keeps an unmounted
//! dataset's files in its own directory, where they are checked too.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is a failed test with its message"
)]

use std::fs;

use serde_json::{Value, json};
use sysgen_tests::datasets::{Backing, zfs_stand_in};
use sysgen_tests::{Run, TestEnv};

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
    /// For zfs, files kept by the stand-in (relative to its directory)
    /// after `recover` and after `recover --rollback`.
    zfs_after: &'static [(&'static str, &'static str)],
    zfs_before: &'static [(&'static str, &'static str)],
}

/// A dataset declaration of type `ty` (for zfs, named `tank/<name>`).
fn ds(ty: &str, name: &str, extra: Value) -> Value {
    let mut v = json!({ "type": ty });
    if ty == "zfs" {
        v["name"] = json!(format!("tank/{name}"));
    }
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

fn c1(ty: &str) -> Value {
    json!({
        "datasets": {
            "/srv/data": ds(ty, "data", json!({ "snapshot": true, "mode": "0750" })),
            "/srv/keep": ds(ty, "keep", json!({}))
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
        "datasets": { "/srv/keep": ds(ty, "keep", json!({})) },
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

fn ty_of(what: &str) -> &str {
    match what {
        "btrfs" | "zfs" => what,
        _ => "directory",
    }
}

fn setup_create(env: &TestEnv, what: &str) -> Vec<String> {
    host(env);
    let [c1, ..] = cfgs(env, ty_of(what));
    vec!["switch".into(), c1]
}

fn setup_leave(env: &TestEnv, what: &str) -> Vec<String> {
    host(env);
    let [c1, _, c2] = cfgs(env, ty_of(what));
    run(env, what, &["switch", &c1]).ok();
    env.write_root("/srv/data/db", "v1\n");
    env.write_root("/srv/keep/k", "k\n");
    vec!["switch".into(), c2]
}

fn setup_back(env: &TestEnv, what: &str) -> Vec<String> {
    let cmd = setup_leave(env, what);
    run(env, what, &["switch", &cmd[1]]).ok();
    vec!["rollback".into()]
}

fn setup_with_data(env: &TestEnv, what: &str) -> Vec<String> {
    host(env);
    let [c1, c1b, _] = cfgs(env, ty_of(what));
    run(env, what, &["switch", &c1]).ok();
    env.write_root("/srv/data/db", "v1\n");
    run(env, what, &["switch", &c1b]).ok();
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
    zfs_after: &[],
    zfs_before: &[],
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
    zfs_after: &[
        ("data/tank%data-sysgen-detached/db", "v1\n"),
        ("snaps/tank%data-sysgen-detached@sysgen-gen-1/db", "v1\n"),
    ],
    zfs_before: &[],
};

const BACK: Scenario = Scenario {
    name: "rollback re-attaching a dataset",
    setup: setup_back,
    from: Some(2),
    to: 1,
    after: &[("/srv/data/db", "v1\n"), ("/srv/keep/k", "k\n")],
    before: &[("/srv/.sysgen-data/data/detached/db", "v1\n")],
    zfs_after: &[],
    zfs_before: &[("data/tank%data-sysgen-detached/db", "v1\n")],
};

const WITH_DATA: Scenario = Scenario {
    name: "rollback --with-data",
    setup: setup_with_data,
    from: Some(2),
    to: 1,
    after: &[("/srv/data/db", "v1\n")],
    before: &[("/srv/data/db", "v2\n")],
    zfs_after: &[],
    zfs_before: &[],
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

/// The tree without snapshots and retained data: sysgen's retention areas
/// (`.sysgen-data`) and zfs's snapshot directories (`.zfs`).
fn outside_keep(tree: &str) -> String {
    tree.lines()
        .filter(|l| !l.contains("/.sysgen-data") && !l.contains("/.zfs"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs sysgen; for zfs, with the zfs STAND-IN (`zfs-stand-in`, see
/// tests/src/bin/zfs-stand-in.rs) and its state in the test's directory.
fn run_k(env: &TestEnv, what: &str, fault: Option<u64>, args: &[&str]) -> Run {
    let zfs = zfs_stand_in();
    let mut all: Vec<&str> = Vec::new();
    if what == "zfs" {
        all.extend(["--zfs", zfs.to_str().unwrap()]);
    }
    all.extend(args);
    let mut c = env.cmd(&all);
    c.env("ZFS_STAND_IN_DIR", env.dir.path().join("zfs"));
    if let Some(k) = fault {
        c.env("SYSGEN_FAULT_AFTER_STEPS", k.to_string());
    }
    let out = c.output().unwrap();
    use std::os::unix::process::ExitStatusExt;
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        killed: out.status.signal().is_some(),
    }
}

fn run(env: &TestEnv, what: &str, args: &[&str]) -> Run {
    run_k(env, what, None, args)
}

fn active(env: &TestEnv, what: &str) -> Option<u64> {
    let r = run(env, what, &["--json", "list"]);
    // Before the first switch there is no state, and `list` says so
    // (exit 1) rather than make one: no generation is active.
    if r.code == Some(1) && r.stderr.contains("no sysgen state here") {
        return None;
    }
    r.ok().json()["active"].as_u64()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A fresh root (its `/srv` on `what`) in the scenario's starting state.
fn fresh(sc: &Scenario, what: &str) -> Option<(TestEnv, Backing, Vec<String>)> {
    let env = TestEnv::new();
    let backing = Backing::at_srv(&env, if what == "zfs" { "ext4" } else { what })?;
    let cmd = (sc.setup)(&env, what);
    Some((env, backing, cmd))
}

/// Data files hold what they should: on the root (`/…`), or for zfs in the
/// stand-in's directory (where an unmounted dataset's files are).
#[track_caller]
fn assert_files(
    env: &TestEnv,
    what: &str,
    files: &[(&str, &str)],
    zfs: &[(&str, &str)],
    ctx: &str,
) {
    let on_root = files
        .iter()
        .filter(|(p, _)| what != "zfs" || !p.contains("/.sysgen-data"))
        .map(|(p, w)| (env.at(p), *w));
    let in_zfs = zfs
        .iter()
        .filter(|_| what == "zfs")
        .map(|(p, w)| (env.dir.path().join("zfs").join(p), *w));
    for (p, want) in on_root.chain(in_zfs) {
        let got = fs::read_to_string(&p);
        assert!(
            got.as_deref().ok() == Some(want),
            "{ctx}: {} should hold {want:?}, has {got:?}\n{}",
            p.display(),
            env.tree()
        );
    }
}

fn crash_every_step(sc: Scenario, what: &str) {
    // References, from a root that never crashed.
    // `None` only when the test may skip: `cannot_run` already said why.
    let Some((env, _b, cmd)) = fresh(&sc, what) else {
        return;
    };
    assert_eq!(active(&env, what), sc.from);
    let from_tree = norm(&env.tree());
    let mut dry = strs(&cmd);
    dry.extend(["--dry-run", "--json"]);
    let n = run(&env, what, &dry).ok().json()["steps"]
        .as_array()
        .unwrap()
        .len() as u64;
    run(&env, what, &strs(&cmd)).ok();
    let to_tree = norm(&env.tree());
    assert_ne!(from_tree, to_tree, "{}: changes nothing", sc.name);
    assert_files(&env, what, sc.after, sc.zfs_after, sc.name);
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
                let r = run_k(&env, what, Some(k), &strs(&cmd));
                assert!(r.killed, "{ctx}: not killed: {r:?}");
                let st = run(&env, what, &["--json", "status"]).ok().json();
                assert_eq!(st["interrupted"]["to"], json!(sc.to), "{ctx}: {st}");
                let args: &[&str] = if rollback {
                    &["recover", "--rollback"]
                } else {
                    &["recover"]
                };
                run(&env, what, args).ok();
                let got = norm(&env.tree());
                if rollback {
                    assert_eq!(
                        outside_keep(&got),
                        outside_keep(&from_tree),
                        "{ctx}: not back where it started"
                    );
                    assert_eq!(active(&env, what), sc.from, "{ctx}");
                    assert_files(&env, what, sc.before, sc.zfs_before, &ctx);
                } else {
                    assert_eq!(got, to_tree, "{ctx}: not the target");
                    assert_eq!(active(&env, what), Some(sc.to), "{ctx}");
                    assert_files(&env, what, sc.after, sc.zfs_after, &ctx);
                }
                let v = run(&env, what, &["verify"]);
                assert_eq!(v.code, Some(0), "{ctx}: verify: {v:?}");
                // Usable again: the next switch works.
                let c1 = env.cfg().join("c1.json");
                run(&env, what, &["switch", c1.to_str().unwrap()]).ok();
                if what == "zfs" {
                    let log = fs::read_to_string(env.dir.path().join("zfs/calls.log")).unwrap();
                    assert!(!log.contains("INVALID"), "{ctx}: bad zfs call:\n{log}");
                }
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

// zfs, against the zfs STAND-IN (ZFS cannot run here).

#[test]
fn zfs_stand_in_create_crash_at_every_step() {
    crash_every_step(CREATE, "zfs");
}

#[test]
fn zfs_stand_in_leave_crash_at_every_step() {
    crash_every_step(LEAVE, "zfs");
}

#[test]
fn zfs_stand_in_back_crash_at_every_step() {
    crash_every_step(BACK, "zfs");
}

#[test]
fn zfs_stand_in_with_data_crash_at_every_step() {
    crash_every_step(WITH_DATA, "zfs");
}
