//! The Debian package's `sysgen-verify.service` and `.timer`, run by a real
//! systemd (booted in a namespace, tests/src/services.rs): the timer is
//! armed once enabled; the service does nothing on a host without
//! generations, succeeds when the root matches, and on drift fails with
//! the drifted path in its journal.

use std::fs;
use std::path::Path;

use serde_json::json;
use sysgen_tests::services::Booted;

/// The packaged units, installed as the package installs them, but for the
/// binary's path: the booted root has the host's `/usr`, read-only, so the
/// binary under test runs from `/sysgen-test`. A drop-in changes only that.
fn install_units(sd: &Booted) {
    let packaging = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging");
    let dir = sd.at("/etc/systemd/system");
    fs::create_dir_all(dir.join("sysgen-verify.service.d")).expect("mkdir");
    for unit in ["sysgen-verify.service", "sysgen-verify.timer"] {
        fs::copy(packaging.join(unit), dir.join(unit)).expect("copy the unit");
    }
    fs::write(
        dir.join("sysgen-verify.service.d/binary.conf"),
        "[Service]\nExecStart=\nExecStart=/sysgen-test/sysgen verify\n",
    )
    .expect("drop-in");
    sd.systemctl(&["daemon-reload"]).ok();
}

/// Runs the service once, as the timer would, and returns its result.
fn run_verify(sd: &Booted) -> (String, String) {
    // `start` waits for a oneshot to finish; its failure is read below.
    let _ = sd.systemctl(&["start", "sysgen-verify.service"]);
    (
        sd.prop("sysgen-verify.service", "Result"),
        sd.prop("sysgen-verify.service", "ConditionResult"),
    )
}

/// What the service logged, as `journalctl -u` shows it, and its status:
/// why it failed, when it did.
fn journal(sd: &Booted) -> String {
    let log = sd.inside(
        "/usr/bin/journalctl",
        &["-u", "sysgen-verify.service", "--no-pager", "-o", "cat"],
    );
    let status = sd.systemctl(&["status", "sysgen-verify.service", "--no-pager"]);
    format!("{}\n{}", log.ok().stdout, status.stdout)
}

#[test]
fn the_verify_timer_runs_verify_daily_and_drift_lands_in_the_journal() {
    let sd = Booted::boot();
    install_units(&sd);
    sd.inside(
        "/usr/bin/systemd-analyze",
        &["verify", "--man=no", "sysgen-verify.timer"],
    )
    .ok();

    // Enabled, the timer is armed for the next day.
    sd.systemctl(&["enable", "--now", "sysgen-verify.timer"])
        .ok();
    assert_eq!(sd.prop("sysgen-verify.timer", "ActiveState"), "active");
    let calendar = sd.prop("sysgen-verify.timer", "TimersCalendar");
    assert!(calendar.contains("OnCalendar=*-*-* 00:00:00"), "{calendar}");
    assert_eq!(sd.prop("sysgen-verify.timer", "RandomizedDelayUSec"), "1h");
    assert_eq!(sd.prop("sysgen-verify.timer", "Persistent"), "yes");
    let next = sd.prop("sysgen-verify.timer", "NextElapseUSecRealtime");
    assert!(!next.is_empty() && next != "n/a", "next elapse: {next:?}");

    // No generation yet: the condition skips it, nothing fails.
    assert_eq!(run_verify(&sd), ("success".into(), "no".into()));

    let c = sd.config(
        "c.json",
        json!({ "files": { "/etc/app.conf": { "content": "workers = 4\n" } } }),
    );
    sd.sysgen(&["switch", &c]).ok();
    assert_eq!(
        run_verify(&sd),
        ("success".into(), "yes".into()),
        "{}",
        journal(&sd)
    );

    // Drift: the unit fails, and its journal names the path.
    fs::write(sd.at("/etc/app.conf"), "workers = 64\n").expect("drift");
    assert_eq!(run_verify(&sd), ("exit-code".into(), "yes".into()));
    assert_eq!(
        sd.systemctl(&["is-failed", "sysgen-verify.service"])
            .stdout
            .trim(),
        "failed"
    );
    let journal = journal(&sd);
    assert!(journal.contains("/etc/app.conf"), "{journal}");
}
