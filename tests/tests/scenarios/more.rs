//! Scenarios 6 to 11: leaving directories, dry runs, host mismatch, TOML,
//! diff, global options, directories turned into files.

use super::*;

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
