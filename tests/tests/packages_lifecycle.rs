//! The life of a package's data (issue #16 items 1, 3, 4), with the real
//! apt and dpkg of a scratch Debian root (`sysgen_tests::packages`):
//!
//! - a package that leaves is removed, not purged: its data and its
//!   admin-edited conffile stay, a rollback finds them where they were,
//!   and gc purges it with the last generation that has it (its dry run
//!   says what that destroys); `packages.purge` asks for it at once;
//! - a generation records the exact closure of its pinned versions, so a
//!   rollback through sysgen's own history runs offline, and one that
//!   cannot is refused before anything changes;
//! - ownership follows dpkg: a package the admin purged and reinstalled
//!   by hand is the admin's.
//!
//! Each test compares the whole package list and the whole root tree.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is a failed test with its message"
)]

use serde_json::json;
use sysgen_tests::packages::{DebEnv, Pkg, assert_same};

fn published() -> DebEnv {
    let d = DebEnv::new();
    d.build_sg_db();
    d.build(&Pkg {
        files: &[("/usr/lib/sg-liba/a.txt", "liba\n")],
        ..Pkg::new("sg-liba", "1.0")
    });
    d.build(&Pkg {
        depends: "sg-liba",
        files: &[("/usr/bin/sg-a", "a 1.0\n")],
        ..Pkg::new("sg-a", "1.0")
    });
    d.build(&Pkg {
        files: &[("/usr/bin/sg-a", "a 2.0\n")],
        ..Pkg::new("sg-a", "2.0")
    });
    d.build(&Pkg {
        files: &[("/usr/share/sg-tool/tool.txt", "tool\n")],
        ..Pkg::new("sg-tool", "1.0")
    });
    d.build(&Pkg {
        depends: "sg-tool",
        files: &[("/usr/share/sg-needs-tool/n.txt", "needs tool\n")],
        ..Pkg::new("sg-needs-tool", "1.0")
    });
    for v in ["1.0", "2.0"] {
        d.build(&Pkg::new("sg-base", v));
    }
    d.build(&Pkg {
        depends: "sg-base",
        ..Pkg::new("sg-keeper", "1.0")
    });
    d.build(&Pkg {
        depends: "sg-base (>= 2.0)",
        ..Pkg::new("sg-top", "1.0")
    });
    d.publish();
    d
}

fn cfg(d: &DebEnv, name: &str, packages: serde_json::Value) -> String {
    d.env
        .config(
            name,
            json!({ "packages": packages, "files": { "/etc/motd": { "content": "x\n" } } }),
        )
        .display()
        .to_string()
}

#[test]
fn a_removed_package_keeps_its_data_until_gc_collects_its_last_generation() {
    let d = published();
    let before = d.packages();
    let c0 = cfg(&d, "none.json", json!({}));
    let c1 = cfg(&d, "db.json", json!({ "apt": ["sg-db"] }));
    d.env.run(&["switch", &c0]).ok();
    let files_only = d.tree();
    d.env.run(&["switch", &c1]).ok();
    // The host writes its data; the admin edits the conffile.
    d.env.write_root("/var/lib/sg-db/data", "precious rows\n");
    d.env.write_root("/etc/sg-db.conf", "port = 5432\n");
    let with = (d.packages(), d.tree());

    let dry = d.env.run(&["switch", &c0, "--dry-run"]).ok();
    assert!(
        dry.stdout.contains(
            "apt remove: sg-db 1.0; their configuration and data stay until gc collects the last generation that has them"
        ),
        "{}",
        dry.stdout
    );
    d.env.run(&["switch", &c0]).ok();
    assert!(
        d.packages().contains("sg-db 1.0 rc manual"),
        "{}",
        d.packages()
    );
    assert_eq!(
        std::fs::read_to_string(d.env.at("/var/lib/sg-db/data")).unwrap(),
        "precious rows\n"
    );
    assert!(!d.env.at("/usr/bin/sg-db").exists(), "removed");

    // The rollback finds the data and the admin's conffile where they were.
    d.env.run(&["rollback"]).ok();
    assert_same(&(d.packages(), d.tree()), &with, "rolled back");

    // Back to the configuration without it: gc keeps what a remaining
    // generation has, and then purges it, saying what that destroys.
    d.env.run(&["switch", &c0]).ok();
    let removed = (d.packages(), d.tree());
    let gc = d.env.run(&["gc", "--dry-run"]).ok();
    assert!(
        !gc.stdout.contains("purge"),
        "generation 2 has it: {}",
        gc.stdout
    );
    let gc = d
        .env
        .run(&["gc", "--keep", "0", "--dry-run", "--json"])
        .ok()
        .json();
    assert_eq!(
        gc["gc"]["packages"]["purged"],
        json!([{ "name": "sg-db", "version": "1.0", "destroys": ["/etc/sg-db.conf", "/var/lib/sg-db"] }]),
        "{gc}"
    );
    let gc = d.env.run(&["gc", "--keep", "0", "--dry-run"]).ok();
    assert!(
        gc.stdout.contains(
            "would purge package sg-db 1.0, removed and in no remaining generation: destroys /etc/sg-db.conf, /var/lib/sg-db"
        ),
        "{}",
        gc.stdout
    );
    assert_eq!(
        (d.packages(), d.tree()),
        removed,
        "a dry run changes nothing"
    );
    let gc = d.env.run(&["gc", "--keep", "0"]).ok();
    assert!(
        gc.stdout.contains("purged package sg-db 1.0"),
        "{}",
        gc.stdout
    );
    assert_eq!(d.packages(), before);
    assert_eq!(d.tree(), files_only);
}

