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

// ---------------------------------------------------------------- 6

#[test]
fn unmanaged_files_keep_a_leaving_directory_while_managed_files_go() {
    let env = TestEnv::new();
    let c1 = env.config(
        "c1.json",
        json!({
            "files": {
                "/etc/motd": { "content": "m\n" },
                "/srv/app/managed.conf": { "content": "managed\n" },
                "/srv/app/sub/also.conf": { "content": "also\n" }
            },
            "directories": { "/srv/app": { "mode": "0750" } }
        }),
    );
    let c2 = env.config(
        "c2.json",
        json!({ "files": { "/etc/motd": { "content": "m\n" } } }),
    );
    env.switch(&c1);
    env.write_root("/srv/app/local.txt", "the admin's notes\n");
    let with_local = env.tree();

    let r = env.switch(&c2);
    assert!(r.stdout.contains("kept /srv/app"), "{}", r.stdout);
    let expected = without(
        &with_local,
        &[
            "/srv/app/managed.conf",
            "/srv/app/sub",
            "/srv/app/sub/also.conf",
        ],
    );
    assert_eq!(env.tree(), expected);
    assert_eq!(
        fs::read_to_string(env.at("/srv/app/local.txt")).unwrap(),
        "the admin's notes\n"
    );
}

// ---------------------------------------------------------------- 7

