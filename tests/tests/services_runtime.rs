//! Services on a running systemd: a real systemd booted as PID 1 of its own
//! namespaces on a scratch root (`sysgen_tests::services::Booted`), with
//! the binary under test run inside it as on a real host (`--root /`).
//! Starts, restarts, reloads and stops are observed from the units' own
//! event logs and their main pids, not from sysgen's output.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is a failed test with its message"
)]

use serde_json::{Value, json};
use sysgen_tests::services::{Booted, failing_unit, logging_unit};

const UNIT: &str = "/etc/systemd/system/app.service";

fn config(conf: &str, env: &str, other: &str, extra: Value) -> Value {
    let mut c = json!({
        "files": {
            UNIT: { "content": logging_unit("app") },
            "/etc/app/app.conf": { "content": conf },
            "/etc/app/app.env": { "content": env },
            "/etc/other": { "content": other }
        },
        "services": {
            "app.service": {
                "restart_on": ["/etc/app/app.conf"],
                "reload_on": ["/etc/app/app.env"]
            }
        }
    });
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            c.insert(k.clone(), v.clone());
        }
    }
    c
}

fn index(steps: &[String], prefix: &str) -> usize {
    steps
        .iter()
        .position(|s| s.starts_with(prefix))
        .unwrap_or_else(|| panic!("no step starts with {prefix:?}: {steps:#?}"))
}

#[test]
fn start_restart_reload_and_stop_exactly_when_their_paths_change() {
    let sd = Booted::boot();
    let pid = || sd.prop("app.service", "MainPID");

    // 1. New unit: written, enabled, daemon-reload, started.
    let c1 = sd.config("c1.json", config("v1\n", "e1\n", "o1\n", json!({})));
    let r = sd.sysgen(&["--json", "switch", &c1]).ok();
    let s = r.steps();
    assert!(
        index(&s, "create file /etc/systemd/system/app.service")
            < index(&s, "enable app.service: newly declared")
    );
    assert!(index(&s, "enable app.service") < index(&s, "daemon-reload: unit files changed"));
    assert!(index(&s, "daemon-reload") < index(&s, "start app.service: newly enabled"));
    assert!(!s.iter().any(|l| l.starts_with("skip ")), "{s:#?}");
    assert_eq!(sd.prop("app.service", "ActiveState"), "active");
    assert_eq!(
        sd.systemctl(&["is-enabled", "app.service"]).stdout.trim(),
        "enabled"
    );
    assert_eq!(sd.events("app"), ["start"]);
    let pid1 = pid();

    // 2. A file no unit watches: nothing happens to the unit.
    let c2 = sd.config("c2.json", config("v1\n", "e1\n", "o2\n", json!({})));
    let r = sd.sysgen(&["--json", "switch", &c2]).ok();
    assert_eq!(r.steps().len(), 2, "{:#?}", r.steps());
    assert_eq!(sd.events("app"), ["start"]);
    assert_eq!(pid(), pid1);

    // 3. A reload_on path: reloaded, same process.
    let c3 = sd.config("c3.json", config("v1\n", "e2\n", "o2\n", json!({})));
    let r = sd.sysgen(&["--json", "switch", &c3]).ok();
    let s = r.steps();
    assert!(
        index(&s, "replace file /etc/app/app.env")
            < index(&s, "reload app.service: /etc/app/app.env changed")
    );
    assert_eq!(sd.events("app"), ["start", "reload"]);
    assert_eq!(pid(), pid1);

    // 4. A restart_on path (and the reload_on one): one restart, a new process.
    let c4 = sd.config("c4.json", config("v2\n", "e3\n", "o2\n", json!({})));
    let r = sd.sysgen(&["--json", "switch", &c4]).ok();
    let s = r.steps();
    let restart = index(&s, "restart app.service: /etc/app/app.conf changed");
    assert!(index(&s, "replace file /etc/app/app.conf") < restart);
    assert!(
        !s.iter().any(|l| l.starts_with("reload ")),
        "restarted, so not reloaded: {s:#?}"
    );
    assert_eq!(sd.events("app"), ["start", "reload", "stop", "start"]);
    let pid4 = pid();
    assert_ne!(pid4, pid1);

    // 5. A drop-in: daemon-reload, then restart.
    let c5 = sd.config("c5.json", config("v2\n", "e3\n", "o2\n", json!({})));
    let mut v5: Value =
        serde_json::from_str(&std::fs::read_to_string(sd.at(&c5)).unwrap()).unwrap();
    v5["files"]["/etc/systemd/system/app.service.d/env.conf"] =
        json!({ "content": "[Service]\nEnvironment=X=1\n" });
    let c5 = sd.config("c5.json", v5);
    let r = sd.sysgen(&["--json", "switch", &c5]).ok();
    let s = r.steps();
    assert!(
        index(&s, "daemon-reload: unit files changed")
            < index(
                &s,
                "restart app.service: /etc/systemd/system/app.service.d/env.conf changed"
            )
    );
    assert_eq!(sd.prop("app.service", "Environment"), "X=1");
    assert_eq!(
        sd.events("app"),
        ["start", "reload", "stop", "start", "stop", "start"]
    );

    // 6. The unit leaves with its unit file: stopped and disabled before the
    // file is removed; nothing of it is left.
    let c6 = sd.config(
        "c6.json",
        json!({ "files": { "/etc/other": { "content": "o2\n" } } }),
    );
    let r = sd.sysgen(&["--json", "switch", &c6]).ok();
    let s = r.steps();
    let stop = index(&s, "stop app.service: left the configuration");
    let disable = index(
        &s,
        "disable app.service: left the configuration; sysgen enabled it",
    );
    let remove = index(&s, "remove file /etc/systemd/system/app.service");
    assert!(stop < disable && disable < remove, "{s:#?}");
    assert_eq!(sd.events("app").last().map(String::as_str), Some("stop"));
    assert_ne!(sd.prop("app.service", "ActiveState"), "active");
    assert!(
        !sd.at("/etc/systemd/system/multi-user.target.wants/app.service")
            .exists()
    );

    // 7. Rollback: the unit is back, enabled and running.
    sd.sysgen(&["rollback"]).ok();
    assert_eq!(sd.prop("app.service", "ActiveState"), "active");
    assert_eq!(
        sd.systemctl(&["is-enabled", "app.service"]).stdout.trim(),
        "enabled"
    );
    assert_eq!(sd.events("app").last().map(String::as_str), Some("start"));
}