#[test]
fn packages_purge_destroys_at_once_and_the_plan_says_what() {
    let d = published();
    let before = d.packages();
    let c0 = cfg(&d, "none.json", json!({}));
    let c1 = cfg(&d, "db.json", json!({ "apt": ["sg-db"] }));
    let purge = cfg(&d, "purge.json", json!({ "purge": ["sg-db"] }));
    d.env.run(&["switch", &c0]).ok();
    let files_only = d.tree();
    d.env.run(&["switch", &c1]).ok();
    d.env.write_root("/var/lib/sg-db/data", "rows\n");
    // Removed first, purged later by asking: the leftovers go.
    d.env.run(&["switch", &c0]).ok();
    let dry = d.env.run(&["switch", &purge, "--dry-run"]).ok();
    assert!(
        dry.stdout
            .contains("apt purge: sg-db 1.0 (destroys /etc/sg-db.conf, /var/lib/sg-db)"),
        "{}",
        dry.stdout
    );
    d.env.run(&["switch", &purge]).ok();
    assert_eq!(d.packages(), before);
    assert_eq!(d.tree(), files_only);
    // In packages.apt and packages.purge at once: refused, exit 2.
    let both = cfg(
        &d,
        "both.json",
        json!({ "apt": ["sg-db"], "purge": ["sg-db"] }),
    );
    let out = d.env.run(&["switch", &both]).expect(2);
    assert!(
        out.stderr.contains("packages.purge.sg-db"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_closure_of_pinned_versions_is_recorded_and_rollbacks_run_offline() {
    let d = published();
    // sg-liba is sysgen's already when sg-a=1.0 is built, so apt's
    // simulation does not list it; 2.0, apt's candidate, needs nothing.
    let c1 = cfg(&d, "one.json", json!({ "apt": ["sg-liba"] }));
    let c2 = cfg(&d, "two.json", json!({ "apt": ["sg-a=1.0"] }));
    let c3 = cfg(&d, "three.json", json!({ "apt": [] }));
    d.env.run(&["switch", &c1]).ok();
    d.env.run(&["switch", &c2]).ok();
    let two = (d.packages(), d.tree());
    assert!(two.0.contains("sg-liba 1.0 ii auto"), "{}", two.0);
    let v = d.env.run(&["verify"]).ok();
    assert!(
        v.stdout.contains("(4 entries)"),
        "/etc, /etc/motd, sg-a, sg-liba: {}",
        v.stdout
    );
    d.env.run(&["rollback"]).ok();
    d.env.run(&["switch", &c3]).ok();
    // The archive is gone: generation 2 comes back from the store alone.
    std::fs::rename(d.repo(), d.env.dir.path().join("repo-away")).unwrap();
    d.env.run(&["rollback", "--to", "2"]).ok();
    assert_same(
        &(d.packages(), d.tree()),
        &two,
        "generation 2 again, offline",
    );
}

#[test]
fn a_generation_that_cannot_be_reached_offline_is_refused_before_the_journal() {
    let d = published();
    // sg-tool was on the root before sysgen; the generation records it.
    d.chroot(&["apt-get", "install", "-y", "-q", "sg-tool"]);
    let c1 = cfg(&d, "one.json", json!({ "apt": ["sg-needs-tool"] }));
    let c2 = cfg(&d, "two.json", json!({ "apt": [] }));
    d.env.run(&["switch", &c1]).ok();
    let one = (d.packages(), d.tree());
    d.env.run(&["switch", &c2]).ok();
    // The admin removes it; the archive goes away.
    d.chroot(&["apt-get", "purge", "-y", "-q", "sg-tool"]);
    let away = d.env.dir.path().join("repo-away");
    std::fs::rename(d.repo(), &away).unwrap();
    let before = (d.packages(), d.tree());
    let out = d.env.run(&["rollback"]).expect(1);
    assert!(
        out.stderr
            .contains("cannot download the packages to install")
            && out.stderr.contains("sg-tool")
            && out.stderr.contains("nothing was changed"),
        "{}",
        out.stderr
    );
    assert_same(&(d.packages(), d.tree()), &before, "refused");
    let st = d.env.run(&["status"]).ok();
    assert!(
        !st.stdout.contains("interrupted"),
        "no journal: {}",
        st.stdout
    );
    // With the archive back, the same rollback lands on generation 1.
    std::fs::rename(&away, d.repo()).unwrap();
    d.env.run(&["rollback"]).ok();
    // sysgen installed it this time, as the dependency it is.
    let one = (
        one.0
            .replace("sg-tool 1.0 ii manual", "sg-tool 1.0 ii auto"),
        one.1,
    );
    assert_same(&(d.packages(), d.tree()), &one, "generation 1 again");
}

#[test]
fn a_package_the_admin_purged_and_reinstalled_by_hand_is_the_admins() {
    let d = published();
    let c1 = cfg(&d, "one.json", json!({ "apt": ["sg-a=1.0"] }));
    let c2 = cfg(&d, "two.json", json!({ "apt": [] }));
    d.env.run(&["switch", &c1]).ok();
    d.chroot(&["apt-get", "purge", "-y", "-q", "sg-a", "sg-liba"]);
    d.chroot(&["apt-get", "install", "-y", "-q", "sg-a=1.0"]);
    let before = (d.packages(), d.tree());
    let out = d.env.run(&["switch", &c2]).ok();
    assert!(
        out.stdout
            .contains("apt: keep sg-a 1.0: sysgen did not install it"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("apt remove"), "{}", out.stdout);
    assert_eq!(
        d.packages(),
        before.0,
        "sg-a and its sg-liba are the admin's"
    );
    d.env.run(&["gc", "--keep", "0"]).ok();
    assert_eq!(d.packages(), before.0, "gc purges nothing of the admin's");
}

#[test]
fn the_version_a_switch_replaces_is_kept_so_its_rollback_runs_offline() {
    let d = published();
    // sg-base 1.0 came with the image; generation 1 records it as what
    // sg-keeper stands on, generation 2 needs 2.0.
    d.chroot(&["apt-get", "install", "-y", "-q", "sg-base=1.0"]);
    let c1 = cfg(&d, "one.json", json!({ "apt": ["sg-keeper"] }));
    let c2 = cfg(&d, "two.json", json!({ "apt": ["sg-keeper", "sg-top"] }));
    d.env.run(&["switch", &c1]).ok();
    let one = (d.packages(), d.tree());
    assert!(one.0.contains("sg-base 1.0 ii"), "{}", one.0);
    d.env.run(&["switch", &c2]).ok();
    assert_eq!(d.version_of("sg-base").as_deref(), Some("2.0"));
    // The archive goes away: 1.0 comes back from the store.
    std::fs::rename(d.repo(), d.env.dir.path().join("repo-away")).unwrap();
    let dry = d.env.run(&["rollback", "--dry-run"]).ok();
    assert!(
        dry.stdout.contains("downgrade sg-base 2.0 -> 1.0"),
        "{}",
        dry.stdout
    );
    d.env.run(&["rollback"]).ok();
    assert_same(
        &(d.packages(), d.tree()),
        &one,
        "generation 1 again, offline",
    );
}
