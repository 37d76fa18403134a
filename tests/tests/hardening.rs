//! Issue 11, items 1, 2, 13 and 14: the state directory is trusted for
//! nothing. Every entry sysgen opens there is refused, by name, when it is
//! a symlink, of the wrong type or someone else's, and nothing outside is
//! ever written; read-only commands on a missing state create nothing; a
//! closed output pipe ends the binary quietly.

#![allow(
    clippy::unwrap_used,
    reason = "helpers of tests: a panic is a failed test with its message"
)]

use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::json;
use sysgen_tests::{TestEnv, dump_tree, s};

/// A root with one active generation (a file and a small file, so the
/// store has a pack), and a directory outside everything for the planted
/// symlinks to point at.
fn setup() -> (TestEnv, PathBuf, PathBuf) {
    let env = TestEnv::new();
    let cfg = env.config(
        "c.json",
        json!({ "files": {
            "/etc/a.conf": { "content": "a\n" },
            "/etc/b.conf": { "content": "b\n", "mode": "0600" },
        }}),
    );
    env.switch(&cfg);
    let outside = env.dir.path().join("outside");
    fs::create_dir_all(outside.join("tmp")).unwrap();
    fs::write(outside.join("tmp/precious"), "keep me\n").unwrap();
    fs::write(outside.join("file"), "outside file\n").unwrap();
    fs::set_permissions(outside.join("file"), fs::Permissions::from_mode(0o644)).unwrap();
    (env, cfg, outside)
}

/// Everything outside the root and the config, with modes: what must not change.
fn outside_world(outside: &Path) -> String {
    dump_tree(outside, &[])
}

/// Replaces `<state>/rel` (whatever it is, or nothing) with `what`.
fn plant(env: &TestEnv, rel: &str, what: &dyn Fn(&Path)) {
    let p = env.state().join(rel);
    match fs::symlink_metadata(&p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(&p).unwrap(),
        Ok(_) => fs::remove_file(&p).unwrap(),
        Err(_) => fs::create_dir_all(p.parent().unwrap()).unwrap(),
    }
    what(&p);
}

/// Each entry of the state directory sysgen opens, and whether it is a
/// directory.
const ENTRIES: &[(&str, bool)] = &[
    ("lock", false),
    ("sysgen.db", false),
    ("sysgen.db-wal", false),
    ("sysgen.db-shm", false),
    ("journal.json", false),
    ("stat-index", false),
    ("store", true),
    ("store/objects", true),
    ("store/secret", true),
    ("store/tmp", true),
    ("store/objects/pack", true),
    ("store/secret/pack", true),
];

#[test]
fn a_symlink_anywhere_in_the_state_directory_is_refused_by_name_and_never_followed() {
    for &(rel, is_dir) in ENTRIES {
        let (env, cfg, outside) = setup();
        let target = if is_dir {
            outside.clone()
        } else {
            outside.join("file")
        };
        let before = outside_world(&outside);
        plant(&env, rel, &|p| symlink(&target, p).unwrap());
        for (args, mutating) in [
            (vec!["switch", s(&cfg)], true),
            (vec!["build", s(&cfg)], true),
            // These may not need the entry (`list` takes no lock); when
            // they fail, it is for the right reason.
            (vec!["list"], false),
            (vec!["verify", "--store"], false),
        ] {
            let r = env.run(&args);
            assert!(
                !mutating || r.code != Some(0),
                "{rel}: {args:?} succeeded: {r:?}"
            );
            assert!(
                r.code == Some(0)
                    || r.stderr.contains(&format!("sysgen/{rel}")) && r.stderr.contains("symlink"),
                "{rel}: {args:?} does not name it: {}",
                r.stderr
            );
            assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
            assert_eq!(
                outside_world(&outside),
                before,
                "{rel}: {args:?} changed what the symlink points to"
            );
        }
    }
}