#[test]
fn dry_run_prints_exactly_the_plan_and_changes_nothing() {
    let env = TestEnv::new();
    make_site(&env, "site");
    let c1 = env.config(
        "c1.json",
        json!({
            "files": { "/etc/a": { "content": "a\n" }, "/etc/b": { "content": "b\n", "mode": "0644" },
                       "/opt/x/y/z": { "content": "z\n" } },
            "symlinks": { "/etc/l": "/one" }
        }),
    );
    env.switch(&c1);
    // Pre-existing unmanaged file the next generation will take over.
    env.write_root("/etc/taken", "was here\n");
    let t1 = env.tree();
    let list1 = env.run(&["list"]).ok().stdout;
    let c2 = env.config(
        "c2.json",
        json!({
            "files": { "/etc/b": { "content": "b\n", "mode": "0600" }, "/etc/c": { "content": "c\n" },
                       "/etc/taken": { "content": "now managed\n" } },
            "symlinks": { "/etc/l": "/two" },
            "directories": { "/srv/d": { "mode": "0700" } },
            "trees": { "/srv/www": { "source": "site" } }
        }),
    );

    let dry = env.run(&["switch", "--dry-run", s(&c2)]).ok();
    assert!(dry.stdout.contains("nothing was changed"), "{}", dry.stdout);
    assert_eq!(env.tree(), t1, "--dry-run changed the root");
    assert_eq!(env.run(&["list"]).ok().stdout, list1);
    let planned = dry_run_steps(&dry.stdout);
    assert!(planned.len() > 10, "{}", dry.stdout);
    let dry_json = switch_json(&env, &c2, &["--dry-run"]);
    assert_eq!(dry_json["dry_run"], true);
    assert_eq!(env.tree(), t1);

    let real = env.run(&["-v", "--json", "switch", s(&c2)]).ok().json();
    let steps: Vec<String> = real["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect();
    // People's lines word sizes and owners for people (the exact text is
    // the JSON's): each names the same step, in the same order.
    let named = |l: &str| l.split(" (").next().unwrap_or_default().to_owned();
    assert_eq!(
        planned.iter().map(|l| named(l)).collect::<Vec<_>>(),
        steps.iter().map(|l| named(l)).collect::<Vec<_>>(),
        "the dry run did not print the plan that ran"
    );
    assert_eq!(dry_json["steps"], real["steps"]);
    assert_eq!(real["applied"].as_u64().unwrap() as usize, steps.len());
    // The plan names every path that changed.
    for p in [
        "/etc/a",
        "/opt/x/y/z",
        "/etc/c",
        "/etc/taken",
        "/srv/www/index.html",
    ] {
        assert!(
            steps.iter().any(|st| st.contains(p)),
            "{p} not in {steps:#?}"
        );
    }
    assert_ne!(env.tree(), t1);

    // Rollback --dry-run changes nothing either.
    let t2 = env.tree();
    let list2 = env.run(&["list"]).ok().stdout;
    env.run(&["rollback", "--dry-run"]).ok();
    assert_eq!(env.tree(), t2);
    assert_eq!(env.run(&["list"]).ok().stdout, list2);
}

// ---------------------------------------------------------------- 8

#[test]
fn host_mismatch_refuses_naming_both_hosts_and_force_goes_ahead() {
    let env = TestEnv::new();
    make_state_dir(&env);
    env.write_root("/etc/hostname", "db1\n");
    let before = env.tree();
    let c = env.config(
        "c.json",
        json!({ "host": "web1", "files": { "/etc/motd": { "content": "web\n" } } }),
    );
    let r = env.run(&["switch", s(&c)]).expect(1);
    assert!(
        r.stderr.contains("web1") && r.stderr.contains("db1"),
        "{}",
        r.stderr
    );
    assert_eq!(env.tree(), before);
    assert!(generations(&env).is_empty());

    env.run(&["switch", "--force", s(&c)]).ok();
    let motd = format!(
        "/etc/motd file 0644 0:0 {}",
        blake3::hash(b"web\n").to_hex()
    );
    assert_eq!(env.tree(), with_lines(&before, &[&motd]));
    // The right host needs no --force.
    let env2 = TestEnv::new();
    env2.write_root("/etc/hostname", "web1\n");
    let c2 = env2.config("c.json", json!({ "host": "web1" }));
    env2.run(&["switch", s(&c2)]).ok();
}

// ---------------------------------------------------------------- 9

#[test]
fn toml_config_builds_the_same_generation_as_the_equivalent_json() {
    let env = TestEnv::new();
    make_site(&env, "site");
    env.write_cfg("src/nginx.conf", "worker_processes 1;\n");
    let j = env.config(
        "c.json",
        json!({
            "sysgen": 1,
            "host": "web1",
            "files": {
                "/etc/motd": { "content": "Welcome\n" },
                "/etc/nginx/nginx.conf": { "source": "src/nginx.conf", "mode": "0640", "owner": "root", "group": "www-data" },
                "/etc/token": { "content": "t\n", "secret": true }
            },
            "directories": { "/srv/app": { "mode": "0750", "owner": "www-data", "group": 33 } },
            "symlinks": { "/etc/localtime": "/usr/share/zoneinfo/UTC" },
            "trees": { "/srv/www": { "source": "site" } }
        }),
    );
    let t = env.write_cfg(
        "c.toml",
        r#"sysgen = 1
host = "web1"

[files."/etc/motd"]
content = "Welcome\n"

[files."/etc/nginx/nginx.conf"]
source = "src/nginx.conf"
mode = "0640"
owner = "root"
group = "www-data"

[files."/etc/token"]
content = "t\n"
secret = true

[directories."/srv/app"]
mode = "0750"
owner = "www-data"
group = 33

[symlinks]
"/etc/localtime" = "/usr/share/zoneinfo/UTC"

[trees."/srv/www"]
source = "site"
"#,
    );
    let id = |p: &Path| {
        env.run(&["--json", "build", s(p)]).ok().json()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (jid, tid) = (id(&j), id(&t));
    assert_eq!(jid.len(), 64, "{jid}");
    assert_eq!(jid, tid);
    // A one-byte difference gives another id (the comparison can fail).
    let t2 = env.write_cfg(
        "c2.toml",
        &fs::read_to_string(&t)
            .unwrap()
            .replace("Welcome\\n", "Welcome!\\n"),
    );
    assert_ne!(id(&t2), jid);
    // Building changed nothing on the root.
    assert!(!env.at("/etc/motd").exists());

    let first = switch_json(&env, &j, &[]);
    assert_eq!(first["id"], jid.as_str());
    let tree = env.tree();
    let again = switch_json(&env, &t, &[]);
    assert_eq!(again["unchanged"], true, "{again}");
    assert_eq!(env.tree(), tree);
}

// ---------------------------------------------------------------- 10

#[test]
fn diff_lists_added_removed_and_changed_paths() {
    let env = TestEnv::new();
    let c1 = env.config(
        "c1.json",
        json!({
            "files": { "/etc/a": { "content": "a\n" }, "/etc/b": { "content": "b\n" }, "/etc/c": { "content": "c\n" } },
            "symlinks": { "/etc/l": "/one" }
        }),
    );
    let c2 = env.config(
        "c2.json",
        json!({
            "files": { "/etc/b": { "content": "B!\n" }, "/etc/c": { "content": "c\n", "mode": "0600" },
                       "/etc/d": { "content": "d\n" } },
            "symlinks": { "/etc/l": "/two" }
        }),
    );
    env.switch(&c1);
    env.switch(&c2);

    let signs = |out: &str| -> BTreeSet<(String, String)> {
        out.lines()
            .map(|l| {
                let mut it = l.split_whitespace();
                (
                    it.next().unwrap_or_default().to_owned(),
                    it.next().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    };
    let want: BTreeSet<(String, String)> = [
        ("-", "/etc/a"),
        ("~", "/etc/b"),
        ("~", "/etc/c"),
        ("+", "/etc/d"),
        ("~", "/etc/l"),
    ]
    .iter()
    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
    .collect();
    let d12 = env.run(&["diff", "1", "2"]).ok().stdout;
    assert_eq!(signs(&d12), want, "{d12}");
    assert!(
        d12.lines()
            .any(|l| l.starts_with("~ /etc/b") && l.contains("content")),
        "{d12}"
    );
    assert!(
        d12.lines()
            .any(|l| l.starts_with("~ /etc/c") && l.contains("0644 -> 0600")),
        "{d12}"
    );
    assert!(
        d12.lines()
            .any(|l| l.starts_with("~ /etc/l") && l.contains("/one -> /two")),
        "{d12}"
    );

    // Reversed, the signs swap.
    let d21 = env.run(&["diff", "2", "1"]).ok().stdout;
    let swapped: BTreeSet<_> = want
        .iter()
        .map(|(s, p)| {
            let s = match s.as_str() {
                "+" => "-",
                "-" => "+",
                o => o,
            };
            (s.to_owned(), p.clone())
        })
        .collect();
    assert_eq!(signs(&d21), swapped, "{d21}");

    // Default: previous against current.
    assert_eq!(env.run(&["diff"]).ok().stdout, d12);
    // A config path and an id prefix work as operands too.
    assert_eq!(env.run(&["diff", s(&c1), s(&c2)]).ok().stdout, d12);
    let id2 = generations_ids(&env)[1].clone();
    assert_eq!(env.run(&["diff", "1", &id2[..10]]).ok().stdout, d12);
    let same = env.run(&["diff", "2", "2"]).ok().stdout;
    assert!(same.contains("no differences"), "{same}");

    let j = env.run(&["--json", "diff", "1", "2"]).ok().json();
    let got: BTreeSet<(String, String)> = j["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let sign = match c["change"].as_str().unwrap() {
                "added" => "+",
                "removed" => "-",
                "changed" => "~",
                other => panic!("unknown change {other}"),
            };
            (sign.to_owned(), c["path"].as_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(got, want, "{j}");
    assert_eq!(j["to"].as_str().unwrap(), id2);
}

fn generations_ids(env: &TestEnv) -> Vec<String> {
    let v = env.run(&["--json", "list"]).ok().json();
    v["generations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap().to_owned())
        .collect()
}

// ---------------------------------------------------------------- 11

#[test]
fn global_options_work_after_the_command() {
    let body = json!({ "files": { "/etc/motd": { "content": "hi\n" }, "/opt/t/f": { "content": "f\n" } } });
    let env = TestEnv::new();
    let c = env.config("c.json", body.clone());
    let out = Command::new(TestEnv::sysgen_bin())
        .args(["switch", "-v", "--root", s(&env.root()), s(&c)])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // -v shows every step.
    assert!(stdout.contains("create file /etc/motd"), "{stdout}");
    assert!(stdout.contains("generation 1"), "{stdout}");

    let reference = TestEnv::new();
    reference.switch(&reference.config("c.json", body));
    assert_eq!(env.tree(), reference.tree());

    // --json and --root after the command, with `list`.
    let out = Command::new(TestEnv::sysgen_bin())
        .args(["list", "--root", s(&env.root()), "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["active"], 1, "{v}");
    // Mixed: --root before, -q after.
    let out = Command::new(TestEnv::sysgen_bin())
        .args(["--root", s(&env.root()), "switch", s(&c), "-q"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(out.stdout.is_empty(), "-q printed {:?}", out.stdout);
}

/// A directory that was on the root before sysgen, declared, then turned into
/// a file by a later generation, comes back as the same directory (mode and
/// owner) when the path leaves the configuration: the root ends exactly as
/// it began.
#[test]
fn preexisting_directory_turned_into_a_file_comes_back_when_dropped() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    std::fs::create_dir_all(env.at("/opt/pre")).unwrap();
    std::fs::set_permissions(env.at("/opt/pre"), std::fs::Permissions::from_mode(0o711)).unwrap();
    std::os::unix::fs::chown(env.at("/opt/pre"), Some(33), Some(33)).unwrap();
    // The state directory's parents appear with the first switch; not ours to compare.
    std::fs::create_dir_all(env.at("/var/lib")).unwrap();
    let before = env.tree();
    let c1 = env.config(
        "c1.json",
        json!({ "directories": { "/opt/pre": { "mode": "0750" } } }),
    );
    let c2 = env.config(
        "c2.json",
        json!({ "files": { "/opt/pre": { "content": "now a file\n" } } }),
    );
    let c3 = env.config("c3.json", json!({}));
    env.run(&["switch", c1.to_str().unwrap()]).ok();
    env.run(&["switch", c2.to_str().unwrap()]).ok();
    assert!(env.at("/opt/pre").is_file());
    env.run(&["switch", c3.to_str().unwrap()]).ok();
    assert_eq!(env.tree(), before);
}

/// A pre-existing file that a generation replaced with a directory comes
/// back when the path leaves the configuration, but never at the cost of
/// files an admin put in that directory meanwhile: the switch is refused
/// before any change, naming the path; once the directory is emptied, the
/// file comes back and the root is exactly as it began.
#[test]
fn file_under_a_directory_that_must_give_way_to_a_restored_file_stops_the_switch() {
    let env = TestEnv::new();
    env.write_root("/opt/x", "the admin's file\n");
    fs::create_dir_all(env.at("/var/lib")).unwrap();
    let before = env.tree();
    let c1 = env.config(
        "c1.json",
        json!({ "directories": { "/opt/x": { "mode": "0755" } } }),
    );
    let c2 = env.config("c2.json", json!({}));
    env.switch(&c1);
    env.write_root("/opt/x/user.txt", "made by hand\n");
    let during = env.tree();
    let r = env.run(&["switch", s(&c2)]).expect(1);
    assert!(
        r.stderr.contains("/opt/x") && r.stderr.contains("user.txt"),
        "{}",
        r.stderr
    );
    assert_eq!(env.tree(), during);
    fs::remove_file(env.at("/opt/x/user.txt")).unwrap();
    env.switch(&c2);
    assert_eq!(env.tree(), before);
}
