//! Debian's real `hello` from the archive, installed and removed with the
//! root's own apt and dpkg (a scratch Debian root, `sysgen_tests::packages`).
//! It needs the network; without it, it says why and is skipped only when
//! `SYSGEN_TEST_ALLOW_SKIP=1` (see `cannot_run`).

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is a failed test with its message"
)]

use serde_json::json;
use sysgen_tests::cannot_run;
use sysgen_tests::packages::DebEnv;

/// Debian's real `hello`, from the archive: needs the network.
#[test]
fn installs_and_removes_debians_hello_from_the_archive() {
    let d = DebEnv::new();
    d.env.write_root(
        "/etc/apt/sources.list",
        "deb http://deb.debian.org/debian bookworm main\n",
    );
    let update = std::process::Command::new("timeout")
        .arg("120")
        .arg("chroot")
        .arg(d.env.root())
        .args(["apt-get", "update", "-qq"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&update.stderr);
    if !update.status.success()
        || stderr.contains("Failed to fetch")
        || stderr.contains("Could not resolve")
    {
        cannot_run(
            "installs_and_removes_debians_hello_from_the_archive",
            &format!("the Debian archive is unreachable ({})", stderr.trim()),
        );
        return;
    }
    let before = (d.packages(), d.tree());
    let c1 = d
        .env
        .config("hello.json", json!({ "packages": { "apt": ["hello"] } }));
    let c0 = d.env.config("none.json", json!({}));
    d.env.run(&["switch", c1.to_str().unwrap()]).ok();
    let greeting = d.chroot(&["hello"]);
    assert_eq!(greeting, "Hello, world!\n");
    d.env.run(&["switch", c0.to_str().unwrap()]).ok();
    assert_eq!((d.packages(), d.tree()), before);
}
