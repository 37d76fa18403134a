//! Managed blocks in files sysgen does not own (issue #13): every byte
//! outside the blocks is the admin's and survives add, change, remove and
//! rollback; a hand edit inside a block is drift, refused; a block in a
//! missing file creates it, and the file goes again when it holds nothing
//! else. Every check compares the whole root.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is a failed test with its message"
)]

use std::fs;

use serde_json::{Value, json};
use sysgen_tests::{TestEnv, file_line, s, tree_with};

const HOSTS: &str = "127.0.0.1 localhost\n::1 localhost ip6-localhost\n";

/// A root with the admin's `/etc/hosts`, and `/var/lib` for the state.
fn env() -> TestEnv {
    let env = TestEnv::new();
    fs::create_dir_all(env.at("/var/lib")).unwrap();
    env.write_root("/etc/hosts", HOSTS);
    env
}

/// `base` with the files `files` (path, mode, content) as given, and
/// without those of `gone`.
fn tree(base: &str, files: &[(&str, u32, &str)], gone: &[&str]) -> String {
    let drop: Vec<&str> = files
        .iter()
        .map(|f| f.0)
        .chain(gone.iter().copied())
        .collect();
    let kept: Vec<&str> = base
        .lines()
        .filter(|l| !drop.contains(&l.split(' ').next().unwrap()))
        .collect();
    let lines: Vec<String> = files
        .iter()
        .map(|(p, m, c)| file_line(p, *m, "0:0", c.as_bytes()))
        .collect();
    let extra: Vec<&str> = lines.iter().map(String::as_str).collect();
    tree_with(&kept.join("\n"), &extra)
}

fn blocks(v: Value) -> Value {
    json!({ "blocks": v })
}

fn read(env: &TestEnv, p: &str) -> String {
    fs::read_to_string(env.at(p)).unwrap()
}

#[test]
fn admin_edits_outside_blocks_survive_add_change_remove_and_rollback() {
    let env = env();
    let base = env.tree();
    let c1 = env.config(
        "c1.json",
        blocks(json!({ "/etc/hosts": { "db": "10.0.0.5 db" } })),
    );
    env.switch(&c1);
    let after1 = format!("{HOSTS}# BEGIN sysgen db\n10.0.0.5 db\n# END sysgen db\n");
    assert_eq!(
        env.tree(),
        tree(&base, &[("/etc/hosts", 0o644, &after1)], &[])
    );

    // The admin edits before and after the block.
    let edited = format!("# mine\n{after1}10.9.9.9 mine\n");
    env.write_root("/etc/hosts", &edited);
    let c2 = env.config(
        "c2.json",
        blocks(json!({ "/etc/hosts": { "db": "10.0.0.6 db\n", "web": "10.0.0.7 web\n" } })),
    );
    env.switch(&c2);
    let after2 = format!(
        "# mine\n{HOSTS}# BEGIN sysgen db\n10.0.0.6 db\n# END sysgen db\n10.9.9.9 mine\n# BEGIN sysgen web\n10.0.0.7 web\n# END sysgen web\n"
    );
    assert_eq!(read(&env, "/etc/hosts"), after2);

    // More admin edits; the block db leaves, web stays.
    let edited2 = after2.replace("10.9.9.9 mine", "10.9.9.9 mine again");
    env.write_root("/etc/hosts", &edited2);
    let c3 = env.config(
        "c3.json",
        blocks(json!({ "/etc/hosts": { "web": "10.0.0.7 web\n" } })),
    );
    env.switch(&c3);
    let after3 = format!(
        "# mine\n{HOSTS}10.9.9.9 mine again\n# BEGIN sysgen web\n10.0.0.7 web\n# END sysgen web\n"
    );
    assert_eq!(
        env.tree(),
        tree(&base, &[("/etc/hosts", 0o644, &after3)], &[])
    );

    // Rollback to generation 2 brings db back (at the end) with the admin's lines.
    env.run(&["rollback"]).ok();
    let back2 = format!("{after3}# BEGIN sysgen db\n10.0.0.6 db\n# END sysgen db\n");
    assert_eq!(
        env.tree(),
        tree(&base, &[("/etc/hosts", 0o644, &back2)], &[])
    );
    env.run(&["verify"]).ok();

    // A generation without blocks leaves exactly the admin's file.
    let c4 = env.config("c4.json", json!({}));
    env.switch(&c4);
    let admin = format!("# mine\n{HOSTS}10.9.9.9 mine again\n");
    assert_eq!(
        env.tree(),
        tree(&base, &[("/etc/hosts", 0o644, &admin)], &[])
    );
}

