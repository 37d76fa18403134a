//! `sysgen adopt` and `sysgen init`: how an existing host becomes its first
//! generation, and a configuration to start from. The round trip runs on
//! a real debootstrapped root: adopt `/etc`, switch to it, and the whole
//! tree (content, type, mode, owner, link targets) is unchanged.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use serde_json::{Value, json};
use sysgen_tests::packages::{DebEnv, Pkg};
use sysgen_tests::{TestEnv, dump_tree, file_line, s, tree_with};

fn read_json(p: &std::path::Path) -> Value {
    serde_json::from_str(&fs::read_to_string(p).expect("read")).expect("json")
}

#[test]
fn adopting_etc_of_a_debian_root_then_switching_changes_nothing() {
    let deb = DebEnv::new();
    let env = &deb.env;
    let before = deb.tree();
    let into = env.cfg().join("host");
    let doc = env
        .run(&["--json", "adopt", "/etc", "--into", s(&into)])
        .ok()
        .json();
    // Adopting only reads the root.
    assert_eq!(deb.tree(), before);
    let config = read_json(&into.join("sysgen.json"));
    // Every entry under /etc is declared, each once.
    let declared = ["files", "directories", "symlinks"]
        .iter()
        .map(|k| config[k].as_object().map_or(0, |m| m.len()))
        .sum::<usize>();
    let on_root = before
        .lines()
        .filter(|l| l.starts_with("/etc ") || l.starts_with("/etc/"))
        .count();
    assert_eq!(declared, on_root);
    assert_eq!(doc["skipped"], json!([]));
    // Files others cannot read are secrets, and so is their copy.
    assert_eq!(config["files"]["/etc/shadow"]["secret"], json!(true));
    assert_eq!(config["files"]["/etc/shadow"]["group"], json!("shadow"));
    let copy = into.join("files/etc/shadow");
    assert_eq!(
        fs::metadata(&copy).expect("copy").permissions().mode() & 0o777,
        0o600
    );
    assert!(doc["secrets"].as_u64().is_some_and(|n| n >= 2), "{doc}");

    let plan = env
        .run(&["switch", s(&into.join("sysgen.json")), "--dry-run"])
        .ok();
    assert!(!plan.stdout.contains("secret\n"), "{}", plan.stdout);
    let mtimes = || {
        sysgen_tests::entries_under(&env.at("/etc"))
            .into_iter()
            .filter(|(_, md)| md.is_file())
            .map(|(p, md)| {
                use std::os::unix::fs::MetadataExt;
                (p, md.mtime(), md.mtime_nsec())
            })
            .collect::<Vec<_>>()
    };
    let times = mtimes();
    env.run(&["switch", s(&into.join("sysgen.json"))]).ok();
    assert_eq!(deb.tree(), before, "the switch changed the root");
    // Not even rewritten with the same bytes: no file under /etc was
    // modified. (Symlinks are: a switch puts an identical one in place
    // anew, which touches their directories' mtimes.)
    let now = mtimes();
    let changed: Vec<_> = now.iter().filter(|t| !times.contains(t)).collect();
    assert!(changed.is_empty(), "modified: {changed:#?}");
    env.run(&["verify"]).ok();

    // Adopting again now gives the same configuration.
    let again = env.cfg().join("again");
    env.run(&["adopt", "/etc", "--into", s(&again)]).ok();
    assert_eq!(read_json(&again.join("sysgen.json")), config);
    assert_eq!(
        dump_tree(&again, &[]).replace(s(&again), ""),
        dump_tree(&into, &[]).replace(s(&into), "")
    );
}

