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
            "blocks", "changes", "checks", "datasets", "from", "ok", "packages", "services", "to",
            "users"
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
        [
            "active",
            "changes",
            "config",
            "created_at",
            "date",
            "id",
            "number",
            "pinned"
        ]
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
    let lg = env.run(&["--json", "log"]).ok().json();
    assert_eq!(keys(&lg), ["activations", "ok"]);
    assert_eq!(
        keys(&lg["activations"][0]),
        ["at", "changes", "from", "how", "to"]
    );
    let sh = env.run(&["--json", "show"]).ok().json();
    assert_eq!(
        keys(&sh),
        [
            "active", "built_at", "config", "files", "id", "number", "ok", "pinned", "sections"
        ]
    );
    let sv = env.run(&["--json", "saved"]).ok().json();
    assert_eq!(keys(&sv), ["ok", "saved", "taken_over"]);
    let rp = env.run(&["--json", "repair"]).ok().json();
    assert_eq!(
        keys(&rp),
        [
            "applied", "dry_run", "left", "number", "ok", "refused", "repaired", "saved", "steps"
        ]
    );
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
            .env("TZ", "UTC")
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
        list.stdout
            .contains("  2026-11-23 12:02:18 UTC (in the future)  "),
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

/// Runs with the clock pinned, in UTC, from the configuration directory.
fn run_in_cfg(env: &TestEnv, args: &[&str]) -> Run {
    Run::from(
        env.cmd(args)
            .current_dir(env.cfg())
            .env("SYSGEN_NOW", "1795435338")
            .env("TZ", "UTC")
            .output()
            .expect("run sysgen"),
    )
}

/// `diff CONFIG` answers "what would `switch CONFIG` do here": `+` for
/// what the configuration adds. `diff A B` is A to B, and no argument the
/// previous generation to the active one; `switch --dry-run` agrees.
#[test]
fn diff_reads_from_the_active_generation_to_the_target() {
    let env = TestEnv::new();
    let one = env.config(
        "one.json",
        json!({ "files": { "/etc/a": { "content": "a\n" } } }),
    );
    let two = env.config(
        "two.json",
        json!({ "files": { "/etc/a": { "content": "a\n" }, "/etc/extra": { "content": "x\n", "group": "www-data" } } }),
    );
    // Before any switch: from nothing.
    let d = run_in_cfg(&env, &["diff", "one.json"]).ok();
    assert_eq!(d.stdout, "+ /etc  directory\n+ /etc/a  file (0644, 2 B)\n");
    env.switch(&one);
    let d = run_in_cfg(&env, &["diff", "two.json"]).ok();
    assert_eq!(d.stdout, "+ /etc/extra  file (0644, 2 B, group www-data)\n");
    let j = run_in_cfg(&env, &["--json", "diff", "two.json"])
        .ok()
        .json();
    assert_eq!(j["changes"][0]["change"], "added");
    let plan = run_in_cfg(&env, &["switch", "--dry-run", "two.json"]).ok();
    assert!(
        plan.stdout
            .contains("create file /etc/extra (2 B, mode 0644, group www-data)"),
        "{}",
        plan.stdout
    );
    env.switch(&two);
    // Two generations: A to B, and B to A reads the other way.
    assert_eq!(
        run_in_cfg(&env, &["diff", "1", "2"]).ok().stdout,
        "+ /etc/extra  file (0644, 2 B, group www-data)\n"
    );
    assert_eq!(
        run_in_cfg(&env, &["diff", "2", "1"]).ok().stdout,
        "- /etc/extra  file (0644, 2 B, group www-data)\n"
    );
    assert_eq!(
        run_in_cfg(&env, &["diff"]).ok().stdout,
        "+ /etc/extra  file (0644, 2 B, group www-data)\n"
    );
    // Hashes only with -v.
    let v = run_in_cfg(&env, &["-v", "diff", "1", "2"]).ok().stdout;
    assert!(
        v.contains(&blake3::hash(b"x\n").to_hex().to_string()),
        "{v}"
    );
}