#[test]
fn a_hand_edit_inside_a_block_is_refused_and_force_saves_the_file_first() {
    let env = env();
    let c1 = env.config(
        "c1.json",
        blocks(json!({ "/etc/hosts": { "db": "10.0.0.5 db\n" } })),
    );
    env.switch(&c1);
    let hand = read(&env, "/etc/hosts").replace("10.0.0.5", "10.0.0.99");
    env.write_root("/etc/hosts", &hand);
    let drift = env.run(&["verify"]).expect(1);
    assert!(
        drift.stdout.contains("block db was changed by hand"),
        "{}",
        drift.stdout
    );

    let c2 = env.config(
        "c2.json",
        blocks(json!({ "/etc/hosts": { "db": "10.0.0.6 db\n" } })),
    );
    let before = env.tree();
    let refused = env.run(&["switch", s(&c2)]).expect(1);
    assert!(
        refused.stderr.contains("block db was changed by hand")
            && refused.stderr.contains("--force"),
        "{}",
        refused.stderr
    );
    assert_eq!(env.tree(), before, "a refused switch changes nothing");
    let list = env.run(&["--json", "list"]).ok().json();
    assert_eq!(
        list["generations"].as_array().map(Vec::len),
        Some(1),
        "{list}"
    );

    // A block removed by hand is drift too.
    env.write_root("/etc/hosts", HOSTS);
    let removed = env.run(&["switch", s(&c2)]).expect(1);
    assert!(
        removed.stderr.contains("block db was removed by hand"),
        "{}",
        removed.stderr
    );
    env.write_root("/etc/hosts", &hand);

    // --force goes ahead, after keeping the hand-edited file in the store.
    let forced = env
        .run(&["--json", "switch", "--force", s(&c2)])
        .ok()
        .json();
    let saved = forced["saved"].as_array().unwrap();
    assert_eq!(saved.len(), 1, "{forced}");
    assert_eq!(saved[0]["path"], "/etc/hosts");
    assert!(sysgen_tests::store_holds(
        &env.state().join("store"),
        hand.as_bytes(),
        true
    ));
    assert_eq!(
        read(&env, "/etc/hosts"),
        format!("{HOSTS}# BEGIN sysgen db\n10.0.0.6 db\n# END sysgen db\n")
    );
}

#[test]
fn a_block_in_a_missing_file_creates_it_and_removes_it_when_empty() {
    let env = env();
    fs::create_dir_all(env.at("/etc/sudoers.d")).unwrap();
    // An empty file that was there before sysgen stays when its block goes.
    env.write_root("/etc/admin.conf", "");
    let base = env.tree();
    let c1 = env.config(
        "c1.json",
        blocks(json!({
            "/etc/sudoers.d/ops": { "ops": { "content": "%ops ALL=(ALL) ALL\n", "mode": "0440" } },
            "/etc/admin.conf": { "a": { "content": "x = 1\n", "comment": ";" } }
        })),
    );
    env.switch(&c1);
    let ops = "# BEGIN sysgen ops\n%ops ALL=(ALL) ALL\n# END sysgen ops\n";
    let admin = "; BEGIN sysgen a\nx = 1\n; END sysgen a\n";
    assert_eq!(
        env.tree(),
        tree(
            &base,
            &[
                ("/etc/sudoers.d/ops", 0o440, ops),
                ("/etc/admin.conf", 0o644, admin)
            ],
            &[]
        )
    );
    let c0 = env.config("c0.json", json!({}));
    env.switch(&c0);
    assert_eq!(
        env.tree(),
        base,
        "the file sysgen made is gone, the admin's stays"
    );

    // One that the admin wrote into meanwhile is kept, without the block.
    env.switch(&c1);
    let mut with_line = read(&env, "/etc/sudoers.d/ops");
    with_line.push_str("%admins ALL=(ALL) ALL\n");
    env.write_root("/etc/sudoers.d/ops", &with_line);
    fs::set_permissions(
        env.at("/etc/sudoers.d/ops"),
        std::os::unix::fs::PermissionsExt::from_mode(0o440),
    )
    .unwrap();
    env.switch(&c0);
    assert_eq!(
        env.tree(),
        tree(
            &base,
            &[("/etc/sudoers.d/ops", 0o440, "%admins ALL=(ALL) ALL\n")],
            &[]
        )
    );
}

