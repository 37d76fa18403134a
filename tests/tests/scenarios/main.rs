//! End-to-end scenarios on real temporary roots: exact "down", byte-exact
//! rollback, idempotence, restoring what was there before sysgen, drift,
//! unmanaged files, dry-run, host check, TOML, diff and option placement.
//! Every scenario compares whole trees (`dump_tree`), never a few paths.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is a failed test with its message"
)]

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, lchown, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use sysgen_tests::{TestEnv, s};

/// `switch --json CONFIG`, which must succeed; its JSON document.
mod more;

fn switch_json(env: &TestEnv, cfg: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["--json", "switch"];
    args.extend_from_slice(extra);
    args.push(s(cfg));
    env.run(&args).ok().json()
}

/// `(number, active, pinned)` of every generation `list --json` shows.
fn generations(env: &TestEnv) -> Vec<(u64, bool, bool)> {
    let v = env.run(&["--json", "list"]).ok().json();
    v["generations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["number"].as_u64().unwrap(),
                g["active"].as_bool().unwrap(),
                g["pinned"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// The state directory, created before anything is captured, so that a
/// "before" tree already holds `/var/lib` (which opening the state creates).
fn make_state_dir(env: &TestEnv) {
    fs::create_dir_all(env.state()).unwrap();
}

/// Removes from a dump the lines of `paths` (exact paths).
fn without(tree: &str, paths: &[&str]) -> String {
    tree.lines()
        .filter(|l| !paths.iter().any(|p| l.split(' ').next() == Some(*p)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A dump with `extra` lines added, in dump order (a line sorts as its path
/// does, since a space sorts before every other character of a path).
fn with_lines(tree: &str, extra: &[&str]) -> String {
    tree.lines()
        .chain(extra.iter().copied())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .join("\n")
}

/// The numbered step lines a `--dry-run` prints, without their numbers.
fn dry_run_steps(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| {
            let t = l.trim_start();
            let (n, rest) = t.split_once(". ")?;
            n.parse::<u64>().ok().map(|_| rest.to_owned())
        })
        .collect()
}

/// A site for `trees`: files, a subdirectory, an executable, a symlink.
fn make_site(env: &TestEnv, dir: &str) -> PathBuf {
    env.write_cfg(&format!("{dir}/index.html"), "<h1>hello</h1>\n");
    env.write_cfg(&format!("{dir}/css/site.css"), "body { color: red }\n");
    let tool = env.write_cfg(&format!("{dir}/bin/tool.sh"), "#!/bin/sh\necho tool\n");
    fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).unwrap();
    symlink("index.html", env.cfg().join(dir).join("home.html")).unwrap();
    env.cfg().join(dir)
}

// ---------------------------------------------------------------- 1

#[test]
fn exact_down_equals_a_fresh_root_switched_straight_to_the_smaller_config() {
    let gen2 = json!({
        "files": { "/etc/keep.conf": { "content": "kept\n", "mode": "0600" } },
        "symlinks": { "/etc/localtime": "/usr/share/zoneinfo/UTC" },
        "directories": { "/var/cache/app": { "mode": "0700" } }
    });

    let env = TestEnv::new();
    make_site(&env, "site");
    let c1 = env.config(
        "c1.json",
        json!({
            "files": {
                "/etc/keep.conf": { "content": "kept\n", "mode": "0600" },
                "/etc/motd": { "content": "hello\n" },
                "/opt/app/conf/app.conf": { "content": "x = 1\n", "owner": "www-data", "group": "www-data" },
                "/etc/app/nested/deep.conf": { "content": "deep\n" }
            },
            "directories": {
                "/srv/data": { "mode": "0750", "owner": "www-data", "group": "www-data" },
                "/var/cache/app": { "mode": "0700" }
            },
            "symlinks": {
                "/etc/localtime": "/usr/share/zoneinfo/UTC",
                "/usr/local/bin/app": "/opt/app/bin/app"
            },
            "trees": { "/srv/www": { "source": "site" } }
        }),
    );
    let c2 = env.config("c2.json", gen2.clone());
    env.switch(&c1);
    let t1 = env.tree();
    for line in [
        "/srv/www/bin/tool.sh file 0755 0:0",
        "/srv/www/home.html symlink 0:0 -> index.html",
        "/srv/www/css dir",
        "/srv/data dir 0750 33:33",
        "/opt/app/conf/app.conf file 0644 33:33",
        "/usr/local/bin/app symlink 0:0 -> /opt/app/bin/app",
        "/etc/app/nested/deep.conf file 0644",
    ] {
        assert!(t1.contains(line), "missing {line:?} in\n{t1}");
    }

    env.switch(&c2);
    let after = env.tree();

    let fresh = TestEnv::new();
    let f2 = fresh.config("c2.json", gen2);
    fresh.switch(&f2);
    assert_eq!(
        after,
        fresh.tree(),
        "down to gen2 differs from a fresh gen2"
    );

    // The parents sysgen created are gone, not left empty.
    for gone in [
        "/opt",
        "/srv",
        "/usr/local",
        "/usr/share",
        "/etc/app",
        "/etc/motd",
    ] {
        assert!(!env.at(gone).exists(), "{gone} is still there:\n{after}");
    }
    // /usr held only sysgen's parents of a removed symlink; /usr/share was
    // never created (a symlink target is not a path sysgen makes).
    assert!(!env.at("/usr").exists(), "{after}");
}

// ---------------------------------------------------------------- 2

#[test]
fn rollback_is_byte_exact_after_the_sources_changed_or_were_deleted() {
    let env = TestEnv::new();
    env.write_cfg("src/app.conf", "listen = 80\n");
    env.write_cfg("src/key", "s3cr3t-key\n");
    let site = make_site(&env, "site");
    env.write_cfg("site/old/page.html", "old page\n");
    let files = json!({
        "/etc/app.conf": { "source": "src/app.conf", "mode": "0640" },
        "/etc/app/token": { "source": "src/key", "secret": true }
    });
    let c1 = env.config(
        "c1.json",
        json!({ "files": files, "trees": { "/srv/www": { "source": "site" } } }),
    );
    env.switch(&c1);
    let t1 = env.tree();
    assert!(t1.contains("/etc/app/token file 0600"), "{t1}");
    assert!(t1.contains("/srv/www/old/page.html file"), "{t1}");

    // The sources change under sysgen: edited, deleted, a tree file removed.
    env.write_cfg("src/app.conf", "listen = 8080\n");
    fs::remove_file(env.cfg().join("src/key")).unwrap();
    fs::write(site.join("index.html"), "<h1>new</h1>\n").unwrap();
    fs::remove_dir_all(site.join("old")).unwrap();
    fs::remove_file(site.join("home.html")).unwrap();
    let c2 = env.config(
        "c2.json",
        json!({
            "files": { "/etc/app.conf": { "source": "src/app.conf", "mode": "0644" } },
            "trees": { "/srv/www": { "source": "site" } }
        }),
    );
    env.switch(&c2);
    let t2 = env.tree();
    assert_ne!(t2, t1);
    assert!(!env.at("/etc/app").exists(), "{t2}");
    assert_eq!(
        fs::read_to_string(env.at("/etc/app.conf")).unwrap(),
        "listen = 8080\n"
    );

    env.run(&["rollback"]).ok();
    assert_eq!(env.tree(), t1, "rollback is not byte-exact");
    // And forward again by number, also exact.
    env.run(&["switch", "2"]).ok();
    assert_eq!(env.tree(), t2);
    env.run(&["rollback", "--to", "1"]).ok();
    assert_eq!(env.tree(), t1);
    assert_eq!(generations(&env), vec![(1, true, false), (2, false, false)]);
}

// ---------------------------------------------------------------- 3

#[test]
fn same_config_twice_changes_nothing_and_identical_content_reuses_its_number() {
    let env = TestEnv::new();
    let body = json!({
        "files": { "/etc/motd": { "content": "one\n" }, "/etc/a/b.conf": { "content": "b\n" } },
        "symlinks": { "/etc/l": "/x" }
    });
    let c1 = env.config("c1.json", body.clone());
    let first = switch_json(&env, &c1, &[]);
    assert_eq!(first["number"], 1);
    assert_eq!(first["unchanged"], false);
    let t1 = env.tree();
    let md1 = fs::metadata(env.at("/etc/motd")).unwrap();

    let again = switch_json(&env, &c1, &[]);
    assert_eq!(again["unchanged"], true, "{again}");
    assert_eq!(again["number"], 1);
    assert_eq!(again["steps"].as_array().unwrap().len(), 0, "{again}");
    assert_eq!(env.tree(), t1);
    let md2 = fs::metadata(env.at("/etc/motd")).unwrap();
    assert_eq!(
        (md1.ino(), md1.mtime(), md1.mtime_nsec()),
        (md2.ino(), md2.mtime(), md2.mtime_nsec()),
        "the file was rewritten"
    );
    assert_eq!(generations(&env), vec![(1, true, false)]);

    let c2 = env.config(
        "c2.json",
        json!({ "files": { "/etc/motd": { "content": "two\n" } } }),
    );
    assert_eq!(switch_json(&env, &c2, &[])["number"], 2);
    let t2 = env.tree();

    // Another file, keys in another order, same content as generation 1.
    let same_as_1 = env.write_cfg(
        "other/same.json",
        r#"{ "symlinks": { "/etc/l": "/x" },
             "files": { "/etc/a/b.conf": { "content": "b\n" }, "/etc/motd": { "content": "one\n" } } }"#,
    );
    let back = switch_json(&env, &same_as_1, &[]);
    assert_eq!(back["number"], 1, "{back}");
    assert_eq!(back["from"], 2, "{back}");
    assert_eq!(back["unchanged"], false);
    assert_eq!(env.tree(), t1);
    assert_eq!(generations(&env), vec![(1, true, false), (2, false, false)]);

    // Back to 2 by its config: still number 2; new content takes number 3.
    assert_eq!(switch_json(&env, &c2, &[])["number"], 2);
    assert_eq!(env.tree(), t2);
    let c3 = env.config(
        "c3.json",
        json!({ "files": { "/etc/motd": { "content": "three\n" } } }),
    );
    assert_eq!(switch_json(&env, &c3, &[])["number"], 3);
    assert_eq!(
        generations(&env),
        vec![(1, false, false), (2, false, false), (3, true, false)]
    );
}

// ---------------------------------------------------------------- 4

#[test]
fn preexisting_file_and_symlink_come_back_with_mode_and_owner() {
    let env = TestEnv::new();
    make_state_dir(&env);
    env.write_root("/etc/app.conf", "original, the admin's\n");
    let f = env.at("/etc/app.conf");
    fs::set_permissions(&f, fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(&f, Some(33), Some(33)).unwrap();
    symlink("/opt/old-target", env.at("/etc/alt")).unwrap();
    lchown(env.at("/etc/alt"), Some(33), Some(33)).unwrap();
    // A pre-existing directory whose attributes sysgen then manages.
    fs::create_dir(env.at("/etc/pre.d")).unwrap();
    fs::set_permissions(env.at("/etc/pre.d"), fs::Permissions::from_mode(0o711)).unwrap();
    let before = env.tree();
    assert!(before.contains("/etc/app.conf file 0640 33:33"), "{before}");
    assert!(
        before.contains("/etc/alt symlink 33:33 -> /opt/old-target"),
        "{before}"
    );

    let c1 = env.config(
        "c1.json",
        json!({
            "files": { "/etc/app.conf": { "content": "managed\n", "mode": "0600", "owner": "root", "group": "root" } },
            "symlinks": { "/etc/alt": "/opt/new-target" },
            "directories": { "/etc/pre.d": { "mode": "0755" } }
        }),
    );
    env.switch(&c1);
    let t1 = env.tree();
    assert!(t1.contains("/etc/app.conf file 0600 0:0"), "{t1}");
    assert!(
        t1.contains("/etc/alt symlink 0:0 -> /opt/new-target"),
        "{t1}"
    );
    assert!(t1.contains("/etc/pre.d dir 0755"), "{t1}");
    assert_eq!(
        fs::read_to_string(env.at("/etc/app.conf")).unwrap(),
        "managed\n"
    );

    // An empty configuration: every path leaves it.
    let c2 = env.config("c2.json", json!({}));
    env.switch(&c2);
    assert_eq!(
        env.tree(),
        before,
        "the pre-existing entries did not come back"
    );
    assert_eq!(
        fs::read_to_string(env.at("/etc/app.conf")).unwrap(),
        "original, the admin's\n"
    );
    // Through a rollback and back again, too.
    env.run(&["rollback"]).ok();
    assert_eq!(env.tree(), t1);
    env.run(&["rollback"]).ok();
    assert_eq!(env.tree(), before);
}

// ---------------------------------------------------------------- 5

#[test]
fn drift_stops_the_switch_and_force_keeps_the_edit_in_the_store() {
    let c1_body = json!({
        "files": {
            "/etc/app.conf": { "content": "v1\n" },
            "/etc/gone.conf": { "content": "will leave\n" },
            "/etc/other": { "content": "other\n" }
        }
    });
    let c2_body = json!({
        "files": {
            "/etc/app.conf": { "content": "v2\n" },
            "/etc/other": { "content": "other\n" }
        }
    });
    let env = TestEnv::new();
    let c1 = env.config("c1.json", c1_body.clone());
    let c2 = env.config("c2.json", c2_body.clone());
    env.switch(&c1);
    let edit = "edited by the admin\n";
    env.write_root("/etc/app.conf", edit);
    env.write_root("/etc/gone.conf", "also edited\n");
    let before = env.tree();
    let list_before = env.run(&["--json", "list"]).ok().stdout;

    let r = env.run(&["switch", s(&c2)]).expect(1);
    assert!(r.stderr.contains("/etc/app.conf"), "{}", r.stderr);
    assert!(r.stderr.contains("/etc/gone.conf"), "{}", r.stderr);
    assert!(r.stderr.contains("--force"), "{}", r.stderr);
    assert_eq!(env.tree(), before, "a refused switch changed the root");
    assert_eq!(env.run(&["--json", "list"]).ok().stdout, list_before);

    // Drift that only a removal would touch also stops it.
    let c3 = env.config(
        "c3.json",
        json!({ "files": { "/etc/app.conf": { "content": "v1\n" }, "/etc/other": { "content": "other\n" } } }),
    );
    let r = env.run(&["switch", s(&c3)]).expect(1);
    assert!(r.stderr.contains("/etc/gone.conf"), "{}", r.stderr);
    assert_eq!(env.tree(), before);

    let out = switch_json(&env, &c2, &["--force"]);
    let saved = out["saved"].as_array().unwrap();
    let by_path = |p: &str| {
        saved
            .iter()
            .find(|x| x["path"] == p)
            .unwrap_or_else(|| panic!("{p} not saved: {out}"))
            .clone()
    };
    assert_eq!(saved.len(), 2, "{out}");
    for (p, content) in [("/etc/app.conf", edit), ("/etc/gone.conf", "also edited\n")] {
        let hash = by_path(p)["hash"].as_str().unwrap().to_owned();
        assert_eq!(hash, blake3::hash(content.as_bytes()).to_hex().as_str());
        let obj = env
            .state()
            .join("store/secret")
            .join(&hash[..2])
            .join(&hash[2..]);
        assert!(obj.is_file(), "{} is missing", obj.display());
    }

    // The root is now exactly generation 2, as on a root that never drifted.
    let reference = TestEnv::new();
    reference.switch(&reference.config("c1.json", c1_body));
    reference.switch(&reference.config("c2.json", c2_body));
    assert_eq!(env.tree(), reference.tree());
    env.run(&["verify"]).ok();
}

#[test]
fn force_over_a_drifted_symlink_keeps_a_record_of_it() {
    let env = TestEnv::new();
    let c1 = env.config(
        "c1.json",
        json!({ "files": { "/etc/a": { "content": "a\n" } } }),
    );
    let c2 = env.config(
        "c2.json",
        json!({ "files": { "/etc/a": { "content": "b\n" } } }),
    );
    env.switch(&c1);
    fs::remove_file(env.at("/etc/a")).unwrap();
    symlink("/admin/target", env.at("/etc/a")).unwrap();
    let before = env.tree();
    let r = env.run(&["switch", s(&c2)]).expect(1);
    assert!(r.stderr.contains("/etc/a"), "{}", r.stderr);
    assert_eq!(env.tree(), before);
    // "each changed file is kept in the store first": the symlink too.
    let out = switch_json(&env, &c2, &["--force"]);
    let saved = out["saved"].as_array().unwrap();
    assert!(saved.iter().any(|x| x["path"] == "/etc/a"), "{out}");
}