/// `diff -p`: unified diffs of text files, binary files named as such,
/// and a secret's content never shown (nor its hash).
#[test]
fn diff_patch_shows_text_changes_marks_binaries_and_hides_secrets() {
    let env = TestEnv::new();
    env.write_cfg("bin1", "\0\u{1}\u{2}");
    env.write_cfg("bin2", "\0\u{1}\u{3}");
    let one = env.config(
        "one.json",
        json!({ "files": {
            "/etc/app.conf": { "content": "a = 1\nb = 2\nc = 3\n" },
            "/etc/blob": { "source": "bin1" },
            "/etc/token": { "content": "old-secret\n", "secret": true },
        }}),
    );
    let two = env.config(
        "two.json",
        json!({ "files": {
            "/etc/app.conf": { "content": "a = 1\nb = 20\nc = 3\n" },
            "/etc/blob": { "source": "bin2" },
            "/etc/token": { "content": "new-secret\n", "secret": true },
        }}),
    );
    env.switch(&one);
    let p = run_in_cfg(&env, &["diff", "-p", s(&two)]).ok().stdout;
    assert!(
        p.contains("--- a/etc/app.conf\n+++ b/etc/app.conf\n@@ -1,3 +1,3 @@\n a = 1\n-b = 2\n+b = 20\n c = 3\n"),
        "{p}"
    );
    assert!(p.contains("/etc/blob: binary file; not shown"), "{p}");
    assert!(
        p.contains("/etc/token: secret; its content is not shown"),
        "{p}"
    );
    let j = run_in_cfg(&env, &["--json", "diff", "--patch", s(&two)]).ok();
    for leak in ["old-secret", "new-secret"] {
        assert!(!p.contains(leak) && !j.stdout.contains(leak), "{leak}");
        let h = blake3::hash(format!("{leak}\n").as_bytes())
            .to_hex()
            .to_string();
        assert!(!j.stdout.contains(&h), "a secret's hash in --json");
    }
    let patches = j.json()["patches"].clone();
    assert_eq!(patches.as_array().map(Vec::len), Some(3), "{patches}");
}

/// A tree that is added or removed whole is one line with a count; `-v`
/// lists every entry.
#[test]
fn an_added_or_removed_tree_is_one_line() {
    let env = TestEnv::new();
    for i in 0..50 {
        env.write_cfg(&format!("site/d{}/p{i}.html", i % 5), "<p>\n");
    }
    let one = env.config(
        "one.json",
        json!({ "files": { "/etc/a": { "content": "a\n" } } }),
    );
    let two = env.config(
        "two.json",
        json!({ "files": { "/etc/a": { "content": "a\n" } }, "trees": { "/srv/www": { "source": "site" } } }),
    );
    env.switch(&one);
    let d = run_in_cfg(&env, &["diff", "two.json"]).ok().stdout;
    assert_eq!(d, "+ /srv  directory, and 56 entries under it\n");
    // The plan folds the same way, keeping the steps' numbers.
    let plan = run_in_cfg(&env, &["switch", "--dry-run", "two.json"])
        .ok()
        .stdout;
    let lines: Vec<&str> = plan.lines().skip(1).collect();
    assert_eq!(lines.len(), 3, "{plan}");
    assert_eq!(
        lines[0], "    1. create directory /srv (mode 0755)",
        "{plan}"
    );
    assert_eq!(lines[1], " 2-57. create 56 entries under /srv", "{plan}");
    assert!(
        lines[2].starts_with("   58. activate generation 2 ("),
        "{plan}"
    );
    let all = run_in_cfg(&env, &["-v", "switch", "--dry-run", "two.json"])
        .ok()
        .stdout;
    let numbered = all
        .lines()
        .filter(|l| {
            l.trim_start()
                .split_once(". ")
                .is_some_and(|(n, _)| n.parse::<u32>().is_ok())
        })
        .count();
    assert_eq!(numbered, 58, "-v lists every step:\n{all}");
    let all = run_in_cfg(&env, &["-v", "diff", "two.json"]).ok().stdout;
    assert!(all.lines().count() > 56, "{all}");
    env.switch(&two);
    let d = run_in_cfg(&env, &["diff", "2", "1"]).ok().stdout;
    assert_eq!(d, "- /srv  directory, and 56 entries under it\n");
}

