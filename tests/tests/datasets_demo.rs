//! The README tour's datasets step is `scripts/demo-datasets`: run it
//! against the binary under test, so the documented example keeps working.

use sysgen_tests::run_demo_script;

#[test]
fn the_readme_datasets_demo_runs_and_keeps_the_data() {
    let stdout = run_demo_script("demo-datasets");
    for want in [
        "1. snapshot dataset /srv/db (directory) as /srv/.sysgen-data/db/snapshots/gen-1, a copy (leaving generation 1)",
        "detach dataset /srv/db (directory) to /srv/.sysgen-data/db/detached",
        "dataset /srv/db (directory): detached at /srv/.sysgen-data/db/detached, in generation 1, 1 snapshot",
        "$ cat ",
        "would delete detached dataset /srv/db (directory) at /srv/.sysgen-data/db/detached (24 B)",
        "deleted detached dataset /srv/db (directory) at /srv/.sysgen-data/db/detached (24 B)",
    ] {
        assert!(stdout.contains(want), "{want:?} not in:\n{stdout}");
    }
    // The data came back with the rollback, after the detach.
    let back = stdout
        .find("rows written by the app")
        .expect("data shown after rollback");
    assert!(back > stdout.find(" rollback\n").expect("rollback ran"));
}
