//! Crash safety of service steps (SPEC §4), with the real
//! `systemctl --root` on scratch roots: a crash is injected after every
//! step of switches that enable, disable and restore units; `recover` must
//! then land exactly on the target tree (enablement links included) and
//! `recover --rollback` exactly on the starting one.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is a failed test with its message"
)]

use std::process::Command;

use serde_json::{Value, json};
use sysgen_tests::TestEnv;
use sysgen_tests::services::logging_unit;

fn host(env: &TestEnv) {
    std::fs::create_dir_all(env.at("/var/lib")).unwrap();
    env.write_root(
        "/lib/systemd/system/vendor.service",
        &logging_unit("vendor"),
    );
    let ok = Command::new("systemctl")
        .arg(format!("--root={}", env.root().display()))
        .args(["enable", "vendor.service"])
        .output()
        .unwrap()
        .status
        .success();
    assert!(ok, "setup: systemctl --root enable");
}

fn c1() -> Value {
    json!({
        "files": {
            "/etc/systemd/system/app.service": { "content": logging_unit("app") },
            "/etc/app.conf": { "content": "v1\n" }
        },
        "services": {
            "app.service": { "restart_on": ["/etc/app.conf"] },
            "vendor.service": { "enable": false }
        }
    })
}

fn c2() -> Value {
    json!({
        "files": {
            "/etc/systemd/system/new.service": { "content": logging_unit("new") },
            "/etc/app.conf": { "content": "v2\n" }
        },
        "services": { "new.service": {} }
    })
}

/// Brings a fresh root to the starting state; returns the command to crash.
type Setup = fn(&TestEnv) -> Vec<String>;

fn first(env: &TestEnv) -> Vec<String> {
    host(env);
    vec![
        "switch".into(),
        env.config("c1.json", c1()).to_str().unwrap().into(),
    ]
}

fn change(env: &TestEnv) -> Vec<String> {
    let mut cmd = first(env);
    env.run(&["switch", &cmd[1]]).ok();
    cmd[1] = env.config("c2.json", c2()).to_str().unwrap().into();
    cmd
}

fn rollback(env: &TestEnv) -> Vec<String> {
    let cmd = change(env);
    env.run(&["switch", &cmd[1]]).ok();
    vec!["rollback".into()]
}

fn active(env: &TestEnv) -> Option<u64> {
    env.run(&["--json", "list"]).ok().json()["active"].as_u64()
}

fn run(env: &TestEnv, cmd: &[String], fault: Option<u64>) -> sysgen_tests::Run {
    let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
    match fault {
        Some(k) => env.run_with_fault(k, &args),
        None => env.run(&args),
    }
}

fn crash_every_step(name: &str, setup: Setup, from: Option<u64>, to: u64) {
    let reference = TestEnv::new();
    let cmd = setup(&reference);
    let from_tree = reference.tree();
    let mut dry = cmd.clone();
    dry.extend(["--dry-run".into(), "--json".into()]);
    let n = run(&reference, &dry, None).ok().json()["steps"]
        .as_array()
        .unwrap()
        .len() as u64;
    run(&reference, &cmd, None).ok();
    let to_tree = reference.tree();
    assert_ne!(from_tree, to_tree, "{name}: changes nothing");
    assert_eq!(active(&reference), Some(to));

    for k in 1..=n {
        for back in [false, true] {
            let ctx = format!("{name}: crash after step {k} of {n}, recover (rollback: {back})");
            let env = TestEnv::new();
            let cmd = setup(&env);
            assert_eq!(env.tree(), from_tree, "{ctx}: setup is not repeatable");
            let r = run(&env, &cmd, Some(k));
            assert!(r.killed, "{ctx}: the fault did not kill the process: {r:?}");
            let mut args = vec!["recover"];
            if back {
                args.push("--rollback");
            }
            env.run(&args).ok();
            let (want_tree, want_active) = if back {
                (&from_tree, from)
            } else {
                (&to_tree, Some(to))
            };
            assert_eq!(&env.tree(), want_tree, "{ctx}: wrong tree");
            assert_eq!(active(&env), want_active, "{ctx}: wrong generation");
            if want_active.is_some() {
                env.run(&["verify"]).ok();
            }
        }
    }
}

#[test]
fn crash_at_every_step_of_a_first_switch_with_units() {
    crash_every_step("first switch", first, None, 1);
}

#[test]
fn crash_at_every_step_of_a_switch_that_swaps_units() {
    crash_every_step("switch 1 -> 2", change, Some(1), 2);
}

#[test]
fn crash_at_every_step_of_a_rollback_that_restores_units() {
    crash_every_step("rollback 2 -> 1", rollback, Some(2), 1);
}