#[test]
fn adopt_declares_hand_installed_packages_and_enabled_units() {
    let deb = DebEnv::new();
    let env = &deb.env;
    deb.build(&Pkg::new("adopt-me", "1.0"));
    deb.publish();
    deb.chroot(&["apt-get", "install", "-y", "-qq", "adopt-me"]);
    env.write_root(
        "/etc/systemd/system/adopt-test.service",
        "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n",
    );
    let systemctl = |args: &[&str]| {
        let o = std::process::Command::new("systemctl")
            .arg(format!("--root={}", s(&env.root())))
            .args(args)
            .output()
            .expect("systemctl");
        assert!(o.status.success(), "{o:?}");
        String::from_utf8(o.stdout).expect("utf-8")
    };
    // apt ships timers enabled: those are there before the test's unit.
    let mut units: serde_json::Map<String, Value> = systemctl(&[
        "list-unit-files",
        "--state=enabled",
        "--no-legend",
        "--plain",
    ])
    .lines()
    .filter_map(|l| l.split_whitespace().next())
    // Templates are left to the admin (and listed as skipped).
    .filter(|u| !u.contains("@."))
    .map(|u| (u.to_owned(), json!({ "enable": true })))
    .collect();
    systemctl(&["enable", "adopt-test.service"]);
    env.write_root(
        "/etc/systemd/system/adopt-tpl@.service",
        "[Service]\nExecStart=/bin/true %i\n[Install]\nWantedBy=multi-user.target\nDefaultInstance=one\n",
    );
    systemctl(&["enable", "adopt-tpl@.service"]);
    units.insert("adopt-test.service".into(), json!({ "enable": true }));

    let (tree, packages) = (deb.tree(), deb.packages());
    let into = env.cfg().join("host");
    let doc = env
        .run(&[
            "--json",
            "adopt",
            "/etc/systemd/system",
            "--into",
            s(&into),
            "--packages",
            "--units",
        ])
        .ok()
        .json();
    let manual: Vec<String> = deb
        .chroot(&["apt-mark", "showmanual"])
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(manual.iter().any(|p| p == "adopt-me"), "{manual:?}");
    let config = read_json(&into.join("sysgen.json"));
    assert_eq!(config["packages"]["apt"], json!(manual));
    assert_eq!(doc["packages"], json!(manual));
    assert_eq!(config["services"], Value::Object(units));
    // A template is named as skipped; its instance's link is adopted.
    assert_eq!(
        doc["skipped"],
        json!([{
            "entry": "adopt-tpl@.service",
            "why": "an enabled template unit: declare the instances to run (name@instance) by hand"
        }])
    );
    assert_eq!(
        config["symlinks"]["/etc/systemd/system/multi-user.target.wants/adopt-tpl@one.service"],
        json!("/etc/systemd/system/adopt-tpl@.service")
    );
    // The enablement link is a symlink of the adopted tree.
    assert_eq!(
        config["symlinks"]["/etc/systemd/system/multi-user.target.wants/adopt-test.service"],
        json!("/etc/systemd/system/adopt-test.service")
    );
    // Switching to it installs, removes and enables nothing.
    env.switch(&into.join("sysgen.json"));
    assert_eq!(deb.packages(), packages);
    assert_eq!(deb.tree(), tree);
}

