//! The README's tour is `scripts/demo`: run it against the binary under
//! test, so the documented example keeps working.

use std::process::Command;

use sysgen_tests::TestEnv;

#[test]
fn the_readme_demo_runs_and_ends_on_the_rolled_back_generation() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/demo");
    let out = Command::new("bash")
        .arg(demo)
        .env("SYSGEN", TestEnv::sysgen_bin())
        .env("TMPDIR", scratch.path())
        .output()
        .expect("run scripts/demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // After the change, the admin's own motd is back; after rollback, sysgen's.
    let after_change = stdout
        .find("the admin's own motd")
        .expect("restored motd shown");
    let after_rollback = stdout[after_change..]
        .find("Welcome to web1")
        .expect("rolled back motd shown");
    assert!(after_rollback > 0);
    assert!(
        stdout.contains("ok: the root matches generation 1"),
        "{stdout}"
    );
    assert!(stdout.contains("deleted generation 2"), "{stdout}");
    // The service step: enabled offline, runtime steps reported as skipped.
    assert!(
        stdout.contains("enable app.service: newly declared")
            && stdout.contains("skip start app.service")
            && stdout.contains("skipped 3 runtime steps"),
        "{stdout}"
    );
    assert!(stdout.contains("\napp.service\n"), "{stdout}");
}
