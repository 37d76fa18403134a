//! `sysgen repair`: every managed entry changed on the root (content, mode,
//! a deleted symlink, a directory's mode, a secret) is put back from the
//! store, what was there is saved first and can be read back with `sysgen
//! saved`, and `verify` points at it. A dry run changes nothing.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};

use serde_json::json;
use sysgen_tests::{TestEnv, s};

fn setup() -> (TestEnv, String) {
    let env = TestEnv::new();
    let cfg = env.config(
        "web.json",
        json!({
            "files": {
                "/etc/app.conf": { "content": "workers = 4\n", "mode": "0640", "group": "www-data" },
                "/etc/motd": { "content": "hello\n" },
                "/etc/token": { "content": "hush\n", "secret": true },
            },
            "directories": { "/srv/app": { "mode": "0750" } },
            "symlinks": { "/etc/current": "/srv/app" },
        }),
    );
    env.switch(&cfg);
    let tree = env.tree();
    (env, tree)
}

/// The admin's hand edits: content, mode, a deleted symlink, a symlink
/// pointed elsewhere would be the same; a directory's mode; a secret.
fn drift(env: &TestEnv) {
    env.write_root("/etc/app.conf", "workers = 64\n");
    fs::set_permissions(env.at("/etc/motd"), fs::Permissions::from_mode(0o666)).expect("chmod");
    fs::remove_file(env.at("/etc/current")).expect("rm symlink");
    fs::set_permissions(env.at("/srv/app"), fs::Permissions::from_mode(0o777)).expect("chmod dir");
    env.write_root("/etc/token", "leaked\n");
}

#[test]
fn repair_puts_back_every_drifted_entry_and_saves_what_was_there() {
    let (env, clean) = setup();
    drift(&env);
    let drifted = env.tree();
    let v = env.run(&["verify"]).expect(1);
    assert!(v.stdout.contains("`sysgen repair`"), "{}", v.stdout);

    // A dry run says what it would do and changes nothing.
    let dry = env.run(&["repair", "--dry-run"]).ok();
    for p in [
        "/etc/app.conf",
        "/etc/motd",
        "/etc/current",
        "/srv/app",
        "/etc/token",
    ] {
        assert!(
            dry.stdout.contains(&format!("would put back {p} ")),
            "{p}:\n{}",
            dry.stdout
        );
    }
    assert_eq!(env.tree(), drifted, "a dry run changed the root");
    assert!(env.run(&["--json", "saved"]).ok().json()["saved"] == json!([]));

    let r = env.run(&["--json", "repair"]).ok().json();
    assert_eq!(r["ok"], true);
    assert_eq!(r["repaired"].as_array().map(Vec::len), Some(5), "{r}");
    // Not even a hash of the secret leaves the store.
    assert!(
        !r.to_string()
            .contains(&blake3::hash(b"leaked\n").to_hex().to_string())
    );
    assert_eq!(
        env.tree(),
        clean,
        "the root is not back as the generation has it"
    );
    env.run(&["verify"]).ok();
    let again = env.run(&["repair"]).ok();
    assert!(
        again.stdout == "ok: the root matches generation 1; no path to repair\n",
        "{}",
        again.stdout
    );

    // Both changed contents were saved first, and read back exactly.
    let saved = env.run(&["--json", "saved"]).ok().json();
    let copies = saved["saved"].as_array().expect("saved");
    let paths: Vec<&str> = copies.iter().filter_map(|c| c["path"].as_str()).collect();
    // The deleted symlink had nothing to save; the mode change loses nothing.
    assert_eq!(paths, ["/etc/app.conf", "/etc/token"]);
    let human = env.run(&["saved"]).ok().stdout;
    assert!(
        human.contains("/etc/app.conf") && !human.contains("leaked"),
        "{human}"
    );
    for c in copies {
        let n = c["number"].to_string();
        let out = env.dir.path().join(format!("copy-{n}"));
        env.run(&["saved", &n, "--to", s(&out)]).ok();
        let want = if c["path"] == "/etc/token" {
            "leaked\n"
        } else {
            "workers = 64\n"
        };
        assert_eq!(fs::read_to_string(&out).expect("copy"), want);
        assert_eq!(
            fs::metadata(&out).expect("meta").permissions().mode() & 0o777,
            0o600
        );
        // An existing file is never overwritten.
        let r = env.run(&["saved", &n, "--to", s(&out)]).expect(2);
        assert!(r.stderr.contains("exists"), "{}", r.stderr);
    }
    env.run(&["saved", "99", "--to", s(&env.dir.path().join("x"))])
        .expect(2);
}