#[test]
fn an_entry_of_the_wrong_type_or_owner_is_refused_by_name() {
    for &(rel, is_dir) in ENTRIES {
        // Wrong type: a directory where a file belongs, and the reverse.
        let (env, cfg, _) = setup();
        plant(&env, rel, &|p| {
            if is_dir {
                fs::write(p, "not a directory\n").unwrap();
            } else {
                fs::create_dir(p).unwrap();
            }
        });
        let r = env.run(&["switch", s(&cfg)]);
        assert_ne!(r.code, Some(0), "{rel}: {r:?}");
        assert!(
            r.stderr.contains(&format!("sysgen/{rel}")),
            "{rel}: {}",
            r.stderr
        );

        // Someone else's.
        let (env, cfg, _) = setup();
        let p = env.state().join(rel);
        if !p.exists() {
            plant(&env, rel, &|p| {
                if is_dir {
                    fs::create_dir(p).unwrap();
                } else {
                    fs::write(p, "").unwrap();
                }
            });
        }
        std::os::unix::fs::lchown(&p, Some(1000), Some(1000)).unwrap();
        let r = env.run(&["switch", s(&cfg)]);
        assert_ne!(r.code, Some(0), "{rel} owned by 1000: {r:?}");
        assert!(
            r.stderr.contains(&format!("sysgen/{rel}")) && r.stderr.contains("uid 1000"),
            "{rel}: {}",
            r.stderr
        );
    }
}

#[test]
fn a_symlinked_fanout_directory_gets_no_object() {
    let (env, cfg, outside) = setup();
    // The fan-out directory of the next object: any of the 256, so all.
    let objects = env.state().join("store/objects");
    for b in 0..=255u8 {
        let fan = objects.join(format!("{b:02x}"));
        if !fan.exists() {
            symlink(&outside, &fan).unwrap();
        }
    }
    let before = outside_world(&outside);
    // Larger than a packed object: stored as a file of its own.
    let big = "x".repeat(2 * 1024 * 1024) + "unique content\n";
    let src = env.write_cfg("big", &big);
    let cfg2 = env.config(
        "c2.json",
        json!({ "files": { "/etc/big": { "source": s(&src) } }, "include": [s(&cfg)] }),
    );
    let r = env.run(&["switch", s(&cfg2)]);
    assert_ne!(r.code, Some(0), "{r:?}");
    assert!(r.stderr.contains("symlink"), "{}", r.stderr);
    assert_eq!(outside_world(&outside), before);
}

#[test]
fn read_only_commands_on_a_missing_state_say_so_and_create_nothing() {
    let env = TestEnv::new();
    let cfg = env.config(
        "c.json",
        json!({ "files": { "/etc/a": { "content": "a" } } }),
    );
    let before = dump_tree(env.dir.path(), &[]);
    let elsewhere = env.dir.path().join("mistyped/state");
    for extra in [vec![], vec!["--state-dir", s(&elsewhere)]] {
        for cmd in [vec!["list"], vec!["status"], vec!["verify"], vec!["diff"]] {
            let args: Vec<&str> = extra.iter().chain(cmd.iter()).copied().collect();
            let r = env.run(&args);
            assert_eq!(r.code, Some(1), "{args:?}: {r:?}");
            assert!(
                r.stderr.contains("no sysgen state here"),
                "{args:?}: {}",
                r.stderr
            );
            assert_eq!(
                dump_tree(env.dir.path(), &[]),
                before,
                "{args:?} created something"
            );
        }
    }
    // A state directory without a database is no state either.
    fs::create_dir_all(env.state()).unwrap();
    let before = dump_tree(env.dir.path(), &[]);
    let r = env.run(&["list"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert_eq!(dump_tree(env.dir.path(), &[]), before);
    // And once there is state, they work.
    env.switch(&cfg);
    env.run(&["list"]).ok();
    env.run(&["status"]).ok();
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let env = TestEnv::new();
    let mut files = serde_json::Map::new();
    for i in 0..5000 {
        files.insert(format!("/etc/many/f{i}"), json!({ "content": "x" }));
    }
    let cfg = env.config("c.json", json!({ "files": files }));
    let mut child = env
        .cmd(&["switch", "--dry-run", s(&cfg)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    stdout.read_exact(&mut first).unwrap();
    // Like `| head -c 16`: the reader goes away.
    drop(stdout);
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert_ne!(status.code(), Some(101), "panicked: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
}

#[test]
fn taking_the_lock_writes_nothing_outside_and_the_lock_file_stays_private() {
    let (env, cfg, _) = setup();
    let lock = env.state().join("lock");
    env.switch(&cfg);
    let meta = fs::symlink_metadata(&lock).unwrap();
    assert!(meta.is_file());
    assert_eq!(meta.mode() & 0o7777, 0o600);
    assert_eq!(
        fs::metadata(env.state()).unwrap().mode() & 0o7777,
        0o700,
        "the state directory is root's alone"
    );
}
