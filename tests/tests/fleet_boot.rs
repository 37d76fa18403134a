//! The dead-man's rollback where systemd is PID 1 (a real systemd booted
//! in a namespace, tests/src/services.rs): the watcher is a transient
//! systemd timer, and the shipped `sysgen-confirm-check.service` finishes
//! the rollback of a switch whose watcher was lost (a reboot) once it
//! expired; without a record it does not even start.

#![allow(
    clippy::unwrap_used,
    reason = "helpers of tests: a panic is a failed test with its message"
)]

use std::fs;
use std::path::Path;

use serde_json::json;
use sysgen_tests::fleet::wait_for;
use sysgen_tests::services::Booted;

const UNIT: &str = "sysgen-confirm-check.service";

/// The packaged unit, with the binary under test's path (the booted root
/// has the host's `/usr`, read-only).
fn install_unit(sd: &Booted) {
    let packaging = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging");
    let dir = sd.at("/etc/systemd/system");
    fs::create_dir_all(dir.join(format!("{UNIT}.d"))).unwrap();
    fs::copy(packaging.join(UNIT), dir.join(UNIT)).unwrap();
    fs::write(
        dir.join(format!("{UNIT}.d/binary.conf")),
        "[Service]\nExecStart=\nExecStart=/sysgen-test/sysgen confirm --check --wait\n",
    )
    .unwrap();
    sd.systemctl(&["daemon-reload"]).ok();
}

fn motd(sd: &Booted) -> String {
    fs::read_to_string(sd.at("/etc/motd")).unwrap_or_default()
}

fn pending(sd: &Booted) -> Option<serde_json::Value> {
    let bytes = fs::read(sd.at("/var/lib/sysgen/confirm.json")).ok()?;
    Some(serde_json::from_slice(&bytes).unwrap())
}

#[test]
fn with_systemd_the_watcher_is_a_timer_and_the_boot_unit_finishes_a_lost_rollback() {
    let sd = Booted::boot();
    install_unit(&sd);
    let one = sd.config(
        "one.json",
        json!({ "files": { "/etc/motd": { "content": "one\n" } } }),
    );
    let two = sd.config(
        "two.json",
        json!({ "files": { "/etc/motd": { "content": "two\n" } } }),
    );
    sd.sysgen(&["switch", &one]).ok();

    // No record: the unit's condition keeps it from starting.
    sd.systemctl(&["start", UNIT]).ok();
    assert_eq!(sd.prop(UNIT, "ConditionResult"), "no");

    // The watcher is a transient timer, and it rolls back.
    sd.sysgen(&["switch", &two, "--confirm-within", "2s"]).ok();
    assert_eq!(motd(&sd), "two\n");
    let p = pending(&sd).unwrap();
    assert_eq!(p["watcher"]["kind"], "systemd", "{p}");
    assert!(
        wait_for(60, || motd(&sd) == "one\n"),
        "the timer rolled back; record: {:?}",
        pending(&sd)
    );
    assert!(wait_for(10, || pending(&sd)
        .is_some_and(|p| !p["rolled_back"].is_null())));

    // A reboot loses the timer; the boot unit finishes the job.
    sd.sysgen(&["switch", &two, "--confirm-within", "2s"]).ok();
    let unit = pending(&sd).unwrap()["watcher"]["unit"]
        .as_str()
        .unwrap()
        .to_owned();
    sd.systemctl(&["stop", &format!("{unit}.timer")]).ok();
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(motd(&sd), "two\n", "nothing rolled back without the timer");
    sd.systemctl(&["start", UNIT]).ok();
    assert!(
        wait_for(60, || motd(&sd) == "one\n"),
        "the boot unit rolled back: {}",
        sd.systemctl(&["status", UNIT, "--no-pager"]).stdout
    );
    assert!(wait_for(30, || sd.prop(UNIT, "ActiveState") == "inactive"));
    assert_eq!(sd.prop(UNIT, "Result"), "success");
    let st = sd.sysgen(&["--json", "status"]).ok().json();
    assert_eq!(st["active"]["number"], 1);
}
