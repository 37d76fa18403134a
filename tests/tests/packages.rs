//! Packages (SPEC §2 `packages.apt`, §4 "Packages"), with the real apt and
//! dpkg of a scratch Debian root (mmdebstrap, cached between runs; see
//! `sysgen_tests::packages`) and test packages built on the fly with
//! dpkg-deb, served by a local `file:` repository: offline and fast.
//!
//! Each test compares the whole package list (name, version, status,
//! auto/manual) and the whole root tree (less apt's and dpkg's own logs,
//! caches and databases) with references, not a few spot checks.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is a failed test with its message"
)]

use serde_json::json;
use sysgen_tests::packages::{DebEnv, Pkg};

/// The test packages: sg-hello 1.0 and 2.0 (a conffile, depending on
/// sg-libhello), sg-tool (for installing by hand), sg-orphan (an unneeded
/// automatic package), sg-broken (a failing postinst), sg-other.
fn published() -> DebEnv {
    let d = DebEnv::new();
    d.build(&Pkg {
        files: &[("/usr/lib/sg-libhello/lib.txt", "libhello 1.0\n")],
        ..Pkg::new("sg-libhello", "1.0")
    });
    for v in ["1.0", "2.0"] {
        let conf = format!("greeting = hello {v}\n");
        let bin = format!("#!/bin/sh\necho hello {v}\n");
        d.build(&Pkg {
            depends: "sg-libhello (>= 1.0)",
            files: &[("/etc/sg-hello.conf", &conf), ("/usr/bin/sg-hello", &bin)],
            conffiles: &["/etc/sg-hello.conf"],
            ..Pkg::new("sg-hello", v)
        });
    }
    d.build(&Pkg {
        files: &[("/usr/share/sg-tool/tool.txt", "tool\n")],
        ..Pkg::new("sg-tool", "1.0")
    });
    d.build(&Pkg {
        files: &[("/usr/share/sg-orphan/o.txt", "orphan\n")],
        ..Pkg::new("sg-orphan", "1.0")
    });
    d.build(&Pkg {
        files: &[("/usr/share/sg-other/o.txt", "other\n")],
        ..Pkg::new("sg-other", "1.0")
    });
    d.build(&Pkg {
        files: &[("/usr/share/sg-broken/b.txt", "broken\n")],
        postinst: Some("echo 'sg-broken: cannot configure' >&2\nexit 1"),
        ..Pkg::new("sg-broken", "1.0")
    });
    d.build(&Pkg {
        depends: "sg-libhello",
        files: &[("/usr/share/sg-uses-lib/u.txt", "uses lib\n")],
        ..Pkg::new("sg-uses-lib", "1.0")
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
    d.build(&Pkg {
        control: "Conflicts: sg-tool\n",
        ..Pkg::new("sg-conflict", "1.0")
    });
    d.build(&Pkg {
        depends: "sg-nowhere",
        ..Pkg::new("sg-needy", "1.0")
    });
    d.publish();
    d
}

fn cfg(d: &DebEnv, name: &str, apt: &[&str], motd: &str) -> String {
    d.env
        .config(
            name,
            json!({
                "packages": { "apt": apt },
                "files": { "/etc/motd": { "content": motd } }
            }),
        )
        .display()
        .to_string()
}

#[test]
fn switch_installs_then_purges_package_and_only_the_dependency_it_pulled_in() {
    let d = published();
    // Unneeded before sysgen: an automatic package nothing depends on. It
    // must still be there after sysgen removes what it installed.
    d.chroot(&["apt-get", "install", "-y", "-q", "sg-orphan"]);
    d.chroot(&["apt-mark", "auto", "sg-orphan"]);
    let before_pkgs = d.packages();
    let c1 = cfg(&d, "one.json", &["sg-hello=1.0"], "one\n");
    let c0 = cfg(&d, "none.json", &[], "one\n");
    // A reference: the same root with only the file (no packages).
    d.env.run(&["switch", &c0]).ok();
    let files_only = d.tree();

    let dry = d.env.run(&["switch", &c1, "--dry-run"]).ok();
    assert!(
        dry.stdout.contains(
            "1. apt transaction: install sg-hello 1.0, install sg-libhello 1.0 (dependency)"
        ),
        "{}",
        dry.stdout
    );
    assert_eq!(d.packages(), before_pkgs, "a dry run changes nothing");

    d.env.run(&["switch", &c1]).ok();
    let with = d.packages();
    assert!(with.contains("sg-hello 1.0 ii manual"), "{with}");
    assert!(with.contains("sg-libhello 1.0 ii auto"), "{with}");
    assert_eq!(
        std::fs::read_to_string(d.env.at("/etc/sg-hello.conf")).unwrap(),
        "greeting = hello 1.0\n"
    );
    // Exactly two packages more than before, nothing else changed.
    let added: Vec<&str> = with
        .lines()
        .filter(|l| !before_pkgs.lines().any(|b| b == *l))
        .collect();
    assert_eq!(added, ["sg-hello 1.0 ii manual", "sg-libhello 1.0 ii auto"]);

    // The configuration of generation 1 again: it becomes active again.
    let ok = d.env.run(&["verify"]).ok();
    assert!(
        ok.stdout
            .contains("ok: the root matches generation 2 (4 entries)"),
        "2 paths and 2 packages: {}",
        ok.stdout
    );
    // A package removed by hand is drift.
    d.chroot(&["dpkg", "--purge", "sg-hello"]);
    let drift = d.env.run(&["verify"]).expect(1);
    assert!(
        drift
            .stdout
            .contains("drift: package sg-hello: not installed"),
        "{}",
        drift.stdout
    );
    let out = d.env.run(&["switch", &c0]).ok();
    assert!(out.stdout.contains("generation 1"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("apt remove: sg-libhello 1.0 (dependency"),
        "the summary names the package steps: {}",
        out.stdout
    );
    // Removed, not purged: gc purges what no remaining generation has.
    d.env.run(&["gc", "--keep", "0"]).ok();
    assert_eq!(
        d.packages(),
        before_pkgs,
        "purged with its dependency; sg-orphan stays"
    );
    assert_eq!(d.tree(), files_only, "the purge leaves no file behind");
}

#[test]
fn a_package_installed_by_hand_stays_when_it_leaves_the_configuration() {
    let d = published();
    d.chroot(&["apt-get", "install", "-y", "-q", "sg-tool"]);
    let before_pkgs = d.packages();
    let before_tree = d.tree();
    let c1 = cfg(&d, "one.json", &["sg-tool", "sg-other"], "x\n");
    let c2 = cfg(&d, "two.json", &[], "x\n");
    d.env.run(&["switch", &c1]).ok();
    assert!(d.packages().contains("sg-other 1.0 ii manual"));
    // A dpkg run cut short earlier (its journal has an entry): the purge
    // finishes it with `dpkg --configure -a` first rather than failing.
    d.env.write_root("/var/lib/dpkg/updates/0001", "");
    let out = d.env.run(&["switch", "-v", &c2]).ok();
    assert!(
        out.stdout
            .contains("apt: keep sg-tool 1.0: sysgen did not install it"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("apt remove: sg-other 1.0"),
        "{}",
        out.stdout
    );
    assert_eq!(d.packages(), before_pkgs, "sg-tool stays, sg-other goes");
    // The root is as before, plus the declared /etc/motd.
    let tree = d.tree();
    let extra: Vec<&str> = tree
        .lines()
        .filter(|l| !before_tree.lines().any(|b| b == *l))
        .collect();
    assert_eq!(extra.len(), 1, "{extra:?}");
    assert!(extra[0].starts_with("/etc/motd file"), "{extra:?}");
}

#[test]
fn a_dependency_still_needed_by_a_hand_installed_package_stays() {
    let d = published();
    let before = d.packages();
    let c1 = cfg(&d, "one.json", &["sg-hello"], "x\n");
    let c2 = cfg(&d, "two.json", &[], "x\n");
    d.env.run(&["switch", &c1]).ok();
    // The admin installs something that needs sysgen's sg-libhello.
    d.chroot(&["apt-get", "install", "-y", "-q", "sg-uses-lib"]);
    d.env.run(&["switch", &c2]).ok();
    d.env.run(&["gc", "--keep", "0"]).ok();
    let after = d.packages();
    let added: Vec<&str> = after
        .lines()
        .filter(|l| !before.lines().any(|b| b == *l))
        .collect();
    assert_eq!(
        added,
        ["sg-libhello 1.0 ii auto", "sg-uses-lib 1.0 ii manual"],
        "sg-hello is purged; its dependency stays for sg-uses-lib"
    );
}

#[test]
fn a_package_sysgen_upgrades_but_did_not_install_keeps_its_mark_and_stays() {
    let d = published();
    // sg-base 1.0 came as a dependency of something the admin installed.
    d.chroot(&["apt-get", "install", "-y", "-q", "sg-base=1.0", "sg-keeper"]);
    d.chroot(&["apt-mark", "auto", "sg-base"]);
    let c1 = cfg(&d, "one.json", &["sg-top"], "x\n");
    let c2 = cfg(&d, "two.json", &[], "x\n");
    let out = d.env.run(&["switch", &c1]).ok();
    assert!(
        out.stdout.contains(
            "apt transaction: upgrade sg-base 1.0 -> 2.0 (dependency), install sg-top 1.0"
        ),
        "{}",
        out.stdout
    );
    let pkgs = d.packages();
    assert!(
        pkgs.contains("sg-base 2.0 ii auto"),
        "still automatic: {pkgs}"
    );
    d.env.run(&["switch", &c2]).ok();
    let pkgs = d.packages();
    assert!(
        pkgs.contains("sg-base 2.0 ii auto") && !pkgs.contains("sg-top"),
        "sg-top goes; sg-base is not sysgen's, it stays: {pkgs}"
    );
}

#[test]
fn a_package_that_goes_from_declared_to_dependency_is_removed_with_its_dependent() {
    let d = published();
    let before = d.packages();
    let c1 = cfg(&d, "one.json", &["sg-libhello"], "x\n");
    let c2 = cfg(&d, "two.json", &["sg-hello"], "x\n");
    let c3 = cfg(&d, "three.json", &[], "x\n");
    let none = cfg(&d, "none.json", &[], "x\n");
    d.env.run(&["switch", &none]).ok();
    let files_only = d.tree();
    d.env.run(&["switch", &c1]).ok();
    let out = d.env.run(&["switch", &c2]).ok();
    assert!(
        out.stdout
            .contains("apt transaction: install sg-hello 2.0, mark sg-libhello as a dependency"),
        "{}",
        out.stdout
    );
    assert!(d.packages().contains("sg-libhello 1.0 ii auto"));
    d.env.run(&["switch", &c3]).ok();
    d.env.run(&["gc", "--keep", "0"]).ok();
    assert_eq!(d.packages(), before);
    assert_eq!(d.tree(), files_only);
}

#[test]
fn a_declared_package_that_a_hand_installed_one_needs_is_not_removed() {
    let d = published();
    let c1 = cfg(&d, "one.json", &["sg-libhello"], "x\n");
    let c2 = cfg(&d, "two.json", &[], "y\n");
    d.env.run(&["switch", &c1]).ok();
    d.chroot(&["apt-get", "install", "-y", "-q", "sg-uses-lib"]);
    let before = (d.packages(), d.tree());
    let out = d.env.run(&["switch", &c2]).expect(1);
    assert!(
        out.stderr.contains(
            "removing sg-libhello would also remove sg-uses-lib, which sysgen did not install"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(
        (d.packages(), d.tree()),
        before,
        "refused before any change"
    );
}

#[test]
fn dependency_conflicts_are_refused_naming_the_packages() {
    let d = published();
    d.chroot(&["apt-get", "install", "-y", "-q", "sg-tool"]);
    let before = (d.packages(), d.tree());
    let c = cfg(&d, "c.json", &["sg-conflict"], "x\n");
    let out = d.env.run(&["switch", &c]).expect(1);
    assert!(
        out.stderr.contains(
            "installing sg-conflict would remove sg-tool, which is installed on the root"
        ),
        "{}",
        out.stderr
    );
    let c = cfg(&d, "n.json", &["sg-needy"], "x\n");
    let out = d.env.run(&["switch", &c]).expect(1);
    assert!(
        out.stderr.contains(
            "apt cannot install the declared packages together (sg-needy has a dependency problem)"
        ),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("sg-nowhere"),
        "apt's own words: {}",
        out.stderr
    );
    assert_eq!((d.packages(), d.tree()), before);
}

#[test]
fn an_admin_edited_conffile_is_saved_in_the_store_and_reported_before_an_asked_purge() {
    let d = published();
    let c1 = cfg(&d, "one.json", &["sg-hello"], "x\n");
    let c2 = d
        .env
        .config(
            "two.json",
            json!({
                "packages": { "purge": ["sg-hello"] },
                "files": { "/etc/motd": { "content": "x\n" } }
            }),
        )
        .display()
        .to_string();
    d.env.run(&["switch", &c1]).ok();
    let edited = "greeting = bonjour\n# the admin's own line\n";
    d.env.write_root("/etc/sg-hello.conf", edited);
    let dry = d.env.run(&["switch", &c2, "--dry-run"]).ok();
    assert!(
        dry.stdout.contains(
            "apt remove: sg-libhello 1.0 (dependency, if nothing else needs it); their configuration and data stay until gc collects the last generation that has them; purge: sg-hello 2.0 (destroys /etc/sg-hello.conf) (changed conffiles saved in the store first: /etc/sg-hello.conf)"
        ),
        "{}",
        dry.stdout
    );
    let out = d.env.run(&["switch", &c2, "--json"]).ok();
    let v = out.json();
    let saved = v["saved"].as_array().unwrap();
    assert_eq!(saved.len(), 1, "{v}");
    assert_eq!(saved[0]["path"], "/etc/sg-hello.conf");
    assert_eq!(
        saved[0]["hash"].as_str().unwrap(),
        blake3::hash(edited.as_bytes()).to_hex().as_str(),
        "the saved copy is the admin's version"
    );
    assert!(
        saved[0]["why"]
            .as_str()
            .unwrap()
            .contains("conffile of sg-hello 2.0"),
        "{v}"
    );
    assert!(!d.env.at("/etc/sg-hello.conf").exists(), "purged");
    assert_eq!(d.version_of("sg-hello"), None);
}

#[test]
fn rollback_restores_the_exact_older_version_from_the_store_offline() {
    let d = published();
    let c1 = cfg(&d, "one.json", &["sg-hello=1.0"], "one\n");
    let c2 = cfg(&d, "two.json", &["sg-hello"], "two\n");
    d.env.run(&["switch", &c1]).ok();
    let (pkgs1, tree1) = (d.packages(), d.tree());
    d.env.run(&["switch", &c2]).ok();
    assert_eq!(d.version_of("sg-hello").as_deref(), Some("2.0"));
    let diff = d.env.run(&["diff", "1", "2"]).ok();
    assert!(
        diff.stdout
            .contains("~ package sg-hello 1.0 -> 2.0 (upgrade)"),
        "{}",
        diff.stdout
    );

    // The .debs sysgen installed are in the store, by content.
    let deb1 = d.store_object(&d.repo().join("sg-hello_1.0_all.deb"));
    let deb2 = d.store_object(&d.repo().join("sg-hello_2.0_all.deb"));
    assert!(deb1.exists() && deb2.exists());

    // The archive drops 1.0, then the root loses its network: the file:
    // source is moved away (its package lists stay, as after an update).
    d.unpublish("sg-hello", "1.0");
    d.publish();
    assert!(
        !d.chroot(&["apt-cache", "policy", "sg-hello"])
            .contains(" 1.0 "),
        "the archive no longer serves 1.0"
    );
    let away = d.env.dir.path().join("repo-away");
    std::fs::rename(d.repo(), &away).unwrap();

    let dry = d.env.run(&["rollback", "--dry-run"]).ok();
    assert!(
        dry.stdout
            .contains("apt transaction: downgrade sg-hello 2.0 -> 1.0"),
        "{}",
        dry.stdout
    );
    d.env.run(&["rollback"]).ok();
    assert_eq!(d.packages(), pkgs1);
    assert_eq!(d.tree(), tree1);

    // gc takes generation 2 and its .deb with it; generation 1's stays.
    let gc = d.env.run(&["gc", "--keep", "0", "--json"]).ok().json();
    assert_eq!(gc["gc"]["generations"], json!([2]), "{gc}");
    assert!(deb1.exists(), "generation 1 still uses it");
    assert!(!deb2.exists(), "collected with generation 2");
}

#[test]
fn an_unknown_package_is_refused_naming_it_and_nothing_changes() {
    let d = published();
    let before = (d.packages(), d.tree());
    let c = cfg(&d, "bad.json", &["sg-hello", "sg-nosuch"], "x\n");
    let out = d.env.run(&["switch", &c]).expect(2);
    assert!(
        out.stderr
            .contains("packages.apt.sg-nosuch: no package sg-nosuch is known"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("bad.json"),
        "names the file: {}",
        out.stderr
    );
    let v = cfg(&d, "badv.json", &["sg-hello=9.9"], "x\n");
    let out = d.env.run(&["switch", &v]).expect(2);
    assert!(
        out.stderr
            .contains("packages.apt.sg-hello: version 9.9 of sg-hello is not available"),
        "{}",
        out.stderr
    );
    assert_eq!((d.packages(), d.tree()), before);
    let list = d.env.run(&["list", "--json"]).ok().json();
    assert_eq!(
        list["generations"].as_array().map(Vec::len),
        Some(0),
        "{list}"
    );
}

#[test]
fn a_failing_postinst_stops_the_switch_and_recover_rollback_undoes_it() {
    let d = published();
    let c1 = cfg(&d, "one.json", &["sg-tool"], "one\n");
    d.env.run(&["switch", &c1]).ok();
    let before = (d.packages(), d.tree());
    let c2 = cfg(&d, "two.json", &["sg-tool", "sg-broken"], "two\n");
    let out = d.env.run(&["switch", &c2]).expect(1);
    assert!(
        out.stderr.contains(
            "apt-get install failed on sg-broken: its post-installation script failed (exit status 1)"
        ),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("sysgen recover --rollback"),
        "{}",
        out.stderr
    );
    // The files of the new generation were not touched: packages go first.
    assert_eq!(
        std::fs::read_to_string(d.env.at("/etc/motd")).unwrap(),
        "one\n"
    );
    let st = d.env.run(&["status"]).ok();
    assert!(st.stdout.contains("interrupted"), "{}", st.stdout);
    d.env.run(&["switch", &c1]).expect(1);
    // With the dpkg lock held, apt itself refuses inside the journalled
    // plan: the message says so, and the switch stays recoverable.
    let lock = d.hold_dpkg_lock();
    let held = d.env.run(&["recover"]).expect(1);
    assert!(
        held.stderr.contains("the dpkg lock of the root")
            && held
                .stderr
                .contains("is held by another program: Could not get lock"),
        "{}",
        held.stderr
    );
    drop(lock);
    // Forward cannot finish while the script fails…
    let again = d.env.run(&["recover"]).expect(1);
    assert!(again.stderr.contains("sg-broken"), "{}", again.stderr);
    // …undoing lands exactly on generation 1.
    d.env.run(&["recover", "--rollback"]).ok();
    assert_eq!((d.packages(), d.tree()), before);
    let st = d.env.run(&["status", "--json"]).ok().json();
    assert_eq!(st["active"]["number"], 1, "{st}");
}

#[test]
fn a_held_dpkg_lock_stops_the_switch_before_anything_changes() {
    let d = published();
    let before = (d.packages(), d.tree());
    let c = cfg(&d, "one.json", &["sg-hello"], "x\n");
    let lock = d.hold_dpkg_lock();
    let out = d.env.run(&["switch", &c]).expect(1);
    assert!(
        out.stderr.contains(&format!(
            "another program (pid {}) holds the dpkg lock /var/lib/dpkg/lock-frontend",
            std::process::id()
        )),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("nothing was changed"), "{}", out.stderr);
    assert_eq!((d.packages(), d.tree()), before);
    // No journal: nothing to recover.
    let st = d.env.run(&["status"]).ok();
    assert!(!st.stdout.contains("interrupted"), "{}", st.stdout);
    drop(lock);
    d.env.run(&["switch", &c]).ok();
    assert_eq!(d.version_of("sg-hello").as_deref(), Some("2.0"));
}

#[test]
fn a_root_without_apt_is_refused_with_what_to_do() {
    let env = sysgen_tests::TestEnv::new();
    let c = env.config("p.json", json!({ "packages": { "apt": ["hello"] } }));
    let out = env.run(&["switch", c.to_str().unwrap()]).expect(2);
    assert!(
        out.stderr.contains("p.json: packages.apt: the root")
            && out.stderr.contains("has no /usr/bin/apt-get")
            && out.stderr.contains("debootstrap"),
        "{}",
        out.stderr
    );
}

/// Crash after every step of a switch that installs, writes a file and
/// purges; `recover` lands exactly on the target, `recover --rollback`
/// exactly on the start (packages and tree).
#[test]
fn crash_after_every_step_then_recover_lands_on_one_generation() {
    let reference = published();
    let c1 = cfg(&reference, "one.json", &["sg-hello=1.0"], "one\n");
    let c2 = cfg(&reference, "two.json", &["sg-other"], "two\n");
    reference.env.run(&["switch", &c1]).ok();
    let from = (reference.packages(), reference.tree());
    let plan = reference
        .env
        .run(&["switch", &c2, "--json", "--dry-run"])
        .ok()
        .json();
    let n = plan["steps"].as_array().unwrap().len() as u64;
    assert_eq!(n, 4, "install, motd, purge, activate: {plan}");
    reference.env.run(&["switch", &c2]).ok();
    let to = (reference.packages(), reference.tree());
    assert_ne!(from, to);

    for k in 1..=n {
        for back in [false, true] {
            let d = published();
            let c1 = cfg(&d, "one.json", &["sg-hello=1.0"], "one\n");
            let c2 = cfg(&d, "two.json", &["sg-other"], "two\n");
            d.env.run(&["switch", &c1]).ok();
            let crashed = d.env.run_with_fault(k, &["switch", &c2]);
            assert!(crashed.killed, "k={k}: {crashed:?}");
            if back {
                d.env.run(&["recover", "--rollback"]).ok();
                assert_eq!((d.packages(), d.tree()), from, "k={k} rollback");
            } else {
                d.env.run(&["recover"]).ok();
                assert_eq!((d.packages(), d.tree()), to, "k={k} forward");
            }
        }
    }
}
