//! Every bad-input rule of SPEC §2: exit status 2, an error on stderr that
//! starts with "error:", is a few lines long, names the file and the
//! location (line:column, and the declared path for the rules past
//! syntax), shows the line with a caret when it points into the file, one
//! JSON document with "ok": false and a structured "diagnostic" under
//! --json, never a panic, and nothing changed: the whole root, the
//! generation list and the store are identical before and after, on a root
//! that already has an active generation.

#![allow(
    clippy::unwrap_used,
    reason = "helpers of tests: a panic is a failed test with its message"
)]

use std::fs;
use std::path::PathBuf;

use serde_json::json;
use sysgen_tests::{Run, TestEnv, dump_tree};

#[path = "bad_input/cases.rs"]
mod cases;
use cases::{CASES, Case};

/// Everything a failed command must leave alone: the whole root (state
/// directory included, less the lock file whose content is the last pid),
/// and the generation list.
fn world(env: &TestEnv) -> String {
    let lock = env.state().join("lock");
    let root = dump_tree(&env.root(), &[lock]);
    let list = env.run(&["--json", "list"]).ok().stdout;
    format!("{root}\n--- list\n{list}")
}

/// A root with an active generation (and one older one), holding an
/// unmanaged file too.
fn setup() -> TestEnv {
    let env = TestEnv::new();
    env.write_root("/etc/hostname", "web1\n");
    env.write_root("/etc/unmanaged", "admin's\n");
    let g1 = env.config(
        "good1.json",
        json!({ "files": { "/etc/motd": { "content": "good one\n" } } }),
    );
    let g2 = env.config(
        "good2.json",
        json!({
            "files": { "/etc/motd": { "content": "good two\n" } },
            "directories": { "/srv/app": { "mode": "0750" } }
        }),
    );
    env.run(&["switch", g1.to_str().unwrap()]).ok();
    env.run(&["switch", g2.to_str().unwrap()]).ok();
    env
}

#[track_caller]
fn check_error(case: &Case, how: &str, r: &Run) {
    let ctx = format!(
        "case {:?}, {how}\nexit {:?}\nstdout:\n{}\nstderr:\n{}",
        case.name, r.code, r.stdout, r.stderr
    );
    assert!(!r.stderr.contains("panicked"), "{ctx}");
    assert_eq!(r.code, Some(2), "exit status must be 2: {ctx}");
    assert!(
        r.stderr.starts_with("error:"),
        "stderr must start with error: {ctx}"
    );
    // The error line, the snippet (location, the line, the caret) and a
    // help line.
    let lines = r.stderr.trim_end().lines().count();
    assert!(lines <= 9, "the error must be a few lines ({lines}): {ctx}");
    // A located error shows its line with a caret under what is wrong.
    if r.stderr.contains("\n --> ") {
        assert!(r.stderr.contains(" ^"), "a snippet without a caret: {ctx}");
    }
    for w in case.want {
        assert!(r.stderr.contains(w), "stderr must name {w:?}: {ctx}");
    }
}

/// Runs one case on a fresh root; returns the failed checks.
fn run_case(case: &Case) -> Vec<String> {
    let mut failures = Vec::new();
    let env = setup();
    for (name, text) in case.files {
        env.write_cfg(name, text);
    }
    let cfg: PathBuf = env.cfg().join(case.files[0].0);
    let cfg = cfg.to_str().unwrap();
    let before = world(&env);
    let runs: [(&str, Vec<&str>); 6] = [
        ("switch", vec!["switch", cfg]),
        ("switch --dry-run", vec!["switch", "--dry-run", cfg]),
        ("switch --force", vec!["switch", "--force", cfg]),
        ("build", vec!["build", cfg]),
        ("diff", vec!["diff", cfg]),
        ("--json switch", vec!["--json", "switch", cfg]),
    ];
    for (how, args) in &runs {
        let r = env.run(args);
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            check_error(case, how, &r);
            if how.starts_with("--json") {
                let doc = r.json();
                assert_eq!(doc["ok"], false, "{doc}");
                assert!(
                    doc["error"].as_str().is_some_and(|e| !e.is_empty()),
                    "{doc}"
                );
                let d = &doc["diagnostic"];
                assert!(d["code"].as_str().is_some_and(|c| !c.is_empty()), "{doc}");
                assert!(
                    d["message"].as_str().is_some_and(|m| !m.is_empty()),
                    "{doc}"
                );
                // What stderr locates, the document locates too.
                if let Some(at) = r.stderr.lines().find_map(|l| l.strip_prefix(" --> ")) {
                    let want = format!(
                        "{}:{}:{}",
                        d["file"].as_str().unwrap_or("?"),
                        d["line"],
                        d["column"]
                    );
                    assert_eq!(at, want, "{doc}");
                }
            } else {
                assert!(r.stdout.is_empty(), "stdout must be empty: {}", r.stdout);
            }
            let after = world(&env);
            assert_eq!(
                after, before,
                "case {:?}, {how}: something changed",
                case.name
            );
        }));
        if let Err(e) = res {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            failures.push(msg);
        }
    }
    failures
}