#[test]
fn a_failing_check_rolls_the_switch_back() {
    let sd = Booted::boot();
    let check = json!({ "services": { "app.service": {
        "restart_on": ["/etc/app/app.conf"],
        "check": "grep -q good /etc/app/app.conf || { echo app.conf is not good; exit 1; }",
        "check_timeout": 5
    } } });
    let c1 = sd.config("c1.json", config("good\n", "e\n", "o\n", check.clone()));
    sd.sysgen(&["switch", &c1]).ok();
    let tree1 = sd.etc_tree();
    let pid1 = sd.prop("app.service", "MainPID");

    let c2 = sd.config("c2.json", config("bad\n", "e\n", "o2\n", check.clone()));
    let r = sd.sysgen(&["--json", "switch", &c2]).expect(1);
    let doc = r.json();
    assert_eq!(doc["failed"][0]["unit"], "app.service", "{doc}");
    assert_eq!(doc["rolled_back"], true, "{doc}");
    assert_eq!(doc["active"], 1, "{doc}");
    assert!(r.stderr.contains("app.service failed: its check"), "{r:?}");
    assert!(r.stderr.contains("exited with status 1"), "{r:?}");
    assert!(r.stderr.contains("check: app.conf is not good"), "{r:?}");
    assert!(r.stderr.contains("last log lines of app.service"), "{r:?}");
    assert!(
        r.stderr
            .contains("rolled back: generation 1 is active again"),
        "{r:?}"
    );
    // Files, enablement and the running unit are generation 1's again.
    assert_eq!(sd.etc_tree(), tree1);
    let list = sd.sysgen(&["--json", "list"]).ok().json();
    assert_eq!(list["active"], json!(1));
    assert_eq!(list["generations"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(sd.prop("app.service", "ActiveState"), "active");
    assert_ne!(
        sd.prop("app.service", "MainPID"),
        pid1,
        "restarted with the old file"
    );
    assert_eq!(
        sd.events("app"),
        ["start", "stop", "start", "stop", "start"]
    );
    sd.sysgen(&["verify"]).ok();
    let st = sd.sysgen(&["--json", "status"]).ok().json();
    assert!(st["interrupted"].is_null(), "{st}");

    // --no-rollback-on-failure: the generation stays, the failure is reported.
    let r = sd
        .sysgen(&["switch", "--no-rollback-on-failure", &c2])
        .expect(1);
    assert!(r.stderr.contains("app.service failed: its check"), "{r:?}");
    assert!(r.stdout.contains("is active"), "{r:?}");
    let list = sd.sysgen(&["--json", "list"]).ok().json();
    assert_eq!(list["active"], json!(2));
}

#[test]
fn a_unit_that_cannot_start_undoes_the_first_switch() {
    let sd = Booted::boot();
    let before = sd.etc_tree();
    let c = sd.config(
        "c.json",
        json!({
            "files": {
                "/etc/systemd/system/broken.service": { "content": failing_unit("broken") },
                "/etc/broken.conf": { "content": "x\n" }
            },
            "services": { "broken.service": {} }
        }),
    );
    let r = sd.sysgen(&["switch", &c]).expect(1);
    assert!(r.stderr.contains("broken.service failed"), "{r:?}");
    assert!(
        r.stderr.contains("broken cannot start: no configuration"),
        "{r:?}"
    );
    assert!(
        r.stderr.contains("the root is as it was before sysgen"),
        "{r:?}"
    );
    assert_eq!(sd.etc_tree(), before);
    let list = sd.sysgen(&["--json", "list"]).ok().json();
    assert!(list["active"].is_null(), "{list}");
}

/// A oneshot unit that ran and exited is "inactive", not failed: the
/// switch goes through and its check runs.
#[test]
fn a_oneshot_unit_that_ran_is_not_a_failure() {
    let sd = Booted::boot();
    let c = sd.config(
        "c.json",
        json!({
            "files": {
                "/etc/systemd/system/once.service": { "content":
                    "[Service]\nType=oneshot\nExecStart=/bin/sh -c 'echo ran >> /var/log/once.events'\n\n[Install]\nWantedBy=multi-user.target\n" }
            },
            "services": { "once.service": { "check": "grep -q ran /var/log/once.events" } }
        }),
    );
    let r = sd.sysgen(&["--json", "switch", &c]).ok();
    assert!(
        r.steps()
            .iter()
            .any(|s| s.starts_with("check once.service")),
        "{r:?}"
    );
    assert_eq!(sd.events("once"), ["ran"]);
    assert_eq!(sd.prop("once.service", "ActiveState"), "inactive");
}

/// What the units look like: per unit, active state and enablement.
fn units(sd: &Booted, names: &[&str]) -> Vec<String> {
    names
        .iter()
        .map(|u| {
            format!(
                "{u} {} {}",
                sd.prop(u, "ActiveState"),
                sd.systemctl(&["is-enabled", u]).stdout.trim()
            )
        })
        .collect()
}

/// A crash after every step of a live switch (stop, disable, files,
/// enable, daemon-reload, start, restart, check): `recover` reaches the
/// target and `recover --rollback` the start, files and units alike.
#[test]
fn crash_at_every_step_of_a_live_switch_then_recover() {
    let sd = Booted::boot();
    let names = ["app.service", "old.service", "new.service"];
    let v1 = config("v1\n", "e\n", "o\n", json!({}));
    let mut v1 = v1;
    v1["files"]["/etc/systemd/system/old.service"] = json!({ "content": logging_unit("old") });
    v1["services"]["old.service"] = json!({});
    let mut v2 = config("v2\n", "e\n", "o\n", json!({}));
    v2["files"]["/etc/systemd/system/new.service"] = json!({ "content": logging_unit("new") });
    v2["services"]["new.service"] = json!({ "check": "systemctl is-active new.service" });
    v2["services"]["app.service"]["check"] = json!("systemctl is-active app.service");
    let c1 = sd.config("c1.json", v1);
    let c2 = sd.config("c2.json", v2);

    sd.sysgen(&["switch", &c1]).ok();
    let (tree1, units1) = (sd.etc_tree(), units(&sd, &names));
    let n = sd
        .sysgen(&["--json", "switch", "--dry-run", &c2])
        .ok()
        .json()["steps"]
        .as_array()
        .unwrap()
        .len() as u64;
    sd.sysgen(&["switch", &c2]).ok();
    let (tree2, units2) = (sd.etc_tree(), units(&sd, &names));
    assert_ne!(units1, units2);
    assert_eq!(
        units2[1], "old.service inactive ",
        "stopped, and its file is gone"
    );
    sd.sysgen(&["switch", &c1]).ok();
    assert_eq!(
        (sd.etc_tree(), units(&sd, &names)),
        (tree1.clone(), units1.clone())
    );

    for k in 1..=n {
        for back in [false, true] {
            let ctx = format!("crash after step {k} of {n}, recover (rollback: {back})");
            let r = sd.sysgen_with_fault(k, &["switch", &c2]);
            assert!(r.code.is_none() || r.killed, "{ctx}: not killed: {r:?}");
            let mut args = vec!["recover"];
            if back {
                args.push("--rollback");
            }
            sd.sysgen(&args).ok();
            let want = if back {
                (tree1.clone(), units1.clone())
            } else {
                (tree2.clone(), units2.clone())
            };
            assert_eq!((sd.etc_tree(), units(&sd, &names)), want, "{ctx}");
            sd.sysgen(&["verify"]).ok();
            // Back to generation 1 for the next crash.
            sd.sysgen(&["switch", &c1]).ok();
        }
    }
}
