//! The README's tour is `scripts/demo`: run it against the binary under
//! test, so the documented example keeps working.

use sysgen_tests::run_demo_script;

#[test]
fn the_readme_demo_runs_and_ends_on_the_rolled_back_generation() {
    let stdout = run_demo_script("demo");
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
