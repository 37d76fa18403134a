//! Maintainer scripts under control (issue #16 items 5 and 6), with the
//! real apt and dpkg of a scratch Debian root:
//!
//! - a postinst that hangs is stopped at the package timeout, with every
//!   process it started, and no dpkg is left holding the lock;
//! - SIGTERM or SIGINT to sysgen stops apt and dpkg, waits for them, and
//!   leaves a journal; `status` tells the running switch (the lock holder's pid)
//!   from the interrupted one;
//! - undoing a switch cut short inside a postinst (a timeout, a signal, a
//!   power cut) never runs that postinst again.
//!
//! Each test compares the whole package list and the whole root tree.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is a failed test with its message"
)]

use std::time::{Duration, Instant};

use serde_json::json;
use sysgen_tests::packages::{DebEnv, Pkg, assert_same};

/// sg-hang's postinst counts its runs in /tmp/sg-runs and never ends;
/// sg-cut's cuts the power: it kills sysgen (the pid in its lock file)
/// and its own process group (apt, dpkg, itself) at once, the first time.
fn published() -> DebEnv {
    let d = DebEnv::new();
    d.build(&Pkg {
        files: &[("/usr/share/sg-hang/h.txt", "hang\n")],
        postinst: Some("echo run >> /tmp/sg-runs\nexec sleep 600"),
        ..Pkg::new("sg-hang", "1.0")
    });
    d.build(&Pkg {
        files: &[("/usr/share/sg-cut/c.txt", "cut\n")],
        postinst: Some(
            "echo run >> /tmp/sg-runs\nkill -KILL $(cat /var/lib/sysgen/lock)\nkill -KILL 0",
        ),
        ..Pkg::new("sg-cut", "1.0")
    });
    d.publish();
    d
}

fn cfg(d: &DebEnv, name: &str, apt: &[&str], motd: &str) -> String {
    d.env
        .config(
            name,
            json!({ "packages": { "apt": apt }, "files": { "/etc/motd": { "content": motd } } }),
        )
        .display()
        .to_string()
}

fn runs(d: &DebEnv) -> usize {
    std::fs::read_to_string(d.env.at("/tmp/sg-runs"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// The root as generation 1 left it, after a switch to `c2` was cut short
/// inside the postinst and undone: the postinst ran once, never again.
fn undone_exactly(d: &DebEnv, from: &(String, String)) {
    let st = d.env.run(&["status"]).ok();
    assert!(
        st.stdout
            .contains("interrupted: a switch to generation 2 did not finish")
            && !st.stdout.contains("running"),
        "{}",
        st.stdout
    );
    // Nothing holds the dpkg lock any more (this panics otherwise).
    drop(d.hold_dpkg_lock());
    let started = Instant::now();
    d.env.run(&["recover", "--rollback"]).ok();
    assert!(started.elapsed() < Duration::from_secs(120), "did not hang");
    assert_same(&(d.packages(), d.tree()), from, "undone");
    assert_eq!(runs(d), 1, "the postinst being undone never ran again");
    let st = d.env.run(&["status", "--json"]).ok().json();
    assert_eq!(st["active"]["number"], 1, "{st}");
}

#[test]
fn a_hung_postinst_is_stopped_at_the_timeout_and_the_undo_never_runs_it_again() {
    let d = published();
    let c1 = cfg(&d, "one.json", &[], "one\n");
    let c2 = cfg(&d, "two.json", &["sg-hang"], "two\n");
    d.env.run(&["switch", &c1]).ok();
    let from = (d.packages(), d.tree());
    let started = Instant::now();
    let out = d
        .env
        .run(&["switch", "--package-timeout", "3", &c2])
        .expect(1);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "stopped at the timeout, not after the script's hour"
    );
    assert!(
        out.stderr
            .contains("did not finish within 3 s (the package timeout); sysgen stopped it and every process it started")
            && out.stderr.contains("recover --rollback"),
        "{}",
        out.stderr
    );
    undone_exactly(&d, &from);
}

#[test]
fn sigterm_stops_apt_and_dpkg_and_status_tells_running_from_interrupted() {
    stopped_by("TERM", 15);
}

#[test]
fn sigint_stops_apt_and_dpkg_as_sigterm_does() {
    stopped_by("INT", 2);
}

/// A switch inside a hung postinst, signalled: sysgen stops apt, dpkg and
/// the script, waits, exits 128 + the signal, and leaves its journal.
fn stopped_by(signal: &str, number: i32) {
    let d = published();
    let c1 = cfg(&d, "one.json", &[], "one\n");
    let c2 = cfg(&d, "two.json", &["sg-hang"], "two\n");
    d.env.run(&["switch", &c1]).ok();
    let from = (d.packages(), d.tree());
    let child = d
        .env
        .cmd(&["switch", &c2])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(120);
    while runs(&d) == 0 {
        assert!(Instant::now() < until, "the postinst never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    let st = d.env.run(&["status"]).ok();
    assert!(
        st.stdout.contains(&format!(
            "running: a switch to generation 2 is under way (pid {} holds the lock)",
            child.id()
        )) && !st.stdout.contains("interrupted"),
        "{}",
        st.stdout
    );
    let st = d.env.run(&["status", "--json"]).ok().json();
    assert_eq!(st["running"], child.id(), "{st}");
    let kill = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(128 + number), "128 + the signal");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "sysgen was asked to stop (SIG{signal}); it stopped apt-get and every process it started"
        )) && stderr.contains("recover"),
        "{stderr}"
    );
    undone_exactly(&d, &from);
}

#[test]
fn undoing_a_power_cut_inside_a_postinst_never_runs_it_again() {
    let d = published();
    let c1 = cfg(&d, "one.json", &[], "one\n");
    let c2 = cfg(&d, "two.json", &["sg-cut"], "two\n");
    d.env.run(&["switch", &c1]).ok();
    let from = (d.packages(), d.tree());
    let out = d.env.run(&["switch", &c2]);
    assert_eq!(out.code, None, "killed: {out:?}");
    assert!(d.packages().contains("sg-cut 1.0 iF"), "{}", d.packages());
    undone_exactly(&d, &from);
}