/// A generation that does not exist and one gc deleted: one exit status,
/// 2, whatever the command. Durations read `1h30m`.
#[test]
fn no_such_generation_is_one_exit_code_and_durations_read_naturally() {
    let env = TestEnv::new();
    let one = env.config(
        "one.json",
        json!({ "files": { "/etc/a": { "content": "a\n" } } }),
    );
    let two = env.config(
        "two.json",
        json!({ "files": { "/etc/a": { "content": "b\n" } } }),
    );
    env.switch(&one);
    env.switch(&two);
    env.run(&["gc", "--keep", "0", "--older-than", "1h30m"])
        .ok();
    env.run(&["gc", "--keep", "0"]).ok();
    for args in [
        &["rollback", "--to", "1"][..],
        &["rollback", "--to", "99"],
        &["switch", "1"],
        &["show", "1"],
        &["diff", "1", "2"],
    ] {
        let r = env.run(args).expect(2);
        assert!(r.stderr.contains("generation"), "{args:?}: {}", r.stderr);
    }
    let r = env.run(&["gc", "--older-than", "3mo"]).expect(2);
    assert!(r.stderr.contains("days or weeks"), "{}", r.stderr);
    // One plural: a single entry is "1 entry".
    let v = env.run(&["verify"]).ok().stdout;
    assert_eq!(v, "ok: the root matches generation 2 (2 entries)\n");
}

/// `-v` prints each step of a switch as it runs (once, in plan order,
/// before the summary), with sizes human and owners named.
#[test]
fn verbose_switch_streams_its_steps() {
    let env = TestEnv::new();
    let c = env.config(
        "c.json",
        json!({ "files": { "/etc/app.conf": { "content": "x\n", "group": "www-data" } }, "symlinks": { "/etc/l": "/etc/app.conf" } }),
    );
    let out = env.run(&["-v", "switch", s(&c)]).ok().stdout;
    let lines: Vec<&str> = out.lines().collect();
    let step = |l: &str| lines.iter().position(|x| x.trim().starts_with(l));
    // The content's hash too, under -v.
    let hash = &blake3::hash(b"x\n").to_hex()[..12];
    let write = step(&format!(
        "create file /etc/app.conf (2 B, {hash}, mode 0644, group www-data)"
    ));
    let link = step("link symlink /etc/l -> /etc/app.conf");
    let done = lines.iter().position(|l| l.contains("is active"));
    assert!(write.is_some() && write < link && link < done, "{out}");
    assert_eq!(out.matches("link symlink /etc/l").count(), 1, "{out}");
}

/// The steps stream: a switch cut short after its 5th step (the fault
/// point) has printed exactly those 5, though they were files written in
/// one parallel run.
#[test]
fn verbose_steps_are_printed_as_they_finish() {
    let env = TestEnv::new();
    let files: serde_json::Map<String, Value> = (0..40)
        .map(|i| {
            (
                format!("/etc/f{i:02}"),
                json!({ "content": format!("{i}\n") }),
            )
        })
        .collect();
    let c = env.config("c.json", json!({ "files": files }));
    let r = env.run_with_fault(5, &["-v", "switch", s(&c)]);
    assert!(r.killed, "{r:?}");
    let printed: Vec<&str> = r.stdout.lines().filter(|l| l.starts_with("  ")).collect();
    assert_eq!(printed.len(), 5, "{}", r.stdout);
    assert!(!r.stdout.contains("is active"), "{}", r.stdout);
}
