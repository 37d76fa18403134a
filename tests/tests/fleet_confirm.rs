//! The dead-man's rollback: a switch made with `--confirm-within` stays
//! only if `sysgen confirm` keeps it in time; otherwise the host goes back
//! by itself: through its watcher, through the boot check after a reboot
//! (the watcher is killed, as a reboot would), and when the ssh
//! connection that ran the switch drops (a real sshd on loopback).

#![allow(
    clippy::unwrap_used,
    reason = "helpers of tests: a panic is a failed test with its message"
)]

use std::path::PathBuf;

use serde_json::json;
use sysgen_tests::fleet::{ssh, wait_for};
use sysgen_tests::sshd::Sshd;
use sysgen_tests::{TestEnv, s};

/// A root on generation 1 with configuration 2 written: (env, gen1 tree,
/// gen2 config).
fn two_generations() -> (TestEnv, String, PathBuf) {
    let env = TestEnv::new();
    let c1 = env.config(
        "c1.json",
        json!({ "files": { "/etc/motd": { "content": "one\n" }, "/etc/keep": { "content": "k\n" } } }),
    );
    env.switch(&c1);
    let gen1 = env.tree();
    let c2 = env.config(
        "c2.json",
        json!({ "files": { "/etc/motd": { "content": "two\n" }, "/etc/new": { "content": "n\n" } } }),
    );
    (env, gen1, c2)
}

fn active(env: &TestEnv) -> u64 {
    env.run(&["--json", "status"]).ok().json()["active"]["number"]
        .as_u64()
        .unwrap_or_else(|| panic!("no active generation"))
}

fn pending(env: &TestEnv) -> Option<serde_json::Value> {
    let bytes = std::fs::read(env.state().join("confirm.json")).ok()?;
    Some(serde_json::from_slice(&bytes).unwrap())
}

/// The id the `--json` switch went to.
fn switched_to(r: &sysgen_tests::Run) -> String {
    r.json()["id"].as_str().unwrap().to_owned()
}

