//! Validation before anything moves, and generation checks after the
//! switch (issue #13), with the real `visudo` of a Debian root that has
//! sudo installed (the cached debootstrapped root of `packages.rs`, with
//! sudo added once and cached beside it):
//!
//! - a file whose new content fails `visudo -cf %s` leaves the root (whole
//!   tree compared) and the database's generations unchanged, and the
//!   error shows the command and visudo's own message;
//! - a failing generation check rolls the switch back;
//! - a crash after every step of a switch with blocks, a validated file and
//!   a check, then `recover` and `recover --rollback`, each land exactly on
//!   one generation.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is a failed test with its message"
)]

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};
use sysgen_tests::{TestEnv, dump_tree, s};

/// A fresh copy of the sudo root, with `cfg/` beside it.
fn env(test: &str) -> Option<TestEnv> {
    sysgen_tests::sudo::sudo_env(test)
}

/// The generations and activations the database records.
fn history(env: &TestEnv) -> Value {
    let list = env.run(&["--json", "list"]).ok().json();
    let status = env.run(&["--json", "status"]).json();
    json!({ "list": list, "status": status })
}

/// The root's own sudo reads all of its sudoers (modes included).
#[track_caller]
fn visudo_accepts_the_whole_root(env: &TestEnv) {
    let all = Command::new("chroot")
        .arg(env.root())
        .args(["visudo", "-c"])
        .output()
        .unwrap();
    assert!(
        all.status.success(),
        "{}",
        String::from_utf8_lossy(&all.stderr)
    );
}

const OPS_OK: &str = "%ops ALL=(ALL) NOPASSWD: /usr/bin/true\n";
const OPS_BAD: &str = "%ops ALL=(ALL NOPASSWD /usr/bin/true\n";

fn sudoers(content: &str) -> Value {
    json!({
        "files": {
            "/etc/sudoers.d/ops": { "content": content, "mode": "0440", "validate": "visudo -cf %s" }
        }
    })
}

