//! What the binary prints with `--json`, command by command: the keys of
//! each document (scripts read them), a secret's hash never shown, and the
//! pinned clock (`SYSGEN_NOW`) the README test relies on.

use serde_json::{Value, json};
use sysgen_tests::{Run, TestEnv, s};

/// The keys of a JSON object, sorted.
fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect();
    k.sort_unstable();
    k
}

#[test]
fn every_command_prints_one_document_with_its_keys() {
    let env = TestEnv::new();
    let one = env.config(
        "one.json",
        json!({ "files": {
            "/etc/a": { "content": "a\n" },
            "/etc/token": { "content": "hush\n", "secret": true },
        }}),
    );
    let two = env.config(
        "two.json",
        json!({ "files": { "/etc/a": { "content": "b\n" } }, "symlinks": { "/etc/l": "/etc/a" } }),
    );
    let b = env.run(&["--json", "build", s(&one)]).ok().json();
    assert_eq!(keys(&b), ["build", "id", "ok"]);
    let sw = env.run(&["--json", "switch", s(&one)]).ok().json();
    let switch_keys = [
        "added",
        "applied",
        "changed",
        "dry_run",
        "failed",
        "from",
        "id",
        "kept",
        "number",
        "ok",
        "packages",
        "removed",
        "saved",
        "skipped",
        "steps",
        "unchanged",
    ];
    assert_eq!(keys(&sw), switch_keys);
    assert_eq!(sw["id"], b["id"]);
    assert!(
        sw["steps"].as_array().is_some_and(|s| !s.is_empty()),
        "{sw}"
    );
    let dry = env
        .run(&["--json", "switch", "--dry-run", s(&two)])
        .ok()
        .json();
    assert_eq!(keys(&dry), switch_keys);
    assert_eq!(dry["dry_run"], true);
    env.run(&["switch", s(&two)]).ok();

    let d = env.run(&["--json", "diff"]).ok().json();
    assert_eq!(
        keys(&d),
        [
            "changes", "datasets", "from", "ok", "packages", "services", "to", "users"
        ]
    );
    let changes = d["changes"].as_array().expect("changes");
    let secret = changes
        .iter()
        .find(|c| c["path"] == "/etc/token")
        .expect("the secret left");
    // Not even a hash of a secret leaves the store.
    assert_eq!(
        secret,
        &json!({ "path": "/etc/token", "change": "removed",
                 "old": { "type": "file", "mode": 0o600, "secret": true } })
    );
    let a = changes
        .iter()
        .find(|c| c["path"] == "/etc/a")
        .expect("/etc/a");
    assert_eq!(keys(a), ["change", "new", "old", "path", "what"]);
    assert_eq!(a["what"], "content");

    let l = env.run(&["--json", "list"]).ok().json();
    assert_eq!(keys(&l), ["active", "datasets", "generations", "ok"]);
    assert_eq!(
        keys(&l["generations"][0]),
        ["active", "created_at", "date", "id", "number", "pinned"]
    );
    let st = env.run(&["--json", "status"]).ok().json();
    assert_eq!(
        keys(&st),
        [
            "active",
            "datasets",
            "drift",
            "entries",
            "interrupted",
            "ok"
        ]
    );
    assert_eq!(keys(&st["active"]), ["id", "number"]);
    assert_eq!(st["interrupted"], Value::Null);
    let v = env.run(&["--json", "verify"]).ok().json();
    assert_eq!(keys(&v), ["ok", "verify"]);
    let p = env.run(&["--json", "pin", "1"]).ok().json();
    assert_eq!(p, json!({ "ok": true, "number": 1, "pinned": true }));
    let g = env.run(&["--json", "gc", "--keep", "0"]).ok().json();
    assert_eq!(keys(&g), ["gc", "ok"]);
    let r = env.run(&["--json", "recover"]).ok().json();
    assert_eq!(keys(&r), ["ok", "recover"]);
    let e = env
        .run(&["--json", "rollback", "--to", "9"])
        .expect(2)
        .json();
    assert_eq!(keys(&e), ["error", "exit", "ok"]);
    assert_eq!(
        (e["ok"].clone(), e["exit"].clone()),
        (json!(false), json!(2))
    );
}

#[test]
fn sysgen_now_pins_the_clock_and_a_bad_value_is_refused() {
    let env = TestEnv::new();
    let c = env.config(
        "c.json",
        json!({ "files": { "/etc/a": { "content": "a\n" } } }),
    );
    let pinned = |args: &[&str], now: &str| {
        let o = env
            .cmd(args)
            .env("SYSGEN_NOW", now)
            .output()
            .expect("run sysgen");
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            killed: false,
        }
    };
    pinned(&["switch", s(&c)], "1795435338").ok();
    let list = pinned(&["list"], "1").ok();
    assert!(
        list.stdout.contains("  2026-11-23 12:02:18  active"),
        "{}",
        list.stdout
    );
    let bad = pinned(&["list"], "soon").expect(2);
    assert!(
        bad.stderr
            .contains("SYSGEN_NOW=\"soon\" is not a whole number"),
        "{}",
        bad.stderr
    );
}
