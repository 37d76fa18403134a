//! Services on a root where systemd does not run (a scratch root, as a
//! chroot or image would be): enablement through the real
//! `systemctl --root`, recorded in the generation and restored exactly by
//! rollback; units sysgen did not enable are never disabled; runtime steps
//! are planned, reported as skipped, and placed around the file steps;
//! crashes at every step recover exactly. Whole trees are compared.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is a failed test with its message"
)]

use std::process::Command;

use serde_json::{Value, json};
use sysgen_tests::TestEnv;
use sysgen_tests::services::logging_unit;

const WANTS: &str = "/etc/systemd/system/multi-user.target.wants";

/// `systemctl --root=ROOT ARGS`, the real one, as an admin would run it.
fn systemctl(env: &TestEnv, args: &[&str]) -> String {
    let out = Command::new("systemctl")
        .arg(format!("--root={}", env.root().display()))
        .args(args)
        .output()
        .expect("systemctl (install systemd)");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn enabled(env: &TestEnv, unit: &str) -> bool {
    systemctl(env, &["is-enabled", unit]) == "enabled"
}

/// A host before sysgen: the vendor's and the admin's units, both enabled.
fn host(env: &TestEnv) {
    std::fs::create_dir_all(env.at("/var/lib")).unwrap();
    for u in ["vendor", "admin"] {
        env.write_root(
            &format!("/lib/systemd/system/{u}.service"),
            &logging_unit(u),
        );
        systemctl(env, &["enable", &format!("{u}.service")]);
        assert!(enabled(env, &format!("{u}.service")), "setup: {u}");
    }
}

/// Generation 1: sysgen's own unit, the vendor's disabled, the admin's declared.
fn gen1() -> Value {
    json!({
        "files": {
            "/etc/systemd/system/app.service": { "content": logging_unit("app") },
            "/etc/app.conf": { "content": "v1\n" }
        },
        "services": {
            "app.service": { "restart_on": ["/etc/app.conf"], "check": "true" },
            "vendor.service": { "enable": false },
            "admin.service": {}
        }
    })
}

/// Generation 2: no services at all.
fn gen2() -> Value {
    json!({ "files": { "/etc/motd": { "content": "no services\n" } } })
}

#[test]
fn enablement_is_real_recorded_and_restored_exactly_by_rollback() {
    let env = TestEnv::new();
    host(&env);
    let before = env.tree();
    let c1 = env.config("c1.json", gen1());
    let c2 = env.config("c2.json", gen2());

    let r = env.run(&["switch", c1.to_str().unwrap()]).ok();
    assert!(
        r.stdout
            .contains("systemd is not running on this root: skipped 5 runtime steps"),
        "{r:?}"
    );
    assert!(enabled(&env, "app.service"));
    assert!(env.at(&format!("{WANTS}/app.service")).is_symlink());
    assert!(!enabled(&env, "vendor.service"), "declared enable: false");
    assert!(enabled(&env, "admin.service"));
    let tree1 = env.tree();

    // Generation 2 drops every unit: sysgen's is disabled (and its file
    // removed), the vendor's is enabled again, the admin's stays enabled.
    let r = env.run(&["--json", "switch", c2.to_str().unwrap()]).ok();
    let steps = r.steps();
    assert_eq!(
        steps[..2],
        [
            "skip stop app.service: left the configuration (systemd is not running on this root)",
            "disable app.service: left the configuration; sysgen enabled it",
        ],
        "{steps:#?}"
    );
    assert!(
        !steps.iter().any(|s| s.contains("admin.service")),
        "sysgen did not enable admin.service, so it never disables it: {steps:#?}"
    );
    assert!(enabled(&env, "vendor.service") && enabled(&env, "admin.service"));
    assert!(!env.at("/etc/systemd/system/app.service").exists());
    // Exactly the tree of a host switched straight to generation 2.
    let reference = TestEnv::new();
    host(&reference);
    assert_eq!(reference.tree(), before);
    reference
        .run(&[
            "switch",
            reference.config("c2.json", gen2()).to_str().unwrap(),
        ])
        .ok();
    let tree2 = env.tree();
    assert_eq!(tree2, reference.tree());

    // Rollback restores generation 1's enablement exactly, and back again.
    env.run(&["rollback"]).ok();
    assert_eq!(env.tree(), tree1);
    assert!(enabled(&env, "app.service") && !enabled(&env, "vendor.service"));
    env.run(&["rollback"]).ok();
    assert_eq!(env.tree(), tree2);
    env.run(&["verify"]).ok();
}

#[test]
fn runtime_steps_are_planned_around_the_file_steps_and_reported_as_skipped() {
    let env = TestEnv::new();
    host(&env);
    let c1 = env.config("c1.json", gen1());
    env.run(&["switch", c1.to_str().unwrap()]).ok();

    // Only the watched file changes: restart (and its check), after it.
    let mut v = gen1();
    v["files"]["/etc/app.conf"] = json!({ "content": "v2\n" });
    let c = env.config("c.json", v.clone());
    let steps = env
        .run(&["--json", "switch", c.to_str().unwrap(), "--dry-run"])
        .ok()
        .steps();
    assert_eq!(
        steps[..3],
        [
            "replace file /etc/app.conf (3 bytes, ".to_owned()
                + &blake3::hash(b"v2\n").to_hex()[..12]
                + ", mode 0644)",
            "skip restart app.service: /etc/app.conf changed (systemd is not running on this root)".into(),
            "skip check app.service with `true` (timeout 30s): it was restarted (systemd is not running on this root)".into(),
        ]
    );
    assert_eq!(steps.len(), 4);

    // A file nobody watches: no service step at all.
    let mut w = gen1();
    w["files"]["/etc/unwatched"] = json!({ "content": "x\n" });
    let c = env.config("w.json", w);
    let r = env.run(&["--json", "switch", c.to_str().unwrap()]).ok();
    assert_eq!(r.steps().len(), 2, "{:#?}", r.steps());
    assert_eq!(r.json()["skipped"], json!([]));

    // Everything at once: the unit leaves with its file while another
    // arrives. Stop and disable come before every file step, enable,
    // daemon-reload and start after all of them, activation last.
    let c3 = env.config(
        "c3.json",
        json!({
            "files": {
                "/etc/systemd/system/new.service": { "content": logging_unit("new") },
                "/etc/app.conf": { "content": "v3\n" }
            },
            "services": { "new.service": {} }
        }),
    );
    let r = env.run(&["--json", "switch", c3.to_str().unwrap()]).ok();
    let steps = r.steps();
    let service = |s: &String| {
        ["skip ", "enable ", "disable "]
            .iter()
            .any(|p| s.starts_with(p))
    };
    let kinds: String = steps
        .iter()
        .map(|s| {
            if s.starts_with("activate ") {
                'A'
            } else if service(s) {
                'S'
            } else {
                'F'
            }
        })
        .collect();
    assert_eq!(kinds, "SSFFFFSSSSSA", "{steps:#?}");
    for (i, want) in [
        (0, "skip stop app.service: left the configuration"),
        (
            1,
            "disable app.service: left the configuration; sysgen enabled it",
        ),
        (2, "remove file /etc/systemd/system/app.service"),
        (6, "enable new.service: newly declared"),
        // Declared enable: false, and enabled before sysgen: enabled again.
        (
            7,
            "enable vendor.service: left the configuration; it was enabled before sysgen",
        ),
        (8, "skip daemon-reload: unit files changed"),
        (9, "skip start new.service: newly enabled"),
        (
            10,
            "skip start vendor.service: it was enabled before sysgen",
        ),
    ] {
        assert!(steps[i].starts_with(want), "step {i}: {steps:#?}");
    }
    let skipped = r.json()["skipped"].as_array().unwrap().len();
    assert_eq!(skipped, 4);
    assert!(enabled(&env, "new.service") && enabled(&env, "vendor.service"));
    assert!(enabled(&env, "admin.service") && !enabled(&env, "app.service"));
}

/// A declared unit with no unit file cannot be enabled: the switch fails
/// (exit 1) naming the unit, and is undone, so the root is as before.
#[test]
fn a_unit_that_cannot_be_enabled_fails_the_switch_and_changes_nothing() {
    let env = TestEnv::new();
    host(&env);
    let c1 = env.config("c1.json", gen1());
    env.run(&["switch", c1.to_str().unwrap()]).ok();
    let before = env.tree();
    let mut v = gen1();
    v["files"]["/etc/app.conf"] = json!({ "content": "v2\n" });
    v["services"]["missing.service"] = json!({});
    let c = env.config("c.json", v);
    let r = env.run(&["switch", c.to_str().unwrap()]).expect(1);
    assert!(
        r.stderr
            .starts_with("error: missing.service failed: `systemctl --root="),
        "{r:?}"
    );
    assert!(
        r.stderr
            .contains("enable -- missing.service` exited with status 1"),
        "{r:?}"
    );
    assert!(r.stderr.contains("generation 1 is active again"), "{r:?}");
    assert_eq!(env.tree(), before);
    let list = env.run(&["--json", "list"]).ok().json();
    assert_eq!(list["active"], json!(1));
    env.run(&["verify"]).ok();
}

/// `sysgen schema` describes the service keys, `check_timeout` included.
#[test]
fn the_schema_describes_services() {
    let env = TestEnv::new();
    let s = env.run(&["schema"]).ok().json();
    let service = &s["$defs"]["Service"]["properties"];
    for k in [
        "enable",
        "restart_on",
        "reload_on",
        "check",
        "check_timeout",
    ] {
        assert!(service.get(k).is_some(), "{k} missing: {service}");
    }
    assert_eq!(service["check_timeout"]["maximum"], json!(3600));
}

/// `diff` shows units that a switch adds, removes and changes.
#[test]
fn diff_shows_unit_changes() {
    let env = TestEnv::new();
    host(&env);
    let mut v = gen1();
    env.run(&["switch", env.config("c1.json", v.clone()).to_str().unwrap()])
        .ok();
    v["services"]["vendor.service"] = json!({ "enable": true });
    v["services"]["app.service"] = json!({ "restart_on": ["/etc/app.conf"] });
    v["services"]
        .as_object_mut()
        .unwrap()
        .remove("admin.service");
    v["services"]["new.service"] = json!({ "enable": false });
    env.run(&["switch", env.config("c2.json", v).to_str().unwrap()])
        .ok();
    let r = env.run(&["diff"]).ok();
    assert_eq!(
        r.stdout.lines().collect::<Vec<_>>(),
        [
            "- service admin.service  enabled",
            "~ service app.service  check",
            "+ service new.service  disabled",
            "~ service vendor.service  enable false -> true",
        ]
    );
    let j = env.run(&["--json", "diff"]).ok().json();
    assert_eq!(j["services"][0]["unit"], "admin.service");
    assert_eq!(j["services"][0]["change"], "removed");
}

/// `verify` (and `status`) report a unit whose enablement was changed
/// behind sysgen's back; the next switch that touches it puts it right.
#[test]
fn verify_reports_enablement_drift() {
    let env = TestEnv::new();
    host(&env);
    let c1 = env.config("c1.json", gen1());
    env.run(&["switch", c1.to_str().unwrap()]).ok();
    env.run(&["verify"]).ok();
    systemctl(&env, &["disable", "app.service"]);
    systemctl(&env, &["enable", "vendor.service"]);
    let r = env.run(&["verify"]).expect(1);
    assert_eq!(
        r.stdout.lines().take(2).collect::<Vec<_>>(),
        [
            "drift: app.service: disabled, the generation enables it",
            "drift: vendor.service: enabled, the generation disables it",
        ],
        "{r:?}"
    );
    let st = env.run(&["--json", "status"]).ok().json();
    assert_eq!(st["drift"], json!(2), "{st}");
    // Rolling forth and back re-enables and re-disables them.
    env.run(&["switch", env.config("c2.json", gen2()).to_str().unwrap()])
        .ok();
    env.run(&["rollback"]).ok();
    env.run(&["verify"]).ok();
}