#[test]
fn a_failing_visudo_leaves_the_root_and_the_database_unchanged() {
    let Some(env) = env("a_failing_visudo_leaves_the_root_and_the_database_unchanged") else {
        return;
    };
    let bad_first = env.config("bad.json", sudoers(OPS_BAD));
    let before = tree(&env);
    // What a sysgen killed while it validated left: cleaned up.
    fs::create_dir_all(env.at("/tmp/.sysgen-validate.1.0")).unwrap();
    fs::write(env.at("/tmp/.sysgen-validate.1.0/ops"), OPS_OK).unwrap();
    let out = env.run(&["switch", s(&bad_first)]).expect(2);
    assert!(
        out.stderr
            .contains("files./etc/sudoers.d/ops: its new content failed validation"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("`visudo -cf /tmp/.sysgen-validate."),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("syntax error"),
        "visudo's own message: {}",
        out.stderr
    );
    assert_eq!(
        tree(&env),
        before,
        "nothing changed on the root, no staged copy left"
    );

    let good = env.config("good.json", sudoers(OPS_OK));
    let plan = env.run(&["--json", "switch", "--dry-run", s(&good)]).ok();
    assert!(
        plan.steps().contains(
            &"validate /etc/sudoers.d/ops with `visudo -cf %s` (before anything changes)"
                .to_owned()
        ),
        "{:?}",
        plan.steps()
    );
    env.switch(&good);
    assert_eq!(
        fs::read_to_string(env.at("/etc/sudoers.d/ops")).unwrap(),
        OPS_OK
    );
    // The root's own sudo accepts the whole of it (mode 0440 included).
    visudo_accepts_the_whole_root(&env);

    let tree1 = tree(&env);
    let db = history(&env);
    let out = env.run(&["switch", s(&bad_first)]).expect(2);
    assert!(out.stderr.contains("syntax error"), "{}", out.stderr);
    assert_eq!(tree(&env), tree1, "the root keeps generation 1");
    assert_eq!(
        history(&env),
        db,
        "no generation or activation was recorded"
    );
    assert!(!env.state().join("journal.json").exists());
}

#[test]
fn a_block_in_sudoers_is_validated_with_the_whole_file() {
    let Some(env) = env("a_block_in_sudoers_is_validated_with_the_whole_file") else {
        return;
    };
    let block = |text: &str| {
        json!({ "blocks": { "/etc/sudoers": {
            "ops": { "content": text, "validate": "visudo -cf %s" }
        } } })
    };
    let sudoers = fs::read_to_string(env.at("/etc/sudoers")).unwrap();
    let before = tree(&env);
    let bad = env.config("bad.json", block(OPS_BAD));
    let out = env.run(&["switch", s(&bad)]).expect(2);
    assert!(
        out.stderr
            .contains("blocks./etc/sudoers: its new content failed validation"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("syntax error"), "{}", out.stderr);
    assert_eq!(tree(&env), before);

    let good = env.config("good.json", block(OPS_OK));
    env.switch(&good);
    assert_eq!(
        fs::read_to_string(env.at("/etc/sudoers")).unwrap(),
        format!("{sudoers}# BEGIN sysgen ops\n{OPS_OK}# END sysgen ops\n")
    );
    let meta = fs::metadata(env.at("/etc/sudoers")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777,
        0o440
    );
    visudo_accepts_the_whole_root(&env);
}

#[test]
fn a_failing_generation_check_rolls_the_switch_back() {
    let Some(env) = env("a_failing_generation_check_rolls_the_switch_back") else {
        return;
    };
    let c1 = env.config(
        "c1.json",
        json!({
            "files": { "/etc/app.conf": { "content": "mode = good\n" } },
            "blocks": { "/etc/hosts": { "app": "10.0.0.5 app\n" } },
            "checks": ["grep -q good /etc/app.conf"]
        }),
    );
    env.switch(&c1);
    let tree1 = tree(&env);
    let c2 = env.config(
        "c2.json",
        json!({
            "files": { "/etc/app.conf": { "content": "mode = bad\n" } },
            "blocks": { "/etc/hosts": { "app": "10.0.0.6 app\n" } },
            "checks": ["grep -q good /etc/app.conf", { "command": "echo checked; true", "timeout": 5 }]
        }),
    );
    let out = env.run(&["switch", s(&c2)]).expect(1);
    assert!(
        out.stderr
            .contains("generation check failed: `grep -q good /etc/app.conf` exited with status 1"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("generation 1 is active again"),
        "{}",
        out.stderr
    );
    assert_eq!(tree(&env), tree1, "rolled back to generation 1 exactly");
    env.run(&["verify"]).ok();
    assert!(!env.state().join("journal.json").exists());
    // The history tells the switch was tried and undone.
    let log: serde_json::Value =
        serde_json::from_str(&env.run(&["--json", "log"]).ok().stdout).expect("log --json");
    let last = &log["activations"][1];
    assert_eq!(last["how"], "automatic rollback", "{log}");
    assert_eq!(
        (&last["from"], &last["to"]),
        (&json!(1), &json!(1)),
        "{log}"
    );
    let people = env.run(&["log"]).ok().stdout;
    assert!(
        people.contains(
            "automatic rollback  a switch failed and was undone; generation 1 stayed active"
        ),
        "{people}"
    );
}

/// A switch from generation 1 to 2 that involves every new kind: blocks
/// written and removed (one file created), a validated file and checks.
fn crash_configs(env: &TestEnv) -> (PathBuf, PathBuf) {
    let c1 = env.config(
        "c1.json",
        json!({
            "files": { "/etc/sudoers.d/ops": { "content": OPS_OK, "mode": "0440", "validate": "visudo -cf %s" } },
            "blocks": {
                "/etc/hosts": { "db": "10.0.0.5 db\n", "old": "10.0.0.8 old\n" },
                "/etc/fstab": { "tmp": "tmpfs /tmp tmpfs defaults 0 0\n" }
            },
            "checks": ["test -f /etc/sudoers.d/ops"]
        }),
    );
    let c2 = env.config(
        "c2.json",
        json!({
            "files": { "/etc/sudoers.d/ops": { "content": "%ops ALL=(ALL) ALL\n", "mode": "0440", "validate": "visudo -cf %s" } },
            "blocks": {
                "/etc/hosts": { "db": "10.0.0.6 db\n", "web": "10.0.0.7 web\n" },
                "/etc/sysgen-made.conf": { "x": { "content": "x = 1\n", "comment": ";" } },
                "/etc/sudoers": { "ops": { "content": OPS_OK, "validate": "visudo -cf %s" } }
            },
            "checks": ["grep -q sysgen /etc/hosts", "visudo -c"]
        }),
    );
    (c1, c2)
}

/// The whole root but sysgen's state and `/dev` (reading a device node
/// such as /dev/zero never ends); `/tmp` is in it: no staged copy stays.
fn tree(env: &TestEnv) -> String {
    dump_tree(&env.root(), &[env.state(), env.at("/dev")])
}

#[test]
fn a_crash_after_every_step_recovers_both_ways_onto_one_generation() {
    let name = "a_crash_after_every_step_recovers_both_ways_onto_one_generation";
    // The two ends, and the number of steps, from one clean run; the same
    // root then goes back to generation 1 before each crash.
    let Some(env) = env(name) else {
        return;
    };
    let (c1, c2) = crash_configs(&env);
    env.switch(&c1);
    let tree1 = tree(&env);
    let steps = env
        .run(&["--json", "switch", "--dry-run", s(&c2)])
        .ok()
        .steps()
        .len() as u64;
    env.switch(&c2);
    let tree2 = tree(&env);
    assert_ne!(tree1, tree2);

    for k in 1..steps {
        env.run(&["rollback"]).ok();
        assert_eq!(tree(&env), tree1, "k={k}: rollback to generation 1");
        // Crash at step k, undo it: generation 1 exactly.
        let crashed = env.run_with_fault(k, &["switch", s(&c2)]);
        assert!(crashed.killed, "k={k}: {crashed:?}");
        env.run(&["recover", "--rollback"]).ok();
        assert_eq!(tree(&env), tree1, "k={k}: recover --rollback");
        let active = env.run(&["--json", "status"]).json();
        assert_eq!(active["active"]["number"], 1, "k={k}: {active}");
        // Crash at step k again, finish it: generation 2 exactly.
        let crashed = env.run_with_fault(k, &["switch", s(&c2)]);
        assert!(crashed.killed, "k={k}: {crashed:?}");
        env.run(&["recover"]).ok();
        assert_eq!(tree(&env), tree2, "k={k}: recover");
        env.run(&["verify"]).ok();
    }
}