#[test]
fn broken_markers_a_foreign_block_and_a_missing_directory_are_refused() {
    let env = env();
    let before = env.tree();
    env.write_root("/etc/hosts", &format!("{HOSTS}# BEGIN sysgen db\nstray\n"));
    let c1 = env.config(
        "c1.json",
        blocks(json!({
            "/etc/hosts": { "db": "10.0.0.5 db\n" },
            "/etc/nowhere/x.conf": { "x": "1\n" }
        })),
    );
    let out = env.run(&["switch", s(&c1)]).expect(1);
    assert!(
        out.stderr.contains("has no `# END sysgen db` after it"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("/etc/nowhere/x.conf: its directory does not exist"),
        "{}",
        out.stderr
    );
    env.write_root(
        "/etc/hosts",
        &format!("{HOSTS}# BEGIN sysgen db\nstray\n# END sysgen db\n"),
    );
    let out = env.run(&["switch", s(&c1)]).expect(1);
    assert!(
        out.stderr
            .contains("already holds a block db that sysgen did not write"),
        "{}",
        out.stderr
    );
    env.write_root("/etc/hosts", HOSTS);
    assert_eq!(env.tree(), before);
    assert!(!env.state().join("journal.json").exists());
}

#[test]
fn bad_blocks_are_configuration_errors_that_name_the_key() {
    let env = env();
    for (v, want) in [
        (
            json!({ "/etc/hosts": { "bad name": "x" } }),
            "blocks./etc/hosts.bad name: invalid block name",
        ),
        (
            json!({ "/etc/hosts": { "a": "# END sysgen a\n" } }),
            "looks like a block marker",
        ),
        (
            json!({ "/etc/hosts": {} }),
            "blocks./etc/hosts: no block is declared",
        ),
        (json!({ "etc/hosts": { "a": "x" } }), "blocks.etc/hosts"),
        (
            json!({ "/etc/hosts": { "a": { "content": "x", "comment": "" } } }),
            "cannot lead a marker line",
        ),
    ] {
        let c = env.config("bad.json", blocks(v));
        let out = env.run(&["build", s(&c)]).expect(2);
        assert!(
            out.stderr.contains(want),
            "want {want:?} in:\n{}",
            out.stderr
        );
    }
    let both = env.config(
        "both.json",
        json!({ "files": { "/etc/hosts": { "content": "x\n" } }, "blocks": { "/etc/hosts": { "a": "y" } } }),
    );
    let out = env.run(&["build", s(&both)]).expect(2);
    assert!(out.stderr.contains("declared under both"), "{}", out.stderr);
    // The neighbours of blocks in issue 13: validate and checks.
    for (v, want) in [
        (
            json!({ "files": { "/etc/x": { "content": "", "validate": "visudo -cf" } } }),
            "files./etc/x.validate: \"visudo -cf\" has no %s",
        ),
        (
            json!({ "checks": [" "] }),
            "checks[0]: the command is empty",
        ),
        (
            json!({ "checks": [{ "command": "true", "timeout": 0 }] }),
            "checks[0].timeout: 0 is out of range",
        ),
    ] {
        let c = env.config("bad.json", v);
        let out = env.run(&["build", s(&c)]).expect(2);
        assert!(
            out.stderr.contains(want),
            "want {want:?} in:\n{}",
            out.stderr
        );
    }
    // Two roles give one created file different modes.
    env.config(
        "a.json",
        blocks(json!({ "/etc/x": { "a": { "content": "1", "mode": "0600" } } })),
    );
    env.config(
        "b.json",
        blocks(json!({ "/etc/x": { "b": { "content": "2", "mode": "0640" } } })),
    );
    let top = env.config("top.json", json!({ "include": ["a.json", "b.json"] }));
    let out = env.run(&["build", s(&top)]).expect(2);
    assert!(
        out.stderr.contains("another block of it gives 0600"),
        "{}",
        out.stderr
    );
}

#[test]
fn toml_blocks_and_blocks_from_two_roles_share_a_file() {
    let env = env();
    env.write_cfg(
        "roles/db.toml",
        "[blocks.\"/etc/hosts\"]\ndb = \"10.0.0.5 db\"\n",
    );
    env.write_cfg(
        "roles/web.toml",
        "[blocks.\"/etc/hosts\".web]\ncontent = \"10.0.0.7 web\"\ncomment = \"#\"\n",
    );
    let top = env.write_cfg(
        "host.toml",
        "include = [\"roles/db.toml\", \"roles/web.toml\"]\n",
    );
    env.switch(&top);
    assert_eq!(
        read(&env, "/etc/hosts"),
        format!(
            "{HOSTS}# BEGIN sysgen db\n10.0.0.5 db\n# END sysgen db\n# BEGIN sysgen web\n10.0.0.7 web\n# END sysgen web\n"
        )
    );
}

#[test]
fn diff_and_the_plan_name_each_block() {
    let env = env();
    let c1 = env.config(
        "c1.json",
        blocks(json!({ "/etc/hosts": { "db": "1\n", "old": "2\n" } })),
    );
    env.switch(&c1);
    let c2 = env.config(
        "c2.json",
        blocks(json!({ "/etc/hosts": { "db": "3\n", "new": "4\n" } })),
    );
    let plan = env.run(&["--json", "switch", "--dry-run", s(&c2)]).ok();
    assert!(
        plan.steps()
            .contains(&"edit blocks of /etc/hosts: write db, new; remove old".to_owned()),
        "{:?}",
        plan.steps()
    );
    env.switch(&c2);
    let diff = env.run(&["diff", "1", "2"]).ok();
    for l in [
        "~ block db in /etc/hosts",
        "+ block new in /etc/hosts",
        "- block old in /etc/hosts",
    ] {
        assert!(diff.stdout.contains(l), "{l} in:\n{}", diff.stdout);
    }
}

#[test]
fn a_symlink_at_or_above_a_block_file_is_never_followed() {
    let env = env();
    let outside = env.dir.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("hosts"), HOSTS).unwrap();
    fs::remove_file(env.at("/etc/hosts")).unwrap();
    std::os::unix::fs::symlink(outside.join("hosts"), env.at("/etc/hosts")).unwrap();
    std::os::unix::fs::symlink(&outside, env.at("/etc/linked")).unwrap();
    let before = env.tree();
    let c = env.config(
        "c.json",
        blocks(json!({
            "/etc/hosts": { "db": "10.0.0.5 db\n" },
            "/etc/linked/hosts": { "db": "10.0.0.5 db\n" }
        })),
    );
    let out = env.run(&["switch", s(&c)]).expect(1);
    assert!(
        out.stderr
            .contains("a symlink is there; blocks go only in regular files"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("/etc/linked is a symlink, not a directory"),
        "{}",
        out.stderr
    );
    assert_eq!(env.tree(), before);
    assert_eq!(fs::read_to_string(outside.join("hosts")).unwrap(), HOSTS);
}

#[test]
fn a_first_switch_with_blocks_crashed_anywhere_recovers_both_ways() {
    let probe = env();
    let cfg = json!({
        "files": { "/etc/app/app.conf": { "content": "a = 1\n" } },
        "blocks": {
            "/etc/hosts": { "db": "10.0.0.5 db\n" },
            "/etc/app/extra.conf": { "x": "x = 1\n" }
        }
    });
    let c = probe.config("c.json", cfg.clone());
    let before = probe.tree();
    let steps = probe
        .run(&["--json", "switch", "--dry-run", s(&c)])
        .ok()
        .steps()
        .len() as u64;
    probe.switch(&c);
    let after = probe.tree();
    for k in 1..steps {
        for back in [true, false] {
            let env = env();
            let c = env.config("c.json", cfg.clone());
            let crashed = env.run_with_fault(k, &["switch", s(&c)]);
            assert!(crashed.killed, "k={k}: {crashed:?}");
            if back {
                env.run(&["recover", "--rollback"]).ok();
                assert_eq!(env.tree(), before, "k={k}: recover --rollback");
            } else {
                env.run(&["recover"]).ok();
                assert_eq!(env.tree(), after, "k={k}: recover");
                // The file the block made goes with the last block.
                let none = env.config("none.json", json!({}));
                env.switch(&none);
                assert_eq!(env.tree(), before, "k={k}: then a switch to nothing");
            }
        }
    }
}

#[test]
fn a_unit_watching_a_block_file_restarts_when_its_blocks_change() {
    let env = env();
    let unit = sysgen_tests::services::logging_unit("app");
    let cfg = |text: &str| {
        json!({
            "files": { "/etc/systemd/system/app.service": { "content": unit } },
            "blocks": { "/etc/hosts": { "app": text } },
            "services": { "app.service": { "restart_on": ["/etc/hosts"] } }
        })
    };
    let c1 = env.config("c1.json", cfg("10.0.0.5 app\n"));
    env.switch(&c1);
    let c2 = env.config("c2.json", cfg("10.0.0.6 app\n"));
    let steps = env
        .run(&["--json", "switch", "--dry-run", s(&c2)])
        .ok()
        .steps();
    assert_eq!(
        steps[..2],
        [
            "edit blocks of /etc/hosts: write app",
            "skip restart app.service: /etc/hosts changed (systemd is not running on this root)",
        ],
    );
    assert!(steps[2].starts_with("activate generation 2"), "{steps:#?}");
}