#[test]
fn a_confirmed_switch_stays() {
    let (env, _gen1, c2) = two_generations();
    let r = env
        .run(&["--json", "switch", s(&c2), "--confirm-within", "8s"])
        .ok();
    let gen2 = env.tree();
    let id = switched_to(&r);
    assert!(pending(&env).is_some(), "the record is written");
    // The waiting watcher never holds the state lock: commands that take
    // it (as confirm does) are never turned away while it waits.
    for _ in 0..20 {
        let c = env.run(&["--json", "confirm", "--check"]).ok().json();
        assert_eq!(c["outcome"], "pending");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let c = env.run(&["--json", "confirm", &id]).ok().json();
    assert_eq!(c["outcome"], "confirmed");
    assert_eq!(c["active"], 2);
    assert!(pending(&env).is_none(), "the record is gone once confirmed");
    // Past the deadline, nothing moved.
    std::thread::sleep(std::time::Duration::from_secs(8));
    assert_eq!(env.tree(), gen2);
    assert_eq!(active(&env), 2);
    let c = env.run(&["--json", "confirm", "--check"]).ok().json();
    assert_eq!(c["outcome"], "nothing-pending");
    // Confirming again says the generation stands.
    env.run(&["confirm", &id]).ok();
}

#[test]
fn an_unconfirmed_switch_rolls_back_by_itself_and_a_late_confirm_is_refused() {
    let (env, gen1, c2) = two_generations();
    let r = env
        .run(&["--json", "switch", s(&c2), "--confirm-within", "2s"])
        .ok();
    let id = switched_to(&r);
    assert_ne!(env.tree(), gen1, "generation 2 is on the root");
    assert!(
        wait_for(30, || env.tree() == gen1),
        "the watcher rolled the root back to generation 1; tree:\n{}",
        env.tree()
    );
    assert!(wait_for(10, || pending(&env)
        .is_some_and(|p| !p["rolled_back"].is_null())));
    assert_eq!(active(&env), 1);
    // The deployer's confirm comes too late: it must not report success.
    let late = env.run(&["--json", "confirm", &id]).expect(1);
    assert_eq!(late.json()["outcome"], "already-rolled-back");
    assert!(late.stderr.contains("too late"), "{}", late.stderr);
    assert_eq!(env.tree(), gen1);
    // The history says how the root came back.
    let log = env.run(&["--json", "log"]).ok().json();
    assert_eq!(
        log.as_array()
            .map(Vec::len)
            .or(log["activations"].as_array().map(Vec::len)),
        Some(3),
        "{log}"
    );
}

#[test]
fn the_boot_check_rolls_back_a_switch_that_expired_while_the_host_was_down() {
    let (env, gen1, c2) = two_generations();
    env.run(&["switch", s(&c2), "--confirm-within", "2s"]).ok();
    let gen2 = env.tree();
    // The reboot: every process ends, the watcher with them.
    let p = pending(&env).expect("record");
    let pid = p["watcher"]["pid"].as_i64().expect("a detached watcher");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(env.tree(), gen2, "nothing rolled back without the watcher");
    // At boot, sysgen-confirm-check.service runs exactly this.
    let r = env.run(&["--json", "confirm", "--check", "--wait"]).ok();
    assert_eq!(r.json()["outcome"], "rolled-back");
    assert_eq!(r.json()["active"], 1);
    assert_eq!(env.tree(), gen1);
    // A second boot finds nothing more to do.
    let again = env.run(&["--json", "confirm", "--check"]).ok().json();
    assert_eq!(again["outcome"], "already-rolled-back");
    assert_eq!(env.tree(), gen1);
}

#[test]
fn a_confirm_after_the_deadline_rolls_back_and_says_so() {
    let (env, gen1, c2) = two_generations();
    let r = env
        .run(&["--json", "switch", s(&c2), "--confirm-within", "1s"])
        .ok();
    let id = switched_to(&r);
    let pid = pending(&env).unwrap()["watcher"]["pid"].as_i64().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let late = env.run(&["--json", "confirm", &id]).expect(1);
    assert_eq!(late.json()["outcome"], "rolled-back");
    assert_eq!(env.tree(), gen1);
}

#[test]
fn bad_requests_change_nothing() {
    // Nothing active: nothing to roll back to.
    let env = TestEnv::new();
    let c1 = env.config(
        "c1.json",
        json!({ "files": { "/etc/motd": { "content": "one\n" } } }),
    );
    let before = env.tree();
    let r = env
        .run(&["switch", s(&c1), "--confirm-within", "1m"])
        .expect(2);
    assert!(r.stderr.contains("nothing to roll back to"), "{}", r.stderr);
    // Opening the state made its directory, and nothing else.
    let made = sysgen_tests::tree_with(&before, &["/var dir 0755 0:0", "/var/lib dir 0755 0:0"]);
    assert_eq!(env.tree(), made);
    let list = env.run(&["--json", "list"]).ok().json();
    assert_eq!(list["generations"], json!([]), "nothing was built: {list}");
    assert!(pending(&env).is_none());

    let (env, _gen1, c2) = two_generations();
    let gen1 = env.tree();
    let r = env.run(&["confirm"]).expect(2);
    assert!(
        r.stderr.contains("no confirmation is pending"),
        "{}",
        r.stderr
    );
    let r = env
        .run(&["switch", s(&c2), "--confirm-within", "soon"])
        .expect(2);
    assert!(r.stderr.contains("not a duration"), "{}", r.stderr);
    assert_eq!(env.tree(), gen1);
    // Confirming another generation than the pending one is refused.
    env.run(&["switch", s(&c2), "--confirm-within", "1m"]).ok();
    let r = env.run(&["confirm", "1"]).expect(2);
    assert!(r.stderr.contains("not"), "{}", r.stderr);
    assert!(pending(&env).is_some(), "the record stays");
    // A damaged record is named, not trusted.
    std::fs::write(env.state().join("confirm.json"), b"{oops").unwrap();
    let r = env.run(&["confirm", "--check"]).expect(1);
    assert!(r.stderr.contains("confirm.json"), "{}", r.stderr);
    std::fs::remove_file(env.state().join("confirm.json")).unwrap();
}

#[test]
fn a_dropped_ssh_connection_after_the_switch_ends_in_a_rollback() {
    let Some(sshd) = Sshd::start("a_dropped_ssh_connection_after_the_switch_ends_in_a_rollback")
    else {
        return;
    };
    let (env, gen1, c2) = two_generations();
    let bin = TestEnv::sysgen_bin();
    // The deployer's connection: the switch, then it hangs (as one does
    // when the switch broke the network) until it is killed.
    let remote = format!(
        "{} --root {} switch {} --confirm-within 3s && sleep 600",
        bin.display(),
        env.root().display(),
        c2.display()
    );
    let mut client = ssh(&sshd, &[&remote])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_for(60, || env.at("/etc/new").exists()
            && !env.state().join("journal.json").exists()
            && active(&env) == 2),
        "the switch ran over ssh"
    );
    assert_ne!(env.tree(), gen1);
    client.kill().unwrap();
    client.wait().unwrap();
    // No confirm comes: the host is back on generation 1 after the timeout.
    assert!(
        wait_for(30, || env.tree() == gen1),
        "rolled back; tree:\n{}",
        env.tree()
    );
    assert!(wait_for(10, || active(&env) == 1));
}