#[test]
fn every_bad_input_rule_exits_2_names_the_place_and_changes_nothing() {
    // Cases are independent (one temp root each): run them side by side.
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = CASES
            .chunks(CASES.len().div_ceil(8))
            .map(|chunk| s.spawn(move || chunk.iter().flat_map(run_case).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} failures:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// The refusal of packages (datasets, services) names the top-level file,
/// not the role that declares them.
#[test]
fn unsupported_section_in_a_role_names_the_role() {
    let case = Case {
        name: "packages declared in an included role",
        files: &[
            ("c.json", r#"{ "include": ["roles/web.json"] }"#),
            ("roles/web.json", r#"{ "packages": { "apt": ["nginx"] } }"#),
        ],
        want: &["roles/web.json", "packages"],
    };
    let failures = run_case(&case);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Checks the harness: on the same setup a good configuration succeeds
/// with nothing on stderr, and `world` sees the change, so "nothing
/// changed" in the table is a real check.
#[test]
fn a_good_configuration_on_the_same_setup_succeeds_and_is_seen() {
    let env = setup();
    let before = world(&env);
    let c = env.config(
        "c.json",
        json!({ "files": { "/etc/issue": { "content": "x\n" } } }),
    );
    let r = env.run(&["switch", c.to_str().unwrap()]).ok();
    assert!(r.stderr.is_empty(), "{}", r.stderr);
    assert!(env.at("/etc/issue").is_file());
    assert_ne!(world(&env), before);
}

/// A bad global option or command line is also status 2, without a panic.
#[test]
fn bad_command_lines_exit_2() {
    let env = setup();
    let before = world(&env);
    let missing = env.cfg().join("missing.json");
    for args in [
        vec!["frobnicate"],
        vec!["switch"],
        vec!["rollback", "--to", "nine"],
        vec!["gc", "--keep", "-1"],
        vec!["switch", "no-such-generation-id"],
        vec!["rollback", "--to", "99"],
        vec!["diff", "1", "99"],
        vec!["pin", "99"],
        vec!["switch", missing.to_str().unwrap()],
    ] {
        let r = env.run(&args);
        assert!(!r.stderr.contains("panicked"), "{args:?}: {}", r.stderr);
        assert_eq!(
            r.code,
            Some(2),
            "{args:?}\nstdout:\n{}\nstderr:\n{}",
            r.stdout,
            r.stderr
        );
        assert!(
            !r.stderr.trim().is_empty(),
            "{args:?}: an error must say something"
        );
        assert_eq!(world(&env), before, "{args:?} changed something");
    }
    let r = env.run(&["switch", missing.to_str().unwrap()]);
    assert!(
        r.stderr.starts_with("error:") && r.stderr.contains("missing.json"),
        "{}",
        r.stderr
    );
    // A root that does not exist.
    let r = std::process::Command::new(TestEnv::sysgen_bin())
        .args(["--root", "/nonexistent/root/dir", "list"])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(2));
    assert!(!std::path::Path::new("/nonexistent").exists());
    // The lock file aside, the state directory is untouched by all of these.
    assert!(fs::metadata(env.state().join("sysgen.db")).is_ok());
}

/// On a terminal the snippet is coloured; `NO_COLOR` turns colour off;
/// piped (every test above), it is plain. The terminal is util-linux's
/// `script`, which runs the command on a pseudo-terminal.
#[test]
fn a_configuration_error_is_coloured_on_a_terminal_unless_no_color() {
    if !std::path::Path::new("/usr/bin/script").exists() {
        sysgen_tests::cannot_run(
            "a_configuration_error_is_coloured_on_a_terminal_unless_no_color",
            "util-linux's script is not installed",
        );
        return;
    }
    let env = TestEnv::new();
    let cfg = env.write_cfg(
        "c.json",
        "{\n  \"services\": { \"a.service\": { \"restart-on\": [] } }\n}\n",
    );
    let line = format!(
        "{} --root {} build {}",
        TestEnv::sysgen_bin().display(),
        env.root().display(),
        cfg.display()
    );
    let on_a_terminal = |no_color: bool| {
        let mut c = std::process::Command::new("/usr/bin/script");
        c.args(["-q", "-e", "-c", &line, "/dev/null"]);
        c.env("TERM", "xterm-256color");
        if no_color {
            c.env("NO_COLOR", "1");
        } else {
            c.env_remove("NO_COLOR");
        }
        Run::from(c.output().unwrap())
    };
    let coloured = on_a_terminal(false);
    assert_eq!(coloured.code, Some(2), "{}", coloured.stdout);
    assert!(coloured.stdout.contains("\u{1b}["), "{:?}", coloured.stdout);
    assert!(
        coloured.stdout.contains("did you mean"),
        "{}",
        coloured.stdout
    );
    let plain = on_a_terminal(true);
    assert_eq!(plain.code, Some(2), "{}", plain.stdout);
    assert!(!plain.stdout.contains('\u{1b}'), "{:?}", plain.stdout);
    assert!(plain.stdout.contains("did you mean"), "{}", plain.stdout);
}