#[test]
fn repair_refuses_what_it_must_not_replace_and_changes_nothing_then() {
    let (env, _) = setup();
    // A directory full of the admin's files where the symlink was.
    fs::remove_file(env.at("/etc/current")).expect("rm");
    env.write_root("/etc/current/notes", "mine\n");
    let before = env.tree();
    let r = env.run(&["repair"]);
    assert_ne!(r.code, Some(0), "{}", r.stdout);
    assert!(
        r.stderr.contains("/etc/current") || r.stdout.contains("/etc/current"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    assert_eq!(env.tree(), before);
    // A symlink pointed elsewhere is put back, and its old target saved.
    fs::remove_dir_all(env.at("/etc/current")).expect("rm dir");
    symlink("/tmp", env.at("/etc/current")).expect("symlink");
    env.run(&["repair"]).ok();
    assert_eq!(
        fs::read_link(env.at("/etc/current"))
            .expect("link")
            .to_str(),
        Some("/srv/app")
    );
    env.run(&["verify"]).ok();
}

/// A repair cut short at every step: `recover` finishes it (the root is
/// exactly the generation); `recover --rollback` stops it where it was
/// (what was put back stays, the rest is still drift, named by verify),
/// and a second repair finishes the job. Either way one generation is
/// active and nothing is lost: the edited copy is in `saved`.
#[test]
fn a_repair_cut_short_at_any_step_recovers_both_ways() {
    let (probe, _) = setup();
    drift(&probe);
    let steps = probe
        .run(&["--json", "repair", "--dry-run"])
        .ok()
        .steps()
        .len();
    assert!(steps >= 5, "{steps}");
    for k in 1..=steps as u64 {
        for back in [false, true] {
            let (env, clean) = setup();
            drift(&env);
            let r = env.run_with_fault(k, &["repair"]);
            assert!(r.killed, "step {k}: {}", r.stdout);
            let human = env.run(&["status"]).ok().stdout;
            assert!(
                human.contains("interrupted: a repair of generation 1 did not finish"),
                "{human}"
            );
            let st = env.run(&["--json", "status"]).ok().json();
            assert_eq!(st["active"]["number"], 1, "step {k}");
            assert!(st["interrupted"].is_object(), "step {k}: {st}");
            if back {
                env.run(&["recover", "--rollback"]).ok();
                let v = env.run(&["--json", "verify"]).json();
                assert!(
                    v["verify"]["drift"]
                        .as_array()
                        .is_some_and(|d| d.len() <= 5),
                    "step {k}: {v}"
                );
                env.run(&["repair"]).ok();
            } else {
                env.run(&["recover"]).ok();
            }
            assert_eq!(env.tree(), clean, "step {k}, rollback {back}");
            env.run(&["verify"]).ok();
            let saved = env.run(&["--json", "saved"]).ok().json();
            assert!(
                saved["saved"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|c| c["path"] == "/etc/app.conf")),
                "step {k}: {saved}"
            );
            let log = env.run(&["--json", "log"]).ok().json();
            assert_eq!(log["activations"].as_array().map(Vec::len), Some(1));
        }
    }
}

/// Drift that is not a path (a unit disabled by hand) is named as not
/// repaired, and repair exits 1; the paths are put back all the same.
#[test]
fn repair_names_the_drift_it_does_not_put_back() {
    if std::process::Command::new("systemctl")
        .arg("--version")
        .output()
        .is_err()
    {
        sysgen_tests::cannot_run("repair units", "no systemctl on this machine");
        return;
    }
    let env = TestEnv::new();
    let cfg = env.config(
        "svc.json",
        json!({
            "files": {
                "/etc/systemd/system/app.service": { "content": "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n" },
                "/etc/motd": { "content": "hello\n" },
            },
            "services": { "app.service": {} },
        }),
    );
    env.switch(&cfg);
    fs::remove_file(env.at("/etc/systemd/system/multi-user.target.wants/app.service"))
        .expect("disable by hand");
    env.write_root("/etc/motd", "edited\n");
    let r = env.run(&["repair"]).expect(1);
    assert!(r.stdout.contains("put back /etc/motd"), "{}", r.stdout);
    assert!(
        r.stdout.contains("not repaired: app.service: disabled"),
        "{}",
        r.stdout
    );
    assert_eq!(
        fs::read_to_string(env.at("/etc/motd")).expect("motd"),
        "hello\n"
    );
    let v = env.run(&["verify"]).expect(1);
    assert!(!v.stdout.contains("`sysgen repair`"), "{}", v.stdout);
}