#[test]
fn adopt_skips_what_it_cannot_declare_and_names_it() {
    let env = TestEnv::new();
    env.write_root("/srv/app/a.conf", "a\n");
    env.write_root("/srv/app/sub/b", "b\n");
    std::os::unix::fs::symlink("a.conf", env.at("/srv/app/current")).expect("symlink");
    nix::unistd::mkfifo(
        &env.at("/srv/app/pipe"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .expect("mkfifo");
    fs::set_permissions(env.at("/srv/app/sub"), fs::Permissions::from_mode(0o2750)).expect("chmod");
    std::os::unix::fs::chown(env.at("/srv/app/sub/b"), Some(33), Some(33)).expect("chown");
    std::os::unix::fs::chown(env.at("/srv/app/a.conf"), Some(4242), Some(4242)).expect("chown");
    fs::hard_link(env.at("/srv/app/sub/b"), env.at("/srv/app/sub/b2")).expect("hard link");
    let into = env.cfg().join("app");
    // Named twice, and with a path under it: adopted once.
    let out = env
        .run(&[
            "adopt",
            "/srv/app/sub",
            "/srv/app",
            "/srv/app",
            "--into",
            s(&into),
        ])
        .ok();
    assert!(
        out.stdout.contains(
            "skipped /srv/app/pipe: a fifo: sysgen manages files, directories and symlinks"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("files with hard links: 2; a switch writes each as a file of its own"),
        "{}",
        out.stdout
    );
    let config = read_json(&into.join("sysgen.json"));
    assert_eq!(
        config,
        json!({
            "sysgen": 1,
            "files": {
                "/srv/app/a.conf": { "source": "files/srv/app/a.conf", "mode": "0644", "owner": 4242, "group": 4242 },
                "/srv/app/sub/b": { "source": "files/srv/app/sub/b", "mode": "0644", "owner": "www-data", "group": "www-data" },
                "/srv/app/sub/b2": { "source": "files/srv/app/sub/b2", "mode": "0644", "owner": "www-data", "group": "www-data" },
            },
            "directories": {
                "/srv/app": { "mode": "0755", "owner": "root", "group": "root" },
                "/srv/app/sub": { "mode": "2750", "owner": "root", "group": "root" },
            },
            "symlinks": { "/srv/app/current": "a.conf" },
        })
    );
    // The state directory's parents are the switch's to make, not the
    // adoption's to keep: there before, as on a real host.
    fs::create_dir_all(env.at("/var/lib")).expect("mkdir /var/lib");
    // The fifo is left out of the comparison: reading it would block.
    let tree = || dump_tree(&env.root(), &[env.state(), env.at("/srv/app/pipe")]);
    let before = tree();
    env.switch(&into.join("sysgen.json"));
    assert_eq!(tree(), before);
    assert!(fs::symlink_metadata(env.at("/srv/app/pipe")).is_ok_and(|m| !m.is_file()));
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        fs::metadata(env.at("/srv/app/sub/b2")).expect("b2").nlink(),
        1
    );
}

#[test]
fn adopt_refuses_bad_input_and_writes_nothing() {
    let env = TestEnv::new();
    env.write_root("/srv/app/a", "a\n");
    std::os::unix::fs::symlink("app", env.at("/srv/link")).expect("symlink");
    let full = env.cfg().join("full");
    fs::create_dir_all(&full).expect("mkdir");
    fs::write(full.join("mine"), "mine\n").expect("write");
    let into = env.cfg().join("new");
    let before = (env.tree(), dump_tree(&env.cfg(), &[]));
    for (args, says) in [
        (vec!["/srv/nothing"], "nothing is at"),
        (
            vec!["/srv/link/a"],
            "/srv/link is a symlink, which sysgen does not follow",
        ),
        (vec!["srv/app"], "name an absolute path on the root"),
        (vec!["/srv/app/"], "must not end with /"),
        (vec!["/var/lib/sysgen"], "sysgen's own state directory"),
        (vec!["/srv/app", "--into", s(&full)], "not empty"),
        (vec!["/srv"], "lies under /srv"),
    ] {
        let target = if args.contains(&"--into") {
            vec![]
        } else if says == "lies under /srv" {
            vec!["--into".to_owned(), s(&env.at("/srv/cfg")).to_owned()]
        } else {
            vec!["--into".to_owned(), s(&into).to_owned()]
        };
        let mut all: Vec<&str> = vec!["adopt"];
        all.extend(args.iter().copied());
        all.extend(target.iter().map(String::as_str));
        let r = env.run(&all).expect(2);
        assert!(r.stderr.contains(says), "{all:?}: {}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
        assert_eq!((env.tree(), dump_tree(&env.cfg(), &[])), before, "{all:?}");
    }
}

#[test]
fn init_writes_a_commented_example_that_builds_and_switches() {
    let env = TestEnv::new();
    let toml = env.cfg().join("sysgen.toml");
    env.run(&["init", s(&toml)]).ok();
    let text = fs::read_to_string(&toml).expect("read");
    assert!(
        text.lines().filter(|l| l.starts_with('#')).count() > 20,
        "{text}"
    );
    let json = env.cfg().join("sysgen.json");
    let doc = env.run(&["--json", "init", s(&json)]).ok().json();
    assert_eq!(doc["format"], "json");
    // One example in two formats: one generation.
    let id = |p: &std::path::Path| env.run(&["--json", "build", s(p)]).ok().json()["id"].clone();
    assert_eq!(id(&toml), id(&json));

    let before = env.tree();
    env.switch(&toml);
    let motd = "This host is managed by sysgen: edit its configuration, not this file.\n";
    assert_eq!(
        env.tree(),
        tree_with(
            &before,
            &[
                &file_line("/etc/motd", 0o644, "0:0", motd.as_bytes()),
                "/etc/sysgen-example dir 0755 0:0",
                &file_line(
                    "/etc/sysgen-example/app.conf",
                    0o640,
                    "0:0",
                    b"workers = 4\n"
                ),
                "/etc/sysgen-example/current symlink 0:0 -> /srv/sysgen-example",
                "/srv dir 0755 0:0",
                "/srv/sysgen-example dir 0750 0:0",
            ]
        )
    );

    // Never over an existing file; a name that is neither .toml nor .json
    // is refused too. Neither changes anything.
    let cfg_before = dump_tree(&env.cfg(), &[]);
    let again = env.run(&["init", s(&toml)]).expect(2);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    let yaml = env.run(&["init", s(&env.cfg().join("x.yaml"))]).expect(2);
    assert!(yaml.stderr.contains(".toml"), "{}", yaml.stderr);
    let nowhere = env
        .run(&["init", s(&env.cfg().join("no/x.toml"))])
        .expect(2);
    assert!(
        nowhere.stderr.contains("does not exist"),
        "{}",
        nowhere.stderr
    );
    assert_eq!(dump_tree(&env.cfg(), &[]), cfg_before);
}
