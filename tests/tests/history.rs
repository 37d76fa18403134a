//! What sysgen knows, shown: `log` (every activation, how it came about,
//! from and to, and its counts), `show N` (configuration, tree counts and
//! sizes, the other sections), and `list` with configuration paths and
//! change counts. Dates: local time with its zone for people, RFC 3339 in
//! JSON, and ages relative to the (pinned) clock.

use serde_json::{Value, json};
use sysgen_tests::{TestEnv, s};

const T0: i64 = 1_795_435_338;

fn at(env: &TestEnv, t: i64, args: &[&str]) -> sysgen_tests::Run {
    sysgen_tests::Run::from(
        env.cmd(args)
            .env("SYSGEN_NOW", t.to_string())
            .env("TZ", "Europe/Paris")
            .output()
            .expect("run sysgen"),
    )
}

fn configs(env: &TestEnv) -> (std::path::PathBuf, std::path::PathBuf) {
    let one = env.config(
        "one.json",
        json!({ "files": { "/etc/a": { "content": "a\n" }, "/etc/b": { "content": "b\n" } } }),
    );
    let two = env.config(
        "two.json",
        json!({
            "files": { "/etc/a": { "content": "A\n" }, "/etc/c": { "content": "c\n" } },
            "symlinks": { "/etc/l": "/etc/a" },
        }),
    );
    (one, two)
}

#[test]
fn log_tells_every_activation_how_and_what_it_changed() {
    let env = TestEnv::new();
    let (one, two) = configs(&env);
    at(&env, T0, &["switch", s(&one)]).ok();
    at(&env, T0 + 60, &["switch", s(&two)]).ok();
    at(&env, T0 + 120, &["rollback"]).ok();
    // A switch cut short and finished by recover; another undone.
    let r = env.run_with_fault(1, &["switch", s(&two)]);
    assert!(r.killed, "{}", r.stderr);
    at(&env, T0 + 180, &["recover"]).ok();
    let r = env.run_with_fault(1, &["switch", s(&one)]);
    assert!(r.killed, "{}", r.stderr);
    at(&env, T0 + 240, &["recover", "--rollback"]).ok();

    let log = at(&env, T0 + 3 * 3600, &["--json", "log"]).ok().json();
    let acts = log["activations"].as_array().expect("activations");
    let row = |a: &Value| {
        (
            a["how"].as_str().unwrap_or_default().to_owned(),
            a["from"].as_u64(),
            a["to"].as_u64(),
        )
    };
    let got: Vec<_> = acts.iter().map(row).collect();
    assert_eq!(
        got,
        [
            ("switch".to_owned(), None, Some(1)),
            ("switch".to_owned(), Some(1), Some(2)),
            ("rollback".to_owned(), Some(2), Some(1)),
            ("recover".to_owned(), Some(1), Some(2)),
        ],
        "{log}"
    );
    // The undone switch never committed: it left no activation.
    assert_eq!(
        acts[1]["changes"],
        json!({ "added": 2, "removed": 1, "changed": 1 })
    );
    assert_eq!(acts[0]["at"], "2026-11-23T12:02:18Z");
    let human = at(&env, T0 + 3 * 3600, &["log"]).ok().stdout;
    let lines: Vec<&str> = human.lines().collect();
    assert_eq!(
        lines[1],
        "2026-11-23 13:03:18 CET (2 hours ago)  switch  generation 1 -> generation 2  +2 -1 ~1",
        "{human}"
    );
    assert!(
        lines[3].contains("recover  generation 1 -> generation 2"),
        "{human}"
    );

    // gc deletes generation 1: its transitions have no counts any more.
    at(&env, T0 + 300, &["gc", "--keep", "0"]).ok();
    let log = at(&env, T0 + 300, &["--json", "log"]).ok().json();
    assert_eq!(log["activations"][1]["changes"], Value::Null);
    let human = at(&env, T0 + 300, &["log"]).ok().stdout;
    assert!(human.contains("a generation gc deleted"), "{human}");
}

#[test]
fn show_and_list_tell_the_configuration_and_the_counts() {
    let env = TestEnv::new();
    let (one, two) = configs(&env);
    at(&env, T0, &["switch", s(&one)]).ok();
    at(&env, T0 + 86400, &["switch", s(&two)]).ok();

    let sh = at(&env, T0 + 2 * 86400, &["--json", "show", "2"])
        .ok()
        .json();
    assert_eq!(sh["number"], 2);
    assert_eq!(sh["active"], true);
    assert_eq!(sh["config"], s(&two));
    assert_eq!(sh["built_at"], "2026-11-24T12:02:18Z");
    assert_eq!(
        sh["files"],
        json!({ "files": 2, "directories": 1, "symlinks": 1, "bytes": 4, "secret_files": 0 })
    );
    // Run from the configuration's directory, the path reads as typed.
    let human = sysgen_tests::Run::from(
        env.cmd(&["show"])
            .current_dir(env.cfg())
            .env("SYSGEN_NOW", (T0 + 2 * 86400).to_string())
            .env("TZ", "UTC")
            .output()
            .expect("run"),
    )
    .ok()
    .stdout;
    assert_eq!(
        human,
        "generation 2 (".to_owned()
            + &sh["id"].as_str().expect("id")[..12]
            + "), active\nbuilt:    2026-11-24 12:02:18 UTC (1 day ago)\nconfig:   two.json\nfiles:    2 files (4 B), 1 directory, 1 symlink\n"
    );
    at(&env, T0, &["show", "9"]).expect(2);

    let l = at(&env, T0 + 2 * 86400, &["--json", "list"]).ok().json();
    let g = &l["generations"];
    assert_eq!(
        g[0]["changes"],
        json!({ "added": 3, "removed": 0, "changed": 0 })
    );
    assert_eq!(
        g[1]["changes"],
        json!({ "added": 2, "removed": 1, "changed": 1 })
    );
    assert_eq!(g[1]["config"], s(&two));
    assert_eq!(g[0]["date"], "2026-11-23T12:02:18Z");
    let human = at(&env, T0 + 2 * 86400, &["list"]).ok().stdout;
    let want = format!(
        "   2  {}  2026-11-24 13:02:18 CET (1 day ago)  +2 -1 ~1  {}  active",
        &g[1]["id"].as_str().expect("id")[..12],
        s(&two)
    );
    assert_eq!(human.lines().nth(1), Some(want.as_str()), "{human}");
}

/// `show` names every other section of a generation: services here (and
/// packages with their versions, datasets, whatever a kind records), for a
/// generation built and never switched to, found by its id prefix.
#[test]
fn show_lists_the_sections_of_a_built_generation() {
    let env = TestEnv::new();
    let c = env.config(
        "svc.json",
        json!({
            "files": { "/etc/systemd/system/app.service": { "content": "[Service]\nExecStart=/bin/true\n" } },
            "services": { "app.service": { "restart_on": ["/etc/motd"] } },
            "datasets": { "/srv/db": { "type": "directory" } },
        }),
    );
    let id = env.run(&["build", s(&c)]).ok().stdout.trim().to_owned();
    let out = at(&env, T0, &["show", &id[..8]]).ok().stdout;
    assert!(
        out.starts_with(&format!("a generation never switched to ({})\n", &id[..12])),
        "{out}"
    );
    assert!(out.contains("\ndatasets: 1\n  /srv/db\n"), "{out}");
    assert!(out.contains("\nservices: 1\n  app.service\n"), "{out}");
    let j = at(&env, T0, &["--json", "show", &id[..8]]).ok().json();
    assert_eq!(j["number"], Value::Null);
    assert_eq!(
        j["sections"]["services"]["app.service"]["restart_on"],
        json!(["/etc/motd"])
    );
}

/// Nothing of a secret (content or hash) in the new commands' output, with
/// `-v` or `--json`, after --force kept a hand-edited copy of it.
#[test]
fn the_history_commands_never_show_a_secret() {
    let env = TestEnv::new();
    let secret = |v: &str| json!({ "files": { "/etc/token": { "content": v, "secret": true } } });
    let one = env.config("one.json", secret("hush-one\n"));
    let two = env.config("two.json", secret("hush-two\n"));
    env.switch(&one);
    env.write_root("/etc/token", "hush-edit\n");
    env.run(&["switch", "--force", s(&two)]).ok();
    let leaks: Vec<String> = ["hush-one\n", "hush-two\n", "hush-edit\n"]
        .iter()
        .flat_map(|v| {
            let h = blake3::hash(v.as_bytes()).to_hex().to_string();
            [v.trim().to_owned(), h[..12].to_owned()]
        })
        .collect();
    for args in [
        &["log"][..],
        &["-v", "log"],
        &["--json", "log"],
        &["show", "1"],
        &["-v", "show", "2"],
        &["--json", "show", "2"],
        &["saved"],
        &["-v", "--json", "saved"],
        &["saved", "1"],
        &["-v", "diff", "-p", "1", "2"],
        &["--json", "diff", "-p", "1", "2"],
        &["-v", "list"],
        &["--json", "list"],
    ] {
        let r = env.run(args).ok();
        for l in &leaks {
            assert!(
                !r.stdout.contains(l.as_str()) && !r.stderr.contains(l.as_str()),
                "{args:?} shows {l}:\n{}",
                r.stdout
            );
        }
    }
}
